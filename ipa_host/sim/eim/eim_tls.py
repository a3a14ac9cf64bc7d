"""The simulated eIM's own TLS identity: a small CA and a server certificate, made on first start.

    <folder>/tls/ca.crt  ca.key          "ipa-iot eIM simulator TLS CA" (P-256, 20 years)
    <folder>/tls/server.crt server.key   issued by that CA for localhost, 127.0.0.1, ::1
                                         and any extra names (P-256, 2 years)

Give the IPA `ca.crt` (or `server.crt`) as trustedPublicKeyDataTls
(SGP.32 EimConfigurationData [6] trustedCertificateTls: "either the
certificate of eIM ... or the certificate of the CA"). The server
certificate is reissued under the same CA when it is missing, expires
within a week, was not issued by ca.crt or does not cover a requested
name; the CA stays, so a trust anchor given to an IPA keeps working.
Certificates carry SKI/AKI, basicConstraints, keyUsage and (server)
extKeyUsage serverAuth so that strict verifiers accept them.
"""

import datetime
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ipa_host.sim import pki

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
SESSION_TICKETS = 1  # TLS 1.3 tickets per connection when the clients resume (the IPA keeps 1)
DAY = datetime.timedelta(days=1)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ipa-iot eIM simulator"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(ca):
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                         crl_sign=ca, encipher_only=False, decipher_only=False)


def _make_ca():
    key = ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    name = _name("ipa-iot eIM simulator TLS CA")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - DAY).not_valid_after(_now() + 365 * 20 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(True), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _make_server(ca_cert, ca_key, names):
    key = ec.generate_private_key(ec.SECP256R1())
    dns, ips = pki.split_names(names)
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(i) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(_name(dns[0] if dns else str(ips[0])))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - DAY).not_valid_after(_now() + 730 * DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def _covers(cert, names):
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    dns, ips = pki.split_names(names)
    have_dns = {d.lower() for d in san.get_values_for_type(x509.DNSName)}
    have_ips = set(san.get_values_for_type(x509.IPAddress))
    return all(d.lower() in have_dns for d in dns) and all(i in have_ips for i in ips)


def ensure_tls(folder, names=()):
    """Create or refresh the TLS files under `folder`/tls; return their paths and DERs.

    -> {"ca_cert": path, "server_cert": path, "server_key": path,
        "ca_der": bytes, "server_der": bytes}
    """
    d = os.path.join(folder, "tls")
    os.makedirs(d, exist_ok=True)
    paths = {n: os.path.join(d, n) for n in ("ca.crt", "ca.key", "server.crt", "server.key")}
    want = list(DEFAULT_NAMES) + [n for n in names if n and n not in DEFAULT_NAMES]
    if os.path.exists(paths["ca.crt"]) and os.path.exists(paths["ca.key"]):
        ca_cert = pki.load_certificate(paths["ca.crt"])
        ca_key = pki.load_private_key(paths["ca.key"])
        if pki.public_key_bytes(ca_cert) != pki.public_key_bytes(ca_key):
            raise ValueError("%s does not belong to %s" % (paths["ca.key"], paths["ca.crt"]))
    else:
        ca_cert, ca_key = _make_ca()
        pki.write_file(paths["ca.key"], pki.key_pem(ca_key), private=True)
        pki.write_file(paths["ca.crt"], ca_cert.public_bytes(serialization.Encoding.PEM))
    fresh = False
    if os.path.exists(paths["server.crt"]) and os.path.exists(paths["server.key"]):
        cert = pki.load_certificate(paths["server.crt"])
        key = pki.load_private_key(paths["server.key"])
        fresh = (pki.public_key_bytes(cert) == pki.public_key_bytes(key)
                 and cert.issuer == ca_cert.subject
                 and pki.verify(ca_cert, cert.tbs_certificate_bytes, cert.signature)
                 and _not_after(cert) > _now() + 7 * DAY
                 and _covers(cert, want))
    if not fresh:
        cert, key = _make_server(ca_cert, ca_key, want)
        pki.write_file(paths["server.key"], pki.key_pem(key), private=True)
        pki.write_file(paths["server.crt"], cert.public_bytes(serialization.Encoding.PEM))
    return {"ca_cert": paths["ca.crt"], "server_cert": paths["server.crt"],
            "server_key": paths["server.key"],
            "ca_der": ca_cert.public_bytes(serialization.Encoding.DER),
            "server_der": cert.public_bytes(serialization.Encoding.DER)}


def _not_after(cert):
    try:
        return cert.not_valid_after_utc
    except AttributeError:  # cryptography < 42
        return cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def server_context(cert_path, key_path, tickets=0):
    """The simulators' TLS server context (TLS 1.2+, ALPN http/1.1). `tickets`: TLS 1.3
    session tickets sent after each handshake (RFC 8446 4.6.1); 0 when the clients do not
    resume, so that nobody pays for tickets never used (OpenSSL's default is 2)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.num_tickets = tickets
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET  # no TLS 1.2 tickets either
    return ctx
