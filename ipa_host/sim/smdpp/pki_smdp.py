"""SM-DP+ and SM-DS certificates under the test CI of pki.py (SGP.22 4.5.2): DPauth, DPpb and
TLS; DSauth and DS TLS for the SM-DS (roles=DS_NAMES, ipa_host.sim.smds).

    paths = create_smdp_pki("smdp/", "pki/")      # the CI comes from pki/ci.crt + ci.key
    p = load_smdp_pki("smdp/", "pki/")            # {"dpauth_cert", "dpauth_key", "dppb_cert", ...,
                                                  #  "ci_cert", "smdp_oid"}

Files in the SM-DP+ folder (PEM):

    dpauth.crt dpauth.key   CERT.DPauth.ECDSA  policy id-rspRole-dp-auth (2.23.146.1.2.1.4)
    dppb.crt   dppb.key     CERT.DPpb.ECDSA    policy id-rspRole-dp-pb   (2.23.146.1.2.1.5)
    dptls.crt  dptls.key    CERT.DP.TLS        policy id-rspRole-dp-tls  (2.23.146.1.2.1.3),
                            serverAuth, SAN for 127.0.0.1 / localhost (+ extra names)

DPauth and DPpb carry keyUsage digitalSignature and the SM-DP+ OID as
subjectAltName registeredID: that is the smdpOid the eUICC puts into
EuiccCancelSessionSigned and ProfileInstallationResultData. The test OID
is 2.999.10 (the SGP.26 test SM-DP+ uses an OID under 2.999).

    dsauth.crt dsauth.key   CERT.DSauth.ECDSA  policy id-rspRole-ds-auth (2.23.146.1.2.1.7)
    dstls.crt  dstls.key    CERT.DS.TLS        policy id-rspRole-ds-tls  (2.23.146.1.2.1.6)

with the SM-DS OID (test: DS_OID 2.999.20) in the same place.
"""

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ipa_host.sim import pki

DEFAULT_OID = "2.999.10"
DS_OID = "2.999.20"
DEFAULT_NAMES = ("127.0.0.1", "localhost")
ROLE_OID = {"dptls": "2.23.146.1.2.1.3", "dpauth": "2.23.146.1.2.1.4", "dppb": "2.23.146.1.2.1.5",
            "dstls": "2.23.146.1.2.1.6", "dsauth": "2.23.146.1.2.1.7"}
NAMES = ("dpauth", "dppb", "dptls")
DS_NAMES = ("dsauth", "dstls")
_CN = {"dpauth": "SM-DP+ auth", "dppb": "SM-DP+ pb", "dptls": "SM-DP+ TLS", "dsauth": "SM-DS auth",
       "dstls": "SM-DS TLS"}


def _issue(role, ci_cert, ci_key, smdp_oid, names):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    tls = role.endswith("tls")
    org = "ipa-iot test " + _CN[role].split()[0]
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                                  x509.NameAttribute(NameOID.COMMON_NAME,
                                                     "ipa-iot test " + _CN[role])]))
         .issuer_name(ci_cert.subject)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=365 * (2 if tls else 20)))
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
         .add_extension(x509.AuthorityKeyIdentifier(pki.ski(ci_cert), None, None), False)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False, decipher_only=False), True)
         .add_extension(x509.CertificatePolicies([x509.PolicyInformation(
             x509.ObjectIdentifier(ROLE_OID[role]), None)]), not tls))
    alt = [x509.RegisteredID(x509.ObjectIdentifier(smdp_oid))]
    if tls:
        dns, ips = pki.split_names(names)
        alt = [x509.DNSName(d) for d in dns] + [x509.IPAddress(i) for i in ips] + alt
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    b = b.add_extension(x509.SubjectAlternativeName(alt), False)
    return b.sign(ci_key, hashes.SHA256()), key


def smdp_oid_of(cert):
    """The registeredID in a certificate's subjectAltName (the SM-DP+ OID), or None."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    ids = san.get_values_for_type(x509.RegisteredID)
    return ids[0].dotted_string if ids else None


def create_smdp_pki(folder, pki_dir, smdp_oid=DEFAULT_OID, names=(), overwrite=False,
                    roles=NAMES):
    """Write the missing SM-DP+ certificates (or those of `roles`: DS_NAMES for an SM-DS)
    into `folder`, issued by pki_dir's CI.

    Returns {"dpauth.crt": path, "dpauth.key": path, ...}. A TLS certificate
    that does not cover a requested name is reissued.
    """
    p = pki.load_pki(pki_dir)
    if "ci_cert" not in p or "ci_key" not in p:
        raise ValueError("%s: expected ci.crt and ci.key (run `ipa-sim pki create %s`)" % (pki_dir, pki_dir))
    os.makedirs(folder, exist_ok=True)
    want = list(DEFAULT_NAMES) + [n for n in names if n not in DEFAULT_NAMES]
    paths = {}
    for role in roles:
        crt, key = os.path.join(folder, role + ".crt"), os.path.join(folder, role + ".key")
        paths[role + ".crt"], paths[role + ".key"] = crt, key
        if not overwrite and os.path.exists(crt) and os.path.exists(key):
            cert = pki.load_certificate(crt)
            ok = (cert.issuer == p["ci_cert"].subject
                  and pki.verify(p["ci_cert"], cert.tbs_certificate_bytes, cert.signature)
                  and smdp_oid_of(cert) == smdp_oid)
            if ok and role.endswith("tls"):
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                dns, ips = pki.split_names(want)
                ok = (all(d in san.get_values_for_type(x509.DNSName) for d in dns)
                      and all(i in san.get_values_for_type(x509.IPAddress) for i in ips))
            if ok:
                continue
        cert, k = _issue(role, p["ci_cert"], p["ci_key"], smdp_oid, want)
        pki.write_file(key, pki.key_pem(k), private=True)
        pki.write_file(crt, pki._cert_pem(cert))
    return paths


def load_smdp_pki(folder, pki_dir, roles=NAMES):
    """{"dpauth_cert", "dpauth_key", "dppb_cert", "dppb_key", "dptls_cert", "dptls_key",
    "ci_cert", "smdp_oid", "folder", paths "<role>_crt_path"/"<role>_key_path"} (for `roles`;
    "smdp_oid" is the OID of the first role's certificate)."""
    out = {"folder": str(folder)}
    ci = pki.load_pki(pki_dir)
    if "ci_cert" not in ci:
        raise ValueError("%s: expected ci.crt" % pki_dir)
    out["ci_cert"] = ci["ci_cert"]
    for role in roles:
        crt, key = os.path.join(folder, role + ".crt"), os.path.join(folder, role + ".key")
        if not (os.path.exists(crt) and os.path.exists(key)):
            raise ValueError("%s: expected %s.crt and %s.key (create_smdp_pki makes them)" % (folder, role, role))
        out[role + "_cert"] = pki.load_certificate(crt)
        out[role + "_key"] = pki.load_private_key(key)
        out[role + "_crt_path"], out[role + "_key_path"] = crt, key
    out["smdp_oid"] = smdp_oid_of(out[roles[0] + "_cert"])
    return out
