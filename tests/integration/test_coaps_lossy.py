"""A PSMO cycle over CoAP/DTLS through a lossy link: datagrams dropped, duplicated and
reordered (RFC 7252 4.2/4.5 retransmission and deduplication, RFC 6347 4.1.2.6 replay
window and 4.2.4 handshake retransmission), and the result still arrives exactly once.

The real core IPA (ipa_core.ipa.Ipa, driven in-process: `ipa poll` has no option for the
CoAP ack timeout) over CoapsNetwork with a short ACK_TIMEOUT, through LossyRelay (a loopback
UDP relay with a seeded, bounded fault pattern) to the simulated eIM's CoAPS endpoint, with
the virtual eUICC.
"""

import os
import random
import select
import socket
import threading
import time

import pytest

pytest.importorskip("mbedtls")

from ipa_core import apdu, es10  # noqa: E402
from ipa_core.ipa import Ipa  # noqa: E402
from ipa_core.ipa_store import MemoryStore  # noqa: E402
from ipa_host.net.coaps import CoapsNetwork  # noqa: E402
from ipa_host.sim.eim.eim import EimServer  # noqa: E402
from ipa_host.sim.home import DEMO_EIM_ID, DEMO_PROFILES, eim_dir, open_home_euicc, sim_dir  # noqa: E402,E501

PROFILE_A, PROFILE_B = DEMO_PROFILES[0]["iccid"], DEMO_PROFILES[1]["iccid"]
UP, DOWN = "up", "down"  # client -> eIM, eIM -> client


class LossyRelay:
    """Loopback UDP relay between one client and `upstream` (host, port) that drops,
    duplicates and reorders datagrams by a pattern drawn from random.Random(seed).

    Bounded: at most `max_drops` drops in all and never two in a row in one direction (so
    every message gets through on its first retransmission); a reordered datagram is held
    until the next one in its direction has gone (that one is never dropped), or `hold_s`
    at most. `log` records every
    (direction, action) taken; counts in `stats`.
    """

    ACTIONS = ("pass", "drop", "dup", "hold")

    def __init__(self, upstream, seed, weights=(55, 15, 15, 15), max_drops=6, hold_s=0.4):
        self.upstream = upstream
        self.rng = random.Random(seed)
        self.weights = weights
        self.max_drops = max_drops
        self.hold_s = hold_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.ups = {}  # client address -> socket connected to the eIM (one per client port)
        self.clients = {}  # that socket -> the client address
        self.held = {UP: None, DOWN: None}  # (time, send function, datagram)
        self.last_drop = {UP: False, DOWN: False}
        self.stats = {"pass": 0, "drop": 0, "dup": 0, "hold": 0, "reordered": 0}
        self.log = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lossy-relay")

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        for s in list(self.ups.values()) + [self.sock]:
            s.close()

    def _action(self, direction):
        a = self.rng.choices(self.ACTIONS, self.weights)[0]
        if self.held[direction] is not None:
            a = "pass"  # the next one overtakes the held one: a reorder, not a loss
        if a == "drop" and (self.last_drop[direction] or self.stats["drop"] >= self.max_drops):
            a = "pass"
        self.last_drop[direction] = a == "drop"
        return a

    def _forward(self, direction, send, data):
        a = self._action(direction)
        self.log.append((direction, a))
        self.stats[a] += 1
        if a == "drop":
            return
        if a == "hold":
            self.held[direction] = (time.monotonic(), send, data)
            return
        send(data)
        if a == "dup":
            send(data)
        if self.held[direction] is not None:  # the held one goes after a later datagram
            _t, hsend, hdata = self.held[direction]
            self.held[direction] = None
            hsend(hdata)
            self.stats["reordered"] += 1

    def _release_old(self):
        for d, h in self.held.items():
            if h is not None and time.monotonic() - h[0] >= self.hold_s:
                self.held[d] = None
                h[1](h[2])

    def _run(self):
        while not self._stop.is_set():
            socks = [self.sock] + list(self.ups.values())
            ready, _w, _x = select.select(socks, [], [], 0.01)
            for s in ready:
                try:
                    if s is self.sock:
                        data, addr = s.recvfrom(65536)
                        up = self.ups.get(addr)
                        if up is None:
                            up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                            up.connect(self.upstream)
                            self.clients[up] = addr
                            self.ups[addr] = up
                        self._forward(UP, up.send, data)
                    else:
                        data = s.recv(65536)
                        client = self.clients[s]
                        self._forward(DOWN, lambda d, c=client: self.sock.sendto(d, c), data)
                except OSError:
                    pass  # an ICMP error from a closed peer: the datagram is lost, as on a link
            self._release_old()


SEEDS = (20261125, 42)  # patterns with at least 2 drops, 2 duplicates and 1 reorder


@pytest.fixture(params=SEEDS)
def lab(tmp_path, request):
    h = str(tmp_path / "home")
    card = open_home_euicc(h)
    server = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"),
                       association_token=1, coap_port=0, api_port=None).start()
    relay = LossyRelay(("127.0.0.1", server.coap_port), seed=request.param).start()
    session = apdu.IsdrSession(card).open()
    try:
        yield card, server, relay, session
    finally:
        session.close()
        relay.stop()
        server.stop()


def enabled_profile(session):
    for p in es10.get_profiles_info(session):
        if p.get("profileState") == 1:
            return p.get("iccid")
    return None


def test_psmo_cycle_survives_drops_duplicates_and_reordering(lab):
    card, server, relay, session = lab
    eid = card.eid
    assert enabled_profile(session) == PROFILE_A
    server.queue_psmo(eid, [{"op": "enable", "iccid": PROFILE_B}])
    net = CoapsNetwork("coaps://127.0.0.1:%d" % relay.port, trust=server.tls_ca_cert_der,
                       session_cache={}, timeout=30, ack_timeout_ms=150, max_retransmit=4,
                       block_size=512)  # SEEDS were drawn for the datagrams of 512-byte blocks
    ipa = Ipa(session, net, MemoryStore(), config={"eim_id": DEMO_EIM_ID})
    t0 = time.monotonic()
    try:
        r = ipa.poll_once()
    finally:
        net.close()
    took = time.monotonic() - t0
    assert r["error"] is None, r["error"]
    assert r["package"] == "euiccPackageRequest"
    assert r["result"]["operations"][0][:2] == ["enableResult", 0]
    assert r["delivered"] and r["acknowledged"]
    # The link was really hostile: every kind of fault happened (each drop forces a resend).
    assert relay.stats["drop"] >= 2 and relay.stats["dup"] >= 2, relay.stats
    assert relay.stats["reordered"] >= 1, "%r %r" % (relay.stats, relay.log)
    # Exactly one valid result at the eIM, although requests came more than once.
    results = server.results(eid)
    assert len(results) == 1, results
    epr = results[0]["euiccPackageResult"]
    assert epr["signatureValid"] and epr["eimIdMatches"]
    assert epr["results"][0]["name"] == "enableResult" and epr["results"][0]["value"] == 0
    assert server.queue(eid) == []
    functions = [q["function"] for q in server.requests]
    assert functions.count("getEimPackage") == 1, functions
    assert functions.count("provideEimPackageResult") == 1, functions
    # The profile is enabled on the eUICC.
    assert enabled_profile(session) == PROFILE_B
    # Bounded, not timed: the faults cost ~3 s here; a handshake that exhausted its
    # 30 s budget would have failed above.
    assert took < 60, took
    print("lossy relay: %r, %.1f s" % (relay.stats, took))
