"""boards/quecpython_ec200u/board.py and boards/common/socket_net.py, end to end.

QuecPython's own modules (sim, atcmd, checkNet, usocket, ussl) are replaced
by stand-ins that behave as their documentation says: sim.genericAccess
answers (hex length, "<hex>") or -1, atcmd.sendSync fills a bytearray with
the AT answer, usocket sockets carry the bytes of real HTTP/1.1 requests to
the fake eIM of tests/core. An APDU-level shim in front of the fake eUICC
plays the card (logical channel, SELECT, STORE DATA blocks, 61xx + GET
RESPONSE). What a user would check: an eIM package goes through
genericAccess APDUs and HTTP over the module's sockets and is reported once;
the CA given is handed to ussl; card errors are named.
Plain functions with assert: pytest on CPython, tools/mp_test.py on MicroPython.
"""

from ipa_core.compat import hexlify, unhexlify

import ipa_board
import ipa_loop
import socket_net
from ipa_core import tlv
from ipa_core.apdu import ISDR_AID
from ipa_core.errors import ProtocolError, TransportError
from ipa_core.ipa import MemoryStore

import fake_eim as fe
from boards_util import Clock, load_board, scratch, write
from fake_euicc import EID, ICCID_B, FakeEuicc

quec = load_board("quecpython_ec200u")


class ApduEuicc:
    """The fake eUICC behind APDUs: channel 1, SELECT ISD-R, STORE DATA, GET RESPONSE."""

    def __init__(self, card):
        self.card = card
        self.buf = b""
        self.out = b""
        self.apdus = []
        self.channel_open = False

    def transmit(self, apdu):
        self.apdus.append(apdu)
        ins, p1 = apdu[1], apdu[2]
        if ins == 0xAA:
            return b"\x90\x00"
        if ins == 0x70:
            self.channel_open = p1 == 0x00
            return b"\x01\x90\x00" if p1 == 0x00 else b"\x90\x00"
        if ins == 0xA4:
            assert apdu[0] & 0x03 == 1, "SELECT expected on channel 1"
            assert apdu[5:5 + apdu[4]] == ISDR_AID
            return b"\x90\x00"
        if ins == 0xE2:
            assert apdu[0] & 0x03 == 1, "STORE DATA expected on channel 1"
            self.buf += apdu[5:5 + apdu[4]]
            if not p1 & 0x80:
                return b"\x90\x00"
            self.out = self.card.handle(self.buf)
            self.buf = b""
            return self._next()
        if ins == 0xC0:
            return self._next()
        return b"\x6d\x00"

    def _next(self):
        chunk, self.out = self.out[:256], self.out[256:]
        if self.out:  # more to come: 61xx, the rest with GET RESPONSE
            return chunk + b"\x61" + bytes((min(len(self.out), 256) & 0xFF,))
        return chunk + b"\x90\x00"


class Sim:
    """QuecPython `sim`: genericAccess(simId, hex) -> (len(hex answer), hex answer) or -1."""

    def __init__(self, apdu_card, fail=False):
        self.apdu_card = apdu_card
        self.fail = fail
        self.calls = 0

    def genericAccess(self, sim_id, cmd):
        self.calls += 1
        assert sim_id == 0 and isinstance(cmd, str)
        if self.fail:
            return -1
        out = hexlify(self.apdu_card.transmit(unhexlify(cmd))).decode().upper()
        return (len(out), out)


class Sockets:
    """`usocket` + `ussl` stand-ins carrying real HTTP/1.1 to the fake eIM."""

    SOCK_STREAM = 1
    AF_INET = 2

    def __init__(self, eim):
        self.eim = eim
        self.connects = []
        self.wraps = []
        self.requests = []

    def getaddrinfo(self, host, port):
        return [(self.AF_INET, self.SOCK_STREAM, 0, "", (host, port))]

    def socket(self, af, kind):
        return Sock(self)

    def wrap_socket(self, sock, server_hostname=None, cert=None, key=None):
        self.wraps.append((server_hostname, cert))
        return sock


class Sock:
    def __init__(self, net):
        self.net = net
        self.inbuf = b""
        self.outbuf = b""
        self.timeout = None

    def settimeout(self, t):
        self.timeout = t

    def connect(self, addr):
        self.net.connects.append(addr)

    def write(self, data):
        self.inbuf += bytes(data)
        self._serve()
        return len(data)

    def _serve(self):
        end = self.inbuf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.inbuf[:end].decode().split("\r\n")
        method, path, _ = head[0].split(" ")
        fields = {}
        for line in head[1:]:
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.strip()
        n = int(fields.get("content-length", "0"))
        if len(self.inbuf) < end + 4 + n:
            return
        body = self.inbuf[end + 4:end + 4 + n]
        self.inbuf = self.inbuf[end + 4 + n:]
        assert method == "POST" and fields["host"] == "eim.example.com"
        self.net.requests.append((path, fields))
        status, rbody = self.net.eim.post(path, body, fields["content-type"], fields)
        self.outbuf += (b"HTTP/1.1 %d X\r\nContent-Type: application/x-gsma-rsp-asn1\r\n"
                        b"Content-Length: %d\r\n\r\n" % (status, len(rbody))) + rbody

    def read(self, n):
        out, self.outbuf = self.outbuf[:n], self.outbuf[n:]
        return out

    def close(self):
        pass


class CheckNet:
    def __init__(self, ready=(3, 1)):
        self.ready = ready
        self.waits = []

    def waitNetworkReady(self, timeout_s):
        self.waits.append(timeout_s)
        return self.ready


PEM = ipa_board.der_to_pem(b"\x30\x03\x02\x01\x07")


def _setup(**cfg_over):
    card = FakeEuicc()
    eim = fe.FakeEim("asn1")
    d = scratch()
    write(d + "/eim_ca.pem", PEM)
    cfg = dict(quec.CONFIG_DEFAULTS, eim_url="https://eim.example.com", ca_file=d + "/eim_ca.pem")
    cfg.update(cfg_over)
    sockets = Sockets(eim)
    sim = Sim(ApduEuicc(card))
    net = CheckNet()
    feeds = []
    board = quec.Board(cfg, feed=lambda: feeds.append(1), log=lambda s: None, sim_mod=sim,
                       checknet_mod=net, socket_modules=(sockets, sockets))
    board.feeds = feeds
    return card, eim, cfg, board, sockets, sim, net


def test_an_eim_package_goes_through_generic_access_and_sockets():
    card, eim, cfg, board, sockets, sim, net = _setup()
    eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)], txid=b"\x07"))
    clock = Clock()
    bi = ipa_board.BoardIpa(board, MemoryStore(), cfg, clock=clock, log=lambda s: None)
    ipa = bi.start(clock.sleep_ms, lambda: None)
    lines = []
    ipa_loop.run(ipa, clock.sleep_ms, lambda: None, max_cycles=2, log=lines.append,
                 clock=clock, traceback=False)
    assert "euiccPackageRequest" in lines[0] and "idle" in lines[1], lines
    assert card.enabled() == ICCID_B and card.runs == 1
    assert len(eim.package_results) == 1
    assert sim.calls > 10 and board.card.api == "generic"
    # Inside the cycle the watchdog is fed before every APDU and every socket read.
    assert len(board.feeds) > sim.calls
    # TLS: the configured CA went to ussl.wrap_socket with the host name for SNI.
    assert sockets.wraps and sockets.wraps[0] == ("eim.example.com", PEM.decode())
    assert sockets.connects[0] == ("eim.example.com", 443)
    # One kept-alive connection before the profile switch, one after: the IPA drops the
    # connection when the enabled profile changes (ipa_core.ipa_steps.connect).
    assert len(sockets.connects) == 2
    path, fields = sockets.requests[0]
    assert path == "/gsma/rsp2/asn1" and fields["x-admin-protocol"] == "gsma/rsp/v2.1.0"
    # The data call was awaited at start-up and again after the switch (connectivity).
    assert len(net.waits) == 2 and net.waits[0] == cfg["net_timeout_s"]
    # After the switch the ISD-R channel was opened again (board.refresh), then used.
    opens = [a for a in sim.apdu_card.apdus if a[1] == 0x70 and a[2] == 0x00]
    assert len(opens) == 2 and board.session.is_open and board.session.channel == 1


def test_no_network_is_a_transport_error_naming_the_wait():
    card, eim, cfg, board, sockets, sim, net = _setup()
    net.ready = (2, 0)  # not registered
    try:
        board.open_network("https://eim.example.com", PEM)
    except TransportError as e:
        assert "not ready within 60 s" in str(e)
    else:
        raise AssertionError("opened a network without a data call")


def test_quec_card_generic_access_errors_are_named():
    c = quec.QuecCard(api="generic", sim_mod=Sim(None, fail=True))
    try:
        c.transmit(b"\x80\xe2\x91\x00\x03\xbf\x3e\x00")
    except TransportError as e:
        assert "genericAccess" in str(e) and "-1" in str(e)
    else:
        raise AssertionError("-1 taken for an answer")

    class Odd:
        def genericAccess(self, sim_id, cmd):
            return (3, "9G0")

    try:
        quec.QuecCard(api="generic", sim_mod=Odd()).transmit(b"\x00\x70\x00\x00\x01")
    except ProtocolError as e:
        assert "expected hex" in str(e)
    else:
        raise AssertionError("non-hex accepted")
    try:
        quec.QuecCard(api="generic", sim_mod=Odd()).transmit(b"\x00")
    except ValueError as e:
        assert "4.." in str(e)
    else:
        raise AssertionError("a 1-byte APDU was sent")


def test_basic_channel_answers_manage_channel_itself():
    sim = Sim(None, fail=True)
    c = quec.QuecCard(api="generic", basic_channel=True, sim_mod=sim)
    assert c.transmit(b"\x00\x70\x00\x00\x01") == b"\x68\x81" and sim.calls == 0


class AtCmd:
    """QuecPython `atcmd`: sendSync(cmd, resp bytearray, include, timeout) -> 0 / error."""

    def __init__(self, answer, rc=0):
        self.answer = answer
        self.rc = rc
        self.sent = []

    def sendSync(self, cmd, resp, include, timeout):
        self.sent.append((cmd, timeout))
        data = self.answer.encode()
        resp[0:len(data)] = data
        return self.rc


def test_quec_card_falls_back_to_at_csim():
    class NoGeneric:
        pass

    at = AtCmd('\r\n+CSIM: 6,"019000"\r\n')
    c = quec.QuecCard(api="auto", sim_mod=NoGeneric(), atcmd_mod=at)
    assert c.api == "atcmd"
    assert c.transmit(b"\x00\x70\x00\x00\x01") == b"\x01\x90\x00"
    assert at.sent[0][0] == 'AT+CSIM=10,"0070000001"\r\n'
    for answer, rc, words in (('\r\n+CSIM: 6,"0190"\r\n', 0, "len = hex digits"),
                              ("\r\nERROR\r\n", 0, "expected '+CSIM"),
                              ("", 1, "sendSync returned 1")):
        c = quec.QuecCard(api="atcmd", atcmd_mod=AtCmd(answer, rc))
        try:
            c.transmit(b"\x00\x70\x00\x00\x01")
        except (ProtocolError, TransportError) as e:
            assert words in str(e), (answer, str(e))
        else:
            raise AssertionError("%r accepted" % answer)


def test_socket_net_url_and_pem_helpers():
    assert socket_net.split_url("https://eim.example.com") == ("https", "eim.example.com", 443, "")
    assert socket_net.split_url("http://[::1]:8080") == ("http", "[::1]", 8080, "")
    for bad in ("ftp://x", "https://", "https://h:99999", "https://u@h"):
        try:
            socket_net.split_url(bad)
        except ValueError as e:
            assert bad in str(e)
        else:
            raise AssertionError("%r accepted" % bad)
    assert socket_net.pem_to_der(PEM) == b"\x30\x03\x02\x01\x07"
    try:
        socket_net.pem_to_der(b"no pem here")
    except ValueError as e:
        assert "BEGIN" in str(e)
    else:
        raise AssertionError("garbage taken for PEM")


def test_http_without_ca_warns_once_that_the_server_is_not_authenticated():
    card, eim, cfg, board, sockets, sim, net = _setup()
    lines = []
    client = socket_net.socket_network("https://eim.example.com", modules=(sockets, sockets),
                                       log=lines.append)
    poll = tlv.enc(0xBF4F, tlv.encode(0x5A, unhexlify(EID)))  # GetEimPackageRequest
    status, body = client.post("/gsma/rsp2/asn1", poll, "application/x-gsma-rsp-asn1")
    assert status == 200 and sockets.wraps[0] == ("eim.example.com", None)
    assert tlv.decode(body).tag == 0xBF4F  # noEimPackageAvailable
    assert len(lines) == 1 and "without server authentication" in lines[0]
