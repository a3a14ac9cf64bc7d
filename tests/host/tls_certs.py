"""Test PKI for TLS tests: a CA and server certificates (P-256, as GSMA RSP uses), made with `cryptography`.

    ca = make_ca()
    srv = make_cert(ca, dns=("eim.test",), ips=("127.0.0.1",))
    cert_path, key_path = srv.write(tmp_path, "eim")
    srv.cert_der, srv.spki_der, srv.point     # trust / pin material

Certificates carry SKI/AKI, basicConstraints, keyUsage and (leaf) serverAuth
so that strict verifiers (Python 3.13's VERIFY_X509_STRICT) accept them.
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class Issued:
    """A certificate and its private key, with the encodings tests need."""

    def __init__(self, cert, key):
        self.cert = cert
        self.key = key
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.key_pem = key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        pub = key.public_key()
        self.spki_der = pub.public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
        self.point = pub.public_bytes(serialization.Encoding.X962,
                                      serialization.PublicFormat.UncompressedPoint)

    def write(self, folder, name):
        """Write <name>.crt and <name>.key (PEM) into `folder`; return both paths."""
        cert_path = os.path.join(str(folder), name + ".crt")
        key_path = os.path.join(str(folder), name + ".key")
        with open(cert_path, "wb") as f:
            f.write(self.cert_pem)
        with open(key_path, "wb") as f:
            f.write(self.key_pem)
        return cert_path, key_path


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ipa-iot tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn="Test eIM TLS CA", not_before=None, not_after=None):
    """A self-signed CA certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    nb = not_before or _now() - DAY
    na = not_after or _now() + 365 * DAY
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(nb).not_valid_after(na)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(cert, key)


def make_cert(ca=None, dns=("eim.test",), ips=("127.0.0.1", "::1"), cn=None,
              not_before=None, not_after=None):
    """A TLS server certificate issued by `ca` (self-signed when `ca` is None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    nb = not_before or _now() - DAY
    na = not_after or _now() + 90 * DAY
    subject = _name(cn or (dns[0] if dns else "server"))
    issuer_name = ca.cert.subject if ca else subject
    signer = ca.key if ca else key
    issuer_pub = ca.key.public_key() if ca else key.public_key()
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    b = (x509.CertificateBuilder()
         .subject_name(subject).issuer_name(issuer_name)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(nb).not_valid_after(na)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                      key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=False, crl_sign=False,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                        critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_pub),
                        critical=False))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(b.sign(signer, hashes.SHA256()), key)
