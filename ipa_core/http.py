"""HTTP/1.1 client framing over a byte stream, for the ESipa / ES9+ HTTPS bindings.

SGP.32 ESipa over HTTPS (ASN.1 binding: POST /gsma/rsp2/asn1, JSON binding:
POST /gsma/rsp2/esipa/<function>) and ES9+ (SGP.22 JSON over HTTPS) are plain
HTTP/1.1 POSTs. This module computes the request bytes and interprets the
answer bytes (RFC 9112); it does no I/O of its own. The stream is supplied by
the caller:

    stream.read(n)    -> up to n bytes; b"" or None: see below
    stream.write(b)   -> bytes written, or None when all were (a short write is continued)
    stream.close()    -> optional

On a board that is a MicroPython socket / ssl socket or a modem in data mode;
on CPython, ipa_host.net.https supplies a TLS stream. Two kinds of stream:

- sockets (the default, `timeout_ms=None`): read blocks until a byte or EOF,
  and b"" means the peer closed. **Timeouts are the stream's job**
  (settimeout); an OSError it raises with ETIMEDOUT/EAGAIN or "timed out"
  becomes TimeoutError_.
- polled streams (`timeout_ms=N`, like ipa_core.at's UART streams): b"" or
  None means "nothing arrived within the stream's short poll"; the reader
  polls again until no byte came for N ms (TimeoutError_). Such a stream
  says the peer closed by setting `stream.eof = True`.

What the reader accepts and bounds (RFC 9112 sections in brackets):
Content-Length bodies, chunked transfer-coding with chunk extensions and
trailers [7.1], read-to-EOF bodies [6.3], 1xx interim answers such as
100 Continue [RFC 9110 15.2], no body for HEAD/1xx/204/304 [6.3]. Bounds:
`max_header` bytes per response head, MAX_HEADERS fields, `max_body` body
bytes, MAX_CHUNK_LINE bytes per chunk-size line. Broken syntax raises
ProtocolError (what was expected, what came); EOF in the middle of a
message raises TransportError; EOF before the first byte of an answer
raises ConnectionClosed (a TransportError) so a kept-alive connection the
server dropped can be reopened once.

Streamed answers (issue 8 heap budget): HttpClient.post_stream returns the
body as a BodyReader (the reader contract of ipa_core.stream) that reads
from the connection only as the caller asks, with the same framing and
bounds, except the whole-body cap: a streamed body is bounded by
`max_stream` (None by default: its reader's consumer bounds what it reads,
e.g. the bound profile package by the setting max_package); the connection
is kept for the next request once the body was read or skipped (at most
MAX_SKIP bytes), else it is closed.
"""

from ipa_core.clock import clock
from ipa_core.errors import IpaError, ProtocolError, TimeoutError_, TransportError, is_digits


MAX_BODY = 0x100000  # 1 MiB: a whole answer (a bound profile package is streamed: max_stream)
MAX_HEADER = 8192  # bytes of one response head (status line + fields)
MAX_HEADERS = 100  # fields in one head (trailers included)
MAX_CHUNK_LINE = 1024  # chunk size + extensions
MAX_INTERIM = 8  # 1xx answers before the final one
READ_SIZE = 4096
MAX_SKIP = 0x10000  # bytes of an unread streamed body skipped to keep the connection

# errno values (Linux numbering, also MicroPython's): the peer dropped the connection.
_CLOSED_ERRNOS = (32, 103, 104)  # EPIPE, ECONNABORTED, ECONNRESET
_TIMEOUT_ERRNOS = (11, 110)  # EAGAIN (socket timeout on some ports), ETIMEDOUT

# RFC 9110 5.6.2 tchar, as a bytes table (MicroPython-friendly membership test).
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HEX = b"0123456789abcdefABCDEF"


class ConnectionClosed(TransportError):
    """The peer closed (or reset) the connection before any byte of the answer."""


def _short(b, limit=40):
    """repr of at most `limit` bytes, for error messages."""
    b = bytes(b)
    return repr(b[:limit]) + ("..." if len(b) > limit else "")


def _text(b):
    """Bytes -> str without failing on non-UTF-8 (MicroPython has no latin-1 codec)."""
    try:
        return bytes(b).decode()
    except UnicodeError:
        return "".join([chr(c) for c in b])


def _is_token(b):
    if not b:
        return False
    for c in b:
        if c not in _TCHAR:
            return False
    return True


def _os_error(e, doing, got_bytes):
    """Turn a stream's OSError into the IPA's error for `doing`."""
    code = e.args[0] if e.args and isinstance(e.args[0], int) else None
    msg = "%s failed: %s" % (doing, e)
    if code in _TIMEOUT_ERRNOS or "timed out" in str(e):
        return TimeoutError_("%s timed out (%s)" % (doing, e))
    if code in _CLOSED_ERRNOS and not got_bytes:
        return ConnectionClosed(msg)
    return TransportError(msg)


class Buffered:
    """A stream plus the bytes read from it but not consumed yet.

    One Buffered lives as long as its connection, so bytes that arrive
    after one answer are not lost. `mark()` starts a new answer; errors at
    EOF tell apart "closed before the answer" and "closed in the middle".
    """

    def __init__(self, stream, read_size=READ_SIZE, timeout_ms=None, clock_ms=None):
        self.stream = stream
        self.read_size = read_size
        self.timeout_ms = timeout_ms  # None: b"" is EOF; else the longest silence of a polled stream
        self._now, self._diff = clock(clock_ms)
        self._buf = b""
        self._pos = 0
        self.received = 0  # bytes read from the stream, in all
        self._mark = 0  # self.received - pending at the start of the answer

    def pending(self):
        return len(self._buf) - self._pos

    def mark(self):
        self._mark = self.received - self.pending()

    def got_bytes(self):
        """True when any byte of the current answer has arrived."""
        return self.received > self._mark

    def _read(self, n, what):
        """One stream read of at most n bytes; b"" at EOF."""
        start = None
        while True:
            try:
                data = self.stream.read(n)
            except ConnectionClosed as e:
                if self.got_bytes():
                    raise TransportError("connection closed in %s: %s" % (what, e))
                raise
            except OSError as e:
                raise _os_error(e, "reading %s" % what, self.got_bytes())
            if data:
                self.received += len(data)
                return bytes(data)
            if self.timeout_ms is None or getattr(self.stream, "eof", False):
                return b""
            now = self._now()
            if start is None:
                start = now
            elif self._diff(now, start) >= self.timeout_ms:
                raise TimeoutError_("reading %s: no byte within %d ms" % (what, self.timeout_ms))

    def _eof(self, what):
        if self.got_bytes():
            return TransportError("connection closed in %s (after %d bytes of the answer)"
                                  % (what, self.received - self._mark))
        return ConnectionClosed("connection closed before any byte of the answer"
                                " (expected %s)" % what)

    def readline(self, limit, what, over=None):
        """One line without its LF / CRLF; ProtocolError when longer than `limit`.

        `over` replaces the default error text (e.g. for a whole-head bound).
        """
        scan = self._pos
        while True:
            i = self._buf.find(b"\n", scan)
            if i >= 0:
                end = i
                if end > self._pos and self._buf[end - 1] == 13:
                    end -= 1
                if end - self._pos > limit:
                    break
                line = self._buf[self._pos:end]
                self._pos = i + 1
                return line
            if len(self._buf) - self._pos > limit + 1:
                break
            scan = len(self._buf)
            data = self._read(self.read_size, what)
            if not data:
                raise self._eof(what)
            self._buf = self._buf[self._pos:] + data
            scan -= self._pos
            self._pos = 0
        raise ProtocolError("%s: %s, got more: %s"
                            % (what, over or "expected a line end within %d bytes" % limit,
                               _short(self._buf[self._pos:])))

    def read_into(self, out, n, what):
        """Append exactly n bytes to bytearray `out`."""
        take = min(self.pending(), n)
        if take:
            out.extend(self._buf[self._pos:self._pos + take])
            self._pos += take
            n -= take
        while n > 0:
            data = self._read(min(n, 4 * self.read_size), what)
            if not data:
                raise self._eof(what)
            if len(data) > n:  # a stream that returned more than asked: keep the rest
                self._buf = data[n:]
                self._pos = 0
                data = data[:n]
            out.extend(data)
            n -= len(data)

    def read_some(self, n, what, eof_ok=False):
        """1..n bytes: what is pending, else one stream read of at most n (and read_size).
        At EOF: b"" when `eof_ok`, else the error for a cut answer."""
        p = self.pending()
        if p:
            k = n if n < p else p
            out = self._buf[self._pos:self._pos + k]
            self._pos += k
            if self._pos >= len(self._buf):
                self._buf = b""
                self._pos = 0
            return out
        data = self._read(min(n, self.read_size), what)
        if not data:
            if eof_ok:
                return b""
            raise self._eof(what)
        if len(data) > n:  # a stream that returned more than asked: keep the rest
            self._buf = data[n:]
            self._pos = 0
            data = data[:n]
        return data

    def read_byte(self, what):
        if not self.pending():
            data = self._read(self.read_size, what)
            if not data:
                raise self._eof(what)
            self._buf = data
            self._pos = 0
        c = self._buf[self._pos]
        self._pos += 1
        return c

    def read_to_eof(self, out, limit, what):
        """Append everything up to EOF; ProtocolError past `limit` bytes."""
        if self.pending():
            out.extend(self._buf[self._pos:])
            self._buf = b""
            self._pos = 0
        while len(out) <= limit:
            data = self._read(min(limit + 1 - len(out), 4 * self.read_size), what)
            if not data:
                return
            out.extend(data)
        raise _too_big(limit, "more than %d" % (len(out) - 1))

    def close(self):
        close = getattr(self.stream, "close", None)
        if close is not None:
            close()


def _too_big(limit, got):
    return ProtocolError("response body: expected at most %d bytes, got %s" % (limit, got))


# ---------------------------------------------------------------- requests

def _field_value(v):
    if isinstance(v, str):
        v = v.encode()
    v = bytes(v)
    for c in v:
        if c in (10, 13, 0):
            raise ValueError("header value %s contains CR, LF or NUL" % _short(v))
    return v


def build_request(method, host, path, body=b"", headers=None):
    """The bytes of one HTTP/1.1 request (RFC 9112 3, 6.2, 9.3).

    Adds Host (the caller's `Host` field wins, e.g. "eim.example:8443"),
    Content-Length when there is a body or the method is POST/PUT/PATCH, and
    Connection: keep-alive unless the caller set Connection. `headers` is a
    dict or a list of (name, value) pairs: the ESipa fields (Content-Type,
    X-Admin-Protocol, User-Agent) come from the caller. Content-Length and
    Transfer-Encoding are computed here and refused from the caller.
    """
    if isinstance(method, str):
        method = method.encode()
    if not _is_token(method):
        raise ValueError("HTTP method: expected a token, got %s" % _short(method))
    if isinstance(path, str):
        path = path.encode()
    if not path or path[0] != 47:  # "/"
        raise ValueError("request path: expected one starting with '/', got %s" % _short(path))
    for c in path:
        if c <= 32 or c >= 127:
            raise ValueError("request path: expected printable ASCII without spaces, got %s"
                             % _short(path))
    if body is None:
        body = b""
    elif isinstance(body, str):
        body = body.encode()
    body = bytes(body)
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    out = [b"%s %s HTTP/1.1" % (method, path)]
    host_line = None
    seen_connection = False
    for name, value in items:
        if isinstance(name, str):
            name = name.encode()
        if not _is_token(name):
            raise ValueError("header name: expected a token, got %s" % _short(name))
        low = name.lower()
        if low in (b"content-length", b"transfer-encoding"):
            raise ValueError("header %s is computed from the body, do not pass it" % _text(name))
        line = name + b": " + _field_value(value)
        if low == b"host":
            host_line = line
            continue
        if low == b"connection":
            seen_connection = True
        out.append(line)
    if host_line is None:
        host_line = b"Host: " + _field_value(host)
    out.insert(1, host_line)
    if body or method in (b"POST", b"PUT", b"PATCH"):
        out.append(b"Content-Length: %d" % len(body))
    if not seen_connection:
        out.append(b"Connection: keep-alive")
    out.append(b"")
    out.append(b"")
    return b"\r\n".join(out) + body


def write_all(stream, data, doing="sending the request"):
    """stream.write until all of `data` is out (a short write is continued)."""
    zero = 0
    while data:
        try:
            n = stream.write(data)
        except OSError as e:
            raise _os_error(e, doing, False)
        if n is None:
            return
        if n <= 0:
            zero += 1
            if zero > 3:
                raise TransportError("%s: the stream accepted no bytes (%d left)"
                                     % (doing, len(data)))
            continue
        zero = 0
        data = data[n:]  # a short write: rare, so a copy is fine


# --------------------------------------------------------------- responses

def _status_line(line):
    """b'HTTP/1.1 200 OK' -> (minor_version, status, reason)."""
    bad = ProtocolError("HTTP status line: expected 'HTTP/1.x NNN reason', got %s" % _short(line))
    if len(line) < 12 or line[:7] != b"HTTP/1." or line[8] != 32 or line[12:13] not in (b"", b" "):
        raise bad
    minor = line[7] - 48
    code = line[9:12]
    if not (0 <= minor <= 9) or not is_digits(code):
        raise bad
    return minor, int(code), _text(line[13:])


def _read_fields(rd, headers, budget, what, total):
    """Read header/trailer fields up to the empty line, in `budget` bytes of `total`."""
    used = 0
    count = 0
    over = "expected the whole head within %d bytes" % total
    while True:
        if used > budget:
            raise ProtocolError("%s: %s, got more" % (what, over))
        line = rd.readline(budget - used, what, over)
        used += len(line) + 2
        if not line:
            return
        count += 1
        if count > MAX_HEADERS:
            raise ProtocolError("%s: expected at most %d fields, got more" % (what, MAX_HEADERS))
        if line[0] in (32, 9):
            raise ProtocolError("%s: expected 'name: value', got an obsolete folded line %s"
                                % (what, _short(line)))
        colon = line.find(b":")
        name = line[:colon] if colon > 0 else b""
        if not _is_token(name):
            raise ProtocolError("%s: expected 'name: value', got %s" % (what, _short(line)))
        value = line[colon + 1:].strip(b" \t")
        for c in value:
            if (c < 32 and c != 9) or c == 127:
                raise ProtocolError("%s: control byte 0x%02X in field %s"
                                    % (what, c, _text(name)))
        key = _text(name).lower()
        value = _text(value)
        if headers is None:  # trailers: checked, not kept
            continue
        if key in headers:
            headers[key] = headers[key] + ", " + value
        else:
            headers[key] = value


def _tokens(value):
    return [t.strip().lower() for t in value.split(",") if t.strip()]


def _content_length(value):
    """RFC 9110 8.6: digits; a repeated field with equal values is one value."""
    vals = [v.strip() for v in value.split(",")]
    first = vals[0]
    if not first or len(first) > 15 or not is_digits(first) or any(v != first for v in vals):
        raise ProtocolError("Content-Length: expected one decimal number, got %r" % value[:40])
    return int(first)


def _chunk_size(rd):
    """One chunk-size line [; extensions] -> the size (RFC 9112 7.1)."""
    line = rd.readline(MAX_CHUNK_LINE, "chunk size line")
    semi = line.find(b";")
    size = (line[:semi] if semi >= 0 else line).strip(b" \t")
    if not size or len(size) > 16 or any(c not in _HEX for c in size):
        raise ProtocolError("chunk size line: expected hex digits [;extensions], got %s"
                            % _short(line))
    return int(size, 16)


def _chunk_end(rd, n):
    """The CRLF (or LF) after the n bytes of chunk data."""
    c = rd.read_byte("the CRLF after chunk data")
    if c == 13:
        c = rd.read_byte("the CRLF after chunk data")
    if c != 10:
        raise ProtocolError("chunk data: expected CRLF after %d bytes, got byte 0x%02X"
                            % (n, c))


def _read_chunked(rd, out, max_body, max_header):
    """RFC 9112 7.1: chunk-size [; ext] CRLF data CRLF ... 0 CRLF trailers CRLF."""
    while True:
        n = _chunk_size(rd)
        if n == 0:
            break
        if len(out) + n > max_body:
            raise _too_big(max_body, "at least %d" % (len(out) + n))
        rd.read_into(out, n, "chunk data")
        _chunk_end(rd, n)
    _read_fields(rd, None, max_header, "chunked trailer", max_header)


def read_head(rd, max_header=MAX_HEADER):
    """Status line and fields of one answer: (minor, status, reason, headers)."""
    used = 0
    line = b""
    while not line:  # tolerate empty lines before the status line (RFC 9112 2.2)
        line = rd.readline(max_header - used, "HTTP status line")
        used += len(line) + 2
        if used > max_header:
            raise ProtocolError("HTTP status line: expected within %d bytes, got only empty lines"
                                % max_header)
    minor, status, reason = _status_line(line)
    headers = {}
    _read_fields(rd, headers, max_header - used, "HTTP header", max_header)
    return minor, status, reason, headers


def _final_head(rd, max_header):
    """The head of the final answer, 1xx interim answers (100 Continue) skipped."""
    for _ in range(MAX_INTERIM + 1):
        minor, status, reason, headers = read_head(rd, max_header)
        if status >= 200:
            return minor, status, reason, headers
        if status == 101:
            raise ProtocolError("HTTP status: expected a final answer, got 101 Switching"
                                " Protocols (no upgrade was asked)")
    raise ProtocolError("HTTP: expected a final answer, got more than %d 1xx answers"
                        % MAX_INTERIM)


def _framing(method, minor, status, headers, max_body):
    """How the body is delimited (RFC 9112 6.3) -> (kind, length, keep_alive).

    kind "none" (HEAD, 204, 304), "chunked", "length" (Content-Length) or
    "eof" (until the server closes: the connection cannot be kept).
    """
    conn = _tokens(headers.get("connection", ""))
    keep = ("keep-alive" in conn) if minor == 0 else ("close" not in conn)
    # str or bytes; never compared across the two (MicroPython warns, and a bytes method
    # would never equal "HEAD")
    head = method == ("HEAD" if isinstance(method, str) else b"HEAD")
    if head or status in (204, 304):
        return "none", 0, keep
    te = headers.get("transfer-encoding")
    if te is not None:
        codings = [c for c in _tokens(te) if c != "identity"]
        if codings != ["chunked"]:
            raise ProtocolError("Transfer-Encoding: expected chunked, got %r" % te[:40])
        if "content-length" in headers:
            keep = False  # RFC 9112 6.3: both present, the connection must close after
        return "chunked", None, keep
    if "content-length" in headers:
        n = _content_length(headers["content-length"])
        if max_body is not None and n > max_body:
            raise _too_big(max_body, "Content-Length %d" % n)
        return "length", n, keep
    return "eof", None, False


def _read_body(rd, kind, n, max_body, max_header):
    body = bytearray()
    if kind == "chunked":
        _read_chunked(rd, body, max_body, max_header)
    elif kind == "length":
        rd.read_into(body, n, "response body (Content-Length %d)" % n)
    elif kind == "eof":
        rd.read_to_eof(body, max_body, "response body (until close)")
    return bytes(body)


def read_message(rd, method="POST", max_body=MAX_BODY, max_header=MAX_HEADER):
    """One full answer from Buffered `rd`: (status, reason, headers, body, keep_alive).

    Skips 1xx interim answers (100 Continue). `keep_alive` is False when the
    connection cannot carry another request (Connection: close, HTTP/1.0
    without keep-alive, a body delimited by EOF).
    """
    rd.mark()
    minor, status, reason, headers = _final_head(rd, max_header)
    kind, n, keep = _framing(method, minor, status, headers, max_body)
    return status, reason, headers, _read_body(rd, kind, n, max_body, max_header), keep


class BodyReader:
    """The body of one answer, read as it arrives (the reader contract of ipa_core.stream).

    read(n) -> 1..n bytes, b"" only at the end; `length` is the Content-Length
    (None for chunked or until-close bodies); the framing and bounds are
    those of read_message (chunk lines, trailers; the client's max_stream in
    all, when set). A body
    cut short by the connection is a TransportError, as for post().
    close() discards what is left: read and dropped when at most `max_skip`
    bytes remain (the kept-alive connection stays usable), else the
    connection is closed (the next request opens a new one). The client
    closes an unfinished reader itself before its next request.
    """

    def __init__(self, client, rd, kind, length, keep):
        self._client = client
        self._rd = rd
        self._kind = kind
        self._keep = keep
        self.length = length
        self._left = length if kind == "length" else 0  # chunked: left in the current chunk
        self._chunk = 0
        self._max = client.max_stream
        self.received = 0
        self.done = False
        self._broken = None
        if kind == "none" or (kind == "length" and length == 0):
            self._finish()

    def read(self, n):
        if self._broken is not None:
            raise TransportError(self._broken)
        if self.done or n <= 0:
            return b""
        try:
            data = self._read(n)
        except BaseException:
            self._drop("an earlier read of this answer failed")
            raise
        if not data:
            self._finish()
        return data

    def _read(self, n):
        rd = self._rd
        c = self._client
        if self._kind == "length":
            data = rd.read_some(min(n, self._left),
                                "response body (Content-Length %d)" % self.length)
            self._left -= len(data)
            self.received += len(data)
            if not self._left:
                self._finish()
            return data
        if self._kind == "chunked":
            if not self._left:
                size = _chunk_size(rd)
                if size == 0:
                    _read_fields(rd, None, c.max_header, "chunked trailer", c.max_header)
                    return b""
                if self._max is not None and self.received + size > self._max:
                    raise _too_big(self._max, "at least %d" % (self.received + size))
                self._left = self._chunk = size
            data = rd.read_some(min(n, self._left), "chunk data")
            self._left -= len(data)
            self.received += len(data)
            if not self._left:
                _chunk_end(rd, self._chunk)
            return data
        k = n if self._max is None else min(n, self._max + 1 - self.received)
        data = rd.read_some(k, "response body (until close)", eof_ok=True)
        self.received += len(data)
        if self._max is not None and self.received > self._max:
            raise _too_big(self._max, "more than %d" % self._max)
        return data

    def _finish(self):
        self.done = True
        c = self._client
        if c._body is self:
            c._body = None
        if not self._keep:
            c.close()

    def _drop(self, why):
        """Close the connection under this body (its state is unknown)."""
        if self.done:
            return
        self.done = True
        self._broken = why
        c = self._client
        if c._body is self:
            c._body = None
        c.close()

    def close(self):
        """Discard the rest of the body (see the class docstring); never raises."""
        if self.done:
            return
        left = self._left if self._kind == "length" else 0
        limit = self._client.max_skip
        if self._kind == "eof" or left > limit:
            self._drop("the answer was closed before its end")
            self._broken = None
            return
        skipped = 0
        try:
            while not self.done:
                data = self.read(min(READ_SIZE, limit + 1 - skipped))
                skipped += len(data)
                if skipped > limit:
                    self._drop("the answer was closed before its end")
                    break
        except IpaError:
            pass  # read() dropped the connection
        self._broken = None


def read_response(stream, max_body=MAX_BODY, max_header=MAX_HEADER, method="POST"):
    """Read one answer: (status, headers with lower-case names, body bytes).

    `stream` is a stream or a Buffered (pass the same Buffered again to read
    the next answer on a kept-alive connection without losing bytes).
    """
    rd = stream if isinstance(stream, Buffered) else Buffered(stream)
    status, _reason, headers, body, _keep = read_message(rd, method, max_body, max_header)
    return status, headers, body


# ------------------------------------------------------------------ client

class HttpClient:
    """HTTP/1.1 over streams from `open_stream()`, one kept-alive connection.

    SGP.32 ESipa: "some eIMs expect one kept-alive connection for a whole
    procedure", so requests reuse the open stream. When the server closed it
    in between (EOF or reset before any byte of the answer), the request is
    sent once more on a new stream; never after an answer started, never
    after a timeout (the server may be working on it).

    `host` goes into the Host field; `headers` are sent with every request
    (the caller's per-request headers win, names compared case-insensitively).
    `timeout_ms` / `clock_ms`: for polled streams (see the module docstring).
    `max_body` bounds a whole answer (request/post), `max_stream` a streamed
    one (request_stream/post_stream; None: its consumer bounds it).
    After a request: `status`, `reason`, `response_headers`; counters
    `connections` (streams opened) and `requests`.
    """

    def __init__(self, open_stream, host, headers=None, max_body=MAX_BODY,
                 max_header=MAX_HEADER, read_size=READ_SIZE, timeout_ms=None, clock_ms=None,
                 max_skip=MAX_SKIP, max_stream=None):
        self.open_stream = open_stream
        self.max_stream = max_stream
        self.max_skip = max_skip
        self.host = host
        self.headers = merge_headers({}, headers or {})
        self.max_body = max_body
        self.max_header = max_header
        self.read_size = read_size
        self.timeout_ms = timeout_ms
        self.clock_ms = clock_ms
        self.status = None
        self.reason = None
        self.response_headers = {}
        self.connections = 0
        self.requests = 0
        self._rd = None
        self._body = None  # the BodyReader of a post_stream answer not read to its end

    def post(self, path, body, content_type, headers=None):
        """POST `body` with `content_type`; return (status, body)."""
        h = {"Content-Type": content_type}
        if headers:
            h = merge_headers(h, headers)
        return self.request("POST", path, body, h)

    def post_stream(self, path, body, content_type, headers=None):
        """post() with the answer's body as a BodyReader: (status, reader).

        Read the reader to its end or close() it; a next request closes it
        first (see BodyReader.close). Head errors raise here; body errors
        from reader.read().
        """
        h = {"Content-Type": content_type}
        if headers:
            h = merge_headers(h, headers)
        return self.request_stream("POST", path, body, h)

    def request(self, method, path, body=b"", headers=None):
        """Send one request; return (status, body). Any status is returned, not raised."""
        minor, status, reason, hdrs = self._exchange(method, path, body, headers)
        try:
            kind, n, keep = _framing(method, minor, status, hdrs, self.max_body)
            rbody = _read_body(self._rd, kind, n, self.max_body, self.max_header)
        except BaseException:
            self.close()
            raise
        self._answered(status, reason, hdrs)
        if not keep:
            self.close()
        return status, rbody

    def request_stream(self, method, path, body=b"", headers=None):
        """request() with the body as a BodyReader: (status, reader)."""
        minor, status, reason, hdrs = self._exchange(method, path, body, headers)
        try:
            kind, n, keep = _framing(method, minor, status, hdrs, self.max_stream)
        except BaseException:
            self.close()
            raise
        self._answered(status, reason, hdrs)
        reader = BodyReader(self, self._rd, kind, n, keep)
        if not reader.done:
            self._body = reader
        return status, reader

    def _answered(self, status, reason, headers):
        self.requests += 1
        self.status = status
        self.reason = reason
        self.response_headers = headers

    def _exchange(self, method, path, body, headers):
        """Send one request and read the head of its final answer: (minor, status, reason,
        headers); the body is next on self._rd."""
        req = build_request(method, self.host, path, body, merge_headers(self.headers, headers or {}))
        if self._body is not None:
            self._body.close()  # the previous answer was not read to its end
        for attempt in (0, 1):
            if self._rd is not None and self._rd.pending():
                self.close()  # bytes nobody asked for: the connection's state is unknown
            reused = self._rd is not None
            if not reused:
                self._open()
            try:
                write_all(self._rd.stream, req, "sending %s %s" % (method, path))
                self._rd.mark()
                return _final_head(self._rd, self.max_header)
            except ConnectionClosed:
                self.close()
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                self.close()
                raise
        raise TransportError("unreachable")  # the loop returns or raises

    def _open(self):
        try:
            stream = self.open_stream()
        except OSError as e:
            raise TransportError("opening a connection to %s failed: %s" % (self.host, e))
        self.connections += 1
        self._rd = Buffered(stream, self.read_size, self.timeout_ms, self.clock_ms)

    def close(self):
        """Close the connection (the next request opens a new one)."""
        body = self._body
        self._body = None
        if body is not None and not body.done:  # a reader still open on it: it cannot go on
            body.done = True
            body._broken = "the connection was closed before the answer was read"
        rd = self._rd
        self._rd = None
        if rd is not None:
            try:
                rd.close()
            except (OSError, IpaError):
                pass  # closing a broken connection may fail too; nothing is left to lose

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def merge_headers(base, extra):
    """Header dict `base` updated by dict/pairs `extra`, names case-insensitive."""
    out = {}
    for k, v in base.items():
        out[k] = v
    items = extra.items() if isinstance(extra, dict) else extra
    for k, v in items:
        low = k.lower()
        for old in list(out):
            if old.lower() == low:
                del out[old]
        out[k] = v
    return out
