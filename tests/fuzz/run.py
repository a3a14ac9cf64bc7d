"""Run the fuzz targets of tests/fuzz/targets.py (`make fuzz`, issue 17).

    python tests/fuzz/run.py [--seconds N] [--only a,b] [--engine atheris|loop] [--out F]

Each target runs in its own process for N seconds (FUZZ_SECONDS, default 20), started
from its committed seed corpus (tests/fuzz/corpus/<target>/, copied to a scratch
folder so the run never changes it). Engines:

  atheris  coverage-guided libFuzzer (used when `import atheris` works: PyPI has wheels
           for CPython 3.8-3.11 on x86-64 Linux); -timeout=1 fails an input that takes
           over 1 s, -rss_limit_mb bounds memory.
  loop     a mutational loop of our own (bit flips, byte sets, cuts, inserts, splices
           of corpus entries) where atheris does not install (other CPythons, ARM):
           no coverage guidance, the same rule: SIGALRM fails an input over 1 s, the
           process's peak RSS is checked against the same bound after every input.

A finding (an undeclared error type, a hang, memory past the bound) is written to
.fuzz/findings/<target>-<sha1> and the run exits 1 after all targets; add it to
tests/fuzz/regress/ with the fix. Prints one line a target: inputs, seconds, inputs/s.
"""

import argparse
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

RSS_LIMIT_MB = 1024  # libFuzzer's default is 2048; the IPA's heap is far below either
TIMEOUT_S = 1
MAX_LEN = 4096  # longest generated input (the seeds may be longer)
WORK = os.path.join(ROOT, ".fuzz")


def corpus_dir(name):
    return os.path.join(HERE, "corpus", name)


def seeds(name):
    d = corpus_dir(name)
    if not os.path.isdir(d):
        return []
    out = []
    for f in sorted(os.listdir(d)):
        with open(os.path.join(d, f), "rb") as fh:
            out.append(fh.read())
    return out


def save_finding(name, data):
    os.makedirs(os.path.join(WORK, "findings"), exist_ok=True)
    path = os.path.join(WORK, "findings", "%s-%s" % (name, hashlib.sha1(data).hexdigest()[:12]))
    with open(path, "wb") as fh:
        fh.write(data)
    return path


# ---- one target, in this process ----------------------------------------------------------

def run_atheris(name, seconds):
    import atheris

    with atheris.instrument_imports(include=["ipa_core"]):
        import targets
    work = os.path.join(WORK, "corpus", name)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    for data in seeds(name):
        with open(os.path.join(work, hashlib.sha1(data).hexdigest()), "wb") as fh:
            fh.write(data)
    os.makedirs(os.path.join(WORK, "findings"), exist_ok=True)
    args = [sys.argv[0], "-max_total_time=%d" % seconds, "-timeout=%d" % TIMEOUT_S,
            "-rss_limit_mb=%d" % RSS_LIMIT_MB, "-max_len=%d" % MAX_LEN,
            "-print_final_stats=1", "-artifact_prefix=%s/" % os.path.join(WORK, "findings"),
            work]
    atheris.Setup(args, lambda data: targets.check(name, data))
    atheris.Fuzz()


class Slow(BaseException):
    """SIGALRM: an input ran past TIMEOUT_S (BaseException: no target may swallow it)."""


def mutate(rng, data, pool):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if op == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[rng.randrange(len(b))] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x30, 0x0A, 0x0D, 0x22,
                                                   rng.randrange(256)))
        elif op == 2 and b:
            i = rng.randrange(len(b))
            del b[i:i + rng.randint(1, 16)]
        elif op == 3:
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 4 and pool:
            other = rng.choice(pool)
            i = rng.randrange(len(b) + 1)
            j = rng.randrange(len(other) + 1)
            b = b[:i] + other[j:j + rng.randint(1, 64)]
        elif op == 5 and b:
            i = rng.randrange(len(b))
            b[i:i] = b[i:i + rng.randint(1, 32)] * rng.randint(1, 8)
        elif op == 6 and len(b) > 1:
            del b[rng.randrange(1, len(b)):]
    return bytes(b[:MAX_LEN])


def run_loop(name, seconds, seed=0):
    import targets

    rng = random.Random(seed)
    pool = seeds(name) or [b""]

    def alarm(_signum, _frame):
        raise Slow()

    signal.signal(signal.SIGALRM, alarm)
    n = 0
    bad = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        data = mutate(rng, rng.choice(pool), pool) if n >= len(pool) else pool[n]
        n += 1
        signal.setitimer(signal.ITIMER_REAL, TIMEOUT_S)
        try:
            targets.check(name, data)
        except Slow:
            print("==%d== ERROR: input ran over %d s: %s" % (os.getpid(), TIMEOUT_S,
                                                            save_finding(name, data)))
            bad += 1
        except targets.Escape as e:
            print("==%d== ERROR: %s -> %s" % (os.getpid(), e, save_finding(name, data)))
            bad += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        if rss_mb > RSS_LIMIT_MB:
            print("==%d== ERROR: RSS %d MB over %d MB: %s" % (os.getpid(), rss_mb, RSS_LIMIT_MB,
                                                             save_finding(name, data)))
            bad += 1
            break
        if bad >= 5:
            break
    print("stat::number_of_executed_units: %d" % n)
    sys.exit(1 if bad else 0)


# ---- all targets, one process each --------------------------------------------------------

def have_atheris():
    r = subprocess.run([sys.executable, "-c", "import atheris"], capture_output=True)
    return r.returncode == 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS") or 20))
    p.add_argument("--only", help="comma-separated target names (default: all)")
    p.add_argument("--engine", choices=("atheris", "loop"))
    p.add_argument("--out", help="write the per-target figures as JSON here")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a, _rest = p.parse_known_args(argv)
    if a.seconds < 1:
        p.error("--seconds: expected at least 1 (libFuzzer takes 0 as no limit)")
    if a.one:
        if a.engine == "atheris":
            run_atheris(a.one, a.seconds)
        else:
            run_loop(a.one, a.seconds)
        return 0
    import targets

    names = a.only.split(",") if a.only else list(targets.TARGETS)
    for n in names:
        if n not in targets.TARGETS:
            p.error("unknown target %r (known: %s)" % (n, ", ".join(targets.TARGETS)))
    engine = a.engine or ("atheris" if have_atheris() else "loop")
    print("fuzz: engine %s, %d s a target, %d targets" % (engine, a.seconds, len(names)))
    results = []
    failed = []
    for n in names:
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", n, "--engine",
                            engine, "--seconds", str(a.seconds)], capture_output=True, text=True,
                           timeout=a.seconds + 120)
        took = time.monotonic() - t0
        out = r.stdout + r.stderr
        m = re.findall(r"stat::number_of_executed_units:\s*(\d+)", out)
        execs = int(m[-1]) if m else 0
        rate = re.findall(r"stat::average_exec_per_sec:\s*(\d+)", out)
        ok = r.returncode == 0
        results.append({"target": n, "engine": engine, "inputs": execs,
                        "seconds": round(took, 1),
                        "per_s": int(rate[-1]) if rate else int(execs / max(a.seconds, 1)),
                        "ok": ok})
        print("%-16s %9d inputs %6.1f s %8d inputs/s  %s" % (n, execs, took,
                                                            results[-1]["per_s"],
                                                            "ok" if ok else "FINDING"))
        if not ok:
            failed.append(n)
            tail = [x for x in out.splitlines() if "ERROR" in x or "Error" in x or
                    "escaped" in x or "artifact" in x]
            for x in tail[-6:]:
                print("    " + x[:300])
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(results, fh, indent=1)
    if failed:
        print("fuzz: findings in %s (inputs in .fuzz/findings/)" % ", ".join(failed))
        return 1
    print("fuzz: %d targets, no finding" % len(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
