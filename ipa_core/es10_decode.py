"""ES10 exchange plumbing and decoders for the data objects ES10 answers carry
(SGP.22 v2.5 / SGP.32 v1.2 ASN.1). Signed objects (notifications, PIR,
EuiccPackageResult) are decoded in ipa_core.es10_signed.

Shared by ipa_core.es10, es10_admin and the ESipa code (IpaEuiccData carries
the same objects); imports none of them. Each decoder takes an ipa_core.tlv.Tlv and returns plain data:

- dict keys are the ASN.1 component names; an absent OPTIONAL component is
  an absent key (use .get()); a NULL flag is True/False; a DEFAULT BOOLEAN
  gets its default;
- INTEGERs are ints (name tables in es10 / es10_signed turn codes into words);
- VersionType is "major.minor.revision"; BIT STRINGs are lists of bit names;
  OBJECT IDENTIFIERs are dotted strings; UTF8String is str;
- ICCIDs are digit strings (nibble-swapped BCD, 'F' padding removed);
  identifiers (EID, AIDs, key identifiers, MCC/MNC, GIDs) are upper-case hex
  strings; opaque payloads (transaction ids, signatures, challenges,
  certificates, simaResponse) are bytes;
- every signed object keeps the exact TLV bytes it arrived in under "raw":
  forward "raw", never a re-encoding (signatures would break);
- a CHOICE decodes to a dict with "kind" = the alternative's name, or to a
  one-key dict {alternativeName: value} where that is clearer.

Decoding is tolerant where compilers disagree (a tagged CHOICE or SEQUENCE
used as a component either re-tagged as X.680 says, or wrapped once more)
and ignores unknown (extension) components; a missing mandatory component
or a wrong type is a TlvError naming what was expected.
"""

from ipa_core.compat import hexlify

from ipa_core import tlv
from ipa_core.errors import FunctionError, ProtocolError, TlvError, Names


def hexu(b):
    """Upper-case hex of bytes, no separators."""
    return hexlify(bytes(b)).decode().upper()


def unwrap(t):
    """t's single child when it repeats t's own tag (a doubly-tagged CHOICE/SEQUENCE)."""
    if t.constructed and t.length:
        kids = t.children()
        if len(kids) == 1 and kids[0].tag == t.tag:
            return kids[0]
    return t


def expect(t, tag, what):
    """Raise TlvError unless t has `tag`."""
    if t is None:
        raise TlvError(0, "%s (tag %X)" % (what, tag), "nothing")
    if t.tag != tag:
        raise TlvError(t.start, "%s (tag %X)" % (what, tag), "tag %X" % t.tag)
    return t


def need_any(t, tags, what):
    """The first child of t whose tag is in `tags`, else a TlvError naming `what`."""
    for c in t:
        if c.tag in tags:
            return c
    raise TlvError(t.vstart, "%s in %X" % (what, t.tag), "it missing")


# ---- the exchange: one request TLV, one answer TLV with the same tag ------------


def call(s, function, tag, *parts):
    """Send `tag { parts }` through s.store_data and return the answer Tlv (same tag)."""
    return exchange(s, function, tlv.enc(tag, *parts), tag)


def exchange(s, function, request, tag):
    """Send a whole request TLV; the answer must be one TLV with `tag`."""
    rsp = s.store_data(request)
    if not rsp:
        raise ProtocolError("%s: the eUICC answered no data, expected a %X response"
                            % (function, tag))
    t = tlv.decode(rsp)
    if t.tag != tag:
        raise TlvError(0, "a %X response to %s" % (tag, function), "tag %X" % t.tag)
    return t


def fail(function, code, names):
    """The FunctionError for `code` of `function`, named from the `names` table."""
    return FunctionError(function, code, names.get(code))


def result(t, function, names, tags=(0x80,), ok=(0,)):
    """The INTEGER result under one of `tags` in t; a FunctionError unless it is in `ok`."""
    code = need_any(t, tags, "the result code of " + function).as_int()
    if code not in ok:
        raise fail(function, code, names)
    return code


def encode_refresh_flag(refresh_flag):
    """refreshFlag '80' BOOLEAN: the request of ProfileRollback and of the refresh functions."""
    return tlv.encode(0x80, tlv.bool_encode(refresh_flag))


def refresh_call(s, function, tag, refresh_flag, names):
    """A function whose request is only refreshFlag and whose answer only a result code
    (ImmediateEnable, the emergency profile and fallback functions): None, or FunctionError."""
    result(call(s, function, tag, encode_refresh_flag(refresh_flag)), function, names)


def binary(x, what):
    """bytes, or a hex string, as bytes (ValueError naming `what` otherwise)."""
    if isinstance(x, str):
        from ipa_core.compat import unhexlify

        try:
            return unhexlify(x)
        except (ValueError, TypeError):
            raise ValueError("%s: expected hex, got %r" % (what, x))
    return bytes(x)


def raw_tlv(x, tag, what):
    """A TLV from a peer that is forwarded verbatim: check it is one TLV with `tag`."""
    x = bytes(x)
    t = tlv.decode(x)
    if t.tag != tag:
        raise ProtocolError("%s must be one %X TLV, got tag %X" % (what, tag, t.tag))
    return x


# ---- simple value kinds ------------------------------------------------------


def version_str(c):
    v = c.value
    if len(v) != 3:
        raise TlvError(c.vstart, "a 3-byte VersionType", "%d bytes" % len(v))
    return "%d.%d.%d" % (v[0], v[1], v[2])


def v_bytes(c):
    return c.value


def v_hexid(c):
    return hexu(c.value)


def v_str(c):
    return c.as_str()


def v_int(c):
    return c.as_int()


def v_uint(c):
    return c.as_uint()


def v_bool(c):
    return c.as_bool()


def v_present(c):
    return True


def v_oid(c):
    return c.as_oid()


def v_iccid(c):
    if c.length != 10:
        raise TlvError(c.vstart, "a 10-byte ICCID", "%d bytes" % c.length)
    return tlv.bcd_swap(c.value)


def v_keyids(c):
    return [hexu(k.value) for k in c]


def v_bits(names):
    return lambda c: c.as_bits(names)


def fields(t, table, out=None):
    """Decode t's children by a {tag: (name, decoder)} table; unknown tags are ignored."""
    if out is None:
        out = {}
    for c in t:
        f = table.get(c.tag)
        if f is not None:
            out[f[0]] = f[1](c)
    return out


def require(out, t, names):
    """TlvError for the first mandatory component of `names` missing from `out`."""
    for n in names:
        if n not in out:
            raise TlvError(t.vstart, "component %s in %X" % (n, t.tag), "it missing")
    return out


# ---- bit names (bit 0 first) -------------------------------------------------

NOTIFICATION_EVENT = ("notificationInstall", "notificationEnable", "notificationDisable",
                      "notificationDelete")
PPR_IDS = ("pprUpdateControl", "ppr1", "ppr2")
PPR_FLAGS = ("consentRequired",)
EIM_SUPPORTED_PROTOCOL = ("eimRetrieveHttps", "eimRetrieveCoaps", "eimInjectHttps",
                          "eimInjectCoaps", "eimProprietary")


def event_bits(op):
    """NotificationEvent BIT STRING value from a name or a list of names (a request's search)."""
    names = [op] if isinstance(op, str) else list(op)
    return tlv.bits_encode(names, NOTIFICATION_EVENT)


PROFILE_INFO_LIST_ERROR = Names(((1, "incorrectInputValues"), (11, "profileChangeOngoing"),
                                 (127, "undefinedError")))


# ---- EUICCInfo1 (SGP.22 / SGP.32 5.9; EUICCInfo2: es10_admin.euicc_info2) ----

INFO1 = {
    0x82: ("svn", version_str),
    0xA9: ("euiccCiPKIdListForVerification", v_keyids),
    0xAA: ("euiccCiPKIdListForSigning", v_keyids),
}


def euicc_info1(t):
    """EUICCInfo1 'BF20' -> dict + "raw" (sent as is in InitiateAuthentication)."""
    t = expect(unwrap(t), 0xBF20, "EUICCInfo1")
    out = fields(t, INFO1, {"raw": t.raw})
    return require(out, t, ("svn",))


# ---- certificates and keys ---------------------------------------------------


def _der_sequence(c, nkids):
    """X.509 DER of a SEQUENCE carried under a context tag.

    X.680 implicit tagging replaces the SEQUENCE tag ('A5' + content); some
    encoders wrap the whole '30' TLV instead. A lone '30' child of that shape
    is taken as the wrapped form. The outer tag is not covered by any
    signature, so '30' + content is the byte-exact original.
    """
    kids = c.children()
    if len(kids) == 1 and kids[0].tag == 0x30 and len(kids[0].children()) in nkids:
        return kids[0].raw
    return tlv.encode(0x30, c.value)


def certificate(c):
    """A Certificate under a context tag ([5] eumCertificate 'A5' ...) -> DER bytes."""
    return _der_sequence(c, (3,))


def spki(c):
    """A SubjectPublicKeyInfo under a context tag -> DER bytes."""
    return _der_sequence(c, (2,))


def _key_choice(c, names):
    """eimPublicKeyData [5] / trustedPublicKeyDataTls [6]: CHOICE {spki [0], certificate [1]}."""
    kids = c.children()
    if len(kids) != 1:
        raise TlvError(c.vstart, "one alternative in %X" % c.tag, "%d" % len(kids))
    k = kids[0]
    if k.tag == 0xA0:
        return {names[0]: spki(k)}
    if k.tag == 0xA1:
        return {names[1]: certificate(k)}
    if k.tag == 0x30:  # not re-tagged: tell them apart by shape
        if len(k.children()) == 2:
            return {names[0]: k.raw}
        return {names[1]: k.raw}
    raise TlvError(k.start, "A0 or A1 in %X" % c.tag, "tag %X" % k.tag)


# ---- eIM Configuration Data (SGP.32 2.11.1) ----------------------------------

EIM_CONFIGURATION_DATA = {
    0x80: ("eimId", v_str),
    0x81: ("eimFqdn", v_str),
    0x82: ("eimIdType", v_int),
    0x83: ("counterValue", v_int),
    0x84: ("associationToken", v_int),
    0xA5: ("eimPublicKeyData", lambda c: _key_choice(c, ("eimPublicKey", "eimCertificate"))),
    0xA6: ("trustedPublicKeyDataTls",
           lambda c: _key_choice(c, ("trustedEimPkTls", "trustedCertificateTls"))),
    0x87: ("eimSupportedProtocol", v_bits(EIM_SUPPORTED_PROTOCOL)),
    0x88: ("euiccCiPKId", v_hexid),
    0x89: ("indirectProfileDownload", v_present),
}


def eim_configuration_data(t):
    """EimConfigurationData (a '30' in a list) -> dict; indirectProfileDownload is a bool."""
    out = fields(t, EIM_CONFIGURATION_DATA, {"indirectProfileDownload": False})
    return require(out, t, ("eimId",))


# ---- profiles ---------------------------------------------------------------


def _operator_id(c):
    return fields(c, {0x80: ("mccMnc", v_hexid), 0x81: ("gid1", v_hexid), 0x82: ("gid2", v_hexid)})


def _notification_configuration(c):
    return [fields(k, {0x80: ("profileManagementOperation", v_bits(NOTIFICATION_EVENT)),
                       0x81: ("notificationAddress", v_str)}) for k in c]


def _dp_proprietary_data(c):
    out = {"raw": c.value}
    for k in c:
        if k.tag in (0x80, 0x06):  # auto-tagged [0] per the module; 06 tolerated
            out["dpOid"] = k.as_oid()
            break
    return out


PROFILE_INFO = {
    0x5A: ("iccid", v_iccid),
    0x4F: ("isdpAid", v_hexid),
    0x9F70: ("profileState", v_int),  # disabled(0), enabled(1)
    0x90: ("profileNickname", v_str),
    0x91: ("serviceProviderName", v_str),
    0x92: ("profileName", v_str),
    0x93: ("iconType", v_int),  # jpg(0), png(1)
    0x94: ("icon", v_bytes),
    0x95: ("profileClass", v_int),  # test(0), provisioning(1), operational(2)
    0xB6: ("notificationConfigurationInfo", _notification_configuration),
    0xB7: ("profileOwner", _operator_id),
    0xB8: ("dpProprietaryData", _dp_proprietary_data),
    0x99: ("profilePolicyRules", v_bits(PPR_IDS)),
    0xBF22: ("serviceSpecificDataStoredInEuicc", v_bytes),
    0x9F7B: ("ecallIndication", v_bool),
    0x9F26: ("fallbackAttribute", v_bool),
    0x9F67: ("fallbackAllowed", v_bool),
}


def profile_info(t):
    """SGP32-ProfileInfo 'E3' -> dict (fallbackAttribute defaults to False)."""
    expect(t, 0xE3, "ProfileInfo")
    return fields(t, PROFILE_INFO, {"fallbackAttribute": False})


def profile_info_list(t):
    """ProfileInfoListResponse content: {"profileInfoListOk": [...]} or {"profileInfoListError": n}."""
    t = unwrap(t)
    c = need_any(t, (0xA0, 0x81, 0x30), "profileInfoListOk (A0) or profileInfoListError (81)")
    if c.tag == 0x81:
        return {"profileInfoListError": c.as_int()}
    return {"profileInfoListOk": [profile_info(p) for p in c]}


def rules_authorisation_table(c):
    """RulesAuthorisationTable (SEQUENCE OF ProfilePolicyAuthorisationRule) -> list of dicts."""
    out = []
    for r in c:
        d = fields(r, {
            0x80: ("pprIds", v_bits(PPR_IDS)),
            0xA1: ("allowedOperators", lambda k: [_operator_id(o) for o in k]),
            0x82: ("pprFlags", v_bits(PPR_FLAGS)),
        })
        out.append(require(d, r, ("pprIds", "allowedOperators")))
    return out

