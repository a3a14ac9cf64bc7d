"""FlashStore: the IPA's progress store (ipa_core.ipa_store contract) on a board's flash.

ipa_core.ipa writes where it is in a procedure before every step it takes
(design.md, "Nothing is lost"); this keeps those writes on the board's
filesystem (littlefs or FAT on ESP32/RP2040, /usr on QuecPython) so that a
power cut at any point resumes from the last step written.

One file holds every key: a header line `IPA1 <length> <crc32 hex>` and the
JSON text of a dict, bytes values as {"$hex": "..."}. A put writes the new file
to `<path>.tmp` in small pieces (the text is never whole in the heap: one pass
measures length and CRC for the header, a second writes), closes it (littlefs
and FAT commit on close), then renames it over `<path>` (atomic on littlefs;
remove-then-rename on MicroPython's FAT driver). At start-up the store
recovers from whatever a cut left behind:

    <path> good                       use it; a leftover .tmp (a cut before the
                                      rename) is deleted: that put never returned
    <path> missing/corrupt, .tmp good use .tmp (the cut fell between the remove
                                      and the rename) and rename it into place
    neither good                      start empty; a corrupt <path> is kept as
                                      <path>.bad for a person to look at

Each case logs one line saying what happened. A header whose length or CRC
does not match the text (a truncated or damaged file) counts as corrupt,
never as an empty state. The file is bounded by `max_bytes` (default
16 KB): a put that would grow past it raises StoreError and stores nothing.

MicroPython and CPython (the tests run on both). Values are JSON-able or
bytes, as for MemoryStore; get() returns a copy.
"""

from ipa_core.compat import crc32 as _crc32, hexlify, json

from ipa_core.errors import IpaError
from ipa_core.ipa_store import HEX, copy, from_json

try:
    import os
except ImportError:  # older MicroPython builds (QuecPython) without the `os` alias
    import uos as os

MAGIC = b"IPA1"
MAX_BYTES = 16384  # the IPA keeps one job, a few seqNumbers and a flag: a few KB at most
HEADER_MAX = 40  # "IPA1 <len> <crc>\n" is never longer
READ_CHUNK = 256  # bytes per read of the state file
HEX_CHUNK = 128  # bytes of a blob turned into hex text at a time


class StoreError(IpaError):
    """The state cannot be written (flash full, too big, I/O error); the message names the file.

    `transient`: ipa_core.ipa retries a step that failed on it without counting
    it against max_attempts - the eUICC and the eIM did nothing wrong.
    """

    transient = True


def _size(path):
    """File size, or None when the file does not exist."""
    try:
        return os.stat(path)[6]
    except OSError:
        return None


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def check_value(v, depth=0):
    """TypeError unless v is JSON-able (dict with str keys, list/tuple, str, int, float, bool,
    None) or bytes. MicroPython's json.dumps would write bytes as a str that reads back as
    text: bytes are written as {"$hex": ...} here (ipa_core.ipa_store.to_json's form)."""
    if v is None or isinstance(v, (bool, int, float, str, bytes, bytearray)):
        return
    if depth > 32:
        raise TypeError("value nested deeper than 32 levels")
    if isinstance(v, dict):
        for k in v:
            if not isinstance(k, str):
                raise TypeError("JSON object key %r is not a str" % (k,))
            check_value(v[k], depth + 1)
    elif isinstance(v, (list, tuple)):
        for x in v:
            check_value(x, depth + 1)
    else:
        raise TypeError("%s is neither JSON-able nor bytes" % type(v).__name__)


def _dump(v, write):
    """The JSON text of v, bytes as {"$hex": "..."}, handed to write() in small pieces: the
    heap never holds the document, nor a blob as text (HEX_CHUNK bytes at a time)."""
    if isinstance(v, (bytes, bytearray)):
        write(b'{"' + HEX.encode() + b'": "')
        mv = memoryview(v)
        for i in range(0, len(v), HEX_CHUNK):
            write(hexlify(mv[i:i + HEX_CHUNK]).upper())
        write(b'"}')
    elif isinstance(v, dict):
        sep = b"{"
        for k in v:
            write(sep + json.dumps(k).encode() + b": ")
            _dump(v[k], write)
            sep = b", "
        write(b"{}" if sep == b"{" else b"}")
    elif isinstance(v, (list, tuple)):
        sep = b"["
        for x in v:
            write(sep)
            _dump(x, write)
            sep = b", "
        write(b"[]" if sep == b"[" else b"]")
    else:
        write(json.dumps(v).encode())


class _Measure:
    """A write() target that only counts bytes and runs the CRC32."""

    def __init__(self):
        self.n = 0
        self.crc = 0

    def __call__(self, data):
        self.n += len(data)
        if _crc32 is not None:
            self.crc = _crc32(data, self.crc)


def _header(m):
    crc = b"%08x" % (m.crc & 0xFFFFFFFF) if _crc32 is not None else b"-"
    return MAGIC + b" %d %s\n" % (m.n, crc)


def encode(data):
    """The file bytes for dict `data`: header line + JSON text (tests, tools: a board's
    store writes the same bytes piecewise, FlashStore._write)."""
    check_value(data)
    parts = []
    _dump(data, parts.append)
    body = b"".join(parts)
    m = _Measure()
    m(body)
    return _header(m) + body


def _parse_header(head, max_bytes):
    """(body length, crc bytes) from the header line; ValueError saying what is wrong."""
    parts = head.split()
    if len(parts) != 3 or parts[0] != MAGIC:
        raise ValueError("header %r is not 'IPA1 <length> <crc32>'" % bytes(head))
    try:
        n = int(parts[1])
    except ValueError:
        raise ValueError("header length %r is not a number" % bytes(parts[1]))
    if n > max_bytes:
        raise ValueError("header says %d bytes of JSON, more than the %d a valid one has"
                         % (n, max_bytes))
    return n, parts[2]


def _check_body(n, crc, m):
    """ValueError unless the body measured by m (_Measure) has the header's length and CRC."""
    if m.n != n:
        raise ValueError("header says %d bytes of JSON, the file has %d (truncated or damaged)"
                         % (n, m.n))
    if crc != b"-" and _crc32 is not None:
        have = b"%08x" % (m.crc & 0xFFFFFFFF)
        if crc != have:
            raise ValueError("CRC32 %s does not match the text (%s): damaged"
                             % (crc.decode(), have.decode()))


def _object(data):
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object, found %s" % type(data).__name__)
    return from_json(data)


def decode(raw, max_bytes=MAX_BYTES):
    """dict from file bytes; ValueError saying what is wrong with them."""
    nl = raw.find(b"\n", 0, HEADER_MAX)
    if nl < 0:
        raise ValueError("no header line in the first %d bytes" % HEADER_MAX)
    n, crc = _parse_header(raw[:nl], max_bytes)
    body = raw[nl + 1:]
    m = _Measure()
    m(body)
    _check_body(n, crc, m)
    return _object(json.loads(body))


def read_state(path, max_bytes=MAX_BYTES):
    """(dict, None) from a good file, (None, reason) otherwise; (None, None) when absent.
    Read in READ_CHUNK pieces: the CRC first, then json.load from the file itself."""
    size = _size(path)
    if size is None:
        return None, None
    if size > max_bytes + HEADER_MAX:
        return None, "%d bytes, more than the %d a valid one can have" % (size, max_bytes)
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_MAX)
            nl = head.find(b"\n")
            if nl < 0:
                raise ValueError("no header line in the first %d bytes" % HEADER_MAX)
            n, crc = _parse_header(head[:nl], max_bytes)
            m = _Measure()
            m(head[nl + 1:])
            while True:
                part = f.read(READ_CHUNK)
                if not part:
                    break
                m(part)
            _check_body(n, crc, m)
            f.seek(nl + 1)
            return _object(json.load(f)), None
    except (OSError, ValueError) as e:  # ValueError: bad header, bad JSON, bad CRC, bad hex
        return None, str(e) or e.__class__.__name__


class FlashStore:
    """The Store interface (get/put/delete/keys) over one file, power-cut safe (see module doc).

    path       state file on the board's filesystem, e.g. "/ipa_state.json"
    max_bytes  bound on the JSON text
    log        callable(str) for the recovery lines (print on a board)
    """

    def __init__(self, path, max_bytes=MAX_BYTES, log=print):
        self.path = path
        self.tmp = path + ".tmp"
        self.max_bytes = max_bytes
        self.log = log
        self.writes = 0
        self.recovered = None  # what start-up found: "clean", "tmp", "empty", "corrupt"
        self._data = self._recover()

    def _say(self, msg):
        if self.log is not None:
            self.log("flash_store: " + msg)

    def _recover(self):
        data, why = read_state(self.path, self.max_bytes)
        tmp_exists = _size(self.tmp) is not None
        if data is not None:
            if tmp_exists:
                self._say("discarded %s left by a write cut before its rename; %s holds the "
                          "last complete state" % (self.tmp, self.path))
                _remove(self.tmp)
            self.recovered = "clean"
            return data
        tdata, twhy = read_state(self.tmp, self.max_bytes) if tmp_exists else (None, None)
        if tdata is not None:
            self._say("%s %s; recovered the state from %s (a write was cut during its rename)"
                      % (self.path, why or "is missing", self.tmp))
            _remove(self.path)
            os.rename(self.tmp, self.path)
            self.recovered = "tmp"
            return tdata
        if why is not None:
            bad = self.path + ".bad"
            self._say("%s is unreadable (%s) and no good %s exists: kept it as %s, starting "
                      "with an empty state" % (self.path, why, self.tmp, bad))
            _remove(bad)
            try:
                os.rename(self.path, bad)
            except OSError:
                _remove(self.path)
            self.recovered = "corrupt"
        else:
            self.recovered = "empty"
        if tmp_exists:
            self._say("discarded an incomplete %s (%s)" % (self.tmp, twhy))
            _remove(self.tmp)
        return {}

    # -- the Store interface (ipa_core.ipa_store)

    def get(self, key, default=None):
        if key not in self._data:
            return default
        # A copy: callers may change what they got without changing the store.
        return copy(self._data[key])

    def put(self, key, value):
        new = dict(self._data)
        new[key] = value
        self._write(new)
        self._data = new

    def delete(self, key):
        if key not in self._data:
            return
        new = dict(self._data)
        del new[key]
        self._write(new)
        self._data = new

    def keys(self):
        return sorted(self._data)

    # -- the file

    def _write(self, data):
        check_value(data)  # TypeError for a value that is neither JSON-able nor bytes
        m = _Measure()
        _dump(data, m)
        if m.n > self.max_bytes:
            raise StoreError("IPA state %s would grow to %d bytes (bound %d)"
                             % (self.path, m.n, self.max_bytes))
        try:
            with open(self.tmp, "wb") as f:
                f.write(_header(m))
                _dump(data, f.write)
                f.flush()
                fsync = getattr(os, "fsync", None)  # CPython; MicroPython commits on close
                if fsync is not None and hasattr(f, "fileno"):
                    fsync(f.fileno())
            os.rename(self.tmp, self.path)
        except OSError as e:
            raise StoreError("cannot write IPA state %s: %s" % (self.path, e))
        self.writes += 1
