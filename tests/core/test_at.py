"""ipa_core.at against a scripted modem (tests/core/fakestream.py).

Every quirk of the modem fact sheet that the engine owns: OK/ERROR/CME/CMS,
verbose CME text, URCs before/inside/after answers, echo (also clipped),
stray lines, garbage bytes, over-long lines, silence (timeouts on a fake
clock, bounded), late answers after a timeout, prompts for raw data, sync.
Plain functions with assert: pytest and tools/mp_test.py run them.
"""

from ipa_core.at import (AtEngine, AtError, CME_ERRORS, ModemRestarted, causes_restart, is_boot,
                         is_urc)
from ipa_core.errors import ProtocolError, TimeoutError_, TransportError

from fakestream import FakeClock, FakeModem, Silence

OK = "\r\nOK\r\n"


def raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def rig(script, **kw):
    """(engine, modem, clock, urcs) with a URC callback collecting lines."""
    clock = FakeClock()
    max_line = kw.pop("max_line", 4096)
    modem = FakeModem(script, clock=clock, **kw)
    urcs = []
    eng = AtEngine(modem, urc=urcs.append, clock_ms=clock, max_line=max_line)
    return eng, modem, clock, urcs


# ---- final results ---------------------------------------------------------------------

def test_ok_returns_information_lines():
    eng, modem, _, urcs = rig([("AT+CGMM", "\r\nEC25\r\n" + OK), ("AT", OK)])
    assert eng.command("AT+CGMM") == ["EC25"]
    assert eng.command("AT") == []
    assert modem.written == b"AT+CGMM\rAT\r"
    assert urcs == []
    modem.done()


def test_plain_error_names_command_and_answer():
    eng, modem, _, _ = rig([('AT+CCHO="A000"', "\r\nERROR\r\n")])
    e = raises(AtError, eng.command, 'AT+CCHO="A000"')
    assert isinstance(e, TransportError)
    assert e.command == 'AT+CCHO="A000"' and e.final == "ERROR"
    assert e.cme is None and e.cms is None
    assert str(e) == 'AT+CCHO="A000": expected OK, modem answered ERROR'
    modem.done()


def test_cme_numeric_verbose_and_cms():
    eng, modem, _, _ = rig([
        ("AT+CSIM=4,\"00\"", "\r\n+CME ERROR: 13\r\n"),
        ("AT+CPIN?", "\r\n+CME ERROR: SIM busy\r\n"),
        ("AT+CMGS=1", "\r\n+CMS ERROR: 310\r\n"),
        ("AT+X", "\r\n+CME ERROR: something odd\r\n"),
    ])
    e = raises(AtError, eng.command, 'AT+CSIM=4,"00"')
    assert e.cme == 13 and e.final == "+CME ERROR: 13"
    assert "+CME ERROR: 13 (SIM failure)" in str(e) and 'AT+CSIM=4,"00"' in str(e)
    e = raises(AtError, eng.command, "AT+CPIN?")
    assert e.cme == 14 and "SIM busy" in str(e)
    e = raises(AtError, eng.command, "AT+CMGS=1")
    assert e.cms == 310 and e.cme is None and "(U)SIM not inserted" in str(e)
    e = raises(AtError, eng.command, "AT+X")
    assert e.cme is None and "something odd" in str(e)
    modem.done()


def test_cme_table_names_the_common_codes():
    for code, word in ((3, "not allowed"), (4, "not supported"), (10, "not inserted"),
                       (13, "SIM failure"), (14, "SIM busy"), (50, "incorrect parameters")):
        assert word in CME_ERRORS[code]


def test_no_carrier_is_a_final_error():
    eng, modem, _, _ = rig([("AT+QHTTPREAD=80", "\r\nNO CARRIER\r\n")])
    e = raises(AtError, eng.command, "AT+QHTTPREAD=80")
    assert e.final == "NO CARRIER"
    modem.done()


# ---- URCs, echo, stray lines ---------------------------------------------------------

def test_urcs_before_inside_and_after_the_answer():
    eng, modem, _, urcs = rig([
        ('AT+CSIM=10,"0070000001"',
         ['\r\n+QIND: "csq",20\r\n', '\r\n+CSIM: 6,"019000"\r\n', "\r\n+CREG: 1\r\n",
          OK, "\r\nRDY\r\n"]),
        ("AT", OK),
    ], chunks=(1, 3, 7))
    modem.inject("\r\n+CEREG: 5\r\n^SYSSTART\r\n")
    assert eng.command('AT+CSIM=10,"0070000001"', prefix="+CSIM:") == ['+CSIM: 6,"019000"']
    assert urcs == ["+CEREG: 5", "^SYSSTART", '+QIND: "csq",20', "+CREG: 1"]
    assert eng.command("AT") == []
    assert urcs[-1] == "RDY"  # arrived after OK: handed over before the next command
    modem.done()


def test_urc_without_prefix_is_not_an_answer_but_own_name_is():
    eng, modem, _, urcs = rig([
        ("AT+CPIN?", "\r\n+CREG: 2\r\n+CPIN: READY\r\n" + OK),
        ('AT+CCHO="A0"', "\r\n+CPIN: NOT READY\r\n1\r\n" + OK),
    ])
    assert eng.command("AT+CPIN?") == ["+CPIN: READY"]
    assert urcs == ["+CREG: 2"]
    assert eng.command('AT+CCHO="A0"') == ["1"]
    assert urcs == ["+CREG: 2", "+CPIN: NOT READY"]
    assert is_urc("+CREG: 1") and is_urc("RDY") and not is_urc("+CSIM: 4,\"9000\"")
    modem.done()


def test_urcs_kept_without_callback_bounded():
    clock = FakeClock()
    modem = FakeModem([("AT", OK)], clock=clock)
    eng = AtEngine(modem, clock_ms=clock)
    modem.inject("".join("\r\n+CREG: %d\r\n" % i for i in range(40)))
    eng.command("AT")
    assert len(eng.urcs) == 16 and eng.urcs[-1] == "+CREG: 39"


def test_echo_is_stripped():
    eng, modem, _, urcs = rig([
        ('AT+CSIM=10,"0070000001"', '\r\n+CSIM: 6,"019000"\r\n' + OK),
        ("ATE0", OK),
        ("AT+CGMM", "\r\nEC25\r\n" + OK),
    ], echo=True, chunks=(2, 5))
    assert eng.command('AT+CSIM=10,"0070000001"', prefix="+CSIM:") == ['+CSIM: 6,"019000"']
    assert eng.echo
    assert eng.command("ATE0") == []
    assert eng.command("AT+CGMM") == ["EC25"]
    assert not eng.echo and urcs == []
    modem.done()


def test_clipped_echo_is_stripped():
    # Seen on a Fibocom FM350 log: the echo lost its first character.
    eng, modem, _, urcs = rig([("AT+CCHC=1", "T+CCHC=1\r\r\nOK\r\n"),
                               ("AT+CGMM", "AT+CGMM\r\r\nEC25\r\n" + OK)])
    assert eng.command("AT+CCHC=1") == []
    assert eng.command("AT+CGMM") == ["EC25"]
    assert urcs == []
    modem.done()


def test_stray_lines_with_a_prefix_go_to_the_urc_path():
    eng, modem, _, urcs = rig([
        ('AT+CSIM=8,"00708001"', '\r\nsome text\r\n+CSIM:4,"9000"\r\n' + OK),
    ])
    assert eng.command('AT+CSIM=8,"00708001"', prefix="+CSIM:") == ['+CSIM:4,"9000"']
    assert urcs == ["some text"]
    modem.done()


# ---- garbage, bounds --------------------------------------------------------------------

def test_garbage_bytes_and_nul_are_dropped():
    eng, modem, _, urcs = rig([
        ('AT+CSIM=8,"00708001"',
         b'\x00\xff\xfe\r\n\x00+CSIM: 4,"9000"\r\n\x00\x00\r\n\xff\xfeOK\r\n'),
        ("AT+CGMM", b"\r\n\x80\x81\x82\r\nEC25\r\nOK\r\n"),
    ])
    assert eng.command('AT+CSIM=8,"00708001"', prefix="+CSIM:") == ['+CSIM: 4,"9000"']
    assert eng.command("AT+CGMM") == ["EC25"]
    assert urcs == [] and eng.noise >= 1
    modem.done()


def test_over_long_line_is_discarded_with_a_clear_error_and_memory_stays_bounded():
    junk = b"Z" * 5000
    eng, modem, _, _ = rig([("AT+CGMM", [junk, b"\r\nOK\r\n"]), ("AT", OK)], max_line=256)
    e = raises(ProtocolError, eng.command, "AT+CGMM")
    assert "AT+CGMM" in str(e) and "over 256 bytes without a line end" in str(e)
    assert len(eng._buf) <= 256 + 2
    # The rest of the junk and the stale OK are discarded before the next command.
    assert eng.command("AT") == []
    assert len(eng._buf) <= 258
    modem.done()


def test_too_many_information_lines():
    eng, modem, _, _ = rig([("AT+COPS=?", "".join("\r\nline %d\r\n" % i for i in range(70)) + OK)])
    e = raises(ProtocolError, eng.command, "AT+COPS=?")
    assert "more than 64 lines" in str(e)
    modem.done()


# ---- timeouts ---------------------------------------------------------------------------

def test_silent_modem_times_out_bounded_on_the_fake_clock():
    eng, modem, clock, _ = rig([("AT+CGMM", None)])
    e = raises(TimeoutError_, eng.command, "AT+CGMM", 3000)
    assert isinstance(e, TransportError)
    assert str(e) == "AT+CGMM: no final result (OK/ERROR) within 3000 ms"
    assert 3000 <= clock.t <= 3040
    modem.done()


def test_timeout_reports_partial_answer():
    eng, modem, _, _ = rig([("AT+CSIM=4,\"00\"", '\r\n+CSIM: 4,"9000"\r\n')])
    e = raises(TimeoutError_, eng.command, 'AT+CSIM=4,"00"', 1000, "+CSIM:")
    assert "got only" in str(e) and "+CSIM: 4" in str(e)


def test_modem_answering_only_urcs_still_times_out():
    eng, modem, clock, urcs = rig([("AT+CGMM", [("\r\n+CREG: 1\r\n", Silence(100)) [i % 2]
                                                for i in range(200)])])
    raises(TimeoutError_, eng.command, "AT+CGMM", 2000)
    assert clock.t <= 2100 and len(urcs) >= 10


def test_endless_urc_flood_still_times_out():
    flood = "\r\n+CEREG: 2\r\n" * 3000
    eng, modem, clock, urcs = rig([("AT+CGMM", [flood, OK])], read_ms=20)
    e = raises(TimeoutError_, eng.command, "AT+CGMM", 1000)
    assert "within 1000 ms" in str(e)
    assert 1000 <= clock.t <= 1020 and 0 < len(urcs) < 3000


def test_late_answer_after_timeout_is_not_taken_for_the_next_command():
    eng, modem, _, urcs = rig([
        ('AT+CSIM=8,"00708001"', [Silence(1000), '\r\n+CSIM: 4,"9000"\r\n' + OK]),
        ("AT+CGMM", "\r\nEC25\r\n" + OK),
    ])
    raises(TimeoutError_, eng.command, 'AT+CSIM=8,"00708001"', 1000, "+CSIM:")
    assert eng.command("AT+CGMM") == ["EC25"]
    assert '+CSIM: 4,"9000"' in urcs and "OK" in urcs
    modem.done()


# ---- prompts and raw data -------------------------------------------------------------

def test_data_command_with_a_bare_prompt():
    body = b'{"a":1}'
    eng, modem, _, _ = rig([("AT+SHBOD=7,10000", "\r\n> "), (body, OK)], chunks=(1,))
    assert eng.data_command("AT+SHBOD=7,10000", body) == []
    assert eng.last_prompt == ">"
    assert modem.raw == [body]
    modem.done()


def test_data_command_connect_and_download():
    url = b"https://eim.example.com/"
    eng, modem, _, _ = rig([
        ("AT+QHTTPURL=24,80", "\r\nCONNECT\r\n"), (url, OK),
        ("AT+HTTPDATA=3,1000", "\r\nDOWNLOAD\r\n"), (b"abc", OK),
        ("AT+HTTPDATA=3,1000", "\r\n+CME ERROR: 3\r\n"),
        ("AT+QHTTPCFG=1", OK),
    ])
    assert eng.data_command("AT+QHTTPURL=24,80", url, timeout_ms=80000) == []
    assert eng.data_command("AT+HTTPDATA=3,1000", b"abc") == []
    e = raises(AtError, eng.data_command, "AT+HTTPDATA=3,1000", b"abc")
    assert e.cme == 3
    e = raises(ProtocolError, eng.data_command, "AT+QHTTPCFG=1", b"x")
    assert "expected a prompt" in str(e)
    modem.done()


def test_read_raw_after_connect_then_final_result():
    body = b"\r\nOK\r\n\x00\xffbinary"  # raw bytes that look like a result must stay data
    eng, modem, _, urcs = rig([
        ("AT+QHTTPREAD=80", [b"\r\nCONNECT\r", b"\n" + body, b"\r\nOK\r\n\r\n+QHTTPREAD: 0\r\n"]),
    ], chunks=(3, 1, 5))
    assert eng.data_command("AT+QHTTPREAD=80", None, prompt=("CONNECT",)) == []
    assert eng.read_raw(len(body)) == body
    assert eng.finish() == []
    assert eng.wait_urc("+QHTTPREAD:") == "+QHTTPREAD: 0"
    modem.done()


def test_read_raw_times_out():
    eng, modem, _, _ = rig([("AT+QHTTPREAD=80", "\r\nCONNECT\r\nabc")])
    eng.data_command("AT+QHTTPREAD=80", None, prompt=("CONNECT",))
    e = raises(TimeoutError_, eng.read_raw, 10, 500)
    assert "3 of 10 bytes within 500 ms" in str(e)


def test_read_raw_until_marker():
    eng, modem, _, _ = rig([("AT+SHREAD=0,5", "\r\nCONNECT\r\nhello\r\nOK\r\n")])
    eng.data_command("AT+SHREAD=0,5", None, prompt=("CONNECT",))
    assert eng.read_raw_until(b"\r\nOK\r\n", 100) == b"hello"


def test_wait_urc_after_ok():
    eng, modem, _, urcs = rig([("AT+QHTTPPOST=5,60,60", ["\r\nCONNECT\r\n"]),
                               (b"hello", [OK, Silence(200), "\r\n+QHTTPPOST: 0,200,12\r\n"])])
    eng.data_command("AT+QHTTPPOST=5,60,60", b"hello")
    assert eng.wait_urc("+QHTTPPOST:", 1000) == "+QHTTPPOST: 0,200,12"
    raises(TimeoutError_, eng.wait_urc, "+QHTTPPOST:", 100)
    modem.done()


# ---- sync, writes -----------------------------------------------------------------------

def test_sync_flushes_garbage_retries_and_turns_echo_off():
    eng, modem, _, _ = rig([
        ("AT", None),  # first AT lost (modem still booting)
        ("AT", b"\xff\x00garbage\r\nAT\r\r\nOK\r\n"),
        ("ATE0", "ATE0\r\r\nOK\r\n"),
    ])
    modem.inject(b"\x00\xfe\xfd boot noise \r\n")
    assert eng.sync(tries=3, timeout_ms=500)
    modem.done()


def test_sync_gives_up_after_tries():
    eng, modem, clock, _ = rig([("AT", None), ("AT", None)])
    e = raises(TimeoutError_, eng.sync, 2, 300)
    assert "2 tries" in str(e)
    assert clock.t < 2000
    modem.done()


class _SlowWriter:
    """A stream whose write() takes 3 bytes at a time (a UART with a small FIFO)."""

    def __init__(self, inner):
        self.inner = inner

    def read(self, n):
        return self.inner.read(n)

    def write(self, data):
        return self.inner.write(data[:3])


def test_partial_writes_are_completed():
    clock = FakeClock()
    modem = FakeModem([('AT+CSIM=8,"00708001"', '\r\n+CSIM: 4,"9000"\r\n' + OK)], clock=clock)
    eng = AtEngine(_SlowWriter(modem), clock_ms=clock)
    assert eng.command('AT+CSIM=8,"00708001"', prefix="+CSIM:") == ['+CSIM: 4,"9000"']
    modem.done()


def test_commands_with_line_breaks_are_refused():
    eng, _, _, _ = rig([])
    raises(ValueError, eng.command, "AT\rAT")
    raises(ValueError, eng.command, "  ")


# ---- modem restarts ---------------------------------------------------------------------

CSIM = 'AT+CSIM=22,"81E2910006BF3E035C015A"'
BOOT = "\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nSMS DONE\r\n"


def test_boot_lines_and_restart_commands_are_recognised():
    for line in ("RDY", "^SYSSTART", "^SYSSTART AIRPLANE MODE", "+SYSSTART", "+CPIN: READY",
                 "+CPIN:READY", "+CFUN: 1", "*ATREADY: 1"):
        assert is_boot(line) and is_urc(line), line
    for line in ("+CPIN: SIM PIN", "+CFUN: 0", "+QUSIM: 1", "PB DONE", "READY", "RDYX", "OK"):
        assert not is_boot(line), line
    for cmd in ("AT+CFUN=1", "AT+CFUN=1,1", "at+cfun=0", "ATZ", "AT&F", 'AT+CPIN="1234"',
                "AT+CRESET", "AT^RESET", "AT+QPOWD=1"):
        assert causes_restart(cmd), cmd
    for cmd in ("AT+CFUN?", "AT+CPIN?", "AT+CFUN=?", "AT+CGMM", "AT+CCHO=\"A0\""):
        assert not causes_restart(cmd), cmd
    assert not causes_restart(CSIM) and not causes_restart("AT")


def test_rdy_before_the_first_answer_is_start_up_noise():
    # Seen on Quectel-style modems (SimModem echo_urc): the port was opened while the
    # modem booted; RDY comes before, and with, the first answer, +CPIN: READY after it.
    eng, modem, _, urcs = rig([("AT", "\r\nRDY\r\n" + OK), ("ATE0", "\r\n+CPIN: READY\r\n" + OK),
                               ("AT+CGMM", "\r\nEC25\r\n" + OK)])
    modem.inject("\r\n^SYSSTART\r\n")
    assert not eng.started
    assert eng.sync(tries=1, timeout_ms=500)
    assert eng.started and eng.restarts == 0
    assert eng.command("AT+CGMM") == ["EC25"]
    assert urcs == ["^SYSSTART", "RDY", "+CPIN: READY"] and eng.restarts == 0
    modem.done()


def test_sim_ready_long_after_start_up_is_a_restart():
    # No boot line at start-up: the modem was up long before; +CPIN: READY now means
    # the SIM was initialised again (channels gone).
    eng, modem, _, _ = rig([("AT", OK), ("AT+CGMM", "\r\n+CPIN: READY\r\n" + OK)])
    eng.command("AT")
    e = raises(ModemRestarted, eng.command, "AT+CGMM")
    assert e.line == "+CPIN: READY"
    modem.done()


def test_restart_while_a_command_waits_fails_at_once():
    eng, modem, clock, urcs = rig([
        ("AT", OK),
        (CSIM, [Silence(3000), BOOT]),  # rebooted: the APDU is never answered
        ("AT+CGMM", "\r\n+CPIN: READY\r\nEC25\r\n" + OK),
    ])
    eng.command("AT")
    t0 = clock.t
    e = raises(ModemRestarted, eng.command, CSIM, 120000, "+CSIM:")
    assert isinstance(e, TransportError) and not isinstance(e, AtError)
    assert clock.t - t0 <= 3100  # not the 120 s of the timeout
    assert e.command == CSIM and e.line == "RDY" and e.when == "during"
    assert str(e) == ("modem restarted during AT+CSIM=22,\"81E2910006BF3E035C015A\" "
                      "(it sent 'RDY'): logical channels are lost, reopen the session")
    assert eng.restarts == 1 and eng.restart_line == "RDY"
    # The rest of that boot's chatter, before and during the next command, is part of it.
    assert eng.command("AT+CGMM") == ["EC25"]
    assert eng.restarts == 1 and "+CFUN: 1" in urcs and urcs.count("+CPIN: READY") == 2
    modem.done()


def test_restart_before_the_command_was_written_is_counted_not_failed():
    eng, modem, _, urcs = rig([("AT", OK), ("AT+CGMM", "\r\nEC25\r\n" + OK)])
    eng.command("AT")
    modem.inject("\r\n^SYSSTART\r\n")  # came while nothing was asked
    assert eng.command("AT+CGMM") == ["EC25"]
    assert modem.peeks and eng.restarts == 1 and eng.restart_line == "^SYSSTART"
    assert urcs == ["^SYSSTART"]
    modem.done()


def test_settle_counts_a_restart_without_sending_anything():
    eng, modem, _, _ = rig([("AT", OK)])
    eng.command("AT")
    modem.inject(BOOT)
    eng.settle()
    assert eng.restarts == 1 and modem.written == b"AT\r"


def test_without_any_a_line_before_the_command_counts_as_during_it():
    # A stream that cannot say what is waiting: the engine cannot tell "before" from "during".
    eng, modem, _, _ = rig([("AT", OK), ("AT+CGMM", "\r\nEC25\r\n" + OK)], peek=False)
    eng.command("AT")
    modem.inject("\r\nRDY\r\n")
    e = raises(ModemRestarted, eng.command, "AT+CGMM")
    assert e.command == "AT+CGMM" and eng.restarts == 1


def test_own_answers_and_restart_commands_are_no_restart():
    eng, modem, clock, urcs = rig([
        ("AT+CPIN?", "\r\n+CPIN: READY\r\n" + OK),
        ("AT+CFUN?", "\r\n+CFUN: 1\r\n" + OK),
        ("AT+CFUN=0", OK),
        ("AT+CFUN=1", "\r\nRDY\r\n" + OK + "\r\n+CPIN: READY\r\n"),
        ("AT+CGMM", "\r\nRDY\r\nEC25\r\n" + OK),  # within the grace window: same restart
        ("ATZ", "\r\nRDY\r\n" + OK),
        ("AT+CGMI", [Silence(21000), OK]),  # the grace window ends
        ("AT+CGMR", "\r\n+CPIN: READY\r\n" + OK),
    ])
    assert eng.command("AT+CPIN?") == ["+CPIN: READY"]
    assert eng.command("AT+CFUN?") == ["+CFUN: 1"]
    assert eng.command("AT+CFUN=0") == []
    assert eng.command("AT+CFUN=1", 15000) == []
    assert eng.command("AT+CGMM") == ["EC25"]
    assert eng.command("ATZ") == []
    assert eng.command("AT+CGMI", 30000) == []
    assert eng.restarts == 0
    e = raises(ModemRestarted, eng.command, "AT+CGMR")
    assert e.line == "+CPIN: READY" and eng.restarts == 1
    modem.done()


def test_caller_may_say_a_command_restarts():
    eng, modem, _, _ = rig([("AT", OK), ("AT+QRST=1,0", "\r\nRDY\r\n" + OK)])
    eng.command("AT")
    assert eng.command("AT+QRST=1,0", restarts=True) == []
    assert eng.restarts == 0
    modem.done()


def test_sync_after_a_restart_counts_it_without_failing():
    eng, modem, _, _ = rig([("AT", OK), ("AT", "\r\nRDY\r\n" + OK), ("ATE0", OK)])
    eng.command("AT")
    assert eng.sync(tries=1, timeout_ms=500)
    assert eng.restarts == 1
    modem.done()


def test_restart_while_waiting_for_a_late_result():
    eng, modem, _, _ = rig([("AT+QHTTPPOST=5,60,60", ["\r\nCONNECT\r\n"]),
                            (b"hello", [OK, Silence(200), "\r\n^SYSSTART\r\n"])])
    eng.data_command("AT+QHTTPPOST=5,60,60", b"hello")
    e = raises(ModemRestarted, eng.wait_urc, "+QHTTPPOST:", 60000)
    assert "+QHTTPPOST:" in str(e) and e.line == "^SYSSTART"
    modem.done()
