"""ipa_core.http: HTTP/1.1 framing over scripted byte streams (also runs under MicroPython).

A Stream hands out scripted answer bytes in pieces of a chosen size (1 byte
at a time finds every buffer-boundary bug) and records what was written.
"""

from ipa_core import http
from ipa_core.errors import ProtocolError, TimeoutError_, TransportError

ASN1 = "application/x-gsma-rsp-asn1"


class Stream:
    """read(n) serves `data` in pieces of at most `piece` bytes, then b"" (EOF).

    `data` is bytes or a list of bursts: bytes (one read never spans two, as
    a server sends the next answer only after the next request) or exception
    instances (raised when reached).
    """

    def __init__(self, data=b"", piece=1000):
        self.parts = list(data) if isinstance(data, list) else [data]
        self.piece = piece
        self.written = b""
        self.closed = False
        self.reads = 0

    def read(self, n):
        self.reads += 1
        while self.parts:
            p = self.parts[0]
            if isinstance(p, Exception):
                self.parts.pop(0)
                raise p
            if not p:
                self.parts.pop(0)
                continue
            k = min(n, self.piece, len(p))
            self.parts[0] = p[k:]
            return p[:k]
        return b""

    def write(self, data):
        if self.closed:
            raise OSError(32, "EPIPE")
        self.written += bytes(data)
        return len(data)

    def close(self):
        self.closed = True


def raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def ok(body, extra=b""):
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)) + extra + b"\r\n" + body


def read(data, piece=1000, **kw):
    return http.read_response(Stream(data, piece), **kw)


# ------------------------------------------------------------- requests

def test_build_request_esipa_post_exact_bytes():
    req = http.build_request("POST", "eim.example", "/gsma/rsp2/asn1", b"\xbf\x4f\x00",
                             [("Content-Type", ASN1), ("X-Admin-Protocol", "gsma/rsp/v2.1.0"),
                              ("User-Agent", "gsma-rsp-ipad")])
    assert req == (b"POST /gsma/rsp2/asn1 HTTP/1.1\r\n"
                   b"Host: eim.example\r\n"
                   b"Content-Type: application/x-gsma-rsp-asn1\r\n"
                   b"X-Admin-Protocol: gsma/rsp/v2.1.0\r\n"
                   b"User-Agent: gsma-rsp-ipad\r\n"
                   b"Content-Length: 3\r\n"
                   b"Connection: keep-alive\r\n\r\n\xbf\x4f\x00")


def test_build_request_host_and_connection_from_caller_get_without_length():
    req = http.build_request("GET", "ignored", "/x", headers={"host": "eim:8443"})
    assert req == b"GET /x HTTP/1.1\r\nhost: eim:8443\r\nConnection: keep-alive\r\n\r\n"
    req = http.build_request("POST", "h", "/", b"", [("Connection", "close")])
    assert req == b"POST / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    # str bodies are sent as UTF-8 and counted in bytes
    assert http.build_request("POST", "h", "/", "\u00e9").endswith(
        b"Content-Length: 2\r\nConnection: keep-alive\r\n\r\n\xc3\xa9")


def test_build_request_refuses_injection_and_computed_fields():
    e = raises(ValueError, http.build_request, "POST", "h", "/", b"", {"X": "a\r\nEvil: 1"})
    assert "CR, LF" in str(e)
    raises(ValueError, http.build_request, "POST", "h\r\n", "/", b"")
    e = raises(ValueError, http.build_request, "POST", "h", "/a b", b"")
    assert "request path" in str(e)
    raises(ValueError, http.build_request, "POST", "h", "gsma/rsp2/asn1", b"")
    raises(ValueError, http.build_request, "PO ST", "h", "/", b"")
    raises(ValueError, http.build_request, "POST", "h", "/", b"", {"Bad Name": "v"})
    e = raises(ValueError, http.build_request, "POST", "h", "/", b"x", {"content-length": "9"})
    assert "computed" in str(e)
    raises(ValueError, http.build_request, "POST", "h", "/", b"x", {"Transfer-Encoding": "chunked"})


def test_write_all_continues_short_writes_and_stops_on_a_dead_stream():
    class Short:
        def __init__(self, k):
            self.k = k
            self.got = b""

        def write(self, data):
            n = min(self.k, len(data))
            self.got += bytes(data[:n])
            return n

    s = Short(3)
    http.write_all(s, b"0123456789")
    assert s.got == b"0123456789"
    e = raises(TransportError, http.write_all, Short(0), b"abc")
    assert "accepted no bytes" in str(e) and "3 left" in str(e)


# ------------------------------------------------------------- responses

def test_content_length_body_at_every_piece_size():
    body = bytes(range(256)) * 3
    for piece in (1, 2, 7, 100, 5000):
        status, headers, got = read(ok(body, b"Content-Type: " + ASN1.encode() + b"\r\n"), piece)
        assert status == 200 and got == body, piece
        assert headers["content-type"] == ASN1
        assert headers["content-length"] == "768"


def test_chunked_with_extensions_and_trailers_at_every_piece_size():
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;name=value\r\nhello\r\n"
           b"1\r\n \r\n"
           b"A ; ext\r\n0123456789\r\n"
           b"0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n")
    for piece in (1, 3, 4096):
        status, headers, body = read(raw, piece)
        assert (status, body) == (200, b"hello 0123456789"), piece
        assert headers["transfer-encoding"] == "chunked"
        assert "x-trailer" not in headers  # trailers are read and bounded, not merged


def test_lf_only_lines_lower_case_names_and_repeated_fields():
    raw = (b"HTTP/1.1 201 Created\nX-A: 1\nx-a: 2\nSERVER:  demo \n"
           b"Content-Length: 2, 2\n\nok")
    status, headers, body = read(raw)
    assert (status, body) == (201, b"ok")
    assert headers == {"x-a": "1, 2", "server": "demo", "content-length": "2, 2"}


def test_non_utf8_header_value_is_kept_not_fatal():
    status, headers, _ = read(ok(b"", b"X-Name: caf\xe9\r\n"))
    assert status == 200 and headers["x-name"] == "caf\xe9"


def test_read_to_eof_body_when_no_length():
    raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"z" * 5000
    assert read(raw, 333) == (200, {"connection": "close"}, b"z" * 5000)
    raw = b"HTTP/1.0 200 OK\r\n\r\nold server"
    assert read(raw)[2] == b"old server"


def test_100_continue_and_other_interim_answers_are_skipped():
    raw = (b"HTTP/1.1 100 Continue\r\n\r\n"
           b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + ok(b"done"))
    status, headers, body = read(raw, 5)
    assert (status, body) == (200, b"done") and "link" not in headers


def test_no_body_for_204_304_and_head_and_next_answer_follows():
    raw = (b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"
           b"HTTP/1.1 304 Not Modified\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"  # a HEAD answer: no body bytes
           + ok(b"last"))
    rd = http.Buffered(Stream(raw, 7))

    def status_body(r):
        return r[0], r[2]

    assert status_body(http.read_response(rd)) == (204, b"")
    assert status_body(http.read_response(rd)) == (304, b"")
    assert status_body(http.read_response(rd, method="HEAD")) == (200, b"")
    assert status_body(http.read_response(rd)) == (200, b"last")


def test_empty_lines_before_status_line_are_tolerated():
    assert read(b"\r\n\r\n" + ok(b"x"))[2] == b"x"


def test_malformed_status_lines():
    for line in (b"HTTP/2 200 OK", b"HTTP/1.1 2OO OK", b"ICY 200 OK", b"HTTP/1.1 200OK",
                 b"HTTP/1.x 200 OK", b"HTTP/1.1  200 OK", b"garbage"):
        e = raises(ProtocolError, read, line + b"\r\n\r\n")
        msg = str(e)
        assert "expected 'HTTP/1.x NNN reason'" in msg and repr(line)[2:-1] in msg, msg


def test_malformed_header_lines():
    for bad, why in ((b"NoColon", "expected 'name: value'"),
                     (b"Space : x", "expected 'name: value'"),
                     (b": empty-name", "expected 'name: value'"),
                     (b"X-A: a\x00b", "control byte 0x00"),
                     (b" folded", "obsolete folded line")):
        e = raises(ProtocolError, read, b"HTTP/1.1 200 OK\r\nX: 1\r\n" + bad + b"\r\n\r\n")
        assert why in str(e) and str(e).startswith("HTTP header"), str(e)


def test_malformed_chunks():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    e = raises(ProtocolError, read, head + b"zz\r\n")
    assert "expected hex digits" in str(e) and "zz" in str(e)
    raises(ProtocolError, read, head + b"\r\n")
    raises(ProtocolError, read, head + b"-5\r\n")
    raises(ProtocolError, read, head + b"0x5\r\n")
    e = raises(ProtocolError, read, head + b"3\r\nabcd\r\n0\r\n\r\n")
    assert "expected CRLF after 3 bytes" in str(e) and "0x64" in str(e)
    e = raises(ProtocolError, read, head + b"1" * 1100 + b"\r\n")
    assert str(e).startswith("chunk size line") and "1024" in str(e)
    e = raises(ProtocolError, read, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
    assert "expected chunked" in str(e) and "gzip" in str(e)


def test_bad_content_length_values():
    for v in (b"abc", b"-1", b"5, 6", b"+5", b"1e3", b""):
        e = raises(ProtocolError, read, b"HTTP/1.1 200 OK\r\nContent-Length: " + v + b"\r\n\r\nxxxxx")
        assert "Content-Length: expected one decimal number" in str(e), v


def test_101_and_endless_interim_answers_refused():
    e = raises(ProtocolError, read, b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    assert "101" in str(e)
    e = raises(ProtocolError, read, b"HTTP/1.1 100 Continue\r\n\r\n" * 20 + ok(b""))
    assert "1xx" in str(e)


def test_size_bounds():
    # the head
    e = raises(ProtocolError, read, b"HTTP/1.1 200 OK\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
    assert "8192" in str(e)
    many = b"".join(b"X-%d: v\r\n" % i for i in range(150))
    e = raises(ProtocolError, read, b"HTTP/1.1 200 OK\r\n" + many + b"\r\n", max_header=100000)
    assert "at most 100 fields" in str(e)
    lines = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(90))
    e = raises(ProtocolError, read, b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n", piece=1)
    assert "head within 8192 bytes" in str(e)
    # the body, each way of framing it
    e = raises(ProtocolError, read, ok(b"x" * 101), max_body=100)
    assert "expected at most 100 bytes, got Content-Length 101" in str(e)
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               + (b"32\r\n" + b"y" * 50 + b"\r\n") * 3 + b"0\r\n\r\n")
    assert len(read(chunked, max_body=150)[2]) == 150
    e = raises(ProtocolError, read, chunked, max_body=149)
    assert "at most 149 bytes, got at least 150" in str(e)
    e = raises(ProtocolError, read, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"FFFFFFFFFFFF\r\n")
    assert "at most" in str(e)
    eof_body = b"HTTP/1.1 200 OK\r\n\r\n" + b"z" * 300
    assert len(read(eof_body, max_body=300)[2]) == 300
    e = raises(ProtocolError, read, eof_body, max_body=299)
    assert "expected at most 299 bytes, got more than 299" in str(e)
    # a Content-Length that is refused before reading the body (no 1 GB allocation)
    s = Stream(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n", 4096)
    raises(ProtocolError, http.read_response, s)
    assert s.reads == 1


def test_eof_in_the_middle_is_transport_error_before_any_byte_connection_closed():
    e = raises(TransportError, read, ok(b"0123456789")[:-3])
    assert not isinstance(e, http.ConnectionClosed)
    assert "response body" in str(e) and "connection closed" in str(e)
    e = raises(TransportError, read, b"HTTP/1.1 200 OK\r\nX-A: 1\r\n")
    assert "HTTP header" in str(e) and not isinstance(e, http.ConnectionClosed)
    e = raises(TransportError, read, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
    assert "chunk data" in str(e)
    e = raises(TransportError, read, b"HTTP/1")
    assert "status line" in str(e) and not isinstance(e, http.ConnectionClosed)
    e = raises(http.ConnectionClosed, read, b"")
    assert "before any byte" in str(e)


def test_stream_os_errors_are_named():
    e = raises(TimeoutError_, read, [OSError(110, "ETIMEDOUT")])
    assert "timed out" in str(e)
    raises(http.ConnectionClosed, read, [OSError(104, "ECONNRESET")])
    e = raises(TransportError, read, [b"HTTP/1.1 200 OK\r\n", OSError(104, "ECONNRESET")])
    assert not isinstance(e, http.ConnectionClosed)
    e = raises(TransportError, read, [OSError(5, "EIO")])
    assert "EIO" in str(e) and not isinstance(e, http.ConnectionClosed)


# ---------------------------------------------------------------- client

class Opener:
    """open_stream() for HttpClient: hands out the given streams in order."""

    def __init__(self, *streams):
        self.streams = list(streams)
        self.opened = []

    def __call__(self):
        if not self.streams:
            raise OSError(111, "ECONNREFUSED")
        s = self.streams.pop(0)
        self.opened.append(s)
        return s


def req(body, path="/gsma/rsp2/asn1", extra=b""):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: eim\r\n" + extra
            + b"Content-Type: " + ASN1.encode() + b"\r\nContent-Length: %d\r\n"
            b"Connection: keep-alive\r\n\r\n" % len(body) + body)


def test_client_keeps_one_connection_for_a_procedure():
    s = Stream([ok(b"\xbf\x4f\x03\x80\x01\x01", b"X-Seq: 1\r\n"), ok(b"", b"X-Seq: 2\r\n"),
                ok(b"three")], piece=5)
    c = http.HttpClient(Opener(s), "eim")
    assert c.post("/gsma/rsp2/asn1", b"\xbf\x4f\x00", ASN1) == (200, b"\xbf\x4f\x03\x80\x01\x01")
    assert c.response_headers["x-seq"] == "1"
    assert c.post("/gsma/rsp2/asn1", b"two", ASN1) == (200, b"")
    assert c.response_headers["x-seq"] == "2"
    assert c.post("/gsma/rsp2/asn1", b"3", ASN1) == (200, b"three")
    assert s.written == req(b"\xbf\x4f\x00") + req(b"two") + req(b"3")
    assert (c.connections, c.requests, s.closed) == (1, 3, False)
    c.close()
    assert s.closed


def test_client_headers_defaults_and_per_request_override():
    s = Stream([ok(b""), ok(b"")])
    c = http.HttpClient(Opener(s), "eim", headers={"User-Agent": "gsma-rsp-ipad"})
    c.post("/p", b"", ASN1)
    c.post("/p", b"", "application/json", headers={"user-agent": "other"})
    first, second = s.written.split(b"\r\n\r\n")[:2]
    assert b"User-Agent: gsma-rsp-ipad" in first
    assert b"user-agent: other" in second and b"gsma-rsp-ipad" not in second
    assert b"Content-Type: application/json" in second


def test_client_reopens_once_when_server_closed_the_idle_connection():
    first = Stream(ok(b"one"))  # then EOF: the server closed it while idle
    second = Stream(ok(b"two"))
    c = http.HttpClient(Opener(first, second), "eim")
    assert c.post("/gsma/rsp2/asn1", b"1", ASN1) == (200, b"one")
    assert c.post("/gsma/rsp2/asn1", b"2", ASN1) == (200, b"two")
    assert first.written == req(b"1") + req(b"2") and first.closed
    assert second.written == req(b"2")
    assert (c.connections, c.requests) == (2, 2)


def test_client_reopens_after_reset_or_broken_pipe_on_reuse():
    a = Stream([ok(b"one"), OSError(104, "ECONNRESET")])
    b = Stream(ok(b"two"))
    c = http.HttpClient(Opener(a, b), "eim")
    c.post("/p", b"", ASN1)
    assert c.post("/p", b"", ASN1) == (200, b"two")
    a = Stream(ok(b"one"))
    c = http.HttpClient(Opener(a, Stream(ok(b"two"))), "eim")
    c.post("/p", b"", ASN1)
    a.closed = True  # the next write raises EPIPE
    assert c.post("/p", b"", ASN1) == (200, b"two") and c.connections == 2


def test_client_does_not_retry_a_fresh_connection_or_a_started_answer():
    op = Opener(Stream(b""), Stream(ok(b"never")))
    c = http.HttpClient(op, "eim")
    e = raises(http.ConnectionClosed, c.post, "/p", b"x", ASN1)
    assert "before any byte" in str(e) and c.connections == 1
    # a kept-alive connection that dies in the middle of the answer: not sent twice
    a = Stream([ok(b"one"), ok(b"0123456789")[:-4]])
    op = Opener(a, Stream(ok(b"never")))
    c = http.HttpClient(op, "eim")
    c.post("/p", b"1", ASN1)
    e = raises(TransportError, c.post, "/p", b"2", ASN1)
    assert not isinstance(e, http.ConnectionClosed) and c.connections == 1
    # a timeout is not retried either: the server may be working on the request
    a = Stream([ok(b"one"), OSError(110, "ETIMEDOUT")])
    c = http.HttpClient(Opener(a, Stream(ok(b"never"))), "eim")
    c.post("/p", b"1", ASN1)
    raises(TimeoutError_, c.post, "/p", b"2", ASN1)
    assert c.connections == 1 and a.closed


def test_client_retries_only_once():
    op = Opener(Stream(ok(b"one")), Stream(b""), Stream(ok(b"never")))
    c = http.HttpClient(op, "eim")
    c.post("/p", b"", ASN1)
    raises(http.ConnectionClosed, c.post, "/p", b"", ASN1)
    assert c.connections == 2 and len(op.streams) == 1


def test_client_closes_after_connection_close_and_http10_answers():
    a = Stream(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n1")
    b = Stream(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n2")
    d = Stream([b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n3",
                ok(b"4")])
    c = http.HttpClient(Opener(a, b, d), "eim")
    assert [c.post("/p", b"", ASN1)[1] for _ in range(4)] == [b"1", b"2", b"3", b"4"]
    assert a.closed and b.closed and not d.closed and c.connections == 3


def test_client_drops_a_connection_with_unexpected_bytes():
    a = Stream(ok(b"one") + b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    b = Stream(ok(b"two"))
    c = http.HttpClient(Opener(a, b), "eim", read_size=4096)
    c.post("/p", b"", ASN1)
    assert c.post("/p", b"", ASN1) == (200, b"two") and a.closed


def test_client_open_failure_and_error_status_returned():
    c = http.HttpClient(Opener(), "eim")
    e = raises(TransportError, c.post, "/p", b"", ASN1)
    assert "opening a connection to eim" in str(e)
    c = http.HttpClient(Opener(Stream(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy")), "eim")
    assert c.post("/p", b"", ASN1) == (503, b"busy") and c.reason == "Busy"


# ------------------------------------------------------- polled streams (modem data mode)

class Polled(Stream):
    """A UART-like stream: b"" while nothing arrived; each poll takes 50 ms on a fake clock."""

    def __init__(self, bursts, idle_polls=3):
        Stream.__init__(self, bursts)
        self.idle_polls = idle_polls
        self.idle = 0
        self.ms = 0
        self.eof = False

    def clock(self):
        return self.ms

    def read(self, n):
        self.ms += 50
        if self.idle < self.idle_polls:
            self.idle += 1
            return None if self.idle % 2 else b""
        data = Stream.read(self, n)
        if data:
            self.idle = 0
        return data


def test_polled_stream_waits_through_empty_reads():
    s = Polled([ok(b"one"), ok(b"two")])
    c = http.HttpClient(Opener(s), "eim", timeout_ms=1000, clock_ms=s.clock)
    assert c.post("/p", b"", ASN1) == (200, b"one")
    assert c.post("/p", b"", ASN1) == (200, b"two")
    assert c.connections == 1


def test_polled_stream_silence_is_a_bounded_timeout():
    s = Polled([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"], idle_polls=0)
    e = raises(TimeoutError_, http.HttpClient(Opener(s), "eim", timeout_ms=2000,
                                              clock_ms=s.clock).post, "/p", b"", ASN1)
    assert "no byte within 2000 ms" in str(e) and "response body" in str(e)
    assert 2000 <= s.ms <= 2200  # it stopped at the bound, not later


def test_polled_stream_eof_flag_is_a_close():
    first = Polled([ok(b"one")], idle_polls=0)
    second = Polled([ok(b"two")], idle_polls=0)
    c = http.HttpClient(Opener(first, second), "eim", timeout_ms=1000, clock_ms=first.clock)
    c.post("/p", b"", ASN1)
    first.eof = True  # the modem reported the server closed the connection
    assert c.post("/p", b"", ASN1) == (200, b"two") and c.connections == 2
