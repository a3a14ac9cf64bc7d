"""The one exception hierarchy of the IPA (design.md, "Errors are values").

    IpaError
      ProtocolError          a peer sent bytes that do not follow the spec
        TlvError             malformed BER-TLV (names the offset)
      CardError              the eUICC answered a status word other than 9000
      TransportError         the way to the card or the server failed
        TimeoutError_        a bounded wait ran out
      FunctionError          an ES10/ESipa function answered with a spec error code
        EimError             the eIM answered eimPackageError / an ESipa error

Every message says what was expected and what came instead. Spec error codes
stay numbers; name tables turn them into words for people (the status word
names are here, CardError needs them; ipa_core.apdu re-exports sw_name).

This module imports no other: every other module of the core may import it.
"""


class IpaError(Exception):
    """Base of every error the IPA raises on purpose."""


class ProtocolError(IpaError):
    """Bytes from a peer that do not follow the protocol."""


class TlvError(ProtocolError):
    """Malformed BER-TLV: at `offset`, `expected` something, `found` another."""

    def __init__(self, offset, expected, found):
        self.offset = offset
        self.expected = expected
        self.found = found
        super().__init__("TLV at offset %d: expected %s, found %s" % (offset, expected, found))


class TransportError(IpaError):
    """The card or network transport failed (no answer, garbage, closed)."""


class TimeoutError_(TransportError):
    """A bounded wait ran out (name avoids shadowing the builtin)."""


# ---- numbers in a peer's text ---------------------------------------------------

def is_digits(s):
    """True when `s` (str or bytes) is non-empty and all ASCII 0-9.

    str.isdigit() also takes other scripts' digits ('²', U+00B2) that int() then
    refuses with a bare ValueError (issue 17, F2): a peer's number (Content-Length,
    an AT answer's length or code) is checked here first, so that only the caller's
    ProtocolError can follow. Here because every module that reads one imports errors.
    """
    if not s:
        return False
    if isinstance(s, (bytes, bytearray)):
        for c in s:
            if c < 48 or c > 57:
                return False
        return True
    for ch in s:
        if ch < "0" or ch > "9":
            return False
    return True


# ---- code -> name tables ------------------------------------------------------

class Names:
    """A read-only {code: name} table over a constant tuple of (code, name) pairs.

    Frozen into a board's firmware the pairs stay in flash with the code, where a dict
    literal is built in the heap at import (60 tables: ~5 KB of a 64 KB heap). Reads like
    the dict it replaces: get, [], in, iteration over the codes, items, len.
    """

    def __init__(self, pairs):
        self.pairs = pairs

    def get(self, code, default=None):
        for k, v in self.pairs:
            if k == code:
                return v
        return default

    def __getitem__(self, code):
        for k, v in self.pairs:
            if k == code:
                return v
        raise KeyError(code)

    def __contains__(self, code):
        for k, _ in self.pairs:
            if k == code:
                return True
        return False

    def __iter__(self):
        for k, _ in self.pairs:
            yield k

    def items(self):
        return self.pairs

    def __len__(self):
        return len(self.pairs)


# ---- status words (ISO 7816-4; sw_name is also ipa_core.apdu.sw_name) ----------

SW_NAMES = Names(((0x9000, "success"), (0x6200, "warning, state unchanged"),
                  (0x6281, "part of returned data may be corrupted"),
                  (0x6282, "end of file reached before reading Le bytes"),
                  (0x6400, "execution error, state unchanged"), (0x6581, "memory failure"),
                  (0x6600, "security issue / transmission error"),
                  (0x6601, "transmission checksum error"), (0x6700, "wrong length"),
                  (0x6881, "logical channel not supported"),
                  (0x6882, "secure messaging not supported"),
                  (0x6883, "last command of the chain expected"),
                  (0x6884, "command chaining not supported"),
                  (0x6982, "security status not satisfied"),
                  (0x6983, "authentication method blocked"),
                  (0x6985, "conditions of use not satisfied"), (0x6986, "command not allowed"),
                  (0x6999, "applet selection failed"), (0x6A80, "incorrect data field"),
                  (0x6A81, "function not supported"), (0x6A82, "application or file not found"),
                  (0x6A84, "not enough memory"), (0x6A86, "incorrect P1 P2"),
                  (0x6A88, "referenced data not found"), (0x6B00, "wrong P1 P2"),
                  (0x6D00, "instruction not supported"), (0x6E00, "class not supported"),
                  (0x6F00, "no precise diagnosis")))


def sw_name(sw):
    """A person's name for a status word."""
    if sw in SW_NAMES:
        return SW_NAMES[sw]
    hi = sw >> 8
    if hi == 0x61:
        return "%d more bytes available" % (sw & 0xFF)
    if hi == 0x6C:
        return "wrong Le, exact length %d" % (sw & 0xFF)
    if hi == 0x63 and sw & 0xF0 == 0xC0:
        return "verification failed, %d tries left" % (sw & 0x0F)
    return "unknown status"


class CardError(IpaError):
    """The card answered status word `sw` (an int such as 0x6A88)."""

    def __init__(self, sw, context=None):
        self.sw = sw
        self.context = context
        msg = "card answered SW %04X (%s)" % (sw, sw_name(sw))
        if context:
            msg = "%s: %s" % (context, msg)
        super().__init__(msg + ", expected 9000")


class FunctionError(IpaError):
    """A spec function answered with a numbered error.

    `function` is the spec name (e.g. "ES10b.LoadEuiccPackage"), `code` the
    number from the ASN.1 module and `name` its name when known.
    """

    def __init__(self, function, code, name=None):
        self.function = function
        self.code = code
        self.name = name or "undefined"
        super().__init__("%s failed: %s (%d)" % (function, self.name, code))


class EimError(FunctionError):
    """The eIM answered with an error code (eimPackageError and the like).

    status_code_data: the JSON binding's header status (subjectCode,
    reasonCode, ...) when the error came that way, else None.
    """

    status_code_data = None
