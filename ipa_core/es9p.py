"""ES9+ (LPA/IPA <-> SM-DP+), JSON binding over HTTPS, client side (SGP.22 v2.5 5.6, 6.5).

Used by a direct profile download (SGP.32 v1.2 3.2.3: the IPAd talks to the
SM-DP+ itself). One request builder and one response parser per function:

    function (path /gsma/rsp2/es9plus/<f>)  request body               response body
    initiateAuthentication   euiccChallenge, euiccInfo1,  transactionId, serverSigned1,
                             smdpAddress                  serverSignature1, euiccCiPKIdToBeUsed,
                                                          serverCertificate
    authenticateClient       transactionId,               transactionId, profileMetadata?,
                             authenticateServerResponse   smdpSigned2, smdpSignature2,
                                                          smdpCertificate
    getBoundProfilePackage   transactionId,               transactionId, boundProfilePackage
                             prepareDownloadResponse
    handleNotification       pendingNotification          (none: HTTP 204)
    cancelSession            transactionId,               (header only)
                             cancelSessionResponse

JSON conventions (SGP.22 6.5.1): transactionId is upper-case hex of the
value; euiccChallenge is base64 of the 16-byte value; every other ASN.1
object is base64 of its whole DER TLV (tag included) - signed objects are
passed byte for byte. Requests: POST with Content-Type application/json,
X-Admin-Protocol gsma/rsp/v2.1.0, User-Agent gsma-rsp-lpad. Responses carry
"header": {"functionExecutionStatus": {"status": "Executed-Success" |
"Executed-WithWarning" | "Failed" | "Expired", "statusCodeData":
{"subjectCode", "reasonCode", "subjectIdentifier"?, "message"?}}}; a failed
status raises Es9Error naming subject and reason.

Request header: the ES2+-style "header" {"functionRequesterIdentifier",
"functionCallIdentifier"} is left out by default, as deployed LPAs do for
ES9+ (SGP.22 6.5.1.3 describes it for the operator-facing interfaces);
`requester=...` adds it for servers that want it.

GetBoundProfilePackage's answer is read as a stream
(open_get_bound_profile_package_response over ipa_core.json_stream): its
base64 package is decoded as it arrives into an es10_download.BppSegments, so
the package is never whole in RAM and is bounded by max_package, not by
MAX_BODY (which bounds every other answer, read whole).

Parsed responses are dicts of raw TLV bytes ready for ipa_core.es10
(authenticate_server, prepare_download, load_bound_profile_package).
Accepted leniently: base64 of a bare value where a primitive TLV is expected
(serverSignature1 '5F37', euiccCiPKIdToBeUsed '04', smdpSignature2 '5F37').
"""

from ipa_core.compat import hexlify, json, loads, unhexlify
from ipa_core import json_stream, tlv
from ipa_core.b64 import decode as unb64, encode as b64
from ipa_core.errors import FunctionError, ProtocolError
from ipa_core.es10_download import MAX_PACKAGE, MAX_SEGMENT, BppSegments
from ipa_core.esipa_decode import MAX_TLV
from ipa_core.stream import TlvReader, close_quietly

PATH = "/gsma/rsp2/es9plus/"
CONTENT_TYPE = "application/json"
HEADERS = {"X-Admin-Protocol": "gsma/rsp/v2.1.0", "User-Agent": "gsma-rsp-lpad"}
FUNCTIONS = ("initiateAuthentication", "authenticateClient", "getBoundProfilePackage",
             "handleNotification", "cancelSession")
MAX_BODY = 64 * 1024  # a whole answer; the bound profile package is streamed instead
MAX_CERT = 4096  # one DER certificate
MAX_SMALL = 1024  # signed data objects other than the BPP
MAX_METADATA = 8192  # StoreMetadataRequest: names, icon (SGP.22: up to 1024 bytes), PPRs, ...

# Status codes (SGP.22 5.6, subjectCode/reasonCode) -> the SGP.32 ASN.1 error code of the
# same failure, so that ES9+ and ESipa errors read alike (names: ipa_core.esipa_decode).
# From the SGP.22 ES9+ tables as best known; an unknown pair maps to undefinedError 127.
STATUS_CODES = {
    "initiateAuthentication": {("8.8.1", "3.8"): 1, ("8.8.3", "3.1"): 2, ("8.8.2", "3.1"): 3,
                               ("8.8.4", "3.7"): 3},
    "authenticateClient": {("8.1.2", "6.1"): 1, ("8.1.2", "6.3"): 2, ("8.1.3", "6.1"): 3,
                           ("8.1.3", "6.3"): 4, ("8.1", "6.1"): 5, ("8.2.6", "3.8"): 6,
                           ("8.1.1", "3.8"): 7, ("8.2", "3.7"): 8, ("8.11.1", "3.9"): 9,
                           ("8.10.1", "3.9"): 10, ("8.1", "4.8"): 11},
    "getBoundProfilePackage": {("8.1", "6.1"): 1, ("8.2.7", "2.2"): 2, ("8.2.7", "3.8"): 3,
                               ("8.2.7", "6.4"): 4, ("8.2", "3.8"): 5, ("8.8.5", "4.10"): 6,
                               ("8.10.1", "3.9"): 95},
    "cancelSession": {("8.10.1", "3.9"): 1, ("8.1", "6.1"): 2, ("8.8", "3.10"): 3},
    "handleNotification": {},
}


class Es9Error(FunctionError):
    """The SM-DP+ answered functionExecutionStatus "Failed" (or "Expired").

    `code` is the SGP.32 ASN.1 error code of the same failure (127 if the
    pair is unknown); subject_code, reason_code, subject_identifier,
    message and status are the header's words.
    """

    def __init__(self, function, status, scd, names=None, codes=None, spec=None):
        scd = scd if isinstance(scd, dict) else {}
        self.status = status
        self.subject_code = scd.get("subjectCode")
        self.reason_code = scd.get("reasonCode")
        self.subject_identifier = scd.get("subjectIdentifier")
        self.message = scd.get("message")
        self.status_code_data = scd
        code = (STATUS_CODES if codes is None else codes).get(function, {}).get(status_key(scd),
                                                                               127)
        name = (names or {}).get(code) or "undefinedError"
        detail = "%s, subjectCode %s reasonCode %s" % (_word(status), _word(self.subject_code),
                                                       _word(self.reason_code))
        if self.subject_identifier:
            detail += " (%s)" % _word(self.subject_identifier)
        if self.message:
            detail += ": %s" % _word(self.message, 200)
        super().__init__(spec or spec_name(function), code, "%s [%s]" % (name, detail))


def status_key(scd):
    """(subjectCode, reasonCode) of a statusCodeData for the STATUS_CODES tables, or None
    when either is not a plain string or number (a hostile or broken server: an object or
    a list there would not even be a dict key)."""
    sc, rc = scd.get("subjectCode"), scd.get("reasonCode")
    for v in (sc, rc):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (str, int))):
            return None
    return sc, rc


def _word(v, n=48):
    """A server's word for a message: a string as it is, anything else as its repr;
    shortened to n characters."""
    text = v if isinstance(v, str) else repr(v)
    return text if len(text) <= n else text[:n - 3] + "..."


def spec_name(function):
    """'initiateAuthentication' -> 'ES9+.InitiateAuthentication'."""
    return "ES9+." + function[:1].upper() + function[1:]


def path(function):
    """The HTTP path of an ES9+ function."""
    if function not in FUNCTIONS:
        raise ValueError("unknown ES9+ function %r, expected one of %s"
                         % (function, ", ".join(FUNCTIONS)))
    return PATH + function


# ---- scalars -------------------------------------------------------------------------------


def tid_hex(tid):
    """TransactionId bytes (1..16) -> upper-case hex, as ES9+ carries it."""
    b = bytes(tid)
    if not 1 <= len(b) <= 16:
        raise ValueError("transactionId: expected 1..16 bytes, got %d" % len(b))
    return hexlify(b).decode().upper()


def tid_bytes(s, what="transactionId"):
    """The hex transactionId of a response -> bytes (1..16); else ProtocolError."""
    if not isinstance(s, str) or not 2 <= len(s) <= 32 or len(s) % 2:
        raise ProtocolError("%s: expected 2..32 hex digits, got %r" % (what, s))
    for ch in s:
        if ch not in "0123456789ABCDEFabcdef":
            raise ProtocolError("%s: expected hex digits, got %r" % (what, s))
    return unhexlify(s)


def _raw(x, tags, what):
    """bytes or a dict with "raw" (the es10 answers) holding one TLV with a tag in tags."""
    if isinstance(x, dict):
        x = x.get("raw")
    if x is None:
        raise ValueError("%s: expected bytes or a dict with \"raw\"" % what)
    x = bytes(x)
    t = tlv.decode(x)
    if t.tag not in tags:
        raise ValueError("%s: expected one TLV with tag %s, got tag %X"
                         % (what, "/".join("%X" % n for n in tags), t.tag))
    return x


# ---- requests -------------------------------------------------------------------------------


def dumps(obj):
    """Compact JSON text of dicts, lists and scalars (every byte counts on NB-IoT);
    json.dumps(separators=...) needs MicroPython 1.17."""
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(k) + ":" + dumps(v) for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    return json.dumps(obj)


def _body(obj, requester, call_id):
    if requester is not None:
        obj["header"] = {"functionRequesterIdentifier": requester,
                         "functionCallIdentifier": call_id or "1"}
    return dumps(obj).encode()


def initiate_authentication_request(euicc_challenge, euicc_info1, smdp_address,
                                    requester=None, call_id=None):
    """ES9+.InitiateAuthentication body (bytes): euiccChallenge (16 bytes), euiccInfo1 ('BF20'
    TLV or the es10.get_euicc_info1 dict), smdpAddress (str, as in the activation code)."""
    ch = bytes(euicc_challenge)
    if len(ch) != 16:
        raise ValueError("euiccChallenge: expected 16 bytes, got %d" % len(ch))
    if not smdp_address:
        raise ValueError("smdpAddress: expected the SM-DP+ address, got %r" % (smdp_address,))
    return _body({"euiccChallenge": b64(ch),
                  "euiccInfo1": b64(_raw(euicc_info1, (0xBF20,), "euiccInfo1")),
                  "smdpAddress": smdp_address}, requester, call_id)


def authenticate_client_request(transaction_id, authenticate_server_response, requester=None,
                                call_id=None):
    """ES9+.AuthenticateClient body: transactionId, authenticateServerResponse ('BF38', verbatim)."""
    return _body({"transactionId": tid_hex(transaction_id),
                  "authenticateServerResponse": b64(_raw(authenticate_server_response, (0xBF38,),
                                                         "authenticateServerResponse"))},
                 requester, call_id)


def get_bound_profile_package_request(transaction_id, prepare_download_response, requester=None,
                                      call_id=None):
    """ES9+.GetBoundProfilePackage body: transactionId, prepareDownloadResponse ('BF21')."""
    return _body({"transactionId": tid_hex(transaction_id),
                  "prepareDownloadResponse": b64(_raw(prepare_download_response, (0xBF21,),
                                                      "prepareDownloadResponse"))},
                 requester, call_id)


def handle_notification_request(pending_notification, requester=None, call_id=None):
    """ES9+.HandleNotification body: pendingNotification (the PIR 'BF37' or an
    OtherSignedNotification '30', verbatim)."""
    return _body({"pendingNotification": b64(_raw(pending_notification, (0xBF37, 0x30),
                                                  "pendingNotification"))},
                 requester, call_id)


def cancel_session_request(transaction_id, cancel_session_response, requester=None,
                           call_id=None):
    """ES9+.CancelSession body: transactionId, cancelSessionResponse (the ES10b answer 'BF41')."""
    return _body({"transactionId": tid_hex(transaction_id),
                  "cancelSessionResponse": b64(_raw(cancel_session_response, (0xBF41,),
                                                    "cancelSessionResponse"))},
                 requester, call_id)


# ---- responses ------------------------------------------------------------------------------


def load(function, body, max_body=None):
    """A response body (bytes/str; empty = {}) -> dict, after the status check (Es9Error).
    At most max_body (default MAX_BODY) bytes."""
    obj = parse_body("%s response" % spec_name(function), body, max_body)
    check_status(function, obj)
    return obj


def parse_body(what, body, limit=None):
    """A JSON response body (bytes/str; empty = {}) of at most `limit` bytes (MAX_BODY) ->
    dict; no status check (ES11 shares it: ipa_core.es11)."""
    limit = limit or MAX_BODY
    if body is None:
        body = b""
    if len(body) > limit:
        raise ProtocolError("%s: a body of %d bytes, expected at most %d"
                            % (what, len(body), limit))
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeError:
            raise ProtocolError("%s: the body is not UTF-8" % what)
    if not body.strip():
        return {}
    try:
        obj = loads(body)
    except ValueError:
        raise ProtocolError("%s: the body is not JSON: %r" % (what, body[:60]))
    if not isinstance(obj, dict):
        raise ProtocolError("%s: expected a JSON object, got %r" % (what, body[:60]))
    return obj


def failed_status(what, obj):
    """header.functionExecutionStatus -> None for Executed-*, else (status, statusCodeData)
    of a "Failed" or "Expired" answer; anything else is a ProtocolError."""
    h = obj.get("header")
    if h is None:
        return None  # some servers leave it out on success; the body decides
    fes = h.get("functionExecutionStatus") if isinstance(h, dict) else None
    if not isinstance(fes, dict):
        raise ProtocolError("%s: header without functionExecutionStatus" % what)
    status = fes.get("status")
    if status in ("Executed-Success", "Executed-WithWarning"):
        return None
    if status not in ("Failed", "Expired"):
        raise ProtocolError("%s: functionExecutionStatus.status %r, expected Executed-Success,"
                            " Executed-WithWarning, Failed or Expired" % (what, status))
    return status, fes.get("statusCodeData")


def check_status(function, obj):
    """Raise Es9Error for a header.functionExecutionStatus other than Executed-*."""
    failed = failed_status("%s response" % spec_name(function), obj)
    if failed is None:
        return
    from ipa_core.esipa_decode import (AUTHENTICATE_CLIENT_ERROR, CANCEL_SESSION_ERROR,
                                       GET_BOUND_PROFILE_PACKAGE_ERROR,
                                       INITIATE_AUTHENTICATION_ERROR)
    names = {"initiateAuthentication": INITIATE_AUTHENTICATION_ERROR,
             "authenticateClient": AUTHENTICATE_CLIENT_ERROR,
             "getBoundProfilePackage": GET_BOUND_PROFILE_PACKAGE_ERROR,
             "cancelSession": CANCEL_SESSION_ERROR}.get(function)
    raise Es9Error(function, failed[0], failed[1], names)


def _need(obj, key, what):
    v = obj.get(key)
    if v is None:
        raise ProtocolError("%s: %r missing" % (what, key))
    return v


def _tlv_field(obj, keys, tags, what, limit, required=True):
    """base64 of one TLV with a tag in tags -> its bytes (a bare value of a primitive tag is
    wrapped); None when absent and not required."""
    key = keys[0]
    v = None
    for k in keys:
        if obj.get(k) is not None:
            key, v = k, obj[k]
            break
    if v is None:
        if required:
            raise ProtocolError("%s: %r missing" % (what, keys[0]))
        return None
    w = "%s.%s" % (what, key)
    raw = unb64(v, w, limit)
    try:
        t = tlv.decode(raw)
        if t.tag in tags:
            return raw
        found = "tag %X" % t.tag
    except ProtocolError as e:
        found = str(e)
    if len(tags) == 1 and not tlv.is_constructed(tags[0]):
        return tlv.encode(tags[0], raw)  # base64 of the bare value
    raise ProtocolError("%s: expected base64 of one TLV with tag %s, got %s"
                        % (w, "/".join("%X" % n for n in tags), found))


def _tid(obj, what, expected):
    tid = tid_bytes(_need(obj, "transactionId", what), what + ".transactionId")
    if expected is not None and tid != bytes(expected):
        raise ProtocolError("%s: transactionId %s, expected the session's %s"
                            % (what, tid_hex(tid), tid_hex(expected)))
    return tid


def decode_initiate_authentication_response(body):
    """ES9+.InitiateAuthentication response -> {"transactionId" (bytes), "serverSigned1" '30',
    "serverSignature1" '5F37', "euiccCiPKIdToBeUsed" '04', "serverCertificate" '30' (raw TLVs
    for es10.authenticate_server), "serverAddress", "euiccChallenge" (from serverSigned1)}."""
    f = "initiateAuthentication"
    return initiate_authentication_fields(load(f, body), spec_name(f) + " response")


def initiate_authentication_fields(obj, what):
    """The checked fields of an InitiateAuthentication answer (ES9+ and ES11 alike)."""
    out = {"transactionId": _tid(obj, what, None),
           "serverSigned1": _tlv_field(obj, ("serverSigned1",), (0x30,), what, MAX_SMALL),
           "serverSignature1": _tlv_field(obj, ("serverSignature1",), (0x5F37,), what,
                                          MAX_SMALL),
           "euiccCiPKIdToBeUsed": _tlv_field(obj, ("euiccCiPKIdToBeUsed",
                                                   "euiccCiPKIdentifierToBeUsed"),
                                             (0x04,), what, MAX_SMALL),
           "serverCertificate": _tlv_field(obj, ("serverCertificate",), (0x30,), what,
                                           MAX_CERT)}
    ss1 = tlv.decode(out["serverSigned1"])
    signed_tid = ss1.need(0x80, "transactionId in serverSigned1").value
    if not 1 <= len(signed_tid) <= 16:
        raise ProtocolError("%s: the transactionId in serverSigned1 has %d bytes, expected "
                            "1..16" % (what, len(signed_tid)))
    if signed_tid != out["transactionId"]:
        raise ProtocolError("%s: transactionId %s differs from serverSigned1's %s"
                            % (what, tid_hex(out["transactionId"]), tid_hex(signed_tid)))
    out["euiccChallenge"] = ss1.need(0x81, "euiccChallenge in serverSigned1").value
    out["serverAddress"] = ss1.need(0x83, "serverAddress in serverSigned1").as_str()
    return out


def decode_authenticate_client_response(body, transaction_id=None):
    """ES9+.AuthenticateClient response -> {"transactionId", "smdpSigned2" '30',
    "smdpSignature2" '5F37', "smdpCertificate" '30', "profileMetadata"? ('BF25' raw:
    StoreMetadataRequest), "ccRequiredFlag" (from smdpSigned2)}. transaction_id: the
    session's, checked when given."""
    f = "authenticateClient"
    what = spec_name(f) + " response"
    obj = load(f, body)
    out = {"transactionId": _tid(obj, what, transaction_id),
           "smdpSigned2": _tlv_field(obj, ("smdpSigned2",), (0x30,), what, MAX_SMALL),
           "smdpSignature2": _tlv_field(obj, ("smdpSignature2",), (0x5F37,), what, MAX_SMALL),
           "smdpCertificate": _tlv_field(obj, ("smdpCertificate",), (0x30,), what, MAX_CERT)}
    md = _tlv_field(obj, ("profileMetadata", "profileMetaData"), (0xBF25,), what, MAX_METADATA,
                    required=False)
    if md is not None:
        out["profileMetadata"] = md
    s2 = tlv.decode(out["smdpSigned2"])
    if s2.need(0x80, "transactionId in smdpSigned2").value != out["transactionId"]:
        raise ProtocolError("%s: smdpSigned2 is for another transactionId" % what)
    out["ccRequiredFlag"] = s2.need(0x01, "ccRequiredFlag in smdpSigned2").as_bool()
    return out


def open_bound_profile_package(reader, what, check, max_package=MAX_PACKAGE, max_segment=None):
    """A JSON answer in `reader` (ipa_core.stream contract) opened up to its
    "boundProfilePackage" (ipa_core.json_stream) -> (the members before it, an
    es10_download.BppSegments reading the decoded package one STORE DATA segment at a time,
    its first segment read). check(members, complete) refuses a failed status or a wrong
    transactionId (see json_stream.open_member for when it runs). Also used by the ESipa
    JSON binding (ipa_core.esipa_json). On an error here the reader is closed."""
    try:
        m = json_stream.open_member(reader, "boundProfilePackage", what, check, max_package)
        if m is None:
            raise ProtocolError("%s: 'boundProfilePackage' missing" % what)
        segs = BppSegments(TlvReader(m, what + " boundProfilePackage", MAX_TLV), None,
                           max_segment or MAX_SEGMENT, max_package=max_package)
        segs.peek()
        return m.members, segs
    except BaseException:
        close_quietly(reader)
        raise


def open_get_bound_profile_package_response(reader, transaction_id=None, max_package=MAX_PACKAGE,
                                            max_segment=None):
    """ES9+.GetBoundProfilePackage response read from a stream -> {"transactionId",
    "segments": es10_download.BppSegments}, the streamed twin of
    decode_get_bound_profile_package_response (no copy of the package is ever whole).

    Key order is the server's: a header and transactionId in front of the
    package are checked before any segment is used (a "Failed" status ->
    Es9Error). Members after it are checked when its base64 string ends,
    before its last bytes go out (json_stream), so a failure there stops the
    load before the last STORE DATA segment and the download is cancelled.
    Sending the earlier segments first is safe: the eUICC checks the
    transactionId in InitialiseSecureChannel 'BF23' against its own session
    and verifies every segment with that session's keys; until the
    transactionId member is seen, the one in BF23 is returned (the procedure
    compares it with the session's).
    """
    f = "getBoundProfilePackage"
    what = spec_name(f) + " response"

    def check(obj, complete):
        check_status(f, obj)
        if complete or obj.get("transactionId") is not None:
            _tid(obj, what, transaction_id)

    members, segs = open_bound_profile_package(reader, what, check, max_package, max_segment)
    tid = members.get("transactionId")
    return {"transactionId": tid_bytes(tid) if tid is not None else segs.transaction_id(),
            "segments": segs}


def decode_get_bound_profile_package_response(body, transaction_id=None):
    """ES9+.GetBoundProfilePackage response -> {"transactionId", "boundProfilePackage" ('BF36'
    raw, for es10.load_bound_profile_package)}: a whole body in RAM, a package of at most
    tlv.MAX_LEN (tests, tools; the IPA streams it: open_get_bound_profile_package_response)."""
    f = "getBoundProfilePackage"
    what = spec_name(f) + " response"
    obj = load(f, body, (tlv.MAX_LEN + 2) // 3 * 4 + MAX_BODY)
    tid = _tid(obj, what, transaction_id)
    bpp = _tlv_field(obj, ("boundProfilePackage",), (0xBF36,), what, tlv.MAX_LEN)
    obj.clear()  # the base64 text goes now: one copy of the package stays
    return {"transactionId": tid, "boundProfilePackage": bpp}


def decode_handle_notification_response(body):
    """ES9+.HandleNotification response: no body (HTTP 204) or a header -> None."""
    load("handleNotification", body)


def decode_cancel_session_response(body):
    """ES9+.CancelSession response (header only) -> None; "Failed" -> Es9Error."""
    load("cancelSession", body)
