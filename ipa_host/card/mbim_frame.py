"""MBIM control messages (USB-IF MBIM 1.0 section 9) and Microsoft's UICC low-level access.

Header of every message: type u32 | length u32 | transaction id u32
(little-endian). OPEN adds MaxControlTransfer; COMMAND, COMMAND_DONE and
INDICATE_STATUS add a fragment header (total u32, current u32) and then,
in the first fragment, the device service UUID (16 bytes in network order),
the CID and the information buffer. A message longer than the
MaxControlTransfer agreed at OPEN is sent in fragments (9.2); each fragment
repeats the header and the fragment header and carries the next part.

The Microsoft UICC low-level access service (UUID C2F6588E-F037-4BC9-8665-
F4D44BD09367, "MBIM extension for low-level UICC access"): OPEN_CHANNEL,
CLOSE_CHANNEL and APDU are set commands whose buffers hold fixed fields
and (size, offset) pairs pointing into the same buffer, padded to 4 bytes.

libmbim's mbim-proxy wants, before OPEN, a set command of its own service
(UUID 838CF7FB-8D0D-4D7F-871E-D71DBEFBB39B, CID 1 "configuration") naming
the device path (MBIM string: offset, size, UTF-16LE) and a timeout.

Used by ipa_host.card.mbim and ipa_host.sim.modem.modem_mbim; no I/O.
"""

import struct

from ipa_core.errors import ProtocolError

OPEN = 0x00000001
CLOSE = 0x00000002
COMMAND = 0x00000003
HOST_ERROR = 0x00000004
OPEN_DONE = 0x80000001
CLOSE_DONE = 0x80000002
COMMAND_DONE = 0x80000003
FUNCTION_ERROR = 0x80000004
INDICATE_STATUS = 0x80000007

QUERY = 0
SET = 1

UUID_MS_UICC = bytes.fromhex("c2f6588ef0374bc98665f4d44bd09367")
UUID_PROXY = bytes.fromhex("838cf7fb8d0d4d7f871ed71dbefbb39b")
CID_PROXY_CONFIG = 1
CID_UICC_ATR = 1
CID_UICC_OPEN_CHANNEL = 2
CID_UICC_CLOSE_CHANNEL = 3
CID_UICC_APDU = 4

STATUS_SUCCESS = 0
STATUS_BUSY = 1
STATUS_FAILURE = 2
STATUS_SIM_NOT_INSERTED = 3
STATUS_NO_DEVICE_SUPPORT = 9
STATUS_MS_NO_LOGICAL_CHANNELS = 0x87430001
STATUS_MS_SELECT_FAILED = 0x87430002
STATUS_MS_INVALID_LOGICAL_CHANNEL = 0x87430003
STATUS_NAMES = {
    STATUS_BUSY: "busy",
    STATUS_FAILURE: "failure",
    STATUS_SIM_NOT_INSERTED: "SIM not inserted",
    STATUS_NO_DEVICE_SUPPORT: "not supported by this device",
    STATUS_MS_NO_LOGICAL_CHANNELS: "no free logical channel",
    STATUS_MS_SELECT_FAILED: "SELECT failed",
    STATUS_MS_INVALID_LOGICAL_CHANNEL: "invalid logical channel",
}
ERROR_NAMES = {1: "timeout fragment", 2: "fragment out of sequence", 3: "length mismatch",
               4: "duplicated transaction id", 5: "not opened", 6: "unknown", 7: "cancel",
               8: "max transfer"}

HEADER = 12
MAX_MESSAGE = 1 << 20  # a reassembled message at most


def status_text(status):
    return "MBIM status 0x%08X (%s)" % (status, STATUS_NAMES.get(status, "see MBIM 1.0 10.3"))


def header(msg_type, length, tid):
    return struct.pack("<III", msg_type, length, tid)


def frame_length(head):
    """Bytes of the message (or fragment) whose first 12 bytes are `head`."""
    n = struct.unpack_from("<I", head, 4)[0]
    if not HEADER <= n <= MAX_MESSAGE:
        raise ProtocolError("MBIM message length %d out of range" % n)
    return n


def open_msg(tid, max_transfer):
    return header(OPEN, 16, tid) + struct.pack("<I", max_transfer)


def command(tid, uuid, cid, cmd_type, info, max_transfer=4096):
    """COMMAND as a list of fragments of at most max_transfer bytes."""
    payload = uuid + struct.pack("<III", cid, cmd_type, len(info)) + bytes(info)
    return fragments(COMMAND, tid, payload, max_transfer)


def command_done(tid, uuid, cid, status, info, max_transfer=4096):
    payload = uuid + struct.pack("<III", cid, status, len(info)) + bytes(info)
    return fragments(COMMAND_DONE, tid, payload, max_transfer)


def fragments(msg_type, tid, payload, max_transfer):
    """Split `payload` (what follows the fragment header) into fragments (MBIM 1.0 9.2)."""
    room = max_transfer - HEADER - 8
    if room < 32:
        raise ValueError("MaxControlTransfer %d is too small" % max_transfer)
    parts = [payload[i:i + room] for i in range(0, len(payload), room)] or [b""]
    return [header(msg_type, HEADER + 8 + len(p), tid) + struct.pack("<II", len(parts), i) + p
            for i, p in enumerate(parts)]


class Reassembly:
    """Joins fragments into whole messages: feed(fragment) -> (type, tid, payload) or None."""

    def __init__(self):
        self._parts = None  # (type, tid, total, [payloads])

    def feed(self, frag):
        msg_type, length, tid = struct.unpack_from("<III", frag)
        if msg_type not in (COMMAND, COMMAND_DONE, INDICATE_STATUS):
            return msg_type, tid, frag[HEADER:length]
        if length < HEADER + 8:
            raise ProtocolError("MBIM fragment of %d bytes has no fragment header" % length)
        total, current = struct.unpack_from("<II", frag, HEADER)
        body = frag[HEADER + 8:length]
        if not 1 <= total <= MAX_MESSAGE // 32 or current >= total:
            raise ProtocolError("MBIM fragment %d of %d" % (current, total))
        if current == 0:
            self._parts = (msg_type, tid, total, [body])
        elif self._parts is None or self._parts[1] != tid or len(self._parts[3]) != current:
            self._parts = None
            raise ProtocolError("MBIM fragment %d of %d out of sequence (transaction %d)"
                                % (current, total, tid))
        else:
            self._parts[3].append(body)
        if len(self._parts[3]) < total:
            return None
        t, i, _n, parts = self._parts
        self._parts = None
        return t, i, b"".join(parts)


def parse_command(payload, done):
    """(uuid, cid, type_or_status, info) from a reassembled COMMAND/COMMAND_DONE payload."""
    if len(payload) < 28:
        raise ProtocolError("MBIM command of %d bytes is cut short" % len(payload))
    uuid = payload[:16]
    cid, word, n = struct.unpack_from("<III", payload, 16)
    info = payload[28:28 + n]
    if len(info) != n:
        raise ProtocolError("MBIM information buffer announces %d bytes, carries %d"
                            % (n, len(info)))
    return uuid, cid, word, info


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def ref(info, offset, size):
    """The bytes an (offset, size) pair of an information buffer points at."""
    if offset + size > len(info):
        raise ProtocolError("MBIM field at %d+%d runs past the %d-byte buffer"
                            % (offset, size, len(info)))
    return info[offset:offset + size]


# -- Microsoft UICC low-level access buffers ---------------------------------------------

def uicc_open_channel_set(aid, p2=0x04, group=1):
    """AppIdSize, AppIdOffset, SelectP2Arg, ChannelGroup, then the AID."""
    return struct.pack("<IIII", len(aid), 16, p2, group) + pad4(aid)


def uicc_close_channel_set(channel, group=1):
    return struct.pack("<II", channel, group)


def uicc_apdu_set(channel, apdu, secure=0, class_type=0):
    """Channel, SecureMessaging, ClassByteType, CommandSize, CommandOffset, then the APDU."""
    return struct.pack("<IIIII", channel, secure, class_type, len(apdu), 20) + pad4(apdu)


def proxy_config_set(device, timeout=30):
    """mbim-proxy configuration: DevicePath (MBIM string) and Timeout."""
    path = device.encode("utf-16-le")
    return struct.pack("<III", 12, len(path), timeout) + pad4(path)


def mbim_string(info, at):
    offset, size = struct.unpack_from("<II", info, at)
    return ref(info, offset, size).decode("utf-16-le", "replace")
