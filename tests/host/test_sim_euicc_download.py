"""Profile download on the virtual eUICC (ipa_host.sim.euicc.euicc_download), at STORE DATA level.

The SM-DP+ side is played here by hand: ES10 requests are built from the
RSPDefinitions module (AUTOMATIC TAGS applied by hand) and signed with the
DPauth / DPpb keys of pki_smdp; the bound profile package is protected with
bsp.BspSender and sent in the segments an IPA sends (SGP.22 5.7.6).
"""

import datetime
import hashlib
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from euicc_fixtures import ICCID_1, close, es10, make_euicc, open_isdr, reopen, store_data
from ipa_core import tlv
from ipa_host.sim import bsp, pki
from ipa_host.sim.smdpp import pki_smdp
from ipa_host.sim.euicc import euicc_profiles
from ipa_host.sim.euicc.euicc_download import hash_cc

H = bytes.fromhex
SMDP_ADDRESS = "smdp.example.com"
NEW_ICCID = "8949449999999990101"
TXID = H("0123456789ABCDEF0123456789ABCDEF")


def test_a_card_kept_powered_keeps_its_session_across_processes(tmp_path, card, dp):
    """With ram_path (the home eUICC of `ipa --card sim`), a new process finds the session a
    killed one left open, as a powered eUICC keeps it: it cancels it, signed; after reset()
    (a power cycle) the session is gone."""
    from ipa_host.sim.euicc.euicc import VirtualEuicc

    ram = str(tmp_path / "euicc-ram.json")
    powered = VirtualEuicc(card.pki["folder"], state_path=card.state_path, ram_path=ram)
    ok = authenticate(powered, dp)
    prepare(powered, dp, ok)
    again = VirtualEuicc(card.pki["folder"], state_path=card.state_path, ram_path=ram)
    assert again.download["txid"] == TXID and again.download["stage"] == "prepared"
    assert again.download["otsk"] is not None  # one-time key kept, as a powered card keeps it
    r = call(again, H("BF4115") + H("8010") + TXID + H("81017F"))
    signed, sig = r.need(0xA0).children()
    assert signed.need(0x80).value == TXID and signed.need(0x82).as_int() == 127
    assert pki.verify(card.pki["euicc_cert"], signed.raw, sig.value)
    assert not os.path.exists(ram)  # nothing left in RAM: no file
    # a power cycle in between: the next process finds nothing to cancel
    authenticate(powered, dp)
    assert os.path.exists(ram)
    VirtualEuicc(card.pki["folder"], state_path=card.state_path, ram_path=ram).reset()
    after = VirtualEuicc(card.pki["folder"], state_path=card.state_path, ram_path=ram)
    assert after.download is None
    assert call(after, H("BF4115") + H("8010") + TXID + H("81017F")).raw == H("BF4103810105")


def test_ipa_sim_euicc_reset_power_cycles_the_home_euicc(tmp_path, capsys):
    from ipa_host.sim.euicc.euicc import euicc_main
    from ipa_host.sim.home import open_home_euicc, ram_path

    home = str(tmp_path / "home")
    card = open_home_euicc(home)
    card.download = {"stage": "authenticated", "txid": TXID, "address": "dp", "ci_pkid": b"1",
                     "smdp_oid": "2.999.10", "signature1": b"s"}
    card._save_ram()
    assert open_home_euicc(home).download["txid"] == TXID
    assert euicc_main(["reset", "--home", home]) == 0
    assert "download session %s lost" % TXID.hex().upper() in capsys.readouterr().out
    assert open_home_euicc(home).download is None and not os.path.exists(ram_path(home))
    assert euicc_main(["reset", "--home", str(tmp_path / "none")]) == 2
    assert "no virtual eUICC" in capsys.readouterr().err


# ---- the SM-DP+ side, by hand ------------------------------------------------------------


@pytest.fixture
def card(tmp_path):
    return make_euicc(tmp_path)


@pytest.fixture
def dp(tmp_path, card):
    pki_smdp.create_smdp_pki(str(tmp_path / "smdp"), card.pki["folder"])
    return pki_smdp.load_smdp_pki(str(tmp_path / "smdp"), card.pki["folder"])


def call(card, request, expect_sw=0x9000):
    return tlv.decode(es10(card, request, expect_sw))


def challenge(card):
    return call(card, H("BF2E00")).need(0x80).value


def ctx_params1(matching_id="MATCH-1"):
    """ctxParamsForCommonAuthentication [0] {80 matchingId, A1 deviceInfo {80 tac, A1 capabilities}}."""
    device = tlv.encode(0xA1, tlv.encode(0x80, H("35290611")) + tlv.encode(0xA1, tlv.encode(0x85, H("0F0000"))))
    return tlv.encode(0xA0, tlv.encode(0x80, matching_id.encode()) + device)


def server_signed1(euicc_challenge, txid=TXID, address=SMDP_ADDRESS, server_challenge=b"S" * 16):
    return tlv.encode(0x30, [tlv.encode(0x80, txid), tlv.encode(0x81, euicc_challenge),
                             tlv.encode(0x83, address.encode()), tlv.encode(0x84, server_challenge)])


def auth_request(card, dp, signed1, key=None, cert=None, ci_pkid=None, ctx=None):
    sig = pki.sign_raw(key or dp["dpauth_key"], signed1)
    return tlv.encode(0xBF38, [signed1, tlv.encode(0x5F37, sig),
                               tlv.encode(0x04, ci_pkid or pki.ski(card.pki["ci_cert"])),
                               pki.certificate_der(cert or dp["dpauth_cert"]), ctx or ctx_params1()])


def authenticate(card, dp, txid=TXID):
    """GetEuiccChallenge + AuthenticateServer; returns the authenticateResponseOk TLV."""
    r = call(card, auth_request(card, dp, server_signed1(challenge(card), txid)))
    ok = r.find(0xA0)
    assert ok is not None, r.raw.hex()
    return ok


def error_code(r, alt=0xA1):
    e = r.need(alt)
    return e.need(0x02).as_int()


def prepare_request(dp, signature1, txid=TXID, cc_required=False, hash_cc=None, key=None, cert=None,
                    signature1_for_sig=None):
    signed2 = tlv.encode(0x30, tlv.encode(0x80, txid) + tlv.encode(0x01, b"\xff" if cc_required else b"\x00"))
    sig2 = pki.sign_raw(key or dp["dppb_key"],
                        signed2 + tlv.encode(0x5F37, signature1_for_sig or signature1))
    return tlv.enc(0xBF21, signed2, tlv.encode(0x5F37, sig2),
                   tlv.encode(0x04, hash_cc) if hash_cc is not None else None,
                   pki.certificate_der(cert or dp["dppb_cert"])), tlv.encode(0x5F37, sig2)


def prepare(card, dp, ok, **kw):
    """PrepareDownload after authenticate(); returns (euiccOtpk, the A0 TLV)."""
    req, _ = prepare_request(dp, ok.need(0x5F37).value, **kw)
    r = call(card, req).need(0xA0)
    return r.need(0x30).need(0x5F49).value, r


def metadata(iccid=NEW_ICCID, name="Downloaded", provider="Test Operator", cls=2):
    """StoreMetadataRequest BF25 {5A, 91, 92, 95, B6 {30 {80 events, 81 address}}}."""
    notif = tlv.encode(0xB6, tlv.encode(0x30, tlv.encode(0x80, tlv.bits_encode(
        ["notificationEnable", "notificationDisable", "notificationDelete"],
        ("notificationInstall", "notificationEnable", "notificationDisable", "notificationDelete")))
        + tlv.encode(0x81, b"notify.example.com")))
    return tlv.encode(0xBF25, [tlv.encode(0x5A, tlv.bcd_unswap(iccid + "F" * (20 - len(iccid)))),
                               tlv.encode(0x91, provider.encode()), tlv.encode(0x92, name.encode()),
                               tlv.encode(0x95, tlv.int_encode(cls)), notif])


def build_bpp(card, dp, euicc_otpk, txid=TXID, meta=None, profile=b"\x30\x03\x80\x01\x00" * 10,
              ppk=False, sign_key=None, host_id=b"host-id-1"):
    """The BPP as the list of STORE DATA segments an IPA sends (checklist, SGP.22 5.7.6)."""
    eph = ec.generate_private_key(ec.SECP256R1())
    smdp_otpk = pki.public_key_bytes(eph)
    shs = bsp.ecka_shared_secret(eph, euicc_otpk)
    mcv, s_enc, s_mac = bsp.derive_session_keys(shs, host_id, card.eid)
    tx = bsp.BspSender(s_enc, s_mac, mcv)
    isc = bsp.build_initialise_secure_channel(
        txid, host_id, smdp_otpk, euicc_otpk, lambda d: pki.sign_raw(sign_key or dp["dppb_key"], d))
    a0 = tlv.encode(0xA0, tx.wrap_all(0x87, tlv.encode(0xBF24, b"")))
    s88 = tx.wrap_all(0x88, meta if meta is not None else metadata(), encrypt=False)
    groups = [a0, tlv.header(0xA1, sum(len(x) for x in s88))] + s88
    if ppk:
        keys = (os.urandom(16), os.urandom(16), os.urandom(16))
        groups.append(tlv.encode(0xA2, tx.wrap_all(0x87, bsp.replace_session_keys_request(*keys))))
        tx = bsp.BspSender(keys[0], keys[1], keys[2])
    s86 = tx.wrap_all(0x86, profile)
    groups += [tlv.header(0xA3, sum(len(x) for x in s86))] + s86
    total = len(isc) + sum(len(g) for g in groups)
    return [tlv.header(0xBF36, total) + isc] + groups


def send_bpp(card, segments):
    """Each segment its own STORE DATA sequence; returns [(data, sw), ...] up to the first data."""
    ch = open_isdr(card)
    out = []
    try:
        for seg in segments:
            data, sw = store_data(card, ch, seg)
            out.append((data, sw))
            if data or sw != 0x9000:
                break
    finally:
        close(card, ch)
    return out


def pir_of(answers):
    data, sw = answers[-1]
    assert sw == 0x9000 and data, answers
    pir = tlv.decode(data)
    assert pir.tag == 0xBF37 and [c.tag for c in pir] == [0xBF27, 0x5F37]
    return pir


def pir_signature_ok(card, pir):
    return pki.verify(card.pki["euicc_cert"], pir.need(0xBF27).raw, pir.need(0x5F37).value)


def download(card, dp, **kw):
    ok = authenticate(card, dp)
    otpk, _ = prepare(card, dp, ok)
    return send_bpp(card, build_bpp(card, dp, otpk, **kw))


def other_ci_cert(subject_key, oid="2.999.10", role="2.23.146.1.2.1.4", with_san=True, issuer_key=None):
    """A DPauth-like certificate; issued by a fresh CI unless issuer_key is given."""
    issuer_key = issuer_key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue")]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ipa-iot Test CI")]))
         .public_key(subject_key.public_key()).serial_number(7)
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=9))
         .add_extension(x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(role), None)]),
                        True))
    if with_san:
        b = b.add_extension(x509.SubjectAlternativeName([x509.RegisteredID(x509.ObjectIdentifier(oid))]), False)
    return b.sign(issuer_key, hashes.SHA256())


# ---- GetEuiccChallenge / AuthenticateServer ---------------------------------------------------


def test_authenticate_server_signs_euicc_signed1(card, dp):
    ctx = ctx_params1("AC-TOKEN")
    ch = challenge(card)
    r = call(card, auth_request(card, dp, server_signed1(ch), ctx=ctx))
    assert r.tag == 0xBF38
    ok = r.need(0xA0)
    assert [c.tag for c in ok] == [0x30, 0x5F37, 0x30, 0x30]
    signed1, sig, euicc_cert, eum_cert = ok.children()
    assert [c.tag for c in signed1] == [0x80, 0x83, 0x84, 0xBF22, 0xA0]
    assert signed1.need(0x80).value == TXID
    assert signed1.need(0x83).as_str() == SMDP_ADDRESS
    assert signed1.need(0x84).value == b"S" * 16
    assert signed1.need(0xA0).raw == ctx  # ctxParams1 byte for byte
    assert signed1.need(0xBF22).find(0xB4) is not None  # SGP32-EUICCInfo2 (iotSpecificInfo)
    assert len(sig.value) == 64
    assert pki.verify(card.pki["euicc_cert"], signed1.raw, sig.value)
    assert euicc_cert.raw == card.euicc_cert_der and eum_cert.raw == card.eum_cert_der
    assert card.download["stage"] == "authenticated"


def test_authenticate_server_uses_up_the_challenge(card, dp):
    req = auth_request(card, dp, server_signed1(challenge(card)))
    assert call(card, req).find(0xA0) is not None
    r = call(card, req)  # replayed: no challenge any more
    assert r.need(0xA1).need(0x80).value == TXID and error_code(r) == 4  # noSessionContext


def test_authenticate_server_without_challenge(card, dp):
    assert error_code(call(card, auth_request(card, dp, server_signed1(b"C" * 16)))) == 4


def test_authenticate_server_wrong_challenge(card, dp):
    ch = challenge(card)
    wrong = bytes(b ^ 1 for b in ch)
    assert error_code(call(card, auth_request(card, dp, server_signed1(wrong)))) == 6  # euiccChallengeMismatch
    assert card.download is None


def test_authenticate_server_bad_signature(card, dp):
    signed1 = server_signed1(challenge(card))
    req = auth_request(card, dp, signed1, key=dp["dppb_key"])  # signed with the wrong key
    assert error_code(call(card, req)) == 2  # invalidSignature


def test_authenticate_server_unknown_ci(card, dp):
    req = auth_request(card, dp, server_signed1(challenge(card)), ci_pkid=b"\x11" * 20)
    assert error_code(call(card, req)) == 7  # ciPKUnknown


def test_authenticate_server_certificate_not_from_the_ci(card, dp):
    key = ec.generate_private_key(ec.SECP256R1())
    req = auth_request(card, dp, server_signed1(challenge(card)), key=key, cert=other_ci_cert(key))
    assert error_code(call(card, req)) == 1  # invalidCertificate


def test_authenticate_server_certificate_roles_and_oid(card, dp):
    # DPpb is not an authentication certificate
    req = auth_request(card, dp, server_signed1(challenge(card)), key=dp["dppb_key"], cert=dp["dppb_cert"])
    assert error_code(call(card, req)) == 1
    # signed by the real CI but without the SM-DP+ OID in subjectAltName
    ci_key = pki.load_private_key(os.path.join(card.pki["folder"], "ci.key"))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = other_ci_cert(key, with_san=False, issuer_key=ci_key)
    req = auth_request(card, dp, server_signed1(challenge(card)), key=key, cert=cert)
    assert error_code(call(card, req)) == 5  # invalidOid


def test_authenticate_server_unsupported_curve(card, dp):
    ci_key = pki.load_private_key(os.path.join(card.pki["folder"], "ci.key"))
    key = ec.generate_private_key(ec.SECP384R1())
    cert = other_ci_cert(key, issuer_key=ci_key)
    req = auth_request(card, dp, server_signed1(challenge(card)), key=key, cert=cert)
    assert error_code(call(card, req)) == 3  # unsupportedCurve


def test_authenticate_server_malformed(card, dp):
    es10(card, H("BF3803800101"), expect_sw=0x6A80)


# ---- PrepareDownload ------------------------------------------------------------------------


def test_prepare_download_signs_euicc_signed2(card, dp):
    ok = authenticate(card, dp)
    req, sig2_do = prepare_request(dp, ok.need(0x5F37).value)
    r = call(card, req)
    assert r.tag == 0xBF21
    a0 = r.need(0xA0)
    signed2, sig = a0.children()
    assert [c.tag for c in signed2] == [0x80, 0x5F49]
    assert signed2.need(0x80).value == TXID
    otpk = signed2.need(0x5F49).value
    assert len(otpk) == 65 and otpk[0] == 4
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), otpk)  # a point on P-256
    # euiccSignature2 covers euiccSigned2 followed by the smdpSignature2 data object
    assert sig.tag == 0x5F37 and len(sig.value) == 64
    assert pki.verify(card.pki["euicc_cert"], signed2.raw + sig2_do, sig.value)
    assert not pki.verify(card.pki["euicc_cert"], signed2.raw, sig.value)


def test_prepare_download_confirmation_code(card, dp):
    ok = authenticate(card, dp)
    good = hashlib.sha256(hashlib.sha256(b"1234").digest() + TXID).digest()
    _, a0 = prepare(card, dp, ok, cc_required=True, hash_cc=good)
    signed2 = a0.need(0x30)
    assert [c.tag for c in signed2] == [0x80, 0x5F49, 0x04]
    # the eUICC signs the hash the IPA computed; the SM-DP+ compares it with its own code
    assert signed2.need(0x04).value == good
    wrong = hashlib.sha256(hashlib.sha256(b"9999").digest() + TXID).digest()
    assert signed2.need(0x04).value != wrong
    assert hash_cc("1234", TXID) == good


def test_prepare_download_cc_required_but_missing(card, dp):
    ok = authenticate(card, dp)
    req, _ = prepare_request(dp, ok.need(0x5F37).value, cc_required=True)
    r = call(card, req)
    assert error_code(r) == 127


def test_prepare_download_without_session(card, dp):
    req, _ = prepare_request(dp, b"\x00" * 64)
    r = call(card, req)
    assert r.need(0xA1).need(0x80).value == TXID and error_code(r) == 4  # noSessionContext


def test_prepare_download_bad_signature(card, dp):
    ok = authenticate(card, dp)
    req, _ = prepare_request(dp, ok.need(0x5F37).value, signature1_for_sig=b"\x01" * 64)
    assert error_code(call(card, req)) == 2
    req, _ = prepare_request(dp, ok.need(0x5F37).value, key=dp["dpauth_key"])
    assert error_code(call(card, req)) == 2
    # the session survives a refused request
    otpk, _ = prepare(card, dp, ok)
    assert len(otpk) == 65


def test_prepare_download_transaction_mismatch(card, dp):
    ok = authenticate(card, dp)
    req, _ = prepare_request(dp, ok.need(0x5F37).value, txid=H("AA" * 16))
    r = call(card, req)
    assert r.need(0xA1).need(0x80).value == H("AA" * 16) and error_code(r) == 5  # invalidTransactionId


def test_prepare_download_wrong_certificates(card, dp):
    ok = authenticate(card, dp)
    sig1 = ok.need(0x5F37).value
    req, _ = prepare_request(dp, sig1, key=dp["dpauth_key"], cert=dp["dpauth_cert"])  # DPauth as DPpb
    assert error_code(call(card, req)) == 1
    key = ec.generate_private_key(ec.SECP256R1())
    req, _ = prepare_request(dp, sig1, key=key, cert=other_ci_cert(key, role="2.23.146.1.2.1.5"))
    assert error_code(call(card, req)) == 1


# ---- LoadBoundProfilePackage ----------------------------------------------------------------


def test_load_bpp_installs_the_profile(card, dp):
    ok = authenticate(card, dp)
    otpk, _ = prepare(card, dp, ok)
    segments = build_bpp(card, dp, otpk)
    answers = send_bpp(card, segments)
    assert len(answers) == len(segments)
    assert all(a == (b"", 0x9000) for a in answers[:-1])
    pir = pir_of(answers)
    data = pir.need(0xBF27)
    assert [c.tag for c in data] == [0x80, 0xBF2F, 0x06, 0xA2]
    assert data.need(0x80).value == TXID
    meta = data.need(0xBF2F)
    seq = meta.need(0x80).as_int()
    assert meta.need(0x81).as_bits(("install",)) == ["install"]
    assert meta.need(0x0C).as_str() == SMDP_ADDRESS
    assert tlv.bcd_swap(meta.need(0x5A).value).rstrip("F") == NEW_ICCID
    assert data.need(0x06).as_oid() == dp["smdp_oid"] == "2.999.10"
    success = data.need(0xA2).need(0xA0)
    p = card.state.find_profile(NEW_ICCID)
    assert success.need(0x4F).value.hex().upper() == p["isdp_aid"].upper()
    assert success.need(0x04).value == H("3007A0053003800100")
    assert pir_signature_ok(card, pir)
    assert p["state"] == "disabled" and p["name"] == "Downloaded" and p["provider"] == "Test Operator"
    assert p["class"] == "operational" and p["notification_addresses"] == {
        "enable": "notify.example.com", "disable": "notify.example.com",
        "delete": "notify.example.com"}  # notificationConfigurationInfo: no install entry
    assert card.download is None

    # the PIR is a pending notification until removed, in ListNotification and RetrieveNotificationsList
    listed = call(card, H("BF2800")).need(0xA0).children()
    assert [m.need(0x80).as_int() for m in listed][-1] == seq
    pending = call(card, H("BF2B00")).need(0xA0).children()
    assert pending[-1].raw == pir.raw
    assert call(card, H("BF2B05A003") + H("8001") + bytes((seq,))).need(0xA0).children()[0].raw == pir.raw
    # GetProfilesInfo shows it, disabled
    info = call(card, tlv.encode(0xBF2D, tlv.encode(0xA0, tlv.encode(0x5A, tlv.bcd_unswap(NEW_ICCID + "F")))))
    (e3,) = info.need(0xA0).children()
    assert e3.need(0x9F70).as_int() == 0 and e3.need(0x92).as_str() == "Downloaded"
    # committed: a new process sees profile and PIR
    again = reopen(card)
    assert again.state.find_profile(NEW_ICCID) is not None
    assert [n["seq"] for n in again.state.pending()][-1] == seq
    assert call(again, tlv.encode(0xBF30, tlv.encode(0x80, tlv.int_encode(seq)))).need(0x80).as_int() == 0
    assert seq not in [n["seq"] for n in again.state.pending()]


def test_load_bpp_with_replace_session_keys_and_many_segments(card, dp):
    profile = bytes(range(256)) * 12  # several '86' segments
    answers = download(card, dp, ppk=True, profile=profile)
    assert len(answers) > 8
    pir = pir_of(answers)
    assert pir.path(0xBF27, 0xA2, 0xA0) is not None
    assert card.state.find_profile(NEW_ICCID) is not None


@pytest.mark.parametrize("cut", ["whole", "header-apart"])
def test_load_bpp_other_cuts(card, dp, cut):
    """One STORE DATA sequence for the whole BPP, or the BF36 header apart from BF23."""
    ok = authenticate(card, dp)
    otpk, _ = prepare(card, dp, ok)
    segs = build_bpp(card, dp, otpk)
    if cut == "whole":
        segs = [b"".join(segs)]
    else:
        head = tlv.decode(segs[0][:0] + segs[0][segs[0].index(b"\xbf\x23", 2):]).raw
        segs = [segs[0][:len(segs[0]) - len(head)], head] + segs[1:]
    answers = send_bpp(card, segs)
    assert len(answers) == len(segs)
    assert pir_of(answers).path(0xBF27, 0xA2, 0xA0) is not None


def test_load_bpp_immediate_enable_uses_the_download(card, dp):
    pir_of(download(card, dp))
    assert card.state.data["last_installed"] == NEW_ICCID


def _error_of(pir):
    err = pir.path(0xBF27, 0xA2, 0xA1)
    assert err is not None, pir.raw.hex()
    return err.need(0x80).as_int(), err.need(0x81).as_int()


def _tamper(seg, at=-3):
    b = bytearray(seg)
    b[at] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize("where,expected", [
    ("86", (5, 8)),      # loadProfileElements, scp03tSecurityError
    ("88", (2, 8)),      # storeMetadata
    ("87", (1, 8)),      # configureISDP
])
def test_load_bpp_tampered_segment_answers_early(card, dp, where, expected):
    ok = authenticate(card, dp)
    otpk, _ = prepare(card, dp, ok)
    segs = build_bpp(card, dp, otpk)
    idx = next(i for i, s in enumerate(segs) if s[0] == int(where, 16) or (where == "87" and s[0] == 0xA0))
    segs[idx] = _tamper(segs[idx])
    before = len(card.state.pending())
    answers = send_bpp(card, segs)
    assert len(answers) == idx + 1  # stopped right there
    pir = pir_of(answers)
    assert _error_of(pir) == expected
    assert pir_signature_ok(card, pir)
    assert card.state.find_profile(NEW_ICCID) is None
    assert len(card.state.pending()) == before + 1  # the error PIR is pending too
    assert card.download is None
    # what follows is no longer part of a download
    ch = open_isdr(card)
    try:
        _, sw = store_data(card, ch, segs[-1])
    finally:
        close(card, ch)
    assert sw != 0x9000


def test_load_bpp_bad_smdp_sign(card, dp):
    ok = authenticate(card, dp)
    otpk, _ = prepare(card, dp, ok)
    segs = build_bpp(card, dp, otpk, sign_key=dp["dpauth_key"])
    answers = send_bpp(card, segs)
    assert len(answers) == 1
    assert _error_of(pir_of(answers)) == (0, 2)  # initialiseSecureChannel, invalidSignature


def test_load_bpp_transaction_mismatch(card, dp):
    ok = authenticate(card, dp)
    otpk, _ = prepare(card, dp, ok)
    answers = send_bpp(card, build_bpp(card, dp, otpk, txid=H("BB" * 16)))
    pir = pir_of(answers)
    assert _error_of(pir) == (0, 3)  # invalidTransactionId
    assert pir.path(0xBF27, 0x80).value == TXID


def test_load_bpp_iccid_exists(card, dp):
    answers = download(card, dp, meta=metadata(iccid=ICCID_1))
    pir = pir_of(answers)
    assert _error_of(pir) == (2, 9)  # installFailedDueToIccidAlreadyExistsOnEuicc
    assert tlv.bcd_swap(pir.path(0xBF27, 0xBF2F, 0x5A).value).rstrip("F") == ICCID_1


def test_load_bpp_without_prepare_download(card, dp):
    authenticate(card, dp)
    ch = open_isdr(card)
    try:
        _, sw = store_data(card, ch, tlv.header(0xBF36, 10) + H("BF2300"))
    finally:
        close(card, ch)
    assert sw == 0x6985


# ---- CancelSession ---------------------------------------------------------------------------


def test_cancel_session_signs_and_ends_the_session(card, dp):
    ok = authenticate(card, dp)
    r = call(card, H("BF4115") + H("8010") + TXID + H("810101"))
    a0 = r.need(0xA0)
    signed, sig = a0.children()
    assert [c.tag for c in signed] == [0x80, 0x81, 0x82]
    assert signed.need(0x80).value == TXID
    assert signed.need(0x81).as_oid() == "2.999.10"
    assert signed.need(0x82).as_int() == 1  # postponed
    assert pki.verify(card.pki["euicc_cert"], signed.raw, sig.value)
    assert card.download is None
    req, _ = prepare_request(dp, ok.need(0x5F37).value)
    assert error_code(call(card, req)) == 4  # the session is gone


def test_cancel_session_other_transaction(card, dp):
    authenticate(card, dp)
    assert call(card, H("BF4107") + H("8002AAAA") + H("810100")).raw == H("BF4103810105")
    assert card.download is not None  # the session stays


def test_cancel_session_after_prepare_download(card, dp):
    ok = authenticate(card, dp)
    prepare(card, dp, ok)
    r = call(card, H("BF4115") + H("8010") + TXID + H("810105"))  # loadBppExecutionError
    assert r.need(0xA0).need(0x30).need(0x82).as_int() == 5


# ---- power cycles ---------------------------------------------------------------------------


def test_restart_mid_download_loses_the_session_only(card, dp):
    ok = authenticate(card, dp)
    otpk, _ = prepare(card, dp, ok)
    segs = build_bpp(card, dp, otpk)
    ch = open_isdr(card)
    for seg in segs[:3]:
        assert store_data(card, ch, seg) == (b"", 0x9000)
    state_before = open(card.state_path).read()
    again = reopen(card)  # the process dies and comes back
    assert again.download is None
    ch2 = open_isdr(again)
    data, sw = store_data(again, ch2, segs[3])
    assert sw != 0x9000 and data == b""
    assert open(card.state_path).read() == state_before
    assert again.state.find_profile(NEW_ICCID) is None
    # a fresh session on the restarted card works
    pir_of(download(again, dp))
    assert again.state.find_profile(NEW_ICCID) is not None


def test_reset_mid_download_loses_the_session(card, dp):
    ok = authenticate(card, dp)
    otpk, _ = prepare(card, dp, ok)
    segs = build_bpp(card, dp, otpk)
    ch = open_isdr(card)
    assert store_data(card, ch, segs[0]) == (b"", 0x9000)
    card.reset()
    assert card.download is None and card.challenge is None
    ch = open_isdr(card)
    _, sw = store_data(card, ch, segs[1])
    assert sw != 0x9000
    assert card.state.find_profile(NEW_ICCID) is None


def test_new_challenge_drops_the_session(card, dp):
    authenticate(card, dp)
    challenge(card)
    assert card.download is None


def test_operations_notified_as_the_metadata_configures_them(card, dp):
    """notificationConfigurationInfo (SGP.22 NotificationConfigurationInformation): each
    operation listed is notified to its own address, one not listed is not notified."""
    order = ("notificationInstall", "notificationEnable", "notificationDisable",
             "notificationDelete")

    def nci(event, address):
        return tlv.encode(0x30, tlv.encode(0x80, tlv.bits_encode([event], order))
                          + tlv.encode(0x81, address))
    meta = tlv.encode(0xBF25, [tlv.encode(0x5A, tlv.bcd_unswap(NEW_ICCID + "F")),
                               tlv.encode(0x91, b"SP"), tlv.encode(0x92, b"Configured"),
                               tlv.encode(0xB6, nci("notificationEnable", b"on.example")
                                          + nci("notificationDelete", b"gone.example"))])
    pir_of(download(card, dp, meta=meta))
    p = card.state.find_profile(NEW_ICCID)
    before = len(card.state.pending())
    euicc_profiles.disable(card, p)  # not configured: no notification
    euicc_profiles.enable(card, p)
    euicc_profiles.disable(card, p)
    euicc_profiles.delete(card, p)
    new = [n for n in card.state.pending()[before:] if n.get("iccid") == NEW_ICCID]
    metas = [tlv.decode(bytes.fromhex(n["der"])).need(0xBF2F) for n in new]
    assert [(m.need(0x81).as_bits(order), m.need(0x0C).as_str()) for m in metas] == [
        (["notificationEnable"], "on.example"), (["notificationDelete"], "gone.example")]
    for n in new:  # each signed over its tbsOtherNotification
        t = tlv.decode(bytes.fromhex(n["der"]))
        assert pki.verify(card.pki["euicc_cert"], t.need(0xBF2F).raw, t.need(0x5F37).value)
