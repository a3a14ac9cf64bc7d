"""ES10 functions and decoders a board's IPA never calls: what a host tool, provisioning or
`ipa info` uses (SGP.22 v2.5 5.7, SGP.32 v1.2 5.9). Part of the ipa_core.es10 API: every
name here is also reachable as ipa_core.es10.<name> (the EUICCInfo2 decoder as
ipa_core.es10.euicc_info2), imported on first use, so a board's frozen bundle
leaves this module out (issue 8 size budget).

This module sits below ipa_core.es10: it takes the exchange plumbing and decoders from
es10_decode / es10_signed, as es10 does, and never imports es10 (es10 imports it).

Conventions and errors as in ipa_core.es10.
"""

from ipa_core import tlv
from ipa_core import es10_decode as d
from ipa_core import version as ver
from ipa_core.es10_decode import (
    PPR_IDS, call, fail, fields, expect, refresh_call, require, result, unwrap,
    v_bits, v_bytes, v_int, v_keyids, v_present, v_str, version_str,
)
from ipa_core.errors import TlvError

# ---- error / result names per function (numbers from the ASN.1 modules) -------

ADD_INITIAL_EIM_ERROR = {1: "insufficientMemory", 2: "associatedEimAlreadyExists",
                         3: "ciPKUnknown", 5: "invalidAssociationToken",
                         6: "counterValueOutOfRange", 7: "commandError", 127: "undefinedError"}
PROFILE_INFO_LIST_ERROR = d.PROFILE_INFO_LIST_ERROR
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
RESET_OPTIONS = ver.RESET_OPTIONS  # v1.0's: ipa_core.version.reset_options


# ---- EUICCInfo2 decoded for people (SGP.32 5.9; a board forwards it raw) ---------

RSP_CAPABILITY = ("additionalProfile", "crlSupport", "rpmSupport", "testProfileSupport",
                  "deviceInfoExtensibilitySupport", "serviceSpecificDataSupport")
TRE_PROPERTIES = ("isDiscrete", "isIntegrated", "usesRemoteMemory")
# PEDefinitions UICCCapability
UICC_CAPABILITY = (
    "contactlessSupport", "usimSupport", "isimSupport", "csimSupport", "akaMilenage", "akaCave",
    "akaTuak128", "akaTuak256", "usimTestAlgorithm", "rfu2", "gbaAuthenUsim", "gbaAuthenISim",
    "mbmsAuthenUsim", "eapClient", "javacard", "multos", "multipleUsimSupport",
    "multipleIsimSupport", "multipleCsimSupport", "berTlvFileSupport", "dfLinkSupport", "catTp",
    "getIdentity", "profile-a-x25519", "profile-b-p256", "suciCalculatorApi", "dns-resolution",
    "scp11ac", "scp11c-authorization-mechanism", "s16mode", "eaka", "iotminimal")


def v_versions(c):
    return [version_str(k) for k in c]


def _iot_specific_info(c):
    return fields(c, {
        0xA0: ("iotVersion", v_versions),
        0x81: ("ecallSupported", v_present),
        0x82: ("fallbackSupported", v_present),
    }, {"ecallSupported": False, "fallbackSupported": False})


def _certification_data(c):
    return fields(c, {0x80: ("platformLabel", v_str), 0x81: ("discoveryBaseURL", v_str)})


INFO2 = {
    0x81: ("profileVersion", version_str),
    0x82: ("svn", version_str),
    0x83: ("euiccFirmwareVer", version_str),
    0x84: ("extCardResource", v_bytes),
    0x85: ("uiccCapability", v_bits(UICC_CAPABILITY)),
    0x86: ("ts102241Version", version_str),
    0x87: ("globalplatformVersion", version_str),
    0x88: ("rspCapability", v_bits(RSP_CAPABILITY)),
    0xA9: ("euiccCiPKIdListForVerification", v_keyids),
    0xAA: ("euiccCiPKIdListForSigning", v_keyids),
    0x8B: ("euiccCategory", v_int),
    0x99: ("forbiddenProfilePolicyRules", v_bits(PPR_IDS)),
    0x04: ("ppVersion", version_str),  # untagged next to tagged components: universal tags
    0x0C: ("sasAcreditationNumber", v_str),
    0xAC: ("certificationDataObject", _certification_data),
    0x8D: ("treProperties", v_bits(TRE_PROPERTIES)),
    0x8E: ("treProductReference", v_str),
    0xAF: ("additionalEuiccProfilePackageVersions", v_versions),
    0x90: ("ipaMode", v_int),  # IpaMode: ipad(0), ipae(1)
    0xB1: ("euiccCiPKIdListForSigningV3", v_keyids),
    0x92: ("additionalEuiccInfo", v_bytes),
    0x93: ("highestSvn", version_str),
    0xB4: ("iotSpecificInfo", _iot_specific_info),
}


def euicc_info2(t):
    """SGP32-EUICCInfo2 'BF22' -> dict + "raw" (ipaMode [16], iotSpecificInfo [20] included)."""
    t = expect(unwrap(t), 0xBF22, "EUICCInfo2")
    out = fields(t, INFO2, {"raw": t.raw})
    return require(out, t, ("profileVersion", "svn", "euiccFirmwareVer"))


# ---- ES10a / ES10b / ES10c functions -------------------------------------------


def set_default_dp_address(s, address):
    """ES10a.SetDefaultDpAddress, SGP.32 form 'BF65' { defaultDpAddress '80' } -> None."""
    f = "ES10a.SetDefaultDpAddress"
    t = call(s, f, 0xBF65, tlv.encode(0x80, address.encode()))
    result(t, f, SET_DEFAULT_DP_ADDRESS_RESULT)


def get_euicc_info2(s):
    """ES10b.GetEUICCInfo 'BF22' -> SGP32-EUICCInfo2 as a dict + "raw".

    Includes ipaMode [16] (0 ipad, 1 ipae) and iotSpecificInfo [20]
    {"iotVersion": ["1.2.0"], "ecallSupported": bool, "fallbackSupported": bool}.
    """
    return euicc_info2(call(s, "ES10b.GetEUICCInfo2", 0xBF22))


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
    refresh_call(s, "ES10b.EnableEmergencyProfile", 0xBF5B, refresh_flag,
                 ENABLE_EMERGENCY_PROFILE_RESULT)


def disable_emergency_profile(s, refresh_flag):
    """ES10b.DisableEmergencyProfile 'BF5C' { refreshFlag } -> None."""
    refresh_call(s, "ES10b.DisableEmergencyProfile", 0xBF5C, refresh_flag,
                 DISABLE_EMERGENCY_PROFILE_RESULT)


def execute_fallback_mechanism(s, refresh_flag):
    """ES10b.ExecuteFallbackMechanism 'BF5D' { refreshFlag } -> None."""
    refresh_call(s, "ES10b.ExecuteFallbackMechanism", 0xBF5D, refresh_flag,
                 EXECUTE_FALLBACK_RESULT)


def return_from_fallback(s, refresh_flag):
    """ES10b.ReturnFromFallback 'BF5E' { refreshFlag } -> None."""
    refresh_call(s, "ES10b.ReturnFromFallback", 0xBF5E, refresh_flag,
                 RETURN_FROM_FALLBACK_RESULT)


def iccid_bytes(iccid):
    """ICCID digits -> the 10-byte nibble-swapped Iccid value ('F' padded)."""
    digits = str(iccid).upper()
    if not 1 <= len(digits) <= 20 or any(ch not in "0123456789F" for ch in digits):
        raise ValueError("ICCID %r: expected up to 20 digits" % (iccid,))
    while len(digits) < 20:
        digits += "F"
    return tlv.bcd_unswap(digits)


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

    options: list of RESET_OPTIONS names (v1.0: its own bits, version.reset_options;
    resetImmediateEnableConfig is sent as v1.0's resetAutoEnableConfig). Returns {"resetResult",
    "resetEimResult"?, "resetImmediateEnableConfigResult"?}. resetResult
    nothingToDelete is returned (nothing left to reset); other non-ok
    resetResult -> FunctionError. The optional results are returned as codes
    (names: RESET_EIM_RESULT, RESET_IMMEDIATE_ENABLE_CONFIG_RESULT).
    """
    f = "ES10c.EuiccMemoryReset"
    v = ver.of(s)
    names = ver.reset_options(v)
    if ver.is_v1_0(v):  # v1.0 called immediate enable "auto enable"
        options = ["resetAutoEnableConfig" if o == "resetImmediateEnableConfig" else o
                   for o in options]
    bad = [o for o in options if o not in names]
    if bad:
        raise ValueError("EuiccMemoryReset: %s not a resetOption of SGP.32 v%s (%s)"
                         % (", ".join(bad), v, ", ".join(names)))
    t = call(s, f, ver.tag("EuiccMemoryReset", v), tlv.encode(0x82, tlv.bits_encode(options,
                                                                                   names)))
    first = ver.tag("EuiccMemoryResetResponse.resetResult", v)
    result(t, f, RESET_RESULT, tags=(first,), ok=(0, 1))
    return d.fields(t, {first: ("resetResult", d.v_int), 0x81: ("resetEimResult", d.v_int),
                        0x82: ("resetImmediateEnableConfigResult", d.v_int)})
