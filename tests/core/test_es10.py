"""ipa_core.es10 against byte strings written by hand from the ASN.1 modules.

Requests are compared byte for byte (ScriptedSession asserts them);
answers are hand-built TLVs, including every error code a function names
and malformed answers. Plain functions with assert: pytest on CPython and
tools/mp_test.py on MicroPython both run them.

Tag notes used below (AUTOMATIC TAGS, X.680 25.3): a SEQUENCE whose
components carry no written tag numbers them [0], [1]...; as soon as one
component has a written tag, the others keep their universal tags
(EUICCInfo2 ppVersion '04', NotificationMetadata notificationAddress '0C',
ProfileRollbackResponse cmdResult '02').
"""

from ipa_core import es10, tlv
from ipa_core import es10_signed as sg
from ipa_core import version
from ipa_core.apdu import IsdrSession
from ipa_core.errors import FunctionError, ProtocolError, TlvError

from scripted import ScriptedCard, ScriptedSession, to_bytes as h

EID = "89049032123451234512345678901235"
KEYID = "F54172BDF98A95D65CBEB88A38A1C11D800A85C3"
ICCID = "89000123456789012341"
ICCID_BCD = "98001032547698103214"
SIG = "AB" * 64
EIM1 = "65696D31"  # "eim1"
FQDN = "65696D2E6578616D706C652E636F6D"  # "eim.example.com" (15 bytes)
SMDP = "736D64702E6578616D706C652E636F6D"  # "smdp.example.com" (16 bytes)
TXID = "0102030405060708090A0B0C0D0E0F10"
AID = "A0000005591010FFFFFFFF8900001000"
# A small certificate-shaped SEQUENCE content: tbsCertificate, signatureAlgorithm, signature.
CERT1 = "3003020101" "300A06082A8648CE3D040302" "0303000102"  # 22 bytes
CERT2 = "3003020102" "300A06082A8648CE3D040302" "0303000102"
# SubjectPublicKeyInfo content: algorithm (ecPublicKey, prime256v1), subjectPublicKey.
SPKI = "301306072A8648CE3D020106082A8648CE3D030107" "0304000401 02"  # 27 bytes


def raises(exc, fn, *args, **kw):
    """Call fn and return the `exc` it must raise."""
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def session(*exchanges, **kw):
    return ScriptedSession(list(exchanges), **kw)


def function_error(fn, s, *args):
    e = raises(FunctionError, fn, s, *args)
    s.done()
    return e


# ---- GetEID, over APDUs and over a session ------------------------------------------


def test_get_eid_request_is_bf3e035c015a():
    s = session(("BF3E035C015A", "BF3E125A10" + EID))
    assert es10.get_eid(s) == EID
    s.done()


def test_get_eid_through_isdr_session_apdus():
    card = ScriptedCard([
        ("80AA000005A903830107", "9000"),  # TERMINAL CAPABILITY
        ("0070000001", "01 9000"),  # MANAGE CHANNEL open -> channel 1
        ("01A4040410 A0000005591010FFFFFFFF8900000100 00", "9000"),  # SELECT ISD-R
        ("81E2910006 BF3E035C015A", "BF3E125A10" + EID + "9000"),  # STORE DATA, last block
        ("00708001", "9000"),  # MANAGE CHANNEL close
    ])
    with IsdrSession(card) as s:
        assert es10.get_eid(s) == EID
    card.done()


def test_get_eid_malformed_answers():
    e = raises(ProtocolError, es10.get_eid, session(("BF3E035C015A", "")))
    assert "expected a BF3E response" in str(e)
    e = raises(TlvError, es10.get_eid, session(("BF3E035C015A", "BF3F125A10" + EID)))
    assert "BF3E" in str(e) and "BF3F" in str(e)
    raises(TlvError, es10.get_eid, session(("BF3E035C015A", "BF3E125A10" + EID + "00")))
    raises(TlvError, es10.get_eid, session(("BF3E035C015A", "BF3E125A10" + EID[:-2])))
    e = raises(TlvError, es10.get_eid, session(("BF3E035C015A", "BF3E00")))
    assert "5A" in str(e)
    e = raises(TlvError, es10.get_eid, session(("BF3E035C015A", "BF3E115A0F" + EID[:-2])))
    assert "16-byte" in str(e)


def test_scripted_session_reports_the_first_differing_byte():
    s = session(("BF3E035C015A", "BF3E125A10" + EID))
    e = raises(AssertionError, s.store_data, h("BF3E035C015B"))
    assert "differs at byte 5" in str(e) and "BF3E035C015A" in str(e)
    e = raises(AssertionError, session().store_data, h("BF2000"))
    assert "unexpected ES10 request #1" in str(e)
    e = raises(AssertionError, session(("BF2000", "")).done)
    assert "0 of 1" in str(e)


# ---- EUICCInfo1 / EUICCInfo2 -----------------------------------------------------


def test_get_euicc_info1():
    rsp = "BF2035" "8203020200" "A916" "0414" + KEYID + "AA16" "0414" + KEYID
    s = session(("BF2000", rsp))
    info = es10.get_euicc_info1(s)
    s.done()
    assert info["svn"] == "2.2.0"
    assert info["euiccCiPKIdListForVerification"] == [KEYID]
    assert info["euiccCiPKIdListForSigning"] == [KEYID]
    assert info["raw"] == h(rsp)


INFO2 = ("BF226E"
         "8103020300" "8203020300" "8303010203" "8403810100"
         "850301" "4002"  # uiccCapability: usimSupport(1), javacard(14)
         "880205A0"  # rspCapability: additionalProfile(0), rpmSupport(2)
         "A9160414" + KEYID + "AA160414" + KEYID +
         "8B0102"  # euiccCategory mediumEuicc
         "0403000001"  # ppVersion: untagged next to tagged components -> universal 04
         "0C055341533031"  # sasAcreditationNumber "SAS01" -> universal 0C
         "900100"  # ipaMode [16] ipad
         "B409" "A005" "0403010200" "8100"  # iotSpecificInfo [20] {iotVersion {1.2.0}, ecall}
         "9F7F0100")  # an unknown extension component: ignored


def test_get_euicc_info2_with_iot_fields():
    s = session(("BF2200", INFO2))
    info = es10.get_euicc_info2(s)
    s.done()
    assert info["profileVersion"] == "2.3.0" and info["svn"] == "2.3.0"
    assert info["euiccFirmwareVer"] == "1.2.3"
    assert info["extCardResource"] == h("810100")
    assert info["uiccCapability"] == ["usimSupport", "javacard"]
    assert info["rspCapability"] == ["additionalProfile", "rpmSupport"]
    assert info["euiccCiPKIdListForSigning"] == [KEYID]
    assert info["euiccCategory"] == 2
    assert info["ppVersion"] == "0.0.1"
    assert info["sasAcreditationNumber"] == "SAS01"
    assert info["ipaMode"] == 0
    assert info["iotSpecificInfo"] == {"iotVersion": ["1.2.0"], "ecallSupported": True,
                                       "fallbackSupported": False}
    assert "ts102241Version" not in info
    assert info["raw"] == h(INFO2)


def test_get_euicc_info2_missing_svn_is_an_error():
    e = raises(TlvError, es10.get_euicc_info2, session(("BF2200", "BF220A" "8103020300"
                                                                  "8303010203")))
    assert "svn" in str(e)


# ---- GetCerts ------------------------------------------------------------------------


def test_get_certs_implicit_tags_give_x509_der():
    rsp = "BF5632" "A030" "A516" + CERT1 + "A616" + CERT2
    s = session(("BF5600", rsp))
    c = es10.get_certs(s)
    s.done()
    assert c["eumCertificate"] == h("3016" + CERT1)
    assert c["euiccCertificate"] == h("3016" + CERT2)


def test_get_certs_wrapped_certificates_and_ci_filter():
    rsp = "BF5636" "A034" "A518" "3016" + CERT1 + "A618" "3016" + CERT2
    s = session(("BF5616" "8014" + KEYID, rsp))
    c = es10.get_certs(s, KEYID)
    s.done()
    assert c["eumCertificate"] == h("3016" + CERT1)
    assert c["euiccCertificate"] == h("3016" + CERT2)


def test_get_certs_errors():
    e = function_error(es10.get_certs, session(("BF5600", "BF5603810101")))
    assert (e.function, e.code, e.name) == ("ES10b.GetCerts", 1, "invalidCiPKId")
    e = function_error(es10.get_certs, session(("BF5600", "BF560381017F")))
    assert e.name == "undefinedError"
    raises(TlvError, es10.get_certs, session(("BF5600", "BF561AA018A516" + CERT1)))


# ---- eIM configuration ------------------------------------------------------------------

EIM_CONFIG_1 = ("305B"
                "8004" + EIM1 + "810F" + FQDN +
                "820102"  # eimIdType eimIdTypeFqdn
                "830105" "840107"  # counterValue 5, associationToken 7
                "A51D" "A01B" + SPKI +  # eimPublicKeyData [5] { eimPublicKey [0] IMPLICIT }
                "870206C0"  # eimRetrieveHttps, eimRetrieveCoaps
                "8814" + KEYID +
                "8900")  # indirectProfileDownload
EIM_CONFIG_2 = "3006" "8004" "65696D32"


def test_get_eim_configuration_data_requests():
    s = session(("BF5500", "BF5502A000"),
                ("BF5508" "A006" "8004" + EIM1, "BF5502A000"))
    assert es10.get_eim_configuration_data(s) == []
    assert es10.get_eim_configuration_data(s, "eim1") == []
    s.done()


def test_get_eim_configuration_data_decodes_every_field():
    s = session(("BF5500", "BF5567" "A065" + EIM_CONFIG_1 + EIM_CONFIG_2))
    eims = es10.get_eim_configuration_data(s)
    s.done()
    assert len(eims) == 2
    e = eims[0]
    assert e["eimId"] == "eim1" and e["eimFqdn"] == "eim.example.com"
    assert e["eimIdType"] == 2 and e["counterValue"] == 5 and e["associationToken"] == 7
    assert e["eimPublicKeyData"] == {"eimPublicKey": h("301B" + SPKI)}
    assert e["eimSupportedProtocol"] == ["eimRetrieveHttps", "eimRetrieveCoaps"]
    assert e["euiccCiPKId"] == KEYID
    assert e["indirectProfileDownload"] is True
    assert eims[1] == {"eimId": "eim2", "indirectProfileDownload": False}


def test_eim_key_data_certificate_and_untagged_forms():
    cert_tls = "A618" "A116" + CERT1  # trustedPublicKeyDataTls [6] { trustedCertificateTls [1] }
    wrapped = "A51D" "301B" + SPKI  # eimPublicKeyData with the SPKI not re-tagged
    cfg = "303F" "8004" + EIM1 + wrapped + cert_tls
    e = es10.get_eim_configuration_data(session(("BF5500", "BF5543A041" + cfg)))[0]
    assert e["eimPublicKeyData"] == {"eimPublicKey": h("301B" + SPKI)}
    assert e["trustedPublicKeyDataTls"] == {"trustedCertificateTls": h("3016" + CERT1)}
    # Encoding always follows X.680: the alternative's [0]/[1] replaces the SEQUENCE tag.
    assert es10.encode_eim_configuration_data(e) == h(
        "303F" "8004" + EIM1 + "A51D" "A01B" + SPKI + cert_tls)


def test_add_initial_eim_request_and_answers():
    eim = {"eimId": "eim1", "eimFqdn": "eim.example.com", "counterValue": 5,
           "eimPublicKeyData": {"eimPublicKey": h("301B" + SPKI)},
           "eimSupportedProtocol": ["eimRetrieveHttps"]}
    req = ("BF5741" "A03F" "303D"
           "8004" + EIM1 + "810F" + FQDN + "830105" "A51D" "A01B" + SPKI + "87020780")
    s = session((req, "BF5705A003840101"), (req, "BF5704A0020500"))
    assert es10.add_initial_eim(s, [eim]) == [{"associationToken": 1}]
    assert es10.add_initial_eim(s, [eim]) == [{"addOk": True}]
    s.done()
    for code, name in ((1, "insufficientMemory"), (2, "associatedEimAlreadyExists"),
                       (3, "ciPKUnknown"), (5, "invalidAssociationToken"),
                       (6, "counterValueOutOfRange"), (7, "commandError"),
                       (127, "undefinedError")):
        e = function_error(es10.add_initial_eim,
                           session((req, "BF57038101%02X" % code)), [eim])
        assert (e.function, e.code, e.name) == ("ES10b.AddInitialEim", code, name)


def test_encode_eim_configuration_round_trips_through_the_decoder():
    d = es10.get_eim_configuration_data(session(("BF5500", "BF5567A065" + EIM_CONFIG_1 +
                                                 EIM_CONFIG_2)))[0]
    assert es10.encode_eim_configuration_data(d) == h(EIM_CONFIG_1)


# ---- LoadEuiccPackage and EuiccPackageResult --------------------------------------

EPR_REQUEST = ("BF5176"
               "3031"  # euiccPackageSigned
               "8004" + EIM1 + "5A10" + EID + "810106" "82021234"
               "A010" "A30E" "5A0A" + ICCID_BCD + "0500"  # psmoList { enable { iccid, rollback } }
               "5F3740" + SIG)
EPR_DATA = "3015" "8004" + EIM1 + "810106" "82021234" "83010A" "3003830100"
EPR_SIGNED = "BF515C" "A05A" + EPR_DATA + "5F3740" + SIG


def test_load_euicc_package_forwards_the_request_verbatim():
    s = session((EPR_REQUEST, EPR_SIGNED))
    r = es10.load_euicc_package(s, h(EPR_REQUEST))
    s.done()
    assert s.sent == [h(EPR_REQUEST)]
    assert r["kind"] == "euiccPackageResultSigned"
    assert r["raw"] == h(EPR_SIGNED)
    assert r["signedData"] == h(EPR_DATA)
    assert r["eimId"] == "eim1" and r["counterValue"] == 6 and r["seqNumber"] == 10
    assert r["eimTransactionId"] == h("1234")
    assert r["euiccResult"] == [{"enableResult": 0}]
    assert r["euiccSignEPR"] == h(SIG)
    assert "error" not in r


def test_load_euicc_package_refuses_what_is_not_one_bf51():
    s = session()
    raises(ProtocolError, es10.load_euicc_package, s, h("BF5200"))
    raises(TlvError, es10.load_euicc_package, s, h(EPR_REQUEST + "00"))
    assert s.sent == []


def test_euicc_package_error_signed_every_code_is_returned_not_raised():
    for code, name in ((3, "invalidEid"), (4, "replayError"), (6, "counterValueOutOfRange"),
                       (15, "sizeOverflow"), (104, "ecallActive"), (127, "undefinedError")):
        data = "300C" "8004" + EIM1 + "810106" "0201%02X" % code
        rsp = "BF5153" "A151" + data + "5F3740" + SIG
        s = session((EPR_REQUEST, rsp))
        r = es10.load_euicc_package(s, h(EPR_REQUEST))
        s.done()
        assert r["kind"] == "euiccPackageErrorSigned"
        assert r["euiccPackageErrorCode"] == code and r["error"] == name
        assert r["raw"] == h(rsp) and r["signedData"] == h(data)
        assert r["euiccSignEPE"] == h(SIG)


def test_euicc_package_error_unsigned():
    rsp = "BF510E" "A20C" "8004" + EIM1 + "820101" "840107"
    r = es10.load_euicc_package(session((EPR_REQUEST, rsp)), h(EPR_REQUEST))
    assert r == {"raw": h(rsp), "kind": "euiccPackageErrorUnsigned", "eimId": "eim1",
                 "eimTransactionId": b"\x01", "associationToken": 7,
                 "error": "euiccPackageErrorUnsigned"}


def test_euicc_package_result_without_alternative_tag_is_tolerated():
    rsp = "BF515A" + EPR_DATA + "5F3740" + SIG
    r = es10.load_euicc_package(session((EPR_REQUEST, rsp)), h(EPR_REQUEST))
    assert r["kind"] == "euiccPackageResultSigned" and r["seqNumber"] == 10
    assert r["raw"] == h(rsp)


def test_euicc_package_result_malformed():
    e = raises(TlvError, es10.load_euicc_package,
               session((EPR_REQUEST, "BF5102A500")), h(EPR_REQUEST))
    assert "A0, A1 or A2" in str(e)
    no_seq = "BF5155" "A053" "300E" "8004" + EIM1 + "810106" "3003830100" "5F3740" + SIG
    e = raises(TlvError, es10.load_euicc_package, session((EPR_REQUEST, no_seq)),
               h(EPR_REQUEST))
    assert "seqNumber" in str(e)
    raises(TlvError, es10.load_euicc_package, session((EPR_REQUEST, "BF5100")), h(EPR_REQUEST))


def test_euicc_result_data_every_alternative():
    results = [
        tlv.encode(0x83, b"\x00"),  # enableResult ok
        tlv.encode(0x84, b"\x02"),  # disableResult profileNotInEnabledState
        tlv.encode(0x85, b"\x15"),  # deleteResult returnFallbackProfile
        h("BF2D14" "A012" "E310" "5A0A" + ICCID_BCD + "9F700101"),  # listProfileInfoResult
        h("A613" "3011" "80020640" "A1073005800321F354" "82020780"),  # getRATResult
        tlv.encode(0x87, b"\x07"),
        h("A803840103"),  # addEimResult associationToken 3
        h("A803020106"),  # addEimResult counterValueOutOfRange
        tlv.encode(0x89, b"\x02"), tlv.encode(0x8A, b"\x01"),
        h("AB0DA00B30098004" + EIM1 + "820101"),  # listEimResult eimIdList
        tlv.encode(0x8C, b"\x00"), tlv.encode(0x8D, b"\x02"), tlv.encode(0x8E, b"\x03"),
        h("020101"),  # processingTerminated resultSizeOverflow (universal INTEGER)
        h("BF6503800100"),  # setDefaultDpAddressResult ok
        h("9F500100"),  # unknown extension alternative
    ]
    data = tlv.enc(0x30, h("8004" + EIM1 + "810106" "830101"), tlv.enc(0x30, *results))
    rsp = tlv.enc(0xBF51, tlv.enc(0xA0, data, h("5F3740" + SIG)))
    r = es10.load_euicc_package(session((EPR_REQUEST, rsp)), h(EPR_REQUEST))
    er = r["euiccResult"]
    assert er[0] == {"enableResult": 0} and er[1] == {"disableResult": 2}
    assert er[2] == {"deleteResult": 21}
    assert er[3] == {"listProfileInfoResult": {"profileInfoListOk": [
        {"iccid": ICCID, "profileState": 1, "fallbackAttribute": False}]}}
    assert er[4] == {"getRATResult": [{"pprIds": ["ppr1"],
                                       "allowedOperators": [{"mccMnc": "21F354"}],
                                       "pprFlags": ["consentRequired"]}]}
    assert er[5] == {"configureImmediateEnableResult": 7}
    assert er[6] == {"addEimResult": {"associationToken": 3}}
    assert er[7] == {"addEimResult": {"addEimResultCode": 6}}
    assert er[8] == {"deleteEimResult": 2} and er[9] == {"updateEimResult": 1}
    assert er[10] == {"listEimResult": {"eimIdList": [{"eimId": "eim1", "eimIdType": 1}]}}
    assert er[11] == {"rollbackResult": 0}
    assert er[12] == {"setFallbackAttributeResult": 2}
    assert er[13] == {"unsetFallbackAttributeResult": 3}
    assert er[14] == {"processingTerminated": 1}
    assert er[15] == {"setDefaultDpAddressResult": 0}
    assert er[16] == {"unknownTag": 0x9F50, "raw": h("9F500100")}
    sums = [sg.result_summary(x) for x in er]
    assert sums[1] == ("disableResult", 2, "profileNotInEnabledState")
    assert sums[2] == ("deleteResult", 21, "returnFallbackProfile")
    assert sums[3] == ("listProfileInfoResult", 0, "ok")
    assert sums[6] == ("addEimResult", 0, "ok")
    assert sums[7] == ("addEimResult", 6, "counterValueOutOfRange")
    assert sums[14] == ("processingTerminated", 1, "resultSizeOverflow")
    assert sums[16] == ("unknown", None, "unknown")


# ---- notifications ---------------------------------------------------------------------

METADATA_INSTALL = ("BF2F25" "800105" "81020780" "0C10" + SMDP + "5A0A" + ICCID_BCD)
PIR = ("BF3781A6"
       "BF2760"
       "8010" + TXID + METADATA_INSTALL +
       "0603883701"  # smdpOid 2.999.1
       "A21F" "A01D" "4F10" + AID + "0409" "3007A00530038001 00"
       "5F3740" + SIG)
OTHER = ("30819B"
         "BF2F25" "800106" "81020410" "0C10" + SMDP + "5A0A" + ICCID_BCD +
         "5F3740" + SIG + "3016" + CERT1 + "3016" + CERT2)


def test_retrieve_notifications_list_requests_for_each_criterion():
    s = session(("BF2B00", "BF2B02A000"),
                ("BF2B05" "A003" "800105", "BF2B02A000"),
                ("BF2B06" "A004" "8002012C", "BF2B02A000"),
                ("BF2B06" "A004" "81020780", "BF2B02A000"),
                ("BF2B06" "A004" "81020640", "BF2B02A000"),
                ("BF2B04" "A002" "8200", "BF2B02A200"))
    assert es10.retrieve_notifications_list(s) == []
    assert es10.retrieve_notifications_list(s, seq_number=5) == []
    assert es10.retrieve_notifications_list(s, seq_number=300) == []
    assert es10.retrieve_notifications_list(s, profile_management_operation="notificationInstall") == []
    assert es10.retrieve_notifications_list(s, profile_management_operation=["notificationEnable"]) == []
    assert es10.retrieve_notifications_list(s, euicc_package_results=True) == []
    s.done()
    raises(ValueError, es10.retrieve_notifications_list, session(), seq_number=1,
           euicc_package_results=True)


def test_retrieve_notifications_list_decodes_and_keeps_raw():
    rsp = "BF2B82014C" "A0820148" + PIR + OTHER
    s = session(("BF2B00", rsp))
    items = es10.retrieve_notifications_list(s)
    s.done()
    pir, other = items
    assert pir["kind"] == "profileInstallationResult" and pir["raw"] == h(PIR)
    assert pir["seqNumber"] == 5 and pir["iccid"] == ICCID
    assert pir["profileManagementOperation"] == ["notificationInstall"]
    assert pir["notificationAddress"] == "smdp.example.com"
    assert pir["transactionId"] == h(TXID) and pir["smdpOid"] == "2.999.1"
    assert pir["finalResult"] == {"successResult": {"aid": AID,
                                                    "simaResponse": h("3007A005300380010 0")}}
    assert "error" not in pir
    assert other["kind"] == "otherSignedNotification" and other["raw"] == h(OTHER)
    assert other["seqNumber"] == 6 and other["profileManagementOperation"] == [
        "notificationDelete"]


def test_retrieve_notifications_list_euicc_package_results():
    err = "BF5153" "A151" "300C" "8004" + EIM1 + "810106" "020104" "5F3740" + SIG
    rsp = "BF2B81B8" "A281B5" + EPR_SIGNED + err
    items = es10.retrieve_notifications_list(session(("BF2B04A0028200", rsp)),
                                             euicc_package_results=True)
    assert [i["kind"] for i in items] == ["euiccPackageResultSigned", "euiccPackageErrorSigned"]
    assert items[0]["raw"] == h(EPR_SIGNED) and items[0]["seqNumber"] == 10
    assert items[1]["raw"] == h(err) and items[1]["error"] == "replayError"


def test_retrieve_notifications_list_error_and_garbage():
    e = function_error(es10.retrieve_notifications_list, session(("BF2B00", "BF2B0381017F")))
    assert (e.function, e.code, e.name) == ("ES10b.RetrieveNotificationsList", 127,
                                            "undefinedError")
    e = raises(TlvError, es10.retrieve_notifications_list, session(("BF2B00", "BF2B04A0020400")))
    assert "PendingNotification" in str(e)


def test_compact_notifications():
    # compactProfileInstallationResult [0] { [0] { transactionId, seqNumber 02, compactFinalResult
    # [2] { compactSuccessResult [0] { compactAid '4F' } } }, euiccSignPIR }
    data = "8010" + TXID + "020107" "A206" "A004" "4F021000"
    cpir = "A0" + "%02X" % (2 + len(data) // 2 + 67) + "A0%02X" % (len(data) // 2) + data + \
        "5F3740" + SIG
    n = es10.retrieve_notifications_list(session(("BF2B00", tlv.enc(0xBF2B, tlv.enc(
        0xA0, h(cpir))))))[0]
    assert n["kind"] == "compactProfileInstallationResult" and n["seqNumber"] == 7
    assert n["iccidPresent"] is True and n["raw"] == h(cpir)
    assert n["finalResult"] == {"compactSuccessResult": {"compactAid": "1000"}}


def test_list_notification():
    s = session(("BF2800", "BF282A" "A028" + METADATA_INSTALL),
                ("BF2804" "81020780", "BF2802A000"))
    assert es10.list_notification(s) == [{
        "seqNumber": 5, "profileManagementOperation": ["notificationInstall"],
        "notificationAddress": "smdp.example.com", "iccid": ICCID}]
    assert es10.list_notification(s, "notificationInstall") == []
    s.done()
    e = function_error(es10.list_notification, session(("BF2800", "BF280381017F")))
    assert (e.function, e.code, e.name) == ("ES10b.ListNotification", 127, "undefinedError")


def test_remove_notification_from_list():
    s = session(("BF3003800105", "BF3003800100"), ("BF3003800105", "BF3003800101"))
    assert es10.remove_notification_from_list(s, 5) == 0
    assert es10.remove_notification_from_list(s, 5) == 1  # nothingToDelete: already gone
    s.done()
    e = function_error(es10.remove_notification_from_list,
                       session(("BF300480020100", "BF300380017F")), 256)
    assert (e.function, e.code, e.name) == ("ES10b.RemoveNotificationFromList", 127,
                                            "undefinedError")


# ---- GetProfilesInfo --------------------------------------------------------------------

PROFILE = ("E3" "67"
           "5A0A" + ICCID_BCD + "4F10" + AID + "9F700101"
           "900474657374"  # profileNickname "test"
           "910441434D45"  # serviceProviderName "ACME"
           "9203414243"  # profileName "ABC"
           "950102"
           "B618" "3016" "80020780" "8110" + SMDP +  # notificationConfigurationInfo
           "B705800321F354"  # profileOwner mccMnc
           "99020640"  # profilePolicyRules ppr1
           "9F2601FF" "9F6701FF" "9F7B0100")


def test_get_profiles_info_requests():
    s = session(("BF2D00", "BF2D02A000"),
                ("BF2D0E" "A00C" "5A0A" + ICCID_BCD, "BF2D02A000"),
                ("BF2D14" "A012" "4F10" + AID, "BF2D02A000"),
                ("BF2D05" "A003" "950102", "BF2D02A000"),
                ("BF2D06" "5C04" "5A9F7095", "BF2D02A000"),
                ("BF2D14" "A00C" "5A0A" + ICCID_BCD + "5C04" "5A9F7095", "BF2D02A000"))
    assert es10.get_profiles_info(s) == []
    assert es10.get_profiles_info(s, {"iccid": ICCID}) == []
    assert es10.get_profiles_info(s, {"isdpAid": AID}) == []
    assert es10.get_profiles_info(s, {"profileClass": "operational"}) == []
    assert es10.get_profiles_info(s, tags=[0x5A, 0x9F70, 0x95]) == []
    assert es10.get_profiles_info(s, {"iccid": ICCID}, h("5A9F7095")) == []
    s.done()


def test_get_profiles_info_decodes_sgp32_profile_info():
    s = session(("BF2D00", "BF2D6B" "A069" + PROFILE))
    p = es10.get_profiles_info(s)[0]
    s.done()
    assert p == {
        "iccid": ICCID, "isdpAid": AID, "profileState": 1, "profileNickname": "test",
        "serviceProviderName": "ACME", "profileName": "ABC", "profileClass": 2,
        "notificationConfigurationInfo": [{"profileManagementOperation": ["notificationInstall"],
                                           "notificationAddress": "smdp.example.com"}],
        "profileOwner": {"mccMnc": "21F354"}, "profilePolicyRules": ["ppr1"],
        "fallbackAttribute": True, "fallbackAllowed": True, "ecallIndication": False}


def test_get_profiles_info_errors():
    for code, name in ((1, "incorrectInputValues"), (11, "profileChangeOngoing"),
                       (127, "undefinedError")):
        e = function_error(es10.get_profiles_info,
                           session(("BF2D00", "BF2D038101%02X" % code)))
        assert (e.function, e.code, e.name) == ("ES10c.GetProfilesInfo", code, name)
    raises(ValueError, es10.get_profiles_info, session(), {"iccid": "89A"})


# ---- profile state functions with refreshFlag ------------------------------------------


def test_profile_rollback_returns_the_new_result():
    s = session(("BF580380 01FF", "BF5862" "020100" + EPR_SIGNED))
    r = es10.profile_rollback(s, True)
    s.done()
    assert r["kind"] == "euiccPackageResultSigned" and r["raw"] == h(EPR_SIGNED)
    assert es10.profile_rollback(session(("BF5803800100", "BF5803020100")), False) is None
    assert es10.profile_rollback(session(("BF5803800100", "BF5803800100")), False) is None
    for code, name in ((1, "rollbackNotAllowed"), (5, "catBusy"), (7, "commandError"),
                       (127, "undefinedError")):
        e = function_error(es10.profile_rollback,
                           session(("BF580380 01FF", "BF58030201%02X" % code)), True)
        assert (e.function, e.code, e.name) == ("ES10b.ProfileRollback", code, name)


def check_refresh_function(fn, tag, name, codes):
    s = session((tag + "038001FF", tag + "03800100"), (tag + "03800100", tag + "03800100"))
    assert fn(s, True) is None
    assert fn(s, False) is None
    s.done()
    for code, cname in codes:
        e = function_error(fn, session((tag + "038001FF", tag + "038001%02X" % code)), True)
        assert (e.function, e.code, e.name) == (name, code, cname), (e.function, e.code, e.name)


def test_immediate_enable():
    check_refresh_function(es10.immediate_enable, "BF5A", "ES10b.ImmediateEnable",
                           ((1, "immediateEnableNotAvailable"), (4, "noSessionContext"),
                            (5, "catBusy"), (127, "undefinedError")))


def test_enable_emergency_profile():
    check_refresh_function(es10.enable_emergency_profile, "BF5B",
                           "ES10b.EnableEmergencyProfile",
                           ((2, "profileNotInDisabledState"), (5, "catBusy"),
                            (8, "ecallNotAvailable"), (127, "undefinedError")))


def test_disable_emergency_profile():
    check_refresh_function(es10.disable_emergency_profile, "BF5C",
                           "ES10b.DisableEmergencyProfile",
                           ((2, "profileNotInEnabledState"), (5, "catBusy"),
                            (127, "undefinedError")))


def test_execute_fallback_mechanism():
    check_refresh_function(es10.execute_fallback_mechanism, "BF5D",
                           "ES10b.ExecuteFallbackMechanism",
                           ((2, "profileNotInDisabledState"), (5, "catBusy"),
                            (6, "fallbackNotAvailable"), (7, "commandError"),
                            (104, "ecallActive"), (127, "undefinedError")))


def test_return_from_fallback():
    check_refresh_function(es10.return_from_fallback, "BF5E", "ES10b.ReturnFromFallback",
                           ((5, "catBusy"), (6, "fallbackNotAvailable"), (7, "commandError"),
                            (127, "undefinedError")))


def test_configure_immediate_profile_enabling():
    req = "BF5919" "8000" "8103883701" "8210" + SMDP
    s = session((req, "BF5903800100"), ("BF5900", "BF5903800100"))
    es10.configure_immediate_profile_enabling(s, True, "2.999.1", "smdp.example.com")
    es10.configure_immediate_profile_enabling(s)
    s.done()
    for code, name in ((1, "insufficientMemory"), (2, "associatedEimAlreadyExists"),
                       (127, "undefinedError")):
        e = function_error(es10.configure_immediate_profile_enabling,
                           session(("BF5900", "BF59038001%02X" % code)))
        assert (e.code, e.name) == (code, name)


# ---- addresses, RAT, connectivity, challenge, memory reset ---------------------------


def test_get_euicc_configured_addresses():
    ds = "6C70612E64732E67736D612E636F6D"  # "lpa.ds.gsma.com"
    s = session(("BF3C00", "BF3C23" "8010" + SMDP + "810F" + ds),
                ("BF3C00", "BF3C11" "810F" + ds))
    assert es10.get_euicc_configured_addresses(s) == {"defaultDpAddress": "smdp.example.com",
                                                      "rootDsAddress": "lpa.ds.gsma.com"}
    assert es10.get_euicc_configured_addresses(s) == {"rootDsAddress": "lpa.ds.gsma.com"}
    s.done()


def test_set_default_dp_address():
    s = session(("BF6512" "8010" + SMDP, "BF6503800100"))
    es10.set_default_dp_address(s, "smdp.example.com")
    s.done()
    e = function_error(es10.set_default_dp_address,
                       session(("BF6512" "8010" + SMDP, "BF650380017F")), "smdp.example.com")
    assert (e.function, e.code, e.name) == ("ES10a.SetDefaultDpAddress", 127, "undefinedError")


def test_get_rat():
    s = session(("BF4300", "BF4315" "A013" "3011" "80020640" "A1073005800321F354" "82020780"))
    assert es10.get_rat(s) == [{"pprIds": ["ppr1"], "allowedOperators": [{"mccMnc": "21F354"}],
                                "pprFlags": ["consentRequired"]}]
    s.done()


def test_get_connectivity_parameters():
    s = session(("BF5F00", "BF5F07A005810301 0203"), ("BF5F00", "BF5F02A000"))
    assert es10.get_connectivity_parameters(s) == {"httpParams": h("010203")}
    assert es10.get_connectivity_parameters(s) == {}
    s.done()
    for code, name in ((1, "parametersNotAvailable"), (127, "undefinedError")):
        e = function_error(es10.get_connectivity_parameters,
                           session(("BF5F00", "BF5F038101%02X" % code)))
        assert (e.function, e.code, e.name) == ("ES10b.GetConnectivityParameters", code, name)


def test_get_euicc_challenge():
    s = session(("BF2E00", "BF2E128010" + TXID))
    assert es10.get_euicc_challenge(s) == h(TXID)
    s.done()
    raises(TlvError, es10.get_euicc_challenge, session(("BF2E00", "BF2E038001AA")))


def test_euicc_memory_reset_v12_and_v10_tags():
    opts = ["deleteOperationalProfiles", "resetEimConfigData"]  # bits 0 and 5: 02 84
    s = session(("BF6404" "82020284", "BF6409" "800100" "810100" "820101"))
    assert es10.euicc_memory_reset(s, opts) == {"resetResult": 0, "resetEimResult": 0,
                                                "resetImmediateEnableConfigResult": 1}
    s.done()
    # v1.0 SGP32-EuiccMemoryResetRequest [52]: resetEimConfigData is bit 3 (02 04 90);
    # its resetResult is untagged next to tagged siblings: universal 02.
    s = session(("BF3404" "82020490", "BF3403020101"), version="1.0")
    assert es10.euicc_memory_reset(s, opts) == {"resetResult": 1}  # nothingToDelete
    s.done()
    s = session(("BF3404" "82020388", "BF3406020100820100"), version="1.0")
    assert es10.euicc_memory_reset(s, ["deleteOperationalProfiles", "resetImmediateEnableConfig"]
                                   ) == {"resetResult": 0, "resetImmediateEnableConfigResult": 0}
    s.done()
    raises(ValueError, es10.euicc_memory_reset, session(version="1.0"),
           ["deleteProvisioningProfiles"])
    for code, name in ((5, "catBusy"), (104, "ecallActive"), (127, "undefinedError")):
        e = function_error(es10.euicc_memory_reset,
                           session(("BF6404" "82020284", "BF64038001%02X" % code)), opts)
        assert (e.function, e.code, e.name) == ("ES10c.EuiccMemoryReset", code, name)


# ---- download functions ---------------------------------------------------------------


def test_cancel_session():
    req = "BF4115" "8010" + TXID + "810101"
    ok = "BF4161" "A05F" "301A" "8010" + TXID + "8103883701" "820101" "5F3740" + SIG
    s = session((req, ok))
    r = es10.cancel_session(s, h(TXID), "postponed")
    s.done()
    assert r == {"raw": h(ok), "kind": "cancelSessionResponseOk", "transactionId": h(TXID),
                 "smdpOid": "2.999.1", "reason": 1}
    for code, name in ((5, "invalidTransactionId"), (127, "undefinedError")):
        e = function_error(es10.cancel_session,
                           session((req, "BF41038101%02X" % code)), TXID, 1)
        assert (e.function, e.code, e.name) == ("ES10b.CancelSession", code, name)


def test_encode_ctx_params1():
    ctx = es10.encode_ctx_params1("ABC", "35290611",
                                  {"eutranEpcSupportedRelease": "15.0.0"})
    assert ctx == h("A014" "8003414243" "A10D" "800435290611" "A105" "85030F0000")


def test_authenticate_server_forwards_tlvs_and_returns_errors():
    ss1 = "3006" "800101" "830100"
    sig = "5F3740" + SIG
    ci = "0414" + KEYID
    cert = "3016" + CERT1
    ctx = "A014" "8003414243" "A10D" "800435290611" "A105" "85030F0000"
    body = ss1 + sig + ci + cert + ctx
    req = "BF38818F" + body
    assert len(body) // 2 == 0x8F
    err = "BF3817" "A115" "8010" + TXID + "020106"
    ok = "BF385B" "A059" "3012" "8010" + TXID + "5F3740" + SIG + "3000"
    s = session((req, err), (req, ok))
    r = es10.authenticate_server(s, h(ss1), h(sig), h(ci), h(cert), h(ctx))
    assert r == {"raw": h(err), "kind": "authenticateResponseError", "transactionId": h(TXID),
                 "authenticateErrorCode": 6, "error": "euiccChallengeMismatch"}
    r = es10.authenticate_server(s, h(ss1), h(sig), h(ci), h(cert), h(ctx))
    assert r == {"raw": h(ok), "kind": "authenticateResponseOk", "transactionId": h(TXID)}
    s.done()
    raises(ProtocolError, es10.authenticate_server, session(), h(ss1), h(ci), h(ci), h(cert),
           h(ctx))


def test_prepare_download():
    signed2 = "3015" "8010" + TXID + "010100"
    hcc = "11" * 32
    body = signed2 + "5F3740" + SIG + "0420" + hcc + "3016" + CERT1
    req = "BF2181" + "%02X" % (len(body) // 2) + body
    err = "BF2117" "A115" "8010" + TXID + "020105"
    s = session((req, err))
    r = es10.prepare_download(s, h(signed2), h("5F3740" + SIG), h("3016" + CERT1), h(hcc))
    s.done()
    assert r["kind"] == "downloadResponseError" and r["error"] == "invalidTransactionId"
    assert r["raw"] == h(err) and r["downloadErrorCode"] == 5


BPP = ("BF3620" "BF2303820101" "A00487020102" "A107" "88020304" "880105"
       "A309" "8603060708" "8602090A")
PIR_FAIL = ("BF3781A6" "BF2760" "8010" + TXID + METADATA_INSTALL + "0603883701"
            "A21F" "A11D" "800101" "810102" "8215" + "00" * 21 + "5F3740" + SIG)


def test_load_bound_profile_package_segments():
    segments = ["BF3620BF2303820101", "A00487020102", "A107", "88020304", "880105", "A309",
                "8603060708", "8602090A"]
    script = [(x, "") for x in segments[:-1]] + [(segments[-1], PIR)]
    s = session(*script)
    r = es10.load_bound_profile_package(s, h(BPP))
    s.done()
    assert r["raw"] == h(PIR) and "error" not in r and r["seqNumber"] == 5


def test_load_bound_profile_package_stops_at_an_early_result():
    s = session(("BF3620BF2303820101", ""), ("A00487020102", PIR_FAIL))
    r = es10.load_bound_profile_package(s, h(BPP))
    s.done()
    assert r["error"] == "invalidSignature"
    assert r["finalResult"]["errorResult"]["bppCommandId"] == 1
    assert r["raw"] == h(PIR_FAIL)


def test_load_bound_profile_package_checks_before_sending():
    s = session()
    raises(ProtocolError, es10.load_bound_profile_package, s,
           h("BF3610" "BF2303820101" "A00487020102" "A100"))  # no A3
    raises(ProtocolError, es10.load_bound_profile_package, s, h("BF3606A004870201 02"))
    raises(ProtocolError, es10.load_bound_profile_package, s,
           h("BF360F" "BF2303820101" "A100" "A000" "A303860100"))  # A1 before A0
    raises(ProtocolError, es10.load_bound_profile_package, s,
           h("BF360F" "BF2303820101" "A000" "A100" "A303870100"))  # 87 in A3
    assert s.sent == []
    s = session(*[(x, "") for x in ["BF3620BF2303820101", "A00487020102", "A107", "88020304",
                                     "880105", "A309", "8603060708", "8602090A"]])
    e = raises(ProtocolError, es10.load_bound_profile_package, s, h(BPP))
    assert "no ProfileInstallationResult" in str(e)


# ---- version table ---------------------------------------------------------------------


def test_version_table():
    assert version.tag("EuiccMemoryReset", "1.0") == 0xBF34
    assert version.tag("EuiccMemoryReset", "1.1") == 0xBF64
    assert version.tag("EuiccMemoryReset", "v1.2.0") == 0xBF64
    assert version.tag("GetEimPackageRequest.stateChangeCause", "1.0") is None
    assert version.tag("GetEimPackageRequest.stateChangeCause", "1.2") == 0x81
    assert version.tag("HandleNotificationEsipa.provideEimPackageResult") == 0xBF50
    assert version.of(object()) == "1.2"
    raises(ValueError, version.norm, "2.0")
    raises(KeyError, version.tag, "NoSuchThing")


def test_signed_bytes_appends_the_association_token_from_v11():
    data = h(EPR_DATA)
    assert version.signed_bytes(data) == data + h("840100")
    assert version.signed_bytes(data, 7, "1.2") == data + h("840107")
    assert version.signed_bytes(data, 300, "1.1") == data + h("8402012C")
    assert version.signed_bytes(data, 7, "1.0") == data
