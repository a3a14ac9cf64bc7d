"""A simulated QMI modem: QMUX + CTL + UIM in front of the virtual eUICC.

    modem = SimQmiModem(card, proxy="ipa-sim-qmi-1").start()
    QmiCard(modem.path, proxy=modem.proxy)      # as ipa --card qmi:...?proxy=...
    qmicli -p -d <modem.path> --uim-get-card-status   # when proxy == "qmi-proxy"

CTL: Get Version Info, Allocate/Release CID, Sync, and qmi-proxy's own
Internal Proxy Open (0xFF00) on proxy connections. UIM: Get Card Status,
Open Logical Channel, Logical Channel (close), Send APDU; anything else
answers "invalid QMI command". The modem follows 61xx itself (as Qualcomm
firmware does), so one Send APDU answer can exceed 256 bytes.

Two slots: the card in slot 1, slot 2 empty. Personalities (faults): textbook, slot_empty (no card: UIM uninitialized),
uim_busy (the first opens answer "device not ready"), channel_limit (every
logical channel held by another program), no_uim (the modem has no UIM
service), silent (UIM requests get no answer at all), gone (the device
disappears after `gone_after` APDUs).
"""

import struct

from ipa_host.card import qmux
from ipa_host.sim.modem.modem_wdm import WdmModem

PERSONALITIES = ("textbook", "slot_empty", "uim_busy", "channel_limit", "no_uim", "silent",
                 "gone")
ERR_INVALID_SERVICE_TYPE = 31
ERR_INVALID_ARGUMENT = 48
MAX_CLIENTS = 8
VERSIONS = ((qmux.SVC_CTL, 1, 5), (qmux.SVC_UIM, 1, 46))


class SimQmiModem(WdmModem):
    """A QMI modem (see module docstring); `card` None = empty slot."""

    PERSONALITIES = PERSONALITIES
    BUSY = "uim_busy"
    NAME = "QMI"

    def __init__(self, card, personality="textbook", proxy=None, gone_after=3):
        WdmModem.__init__(self, card, personality, proxy, gone_after)
        self.clients = {}  # cid -> True

    def connection(self, proxied):
        return _QmiConnection(self, proxied)

    # -- requests -------------------------------------------------------------------------

    def answer(self, msg, proxied):
        """Response frame for one request message."""
        self.note((msg.service, msg.msg_id))
        if msg.service == qmux.SVC_UIM and self.personality == "silent":
            return b""
        if msg.service == qmux.SVC_CTL:
            error, tlvs = self._ctl(msg, proxied)
        elif msg.service == qmux.SVC_UIM and self.personality != "no_uim":
            if msg.client not in self.clients:
                error, tlvs = qmux.ERR_INTERNAL, []
            else:
                error, tlvs = self._uim(msg)
        else:
            error, tlvs = ERR_INVALID_SERVICE_TYPE, []
        return qmux.encode(msg.service, msg.client, msg.tid, msg.msg_id,
                           [(qmux.TLV_RESULT, qmux.result_tlv(error)[3:])] + tlvs, "response")

    def _ctl(self, msg, proxied):
        t = msg.tlvs
        if msg.msg_id == qmux.CTL_PROXY_OPEN:
            path = t.get(0x01, b"").rstrip(b"\0").decode("utf-8", "replace")
            return (0 if proxied and path == self.path else qmux.ERR_INTERNAL), []
        if msg.msg_id == qmux.CTL_GET_VERSION_INFO:
            body = bytes((len(VERSIONS),)) + b"".join(struct.pack("<BHH", *v) for v in VERSIONS)
            return 0, [(0x01, body)]
        if msg.msg_id == qmux.CTL_SYNC:
            return 0, []
        if msg.msg_id == qmux.CTL_ALLOCATE_CID:
            svc = t.get(0x01, b"\xff")[0]
            if svc != qmux.SVC_UIM or self.personality == "no_uim":
                return ERR_INVALID_SERVICE_TYPE, []
            free = [c for c in range(1, MAX_CLIENTS + 1) if c not in self.clients]
            if not free:
                return qmux.ERR_CLIENT_IDS_EXHAUSTED, []
            self.clients[free[0]] = True
            return 0, [(0x01, bytes((svc, free[0])))]
        if msg.msg_id == qmux.CTL_RELEASE_CID:
            v = t.get(0x01, b"")
            if len(v) != 2 or self.clients.pop(v[1], None) is None:
                return ERR_INVALID_ARGUMENT, []
            return 0, [(0x01, v)]
        return qmux.ERR_INVALID_QMI_COMMAND, []

    def _uim(self, msg):
        t = msg.tlvs
        u = self.uicc
        if msg.msg_id == qmux.UIM_GET_CARD_STATUS:
            return 0, [(0x10, self._card_status())]
        slot = t.get(0x01, b"\x00")[0]
        if msg.msg_id in (qmux.UIM_OPEN_LOGICAL_CHANNEL, qmux.UIM_SEND_APDU,
                          qmux.UIM_LOGICAL_CHANNEL) and slot != 1:
            # a dual-slot modem: slot 2 is empty; no slot 3 and up
            return (qmux.ERR_UIM_UNINITIALIZED if slot == 2 else ERR_INVALID_ARGUMENT), []
        if msg.msg_id == qmux.UIM_OPEN_LOGICAL_CHANNEL:
            aid = t.get(0x10, b"\x00")
            state, ch, sel = u.open_channel(aid[1:1 + aid[0]])
            if state == "absent":
                return qmux.ERR_UIM_UNINITIALIZED, []
            if state == "busy":
                return qmux.ERR_DEVICE_NOT_READY, []
            if state == "full":
                return qmux.ERR_INSUFFICIENT_RESOURCES, []
            if state == "refused":
                return qmux.ERR_INTERNAL, [(0x11, sel[-2:])]
            return 0, [(0x10, bytes((ch,))), (0x11, sel[-2:]),
                       (0x12, bytes((min(len(sel) - 2, 255),)) + sel[:-2][:255])]
        if msg.msg_id == qmux.UIM_LOGICAL_CHANNEL:
            ch = t.get(0x11)
            if u.card is None or not ch or not u.close_channel(ch[0]):
                return ERR_INVALID_ARGUMENT, []
            return 0, []
        if msg.msg_id == qmux.UIM_SEND_APDU:
            if u.card is None:
                return qmux.ERR_UIM_UNINITIALIZED, []
            v = t.get(0x02, b"")
            ch = t.get(0x10, b"\x00")[0]
            if len(v) < 6 or struct.unpack_from("<H", v)[0] != len(v) - 2:
                return qmux.ERR_MALFORMED, []
            if ch and ch not in u.channels:
                return ERR_INVALID_ARGUMENT, []
            resp = u.apdu(ch, v[2:])
            if u.gone_now():
                self.server.gone()
            return 0, [(0x10, struct.pack("<H", len(resp)) + resp)]
        return qmux.ERR_INVALID_QMI_COMMAND, []

    def _card_status(self):
        """UIM Get Card Status, one slot: present (no applications listed) or absent."""
        present = self.uicc.card is not None
        head = struct.pack("<HHHHB", 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 1)
        # card state, UPIN state, UPIN retries, UPUK retries, error code, applications
        card = bytes((1 if present else 0, 0, 0, 0, 0 if present else 3, 0))
        return head + card


class _QmiConnection:
    """One client's byte stream (the pty, or one proxy socket)."""

    def __init__(self, modem, proxied):
        self.modem = modem
        self.proxied = proxied
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= 3:
            if self.buf[0] != qmux.IF_TYPE:
                self.buf = self.buf[1:]  # resynchronise on garbage, as a modem drops it
                continue
            n = struct.unpack_from("<H", self.buf, 1)[0] + 1
            if len(self.buf) < n:
                break
            frame, self.buf = self.buf[:n], self.buf[n:]
            try:
                msg = qmux.decode(frame)
            except Exception:
                continue  # a malformed frame gets no answer (the client's timeout is bounded)
            out.append(self.modem.answer(msg, self.proxied))
        return b"".join(out)

    def closed(self):
        pass
