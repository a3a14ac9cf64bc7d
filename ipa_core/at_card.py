"""A card behind a modem's AT port: AT+CGLA / AT+CSIM (3GPP TS 27.007 8.17, 8.43-8.45).

`AtCard(engine)` is a card object (`transmit(apdu) -> data + SW`) for
ipa_core.apdu.IsdrSession. Two modes:

  cgla  AT+CCHO="<ISD-R AID>" opens and selects a logical channel owned by
        the modem; APDUs go through AT+CGLA=<session>,<len>,"<hex>" with CLA
        channel bits 0 (the modem fills them in). IsdrSession must then be
        built with modem_channel=True (open_isdr_session() does it).
  csim  AT+CSIM=<len>,"<hex>" moves APDUs as they are; IsdrSession opens
        its own channel with MANAGE CHANNEL + SELECT (modem_channel=False).

mode="auto" TRIES AT+CCHO first (never trusting `=?` test commands, which
several modems lack) and falls back to CSIM when the modem refuses it, or
goes straight to CSIM when the modem profile says csim_only.

Quirks handled (see ipa_core.modems for where each was seen): bare or
unspaced `+CCHO`/`+CGLA` answers, unquoted hex, repeated answer lines (the
last one counts), answers cut at `csim_max_answer` bytes, 61xx left to the
host (GET RESPONSE done here), 6601 transmission errors (resent once),
channels leaked by earlier programs (closed at open()), CSIM without
logical channels (basic channel), a CGLA that fails mid-session (switch to
CSIM on a channel opened here), long STORE DATA processing (see below),
a final OK the modem loses after the +CGLA/+CSIM answer (the answer is
taken FINAL_GRACE_MS later, noted), and "+CME ERROR: SIM busy" (the modem
did not pass the APDU on: sent again, BUSY_TRIES in all, BUSY_BACKOFF_MS
then twice that apart; every other error fails at once).

Waits are sized to the command (wait_ms; docs/modems.md, "AT timeouts"): a
STORE DATA by the ES10 function its first block starts with -
QUICK_FUNCTIONS (reads, lists, removals) like every other APDU (SELECT,
MANAGE CHANNEL, GET RESPONSE) apdu_timeout_ms (10 s), SIGNING_FUNCTIONS
(the eUICC signs or checks a signature) SIGNING_TIMEOUT_MS (30 s), the
rest - LoadBoundProfilePackage segments, LoadEuiccPackage, profile
switches and deletes, functions not listed - segment_timeout_ms (120 s by
default).

Modems without a profile entry that cut answers at 256 bytes (CUT_SIZE)
are detected (see _cut_at): an answer of exactly 256 bytes that cannot be
complete (its last two bytes are no status word that may follow data, or
the BER-TLV / GET RESPONSE length it answers says more was due) is
completed with GET RESPONSE like a profiled one, the profile's
csim_max_answer is set to 256 for the rest of the session and .notes says
so; when it cannot be completed, a ProtocolError names csim_max_answer.

A modem that restarts (ipa_core.at.ModemRestarted: a boot indication such
as RDY while an APDU waited, or counted by the engine before it was sent)
takes every session and channel with it: the APDU fails at once, the card
marks itself closed without sending anything to close, and refuses further
APDUs until open() (a fresh session) is called.

Three answers are made up here, all recorded in .notes: MANAGE CHANNEL open
reads 6881 when the profile says CSIM cannot carry logical channels (so
IsdrSession uses the basic channel), a TERMINAL CAPABILITY the modem
refuses reads 6D00 (IsdrSession treats it as optional, as for old cards),
and after a restart a MANAGE CHANNEL close reads 9000 (the restart closed
the channel).
A +CME ERROR becomes an AtError (a TransportError) whose message adds a
hint for a person: "+CME ERROR: 13 (SIM failure) - is this an eUICC with
an enabled profile?".
"""

from ipa_core.compat import hexlify, unhexlify

from ipa_core import modems
from ipa_core.apdu import ISDR_AID, MAX_RESPONSE, cla_for
from ipa_core.at import AtError, ModemRestarted, shorten
from ipa_core.errors import CardError, ProtocolError, TimeoutError_, TransportError, Names, \
    is_digits

MODES = ("auto", "cgla", "csim")
SEGMENT_TIMEOUT_MS = 120000  # STORE DATA: profile loads take tens of seconds per block
APDU_TIMEOUT_MS = 10000  # any other APDU, and ES10 reads (QUICK_FUNCTIONS)
SIGNING_TIMEOUT_MS = 30000  # ES10 functions that sign or verify (SIGNING_FUNCTIONS)
# ES10 functions by the tag their STORE DATA starts with (SGP.22 5.7, SGP.32 5.9).
QUICK_FUNCTIONS = (0xBF3E, 0xBF20, 0xBF22, 0xBF2D, 0xBF2E, 0xBF3C, 0xBF2B, 0xBF28, 0xBF30,
                   0xBF55, 0xBF56, 0xBF43, 0xBF5F, 0xBF29)  # GetEID .. GetCerts, SetNickname
SIGNING_FUNCTIONS = (0xBF38, 0xBF21, 0xBF41)  # AuthenticateServer, PrepareDownload, Cancel
FINAL_GRACE_MS = 2000  # the final OK after a +CGLA/+CSIM answer: normally milliseconds
BUSY_TRIES = 3  # "+CME ERROR: SIM busy": the APDU did not reach the card; tries in all
BUSY_BACKOFF_MS = 500  # ... waiting this long, then twice as long, between them
TRANSIENT_CME = (14,)  # SIM busy: "not now"; every other +CME ERROR fails at once
COMMAND_TIMEOUT_MS = 5000  # CCHO, CCHC, init commands
STALE_TIMEOUT_MS = 2000  # each stale-channel close
REFRESH_TIMEOUT_MS = 30000  # AT+CFUN can take seconds
MAX_APDU = 261  # short APDU: header, Lc, 255 data bytes, Le
MAX_NOTES = 32
MAX_STALE_SESSIONS = 4
HEX = "0123456789ABCDEFabcdef"
CUT_SIZE = 256  # where modems cut answers (fact sheet: Huawei MT5700 "~256 bytes")

# Words for people, added to AtError messages about SIM access.
CME_HINTS = Names(((3, "the modem does not allow it now: UICC not powered, or held by the modem's own LPA?"),
                   (4, "this modem does not support the command (try mode=csim or mode=cgla)"),
                   (10, "no SIM/eUICC found: check the SIM slot selection and that the eUICC is powered"),
                   (13, "is this an eUICC with an enabled profile?"),
                   (14, "the SIM stayed busy (just powered up or refreshed?) through %d tries: "
                        "retry in a few seconds" % BUSY_TRIES),
                   (15, "the modem does not accept this SIM"),
                   (21, "invalid index: the logical channel is gone (modem or SIM reset?)"),
                   (50, "the modem rejected the parameters (AID, length or hex)")))


def _hex(b):
    return hexlify(b).decode().upper()


def _is_hex(s):
    for c in s:
        if c not in HEX:
            return False
    return True


def parse_apdu_answer(cmd, lines, prefix):
    """Response bytes (data + SW) from '+CSIM: <len>,"<hex>"' / '+CGLA: <len>,"<hex>"'.

    Tolerates no space after ':', unquoted hex and lower case; when several
    answer lines came (earlier answers repeated), the last one is the answer.
    Anything else is a ProtocolError naming what came.
    """
    picks = [ln for ln in lines if ln.upper().startswith(prefix)]
    if not picks:
        raise ProtocolError("%s: expected a '%s <len>,\"<hex>\"' line, got %s"
                            % (shorten(cmd), prefix, _show(lines)))
    line = picks[-1]
    body = line[len(prefix):].strip()
    comma = body.find(",")
    if comma < 0:
        raise ProtocolError("%s: answer %r has no ',' between length and data"
                            % (shorten(cmd), shorten(line, 80)))
    n = body[:comma].strip()
    hx = body[comma + 1:].strip()
    hx = _unquote(hx)
    if not is_digits(n):
        raise ProtocolError("%s: answer length %r is not a number (answer %r)"
                            % (shorten(cmd), n, shorten(line, 80)))
    if not _is_hex(hx):
        raise ProtocolError("%s: answer data is not hex: %r" % (shorten(cmd), shorten(hx, 60)))
    if len(hx) % 2:
        raise ProtocolError("%s: answer has an odd number (%d) of hex digits: %r"
                            % (shorten(cmd), len(hx), shorten(hx, 60)))
    if int(n) != len(hx):
        raise ProtocolError("%s: answer announces %s hex digits but carries %d: %r"
                            % (shorten(cmd), n, len(hx), shorten(line, 80)))
    if len(hx) < 4:
        raise ProtocolError("%s: answer of %d bytes, expected at least SW1 SW2: %r"
                            % (shorten(cmd), len(hx) // 2, shorten(line, 80)))
    return unhexlify(hx)


def _show(lines):
    if not lines:
        return "no answer line"
    return "%r" % (shorten(" | ".join(lines), 100),)


def _unquote(s):
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        return s[1:-1].strip()
    return s


def parse_ccho(cmd, lines):
    """The session id from '+CCHO: <id>', '+CCHO:<id>' or a bare '<id>' line (opaque text).

    Seen: '1', '000000000385a7cf' (fact sheet); kept as received, sent back as is.
    """
    found = []
    for ln in lines:
        if ln.upper().startswith("+CCHO:"):
            found = [_unquote(ln[6:].strip())]
            break
        ln = _unquote(ln)
        if ln and _is_hex(ln):
            found.append(ln)
    if len(found) != 1:
        raise ProtocolError("%s: expected one session id ('+CCHO: <id>' or a bare id), got %s"
                            % (shorten(cmd), _show(lines)))
    sid = found[0]
    if not sid or len(sid) > 32 or not _is_hex(sid):
        raise ProtocolError("%s: session id %r is not a number of at most 32 digits"
                            % (shorten(cmd), shorten(sid, 40)))
    return sid


def sw_ok(sw1, sw2):
    """SW1 SW2 can be a status word: SW1 6X (not 60) or 9X (ISO/IEC 7816-3 10.3.3)."""
    return 0x61 <= sw1 <= 0x6F or 0x90 <= sw1 <= 0x9F


def sw_after_data(sw1, sw2):
    """A status word that may follow response data (ISO/IEC 7816-4 5.6: 9000, 61xx and the
    62xx/63xx warnings; ETSI TS 102 221 10.2: 91xx, 92xx); errors carry no data."""
    return (sw1 == 0x90 and sw2 == 0) or sw1 in (0x61, 0x62, 0x63, 0x91, 0x92)


def tlv_total(b):
    """Header + value length of the BER-TLV that starts b (ISO/IEC 8825-1 8.1.2-8.1.3),
    None when b does not start with a definite-length TLV header."""
    n = len(b)
    i = 1
    if n < 2:
        return None
    if b[0] & 0x1F == 0x1F:  # tag number in following bytes, b8 = more
        while True:
            if i >= n or i > 3:
                return None
            more = b[i] & 0x80
            i += 1
            if not more:
                break
    if i >= n:
        return None
    ln = b[i]
    i += 1
    if ln < 0x80:
        return i + ln
    k = ln & 0x7F
    if k == 0 or k > 3 or i + k > n:
        return None
    v = 0
    for j in range(k):
        v = (v << 8) | b[i + j]
    return i + k + v


def _first_tag(data):
    """The BER tag data starts with (one or two bytes), or None."""
    if not data:
        return None
    if data[0] & 0x1F != 0x1F:
        return data[0]
    return (data[0] << 8) | data[1] if len(data) > 1 else None


def _gr_cla(cla):
    """Interindustry CLA of GET RESPONSE on the channel `cla` addresses."""
    if cla & 0x40:
        return 0x40 | (cla & 0x0F)
    return cla & 0x03


class AtCard:
    """Card object over an ipa_core.at.AtEngine (see module docstring).

    engine              ipa_core.at.AtEngine on the modem's AT port
    mode                "auto" | "cgla" | "csim"
    profile             quirks dict from ipa_core.modems (identify() /
                        profile_for()); None = modems.DEFAULT
    segment_timeout_ms  per-APDU wait for STORE DATA of long ES10 functions (profile
                        loads, LoadEuiccPackage, profile switches; see wait_ms)
    apdu_timeout_ms     per-APDU wait for everything else (SELECT, GetEID, reads)
    aid                 application opened by AT+CCHO (the ISD-R)
    stale_sessions      CCHO session ids a previous run left open (closed
                        with AT+CCHC at open(), errors ignored)
    max_response        bound on one reassembled response

    After open(): .mode is "cgla" or "csim", .modem_channel tells how to
    build the IsdrSession, .session is the CCHO session id (cgla), .notes
    lists what was worked around (bounded).
    """

    def __init__(self, engine, mode="auto", profile=None, segment_timeout_ms=SEGMENT_TIMEOUT_MS,
                 apdu_timeout_ms=APDU_TIMEOUT_MS, aid=ISDR_AID, stale_sessions=(),
                 max_response=MAX_RESPONSE):
        if mode not in MODES:
            raise ValueError("AT card mode %r, expected one of %s" % (mode, ", ".join(MODES)))
        self.engine = engine
        self.requested_mode = mode
        self.mode = None if mode == "auto" else mode
        p = dict(modems.DEFAULT)
        if profile:
            p.update(profile)
        self.profile = p
        self.segment_size = p["segment_size"]
        self.segment_timeout_ms = segment_timeout_ms
        self.apdu_timeout_ms = apdu_timeout_ms
        self.aid = aid
        self.stale_sessions = tuple(stale_sessions)[:MAX_STALE_SESSIONS]
        self.max_response = max_response
        self.session = None
        self.channel = 0  # channel AtCard opened itself after a CGLA -> CSIM switch
        self.is_open = False
        self.notes = []
        self.ccho_error = None
        self._restarts = 0  # engine.restarts when this session opened
        self._lost = None  # boot line of a restart that took the session; None after open()
        self._function = None  # tag of the ES10 function whose STORE DATA blocks go out

    @property
    def modem_channel(self):
        """True when IsdrSession must send CLA channel bits 0 and skip MANAGE CHANNEL/SELECT."""
        return self.mode == "cgla" or self.channel != 0

    def note(self, text):
        self.notes.append(text)
        if len(self.notes) > MAX_NOTES:
            self.notes.pop(0)

    # -- open / close ----------------------------------------------------------------

    def open(self):
        """Init commands, stale channels closed, mode chosen (CCHO tried in auto mode)."""
        if self.is_open:
            return self
        # Lines waiting from before (a reboot's chatter, URCs) are settled first:
        # a restart counted from here on took this session with it.
        settle = getattr(self.engine, "settle", None)
        if settle is not None:
            settle()
        self._restarts = self._engine_restarts()
        self._lost = None
        self.ccho_error = None
        self.session = None
        self.channel = 0
        self.mode = None if self.requested_mode == "auto" else self.requested_mode
        p = self.profile
        for cmd in p["init"]:
            self._quiet(cmd, COMMAND_TIMEOUT_MS, "init command")
        if p["optional"]:
            if p["apply_optional"]:
                for cmd in p["optional"]:
                    self._quiet(cmd, COMMAND_TIMEOUT_MS, "optional command")
            else:
                self.note("%s: not sent: %s (%s)" % (p["name"], " ; ".join(p["optional"]),
                                                     p["optional_note"] or "see ipa_core.modems"))
        self.close_stale()
        if self.requested_mode == "csim" or (self.requested_mode == "auto" and p["csim_only"]):
            if self.requested_mode == "auto":
                self.note("%s: CSIM only (modem profile)" % p["name"])
            self.mode = "csim"
        else:
            try:
                self.session = self._ccho()
                self.mode = "cgla"
            except (AtError, ProtocolError) as e:
                if self.requested_mode == "cgla":
                    raise
                self.ccho_error = e
                self.note("AT+CCHO failed (%s): using AT+CSIM" % e)
                self.mode = "csim"
        if self.mode == "csim" and not p["csim_logical_channels"]:
            self.note("%s: no logical channels through CSIM: the ISD-R goes on the basic "
                      "channel (the modem's USIM selection there is replaced)" % p["name"])
        self.is_open = True
        return self

    def _quiet(self, cmd, timeout_ms, what):
        """Run a command whose failure is only worth a note."""
        try:
            self.engine.command(cmd, timeout_ms)
            return True
        except AtError as e:
            self.note("%s %s refused: %s" % (what, cmd, e.final))
        except TimeoutError_:
            self.note("%s %s: no answer within %d ms" % (what, cmd, timeout_ms))
        return False

    def close_stale(self):
        """Close sessions/channels earlier programs left open (errors ignored, bounded)."""
        p = self.profile
        if not p["no_cchc"]:
            for sid in self.stale_sessions:
                self._quiet("AT+CCHC=%s" % sid, STALE_TIMEOUT_MS, "stale session close")
        for ch in p["stale_channels"]:
            apdu = bytes((0x00, 0x70, 0x80, ch))  # MANAGE CHANNEL close, sent on channel 0
            cmd = 'AT+CSIM=%d,"%s"' % (2 * len(apdu), _hex(apdu))
            try:
                self.engine.command(cmd, STALE_TIMEOUT_MS, "+CSIM:")
            except AtError:
                pass  # no CSIM, or channel not open: nothing to close
            except TimeoutError_:
                self.note("closing stale channel %d: no answer within %d ms"
                          % (ch, STALE_TIMEOUT_MS))
                break

    def _ccho(self):
        cmd = 'AT+CCHO="%s"' % _hex(self.aid)
        try:
            lines = self.engine.command(cmd, COMMAND_TIMEOUT_MS)
        except AtError as e:
            raise self._explain(e)
        return parse_ccho(cmd, lines)

    def close(self):
        """Close the session (see _close_session). Subclasses that own the port free it here."""
        self._close_session()

    def _close_session(self):
        """AT+CCHC for the modem's session (its absence/ERROR tolerated), or our own channel.

        The port and the engine stay usable (refresh() goes on with them).
        After a restart nothing is sent: the session and channels are gone.
        """
        was = self.is_open
        self.is_open = False
        if not was:
            return
        if self._restarted():
            self._drop(self.engine.restart_line, False)
            return
        try:
            self._close_commands()
        except ModemRestarted as e:  # closing while the modem reboots: nothing left to close
            self._drop(e.line, False)

    def _close_commands(self):
        if self.channel:
            ch = self.channel
            self.channel = 0
            apdu = bytes((0x00, 0x70, 0x80, ch))
            try:
                self._csim(apdu, self.apdu_timeout_ms)
            except ModemRestarted:
                raise  # the session is gone too: _close_session drops it
            except (TransportError, ProtocolError) as e:  # close must not hide an earlier error
                self.note("closing channel %d failed: %s" % (ch, e))
        if self.session is not None:
            sid = self.session
            self.session = None
            if self.profile["no_cchc"]:
                return
            self._quiet("AT+CCHC=%s" % sid, COMMAND_TIMEOUT_MS, "session close")

    def refresh(self):
        """Make the modem re-read the SIM (profile refresh commands); the card is closed after.

        Only the session is closed (_close_session): the port stays open for
        the refresh commands and the next open(). Boot lines they cause
        (+CPIN: READY, +CFUN: 1) are expected, not a restart.
        """
        self._close_session()
        for cmd in self.profile["refresh"]:
            self.engine.command(cmd, REFRESH_TIMEOUT_MS, restarts=True)

    # -- restarts --------------------------------------------------------------------------

    def _engine_restarts(self):
        return getattr(self.engine, "restarts", 0)

    def _restarted(self):
        """The engine counted a restart since this session was opened."""
        return self._engine_restarts() != self._restarts

    def _drop(self, line, lost=True):
        """The modem restarted: forget the session and channels (nothing to close)."""
        self.note("modem restarted (it sent %r): session %s and channel %d are gone"
                  % (line, self.session, self.channel))
        self.is_open = False
        self.session = None
        self.channel = 0
        self.mode = None if self.requested_mode == "auto" else self.requested_mode
        if lost:
            self._lost = line or "?"

    def __enter__(self):
        if not self.is_open:
            self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    # -- APDUs ---------------------------------------------------------------------------

    def _explain(self, e):
        """The AtError again, with a hint for a person."""
        cmd = e.command.upper()
        hint = CME_HINTS.get(e.cme) if e.cme is not None else None
        if hint is None and e.cms is None:
            if cmd.startswith("AT+CSIM"):
                hint = "the modem refused the APDU through CSIM"
                q = cmd.find('"')
                cla = cmd[q + 1:q + 3]
                if not self.profile["csim_logical_channels"] or cla not in ("00", "80"):
                    hint += " (some modems refuse logical channels through CSIM: try mode=cgla)"
                if isinstance(self.ccho_error, AtError):
                    hint += "; AT+CCHO had failed too (%s)" % self.ccho_error.final
            elif cmd.startswith("AT+CGLA"):
                hint = "the modem refused the APDU through CGLA (try mode=csim)"
            elif cmd.startswith("AT+CCHO"):
                hint = "the modem refused to open the ISD-R channel (try mode=csim)"
        extra = self.profile["hint"]
        if self.profile["optional_note"] and cmd.startswith("AT+CCHO"):
            extra = (extra + "; " if extra else "") + self.profile["optional_note"]
        if extra:
            hint = (hint + "; " if hint else "") + extra
        return AtError(e.command, e.final, hint)

    def _csim(self, apdu, timeout_ms):
        cmd = 'AT+CSIM=%d,"%s"' % (2 * len(apdu), _hex(apdu))
        return self._apdu_command(cmd, timeout_ms, "+CSIM:")

    def _cgla(self, apdu, timeout_ms):
        cmd = 'AT+CGLA=%s,%d,"%s"' % (self.session, 2 * len(apdu), _hex(apdu))
        return self._apdu_command(cmd, timeout_ms, "+CGLA:")

    def _apdu_command(self, cmd, timeout_ms, prefix):
        """One CSIM/CGLA command; never sent when the modem restarted since open().
        "SIM busy" (TRANSIENT_CME) is sent again, BUSY_TRIES in all (the modem did not
        pass the APDU on, so it runs once at most); a lost final OK costs FINAL_GRACE_MS."""
        settle = getattr(self.engine, "settle", None)
        attempt = 0
        while True:
            if settle is not None:
                settle()  # a boot line that came since the last answer is counted now
            if self._restarted():
                raise ModemRestarted(cmd, self.engine.restart_line, "before")
            lost = self.engine.lost_finals
            try:
                lines = self.engine.command(cmd, timeout_ms, prefix,
                                            final_grace_ms=FINAL_GRACE_MS)
                break
            except AtError as e:
                attempt += 1
                if e.cme not in TRANSIENT_CME or attempt >= BUSY_TRIES:
                    raise self._explain(e)
                self.note("%s: %s, sent again" % (shorten(cmd, 24), e.final))
                self.engine.idle(BUSY_BACKOFF_MS << (attempt - 1))
        if self.engine.lost_finals != lost:
            self.note("%s: no final OK within %d ms of the answer: answer taken"
                      % (shorten(cmd, 24), FINAL_GRACE_MS))
        return parse_apdu_answer(cmd, lines, prefix)

    def wait_ms(self, apdu):
        """The wait for `apdu`, sized to what it is (module docstring): STORE DATA by the
        ES10 function its block 0 names, GET RESPONSE and the rest apdu_timeout_ms."""
        if apdu[1] != 0xE2:
            return self.apdu_timeout_ms
        if apdu[3] == 0:  # P2 block number 0: the data starts with the function's tag
            self._function = _first_tag(apdu[5:])
        if self._function in QUICK_FUNCTIONS:
            return self.apdu_timeout_ms
        if self._function in SIGNING_FUNCTIONS:
            return max(SIGNING_TIMEOUT_MS, self.apdu_timeout_ms)
        return self.segment_timeout_ms

    def _one(self, apdu):
        """One APDU through the current mode; 6601 (transmission error) resent once."""
        timeout = self.wait_ms(apdu)
        for attempt in (0, 1):
            if self.mode == "cgla":
                try:
                    resp = self._cgla(apdu, timeout)
                except AtError:
                    if not self.profile["cgla_errors_fall_back_to_csim"]:
                        raise
                    return self._switch_to_csim(apdu)
            else:
                resp = self._csim(self._on_channel(apdu), timeout)
            if resp[-2:] != b"\x66\x01" or attempt:
                return resp
            self.note("SW 6601 (transmission checksum error): APDU resent once")
        return resp

    def _on_channel(self, apdu):
        """CLA with our own channel after a CGLA -> CSIM switch (IsdrSession sends bits 0)."""
        if not self.channel or apdu[0] not in (0x00, 0x80):
            return apdu
        return bytes((cla_for(apdu[0], self.channel),)) + apdu[1:]

    def _switch_to_csim(self, apdu):
        """CGLA failed (Quectel EC20F): reopen the ISD-R on a CSIM channel of our own."""
        self.note("AT+CGLA failed: switching to AT+CSIM on a channel opened here")
        sid = self.session
        self.session = None
        if not self.profile["no_cchc"]:
            self._quiet("AT+CCHC=%s" % sid, COMMAND_TIMEOUT_MS, "session close")
        self.mode = "csim"
        resp = self._csim(b"\x00\x70\x00\x00\x01", self.apdu_timeout_ms)
        if resp[-2:] != b"\x90\x00" or len(resp) != 3 or not 1 <= resp[0] <= 19:
            raise CardError((resp[-2] << 8) | resp[-1],
                            "MANAGE CHANNEL open after the CGLA failure (answer %s)" % _hex(resp))
        self.channel = resp[0]
        sel = bytes((0x00, 0xA4, 0x04, 0x04, len(self.aid))) + self.aid + b"\x00"
        resp = self._chain(sel)
        if resp[-2:] != b"\x90\x00":
            raise CardError((resp[-2] << 8) | resp[-1], "SELECT ISD-R after the CGLA failure")
        if apdu[1] == 0xC0 or (apdu[1] == 0xE2 and apdu[3] != 0):
            raise TransportError(
                "AT+CGLA failed in the middle of a command (INS %02X P2 %02X); switched to "
                "AT+CSIM on channel %d: repeat the ES10 function"
                % (apdu[1], apdu[3], self.channel))
        return self._one(apdu)

    def transmit(self, apdu):
        """Send one command APDU; return the complete response data + SW.

        61xx is followed with GET RESPONSE here (some modems leave it to the
        host); answers the modem cut at csim_max_answer bytes are completed
        with GET RESPONSE (see _chain).
        """
        if not isinstance(apdu, (bytes, bytearray)) or not 4 <= len(apdu) <= MAX_APDU:
            raise ValueError("command APDU of %s, expected 4..%d bytes"
                             % (("%d bytes" % len(apdu)) if isinstance(apdu, (bytes, bytearray))
                                else type(apdu).__name__, MAX_APDU))
        apdu = bytes(apdu)
        if self._lost is not None:
            if apdu[1] == 0x70 and apdu[2] == 0x80:
                # MANAGE CHANNEL close (IsdrSession.close()): the restart closed it.
                self.note("MANAGE CHANNEL close after the modem restarted: answered 9000")
                return b"\x90\x00"
            raise ModemRestarted("APDU " + _hex(apdu[:4]), self._lost, "before")
        if not self.is_open:
            self.open()
        if (self.mode == "csim" and not self.profile["csim_logical_channels"]
                and apdu[1] == 0x70 and apdu[2] == 0x00):
            # MANAGE CHANNEL open: this modem cannot carry channel APDUs through CSIM.
            # 6881 makes IsdrSession select the ISD-R on the basic channel.
            return b"\x68\x81"
        try:
            return self._chain(apdu)
        except ModemRestarted as e:
            self._drop(e.line)
            raise
        except AtError as e:
            if apdu[0] == 0x80 and apdu[1] == 0xAA:
                # TERMINAL CAPABILITY is optional (IsdrSession accepts 6D00 for it).
                self.note("TERMINAL CAPABILITY refused by the modem (%s): answered 6D00" % e.final)
                return b"\x6d\x00"
            raise

    def _chain(self, apdu):
        """apdu's whole answer: 61xx followed, cut answers completed, 6Cxx on our GET RESPONSE."""
        cap = self.profile["csim_max_answer"]
        le_cap = cap - 3 if cap else 256  # answers below the cut are never mistaken for cut
        if cap and apdu[1] == 0xC0 and len(apdu) == 5 and (apdu[4] or 256) > le_cap:
            apdu = apdu[:4] + bytes((le_cap,))
        sent = apdu
        resp = self._one(apdu)
        # The answer in pieces (each at most one GET RESPONSE), joined once at the end: a
        # growing bytearray would leave a trail of freed 256/512/768... byte blocks in a
        # board's heap, and copy the answer at each step.
        parts = []
        size = 0
        cla = _gr_cla(apdu[0])
        ours = False  # resp answers a GET RESPONSE sent here
        learned = False  # the cut was detected here, not known from the profile
        whole = None  # length of the cut answer's BER-TLV: what the completion must reach
        while True:
            cut = self._cut_at(sent, resp, not parts, cap)
            if cut is not None:
                # Cut by the modem (fact sheet: Huawei MT5700): the status word was lost
                # (or only SW1 kept). Ask the card for what follows.
                data, sw1 = cut
                if not parts and sent[1] == 0xE2:
                    t = tlv_total(resp)
                    if t is not None and t >= len(resp) - 1:  # one BER-TLV, longer than the cut
                        whole = t
                if not cap:
                    cap, le_cap, learned = CUT_SIZE, CUT_SIZE - 3, True
                    self.profile["csim_max_answer"] = cap
                    self.note("this modem cut an answer at %d bytes (answer to %s ending %s): "
                              "completed with GET RESPONSE; set the modem profile option "
                              "csim_max_answer=%d" % (cap, _hex(sent[:4]), _hex(resp[-2:]), cap))
                parts.append(data)
                size += len(data)
                self._bound(size, 0)
                if sw1 == 0x90:  # SW2 lost; after 90 it can only be 00
                    self.note("answer cut at %d bytes by the modem; its status word was 90.."
                              % cap)
                    return self._completed(parts, size, whole, sent, cap, learned)
                if sw1 is not None and sw1 != 0x61:
                    raise self._uncut(sent, cap, "the byte after the data, %02X, is no SW1 "
                                                 "that follows data" % sw1, learned)
                sent = bytes((cla, 0xC0, 0x00, 0x00, le_cap))
                try:
                    resp = self._one(sent)
                except AtError as e:
                    if not learned:
                        raise
                    raise self._uncut(sent, cap, "GET RESPONSE failed: %s" % e.final, learned)
                ours = True
                if len(resp) == 2 and resp[0] not in (0x61, 0x6C) and resp != b"\x90\x00":
                    if sw1 == 0x61:
                        raise self._uncut(sent, cap, "the card announced more (61..) but "
                                                     "answered GET RESPONSE with %s" % _hex(resp),
                                          learned)
                    # Nothing more to get: the lost status word was 9000.
                    self.note("answer cut at %d bytes by the modem; completed (%s after it)"
                              % (cap, _hex(resp)))
                    return self._completed(parts, size, whole, sent, cap, learned)
                continue
            sw1, sw2 = resp[-2], resp[-1]
            if not sw_ok(sw1, sw2):
                raise ProtocolError(
                    "answer of %d bytes to %s ends %02X%02X, which is no status word (SW1 is 6X "
                    "or 9X): did the modem cut it? If this modem cuts answers at %d bytes, set "
                    "its profile option csim_max_answer=%d"
                    % (len(resp), _hex(sent[:4]), sw1, sw2, len(resp), len(resp)))
            if sw1 == 0x6C and ours and len(resp) == 2:
                # Wrong Le on our own GET RESPONSE: ask again with the exact length.
                sent = bytes((cla, 0xC0, 0x00, 0x00, sw2))
                resp = self._one(sent)
                ours = False  # a second 6Cxx goes back to the caller
                continue
            if sw1 != 0x61 and not parts and whole is None:
                return resp  # one answer, nothing chained: as it came, no copy
            if len(resp) > 2:
                parts.append(resp[:-2])
                size += len(resp) - 2
            if sw1 == 0x61:
                le = sw2 or 256
                self._bound(size, le)
                sent = bytes((cla, 0xC0, 0x00, 0x00, min(le, le_cap) & 0xFF))
                resp = self._one(sent)
                ours = True
                continue
            if whole is not None and sw1 == 0x90:
                return self._completed(parts, size, whole, sent, cap, learned,
                                       bytes((sw1, sw2)))
            parts.append(bytes((sw1, sw2)))
            return b"".join(parts)

    def _completed(self, parts, size, whole, sent, cap, learned, sw=b"\x90\x00"):
        """The pieces + sw after a cut, when they have the length its BER-TLV header announced.

        A modem that cuts below the card's chunk size (256 bytes) drops data
        the card will not send again: that answer cannot be completed.
        """
        if whole is not None and size != whole:
            raise self._uncut(sent, cap, "the %d-byte response came back with %d bytes: the "
                                         "modem dropped data the card had sent"
                              % (whole, size), learned)
        parts.append(sw)
        return b"".join(parts)

    def _cut_at(self, sent, resp, first, cap):
        """(data, SW1 or None) when the modem cut `resp` (the answer to `sent`), else None.

        A cut answer holds `cap` bytes or more (exactly CUT_SIZE when no cap
        is known); the real one was longer. What it answers tells how much of
        it is data: a GET RESPONSE asked for Le bytes; the first answer to
        STORE DATA is one BER-TLV whose header gives its length. All n bytes
        data: the SW was lost; n-1: the last byte kept is SW1; n-2: complete.
        Otherwise: with a known cap every byte is data unless it ends
        9000/61xx (the MT5700 rule); without one, only an ending that cannot
        follow data (sw_after_data) marks a cut.
        """
        n = len(resp)
        if (n < cap) if cap else (n != CUT_SIZE):
            return None
        if sent[1] == 0xC0 and len(sent) == 5:
            le = sent[4] or 256
            if le >= n:
                return resp, None
            if le == n - 1:
                return resp[:le], resp[le]
            return None  # le + SW fit: a complete answer
        if first and sent[1] == 0xE2:
            t = tlv_total(resp)
            if t is not None and t >= n:
                return resp, None
            if t == n - 1:
                return resp[:t], resp[t]
            if t == n - 2:
                return None
        if cap:
            if resp[-2:] == b"\x90\x00" or resp[-2] == 0x61:
                return None
            return resp, None
        if sw_after_data(resp[-2], resp[-1]):
            return None
        return resp, None

    def _uncut(self, sent, cap, why, learned):
        if learned:
            fix = "set the modem profile option csim_max_answer=%d, or use the other mode " \
                  "(cgla/csim)" % cap
        else:
            fix = "the modem profile option csim_max_answer=%d cannot help here: use the other " \
                  "mode (cgla/csim)" % cap
        return ProtocolError("the modem cut an answer at %d bytes and it cannot be completed "
                             "(%s, after %s): %s" % (cap, why, _hex(sent[:4]), fix))

    def _bound(self, size, more):
        if size + more > self.max_response:
            raise ProtocolError("card response over the %d-byte bound (already %d, %d more "
                                "announced)" % (self.max_response, size, more))


def open_isdr_session(card, **kw):
    """A ready ipa_core.apdu.IsdrSession over `card` (an AtCard or any card object).

    For an AtCard: opens it if needed, and takes modem_channel (True in CGLA
    mode) and segment_size (modem profile) from it; keyword arguments are
    passed to IsdrSession and win over the profile's segment_size.
    """
    from ipa_core.apdu import IsdrSession

    if isinstance(card, AtCard):
        if "aid" in kw and not card.is_open:
            card.aid = kw["aid"]
        if not card.is_open:
            card.open()
        if "segment_size" not in kw:
            kw["segment_size"] = card.segment_size
        kw["modem_channel"] = card.modem_channel
    s = IsdrSession(card, **kw)
    return s.open()
