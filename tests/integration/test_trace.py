"""Traces a lab user opens in Wireshark, end to end: `ipa --pcap F poll|download|info`
and `ipa --gsmtap HOST:PORT` (subprocesses), read back by tshark, a real Wireshark
(Debian's tshark package, installed by tools/setup.sh): its GSMTAP / gsm_sim dissectors
must find the APDUs and its HTTP dissector the ESipa / ES9+ requests, in order. Also
`--trace` naming the ES10 functions, the size cap and bad options.

Peers: the virtual eUICC (built-in, and behind the simulated modem's AT port), the
simulated eIM and SM-DP+ over real TLS.
"""

import json
import os
import socket
import stat
import subprocess

import pytest

from ipa_host.sim.home import DEMO_PROFILES
from ipa_host.sim.smdpp.smdpp import SmdpServer
from ipa_util import IPA

PROFILE_A, PROFILE_B, TEST_PROFILE = (p["iccid"] for p in DEMO_PROFILES)
ISDR_AID = "a0000005591010ffffffff8900000100"
FIELDS = ("frame.number", "frame.protocols", "gsm_sim.apdu.ins", "gsm_sim.aid",
          "gsm_sim.apdu.data", "gsm_sim.apdu.sw", "http.request.method", "http.request.uri",
          "http.response.code", "http.content_type", "syslog.msg")


def tshark(path):
    """Every frame of the pcap `path` as tshark dissects it: [{field: value}]."""
    cmd = ["tshark", "-r", path, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for f in FIELDS:
        cmd += ["-e", f]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [dict(zip(FIELDS, line.split("\t"))) for line in r.stdout.splitlines()]


def events(frames):
    """What a user reads in Wireshark's list: ("apdu", INS, first 6 bytes of command data or
    the AID) for a GSM SIM frame, ("POST", uri) and ("HTTP", code) for HTTP frames."""
    out = []
    for f in frames:
        protos = f["frame.protocols"].split(":")
        if "gsm_sim" in protos:
            assert "gsmtap" in protos, f
            out.append(("apdu", f["gsm_sim.apdu.ins"], f["gsm_sim.aid"] or
                        f["gsm_sim.apdu.data"][:6]))
        elif f["http.request.method"]:
            out.append(("POST", f["http.request.uri"]))
        elif f["http.response.code"]:
            out.append(("HTTP", f["http.response.code"]))
    return out


def index(evs, item, start=0):
    """Where `item` comes first from `start` on (its last part a prefix of the event's)."""
    for i in range(start, len(evs)):
        e = evs[i]
        if e[:len(item) - 1] == item[:-1] and len(e) >= len(item) and \
                e[len(item) - 1].startswith(item[-1]):
            return i
    raise AssertionError("%r not in the trace after #%d: %r" % (item, start, evs[start:]))


def store_data(tag):
    """The event of the first STORE DATA block of the ES10 request with `tag` (hex)."""
    return ("apdu", "0xe2", tag.lower())


def test_poll_with_a_package_is_one_file_in_order(ipa_home, tmp_path):
    home = ipa_home
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    pcap = str(tmp_path / "poll.pcap")
    r = home.ipa("--pcap", pcap, "poll")
    assert r.returncode == 0, r.stderr
    assert "enableResult" in r.stdout
    assert stat.S_IMODE(os.stat(pcap).st_mode) == 0o600

    frames = tshark(pcap)
    evs = events(frames)
    # The card session first: SELECT of the ISD-R on the channel MANAGE CHANNEL opened.
    sel = index(evs, ("apdu", "0xa4", ISDR_AID))
    assert index(evs, ("apdu", "0x70")) < sel
    # ESipa.GetEimPackage (BF4F) -> 200, ES10b.LoadEuiccPackage (BF51) with what came,
    # then ESipa.ProvideEimPackageResult (BF50) -> 200: the order of the procedure.
    get = index(evs, ("POST", "/gsma/rsp2/asn1"), sel)
    assert evs[get + 1] == ("HTTP", "200")
    load = index(evs, store_data("bf51"), get)
    result = index(evs, ("POST", "/gsma/rsp2/asn1"), load)
    assert evs[result + 1] == ("HTTP", "200")
    assert [e for e in evs if e[0] == "POST"] == [("POST", "/gsma/rsp2/asn1")] * 2
    assert evs[-1][:2] == ("apdu", "0x70")  # MANAGE CHANNEL close ends the session
    # The bodies are the ESipa messages: the eIM's requests as it logged them.
    assert [q["function"] for q in home.server.requests] == ["getEimPackage",
                                                            "provideEimPackageResult"]
    posts = [f for f in frames if f["http.request.method"]]
    assert all(f["http.content_type"] == "application/x-gsma-rsp-asn1" for f in posts)
    bodies = _http_bodies(pcap)
    assert [b[:2].hex().upper() for b in bodies] == ["BF4F", "BF4F", "BF50", "BF50"]
    assert bytes.fromhex("5A10" + home.eid) in bodies[0]  # GetEimPackageRequest's eidValue
    # Every APDU ended in 9000 or 61xx (more to GET) in this run, and the GSMTAP frames
    # say so: the status word is where Wireshark reads it, at the end of the datagram.
    sws = {f["gsm_sim.apdu.sw"] for f in frames if f["gsm_sim.apdu.ins"]}
    assert "0x9000" in sws and all(s == "0x9000" or s.startswith("0x61") for s in sws), sws


def _http_bodies(pcap):
    """The HTTP bodies (requests and answers, in order) as Wireshark's media dissector
    shows them after reassembly, as bytes."""
    r = subprocess.run(["tshark", "-r", pcap, "-Y", "http", "-T", "fields", "-e", "media.type"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [bytes.fromhex(line.strip()) for line in r.stdout.splitlines()]


@pytest.fixture
def smdp(ipa_home, tmp_path):
    from ipa_host.sim.home import sim_dir

    dp = SmdpServer(str(tmp_path / "smdp"), os.path.join(sim_dir(ipa_home.path), "pki")).start()
    dp.add_profile("MATCH-1", "89000123456789012341", "Test profile", size=20000)
    yield dp
    dp.stop()


def test_direct_download_and_trace_names(ipa_home, smdp, tmp_path):
    home, dp = ipa_home, smdp
    pcap = str(tmp_path / "download.pcap")
    r = home.ipa("--pcap", pcap, "--trace", "--smdp-ca-file", dp.tls_ca_path, "download",
                 "LPA:1$%s$MATCH-1" % dp.address, url=False, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "installed      89000123456789012341" in r.stdout

    evs = events(tshark(pcap))
    es9 = "/gsma/rsp2/es9plus/"
    challenge = index(evs, store_data("bf2e"))
    init = index(evs, ("POST", es9 + "initiateAuthentication"), challenge)
    auth_server = index(evs, store_data("bf38"), init)
    auth_client = index(evs, ("POST", es9 + "authenticateClient"), auth_server)
    prepare = index(evs, store_data("bf21"), auth_client)
    get_bpp = index(evs, ("POST", es9 + "getBoundProfilePackage"), prepare)
    index(evs, store_data("bf36"), get_bpp)  # the BPP's first segment, after it came
    assert_streamed(pcap, 2)  # the ES9+ answer too is read (and written) as it comes
    # then the PIR goes to that SM-DP+ (ES9+.HandleNotification, 204) after the load
    assert [e[1] for e in evs if e[0] == "POST"] == [
        es9 + "initiateAuthentication", es9 + "authenticateClient",
        es9 + "getBoundProfilePackage", es9 + "handleNotification"]
    assert [e[1] for e in evs if e[0] == "HTTP"] == ["200"] * 3 + ["204"]
    index(evs, ("POST", es9 + "handleNotification"), get_bpp)

    # --trace: each ES10 function named once, at its first STORE DATA block.
    lines = [line for line in r.stderr.splitlines() if line.startswith(("> ", "< "))]
    named = [line.split()[1] for line in lines if line.startswith("> ") and
             line.split()[1].startswith("ES10")]
    for f in ("ES10b.GetEUICCInfo1", "ES10b.GetEUICCChallenge", "ES10b.AuthenticateServer",
              "ES10b.PrepareDownload", "ES10b.LoadBoundProfilePackage"):
        assert f in named, named
    assert named.index("ES10b.GetEUICCChallenge") < named.index("ES10b.AuthenticateServer") \
        < named.index("ES10b.PrepareDownload") < named.index("ES10b.LoadBoundProfilePackage")
    # Walking the STORE DATA commands: a block after one with P1 'more blocks' (11) is
    # bare (no name), every other one names its function.
    more, bare, first = False, 0, 0
    for line in lines:
        parts = line.split()
        apdu = bytes.fromhex(parts[-1])
        if parts[0] != ">" or apdu[1] != 0xE2:
            continue
        if more:
            assert len(parts) == 2, line[:80]
            bare += 1
        else:
            assert parts[1].startswith("ES10"), line[:80]
            first += 1
        more = not apdu[2] & 0x80
    assert bare > 10 and first > 10, (bare, first)
    assert named.count("ES10b.LoadBoundProfilePackage") > 3  # one per BPP segment


def test_modem_card_poll_trace(modem_rig, tmp_path):
    home, card, make = modem_rig
    m = make("quectel_http")  # its HTTP stack carries the ESipa requests (--network modem)
    with open(home.config, "w") as f:
        f.write("[eim]\ntimeout = 10\n")  # per wait of the modem's stack, as a modem needs
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    pcap = str(tmp_path / "modem.pcap")
    r = home.ipa("--pcap", pcap, "--network", "modem", "--ca-file", home.tls["ca_cert"],
                 "--trace", "poll", card="at:" + m.path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    evs = events(tshark(pcap))
    # CGLA: the modem opened the channel itself (AT+CCHO), so no SELECT crosses; the
    # ES10 functions and the ESipa requests through the modem's HTTP stack do, in order.
    info2 = index(evs, store_data("bf55"))
    get = index(evs, ("POST", "/gsma/rsp2/asn1"), info2)
    load = index(evs, store_data("bf51"), get)
    index(evs, ("POST", "/gsma/rsp2/asn1"), load)
    assert "ES10b.LoadEuiccPackage" in r.stderr
    assert m.at.http.requests == 2  # both went through the modem's stack, and are in the file


def test_size_cap_stops_the_file_with_a_note(ipa_home, tmp_path):
    pcap = str(tmp_path / "small.pcap")
    r = subprocess.run([IPA, "--home", ipa_home.path, "--pcap", pcap, "--pcap-max", "2k",
                        "info"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr  # the trace is cut, the command is not
    assert os.path.getsize(pcap) <= 2048
    assert "reached its 2048-byte cap" in r.stderr
    frames = tshark(pcap)
    assert frames[0]["gsm_sim.apdu.ins"]  # what fitted is readable
    assert "capture stopped" in frames[-1]["syslog.msg"], frames[-1]


def test_gsmtap_live_is_what_the_pcap_holds(ipa_home, tmp_path):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    pcap = str(tmp_path / "both.pcap")
    try:
        r = subprocess.run([IPA, "--home", ipa_home.path, "--pcap", pcap, "--gsmtap",
                            "127.0.0.1:%d" % rx.getsockname()[1], "info"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        got = []
        rx.settimeout(0.5)
        while len(got) < 1000:
            try:
                got.append(rx.recv(65536))
            except socket.timeout:
                break
    finally:
        rx.close()
    assert got and all(d[:3] == b"\x02\x04\x04" for d in got)  # GSMTAP v2, 16 bytes, SIM
    select = [d for d in got if d[17] == 0xA4]
    assert select and bytes.fromhex(ISDR_AID) in select[0]
    # The same datagrams, in the same order, as the UDP payloads to port 4729 in the file.
    r = subprocess.run(["tshark", "-r", pcap, "-Y", "udp.dstport == 4729", "-T", "fields", "-e",
                        "udp.payload"],
                       capture_output=True, text=True, timeout=60)
    assert [bytes.fromhex(x.replace(":", "")) for x in r.stdout.split()] == got


def test_trace_names_chained_blocks_once(ipa_home):
    r = subprocess.run([IPA, "--home", ipa_home.path, "--trace", "--segment-size", "3",
                        "--json", "info"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["result"]["eid"] == ipa_home.eid
    lines = r.stderr.splitlines()
    # GetEID 'BF3E 03 5C 01 5A' in 3-byte blocks: named at the first, bare after it.
    i = next(i for i, line in enumerate(lines) if line.split()[1:2] == ["ES10c.GetEID"])
    assert lines[i].split()[2] == "81E2110003BF3E03"
    assert lines[i + 1].split() == ["<", "9000"]
    assert lines[i + 2].split() == [">", "81E29101035C015A"]  # last block: P1 91, no name
    # The card speaks T=0: the answer is announced (61xx) and fetched by a named GET RESPONSE.
    assert lines[i + 3].split() == ["<", "6115"]
    assert lines[i + 4].split() == [">", "GET", "RESPONSE", "01C0000015"]
    assert lines[i + 5].split()[0] == "<" and lines[i + 5].endswith("9000")
    assert len(lines[i + 6].split()) == 3  # the next command is named again
    assert any(line.split()[1:3] == ["SELECT", "ISD-R"] for line in lines)


@pytest.mark.parametrize("options,message", [
    (["--pcap", "/nonexistent-dir/x.pcap"], "--pcap /nonexistent-dir/x.pcap: cannot create it"),
    (["--pcap", "x.pcap", "--pcap-max", "lots"], "--pcap-max lots: expected a size"),
    (["--pcap", "x.pcap", "--pcap-max", "100"], "pcap size cap of 100 bytes"),
    (["--gsmtap", "127.0.0.1:99999"], "--gsmtap 127.0.0.1:99999: expected HOST[:PORT]"),
])
def test_bad_trace_options_are_usage_errors(ipa_home, tmp_path, options, message):
    r = subprocess.run([IPA, "--home", ipa_home.path] + options + ["info"], capture_output=True,
                       text=True, timeout=60, cwd=str(tmp_path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and r.stdout == ""


def test_coaps_poll_is_coap_in_the_file(tmp_path):
    from ipa_host.sim.eim.eim import EimServer
    from ipa_host.sim.home import eim_dir, open_home_euicc, sim_dir

    h = str(tmp_path / "home")
    eid = open_home_euicc(h).eid
    server = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"),
                       association_token=1, coap_port=0).start()
    try:
        server.queue_psmo(eid, [{"op": "enable", "iccid": PROFILE_B}])
        pcap = str(tmp_path / "coap.pcap")
        r = subprocess.run([IPA, "--home", h, "--eim-url", server.coap_url, "--pcap", pcap,
                            "poll"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        functions = [q["function"] for q in server.requests]
    finally:
        server.stop()
    # Wireshark's CoAP dissector: a POST to /gsma/rsp2/asn1 per ESipa request, each
    # answered by a piggybacked ACK with the same message id, the bodies the ESipa ones.
    fields = ("frame.number", "coap.type", "coap.code", "coap.mid", "coap.opt.uri_path_recon",
              "data.data", "gsm_sim.apdu.data")
    cmd = ["tshark", "-r", pcap, "-Y", "coap || gsm_sim", "-T", "fields", "-E", "occurrence=f"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [dict(zip(fields, line.split("\t"))) for line in out.stdout.splitlines()]
    coap_rows = [row for row in rows if row["coap.type"]]
    assert len(coap_rows) == 2 * len(functions) == 4
    for req, ans in zip(coap_rows[::2], coap_rows[1::2]):
        assert (req["coap.type"], req["coap.code"]) == ("0", "2")  # CON POST
        assert req["coap.opt.uri_path_recon"] == "/gsma/rsp2/asn1"
        assert ans["coap.type"] == "2" and ans["coap.mid"] == req["coap.mid"]  # its ACK
        assert ans["coap.code"] in ("68", "69")  # 2.04 / 2.05
    assert [row["data.data"][:4] for row in coap_rows] == ["bf4f", "bf4f", "bf50", "bf50"]
    # ... and ES10b.LoadEuiccPackage between the two exchanges.
    first, second = (int(row["frame.number"]) for row in coap_rows[1:3])
    assert any(row["gsm_sim.apdu.data"].startswith("bf51") and
               first < int(row["frame.number"]) < second for row in rows)


def _fields(pcap, display_filter, *fields):
    """[[value of each field]] of the frames `display_filter` keeps."""
    cmd = ["tshark", "-r", pcap, "-Y", display_filter, "-T", "fields", "-E", "occurrence=f"]
    for f in fields:
        cmd += ["-e", f]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line.split("\t") for line in r.stdout.splitlines()]


def test_indirect_download_streams_the_bpp_between_its_apdus(ipa_home, smdp, tmp_path):
    from ipa_host.sim.eim.eim import EimServer
    from ipa_host.sim.home import sim_dir

    home, dp = ipa_home, smdp
    home.stop_eim()  # this eIM relays to the SM-DP+ (its ES9+ client trusts the SM-DP+'s CA)
    home.server = EimServer(home.eim_dir, pki_dir=os.path.join(sim_dir(home.path), "pki"),
                            association_token=1, smdp_ca_file=dp.tls_ca_path).start()
    pcap = str(tmp_path / "indirect.pcap")
    r = home.ipa("--pcap", pcap, "download", "--indirect", "LPA:1$%s$MATCH-1" % dp.address,
                 timeout=120)
    assert r.returncode == 0, r.stderr
    assert "installed      89000123456789012341" in r.stdout

    # The ESipa requests, each an ASN.1 POST: InitiateAuthentication (BF39),
    # AuthenticateClient (BF3B), GetBoundProfilePackage (BF3A), in order.
    bodies = _http_bodies(pcap)
    requests = [b[:2].hex().upper() for b in bodies[0::2]]
    assert requests[:3] == ["BF39", "BF3B", "BF3A"], requests
    bpp_answer = bodies[5]
    assert bpp_answer[:2] == bytes.fromhex("BF3A") and bytes.fromhex("BF36") in bpp_answer
    assert_streamed(pcap, 2)
    assert len(bpp_answer) > 20000  # the whole 20000-byte profile is in the file


def assert_streamed(pcap, n):
    """The answer to the n-th request was written as the IPA read it: its first pieces come
    before the BPP's first STORE DATA, the rest (reassembled at the last piece) after it."""
    posts = [int(x) for x, in _fields(pcap, "http.request", "frame.number")]
    answer_at = [int(x) for x, in _fields(pcap, "http.response", "frame.number")][n]
    first_load = int(_fields(pcap, "gsm_sim.apdu.data[0:2] == bf:36", "frame.number")[0][0])
    server_data = [int(x) for x, in _fields(pcap, "ip.src == 198.51.100.1 && tcp.len > 0",
                                            "frame.number")]
    assert any(posts[n] < x < first_load for x in server_data)
    assert answer_at > first_load


def test_a_failed_exchange_is_in_the_file_and_ends_in_a_reset(ipa_home, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now: the connection is refused
    pcap = str(tmp_path / "refused.pcap")
    r = ipa_home.ipa("--pcap", pcap, "poll", url="https://127.0.0.1:%d" % port)
    assert r.returncode == 1 and "connection refused" in r.stdout + r.stderr, r
    rows = _fields(pcap, "http.request || tcp.flags.reset == 1", "http.request.uri",
                   "tcp.flags.reset", "http.host")
    assert rows == [["/gsma/rsp2/asn1", "0", "127.0.0.1:%d" % port], ["", "1", ""]]


def test_run_writes_every_cycle_to_one_file(ipa_home, tmp_path):
    pcap = str(tmp_path / "run.pcap")
    r = ipa_home.ipa("--pcap", pcap, "run", "--cycles", "2", timeout=120)
    assert r.returncode == 0, r.stderr
    assert [q["function"] for q in ipa_home.server.requests] == ["getEimPackage"] * 2
    # One synthesised connection per cycle (a new client port), each with its request.
    rows = _fields(pcap, "http.request", "tcp.stream", "tcp.srcport", "http.request.uri")
    assert [row[0] for row in rows] == ["0", "1"] and rows[0][1] != rows[1][1]
    assert {row[2] for row in rows} == {"/gsma/rsp2/asn1"}
    selects = _fields(pcap, "gsm_sim.aid == %s" % ISDR_AID, "frame.number")
    assert len(selects) == 2  # each cycle opened its own card session


def test_pcsc_card_trace(tmp_path, pcscd_server):
    """The virtual eUICC in a real PC/SC reader (pcscd + vpcd): the same trace hook."""
    from ipa_host.sim.euicc.vpcd import VpcdBridge
    from ipa_host.sim.home import open_home_euicc

    card = open_home_euicc(str(tmp_path / "home"))
    pcap = str(tmp_path / "pcsc.pcap")
    with VpcdBridge(card, port=pcscd_server.port):
        pcscd_server.wait_card(True, timeout=10)
        r = subprocess.run([IPA, "--card", "pcsc:%s" % pcscd_server.reader, "--pcap", pcap,
                            "--trace", "--json", "info"], capture_output=True, text=True,
                           timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["result"]["eid"] == card.eid
    evs = events(tshark(pcap))
    get_eid = index(evs, store_data("bf3e"), index(evs, ("apdu", "0xa4", ISDR_AID)))
    assert evs[-1][:2] == ("apdu", "0x70") and get_eid < len(evs) - 1
    lines = [line.split() for line in r.stderr.splitlines()]
    assert [">", "SELECT", "ISD-R"] in [line[:3] for line in lines]
    assert ["ES10c.GetEID"] in [line[1:2] for line in lines if line[0] == ">"]
    # The file holds one GSMTAP frame per command line --trace printed.
    assert len(evs) == sum(1 for line in lines if line[0] == ">")


def test_the_file_is_readable_after_a_power_cut(ipa_home, tmp_path):
    """Written and flushed as the run goes: SIGKILL in the middle of a PSMO cycle (right
    after the eIM's answer, before the eUICC is asked to run the package) leaves a file
    Wireshark reads whole, up to that point."""
    home = ipa_home
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    pcap = str(tmp_path / "cut.pcap")
    probe = home.ipa("--pcap", str(tmp_path / "probe.pcap"), "poll",
                     env={"IPA_TEST_KILL_AFTER_STEP": "1000"})
    events_seen = [line for line in probe.stderr.splitlines() if "test-kill event" in line]
    step = next(int(line.split()[2].rstrip(":")) for line in events_seen if " eIM " in line)
    home.server.queue_psmo(home.eid, [{"op": "disable", "iccid": PROFILE_B}])
    r = home.ipa("--pcap", pcap, "poll", env={"IPA_TEST_KILL_AFTER_STEP": str(step)})
    assert r.returncode == -9, (r.returncode, r.stderr)
    evs = events(tshark(pcap))
    get = index(evs, ("POST", "/gsma/rsp2/asn1"))
    assert evs[get + 1] == ("HTTP", "200") and evs[-1] == ("HTTP", "200")
    with pytest.raises(AssertionError):
        index(evs, store_data("bf51"))  # killed before the load
    # ... which the uncut run of the same procedure has, right after the same answer.
    whole = events(tshark(str(tmp_path / "probe.pcap")))
    assert index(whole, store_data("bf51")) == index(whole, ("POST", "/gsma/rsp2/asn1")) + 2


def test_smds_discovery_and_download_in_one_file(tmp_path):
    """`ipa download --smds`: the SM-DS (ES11) and then the SM-DP+ (ES9+) it points to,
    each its own fake address in the order reached, the eUICC's work in between."""
    from ipa_host.sim.home import open_home_euicc, sim_dir
    from ipa_host.sim.smds.smds import SmdsServer

    h = str(tmp_path / "home")
    card = open_home_euicc(h)
    pki_dir = os.path.join(sim_dir(h), "pki")
    ds = SmdsServer(str(tmp_path / "smds"), pki_dir).start()
    dp = SmdpServer(str(tmp_path / "smdp"), pki_dir, smds_address=ds.address).start()
    try:
        card.set_root_ds_address(ds.address)
        dp.add_profile("EV-1", "89000123456789012341", "Profile EV-1", size=6000, eid=card.eid)
        dp.register_event("EV-1")
        pcap = str(tmp_path / "smds.pcap")
        r = subprocess.run([IPA, "--home", h, "--smdp-ca-file", ds.tls_ca_path, "--pcap", pcap,
                            "download", "--smds"], capture_output=True, text=True, timeout=120)
    finally:
        dp.stop()
        ds.stop()
    assert r.returncode == 0, r.stderr
    rows = _fields(pcap, "http.request", "ip.dst", "http.request.uri", "http.host")
    assert [(row[0], row[1].rsplit("/", 1)[1]) for row in rows] == [
        ("198.51.100.1", "initiateAuthentication"), ("198.51.100.1", "authenticateClient"),
        ("198.51.100.2", "initiateAuthentication"), ("198.51.100.2", "authenticateClient"),
        ("198.51.100.2", "getBoundProfilePackage"), ("198.51.100.2", "handleNotification")]
    assert {row[2] for row in rows[:2]} == {ds.address} and {row[2] for row in rows[2:]} == {
        dp.address}
    # A new eUICC challenge for the SM-DP+, between the SM-DS's last answer and it.
    evs = events(tshark(pcap))
    posts = [i for i, e in enumerate(evs) if e[0] == "POST"]
    assert posts[1] < index(evs, store_data("bf2e"), posts[1]) < posts[2]
