"""Decoders for the signed objects the IPA relays: notifications, ProfileInstallationResult,
EuiccPackageResult (SGP.22 v2.5 5.7.10 / SGP.32 v1.2 2.11.2, 5.9).

Conventions as in ipa_core.es10_decode. Every object here keeps its exact
TLV bytes under "raw": deliver "raw" to the eIM / SM-DP+, never a
re-encoding, or the eUICC's signature no longer verifies. A decoded failure
(errorResult, euiccPackageError*) is data with an "error" key, not an
exception: it is signed by the eUICC and must be forwarded too.
"""

from ipa_core.errors import TlvError, Names
from ipa_core.es10_decode import (
    NOTIFICATION_EVENT, PROFILE_INFO_LIST_ERROR, expect, fields, hexu, need_any,
    profile_info_list, require, rules_authorisation_table, unwrap, v_bits, v_bytes, v_hexid,
    v_iccid, v_int, v_str, v_uint,
)

# ---- result-code names ---------------------------------------------------------

ENABLE_RESULT = Names(((0, "ok"), (1, "iccidOrAidNotFound"), (2, "profileNotInDisabledState"),
                       (3, "disallowedByPolicy"), (5, "catBusy"), (20, "rollbackNotAvailable"),
                       (127, "undefinedError")))
DISABLE_RESULT = Names(((0, "ok"), (1, "iccidOrAidNotFound"), (2, "profileNotInEnabledState"),
                        (3, "disallowedByPolicy"), (5, "catBusy"), (127, "undefinedError")))
DELETE_RESULT = Names(((0, "ok"), (1, "iccidOrAidNotFound"), (2, "profileNotInDisabledState"),
                       (3, "disallowedByPolicy"), (20, "rollbackNotAvailable"),
                       (21, "returnFallbackProfile"), (127, "undefinedError")))
CONFIGURE_IMMEDIATE_ENABLE_RESULT = Names(((0, "ok"), (1, "insufficientMemory"),
                                           (7, "commandError"), (127, "undefinedError")))
ADD_EIM_RESULT = Names(((0, "ok"), (1, "insufficientMemory"), (2, "associatedEimAlreadyExists"),
                        (3, "ciPKUnknown"), (5, "invalidAssociationToken"),
                        (6, "counterValueOutOfRange"), (7, "commandError"),
                        (127, "undefinedError")))
DELETE_EIM_RESULT = Names(((0, "ok"), (1, "eimNotFound"), (2, "lastEimDeleted"),
                           (7, "commandError"), (127, "undefinedError")))
UPDATE_EIM_RESULT = Names(((0, "ok"), (1, "eimNotFound"), (3, "ciPKUnknown"),
                           (6, "counterValueOutOfRange"), (7, "commandError"),
                           (127, "undefinedError")))
ROLLBACK_RESULT = Names(((0, "ok"), (127, "undefinedError")))
SET_FALLBACK_ATTRIBUTE_RESULT = Names(((0, "ok"), (1, "iccidOrAidNotFound"),
                                       (2, "fallbackNotAllowed"), (3, "fallbackProfileEnabled"),
                                       (127, "undefinedError")))
UNSET_FALLBACK_ATTRIBUTE_RESULT = Names(((0, "ok"), (2, "noFallbackAttribute"),
                                         (3, "fallbackProfileEnabled"), (7, "commandError"),
                                         (127, "undefinedError")))
PROCESSING_TERMINATED = Names(((1, "resultSizeOverflow"), (2, "unknownOrDamagedCommand"),
                               (3, "interruption"), (127, "undefinedError")))
SET_DEFAULT_DP_ADDRESS_RESULT = Names(((0, "ok"), (127, "undefinedError")))
EUICC_PACKAGE_ERROR_CODE = Names(((3, "invalidEid"), (4, "replayError"),
                                  (6, "counterValueOutOfRange"), (15, "sizeOverflow"),
                                  (104, "ecallActive"), (127, "undefinedError")))
BPP_COMMAND_ID = Names(((0, "initialiseSecureChannel"), (1, "configureISDP"),
                        (2, "storeMetadata"), (3, "storeMetadata2"), (4, "replaceSessionKeys"),
                        (5, "loadProfileElements")))
ERROR_REASON = Names(((1, "incorrectInputValues"), (2, "invalidSignature"),
                      (3, "invalidTransactionId"), (4, "unsupportedCrtValues"),
                      (5, "unsupportedRemoteOperationType"), (6, "unsupportedProfileClass"),
                      (7, "scp03tStructureError"), (8, "scp03tSecurityError"),
                      (9, "installFailedDueToIccidAlreadyExistsOnEuicc"),
                      (10, "installFailedDueToInsufficientMemoryForProfile"),
                      (11, "installFailedDueToInterruption"),
                      (12, "installFailedDueToPEProcessingError"),
                      (13, "installFailedDueToDataMismatch"),
                      (14, "testProfileInstallFailedDueToInvalidNaaKey"), (15, "pprNotAllowed"),
                      (127, "installFailedDueToUnknownError")))


# ---- notifications (SGP.22 5.7.10 / SGP.32 RetrieveNotificationsList) -----------

NOTIFICATION_METADATA = {
    0x80: ("seqNumber", v_uint),
    0x81: ("profileManagementOperation", v_bits(NOTIFICATION_EVENT)),
    0x0C: ("notificationAddress", v_str),
    0x5A: ("iccid", v_iccid),
}


def notification_metadata(t, out=None):
    """NotificationMetadata 'BF2F' -> seqNumber, profileManagementOperation, notificationAddress, iccid."""
    t = expect(unwrap(t), 0xBF2F, "NotificationMetadata")
    out = fields(t, NOTIFICATION_METADATA, out)
    return require(out, t, ("seqNumber", "profileManagementOperation"))


def _final_result(c):
    c = need_any(c, (0xA0, 0xA1), "successResult (A0) or errorResult (A1)")
    if c.tag == 0xA0:
        return {"successResult": fields(c, {0x4F: ("aid", v_hexid), 0x04: ("simaResponse", v_bytes)})}
    return {"errorResult": fields(c, {0x80: ("bppCommandId", v_int), 0x81: ("errorReason", v_int),
                                      0x82: ("simaResponse", v_bytes)})}


def _mark_pir_error(out):
    e = out["finalResult"].get("errorResult")
    if e is not None:
        out["error"] = ERROR_REASON.get(e.get("errorReason"), "undefined")
    return out


def profile_installation_result(t):
    """ProfileInstallationResult 'BF37' -> dict + "raw"; "error" names errorReason on failure.

    Keys: transactionId, seqNumber, profileManagementOperation,
    notificationAddress, iccid, smdpOid, finalResult ({"successResult":
    {aid, simaResponse}} or {"errorResult": {bppCommandId, errorReason,
    simaResponse}}), euiccSignPIR.
    """
    t = expect(unwrap(t), 0xBF37, "ProfileInstallationResult")
    out = {"raw": t.raw, "kind": "profileInstallationResult"}
    data = expect(t.find(0xBF27), 0xBF27, "profileInstallationResultData")
    out["transactionId"] = data.need(0x80, "transactionId").value
    notification_metadata(data.need(0xBF2F, "notificationMetadata"), out)
    oid = data.find(0x06)
    if oid is not None:
        out["smdpOid"] = oid.as_oid()
    out["finalResult"] = _final_result(data.need(0xA2, "finalResult"))
    sig = t.find(0x5F37)
    if sig is not None:
        out["euiccSignPIR"] = sig.value
    return _mark_pir_error(out)


def _compact_pir(t):
    out = {"raw": t.raw, "kind": "compactProfileInstallationResult"}
    data = t.need(0xA0, "compactProfileInstallationResultData")
    out["transactionId"] = data.need(0x80, "transactionId").value
    seq = need_any(data, (0x02, 0x81), "seqNumber")
    out["seqNumber"] = seq.as_uint()
    present = data.find(0x01)
    out["iccidPresent"] = True if present is None else present.as_bool()
    fr = data.need(0xA2, "compactFinalResult")
    c = need_any(fr, (0xA0, 0xA1), "compactSuccessResult (A0) or errorResult (A1)")
    if c.tag == 0xA0:
        out["finalResult"] = {"compactSuccessResult": fields(
            c, {0x4F: ("compactAid", v_hexid), 0x04: ("simaResponse", v_bytes)})}
    else:
        out["finalResult"] = _final_result(fr)
    return _mark_pir_error(out)


def _other_signed(t, kind):
    out = {"raw": t.raw, "kind": kind}
    eid = t.find(0x5A)
    if eid is not None:
        out["eidValue"] = hexu(eid.value)
    notification_metadata(t.need(0xBF2F, "tbsOtherNotification"), out)
    return out


def pending_notification(t):
    """One SGP32-PendingNotification (or an EuiccPackageResult in a mixed list).

    "kind" is profileInstallationResult (BF37), otherSignedNotification (30),
    compactProfileInstallationResult (A0), compactOtherSignedNotification
    (A1), or an EuiccPackageResult kind (BF51). "raw" is the exact TLV.
    """
    if t.tag == 0xBF37:
        return profile_installation_result(t)
    if t.tag == 0x30:
        return _other_signed(t, "otherSignedNotification")
    if t.tag == 0xA0:
        return _compact_pir(t)
    if t.tag == 0xA1:
        return _other_signed(t, "compactOtherSignedNotification")
    if t.tag == 0xBF51:
        return euicc_package_result(t)
    raise TlvError(t.start, "a PendingNotification (BF37, 30, A0, A1) or BF51", "tag %X" % t.tag)


# ---- eUICC Package Result (SGP.32 2.11.2) --------------------------------------


def _add_eim_result(c):
    k = need_any(c, (0x84, 0x02), "associationToken (84) or addEimResultCode (02)")
    if k.tag == 0x84:
        return {"associationToken": k.as_int()}
    return {"addEimResultCode": k.as_int()}


def _list_eim_result(c):
    k = need_any(c, (0xA0, 0x81), "eimIdList (A0) or listEimError (81)")
    if k.tag == 0x81:
        return {"listEimError": k.as_int()}
    return {"eimIdList": [fields(e, {0x80: ("eimId", v_str), 0x82: ("eimIdType", v_int)})
                          for e in k]}


def _set_default_dp_result(c):
    c = unwrap(c)
    return need_any(c, (0x80, 0x02), "setDefaultDpAddressResult").as_int()


EUICC_RESULT_DATA = {
    0x83: ("enableResult", v_int),
    0x84: ("disableResult", v_int),
    0x85: ("deleteResult", v_int),
    0xBF2D: ("listProfileInfoResult", profile_info_list),
    0xA6: ("getRATResult", rules_authorisation_table),
    0x87: ("configureImmediateEnableResult", v_int),
    0xA8: ("addEimResult", _add_eim_result),
    0x89: ("deleteEimResult", v_int),
    0x8A: ("updateEimResult", v_int),
    0xAB: ("listEimResult", _list_eim_result),
    0x8C: ("rollbackResult", v_int),
    0x8D: ("setFallbackAttributeResult", v_int),
    0x8E: ("unsetFallbackAttributeResult", v_int),
    0x02: ("processingTerminated", v_int),
    0xBF65: ("setDefaultDpAddressResult", _set_default_dp_result),
}

RESULT_NAMES = {
    "enableResult": ENABLE_RESULT, "disableResult": DISABLE_RESULT,
    "deleteResult": DELETE_RESULT, "configureImmediateEnableResult":
    CONFIGURE_IMMEDIATE_ENABLE_RESULT, "deleteEimResult": DELETE_EIM_RESULT,
    "updateEimResult": UPDATE_EIM_RESULT, "rollbackResult": ROLLBACK_RESULT,
    "setFallbackAttributeResult": SET_FALLBACK_ATTRIBUTE_RESULT,
    "unsetFallbackAttributeResult": UNSET_FALLBACK_ATTRIBUTE_RESULT,
    "processingTerminated": PROCESSING_TERMINATED,
    "setDefaultDpAddressResult": SET_DEFAULT_DP_ADDRESS_RESULT,
}


def euicc_result_data(c):
    """One EuiccResultData -> {alternativeName: value}; unknown -> {"unknownTag": n, "raw": b}."""
    f = EUICC_RESULT_DATA.get(c.tag)
    if f is None:
        return {"unknownTag": c.tag, "raw": c.raw}
    return {f[0]: f[1](c)}


def result_summary(entry):
    """(operation, code or None, name) for one euiccResult entry, for logs and decisions.

    An operation whose result is data (listProfileInfoResult, getRATResult,
    listEimResult ok, addEimResult with a token) reports code 0 "ok".
    """
    for op in entry:
        v = entry[op]
        if op == "addEimResult":
            if "addEimResultCode" in v:
                n = v["addEimResultCode"]
                return op, n, ADD_EIM_RESULT.get(n, "undefined")
            return op, 0, "ok"
        if op == "listProfileInfoResult" and "profileInfoListError" in v:
            n = v["profileInfoListError"]
            return op, n, PROFILE_INFO_LIST_ERROR.get(n, "undefined")
        if op == "listEimResult" and "listEimError" in v:
            return op, v["listEimError"], "undefinedError"
        names = RESULT_NAMES.get(op)
        if names is not None:
            return op, v, names.get(v, "undefined")
        if op in ("unknownTag", "raw"):
            continue
        return op, 0, "ok"
    return "unknown", None, "unknown"


def _signed_result(t, out):
    data = need_any(t, (0x30,), "euiccPackageResultDataSigned")
    out["signedData"] = data.raw
    fields(data, {0x80: ("eimId", v_str), 0x81: ("counterValue", v_int),
                  0x82: ("eimTransactionId", v_bytes), 0x83: ("seqNumber", v_uint)}, out)
    require(out, data, ("eimId", "counterValue", "seqNumber"))
    res = data.find(0x30)
    out["euiccResult"] = [] if res is None else [euicc_result_data(c) for c in res]
    out["euiccSignEPR"] = t.need(0x5F37, "euiccSignEPR").value
    return out


def _signed_error(t, out):
    data = need_any(t, (0x30,), "euiccPackageErrorDataSigned")
    out["signedData"] = data.raw
    fields(data, {0x80: ("eimId", v_str), 0x81: ("counterValue", v_int),
                  0x82: ("eimTransactionId", v_bytes), 0x02: ("euiccPackageErrorCode", v_int)}, out)
    require(out, data, ("eimId", "euiccPackageErrorCode"))
    out["error"] = EUICC_PACKAGE_ERROR_CODE.get(out["euiccPackageErrorCode"], "undefined")
    out["euiccSignEPE"] = t.need(0x5F37, "euiccSignEPE").value
    return out


def _unsigned_error(t, out):
    fields(t, {0x80: ("eimId", v_str), 0x82: ("eimTransactionId", v_bytes),
               0x84: ("associationToken", v_int)}, out)
    require(out, t, ("eimId",))
    out["error"] = "euiccPackageErrorUnsigned"
    return out


def euicc_package_result(t):
    """EuiccPackageResult 'BF51' -> dict; "raw" is the exact BF51 TLV to forward to the eIM.

    kind "euiccPackageResultSigned": eimId, counterValue, eimTransactionId,
      seqNumber, euiccResult (list of {operationResultName: value}, see
      euicc_result_data), euiccSignEPR, signedData (the signed '30' TLV).
      Per-PSMO error codes are data here, not exceptions.
    kind "euiccPackageErrorSigned": eimId, counterValue, eimTransactionId,
      euiccPackageErrorCode, "error" (its name), euiccSignEPE, signedData.
    kind "euiccPackageErrorUnsigned": eimId, eimTransactionId,
      associationToken, "error" = "euiccPackageErrorUnsigned".
    Accepts the alternatives with their automatic tags (A0/A1/A2, X.680) or
    without (30 ... / bare components).
    """
    t = expect(unwrap(t), 0xBF51, "EuiccPackageResult")
    out = {"raw": t.raw}
    kids = t.children()
    if not kids:
        raise TlvError(t.vstart, "an EuiccPackageResult alternative in BF51", "an empty BF51")
    first = kids[0]
    if first.tag == 0xA0:
        out["kind"] = "euiccPackageResultSigned"
        return _signed_result(first, out)
    if first.tag == 0xA1:
        out["kind"] = "euiccPackageErrorSigned"
        return _signed_error(first, out)
    if first.tag == 0xA2:
        out["kind"] = "euiccPackageErrorUnsigned"
        return _unsigned_error(first, out)
    if first.tag == 0x30:  # alternative not tagged: tell result from error by content
        if first.find(0x83) is not None:
            out["kind"] = "euiccPackageResultSigned"
            return _signed_result(t, out)
        out["kind"] = "euiccPackageErrorSigned"
        return _signed_error(t, out)
    if first.tag == 0x80:
        out["kind"] = "euiccPackageErrorUnsigned"
        return _unsigned_error(t, out)
    raise TlvError(first.start, "A0, A1 or A2 in EuiccPackageResult BF51", "tag %X" % first.tag)
