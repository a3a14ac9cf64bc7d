"""Runs INSIDE the frozen-firmware bench's unix MicroPython (tools/mp_firmware.py), frozen
into it next to the board's bundle and the `machine` stand-in:

    micropython -X heapsize=N -m fw_driver <mode> <pty fd> <max cycles> <module> ...

mode "find:<bytes>": like "run", and once the board has started, every allocation of
<bytes> or more fails (the bench's allocation probe, MP_FW_ALLOC_FAIL): the MemoryError's
traceback is printed where a poll step or the loop catches it, naming the code that asked.
A mode ending in "+census" also prints micropython.mem_info(1)'s block map at each @@heap.
mode "imports": import the named modules (the board's frozen set, or its .mpy files on
MICROPYPATH) and report the heap; nothing else.
mode "run": the same, then the board's own main.py from the current directory (as a board
runs /main.py from its filesystem, with CONFIG pointed at ./ipa_config.json) with the modem
UART on <pty fd>: the board's start-up and ipa_loop.run, until a poll finds the eIM idle, a
cycle fails or <max cycles> ran. Two hooks only, around the board's code: ipa_loop.run gets
max_cycles, stop and on_cycle. Nothing else of the board is changed.

Everything goes to stdout as "@@<kind> <json>" lines among the board's own console lines,
in order (the allocation probe linked into the bench writes "@@alloc" lines there too):
    @@heap   {"at": name, "alloc": gc.mem_alloc(), "free": gc.mem_free()} after a collect,
             followed by micropython.mem_info()'s lines (largest free block)
    @@cycle  one poll cycle's summary
    @@done   the stand-ins' records and the modules imported
    @@error  an exception that ended main.main() (its traceback follows)
The driver keeps nothing on the heap it measures between these lines. No f-strings.
"""

import gc
import json
import sys

import machine
import micropython

STATE = {"cycles": 0, "stop": False, "ok": None, "census": False}


def heap(at):
    gc.collect()
    print("@@heap", json.dumps({"at": at, "alloc": gc.mem_alloc(), "free": gc.mem_free()}))
    micropython.mem_info(1 if STATE["census"] else 0)  # 1: the block map too (--census)


def _summary(n, r):
    err = r.get("error")
    if err is not None and not isinstance(err, dict):
        err = {"type": "?", "message": str(err)}
    return {"n": n, "package": r.get("package"), "idle": r.get("idle"), "error": err,
            "steps": r.get("steps"), "delivered": r.get("delivered"),
            "acknowledged": r.get("acknowledged")}


def _traced(handler):
    def step(ipa, job, out):
        try:
            return handler(ipa, job, out)
        except MemoryError as e:
            print("@@traceback step %s" % job.get("step"))
            sys.print_exception(e)
            raise

    return step


def _install_hooks(max_cycles, find):
    import ipa_loop

    original = ipa_loop.run

    def stop():
        return STATE["stop"]

    def on_cycle(r):
        STATE["cycles"] += 1
        print("@@cycle", json.dumps(_summary(STATE["cycles"], r)))
        heap("cycle %d" % STATE["cycles"])
        if r.get("error"):
            STATE["ok"] = False
            STATE["stop"] = True  # fail fast: the bench counts the try as failed
        elif r.get("idle"):
            STATE["ok"] = True
            STATE["stop"] = True  # the eIM has nothing left

    def run(ipa, sleep_ms, feed_watchdog, **kw):
        heap("start-up")
        if find:
            import os

            from ipa_core import ipa as core_ipa

            for name in core_ipa.STEPS:
                core_ipa.STEPS[name] = _traced(core_ipa.STEPS[name])
            os.putenv("MP_FW_ALLOC_FAIL", str(find))
        kw["max_cycles"] = max_cycles
        kw["stop"] = stop
        kw["on_cycle"] = on_cycle
        return original(ipa, sleep_ms, feed_watchdog, **kw)

    ipa_loop.run = run


def main(argv):
    mode = argv[1]
    if mode.endswith("+census"):
        mode = mode[:-7]
        STATE["census"] = True
    machine.DEVICE["fd"] = int(argv[2])
    max_cycles = int(argv[3])
    names = argv[4:]
    del argv[:]
    heap("start")
    for name in names:
        __import__(name)
    heap("imports")
    if mode == "imports":
        return 0
    _install_hooks(max_cycles, int(mode[5:]) if mode.startswith("find:") else 0)
    import main as board_main

    board_main.CONFIG = "ipa_config.json"
    heap("main")
    try:
        board_main.main()
    except BaseException as e:  # MemoryError, SystemExit from a stand-in, a bug
        print("@@error", json.dumps({"type": e.__class__.__name__, "message": str(e)}))
        sys.print_exception(e)
        STATE["ok"] = False
    heap("end")
    done = {"ok": STATE["ok"], "cycles": STATE["cycles"], "uart": machine.UART_STATS,
            "wdt": machine.WDT_STATS, "modules": sorted(sys.modules)}
    print("@@done", json.dumps(done))
    return 0 if STATE["ok"] else 1


sys.exit(main(sys.argv))
