"""The simulators' test PKI (ipa_host.sim.pki): chain, signatures, signed-bytes coverage."""

import datetime
import hashlib
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from ipa_host.sim import pki

EID = "89049032123451234512345678901235"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("pki"))
    return folder, pki.create_test_pki(folder)


def test_create_writes_eight_pem_files_forming_a_chain(chain):
    folder, paths = chain
    assert sorted(paths) == sorted(["ci.crt", "ci.key", "eum.crt", "eum.key", "euicc.crt",
                                    "euicc.key", "eim.crt", "eim.key"])
    for name, path in paths.items():
        assert os.path.dirname(path) == folder
        with open(path, "rb") as f:
            head = f.read(30)
        assert head.startswith(b"-----BEGIN "), name
    assert pki.check_chain(folder) == []
    p = pki.load_pki(folder)
    ci, eum, euicc, eim = p["ci_cert"], p["eum_cert"], p["euicc_cert"], p["eim_cert"]
    # CI self-signed, EUM under CI, eUICC under EUM, eIM under CI
    assert ci.issuer == ci.subject
    assert pki.verify(ci, ci.tbs_certificate_bytes, ci.signature)
    assert pki.verify(ci, eum.tbs_certificate_bytes, eum.signature)
    assert pki.verify(eum, euicc.tbs_certificate_bytes, euicc.signature)
    assert not pki.verify(ci, euicc.tbs_certificate_bytes, euicc.signature)
    assert pki.verify(ci, eim.tbs_certificate_bytes, eim.signature)
    assert pki.eid_of(euicc) == EID
    assert pki.aki(euicc) == pki.ski(eum)
    assert pki.aki(eum) == pki.ski(ci)
    for cert in (ci, eum, euicc, eim):
        assert isinstance(cert.public_key().curve, ec.SECP256R1)
    assert eum.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with pytest.raises(x509.ExtensionNotFound):
        euicc.extensions.get_extension_for_class(x509.BasicConstraints)
    policy = euicc.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert policy[0].policy_identifier.dotted_string == "2.23.146.1.2.1.1"  # id-rspRole-euicc


def test_create_keeps_existing_files_and_fills_in_missing_ones(tmp_path):
    folder = str(tmp_path)
    first = pki.create_test_pki(folder, eid="89049032123451234512345678900000")
    before = {n: open(p, "rb").read() for n, p in first.items()}
    pki.create_test_pki(folder)  # nothing overwritten, other EID ignored
    assert {n: open(p, "rb").read() for n, p in first.items()} == before
    os.remove(first["eim.crt"])
    os.remove(first["eim.key"])
    pki.create_test_pki(folder)
    after = {n: open(p, "rb").read() for n, p in first.items()}
    assert after["ci.crt"] == before["ci.crt"] and after["eim.crt"] != before["eim.crt"]
    assert pki.check_chain(folder) == []
    pki.create_test_pki(folder, overwrite=True)
    assert open(first["ci.crt"], "rb").read() != before["ci.crt"]
    assert pki.check_chain(folder) == []


def test_create_refuses_half_a_pair_and_a_bad_eid(tmp_path):
    paths = pki.create_test_pki(str(tmp_path))
    os.remove(paths["eum.key"])
    with pytest.raises(ValueError, match="eum.crt without eum.key"):
        pki.create_test_pki(str(tmp_path))
    with pytest.raises(ValueError, match="32 decimal digits"):
        pki.create_test_pki(str(tmp_path / "x"), eid="1234")


def test_sign_raw_is_r_s_and_verify_accepts_raw_and_der(chain):
    _, paths = chain
    key = pki.load_private_key(paths["euicc.key"])
    cert = pki.load_certificate(paths["euicc.crt"])
    sig = pki.sign_raw(key, b"signed data")
    assert len(sig) == 64
    assert pki.verify(cert, b"signed data", sig)
    der = pki.raw_to_der(sig)
    assert der[0] == 0x30
    r, s = decode_dss_signature(der)
    assert r.to_bytes(32, "big") + s.to_bytes(32, "big") == sig
    assert pki.verify(cert, b"signed data", der)
    # other forms of the same key
    assert pki.verify(pki.public_key_bytes(cert), b"signed data", sig)
    assert pki.verify(pki.spki_der(cert), b"signed data", sig)
    assert pki.verify(pki.certificate_der(cert), b"signed data", sig)
    assert pki.verify(key, b"signed data", sig)
    assert pki.verify(cert.public_key(), b"signed data", sig)


@pytest.mark.parametrize("bad", [b"", b"\x00" * 64, b"\x30\x02\x02\x00", b"\xff" * 64, b"\x30" * 70,
                                 b"x" * 63, b"x" * 65])
def test_verify_never_raises_on_garbage_signatures(chain, bad):
    _, paths = chain
    cert = pki.load_certificate(paths["euicc.crt"])
    assert pki.verify(cert, b"data", bad) is False


def test_verify_is_false_for_wrong_data_key_or_unusable_key(chain):
    _, paths = chain
    sig = pki.sign_raw(pki.load_private_key(paths["euicc.key"]), b"data")
    assert not pki.verify(pki.load_certificate(paths["euicc.crt"]), b"datA", sig)
    assert not pki.verify(pki.load_certificate(paths["eim.crt"]), b"data", sig)
    assert not pki.verify(b"\x04" + b"\x00" * 64, b"data", sig)  # not a curve point
    assert not pki.verify(b"not a key", b"data", sig)
    assert not pki.verify(None, b"data", sig)


def test_public_key_bytes_is_the_uncompressed_point(chain):
    _, paths = chain
    key = pki.load_private_key(paths["eim.key"])
    point = pki.public_key_bytes(pki.load_certificate(paths["eim.crt"]))
    assert len(point) == 65 and point[0] == 4
    assert point == pki.public_key_bytes(key) == pki.public_key_bytes(key.public_key())
    nums = key.public_key().public_numbers()
    assert point[1:33] == nums.x.to_bytes(32, "big") and point[33:] == nums.y.to_bytes(32, "big")


@pytest.mark.parametrize("token,tail", [(None, "840100"), (0, "840100"), (1, "840101"),
                                        (127, "84017F"), (128, "84020080"), (300, "8402012C"),
                                        (-1, "8401FF")])
def test_eim_signed_bytes_appends_the_association_token_object(token, tail):
    data = bytes.fromhex("3003800161")
    assert pki.eim_signed_bytes(data, token).hex().upper() == "3003800161" + tail
    assert pki.eim_signed_bytes(data, token, "1.1").hex().upper() == "3003800161" + tail
    assert pki.eim_signed_bytes(data, token, "1.0") == data


def test_ski_uses_the_extension_or_the_sha1_of_the_key(chain, tmp_path):
    _, paths = chain
    ci = pki.load_certificate(paths["ci.crt"])
    ext = ci.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert pki.ski(ci) == ext and len(ext) == 20
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no ski")])
    bare = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    assert pki.ski(bare) == hashlib.sha1(pki.public_key_bytes(bare)).digest()


def _sgp26_like_chain(folder):
    """A chain written the way the GSMA SGP.26 files come: DER certificates, SEC1 keys."""
    os.makedirs(folder, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, key, issuer, issuer_key, ca):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=9))
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
        return b.sign(issuer_key, hashes.SHA256())

    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("ci", "eum", "euicc")}
    ci_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "GSMA Test CI")])
    eum_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EUM Test")])
    eu_name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, EID),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Test eUICC")])
    certs = {"ci": cert(ci_name, keys["ci"], ci_name, keys["ci"], True)}
    certs["eum"] = cert(eum_name, keys["eum"], ci_name, keys["ci"], True)
    certs["euicc"] = cert(eu_name, keys["euicc"], eum_name, keys["eum"], False)
    for n in certs:
        with open(os.path.join(folder, n + ".crt"), "wb") as f:
            f.write(certs[n].public_bytes(serialization.Encoding.DER))
        with open(os.path.join(folder, n + ".key"), "wb") as f:
            f.write(keys[n].private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()))
    return certs


def test_an_existing_chain_loads_from_der_and_sec1_files(tmp_path):
    folder = str(tmp_path / "sgp26")
    certs = _sgp26_like_chain(folder)
    p = pki.load_pki(folder)
    assert pki.certificate_der(p["euicc_cert"]) == pki.certificate_der(certs["euicc"])
    assert pki.public_key_bytes(p["euicc_key"]) == pki.public_key_bytes(certs["euicc"])
    assert "eim_cert" not in p
    assert pki.check_chain(folder) == []
    # create_test_pki adds only the eIM, issued by the existing CI
    pki.create_test_pki(folder)
    assert pki.certificate_der(pki.load_certificate(os.path.join(folder, "euicc.crt"))) == \
        pki.certificate_der(certs["euicc"])
    assert pki.check_chain(folder) == []


def test_check_chain_names_what_is_wrong(tmp_path):
    a = pki.create_test_pki(str(tmp_path / "a"))
    b = pki.create_test_pki(str(tmp_path / "b"))
    os.replace(b["euicc.crt"], a["euicc.crt"])
    problems = pki.check_chain(str(tmp_path / "a"))
    assert "euicc.crt is not signed by eum.crt" in problems
    assert "euicc.key does not match euicc.crt" in problems


def test_pki_main_create_and_show(tmp_path, capsys):
    folder = str(tmp_path / "p")
    assert pki.pki_main(["create", folder, "--eid", EID]) == 0
    out = capsys.readouterr().out.split()
    assert os.path.join(folder, "euicc.key") in out
    assert pki.pki_main(["show", folder]) == 0
    out = capsys.readouterr().out
    assert "EID    " + EID in out and "problem" not in out
    os.remove(os.path.join(folder, "euicc.key"))
    assert pki.pki_main(["show", folder]) == 1
    assert "euicc.key missing" in capsys.readouterr().out
    assert pki.pki_main(["create", str(tmp_path / "q"), "--eid", "12"]) == 2
