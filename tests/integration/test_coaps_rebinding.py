"""ESipa over CoAP/DTLS across a NAT rebinding (issue 19 "done when"): `ipa run` polls the
simulated eIM through a UDP relay that plays a carrier NAT; between polls the relay rebinds
(its outside socket changes, so the eIM sees the device at a new source port). The IPA
restores its kept DTLS association (ipa_host.net.coaps "Resumption") and the eIM finds it at
the new address (eim_coap._migrate): the polls go on without a new handshake. Against an eIM
keying associations by address only, the same rebinding costs a full handshake, and the
polls still work.

Real parts: the `ipa` CLI as a subprocess, the eIM's CoAPS endpoint (python-mbedtls), a UDP
relay on loopback. Every wait is bounded."""

import select
import socket
import threading

import pytest

from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.home import eim_dir, open_home_euicc
from ipa_util import eim_polls, run_service, service_config  # tests/integration/ipa_util.py

pytest.importorskip("mbedtls")

def client_hello(d):
    """A DTLS handshake record carrying a ClientHello (RFC 6347 4.1 / 4.2.2)."""
    return len(d) > 25 and d[0] == 22 and d[13] == 1


class Nat:
    """A UDP relay: the device talks to `port`; the relay talks to the eIM from an outside
    socket that `rebind()` replaces (a new source port, as a NAT's new mapping)."""

    def __init__(self, target):
        self.target = target
        self.inside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.inside.bind(("127.0.0.1", 0))
        self.port = self.inside.getsockname()[1]
        self.outside = self._new_outside()
        self.device = None
        self.hellos = 0  # ClientHellos the device sent
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _new_outside(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        return s

    def rebind(self):
        with self.lock:
            old, self.outside = self.outside, self._new_outside()
        old.close()
        return self.outside.getsockname()[1]

    def _run(self):
        while not self.stop.is_set():
            with self.lock:
                socks = [self.inside, self.outside]
            try:
                ready, _w, _x = select.select(socks, [], [], 0.05)
            except (OSError, ValueError):  # the old outside socket closed by rebind()
                continue
            for s in ready:
                try:
                    data, addr = s.recvfrom(65536)
                except OSError:
                    continue
                if s is self.inside:
                    self.device = addr
                    self.hellos += client_hello(data)
                    with self.lock:
                        self.outside.sendto(data, self.target)
                elif self.device is not None:
                    self.inside.sendto(data, self.device)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.inside.close()
        self.outside.close()


@pytest.fixture
def lab(tmp_path):
    h = str(tmp_path / "home")
    open_home_euicc(h)
    eim = EimServer(eim_dir(h), association_token=1, coap_port=0, api_port=None).start()
    nat = Nat(("127.0.0.1", eim.coap_port))
    try:
        yield h, service_config(tmp_path), eim, nat
    finally:
        nat.close()
        eim.stop()


def run_across_rebinding(h, config, eim, nat):
    """`ipa run`: one poll, a rebinding, two more polls -> (ClientHellos before the
    rebinding, after it, stderr)."""
    seen = {}

    def rebind():
        seen["hellos"], seen["port"] = nat.hellos, nat.outside.getsockname()[1]
        assert nat.rebind() != seen["port"]

    _out, err = run_service(["--config", config, "--home", h, "--eim-url",
                       "coaps://127.0.0.1:%d" % nat.port],
                      [(lambda: eim_polls(eim) >= 1, rebind),
                       (lambda: eim_polls(eim) >= 3, None)])
    return seen["hellos"], nat.hellos - seen["hellos"], err


def test_polls_survive_a_nat_rebinding_without_a_handshake(lab):
    h, config, eim, nat = lab
    before, after, err = run_across_rebinding(h, config, eim, nat)
    assert before >= 1  # the first poll's handshake (ClientHello, again with the cookie)
    assert after == 0, err  # no new handshake after the rebinding
    assert eim._coap.moved == 1  # found once at the new port, then known there
    assert not eim.handshake_failures, list(eim.handshake_failures)


def test_an_eim_keying_by_address_needs_a_new_handshake(lab):
    h, config, eim, nat = lab
    eim._coap.find_moved = False
    before, after, err = run_across_rebinding(h, config, eim, nat)
    assert before >= 1 and after >= 1, err  # the kept association is useless: handshake
    assert eim._coap.moved == 0


def test_several_records_in_one_datagram_are_all_read(tmp_path):
    """Two CoAP pings in one datagram (two DTLS records, as RFC 6347 4.1.1 allows): the eIM
    reads both (python-mbedtls alone reads only the first of a datagram) and answers each
    in a datagram of its own, so a client that takes a datagram for one CoAP message reads
    both answers; the IPA's client reads two answers that come in one datagram."""
    from ipa_core import coap
    from ipa_host.net.coaps import DtlsDatagram, split_records

    h = str(tmp_path / "home")
    open_home_euicc(h)
    eim = EimServer(eim_dir(h), association_token=1, coap_port=0, api_port=None).start()
    dd = DtlsDatagram("127.0.0.1", eim.coap_port, trust=eim.tls_ca_cert_der, timeout=10)
    try:
        dd.send(coap.Message(coap.CON, coap.EMPTY, 1).encode())  # the handshake, then a ping
        assert coap.decode(dd.recv(5000)).type == coap.RST
        for mid in (2, 3):
            dd.buf.write(coap.Message(coap.CON, coap.EMPTY, mid).encode())
        out = dd.buf.peek_outgoing(1 << 16)
        dd.buf.consume_outgoing(len(out))
        assert len(split_records(out)) == 2
        dd.sock.send(out)  # both records in one datagram
        got = []
        while len(got) < 3:
            ready, _w, _x = select.select([dd.sock], [], [], 2.0)
            if not ready:
                break
            got.append(dd.sock.recv(65536))
        assert [len(split_records(d)) for d in got] == [1, 1], [d.hex() for d in got]
        # And the client side: both answers in one datagram are both read.
        answers = [coap.decode(r) for r in dd._decrypt(got[0] + got[1])]
        assert sorted((a.type, a.mid) for a in answers) == [(coap.RST, 2), (coap.RST, 3)]
    finally:
        dd.close()
        eim.stop()
