"""Host glue for the IPA procedures: session + store + eIM network -> ipa_core.ipa.Ipa.

`open_ipa(settings)` opens the card, picks the eIM from the eUICC's eIM
Configuration Data (or the configured override), builds the HTTPS network
with the trust anchor the eUICC holds, and returns a ready `Ipa` whose
progress is kept in `<home>/ipa-state.json`. `run_loop()` is the long-running
`ipa run`: one poll cycle after another with the core's back-off, until
SIGTERM/SIGINT or a cycle limit.
"""

import hashlib
import logging
import os
import signal
import sys
import threading
import time

from ipa_core import apdu
from ipa_core.errors import IpaError, TransportError
from ipa_core.ipa import Ipa
from ipa_core.ipa_download import make_download_handler
from ipa_host.store import FileStore

log = logging.getLogger("ipa")

STATE_FILE = "ipa-state.json"


class Settings:
    """What the CLI resolved from options, the config file and defaults."""

    def __init__(self, card="sim", home=None, segment_size=None, sgp32="1.2", trace=None,
                 eim_id=None, eim_url=None, binding="asn1", ca_file=None, allow_http=False,
                 timeout=30, poll_interval=60, max_interval=3600, smdp_ca_file=None,
                 profile_download="auto", network="socket", refresh=None, attach_timeout=180,
                 refresh_flag=True, max_package=4 * 1024 * 1024, error_backoff=30,
                 max_attempts=5, min_rate=256):
        self.card = card
        self.home = home
        self.segment_size = segment_size
        self.sgp32 = sgp32
        self.trace = trace
        self.eim_id = eim_id or None
        self.eim_url = eim_url or None
        self.binding = binding
        self.ca_file = ca_file or None
        self.allow_http = allow_http
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.max_interval = max_interval
        self.smdp_ca_file = smdp_ca_file or None
        self.profile_download = profile_download
        self.network = network or "socket"
        self.refresh = refresh  # None: refresh modems (at:) after a profile switch
        self.attach_timeout = attach_timeout  # seconds for the modem to attach after it
        self.refresh_flag = refresh_flag  # refreshFlag of the ES10 calls that switch profiles
        self.max_package = max_package  # bytes of a bound profile package at most
        self.error_backoff = error_backoff  # first wait after a failure (cycle, SM-DP+)
        self.max_attempts = max_attempts  # refusals of one step before giving up on it
        self.min_rate = min_rate  # B/s a streamed package earns network time at


def open_session(st):
    """The open ISD-R session for the card `st.card` names (caller closes it)."""
    from ipa_host.card.select import open_card, parse_card_spec

    kind, _target, opts = parse_card_spec(st.card)
    if kind == "sim" and "pki" not in opts:
        from ipa_host.sim.home import open_home_euicc

        card = open_home_euicc(st.home, strict=True)  # this IPA gets no leniency
    else:
        card = open_card(st.card)
    try:
        if kind == "at":
            # The modem may own the channel (CGLA): the card knows, and its
            # profile may lower the segment size for a fragile UART.
            from ipa_core.at_card import open_isdr_session

            kw = {"segment_size": st.segment_size} if st.segment_size else {}
            s = open_isdr_session(card, trace=st.trace, version=st.sgp32, **kw)
        else:
            # qmi:/mbim: the modem opened and selected the ISD-R channel (CLA channel bits 0).
            s = apdu.IsdrSession(card, segment_size=st.segment_size or apdu.SEGMENT_SIZE,
                                 trace=st.trace, version=st.sgp32,
                                 modem_channel=kind in ("qmi", "mbim")).open()
    except BaseException:
        _close_card(card)
        raise
    _closes_card(s, card)
    return s


def _close_card(card):
    close = getattr(card, "close", None)  # AT: AT+CCHC and the port; PC/SC: the reader
    if close is not None:
        close()


def _closes_card(session, card):
    """session.close() also closes the card opened for it: a modem's AT port or a PC/SC
    reader held open would refuse the next cycle of `ipa run` ("in use")."""
    close_session = session.close

    def close():
        try:
            close_session()
        finally:
            _close_card(card)

    session.close = close


# DTLS associations kept between the cycles of `ipa run` (ipa_host.net.coaps): the next
# poll restores the association instead of a full handshake.
DTLS_SESSIONS = {}
TLS_SESSIONS = {}  # TLS sessions kept across the polls of `ipa run` (ipa_host.net.https)


def build_network(st, eim, session=None):
    """_build_network, recorded by the --pcap tracer when there is one (ipa_host.trace)."""
    return _traced(st, _build_network(st, eim, session), st.eim_url or eim["url"])


def _traced(st, net, url):
    wrap = getattr(st.trace, "network", None)  # st.trace: a plain callable or a Tracer
    return net if wrap is None else wrap(net, url)


def _build_network(st, eim, session=None):
    """Network object for the eIM that `Ipa.choose_eim` picked (or the override URL):
    HttpsNetwork for https://, CoapsNetwork for coaps:// (eimRetrieveCoaps), with the trust
    anchor the eUICC holds (or the configured CA file); with st.network "modem[:stack]" the
    modem's own HTTP(S) stack on the card's AT port (build_modem_network)."""
    url = st.eim_url or eim["url"]
    if st.network != "socket":
        return build_modem_network(st, url, session)
    # A configured CA bundle replaces the eUICC's trust anchor (e.g. a lab eIM).
    trust = None if st.ca_file else eim.get("trust")
    if trust is not None and url.startswith(("http://", "coap://")) and st.allow_http:
        # The lab path (--allow-http): nothing to verify a plain URL with, so the eUICC's
        # TLS trust anchor is left unused rather than refused.
        log.warning("plain %s with --allow-http: the eUICC's TLS trust anchor for the eIM is "
                    "not used", url.partition(":")[0].upper())
        trust = None
    if url.startswith(("coaps://", "coap://")):
        from ipa_host.net.coaps import CoapsNetwork

        if st.binding == "json":
            # SGP.32 defines the JSON binding over HTTPS only; CoAP carries the ASN.1 one.
            raise ValueError("the ESipa JSON binding runs over HTTPS only; use --binding asn1 "
                             "(or [eim] binding = \"asn1\") with %s" % url)

        if url.startswith("coap://"):  # plain CoAP: lab use, like plain HTTP
            return CoapsNetwork(url, allow_plain=st.allow_http, timeout=st.timeout)
        return CoapsNetwork(url, trust=trust, ca_file=st.ca_file, timeout=st.timeout,
                            session_cache=DTLS_SESSIONS)
    from ipa_host.net.https import HttpsNetwork

    return HttpsNetwork(url, trust=trust, ca_file=st.ca_file, allow_http=st.allow_http,
                        timeout=st.timeout, session_cache=TLS_SESSIONS,
                        min_stream_rate=st.min_rate)


MAX_CA_FILE = 10240  # the largest certificate file the modems' file systems take
MODEM_CA_NAME = "eim_ca.pem"
# CA files this process uploaded: {(AT port, stack): sha256 of the PEM}. The cycles of
# `ipa run` reopen the network; the file stays in the modem's flash, so it is uploaded
# once per process (again when --ca-file changes), not at every poll.
MODEM_CAS = {}


def build_modem_network(st, url, session):
    """The eIM through the modem's own HTTP(S) stack (ipa_core.at_http): the card's AT
    engine carries both the APDUs and the HTTP commands. The stack is the one st.network
    names, else the one the modem's identity (AT+CGMI/AT+CGMM) points to. https needs
    st.ca_file: the PEM CA of the eIM's TLS certificate, uploaded to the modem, which
    verifies the server with it (the modem cannot use the eUICC's trust anchor)."""
    from ipa_core import at_http

    card = getattr(session, "card", None)
    engine = getattr(card, "engine", None)
    if engine is None:
        raise ValueError("--network %s: the modem's HTTP stack needs the card on the modem's "
                         "AT port (--card at:/dev/ttyUSB2...), not %r" % (st.network, st.card))
    if not url.startswith(("https://", "http://")):
        raise ValueError("--network %s carries HTTP(S) only, the eIM address is %s (use "
                         "--network socket, or an https:// --eim-url)" % (st.network, url))
    stack = st.network.partition(":")[2]
    identity = getattr(card, "identity", "") or ""
    if not stack:
        stack = at_http.pick(identity)
        if stack is None:
            raise ValueError("--network modem: cannot tell the HTTP stack of the modem %r "
                             "from its identity; name it: --network modem:quectel, "
                             "modem:sim7080 or modem:simcom" % identity)
    pem = None
    if url.startswith("http://"):
        if not st.allow_http:
            raise ValueError("plain http:// refused for %s: the eIM must be reached over HTTPS "
                             "(--allow-http is for lab use only)" % url)
        log.warning("plain HTTP to %s through the modem: lab use only", url)
    else:
        pem = _modem_ca(st)
    timeout_ms = int(st.timeout * 1000)
    opts = {"http_timeout_ms": timeout_ms, "read_timeout_ms": timeout_ms}
    key = (getattr(card, "device", None), at_http.resolve(stack))
    digest = hashlib.sha256(pem).hexdigest() if pem is not None else None
    if digest is not None and MODEM_CAS.get(key) == digest:
        opts["ca"] = MODEM_CA_NAME  # uploaded by an earlier cycle: spare the modem's flash
    net = at_http.open_network(engine, url, stack, **opts)
    if pem is not None and "ca" not in opts:
        try:
            net.install_ca(pem, MODEM_CA_NAME)
        except BaseException:
            net.close()
            raise
        MODEM_CAS[key] = digest
    log.info("eIM %s through the %s HTTP stack of %s", url, stack, identity or "the modem")
    return ModemNetwork(net, key, st.ca_file) if pem is not None else net


# Stack failures a TLS handshake the modem refused ends in: the stacks have no TLS code of
# their own (Quectel: socket connect error; SIM7080: AT+SHCONN answers ERROR) or name it.
TLS_SUSPECTS = {"quectel": (701, 716), "simcom": (710, 715, 719), "sim7080": ()}


class ModemNetwork:
    """An https network object of ipa_core.at_http whose connection failures say that
    they may be the modem refusing the eIM's certificate, and which CA file it was given
    (the stack's own code rarely says TLS); such a failure also makes the next cycle upload
    the CA again (MODEM_CAS). Everything else passes through unchanged."""

    def __init__(self, net, key, ca_file):
        self.net = net
        self.key = key
        self.stack = key[1]
        self.ca_file = ca_file

    def post(self, path, body, content_type, headers=None):
        try:
            return self.net.post(path, body, content_type, headers)
        except TransportError as e:
            raise self._named(e)

    def post_stream(self, path, body, content_type, headers=None):
        try:
            return self.net.post_stream(path, body, content_type, headers)
        except TransportError as e:
            raise self._named(e)

    def close(self):
        self.net.close()

    def install_ca(self, pem, name="eim_ca.pem"):
        self.net.install_ca(pem, name)

    def __getattr__(self, name):
        return getattr(self.net, name)

    def _named(self, e):
        from ipa_core.at import AtError

        code = getattr(e, "code", None)
        command = getattr(e, "command", "") or ""
        if code in TLS_SUSPECTS[self.stack] or \
                (isinstance(e, AtError) and command.upper().startswith("AT+SHCONN")):
            MODEM_CAS.pop(self.key, None)  # the CA on the modem may be gone or wrong
            return TransportError(
                "%s; TLS through the modem's %s HTTP stack failed, the eIM is unreachable or "
                "the modem's data bearer is down: is --ca-file %s the CA that issued the "
                "eIM's TLS certificate, and is the modem attached?"
                % (e, self.stack, self.ca_file))
        return e


def _modem_ca(st):
    """The PEM bytes of --ca-file for the modem (ValueError with what to do)."""
    if not st.ca_file:
        raise ValueError("--network %s with an https:// eIM needs --ca-file PEM (or [eim] "
                         "ca_file): the CA of the eIM's TLS certificate, which is uploaded to "
                         "the modem so that its TLS stack can verify the server" % st.network)
    try:
        with open(st.ca_file, "rb") as f:
            pem = f.read(MAX_CA_FILE + 1)
    except OSError as e:
        raise ValueError("--ca-file %s: cannot read it: %s" % (st.ca_file, e.strerror or e))
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError("--ca-file %s: expected a PEM certificate (-----BEGIN CERTIFICATE-----)"
                         " for the modem's TLS stack" % st.ca_file)
    if len(pem) > MAX_CA_FILE:
        raise ValueError("--ca-file %s: over %d bytes, more than the modems' file systems take; "
                         "give only the eIM's CA certificate" % (st.ca_file, MAX_CA_FILE))
    return pem


def build_smdp_network(st, smdp_address):
    """HTTPS network to an SM-DP+ for a direct profile download (ES9+): https://<address>
    (host[:port] from the activation code), trusting `st.smdp_ca_file` (--smdp-ca-file, for
    labs) or else the system CAs."""
    from ipa_host.net.https import HttpsNetwork

    url = "https://" + smdp_address
    return _traced(st, HttpsNetwork(url, ca_file=st.smdp_ca_file, timeout=st.timeout,
                                    min_stream_rate=st.min_rate), url)


def build_connectivity(st, session):
    """The Ipa's connectivity: for a card on a modem's AT port a
    ipa_host.modem_link.ModemConnectivity (after a profile switch: SIM refresh unless
    [card] refresh = false, registration, and with --network modem the HTTP stack's data
    bearer); for qmi:/mbim: an ipa_host.modem_manager.ModemManagerConnectivity (disable +
    enable through ModemManager when it owns the modem, then registration); None for other
    cards (the Ipa's default: always connected)."""
    from ipa_host.card.select import parse_card_spec

    card = getattr(session, "card", None)
    engine = getattr(card, "engine", None)
    kind, target = parse_card_spec(st.card)[:2]
    if kind in ("qmi", "mbim"):
        from ipa_host.modem_manager import ModemManagerConnectivity

        return ModemManagerConnectivity(target, session=session,
                                        refresh=st.refresh is not False, log=log)
    if kind != "at" or engine is None:
        if st.refresh:
            log.debug("[card] refresh applies to modems (--card at:, qmi:, mbim:) only")
        return None
    from ipa_host.modem_link import ModemConnectivity

    return ModemConnectivity(card, engine, session=session, stack=_modem_stack(st, card),
                             refresh=st.refresh is not False, log=log)


def after_profile_switch(st, session, what="the profile switch"):
    """The enabled profile changed by the IPA's own hand (ImmediateEnable, fallback,
    emergency): on a modem (--card at:, or qmi:/mbim: through ModemManager), make it read
    the eUICC again and wait for its registration, as poll does after a PSMO enable. Other
    cards: nothing to do."""
    c = build_connectivity(st, session)
    if c is None:
        return
    c.refresh()
    if not c.wait_connected(int(st.attach_timeout * 1000)):
        log.warning("the modem did not register within %s s after %s", st.attach_timeout, what)


def _modem_stack(st, card):
    """The HTTP stack --network modem[:stack] uses (as build_modem_network picks it), or
    None: the host's own network, or a stack that build_modem_network will refuse."""
    if st.network == "socket":
        return None
    from ipa_core import at_http

    name = st.network.partition(":")[2] or at_http.pick(getattr(card, "identity", "") or "")
    try:
        return at_http.resolve(name) if name else None
    except ValueError:
        return None


def smdp_factory(st):
    """Ipa.smdp_network: notifications addressed to an SM-DP+ go straight to it (ES9+), unless
    the device is set to reach SM-DP+s only through the eIM (--profile-download indirect,
    [download] mode = "indirect"): then the eIM relays them (ipa_core.ipa_notify)."""
    if (st.profile_download or "auto") == "indirect":
        return None
    return lambda address: build_smdp_network(st, address)


class IpaHost:
    """Context manager: the session, the store, the network and the Ipa, closed together.

    need_eim=False (notifications process, download): with no usable eIM the Ipa has no
    eIM network (self.eim None) and reaches only SM-DP+s."""

    def __init__(self, st, need_eim=True):
        self.st = st
        self.need_eim = need_eim
        self.session = None
        self.network = None
        self.ipa = None
        self.eim = None

    def __enter__(self):
        st = self.st
        self.session = open_session(st)
        try:
            store = FileStore(os.path.join(st.home, STATE_FILE))
            config = {"binding": st.binding, "poll_interval_s": st.poll_interval,
                      "max_interval_s": st.max_interval, "refresh_flag": st.refresh_flag,
                      "max_package": st.max_package, "error_backoff_s": st.error_backoff,
                      "max_attempts": st.max_attempts}
            if st.eim_id:
                config["eim_id"] = st.eim_id
            connectivity = build_connectivity(st, self.session)
            if connectivity is not None:
                config["connectivity_timeout_s"] = st.attach_timeout
            self.ipa = Ipa(self.session, None, store, config=config, log=log,
                           connectivity=connectivity,
                           clock_ms=lambda: int(time.monotonic() * 1000))
            self._open_eim(st)
            self.ipa.smdp_network = smdp_factory(st)
            if self.network is not None and connectivity is not None and \
                    connectivity.stack is not None:
                # The modem's HTTP stack needs its data bearer: up already on most starts
                # (one query), brought up here when the modem came up without it.
                if not connectivity.bearer(connectivity.clock_ms() + BEARER_START_MS):
                    log.warning("the data bearer of the modem's %s HTTP stack is not up: "
                                "the eIM exchanges will likely fail", connectivity.stack)
            mode = st.profile_download or "auto"
            self.ipa.download_handler = make_download_handler(
                self.ipa, lambda address: build_smdp_network(st, address),
                indirect=None if mode == "auto" else mode == "indirect")
            _watchdog_hook(self)
            _test_kill_hook(self)
        except BaseException:
            self.session.close()
            raise
        return self

    def _open_eim(self, st):
        """The eIM and its network; without need_eim, no usable eIM only leaves them None."""
        try:
            self.eim = self.ipa.choose_eim(st.eim_id, st.eim_url)
            self.network = build_network(st, self.eim, self.session)
        except (IpaError, ValueError) as e:
            if self.need_eim:
                raise
            self.eim = None
            log.info("no eIM to reach (SM-DP+ only): %s", e)
            return
        self.ipa.network = self.network

    def __exit__(self, *exc):
        if self.network is not None:
            self.network.close()
        self.session.close()


def _watchdog_hook(h):
    """Under a systemd watchdog (WatchdogSec=), every ES10 exchange of the cycle may ping it
    (ipa_host.sd_notify.keepalive, rate-limited): a cycle that advances, such as a long
    profile download, is alive; one stuck longer than the watchdog is restarted."""
    from ipa_host import sd_notify

    if sd_notify.watchdog_s() is None:
        return
    store_data = h.session.store_data

    def alive(*args, **kw):
        r = store_data(*args, **kw)
        sd_notify.keepalive()
        return r

    h.session.store_data = alive


class SmdpHost(IpaHost):
    """`ipa download` straight to an SM-DP+ (no eIM needed): the session, the store and the
    ES9+ network, closed together (IpaHost's __exit__; no Ipa, no eIM). recover() first
    cancels a download a cut left open."""

    def __init__(self, st, smdp_address):
        IpaHost.__init__(self, st)
        self.address = smdp_address
        self.store = None

    def __enter__(self):
        self.session = open_session(self.st)
        try:
            self.store = FileStore(os.path.join(self.st.home, STATE_FILE))
            self.network = build_smdp_network(self.st, self.address)
            _test_kill_hook(self)
        except BaseException:
            self.session.close()
            raise
        return self

    def recover(self, log=None):
        """recover_direct with this SM-DP+'s network (log: where its outcome goes)."""
        return recover_direct(self.st, self.session, self.store, log, self.network,
                              self.address)


def recover_direct(st, session, store, log=None, network=None, address=None):
    """ipa_core.ipa_cancel.recover for a command without an eIM (`ipa download`, also with
    --smds): the recorded SM-DP+ reached over `network` when it is `address`, else over a
    network of its own; a session relayed by an eIM is cancelled on the eUICC and its
    server side waits for `ipa poll`. log(level, msg): default the `ipa` log."""
    from ipa_core import ipa_cancel
    from ipa_core.ipa_direct import DirectTransport

    def transport_for(rec):
        if rec.get("transport") != "direct":
            return None  # relayed by an eIM: `ipa poll` reaches it
        smdp = rec.get("smdpAddress")
        return DirectTransport(network if network is not None and smdp == address
                               else build_smdp_network(st, smdp))

    return ipa_cancel.recover(session, store, transport_for, log or core_log)


def core_log(level, msg):
    """log(level, msg) for the core's procedures, into the `ipa` logger."""
    log.log({"debug": 10, "info": 20, "warning": 30}.get(level, 40), msg)


TEST_KILL_ENV = "IPA_TEST_KILL_AFTER_STEP"
BEARER_START_MS = 30000  # bringing the modem's data bearer up before the first request


_KILL_COUNT = [0]
_KILL_SEEN = [0]  # events named as in "n@NAME"


def _test_kill_hook(h):
    """TEST ONLY, inert unless $IPA_TEST_KILL_AFTER_STEP=n is set (docs/resilience.md):
    every progress-store write, ES10 exchange and eIM (or SM-DP+) answer is an event, logged
    on stderr as "test-kill event k: ..."; right after event n (0: never) the process
    SIGKILLs itself, as a power cut at that step boundary would. "n@eIM BF4F": after the
    n-th event so named (the kill campaign's cut right after a GetEimPackage answer)."""
    n = os.environ.get(TEST_KILL_ENV)
    if not n:
        return
    n, _, only = n.partition("@")
    # one count per process: `ipa download` opens two hosts, `ipa run` one per cycle
    n, count, seen = int(n), _KILL_COUNT, _KILL_SEEN

    def wrap(fn, name, i):
        def event(*args, **kw):
            r = fn(*args, **kw)
            count[0] += 1
            what = args[i] if isinstance(args[i], str) else bytes(args[i][:2]).hex().upper()
            sys.stderr.write("test-kill event %d: %s %s\n" % (count[0], name, what))
            sys.stderr.flush()
            if not only or "%s %s" % (name, what) == only:
                seen[0] += 1
                if seen[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
            return r
        return event

    eim = getattr(h, "ipa", None) is not None  # else SmdpHost: the SM-DP+, by ES9+ path
    store = h.ipa.store if eim else h.store
    store.put, store.delete = wrap(store.put, "put", 0), wrap(store.delete, "delete", 0)
    h.session.store_data = wrap(h.session.store_data, "ES10", 0)
    if h.network is not None:  # an IpaHost without an eIM has none
        h.network.post = wrap(h.network.post, "eIM" if eim else "SM-DP+", 1 if eim else 0)
    factory = h.ipa.smdp_network if eim else None
    if factory is not None:
        def smdp_network(address):
            net = factory(address)
            net.post = wrap(net.post, "SM-DP+", 0)  # the path: the function
            return net
        h.ipa.smdp_network = smdp_network


# A cycle that cannot start (card or modem gone, e.g. a USB modem re-enumerating): wait
# START_RETRY_S, doubling with each further such cycle in a row, up to START_RETRY_MAX_S
# (and never past [ipa] max_interval); a cycle that starts resets the count.
START_RETRY_S = 30
START_RETRY_MAX_S = 1800


def start_retry_s(failures, max_interval):
    """Seconds to wait after the `failures`-th cycle in a row that could not start (1, 2 ...):
    30, 60, 120 ... up to 30 min or max_interval, whichever is lower."""
    return min(max_interval, START_RETRY_MAX_S,
               START_RETRY_S * 2 ** min(max(failures, 1) - 1, 16))


def run_loop(st, max_cycles=None, stop=None, on_cycle=None, wait=None):
    """`ipa run`: poll cycles with the core's back-off until stopped.

    A fresh session and connection per cycle, so a modem or reader that went
    away is reopened and no idle TLS connection is held between polls.
    SIGTERM/SIGINT end the loop after the current cycle (the store holds any
    unfinished procedure). `wait(seconds)` sleeps between cycles (default: on
    the stop event, so a signal ends the wait; a test gives a fake clock).
    Under systemd (Type=notify) it reports READY, a STATUS line per cycle and
    watchdog pings (ipa_host.sd_notify). Returns the number of cycles run.
    """
    from ipa_host import sd_notify

    stop = stop or threading.Event()
    wait = wait or (lambda seconds: sd_notify.wait(stop, seconds))
    installed = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            installed.append((sig, signal.signal(sig, lambda *_: stop.set())))
    cycles = 0
    failures = 0  # cycles in a row that could not start
    delay_ms = 0
    sd_notify.notify("READY=1")
    try:
        while not stop.is_set() and (max_cycles is None or cycles < max_cycles):
            sd_notify.keepalive()
            try:
                with IpaHost(st) as h:
                    r = h.ipa.poll_once()
                    delay_ms = h.ipa.next_poll_delay_ms(r)
                failures = 0
            except Exception as e:  # card or eIM unreachable before the cycle began
                failures += 1
                log.warning("cycle could not start: %s", e)
                r = {"error": {"type": type(e).__name__, "message": str(e)}}
                delay_ms = start_retry_s(failures, st.max_interval) * 1000
            cycles += 1
            if on_cycle is not None:
                on_cycle(r)
            sd_notify.notify("STATUS=" + _log_cycle(r, delay_ms))
            if max_cycles is not None and cycles >= max_cycles:
                break
            wait(delay_ms / 1000.0)
    finally:
        for sig, old in installed:
            signal.signal(sig, old)
        sd_notify.notify("STOPPING=1")
    log.info("stopped after %d cycle(s)", cycles)
    return cycles


def _log_cycle(r, delay_ms):
    """Log what a cycle did and when the next one comes; returns that line."""
    if r.get("error"):
        level, msg = logging.WARNING, "poll failed: %s; next try in %d s" % (
            r["error"].get("message"), delay_ms // 1000)
    elif r.get("idle"):
        level, msg = logging.INFO, "no eIM package; next poll in %d s" % (delay_ms // 1000)
    else:
        level, msg = logging.INFO, "%s: steps %s; next poll in %d s" % (
            r.get("package") or "resumed", ",".join(r.get("steps") or []), delay_ms // 1000)
    log.log(level, "%s", msg)
    return msg


# sd-daemon(3) priority prefixes: journald files each stderr line at the syslog priority
# "<N>" it starts with, so `journalctl -p warning` can filter. Below INFO: 7 (debug).
SD_PRIORITIES = ((logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def sd_priority(levelno):
    for level, prio in SD_PRIORITIES:
        if levelno >= level:
            return prio
    return 7


def journal_stderr():
    """True when stderr is the journal stream systemd connected: $JOURNAL_STREAM holds its
    "device:inode" (systemd.exec(5)), compared with stderr's own, so a child whose stderr
    was redirected elsewhere does not write priority prefixes into a file."""
    value = os.environ.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class JournalFormatter(logging.Formatter):
    """Each line of a record prefixed with its sd-daemon priority "<N>"."""

    def format(self, record):
        prio = sd_priority(record.levelno)
        return "\n".join("<%d>%s" % (prio, line)
                         for line in logging.Formatter.format(self, record).split("\n"))


def error_line(text):
    """A line for stderr outside logging (the CLI's fatal "ipa: ..." messages), priority 3
    under journald like a logged error."""
    return ("<3>" if journal_stderr() else "") + text + "\n"


def setup_logging(level="info"):
    """Logs on stderr; under systemd (journal stream) with sd-daemon priority prefixes and
    without our own timestamps (journald adds its own)."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    journal = journal_stderr()
    if not journal:
        fmt = "%(asctime)s " + fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(fmt) if journal else logging.Formatter(fmt))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
