"""Notifications addressed to an SM-DP+ reach it, end to end, as a user runs it: the real `ipa`
command (subprocess) with the virtual eUICC, the simulated SM-DP+ (ES9+ over real TLS, which
checks every eUICC signature) and the simulated eIM.

- `ipa download` (direct) hands the PIR to the SM-DP+ right after the install; it leaves
  the eUICC once the SM-DP+ took it;
- the enable / disable / delete notifications of that profile (its metadata names the SM-DP+
  for each) go there with `ipa poll` and `ipa notifications process`, those of the demo
  profiles (addressed to the eIM) to the eIM: each to its own peer;
- an SM-DP+ that is down: kept, left alone for the back-off, delivered once it is back and
  the wait is over, never twice.
"""

import json
import os
import subprocess
import time

import pytest

from ipa_core import apdu, es10
from ipa_host.sim import pki
from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.eim.signer import build_euicc_package_request
from ipa_host.sim.home import DEMO_EIM_FQDN, DEMO_EIM_ID, DEMO_PROFILES, eim_dir, \
    open_home_euicc, sim_dir
from ipa_host.sim.smdpp.smdpp import SmdpServer
from ipa_util import IPA, functions, info_json  # tests/integration/ipa_util.py
import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked

ICCID = "89000123456789012341"
BACKOFF_S = 8
PROFILE_A = DEMO_PROFILES[0]["iccid"]  # enabled, notifies the eIM


@pytest.fixture
def lab(tmp_path):
    """A provisioned home, its eIM and an SM-DP+ under the same test CI; error_backoff 8 s
    (long enough for a loaded machine to poll again within it)."""
    h = str(tmp_path / "home")
    card = open_home_euicc(h)
    eim = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"),
                    association_token=1).start()
    dp = SmdpServer(str(tmp_path / "smdp"), os.path.join(sim_dir(h), "pki")).start()
    dp.add_profile("MATCH-1", ICCID, "Test profile", size=3000)
    conf = tmp_path / "ipa.toml"
    conf.write_text("[ipa]\nerror_backoff = %d\n" % BACKOFF_S)
    try:
        yield {"home": h, "eid": card.eid, "eim": eim, "dp": dp, "conf": str(conf)}
    finally:
        dp.stop()
        eim.stop()


def ipa(lab, *args):
    cmd = [IPA, "--config", lab["conf"], "--home", lab["home"], "--eim-url", lab["eim"].url,
           "--smdp-ca-file", lab["dp"].tls_ca_path] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def ipa_json(lab, *args, rc=0):
    """The --json result (schema-checked envelope; ok exactly when rc is 0)."""
    r = ipa(lab, "--json", *args)
    assert r.returncode == rc, r.stderr
    doc = cli_contract.envelope(r.stdout)
    assert doc["ok"] == (rc == 0), doc
    return doc["result"]


def pending(lab):
    """{seqNumber: (operation, iccid, notificationAddress)} of the eUICC's pending list."""
    return {n["seqNumber"]: (n["profileManagementOperation"][0], n["iccid"],
                             n["notificationAddress"])
            for n in info_json(lab["home"])["notifications"]}


def at_smdp(lab):
    """(kind, seqNumber, iccid, verified) of what the SM-DP+ got, from its notifications.jsonl
    (what `ipa-sim smdpp serve` writes; also checked against the in-process record)."""
    dp = lab["dp"]
    if not os.path.exists(dp.notifications_path):
        return []
    with open(dp.notifications_path) as f:
        lines = [json.loads(x) for x in f]
    assert [x["verified"] for x in lines] == [n["verified"] for n in dp.notifications]
    return [((x.get("operation") or ["install"])[0], x.get("seqNumber"), x.get("iccid"),
             x["verified"]) for x in lines]


def load_package(lab, counter, ops):
    """A lab path: the eIM's signed package loaded straight into the eUICC (ES10b), its
    result and notifications left pending as after a power cut."""
    card = open_home_euicc(lab["home"])
    key = pki.load_private_key(os.path.join(sim_dir(lab["home"]), "pki", "eim.key"))
    req = build_euicc_package_request(DEMO_EIM_ID, lab["eid"], counter, ops, key,
                                      association_token=1)
    s = apdu.IsdrSession(card).open()
    try:
        es10.load_euicc_package(s, req)
    finally:
        s.close()


def download(lab):
    r = ipa(lab, "download", "LPA:1$%s$MATCH-1" % lab["dp"].address)
    assert r.returncode == 0, r.stderr
    return r


def test_direct_download_delivers_the_pir(lab):
    dp = lab["dp"]
    r = download(lab)
    assert "installed      %s" % ICCID in r.stdout
    got = at_smdp(lab)
    assert len(got) == 1 and got[0][0] == "install" and got[0][2:] == (ICCID, True)
    seq = got[0][1]
    assert "notified       SM-DP+ %s: delivered %d, removed %d" % (dp.address, seq, seq) \
        in r.stdout
    assert dp.notifications[0]["type"] == "pir" and dp.notifications[0]["success"]
    assert dp.profile("MATCH-1")["state"] == "installed"  # the SM-DP+ closed the order
    assert seq not in pending(lab)
    # nothing went to the eIM
    assert lab["eim"].notifications(lab["eid"]) == []


def test_enable_and_delete_reach_the_smdp_each_peer_its_own(lab):
    eim, dp, eid = lab["eim"], lab["dp"], lab["eid"]
    download(lab)
    # The eIM enables the new profile: the demo profile's disable (for the eIM) rides in the
    # result, the new profile's enable (for the SM-DP+) stays for the notification pass.
    eim.queue_psmo(eid, [{"op": "enable", "iccid": ICCID}])
    out = ipa_json(lab, "poll")
    assert out["result"]["operations"][0][:2] == ["enableResult", 0]
    left = pending(lab)
    (enable_seq,) = [s for s, v in left.items() if v == ("notificationEnable", ICCID, dp.address)]
    assert list(left) == [enable_seq]
    assert [n["seqNumber"] for n in eim.notifications(eid)] == [
        s for s in out["acknowledged"] if s != out["result"]["seqNumber"]]
    # the next poll delivers it to the SM-DP+
    out = ipa_json(lab, "poll")
    peer = out["notifications"]["peers"][dp.address]
    assert peer["peer"] == "smdp" and peer["delivered"] == peer["removed"] == [enable_seq]
    assert at_smdp(lab)[-1] == ("enable", enable_seq, ICCID, True)
    assert pending(lab) == {}
    # A mixed list by a lab path: the demo profile back (its enable: the eIM), the new one
    # disabled and deleted (the SM-DP+); `ipa notifications process` sends each to its peer.
    load_package(lab, 20, [{"op": "enable", "iccid": PROFILE_A}, {"op": "delete", "iccid": ICCID}])
    left = pending(lab)
    assert sorted(v[0] for v in left.values()) == ["notificationDelete", "notificationDisable",
                                                   "notificationEnable"]
    r = ipa(lab, "notifications", "process")
    assert r.returncode == 0, r.stderr
    for_dp = sorted(s for s, v in left.items() if v[2] == dp.address)
    for_eim = [s for s, v in left.items() if v[2] == DEMO_EIM_FQDN]
    assert len(for_dp) == 2 and len(for_eim) == 1
    assert "SM-DP+ %s: delivered %s, removed %s" % (dp.address, ",".join(map(str, for_dp)),
                                                    ",".join(map(str, for_dp))) in r.stdout
    assert "eIM %s: delivered %d" % (DEMO_EIM_FQDN, for_eim[0]) in r.stdout
    assert sorted(at_smdp(lab)[-2:]) == sorted([("disable", for_dp[0], ICCID, True),
                                                ("delete", for_dp[1], ICCID, True)])
    assert eim.notifications(eid)[-1]["seqNumber"] == for_eim[0]
    assert pending(lab) == {}
    # each once: nothing is sent again
    before = len(functions(dp))
    assert ipa_json(lab, "notifications", "process")["delivered"] == []
    assert len(functions(dp)) == before


def test_smdp_down_kept_retried_delivered_once(lab):
    dp = lab["dp"]
    download(lab)
    dp.stop()
    load_package(lab, 20, [{"op": "enable", "iccid": ICCID}])
    (seq,) = [s for s, v in pending(lab).items() if v[2] == dp.address]
    # SM-DP+ down: the poll cycle itself succeeds, the notification stays, backing off
    out = ipa_json(lab, "poll")
    failed_at = time.monotonic()
    n = out["notifications"]
    assert out["error"] is None and n["failed"] == [seq]
    assert n["peers"][dp.address]["retryInS"] == BACKOFF_S and n["peers"][dp.address]["error"]
    assert seq in pending(lab)
    # back up, but within the back-off a poll does not try it
    dp.start()
    before = len(functions(dp))
    n = ipa_json(lab, "poll")["notifications"]
    assert n["kept"] == [seq] and len(functions(dp)) == before
    # the wait over, the next poll delivers it, once
    time.sleep(max(0, failed_at + BACKOFF_S + 0.5 - time.monotonic()))
    r = ipa(lab, "poll")
    assert r.returncode == 0, r.stderr
    assert "notifications  SM-DP+ %s: delivered %d, removed %d" % (dp.address, seq, seq) \
        in r.stdout
    assert seq not in pending(lab)
    assert [g for g in at_smdp(lab) if g[1] == seq] == [("enable", seq, ICCID, True)]
    assert ipa_json(lab, "poll")["notifications"]["delivered"] == []
    assert [g for g in at_smdp(lab) if g[1] == seq] == [("enable", seq, ICCID, True)]


def test_notifications_process_without_an_eim_and_smdp_down(lab, tmp_path):
    """No eIM configured (a direct-download-only device): `ipa notifications process` still
    reaches the SM-DP+; while it is down the command says so and keeps everything."""
    dp = lab["dp"]
    download(lab)
    load_package(lab, 20, [{"op": "enable", "iccid": ICCID}])
    dp.stop()
    cmd = [IPA, "--home", lab["home"], "--eim-id", "no-such-eim", "--smdp-ca-file",
           dp.tls_ca_path, "notifications", "process"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    (seq,) = [s for s, v in pending(lab).items() if v[2] == dp.address]
    assert "SM-DP+ %s: failed %d, retry in 30 s (TransportError" % (dp.address, seq) in r.stdout
    r = subprocess.run(cmd[:1] + ["--json"] + cmd[1:], capture_output=True, text=True,
                       timeout=120)
    doc = cli_contract.envelope(r.stdout, "notifications process")
    assert r.returncode == 1 and not doc["ok"] and doc["error"]["type"] == "NotDelivered"
    assert "SM-DP+ %s: TransportError" % dp.address in doc["error"]["message"]
    assert doc["result"]["peers"][dp.address]["failed"] == [seq]
    dp.start()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1  # the eIM's own notification has no peer here: kept, said so
    assert "SM-DP+ %s: delivered %d, removed %d" % (dp.address, seq, seq) in r.stdout
    assert "no peer %s: kept" % DEMO_EIM_FQDN in r.stdout
    assert list(pending(lab).values()) == [("notificationDisable", PROFILE_A, DEMO_EIM_FQDN)]


def test_indirect_only_device_has_the_eim_relay_them(lab):
    """--profile-download indirect (a device that reaches SM-DP+s only through its eIM): the
    eIM relays the SM-DP+'s notifications (SGP.32 indirect mode), listed in forSmdp."""
    eim, dp, eid = lab["eim"], lab["dp"], lab["eid"]
    download(lab)
    load_package(lab, 20, [{"op": "enable", "iccid": ICCID}])
    out = ipa_json(lab, "--profile-download", "indirect", "notifications", "process")
    for_dp = [s for s in out["delivered"] if s in out["forSmdp"]]
    assert len(for_dp) == 1 and out["peers"][DEMO_EIM_FQDN]["peer"] == "eim"
    assert dp.address not in out["peers"] and len(dp.notifications) == 1  # the PIR only
    assert for_dp[0] in [n["seqNumber"] for n in eim.notifications(eid)]
    assert pending(lab) == {}


def test_killed_after_the_smdp_took_it_removes_and_never_resends(lab):
    """A power cut (SIGKILL by the test-only hook, docs/resilience.md) right after the SM-DP+
    answered: the next run removes the notification from the eUICC without sending it again."""
    dp = lab["dp"]
    download(lab)
    load_package(lab, 20, [{"op": "enable", "iccid": ICCID}])
    (seq,) = [s for s, v in pending(lab).items() if v[2] == dp.address]
    cmd = [IPA, "--home", lab["home"], "--eim-url", lab["eim"].url, "--smdp-ca-file",
           dp.tls_ca_path]
    before = len(dp.notifications)
    # kill after event 1, 2, ... until a run is killed right at the SM-DP+'s answer
    for k in range(1, 60):
        r = subprocess.run(cmd + ["notifications", "process"], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ, IPA_TEST_KILL_AFTER_STEP=str(k)))
        assert r.returncode == -9, r.stderr
        if len(dp.notifications) > before:
            break
    def last_event(r):
        return [x for x in r.stderr.splitlines() if x.startswith("test-kill event")][-1]
    assert last_event(r) == "test-kill event %d: SM-DP+ /gsma/rsp2/es9plus/handleNotification" % k
    assert seq in pending(lab) and len(dp.notifications) == before + 1
    # Cut there, before ipa.notified was written: the one window that sends it again (as
    # with the eIM). Now cut right after that write:
    for m in range(1, 20):
        r = subprocess.run(cmd + ["notifications", "process"], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ, IPA_TEST_KILL_AFTER_STEP=str(m)))
        assert r.returncode == -9, r.stderr
        if last_event(r).endswith(": put ipa.notified"):
            break
    assert seq in pending(lab)
    sent = len(dp.notifications)
    # the run cut at the answer sent it once more (the window), the run cut after the
    # write once: nothing else
    assert sent == before + 3
    # ... and the next run removes it without sending it again
    r = subprocess.run(cmd + ["--json", "notifications", "process"], capture_output=True,
                       text=True, timeout=120)
    out = cli_contract.result(r.stdout, "notifications process")
    assert seq in out["removed"] and seq not in out["delivered"]
    assert seq not in pending(lab) and len(dp.notifications) == sent


def test_ipa_sim_smdpp_serve_records_verdicts(tmp_path):
    """The command-line SM-DP+ (`ipa-sim smdpp serve`, a process of its own) writes each
    notification and its verdict to <dir>/notifications.jsonl, where a test reads them."""
    h = str(tmp_path / "home")
    open_home_euicc(h)
    pki_dir = os.path.join(sim_dir(h), "pki")
    smdp_dir = str(tmp_path / "smdp")
    sim = os.path.join(os.path.dirname(IPA), "ipa-sim")
    proc = subprocess.Popen([sim, "smdpp", "serve", "--dir", smdp_dir, "--pki", pki_dir,
                             "--port", "0", "--profile", "MATCH-9=%s:2000" % ICCID],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED=""))  # its own flush
    try:
        code = log_path = None
        deadline = time.monotonic() + 60
        while (code is None or log_path is None) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "ipa-sim smdpp ended early"
            if line.startswith("notifications received"):
                log_path = line.split(": ", 1)[1].strip()
            if line.startswith("activation code: "):
                code = line.split(": ", 1)[1].strip()
        assert code and log_path == os.path.join(smdp_dir, "notifications.jsonl")
        r = subprocess.run([IPA, "--home", h, "--smdp-ca-file", os.path.join(pki_dir, "ci.crt"),
                            "download", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        with open(log_path) as f:
            (rec,) = [json.loads(x) for x in f]
        assert (rec["type"], rec["iccid"], rec["success"], rec["verified"]) == (
            "pir", ICCID, True, True)
        assert rec["raw"].startswith("BF37")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
