"""ESipa and the IPA itself under faults, end to end: the `ipa` command as a user runs it (a
subprocess), the virtual eUICC of its home, the simulated eIM, all over real TLS on loopback.

- an eIM whose certificate the eUICC's trustedPublicKeyDataTls does not vouch for (another CA,
  a pinned key that does not match) is refused after the handshake, before any ESipa byte;
- a broken eIM (tests/host/hostile_eim.py, the right certificate) that answers garbage, a cut
  TLV, too much, an HTTP error, a captive portal's page, a drip or half an answer: a clear
  error within a bounded time, and what the eUICC did is delivered to a good eIM next time;
- the rollback of an enable with rollbackFlag when the eIM is gone afterwards;
- SIGKILL after every step of a PSMO cycle (IPA_TEST_KILL_AFTER_STEP, ipa_host/runner.py),
  then a restart: one result for the package, nothing removed before the eIM took it.

The eIM (ipa_host.sim.eim.eim) verifies every eUICC signature with its own code.
docs/resilience.md describes these tests and the core's (tests/core/test_ipa.py).
"""

import os
import subprocess
import time

import pytest

from ipa_core import apdu, es10
from ipa_host.sim import pki
from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.home import DEMO_EIM_ID, DEMO_PROFILES, open_home_euicc
from ipa_host.sim.eim.signer import build_euicc_package_request
from ipa_util import IPA  # tests/integration/ipa_util.py
import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked

PROFILE_A, PROFILE_B, TEST_PROFILE = (p["iccid"] for p in DEMO_PROFILES)
NO_NOTIFY = "8000"  # notifyStateChange [0] NULL in a GetEimPackageRequest


def one_result(server, eid, name, value=0):
    """The eIM got exactly one EimPackageResult: `name` = `value`, signed by the eUICC."""
    results = server.results(eid)
    assert len(results) == 1, results
    epr = results[0]["euiccPackageResult"]
    assert epr["signatureValid"] is True and epr["eimIdMatches"], epr
    assert [(r["name"], r["value"]) for r in epr["results"]] == [(name, value)], epr
    return epr


# ---- 1. an eIM the eUICC does not trust ------------------------------------------------------


def test_eim_certificate_from_another_ca_is_refused(ipa_home, tmp_path):
    home = ipa_home
    # A real eIM with the right signing key and a TLS identity from a CA of its own.
    other = EimServer(str(tmp_path / "other-eim"), pki_dir=home.pki_dir,
                      association_token=1).start()
    try:
        assert other.tls_ca_cert_der != home.tls["ca_der"]
        other.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
        r = home.ipa("poll", url=other.url)
        assert r.returncode == 1, (r.stdout, r.stderr)
        where = "127.0.0.1:%d" % other.port
        assert "error          TLS certificate verification of %s failed" % where in r.stdout
        assert "unable to get local issuer certificate" in r.stdout
        assert "(trusted: certificate " in r.stdout  # what the eUICC trusts instead
        assert r.elapsed < 8
        # The handshake failed on the eIM's side too, and not one ESipa byte reached it.
        deadline = time.monotonic() + 5  # the eIM's connection thread notes it on its own
        while not other.handshake_failures and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(other.handshake_failures) >= 1
        assert other.requests == []
        assert len(other.queue(home.eid)) == 1 and other.results(home.eid) == []
    finally:
        other.stop()
    assert home.profiles()[PROFILE_A] == "enabled" and home.job() is None
    # The eIM the eUICC does trust is reached by the same command.
    r = home.ipa("poll")
    assert r.returncode == 0 and "no package (noEimPackageAvailable)" in r.stdout, r.stderr


def _fresh_card_with_pinned_eim(tmp_path, name, fqdn, pki_dir, pin_pem):
    """`ipa eim add-initial --tls <public key PEM>` on a fresh virtual eUICC: its card spec."""
    spec = "sim?pki=%s&state=%s" % (pki_dir, tmp_path / ("%s.json" % name))
    r = subprocess.run([IPA, "--card", spec, "--home", str(tmp_path / name), "eim",
                        "add-initial", "--id", DEMO_EIM_ID, "--fqdn", fqdn,
                        "--key", os.path.join(pki_dir, "eim.crt"), "--tls", pin_pem],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([IPA, "--card", spec, "--json", "eim", "list"], capture_output=True,
                       text=True, timeout=60)
    assert '"trustedEimPkTls"' in r.stdout, r.stdout  # a key to pin, not a certificate
    return spec


def test_pinned_eim_public_key_that_does_not_match_is_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pki_dir = str(tmp_path / "pki")
    pki.create_test_pki(pki_dir)
    eim = EimServer(str(tmp_path / "eim"), pki_dir=pki_dir).start()
    try:
        def pem(key, path):
            with open(path, "wb") as f:
                f.write(key.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo))
            return path

        wrong = pem(ec.generate_private_key(ec.SECP256R1()).public_key(),
                    str(tmp_path / "wrong.pem"))
        right = pem(pki.load_certificate(eim.tls_files["server_cert"]).public_key(),
                    str(tmp_path / "right.pem"))
        cfg = tmp_path / "ipa.toml"
        cfg.write_text("[eim]\ntimeout = 1\n")

        def poll(spec, name):
            return subprocess.run([IPA, "--config", str(cfg), "--card", spec, "--home",
                                   str(tmp_path / name), "poll"],
                                  capture_output=True, text=True, timeout=60)

        spec = _fresh_card_with_pinned_eim(tmp_path, "pinned-wrong", eim.fqdn, pki_dir, wrong)
        r = poll(spec, "pinned-wrong")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert ("error          TLS public key pin mismatch for 127.0.0.1:%d" % eim.port
                in r.stdout)
        assert "expected the pinned key" in r.stdout
        assert eim.requests == []  # the key was checked before any ESipa byte went out
        # The same eUICC set up with the eIM's real key reaches it (the pin is what failed).
        spec = _fresh_card_with_pinned_eim(tmp_path, "pinned-right", eim.fqdn, pki_dir, right)
        r = poll(spec, "pinned-right")
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "no package (noEimPackageAvailable)" in r.stdout
        assert [q["function"] for q in eim.requests] == ["getEimPackage"]
    finally:
        eim.stop()


# ---- 2. a hostile or broken eIM -----------------------------------------------------------------

# fault -> (words the user reads for function F, transient: retried without counting)
FAULT_WORDS = {
    "garbage": ("ESipa {F}: the eIM's answer (81 bytes) does not decode: TLV at offset 1",
                False),
    "truncated": ("ESipa {F}: the eIM's answer (45 bytes) does not decode: TLV at offset 0: "
                  "expected 256 value bytes for tag {T}, found only 40 before the end", False),
    "oversized": ("response body: expected at most 1048576 bytes, got Content-Length 1048577",
                  False),
    "oversized_chunked": ("response body: expected at most 1048576 bytes, got at least",
                          False),
    "status:500": ("ESipa {F}: the eIM answered HTTP 500, expected 200 or 204", True),
    "status:404": ("ESipa {F}: the eIM answered HTTP 404, expected 200 or 204", False),
    "status:400": ("ESipa {F}: the eIM answered HTTP 400, expected 200 or 204", False),
    "content_type": ("ESipa {F}: the eIM answered Content-Type text/html; charset=utf-8, "
                     "expected application/x-gsma-rsp-asn1", False),
    "drip": ("waiting for the answer from 127.0.0.1:{P}: the request took longer than 4.0 s "
             "in all", True),
    "close_mid": ("connection closed in response body (Content-Length 200) (after", True),
    "length_nonascii": ("Content-Length: expected one decimal number, got '\u00b25'", False),
}
TAGS = {"getEimPackage": "BF4F", "provideEimPackageResult": "BF50"}


def _fault_poll(home, function, fault):
    bad = home.hostile({function: fault})
    r = home.ipa("poll", url=bad.url)
    bad.stop()
    words = FAULT_WORDS[fault][0].format(F=function, T=TAGS[function], P=bad.port)
    # The exit code of a failed cycle (ipa_host/cli.py), the words on stdout and in the log.
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "error          " + words in r.stdout, r.stdout
    assert "WARNING ipa: poll: " + words in r.stderr, r.stderr
    # Bounded: a drip ends at the whole-request bound (4 x the 1 s network wait).
    if fault == "drip":
        assert 3.5 < r.elapsed < 10, r.elapsed
    else:
        assert r.elapsed < 8, r.elapsed
    return r, bad


@pytest.mark.parametrize("fault", sorted(FAULT_WORDS))
def test_broken_answer_to_the_result_loses_nothing(ipa_home, fault):
    """The package ran; the eIM's answer to ProvideEimPackageResult is broken. The result and
    the notifications stay (IPA store, eUICC) and reach a good eIM at the next poll."""
    home = ipa_home
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    r, bad = _fault_poll(home, "provideEimPackageResult", fault)
    assert bad.seen == [("getEimPackage", None), ("provideEimPackageResult", fault)]
    assert "enableResult                 ok" in r.stdout
    assert home.profiles()[PROFILE_B] == "enabled"
    job = home.job()
    assert job["step"] == "deliver" and job["result"], job
    assert job["attempts"] == (0 if FAULT_WORDS[fault][1] else 1), job  # 5xx/transport: no count
    kept = home.pending()
    assert ("result" in [k for _, k in kept]) and ("notification" in [k for _, k in kept]), kept
    assert home.server.results(home.eid) == []
    r = home.ipa("--json", "poll")
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = cli_contract.result(r.stdout)
    assert out["resumed"] == {"kind": "euiccPackageRequest", "step": "deliver"}
    assert out["delivered"] and out["error"] is None
    one_result(home.server, home.eid, "enableResult")
    assert sorted(n["seqNumber"] for n in home.server.notifications(home.eid)) == \
        sorted(s for s, k in kept if k == "notification")
    assert home.pending() == [] and home.job() is None


@pytest.mark.parametrize("fault", sorted(f for f in FAULT_WORDS if f != "drip"))
def test_broken_answer_to_get_eim_package(ipa_home, fault):
    """A broken GetEimPackage answer: nothing runs, nothing is kept, the package still waits."""
    home = ipa_home
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    _fault_poll(home, "getEimPackage", fault)
    assert home.profiles()[PROFILE_A] == "enabled" and home.job() is None
    assert home.pending() == []
    r = home.ipa("poll")
    assert r.returncode == 0, (r.stdout, r.stderr)
    one_result(home.server, home.eid, "enableResult")


# ---- 3. rollback when the eIM is gone after an enable --------------------------------------


def test_rollback_when_the_eim_vanishes_after_the_enable(ipa_home):
    home = ipa_home
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B, "rollback": True}])
    # The eIM hands the package out, then is gone: connections are refused.
    bad = home.hostile({"getEimPackage": "vanish"})
    r = home.ipa("poll", url=bad.url)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "result         seqNumber" in r.stdout and "(rollback)" in r.stdout
    assert "rollbackResult               ok" in r.stdout
    assert "error          connecting to 127.0.0.1:%d: connection refused" % bad.port in r.stdout
    assert "WARNING ipa: eIM unreachable after the profile switch: rolling back" in r.stderr
    # The eUICC is back on the old profile; the rollback's result is kept for the eIM.
    assert home.profiles()[PROFILE_A] == "enabled" and home.profiles()[PROFILE_B] == "disabled"
    job = home.job()
    assert job["step"] == "deliver" and job["rolledBack"], job
    assert "result" in [k for _, k in home.pending()]
    assert home.ipa_state()["ipa.stateChange"]["cause"] == 127  # undefined
    assert home.server.results(home.eid) == []
    # The eIM is back: the rollback's EuiccPackageResult, then a poll telling of the change.
    before = len(home.server.requests)
    r = home.ipa("--json", "poll")
    assert r.returncode == 0, (r.stdout, r.stderr)
    epr = one_result(home.server, home.eid, "rollbackResult")
    assert epr["eimId"] == DEMO_EIM_ID
    assert home.pending() == [] and home.job() is None
    assert "ipa.stateChange" not in home.ipa_state()
    new = home.server.requests[before:]
    assert [q["function"] for q in new] == ["provideEimPackageResult", "getEimPackage"]
    # GetEimPackageRequest BF4F { 5A eid, 80 00 notifyStateChange, 81 01 7F undefined }
    want = "5A10" + home.eid + NO_NOTIFY + "81017F"
    assert new[1]["request"].hex().upper().endswith(want), new[1]["request"].hex()
    first = [q for q in home.server.requests if q["function"] == "getEimPackage"][0]
    assert not first["request"].hex().upper().endswith(NO_NOTIFY + "81017F")
    changes = home.server.eid_view(home.eid, None)["stateChanges"]
    assert [(c["notifyStateChange"], c["stateChangeCauseName"]) for c in changes] == \
        [(True, "undefined")]


# ---- 3b. a result the IPA gave up delivering, then the eIM re-offers the package ---------------


def test_reoffered_package_that_already_ran_gets_replay_error_and_loses_nothing(ipa_home):
    """docs/sim-eim.md "Re-offer", docs/resilience.md: the eIM refuses the result of a PSMO
    until the IPA gives up ([ipa] max_attempts); the eIM, with no result for the package,
    offers it again; the eUICC refuses to run it twice (replayError, signed) and that is
    the package's one result. The first run's result stays on the eUICC and reaches the
    eIM through an IpaEuiccDataRequest; its notifications through HandleNotification."""
    home = ipa_home
    with open(home.config, "a") as f:
        f.write("[ipa]\nmax_attempts = 2\n")
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    bad = home.hostile({"provideEimPackageResult": "status:400"})
    for attempt in (1, 2):
        r = home.ipa("poll", url=bad.url)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "the eIM answered HTTP 400" in r.stdout, r.stdout
        assert home.job()["attempts"] == attempt
    assert home.profiles()[PROFILE_B] == "enabled"
    kept = home.pending()
    assert "result" in [k for _, k in kept], kept
    first_run = [s for s, k in kept if k == "result"]
    bad.stop()
    # The good eIM: the IPA gives the delivery up (the result stays on the eUICC), polls,
    # gets the same signed package again and loads it: replayError, delivered.
    r = home.ipa("--json", "poll")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "euiccPackageRequest: step deliver failed 2 times, giving up on it" in r.stderr
    out = cli_contract.result(r.stdout)
    assert out["result"]["kind"] == "euiccPackageErrorSigned", out
    assert out["result"]["error"] == "replayError" and out["delivered"], out
    results = home.server.results(home.eid)
    assert len(results) == 1, results
    epr = results[0]["euiccPackageResult"]
    assert epr["signatureValid"] is True and epr["eimIdMatches"], epr
    delivered = home.server.delivered(home.eid)
    assert len(delivered) == 1 and delivered[0]["offers"] == 2, delivered
    assert results[0]["package"] == delivered[0]["id"]  # matched by eimTransactionId
    # Ran once: B enabled, the first run's result still kept by the eUICC, not run again.
    assert home.profiles()[PROFILE_B] == "enabled" and home.job() is None
    assert [s for s, k in home.pending() if k == "result"] == first_run
    # Nothing is lost: the stored result goes out with an IpaEuiccDataRequest (A2).
    home.server.queue_data_request(home.eid, ["A2"])
    r = home.ipa("poll")
    assert r.returncode == 0, (r.stdout, r.stderr)
    stored = [x["euiccPackageResult"] for x in home.server.results(home.eid)
              if x["via"].endswith("/ipaEuiccData")]
    assert [x["seqNumber"] for x in stored] == first_run, stored
    assert stored[0]["signatureValid"] is True
    assert [(o["name"], o["value"]) for o in stored[0]["results"]] == [("enableResult", 0)]
    assert home.pending() == [] or all(k == "notification" for _, k in home.pending())
    r = home.ipa("notifications", "process")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert home.pending() == []
    got = {n["seqNumber"] for n in home.server.notifications(home.eid)}
    assert got | set(first_run) >= {s for s, _ in kept}, (got, kept)


# ---- 4. SIGKILL at every step of a PSMO cycle --------------------------------------------------

KILL_ENV = "IPA_TEST_KILL_AFTER_STEP"


def _kill_setup(make_ipa_home, name):
    """A home whose eUICC has one pending notification (seq 1: profile A disabled, its result
    removed) and whose eIM has an enable of B queued (counter 2)."""
    home = make_ipa_home(name)
    card = open_home_euicc(home.path)
    req = build_euicc_package_request(DEMO_EIM_ID, home.eid, 1,
                                      [{"op": "disable", "iccid": PROFILE_A}],
                                      pki.load_private_key(os.path.join(home.pki_dir, "eim.key")),
                                      association_token=1)
    s = apdu.IsdrSession(card).open()
    r = es10.load_euicc_package(s, req)
    es10.remove_notification_from_list(s, r["seqNumber"])
    s.close()
    home.server.register_eid(home.eid, counter=1)
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    assert home.pending() == [(1, "notification")]
    return home


def _events(stderr):
    return [line.split(": ", 1)[1] for line in stderr.splitlines()
            if line.startswith("test-kill event ")]


def _taken_by_eim(home):
    """seqNumbers the eIM has: notifications and EuiccPackageResults."""
    got = {n["seqNumber"] for n in home.server.notifications(home.eid)}
    for r in home.server.results(home.eid):
        got.add(r["euiccPackageResult"]["seqNumber"])
    return got


def test_sigkill_after_every_step_of_a_psmo_cycle(make_ipa_home):
    # The whole cycle once, counting its events (store writes, ES10 exchanges, eIM answers).
    home = _kill_setup(make_ipa_home, "ref")
    try:
        r = home.ipa("poll", env={KILL_ENV: "0"})
        assert r.returncode == 0, r.stderr
        events = _events(r.stderr)
        want_notes = sorted(n["seqNumber"] for n in home.server.notifications(home.eid))
        one_result(home.server, home.eid, "enableResult")
    finally:
        home.close()
    assert len(events) >= 15, events
    assert "eIM BF3D" in events and "eIM BF50" in events and "ES10 BF51" in events
    assert want_notes == [1, 3]
    for k, event in enumerate(events, 1):
        where = "killed after event %d (%s)" % (k, event)
        home = _kill_setup(make_ipa_home, "k%d" % k)
        try:
            r = home.ipa("poll", env={KILL_ENV: str(k)})
            assert r.returncode == -9, (where, r.returncode, r.stderr)
            assert _events(r.stderr)[-1] == event, (where, r.stderr)
            # Nothing left the eUICC that the eIM did not have at the moment of the cut.
            state = home.euicc_state()
            made = {1} | set(range(3, state["seq"] + 1))  # seq 2: the set-up's, removed
            gone = made - {s for s, _ in home.pending()}
            assert gone <= _taken_by_eim(home), (where, gone)
            r = home.ipa("poll")
            assert r.returncode == 0, (where, r.stdout, r.stderr)
            if event == "eIM BF4F":
                # The window the IPA cannot close alone: the eIM handed the package out and
                # the IPA died before writing it down. Nothing ran; the eIM, with no result
                # for it, offers the same signed package again at this poll.
                assert "euiccPackageRequest" in r.stdout, (where, r.stdout)
                assert home.server.delivered(home.eid)[-1]["offers"] == 2, where
            results = home.server.results(home.eid)
            # One result, as the eUICC signed it; only a cut between the eIM's answer and the
            # IPA's record of it sends the same bytes once more (the eIM sees a duplicate).
            assert len({x["der"] for x in results}) == 1, (where, results)
            assert len(results) == (2 if event == "eIM BF50" else 1), (where, results)
            assert all(x["euiccPackageResult"]["signatureValid"] is True for x in results), where
            epr = results[0]["euiccPackageResult"]
            assert [(x["name"], x["value"]) for x in epr["results"]] == \
                [("enableResult", 0)], (where, epr)
            notes = home.server.notifications(home.eid)
            assert sorted({n["seqNumber"] for n in notes}) == want_notes, (where, notes)
            if not event.startswith("eIM "):
                assert len(notes) == len(want_notes), (where, notes)
            assert all(n["signatureValid"] is not False for n in notes), where
            assert home.profiles() == {PROFILE_A: "disabled", PROFILE_B: "enabled",
                                       TEST_PROFILE: "disabled"}, where
            assert home.pending() == [], where
            assert home.ipa_state() == {}, (where, home.ipa_state())
        finally:
            home.close()

