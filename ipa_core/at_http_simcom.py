"""SIMCom A76xx / SIM7600 HTTP(S) stack as a network object: AT+HTTP*.

Sources: the project's modem fact sheet ("Modems' own HTTP(S)/CoAP stacks")
and SIMCom's A76XX series AT command manual (chapter "AT Commands for
HTTP(S)", SSL chapter) and SIM7600 HTTP(S) notes. ctx is the ssl_ctx option.

Set-up (before the first request, and again after close(), a failure or a
modem restart):
    [init commands]
    AT+HTTPINIT                        (ERROR when already started: AT+HTTPTERM,
                                        then once more)
  https only:
    AT+CSSLCFG="sslversion",<ctx>,<tls_version>
    AT+CSSLCFG="authmode",<ctx>,<1 with a CA, else 0>
    AT+CSSLCFG="cacert",<ctx>,"<ca>"   when a CA is known
    AT+CSSLCFG="enableSNI",<ctx>,1     when sni (not for IP literals)
    AT+HTTPPARA="SSLCFG",<ctx>
A request (parameters are sent only when they changed):
    AT+HTTPPARA="URL","<scheme://host[:port]><path>"
    AT+HTTPPARA="CONTENT","<content type>"
    AT+HTTPPARA="USERDATA","<name>: <value>[\\r\\n<name>: <value>...]"   other headers
    AT+HTTPDATA=<len>,<input s> -> DOWNLOAD -> body -> OK      (not for an empty body)
    AT+HTTPACTION=1 -> OK, URC +HTTPACTION: 1,<status>,<length>
The body, chunk by chunk:
    AT+HTTPREAD=<offset>,<n> -> OK, +HTTPREAD: <n>, <n> raw bytes, ... +HTTPREAD: 0
close(): AT+HTTPTERM. install_ca(): AT+CCERTDOWN="<name>",<size> -> '>' ->
PEM -> OK, then AT+CSSLCFG="cacert",<ctx>,"<name>" and "authmode" 1.

USERDATA holds at most 256 characters; several headers are joined with the
two characters backslash-r backslash-n (userdata_sep), the form SIMCom's
notes show for more than one custom header.
"""

from ipa_core.at import AtError
from ipa_core.at_http import AtHttp, OffsetReader, drop_urcs, fields, first, number, secs
from ipa_core.errors import ProtocolError, TransportError, Names

# A76XX AT Command Manual, "Command result codes": <statuscode> 6xx and <errcode> 7xx.
ERRORS = Names(((600, "not HTTP PDU"), (601, "network error"), (602, "no memory"),
                (603, "DNS error"), (604, "stack busy"), (701, "alert state"),
                (702, "unknown error"), (703, "busy"), (704, "connection closed error"),
                (705, "timeout"), (706, "receive/send socket data failed"),
                (707, "file does not exist or other memory error"), (708, "invalid parameter"),
                (709, "network error"), (710, "start of a new SSL session failed"),
                (711, "wrong state"), (712, "failed to create socket"), (713, "get DNS failed"),
                (714, "connect socket failed"), (715, "TLS handshake failed"),
                (716, "close socket failed"), (717, "no network"), (718, "send data timeout"),
                (719, "CA missed")))
MAX_USERDATA = 256
MAX_HTTPDATA = 153600  # AT+HTTPDATA <size> range
MIN_INPUT_S = 10  # AT+HTTPDATA <time> range starts at 10 s
MAX_BLOCKS = 64  # +HTTPREAD blocks in one answer

ACTION_URC = "+HTTPACTION:"
READ_URC = "+HTTPREAD:"


def _read_len(line, cmd):
    """'+HTTPREAD: 500' (also 'DATA,500' / 'LEN,500' forms) -> 500."""
    f = fields(line, READ_URC, cmd)
    return number(f[-1], "length", line, cmd)


class SimcomReader(OffsetReader):
    """The body of the last AT+HTTPACTION, read with AT+HTTPREAD=<offset>,<n>."""

    def _read_at(self, offset, n):
        net = self.net
        eng = net.engine
        cmd = "AT+HTTPREAD=%d,%d" % (offset, n)
        drop_urcs(eng, READ_URC)
        if first(net.at(cmd, net.read_timeout_ms), READ_URC) is not None:
            raise ProtocolError("%s: the data came before OK (expected OK, then '+HTTPREAD: <n>'"
                                " and the bytes): this firmware needs another reader" % cmd)
        out = []  # the blocks, joined once at the end
        size = 0
        for _ in range(MAX_BLOCKS):
            line = net.wait(READ_URC, cmd, net.read_timeout_ms)
            got = _read_len(line, cmd)
            if got == 0:  # the end of this answer
                if not out:
                    raise self.short()
                return out[0] if len(out) == 1 else b"".join(out)
            if size + got > n:
                raise ProtocolError("%s: expected at most %d bytes, the modem announced %d more"
                                    " after %d" % (cmd, n, got, size))
            out.append(eng.read_raw(got, net.read_timeout_ms))
            size += got
        raise ProtocolError("%s: more than %d '+HTTPREAD:' blocks without '+HTTPREAD: 0'"
                            % (cmd, MAX_BLOCKS))


class SimcomHttp(AtHttp):
    """Network object over the A76xx / SIM7600 AT+HTTP* stack (see the module docstring).

    Options (besides ipa_core.at_http's): ssl_ctx (0), userdata_sep ("\\\\r\\\\n"
    as typed in the AT command) between headers in USERDATA.
    """

    STACK = "SIMCom"
    EXTRA = {"ssl_ctx": 0, "userdata_sep": "\\r\\n"}
    INTS = ("ssl_ctx",)
    ERRORS = ERRORS
    MAX_REQUEST = MAX_HTTPDATA

    def __init__(self, engine, base_url, **options):
        AtHttp.__init__(self, engine, base_url, **options)
        self._inited = False
        self._params = {}  # HTTPPARA values the modem holds

    def _setup(self):
        self._params = {}  # after install_ca: send every parameter again
        if not self._inited:
            try:
                self.at("AT+HTTPINIT", self.http_timeout_ms)
            except AtError:
                # Started already (by an earlier run): stop and start again.
                self._quiet(self.at, "AT+HTTPTERM", self.http_timeout_ms)
                self.at("AT+HTTPINIT", self.http_timeout_ms)
            self._inited = True
            self._params = {"USERDATA": ""}  # a fresh service has no custom headers
        if self.tls:
            ctx = self.ssl_ctx
            self.at('AT+CSSLCFG="sslversion",%d,%d' % (ctx, self.tls_version))
            self.at('AT+CSSLCFG="authmode",%d,%d' % (ctx, 1 if self.verifying() else 0))
            if self.ca is not None:
                self.at('AT+CSSLCFG="cacert",%d,"%s"' % (ctx, self.ca))
            if self.sni_host():
                self.at('AT+CSSLCFG="enableSNI",%d,1' % ctx)
            self.at('AT+HTTPPARA="SSLCFG",%d' % ctx)

    def _para(self, name, value):
        if self._params.get(name) == value:
            return
        self._params.pop(name, None)
        self.at('AT+HTTPPARA="%s","%s"' % (name, value))
        self._params[name] = value

    def _split(self, headers):
        """(content type, USERDATA text) from the request headers."""
        content = ""
        extra = []
        for name, value in headers:
            if name.lower() == "content-type":
                content = value
            else:
                extra.append("%s: %s" % (name, value))
        return content, self.userdata_sep.join(extra)

    def check_request(self, body, headers):
        AtHttp.check_request(self, body, headers)
        n = len(self._split(headers)[1])
        if n > MAX_USERDATA:
            raise TransportError("SIMCom HTTP: headers take %d characters, USERDATA holds at"
                                 " most %d" % (n, MAX_USERDATA))

    def _request(self, path, body, headers):
        content, userdata = self._split(headers)
        self._para("URL", self.origin + path)
        self._para("CONTENT", content or "application/octet-stream")
        self._para("USERDATA", userdata)
        if body:
            self.data("AT+HTTPDATA=%d,%d" % (len(body), max(MIN_INPUT_S,
                                                             secs(self.input_timeout_ms))),
                      body, ("DOWNLOAD",))
        return self.status_urc("AT+HTTPACTION=1", ACTION_URC, "+HTTPACTION: 1,<status>,<length>")

    def _reader(self, length):
        return SimcomReader(self, length, "AT+HTTPREAD body")

    def _teardown(self):
        self._inited = False
        self._params = {}
        self.at("AT+HTTPTERM", self.http_timeout_ms)

    def _install_ca(self, pem, name):
        self.data('AT+CCERTDOWN="%s",%d' % (name, len(pem)), pem, (">",))
        self.at('AT+CSSLCFG="cacert",%d,"%s"' % (self.ssl_ctx, name))
        self.at('AT+CSSLCFG="authmode",%d,1' % self.ssl_ctx)
