"""The eUICC behind a modem's MBIM function: `--card mbim:/dev/cdc-wdm0`.

    card = MbimCard("/dev/cdc-wdm0").open()   # through mbim-proxy
    card.transmit(apdu)                       # on the ISD-R's channel
    card.close()

Microsoft's MBIM extension for low-level UICC access (the commands
mbimcli --ms-set-uicc-* sends): OPEN_CHANNEL on the ISD-R AID opens and
selects a logical channel, APDU carries each command on it (the modem puts
the channel into CLA: IsdrSession runs with modem_channel=True, as over
AT+CGLA), CLOSE_CHANNEL frees it. Around them the MBIM 1.0 session: OPEN
(with the MaxControlTransfer this side reassembles fragments for), CLOSE,
transaction ids matched to answers, indications skipped. Through
mbim-proxy (the default) the proxy's configuration command comes first, so
ModemManager keeps the modem.

The Status field of OPEN_CHANNEL and APDU answers is the card's status
word (SW1 in bits 15-8, SW2 in bits 7-0); the response data comes without
it, and is put back together here as data + SW.
"""

import struct
import time

from ipa_core.apdu import ISDR_AID
from ipa_core.errors import CardError, ProtocolError, TransportError
from ipa_host.card import mbim_frame as mf
from ipa_host.card.wdm import ChannelCard, LinkClosed, WdmLink, proxy_refused

PROXY = "mbim-proxy"
COMMAND_TIMEOUT = 10.0
APDU_TIMEOUT = 120.0  # STORE DATA of a profile segment can take tens of seconds
MAX_TRANSFER = 4096  # MaxControlTransfer offered at OPEN


class MbimError(TransportError):
    """An MBIM command the modem answered with a status other than success; .status."""

    def __init__(self, status, message):
        self.status = status
        TransportError.__init__(self, message)


class MbimCard(ChannelCard):
    """Card object (`transmit(apdu) -> data + SW`) over MBIM UICC low-level access.

    device   the MBIM control node (/dev/cdc-wdm0)
    proxy    abstract socket name of mbim-proxy, or None to open the device itself
    """

    def __init__(self, device, proxy=PROXY, aid=ISDR_AID, command_timeout=COMMAND_TIMEOUT,
                 apdu_timeout=APDU_TIMEOUT):
        self.device = device
        self.proxy = proxy
        self.aid = aid
        self.command_timeout = command_timeout
        self.apdu_timeout = apdu_timeout
        self.link = None
        self.channel = None
        self.select_response = b""
        self._tid = 0
        self._opened = False

    def _next_tid(self):
        self._tid = self._tid % 0xFFFFFFFF + 1
        return self._tid

    def _receive(self, tid, timeout, what):
        """(type, payload) of the answer with transaction id `tid` (fragments joined)."""
        joiner = mf.Reassembly()
        deadline = time.monotonic() + timeout
        while True:
            left = max(deadline - time.monotonic(), 0.001)
            frame = self.link.recv_frame(mf.HEADER, mf.frame_length, left)
            got = joiner.feed(frame)
            if got is None:
                continue
            msg_type, mtid, payload = got
            if mtid != tid or msg_type == mf.INDICATE_STATUS:
                continue  # an indication, or a late answer to an earlier request
            if msg_type == mf.FUNCTION_ERROR:
                code = struct.unpack_from("<I", payload)[0] if len(payload) >= 4 else 0
                raise TransportError("%s on %s: MBIM function error %d (%s)" % (
                    what, self.link.label, code, mf.ERROR_NAMES.get(code, "?")))
            return msg_type, payload

    def _command(self, uuid, cid, cmd_type, info, timeout, what):
        tid = self._next_tid()
        for frag in mf.command(tid, uuid, cid, cmd_type, info, MAX_TRANSFER):
            self.link.send(frag)
        msg_type, payload = self._receive(tid, timeout, what)
        if msg_type != mf.COMMAND_DONE:
            raise ProtocolError("%s: MBIM answered message type 0x%08X" % (what, msg_type))
        ruuid, rcid, status, rinfo = mf.parse_command(payload, True)
        if ruuid != uuid or rcid != cid:
            raise ProtocolError("%s: MBIM answer for another command (CID %d)" % (what, rcid))
        if status != mf.STATUS_SUCCESS:
            raise MbimError(status, "%s on %s: %s" % (what, self.link.label, mf.status_text(status)))
        return rinfo

    # -- open / close -------------------------------------------------------------------

    def open(self):
        if self.channel is not None:
            return self
        self.link = WdmLink.open(self.device, self.proxy, "MBIM")
        try:
            if self.proxy:
                try:
                    self._command(mf.UUID_PROXY, mf.CID_PROXY_CONFIG, mf.SET,
                                  mf.proxy_config_set(self.device, int(self.command_timeout)),
                                  self.command_timeout, "mbim-proxy configuration")
                except LinkClosed:
                    raise proxy_refused(self.proxy, "MBIM")
            tid = self._next_tid()
            self.link.send(mf.open_msg(tid, MAX_TRANSFER))
            msg_type, payload = self._receive(tid, self.command_timeout, "MBIM OPEN")
            status = struct.unpack_from("<I", payload)[0] if len(payload) >= 4 else None
            if msg_type != mf.OPEN_DONE or status != 0:
                raise TransportError("%s: MBIM OPEN refused (%s)" % (self.link.label, status))
            self._opened = True
            self._open_channel()
        except BaseException:
            self._close_link()
            raise
        return self

    def _open_channel(self):
        info = self._until_ready(
            lambda: self._command(mf.UUID_MS_UICC, mf.CID_UICC_OPEN_CHANNEL, mf.SET,
                                  mf.uicc_open_channel_set(self.aid), self.command_timeout,
                                  "opening a logical channel to the ISD-R"),
            lambda e: getattr(e, "status", None) == mf.STATUS_BUSY, _explain)
        if len(info) < 16:
            raise ProtocolError("MBIM UICC OPEN_CHANNEL answer of %d bytes" % len(info))
        sw, channel, size, offset = struct.unpack_from("<IIII", info)
        if sw != 0x9000:
            raise CardError(sw & 0xFFFF, "SELECT ISD-R (MBIM UICC OPEN_CHANNEL)")
        self.channel = channel
        self.select_response = mf.ref(info, offset, size)

    def close(self):
        """Close the channel and the MBIM session (errors ignored: the modem may be gone)."""
        if self.link is None:
            return
        if self.channel is not None:
            try:
                self._command(mf.UUID_MS_UICC, mf.CID_UICC_CLOSE_CHANNEL, mf.SET,
                              mf.uicc_close_channel_set(self.channel), self.command_timeout,
                              "closing the logical channel")
            except (TransportError, ProtocolError):
                pass
        self.channel = None
        self._close_link()

    def _close_link(self):
        link = self.link
        if link is None:
            return
        if self._opened and link.is_open:
            try:
                tid = self._next_tid()
                link.send(mf.header(mf.CLOSE, mf.HEADER, tid))
                self._receive(tid, self.command_timeout, "MBIM CLOSE")
            except (TransportError, ProtocolError):
                pass
        self._opened = False
        self.link = None
        link.close()

    # -- APDUs --------------------------------------------------------------------------

    def transmit(self, apdu):
        """One command APDU on the ISD-R channel -> response data + SW (MBIM UICC APDU)."""
        apdu = self._command_apdu(apdu)
        try:
            info = self._command(mf.UUID_MS_UICC, mf.CID_UICC_APDU, mf.SET,
                                 mf.uicc_apdu_set(self.channel, apdu), self.apdu_timeout,
                                 "APDU %s" % bytes(apdu[:4]).hex().upper())
        except MbimError as e:
            raise _explain(e)
        if len(info) < 12:
            raise ProtocolError("MBIM UICC APDU answer of %d bytes" % len(info))
        sw, size, offset = struct.unpack_from("<III", info)
        if sw > 0xFFFF:
            raise ProtocolError("MBIM UICC APDU status 0x%08X is no status word" % sw)
        return mf.ref(info, offset, size) + struct.pack(">H", sw)

    def __repr__(self):
        return "MbimCard(%r, proxy=%r)" % (self.device, self.proxy)


def _explain(e):
    hints = {
        mf.STATUS_SIM_NOT_INSERTED: "is a SIM/eUICC inserted? (mbimcli -p -d DEVICE "
                                    "--query-subscriber-ready-status)",
        mf.STATUS_BUSY: "the UICC is busy (just powered up or refreshed): retry in a few seconds",
        mf.STATUS_MS_NO_LOGICAL_CHANNELS: "every logical channel of the card is in use: close "
                                          "the other programs' channels or reset the modem",
        mf.STATUS_NO_DEVICE_SUPPORT: "this modem lacks Microsoft UICC low-level access: use its "
                                     "QMI (qmi:) or AT port (at:)",
    }
    hint = hints.get(getattr(e, "status", None))
    return MbimError(e.status, "%s - %s" % (e, hint)) if hint else e
