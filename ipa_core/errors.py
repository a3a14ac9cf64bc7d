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
stay numbers; name tables turn them into words for people.
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


class CardError(IpaError):
    """The card answered status word `sw` (an int such as 0x6A88)."""

    def __init__(self, sw, context=None):
        self.sw = sw
        self.context = context
        # Imported here so errors.py stays import-cycle free.
        from ipa_core.apdu import sw_name

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
