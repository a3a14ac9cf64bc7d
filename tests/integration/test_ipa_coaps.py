"""`ipa poll` over CoAP/DTLS (SGP.32 eimRetrieveCoaps) against the simulated eIM's CoAPS
endpoint, with the virtual eUICC: the same procedures as over HTTPS (test_ipa_eim.py).

The eUICC's trustedPublicKeyDataTls is the eIM folder's TLS CA, which also signs the
eIM's DTLS certificate, so the IPA trusts the eIM over CoAPS exactly as over HTTPS.
"""

import os
import subprocess

import pytest

from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.home import DEMO_PROFILES, eim_dir, open_home_euicc, sim_dir
from ipa_util import IPA  # tests/integration/ipa_util.py
import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked

PROFILE_A, PROFILE_B, TEST_PROFILE = (p["iccid"] for p in DEMO_PROFILES)


@pytest.fixture
def home(tmp_path):
    h = str(tmp_path / "home")
    card = open_home_euicc(h)
    server = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"),
                       association_token=1, coap_port=0).start()
    try:
        yield h, card.eid, server
    finally:
        server.stop()


def ipa(h, url, *args, timeout=60):
    cmd = [IPA, "--home", h, "--eim-url", url] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_idle_poll_over_coaps(home):
    h, eid, server = home
    r = ipa(h, server.coap_url, "poll")
    assert r.returncode == 0, r.stderr
    assert "no package (noEimPackageAvailable)" in r.stdout
    assert [(q["binding"], q["function"], q["eid"]) for q in server.requests] == \
        [("coaps", "getEimPackage", eid)]


def test_psmo_cycle_over_coaps(home):
    h, eid, server = home
    server.queue_psmo(eid, [{"op": "enable", "iccid": PROFILE_B}])
    r = ipa(h, server.coap_url, "--json", "poll")
    assert r.returncode == 0, r.stderr
    out = cli_contract.result(r.stdout)
    assert out["package"] == "euiccPackageRequest"
    assert out["result"]["operations"][0][:2] == ["enableResult", 0]
    assert out["delivered"] and out["acknowledged"]
    results = server.results(eid)
    assert len(results) == 1
    epr = results[0]["euiccPackageResult"]
    assert epr["signatureValid"] and epr["eimIdMatches"]
    assert epr["results"][0]["name"] == "enableResult" and epr["results"][0]["value"] == 0
    assert server.queue(eid) == []
    # Every ESipa message of the cycle went over CoAPS, on one DTLS association.
    reqs = server.requests
    assert {q["binding"] for q in reqs} == {"coaps"}
    assert [q["function"] for q in reqs][:2] == ["getEimPackage", "provideEimPackageResult"]
    assert len({q["conn"] for q in reqs}) == 1


def test_wrong_trust_is_refused_before_anything_is_sent(home, tmp_path):
    h, eid, server = home
    from ipa_host.sim.eim import eim_tls

    other = eim_tls.ensure_tls(str(tmp_path / "other"))  # another CA
    r = ipa(h, server.coap_url, "--ca-file", other["ca_cert"], "poll")
    assert r.returncode != 0
    assert "DTLS certificate verification" in r.stderr + r.stdout
    assert server.requests == []


def test_ipa_euicc_data_request_over_coaps(home):
    h, eid, server = home
    # BF22 EUICCInfo2 (hundreds of bytes: the answer needs Block1), 84 associationToken
    server.queue_data_request(eid, ["BF22", "84"])
    r = ipa(h, server.coap_url, "--json", "poll")
    assert r.returncode == 0, r.stderr
    assert cli_contract.result(r.stdout)["package"] == "ipaEuiccDataRequest"
    got = server.results(eid)[-1]
    assert got["kind"] == "ipaEuiccDataResponse", got
    from ipa_core import tlv

    data = tlv.decode(bytes.fromhex(got["der"])).find(0xA0)  # ipaEuiccData
    assert data is not None and data.find(0xBF22) is not None
    assert data.find(0x84).as_int() == 1
    assert {q["binding"] for q in server.requests} == {"coaps"}


def test_notifications_are_delivered_over_coaps(home):
    h, eid, server = home
    # A disable run directly on the eUICC leaves a signed notification pending.
    from ipa_core import apdu, es10
    from ipa_host.sim import pki
    from ipa_host.sim.eim.signer import build_euicc_package_request

    card = open_home_euicc(h)
    key = pki.load_private_key(os.path.join(sim_dir(h), "pki", "eim.key"))
    req = build_euicc_package_request("ipa-demo-eim", eid, 1,
                                      [{"op": "disable", "iccid": PROFILE_A}], key,
                                      association_token=1)
    s = apdu.IsdrSession(card).open()
    es10.load_euicc_package(s, req)
    pending = [n["seqNumber"] for n in es10.list_notification(s)]
    s.close()
    assert pending
    r = ipa(h, server.coap_url, "--json", "notifications", "process")
    assert r.returncode == 0, r.stderr
    done = cli_contract.result(r.stdout)
    assert done["delivered"] and sorted(done["removed"]) == sorted(done["delivered"])
    assert server.notifications(eid)
    assert {q["binding"] for q in server.requests} == {"coaps"}
    s = apdu.IsdrSession(open_home_euicc(h)).open()
    left = [n["seqNumber"] for n in es10.list_notification(s)]
    s.close()
    assert left == [n for n in pending if n not in done["removed"]]
