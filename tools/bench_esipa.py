"""ESipa bytes on the wire, HTTPS vs CoAP/DTLS (issue "ESipa over CoAP/DTLS"): a measurement.

    .venv/bin/python tools/bench_esipa.py                 # table on stdout (a few seconds)
    .venv/bin/python tools/bench_esipa.py --json          # the same figures as JSON
    .venv/bin/python tools/bench_esipa.py --write-docs    # and update docs/bench.md

The real core IPA (ipa_core.ipa.Ipa, over an IsdrSession to the virtual eUICC
of ipa_host.sim.home) polls an in-process simulated eIM (ipa_host.sim.eim.eim)
that listens on HTTPS and CoAPS; a second eIM without TLS serves plain HTTP
and plain CoAP as references. Both eIMs relay indirect profile downloads to an
in-process simulated SM-DP+ (ipa_host.sim.smdpp.smdpp, ES9+ over HTTPS; that hop is
the eIM's and is not counted). Three procedures, each over every transport:

    empty poll         ESipa.GetEimPackage -> eimPackageError noEimPackageAvailable
    PSMO cycle         GetEimPackage -> an eIM-signed enable (LoadEuiccPackage on the
                       eUICC) -> ProvideEimPackageResult (result + notifications) -> ack
    indirect download  GetEimPackage -> profileDownloadTriggerRequest (activation
                       code) -> InitiateAuthentication, AuthenticateClient,
                       GetBoundProfilePackage (a 40 KiB profile package), all relayed
                       by the eIM to the SM-DP+ -> ProvideEimPackageResult (the PIR)

Transports (what a device pays for one procedure):
    coaps-rebound  the second poll after a NAT rebinding: the IPA restores the DTLS
                   association the first poll kept, but its datagrams now come from a new
                   source port; the eIM finds the association by trial decryption
                   (eim_coap "_migrate", what a DTLS Connection ID gives a real eIM) and
                   the CoAP ping is answered: no handshake.
    coaps-rebound-addr  the same against an eIM that keys associations by address
                   only (most DTLS servers without CID): the ping goes unanswered
                   (probe_timeout), then a full handshake.
    coaps-expired  the same with the old port, the eIM having forgotten the association
                   (idle expiry, restart)
    coaps-new      CoapsNetwork, a DTLS 1.2 handshake (with HelloVerifyRequest cookie)
    coaps-kept     the second poll restoring the association the first one kept
                   (ipa_host.net.coaps "Resumption": a CoAP ping, no handshake), same port
    https-new      HttpsNetwork, a new TCP + TLS connection, closed after the poll; the
                   eIM sends no session tickets (nobody would use them)
    https-resumed  the second poll, new TCP connection, TLS resuming the session of the
                   first (ipa_host.net.https "Resumption"; the eIM sends one ticket)
    https-kept     the second poll on a connection kept alive from the first
    coap-plain     CoAP without DTLS (reference, lab only)
    http-plain     HTTP/1.1 without TLS, new connection (reference, lab only)

Counted at the client's socket (the network classes' counters: every byte the
socket sent/received, i.e. all layers above UDP/TCP, DTLS/TLS records,
handshakes, close_notify): sent / received bytes; UDP datagrams both ways
(the network's counters); TCP segments both ways from the kernel (Linux
TCP_INFO tcpi_segs_out/in, read just before the socket closes: SYN and pure
ACKs included, the FIN exchange after close not). IP/UDP/TCP headers are
NOT in the byte counts; the "with hdrs" column adds them: +28 B per UDP
datagram (IPv4 20 + UDP 8), +40 B per TCP segment (IPv4 20 + TCP 20; Linux
adds 12 B of timestamp option per segment, not included). The eIM's
listening sockets set TCP_MAXSEG to a cellular MSS (1400 B), advertised to
the IPA, so both directions are cut into real-sized segments on loopback
too (the DTLS client packs datagrams to 1280 B itself).

Round trips: times the client waited for the peer, counted at the socket as
switches from sending to receiving, +1 per new TCP connection (SYN /
SYN-ACK, which the socket API does not show).
"""

import argparse
import datetime
import json
import logging
import os
import shlex
import socket
import struct
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdoc  # noqa: E402
from benchdoc import DOCS, machine  # noqa: E402,F401
from ipa_core import apdu  # noqa: E402
from ipa_core.errors import IpaError  # noqa: E402
from ipa_core.ipa import Ipa  # noqa: E402
from ipa_core.ipa_download import make_download_handler  # noqa: E402
from ipa_core.ipa_store import MemoryStore  # noqa: E402
from ipa_host.net import coaps, https  # noqa: E402
from ipa_host.sim.eim.eim import EimServer  # noqa: E402
from ipa_host.sim.home import DEMO_EIM_ID, DEMO_PROFILES, eim_dir, open_home_euicc, sim_dir  # noqa: E402,E501
from ipa_host.sim.smdpp.smdpp import SmdpServer  # noqa: E402

SECTION = "## ESipa bytes on the wire (HTTPS vs CoAP/DTLS)"
PROCEDURES = ("empty poll", "PSMO cycle", "indirect download")
TRANSPORTS = ("coaps-rebound", "coaps-rebound-addr", "coaps-expired", "coaps-new", "coaps-kept", "https-new",
              "https-resumed", "https-kept", "coap-plain", "http-plain")
HEADLINE = "coaps-rebound"  # the ratio that matters: a device polling hourly behind a NAT
# the second poll of these reuses what the first left (an association, a session, a connection)
SECOND_POLL = ("coaps-rebound", "coaps-rebound-addr", "coaps-expired", "coaps-kept", "https-resumed", "https-kept")
BASELINE = "https-new"
UDP_HDR = 28  # IPv4 20 + UDP 8
TCP_HDR = 40  # IPv4 20 + TCP 20 (no options)
MSS = 1400  # about a cellular link's TCP MSS (the findings' estimate for large answers)
PROFILE_A, PROFILE_B = DEMO_PROFILES[0]["iccid"], DEMO_PROFILES[1]["iccid"]
PROFILE_SIZE = 40 * 1024  # bytes of the unprotected profile package the SM-DP+ binds
BLOCK = 1024  # CoapsNetwork's CoAP block size (Block1 and Block2), as `ipa` uses it


def bench_iccid(n):
    """A distinct, Luhn-valid test ICCID per download (an ICCID installs only once)."""
    body = "8900012345678%06d" % n
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)  # doubled: every second digit from the check's left
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- socket-level recorder

def _tcp_segs(sock):
    """(segments out, segments in) of a TCP socket from Linux TCP_INFO, or None."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except (AttributeError, OSError):
        return None
    if len(info) < 144:  # tcpi_segs_out/in (Linux 4.2+) at offsets 136/140
        return None
    return struct.unpack_from("<II", info, 136)


class Recorder:
    """Wraps the wire methods of the network classes (class level, for the bench's life):
    the order of sends and receives (round trips) and TCP segment counts.

    Only the IPA's networks count (`watch`): the eIM's relay to the SM-DP+ runs in this
    process on the same HttpsNetwork class, and its connections are not the device's."""

    def __init__(self):
        self.nets = set()  # ids of the watched (the IPA's) HttpsNetworks
        self.events = []  # "o" / "i" per socket send / receive that moved bytes
        self.segs_closed = [0, 0]
        self.segs_known = True
        self.open_wires = set()
        self.security = {}  # "tls" / "dtls": the version and cipher suite negotiated
        self._saved = []

    def watch(self, net):
        self.nets.add(id(net))
        self._keep = getattr(self, "_keep", []) + [net]  # ids stay unique while we live
        return net

    def mine(self, obj):
        """Is this wire (or TLS stream, or datagram) the IPA's?"""
        net = getattr(obj, "net", None)
        if net is None and hasattr(obj, "wire"):
            net = obj.wire.net
        return net is None or id(net) in self.nets  # datagrams: only the IPA uses them

    def _patch(self, cls, name, wrapper):
        orig = getattr(cls, name)
        self._saved.append((cls, name, orig))
        setattr(cls, name, wrapper(orig))

    def __enter__(self):
        rec = self

        def out(orig):
            def f(self_, data, *a, **kw):
                r = orig(self_, data, *a, **kw)
                if rec.mine(self_):
                    rec.events.append("o")
                return r
            return f

        def inc(orig):
            def f(self_, *a, **kw):
                r = orig(self_, *a, **kw)
                if r and rec.mine(self_):
                    rec.events.append("i")
                return r
            return f

        def wire_init(orig):
            def f(self_, sock, net):
                orig(self_, sock, net)
                if rec.mine(self_):
                    rec.open_wires.add(self_)
            return f

        def wire_close(orig):
            def f(self_):
                if self_ in rec.open_wires:
                    rec.open_wires.discard(self_)
                    segs = _tcp_segs(self_.sock)
                    if segs is None:
                        rec.segs_known = False
                    else:
                        rec.segs_closed[0] += segs[0]
                        rec.segs_closed[1] += segs[1]
                return orig(self_)
            return f

        def tls_done(orig):
            def f(self_):
                r = orig(self_)
                if rec.mine(self_):
                    rec.security["tls"] = "%s %s" % (self_.obj.version(),
                                                     self_.obj.cipher()[0])
                return r
            return f

        def dtls_done(orig):
            def f(self_):
                r = orig(self_)
                c = self_.buf.cipher()
                rec.security["dtls"] = "DTLSv1.2 %s" % (c[0] if isinstance(c, tuple) else c)
                return r
            return f

        self._patch(https._Tls, "handshake", tls_done)
        self._patch(coaps.DtlsDatagram, "_handshake", dtls_done)
        self._patch(coaps.DtlsDatagram, "_send_wire", out)
        self._patch(coaps.DtlsDatagram, "_recv_wire", inc)
        self._patch(coaps.UdpDatagram, "send", out)
        self._patch(coaps.UdpDatagram, "recv", inc)
        self._patch(https._Wire, "send", out)
        self._patch(https._Wire, "recv", inc)
        self._patch(https._Wire, "__init__", wire_init)
        self._patch(https._Wire, "close", wire_close)
        return self

    def __exit__(self, *exc):
        for cls, name, orig in reversed(self._saved):
            setattr(cls, name, orig)
        self._saved = []

    def segs(self):
        out, inn = self.segs_closed
        for w in self.open_wires:
            s = _tcp_segs(w.sock)
            if s is None:
                self.segs_known = False
            else:
                out, inn = out + s[0], inn + s[1]
        return out, inn


def round_trips(events):
    """Switches from sending to receiving: the times the client waited for an answer."""
    n = 0
    for a, b in zip(events, events[1:]):
        if a == "o" and b == "i":
            n += 1
    return n


# ---------------------------------------------------------------- the runs

class Lab:
    """A home (virtual eUICC + its eIM, TLS and plain), an SM-DP+ both eIMs relay
    indirect downloads to (its TLS CA is the home's test CI), and a Recorder."""

    def __init__(self, workdir):
        self.home = os.path.join(str(workdir), "home")
        self.card = open_home_euicc(self.home)
        self.eid = self.card.eid
        pki_dir = os.path.join(sim_dir(self.home), "pki")
        self.smdp = SmdpServer(os.path.join(str(workdir), "smdp"), pki_dir)
        relay = {"smdp_ca_file": self.smdp.tls_ca_path, "smdp_timeout": 10}
        self.eim = EimServer(eim_dir(self.home), pki_dir=pki_dir, association_token=1,
                             coap_port=0, api_port=None, **relay)
        self.plain = EimServer(os.path.join(str(workdir), "eim-plain"), pki_dir=pki_dir,
                               association_token=1, coap_port=0, api_port=None, tls=False,
                               **relay)
        self.session = None
        self.downloads = 0
        self.rec = Recorder()

    def __enter__(self):
        self.smdp.start()
        self.eim.start()
        self.plain.start()
        for srv in self.eim._servers[:1] + self.plain._servers[:1]:
            # a cellular link's MSS, advertised to the IPA in the SYN-ACK: both directions
            srv.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)
        self.session = apdu.IsdrSession(self.card).open()
        self.rec.__enter__()
        return self

    def __exit__(self, *exc):
        self.rec.__exit__()
        self.session.close()
        self.plain.stop()
        self.eim.stop()
        self.smdp.stop()

    def server(self, transport):
        return self.plain if transport.endswith("-plain") else self.eim

    def network(self, transport, cache):
        return self.rec.watch(self._network(transport, cache))

    def _network(self, transport, cache):
        trust = self.eim.tls_ca_cert_der
        if transport.startswith("coaps"):
            return coaps.CoapsNetwork(self.eim.coap_url, trust=trust, session_cache=cache,
                                      block_size=BLOCK)
        if transport == "coap-plain":
            return coaps.CoapsNetwork(self.plain.coap_url, allow_plain=True, block_size=BLOCK)
        if transport.startswith("https"):
            return https.HttpsNetwork(self.eim.url, trust=trust, session_cache=cache)
        return https.HttpsNetwork(self.plain.url, allow_http=True)

    def _poll(self, net, server, procedure):
        """One poll with `procedure` prepared at the eIM; the poll summary (checked)."""
        if procedure == "PSMO cycle":
            # the two eIMs sign as the same eIM: the next counterValue must be above both
            server.register_eid(self.eid, counter=max(self.eim.counter(self.eid),
                                                      self.plain.counter(self.eid)))
            server.queue_psmo(self.eid, [{"op": "enable", "iccid": self._next_enable()}])
        if procedure == "indirect download":
            self.downloads += 1
            mid, iccid = "BENCH-%d" % self.downloads, bench_iccid(self.downloads)
            self.smdp.add_profile(mid, iccid, "Bench profile %d" % self.downloads,
                                  size=PROFILE_SIZE)
            server.queue_download_trigger(self.eid, activation_code="LPA:1$%s$%s"
                                          % (self.smdp.address, mid))
            results_before = len(server.results(self.eid))
        ipa = Ipa(self.session, net, MemoryStore(), config={"eim_id": DEMO_EIM_ID})
        ipa.download_handler = make_download_handler(ipa, indirect=True)
        r = ipa.poll_once(raise_errors=True)
        if procedure == "empty poll" and not r["idle"]:
            raise BenchError("empty poll: expected noEimPackageAvailable, got %r" % r)
        if procedure == "PSMO cycle":
            ops = (r.get("result") or {}).get("operations") or []
            if not (r["delivered"] and ops and ops[0][:2] == ["enableResult", 0]):
                raise BenchError("PSMO cycle did not complete: %r" % r)
        if procedure == "indirect download":
            last = ipa.download_handler.last or {}
            got = server.results(self.eid)[results_before:]
            if not (r["delivered"] and last.get("ok") and last.get("iccid") == iccid
                    and len(got) == 1 and got[0].get("result") == "profileInstallationResult"):
                raise BenchError("indirect download did not complete: %r, handler %r, eIM "
                                 "results %r" % (r, {k: last.get(k) for k in ("ok", "iccid",
                                                                              "error")}, got))
        return r

    def _next_enable(self):
        self.enabled = PROFILE_A if getattr(self, "enabled", PROFILE_A) == PROFILE_B \
            else PROFILE_B
        return self.enabled

    def measure(self, procedure, transport):
        """One procedure over one transport -> a result dict (see COLUMNS)."""
        server = self.server(transport)
        second = transport in SECOND_POLL
        # TLS 1.3 tickets only where the client resumes (eim_tls.server_context)
        self.eim._servers[0].ssl_context.num_tickets = 1 if transport == "https-resumed" else 0
        cache = {} if transport.startswith("coaps") or transport == "https-resumed" else None
        net = self.network(transport, cache)
        if second:  # the first poll opens what the measured one reuses
            self._poll(net, server, "empty poll")
            if transport != "https-kept":
                net.close()  # keeps the association / the session in `cache`
                net = self.network(transport, cache)
        # does the eIM look for the association of a datagram from a new address?
        self.eim._coap.find_moved = transport != "coaps-rebound-addr"
        if transport == "coaps-expired":
            self.eim._coap.peers.clear()  # the eIM forgot it (idle timeout, restart)
        snap = self._snap(net, server)
        t0 = time.monotonic()
        with _rebinding(transport.startswith("coaps-rebound")):
            self._poll(net, server, procedure)
            if transport != "https-kept":
                net.close()  # closed with the poll (close_notify, FIN; DTLS: kept in cache)
        wall = time.monotonic() - t0
        after = self._snap(net, server)
        if transport == "https-kept":
            net.close()
        return self._result(procedure, transport, snap, after, net, server, wall)

    def _snap(self, net, server):
        return {"sent": net.bytes_sent, "recv": net.bytes_received,
                "dg_out": getattr(net, "datagrams_sent", 0),
                "dg_in": getattr(net, "datagrams_received", 0),
                "full": getattr(net, "handshakes_full", 0),
                "resumed": getattr(net, "handshakes_resumed", 0),
                "conns": net.connections, "segs": self.rec.segs(),
                "events": len(self.rec.events), "requests": len(server.requests)}

    def _result(self, procedure, transport, a, b, net, server, wall):
        udp = transport.startswith("coap")
        reqs = server.requests[a["requests"]:b["requests"]]
        r = {"procedure": procedure, "transport": transport,
             "esipa_functions": [q["function"] for q in reqs],
             "esipa_msgs": len(reqs),
             "esipa_bytes": sum(len(q["request"]) + len(q["response"]) for q in reqs),
             "esipa_largest": max([len(q["response"]) for q in reqs] or [0]),
             "sent": b["sent"] - a["sent"], "received": b["recv"] - a["recv"],
             "connections": b["conns"] - a["conns"], "wall_s": wall}
        r["total"] = r["sent"] + r["received"]
        events = self.rec.events[a["events"]:b["events"]]
        r["round_trips"] = round_trips(events)
        if udp:
            r["packets_out"] = b["dg_out"] - a["dg_out"]
            r["packets_in"] = b["dg_in"] - a["dg_in"]
            r["handshake"] = _handshakes(transport, b["full"] - a["full"],
                                         b["resumed"] - a["resumed"], r["connections"])
            r["with_headers"] = r["total"] + UDP_HDR * (r["packets_out"] + r["packets_in"])
        else:
            new = r["connections"]
            r["round_trips"] += new  # TCP SYN / SYN-ACK
            r["handshake"] = _handshakes(transport, b["full"] - a["full"],
                                         b["resumed"] - a["resumed"], new)
            if self.rec.segs_known:
                r["packets_out"] = b["segs"][0] - a["segs"][0]
                r["packets_in"] = b["segs"][1] - a["segs"][1]
                r["with_headers"] = r["total"] + TCP_HDR * (r["packets_out"] + r["packets_in"])
            else:
                r["packets_out"] = r["packets_in"] = r["with_headers"] = None
        return r


class _rebinding:
    """A NAT rebinding at every restore of a kept DTLS association: the IPA's datagrams come
    from a new source port (coaps._connect_udp without the old local address), which the
    eIM, keying associations by address, does not know."""

    def __init__(self, on):
        self.on = on

    def __enter__(self):
        if self.on:
            self.orig = coaps._connect_udp
            coaps._connect_udp = lambda host, port, where, local=None: self.orig(host, port,
                                                                                 where)

    def __exit__(self, *exc):
        if self.on:
            coaps._connect_udp = self.orig


def _handshakes(transport, full, resumed, connections):
    """What the procedure paid to secure its connections, e.g. "1 full + 1 resumed"."""
    if transport.endswith("-plain"):
        return "none (%d conn)" % connections
    parts = ["kept"] if transport in SECOND_POLL and not (resumed or full) else []
    parts += ["%d %s" % (n, what) for n, what in ((full, "full"), (resumed, "resumed")) if n]
    return " + ".join(parts)


def run_bench(workdir, procedures=PROCEDURES, transports=TRANSPORTS, progress=None):
    """Every procedure over every transport; results in that order, with ratios."""
    results = []
    with Lab(workdir) as lab:
        for p in procedures:
            for t in transports:
                r = lab.measure(p, t)
                results.append(r)
                if progress:
                    progress(r)
    add_ratios(results)
    for r in results:
        r["security"] = ("-" if r["transport"].endswith("-plain") else
                         lab.rec.security.get("dtls" if r["transport"].startswith("coaps")
                                              else "tls"))
    return results


def add_ratios(results):
    base = {r["procedure"]: r for r in results if r["transport"] == BASELINE}
    for r in results:
        b = base.get(r["procedure"])
        r["ratio_bytes"] = r["total"] / b["total"] if b else None
        r["ratio_headers"] = (r["with_headers"] / b["with_headers"]
                              if b and r["with_headers"] and b["with_headers"] else None)


# ---------------------------------------------------------------- output

COLUMNS = (
    ("procedure", "procedure", "%s"), ("transport", "transport", "%s"),
    ("handshake", "handshake", "%s"), ("esipa_msgs", "ESipa msgs", "%d"),
    ("esipa_bytes", "ESipa B", "%d"), ("sent", "sent B", "%d"), ("received", "recv B", "%d"),
    ("total", "total B", "%d"), ("packets_out", "pkts out", "%d"),
    ("packets_in", "pkts in", "%d"), ("with_headers", "with hdrs B", "%d"),
    ("round_trips", "RTTs", "%d"), ("ratio_bytes", "B vs https-new", "%.2f"),
    ("ratio_headers", "hdrs vs https-new", "%.2f"),
)
TEXT_COLS = 3


def table(results):
    """A Markdown table of the results (also readable on a terminal)."""
    return benchdoc.table(results, COLUMNS, TEXT_COLS)


def _fill(text):
    return textwrap.fill(" ".join(text.split()), 80, break_on_hyphens=False)


def _r(r, key="ratio_headers"):
    return "%.2f" % r[key] if r and r.get(key) is not None else "-"


def headline(results):
    """The ratio that matters, per procedure: CoAPS after a NAT rebinding / HTTPS new
    connection (with headers), and CoAPS after rebinding / CoAPS kept."""
    by = {(r["procedure"], r["transport"]): r for r in results}
    out = []
    for p in PROCEDURES:
        reb, kept = by.get((p, HEADLINE)), by.get((p, "coaps-kept"))
        addr = by.get((p, "coaps-rebound-addr"))
        if not (reb and by.get((p, BASELINE))):
            continue
        out.append("%s: CoAPS after rebinding / HTTPS new connection = %s with IP/UDP/TCP "
                   "headers (%s without); CoAPS after rebinding / CoAPS kept = %s; against "
                   "an eIM keying associations by address only: %s / HTTPS new; HTTPS "
                   "resumed / HTTPS new = %s."
                   % (p, _r(reb), _r(reb, "ratio_bytes"),
                      "%.2f" % (reb["with_headers"] / float(kept["with_headers"]))
                      if kept else "-", _r(addr), _r(by.get((p, "https-resumed")))))
    return "\n".join(textwrap.fill(b, 80, initial_indent="- ", subsequent_indent="  ",
                                   break_on_hyphens=False) for b in out)


def findings(results):
    """Bullet points computed from the results."""
    by = {(r["procedure"], r["transport"]): r for r in results}
    out = []
    for p in PROCEDURES:
        base, full, res = (by.get((p, t)) for t in (BASELINE, "coaps-new", "coaps-kept"))
        reb, resumed = by.get((p, "coaps-rebound-addr")), by.get((p, "https-resumed"))
        kept, plain = by.get((p, "https-kept")), by.get((p, "coap-plain"))
        if not (base and full and res):
            continue
        text = ("%s: CoAP/DTLS with a full handshake moves %d B (%.2f x HTTPS with a new "
                "connection, %d B), kept %d B (%.2f x); HTTPS resumed %s, kept alive %s. "
                "Round trips: %d (DTLS full), %d (kept), %d (HTTPS new), %s (HTTPS resumed),"
                " %s (HTTPS kept)."
                % (p, full["total"], full["ratio_bytes"], base["total"], res["total"],
                   res["ratio_bytes"],
                   "%d B (%.2f x)" % (resumed["total"], resumed["ratio_bytes"])
                   if resumed else "-",
                   "%d B (%.2f x)" % (kept["total"], kept["ratio_bytes"]) if kept else "-",
                   full["round_trips"], res["round_trips"], base["round_trips"],
                   resumed["round_trips"] if resumed else "-",
                   kept["round_trips"] if kept else "-"))
        if reb:
            text += (" After a rebinding, against an eIM keying by address, the IPA pays the unanswered ping (%d B more than a "
                     "new association) and waits %.1f s for it before the full handshake "
                     "(radio on: probe_timeout)." % (reb["total"] - full["total"],
                                                     reb["wall_s"] - full["wall_s"]))
        if plain:
            dgrams = res["packets_out"] + res["packets_in"]
            text += (" Plain CoAP: %d B, so DTLS adds %d B when kept (record headers, "
                     "the ping: %.0f B per datagram) and %d B with a handshake."
                     % (plain["total"], res["total"] - plain["total"],
                        (res["total"] - plain["total"]) / float(dgrams or 1),
                        full["total"] - plain["total"]))
        if p == "indirect download":
            text += " " + _download_finding(full, base, by.get((p, "https-kept")))
        out.append(text)
    return "\n".join(textwrap.fill(b, 80, initial_indent="- ", subsequent_indent="  ",
                                   break_on_hyphens=False) for b in out)


def _blocks(n, size):
    return (n + size - 1) // size


def _download_finding(full, base, kept):
    """Where the download's CoAP round trips go (the Block2 transfer of the BPP), and what
    loopback's large TCP segments hide in the HTTPS header estimate."""
    bpp = full["esipa_largest"]
    n = _blocks(bpp, BLOCK)
    text = ("The largest answer, GetBoundProfilePackage's %d B, comes in %d Block2 blocks of "
            "%d B, each fetched with a request of its own (a round trip, two datagrams, a "
            "CoAP header and a DTLS record each way), where HTTPS sends it as one response: "
            "that is most of CoAP's round trips and of its extra bytes (%d round trips over "
            "HTTPS with a new connection, %s kept alive). %d B is the largest block RFC 7959 "
            "allows and the largest whose message fits RFC 7252's 1152 bytes for an unknown "
            "path MTU; blocks of 512 B would take %d blocks, %d more round trips."
            % (bpp, n, BLOCK, base["round_trips"], kept["round_trips"] if kept else "-",
               BLOCK, _blocks(bpp, 512), _blocks(bpp, 512) - n))
    return text


def _probe_wait(results):
    by = {(r["procedure"], r["transport"]): r for r in results}
    reb = by.get((PROCEDURES[0], "coaps-rebound-addr"))
    new = by.get((PROCEDURES[0], "coaps-new"))
    return reb["wall_s"] - new["wall_s"] if reb and new else 0.0


def _security(results, transport):
    return next((r["security"] for r in results if r["transport"] == transport), None) or "-"


def section(results, command, elapsed=None):
    """The section of docs/bench.md (Markdown, ends with a newline)."""
    took = "" if elapsed is None else " (%.1f s here)" % elapsed
    parts = [
        SECTION,
        _fill("What one ESipa procedure costs on the wire over each transport, measured by "
              "`tools/bench_esipa.py`. Taken %s on %s. Reproduce%s:"
              % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 machine(), took)),
        "```sh\n%s\n```" % command,
        _fill("The ratio that matters first: a device polling hourly or daily behind a "
              "carrier NAT finds its UDP mapping gone (NAT UDP timeouts are typically 30 s "
              "to a few minutes): its datagrams arrive from a new address. The poll costs "
              "what coaps-rebound costs if the eIM finds the association anyway (CID, or "
              "the simulator's trial decryption) and what coaps-rebound-addr costs if it "
              "does not (docs/network.md):"),
        headline(results),
        _fill("The chain: the core IPA (`ipa_core.ipa.Ipa.poll_once`) over an `IsdrSession` "
              "to the virtual eUICC, with `HttpsNetwork` or `CoapsNetwork` (ipa_host.net) to "
              "the simulated eIM in the same process over loopback (a second eIM without TLS "
              "for the plain references). Empty poll = GetEimPackage answered "
              "noEimPackageAvailable. PSMO cycle = GetEimPackage carrying an eIM-signed "
              "enable, ProvideEimPackageResult with the signed result and the notifications, "
              "and the eIM's acknowledgement. Indirect download = GetEimPackage carrying a "
              "profileDownloadTriggerRequest (an activation code); InitiateAuthentication, "
              "AuthenticateClient and GetBoundProfilePackage over ESipa, each relayed by the "
              "eIM to a simulated SM-DP+ (ES9+ over HTTPS: that hop is the eIM's and is not "
              "counted); the eUICC installing a %d B (%d KiB) profile package; "
              "ProvideEimPackageResult with the PIR, acknowledged."
              % (PROFILE_SIZE, PROFILE_SIZE // 1024)),
        _fill("Transports: coaps-new / https-new: a new DTLS association / TCP+TLS "
              "connection for the poll, closed with it (https-new pays close_notify, and the "
              "eIM sends no session tickets, since the client would not use them; the DTLS "
              "association is kept in the session cache, as `ipa run` does). coaps-kept: the "
              "second poll, restoring the association the first one kept (a CoAP ping checks "
              "it, no handshake), from the same UDP port. coaps-rebound: the same second "
              "poll after a NAT rebinding (every restore comes from a new source port): if the "
              "eIM keys associations by address, the ping goes unanswered, the IPA waits "
              "probe_timeout and makes a full handshake (coaps-rebound-addr), unless it finds the "
              "association by trial decryption (coaps-rebound: the simulated eIM does, "
              "docs/network.md). coaps-expired: the same port, the "
              "eIM having forgotten the association. https-resumed: the second poll on a new "
              "TCP connection resuming the first one's TLS session (the eIM sends one TLS "
              "1.3 ticket per connection). https-kept: the second poll on the connection the "
              "first one left open. coap-plain, http-plain: no security at all (lab only), "
              "the floor. In the PSMO cycle the enable switches profile, so the IPA drops its "
              "connection before ProvideEimPackageResult (ipa_steps.connect: the modem "
              "re-attaches): HTTPS opens a second TCP + TLS connection (resumed in "
              "https-resumed); CoAPS restores the association it kept (from a new port again "
              "in coaps-rebound). The download does not switch profile: one connection "
              "throughout. CoAP bodies over %d B go in Block1 blocks of %d B, and answers "
              "over %d B come in Block2 blocks of %d B (the size the client asks for), one "
              "round trip per block (`block_size`)." % (BLOCK, BLOCK, BLOCK, BLOCK)),
        _fill("Columns: ESipa msgs / B = ESipa requests the eIM got and the request + "
              "response bodies (the ASN.1 itself); sent / recv B = bytes the client's socket "
              "sent / received, i.e. everything above UDP or TCP (CoAP, DTLS/TLS records and "
              "handshakes, HTTP headers); IP, UDP and TCP headers are NOT in them. pkts = UDP "
              "datagrams, or TCP segments from the kernel (Linux TCP_INFO, read before close: "
              "SYN and pure ACKs included, the FIN exchange after close not). with hdrs B = "
              "total + 28 B per datagram (IPv4 + UDP) or + 40 B per segment (IPv4 + TCP "
              "without options; Linux adds 12 B of timestamps per segment), with the TCP "
              "segments cut at a cellular MSS of 1400 B (the eIM advertises it). "
              "RTTs = times the client waited for the peer (switches from sending to "
              "receiving at the socket, + 1 per new TCP connection for SYN / SYN-ACK). "
              "Ratios: total B and with hdrs B against https-new for the same procedure."),
        table(results),
        "What the figures say:",
        findings(results),
        _fill("What these figures do not cover: loss and retransmission (loopback loses "
              "nothing; tests/integration/test_coaps_lossy.py covers DTLS under loss, not "
              "measured here); the radio's own cost (a poll's energy is dominated by the "
              "time the radio stays connected: the %.0f s coaps-rebound-addr waits for its "
              "unanswered ping count there, not in bytes); TCP timestamps (+12 B per "
              "segment on Linux peers); the FIN exchange after close; DNS; IPv6 (+20 B per "
              "packet). The TLS version is what Python's ssl and the simulated eIM agree on "
              "(%s here); DTLS: %s (python-mbedtls, no Connection ID, no abbreviated "
              "handshake: docs/network.md \"DTLS and NAT rebinding\"). Byte counts vary by "
              "a few bytes between runs (signature and certificate encodings of a fresh test "
              "PKI). `--json` prints every figure, including the ESipa functions and the "
              "wall time of each procedure."
              % (_probe_wait(results), _security(results, "https-new"),
                 _security(results, "coaps-new"))),
    ]
    return "\n\n".join(parts) + "\n"


def write_docs(text, path=DOCS):
    """Replace (or add) this tool's section of docs/bench.md; keep the others."""
    benchdoc.write_section(text, SECTION, path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--write-docs", action="store_true",
                   help="update the '%s' section of docs/bench.md" % SECTION)
    args = p.parse_args(argv)

    def progress(r):
        print("%-17s %-13s %6d B, %2d RTTs" % (r["procedure"], r["transport"], r["total"],
                                               r["round_trips"]), file=sys.stderr, flush=True)

    logging.getLogger("ipa_host.net").setLevel(logging.ERROR)  # "plain: lab use only"
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-esipa-") as tmp:
        try:
            results = run_bench(tmp, progress=progress)
        except (BenchError, IpaError) as e:
            print("bench_esipa: %s: %s" % (type(e).__name__, e), file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps({"machine": machine(), "runs": results}, indent=1))
    else:
        print(table(results))
    if args.write_docs:
        command = " ".join([".venv/bin/python", "tools/bench_esipa.py"]
                           + [shlex.quote(a) for a in argv])
        write_docs(section(results, command, time.monotonic() - t0))
        print("updated %s" % os.path.relpath(DOCS, ROOT), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
