"""The eIM network over the MCU's own TCP/IP and TLS: socket + ssl + ipa_core.http.

For boards whose MicroPython has sockets and TLS: an ESP32 on Wi-Fi (a lab
set-up; the card still goes through the modem UART) and QuecPython
(`usocket` + `ussl` over the module's own data call). ipa_core.http does the
HTTP/1.1 framing and bounds (max body, header size); this module only opens
the connection:

    net = socket_network("https://eim.example.com", ca_pem=pem, timeout_s=30)
    status, body = net.post("/gsma/rsp2/asn1", msg, "application/x-gsma-rsp-asn1")

Trust: with `ca_pem` the server certificate must chain to it (ssl
CERT_REQUIRED with the CA loaded; QuecPython: ussl.wrap_socket(cert=...));
without it, TLS is encrypted but the server is NOT authenticated - the log
says so once. `modules` replaces (socket, ssl) for tests and for ports whose
modules have other names; MicroPython ports are tried in this order:
(socket, ssl), (usocket, ussl).
"""

from ipa_core.compat import a2b_base64

from ipa_core.errors import TransportError

CONNECT_TIMEOUT_S = 30


def pem_to_der(pem):
    """DER bytes of the first certificate in PEM text (bytes or str)."""
    if isinstance(pem, str):
        pem = pem.encode()
    start = pem.find(b"-----BEGIN")
    if start < 0:
        raise ValueError("CA certificate: no '-----BEGIN' line in %d bytes of PEM" % len(pem))
    body_start = pem.find(b"\n", start) + 1
    end = pem.find(b"-----END", body_start)
    if body_start <= 0 or end < 0:
        raise ValueError("CA certificate: PEM block without an '-----END' line")
    return a2b_base64(b"".join(pem[body_start:end].split()))


def split_url(base_url):
    """'https://host[:port]' -> (scheme, host, port, prefix); ValueError naming the URL."""
    i = base_url.find("://")
    scheme = base_url[:i].lower() if i > 0 else ""
    if scheme not in ("http", "https"):
        raise ValueError("base URL %r: expected http://host[:port] or https://host[:port]"
                         % (base_url,))
    rest = base_url[i + 3:]
    j = rest.find("/")
    hostport, prefix = (rest, "") if j < 0 else (rest[:j], rest[j:].rstrip("/"))
    port = 443 if scheme == "https" else 80
    k = hostport.rfind(":")
    if k > hostport.rfind("]"):
        digits = hostport[k + 1:]
        if not digits.isdigit() or not 0 < int(digits) < 65536:
            raise ValueError("base URL %r: expected a port 1..65535 after ':'" % (base_url,))
        port = int(digits)
        hostport = hostport[:k]
    if not hostport or " " in hostport or "@" in hostport:
        raise ValueError("base URL %r: expected scheme://host[:port]" % (base_url,))
    return scheme, hostport, port, prefix


def _modules():
    try:
        import socket
        import ssl
        return socket, ssl
    except ImportError:
        import usocket
        import ussl
        return usocket, ussl


class SockStream:
    """A connected socket as the stream of ipa_core.http (read/write/close); `idle` (a
    watchdog feed) runs before every read, so a long answer read in many pieces keeps the
    watchdog fed while each single read stays bounded by the socket timeout."""

    def __init__(self, sock, idle=None):
        self.sock = sock
        self.idle = idle
        self._read = getattr(sock, "read", None) or sock.recv
        self._write = getattr(sock, "write", None) or sock.send

    def read(self, n):
        if self.idle is not None:
            self.idle()
        return self._read(n)

    def write(self, data):
        return self._write(data)

    def close(self):
        self.sock.close()


class Connector:
    """open_stream() for ipa_core.http.HttpClient: TCP connect, then TLS for https."""

    def __init__(self, scheme, host, port, ca_pem=None, timeout_s=CONNECT_TIMEOUT_S,
                 modules=None, log=print, idle=None):
        self.scheme = scheme
        self.host = host
        self.port = port
        self.ca_pem = ca_pem
        self.timeout_s = timeout_s
        self.modules = modules
        self.log = log
        self.idle = idle
        self._warned = False

    def __call__(self):
        socket, ssl = self.modules or _modules()
        ai = socket.getaddrinfo(self.host, self.port)[0]
        sock = socket.socket(ai[0], socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout_s)
            sock.connect(ai[-1])
            if self.scheme == "https":
                sock = self._tls(ssl, sock)
        except BaseException:
            sock.close()
            raise
        return SockStream(sock, self.idle)

    def _tls(self, ssl, sock):
        host = self.host.strip("[]")
        if self.ca_pem is None and not self._warned:
            self._warned = True
            self.log("socket_net: no CA for %s: TLS without server authentication" % host)
        ctx_class = getattr(ssl, "SSLContext", None)
        if ctx_class is not None:  # MicroPython >= 1.23 (ESP32), CPython
            ctx = ctx_class(ssl.PROTOCOL_TLS_CLIENT)
            if self.ca_pem is not None:
                ctx.verify_mode = ssl.CERT_REQUIRED
                # MicroPython's mbedtls takes DER reliably; PEM depends on the build.
                ctx.load_verify_locations(cadata=pem_to_der(self.ca_pem))
            else:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            return ctx.wrap_socket(sock, server_hostname=host)
        # QuecPython ussl: wrap_socket(sock, server_hostname, cert, key); cert is the CA PEM
        # for one-way authentication (see boards/quecpython_ec200u/README.md: unverified).
        if self.ca_pem is not None:
            ca = self.ca_pem.decode() if isinstance(self.ca_pem, bytes) else self.ca_pem
            return ssl.wrap_socket(sock, server_hostname=host, cert=ca)
        return ssl.wrap_socket(sock, server_hostname=host)


def socket_network(base_url, ca_pem=None, timeout_s=CONNECT_TIMEOUT_S, modules=None,
                   log=print, idle=None, **http_options):
    """An ipa_core.http.HttpClient for base_url ("https://host[:port]") over sockets.

    timeout_s bounds each connect and each read; idle (a watchdog feed) runs
    before every read. http_options go to HttpClient (max_body, headers, ...).
    Any error while connecting or in TLS becomes a TransportError naming the host.
    """
    from ipa_core.http import HttpClient

    scheme, host, port, prefix = split_url(base_url)
    if prefix:
        raise ValueError("base URL %r: a path prefix is not supported here" % base_url)
    conn = Connector(scheme, host, port, ca_pem, timeout_s, modules, log, idle)
    default = 443 if scheme == "https" else 80
    host_field = host if port == default else "%s:%d" % (host, port)

    def open_stream():
        try:
            return conn()
        except (OSError, ValueError) as e:
            raise TransportError("connecting to %s:%d failed: %s" % (host, port, e))

    return HttpClient(open_stream, host_field, **http_options)
