"""The simulated eIM's CoAPS endpoint finds an association whose peer moved (NAT rebinding,
eim_coap.CoapEndpoint._migrate) only for an authenticated, fresh record: a replayed record
or garbage from a new address moves nothing and gets no answer (RFC 9146 6: the address is
updated only for a record that authenticates and is newer). Real DTLS (python-mbedtls) on
both sides over loopback."""

import socket

import pytest

pytest.importorskip("mbedtls")

from ipa_core import coap  # noqa: E402
from ipa_host.net import coaps  # noqa: E402
from ipa_host.sim.eim.eim import EimServer  # noqa: E402


class Recording(coaps.DtlsDatagram):
    """The client, keeping every datagram it sent (to replay one)."""

    def _send_wire(self, data, quiet=False):
        self.sent = getattr(self, "sent", []) + [bytes(data)]
        super()._send_wire(data, quiet)


def ping(d, mid):
    d.send(coap.Message(coap.CON, coap.EMPTY, mid).encode())
    got = d.recv(2000)
    assert got is not None, "no answer to the CoAP ping"
    m = coap.decode(got)
    assert (m.type, m.mid) == (coap.RST, mid)


@pytest.fixture
def eim(tmp_path):
    e = EimServer(str(tmp_path / "eim"), coap_port=0, api_port=None).start()
    try:
        yield e
    finally:
        e.stop()


def test_only_a_fresh_authenticated_record_moves_the_association(eim, monkeypatch):
    cache = {}
    d = Recording("127.0.0.1", eim.coap_port, trust=eim.tls_ca_cert_der, session_cache=cache)
    ping(d, 1)
    home = d.sock.getsockname()
    endpoint = eim._coap
    assert list(endpoint.peers) == [home]
    record = d.sent[-1]  # the encrypted ping

    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    stranger.settimeout(0.5)
    try:
        for data in (record, b"\x17\xfe\xfd" + b"\x00" * 40):  # a replay, then garbage
            stranger.sendto(data, ("127.0.0.1", eim.coap_port))
            with pytest.raises(socket.timeout):
                stranger.recvfrom(4096)
            assert endpoint.moved == 0 and list(endpoint.peers) == [home]
    finally:
        stranger.close()
    ping(d, 2)  # the association still works from its own address

    # the NAT rebinds: the kept association is restored from a new port, found, moved
    d.close()
    monkeypatch.setattr(coaps, "_connect_udp",
                        lambda host, port, where, local=None, f=coaps._connect_udp:
                        f(host, port, where))
    d2 = coaps.DtlsDatagram("127.0.0.1", eim.coap_port, trust=eim.tls_ca_cert_der,
                            session_cache=cache)
    ping(d2, 3)
    assert d2.handshakes_resumed == 1 and d2.handshakes_full == 0
    moved_to = d2.sock.getsockname()
    assert moved_to != home and endpoint.moved == 1
    assert list(endpoint.peers) == [moved_to]
    d2._drop(notify=True)
