"""SM-DS discovery end to end, as a user runs it: `ipa download --smds [ADDRESS]` and an eIM's
contactSmds trigger handled by `ipa poll`, over real TLS, against the simulated SM-DS
(ipa_host.sim.smds: ES11 with CERT.DSauth signatures under the test CI, ES12 event records),
the simulated SM-DP+ that registers its events there over HTTPS, and the virtual eUICC,
which checks the SM-DS's certificate and signature against its CI as it does an SM-DP+'s.

Independent parties: the core IPA (ipa_core.es11, ipa_smds, ipa_download), the simulators
(their own codecs) and the eUICC.
"""

import os
import subprocess
import sys

import pytest

import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked
from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.home import eim_dir, open_home_euicc, sim_dir
from ipa_host.sim.smdpp.smdpp import SmdpServer
from ipa_host.sim.smds.smds import SmdsServer
from ipa_util import IPA, functions, info_json as info  # tests/integration/ipa_util.py

ICCID_1 = "89000123456789012341"
ICCID_2 = "89000123456789012358"


def _lab(tmp_path, fault=None):
    h = str(tmp_path / "home")
    card = open_home_euicc(h)
    pki_dir = os.path.join(sim_dir(h), "pki")
    ds = SmdsServer(str(tmp_path / "smds"), pki_dir, fault=fault).start()
    dp = SmdpServer(str(tmp_path / "smdp"), pki_dir, smds_address=ds.address).start()
    card.set_root_ds_address(ds.address)
    return h, card.eid, ds, dp


@pytest.fixture
def lab(tmp_path):
    """A provisioned home whose eUICC has the SM-DS as root SM-DS, and an SM-DP+ that
    announces its profiles there."""
    h, eid, ds, dp = _lab(tmp_path)
    try:
        yield h, eid, ds, dp
    finally:
        dp.stop()
        ds.stop()


def announce(dp, eid, *profiles):
    for mid, iccid in profiles:
        dp.add_profile(mid, iccid, "Profile " + mid, size=6000, eid=eid)
        dp.register_event(mid)


def ipa(h, ds, *args, timeout=120):
    cmd = [IPA, "--home", h, "--smdp-ca-file", ds.tls_ca_path] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def iccids(h):
    return [p["iccid"] for p in info(h)["profiles"]]


def es12(dp):
    return [(r["function"], r["request"]["eventId"], r["ok"]) for r in dp.es12]


def test_download_from_the_euiccs_root_smds(lab):
    h, eid, ds, dp = lab
    announce(dp, eid, ("EV-1", ICCID_1))
    assert [(e["eid"], e["eventId"]) for e in ds.event_records()] == [(eid, "EV-1")]
    r = ipa(h, ds, "download", "--smds")
    assert r.returncode == 0, r.stderr
    assert "SM-DS          %s: 1 event" % ds.address in r.stdout
    assert "event          EV-1 at %s" % dp.address in r.stdout
    assert "installed      %s  Profile EV-1" % ICCID_1 in r.stdout
    # the SM-DS authenticated the eUICC and answered its event; the SM-DP+ got
    # matchingId = eventId, then deleted the event at the SM-DS (ES12.DeleteEvent)
    assert functions(ds) == [("registerEvent", "Executed-Success"),
                             ("initiateAuthentication", "Executed-Success"),
                             ("authenticateClient", "Executed-Success"),
                             ("deleteEvent", "Executed-Success")]
    assert ds.retrievals[-1]["eid"] == eid
    assert [e.get("matchingId") for e in dp.events if e["function"] == "authenticateClient"] == ["EV-1"]
    assert es12(dp) == [("registerEvent", "EV-1", True), ("deleteEvent", "EV-1", True)]
    assert ds.event_records() == []
    assert ICCID_1 in iccids(h)
    # the PIR went to that SM-DP+, which verified it
    assert [(n["type"], n["iccid"], n["verified"]) for n in dp.notifications] == [
        ("pir", ICCID_1, True)]
    assert "notified       SM-DP+ %s: delivered" % dp.address in r.stdout
    # asked again: nothing left
    r = ipa(h, ds, "download", "--smds")
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "no event for this eUICC, nothing to download" in r.stdout


def test_explicit_address_several_events_json(lab, tmp_path):
    h, eid, ds, dp = lab
    card = open_home_euicc(h)
    card.set_root_ds_address("root-smds.invalid")  # not used: the address is given
    announce(dp, eid, ("EV-1", ICCID_1), ("EV-2", ICCID_2))
    r = ipa(h, ds, "--json", "download", "--smds", ds.address)
    assert r.returncode == 0, r.stderr
    out = cli_contract.result(r.stdout, "download")
    assert out["ok"] is True and out["smdsAddress"] == ds.address and out["more"] == 0
    assert out["eventEntries"] == [{"eventId": "EV-1", "rspServerAddress": dp.address},
                                   {"eventId": "EV-2", "rspServerAddress": dp.address}]
    assert [(d["eventId"], d["ok"], d["iccid"], d["matchingId"]) for d in out["downloads"]] == [
        ("EV-1", True, ICCID_1, "EV-1"), ("EV-2", True, ICCID_2, "EV-2")]
    assert {ICCID_1, ICCID_2} <= set(iccids(h))
    assert ds.event_records() == []


def test_first_only_leaves_the_rest_at_the_smds(lab):
    h, eid, ds, dp = lab
    announce(dp, eid, ("EV-1", ICCID_1), ("EV-2", ICCID_2))
    r = ipa(h, ds, "--json", "download", "--smds", "--first")
    assert r.returncode == 0, r.stderr
    out = cli_contract.result(r.stdout, "download")
    assert len(out["eventEntries"]) == 2 and [d["eventId"] for d in out["downloads"]] == ["EV-1"]
    assert [e["eventId"] for e in ds.event_records(eid)] == ["EV-2"]
    assert ICCID_1 in iccids(h) and ICCID_2 not in iccids(h)


def test_a_failed_event_does_not_stop_the_next(lab):
    h, eid, ds, dp = lab
    dp.add_profile("EV-CC", ICCID_1, "Needs a code", size=3000, cc="1234", eid=eid)
    dp.register_event("EV-CC")
    announce(dp, eid, ("EV-2", ICCID_2))
    r = ipa(h, ds, "--json", "download", "--smds")
    assert r.returncode == 1, r.stderr
    assert "event EV-CC: profile download failed" in r.stderr
    doc = cli_contract.envelope(r.stdout, "download")
    assert doc["error"]["code"] == "failed" and doc["error"]["stage"] == "confirmation code"
    got = [(d["eventId"], d["ok"], d.get("stage")) for d in doc["result"]["downloads"]]
    assert got == [("EV-CC", False, "confirmation code"), ("EV-2", True, None)]
    # the refused one is still announced (its order was released), the other is gone
    assert [e["eventId"] for e in ds.event_records(eid)] == ["EV-CC"]
    assert ICCID_2 in iccids(h) and ICCID_1 not in iccids(h)


def test_no_event_is_a_clear_distinct_exit(lab):
    h, eid, ds, dp = lab
    r = ipa(h, ds, "download", "--smds")
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "SM-DS          %s: no event for this eUICC, nothing to download" % ds.address in r.stdout
    r = ipa(h, ds, "--json", "download", "--smds")
    assert r.returncode == 4
    doc = cli_contract.envelope(r.stdout, "download")
    assert not doc["ok"] and doc["exitCode"] == 4 and doc["error"]["code"] == "noEvent"
    assert "has no event for this eUICC" in doc["error"]["message"]
    out = doc["result"]
    assert out["eventEntries"] == [] and out["downloads"] == [] and out["ok"] is False


def test_smds_whose_signature_does_not_verify_is_refused_by_the_euicc(tmp_path):
    h, eid, ds, dp = _lab(tmp_path, fault="bad-signature")
    try:
        announce(dp, eid, ("EV-1", ICCID_1))
        r = ipa(h, ds, "download", "--smds")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "failed at ES10b.AuthenticateServer" in r.stderr
        assert "the eUICC refused the SM-DS %s: invalidSignature (2)" % ds.address in r.stderr
        # the SM-DS was told (its AuthenticateClient saw the eUICC's error), learnt no EID,
        # and the event is still there
        assert functions(ds)[-1] == ("authenticateClient", "Failed")
        assert not ds.retrievals and len(ds.event_records(eid)) == 1
        assert ICCID_1 not in iccids(h)
        doc = cli_contract.envelope(ipa(h, ds, "--json", "download", "--smds").stdout, "download")
        assert doc["exitCode"] == 1 and doc["result"] == {"smdsAddress": ds.address}
        assert doc["error"]["stage"] == "ES10b.AuthenticateServer", doc
        assert "invalidSignature" in doc["error"]["message"]
    finally:
        dp.stop()
        ds.stop()


def test_untrusted_smds_is_a_transport_error(lab):
    h, eid, ds, dp = lab
    r = subprocess.run([IPA, "--home", h, "download", "--smds"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "ES11.InitiateAuthentication" in r.stderr
    assert functions(ds) == []


def test_usage_errors(lab):
    h, eid, ds, dp = lab
    for args, words in ((["download"], "activation code or --smds"),
                        (["download", "--smds", "--indirect"], "--indirect does not apply"),
                        (["download", "1$x.example$M", "--first"], "only with --smds"),
                        (["download", "--smds", "bad host"], "SM-DS address")):
        r = ipa(h, ds, *args)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
    assert functions(ds) == []


@pytest.mark.parametrize("explicit", [False, True])
def test_eim_contact_smds_trigger(lab, explicit):
    h, eid, ds, dp = lab
    if explicit:
        open_home_euicc(h).set_root_ds_address("root-smds.invalid")
    announce(dp, eid, ("EV-1", ICCID_1))
    eim = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"),
                    association_token=1).start()
    try:
        eim.queue_download_trigger(eid, contact_smds=ds.address if explicit else True)
        r = ipa(h, ds, "--eim-url", eim.url, "--profile-download", "direct", "poll")
        assert r.returncode == 0, r.stderr
        assert "profileDownloadTriggerRequest" in r.stdout
        res = eim.results(eid)[-1]
        assert res["kind"] == "profileDownloadTriggerResult", res
        assert res["result"] == "profileInstallationResult" and res["eimTransactionId"], res
        assert ds.retrievals[-1]["eventEntries"] == [{"eventId": "EV-1",
                                                      "rspServerAddress": dp.address}]
        assert ("getBoundProfilePackage", "Executed-Success") in functions(dp)
        assert ds.event_records() == []
        assert ICCID_1 in iccids(h)
        # the PIR went to the SM-DP+ too, not only in the eIM's result
        assert [(n["type"], n["iccid"], n["verified"]) for n in dp.notifications] == [
            ("pir", ICCID_1, True)]
    finally:
        eim.stop()


def test_eim_contact_smds_without_event_reports_an_error(lab):
    h, eid, ds, dp = lab
    eim = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"),
                    association_token=1).start()
    try:
        eim.queue_download_trigger(eid, contact_smds=True)
        r = ipa(h, ds, "--eim-url", eim.url, "--profile-download", "direct", "poll")
        assert r.returncode == 0, r.stderr
        assert "has no event for this eUICC" in r.stderr
        res = eim.results(eid)[-1]
        assert res["result"] == "profileDownloadError" and res["der"].endswith("300380017F"), res
        assert not list(dp.events)
    finally:
        eim.stop()


def _first_line(proc):
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.poll() is not None else "no output"
    return line


def test_ipa_sim_smds_and_smdpp_processes(tmp_path):
    """The servers as a user starts them (`ipa-sim smds serve`, `ipa-sim smdpp serve --smds
    --eid`), then `ipa download --smds ADDRESS`."""
    h = str(tmp_path / "home")
    eid = open_home_euicc(h).eid
    pki_dir = os.path.join(sim_dir(h), "pki")
    sim = os.path.join(os.path.dirname(sys.executable), "ipa-sim")
    procs = []
    try:
        procs.append(subprocess.Popen([sim, "smds", "serve", "--dir", str(tmp_path / "smds"),
                                       "--pki", pki_dir, "--port", "0"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        line = _first_line(procs[0])
        assert line.startswith("SM-DS at https://127.0.0.1:"), line
        ds_address = line.split()[4]
        procs.append(subprocess.Popen([sim, "smdpp", "serve", "--dir", str(tmp_path / "smdp"),
                                       "--pki", pki_dir, "--port", "0", "--smds", ds_address,
                                       "--eid", eid, "--profile", "EV-7=%s:5000" % ICCID_1],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        assert _first_line(procs[1]).startswith("SM-DP+ at https://127.0.0.1:")
        _first_line(procs[1])  # the activation code
        assert "event EV-7 for EID %s registered" % eid in _first_line(procs[1])
        r = subprocess.run([IPA, "--home", h, "--smdp-ca-file", os.path.join(pki_dir, "ci.crt"),
                            "download", "--smds", ds_address], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert "installed      %s  Test profile EV-7" % ICCID_1 in r.stdout
        assert ICCID_1 in iccids(h)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
