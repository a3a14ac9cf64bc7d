"""SIMCom A76xx / SIM7600's HTTP(S) stack on the simulated modem (A76XX Series AT Command
Manual, chapter 16 HTTP(S), chapter 19 SSL, and the certificate commands).

    AT+HTTPINIT / AT+HTTPTERM             start / stop the service (ERROR when already
                                          started / not started)
    AT+HTTPPARA="URL","https://host:port/path" | "CONTENT","<type>" | "ACCEPT" |
               "USERDATA","<Name: value>[\\r\\n<Name: value>...]" | "SSLCFG",<ctx> |
               "READMODE",<0|1> | "CONNECTTO" | "RECVTO"
    AT+HTTPDATA=<size>,<time s>           -> DOWNLOAD, <size> raw bytes -> OK (<= 153600)
    AT+HTTPACTION=<method>                0 GET 1 POST 2 HEAD 3 DELETE 4 PUT -> OK, then
        URC +HTTPACTION: <method>,<statuscode>,<datalen>, or when the server was not
        reached +HTTPACTION: <method>,<errcode>,0 with <errcode> 702 unknown error,
        705 timeout, 706 receive/send socket data failed, 707 memory, 709 network error,
        713 get DNS failed, 714 connect socket failed, 715 handshake failed, 719 CA missed
    AT+HTTPHEAD                           -> +HTTPHEAD: <len>, the response header
    AT+HTTPREAD?                          -> +HTTPREAD: LEN,<len>
    AT+HTTPREAD=[<offset>,]<size>         -> OK, +HTTPREAD: <n>, <n> raw bytes (one or more
                                          such blocks), +HTTPREAD: 0
    AT+CCERTDOWN="<name.pem|.der>",<len>  -> '>', <len> raw bytes -> OK
    AT+CCERTLIST / AT+CCERTDELE="<name>"
    AT+CSSLCFG="sslversion"|"authmode"|"cacert"|"enableSNI"|"ignorecertCN"|...,<ctx>,<v>

TLS: authmode 0 (the default) and 3 do not verify the server; 1 and 2 verify it with the
"cacert" file of the context HTTPPARA "SSLCFG" names (719 when none is set or the file is
missing, 715 when the server is not trusted). ignorecertCN 1 skips the host name check.
"""

from ipa_host.sim.modem import modem_http
from ipa_host.sim.modem.modem_at import CmdError, NoAnswer
from ipa_host.sim.modem.modem_http import NetError, num, params, text

NET_CODES = {"url": 702, "dns": 713, "connect": 714, "tls": 715, "ca_missing": 719,
             "timeout": 705, "closed": 706, "too_large": 707}
MAX_DATA = 153600
MAX_CERT = 10240
CONTEXTS = 10


class SimcomHttp(modem_http.Stack):
    vendor = "simcom"

    def reset(self):
        self.started = False
        self.para = {}
        self.data = b""
        self.answer = None
        self.cursor = 0
        self.ssl = {i: {"sslversion": 4, "authmode": 0, "ignorelocaltime": 1,
                        "negotiatetime": 300, "cacert": "", "clientcert": "", "clientkey": "",
                        "password": "", "enablesni": 0, "ignorecertcn": 0}
                    for i in range(CONTEXTS)}

    def _defaults(self):
        return {"URL": "", "CONTENT": "text/plain", "ACCEPT": "*/*", "USERDATA": "",
                "SSLCFG": 0, "READMODE": 0, "CONNECTTO": 120, "RECVTO": 20}

    # -- service ----------------------------------------------------------------------------

    def cmd_httpinit(self, kind, args):
        if kind == "test":
            return ["+HTTPINIT: (1-8)"]
        if kind not in ("exec", "set") or self.started:
            raise CmdError(None)
        self.started = True
        self.para = self._defaults()
        self.data, self.answer, self.cursor = b"", None, 0
        return []

    def cmd_httpterm(self, kind, args):
        if kind == "test":
            return []
        if kind not in ("exec", "set") or not self.started:
            raise CmdError(None)
        self.cancel()
        self.started = False
        self.answer = None
        return []

    def _need_started(self):
        if not self.started:
            raise CmdError(None)

    def cmd_httppara(self, kind, args):
        if kind == "test":
            return []
        if kind != "set":
            raise CmdError(None)
        self._need_started()
        parts = params(args, 2, 2)
        key = text(parts[0]).upper()
        if key == "URL":
            url = text(parts[1], 4096)
            try:
                modem_http.parse_url(url)
            except NetError:
                raise CmdError(None)
            self.para["URL"] = url
        elif key in ("CONTENT", "ACCEPT", "USERDATA"):
            self.para[key] = text(parts[1], 256)
        elif key == "SSLCFG":
            self.para[key] = num(parts[1], 0, CONTEXTS - 1)
        elif key == "READMODE":
            self.para[key] = num(parts[1], 0, 1)
        elif key == "CONNECTTO":
            self.para[key] = num(parts[1], 20, 120)
        elif key == "RECVTO":
            self.para[key] = num(parts[1], 2, 120)
        else:
            raise CmdError(None)
        return []

    def cmd_httpdata(self, kind, args):
        if kind == "test":
            return []
        if kind != "set":
            raise CmdError(None)
        self._need_started()
        parts = params(args, 2, 2)
        size = num(parts[0], 1, MAX_DATA)
        seconds = num(parts[1], 1, 65535)
        if self.busy:
            raise CmdError(None)

        def on_data(data):
            self.data = bytes(data)
            return []

        def on_timeout():
            raise CmdError(None)

        self.at.begin_data(b"\r\nDOWNLOAD\r\n", size, seconds, on_data, on_timeout)
        raise NoAnswer()

    # -- the request ------------------------------------------------------------------------

    def _userdata(self):
        """USERDATA header lines; SIMCom writes several separated by a literal \\r\\n."""
        raw = self.para["USERDATA"].replace("\\r\\n", "\n").replace("\\n", "\n")
        out = []
        for line in raw.split("\n"):
            if line.strip():
                name, sep, value = line.partition(":")
                if not sep:
                    continue
                out.append((name.strip(), value.strip()))
        return out

    def _tls(self):
        s = self.ssl[self.para["SSLCFG"]]
        if s["authmode"] in (0, 3):  # the default: the server is not authenticated
            return modem_http.Tls(verify=False)
        if not s["cacert"] or s["cacert"] not in self.files:
            raise NetError("ca_missing", "authmode %d needs the CA file %r"
                           % (s["authmode"], s["cacert"]))
        version = {0: None, 1: "1.0", 2: "1.1", 3: "1.2", 4: None}[s["sslversion"]]
        return modem_http.Tls(verify=True, ca=self.files[s["cacert"]],
                              check_hostname=not s["ignorecertcn"], version=version)

    def cmd_httpaction(self, kind, args):
        methods = {0: "GET", 1: "POST", 2: "HEAD", 3: "DELETE", 4: "PUT"}
        if kind == "test":
            return ["+HTTPACTION: (0-4)"]
        if kind != "set":
            raise CmdError(None)
        self._need_started()
        m = num(params(args, 1, 1)[0], 0, 4)
        if self.busy or not self.para["URL"]:
            raise CmdError(None)
        method = methods[m]
        self.answer, self.cursor = None, 0
        if self.fault is not None:
            code = self.fault
            self.background(lambda: None,
                            lambda _r: self.at.urc("+HTTPACTION: %d,%d,0" % (m, code)))
            return []
        url = self.para["URL"]
        body = self.data if method in ("POST", "PUT") else b""
        heads = [("Host", None), ("User-Agent", "SIMCOM_MODULE"),
                 ("Content-Type", self.para["CONTENT"]), ("Accept", self.para["ACCEPT"])]
        user = self._userdata()
        names = {k.lower() for k, _v in user}
        timeout = min(self.para["RECVTO"], modem_http.ANSWER_TIMEOUT)
        self.requests += 1

        def work():
            scheme, host, port, path, hostport = modem_http.parse_url(url)
            h = [(k, hostport if k == "Host" else v) for k, v in heads if k.lower() not in names]
            h += user + [("Content-Length", str(len(body)))]
            modem_http.loopback_address(host)  # the name is resolved before TLS is set up
            sock = modem_http.connect(scheme, host, port,
                                      self._tls() if scheme == "https" else None)
            try:
                return modem_http.exchange(sock, modem_http.request_bytes(method, path, h, body),
                                           method, timeout)
            finally:
                modem_http.close_quietly(sock)

        def done(result):
            if isinstance(result, NetError):
                self.at.urc("+HTTPACTION: %d,%d,0" % (m, NET_CODES[result.kind]))
                return
            self.answer = result
            self.at.urc("+HTTPACTION: %d,%d,%d" % (m, result.status, len(result.body)))

        self.background(work, done)
        return []

    def cmd_httphead(self, kind, args):
        if kind == "test":
            return []
        if kind != "exec" or self.busy or self.answer is None:
            raise CmdError(None)
        head = self.answer.head
        self.at.io.write(b"\r\n+HTTPHEAD: %d\r\n" % len(head) + head)
        self.at.final("OK")
        raise NoAnswer()

    def cmd_httpread(self, kind, args):
        if kind == "test":
            return []
        if self.busy or self.answer is None:
            raise CmdError(None)
        body = self.answer.body
        if kind == "read":
            return ["+HTTPREAD: LEN,%d" % len(body)]
        if kind != "set":
            raise CmdError(None)
        parts = params(args, 1, 2)
        if len(parts) == 2:
            start, size = num(parts[0], 0, len(body)), num(parts[1], 1, modem_http.MAX_RESPONSE)
        else:
            start, size = self.cursor, num(parts[0], 1, modem_http.MAX_RESPONSE)
        chunk = body[start:start + size]
        if self.para["READMODE"] == 0:
            self.cursor = start + len(chunk)
        self.at.final("OK")
        block = self.cfg["http_read_block"] or len(chunk) or 1
        for i in range(0, len(chunk), block):
            if i:
                self.at.io.sleep(self.cfg["http_read_pause"])
            piece = chunk[i:i + block]
            self.at.io.write(b"\r\n+HTTPREAD: %d\r\n" % len(piece) + piece)
        self.at.io.write(b"\r\n+HTTPREAD: 0\r\n")
        raise NoAnswer()

    # -- certificates and SSL contexts ------------------------------------------------------

    def cmd_ccertdown(self, kind, args):
        if kind == "test":
            return []
        if kind != "set":
            raise CmdError(None)
        parts = params(args, 2, 2)
        name = text(parts[0], 108)
        if len(name) < 5 or not name.lower().endswith((".pem", ".der")) or "/" in name:
            raise CmdError(None)
        size = num(parts[1], 1, MAX_CERT)

        def on_cert(data):
            self.files[name] = bytes(data)
            return []

        def on_timeout():
            raise CmdError(None)

        self.at.begin_data(b"\r\n>", size, 10, on_cert, on_timeout)
        raise NoAnswer()

    def cmd_ccertlist(self, kind, args):
        if kind != "exec":
            raise CmdError(None)
        return ['+CCERTLIST: "%s"' % name for name in sorted(self.files)]

    def cmd_ccertdele(self, kind, args):
        if kind != "set":
            raise CmdError(None)
        name = text(params(args, 1, 1)[0], 108)
        if self.files.pop(name, None) is None:
            raise CmdError(None)
        return []

    def _ctx_line(self, i):
        s = self.ssl[i]
        return '+CSSLCFG: %d,%d,%d,%d,%d,"%s","%s","%s","%s",%d,%d' % (
            i, s["sslversion"], s["authmode"], s["ignorelocaltime"], s["negotiatetime"],
            s["cacert"], s["clientcert"], s["clientkey"], s["password"], s["enablesni"],
            s["ignorecertcn"])

    def cmd_csslcfg(self, kind, args):
        ranges = {"sslversion": (0, 4), "authmode": (0, 3), "ignorelocaltime": (0, 1),
                  "negotiatetime": (10, 300), "enablesni": (0, 1), "ignorecertcn": (0, 1)}
        files = ("cacert", "clientcert", "clientkey", "password")
        if kind == "test":
            return ['+CSSLCFG: "%s",(0-9),(%d-%d)' % (k, lo, hi) for k, (lo, hi) in ranges.items()]
        if kind == "read":
            return [self._ctx_line(i) for i in range(CONTEXTS)]
        if kind != "set":
            raise CmdError(None)
        parts = params(args, 1, 3)
        if len(parts) == 1:
            return [self._ctx_line(num(parts[0], 0, CONTEXTS - 1))]
        key = text(parts[0]).lower()
        ctx = num(parts[1], 0, CONTEXTS - 1)
        if len(parts) != 3 or (key not in ranges and key not in files):
            raise CmdError(None)
        if key in ranges:
            self.ssl[ctx][key] = num(parts[2], *ranges[key])
        else:
            name = text(parts[2], 108)
            if not 5 <= len(name) or not name.lower().endswith((".pem", ".der")):
                raise CmdError(None)
            self.ssl[ctx][key] = name
        return []
