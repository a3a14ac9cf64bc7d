"""SIMCom SIM7070/SIM7080/SIM7090 HTTP(S) stack as a network object: AT+SH*.

Sources: the project's modem fact sheet ("Modems' own HTTP(S)/CoAP stacks")
and SIMCom's SIM7070/SIM7080/SIM7090 AT command manual and HTTP(S)
application note. ctx is the ssl_ctx option.

Set-up (before the first request, and again after close(), a failure or a
modem restart):
    [init commands]
    AT+SHCONF="URL","<scheme://host[:port]>"   (ERROR while a session is up:
                                                AT+SHDISC, then once more)
    AT+SHCONF="BODYLEN",<body_len>
    AT+SHCONF="HEADERLEN",<header_len>
  https only:
    AT+CSSLCFG="sslversion",<ctx>,<tls_version>
    AT+CSSLCFG="sni",<ctx>,"<host>"            when sni (not for IP literals)
    AT+SHSSL=<ctx>,"<ca or empty: no server authentication>"
    AT+SHCONN                                  (up to http_timeout_ms: TLS handshake)
A request:
    AT+SHSTATE?                  when check_state, on a session used before:
                                 AT+SHCONN again if the server closed it
    AT+SHCHEAD
    AT+SHAHEAD="<name>","<value>"     Content-Type first, then the caller's headers
    AT+SHBOD=<len>,<input ms> -> '>' -> body -> OK      (not for an empty body)
    AT+SHREQ="<path>",3 -> OK, URC +SHREQ: "POST",<status>,<length>
The body, chunk by chunk (at most 2048 bytes per command):
    AT+SHREAD=<offset>,<n> -> OK, then +SHREAD: <n> and exactly <n> raw bytes
close(): AT+SHDISC. install_ca():
    AT+CFSINIT, AT+CFSWFILE=3,"<name>",0,<size>,<input ms> -> DOWNLOAD -> PEM -> OK,
    AT+CFSTERM, AT+CSSLCFG="sslversion",<ctx>,<tls_version>,
    AT+CSSLCFG="convert",2,"<name>"     (then the next request reconnects with SHSSL)

The request body is bounded by BODYLEN (at most 4096 on this modem); the
response is read by offset, so closing a reader early sends nothing.
"""

from ipa_core.at import AtError
from ipa_core.at_http import AtHttp, OffsetReader, drop_urcs, fields, first, number
from ipa_core.errors import ProtocolError, TransportError, Names

# +SHREQ statuses that are not HTTP: the SIMCom HTTP stack's own codes (the
# 6xx table of SIMCom's HTTP manuals; the SIM7080 manual lists none).
ERRORS = Names(((600, "not HTTP PDU"), (601, "network error"), (602, "no memory"),
                (603, "DNS error"), (604, "stack busy")))
MAX_READ = 2048  # AT+SHREAD answers at most this many bytes
MAX_BODYLEN = 4096  # AT+SHCONF="BODYLEN" range
MAX_INPUT_MS = 10000  # AT+SHBOD / AT+CFSWFILE input time range

REQ_URC = "+SHREQ:"
READ_URC = "+SHREAD:"


class Sim7080Reader(OffsetReader):
    """The body of the last AT+SHREQ, read with AT+SHREAD=<offset>,<n>."""

    def _read_at(self, offset, n):
        net = self.net
        cmd = "AT+SHREAD=%d,%d" % (offset, n)
        drop_urcs(net.engine, READ_URC)
        lines = net.at(cmd, net.read_timeout_ms)
        if first(lines, READ_URC) is not None:
            raise ProtocolError("%s: the data came before OK (expected OK, then '+SHREAD: <n>'"
                                " and the bytes): this firmware needs another reader" % cmd)
        line = net.wait(READ_URC, cmd, net.read_timeout_ms)
        got = number(fields(line, READ_URC, cmd)[0], "length", line, cmd)
        if got > n:
            raise ProtocolError("%s: expected at most %d bytes, the modem announced %d"
                                % (cmd, n, got))
        if got == 0:
            raise self.short()
        return net.engine.read_raw(got, net.read_timeout_ms)


class Sim7080Http(AtHttp):
    """Network object over the SIM7080's AT+SH* stack (see the module docstring).

    Options (besides ipa_core.at_http's): ssl_ctx (1), body_len (4096) and
    header_len (350) for SHCONF BODYLEN / HEADERLEN, check_state (True) ask
    AT+SHSTATE? before a request on an open session. chunk defaults to 2048.
    """

    STACK = "SIM7080"
    EXTRA = {"ssl_ctx": 1, "body_len": MAX_BODYLEN, "header_len": 350, "check_state": True,
             "chunk": MAX_READ}
    INTS = ("ssl_ctx", "body_len", "header_len")
    ERRORS = ERRORS

    def __init__(self, engine, base_url, **options):
        AtHttp.__init__(self, engine, base_url, **options)
        if not 0 < self.body_len <= MAX_BODYLEN:
            raise ValueError("SIM7080 HTTP: body_len %d outside 1..%d" % (self.body_len,
                                                                          MAX_BODYLEN))
        if self.chunk > MAX_READ:
            raise ValueError("SIM7080 HTTP: chunk %d above %d (AT+SHREAD limit)"
                             % (self.chunk, MAX_READ))
        self._connected = False
        self._fresh = False

    def max_request(self):
        return self.body_len

    def _setup(self):
        self._connected = False
        url = 'AT+SHCONF="URL","%s"' % self.origin
        try:
            self.at(url)
        except AtError:
            # A session left open (by an earlier run) refuses SHCONF.
            self._quiet(self.at, "AT+SHDISC")
            self.at(url)
        self.at('AT+SHCONF="BODYLEN",%d' % self.body_len)
        self.at('AT+SHCONF="HEADERLEN",%d' % self.header_len)
        if self.tls:
            ctx = self.ssl_ctx
            self.at('AT+CSSLCFG="sslversion",%d,%d' % (ctx, self.tls_version))
            if self.sni_host():
                self.at('AT+CSSLCFG="sni",%d,"%s"' % (ctx, self.sni_host()))
            ca = self.ca if self.verifying() else ""
            self.at('AT+SHSSL=%d,"%s"' % (ctx, ca))
        self._connect()

    def _connect(self):
        self.at("AT+SHCONN", self.http_timeout_ms)
        self._connected = True
        self._fresh = True  # no need to ask AT+SHSTATE? before the first request

    def _still_connected(self):
        """AT+SHSTATE? -> False when the server closed; True when it cannot tell."""
        try:
            lines = self.at("AT+SHSTATE?")
        except TransportError:
            return True
        line = first(lines, "+SHSTATE:")
        if line is None:
            return True
        return fields(line, "+SHSTATE:", "AT+SHSTATE?")[0] != "0"

    def _request(self, path, body, headers):
        if self.check_state and not self._fresh and not self._still_connected():
            self._connect()
        self._fresh = False
        self.at("AT+SHCHEAD")
        for name, value in headers:
            self.at('AT+SHAHEAD="%s","%s"' % (name, value))
        if body:
            self.data("AT+SHBOD=%d,%d" % (len(body), min(self.input_timeout_ms, MAX_INPUT_MS)),
                      body, (">",))
        return self.status_urc('AT+SHREQ="%s",3' % path, REQ_URC,
                               '+SHREQ: "POST",<status>,<length>')

    def _reader(self, length):
        return Sim7080Reader(self, length, "AT+SHREAD body")

    def _teardown(self):
        self._connected = False
        self.at("AT+SHDISC")

    def _install_ca(self, pem, name):
        if self._connected:  # SHSSL takes effect on the next SHCONN
            self._quiet(self._teardown)
            self._connected = False
        self._quiet(self.at, "AT+CFSINIT")  # already open after an earlier failure: fine
        try:
            self.data('AT+CFSWFILE=3,"%s",0,%d,%d'
                      % (name, len(pem), min(self.input_timeout_ms, MAX_INPUT_MS)),
                      pem, ("DOWNLOAD",))
        except BaseException:
            self._quiet(self.at, "AT+CFSTERM")
            raise
        self.at("AT+CFSTERM")
        self.at('AT+CSSLCFG="sslversion",%d,%d' % (self.ssl_ctx, self.tls_version))
        self.at('AT+CSSLCFG="convert",2,"%s"' % name)
