"""HTTP(S) front ends of the simulated eIM: ESipa (both bindings) and the operator API.

ESipa (SGP.32 v1.2 6.1, 6.3, 6.4), HTTP/1.1 with keep-alive, TLS by default:

    POST /gsma/rsp2/asn1              Content-Type application/x-gsma-rsp-asn1
    POST /gsma/rsp2/esipa/<function>  Content-Type application/json
    both need X-Admin-Protocol: gsma/rsp/v<x.y.z>

Answers: 200 with the ESipa answer (function errors included, as the
function's error alternative or a "Failed" JSON header); 204 for
HandleNotification; 400 with a text reason for a broken message, 404
unknown path, 405 not POST, 411 no Content-Length, 413 body over the
bound, 415 wrong Content-Type, 500 (logged) if the simulator itself fails.
The connection stays open after an error whose body was read whole.

Each connection is served by its own thread; the TLS handshake runs there
too (bounded by the idle timeout), so a stalled client holds only its own
thread. Every request is recorded (see EimServer.requests).
"""

import json
import logging
import re
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ipa_host.sim.eim import eim_json
from ipa_host.sim.eim.eim_esipa import MAX_BODY, EsipaRefused

log = logging.getLogger("ipa_host.sim.eim.eim")

ASN1_PATH = "/gsma/rsp2/asn1"
ASN1_CONTENT_TYPE = "application/x-gsma-rsp-asn1"
ADMIN_PROTOCOL = "gsma/rsp/v2.1.0"
MAX_API_BODY = 1 << 20
BODY_DEADLINE = 60.0  # seconds to receive one whole request body


class HttpError(Exception):
    def __init__(self, status, reason, close=False):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.close = close


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with TLS handshakes in the connection threads, connection ids,
    and a way to drop every open connection on stop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, owner, ssl_context=None, idle_timeout=30.0):
        self.owner = owner
        self.ssl_context = ssl_context
        self.idle_timeout = idle_timeout
        self._conn_lock = threading.Lock()
        self._open = set()
        self._next_conn = 0
        self.tls_handshakes = {"full": 0, "resumed": 0}  # TLS resumption seen (tests, benches)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        with self._conn_lock:
            self._open.add(request)
        conn = request
        try:
            try:  # head and body go out as separate writes: no Nagle wait between them
                request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            if self.ssl_context is not None:
                request.settimeout(self.idle_timeout)
                try:
                    conn = self.ssl_context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    self.owner.note_handshake_failure(client_address, e)
                    return
                with self._conn_lock:
                    self._open.add(conn)
                    self.tls_handshakes["resumed" if conn.session_reused else "full"] += 1
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            with self._conn_lock:
                self._open.discard(request)
                self._open.discard(conn)
            if conn is not request:
                try:
                    conn.close()
                except OSError:
                    pass

    def new_connection_id(self):
        with self._conn_lock:
            self._next_conn += 1
            return self._next_conn

    def drop_connections(self):
        with self._conn_lock:
            socks = list(self._open)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        err = sys.exc_info()[1]
        if isinstance(err, (OSError, ssl.SSLError)):  # resets, timeouts, stop(): routine
            log.debug("eIM simulator: connection from %s ended: %r", client_address, err)
        else:
            log.exception("eIM simulator: connection from %s failed", client_address)


class _Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ipa-iot-eim-sim"
    sys_version = ""

    def setup(self):
        self.timeout = self.server.idle_timeout
        super().setup()
        self.conn = {"id": self.server.new_connection_id(), "eid": None,
                     "peer": "%s:%s" % self.client_address[:2]}

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.conn["peer"] if hasattr(self, "conn") else "-", fmt % args)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, too many headers, ...) as plain text
        with a status line, even when the request line was too broken to name HTTP/1.x."""
        if self.request_version == "HTTP/0.9" or not self.request_version:
            self.request_version = "HTTP/1.1"
        self.close_connection = True
        reason = "%d %s\n" % (code, message or self.responses.get(code, ("",))[0])
        try:
            self.send(code, reason.encode("utf-8", "replace"), "text/plain")
        except OSError:
            pass

    def read_body(self, limit):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HttpError(411, "chunked request bodies are not accepted: send Content-Length",
                            close=True)
        cl = self.headers.get("Content-Length")
        if cl is None:
            raise HttpError(411, "Content-Length is required", close=True)
        try:
            n = int(cl.strip())
            if n < 0:
                raise ValueError
        except ValueError:
            raise HttpError(400, "Content-Length: expected a decimal byte count, got %r" % cl[:40],
                            close=True)
        if n > limit:
            raise HttpError(413, "request body of %d bytes is over the bound of %d bytes"
                            % (n, limit), close=True)
        deadline = time.monotonic() + BODY_DEADLINE
        out = bytearray()
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HttpError(408, "request body: %d of %d bytes within %.0f s"
                                % (len(out), n, BODY_DEADLINE), close=True)
            self.connection.settimeout(min(left, self.server.idle_timeout))
            try:
                chunk = self.rfile.read1(min(n - len(out), 65536))
            except (socket.timeout, OSError):
                raise HttpError(408, "request body: %d of %d bytes, then silence"
                                % (len(out), n), close=True)
            if not chunk:
                raise HttpError(400, "request body: the connection closed after %d of %d bytes"
                                % (len(out), n), close=True)
            out += chunk
        self.connection.settimeout(self.server.idle_timeout)
        return bytes(out)

    def send(self, status, body=b"", content_type=None, extra=None):
        self.send_response(status)
        if extra:
            for k, v in extra.items():
                self.send_header(k, v)
        if status != 204:
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if status != 204 and body:
            self.wfile.write(body)

    def not_post(self):
        if self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"):
            try:
                self.read_body(MAX_BODY)  # keep the connection in step
            except HttpError:
                self.close_connection = True
        self.send(405, b"only POST is served here\n", "text/plain", {"Allow": "POST"})

    do_GET = do_PUT = do_DELETE = do_PATCH = not_post



    def answer(self, rec, work, who):
        """Run work() -> (status, body, content type) and send it; an HttpError becomes its
        plain-text answer, a simulator bug a 500 (logged, the server keeps serving); the
        exchange is recorded on the owner either way."""
        try:
            status, body, ctype = work()
        except HttpError as e:
            if e.close:
                self.close_connection = True
            rec["error"] = e.reason
            status, body, ctype = e.status, (e.reason + "\n").encode(), "text/plain"
            if "response" in rec:
                rec["response"] = body
        except Exception as e:  # a simulator bug: answer, log, keep serving
            log.exception("%s simulator: %s failed", who, rec["function"] or self.path)
            self.close_connection = True
            rec["error"] = "internal error: %r" % (e,)
            status, body, ctype = 500, ("internal error in the %s simulator\n" % who).encode(), \
                "text/plain"
            if "response" in rec:
                rec["response"] = body
        rec["status"] = status
        self.server.owner.record(rec)
        try:
            self.send(status, body, ctype, {"X-Admin-Protocol": ADMIN_PROTOCOL})
        except OSError:
            self.close_connection = True

class EsipaHandler(_Base):
    """POST /gsma/rsp2/asn1 and /gsma/rsp2/esipa/<function>."""

    def do_POST(self):
        rec = {"time": time.time(), "path": self.path, "binding": None, "function": None,
               "eid": None, "status": None, "request": b"", "response": b"", "note": None,
               "error": None, "conn": self.conn["id"], "peer": self.conn["peer"]}

        def work():
            try:
                body = self.read_body(MAX_BODY)
                rec["request"] = body
                status, answer, ctype = self._serve(body, rec)
            except EsipaRefused as e:
                raise HttpError(400, str(e))
            rec["response"] = answer
            return status, answer, ctype

        self.answer(rec, work, "eIM")

    def _check_headers(self, want_type):
        proto = self.headers.get("X-Admin-Protocol")
        if not proto or not proto.strip().startswith("gsma/rsp/v"):
            raise HttpError(400, "X-Admin-Protocol: expected %s, got %r"
                            % (ADMIN_PROTOCOL, proto))
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != want_type:
            raise HttpError(415, "Content-Type: expected %s, got %r"
                            % (want_type, self.headers.get("Content-Type")))

    def _serve(self, body, rec):
        svc = self.server.owner.service
        path = urlsplit(self.path).path
        if path == ASN1_PATH:
            rec["binding"] = "asn1"
            self._check_headers(ASN1_CONTENT_TYPE)
            answer, info = svc.handle(body, self.conn)
            rec.update({"function": info["function"], "eid": info["eid"], "note": info["note"]})
            return info["status"], answer, ASN1_CONTENT_TYPE
        if path.startswith(eim_json.PATH_PREFIX):
            rec["binding"] = "json"
            function = path[len(eim_json.PATH_PREFIX):]
            rec["function"] = function
            if function not in eim_json.FUNCTION_TAGS:
                raise HttpError(404, "unknown ESipa function %r (known: %s)"
                                % (function, ", ".join(sorted(eim_json.FUNCTION_TAGS))))
            self._check_headers("application/json")
            obj = eim_json.parse_body(body)
            if function in eim_json.RELAYS:
                rec["note"] = "not served: " + eim_json.RELAY_NOTE
                return 200, _json(eim_json.answer_to_json(function, b"")), eim_json.CONTENT_TYPE
            if function == "transferEimPackage":
                raise EsipaRefused("transferEimPackage answers an eIM push, and this eIM does "
                                   "not push (eimRetrieveHttps only)")
            der = eim_json.request_to_asn1(function, obj, svc.version)
            answer, info = svc.handle(der, self.conn)
            rec.update({"eid": info["eid"], "note": info["note"]})
            if info["status"] == 204:
                return 204, b"", None
            return 200, _json(eim_json.answer_to_json(function, answer)), eim_json.CONTENT_TYPE
        raise HttpError(404, "unknown path %s: ESipa is POST %s or %s<function>"
                        % (self.path[:80], ASN1_PATH, eim_json.PATH_PREFIX))


def _json(obj):
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


# ---- operator API ------------------------------------------------------------------------

_EID_ROUTE = re.compile(r"^/eids/([^/]+)(?:/([a-z-]+))?/?$")


class ApiHandler(_Base):
    """The operator's JSON API (loopback, no authentication: a lab tool).

    POST /eids/<eid>                    register/update {associationToken?, counter?,
                                        euiccCertificate? (PEM or hex DER)}
    POST /eids/<eid>/psmo               {ops: [...], transactionId?}
    POST /eids/<eid>/eco                {ops: [...], transactionId?}
    POST /eids/<eid>/ipa-data-request   {tagList, euiccCiPKId?, notificationSeqNumber?,
                                         notificationEvents?, resultSeqNumber?, transactionId?}
    POST /eids/<eid>/download-trigger   {activationCode | contactDefaultSmdp | contactSmds,
                                         transactionId?}
    GET  /eids                          known EIDs
    GET  /eids/<eid>                    summary (counter, token, queue length, ...)
    GET  /eids/<eid>/results | notifications | queue | delivered | acknowledged | log
    DELETE /eids/<eid>/queue            drop what is queued
    GET  /log[?eid=...]                 every ESipa request (bytes as hex)
    GET  /unattributed                  notifications no known EID was found for
    """

    def do_GET(self):
        self._api("GET")

    def do_POST(self):
        self._api("POST")

    def do_DELETE(self):
        self._api("DELETE")

    def not_post(self):
        self.close_connection = True
        self.send(405, b'{"error": "GET, POST or DELETE"}\n', "application/json",
                  {"Allow": "GET, POST, DELETE"})

    do_PUT = do_PATCH = not_post

    def _api(self, method):
        try:
            try:
                body = self.read_body(MAX_API_BODY) if method == "POST" else b""
                if method != "POST" and self.headers.get("Content-Length", "0") not in ("0", ""):
                    self.read_body(MAX_API_BODY)
                status, obj = self._route(method, body)
            except ValueError as e:
                raise HttpError(400, str(e))
        except HttpError as e:
            if e.close:
                self.close_connection = True
            status, obj = e.status, {"error": e.reason}
        except Exception as e:
            log.exception("eIM operator API: %s %s failed", method, self.path)
            self.close_connection = True
            status, obj = 500, {"error": "internal error: %r" % (e,)}
        try:
            self.send(status, json.dumps(obj, indent=1).encode() + b"\n", "application/json")
        except OSError:
            self.close_connection = True

    def _route(self, method, body):
        owner = self.server.owner
        u = urlsplit(self.path)
        path = u.path
        if path in ("/log", "/log/") and method == "GET":
            q = parse_qs(u.query)
            return 200, owner.requests_json(eid=(q.get("eid") or [None])[0])
        if path in ("/eids", "/eids/") and method == "GET":
            return 200, owner.eids()
        if path == "/unattributed" and method == "GET":
            return 200, owner.unattributed()
        m = _EID_ROUTE.match(path)
        if not m:
            raise HttpError(404, "unknown path %s (see GET /eids, /log)" % path[:80])
        eid, what = m.group(1), m.group(2)
        params = {}
        if method == "POST":
            try:
                params = json.loads(body.decode("utf-8")) if body.strip() else {}
            except (UnicodeError, ValueError) as e:
                raise HttpError(400, "body is not JSON: %s" % e)
            if not isinstance(params, dict):
                raise HttpError(400, "body must be a JSON object")
        if method == "POST":
            if what is None:
                return 200, owner.register_eid_json(eid, params)
            kinds = {"psmo": "psmo", "eco": "eco", "ipa-data-request": "ipaEuiccDataRequest",
                     "download-trigger": "profileDownloadTrigger"}
            if what not in kinds:
                raise HttpError(404, "POST /eids/<eid>/%s: expected one of %s"
                                % (what, ", ".join(kinds)))
            txid = params.pop("transactionId", None)
            return 201, owner.service.queue(eid, kinds[what], params, transaction_id=txid)
        if method == "DELETE":
            if what != "queue":
                raise HttpError(404, "DELETE is served for /eids/<eid>/queue only")
            return 200, owner.clear_queue(eid)
        return 200, owner.eid_view(eid, what)
