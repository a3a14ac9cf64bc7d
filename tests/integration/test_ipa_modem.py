"""The `ipa` command on a cellular modem's AT port, end to end, as a user runs it:

    ipa --card at:<pty> run|info  (subprocess)
      -> pyserial -> pty -> ipa_host.sim.modem.modem.SimModem (a personality of modem_personality.py)
      -> the home's VirtualEuicc;   eIM: ipa_host.sim.eim.eim.EimServer over real TLS

`ipa run` carries out a queued PSMO through a textbook and a quirky modem, the eIM verifies
the eUICC's signature, SIGTERM ends it cleanly and no modem session stays open between
cycles. `ipa info` works through every personality meant to work, and fails clearly, in
bounded time, on a dead modem or once when the modem reboots in the middle of an APDU.
"""

import pytest

from ipa_host.sim.home import DEMO_PROFILES
from ipa_host.sim.modem.modem_personality import PERSONALITIES
from ipa_util import run_service  # tests/integration/ipa_util.py
import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked

PROFILE_A, PROFILE_B, TEST_PROFILE = (p["iccid"] for p in DEMO_PROFILES)

# How `ipa info` is run per personality: (options for SimModem, card spec suffix).
INFO = {
    "csim_only": ({}, "?mode=csim"),  # no AT+CCHO/CGLA at all
    "slow": ({"delay": 0.1}, ""),  # 0.1 s per card command instead of 2 s: same path, faster
}
FAULTY = ("dead", "reset_mid_apdu")  # tested on their own below


@pytest.fixture
def modem_home(modem_rig):
    """(home, card, make_modem): conftest's modem_rig."""
    return modem_rig


@pytest.mark.parametrize("personality", ["textbook", "truncate256"])
def test_run_carries_out_a_psmo_through_the_modem(modem_home, personality):
    home, card, make = modem_home
    m = make(personality)
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    out, err = run_service(
        home.command("--json", card="at:" + m.path)[1:],
        [(lambda: home.server.results(home.eid), None, "the eIM got no result"),
         # The second cycle (1 s later: the eIM may have more) opens the modem port again.
         (lambda: [q["function"] for q in home.server.requests][-1:] == ["getEimPackage"]
          and len(home.server.requests) >= 3, None, "no second poll")], stop_wait=20)
    assert "stopped after 2 cycle(s)" in err, err
    assert "could not start" not in err and "in use" not in err, err
    cycles = [c["result"] for c in cli_contract.lines(out)]
    assert len(cycles) == 2, out
    assert cycles[0]["package"] == "euiccPackageRequest" and cycles[0]["delivered"]
    assert cycles[0]["result"]["operations"] == [["enableResult", 0, "ok"]]
    assert cycles[1]["idle"] and cycles[1]["error"] is None
    results = home.server.results(home.eid)
    assert len(results) == 1
    epr = results[0]["euiccPackageResult"]
    assert epr["signatureValid"] is True and epr["eimIdMatches"]
    assert [(r["name"], r["value"]) for r in epr["results"]] == [("enableResult", 0)]
    assert card.state.enabled_profile()["iccid"] == PROFILE_B
    assert card.state.pending() == []  # the result and notifications left after the eIM's ack
    # Every cycle closed its modem session and channel (AT+CCHC) and freed the port.
    assert m.sessions == {} and m.open_channels == set()
    if personality == "truncate256":  # long answers came in pieces (GET RESPONSE)
        assert any('"00C00000' in line for line in m.received)


def _info(home, path, suffix=""):
    return home.ipa("--json", "info", url=False, card="at:" + path + suffix, timeout=60)


def _check_info(r, card):
    assert r.returncode == 0, r.stderr
    d = cli_contract.result(r.stdout)
    assert d["eid"] == card.eid
    assert [p["iccid"] for p in d["profiles"]] == [PROFILE_A, PROFILE_B, TEST_PROFILE]
    assert [e["eimId"] for e in d["eims"]] == ["ipa-demo-eim"]


@pytest.mark.parametrize("personality", sorted(p for p in PERSONALITIES if p not in FAULTY))
def test_info_through_every_working_personality(modem_home, personality):
    home, card, make = modem_home
    options, suffix = INFO.get(personality, ({}, ""))
    m = make(personality, **options)
    r = _info(home, m.path, suffix)
    _check_info(r, card)
    assert r.elapsed < 15, r.elapsed
    assert m.sessions == {} and m.open_channels == set()  # nothing left open behind it


def test_info_on_a_dead_modem_fails_clearly(modem_home):
    home, card, make = modem_home
    m = make("dead", dead_after=0)  # silent from power-on
    r = _info(home, m.path)
    assert r.returncode == 3, (r.stdout, r.stderr)  # a transport failure (ipa_host/cli.py)
    err = cli_contract.envelope(r.stdout, "info")["error"]  # scripts get the reason too
    assert err["code"] == "transport" and "did not answer AT" in err["message"]
    assert ("ipa: AT port %s: modem did not answer AT with OK in 3 tries" % m.path) in r.stderr
    assert "is it the modem's AT port" in r.stderr
    assert r.elapsed < 10, r.elapsed


def test_info_when_the_modem_reboots_in_the_middle_of_an_apdu(modem_home):
    home, card, make = modem_home
    m = make("reset_mid_apdu")
    r = _info(home, m.path)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "ipa: modem restarted during AT+CGLA=" in r.stderr
    assert "logical channels are lost, reopen the session" in r.stderr
    assert r.elapsed < 10, r.elapsed
    # Running it again (the reboot took the old session) works on the same port.
    r = _info(home, m.path)
    _check_info(r, card)
    assert m.sessions == {} and m.open_channels == set()


def test_info_when_the_modem_loses_the_final_ok(modem_home):
    """A modem that loses the OK after one +CGLA answer: that APDU costs the AT layer's
    final-OK grace (2 s), not the 120 s STORE DATA bound; `ipa info` succeeds."""
    home, card, make = modem_home
    m = make("lost_ok")
    r = _info(home, m.path)
    _check_info(r, card)
    assert m.at.lost_oks == 1
    assert 2 <= r.elapsed < 15, r.elapsed
    assert m.sessions == {} and m.open_channels == set()


def test_info_when_the_sim_is_busy(modem_home):
    """"+CME ERROR: SIM busy" twice in a row: the AT layer sends the APDU again after a
    short back-off and `ipa info` succeeds; busy through every try fails at once, clearly."""
    home, card, make = modem_home
    m = make("sim_busy")
    r = _info(home, m.path)
    _check_info(r, card)
    assert m.at.busy_sent == 2
    assert r.elapsed < 15, r.elapsed
    m = make("sim_busy", busy_count=10)
    r = _info(home, m.path)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "+CME ERROR: 14 (SIM busy)" in r.stderr and "through 3 tries" in r.stderr
    assert m.at.busy_sent == 3  # three tries, then the error
    assert r.elapsed < 15, r.elapsed
