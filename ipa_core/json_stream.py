"""A JSON answer read as it arrives: its one big base64 member decoded into a byte stream (issue 13).

The JSON bindings carry the bound profile package as base64 text in one
member of the answer object: ES9+ GetBoundProfilePackage (SGP.22 v2.5
6.5.2.3, ipa_core.es9p) and ESipa GetBoundProfilePackage in the JSON binding
(SGP.32 v1.2 6.4, ipa_core.esipa_json). Read whole, such an answer is held
several times (body, text, decoded package). Here it is scanned from a
reader (the ipa_core.stream contract) with a small buffer:

    m = open_member(reader, "boundProfilePackage", what, check, max_bytes)
    m.members        every other member, parsed (json.loads of each value)
    m.read(n)        the member's base64 decoded, as a reader (stream contract):
                     1..n bytes, b"" at the end of the string
    m.close()        closes `reader` (what is left is discarded)

`open_member` reads the members in front of the big one (each value at most
MAX_MEMBER bytes of text, MAX_MEMBERS of them) and calls check(members,
False); the caller refuses a failed status there, before any byte of the
package is used. The members after it are read as soon as the string's
closing quote is seen, which is before its last bytes are handed out (the
decoder holds back one base64 character until it knows what follows), and
check(members, True) runs then; its error comes out of that read(). When the
object has no such member, open_member reads it all, calls check(members,
True) and returns None.

Bounds: at most `max_bytes` decoded bytes, and MAX_OTHER bytes of JSON text
outside the string (keys, other members, white space); the string may hold
only the base64 alphabet (RFC 4648, padded) and the escape \\/ that some
encoders write for '/'. Anything else, and a body that ends early, is a
ProtocolError naming `what` and the offset in the body.
"""

from ipa_core.compat import a2b_base64, loads

from ipa_core.errors import ProtocolError

READ = 1024  # bytes asked of the network reader at a time
MAX_MEMBER = 16384  # text of one other member's value (a header with a message, an id)
MAX_MEMBERS = 32  # other members
MAX_OTHER = 65536  # JSON text outside the big string, in all
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_WS = b" \t\r\n"
_STOPS = (b'"', b"\\")


class _Source:
    """The body's bytes from a reader, with a count for offsets and the bound."""

    def __init__(self, reader, what, limit):
        self.reader = reader
        self.what = what
        self.limit = limit  # body bytes read at most
        self.buf = b""
        self.pos = 0
        self.base = 0  # body offset of buf[0]

    def offset(self):
        return self.base + self.pos

    def fail(self, expected, got=None):
        raise ProtocolError("%s: at offset %d of the JSON body, expected %s%s"
                            % (self.what, self.offset(), expected,
                               "" if got is None else ", got %s" % got))

    def _fill(self):
        """Read more; False at the end of the body."""
        left = self.limit - (self.base + len(self.buf))
        if left <= 0:
            self.fail("the end of a JSON body of at most %d bytes" % self.limit, "more")
        data = self.reader.read(READ if READ < left else left)
        if not data:
            return False
        self.base += len(self.buf)
        self.buf = bytes(data)
        self.pos = 0
        return True

    def peek(self):
        """The next byte (an int), or -1 at the end of the body."""
        if self.pos >= len(self.buf) and not self._fill():
            return -1
        return self.buf[self.pos]

    def next(self, doing):
        c = self.peek()
        if c < 0:
            self.fail(doing, "the end of the body")
        self.pos += 1
        return c

    def skip_ws(self):
        c = self.peek()
        while c >= 0 and c in _WS:
            self.pos += 1
            c = self.peek()
        return c

    def expect(self, ch, doing):
        c = self.skip_ws()
        if c != ch:
            self.fail(doing, "the end of the body" if c < 0 else repr(chr(c)))
        self.pos += 1

    def upto_stop(self, n):
        """At most n bytes before the next '"' or backslash (not consumed); b"" when one is
        next or the body ended."""
        if self.pos >= len(self.buf) and not self._fill():
            return b""
        buf, p = self.buf, self.pos
        end = p + n if p + n < len(buf) else len(buf)
        for stop in _STOPS:
            i = buf.find(stop, p, end)
            if i >= 0:
                end = i
        self.pos = end
        return buf[p:end]


def _value_text(src, bound, what):
    """The raw text of one JSON value (string, number, literal, object, array), at most
    `bound` bytes; its syntax is json.loads' to judge."""
    out = bytearray()
    depth = 0
    in_str = esc = False
    c = src.skip_ws()
    while True:
        if c < 0:
            src.fail("the rest of %s" % what, "the end of the body")
        if in_str:
            if esc:
                esc = False
            elif c == 92:  # backslash
                esc = True
            elif c == 34:
                in_str = False
        elif c == 34:
            in_str = True
        elif c in b"{[":
            depth += 1
        elif c in b"}]":
            if depth == 0:
                break  # the enclosing object's end: a scalar stops here
            depth -= 1
        elif depth == 0 and (c == 44 or c in _WS):  # ',' or white space after a scalar
            break
        out.append(c)
        src.pos += 1
        if len(out) > bound:
            src.fail("%s of at most %d bytes" % (what, bound), "more")
        if depth == 0 and not in_str and out[0] in b'"{[':
            break  # a string, object or array just closed
        c = src.peek()
    return bytes(out)


def _load(text, src, what):
    try:
        return loads(text.decode("utf-8"))
    except (ValueError, UnicodeError):
        src.fail("JSON for %s" % what, repr(text[:40]))


class Member:
    """The base64 member of a streamed JSON object as a reader; see the module docstring."""

    def __init__(self, src, key, check, max_bytes):
        self.src = src
        self.key = key
        self.check = check
        self.max_bytes = max_bytes
        self.members = {}
        self.length = None
        self.decoded = 0
        self.done = False  # the closing quote was read
        self._carry = b""  # base64 text not decoded yet
        self._out = b""  # decoded bytes not handed out yet
        self._out_pos = 0

    def _object(self, first):
        """Members until `key`'s string opens (True) or the object ends (False)."""
        src, obj = self.src, self.members
        if not first:
            c = src.skip_ws()
            if c == 125:  # '}'
                src.pos += 1
                return False
            src.expect(44, "',' or '}' after a member")
        while True:
            c = src.skip_ws()
            if first and c == 125:
                src.pos += 1
                return False
            first = False
            if c != 34:
                src.fail("a member name in quotes", "end of body" if c < 0 else repr(chr(c)))
            name = _load(_value_text(src, 256, "a member name"), src, "a member name")
            src.expect(58, "':' after member %r" % name)
            if name == self.key:
                if self.done:
                    src.fail("one %r" % name, "a second one")
                src.expect(34, "the base64 string of %r" % name)
                return True
            if name in obj or len(obj) >= MAX_MEMBERS:
                src.fail("at most %d distinct members" % MAX_MEMBERS, "%r again or more" % name)
            obj[name] = _load(_value_text(src, MAX_MEMBER, "member %r" % name), src,
                              "member %r" % name)
            c = src.skip_ws()
            if c == 125:
                src.pos += 1
                return False
            src.expect(44, "',' or '}' after member %r" % name)

    def _end(self):
        """After the object's '}': only white space up to the end of the body."""
        if self.src.skip_ws() >= 0:
            self.src.fail("the end of the body after the JSON object",
                          repr(chr(self.src.peek())))

    def _text(self, want):
        """Base64 text: `want` characters (a multiple of 4) and one more to look ahead, or all
        that is left before the closing quote (then `done`)."""
        src = self.src
        t = self._carry
        while len(t) <= want:
            part = src.upto_stop(want + 1 - len(t))
            if part:
                t += part
                continue
            c = src.next("the rest of the base64 string %r" % self.key)
            if c == 34:
                self.done = True
                break
            if src.next("an escape") != 47:  # only "\/" (some encoders escape '/')
                src.fail("base64 in %r (no escapes but \\/)" % self.key, "another escape")
            t += b"/"
        if self.done:
            self._carry = None
            return t
        self._carry = t[want:]
        return t[:want]

    def _decode(self, n):
        want = (n + 2) // 3 * 4
        t = self._text(want if want < READ else READ)
        src = self.src
        if t.strip(_B64):
            src.fail("base64 in %r" % self.key, "other characters")
        pad = t.find(b"=")
        if (self.done and len(t) % 4) or (pad >= 0 and (not self.done or pad < len(t) - 2
                                                          or t[pad:].strip(b"="))):
            src.fail("padded base64 in %r" % self.key, "%d characters%s" % (
                len(t), " with '=' inside" if pad >= 0 else ""))
        try:
            out = a2b_base64(t) if t else b""
        except Exception:  # binascii.Error on CPython, ValueError on MicroPython
            src.fail("base64 in %r" % self.key, repr(t[:40]))
        self.decoded += len(out)
        if self.decoded > self.max_bytes:
            raise ProtocolError("%s: %r holds more than %d bytes (the package limit)"
                                % (src.what, self.key, self.max_bytes))
        if self.done:  # the rest of the object, before the last bytes go out
            self._object(False)  # refuses a second `key`
            self._end()
            self.check(self.members, True)
        return out

    def read(self, n):
        if n <= 0:
            return b""
        while self._out_pos >= len(self._out):
            if self.done:
                return b""
            self._out = self._decode(n)
            self._out_pos = 0
        p = self._out_pos
        out = self._out[p:p + n]
        self._out_pos = p + len(out)
        return out

    def close(self):
        r = self.src.reader
        self.src.buf = self._out = b""
        if r is not None:
            r.close()


def open_member(reader, key, what, check, max_bytes, max_other=MAX_OTHER):
    """Open the JSON object in `reader` up to member `key`'s base64 string -> a Member
    reading it, or None when the object has none (read whole and checked). See the module
    docstring; on an error here the caller closes the reader."""
    src = _Source(reader, what, (max_bytes + 2) // 3 * 4 + max_other)
    src.expect(123, "a JSON object")
    m = Member(src, key, check, max_bytes)
    if m._object(True):
        check(m.members, False)
        return m
    m._end()
    check(m.members, True)
    return None
