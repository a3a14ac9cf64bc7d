"""The IPA procedures (SGP.32 v1.2 IPAd): poll the eIM, run what it sends, report, deliver
notifications - with every step written to a Store first, so a restart at any point
resumes and nothing the eIM must get is lost (design.md, "Nothing is lost").

    ipa = Ipa(session, network, store, config={"binding": "asn1"})
    while True:
        r = ipa.poll_once()                    # one cycle, a summary dict
        sleep_ms(ipa.next_poll_delay_ms(r))

Peers (no I/O here):
- session: the ES10 channel (`store_data(request) -> response`, an
  ipa_core.apdu.IsdrSession); `version` attribute as ipa_core.version reads it;
- network: `post(path, body, content_type, headers=None) -> (status, body)`
  bound to the eIM's base URL (HTTPS or CoAP: the host builds it, see
  choose_eim); binding "asn1" posts every message to /gsma/rsp2/asn1
  (application/x-gsma-rsp-asn1), "json" to /gsma/rsp2/esipa/<function>;
  optional `post_stream(...) -> (status, reader)` (ipa_core.stream): the
  bound profile package of an indirect download is then read from the
  network one STORE DATA segment at a time (the heap stays flat);
- store: the Store interface (ipa_core.ipa_store: keys and record shapes);
- connectivity: `wait_connected(timeout_ms) -> bool` (after a profile
  switch the device re-attaches), optional `refresh()` (called once the
  enabled profile changed, before waiting) and `ecall_active() -> bool`;
  default: always connected, never in an eCall;
- smdp_network: optional `smdp_network(address) -> network` (a network object
  as above bound to https://<address>, with the SM-DP+ trust): notifications
  addressed to an SM-DP+ go there (ES9+.HandleNotification); without it they
  go to the eIM, which relays them (ipa_core.ipa_notify);
- time_s: optional wall clock in seconds (default time.time()), for the
  SM-DP+ back-off kept in the store across restarts.

One cycle (poll_once), in this order:
0. cancel a profile download session a cut left open (ipa.download,
   ipa_core.ipa_cancel: ES10b.CancelSession, then the server's), before
   anything can touch the eUICC's RSP session; never fails the cycle;
1. finish removals of notifications the eIM already took (ipa.notified);
2. resume the procedure in the store, if any (ipa.job);
3. deliver pending notifications, each to its peer (the eIM: ESipa
   HandleNotification 'BF3D'; an SM-DP+: ES9+.HandleNotification, with
   back-off per SM-DP+), each removed from the eUICC only after that peer
   took it (ipa_core.ipa_notify);
4. ESipa.GetEimPackage, with notifyStateChange + stateChangeCause when a
   local change was flagged (set_state_change, or a rollback), and act:

   euiccPackageRequest: ES10b.LoadEuiccPackage -> if the enabled profile
   changed, wait for the network -> ES10b.RetrieveNotificationsList ->
   ProvideEimPackageResult (euiccPackageResult, or ePRAndNotifications)
   -> ES10b.RemoveNotificationFromList for each acknowledged seqNumber, and
   only those. Rollback: when an enable carried rollbackFlag and afterwards
   the network does not come back or the eIM cannot be reached (a
   TransportError), ES10b.ProfileRollback once, reconnect on the old
   profile, deliver the rollback's EuiccPackageResult instead.
   A LoadEuiccPackage that went out is never sent again while its result
   can be found: after a restart the IPA looks for it with
   RetrieveNotificationsList(euiccPackageResults). Only when none is stored
   (the package did not run, or ended in an error result, which the eUICC
   does not keep) is it sent again - harmless, as the eUICC's counterValue
   check answers replayError instead of running a package twice.
   ipaEuiccDataRequest: ipa_core.ipa_data.collect -> ProvideEimPackageResult.
   profileDownloadTriggerRequest: `ipa.download_handler(request)` (returns
   the ProfileDownloadTriggerResult 'BF54', bytes or a dict with "raw"), or,
   without one, a profileDownloadError undefinedError (not supported).
   An eIM package that does not decode: eimPackageResultResponseError
   invalidPackageFormat. eimPackageError noEimPackageAvailable: idle; other
   codes: EimError.

Failures: every IpaError ends the cycle with "error" in the summary (or is
raised with raise_errors=True); the procedure stays in the store and the
next cycle resumes it. A step the eUICC or the eIM keeps refusing is
bounded by config max_attempts; then the IPA reports an error result to the
eIM or, for delivery, stops trying (what the eUICC keeps stays there, for
the eIM to fetch with an ipaEuiccDataRequest). A card or an eIM that does
not answer (TransportError, HTTP 5xx) is retried without bound, with
back-off (next_poll_delay_ms).
"""

from ipa_core import es10, esipa, ipa_notify, ipa_steps, tlv
from ipa_core import version as ver
from ipa_core.compat import time
from ipa_core.errors import EimError, FunctionError, IpaError, ProtocolError, TransportError
from ipa_core.ipa_store import DOWNLOAD, JOB, NOTIFIED, STATE_CHANGE, MemoryStore  # noqa: F401

ASN1_PATH = "/gsma/rsp2/asn1"
ASN1_CONTENT_TYPE = "application/x-gsma-rsp-asn1"
ESIPA_HEADERS = {"X-Admin-Protocol": "gsma/rsp/v2.1.0", "User-Agent": "gsma-rsp-ipad"}

DEFAULTS = {
    "binding": "asn1",  # "asn1" or "json" (ESipa HTTPS bindings)
    "poll_interval_s": 60,  # first wait after an idle poll (noEimPackageAvailable)
    "max_interval_s": 3600,  # idle waits grow by backoff_factor up to this
    "backoff_factor": 2,
    "busy_interval_s": 1,  # wait after a cycle that did work: the eIM may have more
    "error_backoff_s": 30,  # first wait after a failed cycle, grows by backoff_factor
    "max_error_backoff_s": 1800,
    "connectivity_timeout_s": 180,  # wait for the network after a profile switch
    "refresh_flag": True,  # ProfileRollback refreshFlag: have the eUICC REFRESH the modem
    "rollback_cause": "undefined",  # stateChangeCause reported after a rollback
    "max_attempts": 5,  # tries of one step the eUICC / eIM refuses before giving up
    "max_notifications": 16,  # notifications per message / per delivery pass
    # Bytes of signed notifications one ProvideEimPackageResult carries at most; set, the
    # IPA also reads notifications one at a time (ipa_notify): a board's heap bound. None:
    # no bound, all read at once (fewer APDUs).
    "max_message_bytes": None,
    "esipa_version": None,  # SGP.32 version the eIM speaks; None: the session's
    "eim_id": None,  # the eIM polled (its associationToken goes into ipaEuiccData)
    "transports": ("https", "coaps"),  # what the host can build, preferred first
    "rplmn": None,  # 3 bytes or 6 hex digits for GetEimPackage rPLMN, or None
    "ipa_capabilities": {"ipaFeatures": [], "ipaSupportedProtocols": ["ipaRetrieveHttps"]},
    "device_info": None,  # {"tac": ..., "deviceCapabilities": {...}, "imei": ...}
    "max_package": 4 * 1024 * 1024,  # bytes of a bound profile package (streamed) at most
}

PACKAGE_KINDS = ("euiccPackageRequest", "ipaEuiccDataRequest", "profileDownloadTriggerRequest")
STEPS = {"load": ipa_steps.load, "connect": ipa_steps.connect, "rollback": ipa_steps.rollback,
         "collect": ipa_steps.collect, "download": ipa_steps.download,
         "deliver": ipa_steps.deliver, "remove": ipa_steps.remove}
MAX_STEPS = 16  # steps one procedure may take in one cycle (it has at most 8)
INVALID_PACKAGE_FORMAT = 1
NO_EIM_PACKAGE_AVAILABLE = 1


class HttpStatusError(ProtocolError):
    """The eIM answered an HTTP status other than 200/204 (it was reached: no rollback).

    `transient`: a 5xx (the server or a proxy in trouble), retried like an
    unreachable eIM, without bound; a 4xx counts towards max_attempts.
    """

    def __init__(self, function, status, body=None):
        self.status = status
        self.transient = isinstance(status, int) and status >= 500
        super().__init__("ESipa %s: the eIM answered HTTP %s, expected 200 or 204%s"
                         % (function, status, _reason(body)))


def _reason(body, limit=200):
    """': <first line>' of a plain-text error body (an eIM saying why it refused), else ''."""
    if not isinstance(body, (bytes, bytearray)) or not body:
        return ""
    try:
        text = bytes(body[:limit]).decode("utf-8").split("\n")[0].strip()
    except UnicodeError:
        return ""
    if not text or any(ord(ch) < 32 for ch in text):
        return ""
    return ": " + text


class AlwaysConnected:
    """Default connectivity: the network is always there (a fixed line, a test)."""

    def wait_connected(self, timeout_ms):
        return True


def error_info(e):
    """A JSON-able description of an exception for summaries."""
    out = {"type": e.__class__.__name__, "message": str(e)}
    if isinstance(e, FunctionError):
        out["function"] = e.function
        out["code"] = e.code
        out["name"] = e.name
    if isinstance(e, HttpStatusError):
        out["status"] = e.status
    return out


def _grow(base_s, factor, n, cap_s):
    d = float(base_s)
    for _ in range(min(n, 64) - 1):
        d *= factor
        if d >= cap_s:
            break
    return int(min(d, cap_s) * 1000)


class Ipa:
    """The IPAd: see the module docstring. `download_handler` may be set after creation."""

    def __init__(self, session, network, store, eid=None, config=None, connectivity=None,
                 clock_ms=None, log=None, smdp_network=None, time_s=None):
        cfg = dict(DEFAULTS)
        for k in config or {}:
            if k not in DEFAULTS:
                raise ValueError("unknown IPA setting %r, expected one of %s"
                                 % (k, ", ".join(sorted(DEFAULTS))))
            cfg[k] = config[k]
        if cfg["binding"] not in ("asn1", "json"):
            raise ValueError("binding %r: expected 'asn1' or 'json'" % (cfg["binding"],))
        mb = cfg["max_message_bytes"]
        if mb is not None and (isinstance(mb, bool) or not isinstance(mb, int) or mb < 0):
            raise ValueError("max_message_bytes %r: expected a number of bytes or None" % (mb,))
        self.config = cfg
        self.session = session
        self.network = network
        self.store = store
        self.eid = eid
        self.version = ver.norm(cfg["esipa_version"] or ver.of(session))
        self.connectivity = connectivity or AlwaysConnected()
        self.clock_ms = clock_ms
        self.log = log
        self.download_handler = None
        self.smdp_network = smdp_network
        self.time_s = time_s
        self.eim = None
        self._eim_fqdns = None
        self.eim_id = cfg["eim_id"]
        self.idle_count = 0
        self.error_count = 0
        self.last_error = None

    # ---- small helpers -------------------------------------------------------------

    def note(self, level, msg):
        """Log `msg` at `level` ("debug", "info", "warning", "error") through `log`."""
        if self.log is None:
            return
        f = getattr(self.log, level, None)  # a logging.Logger
        if f is not None:
            f(msg)
        else:
            self.log(level, msg)

    def now_s(self):
        """Wall-clock seconds (time_s, else time.time()): survives a restart, unlike clock_ms."""
        return self.time_s() if self.time_s is not None else time.time()

    def _eid(self):
        if self.eid is None:
            self.eid = es10.get_eid(self.session)
        return self.eid

    def _save(self, job):
        self.store.put(JOB, job)
        return job

    def ecall_active(self):
        """The device is in an emergency call (connectivity.ecall_active(), if it has one)."""
        f = getattr(self.connectivity, "ecall_active", None)
        return bool(f()) if f is not None else False

    # ---- ESipa exchange ---------------------------------------------------------------

    def _json(self):
        """ipa_core.esipa_json, imported only by a JSON-binding IPA (a board needs only ASN.1)."""
        if self.config["binding"] != "json":
            return None
        from ipa_core import esipa_json

        return esipa_json

    def _send(self, function, message, stream):
        """POST one ESipa message (bytes from ipa_core.esipa) with the binding's path, type and
        headers; the answer's body (bytes), or with `stream` a reader of it."""
        ej = self._json()
        if ej is not None:
            fn, body = ej.to_json(message, self.version)
            args = (ej.path(fn), body.encode("utf-8"), ej.CONTENT_TYPE, ESIPA_HEADERS)
        else:
            args = (ASN1_PATH, message, ASN1_CONTENT_TYPE, ESIPA_HEADERS)
        if stream:
            from ipa_core.stream import close_quietly, post_stream

            status, rbody = post_stream(self.network, *args)
            if status not in (200, 204):
                close_quietly(rbody)
        else:
            status, rbody = self.network.post(*args)
        if status not in (200, 204):
            raise HttpStatusError(function, status, None if stream else rbody)
        return rbody

    def _post(self, function, message):
        """Send one ESipa message (bytes from ipa_core.esipa); return the body of the answer."""
        return self._send(function, message, False)

    def _post_stream(self, function, message):
        """_post with the answer as a reader (ipa_core.stream contract), for the bound profile
        package: read or close it before the next exchange."""
        return self._send(function, message, True)

    def _decode(self, function, body):
        ej = self._json()
        if ej is not None:
            return ej.from_json(function, body)
        if function == "getEimPackage":
            return esipa.decode_get_eim_package_response(body)
        if function == "provideEimPackageResult":
            return esipa.decode_provide_eim_package_result_response(body)
        return None  # handleNotification: no body (HTTP 204)

    def exchange(self, function, message):
        """Post an ESipa message and decode the answer (None for handleNotification)."""
        body = self._post(function, message)
        try:
            return self._decode(function, body)
        except ProtocolError as e:
            raise self._undecodable(function, body, e)

    def _undecodable(self, function, body, e):
        """The error for an eIM answer that does not decode: it names the ESipa function, and
        the Content-Type when it is not the binding's (a proxy or captive portal answered)."""
        ej = self._json()
        want = ASN1_CONTENT_TYPE if ej is None else ej.CONTENT_TYPE
        got = (getattr(self.network, "response_headers", None) or {}).get("content-type")
        if got and got.split(";")[0].strip().lower() != want.split(";")[0].lower():
            return ProtocolError("ESipa %s: the eIM answered Content-Type %s, expected %s; "
                                 "its %d bytes do not decode: %s"
                                 % (function, got, want, len(body), e))
        return ProtocolError("ESipa %s: the eIM's answer (%d bytes) does not decode: %s"
                             % (function, len(body), e))

    # ---- public API ------------------------------------------------------------------

    def choose_eim(self, eim_id=None, url=None):
        """The eIM to poll, from ES10b.GetEimConfigurationData; sets self.eim / self.eim_id.

        Picks the entry with `eim_id` (else the first) that has an eimFqdn and
        a retrieve protocol the host can use (config transports; an entry
        without eimSupportedProtocol is taken as eimRetrieveHttps). With `url`
        (an address the user gave explicitly, e.g. a lab eIM), the entry is
        taken whatever its protocol bits say, its transport is the URL's
        scheme, and a warning says when the bits do not list it. Returns:

            eimId, eimFqdn       from the configuration data
            transport            "https" or "coaps" (the first of config transports it has)
            url                  "https://<eimFqdn>" / "coaps://<eimFqdn>": the base URL
            protocols            eimSupportedProtocol names
            trust                trustedPublicKeyDataTls as DER (a certificate, or a
                                 SubjectPublicKeyInfo to pin), or None: system CAs
            trustKind            "certificate" | "publicKey" | None
            associationToken, counterValue, eimIdType, euiccCiPKId,
            indirectProfileDownload, eimConfigurationData (the whole es10 dict)

        The host builds the network from it, e.g.
        HttpsNetwork(r["url"], trust=r["trust"]). No usable entry -> IpaError.
        """
        entries = es10.get_eim_configuration_data(self.session, eim_id)
        if eim_id is None:
            self._eim_fqdns = [e["eimFqdn"].lower() for e in entries if e.get("eimFqdn")]
        wanted = {"https": "eimRetrieveHttps", "coaps": "eimRetrieveCoaps"}
        for e in entries:
            if eim_id is not None and e.get("eimId") != eim_id:
                continue
            if not e.get("eimFqdn"):
                continue
            protos = e.get("eimSupportedProtocol")
            if protos is None:
                protos = ["eimRetrieveHttps"]
            transport = None
            for t in self.config["transports"]:
                if wanted.get(t) in protos:
                    transport = t
                    break
            if url is not None:
                given = "coaps" if url[:url.find(":") + 1] in ("coaps:", "coap:") else "https"
                if given != transport and wanted[given] not in protos:
                    self.note("warning", "eIM %s: its eimSupportedProtocol (%s) does not list %s;"
                              " using %s as given" % (e["eimId"], ",".join(protos) or "none",
                                                      wanted[given], url))
                transport = given
            if transport is None:
                continue
            trust = e.get("trustedPublicKeyDataTls") or {}
            kind = None
            der = trust.get("trustedCertificateTls")
            if der is not None:
                kind = "certificate"
            else:
                der = trust.get("trustedEimPkTls")
                if der is not None:
                    kind = "publicKey"
            out = {"eimId": e["eimId"], "eimFqdn": e["eimFqdn"], "transport": transport,
                   "url": url or "%s://%s" % (transport, e["eimFqdn"]), "protocols": protos,
                   "trust": der, "trustKind": kind,
                   "associationToken": e.get("associationToken"),
                   "counterValue": e.get("counterValue"), "eimIdType": e.get("eimIdType"),
                   "euiccCiPKId": e.get("euiccCiPKId"),
                   "indirectProfileDownload": e.get("indirectProfileDownload", False),
                   "eimConfigurationData": e}
            self.eim = out
            self.eim_id = e["eimId"]
            return out
        raise IpaError("no eIM%s with an eimFqdn and a retrieve protocol (%s) in the eIM "
                       "Configuration Data (%d entries)"
                       % ("" if eim_id is None else " " + eim_id,
                          "/".join(self.config["transports"]), len(entries)))

    def eim_addresses(self):
        """The eimFqdn of every eIM the eUICC knows, lower case (read once): a notification
        addressed to one of them is never sent to an SM-DP+."""
        if self._eim_fqdns is None:
            self._eim_fqdns = [e["eimFqdn"].lower() for e in
                               es10.get_eim_configuration_data(self.session) if e.get("eimFqdn")]
        return self._eim_fqdns

    def set_state_change(self, cause=None):
        """Flag a local change for the eIM: the next GetEimPackage carries notifyStateChange
        and stateChangeCause `cause` (int or name: otherEim 0, fallback 1, emergencyProfile 2,
        local 3, reset 4, immediateEnableProfile 5, deviceChange 6, undefined 127; None: no
        cause). Kept in the store until an eIM answer to that request came; a newer call
        replaces the cause."""
        n = None
        if cause is not None:
            n = esipa.STATE_CHANGE_CAUSE.get(cause, cause)
            if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 127:
                raise ValueError("stateChangeCause %r: expected 0..127 or one of %s"
                                 % (cause, ", ".join(esipa.STATE_CHANGE_CAUSE)))
        cur = self.store.get(STATE_CHANGE) or {}
        self.store.put(STATE_CHANGE, {"cause": n, "serial": cur.get("serial", 0) + 1})

    def poll_once(self, raise_errors=False):
        """One cycle (see the module docstring) -> a summary dict (JSON-able):

            idle              True when the eIM had nothing (noEimPackageAvailable)
            package           kind of the package received this cycle, or None
            eimTransactionId  its eimTransactionId (hex), or None
            resumed           {"kind", "step"} of a procedure found in the store, or None
            steps             the steps run, in order (e.g. "load", "deliver")
            result            the reported EuiccPackageResult ({kind, seqNumber,
                              operations [[op, code, name]], error?}), or None
            delivered         a ProvideEimPackageResult was taken by the eIM
            acknowledged      seqNumbers the eIM acknowledged; removed: those removed
            rolledBack        the result reported comes from a ProfileRollback
            abandoned         a procedure was given up (max_attempts), see the log
            stateChange       the stateChangeCause sent (True: flag without cause), or None
            notifications     ipa_notify.new_notes(): {"delivered", "removed", "failed",
                              "kept", "forSmdp"} seqNumbers and "peers" per destination
            error             None or {"type", "message", "code"?, "name"?, "status"?}
            idleCount / errorCount   consecutive idle / failed cycles (for back-off)
            elapsedMs         when clock_ms was given
        """
        t0 = self.clock_ms() if self.clock_ms else None
        out = {"idle": False, "package": None, "eimTransactionId": None, "resumed": None,
               "steps": [], "result": None, "delivered": False, "acknowledged": [],
               "removed": [], "rolledBack": False, "abandoned": False, "stateChange": None,
               "notifications": None, "error": None}
        failure = None
        try:
            out["recovered"] = self.recover_download()
            notes = ipa_notify.new_notes()
            out["notifications"] = notes
            ipa_notify.finish_removals(self, notes)
            job = self.store.get(JOB)
            if job is not None:
                out["resumed"] = {"kind": job.get("kind"), "step": job.get("step")}
                out["result"] = ipa_steps.stored_result_summary(job)
                out["rolledBack"] = bool(job.get("rolledBack"))
                self.note("info", "resuming %s at step %s"
                          % (job.get("kind"), job.get("step")))
                self._run(job, out)
            ipa_notify.deliver_all(self, notes)
            pkg = self._get_eim_package(out)
            if pkg is not None:
                self._start(pkg, out)
        except IpaError as e:
            failure = e
            out["error"] = error_info(e)
            self.last_error = e
            self.note("warning", "poll: %s" % e)
        if failure is not None:
            self.error_count += 1
            self.idle_count = 0
        elif out["idle"]:
            self.idle_count += 1
            self.error_count = 0
        else:
            self.idle_count = 0
            self.error_count = 0
        out["idleCount"] = self.idle_count
        out["errorCount"] = self.error_count
        if t0 is not None:
            out["elapsedMs"] = self.clock_ms() - t0
        if failure is not None and raise_errors:
            raise failure
        return out

    def process_notifications(self, force=True, only=None):
        """Deliver every pending notification to its peer - the eIM (ESipa.HandleNotification
        'BF3D') or the SM-DP+ it is addressed to (ES9+.HandleNotification) - and remove each
        from the eUICC only after that peer took it (HTTP 200/204); see ipa_core.ipa_notify.

        Returns ipa_notify.new_notes() filled: {"delivered", "removed", "failed", "kept",
        "forSmdp": [seqNumber...], "peers": {address: {...}}, "error"}. What a peer did
        not take stays for the next pass. `force` (default: a user asked) also tries the
        SM-DP+ that are backing off; `only`: just these seqNumbers (e.g. the PIR of the
        download that just ended).
        """
        notes = ipa_notify.new_notes()
        try:
            notes["recovered"] = self.recover_download()
            ipa_notify.finish_removals(self, notes)
            ipa_notify.deliver_all(self, notes, force=force, only=only)
        except IpaError as e:
            notes["error"] = error_info(e)
            self.note("warning", "notifications: %s" % e)
        return notes

    def recover_download(self, log=None):
        """Cancel the download session a cut left open, if one is recorded (ipa_core.ipa_cancel:
        its summary, or None). Runs before anything else may touch the eUICC's RSP session.
        log(level, msg): where its outcome goes (default: the Ipa's log)."""
        if self.store.get(DOWNLOAD) is None:
            return None
        from ipa_core import ipa_cancel

        return ipa_cancel.recover(self.session, self.store, self._cancel_transport,
                                  log or self.note)

    def _cancel_transport(self, rec):
        """The server side of a recorded session's cancel: this eIM (indirect), or the SM-DP+
        through the download handler's network_factory (direct)."""
        from ipa_core import ipa_download

        if rec.get("transport") == "indirect":
            return ipa_download.IndirectTransport(self)
        factory = getattr(self.download_handler, "network_factory", None)
        if factory is None:
            raise IpaError("cannot reach the SM-DP+ %s to cancel: no network_factory"
                           % rec.get("smdpAddress"))
        from ipa_core.ipa_direct import DirectTransport

        return DirectTransport(factory(rec.get("smdpAddress")))

    def next_poll_delay_ms(self, result):
        """Milliseconds to wait before the next poll_once, from its summary.

        failed cycle: error_backoff_s x backoff_factor^(errorCount-1), at most
        max_error_backoff_s; idle: poll_interval_s x backoff_factor^(idleCount-1),
        at most max_interval_s; work done: busy_interval_s.
        """
        c = self.config
        if result.get("error"):
            return _grow(c["error_backoff_s"], c["backoff_factor"], result.get("errorCount") or 1,
                         c["max_error_backoff_s"])
        if result.get("idle"):
            return _grow(c["poll_interval_s"], c["backoff_factor"], result.get("idleCount") or 1,
                         c["max_interval_s"])
        return int(c["busy_interval_s"] * 1000)

    # ---- GetEimPackage ------------------------------------------------------------------

    def _get_eim_package(self, out):
        sc = self.store.get(STATE_CHANGE)
        cause = None if sc is None else sc.get("cause")
        if sc is not None:
            out["stateChange"] = True if cause is None else cause
        eid = self._eid()
        msg = esipa.get_eim_package_request(eid, notify_state_change=sc is not None,
                                            state_change_cause=cause, rplmn=self.config["rplmn"],
                                            version=self.version)
        out["steps"].append("getEimPackage")
        body = self._post("getEimPackage", msg)
        try:
            pkg = self._decode("getEimPackage", body)
        except ProtocolError as e:
            if self._package_tag(body) is None:
                raise self._undecodable("getEimPackage", body, e)
            # A package we cannot read: tell the eIM so (eimPackageResultResponseError).
            self.note("warning", "eIM package refused as invalidPackageFormat: %s" % e)
            self._clear_state_change(sc)
            out["package"] = "invalid"
            job = {"v": 1, "kind": "invalidPackage", "eid": eid, "attempts": 0,
                   "eimTransactionId": None, "step": "deliver",
                   "message": esipa.provide_eim_package_result(
                       eid, error_code=INVALID_PACKAGE_FORMAT, version=self.version)}
            self._run(self._save(job), out)
            return None
        if pkg["kind"] == "eimPackageError":
            code = pkg["eimPackageError"]
            if code == NO_EIM_PACKAGE_AVAILABLE:
                self._clear_state_change(sc)
                out["idle"] = True
                return None
            raise EimError("ESipa.GetEimPackage", code, pkg.get("error"))
        self._clear_state_change(sc)
        return pkg

    def _package_tag(self, body):
        """The tag of the package alternative in an undecodable GetEimPackageResponse, if any."""
        try:
            raw = body
            ej = self._json()
            if ej is not None:
                raw = ej.json_to_asn1("getEimPackage", body)
            t = tlv.decode(raw)
            kids = t.children()
        except (IpaError, ValueError, TypeError):
            return None
        if t.tag == 0xBF4F and len(kids) == 1 and kids[0].tag in (0xBF51, 0xBF52, 0xBF54):
            return kids[0].tag
        return None

    def _clear_state_change(self, sent):
        if sent is None:
            return
        cur = self.store.get(STATE_CHANGE)
        if cur is not None and cur.get("serial") == sent.get("serial"):
            self.store.delete(STATE_CHANGE)

    # ---- procedures -----------------------------------------------------------------------

    def _start(self, pkg, out):
        kind = pkg["kind"]
        tid = ipa_steps.hexu(pkg.get("eimTransactionId"))
        out["package"] = kind
        out["eimTransactionId"] = tid
        self.note("info", "eIM package %s%s" % (kind, "" if tid is None else " " + tid))
        job = {"v": 1, "kind": kind, "eid": self._eid(), "request": bytes(pkg["raw"]),
               "eimTransactionId": tid, "attempts": 0}
        if kind == "euiccPackageRequest":
            job["step"] = "load"
            job["eimId"] = pkg["eimId"]
            job["counterValue"] = pkg["counterValue"]
            job["sent"] = False
            flag = False
            for op in (pkg.get("euiccPackage") or {}).get("psmoList") or ():
                if (op.get("enable") or {}).get("rollbackFlag"):
                    flag = True
            job["rollbackFlag"] = flag
        elif kind == "ipaEuiccDataRequest":
            job["step"] = "collect"
        else:
            job["step"] = "download"
        self._run(self._save(job), out)

    def _run(self, job, out):
        """Run the procedure `job` from its step to the end; each step saves before acting."""
        if job.get("v") != 1 or job.get("kind") not in PACKAGE_KINDS + ("invalidPackage",):
            self.note("error", "dropping an unreadable procedure record: %r" % (job,))
            self.store.delete(JOB)
            return
        for _ in range(MAX_STEPS):
            step = job.get("step")
            handler = STEPS.get(step)
            if handler is None:
                self.note("error", "dropping a procedure at unknown step %r" % (step,))
                self.store.delete(JOB)
                return
            out["steps"].append(step)
            if job.get("attempts", 0) >= self.config["max_attempts"]:
                job = ipa_steps.give_up(self, job, out)
                if job is None:
                    return
                continue
            try:
                job = handler(self, job, out)
            except IpaError as e:
                # A card or network that does not answer is retried without bound (with
                # back-off); an answer refusing the step counts towards max_attempts.
                transient = isinstance(e, TransportError) or getattr(e, "transient", False)
                if not transient:
                    job["attempts"] = job.get("attempts", 0) + 1
                    self._save(job)
                raise
            except Exception as e:
                # A bug, a MemoryError, a module missing from a board's frozen bundle: counted
                # like a refusal, so a step that always fails is given up after max_attempts
                # instead of failing the same way after every restart (a watchdog reset loop).
                job["attempts"] = job.get("attempts", 0) + 1
                self._save(job)
                raise IpaError("%s step %s failed unexpectedly: %s: %s"
                               % (job.get("kind"), step, type(e).__name__, e))
            if job is None:
                return
        raise ProtocolError("the %s procedure did not end within %d steps"
                            % (job.get("kind"), MAX_STEPS))
