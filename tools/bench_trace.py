"""What `ipa --pcap` and `--trace` cost: a direct profile download with and without them.

    .venv/bin/python tools/bench_trace.py                 # print the table
    .venv/bin/python tools/bench_trace.py --write-docs    # and update docs/bench.md

Each run: a fresh home (virtual eUICC), the simulated SM-DP+ over real TLS on loopback,
and `ipa download` run as a user runs it (a subprocess), timed from start to exit. Per
profile size and mode, RUNS runs; the table gives the median. Not a test: nothing fails.
"""

import argparse
import os
import resource
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchdoc import DOCS, machine, table, write_section  # noqa: E402

SECTION = "## Traces (--pcap, --trace)"
IPA = os.path.join(os.path.dirname(sys.executable), "ipa")
SIZES = (20000, 500000)
MODES = (("none", []), ("--trace", ["--trace"]), ("--pcap", ["--pcap", "{pcap}"]),
         ("--pcap --trace", ["--pcap", "{pcap}", "--trace"]))
RUNS = 7


def pcap_packets(path):
    """Records in a classic pcap file (walked by their headers)."""
    n = 0
    with open(path, "rb") as f:
        f.read(24)
        while True:
            head = f.read(16)
            if len(head) < 16:
                return n
            f.seek(struct.unpack("<IIII", head)[2], 1)
            n += 1


def one_run(tmp, i, size, options):
    from ipa_host.sim.home import open_home_euicc, sim_dir
    from ipa_host.sim.smdpp.smdpp import SmdpServer

    home = os.path.join(tmp, "home%d" % i)
    open_home_euicc(home)
    dp = SmdpServer(os.path.join(tmp, "smdp%d" % i), os.path.join(sim_dir(home), "pki")).start()
    try:
        dp.add_profile("BENCH", "8900012345678901%04d" % i, "Bench profile", size=size)
        pcap = os.path.join(tmp, "run%d.pcap" % i)
        cmd = [IPA, "--home", home, "--smdp-ca-file", dp.tls_ca_path] + \
            [o.replace("{pcap}", pcap) for o in options] + \
            ["download", "LPA:1$%s$BENCH" % dp.address]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           timeout=600)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    finally:
        dp.stop()
    if r.returncode != 0 or "installed" not in r.stdout:
        raise RuntimeError("ipa download failed (%d): %s" % (r.returncode, r.stdout))
    if os.path.exists(pcap):
        return wall, cpu, os.path.getsize(pcap), pcap_packets(pcap)
    return wall, cpu, None, None


def run_bench(tmp, runs=RUNS, progress=None):
    """Per profile size, the modes take turns run after run (drift in the machine's load
    spreads over all of them); medians per mode."""
    results = []
    i = 0
    for size in SIZES:
        got = {mode: [] for mode, _ in MODES}
        for _ in range(runs):
            for mode, options in MODES:
                i += 1
                got[mode].append(one_run(tmp, i, size, options))
        base = None
        for mode, _ in MODES:
            wall = statistics.median(g[0] for g in got[mode])
            cpu = statistics.median(g[1] for g in got[mode])
            base = cpu if base is None else base
            nbytes, packets = got[mode][-1][2:]
            r = {"profile": size, "mode": mode, "wall": wall, "cpu": cpu,
                 "over": (cpu / base - 1) * 100, "file_kb": nbytes / 1024.0 if nbytes else None,
                 "packets": packets, "ratio": nbytes / float(size) if nbytes else None}
            results.append(r)
            if progress:
                progress(r)
    return results


COLUMNS = [("mode", "mode", "%s"), ("profile", "profile B", "%d"), ("wall", "wall s", "%.2f"),
           ("cpu", "CPU s", "%.2f"), ("over", "CPU vs none %", "%+.0f"), ("file_kb", "file KiB", "%.0f"),
           ("packets", "packets", "%d"), ("ratio", "file/profile", "%.1f")]


def load():
    """The 1-minute load average (other work on the machine moves the wall times)."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def section(results, command, took, runs, load_before):
    return "\n".join([
        SECTION, "",
        "What `--pcap FILE` and `--trace` add to a direct profile download, measured by",
        "`tools/bench_trace.py`. Taken %s UTC on %s. Reproduce (%.0f s here):"
        % (time.strftime("%Y-%m-%d %H:%M", time.gmtime()), machine(), took), "",
        "```sh", command, "```", "",
        "Each run: a fresh home (virtual eUICC), the simulated SM-DP+ over TLS on loopback,",
        "`ipa download` as a subprocess (ES9+ JSON, the bound profile package in 255-byte",
        "STORE DATA blocks), timed from start to exit (wall s) and by the CPU time the `ipa`",
        "process used (CPU s: user + system, less moved by other work on the machine than the",
        "wall time); the median of %d runs per row, the modes taking turns." % runs,
        "`--trace` writes to /dev/null. file KiB / packets: the pcap file at the end",
        "(GSMTAP SIM per APDU, the ES9+ exchanges as HTTP over synthesised TCP);",
        "file/profile: file bytes per profile byte (the profile is in it twice: base64 in",
        "the ES9+ JSON answer, then in the STORE DATA blocks). The 1-minute load average",
        "was %s before the runs, on 2 cores shared with other work: the wall times move by"
        % ("%.1f" % load_before if load_before is not None else "unknown"),
        "tens of per cent from run to run; compare modes by CPU s.", "",
        table(results, COLUMNS, 1), "",
        "Not covered: a terminal or a slow disk taking the `--trace` lines or the file (here",
        "the lines go to /dev/null, the file to a temporary folder), a modem's serial line (where the",
        "line, not the trace, sets the pace: see Serial line above), `ipa run` over hours",
        "(the file grows by one cycle's packets per poll until `--pcap-max`), and the",
        "live `--gsmtap` sends (one UDP datagram per APDU, not measured).", ""])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=RUNS, help="runs per row (default %d)" % RUNS)
    p.add_argument("--write-docs", action="store_true",
                   help="update the '%s' section of docs/bench.md" % SECTION)
    args = p.parse_args(argv)

    def progress(r):
        print("%-15s %7d B  %.2f s wall, %.2f s CPU" % (r["mode"], r["profile"], r["wall"],
                                                        r["cpu"]), file=sys.stderr, flush=True)

    t0, load_before = time.monotonic(), load()
    with tempfile.TemporaryDirectory(prefix="bench-trace-") as tmp:
        results = run_bench(tmp, args.runs, progress)
    print(table(results, COLUMNS, 1))
    if args.write_docs:
        command = " ".join([".venv/bin/python", "tools/bench_trace.py"]
                           + [shlex.quote(a) for a in argv])
        write_section(section(results, command, time.monotonic() - t0, args.runs, load_before),
                      SECTION)
        print("updated %s" % os.path.relpath(DOCS, ROOT), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
