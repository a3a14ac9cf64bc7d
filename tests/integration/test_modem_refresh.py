"""After a profile switch on a modem, end to end, as a user runs it:

    ipa --card at:<pty> [--network modem --ca-file <eIM CA>] poll          (subprocess)
      -> pyserial -> pty -> ipa_host.sim.modem.modem.SimModem -> the home's VirtualEuicc
      eIM: ipa_host.sim.eim.eim.EimServer over real TLS (the host's, or the modem's HTTP stack)

The enable of a queued PSMO makes the IPA refresh the modem (AT+CFUN=0, AT+CFUN=1: the
modem reads the eUICC again and finds the new profile), wait for its registration
(AT+CEREG?) and, when the modem's own HTTP stack carries ESipa, bring that stack's data
bearer back (the refresh took it); only then does the result go to the eIM, which checks
the eUICC's signature. A modem that does not register with the new profile makes the IPA
roll back (ES10b.ProfileRollback), refresh again and deliver the rollback's result.
ipa_host/modem_link.py logs the AT lines of the refresh at info level: the tests read
them in the log.
"""


import pytest

from ipa_host.sim.home import DEMO_PROFILES
from ipa_util import at_info, log_index, log_lines, profile_states  # tests/integration/ipa_util.py

PROFILE_A, PROFILE_B, TEST_PROFILE = (p["iccid"] for p in DEMO_PROFILES)
NO_NOTIFY = "8000"  # notifyStateChange [0] NULL in a GetEimPackageRequest


@pytest.fixture
def rig(modem_rig):
    """(home, card, make_modem) of conftest's modem_rig with [eim] timeout 10 s (the
    modem's HTTP stack waits) and [card] attach_timeout 3 s (how long the IPA waits for
    the modem after a switch)."""
    with open(modem_rig[0].config, "w") as f:
        f.write("[card]\nattach_timeout = 3\n[eim]\ntimeout = 10\n")
    return modem_rig


_log, _index = log_lines, log_index  # tests/integration/ipa_util.py


def _refresh_then_registration(log, start=0):
    """The log shows the refresh's AT lines, then the registration; returns the index after."""
    i = _index(log, "INFO ipa: modem: profile switch: refreshing the modem so that it reads "
                    "the eUICC again (AT+CFUN=0, AT+CFUN=1)", start)
    i = _index(log, "INFO ipa: modem: AT > AT+CFUN=0", i)
    assert log[i + 1] == "INFO ipa: modem: AT < OK", log[i:i + 2]
    i = _index(log, "INFO ipa: modem: AT > AT+CFUN=1", i)
    assert log[i + 1] == "INFO ipa: modem: AT < OK", log[i:i + 2]
    i = _index(log, "INFO ipa: modem: waiting up to 3 s for the network registration", i)
    return _index(log, "INFO ipa: modem: registered (home network)", i)


def _one_result(home, name):
    results = home.server.results(home.eid)
    assert len(results) == 1, results
    epr = results[0]["euiccPackageResult"]
    assert epr["signatureValid"] is True and epr["eimIdMatches"], epr
    assert [(x["name"], x["value"]) for x in epr["results"]] == [(name, 0)], epr
    return results[0]


def test_enable_refreshes_the_modem_before_reporting(rig):
    home, card, make = rig
    m = make(attach_delay=0.3)
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    r = home.ipa("--log-level", "info", "poll", card="at:" + m.path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "  enableResult                 ok" in r.stdout.splitlines(), r.stdout
    assert r.elapsed < 20, r.elapsed
    log = _log(r.stderr)
    i = _refresh_then_registration(log, _index(log, "LoadEuiccPackage"))
    assert log[i].endswith(": +CEREG: 0,1"), log[i]
    # On the modem: the refresh, registration polls (searching, then registered), then the
    # ISD-R again on a new channel, and the result reached the eIM only after all that.
    sent = list(m.received)
    off, on = sent.index("AT+CFUN=0"), sent.index("AT+CFUN=1")
    assert off < on < sent.index("AT+CEREG?", on)
    polls = [c for c in sent[on:] if c == "AT+CEREG?"]
    assert len(polls) >= 2, sent[on:]
    assert any(c.startswith("AT+CCHO=") for c in sent[on:])
    assert m.at.sim_reads == 1 and m.at.sim_iccid == PROFILE_B  # it read the new profile
    result = _one_result(home, "enableResult")
    assert result["kind"] == "ePRAndNotifications"
    assert [q["function"] for q in home.server.requests] == ["getEimPackage",
                                                            "provideEimPackageResult"]
    assert m.sessions == {} and m.open_channels == set()
    info = at_info(home, m)
    assert profile_states(info) == {PROFILE_A: "disabled", PROFILE_B: "enabled", TEST_PROFILE: "disabled"}
    assert info["notifications"] == []


def test_the_modems_http_stack_works_again_after_the_refresh(rig):
    home, card, make = rig
    m = make("sim7080", attach_delay=0.3)
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    r = home.ipa("--log-level", "info", "--network", "modem", "--ca-file", home.tls["ca_cert"],
                 "poll", card="at:" + m.path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = r.stdout.splitlines()
    assert "  enableResult                 ok" in out, r.stdout
    assert any(line.startswith("reported       acknowledged ") for line in out), r.stdout
    assert r.elapsed < 20, r.elapsed
    log = _log(r.stderr)
    i = _refresh_then_registration(log)
    # The refresh took the SIM7080's APP network: the IPA brings it back before posting.
    i = _index(log, "INFO ipa: modem: bringing the data bearer of the sim7080 HTTP stack up: "
                    "AT+CNACT=0,1", i)
    i = _index(log, "INFO ipa: modem: AT > AT+CNACT=0,1", i)
    _index(log, "INFO ipa: modem: data bearer up (AT+CNACT?)", i)
    sent = list(m.received)
    on = sent.index("AT+CFUN=1")
    act = sent.index("AT+CNACT=0,1", on)
    requests = [k for k, c in enumerate(sent) if c.startswith('AT+SHREQ="')]
    assert len(requests) == 2 and requests[0] < sent.index("AT+CFUN=0") and requests[1] > act
    assert m.at.activations == 1 and m.at.app_active == {0}
    # Result and notifications went through the modem's TLS, after the refresh.
    result = _one_result(home, "enableResult")
    assert result["kind"] == "ePRAndNotifications"
    assert m.at.http.requests == len(home.server.requests) == 2
    assert all(q["status"] == 200 for q in home.server.requests)
    assert profile_states(at_info(home, m)) == {PROFILE_A: "disabled", PROFILE_B: "enabled", TEST_PROFILE: "disabled"}
    assert card.state.pending() == []


def test_a_modem_that_came_up_without_its_bearer_gets_it_before_the_first_request(rig):
    """`--network modem` on a modem whose APP network is down at start (a fresh power-up):
    the IPA brings the SIM7080's bearer up before its first request, which then works."""
    home, card, make = rig
    m = make("sim7080", bearer_at_start=False)
    r = home.ipa("--log-level", "info", "--network", "modem", "--ca-file", home.tls["ca_cert"],
                 "poll", card="at:" + m.path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    log = _log(r.stderr)
    i = _index(log, "INFO ipa: modem: bringing the data bearer of the sim7080 HTTP stack up: "
                    "AT+CNACT=0,1")
    _index(log, "INFO ipa: modem: data bearer up (AT+CNACT?)", i)
    sent = list(m.received)
    assert sent.index("AT+CNACT=0,1") < min(k for k, c in enumerate(sent)
                                            if c.startswith('AT+SHREQ="'))
    assert m.at.activations == 1 and m.at.app_active == {0}
    assert len(home.server.requests) == 1 and home.server.requests[0]["status"] == 200


def test_no_network_with_the_new_profile_rolls_back(rig):
    home, card, make = rig
    m = make(attach_delay=0.3, no_network_iccids=(PROFILE_B,))  # B has no coverage here
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B, "rollback": True}])
    r = home.ipa("--log-level", "info", "poll", card="at:" + m.path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "result         seqNumber" in r.stdout and "(rollback)" in r.stdout, r.stdout
    assert "rollbackResult               ok" in r.stdout, r.stdout
    assert r.elapsed < 20, r.elapsed
    log = _log(r.stderr)
    i = _index(log, "INFO ipa: modem: profile switch: refreshing the modem")
    i = _index(log, "WARNING ipa: modem: not registered within 3 s after the profile switch "
                    "(last answer: +CEREG: 0,2)", i)
    i = _index(log, "WARNING ipa: no network after the profile switch: rolling back", i)
    i = _index(log, "WARNING ipa: rolled back to the previous profile", i)
    _refresh_then_registration(log, i)  # refreshed again: profile A registers
    assert m.at.sim_reads == 2 and m.at.sim_iccid == PROFILE_A
    # The eIM got the rollback's signed result; the eUICC is back on profile A.
    _one_result(home, "rollbackResult")
    assert home.profiles()[PROFILE_A] == "enabled" and home.profiles()[PROFILE_B] == "disabled"
    assert home.job() is None and home.pending() == []
    assert home.ipa_state()["ipa.stateChange"]["cause"] == 127  # undefined
    # The next poll tells the eIM of the change (notifyStateChange, stateChangeCause).
    r = home.ipa("poll", card="at:" + m.path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    req = [q for q in home.server.requests if q["function"] == "getEimPackage"][-1]
    assert req["request"].hex().upper().endswith("5A10" + home.eid + NO_NOTIFY + "81017F")
    assert "ipa.stateChange" not in home.ipa_state()


def test_a_modem_that_never_registers_again(rig):
    home, card, make = rig
    m = make(attach_delay=0.3, reattach=False)  # once the SIM was read again: no network
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B, "rollback": True}])
    r = home.ipa("poll", card="at:" + m.path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "rollbackResult               ok" in r.stdout, r.stdout
    assert "error          no network within 3 s after the profile change" in r.stdout
    assert r.elapsed < 20, r.elapsed
    # Rolled back on the eUICC; the result waits there and in the IPA's job for a network.
    assert home.profiles()[PROFILE_A] == "enabled" and home.profiles()[PROFILE_B] == "disabled"
    job = home.job()
    assert job["step"] == "connect" and job["rolledBack"], job
    assert "result" in [k for _, k in home.pending()]
    assert home.server.results(home.eid) == []
    # The modem registers again (a power cycle, coverage back): the next poll refreshes,
    # waits and delivers the rollback's result.
    m.at.cfg["reattach"] = True
    r = home.ipa("poll", card="at:" + m.path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    _one_result(home, "rollbackResult")
    assert home.job() is None and home.pending() == []
    assert m.at.sim_reads == 3
