"""ES10 client of the IPAd: one function per ES10a/b/c function (SGP.22 v2.5 5.7, SGP.32 v1.2 5.9).

Every function takes `s`, any object with `store_data(request: bytes) ->
bytes` (normally ipa_core.apdu.IsdrSession) and an optional `version`
attribute ("1.0"/"1.2", see ipa_core.version), sends one request TLV encoded
exactly as the ASN.1 module says, and returns plain data (conventions in
ipa_core.es10_decode: ASN.1 names as keys, "raw" = exact TLV of anything
signed, to be forwarded byte for byte).

Errors:
- an ES10 error code in the answer -> FunctionError(function, code, name);
  the name tables below are per function, numbers from the ASN.1 module;
- an answer that does not parse or has the wrong tag -> TlvError/ProtocolError
  saying what was expected;
- a status word other than 9000 -> CardError (from the session).
Results that the IPA must forward to a server are returned, not raised, even
when they report a failure (EuiccPackageResult errors, a ProfileInstallation-
Result with errorResult, AuthenticateServer / PrepareDownload errors): they
carry an "error" key and their "raw" bytes.

AUTOMATIC TAGS reminder (X.680 25.3): components get context tags by
position only when no component of that SEQUENCE/CHOICE has a tag written
in the module; otherwise untagged ones keep their own (universal) tags. A
tagged CHOICE ([65] CHOICE ...) used as a component is re-tagged implicitly.
"""

from ipa_core import tlv
from ipa_core import es10_decode as d
from ipa_core import es10_signed as sg
from ipa_core import version as ver
from ipa_core.errors import TlvError

# ES10b download functions live in es10_download (size); they are part of this API.
from ipa_core.es10_download import (  # noqa: F401
    AUTHENTICATE_ERROR_CODE, CANCEL_SESSION_ERROR, CANCEL_SESSION_REASON, DEVICE_CAPABILITIES,
    DOWNLOAD_ERROR_CODE, MAX_SEGMENT, BppSegments, authenticate_server, bpp_segments,
    cancel_session, encode_ctx_params1, load_bound_profile_package, prepare_download,
)

# ---- error / result names per function (numbers from the ASN.1 modules) -------

GET_CERTS_ERROR = {1: "invalidCiPKId", 127: "undefinedError"}  # module spells it "undfinedError"
ADD_INITIAL_EIM_ERROR = {1: "insufficientMemory", 2: "associatedEimAlreadyExists",
                         3: "ciPKUnknown", 5: "invalidAssociationToken",
                         6: "counterValueOutOfRange", 7: "commandError", 127: "undefinedError"}
EUICC_PACKAGE_ERROR_CODE = sg.EUICC_PACKAGE_ERROR_CODE
NOTIFICATIONS_LIST_RESULT_ERROR = {127: "undefinedError"}
LIST_NOTIFICATIONS_RESULT_ERROR = {127: "undefinedError"}
DELETE_NOTIFICATION_STATUS = {0: "ok", 1: "nothingToDelete", 127: "undefinedError"}
PROFILE_INFO_LIST_ERROR = d.PROFILE_INFO_LIST_ERROR
PROFILE_ROLLBACK_RESULT = {0: "ok", 1: "rollbackNotAllowed", 5: "catBusy", 7: "commandError",
                           127: "undefinedError"}
IMMEDIATE_ENABLE_RESULT = {0: "ok", 1: "immediateEnableNotAvailable", 4: "noSessionContext",
                           5: "catBusy", 127: "undefinedError"}
CONFIG_IMMEDIATE_ENABLE_RESULT = {0: "ok", 1: "insufficientMemory",
                                  2: "associatedEimAlreadyExists", 127: "undefinedError"}
ENABLE_EMERGENCY_PROFILE_RESULT = {0: "ok", 2: "profileNotInDisabledState", 5: "catBusy",
                                   8: "ecallNotAvailable", 127: "undefinedError"}
DISABLE_EMERGENCY_PROFILE_RESULT = {0: "ok", 2: "profileNotInEnabledState", 5: "catBusy",
                                    127: "undefinedError"}
EXECUTE_FALLBACK_RESULT = {0: "ok", 2: "profileNotInDisabledState", 5: "catBusy",
                           6: "fallbackNotAvailable", 7: "commandError", 104: "ecallActive",
                           127: "undefinedError"}
RETURN_FROM_FALLBACK_RESULT = {0: "ok", 5: "catBusy", 6: "fallbackNotAvailable",
                               7: "commandError", 127: "undefinedError"}
CONNECTIVITY_PARAMETERS_ERROR = {1: "parametersNotAvailable", 127: "undefinedError"}
SET_DEFAULT_DP_ADDRESS_RESULT = {0: "ok", 127: "undefinedError"}
RESET_RESULT = {0: "ok", 1: "nothingToDelete", 5: "catBusy", 104: "ecallActive",
                127: "undefinedError"}
RESET_EIM_RESULT = {0: "ok", 1: "nothingToDelete", 2: "eimResetNotSupported",
                    127: "undefinedError"}
RESET_IMMEDIATE_ENABLE_CONFIG_RESULT = {0: "ok", 1: "resetIECNotSupported",
                                        127: "undefinedError"}

PROFILE_CLASS = {"test": 0, "provisioning": 1, "operational": 2}
RESET_OPTIONS = ("deleteOperationalProfiles", "deleteFieldLoadedTestProfiles",
                 "resetDefaultSmdpAddress", "deletePreLoadedTestProfiles",
                 "deleteProvisioningProfiles", "resetEimConfigData",
                 "resetImmediateEnableConfig")


# ---- helpers -----------------------------------------------------------------------

call = d.call
fail = d.fail
result = d.result


def _flag(refresh_flag):
    return tlv.encode(0x80, tlv.bool_encode(refresh_flag))


def iccid_bytes(iccid):
    """ICCID digits -> the 10-byte nibble-swapped Iccid value ('F' padded)."""
    digits = str(iccid).upper()
    if not 1 <= len(digits) <= 20 or any(ch not in "0123456789F" for ch in digits):
        raise ValueError("ICCID %r: expected up to 20 digits" % (iccid,))
    while len(digits) < 20:
        digits += "F"
    return tlv.bcd_unswap(digits)


def _event_bits(op):
    """NotificationEvent BIT STRING value from a name or a list of names."""
    names = [op] if isinstance(op, str) else list(op)
    return tlv.bits_encode(names, d.NOTIFICATION_EVENT)


# ---- ES10a ---------------------------------------------------------------------


def get_euicc_configured_addresses(s):
    """ES10a.GetEuiccConfiguredAddresses 'BF3C' -> {"defaultDpAddress"?, "rootDsAddress"}."""
    t = call(s, "ES10a.GetEuiccConfiguredAddresses", 0xBF3C)
    out = d.fields(t, {0x80: ("defaultDpAddress", d.v_str), 0x81: ("rootDsAddress", d.v_str)})
    return d.require(out, t, ("rootDsAddress",))


def set_default_dp_address(s, address):
    """ES10a.SetDefaultDpAddress, SGP.32 form 'BF65' { defaultDpAddress '80' } -> None."""
    f = "ES10a.SetDefaultDpAddress"
    t = call(s, f, 0xBF65, tlv.encode(0x80, address.encode()))
    result(t, f, SET_DEFAULT_DP_ADDRESS_RESULT)


# ---- ES10b: information -------------------------------------------------------------


def get_euicc_info1(s):
    """ES10b.GetEUICCInfo 'BF20' -> {"svn", "euiccCiPKIdListForVerification",
    "euiccCiPKIdListForSigning", "raw"} (raw goes into InitiateAuthentication)."""
    return d.euicc_info1(call(s, "ES10b.GetEUICCInfo1", 0xBF20))


def get_euicc_info2(s):
    """ES10b.GetEUICCInfo 'BF22' -> SGP32-EUICCInfo2 as a dict + "raw".

    Includes ipaMode [16] (0 ipad, 1 ipae) and iotSpecificInfo [20]
    {"iotVersion": ["1.2.0"], "ecallSupported": bool, "fallbackSupported": bool}.
    """
    return d.euicc_info2(call(s, "ES10b.GetEUICCInfo2", 0xBF22))


def get_eid(s):
    """ES10c.GetEID: 'BF3E' { tagList '5C' = '5A' } -> the EID as 32 upper-case hex digits."""
    t = call(s, "ES10c.GetEID", 0xBF3E, tlv.encode(0x5C, b"\x5a"))
    eid = t.need(0x5A, "eidValue")
    if eid.length != 16:
        raise TlvError(eid.vstart, "a 16-byte EID", "%d bytes" % eid.length)
    return d.hexu(eid.value)


def get_euicc_challenge(s):
    """ES10b.GetEUICCChallenge 'BF2E' -> the 16-byte challenge (bytes)."""
    t = call(s, "ES10b.GetEUICCChallenge", 0xBF2E)
    c = d.need_any(t, (0x80, 0x04), "euiccChallenge")
    if c.length != 16:
        raise TlvError(c.vstart, "a 16-byte euiccChallenge", "%d bytes" % c.length)
    return c.value


def get_certs(s, euicc_ci_pk_id=None):
    """ES10b.GetCerts 'BF56' { euiccCiPKId '80' OPTIONAL } -> {"eumCertificate", "euiccCertificate"}.

    Certificates come back as standard X.509 DER ('30 ...'): the module tags
    them [5] 'A5' / [6] 'A6' implicitly, and the outer tag is outside the
    signature, so '30' + content is the certificate byte for byte.
    `euicc_ci_pk_id`: bytes or hex. getCertsError -> FunctionError.
    """
    f = "ES10b.GetCerts"
    req = None
    if euicc_ci_pk_id is not None:
        req = tlv.encode(0x80, d.binary(euicc_ci_pk_id, "euiccCiPKId"))
    t = call(s, f, 0xBF56, req)
    c = d.need_any(t, (0xA0, 0x81), "certs (A0) or getCertsError (81)")
    if c.tag == 0x81:
        raise fail(f, c.as_int(), GET_CERTS_ERROR)
    return {"eumCertificate": d.certificate(c.need(0xA5, "eumCertificate")),
            "euiccCertificate": d.certificate(c.need(0xA6, "euiccCertificate"))}


def get_rat(s):
    """ES10b.GetRAT 'BF43' -> list of {"pprIds", "allowedOperators": [{"mccMnc", "gid1"?,
    "gid2"?}], "pprFlags"}."""
    t = call(s, "ES10b.GetRAT", 0xBF43)
    c = d.need_any(t, (0xA0, 0x30), "rat")
    return d.rules_authorisation_table(c)


def get_connectivity_parameters(s):
    """ES10b.GetConnectivityParameters 'BF5F' -> {"httpParams"?: bytes} (also for CoAP)."""
    f = "ES10b.GetConnectivityParameters"
    t = call(s, f, 0xBF5F)
    c = d.need_any(t, (0xA0, 0x30, 0x81), "connectivityParameters (A0) or error (81)")
    if c.tag == 0x81:
        raise fail(f, c.as_int(), CONNECTIVITY_PARAMETERS_ERROR)
    return d.fields(c, {0x81: ("httpParams", d.v_bytes)})


# ---- ES10b: eIM configuration (SGP.32 5.9) -----------------------------------------


def get_eim_configuration_data(s, eim_id=None):
    """ES10b.GetEimConfigurationData 'BF55' { searchCriteria [0] { eimId '80' } OPTIONAL }.

    Returns a list of EimConfigurationData dicts (see
    es10_decode.eim_configuration_data): eimId, eimFqdn, eimIdType,
    counterValue, associationToken, eimPublicKeyData ({"eimPublicKey": DER}
    or {"eimCertificate": DER}), trustedPublicKeyDataTls
    ({"trustedEimPkTls": DER} or {"trustedCertificateTls": DER}),
    eimSupportedProtocol (names), euiccCiPKId (hex), indirectProfileDownload.
    """
    crit = None
    if eim_id is not None:
        # searchCriteria is an untagged CHOICE in an all-untagged SEQUENCE: [0] explicit.
        crit = tlv.enc(0xA0, tlv.encode(0x80, eim_id.encode()))
    t = call(s, "ES10b.GetEimConfigurationData", 0xBF55, crit)
    c = t.find(0xA0)
    if c is None:
        return []
    return [d.eim_configuration_data(e) for e in c]


def _key_data(tag, value, names):
    if value is None:
        return None
    if names[0] in value:
        return tlv.enc(tag, tlv.encode(0xA0, tlv.decode(bytes(value[names[0]])).value))
    if names[1] in value:
        return tlv.enc(tag, tlv.encode(0xA1, tlv.decode(bytes(value[names[1]])).value))
    raise ValueError("%X: expected a %s or %s key" % (tag, names[0], names[1]))


def encode_eim_configuration_data(e):
    """EimConfigurationData '30' from a dict shaped like get_eim_configuration_data's items.

    eimPublicKeyData / trustedPublicKeyDataTls values hold DER (SPKI or
    certificate); they are encoded [5] { [0]/[1] IMPLICIT } as X.680 says:
    'A5' { 'A0' <SPKI content> }.
    """
    def opt(tag, key, conv):
        v = e.get(key)
        return None if v is None else tlv.encode(tag, conv(v))

    proto = e.get("eimSupportedProtocol")
    return tlv.enc(
        0x30,
        tlv.encode(0x80, e["eimId"].encode()),
        opt(0x81, "eimFqdn", lambda v: v.encode()),
        opt(0x82, "eimIdType", tlv.int_encode),
        opt(0x83, "counterValue", tlv.int_encode),
        opt(0x84, "associationToken", tlv.int_encode),
        _key_data(0xA5, e.get("eimPublicKeyData"), ("eimPublicKey", "eimCertificate")),
        _key_data(0xA6, e.get("trustedPublicKeyDataTls"),
                  ("trustedEimPkTls", "trustedCertificateTls")),
        None if proto is None else tlv.encode(0x87, tlv.bits_encode(proto,
                                                                    d.EIM_SUPPORTED_PROTOCOL)),
        opt(0x88, "euiccCiPKId", lambda v: d.binary(v, "euiccCiPKId")),
        tlv.encode(0x89) if e.get("indirectProfileDownload") else None,
    )


def add_initial_eim(s, eims):
    """ES10b.AddInitialEim 'BF57' { eimConfigurationDataList [0] { 30 ... } }.

    `eims`: list of dicts as encode_eim_configuration_data takes. Returns a
    list with one entry per eIM: {"associationToken": n} or {"addOk": True}.
    addInitialEimError -> FunctionError.
    """
    f = "ES10b.AddInitialEim"
    t = call(s, f, 0xBF57, tlv.enc(0xA0, *[encode_eim_configuration_data(e) for e in eims]))
    c = d.need_any(t, (0xA0, 0x81), "addInitialEimOk (A0) or addInitialEimError (81)")
    if c.tag == 0x81:
        raise fail(f, c.as_int(), ADD_INITIAL_EIM_ERROR)
    out = []
    for k in c:
        if k.tag == 0x84:
            out.append({"associationToken": k.as_int()})
        elif k.tag in (0x05, 0x81):
            out.append({"addOk": True})
        else:
            raise TlvError(k.start, "associationToken (84) or addOk (05)", "tag %X" % k.tag)
    return out


# ---- ES10b: eUICC packages (SGP.32 5.9.1) --------------------------------------------


def load_euicc_package(s, request_bytes):
    """ES10b.LoadEuiccPackage: the eIM's EuiccPackageRequest 'BF51', forwarded verbatim.

    Returns the EuiccPackageResult dict (es10_signed.euicc_package_result)
    whose "raw" goes back to the eIM unchanged. A signed result with
    per-PSMO error codes is a normal return. euiccPackageErrorSigned /
    euiccPackageErrorUnsigned are returned too, not raised: they carry
    "error" (e.g. "replayError") and must be forwarded to the eIM like a
    result. Raises ProtocolError if `request_bytes` is not one BF51 TLV.
    """
    req = d.raw_tlv(request_bytes, 0xBF51, "the EuiccPackageRequest")
    return sg.euicc_package_result(d.exchange(s, "ES10b.LoadEuiccPackage", req, 0xBF51))


def profile_rollback(s, refresh_flag):
    """ES10b.ProfileRollback 'BF58' { refreshFlag } -> the new EuiccPackageResult dict, or None.

    cmdResult other than ok -> FunctionError. (cmdResult sits next to the
    tagged eUICCPackageResult [81], so the module gives it the universal
    INTEGER tag '02'; '80' is accepted too.)
    """
    f = "ES10b.ProfileRollback"
    t = call(s, f, 0xBF58, _flag(refresh_flag))
    result(t, f, PROFILE_ROLLBACK_RESULT, tags=(0x02, 0x80))
    epr = t.find(0xBF51)
    return None if epr is None else sg.euicc_package_result(epr)


def _refresh_function(s, function, tag, refresh_flag, names):
    t = call(s, function, tag, _flag(refresh_flag))
    result(t, function, names)


def immediate_enable(s, refresh_flag):
    """ES10b.ImmediateEnable 'BF5A' { refreshFlag '80' } -> None; errors -> FunctionError."""
    _refresh_function(s, "ES10b.ImmediateEnable", 0xBF5A, refresh_flag, IMMEDIATE_ENABLE_RESULT)


def configure_immediate_profile_enabling(s, immediate_enable_flag=False, default_smdp_oid=None,
                                         default_smdp_address=None):
    """ES10b.ConfigureImmediateProfileEnabling 'BF59' { [0] NULL, [1] OID, [2] UTF8String }."""
    f = "ES10b.ConfigureImmediateProfileEnabling"
    t = call(s, f, 0xBF59,
             tlv.encode(0x80) if immediate_enable_flag else None,
             None if default_smdp_oid is None else tlv.encode(0x81,
                                                              tlv.oid_encode(default_smdp_oid)),
             None if default_smdp_address is None else tlv.encode(
                 0x82, default_smdp_address.encode()))
    result(t, f, CONFIG_IMMEDIATE_ENABLE_RESULT)


def enable_emergency_profile(s, refresh_flag):
    """ES10b.EnableEmergencyProfile 'BF5B' { refreshFlag } -> None."""
    _refresh_function(s, "ES10b.EnableEmergencyProfile", 0xBF5B, refresh_flag,
                      ENABLE_EMERGENCY_PROFILE_RESULT)


def disable_emergency_profile(s, refresh_flag):
    """ES10b.DisableEmergencyProfile 'BF5C' { refreshFlag } -> None."""
    _refresh_function(s, "ES10b.DisableEmergencyProfile", 0xBF5C, refresh_flag,
                      DISABLE_EMERGENCY_PROFILE_RESULT)


def execute_fallback_mechanism(s, refresh_flag):
    """ES10b.ExecuteFallbackMechanism 'BF5D' { refreshFlag } -> None."""
    _refresh_function(s, "ES10b.ExecuteFallbackMechanism", 0xBF5D, refresh_flag,
                      EXECUTE_FALLBACK_RESULT)


def return_from_fallback(s, refresh_flag):
    """ES10b.ReturnFromFallback 'BF5E' { refreshFlag } -> None."""
    _refresh_function(s, "ES10b.ReturnFromFallback", 0xBF5E, refresh_flag,
                      RETURN_FROM_FALLBACK_RESULT)


# ---- ES10b: notifications --------------------------------------------------------------


def retrieve_notifications_list(s, seq_number=None, profile_management_operation=None,
                                euicc_package_results=False):
    """ES10b.RetrieveNotificationsList 'BF2B', SGP32 form, with at most one search criterion.

    Request: BF2B { searchCriteria [0] { seqNumber '80' | profileManagement-
    Operation '81' (NotificationEvent names) | euiccPackageResults '82' NULL } }.
    Returns a list of items, each with "kind" and "raw" (exact TLV to
    deliver): pending notifications (es10_signed.pending_notification: seqNumber,
    profileManagementOperation, notificationAddress, iccid ...) and/or
    EuiccPackageResults (es10_signed.euicc_package_result). The answer's
    notificationList 'A0' and euiccPackageResultList 'A2' are both accepted.
    notificationsListResultError -> FunctionError.
    """
    f = "ES10b.RetrieveNotificationsList"
    given = (seq_number is not None) + (profile_management_operation is not None) + \
        bool(euicc_package_results)
    if given > 1:
        raise ValueError("RetrieveNotificationsList takes at most one search criterion")
    crit = None
    if seq_number is not None:
        crit = tlv.encode(0x80, tlv.int_encode(seq_number))
    elif profile_management_operation is not None:
        crit = tlv.encode(0x81, _event_bits(profile_management_operation))
    elif euicc_package_results:
        crit = tlv.encode(0x82)
    t = call(s, f, 0xBF2B, None if crit is None else tlv.encode(0xA0, crit))
    c = d.need_any(t, (0xA0, 0xA2, 0x30, 0x81),
                   "notificationList (A0), euiccPackageResultList (A2) or error (81)")
    if c.tag == 0x81:
        raise fail(f, c.as_int(), NOTIFICATIONS_LIST_RESULT_ERROR)
    return [sg.pending_notification(k) for k in c]


def list_notification(s, profile_management_operation=None):
    """ES10b.ListNotification 'BF28' { profileManagementOperation '81' OPTIONAL }.

    Returns a list of NotificationMetadata dicts (seqNumber,
    profileManagementOperation, notificationAddress, iccid).
    """
    f = "ES10b.ListNotification"
    op = None
    if profile_management_operation is not None:
        op = tlv.encode(0x81, _event_bits(profile_management_operation))
    t = call(s, f, 0xBF28, op)
    c = d.need_any(t, (0xA0, 0x30, 0x81), "notificationMetadataList (A0) or error (81)")
    if c.tag == 0x81:
        raise fail(f, c.as_int(), LIST_NOTIFICATIONS_RESULT_ERROR)
    return [sg.notification_metadata(k) for k in c]


def remove_notification_from_list(s, seq_number):
    """ES10b.RemoveNotificationFromList 'BF30' { seqNumber '80' } -> 0 ok or 1 nothingToDelete.

    nothingToDelete is returned, not raised: the notification is gone
    either way (e.g. a repeated removal after a power cut).
    """
    f = "ES10b.RemoveNotificationFromList"
    t = call(s, f, 0xBF30, tlv.encode(0x80, tlv.int_encode(seq_number)))
    return result(t, f, DELETE_NOTIFICATION_STATUS, ok=(0, 1))


# ---- ES10c ---------------------------------------------------------------------------


def get_profiles_info(s, search=None, tags=None):
    """ES10c.GetProfilesInfo 'BF2D' { searchCriteria [0] { 4F | 5A | 95 } OPTIONAL, tagList '5C' }.

    search: None, {"iccid": "8901..."}, {"isdpAid": hex or bytes} or
    {"profileClass": 0..2 or "test"/"provisioning"/"operational"}.
    tags: None, bytes (the tag list as sent) or a list of int tags
    ([0x5A, 0x9F70]). Returns a list of SGP32-ProfileInfo dicts
    (es10_decode.profile_info); profileInfoListError -> FunctionError.
    """
    f = "ES10c.GetProfilesInfo"
    crit = None
    if search:
        if len(search) != 1:
            raise ValueError("GetProfilesInfo takes one search criterion, got %r" % (search,))
        key = list(search)[0]
        v = search[key]
        if key == "iccid":
            crit = tlv.encode(0x5A, iccid_bytes(v))
        elif key == "isdpAid":
            crit = tlv.encode(0x4F, d.binary(v, "isdpAid"))
        elif key == "profileClass":
            v = PROFILE_CLASS.get(v, v)
            if not isinstance(v, int):
                raise ValueError("profileClass %r: expected 0..2 or %s" % (v, list(PROFILE_CLASS)))
            crit = tlv.encode(0x95, tlv.int_encode(v))
        else:
            raise ValueError("unknown GetProfilesInfo criterion %r" % (key,))
        crit = tlv.encode(0xA0, crit)
    taglist = None
    if tags is not None:
        if not isinstance(tags, (bytes, bytearray)):
            tags = b"".join(tlv.tag_bytes(x) for x in tags)
        taglist = tlv.encode(0x5C, bytes(tags))
    t = call(s, f, 0xBF2D, crit, taglist)
    r = d.profile_info_list(t)
    if "profileInfoListError" in r:
        raise fail(f, r["profileInfoListError"], PROFILE_INFO_LIST_ERROR)
    return r["profileInfoListOk"]


def euicc_memory_reset(s, options):
    """ES10c.EuiccMemoryReset { resetOptions '82' } ('BF64'; 'BF34' for a v1.0 session).

    options: list of RESET_OPTIONS names. Returns {"resetResult",
    "resetEimResult"?, "resetImmediateEnableConfigResult"?}. resetResult
    nothingToDelete is returned (nothing left to reset); other non-ok
    resetResult -> FunctionError. The optional results are returned as codes
    (names: RESET_EIM_RESULT, RESET_IMMEDIATE_ENABLE_CONFIG_RESULT).
    """
    f = "ES10c.EuiccMemoryReset"
    tag = ver.tag("EuiccMemoryReset", ver.of(s))
    t = call(s, f, tag, tlv.encode(0x82, tlv.bits_encode(options, RESET_OPTIONS)))
    result(t, f, RESET_RESULT, ok=(0, 1))
    out = d.fields(t, {0x80: ("resetResult", d.v_int), 0x81: ("resetEimResult", d.v_int),
                       0x82: ("resetImmediateEnableConfigResult", d.v_int)})
    return out
