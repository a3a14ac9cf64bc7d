"""Board-independent setup: the configuration file, and an Ipa built from a board's parts.

A board module (boards/<board>/board.py) supplies a `Board` with:

    open_session()                  -> an open ISD-R session (ipa_core.apdu.IsdrSession)
    open_network(url, trust_pem)    -> a network object for the eIM at url
                                       (post, optional post_stream, close)
    recover(error)                  make the way to the card and the eIM usable again
                                    after `error` (re-sync the AT port, power-cycle a
                                    modem that stopped answering); may raise
    connectivity                    ipa_core.ipa connectivity object, or None
    close()                         release everything

BoardIpa ties it to ipa_core.ipa.Ipa the way ipa_host.runner does on a host:
open the session, pick the eIM (configured eim_url, else the eUICC's eIM
Configuration Data via Ipa.choose_eim), build the network with the trust
anchor (configured CA file, else the eUICC's trustedCertificateTls),
install an indirect-download handler. `reopen(error)` is what
ipa_loop.run calls after a transport failure: it keeps the same Ipa (its
back-off counters) and replaces session and network.
"""

from ipa_core.compat import b2a_base64, loads

from ipa_core.errors import IpaError

MAX_CONFIG = 4096  # bytes of the JSON configuration file
READ_CHUNK = 512  # a file is read in pieces: one read(limit) takes `limit` bytes of heap at once

# Settings every board understands (a board adds its own, e.g. pins or the APN).
DEFAULTS = {
    "eim_url": None,  # "https://eim.example.com[:port]"; None: from the eUICC's eIM config
    "eim_id": None,  # which eIM of the eUICC's configuration to poll (None: the first usable)
    "ca_file": None,  # PEM trust anchor for the eIM's TLS; None: the eUICC's certificate
    "poll_interval_s": 60,
    "max_interval_s": 3600,
    "error_backoff_s": 30,
    "max_error_backoff_s": 1800,
    "sgp32": "1.2",  # SGP.32 version of the eUICC
    "state_file": "/ipa_state.json",
    "watchdog_ms": 8000,  # the RP2040's WDT allows at most 8388 ms
    "debug": False,
    # Signed notifications per ProvideEimPackageResult, in bytes; notifications are then also
    # read from the eUICC one at a time (ipa_core.ipa_notify): the heap never holds a list.
    "max_message_bytes": 1024,
    # A garbage collection after this many bytes allocated (gc.threshold; 0: the port's
    # default, a collection only when the heap is full). Frequent collections keep the
    # long-lived objects packed at the bottom of the heap, so that the free part stays in
    # large pieces: tools/mp_firmware.py measured the smallest heap where a full cycle passes.
    "gc_threshold": 4096,
}

START_DELAYS_S = (5, 15, 30, 60, 120, 300)  # waits between start-up tries

# Boards speak the ESipa ASN.1 binding only (esipa_json is not frozen): no "binding" here.
IPA_SETTINGS = ("poll_interval_s", "max_interval_s", "error_backoff_s",
                "max_error_backoff_s", "eim_id", "max_message_bytes")


class ConfigError(ValueError):
    """The configuration file is unreadable or names a setting the board does not know."""


def load_config(path, defaults, log=print):
    """defaults updated by the JSON object in `path` (missing file: defaults, with a log
    line). Unknown keys, wrong types and files over MAX_CONFIG bytes are ConfigErrors."""
    cfg = dict(defaults)
    try:
        text = read_file(path, MAX_CONFIG)
    except OSError:
        log("config: %s not found, using the defaults" % path)
        return cfg
    try:
        data = loads(text)
    except ValueError as e:
        raise ConfigError("config %s is not valid JSON: %s" % (path, e))
    if not isinstance(data, dict):
        raise ConfigError("config %s: expected a JSON object, found %s"
                          % (path, type(data).__name__))
    for k in data:
        if k not in defaults:
            raise ConfigError("config %s: unknown setting %r, expected one of %s"
                              % (path, k, ", ".join(sorted(defaults))))
        d = defaults[k]
        v = data[k]
        if d is not None and v is not None and not _same_kind(d, v):
            raise ConfigError("config %s: %s is %r, expected a %s like the default %r"
                              % (path, k, v, type(d).__name__, d))
        cfg[k] = v
    return cfg


def _same_kind(default, value):
    """A value fits a default's type; ints and floats mix, bools do not mix with numbers."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    return type(value) is type(default)


def der_to_pem(der, label="CERTIFICATE"):
    """PEM text (bytes) of a DER object, 64 base64 characters per line."""
    b64 = b"".join(b2a_base64(der).split())
    lines = [b"-----BEGIN " + label.encode() + b"-----"]
    for i in range(0, len(b64), 64):
        lines.append(b64[i:i + 64])
    lines.append(b"-----END " + label.encode() + b"-----")
    return b"\n".join(lines) + b"\n"


def read_file(path, limit=16384):
    """Bytes of a small file from flash (a CA certificate, the configuration), at most
    `limit` (a ConfigError past it), read in READ_CHUNK pieces so that the heap holds the
    file once, not a `limit`-sized buffer."""
    data = bytearray()
    with open(path, "rb") as f:
        while True:
            part = f.read(READ_CHUNK)
            if not part:
                return bytes(data)
            if len(data) + len(part) > limit:
                raise ConfigError("%s is over %d bytes" % (path, limit))
            data += part


class BoardIpa:
    """An ipa_core.ipa.Ipa on a Board (see the module docstring).

    board   the board's Board object
    store   the progress store (flash_store.FlashStore)
    cfg     load_config() result
    clock   uart_stream.clock_ms
    log     callable(str)
    """

    def __init__(self, board, store, cfg, clock=None, log=print):
        self.board = board
        self.store = store
        self.cfg = cfg
        self.clock = clock
        self.log = log
        self.ipa = None
        self.url = None
        self.trust = None

    def open(self):
        """Open session and network and build the Ipa; returns it."""
        from ipa_core.ipa import Ipa
        from ipa_loop import ipa_log

        cfg = self.cfg
        session = self.board.open_session()
        settings = {}
        for k in IPA_SETTINGS:
            if cfg.get(k) is not None:
                settings[k] = cfg[k]
        try:
            ipa = Ipa(session, None, self.store, config=settings,
                      connectivity=getattr(self.board, "connectivity", None),
                      clock_ms=self.clock, log=ipa_log(self.log, cfg.get("debug")))
            self.url, pem = self._eim(ipa)
            # A CA file is read again at each reopen rather than kept in the heap for it.
            self.trust = None if cfg.get("ca_file") else pem
            ipa.network = self.board.open_network(self.url, pem)
        except BaseException:
            _close(session)
            raise
        self._download_handler(ipa)
        self.ipa = ipa
        self.log("ipa: eIM %s, EID %s" % (self.url, ipa.eid or "not read yet"))
        return ipa

    def start(self, sleep_ms, feed_watchdog, delays_s=START_DELAYS_S, max_tries=None):
        """board.start() and open() until both work; the wait between tries grows along
        delays_s (then stays at its last value), the watchdog fed all along. At boot the
        modem may still be searching for a network: that is not a reason to stop.
        max_tries (tests) bounds the tries; the last failure is then raised."""
        from ipa_loop import describe, wait

        started = False
        n = 0
        while True:
            n += 1
            try:
                if not started:
                    self.board.start()
                    started = True
                return self.open()
            except Exception as e:  # IpaError, OSError, a modem that does not answer yet
                delay = delays_s[min(n, len(delays_s)) - 1]
                self.log("ipa: start-up try %d failed (%s); next try in %d s"
                         % (n, describe(e), delay))
                if max_tries is not None and n >= max_tries:
                    raise
                wait(delay * 1000, sleep_ms, feed_watchdog)
                if started:
                    try:
                        self.board.recover(e)
                    except Exception as e2:  # still dead: the next try says so again
                        self.log("ipa: recovery failed: %s" % describe(e2))

    def _eim(self, ipa):
        """(base URL, PEM trust anchor or None) of the eIM to poll."""
        cfg = self.cfg
        pem = read_file(cfg["ca_file"]) if cfg.get("ca_file") else None
        if cfg.get("eim_url"):
            return cfg["eim_url"], pem
        eim = ipa.choose_eim(cfg.get("eim_id"))
        if pem is None and eim.get("trust") is not None:
            if eim.get("trustKind") == "certificate":
                pem = der_to_pem(eim["trust"])
            else:
                # A modem TLS stack takes CA certificates, not a public key to pin.
                raise IpaError("the eIM %s is pinned by public key (trustedEimPkTls): set "
                               "ca_file to its CA certificate" % eim["eimId"])
        return eim["url"], pem

    def _download_handler(self, ipa):
        # Indirect only (iface8 board subset): the eIM relays ES9+, no SM-DP+ connection.
        from ipa_core.ipa_download import make_download_handler

        ipa.download_handler = make_download_handler(ipa, None, indirect=True)

    def reopen(self, error=None):
        """ipa_loop's reopen: recover the board, new session and network into the same Ipa."""
        ipa = self.ipa
        if ipa is None:
            self.open()
            return
        _close(ipa.network)
        _close(ipa.session)
        ipa.network = None
        self.board.recover(error)
        session = self.board.open_session()
        try:
            pem = read_file(self.cfg["ca_file"]) if self.cfg.get("ca_file") else self.trust
            network = self.board.open_network(self.url, pem)
        except BaseException:
            _close(session)
            raise
        ipa.session = session
        ipa.network = network

    def close(self):
        if self.ipa is not None:
            _close(self.ipa.network)
            _close(self.ipa.session)
        self.board.close()


def _close(obj):
    """obj.close() if it has one; a failure to close a broken object is only logged."""
    f = getattr(obj, "close", None)
    if f is None:
        return
    try:
        f()
    except Exception as e:  # closing a broken session/connection fails too: nothing to lose
        print("ipa: closing %s failed: %s" % (obj.__class__.__name__, e))


def _no_watchdog():
    pass


def set_gc_threshold(n):
    """gc.threshold(n) where the port has it (every MicroPython port we freeze for); n 0 or
    None leaves the port's default."""
    try:
        import gc
    except ImportError:  # pragma: no cover
        return
    f = getattr(gc, "threshold", None)  # MicroPython only (CPython's gc has no such call)
    if n and f is not None:
        f(n)


def run_main(board, config_path, watchdog):
    """What every board's main.py does: read the config at `config_path` (defaults from
    board.CONFIG_DEFAULTS), start the watchdog (`watchdog(ms)` -> its feed callable; ms 0:
    none, for development at the REPL, since a running WDT cannot be stopped), keep the
    IPA's state in a FlashStore, bring the board up (BoardIpa.start) and run ipa_loop for
    ever; close the board when the loop ends."""
    import ipa_loop
    from flash_store import FlashStore
    from uart_stream import clock_ms, sleep_ms

    cfg = load_config(config_path, board.CONFIG_DEFAULTS)
    set_gc_threshold(cfg.get("gc_threshold"))
    feed = watchdog(cfg["watchdog_ms"]) if cfg["watchdog_ms"] else _no_watchdog
    store = FlashStore(cfg["state_file"])
    bi = BoardIpa(board.Board(cfg, feed=feed), store, cfg, clock=clock_ms)
    ipa = bi.start(sleep_ms, feed)
    try:
        ipa_loop.run(ipa, sleep_ms, feed, clock=clock_ms, reopen=bi.reopen)
    finally:
        bi.close()
