"""AT modem chores for boards whose eUICC sits behind a modem UART (the SIMCom boards).

- power_on(): get a silent modem answering AT, pressing PWRKEY only while it
  is silent (a press while it runs would switch it off), every wait bounded;
- wait_registered(): poll the packet-domain registration (AT+CEREG?, else
  AT+CGREG?; TS 27.007 10.1.22 / 10.1.20) until home or roaming;
- set_apn() / bearer(): the data bearer the modem's HTTP stack needs
  (SIM7080: AT+CNACT, its own "APP PDP"; SIM7600/A76xx: AT+CGACT).

The ipa_core.at.AtEngine does the line discipline; nothing here sleeps
without a bound, and every wait reads the UART (which feeds the watchdog
through uart_stream.UartStream) or sleeps in short steps.
"""

from ipa_core.at import AtError
from ipa_core.errors import ProtocolError, TimeoutError_, TransportError

REGISTERED = (1, 5)  # <stat>: registered home network, registered roaming
POLL_MS = 2000
BEARER_TIMEOUT_MS = 30000


def answers(engine, tries=2, timeout_ms=1000):
    """True when the modem answers AT (garbage discarded, echo switched off)."""
    try:
        engine.sync(tries, timeout_ms)
        return True
    except (TransportError, ProtocolError):
        return False


def power_on(engine, press, clock, sleep_ms, log=print, presses=2, boot_ms=15000,
             try_ms=1000):
    """Make the modem answer AT; returns the number of PWRKEY presses it took (0: it was on).

    press()  pulses PWRKEY (the board knows the pin, level and length)
    clock    callable -> ms (non-wrapping, uart_stream.clock_ms)
    After each press the modem gets boot_ms to answer; after `presses`
    presses a TimeoutError_ says so.
    """
    if answers(engine, 2, try_ms):
        return 0
    for n in range(1, presses + 1):
        log("modem: silent, pressing PWRKEY (%d of %d)" % (n, presses))
        press()
        t0 = clock()
        while clock() - t0 < boot_ms:
            if answers(engine, 1, try_ms):
                log("modem: answering %d ms after PWRKEY" % (clock() - t0))
                return n
            sleep_ms(100)
    raise TimeoutError_("modem did not answer AT within %d ms after each of %d PWRKEY presses "
                        "(power, UART pins and baud rate?)" % (boot_ms, presses))


def registration(engine):
    """<stat> of the packet-domain registration (AT+CEREG?, else AT+CGREG?), or None."""
    for cmd in ("AT+CEREG?", "AT+CGREG?"):
        name = cmd[2:-1] + ":"
        try:
            lines = engine.command(cmd, 3000)
        except AtError:
            continue
        for line in lines:
            if line.upper().startswith(name):
                fields = line[len(name):].split(",")
                # Read form: <n>,<stat>[,...]; a URC form (<stat>[,...]) has one field less.
                f = fields[1] if len(fields) > 1 else fields[0]
                f = f.strip()
                if f.isdigit():
                    return int(f)
    return None


def wait_registered(engine, timeout_ms, clock, sleep_ms, poll_ms=POLL_MS):
    """True once registered (home or roaming) within timeout_ms, else False."""
    t0 = clock()
    while True:
        if registration(engine) in REGISTERED:
            return True
        if clock() - t0 + poll_ms > timeout_ms:
            return False
        sleep_ms(poll_ms)


def set_apn(engine, apn, stack):
    """Define PDP context 1 with `apn` (SIM7080 also its APP network context 0)."""
    if not apn:
        return
    if '"' in apn or len(apn) > 63:
        raise ValueError("APN %r: expected at most 63 characters without quotes" % (apn,))
    engine.command('AT+CGDCONT=1,"IP","%s"' % apn, 5000)
    if stack == "sim7080":
        engine.command('AT+CNCFG=0,1,"%s"' % apn, 5000)


def _active(engine, cmd, ctx):
    """True when `cmd` (AT+CNACT? / AT+CGACT?) lists context ctx as active."""
    name = cmd[2:-1] + ":"
    for line in engine.command(cmd, 5000):
        if line.upper().startswith(name):
            f = [x.strip() for x in line[len(name):].split(",")]
            if len(f) >= 2 and f[0] == str(ctx) and f[1] == "1":
                return True
    return False


def bearer(engine, stack, clock, sleep_ms, timeout_ms=BEARER_TIMEOUT_MS):
    """Bring up the data bearer the modem's HTTP stack uses; TransportError if it stays down.

    sim7080: AT+CNACT=0,1 (the SIM7080's application PDP context 0);
    simcom (SIM7600, A76xx): AT+CGACT=1,1 (PDP context 1).
    """
    if stack == "sim7080":
        query, start, ctx = "AT+CNACT?", "AT+CNACT=0,1", 0
    else:
        query, start, ctx = "AT+CGACT?", "AT+CGACT=1,1", 1
    if _active(engine, query, ctx):
        return False
    try:
        engine.command(start, timeout_ms)
    except AtError as e:  # some firmware answers ERROR while the context comes up anyway
        last = e
    else:
        last = None
    t0 = clock()
    while clock() - t0 < timeout_ms:
        if _active(engine, query, ctx):
            return True
        sleep_ms(1000)
    raise TransportError("data bearer (%s) not active within %d ms%s"
                         % (start, timeout_ms, "" if last is None else ": %s" % last))


# Settings of an AT-modem board (merged into ipa_board.DEFAULTS by the board).
DEFAULTS = {
    "apn": None,  # PDP context 1 (and the SIM7080's APP context); None: the modem's
    "http_stack": None,  # "sim7080" | "simcom" (A76xx, SIM7600); None: from AT+CGMI/CGMM
    "card_mode": "auto",  # ipa_core.at_card: "auto" | "cgla" | "csim"
    "segment_size": None,  # STORE DATA block size; None: the modem profile's
    "attach_timeout_s": 180,  # registration + data bearer before each network set-up
    "modem_baud": 115200,
}


class AtModemBoard:
    """A board whose eUICC and eIM connection both sit behind one modem AT port.

    It is the Board of ipa_board (open_session, open_network, recover,
    connectivity, close) for SIMCom-style modems. A board subclass supplies
    the hardware: `pins` (its PINS table) and, once start() made the Pin,
    `pwrkey` and `pulse_ms` - or its own open_uart() -> machine.UART and
    press_pwrkey() - and optionally power_cycle() (cut and restore the
    modem's supply).

    The ISD-R goes through ipa_core.at_card.AtCard (AT+CCHO/CGLA or
    AT+CSIM, quirks from ipa_core.modems), the eIM through the modem's
    HTTP(S) stack (ipa_core.at_http.open_network). It is also the Ipa's
    connectivity: refresh() makes the modem re-read the eUICC after a
    profile switch, wait_connected() waits for registration and the bearer.
    """

    def __init__(self, cfg, feed=None, log=print, clock=None, sleep=None):
        from uart_stream import clock_ms, sleep_ms

        self.cfg = cfg
        self.feed = feed
        self.log = log
        self.clock = clock or clock_ms
        self.sleep_ms = sleep or sleep_ms
        self.engine = None
        self.card = None
        self.session = None
        self.identity = None
        self.profile = None
        self.stack = cfg.get("http_stack")
        self.connectivity = self

    # -- hardware hooks (the board subclass)

    pins = None  # the board's PINS table: modem_uart, modem_tx, modem_rx (open_uart)
    pwrkey = None  # the machine.Pin driving PWRKEY, high = pressed (press_pwrkey)
    pulse_ms = None  # how long a press lasts: the modem's PWRKEY on-time

    def open_uart(self):
        """The modem UART from self.pins and [modem_baud] (override for other wiring)."""
        if self.pins is None:
            raise NotImplementedError("the board sets pins or overrides open_uart()")
        from uart_stream import open_uart

        p = self.pins
        return open_uart(p["modem_uart"], self.cfg["modem_baud"], p["modem_tx"], p["modem_rx"])

    def press_pwrkey(self):
        """Hold self.pwrkey high for self.pulse_ms (override for other wiring)."""
        if self.pwrkey is None or self.pulse_ms is None:
            raise NotImplementedError("the board sets pwrkey and pulse_ms or overrides "
                                      "press_pwrkey()")
        self.pwrkey.value(1)
        self.sleep_ms(self.pulse_ms)
        self.pwrkey.value(0)

    def power_cycle(self):
        """Cut and restore the modem's supply; False when the board cannot."""
        return False

    # -- bring-up

    def start(self, stream=None):
        """UART, modem answering (PWRKEY when silent), identity, quirks, APN."""
        from ipa_core import modems
        from ipa_core.at import AtEngine
        from uart_stream import UartStream

        if stream is None:
            stream = UartStream(self.open_uart(), idle=self.feed)
        self.engine = AtEngine(stream, clock_ms=self.clock)
        power_on(self.engine, self.press_pwrkey, self.clock, self.sleep_ms, self.log)
        overrides = {}
        if self.cfg.get("segment_size"):
            overrides["segment_size"] = self.cfg["segment_size"]
        self.identity, self.profile = modems.identify(self.engine, overrides)
        if self.stack is None:
            from ipa_core.at_http import pick

            self.stack = pick(self.identity)
            if self.stack is None:
                raise ValueError("modem %r: no known HTTP stack, set http_stack to sim7080 or "
                                 "simcom in the configuration" % (self.identity,))
        self.log("modem: %s (%s), HTTP stack %s" % (self.identity, self.profile["name"],
                                                    self.stack))
        try:
            set_apn(self.engine, self.cfg.get("apn"), self.stack)
        except AtError as e:  # some firmware refuses CGDCONT while attached: keep going
            self.log("modem: setting the APN failed (%s); using the modem's" % e)
        return self

    # -- the Board interface (ipa_board)

    def open_session(self):
        from ipa_core.at_card import AtCard, open_isdr_session

        if self.card is not None:
            # A reopen: give the modem back the old AT+CCHO session (errors only noted).
            self._close(self.card)
        self.card = AtCard(self.engine, mode=self.cfg.get("card_mode") or "auto",
                           profile=self.profile)
        self.session = open_isdr_session(self.card, version=self.cfg.get("sgp32") or "1.2")
        return self.session

    def open_network(self, url, trust_pem=None):
        from ipa_core import at_http

        self.attach()
        net = at_http.open_network(self.engine, url, self.stack)
        if trust_pem is not None and url.lower().startswith("https:"):
            net.install_ca(trust_pem)
        return net

    def attach(self, timeout_ms=None):
        """Registration, then the data bearer; TransportError when either stays down."""
        if timeout_ms is None:
            timeout_ms = int(self.cfg.get("attach_timeout_s", 180) * 1000)
        if not wait_registered(self.engine, timeout_ms, self.clock, self.sleep_ms):
            raise TransportError("modem not registered (AT+CEREG?/AT+CGREG?) within %d ms"
                                 % timeout_ms)
        bearer(self.engine, self.stack, self.clock, self.sleep_ms)

    def recover(self, error=None):
        """Make the modem answer again: AT sync, else PWRKEY, else a supply power cycle."""
        if answers(self.engine, 3, 1000):
            return
        self.log("modem: not answering after %s" % (error,))
        try:
            power_on(self.engine, self.press_pwrkey, self.clock, self.sleep_ms, self.log)
            return
        except TimeoutError_:
            if not self.power_cycle():
                raise
        self.log("modem: supply power-cycled")
        power_on(self.engine, self.press_pwrkey, self.clock, self.sleep_ms, self.log)

    # -- the Ipa's connectivity (ipa_core.ipa)

    def refresh(self):
        """After a profile switch: the modem re-reads the eUICC (the modem profile's refresh
        commands, e.g. AT+CFUN=0 / AT+CFUN=1); the ISD-R session reopens on its next use."""
        if self.card is not None:
            self.card.refresh()
        if self.session is not None:
            self.session.invalidate()  # the refresh closed every channel

    def wait_connected(self, timeout_ms):
        try:
            self.attach(timeout_ms)
            return True
        except TransportError as e:
            self.log("modem: no connection after the profile switch: %s" % e)
            return False

    def close(self):
        self._close(self.session)
        self._close(self.card)
        self.session = None
        self.card = None

    def _close(self, obj):
        f = getattr(obj, "close", None)
        if f is not None:
            try:
                f()
            except Exception as e:  # closing a broken channel fails too: nothing to lose
                self.log("modem: closing %s failed: %s" % (obj.__class__.__name__, e))
