"""eIM side: build and sign an eUICC Package for ES10b.LoadEuiccPackage (SGP.32 v1.2, SGP32Definitions).

    EuiccPackageRequest ::= [81] SEQUENCE {                         -- BF51
        euiccPackageSigned EuiccPackageSigned,                        -- 30
        eimSignature [APPLICATION 55] OCTET STRING }                  -- 5F37
    EuiccPackageSigned ::= SEQUENCE {
        eimId [0] UTF8String (SIZE(1..128)),                          -- 80
        eidValue [APPLICATION 26] Octet16,                            -- 5A
        counterValue [1] INTEGER,                                     -- 81
        eimTransactionId [2] TransactionId OPTIONAL,                  -- 82
        euiccPackage CHOICE { psmoList SEQUENCE OF Psmo,              -- A0
                              ecoList SEQUENCE OF Eco } }             -- A1

Tagging, read from SGP32Definitions (AUTOMATIC TAGS, X.680 §25.3): automatic
tags go only to a SEQUENCE/CHOICE whose components carry no tag at all, and
they are implicit except on a CHOICE. Hence `rollbackFlag` in the enable PSMO
stays a universal NULL (05 00: its sibling iccid is tagged), the two
untagged EuiccPackage alternatives become A0/A1, SetDefaultDpAddress's only
field becomes 80, and the untagged alternatives inside eimPublicKeyData [5]
/ trustedPublicKeyDataTls [6] become [0] SubjectPublicKeyInfo / [1]
Certificate under the explicit A5/A6: `A5 { A0 <SPKI content> }`.

Operations are plain dicts; "op" is the spec name of the PSMO or eCO:

    {"op": "enable", "iccid": "8949...", "rollback": True}      A3 {5A, 05 00}
    {"op": "disable" | "delete" | "setFallbackAttribute", "iccid": ...}
    {"op": "listProfileInfo", "iccid"|"isdpAid"|"profileClass": ..., "tagList": "5A91"}
    {"op": "getRAT"}  {"op": "unsetFallbackAttribute"}  {"op": "listEim"}
    {"op": "configureImmediateEnable", "immediateEnable": True,
     "defaultSmdpOid": "1.2.3", "defaultSmdpAddress": "smdp.example"}
    {"op": "setDefaultDpAddress", "defaultDpAddress": "smdp.example"}
    {"op": "addEim" | "updateEim", "eimId": ..., "eimFqdn": ..., "eimIdType": "fqdn",
     "counterValue": 0, "associationToken": 1 (-1 in addEim: the eUICC generates one),
     "eimPublicKey": <key>,
     "trustedPublicKeyTls": <key>, "eimSupportedProtocol": ["eimRetrieveHttps"],
     "euiccCiPKId": <hex|bytes>, "indirectProfileDownload": True}
    {"op": "deleteEim", "eimId": ...}

A <key> is a 65-byte uncompressed P-256 point (04 X Y), SubjectPublicKeyInfo
DER or certificate DER (bytes or hex), or a `cryptography` public key or
certificate. The signature (TR-03111 r||s) covers
`pki.eim_signed_bytes(euiccPackageSigned, association_token, version)`.
"""

import argparse
import binascii
import json
import re
import sys

from ipa_core import tlv
from ipa_core.errors import TlvError

# Psmo / Eco CHOICE tags (implicit, constructed).
PSMO_TAGS = {
    "enable": 0xA3,
    "disable": 0xA4,
    "delete": 0xA5,
    "listProfileInfo": 0xBF2D,  # [45] ProfileInfoListRequest
    "getRAT": 0xA6,
    "configureImmediateEnable": 0xA7,
    "setFallbackAttribute": 0xA8,
    "unsetFallbackAttribute": 0xA9,
    "setDefaultDpAddress": 0xBF65,  # [101] SGP32-SetDefaultDpAddressRequest
}
ECO_TAGS = {"addEim": 0xA8, "deleteEim": 0xA9, "updateEim": 0xAA, "listEim": 0xAB}
# SGP.32 v1.0's Psmo CHOICE ends at configureAutoEnable [7] (configureImmediateEnable's
# tag), and its EimConfigurationData at euiccCiPKId [8]: what came later is refused there.
NOT_IN_V1_0 = ("setFallbackAttribute", "unsetFallbackAttribute", "setDefaultDpAddress")
TAG_PSMO_LIST, TAG_ECO_LIST = 0xA0, 0xA1
TAG_EUICC_PACKAGE_REQUEST = 0xBF51
TAG_EIM_SIGNATURE = 0x5F37

EIM_ID_TYPES = {"oid": 1, "fqdn": 2, "proprietary": 3}  # EimIdType
EIM_PROTOCOLS = ("eimRetrieveHttps", "eimRetrieveCoaps", "eimInjectHttps", "eimInjectCoaps",
                 "eimProprietary")  # EimSupportedProtocol bit order
PROFILE_CLASSES = {"test": 0, "provisioning": 1, "operational": 2}  # SGP.22 ProfileClass

MAX_OPS = 64  # far above any real package; a bound against runaway input
MAX_COUNTER = (1 << 63) - 1
VERSIONS = ("1.0", "1.1", "1.2")

# SubjectPublicKeyInfo header for an uncompressed id-ecPublicKey on prime256v1.
_P256_SPKI_PREFIX = binascii.unhexlify(
    "3059301306072a8648ce3d020106082a8648ce3d030107034200")

_OP_KEYS = {
    "enable": ("iccid", "rollback"),
    "disable": ("iccid",),
    "delete": ("iccid",),
    "listProfileInfo": ("iccid", "isdpAid", "profileClass", "tagList"),
    "getRAT": (),
    "configureImmediateEnable": ("immediateEnable", "defaultSmdpOid", "defaultSmdpAddress"),
    "setFallbackAttribute": ("iccid",),
    "unsetFallbackAttribute": (),
    "setDefaultDpAddress": ("defaultDpAddress",),
    "addEim": ("eimId", "eimFqdn", "eimIdType", "counterValue", "associationToken",
               "eimPublicKey", "trustedPublicKeyTls", "eimSupportedProtocol", "euiccCiPKId",
               "indirectProfileDownload"),
    "deleteEim": ("eimId",),
    "listEim": (),
}
_OP_KEYS["updateEim"] = _OP_KEYS["addEim"]


# ---- value checks ------------------------------------------------------------


def _bytes(value, what, lo, hi):
    """bytes or hex text of lo..hi bytes."""
    if isinstance(value, str):
        try:
            value = binascii.unhexlify(value.replace(" ", ""))
        except (binascii.Error, ValueError):
            raise ValueError("%s must be hex, got %r" % (what, value))
    if not isinstance(value, (bytes, bytearray)):
        raise ValueError("%s must be bytes or hex, got %s" % (what, type(value).__name__))
    if not lo <= len(value) <= hi:
        raise ValueError("%s must be %d..%d bytes, got %d" % (what, lo, hi, len(value)))
    return bytes(value)


def _text(value, what, lo=1, hi=255):
    if not isinstance(value, str) or not lo <= len(value) <= hi:
        raise ValueError("%s must be text of %d..%d characters, got %r" % (what, lo, hi, value))
    return value.encode("utf-8")


def _uint(value, what, hi=MAX_COUNTER):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
        raise ValueError("%s must be an integer 0..%d, got %r" % (what, hi, value))
    return tlv.int_encode(value)


def _flag(value, what):
    if not isinstance(value, bool):
        raise ValueError("%s must be true or false, got %r" % (what, value))
    return value


def iccid_tlv(iccid, what="iccid"):
    """Iccid ::= [APPLICATION 26] OCTET STRING (SIZE(10)): 5A 0A, nibble-swapped, F-padded."""
    if not isinstance(iccid, str) or not re.fullmatch(r"[0-9]{18,20}[fF]?", iccid) \
            or len(iccid) > 20:
        raise ValueError("%s must be 18..20 decimal digits, got %r" % (what, iccid))
    return tlv.encode(0x5A, tlv.bcd_unswap(iccid.upper().rstrip("F").ljust(20, "F")))


def eid_bytes(eid_hex):
    """eidValue: 32 hex digits -> 16 bytes (Octet16)."""
    if not isinstance(eid_hex, str) or not re.fullmatch(r"[0-9a-fA-F]{32}", eid_hex):
        raise ValueError("EID must be 32 hex digits, got %r" % (eid_hex,))
    return binascii.unhexlify(eid_hex)


def _der_public(value):
    """cryptography key/certificate objects -> DER; anything else unchanged."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:  # pragma: no cover - cryptography is a host dependency
        return value
    if isinstance(value, x509.Certificate):
        return value.public_bytes(serialization.Encoding.DER)
    if isinstance(value, ec.EllipticCurvePublicKey):
        return value.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return value


def public_key_choice(value, what):
    """CHOICE {[0] SubjectPublicKeyInfo, [1] Certificate} (implicit, automatic tags)."""
    value = _der_public(value)
    der = _bytes(value, what, 65, 8192)
    if len(der) == 65 and der[0] == 0x04:
        der = _P256_SPKI_PREFIX + der  # a bare point: P-256 (give SPKI DER for other curves)
    try:
        top = tlv.decode(der)
        first = next(iter(top)) if top.tag == 0x30 else None
        kind = None
        if first is not None and first.tag == 0x30:
            # SPKI starts with AlgorithmIdentifier {OID ...}; a certificate with TBSCertificate.
            inner = next(iter(first), None)
            kind = 0xA0 if inner is not None and inner.tag == 0x06 else 0xA1
    except (TlvError, StopIteration):
        kind = None
    if kind is None:
        raise ValueError("%s must be a 65-byte point (04...), SubjectPublicKeyInfo DER or "
                         "certificate DER, got %s" % (what, tlv.hexs(der)))
    return tlv.encode(kind, top.value)


# ---- PSMOs and eCOs ------------------------------------------------------------


def _check_keys(op):
    if not isinstance(op, dict) or "op" not in op:
        raise ValueError("each operation must be a dict with an 'op' key, got %r" % (op,))
    name = op["op"]
    if name not in _OP_KEYS:
        raise ValueError("unknown operation %r; PSMOs: %s; eCOs: %s"
                         % (name, ", ".join(PSMO_TAGS), ", ".join(ECO_TAGS)))
    extra = sorted(set(op) - set(_OP_KEYS[name]) - {"op"})
    if extra:
        raise ValueError("%s: unknown field(s) %s (known: %s)"
                         % (name, ", ".join(extra), ", ".join(_OP_KEYS[name]) or "none"))
    return name


def encode_psmo(op):
    """One Psmo CHOICE alternative (Profile State Management Operation) as TLV bytes."""
    name = _check_keys(op)
    if name not in PSMO_TAGS:
        raise ValueError("%r is an eCO, not a PSMO" % name)
    tag = PSMO_TAGS[name]
    if name == "enable":
        if "iccid" not in op:
            raise ValueError("enable: iccid is required")
        rollback = _flag(op.get("rollback", False), "enable: rollback")
        return tlv.enc(tag, iccid_tlv(op["iccid"], "enable: iccid"),
                       b"\x05\x00" if rollback else None)  # rollbackFlag NULL, untagged
    if name in ("disable", "delete", "setFallbackAttribute"):
        if "iccid" not in op:
            raise ValueError("%s: iccid is required" % name)
        return tlv.enc(tag, iccid_tlv(op["iccid"], name + ": iccid"))
    if name == "listProfileInfo":
        crit = [k for k in ("iccid", "isdpAid", "profileClass") if k in op]
        if len(crit) > 1:
            raise ValueError("listProfileInfo: one search criterion at most, got %s"
                             % ", ".join(crit))
        search = None
        if "iccid" in op:
            search = iccid_tlv(op["iccid"], "listProfileInfo: iccid")
        elif "isdpAid" in op:
            search = tlv.encode(0x4F, _bytes(op["isdpAid"], "listProfileInfo: isdpAid", 1, 16))
        elif "profileClass" in op:
            pc = op["profileClass"]
            pc = PROFILE_CLASSES.get(pc, pc)
            if pc not in PROFILE_CLASSES.values():
                raise ValueError("listProfileInfo: profileClass must be one of %s, got %r"
                                 % ("/".join(PROFILE_CLASSES), op["profileClass"]))
            search = tlv.encode(0x95, tlv.int_encode(pc))
        tags = None
        if "tagList" in op:
            tags = tlv.encode(0x5C, _bytes(op["tagList"], "listProfileInfo: tagList", 1, 64))
        # searchCriteria [0] is a tagged CHOICE: explicit A0 around the alternative.
        return tlv.enc(tag, tlv.encode(0xA0, search) if search else None, tags)
    if name == "configureImmediateEnable":
        flag = _flag(op.get("immediateEnable", False), "configureImmediateEnable: immediateEnable")
        oid = None
        if "defaultSmdpOid" in op:
            try:
                oid = tlv.encode(0x81, tlv.oid_encode(op["defaultSmdpOid"]))
            except (ValueError, AttributeError):
                raise ValueError("configureImmediateEnable: defaultSmdpOid must be a dotted OID,"
                                 " got %r" % (op["defaultSmdpOid"],))
        addr = None
        if "defaultSmdpAddress" in op:
            addr = tlv.encode(0x82, _text(op["defaultSmdpAddress"],
                                          "configureImmediateEnable: defaultSmdpAddress"))
        return tlv.enc(tag, tlv.encode(0x80) if flag else None, oid, addr)
    if name == "setDefaultDpAddress":
        if "defaultDpAddress" not in op:
            raise ValueError("setDefaultDpAddress: defaultDpAddress is required")
        return tlv.enc(tag, tlv.encode(0x80, _text(op["defaultDpAddress"],
                                                   "setDefaultDpAddress: defaultDpAddress")))
    return tlv.encode(tag)  # getRAT, unsetFallbackAttribute: SEQUENCE {}


def _association_token(value, tag, what):
    """associationToken [4] INTEGER: in addEim, -1 asks the eUICC to generate the token
    (it answers addEimResult associationToken [4]); otherwise a value 0.. the eIM holds."""
    if tag == ECO_TAGS["addEim"] and value == -1 and not isinstance(value, bool):
        return tlv.int_encode(-1)  # 84 01 FF
    return _uint(value, what + ": associationToken (or -1 in addEim: the eUICC generates it)")


def encode_eim_configuration_data(op, tag, what):
    """EimConfigurationData (SGP.32 §2.11.1 per the module's comment) with `tag`
    replacing its SEQUENCE tag (addEim [8] / updateEim [10], implicit)."""
    if "eimId" not in op:
        raise ValueError("%s: eimId is required" % what)
    parts = [tlv.encode(0x80, _text(op["eimId"], what + ": eimId", 1, 128))]
    if "eimFqdn" in op:
        parts.append(tlv.encode(0x81, _text(op["eimFqdn"], what + ": eimFqdn")))
    if "eimIdType" in op:
        t = op["eimIdType"]
        t = EIM_ID_TYPES.get(t, t)
        if t not in EIM_ID_TYPES.values():
            raise ValueError("%s: eimIdType must be one of %s, got %r"
                             % (what, "/".join(EIM_ID_TYPES), op["eimIdType"]))
        parts.append(tlv.encode(0x82, tlv.int_encode(t)))
    if "counterValue" in op:
        parts.append(tlv.encode(0x83, _uint(op["counterValue"], what + ": counterValue")))
    if "associationToken" in op:
        parts.append(tlv.encode(0x84, _association_token(op["associationToken"], tag, what)))
    if "eimPublicKey" in op:  # [5] CHOICE: explicit
        parts.append(tlv.encode(0xA5, public_key_choice(op["eimPublicKey"],
                                                        what + ": eimPublicKey")))
    if "trustedPublicKeyTls" in op:  # [6] CHOICE: explicit
        parts.append(tlv.encode(0xA6, public_key_choice(op["trustedPublicKeyTls"],
                                                        what + ": trustedPublicKeyTls")))
    if "eimSupportedProtocol" in op:
        protos = op["eimSupportedProtocol"]
        if isinstance(protos, str) or not all(p in EIM_PROTOCOLS for p in protos):
            raise ValueError("%s: eimSupportedProtocol must be a list of %s, got %r"
                             % (what, "/".join(EIM_PROTOCOLS), protos))
        parts.append(tlv.encode(0x87, tlv.bits_encode(protos, EIM_PROTOCOLS)))
    if "euiccCiPKId" in op:
        parts.append(tlv.encode(0x88, _bytes(op["euiccCiPKId"], what + ": euiccCiPKId", 1, 32)))
    if _flag(op.get("indirectProfileDownload", False), what + ": indirectProfileDownload"):
        parts.append(tlv.encode(0x89))
    return tlv.encode(tag, parts)


def encode_eco(op):
    """One Eco CHOICE alternative (eIM Configuration Operation) as TLV bytes."""
    name = _check_keys(op)
    if name not in ECO_TAGS:
        raise ValueError("%r is a PSMO, not an eCO" % name)
    tag = ECO_TAGS[name]
    if name in ("addEim", "updateEim"):
        if name == "addEim" and "eimPublicKey" not in op:
            raise ValueError("addEim: eimPublicKey is required (the eUICC verifies the new "
                             "eIM's packages with it)")
        return encode_eim_configuration_data(op, tag, name)
    if name == "deleteEim":
        if "eimId" not in op:
            raise ValueError("deleteEim: eimId is required")
        return tlv.enc(tag, tlv.encode(0x80, _text(op["eimId"], "deleteEim: eimId", 1, 128)))
    return tlv.encode(tag)  # listEim: SEQUENCE {}


def encode_euicc_package(ops):
    """EuiccPackage CHOICE: A0 psmoList or A1 ecoList; PSMOs and eCOs never mix."""
    if isinstance(ops, dict) or not isinstance(ops, (list, tuple)) or not ops:
        raise ValueError("ops must be a non-empty list of operations")
    if len(ops) > MAX_OPS:
        raise ValueError("at most %d operations in one package, got %d" % (MAX_OPS, len(ops)))
    names = [_check_keys(op) for op in ops]
    psmos = [n for n in names if n in PSMO_TAGS]
    ecos = [n for n in names if n in ECO_TAGS]
    if psmos and ecos:
        raise ValueError("one eUICC Package carries PSMOs or eCOs, not both: got PSMOs %s and "
                         "eCOs %s" % (", ".join(psmos), ", ".join(ecos)))
    if psmos:
        return tlv.encode(TAG_PSMO_LIST, [encode_psmo(op) for op in ops])
    return tlv.encode(TAG_ECO_LIST, [encode_eco(op) for op in ops])


def encode_euicc_package_signed(eim_id, eid_hex, counter, ops, transaction_id=None):
    """EuiccPackageSigned (30 ...): the exact bytes the eIM signature covers."""
    return tlv.enc(
        0x30,
        tlv.encode(0x80, _text(eim_id, "eimId", 1, 128)),
        tlv.encode(0x5A, eid_bytes(eid_hex)),
        tlv.encode(0x81, _uint(counter, "counterValue")),
        tlv.encode(0x82, _bytes(transaction_id, "eimTransactionId", 1, 16))
        if transaction_id is not None else None,
        encode_euicc_package(ops),
    )


def _check_v1_0(ops):
    """ValueError for an operation, or an eIM Configuration Data field, SGP.32 v1.0 lacks."""
    for op in ops if isinstance(ops, (list, tuple)) else ():
        name = op.get("op") if isinstance(op, dict) else None
        if name in NOT_IN_V1_0:
            raise ValueError("%s is not a PSMO of SGP.32 v1.0 (its Psmo ends at "
                             "configureAutoEnable)" % name)
        if name in ("addEim", "updateEim") and op.get("indirectProfileDownload"):
            raise ValueError("%s: indirectProfileDownload is not in SGP.32 v1.0's "
                             "EimConfigurationData" % name)


def build_euicc_package_request(eim_id, eid_hex, counter, ops, private_key,
                                association_token=None, transaction_id=None, version="1.2"):
    """The signed EuiccPackageRequest BF51 an eIM hands to the IPA (ESipa.GetEimPackage).

    `private_key` is the eIM's EC key (a `cryptography` key or a PEM/DER file
    path); `association_token` the one in the eUICC's eIM Configuration Data.
    """
    from ipa_host.sim import pki

    if version not in VERSIONS:
        raise ValueError("version must be one of %s, got %r" % ("/".join(VERSIONS), version))
    if version == "1.0":
        _check_v1_0(ops)
    if association_token is not None:
        _uint(association_token, "associationToken")
    signed = encode_euicc_package_signed(eim_id, eid_hex, counter, ops, transaction_id)
    if isinstance(private_key, str):
        private_key = pki.load_private_key(private_key)
    sig = pki.sign_raw(private_key, pki.eim_signed_bytes(signed, association_token, version))
    return tlv.encode(TAG_EUICC_PACKAGE_REQUEST, [signed, tlv.encode(TAG_EIM_SIGNATURE, sig)])


# ---- command line ------------------------------------------------------------


def _read_key_arg(path):
    """A certificate or public key file (PEM or DER) -> DER bytes for public_key_choice."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    with open(path, "rb") as f:
        data = f.read()
    for load in (x509.load_pem_x509_certificate, x509.load_der_x509_certificate,
                 serialization.load_pem_public_key, serialization.load_der_public_key):
        try:
            return _der_public(load(data))
        except ValueError:
            continue
    raise ValueError("%s is neither a certificate nor a public key (PEM or DER)" % path)


def _parser():
    p = argparse.ArgumentParser(
        prog="ipa-sim sign",
        description="Build an EuiccPackageRequest (BF51) signed with the eIM key (SGP.32).")
    p.add_argument("--key", required=True, help="eIM private key file (PEM/DER)")
    p.add_argument("--eim-id", required=True, help="eimId of the signing eIM")
    p.add_argument("--eid", required=True, help="EID of the target eUICC (32 hex digits)")
    p.add_argument("--counter", required=True, type=int, help="counterValue (must increase)")
    p.add_argument("--token", type=int, help="associationToken from the eIM Configuration Data")
    p.add_argument("--transaction-id", help="eimTransactionId (hex, 1..16 bytes)")
    p.add_argument("--sgp32", "--version", dest="version", default="1.2", choices=VERSIONS,
                   help="SGP.32 version (--version: its old name)")
    p.add_argument("--ops-json", metavar="FILE",
                   help="operations as a JSON list of dicts (instead of one OP below)")
    p.add_argument("--out", metavar="FILE", help="write the DER here (else hex on stdout)")
    sub = p.add_subparsers(dest="op", metavar="OP")
    s = sub.add_parser("enable", help="PSMO enable")
    s.add_argument("iccid")
    s.add_argument("--rollback", action="store_true", help="set rollbackFlag")
    for name in ("disable", "delete", "setFallbackAttribute"):
        sub.add_parser(name, help="PSMO " + name).add_argument("iccid")
    s = sub.add_parser("listProfileInfo", help="PSMO listProfileInfo")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--iccid")
    g.add_argument("--isdp-aid", dest="isdpAid")
    g.add_argument("--profile-class", dest="profileClass", choices=list(PROFILE_CLASSES))
    s.add_argument("--tag-list", dest="tagList", help="tags to return, hex (e.g. 5A9F70)")
    for name in ("getRAT", "unsetFallbackAttribute", "listEim"):
        sub.add_parser(name, help=("eCO " if name == "listEim" else "PSMO ") + name)
    s = sub.add_parser("configureImmediateEnable", help="PSMO configureImmediateEnable")
    s.add_argument("--immediate-enable", dest="immediateEnable", action="store_true")
    s.add_argument("--smdp-oid", dest="defaultSmdpOid")
    s.add_argument("--smdp-address", dest="defaultSmdpAddress")
    sub.add_parser("setDefaultDpAddress", help="PSMO setDefaultDpAddress").add_argument(
        "defaultDpAddress")
    for name in ("addEim", "updateEim"):
        s = sub.add_parser(name, help="eCO " + name)
        s.add_argument("eimId", help="eimId of the eIM to add/update")
        s.add_argument("--fqdn", dest="eimFqdn")
        s.add_argument("--id-type", dest="eimIdType", choices=list(EIM_ID_TYPES))
        s.add_argument("--counter-value", dest="counterValue", type=int)
        s.add_argument("--association-token", dest="associationToken", type=int)
        s.add_argument("--eim-cert", dest="eimPublicKey", metavar="FILE",
                       help="the eIM's signing certificate or public key (PEM/DER)")
        s.add_argument("--tls-cert", dest="trustedPublicKeyTls", metavar="FILE",
                       help="(D)TLS trust anchor: certificate or public key (PEM/DER)")
        s.add_argument("--protocols", dest="eimSupportedProtocol",
                       help="comma list of " + ",".join(EIM_PROTOCOLS))
        s.add_argument("--ci-pkid", dest="euiccCiPKId", help="euiccCiPKId (hex)")
        s.add_argument("--indirect", dest="indirectProfileDownload", action="store_true")
    sub.add_parser("deleteEim", help="eCO deleteEim").add_argument("eimId")
    return p


def _op_from_args(args):
    skip = {"key", "eim_id", "eid", "counter", "token", "transaction_id", "version", "ops_json",
            "out", "op"}
    op = {"op": args.op}
    for k, v in vars(args).items():
        if k in skip or v is None or v is False:
            continue
        op[k] = v
    for k in ("eimPublicKey", "trustedPublicKeyTls"):
        if k in op:
            op[k] = _read_key_arg(op[k])
    if "eimSupportedProtocol" in op:
        op["eimSupportedProtocol"] = [x.strip() for x in op["eimSupportedProtocol"].split(",")]
    return op


def signer_main(argv=None):
    """`ipa-sim sign --key eim.key --eim-id X --eid E --counter 5 enable 8949... --rollback`."""
    p = _parser()
    args = p.parse_args(argv)
    try:
        if args.ops_json:
            if args.op:
                p.error("give either --ops-json or one OP, not both")
            with open(args.ops_json) as f:
                ops = json.load(f)
        elif args.op:
            ops = [_op_from_args(args)]
        else:
            p.error("an operation is required (OP or --ops-json)")
        der = build_euicc_package_request(
            args.eim_id, args.eid, args.counter, ops, args.key,
            association_token=args.token, transaction_id=args.transaction_id,
            version=args.version)
    except (ValueError, OSError) as e:
        sys.stderr.write("ipa-sim sign: %s\n" % e)
        return 2
    if args.out:
        with open(args.out, "wb") as f:
            f.write(der)
        sys.stderr.write("wrote %d bytes to %s\n" % (len(der), args.out))
    else:
        sys.stdout.write(binascii.hexlify(der).decode().upper() + "\n")
    return 0
