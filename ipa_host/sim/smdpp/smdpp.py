"""A simulated SGP.22 SM-DP+ for tests and demos: ES9+ JSON over HTTPS, real BPP crypto.

    with SmdpServer("smdp/", "pki/").start() as dp:     # pki/ holds the test CI (pki.py)
        dp.add_profile("MATCH-1", "89000123456789012341", "Test profile", size=100_000, cc="1234")
        dp.url         # https://127.0.0.1:<port>
        dp.address     # "127.0.0.1:<port>" - serverAddress / the activation code's SM-DP+ address
        dp.tls_ca_der  # trust anchor for the client (the CI, which issued CERT.DP.TLS)
        dp.events, dp.notifications, dp.requests
        dp.notifications_path  # DIR/notifications.jsonl: each notification and its verdict

Layers: smdpp_es9.py (the five ES9+ functions, sessions, profiles,
signatures, BPP building with bsp.py), smdpp_http.py (HTTPS, JSON),
pki_smdp.py (DPauth / DPpb / TLS certificates under the CI),
profile_package.py (the profile and its metadata).

CLI (the lead wires it as `ipa-sim smdpp`):

    smdpp serve --dir DIR --pki PKI [--port P] [--profile MATCHING_ID=ICCID[:SIZE[:CC]]] [--ppk]
                [--smds ADDRESS --eid EID]   (each profile announced at the SM-DS for EID)
                [--session-timeout S]        (an abandoned session ends, its order released)
"""

import argparse
import collections
import json
import logging
import os
import signal
import sys
import threading
import time

from ipa_host.sim import pki
from ipa_host.sim.smdpp import pki_smdp, smdpp_es12
from ipa_host.sim.eim import eim_tls
from ipa_host.sim.eim.eim_http import Server
from ipa_host.sim.eim.eim_state import _write_atomic, read_config
from ipa_host.sim.smdpp.smdpp_es9 import SESSION_TTL, Es9Service
from ipa_host.sim.smdpp.smdpp_http import Es9Handler

log = logging.getLogger("ipa_host.sim.smdpp.smdpp")
NOTIFICATIONS_LOG = "notifications.jsonl"


class RspServer:
    """An RSP server simulator over HTTPS (the life cycle, TLS, addresses and records shared
    by the SM-DP+ below and the SM-DS, ipa_host.sim.smds): certificates for ROLES (the TLS
    role last) in `folder`, issued by the CI of pki_dir; HANDLER serves, _service() makes
    the transport-free service it calls."""

    HANDLER = None
    ROLES = ()
    NAME = None
    tls_tickets = 0  # TLS 1.3 session tickets per connection (eim_tls.server_context)

    def __init__(self, folder, pki_dir, host="127.0.0.1", port=0, tls_names=(),
                 idle_timeout=30.0, oid=None):
        self.folder = str(folder)
        self.pki_dir = str(pki_dir)
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        names = [host] + [n for n in tls_names if n != host]
        pki_smdp.create_smdp_pki(self.folder, self.pki_dir, smdp_oid=oid, names=names,
                                 roles=self.ROLES)
        self.material = pki_smdp.load_smdp_pki(self.folder, self.pki_dir, roles=self.ROLES)
        self.service = None
        self.requests = collections.deque(maxlen=1000)
        self.faults = {}  # function -> fault(body) -> (body, cut): broken answers (smdpp_http)
        self.handshake_failures = collections.deque(maxlen=100)
        self._server = None
        self._thread = None
        self._lock = threading.Lock()

    # ---- life cycle --------------------------------------------------------------------

    def start(self):
        if self._server is not None:
            return self
        tls = self.ROLES[-1]
        # the IPA's ES9+ client does not resume (ipa_host.runner): no session tickets
        ctx = eim_tls.server_context(self.material[tls + "_crt_path"],
                                     self.material[tls + "_key_path"], self.tls_tickets)
        self._server = Server((self.host, self.port), self.HANDLER, self, ctx, self.idle_timeout)
        self.port = self._server.server_address[1]
        if self.service is None:  # a restart (stop, start) keeps its state: profiles, sessions
            self.service = self._service()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="%s-%d" % (self.NAME, self.port), daemon=True)
        self._thread.start()
        log.info("%s serving at %s (serverAddress %s)", self.HANDLER.PEER, self.url, self.address)
        return self

    def _service(self):
        raise NotImplementedError

    def stop(self):
        if self._server is None:
            return
        self._server.shutdown()
        self._server.drop_connections()
        self._server.server_close()
        self._thread.join(5)
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- addresses, trust, records ---------------------------------------------------------

    @property
    def address(self):
        """host:port as serverAddress / smdpAddress / smdsAddress carry it."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s:%d" % (host, self.port)

    @property
    def url(self):
        return "https://" + self.address

    @property
    def tls_ca_der(self):
        """DER of the certificate that issued the TLS certificate (the test CI)."""
        return pki.certificate_der(self.material["ci_cert"])

    @property
    def tls_ca_path(self):
        return os.path.join(self.pki_dir, "ci.crt")

    @property
    def events(self):
        """One dict per function call: function, status, error name, transactionId, ..."""
        return list(self.service.events) if self.service else []

    def record(self, rec):
        with self._lock:
            self.requests.append(rec)
        log.debug("%s %s -> %s %s", self.HANDLER.PEER, rec["function"] or rec["path"],
                  rec["status"], rec["error"] or "")

    def note_handshake_failure(self, client_address, err):
        self.handshake_failures.append({"time": time.time(), "peer": "%s:%s" % client_address[:2],
                                        "error": repr(err)})
        log.info("%s TLS handshake with %s failed: %s", self.HANDLER.PEER, client_address, err)


class SmdpServer(RspServer):
    """The SM-DP+ simulator: folder for its certificates, the CI from pki_dir.

    smds_address: an SM-DS (host:port, trusted through the same CI) where register_event
    announces a profile for an EID with ES12.RegisterEvent and where the event is deleted
    (ES12.DeleteEvent) once that profile's bound package was handed out."""

    HANDLER = Es9Handler
    ROLES = pki_smdp.NAMES
    NAME = "smdpp"

    def __init__(self, folder, pki_dir, host="127.0.0.1", port=0, use_ppk=False, tls_names=(),
                 idle_timeout=30.0, smdp_oid=pki_smdp.DEFAULT_OID, smds_address=None,
                 session_timeout=SESSION_TTL, sgp32=None):
        super().__init__(folder, pki_dir, host=host, port=port, tls_names=tls_names,
                         idle_timeout=idle_timeout, oid=smdp_oid)
        self.sgp32 = _kept_version(self.folder, sgp32)
        self.use_ppk = use_ppk
        self._session_timeout = float(session_timeout)  # an abandoned ES9+ session ends after it
        self.smds_address = smds_address
        self.es12 = collections.deque(maxlen=1000)  # ES12 calls to the SM-DS and their outcome
        self._pending = []

    def _service(self):
        svc = Es9Service(self.material, self.address, use_ppk=self.use_ppk,
                         session_timeout=self._session_timeout, sgp32=self.sgp32,
                         on_notification=self._log_notification)
        svc.on_bound = self._bound
        for args, kw in self._pending:
            svc.add_profile(*args, **kw)
        return svc

    # ---- profiles -------------------------------------------------------------------------------

    @property
    def smdp_oid(self):
        return self.material["smdp_oid"]

    def add_profile(self, matching_id, iccid, name, size=4096, cc=None, **kw):
        """Offer a profile under `matching_id` (see Es9Service.add_profile for the options)."""
        if self.service is None:
            self._pending.append(((matching_id, iccid, name), dict(kw, size=size, cc=cc)))
            return None
        return self.service.add_profile(matching_id, iccid, name, size=size, cc=cc, **kw)

    def profile(self, matching_id):
        return self.service.profiles.get(matching_id) if self.service else None

    @property
    def notifications(self):
        return list(self.service.notifications) if self.service else []

    @property
    def session_timeout(self):
        """Seconds after which an abandoned session ends and its order is released; settable
        while running (an operator shortening it; the next request applies it)."""
        return self._session_timeout

    @session_timeout.setter
    def session_timeout(self, seconds):
        self._session_timeout = float(seconds)
        if self.service is not None:
            with self.service.lock:
                self.service.session_timeout = self._session_timeout

    @property
    def expired(self):
        """Sessions that held an order and were ended by session_timeout (the order went back
        to released): transactionId, matchingId, state, time."""
        with self.service.lock:
            self.service._expire()  # expiry runs on each request; a reader sees it now
            return list(self.service.expired)

    @property
    def notifications_path(self):
        """<folder>/notifications.jsonl: one JSON line per notification received, with the
        verdict on its signature - what a test of `ipa-sim smdpp serve` reads."""
        return os.path.join(self.folder, NOTIFICATIONS_LOG)

    def _log_notification(self, rec):
        line = {k: (v.hex().upper() if isinstance(v, bytes) else v) for k, v in rec.items()}
        with open(self.notifications_path, "a") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")

    # ---- events at the SM-DS (ES12) -------------------------------------------------------------

    def register_event(self, matching_id, eid=None):
        """ES12.RegisterEvent at smds_address: eventId = the profile's matchingId (what the
        eUICC then presents as matchingId), for `eid` or the profile's EID. Raises
        ValueError when the SM-DS refuses or cannot be reached."""
        p = self.profile(matching_id) if self.service else None
        if p is None:
            raise ValueError("register_event: no profile %r (start the server first)" % matching_id)
        eid = eid or p["eid"]
        if not eid:
            raise ValueError("register_event: profile %r has no EID, give one" % matching_id)
        self._es12("registerEvent", {"eid": eid, "rspServerAddress": self.address,
                                     "eventId": matching_id})
        p["event"] = {"eid": eid, "eventId": matching_id}

    def _bound(self, profile):
        """The bound package of `profile` went out: its event at the SM-DS has served."""
        ev = profile.pop("event", None)
        if ev is not None:
            try:
                self._es12("deleteEvent", ev)
            except ValueError as e:
                log.warning("ES12.DeleteEvent: %s", e)

    def _es12(self, function, obj):
        if not self.smds_address:
            raise ValueError("ES12.%s: no SM-DS address configured" % function)
        rec = {"time": time.time(), "function": function, "request": dict(obj), "ok": False}
        self.es12.append(rec)
        try:
            status, answer = smdpp_es12.call(self.smds_address, self.tls_ca_path, function, obj)
        except (OSError, ValueError) as e:
            rec["error"] = str(e)
            raise ValueError("ES12.%s at %s: %s" % (function, self.smds_address, e))
        rec["status"] = answer
        if status != 200 or answer != "Executed-Success":
            rec["error"] = "HTTP %s, %s" % (status, answer)
            raise ValueError("ES12.%s at %s: %s" % (function, self.smds_address, rec["error"]))
        rec["ok"] = True



def _profile_arg(text):
    """MATCHING_ID=ICCID[:SIZE[:CC]]"""
    if "=" not in text:
        raise argparse.ArgumentTypeError("expected MATCHING_ID=ICCID[:SIZE[:CC]], got %r" % text)
    mid, rest = text.split("=", 1)
    bits = rest.split(":")
    try:
        size = int(bits[1]) if len(bits) > 1 and bits[1] else 4096
    except ValueError:
        raise argparse.ArgumentTypeError("SIZE must be a number of bytes, got %r" % bits[1])
    return mid, bits[0], size, (bits[2] if len(bits) > 2 and bits[2] else None)


def serve_parser(name, peer, interfaces, port):
    """(parser, its `serve` subparser) with --dir, --pki, --host, --port: `ipa-sim <name>`."""
    ap = argparse.ArgumentParser(prog="ipa-sim " + name,
                                 description="simulated %s (%s over HTTPS)" % (peer, interfaces))
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve %s until interrupted" % interfaces)
    s.add_argument("--dir", required=True, help="folder for the %s certificates" % peer)
    s.add_argument("--pki", required=True, help="test PKI folder holding ci.crt and ci.key")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=port)
    return ap, s


def smdpp_main(argv=None):
    """`ipa-sim smdpp serve --dir DIR --pki PKI [--host H] [--port P] [--profile ...] [--ppk]
    [--sgp32 V]`."""
    ap, s = serve_parser("smdpp", "SM-DP+", "ES9+", 8443)
    s.add_argument("--profile", action="append", type=_profile_arg, default=[],
                   help="offer a profile: MATCHING_ID=ICCID[:SIZE[:CC]] (repeatable)")
    s.add_argument("--ppk", action="store_true", help="protect the profile with ReplaceSessionKeys (PPK)")
    s.add_argument("--smds", metavar="ADDRESS", help="register an event for each --profile at this "
                   "SM-DS (ES12.RegisterEvent; its TLS certificate must chain to the CI of --pki)")
    s.add_argument("--eid", help="the EID the profiles and their SM-DS events are for (with --smds)")
    s.add_argument("--session-timeout", type=float, default=SESSION_TTL, metavar="S",
                   help="end a download session abandoned for S seconds and release its order "
                        "(default %d)" % SESSION_TTL)
    s.add_argument("--sgp32", choices=("1.0", "1.1", "1.2"),
                   help="SGP.32 version of the eUICCs served (default: the one kept in "
                        "DIR/config.json, else 1.2): recorded against each eUICC's iotVersion")
    s.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if bool(args.smds) != bool(args.eid):
        ap.error("--smds and --eid go together")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        if not args.session_timeout > 0:
            raise ValueError("--session-timeout: expected seconds > 0, got %s" % args.session_timeout)
        dp = SmdpServer(args.dir, args.pki, host=args.host, port=args.port, use_ppk=args.ppk,
                        smds_address=args.smds, session_timeout=args.session_timeout,
                        sgp32=args.sgp32).start()
        for mid, iccid, size, cc in args.profile:
            dp.add_profile(mid, iccid, "Test profile " + mid, size=size, cc=cc, eid=args.eid)
            if args.smds:
                dp.register_event(mid)
    except (OSError, ValueError) as e:
        print("ipa-sim smdpp: %s" % e, file=sys.stderr)
        return 2
    print("SM-DP+ at %s  address %s  TLS trust anchor %s" % (dp.url, dp.address, dp.tls_ca_path))
    for mid, _iccid, _size, cc in args.profile:
        print("activation code: LPA:1$%s$%s%s" % (dp.address, mid, "$$1" if cc else ""))
        if args.smds:
            print("event %s for EID %s registered at the SM-DS %s" % (mid, args.eid, args.smds))
    print("notifications received (and their signature check): %s" % dp.notifications_path)
    sys.stdout.flush()
    serve_until_signalled(dp)
    return 0


def _kept_version(folder, sgp32):
    """The SGP.32 version served: `sgp32`, else the one kept in folder/config.json, else 1.2;
    kept there for the next start."""
    path = os.path.join(folder, "config.json")
    cfg = read_config(path)
    version = sgp32 or cfg.get("sgp32") or "1.2"
    if version not in ("1.0", "1.1", "1.2"):
        raise ValueError("SGP.32 version must be 1.0, 1.1 or 1.2, got %r" % (version,))
    if cfg.get("sgp32") != version:
        os.makedirs(folder, exist_ok=True)
        cfg["sgp32"] = version
        _write_atomic(path, json.dumps(cfg).encode())
    return version


def serve_until_signalled(server):
    """Keep a started server up until SIGTERM or Ctrl-C, then stop it (the `serve` commands)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    server.stop()


if __name__ == "__main__":
    sys.exit(smdpp_main())
