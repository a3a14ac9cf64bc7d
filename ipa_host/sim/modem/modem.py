"""A simulated cellular modem on a pseudo-terminal, holding a (virtual) eUICC.

    card = VirtualEuicc("pki/", state_path="euicc.json")
    with SimModem(card, personality="bare_ccho") as modem:
        serial.Serial(modem.path)  # AT+CCHO / AT+CGLA / AT+CSIM reach the card

The modem serves AT commands (modem_at.py: TS 27.007 CSIM, CCHO, CGLA, CCHC
and the identity/settings commands) on the master side of a pty; `.path` is
the slave side a client opens like /dev/ttyUSB2. APDUs go to `card.transmit`.
Personalities (modem_personality.py) reproduce what modems in the field do:
missing test commands, bare answers, +CME ERROR, echo and URCs, truncated
answers, slowness, silence, garbage, reboots in the middle of an APDU.

Creating a SimModem powers it on: the card is reset (card.reset(), its
channels closed) and the modem is registered (AT+CREG/CGREG/CEREG), with its
data bearers up unless bearer_at_start=False; AT+CFUN=0/1 makes it read the
SIM again and register attach_delay seconds later (modem_at.py). The modem
outlives its clients, like hardware: channels
a client leaves open stay open for the next one. Everything is bounded: a command line of
more than MAX_LINE bytes answers ERROR, output nobody reads is dropped
after WRITE_TIMEOUT, and stop() ends the thread within a poll interval
(or the current delay).

Personalities with `http_stack` also serve a vendor's HTTP(S) commands and send
the requests to the (loopback) server in the URL: modem_http.py.

`ipa-sim modem --personality X [--pki DIR --state FILE] [--baud N]` runs one
until SIGINT/SIGTERM and prints the pty path (modem_main).
"""

import argparse
import collections
import os
import select
import signal
import sys
import threading
import time
import tty

from ipa_host.sim.modem import modem_personality
from ipa_host.sim.modem.modem_at import AtInterpreter

MAX_LINE = 8192  # AT+CGLA of a 261-byte APDU is ~540 characters
POLL = 0.05
WRITE_TIMEOUT = 2.0
LOG_LINES = 2000

PERSONALITIES = tuple(sorted(modem_personality.PERSONALITIES))


class SimModem:
    """A modem with `personality` on a pty; APDUs go to `card` (None: no SIM inserted).

    baud     pace output like a UART at this rate (10 bits per byte); None: no pacing
    options  override personality options (see modem_personality), e.g. delay=0.2
    """

    def __init__(self, card, personality="textbook", baud=None, **options):
        self.cfg = modem_personality.resolve(personality, options)
        if baud is not None and (not isinstance(baud, int) or baud <= 0):
            raise ValueError("baud must be a positive integer, not %r" % (baud,))
        self.personality = personality
        self.card = card
        self.baud = baud
        self.path = None
        self.received = collections.deque(maxlen=LOG_LINES)  # command lines, as text
        self.written = 0
        self.dropped = 0
        self._master = None
        self._slave = None
        self._thread = None
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._discard = False
        self._congested = False
        self.at = AtInterpreter(card, self.cfg, self)

    # -- life cycle ----------------------------------------------------------------------

    def start(self):
        """Open the pty and serve in a thread. Returns self."""
        if self._thread is not None:
            raise RuntimeError("SimModem already started")
        master, slave = os.openpty()
        tty.setraw(slave)  # no line discipline: bytes pass as they are, no echo by the kernel
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        # Holding the slave open keeps the master readable when a client closes
        # (else reads fail with EIO until the next open), as a real port stays.
        self.path = os.ttyname(slave)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="SimModem %s" % self.path, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        """Stop serving and close the pty (the path disappears)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("SimModem thread did not stop within %.1f s" % timeout)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def __enter__(self):
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- what tests poke -----------------------------------------------------------------

    @property
    def sessions(self):
        """Open CCHO sessions: {session id: card channel}."""
        with self._lock:
            return dict(self.at.sessions)

    @property
    def open_channels(self):
        """Card channels open besides the basic one, as the modem saw them."""
        with self._lock:
            return set(self.at.open_channels)

    def reset(self):
        """Reboot the modem now (channels closed, RDY and boot URCs)."""
        with self._lock:
            self.at.reboot()

    def revive(self):
        """A `dead` modem answers again (as after a power cycle, without the URCs)."""
        with self._lock:
            self.at.dead = False
            self.at.commands = 0
            self.at.cfg = dict(self.at.cfg, dead_after=None)

    def set_sim(self, present):
        """Insert (True) or remove (False) the SIM card."""
        with self._lock:
            self.at.sim_present = bool(present) and self.card is not None
            if not present:
                self.at.power_on()

    def inject(self, data):
        """Send raw bytes to the client now (an unsolicited line, noise)."""
        with self._lock:
            self.write(bytes(data))

    # -- io for the interpreter ----------------------------------------------------------

    def write(self, data):
        """Write to the client, paced to `baud`; dropped after WRITE_TIMEOUT if nobody reads."""
        if self._master is None or not data:
            return
        if self.baud:
            self._stop.wait(len(data) * 10.0 / self.baud)
        view = memoryview(data)
        deadline = time.monotonic() + (0 if self._congested else WRITE_TIMEOUT)
        while view:
            try:
                n = os.write(self._master, view)
                view = view[n:]
                self.written += n
                continue
            except BlockingIOError:
                pass
            except OSError:
                break
            if time.monotonic() >= deadline or self._stop.is_set():
                break
            select.select([], [self._master], [], POLL)
        if view:
            self.dropped += len(view)
            self._congested = True

    def sleep(self, seconds):
        """Wait (a slow card or modem); returns early when the modem stops."""
        self._stop.wait(seconds)

    def boot(self, urcs):
        """Reboot: input during the boot is lost, then the boot URCs."""
        self._discard = True
        end = time.monotonic() + self.cfg["boot_delay"]
        while not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                break
            self._stop.wait(min(left, POLL))
            self._drain()
        self._drain()
        for u in urcs:
            self.write(u)

    def _drain(self):
        try:
            while os.read(self._master, 4096):
                pass
        except OSError:
            pass

    # -- server thread -------------------------------------------------------------------

    def _run(self):
        line = bytearray()
        overflow = False
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], POLL)
            except (OSError, ValueError):
                break
            if not ready:
                self._tick()
                continue
            try:
                data = os.read(self._master, 4096)
            except BlockingIOError:
                continue
            except OSError:  # no client has the slave open yet/any more
                self._stop.wait(POLL)
                self._tick()
                continue
            if not data:
                continue
            self._congested = False
            with self._lock:
                if self.at.dead:
                    continue
                overflow = self._take(data, line, overflow)

    def _tick(self):
        with self._lock:
            if not self.at.dead:
                self.at.tick()

    def _take(self, data, line, overflow):
        """Bytes from the client: command lines, or raw data while a command waits for it.
        Echo (when on) repeats command bytes, never raw data."""
        echo = bytearray() if self.at.echo else None
        self._discard = False
        i, n = 0, len(data)
        while i < n:
            if self._discard or self.at.dead or self._stop.is_set():
                line.clear()
                break
            if self.at.data is not None:
                if echo:
                    self.write(bytes(echo))
                    echo.clear()
                i += self.at.feed_data(data[i:])
                continue
            b = data[i]
            i += 1
            if echo is not None:
                echo.append(b)
            if b == 0x0D:
                if echo:
                    self.write(bytes(echo))
                    echo.clear()
                if overflow:
                    self.received.append("<%d+ bytes>" % MAX_LINE)
                    self.write(b"\r\nERROR\r\n")
                else:
                    self.received.append(line.decode("latin-1"))
                    self.at.handle_line(bytes(line))
                line.clear()
                overflow = False
                if self.at.data is not None and i < n and data[i] == 0x0A:
                    i += 1  # CR LF ended the command: the LF is not raw data
            elif b == 0x0A:
                continue  # V.250: S3 (CR) ends a line; LF is not part of it
            elif len(line) >= MAX_LINE:
                overflow = True
            else:
                line.append(b)
        if echo:
            self.write(bytes(echo))
        return overflow

    def call_locked(self, fn):
        """fn() under the modem's lock (the end of a background HTTP request writes its URC
        so); nothing once the modem stopped."""
        with self._lock:
            if self._master is not None and not self._stop.is_set():
                fn()


# ---- command line ------------------------------------------------------------------------


def _wdm_personalities(protocol=None):
    from ipa_host.sim.modem import modem_mbim, modem_qmi

    if protocol == "qmi":
        return modem_qmi.PERSONALITIES
    if protocol == "mbim":
        return modem_mbim.PERSONALITIES
    return modem_qmi.PERSONALITIES + modem_mbim.PERSONALITIES


def modem_main(argv=None, card=None):
    """`ipa-sim modem --personality X [--pki DIR --state FILE] [--baud N]`: serve until
    SIGINT/SIGTERM; prints the pty path on stdout."""
    from ipa_host.sim.modem.mm_dbus import PERSONALITIES as MM_PERSONALITIES

    p = argparse.ArgumentParser(
        prog="ipa-sim modem",
        description="A simulated modem on a pty with the virtual eUICC as its SIM.")
    p.add_argument("--protocol", default="at", choices=("at", "qmi", "mbim"),
                   help="at: AT commands on a pty (default); qmi/mbim: a QMI or MBIM control "
                        "node on a pty plus its proxy socket (prints the --card to use)")
    p.add_argument("--personality", default="textbook",
                   choices=sorted(set(PERSONALITIES) | set(_wdm_personalities())),
                   help="how the modem deviates from TS 27.007 (default textbook); with "
                        "--protocol qmi: %s; mbim: %s" % ("/".join(_wdm_personalities("qmi")),
                                                          "/".join(_wdm_personalities("mbim"))))
    p.add_argument("--proxy", metavar="NAME",
                   help="qmi/mbim: abstract socket name of the simulated proxy (default "
                        "ipa-sim-<protocol>-<pid>; qmi-proxy/mbim-proxy lets qmicli/mbimcli -p in)")
    p.add_argument("--pki", metavar="DIR", help="test PKI folder of the eUICC (created when missing)")
    p.add_argument("--state", metavar="FILE", help="where the eUICC keeps its state")
    p.add_argument("--strict", action="store_true",
                   help="the eUICC refuses the APDU forms it otherwise accepts as real eUICCs "
                        "do (docs/sim-euicc.md, 'lenient')")
    p.add_argument("--baud", type=int, help="pace the output like a UART at this rate")
    p.add_argument("--delay", type=float, help="seconds per command reaching the card")
    p.add_argument("--dead-after", type=int, metavar="N", help="stop answering after N commands")
    p.add_argument("--reset-after", type=int, metavar="N", help="reboot during APDU N+1")
    p.add_argument("--max-channels", type=int, metavar="N", help="logical channels of the card")
    p.add_argument("--seed", type=int, help="seed of the random garbage/URC choices")
    p.add_argument("--http-error", type=int, metavar="CODE",
                   help="every request of the modem's HTTP stack ends with this stack error "
                        "code (e.g. 702 on quectel_http, 706 on a7670)")
    p.add_argument("--read-block", type=int, metavar="N",
                   help="HTTP responses go out in pieces of N bytes (see --read-pause)")
    p.add_argument("--read-pause", type=float, metavar="S", help="seconds between those pieces")
    p.add_argument("--attach-delay", type=float, metavar="S",
                   help="seconds from AT+CFUN=1 (or a reboot) until the modem is registered")
    p.add_argument("--modemmanager", nargs="?", const="private", metavar="BUS",
                   help="qmi/mbim: also a simulated ModemManager owning the modem, on D-Bus "
                        "address BUS or on a private dbus-daemon (prints the "
                        "DBUS_SYSTEM_BUS_ADDRESS for mmcli and ipa)")
    p.add_argument("--mm-personality", default="textbook", choices=MM_PERSONALITIES,
                   help="with --modemmanager: how the simulated ModemManager behaves "
                        "(docs/sim-modemmanager.md)")
    args = p.parse_args(argv)
    if args.modemmanager and args.protocol == "at":
        p.error("--modemmanager needs --protocol qmi or mbim")
    if args.baud is not None and args.baud <= 0:
        p.error("--baud must be a positive number")
    options = {k: v for k, v in (("delay", args.delay), ("dead_after", args.dead_after),
                                 ("reset_after", args.reset_after),
                                 ("max_channels", args.max_channels), ("seed", args.seed),
                                 ("http_error", args.http_error),
                                 ("http_read_block", args.read_block),
                                 ("http_read_pause", args.read_pause),
                                 ("attach_delay", args.attach_delay))
               if v is not None}
    if card is None:
        if not args.pki:
            p.error("--pki DIR is required (the eUICC's keys and certificates)")
        from ipa_host.sim import pki
        from ipa_host.sim.euicc.euicc import VirtualEuicc

        try:
            if not os.path.exists(os.path.join(args.pki, "euicc.key")):
                print("creating a test PKI in %s" % args.pki, file=sys.stderr)
                pki.create_test_pki(args.pki)
            card = VirtualEuicc(args.pki, state_path=args.state, strict=args.strict)
        except (OSError, ValueError) as e:
            print("ipa-sim modem: %s" % e, file=sys.stderr)
            return 2
    if args.protocol != "at":
        from ipa_host.sim.modem.modem_wdm import make_wdm_modem

        if args.personality not in _wdm_personalities(args.protocol):
            p.error("--personality %s is not one of --protocol %s's: %s"
                    % (args.personality, args.protocol, ", ".join(_wdm_personalities(args.protocol))))
        modem, announce = make_wdm_modem(args.protocol, card, args.personality, args.proxy)
    else:
        if args.personality not in PERSONALITIES:
            p.error("--personality %s is not an AT modem's: %s" % (args.personality,
                                                                   ", ".join(PERSONALITIES)))
        try:
            modem = SimModem(card, args.personality, baud=args.baud, **options)
        except ValueError as e:
            p.error(str(e))

        def announce():
            return modem.path, "simulated %s modem (%s %s) on %s; Ctrl-C to stop" % (
                args.personality, modem.cfg["manufacturer"], modem.cfg["model"], modem.path)
    done = threading.Event()
    previous = {}

    def on_signal(signum, frame):
        done.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread: the caller stops us another way
            pass
    try:
        modem.start()
    except OSError as e:  # qmi/mbim: the proxy socket name is taken
        print("ipa-sim modem: %s" % e, file=sys.stderr)
        return 2
    stop_mm = None
    if args.modemmanager:
        from ipa_host.sim.modem import mm_dbus

        try:
            stop_mm, bus_line = mm_dbus.serve_for(modem, args.protocol, card, args.modemmanager,
                                                  args.mm_personality)
        except (OSError, ValueError) as e:
            modem.stop()
            print("ipa-sim modem: simulated ModemManager: %s" % e, file=sys.stderr)
            return 2
    try:
        out, words = announce()
        print(out, flush=True)
        if stop_mm is not None:
            print(bus_line, flush=True)
        print(words, file=sys.stderr, flush=True)
        while not done.wait(0.5):
            pass
    finally:
        if stop_mm is not None:
            stop_mm()
        modem.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(modem_main())
