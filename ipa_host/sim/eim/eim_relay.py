"""The eIM's relay of an indirect profile download (SGP.32 v1.2 3.2.3, 6.3.2.1-6.3.2.4): ESipa
from the IPA in, ES9+ JSON (SGP.22 v2.5 6.5) to the SM-DP+ out.

    relay = SmdpRelay(ca_file="smdp-ca.pem")          # EimServer(..., smdp_ca_file=...)
    answer_der, note = relay.handle(esipa_request_tlv)  # BF39 / BF3B / BF3A / BF41

The eIM is the ES9+ client of the SM-DP+ (https://<smdpAddress>, the address
the IPA sends in InitiateAuthenticationRequestEsipa, trusting `ca_file`, else
the system CAs) and answers the IPA with the ESipa alternative:

    BF39 { A0 { 80 transactionId, 30 serverSigned1, 5F37, 04 euiccCiPKIdentifierToBeUsed,
                30 serverCertificate } }        | BF39 { 81 initiateAuthenticationErrorEsipa }
    BF3B { A0 { 80 transactionId, BF25 profileMetaData?, 30 smdpSigned2, 5F37,
                30 smdpCertificate } }          | BF3B { 82 authenticateClientErrorEsipa }
    BF3A { A0 { 80 transactionId, BF36 boundProfilePackage } } | BF3A { 81 error }
    BF41 { A0 00 cancelSessionOk }              | BF41 { 81 cancelSessionError }

(AUTOMATIC TAGS: every answer is a CHOICE of untagged alternatives, so they are
[0], [1], [2]; the ok SEQUENCEs have tagged components, so theirs stay as written.)
Every object from the SM-DP+ goes to the IPA byte for byte (it is signed). The
requests' objects go to the SM-DP+ byte for byte too, except the cancelSessionResponse,
whose [1] tag ('A1', replacing 'BF41') is put back to 'BF41' for ES9+.

The eIM keeps, per transactionId the SM-DP+ gave, the SM-DP+ address and one
kept-alive HTTPS connection (at most MAX_SESSIONS, SESSION_TTL seconds), so
AuthenticateClient / GetBoundProfilePackage / CancelSession go to the same
SM-DP+. An SM-DP+ "Failed" status is mapped to the ESipa error code by its
subjectCode/reasonCode (ES9_STATUS, SGP.22 status codes as this project reads
them; unknown pairs -> undefinedError); an unreachable or untrusted SM-DP+, a
broken answer, or a request the eIM cannot relay (no smdpAddress, compact
forms of minimizeEsipaBytes, a missing component) -> undefinedError, with the
reason in the note ("relay not available: ...") that the request log shows.
An unknown transactionId -> the function's invalidTransactionId.

`notify_pir(pir_der)`: ES9+.HandleNotification of a ProfileInstallationResult to
the SM-DP+ of a session this eIM relayed (matched by transactionId), so the
SM-DP+ learns the outcome (optional; failures only noted).
"""

import base64
import binascii
import collections
import json
import threading
import time

from ipa_core import tlv
from ipa_core.errors import IpaError, TlvError

ES9_PATH = "/gsma/rsp2/es9plus/"
ES9_CONTENT_TYPE = "application/json;charset=UTF-8"
ES9_HEADERS = {"X-Admin-Protocol": "gsma/rsp/v2.1.0"}
MAX_SESSIONS = 64
SESSION_TTL = 600.0
MAX_ADDRESS = 255
MAX_PACKAGE = 0xFFFFFF  # bytes of a relayed BPP: the longest 3-byte TLV length (2 MB profiles)
MAX_ANSWER = (MAX_PACKAGE + 2) // 3 * 4 + 65536  # an SM-DP+ answer: its base64, and the rest

INITIATE_AUTHENTICATION, AUTHENTICATE_CLIENT = 0xBF39, 0xBF3B
GET_BOUND_PROFILE_PACKAGE, CANCEL_SESSION = 0xBF3A, 0xBF41
FUNCTIONS = {INITIATE_AUTHENTICATION: "initiateAuthentication",
             AUTHENTICATE_CLIENT: "authenticateClient",
             GET_BOUND_PROFILE_PACKAGE: "getBoundProfilePackage", CANCEL_SESSION: "cancelSession"}
ERROR_TAGS = {INITIATE_AUTHENTICATION: 0x81, AUTHENTICATE_CLIENT: 0x82,
              GET_BOUND_PROFILE_PACKAGE: 0x81, CANCEL_SESSION: 0x81}
UNDEFINED_ERROR = 127
INVALID_TRANSACTION_ID = {AUTHENTICATE_CLIENT: 10, GET_BOUND_PROFILE_PACKAGE: 95, CANCEL_SESSION: 1}

# ES9+ (subjectCode, reasonCode) -> the ESipa error code of the same error (SGP32Definitions
# names; the pairs are SGP.22's as read for the SM-DP+ simulator; UNCONFIRMED for some).
ES9_STATUS = {
    "initiateAuthentication": {("8.8.1", "3.8"): 1, ("8.8.3", "3.1"): 2, ("8.8.2", "3.1"): 3},
    "authenticateClient": {("8.1.2", "6.1"): 1, ("8.1.2", "6.3"): 2, ("8.1.3", "6.1"): 3,
                           ("8.1.3", "6.3"): 4, ("8.1", "6.1"): 5, ("8.2.6", "3.8"): 6,
                           ("8.1.1", "3.8"): 7, ("8.2", "3.7"): 8, ("8.11.1", "3.9"): 9,
                           ("8.10.1", "3.9"): 10, ("8.1", "4.8"): 11},
    "getBoundProfilePackage": {("8.1", "6.1"): 1, ("8.2.7", "2.2"): 2, ("8.2.7", "3.8"): 3,
                               ("8.2.7", "6.4"): 4, ("8.2", "3.8"): 5, ("8.8.5", "4.10"): 6,
                               ("8.10.1", "3.9"): 95},
    "cancelSession": {("8.10.1", "3.9"): 1, ("8.1", "6.1"): 2},
}
# the other way, for the JSON binding's "Failed" header
ESIPA_STATUS = {f: {code: pair for pair, code in m.items()} for f, m in ES9_STATUS.items()}


class RelayError(Exception):
    """The relayed function failed: `code` is the ESipa error code to answer."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _hex(b):
    return binascii.hexlify(bytes(b)).decode().upper()


def _b64(b):
    return base64.b64encode(bytes(b)).decode("ascii")


def error_answer(tag, code):
    """The error alternative of a relay answer: BF39 { 81 code } etc."""
    return tlv.encode(tag, tlv.encode(ERROR_TAGS[tag], tlv.int_encode(code)))


def _full_response(t, tag, name):
    """(transactionId, the eUICC's response `name`) of an ESipa request; its compact form
    (minimizeEsipaBytes, first element [2]) cannot be relayed: RelayError."""
    tid = _need(t, 0x80, "transactionId").value
    r = _need(t, tag, name)
    kids = r.children() if r.constructed else []
    if kids and kids[0].tag == 0xA2:
        raise RelayError(UNDEFINED_ERROR, "relay not available: compact %s (minimizeEsipaBytes)"
                         " is not supported" % name)
    return tid, r


def _need(t, tag, what):
    c = t.find(tag)
    if c is None:
        raise RelayError(UNDEFINED_ERROR, "relay not available: %s (%X) missing in the request"
                         % (what, tag))
    return c


class _Session:
    def __init__(self, tid, address, network):
        self.tid = tid
        self.address = address
        self.network = network
        self.created = time.monotonic()
        self.ended = False


class SmdpRelay:
    """The eIM's ES9+ client for indirect downloads; see the module docstring.

    ca_file: PEM CA bundle trusted for the SM-DP+'s TLS (None: system CAs);
    timeout: seconds for each network wait (HttpsNetwork bounds one request to 4x);
    network_factory(base_url) -> a network with post()/close(), for tests.
    """

    def __init__(self, ca_file=None, timeout=30, network_factory=None):
        self.ca_file = ca_file
        self.timeout = timeout
        self._factory = network_factory
        self._lock = threading.Lock()
        self._sessions = collections.OrderedDict()  # transactionId bytes -> _Session
        self.pirs_forwarded = []

    # ---- sessions ------------------------------------------------------------------------

    def _network(self, address):
        url = "https://" + address
        if self._factory is not None:
            return self._factory(url)
        from ipa_host.net.https import HttpsNetwork  # the same HTTPS stack the IPA uses
        return HttpsNetwork(url, ca_file=self.ca_file, timeout=self.timeout,
                            max_body=MAX_ANSWER)

    def _expire(self):
        now = time.monotonic()
        drop = [t for t, s in self._sessions.items() if now - s.created > SESSION_TTL]
        while len(self._sessions) - len(drop) > MAX_SESSIONS:
            for t in self._sessions:
                if t not in drop:
                    drop.append(t)
                    break
        for t in drop:
            _close(self._sessions.pop(t).network)

    def _session(self, tid, tag):
        with self._lock:
            self._expire()
            s = self._sessions.get(tid)
        if s is None or s.ended:
            raise RelayError(INVALID_TRANSACTION_ID[tag], "transactionId %s: %s" % (
                _hex(tid), "not a session this eIM relays" if s is None else "session ended"))
        return s

    def _end(self, s):
        s.ended = True  # kept (until it expires) so a PIR can still be forwarded
        _close(s.network)

    def close(self):
        with self._lock:
            for s in self._sessions.values():
                _close(s.network)
            self._sessions.clear()

    # ---- ES9+ ---------------------------------------------------------------------------

    def _call(self, network, function, obj):
        """POST one ES9+ function -> the JSON answer (None for 204); RelayError on failure."""
        body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
        try:
            status, rbody = network.post(ES9_PATH + function, body, ES9_CONTENT_TYPE,
                                         ES9_HEADERS)
        except (IpaError, OSError, ValueError) as e:
            raise RelayError(UNDEFINED_ERROR, "relay not available: SM-DP+ %s: %s"
                             % (function, e))
        if status == 204:
            return None
        try:
            answer = json.loads(bytes(rbody).decode("utf-8"))
        except (UnicodeError, ValueError):
            answer = None
        if status != 200 or not isinstance(answer, dict):
            raise RelayError(UNDEFINED_ERROR, "relay not available: SM-DP+ %s answered HTTP %s"
                             " %r" % (function, status, bytes(rbody[:100])))
        fes = (answer.get("header") or {}).get("functionExecutionStatus") or {}
        if not str(fes.get("status", "")).startswith("Executed-"):
            scd = fes.get("statusCodeData") or {}
            pair = (str(scd.get("subjectCode")), str(scd.get("reasonCode")))
            code = ES9_STATUS[function].get(pair, UNDEFINED_ERROR)
            raise RelayError(code, "SM-DP+ %s failed: %s/%s %s" % (function, pair[0], pair[1],
                                                                   scd.get("message", "")))
        return answer

    # ---- ESipa --------------------------------------------------------------------------

    def handle(self, t):
        """One ESipa download request (a Tlv: BF39, BF3B, BF3A or BF41) -> (answer DER, note)."""
        function = FUNCTIONS[t.tag]
        try:
            if not t.constructed:
                raise RelayError(UNDEFINED_ERROR, "relay not available: %X is not constructed"
                                 % t.tag)
            fn = {INITIATE_AUTHENTICATION: self._initiate_authentication,
                  AUTHENTICATE_CLIENT: self._authenticate_client,
                  GET_BOUND_PROFILE_PACKAGE: self._get_bound_profile_package,
                  CANCEL_SESSION: self._cancel_session}[t.tag]
            return fn(t)
        except RelayError as e:
            return error_answer(t.tag, e.code), "%s: error %d: %s" % (function, e.code, e)
        except (TlvError, ValueError, KeyError, TypeError) as e:
            # the SM-DP+'s answer did not hold what ES9+ says (the request parsed already)
            return error_answer(t.tag, UNDEFINED_ERROR), (
                "%s: relay not available: broken SM-DP+ answer: %s" % (function, e))

    def _initiate_authentication(self, t):
        challenge = _need(t, 0x81, "euiccChallenge").value
        if len(challenge) != 16:
            raise RelayError(UNDEFINED_ERROR, "relay not available: euiccChallenge of %d bytes,"
                             " expected 16" % len(challenge))
        addr = t.find(0x83)
        if addr is None:
            raise RelayError(UNDEFINED_ERROR, "relay not available: no smdpAddress in the "
                             "request, and this eIM has no default SM-DP+")
        try:
            address = addr.as_str()
        except (TlvError, UnicodeError):
            raise RelayError(1, "smdpAddress is not UTF-8")
        if not 0 < len(address) <= MAX_ADDRESS or any(c in address for c in "/?#@ "):
            raise RelayError(1, "smdpAddress %r is not a host[:port]" % address[:80])
        info1 = t.find(0xBF20)
        if info1 is None:  # the SM-DP+ needs it (ES9+ euiccInfo1 is mandatory)
            raise RelayError(UNDEFINED_ERROR, "relay not available: no euiccInfo1 (BF20) in "
                             "the request")
        try:
            network = self._network(address)
        except ValueError as e:
            raise RelayError(1, "smdpAddress %r: %s" % (address[:80], e))
        try:
            a = self._call(network, "initiateAuthentication", {
                "euiccChallenge": _b64(challenge), "smdpAddress": address,
                "euiccInfo1": _b64(info1.raw)})
            tid = _tid(a)
            parts = [tlv.encode(0x80, tid), _obj(a, "serverSigned1", 0x30),
                     _obj(a, "serverSignature1", 0x5F37),
                     _obj(a, ("euiccCiPKIdToBeUsed", "euiccCiPKIdentifierToBeUsed"), 0x04),
                     _obj(a, "serverCertificate", 0x30)]
        except BaseException:
            _close(network)
            raise
        with self._lock:
            self._expire()
            old = self._sessions.pop(tid, None)
            if old is not None:
                _close(old.network)
            self._sessions[tid] = _Session(tid, address, network)
        return (tlv.encode(t.tag, tlv.encode(0xA0, b"".join(parts))),
                "initiateAuthentication relayed to %s: transactionId %s" % (address, _hex(tid)))

    def _authenticate_client(self, t):
        tid, asr = _full_response(t, 0xBF38, "authenticateServerResponse")
        s = self._session(tid, t.tag)
        a = self._call(s.network, "authenticateClient", {
            "transactionId": _hex(tid), "authenticateServerResponse": _b64(asr.raw)})
        if _tid(a) != tid:
            raise RelayError(UNDEFINED_ERROR, "SM-DP+ answered transactionId %s, expected %s"
                             % (_hex(_tid(a)), _hex(tid)))
        parts = [tlv.encode(0x80, tid)]
        if a.get("profileMetadata") is not None:
            parts.append(_obj(a, "profileMetadata", 0xBF25))
        parts += [_obj(a, "smdpSigned2", 0x30), _obj(a, "smdpSignature2", 0x5F37),
                  _obj(a, "smdpCertificate", 0x30)]
        return (tlv.encode(t.tag, tlv.encode(0xA0, b"".join(parts))),
                "authenticateClient relayed to %s" % s.address)

    def _get_bound_profile_package(self, t):
        tid, pdr = _full_response(t, 0xBF21, "prepareDownloadResponse")
        s = self._session(tid, t.tag)
        a = self._call(s.network, "getBoundProfilePackage", {
            "transactionId": _hex(tid), "prepareDownloadResponse": _b64(pdr.raw)})
        bpp = _obj(a, "boundProfilePackage", 0xBF36)
        self._end(s)
        return (tlv.encode(t.tag, tlv.encode(0xA0, tlv.encode(0x80, tid) + bpp)),
                "getBoundProfilePackage relayed to %s: %d bytes" % (s.address, len(bpp)))

    def _cancel_session(self, t):
        tid = _need(t, 0x80, "transactionId").value
        csr = _need(t, 0xA1, "cancelSessionResponse")
        kids = csr.children() if csr.constructed else []
        if not kids or kids[0].tag != 0xA0:
            raise RelayError(UNDEFINED_ERROR, "relay not available: cancelSessionResponse is "
                             "not cancelSessionResponseOk (A0)")
        with self._lock:
            s = self._sessions.get(tid)
        if s is None:
            raise RelayError(INVALID_TRANSACTION_ID[t.tag], "transactionId %s: not a session "
                             "this eIM relays" % _hex(tid))
        network = s.network
        if s.ended:  # the SM-DP+ may still hold the session (e.g. after a refusal): tell it
            network = self._network(s.address)
        try:
            self._call(network, "cancelSession", {
                "transactionId": _hex(tid), "cancelSessionResponse": _b64(
                    tlv.encode(0xBF41, csr.value))})
        finally:
            _close(network)
            s.ended = True
        return tlv.encode(t.tag, tlv.encode(0xA0)), "cancelSession relayed to %s" % s.address

    # ---- notifications --------------------------------------------------------------------

    def notify_pir(self, pir_der):
        """ES9+.HandleNotification of a PIR 'BF37' to the SM-DP+ of the relayed session it
        belongs to -> a note, or None when it is not one of this eIM's sessions."""
        try:
            t = tlv.decode(pir_der)
            tid = t.need(0xBF27, "profileInstallationResultData").need(0x80, "transactionId")
        except TlvError:
            return None
        with self._lock:
            s = self._sessions.get(tid.value)
        if s is None:
            return None
        network = self._network(s.address)
        try:
            self._call(network, "handleNotification", {"pendingNotification": _b64(pir_der)})
            note = "PIR %s forwarded to %s" % (_hex(tid.value), s.address)
        except RelayError as e:
            note = "PIR %s not forwarded to %s: %s" % (_hex(tid.value), s.address, e)
        finally:
            _close(network)
        self.pirs_forwarded.append({"time": time.time(), "transactionId": _hex(tid.value),
                                    "address": s.address, "note": note})
        return note


def _close(network):
    close = getattr(network, "close", None)
    if close is not None:
        try:
            close()
        except (IpaError, OSError):
            pass


def _tid(answer):
    v = answer.get("transactionId")
    if not isinstance(v, str) or not 2 <= len(v) <= 32:
        raise ValueError("transactionId: expected 1..16 bytes of hex, got %r" % (v,))
    return binascii.unhexlify(v)


def _obj(answer, keys, tag):
    """A base64 ES9+ field that must be one TLV with `tag` -> its exact bytes."""
    keys = keys if isinstance(keys, tuple) else (keys,)
    v = next((answer[k] for k in keys if k in answer), None)
    if not isinstance(v, str):
        raise ValueError("%s: expected base64, got %r" % (keys[0], v))
    try:
        raw = base64.b64decode(v.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeError):
        raise ValueError("%s: not valid base64" % keys[0])
    if tag == 0x04 and raw[:1] != b"\x04":  # some SM-DP+ send the bare key identifier
        return tlv.encode(0x04, raw)
    t = tlv.decode(raw, max_len=MAX_PACKAGE)
    if t.tag != tag or len(t.raw) != len(raw):
        raise ValueError("%s: expected one TLV with tag %X, got tag %X" % (keys[0], tag, t.tag))
    return raw
