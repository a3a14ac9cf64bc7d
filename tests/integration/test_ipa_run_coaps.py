"""`ipa run` as a service against an eIM reached over CoAP/DTLS (SGP.32 v1.2 eimRetrieveCoaps):
a queued PSMO, then a queued profile download trigger carried out as an indirect download
(SGP.32 v1.2 3.2.3, ESipa 6.3.2.1-6.3.2.4) with every ESipa message over CoAPS and the eIM
relaying ES9+ to the SM-DP+ simulator over TLS; SIGTERM then stops the service cleanly.

Also pins what the JSON binding (an HTTPS binding, ESipa 6.1) does with a coaps:// URL: the
IPA posts to the JSON path, the eIM's CoAP endpoint serves only the ASN.1 path and answers
4.04, and the IPA reports that as a failed getEimPackage without touching the eIM's queue.

Everything on loopback; every wait is bounded.
"""

import os
import signal
import subprocess
import time

import pytest

from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.home import DEMO_PROFILES, eim_dir, open_home_euicc, sim_dir
from ipa_host.sim.smdpp.smdpp import SmdpServer
from ipa_util import IPA, info_json  # tests/integration/ipa_util.py

PROFILE_A, PROFILE_B, TEST_PROFILE = (p["iccid"] for p in DEMO_PROFILES)
NEW_ICCID = "89000123456789012358"
WAIT = 20  # seconds: bound on each wait for the eIM to see a result
DISABLED, ENABLED = "disabled", "enabled"  # ProfileState names, as `ipa --json info` gives them


@pytest.fixture
def lab(tmp_path):
    """A provisioned home (virtual eUICC, demo eIM) whose eIM has a CoAPS listener and trusts
    the SM-DP+'s TLS CA for its relay; `ipa` polls every second (ipa.toml)."""
    h = str(tmp_path / "home")
    card = open_home_euicc(h)
    pki_dir = os.path.join(sim_dir(h), "pki")
    config = str(tmp_path / "ipa.toml")
    with open(config, "w") as f:
        f.write("[ipa]\npoll_interval = 1\nmax_interval = 1\n[eim]\ntimeout = 2\n")
    dp = SmdpServer(str(tmp_path / "smdp"), pki_dir).start()
    dp.add_profile("MATCH-2", NEW_ICCID, "Triggered profile", size=6000)
    try:
        eim = EimServer(eim_dir(h), pki_dir=pki_dir, association_token=1, coap_port=0,
                        smdp_ca_file=dp.tls_ca_path).start()
        try:
            yield h, config, card.eid, dp, eim
        finally:
            eim.stop()
    finally:
        dp.stop()


def profiles(h):
    return {p["iccid"]: p for p in info_json(h)["profiles"]}


def wait_results(eim, eid, n, proc):
    """Wait (bounded) until the eIM holds `n` results for `eid`; fail early if `ipa` died."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if len(eim.results(eid)) >= n:
            return eim.results(eid)
        assert proc.poll() is None, "ipa run exited early (%s)" % proc.returncode
        time.sleep(0.05)
    raise AssertionError("after %d s the eIM has %d result(s), expected %d"
                         % (WAIT, len(eim.results(eid)), n))


def test_ipa_run_over_coaps_psmo_then_indirect_download(lab):
    h, config, eid, dp, eim = lab
    assert profiles(h)[PROFILE_B]["profileState"] == DISABLED
    eim.queue_psmo(eid, [{"op": "enable", "iccid": PROFILE_B}])
    proc = subprocess.Popen([IPA, "--config", config, "--home", h, "--eim-url", eim.coap_url,
                             "--profile-download", "indirect", "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # (1) the enable PSMO, signed by the eIM, checked and carried out by the eUICC
        epr = wait_results(eim, eid, 1, proc)[0]["euiccPackageResult"]
        assert epr["signatureValid"] and epr["eimIdMatches"], epr
        assert [(r["name"], r["value"]) for r in epr["results"]] == [("enableResult", 0)]

        # (2) a trigger queued while the service runs: picked up at a later poll and carried
        # out as an indirect download, the eIM relaying each ES9+ step to the SM-DP+
        eim.queue_download_trigger(eid, activation_code="LPA:1$%s$MATCH-2" % dp.address)
        res = wait_results(eim, eid, 2, proc)[1]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped after" in err, err

    assert res["kind"] == "profileDownloadTriggerResult", res
    assert res["result"] == "profileInstallationResult", res
    assert res["eimTransactionId"] == eim.delivered(eid)[-1]["transactionId"]
    pir = [n for n in eim.notifications(eid) if n["kind"] == "profileInstallationResult"]
    assert pir and pir[-1]["signatureValid"] is True, pir
    # the SM-DP+ served the eIM's relay, in order (then maybe the PIR the eIM forwards to it)
    steps = [(e["function"], e["status"]) for e in dp.events][:3]
    assert steps == [("initiateAuthentication", "Executed-Success"),
                     ("authenticateClient", "Executed-Success"),
                     ("getBoundProfilePackage", "Executed-Success")], steps
    assert dp.events[1]["eid"] == eid and dp.events[1]["matchingId"] == "MATCH-2"
    # the eIM forwards the PIR to the SM-DP+ after storing the result: wait for it (bounded)
    deadline = time.monotonic() + WAIT
    while not dp.notifications and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dp.notifications and dp.notifications[-1]["type"] == "pir", list(dp.notifications)
    assert dp.notifications[-1]["verified"] is True and dp.notifications[-1]["success"] is True
    assert dp.profile("MATCH-2")["state"] == "installed"
    assert eim.queue(eid) == []

    # every ESipa message of both cycles went over CoAPS, the download steps included
    reqs = eim.requests
    assert {q["binding"] for q in reqs} == {"coaps"}, {q["binding"] for q in reqs}
    functions = [q["function"] for q in reqs]
    for f in ("getEimPackage", "provideEimPackageResult", "initiateAuthentication",
              "authenticateClient", "getBoundProfilePackage"):
        assert f in functions, functions

    after = profiles(h)
    assert after[PROFILE_B]["profileState"] == ENABLED
    assert NEW_ICCID in after, sorted(after)


def test_json_binding_over_coaps_is_a_clear_error(lab):
    """The JSON binding is HTTPS-only: `ipa` refuses it with a coaps:// eIM before sending
    anything (a usage error, exit 2); the package stays queued for a poll with the right
    binding."""
    h, config, eid, dp, eim = lab
    eim.queue_psmo(eid, [{"op": "enable", "iccid": PROFILE_B}])
    queued = eim.queue(eid)
    r = subprocess.run([IPA, "--config", config, "--home", h, "--eim-url", eim.coap_url,
                        "--binding", "json", "poll"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "the ESipa JSON binding runs over HTTPS only; use --binding asn1" in r.stderr
    assert eim.requests == []  # nothing reached the eIM's ESipa service
    assert eim.queue(eid) == queued and eim.results(eid) == []
    assert profiles(h)[PROFILE_B]["profileState"] == DISABLED
