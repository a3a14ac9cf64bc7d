"""ipa_core.esipa (ASN.1 binding) against byte strings written by hand from SGP32Definitions v1.2.

Every expected message below is derived in its comment from the module:
tags, AUTOMATIC TAGS (X.680 25.3: components are numbered [0], [1]... only
when no component of that SEQUENCE/CHOICE has a written tag) and implicit
re-tagging of tagged types. Lengths are counted by hand. Plain functions
with assert: pytest on CPython and tools/mp_test.py on MicroPython.
"""

from ipa_core import esipa
from ipa_core.errors import EimError, ProtocolError, TlvError

from scripted import clean_hex, to_bytes as h

EID = "89049032123451234512345678901235"
TXID = "0102030405060708"  # an 8-byte TransactionId
SIG = "AB" * 64  # a raw r||s signature
ICCID_BCD = "98001032547698103214"  # 89000123456789012341
SMDP = "736D64702E6578616D706C652E636F6D"  # "smdp.example.com", 16 bytes
EIM1 = "65696D31"  # "eim1"
CHALLENGE = "00112233445566778899AABBCCDDEEFF"
CERT1 = "3016" "3003020101" "300A06082A8648CE3D040302" "0303000102"  # 24 bytes
CERT2 = "3016" "3003020102" "300A06082A8648CE3D040302" "0303000102"

# EuiccPackageResult, signed: BF51 { euiccPackageResultSigned [0] A0 {
#   euiccPackageResultDataSigned 30 { eimId 80 04 "eim1", counterValue 81 01 05,
#   seqNumber 83 01 07, euiccResult 30 03 { enableResult 83 01 00 } } (17 = 0x11),
#   euiccSignEPR 5F37 40 <64> } }: A0 content 19 + 67 = 86 (0x56), BF51 content 88 (0x58).
EPR = "BF5158" "A056" "3011" "8004" + EIM1 + "810105" "830107" "3003830100" "5F3740" + SIG
# A pending notification, shape only (otherSignedNotification '30'): 12 bytes.
NOTIF = "300A" "BF2F03800107" "5F3701AA"
# ProfileInstallationResult, shape only: BF37 03 { BF27 00 }.
PIR = "BF3703BF2700"


def raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def same(got, expected_hex):
    """Compare bytes with hand-written hex (spaces allowed), showing both on failure."""
    exp = clean_hex(expected_hex)
    assert clean_hex(got) == exp, "\n  got      %s\n  expected %s" % (clean_hex(got), exp)


# ---- GetEimPackage -----------------------------------------------------------------------


def test_get_eim_package_request_eid_only():
    # BF4F { eidValue [APPLICATION 26] '5A' 10 <16> }: 18 bytes.
    same(esipa.get_eim_package_request(EID), "BF4F12 5A10" + EID)
    same(esipa.get_eim_package_request(h(EID)), "BF4F12 5A10" + EID)


def test_get_eim_package_request_all_fields_v12():
    # notifyStateChange [0] NULL '80 00', stateChangeCause [1] fallback(1) '81 01 01',
    # rPLMN [2] '82 03 21F354': 18 + 2 + 3 + 5 = 28 (0x1C).
    want = "BF4F1C 5A10" + EID + "8000 810101 820321F354"
    same(esipa.get_eim_package_request(EID, True, "fallback", "21F354"), want)
    same(esipa.get_eim_package_request(EID, notify_state_change=True, state_change_cause=1,
                                       rplmn=h("21F354"), version="v1.2.0"), want)
    # undefined(127) is '81 01 7F'; deviceChange(6) '81 01 06'.
    same(esipa.get_eim_package_request(EID, True, "undefined"), "BF4F17 5A10" + EID + "8000 81017F")


def test_get_eim_package_request_v10_has_no_state_change_cause():
    # v1.0 GetEimPackageRequest has no stateChangeCause: it is left out, the rest stays.
    same(esipa.get_eim_package_request(EID, True, "reset", version="1.0"),
         "BF4F14 5A10" + EID + "8000")
    same(esipa.get_eim_package_request(EID, True, "reset", version="1.1"),
         "BF4F17 5A10" + EID + "8000 810104")


def test_get_eim_package_request_bad_arguments():
    raises(ValueError, esipa.get_eim_package_request, EID[:-2])
    raises(ValueError, esipa.get_eim_package_request, "XY" * 16)
    e = raises(ValueError, esipa.get_eim_package_request, EID, True, "rebooted")
    assert "rebooted" in str(e) and "fallback" in str(e)
    e = raises(ValueError, esipa.get_eim_package_request, EID, False, None, "21F3")
    assert "3 bytes" in str(e)
    raises(ValueError, esipa.get_eim_package_request, EID, version="2.0")


# EuiccPackageRequest: BF51 { euiccPackageSigned 30 { eimId [0] 80 04 "eim1",
#   eidValue 5A 10 <EID>, counterValue [1] 81 01 05, eimTransactionId [2] 82 08 <TXID>,
#   euiccPackage: psmoList (auto [0], explicit-free SEQUENCE OF) A0 {
#     enable [3] A3 0E { iccid 5A 0A <10>, rollbackFlag NULL 05 00 } (16)
#     disable [4] A4 0C { 5A 0A <10> } (14)
#     listProfileInfo [45] BF2D 03 { tagList 5C 01 5A } (6)
#     getRAT [6] A6 00 (2)
#     configureImmediateEnable [7] A7 14 { immediateEnableFlag 80 00,
#       defaultSmdpAddress [2] 82 10 "smdp.example.com" } (22)
#     setDefaultDpAddress [101] BF65 12 { defaultDpAddress (auto [0]) 80 10 ... } (21)
#   } content 81 (0x51), 83 bytes } content 6+18+3+10+83 = 120 (0x78), 122 bytes,
#   eimSignature 5F37 40 <64> (67) }: BF51 content 189 (0x81BD), 4 + 189 = 193 bytes.
PSMOS = ("A351" "A30E5A0A" + ICCID_BCD + "0500" "A40C5A0A" + ICCID_BCD + "BF2D035C015A" "A600"
         "A714" "8000" "8210" + SMDP + "BF6512" "8010" + SMDP)
EPREQ = ("BF5181BD" "3078" "8004" + EIM1 + "5A10" + EID + "810105" "8208" + TXID + PSMOS.replace(
    "A351", "A051") + "5F3740" + SIG)


def test_decode_get_eim_package_response_euicc_package_request():
    # GetEimPackageResponse [79] CHOICE: BF4F { euiccPackageRequest [81] BF51 ... }: 193 -> 81C1.
    r = esipa.decode_get_eim_package_response(h("BF4F81C1" + EPREQ))
    assert r["kind"] == "euiccPackageRequest"
    assert r["raw"] == h(EPREQ)  # forwarded to ES10b.LoadEuiccPackage byte for byte
    assert r["eimId"] == "eim1" and r["eidValue"] == EID and r["counterValue"] == 5
    assert r["eimTransactionId"] == h(TXID)
    assert r["eimSignature"] == h(SIG)
    assert r["signedData"] == h(EPREQ)[4:4 + 122]
    assert r["euiccPackage"] == {"psmoList": [
        {"enable": {"iccid": "89000123456789012341", "rollbackFlag": True}},
        {"disable": {"iccid": "89000123456789012341"}},
        {"listProfileInfo": {"raw": h("BF2D035C015A")}},
        {"getRAT": {}},
        {"configureImmediateEnable": {"immediateEnableFlag": True,
                                      "defaultSmdpAddress": "smdp.example.com"}},
        {"setDefaultDpAddress": {"defaultDpAddress": "smdp.example.com"}},
    ]}


def test_decode_euicc_package_request_eco_list_and_unknown_operation():
    # ecoList (auto [1]) A1 { addEim [8] A8 { eimId 80 04 "eim2", eimFqdn 81 03 "e.x",
    #   eimSupportedProtocol 87 02 07 80 (eimRetrieveHttps) } (A8 0F, 17),
    #   deleteEim [9] A9 06 { 80 04 "eim1" } (8), listEim [11] AB 00 (2),
    #   an unknown [12] AC 00 (2) } content 29 (0x1D).
    # 30 { 80 04 eim1 (6), 5A 10 (18), 81 01 06 (3), A1 1D (31) } = 58 (0x3A);
    # BF51 content 60 + 67 = 127 (0x7F).
    eco = ("A11D" "A80F" "800465696D32" "8103652E78" "87020780" "A906800465696D31" "AB00"
           "AC00")
    req = "BF517F" "303A" "8004" + EIM1 + "5A10" + EID + "810106" + eco + "5F3740" + SIG
    r = esipa.decode_get_eim_package_response(h("BF4F8182" + req))
    assert r["kind"] == "euiccPackageRequest" and r["counterValue"] == 6
    assert "eimTransactionId" not in r
    ops = r["euiccPackage"]["ecoList"]
    assert ops[0] == {"addEim": {"eimId": "eim2", "eimFqdn": "e.x",
                                 "eimSupportedProtocol": ["eimRetrieveHttps"],
                                 "indirectProfileDownload": False}}
    assert ops[1] == {"deleteEim": {"eimId": "eim1"}}
    assert ops[2] == {"listEim": {}}
    assert ops[3] == {"unknownTag": 0xAC, "raw": h("AC00")}


def test_decode_euicc_package_request_malformed():
    # euiccPackage neither A0 nor A1: 30 { 6 + 18 + 3 + 2 } = 30 1D (31) + 5F37 00 (3) = 34.
    bad = "BF5122" "301D" "8004" + EIM1 + "5A10" + EID + "810105" "3000" "5F3700"
    e = raises(TlvError, esipa.decode_get_eim_package_response, h("BF4F25" + bad))
    assert "psmoList (A0) or ecoList (A1)" in str(e)
    # eidValue of 15 bytes: 30 { 6 + 17 + 3 + 2 } = 30 1C (30) + 3 = 33.
    bad = "BF5121" "301C" "8004" + EIM1 + "5A0F" + EID[:-2] + "810105" "A000" "5F3700"
    e = raises(TlvError, esipa.decode_get_eim_package_response, h("BF4F24" + bad))
    assert "16-byte eidValue" in str(e)
    # eimId of 129 bytes: 30 { 80 81 81 <129> (132) + 18 + 3 + 2 } = 30 81 9B (158); + 3 = 161.
    long_id = "61" * 129
    bad_s = "808181" + long_id + "5A10" + EID + "810105A000"
    bad = "BF5181A1" "30819B" + bad_s + "5F3700"
    e = raises(TlvError, esipa.decode_get_eim_package_response, h("BF4F81A5" + bad))
    assert "eimId of 1..128" in str(e)


def test_decode_get_eim_package_response_ipa_euicc_data_request():
    # IpaEuiccDataRequest [82] BF52 { tagList 5C 06 { A0 81 BF22 A5 9F70 },
    #   euiccCiPKIdentifierToBeUsed (untagged next to tagged: universal) 04 02 F541,
    #   searchCriteriaNotification [1] (CHOICE: explicit) A1 03 { seqNumber 80 01 03 },
    #   searchCriteriaEuiccPackageResult [2] A2 03 { seqNumber 80 01 04 },
    #   eimTransactionId [3] 83 08 <TXID> }: 9 + 4 + 5 + 5 + 10 = 33 (0x21).
    req = "BF5221" "5C07A081BF22A59F70" "0402F541" "A103800103" "A203800104" "8308" + TXID
    r = esipa.decode_get_eim_package_response(h("BF4F24" + req))
    assert r["kind"] == "ipaEuiccDataRequest" and r["raw"] == h(req)
    assert r["tagList"] == [0xA0, 0x81, 0xBF22, 0xA5, 0x9F70]
    assert r["items"] == ["notificationsList", "defaultSmdpAddress", "euiccInfo2",
                          "eumCertificate"]
    assert r["unknownTags"] == [0x9F70]
    assert r["euiccCiPKIdentifierToBeUsed"] == "F541"
    assert r["searchCriteriaNotification"] == {"seqNumber": 3}
    assert r["searchCriteriaEuiccPackageResult"] == {"seqNumber": 4}
    assert r["eimTransactionId"] == h(TXID)
    # profileManagementOperation [1] '81' NotificationEvent: notificationEnable(1) = 02 06 40.
    # BF52 { 5C 01 A0, A1 04 { 81 02 06 40 } }: 3 + 6 = 9.
    r = esipa.decode_get_eim_package_response(h("BF4F0C BF5209 5C01A0 A104 81020640"))
    assert r["searchCriteriaNotification"] == {"profileManagementOperation":
                                               ["notificationEnable"]}
    # A cut multi-byte tag in tagList.
    e = raises(TlvError, esipa.decode_get_eim_package_response, h("BF4F06BF52035C01BF"))
    assert "tagList" in str(e)
    # An unknown searchCriteriaNotification alternative.
    e = raises(ProtocolError, esipa.decode_get_eim_package_response,
               h("BF4F0B BF5208 5C01A0 A103 830100"))
    assert "83" in str(e) and "searchCriteriaNotification" in str(e)
    # v1.0's euiccPackageResults [2] NULL is read.
    r = esipa.decode_get_eim_package_response(h("BF4F0B BF5208 5C02BF2B A1028200"))
    assert r["searchCriteriaNotification"] == {"euiccPackageResults": True}


def test_decode_get_eim_package_response_profile_download_trigger():
    # ProfileDownloadTriggerRequest [84] BF54 { profileDownloadData [0] (CHOICE: explicit) A0 {
    #   activationCode [0] 80 0C "1$smdp.x$abc" }, eimTransactionId [2] 82 08 <TXID> }.
    ac = "31" "24" "736D64702E78" "24" "616263"  # "1$smdp.x$abc", 12 bytes
    req = "BF541A" "A00E800C" + ac + "8208" + TXID
    r = esipa.decode_get_eim_package_response(h("BF4F1D" + req))
    assert r == {"kind": "profileDownloadTriggerRequest", "raw": h(req),
                 "profileDownloadData": {"activationCode": "1$smdp.x$abc"},
                 "eimTransactionId": h(TXID)}
    # contactDefaultSmdp [1] NULL: A0 02 81 00.
    r = esipa.decode_get_eim_package_response(h("BF4F07BF5404A0028100"))
    assert r["profileDownloadData"] == {"contactDefaultSmdp": True}
    # contactSmds [2] SEQUENCE { smdsAddress (auto [0]) 80 03 "d.x" }: A0 07 A2 05 80 03 ...
    r = esipa.decode_get_eim_package_response(h("BF4F0CBF5409A007A2058003642E78"))
    assert r["profileDownloadData"] == {"contactSmds": {"smdsAddress": "d.x"}}
    r = esipa.decode_get_eim_package_response(h("BF4F07BF5404A002A200"))
    assert r["profileDownloadData"] == {"contactSmds": {}}
    # No profileDownloadData at all is allowed (OPTIONAL).
    r = esipa.decode_get_eim_package_response(h("BF4F03BF5400"))
    assert "profileDownloadData" not in r
    # An unknown ProfileDownloadData alternative [3] '83'.
    e = raises(ProtocolError, esipa.decode_get_eim_package_response,
               h("BF4F07BF5404A0028300"))
    assert "83" in str(e) and "ProfileDownloadData" in str(e)
    # An activation code of 256 bytes: 80 82 0100 (260), A0 82 0104 (264), BF54 82 0108 (269).
    e = raises(TlvError, esipa.decode_get_eim_package_response,
               h("BF4F82010D" "BF54820108" "A0820104" "80820100" + "41" * 256))
    assert "0..255" in str(e)


def test_decode_get_eim_package_response_each_eim_package_error():
    # eimPackageError INTEGER next to tagged alternatives: universal 02 (X.680).
    names = {1: "noEimPackageAvailable", 2: "eidNotFound", 3: "invalidEid", 4: "missingEid",
             127: "undefinedError"}
    for n in names:
        r = esipa.decode_get_eim_package_response(h("BF4F030201%02X" % n))
        assert r == {"kind": "eimPackageError", "eimPackageError": n, "error": names[n]}
    # The automatic-tag form [3] '83' some encoders produce is accepted.
    r = esipa.decode_get_eim_package_response(h("BF4F03830101"))
    assert r["error"] == "noEimPackageAvailable"
    # A code outside the list keeps its number.
    r = esipa.decode_get_eim_package_response(h("BF4F03020109"))
    assert r["eimPackageError"] == 9 and r["error"] == "undefined"
    # Wrapped once more in its own tag (a tagged CHOICE encoded twice).
    r = esipa.decode_get_eim_package_response(h("BF4F06BF4F03020102"))
    assert r["error"] == "eidNotFound"


def test_decode_get_eim_package_response_malformed():
    e = raises(ProtocolError, esipa.decode_get_eim_package_response, b"")
    assert "no data" in str(e) and "BF4F" in str(e)
    e = raises(TlvError, esipa.decode_get_eim_package_response, h("BF5003020101"))
    assert "BF4F" in str(e) and "BF50" in str(e)
    e = raises(ProtocolError, esipa.decode_get_eim_package_response, h("BF4F03BF5500"))
    assert "BF55" in str(e)
    e = raises(TlvError, esipa.decode_get_eim_package_response, h("BF4F00"))
    assert "one GetEimPackageResponse alternative" in str(e)
    raises(TlvError, esipa.decode_get_eim_package_response, h("BF4F0602010102010"[:-1]))
    raises(TlvError, esipa.decode_get_eim_package_response, h("BF4F0302010100"))
    raises(TlvError, esipa.decode_get_eim_package_response, h("BF4F04020101"))
    # BF53 (eimAcknowledgements) is not a GetEimPackageResponse alternative.
    e = raises(ProtocolError, esipa.decode_get_eim_package_response, h("BF4F06BF5303800101"))
    assert "BF53" in str(e)


# ---- ProvideEimPackageResult ------------------------------------------------------------------


def test_provide_eim_package_result_euicc_package_result():
    # BF50 { eidValue 5A 10 <EID> (18), eimPackageResult: euiccPackageResult [81] BF51 (91) }:
    # 109 (0x6D). The EPR bytes are the eUICC's, unchanged.
    same(esipa.provide_eim_package_result(EID, euicc_package_result=h(EPR)),
         "BF506D 5A10" + EID + EPR)
    same(esipa.provide_eim_package_result(euicc_package_result={"raw": h(EPR)}), "BF505B" + EPR)
    # An empty notification list adds nothing.
    same(esipa.provide_eim_package_result(euicc_package_result=h(EPR), notifications=[]),
         "BF505B" + EPR)


def test_provide_eim_package_result_epr_and_notifications_v12_and_v10():
    # ePRAndNotifications SEQUENCE (untagged next to tagged alternatives) 30 {
    #   euiccPackageResult BF51 (91), notificationList [0] A0 0C <NOTIF> (14) }: 105 (0x69).
    got = esipa.provide_eim_package_result(euicc_package_result=h(EPR), notifications=[h(NOTIF)])
    same(got, "BF506B 3069" + EPR + "A00C" + NOTIF)
    # v1.0: notificationList [43] SGP32-RetrieveNotificationsListResponse: BF2B replaces the
    # CHOICE's own [43]; its alternative notificationList is automatic [0] A0. 91 + 3 + 14 = 108.
    got = esipa.provide_eim_package_result(euicc_package_result=h(EPR), notifications=[h(NOTIF)],
                                           version="1.0")
    same(got, "BF506E 306C" + EPR + "BF2B0E A00C" + NOTIF)


def test_provide_eim_package_result_error_and_others():
    # eimPackageResultResponseError [0] A0 { eimTransactionId [0] 80 08 <TXID>,
    #   eimPackageResultErrorCode (untagged next to tagged) 02 01 02 unknownPackage }: 13 (0x0D).
    same(esipa.provide_eim_package_result(EID, error_code="unknownPackage",
                                          eim_transaction_id=TXID),
         "BF5021 5A10" + EID + "A00D 8008" + TXID + "020102")
    same(esipa.provide_eim_package_result(error_code=1), "BF5005 A003020101")
    # ipaEuiccDataResponse [82] BF52 and profileDownloadTriggerResult [84] BF54 go in verbatim.
    same(esipa.provide_eim_package_result(ipa_euicc_data_response=h("BF5202A100")),
         "BF5005 BF5202A100")
    same(esipa.provide_eim_package_result(profile_download_trigger_result=h("BF5405 3003800168")),
         "BF5008 BF54053003800168")


def test_provide_eim_package_result_bad_arguments():
    raises(ValueError, esipa.provide_eim_package_result, EID)
    raises(ValueError, esipa.provide_eim_package_result, EID, h(EPR), error_code=1)
    raises(ValueError, esipa.provide_eim_package_result, error_code="tooLate")
    raises(ValueError, esipa.provide_eim_package_result, ipa_euicc_data_response=h("BF5200"),
           notifications=[h(NOTIF)])
    raises(ValueError, esipa.provide_eim_package_result, euicc_package_result=h(EPR),
           eim_transaction_id=TXID)
    e = raises(ProtocolError, esipa.provide_eim_package_result, euicc_package_result=h(NOTIF))
    assert "BF51" in str(e) and "30" in str(e)
    e = raises(ProtocolError, esipa.provide_eim_package_result, euicc_package_result=h(EPR),
               notifications=[h("BF2F00")])
    assert "PendingNotification" in str(e)
    raises(TlvError, esipa.provide_eim_package_result, euicc_package_result=h(EPR)[:-1])


def test_decode_provide_eim_package_result_response():
    # eimAcknowledgements [83] BF53 { SequenceNumber [0] 80 01 07, 80 02 01 00 (256) }.
    r = esipa.decode_provide_eim_package_result_response(h("BF500ABF5307800107 80020100"))
    assert r == {"kind": "eimAcknowledgements", "eimAcknowledgements": [7, 256]}
    r = esipa.decode_provide_eim_package_result_response(h("BF5003BF5300"))
    assert r == {"kind": "eimAcknowledgements", "eimAcknowledgements": []}
    # emptyResponse SEQUENCE {} (untagged next to tagged): 30 00; an empty BF50 too.
    empty = {"kind": "emptyResponse", "eimAcknowledgements": []}
    assert esipa.decode_provide_eim_package_result_response(h("BF50023000")) == empty
    assert esipa.decode_provide_eim_package_result_response(h("BF5000")) == empty


def test_decode_provide_eim_package_result_response_errors():
    names = {2: "eidNotFound", 3: "invalidEid", 4: "missingEid", 127: "undefinedError"}
    for n in names:
        e = raises(EimError, esipa.decode_provide_eim_package_result_response,
                   h("BF50030201%02X" % n))
        assert e.code == n and e.name == names[n]
        assert e.function == "ESipa.ProvideEimPackageResult"
    e = raises(EimError, esipa.decode_provide_eim_package_result_response, h("BF50038201%02X" % 3))
    assert e.name == "invalidEid"
    e = raises(ProtocolError, esipa.decode_provide_eim_package_result_response, h("BF5003BF5100"))
    assert "BF51" in str(e)
    e = raises(TlvError, esipa.decode_provide_eim_package_result_response, h("BF5006BF5303040100"))
    assert "seqNumber" in str(e)
    raises(TlvError, esipa.decode_provide_eim_package_result_response, h("BF5006BF5303800181"))


# ---- IpaEuiccData, ProfileDownloadTriggerResult -----------------------------------------------


def test_ipa_euicc_data_response_every_component_kind():
    # IpaEuiccDataResponse [82] CHOICE: BF52 { ipaEuiccData (auto [0]) A0 {
    #   notificationsList [0] A0 0C <NOTIF> (14)
    #   defaultSmdpAddress [1] 81 10 "smdp.example.com" (18)
    #   euiccPackageResultList [2] A2 00: asked for, none (2)
    #   euiccInfo1 [32] BF20 05 { svn 82 03 020200 } (8)
    #   associationToken [4] 84 01 05 (3)
    #   eumCertificate [5] Certificate IMPLICIT: A5 16 <CERT1 content> (24)
    #   eimTransactionId [7] 87 08 <TXID> (10)
    #   ipaCapabilities [8] A8 08 { ipaFeatures [0] 80 02 02 C4 (bits 0, 1, 5),
    #     ipaSupportedProtocols [1] 81 02 07 80 (bit 0) } (10)
    #   deviceInfo [9] A9 08 { tac 80 04 35290611, deviceCapabilities A1 00 } (10)
    # } content 99 (0x63), 101 bytes }: BF52 65.
    got = esipa.ipa_euicc_data_response(
        eim_transaction_id=TXID, notifications=[h(NOTIF)], default_smdp_address="smdp.example.com",
        euicc_package_results=[], euicc_info1={"raw": h("BF2005820302 0200")},
        association_token=5, eum_certificate=h(CERT1),
        ipa_capabilities={"ipaFeatures": ["directRspServerCommunication",
                                          "indirectRspServerCommunication", "minimizeEsipaBytes"],
                          "ipaSupportedProtocols": ["ipaRetrieveHttps"]},
        device_info={"tac": "35290611"})
    same(got, "BF5265 A063" "A00C" + NOTIF + "8110" + SMDP + "A200" "BF2005820302 0200" "840105"
         "A516" + CERT1[4:] + "8708" + TXID + "A808800202C481020780" "A9088004352906 11A100")


def test_ipa_euicc_data_response_order_and_the_rest():
    # euiccPackageResultList A2 5B <EPR>, euiccInfo2 [34] BF22 (raw), rootSmdsAddress [3] 83 03
    # "d.x", euiccCertificate [6] A6 16 <CERT2 content>, deviceInfo from a raw DeviceInfo '30'
    # re-tagged A9, ipaCapabilities raw A8 kept: module order A2, BF22, 83, A6, A8, A9.
    info2 = "BF2203810100"
    got = esipa.ipa_euicc_data_response(
        device_info=h("3006800400000000"), root_smds_address="d.x", euicc_certificate=h(CERT2),
        euicc_info2=h(info2), euicc_package_results=[h(EPR)], ipa_capabilities=h("A804800200C0"))
    inner = ("A25B" + EPR + info2 + "8303642E78" + "A616" + CERT2[4:] + "A804800200C0"
             "A906800400000000")
    # 93 + 6 + 5 + 24 + 6 + 8 = 142 (0x818E).
    same(got, "BF528191 A0818E" + inner)
    # Nothing asked for: an empty IpaEuiccData.
    same(esipa.ipa_euicc_data_response(), "BF5202A000")
    e = raises(ProtocolError, esipa.ipa_euicc_data_response, euicc_info1=h(info2))
    assert "BF20" in str(e)


def test_ipa_euicc_data_response_error():
    # ipaEuiccDataResponseError (auto [1]) A1 { eimTransactionId [0] 80 08 <TXID>,
    #   ipaEuiccDataErrorCode (untagged next to tagged) 02 01 01 incorrectTagList }.
    same(esipa.ipa_euicc_data_response_error("incorrectTagList", TXID),
         "BF520F A10D 8008" + TXID + "020101")
    same(esipa.ipa_euicc_data_response_error(104), "BF5205 A103020168")
    same(esipa.ipa_euicc_data_response_error("euiccCiPKIdNotFound"), "BF5205 A103020105")
    raises(ValueError, esipa.ipa_euicc_data_response_error, "sorry")


def test_profile_download_trigger_result():
    # ProfileDownloadTriggerResult [84] BF54 { eimTransactionId [2] 82 08 <TXID>,
    #   profileInstallationResult [55] BF37 (verbatim) }: 10 + 6 = 16.
    same(esipa.profile_download_trigger_result(h(PIR), eim_transaction_id=TXID),
         "BF5410 8208" + TXID + PIR)
    # profileDownloadError SEQUENCE (untagged next to [55]): 30 { profileDownloadErrorReason
    #   [0] 80 01 68 (ecallActive 104), errorResponse (untagged next to tagged) 04 02 BEEF }.
    same(esipa.profile_download_trigger_result(error_reason="ecallActive",
                                               error_response=h("BEEF")),
         "BF5409 3007 800168 0402BEEF")
    same(esipa.profile_download_trigger_result(error_reason=127), "BF5405 300380017F")
    raises(ValueError, esipa.profile_download_trigger_result)
    raises(ValueError, esipa.profile_download_trigger_result, h(PIR), 127)
    raises(ProtocolError, esipa.profile_download_trigger_result, h(EPR))
    raises(ValueError, esipa.profile_download_trigger_result, error_reason=1,
           eim_transaction_id="01" * 17)


# ---- HandleNotification, TransferEimPackage ----------------------------------------------------


def test_handle_notification():
    # HandleNotificationEsipa [61] CHOICE: BF3D { pendingNotification [0] (a CHOICE:
    # explicit) A0 0C { <NOTIF> } }.
    same(esipa.handle_notification(h(NOTIF)), "BF3D0E A00C" + NOTIF)
    same(esipa.handle_notification({"raw": h(PIR)}), "BF3D08 A006" + PIR)
    # provideEimPackageResult [80] ProvideEimPackageResult: BF50 as built.
    pepr = esipa.provide_eim_package_result(error_code=1)
    same(esipa.handle_notification(provide_eim_package_result=pepr), "BF3D08 BF5005A003020101")
    # v1.0: untagged alternatives, automatic [1] replacing BF50 -> A1; v1.0's
    # ProvideEimPackageResult error is eimPackageError 02 directly in the CHOICE.
    pepr = esipa.provide_eim_package_result(error_code=1, version="1.0")
    same(pepr, "BF5003 020101")
    same(esipa.handle_notification(provide_eim_package_result=pepr, version="1.0"),
         "BF3D05 A103020101")
    same(esipa.handle_notification(h(NOTIF), version="1.0"), "BF3D0E A00C" + NOTIF)
    raises(ValueError, esipa.handle_notification)
    raises(ValueError, esipa.handle_notification, h(NOTIF), pepr)
    raises(ProtocolError, esipa.handle_notification, h(EPR))


def test_transfer_eim_package_response():
    # TransferEimPackageResponse [78] CHOICE: BF4E { one alternative }.
    same(esipa.transfer_eim_package_response(h(EPR)), "BF4E5B" + EPR)
    same(esipa.transfer_eim_package_response(h(EPR), [h(NOTIF)]),
         "BF4E6B 3069" + EPR + "A00C" + NOTIF)
    # eimPackageReceived NULL and eimPackageError INTEGER, untagged next to tagged: 05, 02.
    same(esipa.transfer_eim_package_response(eim_package_received=True), "BF4E020500")
    same(esipa.transfer_eim_package_response(error_code="invalidPackageFormat"), "BF4E03020101")
    same(esipa.transfer_eim_package_response(ipa_euicc_data_response=h("BF5202A000")),
         "BF4E05BF5202A000")
    raises(ValueError, esipa.transfer_eim_package_response)
    raises(ValueError, esipa.transfer_eim_package_response, h(EPR), eim_package_received=True)


def test_decode_transfer_eim_package_request():
    # TransferEimPackageRequest [78] CHOICE: BF4E { eimAcknowledgements [83] BF53 { 80 01 07 } }.
    r = esipa.decode_transfer_eim_package_request(h("BF4E06BF5303800107"))
    assert r == {"kind": "eimAcknowledgements", "eimAcknowledgements": [7]}
    r = esipa.decode_transfer_eim_package_request(h("BF4E81C1" + EPREQ))
    assert r["kind"] == "euiccPackageRequest" and r["raw"] == h(EPREQ)
    r = esipa.decode_transfer_eim_package_request(h("BF4E07 BF5404A0028100"))
    assert r["profileDownloadData"] == {"contactDefaultSmdp": True}
    # No eimPackageError alternative in a TransferEimPackageRequest.
    e = raises(ProtocolError, esipa.decode_transfer_eim_package_request, h("BF4E03020101"))
    assert "02" in str(e) and "TransferEimPackageRequest" in str(e)


# ---- indirect download -------------------------------------------------------------------------


def test_initiate_authentication_request():
    # InitiateAuthenticationRequestEsipa [57] BF39 { euiccChallenge [1] 81 10 <16>,
    #   smdpAddress [3] 83 10 "smdp.example.com", euiccInfo1 (untagged: its own) BF20 05 ...,
    #   eimTransactionId [2] 82 08 <TXID> }: 18 + 18 + 8 + 10 = 54 (0x36).
    same(esipa.initiate_authentication_request(h(CHALLENGE), h("BF20058203020200"),
                                               "smdp.example.com", TXID),
         "BF3936 8110" + CHALLENGE + "8310" + SMDP + "BF20058203020200" "8208" + TXID)
    same(esipa.initiate_authentication_request(h(CHALLENGE)), "BF3912 8110" + CHALLENGE)
    raises(ValueError, esipa.initiate_authentication_request, h(CHALLENGE)[:15])
    raises(ProtocolError, esipa.initiate_authentication_request, h(CHALLENGE), h("BF2200"))


# AuthenticateServer answer, authenticateResponseOk (auto [0]) A0 {
#   euiccSigned1 30 { transactionId [0] 80 08 <TXID> (10), serverAddress [3] 83 10 <SMDP> (18),
#     serverChallenge [4] 84 10 <16> (18), euiccInfo2 [34] BF22 05 { extCardResource [4]
#     84 03 810100 } (8), ctxParams1 (CHOICE, alternative auto [0]) A0 0A { deviceInfo
#     (auto [1]) A1 08 { tac 80 04 35290611, deviceCapabilities A1 00 } } (12)
#   } content 66 (0x42), 68 bytes; euiccSignature1 5F37 40 (67); euiccCertificate 30 (24);
#   eumCertificate 30 (24) }: A0 content 183 (0x81B7), 186 bytes; BF38 content 186 (0x81BA).
CTX = "A00A" "A108" "800435290611" "A100"
SIGNED1 = ("3042" "8008" + TXID + "8310" + SMDP + "8410" + CHALLENGE + "BF2205" "8403810100" +
           CTX)
AUTH_OK = "BF3881BA" "A081B7" + SIGNED1 + "5F3740" + SIG + CERT1 + CERT2


def test_authenticate_client_request():
    # AuthenticateClientRequestEsipa [59] BF3B { transactionId [0] 80 08 <TXID>,
    #   authenticateServerResponse [56] BF38 (verbatim, 4 + 186 = 190) }: 200 (0x81C8).
    same(esipa.authenticate_client_request(TXID, h(AUTH_OK)),
         "BF3B81C8 8008" + TXID + AUTH_OK)
    # authenticateResponseError A1 { transactionId 80 08, authenticateErrorCode 02 01 02 }:
    # A1 0D (15), BF38 0F (18); BF3B content 10 + 18 = 28 (0x1C).
    err = "BF380FA10D8008" + TXID + "020102"
    same(esipa.authenticate_client_request(h(TXID), {"raw": h(err)}),
         "BF3B1C 8008" + TXID + err)
    raises(ValueError, esipa.authenticate_client_request, "", h(err))
    raises(ProtocolError, esipa.authenticate_client_request, TXID, h("BF2100"))


def test_compact_authenticate_server_response():
    # compactAuthenticateResponseOk (auto [2]) A2 { signedData: compactEuiccSigned1 [0] A0 {
    #   extCardResource [4] 84 03 810100 (5), ctxParams1 [2] (CHOICE: explicit) A2 0C <CTX> (14)
    # } (A0 13, 21), euiccSignature1 5F37 (67, verbatim) }: 88 (0x58).
    got = esipa.compact_authenticate_server_response(h(AUTH_OK))
    same(got, "BF385A A258 A013 8403810100 A20C" + CTX + "5F3740" + SIG)
    # Without ctxParams1 (the eIM generated it): A0 05 { 84 03 810100 }; 7 + 67 = 74 (0x4A).
    got = esipa.compact_authenticate_server_response(h(AUTH_OK), include_ctx_params1=False)
    same(got, "BF384C A24A A0058403810100 5F3740" + SIG)
    # With the certificates: euiccCertificate [1] A1, eumCertificate [2] A2 (IMPLICIT).
    got = esipa.compact_authenticate_server_response(h(AUTH_OK), include_certificates=True)
    same(got, "BF38818B A28188 A013 8403810100 A20C" + CTX + "5F3740" + SIG + "A116" + CERT1[4:] +
         "A216" + CERT2[4:])
    # An error answer is left as it is.
    err = "BF380FA10D8008" + TXID + "020102"
    same(esipa.compact_authenticate_server_response(h(err)), err)


# PrepareDownload answer: downloadResponseOk A0 { euiccSigned2 30 { transactionId [0] 80 08
#   <TXID>, euiccOtpk 5F49 03 040102 (shape only) } (30 10, 18), euiccSignature2 5F37 (67) }:
#   85 (0x55); BF21 57.
PD_OK = "BF2157" "A055" "3010" "8008" + TXID + "5F4903040102" "5F3740" + SIG


def test_get_bound_profile_package_request_and_compact_prepare_download():
    # GetBoundProfilePackageRequestEsipa [58] BF3A { transactionId [0] 80 08 (10),
    #   prepareDownloadResponse [33] BF21 57 (3 + 87 = 90) }: 100 (0x64).
    same(esipa.get_bound_profile_package_request(TXID, h(PD_OK)),
         "BF3A64 8008" + TXID + PD_OK)
    # compactDownloadResponseOk (auto [2]) A2 { compactEuiccSigned2 30 { euiccOtpk 5F49 },
    #   euiccSignature2 5F37 }: 30 06 (8) + 67 = 75 (0x4B).
    got = esipa.compact_prepare_download_response(h(PD_OK))
    same(got, "BF214D A24B 30065F4903040102 5F3740" + SIG)
    err = "BF210FA10D8008" + TXID + "020105"
    same(esipa.compact_prepare_download_response(h(err)), err)


def test_cancel_session_request():
    # CancelSessionRequestEsipa [65] BF41 { transactionId (auto [0]) 80 08 <TXID>,
    #   cancelSessionResponse (auto [1], implicit on the tagged [65] CHOICE) A1 replacing BF41 }.
    same(esipa.cancel_session_request(TXID, h("BF4103810105")), "BF410F 8008" + TXID + "A103810105")
    # An ok answer: the signed A0 { 30 ..., 5F37 ... } content is kept byte for byte.
    # 30 { transactionId (auto [0]) 80 01 05, smdpOid (auto [1]) 81 01 06, reason (auto [2])
    #   82 01 01 }: 30 09; A0 { 30 09 (11), 5F37 40 (67) } = 78 (0x4E).
    ok = "A04E" "3009" "800105" "810106" "820101" "5F3740" + SIG
    got = esipa.cancel_session_request(TXID, h("BF4150" + ok))
    same(got, "BF415C 8008" + TXID + "A150" + ok)
    raises(ProtocolError, esipa.cancel_session_request, TXID, h("BF3A00"))


def test_decode_initiate_authentication_response():
    # InitiateAuthenticationResponseEsipa [57] CHOICE: BF39 { initiateAuthenticationOkEsipa
    #   (auto [0]) A0 { transactionId [0] 80 08, serverSigned1 30, serverSignature1 5F37,
    #   euiccCiPKIdentifierToBeUsed (untagged next to tagged) 04 14, serverCertificate 30,
    #   matchingId 0C 03 "abc", ctxParams1 [2] (CHOICE: explicit) A2 0C { A0 0A ... } } }.
    # serverSigned1 30 { transactionId 80 08, euiccChallenge [1] 81 10, serverAddress [3]
    #   83 10, serverChallenge [4] 84 10 }: 10 + 18 + 18 + 18 = 64 (0x40), 66 bytes.
    ss1 = "3040" "8008" + TXID + "8110" + CHALLENGE + "8310" + SMDP + "8410" + CHALLENGE
    keyid = "0414" + "F5" * 20
    body = "8008" + TXID + ss1 + "5F3740" + SIG + keyid + CERT1 + "0C03616263" "A20C" + CTX
    # 10 + 66 + 67 + 22 + 24 + 5 + 14 = 208 (0x81D0); A0 81D0 = 211 (0x81D3).
    msg = "BF3981D3" "A081D0" + body
    r = esipa.decode_initiate_authentication_response(h(msg))
    assert r == {"transactionId": h(TXID), "serverSigned1": h(ss1),
                 "serverSignature1": h("5F3740" + SIG), "euiccCiPKIdentifierToBeUsed": h(keyid),
                 "serverCertificate": h(CERT1), "matchingId": "abc", "ctxParams1": h(CTX),
                 "serverAddress": "smdp.example.com", "euiccChallenge": h(CHALLENGE)}
    # Minimal: no transactionId (taken from serverSigned1), no matchingId, no ctxParams1;
    # 66 + 67 + 22 + 24 = 179 (0x81B3).
    msg = "BF3981B6" "A081B3" + ss1 + "5F3740" + SIG + keyid + CERT1
    r = esipa.decode_initiate_authentication_response(h(msg))
    assert r["transactionId"] == h(TXID) and "ctxParams1" not in r
    # ctxParams1 with [2] replacing the CHOICE's alternative tag: A2 0A { A1 08 ... } is rebuilt
    # as the A0 0A ... AuthenticateServer takes.
    # 179 + 12 = 191 (0x81BF).
    msg = "BF3981C2" "A081BF" + ss1 + "5F3740" + SIG + keyid + CERT1 + "A20A" + CTX[4:]
    r = esipa.decode_initiate_authentication_response(h(msg))
    assert r["ctxParams1"] == h(CTX)


def test_decode_initiate_authentication_response_errors_and_malformed():
    names = esipa.INITIATE_AUTHENTICATION_ERROR
    for n in (1, 2, 3, 50, 51, 52, 127):
        # initiateAuthenticationErrorEsipa (auto [1]) 81.
        e = raises(EimError, esipa.decode_initiate_authentication_response, h("BF39038101%02X" % n))
        assert e.code == n and e.name == names[n]
        assert e.function == "ESipa.InitiateAuthentication"
    assert "smdpAddressMismatch" in str(raises(EimError, esipa.decode_initiate_authentication_response,
                                               h("BF3903810132")))
    # serverCertificate missing.
    e = raises(TlvError, esipa.decode_initiate_authentication_response,
               h("BF39819E" "A0819B" "3040" + "8008" + TXID + "8110" + CHALLENGE + "8310" + SMDP +
                 "8410" + CHALLENGE + "5F3740" + SIG + "0414" + "F5" * 20))
    assert "serverCertificate" in str(e)
    e = raises(ProtocolError, esipa.decode_initiate_authentication_response, h("BF3902A200"))
    assert "A2" in str(e)
    raises(TlvError, esipa.decode_initiate_authentication_response, h("BF3A03810101"))


def test_decode_authenticate_client_response():
    # AuthenticateClientResponseEsipa [59] CHOICE: authenticateClientOkDPEsipa (auto [0]) A0 {
    #   transactionId [0] 80 08, profileMetaData [37] BF25 { iccid 5A 0A, serviceProviderName
    #   [17] 91 01 "S", profileName [18] 92 01 "P" } (BF25 12, 21), smdpSigned2 30 {
    #   transactionId 80 08, ccRequiredFlag BOOLEAN 01 01 00 } (30 0D, 15), smdpSignature2 5F37
    #   (67), smdpCertificate 30 (24), hashCc (Octet32, untagged next to tagged) 04 20 (34) }.
    meta = "BF2512" "5A0A" + ICCID_BCD + "910153" "920150"
    s2 = "300D8008" + TXID + "010100"
    body = "8008" + TXID + meta + s2 + "5F3740" + SIG + CERT2 + "0420" + "CC" * 32
    # 10 + 21 + 15 + 67 + 24 + 34 = 171 (0x81AB); A0 81AB = 174 (0x81AE).
    r = esipa.decode_authenticate_client_response(h("BF3B81AE" "A081AB" + body))
    assert r == {"kind": "authenticateClientOkDPEsipa", "transactionId": h(TXID),
                 "profileMetaData": {"raw": h(meta), "iccid": "89000123456789012341",
                                     "serviceProviderName": "S", "profileName": "P"},
                 "smdpSigned2": h(s2), "smdpSignature2": h("5F3740" + SIG),
                 "smdpCertificate": h(CERT2), "hashCc": b"\xcc" * 32, "ccRequiredFlag": False}
    # Minimal DP: transactionId from smdpSigned2; 15 + 67 + 24 = 106 (0x6A).
    r = esipa.decode_authenticate_client_response(h("BF3B6C" "A06A" + s2 + "5F3740" + SIG + CERT2))
    assert r["transactionId"] == h(TXID) and "hashCc" not in r and "profileMetaData" not in r
    # authenticateClientOkDSEsipa (auto [1]) A1 { transactionId 80 08, profileDownloadTrigger
    #   [84] BF54 04 { A0 02 81 00 } }: 10 + 7 = 17 (0x11).
    r = esipa.decode_authenticate_client_response(h("BF3B13A111 8008" + TXID + "BF5404A0028100"))
    assert r == {"kind": "authenticateClientOkDSEsipa", "transactionId": h(TXID),
                 "profileDownloadTrigger": {"kind": "profileDownloadTriggerRequest",
                                            "raw": h("BF5404A0028100"),
                                            "profileDownloadData": {"contactDefaultSmdp": True}}}
    # authenticateClientErrorEsipa (auto [2]) 82.
    for n in (1, 5, 8, 10, 50, 56, 127):
        e = raises(EimError, esipa.decode_authenticate_client_response, h("BF3B038201%02X" % n))
        assert e.code == n and e.name == esipa.AUTHENTICATE_CLIENT_ERROR[n]
    e = raises(TlvError, esipa.decode_authenticate_client_response,
               h("BF3B54" "A052" + s2 + "5F3740" + SIG))
    assert "smdpCertificate" in str(e)
    e = raises(TlvError, esipa.decode_authenticate_client_response,
               h("BF3B818E" "A0818B" + s2 + "5F3740" + SIG + CERT2 + "041F" + "CC" * 31))
    assert "32-byte hashCc" in str(e)


def test_decode_get_bound_profile_package_response():
    # GetBoundProfilePackageResponseEsipa [58] CHOICE: getBoundProfilePackageOkEsipa (auto [0])
    #   A0 { transactionId [0] 80 08, boundProfilePackage [54] BF36 { BF23 { 80 08 <TXID> } ...
    #   shape only } }.
    bpp = "BF360F" "BF230A8008" + TXID + "A300"  # BF23 0A (13) + A3 00 (2) = 15; 18 bytes
    # A0 { 10 + 18 } = A0 1C (30); BF3A 1E.
    r = esipa.decode_get_bound_profile_package_response(h("BF3A1EA01C 8008" + TXID + bpp))
    assert r == {"transactionId": h(TXID), "boundProfilePackage": h(bpp)}
    # transactionId left out: taken from InitialiseSecureChannelRequest.
    r = esipa.decode_get_bound_profile_package_response(h("BF3A14A012" + bpp))
    assert r["transactionId"] == h(TXID)
    # getBoundProfilePackageErrorEsipa (auto [1]) 81.
    for n in (1, 2, 3, 4, 5, 6, 50, 95, 127):
        e = raises(EimError, esipa.decode_get_bound_profile_package_response, h("BF3A038101%02X"
                                                                                % n))
        assert e.code == n and e.name == esipa.GET_BOUND_PROFILE_PACKAGE_ERROR[n]
    e = raises(TlvError, esipa.decode_get_bound_profile_package_response, h("BF3A0CA00A8008" +
                                                                            TXID))
    assert "boundProfilePackage" in str(e)


def test_decode_cancel_session_response():
    # CancelSessionResponseEsipa [65] CHOICE: cancelSessionOk SEQUENCE {} (auto [0]) A0 00,
    #   cancelSessionError (auto [1]) 81.
    assert esipa.decode_cancel_session_response(h("BF4102A000")) == {"kind": "cancelSessionOk"}
    for n, name in ((1, "invalidTransactionId"), (2, "euiccSignatureInvalid"),
                    (127, "undefinedError")):
        e = raises(EimError, esipa.decode_cancel_session_response, h("BF41038101%02X" % n))
        assert e.code == n and e.name == name and e.function == "ESipa.CancelSession"
    e = raises(ProtocolError, esipa.decode_cancel_session_response, h("BF4103820101"))
    assert "82" in str(e)


def test_decode_eim_message_dispatches_on_the_tag():
    r = esipa.decode_eim_message(h("BF4F03020101"))
    assert r["message"] == "getEimPackageResponse" and r["error"] == "noEimPackageAvailable"
    r = esipa.decode_eim_message(h("BF4E06BF5303800107"))
    assert r["message"] == "transferEimPackageRequest" and r["eimAcknowledgements"] == [7]
    assert esipa.decode_eim_message(h("BF4102A000"))["message"] == "cancelSessionResponseEsipa"
    e = raises(ProtocolError, esipa.decode_eim_message, h("BF3D00"))
    assert "BF3D" in str(e)
    raises(ProtocolError, esipa.decode_eim_message, b"")


def test_signed_objects_pass_through_unchanged():
    # What the eUICC signed reaches the eIM byte for byte, and what the eIM signed reaches
    # the eUICC byte for byte, even when a peer used a non-minimal length encoding.
    epr_long = "BF518158" + EPR[6:]  # the same EPR with a long-form length 81 58
    got = esipa.provide_eim_package_result(euicc_package_result=h(epr_long))
    assert h(epr_long) in got
    req_long = "BF5182" "00BD" + EPREQ[8:]  # length 00BD in two bytes: 5 + 189 = 194
    r = esipa.decode_get_eim_package_response(h("BF4F81C2" + req_long))
    assert r["raw"] == h(req_long)


def test_an_unknown_version_is_refused_everywhere():
    raises(ValueError, esipa.get_eim_package_request, EID, version="0.9")
    raises(ValueError, esipa.provide_eim_package_result, euicc_package_result=h(EPR),
           version="2.0")
    raises(ValueError, esipa.transfer_eim_package_response, h(EPR), version="2.0")
    raises(ValueError, esipa.handle_notification, h(NOTIF), version="2.0")
