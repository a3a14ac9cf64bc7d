"""The Ipa's connectivity for an eUICC behind a modem's AT port (ipa_core.ipa "connectivity").

After a profile switch the modem still runs on what it read from the SIM
before: it needs a SIM refresh before it attaches with the new profile (the
project's modem fact sheet: "After enabling a profile the modem needs a SIM
refresh (AT+CFUN=0/1, or a REFRESH) before it attaches | all"). The Ipa's
connect step (ipa_core.ipa_steps.connect) closes the eIM connection, then:

  refresh()            the modem profile's refresh commands (ipa_core.modems
                       "refresh", AT+CFUN=0 then AT+CFUN=1 by default) through
                       ipa_core.at_card.AtCard.refresh, which closes only what
                       the AtCard holds itself (its AT+CCHO session, or the
                       channel of a CGLA->CSIM switch). The SIM power-down
                       takes every other logical channel too, including the
                       one IsdrSession opened in CSIM mode, so the ISD-R
                       session is invalidated (IsdrSession.invalidate): the
                       next ES10 call opens a new one (AtCard.open: AT+CCHO).
                       A modem that refuses or does not answer a refresh
                       command is logged, not raised: wait_connected decides
                       (and with rollbackFlag the Ipa rolls back).
  wait_connected(ms)   AT+CEREG? / AT+CGREG? / AT+CREG? (3GPP TS 27.007
                       10.1.22, 10.1.20, 7.2; the ones the modem answers)
                       every poll_ms until one says registered, <stat> 1
                       (home) or 5 (roaming); then, when the modem's own HTTP
                       stack carries ESipa (stack), the data bearer that stack
                       uses (BEARERS), brought up when it is down. All within
                       `ms`; False when the time is over.

Every AT line of the refresh and the bearer set-up is logged at info level
("AT > AT+CFUN=0", "AT < OK"); registration polls at debug level, their
outcome at info.
"""

import time

from ipa_core.at import AtError, ModemRestarted
from ipa_core.errors import TimeoutError_, is_digits

REGISTERED = (1, 5)  # TS 27.007 <stat>: registered, home network / roaming
STAT_NAMES = {0: "not registered", 1: "home network", 2: "searching", 3: "registration denied",
              4: "unknown", 5: "roaming"}
# Tried in this order; a modem that refuses one (ERROR, +CME ERROR: 4) is not asked again.
REG_COMMANDS = ("AT+CEREG?", "AT+CGREG?", "AT+CREG?")
# The bearer each modem HTTP stack (ipa_core.at_http) sends its requests over:
# stack -> (query, its answer prefix, activation, context id as the answer shows it).
BEARERS = {
    # Quectel TCP/IP AT manual: AT+QIACT=<contextID>; QHTTPCFG "contextid" is 1 by default.
    "quectel": ("AT+QIACT?", "+QIACT:", "AT+QIACT=1", "1"),
    # SIMCom SIM7070/SIM7080: the AT+SH* stack runs on the "APP" network AT+CNACT=0,1.
    "sim7080": ("AT+CNACT?", "+CNACT:", "AT+CNACT=0,1", "0"),
    # SIMCom A76xx/SIM7600: the default PDP context, TS 27.007 AT+CGACT=1,1.
    "simcom": ("AT+CGACT?", "+CGACT:", "AT+CGACT=1,1", "1"),
}
POLL_MS = 1000  # between registration / bearer queries
QUERY_TIMEOUT_MS = 3000  # one registration or bearer query
ACTIVATE_TIMEOUT_MS = 150000  # Quectel: AT+QIACT may take up to 150 s
MIN_COMMAND_MS = 1000  # a command always gets this long, even at the end of the wait


def fields(text):
    """'2,1,"1A2B","01A2B3C4",7' -> [('2', False), ('1', False), ('1A2B', True), ...]:
    comma-separated fields, stripped, quotes removed (a quoted field may hold commas)."""
    out, cur, quoted, was = [], [], False, False
    for ch in text:
        if ch == '"':
            quoted, was = not quoted, True
        elif ch == "," and not quoted:
            out.append(("".join(cur).strip(), was))
            cur, was = [], False
        else:
            cur.append(ch)
    out.append(("".join(cur).strip(), was))
    return out


def _number(field):
    text, quoted = field
    return int(text) if not quoted and is_digits(text) and len(text) <= 3 else None


def parse_registration(lines, prefix):
    """<stat> from the answer lines of a registration read command, or None (registration_line)."""
    return registration_line(lines, prefix)[0]


def registration_line(lines, prefix):
    """(<stat>, the line it came from) from the answer lines of a registration read
    command, or (None, None).

    prefix: "+CEREG:", "+CGREG:" or "+CREG:". The read form is
    '<n>,<stat>[,<tac/lac>,<ci>,<AcT>...]' (TS 27.007 10.1.22); a URC the
    modem sent while the command waited has the same prefix and comes back
    among the answer lines in its own form '<stat>[,"<tac>","<ci>",<AcT>]'.
    The last read-form line wins; a URC-form line counts only without one.
    """
    read = urc = (None, None)
    p = prefix.upper()
    for line in lines:
        if not line.upper().startswith(p):
            continue
        f = fields(line[len(prefix):])
        if len(f) >= 2 and _number(f[0]) is not None and _number(f[1]) is not None:
            read = (_number(f[1]), line)
        elif _number(f[0]) is not None:
            urc = (_number(f[0]), line)
    return read if read[0] is not None else urc


def bearer_active(lines, prefix, context):
    """True when a line '<prefix> <context>,1[,...]' (AT+QIACT?, AT+CNACT?, AT+CGACT?)
    lists `context` as active."""
    for line in lines:
        if line.upper().startswith(prefix.upper()):
            f = fields(line[len(prefix):])
            if len(f) >= 2 and f[0][0] == context and f[1][0] == "1":
                return True
    return False


def _refused(e):
    """The modem does not have the command (plain ERROR, +CME ERROR: 4)."""
    return e.cms is None and (e.cme == 4 or e.final.strip().upper() == "ERROR")


class ModemConnectivity:
    """The Ipa's connectivity object for a card on a modem's AT port (module docstring).

    card        the ipa_core.at_card.AtCard (refresh(), profile["refresh"])
    engine      its ipa_core.at.AtEngine (the AT port the card and the HTTP stack share)
    session     the ipa_core.apdu.IsdrSession over the card (invalidated by refresh())
    stack       the modem HTTP stack ESipa goes through ("quectel", "sim7080",
                "simcom"): its bearer is brought up after registration; None when
                the host's own network carries ESipa
    refresh     False: refresh() sends nothing (the modem or the eUICC's own REFRESH
                does it); the registration wait stays
    poll_ms     pause between queries
    clock_ms / sleep_ms / log   injectable (tests); log: a logging.Logger or
                callable(level, message)

    After a call: .last_stat (<stat>, or None), .last_line (its answer line),
    .refresh_error (the error a refresh command ended with, or None).
    """

    def __init__(self, card, engine=None, session=None, stack=None, refresh=True,
                 poll_ms=POLL_MS, clock_ms=None, sleep_ms=None, log=None):
        if stack is not None and stack not in BEARERS:
            raise ValueError("modem HTTP stack %r: expected one of %s"
                             % (stack, ", ".join(sorted(BEARERS))))
        if not isinstance(poll_ms, int) or poll_ms <= 0:
            raise ValueError("poll_ms must be a positive number of milliseconds, not %r"
                             % (poll_ms,))
        self.card = card
        self.engine = engine if engine is not None else card.engine
        self.session = session
        self.stack = stack
        self.enabled = bool(refresh)
        self.poll_ms = poll_ms
        self.clock_ms = clock_ms or (lambda: int(time.monotonic() * 1000))
        self.sleep_ms = sleep_ms or (lambda ms: time.sleep(ms / 1000.0))
        self.log = log
        self.reg_commands = list(REG_COMMANDS)
        self.last_stat = None
        self.last_line = None
        self.refresh_error = None

    # ---- logging ---------------------------------------------------------------------

    def note(self, level, msg):
        if self.log is None:
            return
        f = getattr(self.log, level, None)
        if f is not None:
            f("modem: %s", msg)
        else:
            self.log(level, "modem: " + msg)

    def _traced(self, level, fn, *args):
        """fn(*args) with every AT line it causes logged at `level` (any trace kept)."""
        eng = self.engine
        old = getattr(eng, "trace", None)

        def trace(direction, text):
            if old is not None:
                old(direction, text)
            self.note(level, "AT %s %s" % (direction, text))

        eng.trace = trace
        try:
            return fn(*args)
        finally:
            eng.trace = old

    # ---- the Ipa's connectivity --------------------------------------------------------

    def refresh(self):
        """The modem reads the eUICC again (the modem profile's refresh commands); the ISD-R
        session reopens on its next use."""
        self.refresh_error = None
        if not self.enabled:
            self.note("info", "profile switch: no refresh ([card] refresh = false); waiting "
                              "for the modem to attach by itself")
            return
        cmds = tuple(getattr(self.card, "profile", {}).get("refresh") or ())
        self.note("info", "profile switch: refreshing the modem so that it reads the eUICC "
                          "again (%s)" % ", ".join(cmds))
        try:
            self._traced("info", self.card.refresh)
        except (AtError, TimeoutError_, ModemRestarted) as e:
            self.refresh_error = e
            self.note("warning", "refresh failed: %s; waiting for the network anyway" % e)
        finally:
            if self.session is not None:
                self.session.invalidate()  # the refresh took every logical channel

    def wait_connected(self, timeout_ms):
        """True once the modem is registered (and, with a stack, its bearer is up) within
        timeout_ms; False otherwise."""
        t0 = self.clock_ms()
        deadline = t0 + max(0, int(timeout_ms))
        self.note("info", "waiting up to %d s for the network registration (%s)"
                  % (int(timeout_ms) // 1000, ", ".join(self.reg_commands) or "none answers"))
        polls = 0
        while True:
            stat, line = self.registration(deadline)
            polls += 1
            if stat in REGISTERED:
                break
            if stat is None and not self.reg_commands:
                # Nothing tells: the eIM exchange that follows decides (a failure there
                # rolls back too, ipa_core.ipa_steps.deliver).
                self.note("warning", "the modem answers none of %s: cannot tell whether it "
                                     "registered; going on" % ", ".join(REG_COMMANDS))
                return self.bearer(deadline) if self.stack else True
            left = deadline - self.clock_ms()
            if left <= 0:
                self.note("warning", "not registered within %d s after the profile switch "
                                     "(last answer: %s)" % (int(timeout_ms) // 1000,
                                                            line or "none"))
                return False
            self.sleep_ms(min(self.poll_ms, left))
        self.note("info", "registered (%s) %d ms after the wait began, %d queries: %s"
                  % (STAT_NAMES[stat], self.clock_ms() - t0, polls, line))
        if self.stack is None:
            return True
        return self.bearer(deadline)

    # ---- registration ------------------------------------------------------------------

    def _timeout(self, deadline, cap):
        return max(MIN_COMMAND_MS, min(cap, deadline - self.clock_ms()))

    def registration(self, deadline=None):
        """(<stat>, answer line) of the first registration command that says registered,
        else of the first that answered; (None, None) when none did this time."""
        if deadline is None:
            deadline = self.clock_ms() + QUERY_TIMEOUT_MS
        first = (None, None)
        for cmd in list(self.reg_commands):
            prefix = cmd[2:-1] + ":"
            try:
                lines = self.engine.command(cmd, self._timeout(deadline, QUERY_TIMEOUT_MS))
            except AtError as e:
                if _refused(e):
                    self.reg_commands.remove(cmd)
                    self.note("debug", "%s refused (%s): not asked again" % (cmd, e.final))
                else:
                    self.note("debug", "%s: %s" % (cmd, e.final))
                continue
            except (TimeoutError_, ModemRestarted) as e:
                self.note("debug", "%s: %s" % (cmd, e))
                continue
            stat, shown = registration_line(lines, prefix)
            self.note("debug", "%s -> %s" % (cmd, " | ".join(lines) or "no answer line"))
            if stat is None:
                continue
            if stat in REGISTERED:
                self.last_stat, self.last_line = stat, shown
                return stat, shown
            if first[0] is None:
                first = (stat, shown)
        self.last_stat, self.last_line = first
        return first

    # ---- the modem HTTP stack's bearer -------------------------------------------------------

    def _bearer_up(self, deadline):
        query, prefix, _start, ctx = BEARERS[self.stack]
        try:
            lines = self.engine.command(query, self._timeout(deadline, QUERY_TIMEOUT_MS))
        except (AtError, TimeoutError_, ModemRestarted) as e:
            self.note("debug", "%s: %s" % (query, e))
            return False
        return bearer_active(lines, prefix, ctx)

    def bearer(self, deadline):
        """The data bearer of the modem's HTTP stack up by `deadline` (clock_ms): asked
        (query), brought up when down (activation), then asked every poll_ms."""
        query, _prefix, start, _ctx = BEARERS[self.stack]
        if self._bearer_up(deadline):
            self.note("debug", "data bearer of the %s HTTP stack is up (%s)" % (self.stack, query))
            return True
        self.note("info", "bringing the data bearer of the %s HTTP stack up: %s"
                  % (self.stack, start))
        try:  # some firmware answers ERROR while the context comes up anyway
            self._traced("info", self.engine.command, start,
                         self._timeout(deadline, ACTIVATE_TIMEOUT_MS))
        except (AtError, TimeoutError_, ModemRestarted) as e:
            self.note("warning", "%s: %s" % (start, e))
        while True:
            if self._bearer_up(deadline):
                self.note("info", "data bearer up (%s)" % query)
                return True
            left = deadline - self.clock_ms()
            if left <= 0:
                self.note("warning", "data bearer (%s) not up in time" % start)
                return False
            self.sleep_ms(min(self.poll_ms, left))
