"""The simulated eIM (ipa_host.sim.eim.eim) over real TLS on loopback.

The client side is the IPA's own transport (ipa_host.net.https.HttpsNetwork);
every ESipa message is written here by hand from SGP32Definitions (AUTOMATIC
TAGS applied by hand), never with the IPA's message modules, so these bytes
pin the eIM independently. eUICC Package Results and notifications come from
the virtual eUICC (ipa_host.sim.euicc.euicc), a third independent peer.
"""

import base64
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from euicc_fixtures import es10
from ipa_core import tlv
from ipa_core.errors import TransportError
from ipa_host.net.https import ASN1_CONTENT_TYPE, ASN1_PATH, HttpsNetwork
from ipa_host.sim import pki
from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.eim.eim_cli import eim_main
from ipa_host.sim.euicc.euicc import VirtualEuicc
from ipa_host.sim.home import DEMO_EIM_ID

H = bytes.fromhex
EID = pki.DEFAULT_EID
OTHER_EID = "89049032123451234512345678900001"
ICCID_A, ICCID_B = "8944476500000000017", "8944476500000000025"
JSON_TYPE = "application/json;charset=UTF-8"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---- ESipa messages written from the module --------------------------------------------------


def get_eim_package(eid=EID, extra=b""):
    """GetEimPackageRequest BF4F { 5A eidValue, ... }."""
    return tlv.encode(0xBF4F, tlv.encode(0x5A, H(eid)) + extra)


def provide(result, eid=EID):
    """ProvideEimPackageResult BF50 { [5A eidValue], EimPackageResult }."""
    return tlv.enc(0xBF50, tlv.encode(0x5A, H(eid)) if eid else None, result)


def handle_notification(pending):
    """HandleNotificationEsipa BF3D { A0 { PendingNotification } } (explicit [0] on a CHOICE)."""
    return tlv.encode(0xBF3D, tlv.encode(0xA0, pending))


def iccid_tlv(digits):
    return tlv.encode(0x5A, tlv.bcd_unswap(digits.ljust(20, "F")))


NO_PACKAGE = H("BF4F03020101")  # eimPackageError noEimPackageAvailable: universal INTEGER
EID_NOT_FOUND = H("BF4F03020102")
INVALID_EID = H("BF4F03020103")
MISSING_EID = H("BF4F03020104")


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def bench(tmp_path):
    """A PKI, the virtual eUICC holding the demo eIM (token 1), and a started eIM."""
    pki_dir = str(tmp_path / "pki")
    pki.create_test_pki(pki_dir)
    card = VirtualEuicc(pki_dir, state_path=str(tmp_path / "euicc.json"))
    card.load_profiles([
        {"iccid": ICCID_A, "name": "A", "class": "operational", "state": "enabled"},
        {"iccid": ICCID_B, "name": "B", "class": "operational", "state": "disabled"}])
    token = card.add_eim(DEMO_EIM_ID, pki.load_certificate(os.path.join(pki_dir, "eim.crt")),
                         association_token=True)
    assert token == 1
    eim = EimServer(str(tmp_path / "eim"), pki_dir, association_token=token).start()
    net = HttpsNetwork(eim.url, trust=eim.tls_ca_cert_der, timeout=10)

    class Bench:
        pass

    b = Bench()
    b.card, b.eim, b.net, b.pki_dir, b.tmp = card, eim, net, pki_dir, tmp_path
    b.post = lambda body: net.post(ASN1_PATH, body, ASN1_CONTENT_TYPE)
    yield b
    net.close()
    eim.stop()


def poll(b, eid=EID):
    status, body = b.post(get_eim_package(eid))
    assert status == 200
    return body


def parse_package(answer):
    """BF4F { BF51 { 30 signed, 5F37 } } -> (signed TLV, signature)."""
    top = tlv.decode(answer)
    assert top.tag == 0xBF4F
    (req,) = top.children()
    assert req.tag == 0xBF51
    signed, sig = req.children()
    assert (signed.tag, sig.tag) == (0x30, 0x5F37)
    return signed, sig.value


def run_on_card(b, answer):
    """The eUICC Package of a GetEimPackage answer through ES10b.LoadEuiccPackage."""
    (req,) = tlv.decode(answer).children()
    return es10(b.card, req.raw)


# ---- GetEimPackage ---------------------------------------------------------------------------


def test_empty_queue_answers_no_eim_package_available(bench):
    assert poll(bench) == NO_PACKAGE
    r = bench.eim.requests[-1]
    assert (r["function"], r["binding"], r["eid"], r["status"]) == (
        "getEimPackage", "asn1", EID, 200)
    assert r["request"] == get_eim_package() and r["response"] == NO_PACKAGE


def test_eid_errors(bench):
    assert poll(bench, OTHER_EID) == EID_NOT_FOUND
    assert bench.post(tlv.encode(0xBF4F, tlv.encode(0x5A, H(EID)[:15])))[1] == INVALID_EID
    assert bench.post(tlv.encode(0xBF4F, tlv.encode(0x5A, H("AB" * 16))))[1] == INVALID_EID
    assert bench.post(H("BF4F00"))[1] == MISSING_EID
    # notifyStateChange / stateChangeCause / rPLMN are recorded with the poll
    status, body = bench.post(get_eim_package(extra=H("8000") + H("810105") + H("8203214365")))
    assert body == NO_PACKAGE
    change = bench.eim.store.get(EID)["state_changes"][-1]
    assert change["notifyStateChange"] and change["stateChangeCause"] == 5
    assert change["stateChangeCauseName"] == "immediateEnableProfile"
    assert change["rPLMN"] == "214365"


def test_psmo_package_is_signed_by_the_eim_key(bench):
    item = bench.eim.queue_psmo(EID, [{"op": "enable", "iccid": ICCID_B, "rollback": True}])
    assert item["kind"] == "psmo" and bench.eim.queue(EID)[0]["id"] == item["id"]
    signed, sig = parse_package(poll(bench))
    kids = signed.children()
    assert [k.tag for k in kids] == [0x80, 0x5A, 0x81, 0x82, 0xA0]
    assert kids[0].value == DEMO_EIM_ID.encode()
    assert kids[1].value == H(EID)
    assert kids[2].value == b"\x01"  # first counterValue: the eUICC holds 0
    assert len(kids[3].value) == 8
    # psmoList A0 { enable [3] { 5A iccid, 05 00 rollbackFlag } }
    assert kids[4].raw == tlv.encode(0xA0, tlv.encode(0xA3, iccid_tlv(ICCID_B) + H("0500")))
    eim_cert = pki.load_certificate(os.path.join(bench.pki_dir, "eim.crt"))
    assert len(sig) == 64  # TR-03111 r||s
    # signed: euiccPackageSigned followed by the associationToken object 84 01 01
    assert pki.verify(eim_cert, signed.raw + H("840101"), sig)
    assert not pki.verify(eim_cert, signed.raw + H("840100"), sig)
    assert bench.eim.queue(EID) == []
    sent = bench.eim.delivered(EID)[-1]
    assert sent["counterValue"] == 1 and sent["transactionId"] == kids[3].value.hex().upper()
    # No result came: the next poll gets the same bytes again (same counterValue and
    # eimTransactionId), up to max_offers hand-outs; then nothing.
    first = parse_package(poll(bench))
    assert first[0].raw == signed.raw and first[1] == sig
    assert bench.eim.delivered(EID)[-1]["offers"] == 2 and bench.eim.counter(EID) == 1
    for _ in range(bench.eim.service.max_offers - 2):
        assert parse_package(poll(bench))[0].raw == signed.raw
    assert bench.eim.delivered(EID)[-1]["givenUp"]
    assert poll(bench) == NO_PACKAGE


def test_counters_increase_across_packages_and_a_restart(bench, tmp_path):
    bench.eim.service.max_offers = 1  # packages handed out once: no results posted here
    for _ in range(2):
        bench.eim.queue_psmo(EID, [{"op": "getRAT"}])
    bench.eim.queue_eco(EID, [{"op": "listEim"}])
    counters = [tlv.decode(parse_package(poll(bench))[0].raw).need(0x81).as_int()
                for _ in range(2)]
    assert counters == [1, 2]
    bench.net.close()
    bench.eim.stop()
    eim2 = EimServer(str(tmp_path / "eim")).start()  # PKI and eimId from config.json
    try:
        assert eim2.tls_ca_cert_der == bench.eim.tls_ca_cert_der  # same trust anchor
        assert eim2.counter(EID) == 2 and len(eim2.queue(EID)) == 1  # nothing lost
        with HttpsNetwork(eim2.url, trust=eim2.tls_ca_cert_der, timeout=10) as net:
            ans = net.post(ASN1_PATH, get_eim_package(), ASN1_CONTENT_TYPE)[1]
            signed, sig = parse_package(ans)
            assert signed.need(0x81).as_int() == 3
            assert signed.need(0xA1).raw == H("A102AB00")  # ecoList { listEim [11] {} }
            # the token (1) persisted: the virtual eUICC accepts the package
            epr = es10(bench.card, tlv.decode(ans).need(0xBF51).raw)
            assert tlv.decode(epr).children()[0].tag == 0xA0  # signed result, not an error
    finally:
        eim2.stop()


def test_package_runs_on_the_virtual_euicc_and_result_is_acknowledged(bench):
    bench.eim.queue_psmo(EID, [{"op": "enable", "iccid": ICCID_B}])
    epr = run_on_card(bench, poll(bench))
    assert {p["iccid"]: p["state"] for p in bench.card.state.profiles}[ICCID_B] == "enabled"
    notes = tlv.decode(es10(bench.card, H("BF2B00"))).need(0xA0)  # RetrieveNotificationsList
    note_seqs = [tlv.decode(n.raw).path(0xBF2F, 0x80).as_int() for n in notes]
    assert len(note_seqs) == 2  # disable A, enable B
    epr_seq = tlv.decode(epr).children()[0].children()[0].need(0x83).as_int()
    # ePRAndNotifications is an untagged SEQUENCE alternative: 30 { BF51, A0 { ... } }
    status, ans = bench.post(provide(tlv.encode(0x30, epr + notes.raw)))
    assert status == 200
    # BF50 { BF53 { 80 seq, ... } }: eimAcknowledgements, SequenceNumber ::= [0] INTEGER
    acks = [c.as_int() for c in tlv.decode(ans).need(0xBF53)]
    assert sorted(acks) == sorted([epr_seq] + note_seqs)
    assert tlv.decode(ans).need(0xBF53).children()[0].tag == 0x80
    res = bench.eim.results(EID)[-1]
    assert res["kind"] == "ePRAndNotifications"
    e = res["euiccPackageResult"]
    assert e["kind"] == "euiccPackageResultSigned" and e["signatureValid"] is True
    assert e["eimIdMatches"] and e["counterValue"] == 1 and e["seqNumber"] == epr_seq
    assert [(r["name"], r["value"]) for r in e["results"]] == [("enableResult", 0)]
    assert res["package"] == bench.eim.delivered(EID)[-1]["id"]
    got = bench.eim.notifications(EID)
    assert [n["seqNumber"] for n in got] == note_seqs
    assert all(n["signatureValid"] for n in got)
    assert {tuple(n["event"]) for n in got} == {("notificationDisable",), ("notificationEnable",)}
    assert sorted(bench.eim.acknowledged(EID)) == sorted(acks)


def test_tampered_result_signature_is_recorded_as_invalid(bench):
    bench.eim.queue_psmo(EID, [{"op": "getRAT"}])
    epr = bytearray(run_on_card(bench, poll(bench)))
    epr[-1] ^= 1
    status, ans = bench.post(provide(bytes(epr)))
    assert status == 200 and tlv.decode(ans).need(0xBF53) is not None
    assert bench.eim.results(EID)[-1]["euiccPackageResult"]["signatureValid"] is False


def test_error_result_and_unknown_or_missing_eid(bench):
    bench.eim.register_eid(EID, counter=0)
    # the eUICC refuses a replayed counter: signed error, nothing to acknowledge (30 00)
    bench.eim.queue_psmo(EID, [{"op": "getRAT"}])
    run_on_card(bench, poll(bench))
    bench.eim.register_eid(EID, counter=0)
    bench.eim.queue_psmo(EID, [{"op": "getRAT"}])
    err = run_on_card(bench, poll(bench))
    assert tlv.decode(err).children()[0].tag == 0xA1
    assert bench.post(provide(err))[1] == H("BF50023000")  # emptyResponse
    rec = bench.eim.results(EID)[-1]["euiccPackageResult"]
    assert (rec["kind"], rec["errorName"], rec["signatureValid"]) == (
        "euiccPackageErrorSigned", "replayError", True)
    # provideEimPackageResultError: universal INTEGER (its sibling alternatives are tagged)
    assert bench.post(provide(err, OTHER_EID))[1] == H("BF5003020102")
    assert bench.post(tlv.encode(0xBF50, tlv.encode(0x5A, H("AB" * 16)) + err))[1] == \
        H("BF5003020103")
    # no eidValue: found from the eimTransactionId of a delivered package
    assert bench.post(provide(err, eid=None))[1] == H("BF50023000")
    # no eidValue and nothing to go by on a fresh connection: missingEid
    lone = tlv.encode(0xBF51, tlv.encode(0xA2, tlv.encode(0x80, b"someone-else")))
    with HttpsNetwork(bench.eim.url, trust=bench.eim.tls_ca_cert_der) as net:
        assert net.post(ASN1_PATH, provide(lone, eid=None), ASN1_CONTENT_TYPE)[1] == \
            H("BF5003020104")


def test_handle_notification_is_recorded(bench):
    bench.eim.queue_psmo(EID, [{"op": "enable", "iccid": ICCID_B}])
    run_on_card(bench, poll(bench))
    notes = tlv.decode(es10(bench.card, H("BF2B00"))).need(0xA0).children()
    with HttpsNetwork(bench.eim.url, trust=bench.eim.tls_ca_cert_der) as net:  # new connection
        status, body = net.post(ASN1_PATH, handle_notification(notes[0].raw), ASN1_CONTENT_TYPE)
    assert (status, body) == (204, b"")
    got = bench.eim.notifications(EID)[-1]
    assert got["via"] == "handleNotification" and got["kind"] == "otherSignedNotification"
    assert got["signatureValid"] is True  # eUICC certificate of the PKI
    assert got["seqNumber"] == notes[0].need(0xBF2F).need(0x80).as_int()
    assert bench.eim.requests[-1]["eid"] == EID  # attributed by its certificate
    # a result delivered as a notification: BF3D { BF50 ProvideEimPackageResult }
    stored = tlv.decode(es10(bench.card, H("BF2B04A0028200"))).need(0xA2).children()[0]
    assert stored.tag == 0xBF51
    assert bench.post(tlv.encode(0xBF3D, provide(stored.raw))) == (204, b"")
    res = bench.eim.results(EID)[-1]
    assert res["via"] == "handleNotification" and res["euiccPackageResult"]["signatureValid"]
    # v1.0 style, the PendingNotification without the [0]: read too
    assert bench.post(tlv.encode(0xBF3D, notes[1].raw)) == (204, b"")
    assert bench.eim.notifications(EID)[-1]["seqNumber"] == \
        notes[1].need(0xBF2F).need(0x80).as_int()
    # compactOtherSignedNotification [1] { 5A eid, BF2F metadata, 5F37 } of an unknown eUICC
    meta = tlv.encode(0xBF2F, H("80012A") + H("81020640") + tlv.encode(0x0C, b"smdp.example"))
    compact = tlv.encode(0xA1, tlv.encode(0x5A, H(OTHER_EID)) + meta +
                         tlv.encode(0x5F37, b"\x00" * 64))
    assert bench.post(handle_notification(compact)) == (204, b"")
    lost = bench.eim.unattributed()[-1]
    assert (lost["eid"], lost["seqNumber"], lost["event"], lost["address"]) == (
        OTHER_EID, 42, ["notificationEnable"], "smdp.example")
    assert lost["kind"] == "compactOtherSignedNotification"


def test_data_request_and_download_trigger_bytes(bench):
    bench.eim.service.max_offers = 1  # the results come after all three hand-outs
    bench.eim.queue_data_request(EID, "80,A2", transaction_id="0102")
    bench.eim.queue_download_trigger(EID, "LPA:1$smdp.example$MATCH", transaction_id="0A0B")
    bench.eim.queue_data_request(EID, ["BF20", 0xA8], notificationSeqNumber=7)
    # BF4F { BF52 { 5C tagList, 83 eimTransactionId } }
    assert poll(bench) == tlv.encode(0xBF4F, tlv.encode(0xBF52, H("5C0280A2") + H("83020102")))
    # BF4F { BF54 { A0 { 80 activationCode }, 82 eimTransactionId } }
    ac = b"LPA:1$smdp.example$MATCH"
    assert poll(bench) == tlv.encode(0xBF4F, tlv.encode(
        0xBF54, tlv.encode(0xA0, tlv.encode(0x80, ac)) + H("82020A0B")))
    req = tlv.decode(poll(bench)).need(0xBF52)
    assert req.need(0x5C).value == H("BF20A8")
    assert req.need(0xA1).raw == H("A103800107")  # searchCriteriaNotification [1] {seqNumber [0]}
    assert len(req.need(0x83).value) == 8
    # the IPA answers the first: BF52 { A0 ipaEuiccData { A0 notificationsList, 87 txid } }
    bench.eim.queue_psmo(EID, [{"op": "enable", "iccid": ICCID_B}])
    run_on_card(bench, poll(bench))
    notes = tlv.decode(es10(bench.card, H("BF2B00"))).need(0xA0)
    data = tlv.encode(0xBF52, tlv.encode(0xA0, notes.raw + H("87020102")))
    ans = bench.post(provide(data))[1]
    seqs = [n.need(0xBF2F).need(0x80).as_int() for n in notes]
    assert [c.as_int() for c in tlv.decode(ans).need(0xBF53)] == seqs
    res = bench.eim.results(EID)[-1]
    assert (res["kind"], res["eimTransactionId"], res["response"]) == (
        "ipaEuiccDataResponse", "0102", "ipaEuiccData")
    assert res["package"] == bench.eim.delivered(EID)[0]["id"]
    # the trigger's result: BF54 { 82 txid, 30 { 80 profileDownloadErrorReason } }
    ans = bench.post(provide(tlv.encode(0xBF54, H("82020A0B") + H("300380017F"))))[1]
    assert ans == H("BF50023000")
    res = bench.eim.results(EID)[-1]
    assert (res["result"], res["errorCode"], res["package"]) == (
        "profileDownloadError", 127, bench.eim.delivered(EID)[1]["id"])
    # eimPackageResultResponseError [0] { 80 txid, 02 code }
    assert bench.post(provide(H("A007800201020201") + b"\x01"))[0] == 200
    assert bench.eim.results(EID)[-1]["errorName"] == "invalidPackageFormat"


def test_download_relays_answer_their_error_alternative(bench):
    # the answers' alternatives are all untagged, so AUTOMATIC TAGS number them:
    # InitiateAuthenticationResponseEsipa { [0] ok, [1] error } ...
    challenge = tlv.encode(0xBF39, tlv.encode(0x81, b"\x11" * 16))
    assert bench.post(challenge) == (200, H("BF390381017F"))
    assert bench.post(H("BF3B0580030102FF"))[1] == H("BF3B0382017F")
    assert bench.post(H("BF3A0580030102FF"))[1] == H("BF3A0381017F")
    assert bench.post(H("BF41050403010203"))[1] == H("BF410381017F")
    assert "not available" in bench.eim.requests[-1]["note"]


def test_malformed_input_gets_400_and_the_server_keeps_serving(bench):
    bad = [b"", b"\x00", H("BF4F"), H("BF4F05"), H("BF4F035A0189FF"), H("BF2003020101"),
           H("BF5000"), H("BF5003800101"), H("BF500830060201010201FF"), H("BF3D00"),
           H("BF3D03A00130"), H("BF4E00"), H("BF5105A003300100"),
           H("BF50") + b"\x84\x7f\xff\xff\xff", b"\xff" * 100, H("BF4F0481FF0000")]
    for body in bad:
        status, text = bench.post(body)
        assert status == 400, (body.hex(), status, text)
        assert text.strip(), body.hex()
    assert bench.net.connections == 1  # 400s kept the connection
    assert poll(bench) == NO_PACKAGE
    # a huge integer is refused without being converted
    big = tlv.encode(0xBF50, tlv.encode(0xBF51, tlv.encode(0xA0, tlv.encode(
        0x30, H("800161") + tlv.encode(0x81, b"\x01" * 50000)) + H("5F3700"))))
    assert bench.post(big)[0] == 400
    # wrong headers
    assert bench.net.post(ASN1_PATH, get_eim_package(), "text/plain")[0] == 415
    assert bench.net.post(ASN1_PATH, get_eim_package(), ASN1_CONTENT_TYPE,
                          headers={"X-Admin-Protocol": "nope"})[0] == 400
    assert bench.net.post("/nowhere", get_eim_package(), ASN1_CONTENT_TYPE)[0] == 404
    assert poll(bench) == NO_PACKAGE
    errors = [r for r in bench.eim.requests if r["status"] == 400]
    assert errors and all(r["error"] for r in errors)


def test_raw_socket_abuse(bench):
    """Oversized, missing and lying Content-Length; garbage; a stalled handshake."""
    import ssl
    ctx = ssl.create_default_context(cadata=pki.load_certificate(
        bench.eim.tls_files["ca_cert"]).public_bytes(
            __import__("cryptography").hazmat.primitives.serialization.Encoding.PEM).decode())

    def raw(req, read=True):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", bench.eim.port), timeout=5),
                            server_hostname="127.0.0.1")
        s.sendall(req)
        out = b""
        if read:
            while True:
                try:
                    d = s.recv(4096)
                except (socket.timeout, ConnectionError, ssl.SSLError):
                    break
                if not d:
                    break
                out += d
        s.close()
        return out

    head = ("POST /gsma/rsp2/asn1 HTTP/1.1\r\nHost: x\r\nX-Admin-Protocol: gsma/rsp/v2.1.0\r\n"
            "Content-Type: application/x-gsma-rsp-asn1\r\n")
    assert raw((head + "Content-Length: 99999999\r\n\r\n").encode()).startswith(b"HTTP/1.1 413")
    assert raw((head + "\r\n").encode()).startswith(b"HTTP/1.1 411")
    assert raw((head + "Content-Length: x\r\n\r\n").encode()).startswith(b"HTTP/1.1 400")
    raw((head + "Content-Length: 10\r\n\r\nabc").encode(), read=False)  # then hangs up
    assert raw(b"\x16\x03\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    plain = socket.create_connection(("127.0.0.1", bench.eim.port), timeout=5)
    plain.sendall(b"GET / HTTP/1.1\r\n\r\n")  # not TLS: the handshake fails, the server lives
    try:
        got = plain.recv(100)
    except ConnectionResetError:
        got = b""
    assert not got.startswith(b"HTTP")  # EOF, reset or a TLS alert: no HTTP without TLS
    plain.close()
    assert poll(bench) == NO_PACKAGE
    deadline = time.time() + 5
    while not any("closed after 3 of 10 bytes" in (r["error"] or "")
                  for r in bench.eim.requests):
        assert time.time() < deadline, [r["error"] for r in bench.eim.requests]
        time.sleep(0.02)
    assert [r["status"] for r in bench.eim.requests[:3]] == [413, 411, 400]
    assert bench.eim.handshake_failures


def test_keep_alive_one_connection_for_a_procedure(bench):
    bench.eim.queue_psmo(EID, [{"op": "getRAT"}])
    epr = run_on_card(bench, poll(bench))
    bench.post(provide(epr))
    assert poll(bench) == NO_PACKAGE
    assert poll(bench) == NO_PACKAGE
    assert bench.net.connections == 1
    assert len({r["conn"] for r in bench.eim.requests}) == 1


def test_trust_anchor_server_certificate_and_wrong_anchor(bench, tmp_path):
    with HttpsNetwork(bench.eim.url, trust=bench.eim.tls_server_cert_der) as net:
        assert net.post(ASN1_PATH, get_eim_package(), ASN1_CONTENT_TYPE)[1] == NO_PACKAGE
    with HttpsNetwork(bench.eim.url.replace("127.0.0.1", "localhost"),
                      trust=bench.eim.tls_ca_cert_der) as net:
        assert net.post(ASN1_PATH, get_eim_package(), ASN1_CONTENT_TYPE)[1] == NO_PACKAGE
    other = EimServer(str(tmp_path / "other"), api_port=None)  # another CA, not started
    with HttpsNetwork(bench.eim.url, trust=other.tls_ca_cert_der) as net:
        with pytest.raises(TransportError, match="verification"):
            net.post(ASN1_PATH, get_eim_package(), ASN1_CONTENT_TYPE)
    assert poll(bench) == NO_PACKAGE


def test_plain_http_lab_mode(tmp_path):
    with EimServer(str(tmp_path / "eim"), tls=False, api_port=None) as eim:
        assert eim.url.startswith("http://") and eim.tls_ca_cert_der is None
        with HttpsNetwork(eim.url, allow_http=True, timeout=10) as net:
            assert net.post(ASN1_PATH, get_eim_package(), ASN1_CONTENT_TYPE) == (200, NO_PACKAGE)


# ---- JSON binding ------------------------------------------------------------------------------


def jpost(b, function, obj):
    status, body = b.net.post("/gsma/rsp2/esipa/" + function,
                              json.dumps(obj).encode() if not isinstance(obj, bytes) else obj,
                              JSON_TYPE)
    try:
        return status, (json.loads(body) if body else None)
    except ValueError:
        return status, body  # a 4xx text reason


def test_json_binding_same_flows(bench):
    status, ans = jpost(bench, "getEimPackage", {"eidValue": EID})
    assert status == 200 and ans["eimPackageError"] == 1
    fes = ans["header"]["functionExecutionStatus"]
    assert fes["status"] == "Failed"
    assert (fes["statusCodeData"]["subjectCode"], fes["statusCodeData"]["reasonCode"]) == (
        "8.1.1", "3.7")
    assert jpost(bench, "getEimPackage", {"eidValue": OTHER_EID})[1]["eimPackageError"] == 2
    assert jpost(bench, "getEimPackage", {"eidValue": "12"})[1]["eimPackageError"] == 3
    assert jpost(bench, "getEimPackage", {})[1]["eimPackageError"] == 4

    bench.eim.queue_psmo(EID, [{"op": "enable", "iccid": ICCID_B}])
    ans = jpost(bench, "getEimPackage", {"eidValue": EID, "notifyStateChange": True,
                                         "stateChangeCause": 0,
                                         "rPlmn": base64.b64encode(H("214365")).decode()})[1]
    assert ans["header"]["functionExecutionStatus"]["status"] == "Executed-Success"
    package = base64.b64decode(ans["euiccPackageRequest"])
    signed = tlv.decode(package).need(0x30)
    eim_cert = pki.load_certificate(os.path.join(bench.pki_dir, "eim.crt"))
    assert pki.verify(eim_cert, pki.eim_signed_bytes(signed.raw, 1),
                      tlv.decode(package).need(0x5F37).value)
    assert bench.eim.store.get(EID)["state_changes"][-1]["stateChangeCause"] == 0

    epr = es10(bench.card, package)
    notes = tlv.decode(es10(bench.card, H("BF2B00"))).need(0xA0)
    result = tlv.encode(0x30, epr + notes.raw)
    status, ans = jpost(bench, "provideEimPackageResult",
                        {"eidValue": EID, "eimPackageResult": base64.b64encode(result).decode()})
    acks = tlv.decode(base64.b64decode(ans["eimAcknowledgements"]))
    assert acks.tag == 0xBF53 and len(acks.children()) == 3
    assert bench.eim.results(EID)[-1]["euiccPackageResult"]["signatureValid"] is True

    status, ans = jpost(bench, "handleNotification",
                        {"pendingNotification": base64.b64encode(notes.children()[0].raw).decode()})
    assert (status, ans) == (204, None)
    assert bench.eim.notifications(EID)[-1]["via"] == "handleNotification"
    ans = jpost(bench, "provideEimPackageResult",
                {"eidValue": OTHER_EID, "eimPackageResult": base64.b64encode(epr).decode()})[1]
    assert ans["header"]["functionExecutionStatus"]["statusCodeData"]["reasonCode"] == "3.9"

    ans = jpost(bench, "initiateAuthentication", {"euiccChallenge": "AAAA"})[1]
    assert ans["header"]["functionExecutionStatus"]["status"] == "Failed"
    assert jpost(bench, "noSuchFunction", {})[0] == 404
    assert jpost(bench, "getEimPackage", b"{not json")[0] == 400
    assert jpost(bench, "getEimPackage", b"[1]")[0] == 400
    assert jpost(bench, "provideEimPackageResult", {"eimPackageResult": "!!"})[0] == 400
    assert jpost(bench, "handleNotification", {})[0] == 400
    assert bench.net.post("/gsma/rsp2/esipa/getEimPackage", b"{}", ASN1_CONTENT_TYPE)[0] == 415
    assert bench.net.connections == 1
    assert {r["binding"] for r in bench.eim.requests} == {"json"}


# ---- operator API and CLI ----------------------------------------------------------------------


def cli(capsys, *argv):
    code = eim_main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def test_operator_cli_end_to_end(bench, capsys):
    bench.eim.service.max_offers = 1  # the data request and trigger get no result here
    api = ["--api", bench.eim.api_url]
    code, out, _ = cli(capsys, "psmo", EID, "enable", ICCID_B, "--rollback", *api)
    assert code == 0 and out["kind"] == "psmo"
    assert out["params"]["ops"] == [{"op": "enable", "iccid": ICCID_B, "rollback": True}]
    code, out, _ = cli(capsys, "queue", EID, *api)
    assert len(out) == 1
    ans = poll(bench)
    signed, _ = parse_package(ans)
    assert signed.need(0xA0).raw == tlv.encode(0xA0, tlv.encode(0xA3, iccid_tlv(ICCID_B) +
                                                                 H("0500")))
    bench.post(provide(run_on_card(bench, ans)))
    code, out, _ = cli(capsys, "results", EID, *api)
    assert code == 0 and out[-1]["euiccPackageResult"]["results"][0]["name"] == "enableResult"
    code, out, _ = cli(capsys, "notifications", EID, *api)
    assert code == 0 and out == []
    code, out, _ = cli(capsys, "data-request", EID, "--tags", "80,A2", *api)
    assert code == 0 and out["params"]["tagList"] == "80,A2"
    assert tlv.decode(poll(bench)).need(0xBF52).need(0x5C).value == H("80A2")
    code, out, _ = cli(capsys, "trigger", EID, "LPA:1$smdp.example$X", *api)
    assert code == 0
    trig = tlv.decode(poll(bench)).need(0xBF54)
    assert trig.need(0xA0).need(0x80).value == b"LPA:1$smdp.example$X"
    code, out, _ = cli(capsys, "eco", EID, "addEim", "second-eim", "--fqdn", "eim2.example",
                       "--eim-cert", os.path.join(bench.pki_dir, "eim.crt"), *api)
    assert code == 0
    signed, _ = parse_package(poll(bench))
    assert signed.need(0xA1).children()[0].tag == 0xA8
    code, out, _ = cli(capsys, "show", EID, *api)
    assert out["counter"] == 2 and out["associationToken"] == 1 and out["queued"] == 0
    code, out, _ = cli(capsys, "log", EID, *api)
    assert code == 0 and out[-1]["function"] == "getEimPackage"
    assert out[-1]["request"] == get_eim_package().hex().upper()
    code, out, _ = cli(capsys, "register", OTHER_EID, "--token", "7", "--counter", "41", *api)
    assert code == 0 and out["counter"] == 41 and out["associationToken"] == 7
    code, out, _ = cli(capsys, "eids", *api)
    assert out == sorted([EID, OTHER_EID])
    # refusals: exit 1 with the eIM's reason
    code, _, err = cli(capsys, "psmo", EID, "enable", "123", *api)
    assert code == 1 and "iccid" in err
    code, _, err = cli(capsys, "results", "89049032123451234512345678909999", *api)
    assert code == 1 and "not known" in err
    code, _, err = cli(capsys, "psmo", EID, "getRAT", "--api", "http://127.0.0.1:1")
    assert code == 2 and "cannot reach" in err


def test_operator_api_direct(bench):
    import urllib.error
    import urllib.request

    def call(method, path, body=None):
        req = urllib.request.Request(bench.eim.api_url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    assert call("POST", "/eids/%s/psmo" % EID, {"ops": [{"op": "listEim"}]})[0] == 400
    assert call("POST", "/eids/%s/psmo" % EID, {"ops": []})[0] == 400
    assert call("POST", "/eids/123/psmo", {"ops": [{"op": "getRAT"}]})[0] == 400
    assert call("POST", "/eids/%s/eco" % EID, {"ops": [{"op": "getRAT"}]})[0] == 400
    assert call("POST", "/eids/%s/ipa-data-request" % EID, {"tagList": "1F"})[0] == 400
    assert call("POST", "/eids/%s/download-trigger" % EID,
                {"activationCode": "x", "contactDefaultSmdp": True})[0] == 400
    assert call("POST", "/eids/%s/nothing" % EID, {})[0] == 404
    status, item = call("POST", "/eids/%s/download-trigger" % EID, {"contactDefaultSmdp": True})
    assert status == 201
    assert call("GET", "/eids/%s/queue" % EID)[1][0]["id"] == item["id"]
    assert call("DELETE", "/eids/%s/queue" % EID) == (200, {"dropped": 1})
    assert call("GET", "/eids/%s/nope" % EID)[0] == 404
    assert call("GET", "/eids/%s" % OTHER_EID)[0] == 404
    assert call("GET", "/elsewhere")[0] == 404
    assert poll(bench) == NO_PACKAGE


def test_serve_command_in_a_process(tmp_path):
    folder = str(tmp_path / "eim")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipa_host.sim.eim.eim", "serve", "--dir", folder, "--port", "0",
         "--api-port", "0", "--token", "3"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info_path = os.path.join(folder, "server.json")
        deadline = time.time() + 20
        while not os.path.exists(info_path):
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline
            time.sleep(0.05)
        info = json.load(open(info_path))
        out = subprocess.run(
            [sys.executable, "-m", "ipa_host.sim.eim.eim", "psmo", EID, "disable", ICCID_A, "--dir",
             folder], cwd=REPO, capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["kind"] == "psmo"
        with open(info["tls_ca_cert"], "rb") as f:
            ca_pem = f.read()
        with HttpsNetwork(info["url"], trust=ca_pem, timeout=10) as net:
            signed, sig = parse_package(net.post(ASN1_PATH, get_eim_package(),
                                                 ASN1_CONTENT_TYPE)[1])
        eim_cert = pki.load_certificate(os.path.join(folder, "pki", "eim.crt"))
        assert pki.verify(eim_cert, pki.eim_signed_bytes(signed.raw, 3), sig)
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
    assert "ESipa at https://127.0.0.1:" in proc.stdout.read()


def test_state_is_written_atomically(bench):
    bench.eim.queue_psmo(EID, [{"op": "getRAT"}])
    poll(bench)
    folder = os.path.join(str(bench.tmp), "eim", "eids")
    assert sorted(os.listdir(folder)) == [EID + ".json"]
    rec = json.load(open(os.path.join(folder, EID + ".json")))
    assert rec["counter"] == 1 and rec["association_token"] == 1 and rec["queue"] == []


def test_independent_of_the_ipa_message_modules():
    code = ("import sys, ipa_host.sim.eim.eim, ipa_host.sim.eim.eim_cli; "
            "bad = [m for m in sys.modules if m.split('.')[:2] in "
            "(['ipa_core', 'es10'], ['ipa_core', 'esipa'], ['ipa_core', 'es9p'], "
            "['ipa_core', 'ipa']) or m.startswith(('ipa_core.esipa', 'ipa_core.es10'))]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_serve_for_an_ipa_home_takes_the_homes_eim_key(tmp_path):
    """`ipa-sim eim serve --dir <home>/eim` without --pki signs with <home>/sim/pki/eim.key,
    the key the home's virtual eUICC trusts; any other folder keeps DIR/pki."""
    from ipa_host.sim.eim.eim_cli import home_pki
    from ipa_host.sim.home import open_home_euicc

    home = str(tmp_path / "home")
    open_home_euicc(home)  # provisions <home>/sim/pki with the eIM key
    assert home_pki(os.path.join(home, "eim")) == os.path.join(home, "sim", "pki")
    assert home_pki(os.path.join(home, "eim") + os.sep) == os.path.join(home, "sim", "pki")
    assert home_pki(str(tmp_path / "elsewhere" / "eim")) is None
    assert home_pki(os.path.join(home, "eim2")) is None


def test_relay_refuses_compact_responses_it_cannot_forward():
    """AuthenticateClient / GetBoundProfilePackage carrying the compact (minimizeEsipaBytes)
    eUICC response: the relay answers the ESipa error undefinedError (127) and its note says
    which response was compact; nothing goes to an SM-DP+."""
    from ipa_core import tlv
    from ipa_host.sim.eim import eim_relay as er

    def no_network(address):
        raise AssertionError("no SM-DP+ may be called, got %s" % address)

    relay = er.SmdpRelay(network_factory=no_network)
    tid = bytes(range(16))
    compact = tlv.enc(0xA2, tlv.encode(0x80, tid))
    for tag, inner, name in ((er.AUTHENTICATE_CLIENT, 0xBF38, "authenticateServerResponse"),
                             (er.GET_BOUND_PROFILE_PACKAGE, 0xBF21, "prepareDownloadResponse")):
        req = tlv.decode(tlv.enc(tag, tlv.encode(0x80, tid), tlv.enc(inner, compact)))
        answer, note = relay.handle(req)
        assert answer == er.error_answer(tag, 127)
        assert "compact %s (minimizeEsipaBytes) is not supported" % name in note, note
