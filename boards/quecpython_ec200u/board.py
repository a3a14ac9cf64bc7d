"""QuecPython on a Quectel module (EC200U / EG915U / EC200N / EG915N class): the IPA runs on
the module itself.

- card: QuecCard, a card object (transmit(apdu) -> data + SW) over
  `sim.genericAccess(simId, "<hex APDU>")`, which answers (length, "<hex>") or
  -1. QuecPython's stubs list genericAccess for EC100Y/EC200N/EC600N/EC600S/
  EC800N/EG912N/EG915N only; where it is missing (the Unisoc EC200U/EG915U
  firmware may be such a case) QuecCard sends AT+CSIM through
  `atcmd.sendSync` instead. Both move single APDUs on the basic channel
  interface of 27.007 CSIM: ipa_core.apdu.IsdrSession opens its own logical
  channel, or uses the basic channel when "basic_channel" is set.
- network: ipa_core.http over `usocket` + `ussl` (socket_net), after
  `checkNet.waitNetworkReady` says the module's data call is up. QuecPython's
  `request` module is not used: its POST takes JSON-ish data, has no timeout
  and no CA option, and the ESipa ASN.1 binding posts binary bodies.
- no AT port, no pins: the modem is the MCU.
"""

# Everything board-specific (no pins on this board: the modem runs the IPA itself).
PINS = {}
SIM_ID = 0  # genericAccess simId: only slot 0 is supported by QuecPython
MAX_APDU = 261  # short APDU: header, Lc, 255 data bytes, Le
ATCMD_TIMEOUT_S = 130  # one APDU through atcmd (STORE DATA of a profile load can take long)

# The port's own modules this board's code may import (tools/freeze.py stands them in).
PORT_MODULES = ("machine", "sim", "atcmd", "checkNet", "dataCall", "net", "usocket",
                "ussl", "utime", "request")

import ipa_board  # noqa: E402 - the table stays at the top, like the other boards

CONFIG_DEFAULTS = dict(ipa_board.DEFAULTS)
CONFIG_DEFAULTS.update({
    "state_file": "/usr/ipa_state.json",
    "watchdog_ms": 60000,  # QuecPython's WDT counts seconds: rounded up
    "basic_channel": False,  # True: answer 6881 to MANAGE CHANNEL (ISD-R on channel 0)
    "segment_size": 255,
    "net_timeout_s": 60,  # checkNet.waitNetworkReady before each network set-up
    "tcp_timeout_s": 30,
    "card_api": "auto",  # "auto" | "generic" (sim.genericAccess) | "atcmd" (AT+CSIM)
})

HEX = "0123456789ABCDEFabcdef"


def _hex(b):
    from ipa_core.compat import hexlify

    return hexlify(bytes(b)).decode().upper()


def parse_csim(resp, cmd):
    """Response bytes from an AT+CSIM answer text ('+CSIM: <len>,"<hex>"'), strict."""
    from ipa_core.compat import unhexlify
    from ipa_core.errors import ProtocolError

    i = resp.find("+CSIM:")
    if i < 0:
        raise ProtocolError("%s: expected '+CSIM: <len>,\"<hex>\"', got %r" % (cmd, resp[:80]))
    line = resp[i + 6:].split("\r")[0].split("\n")[0].strip()
    comma = line.find(",")
    n = line[:comma].strip() if comma > 0 else ""
    hx = line[comma + 1:].strip().strip('"') if comma > 0 else ""
    if not n.isdigit() or int(n) != len(hx) or len(hx) % 2 or len(hx) < 4 or \
            any(c not in HEX for c in hx):
        raise ProtocolError("%s: answer %r is not '<len>,\"<hex>\"' with len = hex digits"
                            % (cmd, line[:80]))
    return unhexlify(hx)


class QuecCard:
    """Card object over QuecPython's SIM access (see the module docstring).

    sim_mod / atcmd_mod replace the `sim` / `atcmd` modules (tests); idle (a watchdog
    feed) runs before every APDU.
    api: "generic" (sim.genericAccess), "atcmd" (AT+CSIM via atcmd.sendSync), or
    "auto" (genericAccess when the firmware has it).
    basic_channel: answer 6881 to MANAGE CHANNEL open, so IsdrSession selects the
    ISD-R on the basic channel (for firmware that cannot carry channel APDUs).
    """

    def __init__(self, sim_id=SIM_ID, api="auto", basic_channel=False, sim_mod=None,
                 atcmd_mod=None, idle=None):
        if api not in ("auto", "generic", "atcmd"):
            raise ValueError("card_api %r: expected 'auto', 'generic' or 'atcmd'" % (api,))
        self.sim_id = sim_id
        self.basic_channel = basic_channel
        self.idle = idle
        self._sim = sim_mod
        self._atcmd = atcmd_mod
        if api == "auto":
            api = "generic" if hasattr(self._sim_module(), "genericAccess") else "atcmd"
        self.api = api
        self.count = 0

    def _sim_module(self):
        if self._sim is None:
            import sim

            self._sim = sim
        return self._sim

    def _atcmd_module(self):
        if self._atcmd is None:
            import atcmd

            self._atcmd = atcmd
        return self._atcmd

    def transmit(self, apdu):
        from ipa_core.errors import ProtocolError, TransportError

        apdu = bytes(apdu)
        if not 4 <= len(apdu) <= MAX_APDU:
            raise ValueError("command APDU of %d bytes, expected 4..%d" % (len(apdu), MAX_APDU))
        if self.basic_channel and apdu[1] == 0x70 and apdu[2] == 0x00:
            return b"\x68\x81"  # MANAGE CHANNEL open: "no logical channel" -> basic channel
        self.count += 1
        if self.idle is not None:
            self.idle()  # a profile download is hundreds of APDUs: keep the watchdog fed
        hx = _hex(apdu)
        if self.api == "atcmd":
            cmd = 'AT+CSIM=%d,"%s"' % (len(hx), hx)
            resp = bytearray(2 * MAX_APDU + 600)
            rc = self._atcmd_module().sendSync(cmd + "\r\n", resp, "", ATCMD_TIMEOUT_S)
            text = bytes(resp).split(b"\x00")[0].decode()
            if rc != 0:
                raise TransportError("%s: atcmd.sendSync returned %r (%r)" % (cmd[:40], rc,
                                                                              text[:80]))
            return parse_csim(text, cmd[:40])
        r = self._sim_module().genericAccess(self.sim_id, hx)
        if r == -1 or not isinstance(r, tuple) or len(r) != 2:
            raise TransportError("sim.genericAccess(%d, %s...) failed (%r): SIM missing, not "
                                 "ready, or this firmware has no generic access"
                                 % (self.sim_id, hx[:10], r))
        n, out = r
        if not isinstance(out, str) or len(out) % 2 or len(out) < 4 or \
                any(c not in HEX for c in out):
            raise ProtocolError("sim.genericAccess answered %r, expected hex of data + SW"
                                % (r,))
        from ipa_core.compat import unhexlify

        return unhexlify(out)

    def close(self):
        pass


class Board:
    """The Board of ipa_board on QuecPython (see the module docstring)."""

    def __init__(self, cfg, feed=None, log=print, sim_mod=None, atcmd_mod=None,
                 checknet_mod=None, socket_modules=None):
        self.cfg = cfg
        self.feed = feed
        self.log = log
        self.session = None
        self.card = None
        self._sim = sim_mod
        self._atcmd = atcmd_mod
        self._checknet = checknet_mod
        self._sockets = socket_modules
        self.connectivity = self

    def start(self):
        return self

    def open_session(self):
        from ipa_core.apdu import IsdrSession

        self.card = QuecCard(SIM_ID, self.cfg.get("card_api") or "auto",
                             bool(self.cfg.get("basic_channel")), self._sim, self._atcmd,
                             self.feed)
        self.log("card: %s, %s channel" % (
            "sim.genericAccess" if self.card.api == "generic" else "AT+CSIM via atcmd",
            "basic" if self.card.basic_channel else "logical"))
        self.session = IsdrSession(self.card, segment_size=self.cfg.get("segment_size") or 255,
                                   version=self.cfg.get("sgp32") or "1.2").open()
        return self.session

    def open_network(self, url, trust_pem=None):
        from ipa_core.errors import TransportError
        from socket_net import socket_network

        if not self.wait_connected(int(self.cfg["net_timeout_s"] * 1000)):
            raise TransportError("QuecPython data call not ready within %d s"
                                 % self.cfg["net_timeout_s"])
        return socket_network(url, ca_pem=trust_pem, timeout_s=self.cfg["tcp_timeout_s"],
                              modules=self._sockets, log=self.log, idle=self.feed)

    def recover(self, error=None):
        # Nothing to re-sync: no AT port. The next open_network waits for the data call.
        pass

    def refresh(self):
        """After a profile switch the module re-reads the SIM by itself (REFRESH from the
        eUICC); the ISD-R session reopens on its next use."""
        if self.session is not None:
            self.session.invalidate()

    def wait_connected(self, timeout_ms):
        cn = self._checknet
        if cn is None:
            import checkNet as cn
        stage, state = cn.waitNetworkReady(max(1, (timeout_ms + 999) // 1000))
        if (stage, state) == (3, 1):
            return True
        self.log("network: not ready (checkNet stage %d, state %d)" % (stage, state))
        return False

    def close(self):
        if self.session is not None:
            try:
                self.session.close()
            except Exception as e:  # a broken channel fails to close too
                self.log("card: close failed: %s" % e)
        self.session = None
