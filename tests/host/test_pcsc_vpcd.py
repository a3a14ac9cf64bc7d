"""The real PC/SC stack end to end: VpcdBridge -> vpcd -> pcscd -> pyscard -> PcscCard.

Also the vpcd framing against a fake vpcd (plain TCP, no pcscd) and the
card-selection syntax of ipa_host.card.select.
"""

import socket
import struct
import time

import pytest

from ipa_core.errors import TransportError
from ipa_host.card import pcsc
from ipa_host.card.pcsc import PcscCard, choose_reader, list_readers
from ipa_host.card.select import CardSpecError, open_card, parse_card_spec
from ipa_host.sim.euicc.vpcd import VpcdBridge, parse_endpoint

# TS 3B, T0 80 (TD1 follows), TD1 80 (T=0, TD2 follows), TD2 01 (T=1), TCK 01:
# a card offering T=0 and T=1.
ATR = bytes.fromhex("3B8080010101")


class ToyCard:
    """A small card with visible behaviour, to see every byte cross the stack.

    INS CA: answer Le bytes 00 01 02 ... (Le 00 = 256); INS E2: echo the data
    reversed; INS EE: raise (a simulator bug); anything else: 6D00.
    """

    atr = ATR

    def __init__(self):
        self.resets = 0
        self.seen = []

    def reset(self):
        self.resets += 1

    def transmit(self, apdu):
        self.seen.append(bytes(apdu))
        ins = apdu[1]
        if ins == 0xCA:
            n = apdu[4] if len(apdu) == 5 else 0
            return bytes(i & 0xFF for i in range(n or 256)) + b"\x90\x00"
        if ins == 0xE2:
            return bytes(reversed(apdu[5:5 + apdu[4]])) + b"\x90\x00"
        if ins == 0xEE:
            raise RuntimeError("simulated card fault")
        return b"\x6d\x00"


@pytest.fixture
def inserted(pcscd_server):
    """A ToyCard in the vpcd reader; removed after the test."""
    card = ToyCard()
    bridge = VpcdBridge(card, "127.0.0.1", pcscd_server.port).start(wait=5)
    pcscd_server.wait_card(True)
    yield card, bridge
    bridge.stop()
    pcscd_server.wait_card(False)


# ---- through pcscd ---------------------------------------------------------


def test_apdus_cross_pcscd(pcscd_server, inserted):
    card, bridge = inserted
    assert pcscd_server.reader in list_readers()
    with PcscCard(pcscd_server.reader) as c:
        assert c.atr == ATR
        assert c.reader == pcscd_server.reader
        assert c.transmit(bytes.fromhex("80E2910003010203")) == bytes.fromhex("0302019000")
        # A full short response: 256 data bytes + SW.
        r = c.transmit(bytes.fromhex("00CA000000"))
        assert len(r) == 258 and r[:3] == b"\x00\x01\x02" and r[-2:] == b"\x90\x00"
        # A full STORE DATA block (Lc 255) arrives whole.
        block = bytes(range(255))
        assert c.transmit(b"\x80\xe2\x91\x00\xff" + block) == block[::-1] + b"\x90\x00"
        assert c.transmit(bytes.fromhex("00B0000000")) == b"\x6d\x00"
    assert bytes.fromhex("80E2910003010203") in card.seen
    assert card.resets >= 1  # pcscd powered the card on
    assert bridge.apdus == 4


def test_card_fault_answers_6f00_and_bridge_survives(pcscd_server, inserted):
    card, bridge = inserted
    with PcscCard(pcscd_server.reader) as c:
        assert c.transmit(bytes.fromhex("00EE0000")) == b"\x6f\x00"
        assert c.transmit(bytes.fromhex("80E2910001AA")) == b"\xaa\x90\x00"
    assert "simulated card fault" in bridge.errors[-1][1]


def test_reader_choice_by_default_index_and_substring(pcscd_server, inserted):
    # vpcd offers two slots; only slot 0 holds a card, so the default finds it.
    with PcscCard() as c:
        assert c.reader == pcscd_server.reader
    idx = list_readers().index(pcscd_server.reader)
    with PcscCard(idx) as c:
        assert c.reader == pcscd_server.reader
    with PcscCard("test vpcd 00 00") as c:  # unique, case-insensitive substring
        assert c.reader == pcscd_server.reader
    with pytest.raises(TransportError) as e:
        PcscCard("IPA Test VPCD")  # matches both slots
    assert "matches 2 PC/SC readers" in str(e.value)
    assert "IPA Test VPCD 00 01" in str(e.value)


def test_protocol_t0_and_t1(pcscd_server, inserted):
    for proto in ("T0", "T1"):
        c = PcscCard(pcscd_server.reader, protocol=proto)
        try:
            assert c.protocol == proto
            assert c.transmit(bytes.fromhex("80E2910002BEEF")) == bytes.fromhex("EFBE9000")
        finally:
            # The card keeps the negotiated protocol until it is reset.
            c.close(reset=True)
    with PcscCard(pcscd_server.reader, protocol="T0", shared=True):
        with pytest.raises(TransportError, match="does not offer protocol T1"):
            PcscCard(pcscd_server.reader, protocol="T1", shared=True)


def test_shared_mode_allows_two_connections(pcscd_server, inserted):
    with PcscCard(pcscd_server.reader, shared=True) as a, \
            PcscCard(pcscd_server.reader, shared=True) as b:
        assert a.transmit(bytes.fromhex("80E2910001AA")) == b"\xaa\x90\x00"
        assert b.transmit(bytes.fromhex("80E2910001BB")) == b"\xbb\x90\x00"


def test_exclusive_mode_locks_out_others(pcscd_server, inserted):
    with PcscCard(pcscd_server.reader):
        with pytest.raises(TransportError) as e:
            PcscCard(pcscd_server.reader)
    assert "another program holds it" in str(e.value)


def test_reader_not_found_lists_readers(pcscd_server):
    with pytest.raises(TransportError) as e:
        PcscCard("Nonexistent Reader 9")
    msg = str(e.value)
    assert "no PC/SC reader named like 'Nonexistent Reader 9'" in msg
    assert repr(pcscd_server.reader) in msg
    with pytest.raises(TransportError) as e:
        PcscCard(99)
    assert "no PC/SC reader at index 99" in str(e.value)
    assert repr(pcscd_server.reader) in str(e.value)


def test_no_card_inserted(pcscd_server):
    pcscd_server.wait_card(False)
    with pytest.raises(TransportError) as e:
        PcscCard()
    assert "no card in any PC/SC reader" in str(e.value)
    with pytest.raises(TransportError) as e:
        PcscCard(pcscd_server.reader)
    assert "no card in it" in str(e.value)


def test_removal_and_reinsertion(pcscd_server):
    card = ToyCard()
    bridge = VpcdBridge(card, "127.0.0.1", pcscd_server.port).start(wait=5)
    pcscd_server.wait_card(True)
    c = PcscCard(pcscd_server.reader)
    try:
        assert c.transmit(bytes.fromhex("80E2910001AA")) == b"\xaa\x90\x00"
        bridge.stop()  # pull the card out
        pcscd_server.wait_card(False)
        with pytest.raises(TransportError) as e:
            c.transmit(bytes.fromhex("80E2910001AA"))
        assert "PC/SC transmit to %r failed" % pcscd_server.reader in str(e.value)
    finally:
        c.close()
    resets = card.resets
    bridge.start(wait=5)  # put it back
    try:
        pcscd_server.wait_card(True)
        with PcscCard(pcscd_server.reader) as c2:
            assert c2.atr == ATR
            assert c2.transmit(bytes.fromhex("80E2910001CC")) == b"\xcc\x90\x00"
        assert card.resets > resets  # powered on again after insertion
    finally:
        bridge.stop()
        pcscd_server.wait_card(False)


def test_transmit_checks_and_close(pcscd_server, inserted):
    c = PcscCard(pcscd_server.reader)
    with pytest.raises(TransportError) as e:
        c.transmit(b"\x00\xa4")
    assert "command APDU of 2 bytes, expected 4.." in str(e.value)
    c.close()
    c.close()  # idempotent
    with pytest.raises(TransportError) as e:
        c.transmit(bytes.fromhex("00A40400"))
    assert "closed" in str(e.value)


def test_open_card_pcsc_specs(pcscd_server, inserted):
    with open_card("pcsc:" + pcscd_server.reader) as c:
        assert c.transmit(bytes.fromhex("80E2910001AA")) == b"\xaa\x90\x00"
    idx = list_readers().index(pcscd_server.reader)
    with open_card("pcsc:%d?protocol=t1&shared=1" % idx) as c:
        assert c.reader == pcscd_server.reader and c.protocol == "T1"
    with open_card("pcsc") as c:
        assert c.reader == pcscd_server.reader


# ---- without pcscd: reader choice, the vpcd framing against a fake vpcd -----


def test_choose_reader_rules():
    names = ["Alpha Reader 00 00", "Beta Reader 00 00", "Beta Reader 01 00"]
    assert choose_reader(names, None, ["Beta Reader 00 00"]) == "Beta Reader 00 00"
    assert choose_reader(names, 2, []) == "Beta Reader 01 00"
    assert choose_reader(names, "alpha", []) == "Alpha Reader 00 00"
    assert choose_reader(names, "Beta Reader 00 00", []) == "Beta Reader 00 00"
    with pytest.raises(TransportError, match="cards in 2 PC/SC readers"):
        choose_reader(names, None, names[1:])
    with pytest.raises(TransportError, match="no PC/SC reader found"):
        choose_reader([], None, [])
    with pytest.raises(TransportError, match="reader must be None, an index or a name"):
        choose_reader(names, 1.5, [])


def test_protocol_name_checked_before_pcsc():
    with pytest.raises(TransportError, match="protocol must be one of any/T0/T1, not 'T2'"):
        PcscCard(protocol="T2")
    assert pcsc.MAX_APDU == 65545


def _frame(payload):
    return struct.pack(">H", len(payload)) + payload


def _read_frame(conn):
    def exact(n):
        b = b""
        while len(b) < n:
            chunk = conn.recv(n - len(b))
            assert chunk, "bridge closed the connection"
            b += chunk
        return b

    (n,) = struct.unpack(">H", exact(2))
    return exact(n)


@pytest.fixture
def fake_vpcd():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(2)
    srv.settimeout(5)
    yield srv
    srv.close()


def _accept(srv):
    conn, _ = srv.accept()
    conn.settimeout(5)
    return conn


def test_bridge_framing_and_reconnect_with_fake_vpcd(fake_vpcd):
    card = ToyCard()
    port = fake_vpcd.getsockname()[1]
    bridge = VpcdBridge(card, "127.0.0.1", port, retry=0.05).start(wait=5)
    try:
        conn = _accept(fake_vpcd)
        conn.sendall(_frame(b"\x04"))
        assert _read_frame(conn) == ATR
        conn.sendall(_frame(b"\x01") + _frame(b"\x02") + _frame(b"\x00"))  # no replies
        conn.sendall(_frame(bytes.fromhex("80E2910002A1A2")))
        assert _read_frame(conn) == bytes.fromhex("A2A19000")
        assert card.resets == 2  # power on + reset
        conn.close()  # vpcd went away (pcscd restarted): the bridge must come back
        conn = _accept(fake_vpcd)
        conn.sendall(_frame(b"\x04"))
        assert _read_frame(conn) == ATR
        conn.sendall(b"\x00\x00")  # an empty frame is a protocol error: reconnect
        conn2 = _accept(fake_vpcd)
        assert any("empty frame" in t for _, t in bridge.errors)
        conn2.sendall(_frame(b"\x09"))  # unknown control: logged, ignored
        conn2.sendall(_frame(b"\x04"))
        assert _read_frame(conn2) == ATR
        assert any("unknown vpcd control code 09" in t for _, t in bridge.errors)
        conn.close()
    finally:
        bridge.stop()
    # After stop the fake vpcd sees the card removed (EOF).
    assert conn2.recv(10) == b""
    conn2.close()


def test_bridge_start_fails_clearly_without_vpcd():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t0 = time.monotonic()
    with pytest.raises(TransportError) as e:
        VpcdBridge(ToyCard(), "127.0.0.1", port).start(wait=0.5)
    assert time.monotonic() - t0 < 3
    assert "could not connect to vpcd at 127.0.0.1:%d" % port in str(e.value)


def test_bridge_rejects_bad_card():
    class NoAtr:
        def transmit(self, apdu):
            return b"\x90\x00"

    with pytest.raises(ValueError, match="card.atr must be 2..33 bytes"):
        VpcdBridge(NoAtr())


def test_parse_endpoint():
    assert parse_endpoint("127.0.0.1:40000") == ("127.0.0.1", 40000)
    assert parse_endpoint(":40000") == ("127.0.0.1", 40000)
    assert parse_endpoint("localhost") == ("localhost", 35963)
    with pytest.raises(ValueError, match="port must be a number"):
        parse_endpoint("127.0.0.1:99999")


# ---- card selection syntax ------------------------------------------------------


def test_parse_card_spec():
    assert parse_card_spec("sim") == ("sim", None, {})
    assert parse_card_spec("sim?pki=/tmp/p&state=/tmp/s.json") == (
        "sim", None, {"pki": "/tmp/p", "state": "/tmp/s.json"})
    assert parse_card_spec("pcsc") == ("pcsc", None, {})
    assert parse_card_spec("pcsc:1") == ("pcsc", 1, {})
    assert parse_card_spec("pcsc:Virtual PCD 00 00?shared=yes&protocol=t1") == (
        "pcsc", "Virtual PCD 00 00", {"shared": True, "protocol": "T1"})
    assert parse_card_spec("at:/dev/ttyUSB2") == (
        "at", "/dev/ttyUSB2", {"baud": 115200, "mode": "auto"})
    assert parse_card_spec("at:/dev/ttyUSB2?baud=921600&mode=CGLA") == (
        "at", "/dev/ttyUSB2", {"baud": 921600, "mode": "cgla"})


@pytest.mark.parametrize("spec,words", [
    ("", "empty card selection"),
    ("usb:1", "unknown card kind 'usb'"),
    ("pcsc:", "empty reader after 'pcsc:'"),
    ("pcsc?speed=3", "unknown option 'speed' for pcsc"),
    ("pcsc?shared=maybe", "shared='maybe' is not a yes/no value"),
    ("pcsc?protocol=T2", "protocol='T2', expected one of any/T0/T1"),
    ("pcsc?shared", "option 'shared' is not key=value"),
    ("sim:x", "sim takes no target"),
    ("at:", "at: needs the modem's AT port"),
    ("at:/dev/ttyUSB2?baud=12345", "baud='12345', expected one of"),
    ("at:/dev/ttyUSB2?mode=qmi", "mode='qmi', expected one of auto/cgla/csim"),
    ("at:/dev/ttyUSB2?baud=9600&baud=9600", "option 'baud' given twice"),
])
def test_bad_card_specs(spec, words):
    with pytest.raises(CardSpecError) as e:
        parse_card_spec(spec)
    assert words in str(e.value)
    assert "expected sim | pcsc" in str(e.value)  # the syntax is always shown
    assert isinstance(e.value, ValueError)


def test_at_spec_missing_device():
    with pytest.raises(TransportError, match="/dev/ttyUSB2 does not exist"):
        open_card("at:/dev/ttyUSB2?mode=csim")


def test_sim_spec_needs_pki():
    with pytest.raises(CardSpecError, match="needs its PKI folder"):
        open_card("sim")


def test_vpcd_main_argument_errors(capsys):
    from ipa_host.sim.euicc.vpcd import vpcd_main

    with pytest.raises(SystemExit) as e:
        vpcd_main(["--vpcd", "127.0.0.1:99999"])
    assert e.value.code == 2
    assert "vpcd port must be a number 1..65535" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        vpcd_main(["--vpcd", "127.0.0.1:40000"])
    assert "--pki DIR is required" in capsys.readouterr().err
