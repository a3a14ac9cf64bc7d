"""machine.UART as the byte stream of ipa_core.at.AtEngine, and a ticks-based clock.

The AtEngine stream contract (ipa_core/at.py):
    read(n)  -> up to n bytes; b"" when nothing came within the UART's own
                short timeout (20-50 ms: set it when opening the UART)
    write(b) -> bytes written (or None)
    any()    -> bytes waiting, without blocking

machine.UART.read() answers None on a timeout; UartStream turns that into
b"". Every read also calls `idle` (a watchdog feed): the AT engine polls
the UART all through a long wait (a STORE DATA can take two minutes, an
HTTP request one), so the watchdog is fed for exactly as long as the engine
is waiting within its own bounded timeouts - and not when it hangs anywhere
else.

clock_ms() is a millisecond clock that does not wrap: time.ticks_ms() wraps
(every 2^30 ms on most ports) and ipa_core.ipa and AtEngine subtract the
values they get from a clock_ms they are given. It must be called at least
once every 2^28 ms (3 days; the run loop does so every cycle).
"""

from ipa_core.compat import time as _time

if hasattr(_time, "ticks_ms"):  # MicroPython (utime on QuecPython 1.13)
    _sleep_ms = _time.sleep_ms
    ticks_diff = _time.ticks_diff
    ticks_ms = _time.ticks_ms
else:  # CPython (tests)
    def ticks_ms():
        return int(_time.monotonic() * 1000) & 0x3FFFFFFF

    def ticks_diff(a, b):
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d & 0x20000000 else d

    def _sleep_ms(ms):
        _time.sleep(ms / 1000.0)

UART_TIMEOUT_MS = 20  # one read's wait: the engine's polling granularity
# The port's receive ring buffer (on the heap): one HTTP body read (at most 2048 bytes, the
# SIM7080's AT+SHREAD; 1024 on the SIMCom stack) plus its +SHREAD/OK lines; an APDU answer
# as hex is ~520 bytes.
UART_RXBUF = 2560


def sleep_ms(ms):
    """time.sleep_ms (CPython: time.sleep)."""
    _sleep_ms(ms)


class TicksClock:
    """Callable -> milliseconds since creation, from ticks_ms/ticks_diff, never wrapping.

    `ticks` / `diff` replace time.ticks_ms / time.ticks_diff (tests).
    """

    def __init__(self, ticks=None, diff=None):
        self._ticks = ticks or ticks_ms
        self._diff = diff or ticks_diff
        self._last = self._ticks()
        self._ms = 0

    def __call__(self):
        now = self._ticks()
        d = self._diff(now, self._last)
        self._last = now
        if d > 0:
            self._ms += d
        return self._ms


clock_ms = TicksClock()


class UartStream:
    """AtEngine stream over a machine.UART (or anything with read/write/any).

    uart   an open UART whose read() waits at most a few tens of ms
    idle   optional callable run before every read (feed a watchdog here)
    """

    def __init__(self, uart, idle=None):
        self.uart = uart
        self.idle = idle
        self.reads = 0
        self.written = 0

    def read(self, n):
        if self.idle is not None:
            self.idle()
        self.reads += 1
        # Ask only for what is waiting (one byte, with the UART timeout, when nothing is):
        # a read for more than arrived returns only timeout_char after the last byte, which
        # cost ~40 ms per AT answer (a 40 KB download: 12 s instead of 2 s).
        k = self.uart.any()
        data = self.uart.read(min(n, k) if k else 1)
        return data if data else b""

    def write(self, data):
        n = self.uart.write(data)
        if n is None:  # some ports answer None when everything went out
            n = len(data)
        self.written += n
        return n

    def any(self):
        return self.uart.any()

    def close(self):
        deinit = getattr(self.uart, "deinit", None)
        if deinit is not None:
            deinit()


def open_uart(uart_id, baudrate, tx, rx, rxbuf=UART_RXBUF, timeout_ms=UART_TIMEOUT_MS):
    """machine.UART on pins tx/rx (GPIO numbers) set up for AtEngine: 8N1, a short read
    timeout, a receive buffer that holds a whole AT answer."""
    from machine import UART, Pin

    return UART(uart_id, baudrate=baudrate, bits=8, parity=None, stop=1, tx=Pin(tx), rx=Pin(rx),
                rxbuf=rxbuf, timeout=timeout_ms, timeout_char=timeout_ms)
