"""Re-attach through ModemManager: what the IPA's own steps cost, against the simulated one.

    .venv/bin/python tools/bench_modemmanager.py                 # print the table
    .venv/bin/python tools/bench_modemmanager.py --write-docs    # and update docs/bench.md

The chain: ipa_host.modem_manager (the real mmcli, unpacked by tools/setup.sh into
.venv/mm/, or $IPA_MMCLI) -> a private dbus-daemon -> ipa_host.sim.modem.mm_dbus
SimModemManager with no simulated delays (step_delay 0, attach_delay 0), owning a
simulated QMI modem. Rows: find the modem by its port (mmcli -J -L + -J -m per modem);
refresh() (find + --disable + --enable); wait_connected() right after (find until
registered + the SIM's ICCID); one whole re-attach (both). RUNS runs each; medians.
"""

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdoc  # noqa: E402
from ipa_host import modem_manager  # noqa: E402
from ipa_host.sim import pki  # noqa: E402
from ipa_host.sim.euicc.euicc import VirtualEuicc  # noqa: E402
from ipa_host.sim.modem.mm_dbus import PrivateBus, SimModemManager  # noqa: E402
from ipa_host.sim.modem.modem_qmi import SimQmiModem  # noqa: E402

SECTION = "## ModemManager re-attach"
RUNS = 20
COLUMNS = (("step", "step", "%s"), ("mmcli", "mmcli runs", "%d"), ("ms", "median ms", "%.1f"),
           ("min", "min ms", "%.1f"), ("max", "max ms", "%.1f"))


def _ms(fn, runs):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def measure(runs, mmcli):
    with tempfile.TemporaryDirectory() as d:
        pki.create_test_pki(os.path.join(d, "pki"))
        card = VirtualEuicc(os.path.join(d, "pki"), state_path=os.path.join(d, "euicc.json"))
        bus = PrivateBus(d).start()
        modem = SimQmiModem(card, proxy="ipa-bench-mm-%d" % os.getpid()).start()
        mm = SimModemManager(card, modem.path, "qmi", bus.address, attach_delay=0,
                             step_delay=0).start()
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        try:
            c = modem_manager.ModemManagerConnectivity(modem.path, mmcli=mmcli, poll_ms=50)
            rows = []
            find = _ms(lambda: modem_manager.find_modem(modem.path, mmcli), runs)
            rows.append(("find the modem by its port", 2, find))
            rows.append(("refresh(): find, --disable, --enable", 4, _ms(c.refresh, runs)))

            def whole():
                c.refresh()
                assert c.wait_connected(10000)

            def wait():
                c.refresh()
                t0 = time.perf_counter()
                assert c.wait_connected(10000)
                return (time.perf_counter() - t0) * 1000

            rows.append(("wait_connected() after it: find, SIM ICCID", 3,
                         [wait() for _ in range(runs)]))
            rows.append(("whole re-attach", 7, _ms(whole, runs)))
        finally:
            mm.stop()
            modem.stop()
            bus.stop()
    return [{"step": s, "mmcli": n, "ms": statistics.median(v), "min": min(v), "max": max(v)}
            for s, n, v in rows]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=RUNS)
    p.add_argument("--write-docs", action="store_true", help="update docs/bench.md")
    args = p.parse_args()
    mmcli = os.environ.get(modem_manager.MMCLI_ENV) or os.path.join(ROOT, ".venv", "mm", "mmcli")
    if not os.access(mmcli, os.X_OK):
        sys.exit("bench_modemmanager: no mmcli at %s (make setup, or set %s)"
                 % (mmcli, modem_manager.MMCLI_ENV))
    t0 = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = measure(args.runs, mmcli)
    fill = textwrap.fill
    text = "\n".join([
        SECTION, "",
        fill("What the IPA's re-attach through ModemManager costs on `qmi:`/`mbim:` (docs/modems.md, "
        "\"After a profile switch\"), measured by `tools/bench_modemmanager.py`. Taken %s on %s. "
        "Reproduce:" % (t0, benchdoc.machine()), 90), "",
        "```sh", ".venv/bin/python tools/bench_modemmanager.py --write-docs", "```", "",
        fill("The real mmcli 1.20 (one process per call) against the simulated ModemManager on a "
        "private dbus-daemon, with no simulated delays: the modem answers Enable at once and "
        "registers at once. %d runs per row; `wait_connected()` is timed alone after each "
        "refresh (its first look already finds the modem registered)." % args.runs, 90), "",
        benchdoc.table(rows, COLUMNS, 1), "",
        fill("What the figures do not cover: a real modem's disable/enable (seconds: the radio "
        "goes to low power and back, the SIM is read) and its network registration (seconds "
        "to minutes), which dominate on hardware; ModemManager's own work per call (the "
        "simulator answers from memory); polkit authorisation on a real system bus; the "
        "registration poll interval (1 s in the IPA, 50 ms here), which adds up to one "
        "interval to the wait on hardware. Each mmcli run starts a process and a GDBus "
        "client, which is most of every figure.", 90), ""])
    print(text)
    if args.write_docs:
        benchdoc.write_section(text, SECTION)


if __name__ == "__main__":
    main()
