"""A simulated MBIM modem: MBIM 1.0 control messages + Microsoft UICC low-level access.

    modem = SimMbimModem(card, proxy="ipa-sim-mbim-1").start()
    MbimCard(modem.path, proxy=modem.proxy)      # as ipa --card mbim:...?proxy=...
    mbimcli -p -d <modem.path> --ms-query-uicc-atr   # when proxy == "mbim-proxy"

OPEN/CLOSE, COMMAND answered with COMMAND_DONE under the same transaction
id, fragments reassembled on the way in and cut to the MaxControlTransfer
the host offered at OPEN on the way out (MBIM 1.0 9.2), FUNCTION_ERROR for
a command before OPEN. Microsoft UICC low-level access: ATR, OPEN_CHANNEL,
CLOSE_CHANNEL, APDU. On proxy connections, mbim-proxy's configuration
command (device path) first.

Personalities (faults): textbook, slot_empty (SIM not inserted), uicc_busy
(the first opens answer "busy"), channel_limit (no free logical channel),
no_uicc (the service is unsupported), fragmented (answers in 64-byte
fragments), raw_61 (61xx handed to the host, which sends GET RESPONSE), silent (UICC
commands get no answer at all), gone (the device disappears after `gone_after` APDUs).
"""

import struct

from ipa_host.card import mbim_frame as mf
from ipa_host.sim.modem.modem_wdm import WdmModem

PERSONALITIES = ("textbook", "slot_empty", "uicc_busy", "channel_limit", "no_uicc",
                 "fragmented", "raw_61", "silent", "gone")
FRAGMENT = 64  # MaxControlTransfer of the "fragmented" personality


class SimMbimModem(WdmModem):
    """An MBIM modem (see module docstring); `card` None = empty slot."""

    PERSONALITIES = PERSONALITIES
    BUSY = "uicc_busy"
    NAME = "MBIM"

    def __init__(self, card, personality="textbook", proxy=None, gone_after=3):
        WdmModem.__init__(self, card, personality, proxy, gone_after)
        self.uicc.follow_61 = personality != "raw_61"
        self.fragmented_answers = 0  # COMMAND_DONEs sent in more than one fragment

    def connection(self, proxied):
        return _MbimConnection(self, proxied)

    # -- Microsoft UICC low-level access ----------------------------------------------------

    def uicc_command(self, cid, cmd_type, info):
        """(status, information buffer) of one UICC low-level access command."""
        u = self.uicc
        if self.personality == "no_uicc":
            return mf.STATUS_NO_DEVICE_SUPPORT, b""
        if cid == mf.CID_UICC_ATR and cmd_type == mf.QUERY:
            if u.card is None:
                return mf.STATUS_SIM_NOT_INSERTED, b""
            # MBIM_MS_ATR_INFO: AtrSize, AtrOffset, the ATR bytes
            return 0, struct.pack("<II", len(u.card.atr), 8) + mf.pad4(u.card.atr)
        if cmd_type != mf.SET:
            return mf.STATUS_NO_DEVICE_SUPPORT, b""
        if cid == mf.CID_UICC_OPEN_CHANNEL and len(info) >= 16:
            size, offset, p2, _group = struct.unpack_from("<IIII", info)
            state, ch, sel = u.open_channel(mf.ref(info, offset, size), p2 or 0x04)
            status = {"absent": mf.STATUS_SIM_NOT_INSERTED, "busy": mf.STATUS_BUSY,
                      "full": mf.STATUS_MS_NO_LOGICAL_CHANNELS,
                      "refused": mf.STATUS_MS_SELECT_FAILED}.get(state, 0)
            if status:
                return status, b""
            data = sel[:-2]
            sw = struct.unpack(">H", sel[-2:])[0]
            return 0, struct.pack("<IIII", sw, ch, len(data), 16) + mf.pad4(data)
        if cid == mf.CID_UICC_CLOSE_CHANNEL and len(info) >= 8:
            ch = struct.unpack_from("<I", info)[0]
            if u.card is None or not u.close_channel(ch):
                return mf.STATUS_MS_INVALID_LOGICAL_CHANNEL, b""
            return 0, struct.pack("<I", 0x9000)
        if cid == mf.CID_UICC_APDU and len(info) >= 20:
            if u.card is None:
                return mf.STATUS_SIM_NOT_INSERTED, b""
            ch, _sm, _ct, size, offset = struct.unpack_from("<IIIII", info)
            if ch not in u.channels:
                return mf.STATUS_MS_INVALID_LOGICAL_CHANNEL, b""
            resp = u.apdu(ch, mf.ref(info, offset, size))
            if u.gone_now():
                self.server.gone()
            data = resp[:-2]
            sw = struct.unpack(">H", resp[-2:])[0]
            return 0, struct.pack("<III", sw, len(data), 12) + mf.pad4(data)
        return mf.STATUS_NO_DEVICE_SUPPORT, b""


class _MbimConnection:
    """One client's byte stream (the pty, or one proxy socket) and its MBIM session."""

    def __init__(self, modem, proxied):
        self.modem = modem
        self.proxied = proxied
        self.configured = not proxied
        self.max_transfer = None  # set by OPEN
        self.buf = b""
        self.joiner = mf.Reassembly()

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= mf.HEADER:
            n = struct.unpack_from("<I", self.buf, 4)[0]
            if not mf.HEADER <= n <= mf.MAX_MESSAGE:
                self.buf = b""  # no way to find the next message: drop what came
                break
            if len(self.buf) < n:
                break
            frag, self.buf = self.buf[:n], self.buf[n:]
            tid = struct.unpack_from("<I", frag, 8)[0]
            try:
                got = self.joiner.feed(frag)
            except Exception:
                out.append(mf.header(mf.FUNCTION_ERROR, 16, tid) + struct.pack("<I", 2))
                continue
            if got is not None:
                out.extend(self.answer(*got))
        return b"".join(out)

    def answer(self, msg_type, tid, payload):
        m = self.modem
        m.note((msg_type, struct.unpack_from("<I", payload, 16)[0]
                if msg_type == mf.COMMAND and len(payload) >= 20 else None))
        if msg_type == mf.OPEN:
            want = struct.unpack_from("<I", payload)[0] if len(payload) >= 4 else 4096
            self.max_transfer = FRAGMENT if m.personality == "fragmented" else max(want, 64)
            return [mf.header(mf.OPEN_DONE, 16, tid) + struct.pack("<I", 0)]
        if msg_type == mf.CLOSE:
            self.max_transfer = None
            return [mf.header(mf.CLOSE_DONE, 16, tid) + struct.pack("<I", 0)]
        if msg_type != mf.COMMAND:
            return [mf.header(mf.FUNCTION_ERROR, 16, tid) + struct.pack("<I", 6)]
        try:
            uuid, cid, cmd_type, info = mf.parse_command(payload, False)
        except Exception:
            return [mf.header(mf.FUNCTION_ERROR, 16, tid) + struct.pack("<I", 3)]
        if uuid == mf.UUID_PROXY and self.proxied and cid == mf.CID_PROXY_CONFIG:
            try:
                ok = mf.mbim_string(info, 0) == m.path
            except Exception:
                ok = False
            self.configured = ok
            return mf.command_done(tid, uuid, cid, 0 if ok else mf.STATUS_FAILURE, b"")
        if self.max_transfer is None or not self.configured:
            return [mf.header(mf.FUNCTION_ERROR, 16, tid) + struct.pack("<I", 5)]
        if uuid == mf.UUID_MS_UICC and m.personality == "silent":
            return []
        if uuid == mf.UUID_MS_UICC:
            status, rinfo = m.uicc_command(cid, cmd_type, info)
        else:
            status, rinfo = mf.STATUS_NO_DEVICE_SUPPORT, b""
        frags = mf.command_done(tid, uuid, cid, status, rinfo, self.max_transfer)
        if len(frags) > 1:
            m.fragmented_answers += 1
        return frags

    def closed(self):
        pass
