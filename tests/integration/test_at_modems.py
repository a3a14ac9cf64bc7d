"""ES10 over AT commands, end to end, against every simulated modem personality.

    ipa_core.es10 -> IsdrSession -> ipa_core.at_card.AtCard -> ipa_core.at.AtEngine
      -> ipa_host.card.serial.SerialStream -> pty -> ipa_host.sim.modem.modem.SimModem
      -> ipa_host.sim.euicc.euicc.VirtualEuicc

Checked in every personality and mode: ES10c.GetEID, ES10b.GetEuiccInfo2,
GetEimConfigurationData, ES10c.GetProfilesInfo, ES10b.ListNotification and
one ES10b.LoadEuiccPackage (signed by the eIM key, result verified with the
eUICC certificate by the fixtures' own decoder). Then the faults: garbage
bytes, a modem that stops answering, a reboot in the middle of an APDU or
between two, a modem without a profile entry that cuts answers, and
channels a previous run left open. Every wait is bounded and timed.
"""

import os
import time

import pytest

from euicc_fixtures import (EIM_ID, ICCID_1, ICCID_2, ICCID_EMERGENCY, ICCID_FALLBACK,
                            build_package, decode_epr, epr_signature_ok, make_euicc,
                            psmo_list_profile_info)
from ipa_core import es10
from ipa_core.at import AtError, ModemRestarted
from ipa_core.at_card import open_isdr_session
from ipa_core.errors import ProtocolError, TimeoutError_, TransportError
from ipa_host.card.select import open_card
from ipa_host.card.serial import open_at_card
from ipa_host.sim.modem.modem import SimModem

ICCIDS = [ICCID_1, ICCID_2, ICCID_FALLBACK, ICCID_EMERGENCY]
GENERIC = {"manufacturer": "IPA Sim", "model": "SIM-MODEM-1"}  # no entry in ipa_core.modems

# (personality, options): the behavioural ones; faults have their own tests below.
PERSONALITIES = [
    ("textbook", {}),
    ("bare_ccho", {}),
    ("no_test_cmds", {}),
    ("csim_only", {}),
    ("echo_urc", {}),
    ("cme_error", {}),
    ("truncate256", {}),
    ("slow", {"delay": 0.04}),
    ("garbage", {}),
]
CASES = [(p, o, mode) for p, o in PERSONALITIES for mode in ("auto", "cgla", "csim")
         if not (p == "csim_only" and mode == "cgla")]


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    # T=1: the faults below are placed APDU by APDU for a card that answers in the same
    # exchange; a T=0 card behind the modems: tests/integration/test_ipa_modem.py.
    return make_euicc(tmp_path_factory.mktemp("at"), protocol="T1")


@pytest.fixture
def modem_factory(card):
    made = []

    def make(personality="textbook", **options):
        m = SimModem(card, personality, **options).start()
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop()


def next_counter(card):
    return card.state.find_eim(EIM_ID)["counter"] + 1


def run_es10(card, s):
    """The ES10 functions of the task on session s; asserts what a user would check."""
    assert es10.get_eid(s) == card.eid.upper()
    info2 = es10.get_euicc_info2(s)
    assert info2["raw"][:2] == b"\xbf\x22"
    assert info2["iotSpecificInfo"]["iotVersion"] == ["1.2.0"]
    eims = es10.get_eim_configuration_data(s)
    assert [e["eimId"] for e in eims] == [EIM_ID]
    profiles = es10.get_profiles_info(s)
    assert [p["iccid"] for p in profiles] == ICCIDS
    notes = es10.list_notification(s)
    assert isinstance(notes, list)
    counter = next_counter(card)
    result = es10.load_euicc_package(s, build_package(card, counter,
                                                      psmos=[psmo_list_profile_info()]))
    assert result["kind"] == "euiccPackageResultSigned"
    assert result["counterValue"] == counter
    listed = result["euiccResult"][0]["listProfileInfoResult"]["profileInfoListOk"]
    assert [p["iccid"] for p in listed] == ICCIDS
    epr = decode_epr(result["raw"])  # the fixtures' own decoder, not the core's
    assert epr["counter"] == counter and epr_signature_ok(card, epr)
    return result


@pytest.mark.parametrize("personality,options,mode", CASES,
                         ids=["%s-%s" % (p, m) for p, _o, m in CASES])
def test_es10_over_at(card, modem_factory, personality, options, mode):
    m = modem_factory(personality, **options)
    t0 = time.monotonic()
    urcs = []
    c = open_at_card(m.path, mode=mode, urc=urcs.append)
    try:
        want = "csim" if mode == "csim" or personality == "csim_only" else "cgla"
        assert c.mode == want, c.notes
        s = open_isdr_session(c)
        assert s.modem_channel == (want == "cgla")
        run_es10(card, s)
        s.close()
    finally:
        c.close()
    assert time.monotonic() - t0 < 15
    # everything closed behind us: no session, no channel left on the card
    assert m.sessions == {} and m.open_channels == set()
    assert not c.stream.is_open
    sent = list(m.received)
    if personality == "truncate256":
        # the answers were cut at 256 bytes and completed with GET RESPONSE (Le 253)
        assert any("C00000FD" in cmd for cmd in sent), sent[-10:]
    if personality == "bare_ccho" and want == "cgla":
        assert any(cmd.startswith("AT+CGLA=000000000385a7") for cmd in sent)
    if personality == "echo_urc":
        assert any(u.startswith(("+CREG", "+QIND", "+CGREG")) for u in urcs)
        assert "RDY" in urcs  # sent with the first answer: start-up, not a restart
    assert c.engine.restarts == 0
    # the core never relies on =? test commands and always sends upper-case hex
    assert not any(cmd.endswith("=?") for cmd in sent)
    hexes = [cmd.split('"')[1] for cmd in sent if cmd.startswith(("AT+CSIM=", "AT+CGLA="))]
    assert hexes and all(h == h.upper() for h in hexes)


@pytest.mark.parametrize("personality", ["bare_ccho", "no_test_cmds", "csim_only", "echo_urc",
                                         "cme_error"])
def test_auto_mode_without_a_known_identity(card, modem_factory, personality):
    """The quirks are handled from the answers alone, not from ipa_core.modems' table."""
    m = modem_factory(personality, **GENERIC)
    with open_at_card(m.path) as c:
        assert c.profile["matched"] == ()
        assert c.mode == ("csim" if personality == "csim_only" else "cgla")
        s = open_isdr_session(c)
        assert es10.get_eid(s) == card.eid.upper()
        assert len(es10.get_eim_configuration_data(s)) == 1
        s.close()
    assert m.open_channels == set()


def test_unknown_truncating_modem_with_the_profile_override(card, modem_factory):
    """A modem that cuts answers at 256 bytes and is not in the table: the override fixes it."""
    m = modem_factory("truncate256", **GENERIC)
    with open_at_card(m.path, mode="csim", profile_overrides={"csim_max_answer": 256}) as c:
        s = open_isdr_session(c)
        assert [p["iccid"] for p in es10.get_profiles_info(s)] == ICCIDS
        assert len(es10.get_eim_configuration_data(s)) == 1
        s.close()
        assert not any("cut an answer" in n for n in c.notes)


@pytest.mark.parametrize("mode", ["cgla", "csim"])
def test_unknown_truncating_modem_is_detected(card, modem_factory, mode):
    """Without the override: the cut is detected, completed and named in the notes."""
    m = modem_factory("truncate256", **GENERIC)
    with open_at_card(m.path, mode=mode) as c:
        assert c.profile["matched"] == () and c.profile["csim_max_answer"] == 0
        s = open_isdr_session(c)
        run_es10(card, s)
        s.close()
        assert c.profile["csim_max_answer"] == 256
        assert any("csim_max_answer=256" in n for n in c.notes), c.notes
    assert any("C00000FD" in cmd for cmd in m.received)  # completed with GET RESPONSE (Le 253)
    assert m.open_channels == set() and m.sessions == {}


def test_modem_cutting_at_another_size_fails_naming_the_profile_option(card, modem_factory):
    """Cut at 200 bytes, below the card's 256-byte chunks: bytes 200-255 are lost in the
    modem. A clear ProtocolError, never short data, with or without the override."""
    m = modem_factory("textbook", cut_at=200)
    with open_at_card(m.path, mode="csim") as c:
        s = open_isdr_session(c)
        assert es10.get_eid(s) == card.eid.upper()  # short answers pass
        with pytest.raises(ProtocolError) as e:
            es10.get_profiles_info(s)
        assert "no status word" in str(e.value) and "csim_max_answer=200" in str(e.value)
    with open_at_card(m.path, mode="csim", profile_overrides={"csim_max_answer": 200}) as c:
        s = open_isdr_session(c)
        with pytest.raises(ProtocolError) as e:
            es10.get_profiles_info(s)
        assert "modem dropped data the card had sent" in str(e.value)
        assert "csim_max_answer=200" in str(e.value)


def test_csim_only_modem_in_cgla_mode_fails_clearly(modem_factory):
    m = modem_factory("csim_only")
    t0 = time.monotonic()
    with pytest.raises(AtError) as e:
        open_at_card(m.path, mode="cgla")
    assert time.monotonic() - t0 < 5
    assert 'AT+CCHO="A0000005591010FFFFFFFF8900000100"' in str(e.value)
    assert "try mode=csim" in str(e.value)
    with open_at_card(m.path, mode="auto") as c:  # the port was freed by the failure
        assert c.mode == "csim"


# ---- faults ------------------------------------------------------------------------------


def test_garbage_between_es10_calls(card, modem_factory):
    m = modem_factory("garbage", seed=3)
    with open_at_card(m.path) as c:
        s = open_isdr_session(c)
        for burst in (b"\xff\xfe\x00", b"\x80" * 300, b"\r\n\xc3\xa9\xe2\r\n", b"\x00" * 50):
            m.inject(burst)
            assert es10.get_eid(s) == card.eid.upper()
            assert [p["iccid"] for p in es10.get_profiles_info(s)] == ICCIDS
        s.close()


def test_modem_that_stops_answering(card, modem_factory):
    # sync (2) + identify (2) + ATE0 + 3 stale closes + CCHO = 9 commands; dies in ES10
    m = modem_factory("dead", dead_after=11)
    t0 = time.monotonic()
    c = open_at_card(m.path, apdu_timeout_ms=800, segment_timeout_ms=1200)
    s = open_isdr_session(c)
    with pytest.raises(TimeoutError_) as e:
        for _ in range(5):
            es10.get_eid(s)
    took = time.monotonic() - t0
    assert took < 4, took
    # GetEID is a read: apdu_timeout_ms, not the STORE DATA bound of profile loads
    assert "AT+CGLA=" in str(e.value) and "no final result (OK/ERROR) within 800 ms" in str(e.value)
    c.close()  # AT+CCHC gets no answer either: bounded, noted, port freed
    assert time.monotonic() - t0 < 12
    assert not c.stream.is_open


def test_dead_modem_at_open(modem_factory):
    m = modem_factory("dead", dead_after=0)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError_) as e:
        open_at_card(m.path)
    assert time.monotonic() - t0 < 6
    assert m.path in str(e.value) and "did not answer AT" in str(e.value)
    assert "AT port" in str(e.value)


def test_reset_in_the_middle_of_an_apdu(card, modem_factory):
    # APDUs: 3 stale-channel closes through CSIM, then GetEID (#4); the reset hits #5
    m = modem_factory("reset_mid_apdu", reset_after=4)
    t0 = time.monotonic()
    c = open_at_card(m.path)  # default timeouts: a STORE DATA may take 120 s
    s = open_isdr_session(c)
    assert es10.get_eid(s) == card.eid.upper()
    lost = c.session
    t1 = time.monotonic()
    with pytest.raises(ModemRestarted) as e:
        es10.get_profiles_info(s)
    assert time.monotonic() - t1 < 2  # the boot's RDY, not the 120 s timeout
    assert isinstance(e.value, TransportError) and e.value.line == "RDY"
    assert str(e.value).startswith("modem restarted during AT+CGLA=%s," % lost)
    assert str(e.value).endswith("logical channels are lost, reopen the session")
    assert m.open_channels == set() and m.sessions == {}  # the reboot closed them
    assert not c.is_open and c.session is None
    sent = len(m.received)
    with pytest.raises(ModemRestarted):  # the lost session takes no APDU
        es10.get_eid(s)
    assert len(m.received) == sent
    # the same card and port: open() starts a clean session
    s = open_isdr_session(c)
    assert c.session != lost
    assert es10.get_eid(s) == card.eid.upper()
    s.close()
    c.close()
    assert "AT+CCHC=%s" % lost not in m.received  # nothing sent for the session the reboot took
    assert m.sessions == {}
    assert time.monotonic() - t0 < 8
    # a new session afterwards works
    with open_at_card(m.path) as c2:
        s2 = open_isdr_session(c2)
        run_es10(card, s2)
        s2.close()
    assert m.open_channels == set()


@pytest.mark.parametrize("mode", ["cgla", "csim"])
def test_reset_between_two_apdus(card, modem_factory, mode):
    m = modem_factory("textbook")
    with open_at_card(m.path, mode=mode) as c:
        s = open_isdr_session(c)
        assert es10.get_eid(s) == card.eid.upper()
        m.reset()  # reboots now: RDY, +CFUN: 1, +CPIN: READY wait unread on the port
        deadline = time.monotonic() + 2
        while not c.stream.any() and time.monotonic() < deadline:
            time.sleep(0.01)  # the pty hands the boot lines over a moment later
        assert c.stream.any()
        sent = len(m.received)
        t0 = time.monotonic()
        with pytest.raises(ModemRestarted) as e:
            es10.get_eid(s)
        assert time.monotonic() - t0 < 1
        assert e.value.when == "before" and e.value.line == "RDY"
        assert ("AT+%s=" % mode.upper()) in str(e.value)
        assert len(m.received) == sent  # the APDU never went into the lost channel
        s.close()  # csim: MANAGE CHANNEL close answered here (the reboot closed it)
        s = open_isdr_session(c)
        run_es10(card, s)
        s.close()
    assert m.open_channels == set() and m.sessions == {}


@pytest.mark.parametrize("mode", ["cgla", "csim"])
def test_channel_left_open_by_a_previous_run(card, modem_factory, mode):
    # a card with one logical channel: the next run must close the stale one to work
    m = modem_factory("textbook", max_channels=1)
    c = open_at_card(m.path, mode=mode)
    s = open_isdr_session(c)
    assert es10.get_eid(s) == card.eid.upper()
    c.stream.close()  # the program dies: no CCHC, no MANAGE CHANNEL close
    assert m.open_channels == {1}
    with open_at_card(m.path, mode=mode) as c2:
        s2 = open_isdr_session(c2)
        if mode == "csim":
            assert s2.channel == 1  # its own logical channel, not the basic-channel fallback
        else:
            assert c2.mode == "cgla" and list(m.sessions.values()) == [1]
        run_es10(card, s2)
        s2.close()
    assert m.open_channels == set() and m.sessions == {}


# ---- the card selection syntax ------------------------------------------------------------


def test_open_card_at_spec(card, modem_factory):
    m = modem_factory("bare_ccho")
    with open_card("at:%s?baud=115200&mode=cgla" % m.path) as c:
        assert c.mode == "cgla" and c.device == m.path
        assert c.profile["name"] == "Fibocom FM350"
        s = open_isdr_session(c)
        assert es10.get_eid(s) == card.eid.upper()
        s.close()
    assert m.sessions == {}
    with open_card("at:%s?mode=csim" % m.path, apdu_timeout_ms=2000) as c:
        assert c.mode == "csim" and c.apdu_timeout_ms == 2000


def test_open_card_at_spec_errors(tmp_path):
    with pytest.raises(TransportError, match="/dev/ttyNOPE7 does not exist"):
        open_card("at:/dev/ttyNOPE7?mode=csim")
    with pytest.raises(TransportError, match="is not a serial port"):
        open_card("at:%s" % os.devnull)
