"""AT command interpreter of the simulated modem (ITU-T V.250, 3GPP TS 27.007).

The SIM commands it serves:

- 8.17 AT+CSIM=<length>,"<command>" -> +CSIM: <length>,"<response>": the APDU
  goes to the card as it is (the caller owns channels and CLA bits);
  <length> counts hex characters.
- 8.45 AT+CCHO="<dfname>" -> +CCHO: <sessionid>: MANAGE CHANNEL open + SELECT
  by DF name through the card; the session id is an opaque handle the
  modem maps to the card's channel number.
- 8.43 AT+CGLA=<sessionid>,<length>,"<command>" -> +CGLA: <length>,"<response>":
  the modem writes the channel of the session into the CLA byte.
- 8.46 AT+CCHC=<sessionid>: MANAGE CHANNEL close.
- 9.1 AT+CMEE, 8.2 AT+CFUN, 8.3 AT+CPIN?, 5.1-5.4 AT+CGMI/CGMM/CGMR/CGSN, ATI, ATE.

The network side a host or a board asks for around a profile switch:

- 7.2 AT+CREG, 10.1.20 AT+CGREG, 10.1.22 AT+CEREG (those of the personality's
  reg_commands): <stat> 1 (home) or 5 (roaming option) once the modem has
  attached, 2 (searching) before, 0 with the radio off; <n> 2 adds the
  location ("1A2B", "01A2B3C4", AcT 7); <n> 1 or 2 sends the URC form on each change;
- 10.1.1 AT+CGDCONT, 10.1.10 AT+CGACT (the PDP contexts); Quectel AT+QICSGP,
  AT+QIACT, AT+QIDEACT; SIMCom SIM7080 AT+CNCFG, AT+CNACT (its "APP" network,
  URC +APP PDP: <n>,ACTIVE|DEACTIVE) - as data_commands says.

Radio and SIM (AT+CFUN): CFUN=0 powers the SIM down (channels and sessions
gone) and, like CFUN=4, switches the radio off: deregistered, every data
bearer down, the HTTP stack's sessions and settings gone (its files stay).
Back to CFUN=1 the modem reads the SIM again (after CFUN=0 with +CPIN: READY,
when sim_urcs; .sim_iccid is the profile it found, .sim_reads counts the reads) and
registers attach_delay seconds later, unless that profile is one of
no_network_iccids or, with reattach False, the SIM was read again since
power-on: the modem then searches (stat 2) for ever. Bearers stay down until
a command brings them up. At power-on the modem is registered at once, with
the bearers of PDP context 1 (and the SIM7080 APP network 0) up when bearer_at_start says
so; after a reboot (AT+CFUN=1,1, reset()) it registers attach_delay seconds
later with every bearer down. The HTTP stack's requests (AT+QHTTPPOST,
AT+SHCONN, AT+HTTPACTION) need the bearer it uses: Quectel +CME ERROR: 709
(network deactivated), SIM7080 ERROR, A76xx +HTTPACTION: <m>,717,0 (no
network).

A personality with `http_stack` also serves that vendor's HTTP(S) commands
(modem_http.py and its modem_http_<vendor>.py); every other command answers
ERROR, as an unknown command does on a modem.

Raw data: a command such as AT+QHTTPPOST or AT+HTTPDATA answers a prompt
(CONNECT, DOWNLOAD, >) and then takes exactly n bytes of any value, not
lines (begin_data/feed_data); URCs wait until that ends. Bounded by the
command's own input time (tick() ends it).

Personalities (modem_personality.py) bend these as modems in the field do.
The interpreter never touches a tty: it writes through `io.write(bytes)`,
waits through `io.sleep(seconds)`, reboots through `io.boot()` and runs
the end of background work through `io.call_locked(fn)`; SimModem
(modem.py) supplies them on a pty.
"""

import random
import time

CRLF = b"\r\n"
MAX_APDU = 4 + 1 + 255 + 1  # short APDUs only (what modems accept in CSIM/CGLA)
MAX_RESPONSE = 0x10000  # bound on what the modem collects with GET RESPONSE inside
SESSION_BASE = 0x385A7CF  # first session id; any opaque value would do

CME_TEXT = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    13: "SIM failure",
    14: "SIM busy",
    50: "incorrect parameters",
}

URCS = ('+CREG: 1', '+QIND: "csq",20,99', '+CGREG: 1', '+QIND: "act","LTE"')
STRAY = ("+QUSIM: 1", "PB DONE", "^SIMST: 1")
BOOT_URCS = ("RDY", "+CFUN: 1", "+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE",
             "+QIND: PB DONE")
REG_RANGE = {"CREG": 2, "CGREG": 2, "CEREG": 5}  # largest <n> of each (nRF91: CEREG 5)
TAC, CELL, ACT = "1A2B", "01A2B3C4", 7  # location in <n> >= 2 answers; AcT 7 = E-UTRAN
# Commands beyond TS 27.007 per data_commands (modem_personality); others answer ERROR.
VENDOR_DATA = {"quectel": ("QICSGP", "QIACT", "QIDEACT"), "sim7080": ("CNCFG", "CNACT")}
APP_CONTEXTS = 4  # SIM7080 AT+CNACT <pdpidx> 0..3
# HTTP stack commands that need a data bearer, and the bearer each stack uses.
HTTP_NEEDS_BEARER = {"quectel": ("QHTTPPOST", "QHTTPGET"), "sim7080": ("SHCONN",),
                     "simcom": ("HTTPACTION",)}


class CmdError(Exception):
    """A command failed: `cme` is the +CME ERROR number, None for a plain ERROR; `text`
    the verbose form (AT+CMEE=2) when CME_TEXT has none."""

    def __init__(self, cme=None, text=None):
        self.cme = cme
        self.text = text
        Exception.__init__(self, "CME %s" % cme)


class DataSink:
    """Raw bytes a command waits for after its prompt: `length` bytes within `timeout`
    seconds, then on_data(bytes); on_timeout() if they do not all come. `ack_every`:
    write "A" after each such many bytes (Quectel AT+QFUPL ackmode)."""

    def __init__(self, length, timeout, on_data, on_timeout, ack_every=None):
        self.length = length
        self.deadline = time.monotonic() + timeout
        self.on_data = on_data
        self.on_timeout = on_timeout
        self.ack_every = ack_every
        self.buf = bytearray()


class NoAnswer(Exception):
    """The command gets no answer at all (reset in the middle of it)."""


def split_args(text):
    """'1,22,"81E2"' -> [('1', False), ('22', False), ('81E2', True)]; None if a quote is open."""
    out = []
    cur = []
    quoted = False
    was_quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            was_quoted = True
        elif ch == "," and not quoted:
            out.append(("".join(cur).strip(), was_quoted))
            cur = []
            was_quoted = False
        else:
            cur.append(ch)
    if quoted:
        return None
    out.append(("".join(cur).strip(), was_quoted))
    return out


def cla_on_channel(cla, channel):
    """CLA of `cla` (sent with channel bits 0) moved to logical channel 0..19 (ISO 7816-4 5.4.1)."""
    proprietary = cla & 0x80
    chaining = cla & 0x10
    if cla & 0x40:  # further interindustry: one SM bit
        sm = bool(cla & 0x20)
        sm_first = 0x08 if sm else 0
    else:  # first interindustry: two SM bits
        sm_first = cla & 0x0C
        sm = bool(sm_first)
    if channel < 4:
        return proprietary | chaining | sm_first | channel
    return proprietary | 0x40 | (0x20 if sm else 0) | chaining | (channel - 4)


def channel_of(cla):
    return 4 + (cla & 0x0F) if cla & 0x40 else cla & 0x03


def le_of(apdu):
    """The Le byte of a short APDU (0 means 256), None when absent."""
    if len(apdu) == 5:
        return apdu[4]
    if len(apdu) > 5 and len(apdu) == 6 + apdu[4]:
        return apdu[-1]
    return None


class AtInterpreter:
    """The command side of a modem: one call of `handle_line` per received command line."""

    def __init__(self, card, cfg, io):
        self.card = card
        self.cfg = cfg
        self.io = io
        self.rng = random.Random(cfg["seed"])
        self.commands = 0  # command lines seen
        self.apdus = 0  # APDUs the client asked for (CSIM, CGLA)
        self.dead = False
        self.sim_present = card is not None
        self.sessions = {}  # session id (text) -> card channel
        self.open_channels = set()  # card channels open besides the basic one
        self.pending = {}  # channel -> (rest, final SW) for le00_collect="61xx"
        self.first_answer = True
        self._reset_done = False
        self.busy_sent = 0  # "+CME ERROR: 14" answers sent (busy_after fault)
        self.lost_oks = 0  # final OKs not sent (lost_ok_after fault)
        self._lose_ok = False
        self._next_session = 0
        self.cfun = 1
        self.csimsleep = 1
        self.data = None  # DataSink while the modem takes raw bytes
        self.held = []  # URCs held back meanwhile (or until the answer is out)
        self.reg_n = {}  # AT+CREG/CGREG/CEREG <n> (URC mode) per command
        self.attach_at = None  # time.monotonic() when the modem registers; None: radio off
        self.sim_iccid = None  # the enabled profile the modem read from the SIM
        self.sim_reads = 0  # SIM reads after a CFUN change (refreshes) since power-on
        self.apn = {}  # cid -> APN (AT+CGDCONT, AT+QICSGP); SIM7080 APP network "app"
        self.active = set()  # active PDP context ids (AT+CGACT, AT+QIACT)
        self.app_active = set()  # SIM7080 APP networks up (AT+CNACT)
        self.activations = 0  # bearers brought up by a command (not at start)
        self._stat_sent = None  # last <stat> the registration URCs told
        self.http = None
        if cfg.get("http_stack"):
            from ipa_host.sim.modem import modem_http

            self.http = modem_http.make_stack(cfg["http_stack"], self)
        self.power_on(registered=True)
        if cfg["bearer_at_start"]:  # a modem left running with its data session up
            self.active.add(1)
            if cfg["data_commands"] == "sim7080":
                self.app_active.add(0)

    # -- power ---------------------------------------------------------------------------

    def power_on(self, registered=False):
        """Settings, SIM, channels and network as after switching the modem on; registered
        now, or attach_delay seconds from now."""
        self.echo = self.cfg["echo"]
        self.cmee = self.cfg["cmee"]
        self.cfun = 1
        self._sim_reset()
        self.reg_n = dict.fromkeys(self.cfg["reg_commands"], 0)
        self.active.clear()
        self.app_active.clear()
        self.sim_reads = 0
        self.sim_iccid = self._read_iccid()
        self.attach_at = time.monotonic() + (0 if registered else self.cfg["attach_delay"])
        self._stat_sent = self.reg_stat()

    def _sim_reset(self):
        """The SIM powered down or up: channels, sessions and collected answers gone."""
        self.sessions.clear()
        self.open_channels.clear()
        self.pending.clear()
        if self.card is not None and hasattr(self.card, "reset"):
            self.card.reset()

    def _read_iccid(self):
        """The ICCID of the enabled profile, as a modem reads EF ICCID after a SIM reset
        (here: from the virtual eUICC's committed state); None when it cannot tell."""
        state = getattr(self.card, "state", None)
        find = getattr(state, "enabled_profile", None)
        if not self.sim_present or find is None:
            return None
        p = find()
        return p.get("iccid") if p else None

    def reboot(self):
        """What a modem does when it restarts: state lost, RDY and boot URCs after a while."""
        self.power_on()
        self.data = None
        self.held = []
        if self.http is not None:
            self.http.reboot()
        self.io.boot([CRLF + u.encode() + CRLF for u in BOOT_URCS])

    # -- network ---------------------------------------------------------------------------

    def reg_stat(self):
        """<stat> of TS 27.007 7.2: 0 radio off or no SIM, 2 searching, 1 home, 5 roaming."""
        if self.cfun != 1 or not self.sim_present or self.attach_at is None:
            return 0
        cfg = self.cfg
        if (self.sim_iccid is not None and self.sim_iccid in cfg["no_network_iccids"]) \
                or (not cfg["reattach"] and self.sim_reads):
            return 2
        if time.monotonic() < self.attach_at:
            return 2
        return 5 if cfg["roaming"] else 1

    def registered(self):
        return self.reg_stat() in (1, 5)

    def _radio_off(self):
        """CFUN 0 or 4: deregistered, bearers and the HTTP stack's sessions gone."""
        self.attach_at = None
        self.active.clear()
        if self.app_active:
            for i in sorted(self.app_active):
                self.urc_after("+APP PDP: %d,DEACTIVE" % i)
            self.app_active.clear()
        if self.http is not None:
            self.http.reboot()

    def _radio_on(self):
        """Back to CFUN=1: the SIM is read again, registration follows attach_delay later."""
        self.sim_reads += 1
        self.sim_iccid = self._read_iccid()
        self.attach_at = time.monotonic() + self.cfg["attach_delay"]

    def _reg_update(self):
        """Registration URCs (<n> 1 or 2) when <stat> changed since they last told."""
        stat = self.reg_stat()
        if stat == self._stat_sent:
            return
        self._stat_sent = stat
        for name in self.cfg["reg_commands"]:
            n = self.reg_n.get(name, 0)
            if n == 1:
                self.urc("+%s: %d" % (name, stat))
            elif n >= 2:
                self.urc("+%s: %d%s" % (name, stat, self._location(stat)))

    @staticmethod
    def _location(stat):
        return ',"%s","%s",%d' % (TAC, CELL, ACT) if stat in (1, 5) else ""

    # -- raw data and URCs -----------------------------------------------------------------

    def begin_data(self, prompt, length, timeout, on_data, on_timeout, ack_every=None):
        """Write `prompt` and take the next `length` raw bytes (see DataSink). on_data and
        on_timeout return the answer lines (then OK) or raise CmdError/NoAnswer, as a command
        handler does."""
        self.io.write(prompt)
        self.data = DataSink(length, timeout, on_data, on_timeout, ack_every)

    def feed_data(self, chunk):
        """Raw bytes from the client while a DataSink waits; returns how many it took."""
        sink = self.data
        take = bytes(chunk[:sink.length - len(sink.buf)])
        before = len(sink.buf)
        sink.buf += take
        if sink.ack_every:
            for _ in range(len(sink.buf) // sink.ack_every - before // sink.ack_every):
                self.io.write(b"A")
        if len(sink.buf) >= sink.length:
            self.data = None
            self._finish(sink.on_data, bytes(sink.buf))
        return len(take)

    def tick(self):
        """Called while the line is idle: ends a data phase whose input time is over, tells
        a registration change."""
        sink = self.data
        if sink is not None and time.monotonic() > sink.deadline:
            self.data = None
            self._finish(sink.on_timeout)
        if self.data is None:
            self._reg_update()

    def _finish(self, fn, *args):
        try:
            lines = fn(*args)
            final = "OK"
        except CmdError as e:
            lines, final = [], self._error_text(e.cme, e.text)
        except NoAnswer:
            final = None
        if final is not None:
            self._answer(lines or [], final)
        self.flush_urcs()

    def urc(self, text):
        """An unsolicited result code now (held back while raw data comes in)."""
        data = CRLF + text.encode("latin-1") + CRLF
        if self.data is not None:
            self.held.append(data)
        else:
            self.io.write(data)

    def urc_after(self, text):
        """An unsolicited result code written after the answer of the current command."""
        self.held.append(CRLF + text.encode("latin-1") + CRLF)

    def flush_urcs(self):
        if self.data is None:
            held, self.held = self.held, []
            for data in held:
                self.io.write(data)

    def final(self, text):
        """A final result code written by a handler that writes its own answer."""
        self.io.write(CRLF + text.encode("latin-1") + CRLF)

    def error_text(self, err):
        """The final result line for CmdError `err` under the current AT+CMEE mode."""
        return self._error_text(err.cme, err.text)

    # -- lines ---------------------------------------------------------------------------

    def handle_line(self, raw):
        """One command line (without its CR) -> writes the answer through io."""
        if self.dead:
            return
        text = raw.decode("latin-1").strip()
        start = text.upper().find("AT")
        if start < 0:
            return  # V.250: a line without the AT prefix is ignored
        self.commands += 1
        if self.cfg["dead_after"] is not None and self.commands > self.cfg["dead_after"]:
            self.dead = True
            return
        body = text[start + 2:]
        self._reg_update()  # a change not told yet came before this command
        self._lose_ok = False
        try:
            lines = self._dispatch(body)
            final = None if self._lose_ok else "OK"
        except CmdError as e:
            lines = []
            final = self._error_text(e.cme, e.text)
        except NoAnswer:
            self.flush_urcs()
            return
        self._answer(lines, final)
        self.flush_urcs()
        if self.data is None:
            self._reg_update()

    def _error_text(self, cme, text=None):
        if cme is None:
            return "ERROR"
        mode = 1 if self.cfg["cmee_fixed"] else self.cmee
        if mode == 0:
            return "ERROR"
        if mode == 2:
            return "+CME ERROR: %s" % (text or CME_TEXT.get(cme, "unknown"))
        return "+CME ERROR: %d" % cme

    def _garbage(self):
        n = self.rng.randint(1, 8)
        return bytes(self.rng.choice((0x00, 0xFF, 0xFE, 0x80, 0x9C, 0xC3, 0xE2, 0xAA)) for _ in range(n))

    def _answer(self, lines, final):
        cfg = self.cfg
        out = []
        if cfg["garbage"]:
            out.append(self._garbage())
        if cfg["urcs"]:
            if self.first_answer:
                out.append(CRLF + b"RDY" + CRLF)  # the host opened the port while it booted
            out.append(CRLF + self.rng.choice(URCS).encode() + CRLF)
        self.first_answer = False
        for line in lines:
            if cfg["stray_line"] and line.startswith(("+CSIM", "+CGLA")):
                out.append(CRLF + self.rng.choice(STRAY).encode() + CRLF)
            out.append(CRLF + line.encode("latin-1") + CRLF)
        if cfg["urcs"] and lines:
            out.append(CRLF + self.rng.choice(URCS).encode() + CRLF)
        if final is not None:  # None: the lost_ok_after fault
            out.append(CRLF + final.encode() + CRLF)
        if cfg["garbage"]:
            out.append(self._garbage())
        for part in out:
            self.io.write(part)

    # -- dispatch ------------------------------------------------------------------------

    def _dispatch(self, body):
        upper = body.upper()
        if upper == "":
            return []
        if upper in ("E", "E0", "E1"):
            if not self.cfg["sticky_echo"]:
                self.echo = upper == "E1"
            return []
        if upper in ("I", "I0"):
            # One information text of three lines (V.250 5.7.1: lines joined by CR LF).
            return ["\r\n".join((self.cfg["manufacturer"], self.cfg["model"],
                                  "Revision: " + self.cfg["revision"]))]
        if upper in ("Z", "Z0", "&F", "&F0"):
            self.echo = self.cfg["echo"]
            self.cmee = self.cfg["cmee"]
            return []
        if not upper.startswith("+"):
            raise CmdError()
        i = 1
        while i < len(upper) and (upper[i].isalnum() or upper[i] == "_"):
            i += 1
        name, rest = upper[1:i], body[i:]
        if rest == "=?":
            kind, args = "test", None
        elif rest == "?":
            kind, args = "read", None
        elif rest.startswith("="):
            kind, args = "set", rest[1:]
        elif rest == "":
            kind, args = "exec", None
        else:
            raise CmdError()
        handler = getattr(self, "_cmd_" + name.lower(), None)
        if name in REG_RANGE and name not in self.cfg["reg_commands"]:
            handler = None
        for vendor, names in VENDOR_DATA.items():
            if name in names and self.cfg["data_commands"] != vendor:
                handler = None
        if handler is None and self.http is not None:
            handler = self.http.handler(name)
            if handler is not None and kind in ("set", "exec") and \
                    name in HTTP_NEEDS_BEARER[self.cfg["http_stack"]] and not self._http_bearer():
                return self._no_bearer(name, args)
        if handler is None or name in ("CCHO", "CGLA", "CCHC") and not self.cfg["logical_channels"]:
            raise CmdError()
        if kind == "test" and not self.cfg["test_cmds"]:
            raise CmdError()
        return handler(kind, args)

    def _http_bearer(self):
        """The bearer the HTTP stack uses is up: Quectel its "contextid" PDP context, SIM7080
        an APP network (AT+CNACT), A76xx PDP context 1. (A bearer comes up only while the
        modem is registered, and goes down with the radio.)"""
        stack = self.cfg["http_stack"]
        if stack == "sim7080":
            return bool(self.app_active)
        if stack == "quectel":
            return getattr(self.http, "http_cfg", {}).get("contextid", 1) in self.active
        return 1 in self.active

    def _no_bearer(self, name, args):
        """A request without a data bearer, answered as each stack answers it."""
        stack = self.cfg["http_stack"]
        if stack == "quectel":
            raise CmdError(709, "HTTP(S) network deactivated")
        if stack == "sim7080":
            raise CmdError()
        parts = split_args(args or "") or [("1", False)]
        method = parts[0][0] if parts[0][0].isdigit() else "1"
        self.urc_after("+HTTPACTION: %s,717,0" % method)  # A76xx: OK, then "no network"
        return []

    # -- identity and settings ---------------------------------------------------------------

    def _ident(self, kind, value):
        if kind == "test":
            return []
        if kind != "exec":
            raise CmdError()
        return [value]

    def _cmd_cgmi(self, kind, args):
        return self._ident(kind, self.cfg["manufacturer"])

    def _cmd_cgmm(self, kind, args):
        return self._ident(kind, self.cfg["model"])

    def _cmd_cgmr(self, kind, args):
        return self._ident(kind, self.cfg["revision"])

    def _cmd_cgsn(self, kind, args):
        return self._ident(kind, self.cfg["imei"])

    _cmd_gmi = _cmd_cgmi
    _cmd_gmm = _cmd_cgmm
    _cmd_gmr = _cmd_cgmr

    def _cmd_cmee(self, kind, args):
        if kind == "test":
            return ["+CMEE: (0-2)"]
        if kind == "read":
            return ["+CMEE: %d" % (1 if self.cfg["cmee_fixed"] else self.cmee)]
        if kind == "set" and args.strip() in ("0", "1", "2"):
            self.cmee = int(args)
            return []
        raise CmdError(50)

    def _cmd_cfun(self, kind, args):
        if kind == "test":
            return ["+CFUN: (0,1,4),(0,1)"]
        if kind == "read":
            return ["+CFUN: %d" % self.cfun]
        if kind != "set":
            raise CmdError(50)
        parts = [p for p, _q in (split_args(args) or [])]
        if not parts or parts[0] not in ("0", "1", "4") or len(parts) > 2 or \
                (len(parts) == 2 and parts[1] not in ("0", "1")):
            raise CmdError(50)
        if len(parts) == 2 and parts[1] == "1":
            self.io.write(CRLF + b"OK" + CRLF)
            self.reboot()
            raise NoAnswer()
        fun = int(parts[0])
        was = self.cfun
        if fun == was:
            return []
        if fun == 0 or was == 0:
            self._sim_reset()  # the SIM powered down (or up again): channels gone
        if was == 0 and self.sim_present and self.cfg["sim_urcs"]:
            self.urc_after("+CPIN: READY")  # the SIM is up again
        self.cfun = fun
        if fun == 1:
            self._radio_on()
        elif was == 1:
            self._radio_off()
        return []

    def _cmd_cpin(self, kind, args):
        if kind == "test":
            return []
        if kind != "read":
            raise CmdError(3)
        if not self.sim_present:
            raise CmdError(10)
        if self.cfun == 0:
            raise CmdError(13)
        return ["+CPIN: READY"]

    def _cmd_csimsleep(self, kind, args):
        """AT+CSIMSLEEP (SIMCom) / AT+ECSIMSLEEP (MediaTek): accepted and remembered."""
        if kind == "test":
            return ["+CSIMSLEEP: (0,1)"]
        if kind == "read":
            return ["+CSIMSLEEP: %d" % self.csimsleep]
        if kind == "set" and args.strip() in ("0", "1"):
            self.csimsleep = int(args)
            return []
        raise CmdError(50)

    _cmd_ecsimsleep = _cmd_csimsleep

    # -- registration and data bearers ---------------------------------------------------

    def _reg(self, name, kind, args):
        """AT+CREG / AT+CGREG / AT+CEREG: <n>,<stat>[,<tac/lac>,<ci>,<AcT>] (read form)."""
        top = REG_RANGE[name]
        if kind == "test":
            return ["+%s: (0-%d)" % (name, top)]
        if kind == "read":
            n, stat = self.reg_n.get(name, 0), self.reg_stat()
            return ["+%s: %d,%d%s" % (name, n, stat, self._location(stat) if n >= 2 else "")]
        parts = split_args(args or "") or []
        if kind != "set" or len(parts) != 1 or parts[0][1] or not parts[0][0].isdigit() \
                or int(parts[0][0]) > top:
            raise CmdError(50)
        self.reg_n[name] = int(parts[0][0])
        return []

    def _cmd_creg(self, kind, args):
        return self._reg("CREG", kind, args)

    def _cmd_cgreg(self, kind, args):
        return self._reg("CGREG", kind, args)

    def _cmd_cereg(self, kind, args):
        return self._reg("CEREG", kind, args)

    def _cmd_cgdcont(self, kind, args):
        if kind == "test":
            return ['+CGDCONT: (1-15),"IP",,,(0-2),(0-4)']
        if kind == "read":
            return ['+CGDCONT: %d,"IP","%s","0.0.0.0",0,0' % (cid, apn)
                    for cid, apn in sorted((k, v) for k, v in self.apn.items()
                                           if isinstance(k, int))]
        parts = split_args(args or "") or []
        if kind != "set" or len(parts) < 3 or not parts[0][0].isdigit() \
                or not 1 <= int(parts[0][0]) <= 15 or parts[1][0] not in ("IP", "IPV6", "IPV4V6"):
            raise CmdError(50)
        self.apn[int(parts[0][0])] = parts[2][0]
        return []

    def _activate(self, cid):
        """Bring PDP context cid up (registered only); True when it was down."""
        if cid in self.active:
            return False
        if not self.registered():
            return None
        self.active.add(cid)
        self.activations += 1
        return True

    def _cmd_cgact(self, kind, args):
        if kind == "test":
            return ["+CGACT: (0,1)"]
        if kind == "read":
            cids = sorted({1} | {k for k in self.apn if isinstance(k, int)})
            return ["+CGACT: %d,%d" % (cid, 1 if cid in self.active else 0) for cid in cids]
        parts = [p for p, _q in (split_args(args or "") or [])]
        if kind != "set" or not 1 <= len(parts) <= 2 or parts[0] not in ("0", "1") \
                or not all(p.isdigit() and 1 <= int(p) <= 15 for p in parts[1:]):
            raise CmdError(50)
        cid = int(parts[1]) if len(parts) == 2 else 1
        if parts[0] == "0":
            self.active.discard(cid)
        elif self._activate(cid) is None:
            raise CmdError(30)  # no network service
        return []

    def _context(self, args):
        parts = split_args(args or "") or []
        if not parts or parts[0][1] or not parts[0][0].isdigit() \
                or not 1 <= int(parts[0][0]) <= 16:
            raise CmdError(50)
        return int(parts[0][0]), parts

    def _cmd_qicsgp(self, kind, args):
        """Quectel AT+QICSGP=<ctx>[,<type>,"<apn>"[,...]]: a context's APN."""
        if kind == "test":
            return ['+QICSGP: (1-16),(1-3),"APN","USERNAME","PASSWORD",(0-3)']
        if kind != "set":
            raise CmdError(50)
        ctx, parts = self._context(args)
        if len(parts) == 1:
            return ['+QICSGP: 1,"%s","","",0' % self.apn.get(ctx, "")]
        if len(parts) < 3:
            raise CmdError(50)
        self.apn[ctx] = parts[2][0]
        return []

    def _cmd_qiact(self, kind, args):
        """Quectel AT+QIACT=<ctx>; AT+QIACT? lists the active contexts with their address."""
        if kind == "test":
            return ["+QIACT: (1-16)"]
        if kind == "read":
            return ['+QIACT: %d,1,1,"10.64.0.%d"' % (c, c + 1) for c in sorted(self.active)]
        if kind != "set":
            raise CmdError(50)
        ctx, parts = self._context(args)
        if len(parts) != 1 or self._activate(ctx) is None:
            raise CmdError()  # Quectel: a plain ERROR when the context cannot come up
        return []

    def _cmd_qideact(self, kind, args):
        if kind == "test":
            return ["+QIDEACT: (1-16)"]
        if kind != "set":
            raise CmdError(50)
        ctx, _parts = self._context(args)
        self.active.discard(ctx)
        return []

    def _cmd_cncfg(self, kind, args):
        """SIM7080 AT+CNCFG=<pdpidx>,<ip_type>[,"<apn>",...]: an APP network's APN."""
        parts = split_args(args or "") or []
        if kind != "set" or len(parts) < 3 or parts[0][0] not in ("0", "1", "2", "3"):
            raise CmdError(50)
        idx = int(parts[0][0])
        self.apn["app" if idx == 0 else "app%d" % idx] = parts[2][0]
        return []

    def _cmd_cnact(self, kind, args):
        """SIM7080 AT+CNACT=<pdpidx>,<action>: its APP network (what its AT+SH* stack uses);
        OK, then +APP PDP: <pdpidx>,ACTIVE."""
        if kind == "test":
            return ["+CNACT: (0-%d),(0-2)" % (APP_CONTEXTS - 1)]
        if kind == "read":
            return ['+CNACT: %d,%d,"%s"' % ((i, 1, "10.64.0.%d" % (i + 2)) if i in self.app_active
                                            else (i, 0, "0.0.0.0"))
                    for i in range(APP_CONTEXTS)]
        parts = [p for p, _q in (split_args(args or "") or [])]
        if kind != "set" or len(parts) != 2 or not parts[0].isdigit() \
                or not 0 <= int(parts[0]) < APP_CONTEXTS or parts[1] not in ("0", "1", "2"):
            raise CmdError(50)
        idx = int(parts[0])
        if parts[1] == "0":
            if idx in self.app_active:
                self.app_active.discard(idx)
                self.urc_after("+APP PDP: %d,DEACTIVE" % idx)
            return []
        if idx in self.app_active:
            return []
        if not self.registered():
            raise CmdError()
        self.app_active.add(idx)
        self.activations += 1
        self.urc_after("+APP PDP: %d,ACTIVE" % idx)
        return []

    # -- the card ----------------------------------------------------------------------------

    def _card(self, apdu):
        """One APDU to the card, with the modem's view of open channels kept up to date.

        The card offers `max_channels` logical channels: opening one more
        answers 6881, as a UICC with few channels does.
        """
        if not self.sim_present:
            raise CmdError(13)
        if self.cfun == 0:
            raise CmdError(13)
        if len(apdu) >= 4 and apdu[1] == 0x70 and apdu[0] & 0x80 == 0:
            p1, p2 = apdu[2], apdu[3]
            if p1 == 0x00 and len(self.open_channels) >= self.cfg["max_channels"]:
                return b"\x68\x81"
            resp = self.card.transmit(apdu)
            if resp[-2:] == b"\x90\x00":
                if p1 == 0x00:
                    self.open_channels.add(p2 or resp[0])
                elif p1 == 0x80:
                    self.open_channels.discard(p2 or channel_of(apdu[0]))
            return resp
        return self.card.transmit(apdu)

    def _apdu_arg(self, length, data):
        """Check <length>,"<hex>" of CSIM/CGLA and return the APDU bytes."""
        (ltext, lquoted), (hextext, hquoted) = length, data
        if lquoted or not ltext.isdigit() or not hquoted:
            raise CmdError(50)
        if int(ltext) != len(hextext) or len(hextext) % 2 or not 8 <= len(hextext) <= 2 * MAX_APDU:
            raise CmdError(50)
        if self.cfg["upper_hex_only"] and hextext != hextext.upper():
            raise CmdError(50)
        try:
            return bytes.fromhex(hextext)
        except ValueError:
            raise CmdError(50)

    def _before_card(self):
        if self.cfg["delay"]:
            self.io.sleep(self.cfg["delay"])

    def _transmit(self, apdu):
        """An APDU from CSIM/CGLA: reset fault, GET RESPONSE inside and truncation."""
        if not self.sim_present or self.cfun == 0:
            raise CmdError(13)
        busy = self.cfg["busy_after"]
        if busy is not None and self.apdus >= busy and self.busy_sent < self.cfg["busy_count"]:
            self.busy_sent += 1  # the card never sees it; the count of APDUs stays
            raise CmdError(14)
        self.apdus += 1
        if self.apdus - 1 == self.cfg["lost_ok_after"]:
            self._lose_ok = True
            self.lost_oks += 1
        after = self.cfg["reset_after"]
        if after is not None and not self._reset_done and self.apdus > after:
            self._reset_done = True
            if self.cfg["reset_executes"]:
                self._card(apdu)
            self.reboot()
            raise NoAnswer()
        ch = channel_of(apdu[0])
        if apdu[1] == 0xC0 and ch in self.pending:
            return self._serve_pending(ch)
        self.pending.pop(ch, None)
        resp = self._card(apdu)
        if self.cfg["le00_collect"] and resp[-2] == 0x61 and apdu[1] != 0xC0 and le_of(apdu) == 0:
            return self._collect(apdu[0], ch, resp)
        cut = self.cfg["cut_at"]
        if cut is not None and len(resp) > cut:
            return resp[:cut]  # the status word is lost with the rest
        return resp

    def _collect(self, cla, ch, resp):
        """GET RESPONSE inside the modem; the answer kept to le00_keep data bytes."""
        data = bytearray(resp[:-2])
        sw = resp[-2:]
        gr_cla = (0x40 | (cla & 0x0F)) if cla & 0x40 else (cla & 0x03)
        while sw[0] == 0x61 and len(data) < MAX_RESPONSE:
            r = self._card(bytes((gr_cla, 0xC0, 0x00, 0x00, sw[1])))
            data += r[:-2]
            sw = r[-2:]
        keep = self.cfg["le00_keep"]
        if len(data) <= keep:
            return bytes(data) + sw
        if self.cfg["le00_collect"] == "cut":
            return bytes(data[:keep]) + sw
        self.pending[ch] = (bytes(data[keep:]), bytes(sw))
        return self._announce(bytes(data[:keep]), len(data) - keep)

    @staticmethod
    def _announce(data, rest):
        return data + bytes((0x61, min(rest, 256) & 0xFF))

    def _serve_pending(self, ch):
        rest, sw = self.pending.pop(ch)
        keep = self.cfg["le00_keep"]
        part, rest = rest[:keep], rest[keep:]
        if rest:
            self.pending[ch] = (rest, sw)
            return self._announce(part, len(rest))
        return part + sw

    def _apdu_line(self, prefix, resp):
        hexs = resp.hex().upper()
        if self.cfg["bare_apdu"]:
            return "%s:%d,%s" % (prefix, len(hexs), hexs)
        return '%s: %d,"%s"' % (prefix, len(hexs), hexs)

    # -- SIM commands ------------------------------------------------------------------------

    def _cmd_csim(self, kind, args):
        if kind == "test":
            return []
        if kind != "set":
            raise CmdError(50)
        parts = split_args(args)
        if parts is None or len(parts) != 2:
            raise CmdError(50)
        apdu = self._apdu_arg(parts[0], parts[1])
        if self.cfg["csim_basic_only"] and channel_of(apdu[0]) != 0:
            raise CmdError()
        self._before_card()
        return [self._apdu_line("+CSIM", self._transmit(apdu))]

    def _new_session_id(self):
        n = SESSION_BASE + self._next_session
        self._next_session += 1
        return "%016x" % n if self.cfg["session_ids"] == "hex16" else str(n)

    def _session(self, text):
        sid = text.strip()
        if sid in self.sessions:
            return sid
        if self.cfg["session_ids"] == "int" and sid.isdigit():
            for key in self.sessions:
                if int(key) == int(sid):
                    return key
        raise CmdError(50)

    def _cmd_ccho(self, kind, args):
        if kind == "test":
            return []
        if kind != "set":
            raise CmdError(50)
        parts = split_args(args)
        if parts is None or len(parts) != 1 or not parts[0][1]:
            raise CmdError(50)
        aid_hex = parts[0][0]
        try:
            aid = bytes.fromhex(aid_hex)
        except ValueError:
            raise CmdError(50)
        if not 5 <= len(aid) <= 16 or len(aid_hex) != 2 * len(aid):
            raise CmdError(50)
        self._before_card()
        resp = self._card(b"\x00\x70\x00\x00\x01")
        if resp[-2:] != b"\x90\x00" or len(resp) != 3:
            raise CmdError(3)  # no free channel
        ch = resp[0]
        cla = cla_on_channel(0x00, ch)
        resp = self._card(bytes((cla, 0xA4, 0x04, 0x00, len(aid))) + aid + b"\x00")
        while resp[-2] == 0x61:  # the FCI is of no use to the caller of CCHO
            resp = self._card(bytes((cla, 0xC0, 0x00, 0x00, resp[-1])))
        if resp[-2:] != b"\x90\x00":
            self._card(bytes((0x00, 0x70, 0x80, ch)))
            raise CmdError(50)
        for stale in [k for k, v in self.sessions.items() if v == ch]:
            del self.sessions[stale]  # the card gave the number out again: that session is gone
        sid = self._new_session_id()
        self.sessions[sid] = ch
        return [sid] if self.cfg["bare_ccho"] else ["+CCHO: %s" % sid]

    def _cmd_cgla(self, kind, args):
        if kind == "test":
            return []
        if kind != "set":
            raise CmdError(50)
        parts = split_args(args)
        if parts is None or len(parts) != 3 or parts[0][1]:
            raise CmdError(50)
        sid = self._session(parts[0][0])
        apdu = bytearray(self._apdu_arg(parts[1], parts[2]))
        apdu[0] = cla_on_channel(apdu[0], self.sessions[sid])
        self._before_card()
        return [self._apdu_line("+CGLA", self._transmit(bytes(apdu)))]

    def _cmd_cchc(self, kind, args):
        if kind == "test":
            return []
        if kind != "set":
            raise CmdError(50)
        sid = self._session(args)
        ch = self.sessions.pop(sid)
        self.pending.pop(ch, None)
        self._before_card()
        resp = self._card(bytes((0x00, 0x70, 0x80, ch)))
        if resp[-2:] != b"\x90\x00":
            raise CmdError(3)
        return []
