"""Test PKI for the simulators: CI, EUM, eUICC and eIM keys and certificates (SGP.22 4.5, SGP.32 2.11).

One folder holds one chain as PEM files with fixed names:

    ci.crt  ci.key      Certificate Issuer, self-signed (CERT.CI.ECDSA)
    eum.crt eum.key     EUM, signed by the CI (CERT.EUM.ECDSA)
    euicc.crt euicc.key eUICC, signed by the EUM, EID in subject serialNumber (CERT.EUICC.ECDSA)
    eim.crt eim.key     eIM signing certificate, signed by the CI

`create_test_pki` makes the missing ones (ECDSA P-256); the loaders read any
such folder, so a bench can point at a copy of the GSMA SGP.26 test
certificates renamed to these names (PEM or DER both load).

Signatures: eSIM carries ECDSA signatures in 5F37 as TR-03111 raw r||s
(64 bytes for P-256). `sign_raw` produces that form; `verify` accepts r||s
and DER and answers False, never an exception, on anything that does not
verify. `eim_signed_bytes` is the one place that knows which bytes
eimSignature, euiccSignEPR and euiccSignEPE cover.
"""

import argparse
import datetime
import hashlib
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID

from ipa_core import tlv

DEFAULT_EID = "89049032123451234512345678901235"

NAMES = ("ci", "eum", "euicc", "eim")
FILES = tuple(n + ext for n in NAMES for ext in (".crt", ".key"))

# SGP.22 id-rspRole OIDs (RSPDefinitions: id-rsp-cert-objects 1 = 2.23.146.1.2.1)
ROLE_OID = {
    "ci": "2.23.146.1.2.1.0",
    "euicc": "2.23.146.1.2.1.1",
    "eum": "2.23.146.1.2.1.2",
}

# SGP.22 eUICC certificates never expire (notAfter 9999-12-31 23:59:59Z).
_NOT_AFTER_FOREVER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)


# ---- loading ---------------------------------------------------------------


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def load_private_key(path):
    """An EC private key from a PEM (PKCS#8 or SEC1) or DER file."""
    data = _read(path)
    if b"-----BEGIN" in data:
        key = serialization.load_pem_private_key(data, password=None)
    else:
        key = serialization.load_der_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("%s: expected an EC private key, found %s" % (path, type(key).__name__))
    return key


def load_certificate(path):
    """An X.509 certificate from a PEM or DER file."""
    data = _read(path)
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def certificate_der(cert):
    """The DER bytes of a certificate object (what GetCerts and notifications carry)."""
    return cert.public_bytes(serialization.Encoding.DER)


def load_pki(folder):
    """Every file of the chain that exists in `folder`: {name: object}.

    Names are "ci_cert", "ci_key", "eum_cert", ... and "folder". Files that do
    not exist are left out; the caller decides what it needs.
    """
    out = {"folder": str(folder)}
    for name in NAMES:
        crt = os.path.join(folder, name + ".crt")
        key = os.path.join(folder, name + ".key")
        if os.path.exists(crt):
            out[name + "_cert"] = load_certificate(crt)
        if os.path.exists(key):
            out[name + "_key"] = load_private_key(key)
    return out


def eid_of(cert):
    """The EID in an eUICC certificate's subject serialNumber, or None."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return attrs[0].value if attrs else None


# ---- keys ------------------------------------------------------------------


def _public_key(obj):
    """A cryptography EC public key from a key, a certificate or bytes.

    Bytes may be an uncompressed P-256 point (65 bytes, 04 X Y), a DER
    SubjectPublicKeyInfo or a DER certificate.
    """
    if isinstance(obj, ec.EllipticCurvePublicKey):
        return obj
    if isinstance(obj, ec.EllipticCurvePrivateKey):
        return obj.public_key()
    if isinstance(obj, x509.Certificate):
        key = obj.public_key()
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        if len(data) == 65 and data[0] == 4:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
        try:
            key = serialization.load_der_public_key(data)
        except ValueError:
            key = x509.load_der_x509_certificate(data).public_key()
    else:
        raise TypeError("expected an EC key, a certificate or bytes, found %s" % type(obj).__name__)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("expected an EC public key, found %s" % type(key).__name__)
    return key


def public_key_bytes(key_or_cert):
    """The uncompressed EC point (65 bytes for P-256: 04 || X || Y)."""
    return _public_key(key_or_cert).public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def spki_der(key_or_cert):
    """The DER SubjectPublicKeyInfo of a key or certificate."""
    return _public_key(key_or_cert).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def ski(cert):
    """Subject key identifier: the extension's value, else SHA-1 of the key bits (RFC 5280 4.2.1.2)."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return hashlib.sha1(public_key_bytes(cert)).digest()


def aki(cert):
    """Authority key identifier of a certificate, or None."""
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


# ---- signatures ------------------------------------------------------------


def _hash_for(key):
    return hashes.SHA384() if key.curve.key_size > 256 else hashes.SHA256()


def _coord_len(key):
    return (key.curve.key_size + 7) // 8


def sign_raw(private_key, data):
    """ECDSA over `data`, TR-03111 raw r||s (64 bytes for P-256)."""
    der = private_key.sign(bytes(data), ec.ECDSA(_hash_for(private_key)))
    r, s = decode_dss_signature(der)
    n = _coord_len(private_key)
    return r.to_bytes(n, "big") + s.to_bytes(n, "big")


def raw_to_der(signature):
    """r||s -> DER ECDSA-Sig-Value."""
    half = len(signature) // 2
    r = int.from_bytes(signature[:half], "big")
    s = int.from_bytes(signature[half:], "big")
    return encode_dss_signature(r, s)


def verify(public_key_or_cert, data, signature):
    """True when `signature` (r||s or DER) is a valid ECDSA signature over `data`.

    Anything that does not verify (wrong key, truncated or garbage signature,
    unusable key) is False, never an exception.
    """
    try:
        key = _public_key(public_key_or_cert)
        sig = bytes(signature)
    except (TypeError, ValueError):
        return False
    candidates = []
    n = _coord_len(key)
    if len(sig) == 2 * n:
        candidates.append(raw_to_der(sig))
    if len(sig) > 2 and sig[0] == 0x30:
        candidates.append(sig)
    for der in candidates:
        try:
            key.verify(der, bytes(data), ec.ECDSA(_hash_for(key)))
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


def eim_signed_bytes(data_tlv, association_token, version="1.2"):
    """The bytes eimSignature / euiccSignEPR / euiccSignEPE are computed over.

    SGP.32 v1.1+ (2.11.1.2 as read by public implementations): the DER of the
    signed data object (euiccPackageSigned, euiccPackageResultDataSigned or
    euiccPackageErrorDataSigned) followed by the associationToken data object
    `84 <len> <INTEGER>` of the eIM Configuration Data, `84 01 00` when the eIM
    has no token. SGP.32 v1.0: the data object alone.
    """
    data = bytes(data_tlv)
    if str(version).startswith("1.0"):
        return data
    token = 0 if association_token is None else int(association_token)
    return data + tlv.encode(0x84, tlv.int_encode(token))


# ---- creating a test chain ---------------------------------------------------


def _new_key():
    return ec.generate_private_key(ec.SECP256R1())


def _name(*attrs):
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


def _build(subject, subject_key, issuer_name, issuer_key, issuer_cert, ca, path_len, role,
           not_after=None):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(not_after or now + datetime.timedelta(days=365 * 30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), False)
    )
    if issuer_cert is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier(ski(issuer_cert), None, None), False
        )
    else:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(subject_key.public_key()), False
        )
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=path_len), True)
        usage = dict(digital_signature=False, key_cert_sign=True, crl_sign=True)
    else:
        usage = dict(digital_signature=True, key_cert_sign=False, crl_sign=False)
    b = b.add_extension(
        x509.KeyUsage(content_commitment=False, key_encipherment=False, data_encipherment=False,
                      key_agreement=False, encipher_only=False, decipher_only=False, **usage),
        True,
    )
    if role in ROLE_OID:
        b = b.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(ROLE_OID[role]), None)]),
            True,
        )
    return b.sign(issuer_key, hashes.SHA256())


def write_file(path, data, private=False):
    """Write atomically (temp file, fsync, rename); keys get mode 0600."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def split_names(names):
    """Host names and IP addresses apart, for a subjectAltName."""
    dns, ips = [], []
    for n in names:
        try:
            ips.append(ipaddress.ip_address(n))
        except ValueError:
            dns.append(n)
    return dns, ips


def _cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def create_test_pki(folder, eid=DEFAULT_EID, overwrite=False):
    """Write a CI -> EUM -> eUICC chain and a CI-signed eIM certificate into `folder`.

    Returns {"ci.crt": path, "ci.key": path, ...} for all eight files.
    Existing certificate/key pairs are kept unless overwrite=True, and the
    missing ones are issued by the existing issuer (so a folder holding only a
    CI gets an EUM, an eUICC and an eIM under that CI). A certificate without
    its key (or the reverse) is a ValueError naming the file.
    """
    if not (isinstance(eid, str) and len(eid) == 32 and eid.isdigit()):
        raise ValueError("EID must be 32 decimal digits, found %r" % (eid,))
    os.makedirs(folder, exist_ok=True)
    paths = {f: os.path.join(folder, f) for f in FILES}
    have = {}
    for name in NAMES:
        c, k = paths[name + ".crt"], paths[name + ".key"]
        if overwrite:
            continue
        ec_, ek = os.path.exists(c), os.path.exists(k)
        if ec_ and ek:
            have[name] = (load_certificate(c), load_private_key(k))
        elif ec_ or ek:
            raise ValueError(
                "%s: found %s without %s; remove it or use overwrite=True"
                % (folder, os.path.basename(c if ec_ else k), os.path.basename(k if ec_ else c))
            )

    def issue(name, subject, issuer, ca, path_len, not_after=None):
        if name in have:
            return have[name]
        key = _new_key()
        if issuer is None:
            cert = _build(subject, key, subject, key, None, ca, path_len, name, not_after)
        else:
            icert, ikey = issuer
            cert = _build(subject, key, icert.subject, ikey, icert, ca, path_len, name, not_after)
        write_file(paths[name + ".key"], key_pem(key), private=True)
        write_file(paths[name + ".crt"], _cert_pem(cert))
        have[name] = (cert, key)
        return have[name]

    ci = issue("ci", _name((NameOID.COMMON_NAME, "ipa-iot Test CI"),
                           (NameOID.ORGANIZATION_NAME, "ipa-iot test PKI")), None, True, None)
    eum = issue("eum", _name((NameOID.COUNTRY_NAME, "DE"),
                             (NameOID.ORGANIZATION_NAME, "ipa-iot Test EUM"),
                             (NameOID.COMMON_NAME, "ipa-iot Test EUM")), ci, True, 0)
    issue("euicc", _name((NameOID.ORGANIZATION_NAME, "ipa-iot Test EUM"),
                         (NameOID.SERIAL_NUMBER, eid),
                         (NameOID.COMMON_NAME, "ipa-iot virtual eUICC")), eum, False, None,
          _NOT_AFTER_FOREVER)
    issue("eim", _name((NameOID.ORGANIZATION_NAME, "ipa-iot test PKI"),
                       (NameOID.COMMON_NAME, "ipa-iot Test eIM")), ci, False, None)
    return paths


def check_chain(folder):
    """Problems with the chain in `folder` as a list of sentences (empty when sound).

    eSIM-specific check (signatures and EID), not generic path validation:
    SGP.26 EUM certificates carry name constraints that generic verifiers
    reject for the eUICC certificate.
    """
    p = load_pki(folder)
    problems = []
    for name in ("eum", "euicc"):
        if name + "_cert" not in p:
            problems.append("%s.crt missing" % name)
    if "euicc_key" not in p:
        problems.append("euicc.key missing")
    if problems:
        return problems

    def signed_by(child, parent):
        return verify(parent, child.tbs_certificate_bytes, child.signature)

    if "ci_cert" in p and not signed_by(p["eum_cert"], p["ci_cert"]):
        problems.append("eum.crt is not signed by ci.crt")
    if not signed_by(p["euicc_cert"], p["eum_cert"]):
        problems.append("euicc.crt is not signed by eum.crt")
    if public_key_bytes(p["euicc_cert"]) != public_key_bytes(p["euicc_key"]):
        problems.append("euicc.key does not match euicc.crt")
    if "eim_cert" in p and "ci_cert" in p and not signed_by(p["eim_cert"], p["ci_cert"]):
        problems.append("eim.crt is not signed by ci.crt")
    if "eim_cert" in p and "eim_key" in p and public_key_bytes(p["eim_cert"]) != public_key_bytes(p["eim_key"]):
        problems.append("eim.key does not match eim.crt")
    if eid_of(p["euicc_cert"]) is None:
        problems.append("euicc.crt has no serialNumber (EID) in its subject")
    return problems


# ---- command line ------------------------------------------------------------


def pki_main(argv=None):
    """`ipa-sim pki create <folder> [--eid EID] [--overwrite]` and `ipa-sim pki show <folder>`."""
    ap = argparse.ArgumentParser(prog="ipa-sim pki", description="test PKI for the virtual eUICC and eIM")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create", help="create the missing CI/EUM/eUICC/eIM keys and certificates")
    c.add_argument("folder")
    c.add_argument("--eid", default=DEFAULT_EID, help="EID for the eUICC certificate (32 digits)")
    c.add_argument("--overwrite", action="store_true", help="replace existing files")
    s = sub.add_parser("show", help="print the chain in a folder and check its signatures")
    s.add_argument("folder")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "create":
            paths = create_test_pki(args.folder, eid=args.eid, overwrite=args.overwrite)
            for name in FILES:
                print(paths[name])
            return 0
        p = load_pki(args.folder)
        for name in NAMES:
            cert = p.get(name + "_cert")
            if cert is None:
                print("%-6s (no certificate)" % name)
                continue
            print("%-6s %s" % (name, cert.subject.rfc4514_string()))
            print("       SKI %s  key %s" % (ski(cert).hex().upper(),
                                             "present" if name + "_key" in p else "absent"))
        if "euicc_cert" in p:
            print("EID    %s" % eid_of(p["euicc_cert"]))
        problems = check_chain(args.folder)
        for line in problems:
            print("problem: " + line)
        return 1 if problems else 0
    except (OSError, ValueError) as e:
        print("ipa-sim pki: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(pki_main())
