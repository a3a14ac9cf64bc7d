"""The one place the core (and the board glue) binds standard modules, for every
MicroPython from 1.13 on and CPython.

MicroPython before 1.21 names its built-in modules `utime`, `ujson`,
`ubinascii`, `uhashlib`, `uos`; the short names exist only with
MICROPY_MODULE_WEAK_LINKS, which QuecPython's 1.13 firmware leaves off. So
modules import from here, never `import json` etc. themselves (tests/host/
test_mp_compat.py checks). Also here, what old versions lack:

- find(buf, sub): bytearray.find needs 1.20;
- loads(text): json.loads that rejects a document cut short; before 1.26
  MicroPython returns what it has at the end of the text (`{"a": ` -> {}).
"""

try:
    import binascii
except ImportError:
    import ubinascii as binascii
try:
    import json
except ImportError:
    import ujson as json
try:
    import time  # noqa: F401 - for clock.py and the board glue
except ImportError:
    import utime as time  # noqa: F401

hexlify = binascii.hexlify
unhexlify = binascii.unhexlify
a2b_base64 = binascii.a2b_base64
b2a_base64 = binascii.b2a_base64
crc32 = getattr(binascii, "crc32", None)  # a port may be built without it


if hasattr(bytearray, "find"):
    def find(buf, sub, start=0):
        """buf.find(sub, start) for bytes or bytearray."""
        return buf.find(sub, start)
else:  # MicroPython before 1.20: bytes.find only, so a copy (of a bounded buffer)
    def find(buf, sub, start=0):
        """buf.find(sub, start) for bytes or bytearray."""
        return bytes(buf).find(sub, start)


def sha256(data=b""):
    """hashlib.sha256, imported on first use (only downloads hash)."""
    try:
        import hashlib
    except ImportError:
        import uhashlib as hashlib
    return hashlib.sha256(data)


try:
    json.loads("[")
    _LAX = True  # before MicroPython 1.26: the end of the text closes what is open
except ValueError:
    _LAX = False


def loads(text):
    """json.loads (ValueError for bad JSON), a truncated document included on every version.

    A lax parser stops at the end of the text only inside the outermost container: a
    complete one ends with its closing bracket, and a "]" appended to it is trailing
    garbage; one cut short takes that "]" as its end and parses."""
    obj = json.loads(text)
    if _LAX and isinstance(obj, (dict, list)):
        end = "}" if isinstance(obj, dict) else "]"
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode()
        if not text.rstrip().endswith(end):
            raise ValueError("JSON cut short")
        try:
            json.loads(text + "]")
        except ValueError:
            return obj
        raise ValueError("JSON cut short")
    return obj

