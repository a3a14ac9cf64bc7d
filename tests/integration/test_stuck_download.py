"""Downloads cut at the wrong moment never leave the SM-DP+ order stuck (issue 13, part 4),
end to end as a user meets it: the real `ipa` command killed with SIGKILL by its test-kill
hook ($IPA_TEST_KILL_AFTER_STEP, ipa_host/runner.py) right after the SM-DP+ (or the eIM)
answered AuthenticateClient, then run again.

Real parties over loopback TLS: the simulated SM-DP+ (its own ES9+ codec, verifying the
eUICC's signature on CancelSession), the simulated eIM relaying ESipa to it, and the home
virtual eUICC, which keeps its RSP session while powered (across `ipa` processes) and loses
it on `ipa-sim euicc reset` (a power cycle).
"""

import os
import subprocess
import time

import pytest

import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked
from ipa_util import IPA, info_json as info, relay_lab  # tests/integration/ipa_util.py

ICCID_1 = "89000123456789012341"
ICCID_2 = "89000123456789012358"
ICCID_3 = "89000123456789012366"  # MATCH-3: MATCH-1's twin, to count a whole run's events
SIM = os.path.join(os.path.dirname(IPA), "ipa-sim")
TIMEOUT = 1.0  # the SM-DP+'s session_timeout once the reset test lets the old session expire


@pytest.fixture
def lab(tmp_path):
    """A provisioned home, a running SM-DP+ (MATCH-1; MATCH-2; MATCH-3, the same size and
    name as MATCH-1, to count the test-kill events of a whole run), and an eIM relaying to
    it."""
    with relay_lab(tmp_path, [("MATCH-1", ICCID_1, "Test profile", 20000),
                              ("MATCH-2", ICCID_2, "Triggered profile", 6000),
                              ("MATCH-3", ICCID_3, "Test profile", 20000)]) as lab:
        yield lab


def ipa(h, dp, *args, kill_after=None, eim=None):
    env = dict(os.environ)
    env.pop("IPA_TEST_KILL_AFTER_STEP", None)
    if kill_after is not None:
        env["IPA_TEST_KILL_AFTER_STEP"] = str(kill_after)
    cmd = [IPA, "--home", h, "--smdp-ca-file", dp.tls_ca_path]
    if eim is not None:
        cmd += ["--eim-url", eim.url]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120, env=env)


def events(stderr):
    return [line.split(": ", 1)[1] for line in stderr.splitlines()
            if line.startswith("test-kill event ")]


def kill_after(stderr, what):
    """The number of the first test-kill event that names `what` (from a full run's list)."""
    for i, e in enumerate(events(stderr)):
        if what in e:
            return i + 1
    raise AssertionError("no test-kill event %r in %r" % (what, events(stderr)))


def cancels(dp):
    return [e for e in dp.events if e["function"] == "cancelSession"]


@pytest.fixture
def direct_events(lab):
    """The test-kill events of a whole direct `ipa download` of MATCH-3 (installed on the
    home: a direct download leaves the other profiles and notifications alone)."""
    h, _, dp, _ = lab
    r = ipa(h, dp, "download", "LPA:1$%s$MATCH-3" % dp.address, kill_after=0)
    assert r.returncode == 0, r.stderr
    ev = events(r.stderr)
    n = kill_after(r.stderr, "es9plus/authenticateClient")
    assert ev[n - 2:n] == ["put ipa.download", "SM-DP+ /gsma/rsp2/es9plus/authenticateClient"]
    assert ev.count("put ipa.download") == 2, ev
    # the download's own events end with its record's removal; the PIR's delivery to the
    # SM-DP+ follows (test_smdp_notifications.py), not counted here
    end = ev.index("delete ipa.download") + 1
    assert "SM-DP+ /gsma/rsp2/es9plus/handleNotification" in ev[end:], ev
    return ev[:end]


def cut_after_authenticate_client(h, dp, ac, direct_events):
    """`ipa download <ac>` killed right after the SM-DP+'s AuthenticateClient answer ->
    the transactionId of the session it left open."""
    n = direct_events.index("SM-DP+ /gsma/rsp2/es9plus/authenticateClient") + 1
    r = ipa(h, dp, "download", ac, kill_after=n)
    assert r.returncode == -9, r.stderr
    assert events(r.stderr)[-1] == "SM-DP+ /gsma/rsp2/es9plus/authenticateClient"
    return [e for e in dp.events if e["function"] == "authenticateClient"][-1]["transactionId"]


def test_direct_download_killed_after_authenticate_client_is_cancelled_then_succeeds(
        lab, direct_events):
    h, eid, dp, _ = lab
    ac = "LPA:1$%s$MATCH-1" % dp.address
    old = cut_after_authenticate_client(h, dp, ac, direct_events)
    assert dp.profile("MATCH-1")["state"] == "downloading"  # stuck, as the issue says

    # the user sees the open transaction
    d = info(h)
    o = d["openDownload"]
    assert (o["transactionId"], o["smdpAddress"], o["matchingId"], o["transport"], o["stage"]) \
        == (old, dp.address, "MATCH-1", "direct", "authenticated"), o
    text = subprocess.run([IPA, "--home", h, "info"], capture_output=True, text=True,
                          timeout=60).stdout
    assert "Open download  transaction %s with %s (direct), matchingId MATCH-1: authenticated" \
        % (old, dp.address) in text, text

    n = len(dp.events)
    r = ipa(h, dp, "--json", "download", ac)
    assert r.returncode == 0, r.stderr
    out = cli_contract.result(r.stdout, "download")
    assert out["ok"] is True and out["iccid"] == ICCID_1
    assert out["recovered"]["outcome"] == "cancelled" and out["recovered"]["transactionId"] == old
    assert "cancelled on the eUICC and the server (undefinedReason)" in r.stderr, r.stderr
    # the retry's first action is the proper cancel, signed by the eUICC and verified
    first = dp.events[n]
    assert (first["function"], first["status"], first["transactionId"]) == \
        ("cancelSession", "Executed-Success", old)
    assert first["verified"] is True and first["reason"] == 127  # undefinedReason
    assert [e["function"] for e in dp.events[n + 1:]] == [
        "initiateAuthentication", "authenticateClient", "getBoundProfilePackage",
        "handleNotification"]  # the PIR, right after
    d = info(h)
    assert d["openDownload"] is None
    assert ICCID_1 in [p["iccid"] for p in d["profiles"]]


def test_direct_download_killed_during_the_load_is_cancelled_as_a_load_error(
        lab, direct_events):
    h, eid, dp, _ = lab
    ac = "LPA:1$%s$MATCH-1" % dp.address
    # after the third STORE DATA sequence of the package (the record said "loading" first)
    loading = len(direct_events) - direct_events[::-1].index("put ipa.download")
    r = ipa(h, dp, "download", ac, kill_after=loading + 3)
    assert r.returncode == -9, r.stderr
    assert events(r.stderr)[-4:-3] == ["put ipa.download"], r.stderr
    assert info(h)["openDownload"]["stage"] == "loading"
    r = ipa(h, dp, "download", ac)
    assert r.returncode == 0, r.stderr
    c = cancels(dp)
    assert len(c) == 1 and c[0]["reason"] == 5 and c[0]["verified"] is True  # loadBppExecutionError
    assert ICCID_1 in [p["iccid"] for p in info(h)["profiles"]]


def test_a_kill_after_the_pir_cancels_nothing(lab, direct_events):
    """The load finished, the record was not yet removed: the next start finds the PIR on the
    eUICC, cancels nothing and leaves the PIR to the notification path."""
    h, eid, dp, eim = lab
    ac = "LPA:1$%s$MATCH-1" % dp.address
    r = ipa(h, dp, "download", ac, kill_after=len(direct_events) - 1)  # the last segment
    assert r.returncode == -9, r.stderr
    assert events(r.stderr) == direct_events[:-1]
    d = info(h)
    assert d["openDownload"]["stage"] == "loading"
    assert ICCID_1 in [p["iccid"] for p in d["profiles"]]
    r = ipa(h, dp, "notifications", "process", eim=eim)
    assert "the profile was installed; its result waits on the eUICC as a notification" \
        in r.stdout + r.stderr, (r.stdout, r.stderr)
    assert cancels(dp) == []
    assert info(h)["openDownload"] is None


def test_indirect_download_killed_after_authenticate_client_is_cancelled_by_poll(lab):
    h, eid, dp, eim = lab
    # a whole run of another trigger counts the events (it leaves nothing pending behind)
    eim.queue_download_trigger(eid, activation_code="LPA:1$%s$MATCH-3" % dp.address)
    r = ipa(h, dp, "--profile-download", "indirect", "poll", eim=eim, kill_after=0)
    assert r.returncode == 0, r.stderr
    assert eim.results(eid)[-1]["result"] == "profileInstallationResult"
    n = kill_after(r.stderr, "eIM BF3B")  # the eIM's AuthenticateClientResponseEsipa
    ac = "LPA:1$%s$MATCH-2" % dp.address
    eim.queue_download_trigger(eid, activation_code=ac)
    r = ipa(h, dp, "--profile-download", "indirect", "poll", eim=eim, kill_after=n)
    assert r.returncode == -9 and events(r.stderr)[-1] == "eIM BF3B", r.stderr
    o = info(h)["openDownload"]
    assert o["transport"] == "indirect" and o["eimId"] == "ipa-demo-eim", o
    old = o["transactionId"]

    n_dp, n_eim = len(dp.events), len(eim.requests)
    r = ipa(h, dp, "--profile-download", "indirect", "poll", eim=eim)
    assert r.returncode == 0, r.stderr
    assert "recovered      download session %s with %s (indirect), cut off at authenticated:" \
        " cancelled on the eUICC and the server (undefinedReason)" % (old, dp.address) \
        in r.stdout, r.stdout
    # the first request of the resumed poll: ESipa CancelSession, relayed to the SM-DP+
    assert eim.requests[n_eim]["function"] == "cancelSession", eim.requests[n_eim]
    first = dp.events[n_dp]
    assert (first["function"], first["transactionId"], first["verified"], first["reason"]) == \
        ("cancelSession", old, True, 127)
    assert dp.profile("MATCH-2")["state"] == "released"
    # the cut trigger is reported as failed; queued again, it installs
    assert eim.results(eid)[-1]["result"] == "profileDownloadError"
    eim.queue_download_trigger(eid, activation_code=ac)
    r = ipa(h, dp, "--profile-download", "indirect", "poll", eim=eim)
    assert r.returncode == 0, r.stderr
    assert eim.results(eid)[-1]["result"] == "profileInstallationResult"
    assert ICCID_2 in [p["iccid"] for p in info(h)["profiles"]]
    assert info(h)["openDownload"] is None


def test_a_reset_euicc_is_explained_and_the_retry_succeeds_after_the_timeout(
        lab, direct_events):
    h, eid, dp, _ = lab
    ac = "LPA:1$%s$MATCH-1" % dp.address
    old = cut_after_authenticate_client(h, dp, ac, direct_events)
    assert info(h)["openDownload"]["transactionId"] == old
    r = subprocess.run([SIM, "euicc", "reset", "--home", h], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "download session %s lost" % old in r.stdout, r.stdout

    r = ipa(h, dp, "download", ac)
    assert r.returncode == 1
    assert "the eUICC no longer knows it (it was reset), so it cannot be cancelled" in r.stderr
    assert "the SM-DP+ %s may keep the order for matchingId MATCH-1 'downloading'" % dp.address \
        in r.stderr and "ask the operator to reset the order" in r.stderr, r.stderr
    assert "matchingIdRefused" in r.stderr and "profile already downloading in session %s" \
        % old in r.stderr, r.stderr
    assert "an earlier download of this eUICC was cut off (transaction %s, lost)" % old \
        in r.stderr, r.stderr
    assert [c["transactionId"] for c in cancels(dp)] != [old]  # nothing could cancel it
    assert info(h)["openDownload"]["stage"] == "lost"  # kept to explain, and shown

    # the operator's SM-DP+ ends abandoned sessions after TIMEOUT (its default, 600 s, would
    # have kept the order for the test's whole run: the refusal above never races it)
    dp.session_timeout = TIMEOUT
    deadline = time.monotonic() + 10 * TIMEOUT
    while old not in [x["transactionId"] for x in dp.expired] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dp.profile("MATCH-1")["state"] == "released"
    r = ipa(h, dp, "download", ac)
    assert r.returncode == 0, r.stderr
    assert "installed      %s" % ICCID_1 in r.stdout
    assert info(h)["openDownload"] is None


def test_a_download_from_the_smds_killed_midway_is_cancelled_by_the_next_one(tmp_path):
    """`ipa download --smds`: the process is killed (SIGKILL) while it waits for the SM-DP+'s
    AuthenticateClient answer; the next `ipa download --smds` cancels that session first (the
    SM-DP+ verifies the eUICC's signature and releases the order), then the SM-DS still
    offers the event and it installs."""
    import signal
    import threading

    from test_smds import _lab, announce  # tests/integration/test_smds.py: SM-DS + SM-DP+

    h, eid, ds, dp = _lab(tmp_path)
    hold = threading.Event()
    try:
        announce(dp, eid, ("EV-1", ICCID_1))
        # the answer to AuthenticateClient waits in the SM-DP+ until the IPA is gone
        dp.faults["authenticateClient"] = lambda body: (hold.wait(60), (body, None))[1]
        p = subprocess.Popen([IPA, "--home", h, "--smdp-ca-file", ds.tls_ca_path, "download",
                              "--smds"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        try:
            deadline = time.monotonic() + 60
            while "authenticateClient" not in [e["function"] for e in dp.events] and \
                    time.monotonic() < deadline and p.poll() is None:
                time.sleep(0.05)
            assert "authenticateClient" in [e["function"] for e in dp.events], p.poll()
            p.send_signal(signal.SIGKILL)
            p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        assert p.returncode == -9
        del dp.faults["authenticateClient"]
        hold.set()
        o = info(h)["openDownload"]
        assert (o["smdpAddress"], o["matchingId"], o["stage"]) == (dp.address, "EV-1",
                                                                   "authenticated"), o
        assert dp.profile("EV-1")["state"] == "downloading"

        n = len(dp.events)
        r = subprocess.run([IPA, "--home", h, "--smdp-ca-file", ds.tls_ca_path, "--json",
                            "download", "--smds"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out = cli_contract.result(r.stdout, "download")
        assert out["recovered"]["outcome"] == "cancelled", out["recovered"]
        first = dp.events[n]
        assert (first["function"], first["transactionId"], first["verified"]) == \
            ("cancelSession", o["transactionId"], True)
        assert [d["eventId"] for d in out["downloads"]] == ["EV-1"] and out["ok"] is True
        assert ICCID_1 in [p["iccid"] for p in info(h)["profiles"]]
        assert info(h)["openDownload"] is None
    finally:
        hold.set()
        dp.stop()
        ds.stop()
