#!/usr/bin/env python3
"""The frozen-firmware bench (issue 12): a board's bundle frozen into a real MicroPython, its
own main loop for a full cycle, the smallest heap where every try passes, the flash it costs.

    python3 tools/mp_firmware.py --micropython-src DIR [--board rp2040_sim7600] [--stack S]
        [--sizes 40,120,400] [--repeat K] [--bits 32,64] [--check-heap 64K]
        [--min-heap 32K] [--max-heap 256K] [--step 4K] [--no-sweep] [--flash-boards all]
        [--timeout S] [--verbose] [--json] [--write-docs]

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
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
FIRMWARE = os.path.join(TOOLS, "firmware")
for _p in (ROOT, TOOLS):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import benchdoc  # noqa: E402
import freeze  # noqa: E402
import mp_cycle  # noqa: E402 - the lab (Run), the simulated modem's PWRKEY and bundle helpers
from ipa_host.sim import pki  # noqa: E402
from ipa_host.sim.eim import EimServer  # noqa: E402
from ipa_host.sim.home import eim_dir, open_home_euicc, sim_dir  # noqa: E402
from ipa_host.sim.smdpp import SmdpServer  # noqa: E402

KB = 1024
BUILD = os.path.join(ROOT, "build", "mp_firmware")
SECTION = "## Frozen firmware"
BOARDS = ("rp2040_sim7600", "esp32s3_sim7080g", "quecpython_ec200u")
MP_TAG = "v1.27.0"
MAKE_VARS = ["MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0", "MICROPY_PY_SSL=0",
             "MICROPY_USE_READLINE=0", "MICROPY_PY_THREAD=0"]
BUILD_TIMEOUT = 900
MAX_CYCLES = 10
CA_FILE = "eim_ca.pem"
STATE_FILE = "ipa_state.json"
MAX_CONSOLE = 20000  # console lines kept per try
# Console lines after which a try cannot pass: stop it at once rather than wait for the
# board's start-up back-off (5 s, 15 s, ...).
FATAL = ("start-up try", "could not reopen", "recovery failed")
FLASH_SECTIONS = (".text", ".rodata", ".data.rel.ro", ".data")
TARGET = mp_cycle.TARGET  # the profile both PSMOs enable
# IpaEuiccDataRequest tags: defaultSmdpAddress, euiccPackageResultList, EUICCInfo2,
# associationToken (the board reads EUICCInfo2, ~1 KB, whole)
DATA_TAGS = ["81", "A2", "BF22", "84"]
RELAY_IDLE_S = 60


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


# ---- builds ------------------------------------------------------------------------------------

class BuildError(Exception):
    pass


def _run(cmd, log, cwd=None, timeout=BUILD_TIMEOUT):
    with open(log, "w") as f:
        r = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    if r.returncode != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise BuildError("%s failed (exit %d); log %s:\n%s" % (" ".join(cmd[:3]), r.returncode,
                                                              log, tail))


def check_source(src):
    """A usable MicroPython v1.27.0 tree, or a BuildError saying how to get one."""
    how = ("get one with: git clone --branch %s https://github.com/micropython/micropython "
           "DIR && git -C DIR submodule update --init lib/micropython-lib" % MP_TAG)
    if not src or not os.path.isfile(os.path.join(src, "py", "mpconfig.h")):
        raise BuildError("--micropython-src %r is not a MicroPython source tree; %s" % (src, how))
    with open(os.path.join(src, "py", "mpconfig.h")) as f:
        text = f.read()
    ver = tuple(int(x) for x in re.findall(r"#define MICROPY_VERSION_(?:MAJOR|MINOR|MICRO) (\d+)",
                                           text))
    if ver[:2] != (1, 27):
        print("mp_firmware: warning: %s is MicroPython %s, the bench is made for %s"
              % (src, ".".join(map(str, ver)), MP_TAG), file=sys.stderr)
    if not os.path.isfile(os.path.join(src, "lib", "micropython-lib", "README.md")):
        raise BuildError("%s/lib/micropython-lib is empty (the frozen build needs it); %s"
                         % (src, how))
    return ".".join(map(str, ver))


def check_compiler(bits, work):
    """gcc can build and link -m32 programs (gcc-multilib), else a BuildError."""
    if bits != 32:
        return
    c = os.path.join(work, "m32.c")
    with open(c, "w") as f:
        f.write("int main(void) { return 0; }\n")
    r = subprocess.run(["gcc", "-m32", "-o", c[:-2], c], capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError("gcc cannot build 32-bit programs (%s); install the multilib "
                         "compiler: sudo apt-get install gcc-multilib"
                         % (r.stderr.strip().splitlines() or ["?"])[-1])


class Firmware:
    """One unix-port build: `binary`, its `sections` ({name: bytes}), `names` (the frozen
    modules of the board's bundle, import order), `bundle` (tools/freeze report or None)."""

    def __init__(self, binary, sections, board=None, stack=None, bundle=None, names=()):
        self.binary = binary
        self.sections = sections
        self.board = board
        self.stack = stack
        self.bundle = bundle
        self.names = list(names)


def sections(binary):
    out = subprocess.run(["size", "-A", binary], capture_output=True, text=True, check=True)
    sec = {}
    for ln in out.stdout.splitlines():
        parts = ln.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = int(parts[1])
    return sec


class Builder:
    """Builds mpy-cross once and the unix port per (bits, board, stack) into build/."""

    def __init__(self, src, verbose=False, opt=0):
        self.opt = opt  # mpy-cross -O level for the frozen modules (0: as a board builds)
        self.src = os.path.abspath(src)
        self.verbose = verbose
        self.version = check_source(self.src)
        os.makedirs(BUILD, exist_ok=True)
        self.port_dir = os.path.join(BUILD, "port")  # $(PORT_DIR) for board manifests
        os.makedirs(os.path.join(self.port_dir, "boards"), exist_ok=True)
        with open(os.path.join(self.port_dir, "boards", "manifest.py"), "w") as f:
            f.write("# The port's own frozen modules are left out of the bench's build.\n")
        self.cross_done = False
        self.probes = {}

    def _say(self, msg):
        print("mp_firmware: " + msg, flush=True)

    def mpy_cross(self):
        if not self.cross_done:
            self._say("building mpy-cross in %s/mpy-cross" % self.src)
            _run(["make", "-C", os.path.join(self.src, "mpy-cross"), "-j%d" % jobs()],
                 os.path.join(BUILD, "mpy-cross.log"))
            self.cross_done = True

    def probe(self, bits):
        if bits not in self.probes:
            check_compiler(bits, BUILD)
            obj = os.path.join(BUILD, "alloc_probe%d.o" % bits)
            src = os.path.join(FIRMWARE, "alloc_probe.c")
            if not os.path.exists(obj) or os.path.getmtime(src) > os.path.getmtime(obj):
                cmd = ["gcc", "-O2", "-c", src, "-o", obj]
                if bits == 32:
                    cmd.insert(1, "-m32")
                _run(cmd, obj + ".log")
            self.probes[bits] = obj
        return self.probes[bits]

    def build(self, bits, board_dir=None, stack=None):
        """-> Firmware. board_dir None: the base build (the bench's modules only)."""
        self.mpy_cross()
        name = "%d-%s%s" % (bits, "base" if board_dir is None else
                            "%s-%s" % (os.path.basename(board_dir), stack),
                            "-O%d" % self.opt if self.opt else "")
        out = os.path.join(BUILD, name)
        os.makedirs(out, exist_ok=True)
        bundle, names, include = None, [], ""
        if board_dir is not None:
            bundle, manifest = board_manifest(board_dir, stack, os.path.join(out, "bundle"))
            names = [m["module"] for m in bundle["modules"]]
            include = "include(%r)\n" % manifest
        manifest = os.path.join(out, "manifest.py")
        with open(manifest, "w") as f:
            f.write("# tools/mp_firmware.py: what this bench firmware freezes\n" + include +
                    "module('machine.py', base_path=%r)\n" % FIRMWARE +
                    "module('fw_driver.py', base_path=%r)\n" % FIRMWARE)
        probe = self.probe(bits)
        cmd = ["make", "-C", os.path.join(self.src, "ports", "unix"), "-j%d" % jobs(),
               "BUILD=" + os.path.join(out, "build"), "PROG=micropython",
               "FROZEN_MANIFEST=" + manifest, "MICROPY_MANIFEST_PORT_DIR=" + self.port_dir,
               "LDFLAGS_EXTRA=-Wl,--wrap=gc_alloc -Wl,--wrap=gc_realloc "
               "-Wl,--wrap=gc_collect_start " + probe] + MAKE_VARS
        if bits == 32:
            cmd.append("MICROPY_FORCE_32BIT=1")
        if self.opt:
            cmd.append("MPY_CROSS_FLAGS=-O%d" % self.opt)
        self._say("building %s (%d-bit unix port%s)" % (
            name, bits, "" if board_dir is None else ", %d modules frozen" % len(names)))
        binary = os.path.join(out, "build", "micropython")
        if os.path.exists(binary) and os.path.getmtime(probe) > os.path.getmtime(binary):
            os.remove(binary)  # relinked: make does not see a new probe object in LDFLAGS
        _run(cmd, os.path.join(out, "make.log"))
        return Firmware(binary, sections(binary), board_dir and os.path.basename(board_dir),
                        stack, bundle, names)


def jobs():
    return max(1, os.cpu_count() or 1)


def board_manifest(board_dir, stack, out):
    """(tools/freeze report, path of the manifest to freeze) for the board with its modem
    HTTP stack set to `stack` (mp_cycle.board_bundle makes a copy when it is not the
    manifest's own)."""
    report = mp_cycle.board_bundle(board_dir, stack, out) if stack else \
        freeze.build(board_dir, out)
    report.pop("_manifest", None)
    copy = os.path.join(out + "-src", "boards", os.path.basename(board_dir), "manifest.py")
    return report, copy if os.path.isfile(copy) else os.path.join(board_dir, "manifest.py")


def manifest_stack(board_dir):
    """The `STACK = "..."` of a board manifest, or None (a board without an AT stack)."""
    with open(os.path.join(board_dir, "manifest.py")) as f:
        found = re.findall(r'^STACK = "(\w+)"', f.read(), re.M)
    return found[0] if found else None


# ---- one MicroPython process -------------------------------------------------------------------

class Console:
    """The bench MicroPython's stdout, parsed as it comes (see tools/firmware/fw_driver.py)."""

    def __init__(self, on_pin=None, on_fatal=None, census=False):
        self.census = census
        self._map = None
        self.on_pin = on_pin
        self.on_fatal = on_fatal
        self.lines = []  # the board's own console lines
        self.heaps = []  # @@heap records, each with "allocs" (the window ending there)
        self.cycles = []
        self.done = None
        self.error = None
        self.largest = None
        self.collections = None
        self._allocs = []
        self._mem = None
        self.fatal = None

    def feed(self, line):
        if self._map is not None:  # inside mem_info(1)'s block map (--census)
            m = re.match(r"^[0-9a-f]{8}: (.*)$", line)
            if m:
                self._map += m.group(1)
                return
            m = re.match(r"^\s+\((\d+) lines all free\)", line)
            if m:
                self._map += "." * (int(m.group(1)) * 64)
                return
            if line.startswith("GC memory layout"):
                return
            self._mem["census"] = census(self._map)
            self._mem["map"] = self._map
            self._map = self._mem = None
        if line.startswith("@@"):
            kind, _, rest = line[2:].partition(" ")
            if kind == "pin" and self.on_pin is not None:
                pin, level = rest.split()
                self.on_pin(int(pin), int(level))
            elif kind == "alloc":
                n, ok = rest.split()
                self._allocs.append([int(n), ok == "1"])
            elif kind == "alloc-largest":
                self.largest = int(rest.split()[0])
                self.collections = int(rest.split()[3])
            elif kind == "heap":
                rec = json.loads(rest)
                rec["allocs"] = self._allocs
                self._allocs = []
                self.heaps.append(rec)
                self._mem = rec
            elif kind == "cycle":
                self.cycles.append(json.loads(rest))
            elif kind == "done":
                self.done = json.loads(rest)
            elif kind == "error":
                self.error = json.loads(rest)
            elif len(self.lines) < MAX_CONSOLE:
                self.lines.append(line)
            return
        if self._mem is not None:  # mem_info()'s lines after a @@heap
            m = re.search(r"max blk sz: (\d+), max free sz: (\d+)", line)
            if m:
                self._mem["max_blk"] = int(m.group(1))
                self._mem["max_free_blocks"] = int(m.group(2))
                if self.census:
                    self._map = ""
                else:
                    self._mem = None
                return
            if line.startswith(("stack: ", "GC: total", "mem: total")):
                return
        if len(self.lines) < MAX_CONSOLE:
            self.lines.append(line)
        if self.fatal is None and any(t in line for t in FATAL):
            self.fatal = line
            if self.on_fatal is not None:
                self.on_fatal(line)

    def tail_allocs(self):
        """Allocations after the last @@heap line (a run cut short)."""
        return self._allocs


def census(cells):
    """{kind: [objects, bytes]} from mem_info(1)'s block map: one letter per 16-byte block,
    '=' continuing the object before it ('h': an object of no listed type: dict tables,
    classes, instances, bytearray/str data...; 'B' bytecode functions, 'D' dicts, 'T' tuples,
    'L' lists, 'S' str/bytes, 'A' arrays, 'M' modules)."""
    out = {}
    cur = None
    for ch in cells:
        if ch == "=":
            if cur is not None:
                out[cur][1] += 16
            continue
        cur = None if ch == "." else ch
        if cur is not None:
            n = out.setdefault(cur, [0, 0])
            n[0] += 1
            n[1] += 16
    return out


def run_micropython(fw, heap, cwd, args, timeout, console, pass_fds=(), report_alloc=1024,
                    env_path=".frozen"):
    """fw.binary -X heapsize=heap -m fw_driver args..., stdout into `console` as it comes.
    -> (exit code or None on a timeout/stop, stderr text, seconds)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MICROPYPATH": env_path,
           "MP_FW_ALLOC_REPORT": str(report_alloc), "HOME": cwd}
    cmd = [fw.binary, "-X", "heapsize=%d" % heap, "-m", "fw_driver"] + [str(a) for a in args]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, pass_fds=pass_fds)
    console.on_fatal = lambda line: p.kill()
    err = []

    def pump_err():
        err.append(p.stderr.read(1 << 20).decode("utf-8", "replace"))

    t = threading.Thread(target=pump_err, daemon=True)
    t.start()
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    try:
        for raw in p.stdout:
            console.feed(raw.decode("utf-8", "replace").rstrip("\r\n"))
        code = p.wait()
    finally:
        timer.cancel()
        if p.poll() is None:
            p.kill()
            p.wait()
    t.join(5)
    secs = time.monotonic() - t0
    if code < 0:
        code = None  # killed: a timeout or a fatal console line
    return code, "".join(err), secs


# ---- a try against the lab ---------------------------------------------------------------------

class DroppingRelay:
    """A loopback TCP relay in front of the eIM's HTTPS port (TLS passes through it) that
    drops one connection: the first one after the eIM handed out the first PSMO, so that the
    IPA cannot deliver that enable's result and rolls the switch back (SGP.32 has no eIM
    command for a rollback: the IPA decides it when the eIM is unreachable after an enable
    with rollbackFlag). Every other connection is relayed as it is."""

    def __init__(self, eim):
        self.eim = eim
        host, port = eim.url.rsplit("//", 1)[1].rsplit(":", 1)
        self.target = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.url = "https://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.dropped = 0
        self.relayed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dropping-relay", daemon=True)
        self._thread.start()

    def _psmo_handed_out(self):
        return any(r["function"] == "getEimPackage" and "(psmo)" in (r.get("note") or "")
                   for r in self.eim.requests)

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if not self.dropped and self._psmo_handed_out():
                self.dropped += 1
                conn.close()  # the eIM is gone for this one connection
                continue
            self.relayed += 1
            threading.Thread(target=self._pipe_both, args=(conn,), daemon=True).start()

    def _pipe_both(self, conn):
        try:
            up = socket.create_connection(self.target, timeout=10)
        except OSError:
            conn.close()
            return
        t = threading.Thread(target=_pipe, args=(up, conn), daemon=True)
        t.start()
        _pipe(conn, up)
        t.join(30)
        for x in (conn, up):
            x.close()

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def _pipe(a, b):
    """Bytes from a to b until a closes (then b's sending side is shut)."""
    a.settimeout(RELAY_IDLE_S)
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class FirmwareRun(mp_cycle.Run):
    """One try: a fresh lab (virtual eUICC, eIM, SM-DP+, the simulated modem) and the board's
    own main loop in the bench firmware, through a queue that takes every path a board has
    (the module docstring); then the checks, on the lab's side."""

    def __init__(self, work, index, size, args, fw, heap):
        mp_cycle.Run.__init__(self, work, index, size, args, None)
        self.fw = fw
        self.heap = heap
        self.matching_id = "MP-FW-%d" % (index + 1)
        self.console = None
        self.code = None
        self.stderr = ""
        self.host = None  # mp_cycle.Run's bridge: none here
        self.lab = {}
        self.relay = None

    def execute(self):
        home = os.path.join(self.work, "home")
        card = open_home_euicc(home)
        eid = card.eid
        pki_dir = os.path.join(sim_dir(home), "pki")
        dp = SmdpServer(os.path.join(self.work, "smdp"), pki_dir).start()
        try:
            dp.add_profile(self.matching_id, self.iccid, "Frozen firmware %d KB"
                           % (self.size // KB), size=self.size)
            eim = EimServer(eim_dir(home), pki_dir=pki_dir, association_token=1, api_port=None,
                            smdp_ca_file=dp.tls_ca_path).start()
            try:
                self._queue(eim, eid, pki_dir, dp)
                self.relay = DroppingRelay(eim)
                try:
                    self._live(card, eim)
                finally:
                    self.relay.stop()
                self._lab_checks(card, eim, dp, eid)
            finally:
                eim.stop()
        finally:
            dp.stop()
        return self

    def _queue(self, eim, eid, pki_dir, dp):
        """PSMO enable (rolled back: the relay drops the delivery), the same PSMO again (it
        holds), an eCO addEim, an IpaEuiccDataRequest, a profile download trigger."""
        for _ in range(2):
            eim.queue_psmo(eid, [{"op": "enable", "iccid": TARGET["iccid"], "rollback": True}])
        eim_cert = pki.load_certificate(os.path.join(pki_dir, "eim.crt"))
        eim.queue_eco(eid, [{"op": "addEim", "eimId": "backup-eim",
                             "eimFqdn": "backup-eim.example.net", "counterValue": 0,
                             "eimSupportedProtocol": ["eimRetrieveHttps"],
                             "eimPublicKey": pki.public_key_bytes(eim_cert)}])
        eim.queue_data_request(eid, DATA_TAGS)
        eim.queue_download_trigger(eid, activation_code="LPA:1$%s$%s"
                                   % (dp.address, self.matching_id))

    def _lab_checks(self, card, eim, dp, eid):
        """What the eIM, the SM-DP+ and the eUICC saw (the board's side: _fw_checks)."""
        cycles = self.console.cycles if self.console else []
        errors = [str(c["error"].get("message")) for c in cycles if c.get("error")]
        self.check("every poll cycle without error", not errors, "; ".join(errors))
        self.check("last poll idle (the eIM had nothing left)", cycles and cycles[-1].get("idle"))
        self.check("the relay dropped one delivery: the eIM was gone after the first enable",
                   self.relay.dropped == 1, "dropped %d" % self.relay.dropped)
        results = eim.results(eid)
        eprs = [x["euiccPackageResult"] for x in results if x.get("euiccPackageResult")]
        names = [[r.get("name") for r in (e.get("results") or ())] for e in eprs]
        self.check("eIM got 3 EuiccPackageResults: the rollback's, the enable's, addEim's",
                   len(eprs) == 3 and "rollbackResult" in names[0] and
                   "enableResult" in names[1] and "addEimResult" in names[2], json.dumps(names))
        self.check("all their operations ok, every signature verified by the eIM",
                   eprs and all(mp_cycle._ops_ok({"euiccPackageResult": e}) for e in eprs) and
                   all(e.get("signatureValid") is True for e in eprs),
                   json.dumps([(e.get("results"), e.get("signatureValid")) for e in eprs]))
        data = [x for x in results if x.get("kind") == "ipaEuiccDataResponse"]
        self.check("eIM got the IpaEuiccData it asked for",
                   len(data) == 1 and data[0].get("errorCode") is None,
                   json.dumps(data)[:300])
        self._end_checks(card, eim, dp, eid, results)

    def _live(self, card, eim):
        board_dir = os.path.join(ROOT, "boards", self.fw.board)
        pins = mp_cycle.board_pins(board_dir)
        stack = self.fw.stack
        modem = mp_cycle.LabModem(card, mp_cycle.BOARD_PERSONALITY[stack]).start()
        try:
            modem.switch_off()  # a cold start: the board presses PWRKEY
            pwrkey = mp_cycle.PwrKey(modem, pins.get("modem_pwrkey"), mp_cycle.PWRKEY_ON_MS[stack])
            fs = os.path.join(self.work, "fs")
            os.makedirs(fs)
            with open(eim.tls_files["ca_cert"], "rb") as f:
                pem = f.read()
            with open(os.path.join(fs, CA_FILE), "wb") as f:
                f.write(pem)
            cfg = {"eim_url": self.relay.url, "ca_file": CA_FILE, "apn": mp_cycle.BOARD_APN,
                   "http_stack": stack, "watchdog_ms": 8000, "attach_timeout_s": 30,
                   "state_file": STATE_FILE}
            if self.args.gc_threshold is not None:
                cfg["gc_threshold"] = self.args.gc_threshold
            with open(os.path.join(fs, "ipa_config.json"), "w") as f:
                json.dump(cfg, f, indent=1)
            shutil.copyfile(os.path.join(board_dir, "main.py"), os.path.join(fs, "main.py"))
            fd = os.open(modem.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                tty.setraw(fd)
                self.console = Console(on_pin=pwrkey.level, census=self.args.census)
                self.code, self.stderr, self.elapsed = run_micropython(
                    self.fw, self.heap, fs,
                    [(("find:%d" % self.args.find_alloc) if self.args.find_alloc else "run") +
                     ("+census" if self.args.census else ""), fd,
                     MAX_CYCLES] + self.fw.names,
                    self.args.timeout, self.console, pass_fds=(fd,),
                    report_alloc=self.args.report_alloc)
            finally:
                os.close(fd)
            c = self.console
            self.result = {"cycles": c.cycles}
            self._fw_checks(modem, eim, pem, pwrkey, fs)
        finally:
            modem.stop()

    def _fw_checks(self, modem, eim, pem, pwrkey, fs):
        c = self.console
        why = c.fatal or (c.error and "%s: %s" % (c.error["type"], c.error["message"])) or \
            (self.code is None and "stopped after %d s" % self.args.timeout) or ""
        self.check("the board's main loop ended cleanly (exit 0)", self.code == 0,
                   "exit %s; %s" % (self.code, why))
        done = c.done or {}
        w = done.get("wdt") or {}
        self.check("watchdog started with the board's timeout, fed, never late",
                   w.get("created") == 1 and w.get("feeds", 0) > 0 and not w.get("late"),
                   json.dumps(w))
        self.check("PWRKEY pressed once, long enough, while the modem was off",
                   [p[1] for p in pwrkey.presses] == ["switched on"], json.dumps(pwrkey.presses))
        stack = modem.at.http
        self.check("the eIM's CA uploaded over AT into the modem", pem in stack.files.values())
        self.check("every eIM request went through the modem's HTTP stack (one dropped)",
                   eim.requests and stack.requests == len(eim.requests) + self.relay.dropped,
                   "stack %d, eIM %d, dropped %d" % (stack.requests, len(eim.requests),
                                                     self.relay.dropped))
        state, why = mp_cycle._flash_state(_hex_file(os.path.join(fs, STATE_FILE)))
        self.check("FlashStore state file valid", state is not None, why or "")
        self.check("no procedure left in the IPA state", state is not None and
                   "ipa.job" not in state, repr(state)[:200] if state else "")
        frozen = set(self.fw.names)
        loaded = set(done.get("modules") or ())
        extra = sorted(x for x in loaded - frozen - {"main", "machine", "fw_driver"}
                       if x.split(".")[0] in ("ipa_core",) or x in BOARD_GLUE)
        self.check("no board module imported from outside the frozen set", not extra,
                   ", ".join(extra))
        self.lab = {"apdus": modem.at.apdus, "commands": modem.at.commands,
                    "http": stack.requests}

    def passed(self):
        return bool(self.checks) and all(ok for _n, ok, _d in self.checks)

    def failure(self):
        bad = [(n, d) for n, ok, d in self.checks if not ok]
        return "; ".join("%s%s" % (n, (": " + d) if d else "") for n, d in bad[:3])


BOARD_GLUE = ("flash_store", "ipa_loop", "ipa_board", "uart_stream", "at_modem", "socket_net",
              "board")


def _hex_file(path):
    try:
        with open(path, "rb") as f:
            return f.read().hex()
    except OSError:
        return None


def windows(console):
    """Per window (start, imports, main, start-up, cycle n, end): heap figures and the
    allocations of --report-alloc bytes or more made in it."""
    out = []
    for h in console.heaps:
        allocs = h.get("allocs") or []
        out.append({"at": h["at"], "alloc": h["alloc"], "free": h["free"],
                    "max_free": (h.get("max_free_blocks") or 0) * 16,
                    "big": len(allocs), "largest": max((a[0] for a in allocs), default=None),
                    "failed_alloc": [a[0] for a in allocs if not a[1]],
                    "sizes": [a[0] if a[1] else "%d FAILED" % a[0] for a in allocs][:40]})
    return out


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


# ---- flash ---------------------------------------------------------------------------------------

def flash_by_module(fw):
    """{module: bytes} of fw's frozen_content.o sections that name a module of its bundle
    (bytecode, constant objects, function structures, tables), plus "(strings)" for the
    merged string data of all modules and "(qstr pool)": where the flash goes."""
    obj = os.path.join(os.path.dirname(fw.binary), "frozen_content.o")
    out = subprocess.run(["size", "-A", obj], capture_output=True, text=True)
    names = sorted(((n.replace(".", "_"), n) for n in fw.names), key=lambda x: -len(x[0]))
    per = {}
    for ln in out.stdout.splitlines():
        parts = ln.split()
        if len(parts) != 3 or not parts[1].isdigit() or not parts[0].startswith("."):
            continue
        sec, size = parts[0], int(parts[1])
        if sec.startswith(".debug") or sec in (".text", ".data", ".bss", ".comment"):
            continue
        base = re.sub(r"^\.(rodata|data\.rel\.ro\.local|data\.rel\.ro|data)\.", "", sec)
        if base.startswith("str1") or base.startswith("str4"):
            key = "(strings)"
        elif base.startswith("mp_qstr_frozen"):
            key = "(qstr pool)"
        else:
            base = re.sub(r"^(fun_data|const_obj_table_data|const_qstr_table_data|const_obj|"
                          r"proto_fun|children|frozen_module|raw_code)_", "", base)
            key = next((n for pre, n in names if base.startswith(pre)), "(other)")
        per[key] = per.get(key, 0) + size
    return per


def flash_cost(base, fw):
    """Section growth of fw over base (bytes): what the frozen bundle costs in flash."""
    delta = {s: fw.sections.get(s, 0) - base.sections.get(s, 0) for s in FLASH_SECTIONS}
    delta["total"] = sum(delta.values())
    return delta


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
               "eCO addEim, an IpaEuiccDataRequest (EUICCInfo2 and more), an indirect "
               "download of the profile size shown, every notification delivered; it passes "
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
