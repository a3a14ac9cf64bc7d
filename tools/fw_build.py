"""Builds for the frozen-firmware bench (tools/mp_firmware.py): mpy-cross, and MicroPython's
unix port with a board's bundle frozen in (32-bit: MICROPY_FORCE_32BIT=1), from a MicroPython
v1.27.0 source tree the user gives; the flash a bundle costs, from the binaries' sections.
Nothing is written into the source tree but mpy-cross's own build; the firmware builds go to
build/mp_firmware/.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
FIRMWARE = os.path.join(TOOLS, "firmware")
for _p in (ROOT, TOOLS):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import freeze  # noqa: E402
import mp_cycle  # noqa: E402 - board_bundle: a manifest with another modem HTTP stack

BUILD = os.path.join(ROOT, "build", "mp_firmware")
BOARDS = ("rp2040_sim7600", "esp32s3_sim7080g", "quecpython_ec200u")
MP_TAG = "v1.27.0"
MAKE_VARS = ["MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0", "MICROPY_PY_SSL=0",
             "MICROPY_USE_READLINE=0", "MICROPY_PY_THREAD=0"]
BUILD_TIMEOUT = 900
FLASH_SECTIONS = (".text", ".rodata", ".data.rel.ro", ".data")


class BuildError(Exception):
    pass


def _run(cmd, log, cwd=None, timeout=BUILD_TIMEOUT):
    with open(log, "w") as f:
        r = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    if r.returncode != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise BuildError("%s failed (exit %d); log %s:\n%s" % (" ".join(cmd[:3]), r.returncode,
                                                              log, tail))


def check_source(src):
    """A usable MicroPython v1.27.0 tree, or a BuildError saying how to get one."""
    how = ("get one with: git clone --branch %s https://github.com/micropython/micropython "
           "DIR && git -C DIR submodule update --init lib/micropython-lib" % MP_TAG)
    if not src or not os.path.isfile(os.path.join(src, "py", "mpconfig.h")):
        raise BuildError("--micropython-src %r is not a MicroPython source tree; %s" % (src, how))
    with open(os.path.join(src, "py", "mpconfig.h")) as f:
        text = f.read()
    ver = tuple(int(x) for x in re.findall(r"#define MICROPY_VERSION_(?:MAJOR|MINOR|MICRO) (\d+)",
                                           text))
    if ver[:2] != (1, 27):
        print("mp_firmware: warning: %s is MicroPython %s, the bench is made for %s"
              % (src, ".".join(map(str, ver)), MP_TAG), file=sys.stderr)
    if not os.path.isfile(os.path.join(src, "lib", "micropython-lib", "README.md")):
        raise BuildError("%s/lib/micropython-lib is empty (the frozen build needs it); %s"
                         % (src, how))
    return ".".join(map(str, ver))


def check_compiler(bits, work):
    """gcc can build and link -m32 programs (gcc-multilib), else a BuildError."""
    if bits != 32:
        return
    c = os.path.join(work, "m32.c")
    with open(c, "w") as f:
        f.write("int main(void) { return 0; }\n")
    r = subprocess.run(["gcc", "-m32", "-o", c[:-2], c], capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError("gcc cannot build 32-bit programs (%s); install the multilib "
                         "compiler: sudo apt-get install gcc-multilib"
                         % (r.stderr.strip().splitlines() or ["?"])[-1])


class Firmware:
    """One unix-port build: `binary`, its `sections` ({name: bytes}), `names` (the frozen
    modules of the board's bundle, import order), `bundle` (tools/freeze report or None)."""

    def __init__(self, binary, sections, board=None, stack=None, bundle=None, names=()):
        self.binary = binary
        self.sections = sections
        self.board = board
        self.stack = stack
        self.bundle = bundle
        self.names = list(names)


def sections(binary):
    out = subprocess.run(["size", "-A", binary], capture_output=True, text=True, check=True)
    sec = {}
    for ln in out.stdout.splitlines():
        parts = ln.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = int(parts[1])
    return sec


class Builder:
    """Builds mpy-cross once and the unix port per (bits, board, stack) into build/."""

    def __init__(self, src, verbose=False, opt=0):
        self.opt = opt  # mpy-cross -O level for the frozen modules (0: as a board builds)
        self.src = os.path.abspath(src)
        self.verbose = verbose
        self.version = check_source(self.src)
        os.makedirs(BUILD, exist_ok=True)
        self.port_dir = os.path.join(BUILD, "port")  # $(PORT_DIR) for board manifests
        os.makedirs(os.path.join(self.port_dir, "boards"), exist_ok=True)
        with open(os.path.join(self.port_dir, "boards", "manifest.py"), "w") as f:
            f.write("# The port's own frozen modules are left out of the bench's build.\n")
        self.cross_done = False
        self.probes = {}

    def _say(self, msg):
        print("mp_firmware: " + msg, flush=True)

    def mpy_cross(self):
        if not self.cross_done:
            self._say("building mpy-cross in %s/mpy-cross" % self.src)
            _run(["make", "-C", os.path.join(self.src, "mpy-cross"), "-j%d" % jobs()],
                 os.path.join(BUILD, "mpy-cross.log"))
            self.cross_done = True

    def probe(self, bits):
        if bits not in self.probes:
            check_compiler(bits, BUILD)
            obj = os.path.join(BUILD, "alloc_probe%d.o" % bits)
            src = os.path.join(FIRMWARE, "alloc_probe.c")
            if not os.path.exists(obj) or os.path.getmtime(src) > os.path.getmtime(obj):
                cmd = ["gcc", "-O2", "-c", src, "-o", obj]
                if bits == 32:
                    cmd.insert(1, "-m32")
                _run(cmd, obj + ".log")
            self.probes[bits] = obj
        return self.probes[bits]

    def build(self, bits, board_dir=None, stack=None):
        """-> Firmware. board_dir None: the base build (the bench's modules only)."""
        self.mpy_cross()
        name = "%d-%s%s" % (bits, "base" if board_dir is None else
                            "%s-%s" % (os.path.basename(board_dir), stack),
                            "-O%d" % self.opt if self.opt else "")
        out = os.path.join(BUILD, name)
        os.makedirs(out, exist_ok=True)
        bundle, names, include = None, [], ""
        if board_dir is not None:
            bundle, manifest = board_manifest(board_dir, stack, os.path.join(out, "bundle"))
            names = [m["module"] for m in bundle["modules"]]
            include = "include(%r)\n" % manifest
        manifest = os.path.join(out, "manifest.py")
        with open(manifest, "w") as f:
            f.write("# tools/mp_firmware.py: what this bench firmware freezes\n" + include +
                    "module('machine.py', base_path=%r)\n" % FIRMWARE +
                    "module('fw_driver.py', base_path=%r)\n" % FIRMWARE)
        probe = self.probe(bits)
        cmd = ["make", "-C", os.path.join(self.src, "ports", "unix"), "-j%d" % jobs(),
               "BUILD=" + os.path.join(out, "build"), "PROG=micropython",
               "FROZEN_MANIFEST=" + manifest, "MICROPY_MANIFEST_PORT_DIR=" + self.port_dir,
               "LDFLAGS_EXTRA=-Wl,--wrap=gc_alloc -Wl,--wrap=gc_realloc "
               "-Wl,--wrap=gc_collect_start " + probe] + MAKE_VARS
        if bits == 32:
            cmd.append("MICROPY_FORCE_32BIT=1")
        if self.opt:
            cmd.append("MPY_CROSS_FLAGS=-O%d" % self.opt)
        self._say("building %s (%d-bit unix port%s)" % (
            name, bits, "" if board_dir is None else ", %d modules frozen" % len(names)))
        binary = os.path.join(out, "build", "micropython")
        if os.path.exists(binary) and os.path.getmtime(probe) > os.path.getmtime(binary):
            os.remove(binary)  # relinked: make does not see a new probe object in LDFLAGS
        _run(cmd, os.path.join(out, "make.log"))
        return Firmware(binary, sections(binary), board_dir and os.path.basename(board_dir),
                        stack, bundle, names)


def jobs():
    return max(1, os.cpu_count() or 1)


def board_manifest(board_dir, stack, out):
    """(tools/freeze report, path of the manifest to freeze) for the board with its modem
    HTTP stack set to `stack` (mp_cycle.board_bundle makes a copy when it is not the
    manifest's own)."""
    report = mp_cycle.board_bundle(board_dir, stack, out) if stack else \
        freeze.build(board_dir, out)
    report.pop("_manifest", None)
    copy = os.path.join(out + "-src", "boards", os.path.basename(board_dir), "manifest.py")
    return report, copy if os.path.isfile(copy) else os.path.join(board_dir, "manifest.py")


def manifest_stack(board_dir):
    """The `STACK = "..."` of a board manifest, or None (a board without an AT stack)."""
    with open(os.path.join(board_dir, "manifest.py")) as f:
        found = re.findall(r'^STACK = "(\w+)"', f.read(), re.M)
    return found[0] if found else None



# ---- flash ---------------------------------------------------------------------------------------

def flash_by_module(fw):
    """{module: bytes} of fw's frozen_content.o sections that name a module of its bundle
    (bytecode, constant objects, function structures, tables), plus "(strings)" for the
    merged string data of all modules and "(qstr pool)": where the flash goes."""
    obj = os.path.join(os.path.dirname(fw.binary), "frozen_content.o")
    out = subprocess.run(["size", "-A", obj], capture_output=True, text=True)
    names = sorted(((n.replace(".", "_"), n) for n in fw.names), key=lambda x: -len(x[0]))
    per = {}
    for ln in out.stdout.splitlines():
        parts = ln.split()
        if len(parts) != 3 or not parts[1].isdigit() or not parts[0].startswith("."):
            continue
        sec, size = parts[0], int(parts[1])
        if sec.startswith(".debug") or sec in (".text", ".data", ".bss", ".comment"):
            continue
        base = re.sub(r"^\.(rodata|data\.rel\.ro\.local|data\.rel\.ro|data)\.", "", sec)
        if base.startswith("str1") or base.startswith("str4"):
            key = "(strings)"
        elif base.startswith("mp_qstr_frozen"):
            key = "(qstr pool)"
        else:
            base = re.sub(r"^(fun_data|const_obj_table_data|const_qstr_table_data|const_obj|"
                          r"proto_fun|children|frozen_module|raw_code)_", "", base)
            key = next((n for pre, n in names if base.startswith(pre)), "(other)")
        per[key] = per.get(key, 0) + size
    return per


def flash_cost(base, fw):
    """Section growth of fw over base (bytes): what the frozen bundle costs in flash."""
    delta = {s: fw.sections.get(s, 0) - base.sections.get(s, 0) for s in FLASH_SECTIONS}
    delta["total"] = sum(delta.values())
    return delta


