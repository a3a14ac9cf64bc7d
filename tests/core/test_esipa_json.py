"""ipa_core.esipa_json: the ESipa JSON binding maps to and from the same messages and dicts.

JSON bodies are compared as parsed objects (key order is free in JSON and
differs on MicroPython). Base64 strings below are written by hand from the
bytes next to them. Plain functions with assert (pytest and tools/mp_test.py).
"""

from ipa_core.compat import json

from ipa_core import esipa
from ipa_core import esipa_json as ej
from ipa_core.errors import EimError, ProtocolError

from scripted import to_bytes as h
from test_esipa import (AUTH_OK, CERT1, CHALLENGE, CTX, EID, EPR, EPREQ, NOTIF, PD_OK, PIR, SIG,
                        SMDP, TXID, raises)

OK = {"functionExecutionStatus": {"status": "Executed-Success"}}


def b64(hexstr):
    return ej.b64(h(hexstr))


def body(text):
    return json.loads(text)


def failed(subject=None, reason=None, message=None):
    fes = {"status": "Failed"}
    if subject is not None:
        fes["statusCodeData"] = {"subjectCode": subject, "reasonCode": reason}
        if message:
            fes["statusCodeData"]["message"] = message
    return json.dumps({"header": {"functionExecutionStatus": fes}})


def round_trip(message):
    """IPA message -> JSON -> ASN.1 again: must be the same bytes."""
    function, text = ej.to_json(message)
    assert ej.json_to_asn1(function, text, "ipa") == message, function
    return function, body(text)


# ---- IPA -> eIM -------------------------------------------------------------------------------


def test_base64_helper_by_hand():
    # 'BF 4F' = 101111 110100 1111(00) -> v 0 8 = ; 'AB AB AB' = 101010 111010 101110 101011.
    assert ej.b64(h("BF4F")) == "v08="
    assert ej.b64(h("ABABAB")) == "q6ur"
    assert ej.unb64("q6ur", "x") == h("ABABAB")


def test_get_eim_package_to_json():
    f, obj = round_trip(esipa.get_eim_package_request(EID, True, "fallback", "21F354"))
    # rPlmn: 21 F3 54 = 001000 011111 001101 010100 -> I f N U.
    assert f == "getEimPackage"
    assert obj == {"eidValue": EID, "notifyStateChange": True, "stateChangeCause": 1,
                   "rPlmn": "IfNU"}
    f, obj = round_trip(esipa.get_eim_package_request(EID))
    assert obj == {"eidValue": EID}
    assert ej.path(f) == "/gsma/rsp2/esipa/getEimPackage"
    # The ASN.1 spelling is read too.
    assert ej.json_to_asn1(f, '{"eidValue":"%s","rPLMN":"IfNU"}' % EID, "ipa") == \
        esipa.get_eim_package_request(EID, rplmn="21F354")


def test_provide_eim_package_result_to_json_keeps_signed_bytes():
    m = esipa.provide_eim_package_result(EID, euicc_package_result=h(EPR))
    f, obj = round_trip(m)
    assert f == "provideEimPackageResult"
    assert obj == {"eidValue": EID, "eimPackageResult": b64(EPR)}
    assert ej.unb64(obj["eimPackageResult"], "x") == h(EPR)  # byte for byte
    m = esipa.provide_eim_package_result(euicc_package_result=h(EPR), notifications=[h(NOTIF)])
    f, obj = round_trip(m)
    assert obj == {"eimPackageResult": b64("3069" + EPR + "A00C" + NOTIF)}
    m = esipa.provide_eim_package_result(error_code=2, eim_transaction_id=TXID)
    assert round_trip(m)[1] == {"eimPackageResult": b64("A00D8008" + TXID + "020102")}


def test_handle_notification_to_json():
    f, obj = round_trip(esipa.handle_notification(h(NOTIF)))
    # The PendingNotification itself, without the ASN.1 binding's [0] wrapper.
    assert f == "handleNotification" and obj == {"pendingNotification": b64(NOTIF)}
    pepr = esipa.provide_eim_package_result(euicc_package_result=h(EPR))
    f, obj = round_trip(esipa.handle_notification(provide_eim_package_result=pepr))
    assert obj == {"provideEimPackageResult": ej.b64(pepr)}
    # A v1.0 message ('A1' for BF50) maps to the same JSON (the JSON binding is v1.1+).
    m10 = esipa.handle_notification(provide_eim_package_result=pepr, version="1.0")
    assert body(ej.to_json(m10)[1]) == obj


def test_download_requests_to_json():
    m = esipa.initiate_authentication_request(h(CHALLENGE), h("BF20058203020200"),
                                              "smdp.example.com", TXID)
    f, obj = round_trip(m)
    assert f == "initiateAuthentication"
    assert obj == {"euiccChallenge": ej.b64(h(CHALLENGE)), "euiccInfo1": b64("BF20058203020200"),
                   "smdpAddress": "smdp.example.com", "eimTransactionId": TXID}
    f, obj = round_trip(esipa.authenticate_client_request(TXID, h(AUTH_OK)))
    assert f == "authenticateClient"
    assert obj == {"transactionId": TXID, "authenticateServerResponse": b64(AUTH_OK)}
    f, obj = round_trip(esipa.get_bound_profile_package_request(TXID, h(PD_OK)))
    assert obj == {"transactionId": TXID, "prepareDownloadResponse": b64(PD_OK)}
    # cancelSessionResponse: the ES10b answer as it came ('BF41'), not the 'A1' of the ASN.1
    # binding.
    f, obj = round_trip(esipa.cancel_session_request(TXID, h("BF4103810105")))
    assert f == "cancelSession"
    assert obj == {"transactionId": TXID, "cancelSessionResponse": b64("BF4103810105")}


def test_transfer_eim_package_response_to_json():
    f, obj = round_trip(esipa.transfer_eim_package_response(h(EPR)))
    assert f == "transferEimPackage"
    assert obj == {"header": OK, "euiccPackageResult": b64(EPR)}
    f, obj = round_trip(esipa.transfer_eim_package_response(h(EPR), [h(NOTIF)]))
    # notificationList: DER of PendingNotificationList, a SEQUENCE OF: '30 0C ...'.
    assert obj == {"header": OK, "ePRAndNotifications": {
        "euiccPackageResult": b64(EPR), "notificationList": b64("300C" + NOTIF)}}
    f, obj = round_trip(esipa.transfer_eim_package_response(eim_package_received=True))
    assert obj == {"header": OK}
    f, obj = round_trip(esipa.transfer_eim_package_response(error_code=2))
    assert obj == {"header": OK, "eimPackageError": 2}
    data = esipa.ipa_euicc_data_response(default_smdp_address="smdp.example.com")
    f, obj = round_trip(esipa.transfer_eim_package_response(ipa_euicc_data_response=data))
    assert obj == {"header": OK, "ipaEuiccDataResponse": ej.b64(data)}
    # notificationList given as 'A0' (the ASN.1 component's tag) is read too.
    text = json.dumps({"ePRAndNotifications": {"euiccPackageResult": b64(EPR),
                                               "notificationList": b64("A00C" + NOTIF)}})
    assert ej.json_to_asn1(f, text, "ipa") == esipa.transfer_eim_package_response(h(EPR),
                                                                                  [h(NOTIF)])


# ---- eIM -> IPA -------------------------------------------------------------------------------


def same_both_ways(function, asn1):
    """The ASN.1 answer and its JSON form decode to equal dicts; JSON maps back to the same DER."""
    f, text = ej.asn1_to_json(asn1, "eim")
    assert f == function
    assert ej.json_to_asn1(function, text, "eim") == asn1
    want = ej.DECODERS[function](asn1)
    got = ej.from_json(function, text)
    assert got == want, (got, want)
    return got, body(text)


def test_get_eim_package_from_json():
    got, obj = same_both_ways("getEimPackage", h("BF4F81C1" + EPREQ))
    assert obj == {"header": OK, "euiccPackageRequest": b64(EPREQ)}
    assert got["raw"] == h(EPREQ)  # what LoadEuiccPackage gets, byte for byte
    ipa_req = "BF5206" "5C01A0" "8301AA"  # tagList {A0}, eimTransactionId [3] 83 01 AA
    got, obj = same_both_ways("getEimPackage", h("BF4F09" + ipa_req))
    assert got["kind"] == "ipaEuiccDataRequest" and got["eimTransactionId"] == b"\xaa"
    got, obj = same_both_ways("getEimPackage", h("BF4F07BF5404A0028100"))
    assert got["profileDownloadData"] == {"contactDefaultSmdp": True}
    for n in (1, 2, 3, 4, 127):
        got, obj = same_both_ways("getEimPackage", h("BF4F030201%02X" % n))
        assert obj == {"header": OK, "eimPackageError": n}
        assert got["kind"] == "eimPackageError" and got["eimPackageError"] == n


def test_get_eim_package_failed_header_is_an_eim_package_error():
    # SGP.32 5.14.5 status codes (UNCONFIRMED reading): EID 8.1.1 with 3.7 / 3.9 / 2.1 / 2.2.
    for reason, n, name in (("3.7", 1, "noEimPackageAvailable"), ("3.9", 2, "eidNotFound"),
                            ("2.1", 3, "invalidEid"), ("2.2", 4, "missingEid")):
        r = ej.from_json("getEimPackage", failed("8.1.1", reason, "m"))
        assert r["kind"] == "eimPackageError" and r["eimPackageError"] == n and r["error"] == name
        assert r["statusCodeData"] == {"subjectCode": "8.1.1", "reasonCode": reason,
                                       "message": "m"}
    r = ej.from_json("getEimPackage", failed("1.2", "9.9"))
    assert r["eimPackageError"] == 127 and r["error"] == "undefinedError"
    r = ej.from_json("getEimPackage", failed())
    assert r["eimPackageError"] == 127


def test_hostile_status_codes_are_an_eim_error():
    # An eIM answering an object or a list where a status code belongs: EimError 127 (named
    # from the header), not a TypeError.
    for subject, reason in (("8.1", {}), ([], "2.1"), (True, "2.1")):
        e = raises(EimError, ej.from_json, "provideEimPackageResult", failed(subject, reason))
        assert e.code == 127, e


def test_provide_eim_package_result_from_json():
    got, obj = same_both_ways("provideEimPackageResult", h("BF500ABF5307800107 80020100"))
    assert obj == {"header": OK, "eimAcknowledgements": b64("BF5307800107 80020100")}
    assert got["eimAcknowledgements"] == [7, 256]
    got, obj = same_both_ways("provideEimPackageResult", h("BF50023000"))
    assert obj == {"header": OK} and got["kind"] == "emptyResponse"
    assert ej.from_json("provideEimPackageResult", "")["kind"] == "emptyResponse"
    e = raises(EimError, ej.from_json, "provideEimPackageResult", failed("8.1.1", "2.1"))
    assert e.code == 3 and e.name == "invalidEid" and e.function == "ESipa.ProvideEimPackageResult"
    assert e.status_code_data == {"subjectCode": "8.1.1", "reasonCode": "2.1"}
    # The ASN.1 error maps to a Failed header with that status code, and back.
    f, text = ej.asn1_to_json(h("BF5003020102"), "eim")
    assert body(text) == body(failed("8.1.1", "3.9"))
    assert ej.json_to_asn1(f, text) == h("BF5003020102")


def test_initiate_authentication_from_json_signed_objects_unchanged():
    ss1 = "3040" "8008" + TXID + "8110" + CHALLENGE + "8310" + SMDP + "8410" + CHALLENGE
    keyid = "0414" + "F5" * 20
    asn1 = h("BF3981D3" "A081D0" "8008" + TXID + ss1 + "5F3740" + SIG + keyid + CERT1 +
             "0C03616263" "A20C" + CTX)
    got, obj = same_both_ways("initiateAuthentication", asn1)
    assert obj == {"header": OK, "transactionId": TXID, "serverSigned1": b64(ss1),
                   "serverSignature1": b64("5F3740" + SIG), "euiccCiPKIdentifierToBeUsed":
                   b64(keyid), "serverCertificate": b64(CERT1), "matchingId": "abc",
                   "ctxParams1": b64(CTX)}
    assert got["serverSigned1"] == h(ss1) and got["ctxParams1"] == h(CTX)
    # Lenient: serverSignature1 / euiccCiPKIdToBeUsed as bare values, no header at all.
    lenient = {"serverSigned1": b64(ss1), "serverSignature1": ej.b64(h(SIG)),
               "euiccCiPKIdToBeUsed": ej.b64(h("F5" * 20)), "serverCertificate": b64(CERT1)}
    r = ej.from_json("initiateAuthentication", json.dumps(lenient))
    assert r["serverSignature1"] == h("5F3740" + SIG)
    assert r["euiccCiPKIdentifierToBeUsed"] == h(keyid) and r["transactionId"] == h(TXID)


def test_download_errors_from_json():
    cases = (("initiateAuthentication", "8.8.1", "3.10", 50, "smdpAddressMismatch"),
             ("initiateAuthentication", "8.31.2", "3.10", 52, "invalidEimTransactionId"),
             ("authenticateClient", "8.2.8", "1.2", 50, "pprNotAllowed"),
             ("authenticateClient", "8.10.1", "3.9", 10, "invalidTransactionId"),
             ("getBoundProfilePackage", "8.2.9", "3.11", 50, "metadataMismatch"),
             ("getBoundProfilePackage", "8.2.7", "2.2", 2, "confirmationCodeMissing"),
             ("cancelSession", "8.10.1", "3.9", 1, "invalidTransactionId"),
             ("authenticateClient", "9.9", "9.9", 127, "undefinedError"))
    for f, subject, reason, n, name in cases:
        e = raises(EimError, ej.from_json, f, failed(subject, reason))
        assert e.code == n and e.name == name, (f, e)
        assert e.status_code_data["reasonCode"] == reason
    # The ASN.1 errors travel as Failed headers and come back as the same EimError.
    for f, asn1 in (("initiateAuthentication", "BF3903810132"),
                    ("authenticateClient", "BF3B03820132"),
                    ("getBoundProfilePackage", "BF3A03810132"),
                    ("cancelSession", "BF4103810101")):
        f2, text = ej.asn1_to_json(h(asn1), "eim")
        assert f2 == f and ej.json_to_asn1(f, text) == h(asn1)
        e1 = raises(EimError, ej.DECODERS[f], h(asn1))
        e2 = raises(EimError, ej.from_json, f, text)
        assert (e1.code, e1.name, e1.function) == (e2.code, e2.name, e2.function)


def test_authenticate_client_bpp_cancel_from_json():
    s2 = "300D8008" + TXID + "010100"
    asn1 = h("BF3B81AE" "A081AB" "8008" + TXID + "BF2512" "5A0A98001032547698103214" "910153"
             "920150" + s2 + "5F3740" + SIG + CERT1 + "0420" + "CC" * 32)
    got, obj = same_both_ways("authenticateClient", asn1)
    assert obj["profileMetadata"] == b64("BF2512" "5A0A98001032547698103214" "910153" "920150")
    assert obj["hashCc"] == b64("0420" + "CC" * 32) and got["hashCc"] == b"\xcc" * 32
    # hashCc as the bare 32 bytes and "profileMetaData" spelled as in ASN.1 are read too.
    alt = dict(obj)
    alt["hashCc"] = ej.b64(b"\xcc" * 32)
    alt["profileMetaData"] = alt.pop("profileMetadata")
    assert ej.from_json("authenticateClient", json.dumps(alt)) == got
    got, obj = same_both_ways("authenticateClient", h("BF3B13A111 8008" + TXID +
                                                      "BF5404A0028100"))
    assert got["kind"] == "authenticateClientOkDSEsipa"
    assert obj == {"header": OK, "transactionId": TXID, "profileDownloadTrigger":
                   b64("BF5404A0028100")}
    bpp = "BF360F" "BF230A8008" + TXID + "A300"
    got, obj = same_both_ways("getBoundProfilePackage", h("BF3A1EA01C 8008" + TXID + bpp))
    assert got["boundProfilePackage"] == h(bpp)
    got, obj = same_both_ways("cancelSession", h("BF4102A000"))
    assert obj == {"header": OK} and got == {"kind": "cancelSessionOk"}
    assert ej.from_json("cancelSession", "") == {"kind": "cancelSessionOk"}


def test_transfer_eim_package_request_and_handle_notification_from_json():
    got, obj = same_both_ways("transferEimPackage", h("BF4E06BF5303800107"))
    assert obj == {"eimAcknowledgements": b64("BF5303800107")}  # a request: no header
    assert got["eimAcknowledgements"] == [7]
    got, obj = same_both_ways("transferEimPackage", h("BF4E81C1" + EPREQ))
    assert got["raw"] == h(EPREQ)
    assert ej.from_json("handleNotification", "") is None
    assert ej.from_json("handleNotification", json.dumps({"header": OK})) is None
    e = raises(EimError, ej.from_json, "handleNotification", failed("8.1", "6.1"))
    assert e.code == 127 and e.function == "ESipa.HandleNotification"


def test_malformed_json_bodies():
    f = "getEimPackage"
    e = raises(ProtocolError, ej.from_json, f, "{not json")
    assert "not JSON" in str(e)
    e = raises(ProtocolError, ej.from_json, f, "[1, 2]")
    assert "JSON object" in str(e)
    e = raises(ProtocolError, ej.from_json, f, '{"euiccPackageRequest": "v08=!"}')
    assert "euiccPackageRequest" in str(e) and "base64" in str(e)
    e = raises(ProtocolError, ej.from_json, f, '{"euiccPackageRequest": 5}')
    assert "base64" in str(e)
    # base64 of a TLV with the wrong tag ('BF52 00' where BF51 belongs).
    e = raises(ProtocolError, ej.from_json, f, '{"euiccPackageRequest": "%s"}' % b64("BF5200"))
    assert "BF51" in str(e) and "BF52" in str(e)
    # base64 of a truncated TLV.
    raises(ProtocolError, ej.from_json, f, '{"euiccPackageRequest": "%s"}' % b64("BF5105"))
    e = raises(ProtocolError, ej.from_json, f, '{"eimPackageError": "1"}')
    assert "integer" in str(e)
    raises(ProtocolError, ej.from_json, f, '{"eimPackageError": true}')
    e = raises(ProtocolError, ej.from_json, f, '{"eimPackageError": 1, "ipaEuiccDataRequest": '
               '"%s"}' % b64("BF52035C01A0"))
    assert "one of" in str(e)
    e = raises(ProtocolError, ej.from_json, f, json.dumps({"header": OK}))
    assert "expected one of" in str(e)
    e = raises(ProtocolError, ej.from_json, f, json.dumps(
        {"header": {"functionExecutionStatus": {"status": "Maybe"}}}))
    assert "Maybe" in str(e)
    e = raises(ProtocolError, ej.from_json, "initiateAuthentication", json.dumps(
        {"serverSigned1": b64("3000")}))
    assert "serverSignature1" in str(e)
    e = raises(ProtocolError, ej.from_json, "authenticateClient", json.dumps(
        {"transactionId": "0G"}))
    assert "hex" in str(e)
    e = raises(ProtocolError, ej.json_to_asn1, "getEimPackage", '{"eidValue": "1234"}', "ipa")
    assert "32 digits" in str(e)
    raises(ProtocolError, ej.from_json, f, b"\xff\xfe")
    raises(ProtocolError, ej.from_json, f, "x" * (ej.MAX_BODY + 1))
    raises(ValueError, ej.from_json, "getEverything", "{}")
    raises(ValueError, ej.path, "getEverything")
    raises(ValueError, ej.json_to_asn1, f, "{}", "smdp")
    e = raises(ProtocolError, ej.to_json, h("BF4E03BF3700"))
    assert "BF37" in str(e)


def test_json_text_is_compact_and_utf8():
    f, text = ej.to_json(esipa.get_eim_package_request(EID))
    assert " " not in text
    assert ej.from_json("authenticateClient", json.dumps({
        "transactionId": TXID, "profileDownloadTrigger": b64("BF5404A0028100")}).encode())[
        "transactionId"] == h(TXID)


def test_profile_installation_result_passes_both_bindings():
    pdtr = esipa.profile_download_trigger_result(h(PIR), eim_transaction_id=TXID)
    m = esipa.provide_eim_package_result(EID, profile_download_trigger_result=pdtr)
    f, obj = round_trip(m)
    inner = ej.unb64(obj["eimPackageResult"], "x")
    assert inner == pdtr and h(PIR) in inner
