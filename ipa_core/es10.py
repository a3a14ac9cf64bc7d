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

The functions a board's IPA never calls (GetEUICCInfo2 decoded, GetRAT,
GetConnectivityParameters, AddInitialEim, SetDefaultDpAddress, the
emergency / fallback functions, GetProfilesInfo,
EuiccMemoryReset, ...) live in ipa_core.es10_admin and are reachable here
by name, imported on first use (module __getattr__), so a board's frozen
bundle leaves them out.
"""

from ipa_core import tlv
from ipa_core import es10_decode as d
from ipa_core import es10_signed as sg
from ipa_core import version as ver
from ipa_core.errors import TlvError, Names

# ES10b download functions live in es10_download (size); they are part of this API.
from ipa_core.es10_download import (  # noqa: F401
    AUTHENTICATE_ERROR_CODE, CANCEL_SESSION_ERROR, CANCEL_SESSION_REASON, DEVICE_CAPABILITIES,
    DOWNLOAD_ERROR_CODE, MAX_PACKAGE, MAX_SEGMENT, BppSegments, authenticate_server, bpp_segments,
    cancel_session, encode_ctx_params1, load_bound_profile_package, prepare_download,
)

# ---- error / result names per function (numbers from the ASN.1 modules) -------

GET_CERTS_ERROR = Names(((1, "invalidCiPKId"), (127, "undefinedError")))  # module spells it "undfinedError"
EUICC_PACKAGE_ERROR_CODE = sg.EUICC_PACKAGE_ERROR_CODE
NOTIFICATIONS_LIST_RESULT_ERROR = Names(((127, "undefinedError"),))
LIST_NOTIFICATIONS_RESULT_ERROR = Names(((127, "undefinedError"),))
DELETE_NOTIFICATION_STATUS = Names(((0, "ok"), (1, "nothingToDelete"), (127, "undefinedError")))
PROFILE_ROLLBACK_RESULT = Names(((0, "ok"), (1, "rollbackNotAllowed"), (5, "catBusy"),
                                 (7, "commandError"), (127, "undefinedError")))
IMMEDIATE_ENABLE_RESULT = Names(((0, "ok"), (1, "immediateEnableNotAvailable"),
                                 (4, "noSessionContext"), (5, "catBusy"),
                                 (127, "undefinedError")))


# ---- helpers -----------------------------------------------------------------------

call = d.call
fail = d.fail
result = d.result


# ---- ES10a ---------------------------------------------------------------------


def get_euicc_configured_addresses(s):
    """ES10a.GetEuiccConfiguredAddresses 'BF3C' -> {"defaultDpAddress"?, "rootDsAddress"}."""
    t = call(s, "ES10a.GetEuiccConfiguredAddresses", 0xBF3C)
    out = d.fields(t, {0x80: ("defaultDpAddress", d.v_str), 0x81: ("rootDsAddress", d.v_str)})
    return d.require(out, t, ("rootDsAddress",))


# ---- ES10b: information -------------------------------------------------------------


def get_euicc_info1(s):
    """ES10b.GetEUICCInfo 'BF20' -> {"svn", "euiccCiPKIdListForVerification",
    "euiccCiPKIdListForSigning", "raw"} (raw goes into InitiateAuthentication)."""
    return d.euicc_info1(call(s, "ES10b.GetEUICCInfo1", 0xBF20))


def get_euicc_info2_raw(s):
    """ES10b.GetEUICCInfo 'BF22' -> the SGP32-EUICCInfo2 TLV bytes, for ipaEuiccData (forwarded
    as the eUICC gave them). Checks what get_euicc_info2 requires (tag BF22; profileVersion,
    svn and euiccFirmwareVer present as 3-byte VersionTypes) without decoding the rest, so a
    board does not carry the full decoder (es10_admin)."""
    t = d.expect(d.unwrap(call(s, "ES10b.GetEUICCInfo2", 0xBF22)), 0xBF22, "EUICCInfo2")
    for tag, name in ((0x81, "profileVersion"), (0x82, "svn"), (0x83, "euiccFirmwareVer")):
        c = t.find(tag)
        if c is None:
            raise TlvError(t.vstart, "component %s in %X" % (name, t.tag), "it missing")
        d.version_str(c)
    return t.raw


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
    t = call(s, f, 0xBF58, d.encode_refresh_flag(refresh_flag))
    result(t, f, PROFILE_ROLLBACK_RESULT, tags=(0x02, 0x80))
    epr = t.find(0xBF51)
    return None if epr is None else sg.euicc_package_result(epr)


def immediate_enable(s, refresh_flag):
    """ES10b.ImmediateEnable 'BF5A' { refreshFlag '80' } -> None; errors -> FunctionError.

    v1.0 (EnableUsingDD): the request is empty, 'BF5A 00'; the refresh flag is not sent.
    """
    f = "ES10b.ImmediateEnable"
    if ver.tag("ImmediateEnableRequest.refreshFlag", ver.of(s)) is None:
        d.result(d.call(s, f, 0xBF5A), f, IMMEDIATE_ENABLE_RESULT)
    else:
        d.refresh_call(s, f, 0xBF5A, refresh_flag, IMMEDIATE_ENABLE_RESULT)


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
        crit = tlv.encode(0x81, d.event_bits(profile_management_operation))
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
    profileManagementOperation, notificationAddress, iccid): what is pending,
    without the signed notifications (a board reads those one at a time,
    ipa_core.ipa_notify).
    """
    f = "ES10b.ListNotification"
    op = None
    if profile_management_operation is not None:
        op = tlv.encode(0x81, d.event_bits(profile_management_operation))
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


def __getattr__(name):
    """The ES10 functions and tables that moved to ipa_core.es10_admin (PEP 562; MicroPython
    module __getattr__): imported on first use, so a board never loads them."""
    if name.startswith("__"):
        raise AttributeError(name)
    from ipa_core import es10_admin

    try:
        return getattr(es10_admin, name)
    except AttributeError:
        raise AttributeError("module 'ipa_core.es10' has no attribute %r" % (name,))
