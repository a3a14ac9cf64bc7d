"""The one place that knows how SGP.32 v1.0 differs from v1.1/v1.2.

Everything else in the core asks this module (`tag()`, `value()`,
`signed_bytes()`) instead of testing version strings itself, so a wrong
fact is corrected here once.

A version is a string "1.0", "1.1" or "1.2" (a leading "v" and a third
number are accepted: "v1.2.0"). A session object carries it as its
`version` attribute; code that has none uses DEFAULT.

FACTS lists, per name, (first version, value) pairs in ascending
order; the value for a version is the one of the last pair whose first
version is not newer. A value of None means "absent in that version".

Sources: the public SGP.32 v1.0 ASN.1 module (SGP32Definitions, sgp32v1)
and the v1.2 module, compared field by field; tags worked out with
AUTOMATIC TAGS (X.680 25.3: untagged components are numbered only when no
component of that SEQUENCE/CHOICE carries a tag). No public v1.1 module
was at hand: v1.1 takes the v1.2 forms (docs/versions.md says why).
"""

DEFAULT = "1.2"
KNOWN = ("1.0", "1.1", "1.2")

# (name, ((first version, value), ...)): a tuple of constants, so a board's frozen
# firmware keeps it in flash (a dict would be built in the heap at import).
FACTS = (
    # ES10c.EuiccMemoryReset: v1.0 SGP32-EuiccMemoryResetRequest ::= [52] 'BF34';
    # v1.2 [100] 'BF64'. resetOptions bits differ (RESET_OPTIONS below); in the
    # response v1.0's resetResult is untagged next to tagged siblings ('02'), v1.2
    # has no tagged component, so automatic '80'.
    ("EuiccMemoryReset", (("1.0", 0xBF34), ("1.1", 0xBF64))),
    ("EuiccMemoryResetResponse.resetResult", (("1.0", 0x02), ("1.1", 0x80))),
    # ePRAndNotifications { euiccPackageResult [81], notificationList }: v1.0 [43]
    # SGP32-RetrieveNotificationsListResponse ('BF2B' replacing the CHOICE's own
    # [43]; inside it, the alternative notificationList is automatic [0] 'A0');
    # v1.2 [0] PendingNotificationList 'A0'.
    ("ePRAndNotifications.notificationList", (("1.0", 0xBF2B), ("1.1", 0xA0))),
    # HandleNotificationEsipa: v1.0 alternatives untagged -> automatic [0] 'A0'
    # (explicit: a CHOICE) and [1] 'A1' replacing ProvideEimPackageResult's [80];
    # v1.2 [0] 'A0' and [80] 'BF50'.
    ("HandleNotificationEsipa.pendingNotification", (("1.0", 0xA0),)),
    ("HandleNotificationEsipa.provideEimPackageResult", (("1.0", 0xA1), ("1.1", 0xBF50))),
    # GetEimPackageRequest: v1.0 { eidValue, notifyStateChange [0], rPLMN [1] };
    # v1.2 adds stateChangeCause [1] and moves rPLMN to [2].
    ("GetEimPackageRequest.stateChangeCause", (("1.0", None), ("1.1", 0x81))),
    ("GetEimPackageRequest.rPLMN", (("1.0", 0x81), ("1.1", 0x82))),
    # ProvideEimPackageResult: v1.0 ::= [80] CHOICE (no eidValue); v1.2 ::= [80]
    # SEQUENCE { eidValue '5A' OPTIONAL, eimPackageResult }.
    ("ProvideEimPackageResult.eidValue", (("1.0", None), ("1.1", 0x5A))),
    # The error alternative of the eIM package result: v1.0 eimPackageError
    # INTEGER (siblings tagged: universal '02'); v1.2 eimPackageResultResponseError
    # [0] SEQUENCE 'A0' { eimTransactionId [0]?, code '02' }.
    ("EimPackageResult.error", (("1.0", 0x02), ("1.1", 0xA0))),
    # ProvideEimPackageResultResponse: v1.0 [80] SEQUENCE { eimAcknowledgements
    # OPTIONAL } (nothing to acknowledge: 'BF50 00'); v1.2 [80] CHOICE with
    # emptyResponse '30 00' and provideEimPackageResultError '02'.
    ("ProvideEimPackageResultResponse.emptyResponse", (("1.0", None), ("1.1", 0x30))),
    # IpaEuiccDataRequest: v1.0 { tagList, euiccCiPKId '04', searchCriteria [1]
    # CHOICE { seqNumber [0], profileManagementOperation [1], euiccPackageResults
    # [2] NULL } }; v1.2 searchCriteriaNotification [1] (no [2] there),
    # searchCriteriaEuiccPackageResult [2] 'A2', eimTransactionId [3] '83'.
    ("IpaEuiccDataRequest.eimTransactionId", (("1.0", None), ("1.1", 0x83))),
    ("IpaEuiccDataRequest.searchCriteriaEuiccPackageResult", (("1.0", None), ("1.1", 0xA2))),
    # IpaEuiccData components whose tags moved (the rest - BF20, BF22, 83, 84,
    # A5, A6, A8, A9 - are the same): v1.0 defaultSmdpAddress [0] '80' and
    # notificationsList [43] SGP32-RetrieveNotificationsListResponse 'BF2B' (the
    # eUICC's BF2B answer itself); v1.2 notificationsList [0] 'A0',
    # defaultSmdpAddress [1] '81', euiccPackageResultList [2] 'A2',
    # eimTransactionId [7] '87'.
    ("IpaEuiccData.notificationsList", (("1.0", 0xBF2B), ("1.1", 0xA0))),
    ("IpaEuiccData.defaultSmdpAddress", (("1.0", 0x80), ("1.1", 0x81))),
    ("IpaEuiccData.euiccPackageResultList", (("1.0", None), ("1.1", 0xA2))),
    ("IpaEuiccData.eimTransactionId", (("1.0", None), ("1.1", 0x87))),
    # IpaEuiccDataResponse [82] CHOICE, alternatives untagged (automatic tags):
    # v1.0 ipaEuiccDataError INTEGER [1] '81'; v1.2 ipaEuiccDataResponseError
    # SEQUENCE [1] 'A1' { eimTransactionId [0]?, code '02' }.
    ("IpaEuiccDataResponse.error", (("1.0", 0x81), ("1.1", 0xA1))),
    # InitiateAuthenticationRequestEsipa: v1.2 adds eimTransactionId [2] '82'.
    ("InitiateAuthenticationRequestEsipa.eimTransactionId", (("1.0", None), ("1.1", 0x82))),
    # ES10b.ImmediateEnable 'BF5A': v1.0's EnableUsingDDRequest is an empty SEQUENCE;
    # v1.2's ImmediateEnableRequest { refreshFlag BOOLEAN } (automatic [0] '80').
    ("ImmediateEnableRequest.refreshFlag", (("1.0", None), ("1.1", 0x80))),
    # SGP.32 2.11.1.2 (v1.1+): eimSignature / euiccSignEPR / euiccSignEPE
    # cover the signed data object followed by the associationToken TLV.
    ("associationTokenInSignedData", (("1.0", False), ("1.1", True))),
)

# ES10c.EuiccMemoryReset resetOptions BIT STRING names, bit 0 first.
RESET_OPTIONS_V1_0 = ("deleteOperationalProfiles", "deleteFieldLoadedTestProfiles",
                      "resetDefaultSmdpAddress", "resetEimConfigData", "resetAutoEnableConfig")
RESET_OPTIONS = ("deleteOperationalProfiles", "deleteFieldLoadedTestProfiles",
                 "resetDefaultSmdpAddress", "deletePreLoadedTestProfiles",
                 "deleteProvisioningProfiles", "resetEimConfigData", "resetImmediateEnableConfig")


def norm(version):
    """"v1.2.0" / "1.2" / None -> "1.2"; an unknown version is a ValueError."""
    if version is None:
        return DEFAULT
    v = str(version).strip()
    if v[:1] in ("v", "V"):
        v = v[1:]
    parts = v.split(".")
    if len(parts) >= 2:
        v = parts[0] + "." + parts[1]
    if v not in KNOWN:
        raise ValueError("SGP.32 version %r, expected one of %s" % (version, ", ".join(KNOWN)))
    return v


def _key(v):
    a, b = v.split(".")
    return (int(a), int(b))


def names():
    """The names of every fact."""
    return [n for n, _ in FACTS]


def _pairs(name):
    for n, pairs in FACTS:
        if n == name:
            return pairs
    raise KeyError("no version fact named %r" % (name,))


def value(name, version=DEFAULT):
    """The table's value of `name` for `version` (KeyError for an unknown name)."""
    pairs = _pairs(name)
    k = _key(norm(version))
    out = None
    for since, val in pairs:
        if _key(since) <= k:
            out = val
    return out


def tag(name, version=DEFAULT):
    """The tag (int, e.g. 0xBF64) of `name` in `version`; None when absent there."""
    return value(name, version)


def is_v1_0(version):
    """True for a v1.0 peer (the forms before SGP.32 v1.1)."""
    return norm(version) == "1.0"


def reset_options(version=DEFAULT):
    """The EuiccMemoryReset resetOptions bit names of `version` (SGP.32 5.9.5 / 5.9.17)."""
    return RESET_OPTIONS_V1_0 if is_v1_0(version) else RESET_OPTIONS


def of(session):
    """The version a session object speaks (its `version` attribute, else DEFAULT)."""
    return norm(getattr(session, "version", DEFAULT))


def association_token_tlv(token):
    """'84 <len> <INTEGER>' for an associationToken; '84 01 00' when there is none."""
    from ipa_core import tlv

    return tlv.encode(0x84, tlv.int_encode(0 if token is None else token))


def signed_bytes(data_tlv, association_token=None, version=DEFAULT):
    """The bytes covered by eimSignature / euiccSignEPR / euiccSignEPE (SGP.32 2.11.1.2).

    v1.1+: the DER of the signed data object followed by the associationToken
    TLV (`84 01 00` when the eIM Configuration Data has no token). v1.0: the
    data object alone.
    """
    data_tlv = bytes(data_tlv)
    if value("associationTokenInSignedData", version):
        return data_tlv + association_token_tlv(association_token)
    return data_tlv
