"""ESipa / ES9+ over HTTPS on CPython: the network object `post(path, body, content_type)`.

SGP.32 ESipa HTTPS binding: `POST https://<eimFqdn>/gsma/rsp2/asn1` with
`Content-Type: application/x-gsma-rsp-asn1`, `X-Admin-Protocol:
gsma/rsp/v2.1.0`, `User-Agent: gsma-rsp-ipad` (the JSON binding posts to
`/gsma/rsp2/esipa/<function>`). "Some eIMs expect one kept-alive connection
for a whole procedure": one TLS connection is kept and reused, and reopened
once when the server closed it in between (ipa_core.http.HttpClient does
the HTTP framing and that rule, so the core framing runs here too).

Trust (what authenticates the server), in order:
  trust       eIM Configuration Data `trustedPublicKeyDataTls` [6]:
              trustedCertificateTls (a Certificate, "either the certificate of
              eIM ... or the certificate of the CA") -> trust anchor, chain and
              host name verified by OpenSSL; a trusted eIM certificate is an
              anchor by itself (partial chain);
              trustedEimPkTls (SubjectPublicKeyInfo, or a raw EC point) ->
              pin: the server's leaf certificate key must equal it, and the
              host name must match the certificate (checked here).
  ca_file     a PEM CA bundle.
  (none)      the system CAs.
`pinned_key` adds a pin to any of these. Plain `http://` only with
`allow_http=True` (logs "plain HTTP: lab use only").

Waits: `timeout` bounds the connect and every read/write; `request_timeout`
(default 4 x timeout) bounds one whole post, so a server dripping a byte at
a time cannot hold the IPA. A streamed answer (post_stream: the bound profile
package) gets request_timeout plus one second for every `min_stream_rate`
bytes that came (default 256 B/s): a package at the pace of the slowest link
is read to its end, a drip is still cut off after about request_timeout. DNS
lookups wait as long as the system resolver does. Every failure is an ipa_core.errors error (TransportError naming what
failed, TimeoutError_, ProtocolError for broken or oversized HTTP), never a
raw socket/ssl exception.

`post_stream` returns the answer's body as a reader (ipa_core.stream
contract) for the bound profile package: read from the connection as the
IPA asks for it, one STORE DATA segment at a time (issue 8 heap budget).
`max_body` bounds a whole answer (post); a streamed one has no whole-body
cap unless `max_stream` is given: the IPA bounds the package it reads
(setting max_package, ipa_core.json_stream / es10_download.BppSegments).

`bytes_sent` / `bytes_received` count every byte on the TCP socket (TLS
records and handshakes included), for benches.

Resumption: with a `session_cache` (a dict shared across HttpsNetworks, e.g.
ipa_host.runner.TLS_SESSIONS for the polls of `ipa run`) the TLS session of
a closed connection (a TLS 1.3 ticket, RFC 8446 4.6.1, or a TLS 1.2 session
ID / ticket) is kept in memory with the SSLContext it came from (CPython's
ssl refuses a session from another context), and the next connection to
the same server with the same trust offers it: an abbreviated handshake
without the certificate flight. Sessions are tried for at most
`SESSION_MAX_AGE` seconds. They live in memory only: CPython's
ssl.SSLSession cannot be serialised, so a new process starts with a full
handshake. `handshakes_full` / `handshakes_resumed` count both.
"""

import ipaddress
import logging
import socket
import ssl
import time
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ipa_core import http, tlv
from ipa_core.errors import IpaError, TimeoutError_, TransportError

log = logging.getLogger(__name__)

ASN1_PATH = "/gsma/rsp2/asn1"
ASN1_CONTENT_TYPE = "application/x-gsma-rsp-asn1"
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
ESIPA_HEADERS = {"X-Admin-Protocol": "gsma/rsp/v2.1.0", "User-Agent": "gsma-rsp-ipad"}

_RECV = 16384
MIN_STREAM_RATE = 256  # B/s a streamed answer earns time at: NB-IoT in deep coverage
SESSION_MAX_AGE = 3600.0  # seconds a kept TLS session is offered (servers keep tickets ~2 h)
MAX_SESSIONS = 16  # sessions kept in one session cache
# X509_V_FLAG_PARTIAL_CHAIN; ssl.VERIFY_X509_PARTIAL_CHAIN exists from Python 3.10.
_PARTIAL_CHAIN = getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0x80000)


# ------------------------------------------------------------------ trust

def parse_trust(data):
    """Classify trust material: ("certificate", x509.Certificate) | ("key", pin).

    Accepts trustedPublicKeyDataTls as the [6] (A6) TLV or its content:
    a DER Certificate, a DER SubjectPublicKeyInfo, a raw EC point (04|X|Y or
    02/03|X), or PEM of the first two. A pin is ("spki", der) or ("point", bytes).
    """
    if isinstance(data, str):
        data = data.encode()
    data = bytes(data)
    if data[:1] == b"\xa6":
        try:
            data = tlv.decode(data).value
        except IpaError as e:
            raise ValueError("trustedPublicKeyDataTls [6]: %s" % e)
    if data.startswith(b"-----BEGIN"):
        if b"CERTIFICATE" in data.split(b"\n", 1)[0]:
            return "certificate", x509.load_pem_x509_certificate(data)
        key = serialization.load_pem_public_key(data)
        return "key", ("spki", _spki(key))
    if data[:1] == b"\x30":
        try:
            return "certificate", x509.load_der_x509_certificate(data)
        except ValueError:
            pass
        try:
            return "key", ("spki", _spki(serialization.load_der_public_key(data)))
        except (ValueError, TypeError):
            pass
        raise ValueError("TLS trust data: expected a DER Certificate or SubjectPublicKeyInfo,"
                         " got a SEQUENCE that is neither (%s)" % tlv.hexs(data))
    if (data[:1] == b"\x04" and len(data) in (65, 97, 133)) or \
            (data[:1] in (b"\x02", b"\x03") and len(data) in (33, 49, 67)):
        return "key", ("point", data)
    raise ValueError("TLS trust data: expected a Certificate, SubjectPublicKeyInfo or EC point,"
                     " got %d bytes %s" % (len(data), tlv.hexs(data)))


def _spki(key):
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_matches(cert, pin):
    kind, want = pin
    key = cert.public_key()
    if kind == "spki":
        return _spki(key) == want
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    fmt = (serialization.PublicFormat.UncompressedPoint if want[:1] == b"\x04"
           else serialization.PublicFormat.CompressedPoint)
    return key.public_bytes(serialization.Encoding.X962, fmt) == want


def _dns_match(pattern, name):
    """RFC 6125 6.4: case-insensitive; a wildcard only as the whole leftmost label."""
    p = pattern.lower().rstrip(".")
    n = name.lower().rstrip(".")
    if p.startswith("*."):
        head, _, rest = n.partition(".")
        return bool(head) and rest == p[2:] and "*" not in rest
    return "*" not in p and p == n


def hostname_matches(cert, name):
    """Does `cert` name `name` (DNS name or IP literal)? SAN first, CN only without SAN."""
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if ip is not None:
        return san is not None and ip in san.get_values_for_type(x509.IPAddress)
    if san is not None:
        names = san.get_values_for_type(x509.DNSName)
    else:
        names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return any(_dns_match(p, name) for p in names)


def _describe(cert):
    return cert.subject.rfc4514_string()


# ---------------------------------------------------------------- streams

class _Wire:
    """The TCP socket: per-call timeouts from the network's deadline, byte counters."""

    def __init__(self, sock, net):
        self.sock = sock
        self.net = net

    def _io(self, doing, fn, *args):
        t = self.net._wait(doing)
        try:
            self.sock.settimeout(t)
            return fn(*args)
        except socket.timeout:
            if t < self.net.timeout:  # the wait was cut short by the whole-request deadline
                raise TimeoutError_("%s %s: %s" % (doing, self.net.where, self.net._over()))
            raise TimeoutError_("%s %s: no progress within %.1f s" % (doing, self.net.where, t))
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as e:
            raise http.ConnectionClosed("%s %s: %s" % (doing, self.net.where, e))
        except OSError as e:
            raise TransportError("%s %s failed: %s" % (doing, self.net.where, e))

    def send(self, data, doing="sending to"):
        self._io(doing, self.sock.sendall, data)
        self.net.bytes_sent += len(data)

    def recv(self, n, doing="waiting for the answer from"):
        data = self._io(doing, self.sock.recv, n)
        self.net.bytes_received += len(data)
        return data

    # the stream interface of ipa_core.http, for plain HTTP
    def read(self, n):
        return self.recv(n)

    def write(self, data):
        self.send(data)
        return len(data)

    def close(self):
        self.sock.close()


class _Tls:
    """TLS over a _Wire through memory BIOs, so every record byte is counted."""

    def __init__(self, wire, ctx, sni, session=None):
        self.wire = wire
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=False, server_hostname=sni,
                                session=session)
        self.doing = "TLS handshake with"

    def _flush(self):
        data = self.out.read()
        if data:
            self.wire.send(data, self.doing)

    def _pump(self, fn, *args):
        while True:
            try:
                r = fn(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.wire.recv(_RECV, self.doing)
                if data:
                    self.inc.write(data)
                else:
                    self.inc.write_eof()
                continue
            self._flush()
            return r

    def handshake(self):
        where = self.wire.net.where
        try:
            self._pump(self.obj.do_handshake)
        except ssl.SSLCertVerificationError as e:
            raise TransportError("TLS certificate verification of %s failed: %s (trusted: %s)"
                                 % (where, e.verify_message or e, self.wire.net.trust_info))
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            raise TransportError("TLS handshake with %s: the server closed the connection" % where)
        except ssl.SSLError as e:
            raise TransportError("TLS handshake with %s failed: %s" % (where, e.reason or e))
        self.doing = "waiting for the answer from"

    def peer_certificate(self):
        der = self.obj.getpeercert(binary_form=True)
        if not der:
            raise TransportError("TLS with %s: the server sent no certificate"
                                 % self.wire.net.where)
        try:
            return x509.load_der_x509_certificate(der)
        except ValueError as e:
            raise TransportError("TLS with %s: the server certificate does not parse: %s"
                                 % (self.wire.net.where, e))

    def read(self, n):
        self.doing = "waiting for the answer from"
        try:
            return self._pump(self.obj.read, n)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            # close_notify, or a TCP close without it (common): EOF. The HTTP
            # framing tells a complete answer from a cut one.
            return b""
        except ssl.SSLError as e:
            raise TransportError("TLS error reading from %s: %s"
                                 % (self.wire.net.where, e.reason or e))

    def write(self, data):
        self.doing = "sending to"
        mv = memoryview(data)
        try:
            while len(mv):
                mv = mv[self._pump(self.obj.write, mv):]
        except ssl.SSLError as e:
            raise TransportError("TLS error sending to %s: %s"
                                 % (self.wire.net.where, e.reason or e))
        return len(data)

    def close(self):
        # Best effort close_notify, then close: the connection is being
        # dropped either way, so failures here lose nothing.
        self.wire.net._keep_session(self.obj)
        try:
            self.obj.unwrap()
        except (ssl.SSLError, ValueError):
            pass
        try:
            data = self.out.read()
            if data:
                self.wire.sock.settimeout(1)
                self.wire.sock.sendall(data)
                self.wire.net.bytes_sent += len(data)
        except OSError:
            pass
        self.wire.close()


# ---------------------------------------------------------------- network

class _TimedReader:
    """A streamed body whose reads share one budget of network time: request_timeout, plus
    1 s per min_stream_rate bytes received (the caller's work between reads not counted)."""

    def __init__(self, net, body, spent):
        self.net = net
        self.body = body
        self.spent = spent
        self.got = 0
        self.length = body.length

    def read(self, n):
        net = self.net
        t0 = time.monotonic()
        budget = net.request_timeout + self.got / net.min_stream_rate
        net._deadline = t0 + max(budget - self.spent, 0.001)
        net._budget = (budget, self.got)
        try:
            data = self.body.read(n)
            self.got += len(data)
            return data
        finally:
            net._deadline = net._budget = None
            self.spent += time.monotonic() - t0

    def close(self):
        net = self.net
        net._deadline = time.monotonic() + net.timeout  # skipping the rest: one more wait at most
        try:
            self.body.close()
        finally:
            net._deadline = None


class HttpsNetwork:
    """The IPA's way to one server (eIM over ESipa, or an SM-DP+ over ES9+).

    `post(path, body, content_type, headers=None) -> (status, body)`; `path`
    is appended to the path of `base_url`. See the module docstring for
    trust, timeouts and errors. Attributes after a post: `status`,
    `response_headers`; counters `connections`, `bytes_sent`,
    `bytes_received`.
    """

    def __init__(self, base_url, trust=None, ca_file=None, pinned_key=None, timeout=30,
                 allow_http=False, server_hostname=None, max_body=http.MAX_BODY,
                 request_timeout=None, headers=None, max_stream=None, session_cache=None,
                 min_stream_rate=MIN_STREAM_RATE):
        u = urlsplit(base_url)
        if u.scheme not in ("https", "http"):
            raise ValueError("base URL: expected https://host[:port][/path], got %r" % base_url)
        if not u.hostname:
            raise ValueError("base URL %r has no host" % base_url)
        if u.query or u.fragment or u.username or u.password:
            raise ValueError("base URL %r: no query, fragment or credentials allowed" % base_url)
        self.tls = u.scheme == "https"
        if not self.tls:
            if not allow_http:
                raise ValueError("plain http:// refused for %s: the eIM must be reached over"
                                 " HTTPS (allow_http=True is for lab use only)" % base_url)
            log.warning("plain HTTP: lab use only (%s): no server authentication, no privacy",
                        base_url)
        self.host = u.hostname
        try:
            port = u.port
        except ValueError as e:
            raise ValueError("base URL %r: %s" % (base_url, e))
        default_port = 443 if self.tls else 80
        self.port = port or default_port
        self.base_path = u.path.rstrip("/")
        self.server_hostname = server_hostname or self.host
        self.timeout = float(timeout)
        self.request_timeout = float(request_timeout or 4 * self.timeout)
        if not min_stream_rate or min_stream_rate <= 0:
            raise ValueError("min_stream_rate: expected bytes per second above 0, got %r"
                             % (min_stream_rate,))
        self.min_stream_rate = float(min_stream_rate)
        self._budget = None  # (seconds, bytes so far) while a streamed answer is read
        shown = self.host if ":" not in self.host else "[%s]" % self.host
        self.where = "%s:%d" % (shown, self.port)
        if self.server_hostname != self.host:
            self.where += " (%s)" % self.server_hostname
        host_field = self.server_hostname if server_hostname else shown
        if self.port != default_port:
            host_field += ":%d" % self.port
        self.bytes_sent = 0
        self.bytes_received = 0
        self._deadline = None
        self._pin = None
        self._manual_hostname = False
        self.trust_info = "plain HTTP" if not self.tls else "system CAs"
        self.session_cache = session_cache
        self.handshakes_full = self.handshakes_resumed = 0
        if self.tls:
            self.ctx = self._context(trust, ca_file, pinned_key)
            self._session_key = (self.host, self.port, self.server_hostname, self.trust_info,
                                 repr(trust), repr(pinned_key))
        elif trust is not None or ca_file or pinned_key is not None:
            raise ValueError("TLS trust given for a plain http:// URL %s" % base_url)
        hdrs = http.merge_headers(ESIPA_HEADERS, headers or {})  # the caller's win
        self._client = http.HttpClient(self._open, host_field, headers=hdrs, max_body=max_body,
                                       max_stream=max_stream)

    def _context(self, trust, ca_file, pinned_key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        anchors = []
        pin = None
        if trust is not None:
            kind, val = parse_trust(trust)
            if kind == "certificate":
                ctx.load_verify_locations(
                    cadata=val.public_bytes(serialization.Encoding.DER))
                # SGP.32: the trusted certificate may be the eIM's own: an anchor by itself.
                ctx.verify_flags |= _PARTIAL_CHAIN
                anchors.append("certificate %s" % _describe(val))
            else:
                pin = val
        if pinned_key is not None:
            kind, val = parse_trust(pinned_key)
            if kind != "key":
                raise ValueError("pinned_key: expected a public key or EC point, got a certificate")
            if pin is not None and pin != val:
                raise ValueError("pinned_key differs from the public key given as trust")
            pin = val
        if ca_file:
            try:
                ctx.load_verify_locations(cafile=ca_file)
            except (OSError, ssl.SSLError) as e:
                raise ValueError("CA file %s: expected PEM certificates, could not load: %s"
                                 % (ca_file, e))
            anchors.append("CA file %s" % ca_file)
        if pin is not None:
            anchors.append("pinned %s key" % ("SubjectPublicKeyInfo" if pin[0] == "spki"
                                              else "EC point"))
            if len(anchors) == 1:
                # Only a key is trusted: no chain to verify, so OpenSSL checks
                # nothing and we check the key and the host name ourselves.
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                self._manual_hostname = True
        elif not anchors:
            ctx.load_default_certs()
            anchors.append("system CAs")
        self._pin = pin
        self.trust_info = ", ".join(anchors)
        return ctx

    # -- the per-post deadline, used by every wait
    def _wait(self, doing):
        if self._deadline is None:
            return self.timeout
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError_("%s %s: %s" % (doing, self.where, self._over()))
        return min(self.timeout, left)

    def _over(self):
        """What the whole-request bound that just ran out was, in words."""
        if self._budget is None:
            return "the request took longer than %.1f s in all" % self.request_timeout
        budget, got = self._budget
        return ("the answer took longer than %.1f s in all (%d bytes came; a streamed answer "
                "gets %.1f s plus 1 s per %d bytes)" % (budget, got, self.request_timeout,
                                                         self.min_stream_rate))

    def _open(self):
        t = self._wait("connecting to")
        try:
            sock = socket.create_connection((self.host, self.port), timeout=t)
        except socket.gaierror as e:
            raise TransportError("DNS lookup of %s failed: %s" % (self.host, e))
        except ConnectionRefusedError:
            raise TransportError("connecting to %s: connection refused" % self.where)
        except socket.timeout:
            raise TimeoutError_("connecting to %s: no answer within %.1f s" % (self.where, t))
        except OSError as e:
            raise TransportError("connecting to %s failed: %s" % (self.where, e))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            wire = _Wire(sock, self)
            if not self.tls:
                return wire
            session = self._cached_session()  # first: it may switch self.ctx to the session's
            stream = _Tls(wire, self.ctx, self.server_hostname, session)
            stream.handshake()
            if stream.obj.session_reused:
                self.handshakes_resumed += 1
                log.debug("TLS session with %s resumed", self.where)
            else:
                self.handshakes_full += 1
            if self._pin is not None or self._manual_hostname:
                self._check_peer(stream.peer_certificate())
            return stream
        except BaseException:
            sock.close()
            raise

    # -- resumption (module docstring)
    def _cached_session(self):
        """The session kept for this server, if fresh; adopts the context it belongs to."""
        if self.session_cache is None:
            return None
        entry = self.session_cache.get(self._session_key)
        if entry is None or (time.monotonic() - entry["time"]
                             > min(SESSION_MAX_AGE, entry["session"].timeout)):
            return None
        self.ctx = entry["ctx"]  # same trust (the key), and ssl wants the session's context
        return entry["session"]

    def _keep_session(self, obj):
        if self.session_cache is None:
            return
        try:
            session = obj.session
        except (ssl.SSLError, ValueError):
            return
        if session is None or not (session.has_ticket or session.id):
            return
        if len(self.session_cache) >= MAX_SESSIONS and self._session_key not in self.session_cache:
            oldest = min(self.session_cache, key=lambda k: self.session_cache[k]["time"])
            del self.session_cache[oldest]
        self.session_cache[self._session_key] = {"ctx": self.ctx, "session": session,
                                                 "time": time.monotonic()}

    def _check_peer(self, cert):
        if self._pin is not None and not _key_matches(cert, self._pin):
            got = _spki(cert.public_key())
            raise TransportError("TLS public key pin mismatch for %s: the server certificate %s"
                                 " has key ...%s, expected the pinned key ...%s"
                                 % (self.where, _describe(cert), tlv.hexs(got[-16:]),
                                    tlv.hexs(self._pin[1][-16:])))
        if self._manual_hostname and not hostname_matches(cert, self.server_hostname):
            raise TransportError("TLS hostname mismatch: the certificate of %s (%s) is not valid"
                                 " for %r" % (self.where, _describe(cert), self.server_hostname))

    # -- the network interface
    def post(self, path, body, content_type, headers=None):
        """POST to base path + `path`; return (status, body). Any HTTP status is returned."""
        if not path.startswith("/"):
            raise ValueError("path: expected one starting with '/', got %r" % path)
        self._deadline = time.monotonic() + self.request_timeout
        try:
            return self._client.post(self.base_path + path, body, content_type, headers)
        finally:
            self._deadline = None

    def post_stream(self, path, body, content_type, headers=None):
        """post() with the answer's body as a reader (ipa_core.stream contract): (status, reader).

        The body is read from the connection only as the caller asks (the
        bound profile package, one STORE DATA segment at a time). Waits:
        `timeout` per network read, and `request_timeout` bounds the time
        spent waiting on the network for the whole answer (head and body,
        summed; the caller's own work in between is not counted). Close the
        reader or read it to its end before the next request.
        """
        if not path.startswith("/"):
            raise ValueError("path: expected one starting with '/', got %r" % path)
        t0 = time.monotonic()
        self._deadline = t0 + self.request_timeout
        try:
            status, reader = self._client.post_stream(self.base_path + path, body, content_type,
                                                      headers)
        finally:
            self._deadline = None
        return status, _TimedReader(self, reader, time.monotonic() - t0)

    @property
    def status(self):
        return self._client.status

    @property
    def response_headers(self):
        return self._client.response_headers

    @property
    def connections(self):
        """TCP connections opened so far (1 for a whole procedure when kept alive)."""
        return self._client.connections

    def close(self):
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
