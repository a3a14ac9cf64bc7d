"""Event Retrieval from an SM-DS by the IPAd (SGP.22 v2.5 3.6.2 and 5.8 ES11; SGP.32 v1.2
contactSmds in ProfileDownloadTriggerRequest).

    r = retrieve_events(session, network, "smds.example.com")   # network: https://<SM-DS>
    for ev in r["eventEntries"]:                                 # {"eventId", "rspServerAddress"}
        download(session, DirectTransport(...), smdp_address=ev["rspServerAddress"],
                 matching_id=ev["eventId"])                       # ipa_core.ipa_download

The procedure, in this order:
 1. ES10b.GetEUICCInfo1, ES10b.GetEUICCChallenge
 2. ES11.InitiateAuthentication            -> transactionId, serverSigned1, CERT.DSauth ...;
                                           serverSigned1's serverAddress must be the
                                           SM-DS asked (a server answering for another is
                                           refused before the eUICC signs anything)
 3. ES10b.AuthenticateServer               ctxParams1 = deviceInfo only: no matchingId,
                                           so the SM-DS returns every event for the EID
 4. ES11.AuthenticateClient                -> eventEntries
An error answer of the eUICC at 3 (an SM-DS whose certificate or signature
does not verify under the eUICC's CI) still goes to the SM-DS so it learns
why, then the retrieval stops with SmdsError naming the eUICC's reason. ES11
has no CancelSession: nothing stays open on the SM-DS, and the eUICC drops
the session context at the next GetEUICCChallenge.

Kept apart from ipa_download (which imports this module on first use, for the
eIM's contactSmds) so that a board without SM-DS use does not load es11.
"""

from ipa_core.compat import hexlify

from ipa_core import es10, es11
from ipa_core.errors import IpaError, ProtocolError
from ipa_core.es10_download import DEFAULT_CAPABILITIES, DEFAULT_TAC


class SmdsError(IpaError):
    """Event retrieval stopped: `stage` (the step that failed), `cause` (the error)."""

    def __init__(self, stage, cause):
        self.stage = stage
        self.cause = cause
        super().__init__("SM-DS event retrieval failed at %s: %s" % (stage, cause))


def _call(network, function, body):
    """POST one ES11 function -> the answer's body; an HTTP error answer is an Es11Error
    when it carries the JSON header, else a ProtocolError naming the status."""
    status, rbody = network.post(es11.path(function), body, es11.CONTENT_TYPE, es11.HEADERS)
    if status == 200:
        return rbody
    try:
        es11.load(function, rbody)
    except es11.Es11Error:
        raise
    except IpaError:
        pass
    raise ProtocolError("%s: the SM-DS answered HTTP %s, expected 200"
                        % (es11.spec_name(function), status))


def retrieve_events(session, network, smds_address, tac=None, device_capabilities=None,
                    imei=None, log=None):
    """Steps 1-4 above -> {"smdsAddress", "transactionId" (hex), "eventEntries": [{"eventId",
    "rspServerAddress"}], "more": entries the SM-DS holds beyond es11.MAX_EVENTS}.
    network.post reaches https://<smds_address>; tac, device_capabilities, imei: deviceInfo
    as es10.encode_ctx_params1 takes them (None: DEFAULT_TAC, DEFAULT_CAPABILITIES).
    Failures -> SmdsError."""
    stage = "ES10b.GetEUICCInfo1"
    try:
        info1 = es10.get_euicc_info1(session)
        stage = "ES10b.GetEUICCChallenge"
        challenge = es10.get_euicc_challenge(session)
        stage = "ES11.InitiateAuthentication"
        ia = es11.decode_initiate_authentication_response(_call(
            network, "initiateAuthentication",
            es11.initiate_authentication_request(challenge, info1["raw"], smds_address)))
        info1 = None
        tid = ia["transactionId"]
        if ia["serverAddress"] != smds_address:
            raise ProtocolError("serverSigned1 names the server %r, expected the SM-DS asked, %r"
                                % (ia["serverAddress"], smds_address))
        if ia["euiccChallenge"] != challenge:
            raise ProtocolError("serverSigned1 carries another euiccChallenge than the one sent")
        stage = "ES10b.AuthenticateServer"
        ctx = es10.encode_ctx_params1(None, tac or DEFAULT_TAC, DEFAULT_CAPABILITIES
                                      if device_capabilities is None else device_capabilities,
                                      imei)
        asr = es10.authenticate_server(session, ia["serverSigned1"], ia["serverSignature1"],
                                       ia["euiccCiPKIdToBeUsed"], ia["serverCertificate"], ctx)
        ia = ctx = None
        stage = "ES11.AuthenticateClient"
        body = es11.authenticate_client_request(tid, asr["raw"])
        if asr.get("error"):
            refused = IpaError("the eUICC refused the SM-DS %s: %s (%s)" % (
                smds_address, asr["error"], asr.get("authenticateErrorCode")))
            try:  # tell the SM-DS why (it answers with an error of its own, not needed)
                _call(network, "authenticateClient", body)
            except IpaError as e:
                if log is not None:
                    log("info", "ES11.AuthenticateClient after the eUICC's refusal: %s" % e)
            raise SmdsError("ES10b.AuthenticateServer", refused)
        r = es11.decode_authenticate_client_response(
            _call(network, "authenticateClient", body), tid)
    except SmdsError:
        raise
    except (IpaError, ValueError) as e:
        raise SmdsError(stage, e)
    out = {"smdsAddress": smds_address, "transactionId": hexlify(tid).decode().upper(),
           "eventEntries": r["eventEntries"], "more": r["more"]}
    if log is not None:
        log("info", "SM-DS %s: %d event(s)%s" % (smds_address, len(out["eventEntries"]),
                                                 ", %d more left there" % out["more"]
                                                 if out["more"] else ""))
    return out


def contact_smds(session, network_factory, smds_address, kw):
    """The eIM's contactSmds (SGP.32 ProfileDownloadTriggerRequest): Event Retrieval at
    smds_address, else the eUICC's rootDsAddress, over network_factory(address) (closed
    after) -> the retrieval, with at least one event (none: IpaError). kw: the download's
    options (tac, device_capabilities, imei, log are used)."""
    address = smds_address or es10.get_euicc_configured_addresses(session)["rootDsAddress"]
    network = network_factory(address)
    try:
        r = retrieve_events(session, network, address, kw.get("tac"),
                            kw.get("device_capabilities"), kw.get("imei"), kw.get("log"))
    finally:
        close = getattr(network, "close", None)
        if close is not None:
            close()
    if not r["eventEntries"]:
        raise IpaError("contactSmds: the SM-DS %s has no event for this eUICC" % address)
    return r
