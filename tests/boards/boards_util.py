"""Helpers for tests/boards (MicroPython-clean): scratch folders, loading a board's board.py,
and stand-ins for a board's hardware."""

import sys

try:
    import os
except ImportError:  # MicroPython without weak links (QuecPython 1.13)
    import uos as os

_n = [0]
_base = [None]  # CPython: the folder scratch() makes its folders in (conftest: the test's tmp_path)


def boards_root():
    """The boards/ folder: <repo>/boards on CPython, /boards under tools/mp_test.py."""
    return __file__.rsplit("/", 3)[0] + "/boards"


def scratch():
    """A new empty folder (under the test's tmp_path on CPython, so pytest cleans it; a fresh
    /scratch_<n> beside /lib on MicroPython)."""
    try:
        import tempfile
    except ImportError:
        tempfile = None
    if tempfile is not None:
        return tempfile.mkdtemp(prefix="scratch_", dir=_base[0])
    top = __file__.rsplit("/", 3)[0]  # the root of the files ("" under tools/mp_test.py)
    _n[0] += 1
    path = top + "/scratch_%d" % _n[0]
    while _exists(path):
        _n[0] += 1
        path = top + "/scratch_%d" % _n[0]
    os.mkdir(path)
    return path


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def exists(path):
    return _exists(path)


def listdir(path):
    if not hasattr(os, "listdir"):  # MicroPython before 1.15: ilistdir only
        return sorted(e[0] for e in os.ilistdir(path) if e[0] not in (".", ".."))
    return sorted(os.listdir(path))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def load_board(name):
    """boards/<name>/board.py as a fresh module (every board's module is called `board`)."""
    folder = boards_root() + "/" + name
    sys.modules.pop("board", None)
    sys.path.insert(0, folder)
    try:
        mod = __import__("board")
    finally:
        sys.path.remove(folder)
        sys.modules.pop("board", None)
    return mod


class FakePin:
    """machine.Pin stand-in that records every level it was set to."""

    OUT = 1
    IN = 0

    def __init__(self, pin_id, mode=None, value=None, log=None):
        self.id = pin_id
        self.levels = [] if value is None else [value]
        self.log = log

    def value(self, v=None):
        if v is None:
            return self.levels[-1] if self.levels else 0
        self.levels.append(v)
        if self.log is not None:
            self.log.append(("pin", self.id, v))


class FakeI2C:
    """An I2C bus with one device: registers in a dict (readfrom_mem / writeto_mem)."""

    def __init__(self, addr, regs=None):
        self.addr = addr
        self.regs = regs if regs is not None else {}
        self.writes = []

    def readfrom_mem(self, addr, reg, n):
        assert addr == self.addr, "I2C read from 0x%02X, the device is at 0x%02X" % (addr, self.addr)
        return bytes(self.regs.get(reg + i, 0) for i in range(n))

    def writeto_mem(self, addr, reg, data):
        assert addr == self.addr, "I2C write to 0x%02X, the device is at 0x%02X" % (addr, self.addr)
        for i in range(len(data)):
            self.regs[reg + i] = data[i]
        self.writes.append((reg, bytes(data)))


class FakeMachine:
    """The parts of `machine` board.py uses, recording pin levels in .events."""

    PWRON_RESET = 1
    WDT_RESET = 3

    def __init__(self, cause=1, i2c=None):
        self.cause = cause
        self.events = []
        self.pins = {}
        self.i2c = i2c
        machine = self

        class Pin(FakePin):
            def __init__(self, pin_id, mode=None, value=None):
                FakePin.__init__(self, pin_id, mode, value, machine.events)
                machine.pins[pin_id] = self

        self.Pin = Pin

    def reset_cause(self):
        return self.cause

    def I2C(self, *args, **kw):
        return self.i2c


class Clock:
    """Fake milliseconds: sleep_ms advances it; every call of the clock adds `tick` ms."""

    def __init__(self, tick=0):
        self.t = 0
        self.tick = tick
        self.sleeps = []

    def __call__(self):
        self.t += self.tick
        return self.t

    def sleep_ms(self, ms):
        self.sleeps.append(ms)
        self.t += ms
