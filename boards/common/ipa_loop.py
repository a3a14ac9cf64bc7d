"""The board's run loop: IPA poll cycles for ever, with back-off, a fed watchdog, and recovery.

    ipa_loop.run(ipa, time.sleep_ms, wdt.feed, reopen=board_ipa.reopen)

Each cycle is one ipa_core.ipa.Ipa.poll_once() (GetEimPackage, the package
it brings, results, notifications); the wait before the next one is
Ipa.next_poll_delay_ms(summary): the poll interval growing while the eIM is
idle, the error back-off growing while cycles fail, one second after a cycle
that did work. The loop is the host's `ipa run` (ipa_host.runner.run_loop)
for a board:

- it never dies of an IPA failure: poll_once turns every IpaError into an
  "error" summary (the procedure stays in the store and resumes next
  cycle); an OSError from a port driver (UART, socket) is handled the same
  way. Any other Exception is caught too, logged and backed off, but
  `max_unexpected` of them in a row (a bug, memory exhausted) end the loop
  by re-raising: main.py stops, the watchdog is no longer fed and resets
  the board, which is what a fresh start is for. KeyboardInterrupt (Ctrl-C
  on the REPL) always stops it.
- after a failure of the way to the card or the eIM (TransportError,
  OSError, anything unexpected) `reopen(error)` runs before the next poll:
  the board re-syncs the modem, reopens the ISD-R session and the network
  and puts them into the Ipa. A reopen that fails is retried with the same
  back-off, before any poll.
- the watchdog is fed before each cycle and all through every wait, in
  slices of `slice_ms` (keep it well under the watchdog timeout). Inside a
  cycle the board feeds it from the UART reads (uart_stream.UartStream idle).

log(str) gets one line per cycle (and per recovery), with the free heap
when gc can tell. Returns the number of cycles run (max_cycles: tests); a
cycle that only tried to reopen card and network counts as one.
"""

import sys

from ipa_core.errors import IpaError, TransportError

try:
    import gc
except ImportError:  # pragma: no cover - every MicroPython port and CPython have gc
    gc = None

SLICE_MS = 1000  # longest single sleep between watchdog feeds
MAX_UNEXPECTED = 3  # consecutive non-IpaError failures before the loop gives up (reset)


def ipa_log(log, debug=False):
    """An Ipa(log=...) callable(level, msg) writing "<level>: <msg>" lines to log(str)."""

    def note(level, msg):
        if debug or level != "debug":
            log("%s: %s" % (level, msg))

    return note


def describe(e):
    """'TypeName: message' of an exception, short enough for a console line."""
    text = str(e)
    if len(text) > 200:
        text = text[:190] + "...(%d chars)" % len(text)
    return "%s: %s" % (e.__class__.__name__, text)


def _heap():
    if gc is None:
        return ""
    gc.collect()
    free = getattr(gc, "mem_free", None)  # MicroPython only
    return "" if free is None else "; heap free %d" % free()


def _failed(ipa, e):
    """The summary of a cycle that raised e (counted like a failed poll_once)."""
    ipa.error_count += 1
    ipa.idle_count = 0
    ipa.last_error = e
    return {"error": {"type": e.__class__.__name__, "message": str(e)},
            "errorCount": ipa.error_count}


def summary_line(n, r, delay_ms):
    """One console line for cycle n's summary r."""
    if r.get("error"):
        e = r["error"]
        what = "failed (%s: %s)" % (e.get("type"), e.get("message"))
        nxt = "next try in %d s" % (delay_ms // 1000)
    elif r.get("idle"):
        what = "idle"
        nxt = "next poll in %d s" % (delay_ms // 1000)
    else:
        what = "%s: %s" % (r.get("package") or "resumed", ",".join(r.get("steps") or ()))
        nxt = "next poll in %d s" % (delay_ms // 1000)
    return "ipa: cycle %d %s; %s" % (n, what, nxt)


def wait(ms, sleep_ms, feed_watchdog, slice_ms=SLICE_MS, stop=None):
    """Sleep ms in slices of at most slice_ms, feeding the watchdog before each and at the
    end; returns False when stop() ended the wait early."""
    if slice_ms <= 0:
        raise ValueError("slice_ms %r: expected a positive number of ms" % (slice_ms,))
    left = ms
    while left > 0:
        if stop is not None and stop():
            return False
        feed_watchdog()
        step = slice_ms if left > slice_ms else left
        sleep_ms(step)
        left -= step
    feed_watchdog()
    return True


def run(ipa, sleep_ms, feed_watchdog, max_cycles=None, log=print, clock=None, reopen=None,
        slice_ms=SLICE_MS, max_unexpected=MAX_UNEXPECTED, stop=None, on_cycle=None,
        traceback=True):
    """Poll cycles until max_cycles (None: for ever) or stop() is true; see the module doc.

    ipa            an ipa_core.ipa.Ipa with its session, network and store
    sleep_ms       time.sleep_ms
    feed_watchdog  machine.WDT(...).feed (or a no-op)
    clock          callable -> ms (uart_stream.clock_ms) to log each cycle's duration
    reopen         callable(error) making card and network usable again, or None
    on_cycle       callable(summary) after each poll cycle
    traceback      print the traceback of an unexpected failure (MicroPython's
                   sys.print_exception, to the console)
    """
    if slice_ms <= 0:
        raise ValueError("slice_ms %r: expected a positive number of ms" % (slice_ms,))
    cycles = 0
    unexpected = 0  # consecutive failures that were not IpaErrors
    reopen_failures = 0
    broken = None  # the error after which card/network must be reopened
    while max_cycles is None or cycles < max_cycles:
        if stop is not None and stop():
            break
        feed_watchdog()
        cycles += 1
        if broken is not None and reopen is not None:
            try:
                reopen(broken)
                log("ipa: cycle %d reopened card and network after %s" % (cycles, describe(broken)))
                broken = None
                reopen_failures = 0
            except Exception as e:  # IpaError, OSError from a driver, anything: retried
                reopen_failures += 1
                delay = ipa.next_poll_delay_ms({"error": True, "errorCount": reopen_failures})
                log("ipa: cycle %d could not reopen card and network (%s); next try in %d s"
                    % (cycles, describe(e), delay // 1000))
                if max_cycles is not None and cycles >= max_cycles:
                    break
                if not wait(delay, sleep_ms, feed_watchdog, slice_ms, stop):
                    break
                continue
        t0 = clock() if clock is not None else None
        try:
            r = ipa.poll_once()
            unexpected = 0
            if r.get("error") and isinstance(ipa.last_error, TransportError):
                broken = ipa.last_error
        except (IpaError, OSError) as e:
            # poll_once reports IpaErrors in its summary; one that escapes anyway, or an
            # OSError from a port driver (UART, socket), is a failed cycle like any other.
            unexpected = 0
            broken = e
            r = _failed(ipa, e)
        except Exception as e:  # MemoryError, a bug
            unexpected += 1
            broken = e
            r = _failed(ipa, e)
            log("ipa: cycle %d raised %s (%d in a row)" % (cycles, describe(e), unexpected))
            pe = getattr(sys, "print_exception", None)  # MicroPython's traceback printer
            if traceback and pe is not None:
                pe(e)
            if unexpected >= max_unexpected:
                log("ipa: %d unexpected failures in a row: stopping so the board restarts"
                    % unexpected)
                raise
        delay = ipa.next_poll_delay_ms(r)
        line = summary_line(cycles, r, delay)
        if t0 is not None:
            line += " (%d ms)" % (clock() - t0)
        log(line + _heap())
        if on_cycle is not None:
            on_cycle(r)
        if max_cycles is not None and cycles >= max_cycles:
            break
        if not wait(delay, sleep_ms, feed_watchdog, slice_ms, stop):
            break
    return cycles
