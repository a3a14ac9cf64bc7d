"""The one place that knows how SGP.32 v1.0 differs from v1.1/v1.2.

Everything else in the core asks this module (`tag()`, `value()`,
`signed_bytes()`) instead of testing version strings itself, so a wrong
fact is corrected here once.

A version is a string "1.0", "1.1" or "1.2" (a leading "v" and a third
number are accepted: "v1.2.0"). A session object carries it as its
`version` attribute; code that has none uses DEFAULT.

The table lists, per name, (first version, value) pairs in ascending
order; the value for a version is the one of the last pair whose first
version is not newer. A value of None means "absent in that version".

Sources: the SGP.32 v1.2 ASN.1 module (SGP32Definitions) for the v1.2
column; for v1.0 the differences summarised in the project's fact sheet.
Entries marked UNCONFIRMED were not checked against the v1.0 module text.
"""

DEFAULT = "1.2"
KNOWN = ("1.0", "1.1", "1.2")

TABLE = {
    # ES10b.EuiccMemoryReset: v1.0 reused SGP.22's EuiccMemoryResetRequest
    # [52] 'BF34'; v1.1+ SGP32-EuiccMemoryResetRequest is [100] 'BF64'.
    "EuiccMemoryReset": (("1.0", 0xBF34), ("1.1", 0xBF64)),
    # ESipa ePRAndNotifications.notificationList: v1.2 `[0]` 'A0'. v1.0 had
    # the component untagged next to a tagged one, hence SEQUENCE OF '30'.
    # UNCONFIRMED for v1.0.
    "ePRAndNotifications.notificationList": (("1.0", 0x30), ("1.1", 0xA0)),
    # ESipa HandleNotificationEsipa alternatives: v1.2 pendingNotification
    # [0] 'A0' and provideEimPackageResult [80] 'BF50'. v1.0 had them
    # untagged, so automatic tags [0] 'A0' / [1] 'A1'. UNCONFIRMED for v1.0.
    "HandleNotificationEsipa.pendingNotification": (("1.0", 0xA0),),
    "HandleNotificationEsipa.provideEimPackageResult": (("1.0", 0xA1), ("1.1", 0xBF50)),
    # ESipa GetEimPackageRequest.stateChangeCause [1] '81': added after v1.0.
    "GetEimPackageRequest.stateChangeCause": (("1.0", None), ("1.1", 0x81)),
    # SGP.32 2.11.1.2 (v1.1+): eimSignature / euiccSignEPR / euiccSignEPE
    # cover the signed data object followed by the associationToken TLV.
    "associationTokenInSignedData": (("1.0", False), ("1.1", True)),
}


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


def value(name, version=DEFAULT):
    """The table's value of `name` for `version` (KeyError for an unknown name)."""
    if name not in TABLE:
        raise KeyError("no version fact named %r" % (name,))
    k = _key(norm(version))
    out = None
    for since, val in TABLE[name]:
        if _key(since) <= k:
            out = val
    return out


def tag(name, version=DEFAULT):
    """The tag (int, e.g. 0xBF64) of `name` in `version`; None when absent there."""
    return value(name, version)


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
