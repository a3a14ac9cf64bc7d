"""ESipa over CoAP/DTLS on CPython: `CoapsNetwork.post(path, body, content_type)`.

SGP.32 eimRetrieveCoaps / ipaRetrieveCoaps: the ASN.1 messages of the HTTPS
binding, POSTed to Uri-Path `gsma/rsp2/asn1` with CoAP (RFC 7252, block-wise
RFC 7959: ipa_core.coap does the CoAP part) over DTLS 1.2 (RFC 6347).
DTLS is python-mbedtls (PyPI `python-mbedtls`, the `host` extra), driven
through memory buffers over our own UDP socket so that every datagram is
counted and every wait is ours.

Trust (what authenticates the eIM) is the same as HttpsNetwork's
(docs/network.md "Trust"): `trust` = trustedPublicKeyDataTls (a CA
certificate -> chain verified by mbedTLS; the eIM's own certificate -> it
must be exactly that certificate, dates checked; a public key -> pin),
`ca_file` a PEM bundle, else the system CAs; `pinned_key` adds a pin. The
host name (or `server_hostname`) is always checked against the certificate
here (mbedTLS 2.28 does not match IP addresses); it is sent as SNI when it
is a DNS name.

Resumption: python-mbedtls 2.10 has no API for TLS session resumption
(its TLSSession is not connected to a connection), but it does serialize a
whole DTLS connection (mbedtls_ssl_context_save). With a `session_cache`
(a dict shared across connections) `close()` keeps the established
association (its state and our UDP port) instead of ending it, and the next
DtlsDatagram to the same server and trust restores it: no handshake at all.
Before use it is checked with a CoAP ping (RFC 7252 4.3: an empty CON,
answered by RST); if the server forgot the association (restart, idle
expiry) the ping gets no answer within `probe_timeout` and a full handshake
follows. `handshakes_full` / `handshakes_resumed` count both. After a NAT
rebinding the restored association comes from a new source port: only an
eIM that finds it anyway (DTLS Connection ID, or the simulator's address
lookup) answers the ping; docs/network.md "DTLS and NAT rebinding".

Counters: `bytes_sent` / `bytes_received` are the UDP payload bytes (DTLS
records: handshakes, certificates, record overhead, the CoAP ping), like
HttpsNetwork's TCP payload count; `datagrams_sent` / `datagrams_received`
give the per-datagram UDP/IP header overhead (8 + 20 or 40 bytes each).

Errors: TransportError naming what failed (DNS, ICMP unreachable,
handshake, verification, pin, host name, alerts), TimeoutError_ (handshake
or CoAP exchange), ProtocolError (broken CoAP); ValueError when the object
is made with a bad URL or trust data. No raw socket/mbedTLS exception
leaves this module.
"""

import datetime
import hashlib
import logging
import socket
import time
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ipa_core import coap
from ipa_core.errors import IpaError, TimeoutError_, TransportError
from ipa_host.net.https import _describe, _key_matches, _spki, hostname_matches, parse_trust

log = logging.getLogger(__name__)

COAPS_PORT = 5684  # RFC 7252 12.7
COAP_PORT = 5683
INSTALL_HINT = "CoAP/DTLS needs python-mbedtls, the coap extra: pip install 'ipa-iot[coap]'"
MTU = 1280  # bytes per datagram we send: the IPv6 minimum, safe on cellular links
_RECV = 65536
RESUME_MAX_AGE = 240.0  # seconds a kept association is tried (libcoap forgets idle ones at 300)
MAX_CACHE = 16  # associations kept in one session cache


def _mbedtls():
    try:
        from mbedtls import exceptions, tls
        from mbedtls import x509 as mx
    except ImportError as e:  # one line on the terminal, like a missing pyscard
        raise TransportError("%s (%s)" % (INSTALL_HINT, e))
    return tls, mx, exceptions


def split_records(data):
    """DTLS records (RFC 6347 4.1: 13-byte header, 2-byte length at 11) of a byte string."""
    out = []
    pos = 0
    while pos + 13 <= len(data):
        n = 13 + ((data[pos + 11] << 8) | data[pos + 12])
        out.append(data[pos:pos + n])
        pos += n
    if pos < len(data):
        out.append(data[pos:])
    return out


def read_records(buf, tls, size=_RECV):
    """The application records a python-mbedtls DTLS buffer holds, read until it wants more
    (it answers b"" for close_notify too)."""
    out = []
    while True:
        try:
            rec = buf.read(size)
        except (tls.WantReadError, tls.WantWriteError):
            break
        if not rec:
            break
        out.append(rec)
    return out


def feed_records(buf, data, tls, size=_RECV):
    """Feed one datagram to an established association -> its application records. A
    datagram may carry several records (RFC 6347 4.1.1); python-mbedtls 2.10 reads only
    the first of what it is given, so they go in one at a time."""
    out = []
    for piece in split_records(data):
        buf.receive_from_network(piece)
        out.extend(read_records(buf, tls, size))
    return out


def pack_datagrams(data, mtu=MTU):
    """Whole DTLS records packed into datagrams of at most `mtu` bytes (a record larger than
    that goes alone: mbedTLS fragments handshake messages to the MTU it was given)."""
    out = []
    cur = b""
    for rec in split_records(data):
        if cur and len(cur) + len(rec) > mtu:
            out.append(cur)
            cur = b""
        cur += rec
    if cur:
        out.append(cur)
    return out


def _is_ip(host):
    try:
        import ipaddress
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _not_valid(cert):
    """Why `cert` is outside its validity period now, or None."""
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    except AttributeError:  # cryptography < 42
        nb = cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)
        na = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    if now < nb:
        return "certificate is not yet valid"
    if now > na:
        return "certificate has expired"
    return None


def _recv_counted(dgram, wait_s, proto):
    """One datagram from dgram.sock within wait_s (None when none came), counted on dgram;
    socket failures become TransportErrors naming the peer."""
    dgram.sock.settimeout(wait_s)
    try:
        data = dgram.sock.recv(_RECV)
    except socket.timeout:
        return None
    except ConnectionRefusedError:
        raise TransportError("%s to %s: port unreachable (no %s server there)"
                             % (proto, dgram.where, "CoAPS" if proto == "DTLS" else "CoAP"))
    except OSError as e:
        raise TransportError("receiving from %s failed: %s" % (dgram.where, e))
    dgram.bytes_received += len(data)
    dgram.datagrams_received += 1
    return data


class UdpDatagram:
    """dgram interface over a connected UDP socket (plain coap://, lab use), with counters."""

    def __init__(self, host, port, timeout=30):
        self.where = "%s:%d" % (host, port)
        self.bytes_sent = self.bytes_received = 0
        self.datagrams_sent = self.datagrams_received = 0
        self.handshakes_full = self.handshakes_resumed = 0
        self.sock = _connect_udp(host, port, self.where)

    def send(self, data):
        try:
            self.sock.send(data)
        except OSError as e:
            raise TransportError("sending to %s failed: %s" % (self.where, e))
        self.bytes_sent += len(data)
        self.datagrams_sent += 1

    def recv(self, timeout_ms):
        return _recv_counted(self, max(timeout_ms, 1) / 1000.0, "CoAP")

    def close(self):
        self.sock.close()


def _connect_udp(host, port, where, local=None):
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise TransportError("DNS lookup of %s failed: %s" % (host, e))
    family, _t, _p, _c, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if local is not None:
            sock.bind(local)
        sock.connect(addr)
    except OSError as e:
        sock.close()
        raise TransportError("UDP to %s failed: %s" % (where, e))
    return sock


class DtlsDatagram:
    """A DTLS 1.2 client association with the dgram interface of ipa_core.coap:
    `send(bytes)`, `recv(timeout_ms) -> bytes | None`, `close()`.

    The handshake runs on the first send (bounded by `handshake_timeout`,
    default `timeout`); see the module docstring for trust, resumption and
    counters. `server_hostname`: the name checked (and sent as SNI) when
    connecting to an address under another name.
    """

    def __init__(self, host, port, trust=None, ca_file=None, pinned_key=None, timeout=30,
                 server_hostname=None, session_cache=None, handshake_timeout=None, mtu=MTU,
                 probe_timeout=2.0, resume_max_age=RESUME_MAX_AGE):
        self.tls, self.mx, self.exc = _mbedtls()
        self.host = host
        self.port = int(port)
        self.server_hostname = server_hostname or host
        shown = host if ":" not in host else "[%s]" % host
        self.where = "%s:%d" % (shown, self.port)
        if self.server_hostname != host:
            self.where += " (%s)" % self.server_hostname
        self.timeout = float(timeout)
        self.handshake_timeout = float(handshake_timeout or timeout)
        self.mtu = mtu
        self.probe_timeout = probe_timeout
        self.resume_max_age = resume_max_age
        self.session_cache = session_cache
        self.bytes_sent = self.bytes_received = 0
        self.datagrams_sent = self.datagrams_received = 0
        self.handshakes_full = self.handshakes_resumed = 0
        self.sock = None
        self.buf = None
        self._pending = []  # application records decrypted during the handshake or the probe
        self._config(trust, ca_file, pinned_key)

    # ---- trust -> mbedTLS configuration and our own checks
    def _config(self, trust, ca_file, pinned_key):
        tls, mx = self.tls, self.mx
        anchors, certs = [], []
        self._pin = None
        self._leaf = None  # trusted eIM certificate (not a CA): the peer must be exactly it
        fp = hashlib.sha256()
        if trust is not None:
            kind, val = parse_trust(trust)
            if kind == "certificate":
                der = val.public_bytes(serialization.Encoding.DER)
                fp.update(der)
                if _is_ca(val):
                    certs.append(mx.CRT.from_DER(der))
                else:
                    self._leaf = val
                anchors.append("certificate %s" % _describe(val))
            else:
                self._pin = val
        if pinned_key is not None:
            kind, val = parse_trust(pinned_key)
            if kind != "key":
                raise ValueError("pinned_key: expected a public key or EC point, got a certificate")
            if self._pin is not None and self._pin != val:
                raise ValueError("pinned_key differs from the public key given as trust")
            self._pin = val
        if ca_file:
            try:
                with open(ca_file, "rb") as f:
                    pem = f.read()
                bundle = [x509.load_pem_x509_certificate(b"-----BEGIN" + part)
                          for part in pem.split(b"-----BEGIN")[1:]]
            except (OSError, ValueError) as e:
                raise ValueError("CA file %s: expected PEM certificates, could not load: %s"
                                 % (ca_file, e))
            if not bundle:
                raise ValueError("CA file %s: expected PEM certificates, found none" % ca_file)
            for c in bundle:
                der = c.public_bytes(serialization.Encoding.DER)
                fp.update(der)
                certs.append(mx.CRT.from_DER(der))
            anchors.append("CA file %s" % ca_file)
        if self._pin is not None:
            fp.update(repr(self._pin).encode())
            anchors.append("pinned %s key" % ("SubjectPublicKeyInfo" if self._pin[0] == "spki"
                                              else "EC point"))
        store = None
        if certs:
            store = tls.TrustStore(certs)
        elif self._leaf is None and self._pin is None:
            store = tls.TrustStore.system()
            anchors.append("system CAs")
        self.trust_info = ", ".join(anchors)
        self._fingerprint = fp.hexdigest()
        conf = tls.DTLSConfiguration(
            validate_certificates=store is not None, trust_store=store,
            lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
            highest_supported_version=tls.DTLSVersion.DTLSv1_2,
            handshake_timeout_min=1.0, handshake_timeout_max=self.handshake_timeout)
        self.ctx = tls.ClientContext(conf)

    # ---- the dgram interface
    def send(self, data):
        self._ensure_open()
        try:
            self.buf.write(bytes(data))
        except self.exc.TLSError as e:
            self._drop()
            raise TransportError("DTLS error sending to %s: %s" % (self.where, e))
        self._flush()

    def recv(self, timeout_ms):
        self._ensure_open()
        if self._pending:
            return self._pending.pop(0)
        deadline = time.monotonic() + max(timeout_ms, 1) / 1000.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = self._recv_wire(left)
            if data is None:
                return None
            got = self._decrypt(data)
            if got:
                self._pending.extend(got[1:])
                return got[0]

    def close(self):
        """Keep the association in the session cache (see the module docstring), or end it
        with close_notify."""
        if self.sock is None:
            return
        if self.session_cache is not None and self.buf is not None and self._established():
            try:
                state = self.buf.__getstate__()
                local = self.sock.getsockname()
            except (self.exc.TLSError, OSError, TypeError, ValueError) as e:
                log.debug("DTLS association with %s cannot be kept: %s", self.where, e)
            else:
                if len(self.session_cache) >= MAX_CACHE and self._key() not in self.session_cache:
                    oldest = min(self.session_cache, key=lambda k: self.session_cache[k]["time"])
                    del self.session_cache[oldest]
                self.session_cache[self._key()] = {"state": state, "local": local,
                                                   "time": time.monotonic()}
                self.sock.close()
                self.sock = self.buf = None
                return
        self._drop(notify=True)

    # ---- internals
    def _key(self):
        return (self.host, self.port, self.server_hostname, self._fingerprint)

    def _established(self):
        return self.buf._handshake_state is self.tls.HandshakeStep.HANDSHAKE_OVER

    def _drop(self, notify=False):
        if notify and self.buf is not None:
            try:
                self.buf.shutdown()
                self._flush(quiet=True)
            except (self.exc.TLSError, TransportError):
                pass
        if self.sock is not None:
            self.sock.close()
        self.sock = self.buf = None
        self._pending = []

    def _send_wire(self, data, quiet=False):
        try:
            self.sock.send(data)
        except OSError as e:
            if quiet:
                return
            raise TransportError("sending to %s failed: %s" % (self.where, e))
        self.bytes_sent += len(data)
        self.datagrams_sent += 1

    def _flush(self, quiet=False):
        out = self.buf.peek_outgoing(1 << 20)
        if out:
            self.buf.consume_outgoing(len(out))
            for d in pack_datagrams(out, self.mtu):
                self._send_wire(d, quiet)

    def _recv_wire(self, wait):
        return _recv_counted(self, max(wait, 0.001), "DTLS")

    def _decrypt(self, data):
        """Feed one datagram; its application records (a datagram may carry several)."""
        try:
            if self._established():
                out = feed_records(self.buf, data, self.tls)
            else:
                self.buf.receive_from_network(data)
                out = read_records(self.buf, self.tls)
        except self.exc.TLSError as e:
            self._drop()
            raise TransportError("DTLS error receiving from %s: %s" % (self.where, e))
        self._flush()  # a retransmitted server Finished may ask for ours again
        return out

    def _ensure_open(self):
        if self.sock is not None:
            return
        if self.session_cache is not None and self._resume():
            return
        self._handshake()

    def _resume(self):
        entry = self.session_cache.pop(self._key(), None)
        if entry is None or time.monotonic() - entry["time"] > self.resume_max_age:
            return False
        try:
            self.sock = _connect_udp(self.host, self.port, self.where, local=entry["local"])
        except TransportError as e:  # our old port is taken: start afresh
            log.debug("DTLS resumption with %s: %s", self.where, e)
            return False
        sni = None if _is_ip(self.server_hostname) else self.server_hostname
        try:
            self.buf = self.ctx.wrap_buffers(sni)
            self.buf.__setstate__(entry["state"])
        except (self.exc.TLSError, TypeError, ValueError) as e:
            log.debug("DTLS resumption with %s: state not restored: %s", self.where, e)
            self._drop()
            return False
        try:
            alive = self._probe()
        except TransportError as e:
            log.debug("DTLS resumption with %s: %s", self.where, e)
            alive = False
        if not alive:
            log.info("DTLS association with %s was forgotten by the server: new handshake",
                     self.where)
            self._drop()
            return False
        self.handshakes_resumed += 1
        return True

    def _probe(self):
        """CoAP ping (RFC 7252 4.3): an empty CON must come back as RST with its message id."""
        mid = int.from_bytes(coap.default_random(2), "big")
        ping = coap.Message(coap.CON, coap.EMPTY, mid).encode()
        deadline = time.monotonic() + self.probe_timeout
        for attempt in range(2):  # once more at half time: one datagram may be lost
            self.buf.write(ping)
            self._flush()
            until = min(deadline, time.monotonic() + self.probe_timeout / 2) if attempt == 0 \
                else deadline
            while True:
                left = until - time.monotonic()
                if left <= 0:
                    break
                data = self._recv_wire(left)
                if data is None:
                    break
                for rec in self._decrypt(data):
                    try:
                        m = coap.decode(rec)
                    except IpaError:
                        continue
                    if m.type in (coap.RST, coap.ACK) and m.mid == mid:
                        return True
        return False

    def _handshake(self):
        tls = self.tls
        self.sock = _connect_udp(self.host, self.port, self.where)
        sni = None if _is_ip(self.server_hostname) else self.server_hostname
        self.buf = self.ctx.wrap_buffers(sni)
        try:
            self.buf.setmtu(self.mtu)
        except (AttributeError, OverflowError, self.exc.TLSError):
            pass
        deadline = time.monotonic() + self.handshake_timeout
        try:
            while not self._established():
                try:
                    self.buf.do_handshake()
                    continue
                except tls.WantWriteError:
                    self._flush()
                    continue
                except tls.WantReadError:
                    self._flush()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError_("DTLS handshake with %s: not complete within %.1f s"
                                        % (self.where, self.handshake_timeout))
                # short waits: mbedTLS retransmits its flight when do_handshake() runs late
                data = self._recv_wire(min(left, 0.25))
                if data is not None:
                    self.buf.receive_from_network(data)
        except self.exc.TLSError as e:
            self._drop()
            text = str(e)
            if "X509" in text or "verif" in text.lower():
                raise TransportError("DTLS certificate verification of %s failed: %s "
                                     "(trusted: %s)" % (self.where, text, self.trust_info))
            raise TransportError("DTLS handshake with %s failed: %s" % (self.where, text))
        except BaseException:
            self._drop()
            raise
        try:
            self._check_peer()
        except BaseException:
            self._drop(notify=True)
            raise
        self.handshakes_full += 1
        log.debug("DTLS with %s: %s", self.where, self.buf.cipher())

    def _check_peer(self):
        der = self.buf.getpeercert(binary_form=True)
        if not der:
            raise TransportError("DTLS with %s: the server sent no certificate" % self.where)
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as e:
            raise TransportError("DTLS with %s: the server certificate does not parse: %s"
                                 % (self.where, e))
        if self._leaf is not None:
            if der != self._leaf.public_bytes(serialization.Encoding.DER):
                raise TransportError("DTLS certificate verification of %s failed: the server "
                                     "certificate %s is not the trusted eIM certificate "
                                     "(trusted: %s)" % (self.where, _describe(cert),
                                                        self.trust_info))
            bad = _not_valid(cert)
            if bad:
                raise TransportError("DTLS certificate verification of %s failed: %s "
                                     "(trusted: %s)" % (self.where, bad, self.trust_info))
        if self._pin is not None and not _key_matches(cert, self._pin):
            got = _spki(cert.public_key())
            raise TransportError("DTLS public key pin mismatch for %s: the server certificate %s"
                                 " has key ...%s, expected the pinned key ...%s"
                                 % (self.where, _describe(cert), got[-16:].hex(),
                                    self._pin[1][-16:].hex()))
        if not hostname_matches(cert, self.server_hostname):
            raise TransportError("DTLS hostname mismatch: the certificate of %s (%s) is not "
                                 "valid for %r" % (self.where, _describe(cert),
                                                   self.server_hostname))


def _is_ca(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return cert.issuer == cert.subject  # an old self-signed root without the extension


class _Released:
    """A streamed answer whose transport failure also drops the association (as post does)."""

    def __init__(self, net, reader):
        self.net = net
        self.reader = reader
        self.length = reader.length

    def read(self, n):
        try:
            return self.reader.read(n)
        except TransportError:
            self.net._release(keep=False)
            raise

    def close(self):
        self.reader.close()


class CoapsNetwork:
    """The IPA's network object for an eIM reached over CoAP/DTLS (like HttpsNetwork).

    `post(path, body, content_type, headers=None) -> (status, body)` with the
    CoAP code mapped to an HTTP status (ipa_core.coap.http_status: 2.04 ->
    204 with the body, 2.05 -> 200). One DTLS association per procedure,
    reopened after a transport failure. `base_url` coaps://host[:port][/path]
    (default port 5684); coap:// (5683) only with `allow_plain` (lab use).
    Counters as DtlsDatagram's, summed over associations, plus `connections`.
    `block_size` (Block1 and Block2): 1024, the largest RFC 7959 block, whose message
    still fits the 1152 bytes RFC 7252 4.6 allows when the path MTU is unknown; a
    40 KB profile package then takes half the round trips it takes with 512.
    """

    def __init__(self, base_url, trust=None, ca_file=None, pinned_key=None, timeout=30,
                 allow_plain=False, server_hostname=None, block_size=1024, session_cache=None,
                 max_body=coap.MAX_BODY, request_timeout=None, **coap_kw):
        u = urlsplit(base_url)
        if u.scheme not in ("coaps", "coap"):
            raise ValueError("base URL: expected coaps://host[:port][/path], got %r" % base_url)
        if not u.hostname:
            raise ValueError("base URL %r has no host" % base_url)
        if u.query or u.fragment or u.username or u.password:
            raise ValueError("base URL %r: no query, fragment or credentials allowed" % base_url)
        self.secure = u.scheme == "coaps"
        if not self.secure:
            if not allow_plain:
                raise ValueError("plain coap:// refused for %s: the eIM must be reached over "
                                 "CoAP/DTLS (allow_plain=True is for lab use only)" % base_url)
            if trust is not None or ca_file or pinned_key is not None:
                raise ValueError("DTLS trust given for a plain coap:// URL %s" % base_url)
            log.warning("plain CoAP: lab use only (%s): no server authentication, no privacy",
                        base_url)
        else:
            _mbedtls()  # fail now, with the install hint, not at the first poll
        self.host = u.hostname
        try:
            self.port = u.port or (COAPS_PORT if self.secure else COAP_PORT)
        except ValueError as e:
            raise ValueError("base URL %r: %s" % (base_url, e))
        self.base_path = u.path.rstrip("/")
        self.timeout = float(timeout)
        self.request_timeout = float(request_timeout or 4 * self.timeout)
        self.block_size = block_size
        self.max_body = max_body
        self.coap_kw = coap_kw
        self.session_cache = session_cache
        self._dtls_kw = {"trust": trust, "ca_file": ca_file, "pinned_key": pinned_key,
                         "timeout": timeout, "server_hostname": server_hostname,
                         "session_cache": session_cache}
        if self.secure:  # check the trust material now (ValueError), not at the first post
            self.trust_info = DtlsDatagram(self.host, self.port, **self._dtls_kw).trust_info
        else:
            self.trust_info = "plain CoAP"
        self.server_hostname = server_hostname or self.host
        self._dgram = None
        self._client = None
        self._done = {"bytes_sent": 0, "bytes_received": 0, "datagrams_sent": 0,
                      "datagrams_received": 0, "handshakes_full": 0, "handshakes_resumed": 0}
        self.connections = 0
        self.status = None

    def _open(self):
        if self._client is not None:
            return self._client
        if self.secure:
            self._dgram = DtlsDatagram(self.host, self.port, **self._dtls_kw)
        else:
            self._dgram = UdpDatagram(self.host, self.port)
        self.connections += 1
        self._client = coap.CoapClient(
            self._dgram, host=None if _is_ip(self.server_hostname) else self.server_hostname,
            block_size=self.block_size, max_body=self.max_body,
            request_timeout_ms=int(self.request_timeout * 1000), **self.coap_kw)
        return self._client

    def post(self, path, body, content_type, headers=None):
        """POST to base path + `path`; return (HTTP-like status, body)."""
        if not path.startswith("/"):
            raise ValueError("path: expected one starting with '/', got %r" % path)
        client = self._open()
        try:
            self.status, answer = client.post(self.base_path + path, body, content_type)
        except TransportError:
            self._release(keep=False)  # the association may be broken: a new one next time
            raise
        return self.status, answer

    def post_stream(self, path, body, content_type, headers=None):
        """post() with the answer as a reader (ipa_core.stream contract): Block2 blocks are
        fetched as it is read (ipa_core.coap.Block2Reader), so a bound profile package of
        any size streams through one block of RAM; the IPA bounds it ([download]
        max_package). Read it to its end or close it before the next post."""
        if not path.startswith("/"):
            raise ValueError("path: expected one starting with '/', got %r" % path)
        client = self._open()
        try:
            self.status, reader = client.post_stream(self.base_path + path, body, content_type)
        except TransportError:
            self._release(keep=False)
            raise
        return self.status, _Released(self, reader)

    @property
    def response_headers(self):
        return self._client.response_headers if self._client is not None else {}

    def _release(self, keep=True):
        d = self._dgram
        if d is None:
            return
        if keep:
            d.close()
        elif isinstance(d, DtlsDatagram):
            d._drop(notify=True)
        else:
            d.close()
        for k in self._done:
            self._done[k] += getattr(d, k)
        self._dgram = self._client = None

    def _count(self, name):
        n = self._done[name]
        if self._dgram is not None:
            n += getattr(self._dgram, name)
        return n

    bytes_sent = property(lambda self: self._count("bytes_sent"))
    bytes_received = property(lambda self: self._count("bytes_received"))
    datagrams_sent = property(lambda self: self._count("datagrams_sent"))
    datagrams_received = property(lambda self: self._count("datagrams_received"))
    handshakes_full = property(lambda self: self._count("handshakes_full"))
    handshakes_resumed = property(lambda self: self._count("handshakes_resumed"))

    def close(self):
        """End the procedure: the association is kept in the session cache when there is one."""
        self._release(keep=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
