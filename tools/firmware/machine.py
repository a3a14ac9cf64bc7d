"""`machine` for the frozen-firmware bench (tools/mp_firmware.py): frozen into the bench's
unix MicroPython, where it shadows the unix port's own `machine` (an extensible built-in, so
a frozen module of that name comes first). It stands in for the board's port as closely as
the heap is concerned:

    UART  the modem's pty (a non-blocking file descriptor the bench hands over, DEVICE["fd"])
          behind a receive ring buffer of `rxbuf` bytes and a transmit buffer of `txbuf`
          bytes, both allocated on the GC heap when the UART is made, as the rp2 port does;
          read(n) waits up to `timeout` ms for a first byte, then takes bytes until n or
          `timeout_char` ms of silence (None when nothing came); any() is the bytes
          waiting. The only heap a read takes is its answer (and a small memoryview).
    Pin   levels written to stdout as "@@pin <id> <level>" lines: the bench drives the
          simulated modem's PWRKEY from them.
    WDT   feeds counted, the longest gap kept, gaps over the timeout counted as `late`;
          the RP2040's range (1..8388 ms) is enforced as its port does.

MicroPython code (no f-strings, no typing).
"""

import select
from time import sleep_ms, ticks_diff, ticks_ms

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
WDT_MAX_MS = 8388
MAX_WRITE_WAIT_MS = 5000  # a pty that takes no byte for this long: the modem is gone

DEVICE = {"fd": None}  # set by the driver before the board opens its UART
UART_STATS = {"opened": 0, "reads": 0, "empty": 0, "writes": 0, "any": 0, "rx": 0, "tx": 0,
              "rxbuf": 0, "overflow": 0}
WDT_STATS = {"created": 0, "timeout": None, "feeds": 0, "max_gap": 0, "late": 0}
_wdt_last = [0]


def reset_cause():
    return PWRON_RESET


def reset():
    raise SystemExit("machine.reset() (stand-in)")


def unique_id():
    return b"\xe6\x61\x00\x00\x00\x00\x00\x01"


def _pin_id(p):
    return getattr(p, "id", p)


class Pin:
    """machine.Pin: levels told to the bench on stdout."""

    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, pin_id, mode=-1, pull=-1, value=None):
        self.id = pin_id
        self.level = 0
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = 1 if v else 0
        print("@@pin", self.id, self.level)
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __call__(self, v=None):
        return self.value(v)


class UART:
    """machine.UART on the bench's pty (see the module docstring)."""

    def __init__(self, uart_id, baudrate=115200, bits=8, parity=None, stop=1, tx=None, rx=None,
                 txbuf=256, rxbuf=256, timeout=0, timeout_char=0, **kw):
        if DEVICE["fd"] is None:
            raise OSError(19, "UART %r: no device (the bench sets machine.DEVICE)" % (uart_id,))
        self.timeout = timeout
        self.timeout_char = timeout_char
        self._f = open(DEVICE["fd"], "r+b")
        self._poll = select.poll()
        self._poll.register(self._f, select.POLLIN)
        self._ring = bytearray(rxbuf)  # the port's receive buffer, on the GC heap
        self._mv = memoryview(self._ring)
        self._txbuf = bytearray(txbuf)  # the port's transmit buffer (held, as the port does)
        self._head = 0
        self._count = 0
        UART_STATS["opened"] += 1
        UART_STATS["rxbuf"] = rxbuf

    def _fill(self, wait_ms):
        """Bytes waiting on the pty into the ring (up to wait_ms for some) -> bytes added."""
        size = len(self._ring)
        if self._count >= size:
            UART_STATS["overflow"] += 1  # the port drops bytes here; the bench never waits
            return 0
        ready = False
        for _ in self._poll.ipoll(wait_ms):  # ipoll: no list allocated per wait
            ready = True
        if not ready:
            return 0
        tail = (self._head + self._count) % size
        end = size if tail >= self._head else self._head  # the free run after the tail
        got = self._f.readinto(self._mv[tail:end])
        if not got:
            return 0
        self._count += got
        return got

    def any(self):
        UART_STATS["any"] += 1
        self._fill(0)
        return self._count

    def _take(self, n):
        size = len(self._ring)
        n = min(n, self._count)
        first = min(n, size - self._head)
        out = bytes(self._mv[self._head:self._head + first])
        if first < n:
            out += bytes(self._mv[0:n - first])
        self._head = (self._head + n) % size
        self._count -= n
        if self._count == 0:
            self._head = 0
        return out

    def read(self, n=-1):
        if n is None or n < 0:
            n = len(self._ring)
        if n == 0:
            return b""
        UART_STATS["reads"] += 1
        if not self._count:
            deadline = ticks_ms()
            while not self._count:
                left = self.timeout - ticks_diff(ticks_ms(), deadline)
                if left <= 0 or not self._fill(left):
                    break
        if not self._count:
            UART_STATS["empty"] += 1
            return None
        while self._count < n and self._fill(self.timeout_char):
            pass
        data = self._take(n)
        UART_STATS["rx"] += len(data)
        return data

    def write(self, buf):
        view = memoryview(buf)
        done = 0
        t0 = ticks_ms()
        while done < len(view):
            k = self._f.write(view[done:])
            if k:
                done += k
                continue
            if ticks_diff(ticks_ms(), t0) > MAX_WRITE_WAIT_MS:
                raise OSError(110, "UART write: the modem took no byte for %d ms"
                              % MAX_WRITE_WAIT_MS)
            sleep_ms(1)
        UART_STATS["writes"] += 1
        UART_STATS["tx"] += done
        return done

    def deinit(self):
        self._poll.unregister(self._f)


class WDT:
    """machine.WDT (see the module docstring)."""

    def __init__(self, id=0, timeout=5000):
        if not 1 <= timeout <= WDT_MAX_MS:
            raise ValueError("WDT timeout %d ms: the RP2040 allows 1..%d" % (timeout, WDT_MAX_MS))
        WDT_STATS["created"] += 1
        WDT_STATS["timeout"] = timeout
        _wdt_last[0] = ticks_ms()

    def feed(self):
        now = ticks_ms()
        gap = ticks_diff(now, _wdt_last[0])
        if gap > WDT_STATS["max_gap"]:
            WDT_STATS["max_gap"] = gap
        if gap > WDT_STATS["timeout"]:
            WDT_STATS["late"] += 1
        WDT_STATS["feeds"] += 1
        _wdt_last[0] = now
