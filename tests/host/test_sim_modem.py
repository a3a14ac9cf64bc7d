"""The simulated modem (ipa_host.sim.modem.modem) seen from a client: raw AT over the pty.

Every personality is checked against what its documentation promises, with
pyserial and hand-written AT lines, independent of the core's AT engine.
Also SerialStream (ipa_host.card.serial): the stream contract and its errors.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import serial

from euicc_fixtures import ISDR_AID, make_euicc
from ipa_core.errors import TransportError
from ipa_host.card.serial import SerialStream
from ipa_host.sim.modem.modem import MAX_LINE, SimModem
from ipa_host.sim.modem.modem_at import cla_on_channel, split_args

FINAL = re.compile(rb"\r\n(OK|ERROR|\+CME ERROR: [^\r]*)\r\n")
AID = ISDR_AID.hex().upper()
GET_EID = "80E2910006BF3E035C015A"  # STORE DATA GetEID, CLA channel bits 0
GET_PROFILES = "80E2910003BF2D00"  # GetProfilesInfo: over 300 bytes with the default profiles


def tlv_size(r):
    """Whole size of the BF2D 82 xxxx TLV at the start of r."""
    assert r[:3] == b"\xbf\x2d\x82", r[:4].hex()
    return 5 + int.from_bytes(r[3:5], "big")


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    # T=1: these tests pin the modem's own behaviour APDU by APDU, for a card that answers in
    # the same exchange; a T=0 card behind the modems: tests/integration/test_ipa_modem.py.
    return make_euicc(tmp_path_factory.mktemp("modem"), protocol="T1")


class Client:
    """A terminal user: writes a line, reads until a final result code."""

    def __init__(self, path, timeout=2.0):
        self.port = serial.Serial(path, 115200, timeout=0.05, exclusive=True)
        self.timeout = timeout

    def raw(self, text, wait=None):
        """Send `text` + CR; return every byte until a final result code (or the wait ends)."""
        self.port.write(text.encode() + b"\r")
        return self.collect(wait)

    def collect(self, wait=None, until=FINAL):
        end = time.monotonic() + (self.timeout if wait is None else wait)
        buf = b""
        while time.monotonic() < end:
            buf += self.port.read(max(1, self.port.in_waiting))
            if until is not None and until.search(buf):
                # a moment more for bytes written right after the final code
                time.sleep(0.02)
                return buf + self.port.read(self.port.in_waiting or 1)
        return buf

    def cmd(self, text):
        """(lines, final): the non-empty lines of the answer, echo removed, final code apart."""
        out = self.raw(text)
        m = FINAL.search(out)
        assert m, "no final result code for %r: %r" % (text, out)
        body = out[:m.start()].decode("latin-1")
        lines = [ln for ln in body.split("\r\n") if ln and ln != text + "\r" and ln != text]
        return lines, m.group(1).decode()

    def ok(self, text):
        lines, final = self.cmd(text)
        assert final == "OK", (text, lines, final)
        return lines

    def close(self):
        self.port.close()


@pytest.fixture
def modem_factory(card):
    made = []

    def make(personality="textbook", baud=None, **options):
        m = SimModem(card, personality, baud=baud, **options).start()
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop()


@pytest.fixture
def client_factory():
    made = []

    def make(modem, timeout=2.0):
        c = Client(modem.path, timeout)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def csim(hexs):
    return 'AT+CSIM=%d,"%s"' % (len(hexs), hexs)


def cgla(sid, hexs):
    return 'AT+CGLA=%s,%d,"%s"' % (sid, len(hexs), hexs)


def apdu_answer(line):
    """'+CGLA: 6,"019000"' or '+CGLA:6,019000' -> bytes; checks the length field."""
    m = re.match(r'^\+C(?:SIM|GLA): ?(\d+),"?([0-9A-F]*)"?$', line)
    assert m, line
    assert int(m.group(1)) == len(m.group(2)), line
    return bytes.fromhex(m.group(2))


def open_by_csim(c):
    """MANAGE CHANNEL + SELECT ISD-R through AT+CSIM; returns the channel."""
    (line,) = c.ok(csim("0070000001"))
    r = apdu_answer(line)
    assert r[-2:] == b"\x90\x00"
    ch = r[0]
    sel = "%02XA4040010%s00" % (cla_on_channel(0, ch), AID)
    (line,) = c.ok(csim(sel))
    assert apdu_answer(line)[-2:] == b"\x90\x00"
    return ch


# ---- textbook -----------------------------------------------------------------------------


def test_textbook_basics(modem_factory, client_factory):
    m = modem_factory("textbook")
    c = client_factory(m)
    assert c.raw("AT") == b"\r\nOK\r\n"  # no echo, V.250 framing
    assert c.ok("ATI") == ["IPA Sim", "SIM-MODEM-1", "Revision: SIMMODEM_1.0.0"]
    assert c.ok("AT+CGMI") == ["IPA Sim"]
    assert c.ok("AT+CGMM") == ["SIM-MODEM-1"]
    assert c.ok("AT+CGMR") == ["SIMMODEM_1.0.0"]
    assert c.ok("AT+CGSN") == ["490154203237518"]
    assert c.ok("AT+CPIN?") == ["+CPIN: READY"]
    assert c.ok("AT+CFUN?") == ["+CFUN: 1"]
    assert c.ok("AT+CSIMSLEEP=0") == []
    assert c.ok("AT+CSIMSLEEP?") == ["+CSIMSLEEP: 0"]
    for t in ("AT+CSIM=?", "AT+CCHO=?", "AT+CGLA=?", "AT+CCHC=?", "AT+CGMI=?"):
        assert c.ok(t) == []
    assert c.ok("AT+CFUN=?") == ["+CFUN: (0,1,4),(0,1)"]
    assert c.cmd("AT+QESIM=?") == ([], "ERROR")  # unknown
    assert c.cmd("AT+XYZ") == ([], "ERROR")
    # echo on and off (V.250 E)
    assert c.raw("ATE1") == b"\r\nOK\r\n"  # echo applies to what comes after it
    assert c.raw("AT") == b"AT\r\r\nOK\r\n"
    assert c.raw("ATE0") == b"ATE0\r\r\nOK\r\n"  # echoed as it was typed
    assert c.raw("AT") == b"\r\nOK\r\n"
    # lower case and LF after CR are fine
    c.port.write(b"at\r\n")
    assert c.collect() == b"\r\nOK\r\n"


def test_textbook_errors_and_cmee(modem_factory, client_factory):
    m = modem_factory("textbook")
    c = client_factory(m)
    assert c.cmd('AT+CCHO="A000000001"') == ([], "ERROR")  # AID not on the card
    assert c.cmd('AT+CSIM=9,"0070000001"') == ([], "ERROR")  # length counts hex characters
    assert c.cmd('AT+CSIM=10,0070000001') == ([], "ERROR")  # textbook wants quotes
    assert c.cmd('AT+CSIM=4,"0070"') == ([], "ERROR")  # not an APDU
    assert c.cmd('AT+CGLA=12345,4,"0070"') == ([], "ERROR")
    c.ok("AT+CMEE=1")
    assert c.cmd('AT+CCHO="A000000001"') == ([], "+CME ERROR: 50")
    c.ok("AT+CMEE=2")
    assert c.cmd('AT+CCHO="A000000001"') == ([], "+CME ERROR: incorrect parameters")
    assert c.ok("AT+CMEE?") == ["+CMEE: 2"]
    assert m.open_channels == set()  # the failed CCHOs closed their channels


def test_textbook_logical_channel(modem_factory, client_factory):
    m = modem_factory("textbook")
    c = client_factory(m)
    (line,) = c.ok('AT+CCHO="%s"' % AID)
    sid = line.split(": ")[1]
    assert line == "+CCHO: %s" % sid
    assert int(sid) > 19  # an opaque handle, not a channel number
    assert m.sessions == {sid: 1} and m.open_channels == {1}
    # CLA 80 (channel bits 0): the modem puts channel 1 in; STORE DATA works there.
    (line,) = c.ok(cgla(sid, GET_EID))
    r = apdu_answer(line)
    assert r[-2:] == b"\x90\x00" and r[:3] == bytes.fromhex("BF3E12")
    # the same APDU on the basic channel through CSIM: ISD-R not selected there
    (line,) = c.ok(csim(GET_EID))
    assert apdu_answer(line) == b"\x69\x85"
    # a long answer comes with 61xx; GET RESPONSE through CGLA on the session
    (line,) = c.ok(cgla(sid, GET_PROFILES))
    first = apdu_answer(line)
    assert len(first) == 258 and first[-2] == 0x61
    (line,) = c.ok(cgla(sid, "00C00000%02X" % first[-1]))
    rest = apdu_answer(line)
    assert rest[-2:] == b"\x90\x00" and len(first) - 2 + len(rest) - 2 == tlv_size(first)
    assert c.ok("AT+CCHC=%s" % sid) == []
    assert m.sessions == {} and m.open_channels == set()
    assert c.cmd(cgla(sid, GET_EID)) == ([], "ERROR")
    assert c.cmd("AT+CCHC=%s" % sid) == ([], "ERROR")


def test_channels_leak_across_clients(modem_factory, client_factory):
    m = modem_factory("textbook", max_channels=2)
    c = client_factory(m)
    (line,) = c.ok('AT+CCHO="%s"' % AID)
    sid = line.split(": ")[1]
    c.close()  # the client goes away without AT+CCHC
    c2 = client_factory(m)
    assert m.sessions == {sid: 1}
    (line,) = c2.ok(cgla(sid, GET_EID))  # the old session still works
    assert apdu_answer(line)[-2:] == b"\x90\x00"
    c2.ok('AT+CCHO="%s"' % AID)
    assert m.open_channels == {1, 2}
    assert c2.cmd('AT+CCHO="%s"' % AID) == ([], "ERROR")  # the card has no channel left
    (line,) = c2.ok(csim("0070000001"))
    assert apdu_answer(line) == b"\x68\x81"
    # closing stale channels with MANAGE CHANNEL through CSIM frees them
    for ch in (1, 2):
        (line,) = c2.ok(csim("007080%02X" % ch))
        assert apdu_answer(line) == b"\x90\x00"
    assert m.open_channels == set()
    (line,) = c2.ok('AT+CCHO="%s"' % AID)
    new = line.split(": ")[1]
    assert m.sessions[new] == 1 and sid not in m.sessions  # channel 1 reused: old id dropped


# ---- personalities ----------------------------------------------------------------------------


def test_bare_ccho(modem_factory, client_factory):
    m = modem_factory("bare_ccho")
    c = client_factory(m)
    (sid,) = c.ok('AT+CCHO="%s"' % AID)
    assert re.fullmatch(r"[0-9a-f]{16}", sid) and sid == "000000000385a7cf"
    (line,) = c.ok(cgla(sid, GET_EID))
    assert re.fullmatch(r"\+CGLA:46,BF3E12[0-9A-F]{36}9000", line)
    (line,) = c.ok(csim("0070000001"))
    assert line == "+CSIM:6,029000"
    assert c.ok("ATI")[0] == "Fibocom Wireless Inc."
    c.ok("AT+CCHC=%s" % sid)


def test_no_test_cmds(modem_factory, client_factory):
    m = modem_factory("no_test_cmds")
    c = client_factory(m)
    for t in ("AT+CSIM=?", "AT+CCHO=?", "AT+CGLA=?", "AT+CCHC=?", "AT+CFUN=?", "AT+CMEE=?",
              "AT+CGMI=?"):
        assert c.cmd(t) == ([], "ERROR"), t
    (line,) = c.ok('AT+CCHO="%s"' % AID)  # ... though the commands work
    sid = line.split(": ")[1]
    assert apdu_answer(c.ok(cgla(sid, GET_EID))[0])[-2:] == b"\x90\x00"
    assert c.ok("AT+CGMM") == ["EM05-G"]
    c.ok("AT+CCHC=%s" % sid)


def test_csim_only(modem_factory, client_factory):
    m = modem_factory("csim_only")
    c = client_factory(m)
    for t in ('AT+CCHO="%s"' % AID, "AT+CCHO=?", cgla(1, GET_EID), "AT+CGLA=?", "AT+CCHC=1"):
        assert c.cmd(t) == ([], "ERROR"), t
    assert c.ok("AT+CSIM=?") == []
    assert c.cmd(csim("80e2910006bf3e035c015a")) == ([], "ERROR")  # upper-case hex only
    ch = open_by_csim(c)
    (line,) = c.ok(csim("%02X" % (0x80 | ch) + GET_EID[2:]))
    assert apdu_answer(line)[-2:] == b"\x90\x00"
    c.ok(csim("007080%02X" % ch))
    assert m.open_channels == set()


def test_echo_urc(modem_factory, client_factory):
    m = modem_factory("echo_urc")
    c = client_factory(m)
    out = c.raw("AT")
    assert out.startswith(b"AT\r")  # echo
    assert b"\r\nRDY\r\n" in out  # once, the host opened the port while it booted
    assert c.raw("ATE0").startswith(b"ATE0\r")
    out = c.raw("AT+CGMI")
    assert out.startswith(b"AT+CGMI\r")  # ATE0 did not stop it
    assert b"RDY" not in out
    urc = rb"\r\n(\+CREG: 1|\+CGREG: 1|\+QIND: [^\r]*)\r\n"
    # a URC before the answer and one between the information text and OK
    assert re.fullmatch(rb"AT\+CGMI\r" + urc + rb"\r\nQuectel\r\n" + urc + rb"\r\nOK\r\n", out), out
    out = c.raw(csim("0070000001"))
    m_ = re.fullmatch(rb'AT\+CSIM=10,"0070000001"\r' + urc + rb"\r\n([^\r]*)\r\n"
                      rb'\r\n\+CSIM: 6,"0\d9000"\r\n' + urc + rb"\r\nOK\r\n", out)
    assert m_, out
    assert m_.group(2) in (b"+QUSIM: 1", b"PB DONE", b"^SIMST: 1")  # the stray line
    c.ok(csim("007080%02X" % int(out.split(b'"')[3][:2], 16)))


def test_cme_error(modem_factory, client_factory):
    m = modem_factory("cme_error")
    c = client_factory(m)
    assert c.cmd('AT+CCHO="A000000001"') == ([], "+CME ERROR: 50")
    c.ok("AT+CMEE=0")
    assert c.cmd('AT+CSIM=3,"00"') == ([], "+CME ERROR: 50")  # whatever CMEE says
    assert c.cmd("AT+NOPE") == ([], "ERROR")  # unknown commands stay plain ERROR
    m.set_sim(False)
    assert c.cmd(csim("0070000001")) == ([], "+CME ERROR: 13")
    assert c.cmd('AT+CCHO="%s"' % AID) == ([], "+CME ERROR: 13")
    assert c.cmd("AT+CPIN?") == ([], "+CME ERROR: 10")
    m.set_sim(True)
    assert c.ok("AT+CPIN?") == ["+CPIN: READY"]
    (line,) = c.ok('AT+CCHO="%s"' % AID)
    c.ok("AT+CCHC=%s" % line.split(": ")[1])


def test_truncate256(modem_factory, client_factory, card):
    m = modem_factory("truncate256")
    c = client_factory(m)
    ch = open_by_csim(c)
    cla = "%02X" % (0x80 | ch)
    # no Le: the card's 256 bytes + 6148 are cut at 256 bytes, the SW is lost
    (line,) = c.ok(csim(cla + GET_PROFILES[2:]))
    r = apdu_answer(line)
    rest = tlv_size(r) - 256
    assert len(r) == 256 and 0 < rest < 256
    (line,) = c.ok(csim("%02XC00000%02X" % (ch, rest)))  # the card still holds the rest
    r2 = apdu_answer(line)
    assert len(r2) == rest + 2 and r2[-2:] == b"\x90\x00"
    # Le=00: the modem fetches the rest itself and keeps 256 data bytes + the final SW
    (line,) = c.ok(csim(cla + GET_PROFILES[2:] + "00"))
    r3 = apdu_answer(line)
    assert len(r3) == 258 and r3[-2:] == b"\x90\x00" and r3[:256] == r
    (line,) = c.ok(csim("%02XC0000000" % ch))
    assert apdu_answer(line) == b"\x69\x85"  # nothing left: the rest was silently lost
    c.ok(csim("007080%02X" % ch))


def test_le00_collect_61xx_variant(modem_factory, client_factory):
    m = modem_factory("textbook", le00_collect="61xx", le00_keep=200)
    c = client_factory(m)
    ch = open_by_csim(c)
    (line,) = c.ok(csim("%02X" % (0x80 | ch) + GET_PROFILES[2:] + "00"))
    r = apdu_answer(line)
    rest = tlv_size(r) - 200
    assert len(r) == 202 and r[-2:] == bytes((0x61, rest))  # the rest, kept by the modem
    (line,) = c.ok(csim("%02XC00000%02X" % (ch, rest)))
    r2 = apdu_answer(line)
    assert len(r2) == rest + 2 and r2[-2:] == b"\x90\x00"
    c.ok(csim("007080%02X" % ch))


def test_slow(modem_factory, client_factory):
    m = modem_factory("slow", delay=0.4)
    c = client_factory(m)
    t = time.monotonic()
    c.ok("AT")
    assert time.monotonic() - t < 0.3  # commands without the card are not slowed
    t = time.monotonic()
    c.ok(csim("0070000001"))
    assert time.monotonic() - t >= 0.4
    c.ok(csim("0070800100"))


def test_dead(modem_factory, client_factory):
    m = modem_factory("dead", dead_after=3)
    c = client_factory(m, timeout=0.5)
    for _ in range(3):
        c.ok("AT")
    assert c.raw("AT") == b""  # silence, no echo either
    assert c.raw("ATI") == b""
    m.revive()
    c.ok("AT")


def test_garbage(modem_factory, client_factory):
    m = modem_factory("garbage", seed=7)
    c = client_factory(m)
    seen = b""
    for _ in range(5):
        out = c.raw("AT+CGMM")
        seen += out
        # the text lines stay intact; noise only outside them
        assert b"\r\nSIM-MODEM-1\r\n\r\nOK\r\n" in out
    assert any(b >= 0x80 for b in seen)
    noise = seen.replace(b"\r\nSIM-MODEM-1\r\n\r\nOK\r\n", b"")
    assert noise and all(b >= 0x80 or b == 0 for b in noise)


def test_reset_mid_apdu(modem_factory, client_factory):
    m = modem_factory("reset_mid_apdu", reset_after=1, boot_delay=0.3)
    c = client_factory(m, timeout=1.0)
    ch = apdu_answer(c.ok(csim("0070000001"))[0])[0]
    assert m.open_channels == {ch}
    out = c.raw(csim("00A4040010%s00" % AID), wait=1.0)
    assert b"OK" not in out and b"+CSIM" not in out
    assert out.startswith(b"\r\nRDY\r\n") and b"+CPIN: READY" in out
    assert m.open_channels == set()  # a power-on: channels closed
    c.ok("AT")
    (line,) = c.ok(csim("0070000001"))  # once only: APDUs work again
    assert apdu_answer(line)[0] == 1
    c.ok(csim("0070800100"))


def test_reset_loses_input_during_boot(modem_factory, client_factory):
    m = modem_factory("textbook", boot_delay=0.4)
    c = client_factory(m, timeout=1.0)
    c.port.write(b"AT+CFUN=1,1\r")
    time.sleep(0.1)
    c.port.write(b"AT+CGMI\r")  # sent while the modem boots: lost
    out = c.collect(wait=1.0, until=re.compile(rb"PB DONE\r\n"))
    assert out.startswith(b"\r\nOK\r\n\r\nRDY\r\n")
    assert b"IPA Sim" not in out
    c.ok("AT")


def test_baud_pacing(modem_factory, client_factory):
    m = modem_factory("textbook", baud=9600)
    c = client_factory(m)
    ch = open_by_csim(c)
    t = time.monotonic()
    (line,) = c.ok(csim("%02X" % (0x80 | ch) + GET_PROFILES[2:]))  # ~530 bytes at 960 bytes/s
    assert time.monotonic() - t >= 0.5
    assert len(apdu_answer(line)) == 258
    c.ok(csim("007080%02X" % ch))


def test_long_line_and_garbage_input(modem_factory, client_factory):
    m = modem_factory("textbook")
    c = client_factory(m)
    c.port.write(b"AT+CSIM=" + b"0" * (MAX_LINE + 10))
    assert c.raw("") == b"\r\nERROR\r\n"
    c.port.write(b"\xff\xfe garbage without the prefix\r")
    c.ok("AT")  # ignored, and the modem still answers


def test_stop_is_quick_and_removes_the_pty(card):
    m = SimModem(card, "slow", delay=30).start()
    path = m.path
    c = Client(path)
    c.port.write(csim("0070000001").encode() + b"\r")
    time.sleep(0.2)
    t = time.monotonic()
    m.stop()
    assert time.monotonic() - t < 2
    c.close()
    assert not os.path.exists(path)


def test_bad_options(card):
    with pytest.raises(ValueError, match="unknown modem personality 'huawei'"):
        SimModem(card, "huawei")
    with pytest.raises(ValueError, match="unknown modem option 'delya'"):
        SimModem(card, "slow", delya=1)
    with pytest.raises(ValueError, match="baud must be a positive integer"):
        SimModem(card, baud=0)


def test_helpers():
    assert split_args('1,22,"81E2"') == [("1", False), ("22", False), ("81E2", True)]
    assert split_args('"A,B",3') == [("A,B", True), ("3", False)]
    assert split_args('"open') is None
    assert cla_on_channel(0x80, 1) == 0x81
    assert cla_on_channel(0x00, 3) == 0x03
    assert cla_on_channel(0x80, 4) == 0xC0
    assert cla_on_channel(0x00, 19) == 0x4F
    assert cla_on_channel(0x90, 2) == 0x92  # chaining kept


def test_modem_main_serves_until_sigterm(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root)
    p = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ipa_host.sim.modem.modem import modem_main; "
         "sys.exit(modem_main(sys.argv[1:]))", "--personality", "bare_ccho",
         "--pki", str(tmp_path / "pki"), "--state", str(tmp_path / "e.json"), "--baud", "921600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        path = p.stdout.readline().decode().strip()
        assert path.startswith("/dev/pts/"), (path, p.stderr.read(2000) if p.poll() else "")
        c = Client(path, timeout=5)
        (sid,) = c.ok('AT+CCHO="%s"' % AID)
        (line,) = c.ok(cgla(sid, GET_EID))
        assert line == "+CGLA:4,6115"  # a new card speaks T=0: the answer is announced
        (line,) = c.ok(cgla(sid, "00C0000015"))  # and fetched
        assert line.startswith("+CGLA:46,BF3E12")
        c.close()
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
        assert b"simulated bare_ccho modem" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_modem_main_needs_pki(capsys):
    from ipa_host.sim.modem.modem import modem_main

    with pytest.raises(SystemExit) as e:
        modem_main(["--personality", "textbook"])
    assert e.value.code == 2
    assert "--pki DIR is required" in capsys.readouterr().err


# ---- SerialStream -------------------------------------------------------------------------------


def test_serial_stream_contract(modem_factory):
    m = modem_factory("textbook")
    with SerialStream(m.path, 115200, poll_timeout=0.05) as s:
        t = time.monotonic()
        assert s.read(100) == b""  # nothing came: returns after the poll timeout
        assert time.monotonic() - t < 0.5
        s.write(b"ATI\r")
        buf = b""
        end = time.monotonic() + 2
        while b"OK\r\n" not in buf and time.monotonic() < end:
            buf += s.read(7)  # never more than asked
        assert buf == b"\r\nIPA Sim\r\nSIM-MODEM-1\r\nRevision: SIMMODEM_1.0.0\r\n\r\nOK\r\n"
        # The first stream holds the port with TIOCEXCL and flock: a user's second open fails
        # on TIOCEXCL (EBUSY); root passes TIOCEXCL and meets the flock.
        busy = "in use by another program" if os.geteuid() == 0 else \
            r"is busy \(opened exclusively by another program"
        with pytest.raises(TransportError, match=busy):
            SerialStream(m.path)
    with pytest.raises(TransportError, match="is closed"):
        s.read(1)
    with pytest.raises(TransportError, match="is closed"):
        s.write(b"AT\r")
    SerialStream(m.path).close()  # free again


def test_serial_stream_bad_devices(tmp_path):
    with pytest.raises(TransportError, match="/dev/ttyNOPE9 does not exist: is the modem plugged in"):
        SerialStream("/dev/ttyNOPE9")
    f = tmp_path / "file"
    f.write_bytes(b"")
    with pytest.raises(TransportError, match="is a regular file, expected a serial device"):
        SerialStream(str(f))
    with pytest.raises(TransportError, match="is a folder, expected a serial device"):
        SerialStream(str(tmp_path))
    with pytest.raises(TransportError, match="/dev/null is not a serial port"):
        SerialStream("/dev/null")
    with pytest.raises(TransportError, match="must be a device path"):
        SerialStream("")
