"""A try of the frozen-firmware bench (tools/mp_firmware.py): one run of the bench firmware
(tools/firmware/fw_driver.py in MicroPython's unix port) against a fresh lab - the virtual
eUICC, eIM and SM-DP+ of ipa_host.sim, the simulated modem on a pty - and the checks of what
the eIM, SM-DP+, eUICC and the board's own state saw. Console: the firmware's stdout parsed
as it comes (heap records, cycles, PWRKEY levels, the allocation probe's lines).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import tty

import mp_cycle  # the lab (Run), the simulated modem, its PWRKEY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KB = 1024
MAX_CYCLES = 10
CA_FILE = "eim_ca.pem"
STATE_FILE = "ipa_state.json"
MAX_CONSOLE = 20000  # console lines kept per try
# Console lines after which a try cannot pass: stop it at once rather than wait for the
# board's start-up back-off (5 s, 15 s, ...).
FATAL = ("start-up try", "could not reopen", "recovery failed")
TARGET = mp_cycle.TARGET  # the profile both PSMOs enable
# IpaEuiccDataRequest tags: defaultSmdpAddress, euiccPackageResultList, EUICCInfo2,
# associationToken (the board reads EUICCInfo2, ~1 KB, whole)
DATA_TAGS = ["81", "A2", "BF22", "84"]
RELAY_IDLE_S = 60


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

    def _queue(self, eim, eid, pki_dir, dp):
        """A PSMO enable that is rolled back (the relay drops its delivery), then mp_cycle's
        queue (the same enable, which holds; an eCO addEim; a download trigger), then an
        IpaEuiccDataRequest."""
        eim.queue_psmo(eid, [{"op": "enable", "iccid": TARGET["iccid"], "rollback": True}])
        mp_cycle.Run._queue(self, eim, eid, pki_dir, dp)
        eim.queue_data_request(eid, DATA_TAGS)

    def _checks(self, card, eim, dp, eid, host=None):
        """What the eIM, the SM-DP+ and the eUICC saw (the board's side: _fw_checks); run by
        mp_cycle.Run.execute after _live, as for the WebAssembly runs."""
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
        self.relay = DroppingRelay(eim)  # the board's eIM URL: the relay in front of the eIM
        try:
            self._run_board(card, eim)
        finally:
            self.relay.stop()

    def _run_board(self, card, eim):
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
                    "sizes": [a[0] if a[1] else "%d FAILED" % a[0] for a in allocs][:40]})
    return out


