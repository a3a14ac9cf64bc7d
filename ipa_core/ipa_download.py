"""Profile download by the IPAd (SGP.32 v1.2 3.2.3; SGP.22 v2.5 3.1.3 as the LPA does it).

    r = download(session, DirectTransport(network), activation="LPA:1$dp.example$ABC-123")
    (DirectTransport: ipa_core.ipa_direct)
    r["ok"], r["iccid"], r["pir"]["raw"]

The procedure, in this order:
 1. ES10b.GetEUICCInfo1, ES10b.GetEUICCChallenge
 2. InitiateAuthentication (server)        -> transactionId, serverSigned1, ...
 3. ES10b.AuthenticateServer               ctxParams1 = matchingId + deviceInfo (or the
                                           eIM's ctxParams1, indirect)
 4. AuthenticateClient (server)            -> smdpSigned2, profileMetadata, ccRequiredFlag
 5. ES10b.PrepareDownload                  hashCc = SHA-256(SHA-256(CC) | transactionId)
                                           when the SM-DP+ asks for a Confirmation Code
 6. GetBoundProfilePackage (server)        -> the BPP 'BF36'
 7. ES10b.LoadBoundProfilePackage          one STORE DATA sequence per segment (SGP.22
                                           2.5.5), progress(done, total) after each; a
                                           segment answered with 'BF37' ends it early
 8. ProfileInstallationResult              returned (success or error: the eIM / SM-DP+
                                           gets it as the PIR notification, by the normal
                                           notification path)
 9. optionally ES10b.ImmediateEnable
An error answer from the eUICC at 3 or 5 is still sent to the server (4, 6)
so it learns why, then the procedure stops. On any failure after 2:
ES10b.CancelSession on the eUICC and, with its signed answer, CancelSession
on the server; failures of the cancels are logged, the first error is
raised as DownloadError (stage, reason, cause). A streamed BPP is checked
as it arrives: an eIM answer that breaks while segments are being loaded
(cut, malformed, a segment over the bound) fails at stage
GetBoundProfilePackage with undefinedReason, as a broken whole answer
does; an eUICC failure during the load is loadBppExecutionError. The stream
is closed before any cancel goes out.

The server side is a transport: DirectTransport (ES9+ JSON to the SM-DP+,
ipa_core.es9p; in ipa_core.ipa_direct, imported only when used) or
IndirectTransport (ESipa 'BF39'/'BF3B'/'BF3A'/'BF41' to the eIM,
ipa_core.esipa), both with initiate_authentication, authenticate_client,
get_bound_profile_package, cancel_session. get_bound_profile_package gives
the BPP streamed, as "segments" (an es10.BppSegments; bytes as
"boundProfilePackage" only from an ipa without _post_stream): both transports
read the server's answer from the network one STORE DATA segment at a time
(ESipa ASN.1: esipa.open_get_bound_profile_package_response; ES9+ and the ESipa
JSON binding: ipa_core.json_stream), so the heap does not grow with the
profile (issue 8 budget, issue 13), and the package is bounded by the Ipa
config max_package (4 MiB default).

Imports are lazy where a board may not need them: ipa_direct/es9p (direct
download), activation (an Activation Code to parse), esipa_json (the JSON
binding).

make_download_handler(ipa, ...) gives the Ipa.download_handler for an eIM's
profileDownloadTriggerRequest (see DownloadHandler).
"""

from ipa_core.compat import hexlify, sha256

from ipa_core import es10, esipa, ipa_cancel, tlv
from ipa_core import es10_decode as d
from ipa_core.errors import IpaError, ProtocolError
from ipa_core.es10_download import DEFAULT_CAPABILITIES, DEFAULT_TAC


def _hex(b):
    return None if b is None else hexlify(bytes(b)).decode().upper()


class DownloadError(IpaError):
    """A profile download stopped: `stage` (the step that failed), `cause` (the error),
    `reason` (the CancelSessionReason used, or None when nothing was cancelled),
    `result` (what was known so far: transactionId, profileMetadata, ...)."""

    def __init__(self, stage, cause, reason=None, result=None, note=None):
        self.stage = stage
        self.cause = cause
        self.reason = reason
        self.result = result or {}
        super().__init__("profile download failed at %s: %s%s"
                         % (stage, cause, "; " + note if note else ""))


def hash_cc(confirmation_code, transaction_id):
    """SGP.22 3.1.3.3: SHA-256(SHA-256(Confirmation Code) | TransactionID), 32 bytes."""
    cc = confirmation_code.encode("utf-8") if isinstance(confirmation_code, str) else \
        bytes(confirmation_code)
    inner = sha256(cc).digest()
    return sha256(inner + bytes(transaction_id)).digest()


# ---- transports ----------------------------------------------------------------------------


_ESIPA_DECODERS = {
    "initiateAuthentication": esipa.decode_initiate_authentication_response,
    "authenticateClient": esipa.decode_authenticate_client_response,
    "getBoundProfilePackage": esipa.decode_get_bound_profile_package_response,
    "cancelSession": esipa.decode_cancel_session_response,
}


class IndirectTransport:
    """The same exchanges relayed by the eIM over ESipa (SGP.32 6.3.2.1-6.3.2.4), through
    `ipa._post` (the Ipa's network and binding, asn1 or json)."""

    name = "indirect"

    def __init__(self, ipa, eim_transaction_id=None, max_segment=None):
        self.ipa = ipa
        self.eim_transaction_id = eim_transaction_id
        self.max_segment = max_segment

    def _json(self):
        return self.ipa.config.get("binding") == "json"

    def _call(self, function, message):
        body = self.ipa._post(function, message)
        if self._json():
            from ipa_core import esipa_json

            return esipa_json.from_json(function, body)
        return _ESIPA_DECODERS[function](body)

    def initiate_authentication(self, euicc_challenge, euicc_info1, smdp_address):
        r = self._call("initiateAuthentication", esipa.initiate_authentication_request(
            euicc_challenge, euicc_info1, smdp_address, self.eim_transaction_id,
            version=getattr(self.ipa, "version", None)))
        r["euiccCiPKIdToBeUsed"] = r.pop("euiccCiPKIdentifierToBeUsed")
        return r

    def authenticate_client(self, transaction_id, authenticate_server_response):
        r = self._call("authenticateClient", esipa.authenticate_client_request(
            transaction_id, authenticate_server_response))
        if r.get("kind") != "authenticateClientOkDPEsipa":
            raise ProtocolError("ESipa.AuthenticateClient: the eIM answered %s (an SM-DS event),"
                                " expected authenticateClientOkDPEsipa" % r.get("kind"))
        md = r.pop("profileMetaData", None)
        if md is not None:
            r["profileMetadata"] = md["raw"]
        return r

    def get_bound_profile_package(self, transaction_id, prepare_download_response):
        """Streamed {"transactionId", "segments": es10.BppSegments}, open on the eIM's answer
        until closed (ASN.1 or JSON binding), bounded by the Ipa config max_package; an ipa
        without _post_stream gives {"transactionId", "boundProfilePackage": bytes}."""
        f = "getBoundProfilePackage"
        msg = esipa.get_bound_profile_package_request(transaction_id, prepare_download_response)
        post_stream = getattr(self.ipa, "_post_stream", None)
        if post_stream is None:
            return self._call(f, msg)
        limit = self.ipa.config.get("max_package") or es10.MAX_PACKAGE
        if self._json():
            from ipa_core import esipa_json

            return esipa_json.open_get_bound_profile_package_response(
                post_stream(f, msg), self.max_segment, limit, transaction_id)
        return esipa.open_get_bound_profile_package_response(post_stream(f, msg),
                                                             self.max_segment, limit)

    def cancel_session(self, transaction_id, cancel_session_response):
        self._call("cancelSession", esipa.cancel_session_request(transaction_id,
                                                                 cancel_session_response))


# ---- the procedure --------------------------------------------------------------------------


def load_bound_profile_package(session, bpp, progress=None):
    """ES10b.LoadBoundProfilePackage segment by segment (es10.load_bound_profile_package: one
    segmenter for bytes and streams), progress(done, total) after each -> the PIR dict
    (es10_signed.profile_installation_result) with "segmentsSent" and "segmentsTotal".
    `bpp`: the BF36 bytes or es10.BppSegments read from the network."""
    return es10.load_bound_profile_package(session, bpp, progress)


def _close(source):
    """Close a streamed BPP (discards the rest of the eIM's answer) before the next request."""
    close = getattr(source, "close", None)
    if close is not None:
        try:
            close()
        except IpaError:
            pass  # the connection is dropped then; the next request opens a new one


def _note(log, level, msg):
    if log is not None:
        log(level, msg)


def _cancel(session, transport, tid, reason, out, log, rec):
    """ES10b.CancelSession, then the server's CancelSession with the eUICC's signed answer
    (kept in the store first: rec, ipa_cancel.Recorder). Failures are logged and recorded
    in out["cancel"], never raised; a cancel left unfinished stays recorded for the next
    start (ipa_cancel.recover)."""
    c = {"reason": reason, "euicc": False, "server": False}
    out["cancel"] = c
    try:
        csr = es10.cancel_session(session, tid, reason)
        c["euicc"] = True
        rec.euicc_cancelled(reason, csr["raw"])
    except IpaError as e:
        c["euiccError"] = str(e)
        _note(log, "warning", "ES10b.CancelSession: %s" % e)
        rec.ended(c)
        return
    try:
        transport.cancel_session(tid, csr["raw"])
        c["server"] = True
    except IpaError as e:
        c["serverError"] = str(e)
        _note(log, "warning", "CancelSession (%s): %s" % (transport.name, e))
    rec.ended(c)


class _Stop(Exception):
    """Internal: stop with (stage, cause, reason)."""

    def __init__(self, stage, cause, reason):
        self.stage = stage
        self.cause = cause
        self.reason = reason
        super().__init__(stage)


def download(session, transport, activation=None, smdp_address=None, matching_id=None,
             confirmation_code=None, imei=None, progress=None, immediate_enable=False,
             tac=None, device_capabilities=None, confirm=None, refresh_flag=True, log=None,
             store=None):
    """Download and install one profile (see the module docstring) -> result dict:

        ok              the PIR says successResult
        pir             the ProfileInstallationResult dict ("raw": forward verbatim)
        iccid, transactionId (hex), smdpAddress, matchingId, transport
        profileMetadata the StoreMetadataRequest as a dict (ProfileInfo names) + "raw"
        segments        [sent, total]
        immediateEnable "ok" or the error text (only when asked and installed)

    activation: an Activation Code string or activation.parse() dict;
    smdp_address / matching_id override it. confirmation_code: str, used
    only when the SM-DP+ sets ccRequiredFlag. confirm(profileMetadata) ->
    False refuses the profile (CancelSession endUserRejection). log(level,
    msg) optional. Failures -> DownloadError (after the cancels). store: the
    IPA's Store (ipa_core.ipa_store); given, the open session is recorded in
    it from AuthenticateServer to the end (ipa_core.ipa_cancel: what the next
    start cancels after a cut), and a matchingIdRefused names the earlier
    session recorded there.
    """
    ac = activation
    if isinstance(ac, (str, bytes, bytearray)):
        from ipa_core import activation as act

        ac = act.parse(ac)
    ac = ac or {}
    smdp = smdp_address or ac.get("smdpAddress")
    mid = matching_id if matching_id is not None else ac.get("matchingId")
    if smdp is None and transport.name == "direct":
        raise ValueError("direct download: expected an SM-DP+ address (activation code or "
                         "smdp_address), got none")
    out = {"transport": transport.name, "smdpAddress": smdp, "matchingId": mid, "ok": False}
    rec = ipa_cancel.Recorder(store, transport, smdp, mid)
    stage = "ES10b.GetEUICCInfo1"
    tid = None
    try:
        info1 = es10.get_euicc_info1(session)
        stage = "ES10b.GetEUICCChallenge"
        challenge = es10.get_euicc_challenge(session)
        stage = "InitiateAuthentication"
        ia = transport.initiate_authentication(challenge, info1["raw"], smdp)
        # Each step's messages are dropped once the next step has what it needs: a board's
        # heap then holds one step's certificates and signatures, not all of them, while
        # the package streams (tools/mp_firmware.py).
        info1 = challenge = None
        tid = ia["transactionId"]
        out["transactionId"] = _hex(tid)
        _note(log, "info", "InitiateAuthentication: transactionId %s" % out["transactionId"])

        stage = "ES10b.AuthenticateServer"
        ctx = ia.get("ctxParams1")
        if ctx is None:
            ctx = es10.encode_ctx_params1(ia.get("matchingId", mid), tac or DEFAULT_TAC,
                                          DEFAULT_CAPABILITIES if device_capabilities is None
                                          else device_capabilities, imei)
        asr = es10.authenticate_server(session, ia["serverSigned1"], ia["serverSignature1"],
                                       ia["euiccCiPKIdToBeUsed"], ia["serverCertificate"], ctx)
        ia = ctx = None
        if not asr.get("error"):
            rec.opened(out["transactionId"])  # the eUICC holds the session from here on
        stage = "AuthenticateClient"
        acr = transport.authenticate_client(tid, asr["raw"])
        if asr.get("error"):  # the server should have refused it; stop either way
            raise _Stop("ES10b.AuthenticateServer", IpaError(
                "the eUICC refused the SM-DP+: %s (%s)" % (asr["error"],
                                                          asr.get("authenticateErrorCode"))),
                "undefinedReason")
        asr = None
        if acr["transactionId"] != tid:
            raise ProtocolError("AuthenticateClient: transactionId %s, expected %s"
                                % (_hex(acr["transactionId"]), out["transactionId"]))
        md = acr.get("profileMetadata")
        if md is not None:
            out["profileMetadata"] = d.fields(tlv.decode(md), d.PROFILE_INFO, {"raw": md})
            out["iccid"] = out["profileMetadata"].get("iccid")
        if confirm is not None and not confirm(out.get("profileMetadata")):
            raise _Stop("profile confirmation", IpaError("the profile was refused"),
                        "endUserRejection")

        stage = "confirmation code"
        hcc = None
        if acr.get("ccRequiredFlag"):
            if confirmation_code is not None:
                hcc = hash_cc(confirmation_code, tid)
            elif acr.get("hashCc") is not None:  # indirect: the eIM computed it
                hcc = acr["hashCc"]
            else:
                raise _Stop(stage, IpaError("the SM-DP+ requires a confirmation code, none was"
                                            " given"), "endUserRejection")
        stage = "ES10b.PrepareDownload"
        pdr = es10.prepare_download(session, acr["smdpSigned2"], acr["smdpSignature2"],
                                    acr["smdpCertificate"], hcc)
        acr = hcc = None
        stage = "GetBoundProfilePackage"
        gb = transport.get_bound_profile_package(tid, pdr["raw"])
        bpp = gb.pop("segments", None)  # streamed: open on the answer until closed
        pdr_error = (pdr.get("error"), pdr.get("downloadErrorCode"))
        pdr = None
        try:
            if pdr_error[0]:
                raise _Stop("ES10b.PrepareDownload", IpaError(
                    "the eUICC refused: %s (%s)" % pdr_error), "undefinedReason")
            if gb["transactionId"] != tid:
                raise ProtocolError("GetBoundProfilePackage: transactionId %s, expected %s"
                                    % (_hex(gb["transactionId"]), out["transactionId"]))
            if bpp is None:
                bpp = gb.pop("boundProfilePackage")
            gb = None
            stage = "ES10b.LoadBoundProfilePackage"
            rec.stage("loading")
            try:
                pir = load_bound_profile_package(session, bpp, progress)
            except IpaError as e:
                if getattr(bpp, "error", None) is e:
                    # the eIM's answer broke while being read (cut, malformed, oversized):
                    # a GetBoundProfilePackage failure, cancelled as one
                    raise _Stop("GetBoundProfilePackage", e, "undefinedReason")
                raise _Stop(stage, e, "loadBppExecutionError")
        finally:
            _close(bpp)  # before CancelSession or the next ESipa request on this network
        bpp = None
    except _Stop as s:
        if tid is not None:
            _cancel(session, transport, tid, s.reason, out, log, rec)
        raise DownloadError(s.stage, s.cause, s.reason, out, rec.note(s.cause))
    except IpaError as e:
        reason = None
        if tid is not None:
            reason = "undefinedReason"
            _cancel(session, transport, tid, reason, out, log, rec)
        raise DownloadError(stage, e, reason, out, rec.note(e))
    except ValueError as e:  # a caller's or a peer's value refused while building a request
        if tid is not None:
            _cancel(session, transport, tid, "undefinedReason", out, log, rec)
        raise DownloadError(stage, e, "undefinedReason" if tid is not None else None, out)

    rec.ended()  # a PIR: the notification path delivers it
    out["pir"] = pir
    out["segments"] = [pir["segmentsSent"], pir["segmentsTotal"]]
    out["ok"] = not pir.get("error")
    if pir.get("iccid"):
        out["iccid"] = pir["iccid"]
    if not out["ok"]:
        _note(log, "warning", "profile installation failed: %s" % pir.get("error"))
        return out
    _note(log, "info", "profile %s installed" % out.get("iccid"))
    if immediate_enable:
        try:
            es10.immediate_enable(session, refresh_flag)
            out["immediateEnable"] = "ok"
        except IpaError as e:
            out["immediateEnable"] = str(e)
            _note(log, "warning", "ImmediateEnable: %s" % e)
    return out


# ---- the eIM's profileDownloadTriggerRequest -------------------------------------------------


class DownloadHandler:
    """Ipa.download_handler: profileDownloadTriggerRequest -> ProfileDownloadTriggerResult 'BF54'.

    profileDownloadData:
      activationCode      parsed (ipa_core.activation); the download goes direct or
                          indirect as `indirect` says (None: the eIM Configuration Data's
                          indirectProfileDownload, from ipa.eim);
      contactDefaultSmdp  the eUICC's defaultDpAddress (ES10a.GetEuiccConfiguredAddresses),
                          no matchingId;
      contactSmds         Event Retrieval at smdsAddress, else the eUICC's rootDsAddress
                          (ipa_core.ipa_smds), then the download of the first event
                          (matchingId = eventId) from its SM-DP+, always direct: the
                          eIM-relayed SM-DS (authenticateClientOkDSEsipa) is not done, so
                          an indirect setting refuses it; no event is an error; the
                          events after the first stay on the SM-DS for the next trigger;
      (none)              indirect only: the eIM knows what to download.
    Result: the PIR (success or its error result) verbatim, or profileDownloadError
    undefinedError; eimTransactionId echoed. `last` keeps the last result dict or
    error for the host's summary (with "smds": the retrieval, for contactSmds).
    network_factory(address) -> a network for DirectTransport or the SM-DS (closed
    after use if it has close()).
    """

    def __init__(self, ipa, network_factory=None, indirect=None, immediate_enable=False,
                 progress=None, device_info=None):
        self.ipa = ipa
        self.network_factory = network_factory
        self.indirect = indirect
        self.immediate_enable = immediate_enable
        self.progress = progress
        self.device_info = device_info
        self.last = None
        self.smds = None

    def _log(self, level, msg):
        self.ipa.note(level, msg)

    def _use_indirect(self):
        if self.indirect is not None:
            return bool(self.indirect)
        return bool((getattr(self.ipa, "eim", None) or {}).get("indirectProfileDownload"))

    def __call__(self, req):
        tid = req.get("eimTransactionId")
        self.smds = None
        try:
            self.last = self._download(req, tid)
            if self.smds is not None:
                self.last["smds"] = self.smds
            pir = self.last["pir"]
            if self.last.get("transport") == "direct" and getattr(self.ipa, "smdp_network", None):
                # SGP.22 3.1.3: the PIR to the SM-DP+ too, not only in the eIM's result
                self.last["notifications"] = self.ipa.process_notifications(
                    only=[pir.get("seqNumber")])
            return esipa.profile_download_trigger_result(profile_installation_result=pir["raw"],
                                                         eim_transaction_id=tid)
        except (IpaError, ValueError) as e:
            self._log("error", "profile download: %s" % e)
            self.last = {"ok": False, "error": str(e)}
            return esipa.profile_download_trigger_result(error_reason="undefinedError",
                                                         eim_transaction_id=tid)

    def _download(self, req, tid):
        ipa = self.ipa
        pdd = req.get("profileDownloadData")
        indirect = self._use_indirect()
        info = self.device_info or ipa.config.get("device_info") or {}
        kw = {"tac": info.get("tac"), "device_capabilities": info.get("deviceCapabilities"),
              "imei": info.get("imei"), "progress": self.progress,
              "immediate_enable": self.immediate_enable,
              "refresh_flag": ipa.config.get("refresh_flag", True), "log": ipa.note}
        if pdd is None:
            if not indirect:
                raise IpaError("profileDownloadTriggerRequest without profileDownloadData: only"
                               " an indirect download (the eIM chooses) can do that")
        elif "activationCode" in pdd:
            from ipa_core import activation as act

            kw["activation"] = act.parse(pdd["activationCode"])
        elif "contactDefaultSmdp" in pdd:
            addr = es10.get_euicc_configured_addresses(ipa.session).get("defaultDpAddress")
            if not addr:
                raise IpaError("contactDefaultSmdp: the eUICC has no default SM-DP+ address")
            kw["smdp_address"] = addr
        elif "contactSmds" in pdd:
            if indirect or self.network_factory is None:  # a board without ipa_smds stops here
                raise IpaError("contactSmds: the SM-DS is reached by a direct download only")
            from ipa_core.ipa_smds import contact_smds

            self.smds = contact_smds(ipa.session, self.network_factory,
                                     pdd["contactSmds"].get("smdsAddress"), kw)
            ev = self.smds["eventEntries"][0]
            kw["smdp_address"], kw["matching_id"] = ev["rspServerAddress"], ev["eventId"]
        else:
            raise IpaError("profileDownloadData %s: not supported" % ", ".join(sorted(pdd)))
        kw["store"] = getattr(ipa, "store", None)  # the open session, for a cut (ipa_cancel)
        if indirect:
            return download(ipa.session, IndirectTransport(ipa, tid), **kw)
        if self.network_factory is None:
            raise IpaError("direct profile download: no way to reach an SM-DP+ "
                           "(network_factory)")
        from ipa_core.ipa_direct import DirectTransport

        smdp = kw.get("smdp_address") or kw["activation"]["smdpAddress"]
        network = self.network_factory(smdp)
        try:
            return download(ipa.session, DirectTransport(
                network, max_package=ipa.config.get("max_package")), **kw)
        finally:
            _close(network)


def __getattr__(name):
    """ipa_download.DirectTransport, as before it moved to ipa_core.ipa_direct (PEP 562;
    imported on first use, so the indirect-only board never loads es9p)."""
    if name == "DirectTransport":
        from ipa_core.ipa_direct import DirectTransport

        return DirectTransport
    raise AttributeError("module 'ipa_core.ipa_download' has no attribute %r" % (name,))


def make_download_handler(ipa, network_factory=None, indirect=None, immediate_enable=False,
                          progress=None, device_info=None):
    """The function for `ipa.download_handler` (a DownloadHandler; see there)."""
    return DownloadHandler(ipa, network_factory, indirect, immediate_enable, progress,
                           device_info)
