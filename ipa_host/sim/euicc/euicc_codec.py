"""Data objects the virtual eUICC encodes and decodes (SGP.32 v1.2 / SGP.22 v2.5 ASN.1).

Written from the modules, AUTOMATIC TAGS applied by hand: a SEQUENCE's
components get [0], [1], ... only when none of them carries a tag, a CHOICE's
alternatives likewise, and a tag on a CHOICE is always explicit. Encoding is
DER in declaration order; decoding is tolerant where compilers are known to
differ (noted where it matters).

This module belongs to the simulator (ipa_host.sim) and deliberately does not
share code with the IPA's own message modules.
"""

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ipa_core import tlv
from ipa_core.errors import TlvError

# ---- named bits and numbers from the modules ------------------------------------

# RSPDefinitions NotificationEvent
NOTIFICATION_EVENTS = ("notificationInstall", "notificationEnable", "notificationDisable",
                       "notificationDelete")
EVENT_BIT = {"install": "notificationInstall", "enable": "notificationEnable",
             "disable": "notificationDisable", "delete": "notificationDelete"}

# SGP32Definitions EimSupportedProtocol
EIM_PROTOCOLS = ("eimRetrieveHttps", "eimRetrieveCoaps", "eimInjectHttps", "eimInjectCoaps",
                 "eimProprietary")

# SGP32-EuiccMemoryResetRequest resetOptions (bits 0..2 also SGP.22 EuiccMemoryResetRequest)
RESET_OPTIONS = ("deleteOperationalProfiles", "deleteFieldLoadedTestProfiles",
                 "resetDefaultSmdpAddress", "deletePreLoadedTestProfiles",
                 "deleteProvisioningProfiles", "resetEimConfigData", "resetImmediateEnableConfig")
# SGP.32 v1.0 SGP32-EuiccMemoryResetRequest [52]: its own bits (auto enable = immediate enable)
RESET_OPTIONS_V1_0 = ("deleteOperationalProfiles", "deleteFieldLoadedTestProfiles",
                      "resetDefaultSmdpAddress", "resetEimConfigData", "resetImmediateEnableConfig")

# PEDefinitions UICCCapability (bit order 0..31)
UICC_CAPABILITY = (
    "contactlessSupport", "usimSupport", "isimSupport", "csimSupport", "akaMilenage", "akaCave",
    "akaTuak128", "akaTuak256", "usimTestAlgorithm", "rfu2", "gbaAuthenUsim", "gbaAuthenISim",
    "mbmsAuthenUsim", "eapClient", "javacard", "multos", "multipleUsimSupport",
    "multipleIsimSupport", "multipleCsimSupport", "berTlvFileSupport", "dfLinkSupport", "catTp",
    "getIdentity", "profile-a-x25519", "profile-b-p256", "suciCalculatorApi", "dns-resolution",
    "scp11ac", "scp11c-authorization-mechanism", "s16mode", "eaka", "iotminimal",
)

# RSPDefinitions RspCapability
RSP_CAPABILITY = ("additionalProfile", "crlSupport", "rpmSupport", "testProfileSupport",
                  "deviceInfoExtensibilitySupport", "serviceSpecificDataSupport")

# RSPDefinitions PprIds
PPR_IDS = ("pprUpdateControl", "ppr1", "ppr2")

# SGP32Definitions ISDRProprietaryApplicationTemplateIoT euiccConfiguration
EUICC_CONFIGURATION = ("ipaeSupported", "enabledProfile")

PROFILE_CLASS_NUM = {"test": 0, "provisioning": 1, "operational": 2}
PROFILE_CLASS_NAME = {v: k for k, v in PROFILE_CLASS_NUM.items()}

# EimIdType
EIM_ID_TYPE_PROPRIETARY = 3

# SGP.32 2.11.1.1: every eUICC supports counterValue up to 2^23 - 1.
MAX_COUNTER = 0x7FFFFF


def version_bytes(text):
    """'1.2' / '2.5.0' -> VersionType (3 bytes major/minor/revision)."""
    parts = [int(x) for x in str(text).split(".")] + [0, 0]
    return bytes(parts[:3])


# ---- ICCID ---------------------------------------------------------------------


def iccid_bytes(digits):
    """ICCID digits -> the 10-byte nibble-swapped value (Iccid, padded with F)."""
    d = digits.upper()
    d = d + "F" * (20 - len(d))
    return tlv.bcd_unswap(d)


def iccid_digits(value):
    if len(value) != 10:
        raise TlvError(0, "a 10-byte ICCID", "%d bytes" % len(value))
    return tlv.bcd_swap(value)


# ---- tag lists -----------------------------------------------------------------


def parse_tag_list(data):
    """The tags named in a tagList ('5C') value, in order."""
    tags = []
    i = 0
    while i < len(data):
        t = data[i]
        i += 1
        if t & 0x1F == 0x1F:
            while i < len(data):
                b = data[i]
                t = (t << 8) | b
                i += 1
                if not b & 0x80:
                    break
        tags.append(t)
    return tags


# ---- EimConfigurationData (SGP32Definitions) ------------------------------------
#
# EimConfigurationData ::= SEQUENCE {
#   eimId [0], eimFqdn [1], eimIdType [2], counterValue [3], associationToken [4],
#   eimPublicKeyData [5] CHOICE {eimPublicKey [0] SPKI, eimCertificate [1] Certificate},
#   trustedPublicKeyDataTls [6] CHOICE {trustedEimPkTls [0], trustedCertificateTls [1]},
#   eimSupportedProtocol [7] BIT STRING, euiccCiPKId [8] OCTET STRING,
#   indirectProfileDownload [9] NULL }
# The [5]/[6] CHOICEs are explicit: A5 { A0 <SPKI contents> } or A5 { A1 <cert contents> }.


def parse_eim_config(t):
    """EimConfigurationData (a SEQUENCE Tlv, any outer tag) -> dict of raw fields.

    Missing fields are None. `public_key_data` / `tls_data` hold the raw
    alternative inside A5 / A6 as hex, kept byte-for-byte.
    """
    out = {"eim_id": None, "fqdn": None, "id_type": None, "counter": None, "token": None,
           "public_key_data": None, "tls_data": None, "protocols": None, "ci_pkid": None,
           "indirect": False}
    for c in t:
        if c.tag == 0x80:
            out["eim_id"] = c.as_str()
        elif c.tag == 0x81:
            out["fqdn"] = c.as_str()
        elif c.tag == 0x82:
            out["id_type"] = c.as_int()
        elif c.tag == 0x83:
            out["counter"] = c.as_int()
        elif c.tag == 0x84:
            out["token"] = c.as_int()
        elif c.tag in (0xA5, 0xA6):
            kids = c.children()
            if len(kids) != 1:
                raise TlvError(c.vstart, "one alternative in %X" % c.tag, "%d" % len(kids))
            out["public_key_data" if c.tag == 0xA5 else "tls_data"] = kids[0].raw.hex()
        elif c.tag == 0x87:
            out["protocols"] = c.value.hex()
        elif c.tag == 0x88:
            out["ci_pkid"] = c.value.hex()
        elif c.tag == 0x89:
            out["indirect"] = True
    return out


def encode_eim_config(e, with_counter=False):
    """One stored eIM as EimConfigurationData (30 ...).

    GetEimConfigurationData leaves counterValue out (SGP.32 5.9.18: the eUICC
    shall not provide it); with_counter=True keeps it for other uses.
    """
    parts = [tlv.encode(0x80, e["eim_id"].encode("utf-8"))]
    if e.get("fqdn") is not None:
        parts.append(tlv.encode(0x81, e["fqdn"].encode("utf-8")))
    if e.get("id_type") is not None:
        parts.append(tlv.encode(0x82, tlv.int_encode(e["id_type"])))
    if with_counter and e.get("counter") is not None:
        parts.append(tlv.encode(0x83, tlv.int_encode(e["counter"])))
    if e.get("token") is not None:
        parts.append(tlv.encode(0x84, tlv.int_encode(e["token"])))
    if e.get("public_key_data"):
        parts.append(tlv.encode(0xA5, bytes.fromhex(e["public_key_data"])))
    if e.get("tls_data"):
        parts.append(tlv.encode(0xA6, bytes.fromhex(e["tls_data"])))
    if e.get("protocols") is not None:
        parts.append(tlv.encode(0x87, bytes.fromhex(e["protocols"])))
    if e.get("ci_pkid") is not None:
        parts.append(tlv.encode(0x88, bytes.fromhex(e["ci_pkid"])))
    if e.get("indirect"):
        parts.append(tlv.encode(0x89, b""))
    return tlv.encode(0x30, parts)


def eim_public_key(public_key_data_hex):
    """The eIM's signing key from the stored eimPublicKeyData alternative, or None.

    A0 = eimPublicKey (SubjectPublicKeyInfo contents), A1 = eimCertificate
    (Certificate contents). Tolerant: a universal 30 is tried as either.
    """
    if not public_key_data_hex:
        return None
    try:
        alt = tlv.decode(bytes.fromhex(public_key_data_hex))
    except (TlvError, ValueError):
        return None
    der = tlv.encode(0x30, alt.value)
    order = {0xA0: ("spki", "cert"), 0xA1: ("cert", "spki")}.get(alt.tag, ("spki", "cert"))
    for kind in order:
        try:
            if kind == "spki":
                return serialization.load_der_public_key(der)
            return x509.load_der_x509_certificate(der).public_key()
        except ValueError:
            continue
    return None


def public_key_data_for(key_or_cert):
    """eimPublicKeyData alternative (hex) for a certificate (A1) or public key (A0)."""
    if isinstance(key_or_cert, x509.Certificate):
        der = key_or_cert.public_bytes(serialization.Encoding.DER)
        return tlv.encode(0xA1, tlv.decode(der).value).hex()
    der = key_or_cert.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return tlv.encode(0xA0, tlv.decode(der).value).hex()


# ---- ProfileInfo (SGP32-ProfileInfo, tag E3) ----------------------------------------

# Declaration order of the SGP32-ProfileInfo fields this eUICC keeps.
PROFILE_INFO_TAGS = (0x5A, 0x4F, 0x9F70, 0x90, 0x91, 0x92, 0x95, 0x99, 0x9F7B, 0x9F26, 0x9F67)
# SGP.32 2.11.1.1.3: what listProfileInfo returns without a tag list.
PSMO_DEFAULT_TAGS = (0x5A, 0x4F, 0x9F70, 0x91, 0x92, 0x95, 0x9F7B, 0x9F26, 0x9F67)


def profile_info(p, tags=None):
    """One ProfileInfo (E3) with the fields in `tags` (all kept fields when None)."""
    want = set(PROFILE_INFO_TAGS if tags is None else tags)
    out = []
    for t in PROFILE_INFO_TAGS:
        if t not in want:
            continue
        if t == 0x5A:
            v = iccid_bytes(p["iccid"])
        elif t == 0x4F:
            v = bytes.fromhex(p["isdp_aid"])
        elif t == 0x9F70:
            v = tlv.int_encode(1 if p["state"] == "enabled" else 0)
        elif t == 0x90:
            if p.get("nickname") is None:
                continue
            v = p["nickname"].encode("utf-8")
        elif t == 0x91:
            v = p["provider"].encode("utf-8")
        elif t == 0x92:
            v = p["name"].encode("utf-8")
        elif t == 0x95:
            v = tlv.int_encode(PROFILE_CLASS_NUM[p["class"]])
        elif t == 0x99:
            if not p.get("ppr"):
                continue
            v = tlv.bits_encode(p["ppr"], PPR_IDS)
        elif t == 0x9F7B:
            if not p.get("emergency"):
                continue
            v = tlv.bool_encode(True)
        elif t == 0x9F26:
            # DEFAULT FALSE: DER leaves a default value out.
            if not p.get("fallback"):
                continue
            v = tlv.bool_encode(True)
        else:  # 0x9F67 fallbackAllowed
            v = tlv.bool_encode(bool(p.get("fallback_allowed", True)))
        out.append(tlv.encode(t, v))
    return tlv.encode(0xE3, out)


# ---- notifications -------------------------------------------------------------------


def notification_metadata(seq, event, address, iccid):
    """NotificationMetadata BF2F {seqNumber 80, profileManagementOperation 81, 0C address, 5A iccid}."""
    return tlv.enc(
        0xBF2F,
        tlv.encode(0x80, tlv.int_encode(seq)),
        tlv.encode(0x81, tlv.bits_encode([EVENT_BIT[event]], NOTIFICATION_EVENTS)),
        tlv.encode(0x0C, address.encode("utf-8")),
        tlv.encode(0x5A, iccid_bytes(iccid)) if iccid else None,
    )
