"""A scripted modem on a byte stream, for core tests of ipa_core.at / ipa_core.at_card.

MicroPython-clean. The peer implements the stream contract of ipa_core.at
(`read(n)`, `write(data)`) and a fake millisecond clock, so timeouts are
tested without sleeping: every read that finds nothing advances the clock
by `poll_ms`, like a UART read that waits its own timeout.

    clock = FakeClock()
    modem = FakeModem([
        ("ATE0", "\\r\\nOK\\r\\n"),
        ('AT+CSIM=10,"0070000001"', ['\\r\\n+CSIM: 6,"019000"\\r\\n', "\\r\\nOK\\r\\n"]),
        ("AT+CGMM", None),                      # never answers
    ], clock=clock, chunks=(1, 3, 7))
    engine = AtEngine(modem, clock_ms=clock)
    ...
    modem.done()                                # every step was used

Script steps are (expected, reply):
  expected  str: a command line the engine must write (compared without the
            CR); bytes: raw bytes it must write (a payload after a prompt)
  reply     str or bytes sent back; a list of parts, where Silence(ms)
            holds back the following parts for ms of fake time; None: the
            modem stays silent
A mismatch raises AssertionError naming the step, what was expected and
what was written. `inject(data)` queues unsolicited bytes at once.
`any()` says how many bytes can be read before the next Silence (like
machine.UART.any()); FakeModem(..., peek=False) hides it, as a stream that
cannot tell.
"""

from ipa_core.compat import find


class FakeClock:
    """Milliseconds; advanced by FakeModem reads that find nothing."""

    def __init__(self, t=0):
        self.t = t

    def __call__(self):
        return self.t


class Silence:
    """A reply part: nothing arrives for `ms` milliseconds of fake time."""

    def __init__(self, ms):
        self.ms = ms


def _b(x):
    if isinstance(x, str):
        return x.encode()
    return bytes(x)


class FakeModem:
    """Stream peer that checks every command line written and answers from a script.

    echo      the modem echoes each line (ATE0 / ATE1 switch it, as on a modem)
    chunks    sizes cycled for successive reads (odd splits of every answer)
    poll_ms   fake time that passes on a read that finds nothing
    read_ms   fake time that passes on a read that returns bytes (a busy line)
    max_idle  consecutive empty reads before the test fails (a runaway loop)
    peek      offer any() (bytes waiting); False: the stream cannot tell
    """

    def __init__(self, script, clock=None, echo=False, chunks=None, poll_ms=20, read_ms=0,
                 max_idle=100000, name="FakeModem", peek=True):
        self.script = list(script)
        self.clock = clock if clock is not None else FakeClock()
        self.echo = echo
        self.chunks = chunks
        self.poll_ms = poll_ms
        self.read_ms = read_ms
        self.max_idle = max_idle
        self.name = name
        self.pos = 0
        self.lines = []  # command lines written, in order
        self.raw = []  # raw payloads written, in order
        self.written = bytearray()
        self._in = bytearray()
        self._out = []  # bytes and Silence parts waiting to be read
        self._nchunk = 0
        self._idle = 0
        self.max_pending = 0  # most bytes ever waiting unread (for bound checks)
        self.peeks = 0  # any() calls
        if not peek:
            self.any = None

    # -- script side ------------------------------------------------------------

    def inject(self, data):
        """Queue unsolicited bytes (URCs, garbage) to be read next."""
        self._queue(data)

    def _queue(self, reply):
        if reply is None:
            return
        if not isinstance(reply, list):
            reply = [reply]
        for part in reply:
            if isinstance(part, Silence):
                self._out.append(Silence(part.ms))
            else:
                self._out.append(_b(part))

    def done(self):
        """Assert every scripted step was used."""
        if self.pos != len(self.script):
            raise AssertionError("%s: %d of %d steps done; next expected %r" % (
                self.name, self.pos, len(self.script), self.script[self.pos][0]))

    # -- stream side ------------------------------------------------------------

    def write(self, data):
        data = bytes(data)
        self.written += data
        self._in += data
        self._consume()
        return len(data)

    def _consume(self):
        while self._in:
            if self.pos >= len(self.script):
                raise AssertionError("%s: unexpected write %r after the %d scripted steps"
                                     % (self.name, bytes(self._in[:80]), len(self.script)))
            exp, reply = self.script[self.pos]
            if isinstance(exp, (bytes, bytearray)):
                if len(self._in) < len(exp):
                    return
                got = bytes(self._in[:len(exp)])
                self._in = self._in[len(exp):]
                if got != exp:
                    raise AssertionError("%s: step %d: expected raw %r, written %r"
                                         % (self.name, self.pos + 1, exp, got))
                self.raw.append(got)
            else:
                i = find(self._in, b"\r")
                if i < 0:
                    return
                got = bytes(self._in[:i]).decode()
                j = i + 1
                if j < len(self._in) and self._in[j] == 10:
                    j += 1
                self._in = self._in[j:]
                self.lines.append(got)
                if self.echo:
                    self._out.append(_b(got + "\r"))
                if got != exp:
                    raise AssertionError("%s: step %d: expected %r, written %r"
                                         % (self.name, self.pos + 1, exp, got))
                u = got.upper()
                if u == "ATE0":
                    self.echo = False
                elif u == "ATE1":
                    self.echo = True
            self.pos += 1
            self._queue(reply)

    def _size(self, n):
        if not self.chunks:
            return n
        k = self.chunks[self._nchunk % len(self.chunks)]
        self._nchunk += 1
        return min(n, k)

    def any(self):
        """Bytes readable now: those queued before the first pending Silence."""
        self.peeks += 1
        n = 0
        for p in self._out:
            if isinstance(p, Silence):
                if p.ms > 0:
                    break
                continue
            n += len(p)
        return n

    def read(self, n):
        pending = 0
        for p in self._out:
            if not isinstance(p, Silence):
                pending += len(p)
        if pending > self.max_pending:
            self.max_pending = pending
        while self._out:
            part = self._out[0]
            if isinstance(part, Silence):
                if part.ms <= 0:
                    self._out.pop(0)
                    continue
                part.ms -= self.poll_ms
                break
            if not part:
                self._out.pop(0)
                continue
            k = self._size(n)
            out = part[:k]
            if k >= len(part):
                self._out.pop(0)
            else:
                self._out[0] = part[k:]
            self._idle = 0
            self.clock.t += self.read_ms
            return out
        self.clock.t += self.poll_ms
        self._idle += 1
        if self._idle > self.max_idle:
            raise AssertionError("%s: %d reads in a row found nothing: the reader does not give up"
                                 % (self.name, self._idle))
        return b""
