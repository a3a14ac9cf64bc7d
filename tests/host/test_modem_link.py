"""ipa_host.modem_link.ModemConnectivity: the SIM refresh, the registration wait and the HTTP
stack's bearer, against the simulated modem on a pty (ipa_host.sim.modem.modem) through the real
AT path (SerialStream -> AtEngine -> AtCard -> IsdrSession), plus the answer parsers.
"""

import http.server
import threading
import time

import pytest

from euicc_fixtures import ICCID_1, make_euicc
from ipa_core import at_http, es10
from ipa_core.at_card import open_isdr_session
from ipa_core.at_http import HttpStackError
from ipa_host.card.serial import open_at_card
from ipa_host.modem_link import BEARERS, ModemConnectivity, bearer_active, parse_registration
from ipa_host.sim.modem.modem import SimModem

# ---- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize("lines,prefix,stat", [
    (["+CEREG: 0,1"], "+CEREG:", 1),
    (["+CEREG:0,5"], "+CEREG:", 5),  # no space after ':'
    (['+CEREG: 2,1,"1A2B","01A2B3C4",7'], "+CEREG:", 1),  # <n> 2: location
    (['+CEREG: 2,5,"1A2B","01A2B3C4",7'], "+CEREG:", 5),
    (['+CEREG: 4,1,"0001","01A2D001",7,,,"11100000","11100000"'], "+CEREG:", 1),  # nRF91 n=4
    (["+CEREG: 3,3,,,,0,15"], "+CEREG:", 3),  # denied, with a reject cause
    (["+CEREG: 0,2"], "+CEREG:", 2),
    (["+cereg: 0,1"], "+CEREG:", 1),  # lower case
    (['+CGREG: 2,1,"1A2B","01A2B3C4",7,"01"'], "+CGREG:", 1),  # with <rac>
    (["+CREG: 1,5"], "+CREG:", 5),
    # A URC that came while the command waited has the command's prefix: the read form wins,
    # wherever it is, and the URC form counts only without one.
    (['+CEREG: 1,"1A2B","01A2B3C4",7', "+CEREG: 2,2"], "+CEREG:", 2),
    (["+CEREG: 0,2", "+CEREG: 1"], "+CEREG:", 2),
    (["+CEREG: 5"], "+CEREG:", 5),
    (['+CEREG: 1,"1A2B","01A2B3C4",7'], "+CEREG:", 1),
    (["+CEREG: 3,,,,0,15"], "+CEREG:", 3),  # URC form with a reject cause
    # nothing usable
    (["+CGREG: 0,1"], "+CEREG:", None),
    ([], "+CEREG:", None),
    (["+CEREG: x,y"], "+CEREG:", None),
    (["+CEREG: "], "+CEREG:", None),
    (["OK"], "+CEREG:", None),
])
def test_parse_registration(lines, prefix, stat):
    assert parse_registration(lines, prefix) == stat


def test_bearer_answers():
    assert bearer_active(['+QIACT: 1,1,1,"10.64.0.2"'], "+QIACT:", "1")
    assert not bearer_active(['+QIACT: 2,1,1,"10.64.0.3"'], "+QIACT:", "1")
    assert not bearer_active([], "+QIACT:", "1")  # Quectel lists active contexts only
    cnact = ['+CNACT: 0,1,"10.64.0.2"', '+CNACT: 1,0,"0.0.0.0"']
    assert bearer_active(cnact, "+CNACT:", "0") and not bearer_active(cnact, "+CNACT:", "1")
    assert bearer_active(["+CGACT: 1,1", "+CGACT: 2,0"], "+CGACT:", "1")
    assert not bearer_active(["+CGACT: 1,0"], "+CGACT:", "1")
    assert sorted(BEARERS) == sorted(at_http.STACKS)  # one bearer per modem HTTP stack


def test_bad_arguments():
    with pytest.raises(ValueError, match="modem HTTP stack 'nokia'"):
        ModemConnectivity(object(), engine=object(), stack="nokia")
    with pytest.raises(ValueError, match="poll_ms"):
        ModemConnectivity(object(), engine=object(), poll_ms=0)


# ---- against the simulated modem ------------------------------------------------------------


@pytest.fixture
def euicc(tmp_path):
    return make_euicc(tmp_path)


class Rig:
    """A SimModem holding the eUICC, an AtCard on its pty, the ISD-R session over it and a
    ModemConnectivity whose log is kept in .logs."""

    def __init__(self, euicc, personality, mode, stack, options, refresh=True):
        self.modem = SimModem(euicc, personality, **options).start()
        self.card = open_at_card(self.modem.path, mode=mode)
        self.session = open_isdr_session(self.card)
        self.logs = []
        self.link = ModemConnectivity(self.card, self.card.engine, session=self.session,
                                      stack=stack, refresh=refresh, poll_ms=100,
                                      log=lambda level, msg: self.logs.append(
                                          (level, msg[len("modem: "):])))

    def sent(self, start=0):
        return list(self.modem.received)[start:]

    def close(self):
        try:
            self.session.close()
        finally:
            self.card.close()
            self.modem.stop()


@pytest.fixture
def make_rig(euicc):
    made = []

    def make(personality="textbook", mode="auto", stack=None, refresh=True, **options):
        r = Rig(euicc, personality, mode, stack, options, refresh)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.mark.parametrize("mode", ["cgla", "csim"])
def test_refresh_then_registration(make_rig, euicc, mode):
    rig = make_rig(mode=mode, attach_delay=0.4)
    eid = es10.get_eid(rig.session)
    before = len(rig.modem.received)
    rig.link.refresh()
    sent = rig.sent(before)
    assert sent[-2:] == ["AT+CFUN=0", "AT+CFUN=1"], sent
    assert (mode == "cgla") == sent[0].startswith("AT+CCHC=")  # the AtCard's own session
    assert rig.modem.at.sim_reads == 1 and rig.modem.open_channels == set()
    assert not rig.session.is_open and not rig.card.is_open
    t0 = time.monotonic()
    assert rig.link.wait_connected(5000) is True
    took = time.monotonic() - t0
    assert 0.35 <= took < 2.0, took  # registered attach_delay after AT+CFUN=1
    assert rig.link.last_stat == 1 and rig.link.last_line == "+CEREG: 0,1"
    polls = [c for c in rig.sent(before) if c == "AT+CEREG?"]
    assert len(polls) >= 2  # searching first, then registered
    # The ISD-R session reopens by itself: a new AT+CCHO session (cgla) or channel (csim).
    assert es10.get_eid(rig.session) == eid
    if mode == "cgla":
        assert len([c for c in rig.sent(before) if c.startswith("AT+CCHO=")]) == 1
    else:
        assert rig.modem.open_channels == {rig.session.channel}
    text = [m for _lv, m in rig.logs]
    assert "AT > AT+CFUN=0" in text and "AT > AT+CFUN=1" in text
    assert text.index("AT > AT+CFUN=0") < text.index("AT > AT+CFUN=1")
    assert any(m.startswith("registered (home network)") for m in text), text


def test_location_urcs_and_roaming(make_rig):
    rig = make_rig(roaming=True, attach_delay=0.2)
    rig.card.engine.command("AT+CEREG=2")
    rig.card.engine.command("AT+CREG=1")
    rig.link.refresh()
    assert rig.link.wait_connected(5000) is True
    assert rig.link.last_stat == 5
    assert rig.link.last_line == '+CEREG: 2,5,"1A2B","01A2B3C4",7'
    time.sleep(0.3)
    rig.card.engine.command("AT")  # the URCs that came meanwhile go to the URC path
    # Radio off, SIM read again, searching, registered (roaming). The link polls with
    # AT+CEREG?, so a +CEREG URC (searching "2", registered "5") that arrives inside that
    # answer is read as the answer, where the read form wins: those two may be missing
    # here, in that order when present (a loaded machine makes it likely).
    urcs = rig.card.engine.urcs
    assert [u for u in urcs if not u.startswith("+CEREG")] == [
        "+CREG: 0", "+CPIN: READY", "+CREG: 2", "+CREG: 5"], urcs
    cereg = [u.split(",")[0] for u in urcs if u.startswith("+CEREG")]
    assert cereg[0] == "+CEREG: 0" and cereg[1:] in ([], ["+CEREG: 2"], ["+CEREG: 5"],
                                                     ["+CEREG: 2", "+CEREG: 5"]), urcs
    assert urcs.index("+CEREG: 0") < urcs.index("+CPIN: READY"), urcs


def test_quirky_modems_answer_too(make_rig):
    # echo that ATE0 does not stop, RDY, random +CREG:/+CGREG: URCs inside the answers.
    rig = make_rig("echo_urc", attach_delay=0.2)
    rig.link.refresh()
    assert rig.link.wait_connected(5000) is True and rig.link.last_stat == 1
    # nRF91-like: AT+CEREG only; the others answer ERROR once and are not asked again.
    nrf = make_rig("cme_error", attach_delay=0.3)
    nrf.link.refresh()
    assert nrf.link.wait_connected(5000) is True
    assert nrf.link.reg_commands == ["AT+CEREG?"]
    sent = nrf.sent()
    assert sent.count("AT+CGREG?") == 1 and sent.count("AT+CREG?") == 1
    assert sent.count("AT+CEREG?") >= 2


def test_no_network_times_out_in_bounded_time(make_rig, euicc):
    rig = make_rig(no_network_iccids=(ICCID_1,))  # the enabled profile finds no network
    assert euicc.state.enabled_profile()["iccid"] == ICCID_1
    rig.link.refresh()
    t0 = time.monotonic()
    assert rig.link.wait_connected(1500) is False
    took = time.monotonic() - t0
    assert 1.4 <= took < 3.0, took
    assert rig.link.last_stat == 2 and rig.link.last_line == "+CEREG: 0,2"
    assert ("warning", "not registered within 1 s after the profile switch (last answer: "
                       "+CEREG: 0,2)") in rig.logs
    # A zero budget asks once and gives up at once.
    t0 = time.monotonic()
    assert rig.link.wait_connected(0) is False
    assert time.monotonic() - t0 < 1.0


def test_a_modem_that_never_reattaches(make_rig):
    rig = make_rig(reattach=False)
    assert rig.link.wait_connected(1000) is True  # registered since power-on
    rig.link.refresh()
    assert rig.link.wait_connected(800) is False and rig.link.last_stat == 2


def test_no_registration_command_at_all(make_rig):
    rig = make_rig(reg_commands=())
    rig.link.refresh()
    t0 = time.monotonic()
    assert rig.link.wait_connected(5000) is True  # cannot tell: the eIM exchange decides
    assert time.monotonic() - t0 < 1.5
    assert any(lv == "warning" and "answers none of AT+CEREG?, AT+CGREG?, AT+CREG?" in m
               for lv, m in rig.logs), rig.logs


def test_refresh_refused_is_logged_not_raised(make_rig):
    rig = make_rig()
    rig.card.profile["refresh"] = ("AT+CFUN=9",)  # a modem that refuses the command
    rig.link.refresh()
    assert "ERROR" in str(rig.link.refresh_error)
    assert not rig.session.is_open  # invalidated all the same
    assert any(lv == "warning" and "refresh failed" in m for lv, m in rig.logs)
    assert rig.link.wait_connected(2000) is True  # never deregistered
    assert es10.get_eid(rig.session)


def test_refresh_off_sends_nothing(make_rig):
    rig = make_rig(refresh=False)
    before = len(rig.modem.received)
    rig.link.refresh()
    assert not any("CFUN" in c for c in rig.sent(before))
    assert rig.session.is_open and rig.modem.at.sim_reads == 0
    assert rig.link.wait_connected(2000) is True


# ---- the bearer of the modem's HTTP stack ---------------------------------------------------


class _Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[::-1])


@pytest.fixture
def server():
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Ok)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield "http://127.0.0.1:%d" % srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("personality,stack,activation,failure", [
    ("quectel_http", "quectel", "AT+QIACT=1", "Quectel HTTP stack error 709"),
    ("sim7080", "sim7080", "AT+CNACT=0,1", "AT+SHCONN"),
    ("a7670", "simcom", "AT+CGACT=1,1", "SIMCom HTTP stack error 717 (no network)"),
])
def test_bearer_comes_back_after_the_refresh(make_rig, server, personality, stack, activation,
                                             failure):
    rig = make_rig(personality, stack=stack, attach_delay=0.2)
    net = at_http.open_network(rig.card.engine, server, stack, http_timeout_ms=5000)
    try:
        assert net.post("/x", b"abc", "application/octet-stream") == (200, b"cba")
        net.close()
        rig.link.refresh()
        # Registered again, but the refresh took the data bearer: the stack fails ...
        assert rig.link.stack == stack
        rig.link.stack = None
        assert rig.link.wait_connected(3000) is True
        with pytest.raises(Exception) as e:
            net.post("/x", b"abc", "application/octet-stream")
        assert failure in str(e.value), e.value
        assert isinstance(e.value, HttpStackError) or "AT+SHCONN" in str(e.value)
        net.close()
        # ... until wait_connected brings the stack's bearer up again.
        rig.link.stack = stack
        before = len(rig.modem.received)
        assert rig.link.wait_connected(3000) is True
        assert activation in rig.sent(before)
        assert rig.modem.at.activations == 1
        assert net.post("/x", b"abcd", "application/octet-stream") == (200, b"dcba")
        # Up already: asked, not activated again.
        before = len(rig.modem.received)
        assert rig.link.wait_connected(3000) is True
        assert activation not in rig.sent(before) and rig.modem.at.activations == 1
    finally:
        net.close()


def test_bearer_that_never_comes_up(make_rig):
    rig = make_rig("sim7080", stack="sim7080", no_network_iccids=(ICCID_1,))
    rig.link.refresh()
    t0 = time.monotonic()
    assert rig.link.wait_connected(1000) is False  # not registered: no bearer attempt
    assert time.monotonic() - t0 < 2.5
    assert "AT+CNACT=0,1" not in rig.sent()


# ---- wiring: configuration and runner ---------------------------------------------------------


def test_card_refresh_settings(tmp_path):
    from ipa_host.config import ConfigError, load_config

    cfg = load_config(None)["card"]
    assert cfg["refresh"] is None and cfg["attach_timeout"] == 180  # None: by card kind
    path = tmp_path / "ipa.toml"
    path.write_text("[card]\nrefresh = false\nattach_timeout = 30\n")
    cfg = load_config(str(path))["card"]
    assert cfg["refresh"] is False and cfg["attach_timeout"] == 30
    for bad, why in (('refresh = "yes"', "[card] refresh = 'yes': expected true or false"),
                     ("attach_timeout = 0", "[card] attach_timeout = 0: expected a whole "
                                            "number 1..3600")):
        path.write_text("[card]\n%s\n" % bad)
        with pytest.raises(ConfigError) as e:
            load_config(str(path))
        assert why in str(e.value), e.value


@pytest.mark.parametrize("personality,network,refresh,stack,enabled", [
    ("textbook", "socket", None, None, True),
    ("sim7080", "modem", None, "sim7080", True),  # the stack from the identity
    ("textbook", "modem:quectel", False, "quectel", False),  # named; [card] refresh = false
    ("textbook", "modem", True, None, True),  # no stack known: build_network says so
])
def test_runner_builds_it_for_at_cards(euicc, tmp_path, personality, network, refresh, stack,
                                       enabled):
    from ipa_host import runner

    m = SimModem(euicc, personality).start()
    try:
        st = runner.Settings(card="at:" + m.path, home=str(tmp_path), network=network,
                             refresh=refresh)
        s = runner.open_session(st)
        try:
            link = runner.build_connectivity(st, s)
            assert isinstance(link, ModemConnectivity)
            assert link.card is s.card and link.session is s and link.engine is s.card.engine
            assert (link.stack, link.enabled) == (stack, enabled)
        finally:
            s.close()
    finally:
        m.stop()
    # Other cards: nothing (the Ipa's default, always connected), [card] refresh or not.
    st = runner.Settings(card="sim", home=str(tmp_path), refresh=True)
    s = runner.open_session(st)
    try:
        assert runner.build_connectivity(st, s) is None
    finally:
        s.close()
