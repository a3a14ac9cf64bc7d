"""Millisecond clocks for the bounded waits of the stream engines (at, http, coap).

`clock(clock_ms)` -> (now, diff): without a clock of the caller's, MicroPython's
wrapping `time.ticks_ms` / `time.ticks_diff` (on CPython: monotonic milliseconds);
with one (tests, a board's non-wrapping clock), that clock and plain subtraction.
"""

from ipa_core.compat import time as _time

if hasattr(_time, "ticks_ms"):  # MicroPython: wrapping millisecond ticks
    _ticks_diff = _time.ticks_diff
    _ticks_ms = _time.ticks_ms
else:  # CPython
    def _ticks_ms():
        return int(_time.monotonic() * 1000)

    def _ticks_diff(a, b):
        return a - b


def _sub(a, b):
    return a - b


def clock(clock_ms=None):
    """(now() -> ms, diff(later, earlier) -> ms) for `clock_ms` or the platform's ticks."""
    if clock_ms is None:
        return _ticks_ms, _ticks_diff
    return clock_ms, _sub
