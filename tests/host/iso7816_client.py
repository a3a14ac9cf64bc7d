"""A second, independent PC/SC client for the virtual eUICC, written only from ISO/IEC
7816-3 (ATR, APDU transport by T=0 / T=1), ISO/IEC 7816-4 (MANAGE CHANNEL, SELECT, GET
RESPONSE, CLA coding) and SGP.22 5.7 (STORE DATA carrying ES10, the ISD-R AID).

It shares no code with the IPA (ipa_core.apdu, ipa_core.at_card, ipa_host.card.pcsc): it
talks to pcsc-lite through pyscard's raw `smartcard.scard` API, so the card is tried by a
client it was not written against. In T=0 it is strict, like a client built for real T=0
cards: a command that carries data (case 3/4) is sent without Le, as a T=0 reader sends
it, and an answer with data in that same exchange is refused; data only come through
GET RESPONSE after 61xx. A case-2 command answered 6Cxx is sent again with Le = xx.

    with Iso7816Client(reader, "T0") as c:
        eid = c.es10(bytes.fromhex("BF3E035C015A"))
"""

from smartcard import scard

ISDR_AID = bytes.fromhex("A0000005591010FFFFFFFF8900000100")  # SGP.22: the ISD-R
MAX_ANSWER = 0x10000  # bound on one answer put together from GET RESPONSEs
BLOCK = 255  # STORE DATA block (short Lc)


class ClientError(Exception):
    """The card did something this client does not accept; the message says what."""


def parse_atr(atr):
    """ISO/IEC 7816-3 answer-to-reset: {"protocols": [T...], "historical": bytes, "tck": bool}.

    TS, T0 (Y1, K), interface bytes TAi/TBi/TCi/TDi as each Yi says, K historical
    bytes, and TCK when any protocol other than T=0 is indicated (then the XOR of
    T0..TCK is 0). No TD1 means T=0 only.
    """
    atr = bytes(atr)
    if len(atr) < 2 or atr[0] not in (0x3B, 0x3F):
        raise ClientError("ATR %s: TS must be 3B or 3F" % atr.hex())
    y, k = atr[1] >> 4, atr[1] & 0x0F
    i = 2
    protocols = []
    while True:
        for bit in (1, 2, 4):  # TAi, TBi, TCi
            if y & bit:
                i += 1
        if not y & 8:
            break
        if i >= len(atr):
            raise ClientError("ATR %s ends inside its interface bytes" % atr.hex())
        td = atr[i]
        i += 1
        protocols.append(td & 0x0F)
        y = td >> 4
    if i > len(atr):
        raise ClientError("ATR %s ends inside its interface bytes" % atr.hex())
    if not protocols:
        protocols = [0]
    historical = atr[i:i + k]
    if len(historical) != k:
        raise ClientError("ATR %s: %d historical bytes announced, %d there" % (atr.hex(), k,
                                                                             len(historical)))
    tck = any(p != 0 for p in protocols)
    rest = atr[i + k:]
    if len(rest) != (1 if tck else 0):
        raise ClientError("ATR %s: %d bytes after the historical bytes, expected %d"
                          % (atr.hex(), len(rest), 1 if tck else 0))
    if tck:
        x = 0
        for b in atr[1:]:
            x ^= b
        if x:
            raise ClientError("ATR %s: TCK wrong (XOR of T0..TCK is %02X)" % (atr.hex(), x))
    return {"protocols": protocols, "historical": historical, "tck": tck}


def cla_of(base, channel):
    """ISO/IEC 7816-4 class byte: channels 0-3 in b2-b1, 4-19 as 01xx xxxx (b4-b1 = channel - 4)."""
    if channel < 4:
        return base | channel
    return base | 0x40 | (channel - 4)


class Iso7816Client:
    """One exclusive PC/SC connection in protocol "T0" or "T1".

    `naive_get_response`: ask GET RESPONSE for 256 bytes whatever 61xx said (some
    clients do), so a shorter rest is refused with 6Cxx and asked again.
    `lpac_style`: two forms lpac's PC/SC driver sends and real eUICCs accept, though
    ISO/IEC 7816-4 has them otherwise: GET RESPONSE in the proprietary class (80|ch C0)
    and MANAGE CHANNEL close with an Le byte (00 70 80 0N 00).
    `log` keeps every (command, response) exchanged, in order.
    """

    def __init__(self, reader, protocol, naive_get_response=False, lpac_style=False):
        if protocol not in ("T0", "T1"):
            raise ValueError("protocol T0 or T1, not %r" % (protocol,))
        self.protocol = protocol
        self.naive = naive_get_response
        self.lpac = lpac_style
        self.log = []
        self.ctx = self.card = None
        hr, self.ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hr != scard.SCARD_S_SUCCESS:
            raise ClientError("no PC/SC context: %s" % scard.SCardGetErrorMessage(hr))
        want = scard.SCARD_PROTOCOL_T0 if protocol == "T0" else scard.SCARD_PROTOCOL_T1
        hr, card, active = scard.SCardConnect(self.ctx, reader, scard.SCARD_SHARE_EXCLUSIVE, want)
        if hr != scard.SCARD_S_SUCCESS:  # no handle to disconnect
            self.close()
            raise ClientError("connect %s in %s: %s" % (reader, protocol,
                                                        scard.SCardGetErrorMessage(hr)))
        self.card = card
        if active != want:
            self.close()
            raise ClientError("asked for %s, the reader chose protocol %r" % (protocol, active))
        self.pci = scard.SCARD_PCI_T0 if protocol == "T0" else scard.SCARD_PCI_T1
        hr, _name, _state, _proto, atr = scard.SCardStatus(self.card)
        if hr != scard.SCARD_S_SUCCESS:
            self.close()
            raise ClientError("SCardStatus: %s" % scard.SCardGetErrorMessage(hr))
        self.atr = bytes(atr)

    def close(self):
        if self.card is not None:
            scard.SCardDisconnect(self.card, scard.SCARD_RESET_CARD)
            self.card = None
        if self.ctx is not None:
            scard.SCardReleaseContext(self.ctx)
            self.ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- APDU transport (ISO/IEC 7816-3, T=0 and T=1: cases 1S-4S) ---------------------------

    def _exchange(self, apdu):
        hr, resp = scard.SCardTransmit(self.card, self.pci, list(apdu))
        if hr != scard.SCARD_S_SUCCESS:
            raise ClientError("SCardTransmit(%s): %s" % (bytes(apdu).hex(),
                                                         scard.SCardGetErrorMessage(hr)))
        resp = bytes(resp)
        self.log.append((bytes(apdu), resp))
        if len(resp) < 2:
            raise ClientError("answer %s to %s has no SW1 SW2" % (resp.hex(), bytes(apdu).hex()))
        return resp[:-2], (resp[-2] << 8) | resp[-1]

    def command(self, cla, ins, p1, p2, data=b"", le=None):
        """One command APDU -> (response data, final SW); 61xx and 6Cxx handled here.

        le: None or 1..256 for a command without data (in T=0 an absent Le goes as P3 00);
        a command with data goes without Le in T=0 (case 3 TPDU), with Le 00 in T=1.
        """
        header = bytes((cla, ins, p1, p2))
        channel_cla = cla & 0x4F if cla & 0x40 else cla & 0x03  # GET RESPONSE: interindustry
        if self.lpac:
            channel_cla |= 0x80
        if data:
            body = header + bytes((len(data),)) + bytes(data)
            if self.protocol == "T1":
                body += b"\x00"  # case 4: any length (Ne 256)
            got, sw = self._exchange(body)
            if self.protocol == "T0" and got:
                raise ClientError("T=0: the card answered %s with %d data bytes and SW %04X in the "
                                  "same exchange; a T=0 card answers 61xx and gives data through "
                                  "GET RESPONSE" % (header.hex().upper(), len(got), sw))
        else:
            p3 = (le or 256) & 0xFF if (le is not None or self.protocol == "T0") else None
            got, sw = self._exchange(header + (bytes((p3,)) if p3 is not None else b""))
            if sw >> 8 == 0x6C and not got:  # wrong Le: the card names the right one
                got, sw = self._exchange(header + bytes((sw & 0xFF,)))
        out = [got]
        size = len(got)
        while sw >> 8 == 0x61:
            ask = 0 if self.naive else sw & 0xFF
            got, sw = self._exchange(bytes((channel_cla, 0xC0, 0x00, 0x00, ask)))
            if sw >> 8 == 0x6C and not got:
                got, sw = self._exchange(bytes((channel_cla, 0xC0, 0x00, 0x00, sw & 0xFF)))
            size += len(got)
            if size > MAX_ANSWER:
                raise ClientError("answer to %s over %d bytes" % (header.hex(), MAX_ANSWER))
            out.append(got)
        return b"".join(out), sw

    # -- ISO/IEC 7816-4 and SGP.22 5.7 ---------------------------------------------------------

    def open_channel(self, le=1):
        """MANAGE CHANNEL open (00 70 00 00, case 2): the card assigns the channel number."""
        data, sw = self.command(0x00, 0x70, 0x00, 0x00, le=le)
        if sw != 0x9000 or len(data) != 1 or not 1 <= data[0] <= 19:
            raise ClientError("MANAGE CHANNEL open: %s %04X" % (data.hex(), sw))
        return data[0]

    def close_channel(self, channel):
        data, sw = self.command(0x00, 0x70, 0x80, channel, le=256 if self.lpac else None)
        if sw != 0x9000:
            raise ClientError("MANAGE CHANNEL close %d: %04X" % (channel, sw))

    def select_isdr(self, channel):
        """SELECT by DF name, first occurrence, FCI returned (P2 00): the FCI template 6F."""
        data, sw = self.command(cla_of(0x00, channel), 0xA4, 0x04, 0x00, ISDR_AID)
        if sw != 0x9000 or data[:1] != b"\x6f":
            raise ClientError("SELECT ISD-R: %s %04X" % (data[:8].hex(), sw))
        return data

    def store_data(self, channel, request, block=BLOCK):
        """SGP.22 5.7 (ES10 over STORE DATA): blocks P1 11 (more) / 91 (last), P2 the block number from 00."""
        parts = [request[i:i + block] for i in range(0, len(request), block)] or [b""]
        for n, part in enumerate(parts):
            last = n == len(parts) - 1
            data, sw = self.command(cla_of(0x80, channel), 0xE2, 0x91 if last else 0x11, n, part)
            if not last and (sw != 0x9000 or data):
                raise ClientError("STORE DATA block %d: %s %04X" % (n, data.hex(), sw))
        if sw != 0x9000:
            raise ClientError("STORE DATA: SW %04X" % sw)
        return data

    def es10(self, request, block=BLOCK):
        """One ES10 request on a logical channel of its own -> the response."""
        ch = self.open_channel()
        try:
            self.select_isdr(ch)
            return self.store_data(ch, request, block)
        finally:
            self.close_channel(ch)
