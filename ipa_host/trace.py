"""What `ipa --trace`, `--pcap FILE` and `--gsmtap HOST[:PORT]` record (docs/cli.md).

`Tracer` is the session's APDU hook (ipa_core.apdu.IsdrSession `trace`, called with
">" and the command, then "<" and the response, for every card kind) and wraps the
networks runner builds (`Tracer.network`): one object sees the whole session.

- text (--trace): each APDU in hex on stderr, the command named: SELECT ISD-R, MANAGE
  CHANNEL, GET RESPONSE, and for STORE DATA the ES10 function its request's first tag
  names (SGP.32 5.9 / SGP.22 5.7), once, at the first block of a chain; a response
  whose status word is not 9000 / 61xx, by the status word's name.
- pcap (--pcap): GSMTAP SIM for each APDU and the eIM / SM-DP+ exchanges as HTTP (or
  CoAP) between fake endpoints (ipa_host.pcap), in the order they happened.
- gsmtap (--gsmtap): the same GSMTAP SIM datagrams sent live over UDP.

A trace never stops the IPA: a failed live send is reported once and dropped.
"""

import socket
import sys
from urllib.parse import urlsplit

from ipa_core.apdu import ISDR_AID
from ipa_core.errors import sw_name
from ipa_host import pcap
from ipa_host.trace_net import TracedNetwork

# ES10 request tag -> function (SGP.32 Annex A / SGP.22 RSPDefinitions: [n] -> 'BF' n+0x00).
ES10_FUNCTIONS = {
    0xBF20: "ES10b.GetEUICCInfo1", 0xBF21: "ES10b.PrepareDownload",
    0xBF22: "ES10b.GetEUICCInfo2", 0xBF28: "ES10b.ListNotification",
    0xBF29: "ES10c.SetNickname", 0xBF2B: "ES10b.RetrieveNotificationsList",
    0xBF2D: "ES10c.GetProfilesInfo", 0xBF2E: "ES10b.GetEUICCChallenge",
    0xBF30: "ES10b.RemoveNotificationFromList", 0xBF31: "ES10c.EnableProfile",
    0xBF32: "ES10c.DisableProfile", 0xBF33: "ES10c.DeleteProfile",
    0xBF34: "ES10c.EuiccMemoryReset", 0xBF35: "ES10b.LoadCRL",
    0xBF36: "ES10b.LoadBoundProfilePackage", 0xBF38: "ES10b.AuthenticateServer",
    0xBF3C: "ES10a.GetEuiccConfiguredAddresses", 0xBF3E: "ES10c.GetEID",
    0xBF3F: "ES10a.SetDefaultDpAddress", 0xBF41: "ES10b.CancelSession",
    0xBF43: "ES10b.GetRAT", 0xBF51: "ES10b.LoadEuiccPackage",
    0xBF55: "ES10b.GetEimConfigurationData", 0xBF56: "ES10b.GetCerts",
    0xBF57: "ES10b.AddInitialEim", 0xBF58: "ES10b.ProfileRollback",
    0xBF59: "ES10b.ConfigureImmediateProfileEnabling", 0xBF5A: "ES10b.ImmediateEnable",
    0xBF5B: "ES10b.EnableEmergencyProfile", 0xBF5C: "ES10b.DisableEmergencyProfile",
    0xBF5D: "ES10b.ExecuteFallbackMechanism", 0xBF5E: "ES10b.ReturnFromFallback",
    0xBF5F: "ES10b.GetConnectivityParameters", 0xBF64: "ES10c.EuiccMemoryReset",
    0xBF65: "ES10a.SetDefaultDpAddress",
}
# The later segments of a bound profile package (SGP.22 5.7.6): each its own STORE DATA
# sequence, starting with one of these tags.
BPP_SEGMENT_TAGS = (0xA0, 0xA1, 0xA2, 0xA3, 0x86, 0x88)
NAME_WIDTH = 32  # the hex starts in one column
MAX_GSMTAP = 65000  # bytes of one GSMTAP datagram (UDP holds 65507)


def es10_name(request):
    """The ES10 function a STORE DATA request (its first bytes suffice) starts, by tag."""
    if not request:
        return "STORE DATA"
    tag = request[0]
    if tag & 0x1F == 0x1F and len(request) > 1:
        tag = (tag << 8) | request[1]
    if tag in ES10_FUNCTIONS:
        return ES10_FUNCTIONS[tag]
    if tag in BPP_SEGMENT_TAGS:
        return "ES10b.LoadBoundProfilePackage"
    return "STORE DATA %X" % tag


class ApduNamer:
    """Names command APDUs in order; a STORE DATA block after one with P1 'more blocks'
    continues that command and gets no name of its own."""

    def __init__(self):
        self.chained = False

    def name(self, apdu):
        if len(apdu) < 4:
            return "?"
        ins, p1, p2 = apdu[1], apdu[2], apdu[3]
        if ins == 0xE2:
            first = not self.chained
            self.chained = not p1 & 0x80
            return es10_name(apdu[5:7] if len(apdu) > 5 else b"") if first else ""
        if ins == 0xA4:
            aid = apdu[5:5 + apdu[4]] if len(apdu) > 5 else b""
            return "SELECT ISD-R" if aid == ISDR_AID else "SELECT %s" % aid.hex().upper()
        if ins == 0x70:
            return "MANAGE CHANNEL open" if p1 == 0 else "MANAGE CHANNEL close %d" % p2
        if ins == 0xC0:
            return "GET RESPONSE"
        if ins == 0xAA:
            return "TERMINAL CAPABILITY"
        return "INS %02X" % ins


def parse_gsmtap(value):
    """--gsmtap HOST[:PORT] ([v6]:PORT) -> (family, sockaddr); ValueError naming the problem."""
    host, port = value, pcap.GSMTAP_PORT
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            port = rest.lstrip(":")
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        port = int(port)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise ValueError("--gsmtap %s: expected HOST[:PORT] with a port 1..65535" % value)
    try:
        info = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise ValueError("--gsmtap %s: cannot resolve %s: %s" % (value, host, e))
    return info[0][0], info[0][4]


def parse_size(value):
    """--pcap-max: bytes, or with a k/M/G suffix (1024-based)."""
    v = value.strip().upper().rstrip("B") or "?"
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(v[-1], 1)
    try:
        n = int(v[:-1] if mult > 1 else v) * mult
    except ValueError:
        raise ValueError("--pcap-max %s: expected a size such as 64M, 500k or 20000" % value)
    return n


def open_tracer(text=False, pcap_path=None, pcap_max=None, gsmtap=None, warn=None):
    """The Tracer the options ask for (None: no tracing). text: --trace lines go to stderr;
    pcap_path / pcap_max (parse_size text) / gsmtap (HOST[:PORT]) as the options give them.
    ValueError for a bad value or a file that cannot be created."""
    if not (text or pcap_path or gsmtap):
        return None

    def line(s):
        sys.stderr.write(s + "\n")

    dest = parse_gsmtap(gsmtap) if gsmtap else None
    cap = parse_size(pcap_max) if pcap_max else pcap.MAX_BYTES
    writer = pcap.PcapWriter(pcap_path, cap, warn=warn) if pcap_path else None
    return Tracer(line if text else None, writer, dest, warn)


class Tracer:
    """The session's trace hook and the networks' wrapper (see the module docstring).

    text    callable(line) for --trace lines, or None
    pcap    an ipa_host.pcap.PcapWriter, or None
    gsmtap  (family, sockaddr) from parse_gsmtap, or None
    warn    callable(message) for what the user should know (a cap reached, a send failed)
    """

    def __init__(self, text=None, pcap_writer=None, gsmtap=None, warn=None):
        self.text = text
        self.pcap = pcap_writer
        self.warn = warn or (lambda msg: None)
        self.namer = ApduNamer()
        self.command = None
        self.sock = None
        self.dest = None
        self.send_failed = False
        self.servers = {}  # "host:port" -> fake address, in the order first reached
        self.next_port = 49152
        if gsmtap is not None:
            self.sock = socket.socket(gsmtap[0], socket.SOCK_DGRAM)
            self.sock.setblocking(False)  # never wait on a trace
            self.dest = gsmtap[1]

    def __call__(self, direction, data):
        data = bytes(data)
        if direction == ">":
            self.command = data
            name = self.namer.name(data)
        elif len(data) >= 2 and data[-2] not in (0x90, 0x61):
            name = sw_name((data[-2] << 8) | data[-1])  # what went wrong, in words
            self.namer.chained = False  # a refused block ends its chain: the IPA gives up
        else:
            name = ""
        if self.text is not None:
            self.text("%s %-*s %s" % (direction, NAME_WIDTH, name, data.hex().upper()))
        if direction == "<" and self.command is not None:
            self._gsmtap(pcap.gsmtap_sim(self.command, data))
            self.command = None

    def _gsmtap(self, dgram):
        if len(dgram) > MAX_GSMTAP:
            # One response a modem collected whole (AtCard follows 61xx itself) can pass
            # what a UDP datagram holds: its middle goes, the status word stays.
            self.warn("--pcap/--gsmtap: a response of %d bytes is cut to %d in the trace"
                      % (len(dgram) - 16, MAX_GSMTAP - 16))
            dgram = dgram[:MAX_GSMTAP - 2] + dgram[-2:]
        if self.pcap is not None:
            self.pcap.write_ip(pcap.udp(pcap.IPA_ADDR, pcap.GSMTAP_PORT, pcap.CARD_ADDR,
                                        pcap.GSMTAP_PORT, dgram, self.pcap.ident()))
        if self.sock is not None:
            try:
                self.sock.sendto(dgram, self.dest)
            except OSError as e:
                if not self.send_failed:
                    self.send_failed = True
                    self.warn("--gsmtap: sending to %s failed (%s); the trace goes on without "
                              "the datagrams that fail" % (self.dest[0], e))

    def network(self, net, url):
        """`net` with its exchanges written to the pcap file (unchanged without --pcap)."""
        if self.pcap is None:
            return net
        u = urlsplit(url)
        key = u.netloc.lower()
        if key not in self.servers:
            n = len(self.servers) % 254 + 1
            self.servers[key] = bytes(pcap.SERVER_NET + (n,))
        return TracedNetwork(net, u, self, self.servers[key])

    def port(self):
        """A new client port for the next synthesised connection."""
        p = self.next_port
        self.next_port = 49152 + (self.next_port - 49152 + 1) % 16384
        return p

    def close(self):
        if self.pcap is not None:
            self.pcap.close()
        if self.sock is not None:
            self.sock.close()
            self.sock = None

