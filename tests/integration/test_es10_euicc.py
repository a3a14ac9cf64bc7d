"""Every ES10 function end to end: ipa_core.es10 over ipa_core.apdu.IsdrSession against the
virtual eUICC (ipa_host.sim.euicc.euicc), once in-process and once through the real PC/SC stack
(pcscd + vpcd + pyscard), with eUICC Packages built and signed by the eIM-side signer
(ipa_host.sim.eim.signer). The two sides were written from the ASN.1 modules by different
people; nothing here shares an encoder between them.

Results and errors are asserted as a user of the IPA sees them: return values of
ipa_core.es10, FunctionError(function, code, name), or the EuiccPackageResult dict whose
"raw" goes back to the eIM. Signatures are verified with the certificates the eUICC
hands out through ES10b.GetCerts.

The last part interrupts multi-APDU sequences: the VirtualEuicc object is thrown away and
rebuilt from its state file between APDUs, and a real `ipa-sim euicc --vpcd` process is
SIGKILLed mid-sequence and restarted.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
from cryptography import x509

from euicc_fixtures import (
    EIM_FQDN, EIM_ID, ICCID_1, ICCID_2, ICCID_EMERGENCY, ICCID_FALLBACK, eim_key, eim_token,
    make_euicc, reopen,
)
from ipa_core import es10, tlv, version
from ipa_core import es10_signed as sg
from ipa_core.apdu import IsdrSession, command
from ipa_core.errors import CardError, FunctionError, TransportError
from ipa_host.sim import pki
from ipa_host.sim.eim import signer

TXID = bytes.fromhex("0A0B0C0D")


# ---- helpers --------------------------------------------------------------------------------


def package(euicc, counter, ops, eim_id=EIM_ID, key=None, token="card", eid=None, txid=TXID):
    """An EuiccPackageRequest (BF51) from the eIM-side signer for `euicc` (its EID, the eIM's
    key from the PKI folder and the associationToken the eUICC holds, unless given)."""
    if token == "card":
        token = eim_token(euicc, eim_id)
    return signer.build_euicc_package_request(
        eim_id, eid or euicc.eid, counter, ops, key or eim_key(euicc),
        association_token=token, transaction_id=txid)


def certs(rig):
    """The eUICC and EUM certificates as the IPA gets them (ES10b.GetCerts)."""
    c = es10.get_certs(rig.s)
    return (x509.load_der_x509_certificate(c["euiccCertificate"]),
            x509.load_der_x509_certificate(c["eumCertificate"]))


def assert_epr_signed(rig, res, token=1):
    """euiccSignEPR / euiccSignEPE verifies with the eUICC certificate from GetCerts.

    The signed bytes are the data object followed by '84 <token>' (SGP.32 v1.1+); the
    IPA's and the simulator's functions for them must agree.
    """
    data = res["signedData"]
    signed = version.signed_bytes(data, token)
    assert signed == pki.eim_signed_bytes(data, token)
    assert signed == data + tlv.encode(0x84, tlv.int_encode(0 if token is None else token))
    sig = res["euiccSignEPR"] if "euiccSignEPR" in res else res["euiccSignEPE"]
    assert len(sig) == 64  # TR-03111 r||s
    euicc_cert, _ = certs(rig)
    assert pki.verify(euicc_cert, signed, sig)
    assert not pki.verify(euicc_cert, data, sig)  # the token is part of what is signed


def load(rig, counter, ops, **kw):
    """LoadEuiccPackage with a signed package; returns the EuiccPackageResult dict."""
    res = es10.load_euicc_package(rig.s, package(rig.euicc, counter, ops, **kw))
    assert res["raw"][:2] == b"\xbf\x51"
    return res


def ok_result(rig, counter, ops, **kw):
    """LoadEuiccPackage that must give a signed result (checked, signature included)."""
    eim_id = kw.get("eim_id", EIM_ID)
    token = eim_token(rig.euicc, eim_id)  # before: a package may delete its own eIM
    res = load(rig, counter, ops, **kw)
    assert res["kind"] == "euiccPackageResultSigned", res
    assert res["eimId"] == eim_id
    assert res["counterValue"] == counter
    assert res["eimTransactionId"] == TXID
    assert_epr_signed(rig, res, token)
    return res


def summaries(res):
    return [sg.result_summary(e) for e in res["euiccResult"]]


def states(rig):
    """{iccid: "enabled"/"disabled"} as ES10c.GetProfilesInfo reports it."""
    return {p["iccid"]: ("enabled" if p["profileState"] == 1 else "disabled")
            for p in es10.get_profiles_info(rig.s)}


def enabled(rig):
    return [i for i, st in states(rig).items() if st == "enabled"]


def function_error(fn, *args, **kw):
    with pytest.raises(FunctionError) as e:
        fn(*args, **kw)
    return e.value


def notifications(rig, **criterion):
    """(seqNumber, event, iccid) of what RetrieveNotificationsList answers, signatures checked."""
    euicc_cert, eum_cert = certs(rig)
    out = []
    for n in es10.retrieve_notifications_list(rig.s, **criterion):
        assert n["kind"] == "otherSignedNotification", n["kind"]
        t = tlv.decode(n["raw"])
        meta, sig, c1, c2 = t.children()
        assert (meta.tag, sig.tag, c1.tag, c2.tag) == (0xBF2F, 0x5F37, 0x30, 0x30)
        # euiccNotificationSignature covers tbsOtherNotification as sent (SGP.22 5.7.10).
        assert pki.verify(euicc_cert, meta.raw, sig.value)
        assert x509.load_der_x509_certificate(c1.raw) == euicc_cert
        assert x509.load_der_x509_certificate(c2.raw) == eum_cert
        (event,) = n["profileManagementOperation"]
        out.append((n["seqNumber"], event, n.get("iccid")))
    return out


# ---- ES10c / ES10b information -----------------------------------------------------------------


def test_get_eid(rig):
    eid = es10.get_eid(rig.s)
    assert eid == rig.euicc.eid == pki.DEFAULT_EID
    euicc_cert, _ = certs(rig)
    assert pki.eid_of(euicc_cert) == eid  # the EID the eUICC certificate was issued for


def test_get_euicc_info1(rig):
    info = es10.get_euicc_info1(rig.s)
    ci = pki.ski(rig.euicc.pki["ci_cert"]).hex().upper()
    assert info["svn"] == "2.5.0"
    assert info["euiccCiPKIdListForVerification"] == [ci]
    assert info["euiccCiPKIdListForSigning"] == [ci]
    assert tlv.decode(info["raw"]).tag == 0xBF20


def test_get_euicc_info2_with_iot_fields(rig):
    info = es10.get_euicc_info2(rig.s)
    assert info["svn"] == "2.5.0"
    assert info["ipaMode"] == 0  # ipad: the IPA runs in the device
    assert info["iotSpecificInfo"] == {"iotVersion": ["1.2.0"], "ecallSupported": True,
                                       "fallbackSupported": True}
    assert info["ppVersion"] == "1.0.0"  # untagged next to tagged fields: universal 04
    assert info["sasAcreditationNumber"] == "IPA-IOT-VIRTUAL-EUICC"  # universal 0C
    assert "usimSupport" in info["uiccCapability"]
    assert "additionalProfile" in info["rspCapability"]
    ci = pki.ski(rig.euicc.pki["ci_cert"]).hex().upper()
    assert info["euiccCiPKIdListForSigning"] == [ci]
    assert set(info) >= {"profileVersion", "euiccFirmwareVer", "extCardResource",
                         "globalplatformVersion", "euiccCiPKIdListForVerification"}


def test_get_certs_chain_euicc_eum_ci(rig):
    euicc_cert, eum_cert = certs(rig)
    ci_cert = rig.euicc.pki["ci_cert"]
    # eUICC -> EUM -> CI, with the certificates exactly as GetCerts returned them.
    assert pki.verify(eum_cert, euicc_cert.tbs_certificate_bytes, euicc_cert.signature)
    assert pki.verify(ci_cert, eum_cert.tbs_certificate_bytes, eum_cert.signature)
    assert not pki.verify(ci_cert, euicc_cert.tbs_certificate_bytes, euicc_cert.signature)
    assert euicc_cert.issuer == eum_cert.subject and eum_cert.issuer == ci_cert.subject
    assert pki.aki(eum_cert) == pki.ski(ci_cert)
    # The eUICC's signing key is the one in its certificate.
    assert pki.public_key_bytes(euicc_cert) == pki.public_key_bytes(rig.euicc.pki["euicc_key"])
    # Asking for the CI the eUICC has gives the same chain; another CI is invalidCiPKId.
    ci = pki.ski(ci_cert)
    assert es10.get_certs(rig.s, ci)["euiccCertificate"] == pki.certificate_der(euicc_cert)
    e = function_error(es10.get_certs, rig.s, b"\x11" * 20)
    assert (e.function, e.code, e.name) == ("ES10b.GetCerts", 1, "invalidCiPKId")


# ---- eIM configuration --------------------------------------------------------------------------


def test_get_eim_configuration_data_all_and_by_eim_id(rig):
    eim_cert = pki.certificate_der(pki.load_certificate(
        os.path.join(rig.euicc.pki["folder"], "eim.crt")))
    (e,) = es10.get_eim_configuration_data(rig.s)
    assert e["eimId"] == EIM_ID
    assert e["eimFqdn"] == EIM_FQDN
    assert e["associationToken"] == 1
    assert e["eimPublicKeyData"] == {"eimCertificate": eim_cert}
    assert e["eimSupportedProtocol"] == ["eimRetrieveHttps"]
    assert e["euiccCiPKId"] == pki.ski(rig.euicc.pki["ci_cert"]).hex().upper()
    assert "counterValue" not in e  # SGP.32: the eUICC does not reveal the counter
    assert es10.get_eim_configuration_data(rig.s, EIM_ID) == [e]
    assert es10.get_eim_configuration_data(rig.s, "no-such-eim") == []


def test_add_initial_eim_then_its_packages_verify(make_rig):
    rig = make_rig(eim=False)
    assert es10.get_eim_configuration_data(rig.s) == []
    folder = rig.euicc.pki["folder"]
    eim_cert = pki.load_certificate(os.path.join(folder, "eim.crt"))
    spki = pki.spki_der(eim_cert)
    out = es10.add_initial_eim(rig.s, [
        {"eimId": "eim-a", "eimFqdn": "a.example", "counterValue": 10, "associationToken": -1,
         "eimPublicKeyData": {"eimCertificate": pki.certificate_der(eim_cert)},
         "eimSupportedProtocol": ["eimRetrieveHttps", "eimInjectHttps"]},
        {"eimId": "eim-b", "counterValue": 0, "eimIdType": 2,
         "eimPublicKeyData": {"eimPublicKey": spki}, "indirectProfileDownload": True},
    ])
    assert out == [{"associationToken": 1}, {"addOk": True}]
    a, b = es10.get_eim_configuration_data(rig.s)
    assert (a["eimId"], a["associationToken"], a["eimFqdn"]) == ("eim-a", 1, "a.example")
    assert a["eimSupportedProtocol"] == ["eimRetrieveHttps", "eimInjectHttps"]
    assert b["eimPublicKeyData"] == {"eimPublicKey": spki} and "associationToken" not in b
    assert b["eimIdType"] == 2 and b["indirectProfileDownload"] is True
    # The counter given in AddInitialEim holds: 10 is a replay, 11 runs; the token signs.
    res = load(rig, 10, [{"op": "getRAT"}], eim_id="eim-a")
    assert (res["kind"], res["error"]) == ("euiccPackageErrorSigned", "replayError")
    assert_epr_signed(rig, res, token=1)
    ok_result(rig, 11, [{"op": "getRAT"}], eim_id="eim-a")
    # eim-b has no token: its signatures end with 84 01 00.
    res = ok_result(rig, 1, [{"op": "getRAT"}], eim_id="eim-b", token=None)
    assert pki.verify(rig.euicc.pki["euicc_cert"],
                      res["signedData"] + bytes.fromhex("840100"), res["euiccSignEPR"])
    # Only the first AddInitialEim is accepted.
    e = function_error(es10.add_initial_eim, rig.s, [{"eimId": "eim-c", "counterValue": 0,
                                                      "eimPublicKeyData": {"eimPublicKey": spki}}])
    assert (e.function, e.code, e.name) == ("ES10b.AddInitialEim", 2, "associatedEimAlreadyExists")


@pytest.mark.parametrize("change,code,name", [
    ({"associationToken": 5}, 5, "invalidAssociationToken"),
    ({"counterValue": 1 << 23}, 6, "counterValueOutOfRange"),
    ({"eimPublicKeyData": None}, 7, "commandError"),
    ({"euiccCiPKId": "11" * 20}, 3, "ciPKUnknown"),
])
def test_add_initial_eim_errors(make_rig, change, code, name):
    rig = make_rig(eim=False)
    eim_cert = pki.load_certificate(os.path.join(rig.euicc.pki["folder"], "eim.crt"))
    cfg = {"eimId": "eim-a", "counterValue": 0,
           "eimPublicKeyData": {"eimPublicKey": pki.spki_der(eim_cert)}}
    cfg.update(change)
    e = function_error(es10.add_initial_eim, rig.s, [cfg])
    assert (e.function, e.code, e.name) == ("ES10b.AddInitialEim", code, name)
    assert es10.get_eim_configuration_data(rig.s) == []  # nothing half-added


# ---- LoadEuiccPackage: PSMOs ---------------------------------------------------------------------


def test_psmo_enable_with_rollback_flag_then_profile_rollback(rig):
    res = ok_result(rig, 1, [{"op": "enable", "iccid": ICCID_2, "rollback": True}])
    assert summaries(res) == [("enableResult", 0, "ok")]
    assert enabled(rig) == [ICCID_2]
    first_seq = res["seqNumber"]
    # The IPA lost its connectivity with the new profile: roll back.
    rb = es10.profile_rollback(rig.s, True)
    assert rb["kind"] == "euiccPackageResultSigned"
    assert summaries(rb) == [("rollbackResult", 0, "ok")]
    # Same eIM, counter and transaction as the package that allowed it; a new seqNumber.
    assert (rb["eimId"], rb["counterValue"], rb["eimTransactionId"]) == (EIM_ID, 1, TXID)
    assert rb["seqNumber"] > first_seq
    assert_epr_signed(rig, rb)
    assert enabled(rig) == [ICCID_1]
    # The rollback result replaces the enable result in the list for the eIM.
    pending = es10.retrieve_notifications_list(rig.s, euicc_package_results=True)
    assert [p["raw"] for p in pending] == [rb["raw"]]
    # Only once: the authorisation is used up.
    e = function_error(es10.profile_rollback, rig.s, False)
    assert (e.function, e.code, e.name) == ("ES10b.ProfileRollback", 1, "rollbackNotAllowed")


def test_psmo_disable_and_delete(rig):
    res = ok_result(rig, 1, [{"op": "disable", "iccid": ICCID_1},
                             {"op": "delete", "iccid": ICCID_2}])
    assert summaries(res) == [("disableResult", 0, "ok"), ("deleteResult", 0, "ok")]
    assert states(rig) == {ICCID_1: "disabled", ICCID_FALLBACK: "disabled",
                           ICCID_EMERGENCY: "disabled"}
    assert [(ev, i) for _, ev, i in notifications(rig)] == [
        ("notificationDisable", ICCID_1), ("notificationDelete", ICCID_2)]


def test_psmo_list_profile_info_and_get_rat(rig):
    res = ok_result(rig, 1, [{"op": "listProfileInfo"},
                             {"op": "listProfileInfo", "iccid": ICCID_2, "tagList": "5A9F70"},
                             {"op": "getRAT"}])
    all_, one, rat = res["euiccResult"]
    infos = all_["listProfileInfoResult"]["profileInfoListOk"]
    assert [(p["iccid"], p["profileState"], p["profileClass"]) for p in infos] == [
        (ICCID_1, 1, 2), (ICCID_2, 0, 2), (ICCID_FALLBACK, 0, 2), (ICCID_EMERGENCY, 0, 2)]
    assert [p["fallbackAttribute"] for p in infos] == [False, False, True, False]
    assert infos[3]["ecallIndication"] is True
    # The tag list limits the fields (fallbackAttribute is the DEFAULT FALSE filled in).
    assert one["listProfileInfoResult"]["profileInfoListOk"] == [
        {"iccid": ICCID_2, "profileState": 0, "fallbackAttribute": False}]
    assert rat["getRATResult"] == es10.get_rat(rig.s)
    assert rat["getRATResult"][0]["pprIds"] == ["ppr1", "ppr2"]


def test_psmo_configure_immediate_enable_then_immediate_enable(rig):
    res = ok_result(rig, 1, [{"op": "configureImmediateEnable", "immediateEnable": True,
                              "defaultSmdpOid": "1.3.6.1.4.1.99999.1",
                              "defaultSmdpAddress": "smdp.example.com"}])
    assert summaries(res) == [("configureImmediateEnableResult", 0, "ok")]
    # Enabled by the eIM, but no profile was downloaded in this session yet.
    e = function_error(es10.immediate_enable, rig.s, False)
    assert (e.function, e.code, e.name) == ("ES10b.ImmediateEnable", 4, "noSessionContext")
    rig.euicc.mark_installed(ICCID_2)  # stands in for a download (not simulated yet)
    es10.immediate_enable(rig.s, True)
    assert enabled(rig) == [ICCID_2]


def test_psmo_set_and_unset_fallback_attribute(rig):
    res = ok_result(rig, 1, [{"op": "setFallbackAttribute", "iccid": ICCID_2}])
    assert summaries(res) == [("setFallbackAttributeResult", 0, "ok")]
    fb = [p["iccid"] for p in es10.get_profiles_info(rig.s) if p["fallbackAttribute"]]
    assert fb == [ICCID_2]  # moved from ICCID_FALLBACK: at most one Fallback Profile
    res = ok_result(rig, 2, [{"op": "unsetFallbackAttribute"}])
    assert summaries(res) == [("unsetFallbackAttributeResult", 0, "ok")]
    assert not any(p["fallbackAttribute"] for p in es10.get_profiles_info(rig.s))
    res = ok_result(rig, 3, [{"op": "unsetFallbackAttribute"}])
    assert summaries(res) == [("unsetFallbackAttributeResult", 2, "noFallbackAttribute")]
    res = ok_result(rig, 4, [{"op": "setFallbackAttribute", "iccid": "8949449999999990999"}])
    assert summaries(res) == [("setFallbackAttributeResult", 1, "iccidOrAidNotFound")]


def test_psmo_set_default_dp_address(rig):
    res = ok_result(rig, 1, [{"op": "setDefaultDpAddress", "defaultDpAddress": "dp.example.org"}])
    assert summaries(res) == [("setDefaultDpAddressResult", 0, "ok")]
    assert es10.get_euicc_configured_addresses(rig.s) == {
        "defaultDpAddress": "dp.example.org", "rootDsAddress": "testrootsmds.example.com"}


# ---- LoadEuiccPackage: eCOs ---------------------------------------------------------------------


def test_eco_add_update_list_delete_eim(rig):
    folder = rig.euicc.pki["folder"]
    eim_cert = pki.load_certificate(os.path.join(folder, "eim.crt"))
    res = ok_result(rig, 1, [{"op": "addEim", "eimId": "eim-2", "eimFqdn": "eim2.example",
                              "eimIdType": "fqdn", "counterValue": 0, "associationToken": -1,
                              "eimPublicKey": eim_cert,
                              "eimSupportedProtocol": ["eimRetrieveCoaps"]},
                             {"op": "listEim"}])
    add, lst = res["euiccResult"]
    # test-eim got token 1 on this card; the eUICC generates the next one.
    assert add == {"addEimResult": {"associationToken": 2}}
    assert lst == {"listEimResult": {"eimIdList": [{"eimId": EIM_ID},
                                                   {"eimId": "eim-2", "eimIdType": 2}]}}
    cfg = es10.get_eim_configuration_data(rig.s, "eim-2")[0]
    assert (cfg["eimFqdn"], cfg["associationToken"]) == ("eim2.example", 2)
    assert cfg["eimSupportedProtocol"] == ["eimRetrieveCoaps"]
    # The new eIM manages the card with its own counter and token.
    res = ok_result(rig, 1, [{"op": "updateEim", "eimId": "eim-2",
                              "eimFqdn": "eim2-new.example"}], eim_id="eim-2")
    assert summaries(res) == [("updateEimResult", 0, "ok")]
    assert es10.get_eim_configuration_data(rig.s, "eim-2")[0]["eimFqdn"] == "eim2-new.example"
    res = ok_result(rig, 2, [{"op": "deleteEim", "eimId": EIM_ID}])
    assert summaries(res) == [("deleteEimResult", 0, "ok")]
    assert [e["eimId"] for e in es10.get_eim_configuration_data(rig.s)] == ["eim-2"]
    res = ok_result(rig, 2, [{"op": "deleteEim", "eimId": "nobody"}], eim_id="eim-2")
    assert summaries(res) == [("deleteEimResult", 1, "eimNotFound")]


def test_eco_add_eim_with_a_given_token_is_refused(rig):
    eim_cert = pki.load_certificate(os.path.join(rig.euicc.pki["folder"], "eim.crt"))
    res = ok_result(rig, 1, [{"op": "addEim", "eimId": "eim-2", "counterValue": 0,
                              "associationToken": 7, "eimPublicKey": eim_cert}])
    assert summaries(res) == [("addEimResult", 5, "invalidAssociationToken")]
    assert len(es10.get_eim_configuration_data(rig.s)) == 1


# ---- LoadEuiccPackage: errors ----------------------------------------------------------------


def test_bad_eim_signature_gives_the_unsigned_error(rig):
    other = pki.load_private_key(os.path.join(rig.euicc.pki["folder"], "euicc.key"))
    for kw in ({"key": other}, {"token": 2}, {"token": None}):
        res = load(rig, 1, [{"op": "disable", "iccid": ICCID_1}], **kw)
        assert res["kind"] == "euiccPackageErrorUnsigned"
        assert res["error"] == "euiccPackageErrorUnsigned"
        assert (res["eimId"], res["eimTransactionId"], res["associationToken"]) == (
            EIM_ID, TXID, 1)
    assert enabled(rig) == [ICCID_1]  # nothing ran
    # The counter did not move: counter 1 with a good signature still runs.
    ok_result(rig, 1, [{"op": "getRAT"}])


def test_unknown_eim_gives_the_unsigned_error_without_token(rig):
    res = load(rig, 1, [{"op": "getRAT"}], eim_id="stranger", token=None)
    assert res["kind"] == "euiccPackageErrorUnsigned"
    assert res["eimId"] == "stranger" and "associationToken" not in res


@pytest.mark.parametrize("case,code,name", [
    ("wrong_eid", 3, "invalidEid"),
    ("replay", 4, "replayError"),
    ("counter_too_big", 6, "counterValueOutOfRange"),
    ("size_overflow", 15, "sizeOverflow"),
])
def test_signed_package_errors(rig, case, code, name):
    ok_result(rig, 5, [{"op": "getRAT"}])
    ops = [{"op": "disable", "iccid": ICCID_1}]
    counter, kw = {"wrong_eid": (6, {"eid": "89049032123451234512345678909999"}),
                   "replay": (5, {}),
                   "counter_too_big": (1 << 23, {}),
                   "size_overflow": (6, {})}[case]
    if case == "size_overflow":  # over the eUICC's 8 KiB: 20 addEim with certificates
        eim_cert = pki.load_certificate(os.path.join(rig.euicc.pki["folder"], "eim.crt"))
        ops = [{"op": "addEim", "eimId": "eim-%d" % i, "counterValue": 0, "eimPublicKey": eim_cert}
               for i in range(20)]
        assert len(package(rig.euicc, counter, ops)) > 8192
    res = load(rig, counter, ops, **kw)
    assert res["kind"] == "euiccPackageErrorSigned"
    assert (res["euiccPackageErrorCode"], res["error"]) == (code, name)
    assert sg.EUICC_PACKAGE_ERROR_CODE[code] == name
    assert (res["eimId"], res["counterValue"], res["eimTransactionId"]) == (EIM_ID, counter, TXID)
    assert_epr_signed(rig, res)
    assert enabled(rig) == [ICCID_1]
    # Errors are not stored: only the first package's result is pending.
    assert [p["counterValue"] for p in
            es10.retrieve_notifications_list(rig.s, euicc_package_results=True)] == [5]


def test_psmo_failures_stop_the_package(rig):
    res = ok_result(rig, 1, [{"op": "enable", "iccid": "8949449999999990999"},
                             {"op": "disable", "iccid": ICCID_1}])
    # An unknown ICCID is iccidOrAidNotFound; processing stops at the first failure.
    assert summaries(res) == [("enableResult", 1, "iccidOrAidNotFound")]
    res = ok_result(rig, 2, [{"op": "enable", "iccid": ICCID_1}])
    assert summaries(res) == [("enableResult", 2, "profileNotInDisabledState")]
    res = ok_result(rig, 3, [{"op": "disable", "iccid": ICCID_2}])
    assert summaries(res) == [("disableResult", 2, "profileNotInEnabledState")]
    res = ok_result(rig, 4, [{"op": "delete", "iccid": ICCID_1}])
    assert summaries(res) == [("deleteResult", 2, "profileNotInDisabledState")]
    res = ok_result(rig, 5, [{"op": "enable", "iccid": ICCID_EMERGENCY}])
    assert summaries(res) == [("enableResult", 3, "disallowedByPolicy")]
    assert enabled(rig) == [ICCID_1]


def test_package_while_emergency_profile_is_active_is_ecall_active(rig):
    es10.enable_emergency_profile(rig.s, True)
    res = load(rig, 1, [{"op": "enable", "iccid": ICCID_2}])
    assert res["kind"] == "euiccPackageErrorSigned"
    assert (res["euiccPackageErrorCode"], res["error"]) == (104, "ecallActive")
    assert_epr_signed(rig, res)
    assert enabled(rig) == [ICCID_EMERGENCY]


# ---- notifications ----------------------------------------------------------------------------


def _three_notifications_and_a_result(rig):
    """disable ICCID_1, enable ICCID_2 (in one package), then delete ICCID_1: 3 notes + 2 results."""
    r1 = ok_result(rig, 1, [{"op": "disable", "iccid": ICCID_1},
                            {"op": "enable", "iccid": ICCID_2}])
    r2 = ok_result(rig, 2, [{"op": "delete", "iccid": ICCID_1}])
    return r1, r2


def test_retrieve_notifications_list_every_search_criterion(rig):
    r1, r2 = _three_notifications_and_a_result(rig)
    # seqNumbers are shared: disable 1, enable 2, result 3, delete 4, result 5.
    assert (r1["seqNumber"], r2["seqNumber"]) == (3, 5)
    assert notifications(rig) == [(1, "notificationDisable", ICCID_1),
                                  (2, "notificationEnable", ICCID_2),
                                  (4, "notificationDelete", ICCID_1)]
    assert notifications(rig, seq_number=2) == [(2, "notificationEnable", ICCID_2)]
    assert notifications(rig, seq_number=99) == []
    assert notifications(rig, profile_management_operation="notificationDelete") == [
        (4, "notificationDelete", ICCID_1)]
    assert notifications(rig, profile_management_operation="notificationInstall") == []
    results = es10.retrieve_notifications_list(rig.s, euicc_package_results=True)
    assert [(r["kind"], r["seqNumber"], r["raw"]) for r in results] == [
        ("euiccPackageResultSigned", 3, r1["raw"]), ("euiccPackageResultSigned", 5, r2["raw"])]
    # A seqNumber naming an eUICC Package Result finds that result.
    (r,) = es10.retrieve_notifications_list(rig.s, seq_number=5)
    assert r["raw"] == r2["raw"]


def test_list_notification(rig):
    _three_notifications_and_a_result(rig)
    metas = es10.list_notification(rig.s)
    assert [(m["seqNumber"], m["profileManagementOperation"], m["iccid"],
             m["notificationAddress"]) for m in metas] == [
        (1, ["notificationDisable"], ICCID_1, "smdp.example.com"),
        (2, ["notificationEnable"], ICCID_2, "smdp.example.com"),
        (4, ["notificationDelete"], ICCID_1, "smdp.example.com")]
    assert [m["seqNumber"] for m in es10.list_notification(rig.s, "notificationEnable")] == [2]
    both = es10.list_notification(rig.s, ["notificationEnable", "notificationDelete"])
    assert [m["seqNumber"] for m in both] == [2, 4]


def test_remove_notification_from_list(rig):
    _three_notifications_and_a_result(rig)
    assert es10.remove_notification_from_list(rig.s, 2) == 0  # ok
    assert es10.remove_notification_from_list(rig.s, 3) == 0  # a package result too
    assert [s for s, _, _ in notifications(rig)] == [1, 4]
    assert [r["seqNumber"] for r in
            es10.retrieve_notifications_list(rig.s, euicc_package_results=True)] == [5]
    # Not (or no longer) there: nothingToDelete is an answer, not an exception.
    assert es10.remove_notification_from_list(rig.s, 2) == 1
    assert es10.remove_notification_from_list(rig.s, 77) == 1


# ---- profiles ------------------------------------------------------------------------------------


def test_get_profiles_info_all_and_each_search_criterion(rig):
    infos = es10.get_profiles_info(rig.s)
    assert [p["iccid"] for p in infos] == [ICCID_1, ICCID_2, ICCID_FALLBACK, ICCID_EMERGENCY]
    p1 = infos[0]
    assert (p1["profileState"], p1["profileClass"], p1["profileName"]) == (1, 2, "Operational 1")
    assert len(bytes.fromhex(p1["isdpAid"])) <= 16
    assert [p["iccid"] for p in es10.get_profiles_info(rig.s, {"iccid": ICCID_2})] == [ICCID_2]
    by_aid = es10.get_profiles_info(rig.s, {"isdpAid": infos[2]["isdpAid"]})
    assert [p["iccid"] for p in by_aid] == [ICCID_FALLBACK]
    assert len(es10.get_profiles_info(rig.s, {"profileClass": "operational"})) == 4
    assert es10.get_profiles_info(rig.s, {"profileClass": "test"}) == []
    assert es10.get_profiles_info(rig.s, {"iccid": "8949449999999990999"}) == []
    assert es10.get_profiles_info(rig.s, tags=[0x5A, 0x92]) == [
        {"iccid": i, "profileName": n, "fallbackAttribute": False}
        for i, n in ((ICCID_1, "Operational 1"), (ICCID_2, "Operational 2"),
                     (ICCID_FALLBACK, "Fallback"), (ICCID_EMERGENCY, "Emergency"))]


def test_profile_rollback_without_permission(rig):
    ok_result(rig, 1, [{"op": "enable", "iccid": ICCID_2}])  # no rollbackFlag
    e = function_error(es10.profile_rollback, rig.s, False)
    assert (e.function, e.code, e.name) == ("ES10b.ProfileRollback", 1, "rollbackNotAllowed")
    assert enabled(rig) == [ICCID_2]


def test_configure_immediate_profile_enabling_and_immediate_enable(make_rig):
    rig = make_rig(eim=False)  # local configuration only before any eIM is associated
    e = function_error(es10.immediate_enable, rig.s, False)
    assert (e.code, e.name) == (1, "immediateEnableNotAvailable")
    es10.configure_immediate_profile_enabling(rig.s, True, "1.3.6.1.4.1.99999.1",
                                              "smdp.example.com")
    e = function_error(es10.immediate_enable, rig.s, False)
    assert (e.function, e.code, e.name) == ("ES10b.ImmediateEnable", 4, "noSessionContext")
    rig.euicc.mark_installed(ICCID_2)
    es10.immediate_enable(rig.s, False)
    assert enabled(rig) == [ICCID_2]
    # Once an eIM is associated the IPA may not change it any more.
    rig2 = make_rig()
    e = function_error(es10.configure_immediate_profile_enabling, rig2.s, True)
    assert (e.function, e.code, e.name) == ("ES10b.ConfigureImmediateProfileEnabling", 2,
                                            "associatedEimAlreadyExists")


def test_emergency_profile(rig):
    es10.enable_emergency_profile(rig.s, True)
    assert enabled(rig) == [ICCID_EMERGENCY]
    e = function_error(es10.enable_emergency_profile, rig.s, True)
    assert (e.function, e.code, e.name) == ("ES10b.EnableEmergencyProfile", 2,
                                            "profileNotInDisabledState")
    # While the Emergency Profile is enabled (an eCall), other changes are refused.
    e = function_error(es10.execute_fallback_mechanism, rig.s, True)
    assert (e.function, e.code, e.name) == ("ES10b.ExecuteFallbackMechanism", 104, "ecallActive")
    e = function_error(es10.euicc_memory_reset, rig.s, ["deleteOperationalProfiles"])
    assert (e.function, e.code, e.name) == ("ES10c.EuiccMemoryReset", 104, "ecallActive")
    es10.disable_emergency_profile(rig.s, True)
    assert enabled(rig) == [ICCID_1]  # back to the profile enabled before
    e = function_error(es10.disable_emergency_profile, rig.s, True)
    assert (e.function, e.code, e.name) == ("ES10b.DisableEmergencyProfile", 2,
                                            "profileNotInEnabledState")
    assert [(ev, i) for _, ev, i in notifications(rig)] == [
        ("notificationDisable", ICCID_1), ("notificationEnable", ICCID_EMERGENCY),
        ("notificationDisable", ICCID_EMERGENCY), ("notificationEnable", ICCID_1)]


def test_no_emergency_profile_is_ecall_not_available(make_rig):
    rig = make_rig(profiles=[{"iccid": ICCID_1, "state": "enabled"}])
    e = function_error(es10.enable_emergency_profile, rig.s, False)
    assert (e.code, e.name) == (8, "ecallNotAvailable")


def test_fallback_mechanism(rig):
    es10.execute_fallback_mechanism(rig.s, True)
    assert enabled(rig) == [ICCID_FALLBACK]
    e = function_error(es10.execute_fallback_mechanism, rig.s, True)
    assert (e.code, e.name) == (2, "profileNotInDisabledState")
    # The profile to return to cannot be deleted meanwhile (returnFallbackProfile).
    res = ok_result(rig, 1, [{"op": "delete", "iccid": ICCID_1}])
    assert summaries(res) == [("deleteResult", 21, "returnFallbackProfile")]
    es10.return_from_fallback(rig.s, True)
    assert enabled(rig) == [ICCID_1]
    e = function_error(es10.return_from_fallback, rig.s, True)
    assert (e.function, e.code, e.name) == ("ES10b.ReturnFromFallback", 6, "fallbackNotAvailable")


def test_no_fallback_profile_is_fallback_not_available(make_rig):
    rig = make_rig(profiles=[{"iccid": ICCID_1, "state": "enabled"}])
    e = function_error(es10.execute_fallback_mechanism, rig.s, False)
    assert (e.function, e.code, e.name) == ("ES10b.ExecuteFallbackMechanism", 6,
                                            "fallbackNotAvailable")


# ---- addresses, RAT, connectivity, reset, cancel ---------------------------------------------------


def test_get_rat(rig):
    assert es10.get_rat(rig.s) == [{"pprIds": ["ppr1", "ppr2"],
                                   "allowedOperators": [{"mccMnc": "EEEEEE"}],
                                   "pprFlags": []}]


def test_get_euicc_configured_addresses_and_set_default_dp_address(rig):
    assert es10.get_euicc_configured_addresses(rig.s) == {
        "rootDsAddress": "testrootsmds.example.com"}
    assert es10.set_default_dp_address(rig.s, "smdp.example.net") is None
    assert es10.get_euicc_configured_addresses(rig.s)["defaultDpAddress"] == "smdp.example.net"
    es10.set_default_dp_address(rig.s, "")  # an empty address removes it
    assert "defaultDpAddress" not in es10.get_euicc_configured_addresses(rig.s)


def test_get_connectivity_parameters(rig):
    e = function_error(es10.get_connectivity_parameters, rig.s)
    assert (e.function, e.code, e.name) == ("ES10b.GetConnectivityParameters", 1,
                                            "parametersNotAvailable")
    rig.euicc.set_connectivity_parameters(b"\x01\x02apn.example")
    assert es10.get_connectivity_parameters(rig.s) == {"httpParams": b"\x01\x02apn.example"}


def test_euicc_memory_reset(rig):
    es10.set_default_dp_address(rig.s, "smdp.example.net")
    out = es10.euicc_memory_reset(rig.s, ["deleteOperationalProfiles", "resetDefaultSmdpAddress",
                                          "resetEimConfigData"])
    assert out == {"resetResult": 0, "resetEimResult": 0}
    assert es10.get_profiles_info(rig.s) == []
    assert es10.get_eim_configuration_data(rig.s) == []
    assert "defaultDpAddress" not in es10.get_euicc_configured_addresses(rig.s)
    assert es10.retrieve_notifications_list(rig.s) == []  # a reset leaves no notifications
    out = es10.euicc_memory_reset(rig.s, ["deleteOperationalProfiles", "resetEimConfigData"])
    assert out == {"resetResult": 1, "resetEimResult": 1}  # nothingToDelete, returned
    out = es10.euicc_memory_reset(rig.s, ["resetImmediateEnableConfig"])
    assert out == {"resetResult": 0, "resetImmediateEnableConfigResult": 0}


def test_cancel_session_without_a_download(rig):
    e = function_error(es10.cancel_session, rig.s, b"\x01\x02\x03\x04", "postponed")
    assert (e.function, e.code, e.name) == ("ES10b.CancelSession", 5, "invalidTransactionId")


def test_get_euicc_challenge(rig):
    a = es10.get_euicc_challenge(rig.s)
    b = es10.get_euicc_challenge(rig.s)
    assert len(a) == len(b) == 16 and a != b


def test_large_answers_cross_get_response(rig):
    """An answer over 256 bytes (61xx + GET RESPONSE) and a request over 255 (STORE DATA blocks)."""
    address = "x" * 200 + ".example"
    res = ok_result(rig, 1, [{"op": "setDefaultDpAddress", "defaultDpAddress": address},
                             {"op": "listProfileInfo"}, {"op": "getRAT"}])
    assert len(res["raw"]) > 256
    request = package(rig.euicc, 2, [{"op": "setDefaultDpAddress", "defaultDpAddress": address}])
    assert len(request) > 255
    assert summaries(es10.load_euicc_package(rig.s, request)) == [
        ("setDefaultDpAddressResult", 0, "ok")]
    assert es10.get_euicc_configured_addresses(rig.s)["defaultDpAddress"] == address
    euicc_cert, eum_cert = certs(rig)  # GetCerts: two certificates, several GET RESPONSEs
    assert len(pki.certificate_der(euicc_cert) + pki.certificate_der(eum_cert)) > 512
    assert euicc_cert.issuer == eum_cert.subject


def test_store_data_block_numbers_wrap_after_255(rig):
    """A request of more than 256 STORE DATA blocks: P2 counts 00..FF and wraps to 00."""
    eim_cert = pki.load_certificate(os.path.join(rig.euicc.pki["folder"], "eim.crt"))
    ops = [{"op": "addEim", "eimId": "eim-%d" % i, "counterValue": 0, "eimPublicKey": eim_cert,
            "associationToken": -1} for i in range(7)]
    request = package(rig.euicc, 1, ops)
    assert len(request) > 8 * 256  # over 256 blocks of 8 bytes
    s = IsdrSession(rig.card, segment_size=8).open()
    try:
        res = es10.load_euicc_package(s, request)
    finally:
        s.close()
    assert res["kind"] == "euiccPackageResultSigned"
    assert [e["addEimResult"] for e in res["euiccResult"]] == [
        {"associationToken": n} for n in range(2, 9)]


def test_sgp32_v1_0_flavour(make_rig):
    """v1.0: EuiccMemoryReset is SGP.22's BF34 and the eUICC Package signatures cover the
    data object alone (no associationToken): the IPA's version table and the card agree."""
    rig = make_rig(version="1.0")
    assert rig.s.version == "1.0"
    request = signer.build_euicc_package_request(
        EIM_ID, rig.euicc.eid, 1, [{"op": "getRAT"}], eim_key(rig.euicc), association_token=1,
        transaction_id=TXID, version="1.0")
    res = es10.load_euicc_package(rig.s, request)
    assert res["kind"] == "euiccPackageResultSigned"
    assert version.signed_bytes(res["signedData"], 1, "1.0") == res["signedData"]
    euicc_cert, _ = certs(rig)
    assert pki.verify(euicc_cert, res["signedData"], res["euiccSignEPR"])
    # A v1.2 signature (with the token) is not what a v1.0 eUICC checks.
    request = package(rig.euicc, 2, [{"op": "getRAT"}])
    assert es10.load_euicc_package(rig.s, request)["kind"] == "euiccPackageErrorUnsigned"
    # The IPA sends BF34 in a v1.0 session; this card knows only BF34 (BF64 would be 6A88).
    assert es10.euicc_memory_reset(rig.s, ["deleteOperationalProfiles"]) == {"resetResult": 0}
    assert es10.get_profiles_info(rig.s) == []


# ---- interruptions: the card rebuilt from its state file between APDUs --------------------------------

BIG_ADDRESS = "dp-" + "a" * 180 + ".example"
BIG_OPS = [{"op": "enable", "iccid": ICCID_2},
           {"op": "setDefaultDpAddress", "defaultDpAddress": BIG_ADDRESS},
           {"op": "listProfileInfo"}]


class RebuildingCard:
    """A card wrapper that throws the VirtualEuicc away and builds a new one from its state file.

    cut_at=k: before APDU number k (0-based) only, like a power cut: logical channels and
    a half-sent STORE DATA are gone, everything committed must still be there.
    every=True: before every APDU, carrying over only what a card holds in RAM between two
    APDUs of one exchange (the APDU layer's channels, partial request, pending answer), so
    everything else must come from the state file.
    """

    def __init__(self, euicc, cut_at=None, every=False):
        self.euicc = euicc
        self.cut_at = cut_at
        self.every = every
        self.n = 0
        self.rebuilt = 0
        self.sent = []

    def transmit(self, apdu):
        if self.every or self.n == self.cut_at:
            ram = self.euicc.apdu.channels
            self.euicc = reopen(self.euicc)
            self.rebuilt += 1
            if self.every:
                self.euicc.apdu.channels = ram
        self.n += 1
        self.sent.append(bytes(apdu))
        return self.euicc.transmit(apdu)


def _scenario(card, request):
    """The IPA's exchange for one eUICC Package: load it, fetch the result, remove it."""
    s = IsdrSession(card).open()
    res = es10.load_euicc_package(s, request)
    found = es10.retrieve_notifications_list(s, euicc_package_results=True)
    for r in found:
        es10.remove_notification_from_list(s, r["seqNumber"])
    s.close()
    return res, found


def _committed(euicc):
    """What a power cut must never lose or half-apply, from a card rebuilt from its file."""
    card = reopen(euicc)
    d = card.state.data
    return {
        "counter": card.state.find_eim(EIM_ID)["counter"],
        "profiles": {p["iccid"]: p["state"] for p in d["profiles"]},
        "default_dp": d["default_dp_address"],
        "results": [(n["seq"], tlv.decode(bytes.fromhex(n["der"])).raw)
                    for n in d["notifications"] if n["kind"] == "result"],
        "notifications": [(n["seq"], n["event"], n["iccid"])
                          for n in d["notifications"] if n["kind"] == "notification"],
        "seq": d["seq"],
    }


BEFORE = {"counter": 0, "profiles": {ICCID_1: "enabled", ICCID_2: "disabled",
                                     ICCID_FALLBACK: "disabled", ICCID_EMERGENCY: "disabled"},
          "default_dp": None, "results": [], "notifications": [], "seq": 0}
AFTER_NOTES = [(1, "disable", ICCID_1), (2, "enable", ICCID_2)]


def _expect_after(state):
    assert state["counter"] == 1
    assert state["profiles"][ICCID_2] == "enabled" and state["profiles"][ICCID_1] == "disabled"
    assert state["default_dp"] == BIG_ADDRESS
    assert state["notifications"] == AFTER_NOTES
    assert state["seq"] == 3


def test_rebuilt_before_every_apdu_nothing_lives_only_in_memory(tmp_path):
    ref = make_euicc(tmp_path / "ref")
    request = package(ref, 1, BIG_OPS)
    assert len(request) > 255  # two STORE DATA blocks
    res_ref, _ = _scenario(ref, request)
    assert len(res_ref["raw"]) > 256  # and GET RESPONSE
    card = RebuildingCard(make_euicc(tmp_path / "every"), every=True)
    res, found = _scenario(card, package(card.euicc, 1, BIG_OPS))
    assert card.rebuilt == card.n >= 10
    assert summaries(res) == summaries(res_ref)
    assert summaries(res)[:2] == [("enableResult", 0, "ok"), ("setDefaultDpAddressResult", 0, "ok")]
    assert [r["raw"] for r in found] == [res["raw"]]
    state = _committed(card.euicc)
    assert state == _committed(ref)
    _expect_after(state)
    assert state["results"] == []  # delivered and removed


def _recover(euicc, request, committed):
    """What the IPA does after a failure: a new session, send the package again (a replay
    when it had been committed, never a second run), deliver and remove what is pending."""
    s = IsdrSession(euicc).open()
    res = es10.load_euicc_package(s, request)
    if committed:
        assert res["kind"] == "euiccPackageErrorSigned" and res["error"] == "replayError", res
    else:
        assert res["kind"] == "euiccPackageResultSigned", res
    pending = es10.retrieve_notifications_list(s, euicc_package_results=True)
    if not committed:
        assert [p["raw"] for p in pending] == [res["raw"]]
    for p in pending:
        assert p["counterValue"] == 1 and p["eimTransactionId"] == TXID
        assert es10.remove_notification_from_list(s, p["seqNumber"]) == 0
    s.close()
    return pending


def test_power_cut_between_any_two_apdus_loses_nothing(tmp_path):
    """Cut before each APDU of the exchange in turn; every cut either leaves the state as it
    was or fully applied, the IPA sees a status word, and recovery reaches the same end."""
    probe = RebuildingCard(make_euicc(tmp_path / "probe"), cut_at=-1)
    request = package(probe.euicc, 1, BIG_OPS)
    _scenario(probe, request)
    total = probe.n
    ins = [a[1] for a in probe.sent]
    assert ins.count(0xE2) >= 4 and 0xC0 in ins  # STORE DATA blocks and GET RESPONSE
    outcomes = {}
    for k in range(total):
        card = RebuildingCard(make_euicc(tmp_path / ("cut%d" % k)), cut_at=k)
        request = package(card.euicc, 1, BIG_OPS)
        try:
            _scenario(card, request)
            outcome = "completed"
        except CardError as e:
            # The rebuilt card has lost the logical channel: a status word, not garbage.
            assert e.sw == 0x6881, (k, e)
            outcome = "%02X:%04X" % (card.sent[k][1], e.sw)
        state = _committed(card.euicc)
        if state["counter"] == 0:
            assert state == BEFORE, (k, state)  # nothing half-applied
        else:
            _expect_after(state)
            # Not completed: the result is still pending, unless the cut only kept the IPA
            # from fetching (T=0 GET RESPONSE) the answer to the RemoveNotificationFromList
            # the card had carried out.
            removed = any(a[1] == 0xE2 and a[5:7] == b"\xbf\x30" for a in card.sent[:k])
            if outcome != "completed":
                assert len(state["results"]) == (0 if removed else 1), (k, state)
        _recover(card.euicc, request, state["counter"] == 1)
        final = _committed(card.euicc)
        _expect_after(final)
        assert final["results"] == []
        outcomes[k] = (outcome, state["counter"])
    # The cut right after the last STORE DATA block (package committed, answer lost)
    # exists and was recovered from the pending result.
    assert ("C0:6881", 1) in outcomes.values(), outcomes
    assert ("E2:6881", 0) in outcomes.values(), outcomes


def test_interrupted_store_data_fails_with_a_status_word_and_changes_nothing(rig):
    request = package(rig.euicc, 1, BIG_OPS)
    blocks = [request[i:i + 255] for i in range(0, len(request), 255)]
    assert len(blocks) == 2
    s = rig.s
    data, sw = s.transmit(command(s.cla(0x80), 0xE2, 0x11, 0x00, blocks[0]))
    assert sw == 0x9000 and data == b""
    before = open(rig.euicc.state_path).read()
    rig.power_cycle()  # the first block is lost with the channel
    s = rig.s
    # The second block alone, on a new channel: out of sequence, refused.
    data, sw = s.transmit(command(s.cla(0x80), 0xE2, 0x91, 0x01, blocks[1]))
    assert (data, sw) == (b"", 0x6985)
    assert open(rig.euicc.state_path).read() == before
    # The IPA's next request works and the package was not applied.
    assert enabled(rig) == [ICCID_1]
    assert ok_result(rig, 1, BIG_OPS)["counterValue"] == 1
    assert enabled(rig) == [ICCID_2]


# ---- a real `ipa-sim euicc --vpcd` process, SIGKILLed mid-sequence -----------------------------


def _ipa_sim():
    exe = os.path.join(os.path.dirname(sys.executable), "ipa-sim")
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-m", "ipa_host.sim.cli"]


class SimProcess:
    """`ipa-sim euicc --vpcd` in its own process, serving slot 1 of the test vpcd reader."""

    def __init__(self, server, pki_dir, state):
        self.server = server
        self.port = server.port + 1  # vpcd slot 1; slot 0 is the in-process bridge's
        self.reader = server.reader[:-len("00 00")] + "00 01"
        self.cmd = _ipa_sim() + ["euicc", "--vpcd", "127.0.0.1:%d" % self.port,
                                 "--pki", pki_dir, "--state", state]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            self.server.wait_card(True, timeout=15, reader=self.reader)
        except BaseException:
            self.kill()
            raise
        return self

    def kill(self):
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)  # only the process this test started
        if p is not None:
            p.wait(10)
            p.stderr.close()
        self.server.wait_card(False, timeout=10, reader=self.reader)


def test_sigkill_of_a_real_ipa_sim_process_mid_sequence(pcscd_server, tmp_path):
    from ipa_host.card.pcsc import PcscCard

    setup = make_euicc(tmp_path)  # PKI, profiles, eIM; then only the process uses the state
    request = package(setup, 1, BIG_OPS)
    pki_dir, state = setup.pki["folder"], setup.state_path
    del setup
    sim = SimProcess(pcscd_server, pki_dir, state).start()
    card = None
    try:
        card = PcscCard(sim.reader)
        s = IsdrSession(card).open()
        # The first of two STORE DATA blocks, then the process dies.
        data, sw = s.transmit(command(s.cla(0x80), 0xE2, 0x11, 0x00, request[:255]))
        assert sw == 0x9000
        sim.kill()
        with pytest.raises(TransportError):
            s.transmit(command(s.cla(0x80), 0xE2, 0x91, 0x01, request[255:]))
        card.close()
        with open(state) as f:
            assert json.load(f)["eims"][0]["counter"] == 0  # nothing committed

        sim.start()
        card = PcscCard(sim.reader)
        s = IsdrSession(card).open()
        res = es10.load_euicc_package(s, request)
        assert res["kind"] == "euiccPackageResultSigned" and res["counterValue"] == 1
        # Killed after the commit, before the IPA delivered and removed the result.
        sim.kill()
        card.close()
        sim.start()
        card = PcscCard(sim.reader)
        s = IsdrSession(card).open()
        pending = es10.retrieve_notifications_list(s, euicc_package_results=True)
        assert [p["raw"] for p in pending] == [res["raw"]]  # byte for byte, still signed
        assert es10.load_euicc_package(s, request)["error"] == "replayError"
        assert es10.remove_notification_from_list(s, res["seqNumber"]) == 0
        assert es10.retrieve_notifications_list(s, euicc_package_results=True) == []
        assert [p["iccid"] for p in es10.get_profiles_info(s) if p["profileState"] == 1] == [
            ICCID_2]
        assert es10.get_euicc_configured_addresses(s)["defaultDpAddress"] == BIG_ADDRESS
        s.close()
    finally:
        if card is not None:
            card.close()
        sim.kill()
