#!/usr/bin/env python3
"""The MicroPython version matrix (issue 16): the core's and the boards' tests and every board's
bundle under each MicroPython release the project claims, built from source.

    python3 tools/mp_versions.py --micropython-src DIR
        [--tags v1.13,v1.19.1,v1.20.0,v1.22.2,v1.27.0] [--quecpython v1.13]
        [--work build/mp_versions] [--jobs 2] [--write-docs]

DIR is a git repository of MicroPython (bare or not) holding the tags; each tag is exported
with `git archive` into WORK/<tag>/ (no submodule is needed: FFI, BTREE, SSL and readline
are off and nothing is frozen) and built there: mpy-cross, then ports/unix. Old tags on a
modern gcc stop on new warnings, so every build adds CFLAGS_EXTRA=-Wno-error.

`--quecpython TAGS` also builds those tags the way QuecPython builds its firmware: with
MICROPY_MODULE_WEAK_LINKS 0, so only `utime`, `ujson`, `ubinascii`... exist, not `time`,
`json`, `binascii` (the unix port's mpconfigport.h of the copy gets an #ifndef around its
definition; the build goes to build-quecpython/, the binary is micropython-quecpython).

For every build: tests/core and tests/boards through tools/mp_test.py's driver (files laid
out as there, in WORK/<tag>/fs-<config>/), then an import of every module of each board's
bundle (tools/freeze.py's manifest and stand-ins for the port modules), as .py and as
.mpy compiled by that tag's mpy-cross (format 5 up to 1.18, 6 from 1.19). Prints
`MicroPython X.Y.Z: N passed, M failed` per build and the matrix; --write-docs puts it into
docs/bench.md. Not part of `make test` (the source tree is not on a fresh machine); `make
test` runs tests/host/test_mp_compat.py, the static check that keeps these builds green.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)
import benchdoc  # noqa: E402
import freeze  # noqa: E402
import mp_test  # noqa: E402

ROOT = os.path.dirname(TOOLS)
TAGS = "v1.13,v1.19.1,v1.20.0,v1.22.2,v1.27.0"
MAKE_VARS = ["MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0", "MICROPY_PY_SSL=0", "MICROPY_PY_USSL=0",
             "MICROPY_USE_READLINE=0", "FROZEN_MANIFEST=", "CFLAGS_EXTRA=-Wno-error"]
QUEC_VARS = ["BUILD=build-quecpython", "PROG=micropython-quecpython",
             "CFLAGS_EXTRA=-Wno-error -DMICROPY_MODULE_WEAK_LINKS=0"]
BUILD_TIMEOUT_S = 1800
RUN_TIMEOUT_S = 900
HEAP = "8M"  # tests/core make a 2 MB body (esipa_json.MAX_BODY + 1)
RESULT = re.compile(r"^MicroPython (\S+): (\d+) passed, (\d+) failed", re.M)

BUNDLE_DRIVER = r"""
import sys
sys.path[:] = [%(root)r + "/board", %(root)r + "/lib", %(root)r + "/stubs"]
_bad = 0
for _n in %(names)r:
    try:
        __import__(_n)
    except BaseException as e:
        _bad += 1
        print("IMPORT ERROR %%s:" %% _n)
        sys.print_exception(e)
print("BUNDLE %%d imported, %%d failed" %% (len(%(names)r) - _bad, _bad))
sys.exit(1 if _bad else 0)
"""


def _run(cmd, log, cwd=None, timeout=BUILD_TIMEOUT_S):
    with open(log, "w") as f:
        r = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    if r.returncode:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise SystemExit("mp_versions: %s failed (log %s):\n%s" % (" ".join(cmd), log, tail))


def git_dir(src):
    dot = os.path.join(src, ".git")
    return dot if os.path.exists(dot) else src


def export(src, tag, work):
    """WORK/<tag>/: the tag's tree (git archive), once."""
    dest = os.path.join(work, tag, "src")
    if not os.path.isdir(dest):
        tmp = dest + ".part"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        archive = subprocess.run(["git", "--git-dir", git_dir(src), "archive", tag],
                                 capture_output=True, check=True, timeout=300).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True, timeout=300)
        os.rename(tmp, dest)
    return dest


def allow_weak_links_off(tree):
    """Let -DMICROPY_MODULE_WEAK_LINKS=0 win over the unix port's own definition (1.13-1.20)."""
    path = os.path.join(tree, "ports", "unix", "mpconfigport.h")
    text = open(path).read()
    if "#ifndef MICROPY_MODULE_WEAK_LINKS" in text:
        return True
    new = re.sub(r"^(#define MICROPY_MODULE_WEAK_LINKS\s+\(1\))$",
                 r"#ifndef MICROPY_MODULE_WEAK_LINKS\n\1\n#endif", text, flags=re.M)
    if new == text:
        return False  # 1.21+: no weak links left to turn off (the short names are the real ones)
    with open(path, "w") as f:
        f.write(new)
    return True


def build(tree, quecpython, jobs, logs):
    """mpy-cross and the unix port; returns the micropython binary."""
    unix = os.path.join(tree, "ports", "unix")
    prog = "micropython-quecpython" if quecpython else "micropython"
    # Up to 1.19 the binary lands in ports/unix/, from 1.20 in its build folder.
    places = [os.path.join(unix, prog),
              os.path.join(unix, "build-quecpython" if quecpython else "build-standard", prog)]
    for binary in places:
        if os.path.isfile(binary):
            return binary
    _run(["make", "-C", os.path.join(tree, "mpy-cross"), "-j%d" % jobs,
          "CFLAGS_EXTRA=-Wno-error"], os.path.join(logs, "mpy-cross.log"))
    extra = list(MAKE_VARS)
    if quecpython:
        if not allow_weak_links_off(tree):
            raise SystemExit("mp_versions: %s has no MICROPY_MODULE_WEAK_LINKS to turn off" % tree)
        extra = [v for v in extra if not v.startswith("CFLAGS_EXTRA=")] + QUEC_VARS
    _run(["make", "-C", unix, "-j%d" % jobs] + extra,
         os.path.join(logs, prog + ".log"))
    for binary in places:
        if os.path.isfile(binary):
            return binary
    raise SystemExit("mp_versions: the build made no %s (log in %s)" % (prog, logs))


def stage(files, fs):
    """Write {"/path": source} under the folder fs."""
    shutil.rmtree(fs, ignore_errors=True)
    for path, text in files.items():
        full = fs + path
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)


def run_tests(binary, fs):
    """tests/core and tests/boards under `binary`: (passed, failed, output)."""
    files = mp_test.test_files()
    stage(files, fs)
    driver = mp_test.DRIVER % {"names": mp_test.test_names(files), "k": "", "root": fs}
    driver += "sys.exit(_exit_code)\n"
    out = _micropython(binary, fs, driver)
    m = RESULT.search(out)
    if not m:
        return 0, 1, out
    # A warning the unix port prints ("Comparison between bytes and str": a bytes/str mix-up
    # the WebAssembly build of `make test` does not report) counts as a failure.
    warnings = len(re.findall(r"^Warning: ", out, re.M))
    if warnings:
        out += "mp_versions: %d MicroPython warnings, each counted as a failure\n" % warnings
    return int(m.group(2)), int(m.group(3)) + warnings, out


def bundle_imports(binary, board, fs, mpy_cross=None):
    """Import every module of the board's bundle, as .py or (mpy_cross: the command, a list)
    as .mpy compiled by that mpy-cross: (imported, failed, output)."""
    board_dir = os.path.join(ROOT, "boards", board)
    m = freeze.read_manifest(board_dir)
    files = freeze.stub_files(freeze.port_modules(board_dir))
    if not mpy_cross:
        for target, src in m.entries.items():
            with open(src, encoding="utf-8") as f:
                files["/lib/" + target] = f.read()
    stage(files, fs)
    for target, src in m.entries.items() if mpy_cross else ():
        dst = os.path.join(fs, "lib", target[:-3] + ".mpy")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        r = subprocess.run(mpy_cross + ["-o", dst, "-s", target, src], capture_output=True,
                           timeout=120)
        if r.returncode:
            return 0, len(m.entries), "mpy-cross %s: %s" % (target, r.stderr.decode())
    names = sorted(freeze.module_name(t) for t in m.entries)
    out = _micropython(binary, fs, BUNDLE_DRIVER % {"names": names, "root": fs})
    m = re.search(r"^BUNDLE (\d+) imported, (\d+) failed", out, re.M)
    if not m:
        return 0, len(names), out
    return int(m.group(1)), int(m.group(2)), out


def _micropython(binary, fs, driver):
    path = os.path.join(fs, "_driver.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(driver)
    try:
        r = subprocess.run([binary, "-X", "heapsize=" + HEAP, path], cwd=fs,
                           capture_output=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "mp_versions: run exceeded %d s\n" % RUN_TIMEOUT_S
    return (r.stdout + r.stderr).decode(errors="replace")


def boards():
    return sorted(b for b in os.listdir(os.path.join(ROOT, "boards"))
                  if b != "common" and os.path.isfile(os.path.join(ROOT, "boards", b, "manifest.py")))


def measure(src, tag, quecpython, work, jobs, verbose):
    tree = export(src, tag, work)
    config = "quecpython" if quecpython else "standard"
    logs = os.path.join(work, tag, "logs")
    os.makedirs(logs, exist_ok=True)
    t0 = time.time()
    binary = build(tree, quecpython, jobs, logs)
    version = subprocess.run([binary, "-c", "import sys; print('.'.join(str(x) for x in "
                                           "sys.implementation.version[:3]))"],
                             capture_output=True, timeout=30).stdout.decode().strip()
    if quecpython:  # the configuration took: the short names are gone
        r = subprocess.run([binary, "-c", "import json"], capture_output=True, timeout=30)
        if b"ImportError" not in r.stderr + r.stdout:
            raise SystemExit("mp_versions: %s still has `json`: weak links not off" % binary)
    row = {"tag": tag, "config": config, "build_s": time.time() - t0, "version": version}
    t0 = time.time()
    row["passed"], row["failed"], out = run_tests(binary, os.path.join(work, tag, "fs-" + config))
    row["tests_s"] = time.time() - t0
    with open(os.path.join(logs, "tests-%s.log" % config), "w") as f:
        f.write(out)
    if verbose or row["failed"]:
        print(out.rstrip())
    m = RESULT.search(out)
    print("%s (%s): %s (build %.0f s, tests %.0f s)" % (
        tag, config, m.group(0) if m else "no result line", row["build_s"], row["tests_s"]))
    row["bundles"] = {}
    # mpy-cross/mpy-cross up to 1.19, mpy-cross/build/mpy-cross from 1.20
    mpy_cross = [p for p in (os.path.join(tree, "mpy-cross", "mpy-cross"),
                             os.path.join(tree, "mpy-cross", "build", "mpy-cross"))
                 if os.path.isfile(p)][:1]
    with open(os.path.join(tree, "ports", "unix", "mpconfigport.h")) as f:
        if re.search(r"define MICROPY_OPT_CACHE_MAP_LOOKUP_IN_BYTECODE\s+\(1\)", f.read()):
            # .mpy v5 records this option and the unix port of 1.13-1.18 has it on (an MCU
            # port such as QuecPython's usually not: there plain mpy-cross output loads).
            mpy_cross.append("-mcache-lookup-bc")
    for board in boards():
        for kind, cross in (("py", None), ("mpy", mpy_cross)):
            ok, bad, out = bundle_imports(binary, board,
                                          os.path.join(work, tag, "bundle-" + config), cross)
            row["bundles"]["%s .%s" % (board, kind)] = (ok, bad)
            if bad:
                print(out.rstrip())
            print("  %s bundle as .%s: %d modules imported, %d failed" % (board, kind, ok, bad))
    return row


def section(rows, cmd):
    lines = ["## MicroPython versions", "",
             "`%s` on %s. Each tag's unix port built from source (FFI, BTREE, SSL, readline "
             "off; `-Wno-error` for old tags on a modern gcc); *quecpython* is the same tag "
             "with `MICROPY_MODULE_WEAK_LINKS 0` as QuecPython builds it (`utime`, `ujson`... "
             "only). Tests: tests/core and tests/boards as `tools/mp_test.py` runs them; "
             "bundles: every module of each board's bundle imported, as .py and as .mpy from the "
             "tag's own mpy-cross (.mpy v5 up to 1.18, v6 from 1.19), port modules stood in."
             % (cmd, benchdoc.machine()), "",
             "| tag | build | tests passed | failed | %s |" % " | ".join(
                 "%s imported (.py, .mpy)" % b for b in boards()),
             "|---|---|---|---|" + "---|" * len(boards())]
    for r in rows:
        cells = [", ".join("%d/%d" % (r["bundles"][b + k][0], sum(r["bundles"][b + k]))
                           for k in (" .py", " .mpy")) for b in boards()]
        lines.append("| %s | %s | %d | %d | %s |" % (r["tag"], r["config"], r["passed"],
                                                    r["failed"], " | ".join(cells)))
    lines += ["", "Not covered: the ports' own modules (machine, network, QuecPython's sim, "
              "atcmd, checkNet, usocket, ussl are the tests' stand-ins), the bare-metal ports' "
              "smaller heaps (tools/mp_cycle.py, tools/mp_firmware.py), the tests as .mpy (they "
              "run from source), and QuecPython's own firmware (its 1.13 is stood in for by "
              "the unix port built without weak links).", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--micropython-src", required=True, help="MicroPython git repository")
    ap.add_argument("--tags", default=TAGS, help="comma-separated tags (default %(default)s)")
    ap.add_argument("--quecpython", default="v1.13",
                    help="tags also built without weak links, as QuecPython ('' for none)")
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "mp_versions"),
                    help="where the trees and builds go (kept: a second run only tests)")
    ap.add_argument("--jobs", type=int, default=2, help="make -j")
    ap.add_argument("--write-docs", action="store_true",
                    help="write the matrix into docs/bench.md ('MicroPython versions')")
    ap.add_argument("--verbose", action="store_true", help="print every test run's output")
    a = ap.parse_args(argv)
    work = os.path.abspath(a.work)
    tags = [t for t in a.tags.split(",") if t]
    quec = set(t for t in a.quecpython.split(",") if t)
    rows = []
    for tag in tags:
        for q in ([True] if tag in quec else []) + [False]:
            rows.append(measure(os.path.abspath(a.micropython_src), tag, q, work, a.jobs,
                                a.verbose))
    print()
    for r in rows:
        print("%-8s %-10s %s: %d passed, %d failed; bundles %s" % (
            r["tag"], r["config"], "MicroPython " + r["version"], r["passed"], r["failed"],
            ", ".join("%s %d/%d" % (k, ok, ok + bad) for k, (ok, bad) in
                      sorted(r["bundles"].items()))))
    bad = [r for r in rows if r["failed"] or any(v[1] for v in r["bundles"].values())]
    if a.write_docs:
        cmd = "python3 tools/mp_versions.py --micropython-src DIR --tags %s --quecpython %s" % (
            ",".join(tags), ",".join(sorted(quec)))
        benchdoc.write_section(section(rows, cmd), "## MicroPython versions")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
