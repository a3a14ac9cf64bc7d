"""The simulated modem's own HTTP(S) stacks (ipa_host.sim.modem.modem_http*), by hand over the pty.

Each stack is driven with the AT commands a vendor manual gives, written here by hand with
pyserial (no core AT engine), against a small HTTPS server of this test with certificates
the test makes: binary bodies both ways, the URCs' fields, the modem's own headers, the
CA uploaded through AT deciding TLS (wrong CA -> the stack's error), and the faults.
"""

import http.server
import os
import re
import socketserver
import ssl
import threading
import time

import pytest
import serial

from ipa_host.sim.eim.eim_tls import ensure_tls
from ipa_host.sim.modem.modem import SimModem

FINAL = rb"\r\n(OK|ERROR|\+CME ERROR: [^\r]*)\r\n"
BODY = bytes(range(256)) + b"\r\nOK\r\n\r\n+QHTTPPOST: 0,200,3\r\nERROR\r\n" + os.urandom(300)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # handshakes the modem refuses
        self.errors += 1


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.server.seen.append({"path": self.path, "headers": dict(self.headers.items()),
                                 "body": body})
        if self.path == "/empty":
            self.send_response(204)
            self.end_headers()
            return
        if self.path.startswith("/big"):
            answer = bytes((i * 7 + 3) & 0xFF for i in range(int(self.path.split("=")[1])))
        else:  # /echo: the body backwards, then a marker
            answer = body[::-1] + b"\x00END\r\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """{"ca": PEM of the server's CA, "other": PEM of an unrelated CA} (made by this test)."""
    d = tmp_path_factory.mktemp("tls")
    good = ensure_tls(str(d / "server"))
    other = ensure_tls(str(d / "other"))
    with open(good["ca_cert"], "rb") as f:
        ca = f.read()
    with open(other["ca_cert"], "rb") as f:
        bad = f.read()
    return {"ca": ca, "other": bad, "files": good}


def _serve(tls_files=None):
    srv = Server(("127.0.0.1", 0), Handler)
    srv.seen, srv.errors = [], 0
    if tls_files:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls_files["server_cert"], tls_files["server_key"])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    srv.url = "%s://127.0.0.1:%d" % ("https" if tls_files else "http", srv.server_address[1])
    return srv


@pytest.fixture(scope="module")
def https(pki):
    srv = _serve(pki["files"])
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def modem():
    made = []

    def make(personality, **options):
        m = SimModem(None, personality, **options).start()
        made.append(m)
        return m, Client(m.path)

    yield make
    for m in made:
        m.stop()


class Client:
    """A terminal program: writes lines and raw bytes, reads bytes until a pattern."""

    def __init__(self, path):
        self.port = serial.Serial(path, 115200, timeout=0.05, exclusive=True)
        self.buf = b""

    def write(self, data):
        self.port.write(data)

    def expect(self, pattern, timeout=5.0):
        """The match of `pattern` (bytes regex) in what came; consumes up to its end."""
        rx = re.compile(pattern, re.S)
        end = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            if time.monotonic() > end:
                raise AssertionError("no %r within %.1f s; got %r" % (pattern, timeout, self.buf))
            self.buf += self.port.read(max(1, self.port.in_waiting))

    def cmd(self, line, timeout=5.0):
        """(text before the final result, final result) of one command line."""
        self.write(line.encode() + b"\r")
        m = self.expect(b"(.*?)" + FINAL, timeout)
        return m.group(1).decode("latin-1"), m.group(2).decode()

    def ok(self, line):
        out, final = self.cmd(line)
        assert final == "OK", (line, out, final)
        return [ln for ln in out.split("\r\n") if ln]

    def data(self, line, prompt, payload, timeout=5.0):
        """A command answering `prompt`, then raw `payload`; returns (lines, final)."""
        self.write(line.encode() + b"\r")
        self.expect(prompt, timeout)
        self.write(payload)
        m = self.expect(b"(.*?)" + FINAL, timeout)
        return m.group(1).decode("latin-1"), m.group(2).decode()


def qfupl_checksum(data):
    c = 0
    for i in range(0, len(data), 2):
        c ^= data[i] << 8 | (data[i + 1] if i + 1 < len(data) else 0)
    return "%x" % c


# ---- Quectel ------------------------------------------------------------------------------


def quectel_setup(c, ca, seclevel=1):
    c.ok("AT+CMEE=1")
    out, final = c.data('AT+QFUPL="UFS:eim_ca.pem",%d,10' % len(ca), b"\r\nCONNECT\r\n", ca)
    assert final == "OK" and "+QFUPL: %d,%s" % (len(ca), qfupl_checksum(ca)) in out
    for line in ('AT+QHTTPCFG="contextid",1', 'AT+QHTTPCFG="requestheader",0',
                 'AT+QHTTPCFG="responseheader",0', 'AT+QHTTPCFG="sslctxid",1',
                 'AT+QHTTPCFG="contenttype",2',
                 'AT+QHTTPCFG="reqheader/add","X-Admin-Protocol","gsma/rsp/v2.1.0"',
                 'AT+QSSLCFG="sslversion",1,4', 'AT+QSSLCFG="ciphersuite",1,0xFFFF',
                 'AT+QSSLCFG="seclevel",1,%d' % seclevel,
                 'AT+QSSLCFG="cacert",1,"UFS:eim_ca.pem"'):
        c.ok(line)


def quectel_post(c, url, body):
    """QHTTPURL + QHTTPPOST; returns the +QHTTPPOST URC's fields (ints)."""
    out, final = c.data("AT+QHTTPURL=%d,10" % len(url), b"\r\nCONNECT\r\n", url.encode())
    assert final == "OK", (out, final)
    out, final = c.data("AT+QHTTPPOST=%d,10,10" % len(body), b"\r\nCONNECT\r\n", body)
    assert final == "OK", (out, final)
    m = c.expect(rb"\r\n\+QHTTPPOST: ([0-9,]+)\r\n")
    return [int(x) for x in m.group(1).split(b",")]


def test_quectel_post_and_read_binary(modem, https, pki):
    m, c = modem("quectel_http")
    assert c.ok("AT+CGMI") == ["Quectel"] and c.ok("AT+CGMM") == ["EG915U"]
    quectel_setup(c, pki["ca"])
    assert quectel_post(c, https.url + "/echo", BODY) == [0, 200, len(BODY) + 6]
    seen = https.seen[-1]
    assert seen["path"] == "/echo" and seen["body"] == BODY
    assert seen["headers"]["Content-Type"] == "application/octet-stream"
    assert seen["headers"]["X-Admin-Protocol"] == "gsma/rsp/v2.1.0"
    assert seen["headers"]["User-Agent"] == "QUECTEL_MODULE"
    c.write(b"AT+QHTTPREAD=10\r")
    c.expect(rb"\r\nCONNECT\r\n")
    m_ = c.expect(rb"(.*)\r\nOK\r\n\r\n\+QHTTPREAD: 0\r\n")
    assert m_.group(1) == BODY[::-1] + b"\x00END\r\n"
    assert c.cmd("AT+QHTTPREAD=10") == ("", "+CME ERROR: 705")  # read once
    # 204: no Content-Length, so no <content_length> field
    assert quectel_post(c, https.url + "/empty", b"x") == [0, 204]
    assert m.at.http.requests == 2


def test_quectel_request_header_mode_and_files(modem, https, pki):
    m, c = modem("quectel_http", qhttp_reqheader_add=False)
    quectel_setup_ok = [
        'AT+QSSLCFG="seclevel",1,1', 'AT+QSSLCFG="cacert",1,"ca.pem"',
        'AT+QHTTPCFG="requestheader",1', 'AT+QHTTPCFG="responseheader",1']
    c.ok("AT+CMEE=1")
    assert c.cmd('AT+QHTTPCFG="reqheader/add","A","b"')[1] == "+CME ERROR: 730"
    assert c.data('AT+QFUPL="ca.pem",%d' % len(pki["ca"]), b"CONNECT\r\n", pki["ca"])[1] == "OK"
    assert c.cmd('AT+QFUPL="UFS:ca.pem",3')[1] == "+CME ERROR: 407"  # exists
    assert c.ok("AT+QFLST") == ['+QFLST: "UFS:ca.pem",%d' % len(pki["ca"])]
    for line in quectel_setup_ok:
        c.ok(line)
    body = b"\xff\x00\r\n" * 50
    host = https.url.split("//")[1]
    req = ("POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-gsma-rsp-asn1\r\n"
           "Content-Length: %d\r\n\r\n" % (host, len(body))).encode() + body
    assert quectel_post(c, https.url + "/echo", req) == [0, 200, len(body) + 6]
    assert https.seen[-1]["headers"]["Content-Type"] == "application/x-gsma-rsp-asn1"
    assert https.seen[-1]["body"] == body
    c.write(b"AT+QHTTPREAD\r")
    got = c.expect(rb"\r\nCONNECT\r\n(.*)\r\nOK\r\n\r\n\+QHTTPREAD: 0\r\n").group(1)
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\n" + body[::-1]
                                                                   + b"\x00END\r\n")
    # files: delete, delete again, upload with ackmode (an "A" per 1024 bytes)
    assert c.cmd('AT+QFDEL="UFS:ca.pem"')[1] == "OK"
    assert c.cmd('AT+QFDEL="ca.pem"')[1] == "+CME ERROR: 405"
    c.write(b'AT+QFUPL="big.bin",2100,5,1\r')
    c.expect(rb"CONNECT\r\n")
    c.write(b"\x01" * 1100)
    c.expect(rb"^A")
    c.write(b"\x02" * 1000)
    assert c.expect(rb"A\r\n\+QFUPL: 2100,([0-9a-f]+)\r\n\r\nOK\r\n").group(1) == \
        qfupl_checksum(b"\x01" * 1100 + b"\x02" * 1000).encode()
    assert qfupl_checksum(b"\x01\x02\x03") == "202"  # hand check: 0x0102 ^ 0x0300


def test_quectel_tls_needs_the_right_ca(modem, https, pki):
    m, c = modem("quectel_http")
    quectel_setup(c, pki["other"])  # a CA that did not issue the server's certificate
    before = len(https.seen)
    url = https.url + "/echo"
    assert c.data("AT+QHTTPURL=%d,10" % len(url), b"CONNECT\r\n", url.encode())[1] == "OK"
    # the handshake comes before CONNECT: the POST fails at once, with the socket error
    assert c.cmd("AT+QHTTPPOST=5,10,10") == ("", "+CME ERROR: 716")
    c.ok('AT+QSSLCFG="cacert",1,"missing.pem"')  # no CA file at all: the same
    assert c.cmd("AT+QHTTPPOST=5,10,10") == ("", "+CME ERROR: 716")
    assert len(https.seen) == before
    c.ok('AT+QSSLCFG="seclevel",1,0')  # seclevel 0 (the default!) verifies nothing
    assert quectel_post(c, url, b"hello")[:2] == [0, 200]
    c.ok('AT+CMEE=2')
    c.ok('AT+QSSLCFG="seclevel",1,1')
    assert c.cmd("AT+QHTTPPOST=5,10,10")[1] == "+CME ERROR: HTTP(S) socket connect error"


def test_quectel_refuses_other_hosts_and_faults(modem, https, pki):
    m, c = modem("quectel_http")
    c.ok("AT+CMEE=1")
    url = "http://192.0.2.1:80/x"
    assert c.data("AT+QHTTPURL=%d,10" % len(url), b"CONNECT\r\n", url.encode())[1] == "OK"
    assert c.cmd("AT+QHTTPPOST=5,10,10") == ("", "+CME ERROR: 714")  # DNS error
    assert c.cmd("AT+QHTTPREAD") == ("", "+CME ERROR: 705")
    m2, c2 = modem("quectel_http_error")
    quectel_setup(c2, pki["ca"])
    before = len(https.seen)
    assert quectel_post(c2, https.url + "/echo", b"abc") == [702]  # HTTP(S) timeout
    assert len(https.seen) == before  # nothing reached the server
    # plain HTTP, and an input phase that never completes (fewer bytes than announced)
    plain = _serve()
    try:
        assert quectel_post(c, plain.url + "/echo", b"\x00\x01") == [0, 200, 8]
    finally:
        plain.shutdown()
        plain.server_close()
    c.write(b"AT+QHTTPURL=10,1\r")
    c.expect(rb"CONNECT\r\n")
    c.write(b"htt")
    assert c.expect(FINAL, 3).group(1) == b"+CME ERROR: 726"
    c.ok("AT")


# ---- SIMCom SIM7080 -----------------------------------------------------------------------


def sim7080_upload(c, name, pem):
    c.ok("AT+CFSINIT")
    out, final = c.data('AT+CFSWFILE=3,"%s",0,%d,5000' % (name, len(pem)),
                        b"\r\nDOWNLOAD\r\n", pem)
    assert final == "OK", out
    c.ok("AT+CFSTERM")


def sim7080_connect(c, url, ca_name):
    for line in ('AT+CSSLCFG="sslversion",1,3', 'AT+SHCONF="URL","%s"' % url,
                 'AT+SHCONF="BODYLEN",4096', 'AT+SHCONF="HEADERLEN",350',
                 'AT+SHSSL=1,"%s"' % ca_name):
        c.ok(line)
    return c.cmd("AT+SHCONN")[1]


def sim7080_post(c, path, body):
    c.ok("AT+SHCHEAD")
    c.ok('AT+SHAHEAD="Content-Type","application/x-gsma-rsp-asn1"')
    c.ok('AT+SHAHEAD="X-Admin-Protocol","gsma/rsp/v2.1.0"')
    out, final = c.data("AT+SHBOD=%d,10000" % len(body), b"\r\n> ", body)
    assert final == "OK", out
    c.ok('AT+SHREQ="%s",3' % path)
    m = c.expect(rb'\r\n\+SHREQ: "POST",(\d+),(\d+)\r\n')
    return int(m.group(1)), int(m.group(2))


def sim7080_read(c, start, n):
    c.write(b"AT+SHREAD=%d,%d\r" % (start, n))
    c.expect(rb"\r\nOK\r\n\r\n")
    got = int(c.expect(rb"^\+SHREAD: (\d+)\r\n").group(1))
    c.expect(b"")
    while len(c.buf) < got + 2:
        c.buf += c.port.read(max(1, c.port.in_waiting))
    data, c.buf = c.buf[:got], c.buf[got + 2:]
    return data


def test_sim7080_https_exchange(modem, https, pki):
    m, c = modem("sim7080")
    assert c.ok("AT+CGMM") == ["SIMCOM_SIM7080G"]
    sim7080_upload(c, "eim_ca.pem", pki["ca"])
    assert c.cmd('AT+CSSLCFG="convert",2,"eim_ca.pem"')[1] == "OK"
    assert sim7080_connect(c, https.url, "eim_ca.pem") == "OK"
    assert c.ok("AT+SHSTATE?") == ["+SHSTATE: 1"]
    assert c.cmd('AT+SHCONF="BODYLEN",100')[1] == "ERROR"  # not while connected
    status, n = sim7080_post(c, "/big?n=5000", BODY)
    assert (status, n) == (200, 5000)
    assert https.seen[-1]["body"] == BODY and https.seen[-1]["headers"]["Host"] == \
        https.url.split("//")[1]
    assert https.seen[-1]["headers"]["X-Admin-Protocol"] == "gsma/rsp/v2.1.0"
    got = b"".join(sim7080_read(c, i, 2048) for i in range(0, 5000, 2048))
    assert got == bytes((i * 7 + 3) & 0xFF for i in range(5000))
    assert c.cmd("AT+SHREAD=0,4096")[1] == "ERROR"  # over 2048 per read
    assert c.cmd("AT+SHREAD=5000,10")[1] == "ERROR"  # past the end
    # the same connection serves the next request (keep-alive)
    assert sim7080_post(c, "/echo", b"\x00\r\n") == (200, 9)
    assert sim7080_read(c, 0, 9) == b"\n\r\x00\x00END\r\n"
    assert c.cmd("AT+SHBOD=5000,1000")[1] == "ERROR"  # over BODYLEN
    assert c.cmd("AT+SHDISC")[1] == "OK"
    assert c.cmd("AT+SHDISC")[1] == "ERROR"
    assert c.ok("AT+SHSTATE?") == ["+SHSTATE: 0"]
    assert c.cmd('AT+SHREQ="/echo",3')[1] == "ERROR"


def test_sim7080_tls_needs_the_right_converted_ca(modem, https, pki):
    m, c = modem("sim7080")
    sim7080_upload(c, "other.pem", pki["other"])
    sim7080_upload(c, "good.pem", pki["ca"])
    c.ok('AT+CSSLCFG="convert",2,"other.pem"')
    assert sim7080_connect(c, https.url, "other.pem") == "ERROR"  # wrong CA
    assert sim7080_connect(c, https.url, "good.pem") == "ERROR"  # not converted
    assert c.cmd('AT+CSSLCFG="convert",2,"nofile.pem"')[1] == "ERROR"
    assert sim7080_connect(c, https.url, "") == "OK"  # empty CA list: no verification
    c.ok("AT+SHDISC")
    c.ok('AT+CSSLCFG="convert",2,"good.pem"')
    assert sim7080_connect(c, https.url, "good.pem") == "OK"
    c.ok("AT+SHDISC")
    assert sim7080_connect(c, "https://10.1.2.3:443", "good.pem") == "ERROR"  # not loopback


# ---- SIMCom A76xx -------------------------------------------------------------------------


def a7670_setup(c, ca, authmode=1, cacert="eim_ca.pem"):
    out, final = c.data('AT+CCERTDOWN="eim_ca.pem",%d' % len(ca), b"\r\n>", ca)
    assert final == "OK", out
    assert '+CCERTLIST: "eim_ca.pem"' in c.ok("AT+CCERTLIST")
    for line in ('AT+CSSLCFG="sslversion",0,4', 'AT+CSSLCFG="authmode",0,%d' % authmode,
                 'AT+CSSLCFG="cacert",0,"%s"' % cacert, 'AT+CSSLCFG="enableSNI",0,1'):
        c.ok(line)
    c.ok("AT+HTTPINIT")


def a7670_post(c, url, body, content="application/x-gsma-rsp-asn1"):
    for line in ('AT+HTTPPARA="URL","%s"' % url, 'AT+HTTPPARA="CONTENT","%s"' % content,
                 'AT+HTTPPARA="USERDATA","X-Admin-Protocol: gsma/rsp/v2.1.0\\r\\nX-Two: 2"',
                 'AT+HTTPPARA="SSLCFG",0'):
        c.ok(line)
    out, final = c.data("AT+HTTPDATA=%d,10" % len(body), b"\r\nDOWNLOAD\r\n", body)
    assert final == "OK", out
    c.ok("AT+HTTPACTION=1")
    m = c.expect(rb"\r\n\+HTTPACTION: 1,(\d+),(\d+)\r\n")
    return int(m.group(1)), int(m.group(2))


def a7670_read(c, start, n):
    """AT+HTTPREAD=<start>,<n> -> the data of all +HTTPREAD blocks and their sizes."""
    c.write(b"AT+HTTPREAD=%d,%d\r" % (start, n))
    c.expect(rb"\r\nOK\r\n")
    data, blocks = b"", []
    while True:
        size = int(c.expect(rb"\r\n\+HTTPREAD: (\d+)\r\n").group(1))
        if size == 0:
            return data, blocks
        while len(c.buf) < size:
            c.buf += c.port.read(max(1, c.port.in_waiting))
        data, c.buf = data + c.buf[:size], c.buf[size:]
        blocks.append(size)


def test_a7670_https_exchange(modem, https, pki):
    m, c = modem("a7670")
    assert c.ok("AT+CGMI") == ["SIMCOM INCORPORATED"] and c.ok("AT+CGMM") == ["A7670E-LASE"]
    a7670_setup(c, pki["ca"])
    assert c.cmd("AT+HTTPINIT")[1] == "ERROR"  # already started
    assert a7670_post(c, https.url + "/echo", BODY) == (200, len(BODY) + 6)
    seen = https.seen[-1]
    assert seen["body"] == BODY
    assert seen["headers"]["Content-Type"] == "application/x-gsma-rsp-asn1"
    assert seen["headers"]["X-Admin-Protocol"] == "gsma/rsp/v2.1.0"
    assert seen["headers"]["X-Two"] == "2"
    assert c.ok("AT+HTTPREAD?") == ["+HTTPREAD: LEN,%d" % (len(BODY) + 6)]
    data, blocks = a7670_read(c, 0, 100000)
    assert data == BODY[::-1] + b"\x00END\r\n" and blocks == [len(data)]
    assert a7670_read(c, 10, 5)[0] == data[10:15]  # the response stays readable
    c.write(b"AT+HTTPHEAD\r")
    head = c.expect(rb"\r\n\+HTTPHEAD: (\d+)\r\n(HTTP/1.1 200 .*?\r\n\r\n)\r\nOK\r\n")
    assert int(head.group(1)) == len(head.group(2))
    assert a7670_post(c, https.url + "/empty", b"x") == (204, 0)
    c.ok("AT+HTTPTERM")
    assert c.cmd("AT+HTTPTERM")[1] == "ERROR"
    assert c.cmd('AT+HTTPPARA="URL","%s"' % https.url)[1] == "ERROR"  # not started


def test_a7670_tls_errors(modem, https, pki):
    m, c = modem("a7670")
    a7670_setup(c, pki["other"])  # wrong CA: handshake failed
    before = len(https.seen)
    assert a7670_post(c, https.url + "/echo", b"abc") == (715, 0)
    c.ok('AT+CSSLCFG="cacert",0,"nothere.pem"')  # CA missed
    assert a7670_post(c, https.url + "/echo", b"abc") == (719, 0)
    assert a7670_post(c, "https://example.com/x", b"abc") == (713, 0)  # DNS
    assert len(https.seen) == before
    c.ok('AT+CSSLCFG="authmode",0,0')  # the default: no server authentication
    assert a7670_post(c, https.url + "/echo", b"abc") == (200, 9)


def test_a7670_slow_read_comes_in_blocks(modem, https, pki):
    m, c = modem("a7670_slow_read")
    a7670_setup(c, pki["ca"])
    assert a7670_post(c, https.url + "/big?n=1000", b"\x00") == (200, 1000)
    t0 = time.monotonic()
    data, blocks = a7670_read(c, 0, 1000)
    assert data == bytes((i * 7 + 3) & 0xFF for i in range(1000))
    assert blocks == [100] * 10 and time.monotonic() - t0 >= 9 * 0.05
    # an input phase that never completes ends with ERROR after its time
    c.write(b"AT+HTTPDATA=10,1\r")
    c.expect(rb"DOWNLOAD\r\n")
    c.write(b"abc")
    assert c.expect(FINAL, 3).group(1) == b"ERROR"
    c.ok("AT")  # back in command mode


def test_vendors_answer_error_to_each_others_commands(modem):
    lines = ['AT+QHTTPURL=10,5', 'AT+QFUPL="a.pem",3', "AT+SHCONN", 'AT+SHREAD=0,10',
             "AT+CFSINIT", "AT+HTTPINIT", 'AT+CCERTDOWN="a.pem",3', 'AT+CSSLCFG="authmode",0,1']
    own = {"quectel_http": ("AT+QHTTPURL", "AT+QFUPL"),
           "sim7080": ("AT+SHCONN", "AT+SHREAD", "AT+CFSINIT", "AT+CSSLCFG"),
           "a7670": ("AT+HTTPINIT", "AT+CCERTDOWN", "AT+CSSLCFG"), "textbook": ()}
    for personality, mine in own.items():
        m, c = modem(personality)
        for line in lines:
            if line.split("=")[0] in mine:
                continue
            assert c.cmd(line) == ("", "ERROR"), (personality, line)


def test_echo_repeats_commands_never_raw_data(modem, pki):
    m, c = modem("quectel_http", echo=True)
    data = b"AT+CSIM=4\r" + bytes(range(40))  # looks like a command: must stay data
    c.write(b'AT+QFUPL="x.bin",%d,5\r' % len(data))
    c.expect(rb'^AT\+QFUPL="x.bin",50,5\r\r\nCONNECT\r\n')  # the command line is echoed
    c.write(data)
    m_ = c.expect(rb"(.*?)\r\n\+QFUPL: 50,([0-9a-f]+)\r\n\r\nOK\r\n")
    assert m_.group(1) == b"" and m_.group(2) == qfupl_checksum(data).encode()
    assert m.at.http.files["x.bin"] == data
    assert not any("CSIM" in line for line in m.received)  # never taken for a command


def test_modem_main_refuses_bad_http_options(capsys):
    from ipa_host.sim.modem.modem import modem_main

    with pytest.raises(SystemExit) as e:
        modem_main(["--personality", "a7670", "--http-error", "200"], card=object())
    assert e.value.code == 2
    assert "http_error must be None or a stack error code 600..799" in capsys.readouterr().err
