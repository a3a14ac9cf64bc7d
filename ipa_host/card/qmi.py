"""The eUICC behind a modem's QMI UIM service: `--card qmi:/dev/cdc-wdm0?slot=1`.

    card = QmiCard("/dev/cdc-wdm0", slot=1).open()   # through qmi-proxy
    card.transmit(apdu)                              # on the ISD-R's channel
    card.close()

QMI UIM (the service libqmi's qmicli drives with --uim-*): Open Logical
Channel (0x0042) opens a channel on the ISD-R AID in `slot` and selects it;
Send APDU (0x003B) carries each command APDU with that channel id (the modem
puts the channel into CLA, so ipa_core.apdu.IsdrSession runs with
modem_channel=True, as over AT+CGLA); Logical Channel (0x003F) with the
channel id closes it. The UIM client id comes from the control service
(CTL Allocate/Release CID). Through qmi-proxy (the default) the first
message is the proxy's own CTL 0xFF00 naming the device, so ModemManager
keeps the modem while we use it.

One QMI answer can carry up to 64 KiB, so answers > 256 bytes arrive whole
when the modem follows 61xx itself (Qualcomm firmware does); when it leaves
61xx to the host, IsdrSession sends GET RESPONSE.
"""

import struct

from ipa_core.apdu import ISDR_AID
from ipa_core.errors import CardError, ProtocolError, TransportError
from ipa_host.card import qmux
from ipa_host.card.wdm import ChannelCard, LinkClosed, WdmLink, proxy_refused

PROXY = "qmi-proxy"
COMMAND_TIMEOUT = 10.0  # seconds for CTL and channel messages
APDU_TIMEOUT = 120.0  # STORE DATA of a profile segment can take tens of seconds


class QmiCard(ChannelCard):
    """Card object (`transmit(apdu) -> data + SW`) over QMI UIM; see module docstring.

    device    the QMI control node (/dev/cdc-wdm0)
    slot      UIM slot (1 = first)
    proxy     abstract socket name of qmi-proxy, or None to open the device itself
    """

    def __init__(self, device, slot=1, proxy=PROXY, aid=ISDR_AID,
                 command_timeout=COMMAND_TIMEOUT, apdu_timeout=APDU_TIMEOUT):
        if not 1 <= slot <= 5:
            raise ValueError("QMI UIM slot %r, expected 1..5" % (slot,))
        self.device = device
        self.slot = slot
        self.proxy = proxy
        self.aid = aid
        self.command_timeout = command_timeout
        self.apdu_timeout = apdu_timeout
        self.link = None
        self.cid = None
        self.channel = None
        self.select_response = b""
        self._ctl_tid = 0
        self._tid = 0

    # -- messages -----------------------------------------------------------------------

    def _request(self, service, msg_id, tlvs, timeout, what):
        if service == qmux.SVC_CTL:
            self._ctl_tid = self._ctl_tid % 255 + 1
            tid, cid = self._ctl_tid, 0
        else:
            self._tid = self._tid % 0xFFFF + 1
            tid, cid = self._tid, self.cid
        self.link.send(qmux.encode(service, cid, tid, msg_id, tlvs))
        while True:  # indications and other clients' traffic are skipped, within `timeout`
            frame = self.link.recv_frame(3, qmux.frame_length, timeout)
            msg = qmux.decode(frame)
            if (msg.kind == "response" and msg.service == service and msg.tid == tid
                    and msg.msg_id == msg_id and (service == qmux.SVC_CTL or msg.client == cid)):
                break
        status, error = msg.result()
        if status:
            raise QmiError(error, "%s on %s: %s" % (what, self.link.label, qmux.error_text(error)))
        return msg

    # -- open / close -------------------------------------------------------------------

    def open(self):
        """Link, UIM client id, logical channel on the ISD-R (ISO 7816-4 MANAGE CHANNEL +
        SELECT done by the modem)."""
        if self.channel is not None:
            return self
        self.link = WdmLink.open(self.device, self.proxy, "QMI")
        try:
            if self.proxy:
                try:
                    self._request(qmux.SVC_CTL, qmux.CTL_PROXY_OPEN,
                                  [(0x01, self.device.encode())], self.command_timeout,
                                  "qmi-proxy open")
                except LinkClosed:
                    raise proxy_refused(self.proxy, "QMI")
            try:
                msg = self._request(qmux.SVC_CTL, qmux.CTL_ALLOCATE_CID,
                                    [(0x01, bytes((qmux.SVC_UIM,)))], self.command_timeout,
                                    "allocating a UIM client")
            except QmiError as e:
                raise TransportError("%s: the modem offers no QMI UIM service (%s): use its AT "
                                     "port (at:) instead" % (self.link.label, e))
            v = msg.tlvs.get(0x01, b"")
            if len(v) != 2 or v[0] != qmux.SVC_UIM:
                raise ProtocolError("QMI Allocate CID answered %r" % (v,))
            self.cid = v[1]
            self._open_channel()
        except BaseException:
            self._release()
            raise
        return self

    def _open_channel(self):
        tlvs = [(0x01, bytes((self.slot,))), (0x10, bytes((len(self.aid),)) + self.aid)]
        msg = self._until_ready(
            lambda: self._request(qmux.SVC_UIM, qmux.UIM_OPEN_LOGICAL_CHANNEL, tlvs,
                                  self.command_timeout, "opening a logical channel to the ISD-R"),
            lambda e: getattr(e, "error", None) == qmux.ERR_DEVICE_NOT_READY,
            lambda e: _explain(e, self.slot))
        sw = msg.tlvs.get(0x11)
        if sw is not None and len(sw) == 2 and sw != b"\x90\x00":
            raise CardError((sw[0] << 8) | sw[1], "SELECT ISD-R (QMI Open Logical Channel)")
        ch = msg.tlvs.get(0x10)
        if ch is None or len(ch) != 1:
            raise ProtocolError("QMI Open Logical Channel answered no channel id")
        self.channel = ch[0]
        sel = msg.tlvs.get(0x12, b"")
        self.select_response = sel[1:1 + sel[0]] if sel else b""

    def close(self):
        """Close the channel and give the client id back (errors ignored: the modem may be gone)."""
        if self.link is None:
            return
        if self.channel is not None and self.link.is_open:
            try:
                self._request(qmux.SVC_UIM, qmux.UIM_LOGICAL_CHANNEL,
                              [(0x01, bytes((self.slot,))), (0x11, bytes((self.channel,)))],
                              self.command_timeout, "closing the logical channel")
            except (TransportError, ProtocolError):
                pass
        self.channel = None
        self._release()

    def _release(self):
        link, self.link = self.link, None
        if link is None:
            return
        if self.cid is not None and link.is_open:
            self.link = link
            try:
                self._request(qmux.SVC_CTL, qmux.CTL_RELEASE_CID,
                              [(0x01, bytes((qmux.SVC_UIM, self.cid)))], self.command_timeout,
                              "releasing the UIM client")
            except (TransportError, ProtocolError):
                pass
            self.link = None
        self.cid = None
        link.close()

    # -- APDUs --------------------------------------------------------------------------

    def transmit(self, apdu):
        """One command APDU on the ISD-R channel -> response data + SW (QMI Send APDU)."""
        apdu = self._command_apdu(apdu)
        tlvs = [(0x01, bytes((self.slot,))), (0x02, struct.pack("<H", len(apdu)) + bytes(apdu)),
                (0x10, bytes((self.channel,)))]
        try:
            msg = self._request(qmux.SVC_UIM, qmux.UIM_SEND_APDU, tlvs, self.apdu_timeout,
                                "APDU %s" % bytes(apdu[:4]).hex().upper())
        except QmiError as e:
            raise _explain(e, self.slot)
        v = msg.tlvs.get(0x10)
        if v is None or len(v) < 2 or struct.unpack_from("<H", v)[0] != len(v) - 2 or len(v) < 4:
            raise ProtocolError("QMI Send APDU answered no response APDU (%r)" % (v,))
        return bytes(v[2:])

    def __repr__(self):
        return "QmiCard(%r, slot=%d, proxy=%r)" % (self.device, self.slot, self.proxy)


class QmiError(TransportError):
    """A QMI request the modem answered with an error; .error is the QMI error code."""

    def __init__(self, error, message):
        self.error = error
        TransportError.__init__(self, message)


def _explain(e, slot):
    """Words for the UIM errors people meet (QmiError stays the type)."""
    hints = {
        qmux.ERR_UIM_UNINITIALIZED: "is a SIM/eUICC in slot %d? (qmicli -p -d DEVICE "
                                    "--uim-get-card-status)" % slot,
        qmux.ERR_DEVICE_NOT_READY: "the UIM is busy (card just powered up or refreshed): "
                                   "retry in a few seconds",
        qmux.ERR_INSUFFICIENT_RESOURCES: "every logical channel of the card is in use: close "
                                         "the other programs' channels or reset the modem",
        qmux.ERR_INVALID_QMI_COMMAND: "this modem's UIM service lacks logical channels: use "
                                      "its AT port (at:)",
    }
    hint = hints.get(getattr(e, "error", None))
    return QmiError(e.error, "%s - %s" % (e, hint)) if hint else e
