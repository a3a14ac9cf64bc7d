"""A modem's AT port as the byte stream the core's AT engine reads and writes.

    card = open_at_card("/dev/ttyUSB2", baud=115200, mode="auto")
    card.transmit(bytes.fromhex("80E2910006BF3E035C015A"))

`SerialStream` is the host side of the stream contract of ipa_core.at:
`read(n) -> bytes` returns what arrived (b"" when nothing came within the
poll timeout, never blocks longer), `write(data)` sends all bytes, `any()`
says how many bytes wait unread (so the engine reads lines that came before
a command, such as a reboot's RDY, before writing it). It opens
the port exclusively (flock, and TIOCEXCL so a ModemManager probe cannot
open it in the middle of an APDU) and turns every failure into a
TransportError that says what is wrong with the device and what to do.

`open_at_card` builds the whole chain: SerialStream -> ipa_core.at.AtEngine
-> ipa_core.modems.identify (the quirk profile of this modem) ->
ipa_core.at_card.AtCard, opened and ready for IsdrSession.
"""

import errno
import os
import stat

from ipa_core.errors import TimeoutError_, TransportError

try:  # pyserial is a dependency, but a bare copy of the code may lack it; say what to install instead of a bare ImportError
    import serial as _serial
except ImportError:  # pragma: no cover - depends on the environment
    _serial = None

try:
    import fcntl as _fcntl
    import termios as _termios
except ImportError:  # pragma: no cover - not on POSIX
    _fcntl = _termios = None

WRITE_TIMEOUT = 10.0  # seconds; a UART blocked by flow control must not hang the IPA
MAX_READ = 4096


def _need_pyserial():
    if _serial is None:
        raise TransportError("the AT transport needs pyserial: pip install 'pyserial>=3.5'")
    return _serial


def _check_device(device):
    """Clear words for the usual mistakes, before pyserial's generic ones."""
    if not isinstance(device, str) or not device:
        raise TransportError("AT port must be a device path such as /dev/ttyUSB2, not %r" % (device,))
    if "://" in device:  # pyserial URL handlers (socket://, rfc2217://) are not tty checks
        return
    try:
        st = os.stat(device)
    except FileNotFoundError:
        raise TransportError(
            "AT port %s does not exist: is the modem plugged in and enumerated? "
            "(ls /dev/ttyUSB* /dev/ttyACM*; dmesg | tail)" % device)
    except OSError as e:
        raise TransportError("AT port %s cannot be inspected: %s" % (device, e.strerror or e))
    if not stat.S_ISCHR(st.st_mode):
        kind = "folder" if stat.S_ISDIR(st.st_mode) else "regular file" if stat.S_ISREG(st.st_mode) \
            else "non-character file"
        raise TransportError("AT port %s is a %s, expected a serial device (a tty)" % (device, kind))


class SerialStream:
    """A serial port (pyserial) with the read/write contract of ipa_core.at.

    device        /dev/ttyUSB2, /dev/ttyACM0, a pty path, COM3 ...
    baud          line rate (ignored by USB CDC ports and ptys, used by real UARTs)
    poll_timeout  longest wait of one read() for the first byte, in seconds
    exclusive     refuse to share the port (flock + TIOCEXCL)
    rtscts        hardware flow control (some UART-attached modems need it)
    """

    def __init__(self, device, baud=115200, poll_timeout=0.05, exclusive=True, rtscts=False):
        s = _need_pyserial()
        _check_device(device)
        if not isinstance(baud, int) or baud <= 0:
            raise TransportError("baud rate must be a positive integer, not %r" % (baud,))
        if not 0 < poll_timeout <= 5:
            raise TransportError("poll_timeout must be in (0, 5] seconds, not %r" % (poll_timeout,))
        self.device = device
        self.baud = baud
        self.poll_timeout = poll_timeout
        self._excl = False
        try:
            self.port = s.Serial(device, baud, timeout=poll_timeout, write_timeout=WRITE_TIMEOUT,
                                 exclusive=exclusive, rtscts=rtscts)
        except s.SerialException as e:
            raise TransportError(self._open_problem(e))
        except (OSError, ValueError) as e:
            raise TransportError("cannot open AT port %s: %s" % (device, e))
        if exclusive and _fcntl is not None and hasattr(_termios, "TIOCEXCL"):
            try:
                _fcntl.ioctl(self.port.fileno(), _termios.TIOCEXCL)
                self._excl = True
            except (OSError, AttributeError, ValueError):
                pass  # not a tty that supports it: flock alone

    def _open_problem(self, e):
        code = getattr(e, "errno", None)
        text = str(e)
        if code in (errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
            return ("AT port %s is in use by another program (ModemManager, a terminal, another "
                    "IPA?): stop it or keep ModemManager off the port (docs/modems.md)" % self.device)
        if code == errno.EBUSY:
            return ("AT port %s is busy (opened exclusively by another program, e.g. "
                    "ModemManager): see docs/modems.md for the udev rule" % self.device)
        if code in (errno.EACCES, errno.EPERM):
            return ("no permission to open AT port %s: add the user to the dialout group "
                    "(sudo usermod -aG dialout $USER, then log in again)" % self.device)
        if code == errno.ENOENT:
            return "AT port %s disappeared while opening it (modem re-enumerating?)" % self.device
        if "configure port" in text or code == errno.ENOTTY:
            return "%s is not a serial port (a tty): %s" % (self.device, text)
        return "cannot open AT port %s: %s" % (self.device, text)

    # -- the stream contract -------------------------------------------------------------

    def read(self, n):
        """Up to n bytes that arrived; b"" when nothing came within poll_timeout."""
        if n <= 0:
            return b""
        n = min(n, MAX_READ)
        port = self._open_port()
        try:
            data = port.read(1)
            if data and n > 1:
                waiting = port.in_waiting
                if waiting:
                    data += port.read(min(n - 1, waiting))
        except (_serial.SerialException, OSError) as e:
            raise TransportError("reading AT port %s failed: %s (modem unplugged or rebooting?)"
                                 % (self.device, e))
        return bytes(data)

    def any(self):
        """Bytes received and not read yet (never blocks), like machine.UART.any()."""
        port = self._open_port()
        try:
            return port.in_waiting
        except (_serial.SerialException, OSError) as e:
            raise TransportError("reading AT port %s failed: %s (modem unplugged or rebooting?)"
                                 % (self.device, e))

    def write(self, data):
        """Send all of `data` (bounded by WRITE_TIMEOUT)."""
        port = self._open_port()
        try:
            n = port.write(bytes(data))
        except _serial.SerialTimeoutException:
            raise TimeoutError_(
                "writing %d bytes to AT port %s took over %.0f s: hardware flow control "
                "stuck or the modem hangs" % (len(data), self.device, WRITE_TIMEOUT))
        except (_serial.SerialException, OSError) as e:
            raise TransportError("writing to AT port %s failed: %s (modem unplugged?)"
                                 % (self.device, e))
        if n is not None and n != len(data):
            raise TransportError("AT port %s took %d of %d bytes" % (self.device, n, len(data)))

    # -- housekeeping -----------------------------------------------------------------------

    def _open_port(self):
        port = getattr(self, "port", None)
        if port is None or not port.is_open:
            raise TransportError("AT port %s is closed" % self.device)
        return port

    def reset_input(self):
        """Drop bytes that arrived and were not read (stale answers, URCs)."""
        self._open_port().reset_input_buffer()

    def close(self):
        port, self.port = getattr(self, "port", None), None
        if port is None:
            return
        if self._excl and hasattr(_termios, "TIOCNXCL"):
            try:
                # TIOCEXCL outlives our fd when another holds the tty (a pty's master side).
                _fcntl.ioctl(port.fileno(), _termios.TIOCNXCL)
            except (OSError, ValueError):
                pass
        port.close()

    @property
    def is_open(self):
        port = getattr(self, "port", None)
        return port is not None and port.is_open

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "SerialStream(%r, %d)" % (self.device, self.baud)


# ---- the AT card on a serial port ---------------------------------------------------------


def _at_card_class():
    from ipa_core.at_card import AtCard

    class SerialAtCard(AtCard):
        """An ipa_core.at_card.AtCard that owns its SerialStream: close() frees the port.

        Extra attributes: stream (SerialStream), device, identity (what
        AT+CGMI/AT+CGMM answered). refresh() (inherited) closes only the
        session and keeps the port.
        """

        def close(self):
            try:
                AtCard.close(self)
            finally:
                stream = getattr(self, "stream", None)
                if stream is not None:
                    stream.close()

        def __repr__(self):
            return "SerialAtCard(%r, %s, %s)" % (getattr(self, "device", None),
                                                self.mode or self.requested_mode,
                                                self.profile.get("name"))

    return SerialAtCard


def open_at_card(device, baud=115200, mode="auto", profile_overrides=None, poll_timeout=0.05,
                 rtscts=False, trace=None, urc=None, **card_options):
    """A ready AtCard on the modem at `device` (TS 27.007 CSIM/CCHO/CGLA).

    Opens the port, gets the modem's attention (AT, ATE0), asks who it is
    (ipa_core.modems.identify: AT+CGMI/AT+CGMM) to pick its quirk profile,
    `profile_overrides` (a dict of ipa_core.modems profile keys) win over
    it, and opens the AtCard in `mode` ("auto" tries AT+CCHO and falls back
    to AT+CSIM). card_options go to AtCard: segment_timeout_ms,
    apdu_timeout_ms, stale_sessions, aid, max_response.

    Use it with ipa_core.at_card.open_isdr_session(card); card.close()
    closes the session and the port. TransportError (and its AtError,
    TimeoutError_) when the port or the modem fails.
    """
    from ipa_core import modems
    from ipa_core.at import AtEngine

    if mode not in ("auto", "cgla", "csim"):
        raise ValueError("AT card mode %r, expected auto, cgla or csim" % (mode,))
    cls = _at_card_class()
    stream = SerialStream(device, baud, poll_timeout=poll_timeout, rtscts=rtscts)
    try:
        engine = AtEngine(stream, urc=urc, trace=trace)
        try:
            engine.sync()
        except TimeoutError_ as e:
            raise TimeoutError_("AT port %s: %s; is it the modem's AT port (not its NMEA/diag "
                                "port), at %d baud?" % (device, e, baud))
        identity, profile = modems.identify(engine, profile_overrides)
        card = cls(engine, mode=mode, profile=profile, **card_options)
        card.stream = stream
        card.device = device
        card.identity = identity
        card.open()
    except BaseException:
        stream.close()
        raise
    return card
