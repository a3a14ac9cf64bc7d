"""ipa_core.coap: CoAP messages, reliability and block-wise transfer on a fake clock.

Also runs under MicroPython. A Peer plays the server: every datagram the
client sends is decoded and handed to a handler that queues answers with a
delay; recv(timeout) advances the fake clock to the next queued answer or by
the whole timeout, so retransmission times are exact and nothing sleeps.
"""

from ipa_core.compat import unhexlify

from ipa_core import coap
from ipa_core.coap import ACK, CON, NON, RST, CoapClient, CoapReset, Message
from ipa_core.errors import ProtocolError, TimeoutError_
from test_stream import read_all  # tests/core: the reader contract, read in pieces of n


def h(s):
    return unhexlify("".join(s.split()))


class Clock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t


class Peer:
    """Scripted datagram peer. handler(peer, msg) answers with peer.reply(...)."""

    def __init__(self, handler=None, clock=None):
        self.clock = clock or Clock()
        self.handler = handler
        self.sent = []  # (time, bytes) the client sent
        self.queue = []  # (due time, bytes) to hand to the client
        self.recv_calls = []

    def send(self, data):
        data = bytes(data)
        self.sent.append((self.clock.t, data))
        if self.handler is not None:
            self.handler(self, coap.decode(data))

    def reply(self, data, delay=0):
        if isinstance(data, Message):
            data = data.encode()
        due = self.clock.t + delay
        i = len(self.queue)
        while i > 0 and self.queue[i - 1][0] > due:  # stable (MicroPython's sort is not)
            i -= 1
        self.queue.insert(i, (due, data))

    def recv(self, timeout_ms):
        self.recv_calls.append((self.clock.t, timeout_ms))
        if self.queue and self.queue[0][0] <= self.clock.t + timeout_ms:
            due, data = self.queue.pop(0)
            if due > self.clock.t:
                self.clock.t = due
            return data
        self.clock.t += timeout_ms
        return None

    def messages(self):
        return [coap.decode(d) for _t, d in self.sent]


class Rand:
    """Deterministic random source: 0, 1, 2, ... per byte (or all `fill`)."""

    def __init__(self, fill=None):
        self.fill = fill
        self.n = 0

    def __call__(self, n):
        if self.fill is not None:
            return bytes([self.fill] * n)
        out = bytes([(self.n + i) & 0xFF for i in range(n)])
        self.n += n
        return out


def client(peer, **kw):
    kw.setdefault("random_bytes", Rand(0))
    return CoapClient(peer, clock_ms=peer.clock, **kw)


def piggyback(peer, m, c, payload=b"", options=None):
    peer.reply(Message(ACK, c, m.mid, m.token, options, payload))


def raises(exc, f, *args, **kw):
    try:
        f(*args, **kw)
    except exc as e:
        return str(e)
    raise AssertionError("expected %s" % exc.__name__)


# ------------------------------------------------------------------ message format

# RFC 7252 A.1: CON GET, MID 0x7d34, no token, Uri-Path "temperature"; the answer
# ACK 2.05 Content, same MID, payload "22.3 C". Bytes written out by hand.
GET_TEMPERATURE = h("40 01 7d34 bb") + b"temperature"
ACK_TEMPERATURE = h("60 45 7d34 ff") + b"22.3 C"


def test_encode_rfc7252_get_temperature():
    m = Message(CON, coap.GET, 0x7D34, b"", [(coap.URI_PATH, b"temperature")])
    assert m.encode() == GET_TEMPERATURE


def test_decode_rfc7252_piggybacked_answer():
    m = coap.decode(ACK_TEMPERATURE)
    assert (m.type, m.code, m.mid, m.token, m.options, m.payload) == (
        ACK, coap.CONTENT, 0x7D34, b"", [], b"22.3 C")
    assert coap.code_str(m.code) == "2.05"
    g = coap.decode(GET_TEMPERATURE)
    assert g.opts(coap.URI_PATH) == [b"temperature"] and g.payload == b""


def test_token_and_repeated_options_in_order():
    # CON POST, token 0x4a7f, Uri-Path gsma / rsp2 / asn1, Content-Format 42.
    m = Message(CON, coap.POST, 1, b"\x4a\x7f",
                [(coap.CONTENT_FORMAT, b"\x2a"), (coap.URI_PATH, b"gsma"),
                 (coap.URI_PATH, b"rsp2"), (coap.URI_PATH, b"asn1")], b"\xbf\x4f")
    want = h("42 02 0001 4a7f  b4") + b"gsma" + h("04") + b"rsp2" + h("04") + b"asn1" + \
        h("11 2a  ff bf4f")
    assert m.encode() == want
    d = coap.decode(want)
    assert d.opts(coap.URI_PATH) == [b"gsma", b"rsp2", b"asn1"]
    assert d.uint(coap.CONTENT_FORMAT) == 42 and d.token == b"\x4a\x7f"


def test_option_delta_and_length_extended_forms():
    # Uri-Host (3) of 20 bytes: length 13 + 7; Size1 (60) after it: delta 57 = 13 + 44;
    # option 400 after 60: delta 340 = 269 + 71 (14-form); a 300-byte value: length 269 + 31.
    host = b"h" * 20
    big = b"v" * 300
    m = Message(NON, coap.GET, 0x1234, b"", [(coap.SIZE1, coap.uint_encode(3000)),
                                              (coap.URI_HOST, host), (400, big)])
    want = h("50 01 1234") + h("3d 07") + host + h("d2 2c 0bb8") + h("ee 0047 001f") + big
    assert m.encode() == want
    d = coap.decode(want)
    assert d.options == [(coap.URI_HOST, host), (coap.SIZE1, h("0bb8")), (400, big)]
    assert d.type == NON


def test_uint_and_block_values():
    assert coap.uint_encode(0) == b"" and coap.uint_encode(255) == b"\xff"
    assert coap.uint_encode(256) == b"\x01\x00"
    assert coap.uint_decode(b"") == 0
    # RFC 7959 2.2: NUM 1, M, SZX 6 (1024) -> 0x1e; NUM 20, no M, SZX 5 -> 0x0145.
    assert coap.block_encode(1, True, 6) == b"\x1e"
    assert coap.block_encode(20, False, 5) == b"\x01\x45"
    assert coap.block_decode(b"\x01\x45") == (20, False, 5)
    assert coap.block_decode(b"") == (0, False, 0)
    assert "SZX" in raises(ProtocolError, coap.block_decode, b"\x0f")
    assert "3 bytes" in raises(ProtocolError, coap.block_decode, b"\x01\x02\x03\x04")
    assert coap.szx_for(16) == 0 and coap.szx_for(1024) == 6
    raises(ValueError, coap.szx_for, 100)


def test_decode_malformed():
    cases = [
        (b"\x40\x01\x00", "offset 0: expected 4 bytes"),
        (h("80 01 0001"), "version 1, got 2"),
        (h("49 01 0001") + b"123456789", "token length 0..8, got 9"),
        (h("44 01 0001 aabb"), "token at offset 4: expected 4 bytes, got 2"),
        (h("40 00 0001 ff"), "empty message"),
        (h("41 00 0001 aa"), "empty message"),
        (h("40 01 0001 ff"), "payload marker at offset 4"),
        (h("40 01 0001 b5 6162"), "offset 4: expected a 5-byte value, got 2"),
        (h("40 01 0001 d1"), "offset 4: expected 1 extended delta byte"),
        (h("40 01 0001 e1 00"), "offset 4: expected 2 extended delta bytes, got 1"),
        (h("40 01 0001 f1 00"), "delta nibble 15 is reserved"),
        (h("40 01 0001 bf 00"), "length nibble 15 is reserved"),
        (h("40 01 0001 e0 ffff e0 ffff"), "number up to 65535"),
    ]
    for data, want in cases:
        msg = raises(ProtocolError, coap.decode, data)
        assert want in msg, (data, msg)
    assert "at most 10 bytes" in raises(ProtocolError, coap.decode, b"\x40" * 11, 10)
    many = h("40 01 0001") + b"\x00" * (coap.MAX_OPTIONS + 1)  # zero-delta empty options
    assert "at most %d options" % coap.MAX_OPTIONS in raises(ProtocolError, coap.decode, many)


def test_encode_refuses_bad_fields():
    raises(ValueError, Message(CON, 1, 0, b"123456789").encode)
    raises(ValueError, Message(CON, 1, 0x10000).encode)
    raises(ValueError, Message(CON, 1, 0, b"", [(0x10000, b"")]).encode)


# ------------------------------------------------------------------ exchanges

def test_piggybacked_response():
    def handler(peer, m):
        assert m.type == CON and m.code == coap.GET
        piggyback(peer, m, coap.CONTENT, b"22.3 C", [(coap.CONTENT_FORMAT, b"")])

    peer = Peer(handler)
    c = client(peer, host="eim.example", port=5684)
    code, body, opts = c.request("GET", "/sensors/temperature?unit=c", accept=0)
    assert (code, body) == (coap.CONTENT, b"22.3 C")
    assert opts == [(coap.CONTENT_FORMAT, b"")]
    m = peer.messages()[0]
    assert m.opt(coap.URI_HOST) == b"eim.example" and m.uint(coap.URI_PORT) == 5684
    assert m.opts(coap.URI_PATH) == [b"sensors", b"temperature"]
    assert m.opts(coap.URI_QUERY) == [b"unit=c"] and m.uint(coap.ACCEPT) == 0
    assert len(m.token) == 4 and m.mid == 1  # Rand(0): message ids start at 0 + 1
    assert c.exchanges == 1 and c.retransmissions == 0 and c.ignored == 0
    assert c.bytes_sent == len(peer.sent[0][1])


def test_ip_literal_host_is_not_sent():
    peer = Peer(lambda p, m: piggyback(p, m, coap.CONTENT))
    client(peer, host="127.0.0.1").request("GET", "/")
    client(peer, host="::1").request("GET", "/")
    for m in peer.messages():
        assert m.opt(coap.URI_HOST) is None and m.opts(coap.URI_PATH) == []


def test_separate_response_is_acknowledged():
    def handler(peer, m):
        if m.code == coap.POST:
            peer.reply(Message(ACK, 0, m.mid))  # empty ACK: "working on it"
            peer.reply(Message(CON, coap.CHANGED, 0x9000, m.token, None, b"done"), delay=5000)

    peer = Peer(handler)
    c = client(peer)
    assert c.request("POST", "/gsma/rsp2/asn1", b"\xbf\x4f\x00")[:2] == (coap.CHANGED, b"done")
    sent = peer.messages()
    assert len(sent) == 2  # the request once (the empty ACK stopped retransmission), our ACK
    ack = sent[1]
    assert (ack.type, ack.code, ack.mid, ack.token) == (ACK, 0, 0x9000, b"")
    assert peer.sent[1][0] == 5000
    assert c.retransmissions == 0


def test_separate_response_before_the_empty_ack_and_as_non():
    def handler(peer, m):
        peer.reply(Message(NON, coap.CONTENT, 0x10, m.token, None, b"non"), delay=100)

    peer = Peer(handler)
    assert client(peer).request("GET", "/x")[1] == b"non"
    assert len(peer.sent) == 1  # a NON answer is not acknowledged


def test_separate_response_wait_is_bounded():
    peer = Peer(lambda p, m: p.reply(Message(ACK, 0, m.mid)))
    c = client(peer, separate_timeout_ms=30000)
    msg = raises(TimeoutError_, c.request, "GET", "/slow")
    assert "no separate response within 30000 ms" in msg
    assert peer.clock.t == 30000 and len(peer.sent) == 1


def test_retransmission_back_off_and_give_up():
    # Rand(0): the initial timeout is exactly ACK_TIMEOUT; it doubles each time; after
    # MAX_RETRANSMIT (4) retransmissions the last timeout runs out: 2+4+8+16+32 = 62 s.
    peer = Peer()
    c = client(peer)
    msg = raises(TimeoutError_, c.request, "GET", "/t")
    assert [t for t, _d in peer.sent] == [0, 2000, 6000, 14000, 30000]
    assert len(set([d for _t, d in peer.sent])) == 1  # the same datagram, same message id
    assert peer.clock.t == 62000
    assert "after 5 transmissions over 62000 ms" in msg, msg
    assert c.retransmissions == 4


def test_retransmission_with_full_random_factor_and_settings():
    # All-ones random: initial timeout ACK_TIMEOUT * 1.5 = 3 s; MAX_TRANSMIT_WAIT = 93 s.
    peer = Peer()
    c = client(peer, random_bytes=Rand(0xFF))
    raises(TimeoutError_, c.request, "GET", "/t")
    assert [t for t, _d in peer.sent] == [0, 3000, 9000, 21000, 45000]
    assert peer.clock.t == 93000
    peer = Peer()
    c = client(peer, ack_timeout_ms=1000, max_retransmit=2)
    raises(TimeoutError_, c.request, "GET", "/t")
    assert [t for t, _d in peer.sent] == [0, 1000, 3000] and peer.clock.t == 7000


def test_answer_after_retransmissions():
    def handler(peer, m):
        if len(peer.sent) == 3:  # the first two datagrams are "lost"
            piggyback(peer, m, coap.CONTENT, b"ok")

    peer = Peer(handler)
    c = client(peer)
    assert c.request("GET", "/t")[1] == b"ok"
    assert [t for t, _d in peer.sent] == [0, 2000, 6000] and c.retransmissions == 2


def test_request_timeout_bounds_the_whole_request():
    peer = Peer()
    c = client(peer, request_timeout_ms=10000)
    assert "more than 10000 ms" in raises(TimeoutError_, c.request, "GET", "/t")
    assert peer.clock.t == 10000


def test_rst_ends_the_exchange():
    peer = Peer(lambda p, m: p.reply(Message(RST, 0, m.mid), delay=10))
    c = client(peer)
    msg = raises(CoapReset, c.request, "GET", "/t")
    assert "reset (RST)" in msg and len(peer.sent) == 1


def test_duplicate_responses_are_ignored():
    # Request 1: the server answers twice in a separate CON (our ACK "was lost") and
    # request 2's ACK comes twice as well. The duplicates arrive during the next exchange.
    state = {"n": 0}

    def handler(peer, m):
        if m.type != CON:
            return
        state["n"] += 1
        if state["n"] == 1:
            peer.reply(Message(ACK, 0, m.mid))
            sep = Message(CON, coap.CONTENT, 0x5000, m.token, None, b"first")
            peer.reply(sep, delay=100)
            peer.reply(sep, delay=200)  # retransmitted by the server
        else:
            ans = Message(ACK, coap.CONTENT, m.mid, m.token, None, b"#%d" % state["n"])
            peer.reply(ans, delay=300)
            peer.reply(ans, delay=400)

    peer = Peer(handler)
    c = client(peer)
    assert c.request("GET", "/a")[1] == b"first"
    assert c.request("GET", "/b")[1] == b"#2"  # the repeated CON 0x5000 came first
    assert c.request("GET", "/c")[1] == b"#3"  # request 2's second ACK was skipped
    acks = [m for m in peer.messages() if m.type == ACK]
    assert [a.mid for a in acks] == [0x5000, 0x5000]  # the duplicate was acknowledged again
    assert c.ignored == 2


def test_unknown_confirmable_is_reset_and_stray_datagrams_are_ignored():
    def handler(peer, m):
        if m.type == CON:
            peer.reply(b"\x40\x01")  # garbage
            peer.reply(Message(CON, coap.CONTENT, 0x7777, b"zzzz", None, b"not ours"))
            peer.reply(Message(ACK, coap.CONTENT, m.mid, b"????", None, b"wrong token"))
            peer.reply(Message(CON, 0, 0x7778))  # CoAP ping
            piggyback(peer, m, coap.CONTENT, b"ours", None)

    peer = Peer(handler)
    c = client(peer)
    assert c.request("GET", "/t")[1] == b"ours"
    rsts = [m for m in peer.messages() if m.type == RST]
    assert [r.mid for r in rsts] == [0x7777, 0x7778]
    assert c.ignored == 4


def test_timeout_message_names_ignored_garbage():
    peer = Peer(lambda p, m: p.reply(b"\x80\x01\x00\x01"))
    c = client(peer, max_retransmit=0)
    msg = raises(TimeoutError_, c.request, "GET", "/t")
    assert "1 datagrams ignored" in msg and "expected version 1" in msg, msg


def test_unknown_critical_option_in_a_response():
    peer = Peer(lambda p, m: piggyback(p, m, coap.CONTENT, b"x", [(9, b"\x01")]))
    msg = raises(ProtocolError, client(peer).request, "GET", "/t")
    assert "critical option 9" in msg
    peer = Peer(lambda p, m: piggyback(p, m, coap.CONTENT, b"x", [(coap.MAX_AGE, b"\x3c")]))
    assert client(peer).request("GET", "/t")[1] == b"x"  # an elective one is fine


# ------------------------------------------------------------------ block-wise transfer

class BlockServer:
    """Reassembles Block1 uploads, serves `answer` in Block2 blocks of at most `szx`."""

    def __init__(self, answer=b"", szx=6, up_szx=None, final=coap.CHANGED, etags=None):
        self.answer = answer
        self.szx = szx
        self.up_szx = up_szx  # the server's preferred upload block size
        self.final = final
        self.body = bytearray()
        self.log = []  # ("1"|"2", num, more, szx) of each request's block option
        self.etags = etags

    def __call__(self, peer, m):
        if m.type != CON:
            return
        b1 = m.block(coap.BLOCK1)
        b2 = m.block(coap.BLOCK2)
        if b1 is not None:
            self.log.append(("1",) + b1)
            num, more, szx = b1
            assert num * (16 << szx) == len(self.body), (num, szx, len(self.body))
            self.body.extend(m.payload)
            if more:
                s = szx if self.up_szx is None else min(szx, self.up_szx)
                peer.reply(Message(ACK, coap.CONTINUE, m.mid, m.token,
                                   [(coap.BLOCK1, coap.block_encode(num, True, s))]))
                return
        elif b2 is None or b2[0] == 0:
            self.body.extend(m.payload)
        if b2 is not None:
            self.log.append(("2",) + b2)
        num, szx = (0, self.szx) if b2 is None else (b2[0], min(b2[2], self.szx))
        size = 16 << szx
        part = self.answer[num * size:(num + 1) * size]
        more = (num + 1) * size < len(self.answer)
        opts = []
        if b1 is not None:
            opts.append((coap.BLOCK1, coap.block_encode(b1[0], False, b1[2])))
        if len(self.answer) > size or b2 is not None:
            opts.append((coap.BLOCK2, coap.block_encode(num, more, szx)))
            if num == 0:
                opts.append((coap.SIZE2, coap.uint_encode(len(self.answer))))
        if self.etags:
            opts.append((coap.ETAG, self.etags[min(num, len(self.etags) - 1)]))
        code = coap.CONTENT if m.code == coap.GET else self.final
        peer.reply(Message(ACK, code, m.mid, m.token, opts, part))


def _body(n):
    return bytes([i & 0xFF for i in range(n)])


def test_block1_upload_3000_bytes_in_512_byte_blocks():
    body = _body(3000)
    srv = BlockServer(b"stored")
    peer = Peer(srv)
    c = client(peer, block_size=512, early_block2=False, random_bytes=Rand())
    code, answer, _opts = c.request("POST", "/gsma/rsp2/asn1", body)
    assert (code, answer) == (coap.CHANGED, b"stored")
    assert bytes(srv.body) == body
    assert srv.log == [("1", n, n < 5, 5) for n in range(6)]
    msgs = peer.messages()
    assert msgs[0].uint(coap.SIZE1) == 3000 and msgs[1].opt(coap.SIZE1) is None
    assert [len(m.payload) for m in msgs] == [512] * 5 + [440]
    assert len(set([m.mid for m in msgs])) == 6 and len(set([m.token for m in msgs])) == 6
    for m in msgs:
        assert m.opts(coap.URI_PATH) == [b"gsma", b"rsp2", b"asn1"]


def test_block1_server_asks_for_smaller_blocks():
    # RFC 7959 figure 8: 2.31 with Block1 0/1/256 after a 512-byte block 0: block 0 was
    # taken whole; the client goes on with 256-byte blocks from offset 512 (NUM 2).
    body = _body(3000)
    srv = BlockServer(b"ok", up_szx=4)
    peer = Peer(srv)
    c = client(peer, block_size=512, early_block2=False)
    assert c.request("PUT", "/r", body)[:2] == (coap.CHANGED, b"ok")
    assert bytes(srv.body) == body
    assert srv.log[:3] == [("1", 0, True, 5), ("1", 2, True, 4), ("1", 3, True, 4)]
    assert srv.log[-1] == ("1", 11, False, 4)
    assert len(srv.log) == 11


def test_block1_413_restarts_with_the_size_asked():
    state = {"first": True}
    srv = BlockServer(b"ok")

    def handler(peer, m):
        b1 = m.block(coap.BLOCK1)
        if state["first"]:
            state["first"] = False
            peer.reply(Message(ACK, coap.REQUEST_ENTITY_TOO_LARGE, m.mid, m.token,
                               [(coap.BLOCK1, coap.block_encode(0, False, 2))]))
            return
        assert b1[2] == 2
        srv(peer, m)

    peer = Peer(handler)
    c = client(peer, block_size=1024, early_block2=False)
    body = _body(2000)
    assert c.request("POST", "/r", body)[:2] == (coap.CHANGED, b"ok")
    assert bytes(srv.body) == body and len(srv.log) == 32  # 2000 / 64 -> 32 blocks
    # A body that fits one message but is still too large for the server.
    state["first"] = True
    srv.body = bytearray()
    srv.log = []
    body = _body(1000)
    assert c.request("POST", "/r", body)[:2] == (coap.CHANGED, b"ok")
    assert bytes(srv.body) == body and len(srv.log) == 16
    assert peer.messages()[-17].opt(coap.BLOCK1) is None  # the first try had no Block1


def test_block1_error_ends_the_upload():
    def handler(peer, m):
        peer.reply(Message(ACK, 0x8D, m.mid, m.token, None, b"too big"))  # 4.13, no Block1

    peer = Peer(handler)
    c = client(peer)
    code, body, _o = c.request("POST", "/r", _body(2000))
    assert (code, body) == (0x8D, b"too big") and len(peer.sent) == 1
    assert c.post("/r", _body(2000), "application/octet-stream") == (413, b"too big")


def test_block2_download():
    answer = _body(2500)
    srv = BlockServer(answer, szx=6)
    peer = Peer(srv)
    c = client(peer, block_size=1024)
    code, body, opts = c.request("GET", "/big")
    assert code == coap.CONTENT and body == answer
    assert srv.log == [("2", 1, False, 6), ("2", 2, False, 6)]
    assert (coap.SIZE2, coap.uint_encode(2500)) in opts
    assert peer.messages()[0].opt(coap.BLOCK2) is None  # 1024: no early negotiation needed


def test_block2_early_negotiation_and_server_smaller_blocks():
    answer = _body(1000)
    srv = BlockServer(answer, szx=4)  # the server sends at most 256 bytes per block
    peer = Peer(srv)
    c = client(peer, block_size=512)
    assert c.request("GET", "/big")[1] == answer
    assert srv.log == [("2", 0, False, 5), ("2", 1, False, 4), ("2", 2, False, 4),
                       ("2", 3, False, 4)]


def test_block1_then_block2_post_like_the_ipa():
    # ESipa over CoAP: a 3000-byte request whose answer (a BPP) needs blocks too.
    req = _body(3000)
    answer = bytes(reversed(_body(5000)))
    srv = BlockServer(answer, szx=6, final=coap.CHANGED)
    peer = Peer(srv)
    c = client(peer, block_size=512)
    status, body = c.post("/gsma/rsp2/asn1", req, "application/x-gsma-rsp-asn1",
                          {"X-Admin-Protocol": "gsma/rsp/v2.1.0"})
    assert status == 204 and body == answer and bytes(srv.body) == req
    last_up = [m for m in peer.messages() if m.opt(coap.BLOCK1) is not None][-1]
    assert last_up.block(coap.BLOCK2) == (0, False, 5)  # early negotiation on the last block
    downs = [m for m in peer.messages() if m.opt(coap.BLOCK1) is None]
    assert [m.block(coap.BLOCK2)[0] for m in downs] == list(range(1, 10))
    assert all(m.payload == b"" and m.opt(coap.CONTENT_FORMAT) is None for m in downs)


def test_block2_checks():
    answer = _body(600)
    # ETag changes in the middle: the resource changed under us.
    peer = Peer(BlockServer(answer, szx=4, etags=[b"\x01", b"\x02"]))
    assert "ETag changed" in raises(ProtocolError, client(peer).request, "GET", "/r")
    # Size2 above max_body: refused at the first block.
    peer = Peer(BlockServer(answer, szx=4))
    msg = raises(ProtocolError, client(peer, max_body=500).request, "GET", "/r")
    assert "Size2 600 is above max_body 500" in msg

    # A short block with M set.
    def short(peer, m):
        piggyback(peer, m, coap.CONTENT, b"abc", [(coap.BLOCK2, coap.block_encode(0, True, 4))])

    msg = raises(ProtocolError, client(Peer(short)).request, "GET", "/r")
    assert "expected 256 bytes" in msg

    # A block from the wrong offset.
    def wrong(peer, m):
        b2 = m.block(coap.BLOCK2)
        n = 0 if b2[0] == 0 else 5
        piggyback(peer, m, coap.CONTENT, b"x" * 256, [(coap.BLOCK2, coap.block_encode(n, True, 4))])

    msg = raises(ProtocolError, client(Peer(wrong)).request, "GET", "/r")
    assert "offset 256" in msg


def test_post_stream_fetches_block2_blocks_as_they_are_read():
    # The IPA reads a bound profile package this way: one block in RAM, no whole-body cap.
    answer = bytes(reversed(_body(5000)))
    srv = BlockServer(answer, szx=6, final=coap.CHANGED)
    peer = Peer(srv)
    c = client(peer, block_size=512, max_body=1000)  # max_body bounds post(), not streams
    status, r = c.post_stream("/gsma/rsp2/asn1", b"req", "application/x-gsma-rsp-asn1")
    assert status == 204 and r.length == 5000
    assert [x[1] for x in srv.log] == [0]  # only the first block so far
    got = r.read(100)
    assert got == answer[:100] and len(srv.log) == 1
    assert got + read_all(r, 700) == answer
    assert [x[1] for x in srv.log] == list(range(10))  # each block asked for once, in order
    assert r.read(10) == b""
    # Closing early: the blocks not read are never asked for, the client stays usable.
    srv.log = []
    status, r = c.post_stream("/gsma/rsp2/asn1", b"req", "application/x-gsma-rsp-asn1")
    assert r.read(10) == answer[:10]
    r.close()
    assert r.read(10) == b"" and len(srv.log) == 1
    # post() of the same answer stays bounded by max_body.
    msg = raises(ProtocolError, c.post, "/gsma/rsp2/asn1", b"x", "application/x-gsma-rsp-asn1")
    assert "Size2 5000 is above max_body 1000" in msg


def test_post_stream_error_code_for_a_later_block_is_a_protocol_error():
    answer = _body(2000)
    inner = BlockServer(answer, szx=4)

    def failing(peer, m):
        b2 = m.block(coap.BLOCK2)
        if b2 is not None and b2[0] == 3:
            piggyback(peer, m, coap.NOT_FOUND, b"gone")
            return
        inner(peer, m)

    c = client(Peer(failing), block_size=256)
    status, r = c.post_stream("/r", b"", "application/x-gsma-rsp-asn1")
    assert status == 204
    assert b"".join(r.read(256) for _ in range(3)) == answer[:768]  # blocks 0, 1, 2
    msg = raises(ProtocolError, r.read, 256)
    assert "Block2: block 3 answered 4.04" in msg
    # request() keeps its answer: the error code and its payload.
    code, body, _o = client(Peer(failing), block_size=256).request("POST", "/r")
    assert code == coap.NOT_FOUND and body == b"gone"


# ------------------------------------------------------------------ network interface

def test_post_maps_codes_and_content_formats():
    answers = [coap.CONTENT, coap.CHANGED, coap.CREATED, coap.NOT_FOUND, 0xA3, 0x8C]

    def handler(peer, m):
        piggyback(peer, m, answers.pop(0), b"body")

    peer = Peer(handler)
    c = client(peer)
    got = [c.post("/gsma/rsp2/asn1", b"\xbf\x4f\x00", "application/x-gsma-rsp-asn1")[0]
           for _ in range(3)]
    got.append(c.post("/gsma/rsp2/esipa/getEimPackage", b"{}",
                      "application/json;charset=UTF-8")[0])
    got.append(c.post("/x", b"", "application/octet-stream")[0])
    got.append(c.post("/x", b"", 11050)[0])
    assert got == [200, 204, 201, 404, 503, 412]
    cfs = [m.uint(coap.CONTENT_FORMAT) for m in peer.messages()]
    assert cfs == [None, None, None, 50, 42, 11050]
    assert c.code == 0x8C
    raises(ValueError, c.post, "/x", b"", "application/x-unknown")
    c2 = client(Peer(lambda p, m: piggyback(p, m, coap.CHANGED)),
                content_formats={"application/x-gsma-rsp-asn1": 42})
    c2.post("/x", b"\x01", "application/x-gsma-rsp-asn1")
    assert c2.dgram.messages()[0].uint(coap.CONTENT_FORMAT) == 42


def test_http_status_mapping():
    assert coap.http_status(coap.CONTENT) == 200 and coap.http_status(coap.CHANGED) == 204
    assert coap.http_status(coap.DELETED) == 200 and coap.http_status(coap.VALID) == 304
    assert coap.http_status(coap.code(4, 4)) == 404 and coap.http_status(coap.code(5, 3)) == 503
    assert coap.http_status(coap.BAD_OPTION) == 400 and coap.http_status(coap.code(5, 5)) == 502


def test_message_ids_increment_and_wrap():
    peer = Peer(lambda p, m: piggyback(p, m, coap.CONTENT))
    c = client(peer, random_bytes=Rand(0xFF))  # mid starts at 0xFFFF
    c.request("GET", "/a")
    c.request("GET", "/b")
    assert [m.mid for m in peer.messages()] == [0, 1]


def test_default_random_and_bad_arguments():
    assert len(coap.default_random(8)) == 8
    raises(ValueError, CoapClient, Peer(), block_size=500)
    raises(ValueError, CoapClient, Peer(), token_length=9)
    c = CoapClient(Peer())
    raises(ValueError, c.request, "BREW", "/")


def test_response_headers_and_close():
    peer = Peer(lambda p, m: piggyback(p, m, coap.CHANGED, b"\xbf\x50\x00",
                                       [(coap.CONTENT_FORMAT, coap.uint_encode(42))]))
    closed = []
    peer.close = lambda: closed.append(1)
    with client(peer) as c:
        assert c.post("/gsma/rsp2/asn1", b"\xbf\x50\x00", "application/x-gsma-rsp-asn1") == (
            204, b"\xbf\x50\x00")
        assert c.status == 204 and c.code == coap.CHANGED
        assert c.response_headers == {"content-type": "application/octet-stream"}
        assert c.content_type_name(11542) == "coap-content-format/11542"
    assert closed == [1]


def test_block2_server_block_size_grows():
    # Blocks of 256 bytes, then the server switches to 512 where the offset allows it
    # (RFC 7959 2.2: NUM * size is the offset). The client follows with the larger SZX
    # (never above its own block_size) and checks each offset.
    answer = _body(1200)

    def handler(peer, m):
        b2 = m.block(coap.BLOCK2)
        offset = 0 if b2 is None else b2[0] * (16 << b2[2])
        szx = 5 if offset and offset % 512 == 0 else 4
        num = offset // (16 << szx)
        size = 16 << szx
        part = answer[num * size:(num + 1) * size]
        more = (num + 1) * size < len(answer)
        piggyback(peer, m, coap.CONTENT, part, [(coap.BLOCK2, coap.block_encode(num, more, szx))])

    peer = Peer(handler)
    assert client(peer, block_size=1024).request("GET", "/r")[1] == answer
    asked = [m.block(coap.BLOCK2) for m in peer.messages()]
    assert asked == [None, (1, False, 4), (2, False, 4), (2, False, 5)]


def test_round_trip_and_garbage_never_crash():
    # Deterministic pseudo-random messages: encode -> decode gives them back; truncations
    # and random bytes either decode or raise ProtocolError, nothing else.
    seed = [12345]

    def rnd(n):
        seed[0] = (seed[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return seed[0] % n

    numbers = [1, 3, 4, 7, 11, 11, 12, 15, 17, 23, 27, 28, 60, 258, 2000, 65000]
    for _ in range(150):
        opts = []
        for _i in range(rnd(6)):
            size = rnd(3) * rnd(150)
            opts.append((numbers[rnd(len(numbers))], bytes([rnd(256) for _j in range(size)])))
        m = Message(rnd(4), 1 + rnd(200), rnd(65536), bytes([rnd(256) for _j in range(rnd(9))]),
                    opts, bytes([rnd(256) for _j in range(rnd(40))]))
        data = m.encode()
        d = coap.decode(data)
        assert (d.type, d.code, d.mid, d.token, d.payload) == (m.type, m.code, m.mid, m.token,
                                                              m.payload)
        assert d.options == coap._sorted(opts)
        for cut in (rnd(len(data)), len(data) - 1):
            try:
                coap.decode(data[:cut])
            except ProtocolError:
                pass
        junk = bytes([0x40 | rnd(0x40)] + [rnd(256) for _j in range(rnd(60))])
        try:
            coap.decode(junk)
        except ProtocolError:
            pass
