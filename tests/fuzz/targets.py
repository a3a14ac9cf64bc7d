"""Fuzz targets: one per entry point of ipa_core that takes a peer's bytes (issue 17).

Each target is `fn(data: bytes)`: it feeds `data` to the entry point the way the IPA
does and touches what a caller would touch. The rule every target checks is `check()`:
only ALLOWED error types escape (the ipa_core.errors hierarchy, plus ValueError for
the one entry point whose API documents it: activation.parse); tests/fuzz/run.py adds
the time bound (1 s an input) and the memory bound (RSS, libFuzzer's -rss_limit_mb).

Peers that answer in several pieces (a card's R-APDUs, a modem's output after each
command, CoAP datagrams) read `data` as FRAMES: a 2-byte big-endian length, then
that many bytes, repeated (the last frame may be cut). tests/fuzz/make_corpus.py
writes real traffic in this form, so mutations keep the exchange in step.
"""

from ipa_core import activation, b64, coap, es10, es10_admin, es10_download, es9p, es11, \
    esipa_decode, esipa_json, esipa_push, http, json_stream, tlv
from ipa_core.at import AtEngine
from ipa_core.at_card import AtCard, open_isdr_session, parse_apdu_answer, parse_ccho
from ipa_core.at_http_quectel import QuectelHttp
from ipa_core.at_http_sim7080 import Sim7080Http
from ipa_core.at_http_simcom import SimcomHttp
from ipa_core.apdu import IsdrSession
from ipa_core.errors import IpaError
from ipa_core.stream import BytesReader

# A GetEimPackageRequest (EID only): what the IPA sends where peers answer.
GET_EIM_PACKAGE = bytes.fromhex("BF4F125A1089049032123451234512345678901235")
ESIPA_HEADERS = {"X-Admin-Protocol": "gsma/rsp/v2.1.0", "User-Agent": "gsma-rsp-lpad"}

# What may escape each target. ValueError only where the API documents it for bad input.
ALLOWED = {"activation": (IpaError, ValueError)}
DEFAULT_ALLOWED = (IpaError,)


def frames(data, limit=64):
    """`data` as length-prefixed frames (see the module docstring), at most `limit` of them."""
    out = []
    i = 0
    n = len(data)
    while i < n and len(out) < limit:
        if i + 2 > n:
            out.append(bytes(data[i:]))
            break
        k = (data[i] << 8) | data[i + 1]
        out.append(bytes(data[i + 2:i + 2 + k]))
        i += 2 + k
    return out


def pack(parts):
    """The inverse of frames(): the corpus format."""
    return b"".join(len(p).to_bytes(2, "big") + bytes(p) for p in parts)


class FakeClock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t


class ReplayStream:
    """A byte-stream peer (modem UART, TCP) whose answers are frames of the fuzz input.

    Each write releases the next frame (the peer's answer to what was written; frame 0
    is there from the start, e.g. a boot URC); reads hand out what was released in
    pieces of `piece` bytes; a read that finds nothing advances the fake clock by
    `idle_ms`, so every bounded wait ends quickly and exactly.
    """

    def __init__(self, parts, clock, piece=64, idle_ms=500, on_write=True):
        self.parts = list(parts)
        self.clock = clock
        self.piece = piece
        self.idle_ms = idle_ms
        self.buf = bytearray(self.parts.pop(0) if self.parts else b"")
        self.on_write = on_write

    def write(self, b):
        if self.on_write and self.parts:
            self.buf += self.parts.pop(0)
        return len(b)

    def read(self, n):
        if not self.buf:
            self.clock.t += self.idle_ms
            return b""
        k = min(n, self.piece, len(self.buf))
        out = bytes(self.buf[:k])
        del self.buf[:k]
        return out

    def any(self):
        return len(self.buf)

    def readinto(self, b):
        out = self.read(len(b))
        b[:len(out)] = out
        return len(out)

    def close(self):
        pass


class ReplayCard:
    """A card whose R-APDUs are the frames of the fuzz input, then 6F00."""

    def __init__(self, parts):
        self.parts = list(parts)

    def transmit(self, apdu):
        return self.parts.pop(0) if self.parts else b"\x6f\x00"


class ReplaySession:
    """An ES10 session (store_data) answering every request with the next frame."""

    version = "1.2"

    def __init__(self, parts):
        self.parts = list(parts)

    def store_data(self, request):
        return self.parts.pop(0) if self.parts else b""


def _choose(data, options):
    """(options[data[0] % n], data[1:]): the first byte picks what the rest goes to."""
    if not data:
        return options[0], b""
    return options[data[0] % len(options)], data[1:]


def _text(data):
    return data.decode("utf-8", "replace")


# ---- targets ---------------------------------------------------------------------------

def t_tlv(data):
    """ipa_core.tlv: decode (strict and lenient), walk and every primitive reader."""
    for strict in (True, False):
        try:
            t = tlv.decode(data, strict=strict)
        except IpaError:
            continue
        for _depth, node in tlv.walk(t):
            if node.constructed:
                continue
            for f in (node.as_int, node.as_uint, node.as_bool, node.as_null, node.as_str,
                      node.as_oid, lambda n=node: n.as_bits(("a", "b", "c"))):
                try:
                    f()
                except IpaError:
                    pass
    for _ in tlv.decode_all(data):
        pass


def t_apdu(data):
    """ipa_core.apdu.IsdrSession: channel open, SELECT, STORE DATA, 61xx/6Cxx chains."""
    s = IsdrSession(ReplayCard(frames(data)), max_response=4096)
    es10.get_eid(s)
    s.store_data(b"\xbf\x20\x00")


ES10_CALLS = (
    es10.get_eid, es10.get_euicc_info1, es10.get_euicc_configured_addresses,
    es10.get_eim_configuration_data, es10.retrieve_notifications_list, es10.list_notification,
    es10_admin.get_euicc_info2, es10_admin.get_profiles_info, es10_admin.get_rat,
    es10_admin.get_connectivity_parameters,
    lambda s: es10.load_euicc_package(s, bytes.fromhex("BF51038001FF")),
    lambda s: es10.remove_notification_from_list(s, 1),
    lambda s: es10.profile_rollback(s, False),
    lambda s: es10_download.authenticate_server(s, bytes.fromhex("30038001FF"), b"\x5f\x37\x00",
                                                b"\x04\x00", b"\x30\x00", b"\xa0\x00"),
    lambda s: es10_download.prepare_download(s, bytes.fromhex("30038001FF"), b"\x5f\x37\x00",
                                             b"\x30\x00"),
    lambda s: es10_download.cancel_session(s, b"\x01" * 16, 1),
)


def t_es10(data):
    """Every ES10 decoder (es10, es10_admin, es10_download, es10_signed via the lists)."""
    fn, rest = _choose(data, ES10_CALLS)
    fn(ReplaySession(frames(rest)))


ESIPA_DECODERS = (
    esipa_decode.decode_get_eim_package_response,
    esipa_decode.decode_provide_eim_package_result_response,
    esipa_decode.decode_initiate_authentication_response,
    esipa_decode.decode_authenticate_client_response,
    esipa_decode.decode_get_bound_profile_package_response,
    esipa_decode.decode_cancel_session_response,
    esipa_push.decode_transfer_eim_package_request,
    esipa_push.decode_eim_message,
)


def t_esipa(data):
    """ESipa ASN.1 answers (esipa_decode, esipa_push) and the streamed BPP answer."""
    fn, rest = _choose(data, ESIPA_DECODERS + (None,))
    if fn is not None:
        fn(rest)
        return
    r = esipa_decode.open_get_bound_profile_package_response(BytesReader(rest), max_package=65536)
    _drain_segments(r["segments"])


def _drain_segments(segs):
    """Every STORE DATA segment of a streamed package, as the download loop takes them."""
    try:
        segs.total()
        for _ in range(10000):
            if segs.next() is None:
                return
        raise AssertionError("BppSegments did not end after 10000 segments")
    finally:
        segs.close()


def t_esipa_json(data):
    """ESipa JSON binding (esipa_json.from_json, every function) and its streamed BPP."""
    fn, rest = _choose(data, esipa_json.FUNCTIONS + ("handleNotification", None))
    if fn is not None:
        esipa_json.from_json(fn, rest)
        return
    r = esipa_json.open_get_bound_profile_package_response(BytesReader(rest), max_package=65536)
    _drain_segments(r["segments"])


ES9P_CALLS = (
    es9p.decode_initiate_authentication_response,
    lambda b: es9p.decode_authenticate_client_response(b, b"\x01" * 16),
    es9p.decode_authenticate_client_response,
    es9p.decode_get_bound_profile_package_response,
    es9p.decode_handle_notification_response,
    es9p.decode_cancel_session_response,
    lambda b: _drain_segments(es9p.open_get_bound_profile_package_response(
        BytesReader(b), max_package=65536)["segments"]),
    es11.decode_initiate_authentication_response,
    es11.decode_authenticate_client_response,
)


def t_es9p(data):
    """ES9+ (SM-DP+) and ES11 (SM-DS) JSON answers, whole and streamed."""
    fn, rest = _choose(data, ES9P_CALLS)
    fn(rest)


def t_json_stream(data):
    """ipa_core.json_stream.open_member: the streaming JSON scanner, read to the end."""
    seen = []

    def check(members, complete):
        seen.append((dict(members), complete))

    m = json_stream.open_member(BytesReader(data), "boundProfilePackage", "fuzz body", check,
                                4096, max_other=4096)
    if m is None:
        return
    total = 0
    while True:
        b = m.read(97)
        if not b:
            break
        total += len(b)
        if total > 4096:
            raise AssertionError("json_stream member read past its 4096-byte bound")
    m.close()


def t_activation(data):
    """ipa_core.activation.parse (bytes and text) and build of what it gave back."""
    a = activation.parse(data)
    activation.build(a["smdpAddress"], a["matchingId"], a["smdpOid"], a["ccRequired"])


def t_b64(data):
    """ipa_core.b64.decode of text, bounded (non-zero pad bits are accepted: RFC 4648 3.5
    lets a decoder take them, and the bytes are what the IPA checks)."""
    out = b64.decode(_text(data), "fuzz field", limit=4096)
    if len(out) > 4096:
        raise AssertionError("b64 decoded %d bytes past its 4096-byte limit" % len(out))


def t_coap(data):
    """coap.decode and every option accessor of what it gave."""
    m = coap.decode(data)
    for number, _value in m.options:
        try:
            m.uint(number)
        except IpaError:
            pass
    for number in (coap.BLOCK1, coap.BLOCK2):
        try:
            m.block(number)
        except IpaError:
            pass
    coap.decode(m.encode())


class CoapReplayPeer:
    """Datagram peer for CoapClient: each recv() hands out the next frame as the peer's
    next datagram. A frame starting with byte FF goes out as it is (stray, stale or
    forged datagrams); any other gets the last request's message id and token patched
    in, so the fuzzer reaches block-wise reassembly past the matching."""

    def __init__(self, parts, clock):
        self.parts = list(parts)
        self.clock = clock
        self.last = b""

    def send(self, data):
        self.last = bytes(data)

    def _patched(self, raw):
        req = self.last
        tkl = req[0] & 0x0F
        if len(raw) >= 4 and tkl <= 8 and len(req) >= 4 + tkl:
            old = raw[0] & 0x0F
            raw[0] = (raw[0] & 0xF0) | tkl
            raw[2:4] = req[2:4]
            raw[4:4 + old] = req[4:4 + tkl]
        return bytes(raw)

    def recv(self, timeout_ms):
        if self.parts and self.last:
            raw = bytearray(self.parts.pop(0))
            return bytes(raw[1:]) if raw[:1] == b"\xff" else self._patched(raw)
        self.clock.t += timeout_ms
        return None

    def close(self):
        pass


def t_coap_client(data):
    """coap.CoapClient.post against a replaying peer: reliability, Block1/Block2, tokens.
    The first byte picks the request: a GetEimPackageRequest in one block, or the same
    with 200 bytes more (Block1 in 64-byte blocks)."""
    body, rest = _choose(data, (GET_EIM_PACKAGE, GET_EIM_PACKAGE + bytes(200)))
    clock = FakeClock()
    c = coap.CoapClient(CoapReplayPeer(frames(rest, 256), clock), host="eim.example",
                        block_size=64, clock_ms=clock, max_body=8192,
                        random_bytes=lambda n: bytes(n))
    c.post("/gsma/rsp2/asn1", body, "application/x-gsma-rsp-asn1")


def t_http(data):
    """http.read_response: status line, fields, Content-Length, chunked, to-EOF, bodies."""
    clock = FakeClock()
    rd = http.Buffered(ReplayStream([data], clock, piece=37), clock_ms=clock)
    for method in ("POST", "HEAD"):
        try:
            http.read_message(rd, method=method, max_body=8192, max_header=4096)
        except IpaError:
            return


def t_http_client(data):
    """http.HttpClient.post_stream over a replaying stream, the body read in pieces."""
    clock = FakeClock()
    stream = ReplayStream([data], clock, piece=29, on_write=False)
    c = http.HttpClient(lambda: stream, "eim.example", max_body=8192, clock_ms=clock)
    _status, reader = c.post_stream("/gsma/rsp2/asn1", b"\xbf\x4f\x00",
                                    "application/x-gsma-rsp-asn1")
    try:
        while reader.read(100):
            pass
    finally:
        reader.close()
    c.close()


def _engine(data):
    clock = FakeClock()
    return AtEngine(ReplayStream(frames(data), clock), clock_ms=clock), clock


def t_at(data):
    """ipa_core.at.AtEngine: lines, finals, +CME codes, URCs, prompts, raw reads."""
    eng, _clock = _engine(data)
    eng.command("AT+CGMM", timeout_ms=3000)
    eng.command("AT+CPIN?", timeout_ms=3000, prefix="+CPIN:")
    eng.data_command("AT+QFUPL=\"x\",3", b"abc", timeout_ms=3000)
    eng.wait_urc("+QIURC:", timeout_ms=3000)
    eng.read_raw(16, timeout_ms=3000)


def t_at_lines(data):
    """at_card.parse_apdu_answer / parse_ccho on answer lines (no engine)."""
    fn, rest = _choose(data, (0, 1, 2))
    lines = [x.strip() for x in _text(rest).split("\n")[:70]]
    if fn == 2:
        parse_ccho("AT+CCHO=\"A0000005591010FFFFFFFF8900000100\"", lines)
    else:
        parse_apdu_answer("AT+CGLA=1,6,\"80E2910000\"", lines, ("+CGLA:", "+CSIM:")[fn])


def t_at_card(data):
    """at_card.AtCard: CCHO/CGLA/CSIM dialogue, cut answers, GET RESPONSE, then GetEID."""
    mode, rest = _choose(data, ("auto", "cgla", "csim"))
    eng, _clock = _engine(rest)
    card = AtCard(eng, mode=mode, segment_timeout_ms=3000, apdu_timeout_ms=3000)
    s = open_isdr_session(card)
    es10.get_eid(s)
    card.close()


def _at_http(cls, data, **opts):
    eng, _clock = _engine(data)
    net = cls(eng, "https://127.0.0.1:8443", timeout_ms=3000, http_timeout_ms=6000,
              read_timeout_ms=3000, input_timeout_ms=3000, max_body=8192, ca="eim_ca.pem",
              **opts)
    _status, reader = net.post_stream("/gsma/rsp2/asn1", GET_EIM_PACKAGE,
                                      "application/x-gsma-rsp-asn1", ESIPA_HEADERS)
    try:
        while reader.read(300):
            pass
    finally:
        reader.close()
    net.close()


def t_at_http_quectel(data):
    """Quectel AT+QHTTP* stack: +QHTTPPOST URC, CONNECT body and its trailer."""
    _at_http(QuectelHttp, data)


def t_at_http_simcom(data):
    """SIMCom AT+HTTP* stack: +HTTPACTION URC, +HTTPREAD answers."""
    _at_http(SimcomHttp, data)


def t_at_http_sim7080(data):
    """SIM7080 AT+SH* stack: +SHREQ URC, +SHREAD answers."""
    _at_http(Sim7080Http, data)


TARGETS = {
    "tlv": t_tlv,
    "apdu": t_apdu,
    "es10": t_es10,
    "esipa": t_esipa,
    "esipa_json": t_esipa_json,
    "es9p": t_es9p,
    "json_stream": t_json_stream,
    "activation": t_activation,
    "b64": t_b64,
    "coap": t_coap,
    "coap_client": t_coap_client,
    "http": t_http,
    "http_client": t_http_client,
    "at": t_at,
    "at_lines": t_at_lines,
    "at_card": t_at_card,
    "at_http_quectel": t_at_http_quectel,
    "at_http_simcom": t_at_http_simcom,
    "at_http_sim7080": t_at_http_sim7080,
}


class Escape(AssertionError):
    """An error type outside the target's declared ones escaped (a finding)."""


def check(name, data):
    """Run target `name` on `data`; raise Escape when an undeclared error type escapes."""
    allowed = ALLOWED.get(name, DEFAULT_ALLOWED)
    try:
        TARGETS[name](data)
    except allowed:
        pass
    except Escape:
        raise
    except Exception as e:  # noqa: B902 - the point: anything else is a finding
        raise Escape("%s: %s escaped: %s (input %s)" % (name, type(e).__name__, e,
                                                         data[:64].hex())) from e

