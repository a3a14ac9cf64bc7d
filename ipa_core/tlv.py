"""BER-TLV codec for the ES10 / ESipa / ES9+ messages (X.690 BER decode, DER encode).

Tags are plain ints holding the tag bytes as written in the spec: 0x5A,
0xBF3E, 0x5F37, 0x9F7B. Decoding never copies the buffer: a `Tlv` is a view
(offsets into the caller's bytes) and copies only when `.value` or `.raw` is
read, which keeps the heap flat on MicroPython.

What decoding refuses, always with `TlvError(offset, expected, found)`:
indefinite lengths (0x80), more than 3 length bytes, tags longer than 3
bytes, lengths past the end of the data, lengths over the caller's `max_len`,
and (strict mode, the default) bytes after the top-level TLV.
"""

from ipa_core.errors import TlvError

# Nothing in ES10/ESipa is bigger than a bound profile package; 1 MiB is far
# above any real one and still refuses a forged 16 MiB length at once.
MAX_LEN = 0x100000


def hexs(b, limit=16):
    """Short hex for messages: at most `limit` bytes, then an ellipsis."""
    s = "".join("%02X" % x for x in bytes(b[:limit]))
    return s + "..." if len(b) > limit else s


def tag_bytes(tag):
    """The bytes of a tag int (0xBF3E -> b'\\xbf\\x3e')."""
    if tag < 0:
        raise ValueError("negative tag")
    n = 1
    while tag >> (8 * n):
        n += 1
    return bytes((tag >> (8 * (n - 1 - i))) & 0xFF for i in range(n))


def is_constructed(tag):
    """True when the tag's first byte has the constructed bit (0x20)."""
    b = tag
    while b > 0xFF:
        b >>= 8
    return bool(b & 0x20)


def read_header(buf, off, end, max_len=MAX_LEN):
    """Parse one tag and length at `off`; return (tag, value_start, value_end).

    `end` is where the enclosing data stops. The value must fit before it.
    """
    start = off
    if off >= end:
        raise TlvError(off, "a tag", "end of data")
    b = buf[off]
    tag = b
    off += 1
    if b & 0x1F == 0x1F:
        # Multi-byte tag: subsequent bytes while bit 8 is set; at most 3 in all.
        while True:
            if off >= end:
                raise TlvError(off, "a subsequent tag byte", "end of data")
            b = buf[off]
            tag = (tag << 8) | b
            off += 1
            if not b & 0x80:
                break
            if off - start >= 3:
                raise TlvError(start, "a tag of at most 3 bytes", "a longer tag")
    if off >= end:
        raise TlvError(off, "a length byte", "end of data")
    b = buf[off]
    off += 1
    if b < 0x80:
        length = b
    elif b == 0x80:
        raise TlvError(off - 1, "a definite length", "indefinite length (80)")
    else:
        n = b & 0x7F
        if n > 3:
            raise TlvError(off - 1, "at most 3 length bytes", "%d (%02X)" % (n, b))
        if off + n > end:
            raise TlvError(off, "%d length bytes" % n, "end of data")
        length = 0
        for i in range(n):
            length = (length << 8) | buf[off + i]
        off += n
    if length > max_len:
        raise TlvError(start, "a length of at most %d" % max_len, "length %d" % length)
    if off + length > end:
        raise TlvError(
            start,
            "%d value bytes for tag %X" % (length, tag),
            "only %d before the end" % (end - off),
        )
    return tag, off, off + length


class Tlv:
    """One decoded TLV: a view of `buf[start:end]` with its value at `vstart`."""

    def __init__(self, buf, tag, start, vstart, end, max_len=MAX_LEN):
        self.buf = buf
        self.tag = tag
        self.start = start
        self.vstart = vstart
        self.end = end
        self.max_len = max_len

    @property
    def constructed(self):
        return is_constructed(self.tag)

    @property
    def length(self):
        return self.end - self.vstart

    @property
    def value(self):
        """The value bytes (a copy)."""
        return bytes(self.buf[self.vstart:self.end])

    @property
    def raw(self):
        """The whole TLV as it came: keep these bytes for anything signed."""
        return bytes(self.buf[self.start:self.end])

    def __iter__(self):
        """The children of a constructed TLV, in order."""
        if not self.constructed:
            raise TlvError(self.start, "a constructed tag", "primitive tag %X" % self.tag)
        return iterate(self.buf, self.vstart, self.end, self.max_len)

    def children(self):
        return list(iter(self))

    def find(self, tag):
        """The first child with `tag`, or None."""
        for c in self:
            if c.tag == tag:
                return c
        return None

    def find_all(self, tag):
        return [c for c in self if c.tag == tag]

    def path(self, *tags):
        """Follow a tag path through the children; None when a step is missing."""
        t = self
        for tag in tags:
            t = t.find(tag)
            if t is None:
                return None
        return t

    def need(self, tag, what=None):
        """Like find(), but a missing child is a TlvError naming it."""
        c = self.find(tag)
        if c is None:
            raise TlvError(
                self.vstart,
                "child %X%s in %X" % (tag, " (" + what + ")" if what else "", self.tag),
                "it missing",
            )
        return c

    # Value helpers that know their offset for error messages.
    def as_int(self):
        return int_decode(self.buf[self.vstart:self.end], self.vstart)

    def as_uint(self):
        return uint_decode(self.buf[self.vstart:self.end], self.vstart)

    def as_bool(self):
        return bool_decode(self.buf[self.vstart:self.end], self.vstart)

    def as_null(self):
        if self.end != self.vstart:
            raise TlvError(self.vstart, "an empty NULL", "%d bytes" % self.length)
        return None

    def as_str(self):
        return utf8_decode(self.buf[self.vstart:self.end], self.vstart)

    def as_bits(self, names):
        return bits_decode(self.buf[self.vstart:self.end], names, self.vstart)

    def as_oid(self):
        return oid_decode(self.buf[self.vstart:self.end], self.vstart)

    def __repr__(self):
        return "Tlv(%X, %d bytes)" % (self.tag, self.length)


def iterate(buf, start, end, max_len=MAX_LEN):
    """Yield each TLV in buf[start:end]; the TLVs must fill it exactly."""
    off = start
    while off < end:
        tag, vs, ve = read_header(buf, off, end, max_len)
        yield Tlv(buf, tag, off, vs, ve, max_len)
        off = ve


def decode(data, strict=True, max_len=MAX_LEN, offset=0):
    """Decode the TLV at `offset`. Strict: nothing may follow it."""
    end = len(data)
    tag, vs, ve = read_header(data, offset, end, max_len)
    if strict and ve != end:
        raise TlvError(ve, "end of data after tag %X" % tag, "%d trailing bytes" % (end - ve))
    return Tlv(data, tag, offset, vs, ve, max_len)


def decode_all(data, max_len=MAX_LEN):
    """Decode a run of TLVs that fills `data` exactly."""
    return list(iterate(data, 0, len(data), max_len))


def walk(t, depth=0, max_depth=32):
    """Yield (depth, Tlv) for t and every descendant (bounded depth)."""
    yield depth, t
    if t.constructed:
        if depth >= max_depth:
            raise TlvError(t.vstart, "nesting of at most %d" % max_depth, "deeper")
        for c in t:
            for x in walk(c, depth + 1, max_depth):
                yield x


# ---- encoding (DER-minimal) -------------------------------------------------


def length_bytes(n):
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return bytes((0x81, n))
    if n < 0x10000:
        return bytes((0x82, n >> 8, n & 0xFF))
    if n < 0x1000000:
        return bytes((0x83, n >> 16, (n >> 8) & 0xFF, n & 0xFF))
    raise ValueError("TLV value too long: %d bytes" % n)


def header(tag, n):
    """Tag and length bytes for a value of n bytes (for streamed encoding)."""
    return tag_bytes(tag) + length_bytes(n)


def encode(tag, value=b""):
    """One TLV. `value` is bytes, or a list/tuple of byte strings to join."""
    if isinstance(value, (list, tuple)):
        value = b"".join(value)
    return tag_bytes(tag) + length_bytes(len(value)) + value


def enc(tag, *parts):
    """encode() with the value given as parts; None parts are left out."""
    return encode(tag, b"".join(p for p in parts if p is not None))


# ---- value helpers --------------------------------------------------------


def int_encode(n):
    """INTEGER value: minimal two's complement, big-endian."""
    out = [n & 0xFF]
    n >>= 8
    # Stop once the remaining bits are pure sign extension of the top byte.
    while not ((n == 0 and not out[-1] & 0x80) or (n == -1 and out[-1] & 0x80)):
        out.append(n & 0xFF)
        n >>= 8
    out.reverse()
    return bytes(out)


def int_decode(v, offset=0):
    """INTEGER value -> int (signed)."""
    if not len(v):
        raise TlvError(offset, "an INTEGER of 1 or more bytes", "0 bytes")
    n = 0
    for b in v:
        n = (n << 8) | b
    if v[0] & 0x80:
        n -= 1 << (8 * len(v))
    return n


def uint_decode(v, offset=0):
    """INTEGER value that must not be negative (counters, seqNumbers)."""
    n = int_decode(v, offset)
    if n < 0:
        raise TlvError(offset, "a non-negative INTEGER", str(n))
    return n


def bool_encode(b):
    return b"\xff" if b else b"\x00"


def bool_decode(v, offset=0):
    if len(v) != 1:
        raise TlvError(offset, "a 1-byte BOOLEAN", "%d bytes" % len(v))
    return v[0] != 0


def utf8_decode(v, offset=0):
    try:
        return bytes(v).decode("utf-8")
    except UnicodeError:
        raise TlvError(offset, "UTF-8 text", "invalid UTF-8 " + hexs(v))


def bits_encode(names, order):
    """BIT STRING value for a named-bit list, DER: trailing zero bits dropped.

    `order` lists the bit names by bit number (bit 0 first); `names` is the set
    of names that are set. An unknown name is a ValueError (a caller bug).
    """
    nums = []
    for name in names:
        if name not in order:
            raise ValueError("unknown bit name %r" % (name,))
        nums.append(order.index(name))
    if not nums:
        return b"\x00"
    nbits = max(nums) + 1
    out = bytearray((nbits + 7) // 8)
    for i in nums:
        out[i // 8] |= 0x80 >> (i % 8)
    return bytes((len(out) * 8 - nbits,)) + bytes(out)


def bits_decode(v, order=None, offset=0):
    """BIT STRING value -> list of set bit names (numbers when unnamed)."""
    if not len(v):
        raise TlvError(offset, "a BIT STRING with its unused-bits byte", "0 bytes")
    unused = v[0]
    if unused > 7 or (unused and len(v) == 1):
        raise TlvError(offset, "0..7 unused bits", "%d" % unused)
    out = []
    nbits = (len(v) - 1) * 8 - unused
    for i in range(nbits):
        if v[1 + i // 8] & (0x80 >> (i % 8)):
            if order is not None and i < len(order):
                out.append(order[i])
            else:
                out.append(i)
    return out


def oid_encode(dotted):
    arcs = [int(x) for x in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError("bad OID %r" % (dotted,))
    out = bytearray()
    for a in [arcs[0] * 40 + arcs[1]] + arcs[2:]:
        chunk = [a & 0x7F]
        a >>= 7
        while a:
            chunk.append(0x80 | (a & 0x7F))
            a >>= 7
        chunk.reverse()
        out += bytes(chunk)
    return bytes(out)


def oid_decode(v, offset=0):
    if not len(v) or v[-1] & 0x80:
        raise TlvError(offset, "an OBJECT IDENTIFIER", "truncated " + hexs(v))
    arcs = []
    a = 0
    for b in v:
        a = (a << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(a)
            a = 0
    first = arcs[0]
    x = 2 if first >= 80 else first // 40
    return ".".join([str(x), str(first - 40 * x)] + [str(n) for n in arcs[1:]])


def bcd_swap(b):
    """Nibble-swapped BCD as used by ICCIDs (98 10 ... <-> '8901...')."""
    s = ""
    for x in b:
        s += "%X%X" % (x & 0x0F, x >> 4)
    return s.rstrip("F")


def bcd_unswap(digits):
    if len(digits) % 2:
        digits += "F"
    out = bytearray()
    for i in range(0, len(digits), 2):
        out.append(int(digits[i + 1], 16) << 4 | int(digits[i], 16))
    return bytes(out)
