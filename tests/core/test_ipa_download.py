"""ipa_core.ipa_download: the profile download procedure against a scripted eUICC (every ES10
request checked byte for byte) and a scripted SM-DP+ (every ES9+ request checked as JSON).

What a user would check: the steps run in the spec's order, the package goes segment by
segment with progress, a failure at any point cancels the session on the eUICC and on the
server, a confirmation code is hashed as SGP.22 says, an early error result stops the load.
Plain functions with assert (pytest on CPython, tools/mp_test.py on MicroPython).
"""

from ipa_core.compat import json
from ipa_core.compat import a2b_base64, b2a_base64, hexlify, unhexlify

from ipa_core import es9p, tlv
from ipa_core import ipa_download as dl
from ipa_core.errors import CardError, FunctionError, ProtocolError, TransportError
from ipa_core.ipa_direct import DirectTransport

from scripted import ScriptedSession

TID = unhexlify("0123456789ABCDEF0123456789ABCDEF")
TID_HEX = "0123456789ABCDEF0123456789ABCDEF"
CHALLENGE = bytes(range(16))
ICCID = unhexlify("98940000000000000010")  # 89490000000000000001, nibble-swapped
INFO1 = tlv.enc(0xBF20, tlv.encode(0x82, b"\x02\x03\x00"),
                tlv.enc(0xA9, tlv.encode(0x04, b"\x11" * 20)),
                tlv.enc(0xAA, tlv.encode(0x04, b"\x11" * 20)))
SS1 = tlv.enc(0x30, tlv.encode(0x80, TID), tlv.encode(0x81, CHALLENGE),
              tlv.encode(0x83, b"dp.example"), tlv.encode(0x84, b"\x22" * 16))
SIG = tlv.encode(0x5F37, b"\x33" * 64)
PKID = tlv.encode(0x04, b"\x11" * 20)
CERT = tlv.enc(0x30, tlv.enc(0x30, tlv.encode(0x02, b"\x01")), tlv.encode(0x03, b"\x00\x44"))
METADATA = tlv.enc(0xBF25, tlv.encode(0x5A, ICCID), tlv.encode(0x91, b"Test SP"),
                   tlv.encode(0x92, b"Test profile"))
ASR_OK = tlv.enc(0xBF38, tlv.enc(0xA0, tlv.enc(0x30, tlv.encode(0x80, TID)), SIG, CERT, CERT))
ASR_ERR = tlv.enc(0xBF38, tlv.enc(0xA1, tlv.encode(0x80, TID), tlv.encode(0x02, b"\x06")))
PDR_OK = tlv.enc(0xBF21, tlv.enc(0xA0, tlv.enc(0x30, tlv.encode(0x80, TID),
                                               tlv.encode(0x5F49, b"\x04" + b"\x55" * 64)), SIG))
PDR_ERR = tlv.enc(0xBF21, tlv.enc(0xA1, tlv.encode(0x80, TID), tlv.encode(0x02, b"\x02")))
CSR = tlv.enc(0xBF41, tlv.enc(0xA0, tlv.enc(0x30, tlv.encode(0x80, TID),
                                            tlv.encode(0x06, b"\x2b\x06\x01"),
                                            tlv.encode(0x82, b"\x7f")), SIG))
CSR_ERR = tlv.enc(0xBF41, tlv.encode(0x81, b"\x05"))
# CtxParams1 with matchingId ABC-123, tac 00000000, eutranEpcSupportedRelease [5] 15.0.0
CTX = "A0 18 80 07 4142432D313233 A1 0D 80 04 00000000 A1 05 85 03 0F0000"
BPP_PARTS = [
    tlv.enc(0xBF23, tlv.encode(0x80, TID), tlv.encode(0x81, b"\x01")),
    tlv.enc(0xA0, tlv.encode(0x87, b"\xaa" * 8)),
    tlv.encode(0xA1, tlv.encode(0x88, b"\xbb" * 5) + tlv.encode(0x88, b"\xbc" * 5)),
    tlv.encode(0xA3, tlv.encode(0x86, b"\xcc" * 300) + tlv.encode(0x86, b"\xcd" * 7) +
               tlv.encode(0x86, b"\xce" * 9)),
]
BPP = tlv.encode(0xBF36, b"".join(BPP_PARTS))
OK_HDR = {"functionExecutionStatus": {"status": "Executed-Success"}}


def pir(success=True):
    meta = tlv.enc(0xBF2F, tlv.encode(0x80, b"\x07"), tlv.encode(0x81, b"\x07\x80"),
                   tlv.encode(0x0C, b"dp.example"), tlv.encode(0x5A, ICCID))
    if success:
        final = tlv.enc(0xA2, tlv.enc(0xA0, tlv.encode(0x4F, b"\xa0\x00\x00\x05\x59\x10\x10"),
                                      tlv.encode(0x04, b"\x90\x00")))
    else:
        final = tlv.enc(0xA2, tlv.enc(0xA1, tlv.encode(0x80, b"\x03"), tlv.encode(0x81, b"\x08")))
    return tlv.enc(0xBF37, tlv.enc(0xBF27, tlv.encode(0x80, TID), meta,
                                   tlv.encode(0x06, b"\x2b\x06\x01"), final), SIG)


def segments():
    """The BPP cut by hand as SGP.22 2.5.5 says, independent of es10.bpp_segments."""
    head = BPP[:BPP.index(BPP_PARTS[0])]
    a1, a3 = BPP_PARTS[2], BPP_PARTS[3]
    out = [head + BPP_PARTS[0], BPP_PARTS[1], a1[:2]]
    out += [tlv.encode(0x88, b"\xbb" * 5), tlv.encode(0x88, b"\xbc" * 5), a3[:4]]
    out += [tlv.encode(0x86, b"\xcc" * 300), tlv.encode(0x86, b"\xcd" * 7),
            tlv.encode(0x86, b"\xce" * 9)]
    assert b"".join(out) == BPP
    return out


def b64(b):
    return b2a_base64(b).decode().strip()


def hx(b):
    return hexlify(b).decode().upper()


# ---- scripted peers ----------------------------------------------------------------------


class Recorder:
    """A ScriptedSession that also writes ("es10", tag) into a shared timeline."""

    def __init__(self, exchanges, timeline):
        self.s = ScriptedSession(exchanges)
        self.version = "1.2"
        self.timeline = timeline

    def store_data(self, req):
        self.timeline.append(("es10", hx(req[:2])))
        return self.s.store_data(req)

    def done(self):
        self.s.done()


class Es9Net:
    """A scripted SM-DP+: [(function, expected request dict or None, (status, response obj))]."""

    def __init__(self, script, timeline):
        self.script = list(script)
        self.timeline = timeline
        self.requests = []
        self.closed = False

    def post(self, path, body, content_type, headers=None):
        assert content_type == "application/json", content_type
        assert headers["X-Admin-Protocol"] == "gsma/rsp/v2.1.0", headers
        assert path.startswith("/gsma/rsp2/es9plus/"), path
        fn = path[len("/gsma/rsp2/es9plus/"):]
        self.timeline.append(("es9", fn))
        assert self.script, "unexpected ES9+ %s" % fn
        want_fn, want, answer = self.script.pop(0)
        assert fn == want_fn, "ES9+ %s, expected %s" % (fn, want_fn)
        got = json.loads(body)
        self.requests.append((fn, got))
        if want is not None:
            assert got == want, "%s request\n got %r\n want %r" % (fn, got, want)
        status, obj = answer
        if isinstance(obj, Exception):
            raise obj
        return status, (b"" if obj is None else json.dumps(obj).encode())

    def close(self):
        self.closed = True

    def done(self):
        assert not self.script, "ES9+ calls left: %r" % ([s[0] for s in self.script],)


def ia_ok():
    return (200, {"header": OK_HDR, "transactionId": TID_HEX, "serverSigned1": b64(SS1),
                  "serverSignature1": b64(SIG), "euiccCiPKIdToBeUsed": b64(PKID),
                  "serverCertificate": b64(CERT)})


def ac_ok(cc=False):
    ss2 = tlv.enc(0x30, tlv.encode(0x80, TID), tlv.encode(0x01, b"\xff" if cc else b"\x00"))
    return (200, {"header": OK_HDR, "transactionId": TID_HEX, "profileMetadata": b64(METADATA),
                  "smdpSigned2": b64(ss2), "smdpSignature2": b64(SIG),
                  "smdpCertificate": b64(CERT)})


def gbpp_ok():
    return (200, {"header": OK_HDR, "transactionId": TID_HEX, "boundProfilePackage": b64(BPP)})


def failed(subject, reason):
    return (200, {"header": {"functionExecutionStatus": {
        "status": "Failed", "statusCodeData": {"subjectCode": subject, "reasonCode": reason}}}})


def cancel_ok():
    return (200, {"header": OK_HDR})


def es10_head(cc_hash=None, ctx=CTX):
    """The ES10 exchanges up to PrepareDownload (answered OK)."""
    auth = hx(tlv.enc(0xBF38, SS1, SIG, PKID, CERT, unhexlify(ctx.replace(" ", ""))))
    ss2 = tlv.enc(0x30, tlv.encode(0x80, TID), tlv.encode(0x01, b"\xff" if cc_hash else b"\x00"))
    prep = hx(tlv.enc(0xBF21, ss2, SIG, None if cc_hash is None else tlv.encode(0x04, cc_hash),
                      CERT))
    return [("BF20 00", INFO1), ("BF2E 00", "BF2E 12 80 10" + hx(CHALLENGE)),
            (auth, ASR_OK), (prep, PDR_OK)]


def load_script(answer_at=None, answer=None):
    """STORE DATA of every segment; the last (or `answer_at`) answered with `answer`."""
    segs = segments()
    out = []
    for i in range(len(segs)):
        last = i == len(segs) - 1 if answer_at is None else i == answer_at
        out.append((hx(segs[i]), (answer or pir()) if last else b""))
        if last:
            break
    return out


def cancel_es10(reason, answer=CSR):
    return [("BF41 15 80 10" + TID_HEX + "81 01 %02X" % reason, answer)]


def es9_requests_ok():
    return [("initiateAuthentication", {"euiccChallenge": b64(CHALLENGE), "euiccInfo1": b64(INFO1),
                                        "smdpAddress": "dp.example"}, ia_ok()),
            ("authenticateClient", {"transactionId": TID_HEX,
                                    "authenticateServerResponse": b64(ASR_OK)}, ac_ok()),
            ("getBoundProfilePackage", {"transactionId": TID_HEX,
                                        "prepareDownloadResponse": b64(PDR_OK)}, gbpp_ok())]


def expect_error(fn, stage):
    try:
        fn()
    except dl.DownloadError as e:
        assert e.stage == stage, "stage %r, expected %r (%s)" % (e.stage, stage, e)
        return e
    raise AssertionError("no DownloadError")


# ---- tests -------------------------------------------------------------------------------


def test_direct_download_in_order_segment_by_segment():
    tl = []
    card = Recorder(es10_head() + load_script(), tl)
    net = Es9Net(es9_requests_ok(), tl)
    seen = []
    r = dl.download(card, DirectTransport(net), activation="LPA:1$dp.example$ABC-123",
                    progress=lambda done, total: seen.append((done, total)))
    card.done()
    net.done()
    assert r["ok"] is True and r["iccid"] == "89490000000000000001"
    assert r["transactionId"] == TID_HEX and r["segments"] == [9, 9]
    assert r["pir"]["raw"] == pir() and r["profileMetadata"]["raw"] == METADATA
    assert r["profileMetadata"]["serviceProviderName"] == "Test SP"
    # streamed: the total is an estimate until the last segment was read
    assert [d for d, _ in seen] == list(range(10)) and seen[-1] == (9, 9)
    assert tl == [("es10", "BF20"), ("es10", "BF2E"), ("es9", "initiateAuthentication"),
                  ("es10", "BF38"), ("es9", "authenticateClient"), ("es10", "BF21"),
                  ("es9", "getBoundProfilePackage")] + [("es10", hx(x[:2])) for x in segments()]
    assert "cancel" not in r


def test_hash_cc_known_answer():
    # SHA-256(SHA-256("12345678") | TID), computed with openssl dgst outside Python.
    assert hx(dl.hash_cc("12345678", TID)) == \
        "A1370440A38BA522A1518B10200EC765DA6A7B2E5AFD2A696DE8592FD4A0928F"
    assert dl.hash_cc(b"12345678", TID) == dl.hash_cc("12345678", TID)


def test_confirmation_code_goes_into_prepare_download():
    tl = []
    hcc = unhexlify("A1370440A38BA522A1518B10200EC765DA6A7B2E5AFD2A696DE8592FD4A0928F")
    card = Recorder(es10_head(cc_hash=hcc) + load_script(), tl)
    script = es9_requests_ok()
    script[1] = (script[1][0], script[1][1], ac_ok(cc=True))
    net = Es9Net(script, tl)
    r = dl.download(card, DirectTransport(net), activation="1$dp.example$ABC-123$$1",
                    confirmation_code="12345678")
    card.done()
    net.done()
    assert r["ok"]


def test_missing_confirmation_code_cancels_both_sides():
    tl = []
    head = es10_head()[:3]
    card = Recorder(head + cancel_es10(0), tl)  # endUserRejection
    script = es9_requests_ok()[:2]
    script[1] = (script[1][0], script[1][1], ac_ok(cc=True))
    script.append(("cancelSession", {"transactionId": TID_HEX,
                                     "cancelSessionResponse": b64(CSR)}, cancel_ok()))
    net = Es9Net(script, tl)
    e = expect_error(lambda: dl.download(card, DirectTransport(net),
                                         activation="1$dp.example$ABC-123"),
                     "confirmation code")
    card.done()
    net.done()
    assert e.reason == "endUserRejection" and "confirmation code" in str(e)
    assert e.result["cancel"] == {"reason": "endUserRejection", "euicc": True, "server": True}
    assert tl[-2:] == [("es10", "BF41"), ("es9", "cancelSession")]


def test_early_error_result_stops_the_load():
    tl = []
    card = Recorder(es10_head() + load_script(answer_at=3, answer=pir(False)), tl)
    net = Es9Net(es9_requests_ok(), tl)
    seen = []
    r = dl.download(card, DirectTransport(net), activation="1$dp.example$ABC-123",
                    progress=lambda done, total: seen.append(done))
    card.done()  # no segment after the 4th was sent
    net.done()
    assert r["ok"] is False and r["pir"]["error"] == "scp03tSecurityError"
    assert r["segments"] == [4, 9] and seen == [0, 1, 2, 3, 4]
    assert "cancel" not in r  # the eUICC ended the session itself; the PIR reports it


def fail_at_server(step, subject, reason, stage):
    """The SM-DP+ refuses `step`: CancelSession on the eUICC, then on the SM-DP+."""
    tl = []
    ok = es9_requests_ok()
    n = [s[0] for s in ok].index(step)
    es10 = es10_head()[:2 + n] + cancel_es10(127)
    script = ok[:n] + [(step, ok[n][1], failed(subject, reason)),
                       ("cancelSession", {"transactionId": TID_HEX,
                                          "cancelSessionResponse": b64(CSR)}, cancel_ok())]
    card = Recorder(es10, tl)
    net = Es9Net(script, tl)
    e = expect_error(lambda: dl.download(card, DirectTransport(net),
                                         activation="1$dp.example$ABC-123"), stage)
    card.done()
    net.done()
    assert isinstance(e.cause, es9p.Es9Error) and e.cause.subject_code == subject
    assert e.result["cancel"] == {"reason": "undefinedReason", "euicc": True, "server": True}
    return e


def test_authenticate_client_refused():
    e = fail_at_server("authenticateClient", "8.2.6", "3.8", "AuthenticateClient")
    assert "matchingIdRefused" in str(e)


def test_get_bound_profile_package_refused():
    e = fail_at_server("getBoundProfilePackage", "8.2.7", "3.8", "GetBoundProfilePackage")
    assert "confirmationCodeRefused" in str(e)


def test_initiate_authentication_refused_cancels_nothing():
    tl = []
    card = Recorder(es10_head()[:2], tl)
    net = Es9Net([("initiateAuthentication", None, failed("8.8.2", "3.1"))], tl)
    e = expect_error(lambda: dl.download(card, DirectTransport(net),
                                         activation="1$dp.example$ABC-123"),
                     "InitiateAuthentication")
    card.done()
    net.done()
    assert e.reason is None and "cancel" not in e.result
    assert "ciPKIdNotSupported" in str(e)


def test_card_failure_during_load_cancels_with_load_bpp_execution_error():
    tl = []
    segs = segments()
    loads = [(hx(segs[i]), b"") for i in range(4)] + [(hx(segs[4]), CardError(0x6F00))]
    card = Recorder(es10_head() + loads + cancel_es10(5), tl)
    net = Es9Net(es9_requests_ok() + [("cancelSession", None, cancel_ok())], tl)
    e = expect_error(lambda: dl.download(card, DirectTransport(net),
                                         activation="1$dp.example$ABC-123"),
                     "ES10b.LoadBoundProfilePackage")
    card.done()
    net.done()
    assert e.reason == "loadBppExecutionError" and isinstance(e.cause, CardError)
    assert e.result["cancel"]["server"] is True


def test_prepare_download_error_is_forwarded_then_cancelled():
    tl = []
    head = es10_head()
    head[3] = (head[3][0], PDR_ERR)
    card = Recorder(head + cancel_es10(127), tl)
    ok = es9_requests_ok()
    script = ok[:2] + [("getBoundProfilePackage", {"transactionId": TID_HEX,
                                                   "prepareDownloadResponse": b64(PDR_ERR)},
                        failed("8.1", "6.1")), ("cancelSession", None, cancel_ok())]
    net = Es9Net(script, tl)
    e = expect_error(lambda: dl.download(card, DirectTransport(net),
                                         activation="1$dp.example$ABC-123"),
                     "GetBoundProfilePackage")
    card.done()
    net.done()
    assert e.result["cancel"]["euicc"] and e.result["cancel"]["server"]


def test_authenticate_server_error_is_forwarded():
    tl = []
    head = es10_head()[:3]
    head[2] = (head[2][0], ASR_ERR)
    card = Recorder(head + cancel_es10(127, CSR_ERR), tl)
    ok = es9_requests_ok()
    # a lax server answers OK: the IPA stops anyway
    script = ok[:1] + [("authenticateClient", {"transactionId": TID_HEX,
                                               "authenticateServerResponse": b64(ASR_ERR)},
                        ac_ok())]
    net = Es9Net(script, tl)
    e = expect_error(lambda: dl.download(card, DirectTransport(net),
                                         activation="1$dp.example$ABC-123"),
                     "ES10b.AuthenticateServer")
    card.done()
    net.done()  # no server cancelSession: the eUICC had no session to sign a cancel for
    assert "euiccChallengeMismatch" in str(e)
    assert e.result["cancel"]["euicc"] is False and "invalidTransactionId" in \
        e.result["cancel"]["euiccError"]


def test_network_failure_still_tries_both_cancels():
    tl = []
    card = Recorder(es10_head()[:4] + cancel_es10(127), tl)
    ok = es9_requests_ok()
    script = ok[:2] + [("getBoundProfilePackage", None, (0, TransportError("link down"))),
                       ("cancelSession", None, (0, TransportError("link down")))]
    net = Es9Net(script, tl)
    e = expect_error(lambda: dl.download(card, DirectTransport(net),
                                         activation="1$dp.example$ABC-123"),
                     "GetBoundProfilePackage")
    card.done()
    net.done()
    assert isinstance(e.cause, TransportError)
    assert e.result["cancel"]["euicc"] is True and e.result["cancel"]["server"] is False
    assert "link down" in e.result["cancel"]["serverError"]


def test_http_error_status():
    tl = []
    card = Recorder(es10_head()[:2], tl)
    net = Es9Net([("initiateAuthentication", None, (503, None))], tl)
    e = expect_error(lambda: dl.download(card, DirectTransport(net),
                                         activation="1$dp.example$ABC-123"),
                     "InitiateAuthentication")
    assert "HTTP 503" in str(e)


def test_bad_activation_code_sends_nothing():
    card = ScriptedSession([])
    try:
        dl.download(card, DirectTransport(Es9Net([], [])), activation="1$dp.example")
    except ValueError as e:
        assert "at least 3" in str(e)
    else:
        raise AssertionError("accepted")
    card.done()


def test_immediate_enable_after_success():
    tl = []
    card = Recorder(es10_head() + load_script() + [("BF5A 03 80 01 FF", "BF5A 03 80 01 00")], tl)
    net = Es9Net(es9_requests_ok(), tl)
    r = dl.download(card, DirectTransport(net), activation="1$dp.example$ABC-123",
                    immediate_enable=True)
    card.done()
    assert r["immediateEnable"] == "ok"


def test_refused_metadata_cancels():
    tl = []
    card = Recorder(es10_head()[:3] + cancel_es10(0), tl)
    net = Es9Net(es9_requests_ok()[:2] + [("cancelSession", None, cancel_ok())], tl)
    e = expect_error(lambda: dl.download(card, DirectTransport(net),
                                         activation="1$dp.example$ABC-123",
                                         confirm=lambda md: md["iccid"] != "89490000000000000001"),
                     "profile confirmation")
    card.done()
    net.done()
    assert e.reason == "endUserRejection"


# ---- indirect (ESipa relay through the eIM) ------------------------------------------------


class FakeIpa:
    """What IndirectTransport / DownloadHandler use of ipa_core.ipa.Ipa."""

    def __init__(self, session, answers, binding="asn1", eim=None):
        self.session = session
        self.answers = list(answers)
        self.sent = []
        self.config = {"binding": binding, "device_info": None}
        self.eim = eim
        self.notes = []

    def _post(self, function, message):
        self.sent.append((function, message))
        return self.answers.pop(0)

    def note(self, level, msg):
        self.notes.append((level, msg))


EIM_TID = b"\x0e\x0f"


def esipa_answers():
    ia = tlv.enc(0xBF39, tlv.enc(0xA0, tlv.encode(0x80, TID), SS1, SIG, PKID, CERT))
    ss2 = tlv.enc(0x30, tlv.encode(0x80, TID), tlv.encode(0x01, b"\x00"))
    ac = tlv.enc(0xBF3B, tlv.enc(0xA0, tlv.encode(0x80, TID), METADATA, ss2, SIG, CERT))
    gb = tlv.enc(0xBF3A, tlv.enc(0xA0, tlv.encode(0x80, TID), BPP))
    return [ia, ac, gb]


def test_indirect_download_over_esipa():
    tl = []
    card = Recorder(es10_head() + load_script(), tl)
    ipa = FakeIpa(card, esipa_answers())
    r = dl.download(card, dl.IndirectTransport(ipa, EIM_TID), activation="1$dp.example$ABC-123")
    card.done()
    assert r["ok"] and r["transport"] == "indirect"
    assert [s[0] for s in ipa.sent] == ["initiateAuthentication", "authenticateClient",
                                        "getBoundProfilePackage"]
    assert hx(ipa.sent[0][1]) == hx(tlv.enc(0xBF39, tlv.encode(0x81, CHALLENGE),
                                            tlv.encode(0x83, b"dp.example"), INFO1,
                                            tlv.encode(0x82, EIM_TID)))
    assert ipa.sent[1][1] == tlv.enc(0xBF3B, tlv.encode(0x80, TID), ASR_OK)
    assert ipa.sent[2][1] == tlv.enc(0xBF3A, tlv.encode(0x80, TID), PDR_OK)


def test_indirect_failure_cancels_over_esipa():
    tl = []
    card = Recorder(es10_head()[:4] + cancel_es10(127), tl)
    answers = esipa_answers()[:2] + [tlv.enc(0xBF3A, tlv.encode(0x81, b"\x06")),
                                     tlv.enc(0xBF41, tlv.enc(0xA0))]
    ipa = FakeIpa(card, answers)
    e = expect_error(lambda: dl.download(card, dl.IndirectTransport(ipa), activation=
                                         "1$dp.example$ABC-123"), "GetBoundProfilePackage")
    card.done()
    assert isinstance(e.cause, FunctionError) and e.cause.name == "downloadOrderExpired"
    assert ipa.sent[-1] == ("cancelSession", tlv.enc(0xBF41, tlv.encode(0x80, TID),
                                                     tlv.encode(0xA1, tlv.decode(CSR).value)))
    assert e.result["cancel"] == {"reason": "undefinedReason", "euicc": True, "server": True}


# ---- indirect, streamed (ASN.1 binding: the BPP read from the network segment by segment) ------


class StreamIpa(FakeIpa):
    """FakeIpa with Ipa._post_stream: answers come as readers handing out 1..7 bytes per read;
    the timeline records when each reader was opened and closed."""

    def __init__(self, session, answers, timeline, binding="asn1", eim=None, length=True):
        FakeIpa.__init__(self, session, answers, binding, eim)
        self.timeline = timeline
        self.readers = []
        self.length = length  # False: the body's length is not announced (chunked)

    def _post(self, function, message):
        self.timeline.append(("esipa", function))
        return FakeIpa._post(self, function, message)

    def _post_stream(self, function, message):
        from test_stream import ChunkyReader

        self.timeline.append(("esipa-stream", function))
        self.sent.append((function, message))
        timeline = self.timeline

        class Reader(ChunkyReader):
            def close(self):
                timeline.append(("closed", function))
                ChunkyReader.close(self)

        r = Reader(self.answers.pop(0), length=self.length)
        self.readers.append(r)
        return r


class AheadCheck:
    """A Recorder wrapper: at each STORE DATA of the BPP, how far the stream was read ahead."""

    def __init__(self, card, ipa):
        self.card = card
        self.ipa = ipa
        self.version = card.version
        self.sent = 0
        self.ahead = 0
        self.largest = 0

    def store_data(self, req):
        if self.ipa.readers:
            self.sent += len(req)
            self.largest = max(self.largest, len(req))
            self.ahead = max(self.ahead, self.ipa.readers[-1].consumed - self.sent)
        return self.card.store_data(req)


def test_indirect_download_streams_the_package():
    tl = []
    card = Recorder(es10_head() + load_script(), tl)
    ipa = StreamIpa(card, esipa_answers(), tl)
    check = AheadCheck(card, ipa)
    seen = []
    r = dl.download(check, dl.IndirectTransport(ipa, EIM_TID), activation="1$dp.example$ABC-123",
                    progress=lambda done, total: seen.append((done, total)))
    card.done()
    assert r["ok"] and r["segments"] == [9, 9] and r["pir"]["raw"] == pir()
    assert [s[0] for s in ipa.sent] == ["initiateAuthentication", "authenticateClient",
                                        "getBoundProfilePackage"]
    assert ipa.sent[2][1] == tlv.enc(0xBF3A, tlv.encode(0x80, TID), PDR_OK)
    # the answer's wrapper and first segment came before the first STORE DATA, then each
    # segment was read just before it went to the eUICC: never a second one ahead
    wrapper = len(esipa_answers()[2]) - len(BPP)
    assert check.sent == len(BPP) and check.ahead <= wrapper + 256
    assert ipa.readers[0].consumed == len(esipa_answers()[2]) and ipa.readers[0].closed
    assert tl[-1] == ("closed", "getBoundProfilePackage")
    assert tl.index(("esipa-stream", "getBoundProfilePackage")) < tl.index(("es10", "BF36"))
    assert seen[-1] == (9, 9) and [d for d, _ in seen] == list(range(10))


def test_indirect_streamed_without_transaction_id_and_early_result():
    tl = []
    card = Recorder(es10_head() + load_script(answer_at=3, answer=pir(False)), tl)
    answers = esipa_answers()
    answers[2] = tlv.enc(0xBF3A, tlv.enc(0xA0, BPP))  # transactionId from BF23
    ipa = StreamIpa(card, answers, tl)
    r = dl.download(card, dl.IndirectTransport(ipa), activation="1$dp.example$ABC-123")
    card.done()
    assert r["ok"] is False and r["segments"] == [4, 9] and "cancel" not in r
    assert ipa.readers[0].closed


def streamed_failure(gbpp_answer, stage, transport_kw=None, loads=0, length=True):
    """The streamed GetBoundProfilePackage answer breaks: DownloadError at `stage`, the
    reader closed before ES10b.CancelSession and ESipa.CancelSession went out."""
    tl = []
    card = Recorder(es10_head()[:4] + load_script()[:loads] + cancel_es10(127), tl)
    answers = esipa_answers()[:2] + [gbpp_answer, tlv.enc(0xBF41, tlv.enc(0xA0))]
    ipa = StreamIpa(card, answers, tl, length=length)
    e = expect_error(lambda: dl.download(card, dl.IndirectTransport(ipa, **(transport_kw or {})),
                                         activation="1$dp.example$ABC-123"), stage)
    card.done()
    assert e.reason == "undefinedReason"
    assert e.result["cancel"] == {"reason": "undefinedReason", "euicc": True, "server": True}
    closed = tl.index(("closed", "getBoundProfilePackage"))
    assert closed < tl.index(("es10", "BF41")) < tl.index(("esipa", "cancelSession"))
    return e


def test_indirect_streamed_error_answer_cancels_as_before():
    e = streamed_failure(tlv.enc(0xBF3A, tlv.encode(0x81, b"\x06")), "GetBoundProfilePackage")
    assert isinstance(e.cause, FunctionError) and e.cause.name == "downloadOrderExpired"


def test_indirect_streamed_cut_answer_stops_and_cancels():
    whole = esipa_answers()[2]
    cut = whole[:len(whole) - 100]  # in the middle of the 300-byte 86
    # length not announced (chunked): found when the cut is reached, after 6 segments went out
    e = streamed_failure(cut, "GetBoundProfilePackage", loads=6, length=False)
    assert isinstance(e.cause, ProtocolError)
    assert "ESipa.GetBoundProfilePackage answer: the body ended after %d bytes, in the middle " \
        "of 86 in A3" % len(cut) == str(e.cause), str(e.cause)
    # an announced length shorter than the TLVs: refused at the header, before any segment
    e = streamed_failure(cut, "GetBoundProfilePackage", loads=0)
    assert "value bytes for tag BF3A" in str(e.cause)


def test_indirect_streamed_oversized_segment_stops_and_cancels():
    e = streamed_failure(esipa_answers()[2], "GetBoundProfilePackage", {"max_segment": 200},
                         loads=6)
    assert "makes a segment of 304 bytes, expected at most 200" in str(e.cause)


def test_ipa_post_stream_keeps_the_esipa_headers_and_status_rules():
    from ipa_core.ipa import ASN1_CONTENT_TYPE, ESIPA_HEADERS, HttpStatusError, Ipa, MemoryStore
    from test_stream import ChunkyReader

    class Net:
        def __init__(self, status):
            self.status = status
            self.readers = []

        def post_stream(self, path, body, ctype, headers=None):
            self.args = (path, body, ctype, headers)
            self.readers.append(ChunkyReader(b"answer"))
            return self.status, self.readers[-1]

    net = Net(200)
    ipa = Ipa(Recorder([], []), net, MemoryStore(), eid="89" + "0" * 30)
    r = ipa._post_stream("getBoundProfilePackage", b"\xbf\x3a\x00")
    assert net.args == ("/gsma/rsp2/asn1", b"\xbf\x3a\x00", ASN1_CONTENT_TYPE, ESIPA_HEADERS)
    assert r.read(100) and not r.closed
    net = Net(503)
    ipa.network = net
    try:
        ipa._post_stream("getBoundProfilePackage", b"\xbf\x3a\x00")
    except HttpStatusError as e:
        assert e.status == 503 and e.transient and "getBoundProfilePackage" in str(e)
    else:
        raise AssertionError("HTTP 503 accepted")
    assert net.readers[0].closed  # the refused answer's body is not left on the connection


def test_direct_transport_name_kept_in_ipa_download():
    assert dl.DirectTransport is DirectTransport


# ---- the eIM's trigger ---------------------------------------------------------------------


def trigger(pdd_tlv):
    from ipa_core import esipa
    return esipa.profile_download_trigger_request(tlv.decode(tlv.enc(
        0xBF54, None if pdd_tlv is None else tlv.encode(0xA0, pdd_tlv),
        tlv.encode(0x82, EIM_TID))))


def test_handler_activation_code_direct():
    tl = []
    card = Recorder(es10_head() + load_script(), tl)
    net = Es9Net(es9_requests_ok(), tl)
    asked = []

    def factory(addr):
        asked.append(addr)
        return net

    ipa = FakeIpa(card, [])
    h = dl.make_download_handler(ipa, factory)
    out = h(trigger(tlv.encode(0x80, b"LPA:1$dp.example$ABC-123")))
    card.done()
    net.done()
    assert asked == ["dp.example"] and net.closed
    assert out == tlv.enc(0xBF54, tlv.encode(0x82, EIM_TID), pir())
    assert h.last["ok"]


def test_handler_indirect_when_the_eim_says_so():
    tl = []
    card = Recorder(es10_head() + load_script(), tl)
    ipa = FakeIpa(card, esipa_answers(), eim={"indirectProfileDownload": True})
    out = dl.make_download_handler(ipa)(trigger(tlv.encode(0x80, b"1$dp.example$ABC-123")))
    card.done()
    assert out == tlv.enc(0xBF54, tlv.encode(0x82, EIM_TID), pir())


def test_handler_default_smdp_and_errors():
    err = tlv.enc(0xBF54, tlv.encode(0x82, EIM_TID), tlv.enc(0x30, tlv.encode(0x80, b"\x7f")))
    # contactDefaultSmdp without a defaultDpAddress
    card = ScriptedSession([("BF3C 00", "BF3C 05 81 03 727364")])
    ipa = FakeIpa(card, [])
    assert dl.make_download_handler(ipa, lambda a: None)(trigger(tlv.encode(0x81))) == err
    card.done()
    assert "no default SM-DP+ address" in ipa.notes[-1][1]
    # contactSmds when downloads go through the eIM: the eIM-relayed SM-DS is not done
    ipa = FakeIpa(ScriptedSession([]), [], eim={"indirectProfileDownload": True})
    assert dl.make_download_handler(ipa, lambda a: None)(trigger(tlv.enc(0xA2))) == err
    assert "reached by a direct download only" in ipa.notes[-1][1]
    # contactSmds without a way to reach the SM-DS
    ipa = FakeIpa(ScriptedSession([]), [])
    assert dl.make_download_handler(ipa)(trigger(tlv.enc(0xA2, tlv.encode(0x80, b"d.x")))) == err
    assert "reached by a direct download only" in ipa.notes[-1][1]
    # a bad activation code
    ipa = FakeIpa(ScriptedSession([]), [])
    assert dl.make_download_handler(ipa)(trigger(tlv.encode(0x80, b"2$x$y"))) == err
    assert "AC_Format" in ipa.notes[-1][1]


def test_handler_default_smdp_direct():
    tl = []
    head = es10_head(ctx="A0 0A A1 08 80 04 00000000 A1 00")
    card = Recorder([("BF3C 00", "BF3C 11 80 0A 64702E6578616D706C65 81 03 727364")] + head +
                    load_script(), tl)
    net = Es9Net(es9_requests_ok(), tl)
    ipa = FakeIpa(card, [])
    ipa.config["device_info"] = {"tac": b"\x00\x00\x00\x00", "deviceCapabilities": {}}
    h = dl.make_download_handler(ipa, lambda a: net)
    h.device_info = None
    out = h(trigger(tlv.encode(0x81)))
    card.done()
    net.done()
    assert tlv.decode(out).find(0xBF37) is not None, ipa.notes
    assert a2b_base64(net.requests[0][1]["euiccInfo1"].encode()) == INFO1
