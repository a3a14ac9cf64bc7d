"""A card behind a PC/SC reader (pcsc-lite / WinSCard through pyscard).

The card object the core expects: `transmit(apdu: bytes) -> bytes` returning
the response data followed by SW1 SW2. pcsc-lite moves single APDUs and does
NOT issue GET RESPONSE for `61xx`; that stays with `ipa_core.apdu.IsdrSession`.

Reader selection (`reader=`): None picks the one reader holding a card (an
error when there are none or several: a security key also shows up as a
reader with a card, and an IPA must not talk to the wrong chip), an int picks
by position in `list_readers()`, a string by exact name and else by a unique
case-insensitive substring. Every failure is a `TransportError` naming what
was expected and listing the readers that were seen.
"""

from ipa_core.errors import TransportError

try:  # pyscard is the pcsc extra; say what to install instead of a bare ImportError
    from smartcard import scard as _scard
except ImportError:  # pragma: no cover - depends on the environment
    _scard = None

PROTOCOLS = ("any", "T0", "T1")
MAX_APDU = 4 + 3 + 65535 + 3  # extended case 4: header, Lc, data, Le
STATUS_TIMEOUT_MS = 0  # SCardGetStatusChange: just report the current state


def _need_pyscard():
    if _scard is None:
        raise TransportError(
            "PC/SC needs pyscard, the pcsc extra: pip install 'ipa-iot[pcsc]' "
            "(apt-get install pcscd libpcsclite-dev swig first: it builds from source)"
        )
    return _scard


def _err(hr):
    """pcsc-lite's text and the code, e.g. 'No smart card inserted. (0x8010000C)'."""
    s = _need_pyscard()
    return "%s (0x%08X)" % (s.SCardGetErrorMessage(hr).strip().rstrip("."), hr & 0xFFFFFFFF)


def _context():
    s = _need_pyscard()
    hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
    if hr != s.SCARD_S_SUCCESS:
        raise TransportError(
            "cannot reach the PC/SC service: %s; is pcscd running? "
            "(apt-get install pcscd; systemctl start pcscd)" % _err(hr)
        )
    return ctx


def _readers(ctx):
    s = _scard
    hr, names = s.SCardListReaders(ctx, [])
    if hr == s.SCARD_E_NO_READERS_AVAILABLE:
        return []
    if hr != s.SCARD_S_SUCCESS:
        raise TransportError("listing PC/SC readers failed: %s" % _err(hr))
    return list(names)


def _present(ctx, names):
    """The subset of `names` whose reader reports a card present."""
    s = _scard
    if not names:
        return []
    states = [(n, s.SCARD_STATE_UNAWARE) for n in names]
    hr, out = s.SCardGetStatusChange(ctx, STATUS_TIMEOUT_MS, states)
    if hr not in (s.SCARD_S_SUCCESS, s.SCARD_E_TIMEOUT):
        raise TransportError("reading the PC/SC reader states failed: %s" % _err(hr))
    return [st[0] for st in out if st[1] & s.SCARD_STATE_PRESENT]


def list_readers():
    """Names of the PC/SC readers pcscd knows, in its order (may be empty)."""
    ctx = _context()
    try:
        return _readers(ctx)
    finally:
        _scard.SCardReleaseContext(ctx)


def _seen(names):
    return ", ".join(repr(n) for n in names) if names else "none"


def choose_reader(names, reader, present):
    """Pick one name from `names` per the rules in the module docstring.

    `present` lists the readers holding a card (used when reader is None).
    """
    if not names:
        raise TransportError(
            "no PC/SC reader found: connect a reader (or start the virtual one: "
            "ipa-sim euicc --vpcd) and check that pcscd sees it (pcsc_scan)"
        )
    if reader is None:
        if len(present) == 1:
            return present[0]
        if not present:
            raise TransportError("no card in any PC/SC reader (readers seen: %s)" % _seen(names))
        raise TransportError(
            "cards in %d PC/SC readers (%s); choose one with pcsc:<name or index>"
            % (len(present), _seen(present))
        )
    if isinstance(reader, bool) or not isinstance(reader, (int, str)):
        raise TransportError("reader must be None, an index or a name, not %r" % (reader,))
    if isinstance(reader, int):
        if 0 <= reader < len(names):
            return names[reader]
        raise TransportError(
            "no PC/SC reader at index %d: expected 0..%d (readers seen: %s)"
            % (reader, len(names) - 1, _seen(names))
        )
    if reader in names:
        return reader
    hits = [n for n in names if reader.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise TransportError(
            "no PC/SC reader named like %r (readers seen: %s)" % (reader, _seen(names))
        )
    raise TransportError(
        "%r matches %d PC/SC readers (%s); give more of the name or an index"
        % (reader, len(hits), _seen(hits))
    )


class PcscCard:
    """One connection to the card in a PC/SC reader.

    `shared=False` connects exclusively (nothing else can interleave APDUs in
    the middle of an ES10 STORE DATA sequence); `protocol` is "any", "T0" or
    "T1".
    """

    def __init__(self, reader=None, shared=False, protocol="any"):
        s = _need_pyscard()
        if protocol not in PROTOCOLS:
            raise TransportError(
                "PC/SC protocol must be one of %s, not %r" % ("/".join(PROTOCOLS), protocol)
            )
        self._ctx = _context()
        self._card = None
        try:
            names = _readers(self._ctx)
            present = _present(self._ctx, names) if reader is None else []
            self.reader = choose_reader(names, reader, present)
            share = s.SCARD_SHARE_SHARED if shared else s.SCARD_SHARE_EXCLUSIVE
            want = {
                "any": s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1,
                "T0": s.SCARD_PROTOCOL_T0,
                "T1": s.SCARD_PROTOCOL_T1,
            }[protocol]
            hr, card, active = s.SCardConnect(self._ctx, self.reader, share, want)
            if hr != s.SCARD_S_SUCCESS:
                hint = ""
                if hr in (s.SCARD_E_NO_SMARTCARD, s.SCARD_W_REMOVED_CARD):
                    hint = ": no card in it"
                elif hr == s.SCARD_E_SHARING_VIOLATION:
                    hint = ": another program holds it (try shared mode or stop it)"
                elif hr == s.SCARD_E_PROTO_MISMATCH:
                    hint = (": the card does not offer protocol %s, or an earlier connection "
                            "left it in the other one (reset or reinsert it)" % protocol)
                raise TransportError(
                    "cannot connect to the card in %r%s (%s)" % (self.reader, hint, _err(hr))
                )
            self._card = card
            self._share = share
            self._active = active
            self.protocol = "T0" if active == s.SCARD_PROTOCOL_T0 else "T1"
            hr, _name, _state, _proto, atr = s.SCardStatus(card)
            if hr != s.SCARD_S_SUCCESS:
                raise TransportError("reading the ATR in %r failed: %s" % (self.reader, _err(hr)))
            self.atr = bytes(atr)
        except BaseException:
            self.close()
            raise

    def transmit(self, apdu):
        """Send one command APDU; return response data + SW1 SW2 (ISO 7816-4)."""
        s = _scard
        if self._card is None:
            raise TransportError("PC/SC card connection is closed")
        apdu = bytes(apdu)
        if not 4 <= len(apdu) <= MAX_APDU:
            raise TransportError(
                "command APDU of %d bytes, expected 4..%d" % (len(apdu), MAX_APDU)
            )
        pci = s.SCARD_PCI_T0 if self._active == s.SCARD_PROTOCOL_T0 else s.SCARD_PCI_T1
        hr, resp = s.SCardTransmit(self._card, pci, list(apdu))
        if hr != s.SCARD_S_SUCCESS:
            hint = ""
            if hr in (s.SCARD_W_REMOVED_CARD, s.SCARD_E_NO_SMARTCARD):
                hint = "the card was removed; "
            elif hr == s.SCARD_W_RESET_CARD:
                hint = "the card was reset by another program (channels are gone); "
            raise TransportError(
                "PC/SC transmit to %r failed: %s%s" % (self.reader, hint, _err(hr))
            )
        if len(resp) < 2:
            raise TransportError(
                "PC/SC response of %d bytes from %r, expected at least SW1 SW2"
                % (len(resp), self.reader)
            )
        return bytes(resp)

    def reset(self):
        """Warm-reset the card (SCardReconnect with SCARD_RESET_CARD); updates `atr`."""
        s = _scard
        if self._card is None:
            raise TransportError("PC/SC card connection is closed")
        hr, active = s.SCardReconnect(
            self._card, self._share, self._active, s.SCARD_RESET_CARD
        )
        if hr != s.SCARD_S_SUCCESS:
            raise TransportError("PC/SC reset of %r failed: %s" % (self.reader, _err(hr)))
        self._active = active
        hr, _name, _state, _proto, atr = s.SCardStatus(self._card)
        if hr == s.SCARD_S_SUCCESS:
            self.atr = bytes(atr)

    def close(self, reset=False):
        """Disconnect (leaving the card powered unless `reset`) and release the context."""
        s = _scard
        card, self._card = self._card, None
        ctx, self._ctx = getattr(self, "_ctx", None), None
        if card is not None:
            s.SCardDisconnect(card, s.SCARD_RESET_CARD if reset else s.SCARD_LEAVE_CARD)
        if ctx is not None:
            s.SCardReleaseContext(ctx)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "PcscCard(%r, %s)" % (getattr(self, "reader", None), getattr(self, "protocol", "?"))
