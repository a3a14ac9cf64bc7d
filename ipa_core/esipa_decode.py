"""ESipa, eIM -> IPA: decoders of every EsipaMessageFromEimToIpa (SGP.32 v1.2 6.3, ASN.1 binding).

Re-exported by ipa_core.esipa; conventions as in ipa_core.es10_decode
(ASN.1 component names as keys, "raw" = the exact TLV of anything signed,
to be passed to the eUICC byte for byte, identifiers as upper-case hex,
transaction ids as bytes).

The bottom of the ESipa modules: it also holds the few helpers the IPA -> eIM
builders share (raw_tlv, retag, code, epr_and_notifications and their name
tables), so ipa_core.esipa, esipa_push and esipa_compact all import them from
here and none imports another (esipa imports the other two on first use).

Errors:
- bytes that are not the expected message -> TlvError / ProtocolError
  saying what was expected; an unknown CHOICE alternative -> ProtocolError
  naming its tag;
- an eIM error code in a download response (InitiateAuthentication,
  AuthenticateClient, GetBoundProfilePackage, CancelSession) or in a
  ProvideEimPackageResultResponse -> EimError(function, code, name);
- eimPackageError in a GetEimPackageResponse is returned as data (kind
  "eimPackageError"): noEimPackageAvailable is the normal idle answer.

Tolerance (README of the ASN.1 modules): a tagged CHOICE/SEQUENCE may come
wrapped once more in its own tag; untagged INTEGER alternatives next to
tagged ones are universal '02' per X.680, the automatic-tag form is
accepted too; unknown extension components are ignored.
"""

from ipa_core import tlv
from ipa_core import es10_decode as d
from ipa_core import version as ver
from ipa_core.errors import EimError, ProtocolError, TlvError, Names
from ipa_core.es10_download import MAX_PACKAGE, MAX_SEGMENT, BppSegments
from ipa_core.stream import TlvReader, close_quietly

# ---- names (numbers from SGP32Definitions v1.2) ---------------------------------------

EIM_PACKAGE_ERROR = Names(((1, "noEimPackageAvailable"), (2, "eidNotFound"), (3, "invalidEid"),
                           (4, "missingEid"), (127, "undefinedError")))
PROVIDE_EIM_PACKAGE_RESULT_ERROR = Names(((2, "eidNotFound"), (3, "invalidEid"),
                                          (4, "missingEid"), (127, "undefinedError")))
INITIATE_AUTHENTICATION_ERROR = Names(((1, "invalidDpAddress"),
                                       (2, "euiccVersionNotSupportedByDp"),
                                       (3, "ciPKIdNotSupported"), (50, "smdpAddressMismatch"),
                                       (51, "smdpOidMismatch"), (52, "invalidEimTransactionId"),
                                       (127, "undefinedError")))
AUTHENTICATE_CLIENT_ERROR = Names(((1, "eumCertificateInvalid"), (2, "eumCertificateExpired"),
                                   (3, "euiccCertificateInvalid"),
                                   (4, "euiccCertificateExpired"), (5, "euiccSignatureInvalid"),
                                   (6, "matchingIdRefused"), (7, "eidMismatch"),
                                   (8, "noEligibleProfile"), (9, "ciPKUnknown"),
                                   (10, "invalidTransactionId"), (11, "insufficientMemory"),
                                   (50, "pprNotAllowed"), (56, "eventIdUnknown"),
                                   (127, "undefinedError")))
GET_BOUND_PROFILE_PACKAGE_ERROR = Names(((1, "euiccSignatureInvalid"),
                                         (2, "confirmationCodeMissing"),
                                         (3, "confirmationCodeRefused"),
                                         (4, "confirmationCodeRetriesExceeded"),
                                         (5, "bppRebindingRefused"),
                                         (6, "downloadOrderExpired"), (50, "metadataMismatch"),
                                         (95, "invalidTransactionId"), (127, "undefinedError")))
CANCEL_SESSION_ERROR = Names(((1, "invalidTransactionId"), (2, "euiccSignatureInvalid"),
                              (127, "undefinedError")))

PSMO = Names(((0xA3, "enable"), (0xA4, "disable"), (0xA5, "delete"),
              (0xBF2D, "listProfileInfo"), (0xA6, "getRAT"), (0xA7, "configureImmediateEnable"),
              (0xA8, "setFallbackAttribute"), (0xA9, "unsetFallbackAttribute"),
              (0xBF65, "setDefaultDpAddress")))
ECO = Names(((0xA8, "addEim"), (0xA9, "deleteEim"), (0xAA, "updateEim"), (0xAB, "listEim")))

# IPA -> eIM (the builders in ipa_core.esipa and esipa_push take these).
EIM_PACKAGE_RESULT_ERROR_CODE = Names(((1, "invalidPackageFormat"), (2, "unknownPackage"),
                                       (127, "undefinedError")))
MAX_TLV = 0xFFFFFF  # longest length of 3 bytes: streamed TLVs are bounded by max_package
WRAPPER = 64  # bytes of BF3A { A0 { 80 transactionId, ... } } around a streamed BF36
PENDING_NOTIFICATION_TAGS = (0xBF37, 0x30, 0xA0, 0xA1)  # SGP32-PendingNotification alternatives

# IpaEuiccData components a tagList may select (SGP.32 IpaEuiccData, tag -> name).
IPA_EUICC_DATA_ITEMS = Names(((0xA0, "notificationsList"), (0x81, "defaultSmdpAddress"),
                              (0xA2, "euiccPackageResultList"), (0xBF20, "euiccInfo1"),
                              (0xBF22, "euiccInfo2"), (0x83, "rootSmdsAddress"),
                              (0x84, "associationToken"), (0xA5, "eumCertificate"),
                              (0xA6, "euiccCertificate"), (0x87, "eimTransactionId"),
                              (0xA8, "ipaCapabilities"), (0xA9, "deviceInfo")))


def ipa_euicc_data_items(tags, version=ver.DEFAULT):
    """(names, unknown tags) a tagList selects in `version` (the moved tags: ipa_core.version)."""
    table = {}
    moved_names = ver.names()
    for t, name in IPA_EUICC_DATA_ITEMS.items():
        moved = "IpaEuiccData." + name
        if moved in moved_names:
            t = ver.tag(moved, version)
        if t is not None:
            table[t] = name
    return ([table[x] for x in tags if x in table], [x for x in tags if x not in table])


MAX_EIM_ID = 128  # eimId UTF8String (SIZE(1..128))
MAX_ACTIVATION_CODE = 255  # activationCode UTF8String (SIZE(0..255))
MAX_TAG_LIST = 64  # a tagList naming every IpaEuiccData item twice is 30 bytes
MAX_ACKS = 1000  # seqNumbers in one EimAcknowledgements


# ---- small pieces ----------------------------------------------------------------------


def message(data, tag, function, what):
    """The top-level TLV of an eIM answer: one TLV with `tag` (unwrapped once if doubled)."""
    if data is None or not len(data):
        raise ProtocolError("%s: the eIM answered no data, expected a %02X %s"
                            % (function, tag, what))
    t = tlv.decode(data)
    if t.tag != tag:
        raise TlvError(0, "a %02X %s from %s" % (tag, what, function), "tag %02X" % t.tag)
    return d.unwrap(t)


def alternative(t, what):
    """The one TLV inside a CHOICE TLV t."""
    kids = t.children()
    if len(kids) != 1:
        raise TlvError(t.vstart, "one %s alternative in %02X" % (what, t.tag),
                       "%d TLVs" % len(kids))
    return kids[0]


def unknown(c, what, expected):
    return ProtocolError("unknown %s alternative tag %02X at offset %d, expected %s"
                         % (what, c.tag, c.start, expected))


def transaction_id(c, what="transactionId"):
    """TransactionId ::= OCTET STRING (SIZE(1..16)) -> bytes."""
    if not 1 <= c.length <= 16:
        raise TlvError(c.vstart, "a %s of 1..16 bytes" % what, "%d bytes" % c.length)
    return c.value


def bounded_str(c, what, lo, hi):
    s = c.as_str()
    if not lo <= c.length <= hi:
        raise TlvError(c.vstart, "a %s of %d..%d bytes" % (what, lo, hi), "%d bytes" % c.length)
    return s


def eid_hex(c):
    if c.length != 16:
        raise TlvError(c.vstart, "a 16-byte eidValue", "%d bytes" % c.length)
    return d.hexu(c.value)


def error_code(c, names, function):
    """The EimError for an INTEGER error alternative c."""
    code = c.as_int()
    return EimError(function, code, names.get(code))


def tag_list(c):
    """tagList '5C' value -> list of int tags (BER tag rules, at most 3 bytes each)."""
    v = c.value
    if len(v) > MAX_TAG_LIST:
        raise TlvError(c.vstart, "a tagList of at most %d bytes" % MAX_TAG_LIST,
                       "%d bytes" % len(v))
    out = []
    i = 0
    while i < len(v):
        tag = v[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while True:
                if i >= len(v) or len(tlv.tag_bytes(tag)) >= 3:
                    raise TlvError(c.vstart + i, "a complete tag in tagList", "a cut tag")
                b = v[i]
                tag = (tag << 8) | b
                i += 1
                if not b & 0x80:
                    break
        out.append(tag)
    return out


# ---- eIM packages (GetEimPackageResponse, TransferEimPackageRequest) ------------------


def _iccid_only(c):
    return {"iccid": d.v_iccid(c.need(0x5A, "iccid"))}


def _psmo(c):
    name = PSMO.get(c.tag)
    if name is None:
        return {"unknownTag": c.tag, "raw": c.raw}
    if name == "enable":
        v = _iccid_only(c)
        v["rollbackFlag"] = c.find(0x05) is not None
    elif name in ("disable", "delete", "setFallbackAttribute"):
        v = _iccid_only(c)
    elif name == "listProfileInfo":
        v = {"raw": c.raw}
    elif name == "configureImmediateEnable":
        v = d.fields(c, {0x80: ("immediateEnableFlag", d.v_present),
                         0x81: ("defaultSmdpOid", d.v_oid),
                         0x82: ("defaultSmdpAddress", d.v_str)}, {"immediateEnableFlag": False})
    elif name == "setDefaultDpAddress":
        v = {"defaultDpAddress": d.need_any(c, (0x80, 0x0C), "defaultDpAddress").as_str()}
    else:  # getRAT, unsetFallbackAttribute: empty SEQUENCEs
        v = {}
    return {name: v}


def _eco(c):
    name = ECO.get(c.tag)
    if name is None:
        return {"unknownTag": c.tag, "raw": c.raw}
    if name in ("addEim", "updateEim"):
        return {name: d.eim_configuration_data(c)}
    if name == "deleteEim":
        return {name: {"eimId": c.need(0x80, "eimId").as_str()}}
    return {name: {}}


def euicc_package_request(t):
    """EuiccPackageRequest 'BF51' -> a view for decisions + "raw" (forward to LoadEuiccPackage).

    Keys: kind "euiccPackageRequest", raw, signedData (the signed '30'),
    eimId, eidValue (hex), counterValue, eimTransactionId (bytes, if present),
    euiccPackage ({"psmoList": [...]} or {"ecoList": [...]}), eimSignature.
    Each operation is {name: params}: enable {iccid, rollbackFlag}, disable /
    delete / setFallbackAttribute {iccid}, listProfileInfo {raw},
    getRAT {}, configureImmediateEnable {immediateEnableFlag, defaultSmdpOid?,
    defaultSmdpAddress?}, unsetFallbackAttribute {}, setDefaultDpAddress
    {defaultDpAddress}; addEim / updateEim (EimConfigurationData dict, see
    es10_decode.eim_configuration_data), deleteEim {eimId}, listEim {}; an
    unknown one {"unknownTag": n, "raw": b} (the eUICC judges it).
    """
    t = d.expect(d.unwrap(t), 0xBF51, "EuiccPackageRequest")
    out = {"kind": "euiccPackageRequest", "raw": t.raw}
    s = t.need(0x30, "euiccPackageSigned")
    out["signedData"] = s.raw
    out["eimId"] = bounded_str(s.need(0x80, "eimId"), "eimId", 1, MAX_EIM_ID)
    out["eidValue"] = eid_hex(s.need(0x5A, "eidValue"))
    out["counterValue"] = s.need(0x81, "counterValue").as_int()
    tid = s.find(0x82)
    if tid is not None:
        out["eimTransactionId"] = transaction_id(tid, "eimTransactionId")
    pkg = d.need_any(s, (0xA0, 0xA1), "euiccPackage: psmoList (A0) or ecoList (A1)")
    if pkg.tag == 0xA0:
        out["euiccPackage"] = {"psmoList": [_psmo(c) for c in pkg]}
    else:
        out["euiccPackage"] = {"ecoList": [_eco(c) for c in pkg]}
    out["eimSignature"] = t.need(0x5F37, "eimSignature").value
    return out


def _search_notification(c):
    k = alternative(c, "searchCriteriaNotification")
    if k.tag == 0x80:
        return {"seqNumber": k.as_uint()}
    if k.tag == 0x81:
        return {"profileManagementOperation": k.as_bits(d.NOTIFICATION_EVENT)}
    if k.tag == 0x82:  # v1.0 searchCriteria's euiccPackageResults [2] NULL
        k.as_null()
        return {"euiccPackageResults": True}
    raise unknown(k, "searchCriteriaNotification", "seqNumber (80), "
                  "profileManagementOperation (81) or (v1.0) euiccPackageResults (82)")


def _search_epr(c):
    k = alternative(c, "searchCriteriaEuiccPackageResult")
    if k.tag != 0x80:
        raise unknown(k, "searchCriteriaEuiccPackageResult", "seqNumber (80)")
    return {"seqNumber": k.as_uint()}


def ipa_euicc_data_request(t):
    """IpaEuiccDataRequest 'BF52' -> dict.

    Keys: kind "ipaEuiccDataRequest", raw, tagList (list of int tags as
    sent), items (IpaEuiccData component names the tagList selects, see
    IPA_EUICC_DATA_ITEMS), unknownTags (tags naming nothing: answer
    incorrectTagList), euiccCiPKIdentifierToBeUsed (hex)?,
    searchCriteriaNotification ({"seqNumber": n} or
    {"profileManagementOperation": [names]})?, searchCriteriaEuiccPackageResult
    ({"seqNumber": n})?, eimTransactionId (bytes)?.
    """
    t = d.expect(d.unwrap(t), 0xBF52, "IpaEuiccDataRequest")
    tags = tag_list(t.need(0x5C, "tagList"))
    out = {"kind": "ipaEuiccDataRequest", "raw": t.raw, "tagList": tags,
           "items": [IPA_EUICC_DATA_ITEMS[x] for x in tags if x in IPA_EUICC_DATA_ITEMS],
           "unknownTags": [x for x in tags if x not in IPA_EUICC_DATA_ITEMS]}
    return d.fields(t, {
        0x04: ("euiccCiPKIdentifierToBeUsed", d.v_hexid),
        0xA1: ("searchCriteriaNotification", _search_notification),
        0xA2: ("searchCriteriaEuiccPackageResult", _search_epr),
        0x83: ("eimTransactionId", lambda c: transaction_id(c, "eimTransactionId")),
    }, out)


def _download_data(c):
    k = alternative(c, "ProfileDownloadData")
    if k.tag == 0x80:
        return {"activationCode": bounded_str(k, "activationCode", 0, MAX_ACTIVATION_CODE)}
    if k.tag == 0x81:
        k.as_null()
        return {"contactDefaultSmdp": True}
    if k.tag == 0xA2:
        # contactSmds SEQUENCE { smdsAddress UTF8String OPTIONAL }: its only component is
        # automatically tagged [0] '80'; the universal '0C' is accepted too.
        return {"contactSmds": d.fields(k, {0x80: ("smdsAddress", d.v_str),
                                            0x0C: ("smdsAddress", d.v_str)})}
    raise unknown(k, "ProfileDownloadData", "activationCode (80), contactDefaultSmdp (81) or "
                  "contactSmds (A2)")


def profile_download_trigger_request(t):
    """ProfileDownloadTriggerRequest 'BF54' -> {kind, raw, profileDownloadData?, eimTransactionId?}.

    profileDownloadData: {"activationCode": str} | {"contactDefaultSmdp": True} |
    {"contactSmds": {"smdsAddress"?: str}} (the [0] wrapper 'A0' is explicit:
    ProfileDownloadData is a CHOICE).
    """
    t = d.expect(d.unwrap(t), 0xBF54, "ProfileDownloadTriggerRequest")
    return d.fields(t, {
        0xA0: ("profileDownloadData", _download_data),
        0x82: ("eimTransactionId", lambda c: transaction_id(c, "eimTransactionId")),
    }, {"kind": "profileDownloadTriggerRequest", "raw": t.raw})


def eim_acknowledgements(t):
    """EimAcknowledgements 'BF53' (SEQUENCE OF [0] INTEGER) -> list of seqNumbers."""
    t = d.expect(d.unwrap(t), 0xBF53, "EimAcknowledgements")
    out = []
    for c in t:
        if c.tag not in (0x80, 0x02):
            raise TlvError(c.start, "a seqNumber (80) in EimAcknowledgements", "tag %02X" % c.tag)
        if len(out) >= MAX_ACKS:
            raise TlvError(c.start, "at most %d seqNumbers" % MAX_ACKS, "more")
        out.append(c.as_uint())
    return out


def _eim_package(c, what, error_tags):
    if c.tag == 0xBF51:
        return euicc_package_request(c)
    if c.tag == 0xBF52:
        return ipa_euicc_data_request(c)
    if c.tag == 0xBF54:
        return profile_download_trigger_request(c)
    if c.tag == 0xBF53 and error_tags is None:
        return {"kind": "eimAcknowledgements", "eimAcknowledgements": eim_acknowledgements(c)}
    if error_tags is not None and c.tag in error_tags:
        code = c.as_int()
        return {"kind": "eimPackageError", "eimPackageError": code,
                "error": EIM_PACKAGE_ERROR.get(code, "undefined")}
    if error_tags is None:
        raise unknown(c, what, "BF51, BF52, BF53 or BF54")
    raise unknown(c, what, "BF51, BF52, BF54 or eimPackageError (02)")


def decode_get_eim_package_response(data):
    """ESipa.GetEimPackage answer 'BF4F' -> the eIM package (a dict with "kind").

    kind euiccPackageRequest (see euicc_package_request), ipaEuiccDataRequest
    (see ipa_euicc_data_request), profileDownloadTriggerRequest (see
    profile_download_trigger_request), or eimPackageError {"eimPackageError":
    code, "error": name from EIM_PACKAGE_ERROR} - returned, not raised:
    noEimPackageAvailable (1) is the normal idle answer. eimPackageError is
    the universal INTEGER '02' (X.680: its siblings are tagged); '83' is
    accepted too.
    """
    t = message(data, 0xBF4F, "ESipa.GetEimPackage", "GetEimPackageResponse")
    return _eim_package(alternative(t, "GetEimPackageResponse"), "GetEimPackageResponse",
                        (0x02, 0x83))


def decode_provide_eim_package_result_response(data):
    """ESipa.ProvideEimPackageResult answer 'BF50' -> {"kind", "eimAcknowledgements": [n...]}.

    kind "eimAcknowledgements" (BF53) or "emptyResponse" ('30 00'; an empty
    BF50 is taken as that too) with an empty list. The IPA removes from the
    eUICC only what is acknowledged. provideEimPackageResultError ('02';
    '82' accepted) -> EimError("ESipa.ProvideEimPackageResult", code, name):
    the result was not taken, keep it.
    """
    f = "ESipa.ProvideEimPackageResult"
    t = message(data, 0xBF50, f, "ProvideEimPackageResultResponse")
    if not t.length:
        return {"kind": "emptyResponse", "eimAcknowledgements": []}
    c = alternative(t, "ProvideEimPackageResultResponse")
    if c.tag == 0xBF53:
        return {"kind": "eimAcknowledgements", "eimAcknowledgements": eim_acknowledgements(c)}
    if c.tag in (0x30, 0xA1):
        return {"kind": "emptyResponse", "eimAcknowledgements": []}
    if c.tag in (0x02, 0x82):
        raise error_code(c, PROVIDE_EIM_PACKAGE_RESULT_ERROR, f)
    raise unknown(c, "ProvideEimPackageResultResponse", "eimAcknowledgements (BF53), "
                  "emptyResponse (30) or provideEimPackageResultError (02)")


# ---- indirect profile download (SGP.32 6.3.2.1 - 6.3.2.4) --------------------------------


def _ok_or_error(data, tag, function, what, error_tag, names, ok_tags=(0xA0,)):
    t = message(data, tag, function, what)
    c = alternative(t, what)
    if c.tag == error_tag:
        raise error_code(c, names, function)
    if c.tag not in ok_tags:
        raise unknown(c, what, " or ".join("%02X" % x for x in ok_tags + (error_tag,)))
    return c


def _ctx_params1(c):
    """ctxParams1 [2] CtxParams1: explicit (a CHOICE) -> the 'A0' TLV AuthenticateServer takes."""
    kids = c.children()
    if len(kids) == 1 and kids[0].tag == 0xA0:
        return kids[0].raw
    return tlv.encode(0xA0, c.value)  # the [2] tag replaced the CHOICE: rebuild its alternative


def decode_initiate_authentication_response(data):
    """ESipa.InitiateAuthentication answer 'BF39' -> what ES10b.AuthenticateServer needs.

    {"transactionId" (bytes; from serverSigned1 when the eIM left it out),
    "serverSigned1", "serverSignature1", "euiccCiPKIdentifierToBeUsed",
    "serverCertificate" (each the exact TLV: '30', '5F37', '04', '30'),
    "matchingId"?: str, "ctxParams1"?: the 'A0' CtxParams1 TLV when the eIM
    generated it, "serverAddress", "euiccChallenge" (from serverSigned1, for
    checks)}. initiateAuthenticationErrorEsipa '81' -> EimError.
    """
    f = "ESipa.InitiateAuthentication"
    c = _ok_or_error(data, 0xBF39, f, "InitiateAuthenticationResponseEsipa", 0x81,
                     INITIATE_AUTHENTICATION_ERROR)
    out = {}
    certs = []
    ss1 = None
    for k in c:
        if k.tag == 0x80:
            out["transactionId"] = transaction_id(k)
        elif k.tag == 0x30:
            if "serverSigned1" in out:
                certs.append(k.raw)
            else:
                out["serverSigned1"] = k.raw
                ss1 = k
        elif k.tag == 0x5F37:
            out["serverSignature1"] = k.raw
        elif k.tag == 0x04:
            out["euiccCiPKIdentifierToBeUsed"] = k.raw
        elif k.tag == 0x0C:
            out["matchingId"] = k.as_str()
        elif k.tag == 0xA2:
            out["ctxParams1"] = _ctx_params1(k)
    if certs:
        out["serverCertificate"] = certs[0]
    d.require(out, c, ("serverSigned1", "serverSignature1", "euiccCiPKIdentifierToBeUsed",
                       "serverCertificate"))
    if "transactionId" not in out:
        out["transactionId"] = transaction_id(ss1.need(0x80, "transactionId in serverSigned1"))
    out["serverAddress"] = ss1.need(0x83, "serverAddress in serverSigned1").as_str()
    out["euiccChallenge"] = ss1.need(0x81, "euiccChallenge in serverSigned1").value
    return out


def _profile_metadata(k):
    """SGP32-StoreMetadataRequest 'BF25' -> a view (ProfileInfo names) + "raw"."""
    return d.fields(k, d.PROFILE_INFO, {"raw": k.raw})


def decode_authenticate_client_response(data):
    """ESipa.AuthenticateClient answer 'BF3B' -> a dict with "kind".

    authenticateClientOkDPEsipa 'A0' (continue with ES10b.PrepareDownload):
      transactionId (bytes; from smdpSigned2 when left out), smdpSigned2,
      smdpSignature2, smdpCertificate (exact TLVs '30', '5F37', '30'),
      hashCc (32-byte value)?, ccRequiredFlag (from smdpSigned2),
      profileMetaData? (view with ProfileInfo names + "raw" 'BF25').
    authenticateClientOkDSEsipa 'A1' (an SM-DS event): transactionId,
      profileDownloadTrigger? (see profile_download_trigger_request).
    authenticateClientErrorEsipa '82' -> EimError.
    """
    f = "ESipa.AuthenticateClient"
    c = _ok_or_error(data, 0xBF3B, f, "AuthenticateClientResponseEsipa", 0x82,
                     AUTHENTICATE_CLIENT_ERROR, (0xA0, 0xA1))
    if c.tag == 0xA1:
        out = {"kind": "authenticateClientOkDSEsipa",
               "transactionId": transaction_id(c.need(0x80, "transactionId"))}
        pdt = c.find(0xBF54)
        if pdt is not None:
            out["profileDownloadTrigger"] = profile_download_trigger_request(pdt)
        return out
    out = {"kind": "authenticateClientOkDPEsipa"}
    signed = None
    for k in c:
        if k.tag == 0x80:
            out["transactionId"] = transaction_id(k)
        elif k.tag == 0xBF25:
            out["profileMetaData"] = _profile_metadata(k)
        elif k.tag == 0x30:
            if signed is None:
                signed = k
                out["smdpSigned2"] = k.raw
            else:
                out["smdpCertificate"] = k.raw
        elif k.tag == 0x5F37:
            out["smdpSignature2"] = k.raw
        elif k.tag == 0x04:
            if k.length != 32:
                raise TlvError(k.vstart, "a 32-byte hashCc", "%d bytes" % k.length)
            out["hashCc"] = k.value
    d.require(out, c, ("smdpSigned2", "smdpSignature2", "smdpCertificate"))
    if "transactionId" not in out:
        out["transactionId"] = transaction_id(signed.need(0x80, "transactionId in smdpSigned2"))
    out["ccRequiredFlag"] = signed.need(0x01, "ccRequiredFlag in smdpSigned2").as_bool()
    return out


def decode_get_bound_profile_package_response(data):
    """ESipa.GetBoundProfilePackage answer 'BF3A' -> {"transactionId", "boundProfilePackage"}.

    boundProfilePackage is the exact 'BF36' TLV for ES10b.LoadBoundProfilePackage;
    transactionId comes from InitialiseSecureChannel when the eIM left it out.
    getBoundProfilePackageErrorEsipa '81' -> EimError.
    """
    f = "ESipa.GetBoundProfilePackage"
    c = _ok_or_error(data, 0xBF3A, f, "GetBoundProfilePackageResponseEsipa", 0x81,
                     GET_BOUND_PROFILE_PACKAGE_ERROR)
    bpp = c.need(0xBF36, "boundProfilePackage")
    out = {"boundProfilePackage": bpp.raw}
    tid = c.find(0x80)
    if tid is None:
        tid = bpp.need(0xBF23, "initialiseSecureChannelRequest").need(0x80, "transactionId")
    out["transactionId"] = transaction_id(tid)
    return out


def open_get_bound_profile_package_response(reader, max_segment=None, max_package=MAX_PACKAGE):
    """ESipa.GetBoundProfilePackage answer 'BF3A' read from a stream (the reader contract of
    ipa_core.stream) -> {"transactionId", "segments"}.

    The streamed twin of decode_get_bound_profile_package_response, for the
    heap budget: it reads the wrapper BF3A { A0 { transactionId [0]?,
    boundProfilePackage BF36 } } (BF3A doubly tagged accepted) up to the BF36
    and the first segment, and returns "segments", an
    es10_download.BppSegments that reads the package from the network one
    STORE DATA segment at a time (pass it to es10.load_bound_profile_package;
    close() it afterwards: that discards the rest of the answer).
    transactionId comes from InitialiseSecureChannel when the eIM left it out.
    getBoundProfilePackageErrorEsipa '81' -> EimError. `max_package` bounds
    the BF36 (and so the answer: the wrapper adds WRAPPER bytes at most). On
    any error the reader is closed.
    """
    f = "ESipa.GetBoundProfilePackage"
    what = "GetBoundProfilePackageResponseEsipa"
    tr = TlvReader(reader, f + " answer", MAX_TLV)
    try:
        if tr.at_end():
            raise ProtocolError("%s: the eIM answered no data, expected a BF3A %s" % (f, what))
        tag, n, _ = tr.header()
        if tag != 0xBF3A:
            raise TlvError(0, "a BF3A %s from %s" % (what, f), "tag %02X" % tag)
        if n > max_package + WRAPPER:
            raise ProtocolError("%s: an answer of %d bytes, over the package limit of %d "
                                "(setting max_package)" % (f, n, max_package))
        end = tr.offset + n
        at = tr.offset
        tag, n, _ = tr.header(end)
        if tag == 0xBF3A and tr.offset + n == end:  # doubly tagged (es10_decode.unwrap)
            at = tr.offset
            tag, n, _ = tr.header(end)
        if tr.offset + n != end:
            raise TlvError(at, "one %s alternative in BF3A" % what, "more TLVs")
        if tag == 0x81:
            if not 1 <= n <= 8:
                raise TlvError(at, "an INTEGER getBoundProfilePackageErrorEsipa of 1..8 bytes",
                               "%d bytes" % n)
            code = tlv.int_decode(tr.read(n), at)
            raise EimError(f, code, GET_BOUND_PROFILE_PACKAGE_ERROR.get(code))
        if tag != 0xA0:
            raise ProtocolError("unknown %s alternative tag %02X at offset %d, expected A0 or 81"
                                % (what, tag, at))
        tid = None
        segs = None
        while tr.offset < end:
            at = tr.offset
            tag, n, hdr = tr.header(end)
            if tag == 0xBF36:
                segs = BppSegments(tr, end, max_segment or MAX_SEGMENT, (at, tag, n, hdr),
                                   max_package=max_package)
                break
            if tag == 0x80 and tid is None:
                if not 1 <= n <= 16:
                    raise TlvError(tr.offset, "a transactionId of 1..16 bytes", "%d bytes" % n)
                tid = bytes(tr.read(n))
            else:  # an extension component: not needed
                tr.skip(n)
        if segs is None:
            raise TlvError(end, "child BF36 (boundProfilePackage) in A0", "it missing")
        segs.peek()  # the first segment (BF23) is checked before the download goes on
        if tid is None:
            tid = segs.transaction_id()
    except BaseException:
        close_quietly(reader)
        raise
    return {"transactionId": tid, "segments": segs}


def decode_cancel_session_response(data):
    """ESipa.CancelSession answer 'BF41' -> {"kind": "cancelSessionOk"}; cancelSessionError -> EimError."""
    _ok_or_error(data, 0xBF41, "ESipa.CancelSession", "CancelSessionResponseEsipa", 0x81,
                 CANCEL_SESSION_ERROR)
    return {"kind": "cancelSessionOk"}


# ---- for the IPA -> eIM builders (ipa_core.esipa, esipa_push, esipa_compact) ----------------


def raw_tlv(x, tags, what):
    """A peer's TLV forwarded verbatim: bytes, or a dict with "raw", holding one TLV with a tag in `tags`."""
    if isinstance(x, dict):
        if "raw" not in x:
            raise ValueError("%s: expected bytes or a dict with \"raw\"" % what)
        x = x["raw"]
    x = bytes(x)
    t = tlv.decode(x)
    if t.tag not in tags:
        raise ProtocolError("%s must be one TLV with tag %s, got tag %02X"
                            % (what, " or ".join("%02X" % n for n in tags), t.tag))
    return x


def retag(raw, tag):
    """The TLV `raw` with its outer tag replaced by `tag` (X.680 implicit tagging)."""
    return tlv.encode(tag, tlv.decode(raw).value)


def code(x, names, what):
    """An INTEGER code given as int or as its name in `names` ({code: name})."""
    if isinstance(x, int):
        return x
    for n in names:
        if names[n] == x:
            return n
    raise ValueError("%s: unknown name %r, expected an int or one of %s"
                     % (what, x, ", ".join(names[n] for n in sorted(names))))


def epr_and_notifications(epr, notifications, version):
    """ePRAndNotifications SEQUENCE '30' { euiccPackageResult 'BF51', notificationList }
    (in EimPackageResult and in the TransferEimPackage response): v1.2 [0] 'A0' {
    PendingNotification.. }; v1.0 [43] 'BF2B' { notificationList 'A0' { .. } } (an
    SGP32-RetrieveNotificationsListResponse)."""
    items = tlv.encode(0xA0, [raw_tlv(n, PENDING_NOTIFICATION_TAGS, "a PendingNotification")
                              for n in notifications])
    tag = ver.tag("ePRAndNotifications.notificationList", version)
    return tlv.enc(0x30, epr, items if tag == 0xA0 else tlv.encode(tag, items))
