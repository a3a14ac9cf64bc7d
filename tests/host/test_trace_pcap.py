"""ipa_host.trace / pcap pieces a user meets through `--trace`, `--pcap`, `--gsmtap`: the
names of the commands, the GSMTAP SIM layout, the file's mode, cap and checksums (checked
by tshark, a real Wireshark, with its checksum validation on). End-to-end runs through
the `ipa` command are in tests/integration/test_trace.py."""

import os
import socket
import stat
import subprocess

import pytest

from ipa_host import pcap, trace

ISDR_SELECT = bytes.fromhex("00A4040010A0000005591010FFFFFFFF890000010000")


def names(*apdus):
    n = trace.ApduNamer()
    return [n.name(bytes.fromhex(a)) for a in apdus]


def test_es10_functions_are_named_at_the_first_block_only():
    assert names("80E2910003BF2E00", "80E2910003BF2200") == [
        "ES10b.GetEUICCChallenge", "ES10b.GetEUICCInfo2"]
    # A chained request: P1 11 (more blocks) then 91 (last): one name.
    assert names("81E2110003BF3803", "81E2110103000000", "81E2910203000000",
                 "81E2910003BF5500") == ["ES10b.AuthenticateServer", "", "",
                                         "ES10b.GetEimConfigurationData"]
    # The block number wraps at 256 (P2 00 again) without starting a new command.
    n = trace.ApduNamer()
    first = n.name(bytes.fromhex("80E2110001BF"))
    rest = [n.name(bytes((0x80, 0xE2, 0x11, p2 & 0xFF, 1, 0))) for p2 in range(1, 300)]
    assert first == "STORE DATA BF" and set(rest) == {""}
    # The later segments of a bound profile package, and tags nobody defined.
    assert names("80E2910003A00100", "80E2910003880100", "80E2910002BF99",
                 "80E2910001DD") == ["ES10b.LoadBoundProfilePackage"] * 2 + [
        "STORE DATA BF99", "STORE DATA DD"]


def test_card_commands_are_named():
    assert names(ISDR_SELECT.hex(), "00A4040002AABB00", "0070000001", "00708003",
                 "01C0000010", "80AA000005A903830107", "00B0000000", "00") == [
        "SELECT ISD-R", "SELECT AABB", "MANAGE CHANNEL open", "MANAGE CHANNEL close 3",
        "GET RESPONSE", "TERMINAL CAPABILITY", "INS B0", "?"]


def test_text_lines_name_commands_and_failed_status_words():
    lines = []
    t = trace.Tracer(text=lines.append)
    t(">", bytes.fromhex("81E2910006BF3E035C015A"))
    t("<", bytes.fromhex("6A88"))
    t(">", ISDR_SELECT)
    t("<", bytes.fromhex("6110"))
    assert [line.split(None, 1) for line in lines] == [
        [">", "ES10c.GetEID" + " " * 21 + "81E2910006BF3E035C015A"],
        ["<", "referenced data not found" + " " * 8 + "6A88"],
        [">", "SELECT ISD-R" + " " * 21 + ISDR_SELECT.hex().upper()],
        ["<", "6110"]]
    assert len({line.rindex(" ") for line in lines}) == 1  # the hex in one column


def test_a_refused_block_ends_its_chain():
    lines = []
    t = trace.Tracer(text=lines.append)
    t(">", bytes.fromhex("81E2110003BF3803"))
    t("<", bytes.fromhex("6A80"))  # the IPA stops sending this request
    t(">", bytes.fromhex("81E2910003BF2E00"))
    t("<", b"\x90\x00")
    assert [line.split()[1] for line in lines[::2]] == ["ES10b.AuthenticateServer",
                                                        "ES10b.GetEUICCChallenge"]
    assert lines[1].split()[1:] == ["incorrect", "data", "field", "6A80"]


def test_a_response_too_big_for_udp_is_cut_keeping_its_status_word(tmp_path):
    path = str(tmp_path / "big.pcap")
    warnings = []
    w = pcap.PcapWriter(path)
    t = trace.Tracer(pcap_writer=w, warn=warnings.append)
    t(">", bytes.fromhex("81E2910003BF2D00"))
    t("<", b"\xbf" * 70000 + b"\x90\x00")
    w.close()
    assert warnings and "cut to 64984" in warnings[0]
    out = _tshark(path, "-T", "fields", "-e", "udp.length", "-e", "gsm_sim.apdu.sw")
    assert out.split() == ["65008", "0x9000"]


def test_gsmtap_sim_datagram_layout():
    d = pcap.gsmtap_sim(bytes.fromhex("80E2910003BF2E00"), bytes.fromhex("BF2E019000"))
    # GSMTAP v2, header 4 words, type SIM, the rest of the header zero (sub-type APDU).
    assert d[:16] == bytes((2, 4, 4)) + bytes(13)
    # Case 3: the command whole, then the response data and SW.
    assert d[16:] == bytes.fromhex("80E2910003BF2E00" + "BF2E01" + "9000")
    # Case 4: the Le byte goes (T=0 sends none).
    assert pcap.gsmtap_sim(ISDR_SELECT, b"\x90\x00")[16:] == ISDR_SELECT[:-1] + b"\x90\x00"
    assert pcap.gsmtap_sim(bytes.fromhex("00708001"), b"\x90\x00")[16:] == \
        bytes.fromhex("00708001009000")  # case 1: P3 00
    assert pcap.gsmtap_sim(bytes.fromhex("00C0000010"), b"\x01" * 16 + b"\x90\x00")[16:21] == \
        bytes.fromhex("00C0000010")  # case 2: P3 is Le


def _tshark(path, *args):
    r = subprocess.run(["tshark", "-r", path, "-o", "ip.check_checksum:TRUE", "-o",
                        "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"] + list(args),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_file_mode_checksums_and_flows(tmp_path):
    path = str(tmp_path / "t.pcap")
    with open(path, "w") as f:
        f.write("old")
    os.chmod(path, 0o644)
    w = pcap.PcapWriter(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # also for a file that was there
    t = trace.Tracer(pcap_writer=w)
    t(">", ISDR_SELECT)
    t("<", bytes.fromhex("6F00") + b"\x90\x00")
    flow = pcap.TcpFlow(w, bytes((198, 51, 100, 1)), 50000, 80)
    flow.data(True, b"x" * 3000)  # three segments
    flow.data(False, b"y")
    flow.close()
    size = os.path.getsize(path)
    assert size == w.size  # flushed as written, before close
    w.close()
    out = _tshark(path, "-T", "fields", "-e", "ip.checksum.status", "-e", "udp.checksum.status",
                  "-e", "tcp.checksum.status", "-e", "tcp.flags.str")
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == 1 + 3 + 3 + 1 + 3  # APDU, handshake, data, answer, FIN/FIN/ACK
    # 1 = Good (checked, as the options ask), for every IP header and each UDP / TCP segment.
    assert all(row[0] == "1" and "1" in row[1:3] for row in rows), rows
    assert _tshark(path, "-Y", "tcp.analysis.flags").strip() == ""  # no lost/out-of-order data


def test_the_cap_keeps_the_file_under_it_with_a_note(tmp_path):
    path = str(tmp_path / "cap.pcap")
    warnings = []
    w = pcap.PcapWriter(path, max_bytes=2000, warn=warnings.append)
    t = trace.Tracer(pcap_writer=w)
    for _ in range(40):
        t(">", ISDR_SELECT)
        t("<", b"\x90\x00")
    w.close()
    assert os.path.getsize(path) <= 2000 and w.full and w.dropped > 0
    assert len(warnings) == 1 and "2000-byte cap" in warnings[0]
    out = _tshark(path, "-T", "fields", "-e", "gsm_sim.aid", "-e", "syslog.msg")
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == w.packets and all(r[0] for r in rows[:-1])
    assert rows[-1][1].startswith("ipa: capture stopped")
    with pytest.raises(ValueError, match="expected at least"):
        pcap.PcapWriter(str(tmp_path / "tiny.pcap"), max_bytes=100)


def test_option_values():
    assert [trace.parse_size(v) for v in ("64M", "500k", "2000", "1g", "3MB")] == [
        64 << 20, 500 << 10, 2000, 1 << 30, 3 << 20]
    for bad in ("", "M", "lots", "1.5M"):
        with pytest.raises(ValueError, match="expected a size"):
            trace.parse_size(bad)
    fam, addr = trace.parse_gsmtap("127.0.0.1")
    assert fam == socket.AF_INET and addr == ("127.0.0.1", 4729)
    fam, addr = trace.parse_gsmtap("[::1]:5000")
    assert fam == socket.AF_INET6 and addr[:2] == ("::1", 5000)
    for bad in ("127.0.0.1:0", "127.0.0.1:x", "[::1]:70000"):
        with pytest.raises(ValueError, match="expected HOST"):
            trace.parse_gsmtap(bad)
    with pytest.raises(ValueError, match="cannot resolve"):
        trace.parse_gsmtap("no-such-host.invalid")
