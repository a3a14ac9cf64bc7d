"""Serial-line efficiency of ES10 over AT commands (issue "Modems"): a measurement, not a test.

    .venv/bin/python tools/bench_serial.py                 # table on stdout (~25 s, 2 cores)
    .venv/bin/python tools/bench_serial.py --json          # the same figures as JSON
    .venv/bin/python tools/bench_serial.py --write-docs    # and update docs/bench.md

One fixed ES10 script runs through the whole host chain, for each modem
personality x mode (AT+CGLA, AT+CSIM) x STORE DATA segment size:

    ipa_core.es10 -> IsdrSession -> ipa_core.at_card.AtCard -> ipa_core.at.AtEngine
      -> CountingStream(SerialStream) -> pty -> ipa_host.sim.modem.modem.SimModem -> VirtualEuicc

The script (SCRIPTS["full"]): ES10c.GetEID, ES10b.GetEuiccInfo2,
ES10b.GetEimConfigurationData, ES10c.GetProfilesInfo, ES10b.ListNotification,
ES10b.LoadEuiccPackage of an eIM-signed package of six PSMOs (over 255
bytes, so it takes several STORE DATA blocks; it enables a profile, which
leaves two signed notifications) and ES10b.RetrieveNotificationsList (those
notifications with their certificates: over 2 kB through GET RESPONSE).
Every run starts from a fresh eUICC with the same content, so the runs move
the same ES10 bytes.

What is counted, per run (modem start excluded; AT sync, identification,
channel opening and closing included, as a device pays them):
  apdus_ipa    command APDUs IsdrSession sent (STORE DATA blocks; TERMINAL
               CAPABILITY, MANAGE CHANNEL and SELECT in CSIM mode)
  apdus_line   AT+CSIM / AT+CGLA commands on the line: adds AtCard's own, the
               GET RESPONSEs that follow 61xx (AtCard collects long answers
               itself, so IsdrSession sees whole responses), those that
               complete cut answers, and the stale channel closes at open
  at_commands  every AT command written
  line_out / line_in  bytes written to / read from the serial line, counted at
               the stream (CountingStream around SerialStream) and checked
               against what the simulated modem received and wrote
  apdu_bytes   command + response APDU bytes those AT commands carried
  es10_bytes   ES10 request + response TLV bytes (what the functions need)
  overhead     (line_out + line_in) / apdu_bytes
  wall_s       the run's wall time with the line paced at `baud` (without the
               final check that the line is quiet)
  limit_s      line-rate limit: (line_out + line_in) * 10 / baud (8N1)
  ratio        wall_s / limit_s

Pacing: the simulated modem paces its output like a UART (10 bits a byte);
CountingStream paces the host's output the same way, so both directions
cost line time. AT is command/response, so the two add up; a modem's echo
(echo_urc) is paced after the command here, while a real UART overlaps it
with the command: the echo_urc wall time is a bound from above.
"""

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (ROOT, os.path.join(ROOT, "tests", "host")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from euicc_fixtures import (  # noqa: E402
    EIM_ID, ICCID_2, ICCID_FALLBACK, build_package, iccid_tlv, make_euicc, make_pki,
    psmo_enable, psmo_list_profile_info,
)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdoc  # noqa: E402
from benchdoc import DOCS, machine  # noqa: E402,F401
from ipa_core import es10, modems, tlv  # noqa: E402
from ipa_core.at import AtEngine  # noqa: E402
from ipa_core.at_card import AtCard, open_isdr_session  # noqa: E402
from ipa_core.errors import IpaError  # noqa: E402
from ipa_host.card.serial import SerialStream  # noqa: E402
from ipa_host.sim.modem.modem import LOG_LINES, SimModem  # noqa: E402

MODES = ("cgla", "csim")
SEGMENTS = (255, 128, 64)
PERSONALITIES = ("textbook", "echo_urc", "truncate256")
BAUD = 115200
BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit
DRAIN_QUIET = 0.3  # seconds of silence that end a run's final read of the line
DRAIN_MAX = 5.0
SECTION = "## Serial line (AT)"


class BenchError(Exception):
    """A run whose figures cannot be trusted (a count disagrees, an ES10 result is wrong)."""


# ---- the counted pieces -----------------------------------------------------------------


class CountingStream:
    """The stream contract of ipa_core.at around a SerialStream, counting and pacing.

    Counts bytes written (.out) and read (.inp). With `baud`, every write
    first waits the time the bytes take on a UART (BITS_PER_BYTE per byte),
    as the simulated modem does for its output.
    """

    def __init__(self, stream, baud=None):
        self.stream = stream
        self.baud = baud
        self.out = 0
        self.inp = 0

    def read(self, n):
        data = self.stream.read(n)
        if data:
            self.inp += len(data)
        return data

    def write(self, data):
        if self.baud:
            time.sleep(len(data) * BITS_PER_BYTE / self.baud)
        self.stream.write(data)
        self.out += len(data)
        return len(data)

    def any(self):
        return self.stream.any()


class CountingCard:
    """The eUICC as the modem reaches it: counts APDUs and bytes at the card."""

    def __init__(self, card):
        self.card = card
        self.apdus = 0
        self.bytes = 0

    def transmit(self, apdu):
        resp = self.card.transmit(apdu)
        self.apdus += 1
        self.bytes += len(apdu) + len(resp)
        return resp

    def reset(self):
        self.card.reset()


class CountingSession:
    """What the es10 functions take (store_data, version): logs ES10 request/response sizes."""

    def __init__(self, session, exchanges):
        self.session = session
        self.version = session.version
        self.exchanges = exchanges  # (request bytes, response bytes) per ES10 function

    def store_data(self, request):
        resp = self.session.store_data(request)
        self.exchanges.append((len(request), len(resp)))
        return resp


class LineTrace:
    """AtEngine trace: AT commands written, and APDU bytes inside CSIM/CGLA lines."""

    def __init__(self):
        self.commands = 0
        self.apdu_commands = 0
        self.apdu_out = 0  # command APDU bytes
        self.apdu_in = 0  # response APDU bytes (data + SW as the modem passed them)

    def __call__(self, direction, text):
        u = text.upper()
        if direction == ">":
            self.commands += 1
            if u.startswith("AT+CSIM=") or u.startswith("AT+CGLA="):
                self.apdu_commands += 1
                self.apdu_out += _hex_len(text, u.startswith("AT+CGLA=")) // 2
        elif u.startswith("+CSIM:") or u.startswith("+CGLA:"):
            self.apdu_in += _hex_len(text, False) // 2


def _hex_len(line, skip_session):
    """The <length> field (hex digits) of 'AT+CSIM=<len>,...', 'AT+CGLA=<sid>,<len>,...' or
    '+CSIM: <len>,...'."""
    body = line[line.index("=" if line.upper().startswith("AT") else ":") + 1:]
    fields = body.split(",")
    return int(fields[1 if skip_session else 0].strip())


# ---- the script -----------------------------------------------------------------------------

DP_ADDRESS = "rsp-plus.smdp.bench-operator.example.com"
TXID = bytes(range(0xA0, 0xB0))  # 16 bytes, the largest TransactionId (a UUID)
SMDP_OID = "2.999.10.1"


def bench_package(card, counter):
    """The eIM package of the full script: six PSMOs, eIM-signed (EuiccPackageRequest BF51,
    SGP.32 2.11.1.1), just over 255 bytes.

    enable ICCID_2 (two notifications: disable of ICCID_1, enable of ICCID_2),
    configureImmediateEnable, setDefaultDpAddress, setFallbackAttribute, getRAT and
    listProfileInfo with a tag list; every one succeeds on the default card.
    """
    psmos = [
        psmo_enable(ICCID_2),
        tlv.enc(0xA7, tlv.encode(0x80, b""), tlv.encode(0x81, tlv.oid_encode(SMDP_OID)),
                tlv.encode(0x82, DP_ADDRESS.encode())),
        tlv.enc(0xBF65, tlv.encode(0x80, DP_ADDRESS.encode())),
        tlv.encode(0xA8, iccid_tlv(ICCID_FALLBACK)),
        tlv.encode(0xA6, b""),
        psmo_list_profile_info(bytes.fromhex("5A90919F709F24")),
    ]
    return build_package(card, counter, psmos=psmos, txid=TXID)


def _check(cond, what):
    if not cond:
        raise BenchError(what)


def _load(s, card, package):
    r = es10.load_euicc_package(s, package)
    _check(r.get("kind") == "euiccPackageResultSigned" and "error" not in r,
           "LoadEuiccPackage: expected a signed result, got %r" % (r.get("kind"),))
    return r


def script_full(card):
    """[(name, fn(session))]: the default script (module docstring)."""
    package = bench_package(card, card.state.find_eim(EIM_ID)["counter"] + 1)
    return [
        ("GetEID", lambda s: _check(es10.get_eid(s) == card.eid.upper(), "GetEID: wrong EID")),
        ("GetEuiccInfo2", lambda s: _check(es10.get_euicc_info2(s)["raw"][:2] == b"\xbf\x22",
                                           "GetEuiccInfo2: no BF22")),
        ("GetEimConfigurationData", lambda s: _check(
            [e["eimId"] for e in es10.get_eim_configuration_data(s)] == [EIM_ID],
            "GetEimConfigurationData: expected eIM %s" % EIM_ID)),
        ("GetProfilesInfo", lambda s: _check(len(es10.get_profiles_info(s)) == 4,
                                             "GetProfilesInfo: expected 4 profiles")),
        ("ListNotification", lambda s: _check(es10.list_notification(s) == [],
                                              "ListNotification: expected none on a fresh card")),
        ("LoadEuiccPackage", lambda s: _load(s, card, package)),
        ("RetrieveNotificationsList", lambda s: _check(
            [n["kind"] for n in es10.retrieve_notifications_list(s)]
            == ["otherSignedNotification"] * 2,
            "RetrieveNotificationsList: expected the 2 notifications of the enable")),
    ]


def script_tiny(card):
    """GetEID and the full script's LoadEuiccPackage (for tests: about a second a run)."""
    package = bench_package(card, card.state.find_eim(EIM_ID)["counter"] + 1)
    return [
        ("GetEID", lambda s: _check(es10.get_eid(s) == card.eid.upper(), "GetEID: wrong EID")),
        ("LoadEuiccPackage", lambda s: _load(s, card, package)),
    ]


SCRIPTS = {"full": script_full, "tiny": script_tiny}


# ---- one run ------------------------------------------------------------------------------


def _drain(stream):
    """Read what is still on the line (late URCs) until DRAIN_QUIET of silence."""
    end = time.monotonic() + DRAIN_MAX
    quiet = time.monotonic() + DRAIN_QUIET
    while time.monotonic() < min(end, quiet):
        if stream.read(4096):
            quiet = time.monotonic() + DRAIN_QUIET


def _snapshot(stream, trace, session_log, apdus_ipa):
    return {"line_out": stream.out, "line_in": stream.inp, "at_commands": trace.commands,
            "apdus_line": trace.apdu_commands, "apdus_ipa": apdus_ipa[0],
            "apdu_bytes": trace.apdu_out + trace.apdu_in,
            "es10_bytes": sum(q + r for q, r in session_log), "wall_s": time.perf_counter()}


def _delta(a, b):
    return {k: b[k] - a[k] for k in a}


def _phase(d, baud):
    """A phase's counts with its wall time and line-rate limit (seconds, rounded)."""
    d["wall_s"] = round(d["wall_s"], 4)
    d["limit_s"] = round((d["line_out"] + d["line_in"]) * BITS_PER_BYTE / baud, 4) if baud else None
    return d


def run_one(workdir, personality="textbook", mode="cgla", segment=255, baud=BAUD,
            script="full"):
    """Run `script` once over a fresh eUICC and simulated modem; returns the figures (dict).

    Raises BenchError when the counts of the two ends of the line disagree
    or a function's result is wrong.
    """
    card = make_euicc(workdir, persist=False)
    steps = SCRIPTS[script](card)
    counted = CountingCard(card)
    modem = SimModem(counted, personality, baud=baud or None).start()
    try:
        return _run(modem, counted, card, steps, personality, mode, segment, baud, script)
    finally:
        modem.stop()


def _run(modem, counted, card, steps, personality, mode, segment, baud, script):
    serial = SerialStream(modem.path, baud or BAUD)
    stream = CountingStream(serial, baud or None)
    trace = LineTrace()
    apdus_ipa = [0]
    log = []

    def count_apdu(direction, data):
        if direction == ">":
            apdus_ipa[0] += 1

    try:
        start = _snapshot(stream, trace, log, apdus_ipa)
        engine = AtEngine(stream, trace=trace)
        engine.sync()
        _identity, profile = modems.identify(engine)
        at = AtCard(engine, mode=mode, profile=profile).open()
        _check(at.mode == mode, "AtCard opened in %s mode, asked for %s" % (at.mode, mode))
        s = open_isdr_session(at, segment_size=segment, trace=count_apdu,
                              version=card.version)
        cs = CountingSession(s, log)
        phases = {}
        mark = _snapshot(stream, trace, log, apdus_ipa)
        phases["open"] = _delta(start, mark)
        for _name, fn in steps:
            fn(cs)
        end = _snapshot(stream, trace, log, apdus_ipa)
        phases["script"] = _delta(mark, end)
        s.close()
        at.close()
        done = _snapshot(stream, trace, log, apdus_ipa)
        phases["close"] = _delta(end, done)
        _drain(stream)  # bytes still on their way count as line bytes (none expected)
        late = _delta(done, _snapshot(stream, trace, log, apdus_ipa))
        phases["close"] = {k: v + (late[k] if k != "wall_s" else 0)
                           for k, v in phases["close"].items()}
        notes = list(at.notes)
    finally:
        serial.close()
    total = _delta(start, _snapshot(stream, trace, log, apdus_ipa))
    wall = done["wall_s"] - start["wall_s"]  # the drain's quiet wait is not the chain's
    phases = {k: _phase(v, baud) for k, v in phases.items()}
    # Both ends of the line must agree, else the figures are not worth printing.
    received = list(modem.received)
    _check(len(received) < LOG_LINES, "more than %d command lines: the modem's log overflowed"
           % LOG_LINES)
    modem_in = sum(len(line) + 1 for line in received)  # each command line ends with CR
    _check(stream.out == modem_in, "bytes written %d, the modem received %d"
           % (stream.out, modem_in))
    _check(modem.dropped == 0, "the modem dropped %d bytes nobody read" % modem.dropped)
    _check(stream.inp == modem.written, "bytes read %d, the modem wrote %d"
           % (stream.inp, modem.written))
    _check(trace.commands == modem.at.commands, "AT commands sent %d, the modem saw %d"
           % (trace.commands, modem.at.commands))
    _check(trace.apdu_commands == modem.at.apdus, "CSIM/CGLA commands sent %d, the modem saw %d"
           % (trace.apdu_commands, modem.at.apdus))
    _check(len(log) == len(steps), "%d ES10 exchanges for %d functions" % (len(log), len(steps)))
    line = stream.out + stream.inp
    limit = line * BITS_PER_BYTE / baud if baud else None
    del total["wall_s"]
    return dict(
        total,
        personality=personality, mode=mode, segment=segment, baud=baud, script=script,
        modem_received=modem_in, modem_written=modem.written,
        functions=len(steps), steps=[n for n, _f in steps],
        apdus_card=counted.apdus, card_bytes=counted.bytes,
        apdu_out=trace.apdu_out, apdu_in=trace.apdu_in, exchanges=[list(x) for x in log],
        overhead=round(line / total["apdu_bytes"], 3),
        wall_s=round(wall, 4), limit_s=None if limit is None else round(limit, 4),
        ratio=None if limit is None else round(wall / limit, 3),
        phases=phases, notes=notes)


def run_bench(workdir, personalities=PERSONALITIES, modes=MODES, segments=SEGMENTS, baud=BAUD,
              script="full", progress=None):
    """All combinations, textbook first; returns the list of run_one() results."""
    make_pki(os.path.join(str(workdir), "pki"))  # once: every run reuses it
    out = []
    for p in personalities:
        for mode in modes:
            for seg in segments:
                r = run_one(workdir, p, mode, seg, baud, script)
                out.append(r)
                if progress:
                    progress(r)
    return out


# ---- output ---------------------------------------------------------------------------------

COLUMNS = (
    ("personality", "personality", "%s"), ("mode", "mode", "%s"), ("segment", "seg", "%d"),
    ("apdus_ipa", "APDUs IPA", "%d"), ("apdus_line", "APDUs line", "%d"),
    ("at_commands", "AT cmds", "%d"), ("line_out", "line out B", "%d"),
    ("line_in", "line in B", "%d"), ("apdu_bytes", "APDU B", "%d"),
    ("es10_bytes", "ES10 B", "%d"), ("overhead", "line/APDU", "%.2f"),
    ("wall_s", "wall s", "%.2f"), ("limit_s", "limit s", "%.2f"), ("ratio", "wall/limit", "%.2f"),
)

TEXT_COLS = 3  # the text columns first: left-aligned


def table(results):
    """A Markdown table of the results (also readable on a terminal)."""
    return benchdoc.table(results, COLUMNS, TEXT_COLS)


def _rel(new, old):
    """Change from old to new, in whole per cent (never "-0")."""
    return int(round(100.0 * (new - old) / old)) if old else 0


def _pct(new, old):
    return "%+d%%" % _rel(new, old)


def _span(values, fmt="%.2f"):
    lo, hi = min(values), max(values)
    return fmt % lo if fmt % lo == fmt % hi else (fmt + " to " + fmt) % (lo, hi)


def findings(results):
    """Bullet points computed from the results (only those the runs support)."""
    by = {(r["personality"], r["mode"], r["segment"]): r for r in results}
    segs = sorted({r["segment"] for r in results}, reverse=True)
    modes = [m for m in MODES if any(r["mode"] == m for r in results)]
    out = []
    base = [r for r in results if r["personality"] == "textbook"] or results
    line = [(r["line_out"] + r["line_in"]) for r in base]
    out.append("Line bytes per APDU byte: %s (%s runs). APDUs travel as hex, which doubles "
               "them; the AT framing (command name, length, quotes, CR LF, OK) adds the rest. "
               "Answers are %s of the line bytes."
               % (_span([r["overhead"] for r in base]), base[0]["personality"],
                  _span([100.0 * r["line_in"] / n for r, n in zip(base, line)], "%.0f%%")))
    paced = [r for r in results if r["ratio"] is not None]
    if paced:
        script = [r["phases"]["script"]["wall_s"] / r["phases"]["script"]["limit_s"]
                  for r in paced]
        opened = [r["phases"]["open"] for r in paced]
        out.append("Wall time is %s x the line-rate limit over a whole run, %s x during the "
                   "ES10 script: the chain keeps the line busy. Most of the rest is the open "
                   "(%s s for %s s of line time: AT sync first waits one read poll, 50 ms, "
                   "for a quiet line; then identification, init and channel commands)."
                   % (_span([r["ratio"] for r in paced]), _span(script),
                      _span([o["wall_s"] for o in opened]),
                      _span([o["limit_s"] for o in opened])))
    if len(segs) > 1:
        for m in modes:
            a, b = by.get(("textbook", m, segs[0])), by.get(("textbook", m, segs[-1]))
            if a and b:
                out.append("%s, segment %d instead of %d: %+d APDUs, %s line bytes, %s wall "
                           "time (only the package needs more than one block)."
                           % (m.upper(), segs[-1], segs[0], b["apdus_line"] - a["apdus_line"],
                              _pct(b["line_out"] + b["line_in"], a["line_out"] + a["line_in"]),
                              _pct(b["wall_s"], a["wall_s"])))
    a, b = by.get(("textbook", "cgla", segs[0])), by.get(("textbook", "csim", segs[0]))
    if a and b:
        out.append("CSIM instead of CGLA (segment %d): %+d APDUs (TERMINAL CAPABILITY, MANAGE "
                   "CHANNEL, SELECT, close), %+d bytes written (no session id in each "
                   "command), %s line bytes in all, %s wall time."
                   % (segs[0], b["apdus_line"] - a["apdus_line"], b["line_out"] - a["line_out"],
                      _pct(b["line_out"] + b["line_in"], a["line_out"] + a["line_in"]),
                      _pct(b["wall_s"], a["wall_s"])))
    for p, what in (("echo_urc", "echo, URCs and stray lines"),
                    ("truncate256", "answers cut at 256 bytes, completed with GET RESPONSE")):
        pairs = [(by[k], by[("textbook",) + k[1:]]) for k in by
                 if k[0] == p and ("textbook",) + k[1:] in by]
        if pairs:
            out.append("%s (%s) against textbook: %s line bytes read, %s APDUs, %s wall time."
                       % (p, what, _span([_rel(x["line_in"], y["line_in"]) for x, y in pairs],
                                         "%+d%%"),
                          _span([x["apdus_line"] - y["apdus_line"] for x, y in pairs], "%+d"),
                          _span([_rel(x["wall_s"], y["wall_s"]) for x, y in pairs], "%+d%%")))
    return "\n".join(textwrap.fill(b, 80, initial_indent="- ", subsequent_indent="  ",
                                   break_on_hyphens=False) for b in out)


def _fill(text):
    return textwrap.fill(" ".join(text.split()), 80, break_on_hyphens=False)


def section(results, command, baud, script, elapsed=None):
    """The '## Serial line (AT)' section of docs/bench.md (Markdown, ends with a newline)."""
    r0 = results[0]
    names = r0["steps"]
    package = r0["exchanges"][names.index("LoadEuiccPackage")][0]
    took = "" if elapsed is None else " (%.0f s here)" % elapsed
    pace = ("with the line paced at %d baud (8N1, %d bits a byte) in both directions"
            % (baud, BITS_PER_BYTE)) if baud else "with the line unpaced (no limit s)"
    parts = [
        SECTION,
        _fill("What it costs to carry ES10 over a modem's AT port (3GPP TS 27.007 AT+CGLA / "
              "AT+CSIM), measured by `tools/bench_serial.py`. Taken %s on %s. Reproduce%s:"
              % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 machine(), took)),
        "```sh\n%s\n```" % command,
        _fill("The chain: the ES10 client (`ipa_core.es10`) over `IsdrSession` and "
              "`ipa_core.at_card.AtCard` on a pty to the simulated modem (`ipa-sim modem`, "
              "docs/modems.md) holding the virtual eUICC, %s. The script moves the same %d ES10 "
              "bytes (requests and responses) in every run: %s. The package holds six PSMOs "
              "(%d bytes, so several STORE DATA blocks) and enables a profile; the "
              "notifications list that follows carries the two signed notifications this "
              "leaves, with certificates. Each run starts from a fresh eUICC and includes the "
              "AT sync and identification, the channel opening (AT+CCHO, or MANAGE CHANNEL + "
              "SELECT through AT+CSIM) and closing."
              % (pace, r0["es10_bytes"], ", ".join(names), package)),
        _fill("Columns: APDUs IPA = command APDUs `IsdrSession` sent; APDUs line = "
              "AT+CSIM/AT+CGLA commands (adds what `AtCard` sends itself: the GET RESPONSEs "
              "that collect answers over 256 bytes, or complete cut ones, and three "
              "stale-channel closes at open); AT cmds = all AT commands; line out/in B = bytes "
              "written to / read from the serial line, counted at the stream and checked "
              "against what the modem received and wrote; APDU B = command + response APDU "
              "bytes those commands carried; ES10 B = request + response TLV bytes; "
              "line/APDU = (out + in) / APDU B; wall s = the run's wall time; limit s = "
              "(out + in) x 10 / baud, the time the bytes alone take on the line; wall/limit "
              "= how far the chain is from the line rate."),
        table(results),
        "What the figures say:",
        findings(results),
        _fill("Personalities: `textbook` (TS 27.007 to the letter), `echo_urc` (echo that "
              "ATE0 does not stop, URCs before and inside answers, a stray line before each "
              "answer; its echo is paced after the command, where a real UART overlaps it, so "
              "its wall time is an upper bound), `truncate256` (Huawei MT5700: answers cut at "
              "256 bytes, status word lost; `AtCard` knows the cut from the modem profile and "
              "completes them with GET RESPONSEs of 253 bytes, which take the place of the "
              "ones a long answer needs anyway)."),
        _fill("The simulated modem answers at once and the virtual eUICC computes in "
              "milliseconds: these figures are the cost of the line and of the host chain; a "
              "real modem adds its own time per command and the card's processing time. ES10 "
              "B can differ by a few bytes between invocations: each one generates its test "
              "PKI, and the certificates inside the notifications vary in length. `--json` "
              "prints every figure, also per phase (open, script, close) and the APDUs the "
              "card saw; `--baud 0` runs without pacing (the software cost alone)."),
    ]
    return "\n\n".join(parts) + "\n"


def write_docs(text, path=DOCS):
    """Replace (or add) this tool's section of docs/bench.md; keep the others."""
    benchdoc.write_section(text, SECTION, path)


def _list(text, cast, allowed=None):
    items = [cast(x.strip()) for x in text.split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError("empty list")
    for x in items:
        if allowed is not None and x not in allowed:
            raise argparse.ArgumentTypeError(
                "%r: expected one of %s" % (x, "1..255" if isinstance(allowed, range)
                                            else ", ".join(map(str, allowed))))
    return tuple(items)


def main(argv=None):
    from ipa_host.sim.modem.modem import PERSONALITIES as ALL

    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--personalities", type=lambda t: _list(t, str, ALL), default=PERSONALITIES,
                   help="comma-separated (default %s)" % ",".join(PERSONALITIES))
    p.add_argument("--modes", type=lambda t: _list(t, str, MODES), default=MODES,
                   help="comma-separated cgla,csim (default both)")
    p.add_argument("--segments", type=lambda t: _list(t, int, range(1, 256)), default=SEGMENTS,
                   help="STORE DATA segment sizes (default %s)" % ",".join(map(str, SEGMENTS)))
    p.add_argument("--baud", type=int, default=BAUD,
                   help="line rate both ways (default %d; 0: no pacing)" % BAUD)
    p.add_argument("--script", choices=sorted(SCRIPTS), default="full")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--write-docs", action="store_true",
                   help="update the '%s' section of docs/bench.md" % SECTION)
    args = p.parse_args(argv)
    if args.baud < 0:
        p.error("--baud must be 0 or a positive number")

    def progress(r):
        print("%-12s %-4s %3d: %d APDUs, %d+%d line bytes, %.2f s" % (
            r["personality"], r["mode"], r["segment"], r["apdus_line"], r["line_out"],
            r["line_in"], r["wall_s"]), file=sys.stderr, flush=True)

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-serial-") as tmp:
        try:
            results = run_bench(tmp, args.personalities, args.modes, args.segments, args.baud,
                                args.script, progress)
        except (BenchError, IpaError) as e:  # e.g. a personality that cannot run the script
            print("bench_serial: %s: %s" % (type(e).__name__, e), file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps({"machine": machine(), "baud": args.baud, "script": args.script,
                          "runs": results}, indent=1))
    else:
        print(table(results))
    if args.write_docs:
        command = " ".join([".venv/bin/python", "tools/bench_serial.py"]
                           + [shlex.quote(a) for a in argv])
        write_docs(section(results, command, args.baud, args.script,
                           time.monotonic() - t0))
        print("updated %s" % os.path.relpath(DOCS, ROOT), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
