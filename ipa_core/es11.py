"""ES11 (LPA/IPA <-> SM-DS), JSON binding over HTTPS, client side (SGP.22 v2.5 5.8, 6.5).

Event retrieval (SGP.22 3.6.2): the IPAd authenticates the SM-DS exactly as it
authenticates an SM-DP+ (the eUICC checks CERT.DSauth and serverSignature1
against its CI), and the SM-DS answers with the events registered for the
EID. Two functions, the same JSON conventions as ES9+ (ipa_core.es9p, whose
helpers this module uses):

    function (path /gsma/rsp2/es11/<f>)  request body               response body
    initiateAuthentication   euiccChallenge, euiccInfo1,  transactionId, serverSigned1,
                             smdsAddress                  serverSignature1, euiccCiPKIdToBeUsed,
                                                          serverCertificate
    authenticateClient       transactionId,               transactionId, eventEntries
                             authenticateServerResponse   [{eventId, rspServerAddress}]

An event names the SM-DP+ (rspServerAddress) holding something for this
eUICC; its eventId is the matchingId of the download that follows (SGP.22
CtxParamsForCommonAuthentication: "the MatchingId could be ... EventID").
Answers are bounded: MAX_BODY bytes, MAX_EVENTS entries kept (the rest stay on
the SM-DS for the next retrieval: "more" says how many were left), each
address an FQDN[:port] and each eventId a matchingId (ipa_core.activation).

Status codes (subjectCode, reasonCode) map to the numbers of
AuthenticateClientResponseEs11 (RSPDefinitions) and, for
InitiateAuthentication, of the ES9+ InitiateAuthenticationResponse with the
SM-DS in place of the SM-DP+; as best known, an unknown pair is 127.
"""

from ipa_core import es9p
from ipa_core.activation import check_address, check_matching_id
from ipa_core.b64 import encode as b64
from ipa_core.errors import Names, ProtocolError

PATH = "/gsma/rsp2/es11/"
CONTENT_TYPE = es9p.CONTENT_TYPE
HEADERS = es9p.HEADERS
FUNCTIONS = ("initiateAuthentication", "authenticateClient")
MAX_BODY = 64 * 1024  # certificates, signatures and MAX_EVENTS entries fit many times over
MAX_EVENTS = 16  # entries kept from one answer

INITIATE_AUTHENTICATION_ERROR = Names(((1, "invalidSmdsAddress"),
                                       (2, "euiccVersionNotSupportedBySmds"),
                                       (3, "ciPKIdNotSupported"), (127, "undefinedError")))
AUTHENTICATE_CLIENT_ERROR = Names(((1, "eumCertificateInvalid"), (2, "eumCertificateExpired"),
                                   (3, "euiccCertificateInvalid"),
                                   (4, "euiccCertificateExpired"), (5, "euiccSignatureInvalid"),
                                   (6, "eventIdUnknown"), (7, "invalidTransactionId"),
                                   (127, "undefinedError")))
STATUS_CODES = {
    "initiateAuthentication": {("8.9.1", "3.8"): 1, ("8.8.3", "3.1"): 2, ("8.8.2", "3.1"): 3},
    "authenticateClient": {("8.1.2", "6.1"): 1, ("8.1.2", "6.3"): 2, ("8.1.3", "6.1"): 3,
                           ("8.1.3", "6.3"): 4, ("8.1", "6.1"): 5, ("8.9.5", "3.9"): 6,
                           ("8.10.1", "3.9"): 7},
}
_NAMES = {"initiateAuthentication": INITIATE_AUTHENTICATION_ERROR,
          "authenticateClient": AUTHENTICATE_CLIENT_ERROR}


class Es11Error(es9p.Es9Error):
    """The SM-DS answered functionExecutionStatus "Failed" (or "Expired"); the words as for
    Es9Error, `code` from this module's tables."""

    def __init__(self, function, status, scd):
        super().__init__(function, status, scd, _NAMES[function], STATUS_CODES,
                         spec_name(function))


def spec_name(function):
    """'authenticateClient' -> 'ES11.AuthenticateClient'."""
    return "ES11." + function[:1].upper() + function[1:]


def path(function):
    """The HTTP path of an ES11 function."""
    if function not in FUNCTIONS:
        raise ValueError("unknown ES11 function %r, expected one of %s"
                         % (function, ", ".join(FUNCTIONS)))
    return PATH + function


def load(function, body):
    """A response body -> dict, after the status check (Es11Error)."""
    what = spec_name(function) + " response"
    obj = es9p.parse_body(what, body, MAX_BODY)
    failed = es9p.failed_status(what, obj)
    if failed is not None:
        raise Es11Error(function, failed[0], failed[1])
    return obj


# ---- requests ----------------------------------------------------------------------------


def initiate_authentication_request(euicc_challenge, euicc_info1, smds_address):
    """ES11.InitiateAuthentication body (bytes): euiccChallenge (16 bytes), euiccInfo1 ('BF20'
    TLV or the es10.get_euicc_info1 dict), smdsAddress (the SM-DS's FQDN[:port])."""
    ch = bytes(euicc_challenge)
    if len(ch) != 16:
        raise ValueError("euiccChallenge: expected 16 bytes, got %d" % len(ch))
    check_address(smds_address, "SM-DS address")
    return es9p._body({"euiccChallenge": b64(ch),
                       "euiccInfo1": b64(es9p._raw(euicc_info1, (0xBF20,), "euiccInfo1")),
                       "smdsAddress": smds_address}, None, None)


def authenticate_client_request(transaction_id, authenticate_server_response):
    """ES11.AuthenticateClient body: as ES9+'s (transactionId, authenticateServerResponse)."""
    return es9p.authenticate_client_request(transaction_id, authenticate_server_response)


# ---- responses -------------------------------------------------------------------------------


def decode_initiate_authentication_response(body):
    """ES11.InitiateAuthentication response -> the fields of the ES9+ one (es9p): raw TLVs
    for es10.authenticate_server, "serverAddress" and "euiccChallenge" from serverSigned1."""
    f = "initiateAuthentication"
    return es9p.initiate_authentication_fields(load(f, body), spec_name(f) + " response")


def decode_authenticate_client_response(body, transaction_id=None):
    """ES11.AuthenticateClient response -> {"transactionId", "eventEntries": [{"eventId",
    "rspServerAddress"}] (at most MAX_EVENTS, in the SM-DS's order), "more": entries left}.
    A missing eventEntries is no event (an empty list is what SGP.22 sends)."""
    f = "authenticateClient"
    what = spec_name(f) + " response"
    obj = load(f, body)
    tid = es9p._tid(obj, what, transaction_id)
    entries = obj.get("eventEntries")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ProtocolError("%s: eventEntries: expected a list, got %r"
                            % (what, es9p._word(entries)))
    events = []
    for i, e in enumerate(entries[:MAX_EVENTS]):
        w = "%s.eventEntries[%d]" % (what, i)
        if not isinstance(e, dict):
            raise ProtocolError("%s: expected an object, got %r" % (w, es9p._word(e)))
        eid, addr = e.get("eventId"), e.get("rspServerAddress")
        if not isinstance(eid, str) or not eid or not isinstance(addr, str):
            raise ProtocolError("%s: expected the strings eventId and rspServerAddress, got %r"
                                % (w, es9p._word(e, 120)))
        try:
            check_matching_id(eid, w + ".eventId")
            check_address(addr, w + ".rspServerAddress")
        except ValueError as err:
            raise ProtocolError(str(err))
        events.append({"eventId": eid, "rspServerAddress": addr})
    return {"transactionId": tid, "eventEntries": events,
            "more": max(0, len(entries) - MAX_EVENTS)}
