"""CoAP over DTLS interop with libcoap (Debian libcoap3-bin), both ways.

- our client (ipa_host.net.coaps: DtlsDatagram + ipa_core.coap.CoapClient) against
  `coap-server-openssl -c cert -j key` (certificate from tests/host/tls_certs.py);
- libcoap's `coap-client-openssl -R ca.crt` (and plain `coap-client`) against OUR eIM's
  CoAP endpoint (ipa_host.sim.eim.eim_coap) with a hand-built GetEimPackageRequest.

Servers run on 127.0.0.1 on free ports and are killed at the end.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from ipa_core import coap
from ipa_core.errors import TransportError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tls_certs  # noqa: E402

LIFETIME = 120  # seconds: `timeout` kills the server even if this process dies
HINT = "install Debian's libcoap3-bin (tools/setup.sh does)"

try:  # noqa: E402
    from ipa_host.net.coaps import CoapsNetwork, DtlsDatagram, pack_datagrams
except ImportError as e:  # pragma: no cover
    CoapsNetwork = None
    _IMPORT_ERROR = str(e)


def _need(name):
    if CoapsNetwork is None:
        pytest.fail("python-mbedtls is missing: pip install -e .[host] (%s)" % _IMPORT_ERROR)
    path = shutil.which(name)
    if not path:
        pytest.fail("libcoap's %s is not installed: %s" % (name, HINT))
    return path


def _free_port_pair():
    """A UDP port p with p+1 free too (coap-server listens for DTLS on p+1)."""
    for _ in range(50):
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind(("127.0.0.1", 0))
        p = a.getsockname()[1]
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            b.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
        finally:
            a.close()
            b.close()
    pytest.fail("no two adjacent free UDP ports on 127.0.0.1")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("coaps-pki")
    ca = tls_certs.make_ca()
    srv = tls_certs.make_cert(ca, dns=("localhost",), ips=("127.0.0.1",))
    cert, key = srv.write(d, "server")
    other = tls_certs.make_ca(cn="Some other CA")
    return {"ca": ca, "srv": srv, "cert": cert, "key": key, "other": other, "dir": d}


@pytest.fixture(scope="module")
def libcoap(pki):
    """coap-server-openssl with echoing dynamic resources; yields its DTLS port."""
    binary = _need("coap-server-openssl")
    port = _free_port_pair()
    cmd = ["timeout", str(LIFETIME), binary, "-A", "127.0.0.1", "-p", str(port), "-d", "20",
           "-e", "-c", pki["cert"], "-j", pki["key"], "-v", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            d = DtlsDatagram("127.0.0.1", port + 1, trust=pki["ca"].cert_der, timeout=1)
            try:
                c = coap.CoapClient(d, ack_timeout_ms=300, max_retransmit=0)
                c.request("GET", "/")
                break
            except TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("coap-server-openssl did not answer over DTLS: %s" % " ".join(cmd))
                time.sleep(0.1)
            finally:
                d.close()
        yield port + 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _body(n):
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def test_get_over_dtls(libcoap, pki):
    d = DtlsDatagram("127.0.0.1", libcoap, trust=pki["ca"].cert_der)
    with coap.CoapClient(d) as c:
        code, body, _o = c.request("GET", "/")
        assert coap.code_str(code) == "2.05" and b"libcoap" in body
    assert d.handshakes_full == 1 and d.handshakes_resumed == 0
    assert d.bytes_sent > 300 and d.bytes_received > 500  # the handshake is counted


def test_blockwise_post_over_dtls_like_the_ipa(libcoap, pki):
    data = _body(3000)
    with CoapsNetwork("coaps://127.0.0.1:%d" % libcoap, trust=pki["ca"].cert_der,
                      block_size=256) as net:
        status, echo = net.post("/ipa/esipa", data, "application/octet-stream")
        assert (status, echo) == (201, data)  # 2.01 Created, echoed back in Block2 blocks
        assert net._client.exchanges == 12 + 11
        assert net.bytes_sent > 3000 and net.bytes_received > 3000


def test_the_eims_own_certificate_and_a_pin_are_trusted_too(libcoap, pki):
    for kw in ({"trust": pki["srv"].cert_der}, {"trust": pki["srv"].spki_der},
               {"trust": pki["srv"].point}, {"ca_file": str(pki["dir"] / "ca.pem")}):
        if "ca_file" in kw:
            with open(kw["ca_file"], "wb") as f:
                f.write(pki["ca"].cert_pem)
        with CoapsNetwork("coaps://127.0.0.1:%d" % libcoap, **kw) as net:
            assert net.post("/ipa/t", b"x", "application/octet-stream")[0] in (201, 204)


def test_wrong_ca_is_a_clear_error_and_nothing_is_sent(libcoap, pki):
    net = CoapsNetwork("coaps://127.0.0.1:%d" % libcoap, trust=pki["other"].cert_der, timeout=5)
    with pytest.raises(TransportError) as e:
        net.post("/ipa/x", b"secret", "application/octet-stream")
    msg = str(e.value)
    assert "DTLS certificate verification of 127.0.0.1:%d failed" % libcoap in msg
    assert "trusted: certificate CN=Some other CA" in msg
    assert net.handshakes_full == 0


def test_wrong_pin_and_wrong_name_are_refused(libcoap, pki):
    other_key = tls_certs.make_cert(pki["ca"], dns=("x",)).spki_der
    net = CoapsNetwork("coaps://127.0.0.1:%d" % libcoap, trust=other_key, timeout=5)
    with pytest.raises(TransportError, match="DTLS public key pin mismatch"):
        net.post("/ipa/x", b"x", "application/octet-stream")
    net = CoapsNetwork("coaps://127.0.0.1:%d" % libcoap, trust=pki["ca"].cert_der, timeout=5,
                       server_hostname="eim.example")
    # mbedTLS checks the name it was given for SNI itself (and says only "verification
    # failed"); an IP literal is checked by us ("not valid for ...").
    with pytest.raises(TransportError, match=r"\(eim.example\).* failed|not valid for"):
        net.post("/ipa/x", b"x", "application/octet-stream")


def test_kept_association_is_resumed_without_a_handshake(libcoap, pki):
    cache = {}
    url = "coaps://127.0.0.1:%d" % libcoap
    first = CoapsNetwork(url, trust=pki["ca"].cert_der, session_cache=cache)
    assert first.post("/ipa/r", b"one", "application/octet-stream")[1] == b"one"
    first.close()
    assert len(cache) == 1
    second = CoapsNetwork(url, trust=pki["ca"].cert_der, session_cache=cache)
    assert second.post("/ipa/r", b"two", "application/octet-stream")[1] == b"two"
    second.close()
    assert (first.handshakes_full, first.handshakes_resumed) == (1, 0)
    assert (second.handshakes_full, second.handshakes_resumed) == (0, 1)
    assert second.bytes_sent + second.bytes_received < \
        (first.bytes_sent + first.bytes_received) / 4
    # Another trust anchor never reuses an association verified under the first one.
    third = CoapsNetwork(url, trust=pki["srv"].cert_der, session_cache=cache)
    third.post("/ipa/r", b"3", "application/octet-stream")
    third.close()
    assert (third.handshakes_full, third.handshakes_resumed) == (1, 0)


def test_forgotten_association_falls_back_to_a_full_handshake(pki, tmp_path):
    from ipa_host.sim.eim.eim import EimServer

    eim = EimServer(str(tmp_path / "eim"), coap_port=0).start()
    cache = {}
    try:
        req = _get_eim_package_request(eim.pki_eid)
        n1 = CoapsNetwork(eim.coap_url, trust=eim.tls_ca_cert_der, session_cache=cache)
        assert n1.post("/gsma/rsp2/asn1", req, "application/x-gsma-rsp-asn1")[0] == 204
        n1.close()
        eim._coap.peers.clear()  # the eIM forgets every association (a restart, idle expiry)
        n2 = CoapsNetwork(eim.coap_url, trust=eim.tls_ca_cert_der, session_cache=cache)
        status, answer = n2.post("/gsma/rsp2/asn1", req, "application/x-gsma-rsp-asn1")
        n2.close()
        assert (status, answer) == (204, NO_PACKAGE)
        assert (n2.handshakes_full, n2.handshakes_resumed) == (1, 0)
    finally:
        eim.stop()


def test_plain_coap_needs_allow_plain():
    with pytest.raises(ValueError, match="plain coap:// refused"):
        CoapsNetwork("coap://127.0.0.1:5683")
    with pytest.raises(ValueError, match="expected coaps://"):
        CoapsNetwork("https://127.0.0.1")


def test_pack_datagrams_keeps_records_whole():
    recs = [bytes([22, 0xFE, 0xFD]) + bytes(8) + bytes([0, n]) + bytes(n) for n in (100, 200, 50)]
    assert pack_datagrams(b"".join(recs), mtu=330) == [recs[0] + recs[1], recs[2]]


# ---- libcoap's client against our eIM

NO_PACKAGE = bytes.fromhex("BF4F03020101")  # GetEimPackageResponse eimPackageError 1


def _get_eim_package_request(eid):
    # GetEimPackageRequest [79] { eidValue [APPLICATION 26] (5A) 16 bytes }
    return bytes.fromhex("BF4F125A10" + eid)


@pytest.fixture(params=["coaps", "coap"])
def eim(request, tmp_path):
    from ipa_host.sim.eim.eim import EimServer

    _need("coap-client-openssl")
    server = EimServer(str(tmp_path / "eim"), coap_port=0, tls=request.param == "coaps").start()
    try:
        yield server
    finally:
        server.stop()


def test_libcoap_client_against_our_eim(eim, tmp_path):
    req = tmp_path / "req.der"
    out = tmp_path / "answer.der"
    req.write_bytes(_get_eim_package_request(eim.pki_eid))
    cmd = [shutil.which("coap-client-openssl"), "-m", "post", "-f", str(req), "-o", str(out),
           "-b", "16", "-B", "10"]
    if eim.tls:
        cmd += ["-R", eim.tls_files["ca_cert"]]
    cmd.append(eim.coap_url + "/gsma/rsp2/asn1")
    r = subprocess.run(cmd, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert out.read_bytes() == NO_PACKAGE
    recs = eim.requests
    assert [(q["binding"], q["function"], q["eid"]) for q in recs] == \
        [(eim.coap_url.split(":")[0], "getEimPackage", eim.pki_eid)]
    assert recs[0]["request"] == req.read_bytes()  # 21 bytes, reassembled from 16-byte blocks


def test_libcoap_client_is_refused_by_a_wrong_ca(tmp_path, pki):
    from ipa_host.sim.eim.eim import EimServer

    _need("coap-client-openssl")
    server = EimServer(str(tmp_path / "eim"), coap_port=0).start()
    try:
        wrong = tmp_path / "wrong.pem"
        wrong.write_bytes(pki["other"].cert_pem)
        req = tmp_path / "req.der"
        req.write_bytes(_get_eim_package_request(server.pki_eid))
        r = subprocess.run([shutil.which("coap-client-openssl"), "-m", "post", "-f", str(req),
                            "-R", str(wrong), "-B", "5",
                            server.coap_url + "/gsma/rsp2/asn1"],
                           capture_output=True, timeout=30)
        assert server.requests == []
        assert b"certificate verify failed" in r.stdout + r.stderr  # libcoap exits 0 anyway
    finally:
        server.stop()


def test_plain_coap_to_a_closed_port_says_port_unreachable():
    from ipa_host.net.coaps import UdpDatagram

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: the kernel answers ICMP port unreachable
    d = UdpDatagram("127.0.0.1", port)
    try:
        d.send(b"\x40\x01\x00\x01")
        with pytest.raises(TransportError, match="CoAP to 127.0.0.1:%d: port unreachable "
                                                 r"\(no CoAP server there\)" % port):
            d.recv(2000)
    finally:
        d.sock.close()
