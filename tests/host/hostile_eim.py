"""A deliberately broken eIM for tests: ESipa over real TLS that answers badly on purpose.

    bad = HostileEim(cert_file, key_file, upstream=eim_server,
                     faults={"provideEimPackageResult": "garbage"}).start()
    ... `ipa --eim-url <bad.url> poll` ...
    bad.stop(); bad.seen            # [(function, fault), ...] per request

It holds the eIM's own TLS identity (the certificate the eUICC trusts), reads
each HTTP/1.1 request, names the ESipa function from the body's tag (SGP.32
ASN.1 binding: BF4F getEimPackage, BF50 provideEimPackageResult, BF3D
handleNotification) and either relays it to `upstream` (a running
ipa_host.sim.eim.eim.EimServer, over HTTPS with that server's CA) or answers with
the fault set for that function ("*": every function; none: relay):

    garbage            200, the right Content-Type, bytes that are no BER-TLV
    truncated          200, a TLV of the function's tag announcing 256 bytes, 40 follow
    oversized          200, Content-Length one byte over ipa_core.http.MAX_BODY (streamed)
    oversized_chunked  200, chunked, chunks past MAX_BODY and no last chunk
    status:NNN         HTTP NNN with a text/plain reason
    content_type       200 text/html: a captive portal's page instead of ESipa
    drip               200, Content-Length 4096, one byte every DRIP_INTERVAL for ever
    close_mid          200, Content-Length 200, 50 bytes, then the connection is closed
    length_nonascii    200, Content-Length b2 35 ('²5': str.isdigit() takes it, int() not)
    vanish             relay, then stop listening and drop the connection (the next
                       connection is refused: the eIM is gone)

Every wait is bounded: a client that stops reading ends the connection after
IDLE_TIMEOUT, and stop() ends every thread within a second or so.
"""

import http.client
import socket
import ssl
import threading

from ipa_core.http import MAX_BODY

FUNCTIONS = {b"\xbf\x4f": "getEimPackage", b"\xbf\x50": "provideEimPackageResult",
             b"\xbf\x3d": "handleNotification"}
FAULTS = ("garbage", "truncated", "oversized", "oversized_chunked", "content_type", "drip",
          "close_mid", "vanish", "length_nonascii")  # and "status:NNN"
ASN1_CONTENT_TYPE = "application/x-gsma-rsp-asn1"
DRIP_INTERVAL = 0.25
IDLE_TIMEOUT = 10.0
MAX_HEAD = 16384
MAX_REQUEST = 1 << 20
GARBAGE = b"\xde\xad\xbe\xef this is not ASN.1 \xff\xfe\x00\x01" * 3
PORTAL = (b"<!DOCTYPE html><html><head><title>Hotel Wi-Fi</title></head>"
          b"<body><h1>Welcome! Please log in to continue.</h1></body></html>\n")
REASONS = {400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


class HostileEim:
    """See the module docstring. `url` is valid after start()."""

    def __init__(self, cert_file, key_file, upstream=None, faults=None, host="127.0.0.1"):
        for f in (faults or {}).values():
            if f not in FAULTS and not (f.startswith("status:") and f[7:].isdigit()):
                raise ValueError("unknown fault %r (expected one of %s or status:NNN)"
                                 % (f, ", ".join(FAULTS)))
        self.faults = dict(faults or {})
        self.upstream = upstream
        self.host = host
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert_file, key_file)
        self.seen = []
        self.handshake_failures = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._listener = None
        self._conns = set()
        self._threads = []
        self.port = None

    @property
    def url(self):
        return "https://%s:%d" % (self.host, self.port)

    # ---- life cycle ------------------------------------------------------------------

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, 0))
        s.listen(8)
        s.settimeout(0.1)
        self._listener = s
        self.port = s.getsockname()[1]
        self._spawn(self._accept_loop)
        return self

    def stop(self):
        self._stop.set()
        self.vanish()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            _shutdown(c)
        for t in list(self._threads):
            t.join(5)

    def vanish(self):
        """Stop listening now: new connections are refused."""
        with self._lock:
            s, self._listener = self._listener, None
        if s is not None:
            _shutdown(s)  # Linux: stops listening at once, a blocked accept() returns
            s.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self):
        while not self._stop.is_set():
            s = self._listener
            if s is None:
                return
            try:
                raw, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._spawn(self._serve, raw)

    # ---- one connection ----------------------------------------------------------------

    def _serve(self, raw):
        raw.settimeout(IDLE_TIMEOUT)
        conn = raw
        self._track(conn, True)
        try:
            try:
                conn = self.ctx.wrap_socket(raw, server_side=True)  # raw is detached now
            except (ssl.SSLError, OSError):
                self.handshake_failures += 1
                return
            self._track(conn, True)
            rest = b""
            while not self._stop.is_set():
                req, rest = _read_request(conn, rest)
                if req is None:
                    return
                path, body = req
                function = FUNCTIONS.get(body[:2], "unknown")
                fault = self.faults.get(function, self.faults.get("*"))
                self.seen.append((function, fault))
                if not self._answer(conn, path, body, fault):
                    return
        except OSError:  # ssl.SSLError too: the client went away
            return
        finally:
            self._track(raw, False)
            self._track(conn, False)
            _shutdown(conn)  # a TCP close without close_notify, like a crashed server
            conn.close()

    def _track(self, sock, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(sock)

    def _answer(self, conn, path, body, fault):
        """Answer one request; False when the connection must end."""
        if fault is None or fault == "vanish":
            status, ctype, answer = self._relay(path, body)
            if fault == "vanish":
                self.vanish()  # before the answer leaves: the next connection is refused
            _send(conn, status, ctype, answer)
            return fault is None
        if fault.startswith("status:"):
            code = int(fault[7:])
            _send(conn, code, "text/plain",
                  ("%d %s: simulated failure\n" % (code, REASONS.get(code, ""))).encode())
            return True
        if fault == "garbage":
            _send(conn, 200, ASN1_CONTENT_TYPE, GARBAGE)
            return True
        if fault == "truncated":
            tag = body[:2] if body[:2] in FUNCTIONS else b"\xbf\x4f"
            _send(conn, 200, ASN1_CONTENT_TYPE, tag + b"\x82\x01\x00" + b"\xa0" * 40)
            return True
        if fault == "content_type":
            _send(conn, 200, "text/html; charset=utf-8", PORTAL)
            return True
        if fault == "length_nonascii":  # issue 17, F2
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: \xb25\r\n"
                         b"\r\n" % ASN1_CONTENT_TYPE.encode() + GARBAGE[:25])
            return False
        if fault == "oversized":
            conn.sendall(_head(200, ASN1_CONTENT_TYPE, MAX_BODY + 1))
            left = MAX_BODY + 1
            while left and not self._stop.is_set():
                n = min(left, 65536)
                conn.sendall(b"\x30" * n)
                left -= n
            return False
        if fault == "oversized_chunked":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked"
                         b"\r\n\r\n" % ASN1_CONTENT_TYPE.encode())
            sent = 0
            while sent <= MAX_BODY + 65536 and not self._stop.is_set():
                conn.sendall(b"10000\r\n" + b"\x30" * 65536 + b"\r\n")
                sent += 65536
            return False
        if fault == "drip":
            conn.sendall(_head(200, ASN1_CONTENT_TYPE, 4096))
            for _ in range(4096):
                if self._stop.wait(DRIP_INTERVAL):
                    break
                conn.sendall(b"\xbf")
            return False
        if fault == "close_mid":
            conn.sendall(_head(200, ASN1_CONTENT_TYPE, 200) + b"\xbf\x4f\x81\xc5" + b"\xa0" * 46)
            return False  # _serve shuts the TCP connection down: no close_notify
        raise AssertionError(fault)

    def _relay(self, path, body):
        up = self.upstream
        if up is None:
            raise OSError("no upstream eIM to relay to")
        ctx = ssl.create_default_context(cafile=up.tls_files["ca_cert"])
        c = http.client.HTTPSConnection(up.host, up.port, context=ctx, timeout=IDLE_TIMEOUT)
        try:
            c.request("POST", path, body, {"Content-Type": ASN1_CONTENT_TYPE,
                                           "X-Admin-Protocol": "gsma/rsp/v2.1.0",
                                           "User-Agent": "gsma-rsp-ipad"})
            r = c.getresponse()
            return r.status, r.getheader("Content-Type"), r.read()
        finally:
            c.close()


# ---- HTTP bits -----------------------------------------------------------------------------


def _shutdown(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _head(status, ctype, length):
    head = "HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "OK"))
    if ctype:
        head += "Content-Type: %s\r\n" % ctype
    if status != 204:
        head += "Content-Length: %d\r\n" % length
    return (head + "\r\n").encode()


def _send(conn, status, ctype, body):
    conn.sendall(_head(status, ctype, len(body)) + (body if status != 204 else b""))


def _read_request(conn, buf):
    """((path, body), rest) of the next request, or (None, b"") when the client closed."""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            return None, b""
        data = conn.recv(4096)
        if not data:
            return None, b""
        buf += data
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1] if len(parts) == 3 else "/"
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length > MAX_REQUEST:
        return None, b""
    while len(buf) < length:
        data = conn.recv(65536)
        if not data:
            return None, b""
        buf += data
    return (path, buf[:length]), buf[length:]
