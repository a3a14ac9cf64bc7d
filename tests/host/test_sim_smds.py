"""The simulated SM-DS on its own, over real TLS: ES12 event records as an SM-DP+ sees them
(ipa_host.sim.smdpp.smdpp_es12, the SM-DP+'s client), the HTTP front end's answers, and its
certificates. ES11 with a real eUICC runs in tests/integration/test_smds.py."""

import os

import pytest

from ipa_host.sim import pki
from ipa_host.sim.smdpp import smdpp_es12
from ipa_host.sim.smds import smds_es11
from ipa_host.sim.smds.smds import SmdsServer

EID = pki.DEFAULT_EID
EID_2 = "89049032123451234512345678901299"


@pytest.fixture
def ds(pki_dir, tmp_path):
    server = SmdsServer(str(tmp_path / "smds"), pki_dir).start()
    yield server
    server.stop()


def es12(ds, function, obj):
    return smdpp_es12.call(ds.address, ds.tls_ca_path, function, obj)


def register(ds, eid, event_id, address="dp.example:8443"):
    return es12(ds, "registerEvent", {"eid": eid, "rspServerAddress": address, "eventId": event_id})


def test_register_replace_and_delete(ds):
    assert register(ds, EID, "EV-1") == (200, "Executed-Success")
    assert register(ds, EID, "EV-2") == (200, "Executed-Success")
    assert register(ds, EID, "EV-1", "dp2.example") == (200, "Executed-Success")  # replaced
    assert register(ds, EID_2, "EV-9") == (200, "Executed-Success")
    assert [(r["eventId"], r["rspServerAddress"]) for r in ds.event_records(EID)] == [
        ("EV-1", "dp2.example"), ("EV-2", "dp.example:8443")]
    assert es12(ds, "deleteEvent", {"eid": EID, "eventId": "EV-1"}) == (200, "Executed-Success")
    assert es12(ds, "deleteEvent", {"eid": EID, "eventId": "EV-1"}) == (200, "Failed")
    assert ds.events[-1]["error"] == "eventIdUnknown"
    assert [r["eventId"] for r in ds.event_records()] == ["EV-2", "EV-9"]


def test_bounds_and_refusals(ds):
    for i in range(smds_es11.MAX_PER_EID):
        assert register(ds, EID, "E%d" % i)[1] == "Executed-Success"
    assert register(ds, EID, "ONE-MORE") == (200, "Failed")
    assert ds.events[-1]["error"] == "eventRecordsLimit"
    status, text = es12(ds, "registerEvent", {"eid": "123", "rspServerAddress": "a", "eventId": "E"})
    assert status == 400 and "eid: expected 32 digits" in text
    status, text = es12(ds, "registerEvent", {"eid": EID, "eventId": "E"})
    assert status == 400 and "rspServerAddress" in text
    status, text = es12(ds, "getEvents", {})
    assert status == 404 and "unknown function 'getEvents'" in text
    # the SM-DS does not speak ES9+
    status, text = smdpp_es12.call(ds.address, ds.tls_ca_path, "../es9plus/initiateAuthentication", {})
    assert status == 404


def test_certificates_and_fault_option(ds, pki_dir, tmp_path):
    assert sorted(f for f in os.listdir(ds.folder) if f.endswith(".crt")) == ["dsauth.crt", "dstls.crt"]
    assert ds.material["smdp_oid"] == "2.999.20"
    with pytest.raises(ValueError, match="fault 'nope'"):
        SmdsServer(str(tmp_path / "x"), pki_dir, fault="nope")


def test_an_smdp_trusting_another_ci_registers_nothing(ds, tmp_path):
    other = str(tmp_path / "other")
    pki.create_test_pki(other)
    with pytest.raises(OSError):
        smdpp_es12.call(ds.address, os.path.join(other, "ci.crt"), "registerEvent",
                        {"eid": EID, "rspServerAddress": "a", "eventId": "E"})
    assert ds.event_records() == []
