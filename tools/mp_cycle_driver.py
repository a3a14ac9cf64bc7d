"""Runs INSIDE MicroPython (tools/mp_bridge.mjs, started by tools/mp_cycle.py): a board's IPA
loop with the card and the eIM network reached through the `mp_bridge` JS module.

    card     BridgeCard.transmit(apdu) -> response+SW    (the host's virtual eUICC)
    network  StreamingNetwork.post / post_stream / close  (the host's HTTPS to the eIM,
                                                          issue 8's network contract)
    store    ipa_core.ipa_store.MemoryStore
    ipa      ipa_core.ipa.Ipa, ASN.1 binding, indirect download handler

The JS side calls step() from its top level until it answers False: imports, setup,
then one poll cycle per step until the eIM has nothing left. This port of MicroPython only
collects garbage on such a top-level entry (gc.collect() inside a running call merely
asks for it), hence the figures:

    live_start   gc.mem_alloc() at the start of a step: after a collection, exact
    alloc_end    gc.mem_alloc() at its end: live_start + every byte allocated since
    sampled_max  the largest live heap seen inside the step, from the JS heap walk
                 (mp_bridge.live) at every bridge call, store write, log line and progress
                 call; without the walk, gc.collect(); gc.mem_alloc() (then live only in a
                 port that collects inside a call: see probe.collect_effective)
    calibration  [label, gc.mem_alloc(), walk] right after a collection: must agree
Block maps (micropython.mem_info(1)) at each cycle's start and end go to the host, which
finds the objects a cycle allocated. Per-cycle records go to the host at once, so the
driver's own bookkeeping stays off the heap it measures.

No f-strings, no typing: MicroPython code.
"""

import gc
import json
import sys

import micropython
import mp_bridge
from binascii import hexlify, unhexlify

CONFIG = {"max_cycles": 12, "sample": True, "dump": True, "walk": True, "stream": True,
          "read_chunk": 1024, "max_body": 0x100000, "segment_size": 255}

STORE_DATA = 0xE2
LAZY = ("ipa_core.stream", "ipa_core.activation")

_state = {"phase": "import", "ncycles": 0, "error": None, "calls": 0, "store_data": 0,
          "posts": 0, "reads": 0, "read_bytes": 0, "max_sampled": 0, "max_where": None,
          "pystack_max": 0, "segments": None, "samples": 0, "walk": False, "walk_error": None,
          "calibration": [], "walk_control": None}
_exit = [0]
_refs = {}


def exit_code():
    return _exit[0]


def _pystack_use():
    f = getattr(micropython, "pystack_use", None)
    try:
        return f() if f is not None else 0
    except Exception:  # no pystack in this build
        return 0


def _sample(where="bridge"):
    """The live heap now: the JS heap walk (mp_bridge.live) when it is available, else
    gc.collect(); gc.mem_alloc() (live only in a port that collects inside a call)."""
    st = _state
    if where == "bridge":
        st["calls"] += 1
    if not CONFIG["sample"]:
        return
    st["samples"] += 1
    if st["walk"]:
        a = mp_bridge.live()
    else:
        gc.collect()
        a = gc.mem_alloc()
    if a > st["max_sampled"]:
        st["max_sampled"] = a
        st["max_where"] = where
    p = _pystack_use()
    if p > st["pystack_max"]:
        st["pystack_max"] = p


def _calibrate(label):
    """At a step's start (the heap was just collected): the walk must find what gc.mem_alloc()
    says, up to the few blocks this call allocated since. -> [label, mem_alloc, walk]"""
    if not _state["walk"]:
        return None
    m = gc.mem_alloc()
    w = mp_bridge.live()
    return [label, m, w]


def mem_info():
    """{"total", "used", "free", "max_block"} (bytes; max_block in GC blocks) from
    micropython.mem_info(), whose text the JS side captures."""
    mp_bridge.capture(1)
    micropython.mem_info()
    text = mp_bridge.capture(0)
    out = {}
    for line in text.split("\n"):
        for part in line.split(","):
            i = part.rfind(":")
            if i < 0:
                continue
            k = part[:i].strip()
            v = part[i + 1:].strip()
            try:
                n = int(v)
            except ValueError:
                continue
            if k == "GC: total":
                out["total"] = n
            elif k == "used":
                out["used"] = n
            elif k == "free":
                out["free"] = n
            elif k == "max blk sz":
                out["max_block"] = n
    return out


def heap_dump(tag):
    """micropython.mem_info(1) (the heap's block map) sent to the host as `tag`; the text
    never lands on this heap. Only between cycles: it reads the heap, it does not change it."""
    if not CONFIG.get("dump"):
        return
    mp_bridge.capture(1)
    micropython.mem_info(1)
    mp_bridge.dump(tag)


def _check(reply):
    """A bridge reply: the value, or "!<ErrorClass> <message>" raised as that ipa_core error."""
    if reply is None:
        return ""
    if reply[:1] == "!":
        from ipa_core.errors import ProtocolError, TimeoutError_, TransportError

        parts = reply[1:].split(" ", 1)
        msg = "host: " + (parts[1] if len(parts) > 1 else parts[0])
        if parts[0] == "TimeoutError_":
            raise TimeoutError_(msg)
        if parts[0] == "ProtocolError":
            raise ProtocolError(msg)
        raise TransportError(msg)
    return reply


class BridgeCard:
    """A card object: transmit(apdu) -> response data + SW1 SW2, carried out by the host."""

    def transmit(self, apdu):
        _sample()
        if len(apdu) > 1 and apdu[1] == STORE_DATA:
            _state["store_data"] += 1
        return unhexlify(_check(mp_bridge.transmit(hexlify(apdu).decode())))


class BridgeReader:
    """The reader of a streamed answer (iface8): read(n) -> 1..n bytes, b"" at the end;
    length; close(). Reads at most `chunk` bytes per bridge call, like a modem's UART read."""

    def __init__(self, network, token, length, chunk):
        self.network = network
        self.token = token
        self.length = length
        self.chunk = chunk
        self.got = 0
        self.done = False
        self.closed = False

    def read(self, n):
        if self.closed:
            from ipa_core.errors import TransportError

            raise TransportError("read after close")
        if self.done:
            return b""
        if n < 1:
            raise ValueError("read(%d): expected n >= 1" % n)
        _sample()
        _state["reads"] += 1
        text = _check(mp_bridge.read(self.token, min(n, self.chunk)))
        if not text:
            self.done = True
            if self.length is not None and self.got < self.length:
                from ipa_core.errors import ProtocolError

                raise ProtocolError("the answer ended after %d of %d bytes"
                                    % (self.got, self.length))
            return b""
        data = unhexlify(text)
        self.got += len(data)
        _state["read_bytes"] += len(data)
        if self.length is not None and self.got > self.length:
            from ipa_core.errors import ProtocolError

            raise ProtocolError("the answer is longer than the announced %d bytes" % self.length)
        return data

    def close(self):
        if not self.closed:
            self.closed = True
            if self.network.reader is self:
                self.network.reader = None
            _check(mp_bridge.close(self.token))


class BridgeNetwork:
    """A network object (iface8) with post and close; the host knows the eIM's URL.
    StreamingNetwork adds post_stream (what a board's modem HTTP stack offers)."""

    def __init__(self, max_body, chunk):
        self.max_body = max_body
        self.chunk = chunk
        self.reader = None

    def _open(self, path, body, content_type, headers=None):
        if self.reader is not None:  # the caller should have; never leave one open
            self.reader.close()
        _sample()
        _state["posts"] += 1
        hdrs = json.dumps(headers) if headers else ""
        reply = _check(mp_bridge.post(path, content_type, hexlify(body).decode(), hdrs))
        status, token, length = reply.split(" ")
        length = int(length)
        rd = BridgeReader(self, int(token), None if length < 0 else length, self.chunk)
        self.reader = rd
        return int(status), rd

    def post(self, path, body, content_type, headers=None):
        """The whole answer, at most max_body bytes (a streamed one is bounded by the IPA
        reading it: max_package, as ipa_core.http's post_stream)."""
        status, rd = self._open(path, body, content_type, headers)
        if rd.length is not None and rd.length > self.max_body:
            rd.close()
            from ipa_core.errors import ProtocolError

            raise ProtocolError("the answer has %d bytes, more than the %d allowed"
                                % (rd.length, self.max_body))
        try:
            if rd.length is not None:
                buf = bytearray(rd.length)
                mv = memoryview(buf)
                pos = 0
                while pos < rd.length:
                    part = rd.read(rd.length - pos)
                    if not part:
                        break
                    mv[pos:pos + len(part)] = part
                    pos += len(part)
                if rd.read(1):
                    from ipa_core.errors import ProtocolError

                    raise ProtocolError("the answer is longer than announced")
            else:
                buf = bytearray()
                while True:
                    part = rd.read(self.chunk)
                    if not part:
                        break
                    if len(buf) + len(part) > self.max_body:
                        from ipa_core.errors import ProtocolError

                        raise ProtocolError("the answer exceeds %d bytes" % self.max_body)
                    buf.extend(part)
        finally:
            rd.close()
        return status, bytes(buf)

    def close(self):
        if self.reader is not None:
            self.reader.close()
        _check(mp_bridge.close(0))


class StreamingNetwork(BridgeNetwork):
    """BridgeNetwork with post_stream -> (status, reader), the answer read as the caller asks."""

    def post_stream(self, path, body, content_type, headers=None):
        return self._open(path, body, content_type, headers)


def _log(level, msg):
    _sample("log")
    if level != "debug":
        print("ipa %s: %s" % (level, msg))


def _progress(done, total):
    _sample("progress")
    _state["segments"] = [done, total]


def _store_class():
    from ipa_core.ipa_store import MemoryStore

    class SampledStore(MemoryStore):
        """MemoryStore that samples the heap at every write (more points in the procedure)."""

        def put(self, key, value):
            _sample("store")
            MemoryStore.put(self, key, value)

        def delete(self, key):
            _sample("store")
            MemoryStore.delete(self, key)

    return SampledStore


def _jsonable(x):
    if isinstance(x, (bytes, bytearray)):
        return hexlify(x).decode().upper()
    if isinstance(x, dict):
        return dict((k, _jsonable(v)) for k, v in x.items() if k != "raw")
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _probe():
    """Does gc.collect() inside a running call free anything in this port? And the GC block
    size (bytes per block of "max blk sz")."""
    gc.collect()
    before = gc.mem_alloc()
    junk = bytearray(48 * 1024)
    junk = None  # noqa: F841 - garbage on purpose
    gc.collect()
    after = gc.mem_alloc()
    big = bytearray(96000)  # larger than anything else in the heap now
    blocks = mem_info().get("max_block") or 1
    big = None  # noqa: F841
    size = 16
    for cand in (8, 16, 32):
        if (96000 + cand - 1) // cand == blocks:
            size = cand
    return {"collect_effective": after < before + 24 * 1024, "block_bytes": size,
            "probe_alloc_kept": after - before}


def _locate_walk():
    """Enable the JS heap walk: find its structures, then prove it on a kept and a dropped
    32 KB object (mid-call, where gc.mem_alloc() counts both)."""
    st = _state
    if not CONFIG.get("walk") or not CONFIG.get("dump"):
        st["walk_error"] = "disabled"
        return
    heap_dump("layout")
    pu = micropython.pystack_use()
    why = mp_bridge.locate(id(sys.modules), pu)
    if why:
        st["walk_error"] = why
        return
    base = mp_bridge.live()
    keep = bytearray(32768)
    kept = mp_bridge.live()
    keep = None  # noqa: F841 - dropped on purpose
    dropped = mp_bridge.live()
    st["walk_control"] = [base, kept, dropped]
    if base < 0 or kept - base < 32768 or kept - base > 32768 + 256 or dropped - base > 256:
        st["walk_error"] = "control failed: live %d, with a kept 32 KB object %d, dropped %d" \
            % (base, kept, dropped)
        return
    st["walk"] = True


def _step_import():
    st = _state
    st["probe"] = _probe()
    _locate_walk()
    st["start_live"] = gc.mem_alloc()
    from ipa_core import apdu, ipa, ipa_download, ipa_store  # noqa: F401 - what a board imports

    # modules the core imports on first use in a cycle: loaded now, so that their code is in
    # the baseline and not counted as a cycle's working set
    for name in LAZY:
        try:
            __import__(name)
        except ImportError:
            pass
    _refs["modules"] = sorted(k for k in sys.modules if k.startswith("ipa_core"))
    gc.collect()  # ask for the collection at the next top-level entry
    st["phase"] = "setup"


def _step_setup():
    st = _state
    st["baseline"] = gc.mem_alloc()  # after the collection at this entry: code + module data
    st["calibration"].append(_calibrate("setup"))
    st["baseline_info"] = mem_info()
    from ipa_core.apdu import IsdrSession
    from ipa_core.ipa import Ipa
    from ipa_core.ipa_download import make_download_handler
    from ipa_core.ipa_store import MemoryStore

    session = IsdrSession(BridgeCard(), segment_size=CONFIG["segment_size"], version="1.2")
    session.open()
    cls = StreamingNetwork if CONFIG["stream"] else BridgeNetwork
    network = cls(CONFIG["max_body"], CONFIG["read_chunk"])
    store = _store_class()() if CONFIG["sample"] else MemoryStore()
    ipa = Ipa(session, network, store, config={"binding": CONFIG.get("binding", "asn1")},
              log=_log)
    eim = ipa.choose_eim()
    ipa.download_handler = make_download_handler(ipa, None, indirect=True, progress=_progress)
    _refs["ipa"] = ipa
    _refs["session"] = session
    st["eim"] = {"eimId": eim["eimId"], "eimFqdn": eim["eimFqdn"],
                 "indirectProfileDownload": eim["indirectProfileDownload"]}
    gc.collect()
    st["phase"] = "poll"


def _step_poll():
    st = _state
    ipa = _refs["ipa"]
    live = gc.mem_alloc()
    n = st["ncycles"] + 1
    calib = _calibrate("cycle %d" % n)
    heap_dump("start %d" % n)
    reads0 = st["reads"]
    rbytes0 = st["read_bytes"]
    st["max_sampled"] = 0
    st["max_where"] = None
    samples0 = st["samples"]
    st["segments"] = None
    calls0 = st["calls"]
    sd0 = st["store_data"]
    r = ipa.poll_once()
    alloc = gc.mem_alloc()
    heap_dump("end %d" % n)
    total = mem_info().get("total")
    dl = None
    h = ipa.download_handler
    if r.get("package") == "profileDownloadTriggerRequest" and h is not None and h.last:
        last = h.last
        dl = {"ok": last.get("ok"), "iccid": last.get("iccid"), "error": last.get("error"),
              "transactionId": last.get("transactionId"), "segments": last.get("segments")}
        h.last = None
    cyc = {"n": n, "package": r.get("package"), "idle": r.get("idle"),
           "steps": r.get("steps"), "result": _jsonable(r.get("result")),
           "delivered": r.get("delivered"), "acknowledged": r.get("acknowledged"),
           "notifications": _jsonable(r.get("notifications")), "error": r.get("error"),
           "download": dl, "live_start": live, "alloc_end": alloc,
           "heap_total_end": total, "sampled_max": st["max_sampled"],
           "sampled_where": st["max_where"], "samples": st["samples"] - samples0,
           "calls": st["calls"] - calls0, "store_data": st["store_data"] - sd0,
           "reads": st["reads"] - reads0, "read_bytes": st["read_bytes"] - rbytes0,
           "calibration": calib}
    # to the host at once: the driver's own records must not sit on the heap it measures
    mp_bridge.record(json.dumps(cyc))
    st["ncycles"] = n
    print("cycle %d: %s%s; live at start %d, high-water %d, allocated %d" % (
        n, cyc["package"] or ("idle" if cyc["idle"] else "-"),
        " ERROR %s" % (r["error"].get("message"),) if r.get("error") else "",
        live, st["max_sampled"], alloc - live))
    stop = r.get("error") or r.get("idle") or n >= CONFIG["max_cycles"]
    gc.collect()
    r = cyc = dl = calib = total = None
    if stop:
        st["phase"] = "finish"


def _step_finish():
    st = _state
    st["live_end"] = gc.mem_alloc()
    st["calibration"].append(_calibrate("finish"))
    _refs["modules"] = sorted(k for k in sys.modules if k.startswith("ipa_core"))
    st["end_info"] = mem_info()
    try:
        _refs["session"].close()
        _refs["ipa"].network.close()
    except Exception as e:  # the result still goes back
        st["close_error"] = repr(e)
    st["phase"] = "done"


STEPS = {"import": _step_import, "setup": _step_setup, "poll": _step_poll,
         "finish": _step_finish}


def step():
    """One step, called by the JS side from its top level; False when all is done."""
    st = _state
    try:
        STEPS[st["phase"]]()
    except Exception as e:
        sys.print_exception(e)
        st["error"] = "%s in phase %s: %s" % (e.__class__.__name__, st["phase"], e)
        st["phase"] = "done"
        _exit[0] = 1
    if st["phase"] != "done":
        return True
    out = dict((k, v) for k, v in st.items() if k != "phase")
    out["modules"] = _refs.get("modules")
    out["version"] = ".".join(str(x) for x in sys.implementation.version[:3])
    mp_bridge.result(json.dumps(out))
    return False
