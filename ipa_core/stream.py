"""Streamed answers: readers and an incremental BER-TLV reader over them (issue 8 heap budget).

A bound profile package is the one ESipa / ES9+ answer that grows with the
profile. Read as a stream, only one STORE DATA segment of it is ever in RAM
(ipa_core.es10_download.BppSegments, SGP.22 v2.5 2.5.5).

The reader contract (what `network.post_stream` returns):

    reader.read(n) -> bytes   1..n bytes; b"" only at the end of the body.
                              Raises TransportError / TimeoutError_ on failure,
                              ProtocolError on a body shorter than announced.
    reader.length             the announced body length, or None
    reader.close()            discard what is left; the network stays usable

    status, reader = post_stream(network, path, body, content_type, headers)

uses `network.post_stream` when the network has one, else wraps the body of
`network.post` in a BytesReader (CoAP, scripted networks: the same code, no
saving). TlvReader reads TLV headers and small TLVs from a reader with the
rules of ipa_core.tlv (its read_header runs on a window over the reader).
"""

from ipa_core import tlv
from ipa_core.errors import ProtocolError, TlvError

CHUNK = 256  # bytes read ahead for TLV headers (values are read exactly)


class BytesReader:
    """The reader contract over bytes already in RAM (no copy until read)."""

    def __init__(self, data):
        self._data = data if data is not None else b""
        self._pos = 0
        self.length = len(self._data)

    def read(self, n):
        if self._data is None or n <= 0:
            return b""
        p = self._pos
        out = self._data[p:p + n]
        self._pos = p + len(out)
        return out if isinstance(out, bytes) else bytes(out)

    def close(self):
        self._data = None


def post_stream(network, path, body, content_type, headers=None):
    """POST and get the answer as a reader: (status, reader).

    network.post_stream when the network has it (HTTPS, modem HTTP stacks);
    otherwise network.post and a BytesReader over its body.
    """
    f = getattr(network, "post_stream", None)
    if f is not None:
        return f(path, body, content_type, headers)
    status, rbody = network.post(path, body, content_type, headers)
    return status, BytesReader(rbody)


def close_quietly(reader):
    """reader.close(), ignoring its failure: used on error paths, where the first error counts."""
    if reader is None:
        return
    try:
        reader.close()
    except Exception:  # a broken connection may fail to close too: nothing is left to lose
        pass


class _Window:
    """Indexable view of a TlvReader's bytes at absolute offsets, pulled on demand, so that
    tlv.read_header parses headers straight from the stream."""

    def __init__(self, tr):
        self.tr = tr

    def __getitem__(self, i):
        return self.tr._byte(i)


class TlvReader:
    """BER-TLVs read one after another from a reader, with absolute offsets.

    header(end) -> (tag, length, header_bytes)   the next TLV's tag and length; `end`
                                                 is where the enclosing value ends
                                                 (absolute), the value must fit in it
    read(n) / read_into(buf) / skip(n)           exactly n value bytes
    read_tlv(end, bound, what) -> bytes          one whole small TLV, at most `bound` bytes
    at_end() -> bool                             nothing more in the body

    `offset` is the number of bytes consumed. Header rules and errors are
    those of ipa_core.tlv (TlvError with the offset); a body that ends in the
    middle of a TLV is a ProtocolError naming `what` and the offset.
    """

    def __init__(self, reader, what="the answer", max_len=tlv.MAX_LEN, chunk=CHUNK):
        self.reader = reader
        self.what = what
        self.max_len = max_len
        self.chunk = chunk
        self.offset = 0
        self._buf = b""
        self._base = 0  # absolute offset of _buf[0]
        n = getattr(reader, "length", None)
        self.limit = n if n is not None else max_len + 16  # end of the body, or a bound

    def _more(self, n, doing):
        data = self.reader.read(n)
        if not data:
            raise ProtocolError("%s: the body ended after %d bytes, in the middle of %s"
                                % (self.what, self._base + len(self._buf), doing))
        if len(data) > n:
            raise ProtocolError("%s: the reader returned %d bytes, asked for at most %d"
                                % (self.what, len(data), n))
        return data

    def _direct(self, n, doing):
        """One read straight from the reader (nothing read ahead is pending)."""
        data = self._more(n, doing)
        self.offset += len(data)
        self._buf = b""
        self._base = self.offset
        return data

    def _byte(self, i):
        """The byte at absolute offset i (>= offset), reading ahead when needed."""
        while i >= self._base + len(self._buf):
            data = self._more(self.chunk, "a TLV header")
            self._buf = self._buf[self.offset - self._base:] + data
            self._base = self.offset
        return self._buf[i - self._base]

    def header(self, end=None):
        """Read the next tag and length; return (tag, length, header bytes)."""
        if end is None:
            end = self.limit
        start = self.offset
        tag, vs, ve = tlv.read_header(_Window(self), start, end, self.max_len)
        hdr = self._buf[start - self._base:vs - self._base]
        self.offset = vs
        return tag, ve - vs, hdr

    def _take(self, n):
        """Up to n bytes already read ahead (consumed), or b""."""
        i = self.offset - self._base
        have = len(self._buf) - i
        if have <= 0:
            return b""
        k = n if n < have else have
        out = self._buf[i:i + k]
        self.offset += k
        if k == have:
            self._buf = b""
            self._base = self.offset
        return out

    def read_into(self, buf, doing="a TLV value"):
        """Fill bytearray/memoryview `buf` exactly; values are read without read-ahead."""
        mv = memoryview(buf)
        n = len(mv)
        got = 0
        while got < n:
            data = self._take(n - got)
            if not data:
                data = self._direct(n - got, doing)
            mv[got:got + len(data)] = data
            got += len(data)

    def read(self, n, doing="a TLV value"):
        out = bytearray(n)
        self.read_into(out, doing)
        return out

    def skip(self, n, doing="a TLV value"):
        """Consume n bytes without keeping them (reads of at most `chunk` bytes)."""
        while n > 0:
            data = self._take(n)
            if not data:
                data = self._direct(min(n, self.chunk), doing)
            n -= len(data)

    def read_tlv(self, end=None, bound=64, what="a TLV"):
        """One whole TLV (header + value) as bytes, refused when longer than `bound`."""
        start = self.offset
        tag, n, hdr = self.header(end)
        if len(hdr) + n > bound:
            raise TlvError(start, "%s of at most %d bytes" % (what, bound),
                           "tag %X with %d bytes" % (tag, len(hdr) + n))
        out = bytearray(len(hdr) + n)
        out[0:len(hdr)] = hdr
        self.read_into(memoryview(out)[len(hdr):], what)
        return bytes(out)

    def at_end(self):
        """True when the body has nothing more (reads one byte ahead if it must)."""
        if self.offset < self._base + len(self._buf):
            return False
        if getattr(self.reader, "length", None) is not None:
            return self.offset >= self.limit
        data = self.reader.read(1)
        if not data:
            return True
        self._buf = bytes(data)
        self._base = self.offset
        return False

    def close(self):
        """Close the reader (it discards what is left)."""
        r = self.reader
        self._buf = b""
        if r is not None:
            r.close()
