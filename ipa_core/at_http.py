"""Modem HTTP(S) stacks as network objects over the AT engine: the shared parts.

A board whose MCU cannot do TLS (RP2040, fact sheet "Boards running
MicroPython") posts ESipa messages through the modem's own HTTP(S) stack.
Three stacks (project fact sheet, "Modems' own HTTP(S)/CoAP stacks"):

    "quectel"  ipa_core.at_http_quectel.QuectelHttp   AT+QHTTP* / AT+QSSLCFG
    "sim7080"  ipa_core.at_http_sim7080.Sim7080Http   AT+SH* (SIM7070/7080/7090)
    "simcom"   ipa_core.at_http_simcom.SimcomHttp     AT+HTTP* (A76xx, SIM7600)

Each is a network object (the one ipa_core.ipa and ipa_download use):

    post(path, body, content_type, headers=None)        -> (status, body bytes)
    post_stream(path, body, content_type, headers=None) -> (status, reader)
    close()                 tear the modem's HTTP session down (errors tolerated)
    install_ca(pem, name="eim_ca.pem")   upload the trust anchor, select it for TLS

The reader of post_stream pulls the body from the modem in chunks, so a
bound profile package never sits whole in RAM (reader contract in
ipa_core.stream: read(n) -> 1..n bytes, b"" only at the end; .length;
close() discards the rest). Any HTTP status is returned, not raised, like
ipa_core.http and ipa_core.coap do; a stack error (Quectel 7xx, SIMCom
6xx/7xx) raises HttpStackError naming the command, the code and its meaning.

`open_network(engine, base_url, stack, **options)` imports only the stack
asked for, so a board freezes one stack module. The card (ipa_core.at_card)
and the network share the engine: one AT port, one command at a time, and
the caller reads or closes a reader before it sends anything else. The
answer URCs (+QHTTPPOST:, +SHREQ:, +HTTPACTION:) are awaited with
engine.wait_urc after the command's OK, as the vendors document; one that
came before the OK is found in engine.urcs, but is lost to an engine built
with a urc= callback.

Options common to every stack (each stack adds its own; unknown names are refused):
  timeout_ms        5000    every plain command, and the OK after a payload
  http_timeout_ms   60000   the server round trip: connection set-up and the
                            URC that carries the status of a request
  read_timeout_ms   10000   each chunk of the response body
  input_timeout_ms  10000   how long the modem waits for a payload (URL, body, file)
  max_body          1 MiB   longest response body accepted (ProtocolError above)
  chunk             per stack: bytes asked from the modem per body read
  init              ()      commands sent before the stack is configured
                            (e.g. a PDP context activation); failures raise
  ca                None    name of a CA file already on the modem
  verify            None    server authentication: None = on exactly when a CA
                            is known (ca= or install_ca); True without a CA
                            is refused
  sni               True    send the host name in the TLS handshake
  tls_version       3       the stack's SSL version number (3 = TLS 1.2)
"""

from ipa_core.at import AtError, shorten
from ipa_core.errors import IpaError, ProtocolError, TimeoutError_, TransportError, is_digits

STACKS = {
    "quectel": "ipa_core.at_http_quectel.QuectelHttp",
    "sim7080": "ipa_core.at_http_sim7080.Sim7080Http",
    "simcom": "ipa_core.at_http_simcom.SimcomHttp",
}
# Other names people use for the same stacks.
ALIASES = {"sim7070": "sim7080", "sim7090": "sim7080", "a76xx": "simcom", "sim7600": "simcom",
           "bg96": "quectel", "ec2x": "quectel", "eg915": "quectel"}
# (substring of the modem identity in lower case, stack): AT+CGMI/AT+CGMM text,
# see ipa_core.modems.identify.
PICKS = (("quectel", "quectel"), ("sim7070", "sim7080"), ("sim7080", "sim7080"),
         ("sim7090", "sim7080"), ("a76", "simcom"), ("sim76", "simcom"), ("sim75", "simcom"))

MAX_BODY = 0x100000  # like ipa_core.http.MAX_BODY
MAX_CA = 10240  # largest certificate file the stacks take (SIM7080 AT+CFSWFILE: 10240)
MAX_URL = 256
MAX_HEADER_VALUE = 200

COMMON = {
    "timeout_ms": 5000,
    "http_timeout_ms": 60000,
    "read_timeout_ms": 10000,
    "input_timeout_ms": 10000,
    "max_body": MAX_BODY,
    "chunk": 1024,
    "init": (),
    "ca": None,
    "verify": None,
    "sni": True,
    "tls_version": 3,
}
_INTS = ("timeout_ms", "http_timeout_ms", "read_timeout_ms", "input_timeout_ms", "max_body",
         "chunk", "tls_version")


class HttpStackError(TransportError):
    """The modem's HTTP(S) stack reported an error code (not an HTTP status).

    Attributes: command (the AT command the code belongs to), code (int),
    meaning (from the vendor's table, or None).
    """

    def __init__(self, command, code, meaning=None, stack="modem"):
        self.command = command
        self.code = code
        self.meaning = meaning
        msg = "%s: %s HTTP stack error %d" % (shorten(command), stack, code)
        if meaning:
            msg += " (%s)" % meaning
        super().__init__(msg)


# ---------------------------------------------------------------- names and URLs

def resolve(stack):
    """Stack name or alias -> a key of STACKS (ValueError naming the known ones)."""
    key = (stack or "").lower()
    key = ALIASES.get(key, key)
    if key not in STACKS:
        raise ValueError("modem HTTP stack %r: expected one of %s"
                         % (stack, ", ".join(sorted(STACKS))))
    return key


def pick(identity):
    """The stack for a modem identity ("Quectel EG915U", "SIMCOM_SIM7080G"), or None."""
    low = (identity or "").lower()
    for key, stack in PICKS:
        if key in low:
            return stack
    return None


def stack_class(stack):
    """Import the module of one stack (only that one) and return its class."""
    path = STACKS[resolve(stack)]
    i = path.rfind(".")
    mod_name = path[:i]
    mod = __import__(mod_name)
    for part in mod_name.split(".")[1:]:
        mod = getattr(mod, part)
    return getattr(mod, path[i + 1:])


def open_network(engine, base_url, stack, **options):
    """A network object for `stack` ("quectel", "sim7080", "simcom" or an alias)."""
    return stack_class(stack)(engine, base_url, **options)


def at_text(value, what, limit=MAX_URL):
    """A value that goes between quotes in an AT command: printable ASCII, no '"'."""
    if not isinstance(value, str):
        raise ValueError("%s: expected a str, got %r" % (what, value))
    if len(value) > limit:
        raise ValueError("%s: %d characters, at most %d fit an AT command"
                         % (what, len(value), limit))
    for c in value:
        if c < " " or c > "~" or c == '"':
            raise ValueError("%s: expected printable ASCII without '\"', got %r" % (what, value))
    return value


def split_url(base_url):
    """'https://host:port[/prefix]' -> (scheme, host, port, prefix).

    The host may be a name, an IPv4 address or an IPv6 literal in brackets;
    the port defaults to 443/80; the prefix ('' or '/x/y', no trailing '/')
    goes in front of every request path.
    """
    at_text(base_url, "base URL")
    i = base_url.find("://")
    scheme = base_url[:i].lower() if i > 0 else ""
    if scheme not in ("http", "https"):
        raise ValueError("base URL %r: expected http://host[:port] or https://host[:port]"
                         % base_url)
    rest = base_url[i + 3:]
    j = rest.find("/")
    if j < 0:
        j = len(rest)
    hostport, prefix = rest[:j], rest[j:].rstrip("/")
    port = 443 if scheme == "https" else 80
    if hostport.startswith("["):
        k = hostport.find("]")
        host = hostport[:k + 1] if k > 0 else ""
        tail = hostport[k + 1:] if k > 0 else ""
    else:
        k = hostport.find(":")
        host = hostport if k < 0 else hostport[:k]
        tail = "" if k < 0 else hostport[k:]
    if tail:
        digits = tail[1:]
        if tail[0] != ":" or not is_digits(digits) or not 0 < int(digits) < 65536:
            raise ValueError("base URL %r: expected a port number 1..65535 after ':', got %r"
                             % (base_url, tail))
        port = int(digits)
    if not host or " " in host or "@" in host or "?" in prefix or "#" in prefix:
        raise ValueError("base URL %r: expected scheme://host[:port][/prefix]" % base_url)
    return scheme, host, port, prefix


def check_path(path):
    """A request path: starts with '/', printable ASCII without spaces or quotes."""
    at_text(path, "request path")
    if not path.startswith("/") or " " in path:
        raise ValueError("request path: expected one starting with '/' without spaces, got %r"
                         % path)
    return path


def as_bytes(data, what):
    if data is None:
        return b""
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise ValueError("%s: expected bytes, got %r" % (what, type(data)))


_TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_COMPUTED = ("content-length", "transfer-encoding", "host", "connection")


def request_headers(content_type, headers):
    """[(name, value)]: Content-Type first (a caller's Content-Type wins), then the
    caller's headers (dict or pairs). Host, Content-Length, Transfer-Encoding and
    Connection come from the stack and are refused."""
    out = []
    if content_type:
        out.append(("Content-Type", at_text(content_type, "Content-Type", MAX_HEADER_VALUE)))
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    for name, value in items:
        if not isinstance(name, str) or not name or any(c not in _TCHAR for c in name):
            raise ValueError("header name: expected a token, got %r" % (name,))
        low = name.lower()
        if low in _COMPUTED:
            raise ValueError("header %s is set by the modem's HTTP stack, do not pass it" % name)
        value = at_text(value, "header %s" % name, MAX_HEADER_VALUE)
        if low == "content-type":
            out = [p for p in out if p[0].lower() != "content-type"]
        out.append((name, value))
    return out


# ---------------------------------------------------------------- answers

def fields(line, prefix, command):
    """'+QHTTPPOST: 0,200,12' -> ['0', '200', '12'] (quotes stripped); ProtocolError when
    the line does not start with prefix."""
    if not line.upper().startswith(prefix.upper()):
        raise ProtocolError("%s: expected a '%s' line, got %r"
                            % (shorten(command), prefix, shorten(line, 80)))
    out = []
    for f in line[len(prefix):].split(","):
        f = f.strip()
        if len(f) > 1 and f[0] == '"' and f[-1] == '"':
            f = f[1:-1]
        out.append(f)
    return out


def number(text, what, line, command):
    """A decimal field of an answer line, or a ProtocolError naming the line."""
    if not is_digits(text) or len(text) > 9:
        raise ProtocolError("%s: %s %r is not a number (answer %r)"
                            % (shorten(command), what, text, shorten(line, 80)))
    return int(text)


def secs(ms):
    """Milliseconds -> whole seconds for the modem, at least 1."""
    return max(1, (ms + 999) // 1000)


def drop_urcs(engine, prefix):
    """Forget lines starting with prefix kept in engine.urcs (a late answer of an
    earlier request must not be taken for the next one's)."""
    kept = getattr(engine, "urcs", None)
    if kept:
        p = prefix.upper()
        for i in range(len(kept) - 1, -1, -1):
            if kept[i].upper().startswith(p):
                kept.pop(i)


def first(lines, prefix):
    """The first line starting with prefix, or None."""
    p = prefix.upper()
    for line in lines:
        if line.upper().startswith(p):
            return line
    return None


# ---------------------------------------------------------------- reader

class BodyReader:
    """The reader contract of ipa_core.stream over a body the modem holds.

    Subclasses implement _fetch() -> the next chunk (at least 1 byte) or b"" at
    the end, after checking the end is where it was announced, and optionally
    _discard() (called by close() before the end). Chunks are served from an
    internal buffer, so callers may read any size without extra commands.
    """

    def __init__(self, net, length, what):
        self.net = net
        self.length = length
        self.what = what
        self.received = 0  # bytes fetched from the modem
        self.closed = False
        self._eof = False
        self._failed = False  # a read failed: close() must not try to drain
        self._buf = b""
        self._pos = 0

    def read(self, n):
        if n <= 0:
            return b""
        if self.closed:
            raise TransportError("%s: read after close()" % self.what)
        if self._pos >= len(self._buf):
            if self._eof:
                return b""
            self._buf = b""
            self._pos = 0
            try:
                data = self._fetch()
            except BaseException:
                self._failed = True
                raise
            if not data:
                self._eof = True
                return b""
            self.received += len(data)
            if self.received > self.net.max_body:
                self._failed = True
                raise ProtocolError("%s: expected at most max_body=%d bytes, got more"
                                    % (self.what, self.net.max_body))
            if len(data) <= n:
                return data
            self._buf = data
        out = self._buf[self._pos:self._pos + n]
        self._pos += len(out)
        return out

    def readall(self):
        """The whole (rest of the) body as bytes, bounded by max_body."""
        out = bytearray()
        while True:
            data = self.read(4096)
            if not data:
                return bytes(out)
            out.extend(data)

    def short(self):
        """The error for a body that ended before its announced length."""
        return ProtocolError("%s: body shorter than announced: %d of %d bytes"
                             % (self.what, self.received, self.length))

    def close(self):
        """Discard what is left; the network object stays usable."""
        if self.closed:
            return
        self.closed = True
        self._buf = b""
        if self._failed:
            self.net._stale = True  # the modem's state is unknown: reset it before the next request
        elif not self._eof:
            self._eof = True
            try:
                self._discard()
            except IpaError:
                self.net._stale = True

    def _fetch(self):
        raise NotImplementedError

    def _discard(self):
        pass


class OffsetReader(BodyReader):
    """A body the modem keeps until the next request, read by offset (AT+SHREAD /
    AT+HTTPREAD): nothing to drain on close(). _read_at(offset, n) -> 1..n bytes."""

    def _fetch(self):
        left = self.length - self.received
        if left <= 0:
            return b""
        n = left if left < self.net.chunk else self.net.chunk
        data = self._read_at(self.received, n)
        if not data:
            raise self.short()
        return data


# ---------------------------------------------------------------- network base

class AtHttp:
    """What every modem HTTP stack shares: options, request checks, the reader
    hand-over, error translation and teardown (subclasses: the AT dialogue).

    Subclass hooks: _setup() (configure and connect), _request(path, body,
    headers) -> (status, length or None), _reader(length), _teardown(),
    _install_ca(pem, name), check_request(body, headers); class attributes
    STACK (name for messages), EXTRA (its own options and defaults), INTS
    (which of them are numbers), ERRORS (code -> meaning), MAX_REQUEST.
    """

    STACK = "modem"
    EXTRA = {}
    INTS = ()
    ERRORS = {}
    MAX_REQUEST = MAX_BODY

    def __init__(self, engine, base_url, **options):
        opts = dict(COMMON)
        for k in self.EXTRA:
            opts[k] = self.EXTRA[k]
        for k in options:
            if k not in opts:
                raise ValueError("%s HTTP: unknown option %r (known: %s)"
                                 % (self.STACK, k, ", ".join(sorted(opts))))
            opts[k] = options[k]
        for k in opts:
            v = opts[k]
            if (k in _INTS or k in self.INTS) and \
                    (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError("%s HTTP: option %s must be a number >= 0, got %r"
                                 % (self.STACK, k, v))
            setattr(self, k, v)
        if self.chunk < 1:
            raise ValueError("%s HTTP: chunk must be at least 1" % self.STACK)
        self.init = tuple(self.init)
        if self.ca is not None:
            at_text(self.ca, "CA file name", 64)
        self.engine = engine
        self.base_url = base_url
        self.scheme, self.host, self.port, self.prefix = split_url(base_url)
        self.tls = self.scheme == "https"
        default = 443 if self.tls else 80
        self.hostport = self.host if self.port == default else "%s:%d" % (self.host, self.port)
        self.origin = "%s://%s" % (self.scheme, self.hostport)
        self.status = None
        self.requests = 0
        self._ready = False  # configured (and connected where the stack connects)
        self._opened = False  # something was set up that close() must tear down
        self._stale = False  # a failure left the modem's state unknown: reset first
        self._restarts = getattr(engine, "restarts", 0)
        self._current = None  # the reader handed out last

    # ---- the network interface ----

    def post(self, path, body, content_type, headers=None):
        """POST body; return (status, body bytes). Any status is returned."""
        status, reader = self.post_stream(path, body, content_type, headers)
        try:
            data = reader.readall()
        finally:
            reader.close()
        return status, data

    def post_stream(self, path, body, content_type, headers=None):
        """POST body; return (status, reader) for the response body."""
        self._end_reader()
        body = as_bytes(body, "request body")
        path = check_path(self.prefix + check_path(path))
        hdrs = request_headers(content_type, headers)
        self.check_request(body, hdrs)
        self._prepare()
        try:
            status, length = self._request(path, body, hdrs)
        except BaseException:
            self._stale = True
            raise
        if length is not None and length > self.max_body:
            raise ProtocolError("%s HTTP: response body of %d bytes, expected at most "
                                "max_body=%d" % (self.STACK, length, self.max_body))
        self.status = status
        self.requests += 1
        reader = self._reader(length)
        self._current = reader
        return status, reader

    def close(self):
        """End the modem's HTTP session (errors tolerated: nothing is left to lose)."""
        r = self._current
        self._current = None
        if r is not None:
            r.close()
        if self._opened:
            self._quiet(self._teardown)
        self._opened = False
        self._ready = False
        self._stale = False

    def install_ca(self, pem, name="eim_ca.pem"):
        """Upload the eIM's trust anchor (PEM) to the modem and use it for TLS."""
        pem = as_bytes(pem, "CA certificate")
        if not pem or len(pem) > MAX_CA:
            raise ValueError("CA certificate: expected 1..%d bytes, got %d" % (MAX_CA, len(pem)))
        at_text(name, "CA file name", 64)
        if "/" in name or ":" in name:
            raise ValueError("CA file name %r: expected a plain file name" % name)
        self._end_reader()
        self._install_ca(pem, name)
        self.ca = name
        self._ready = False  # the TLS settings are sent again before the next request

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- helpers for the stacks ----

    def max_request(self):
        return self.MAX_REQUEST

    def check_request(self, body, headers):
        """Refuse, before anything is sent, a request the modem cannot carry."""
        if len(body) > self.max_request():
            raise TransportError("%s HTTP: request body of %d bytes, the modem takes at most %d"
                                 % (self.STACK, len(body), self.max_request()))

    def sni_host(self):
        """The host name for SNI, or None (sni off, or an IP literal: RFC 6066 3)."""
        h = self.host
        if not self.sni or h.startswith("[") or all(c in "0123456789." for c in h):
            return None
        return h

    def verifying(self):
        """Server authentication on? (see the `verify` option)."""
        if self.verify is None:
            return self.ca is not None
        if self.verify and self.ca is None:
            raise ValueError("%s HTTP: verify=True needs a CA: call install_ca() or pass ca="
                             % self.STACK)
        return bool(self.verify)

    def _prepare(self):
        settle = getattr(self.engine, "settle", None)
        if settle is not None:
            settle()  # a boot line already received is counted now
        restarts = getattr(self.engine, "restarts", 0)
        if restarts != self._restarts:  # the modem restarted: its HTTP state is gone
            self._restarts = restarts
            self._stale = True
        if self._stale:
            if self._opened:
                self._quiet(self._teardown)
            self._stale = False
            self._ready = False
        if not self._ready:
            self._opened = True
            for cmd in self.init:
                self.at(cmd)
            self._setup()
            self._ready = True

    def _end_reader(self):
        r = self._current
        self._current = None
        if r is not None:
            r.close()

    def _quiet(self, fn, *args):
        """Run a teardown step; modem errors are ignored."""
        try:
            fn(*args)
        except IpaError:
            pass

    def translate(self, e, command=None):
        """AtError with a stack code (+CME ERROR: 7xx) -> HttpStackError; else e."""
        code = getattr(e, "cme", None)
        if code is not None and code in self.ERRORS:
            return HttpStackError(command or e.command, code, self.ERRORS[code], self.STACK)
        return e

    def stack_error(self, command, code):
        return HttpStackError(command, code, self.ERRORS.get(code), self.STACK)

    def at(self, cmd, timeout_ms=None, prefix=None):
        """engine.command with stack error codes translated."""
        try:
            return self.engine.command(cmd, timeout_ms or self.timeout_ms, prefix)
        except AtError as e:
            raise self.translate(e)

    def data(self, cmd, payload, prompt, timeout_ms=None, data_timeout_ms=None):
        """engine.data_command (prompt, then payload) with stack error codes translated."""
        try:
            return self.engine.data_command(
                cmd, payload, prompt, timeout_ms or self.timeout_ms,
                data_timeout_ms or (self.timeout_ms + self.input_timeout_ms))
        except AtError as e:
            raise self.translate(e)

    def wait(self, prefix, command, timeout_ms):
        """The URC that completes `command`; TimeoutError_ naming the command."""
        try:
            return self.engine.wait_urc(prefix, timeout_ms)
        except TimeoutError_:
            raise TimeoutError_("%s: no %s answer within %d ms"
                                % (shorten(command), prefix.rstrip(":"), timeout_ms))

    def status_urc(self, cmd, urc, shape):
        """Send `cmd` and wait for the URC that ends it, `urc` <x>,<status>,<length> (shape:
        its form for the error message) -> (status, length); a status of 600 or more is the
        stack's own error code (SIM7080 +SHREQ, SIMCom +HTTPACTION) -> HttpStackError."""
        drop_urcs(self.engine, urc)
        self.at(cmd)
        line = self.wait(urc, cmd, self.http_timeout_ms)
        f = fields(line, urc, cmd)
        if len(f) < 3:
            raise ProtocolError("%s: expected '%s', got %r" % (cmd, shape, line))
        status = number(f[1], "HTTP status", line, cmd)
        length = number(f[2], "body length", line, cmd)
        if status >= 600:
            raise self.stack_error(cmd, status)
        return status, length

    # ---- hooks ----

    def _setup(self):
        raise NotImplementedError

    def _request(self, path, body, headers):
        raise NotImplementedError

    def _reader(self, length):
        raise NotImplementedError

    def _teardown(self):
        pass

    def _install_ca(self, pem, name):
        raise NotImplementedError
