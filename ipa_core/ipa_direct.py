"""Direct profile download transport: ES9+ JSON to the SM-DP+ (SGP.22 v2.5 5.6, SGP.32 v1.2 3.2.3).

The server side of ipa_core.ipa_download.download() when the IPAd reaches
the SM-DP+ itself (ipa_core.es9p, base64 in JSON). The bound profile package
is streamed: GetBoundProfilePackage's answer is read from `network.post_stream`
(ipa_core.stream; a network without one gives its whole body) and decoded as
it arrives, one STORE DATA segment at a time (ipa_core.json_stream), bounded
by `max_package`. Kept apart from ipa_download so that a board doing only
indirect downloads (relayed by the eIM) does not load es9p, b64 or json.

    r = download(session, DirectTransport(network), activation="LPA:1$dp.example$ABC-123")
"""

from ipa_core import es9p
from ipa_core.errors import IpaError, ProtocolError
from ipa_core.stream import close_quietly, post_stream

MAX_ERROR_BODY = 16384  # bytes of a non-200 streamed answer read for its ES9+ header


class DirectTransport:
    """ES9+ JSON to the SM-DP+: `network.post(path, body, content_type, headers)` bound to
    https://<SM-DP+ address> (ipa_host.net.https.HttpsNetwork, or any such object).
    max_package: bytes of a bound profile package accepted at most (Ipa config
    max_package); max_segment: of one STORE DATA segment."""

    name = "direct"

    def __init__(self, network, requester=None, max_package=None, max_segment=None):
        self.network = network
        self.requester = requester
        self.max_package = max_package or es9p.MAX_PACKAGE
        self.max_segment = max_segment
        self.calls = 0

    def _call(self, function, body):
        self.calls += 1
        status, rbody = self.network.post(es9p.path(function), body, es9p.CONTENT_TYPE,
                                          es9p.HEADERS)
        if status in (200, 204):
            return rbody
        self._refused(function, status, rbody)

    def _refused(self, function, status, rbody):
        """An HTTP status other than 200/204: Es9Error when the body says why, else
        ProtocolError."""
        try:  # some SM-DP+ answer a failed function with a 4xx and the JSON header
            es9p.load(function, rbody)
        except es9p.Es9Error:
            raise
        except IpaError:
            pass
        raise ProtocolError("%s: the SM-DP+ answered HTTP %s, expected 200 or 204"
                            % (es9p.spec_name(function), status))

    def _kw(self):
        return {"requester": self.requester, "call_id": str(self.calls + 1)}

    def initiate_authentication(self, euicc_challenge, euicc_info1, smdp_address):
        body = es9p.initiate_authentication_request(euicc_challenge, euicc_info1, smdp_address,
                                                    **self._kw())
        return es9p.decode_initiate_authentication_response(
            self._call("initiateAuthentication", body))

    def authenticate_client(self, transaction_id, authenticate_server_response):
        body = es9p.authenticate_client_request(transaction_id, authenticate_server_response,
                                                **self._kw())
        return es9p.decode_authenticate_client_response(
            self._call("authenticateClient", body), transaction_id)

    def get_bound_profile_package(self, transaction_id, prepare_download_response):
        """{"transactionId", "segments": es10.BppSegments} open on the SM-DP+'s answer until
        closed (es9p.open_get_bound_profile_package_response)."""
        f = "getBoundProfilePackage"
        body = es9p.get_bound_profile_package_request(transaction_id, prepare_download_response,
                                                      **self._kw())
        self.calls += 1
        status, reader = post_stream(self.network, es9p.path(f), body, es9p.CONTENT_TYPE,
                                     es9p.HEADERS)
        if status not in (200, 204):  # 204: no body, refused as such by the scanner
            try:
                rbody = _read_some(reader, MAX_ERROR_BODY)
            finally:
                close_quietly(reader)
            self._refused(f, status, rbody)
        return es9p.open_get_bound_profile_package_response(reader, transaction_id,
                                                            self.max_package, self.max_segment)

    def cancel_session(self, transaction_id, cancel_session_response):
        body = es9p.cancel_session_request(transaction_id, cancel_session_response,
                                           **self._kw())
        es9p.decode_cancel_session_response(self._call("cancelSession", body))

    def close(self):
        """Close the network (a cancel after a cut opens its own, ipa_core.ipa_cancel)."""
        close = getattr(self.network, "close", None)
        if close is not None:
            close()

    def handle_notification(self, pending_notification):
        """ES9+.HandleNotification (a PIR or other notification for this SM-DP+)."""
        body = es9p.handle_notification_request(pending_notification, **self._kw())
        es9p.decode_handle_notification_response(self._call("handleNotification", body))


def _read_some(reader, limit):
    """At most `limit` bytes of a reader (an error answer's body, for its header)."""
    out = b""
    while len(out) < limit:
        data = reader.read(limit - len(out))
        if not data:
            break
        out += data
    return out
