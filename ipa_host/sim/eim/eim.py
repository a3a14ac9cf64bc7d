"""A simulated eIM (SGP.32 v1.2) for tests, the demo and benches: ESipa over HTTPS + operator API.

    with EimServer("bench/eim", "bench/pki") as eim:       # TLS files made in bench/eim/tls
        eim.queue_psmo(eid, [{"op": "enable", "iccid": "8944...", "rollback": True}])
        ipa = HttpsNetwork(eim.url, trust=eim.tls_ca_cert_der)   # what the IPA does
        ...
        eim.results(eid), eim.notifications(eid), eim.requests

The eIM signs eUICC Packages with the eIM key of the PKI folder
(`pki_dir`/eim.key, see ipa_host.sim.pki) as `eim_id` (default the demo eIM
"ipa-demo-eim" of ipa_host.sim.home), keeps a per-EID queue, counter and
record in `folder`/eids (ipa_host.sim.eim.eim_state), and answers ESipa at
`url` (ipa_host.sim.eim.eim_http, eim_esipa, eim_json, eim_codec). The eUICC of
`pki_dir` (euicc.crt, its EID in the subject serialNumber) is known from the
start, with its certificate for checking euiccSignEPR; other eUICCs become
known with `register_eid` or when something is queued for them.

associationToken: the eIM signs over `84 <token>` (`84 01 00` with none,
SGP.32 2.11.1.2, see pki.eim_signed_bytes). It must be the token the eUICC
holds for this eIM: `association_token=` sets it for the PKI's eUICC,
`register_eid(eid, association_token=...)` for any. (The demo eUICC of
ipa_host.sim.home generates token 1 on a fresh state.)

The command line (`ipa-sim eim ...`) is in ipa_host.sim.eim.eim_cli.
"""

import collections
import json
import os
import threading
import time

from ipa_host.sim import pki
from ipa_host.sim.eim import eim_tls
from ipa_host.sim.eim.eim_esipa import EsipaService, cert_der
from ipa_host.sim.eim.eim_http import ApiHandler, EsipaHandler, Server, log
from ipa_host.sim.eim.eim_relay import SmdpRelay
from ipa_host.sim.eim.eim_state import Store, _write_atomic, check_eid, read_config

MAX_REQUESTS = 10000
_UNSET = object()


class EimServer:
    """The simulated eIM; see the module docstring.

    folder      state, TLS files, config.json, server.json (created)
    pki_dir     PKI folder with eim.key (and eim.crt, euicc.crt); None: the one of the
                last start (config.json), else `folder`/pki, created as a fresh test PKI
    eim_id, version   None: those of the last start, else "ipa-demo-eim" and "1.2"
    host, port  ESipa listener (port 0: any free port); api_port: operator API on
                the same loopback host (None: no API)
    tls         False: plain HTTP (lab only: nothing authenticates the eIM)
    coap_port   None: no CoAP listener; else ESipa over CoAP on that UDP port (0: any free
                one) of `host`, over DTLS with the same TLS certificate when `tls`
                (ipa_host.sim.eim.eim_coap); `coap_url` is its address
    smdp_ca_file  PEM CA bundle the eIM trusts for the SM-DP+'s TLS when it relays an
                indirect profile download (ipa_host.sim.eim.eim_relay; None: system CAs);
                smdp_timeout bounds each of its network waits
    """

    def __init__(self, folder, pki_dir=None, host="127.0.0.1", port=0, api_port=0, tls=True,
                 eim_id=None, version=None, association_token=_UNSET, tls_names=(),
                 idle_timeout=30.0, coap_port=None, smdp_ca_file=None, smdp_timeout=30,
                 tls_tickets=eim_tls.SESSION_TICKETS):
        self.folder = os.path.abspath(folder)
        os.makedirs(self.folder, exist_ok=True)
        cfg_path = os.path.join(self.folder, "config.json")
        cfg = read_config(cfg_path)
        if not (eim_id or cfg.get("eim_id")):
            from ipa_host.sim.home import DEMO_EIM_ID  # the demo's eIM (imported only here)
            eim_id = DEMO_EIM_ID
        eim_id = eim_id or cfg.get("eim_id")
        version = version or cfg.get("version") or "1.2"
        if pki_dir is None:
            pki_dir = cfg.get("pki") or os.path.join(self.folder, "pki")
            if not os.path.exists(os.path.join(pki_dir, "eim.key")):
                pki.create_test_pki(pki_dir)
        self.pki_dir = os.path.abspath(pki_dir)
        material = pki.load_pki(self.pki_dir)
        if "eim_key" not in material:
            raise FileNotFoundError("%s: no eim.key (the eIM signing key); create a test PKI "
                                    "with `ipa-sim pki create %s`" % (self.pki_dir, self.pki_dir))
        self.eim_key = material["eim_key"]
        self.eim_cert = material.get("eim_cert")
        if self.eim_cert is not None and (pki.public_key_bytes(self.eim_cert)
                                          != pki.public_key_bytes(self.eim_key)):
            raise ValueError("%s: eim.key does not belong to eim.crt" % self.pki_dir)
        self.eim_id = eim_id
        self.version = version
        if cfg != {"eim_id": eim_id, "version": version, "pki": self.pki_dir}:
            _write_atomic(cfg_path, json.dumps({"eim_id": eim_id, "version": version,
                                                "pki": self.pki_dir}, indent=1).encode())
        self.host = host
        self.port = port
        self.api_port = api_port
        self.tls = tls
        self.tls_tickets = tls_tickets  # the IPA resumes (ipa_host.net.https): one ticket
        self.idle_timeout = idle_timeout
        self.coap_port = coap_port
        self._coap = None
        self.store = Store(self.folder)
        self.service = EsipaService(self.store, eim_id, self.eim_key, version)
        if smdp_ca_file is not None and not os.path.isfile(smdp_ca_file):
            raise FileNotFoundError("smdp_ca_file %s: no such file (the PEM CA of the SM-DP+'s"
                                    " TLS certificate)" % smdp_ca_file)
        self.smdp_ca_file = smdp_ca_file
        self.relay = SmdpRelay(ca_file=smdp_ca_file, timeout=smdp_timeout)
        self.service.relay = self.relay
        self._requests = collections.deque(maxlen=MAX_REQUESTS)
        self._req_lock = threading.Lock()
        self._req_seq = 0
        self.handshake_failures = collections.deque(maxlen=100)
        self._servers = []
        self._threads = []
        self.tls_files = eim_tls.ensure_tls(self.folder, tls_names) if tls else None
        euicc_cert = material.get("euicc_cert")
        if euicc_cert is not None:
            eid = pki.eid_of(euicc_cert)
            if eid and len(eid) == 32 and eid.isdigit():
                kw = {}
                if association_token is not _UNSET:
                    kw = {"association_token": association_token, "set_token": True}
                self.service.register(eid, euicc_cert=euicc_cert, **kw)
                self.pki_eid = eid
        if not hasattr(self, "pki_eid"):
            self.pki_eid = None

    @property
    def tls_handshakes(self):
        """{"full": n, "resumed": n}: TLS handshakes on the ESipa listener (session resumption,
        ipa_host.net.https)."""
        return dict(self._servers[0].tls_handshakes) if self._servers else {}

    # ---- life cycle ------------------------------------------------------------------------

    def start(self):
        """Listen and serve in background threads; returns self."""
        if self._servers:
            return self
        ctx = None
        if self.tls:
            ctx = eim_tls.server_context(self.tls_files["server_cert"],
                                         self.tls_files["server_key"], self.tls_tickets)
        esipa = Server((self.host, self.port), EsipaHandler, self, ctx, self.idle_timeout)
        self._servers.append(esipa)
        if self.api_port is not None:
            try:
                api = Server((self.host, self.api_port), ApiHandler, self, None, self.idle_timeout)
            except OSError:
                esipa.server_close()
                self._servers = []
                raise
            self._servers.append(api)
        for s in self._servers:
            t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1},
                                 name="eim-%d" % s.server_address[1], daemon=True)
            t.start()
            self._threads.append(t)
        self.port = esipa.server_address[1]
        if self.coap_port is not None:
            try:
                self._start_coap()
            except BaseException:
                self.stop()
                raise
        if self.api_port is not None:
            self.api_port = self._servers[1].server_address[1]
        self._write_info()
        log.info("eIM %s serving ESipa at %s, operator API at %s", self.eim_id, self.url,
                 self.api_url)
        return self

    def _start_coap(self):
        from ipa_host.sim.eim.eim_coap import CoapEndpoint

        files = self.tls_files or {}
        self._coap = CoapEndpoint(self, self.host, self.coap_port,
                                  cert_file=files.get("server_cert"),
                                  key_file=files.get("server_key")).start()
        self.coap_port = self._coap.port
        log.info("eIM %s serving ESipa over CoAP at %s", self.eim_id, self.coap_url)

    def stop(self):
        """Stop listening and drop open connections (state is already on disk)."""
        if self._coap is not None:
            self._coap.stop()
            self._coap = None
        for s in self._servers:
            s.shutdown()
            s.drop_connections()
            s.server_close()
        for t in self._threads:
            t.join(5)
        self._servers = []
        self._threads = []
        self.relay.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _write_info(self):
        info = {"url": self.url, "api_url": self.api_url, "coap_url": self.coap_url, "eim_id": self.eim_id,
                "pki": self.pki_dir, "tls_ca_cert": self.tls_files["ca_cert"] if self.tls else None,
                "pid": os.getpid(), "started": time.time()}
        _write_atomic(os.path.join(self.folder, "server.json"),
                      json.dumps(info, indent=1).encode())

    # ---- addresses and trust ---------------------------------------------------------------

    def _base(self, scheme, port):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d" % (scheme, host, port)

    @property
    def url(self):
        """Base URL of ESipa (append /gsma/rsp2/asn1 or /gsma/rsp2/esipa/<function>)."""
        return self._base("https" if self.tls else "http", self.port)

    @property
    def coap_url(self):
        """coaps://host:port (coap:// without TLS) of the CoAP listener, None without one."""
        if self.coap_port is None:
            return None
        return self._base("coaps" if self.tls else "coap", self.coap_port)

    @property
    def api_url(self):
        return self._base("http", self.api_port) if self.api_port is not None else None

    @property
    def fqdn(self):
        """host:port as eimFqdn would carry it."""
        return self.url.split("://", 1)[1]

    @property
    def tls_ca_cert_der(self):
        """The TLS CA certificate (DER): trustedPublicKeyDataTls for the IPA."""
        return self.tls_files["ca_der"] if self.tls else None

    @property
    def tls_server_cert_der(self):
        return self.tls_files["server_der"] if self.tls else None

    # ---- queueing --------------------------------------------------------------------------

    def register_eid(self, eid, association_token=_UNSET, counter=None, euicc_cert=None):
        """Make `eid` known; set its associationToken (None: no token), last counterValue
        and eUICC certificate when given. Returns the record summary."""
        kw = {}
        if association_token is not _UNSET:
            kw = {"association_token": association_token, "set_token": True}
        self.service.register(eid, counter=counter, euicc_cert=euicc_cert, **kw)
        return self.eid_view(eid, None)

    def register_eid_json(self, eid, params):
        known = {"associationToken", "counter", "euiccCertificate"}
        extra = sorted(set(params) - known)
        if extra:
            raise ValueError("unknown field(s) %s (known: %s)" % (", ".join(extra),
                                                                 ", ".join(sorted(known))))
        kw = {}
        if "associationToken" in params:
            kw["association_token"] = params["associationToken"]
        return self.register_eid(eid, counter=params.get("counter"),
                                 euicc_cert=params.get("euiccCertificate"), **kw)

    def queue_psmo(self, eid, ops, transaction_id=None):
        """Queue an EuiccPackageRequest with PSMOs (signer operation dicts)."""
        return self.service.queue(eid, "psmo", {"ops": list(ops)}, transaction_id)

    def queue_eco(self, eid, ops, transaction_id=None):
        """Queue an EuiccPackageRequest with eCOs (addEim, deleteEim, updateEim, listEim)."""
        return self.service.queue(eid, "eco", {"ops": list(ops)}, transaction_id)

    def queue_data_request(self, eid, tags, transaction_id=None, **criteria):
        """Queue an IpaEuiccDataRequest; tags as hex ('80A2', '80,A2') or a list.

        criteria: euiccCiPKId, notificationSeqNumber, notificationEvents, resultSeqNumber.
        """
        params = dict(criteria)
        params["tagList"] = tags
        return self.service.queue(eid, "ipaEuiccDataRequest", params, transaction_id)

    def queue_download_trigger(self, eid, activation_code=None, contact_default_smdp=False,
                               contact_smds=None, transaction_id=None):
        """Queue a ProfileDownloadTriggerRequest (activation code sent as given)."""
        params = {}
        if activation_code is not None:
            params["activationCode"] = activation_code
        if contact_default_smdp:
            params["contactDefaultSmdp"] = True
        if contact_smds not in (None, False):
            params["contactSmds"] = contact_smds
        return self.service.queue(eid, "profileDownloadTrigger", params, transaction_id)

    def clear_queue(self, eid):
        with self.store.lock:
            rec = self._rec(eid)
            dropped = rec["queue"]
            rec["queue"] = []
            self.store.save(eid)
            return {"dropped": len(dropped)}

    # ---- views -----------------------------------------------------------------------------

    def _rec(self, eid):
        check_eid(eid)
        rec = self.store.get(eid)
        if rec is None:
            raise KeyError(eid)
        return rec

    def _copy(self, eid, key):
        import copy
        with self.store.lock:
            try:
                return copy.deepcopy(self._rec(eid)[key])
            except KeyError:
                return []

    def results(self, eid):
        """EimPackageResults received for `eid` (oldest first; [] for an unknown EID)."""
        return self._copy(eid, "results")

    def notifications(self, eid):
        return self._copy(eid, "notifications")

    def queue(self, eid):
        return self._copy(eid, "queue")

    def delivered(self, eid):
        return self._copy(eid, "delivered")

    def acknowledged(self, eid):
        return self._copy(eid, "acknowledged")

    def counter(self, eid):
        """The last counterValue used for `eid` (0 before the first package)."""
        with self.store.lock:
            return self._rec(eid)["counter"]

    def eids(self):
        return self.store.eids()

    def unattributed(self):
        with self.store.lock:
            return list(self.store.unattributed)

    def eid_view(self, eid, what):
        """The operator API's GET /eids/<eid>[/what]."""
        from ipa_host.sim.eim.eim_http import HttpError
        try:
            check_eid(eid)
        except ValueError as e:
            raise HttpError(400, str(e))
        with self.store.lock:
            rec = self.store.get(eid)
            if rec is None:
                raise HttpError(404, "EID %s is not known to this eIM" % eid)
            if what is None:
                return {"eid": eid, "eimId": self.eim_id, "counter": rec["counter"],
                        "associationToken": rec["association_token"],
                        "euiccCertificate": bool(rec["euicc_cert"]),
                        "queued": len(rec["queue"]), "delivered": len(rec["delivered"]),
                        "results": len(rec["results"]),
                        "notifications": len(rec["notifications"]),
                        "polls": rec["polls"], "lastPoll": rec["last_poll"],
                        "stateChanges": rec["state_changes"][-10:]}
            if what == "log":
                return self.requests_json(eid=eid)
            if what not in ("results", "notifications", "queue", "delivered", "acknowledged"):
                raise HttpError(404, "GET /eids/<eid>/%s: expected results, notifications, queue,"
                                " delivered, acknowledged or log" % what)
            return rec[what]

    # ---- the request record ----------------------------------------------------------------

    def record(self, entry):
        with self._req_lock:
            self._req_seq += 1
            entry["seq"] = self._req_seq
            self._requests.append(entry)
        log.info("ESipa %s %s %s -> %s%s", entry["binding"] or "-", entry["function"] or "-",
                 entry["eid"] or "-", entry["status"],
                 (": " + entry["error"]) if entry["error"] else "")

    @property
    def requests(self):
        """Every ESipa request so far (oldest first): dicts with time, seq, conn, peer, path,
        binding, function, eid, status, request (bytes), response (bytes), note, error."""
        with self._req_lock:
            return [dict(r) for r in self._requests]

    def requests_json(self, eid=None):
        out = []
        for r in self.requests:
            if eid is not None and r["eid"] != eid:
                continue
            r["request"] = r["request"].hex().upper()
            r["response"] = r["response"].hex().upper()
            out.append(r)
        return out

    def note_handshake_failure(self, peer, error):
        self.handshake_failures.append((time.time(), "%s:%s" % peer[:2], str(error)))
        log.info("eIM TLS handshake with %s:%s failed: %s", peer[0], peer[1], error)


def eim_main(argv=None):
    """`ipa-sim eim ...` (see ipa_host.sim.eim.eim_cli)."""
    from ipa_host.sim.eim.eim_cli import eim_main as main
    return main(argv)


__all__ = ["EimServer", "eim_main", "cert_der"]

if __name__ == "__main__":
    import sys
    sys.exit(eim_main())
