"""CoAP / CoAPS front end of the simulated eIM: ESipa over CoAP (SGP.32 eimRetrieveCoaps).

    POST coaps://<host>:<port>/gsma/rsp2/asn1     (RFC 7252 over DTLS 1.2, RFC 6347)

The reassembled request body goes to the same EsipaService as the HTTPS
front end (ipa_host.sim.eim.eim_http); the answer comes back as 2.04 Changed
with the ESipa answer as payload (HandleNotification: 2.04 without one).
Block-wise transfer (RFC 7959): Block1 requests are acknowledged with 2.31
Continue and reassembled per peer and path; answers larger than the block
size the client asked for (early Block2 in the last request, else
`block_size`) go out in Block2 blocks with Size2 and an ETag.

Other answers: 4.00 with a text reason for a message the ESipa service
refuses, 4.02 for an unknown critical option, 4.04 for another path, 4.05
for a method other than POST, 4.08 for a Block1 out of sequence, 4.13 for
a body over the bound, 4.15 for a Content-Format other than none or 42,
5.00 (logged) if the simulator fails. An empty CON (CoAP ping) is answered
with RST. A repeated CON (same peer and message id: our answer was lost)
gets the same answer again, without running the request twice (RFC 7252
4.5), so a lost ACK never makes the eIM hand out a second package.

DTLS (python-mbedtls, server side): the certificate and key of the eIM's TLS
folder (ipa_host.sim.eim.eim_tls), HelloVerifyRequest cookies bound to the
peer address, one association per peer address, kept while used and
forgotten after `idle_timeout` seconds of silence (the client restores an
association it kept with a CoAP ping, see ipa_host.net.coaps). A record
from an unknown address that one of them authenticates moves it there (a
NAT rebinding; `_migrate`, `find_moved`, `moved`; docs/network.md "DTLS
and NAT rebinding").

Bounds: MAX_PEERS associations, MAX_BLOCK_STATES transfers in progress,
MAX_BODY bytes per request, BLOCK_EXPIRY seconds for an unfinished
transfer, RECENT answers remembered for duplicates (EXCHANGE_LIFETIME).
Message encoding and decoding is ipa_core.coap's codec (Message/decode),
a protocol codec like ipa_core.tlv; the interop tests with libcoap's
coap-client pin it independently.
"""

import hashlib
import logging
import select
import socket
import threading
import time

from ipa_core import coap
from ipa_core.errors import ProtocolError
from ipa_host.net.coaps import feed_records, read_records
from ipa_host.sim.eim.eim_esipa import MAX_BODY, EsipaRefused

log = logging.getLogger("ipa_host.sim.eim.eim")

ASN1_SEGMENTS = (b"gsma", b"rsp2", b"asn1")
MAX_PEERS = 256
MAX_BLOCK_STATES = 256
BLOCK_EXPIRY = 60.0  # seconds an unfinished Block1/Block2 transfer is kept
EXCHANGE_LIFETIME = 247.0  # RFC 7252 4.8.2: how long a message id may come again
RECENT = 512  # answers remembered for duplicate detection
MAX_DATAGRAM = 4096
DEFAULT_BLOCK = 1024  # our Block2 size unless the client asks for less
MTU = 1280
_KNOWN_CRITICAL = (coap.URI_HOST, coap.URI_PORT, coap.URI_PATH, coap.ACCEPT, coap.BLOCK1,
                   coap.BLOCK2)
_METHOD_NOT_ALLOWED = 0x85  # 4.05
_UNSUPPORTED_FORMAT = 0x8F  # 4.15
_INTERNAL = 0xA0  # 5.00


class _Peer:
    def __init__(self, addr, conn_id, buf=None):
        self.addr = addr
        self.buf = buf
        self.last = time.monotonic()
        self.conn = {"id": conn_id, "eid": None, "peer": "%s:%s" % addr[:2]}


class CoapEndpoint:
    """The listener: a UDP socket served by one thread. `owner` is the EimServer (its
    `service`, `record()`, `note_handshake_failure()`); `cert_file`/`key_file` (PEM)
    make it CoAPS, None plain CoAP (lab only)."""

    def __init__(self, owner, host="127.0.0.1", port=0, cert_file=None, key_file=None,
                 idle_timeout=300.0, block_size=DEFAULT_BLOCK):
        self.owner = owner
        self.secure = cert_file is not None
        self.idle_timeout = idle_timeout
        self.szx = coap.szx_for(block_size)
        if self.secure:
            try:
                from mbedtls import exceptions, pk, tls
                from mbedtls import x509 as mx
            except ImportError as e:
                raise ImportError("the eIM's CoAPS listener needs python-mbedtls: pip install "
                                  "python-mbedtls (%s)" % e)
            self._tls, self._exc = tls, exceptions
            with open(cert_file) as f:
                chain = [mx.CRT.from_PEM("-----BEGIN" + p) for p in f.read().split("-----BEGIN")[1:]]
            with open(key_file) as f:
                key = pk.ECC.from_PEM(f.read())
            conf = tls.DTLSConfiguration(certificate_chain=(chain, key),
                                         validate_certificates=False,
                                         lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
                                         highest_supported_version=tls.DTLSVersion.DTLSv1_2)
            self._ctx = tls.ServerContext(conf)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.peers = {}
        self.blocks = {}  # (addr, path) -> transfer state
        self.recent = {}  # (addr, mid) -> (time, answer datagram)
        self.ignored = 0
        self.find_moved = True  # find an association whose peer moved (_migrate)
        self.moved = 0  # associations found at a new address
        self._next_conn = 0
        self._stop = threading.Event()
        self._thread = None

    # ---- life cycle
    def start(self):
        self._thread = threading.Thread(target=self._serve, name="eim-coap-%d" % self.port,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sock.close()

    def _serve(self):
        while not self._stop.is_set():
            try:
                r, _w, _x = select.select([self.sock], [], [], 0.1)
            except (OSError, ValueError):
                return
            if r:
                try:
                    data, addr = self.sock.recvfrom(MAX_DATAGRAM)
                except OSError:
                    continue
                try:
                    self._datagram(data, addr)
                except Exception:  # a simulator bug must not end the listener
                    log.exception("eIM CoAP: datagram from %s failed", addr)
            self._expire()

    def _expire(self):
        now = time.monotonic()
        for addr in [a for a, p in self.peers.items() if now - p.last > self.idle_timeout]:
            del self.peers[addr]
        for k in [k for k, s in self.blocks.items() if now - s["time"] > BLOCK_EXPIRY]:
            del self.blocks[k]
        for k in [k for k, v in self.recent.items() if now - v[0] > EXCHANGE_LIFETIME]:
            del self.recent[k]

    def _new_conn_id(self):
        self._next_conn += 1
        return "coap-%d" % self._next_conn

    # ---- transport: plain or DTLS
    def _send(self, addr, data):
        try:
            self.sock.sendto(data, addr)
        except OSError as e:
            log.debug("eIM CoAP: sending to %s failed: %s", addr, e)

    def _datagram(self, data, addr):
        if not self.secure:
            peer = self.peers.get(addr)
            if peer is None:
                if len(self.peers) >= MAX_PEERS:
                    self._evict()
                peer = self.peers[addr] = _Peer(addr, self._new_conn_id())
            peer.last = time.monotonic()
            answer = self._coap(peer, data)
            if answer is not None:
                self._send(addr, answer)
            return
        self._dtls(data, addr)

    def _evict(self):
        oldest = min(self.peers, key=lambda a: self.peers[a].last)
        del self.peers[oldest]

    def _dtls(self, data, addr):
        tls = self._tls
        peer = self.peers.get(addr)
        hello = len(data) > 25 and data[0] == 22 and data[3:5] == b"\x00\x00" and data[13] == 1
        if peer is not None and hello and self._established(peer):
            del self.peers[addr]  # the client starts over from the same port: forget the old one
            peer = None
        if peer is None and not hello:
            found = self._migrate(data, addr) if self.find_moved else None
            if found is None:
                self.ignored += 1  # application data of an association we do not know
                return
            peer, records = found
            try:
                self._answer(peer, records)
            except self._exc.TLSError as e:
                self.peers.pop(addr, None)
                self.owner.note_handshake_failure(addr, "DTLS: %s" % e)
            return
        if peer is None:
            if len(self.peers) >= MAX_PEERS:
                self._evict()
            buf = self._ctx.wrap_buffers()
            buf.setcookieparam(("%s:%d" % addr[:2]).encode())
            peer = self.peers[addr] = _Peer(addr, self._new_conn_id(), buf)
        peer.last = time.monotonic()
        buf = peer.buf
        try:
            if self._established(peer):
                self._answer(peer, feed_records(buf, data, tls, MAX_DATAGRAM))
                return
            buf.receive_from_network(data)  # a handshake flight is fed whole
            while not self._established(peer):
                try:
                    buf.do_handshake()
                except tls.WantWriteError:
                    self._flush(peer)
                except tls.WantReadError:
                    break
            self._flush(peer)
            if not self._established(peer):
                return
            self._answer(peer, [])
        except tls.HelloVerifyRequest:
            self._flush(peer)  # the cookie goes out; the client's next hello starts afresh
            self.peers.pop(addr, None)
        except self._exc.TLSError as e:
            self.peers.pop(addr, None)
            if "0x7880" not in str(e):  # MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY: a clean end
                self.owner.note_handshake_failure(addr, "DTLS: %s" % e)

    def _answer(self, peer, records):
        """Answer `records` and whatever else the buffer holds, each answer in a datagram of
        its own (a client that takes a datagram for one CoAP message stays right)."""
        answers = [self._coap(peer, rec)
                   for rec in records + read_records(peer.buf, self._tls, MAX_DATAGRAM)]
        for a in answers:
            if a is not None:
                peer.buf.write(a)
                self._flush(peer)
        self._flush(peer)  # alerts or anything else the association has to say

    def _migrate(self, data, addr):
        """A record from an unknown address: the device's NAT rebound it (new source port).
        Without DTLS Connection IDs (RFC 9146; python-mbedtls exposes none) the association
        is found by trial: the established ones, most recent first, each try to decrypt
        the record; mbedTLS drops a record whose MAC fails (and a replayed one) without
        touching the association. The one that decrypts it moves to the new address, as
        RFC 9146 6 allows only for an authenticated, newer record. Bounded by MAX_PEERS
        decryptions per unknown datagram. -> (peer, its records) or None."""
        for old in sorted(self.peers, key=lambda a: -self.peers[a].last):
            peer = self.peers[old]
            if not self._established(peer):
                continue
            try:
                records = feed_records(peer.buf, data, self._tls, MAX_DATAGRAM)
            except self._exc.TLSError:
                continue
            if records:
                del self.peers[old]
                peer.addr = addr
                peer.last = time.monotonic()
                peer.conn["peer"] = "%s:%s" % addr[:2]
                self.peers[addr] = peer
                self.moved += 1
                log.info("eIM CoAP: association %s moved from %s:%s to %s:%s (NAT rebinding)",
                         peer.conn["id"], old[0], old[1], addr[0], addr[1])
                return peer, records
        return None

    def _established(self, peer):
        return peer.buf._handshake_state is self._tls.HandshakeStep.HANDSHAKE_OVER

    def _flush(self, peer):
        out = peer.buf.peek_outgoing(1 << 20)
        if not out:
            return
        peer.buf.consume_outgoing(len(out))
        for d in _pack(out, MTU):
            self._send(peer.addr, d)


    # ---- CoAP (RFC 7252, RFC 7959)
    def _coap(self, peer, data):
        """One CoAP message from `peer` -> the answer datagram or None."""
        try:
            m = coap.decode(data, MAX_DATAGRAM)
        except ProtocolError as e:
            self.ignored += 1
            log.debug("eIM CoAP: malformed datagram from %s: %s", peer.conn["peer"], e)
            if len(data) >= 4 and data[0] >> 6 == 1 and (data[0] >> 4) & 3 == coap.CON:
                return coap.Message(coap.RST, coap.EMPTY, (data[2] << 8) | data[3]).encode()
            return None
        if m.type in (coap.ACK, coap.RST):
            return None
        if m.code == coap.EMPTY:  # CoAP ping (RFC 7252 4.3)
            return coap.Message(coap.RST, coap.EMPTY, m.mid).encode() if m.type == coap.CON \
                else None
        if m.is_response() or m.code >> 5 != 0:
            self.ignored += 1
            return None
        key = (peer.addr, m.mid)
        seen = self.recent.get(key)
        if seen is not None:
            return seen[1]  # a retransmission: the same answer, the request is not run again
        code, payload, opts = self._request(peer, m)
        rtype = coap.ACK if m.type == coap.CON else coap.NON
        mid = m.mid if m.type == coap.CON else (m.mid + 1) & 0xFFFF
        answer = coap.Message(rtype, code, mid, m.token, opts, payload).encode()
        if len(self.recent) >= RECENT:
            del self.recent[min(self.recent, key=lambda k: self.recent[k][0])]
        self.recent[key] = (time.monotonic(), answer)
        return answer

    def _request(self, peer, m):
        """-> (code, payload, options) for one request message."""
        for n, _v in m.options:
            if n & 1 and n not in _KNOWN_CRITICAL:
                return coap.BAD_OPTION, b"critical option %d is not supported" % n, []
        path = tuple(m.opts(coap.URI_PATH))
        if path != ASN1_SEGMENTS:
            return coap.NOT_FOUND, b"ESipa is POST /gsma/rsp2/asn1", []
        if m.code != coap.POST:
            return _METHOD_NOT_ALLOWED, b"only POST is served here", []
        try:
            cf = m.uint(coap.CONTENT_FORMAT)
            b1 = m.block(coap.BLOCK1)
            b2 = m.block(coap.BLOCK2)
        except ProtocolError as e:
            return coap.BAD_REQUEST, str(e).encode(), []
        if cf not in (None, coap.OCTET_STREAM):
            return _UNSUPPORTED_FORMAT, b"Content-Format: expected none or 42", []
        skey = (peer.addr, path)
        if b2 is not None and b2[0] > 0 and b1 is None and not m.payload:
            return self._next_block2(skey, b2)
        body = m.payload
        if b1 is not None:
            num, more, szx = b1
            size = 16 << szx
            st = self.blocks.get(skey)
            if num == 0:
                size1 = m.uint(coap.SIZE1)
                if size1 is not None and size1 > MAX_BODY:
                    return (coap.REQUEST_ENTITY_TOO_LARGE, b"",
                            [(coap.SIZE1, coap.uint_encode(MAX_BODY))])
                if len(self.blocks) >= MAX_BLOCK_STATES:
                    del self.blocks[min(self.blocks, key=lambda k: self.blocks[k]["time"])]
                st = self.blocks[skey] = {"body": bytearray(), "time": time.monotonic()}
            if st is None or "body" not in st or num * size != len(st["body"]) \
                    or (more and len(m.payload) != size):
                self.blocks.pop(skey, None)
                return coap.REQUEST_ENTITY_INCOMPLETE, b"Block1 %d out of sequence" % num, []
            if len(st["body"]) + len(m.payload) > MAX_BODY:
                self.blocks.pop(skey, None)
                return coap.REQUEST_ENTITY_TOO_LARGE, b"", [(coap.SIZE1,
                                                             coap.uint_encode(MAX_BODY))]
            st["body"] += m.payload
            st["time"] = time.monotonic()
            if more:
                return coap.CONTINUE, b"", [(coap.BLOCK1, coap.block_encode(num, True, szx))]
            body = bytes(st.pop("body"))
            del self.blocks[skey]
        code, answer = self._esipa(peer, body)
        opts = []
        if b1 is not None:
            opts.append((coap.BLOCK1, coap.block_encode(b1[0], False, b1[2])))
        szx = min(self.szx, b2[2]) if b2 is not None else self.szx
        if len(answer) > 16 << szx:
            etag = hashlib.sha256(answer).digest()[:4]
            self.blocks[skey] = {"answer": answer, "code": code, "etag": etag,
                                 "time": time.monotonic()}
            opts += [(coap.ETAG, etag), (coap.SIZE2, coap.uint_encode(len(answer))),
                     (coap.BLOCK2, coap.block_encode(0, True, szx))]
            return code, answer[:16 << szx], opts
        return code, answer, opts

    def _next_block2(self, skey, b2):
        num, _more, szx = b2
        st = self.blocks.get(skey)
        if st is None or "answer" not in st:
            return coap.REQUEST_ENTITY_INCOMPLETE, b"no answer in progress for Block2", []
        size = 16 << szx
        answer = st["answer"]
        part = answer[num * size:(num + 1) * size]
        if not part:
            return coap.BAD_REQUEST, b"Block2 %d is past the end" % num, []
        more = (num + 1) * size < len(answer)
        st["time"] = time.monotonic()
        if not more:
            self.blocks.pop(skey, None)
        return st["code"], part, [(coap.ETAG, st["etag"]),
                                  (coap.BLOCK2, coap.block_encode(num, more, szx))]

    def _esipa(self, peer, body):
        """The ESipa service, recorded like the HTTPS front end's requests."""
        owner = self.owner
        rec = {"time": time.time(), "path": "/gsma/rsp2/asn1",
               "binding": "coaps" if self.secure else "coap", "function": None, "eid": None,
               "status": None, "request": body, "response": b"", "note": None, "error": None,
               "conn": peer.conn["id"], "peer": peer.conn["peer"]}
        try:
            answer, info = owner.service.handle(body, peer.conn)
            rec.update({"function": info["function"], "eid": info["eid"], "note": info["note"]})
            code, status = coap.CHANGED, info["status"]
        except EsipaRefused as e:
            rec["error"] = str(e)
            code, status, answer = coap.BAD_REQUEST, 400, str(e).encode()[:512]
        except Exception as e:  # a simulator bug: answer, log, keep serving
            log.exception("eIM simulator (CoAP): %s failed", rec["function"] or "request")
            rec["error"] = "internal error: %r" % (e,)
            code, status, answer = _INTERNAL, 500, b"internal error in the eIM simulator"
        rec["status"] = status
        rec["response"] = answer
        owner.record(rec)
        return code, answer


def _pack(data, mtu):
    """Whole DTLS records (RFC 6347 4.1: 13-byte header, length at 11) into datagrams of at
    most `mtu` bytes; a larger record goes alone."""
    out, cur, pos = [], b"", 0
    while pos < len(data):
        n = 13 + ((data[pos + 11] << 8) | data[pos + 12]) if pos + 13 <= len(data) else len(data)
        rec = data[pos:pos + n]
        pos += n
        if cur and len(cur) + len(rec) > mtu:
            out.append(cur)
            cur = b""
        cur += rec
    if cur:
        out.append(cur)
    return out
