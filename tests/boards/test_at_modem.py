"""boards/common/at_modem.py and uart_stream.py: bringing a SIMCom modem up over its UART.

A scripted modem (tests/core/fakestream.FakeModem) checks every AT command
line; time is fake. What a user would check: PWRKEY is pressed only while
the modem is silent (a press on a running modem switches it off), every
wait ends, registration and the data bearer are read from the modem's own
answers, the UART adapter keeps the AtEngine contract and feeds the watchdog
on every read, the clock does not wrap.
Plain functions with assert: pytest on CPython, tools/mp_test.py on MicroPython.
"""

import at_modem
from ipa_core.apdu import IsdrSession
from ipa_core.at import AtEngine
from ipa_core.errors import TimeoutError_, TransportError
from uart_stream import TicksClock, UartStream

from boards_util import Clock
from fakestream import FakeModem

OK = "\r\nOK\r\n"


def _engine(script, clock=None):
    clock = clock or Clock()
    modem = FakeModem(script, clock=clock)
    return AtEngine(modem, clock_ms=clock), modem, clock


def test_power_on_does_not_press_a_modem_that_answers():
    engine, modem, clock = _engine([("AT", OK), ("ATE0", OK)])
    presses = []
    n = at_modem.power_on(engine, lambda: presses.append(clock.t), clock, clock.sleep_ms,
                          log=lambda s: None)
    assert n == 0 and presses == []
    modem.done()


def test_power_on_presses_a_silent_modem_once_and_waits_for_it():
    engine, modem, clock = _engine([("AT", None), ("AT", None), ("AT", None), ("AT", None),
                                    ("AT", OK), ("ATE0", OK)])
    presses = []
    lines = []
    n = at_modem.power_on(engine, lambda: presses.append(len(modem.lines)), clock,
                          clock.sleep_ms, log=lines.append, boot_ms=15000, try_ms=1000)
    assert n == 1
    assert presses == [2]  # after the two silent ATs of the first check, never again
    assert "pressing PWRKEY (1 of 2)" in lines[0] and "answering" in lines[-1], lines
    modem.done()


def test_power_on_gives_up_after_bounded_presses():
    engine, modem, clock = _engine([("AT", None)] * 200)
    presses = []
    try:
        at_modem.power_on(engine, lambda: presses.append(clock.t), clock, clock.sleep_ms,
                          log=lambda s: None, presses=2, boot_ms=5000, try_ms=1000)
    except TimeoutError_ as e:
        assert "2 PWRKEY presses" in str(e) and "5000 ms" in str(e)
    else:
        raise AssertionError("a dead modem was taken for alive")
    assert len(presses) == 2
    assert clock.t < 2 * 1000 + 2 * (5000 + 1200), clock.t  # the waits are bounded


def test_registration_is_read_from_cereg_else_cgreg():
    engine, modem, _ = _engine([
        ("AT+CEREG?", "\r\n+CEREG: 0,5\r\n" + OK),
        ("AT+CEREG?", "\r\n+CEREG: 2,1,\"1A2B\",\"01C3D4E5\",7\r\n" + OK),
        ("AT+CEREG?", "\r\nERROR\r\n"), ("AT+CGREG?", "\r\n+CGREG: 0,2\r\n" + OK),
        ("AT+CEREG?", "\r\nERROR\r\n"), ("AT+CGREG?", "\r\n+CME ERROR: 4\r\n"),
    ])
    assert at_modem.registration(engine) == 5
    assert at_modem.registration(engine) == 1
    assert at_modem.registration(engine) == 2
    assert at_modem.registration(engine) is None
    modem.done()


def test_wait_registered_polls_until_attached_or_the_bound():
    engine, modem, clock = _engine([
        ("AT+CEREG?", "\r\n+CEREG: 0,2\r\n" + OK),
        ("AT+CEREG?", "\r\n+CEREG: 0,2\r\n" + OK),
        ("AT+CEREG?", "\r\n+CEREG: 0,1\r\n" + OK),
    ])
    assert at_modem.wait_registered(engine, 60000, clock, clock.sleep_ms, poll_ms=2000)
    assert clock.sleeps == [2000, 2000]
    modem.done()
    engine, modem, clock = _engine([("AT+CEREG?", "\r\n+CEREG: 0,3\r\n" + OK)] * 5)
    assert not at_modem.wait_registered(engine, 7000, clock, clock.sleep_ms, poll_ms=2000)
    assert clock.t <= 7000 and len(modem.lines) == 4


def test_bearer_sim7080_and_simcom():
    engine, modem, clock = _engine([
        ("AT+CNACT?", '\r\n+CNACT: 0,0,"0.0.0.0"\r\n+CNACT: 1,0,"0.0.0.0"\r\n' + OK),
        ("AT+CNACT=0,1", OK + "\r\n+APP PDP: 0,ACTIVE\r\n"),
        ("AT+CNACT?", '\r\n+CNACT: 0,1,"10.64.1.2"\r\n+CNACT: 1,0,"0.0.0.0"\r\n' + OK),
        ("AT+CNACT?", '\r\n+CNACT: 0,1,"10.64.1.2"\r\n' + OK),  # already up: nothing sent
    ])
    assert at_modem.bearer(engine, "sim7080", clock, clock.sleep_ms) is True
    assert at_modem.bearer(engine, "sim7080", clock, clock.sleep_ms) is False
    modem.done()
    engine, modem, clock = _engine([
        ("AT+CGACT?", "\r\n+CGACT: 1,0\r\n" + OK), ("AT+CGACT=1,1", "\r\nERROR\r\n"),
    ] + [("AT+CGACT?", "\r\n+CGACT: 1,0\r\n" + OK)] * 40)
    try:
        at_modem.bearer(engine, "simcom", clock, clock.sleep_ms, timeout_ms=10000)
    except TransportError as e:
        assert "AT+CGACT=1,1" in str(e) and "10000 ms" in str(e) and "ERROR" in str(e)
    else:
        raise AssertionError("a bearer that never came up was accepted")


def test_apn_is_checked_and_set():
    engine, modem, _ = _engine([('AT+CGDCONT=1,"IP","iot.example"', OK),
                                ('AT+CNCFG=0,1,"iot.example"', OK)])
    at_modem.set_apn(engine, "iot.example", "sim7080")
    at_modem.set_apn(engine, None, "sim7080")  # nothing sent
    modem.done()
    try:
        at_modem.set_apn(engine, 'a"b', "simcom")
    except ValueError as e:
        assert "APN" in str(e)
    else:
        raise AssertionError("a quote went into an AT command")


class ScriptBoard(at_modem.AtModemBoard):
    """The board-independent part with a recorded PWRKEY (no UART: the test gives a stream)."""

    def __init__(self, cfg, clock):
        at_modem.AtModemBoard.__init__(self, cfg, log=self.logged, clock=clock,
                                       sleep=clock.sleep_ms)
        self.lines = []
        self.presses = 0

    def logged(self, line):
        self.lines.append(line)

    def press_pwrkey(self):
        self.presses += 1


IDENTIFY = [("AT+CGMI", "\r\nSIMCOM INCORPORATED\r\n" + OK),
            ("AT+CGMM", "\r\nSIMCOM_SIM7080G\r\n" + OK)]


def test_board_start_identifies_the_modem_and_picks_its_http_stack():
    clock = Clock()
    modem = FakeModem([("AT", OK), ("ATE0", OK)] + IDENTIFY + [
        ('AT+CGDCONT=1,"IP","iot"', OK), ('AT+CNCFG=0,1,"iot"', "\r\nERROR\r\n")], clock=clock)
    cfg = dict(at_modem.DEFAULTS, apn="iot", segment_size=128)
    b = ScriptBoard(cfg, clock).start(modem)
    assert b.stack == "sim7080" and b.presses == 0
    assert b.profile["segment_size"] == 128  # the configuration overrides the modem profile
    assert "SIMCOM_SIM7080G" in b.lines[0] and "HTTP stack sim7080" in b.lines[0], b.lines
    assert "APN failed" in b.lines[1], b.lines  # refused, logged, not fatal
    modem.done()


def test_board_network_waits_for_registration_and_bearer():
    clock = Clock()
    modem = FakeModem([("AT", OK), ("ATE0", OK)] + IDENTIFY + [
        ("AT+CEREG?", "\r\n+CEREG: 0,2\r\n" + OK),
        ("AT+CEREG?", "\r\n+CEREG: 0,1\r\n" + OK),
        ("AT+CNACT?", '\r\n+CNACT: 0,1,"10.1.1.1"\r\n' + OK),
    ], clock=clock)
    b = ScriptBoard(dict(at_modem.DEFAULTS), clock).start(modem)
    net = b.open_network("http://eim.example.com:8080")
    assert net.__class__.__name__ == "Sim7080Http" and net.engine is b.engine
    assert net.host == "eim.example.com" and net.port == 8080
    modem.done()


def test_board_recover_presses_only_a_silent_modem():
    clock = Clock()
    modem = FakeModem([("AT", OK), ("ATE0", OK)] + IDENTIFY + [
        ("AT", OK), ("ATE0", OK),  # recover(): it answers: nothing else
        ("AT", None), ("AT", None), ("AT", None),  # recover(): silent (3 tries)
        ("AT", None), ("AT", None),  # power_on's own check
        ("AT", OK), ("ATE0", OK),  # after PWRKEY
    ], clock=clock)
    b = ScriptBoard(dict(at_modem.DEFAULTS), clock).start(modem)
    b.recover(TransportError("x"))
    assert b.presses == 0
    b.recover(TransportError("modem gone"))
    assert b.presses == 1
    assert "not answering after modem gone" in b.lines[-3], b.lines
    modem.done()


def test_refresh_reopens_the_isdr_session_lazily():
    clock = Clock()
    b = ScriptBoard(dict(at_modem.DEFAULTS), clock)

    class Card:
        refreshed = 0

        def refresh(self):
            self.refreshed += 1

    session = IsdrSession(None)  # invalidate() needs no card: the channel is gone already
    session.is_open, session.channel = True, 2
    b.card, b.session = Card(), session
    b.refresh()
    assert b.card.refreshed == 1 and not b.session.is_open and b.session.channel == 0


def test_uart_stream_keeps_the_engine_contract_and_feeds_the_watchdog():
    class Uart:
        def __init__(self):
            self.rx = [b"OK", None, b""]
            self.tx = []

        def read(self, n):
            return self.rx.pop(0) if self.rx else None

        def write(self, b):
            self.tx.append(bytes(b))
            return None  # some ports answer None

        def any(self):
            return 2

    feeds = []
    s = UartStream(Uart(), idle=lambda: feeds.append(1))
    assert s.read(10) == b"OK" and s.read(10) == b"" and s.read(10) == b""
    assert len(feeds) == 3
    assert s.write(b"AT\r") == 3 and s.any() == 2


def test_ticks_clock_does_not_wrap():
    period = 1 << 30
    ticks = [period - 300]

    def diff(a, b):
        d = (a - b) % period
        return d - period if d >= period // 2 else d

    c = TicksClock(ticks=lambda: ticks[0], diff=diff)
    assert c() == 0
    ticks[0] = (ticks[0] + 500) % period  # wrapped past 2^30
    assert c() == 500
    ticks[0] = (ticks[0] + 1000) % period
    assert c() == 1500
