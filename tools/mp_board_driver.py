"""Runs INSIDE MicroPython (tools/mp_bridge.mjs, started by `tools/mp_cycle.py --board`): a
board's own code - its main.py, board.py, boards/common and exactly the ipa_core modules its
manifest freezes - with the port's `machine` stood in by the classes below. The modem is the
host's simulated modem on a pty; the UART reaches it over the bridge.

    machine.UART  read/write/any carried out by the host on the modem's pty (mp_bridge.uart_*)
                  with MicroPython's semantics: read(n) waits up to `timeout` ms for a first
                  byte (None when none came), then returns when n bytes came or the line was
                  quiet for `timeout_char` ms; a host failure is an OSError, as from a driver
    machine.Pin   levels recorded and told to the host (a PWRKEY press switches the modem on)
    machine.WDT   feeds counted and the longest gap between two feeds kept; the RP2040's
                  range (1..8388 ms) is enforced as its port does

Steps, each entered from the JS top level, where this port collects garbage (see
mp_cycle_driver, whose heap sampling, walk and block maps this reuses):

    probe   GC block size; the live-heap walk located and proven
    core    import the frozen ipa_core modules but the AT stack     } gc.mem_alloc() at each
    at      import the AT stack (at, at_card, modems, at_http, ...)  } step's start: exact import
    glue    import the board glue and main.py (not run)             } cost of each group
    setup   baseline (the whole frozen set imported); hooks in place
    run     main.main(): the board's start-up (watchdog, FlashStore, modem power-on, identity,
            APN, ISD-R session, registration, bearer, CA upload) and ipa_loop.run, until a poll
            finds the eIM idle (or CONFIG max_cycles)
    finish  the IPA state file as main.py left it, the stand-ins' records, the result

Two hooks only, both around the board's code, none inside it: ipa_loop.run gets max_cycles,
stop (the eIM is idle) and on_cycle (a record per cycle); main's FlashStore is a subclass that
samples the heap at every write. Inside `run` nothing is collected (this port), so the heap
figures there come from the walk: a record per window (start-up, each cycle, close) with the
live heap at its start and the largest live heap sampled in it (every UART call, store write).

No f-strings, no typing: MicroPython code.
"""

import gc
import json
import sys

import micropython  # noqa: F401 - mp_cycle_driver's block maps use it
import mp_bridge
import mp_cycle_driver as cd
from binascii import hexlify, unhexlify
from time import ticks_diff, ticks_ms

CONFIG = {"max_cycles": 10, "sample": True, "dump": True, "walk": True,
          "core": [], "at": [], "glue": [], "state_file": "/ipa_state.json",
          "max_state": 20000}

# ---- machine stand-ins (tools/mp_cycle.py writes /stubs/machine.py importing these) --------

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
WDT_MAX_MS = 8388  # RP2040: the watchdog counts 24 bits of microseconds / 2
MAX_PIN_EVENTS = 64

_uart = {"opened": 0, "config": None, "reads": 0, "empty": 0, "writes": 0, "any": 0,
         "rx": 0, "tx": 0}
_wdt = {"created": 0, "timeout": None, "feeds": 0, "max_gap": 0, "last": None, "late": 0}
_pins = []  # [ticks_ms, pin, level]
_win = {"n": 0, "name": "start", "t0": 0, "live": 0, "samples": 0, "uart": None, "stop": False,
        "cycles": 0}
_hooks = {}


def reset_cause():
    return PWRON_RESET


def reset():
    raise SystemExit("machine.reset() (stand-in)")


def unique_id():
    return b"\xe6\x61\x00\x00\x00\x00\x00\x01"


def _host(reply):
    """A UART/pin bridge reply: the value, or an OSError (EIO) for a failure on the host."""
    if reply is None:
        return ""
    if reply[:1] == "!":
        raise OSError(5, "UART bridge: " + reply[1:])
    return reply


def _pin_id(p):
    return getattr(p, "id", p)


class Pin:
    """machine.Pin: levels recorded (with ticks_ms) and told to the host."""

    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, pin_id, mode=-1, pull=-1, value=None):
        self.id = pin_id
        self.mode = mode
        self.level = 0
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return self.level
        v = 1 if v else 0
        if len(_pins) < MAX_PIN_EVENTS:
            _pins.append([ticks_ms(), self.id, v])
        _host(mp_bridge.pin(self.id, v))
        self.level = v
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __call__(self, v=None):
        return self.value(v)


class UART:
    """machine.UART over the bridge (see the module docstring)."""

    def __init__(self, uart_id, baudrate=115200, bits=8, parity=None, stop=1, tx=None, rx=None,
                 txbuf=256, rxbuf=256, timeout=0, timeout_char=0, **kw):
        self.id = uart_id
        self.rxbuf = rxbuf
        self.timeout = timeout
        self.timeout_char = timeout_char
        cfg = {"id": uart_id, "baudrate": baudrate, "bits": bits, "parity": parity,
               "stop": stop, "tx": _pin_id(tx), "rx": _pin_id(rx), "txbuf": txbuf,
               "rxbuf": rxbuf, "timeout": timeout, "timeout_char": timeout_char}
        _uart["opened"] += 1
        _uart["config"] = cfg
        _host(mp_bridge.uart_open(json.dumps(cfg)))

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.rxbuf
        if n == 0:
            return b""
        cd._sample()
        _uart["reads"] += 1
        text = _host(mp_bridge.uart_read(n, self.timeout, self.timeout_char))
        if not text:
            _uart["empty"] += 1
            return None
        data = unhexlify(text)
        _uart["rx"] += len(data)
        return data

    def write(self, buf):
        cd._sample()
        _uart["writes"] += 1
        n = int(_host(mp_bridge.uart_write(hexlify(buf).decode())))
        _uart["tx"] += n
        return n

    def any(self):
        _uart["any"] += 1
        return int(_host(mp_bridge.uart_any()))

    def deinit(self):
        _host(mp_bridge.uart_close())


class WDT:
    """machine.WDT: every feed counted, the longest gap kept; `late` counts gaps over the
    timeout (a real watchdog would have reset the board there)."""

    def __init__(self, id=0, timeout=5000):
        if not 1 <= timeout <= WDT_MAX_MS:
            raise ValueError("WDT timeout %d ms: the RP2040 allows 1..%d" % (timeout, WDT_MAX_MS))
        _wdt["created"] += 1
        _wdt["timeout"] = timeout
        _wdt["last"] = ticks_ms()

    def feed(self):
        now = ticks_ms()
        gap = ticks_diff(now, _wdt["last"])
        if gap > _wdt["max_gap"]:
            _wdt["max_gap"] = gap
        if gap > _wdt["timeout"]:
            _wdt["late"] += 1
        _wdt["feeds"] += 1
        _wdt["last"] = now


# ---- windows: start-up, each poll cycle, close -----------------------------------------------

def _uart_now():
    return [_uart["tx"], _uart["rx"], _uart["reads"], _uart["empty"], _uart["writes"]]


def _window_open(name):
    st = cd._state
    _win["n"] += 1
    _win["name"] = name
    _win["t0"] = ticks_ms()
    _win["live"] = mp_bridge.live() if st["walk"] else -1
    _win["samples"] = st["samples"]
    _win["uart"] = _uart_now()
    st["max_sampled"] = 0
    st["max_where"] = None


def _window_close(summary=None):
    """One window's record to the host at once (the driver keeps nothing on the heap it
    measures), with a block map after it (new objects: what the window allocated)."""
    st = cd._state
    u0 = _win["uart"]
    u1 = _uart_now()
    rec = {"n": _win["n"], "name": _win["name"], "live_start": _win["live"],
           "sampled_max": st["max_sampled"], "sampled_where": st["max_where"],
           "samples": st["samples"] - _win["samples"], "alloc_end": gc.mem_alloc(),
           "ms": ticks_diff(ticks_ms(), _win["t0"]),
           "uart": [u1[i] - u0[i] for i in range(len(u1))]}
    if summary is not None:
        rec.update(summary)
    cd.heap_dump("w%d" % _win["n"])
    mp_bridge.record(json.dumps(rec))


def _summary(ipa, r):
    out = {"package": r.get("package"), "idle": r.get("idle"), "steps": r.get("steps"),
           "result": cd._jsonable(r.get("result")), "delivered": r.get("delivered"),
           "acknowledged": r.get("acknowledged"), "error": r.get("error"),
           "notifications": cd._jsonable(r.get("notifications"))}
    h = ipa.download_handler
    if r.get("package") == "profileDownloadTriggerRequest" and h is not None and h.last:
        last = h.last
        out["download"] = {"ok": last.get("ok"), "iccid": last.get("iccid"),
                           "error": last.get("error"), "segments": last.get("segments")}
        h.last = None
    return out


def _stop():
    return _win["stop"]


def _install_hooks():
    """ipa_loop.run bounded and observed; the board's FlashStore sampled (module docstring)."""
    import flash_store
    import ipa_loop
    from flash_store import FlashStore

    original = ipa_loop.run

    def run(ipa, sleep_ms, feed_watchdog, **kw):
        _window_close()  # the start-up: main.py up to its ipa_loop.run call
        _hooks["ipa"] = ipa

        def on_cycle(r):
            # The loop calls this right after a cycle; its wait before the next cycle falls
            # into the next window.
            _win["cycles"] += 1
            _window_close(_summary(ipa, r))
            if r.get("idle") and not r.get("error"):
                _win["stop"] = True  # the eIM has nothing left: stop() ends the loop
            else:
                _window_open("cycle %d" % (_win["cycles"] + 1))

        kw["max_cycles"] = CONFIG["max_cycles"]
        kw["stop"] = _stop
        kw["on_cycle"] = on_cycle
        _window_open("cycle 1")
        try:
            return original(ipa, sleep_ms, feed_watchdog, **kw)
        finally:
            _window_open("close")  # what main.py does after the loop: bi.close()

    class SampledFlashStore(FlashStore):
        """The board's FlashStore; the heap is sampled at every write."""

        def __init__(self, *args, **kw):
            FlashStore.__init__(self, *args, **kw)
            _hooks["store"] = self

        def put(self, key, value):
            cd._sample("store")
            FlashStore.put(self, key, value)

        def delete(self, key):
            cd._sample("store")
            FlashStore.delete(self, key)

    ipa_loop.run = run
    flash_store.FlashStore = SampledFlashStore  # ipa_board.run_main imports it at call time


# ---- steps -----------------------------------------------------------------------------------

def _imports(names):
    for name in names:
        __import__(name)


def _step_probe():
    st = cd._state
    for k in ("sample", "dump", "walk"):
        cd.CONFIG[k] = CONFIG[k]
    st["probe"] = cd._probe()
    cd._locate_walk()
    gc.collect()
    st["phase"] = "core"


def _step_core():
    st = cd._state
    st["live_driver"] = gc.mem_alloc()  # driver, bridge, stand-ins
    _imports(CONFIG["core"])
    gc.collect()
    st["phase"] = "at"


def _step_at():
    st = cd._state
    st["live_core"] = gc.mem_alloc()
    _imports(CONFIG["at"])
    gc.collect()
    st["phase"] = "glue"


def _step_glue():
    st = cd._state
    st["live_at"] = gc.mem_alloc()
    _imports(CONFIG["glue"])
    __import__("main")
    gc.collect()
    st["phase"] = "setup"


def _step_setup():
    st = cd._state
    st["baseline"] = gc.mem_alloc()  # the whole frozen set imported, main.py too
    st["calibration"].append(cd._calibrate("setup"))
    st["baseline_info"] = cd.mem_info()
    _install_hooks()
    gc.collect()
    st["phase"] = "run"


def _step_run():
    import main

    st = cd._state
    st["run_start"] = gc.mem_alloc()
    cd.heap_dump("w0")
    _window_open("start-up")
    t0 = ticks_ms()
    try:
        main.main()
    finally:
        st["run_ms"] = ticks_diff(ticks_ms(), t0)
        _window_close()
        st["alloc_end"] = gc.mem_alloc()
        _hooks.pop("ipa", None)
    st["phase"] = "finish"


def _step_finish():
    import os

    st = cd._state
    st["live_end"] = gc.mem_alloc()
    st["calibration"].append(cd._calibrate("finish"))
    store = _hooks.pop("store", None)
    st["store"] = None if store is None else {"writes": store.writes,
                                               "recovered": store.recovered,
                                               "keys": store.keys()}
    try:
        with open(CONFIG["state_file"], "rb") as f:
            st["state_file"] = hexlify(f.read(CONFIG["max_state"])).decode()
    except OSError as e:
        st["state_file"] = None
        st["state_file_error"] = repr(e)
    st["fs_root"] = sorted(os.listdir("/"))
    st["uart"] = _uart
    st["wdt"] = _wdt
    st["pins"] = _pins
    st["cycles_run"] = _win["cycles"]
    cd._refs["modules"] = sorted(sys.modules)
    st["phase"] = "done"


cd.STEPS.update({"probe": _step_probe, "core": _step_core, "at": _step_at, "glue": _step_glue,
                 "setup": _step_setup, "run": _step_run, "finish": _step_finish})
cd._state["phase"] = "probe"
step = cd.step
exit_code = cd.exit_code
