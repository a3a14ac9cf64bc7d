"""Serve a card object to pcscd through the vsmartcard "vpcd" virtual reader.

vpcd (Debian package vsmartcard-vpcd) is a pcsc-lite reader driver that
listens on TCP (35963 by default, one port per slot) for a program playing
the card. Every message in both directions is a 2-byte big-endian length and
a payload. A 1-byte payload from vpcd is a control code: 00 power off,
01 power on, 02 reset (none of these is answered), 04 "send the ATR"
(answered with the ATR). A longer payload is a command APDU, answered with
the response APDU (data + SW1 SW2).

With this bridge the real PC/SC stack (pcscd, libpcsclite, pyscard, any
PC/SC tool) reaches the virtual eUICC exactly as it would a chip in a USB
reader. Closing the connection is "card removed"; connecting again is
"card inserted". vpcd listens on all interfaces: keep it on a test machine or
firewall the port.
"""

import argparse
import logging
import socket
import struct
import sys
import threading
import time
import traceback

from ipa_core.errors import ProtocolError, TransportError

log = logging.getLogger("ipa.sim.vpcd")

DEFAULT_PORT = 35963
CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4
MAX_FRAME = 0xFFFF  # the 2-byte length field is the hard bound
SW_NO_DIAGNOSIS = b"\x6f\x00"  # answered when the card object fails or overflows
POLL = 0.2  # seconds between checks of the stop flag while blocked
CONNECT_TIMEOUT = 2.0


def parse_endpoint(text, default_port=DEFAULT_PORT):
    """'host:port', 'host' or ':port' -> (host, port); a ValueError names what came."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, ""
    host = host or "127.0.0.1"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 0x10000:
        raise ValueError("vpcd port must be a number 1..65535, not %r (in %r)" % (port, text))
    return host, int(port)


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only

class VpcdBridge:
    """Connect to vpcd at (host, port) and answer for `card`.

    `card` needs `transmit(apdu) -> bytes` and `atr` (bytes); `reset()` is
    called on power-on and reset when the card has one. `start()` runs the
    bridge in a daemon thread; it reconnects (every `retry` seconds) when
    vpcd is not there yet or went away, until `stop()`.
    """

    def __init__(self, card, host="127.0.0.1", port=DEFAULT_PORT, retry=0.2, reconnect=True):
        atr = getattr(card, "atr", None)
        if not isinstance(atr, (bytes, bytearray)) or not 2 <= len(atr) <= 33:
            raise ValueError("card.atr must be 2..33 bytes (ISO 7816-3), not %r" % (atr,))
        if not callable(getattr(card, "transmit", None)):
            raise ValueError("card must have transmit(apdu) -> bytes")
        self.card = card
        self.host = host
        self.port = port
        self.retry = retry
        self.reconnect = reconnect
        self.connected = threading.Event()
        self.apdus = 0  # command APDUs answered (for tests and logs)
        self.errors = []  # (time, text) of everything that went wrong, newest last
        self._stop = threading.Event()
        self._sock = None
        self._thread = None
        self._lock = threading.Lock()

    # ---- lifecycle ---------------------------------------------------------

    def start(self, wait=None):
        """Start serving in a thread. `wait` seconds: block until connected to vpcd
        (TransportError if that does not happen in time)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("VpcdBridge already started")
        self._stop.clear()
        self.connected.clear()
        self._thread = threading.Thread(
            target=self.run, name="vpcd-%s:%d" % (self.host, self.port), daemon=True
        )
        self._thread.start()
        if wait is not None and not self.connected.wait(wait):
            last = self.errors[-1][1] if self.errors else "no answer"
            self.stop()
            raise TransportError(
                "could not connect to vpcd at %s:%d within %.1f s (%s); is pcscd running "
                "with the vpcd reader on that port?" % (self.host, self.port, wait, last)
            )
        return self

    def stop(self, timeout=5.0):
        """Disconnect (vpcd sees the card removed) and end the thread."""
        self._stop.set()
        self._close()
        t, self._thread = self._thread, None
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            if t.is_alive():
                raise TransportError("vpcd bridge thread did not end within %.1f s" % timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _close(self):
        with self._lock:
            s, self._sock = self._sock, None
        self.connected.clear()
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already disconnected: nothing to tell the peer
            s.close()

    def _error(self, text):
        self.errors.append((time.time(), text))
        del self.errors[:-50]  # bounded history
        log.warning("vpcd %s:%d: %s", self.host, self.port, text)

    # ---- the loop ----------------------------------------------------------

    def run(self):
        """Connect, serve until the peer goes, reconnect; return when stopped."""
        reported = False
        while not self._stop.is_set():
            try:
                s = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
            except OSError as e:
                if not reported:  # one line per outage, not one per retry
                    self._error("connect failed: %s" % e)
                    reported = True
                self._stop.wait(self.retry)
                continue
            reported = False
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(POLL)
            with self._lock:
                if self._stop.is_set():
                    s.close()
                    break
                self._sock = s
            self.connected.set()
            log.info("card inserted into vpcd %s:%d", self.host, self.port)
            try:
                self._serve(s)
            except (OSError, ProtocolError, EOFError) as e:
                if not self._stop.is_set():
                    self._error("connection lost: %s" % e)
            finally:
                self._close()
            if not self.reconnect:
                break
            self._stop.wait(self.retry)

    def _recv_exact(self, s, n):
        buf = bytearray()
        while len(buf) < n:
            if self._stop.is_set():
                raise EOFError("stopped")
            # vpcd writes a frame's length and its APDU in two send() calls with
            # Nagle on, so the APDU waits for our ACK of the length, which Linux
            # delays by 40 ms: ~48 ms per APDU instead of well under 1 ms.
            # QUICKACK is not sticky, hence before every read.
            if _QUICKACK is not None:
                try:
                    s.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                except OSError:
                    pass  # not a TCP socket (tests): only slower
            try:
                chunk = s.recv(n - len(buf))
            except socket.timeout:
                continue
            if not chunk:
                if buf:
                    raise EOFError("vpcd closed the connection inside a frame")
                raise EOFError("vpcd closed the connection")
            buf += chunk
        return bytes(buf)

    def _send(self, s, payload):
        if len(payload) > MAX_FRAME:
            raise ProtocolError("frame of %d bytes, at most %d" % (len(payload), MAX_FRAME))
        s.sendall(struct.pack(">H", len(payload)) + payload)

    def _serve(self, s):
        while not self._stop.is_set():
            (n,) = struct.unpack(">H", self._recv_exact(s, 2))
            if n == 0:
                raise ProtocolError("empty frame from vpcd, expected a control byte or an APDU")
            msg = self._recv_exact(s, n)
            if n == 1:
                self._control(s, msg[0])
            else:
                self._send(s, self._answer(msg))

    def _control(self, s, code):
        if code == CTRL_ATR:
            self._send(s, bytes(self.card.atr))
        elif code in (CTRL_ON, CTRL_RESET):
            reset = getattr(self.card, "reset", None)
            if reset is not None:
                try:
                    reset()
                except Exception as e:  # a simulator bug must not kill the reader
                    self._error("card.reset() failed: %r\n%s" % (e, traceback.format_exc()))
        elif code != CTRL_OFF:
            self._error("unknown vpcd control code %02X (expected 00, 01, 02 or 04)" % code)

    def _answer(self, apdu):
        try:
            resp = bytes(self.card.transmit(apdu))
        except Exception as e:  # answer 6F00 like a card with an internal fault
            self._error("card.transmit(%s) failed: %r\n%s" % (apdu[:8].hex(), e,
                                                               traceback.format_exc()))
            return SW_NO_DIAGNOSIS
        if not 2 <= len(resp) <= MAX_FRAME:
            self._error("card answered %d bytes, expected 2..%d" % (len(resp), MAX_FRAME))
            return SW_NO_DIAGNOSIS
        self.apdus += 1
        return resp


def vpcd_main(argv=None, card=None):
    """`ipa-sim euicc --vpcd HOST:PORT --pki DIR [--state FILE] [--sgp32 V] [--protocol T0|T1]
    [--strict]`:
    serve the virtual eUICC (ipa_host.sim.euicc.euicc.VirtualEuicc) in the vpcd reader until
    Ctrl-C."""
    p = argparse.ArgumentParser(
        prog="ipa-sim euicc", description="Put the virtual eUICC into a vpcd PC/SC reader."
    )
    p.add_argument("--vpcd", default="127.0.0.1:%d" % DEFAULT_PORT, metavar="HOST:PORT",
                   help="where vpcd listens (default 127.0.0.1:%d)" % DEFAULT_PORT)
    p.add_argument("--pki", metavar="DIR", help="test PKI folder (created when missing)")
    p.add_argument("--state", metavar="FILE", help="where the eUICC keeps its state")
    p.add_argument("--sgp32", choices=("1.0", "1.1", "1.2"),
                   help="SGP.32 version the card speaks (default: the state file's, else 1.2)")
    p.add_argument("--protocol", choices=("T0", "T1"),
                   help="T0: 61xx and GET RESPONSE for case 4 (ATR offers T=0); T1: data in the "
                        "answer (ATR offers T=1); default: the state file's, else T0")
    p.add_argument("--strict", action="store_true",
                   help="refuse the APDU forms the card otherwise accepts as real eUICCs do "
                        "(GET RESPONSE 80|ch, partial AID, ...: docs/sim-euicc.md)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    try:
        host, port = parse_endpoint(args.vpcd)
    except ValueError as e:
        p.error(str(e))
    if card is None:
        if not args.pki:
            p.error("--pki DIR is required (the eUICC's keys and certificates)")
        import os

        from ipa_host.sim import pki
        from ipa_host.sim.euicc.euicc import VirtualEuicc

        if not os.path.exists(os.path.join(args.pki, "euicc.key")):
            print("creating a test PKI in %s" % args.pki, file=sys.stderr)
            pki.create_test_pki(args.pki)
        card = VirtualEuicc(args.pki, state_path=args.state, version=args.sgp32,
                            protocol=args.protocol, strict=args.strict)
    bridge = VpcdBridge(card, host, port)
    bridge.start()
    proto = getattr(card, "protocol", None)
    print("virtual eUICC serving vpcd at %s:%d%s%s (Ctrl-C to remove it)"
          % (host, port, ", %s" % proto.replace("T", "T=") if proto else "",
             ", strict" if getattr(card, "strict", False) else ""), file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        bridge.stop()
    return 0
