"""Command/response APDUs and the ISD-R session that carries ES10 (ISO 7816-4, SGP.22 5.7).

A card is any object with `transmit(apdu: bytes) -> bytes` returning the
response data followed by SW1 SW2. `IsdrSession` opens a logical channel to
the ISD-R, sends each ES10 request as a STORE DATA sequence and collects the
answer through `61xx` GET RESPONSE, so every transport (PC/SC, AT+CSIM,
AT+CGLA, QuecPython) only ever moves single APDUs.
"""

# sw_name (a status word's name) lives in ipa_core.errors, with its table SW_NAMES: CardError's
# message uses it and errors imports no other module. It stays part of this API.
from ipa_core.errors import CardError, TransportError, ProtocolError, sw_name  # noqa: F401

ISDR_AID = b"\xa0\x00\x00\x05\x59\x10\x10\xff\xff\xff\xff\x89\x00\x00\x01\x00"

# TERMINAL CAPABILITY with eUICC-related terminal capabilities (A9 { 83 01 07 }):
# the device supports local profile management by an LPA/IPA.
TERMINAL_CAPABILITY = b"\x80\xaa\x00\x00\x05\xa9\x03\x83\x01\x07"

SEGMENT_SIZE = 255  # STORE DATA Lc, short APDUs
MAX_RESPONSE = 0x10000  # bound on one reassembled response

SW_OK = 0x9000


def command(cla, ins, p1, p2, data=None, le=None):
    """A short command APDU, ISO 7816-4 cases 1-4 (le=0 means 256)."""
    out = bytearray((cla, ins, p1, p2))
    if data:
        if len(data) > 255:
            raise ValueError("short APDU data of %d bytes, at most 255" % len(data))
        out.append(len(data))
        out += data
    if le is not None:
        if not 0 <= le <= 256:
            raise ValueError("Le %d outside 0..256" % le)
        out.append(le & 0xFF)
    return bytes(out)


def split_response(resp):
    """(data, sw) of a response APDU; fewer than 2 bytes is a TransportError."""
    if resp is None or len(resp) < 2:
        raise TransportError(
            "card response of %d bytes, expected at least SW1 SW2"
            % (0 if resp is None else len(resp))
        )
    return bytes(memoryview(resp)[:-2]), (resp[-2] << 8) | resp[-1]  # one copy, not two


def strip_le(apdu):
    """The APDU without its Le byte (cases 2 and 4), unchanged otherwise."""
    if len(apdu) == 5:
        return apdu[:4]
    if len(apdu) > 5 and len(apdu) == 6 + apdu[4]:
        return apdu[:-1]
    return apdu


def cla_for(base, channel):
    """CLA byte for `base` (0x00 or 0x80) on logical channel 0..19."""
    if channel < 4:
        return (base & 0x80) | channel
    if channel < 20:
        return (base & 0x80) | 0x40 | (channel - 4)
    raise ValueError("logical channel %d outside 0..19" % channel)


class IsdrSession:
    """ES10 access to the ISD-R: channel, SELECT, STORE DATA, GET RESPONSE.

    card            object with transmit(bytes) -> bytes
    aid             ISD-R AID (some test cards use another)
    segment_size    STORE DATA block size (modems with UART checksum
                    trouble need less than 255)
    modem_channel   True when the transport already opened and selected the
                    channel (AT+CCHO/CGLA): send CLA with channel bits 0 and
                    do not MANAGE CHANNEL or SELECT
    terminal_capability  send TERMINAL CAPABILITY first (basic channel)
    max_response    bound on one reassembled response
    trace           optional callable(direction, bytes), direction ">" or "<"
    version         SGP.32 version of the eUICC ("1.2", or "1.0": see
                    ipa_core.version); es10 functions read it from the session
    """

    def __init__(self, card, aid=ISDR_AID, segment_size=SEGMENT_SIZE,
                 modem_channel=False, terminal_capability=True,
                 max_response=MAX_RESPONSE, select_p2=0x04, trace=None, version="1.2"):
        if not 1 <= segment_size <= 255:
            raise ValueError("segment_size %d outside 1..255" % segment_size)
        self.card = card
        self.aid = aid
        self.segment_size = segment_size
        self.modem_channel = modem_channel
        self.terminal_capability = terminal_capability
        self.max_response = max_response
        self.select_p2 = select_p2
        self.trace = trace
        self.version = version
        self.channel = 0
        self.is_open = False
        self.select_response = b""

    # -- single APDUs ------------------------------------------------------

    def _raw(self, apdu):
        if self.trace:
            self.trace(">", apdu)
        resp = self.card.transmit(apdu)
        if self.trace:
            self.trace("<", resp)
        return split_response(resp)

    def transmit(self, apdu):
        """Send one APDU; follow 6Cxx and 61xx; return (data, sw).

        61xx answers are collected with GET RESPONSE until a final SW; the
        whole answer is bounded by max_response.
        """
        data, sw = self._raw(apdu)
        if sw >> 8 == 0x6C:
            # Wrong Le: resend once with the exact length the card named.
            data, sw = self._raw(strip_le(apdu) + bytes((sw & 0xFF,)))
        if sw >> 8 != 0x61:
            if len(data) > self.max_response:
                raise ProtocolError("card response of %d bytes, over the %d-byte bound"
                                    % (len(data), self.max_response))
            return data, sw  # complete (the transport followed any 61xx): no copy
        out = [data]
        size = len(data)
        while sw >> 8 == 0x61:
            le = sw & 0xFF
            if size + (le or 256) > self.max_response:
                raise ProtocolError(
                    "card response over the %d-byte bound (already %d, %s more announced)"
                    % (self.max_response, size, le or 256)
                )
            data, sw = self._raw(bytes((self.cla(0x00), 0xC0, 0x00, 0x00, le)))
            out.append(data)  # pieces joined once: no growing buffer (a board's heap)
            size += len(data)
        if size > self.max_response:
            raise ProtocolError(
                "card response of %d bytes, over the %d-byte bound" % (size, self.max_response)
            )
        return b"".join(out), sw

    def cla(self, base):
        return cla_for(base, 0 if self.modem_channel else self.channel)

    # -- channel -------------------------------------------------------------

    def open(self):
        """TERMINAL CAPABILITY, MANAGE CHANNEL open and SELECT ISD-R.

        A card that answers 6881 to MANAGE CHANNEL, or to the SELECT on the new
        channel, has no usable logical channels: the ISD-R is then selected
        on the basic channel.
        """
        if self.modem_channel:
            self.is_open = True
            return self
        if self.terminal_capability:
            # Optional: older cards answer 6D00/6A86; that is not a failure.
            self.transmit(TERMINAL_CAPABILITY)
        data, sw = self.transmit(command(0x00, 0x70, 0x00, 0x00, le=1))
        if sw == 0x6881:
            self.channel = 0
        elif sw != SW_OK:
            raise CardError(sw, "MANAGE CHANNEL open")
        elif len(data) != 1 or not 1 <= data[0] <= 19:
            raise ProtocolError(
                "MANAGE CHANNEL open answered %r, expected one channel number 1..19"
                % (bytes(data),)
            )
        else:
            self.channel = data[0]
        data, sw = self._select()
        if sw == 0x6881 and self.channel:
            # Some card/reader pairs open the channel but refuse commands on
            # it: give it back and use the basic channel.
            self.close()
            data, sw = self._select()
        if sw != SW_OK:
            self.close()
            raise CardError(sw, "SELECT ISD-R")
        self.select_response = data
        self.is_open = True
        return self

    def _select(self):
        return self.transmit(command(self.cla(0x00), 0xA4, 0x04, self.select_p2, self.aid, le=0))

    def close(self):
        """MANAGE CHANNEL close for the channel we opened (never channel 0)."""
        ch = self.channel
        self.is_open = False
        self.channel = 0
        if ch and not self.modem_channel:
            self.transmit(command(0x00, 0x70, 0x80, ch))

    def invalidate(self):
        """Forget the channel without closing it: after a SIM refresh or a modem restart
        every logical channel is gone already. The next store_data() opens a new one."""
        self.is_open = False
        self.channel = 0

    def __enter__(self):
        if not self.is_open:
            self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    # -- ES10 ------------------------------------------------------------------

    def store_data(self, request):
        """Send one ES10 request (a whole BER-TLV) and return the response data.

        Blocks of segment_size bytes: P1 11 (more follow) / 91 (last), P2 the
        block number. Every block must answer 9000 (data only on the last).
        """
        if not request:
            raise ValueError("empty STORE DATA")
        if not self.is_open:
            self.open()
        n = len(request)
        seg = self.segment_size
        block = 0
        off = 0
        while True:
            part = request[off:off + seg]
            off += len(part)
            last = off >= n
            data, sw = self.transmit(
                command(self.cla(0x80), 0xE2, 0x91 if last else 0x11, block & 0xFF, part)
            )
            if sw != SW_OK:
                raise CardError(sw, "STORE DATA block %d" % block)
            if last:
                return data
            block += 1
