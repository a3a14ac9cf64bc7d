"""ipa_core.json_stream and the streamed ES9+ / ESipa-JSON GetBoundProfilePackage answers
(es9p.open_get_bound_profile_package_response, esipa_json.open_...), also under MicroPython.

What a user would check: the package decoded from a JSON answer read in any piece sizes is
the one sent, whatever the key order; a Failed status, a wrong transactionId, a cut, a
malformed or an oversized answer is a clear error before the last segment goes to the eUICC;
a package of hundreds of KB never sits whole in RAM (the working set stays flat).
"""

import gc
from ipa_core.compat import json
import sys
from ipa_core.compat import b2a_base64

from ipa_core import es10, es9p, esipa_json, json_stream, tlv
from ipa_core.errors import EimError, ProtocolError

from test_stream import ChunkyReader, drain, make_bpp, pir, raises, read_all

TID = b"\x01" * 16
TID_HEX = "01" * 16
OK = {"functionExecutionStatus": {"status": "Executed-Success"}}
FAILED = {"functionExecutionStatus": {"status": "Failed", "statusCodeData": {
    "subjectCode": "8.2.7", "reasonCode": "3.8", "message": "refused"}}}


def b64(b):
    return b2a_base64(b).decode().strip()


def answer(bpp, order=("header", "transactionId", "boundProfilePackage"), header=OK,
           tid=TID_HEX, text=None):
    """A JSON answer with its members in `order` (json.dumps of a dict would not keep it)."""
    vals = {"header": header, "transactionId": tid,
            "boundProfilePackage": b64(bpp) if text is None else text}
    return ("{" + ", ".join("%s: %s" % (json.dumps(k), json.dumps(vals[k])) for k in order)
            + "}").encode()


def test_members_in_any_order_and_any_piece_sizes():
    bpp = make_bpp(6, 300)
    for order in (("header", "transactionId", "boundProfilePackage"),
                  ("boundProfilePackage", "transactionId", "header"),
                  ("transactionId", "boundProfilePackage", "header")):
        for sizes in ((1,), (3, 7, 1), (1000,)):
            r = es9p.open_get_bound_profile_package_response(
                ChunkyReader(answer(bpp, order), sizes), TID)
            assert r["transactionId"] == TID  # from the JSON, or from BF23 until it comes
            assert b"".join(drain(r["segments"])) == bpp


def test_check_runs_before_and_after_the_package():
    calls = []
    text = answer(b"\x01\x02\x03\x04", ("header", "boundProfilePackage", "transactionId"))
    m = json_stream.open_member(ChunkyReader(text), "boundProfilePackage", "X",
                                lambda o, done: calls.append((sorted(o), done)), 100)
    assert calls == [(["header"], False)]
    assert read_all(m, 2) == b"\x01\x02\x03\x04"
    assert calls[-1] == (["header", "transactionId"], True)
    assert m.members["transactionId"] == TID_HEX


def test_escaped_slash_and_white_space_are_read():
    bpp = make_bpp(256, 10)  # fill bytes 0..255: FF FF FF is "////"
    text = b64(bpp)
    assert "/" in text
    body = ('\n { "transactionId" : "%s" ,\t"boundProfilePackage":"%s" , "header": %s }\r\n'
            % (TID_HEX, text.replace("/", "\\/"), json.dumps(OK))).encode()
    r = es9p.open_get_bound_profile_package_response(ChunkyReader(body), TID)
    assert b"".join(drain(r["segments"])) == bpp


def test_a_failed_status_is_an_es9_error_in_front_of_or_after_the_package():
    bpp = make_bpp(4, 300)
    reader = ChunkyReader(answer(bpp, header=FAILED))
    e = raises(es9p.Es9Error, es9p.open_get_bound_profile_package_response, reader, TID)
    assert "ES9+.GetBoundProfilePackage" in str(e) and "8.2.7" in str(e) and reader.closed
    # header only (no package): the same error
    body = json.dumps({"header": FAILED}).encode()
    raises(es9p.Es9Error, es9p.open_get_bound_profile_package_response, ChunkyReader(body))
    # after the package: raised while its last bytes are read, before the last segment
    r = es9p.open_get_bound_profile_package_response(
        ChunkyReader(answer(bpp, ("boundProfilePackage", "transactionId", "header"),
                            header=FAILED)), TID)
    segs = r["segments"]
    sent = []
    def load():
        while True:
            s = segs.next()
            if s is None:
                return
            sent.append(s)

    e = raises(es9p.Es9Error, load)
    assert segs.error is e and len(sent) < len(es10.bpp_segments(bpp))


def test_a_wrong_or_missing_transaction_id_is_refused():
    bpp = make_bpp(2, 100)
    e = raises(ProtocolError, es9p.open_get_bound_profile_package_response,
               ChunkyReader(answer(bpp, tid="02" * 16)), TID)
    assert "expected the session's" in str(e)
    r = es9p.open_get_bound_profile_package_response(
        ChunkyReader(answer(bpp, ("boundProfilePackage", "transactionId"), tid="02" * 16)),
        TID)
    raises(ProtocolError, drain, r["segments"])
    r = es9p.open_get_bound_profile_package_response(
        ChunkyReader(answer(bpp, ("header", "boundProfilePackage"))), TID)
    e = raises(ProtocolError, drain, r["segments"])
    assert "'transactionId' missing" in str(e)


def test_cut_and_malformed_answers_are_named():
    bpp = make_bpp(3, 200)
    good = answer(bpp)
    text = b64(bpp)
    cases = [
        (good[:len(good) // 2], "the end of the body"),  # cut inside the base64
        (good[:-1], "the end of the body"),  # cut before '}'
        (good[:40], "the end of the body"),  # cut in the header
        (answer(bpp, text=text[:-4]), "BoundProfilePackage"),  # base64 short of the BF36
        (answer(bpp, text=text[:-1]), "padded base64"),
        (answer(bpp, text="*" + text[1:]), "base64"),
        (answer(bpp, text=text[:8] + "=" + text[9:]), "padded base64"),
        (good.replace(b'"header":', b'"header"'), "':' after member"),
        (good.replace(b"Executed-Success\"", b"Executed-Success"), "JSON"),
        (good + b" x", "the end of the body after the JSON object"),
        (b"[1, 2]", "a JSON object"),
        (b"", "a JSON object"),
        (good.replace(b'"transactionId"', b'"boundProfilePackage"'), "one 'boundProfilePackage'"),
        (answer(bpp, text=text.replace("A", "\\u0041", 1)), "no escapes"),
    ]
    for body, words in cases:
        try:
            r = es9p.open_get_bound_profile_package_response(ChunkyReader(body), TID)
            b"".join(drain(r["segments"]))
        except ProtocolError as e:
            assert words in str(e), (words, str(e))
            assert "ES9+.GetBoundProfilePackage response" in str(e), str(e)
            continue
        raise AssertionError("no error for %r" % (body[:60],))


def test_bounds_package_members_and_other_text():
    bpp = make_bpp(10, 1000)
    # the BF36 header says more than max_package: refused before any segment
    e = raises(ProtocolError, es9p.open_get_bound_profile_package_response,
               ChunkyReader(answer(bpp)), TID, 5000)
    assert "over the limit of 5000 (setting max_package)" in str(e)
    # base64 text beyond max_package (a BF36 that lies about its length is cut anyway)
    m = json_stream.open_member(ChunkyReader(answer(bpp)), "boundProfilePackage", "X",
                                lambda o, d: None, 3000)
    e = raises(ProtocolError, lambda: [m.read(1000) for _ in range(10)])
    assert "more than 3000 bytes (the package limit)" in str(e)
    # one member too big, and white space without end
    big = ('{"header": {"x": "%s"}, "boundProfilePackage": ""}'
           % ("y" * json_stream.MAX_MEMBER)).encode()
    raises(ProtocolError, json_stream.open_member, ChunkyReader(big, (999,)), "p", "X",
           lambda o, d: None, 100)
    flood = b"{" + b" " * (json_stream.MAX_OTHER + 200) + b"}"
    e = raises(ProtocolError, json_stream.open_member, ChunkyReader(flood, (999,)), "p", "X",
               lambda o, d: None, 3)
    assert "JSON body of at most" in str(e)


def test_esipa_json_binding_streams_the_same_way():
    bpp = make_bpp(5, 500)
    r = esipa_json.open_get_bound_profile_package_response(
        ChunkyReader(answer(bpp, ("boundProfilePackage", "header"))))
    assert r["transactionId"] == TID and b"".join(drain(r["segments"])) == bpp
    e = raises(EimError, esipa_json.open_get_bound_profile_package_response,
               ChunkyReader(json.dumps({"header": FAILED}).encode()))
    assert "ESipa.GetBoundProfilePackage" in str(e) and e.status_code_data["reasonCode"] == "3.8"


class GeneratedAnswer:
    """An ES9+ answer generated piece by piece, never whole in RAM: the header and
    transactionId, then a BF36 of n86 segments of 1020 bytes as base64 (as the SM-DP+ sends
    it). The reader contract, pieces of at most `piece` bytes."""

    def __init__(self, n86, piece=700):
        seg_v = 1016  # 86 82 03 F8 + 1016 = 1020 bytes
        head = make_bpp(0, 0, False)  # BF36 { BF23, A0, A1, A3 {} }
        small = tlv.decode(head).value[:-2]  # without the empty A3
        a3 = tlv.header(0xA3, n86 * 1020)
        self.total = len(small) + len(a3) + n86 * 1020
        raw_head = tlv.header(0xBF36, self.total) + small + a3
        self.total += len(tlv.header(0xBF36, self.total))
        self.parts = self._raw(raw_head, n86, seg_v)
        self.text = ('{"header":%s,"transactionId":"%s","boundProfilePackage":"'
                     % (json.dumps(OK), TID_HEX)).encode()
        self.carry = b""
        self.tail = False
        self.piece = piece
        self.given = 0  # bytes of JSON text handed out
        self.length = None
        self.closed = False

    def _raw(self, head, n86, seg_v):
        yield head
        for i in range(n86):
            yield tlv.header(0x86, seg_v) + bytes((i & 0xFF,)) * seg_v

    def read(self, n):
        n = min(n, self.piece)
        while len(self.text) < n and not self.tail:
            try:
                raw = next(self.parts)
            except StopIteration:
                raw = None
            if raw is None:
                self.text += b2a_base64(self.carry).strip() + b'"}'
                self.carry = b""
                self.tail = True
                break
            raw = self.carry + raw
            k = len(raw) // 3 * 3
            self.text += b2a_base64(raw[:k]).strip()
            self.carry = raw[k:]
        out, self.text = self.text[:n], self.text[n:]
        self.given += len(out)
        return out

    def close(self):
        self.closed = True


def test_a_400_kb_package_streams_with_a_flat_working_set():
    """On both: the answer is read only as far as the eUICC got it (a few KB ahead). On
    CPython also the live heap (tracemalloc). This MicroPython port collects only between
    top-level calls, so its heap figure comes from tools/bench_download.py --mp instead."""
    tracing = sys.implementation.name != "micropython"
    if tracing:
        import tracemalloc
        tracemalloc.start()
    try:
        ans = GeneratedAnswer(400)
        assert ans.total > 400000
        gc.collect()
        base = tracemalloc.get_traced_memory()[0] if tracing else 0
        r = es9p.open_get_bound_profile_package_response(ans, TID)

        class Card:
            sent = 0
            ahead = 0
            peak = 0

            def store_data(self, seg):
                self.sent += len(seg)
                self.ahead = max(self.ahead, ans.given * 3 // 4 - self.sent)
                if tracing:
                    self.peak = max(self.peak, tracemalloc.get_traced_memory()[0] - base)
                return pir() if self.sent == ans.total else b""

        card = Card()
        res = es10.load_bound_profile_package(card, r["segments"])
        r["segments"].close()
        assert ans.closed and card.sent == ans.total
        assert res["segmentsSent"] == res["segmentsTotal"] == 406
        # read ahead of the eUICC: the JSON header, the decoder's text and one network
        # piece, never a second segment's worth of the package
        assert card.ahead < 2 * 1024, card.ahead
        # live heap above the start: one segment and those buffers, some KB, never the
        # package (400 KB)
        assert card.peak < 48 * 1024, card.peak
    finally:
        if tracing:
            tracemalloc.stop()


def test_esipa_json_transaction_id_after_the_package_is_compared_with_the_session():
    bpp = make_bpp(3, 300)
    r = esipa_json.open_get_bound_profile_package_response(
        ChunkyReader(answer(bpp, ("boundProfilePackage", "transactionId"), tid="02" * 16)),
        transaction_id=TID)
    assert r["transactionId"] == TID  # BF23's, until the member comes
    e = raises(ProtocolError, drain, r["segments"])
    assert "expected the session's " + TID_HEX.upper() in str(e)
