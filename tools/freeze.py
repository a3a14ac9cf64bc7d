#!/usr/bin/env python3
"""Build a board's frozen bundle from its manifest.py, report .mpy sizes, check it is complete.

    python3 tools/freeze.py boards/esp32s3_sim7080g [more boards] [--strict] [--budget N]
    python3 tools/freeze.py --all

For each board folder:
1. runs boards/<board>/manifest.py with our own include/freeze/package/module
   (MicroPython manifest syntax; no MicroPython source tree needed:
   includes of $(PORT_DIR)/$(MPY_DIR)/$(MPY_LIB_DIR) files are listed as
   "provided by the MicroPython build" and skipped);
2. compiles every listed module with mpy-cross (tools/mpy_size.compile_one)
   into build/<board>/lib/, copies main.py (and ipa_config.json when the
   board has one) to build/<board>/ - the tree `mpremote cp -r` takes - and
   writes build/<board>/sizes.json (--tar: also build/<board>.tar;
   --py: the .py sources too, in build/<board>/py/, for QuecPython);
3. reports every module's .mpy size (largest first), the ipa_core total
   against the budget (--budget, default 65536; --strict: exit 1 when over),
   the board glue total and the whole total;
4. import-checks the bundle under real MicroPython (the WebAssembly port that
   tools/mp_test.py uses): main.py is imported (not run) with only the
   bundle on sys.path plus tiny stand-ins for the port's own modules
   (board.py's PORT_MODULES: machine, network, sim, ...), then every bundled
   module is imported. A module missing from the manifest fails the build,
   naming who imports it. For information it lists ipa_core modules imported
   only inside functions and not frozen (the JSON binding, direct download),
   and frozen modules no import statement reaches from main.py (a stack
   module at_http imports by name, or one the manifest could drop).
   --no-check skips this step;
5. says whether boards/<board>/package.json (for `mpremote mip install`) still lists exactly
   the files the manifest freezes, with the manifest's metadata(version=...).

    python3 tools/freeze.py --all --write-packages [--github OWNER/REPO]

writes each package.json from its manifest instead (sources relative to the package.json,
or with --github absolute github:OWNER/REPO/... URLs) and builds nothing.
Exit status: 0 fine, 1 a manifest/compile/import problem (or over budget with
--strict), 2 the MicroPython runtime is missing for the check.
"""

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)

import mp_test  # noqa: E402 - the MicroPython runtime location and runner
import mpy_size  # noqa: E402 - the mpy-cross compile step

BUDGET = 65536  # issue 8: ipa_core frozen in at most 64 KB of .mpy
CORE_PACKAGE = "ipa_core"
BUILD_VARS = ("$(MPY_DIR)", "$(PORT_DIR)", "$(MPY_LIB_DIR)")
# Port modules stood in for when board.py does not list its own (PORT_MODULES).
DEFAULT_PORT_MODULES = ("machine", "network", "socket", "ssl")
CHECK_TIMEOUT_S = 300
# metadata() keywords of MicroPython's tools/manifestfile.py (ManifestPackageMetadata.update).
METADATA_KEYS = ("description", "version", "license", "author", "stdlib", "pypi",
                 "pypi_publish")
PACKAGE_JSON = "package.json"


class FreezeError(Exception):
    """A manifest that cannot be built: the message names the manifest and what is wrong."""


class Options:
    """`options` inside a manifest (MicroPython manifestfile.IncludeOptions): attributes are
    the include() keyword arguments, else the defaults() given, else None."""

    def __init__(self, **kwargs):
        self._kwargs = kwargs
        self._defaults = {}

    def defaults(self, **kwargs):
        self._defaults = kwargs

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._kwargs.get(name, self._defaults.get(name))


class Manifest:
    """Runs manifest files and collects {target path in the bundle: source file}."""

    def __init__(self, board_dir):
        self.board_dir = os.path.abspath(board_dir)
        self.entries = {}  # "ipa_core/tlv.py" -> absolute source path
        self.origin = {}  # target -> manifest that named it
        self.skipped = []  # what only a MicroPython build provides
        self._stack = []  # manifest files being run (relative paths resolve against the top)
        self.meta = {}  # metadata(...) keywords: version, description, ...
        self.meta_origin = None  # the manifest that called metadata()

    # -- paths

    def _where(self):
        return os.path.relpath(self._stack[-1], ROOT) if self._stack else "?"

    def _resolve(self, path):
        path = path.replace("$(BOARD_DIR)", self.board_dir)
        if not os.path.isabs(path):
            path = os.path.join(os.path.dirname(self._stack[-1]), path)
        return os.path.normpath(path)

    def _needs_build(self, call, path):
        for var in BUILD_VARS:
            if var in path:
                self.skipped.append("%s: %s(%r) - provided by the MicroPython build"
                                    % (self._where(), call, path))
                return True
        return False

    def _add(self, target, src, call):
        target = target.replace(os.sep, "/")
        if not target.endswith(".py"):
            raise FreezeError("%s: %s names %r: only .py files can be frozen"
                              % (self._where(), call, target))
        if not os.path.isfile(src):
            raise FreezeError("%s: %s names %s, which does not exist (%s)"
                              % (self._where(), call, target, os.path.relpath(src, ROOT)))
        old = self.entries.get(target)
        if old is not None and old != src:
            raise FreezeError("%s: %s freezes %s from %s, but %s already froze it from %s"
                              % (self._where(), call, target, os.path.relpath(src, ROOT),
                                 self.origin[target], os.path.relpath(old, ROOT)))
        self.entries[target] = src
        self.origin.setdefault(target, self._where())

    # -- the manifest functions (MicroPython tools/manifestfile.py names and arguments)

    def include(self, manifest_path, **kwargs):
        paths = [manifest_path] if isinstance(manifest_path, str) else list(manifest_path)
        for p in paths:
            if self._needs_build("include", p):
                continue
            path = self._resolve(p)
            if os.path.isdir(path):
                path = os.path.join(path, "manifest.py")
            if not os.path.isfile(path):
                raise FreezeError("%s: include(%r): no manifest at %s"
                                  % (self._where(), p, os.path.relpath(path, ROOT)))
            self.execute(path, **kwargs)

    def module(self, module_path, base_path=".", opt=None):
        call = "module(%r)" % module_path
        if self._needs_build("module", base_path + "/" + module_path):
            return
        self._add(module_path, os.path.join(self._resolve(base_path), module_path), call)

    def package(self, package_path, files=None, base_path=".", opt=None):
        call = "package(%r)" % package_path
        if self._needs_build("package", base_path + "/" + package_path):
            return
        pkg = os.path.join(self._resolve(base_path), package_path)
        if not os.path.isdir(pkg):
            raise FreezeError("%s: %s: no package folder %s"
                              % (self._where(), call, os.path.relpath(pkg, ROOT)))
        if files is None:
            files = _py_files(pkg)
        for f in files:
            self._add(package_path + "/" + f, os.path.join(pkg, f), call)

    def freeze(self, path, script=None, opt=0):
        call = "freeze(%r)" % path
        if self._needs_build("freeze", path):
            return
        base = self._resolve(path)
        if script is None:
            scripts = _py_files(base)
        elif isinstance(script, str):
            scripts = [script]
        else:
            scripts = list(script)
        for s in scripts:
            self._add(s, os.path.join(base, s), call)

    def require(self, name, **kwargs):
        raise FreezeError("%s: require(%r): micropython-lib packages are not available here; "
                          "freeze the module from this repository instead" % (self._where(), name))

    def metadata(self, **kwargs):
        """metadata(description=, version=, license=, author=, ...): recorded in self.meta.
        As in MicroPython's freezer, include() shares its includer's metadata: a second call
        anywhere in one board's manifests is an error there ("Duplicate call to metadata()"),
        so the shared boards/common/manifest.py must not call it."""
        unknown = sorted(set(kwargs) - set(METADATA_KEYS))
        if unknown:
            raise FreezeError("%s: metadata() takes %s, not %s"
                              % (self._where(), ", ".join(METADATA_KEYS), ", ".join(unknown)))
        if not kwargs:
            return
        if self.meta_origin:
            raise FreezeError("%s: a second metadata() call (the first is in %s); MicroPython's "
                              "freezer refuses it (included manifests share the includer's "
                              "metadata)" % (self._where(), self.meta_origin))
        self.meta = dict(kwargs)
        self.meta_origin = self._where()

    def execute(self, path, **kwargs):
        """Run one manifest file in its own namespace, as MicroPython's freezer does."""
        path = os.path.abspath(path)
        if path in self._stack:
            raise FreezeError("%s includes itself" % os.path.relpath(path, ROOT))
        with open(path, encoding="utf-8") as f:
            text = f.read()
        env = {"include": self.include, "module": self.module, "package": self.package,
               "freeze": self.freeze, "require": self.require, "metadata": self.metadata,
               "options": Options(**kwargs), "__file__": path}
        self._stack.append(path)
        try:
            exec(compile(text, path, "exec"), env)
        except FreezeError:
            raise
        except Exception as e:
            raise FreezeError("%s: %s: %s" % (os.path.relpath(path, ROOT), type(e).__name__, e))
        finally:
            self._stack.pop()


def _py_files(folder):
    out = []
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            if f.endswith(".py"):
                out.append(os.path.relpath(os.path.join(dirpath, f), folder).replace(os.sep, "/"))
    return sorted(out)


def module_name(target):
    """'ipa_core/tlv.py' -> 'ipa_core.tlv'; 'ipa_core/__init__.py' -> 'ipa_core'."""
    name = target[:-3].replace("/", ".")
    if name.endswith(".__init__"):
        name = name[:-len(".__init__")]
    return name


# ------------------------------------------------------------------------- build


def read_manifest(board_dir):
    path = os.path.join(board_dir, "manifest.py")
    if not os.path.isfile(path):
        raise FreezeError("%s: no manifest.py" % os.path.relpath(board_dir, ROOT))
    m = Manifest(board_dir)
    m.execute(path)
    if not m.entries:
        raise FreezeError("%s: the manifest freezes nothing" % os.path.relpath(path, ROOT))
    return m


def build(board_dir, out_dir=None, march=None, budget=BUDGET, sources=False, tar=False, opt=0):
    """Compile a board's bundle; return the report dict (see the module docstring)."""
    board_dir = os.path.abspath(board_dir)
    board = os.path.basename(board_dir.rstrip(os.sep))
    m = read_manifest(board_dir)
    out = os.path.abspath(out_dir or os.path.join(ROOT, "build", board))
    lib = os.path.join(out, "lib")
    for old in (lib, os.path.join(out, "py")):
        if os.path.isdir(old):
            shutil.rmtree(old)  # no stale module from an earlier manifest
    modules = []
    for target in sorted(m.entries):
        src = m.entries[target]
        dst = os.path.join(lib, target[:-3] + ".mpy")
        try:
            size = mpy_size.compile_one(src, dst, target, march, opt)
        except RuntimeError as e:
            raise FreezeError("%s: %s" % (board, e))
        if sources:  # a separate tree: next to a .mpy, MicroPython would import the .py
            dst_py = os.path.join(out, "py", target)
            os.makedirs(os.path.dirname(dst_py), exist_ok=True)
            shutil.copyfile(src, dst_py)
        modules.append({"module": module_name(target), "path": target, "size": size,
                        "source": os.path.relpath(src, ROOT), "mpy": os.path.relpath(dst, ROOT)})
    extras = []
    for name in ("main.py", "ipa_config.json"):
        src = os.path.join(board_dir, name)
        if os.path.isfile(src):
            shutil.copyfile(src, os.path.join(out, name))
            extras.append(name)
    core_mods = [x for x in modules if x["path"].startswith(CORE_PACKAGE + "/")]
    core = sum(x["size"] for x in core_mods)
    total = sum(x["size"] for x in modules)
    report = {"board": board, "manifest": os.path.relpath(os.path.join(board_dir, "manifest.py"),
                                                          ROOT),
              "out": os.path.relpath(out, ROOT), "modules": modules, "extras": extras,
              "ipa_core_total": core, "glue_total": total - core, "total": total,
              "opt": opt,
              "budget": budget, "over_budget": max(0, core - budget), "skipped": m.skipped,
              "march": march}
    with open(os.path.join(out, "sizes.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    if tar:
        path = out.rstrip(os.sep) + ".tar"
        with tarfile.open(path, "w") as t:
            t.add(out, arcname=board)
        report["tar"] = os.path.relpath(path, ROOT)
    report["_manifest"] = m
    return report


def print_report(r, out=None):
    w = (out or sys.stdout).write
    w("%s: %d modules from %s -> %s/\n" % (r["board"], len(r["modules"]), r["manifest"], r["out"]))
    width = max(len(x["module"]) for x in r["modules"])
    for x in sorted(r["modules"], key=lambda x: (-x["size"], x["module"])):
        w("  %-*s %7d\n" % (width, x["module"], x["size"]))
    core, budget = r["ipa_core_total"], r["budget"]
    verdict = ("OVER by %d" % (core - budget)) if core > budget else \
        ("%d to spare" % (budget - core))
    w("  ipa_core .mpy total: %d bytes (budget %d: %s)%s\n"
      % (core, budget, verdict, " with mpy-cross -O%d" % r["opt"] if r.get("opt") else ""))
    w("  flash: not the .mpy total; measured by tools/mp_firmware.py (docs/bench.md, "
      "'Frozen firmware')\n")
    w("  board glue .mpy total: %d bytes\n" % r["glue_total"])
    w("  total .mpy: %d bytes\n" % r["total"])
    for s in r["skipped"]:
        w("  skipped %s\n" % s)
    if r.get("tar"):
        w("  archive: %s\n" % r["tar"])


# ------------------------------------------------------------------------- import check

STUB_MACHINE = '''
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def reset_cause():
    return PWRON_RESET


def reset():
    raise SystemExit("machine.reset() (stand-in)")


def unique_id():
    return b"\\x00" * 8


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 2
    PULL_DOWN = 3

    def __init__(self, *args, **kw):
        self.v = kw.get("value", 0)

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v


class UART:
    def __init__(self, *args, **kw):
        pass

    def read(self, n=-1):
        return None

    def write(self, b):
        return len(b)

    def any(self):
        return 0


class I2C:
    def __init__(self, *args, **kw):
        pass


SoftI2C = I2C


class WDT:
    def __init__(self, *args, **kw):
        pass

    def feed(self):
        pass
'''


def stub_files(port_modules):
    """MicroPython source of the stand-in port modules: machine gets the names board code
    uses; the others are empty modules (only their presence matters for an import)."""
    out = {}
    for name in port_modules:
        out["/stubs/%s.py" % name] = STUB_MACHINE if name == "machine" else \
            "# stand-in for the port module %s (tools/freeze.py import check)\n" % name
    return out


def port_modules(board_dir):
    """board.py's PORT_MODULES tuple (read without running board.py), or the default."""
    path = os.path.join(board_dir, "board.py")
    try:
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
    except OSError:
        return DEFAULT_PORT_MODULES
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "PORT_MODULES" for t in node.targets):
            value = ast.literal_eval(node.value)
            if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
                raise FreezeError("%s: PORT_MODULES must be a tuple of module names"
                                  % os.path.relpath(path, ROOT))
            return tuple(value)
    return DEFAULT_PORT_MODULES


CHECK_DRIVER = r"""
import sys, json
sys.path[:] = ["/board", "/lib", "/stubs", ".frozen"]
_out = {"main": None, "modules": {}}
try:
    __import__("main")
except BaseException as e:
    _out["main"] = "%%s: %%s" %% (e.__class__.__name__, e)
for _n in %(names)r:
    try:
        __import__(_n)
    except BaseException as e:
        _out["modules"][_n] = "%%s: %%s" %% (e.__class__.__name__, e)
print("FREEZE-CHECK " + json.dumps(_out))
_exit_code = 0
"""


def imports_of(src_path, lazy):
    """Module names a source imports at top level (lazy=False) or inside functions (True)."""
    tree = ast.parse(open(src_path, encoding="utf-8").read(), src_path)
    found = set()

    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            inner = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                  ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)) and inner == lazy:
                if isinstance(child, ast.Import):
                    found.update(a.name for a in child.names)
                elif child.module and not child.level:
                    found.add(child.module)
                    for a in child.names:  # from ipa_core import tlv -> ipa_core.tlv
                        found.add(child.module + "." + a.name)
            visit(child, inner)

    visit(tree, False)
    return found


def mp_runtime():
    node = shutil.which("node")
    runtime = os.path.join(mp_test.MP_DIR, "node_modules", mp_test.PKG)
    if not node or not os.path.isdir(runtime):
        return None
    return node


def run_micropython(files, driver, heap=4 * 1024 * 1024):
    """Run `driver` under MicroPython (tools/mp_runner.mjs) with `files` in its filesystem;
    return (exit code, stdout, stderr)."""
    node = mp_runtime()
    job = {"files": files, "heapsize": heap, "driver": driver}
    link = os.path.join(mp_test.MP_DIR, "mp_runner.mjs")
    with open(os.path.join(TOOLS, "mp_runner.mjs"), encoding="utf-8") as src:
        text = src.read()
    if not os.path.isfile(link) or open(link, encoding="utf-8").read() != text:
        with open(link, "w", encoding="utf-8") as dst:
            dst.write(text)
    env = dict(os.environ, NODE_PATH=os.path.join(mp_test.MP_DIR, "node_modules"))
    r = subprocess.run([node, link], input=json.dumps(job).encode(), env=env,
                       capture_output=True, timeout=CHECK_TIMEOUT_S)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def import_check(board_dir, m):
    """Import main.py and every bundled module under MicroPython; returns
    {"ok", "errors": [...], "lazy_missing": [...], "not_loaded": [...]}."""
    board_dir = os.path.abspath(board_dir)
    main = os.path.join(board_dir, "main.py")
    if not os.path.isfile(main):
        raise FreezeError("%s: no main.py" % os.path.relpath(board_dir, ROOT))
    files = {"/board/main.py": open(main, encoding="utf-8").read()}
    for target, src in m.entries.items():
        files["/lib/" + target] = open(src, encoding="utf-8").read()
    ports = port_modules(board_dir)
    files.update(stub_files(ports))
    names = sorted(module_name(t) for t in m.entries)
    code, out, err = run_micropython(files, CHECK_DRIVER % {"names": names})
    line = [ln for ln in out.splitlines() if ln.startswith("FREEZE-CHECK ")]
    if code != 0 or not line:
        raise FreezeError("%s: the MicroPython import check did not run (exit %d):\n%s%s"
                          % (os.path.basename(board_dir), code, out[-2000:], err[-2000:]))
    res = json.loads(line[-1][len("FREEZE-CHECK "):])
    bundle = set(names)
    sources = dict((module_name(t), s) for t, s in m.entries.items())
    sources["main"] = main
    errors = []
    if res["main"]:
        errors.append("main.py: %s%s" % (res["main"], _who(res["main"], sources, False)))
    for n in sorted(res["modules"]):
        errors.append("%s: %s%s" % (n, res["modules"][n], _who(res["modules"][n], sources,
                                                                  False)))
    lazy = {}
    for n, src in sorted(sources.items()):
        for imp in sorted(imports_of(src, True)):
            if imp.startswith(CORE_PACKAGE + ".") and imp not in bundle and \
                    _is_core_module(imp):
                lazy.setdefault(imp, []).append(n)
    reach = reachable(sources)
    unreached = sorted(n for n in bundle if n not in reach and n != CORE_PACKAGE)
    return {"ok": not errors, "errors": errors,
            "lazy_missing": ["%s (inside functions of %s)" % (k, ", ".join(v))
                             for k, v in sorted(lazy.items())],
            "unreached": unreached, "port_modules": list(ports)}


def reachable(sources):
    """Bundle modules some import statement (top level or in a function) reaches from main."""
    seen = set()
    todo = ["main"]
    while todo:
        n = todo.pop()
        if n in seen or n not in sources:
            continue
        seen.add(n)
        for imp in imports_of(sources[n], False) | imports_of(sources[n], True):
            todo.append(imp)
    return seen


def _is_core_module(dotted):
    rel = dotted.replace(".", "/")
    return os.path.isfile(os.path.join(ROOT, rel + ".py"))


def _who(message, sources, lazy):
    """', imported by X, Y' for a "no module named 'x'" message."""
    q = message.find("'")
    if "no module named" not in message or q < 0:
        return ""
    missing = message[q + 1:message.find("'", q + 1)]
    users = sorted(n for n, src in sources.items() if missing in imports_of(src, lazy))
    return (" (not in the manifest; imported by %s)" % ", ".join(users)) if users else \
        " (not in the manifest)"


def print_check(c, out=None):
    w = (out or sys.stdout).write
    if c["ok"]:
        w("  import check (MicroPython, stand-ins for %s): main.py and every module import\n"
          % ", ".join(c["port_modules"]))
    else:
        w("  import check FAILED:\n")
        for e in c["errors"]:
            w("    %s\n" % e)
    if c["unreached"]:
        w("  frozen, but no import statement from main.py reaches it (imported by name at "
          "run time, or removable): %s\n" % ", ".join(c["unreached"]))
    for x in c["lazy_missing"]:
        w("  not frozen, imported only inside functions: %s\n" % x)


# ------------------------------------------------------------------------- mip packages


def package_json(board_dir, github=None, m=None):
    """A board's package.json for `mpremote mip install` (MicroPython's package format):
    "urls" holds one [destination, source] pair per file the manifest freezes (destinations
    are relative to the device's lib folder, ipa_core/ as a package), "deps" is empty and
    "version" is the manifest's metadata(version=...). Sources are relative to the board
    folder, which is how mip and mpremote resolve them (ipa_core/ and boards/common/ through
    "../"). With github="OWNER/REPO" they are "github:OWNER/REPO/<path in the repository>"
    instead: absolute, so nothing depends on how a web server treats "../"."""
    board_dir = os.path.abspath(board_dir)
    m = m or read_manifest(board_dir)
    where = os.path.relpath(os.path.join(board_dir, "manifest.py"), ROOT)
    version = m.meta.get("version")
    if not version:
        raise FreezeError("%s: no metadata(version=...) for package.json" % where)
    urls = []
    for target in sorted(m.entries):
        src = m.entries[target]
        if github:
            rel = os.path.relpath(src, ROOT).replace(os.sep, "/")
            if rel.startswith("../"):
                raise FreezeError("%s: %s comes from outside the repository (%s)"
                                  % (where, target, src))
            urls.append([target, "github:%s/%s" % (github, rel)])
        else:
            urls.append([target, os.path.relpath(src, board_dir).replace(os.sep, "/")])
    return {"urls": urls, "deps": [], "version": version}


def package_json_text(pkg):
    """package.json as written: one [destination, source] pair per line."""
    return '{\n  "urls": [\n%s\n  ],\n  "deps": %s,\n  "version": %s\n}\n' % (
        ",\n".join("    " + json.dumps(u) for u in pkg["urls"]), json.dumps(pkg["deps"]),
        json.dumps(pkg["version"]))


def package_github(pkg):
    """"OWNER/REPO" when every source of a package.json is a github:OWNER/REPO/... URL,
    else None (relative sources)."""
    try:
        sources = [u[1] for u in pkg["urls"]]
        homes = set("/".join(u[len("github:"):].split("/")[:2]) for u in sources
                    if u.startswith("github:"))
    except (KeyError, TypeError, IndexError, AttributeError):  # not the mip format
        return None
    if len(homes) == 1 and all(u.startswith("github:") for u in sources):
        return homes.pop()
    return None


def package_status(board_dir, m=None):
    """None when boards/<board>/package.json is what package_json() gives for the manifest
    (in the same URL form: relative, or github: for the home it names), else what is wrong."""
    path = os.path.join(board_dir, PACKAGE_JSON)
    rel = os.path.relpath(path, ROOT)
    if not os.path.isfile(path):
        return "%s is missing" % rel
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        pkg = json.loads(text)
    except ValueError as e:
        return "%s is not JSON: %s" % (rel, e)
    want = package_json_text(package_json(board_dir, package_github(pkg), m))
    if text != want:
        return "%s does not match manifest.py" % rel
    return None


def write_package(board_dir, github=None):
    """Write boards/<board>/package.json from its manifest; -> (path, the package dict)."""
    pkg = package_json(board_dir, github)
    path = os.path.join(os.path.abspath(board_dir), PACKAGE_JSON)
    with open(path, "w", encoding="utf-8") as f:
        f.write(package_json_text(pkg))
    return path, pkg


# ------------------------------------------------------------------------- main


def board_dirs():
    base = os.path.join(ROOT, "boards")
    return sorted(os.path.join(base, d) for d in os.listdir(base)
                  if os.path.isfile(os.path.join(base, d, "manifest.py")) and d != "common")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("boards", nargs="*", help="board folders (boards/<board>)")
    ap.add_argument("--all", action="store_true", help="every boards/* folder with a manifest")
    ap.add_argument("--out", help="output folder (one board only; default build/<board>)")
    ap.add_argument("--budget", type=int, default=BUDGET, help="ipa_core .mpy budget in bytes")
    ap.add_argument("--strict", action="store_true", help="exit 1 when ipa_core is over budget")
    ap.add_argument("--march", help="native arch for mpy-cross (default: bytecode only)")
    ap.add_argument("-O", "--opt", type=int, default=0, choices=range(4), metavar="N",
                    help="mpy-cross optimisation level: 1 drops asserts, 3 also line numbers "
                         "(smaller, tracebacks without lines; default 0)")
    ap.add_argument("--write-docs", action="store_true",
                    help="write the per-board sizes into docs/bench.md (section 'Frozen bundles')")
    ap.add_argument("--no-check", action="store_true", help="skip the MicroPython import check")
    ap.add_argument("--py", action="store_true",
                    help="also copy the .py sources to <out>/py (QuecPython)")
    ap.add_argument("--tar", action="store_true", help="also write build/<board>.tar")
    ap.add_argument("--json", action="store_true", help="print the reports as JSON")
    ap.add_argument("--write-packages", action="store_true",
                    help="only write each board's package.json (for `mpremote mip install`) "
                         "from its manifest, then stop")
    ap.add_argument("--github", metavar="OWNER/REPO",
                    help="with --write-packages: absolute github:OWNER/REPO/... sources instead "
                         "of paths relative to the package.json")
    a = ap.parse_args(argv)
    dirs = board_dirs() if a.all else a.boards
    if not dirs:
        ap.error("name board folders or use --all")
    if a.github and not (a.write_packages and re.match(r"^[\w.-]+/[\w.-]+$", a.github)):
        ap.error("--github takes OWNER/REPO, with --write-packages")
    if a.write_packages:
        return write_packages(dirs, a.github)
    if a.out and len(dirs) > 1:
        ap.error("--out takes one board")
    if not a.no_check and mp_runtime() is None:
        print("freeze: the import check needs node and the MicroPython runtime in .mp/ "
              "(`make mp` installs it); or pass --no-check", file=sys.stderr)
        return 2
    status = 0
    reports = []
    for d in dirs:
        try:
            r = build(d, a.out, a.march, a.budget, a.py, a.tar, a.opt)
            m = r.pop("_manifest")
            if not a.no_check:
                r["check"] = import_check(d, m)
        except FreezeError as e:
            print("freeze: %s" % e, file=sys.stderr)
            status = 1
            continue
        try:
            r["package_json"] = package_status(d, m)
        except FreezeError as e:
            r["package_json"] = str(e)
        reports.append(r)
        if not a.json:
            print_report(r)
            if "check" in r:
                print_check(r["check"])
            print_package(r, d)
        if "check" in r and not r["check"]["ok"]:
            status = 1
        if a.strict and r["over_budget"]:
            print("freeze: %s: ipa_core is %d bytes of .mpy, over the %d-byte budget by %d "
                  "(--strict)" % (r["board"], r["ipa_core_total"], r["budget"],
                                  r["over_budget"]), file=sys.stderr)
            status = 1
    if a.json:
        print(json.dumps(reports, indent=1))
    if a.write_docs and reports:
        write_docs(reports, a.march)
    return status


def write_packages(dirs, github=None):
    status = 0
    for d in dirs:
        try:
            path, pkg = write_package(d, github)
        except FreezeError as e:
            print("freeze: %s" % e, file=sys.stderr)
            status = 1
            continue
        print("wrote %s: %d files, version %s" % (os.path.relpath(path, ROOT), len(pkg["urls"]),
                                                   pkg["version"]))
    return status


def print_package(r, board_dir, out=None):
    w = (out or sys.stdout).write
    if r["package_json"] is None:
        w("  package.json: the manifest's files, for `mpremote mip install`\n")
    else:
        w("  package.json OUT OF DATE: %s (python3 tools/freeze.py --write-packages %s)\n"
          % (r["package_json"], os.path.relpath(board_dir, ROOT)))


def write_docs(reports, march=None):
    """The 'Frozen bundles' section of docs/bench.md: per board the ipa_core .mpy total at
    -O0 and -O3 against the budget, the glue, the largest modules."""
    import tempfile

    import benchdoc

    rows = []
    for r in reports:
        with tempfile.TemporaryDirectory() as tmp:
            o3 = build(os.path.join(ROOT, "boards", r["board"]), tmp, march, r["budget"], opt=3)
        core = [x for x in r["modules"] if x["path"].startswith(CORE_PACKAGE + "/")]
        top = sorted(core, key=lambda x: -x["size"])[:4]
        rows.append("| %s | %d | %d | %+d | %d | %d | %s |" % (
            r["board"], len(core), r["ipa_core_total"], r["ipa_core_total"] - r["budget"],
            o3["ipa_core_total"], r["glue_total"],
            ", ".join("%s %d" % (x["module"].split(".")[-1], x["size"]) for x in top)))
    text = """## Frozen bundles

`python3 tools/freeze.py --all --write-docs` (`make test` runs `tools/freeze.py --all`, which
also import-checks every bundle under MicroPython). mpy-cross %s, bytecode .mpy (format 6).
The issue-8 budget is %d bytes of ipa_core .mpy per board.

Measured on: %s.

| board | ipa_core modules | ipa_core .mpy | vs budget | with -O3 | board glue | largest ipa_core modules |
|---|--:|--:|--:|--:|--:|---|
%s

"with -O3": `tools/freeze.py -O3` (no asserts, no line numbers in tracebacks). The .mpy
total is not what freezing costs in flash: frozen code keeps its strings as objects, its
functions as structures with pointers and its names in the firmware's qstr pool; the
"Frozen firmware" section has that cost measured from real firmware builds.
""" % (mpy_cross_version(), reports[0]["budget"], benchdoc.machine(), "\n".join(rows))
    benchdoc.write_section(text, "## Frozen bundles")


def mpy_cross_version():
    r = subprocess.run(mpy_size.mpy_cross() + ["--version"], capture_output=True, text=True)
    return (r.stdout or r.stderr).strip().split(";")[0] or "?"


if __name__ == "__main__":
    sys.exit(main())
