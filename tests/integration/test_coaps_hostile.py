"""Hostile CoAP/DTLS peers (issue 17): an eIM endpoint with the real eIM's DTLS identity
that answers ESipa over CoAP badly on purpose, against the real client
(ipa_host.net.coaps.CoapsNetwork over python-mbedtls DTLS, the core's ipa_core.coap engine)
and the real core IPA (ipa_core.ipa.Ipa, in-process as in test_coaps_lossy.py: the ack
timeouts are set short) with the virtual eUICC; one case runs the `ipa` command itself.

Each hostile behaviour ends in a bounded time with a clear error (or, for duplicates and
ping storms, in a normal cycle), holds a bounded amount of memory, and leaves the IPA's
state intact: the same Ipa (same ISD-R session, same store) then completes a PSMO with the
good eIM, which gets exactly one signed result.

Behaviours: malformed options, a token mismatch, an RST, a Block2 stream that never ends,
a Size2 of 10 MB, out-of-order and duplicate blocks, a ping storm around the answer and
one that never stops.
"""

import os
import time
import tracemalloc

import pytest

pytest.importorskip("mbedtls")

from ipa_core import apdu, coap, es10  # noqa: E402
from ipa_core.ipa import Ipa  # noqa: E402
from ipa_core.ipa_store import MemoryStore  # noqa: E402
from ipa_host.net.coaps import CoapsNetwork  # noqa: E402
from ipa_host.sim.eim.eim import EimServer  # noqa: E402
from ipa_host.sim.eim.eim_coap import CoapEndpoint  # noqa: E402
from ipa_host.sim.home import DEMO_EIM_ID, DEMO_PROFILES, eim_dir, open_home_euicc, sim_dir  # noqa: E402,E501
from ipa_util import IPA  # noqa: E402 - tests/integration/ipa_util.py

PROFILE_A, PROFILE_B = DEMO_PROFILES[0]["iccid"], DEMO_PROFILES[1]["iccid"]
STORM = 40  # CoAP pings a storm sends around one answer (more fill the socket's receive
# buffer and the answer itself is dropped: then the cycle ends as endless_pings does)
ENDLESS = 300  # pings endless_pings sends for each request, and never an answer
MAX_PEAK = 24 << 20  # bytes held at once during a hostile poll (client, DTLS, and this peer)


class HostileCoaps(CoapEndpoint):
    """A CoAPS endpoint with the eIM's own certificate and key, so the IPA trusts it; its
    CoAP layer answers by `mode` (see the module docstring). `super()._coap` is the real
    eIM's answer where a mode needs one. Counts what it did in `stats`."""

    def __init__(self, server, mode):
        CoapEndpoint.__init__(self, server, cert_file=server.tls_files["server_cert"],
                              key_file=server.tls_files["server_key"])
        self.mode = mode
        self.stats = {"requests": 0, "sent": 0, "pings": 0}
        self._ping_mid = 0x4000

    def _coap(self, peer, data):
        try:
            m = coap.decode(data)
        except Exception:
            return None
        if m.type in (coap.ACK, coap.RST) or m.code == coap.EMPTY:
            return None  # the client's ACK / RST to one of our pings
        self.stats["requests"] += 1
        return getattr(self, "_" + self.mode)(peer, m, data)

    def _extra(self, peer, datagram):
        """Send one more datagram in this DTLS association (before the returned answer)."""
        peer.buf.write(datagram)
        self._flush(peer)  # one record a datagram (python-mbedtls joins unflushed writes)
        self.stats["sent"] += 1

    def _ping(self, peer):
        self._ping_mid = (self._ping_mid + 1) & 0xFFFF
        self._extra(peer, coap.Message(coap.CON, coap.EMPTY, self._ping_mid).encode())
        self.stats["pings"] += 1

    @staticmethod
    def _ack(m, code, options=None, payload=b"", token=None):
        return coap.Message(coap.ACK, code, m.mid, m.token if token is None else token,
                            options or [], payload).encode()

    # ---- the modes -------------------------------------------------------------------

    def _malformed_options(self, peer, m, data):
        # Option delta 13 announces an extension byte that is not there (RFC 7252 3.1).
        head = bytes((0x60 | len(m.token), coap.CONTENT, m.mid >> 8, m.mid & 0xFF))
        return head + m.token + b"\xd1"

    def _token_mismatch(self, peer, m, data):
        return self._ack(m, coap.CHANGED, payload=b"\xbf\x4f\x03\x80\x01\x01",
                         token=bytes(b ^ 0x55 for b in m.token) or b"\x01")

    def _rst(self, peer, m, data):
        return coap.Message(coap.RST, coap.EMPTY, m.mid).encode()

    def _endless_block2(self, peer, m, data):
        b2 = m.block(coap.BLOCK2)
        num = b2[0] if b2 else 0
        return self._ack(m, coap.CHANGED, [(coap.BLOCK2, coap.block_encode(num, True, 6))],
                         b"\x30" * 1024)

    def _size2_10mb(self, peer, m, data):
        return self._ack(m, coap.CHANGED, [(coap.BLOCK2, coap.block_encode(0, True, 6)),
                                           (coap.SIZE2, coap.uint_encode(10 << 20))],
                         b"\x30" * 1024)

    def _out_of_order(self, peer, m, data):
        b2 = m.block(coap.BLOCK2)
        num = b2[0] + 1 if b2 and b2[0] else 0  # block 0 first, then one ahead of the ask
        return self._ack(m, coap.CHANGED, [(coap.BLOCK2, coap.block_encode(num, True, 2))],
                         b"\x30" * 64)

    def _duplicate_blocks(self, peer, m, data):
        answer = CoapEndpoint._coap(self, peer, data)
        if answer is not None:
            self._extra(peer, answer)  # the same answer twice, and the last one once more
            if getattr(self, "_last", None) is not None:
                self._extra(peer, self._last)
            self._last = answer
        return answer

    def _ping_storm(self, peer, m, data):
        for _ in range(STORM // 2):
            self._ping(peer)
        answer = CoapEndpoint._coap(self, peer, data)
        for _ in range(STORM // 2):
            self._ping(peer)
        return answer

    def _endless_pings(self, peer, m, data):
        for _ in range(ENDLESS):
            self._ping(peer)
        return None


@pytest.fixture
def lab(tmp_path):
    h = str(tmp_path / "home")
    card = open_home_euicc(h)
    server = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"),
                       association_token=1, coap_port=0, api_port=None).start()
    session = apdu.IsdrSession(card).open()
    store = MemoryStore()
    try:
        yield card, server, session, store
    finally:
        session.close()
        server.stop()


def network(server, port, block_size=1024):
    return CoapsNetwork("coaps://127.0.0.1:%d" % port, trust=server.tls_ca_cert_der,
                        session_cache={}, timeout=5, ack_timeout_ms=100, max_retransmit=2,
                        block_size=block_size)


def enabled_profile(session):
    for p in es10.get_profiles_info(session):
        if p.get("profileState") == 1:
            return p.get("iccid")
    return None


def poll(session, store, net):
    ipa = Ipa(session, net, store, config={"eim_id": DEMO_EIM_ID})
    t0 = time.monotonic()
    tracemalloc.start()
    try:
        r = ipa.poll_once()
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        net.close()
    return r, time.monotonic() - t0, peak


def good_cycle_after(card, server, session, store, profile):
    """The state is intact: the same session and store run a PSMO with the good eIM."""
    before = len(server.results(card.eid))
    server.queue_psmo(card.eid, [{"op": "enable", "iccid": profile}])
    r, _took, _peak = poll(session, store, network(server, server.coap_port))
    assert r["error"] is None, r["error"]
    assert r["result"]["operations"][0][:2] == ["enableResult", 0]
    assert r["delivered"] and r["acknowledged"]
    assert enabled_profile(session) == profile
    assert len(server.results(card.eid)) == before + 1
    assert server.queue(card.eid) == []


# mode -> (words in the error, block size the client asks for)
FAILING = {
    "malformed_options": ("no ACK or response", 1024),
    "token_mismatch": ("no ACK or response", 1024),
    "rst": ("reset", 1024),
    "endless_block2": ("Block2: expected at most 1048576 bytes, got more", 1024),
    "size2_10mb": ("Block2: Size2 10485760 is above max_body 1048576", 1024),
    "out_of_order": ("Block2: expected the block at offset 64, got block 2", 64),
    "endless_pings": ("no ACK or response", 1024),
}


@pytest.mark.parametrize("mode", sorted(FAILING))
def test_hostile_peer_ends_in_a_clear_error_and_the_state_is_intact(lab, mode):
    card, server, session, store = lab
    words, block_size = FAILING[mode]
    # A package waits at the good eIM: the hostile peer must not make it run or vanish.
    server.queue_psmo(card.eid, [{"op": "enable", "iccid": PROFILE_B}])
    bad = HostileCoaps(server, mode).start()
    try:
        r, took, peak = poll(session, store, network(server, bad.port, block_size))
    finally:
        bad.stop()
    assert r["error"] is not None and r["package"] is None, r
    assert words in r["error"]["message"], r["error"]
    assert r["error"]["type"] in ("ProtocolError", "TimeoutError_", "CoapReset"), r["error"]
    assert bad.stats["requests"] >= 1
    # Bounded: the short ack timeouts make every wait end within seconds; a peer that kept
    # the client going (an endless stream, a storm) is cut by max_body or the request bound.
    assert took < 30, took
    assert peak < MAX_PEAK, peak
    # Nothing ran, nothing was lost: the package still waits, the eUICC is as it was.
    assert enabled_profile(session) == PROFILE_A
    assert len(server.queue(card.eid)) == 1 and server.results(card.eid) == []
    server.clear_queue(card.eid)
    good_cycle_after(card, server, session, store, PROFILE_B)


@pytest.mark.parametrize("mode", ["duplicate_blocks", "ping_storm"])
def test_duplicates_and_ping_storms_do_not_stop_a_cycle(lab, mode):
    """Duplicate and stale blocks are dropped, pings answered with RST; the PSMO completes
    (64-byte blocks: the package and the result both go block-wise)."""
    card, server, session, store = lab
    server.queue_psmo(card.eid, [{"op": "enable", "iccid": PROFILE_B}])
    bad = HostileCoaps(server, mode).start()
    try:
        net = network(server, bad.port, block_size=64)
        r, took, peak = poll(session, store, net)
    finally:
        bad.stop()
    assert r["error"] is None, r["error"]
    assert r["result"]["operations"][0][:2] == ["enableResult", 0]
    assert r["delivered"] and r["acknowledged"]
    assert bad.stats["requests"] > 4  # block-wise both ways
    if mode == "ping_storm":
        assert bad.stats["pings"] >= STORM * bad.stats["requests"] // 2
    else:
        assert bad.stats["sent"] >= bad.stats["requests"]
    assert took < 30, took
    assert peak < MAX_PEAK, peak
    assert enabled_profile(session) == PROFILE_B
    results = server.results(card.eid)
    assert len(results) == 1 and results[0]["euiccPackageResult"]["signatureValid"]
    good_cycle_after(card, server, session, store, PROFILE_A)


def test_ipa_poll_against_an_endless_block2_peer_then_the_good_eim(tmp_path):
    """As a user runs it: `ipa poll` at a CoAPS peer whose Block2 stream never ends exits 1
    with the error, then `ipa poll` at the good eIM runs the waiting package."""
    import subprocess

    h = str(tmp_path / "home")
    card = open_home_euicc(h)
    eid = card.eid
    del card  # the `ipa` command opens the home's eUICC itself
    server = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"),
                       association_token=1, coap_port=0, api_port=None).start()
    bad = HostileCoaps(server, "endless_block2").start()
    try:
        server.queue_psmo(eid, [{"op": "enable", "iccid": PROFILE_B}])
        r = subprocess.run([IPA, "--home", h, "--eim-url", "coaps://127.0.0.1:%d" % bad.port,
                            "poll"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "Block2: expected at most 1048576 bytes, got more" in r.stdout, r.stdout
        assert "Traceback" not in r.stderr
        assert len(server.queue(eid)) == 1 and server.results(eid) == []
        r = subprocess.run([IPA, "--home", h, "--eim-url", server.coap_url, "poll"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "  enableResult                 ok" in r.stdout.splitlines(), r.stdout
        assert len(server.results(eid)) == 1
    finally:
        bad.stop()
        server.stop()
