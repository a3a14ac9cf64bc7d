#!/usr/bin/env python3
"""The frozen-firmware bench (issue 12): a board's bundle frozen into a real MicroPython, its
own main loop for a full cycle, the smallest heap where every try passes, the flash it costs.

    python3 tools/mp_firmware.py --micropython-src DIR [--board rp2040_sim7600] [--stack S]
        [--sizes 40,120,400] [--repeat K] [--sweep-repeat K] [--bits 32,64]
        [--check-heap 64K] [--min-heap 32K] [--max-heap 256K] [--step 4K] [--no-sweep]
        [--flash-boards all] [-O N] [--gc-threshold N] [--timeout S] [--verbose [--census]]
        [--json] [--write-docs]
    python3 tools/mp_firmware.py --micropython-src DIR --find-alloc 1024   (diagnosis)

Parts: tools/fw_build.py (the builds, the flash per section and module), tools/fw_lab.py (a
try: the lab, the firmware process, its console, the checks), tools/firmware/ (what is
frozen into the bench firmware besides the board's bundle, and the allocation probe).

DIR is a MicroPython v1.27.0 source tree: a checkout of the micropython repository at tag
v1.27.0 with its lib/micropython-lib submodule (`git submodule update --init
lib/micropython-lib`; no other submodule is needed). The bench writes nothing into it but
mpy-cross's own build (`make -C mpy-cross`); its firmware builds go to build/mp_firmware/.
The 32-bit builds need a multilib compiler (Debian: gcc-multilib). Not part of `make test`
(the source tree is not on a fresh machine); `make test` keeps the WebAssembly checks
(tools/mp_cycle.py).

Builds (ports/unix, MICROPY_FORCE_32BIT=1 for 32-bit: the RP2040's and ESP32's pointer size,
so 16-byte GC blocks; FFI, BTREE, SSL and readline off):
  base      the bench's own frozen modules only: tools/firmware/machine.py (the port's
            `machine`: UART on the simulated modem's pty, Pin, WDT) and fw_driver.py
  <board>   the same plus the board's manifest, with its `include("$(PORT_DIR)/...")` of the
            port's own frozen modules pointed at an empty manifest (they are the port's, not
            ours), and the modem HTTP stack set to --stack
Both link tools/firmware/alloc_probe.c (-Wl,--wrap=gc_alloc,--wrap=gc_realloc), which
reports every heap allocation of --report-alloc bytes or more and the largest of the run.

A try: a fresh lab (virtual eUICC, eIM, SM-DP+ as in tools/mp_cycle.py), the simulated modem
(ipa-sim modem's personality for the stack) switched off on a pty, the board's main.py,
ipa_config.json and CA file in a scratch folder; then
    micropython -X heapsize=N -m fw_driver run <pty fd> <max cycles> <frozen modules...>
runs the board's main.py -> ipa_board.run_main -> ipa_loop: PWRKEY, modem bring-up, APN and
bearer, CA upload, ISD-R session over AT, and poll cycles through the modem's HTTPS stack:
an enable PSMO with rollbackFlag, an eCO (addEim), an indirect download of a profile of
the size tried, with every notification delivered. It passes when every cycle ended
without error, the last found the eIM idle and the lab's checks hold (the eIM verified
both EuiccPackageResults and every notification, the PIR reached the SM-DP+, the profile is
installed and the PSMO's profile enabled, queue and notification list empty, the state file
valid with no procedure left, the watchdog never late).

The sweep: per --bits and profile size, the smallest heap (a multiple of --step between
--min-heap and --max-heap) where all --repeat tries pass, by bisection (a size counts as
failing at its first failed try). --check-heap N runs --repeat tries at N (32-bit) for each
size and exits 1 unless all pass. Also reported: the heap after the frozen set's imports
(frozen, and from .mpy files on MICROPYPATH with the base firmware, as a board without a
frozen bundle would load it), the largest allocation per window, and the flash the frozen
bundle costs per board (`size -A` section growth of the 32-bit binary over the base build)
against the bundle's .mpy total. --write-docs writes the "Frozen firmware" section of
docs/bench.md.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
for _p in (ROOT, TOOLS):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import benchdoc  # noqa: E402
import mp_cycle  # noqa: E402 - the simulated modem personalities per stack
from fw_build import (BOARDS, BUILD, MP_TAG, Builder, BuildError, flash_by_module,  # noqa: E402
                      flash_cost, manifest_stack)
from fw_lab import Console, FirmwareRun, run_micropython, windows  # noqa: E402

KB = 1024
SECTION = "## Frozen firmware"


def parse_size(text):
    """'64K', '65536', '0x10000' -> bytes."""
    t = str(text).strip().upper()
    mult = 1
    if t.endswith("K"):
        mult, t = KB, t[:-1]
    elif t.endswith("M"):
        mult, t = KB * KB, t[:-1]
    try:
        return int(float(t) * mult) if "." in t else int(t, 0) * mult
    except ValueError:
        raise argparse.ArgumentTypeError("%r: expected a size like 64K or 65536" % (text,))


def kb(n):
    return "-" if n is None else ("%.1f KB" % (n / KB) if n % KB else "%d KB" % (n // KB))



# ---- the sweep ---------------------------------------------------------------------------------

class Sweep:
    """Tries at one (firmware, profile size), remembered per heap size."""

    def __init__(self, fw, size, args, work, bits):
        self.fw = fw
        self.size = size
        self.args = args
        self.work = work
        self.bits = bits
        self.tried = {}  # heap -> [FirmwareRun]
        self.index = 0

    def attempt(self, heap, k, stop_at_failure=True):
        """Up to k tries at `heap` -> True when all passed."""
        runs = self.tried.setdefault(heap, [])
        while len(runs) < k:
            self.index += 1
            run = FirmwareRun(os.path.join(self.work, "b%d-%dk-h%d-t%d" % (
                self.bits, self.size // KB, heap // KB, self.index)), self.index, self.size,
                              self.args, self.fw, heap)
            os.makedirs(run.work)
            try:
                run.execute()
            except Exception as e:  # the lab itself failed: reported, never hidden
                run.check("the try completed", False, "%s: %s" % (type(e).__name__, e))
            finally:
                if not self.args.keep:
                    shutil.rmtree(run.work, ignore_errors=True)
            runs.append(run)
            print("  %d-bit %s, %d KB profile, heap %s, try %d: %s%s" % (
                self.bits, self.fw.board, self.size // KB, kb(heap), len(runs),
                "pass" if run.passed() else "FAIL",
                "" if run.passed() else " (%s)" % run.failure()[:300]), flush=True)
            if self.args.verbose and run.console is not None:
                c = run.console
                if not run.passed():
                    for ln in (c.lines if self.args.find_alloc else c.lines[-20:]):
                        print("    mp| " + ln)
                for h in c.heaps:
                    if h.get("census"):
                        print("    census %-10s %s" % (h["at"], " ".join(
                            "%s:%d/%d" % (k, v[0], v[1]) for k, v in
                            sorted(h["census"].items(), key=lambda kv: -kv[1][1]))))
                for w in windows(c):
                    print("    heap %-10s used %6d free %6d largest free %6d; %d allocs >= %d%s"
                          % (w["at"], w["alloc"], w["free"], w["max_free"], w["big"],
                             self.args.report_alloc, ": %s" % w["sizes"] if w["sizes"] else ""))
                if c.tail_allocs():
                    print("    after the last heap line: %s" % [a[0] for a in c.tail_allocs()])
            if not run.passed() and stop_at_failure:
                return False
        return all(r.passed() for r in runs[:k])

    def smallest(self, lo, hi, step, k):
        """The smallest multiple of step in [lo, hi] where k tries pass (bisection), or None."""
        lo = (lo // step) * step
        hi = -(-hi // step) * step
        if not self.attempt(hi, k):
            return None
        good, bad = hi, lo - step
        while good - bad > step:
            mid = bad + ((good - bad) // step // 2) * step
            if self.attempt(mid, k):
                good = mid
            else:
                bad = mid
        return good

    def figures(self, heap):
        """Figures of the passing tries at `heap`."""
        runs = [r for r in self.tried.get(heap, ()) if r.passed()]
        if not runs:
            return {}
        wins = [windows(r.console) for r in runs]
        imports = [_at(w, "imports")["alloc"] - _at(w, "start")["alloc"] for w in wins]
        steady = [x for w in wins for x in w if x["at"].startswith("cycle ")]
        start_up = [x for w in wins for x in w if x["at"] in ("main", "start-up")]
        return {"imports": max(imports), "tries": len(runs),
                "largest": max(r.console.largest or 0 for r in runs),
                "largest_steady": max([x["largest"] or 0 for x in steady] or [0]) or None,
                "largest_start": max([x["largest"] or 0 for x in start_up] or [0]) or None,
                "big_steady": max([x["big"] for x in steady] or [0]),
                "min_max_free": min([x["max_free"] for x in steady] or [0]),
                "seconds": max(r.elapsed for r in runs),
                "collections": max(r.console.collections or 0 for r in runs),
                "apdus": runs[0].lab.get("apdus"), "http": runs[0].lab.get("http")}


def _at(wins, name):
    for w in wins:
        if w["at"] == name:
            return w
    return {"alloc": 0}


def imports_from_files(base, fw, work):
    """Heap after importing fw's frozen set as .mpy files (MICROPYPATH) in the base firmware."""
    lib = os.path.join(ROOT, fw.bundle["out"], "lib")
    c = Console()
    code, err, _s = run_micropython(base, 512 * KB, work, ["imports", -1, 0] + fw.names, 60, c,
                                    env_path=".frozen:" + lib)
    wins = windows(c)
    if code != 0:
        raise BuildError("importing the bundle from .mpy files failed: %s %s"
                         % (err.strip()[-500:], c.lines[-5:]))
    return _at(wins, "imports")["alloc"] - _at(wins, "start")["alloc"]


def imports_frozen(fw, work):
    c = Console()
    code, err, _s = run_micropython(fw, 512 * KB, work, ["imports", -1, 0] + fw.names, 60, c)
    if code != 0:
        raise BuildError("importing the frozen bundle failed: %s %s"
                         % (err.strip()[-500:], c.lines[-5:]))
    wins = windows(c)
    return _at(wins, "imports")["alloc"] - _at(wins, "start")["alloc"]


# ---- report --------------------------------------------------------------------------------------

def report_text(res):
    """The docs/bench.md section (and what the tool prints)."""
    out = [SECTION, "",
           "`python3 tools/mp_firmware.py --micropython-src DIR --write-docs` (DIR: MicroPython "
           "%s). %s." % (MP_TAG, benchdoc.machine()), ""]
    out.append("A board's bundle frozen into MicroPython %s's unix port (32-bit: "
               "`MICROPY_FORCE_32BIT=1`, the RP2040's and ESP32's pointer size, 16-byte GC "
               "blocks%s), running the board's own `main.py` -> `ipa_board.run_main` -> "
               "`ipa_loop` against the simulated modem (pty, cold: PWRKEY), eIM and SM-DP+. "
               "Each try, a fresh lab: a PSMO enable with rollbackFlag that is rolled back "
               "(the eIM unreachable for its delivery), the same enable again (it holds), an "
               "eCO addEim, an indirect download of the profile size shown, an "
               "IpaEuiccDataRequest (EUICCInfo2 and more), every notification delivered; it "
               "passes "
               "when all of that is checked at the eIM, SM-DP+ and eUICC. The heap is "
               "`-X heapsize`; a size passes when every try passes. The board's "
               "`gc_threshold` is %s." % (
                   res["version"], ", frozen with mpy-cross -O%d" % res["opt"]
                   if res.get("opt") else "",
                   "its own (4096)" if res.get("gc_threshold") is None else
                   "set to %d for this run" % res["gc_threshold"]))
    out.append("")
    rows = []
    for s in res["sweeps"]:
        f = s.get("figures") or {}
        rows.append({"board": "%s (%s)" % (s["board"], s["stack"]), "bits": s["bits"],
                     "profile": "%d KB" % (s["size"] // KB),
                     "smallest": ("all pass at %s" % kb(s["max"]) if s.get("passed") else
                                  "FAILS at %s" % kb(s["max"])) if s.get("checked") else
                     kb(s["smallest"]) if s["smallest"] else "none <= %s" % kb(s["max"]),
                     "tries": f.get("tries"), "gc": f.get("collections"),
                     "imports": kb(f.get("imports")),
                     "largest": kb(f.get("largest_steady")) if f.get("largest_steady") else
                     "< %s" % kb(res["report_alloc"]),
                     "start": kb(f.get("largest_start")) if f.get("largest_start") else
                     "< %s" % kb(res["report_alloc"]),
                     "free": kb(f.get("min_max_free"))})
    if rows:
        out.append(benchdoc.table(rows, [
            ("board", "board (stack)", "%s"), ("bits", "bits", "%d"),
            ("profile", "profile", "%s"), ("smallest", "smallest heap, all tries pass", "%s"),
            ("tries", "tries", "%d"), ("gc", "collections per try", "%d"),
            ("imports", "heap after imports", "%s"),
            ("largest", "largest alloc. in a cycle", "%s"),
            ("start", "largest alloc. at start-up", "%s"),
            ("free", "least largest free block after a cycle", "%s")], 3))
        out.append("")
    for c in res["checks"]:
        out.append("- `--check-heap %s --repeat %d`, %s %s, %d KB profile: %d of %d tries "
                   "passed." % (kb(c["heap"]), c["repeat"], c["board"], c["stack"],
                                c["size"] // KB, c["passed"], c["tries"]))
    if res["checks"]:
        out.append("")
    if res.get("imports"):
        out.append("Heap after importing the bundle (`gc.mem_alloc()` after a collection, "
                   "above the interpreter's own): ")
        out.append("")
        out.append(benchdoc.table(res["imports"], [
            ("board", "board", "%s"), ("bits", "bits", "%d"), ("frozen", "frozen", "%s"),
            ("files", "from .mpy files", "%s")], 2))
        out.append("")
    if res.get("flash"):
        out.append("Flash the frozen bundle costs (32-bit `size -A`: growth of `.text`, "
                   "`.rodata`, `.data.rel.ro`, `.data` over the base build; `.rel.dyn`, the "
                   "host's relocations, left out) against its .mpy files "
                   "(`tools/freeze.py`): frozen code keeps its strings as objects, each "
                   "function as a structure with pointers, its names in the qstr pool.")
        out.append("")
        out.append(benchdoc.table(res["flash"], [
            ("board", "board", "%s"), ("measured", "measured", "%s"),
            ("rodata", ".rodata", "%s"), ("relro", ".data.rel.ro", "%s"),
            ("mpy", ".mpy files", "%s"), ("ratio", "flash / .mpy", "%s")], 1))
        out.append("")
    out.append("What these figures do not cover: the port's own frozen modules and drivers "
               "(a real rp2/esp32 build adds its `_boot.py`, filesystem, USB and, on the "
               "ESP32, Wi-Fi and its TLS heap); the C stack (the unix port's is the host "
               "thread's); a real UART's timing (the pty delivers as fast as the simulated "
               "modem writes, so reads come in larger pieces than at 115200 baud); "
               "allocations under --report-alloc bytes (%s) are counted in the largest figure "
               "only. %.0f s in all." % (kb(res["report_alloc"]), res["seconds"]))
    return "\n".join(out) + "\n"


# ---- main ----------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Freeze a board's bundle into MicroPython's unix port, run the board's own "
                    "main loop for a full IPA cycle against the simulators, find the smallest "
                    "heap where every try passes, measure the flash the bundle costs.",
        epilog="See the module docstring (python3 -m pydoc tools/mp_firmware.py) and docs/bench.md.")
    ap.add_argument("--micropython-src", default=os.environ.get("MICROPYTHON_SRC"),
                    help="MicroPython %s source tree (or $MICROPYTHON_SRC)" % MP_TAG)
    ap.add_argument("--board", default="rp2040_sim7600", help="board folder under boards/")
    ap.add_argument("--stack", help="modem HTTP stack (default: the manifest's STACK)")
    ap.add_argument("--sizes", default="40,120,400", help="profile sizes in KB (default 40,120,400)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="tries per heap size for --check-heap and the sweep (default 3)")
    ap.add_argument("--sweep-repeat", type=int,
                    help="tries per heap size in the sweep (default: --repeat)")
    ap.add_argument("--bits", default="32,64", help="builds to sweep: 32, 64 or 32,64")
    ap.add_argument("--check-heap", type=parse_size,
                    help="run --repeat tries at this heap (32-bit) per size; exit 1 unless all pass")
    ap.add_argument("--no-sweep", action="store_true", help="no smallest-heap search")
    ap.add_argument("--min-heap", type=parse_size, default=32 * KB)
    ap.add_argument("--max-heap", type=parse_size, default=256 * KB)
    ap.add_argument("--step", type=parse_size, default=4 * KB)
    ap.add_argument("--sweep-sizes", help="profile sizes to sweep at 64-bit (default: the first)")
    ap.add_argument("--flash-boards", default="all",
                    help="boards whose flash cost is measured (comma list, 'all', 'none')")
    ap.add_argument("--report-alloc", type=parse_size, default=KB,
                    help="report allocations of this many bytes or more (default 1K)")
    ap.add_argument("--find-alloc", type=parse_size, metavar="BYTES",
                    help="diagnosis: one try per size where, after start-up, every allocation "
                         "of BYTES or more fails; prints the tracebacks that name the code")
    ap.add_argument("--census", action="store_true",
                    help="with --verbose: the heap's objects by kind (count/bytes) per window")
    ap.add_argument("-O", dest="opt", type=int, default=0, choices=(0, 1, 2, 3),
                    help="mpy-cross -O level for the frozen modules (3: no asserts, no line "
                         "numbers in tracebacks); default 0, as the board manifests build")
    ap.add_argument("--gc-threshold", type=parse_size,
                    help="the board's gc_threshold setting for the tries (0: the port's "
                         "default, a collection only when the heap is full); default: the "
                         "board's own")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per try")
    ap.add_argument("--keep", action="store_true", help="keep each try's folder (build/...)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        sizes = [int(x) * KB for x in args.sizes.split(",") if x.strip()]
        bits_list = [int(x) for x in args.bits.split(",") if x.strip()]
    except ValueError:
        ap.error("--sizes and --bits take comma-separated numbers")
    if any(b not in (32, 64) for b in bits_list) or not bits_list:
        ap.error("--bits: 32, 64 or 32,64")
    if args.repeat < 1:
        ap.error("--repeat: at least 1")
    board_dir = os.path.join(ROOT, "boards", args.board)
    if not os.path.isfile(os.path.join(board_dir, "manifest.py")):
        ap.error("--board %s: no boards/%s/manifest.py" % (args.board, args.board))
    stack = args.stack or manifest_stack(board_dir)
    if stack not in mp_cycle.BOARD_PERSONALITY:
        ap.error("--board %s: its modem HTTP stack %r has no simulated modem (expected one of %s)"
                 % (args.board, stack, ", ".join(mp_cycle.BOARD_PERSONALITY)))
    if args.flash_boards == "all":
        flash_boards = list(BOARDS)
    elif args.flash_boards == "none":
        flash_boards = []
    else:
        flash_boards = [b for b in args.flash_boards.split(",") if b]
    if args.find_alloc:
        args.no_sweep, args.verbose, args.repeat, bits_list = True, True, 1, [32]
        args.check_heap = args.check_heap or args.max_heap
        flash_boards = []
    try:
        builder = Builder(args.micropython_src, opt=args.opt)
        res = {"version": builder.version, "opt": args.opt, "gc_threshold": args.gc_threshold,
               "sweeps": [], "checks": [],
               "imports": [],
               "flash": [], "report_alloc": args.report_alloc}
        work = tempfile.mkdtemp(prefix="fw-", dir=BUILD)
        failed = False
        try:
            fws = {}
            for bits in sorted(set(bits_list + ([32] if args.check_heap else []))):
                base = builder.build(bits)
                fw = builder.build(bits, board_dir, stack)
                fws[bits] = (base, fw)
                res["imports"].append({"board": args.board, "bits": bits,
                                       "frozen": kb(imports_frozen(fw, work)),
                                       "files": kb(imports_from_files(base, fw, work))})
            if args.check_heap:
                base, fw = fws[32]
                for size in sizes:
                    sw = Sweep(fw, size, args, work, 32)
                    sw.attempt(args.check_heap, args.repeat, stop_at_failure=False)
                    runs = sw.tried[args.check_heap]
                    n_ok = sum(1 for r in runs if r.passed())
                    failed = failed or n_ok < len(runs)
                    res["checks"].append({"heap": args.check_heap, "repeat": args.repeat,
                                          "board": args.board, "stack": stack, "size": size,
                                          "passed": n_ok, "tries": len(runs)})
                    res["sweeps"].append({"board": args.board, "stack": stack, "bits": 32,
                                          "size": size, "smallest": None, "max": args.check_heap,
                                          "checked": True, "passed": n_ok == len(runs),
                                          "figures": sw.figures(args.check_heap)})
            if not args.no_sweep:
                if args.check_heap:
                    res["sweeps"] = []
                for bits in bits_list:
                    base, fw = fws[bits]
                    these = sizes if bits == 32 else (
                        [int(x) * KB for x in args.sweep_sizes.split(",")] if args.sweep_sizes
                        else sizes[:1])
                    for size in these:
                        sw = Sweep(fw, size, args, work, bits)
                        best = sw.smallest(args.min_heap, args.max_heap, args.step,
                                           args.sweep_repeat or args.repeat)
                        res["sweeps"].append({"board": args.board, "stack": stack, "bits": bits,
                                              "size": size, "smallest": best,
                                              "max": args.max_heap,
                                              "figures": sw.figures(best) if best else {}})
                        print("%d-bit %s, %d KB profile: smallest heap %s" % (
                            bits, args.board, size // KB,
                            kb(best) if best else "none <= %s" % kb(args.max_heap)), flush=True)
            if flash_boards:
                base = fws[32][0] if 32 in fws else builder.build(32)
                for b in flash_boards:
                    bdir = os.path.join(ROOT, "boards", b)
                    fw = builder.build(32, bdir, manifest_stack(bdir))
                    d = flash_cost(base, fw)
                    mpy = fw.bundle["total"]
                    if args.verbose:
                        per = flash_by_module(fw)
                        print("flash of %s by module (bytes):" % b)
                        for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
                            print("  %-28s %7d" % (k, v))
                    res["flash"].append({"board": b, "measured": kb(d["total"]),
                                         "rodata": kb(d[".rodata"]),
                                         "relro": kb(d[".data.rel.ro"]), "mpy": kb(mpy),
                                         "ratio": "%.2f" % (d["total"] / mpy),
                                         "bytes": d["total"]})
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    except BuildError as e:
        print("mp_firmware: %s" % e, file=sys.stderr)
        return 2
    res["seconds"] = time.monotonic() - t0
    text = report_text(res)
    print()
    print(text)
    if args.json:
        print(json.dumps(res, indent=1, default=str))
    if args.write_docs:
        benchdoc.write_section(text, SECTION)
        print("wrote the '%s' section of %s" % (SECTION, benchdoc.DOCS))
    if args.check_heap:
        print("mp_firmware --check-heap %s: %s" % (kb(args.check_heap),
                                                 "FAILED" if failed else "ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
