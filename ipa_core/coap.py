"""CoAP client engine (RFC 7252) with block-wise transfer (RFC 7959), for ESipa over CoAP/DTLS.

SGP.32 lets the IPA reach the eIM with CoAP over DTLS (ipaRetrieveCoaps):
the same ASN.1 payloads as the HTTPS binding, Uri-Path `gsma/rsp2/asn1`; a
bound profile package does not fit one datagram, hence RFC 7959 blocks.
This module computes datagrams and interprets the answers; it does no I/O
of its own. The datagram interface is supplied by the caller:

    dgram.send(data)          -> send one datagram (bytes)
    dgram.recv(timeout_ms)    -> one datagram (bytes), or None when nothing
                                 came within timeout_ms

so a MicroPython UDP socket, a DTLS session or a modem's UDP service can
carry it. `clock_ms()` (time.ticks_ms on MicroPython, time.monotonic on
CPython) and the random source are injectable, so tests run on a fake clock.

What is covered (RFC sections in brackets):
- message format [3]: version 1, CON/NON/ACK/RST, token 0..8 bytes, code,
  message id, options in delta/length form with the 13/14 extended forms,
  repeated options, payload marker; malformed input -> ProtocolError naming
  the offset and what was expected [3, 3.1];
- reliability [4.2, 4.8]: CON requests retransmitted with exponential
  back-off (ACK_TIMEOUT 2 s, ACK_RANDOM_FACTOR 1.5, MAX_RETRANSMIT 4, all
  configurable), RST ends the exchange, duplicates are ignored (a repeated
  confirmable response is acknowledged again) [4.5];
- responses [5.2]: piggybacked in the ACK, or separate (empty ACK, then a
  CON/NON response that is acknowledged); token matching [5.3.2]; an
  unknown confirmable response is reset;
- block-wise transfer [RFC 7959 2]: Block1 for request bodies larger than
  `block_size` (2.31 Continue; the server's smaller block size is honoured),
  Block2 for answers, Size1/Size2, ETag consistency across blocks; a 4.13
  answer that asks for smaller blocks restarts the upload once with them.

Bounds: `max_message` bytes per datagram, MAX_OPTIONS options per message,
`max_body` bytes per reassembled answer or request body, every exchange
bounded by the back-off (MAX_TRANSMIT_WAIT) or `separate_timeout_ms`, and a
whole request (all blocks) by `request_timeout_ms`. `post_stream` reads the
answer's Block2 blocks as its reader is read (Block2Reader: one block in RAM,
the bound profile package): no whole-body cap there, the caller bounds what it
reads, and each block's exchange has a `request_timeout_ms` of its own.
"""

from ipa_core.clock import clock
from ipa_core.errors import ProtocolError, TimeoutError_, TransportError


try:  # CPython and most MicroPython ports
    from os import urandom as _urandom
except ImportError:
    try:  # MicroPython without weak links (QuecPython 1.13)
        from uos import urandom as _urandom
    except ImportError:
        _urandom = None


def default_random(n):
    """n random bytes: os.urandom where the port has it, else the random module (MicroPython)."""
    if _urandom is not None:
        return _urandom(n)
    try:
        import random
    except ImportError:
        import urandom as random

    return bytes([random.getrandbits(8) for _ in range(n)])


# ---------------------------------------------------------------- constants (RFC 7252 12)

VERSION = 1
CON, NON, ACK, RST = 0, 1, 2, 3
TYPE_NAMES = ("CON", "NON", "ACK", "RST")


def code(cls, detail):
    """c.dd -> the code byte (RFC 7252 3: 3-bit class, 5-bit detail)."""
    return (cls << 5) | detail


def code_str(c):
    """The code byte as 'c.dd' (0x45 -> '2.05')."""
    return "%d.%02d" % (c >> 5, c & 0x1F)


EMPTY = 0
GET, POST, PUT, DELETE, FETCH, PATCH, IPATCH = 1, 2, 3, 4, 5, 6, 7
METHODS = {"GET": GET, "POST": POST, "PUT": PUT, "DELETE": DELETE,
           "FETCH": FETCH, "PATCH": PATCH, "IPATCH": IPATCH}
CREATED, DELETED, VALID, CHANGED, CONTENT = 0x41, 0x42, 0x43, 0x44, 0x45
CONTINUE = 0x5F  # 2.31, RFC 7959 2.9.1
BAD_REQUEST, BAD_OPTION, NOT_FOUND = 0x80, 0x82, 0x84
REQUEST_ENTITY_INCOMPLETE = 0x88  # 4.08, RFC 7959 2.9.2
REQUEST_ENTITY_TOO_LARGE = 0x8D  # 4.13, RFC 7959 2.9.3

# Option numbers (RFC 7252 5.10, RFC 7959 2.1 / 4).
IF_MATCH = 1
URI_HOST = 3
ETAG = 4
IF_NONE_MATCH = 5
OBSERVE = 6
URI_PORT = 7
LOCATION_PATH = 8
URI_PATH = 11
CONTENT_FORMAT = 12
MAX_AGE = 14
URI_QUERY = 15
ACCEPT = 17
LOCATION_QUERY = 20
BLOCK2 = 23
SIZE2 = 28
BLOCK1 = 27
PROXY_URI = 35
PROXY_SCHEME = 39
SIZE1 = 60

# Critical options (odd numbers) a response may carry and this client understands;
# any other critical option makes the response unusable (RFC 7252 5.4.1).
_RESPONSE_CRITICAL = (BLOCK1, BLOCK2)

# Content-Format ids (RFC 7252 12.3, IANA CoRE registry).
TEXT_PLAIN = 0
OCTET_STREAM = 42
JSON = 50
CBOR = 60

# Content types of the ESipa bindings -> Content-Format. application/x-gsma-rsp-asn1
# has no registered CoAP Content-Format: it is sent without the option (an inference,
# see docs/network.md "CoAP"); pass content_formats= to send e.g. 42 instead.
CONTENT_FORMATS = {
    "application/x-gsma-rsp-asn1": None,
    "application/octet-stream": OCTET_STREAM,
    "application/json": JSON,
    "text/plain": TEXT_PLAIN,
    "application/cbor": CBOR,
}

# Transmission parameters (RFC 7252 4.8).
ACK_TIMEOUT_MS = 2000
ACK_RANDOM_FACTOR = 1.5
MAX_RETRANSMIT = 4

MAX_TOKEN = 8
MAX_OPTIONS = 64  # per message: far above what any CoAP message here needs
MAX_MESSAGE = 1500  # bytes per datagram: above 1024-byte blocks plus header and options
MAX_BODY = 0x100000  # 1 MiB, like ipa_core.http: above any bound profile package
SEPARATE_TIMEOUT_MS = 60000  # wait for a separate response after its empty ACK
REQUEST_TIMEOUT_MS = 600000  # one whole request, all blocks
_RECENT = 16  # confirmable responses remembered for duplicate detection


# CoAP response code -> HTTP status, for post() (RFC 8075 7, "CoAP -> HTTP").
# Codes not listed map to class*100 + detail (4.04 -> 404).
HTTP_STATUS = {
    CREATED: 201,  # 2.01 Created
    DELETED: 200,  # 2.02 Deleted
    VALID: 304,  # 2.03 Valid
    CHANGED: 204,  # 2.04 Changed (the body, if any, is still returned)
    CONTENT: 200,  # 2.05 Content
    BAD_OPTION: 400,  # 4.02 Bad Option
    REQUEST_ENTITY_INCOMPLETE: 400,  # 4.08
    0xA5: 502,  # 5.05 Proxying Not Supported
}


def http_status(c):
    """HTTP status number for CoAP code byte `c` (2.05 -> 200, 2.04 -> 204, 4.04 -> 404)."""
    s = HTTP_STATUS.get(c)
    if s is None:
        s = (c >> 5) * 100 + (c & 0x1F)
    return s


# --------------------------------------------------------------------- option values

def uint_encode(n):
    """Option uint (RFC 7252 3.2): big-endian, no leading zero bytes, 0 -> b""."""
    if n < 0:
        raise ValueError("option uint: expected a value >= 0, got %d" % n)
    out = []
    while n:
        out.append(n & 0xFF)
        n >>= 8
    out.reverse()
    return bytes(out)


def uint_decode(b, what="option", max_len=4):
    if len(b) > max_len:
        raise ProtocolError("%s: expected a uint of at most %d bytes, got %d bytes"
                            % (what, max_len, len(b)))
    n = 0
    for c in b:
        n = (n << 8) | c
    return n


def szx_for(size):
    """Block size 16..1024 (a power of two) -> SZX 0..6 (RFC 7959 2.2)."""
    for szx in range(7):
        if 16 << szx == size:
            return szx
    raise ValueError("block size: expected 16, 32, 64, 128, 256, 512 or 1024, got %r" % (size,))


def block_encode(num, more, szx):
    """Block1/Block2 value (RFC 7959 2.2): NUM (up to 20 bits), M, SZX."""
    if not 0 <= num < (1 << 20) or not 0 <= szx <= 6:
        raise ValueError("block option: num %d / szx %d out of range" % (num, szx))
    return uint_encode((num << 4) | (8 if more else 0) | szx)


def block_decode(b, what="Block option"):
    """Block value -> (num, more, szx); SZX 7 (reserved; BERT on TCP) is refused."""
    v = uint_decode(b, what, 3)
    szx = v & 7
    if szx == 7:
        raise ProtocolError("%s: expected SZX 0..6, got the reserved 7" % what)
    return v >> 4, bool(v & 8), szx


# ------------------------------------------------------------------------- messages

class Message:
    """One CoAP message. `options` is a list of (number, value bytes), any order
    (encode() sorts them stably, so repeated options keep their order)."""

    def __init__(self, mtype=CON, code=EMPTY, mid=0, token=b"", options=None, payload=b""):
        self.type = mtype
        self.code = code
        self.mid = mid
        self.token = bytes(token)
        self.options = list(options or ())
        self.payload = bytes(payload)

    def opt(self, number, default=None):
        """Value of the first option `number`, else `default`."""
        for n, v in self.options:
            if n == number:
                return v
        return default

    def opts(self, number):
        """Values of every option `number` (repeatable ones such as Uri-Path)."""
        return [v for n, v in self.options if n == number]

    def uint(self, number, default=None):
        v = self.opt(number)
        return default if v is None else uint_decode(v, "option %d" % number)

    def block(self, number):
        """(num, more, szx) of Block1/Block2, None when absent; refuses a repeated one."""
        vals = self.opts(number)
        if not vals:
            return None
        name = "Block1" if number == BLOCK1 else "Block2"
        if len(vals) > 1:
            raise ProtocolError("%s: expected one option, got %d" % (name, len(vals)))
        return block_decode(vals[0], name)

    def is_response(self):
        return (self.code >> 5) in (2, 4, 5)

    def encode(self):
        """The datagram bytes (RFC 7252 3)."""
        if not 0 <= self.type <= 3 or not 0 <= self.code <= 255 or not 0 <= self.mid <= 0xFFFF:
            raise ValueError("CoAP header: type %r, code %r or message id %r out of range"
                             % (self.type, self.code, self.mid))
        if len(self.token) > MAX_TOKEN:
            raise ValueError("CoAP token: expected at most 8 bytes, got %d" % len(self.token))
        out = [bytes([(VERSION << 6) | (self.type << 4) | len(self.token), self.code,
                      self.mid >> 8, self.mid & 0xFF]), self.token]
        prev = 0
        for number, value in _sorted(self.options):
            value = bytes(value)
            if number > 0xFFFF:
                raise ValueError("option number %d: expected at most 65535" % number)
            if len(value) > 0xFFFF + 269:
                raise ValueError("option %d: value of %d bytes is too long" % (number, len(value)))
            dn, dext = _nibble(number - prev)
            ln, lext = _nibble(len(value))
            out.append(bytes([(dn << 4) | ln]))
            out.append(dext)
            out.append(lext)
            out.append(value)
            prev = number
        if self.payload:
            out.append(b"\xff")
            out.append(self.payload)
        return b"".join(out)

    def __repr__(self):
        opts = ", ".join(["%d:%s" % (n, _hex(v)) for n, v in self.options])
        return "<CoAP %s %s mid=%d token=%s [%s] %d bytes>" % (
            TYPE_NAMES[self.type & 3], code_str(self.code), self.mid, _hex(self.token),
            opts, len(self.payload))


def _hex(b):
    return "".join(["%02x" % c for c in b])


def _sorted(options):
    """Stable sort by option number (insertion sort: few options, keeps repeats in order)."""
    out = []
    for item in options:
        i = len(out)
        while i > 0 and out[i - 1][0] > item[0]:
            i -= 1
        out.insert(i, item)  # list.insert exists on MicroPython (bytearray.insert does not)
    return out


def _nibble(n):
    """Delta or length -> (4-bit nibble, extension bytes) (RFC 7252 3.1)."""
    if n < 13:
        return n, b""
    if n < 269:
        return 13, bytes([n - 13])
    n -= 269
    return 14, bytes([n >> 8, n & 0xFF])


def _ext(data, pos, nib, what, start):
    """Read the extended delta/length for nibble `nib` at data[pos]: (value, new pos)."""
    if nib < 13:
        return nib, pos
    if nib == 13:
        if pos >= len(data):
            raise ProtocolError("CoAP option at offset %d: expected 1 extended %s byte, "
                                "got the end of the message" % (start, what))
        return data[pos] + 13, pos + 1
    if nib == 14:
        if pos + 2 > len(data):
            raise ProtocolError("CoAP option at offset %d: expected 2 extended %s bytes, "
                                "got %d" % (start, what, len(data) - pos))
        return ((data[pos] << 8) | data[pos + 1]) + 269, pos + 2
    raise ProtocolError("CoAP option at offset %d: %s nibble 15 is reserved "
                        "(only 0xFF, the payload marker, may use it)" % (start, what))


def decode(data, max_size=MAX_MESSAGE):
    """Datagram bytes -> Message (RFC 7252 3); ProtocolError naming the offset."""
    data = bytes(data)
    n = len(data)
    if n > max_size:
        raise ProtocolError("CoAP message: expected at most %d bytes, got %d" % (max_size, n))
    if n < 4:
        raise ProtocolError("CoAP header at offset 0: expected 4 bytes, got %d" % n)
    b0 = data[0]
    if b0 >> 6 != VERSION:
        raise ProtocolError("CoAP header at offset 0: expected version 1, got %d" % (b0 >> 6))
    tkl = b0 & 0x0F
    if tkl > MAX_TOKEN:
        raise ProtocolError("CoAP header at offset 0: expected token length 0..8, got %d" % tkl)
    msg = Message((b0 >> 4) & 3, data[1], (data[2] << 8) | data[3])
    if msg.code == EMPTY and (tkl or n > 4):
        raise ProtocolError("CoAP empty message (0.00): expected exactly 4 bytes and no token, "
                            "got %d bytes, token length %d" % (n, tkl))
    if 4 + tkl > n:
        raise ProtocolError("CoAP token at offset 4: expected %d bytes, got %d" % (tkl, n - 4))
    msg.token = data[4:4 + tkl]
    pos = 4 + tkl
    number = 0
    while pos < n:
        start = pos
        b = data[pos]
        pos += 1
        if b == 0xFF:
            if pos >= n:
                raise ProtocolError("CoAP payload marker at offset %d: expected a payload "
                                    "after it, got the end of the message" % start)
            msg.payload = data[pos:]
            break
        delta, pos = _ext(data, pos, b >> 4, "delta", start)
        length, pos = _ext(data, pos, b & 0x0F, "length", start)
        if pos + length > n:
            raise ProtocolError("CoAP option at offset %d: expected a %d-byte value, got %d"
                                % (start, length, n - pos))
        number += delta
        if number > 0xFFFF:
            raise ProtocolError("CoAP option at offset %d: expected a number up to 65535, got %d"
                                % (start, number))
        if len(msg.options) >= MAX_OPTIONS:
            raise ProtocolError("CoAP option at offset %d: expected at most %d options"
                                % (start, MAX_OPTIONS))
        msg.options.append((number, data[pos:pos + length]))
        pos += length
    return msg


# ----------------------------------------------------------------------- the client

def _is_ip_literal(host):
    if ":" in host:  # IPv6
        return True
    for c in host:
        if c not in "0123456789.":
            return False
    return True


class CoapReset(TransportError):
    """The server answered our confirmable message with RST (it could not process it)."""


class Block2Failed(ProtocolError):
    """A later Block2 block was answered with an error code (`resp`): the transfer ended."""

    def __init__(self, num, resp):
        self.resp = resp
        super().__init__("Block2: block %d answered %s" % (num, code_str(resp.code)))


class Block2Reader:
    """The answer to a request as a reader (ipa_core.stream contract): a Block2 answer's
    blocks fetched one at a time as it is read (RFC 7959 2.3, 3.2), the ETag and every
    offset checked. `limit`: bytes at most (None: no cap; Size2 is checked against it
    too). Blocks are asked for with the request's own options and block size (the
    server's when smaller). `code` / `options`: the first block's."""

    def __init__(self, client, method, base, resp, start, limit):
        self.client = client
        self.method = method
        self.base = base
        self.start = start  # None: each block's exchange has a time bound of its own
        self.limit = limit
        self.code = resp.code
        self.options = [(n, v) for n, v in resp.options if n not in (BLOCK1, BLOCK2)]
        self.b2 = resp.block(BLOCK2)
        self.buf = resp.payload
        self.pos = 0
        self.got = len(resp.payload)
        self.length = len(resp.payload) if self.b2 is None else resp.uint(SIZE2)
        if self.b2 is None:
            return
        if self.b2[0] != 0:
            raise ProtocolError("Block2: expected block 0 first, got block %d" % self.b2[0])
        if limit is not None and self.length is not None and self.length > limit:
            raise ProtocolError("Block2: Size2 %d is above max_body %d" % (self.length, limit))
        self.etag = resp.opt(ETAG)

    def read(self, n):
        while self.pos >= len(self.buf):
            if not self._next():
                return b""
        out = self.buf[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def readall(self):
        parts = [self.buf[self.pos:]]
        self.pos = len(self.buf)
        while self._next():
            parts.append(self.buf)
            self.pos = len(self.buf)
        return b"".join(parts)

    def close(self):
        """Discard the rest: blocks not asked for are never sent (nothing to drain)."""
        self.b2 = None
        self.buf = b""
        self.pos = 0

    def _next(self):
        """Fetch the next block into buf; False at the end of the answer."""
        b2 = self.b2
        if b2 is None or not b2[1]:
            return False
        c = self.client
        if len(self.buf) != (16 << b2[2]):
            raise ProtocolError("Block2 %d: expected %d bytes (more blocks follow), got %d"
                                % (b2[0], 16 << b2[2], len(self.buf)))
        szx = min(b2[2], c.szx)
        offset = self.got
        num = offset // (16 << szx)
        opts = list(self.base)
        opts.append((BLOCK2, block_encode(num, False, szx)))
        resp = c._exchange(self.method, opts, b"",
                           c._now() if self.start is None else self.start)
        if resp.code >> 5 != 2:
            self.b2 = None
            raise Block2Failed(num, resp)
        b2 = resp.block(BLOCK2)
        if b2 is None:
            raise ProtocolError("Block2: expected block %d, got an answer without Block2" % num)
        if b2[0] * (16 << b2[2]) != offset:
            raise ProtocolError("Block2: expected the block at offset %d, got block %d of %d "
                                "bytes" % (offset, b2[0], 16 << b2[2]))
        if resp.opt(ETAG) != self.etag:
            raise ProtocolError("Block2: the ETag changed at block %d (the resource changed "
                                "during the transfer)" % b2[0])
        if self.limit is not None and offset + len(resp.payload) > self.limit:
            raise ProtocolError("Block2: expected at most %d bytes, got more" % self.limit)
        self.b2 = b2
        self.buf = resp.payload
        self.pos = 0
        self.got = offset + len(resp.payload)
        return True


class CoapClient:
    """CoAP requests over one datagram association (a socket or a DTLS session).

    `request()` sends one confirmable request (split into Block1 blocks when
    the payload is larger than `block_size`) and returns the whole answer
    (Block2 blocks reassembled). `post()` has the network interface of
    ipa_core.http.HttpClient, so a CoapClient can stand in for the HTTPS
    network object of the IPA (see http_status() for the code mapping).

    host / port: sent as Uri-Host (a name, not an IP literal) / Uri-Port when
    given. random_bytes(n): token, message id and back-off jitter source.
    After a request: `code`, `response_options`, `response_headers` (only
    "content-type", from Content-Format), after post() `status`; counters `exchanges`,
    `retransmissions`, `ignored` (malformed, stale or duplicate datagrams),
    `bytes_sent`, `bytes_received`.
    """

    def __init__(self, dgram, host=None, port=None, block_size=512,
                 ack_timeout_ms=ACK_TIMEOUT_MS, ack_random_factor=ACK_RANDOM_FACTOR,
                 max_retransmit=MAX_RETRANSMIT, separate_timeout_ms=SEPARATE_TIMEOUT_MS,
                 request_timeout_ms=REQUEST_TIMEOUT_MS, max_body=MAX_BODY,
                 max_message=MAX_MESSAGE, token_length=4, random_bytes=None, clock_ms=None,
                 content_formats=None, early_block2=True):
        self.dgram = dgram
        self.host = host
        self.port = port
        self.szx = szx_for(block_size)
        self.ack_timeout_ms = ack_timeout_ms
        self.ack_random_factor = ack_random_factor
        self.max_retransmit = max_retransmit
        self.separate_timeout_ms = separate_timeout_ms
        self.request_timeout_ms = request_timeout_ms
        self.max_body = max_body
        self.max_message = max_message
        if not 0 <= token_length <= MAX_TOKEN:
            raise ValueError("token_length: expected 0..8, got %r" % (token_length,))
        self.token_length = token_length
        self.random_bytes = random_bytes or default_random
        self._now, self._diff = clock(clock_ms)
        self.content_formats = dict(CONTENT_FORMATS)
        if content_formats:
            self.content_formats.update(content_formats)
        self.early_block2 = early_block2
        r = self.random_bytes(2)
        self._mid = (r[0] << 8) | r[1]  # random start (RFC 7252 4.4)
        self._recent = []  # (mid, ACK bytes) of confirmable responses already acknowledged
        self.code = None
        self.status = None
        self.response_options = []
        self.response_headers = {}  # {"content-type": ...} from Content-Format, like HttpClient
        self.exchanges = 0
        self.retransmissions = 0
        self.ignored = 0
        self.last_ignored = None  # why the last datagram was ignored (for error messages)
        self.bytes_sent = 0
        self.bytes_received = 0

    # ---- network interface of the IPA (like ipa_core.http.HttpClient) ----

    def post(self, path, body, content_type, headers=None):
        """POST `body`; return (HTTP-like status, body). `headers` (X-Admin-Protocol,
        User-Agent) have no CoAP counterpart and are not sent."""
        cf = self.content_format(content_type)
        c, payload, _opts = self.request("POST", path, body, content_format=cf)
        self.status = http_status(c)
        return self.status, payload

    def post_stream(self, path, body, content_type, headers=None):
        """post() with the answer as a reader (ipa_core.stream contract): (status, reader).

        Block2 blocks are fetched as the reader is read: one block in RAM, no whole-body
        cap (the caller bounds what it reads: the IPA's max_package), each block's
        exchange bounded by request_timeout_ms of its own. Read the reader to its end
        or close it before the next request."""
        cf = self.content_format(content_type)
        resp, method, base = self._start("POST", path, body, cf, None)
        reader = Block2Reader(self, method, base, resp, None, None)
        self._answered(reader.code, reader.options)
        self.status = http_status(reader.code)
        return self.status, reader

    def content_format(self, content_type):
        """Content type string (parameters ignored) or int -> Content-Format id or None."""
        if content_type is None or isinstance(content_type, int):
            return content_type
        base = content_type.split(";")[0].strip().lower()
        if base in self.content_formats:
            return self.content_formats[base]
        raise ValueError("content type %r: no CoAP Content-Format known; pass content_formats="
                         % content_type)

    # ---- requests ----

    def request(self, method, path, payload=b"", content_format=None, accept=None):
        """One request; return (code byte, whole payload, options of the answer's first block).

        Any response code is returned, not raised (see code_str / http_status).
        """
        start = self._now()
        resp, method, base = self._start(method, path, payload, content_format, accept, start)
        reader = Block2Reader(self, method, base, resp, start, self.max_body)
        try:
            body = reader.readall()
            c, opts = reader.code, reader.options
        except Block2Failed as e:  # an error code for a later block ends the transfer
            c, body, opts = e.resp.code, e.resp.payload, list(e.resp.options)
        self._answered(c, opts)
        return c, body, opts

    def _answered(self, c, opts):
        self.code = c
        self.response_options = opts
        self.response_headers = {}
        for n, v in opts:
            if n == CONTENT_FORMAT:
                self.response_headers["content-type"] = self.content_type_name(
                    uint_decode(v, "Content-Format", 2))

    def _start(self, method, path, payload, content_format, accept, start=None):
        """Send the request (Block1 when needed) -> (first answer, method code, base options).
        `start`: the time the whole request is bounded from (None: now)."""
        if isinstance(method, str):
            if method.upper() not in METHODS:
                raise ValueError("CoAP method: expected one of %s, got %r"
                                 % (", ".join(sorted(METHODS)), method))
            method = METHODS[method.upper()]
        payload = bytes(payload or b"")
        if len(payload) > self.max_body:
            raise ValueError("request body: %d bytes, more than max_body %d"
                             % (len(payload), self.max_body))
        base = self._base_options(path)
        if content_format is not None:
            base.append((CONTENT_FORMAT, uint_encode(content_format)))
        if accept is not None:
            base.append((ACCEPT, uint_encode(accept)))
        if start is None:
            start = self._now()
        resp = self._upload(method, base, payload, start)
        if resp.code == CONTINUE:
            raise ProtocolError("CoAP: expected a final response after the last block, got 2.31")
        return resp, method, base

    def content_type_name(self, cf):
        """Content-Format id -> a content type name (for messages), e.g. 42 ->
        'application/octet-stream'; unknown ids as 'coap-content-format/<n>'."""
        for name, n in self.content_formats.items():
            if n == cf:
                return name
        return "coap-content-format/%d" % cf

    def close(self):
        """Close the datagram carrier when it has close() (a socket, a DTLS session)."""
        close = getattr(self.dgram, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _base_options(self, path):
        opts = []
        if self.host and not _is_ip_literal(self.host):
            opts.append((URI_HOST, self.host.encode()))
        if self.port is not None:
            opts.append((URI_PORT, uint_encode(self.port)))
        query = None
        q = path.find("?")
        if q >= 0:
            path, query = path[:q], path[q + 1:]
        for seg in path.split("/"):
            if seg:
                b = seg.encode()
                if len(b) > 255:
                    raise ValueError("Uri-Path segment: expected at most 255 bytes, got %d" % len(b))
                opts.append((URI_PATH, b))
        if query:
            for part in query.split("&"):
                if part:
                    opts.append((URI_QUERY, part.encode()))
        return opts

    def _upload(self, method, base, payload, start):
        """Send the request, in Block1 blocks when needed; the response to the last block."""
        szx = self.szx
        restarted = False
        num = 0
        while True:
            size = 16 << szx
            if num == 0 and len(payload) <= size:  # fits one message: no Block1
                resp = self._exchange(method, self._final_options(base), payload, start)
                b1 = resp.block(BLOCK1)
                if resp.code == REQUEST_ENTITY_TOO_LARGE and b1 is not None and not restarted \
                        and len(payload) > (16 << b1[2]):
                    szx = b1[2]  # RFC 7959 2.9.3: send it again in blocks of that size
                    restarted = True
                    continue
                return resp
            chunk = payload[num * size:(num + 1) * size]
            more = (num + 1) * size < len(payload)
            opts = list(base) if more else self._final_options(base)
            opts.append((BLOCK1, block_encode(num, more, szx)))
            if num == 0:
                opts.append((SIZE1, uint_encode(len(payload))))
            resp = self._exchange(method, opts, chunk, start)
            b1 = resp.block(BLOCK1)
            if resp.code == REQUEST_ENTITY_TOO_LARGE and b1 is not None and b1[2] < szx \
                    and not restarted:
                szx = b1[2]  # RFC 7959 2.9.3: start over with the size the server asks for
                num = 0
                restarted = True
                continue
            if not more:
                if b1 is not None and b1[0] != num:
                    raise ProtocolError("Block1: expected the last block %d acknowledged, got %d"
                                        % (num, b1[0]))
                return resp
            if resp.code >> 5 != 2:
                return resp  # an error ends the transfer; the caller sees the code
            if b1 is None:
                raise ProtocolError("CoAP %s to Block1 %d: expected a Block1 option (more blocks "
                                    "to send), got none" % (code_str(resp.code), num))
            if b1[0] != num:
                raise ProtocolError("Block1: expected block %d acknowledged, got %d" % (num, b1[0]))
            offset = (num + 1) * size
            if b1[2] < szx:  # the server prefers smaller blocks (RFC 7959 2.3, figure 8)
                szx = b1[2]
            num = offset // (16 << szx)

    def _final_options(self, base):
        """Options of the request that completes the body: with early Block2 negotiation
        (RFC 7959 2.4) when our block size is below the largest."""
        opts = list(base)
        if self.early_block2 and self.szx < 6:
            opts.append((BLOCK2, block_encode(0, False, self.szx)))
        return opts

    # ---- one exchange (RFC 7252 4, 5) ----

    def _next_mid(self):
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def _send(self, data):
        try:
            self.dgram.send(data)
        except OSError as e:
            raise TransportError("CoAP: sending a datagram failed: %s" % e)
        self.bytes_sent += len(data)

    def _recv(self, timeout_ms):
        try:
            data = self.dgram.recv(timeout_ms)
        except OSError as e:
            raise TransportError("CoAP: receiving a datagram failed: %s" % e)
        if data is not None:
            self.bytes_received += len(data)
        return data

    def _ignore(self, why):
        self.ignored += 1
        self.last_ignored = why

    def _initial_timeout(self):
        """ACK_TIMEOUT .. ACK_TIMEOUT * ACK_RANDOM_FACTOR (RFC 7252 4.2); integer steps."""
        r = self.random_bytes(2)
        spread = int(self.ack_timeout_ms * (self.ack_random_factor - 1))
        return self.ack_timeout_ms + spread * ((r[0] << 8) | r[1]) // 65535

    def _exchange(self, method, options, payload, start):
        """Send one CON request and return its response Message."""
        token = bytes(self.random_bytes(self.token_length))
        req = Message(CON, method, self._next_mid(), token, options, payload)
        data = req.encode()
        self.exchanges += 1
        ignored0 = self.ignored
        timeout = self._initial_timeout()
        transmissions = 1
        self._send(data)
        sent = self._now()
        acked_at = None  # time of the empty ACK: a separate response follows
        while True:
            now = self._now()
            if self._diff(now, start) >= self.request_timeout_ms:
                raise TimeoutError_("CoAP: the request took more than %d ms (request_timeout_ms)"
                                    % self.request_timeout_ms)
            if acked_at is None:
                wait = timeout - self._diff(now, sent)
                if wait <= 0:
                    if transmissions > self.max_retransmit:
                        raise TimeoutError_(self._timeout_text(
                            "no ACK or response after %d transmissions over %d ms"
                            % (transmissions, self._diff(now, sent) + self._diff(sent, start)),
                            ignored0))
                    transmissions += 1
                    self.retransmissions += 1
                    timeout *= 2
                    self._send(data)
                    sent = self._now()
                    continue
            else:
                wait = self.separate_timeout_ms - self._diff(now, acked_at)
                if wait <= 0:
                    raise TimeoutError_(self._timeout_text(
                        "no separate response within %d ms after the empty ACK"
                        % self.separate_timeout_ms, ignored0))
            wait = min(wait, self.request_timeout_ms - self._diff(now, start))
            got = self._recv(max(1, wait))
            if not got:  # None (or b"" from a polled carrier): nothing within the wait
                continue
            try:
                m = decode(got, self.max_message)
            except ProtocolError as e:
                self._ignore(str(e))  # a stray or broken datagram must not end the exchange
                continue
            if m.type == ACK and m.mid == req.mid:
                if m.code == EMPTY:
                    if acked_at is None:
                        acked_at = self._now()
                    continue
                if m.token != token:
                    self._ignore("ACK %d carries token %s, expected %s"
                                 % (m.mid, _hex(m.token), _hex(token)))
                    continue
                if not m.is_response():
                    self._ignore("ACK %d carries code %s, not a response" % (m.mid, code_str(m.code)))
                    continue
                return self._checked(m)
            if m.type == RST and m.mid == req.mid:
                raise CoapReset("CoAP: the server reset (RST) request %s %d"
                                % (code_str(method), req.mid))
            if m.type == CON:
                if self._duplicate(m):
                    continue
                if m.token == token and m.is_response():
                    self._ack(m)
                    return self._checked(m)
                # An empty CON is a CoAP ping; an unknown response is rejected (RFC 7252 5.3.2).
                self._send(Message(RST, EMPTY, m.mid).encode())
                self._ignore("CON %d with unknown token %s: reset" % (m.mid, _hex(m.token)))
                continue
            if m.type == NON and m.token == token and m.is_response():
                return self._checked(m)
            self._ignore("unexpected %s %d %s" % (TYPE_NAMES[m.type], m.mid, code_str(m.code)))

    def _checked(self, m):
        for n, _v in m.options:
            if n & 1 and n not in _RESPONSE_CRITICAL:
                raise ProtocolError("CoAP response %s: carries critical option %d that this "
                                    "client does not understand" % (code_str(m.code), n))
        return m

    def _ack(self, m):
        ack = Message(ACK, EMPTY, m.mid).encode()
        self._send(ack)
        self._recent.append((m.mid, ack))
        if len(self._recent) > _RECENT:
            self._recent.pop(0)

    def _duplicate(self, m):
        """A CON we acknowledged already (our ACK was lost): acknowledge again, ignore it."""
        for mid, ack in self._recent:
            if mid == m.mid:
                self._send(ack)
                self._ignore("duplicate CON %d: acknowledged again" % mid)
                return True
        return False

    def _timeout_text(self, text, ignored0):
        msg = "CoAP: %s" % text
        if self.ignored > ignored0:
            msg += " (%d datagrams ignored, last: %s)" % (self.ignored - ignored0,
                                                           self.last_ignored)
        return msg
