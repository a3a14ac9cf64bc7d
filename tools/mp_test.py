#!/usr/bin/env python3
"""Run tests/core and tests/boards under real MicroPython 1.27 (WebAssembly port in node).

Loads ipa_core/ and boards/common/ into /lib, the board folders into
/boards/<board>/, tests/core/ and tests/boards/ into the MicroPython
filesystem, imports each tests/core/test_*.py and tests/boards/test_*.py,
calls every test_* function, prints failures with tracebacks and a closing
line `N passed, M failed`. Exits non-zero on any
failure or import error. Needs node and the npm package installed in .mp/
(`make mp` does that).

    python3 tools/mp_test.py [-k SUBSTRING] [--heap BYTES] [files...]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MP_DIR = os.path.join(ROOT, ".mp")
PKG = "@micropython/micropython-webassembly-pyscript"

# Runs inside MicroPython: no pytest, just import, call, count.
DRIVER = r"""
import sys, gc
_root = %(root)r  # where the files are ("" in the WebAssembly filesystem)
sys.path.insert(0, _root + "/tests/core")
sys.path.insert(0, _root + "/tests/boards")
sys.path.insert(0, _root + "/lib")
_passed = 0
_failed = 0
_names = %(names)r
_k = %(k)r
for _mod in _names:
    try:
        _m = __import__(_mod)
    except BaseException as e:
        print("IMPORT ERROR %%s:" %% _mod)
        sys.print_exception(e)
        _failed += 1
        continue
    for _t in sorted(dir(_m)):
        if not _t.startswith("test_") or (_k and _k not in _t):
            continue
        _f = getattr(_m, _t)
        if not callable(_f):
            continue
        try:
            _f()
            _passed += 1
        except BaseException as e:
            _failed += 1
            print("FAILED %%s.%%s:" %% (_mod, _t))
            sys.print_exception(e)
        gc.collect()
print("MicroPython %%s: %%d passed, %%d failed" %% (".".join(str(x) for x in sys.implementation.version[:3]), _passed, _failed))
_exit_code = 1 if (_failed or not _passed) else 0
"""


def collect(root, sub, dest):
    out = {}
    base = os.path.join(ROOT, root)
    for dirpath, _dirs, files in os.walk(base):
        for f in files:
            if f.endswith(".py"):
                p = os.path.join(dirpath, f)
                rel = os.path.relpath(p, base).replace(os.sep, "/")
                with open(p, encoding="utf-8") as fh:
                    out[dest + "/" + sub + rel] = fh.read()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="only tests whose name contains this")
    ap.add_argument("--heap", type=int, default=2 * 1024 * 1024, help="MicroPython heap bytes")
    ap.add_argument("files", nargs="*",
                    help="test files (default: tests/core/test_*.py, tests/boards/test_*.py)")
    a = ap.parse_args(argv)
    node = shutil.which("node")
    runtime = os.path.join(MP_DIR, "node_modules", PKG)
    if not node or not os.path.isdir(runtime):
        print("mp_test: MicroPython runtime missing: need node and `npm install --prefix .mp %s`"
              " (run `make mp`)" % PKG, file=sys.stderr)
        return 2
    files = test_files()
    names = test_names(files, a.files)
    job = {"files": files, "heapsize": a.heap,
           "driver": DRIVER % {"names": names, "k": a.k, "root": ""}}
    return _run_node(node, job)


def test_files():
    """{path in the MicroPython filesystem: source}: the core and the board glue in /lib, the
    board folders in /boards/<board>/, tests/core and tests/boards in /tests/."""
    files = {}
    files.update(collect("ipa_core", "ipa_core/", "/lib"))
    files.update(collect(os.path.join("tests", "core"), "", "/tests/core"))
    # Board glue as on a board (/lib), board folders for tests of their board.py.
    files.update(collect(os.path.join("boards", "common"), "", "/lib"))
    for board in sorted(os.listdir(os.path.join(ROOT, "boards"))):
        folder = os.path.join(ROOT, "boards", board)
        if board != "common" and os.path.isdir(folder):
            files.update(collect(os.path.join("boards", board), "", "/boards/" + board))
            for f in sorted(os.listdir(folder)):
                if f.endswith(".json"):  # example configurations
                    with open(os.path.join(folder, f), encoding="utf-8") as fh:
                        files["/boards/%s/%s" % (board, f)] = fh.read()
    files.update(collect(os.path.join("tests", "boards"), "", "/tests/boards"))
    return files


def test_names(files, only=()):
    """Module names of the tests to run: `only` (paths) or every tests/{core,boards}/test_*."""
    if only:
        return [os.path.splitext(os.path.basename(f))[0] for f in only]
    return sorted(os.path.splitext(os.path.basename(p))[0] for p in files
                  for d in ("/tests/core/", "/tests/boards/")
                  if p.startswith(d + "test_") and "/" not in p[len(d):])


def _run_node(node, job):
    script = os.path.join(ROOT, "tools", "mp_runner.mjs")
    env = dict(os.environ, NODE_PATH=os.path.join(MP_DIR, "node_modules"))
    # The .mjs imports by package name, resolved from .mp/node_modules via a link.
    link = os.path.join(MP_DIR, "mp_runner.mjs")
    with open(script, encoding="utf-8") as src, open(link, "w", encoding="utf-8") as dst:
        dst.write(src.read())
    try:
        r = subprocess.run([node, link], input=json.dumps(job).encode(), env=env, timeout=600)
    except subprocess.TimeoutExpired:
        print("mp_test: MicroPython run exceeded 600 s", file=sys.stderr)
        return 3
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
