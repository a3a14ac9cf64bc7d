"""A network object (ipa_host.net.https / coaps, ipa_core.at_http) whose exchanges are
also written to the --pcap file (ipa_host.trace.Tracer.network builds it).

HTTP (https://, http://, and the modem's HTTP stacks): one synthesised TCP connection to
port 80 of the server's fake address per network object, reopened after a failure; the
request is rebuilt from what the IPA handed over (request line, Host, Content-Type,
Content-Length and the per-request headers: the transport's fixed headers such as
X-Admin-Protocol are not seen here), the answer from the status, the response headers
the transport kept, and the body. A streamed answer (post_stream: the bound profile
package) is written chunked as the IPA reads it, so its pieces sit between the APDUs
that load them. The plain text is what TLS carried: a trace holds no TLS.

CoAP (coaps://, coap://): one CON POST and its piggybacked ACK on UDP port 5683 per
exchange, whole bodies (the Block1/Block2 transfer and DTLS are not shown); a body over
one datagram's room is cut, with a note.
"""

import http.client

from ipa_core import coap
from ipa_host import pcap

COAP_PORT = 5683
MAX_COAP_PAYLOAD = 65000  # one UDP datagram, headers and options left room
_DROP = ("content-length", "transfer-encoding", "connection")


def reason(status):
    return http.client.responses.get(status, "")


def coap_code(status):
    """The CoAP response code byte for the HTTP-like status CoapsNetwork returned."""
    for c, s in ((coap.CONTENT, 200), (coap.CHANGED, 204), (coap.CREATED, 201)):
        if s == status:
            return c
    return coap.code(status // 100, status % 100)


class TracedNetwork:
    """`post` / `post_stream` / `close` of `net`, recorded; anything else is `net`'s."""

    def __init__(self, net, url, tracer, server):
        self.net = net
        self.url = url  # urlsplit result
        self.tracer = tracer
        self.server = server
        self.coap = url.scheme.startswith("coap")
        self.flow = None
        self.mid = 0
        if hasattr(net, "post_stream"):
            self.post_stream = self._post_stream

    def __getattr__(self, name):
        if name == "net":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.net, name)

    def _send(self, fn, path, body, content_type, headers):
        """fn(...) of the wrapped network; when it fails, the file shows the request that
        was attempted and the connection reset."""
        try:
            return fn(path, body, content_type, headers)
        except BaseException:
            self._request(path, body, content_type, headers)
            self._broken()
            raise

    def post(self, path, body, content_type, headers=None):
        status, answer = self._send(self.net.post, path, body, content_type, headers)
        if self.coap:
            self._coap(path, body, content_type, status, answer)
        else:
            self._request(path, body, content_type, headers)
            self._answer(status, answer)
        return status, answer

    def _post_stream(self, path, body, content_type, headers=None):
        status, reader = self._send(self.net.post_stream, path, body, content_type, headers)
        self._request(path, body, content_type, headers)
        self._head(status, None)
        return status, _TracedReader(reader, self)

    def close(self):
        if self.flow is not None:
            self.flow.close()
            self.flow = None
        self.net.close()

    # ---- HTTP

    def _tcp(self):
        if self.flow is None:
            self.flow = pcap.TcpFlow(self.tracer.pcap, self.server, self.tracer.port(), 80)
        return self.flow

    def _request(self, path, body, content_type, headers):
        if self.coap:
            return
        body = bytes(body or b"")
        lines = ["POST %s%s HTTP/1.1" % (self.url.path.rstrip("/"), path),
                 "Host: %s" % self.url.netloc, "Content-Type: %s" % content_type]
        items = headers.items() if isinstance(headers, dict) else (headers or ())
        lines += ["%s: %s" % (k, v) for k, v in items if k.lower() not in _DROP]
        lines.append("Content-Length: %d" % len(body))
        self._tcp().data(True, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def _head(self, status, length):
        lines = ["HTTP/1.1 %d %s" % (status, reason(status))]
        for k, v in (getattr(self.net, "response_headers", None) or {}).items():
            if k.lower() not in _DROP:
                lines.append("%s: %s" % (k, v))
        lines.append("Content-Length: %d" % length if length is not None
                     else "Transfer-Encoding: chunked")
        self._tcp().data(False, ("\r\n".join(lines) + "\r\n\r\n").encode())

    def _answer(self, status, answer):
        answer = bytes(answer or b"")
        self._head(status, len(answer))
        if answer:
            self._tcp().data(False, answer)

    def _broken(self):
        """The exchange failed: the connection ends with a reset; the next opens anew."""
        if self.flow is not None:
            self.flow.close(reset=True)
            self.flow = None

    # ---- CoAP

    def _coap(self, path, body, content_type, status, answer):
        t = self.tracer
        self.mid = (self.mid + 1) & 0xFFFF
        token = bytes((self.mid >> 8, self.mid & 0xFF))
        opts = [(coap.URI_PATH, seg.encode()) for seg in
                (self.url.path.rstrip("/") + path).split("/") if seg]
        cf = coap.CONTENT_FORMATS.get((content_type or "").split(";")[0].strip().lower())
        if cf is not None:
            opts.append((coap.CONTENT_FORMAT, coap.uint_encode(cf)))
        req = coap.Message(coap.CON, coap.POST, self.mid, token, opts, self._cut(body, "request"))
        ans = coap.Message(coap.ACK, coap_code(status), self.mid, token, (),
                           self._cut(answer, "answer"))
        t.pcap.write_ip(pcap.udp(pcap.IPA_ADDR, 49152 + self.mid % 16384, self.server, COAP_PORT,
                                 req.encode(), t.pcap.ident()))
        t.pcap.write_ip(pcap.udp(self.server, COAP_PORT, pcap.IPA_ADDR, 49152 + self.mid % 16384,
                                 ans.encode(), t.pcap.ident()), to_peer=False)

    def _cut(self, data, what):
        data = bytes(data or b"")
        if len(data) > MAX_COAP_PAYLOAD:
            self.tracer.warn("--pcap: a CoAP %s of %d bytes is cut to %d in the file"
                             % (what, len(data), MAX_COAP_PAYLOAD))
            return data[:MAX_COAP_PAYLOAD]
        return data


class _TracedReader:
    """A streamed answer's reader (ipa_core.stream contract) that records what it reads,
    each read as one HTTP chunk (the body's length may be unknown when the head is
    written); the last chunk when the body ends, a reset when the IPA drops the rest."""

    def __init__(self, reader, net):
        self.reader = reader
        self.net = net
        self.length = getattr(reader, "length", None)
        self.count = 0
        self.done = False

    def read(self, n):
        data = self.reader.read(n)
        if self.done:
            return data
        if data:
            self.net._tcp().data(False, b"%x\r\n" % len(data) + bytes(data) + b"\r\n")
            self.count += len(data)
        if not data or self.length is not None and self.count >= self.length:
            self.done = True
            self.net._tcp().data(False, b"0\r\n\r\n")
        return data

    def readall(self):
        out = []
        while True:
            d = self.read(4096)
            if not d:
                return b"".join(out)
            out.append(d)

    def close(self):
        if not self.done:
            self.done = True
            self.net._broken()  # the rest of the answer is skipped: the stream is cut there
        self.reader.close()

    def __getattr__(self, name):
        if name == "reader":
            raise AttributeError(name)
        return getattr(self.reader, name)
