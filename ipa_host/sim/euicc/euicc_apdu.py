"""APDU layer of the virtual eUICC: channels, SELECT ISD-R, STORE DATA, GET RESPONSE.

ISO/IEC 7816-4 and GlobalPlatform as an ES10 caller meets them (SGP.22 5.7):

- MANAGE CHANNEL (00 70) opens channels 1..19 and closes them.
- SELECT by AID (00|ch A4 04 P2) selects the ISD-R on any open channel;
  P2 00 answers an FCI (6F), 04 an FCP (62), 0C nothing.
- TERMINAL CAPABILITY (80 AA 00 00) is accepted.
- STORE DATA (80|ch E2, P1 11 more / 91 last, P2 block number from 00)
  reassembles one ES10 request per channel; the blocks must come in order
  and only where the ISD-R is selected.
- Answers longer than 256 bytes come as 256-byte chunks: the first with
  61xx, the rest through GET RESPONSE (00|ch C0 00 00 Le).

Transmission protocol, as the ATR announces it (ISO/IEC 7816-3, transport
of APDUs by T=0 and T=1: cases 1S-4S):

- T=0 (default): a command that carried data (case 3/4: SELECT, STORE DATA)
  never gets data back in the same exchange: its answer is 61xx and the data
  comes through GET RESPONSE, whether the command had an Le byte or not
  (a T=0 reader strips it). A case-2 command whose Le does not fit the data
  (MANAGE CHANNEL open with Le other than 01, GET RESPONSE asking for more
  than is left) is refused with 6Cxx, xx the exact length, and has no effect.
- T=1: data comes back with the command's own answer, up to 256 bytes; the
  rest through 61xx / GET RESPONSE as above.

CLA coding: channels 0-3 in b2-b1 (first interindustry), channels 4-19 as
0x40 | (ch - 4) (further interindustry); b8 set marks the proprietary class
(STORE DATA, TERMINAL CAPABILITY). Bad input never raises: it is answered
with a status word.

Lenient by default, where the specifications leave room and real eUICCs are
known to accept it, so that other LPAs and IPAs can use the card as a bench;
`strict=True` (`ipa-sim euicc --vpcd ... --strict`) refuses each of these
(LENIENCIES; docs/sim-euicc.md lists them):

- GET RESPONSE in the proprietary class, 80|ch C0 (lpac sends it so):
  strict 6E00, as ISO/IEC 7816-4 defines GET RESPONSE in the interindustry class.
- MANAGE CHANNEL close with an Le byte (00 70 80 0N 00, as lpac sends it):
  strict 6700 in T=1, and in T=0 for P3 other than 00 (P3 00 is how T=0
  carries a case-1 command: a card cannot tell them apart).
- SELECT of the ISD-R by a right-truncated AID of at least 5 bytes (ISO/IEC
  7816-4 partial selection): strict needs all 16 bytes (6A82).
- TERMINAL CAPABILITY with any data: strict wants one well-formed A9 TLV
  (ETSI TS 102 221 11.1.19), else 6A80 (6700 when there is no data).
- T=1, an Le shorter than the answer: ignored (the whole answer, up to 256
  bytes); strict gives Le bytes and 61xx for the rest.
"""

from ipa_core import tlv

ISDR_AID = bytes.fromhex("A0000005591010FFFFFFFF8900000100")

PROTOCOLS = ("T0", "T1")
MAX_CHANNEL = 19
MAX_REQUEST = 0x10000  # one reassembled STORE DATA request
CHUNK = 256

SW_OK = 0x9000

LENIENCIES = ("GET RESPONSE 80|ch", "MANAGE CHANNEL close with Le", "SELECT by partial AID",
              "TERMINAL CAPABILITY content", "T=1 short Le")


class SwError(Exception):
    """Raised by the ES10 layer to answer a status word instead of data."""

    def __init__(self, sw, reason=""):
        self.sw = sw
        Exception.__init__(self, "SW %04X%s" % (sw, ": " + reason if reason else ""))


def _sw(sw, data=b""):
    return bytes(data) + bytes(((sw >> 8) & 0xFF, sw & 0xFF))


def _available(rest):
    """61xx: xx more bytes to fetch with GET RESPONSE (00: 256 or more)."""
    return 0x6100 | (min(len(rest), CHUNK) & 0xFF)


def parse_cla(cla):
    """(proprietary, channel, secure_messaging, chaining) or None for an invalid CLA."""
    if cla == 0xFF:
        return None
    c = cla & 0x7F
    if c & 0x40:  # further interindustry: channels 4..19
        return bool(cla & 0x80), 4 + (c & 0x0F), bool(c & 0x20), bool(c & 0x10)
    if c & 0x20:  # 2X/3X, AX/BX: RFU
        return None
    return bool(cla & 0x80), c & 0x03, bool(c & 0x0C), bool(c & 0x10)


def parse_apdu(apdu):
    """(cla, ins, p1, p2, data, le) of a short APDU, or None when the length is wrong.

    le is None (absent) or 1..256.
    """
    if len(apdu) < 4:
        return None
    cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
    body = apdu[4:]
    if not body:
        return cla, ins, p1, p2, b"", None
    if len(body) == 1:
        return cla, ins, p1, p2, b"", body[0] or 256
    lc = body[0]
    if lc == 0:
        return None  # extended length: not supported
    if len(body) == 1 + lc:
        return cla, ins, p1, p2, bytes(body[1:]), None
    if len(body) == 2 + lc:
        return cla, ins, p1, p2, bytes(body[1:1 + lc]), body[-1] or 256
    return None


class Channel:
    """What one logical channel holds: selection, partial request, pending answer."""

    def __init__(self):
        self.isdr = False
        self.request = None  # bytearray while a STORE DATA sequence is open
        self.next_block = 0
        self.pending = b""


class ApduLayer:
    """Turns APDUs into whole ES10 requests for `process(request) -> response`.

    `process` returns the response data (bytes) or raises SwError.
    `fci` is a callable returning the proprietary data for the SELECT answer.
    `protocol` is "T0" or "T1" (see the module docstring).
    `strict` refuses what LENIENCIES lists (see the module docstring).
    """

    def __init__(self, process, fci=None, aid=ISDR_AID, max_request=MAX_REQUEST, protocol="T0",
                 strict=False):
        if protocol not in PROTOCOLS:
            raise ValueError("protocol must be one of %s, not %r" % (", ".join(PROTOCOLS), protocol))
        self.protocol = protocol
        self.strict = strict
        self.process = process
        self.fci = fci
        self.aid = aid
        self.max_request = max_request
        self.channels = {}
        self.reset()

    def reset(self):
        """Power cycle: only the basic channel, nothing selected, nothing pending."""
        self.channels = {0: Channel()}

    def transmit(self, apdu):
        try:
            apdu = bytes(apdu)
        except (TypeError, ValueError):
            return _sw(0x6700)
        parsed = parse_apdu(apdu)
        if parsed is None:
            return _sw(0x6700)
        cla, ins, p1, p2, data, le = parsed
        c = parse_cla(cla)
        if c is None:
            return _sw(0x6E00)
        proprietary, ch, sm, chaining = c
        handler = {
            0x70: (False, self._manage_channel),
            0xA4: (False, self._select),
            0xC0: (False, self._get_response),
            0xAA: (True, self._terminal_capability),
            0xE2: (True, self._store_data),
        }.get(ins)
        if handler is None:
            return _sw(0x6D00)
        if handler[0] != proprietary and (self.strict or ins != 0xC0):
            return _sw(0x6E00)
        if sm:
            return _sw(0x6882)
        if chaining:
            return _sw(0x6884)
        channel = self.channels.get(ch)
        if channel is None:
            return _sw(0x6881)
        if ins != 0xC0:
            channel.pending = b""  # an answer not fetched at once is lost (ISO 7816-4)
        return handler[1](ch, channel, p1, p2, data, le)

    # -- responses -------------------------------------------------------------------

    def _deliver(self, channel, data, le=None):
        """The answer to a command that carried data (case 3/4) and maybe an Le."""
        if not data:
            return _sw(SW_OK)
        if self.protocol == "T0":
            # Case 4S in T=0: the card cannot send data in the exchange that brought
            # it data; it announces them (61xx) and GET RESPONSE fetches them.
            channel.pending = data
            return _sw(_available(data))
        n = min(le, CHUNK) if self.strict and le else CHUNK
        if len(data) <= n:
            return _sw(SW_OK, data)
        channel.pending = data[n:]
        return _sw(_available(channel.pending), data[:n])

    def _wrong_le(self, le, n):
        """6Cxx when a T=0 case-2 command asks for other than the n bytes there are, else None.

        Case 2S in T=0: P3 is Le, and an absent Le is P3 = 00, i.e. 256.
        """
        if self.protocol == "T0" and (le or 256) != n:
            return _sw(0x6C00 | (n & 0xFF))
        return None

    def _get_response(self, ch, channel, p1, p2, data, le):
        if p1 or p2:
            return _sw(0x6B00)
        if data:
            return _sw(0x6700)
        if not channel.pending:
            return _sw(0x6985)
        n = le or CHUNK
        if n > len(channel.pending):  # asks for more than is left: 6Cxx in T=0, the rest in T=1
            wrong = self._wrong_le(le, min(len(channel.pending), CHUNK))
            if wrong:
                return wrong  # the answer stays for the corrected GET RESPONSE
        out, channel.pending = channel.pending[:n], channel.pending[n:]
        if channel.pending:
            return _sw(_available(channel.pending), out)
        return _sw(SW_OK, out)

    # -- channels and selection ------------------------------------------------------------

    def _manage_channel(self, ch, channel, p1, p2, data, le):
        if data:
            return _sw(0x6700)
        if p1 == 0x00:
            if p2 == 0:
                wrong = self._wrong_le(le, 1)  # the channel number: exactly one byte
                if wrong:
                    return wrong  # nothing opened
                free = [n for n in range(1, MAX_CHANNEL + 1) if n not in self.channels]
                if not free:
                    return _sw(0x6881)
                self.channels[free[0]] = Channel()
                return _sw(SW_OK, bytes((free[0],)))
            if p2 > MAX_CHANNEL or p2 in self.channels:
                return _sw(0x6A86)
            self.channels[p2] = Channel()
            return _sw(SW_OK)
        if p1 == 0x80:
            if self.strict and le is not None and (self.protocol == "T1" or le != 256):
                return _sw(0x6700)  # case 1: no Le
            target = p2 or ch
            if target == 0 or target > MAX_CHANNEL:
                return _sw(0x6A86)
            if target not in self.channels:
                return _sw(0x6881)
            del self.channels[target]
            return _sw(SW_OK)
        return _sw(0x6A86)

    def _select(self, ch, channel, p1, p2, data, le):
        if p1 != 0x04 or p2 not in (0x00, 0x04, 0x0C):
            return _sw(0x6A86)
        if not data:
            return _sw(0x6700)
        # A right-truncated AID of at least 5 bytes selects the ISD-R (partial selection).
        if data != self.aid and (self.strict or not (5 <= len(data) <= 16
                                                     and self.aid.startswith(data))):
            return _sw(0x6A82)  # the channel keeps its current selection
        channel.isdr = True
        channel.request = None
        if p2 == 0x0C:
            return _sw(SW_OK)
        prop = self.fci() if self.fci else b""
        body = tlv.encode(0x84, self.aid) + tlv.encode(0xA5, prop)
        return self._deliver(channel, tlv.encode(0x6F if p2 == 0x00 else 0x62, body), le)

    def _terminal_capability(self, ch, channel, p1, p2, data, le):
        if p1 or p2:
            return _sw(0x6A86)
        if self.strict:
            if not data:
                return _sw(0x6700)
            try:
                if tlv.decode(data).tag != 0xA9:
                    return _sw(0x6A80)
            except tlv.TlvError:
                return _sw(0x6A80)
        return _sw(SW_OK)

    # -- STORE DATA --------------------------------------------------------------------------

    def _store_data(self, ch, channel, p1, p2, data, le):
        if p1 not in (0x11, 0x91):
            return _sw(0x6A86)
        if not data:
            return _sw(0x6700)
        if not channel.isdr:
            return _sw(0x6985)
        if p2 == 0 and not (channel.request is not None and channel.next_block == 0):
            channel.request = bytearray()  # block 0 starts a new request (unless P2 wrapped)
        elif channel.request is None or p2 != channel.next_block:
            channel.request = None
            return _sw(0x6985)
        if len(channel.request) + len(data) > self.max_request:
            channel.request = None
            return _sw(0x6A84)
        channel.request += data
        channel.next_block = (p2 + 1) & 0xFF
        if p1 == 0x11:
            return _sw(SW_OK)
        request = bytes(channel.request)
        channel.request = None
        try:
            response = self.process(request)
        except SwError as e:
            return _sw(e.sw)
        return self._deliver(channel, response, le)

