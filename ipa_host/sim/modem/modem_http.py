"""The simulated modem's own HTTP(S) stacks: what the three vendors' stacks share.

A modem with `http_stack` set in its personality (modem_personality.py) serves
the AT commands of one vendor's HTTP client and sends each request, for real,
to the server named in the URL:

    quectel  AT+QHTTPCFG/QSSLCFG/QHTTPURL/QHTTPPOST/QHTTPREAD/QHTTPSTOP, AT+QFUPL/QFDEL
             (modem_http_quectel.py; Quectel EG915U/BG95/EC2x HTTP(S) AT manuals)
    sim7080  AT+SHCONF/SHSSL/SHCONN/SHCHEAD/SHAHEAD/SHBOD/SHREQ/SHREAD/SHDISC/SHSTATE,
             AT+CFSINIT/CFSWFILE/CFSTERM, AT+CSSLCFG (modem_http_sim7080.py; SIM7070/
             SIM7080 AT manual and SSL application note)
    simcom   AT+HTTPINIT/HTTPPARA/HTTPDATA/HTTPACTION/HTTPREAD/HTTPHEAD/HTTPTERM,
             AT+CCERTDOWN, AT+CSSLCFG (modem_http_simcom.py; A76XX AT manual ch. 16/19)

A modem answers ERROR to the other vendors' commands (they have no handler).

Network: only loopback hosts are reached (tests and benches run the eIM
simulator on 127.0.0.1); any other host fails as a DNS failure would on a
modem without coverage. TLS is real (Python ssl): the modem verifies the
server with the CA file uploaded through AT, when the stack's settings say
to verify, exactly as the vendor's settings mean it (Quectel seclevel 0,
SIMCom authmode 0 and an empty SIM7080 CA list do NOT verify). A failed
handshake ends as that stack's error code. Bodies are bytes both ways.

Everything is bounded: connect and answer waits, request and response
sizes (MAX_RESPONSE), file sizes per stack. Requests run in a worker thread;
their URC is written under the modem's lock (SimModem.call_locked) so it never
splits another answer, and is held back while the modem takes raw data.
"""

import http.client
import ipaddress
import socket
import ssl
import threading
from urllib.parse import urlsplit

from ipa_host.sim.modem.modem_at import CmdError, split_args

MAX_RESPONSE = 1 << 20  # bytes of one response body the modem keeps
CONNECT_TIMEOUT = 10.0  # seconds for TCP connect + TLS handshake
ANSWER_TIMEOUT = 30.0  # seconds for the server's answer (capped by the stack's own setting)
MAX_HEADER_BYTES = 16384

STACKS = {
    "quectel": ("ipa_host.sim.modem.modem_http_quectel", "QuectelHttp"),
    "sim7080": ("ipa_host.sim.modem.modem_http_sim7080", "Sim7080Http"),
    "simcom": ("ipa_host.sim.modem.modem_http_simcom", "SimcomHttp"),
}


def make_stack(name, at):
    """The HTTP stack `name` (a key of STACKS) of the interpreter `at`."""
    if name not in STACKS:
        raise ValueError("unknown modem HTTP stack %r (choose from %s)"
                         % (name, ", ".join(sorted(STACKS))))
    module, cls = STACKS[name]
    mod = __import__(module, fromlist=[cls])
    return getattr(mod, cls)(at)


class NetError(Exception):
    """A request that got no HTTP answer. kind: url, dns, connect, tls, ca_missing, timeout,
    closed, too_large."""

    def __init__(self, kind, detail):
        self.kind = kind
        self.detail = detail
        Exception.__init__(self, "%s: %s" % (kind, detail))


# ---- AT argument helpers ------------------------------------------------------------------


def params(args, least=1, most=None):
    """split_args(args) with a count check; CmdError(50) otherwise."""
    parts = split_args(args or "")
    if parts is None or len(parts) < least or (most is not None and len(parts) > most):
        raise CmdError(50)
    return parts


def num(part, lo, hi, code=50):
    """An unquoted decimal in lo..hi (CmdError(code) otherwise)."""
    text, quoted = part
    if quoted or not text.isdigit() or not lo <= int(text) <= hi:
        raise CmdError(code)
    return int(text)


def text(part, most=None, code=50):
    """A string argument (quotes optional, as most modems accept both)."""
    value = part[0]
    if most is not None and len(value) > most:
        raise CmdError(code)
    return value


# ---- URLs, connections, exchanges ---------------------------------------------------------


def parse_url(url):
    """'https://127.0.0.1:8443/x' -> (scheme, host, port, path, host header); NetError("url")."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise NetError("url", "%r: %s" % (url, e))
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise NetError("url", "%r: expected http://host[:port][/path] or https://..." % url)
    default = 443 if scheme == "https" else 80
    host = parts.hostname
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    shown = "[%s]" % host if ":" in host else host
    hostport = shown if port in (None, default) else "%s:%d" % (shown, port)
    return scheme, host, port or default, path, hostport


def loopback_address(host):
    """The loopback address for `host`; NetError("dns") for anything else (the simulated
    modem reaches only servers on this machine's loopback)."""
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise NetError("dns", "%s: the simulated modem resolves only localhost and loopback "
                              "addresses" % host)
    if not addr.is_loopback:
        raise NetError("dns", "%s is not a loopback address: the simulated modem reaches only "
                              "servers on this machine" % host)
    return str(addr)


TLS_VERSIONS = {"1.0": "TLSv1", "1.1": "TLSv1_1", "1.2": "TLSv1_2", "1.3": "TLSv1_3"}


class Tls:
    """How a stack runs TLS: verify the server with `ca` (PEM or DER bytes) or not at all;
    check_hostname; version None (any) or "1.0".."1.3" (exactly that one)."""

    def __init__(self, verify=False, ca=None, check_hostname=True, version=None):
        self.verify = verify
        self.ca = ca
        self.check_hostname = check_hostname
        self.version = version

    def context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.version:
            v = getattr(ssl.TLSVersion, TLS_VERSIONS[self.version])
            try:
                ctx.minimum_version = v
                ctx.maximum_version = v
            except (ValueError, ssl.SSLError) as e:
                raise NetError("tls", "TLS %s not available: %s" % (self.version, e))
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if not self.ca:
            raise NetError("ca_missing", "server authentication is on but no CA file is set")
        data = bytes(self.ca)
        try:
            if b"-----BEGIN" in data:
                ctx.load_verify_locations(cadata=data.decode("ascii", "replace"))
            else:
                ctx.load_verify_locations(cadata=data)
        except (ssl.SSLError, ValueError) as e:
            raise NetError("tls", "the CA file is not a certificate: %s" % e)
        ctx.check_hostname = self.check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def connect(scheme, host, port, tls, timeout=CONNECT_TIMEOUT):
    """A connected (and for https, handshaken) socket; NetError on every failure."""
    addr = loopback_address(host)
    ctx = tls.context() if scheme == "https" else None
    try:
        sock = socket.create_connection((addr, port), timeout=timeout)
    except socket.timeout:
        raise NetError("timeout", "connecting to %s:%d took over %.0f s" % (host, port, timeout))
    except OSError as e:
        raise NetError("connect", "connecting to %s:%d: %s" % (host, port, e.strerror or e))
    if ctx is None:
        return sock
    try:
        return ctx.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as e:
        sock.close()
        raise NetError("tls", "server certificate not trusted: %s" % (e.verify_message or e))
    except (ssl.SSLError, OSError) as e:
        sock.close()
        raise NetError("tls", "TLS handshake with %s:%d failed: %s" % (host, port, e))


class Answer:
    """A server's answer as the modem keeps it: status, reason, headers [(name, value)],
    head (the status line and header lines as bytes), body, length (Content-Length or None
    when the server sent none), closes (the server ends the connection after it)."""

    def __init__(self, status, reason, headers, head, body, length, closes):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.head = head
        self.body = body
        self.length = length
        self.closes = closes


def request_bytes(method, path, headers, body):
    """The request as the modem writes it: request line, 'Name: value' lines, body."""
    lines = ["%s %s HTTP/1.1" % (method, path)] + ["%s: %s" % (k, v) for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + bytes(body)


def exchange(sock, raw, method="POST", timeout=ANSWER_TIMEOUT, max_body=MAX_RESPONSE):
    """Send `raw` (a whole request) on `sock` and read the answer; NetError on failure."""
    try:
        sock.settimeout(timeout)
        sock.sendall(raw)
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        length = resp.getheader("Content-Length")
        length = int(length) if length is not None and length.strip().isdigit() else None
        if length is not None and length > max_body:
            raise NetError("too_large", "answer of %d bytes is over the modem's %d"
                                        % (length, max_body))
        body = resp.read(max_body + 1)
        if len(body) > max_body:
            raise NetError("too_large", "answer over the modem's %d bytes" % max_body)
        head = ["HTTP/1.1 %d %s" % (resp.status, resp.reason)]
        head += ["%s: %s" % kv for kv in resp.getheaders()]
        head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        return Answer(resp.status, resp.reason, resp.getheaders(), head, body, length,
                      bool(resp.will_close))
    except NetError:
        raise
    except socket.timeout:
        raise NetError("timeout", "no answer within %.0f s" % timeout)
    except (http.client.HTTPException, ValueError) as e:
        raise NetError("closed", "no valid HTTP answer: %r" % (e,))
    except OSError as e:
        raise NetError("closed", "connection failed: %s" % (e.strerror or e))


def close_quietly(sock):
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


# ---- the base of a stack ------------------------------------------------------------------


class Stack:
    """One vendor's HTTP client on the modem. Subclasses define cmd_<name>(kind, args)
    for their AT commands (kind: test, read, set, exec, as in modem_at) and reset()."""

    vendor = None

    def __init__(self, at):
        self.at = at
        self.cfg = at.cfg
        self.files = {}  # the modem's file system: survives reboots (flash)
        self.generation = 0
        self.requests = 0  # requests sent to a server (tests read it)
        self.busy = False
        self.reset()

    def reset(self):
        """Session state as after power-on (files stay)."""

    def reboot(self):
        self.generation += 1  # answers of requests in flight are dropped
        self.busy = False
        self.reset()

    def handler(self, name):
        return getattr(self, "cmd_" + name.lower(), None)

    # -- what the faults change -------------------------------------------------------------

    @property
    def fault(self):
        """The stack error code every request ends with (personality http_error), or None."""
        return self.cfg["http_error"]

    def write_body(self, data):
        """Raw bytes to the client, split in http_read_block pieces with http_read_pause
        between them when the personality says so (a modem trickling a response)."""
        block = self.cfg["http_read_block"]
        if not block or len(data) <= block:
            self.at.io.write(bytes(data))
            return
        for i in range(0, len(data), block):
            if i:
                self.at.io.sleep(self.cfg["http_read_pause"])
            self.at.io.write(bytes(data[i:i + block]))

    # -- requests in a worker thread --------------------------------------------------------

    def background(self, work, done):
        """work() in a thread (its NetError or result), then done(result) under the modem's
        lock, unless the modem rebooted or the request was cancelled meanwhile."""
        gen = self.generation
        self.busy = True

        def run():
            try:
                result = work()
            except NetError as e:
                result = e
            except Exception as e:  # a simulator bug must not leave the stack busy forever
                result = NetError("closed", "simulator failure: %r" % (e,))

            def finish():
                if gen != self.generation:
                    return
                self.busy = False
                done(result)

            self.at.io.call_locked(finish)

        threading.Thread(target=run, name="modem %s http" % self.vendor, daemon=True).start()

    def cancel(self):
        self.generation += 1
        self.busy = False
