"""HTTPS front end of the simulated SM-DP+: ES9+ JSON binding (SGP.22 v2.5 6.5).

    POST /gsma/rsp2/es9plus/<function>   Content-Type application/json
                                         X-Admin-Protocol gsma/rsp/v<x.y.z>

Answers: 200 JSON (function errors as header.functionExecutionStatus
"Failed"), 204 for handleNotification, 400 with a text reason for a request
that is not ES9+ JSON, 404 unknown path or function, 405 not POST, 411/413
body framing, 415 wrong Content-Type, 500 (logged) on a simulator bug.
The connection handling (TLS handshake per thread, keep-alive, bounded
bodies) is the eIM simulator's (eim_http.Server / _Base).

Broken answers for tests: SmdpServer.faults[function] = fault(body) ->
(body, cut): the JSON answer replaced by `body` (malformed, reordered, a
"Failed" header after the package, ...), and with `cut` (a byte count) the
full Content-Length announced but only `cut` bytes sent before the
connection closes.
"""

import json
import logging
import time
from urllib.parse import urlsplit

from ipa_host.sim.eim.eim_http import HttpError, _Base
from ipa_host.sim.smdpp.smdpp_es9 import Es9Refused

log = logging.getLogger("ipa_host.sim.smdpp.smdpp")

PATH_PREFIX = "/gsma/rsp2/es9plus/"
ADMIN_PROTOCOL = "gsma/rsp/v2.1.0"
MAX_BODY = 64 * 1024
FUNCTIONS = ("initiateAuthentication", "authenticateClient", "getBoundProfilePackage",
             "handleNotification", "cancelSession")


class Es9Handler(_Base):
    server_version = "ipa-iot-smdpp-sim"
    _cut = None
    PATHS = {PATH_PREFIX: FUNCTIONS}  # the SM-DS handler serves ES11 and ES12 the same way
    PEER = "SM-DP+"

    def do_POST(self):
        rec = {"time": time.time(), "path": self.path, "function": None, "status": None,
               "error": None, "conn": self.conn["id"], "peer": self.conn["peer"]}
        self._cut = None

        def work():
            try:
                status, answer = self._serve(rec)
            except Es9Refused as e:
                raise HttpError(400, str(e))
            if answer is None:
                return status, b"", None
            body = json.dumps(answer, separators=(",", ":")).encode()
            fault = self.server.owner.faults.get(rec["function"])
            if fault is not None:
                body, self._cut = fault(body)
            return status, body, "application/json;charset=UTF-8"

        self.answer(rec, work, self.PEER)

    def send(self, status, body=b"", content_type=None, extra=None):
        if self._cut is None or status != 200:
            return super().send(status, body, content_type, extra)
        self.close_connection = True  # a fault: the answer is cut, the connection dropped
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:self._cut])
        self.wfile.flush()

    def _serve(self, rec):
        path = urlsplit(self.path).path
        prefix = path[:path.rfind("/") + 1]
        if prefix not in self.PATHS:
            self.read_body(MAX_BODY)
            raise HttpError(404, "unknown path %s: expected POST %s<function>"
                            % (self.path[:80], " or ".join(sorted(self.PATHS))))
        function = path[len(prefix):]
        rec["function"] = function
        body = self.read_body(MAX_BODY)
        if function not in self.PATHS[prefix]:
            raise HttpError(404, "unknown function %r under %s (known: %s)"
                            % (function, prefix, ", ".join(self.PATHS[prefix])))
        proto = self.headers.get("X-Admin-Protocol")
        if not proto or not proto.strip().startswith("gsma/rsp/v"):
            raise HttpError(400, "X-Admin-Protocol: expected %s, got %r" % (ADMIN_PROTOCOL, proto))
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HttpError(415, "Content-Type: expected application/json, got %r" % self.headers.get("Content-Type"))
        try:
            obj = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise HttpError(400, "request body is not JSON: %s" % e)
        if not isinstance(obj, dict):
            raise HttpError(400, "request body: expected a JSON object")
        return self.server.owner.service.handle(function, obj)
