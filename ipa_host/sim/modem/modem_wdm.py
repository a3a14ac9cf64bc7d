"""The two doors of a simulated QMI/MBIM modem: its control node and its proxy socket.

    server = WdmServer(protocol, proxy="ipa-sim-qmi-1234").start()
    server.path    # a pty: the simulated /dev/cdc-wdm0 (frames carry their own lengths)
    server.proxy   # abstract unix socket name speaking the qmi-proxy/mbim-proxy protocol

A real control node (cdc-wdm) hands over one message per read; a pty is a
byte stream, which carries the same frames because QMUX and MBIM headers
state their length. Clients that speak the proxy protocol (libqmi's and
libmbim's, and ipa_host.card.qmi/mbim by default) connect to `proxy`.

`protocol.connection(proxied)` returns one connection's state, whose
`feed(bytes) -> bytes` answers what arrived. One thread serves both doors
with select(); every write is bounded (WRITE_TIMEOUT), and gone() drops the
device mid-session (the pty and every proxy connection close, as when a
modem resets or is unplugged).
"""

import os
import select
import socket
import threading
import time
import tty

POLL = 0.05
WRITE_TIMEOUT = 2.0
MAX_CONNECTIONS = 16


class WdmServer:
    def __init__(self, protocol, proxy):
        self.protocol = protocol
        self.proxy = proxy
        self.path = None
        self._master = self._slave = None
        self._listener = None
        self._conns = {}  # socket -> connection state
        self._device_conn = None
        self._thread = None
        self._stop = threading.Event()
        self._gone = False

    def start(self):
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.path = os.ttyname(slave)
        if self.proxy:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.bind("\0" + self.proxy)
            except OSError as e:
                s.close()
                self._close_pty()
                raise OSError("cannot serve the proxy socket '%s': %s (another proxy running?)"
                              % (self.proxy, e))
            s.listen(4)
            s.setblocking(False)
            self._listener = s
        self._device_conn = self.protocol.connection(False)
        self._thread = threading.Thread(target=self._run, name="WdmServer %s" % self.path,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._drop_all()

    def gone(self):
        """The device disappears now (called from the serving thread by a fault)."""
        self._gone = True

    def _drop_all(self):
        for s in list(self._conns):
            s.close()
        self._conns.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._close_pty()

    def _close_pty(self):
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def _run(self):
        while not self._stop.is_set():
            if self._gone:
                self._drop_all()
                return
            rl = [self._master] + list(self._conns)
            if self._listener is not None:
                rl.append(self._listener)
            try:
                ready, _w, _x = select.select(rl, [], [], POLL)
            except (OSError, ValueError):
                return
            for obj in ready:
                if obj is self._listener:
                    self._accept()
                elif obj == self._master:
                    try:
                        data = os.read(self._master, 65536)
                    except (BlockingIOError, OSError):
                        continue
                    self._write(None, self._device_conn.feed(data))
                else:
                    try:
                        data = obj.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        self._conns.pop(obj).closed()
                        obj.close()
                        continue
                    self._write(obj, self._conns[obj].feed(data))
                if self._gone:
                    break

    def _accept(self):
        try:
            s, _addr = self._listener.accept()
        except OSError:
            return
        if len(self._conns) >= MAX_CONNECTIONS:
            s.close()
            return
        s.setblocking(False)
        self._conns[s] = self.protocol.connection(True)

    def _write(self, sock, data):
        """All of `data` to the pty (sock None) or a proxy client, or dropped after WRITE_TIMEOUT."""
        view = memoryview(data)
        deadline = time.monotonic() + WRITE_TIMEOUT
        while view and not self._gone:
            try:
                n = os.write(self._master, view) if sock is None else sock.send(view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            except OSError:
                return
            if time.monotonic() >= deadline:
                return
            target = self._master if sock is None else sock
            select.select([], [target], [], POLL)


# ---- the modem's side of the card, shared by the QMI and MBIM modems --------------------

MAX_ANSWER = 32768  # a reassembled answer the modem hands back at most


class UiccSide:
    """Logical channels the modem opens for its clients (ISO/IEC 7816-4 MANAGE CHANNEL,
    SELECT by AID) and APDUs sent on them, to `card` (None: slot empty).

    Options (fault personalities): busy = how many channel opens answer "busy"
    first, max_channels = channels the modem grants (0: all held by other
    programs), gone_after = APDUs after which the device disappears.
    """

    def __init__(self, card, busy=0, max_channels=3, gone_after=None, follow_61=True):
        self.card = card
        self.busy = busy
        self.max_channels = max_channels
        self.gone_after = gone_after
        self.follow_61 = follow_61
        self.channels = set()
        self.apdus = 0
        self.opens = 0
        self.largest = 0  # longest answer handed back (data + SW)
        self.get_responses = 0  # GET RESPONSEs the client sent
        if card is not None:
            card.reset()

    def open_channel(self, aid, p2=0x04):
        """("ok", channel, select answer) | ("busy"|"absent"|"full"|"refused", None, answer)."""
        self.opens += 1
        if self.card is None:
            return "absent", None, b""
        if self.busy > 0:
            self.busy -= 1
            return "busy", None, b""
        if len(self.channels) >= self.max_channels:
            return "full", None, b""
        r = self.card.transmit(b"\x00\x70\x00\x00\x01")
        if r[-2:] != b"\x90\x00" or len(r) != 3:
            return "full", None, r
        ch = r[0]
        # The modem's own SELECT: it fetches a T=0 card's 61xx answer itself, whatever it
        # does with the host's APDUs later (raw_61).
        sel = self.apdu(ch, bytes((0x00, 0xA4, 0x04, p2, len(aid))) + aid + b"\x00", count=False,
                        follow=True)
        if sel[-2:] != b"\x90\x00":
            self.card.transmit(bytes((0x00, 0x70, 0x80, ch)))
            return "refused", None, sel
        self.channels.add(ch)
        return "ok", ch, sel

    def close_channel(self, ch):
        if ch not in self.channels:
            return False
        self.channels.discard(ch)
        self.card.transmit(bytes((0x00, 0x70, 0x80, ch)))
        return True

    def apdu(self, ch, apdu, count=True, follow=None):
        """The card's answer to `apdu` on channel `ch` (CLA channel bits set here, as a modem
        does); 61xx followed with GET RESPONSE when follow_61 (or `follow`, if given)."""
        from ipa_core.apdu import cla_for

        if count:
            self.apdus += 1
            if apdu[1] == 0xC0:
                self.get_responses += 1
        apdu = bytes((cla_for(apdu[0], ch),)) + bytes(apdu[1:])
        resp = self.card.transmit(apdu)
        parts = []
        size = 0
        follow = self.follow_61 if follow is None else follow
        while follow and len(resp) >= 2 and resp[-2] == 0x61 and size < MAX_ANSWER:
            parts.append(resp[:-2])
            size += len(resp) - 2
            resp = self.card.transmit(bytes((cla_for(0, ch), 0xC0, 0, 0, resp[-1])))
        parts.append(resp)
        resp = b"".join(parts)
        self.largest = max(self.largest, len(resp))
        return resp

    def gone_now(self):
        return self.gone_after is not None and self.apdus >= self.gone_after



def make_wdm_modem(protocol, card, personality, proxy=None):
    """`ipa-sim modem --protocol qmi|mbim`: (modem, announce); announce() after start() gives
    the --card spec to print on stdout (device path and proxy socket) and words for people."""
    if protocol == "qmi":
        from ipa_host.sim.modem.modem_qmi import SimQmiModem as cls
    else:
        from ipa_host.sim.modem.modem_mbim import SimMbimModem as cls
    proxy = proxy or "ipa-sim-%s-%d" % (protocol, os.getpid())
    modem = cls(card, personality, proxy=proxy)

    def announce():
        return ("%s:%s?proxy=%s" % (protocol, modem.path, proxy),
                "simulated %s modem (%s) on %s, proxy socket @%s; --card %s:%s?proxy=0 opens the "
                "device directly; Ctrl-C to stop" % (protocol.upper(), personality, modem.path,
                                                     proxy, protocol, modem.path))

    return modem, announce


class WdmModem:
    """What the QMI and MBIM modems share: the UICC side, the server, the life cycle.

    Subclasses set PERSONALITIES, BUSY (the personality whose channel opens answer busy
    first), NAME, and `connection(proxied)`.
    """

    PERSONALITIES = ()
    BUSY = None
    NAME = "?"

    def __init__(self, card, personality="textbook", proxy=None, gone_after=3):
        if personality not in self.PERSONALITIES:
            raise ValueError("%s modem personality %r, expected one of %s"
                             % (self.NAME, personality, ", ".join(self.PERSONALITIES)))
        self.personality = personality
        self.uicc = UiccSide(None if personality == "slot_empty" else card,
                             busy=3 if personality == self.BUSY else 0,
                             max_channels=0 if personality == "channel_limit" else 3,
                             gone_after=gone_after if personality == "gone" else None)
        self.received = []  # what each request was, bounded (MAX_RECEIVED)
        self.server = WdmServer(self, proxy)

    def note(self, what):
        if len(self.received) < MAX_RECEIVED:
            self.received.append(what)

    @property
    def path(self):
        return self.server.path

    @property
    def proxy(self):
        return self.server.proxy

    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


MAX_RECEIVED = 10000
