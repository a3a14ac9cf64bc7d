"""Quectel's HTTP(S) stack on the simulated modem (EG915U / BG95 / EC2x HTTP(S) and SSL
AT commands manuals, FILE AT commands manual).

    AT+QHTTPCFG="contextid"|"requestheader"|"responseheader"|"sslctxid"|"contenttype",<v>
    AT+QHTTPCFG="reqheader/add",<name>,<value> / "reqheader/remove",<name>   (Unisoc-based)
    AT+QSSLCFG="sslversion"|"ciphersuite"|"seclevel"|"cacert"|"sni",<ctx>,<v>
    AT+QHTTPURL=<len>[,<timeout>]           -> CONNECT, <len> bytes of URL -> OK
    AT+QHTTPPOST=<len>[,<input>,<rsp>]       the modem connects (TCP, TLS) first; then
        -> CONNECT, <len> raw bytes (the body, or with requestheader=1 the whole request)
        -> OK, later URC +QHTTPPOST: <err>[,<httprspcode>[,<content_length>]]
        (content_length only when the server sent Content-Length). A failed connect or
        TLS handshake answers +CME ERROR: <err> instead of CONNECT.
    AT+QHTTPREAD[=<wait>]                   -> CONNECT, the body (after the response
        header when responseheader=1), OK, then URC +QHTTPREAD: <err>
    AT+QHTTPSTOP                            -> OK (cancels a request)
    AT+QFUPL=<name>[,<size>[,<timeout>[,<ackmode>]]] -> CONNECT, <size> bytes
        -> +QFUPL: <size>,<checksum> OK (checksum: XOR of the 16-bit big-endian words,
        hex); ackmode 1: "A" after every 1024 bytes. Existing file: +CME ERROR: 407
    AT+QFDEL=<name|"*">                     -> OK / +CME ERROR: 405 (not found)
    AT+QFLST[=<pattern>]                    -> +QFLST: "<name>",<size>

Error codes <err> (HTTP(S) manual, summary of error codes): 701 unknown, 702 timeout,
703 busy, 705 no GET/POST request, 711 URL error, 712 empty URL, 714 DNS error,
716 socket connect error, 717 socket read error, 719 socket closed, 726 input timeout,
729 memory allocation failed, 730 invalid parameter. The manuals name no TLS-specific
code: a failed TLS handshake is a failed (secure) socket connect, 716.
TLS: seclevel 0 (the default) does not verify the server; 1 and 2 verify it with the
file "cacert" names ("UFS:" prefix optional), uploaded with AT+QFUPL.
"""

from ipa_host.sim.modem import modem_http
from ipa_host.sim.modem.modem_at import CmdError, NoAnswer
from ipa_host.sim.modem.modem_http import NetError, num, params, text

ERRORS = {
    701: "HTTP(S) unknown error", 702: "HTTP(S) timeout", 703: "HTTP(S) busy",
    704: "HTTP(S) UART busy", 705: "HTTP(S) no GET/POST requests", 706: "HTTP(S) network busy",
    707: "HTTP(S) network open failed", 708: "HTTP(S) network no configuration",
    709: "HTTP(S) network deactivated", 710: "HTTP(S) network error", 711: "HTTP(S) URL error",
    712: "HTTP(S) empty URL", 713: "HTTP(S) IP address error", 714: "HTTP(S) DNS error",
    715: "HTTP(S) socket create error", 716: "HTTP(S) socket connect error",
    717: "HTTP(S) socket read error", 718: "HTTP(S) socket write error",
    719: "HTTP(S) socket closed", 720: "HTTP(S) data encode error",
    721: "HTTP(S) data decode error", 722: "HTTP(S) read timeout",
    723: "HTTP(S) response failed", 726: "Input timeout", 727: "Wait data timeout",
    728: "Wait HTTP(S) response timeout", 729: "Memory allocation failed",
    730: "Invalid parameter",
}
# NetError kind -> <err>
NET_CODES = {"url": 711, "dns": 714, "connect": 716, "tls": 716, "ca_missing": 716,
             "timeout": 702, "closed": 717, "too_large": 729}
FILE_ERRORS = {405: "file not found", 407: "file already existed", 421: "time out",
               423: "the file is too large", 400: "invalid input value"}

CONTENT_TYPES = ("application/x-www-form-urlencoded", "text/plain", "application/octet-stream",
                 "multipart/form-data", "application/json", "image/jpeg")
MAX_URL = 700
MAX_POST = 1024000
MAX_FILE = 102400
MAX_CUSTOM = 20


def err(code):
    return CmdError(code, ERRORS.get(code) or FILE_ERRORS.get(code))


def checksum(data):
    """AT+QFUPL's checksum: XOR of the data as 16-bit big-endian words (a last odd byte is
    the high byte of its word), in lower-case hex."""
    c = 0
    for i in range(0, len(data), 2):
        c ^= (data[i] << 8) | (data[i + 1] if i + 1 < len(data) else 0)
    return "%x" % c


def file_key(name):
    """'UFS:eim_ca.pem' and 'eim_ca.pem' are the same file; 'RAM:x' is another drive."""
    name = name.strip()
    if name.upper().startswith("UFS:"):
        name = name[4:]
    if not name or len(name) > 80 or any(c in name for c in '\\*?"<>|'):
        raise err(400)
    return name


class QuectelHttp(modem_http.Stack):
    vendor = "quectel"

    def reset(self):
        self.http_cfg = {"contextid": 1, "requestheader": 0, "responseheader": 0, "sslctxid": 1,
                         "contenttype": 0}
        self.custom = []  # (name, value) from reqheader/add
        self.ssl = {}  # ssl ctx id -> settings
        self.url = None
        self.conn = None  # socket connected by AT+QHTTPPOST, used once
        self.answer = None
        self.unread = False

    def _ssl(self, ctx):
        return self.ssl.setdefault(ctx, {"sslversion": 4, "ciphersuite": "0xFFFF", "seclevel": 0,
                                         "cacert": "UFS:cacert.pem", "sni": 0})

    # -- configuration ----------------------------------------------------------------------

    def cmd_qhttpcfg(self, kind, args):
        ranges = {"contextid": (1, 16), "requestheader": (0, 1), "responseheader": (0, 1),
                  "sslctxid": (0, 5), "contenttype": (0, 5)}
        if kind == "test":
            return ['+QHTTPCFG: "%s",(%d-%d)' % (k, lo, hi) for k, (lo, hi) in ranges.items()]
        if kind == "read":
            return ['+QHTTPCFG: "%s",%d' % kv for kv in self.http_cfg.items()]
        if kind != "set":
            raise err(730)
        parts = params(args, 1, 3)
        key = text(parts[0]).lower()
        if key in ("reqheader/add", "reqheader/remove") and self.cfg["qhttp_reqheader_add"]:
            return self._reqheader(key, parts)
        if key == "closed/ind":
            return []
        if key not in ranges:
            raise err(730)
        if len(parts) == 1:
            return ['+QHTTPCFG: "%s",%d' % (key, self.http_cfg[key])]
        if len(parts) != 2:
            raise err(730)
        self.http_cfg[key] = num(parts[1], *ranges[key], code=730)
        return []

    def _reqheader(self, key, parts):
        if key == "reqheader/remove":
            if len(parts) != 2:
                raise err(730)
            name = text(parts[1]).lower()
            self.custom = [(k, v) for k, v in self.custom if k.lower() != name]
            return []
        if len(parts) == 1:
            return ['+QHTTPCFG: "reqheader/add","%s","%s"' % kv for kv in self.custom]
        if len(parts) != 3 or len(self.custom) >= MAX_CUSTOM:
            raise err(730)
        name, value = text(parts[1], 64, 730), text(parts[2], 256, 730)
        if not name or ":" in name:
            raise err(730)
        self.custom = [(k, v) for k, v in self.custom if k.lower() != name.lower()]
        self.custom.append((name, value))
        return []

    def cmd_qsslcfg(self, kind, args):
        keys = {"sslversion": (0, 4), "seclevel": (0, 2), "sni": (0, 1),
                "ignorelocaltime": (0, 1), "negotiatetime": (10, 300)}
        strings = ("cacert", "clientcert", "clientkey", "ciphersuite")
        if kind == "test":
            return ['+QSSLCFG: "%s",(0-5)' % k for k in list(keys) + list(strings)]
        if kind != "set":
            raise err(730)
        parts = params(args, 2, 3)
        key = text(parts[0]).lower()
        if key not in keys and key not in strings:
            raise err(730)
        ctx = num(parts[1], 0, 5, 730)
        settings = self._ssl(ctx)
        if len(parts) == 2:
            value = settings.get(key, "")
            shown = '"%s"' % value if key in ("cacert", "clientcert", "clientkey") else value
            return ['+QSSLCFG: "%s",%d,%s' % (key, ctx, shown)]
        if key in keys:
            settings[key] = num(parts[2], *keys[key], code=730)
        else:
            settings[key] = text(parts[2], 120, 730)
        return []

    # -- URL and POST -----------------------------------------------------------------------

    def cmd_qhttpurl(self, kind, args):
        if kind == "test":
            return ["+QHTTPURL: (1-%d),(1-65535)" % MAX_URL]
        if kind == "read":
            return ["+QHTTPURL: %s" % self.url] if self.url else []
        if kind != "set":
            raise err(730)
        parts = params(args, 1, 2)
        n = num(parts[0], 1, MAX_URL, 730)
        timeout = num(parts[1], 1, 65535, 730) if len(parts) > 1 else 60
        if self.busy:
            raise err(703)

        def on_url(data):
            url = data.decode("latin-1")
            try:
                modem_http.parse_url(url)
            except NetError:
                raise err(711)
            self.url = url
            return []

        self.at.begin_data(b"\r\nCONNECT\r\n", n, timeout, on_url, self._input_timeout)
        raise NoAnswer()

    def _input_timeout(self):
        modem_http.close_quietly(self.conn)
        self.conn = None
        raise err(726)

    def _tls(self):
        s = self._ssl(self.http_cfg["sslctxid"])
        if s["seclevel"] == 0:  # the default: no authentication at all
            return modem_http.Tls(verify=False)
        ca = self.files.get(file_key(s["cacert"])) if s["cacert"] else None
        version = {0: None, 1: "1.0", 2: "1.1", 3: "1.2", 4: None}[s["sslversion"]]
        return modem_http.Tls(verify=True, ca=ca, version=version)

    def cmd_qhttppost(self, kind, args):
        if kind == "test":
            return ["+QHTTPPOST: (1-%d),(1-65535),(1-65535)" % MAX_POST]
        if kind != "set":
            raise err(730)
        parts = params(args, 1, 3)
        if len(parts) == 2:
            raise err(730)
        n = num(parts[0], 1, MAX_POST, 730)
        input_time = num(parts[1], 1, 65535, 730) if len(parts) == 3 else 60
        rsp_time = num(parts[2], 1, 65535, 730) if len(parts) == 3 else 60
        if self.busy:
            raise err(703)
        if not self.url:
            raise err(712)
        scheme, host, port, path, hostport = modem_http.parse_url(self.url)
        try:  # the connection (and TLS handshake) comes before CONNECT
            self.conn = modem_http.connect(scheme, host, port,
                                           self._tls() if scheme == "https" else None)
        except NetError as e:
            raise err(NET_CODES[e.kind])
        self.answer, self.unread = None, False

        def on_body(data):
            sock, self.conn = self.conn, None
            if self.http_cfg["requestheader"]:
                raw = data  # the client wrote the whole request
            else:
                raw = modem_http.request_bytes("POST", path, self._headers(hostport, len(data)),
                                               data)
            if self.fault is not None:
                modem_http.close_quietly(sock)
                code = self.fault
                self.background(lambda: None, lambda _r: self.at.urc("+QHTTPPOST: %d" % code))
                return []
            self.requests += 1

            def work():
                try:
                    return modem_http.exchange(sock, raw, "POST",
                                               min(rsp_time, modem_http.ANSWER_TIMEOUT))
                finally:
                    modem_http.close_quietly(sock)

            self.background(work, self._posted)
            return []

        self.at.begin_data(b"\r\nCONNECT\r\n", n, input_time, on_body, self._input_timeout)
        raise NoAnswer()

    def _headers(self, hostport, n):
        """The request header the module fills in itself (requestheader=0); headers added
        with reqheader/add replace a default of the same name or come after them."""
        base = [("Host", hostport), ("Accept", "*/*"), ("User-Agent", "QUECTEL_MODULE"),
                ("Connection", "Keep-Alive"),
                ("Content-Type", CONTENT_TYPES[self.http_cfg["contenttype"]]),
                ("Content-Length", str(n))]
        custom = {k.lower(): (k, v) for k, v in self.custom}
        out = [custom.pop(k.lower(), (k, v)) for k, v in base]
        out[-1] = ("Content-Length", str(n))  # the module counts the body itself
        return out + [kv for kv in self.custom if kv[0].lower() in custom]

    def _posted(self, result):
        if isinstance(result, NetError):
            self.at.urc("+QHTTPPOST: %d" % NET_CODES[result.kind])
            return
        self.answer, self.unread = result, True
        if result.length is None:
            self.at.urc("+QHTTPPOST: 0,%d" % result.status)
        else:
            self.at.urc("+QHTTPPOST: 0,%d,%d" % (result.status, result.length))

    # -- reading, stopping ------------------------------------------------------------------

    def cmd_qhttpread(self, kind, args):
        if kind == "test":
            return ["+QHTTPREAD: (1-65535)"]
        if kind == "set":
            num(params(args, 1, 1)[0], 1, 65535, 730)
        elif kind != "exec":
            raise err(730)
        if self.busy:
            raise err(703)
        if self.answer is None or not self.unread:
            raise err(705)
        a, self.unread = self.answer, False
        self.at.io.write(b"\r\nCONNECT\r\n")
        self.write_body((a.head if self.http_cfg["responseheader"] else b"") + a.body)
        self.at.final("OK")
        self.at.urc("+QHTTPREAD: 0")
        raise NoAnswer()

    def cmd_qhttpstop(self, kind, args):
        if kind == "test":
            return []
        if kind != "exec":
            raise err(730)
        self.cancel()
        modem_http.close_quietly(self.conn)
        self.conn = None
        return []

    # -- files ------------------------------------------------------------------------------

    def cmd_qfupl(self, kind, args):
        if kind == "test":
            return ['+QFUPL: <filename>[,(1-%d)[,(1-65535)[,(0,1)]]]' % MAX_FILE]
        if kind != "set":
            raise err(400)
        parts = params(args, 1, 4)
        name = file_key(text(parts[0]))
        size = num(parts[1], 1, MAX_FILE, 400) if len(parts) > 1 else MAX_FILE
        timeout = num(parts[2], 1, 65535, 400) if len(parts) > 2 else 5
        ack = num(parts[3], 0, 1, 400) if len(parts) > 3 else 0
        if name in self.files:
            raise err(407)

        def on_file(data):
            self.files[name] = bytes(data)
            return ["+QFUPL: %d,%s" % (len(data), checksum(data))]

        def on_timeout():
            raise err(421)

        self.at.begin_data(b"\r\nCONNECT\r\n", size, timeout, on_file, on_timeout,
                           1024 if ack else None)
        raise NoAnswer()

    def cmd_qfdel(self, kind, args):
        if kind == "test":
            return []
        if kind != "set":
            raise err(400)
        name = text(params(args, 1, 1)[0]).strip()
        if name in ("*", "UFS:*"):
            self.files.clear()
            return []
        key = file_key(name)
        if key not in self.files:
            raise err(405)
        del self.files[key]
        return []

    def cmd_qflst(self, kind, args):
        if kind in ("test", "read"):
            return []
        return ['+QFLST: "UFS:%s",%d' % (k, len(v)) for k, v in sorted(self.files.items())]
