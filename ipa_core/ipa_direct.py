"""Direct profile download transport: ES9+ JSON to the SM-DP+ (SGP.22 v2.5 5.6, SGP.32 v1.2 3.2.3).

The server side of ipa_core.ipa_download.download() when the IPAd reaches
the SM-DP+ itself (ipa_core.es9p, base64 in JSON: the bound profile package
arrives whole). Kept apart from ipa_download so that a board doing only
indirect downloads (relayed by the eIM) does not load es9p, b64 or json.

    r = download(session, DirectTransport(network), activation="LPA:1$dp.example$ABC-123")
"""

from ipa_core import es9p
from ipa_core.errors import IpaError, ProtocolError


class DirectTransport:
    """ES9+ JSON to the SM-DP+: `network.post(path, body, content_type, headers)` bound to
    https://<SM-DP+ address> (ipa_host.net.https.HttpsNetwork, or any such object)."""

    name = "direct"

    def __init__(self, network, requester=None):
        self.network = network
        self.requester = requester
        self.calls = 0

    def _call(self, function, body):
        self.calls += 1
        status, rbody = self.network.post(es9p.path(function), body, es9p.CONTENT_TYPE,
                                          es9p.HEADERS)
        if status in (200, 204):
            return rbody
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
        body = es9p.get_bound_profile_package_request(transaction_id, prepare_download_response,
                                                      **self._kw())
        return es9p.decode_get_bound_profile_package_response(
            self._call("getBoundProfilePackage", body), transaction_id)

    def cancel_session(self, transaction_id, cancel_session_response):
        body = es9p.cancel_session_request(transaction_id, cancel_session_response,
                                           **self._kw())
        es9p.decode_cancel_session_response(self._call("cancelSession", body))

    def handle_notification(self, pending_notification):
        """ES9+.HandleNotification (a PIR or other notification for this SM-DP+)."""
        body = es9p.handle_notification_request(pending_notification, **self._kw())
        es9p.decode_handle_notification_response(self._call("handleNotification", body))
