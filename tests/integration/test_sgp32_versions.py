"""A full IPA cycle in SGP.32 v1.0 and v1.2 (issue 15), as a user runs it: the real `ipa
--sgp32 V` command against the simulated eIM (`version` V: its own ESipa codec, which reads
only V's forms) relaying to the simulated SM-DP+, with the virtual eUICC speaking V - in
process, and for v1.0 also through the real PC/SC stack (pcscd + vpcd).

Every package kind: PSMO enable / disable / delete / listProfileInfo, eCO addEim /
deleteEim, an IpaEuiccDataRequest naming every IpaEuiccData tag of V, pending notifications
delivered with HandleNotification, and an indirect profile download triggered by the eIM.
The eIM checks each eUICC signature it gets; a result in the other version's form is refused.
"""

import os
import subprocess

import pytest

from ipa_core import tlv
from ipa_host.sim import pki
from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.home import DEMO_PROFILES, eim_dir, open_home_euicc, sim_dir
from ipa_host.sim.smdpp.smdpp import SmdpServer
from ipa_util import IPA, info_json, profile_states  # tests/integration/ipa_util.py
import cli_contract  # tests/host/cli_contract.py

PROFILE_A, PROFILE_B, TEST_PROFILE = (p["iccid"] for p in DEMO_PROFILES)
ICCID_NEW = "89000123456789012358"

# Every IpaEuiccData component's tag, per version (SGP32Definitions v1.0 / v1.2).
ALL_TAGS = {
    "1.0": ["80", "BF20", "BF22", "83", "84", "A5", "A6", "A8", "A9", "BF2B"],
    "1.2": ["A0", "81", "A2", "BF20", "BF22", "83", "84", "A5", "A6", "87", "A8", "A9"],
}


def start_lab(tmp_path, version):
    """Home (virtual eUICC speaking `version`), SM-DP+ with one profile, eIM of `version`."""
    h = str(tmp_path / "home")
    card = open_home_euicc(h, version=version)  # only its EID is used: `ipa` opens its own
    pki_dir = os.path.join(sim_dir(h), "pki")
    dp = SmdpServer(str(tmp_path / "smdp"), pki_dir, sgp32=version).start()
    dp.add_profile("MATCH-V", ICCID_NEW, "Versioned profile", size=6000)
    eim = EimServer(eim_dir(h), pki_dir=pki_dir, association_token=1, version=version,
                    smdp_ca_file=dp.tls_ca_path).start()
    return h, card, dp, eim


def ipa(h, eim, version, *args, card=(), timeout=120):
    cmd = [IPA, "--home", h, "--eim-url", eim.url, "--sgp32", version] + list(card) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def poll(h, eim, version, card=()):
    r = ipa(h, eim, version, "--json", "poll", card=card)
    assert r.returncode == 0, r.stdout + r.stderr
    return cli_contract.result(r.stdout)


def last_result(eim, eid):
    got = eim.results(eid)
    assert got, "the eIM received no result"
    return got[-1]


def epr_of(entry):
    epr = entry["euiccPackageResult"]
    assert epr["signatureValid"] is True and epr["eimIdMatches"], epr
    return [(r["name"], r.get("value")) for r in epr["results"]]


def full_cycle(tmp_path, version, card=(), served=None):
    """The whole cycle; card: the `ipa --card` option (default: the home's virtual eUICC);
    served: the VirtualEuicc behind that card when it is not the home's state file."""
    h, vcard, dp, eim = start_lab(tmp_path, version)
    eid = vcard.eid
    try:
        # PSMO enable: the result and the profile notifications in one ePRAndNotifications
        eim.queue_psmo(eid, [{"op": "enable", "iccid": PROFILE_B}])
        out = poll(h, eim, version, card)
        assert out["result"]["operations"][0][:2] == ["enableResult", 0]
        entry = last_result(eim, eid)
        assert entry["kind"] == "ePRAndNotifications", entry
        assert epr_of(entry) == [("enableResult", 0)]
        assert len(eim.notifications(eid)) == 2  # disable of A, enable of B: signatures checked
        assert all(n["signatureValid"] for n in eim.notifications(eid))
        # PSMO disable, then delete of the same profile
        eim.queue_psmo(eid, [{"op": "disable", "iccid": PROFILE_B}])
        assert poll(h, eim, version, card)["result"]["operations"][0][:2] == ["disableResult", 0]
        eim.queue_psmo(eid, [{"op": "delete", "iccid": PROFILE_B}])
        assert poll(h, eim, version, card)["result"]["operations"][0][:2] == ["deleteResult", 0]
        assert PROFILE_B not in profile_states(info_json(h))
        # PSMO listProfileInfo
        eim.queue_psmo(eid, [{"op": "listProfileInfo"}])
        poll(h, eim, version, card)
        assert epr_of(last_result(eim, eid))[0][0] == "listProfileInfoResult"
        # eCO addEim, deleteEim
        key = pki.load_certificate(os.path.join(sim_dir(h), "pki", "eim.crt"))
        eim.queue_eco(eid, [{"op": "addEim", "eimId": "second-eim", "eimFqdn": "eim2.example",
                             "counterValue": 0, "eimPublicKey": key.public_key()}])
        poll(h, eim, version, card)
        assert epr_of(last_result(eim, eid))[0][0] == "addEimResult"
        eim.queue_eco(eid, [{"op": "deleteEim", "eimId": "second-eim"}])
        poll(h, eim, version, card)
        assert epr_of(last_result(eim, eid)) == [("deleteEimResult", 0)]
        # IpaEuiccDataRequest naming every component of this version's IpaEuiccData
        eim.queue_data_request(eid, ALL_TAGS[version])
        poll(h, eim, version, card)
        entry = last_result(eim, eid)
        assert entry["kind"] == "ipaEuiccDataResponse" and entry["response"] == "ipaEuiccData"
        got = set(entry["fields"])
        for tag in ("BF20", "BF22", "83", "84", "A5", "A6", "A8"):
            assert tag in got, (tag, entry["fields"])
        list_tag = "BF2B" if version == "1.0" else "A0"
        assert list_tag in got and ("87" in got) == (version != "1.0"), entry["fields"]
        # Notifications left pending by a package run outside the IPA, delivered by HandleNotification
        pending_before = len(eim.notifications(eid))
        signer_load(h, eid, served or open_home_euicc(h), version,
                    [{"op": "enable", "iccid": PROFILE_A}], counter=50)
        r = ipa(h, eim, version, "--json", "notifications", "process", card=card)
        assert r.returncode == 0, r.stderr
        done = cli_contract.result(r.stdout)
        assert done["delivered"] and sorted(done["removed"]) == sorted(done["delivered"])
        assert len(eim.notifications(eid)) > pending_before
        # Indirect download triggered by the eIM, relayed to the SM-DP+
        eim.queue_download_trigger(eid, activation_code="LPA:1$%s$MATCH-V" % dp.address)
        r = ipa(h, eim, version, "--profile-download", "indirect", "--json", "poll", card=card)
        assert r.returncode == 0, r.stdout + r.stderr
        entry = last_result(eim, eid)
        assert entry["kind"] == "profileDownloadTriggerResult", entry
        assert entry["result"] == "profileInstallationResult", entry
        assert ICCID_NEW in profile_states(info_json(h))
        auth = [e for e in dp.events if e.get("function") == "authenticateClient"]
        assert auth and auth[0]["iotVersions"] == [version + ".0"] and auth[0]["sgp32Match"]
        # The eIM never refused a message of this version
        assert all(q["status"] < 400 for q in eim.requests), [
            (q["function"], q.get("status"), q.get("note")) for q in eim.requests]
    finally:
        eim.stop()
        dp.stop()


def signer_load(h, eid, card, version, ops, counter):
    """Run an eUICC Package on the card directly (as if another IPA did): notifications stay."""
    from ipa_core import apdu, es10
    from ipa_host.sim.eim.signer import build_euicc_package_request

    req = build_euicc_package_request(
        "ipa-demo-eim", eid, counter, ops,
        pki.load_private_key(os.path.join(sim_dir(h), "pki", "eim.key")), association_token=1,
        version=version)
    assert card.version == version  # kept in its state file
    s = apdu.IsdrSession(card, version=version).open()
    try:
        es10.load_euicc_package(s, req)
    finally:
        s.close()


@pytest.mark.parametrize("version", ["1.0", "1.2"])
def test_full_cycle_in_process(tmp_path, version):
    full_cycle(tmp_path, version)


def test_full_cycle_v1_0_over_pcsc(tmp_path, pcscd_server):
    """v1.0 through pcscd + vpcd: the virtual eUICC of the home behind the vpcd reader."""
    from ipa_host.sim.euicc.vpcd import VpcdBridge

    card = open_home_euicc(str(tmp_path / "home"), version="1.0")
    with VpcdBridge(card, port=pcscd_server.port):
        pcscd_server.wait_card(True, timeout=10)
        full_cycle(tmp_path, "1.0", card=("--card", "pcsc:%s" % pcscd_server.reader),
                   served=card)


def test_json_binding_v1_0(tmp_path):
    """The JSON binding in v1.0: same keys, the v1.0 TLVs inside (docs/versions.md)."""
    h, vcard, dp, eim = start_lab(tmp_path, "1.0")
    try:
        eim.queue_psmo(vcard.eid, [{"op": "enable", "iccid": PROFILE_B}])
        eim.queue_data_request(vcard.eid, ALL_TAGS["1.0"])
        for _ in range(2):
            poll(h, eim, "1.0", ("--binding", "json"))
        kinds = [r["kind"] for r in eim.results(vcard.eid)]
        assert kinds == ["ePRAndNotifications", "ipaEuiccDataResponse"], kinds
        assert {q["binding"] for q in eim.requests} == {"json"}
        assert all(q["status"] < 400 for q in eim.requests)
    finally:
        eim.stop()
        dp.stop()


@pytest.mark.parametrize("eim_version,ipa_version,op,said", [
    ("1.0", "1.2", {"op": "getRAT"}, "tag 5A (a v1.2 form)"),  # v1.2's eidValue
    ("1.2", "1.0", {"op": "enable", "iccid": PROFILE_B}, "a v1.0 form (BF2B)"),  # v1.0's list
])
def test_a_result_in_the_other_version_is_refused(tmp_path, eim_version, ipa_version, op, said):
    h, vcard, dp, eim = start_lab(tmp_path, eim_version)
    try:
        eim.queue_psmo(vcard.eid, [op])
        r = ipa(h, eim, ipa_version, "poll")
        assert r.returncode != 0
        refused = [q for q in eim.requests if q["status"] == 400]
        assert len(refused) == 1 and refused[0]["request"][:2] == b"\xbf\x50", eim.requests
        assert said in refused[0]["error"], refused[0]["error"]
        assert said in r.stderr, r.stderr  # the user sees why
        assert eim.results(vcard.eid) == []
    finally:
        eim.stop()
        dp.stop()


def test_ipa_euicc_data_v1_0_bytes_carry_the_eucc_notification_list(tmp_path):
    """The v1.0 IpaEuiccData as the eIM got it: 80 first-class, BF2B { A0 / A2 / A3 } last."""
    h, vcard, dp, eim = start_lab(tmp_path, "1.0")
    try:
        eim.queue_data_request(vcard.eid, ["80", "BF2B"], euiccPackageResults=True)
        poll(h, eim, "1.0")
        der = bytes.fromhex(last_result(eim, vcard.eid)["der"])
        data = tlv.decode(der).need(0xA0)
        assert [c.tag for c in data.children()] == [0xBF2B]  # no default SM-DP+ address set
        assert data.need(0xBF2B).children()[0].tag == 0xA2  # euiccPackageResultList
    finally:
        eim.stop()
        dp.stop()
