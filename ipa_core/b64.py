"""Strict base64 for the JSON bindings (ESipa JSON, ES9+): RFC 4648, padded, bounded.

`decode` refuses anything else with a ProtocolError naming the field, so a
broken server's body never reaches the TLV decoder as garbage.
"""

from ipa_core.compat import a2b_base64, b2a_base64

from ipa_core.errors import ProtocolError
from ipa_core.tlv import MAX_LEN

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def encode(b):
    return b2a_base64(bytes(b)).decode().strip()


def decode(s, what, limit=MAX_LEN):
    """Base64 text of at most `limit` decoded bytes -> bytes; else ProtocolError."""
    if not isinstance(s, str):
        raise ProtocolError("%s: expected a base64 string, got %r" % (what, s))
    if len(s) > (limit + 2) // 3 * 4:
        raise ProtocolError("%s: expected at most %d bytes, got about %d"
                            % (what, limit, len(s) * 3 // 4))
    if len(s) % 4 or "=" in s.rstrip("="):
        raise ProtocolError("%s: expected padded base64, got %r" % (what, s[:40]))
    for ch in s:
        if ch not in _ALPHABET:
            raise ProtocolError("%s: expected base64, got character %r" % (what, ch))
    try:
        return a2b_base64(s.encode())
    except Exception:  # binascii.Error on CPython, ValueError on MicroPython
        raise ProtocolError("%s: expected base64, got %r" % (what, s[:40]))
