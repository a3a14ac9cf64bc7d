"""Interop: ipa_core.coap.CoapClient against libcoap's coap-server (Debian libcoap3-bin).

The server runs on 127.0.0.1 on a free port for at most SERVER_LIFETIME
seconds and is killed at the end. Our client talks to it over a plain UDP
socket through the small adapter below (the same dgram interface a DTLS
session or a modem's UDP service provides on a board).
"""

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from ipa_core import coap
from ipa_core.coap import CoapClient

SERVER_NAMES = ("coap-server", "coap-server-notls", "coap-server-openssl", "coap-server-gnutls")
SERVER_LIFETIME = 120  # seconds: the server is killed by `timeout` even if this process dies


class UdpDgram:
    """dgram interface over a connected UDP socket: send(bytes), recv(timeout_ms) -> bytes|None."""

    def __init__(self, host, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((host, port))

    def send(self, data):
        self.sock.send(data)

    def recv(self, timeout_ms):
        self.sock.settimeout(max(timeout_ms, 1) / 1000.0)
        try:
            return self.sock.recv(2048)
        except socket.timeout:
            return None

    def close(self):
        self.sock.close()


def _server_binary():
    for name in SERVER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("libcoap's coap-server is not installed (looked for %s): "
                "install Debian's libcoap3-bin (tools/setup.sh does)" % ", ".join(SERVER_NAMES))


def _free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def server():
    """coap-server with dynamic resources (-d: PUT/POST create) that echoes PUT/POST
    bodies back (-e); yields its port."""
    binary = _server_binary()
    port = _free_udp_port()
    cmd = ["timeout", str(SERVER_LIFETIME), binary, "-A", "127.0.0.1", "-p", str(port),
           "-d", "20", "-e", "-v", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:  # wait until it answers
            d = UdpDgram("127.0.0.1", port)
            try:
                c = CoapClient(d, ack_timeout_ms=200, max_retransmit=0)
                c.request("GET", "/")
                break
            except coap.TransportError:  # refused (not up yet) or no answer
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None \
                        else ""
                    pytest.fail("coap-server on port %d did not answer: %s %s"
                                % (port, " ".join(cmd), err))
            finally:
                d.close()
        yield port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def client(server):
    d = UdpDgram("127.0.0.1", server)
    made = []

    def make(**kw):
        c = CoapClient(d, **kw)
        made.append(c)
        return c

    yield make
    d.close()


def _body(n, seed=0):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def test_get_root_and_time(client):
    c = client()
    code, body, opts = c.request("GET", "/")
    assert coap.code_str(code) == "2.05"
    assert b"libcoap" in body
    code, body, _opts = c.request("GET", "/time")
    assert coap.code_str(code) == "2.05" and len(body) > 5
    code, _body_, _opts = c.request("GET", "/no/such/resource")
    assert coap.code_str(code) == "4.04"
    assert c.post("/time", b"x", "application/octet-stream")[0] == 405  # 4.05


def test_put_block1_then_get_block2(client):
    data = _body(5000)
    up = client(block_size=512)
    code, echo, _o = up.request("PUT", "/ipa/big", data, content_format=coap.OCTET_STREAM)
    assert coap.code_str(code) == "2.01"
    assert echo == data  # -e: the answer comes back in Block2 blocks after the last Block1
    assert up.exchanges == 10 + 9  # 10 blocks of 512 up, block 0 down rides on the last one
    down = client(block_size=256)
    code, body, opts = down.request("GET", "/ipa/big")
    assert coap.code_str(code) == "2.05"
    assert body == data
    assert down.exchanges == 20  # 5000 bytes in 256-byte blocks
    assert dict(opts).get(coap.SIZE2) == coap.uint_encode(5000)


def test_block2_with_the_servers_block_size(client):
    data = _body(3000, 3)
    assert coap.code_str(client(block_size=1024).request("PUT", "/ipa/b2", data)[0]) in (
        "2.01", "2.04")
    c = client(block_size=1024)  # no early negotiation: libcoap picks the size
    code, body, _o = c.request("GET", "/ipa/b2")
    assert (code, body) == (coap.CONTENT, data)


def test_post_block1_few_kb_like_the_ipa(client):
    # The IPA's call: post(path, body, content_type, headers) -> (HTTP-like status, body).
    c = client(block_size=128)
    data = _body(3000, 5)
    status, body = c.post("/gsma/rsp2/asn1", data, "application/x-gsma-rsp-asn1",
                          {"X-Admin-Protocol": "gsma/rsp/v2.1.0"})
    assert (status, body) == (201, data)  # 2.01 Created (dynamic resource), body echoed
    assert c.exchanges == 24 + 23  # 3000 bytes in 128-byte blocks, each way
    status, body = c.post("/gsma/rsp2/asn1", b"\xbf\x4f\x03\x5a\x01\x00", 42)
    assert (status, body) == (204, b"\xbf\x4f\x03\x5a\x01\x00")  # 2.04 Changed
    code, stored, _o = c.request("GET", "/gsma/rsp2/asn1")
    assert (code, stored) == (coap.CONTENT, b"\xbf\x4f\x03\x5a\x01\x00")
    assert c.retransmissions == 0 and c.ignored == 0


def test_delete_then_not_found(client):
    c = client()
    c.request("PUT", "/ipa/gone", b"x")
    assert coap.code_str(c.request("DELETE", "/ipa/gone")[0]) == "2.02"
    assert coap.code_str(c.request("GET", "/ipa/gone")[0]) == "4.04"


def _start(args):
    """Another coap-server (for one test), as in the fixture; returns (proc, port)."""
    port = _free_udp_port()
    proc = subprocess.Popen(["timeout", str(SERVER_LIFETIME), _server_binary(), "-A",
                             "127.0.0.1", "-p", str(port)] + args,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    time.sleep(0.3)
    return proc, port


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(5)


def test_lost_answers_are_retransmitted():
    # -l 1,3,6: the server "loses" its 1st, 3rd and 6th datagrams; our client must
    # retransmit (short ACK timeout to keep the test quick) and still get everything.
    proc, port = _start(["-d", "5", "-e", "-l", "1,3,6"])
    d = UdpDgram("127.0.0.1", port)
    try:
        c = CoapClient(d, block_size=256, ack_timeout_ms=300)
        data = _body(1500, 9)
        deadline = time.monotonic() + 10
        while True:  # the server may still be starting: the first loss is then not ours
            try:
                code, echo, _o = c.request("PUT", "/lossy", data)
                break
            except coap.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert (coap.code_str(code), echo) == ("2.01", data)
        code, body, _o = c.request("GET", "/lossy")
        assert (code, body) == (coap.CONTENT, data)
        print("retransmissions", c.retransmissions, "ignored", c.ignored)
        assert c.retransmissions >= 3
    finally:
        d.close()
        _stop(proc)
