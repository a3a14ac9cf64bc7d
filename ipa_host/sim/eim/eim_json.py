"""ESipa JSON binding, eIM side (SGP.32 v1.2 6.1.2, 6.4): `POST /gsma/rsp2/esipa/<function>`.

The eIM's reading (the spec text of 6.4 was not at hand; this follows the
SGP.22 6.5 JSON conventions and a public IPA implementation's reading of
SGP.32 6.4):

- requests carry no "header"; every answer with a body carries
  "header": {"functionExecutionStatus": {"status": "Executed-Success" |
  "Failed", "statusCodeData": {"subjectCode", "reasonCode", "message"}}}
  and comes with HTTP 200 whether the function succeeded or not;
- keys are the ASN.1 component names; an ASN.1 object is base64 of its DER
  TLV (tag included); eidValue is the 32 digits; NULL flags are true;
  INTEGERs are JSON numbers; rPLMN is "rPlmn" (base64 of the 3 bytes;
  "rPLMN" read too).

    getEimPackage            {eidValue, notifyStateChange?, stateChangeCause?, rPlmn?}
                             -> {header, euiccPackageRequest | ipaEuiccDataRequest |
                                 profileDownloadTriggerRequest | eimPackageError}
    provideEimPackageResult  {eidValue?, eimPackageResult (the EimPackageResult TLV:
                              BF51, 30, BF52, BF54 or A0)} -> {header, eimAcknowledgements?
                              (base64 of BF53)}
    handleNotification       {pendingNotification (the PendingNotification TLV) |
                              provideEimPackageResult (BF50)} -> HTTP 204, no body
    initiateAuthentication   {euiccChallenge (base64 of the 16 bytes), smdpAddress?,
                              euiccInfo1?, eimTransactionId? (hex)}
                             -> {header, transactionId (hex), serverSigned1, serverSignature1,
                                 euiccCiPKIdentifierToBeUsed, serverCertificate}
    authenticateClient       {transactionId, authenticateServerResponse}
                             -> {header, transactionId, profileMetadata?, smdpSigned2,
                                 smdpSignature2, smdpCertificate}
    getBoundProfilePackage   {transactionId, prepareDownloadResponse}
                             -> {header, transactionId, boundProfilePackage}
    cancelSession            {transactionId, cancelSessionResponse (the ES10b answer 'BF41')}
                             -> {header}
    (relayed to the SM-DP+ by ipa_host.sim.eim.eim_relay; an error is "Failed" with the
    ES9+ status code of the same error, eim_relay.ESIPA_STATUS, none for undefinedError)

A function error is the "Failed" header with the status code of SGP.32
5.14.5 Table 18 / 5.14.6 Table 21 as read publicly (eidNotFound 8.1.1/3.9,
invalidEid 8.1.1/2.1, missingEid 8.1.1/2.2, noEimPackageAvailable
8.1.1/3.7); getEimPackage also names the code in "eimPackageError", so a
reader of either place gets it. undefinedError is a "Failed" header without
statusCodeData. The request is rebuilt as the ASN.1 message and served by
the same code as the ASN.1 binding, so both bindings behave alike.
"""

import base64
import binascii
import json

from ipa_core import tlv
from ipa_core.errors import TlvError
from ipa_host.sim.eim import eim_codec as codec
from ipa_host.sim.eim.eim_esipa import RELAY_NOTE, EsipaRefused  # noqa: F401 (eim_http reads it)
from ipa_host.sim.eim.eim_relay import ESIPA_STATUS

PATH_PREFIX = "/gsma/rsp2/esipa/"
CONTENT_TYPE = "application/json;charset=UTF-8"

FUNCTION_TAGS = {name: tag for tag, name in codec.FUNCTIONS.items()}
RELAYS = ()  # functions answered without the eIM (none since eim_relay serves the download)
RELAY_FUNCTIONS = ("initiateAuthentication", "authenticateClient", "getBoundProfilePackage",
                   "cancelSession")

STATUS_CODES = {  # error code -> (subjectCode, reasonCode)
    codec.NO_EIM_PACKAGE_AVAILABLE: ("8.1.1", "3.7"),
    codec.EID_NOT_FOUND: ("8.1.1", "3.9"),
    codec.INVALID_EID: ("8.1.1", "2.1"),
    codec.MISSING_EID: ("8.1.1", "2.2"),
}
SUCCESS = {"functionExecutionStatus": {"status": "Executed-Success"}}


def failed(code=None, message=None, subject=None):
    """A "Failed" header; statusCodeData when the code has a status code (or one is given)."""
    fes = {"status": "Failed"}
    pair = subject or STATUS_CODES.get(code)
    if pair is not None:
        fes["statusCodeData"] = {"subjectCode": pair[0], "reasonCode": pair[1],
                                 "message": message or ""}
    return {"functionExecutionStatus": fes}


def _b64(b):
    return base64.b64encode(bytes(b)).decode("ascii")


def _unb64(value, what):
    if not isinstance(value, str):
        raise EsipaRefused("%s: expected a base64 string, got %s" % (what, type(value).__name__))
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeError):
        raise EsipaRefused("%s: not valid base64" % what)


def _tlv(value, what, tags=None):
    data = _unb64(value, what)
    try:
        t = tlv.decode(data)
    except TlvError as e:
        raise EsipaRefused("%s: not one BER-TLV: %s" % (what, e))
    if tags is not None and t.tag not in tags:
        raise EsipaRefused("%s: expected tag %s, got %X"
                           % (what, " or ".join("%X" % x for x in tags), t.tag))
    return t


def _eid_tlv(value):
    """eidValue -> 5A TLV. Not 32 digits is left for the function to answer invalidEid."""
    if isinstance(value, str) and len(value) % 2 == 0:
        try:
            return tlv.encode(0x5A, binascii.unhexlify(value))
        except (binascii.Error, ValueError):
            pass
    return tlv.encode(0x5A, json.dumps(value).encode("utf-8")[:64])


def parse_body(body):
    """JSON text -> object, or EsipaRefused naming what is wrong."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeError, ValueError) as e:
        raise EsipaRefused("body is not JSON: %s" % e)
    if not isinstance(obj, dict):
        raise EsipaRefused("body must be a JSON object, got %s" % type(obj).__name__)
    return obj


def request_to_asn1(function, obj, version="1.2"):
    """The ASN.1 ESipa message equivalent to a JSON request, in `version`'s form.

    SGP.32 v1.0 (its JSON binding is not in the ASN.1 module; the same keys are read):
    rPlmn becomes '81', eidValue of provideEimPackageResult is left out (v1.0's BF50
    has none), a provideEimPackageResult notification is carried as 'A1'; what v1.0
    cannot carry (stateChangeCause) is refused by the ASN.1 code after this.
    """
    v1_0 = codec.v1_0(version)
    if function == "getEimPackage":
        parts = []
        if "eidValue" in obj:
            parts.append(_eid_tlv(obj["eidValue"]))
        if obj.get("notifyStateChange") is not None:
            if obj["notifyStateChange"] is not True:
                raise EsipaRefused("notifyStateChange: expected true when present, got %r"
                                   % (obj["notifyStateChange"],))
            parts.append(tlv.encode(0x80))
        cause = obj.get("stateChangeCause")
        if cause is not None:
            if isinstance(cause, bool) or not isinstance(cause, int) or not 0 <= cause <= 255:
                raise EsipaRefused("stateChangeCause: expected an integer, got %r" % (cause,))
            parts.append(tlv.encode(0x81, tlv.int_encode(cause)))
        rplmn = obj.get("rPlmn", obj.get("rPLMN"))
        if rplmn is not None:
            raw = _unb64(rplmn, "rPlmn")
            if len(raw) != 3:
                raise EsipaRefused("rPlmn: expected base64 of 3 bytes, got %d bytes" % len(raw))
            parts.append(tlv.encode(0x81 if v1_0 else 0x82, raw))
        return tlv.encode(codec.GET_EIM_PACKAGE, parts)
    if function == "provideEimPackageResult":
        if "eimPackageResult" not in obj:
            raise EsipaRefused("provideEimPackageResult: eimPackageResult is required")
        res = _tlv(obj["eimPackageResult"], "eimPackageResult", (0xBF51, 0x30, 0xBF52, 0xBF54,
                                                                 0x02 if v1_0 else 0xA0))
        eid = _eid_tlv(obj["eidValue"]) if "eidValue" in obj and not v1_0 else None
        return tlv.enc(codec.PROVIDE_EIM_PACKAGE_RESULT, eid, res.raw)
    if function == "handleNotification":
        if ("pendingNotification" in obj) == ("provideEimPackageResult" in obj):
            raise EsipaRefused("handleNotification: expected exactly one of pendingNotification"
                               " and provideEimPackageResult")
        if "provideEimPackageResult" in obj:
            res = _tlv(obj["provideEimPackageResult"], "provideEimPackageResult", (0xBF50,))
            return tlv.encode(codec.HANDLE_NOTIFICATION, tlv.encode(0xA1, res.value) if v1_0
                              else res.raw)
        n = _tlv(obj["pendingNotification"], "pendingNotification", codec.PENDING_NOTIFICATION_TAGS)
        return tlv.encode(codec.HANDLE_NOTIFICATION, tlv.encode(0xA0, n.raw))
    if function in RELAY_FUNCTIONS:
        return _relay_request(function, obj)
    raise EsipaRefused("%s is not served through this mapping" % function)


def _bare(value, what):
    """base64 of a bare value or of its TLV -> the bare value (lenient, as the IPA side is)."""
    return _unb64(value, what)


def _tid_tlv(obj, tag=0x80):
    v = obj.get("transactionId")
    if not isinstance(v, str) or len(v) > 64:
        raise EsipaRefused("transactionId: expected hex, got %r" % (v,))
    try:
        return tlv.encode(tag, binascii.unhexlify(v))
    except (binascii.Error, ValueError):
        raise EsipaRefused("transactionId: expected hex, got %r" % v[:40])


def _relay_request(function, obj):
    """ESipa JSON download request -> the ASN.1 request (the relay serves both bindings)."""
    tag = FUNCTION_TAGS[function]
    if function == "initiateAuthentication":
        if "euiccChallenge" not in obj:
            raise EsipaRefused("initiateAuthentication: euiccChallenge is required")
        parts = [tlv.encode(0x81, _bare(obj["euiccChallenge"], "euiccChallenge"))]
        if obj.get("smdpAddress") is not None:
            if not isinstance(obj["smdpAddress"], str):
                raise EsipaRefused("smdpAddress: expected a string")
            parts.append(tlv.encode(0x83, obj["smdpAddress"].encode("utf-8")))
        if obj.get("euiccInfo1") is not None:
            parts.append(_tlv(obj["euiccInfo1"], "euiccInfo1", (0xBF20,)).raw)
        if obj.get("eimTransactionId") is not None:
            parts.append(_tid_tlv({"transactionId": obj["eimTransactionId"]}, 0x82))
        return tlv.encode(tag, b"".join(parts))
    key, inner = {"authenticateClient": ("authenticateServerResponse", 0xBF38),
                  "getBoundProfilePackage": ("prepareDownloadResponse", 0xBF21),
                  "cancelSession": ("cancelSessionResponse", 0xBF41)}[function]
    if key not in obj or "transactionId" not in obj:
        raise EsipaRefused("%s: transactionId and %s are required" % (function, key))
    t = _tlv(obj[key], key, (inner, 0xA1) if function == "cancelSession" else (inner,))
    raw = tlv.encode(0xA1, t.value) if function == "cancelSession" else t.raw  # [1] in ASN.1
    return tlv.encode(tag, _tid_tlv(obj) + raw)


def _relay_answer(function, der):
    t = tlv.decode(der, max_len=0xFFFFFF)  # a relayed BPP: 2 MB profiles and more
    inner = next(iter(t))
    if inner.tag != 0xA0:  # the error alternative
        code = inner.as_int()
        pair = ESIPA_STATUS[function].get(code)
        return {"header": failed(message="%s error %d" % (function, code), subject=pair)}
    out = {"header": SUCCESS}
    if function == "cancelSession":
        return out
    seqs = []
    for c in inner:
        if c.tag == 0x80:
            out["transactionId"] = codec.hexu(c.value)
        elif c.tag == 0x30:
            seqs.append(c.raw)
        elif c.tag == 0x5F37:
            out["serverSignature1" if function == "initiateAuthentication"
                else "smdpSignature2"] = _b64(c.raw)
        elif c.tag == 0x04:
            out["euiccCiPKIdentifierToBeUsed"] = _b64(c.raw)
        elif c.tag == 0xBF25:
            out["profileMetadata"] = _b64(c.raw)
        elif c.tag == 0xBF36:
            out["boundProfilePackage"] = _b64(c.raw)
    names = {"initiateAuthentication": ("serverSigned1", "serverCertificate"),
             "authenticateClient": ("smdpSigned2", "smdpCertificate")}.get(function, ())
    for name, raw in zip(names, seqs):
        out[name] = _b64(raw)
    return out


def answer_to_json(function, der):
    """The JSON answer for the ASN.1 answer `der` of `function`."""
    if function in RELAY_FUNCTIONS:
        return _relay_answer(function, der)
    t = tlv.decode(der)
    if function == "provideEimPackageResult" and not t.length:
        return {"header": SUCCESS}  # v1.0: nothing to acknowledge is BF50 00
    inner = next(iter(t))
    if function == "getEimPackage":
        if inner.tag == 0x02:
            code = inner.as_int()
            return {"header": failed(code, codec.EIM_PACKAGE_ERRORS.get(code)),
                    "eimPackageError": code}
        key = {0xBF51: "euiccPackageRequest", 0xBF52: "ipaEuiccDataRequest",
               0xBF54: "profileDownloadTriggerRequest"}[inner.tag]
        return {"header": SUCCESS, key: _b64(inner.raw)}
    if function == "provideEimPackageResult":
        if inner.tag == 0x02:
            code = inner.as_int()
            return {"header": failed(code, codec.PROVIDE_RESULT_ERRORS.get(code))}
        if inner.tag == codec.EIM_ACKNOWLEDGEMENTS:
            return {"header": SUCCESS, "eimAcknowledgements": _b64(inner.raw)}
        return {"header": SUCCESS}
    raise ValueError("no JSON answer for %s" % function)
