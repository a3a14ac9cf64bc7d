"""Quectel HTTP(S) stack as a network object: AT+QHTTP* with AT+QSSLCFG.

Sources: the project's modem fact sheet ("Modems' own HTTP(S)/CoAP stacks")
and Quectel's HTTP(S) and SSL AT command manuals (EC2x/EG9x/EM05, BG96,
EG915U). ctx is the ssl_ctx option, cid the context_id option.

Set-up (before the first request, and again after close(), a failure or a
modem restart):
    [init commands]
    AT+QHTTPCFG="contextid",<cid>
    AT+QHTTPCFG="responseheader",0     QHTTPREAD gives the body only
    AT+QHTTPCFG="requestheader",1      the request head is ours: Content-Type,
                                       X-Admin-Protocol, User-Agent are sent as given
  https only:
    AT+QHTTPCFG="sslctxid",<ctx>
    AT+QSSLCFG="sslversion",<ctx>,<tls_version>
    AT+QSSLCFG="ciphersuite",<ctx>,<ciphersuite>
    AT+QSSLCFG="seclevel",<ctx>,<1 with a CA, else 0>
    AT+QSSLCFG="cacert",<ctx>,"UFS:<ca>"      when a CA is known
    AT+QSSLCFG="sni",<ctx>,1                  when sni (not for IP literals)
A request:
    AT+QHTTPURL=<len>,<input s> -> CONNECT -> <url> -> OK    (when the URL changed)
    AT+QHTTPPOST=<len>,<input s>,<rsp s> -> CONNECT -> head + body -> OK
    URC +QHTTPPOST: <err>[,<status>[,<length>]]       (no OK after it)
The body, on the reader's first read:
    AT+QHTTPREAD=<wait s> -> CONNECT -> body -> OK, URC +QHTTPREAD: <err>
close(): AT+QHTTPSTOP. install_ca(): AT+QFDEL="UFS:<name>" (an error is
fine: no such file), AT+QFUPL="UFS:<name>",<size>,<input s> -> CONNECT ->
PEM -> +QFUPL: <size>,<checksum> OK, then the cacert/seclevel settings.

QHTTPREAD is one CONNECT stream: the reader takes it incrementally from the
engine (read_raw), exactly <length> bytes when +QHTTPPOST announced one.
Without a length (chunked answers) it scans for the trailer
"\\r\\nOK\\r\\n\\r\\n+QHTTPREAD:" while holding back only the bytes that could
start it; a body that itself ends with that text cannot be told apart
(announced lengths are the normal case). The QHTTPCFG "contextid" PDP
context must be active (AT+QIACT, e.g. in `init`).
"""

from ipa_core.at import AtError
from ipa_core.at_http import AtHttp, BodyReader, drop_urcs, fields, first, number, secs
from ipa_core.errors import ProtocolError, Names

# Quectel HTTP(S) AT Commands Manual, "Summary of Error Codes".
ERRORS = Names(((701, "HTTP(S) unknown error"), (702, "HTTP(S) timeout"), (703, "HTTP(S) busy"),
                (704, "HTTP(S) UART busy"), (705, "HTTP(S) no GET/POST requests"),
                (706, "HTTP(S) network busy"), (707, "HTTP(S) network open failed"),
                (708, "HTTP(S) network no configuration"), (709, "HTTP(S) network deactivated"),
                (710, "HTTP(S) network error"), (711, "HTTP(S) URL error"),
                (712, "HTTP(S) empty URL"), (713, "HTTP(S) IP address error"),
                (714, "HTTP(S) DNS error"), (715, "HTTP(S) socket create error"),
                (716, "HTTP(S) socket connect error"), (717, "HTTP(S) socket read error"),
                (718, "HTTP(S) socket write error"), (719, "HTTP(S) socket closed"),
                (720, "HTTP(S) data encode error"), (721, "HTTP(S) data decode error"),
                (722, "HTTP(S) read timeout"), (723, "HTTP(S) response failed"),
                (724, "incoming call busy"), (725, "voice call busy"), (726, "input timeout"),
                (727, "wait data timeout"), (728, "wait HTTP(S) response timeout"),
                (729, "memory allocation failed"), (730, "invalid parameter")))

POST_URC = "+QHTTPPOST:"
READ_URC = "+QHTTPREAD:"
TAIL = b"\r\n+QHTTPREAD:"
OK_TAIL = b"\r\nOK\r\n"
# What may follow the body, shortest forms: OK then the URC (the manual), OK
# without its blank line, the URC then OK (seen in field code).
ENDINGS = (OK_TAIL + TAIL, b"\r\nOK" + TAIL, TAIL)
HOLD = len(ENDINGS[0]) - 1  # bytes held back while the end is not known


def _ascii(b):
    return "".join([chr(c) if 31 < c < 127 else " " for c in b])


def _overlap(w, pat):
    """Longest k < len(pat) with w ending in pat[:k]."""
    k = min(len(w), len(pat) - 1)
    while k > 0:
        if w[len(w) - k:] == pat[:k]:
            return k
        k -= 1
    return 0


class QuectelReader(BodyReader):
    """The body of the last AT+QHTTPPOST, read through AT+QHTTPREAD on demand."""

    def __init__(self, net, length):
        BodyReader.__init__(self, net, length, "AT+QHTTPREAD body")
        self.cmd = "AT+QHTTPREAD=%d" % secs(net.read_timeout_ms)
        self._started = False
        self._done = False
        self._win = b""

    def _fetch(self):
        if self._done:
            return b""
        net = self.net
        if not self._started:
            if self.length == 0:
                self._done = True
                return b""
            self._started = True
            net.data(self.cmd, None, ("CONNECT",), net.read_timeout_ms)
        if self.length is None:
            return self._scan()
        left = self.length - self.received
        if left <= 0:
            self._end()
            return b""
        n = left if left < net.chunk else net.chunk
        data = net.engine.read_raw(n, net.read_timeout_ms)
        if n == left:
            self._end()
        return data

    def _end(self):
        """After the last body byte: the final OK and +QHTTPREAD: <err>, in either order."""
        self._done = True
        net = self.net
        try:
            lines = net.engine.finish(net.read_timeout_ms)
        except AtError as e:
            raise net.translate(e, self.cmd)
        line = first(lines, READ_URC)
        if line is None:
            line = net.wait(READ_URC, self.cmd, net.read_timeout_ms)
        self._check(line)

    def _check(self, line):
        f = fields(line, READ_URC, self.cmd)
        err = number(f[0], "error code", line, self.cmd)
        if err:
            raise self.net.stack_error(self.cmd, err)

    def _scan(self):
        """Unknown length: body bytes up to the trailer, chunk by chunk."""
        net = self.net
        w = self._win
        while True:
            i = w.find(TAIL)
            if i >= 0:
                self._win = b""
                return self._tail(w, i)
            keep = len(w) - HOLD
            if keep >= net.chunk:
                self._win = w[keep:]
                return w[:keep]
            # Ask only for bytes that must still come: never past the trailer's end.
            n = HOLD + 2
            for pat in ENDINGS:
                k = len(pat) + 1 - _overlap(w, pat)
                if k < n:
                    n = k
            w = w + net.engine.read_raw(n, net.read_timeout_ms)
            if self.received + len(w) > net.max_body + HOLD:
                raise ProtocolError("%s: expected at most max_body=%d bytes, got more"
                                    % (self.what, net.max_body))

    def _tail(self, w, i):
        self._done = True
        net = self.net
        body = w[:i]
        ok_first = False
        for okp in (OK_TAIL, b"\r\nOK"):
            if body.endswith(okp):
                body = body[:len(body) - len(okp)]
                ok_first = True
                break
        rest = w[i + len(TAIL):]
        if b"\n" not in rest:
            rest += net.engine.read_raw_until(b"\n", 32, net.read_timeout_ms) + b"\n"
        self._check(READ_URC + _ascii(rest[:rest.find(b"\n")]).strip())
        if not ok_first:
            try:
                net.engine.finish(net.read_timeout_ms)
            except AtError as e:
                raise net.translate(e, self.cmd)
        if not body:  # the last bytes were all held back: nothing more
            return b""
        return body

    def _discard(self):
        if not self._started or self._done:
            return
        while not self._done:
            data = self._fetch()
            self.received += len(data)
            if self.received > self.net.max_body:
                raise ProtocolError("%s: expected at most max_body=%d bytes, got more"
                                    % (self.what, self.net.max_body))


class QuectelHttp(AtHttp):
    """Network object over Quectel's AT+QHTTP* stack (see the module docstring).

    Options (besides ipa_core.at_http's): context_id (1) the PDP context,
    ssl_ctx (1) the SSL context, ciphersuite ("0xFFFF": all).
    """

    STACK = "Quectel"
    EXTRA = {"context_id": 1, "ssl_ctx": 1, "ciphersuite": "0xFFFF"}
    INTS = ("context_id", "ssl_ctx")
    ERRORS = ERRORS

    def __init__(self, engine, base_url, **options):
        AtHttp.__init__(self, engine, base_url, **options)
        self._url = None  # the URL the modem holds

    def _setup(self):
        self._url = None
        self.at('AT+QHTTPCFG="contextid",%d' % self.context_id)
        self.at('AT+QHTTPCFG="responseheader",0')
        self.at('AT+QHTTPCFG="requestheader",1')
        if self.tls:
            ctx = self.ssl_ctx
            self.at('AT+QHTTPCFG="sslctxid",%d' % ctx)
            self.at('AT+QSSLCFG="sslversion",%d,%d' % (ctx, self.tls_version))
            self.at('AT+QSSLCFG="ciphersuite",%d,%s' % (ctx, self.ciphersuite))
            self.at('AT+QSSLCFG="seclevel",%d,%d' % (ctx, 1 if self.verifying() else 0))
            if self.ca is not None:
                self.at('AT+QSSLCFG="cacert",%d,"UFS:%s"' % (ctx, self.ca))
            if self.sni_host():
                self.at('AT+QSSLCFG="sni",%d,1' % ctx)

    def _head(self, path, body, headers):
        lines = ["POST %s HTTP/1.1" % path, "Host: " + self.hostport]
        for name, value in headers:
            lines.append("%s: %s" % (name, value))
        lines.append("Content-Length: %d" % len(body))
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _request(self, path, body, headers):
        url = self.origin + path
        if url != self._url:
            self._url = None
            self.data("AT+QHTTPURL=%d,%d" % (len(url), secs(self.input_timeout_ms)),
                      url.encode(), ("CONNECT",))
            self._url = url
        req = self._head(path, body, headers) + body
        cmd = "AT+QHTTPPOST=%d,%d,%d" % (len(req), secs(self.input_timeout_ms),
                                          secs(self.http_timeout_ms))
        drop_urcs(self.engine, POST_URC)
        # CONNECT comes once the modem has reached the server: a round trip.
        self.data(cmd, req, ("CONNECT",), self.http_timeout_ms)
        line = self.wait(POST_URC, cmd, self.http_timeout_ms)
        f = fields(line, POST_URC, cmd)
        err = number(f[0], "error code", line, cmd)
        if err:
            raise self.stack_error(cmd, err)
        if len(f) < 2:
            raise ProtocolError("%s: expected '+QHTTPPOST: 0,<status>[,<length>]', got %r"
                                % (cmd, line))
        status = number(f[1], "HTTP status", line, cmd)
        length = number(f[2], "body length", line, cmd) if len(f) > 2 and f[2] else None
        return status, length

    def _reader(self, length):
        return QuectelReader(self, length)

    def _teardown(self):
        self._url = None
        self.at("AT+QHTTPSTOP")

    def _install_ca(self, pem, name):
        path = "UFS:" + name
        self._quiet(self.at, 'AT+QFDEL="%s"' % path)  # no such file yet: fine
        cmd = 'AT+QFUPL="%s",%d,%d' % (path, len(pem), secs(self.input_timeout_ms))
        lines = self.data(cmd, pem, ("CONNECT",))
        line = first(lines, "+QFUPL:")
        if line is None:
            raise ProtocolError("%s: expected '+QFUPL: <size>,<checksum>', got %r" % (cmd, lines))
        size = number(fields(line, "+QFUPL:", cmd)[0], "size", line, cmd)
        if size != len(pem):
            raise ProtocolError("%s: the modem stored %d bytes, expected %d"
                                % (cmd, size, len(pem)))
        self.at('AT+QSSLCFG="cacert",%d,"%s"' % (self.ssl_ctx, path))
        self.at('AT+QSSLCFG="seclevel",%d,1' % self.ssl_ctx)
