"""ESipa, the IPA <-> eIM interface (SGP.32 v1.2 6.1, 6.3), ASN.1 binding, IPA side.

One function per message. IPA -> eIM messages are built here as the exact
DER of the EsipaMessageFromIpaToEim alternative (the body of
`POST /gsma/rsp2/asn1`, or of a CoAP request); eIM -> IPA messages are
decoded by the functions re-exported from ipa_core.esipa_decode
(decode_get_eim_package_response, decode_provide_eim_package_result_response,
decode_initiate_authentication_response, decode_authenticate_client_response,
decode_get_bound_profile_package_response, decode_cancel_session_response,
decode_transfer_eim_package_request, decode_eim_message; and
open_get_bound_profile_package_response, which reads the BPP answer from
a stream one STORE DATA segment at a time). ipa_core.esipa_json
maps the same messages to and from the JSON binding, so the IPA logic does
not care which binding is in use.

    IPA -> eIM                             eIM -> IPA
    get_eim_package_request      BF4F      decode_get_eim_package_response
    provide_eim_package_result   BF50      decode_provide_eim_package_result_response
    handle_notification          BF3D      (no body)
    initiate_authentication_request BF39   decode_initiate_authentication_response
    authenticate_client_request  BF3B      decode_authenticate_client_response
    get_bound_profile_package_request BF3A decode_get_bound_profile_package_response
    cancel_session_request       BF41      decode_cancel_session_response
    transfer_eim_package_response BF4E     decode_transfer_eim_package_request (eIM push)

Signed objects (EuiccPackageResult, notifications, PIR, AuthenticateServer /
PrepareDownload / CancelSession answers) are taken as whole TLVs - bytes,
or the es10 dicts carrying them under "raw" - and placed in the message
byte for byte. Where X.680 implicit tagging replaces a tagged CHOICE's own
tag (CancelSessionRequestEsipa 'A1' for 'BF41', certificates 'A5'/'A6'
for '30') only that outer tag changes; the signed content does not.

Version differences (v1.0 vs v1.2) come from ipa_core.version: in
GetEimPackageRequest, stateChangeCause (absent in v1.0: silently left out,
the eIM could not read it) and rPLMN's tag; ProvideEimPackageResult's
eidValue (v1.0 has none: left out) and error alternative; the
ePRAndNotifications notificationList; IpaEuiccData's moved components and
its error; HandleNotificationEsipa's provideEimPackageResult tag.

Caller mistakes (an unknown name, a wrong size) are ValueError; a
"forwarded verbatim" argument that is not one TLV of the expected tag is a
ProtocolError (it came from a peer).

What a polling board never uses lives in other modules, reachable here by
its old name and imported on first use (module __getattr__), so a board's
frozen bundle leaves it out: TransferEimPackage and decode_eim_message in
ipa_core.esipa_push, the minimizeEsipaBytes builders
(compact_authenticate_server_response, compact_prepare_download_response)
in ipa_core.esipa_compact.
"""

from ipa_core import tlv
from ipa_core import es10_decode as d
from ipa_core import version as ver
from ipa_core.es10_download import encode_ctx_params1
from ipa_core.errors import Names

# eIM -> IPA decoders and their name tables are part of this API; so are the helpers the
# builders here share with esipa_push / esipa_compact (in esipa_decode, which they all import:
# neither imports this module).
from ipa_core.esipa_decode import (  # noqa: F401
    AUTHENTICATE_CLIENT_ERROR, CANCEL_SESSION_ERROR, ECO, EIM_PACKAGE_ERROR,
    EIM_PACKAGE_RESULT_ERROR_CODE, GET_BOUND_PROFILE_PACKAGE_ERROR, INITIATE_AUTHENTICATION_ERROR,
    IPA_EUICC_DATA_ITEMS, PENDING_NOTIFICATION_TAGS, PROVIDE_EIM_PACKAGE_RESULT_ERROR, PSMO, code,
    decode_authenticate_client_response, decode_cancel_session_response,
    decode_get_bound_profile_package_response, decode_get_eim_package_response,
    decode_initiate_authentication_response, decode_provide_eim_package_result_response,
    epr_and_notifications, euicc_package_request, ipa_euicc_data_items, ipa_euicc_data_request,
    open_get_bound_profile_package_response, profile_download_trigger_request, raw_tlv, retag,
)

# ---- names (numbers from SGP32Definitions v1.2) ---------------------------------------

STATE_CHANGE_CAUSE = {"otherEim": 0, "fallback": 1, "emergencyProfile": 2, "local": 3,
                      "reset": 4, "immediateEnableProfile": 5, "deviceChange": 6,
                      "undefined": 127}
IPA_EUICC_DATA_ERROR_CODE = Names(((1, "incorrectTagList"), (5, "euiccCiPKIdNotFound"),
                                   (104, "ecallActive"), (127, "undefinedError")))
PROFILE_DOWNLOAD_ERROR_REASON = Names(((104, "ecallActive"), (127, "undefinedError")))
IPA_FEATURES = ("directRspServerCommunication", "indirectRspServerCommunication",
                "eimDownloadDataHandling", "eimCtxParams1Generation",
                "eimProfileMetadataVerification", "minimizeEsipaBytes")
IPA_SUPPORTED_PROTOCOLS = ("ipaRetrieveHttps", "ipaRetrieveCoaps", "ipaInjectHttps",
                           "ipaInjectCoaps", "ipaProprietary")


# ---- helpers -----------------------------------------------------------------------------


def eid_bytes(eid):
    """EID as 32 digits (hex) or 16 bytes -> 16 bytes."""
    b = d.binary(eid, "eidValue")
    if len(b) != 16:
        raise ValueError("eidValue: expected 16 bytes (32 digits), got %d bytes" % len(b))
    return b


def tid_bytes(x, what="transactionId"):
    """TransactionId (1..16 bytes) from bytes or hex."""
    b = d.binary(x, what)
    if not 1 <= len(b) <= 16:
        raise ValueError("%s: expected 1..16 bytes, got %d" % (what, len(b)))
    return b


def _opt(tag, value, conv):
    return None if value is None else tlv.encode(tag, conv(value))


def _utf8(s):
    return s.encode("utf-8")


# ---- GetEimPackage (SGP.32 6.3.2.5) -----------------------------------------------------------


def get_eim_package_request(eid, notify_state_change=False, state_change_cause=None, rplmn=None,
                            version=ver.DEFAULT):
    """ESipa.GetEimPackage request 'BF4F' { eidValue '5A', notifyStateChange [0] NULL,
    stateChangeCause [1], rPLMN [2] OCTET STRING (SIZE(3)) }.

    eid: 32 hex digits or 16 bytes. state_change_cause: int or a
    STATE_CHANGE_CAUSE name; left out for a v1.0 eIM (no such component).
    rplmn: the 3 bytes (TS 24.008 MCC/MNC) or 6 hex digits.
    """
    version = ver.norm(version)
    cause = None
    if state_change_cause is not None:
        tag = ver.tag("GetEimPackageRequest.stateChangeCause", version)
        if tag is not None:
            n = STATE_CHANGE_CAUSE.get(state_change_cause, state_change_cause)
            if not isinstance(n, int):
                raise ValueError("stateChangeCause %r: expected an int or one of %s"
                                 % (state_change_cause, ", ".join(STATE_CHANGE_CAUSE)))
            cause = tlv.encode(tag, tlv.int_encode(n))
    plmn = None
    if rplmn is not None:
        plmn = d.binary(rplmn, "rPLMN")
        if len(plmn) != 3:
            raise ValueError("rPLMN: expected 3 bytes, got %d" % len(plmn))
        plmn = tlv.encode(ver.tag("GetEimPackageRequest.rPLMN", version), plmn)
    return tlv.enc(0xBF4F, tlv.encode(0x5A, eid_bytes(eid)),
                   tlv.encode(0x80) if notify_state_change else None, cause, plmn)


# ---- eIM package results -----------------------------------------------------------------------


def eim_package_result(euicc_package_result=None, notifications=None, ipa_euicc_data_response=None,
                       profile_download_trigger_result=None, error_code=None,
                       eim_transaction_id=None, version=ver.DEFAULT):
    """EimPackageResult (the CHOICE alternative's TLV), exactly one of:

    - euicc_package_result: the eUICC's EuiccPackageResult 'BF51' (bytes or
      the es10 dict), verbatim; with a non-empty `notifications` list (raw
      PendingNotification TLVs or es10 dicts) it becomes ePRAndNotifications
      '30' { BF51, notificationList 'A0' { ... } };
    - ipa_euicc_data_response: 'BF52' from ipa_euicc_data_response() or
      ipa_euicc_data_response_error();
    - profile_download_trigger_result: 'BF54' from profile_download_trigger_result();
    - error_code (int or EIM_PACKAGE_RESULT_ERROR_CODE name), with the
      package's eim_transaction_id: eimPackageResultResponseError [0] 'A0'
      { eimTransactionId [0] '80'?, eimPackageResultErrorCode '02' }; v1.0:
      eimPackageError '02' (no room for the transaction id: left out).
    v1.0's ePRAndNotifications: see esipa_decode.epr_and_notifications.
    """
    version = ver.norm(version)
    given = [x is not None for x in (euicc_package_result, ipa_euicc_data_response,
                                     profile_download_trigger_result, error_code)]
    if given.count(True) != 1:
        raise ValueError("EimPackageResult takes exactly one of euicc_package_result, "
                         "ipa_euicc_data_response, profile_download_trigger_result, error_code")
    if notifications and euicc_package_result is None:
        raise ValueError("notifications go with a euicc_package_result (ePRAndNotifications)")
    if eim_transaction_id is not None and error_code is None:
        raise ValueError("eim_transaction_id goes with error_code; the other results carry "
                         "their own")
    if euicc_package_result is not None:
        epr = raw_tlv(euicc_package_result, (0xBF51,), "euiccPackageResult")
        if notifications:
            return epr_and_notifications(epr, notifications, version)
        return epr
    if ipa_euicc_data_response is not None:
        return raw_tlv(ipa_euicc_data_response, (0xBF52,), "ipaEuiccDataResponse")
    if profile_download_trigger_result is not None:
        return raw_tlv(profile_download_trigger_result, (0xBF54,), "profileDownloadTriggerResult")
    err = tlv.encode(0x02, tlv.int_encode(code(error_code, EIM_PACKAGE_RESULT_ERROR_CODE,
                                               "eimPackageResultErrorCode")))
    if ver.tag("EimPackageResult.error", version) == 0x02:
        return err
    return tlv.enc(0xA0, _opt(0x80, eim_transaction_id, tid_bytes), err)


def provide_eim_package_result(eid=None, euicc_package_result=None, notifications=None,
                               ipa_euicc_data_response=None, profile_download_trigger_result=None,
                               error_code=None, eim_transaction_id=None, version=ver.DEFAULT):
    """ESipa.ProvideEimPackageResult 'BF50' { eidValue '5A' OPTIONAL, eimPackageResult }.

    The result arguments are those of eim_package_result() (exactly one).
    v1.0 (::= [80] CHOICE): BF50 { the result } - the eid is left out.
    """
    if ver.tag("ProvideEimPackageResult.eidValue", version) is None:
        eid = None
    return tlv.enc(0xBF50, _opt(0x5A, eid, eid_bytes),
                   eim_package_result(euicc_package_result, notifications, ipa_euicc_data_response,
                                      profile_download_trigger_result, error_code,
                                      eim_transaction_id, version))


def encode_ipa_capabilities(ipa_features, ipa_supported_protocols=None, tag=0xA8):
    """IpaCapabilities { ipaFeatures [0] BIT STRING, ipaSupportedProtocols [1] BIT STRING OPTIONAL }.

    Names from IPA_FEATURES / IPA_SUPPORTED_PROTOCOLS; tag 'A8' as in IpaEuiccData.
    """
    return tlv.enc(tag, tlv.encode(0x80, tlv.bits_encode(ipa_features, IPA_FEATURES)),
                   _opt(0x81, ipa_supported_protocols,
                        lambda p: tlv.bits_encode(p, IPA_SUPPORTED_PROTOCOLS)))


def encode_device_info(tac, device_capabilities=None, imei=None, tag=0xA9):
    """DeviceInfo { tac '80', deviceCapabilities 'A1', imei '82'? } under `tag` ('A9' in IpaEuiccData).

    Arguments as es10_download.encode_ctx_params1 takes them.
    """
    info = tlv.decode(encode_ctx_params1(None, tac, device_capabilities, imei)).need(0xA1)
    return tlv.encode(tag, info.value)


def _capabilities(x):
    if isinstance(x, dict):
        return encode_ipa_capabilities(x.get("ipaFeatures", ()), x.get("ipaSupportedProtocols"))
    return retag(raw_tlv(x, (0xA8, 0x30), "ipaCapabilities"), 0xA8)


def _device_info(x):
    if isinstance(x, dict) and "raw" not in x:
        return encode_device_info(x["tac"], x.get("deviceCapabilities"), x.get("imei"))
    return retag(raw_tlv(x, (0xA9, 0xA1, 0x30), "deviceInfo"), 0xA9)


def _certificate(x, tag, what):
    """A Certificate as DER '30 ...' (es10.get_certs) -> [n] IMPLICIT: the outer tag replaced."""
    return retag(raw_tlv(x, (0x30, tag), what), tag)


def ipa_euicc_data_response(eim_transaction_id=None, notifications=None, default_smdp_address=None,
                            euicc_package_results=None, euicc_info1=None, euicc_info2=None,
                            root_smds_address=None, association_token=None, eum_certificate=None,
                            euicc_certificate=None, ipa_capabilities=None, device_info=None,
                            version=ver.DEFAULT):
    """IpaEuiccDataResponse 'BF52' { ipaEuiccData 'A0' { ... } } with what the tagList asked for.

    Components (None = left out; an empty list is sent as an empty list):
    notifications - list of raw PendingNotification TLVs ('A0' notificationsList);
    default_smdp_address / root_smds_address - str ('81' / '83');
    euicc_package_results - list of raw 'BF51' ('A2' euiccPackageResultList);
    euicc_info1 / euicc_info2 - raw 'BF20' / 'BF22' (or the es10 dicts);
    association_token - int ('84'); eum_certificate / euicc_certificate -
    DER '30' as ES10b.GetCerts gives ('A5' / 'A6'); eim_transaction_id
    ('87', echo the request's); ipa_capabilities - {"ipaFeatures": [...],
    "ipaSupportedProtocols": [...]} or a raw TLV ('A8'); device_info -
    {"tac", "deviceCapabilities", "imei"} (see encode_device_info) or a raw
    DeviceInfo TLV ('A9'). Order is the module's (DER of a SEQUENCE).

    v1.0 IpaEuiccData: defaultSmdpAddress '80' first; no eimTransactionId;
    notifications and results go last, in notificationsList [43] 'BF2B' (an
    SGP32-RetrieveNotificationsListResponse): { notificationList 'A0' },
    { euiccPackageResultList 'A2' }, or with both { notificationAndEprList
    'A3' { 'A0', 'A1' } }.
    """
    def tlv_list(tag, items, tags, what):
        if items is None:
            return None
        return tlv.encode(tag, [raw_tlv(x, tags, what) for x in items])

    notes = tlv_list(0xA0, notifications, PENDING_NOTIFICATION_TAGS, "a PendingNotification")
    results = tlv_list(0xA2, euicc_package_results, (0xBF51,), "an EuiccPackageResult")
    v1_0 = None
    if ver.is_v1_0(version):
        eim_transaction_id = None
        if notes is not None and results is not None:
            v1_0 = tlv.encode(0xBF2B, tlv.enc(0xA3, notes, retag(results, 0xA1)))
        elif notes is not None or results is not None:
            v1_0 = tlv.encode(0xBF2B, notes or results)
        notes = results = None
    return tlv.enc(0xBF52, tlv.enc(
        0xA0,
        notes,
        _opt(ver.tag("IpaEuiccData.defaultSmdpAddress", version), default_smdp_address, _utf8),
        results,
        None if euicc_info1 is None else raw_tlv(euicc_info1, (0xBF20,), "euiccInfo1"),
        None if euicc_info2 is None else raw_tlv(euicc_info2, (0xBF22,), "euiccInfo2"),
        _opt(0x83, root_smds_address, _utf8),
        _opt(0x84, association_token, tlv.int_encode),
        None if eum_certificate is None else _certificate(eum_certificate, 0xA5, "eumCertificate"),
        None if euicc_certificate is None else _certificate(euicc_certificate, 0xA6,
                                                            "euiccCertificate"),
        _opt(0x87, eim_transaction_id, tid_bytes),  # always None in v1.0 (see above)
        None if ipa_capabilities is None else _capabilities(ipa_capabilities),
        None if device_info is None else _device_info(device_info),
        v1_0,
    ))


def ipa_euicc_data_response_error(error_code, eim_transaction_id=None, version=ver.DEFAULT):
    """IpaEuiccDataResponse 'BF52' { ipaEuiccDataResponseError 'A1' { eimTransactionId [0] '80'?,
    ipaEuiccDataErrorCode '02' } }; error_code: int or IPA_EUICC_DATA_ERROR_CODE name.

    v1.0: BF52 { ipaEuiccDataError '81' code } - no transaction id, and
    ecallActive (not a v1.0 code) is sent as undefinedError.
    """
    n = code(error_code, IPA_EUICC_DATA_ERROR_CODE, "ipaEuiccDataErrorCode")
    tag = ver.tag("IpaEuiccDataResponse.error", version)
    if tag == 0x81:
        return tlv.enc(0xBF52, tlv.encode(0x81, tlv.int_encode(127 if n == 104 else n)))
    return tlv.enc(0xBF52, tlv.enc(
        tag, _opt(0x80, eim_transaction_id, tid_bytes), tlv.encode(0x02, tlv.int_encode(n))))


def profile_download_trigger_result(profile_installation_result=None, error_reason=None,
                                    error_response=None, eim_transaction_id=None):
    """ProfileDownloadTriggerResult 'BF54' { eimTransactionId [2] '82'?, one of:
    profileInstallationResult 'BF37' (raw, verbatim) | profileDownloadError '30'
    { profileDownloadErrorReason [0] '80', errorResponse '04'? } }.

    error_reason: int or PROFILE_DOWNLOAD_ERROR_REASON name; error_response:
    bytes (e.g. the failing ES9+/ESipa answer).
    """
    if (profile_installation_result is None) == (error_reason is None):
        raise ValueError("ProfileDownloadTriggerResult takes exactly one of "
                         "profile_installation_result, error_reason")
    if profile_installation_result is not None:
        if error_response is not None:
            raise ValueError("error_response goes with error_reason")
        data = raw_tlv(profile_installation_result, (0xBF37,), "profileInstallationResult")
    else:
        data = tlv.enc(0x30, tlv.encode(0x80, tlv.int_encode(
            code(error_reason, PROFILE_DOWNLOAD_ERROR_REASON, "profileDownloadErrorReason"))),
            _opt(0x04, error_response, bytes))
    return tlv.enc(0xBF54, _opt(0x82, eim_transaction_id, tid_bytes), data)


# ---- HandleNotification (TransferEimPackage: ipa_core.esipa_push) ---------------------------


def handle_notification(pending_notification=None, provide_eim_package_result=None,
                        version=ver.DEFAULT):
    """ESipa.HandleNotification 'BF3D', one of:

    - pending_notification: a raw SGP32-PendingNotification ('BF37', '30',
      'A0', 'A1') from RetrieveNotificationsList -> BF3D { A0 { it } } ([0]
      is explicit: PendingNotification is a CHOICE);
    - provide_eim_package_result: 'BF50' from provide_eim_package_result()
      -> BF3D { BF50 ... } (v1.0: its tag becomes 'A1').
    The eIM answers with no body.
    """
    if (pending_notification is None) == (provide_eim_package_result is None):
        raise ValueError("HandleNotification takes exactly one of pending_notification, "
                         "provide_eim_package_result")
    if pending_notification is not None:
        return tlv.enc(0xBF3D, tlv.encode(
            ver.tag("HandleNotificationEsipa.pendingNotification", version),
            raw_tlv(pending_notification, PENDING_NOTIFICATION_TAGS, "pendingNotification")))
    pepr = raw_tlv(provide_eim_package_result, (0xBF50,), "provideEimPackageResult")
    return tlv.enc(0xBF3D, retag(pepr, ver.tag("HandleNotificationEsipa.provideEimPackageResult",
                                               version)))


# ---- indirect profile download (SGP.32 6.3.2.1 - 6.3.2.4) ---------------------------------------


def initiate_authentication_request(euicc_challenge, euicc_info1=None, smdp_address=None,
                                    eim_transaction_id=None, version=ver.DEFAULT):
    """ESipa.InitiateAuthentication 'BF39' { euiccChallenge [1] '81', smdpAddress [3] '83'?,
    euiccInfo1 'BF20'?, eimTransactionId [2] '82'? }.

    euicc_challenge: the 16 bytes from ES10b.GetEUICCChallenge; euicc_info1:
    raw 'BF20' (or the es10 dict); smdp_address: str; eim_transaction_id:
    the one of the ProfileDownloadTriggerRequest that started the download
    (v1.0 has no such component: left out).
    """
    ch = bytes(euicc_challenge)
    if len(ch) != 16:
        raise ValueError("euiccChallenge: expected 16 bytes, got %d" % len(ch))
    txid_tag = ver.tag("InitiateAuthenticationRequestEsipa.eimTransactionId", version)
    return tlv.enc(0xBF39, tlv.encode(0x81, ch), _opt(0x83, smdp_address, _utf8),
                   None if euicc_info1 is None else raw_tlv(euicc_info1, (0xBF20,), "euiccInfo1"),
                   _opt(txid_tag, eim_transaction_id if txid_tag else None,
                        lambda x: tid_bytes(x, "eimTransactionId")))


def authenticate_client_request(transaction_id, authenticate_server_response):
    """ESipa.AuthenticateClient 'BF3B' { transactionId [0] '80', authenticateServerResponse 'BF38' }.

    authenticate_server_response: the ES10b.AuthenticateServer answer
    (bytes or its es10 dict) verbatim, or compact_authenticate_server_response().
    """
    return tlv.enc(0xBF3B, tlv.encode(0x80, tid_bytes(transaction_id)),
                   raw_tlv(authenticate_server_response, (0xBF38,), "authenticateServerResponse"))


def get_bound_profile_package_request(transaction_id, prepare_download_response):
    """ESipa.GetBoundProfilePackage 'BF3A' { transactionId [0] '80', prepareDownloadResponse 'BF21' }.

    prepare_download_response: the ES10b.PrepareDownload answer verbatim, or
    compact_prepare_download_response().
    """
    return tlv.enc(0xBF3A, tlv.encode(0x80, tid_bytes(transaction_id)),
                   raw_tlv(prepare_download_response, (0xBF21,), "prepareDownloadResponse"))


def cancel_session_request(transaction_id, cancel_session_response):
    """ESipa.CancelSession 'BF41' { transactionId [0] '80', cancelSessionResponse [1] 'A1' }.

    Both components are untagged in the module, so automatic tags apply, and
    [1] on the tagged [65] CHOICE replaces 'BF41' (X.680 implicit):
    the ES10b.CancelSession answer 'BF41 L X' goes as 'A1 L X', X verbatim.
    """
    raw = raw_tlv(cancel_session_response, (0xBF41, 0xA1), "cancelSessionResponse")
    return tlv.enc(0xBF41, tlv.encode(0x80, tid_bytes(transaction_id)), retag(raw, 0xA1))


_PUSH = ("transfer_eim_package_response", "decode_transfer_eim_package_request",
         "decode_eim_message", "MESSAGES")
_COMPACT = ("compact_authenticate_server_response", "compact_prepare_download_response")


def __getattr__(name):
    """Names that moved to ipa_core.esipa_push / esipa_compact (PEP 562; MicroPython module
    __getattr__): imported on first use, so a polling board never loads them."""
    if name in _PUSH:
        from ipa_core import esipa_push as m
    elif name in _COMPACT:
        from ipa_core import esipa_compact as m
    else:
        raise AttributeError("module 'ipa_core.esipa' has no attribute %r" % (name,))
    return getattr(m, name)
