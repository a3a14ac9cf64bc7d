"""ESipa messages as the simulated eIM reads and writes them (SGP.32 v1.2 6.3, SGP32Definitions).

Written from the module with AUTOMATIC TAGS applied by hand (X.680 25.3 /
29.3): a SEQUENCE's or CHOICE's untagged components get [0], [1], ... only
when *none* of them carries a tag; those tags are implicit, except on a
CHOICE, which is always tagged explicitly. This module never imports the
IPA's message modules: it is the independent peer the IPA is tested against.

What the eIM sends (eIM -> IPA):

    GetEimPackageResponse [79] CHOICE (explicit):
        BF4F { BF51 EuiccPackageRequest }             (ipa_host.sim.eim.signer builds it)
        BF4F { BF52 IpaEuiccDataRequest }
        BF4F { BF54 ProfileDownloadTriggerRequest }
        BF4F { 02 eimPackageError }      -- untagged: its siblings carry tags, so no auto tag
    IpaEuiccDataRequest BF52 { 5C tagList, [04 euiccCiPKIdentifierToBeUsed],
        [A1 { 80 seqNumber | 81 NotificationEvent }], [A2 { 80 seqNumber }], [83 eimTransactionId] }
    ProfileDownloadTriggerRequest BF54 { [A0 { 80 activationCode | 81 00 contactDefaultSmdp |
        A2 { [80 smdsAddress] } }], [82 eimTransactionId] }
    ProvideEimPackageResultResponse [80] CHOICE (explicit):
        BF50 { BF53 { 80 seqNumber .. } }  |  BF50 { 30 00 }  |  BF50 { 02 error }
    Download relays not served yet (the choice has only untagged alternatives, so
    AUTOMATIC TAGS apply and the error INTEGER gets the next context tag):
        BF39 { 81 undefinedError }  BF3B { 82 .. }  BF3A { 81 .. }  BF41 { 81 .. }

What the eIM reads (IPA -> eIM), decoded tolerantly where compilers differ:

    GetEimPackageRequest BF4F { 5A eidValue, [80 00 notifyStateChange], [81 stateChangeCause],
        [82 rPLMN] }
    ProvideEimPackageResult BF50 { [5A eidValue], EimPackageResult }
    EimPackageResult (untagged CHOICE, some alternatives tagged -> no auto tags):
        BF51 EuiccPackageResult | 30 ePRAndNotifications { BF51, A0 PendingNotificationList } |
        BF52 IpaEuiccDataResponse | BF54 ProfileDownloadTriggerResult |
        A0 eimPackageResultResponseError { [80 eimTransactionId], 02 code }
    EuiccPackageResult [81] CHOICE, alternatives untagged -> [0] [1] [2]:
        BF51 { A0 { 30 euiccPackageResultDataSigned {80 eimId, 81 counter, [82 txid], 83 seq,
                                                     30 euiccResult}, 5F37 euiccSignEPR } }
        BF51 { A1 { 30 {80 eimId, 81 counter, [82 txid], 02 code}, 5F37 euiccSignEPE } }
        BF51 { A2 { 80 eimId, [82 txid], [84 associationToken] } }
        (also read: the alternative's SEQUENCE without the [n], as some compilers write it)
    IpaEuiccDataResponse [82] CHOICE, alternatives untagged -> BF52 { A0 IpaEuiccData } |
        BF52 { A1 { [80 txid], 02 code } }
    ProfileDownloadTriggerResult BF54 { [82 txid], BF37 PIR | 30 { 80 reason, [04 errorResponse] } }
    HandleNotificationEsipa [61] CHOICE (explicit): BF3D { A0 { PendingNotification } } |
        BF3D { BF50 ProvideEimPackageResult }  (v1.0 style without the A0 read too)
    SGP32-PendingNotification: BF37 profileInstallationResult | 30 otherSignedNotification |
        A0 compactProfileInstallationResult | A1 compactOtherSignedNotification

SGP.32 v1.0 (SGP32Definitions sgp32v1), where it differs - each function taking
`version` encodes its version's form and refuses the other's with a TlvError
saying so:

    GetEimPackageRequest BF4F { 5A, [80 00], [81 rPLMN] }   (no stateChangeCause)
    GetEimPackageResponse eimPackageError: noEimPackageAvailable 1 / undefinedError 127 only
    ProvideEimPackageResult [80] CHOICE: BF50 { BF51 | 30 ePRAndNotifications | BF52 | BF54 |
        02 eimPackageError }  -- no eidValue
    ePRAndNotifications 30 { BF51, BF2B { A0 { PendingNotification.. } } }
    ProvideEimPackageResultResponse [80] SEQUENCE: BF50 { [BF53 ..] }  (no error alternative)
    HandleNotificationEsipa: BF3D { A0 { PendingNotification } } | BF3D { A1 <BF50's content> }
    IpaEuiccDataRequest BF52 { 5C tagList, [04 euiccCiPKId], [A1 { 80 seqNumber |
        81 NotificationEvent | 82 00 euiccPackageResults }] }  (no eimTransactionId)
    IpaEuiccDataResponse BF52 { A0 IpaEuiccData } | BF52 { 81 ipaEuiccDataError }
    IpaEuiccData { [80 defaultSmdpAddress], BF20, BF22, 83, 84, A5, A6, A8, A9,
        [BF2B { A0 notifications | A2 results | A3 { A0, A1 } }] }

Every parser raises TlvError (a ProtocolError) naming what was expected and
what came; integers are bounded before they are converted.
"""

import binascii

from ipa_core import tlv
from ipa_core.errors import TlvError

# ESipa message tags (EsipaMessageFromIpaToEim / EsipaMessageFromEimToIpa)
INITIATE_AUTHENTICATION = 0xBF39
AUTHENTICATE_CLIENT = 0xBF3B
GET_BOUND_PROFILE_PACKAGE = 0xBF3A
CANCEL_SESSION = 0xBF41
HANDLE_NOTIFICATION = 0xBF3D
TRANSFER_EIM_PACKAGE = 0xBF4E
GET_EIM_PACKAGE = 0xBF4F
PROVIDE_EIM_PACKAGE_RESULT = 0xBF50

FUNCTIONS = {
    INITIATE_AUTHENTICATION: "initiateAuthentication",
    AUTHENTICATE_CLIENT: "authenticateClient",
    GET_BOUND_PROFILE_PACKAGE: "getBoundProfilePackage",
    CANCEL_SESSION: "cancelSession",
    HANDLE_NOTIFICATION: "handleNotification",
    TRANSFER_EIM_PACKAGE: "transferEimPackage",
    GET_EIM_PACKAGE: "getEimPackage",
    PROVIDE_EIM_PACKAGE_RESULT: "provideEimPackageResult",
}

EUICC_PACKAGE_REQUEST = 0xBF51
EUICC_PACKAGE_RESULT = 0xBF51
IPA_EUICC_DATA = 0xBF52
EIM_ACKNOWLEDGEMENTS = 0xBF53
PROFILE_DOWNLOAD_TRIGGER = 0xBF54
PROFILE_INSTALLATION_RESULT = 0xBF37

# GetEimPackageResponse eimPackageError
NO_EIM_PACKAGE_AVAILABLE, EID_NOT_FOUND, INVALID_EID, MISSING_EID, UNDEFINED_ERROR = 1, 2, 3, 4, 127
EIM_PACKAGE_ERRORS = {1: "noEimPackageAvailable", 2: "eidNotFound", 3: "invalidEid",
                      4: "missingEid", 127: "undefinedError"}
# ProvideEimPackageResultResponse provideEimPackageResultError
PROVIDE_RESULT_ERRORS = {2: "eidNotFound", 3: "invalidEid", 4: "missingEid", 127: "undefinedError"}

# The error INTEGER's tag in each download relay answer (AUTOMATIC TAGS, see the docstring).
RELAY_ERROR_TAGS = {INITIATE_AUTHENTICATION: 0x81, AUTHENTICATE_CLIENT: 0x82,
                    GET_BOUND_PROFILE_PACKAGE: 0x81, CANCEL_SESSION: 0x81}

STATE_CHANGE_CAUSES = {0: "otherEim", 1: "fallback", 2: "emergencyProfile", 3: "local", 4: "reset",
                       5: "immediateEnableProfile", 6: "deviceChange", 127: "undefined"}
NOTIFICATION_EVENTS = ("notificationInstall", "notificationEnable", "notificationDisable",
                       "notificationDelete")

# EuiccResultData alternatives (tags as they appear inside euiccResult)
RESULT_NAMES = {
    0x83: "enableResult", 0x84: "disableResult", 0x85: "deleteResult",
    0xBF2D: "listProfileInfoResult", 0xA6: "getRATResult",
    0x87: "configureImmediateEnableResult", 0xA8: "addEimResult", 0x89: "deleteEimResult",
    0x8A: "updateEimResult", 0xAB: "listEimResult", 0x8C: "rollbackResult",
    0x8D: "setFallbackAttributeResult", 0x8E: "unsetFallbackAttributeResult",
    0x02: "processingTerminated", 0xBF65: "setDefaultDpAddressResult",
}
EPR_ERRORS = {3: "invalidEid", 4: "replayError", 6: "counterValueOutOfRange", 15: "sizeOverflow",
              104: "ecallActive", 127: "undefinedError"}
IPA_EUICC_DATA_ERRORS = {1: "incorrectTagList", 5: "euiccCiPKIdNotFound", 104: "ecallActive",
                         127: "undefinedError"}
EIM_PACKAGE_RESULT_ERRORS = {1: "invalidPackageFormat", 2: "unknownPackage", 127: "undefinedError"}

# IpaEuiccData component tags, per version
IPA_EUICC_DATA_TAGS = (0xA0, 0x81, 0xA2, 0xBF20, 0xBF22, 0x83, 0x84, 0xA5, 0xA6, 0x87, 0xA8, 0xA9)
IPA_EUICC_DATA_TAGS_V1_0 = (0x80, 0xBF20, 0xBF22, 0x83, 0x84, 0xA5, 0xA6, 0xA8, 0xA9, 0xBF2B)
V1_0_EIM_PACKAGE_ERRORS = (NO_EIM_PACKAGE_AVAILABLE, UNDEFINED_ERROR)
PENDING_NOTIFICATION_TAGS = (0xBF37, 0x30, 0xA0, 0xA1)

MAX_INT_BYTES = 9  # counters and seqNumbers fit a signed 64-bit INTEGER


def hexu(b):
    return binascii.hexlify(bytes(b)).decode().upper()


def small_int(t, what):
    """An INTEGER of at most MAX_INT_BYTES (hostile 1 MiB integers are refused, not converted)."""
    if not 1 <= t.length <= MAX_INT_BYTES:
        raise TlvError(t.vstart, "%s as an INTEGER of 1..%d bytes" % (what, MAX_INT_BYTES),
                       "%d bytes" % t.length)
    return t.as_int()


def children(t, what):
    if not t.constructed:
        raise TlvError(t.start, "%s as a constructed TLV" % what, "primitive tag %X" % t.tag)
    return t.children()


def one_child(t, what):
    kids = children(t, what)
    if len(kids) != 1:
        raise TlvError(t.vstart, "exactly one alternative in %s (%X)" % (what, t.tag),
                       "%d elements" % len(kids))
    return kids[0]


def _opt(t, tag):
    return t.find(tag) if t is not None else None


# ---- eIM -> IPA ----------------------------------------------------------------------------


def get_eim_package_response(package_der):
    """GetEimPackageResponse carrying an eIM Package (BF51 / BF52 / BF54 TLV)."""
    return tlv.encode(GET_EIM_PACKAGE, package_der)


def v1_0(version):
    """True for SGP.32 v1.0 (the forms listed in the module docstring)."""
    return version == "1.0"


def _other(version):
    return "v1.2" if v1_0(version) else "v1.0"


def get_eim_package_error(code, version="1.2"):
    """GetEimPackageResponse eimPackageError: BF4F { 02 code } (v1.0 knows 1 and 127 only)."""
    if v1_0(version) and code not in V1_0_EIM_PACKAGE_ERRORS:
        code = UNDEFINED_ERROR
    return tlv.encode(GET_EIM_PACKAGE, tlv.encode(0x02, tlv.int_encode(code)))


def eim_acknowledgements(seqs):
    """EimAcknowledgements ::= [83] SEQUENCE OF SequenceNumber ([0] INTEGER): BF53 { 80 .. }."""
    return tlv.encode(EIM_ACKNOWLEDGEMENTS, [tlv.encode(0x80, tlv.int_encode(s)) for s in seqs])


def provide_result_response(seqs, version="1.2"):
    """ProvideEimPackageResultResponse: acknowledgements, or emptyResponse (30 00) when none
    (v1.0: a SEQUENCE whose acknowledgements are OPTIONAL, so BF50 00)."""
    if seqs:
        return tlv.encode(PROVIDE_EIM_PACKAGE_RESULT, eim_acknowledgements(seqs))
    return tlv.encode(PROVIDE_EIM_PACKAGE_RESULT, b"" if v1_0(version) else tlv.encode(0x30))


def provide_result_error(code):
    """ProvideEimPackageResultResponse provideEimPackageResultError: BF50 { 02 code }."""
    return tlv.encode(PROVIDE_EIM_PACKAGE_RESULT, tlv.encode(0x02, tlv.int_encode(code)))


def relay_error(tag, code=UNDEFINED_ERROR):
    """The error alternative of a download relay answer (BF39 / BF3B / BF3A / BF41)."""
    return tlv.encode(tag, tlv.encode(RELAY_ERROR_TAGS[tag], tlv.int_encode(code)))


def tag_list_bytes(tags):
    """tagList value from hex text ('80A2', '80,A2', 'BF20 A2') or a list of tags (ints or hex)."""
    if isinstance(tags, (bytes, bytearray)):
        raw = bytes(tags)
    else:
        if isinstance(tags, str):
            items = tags.replace(",", " ").split()
        elif isinstance(tags, (list, tuple)):
            items = list(tags)
        else:
            raise ValueError("tagList must be hex text or a list of tags, got %r" % (tags,))
        raw = b""
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool) and item > 0:
                raw += tlv.tag_bytes(item)
            elif isinstance(item, str):
                try:
                    raw += binascii.unhexlify(item.strip())
                except (binascii.Error, ValueError):
                    raise ValueError("tagList: %r is not hex" % item)
            else:
                raise ValueError("tagList: %r is not a tag" % (item,))
    if not 1 <= len(raw) <= 64:
        raise ValueError("tagList must hold 1..64 bytes of tags, got %d" % len(raw))
    off = 0
    while off < len(raw):  # each must be a complete BER tag of at most 3 bytes
        first = off
        off += 1
        if raw[first] & 0x1F == 0x1F:
            while True:
                if off >= len(raw) or off - first > 2:
                    raise ValueError("tagList %s: not a run of BER tags (at byte %d)"
                                     % (hexu(raw), first))
                off += 1
                if not raw[off - 1] & 0x80:
                    break
    return raw


def ipa_euicc_data_request(tags, transaction_id=None, ci_pkid=None, notification_seq=None,
                           notification_events=None, result_seq=None, euicc_package_results=False,
                           version="1.2"):
    """IpaEuiccDataRequest BF52 (SGP.32 IpaEuiccDataRequest, tagList 5C first).

    v1.0: one searchCriteria A1 (seqNumber, events, or euicc_package_results: 82 00);
    no eimTransactionId (transaction_id is left out); result_seq is v1.2 only.
    """
    crit = None
    if v1_0(version):
        transaction_id = None
        if result_seq is not None:
            raise ValueError("resultSeqNumber (searchCriteriaEuiccPackageResult) is not in SGP.32 "
                             "v1.0: use euiccPackageResults, or notificationSeqNumber")
        if euicc_package_results and (notification_seq is not None or notification_events):
            raise ValueError("searchCriteria: one of seqNumber, events, euiccPackageResults")
        if euicc_package_results:
            crit = tlv.encode(0xA1, tlv.encode(0x82))
    elif euicc_package_results:
        raise ValueError("euiccPackageResults is SGP.32 v1.0's criterion; in v%s ask for the "
                         "euiccPackageResultList (tag A2)" % version)
    if notification_seq is not None and notification_events:
        raise ValueError("searchCriteriaNotification: a seqNumber or events, not both")
    if notification_seq is not None:
        crit = tlv.encode(0xA1, tlv.encode(0x80, tlv.int_encode(notification_seq)))
    elif notification_events:
        bad = [e for e in notification_events if e not in NOTIFICATION_EVENTS]
        if bad:
            raise ValueError("notification events must be among %s, got %s"
                             % (", ".join(NOTIFICATION_EVENTS), ", ".join(map(str, bad))))
        crit = tlv.encode(0xA1, tlv.encode(0x81, tlv.bits_encode(notification_events,
                                                                  NOTIFICATION_EVENTS)))
    return tlv.enc(
        IPA_EUICC_DATA,
        tlv.encode(0x5C, tag_list_bytes(tags)),
        tlv.encode(0x04, ci_pkid) if ci_pkid is not None else None,
        crit,
        tlv.encode(0xA2, tlv.encode(0x80, tlv.int_encode(result_seq)))
        if result_seq is not None else None,
        tlv.encode(0x83, transaction_id) if transaction_id is not None else None)


def profile_download_trigger_request(activation_code=None, contact_default_smdp=False,
                                     contact_smds=None, transaction_id=None):
    """ProfileDownloadTriggerRequest BF54 { A0 { ProfileDownloadData }, 82 eimTransactionId }.

    contact_smds: None (not used), True (no address) or the SM-DS address.
    """
    chosen = [x for x in (activation_code is not None, bool(contact_default_smdp),
                          contact_smds not in (None, False)) if x]
    if len(chosen) > 1:
        raise ValueError("profileDownloadData: one of activationCode, contactDefaultSmdp, "
                         "contactSmds")
    data = None
    if activation_code is not None:
        if not isinstance(activation_code, str) or len(activation_code.encode("utf-8")) > 255:
            raise ValueError("activationCode must be text of at most 255 bytes, got %r"
                             % (activation_code,))
        data = tlv.encode(0x80, activation_code.encode("utf-8"))
    elif contact_default_smdp:
        data = tlv.encode(0x81)
    elif contact_smds not in (None, False):
        addr = None
        if isinstance(contact_smds, str):
            addr = tlv.encode(0x80, contact_smds.encode("utf-8"))
        elif contact_smds is not True:
            raise ValueError("contactSmds must be true or an SM-DS address, got %r"
                             % (contact_smds,))
        data = tlv.enc(0xA2, addr)
    return tlv.enc(PROFILE_DOWNLOAD_TRIGGER,
                   tlv.encode(0xA0, data) if data is not None else None,
                   tlv.encode(0x82, transaction_id) if transaction_id is not None else None)


# ---- IPA -> eIM ----------------------------------------------------------------------------


def parse_get_eim_package_request(t, version="1.2"):
    """GetEimPackageRequest BF4F -> {"eid": bytes|None, "notifyStateChange", ...}.

    v1.0: rPLMN is [1] '81' and there is no stateChangeCause ('82' is refused).
    """
    out = {"eid": None, "notifyStateChange": False, "stateChangeCause": None, "rPLMN": None}
    plmn = 0x81 if v1_0(version) else 0x82
    for c in children(t, "GetEimPackageRequest"):
        if c.tag == 0x5A:
            out["eid"] = c.value
        elif c.tag == 0x80:
            c.as_null()
            out["notifyStateChange"] = True
        elif c.tag == 0x82 and v1_0(version):
            raise TlvError(c.start, "SGP.32 v1.0 GetEimPackageRequest { 5A, 80?, 81 rPLMN? }",
                           "tag 82 (v1.2's rPLMN)")
        elif c.tag == 0x81 and not v1_0(version):
            out["stateChangeCause"] = small_int(c, "stateChangeCause")
        elif c.tag == plmn:
            if c.length != 3:
                raise TlvError(c.vstart, "rPLMN of 3 bytes", "%d bytes" % c.length)
            out["rPLMN"] = c.value
        # other tags: extension additions (EXTENSIBILITY IMPLIED), ignored
    return out


def _eid_of(t):
    """eidValue 5A inside `t` (bytes) or None."""
    e = _opt(t, 0x5A)
    return e.value if e is not None else None


def parse_provide_result(t, version="1.2"):
    """ProvideEimPackageResult BF50 -> (eid bytes | None, EimPackageResult TLV).

    v1.0 (::= [80] CHOICE): no eidValue, and the error alternative is 02.
    """
    eid = None
    result = None
    errors = 0x02 if v1_0(version) else 0xA0
    want = "%s one EimPackageResult (BF51, 30, BF52, BF54 or %02X) in SGP.32 v%s's BF50" % (
        "exactly" if v1_0(version) else "eidValue (5A) then", errors, version)
    for c in children(t, "ProvideEimPackageResult"):
        if c.tag == 0x5A and eid is None and result is None and not v1_0(version):
            eid = c.value
        elif result is None and c.tag in (0xBF51, 0x30, 0xBF52, 0xBF54, errors):
            result = c
        else:
            raise TlvError(c.start, want, "tag %X%s" % (c.tag, " (a %s form)" % _other(version)
                                                        if c.tag in (0x5A, 0x02, 0xA0) else ""))
    if result is None:
        raise TlvError(t.vstart, want, "none")
    return eid, result


def parse_epr_and_notifications(t, version="1.2"):
    """ePRAndNotifications 30 -> (EuiccPackageResult TLV, [PendingNotification TLVs]):
    v1.2 { BF51, A0 { .. } }, v1.0 { BF51, BF2B { A0 { .. } } }."""
    epr = t.need(EUICC_PACKAGE_RESULT, "euiccPackageResult")
    want, wrong = (0xBF2B, 0xA0) if v1_0(version) else (0xA0, 0xBF2B)
    lst = t.find(want)
    if lst is None:
        raise TlvError(t.vstart, "notificationList (%X) in SGP.32 v%s's ePRAndNotifications"
                       % (want, version), "a %s form (%X)" % (_other(version), wrong)
                       if t.find(wrong) is not None else "it missing")
    if v1_0(version):
        lst = one_child(lst, "notificationList [43] SGP32-RetrieveNotificationsListResponse")
        if lst.tag != 0xA0:
            raise TlvError(lst.start, "notificationList (A0) in BF2B", "tag %X" % lst.tag)
    return epr, parse_notification_list(lst, "notificationList")


def parse_handle_notification(t, version="1.2"):
    """HandleNotificationEsipa BF3D -> ("notification", PendingNotification TLV) | ("result", BF50).

    The result alternative is BF50 in v1.2; in v1.0 automatic [1] 'A1' replaces it (returned
    re-tagged BF50); each version refuses the other's.
    """
    c = one_child(t, "HandleNotificationEsipa")
    result_tag = 0xA1 if v1_0(version) else PROVIDE_EIM_PACKAGE_RESULT
    if c.tag == result_tag:
        return "result", tlv.decode(tlv.encode(PROVIDE_EIM_PACKAGE_RESULT, c.value))
    if c.tag == 0xA1 and not v1_0(version) and _holds_a_result(c):
        raise TlvError(c.start, "provideEimPackageResult as BF50 in SGP.32 v%s's BF3D" % version,
                       "A1 holding an EimPackageResult (the v1.0 form)")
    if c.tag == PROVIDE_EIM_PACKAGE_RESULT:  # in v1.2 a bare A1 is read as a notification
        raise TlvError(c.start, "provideEimPackageResult as %X in SGP.32 v%s's BF3D"
                       % (result_tag, version), "tag %X (the %s form)" % (c.tag, _other(version)))
    if c.tag == 0xA0:
        kids = children(c, "pendingNotification [0]")
        if len(kids) == 1 and kids[0].tag in PENDING_NOTIFICATION_TAGS:
            return "notification", kids[0]
        return "notification", c  # v1.0 style: compactProfileInstallationResult A0 itself
    if c.tag in PENDING_NOTIFICATION_TAGS:
        return "notification", c  # v1.0 style: the PendingNotification without [0]
    raise TlvError(c.start, "pendingNotification (A0) or provideEimPackageResult (BF50) in BF3D",
                   "tag %X" % c.tag)


def _holds_a_result(c):
    """True when constructed `c` starts with an EimPackageResult (v1.0's A1 in BF3D), not with
    a notification's parts."""
    kids = children(c, "HandleNotificationEsipa [1]")
    first = kids[0] if kids else None
    return first is not None and (first.tag in (0xBF51, 0xBF52, 0xBF54, 0x02) or (
        first.tag == 0x30 and first.find(EUICC_PACKAGE_RESULT) is not None))


def _txid(t, tag):
    x = _opt(t, tag)
    return hexu(x.value) if x is not None else None


def parse_euicc_package_result(t):
    """EuiccPackageResult BF51 -> dict (kind, eimId, counterValue, seqNumber, results, ...).

    "signed" holds (data TLV raw bytes, signature) for the caller to verify.
    """
    kids = children(t, "EuiccPackageResult")
    if (len(kids) == 2 and kids[0].tag == 0x30 and kids[1].tag == 0x5F37) or (
            kids and kids[0].tag == 0x80):
        alt, alt_tag = t, None  # the alternative's content directly under BF51
    else:
        alt = one_child(t, "EuiccPackageResult")
        alt_tag = alt.tag
        if alt_tag not in (0xA0, 0xA1, 0xA2, 0x30):
            raise TlvError(alt.start, "euiccPackageResultSigned (A0), euiccPackageErrorSigned (A1)"
                           " or euiccPackageErrorUnsigned (A2) in BF51", "tag %X" % alt_tag)
    out = {"kind": None, "eimId": None, "counterValue": None, "eimTransactionId": None,
           "seqNumber": None, "results": [], "errorCode": None, "errorName": None,
           "associationToken": None, "signed": None}
    data = alt.find(0x30) if alt_tag != 0xA2 else None
    if alt_tag == 0xA2 or (data is None and alt.find(0x80) is not None):
        out["kind"] = "euiccPackageErrorUnsigned"
        out["eimId"] = alt.need(0x80, "eimId").as_str()
        out["eimTransactionId"] = _txid(alt, 0x82)
        tok = alt.find(0x84)
        out["associationToken"] = small_int(tok, "associationToken") if tok is not None else None
        return out
    if data is None:
        raise TlvError(alt.vstart, "the signed data (30) in the EuiccPackageResult", "it missing")
    sig = alt.need(0x5F37, "euiccSignEPR / euiccSignEPE")
    out["signed"] = (data.raw, sig.value)
    out["eimId"] = data.need(0x80, "eimId").as_str()
    out["counterValue"] = small_int(data.need(0x81, "counterValue"), "counterValue")
    out["eimTransactionId"] = _txid(data, 0x82)
    seq = data.find(0x83)
    if alt_tag == 0xA1 or (alt_tag != 0xA0 and seq is None):
        out["kind"] = "euiccPackageErrorSigned"
        code = small_int(data.need(0x02, "euiccPackageErrorCode"), "euiccPackageErrorCode")
        out["errorCode"] = code
        out["errorName"] = EPR_ERRORS.get(code, "unknown")
        return out
    out["kind"] = "euiccPackageResultSigned"
    if seq is None:
        raise TlvError(data.vstart, "seqNumber (83) in euiccPackageResultDataSigned", "it missing")
    out["seqNumber"] = small_int(seq, "seqNumber")
    results = data.need(0x30, "euiccResult")
    for r in children(results, "euiccResult"):
        item = {"tag": "%X" % r.tag, "name": RESULT_NAMES.get(r.tag, "unknown")}
        if not r.constructed and r.tag in RESULT_NAMES:
            item["value"] = small_int(r, item["name"])
        elif r.tag == 0xA8:  # addEimResult: explicit CHOICE {84 associationToken | 02 code}
            inner = one_child(r, "addEimResult")
            key = "associationToken" if inner.tag == 0x84 else "value"
            item[key] = small_int(inner, "addEimResult")
        item["der"] = hexu(r.raw)
        out["results"].append(item)
    return out


def _notification_metadata(meta, out):
    """NotificationMetadata BF2F {80 seqNumber, 81 event, 0C address, [5A iccid]} into `out`."""
    out["seqNumber"] = small_int(meta.need(0x80, "seqNumber"), "seqNumber")
    ev = meta.find(0x81)
    if ev is not None:
        out["event"] = ev.as_bits(NOTIFICATION_EVENTS)
    addr = meta.find(0x0C)
    if addr is not None:
        out["address"] = addr.as_str()
    iccid = meta.find(0x5A)
    if iccid is not None:
        out["iccid"] = tlv.bcd_swap(iccid.value)


def parse_pending_notification(t):
    """SGP32-PendingNotification -> dict (kind, seqNumber, event, address, iccid, ...).

    "signed" is (signed bytes, signature) where the eUICC signature covers a
    data object the eIM can check (SGP.22: euiccSignPIR over
    ProfileInstallationResultData BF27, euiccNotificationSignature over
    tbsOtherNotification BF2F), else None. "certificate" is the eUICC
    certificate DER an OtherSignedNotification carries.
    """
    out = {"kind": None, "seqNumber": None, "event": None, "address": None, "iccid": None,
           "eid": None, "transactionId": None, "signed": None, "certificate": None}
    if t.tag == 0xBF37:
        out["kind"] = "profileInstallationResult"
        data = t.need(0xBF27, "profileInstallationResultData")
        out["transactionId"] = _txid(data, 0x80)
        _notification_metadata(data.need(0xBF2F, "notificationMetadata"), out)
        out["event"] = out["event"] or ["notificationInstall"]
        sig = t.find(0x5F37)
        if sig is not None:
            out["signed"] = (data.raw, sig.value)
    elif t.tag == 0x30:
        out["kind"] = "otherSignedNotification"
        meta = t.need(0xBF2F, "tbsOtherNotification")
        _notification_metadata(meta, out)
        sig = t.need(0x5F37, "euiccNotificationSignature")
        out["signed"] = (meta.raw, sig.value)
        certs = t.find_all(0x30)
        if certs:
            out["certificate"] = certs[0].raw
    elif t.tag == 0xA0:
        out["kind"] = "compactProfileInstallationResult"
        data = t.need(0xA0, "compactProfileInstallationResultData")
        out["transactionId"] = _txid(data, 0x80)
        out["seqNumber"] = small_int(data.need(0x02, "seqNumber"), "seqNumber")
        out["event"] = ["notificationInstall"]
    elif t.tag == 0xA1:
        out["kind"] = "compactOtherSignedNotification"
        out["eid"] = _eid_of(t)
        meta = t.need(0xBF2F, "tbsOtherNotification")
        _notification_metadata(meta, out)
        sig = t.find(0x5F37)
        if sig is not None:
            out["signed"] = (meta.raw, sig.value)
    else:
        raise TlvError(t.start, "a PendingNotification (BF37, 30, A0 or A1)", "tag %X" % t.tag)
    return out


def parse_notification_list(t, what):
    """PendingNotificationList (SEQUENCE OF) under tag A0 or 30 -> list of TLVs."""
    return children(t, what)


def _v1_0_notifications_list(c, out):
    """v1.0 notificationsList BF2B (SGP32-RetrieveNotificationsListResponse) into `out`."""
    alt = one_child(c, "notificationsList")
    if alt.tag == 0xA0:
        out["notifications"] = parse_notification_list(alt, "notificationList")
    elif alt.tag == 0xA2:
        out["results"] = children(alt, "euiccPackageResultList")
    elif alt.tag == 0xA3:
        out["notifications"] = children(alt.need(0xA0, "notificationList"), "notificationList")
        out["results"] = children(alt.need(0xA1, "euiccPackageResultList"),
                                  "euiccPackageResultList")
    elif alt.tag != 0x81:  # notificationsListResultError: nothing carried
        raise TlvError(alt.start, "notificationList (A0), euiccPackageResultList (A2), "
                       "notificationAndEprList (A3) or an error (81) in BF2B", "tag %X" % alt.tag)


def parse_ipa_euicc_data_response(t, version="1.2"):
    """IpaEuiccDataResponse BF52 -> dict (kind, eimTransactionId, errorCode, notifications TLVs,
    results TLVs, fields present). v1.0's forms (module docstring) in v1.0 only."""
    out = {"kind": None, "eimTransactionId": None, "errorCode": None, "errorName": None,
           "notifications": [], "results": [], "fields": []}
    kids = children(t, "IpaEuiccDataResponse")
    if v1_0(version):
        return _v1_0_ipa_euicc_data_response(t, kids, out)
    err = None
    if len(kids) == 1 and kids[0].tag == 0xA1 and kids[0].find(0x02) is not None:
        err = kids[0]
    elif any(c.tag == 0x02 for c in kids):
        err = t  # the error SEQUENCE's content without its [1]
    if err is not None:
        out["kind"] = "ipaEuiccDataResponseError"
        out["eimTransactionId"] = _txid(err, 0x80)
        code = small_int(err.need(0x02, "ipaEuiccDataErrorCode"), "ipaEuiccDataErrorCode")
        out["errorCode"] = code
        out["errorName"] = IPA_EUICC_DATA_ERRORS.get(code, "unknown")
        return out
    data = None
    if len(kids) == 1 and kids[0].tag == 0xA0:
        inner = children(kids[0], "ipaEuiccData")
        for c in inner:
            if c.tag in (0x80, 0xBF2B):  # v1.0's defaultSmdpAddress / notificationsList
                raise TlvError(c.start, "an SGP.32 v%s IpaEuiccData component" % version,
                               "tag %X (a v1.0 form)" % c.tag)
        if all(c.tag in IPA_EUICC_DATA_TAGS for c in inner):
            data = inner  # the [0] ipaEuiccData wrapper (X.680)
    if data is None:
        if not all(c.tag in IPA_EUICC_DATA_TAGS for c in kids):
            raise TlvError(t.vstart, "ipaEuiccData (A0) or ipaEuiccDataResponseError (A1) in BF52",
                           "tags %s" % " ".join("%X" % c.tag for c in kids))
        data = kids  # the IpaEuiccData fields without the [0] wrapper
    out["kind"] = "ipaEuiccData"
    for c in data:
        out["fields"].append("%X" % c.tag)
        if c.tag == 0xA0:
            out["notifications"] = parse_notification_list(c, "notificationsList")
        elif c.tag == 0xA2:
            out["results"] = children(c, "euiccPackageResultList")
        elif c.tag == 0x87:
            out["eimTransactionId"] = hexu(c.value)
    return out


def _v1_0_ipa_euicc_data_response(t, kids, out):
    if len(kids) != 1 or kids[0].tag not in (0xA0, 0x81):
        raise TlvError(t.vstart, "ipaEuiccData (A0) or ipaEuiccDataError (81) in SGP.32 v1.0's "
                       "BF52", "tags %s" % " ".join("%X" % c.tag for c in kids))
    if kids[0].tag == 0x81:
        out["kind"] = "ipaEuiccDataError"
        out["errorCode"] = small_int(kids[0], "ipaEuiccDataError")
        out["errorName"] = IPA_EUICC_DATA_ERRORS.get(out["errorCode"], "unknown")
        return out
    out["kind"] = "ipaEuiccData"
    for c in children(kids[0], "ipaEuiccData"):
        if c.tag not in IPA_EUICC_DATA_TAGS_V1_0:
            raise TlvError(c.start, "an SGP.32 v1.0 IpaEuiccData component (%s)"
                           % " ".join("%X" % x for x in IPA_EUICC_DATA_TAGS_V1_0),
                           "tag %X%s" % (c.tag, " (a v1.2 form)" if c.tag in IPA_EUICC_DATA_TAGS
                                         else ""))
        out["fields"].append("%X" % c.tag)
        if c.tag == 0xBF2B:
            _v1_0_notifications_list(c, out)
    return out


def parse_download_trigger_result(t):
    """ProfileDownloadTriggerResult BF54 -> dict (eimTransactionId, kind, pir TLV, error)."""
    out = {"eimTransactionId": _txid(t, 0x82), "kind": None, "pir": None, "errorCode": None,
           "errorResponse": None}
    pir = t.find(0xBF37)
    if pir is not None:
        out["kind"] = "profileInstallationResult"
        out["pir"] = pir
        return out
    err = t.find(0x30)
    if err is None:
        raise TlvError(t.vstart, "profileInstallationResult (BF37) or profileDownloadError (30) "
                       "in BF54", "neither")
    out["kind"] = "profileDownloadError"
    out["errorCode"] = small_int(err.need(0x80, "profileDownloadErrorReason"),
                                 "profileDownloadErrorReason")
    resp = err.find(0x04)
    out["errorResponse"] = hexu(resp.value) if resp is not None else None
    return out


def parse_result_error(t):
    """eimPackageResultResponseError A0 { [80 eimTransactionId], 02 code }."""
    code = small_int(t.need(0x02, "eimPackageResultErrorCode"), "eimPackageResultErrorCode")
    return {"eimTransactionId": _txid(t, 0x80), "errorCode": code,
            "errorName": EIM_PACKAGE_RESULT_ERRORS.get(code, "unknown")}
