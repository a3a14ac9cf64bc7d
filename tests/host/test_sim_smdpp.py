"""The simulated SM-DP+ (ipa_host/sim/smdpp*.py) over real TLS.

Driven by hand-built ES9+ JSON with a hand-made eUICC side (signatures, ECKA
and BSP decryption written here from RSPDefinitions), and end to end with
the virtual eUICC's download functions.
"""

import base64
import hashlib
import http.client
import json
import os
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ipa_core import tlv
from ipa_host.sim import bsp, pki
from ipa_host.sim.smdpp import pki_smdp
from ipa_host.sim.smdpp import profile_package as pp
from ipa_host.sim.smdpp.smdpp import SmdpServer

EID = pki.DEFAULT_EID
ICCID = "89000123456789012341"
ICCID_2 = "8900012345678901235"
PATH = "/gsma/rsp2/es9plus/"


def b64(b):
    return base64.b64encode(b).decode()


def unb64(s):
    return base64.b64decode(s)


@pytest.fixture
def dp(pki_dir, tmp_path):
    server = SmdpServer(str(tmp_path / "smdp"), pki_dir).start()
    yield server
    server.stop()


class Client:
    """ES9+ JSON over HTTPS, trusting only the test CI (which issued CERT.DP.TLS)."""

    def __init__(self, dp, pki_dir):
        self.ctx = ssl.create_default_context(cafile=os.path.join(pki_dir, "ci.crt"))
        self.dp = dp
        self.conn = http.client.HTTPSConnection(dp.host, dp.port, context=self.ctx, timeout=10)

    def raw(self, method, path, body=b"", headers=None):
        h = {"Content-Type": "application/json", "X-Admin-Protocol": "gsma/rsp/v2.1.0"}
        h.update(headers or {})
        self.conn.request(method, path, body=body, headers=h)
        r = self.conn.getresponse()
        return r.status, r.read(), r

    def call(self, function, obj):
        status, body, r = self.raw("POST", PATH + function, json.dumps(obj).encode())
        assert r.getheader("X-Admin-Protocol", "").startswith("gsma/rsp/v")
        if status == 204:
            return status, None
        assert status == 200, body
        return status, json.loads(body)


def ok(answer):
    assert answer["header"]["functionExecutionStatus"]["status"] == "Executed-Success", answer
    return answer


def failed(answer, subject, reason):
    st = answer["header"]["functionExecutionStatus"]
    assert st["status"] == "Failed", answer
    assert (st["statusCodeData"]["subjectCode"], st["statusCodeData"]["reasonCode"]) == (subject, reason), st


class HandEuicc:
    """The eUICC side of a download, built here from the ASN.1 (not the virtual eUICC)."""

    def __init__(self, pki_dir):
        p = pki.load_pki(pki_dir)
        self.key, self.cert, self.eum = p["euicc_key"], p["euicc_cert"], p["eum_cert"]
        self.ci_ski = pki.ski(p["ci_cert"])
        self.challenge = os.urandom(16)
        self.otsk = ec.generate_private_key(ec.SECP256R1())

    def info1(self, ski=None):
        s = tlv.encode(0x04, ski or self.ci_ski)
        return tlv.enc(0xBF20, tlv.encode(0x82, b"\x02\x05\x00"), tlv.encode(0xA9, s), tlv.encode(0xAA, s))

    def initiate(self, dp, **kw):
        return {"euiccChallenge": b64(self.challenge), "euiccInfo1": b64(self.info1(**kw)),
                "smdpAddress": dp.address}

    def authenticate_server(self, init, matching_id, key=None):
        signed1 = tlv.decode(unb64(init["serverSigned1"]))
        assert signed1.need(0x81).value == self.challenge
        dpauth = x509.load_der_x509_certificate(unb64(init["serverCertificate"]))
        assert pki.verify(dpauth, signed1.raw, tlv.decode(unb64(init["serverSignature1"])).value)
        self.tid = signed1.need(0x80).value
        ctx = tlv.enc(0xA0, tlv.encode(0x80, matching_id.encode()) if matching_id is not None else None,
                      tlv.enc(0xA1, tlv.encode(0x80, b"\x35\x29\x06\x11"), tlv.encode(0xA1, b"")))
        euicc_signed1 = tlv.enc(0x30, tlv.encode(0x80, self.tid), signed1.need(0x83).raw,
                                signed1.need(0x84).raw, tlv.encode(0xBF22, tlv.encode(0x81, b"\x02\x03\x00")), ctx)
        self.sig1 = tlv.encode(0x5F37, pki.sign_raw(key or self.key, euicc_signed1))
        return tlv.enc(0xBF38, tlv.enc(0xA0, euicc_signed1, self.sig1, pki.certificate_der(self.cert),
                                       pki.certificate_der(self.eum)))

    def prepare_download(self, auth, cc=None):
        signed2 = tlv.decode(unb64(auth["smdpSigned2"]))
        self.sig2 = unb64(auth["smdpSignature2"])
        dppb = x509.load_der_x509_certificate(unb64(auth["smdpCertificate"]))
        assert pki.verify(dppb, signed2.raw + self.sig1, tlv.decode(self.sig2).value)
        self.dppb = dppb
        self.cc_required = signed2.need(0x01).as_bool()
        hcc = None
        if cc is not None:
            hcc = tlv.encode(0x04, hashlib.sha256(hashlib.sha256(cc.encode()).digest() + self.tid).digest())
        self.otpk = pki.public_key_bytes(self.otsk)
        euicc_signed2 = tlv.enc(0x30, tlv.encode(0x80, self.tid), tlv.encode(0x5F49, self.otpk), hcc)
        sig = tlv.encode(0x5F37, pki.sign_raw(self.key, euicc_signed2 + self.sig2))
        return tlv.enc(0xBF21, tlv.enc(0xA0, euicc_signed2, sig))

    def open_bpp(self, bpp):
        """Verify and decrypt a BPP -> (configureIsdp, metadata, package, used_ppk)."""
        t = tlv.decode(bpp)
        assert t.tag == 0xBF36
        kids = t.children()
        isc = bsp.parse_initialise_secure_channel(kids[0].raw)
        assert isc["transaction_id"] == self.tid and isc["remote_op_id"] == 1
        assert pki.verify(self.dppb, bsp.isc_signed_bytes(kids[0].raw, self.otpk), isc["smdp_sign"])
        shs = bsp.ecka_shared_secret(self.otsk, isc["smdp_otpk"])
        mcv, s_enc, s_mac = bsp.derive_session_keys(shs, isc["host_id"], EID)
        r = bsp.BspReceiver(s_enc, s_mac, mcv)
        tags = [k.tag for k in kids[1:]]
        assert tags in ([0xA0, 0xA1, 0xA3], [0xA0, 0xA1, 0xA2, 0xA3])
        conf = r.unwrap_all([c.raw for c in kids[1]], tag=0x87)
        meta = r.unwrap_all([c.raw for c in kids[2]], decrypt=False, tag=0x88)
        if kids[3].tag == 0xA2:
            mcv, enc, mac = bsp.parse_replace_session_keys(r.unwrap_all([c.raw for c in kids[3]], tag=0x87))
            r = bsp.BspReceiver(enc, mac, mcv)
        segs = [c.raw for c in kids[-1]]
        assert all(len(s) <= 1020 for s in segs)
        return conf, meta, r.unwrap_all(segs, tag=0x86), kids[3].tag == 0xA2

    def pir(self, oid, success=True, key=None):
        meta = tlv.enc(0xBF2F, tlv.encode(0x80, b"\x01"), tlv.encode(0x81, b"\x07\x80"),
                       tlv.encode(0x0C, b"127.0.0.1"), tlv.encode(0x5A, pp.iccid_bytes(ICCID)))
        final = (tlv.enc(0xA0, tlv.encode(0x4F, bytes.fromhex("A0000005591010FFFFFFFF8900001000")),
                         tlv.encode(0x04, b"")) if success
                 else tlv.enc(0xA1, tlv.encode(0x80, b"\x05"), tlv.encode(0x81, b"\x0c")))
        data = tlv.enc(0xBF27, tlv.encode(0x80, self.tid), meta, tlv.encode(0x06, tlv.oid_encode(oid)),
                       tlv.encode(0xA2, final))
        return tlv.enc(0xBF37, data, tlv.encode(0x5F37, pki.sign_raw(key or self.key, data)))


def download(dp, pki_dir, matching_id, cc=None):
    c, e = Client(dp, pki_dir), HandEuicc(pki_dir)
    init = ok(c.call("initiateAuthentication", e.initiate(dp))[1])
    auth = ok(c.call("authenticateClient", {"transactionId": init["transactionId"],
                                            "authenticateServerResponse": b64(e.authenticate_server(init, matching_id))})[1])
    bpp = ok(c.call("getBoundProfilePackage", {"transactionId": init["transactionId"],
                                               "prepareDownloadResponse": b64(e.prepare_download(auth, cc))})[1])
    return c, e, init, auth, bpp


# ---- certificates and profile package --------------------------------------------------------


def test_smdp_certificates_chain_to_the_ci_and_carry_roles(pki_dir, tmp_path):
    paths = pki_smdp.create_smdp_pki(str(tmp_path), pki_dir)
    m = pki_smdp.load_smdp_pki(str(tmp_path), pki_dir)
    for role in pki_smdp.NAMES:
        cert, oid = m[role + "_cert"], pki_smdp.ROLE_OID[role]
        assert pki.verify(m["ci_cert"], cert.tbs_certificate_bytes, cert.signature)
        pol = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        assert [p.policy_identifier.dotted_string for p in pol] == [oid]
        assert pki.public_key_bytes(cert) == pki.public_key_bytes(m[role + "_key"])
        assert pki_smdp.smdp_oid_of(cert) == "2.999.10"
    before = open(paths["dpauth.crt"], "rb").read()
    pki_smdp.create_smdp_pki(str(tmp_path), pki_dir)      # kept when sound
    assert open(paths["dpauth.crt"], "rb").read() == before
    with pytest.raises(ValueError, match="ci.crt"):
        pki_smdp.create_smdp_pki(str(tmp_path / "x"), str(tmp_path / "empty"))


def test_smds_certificates_carry_the_ds_roles_and_oid(pki_dir, tmp_path):
    pki_smdp.create_smdp_pki(str(tmp_path), pki_dir, smdp_oid=pki_smdp.DS_OID,
                             roles=pki_smdp.DS_NAMES)
    m = pki_smdp.load_smdp_pki(str(tmp_path), pki_dir, roles=pki_smdp.DS_NAMES)
    assert m["smdp_oid"] == "2.999.20"
    for role, oid in (("dsauth", "2.23.146.1.2.1.7"), ("dstls", "2.23.146.1.2.1.6")):
        cert = m[role + "_cert"]
        assert pki.verify(m["ci_cert"], cert.tbs_certificate_bytes, cert.signature)
        pol = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        assert [p.policy_identifier.dotted_string for p in pol] == [oid]
        assert "SM-DS" in cert.subject.rfc4514_string()
    assert not os.path.exists(os.path.join(str(tmp_path), "dpauth.crt"))


@pytest.mark.parametrize("size", [0, 5000, 100_000])
def test_profile_package_is_well_formed(size):
    upp = pp.build_profile_package(ICCID, size)
    info = pp.parse_profile_package(upp)
    assert len(upp) >= size and info["iccid"] == ICCID
    assert info["pes"][0] == "header" and info["pes"][-1] == "end"
    md = pp.parse_store_metadata(pp.store_metadata(ICCID_2, "SP", "Name", "test"))
    assert md == {"iccid": ICCID_2, "serviceProviderName": "SP", "profileName": "Name", "profileClass": 0}


# ---- ES9+ over TLS with a hand-made eUICC side -------------------------------------------------


@pytest.mark.parametrize("ppk", [False, True])
def test_full_download_by_hand(pki_dir, tmp_path, ppk):
    with SmdpServer(str(tmp_path / "smdp"), pki_dir, use_ppk=ppk).start() as dp:
        dp.add_profile("MATCH-1", ICCID, "Test profile", size=20_000)
        c, e, init, auth, bpp = download(dp, pki_dir, "MATCH-1")
        assert pp.parse_store_metadata(unb64(auth["profileMetadata"]))["iccid"] == ICCID
        assert auth["transactionId"] == init["transactionId"] == bpp["transactionId"]
        assert e.cc_required is False
        conf, meta, upp, used_ppk = e.open_bpp(unb64(bpp["boundProfilePackage"]))
        assert conf == bytes.fromhex("BF2400") and used_ppk is ppk
        assert meta == unb64(auth["profileMetadata"])
        assert upp == pp.build_profile_package(ICCID, 20_000)
        assert dp.profile("MATCH-1")["state"] == "downloading"
        assert c.call("handleNotification", {"pendingNotification": b64(e.pir(dp.smdp_oid))}) == (204, None)
        n = dp.notifications[-1]
        assert (n["type"], n["verified"], n["success"], n["iccid"], n["eid"]) == ("pir", True, True, ICCID, EID)
        assert dp.profile("MATCH-1")["state"] == "installed"
        # the matchingId is used up
        init2 = ok(c.call("initiateAuthentication", e.initiate(dp))[1])
        failed(c.call("authenticateClient", {"transactionId": init2["transactionId"],
                                             "authenticateServerResponse": b64(e.authenticate_server(init2, "MATCH-1"))})[1],
               "8.2.6", "3.8")


def test_100k_profile_is_bound_in_1020_byte_segments(dp, pki_dir):
    dp.add_profile("BIG", ICCID, "Big", size=100_000)
    _, e, _, _, bpp = download(dp, pki_dir, "BIG")
    raw = unb64(bpp["boundProfilePackage"])
    assert len(raw) > 100_000
    assert e.open_bpp(raw)[2] == pp.build_profile_package(ICCID, 100_000)


def test_confirmation_code(dp, pki_dir):
    dp.add_profile("CC", ICCID, "With CC", cc="4711")
    c, e = Client(dp, pki_dir), HandEuicc(pki_dir)
    init = ok(c.call("initiateAuthentication", e.initiate(dp))[1])
    tid = init["transactionId"]
    auth = ok(c.call("authenticateClient", {"transactionId": tid, "authenticateServerResponse":
                                            b64(e.authenticate_server(init, "CC"))})[1])
    failed(c.call("getBoundProfilePackage", {"transactionId": tid,
                                             "prepareDownloadResponse": b64(e.prepare_download(auth))})[1],
           "8.2.7", "2.2")
    assert e.cc_required is True
    failed(c.call("getBoundProfilePackage", {"transactionId": tid,
                                             "prepareDownloadResponse": b64(e.prepare_download(auth, "0000"))})[1],
           "8.2.7", "3.8")
    bpp = ok(c.call("getBoundProfilePackage", {"transactionId": tid,
                                               "prepareDownloadResponse": b64(e.prepare_download(auth, "4711"))})[1])
    assert pp.parse_profile_package(e.open_bpp(unb64(bpp["boundProfilePackage"]))[2])["iccid"] == ICCID


def test_confirmation_code_retries_run_out(dp, pki_dir):
    dp.add_profile("CC", ICCID, "With CC", cc="4711")
    c, e = Client(dp, pki_dir), HandEuicc(pki_dir)
    init = ok(c.call("initiateAuthentication", e.initiate(dp))[1])
    tid = init["transactionId"]
    auth = ok(c.call("authenticateClient", {"transactionId": tid, "authenticateServerResponse":
                                            b64(e.authenticate_server(init, "CC"))})[1])
    codes = []
    for _ in range(3):
        st = c.call("getBoundProfilePackage", {"transactionId": tid, "prepareDownloadResponse":
                                               b64(e.prepare_download(auth, "9999"))})[1]
        codes.append(st["header"]["functionExecutionStatus"]["statusCodeData"]["reasonCode"])
    assert codes == ["3.8", "3.8", "6.4"]
    assert dp.profile("CC")["state"] == "released"


def test_function_errors(dp, pki_dir):
    dp.add_profile("M", ICCID, "P", eid="89049032123451234512345678901299")
    c, e = Client(dp, pki_dir), HandEuicc(pki_dir)
    bad = e.initiate(dp)
    bad["smdpAddress"] = "other.example"
    failed(c.call("initiateAuthentication", bad)[1], "8.8.1", "3.8")
    failed(c.call("initiateAuthentication", e.initiate(dp, ski=b"\x11" * 20))[1], "8.8.2", "3.1")
    failed(c.call("authenticateClient", {"transactionId": "00" * 16,
                                         "authenticateServerResponse": b64(b"\xbf\x38\x00")})[1], "8.10.1", "3.9")

    def auth(matching_id, key=None):
        init = ok(c.call("initiateAuthentication", e.initiate(dp))[1])
        return c.call("authenticateClient", {"transactionId": init["transactionId"], "authenticateServerResponse":
                                             b64(e.authenticate_server(init, matching_id, key))})[1]

    failed(auth("NOPE"), "8.2.6", "3.8")
    failed(auth("M"), "8.1.1", "3.8")                                        # bound to another EID
    failed(auth("M", key=ec.generate_private_key(ec.SECP256R1())), "8.1", "6.1")   # signature
    failed(auth(None), "8.2", "3.7")                                         # no matchingId, nothing for this EID
    assert [ev["error"] for ev in dp.events][-1] == "noEligibleProfile"


def test_forged_pir_is_recorded_unverified(dp, pki_dir):
    dp.add_profile("M", ICCID, "P")
    c, e, *_ = download(dp, pki_dir, "M")
    c.call("handleNotification", {"pendingNotification": b64(e.pir(dp.smdp_oid,
                                                                   key=ec.generate_private_key(ec.SECP256R1())))})
    assert dp.notifications[-1]["verified"] is False
    assert dp.profile("M")["state"] == "downloading"
    c.call("handleNotification", {"pendingNotification": b64(e.pir(dp.smdp_oid, success=False))})
    n = dp.notifications[-1]
    assert n["verified"] and not n["success"] and (n["bppCommandId"], n["errorReason"]) == (5, 12)
    assert dp.profile("M")["state"] == "released"


def test_cancel_session(dp, pki_dir):
    dp.add_profile("M", ICCID, "P")
    c, e = Client(dp, pki_dir), HandEuicc(pki_dir)
    init = ok(c.call("initiateAuthentication", e.initiate(dp))[1])
    ok(c.call("authenticateClient", {"transactionId": init["transactionId"],
                                     "authenticateServerResponse": b64(e.authenticate_server(init, "M"))})[1])
    signed = tlv.enc(0x30, tlv.encode(0x80, e.tid), tlv.encode(0x81, tlv.oid_encode(dp.smdp_oid)),
                     tlv.encode(0x82, b"\x01"))
    resp = tlv.enc(0xBF41, tlv.enc(0xA0, signed, tlv.encode(0x5F37, pki.sign_raw(e.key, signed))))
    ok(c.call("cancelSession", {"transactionId": init["transactionId"], "cancelSessionResponse": b64(resp)})[1])
    assert dp.profile("M")["state"] == "released"
    failed(c.call("cancelSession", {"transactionId": init["transactionId"],
                                    "cancelSessionResponse": b64(resp)})[1], "8.10.1", "3.9")


def test_an_abandoned_session_expires_and_releases_its_order(pki_dir, tmp_path):
    """session_timeout: a retry while the first session is open is refused with words a user
    understands; once it expired the order is released and the retry downloads."""
    with SmdpServer(str(tmp_path / "smdp"), pki_dir) as dp:
        dp.add_profile("M", ICCID, "P")
        c, e = Client(dp, pki_dir), HandEuicc(pki_dir)
        init = ok(c.call("initiateAuthentication", e.initiate(dp))[1])
        ok(c.call("authenticateClient", {"transactionId": init["transactionId"],
                                         "authenticateServerResponse": b64(
                                             e.authenticate_server(init, "M"))})[1])
        assert dp.profile("M")["state"] == "downloading"
        e2 = HandEuicc(pki_dir)
        init2 = ok(c.call("initiateAuthentication", e2.initiate(dp))[1])
        answer = c.call("authenticateClient", {"transactionId": init2["transactionId"],
                                               "authenticateServerResponse": b64(
                                                   e2.authenticate_server(init2, "M"))})[1]
        failed(answer, "8.2.6", "3.8")
        msg = answer["header"]["functionExecutionStatus"]["statusCodeData"]["message"]
        assert "profile already downloading in session %s" % init["transactionId"] in msg, msg
        assert "released when that session is cancelled or, abandoned, in" in msg
        dp.session_timeout = 0.5  # set while running: the refusal above never raced it
        deadline = time.monotonic() + 10
        while not dp.expired and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [x["transactionId"] for x in dp.expired] == [init["transactionId"]]
        assert dp.expired[0]["matchingId"] == "M" and dp.profile("M")["state"] == "released"
        _, e3, *_ = download(dp, pki_dir, "M")
        assert dp.profile("M")["state"] == "downloading"
        # the expired session is unknown now: a late cancel for it is refused
        signed = tlv.enc(0x30, tlv.encode(0x80, e.tid), tlv.encode(0x81, tlv.oid_encode(dp.smdp_oid)),
                         tlv.encode(0x82, b"\x7f"))
        resp = tlv.enc(0xBF41, tlv.enc(0xA0, signed, tlv.encode(0x5F37, pki.sign_raw(e.key, signed))))
        failed(c.call("cancelSession", {"transactionId": init["transactionId"],
                                        "cancelSessionResponse": b64(resp)})[1], "8.10.1", "3.9")


def test_cli_session_timeout(tmp_path, pki_dir, capsys):
    from ipa_host.sim.smdpp import smdpp

    rc = smdpp.smdpp_main(["serve", "--dir", str(tmp_path / "d"), "--pki", pki_dir, "--port", "0",
                           "--session-timeout", "0"])
    assert rc == 2 and "--session-timeout: expected seconds > 0" in capsys.readouterr().err


def test_http_level_errors(dp, pki_dir):
    c = Client(dp, pki_dir)
    assert c.raw("POST", PATH + "nope", b"{}")[0] == 404
    assert c.raw("POST", "/other", b"{}")[0] == 404
    assert c.raw("POST", PATH + "initiateAuthentication", b"{}", {"Content-Type": "text/plain"})[0] == 415
    st, body, _ = c.raw("POST", PATH + "initiateAuthentication", b"not json")
    assert st == 400 and b"JSON" in body
    st, body, _ = c.raw("POST", PATH + "initiateAuthentication", b"{}")
    assert st == 400 and b"euiccChallenge" in body
    assert c.raw("GET", PATH + "initiateAuthentication")[0] == 405
    # and the connection still serves
    e = HandEuicc(pki_dir)
    ok(c.call("initiateAuthentication", e.initiate(dp))[1])


def test_tls_is_refused_without_the_ci(dp):
    ctx = ssl.create_default_context()
    conn = http.client.HTTPSConnection(dp.host, dp.port, context=ctx, timeout=5)
    with pytest.raises(ssl.SSLError):
        conn.request("POST", PATH + "initiateAuthentication", body=b"{}")


# ---- end to end with the virtual eUICC's download functions ---------------------------------------


def _bpp_sequences(bpp):
    """The STORE DATA sequences of a BPP (ipad-checklist: BF36 head + BF23, A0 whole, A1 head,
    each 88, A2 whole, A3 head, each 86)."""
    t = tlv.decode(bpp)
    kids = t.children()
    out = [bpp[:kids[0].end]]   # BF36 tag + length and the whole BF23
    for k in kids[1:]:
        if k.tag in (0xA0, 0xA2):
            out.append(k.raw)
        else:
            out.append(k.raw[:k.vstart - k.start])
            out.extend(c.raw for c in k)
    return out


@pytest.mark.parametrize("ppk", [False, True])
def test_download_into_the_virtual_euicc(tmp_path, ppk):
    import euicc_fixtures as fx
    from ipa_host.sim.euicc import euicc
    if 0xBF2E not in euicc.FUNCTIONS or not hasattr(euicc, "download"):
        pytest.skip("the virtual eUICC has no download functions yet")
    card = fx.make_euicc(tmp_path)
    pki_dir = os.path.join(str(tmp_path), "pki")
    with SmdpServer(str(tmp_path / "smdp"), pki_dir, use_ppk=ppk).start() as dp:
        dp.add_profile("E2E", ICCID, "End to end", size=30_000)
        c = Client(dp, pki_dir)
        ch = fx.open_isdr(card)

        def es10(req):
            data, sw = fx.store_data(card, ch, req)
            assert sw == 0x9000, "SW %04X" % sw
            return data

        info1 = es10(bytes.fromhex("BF2000"))
        challenge = tlv.decode(es10(bytes.fromhex("BF2E00"))).need(0x80).value
        init = ok(c.call("initiateAuthentication", {"euiccChallenge": b64(challenge), "euiccInfo1": b64(info1),
                                                    "smdpAddress": dp.address})[1])
        ctx = tlv.enc(0xA0, tlv.encode(0x80, b"E2E"),
                      tlv.enc(0xA1, tlv.encode(0x80, b"\x35\x29\x06\x11"), tlv.encode(0xA1, b"")))
        asr = es10(tlv.enc(0xBF38, unb64(init["serverSigned1"]), unb64(init["serverSignature1"]),
                           unb64(init["euiccCiPKIdToBeUsed"]), unb64(init["serverCertificate"]), ctx))
        auth = ok(c.call("authenticateClient", {"transactionId": init["transactionId"],
                                                "authenticateServerResponse": b64(asr)})[1])
        pdr = es10(tlv.enc(0xBF21, unb64(auth["smdpSigned2"]), unb64(auth["smdpSignature2"]),
                           unb64(auth["smdpCertificate"])))
        bpp = unb64(ok(c.call("getBoundProfilePackage", {"transactionId": init["transactionId"],
                                                         "prepareDownloadResponse": b64(pdr)})[1])["boundProfilePackage"])
        seqs = _bpp_sequences(bpp)
        answers = [es10(s) for s in seqs]
        assert all(a == b"" for a in answers[:-1])
        pir = answers[-1]
        res = tlv.decode(pir)
        assert res.tag == 0xBF37
        assert res.need(0xBF27).need(0xA2).children()[0].tag == 0xA0, pir.hex()
        fx.close(card, ch)
        assert c.call("handleNotification", {"pendingNotification": b64(pir)}) == (204, None)
        n = dp.notifications[-1]
        assert (n["verified"], n["success"], n["smdpOid"]) == (True, True, dp.smdp_oid)
        assert dp.profile("E2E")["state"] == "installed"
        profiles = fx.es10(card, bytes.fromhex("BF2D00"))
        assert pp.iccid_bytes(ICCID) in profiles
        # the profile's enable notification (its metadata names this SM-DP+): verified over
        # tbsOtherNotification with the eUICC certificate it carries; a forged one is not
        from ipa_host.sim.euicc import euicc_profiles

        euicc_profiles.enable(card, card.state.find_profile(ICCID))
        note = [n for n in card.state.pending() if n.get("iccid") == ICCID][-1]
        der = bytes.fromhex(note["der"])
        assert tlv.decode(der).need(0xBF2F).need(0x0C).as_str() == dp.address
        assert c.call("handleNotification", {"pendingNotification": b64(der)}) == (204, None)
        n = dp.notifications[-1]
        assert (n["type"], n["operation"], n["iccid"], n["verified"]) == ("other", ["enable"], ICCID, True)
        sig = tlv.decode(der).need(0x5F37).value
        forged = der.replace(sig, bytes([sig[0] ^ 1]) + sig[1:])
        assert c.call("handleNotification", {"pendingNotification": b64(forged)}) == (204, None)
        assert dp.notifications[-1]["verified"] is False


def test_cli_profile_argument_and_bad_pki(tmp_path, capsys):
    import argparse

    from ipa_host.sim.smdpp import smdpp
    assert smdpp._profile_arg("M=89000123456789012341:5000:12") == ("M", "89000123456789012341", 5000, "12")
    assert smdpp._profile_arg("M=8900012345678901234") == ("M", "8900012345678901234", 4096, None)
    with pytest.raises(argparse.ArgumentTypeError):
        smdpp._profile_arg("no-equals")
    rc = smdpp.smdpp_main(["serve", "--dir", str(tmp_path / "d"), "--pki", str(tmp_path / "nopki"), "--port", "0"])
    assert rc == 2 and "ci.crt" in capsys.readouterr().err
