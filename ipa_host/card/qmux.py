"""QMUX framing of QMI messages (Qualcomm MSM Interface, as libqmi speaks it).

A QMUX frame on /dev/cdc-wdm* (or through qmi-proxy):

    01 | length u16 | flags u8 | service u8 | client id u8 | QMI SDU
         (length counts everything after the 01)

The SDU of the control service (CTL, service 0) has a one-byte transaction
id, every other service a two-byte one:

    CTL:  flags u8 | tid u8  | message id u16 | TLV length u16 | TLVs
    else: flags u8 | tid u16 | message id u16 | TLV length u16 | TLVs

TLVs are type u8 | length u16 | value; all integers little-endian. Every
response carries the result TLV 0x02 (status u16, QMI error u16).

Used by the client (ipa_host.card.qmi) and the simulated modem
(ipa_host.sim.modem.modem_qmi); pure framing, no I/O.
"""

import struct

from ipa_core.errors import ProtocolError

IF_TYPE = 0x01
SVC_CTL = 0x00
SVC_UIM = 0x0B

# CTL messages
CTL_GET_VERSION_INFO = 0x0021
CTL_ALLOCATE_CID = 0x0022
CTL_RELEASE_CID = 0x0023
CTL_SYNC = 0x0027
CTL_PROXY_OPEN = 0xFF00  # qmi-proxy's own: TLV 0x01 = device path

# UIM messages
UIM_SEND_APDU = 0x003B
UIM_LOGICAL_CHANNEL = 0x003F  # TLV 0x11: close this channel
UIM_GET_CARD_STATUS = 0x002F
UIM_OPEN_LOGICAL_CHANNEL = 0x0042

TLV_RESULT = 0x02

# QMI protocol errors (the values libqmi names)
ERR_MALFORMED = 1
ERR_INTERNAL = 3
ERR_CLIENT_IDS_EXHAUSTED = 5
ERR_UIM_UNINITIALIZED = 37
ERR_DEVICE_NOT_READY = 52
ERR_INSUFFICIENT_RESOURCES = 68
ERR_INVALID_QMI_COMMAND = 71
ERROR_NAMES = {
    ERR_MALFORMED: "malformed message",
    ERR_INTERNAL: "internal error",
    ERR_CLIENT_IDS_EXHAUSTED: "client ids exhausted",
    ERR_UIM_UNINITIALIZED: "UIM uninitialized (no card in the slot?)",
    ERR_DEVICE_NOT_READY: "device not ready (UIM busy)",
    ERR_INSUFFICIENT_RESOURCES: "insufficient resources (no free logical channel)",
    ERR_INVALID_QMI_COMMAND: "invalid QMI command (not supported by this modem)",
}

MAX_FRAME = 0xFFFF + 1  # the length field is 16 bits


class QmiMessage:
    """One decoded QMI message; tlvs maps type -> value bytes."""

    def __init__(self, service, client, tid, msg_id, tlvs, kind="request"):
        self.service = service
        self.client = client
        self.tid = tid
        self.msg_id = msg_id
        self.tlvs = tlvs
        self.kind = kind  # "request", "response" or "indication"

    def result(self):
        """(status, error) of the result TLV; ProtocolError without one."""
        v = self.tlvs.get(TLV_RESULT)
        if v is None or len(v) != 4:
            raise ProtocolError("QMI message %04X without a result TLV" % self.msg_id)
        return struct.unpack("<HH", v)

    def __repr__(self):
        return "QmiMessage(svc=%d cid=%d tid=%d msg=%04X %s %s)" % (
            self.service, self.client, self.tid, self.msg_id, self.kind,
            sorted(self.tlvs))


def tlv(t, value):
    return struct.pack("<BH", t, len(value)) + bytes(value)


def result_tlv(error=0):
    return tlv(TLV_RESULT, struct.pack("<HH", 1 if error else 0, error))


def encode(service, client, tid, msg_id, tlvs=(), kind="request"):
    """A whole QMUX frame; tlvs is a sequence of (type, value) pairs."""
    body = b"".join(tlv(t, v) for t, v in tlvs)
    if service == SVC_CTL:
        flags = {"request": 0x00, "response": 0x01, "indication": 0x02}[kind]
        sdu = struct.pack("<BBHH", flags, tid & 0xFF, msg_id, len(body)) + body
    else:
        flags = {"request": 0x00, "response": 0x02, "indication": 0x04}[kind]
        sdu = struct.pack("<BHHH", flags, tid & 0xFFFF, msg_id, len(body)) + body
    length = 5 + len(sdu)
    if length > 0xFFFF:
        raise ValueError("QMI message of %d bytes, over the QMUX limit" % length)
    qflags = 0x00 if kind == "request" else 0x80
    return struct.pack("<BHBBB", IF_TYPE, length, qflags, service, client) + sdu


def frame_length(head):
    """Total bytes of the frame whose first 3 bytes are `head`."""
    if head[0] != IF_TYPE:
        raise ProtocolError("QMUX frame starts with %02X, expected 01" % head[0])
    n = struct.unpack_from("<H", head, 1)[0]
    if n < 5 + 6:
        raise ProtocolError("QMUX frame length %d is too short" % n)
    return n + 1


def decode(frame):
    """QmiMessage from one whole QMUX frame; ProtocolError when it is not one."""
    frame = bytes(frame)
    if len(frame) < 3 or frame_length(frame) != len(frame):
        raise ProtocolError("QMUX frame of %d bytes does not match its length field" % len(frame))
    _flags, service, client = struct.unpack_from("<BBB", frame, 3)
    off = 6
    if service == SVC_CTL:
        if len(frame) < off + 6:
            raise ProtocolError("QMI CTL message cut short")
        flags, tid, msg_id, n = struct.unpack_from("<BBHH", frame, off)
        off += 6
        kind = {0: "request", 1: "response", 2: "indication"}.get(flags & 0x03, "request")
    else:
        if len(frame) < off + 7:
            raise ProtocolError("QMI message cut short")
        flags, tid, msg_id, n = struct.unpack_from("<BHHH", frame, off)
        off += 7
        kind = "response" if flags & 0x02 else "indication" if flags & 0x04 else "request"
    if off + n != len(frame):
        raise ProtocolError("QMI TLV length %d does not match the frame (%d bytes left)"
                            % (n, len(frame) - off))
    tlvs = {}
    end = off + n
    while off < end:
        if off + 3 > end:
            raise ProtocolError("QMI TLV header cut short")
        t, ln = struct.unpack_from("<BH", frame, off)
        off += 3
        if off + ln > end:
            raise ProtocolError("QMI TLV %02X of %d bytes runs past the message" % (t, ln))
        tlvs[t] = frame[off:off + ln]
        off += ln
    return QmiMessage(service, client, tid, msg_id, tlvs, kind)


def error_text(error):
    return "QMI error %d (%s)" % (error, ERROR_NAMES.get(error, "see libqmi's QmiProtocolError"))
