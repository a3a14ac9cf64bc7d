"""ipa_core.es9p: the ES9+ JSON binding (SGP.22 6.5) as the IPA uses it for a direct download.

Requests are compared as parsed JSON (MicroPython dicts keep no key order);
responses are built here from hand-made TLVs. Plain functions with assert.
"""

from ipa_core.compat import json
from ipa_core.compat import a2b_base64, b2a_base64, unhexlify

from ipa_core import es9p, tlv
from ipa_core.errors import FunctionError, ProtocolError

TID = unhexlify("0123456789ABCDEF0123456789ABCDEF")
CHALLENGE = bytes(range(16))
INFO1 = tlv.enc(0xBF20, tlv.encode(0x82, b"\x02\x03\x00"),
                tlv.enc(0xA9, tlv.encode(0x04, b"\x11" * 20)),
                tlv.enc(0xAA, tlv.encode(0x04, b"\x11" * 20)))
SS1 = tlv.enc(0x30, tlv.encode(0x80, TID), tlv.encode(0x81, CHALLENGE),
              tlv.encode(0x83, b"dp.example"), tlv.encode(0x84, b"\x22" * 16))
SIG = tlv.encode(0x5F37, b"\x33" * 64)
PKID = tlv.encode(0x04, b"\x11" * 20)
CERT = tlv.enc(0x30, tlv.enc(0x30, tlv.encode(0x02, b"\x01")), tlv.encode(0x03, b"\x00\x44"))
SS2 = tlv.enc(0x30, tlv.encode(0x80, TID), tlv.encode(0x01, b"\xff"))
METADATA = tlv.enc(0xBF25, tlv.encode(0x5A, unhexlify("89490000000000000010")),
                   tlv.encode(0x91, b"Test SP"), tlv.encode(0x92, b"Test profile"))
ASR = tlv.enc(0xBF38, tlv.enc(0xA0, tlv.enc(0x30, tlv.encode(0x80, TID))))
PDR = tlv.enc(0xBF21, tlv.enc(0xA0, tlv.enc(0x30, tlv.encode(0x80, TID))))
CSR = tlv.enc(0xBF41, tlv.enc(0xA0, tlv.enc(0x30, tlv.encode(0x80, TID)), SIG))
BPP = tlv.enc(0xBF36, tlv.enc(0xBF23, tlv.encode(0x80, TID)), tlv.enc(0xA0, tlv.encode(0x87, b"x")),
              tlv.enc(0xA1, tlv.encode(0x88, b"m")), tlv.enc(0xA3, tlv.encode(0x86, b"p")))
PIR = tlv.enc(0xBF37, tlv.enc(0xBF27, tlv.encode(0x80, TID)))
OK = {"functionExecutionStatus": {"status": "Executed-Success"}}


def b64(b):
    return b2a_base64(b).decode().strip()


def body(obj):
    return json.dumps(obj).encode()


def failed(scd, status="Failed"):
    return body({"header": {"functionExecutionStatus": {"status": status,
                                                        "statusCodeData": scd}}})


def raises(cls, fn, *words):
    try:
        fn()
    except cls as e:
        for w in words:
            assert w in str(e), "%r not in %r" % (w, str(e))
        return e
    raise AssertionError("no %s" % cls.__name__)


# ---- requests ----------------------------------------------------------------------------


def test_paths_and_headers():
    assert es9p.path("initiateAuthentication") == "/gsma/rsp2/es9plus/initiateAuthentication"
    assert es9p.path("cancelSession") == "/gsma/rsp2/es9plus/cancelSession"
    raises(ValueError, lambda: es9p.path("getEimPackage"), "unknown ES9+ function")
    assert es9p.HEADERS["X-Admin-Protocol"] == "gsma/rsp/v2.1.0"
    assert es9p.CONTENT_TYPE == "application/json"


def test_initiate_authentication_request():
    b = es9p.initiate_authentication_request(CHALLENGE, {"raw": INFO1}, "dp.example")
    assert b" " not in b  # compact
    assert json.loads(b) == {"euiccChallenge": "AAECAwQFBgcICQoLDA0ODw==",
                             "euiccInfo1": b64(INFO1), "smdpAddress": "dp.example"}
    raises(ValueError, lambda: es9p.initiate_authentication_request(b"x", INFO1, "d"),
           "euiccChallenge", "16 bytes", "got 1")
    raises(ValueError, lambda: es9p.initiate_authentication_request(CHALLENGE, PKID, "d"),
           "euiccInfo1", "BF20")


def test_request_header_when_asked():
    b = es9p.authenticate_client_request(TID, ASR, requester="ipa-1", call_id="7")
    assert json.loads(b) == {"header": {"functionRequesterIdentifier": "ipa-1",
                                        "functionCallIdentifier": "7"},
                             "transactionId": "0123456789ABCDEF0123456789ABCDEF",
                             "authenticateServerResponse": b64(ASR)}


def test_other_requests():
    assert json.loads(es9p.authenticate_client_request(TID, {"raw": ASR})) == {
        "transactionId": "0123456789ABCDEF0123456789ABCDEF", "authenticateServerResponse": b64(ASR)}
    assert json.loads(es9p.get_bound_profile_package_request(b"\x01\x02", PDR)) == {
        "transactionId": "0102", "prepareDownloadResponse": b64(PDR)}
    assert json.loads(es9p.cancel_session_request(TID, CSR)) == {
        "transactionId": "0123456789ABCDEF0123456789ABCDEF", "cancelSessionResponse": b64(CSR)}
    assert json.loads(es9p.handle_notification_request(PIR)) == {"pendingNotification": b64(PIR)}
    raises(ValueError, lambda: es9p.get_bound_profile_package_request(TID, ASR),
           "prepareDownloadResponse", "BF21", "BF38")
    raises(ValueError, lambda: es9p.cancel_session_request(b"", CSR), "1..16 bytes")


# ---- responses ---------------------------------------------------------------------------


def ia_body(**over):
    obj = {"header": OK, "transactionId": "0123456789ABCDEF0123456789ABCDEF",
           "serverSigned1": b64(SS1), "serverSignature1": b64(SIG),
           "euiccCiPKIdToBeUsed": b64(PKID), "serverCertificate": b64(CERT)}
    for k in over:
        if over[k] is None:
            del obj[k]
        else:
            obj[k] = over[k]
    return body(obj)


def test_initiate_authentication_response():
    r = es9p.decode_initiate_authentication_response(ia_body())
    assert r["transactionId"] == TID
    assert (r["serverSigned1"], r["serverSignature1"], r["euiccCiPKIdToBeUsed"],
            r["serverCertificate"]) == (SS1, SIG, PKID, CERT)
    assert r["serverAddress"] == "dp.example" and r["euiccChallenge"] == CHALLENGE


def test_bare_values_are_wrapped():
    r = es9p.decode_initiate_authentication_response(ia_body(
        serverSignature1=b64(b"\x33" * 64), euiccCiPKIdToBeUsed=b64(b"\x11" * 20)))
    assert r["serverSignature1"] == SIG and r["euiccCiPKIdToBeUsed"] == PKID


def test_initiate_authentication_response_errors():
    raises(ProtocolError, lambda: es9p.decode_initiate_authentication_response(
        ia_body(serverCertificate=None)), "'serverCertificate' missing")
    raises(ProtocolError, lambda: es9p.decode_initiate_authentication_response(
        ia_body(serverSigned1=b64(PKID))), "serverSigned1", "tag 30", "tag 4")
    raises(ProtocolError, lambda: es9p.decode_initiate_authentication_response(
        ia_body(transactionId="01")), "transactionId 01 differs")
    raises(ProtocolError, lambda: es9p.decode_initiate_authentication_response(
        ia_body(transactionId="XYZ")), "hex digits")
    raises(ProtocolError, lambda: es9p.decode_initiate_authentication_response(
        ia_body(serverSigned1="not base64!")), "base64")
    raises(ProtocolError, lambda: es9p.decode_initiate_authentication_response(b"<html>"),
           "not JSON")
    raises(ProtocolError, lambda: es9p.decode_initiate_authentication_response(b"[1]"),
           "JSON object")
    raises(ProtocolError, lambda: es9p.decode_initiate_authentication_response(
        ia_body(header={"functionExecutionStatus": {"status": "Maybe"}})), "'Maybe'")


def test_failed_status_is_es9_error():
    e = raises(es9p.Es9Error, lambda: es9p.decode_initiate_authentication_response(failed(
        {"subjectCode": "8.8.1", "reasonCode": "3.8", "message": "Invalid SM-DP+ Address"})),
        "ES9+.InitiateAuthentication", "invalidDpAddress", "8.8.1", "3.8",
        "Invalid SM-DP+ Address")
    assert isinstance(e, FunctionError)
    assert (e.code, e.subject_code, e.reason_code, e.status) == (1, "8.8.1", "3.8", "Failed")
    e = raises(es9p.Es9Error, lambda: es9p.decode_authenticate_client_response(failed(
        {"subjectCode": "8.2.6", "reasonCode": "3.8", "subjectIdentifier": "matchingId"})),
        "matchingIdRefused", "(matchingId)")
    assert e.code == 6
    e = raises(es9p.Es9Error, lambda: es9p.decode_get_bound_profile_package_response(failed(
        {"subjectCode": "9.9", "reasonCode": "9.9"}, "Expired")), "undefinedError", "Expired")
    assert e.code == 127
    raises(es9p.Es9Error, lambda: es9p.decode_cancel_session_response(failed({})),
           "ES9+.CancelSession")


def test_hostile_status_codes_and_transaction_ids_are_named_errors():
    # A server answering an object or a list where a status code belongs, or a serverSigned1
    # whose transactionId is empty or too long: an error naming the SM-DP+'s answer, never a
    # TypeError or ValueError from building the message.
    for scd in ({"subjectCode": "8.1", "reasonCode": {}}, {"subjectCode": [], "reasonCode": 1},
                {"subjectCode": "8.1", "reasonCode": "x" * 5000, "message": ["no"]}):
        e = raises(es9p.Es9Error, lambda x=scd: es9p.decode_authenticate_client_response(
            failed(x)), "ES9+.AuthenticateClient", "undefinedError")
        assert e.code == 127 and len(str(e)) < 400, str(e)
    raises(ProtocolError, lambda: es9p.decode_initiate_authentication_response(body(
        {"header": {"functionExecutionStatus": {"status": {"x": 1}}}})),
        "functionExecutionStatus.status")
    for tid in (b"", bytes(17)):
        ss1 = tlv.enc(0x30, tlv.encode(0x80, tid), tlv.encode(0x81, CHALLENGE),
                      tlv.encode(0x83, b"smdp.example.com"))
        raises(ProtocolError, lambda x=ss1: es9p.decode_initiate_authentication_response(
            ia_body(serverSigned1=b64(x))), "transactionId in serverSigned1 has %d bytes"
            % len(tid))


def ac_body(**over):
    obj = {"header": OK, "transactionId": "0123456789ABCDEF0123456789ABCDEF",
           "profileMetadata": b64(METADATA), "smdpSigned2": b64(SS2),
           "smdpSignature2": b64(SIG), "smdpCertificate": b64(CERT)}
    for k in over:
        if over[k] is None:
            del obj[k]
        else:
            obj[k] = over[k]
    return body(obj)


def test_authenticate_client_response():
    r = es9p.decode_authenticate_client_response(ac_body(), TID)
    assert (r["transactionId"], r["smdpSigned2"], r["smdpSignature2"], r["smdpCertificate"],
            r["profileMetadata"]) == (TID, SS2, SIG, CERT, METADATA)
    assert r["ccRequiredFlag"] is True
    r = es9p.decode_authenticate_client_response(ac_body(profileMetadata=None))
    assert "profileMetadata" not in r


def test_authenticate_client_response_errors():
    raises(ProtocolError, lambda: es9p.decode_authenticate_client_response(ac_body(), b"\x01"),
           "transactionId 0123456789ABCDEF0123456789ABCDEF", "expected the session's 01")
    raises(ProtocolError, lambda: es9p.decode_authenticate_client_response(
        ac_body(smdpSigned2=b64(tlv.enc(0x30, tlv.encode(0x80, TID))))), "ccRequiredFlag")
    raises(ProtocolError, lambda: es9p.decode_authenticate_client_response(
        ac_body(smdpSigned2=b64(tlv.enc(0x30, tlv.encode(0x80, b"\x09"),
                                        tlv.encode(0x01, b"\x00"))))), "another transactionId")


def test_get_bound_profile_package_response():
    b = body({"header": OK, "transactionId": "0123456789ABCDEF0123456789ABCDEF",
              "boundProfilePackage": b64(BPP)})
    r = es9p.decode_get_bound_profile_package_response(b, TID)
    assert r == {"transactionId": TID, "boundProfilePackage": BPP}
    raises(ProtocolError, lambda: es9p.decode_get_bound_profile_package_response(body(
        {"transactionId": "0123456789ABCDEF0123456789ABCDEF", "boundProfilePackage": b64(PIR)})),
        "BF36", "tag BF37")


def test_empty_and_header_only_responses():
    assert es9p.decode_handle_notification_response(b"") is None
    assert es9p.decode_cancel_session_response(body({"header": OK})) is None


def test_size_bounds():
    big = "A" * (es9p.MAX_CERT // 3 * 4 + 8)
    raises(ProtocolError, lambda: es9p.decode_initiate_authentication_response(
        ia_body(serverCertificate=big)), "at most 4096 bytes")
    old = es9p.MAX_BODY
    es9p.MAX_BODY = 100
    try:
        raises(ProtocolError, lambda: es9p.decode_initiate_authentication_response(ia_body()),
               "expected at most 100")
    finally:
        es9p.MAX_BODY = old


def test_base64_round_trip_of_binary():
    data = bytes(range(256))
    assert a2b_base64(es9p.b64(data).encode()) == data
    assert es9p.unb64(es9p.b64(data), "x", 256) == data
