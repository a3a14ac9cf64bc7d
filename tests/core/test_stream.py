"""ipa_core.stream, the streamed BPP (es10_download.BppSegments, esipa_decode
.open_get_bound_profile_package_response) and HttpClient.post_stream (also under MicroPython).

What a user would check: the segments cut from a stream are exactly those
SGP.22 2.5.5 asks for, whatever sizes the network hands the bytes in; only
one segment is held at a time; a cut, malformed or oversized package ends
with a clear error; a kept-alive HTTP connection survives a streamed answer;
a board importing the IPA and the indirect download loads no optional module.
"""

import sys

from ipa_core import es10, esipa, http, stream, tlv
from ipa_core.errors import EimError, ProtocolError, TlvError, TransportError

from test_http import ASN1, Opener, Stream, ok, raises
from test_ipa_download import BPP as DL_BPP
from test_ipa_download import segments as dl_segments


def h(s):
    from ipa_core.compat import unhexlify
    return unhexlify(s.replace(" ", ""))


# The BPP of tests/core/test_es10.py and its segments as written there.
ES10_BPP = h("BF3620" "BF2303820101" "A00487020102" "A107" "88020304" "880105"
             "A309" "8603060708" "8602090A")
ES10_SEGMENTS = ["BF3620BF2303820101", "A00487020102", "A107", "88020304", "880105", "A309",
                 "8603060708", "8602090A"]


class ChunkyReader:
    """The reader contract over bytes, handing out 1..7 bytes per read (cycling), recording
    how far it was read (`consumed`) and the largest request."""

    def __init__(self, data, sizes=(1, 2, 3, 4, 5, 6, 7), length=True):
        self.data = data
        self.pos = 0
        self.sizes = sizes
        self.i = 0
        self.length = len(data) if length else None
        self.closed = False
        self.reads = 0
        self.largest_ask = 0

    @property
    def consumed(self):
        return self.pos

    def read(self, n):
        assert not self.closed, "read after close"
        assert n > 0, "read(%d)" % n
        self.reads += 1
        self.largest_ask = max(self.largest_ask, n)
        k = min(n, self.sizes[self.i % len(self.sizes)], len(self.data) - self.pos)
        self.i += 1
        out = self.data[self.pos:self.pos + k]
        self.pos += k
        return out

    def close(self):
        self.closed = True


def reference_spans(bpp):
    """The SGP.22 2.5.5 cut computed with ipa_core.tlv over the whole package (the algorithm
    es10.bpp_segments had before streaming), as an independent oracle."""
    t = tlv.decode(bpp)
    kids = t.children()
    spans = [(t.start, kids[0].end)]
    for k in kids[1:]:
        if k.tag in (0xA0, 0xA2):
            spans.append((k.start, k.end))
        else:
            spans.append((k.start, k.vstart))
            for c in k:
                spans.append((c.start, c.end))
    return spans


def make_bpp(n86=40, size86=1020, with_a2=True, tid=b"\x01" * 16):
    """A BPP shaped like a real one: BF23, A0 {87}, A1 {88 88}, A2 {87}?, A3 {86 x n86}."""
    def seg(tag, n, fill):  # one TLV of n bytes in all
        v = n - 2
        while len(tlv.header(tag, v)) + v > n:
            v -= 1
        return tlv.encode(tag, bytes([fill & 0xFF]) * v)

    isc = tlv.enc(0xBF23, tlv.encode(0x82, b"\x01"), tlv.encode(0x80, tid),
                  tlv.encode(0xA6, b"\x11" * 20), tlv.encode(0x5F49, b"\x04" + b"\x22" * 64),
                  tlv.encode(0x5F37, b"\x33" * 64))
    parts = [isc, tlv.enc(0xA0, seg(0x87, 40, 0xA0)),
             tlv.enc(0xA1, seg(0x88, 200, 0xA1), seg(0x88, 37, 0xA2))]
    if with_a2:
        parts.append(tlv.enc(0xA2, seg(0x87, 30, 0xA3)))
    parts.append(tlv.encode(0xA3, b"".join(seg(0x86, size86, i) for i in range(n86))))
    return tlv.encode(0xBF36, b"".join(parts))


def stream_segments(data, **kw):
    segs = es10.BppSegments(stream.TlvReader(ChunkyReader(data)), **kw)
    out = []
    while True:
        s = segs.next()
        if s is None:
            return out
        out.append(bytes(s))


# ---- readers ------------------------------------------------------------------------------


def test_bytes_reader_contract():
    r = stream.BytesReader(b"0123456789")
    assert r.length == 10
    assert r.read(4) == b"0123" and r.read(100) == b"456789" and r.read(5) == b""
    assert stream.BytesReader(memoryview(b"ab")).read(5) == b"ab"
    r = stream.BytesReader(b"xyz")
    r.close()
    assert r.read(3) == b""  # closed: nothing more
    assert stream.BytesReader(None).length == 0


def test_post_stream_uses_the_network_stream_or_wraps_post():
    class Plain:
        def post(self, path, body, ctype, headers=None):
            self.args = (path, body, ctype, headers)
            return 200, b"answer"

    n = Plain()
    status, r = stream.post_stream(n, "/p", b"q", ASN1, {"X": "1"})
    assert status == 200 and n.args == ("/p", b"q", ASN1, {"X": "1"})
    assert r.length == 6 and r.read(100) == b"answer" and r.read(1) == b""

    class Streaming(Plain):
        def post_stream(self, path, body, ctype, headers=None):
            return 201, ChunkyReader(b"streamed")

    status, r = stream.post_stream(Streaming(), "/p", b"q", ASN1)
    assert status == 201 and isinstance(r, ChunkyReader)


def test_tlv_reader_headers_small_tlvs_and_offsets():
    data = h("BF3A 82 0109 5F37 03 010203 81 01 7F") + b"\x00" * (0x109 - 9)
    tr = stream.TlvReader(ChunkyReader(data))
    tag, n, hdr = tr.header()
    assert (tag, n, hdr, tr.offset) == (0xBF3A, 0x109, h("BF3A820109"), 5)
    assert tr.read_tlv(bound=8) == h("5F3703010203")
    tag, n, hdr = tr.header(5 + 0x109)
    assert (tag, n, bytes(tr.read(n))) == (0x81, 1, b"\x7f")
    tr.skip(0x109 - 9)
    assert tr.offset == len(data) and tr.at_end()
    # a reader that does not announce its length: at_end reads one byte ahead, and keeps it
    tr = stream.TlvReader(ChunkyReader(h("8001AA 8100"), length=False))
    assert tr.read_tlv() == h("8001AA") and not tr.at_end()
    assert tr.read_tlv() == h("8100") and tr.at_end()


def test_tlv_reader_refuses_what_tlv_refuses_with_offsets():
    def header_error(hexs, end=None):
        return raises(TlvError, stream.TlvReader(ChunkyReader(h(hexs))).header, end)

    assert "indefinite" in str(header_error("A0 80 0000"))
    assert "at most 3 length bytes" in str(header_error("A0 84 00000001 00"))
    assert "at most 3 bytes" in str(header_error("BF FF FF 01 00"))
    e = header_error("A0 05 0102")  # the body announces 4 bytes: the value cannot fit
    assert "5 value bytes for tag A0" in str(e) and e.offset == 0
    tr = stream.TlvReader(ChunkyReader(h("A0 06 80 09 01 02 03 04")))
    tr.header()
    e = raises(TlvError, tr.header, 8)  # the child claims more than its parent holds
    assert e.offset == 2 and "9 value bytes for tag 80" in str(e)
    e = raises(TlvError, stream.TlvReader(ChunkyReader(h("04 10") + b"x" * 16)).read_tlv,
               None, 8, "a hashCc")
    assert "a hashCc of at most 8 bytes" in str(e) and "18 bytes" in str(e)


def test_tlv_reader_body_ending_early_is_named():
    # the reader does not announce a length, then stops in the middle
    tr = stream.TlvReader(ChunkyReader(h("BF3A 82"), length=False), "ESipa.X answer")
    e = raises(ProtocolError, tr.header)
    assert "ESipa.X answer: the body ended after 3 bytes, in the middle of a TLV header" \
        == str(e)
    tr = stream.TlvReader(ChunkyReader(h("80 08 0102"), length=False), "ESipa.X answer")
    tr.header()
    e = raises(ProtocolError, tr.read, 8)
    assert "ended after 4 bytes, in the middle of a TLV value" in str(e)


# ---- the segmenter -----------------------------------------------------------------------


def test_segments_from_a_stream_match_the_hand_cut_ones():
    assert [tlv.hexs(s, 99) for s in stream_segments(ES10_BPP)] == ES10_SEGMENTS
    assert stream_segments(DL_BPP) == dl_segments()


def test_segments_match_the_tlv_oracle_and_bpp_segments_at_every_read_size():
    for bpp in (make_bpp(), make_bpp(3, 100, with_a2=False), make_bpp(1, 1020), DL_BPP,
                ES10_BPP):
        want = [bytes(bpp[a:b]) for a, b in reference_spans(bpp)]
        assert es10.bpp_segments(bpp) == reference_spans(bpp)
        for sizes in ((1,), (7, 3, 1), (1000,)):
            segs = es10.BppSegments(stream.TlvReader(ChunkyReader(bpp, sizes)))
            got = []
            while True:
                s = segs.next()
                if s is None:
                    break
                got.append(bytes(s))
            assert got == want, (len(bpp), sizes)
            assert segs.total() == len(want) and segs.count == len(want)


def test_forty_kilobyte_package_holds_one_segment_at_a_time():
    bpp = make_bpp(40, 1020)
    assert len(bpp) > 40000
    reader = ChunkyReader(bpp, sizes=(7, 1, 3))
    segs = es10.BppSegments(stream.TlvReader(reader))

    class Card:
        """Checks at each STORE DATA that the stream is not read ahead of the card."""

        def __init__(self):
            self.sent = 0
            self.largest = 0
            self.ahead = 0

        def store_data(self, seg):
            self.sent += len(seg)
            self.largest = max(self.largest, len(seg))
            self.ahead = max(self.ahead, reader.consumed - self.sent)
            return pir() if self.sent == len(bpp) else b""

    card = Card()
    seen = []
    n = len(reference_spans(bpp))
    r = es10.load_bound_profile_package(card, segs, lambda d, t: seen.append((d, t)))
    assert r["segmentsSent"] == r["segmentsTotal"] == n == 47
    assert card.sent == len(bpp) and card.largest == 1020  # one 86 (SGP.22 2.5.3 maximum)
    assert card.ahead <= stream.CHUNK  # only the header read-ahead, never a second segment
    assert reader.largest_ask <= es10.MAX_SEGMENT
    assert seen[-1] == (n, n)
    assert [d for d, _ in seen] == list(range(n + 1))
    assert all(t >= d for d, t in seen)  # an estimate never below what was sent


def pir():
    """A ProfileInstallationResult with successResult (enough for the loader to stop)."""
    return tlv.enc(0xBF37, tlv.enc(0xBF27, tlv.encode(0x80, b"\x01" * 16),
                                   tlv.enc(0xBF2F, tlv.encode(0x80, b"\x07"),
                                           tlv.encode(0x81, b"\x07\x80"),
                                           tlv.encode(0x0C, b"dp.example")),
                                   tlv.encode(0x06, b"\x2b\x06\x01"),
                                   tlv.enc(0xA2, tlv.enc(0xA0, tlv.encode(0x4F, b"\xa0" * 7),
                                                         tlv.encode(0x04, b"\x90\x00")))),
                   tlv.encode(0x5F37, b"\x33" * 64))


def test_early_result_counts_the_rest_without_keeping_it():
    bpp = make_bpp(10, 500)
    reader = ChunkyReader(bpp)
    segs = es10.BppSegments(stream.TlvReader(reader))
    sent = []

    class Card:
        def store_data(self, seg):
            sent.append(len(seg))
            return pir() if len(sent) == 3 else b""

    r = es10.load_bound_profile_package(Card(), segs)
    assert r["segmentsSent"] == 3 and r["segmentsTotal"] == len(reference_spans(bpp))
    assert len(sent) == 3 and reader.consumed == len(bpp)


def test_cut_malformed_and_oversized_packages_end_with_clear_errors():
    bpp = make_bpp(5, 1020)
    # cut in the middle of the fourth 86: three were handed out, then the error
    cut = bpp[:len(bpp) - 1500]
    segs = es10.BppSegments(stream.TlvReader(ChunkyReader(cut, length=False), "the answer"))
    got = 0
    try:
        while segs.next() is not None:
            got += 1
    except ProtocolError as e:
        assert "the answer: the body ended after %d bytes, in the middle of 86 in A3" % len(cut) \
            == str(e), str(e)
        assert segs.error is e
    else:
        raise AssertionError("a cut package was accepted")
    assert got == len(reference_spans(bpp)) - 2
    assert segs.next() is None  # after an error, nothing more
    # a length that claims more than the body announces: refused at the header
    e = raises(TlvError, stream_segments, cut)
    assert "value bytes for tag BF36" in str(e)
    # one segment over the bound
    e = raises(ProtocolError, stream_segments, bpp, max_segment=1000)
    assert "86 in A3 at offset" in str(e) and "makes a segment of 1020 bytes, expected at most " \
        "1000" in str(e)
    # structure: the messages of es10.bpp_segments
    for bad, msg in (("BF3606 A004870201 02", "expected InitialiseSecureChannel BF23 first"),
                     ("BF360F BF2303820101 A100 A000 A303860100", "A2 (optional), A3 in order"),
                     ("BF360F BF2303820101 A000 A100 A303870100", "expected 86 in A3, got 87"),
                     ("BF360E BF2303820101 A00487020102 A100", "sequenceOf86 (A3) missing"),
                     ("BF2003 800100", "expected tag BF36, got BF20")):
        e = raises(ProtocolError, stream_segments, h(bad))
        assert msg in str(e), (bad, str(e))
        e = raises(ProtocolError, es10.bpp_segments, h(bad))
        assert msg in str(e), (bad, str(e))
    e = raises(TlvError, es10.bpp_segments, ES10_BPP + b"\x00")
    assert "1 trailing bytes" in str(e)


# ---- the ESipa wrapper, streamed ------------------------------------------------------------


TID = b"\x01" * 16


def gbpp_answer(bpp, tid=TID, double=False, extra=b""):
    ok_ = tlv.encode(0xA0, (b"" if tid is None else tlv.encode(0x80, tid)) + extra + bpp)
    if double:
        ok_ = tlv.encode(0xBF3A, ok_)
    return tlv.encode(0xBF3A, ok_)


def opened(data, **kw):
    reader = ChunkyReader(data, **kw)
    return reader, esipa.open_get_bound_profile_package_response(reader)


def drain(segs):
    out = []
    while True:
        s = segs.next()
        if s is None:
            return out
        out.append(bytes(s))


def test_streamed_answer_gives_the_same_package_as_the_bytes_decoder():
    bpp = make_bpp(4, 700)
    for answer in (gbpp_answer(bpp), gbpp_answer(bpp, double=True),
                   gbpp_answer(bpp, extra=h("9F7F 02 0102")), gbpp_answer(bpp, tid=None)):
        whole = esipa.decode_get_bound_profile_package_response(answer)
        reader, r = opened(answer)
        assert r["transactionId"] == whole["transactionId"] == TID
        assert b"".join(drain(r["segments"])) == whole["boundProfilePackage"]
        r["segments"].close()
        assert reader.closed


def test_streamed_answer_reads_only_the_first_segment_before_returning():
    bpp = make_bpp(40, 1020)
    reader, r = opened(gbpp_answer(bpp, tid=None), sizes=(7,))
    first = reference_spans(bpp)[0]
    assert reader.consumed < 4 + 4 + first[1] + stream.CHUNK + 8
    assert r["transactionId"] == TID  # from InitialiseSecureChannel
    r["segments"].close()


def test_streamed_answer_errors_close_the_reader():
    reader = ChunkyReader(h("BF3A 03 81 01 06"))
    e = raises(EimError, esipa.open_get_bound_profile_package_response, reader)
    assert e.name == "downloadOrderExpired" and e.function == "ESipa.GetBoundProfilePackage"
    assert reader.closed
    for data, msg in ((b"", "the eIM answered no data, expected a BF3A"),
                      (h("BF3B 02 8100"), "expected a BF3A GetBoundProfilePackageResponseEsipa"),
                      (h("BF3A 02 A200"), "alternative tag A2 at offset 3, expected A0 or 81"),
                      (h("BF3A 04 A000 8100"), "one GetBoundProfilePackageResponseEsipa"),
                      (h("BF3A 04 A002 8000"), "transactionId of 1..16 bytes"),
                      (h("BF3A 05 A003 800101"), "child BF36 (boundProfilePackage) in A0"),
                      (gbpp_answer(make_bpp(2, 100))[:40], "the body ended after 40 bytes")):
        reader = ChunkyReader(data, length=False)
        e = raises(ProtocolError, esipa.open_get_bound_profile_package_response, reader)
        assert msg in str(e), (tlv.hexs(data), str(e))
        assert reader.closed


# ---- HttpClient.post_stream -----------------------------------------------------------------


def chunked(body, piece=100):
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for i in range(0, len(body), piece):
        part = body[i:i + piece]
        out += b"%x;x=1\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\nX-T: 1\r\n\r\n"


def read_all(r, n=7):
    out = b""
    while True:
        d = r.read(n)
        if not d:
            return out
        assert len(d) <= n
        out += d


def test_post_stream_content_length_and_chunked_on_one_connection():
    body = bytes(range(256)) * 8
    s = Stream([ok(body), chunked(body, 333), ok(b"after")], piece=13)
    c = http.HttpClient(Opener(s), "eim")
    status, r = c.post_stream("/gsma/rsp2/asn1", b"q1", ASN1)
    assert status == 200 and r.length == len(body)
    assert read_all(r) == body and r.read(5) == b""
    status, r = c.post_stream("/gsma/rsp2/asn1", b"q2", ASN1)
    assert status == 200 and r.length is None and read_all(r, 50) == body
    assert c.post("/gsma/rsp2/asn1", b"q3", ASN1) == (200, b"after")
    assert c.connections == 1 and c.requests == 3 and not s.closed


def test_post_stream_reads_only_what_is_asked():
    body = b"x" * 20000
    s = Stream([ok(body)], piece=100000)
    c = http.HttpClient(Opener(s), "eim", read_size=512)
    status, r = c.post_stream("/p", b"", ASN1)
    assert r.read(10) == b"x" * 10
    # the head read one read_size block; nothing more was pulled from the connection
    assert s.reads == 1 and len(s.parts[0]) == len(ok(body)) - 512
    r.close()


def test_unread_stream_is_skipped_before_the_next_request_or_the_connection_dropped():
    s = Stream([ok(b"a" * 1000), ok(b"next")], piece=64)
    c = http.HttpClient(Opener(s), "eim")
    status, r = c.post_stream("/p", b"1", ASN1)
    assert r.read(10) == b"a" * 10
    assert c.post("/p", b"2", ASN1) == (200, b"next")  # the rest was skipped, same connection
    assert c.connections == 1
    # more left than max_skip: closed, and the next request opens a new connection
    a = Stream([ok(b"b" * 5000)], piece=64)
    b = Stream([chunked(b"c" * 3000)], piece=64)
    d = Stream([ok(b"fresh")], piece=64)
    c = http.HttpClient(Opener(a, b, d), "eim", max_skip=1000)
    status, r = c.post_stream("/p", b"", ASN1)
    r.read(1)
    r.close()
    assert a.closed and r.read(1) == b""
    status, r = c.post_stream("/p", b"", ASN1)
    r.read(1)
    assert c.post("/p", b"", ASN1) == (200, b"fresh")  # chunked rest over max_skip: dropped
    assert b.closed and not d.closed and c.connections == 3


def test_post_stream_errors_and_bounds():
    # Content-Length body cut by the peer: a TransportError, as for post()
    s = Stream([ok(b"0123456789")[:-4]], piece=3)
    c = http.HttpClient(Opener(s), "eim")
    status, r = c.post_stream("/p", b"", ASN1)
    e = raises(TransportError, read_all, r)
    assert "connection closed in response body" in str(e) and s.closed
    e = raises(TransportError, r.read, 1)  # the connection is gone
    # chunked body over max_stream
    s = Stream([chunked(b"z" * 3000, 1000)])
    c = http.HttpClient(Opener(s), "eim", max_stream=2500)
    status, r = c.post_stream("/p", b"", ASN1)
    e = raises(ProtocolError, read_all, r, 4096)
    assert "at most 2500 bytes, got at least 3000" in str(e) and s.closed
    # Content-Length over max_stream: refused at the head
    c = http.HttpClient(Opener(Stream([ok(b"y" * 3000)])), "eim", max_stream=2500)
    e = raises(ProtocolError, c.post_stream, "/p", b"", ASN1)
    assert "got Content-Length 3000" in str(e)
    # no whole-body cap on a streamed answer by default (its consumer bounds it), while
    # post() keeps max_body
    c = http.HttpClient(Opener(Stream([ok(b"y" * 3000), ok(b"y" * 3000)])), "eim",
                        max_body=2500)
    status, r = c.post_stream("/p", b"", ASN1)
    assert len(read_all(r, 4096)) == 3000
    e = raises(ProtocolError, c.post, "/p", b"", ASN1)
    assert "got Content-Length 3000" in str(e)
    # the client closed under an open reader: the reader says so instead of b""
    s = Stream([ok(b"w" * 100)])
    c = http.HttpClient(Opener(s), "eim")
    status, r = c.post_stream("/p", b"", ASN1)
    c.close()
    e = raises(TransportError, r.read, 1)
    assert "closed before the answer was read" in str(e)
    # 204 and until-close bodies
    s = Stream([b"HTTP/1.1 204 No Content\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close"])
    c = http.HttpClient(Opener(s), "eim")
    status, r = c.post_stream("/p", b"", ASN1)
    assert (status, r.length, r.read(10)) == (204, 0, b"")
    status, r = c.post_stream("/p", b"", ASN1)
    assert read_all(r, 3) == b"until close" and s.closed


# ---- the board subset ------------------------------------------------------------------------


OPTIONAL = ("ipa_core.esipa_json", "ipa_core.es9p", "ipa_core.activation", "ipa_core.coap",
            "ipa_core.http", "ipa_core.b64", "ipa_core.ipa_direct", "ipa_core.json_stream")


def test_ipa_and_indirect_download_load_no_optional_module():
    saved = {}
    for k in list(sys.modules):
        if k == "ipa_core" or k.startswith("ipa_core."):
            saved[k] = sys.modules.pop(k)
    try:
        import ipa_core.ipa  # noqa: F401
        import ipa_core.ipa_download  # noqa: F401
        loaded = [k for k in OPTIONAL if k in sys.modules]
        assert loaded == [], "the board subset loads %s" % ", ".join(loaded)
        assert "ipa_core.stream" in sys.modules and "ipa_core.esipa" in sys.modules
    finally:
        for k in list(sys.modules):
            if k == "ipa_core" or k.startswith("ipa_core."):
                del sys.modules[k]
        sys.modules.update(saved)
