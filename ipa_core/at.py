"""AT command engine over a byte stream (ITU-T V.250, 3GPP TS 27.007 / 27.005).

The engine turns `command("AT+CSIM=...")` into bytes on a stream and the
modem's answer back into lines. It knows the field quirks listed in the
project's modem fact sheet: echo left on, unsolicited result codes (URCs)
interleaved with answers, `+CME ERROR: <n>` instead of `ERROR` (a reader
waiting only for OK/ERROR hangs), stray lines and garbage bytes after a
power-up or a baud-rate mismatch, and modems that simply stop answering.
It does no I/O of its own beyond the stream it is given.

Stream contract (pyserial with `timeout` set, MicroPython machine.UART with
`timeout`, a pty, a test peer):
    stream.read(n)  -> up to n bytes; b"" or None when nothing arrived within
                       the stream's own short poll timeout (20-50 ms)
    stream.write(b) -> bytes written (or None when all were written)
    stream.any()    -> optional: number of bytes waiting, without blocking
                       (machine.UART.any(); SerialStream.any()). With it, lines
                       that came before a command are read before the command
                       is written, so they are never taken for its answer.

Modem restarts. A modem that reboots in the middle of a command never
answers it: every logical channel, setting and data session is gone, and a
reader waiting for the final result would wait the whole (long) timeout.
Boot indications (BOOT_LINES: RDY, ^SYSSTART, +SYSSTART, *ATREADY: 1,
+CPIN: READY, +CFUN: 1; is_boot()) are therefore watched. The rule:
  - before the first final result (OK/ERROR) this engine ever received, they
    are start-up noise: the port was opened while the modem was booting
    (some send RDY before their first answer), and the rest of that boot
    (+CPIN: READY seconds later) follows within restart_grace_ms;
  - a line starting with the command's own name ("+CPIN: READY" for
    AT+CPIN?, "+CFUN: 1" for AT+CFUN?) or the command's prefix is its answer;
  - within restart_grace_ms after a command that restarts the modem or the
    SIM (AT+CFUN=, ATZ, AT&F, AT+CPIN=<pin>, AT+CRESET, ...; or
    command(..., restarts=True)), or after a restart seen already, they belong
    to that restart;
  - otherwise it is a restart. Read while a command waits (after it was
    written) -> ModemRestarted naming the command, at once (sync() only
    counts it: it is what one calls after a restart). Read before the
    command was written (leftovers handed to the URC path by settle()) ->
    the command goes ahead; the restart is only counted (.restarts,
    .restart_line) for the layer that owns state on the modem
    (ipa_core.at_card refuses to send an APDU into channels that are gone).
  Without stream.any(), a line that arrived just before a command is read
  after the command was written and counts as arriving during it.

Every wait is bounded by a per-command timeout measured with `clock_ms()`
(time.ticks_ms/ticks_diff on MicroPython, time.monotonic on CPython), every
line by `max_line` bytes and every answer by `max_info_lines` lines.
"""

from ipa_core.clock import clock
from ipa_core.compat import find
from ipa_core.errors import ProtocolError, TimeoutError_, TransportError, Names, is_digits


# TS 27.007 9.2 (mobile termination errors). Verbose forms map back to numbers.
CME_ERRORS = Names(((0, "phone failure"), (1, "no connection to phone"),
                    (2, "phone-adaptor link reserved"), (3, "operation not allowed"),
                    (4, "operation not supported"), (5, "PH-SIM PIN required"),
                    (6, "PH-FSIM PIN required"), (7, "PH-FSIM PUK required"),
                    (10, "SIM not inserted"), (11, "SIM PIN required"),
                    (12, "SIM PUK required"), (13, "SIM failure"), (14, "SIM busy"),
                    (15, "SIM wrong"), (16, "incorrect password"), (17, "SIM PIN2 required"),
                    (18, "SIM PUK2 required"), (20, "memory full"), (21, "invalid index"),
                    (22, "not found"), (23, "memory failure"), (24, "text string too long"),
                    (25, "invalid characters in text string"), (30, "no network service"),
                    (31, "network timeout"), (32, "network not allowed - emergency calls only"),
                    (50, "incorrect parameters"), (100, "unknown")))

# TS 27.005 3.2.5 (message service failure results).
CMS_ERRORS = Names(((300, "ME failure"), (301, "SMS service of ME reserved"),
                    (302, "operation not allowed"), (303, "operation not supported"),
                    (304, "invalid PDU mode parameter"), (305, "invalid text mode parameter"),
                    (310, "(U)SIM not inserted"), (311, "(U)SIM PIN required"),
                    (312, "PH-(U)SIM PIN required"), (313, "(U)SIM failure"),
                    (314, "(U)SIM busy"), (315, "(U)SIM wrong"), (316, "(U)SIM PUK required"),
                    (320, "memory failure"), (321, "invalid memory index"),
                    (322, "memory full"), (330, "SMSC address unknown"),
                    (331, "no network service"), (332, "network timeout"),
                    (500, "unknown error")))

FINAL_OK = "OK"
# V.250 final result codes that end a command unsuccessfully.
FINAL_ERRORS = ("ERROR", "NO CARRIER", "NO DIALTONE", "BUSY", "NO ANSWER")
CME = "+CME ERROR:"
CMS = "+CMS ERROR:"

# Lines a modem sends on its own (network registration, SIM state, boot,
# time zone, SMS, data-stack events of the HTTP/CoAP stacks). A line starting
# with one of these is never taken as the answer to a different command.
URC_PREFIXES = (
    "+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:", "+CGEV:", "+CIEV:", "+CPIN:", "+CFUN:",
    "+CUSD:", "+CMTI:", "+CMT:", "+CDS:", "+CBM:", "+CRING:", "+CLIP:", "+CCWA:",
    "+CTZV:", "+CTZE:", "+CTZEU:", "+CSCON:", "+CUSATP:", "+CUSATEND", "+STIN:",
    "+QIND:", "+QUSIM:", "+QSTAT", "+QSIMSTAT:", "+QNTP:", "+QIURC:", "+QHTTPGET:",
    "+QHTTPPOST:", "+QHTTPREAD:", "+QHTTPPOSTFILE:", "+HTTPACTION:", "+SHREQ:",
    "+CCOAPRECV", "+UUHTTPCR:", "+UUPSDA:", "+UUSORD:", "+PACSP", "+SIMCARD:",
    "+CPSI:", "*PSUTTZ", "DST:", "%CESQ:", "%XSIM:", "%XMODEMSLEEP", "#XHTTPCREQ:",
    "#XCOAPCREQ", "^SYSSTART", "^SIMST:", "^RSSI:", "^MODE:", "^BOOT:", "^SRVST:",
    "RDY", "SMS DONE", "PB DONE", "CALL READY", "SMS READY", "RING",
    "+CGEREP:", "+NITZ:", "+ECSQ:", "+EUSIM:", "+ESIMS:", "+KSUP:", "+SYSSTART", "*ATREADY:",
)

# Boot indications (compared in upper case without spaces): the modem's AT
# interface has just started (RDY: Quectel, SIMCom; ^SYSSTART: Cinterion,
# Huawei; +SYSSTART: Sequans; *ATREADY: SIMCom A76xx) or the SIM has just been
# (re)initialised (+CPIN: READY, +CFUN: 1). Either way logical channels are gone.
BOOT_LINES = ("RDY", "*ATREADY:1", "+CPIN:READY", "+CFUN:1")
BOOT_PREFIXES = ("^SYSSTART", "+SYSSTART")
# Commands after which boot indications are expected (they restart the modem
# or re-initialise the SIM): all but their read/test forms, plus ATZ and AT&F.
RESTART_COMMANDS = ("+CFUN", "+CPIN", "+CRESET", "+CPOF", "+QPOWD", "^RESET", "+NRB",
                    "+CRST", "+SRESET")
COUNT = "count"  # _wait(restarts=COUNT): count a restart, do not fail the command
RESTART_GRACE_MS = 20000  # boot lines of one restart keep coming for seconds (SIM init)

CHUNK = 256  # bytes asked from the stream per read
DRAIN_MS = 1000  # at most this long spent discarding leftovers after a failed command
DRAIN_BYTES = 65536  # ... and at most this many bytes
MAX_KEPT_URCS = 16  # URCs kept in .urcs when no callback is given
MAX_WRITE_STALLS = 100


def shorten(text, n=48):
    """A command or line short enough for an error message."""
    if len(text) <= n:
        return text
    return "%s...(%d chars)" % (text[:n - 8], len(text))


def _error_code(final, tag, table):
    """(number or None, text) of a '+CME ERROR: 13' / '+CME ERROR: SIM failure' line."""
    if not final.upper().startswith(tag):
        return None, None
    rest = final[len(tag):].strip()
    if is_digits(rest):
        return int(rest), table.get(int(rest))
    low = rest.lower()
    for code in table:
        if table[code].lower() == low:
            return code, table[code]
    return None, rest or None


class AtError(TransportError):
    """The modem ended a command with an error result instead of OK.

    A TransportError: the path to the card refused the request, the card
    itself said nothing (no status word). Attributes:
      command  the AT command that failed
      final    the final line as received ("ERROR", "+CME ERROR: 13",
               "+CME ERROR: SIM failure", "NO CARRIER")
      cme      TS 27.007 error number or None (verbose text mapped back)
      cms      TS 27.005 error number or None
      hint     a sentence that helps a person (set by ipa_core.at_card)
    """

    def __init__(self, command, final, hint=None):
        self.command = command
        self.final = final
        self.hint = hint
        self.cme, name = _error_code(final, CME, CME_ERRORS)
        self.cms, name2 = _error_code(final, CMS, CMS_ERRORS)
        name = name or name2
        msg = "%s: expected OK, modem answered %s" % (shorten(command), final)
        if name and (self.cme is not None or self.cms is not None):
            msg += " (%s)" % name
        if hint:
            msg += " - " + hint
        super().__init__(msg)


class ModemRestarted(TransportError):
    """The modem (or its SIM) restarted while a command waited, or before it was sent.

    A TransportError: nothing answered the command, and every logical
    channel, setting and session on the modem is lost. Attributes: command
    (the AT command), line (the boot indication received, e.g. "RDY"),
    when ("during" or "before").
    """

    def __init__(self, command, line, when="during"):
        self.command = command
        self.line = line
        self.when = when
        super().__init__("modem restarted %s %s (it sent %r): logical channels are lost, "
                         "reopen the session" % (when, shorten(command), line))


def is_boot(line):
    """True for a line a modem sends when it or its SIM has just started (BOOT_LINES)."""
    u = line.upper().replace(" ", "")
    if u in BOOT_LINES:
        return True
    for p in BOOT_PREFIXES:
        if u.startswith(p):
            return True
    return False


def causes_restart(cmd):
    """True for a command after which the modem sends boot indications (AT+CFUN=1, ATZ)."""
    u = cmd.upper().strip()
    if u.startswith("ATZ") or u.startswith("AT&F"):
        return True
    return "?" not in u and _cmd_name(u) in RESTART_COMMANDS  # not the read/test forms


def _eol(buf):
    """Index of the first CR or LF in buf, -1 if none."""
    a = find(buf, b"\r")
    b = find(buf, b"\n")
    if a < 0:
        return b
    if b < 0 or a < b:
        return a
    return b


def _text(raw):
    """(line as ASCII str, had_garbage): bytes outside printable ASCII are dropped."""
    for x in raw:
        if x < 32 or x > 126:
            return bytes(c for c in raw if 31 < c < 127).decode(), True
    return bytes(raw).decode(), False


def _cmd_name(cmd):
    """'AT+CSIM=10,...' -> '+CSIM'; 'ATI' -> ''; the answer prefix a command owns."""
    u = cmd.upper()
    if not u.startswith("AT") or len(u) < 3 or u[2] not in "+^%#$*":
        return ""
    end = len(u)
    for sep in "=?":
        i = u.find(sep)
        if 0 <= i < end:
            end = i
    return u[2:end]


def _starts(line, prefix):
    """line starts with prefix; 'AT+X:' prefixes match with or without the space after ':'."""
    p = prefix.rstrip()
    return line.upper().startswith(p.upper())


def is_urc(line):
    """True for a line some modem sends unsolicited (see URC_PREFIXES)."""
    u = line.upper()
    for p in URC_PREFIXES:
        if u.startswith(p):
            return True
    return False


class AtEngine:
    """Send AT commands and collect their answers (V.250 5.7 result codes).

    stream          read(n)/write(b) byte stream (see module docstring)
    urc             callable(line) for unsolicited lines and stray lines that
                    are not the answer (it must not send commands itself);
                    without it the last 16 are kept in .urcs
    clock_ms        callable -> milliseconds (tests pass a fake clock);
                    default: time.ticks_ms (MicroPython) / time.monotonic
    max_line        longest accepted line in bytes; a longer run without a
                    line end is discarded with a ProtocolError
    max_info_lines  most information lines one answer may have
    trace           optional callable(direction, text): ">" for sent
                    commands, "<" for received lines
    restart_grace_ms  how long boot indications are expected after a
                    command that restarts the modem or its SIM, or after a
                    restart seen (see the module docstring)

    .started is True once a final result came (boot lines before it are
    start-up noise); .restarts counts restarts seen, .restart_line is the
    boot indication of the last one; .lost_finals counts answers taken without
    their final result (command(..., final_grace_ms=)).
    """

    def __init__(self, stream, urc=None, clock_ms=None, max_line=4096, max_info_lines=64,
                 trace=None, restart_grace_ms=RESTART_GRACE_MS):
        if max_line < 64:
            raise ValueError("max_line %d below 64" % max_line)
        self.stream = stream
        self.urc = urc
        self._now, self._diff = clock(clock_ms)
        self.max_line = max_line
        self.max_info_lines = max_info_lines
        self.trace = trace
        self.urcs = []
        self.noise = 0  # lines dropped because they were garbage
        self.echo = False  # the last command was echoed
        self.last_prompt = None
        self._buf = bytearray()
        self._lf = False  # a line ended in CR: drop an LF that starts the next read
        self._skip = False  # discarding the rest of an over-long line
        self._dirty = False  # a command failed midway: leftovers may follow
        self._pending = None  # command whose final result finish() waits for
        self.restart_grace_ms = restart_grace_ms
        self.started = False  # a final result came: the modem is up
        self.restarts = 0
        self.restart_line = None
        self.lost_finals = 0
        self._grace = None  # when boot lines last became expected (a restart caused or seen)

    # -- bytes -------------------------------------------------------------------

    def _fill(self):
        """Read one chunk from the stream; False when nothing came."""
        room = self.max_line + 2 - len(self._buf)
        data = self.stream.read(CHUNK if room > CHUNK else (room if room > 0 else 1))
        if not data:
            return False
        if self._lf:
            self._lf = False
            if data[0] == 10:
                data = data[1:]
        self._buf += data
        return True

    def _line(self, cmd):
        """Next complete line from the buffer (str, may be empty), or None.

        A run of max_line bytes without CR/LF is thrown away and reported
        (ProtocolError naming `cmd`); the rest of that run up to its line end
        is then skipped silently.
        """
        buf = self._buf
        i = _eol(buf)
        if i < 0:
            if self._skip:
                self._buf = bytearray()
            elif len(buf) > self.max_line:
                head = _text(buf[:24])[0]
                self._buf = bytearray()
                self._skip = True
                self._dirty = True
                raise ProtocolError(
                    "%s: modem sent over %d bytes without a line end (starting %r): discarded;"
                    " wrong baud rate, or a line longer than max_line=%d"
                    % (shorten(cmd or "(idle)"), self.max_line, head, self.max_line))
            return None
        j = i + 1
        if buf[i] == 13:
            if j < len(buf):
                if buf[j] == 10:
                    j += 1
            else:
                self._lf = True
        raw = buf[:i]
        self._buf = buf[j:]
        if self._skip:
            self._skip = False
            return ""
        if i > self.max_line:
            self._dirty = True
            raise ProtocolError("%s: modem sent a line of %d bytes, over max_line=%d"
                                % (shorten(cmd or "(idle)"), i, self.max_line))
        text, bad = _text(raw)
        text = text.strip()
        if bad and text:
            self.noise += 1
            return "\x00" + text  # marked: garbage was removed from this line
        return text

    def _urc(self, line):
        if self.urc is not None:
            self.urc(line)
        else:
            self.urcs.append(line)
            if len(self.urcs) > MAX_KEPT_URCS:
                self.urcs.pop(0)

    def settle(self):
        """Hand lines that came before the next command to the URC path (no command sent).

        Reads what the stream says is waiting (stream.any()), so a boot
        indication already received is counted in .restarts before a caller
        decides to send a command (ipa_core.at_card checks it before APDUs).
        """
        self._settle()

    def _waiting(self):
        """Bytes the stream holds unread (0 when it cannot tell: no any())."""
        peek = getattr(self.stream, "any", None)
        if peek is None:
            return 0
        try:
            return peek() or 0
        except (OSError, ValueError):
            return 0

    def _settle(self):
        """Before a command: hand complete leftover lines to the URC path.

        Bytes the stream already holds (stream.any()) are read first: they
        came before the command is written. After a failed command (timeout,
        over-long line) leftovers of its answer may still be arriving: read
        until the stream is quiet (at most DRAIN_MS, DRAIN_BYTES) and discard
        partial lines too.
        """
        draining = self._dirty
        self._dirty = False
        start = self._now()
        budget = DRAIN_BYTES
        while True:
            try:
                line = self._line(None)
            except ProtocolError:
                continue
            if line is None:
                if not draining:
                    if budget > 0 and self._waiting():
                        n = len(self._buf)
                        if self._fill():
                            budget -= len(self._buf) - n
                            continue
                    return
                if self._diff(self._now(), start) >= DRAIN_MS or budget <= 0:
                    break
                n = len(self._buf)
                if not self._fill():
                    break
                budget -= len(self._buf) - n
                continue
            text = line[1:] if line and line[0] == "\x00" else line
            if text and is_boot(text):
                self._boot(text, False)
            if line and line[0] != "\x00":
                if self.trace:
                    self.trace("<", line)
                self._urc(line)
        if len(self._buf) > self.max_line:
            self._skip = True  # still inside an over-long run: skip to its line end
        self._buf = bytearray()

    # -- restarts ----------------------------------------------------------------

    def _in_grace(self):
        return self._grace is not None and \
            self._diff(self._now(), self._grace) < self.restart_grace_ms

    def _boot(self, line, expected):
        """A boot indication came: True when it is a restart (counted; see module docstring)."""
        if not self.started:
            self._grace = self._now()  # start-up: the rest of this boot follows (SIM init)
            return False
        if expected or self._in_grace():
            return False
        self.restarts += 1
        self.restart_line = line
        self._grace = self._now()  # the rest of this boot's lines are part of it
        return True

    def write_raw(self, data):
        """Write all of data (bytes) to the stream."""
        data = bytes(data)
        stalls = 0
        while data:
            n = self.stream.write(data)
            if n is None or n >= len(data):
                return
            if n <= 0:
                stalls += 1
                if stalls > MAX_WRITE_STALLS:
                    raise TransportError("stream accepted no bytes after %d writes (%d bytes left)"
                                         % (MAX_WRITE_STALLS, len(data)))
                continue
            data = data[n:]

    def _send(self, cmd):
        cmd = cmd.strip()
        if not cmd:
            raise ValueError("empty AT command")
        if "\r" in cmd or "\n" in cmd:
            raise ValueError("AT command with a line break: %r" % shorten(cmd))
        self._settle()
        if self.trace:
            self.trace(">", cmd)
        self.write_raw((cmd + "\r").encode())
        return cmd

    # -- lines -------------------------------------------------------------------

    def _wait(self, cmd, timeout_ms, prefix, prompts, restarts=False, final_grace_ms=None):
        """Collect information lines until the final result (or a prompt).

        Returns (info_lines, prompt) where prompt is None after OK. Raises
        AtError on an error result, TimeoutError_ when nothing final came in
        timeout_ms, ProtocolError on over-long lines / too many lines,
        ModemRestarted on a boot indication that is a restart. `restarts`:
        True when the command causes one (boot lines expected), COUNT to
        count a restart without failing (sync). `final_grace_ms` (with a
        prefix): once an answer line came, the final result has that long to
        follow; then the answer is returned without it (a modem that lost its OK).
        """
        start = self._now()
        answered = None  # when the first answer line came
        info = []
        name = _cmd_name(cmd)
        own = name + ":" if name else None
        echo_ok = True
        self.echo = False
        while True:
            line = self._line(cmd)
            if not line:
                # Checked on every line that is not the answer too: a flood of
                # URCs or garbage lines must not keep the command alive.
                if line is None and prompts and self._partial_prompt(prompts):
                    return info, self.last_prompt
                if self._lost_final(answered, final_grace_ms):
                    return info, None
                self._deadline(cmd, start, timeout_ms, info)
                if line is None:
                    self._fill()
                continue
            garbage = line[0] == "\x00"
            if garbage:
                line = line[1:]
            u = line.upper()
            if echo_ok and not info and _is_echo(u, cmd.upper()):
                echo_ok = False
                self.echo = True
                continue
            if self.trace:
                self.trace("<", line)
            if u == FINAL_OK:
                self.started = True
                return info, None
            if u in FINAL_ERRORS or u.startswith(CME) or u.startswith(CMS):
                self.started = True
                raise AtError(cmd, line)
            if is_boot(line) and not (own is not None and u.startswith(own)) \
                    and not (prefix and _starts(line, prefix)) \
                    and self._boot(line, restarts is True) and restarts is not COUNT:
                self._dirty = True  # the rest of the boot chatter follows
                raise ModemRestarted(cmd, line)
            if prompts:
                for p in prompts:
                    if u == p.upper() or u.startswith(p.upper() + " "):
                        self.last_prompt = line
                        return info, line
            if prefix:
                answer = _starts(line, prefix)
            else:
                answer = (own is not None and u.startswith(own)) or not (is_urc(line) or garbage)
            if not answer:
                if not garbage:
                    self._urc(line)
                self._deadline(cmd, start, timeout_ms, info)
                continue
            echo_ok = False
            if answered is None and prefix and final_grace_ms is not None:
                answered = self._now()
            info.append(line)
            if len(info) > self.max_info_lines:
                self._dirty = True
                raise ProtocolError("%s: answer of more than %d lines (last %r)"
                                    % (shorten(cmd), self.max_info_lines, shorten(line)))

    def _lost_final(self, answered, grace_ms):
        """The answer line came grace_ms ago and no final result since: the modem lost it.
        A late OK is drained before the next command (_dirty)."""
        if answered is None or self._diff(self._now(), answered) < grace_ms:
            return False
        self._dirty = True
        self.lost_finals += 1
        return True

    def _deadline(self, cmd, start, timeout_ms, info):
        if self._diff(self._now(), start) >= timeout_ms:
            self._dirty = True
            got = ""
            if info:
                got = "; got only %r" % (shorten(" | ".join(info), 80),)
            raise TimeoutError_("%s: no final result (OK/ERROR) within %d ms%s"
                                % (shorten(cmd), timeout_ms, got))

    def _partial_prompt(self, prompts):
        """A data prompt such as '> ' arrives without a line end."""
        if not self._buf or len(self._buf) > 8:
            return False
        text = _text(self._buf)[0].strip()
        for p in prompts:
            if text == p and not p[0].isalpha():
                self._buf = bytearray()
                self._lf = False
                self.last_prompt = p
                return True
        return False

    # -- API ---------------------------------------------------------------------

    def command(self, cmd, timeout_ms=5000, prefix=None, restarts=False, final_grace_ms=None):
        """Send `cmd` (without CR) and return its information lines.

        The echo of the command, URCs and the final result are not returned.
        With `prefix` (e.g. "+CSIM:") only lines starting with it are the
        answer and everything else goes to the URC path; without it, lines
        that are neither known URCs nor garbage are the answer, and a line
        starting with the command's own name ("+CPIN:" for AT+CPIN?) always is.
        `restarts`: the command restarts the modem or its SIM (known ones,
        causes_restart(), need not say so): boot lines are then expected.
        `final_grace_ms` (with `prefix`): the answer is taken without its final
        result when none came that long after the answer line (.lost_finals).
        Raises AtError (ERROR, +CME ERROR: n, +CMS ERROR: n), TimeoutError_,
        ModemRestarted (a boot indication while it waited).
        """
        cmd = self._send(cmd)
        expect = restarts or causes_restart(cmd)
        if expect:
            self._grace = self._now()
        try:
            return self._wait(cmd, timeout_ms, prefix, None, expect, final_grace_ms)[0]
        finally:
            if expect:
                self._grace = self._now()  # its boot lines may follow the final result

    def data_command(self, cmd, payload, prompt=(">", "CONNECT", "DOWNLOAD"), timeout_ms=5000,
                     data_timeout_ms=None, prefix=None):
        """A command that answers a prompt and then takes raw bytes.

        AT+QHTTPPOST=<len> -> CONNECT -> body -> OK; AT+SHBOD -> '>' -> body;
        AT+HTTPDATA -> DOWNLOAD -> body -> OK. Writes `payload` after the
        prompt and returns the information lines up to the final result
        (waiting data_timeout_ms, default timeout_ms, after the payload).
        With payload None it returns right after the prompt: read the data
        with read_raw()/read_raw_until(), then call finish().
        """
        cmd = self._send(cmd)
        info, got = self._wait(cmd, timeout_ms, prefix, prompt)
        if got is None:
            raise ProtocolError("%s: expected a prompt (%s), the modem answered OK"
                                % (shorten(cmd), " or ".join(prompt)))
        if payload is None:
            self._pending = cmd
            return info
        self.write_raw(payload)
        more = self._wait(cmd, data_timeout_ms or timeout_ms, prefix, None)[0]
        return info + more

    def finish(self, timeout_ms=5000, prefix=None):
        """Wait for the final result of the command data_command() left open."""
        cmd = self._pending or "(data transfer)"
        self._pending = None
        return self._wait(cmd, timeout_ms, prefix, None)[0]

    def read_raw(self, n, timeout_ms=5000):
        """Exactly n raw bytes (after CONNECT), buffered bytes first."""
        if n < 0:
            raise ValueError("read_raw of %d bytes" % n)
        # Pieces joined once: a bytearray grown to n and copied into bytes would take a
        # board's heap for n bytes three times over, in blocks of growing size.
        parts = []
        got = 0
        start = self._now()
        while True:
            if self._buf:
                take = n - got
                if take >= len(self._buf):
                    parts.append(bytes(self._buf))
                    got += len(self._buf)
                    self._buf = bytearray()
                else:
                    parts.append(bytes(self._buf[:take]))
                    got += take
                    self._buf = self._buf[take:]
            if got >= n:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            if self._diff(self._now(), start) >= timeout_ms:
                self._dirty = True
                raise TimeoutError_("raw data after %s: %d of %d bytes within %d ms"
                                    % (shorten(self._pending or "prompt"), got, n, timeout_ms))
            self._fill()

    def read_raw_until(self, end, max_bytes, timeout_ms=5000):
        """Raw bytes up to (not including) `end` (e.g. b"\\r\\nOK\\r\\n"), at most max_bytes."""
        out = bytearray()
        start = self._now()
        while True:
            if self._buf:
                out += self._buf
                self._buf = bytearray()
            i = find(out, end)
            if i >= 0:
                self._buf = out[i + len(end):]
                return bytes(out[:i])
            if len(out) > max_bytes + len(end):
                self._dirty = True
                raise ProtocolError("raw data longer than %d bytes without the end marker %r"
                                    % (max_bytes, end))
            if self._diff(self._now(), start) >= timeout_ms:
                self._dirty = True
                raise TimeoutError_("raw data: end marker %r not seen within %d ms (%d bytes came)"
                                    % (end, timeout_ms, len(out)))
            self._fill()

    def wait_urc(self, prefix, timeout_ms=5000):
        """The next unsolicited line starting with prefix (e.g. '+QHTTPPOST:').

        Looks at lines already kept in .urcs first (when no callback is set);
        other lines meanwhile go to the URC path.
        """
        for i in range(len(self.urcs)):
            if _starts(self.urcs[i], prefix):
                return self.urcs.pop(i)
        start = self._now()
        while True:
            line = self._line(prefix)
            if line and line[0] != "\x00":
                if self.trace:
                    self.trace("<", line)
                if _starts(line, prefix):
                    return line
                if is_boot(line) and self._boot(line, False):
                    self._dirty = True
                    raise ModemRestarted("the wait for " + prefix, line)
                self._urc(line)
            if self._diff(self._now(), start) >= timeout_ms:
                raise TimeoutError_("no %s line within %d ms" % (prefix, timeout_ms))
            if line is None:
                self._fill()

    def idle(self, ms):
        """Wait `ms` without a command (a back-off), handing what comes to the URC path;
        a boot line is counted as a restart (.restarts), not raised."""
        start = self._now()
        while self._diff(self._now(), start) < ms:
            try:
                line = self._line(None)
            except ProtocolError:
                continue
            if line is None:
                self._fill()
            elif line and line[0] != "\x00":
                if self.trace:
                    self.trace("<", line)
                if is_boot(line):
                    self._boot(line, False)
                self._urc(line)

    def sync(self, tries=3, timeout_ms=1000):
        """Get the modem's attention: AT until OK (discarding garbage), then ATE0."""
        last = None
        for _ in range(tries):
            self._dirty = True
            try:
                self._quiet_boot("AT", timeout_ms)
                break
            except TransportError as e:  # AtError and TimeoutError_
                last = e
            except ProtocolError as e:
                last = e
        else:
            raise TimeoutError_("modem did not answer AT with OK in %d tries of %d ms (last: %s)"
                                % (tries, timeout_ms, last))
        self._quiet_boot("ATE0", timeout_ms)
        return True

    def _quiet_boot(self, cmd, timeout_ms):
        """A command a boot line does not fail (sync: the modem may be starting); a restart
        is still counted, and no grace window opens as after a command that restarts."""
        cmd = self._send(cmd)
        return self._wait(cmd, timeout_ms, None, None, COUNT)[0]


def _is_echo(u, cmd):
    """The modem repeating the command line (possibly clipped at either end)."""
    if u == cmd:
        return True
    return len(u) >= 3 and (cmd.startswith(u) or cmd.endswith(u)) and not u.startswith("+")
