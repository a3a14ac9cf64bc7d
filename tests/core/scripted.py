"""Scripted peers for core tests: a card that checks every APDU, a session that checks every
ES10 request. MicroPython-clean (plain classes, binascii, AssertionError messages).

    card = ScriptedCard([("00 70 00 00 01", "01 9000"), ...])
    ... run code against card ...
    card.done()            # every scripted exchange happened

Hex strings may contain spaces and any case. A response may also be an
exception instance: it is raised instead of answering (a dead reader, a
timeout).
"""

from ipa_core.compat import hexlify, unhexlify


def clean_hex(x):
    """'bf3e 03 5C015a' -> 'BF3E035C015A'; bytes are turned into hex."""
    if isinstance(x, (bytes, bytearray, memoryview)):
        return hexlify(bytes(x)).decode().upper()
    out = "".join(x.split()).upper()
    if len(out) % 2:
        raise ValueError("odd-length hex %r in a script" % (x,))
    return out


def to_bytes(x):
    if isinstance(x, (bytes, bytearray)):
        return bytes(x)
    return unhexlify(clean_hex(x))


def first_difference(a, b):
    """Byte index of the first difference between two hex strings."""
    n = min(len(a), len(b))
    for i in range(0, n, 2):
        if a[i:i + 2] != b[i:i + 2]:
            return i // 2
    return n // 2


class _Script:
    what = "exchange"

    def __init__(self, exchanges, name):
        self.name = name
        self.script = []
        for exp, rsp in exchanges:
            self.script.append((clean_hex(exp), rsp if isinstance(rsp, Exception) else
                                to_bytes(rsp)))
        self.pos = 0
        self.sent = []

    def _answer(self, data):
        got = clean_hex(data)
        self.sent.append(bytes(data))
        n = self.pos + 1
        if self.pos >= len(self.script):
            raise AssertionError("%s: unexpected %s #%d %s: the script has only %d"
                                 % (self.name, self.what, n, got, len(self.script)))
        exp, rsp = self.script[self.pos]
        if got != exp:
            raise AssertionError(
                "%s: %s #%d differs at byte %d\n  expected %s\n  sent     %s"
                % (self.name, self.what, n, first_difference(exp, got), exp, got))
        self.pos += 1
        if isinstance(rsp, Exception):
            raise rsp
        return rsp

    def done(self):
        """Assert every scripted exchange was used."""
        if self.pos != len(self.script):
            raise AssertionError("%s: %d of %d %ss done; next expected %s"
                                 % (self.name, self.pos, len(self.script), self.what,
                                    self.script[self.pos][0]))


class ScriptedCard(_Script):
    """A card (transmit(apdu) -> data + SW) that asserts the exact APDUs sent, in order.

    exchanges: list of (expected_apdu_hex, response_hex) where the response
    includes SW1 SW2.
    """

    what = "APDU"

    def __init__(self, exchanges, name="ScriptedCard"):
        _Script.__init__(self, exchanges, name)

    def transmit(self, apdu):
        return self._answer(apdu)


class ScriptedSession(_Script):
    """A session (store_data(request) -> response) that asserts the exact ES10 requests.

    exchanges: list of (expected_request_hex, response_hex), responses
    without status words. `version` is what ipa_core.es10 reads.
    """

    what = "ES10 request"

    def __init__(self, exchanges, version="1.2", name="ScriptedSession"):
        _Script.__init__(self, exchanges, name)
        self.version = version

    def store_data(self, request):
        return self._answer(request)
