"""A pcap file a lab user opens in Wireshark: GSMTAP SIM for the APDUs, synthesised
TCP (HTTP) and UDP (CoAP) between fake endpoints for the ESipa / ES9+ exchanges.

File format: classic pcap (libpcap 2.4, microsecond time stamps), LINKTYPE_ETHERNET,
IPv4. The endpoints are documentation addresses (RFC 5737) that no network routes:
the IPA is 192.0.2.1, the eUICC (GSMTAP receiver) 192.0.2.2, each server 198.51.100.N
in the order the run first reaches it. Nothing here sends a packet; `gsmtap_sim`
builds the same GSMTAP datagram that ipa_host.trace sends live with --gsmtap.

GSMTAP (osmocom gsmtap.h, version 2): a 16-byte header, type 0x04 SIM, sub-type 0
APDU; the payload is what Wireshark's gsm_sim dissector reads: the command header and
P3, the command data, then the response data and SW1 SW2 (one datagram per command,
as a SIMtrace capture of a T=0 exchange carries it).

Bounded: `PcapWriter(max_bytes)` stops writing before the file would pass the cap,
and writes one last packet that says so (a syslog message Wireshark shows as text).
"""

import os
import struct
import time

GSMTAP_PORT = 4729  # IANA: gsmtap
GSMTAP_VERSION = 2
GSMTAP_TYPE_SIM = 0x04
GSMTAP_SIM_APDU = 0x00

LINKTYPE_ETHERNET = 1
SNAPLEN = 262144
MAX_BYTES = 64 * 1024 * 1024  # default cap on one file
MSS = 1460  # TCP payload per synthesised segment, as on an Ethernet path

IPA_ADDR = bytes((192, 0, 2, 1))
CARD_ADDR = bytes((192, 0, 2, 2))
SERVER_NET = (198, 51, 100)
_MAC_IPA = b"\x02\x00\x00\x00\x00\x01"  # locally administered
_MAC_PEER = b"\x02\x00\x00\x00\x00\x02"
SYSLOG_PORT = 514
NOTE_ROOM = 512  # bytes kept free under the cap for the note that says it was reached

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def gsmtap_sim(command, response):
    """The GSMTAP v2 SIM datagram for one command APDU and its response (data + SW).

    A case 1 command gets P3 = 00; a case 4 command loses its Le byte (T=0 sends
    no Le with data: Wireshark would show it as response data otherwise)."""
    c = bytes(command)
    if len(c) == 4:
        c += b"\x00"
    elif len(c) > 5 and len(c) == 6 + c[4]:
        c = c[:-1]
    head = struct.pack(">BBBBHbbIBBBB", GSMTAP_VERSION, 4, GSMTAP_TYPE_SIM, 0, 0, 0, 0, 0,
                       GSMTAP_SIM_APDU, 0, 0, 0)
    return head + c + bytes(response)


def _checksum(data):
    if len(data) & 1:
        data += b"\x00"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ipv4(src, dst, proto, payload, ident):
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000,
                       64, proto, 0, src, dst)
    return head[:10] + struct.pack("!H", _checksum(head)) + head[12:] + payload


def _l4_checksum(src, dst, proto, segment):
    return _checksum(src + dst + struct.pack("!BBH", 0, proto, len(segment)) + segment)


def udp(src, sport, dst, dport, payload, ident=0):
    """An IPv4 UDP packet (checksummed)."""
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = _l4_checksum(src, dst, 17, seg) or 0xFFFF
    return _ipv4(src, dst, 17, seg[:6] + struct.pack("!H", c) + seg[8:], ident)


def tcp(src, sport, dst, dport, seq, ack, flags, payload=b"", ident=0):
    """An IPv4 TCP packet (checksummed, no options)."""
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4,
                      flags, 65535, 0, 0) + payload
    c = _l4_checksum(src, dst, 6, seg)
    return _ipv4(src, dst, 6, seg[:16] + struct.pack("!H", c) + seg[18:], ident)


class PcapWriter:
    """Packets appended to a new pcap file (mode 0600: a trace holds profile data and
    keys' public halves), flushed after each one so the file is readable mid-run."""

    def __init__(self, path, max_bytes=MAX_BYTES, warn=None):
        if max_bytes < 24 + NOTE_ROOM:
            raise ValueError("pcap size cap of %d bytes: expected at least %d"
                             % (max_bytes, 24 + NOTE_ROOM))
        self.path = path
        self.max_bytes = max_bytes
        self.warn = warn
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            raise ValueError("--pcap %s: cannot create it: %s" % (path, e.strerror or e))
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        self.f = os.fdopen(fd, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        self.size = 24
        self.packets = 0
        self.dropped = 0
        self.full = False
        self._ident = 0

    def ident(self):
        self._ident += 1
        return self._ident

    def write_ip(self, packet, to_peer=True):
        """Append one IPv4 packet in an Ethernet frame; False once the cap is reached."""
        if self.f is None:
            return False
        if self.full:
            self.dropped += 1
            return False
        frame = ((_MAC_PEER + _MAC_IPA) if to_peer else (_MAC_IPA + _MAC_PEER)) + b"\x08\x00"
        frame += packet
        if self.size + 16 + len(frame) > self.max_bytes - NOTE_ROOM:
            self._stop()
            self.dropped += 1
            return False
        self._record(frame)
        return True

    def _record(self, frame):
        t = time.time()
        self.f.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)))
        self.f.write(frame)
        self.f.flush()
        self.size += 16 + len(frame)
        self.packets += 1

    def _stop(self):
        self.full = True
        text = ("<12>ipa: capture stopped: the next packet would pass the %d-byte cap of this "
                "file (--pcap-max); later APDUs and exchanges are not in it" % self.max_bytes)
        pkt = udp(IPA_ADDR, SYSLOG_PORT, CARD_ADDR, SYSLOG_PORT, text.encode()[:NOTE_ROOM - 80],
                  self.ident())
        self._record(_MAC_PEER + _MAC_IPA + b"\x08\x00" + pkt)
        if self.warn is not None:
            self.warn("--pcap %s reached its %d-byte cap: later packets are left out (a note "
                      "in the file says where)" % (self.path, self.max_bytes))

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None


class TcpFlow:
    """One synthesised TCP connection IPA:sport <-> server:dport: handshake at the first
    byte, sequence numbers kept for both sides, FIN (or RST) at the end."""

    def __init__(self, pcap, server, sport, dport):
        self.pcap = pcap
        self.server = server
        self.sport = sport
        self.dport = dport
        self.seq = 1000  # the IPA's next sequence number
        self.peer_seq = 5000
        self.open = False

    def _send(self, from_ipa, flags, payload=b""):
        p = self.pcap
        if from_ipa:
            pkt = tcp(IPA_ADDR, self.sport, self.server, self.dport, self.seq, self.peer_seq,
                      flags, payload, p.ident())
            self.seq += len(payload) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)
        else:
            pkt = tcp(self.server, self.dport, IPA_ADDR, self.sport, self.peer_seq, self.seq,
                      flags, payload, p.ident())
            self.peer_seq += len(payload) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)
        p.write_ip(pkt, to_peer=from_ipa)

    def data(self, from_ipa, payload):
        if not self.open:
            self._send(True, TCP_SYN)
            self._send(False, TCP_SYN | TCP_ACK)
            self._send(True, TCP_ACK)
            self.open = True
        payload = bytes(payload)
        for i in range(0, len(payload), MSS):
            self._send(from_ipa, TCP_PSH | TCP_ACK, payload[i:i + MSS])

    def close(self, reset=False):
        if not self.open:
            return
        self.open = False
        if reset:
            self._send(True, TCP_RST | TCP_ACK)
            return
        self._send(True, TCP_FIN | TCP_ACK)
        self._send(False, TCP_FIN | TCP_ACK)
        self._send(True, TCP_ACK)
