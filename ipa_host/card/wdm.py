"""The byte link to a QMI or MBIM modem: its control device, or the proxy in front of it.

    link = WdmLink.open("/dev/cdc-wdm0", proxy="qmi-proxy", what="QMI")
    link.send(frame)
    frame = link.recv_frame(head_len, frame_length, timeout)

Direct: the control node (/dev/cdc-wdm0 from the qmi_wwan/cdc_mbim drivers,
or a pty/serial node that carries the same frames) opened read/write; a tty
is put in raw mode. Through a proxy: the abstract unix socket of libqmi's
qmi-proxy or libmbim's mbim-proxy ("\\0qmi-proxy", "\\0mbim-proxy"), which
ModemManager also uses, so the modem stays ModemManager's while we speak to
it. The protocol module sends the proxy's own "open this device" message.

Every wait is bounded (`timeout` seconds per frame) and every failure is a
TransportError that says what to check.
"""

import errno
import os
import select
import socket
import stat
import time

from ipa_core.errors import TimeoutError_, TransportError

MAX_BUFFER = 1 << 20  # unread bytes kept at most (a modem flooding indications)


class LinkClosed(TransportError):
    """The other end closed the link (modem gone, or a proxy that refused us)."""


def proxy_refused(proxy, what):
    """Words for a proxy that drops a client at its first message: libqmi's and libmbim's
    proxies serve only root (and the one user they were built for)."""
    return TransportError(
        "the %s proxy '%s' closed the connection at once: it serves only root (and the user it "
        "was built for); run the IPA as root (docs/modems.md, Raspberry Pi setup), or open the "
        "device directly with ?proxy=0 if nothing else uses it" % (what, proxy))


class WdmLink:
    """A connected byte link (see module docstring); use WdmLink.open()."""

    def __init__(self, fd, sock, label):
        self._fd = fd
        self._sock = sock
        self.label = label
        self._buf = b""

    @classmethod
    def open(cls, device, proxy=None, what="QMI"):
        """Connect to `proxy` (an abstract socket name) or open `device` itself."""
        _check_device(device, what)
        if proxy:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(5)
                s.connect("\0" + proxy)
            except (ConnectionRefusedError, FileNotFoundError):
                s.close()
                raise TransportError(
                    "the %s proxy '%s' is not running: start ModemManager (it starts the proxy), "
                    "run '%s' yourself, or open the device directly with ?proxy=0 (only when "
                    "nothing else uses %s)" % (what, proxy, proxy, device))
            except OSError as e:
                s.close()
                raise TransportError("cannot reach the %s proxy '%s': %s" % (what, proxy, e))
            s.setblocking(False)
            return cls(None, s, "%s via %s" % (device, proxy))
        try:
            fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                raise TransportError("no permission to open %s: run as root or add a udev rule "
                                     "(docs/modems.md)" % device)
            if e.errno == errno.EBUSY:
                raise TransportError("%s is busy (held by ModemManager?): use the proxy (drop "
                                     "?proxy=0)" % device)
            raise TransportError("cannot open %s device %s: %s" % (what, device, e.strerror or e))
        if os.isatty(fd):
            import tty

            tty.setraw(fd)
        return cls(fd, None, device)

    def send(self, data, timeout=5.0):
        deadline = time.monotonic() + timeout
        view = memoryview(bytes(data))
        while view:
            self._wait(False, deadline, "sending %d bytes" % len(data))
            try:
                # MSG_NOSIGNAL: the CLI keeps SIGPIPE default; a proxy gone must be an error, not death
                n = (self._sock.send(view, socket.MSG_NOSIGNAL) if self._sock
                     else os.write(self._fd, view))
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise self._closed()
            except OSError as e:
                raise TransportError("%s: writing failed: %s (modem gone?)" % (self.label, e))
            view = view[n:]

    def recv_frame(self, head_len, frame_length, timeout):
        """The next whole frame: `frame_length(first head_len bytes)` says its size."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buf) >= head_len:
                n = frame_length(self._buf[:head_len])
                if len(self._buf) >= n:
                    frame, self._buf = self._buf[:n], self._buf[n:]
                    return frame
            self._wait(True, deadline, "waiting for an answer")
            try:
                data = self._sock.recv(65536) if self._sock else os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno in (errno.EIO, errno.ECONNRESET):  # a pty's other side closed, a
                    data = b""  # USB device gone, a proxy that dropped us
                else:
                    raise TransportError("%s: reading failed: %s (modem gone?)" % (self.label, e))
            if not data:
                raise self._closed()
            self._buf += data
            if len(self._buf) > MAX_BUFFER:
                raise TransportError("%s: over %d unread bytes" % (self.label, MAX_BUFFER))

    def _closed(self):
        return LinkClosed("%s: the modem (or its proxy) closed the connection: modem reset or "
                          "unplugged?" % self.label)

    def _wait(self, reading, deadline, doing):
        left = deadline - time.monotonic()
        if left > 0:
            obj = self._sock if self._sock else self._fd
            r, w, _x = select.select([obj] if reading else [], [] if reading else [obj], [], left)
            if r or w:
                return
        raise TimeoutError_("%s: no progress %s within the time limit" % (self.label, doing))

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def is_open(self):
        return self._sock is not None or self._fd is not None


def _check_device(device, what):
    if not isinstance(device, str) or not device.startswith("/"):
        raise TransportError("%s device must be a path such as /dev/cdc-wdm0, not %r"
                             % (what, device))
    try:
        st = os.stat(device)
    except FileNotFoundError:
        raise TransportError("%s device %s does not exist: is the modem plugged in, in %s mode? "
                             "(ls /dev/cdc-wdm*; mmcli -L; docs/modems.md)" % (what, device, what))
    except OSError as e:
        raise TransportError("%s device %s cannot be inspected: %s" % (what, device, e))
    if not stat.S_ISCHR(st.st_mode):
        raise TransportError("%s device %s is not a character device" % (what, device))


BUSY_TRIES = 6  # a busy UIM is asked again for BUSY_TRIES * BUSY_PAUSE seconds at most
BUSY_PAUSE = 0.5
MAX_APDU = 261  # short APDU: header, Lc, 255 data bytes, Le


class ChannelCard:
    """What ipa_host.card.qmi.QmiCard and mbim.MbimCard share: a card whose modem opened
    and selected the ISD-R's logical channel (IsdrSession: modem_channel=True, CLA channel
    bits 0, no MANAGE CHANNEL). Subclasses have open(), close() and .channel."""

    modem_channel = True
    channel = None

    def _command_apdu(self, apdu):
        """`apdu` checked (4..MAX_APDU bytes) as bytes; the card opened if it is not yet."""
        if not isinstance(apdu, (bytes, bytearray)) or not 4 <= len(apdu) <= MAX_APDU:
            raise ValueError("command APDU of %r, expected 4..%d bytes" % (apdu, MAX_APDU))
        if self.channel is None:
            self.open()
        return bytes(apdu)

    @staticmethod
    def _until_ready(send, busy, explain):
        """send() again while its error says busy (a UIM just powered up or refreshed gets
        ready within seconds), BUSY_TRIES times at most; other errors go through explain()."""
        for attempt in range(BUSY_TRIES):
            try:
                return send()
            except TransportError as e:
                if not busy(e) or attempt == BUSY_TRIES - 1:
                    raise explain(e)
                time.sleep(BUSY_PAUSE)

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
