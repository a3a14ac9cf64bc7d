"""ESipa JSON binding (SGP.32 v1.2 6.1.2, 6.4), IPA side: the same messages as ipa_core.esipa.

The IPA builds every message with ipa_core.esipa (ASN.1 DER) and decodes
every answer to the same dicts, whichever binding carries them:

    function, body = to_json(esipa.get_eim_package_request(eid))
    status, text = network.post(path(function), body, CONTENT_TYPE)
    pkg = from_json(function, text)   # == esipa.decode_get_eim_package_response(asn1)

to_json() maps an EsipaMessageFromIpaToEim to (function, JSON text);
from_json() maps an eIM JSON body to exactly the dict the ASN.1 decoder
returns, by rebuilding the ASN.1 message first (json_to_asn1) - signed
objects travel as base64 of their exact TLV, so they are byte for byte the
same through both bindings. asn1_to_json / json_to_asn1 do either mapping in
either direction (sender "ipa" or "eim"), for tests and relays.

The JSON shapes. The binding's spec text was not available: these follow
the ES9+ JSON conventions of SGP.22 6.5 and two public IPA implementations'
reading of SGP.32 6.4 (INFERENCE where marked):

- POST <eIM>/gsma/rsp2/esipa/<function>, Content-Type
  application/json;charset=UTF-8; requests carry no "header"; responses
  carry "header": {"functionExecutionStatus": {"status": "Executed-Success"
  | "Failed", "statusCodeData": {"subjectCode", "reasonCode", "message"}}}
  (a missing header is read as success: the body decides);
- keys are the ASN.1 component names; an ASN.1 object (anything with a
  structure or a signature) is base64 of its whole DER TLV, tag included;
  transactionId / eimTransactionId are upper-case hex of the value;
  eidValue is the 32 hex digits; UTF8String is a JSON string; INTEGER a
  JSON number; NULL flags are true; euiccChallenge and rPlmn are base64 of
  the bare value (INFERENCE from the public readings);
- a CHOICE is the one key of the alternative present.

  function (path)          IPA -> eIM body                    eIM -> IPA body
  getEimPackage            eidValue, notifyStateChange?,      euiccPackageRequest |
                           stateChangeCause?, rPlmn? (1)      ipaEuiccDataRequest |
                                                              profileDownloadTriggerRequest |
                                                              eimPackageError (int)
  provideEimPackageResult  eidValue?, eimPackageResult (2)    eimAcknowledgements? (3)
  handleNotification       pendingNotification |              (no body)
                           provideEimPackageResult (4)
  initiateAuthentication   euiccChallenge, smdpAddress?,      transactionId?, serverSigned1,
                           euiccInfo1?, eimTransactionId?     serverSignature1,
                                                              euiccCiPKIdentifierToBeUsed,
                                                              serverCertificate, matchingId?,
                                                              ctxParams1? (5)
  authenticateClient       transactionId,                     DP: transactionId?,
                           authenticateServerResponse         profileMetadata? (6), smdpSigned2,
                                                              smdpSignature2, smdpCertificate,
                                                              hashCc? | DS: transactionId,
                                                              profileDownloadTrigger?
  getBoundProfilePackage   transactionId,                     transactionId?, boundProfilePackage
                           prepareDownloadResponse
  cancelSession            transactionId,                     (header only)
                           cancelSessionResponse (7)
  transferEimPackage       (the IPA's response, with header)  (the eIM's request, no header)
                           euiccPackageResult |               euiccPackageRequest |
                           ePRAndNotifications {euicc-        ipaEuiccDataRequest |
                           PackageResult, notificationList}   eimAcknowledgements |
                           (8) | ipaEuiccDataResponse |       profileDownloadTriggerRequest
                           eimPackageError | nothing for
                           eimPackageReceived (9)

  (1) "rPlmn", not the ASN.1 "rPLMN": both public readings of 6.4.1.5 spell it
      so (INFERENCE); "rPLMN" is accepted. (2) the EimPackageResult TLV as in
      the ASN.1 binding (BF51, 30, BF52, BF54 or A0). (3) absent = emptyResponse.
  (4) the PendingNotification TLV itself (no [0] wrapper) / the BF50 TLV.
  (5) the CtxParams1 TLV ('A0'), without the ASN.1 binding's [2] wrapper.
  (6) "profileMetadata" as in ES9+ (ASN.1: profileMetaData, accepted too).
  (7) the ES10b CancelSession answer as it came ('BF41'), not re-tagged 'A1'.
  (8) notificationList = base64 of the DER of PendingNotificationList ('30 ...');
      'A0 ...' accepted. (9) INFERENCE: one public IPA sends only the header.

Errors: a "Failed" header becomes the function's ASN.1 error code through
STATUS_CODES (subjectCode/reasonCode pairs; UNCONFIRMED, see there), an
unknown pair undefinedError (127); the EimError raised (or, for
getEimPackage, the eimPackageError dict) gets the header's statusCodeData.
Malformed JSON, bad base64/hex or a wrong TLV -> ProtocolError naming the
key. Accepted leniently: base64 of a bare value where a primitive TLV
(serverSignature1, euiccCiPKIdentifierToBeUsed, hashCc) is expected, and
unknown keys (ignored).
"""

from ipa_core.compat import hexlify, loads, unhexlify

from ipa_core import tlv
from ipa_core.b64 import decode as unb64, encode as b64
from ipa_core import es10_decode as d
from ipa_core import esipa_decode as dec
from ipa_core import version as ver
from ipa_core.errors import EimError, ProtocolError
from ipa_core.es10_download import MAX_PACKAGE
from ipa_core.es9p import dumps, open_bound_profile_package, status_key
from ipa_core.esipa_push import decode_transfer_eim_package_request

PATH = "/gsma/rsp2/esipa/"
CONTENT_TYPE = "application/json;charset=UTF-8"
MAX_BODY = 2 * 1024 * 1024  # base64 of the largest TLV tlv.MAX_LEN allows, and some
SUCCESS = {"functionExecutionStatus": {"status": "Executed-Success"}}

FUNCTIONS = ("initiateAuthentication", "authenticateClient", "getBoundProfilePackage",
             "cancelSession", "handleNotification", "transferEimPackage", "getEimPackage",
             "provideEimPackageResult")
TAGS = {"initiateAuthentication": 0xBF39, "authenticateClient": 0xBF3B,
        "getBoundProfilePackage": 0xBF3A, "cancelSession": 0xBF41, "handleNotification": 0xBF3D,
        "transferEimPackage": 0xBF4E, "getEimPackage": 0xBF4F, "provideEimPackageResult": 0xBF50}

# Field kinds: how one ASN.1 component maps to one JSON value.
TLV = "tlv"  # base64 of the whole TLV
VALUE = "value"  # base64 of the value only
HEX = "hex"  # upper-case hex of the value
EID = "eid"  # 32 hex digits
STR = "str"  # UTF8String
INT = "int"  # INTEGER
NULL = "null"  # NULL <-> true
EXPLICIT = "explicit"  # [n] { TLV } <-> base64 of the inner TLV (arg: its allowed tags)
IMPLICIT = "implicit"  # [n] replacing a tag <-> base64 of the TLV with tag arg
OBJECT = "object"  # constructed <-> nested JSON object (arg: its fields)


def _f(keys, tags, kind, required=False, arg=None):
    """One field: (JSON keys (first is written), ASN.1 tags (first is written), kind, required, arg)."""
    return (keys if isinstance(keys, tuple) else (keys,),
            tags if isinstance(tags, tuple) else (tags,), kind, required, arg)


PENDING = (0xBF37, 0x30, 0xA0, 0xA1)
TID = _f("transactionId", 0x80, HEX)

# (ASN.1 tag, alternatives [(wrapper tag or None, discriminating key or None, fields, choice)],
#  error tag, empty content, header)
IPA_BODIES = {
    "initiateAuthentication": (0xBF39, [(None, None, [
        _f("euiccChallenge", 0x81, VALUE, True), _f("smdpAddress", 0x83, STR),
        _f("euiccInfo1", 0xBF20, TLV), _f("eimTransactionId", 0x82, HEX)], False)],
        None, None, False),
    "authenticateClient": (0xBF3B, [(None, None, [
        _f("transactionId", 0x80, HEX, True),
        _f("authenticateServerResponse", 0xBF38, TLV, True)], False)], None, None, False),
    "getBoundProfilePackage": (0xBF3A, [(None, None, [
        _f("transactionId", 0x80, HEX, True),
        _f("prepareDownloadResponse", 0xBF21, TLV, True)], False)], None, None, False),
    "cancelSession": (0xBF41, [(None, None, [
        _f("transactionId", 0x80, HEX, True),
        _f("cancelSessionResponse", 0xA1, IMPLICIT, True, 0xBF41)], False)], None, None, False),
    "handleNotification": (0xBF3D, [(None, None, [
        _f("pendingNotification", 0xA0, EXPLICIT, False, PENDING),
        _f("provideEimPackageResult", (0xBF50, 0xA1), IMPLICIT, False, 0xBF50)], True)],
        None, None, False),
    "transferEimPackage": (0xBF4E, [(None, None, [
        _f("euiccPackageResult", 0xBF51, TLV),
        _f("ePRAndNotifications", 0x30, OBJECT, False, [
            _f("euiccPackageResult", 0xBF51, TLV, True),
            _f("notificationList", (0xA0, 0x30), IMPLICIT, True, 0x30)]),
        _f("ipaEuiccDataResponse", 0xBF52, TLV), _f("eimPackageReceived", 0x05, NULL),
        _f("eimPackageError", 0x02, INT)], True)], None, b"\x05\x00", True),
    "getEimPackage": (0xBF4F, [(None, None, [
        _f("eidValue", 0x5A, EID, True), _f("notifyStateChange", 0x80, NULL),
        _f("stateChangeCause", 0x81, INT), _f(("rPlmn", "rPLMN"), 0x82, VALUE)], False)],
        None, None, False),
    "provideEimPackageResult": (0xBF50, [(None, None, [
        _f("eidValue", 0x5A, EID),
        _f("eimPackageResult", (0xBF51, 0x30, 0xBF52, 0xBF54, 0xA0, 0x02), TLV, True)], False)],
        None, None, False),
}

EIM_BODIES = {
    "initiateAuthentication": (0xBF39, [(0xA0, None, [
        TID, _f("serverSigned1", 0x30, TLV, True), _f("serverSignature1", 0x5F37, TLV, True),
        _f(("euiccCiPKIdentifierToBeUsed", "euiccCiPKIdToBeUsed"), 0x04, TLV, True),
        _f("serverCertificate", 0x30, TLV, True), _f("matchingId", 0x0C, STR),
        _f("ctxParams1", 0xA2, EXPLICIT, False, (0xA0,))], False)], 0x81, None, True),
    "authenticateClient": (0xBF3B, [
        (0xA0, "smdpSigned2", [
            TID, _f(("profileMetadata", "profileMetaData"), 0xBF25, TLV),
            _f("smdpSigned2", 0x30, TLV, True), _f("smdpSignature2", 0x5F37, TLV, True),
            _f("smdpCertificate", 0x30, TLV, True), _f("hashCc", 0x04, TLV)], False),
        (0xA1, None, [_f("transactionId", 0x80, HEX, True),
                      _f("profileDownloadTrigger", 0xBF54, TLV)], False)], 0x82, None, True),
    "getBoundProfilePackage": (0xBF3A, [(0xA0, None, [
        TID, _f("boundProfilePackage", 0xBF36, TLV, True)], False)], 0x81, None, True),
    "cancelSession": (0xBF41, [(0xA0, None, [], False)], 0x81, None, True),
    "getEimPackage": (0xBF4F, [(None, None, [
        _f("euiccPackageRequest", 0xBF51, TLV), _f("ipaEuiccDataRequest", 0xBF52, TLV),
        _f("profileDownloadTriggerRequest", 0xBF54, TLV),
        _f("eimPackageError", (0x02, 0x83), INT)], True)], 0x02, None, True),
    "provideEimPackageResult": (0xBF50, [(None, None, [
        _f("eimAcknowledgements", 0xBF53, TLV)], True)], 0x02, b"\x30\x00", True),
    "transferEimPackage": (0xBF4E, [(None, None, [
        _f("euiccPackageRequest", 0xBF51, TLV), _f("ipaEuiccDataRequest", 0xBF52, TLV),
        _f("eimAcknowledgements", 0xBF53, TLV),
        _f("profileDownloadTriggerRequest", 0xBF54, TLV)], True)], None, None, False),
}

DECODERS = {
    "initiateAuthentication": dec.decode_initiate_authentication_response,
    "authenticateClient": dec.decode_authenticate_client_response,
    "getBoundProfilePackage": dec.decode_get_bound_profile_package_response,
    "cancelSession": dec.decode_cancel_session_response,
    "getEimPackage": dec.decode_get_eim_package_response,
    "provideEimPackageResult": dec.decode_provide_eim_package_result_response,
    "transferEimPackage": decode_transfer_eim_package_request,
}

# "Failed" header (subjectCode, reasonCode) -> the function's ASN.1 error code.
# UNCONFIRMED: the getEimPackage / provideEimPackageResult rows and the
# SGP.32-specific rows (smdp*Mismatch, invalidEimTransactionId, pprNotAllowed,
# metadataMismatch) follow two public IPAs' reading of SGP.32 5.14; the
# others are the SGP.22 ES9+ status codes of the same errors, from memory.
STATUS_CODES = {
    "getEimPackage": {("8.1.1", "3.7"): 1, ("8.1.1", "3.9"): 2, ("8.1.1", "2.1"): 3,
                      ("8.1.1", "2.2"): 4},
    "provideEimPackageResult": {("8.1.1", "3.9"): 2, ("8.1.1", "2.1"): 3, ("8.1.1", "2.2"): 4},
    "initiateAuthentication": {("8.8.1", "3.8"): 1, ("8.8.3", "3.1"): 2, ("8.8.2", "3.1"): 3,
                               ("8.8.1", "3.10"): 50, ("8.8", "3.10"): 51,
                               ("8.31.2", "3.10"): 52},
    "authenticateClient": {("8.1.2", "6.1"): 1, ("8.1.2", "6.3"): 2, ("8.1.3", "6.1"): 3,
                           ("8.1.3", "6.3"): 4, ("8.1", "6.1"): 5, ("8.2.6", "3.8"): 6,
                           ("8.1.1", "3.8"): 7, ("8.2", "3.7"): 8, ("8.11.1", "3.9"): 9,
                           ("8.10.1", "3.9"): 10, ("8.1", "4.8"): 11, ("8.2.8", "1.2"): 50},
    "getBoundProfilePackage": {("8.1", "6.1"): 1, ("8.2.7", "2.2"): 2, ("8.2.7", "3.8"): 3,
                               ("8.2.7", "6.4"): 4, ("8.2", "3.8"): 5, ("8.8.5", "4.10"): 6,
                               ("8.2.9", "3.11"): 50, ("8.10.1", "3.9"): 95},
    "cancelSession": {("8.10.1", "3.9"): 1, ("8.1", "6.1"): 2},
}


def path(function):
    """The HTTP path of a function: '/gsma/rsp2/esipa/getEimPackage'."""
    if function not in TAGS:
        raise ValueError("unknown ESipa function %r, expected one of %s"
                         % (function, ", ".join(FUNCTIONS)))
    return PATH + function


def spec_name(function):
    """'getEimPackage' -> 'ESipa.GetEimPackage' (the name FunctionError carries)."""
    return "ESipa." + function[:1].upper() + function[1:]


# ---- scalar conversions -------------------------------------------------------------------


def unhex(s, what):
    if not isinstance(s, str) or len(s) % 2 or any(ch not in "0123456789ABCDEFabcdef"
                                                    for ch in s):
        raise ProtocolError("%s: expected an even number of hex digits, got %r" % (what, s))
    return unhexlify(s)


def _one_tlv(raw, tags, what):
    """raw must be exactly one TLV with a tag in `tags`."""
    t = tlv.decode(raw)
    if t.tag not in tags:
        raise ProtocolError("%s: expected base64 of a TLV with tag %s, got tag %02X"
                            % (what, " or ".join("%02X" % x for x in tags), t.tag))
    return t


def _field_to_asn1(v, key, f, what):
    """One JSON value -> the ASN.1 TLV bytes of field f (None: leave the component out)."""
    keys, tags, kind, _req, arg = f
    tag = tags[0]
    w = "%s.%s" % (what, key)
    if kind == TLV:
        raw = unb64(v, w)
        try:
            _one_tlv(raw, tags, w)
            return raw
        except ProtocolError:
            if len(tags) == 1 and not tlv.is_constructed(tag):
                return tlv.encode(tag, raw)  # base64 of the bare value: lenient
            raise
    if kind == VALUE:
        return tlv.encode(tag, unb64(v, w))
    if kind == HEX:
        return tlv.encode(tag, unhex(v, w))
    if kind == EID:
        b = unhex(v, w)
        if len(b) != 16:
            raise ProtocolError("%s: expected 32 digits, got %r" % (w, v))
        return tlv.encode(tag, b)
    if kind == STR:
        if not isinstance(v, str):
            raise ProtocolError("%s: expected a string, got %r" % (w, v))
        return tlv.encode(tag, v.encode("utf-8"))
    if kind == INT:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ProtocolError("%s: expected an integer, got %r" % (w, v))
        return tlv.encode(tag, tlv.int_encode(v))
    if kind == NULL:
        if not isinstance(v, bool):
            raise ProtocolError("%s: expected true or false, got %r" % (w, v))
        return tlv.encode(tag) if v else None
    if kind == EXPLICIT:
        raw = unb64(v, w)
        _one_tlv(raw, arg, w)
        return tlv.encode(tag, raw)
    if kind == IMPLICIT:
        raw = unb64(v, w)
        return tlv.encode(tag, _one_tlv(raw, (arg,) + tags, w).value)
    if not isinstance(v, dict):  # OBJECT
        raise ProtocolError("%s: expected a JSON object, got %r" % (w, v))
    return tlv.encode(tag, _obj_to_asn1(v, arg, False, w))


def _field_to_json(c, f, what):
    """One ASN.1 component -> its JSON value."""
    kind, arg = f[2], f[4]
    if kind == TLV:
        return b64(c.raw)
    if kind == VALUE:
        return b64(c.value)
    if kind in (HEX, EID):
        return d.hexu(c.value)
    if kind == STR:
        return c.as_str()
    if kind == INT:
        return c.as_int()
    if kind == NULL:
        c.as_null()
        return True
    if kind == EXPLICIT:
        return b64(dec.alternative(c, f[0][0]).raw)
    if kind == IMPLICIT:
        return b64(tlv.encode(arg, c.value))
    return _asn1_to_obj(c, arg, "%s.%s" % (what, f[0][0]))


# ---- objects --------------------------------------------------------------------------------


def _get(obj, keys):
    for k in keys:
        v = obj.get(k)
        if v is not None:
            return k, v
    return keys[0], None


def _obj_to_asn1(obj, fields, choice, what):
    """A JSON object -> the DER of its components, in the module's order."""
    parts = []
    for f in fields:
        key, v = _get(obj, f[0])
        if v is None:
            if f[3]:
                raise ProtocolError("%s: missing %r" % (what, f[0][0]))
            continue
        p = _field_to_asn1(v, key, f, what)
        if p is not None:
            parts.append(p)
    if choice and len(parts) > 1:
        raise ProtocolError("%s: expected one of %s, got several"
                            % (what, ", ".join(f[0][0] for f in fields)))
    return b"".join(parts)


def _asn1_to_obj(t, fields, what):
    """A constructed TLV's components, in order, -> a JSON object (unknown tags refused)."""
    obj = {}
    i = 0
    for c in t:
        while i < len(fields) and c.tag not in fields[i][1]:
            i += 1
        if i == len(fields):
            raise ProtocolError("%s: no JSON mapping for tag %02X at offset %d"
                                % (what, c.tag, c.start))
        obj[fields[i][0][0]] = _field_to_json(c, fields[i], what)
        i += 1
    for f in fields:
        if f[3] and f[0][0] not in obj:
            raise ProtocolError("%s: component %s missing" % (what, f[0][0]))
    return obj


def _bodies(sender):
    if sender == "ipa":
        return IPA_BODIES
    if sender == "eim":
        return EIM_BODIES
    raise ValueError("sender %r: expected 'ipa' or 'eim'" % (sender,))


def _spec(function, sender):
    b = _bodies(sender)
    if function not in b:
        raise ValueError("no %s -> %s JSON body for function %r" % (
            sender, "eim" if sender == "ipa" else "ipa", function))
    return b[function]


def load(body, what):
    """A JSON body (str or bytes; empty = {}) -> dict."""
    if body is None:
        return {}
    if isinstance(body, (bytes, bytearray)):
        if len(body) > MAX_BODY:
            raise ProtocolError("%s: a JSON body of %d bytes, expected at most %d"
                                % (what, len(body), MAX_BODY))
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeError:
            raise ProtocolError("%s: the JSON body is not UTF-8" % what)
    if len(body) > MAX_BODY:
        raise ProtocolError("%s: a JSON body of %d characters, expected at most %d"
                            % (what, len(body), MAX_BODY))
    if not body.strip():
        return {}
    try:
        obj = loads(body)
    except ValueError:
        raise ProtocolError("%s: the body is not JSON: %r" % (what, body[:60]))
    if not isinstance(obj, dict):
        raise ProtocolError("%s: expected a JSON object, got %r" % (what, body[:60]))
    return obj


def status_failure(obj, what):
    """None for success (or no header); else the "Failed" statusCodeData dict ({} if none given)."""
    h = obj.get("header")
    if h is None:
        return None
    fes = h.get("functionExecutionStatus") if isinstance(h, dict) else None
    status = fes.get("status") if isinstance(fes, dict) else None
    if status in ("Executed-Success", "Executed-WithWarning"):
        return None
    if status != "Failed":
        raise ProtocolError("%s: header.functionExecutionStatus.status %r, expected "
                            "Executed-Success or Failed" % (what, status))
    scd = fes.get("statusCodeData")
    return scd if isinstance(scd, dict) else {}


# ---- the mappings ---------------------------------------------------------------------------


def json_to_asn1(function, body, sender="eim"):
    """A JSON body of `function` sent by `sender` ("eim" or "ipa") -> the DER of the ASN.1 message.

    A "Failed" header becomes the function's error alternative (code from
    STATUS_CODES, 127 when unknown); a function whose ASN.1 form has no error
    alternative raises EimError instead.
    """
    return _to_asn1(function, load(body, "%s JSON body" % spec_name(function)), sender)


def _to_asn1(function, obj, sender):
    tag, alts, error_tag, empty, _header = _spec(function, sender)
    what = "%s JSON body" % spec_name(function)
    failed = status_failure(obj, what)
    if failed is not None:
        n = _failure_code(function, failed)
        if error_tag is None:
            raise _eim_error(function, n, None, failed)
        return tlv.encode(tag, tlv.encode(error_tag, tlv.int_encode(n)))
    alt = alts[-1]
    for a in alts:
        if a[1] is None or _get(obj, (a[1],))[1] is not None:
            alt = a
            break
    wrapper, _key, fields, choice = alt
    content = _obj_to_asn1(obj, fields, choice, what)
    if not content and choice:
        if empty is None:
            raise ProtocolError("%s: expected one of %s" % (what, ", ".join(
                f[0][0] for f in fields)))
        content = empty
    if wrapper is not None:
        content = tlv.encode(wrapper, content)
    return tlv.encode(tag, content)


def asn1_to_json(message, sender="ipa"):
    """An ESipa ASN.1 message sent by `sender` -> (function, JSON text).

    An eIM error alternative becomes a "Failed" header (with the first
    statusCodeData of STATUS_CODES naming that code, if any).
    """
    t = tlv.decode(message)
    bodies = _bodies(sender)
    function = None
    for name in bodies:
        if bodies[name][0] == t.tag:
            function = name
    if function is None:
        raise ProtocolError("no %s JSON body for ESipa tag %02X" % (sender, t.tag))
    tag, alts, error_tag, empty, header = bodies[function]
    what = spec_name(function)
    t = d.unwrap(t)
    obj = {}
    kids = t.children()
    field_tags = [x for a in alts for f in a[2] for x in f[1]]
    if empty is not None and len(kids) == 1 and kids[0].raw == empty:
        pass
    elif error_tag is not None and len(kids) == 1 and kids[0].tag == error_tag and \
            error_tag not in field_tags:
        n = kids[0].as_int()
        scd = {}
        table = STATUS_CODES.get(function, {})
        for k in table:
            if table[k] == n:
                scd = {"subjectCode": k[0], "reasonCode": k[1]}
        fes = {"status": "Failed"}
        if scd:
            fes["statusCodeData"] = scd
        return function, dumps({"header": {"functionExecutionStatus": fes}})
    else:
        for wrapper, _key, fields, _choice in alts:
            if wrapper is None:
                obj = _asn1_to_obj(t, fields, what)
                break
            if len(kids) == 1 and kids[0].tag == wrapper:
                obj = _asn1_to_obj(kids[0], fields, what)
                break
        else:
            raise ProtocolError("%s: no JSON mapping for %s" % (
                what, "tag %02X" % kids[0].tag if kids else "an empty message"))
    if header:
        obj["header"] = SUCCESS
    return function, dumps(obj)


def to_json(message, version=None):
    """An EsipaMessageFromIpaToEim (from ipa_core.esipa) -> (function, JSON body to POST).

    The JSON keys are the same in SGP.32 v1.0 (the binding is not in the ASN.1 modules,
    docs/versions.md): v1.0's rPLMN [1] '81' goes out as "rPlmn" like v1.2's '82'; the
    other v1.0 forms travel inside the TLVs the JSON carries.
    """
    t = tlv.decode(message)
    if t.tag == 0xBF4F and ver.tag("GetEimPackageRequest.rPLMN", version) == 0x81:
        message = tlv.encode(0xBF4F, [tlv.encode(0x82, c.value) if c.tag == 0x81 else c.raw
                                      for c in t.children()])
    return asn1_to_json(message, "ipa")


def _failure_code(function, scd):
    """The ASN.1 error code of a Failed header; 127 when its codes are unknown, or not plain
    strings or numbers (es9p.status_key)."""
    return STATUS_CODES.get(function, {}).get(status_key(scd), 127)


def _eim_error(function, n, names, scd):
    e = EimError(spec_name(function), n, (names or {}).get(n))
    e.status_code_data = scd
    return e


def from_json(function, body):
    """The eIM's JSON body for `function` -> the same dict the ASN.1 decoder gives.

    getEimPackage / provideEimPackageResult / the download functions: the
    eIM's answer; transferEimPackage: the eIM's pushed request;
    handleNotification: None (no body). Errors as the ASN.1 decoders raise
    them; an EimError from a "Failed" header carries `status_code_data`
    (and an eimPackageError dict from one a "statusCodeData" key).
    """
    what = "%s JSON body" % spec_name(function)
    if function == "handleNotification":
        failed = status_failure(load(body, what), what)
        if failed is not None:
            raise _eim_error(function, _failure_code(function, failed), None, failed)
        return None
    decoder = DECODERS.get(function)
    if decoder is None:
        raise ValueError("unknown ESipa function %r, expected one of %s"
                         % (function, ", ".join(FUNCTIONS)))
    obj = load(body, what)
    failed = status_failure(obj, what)
    try:
        out = decoder(_to_asn1(function, obj, "eim"))
    except EimError as e:
        e.status_code_data = failed
        raise
    if failed is not None:
        out["statusCodeData"] = failed
    return out


def open_get_bound_profile_package_response(reader, max_segment=None, max_package=MAX_PACKAGE,
                                            transaction_id=None):
    """The eIM's getBoundProfilePackage JSON body read from a stream (ipa_core.stream) ->
    {"transactionId", "segments": es10_download.BppSegments}, as
    esipa.open_get_bound_profile_package_response gives for the ASN.1 binding: the same
    scanner as ES9+ (es9p.open_bound_profile_package, ipa_core.json_stream), so the package
    is never whole in RAM. A "Failed" header -> EimError (with status_code_data), checked
    in front of the package or, when it comes after, before the package's last bytes go
    out; transactionId (optional here; compared with `transaction_id`, the session's, when
    given) likewise, else the one in InitialiseSecureChannel is returned."""
    f = "getBoundProfilePackage"
    what = "%s JSON body" % spec_name(f)

    def check(obj, complete):
        failed = status_failure(obj, what)
        if failed is not None:
            raise _eim_error(f, _failure_code(f, failed), dec.GET_BOUND_PROFILE_PACKAGE_ERROR,
                             failed)
        tid = obj.get("transactionId")
        if tid is None:
            return
        got = unhex(tid, what + ".transactionId")
        if transaction_id is not None and got != bytes(transaction_id):
            raise ProtocolError("%s: transactionId %s, expected the session's %s"
                                % (what, tid, hexlify(transaction_id).decode().upper()))

    members, segs = open_bound_profile_package(reader, what, check, max_package, max_segment)
    tid = members.get("transactionId")
    return {"transactionId": unhex(tid, what + ".transactionId") if tid is not None
            else segs.transaction_id(), "segments": segs}
