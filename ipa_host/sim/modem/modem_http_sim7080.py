"""SIMCom SIM7080's HTTP(S) stack on the simulated modem (SIM7070/SIM7080/SIM7090 AT
command manual: HTTP(S), file system and SSL chapters; SSL application note).

    AT+SHCONF="URL","https://host:port" | "BODYLEN",<0-4096> | "HEADERLEN",<0-350> |
             "TIMEOUT" | "POLLCNT" | "POLLINTMS" | "IPVER"      (not while connected)
    AT+SHSSL=<ctx>,"<ca name>"[,"<cert name>"]   an empty CA name: no verification
    AT+SHCONN                 connect (TCP, TLS) to the URL -> OK, or ERROR on any failure
                              (DNS, refused, handshake: the stack gives no code)
    AT+SHSTATE?               -> +SHSTATE: 0|1
    AT+SHCHEAD / AT+SHAHEAD="<name>","<value>"   clear / add request headers
    AT+SHBOD=<len>,<ms>       -> '> ', <len> raw bytes -> OK   (len <= BODYLEN)
    AT+SHBOD="<text>",<len>   the older inline form
    AT+SHREQ="<path>",<type>  1 GET 2 PUT 3 POST 4 PATCH 5 HEAD -> OK, then URC
                              +SHREQ: "<method>",<status>,<datalen>  (status 600 Not HTTP
                              PDU, 601 Network Error, 602 No memory, 603 DNS Error,
                              604 Stack Busy when no answer came)
    AT+SHREAD=<start>,<len>   -> OK, then +SHREAD: <n>, <n> raw bytes (len <= 2048)
    AT+SHDISC                 -> OK (ERROR when not connected)
    AT+CFSINIT / AT+CFSWFILE=<dir>,"<name>",<mode>,<size>,<ms> -> DOWNLOAD, <size> bytes
        -> OK / AT+CFSTERM / AT+CFSDFILE=<dir>,"<name>" / AT+CFSGFIS=<dir>,"<name>"
        (dir 3 is /customer/, where certificates go; size <= 10240)
    AT+CSSLCFG="sslversion",<ctx>,<v> | "sni",<ctx>,"<name>" | "convert",2,"<ca name>" ...

The CA named by AT+SHSSL must have been converted with AT+CSSLCFG="convert",2,<name>
(which reads /customer/<name>); an unconverted or wrong CA fails AT+SHCONN.
The modem adds Host and Content-Length to the AT+SHAHEAD headers. The connection stays
open across requests until AT+SHDISC or until the server closes it (SHSTATE then 0).
"""

import select
import socket
import ssl

from ipa_host.sim.modem import modem_http
from ipa_host.sim.modem.modem_at import CmdError, NoAnswer
from ipa_host.sim.modem.modem_http import NetError, num, params, text

METHODS = {1: "GET", 2: "PUT", 3: "POST", 4: "PATCH", 5: "HEAD"}
# NetError kind -> +SHREQ status when the request got no answer
NET_STATUS = {"dns": 603, "connect": 601, "tls": 601, "ca_missing": 601, "timeout": 601,
              "closed": 601, "too_large": 602, "url": 600}
CUSTOMER = 3  # /customer/: certificates
MAX_FILE = 10240
MAX_URL = 64
NOT_ALLOWED = 3  # +CME ERROR: 3, operation not allowed


class Sim7080Http(modem_http.Stack):
    vendor = "sim7080"

    def __init__(self, at):
        self.converted = {}  # CA name -> certificate bytes (kept in flash, like files)
        modem_http.Stack.__init__(self, at)

    def reset(self):
        self.conf = {"URL": "", "TIMEOUT": 60, "BODYLEN": 1024, "HEADERLEN": 350,
                     "POLLCNT": 0, "POLLINTMS": 0, "IPVER": 0}
        self.sh_ssl = None  # (ctx, ca name, cert name)
        self.ssl = {}
        self.fs_open = False
        self.headers = []
        self.body = b""
        self.sock = None
        self.answer = None

    # -- state ------------------------------------------------------------------------------

    def connected(self):
        """Connected, and the server has not closed the connection (seen as EOF)."""
        if self.sock is None:
            return False
        if self.busy:
            return True
        try:
            readable = select.select([self.sock], [], [], 0)[0]
        except (OSError, ValueError):
            readable = True
        if readable:
            try:
                self.sock.settimeout(0.05)
                gone = self.sock.recv(1) == b""  # nothing else is due between requests
            except (ssl.SSLWantReadError, socket.timeout):
                gone = False
            except OSError:
                gone = True
            if gone:
                self._drop()
                return False
        return True

    def _drop(self):
        modem_http.close_quietly(self.sock)
        self.sock = None

    def reboot(self):
        self._drop()
        modem_http.Stack.reboot(self)

    # -- configuration ----------------------------------------------------------------------

    def cmd_shconf(self, kind, args):
        ranges = {"TIMEOUT": (30, 1800), "BODYLEN": (0, self.cfg["sh_body_max"]),
                  "HEADERLEN": (0, 350), "POLLCNT": (0, 15), "POLLINTMS": (0, 500),
                  "IPVER": (0, 1)}
        if kind == "test":
            return ['+SHCONF: "URL",(%d)' % MAX_URL] + \
                ['+SHCONF: "%s",(%d-%d)' % (k, lo, hi) for k, (lo, hi) in ranges.items()]
        if kind == "read":
            return ["+SHCONF: URL: %s" % self.conf["URL"]] + \
                ["+SHCONF: %s: %d" % (k, self.conf[k]) for k in ranges]
        if kind != "set":
            raise CmdError(50)
        parts = params(args, 2, 2)
        key = text(parts[0]).upper()
        if self.connected():
            raise CmdError(NOT_ALLOWED)
        if key == "URL":
            url = text(parts[1], MAX_URL)
            try:
                modem_http.parse_url(url)
            except NetError:
                raise CmdError(50)
            self.conf["URL"] = url
        elif key in ranges:
            self.conf[key] = num(parts[1], *ranges[key])
        else:
            raise CmdError(50)
        return []

    def cmd_shssl(self, kind, args):
        if kind == "test":
            return ['+SHSSL: (0-5),"ca list","cert name"']
        if kind == "read":
            ctx, ca, cert = self.sh_ssl or (1, "", "")
            return ['+SHSSL: %d,"%s","%s"' % (ctx, ca, cert)]
        if kind != "set":
            raise CmdError(50)
        parts = params(args, 1, 3)
        if self.connected():
            raise CmdError(NOT_ALLOWED)
        ctx = num(parts[0], 0, 5)
        ca = text(parts[1], 64) if len(parts) > 1 else ""
        cert = text(parts[2], 64) if len(parts) > 2 else ""
        self.sh_ssl = (ctx, ca, cert)
        return []

    def cmd_csslcfg(self, kind, args):
        if kind == "test":
            return ['+CSSLCFG: "SSLVERSION",(0-5),(0-5)', '+CSSLCFG: "CONVERT",(1-3)',
                    '+CSSLCFG: "SNI",(0-5),"server name"']
        if kind == "read":
            return ["+CSSLCFG: %d,%d" % (ctx, s.get("sslversion", 3))
                    for ctx, s in sorted(self.ssl.items())]
        if kind != "set":
            raise CmdError(50)
        parts = params(args, 2, 5)
        key = text(parts[0]).lower()
        if key == "convert":
            return self._convert(parts)
        if key == "ctxindex":
            num(parts[1], 0, 5)
            return []
        if len(parts) != 3:
            raise CmdError(50)
        ctx = num(parts[1], 0, 5)
        s = self.ssl.setdefault(ctx, {"sslversion": 3})
        if key == "sslversion":
            s["sslversion"] = num(parts[2], 0, 5)
        elif key == "sni":
            s["sni"] = text(parts[2], 128)
        elif key in ("ciphersuite", "ignorertctime", "protocol", "ignorecertcn"):
            s[key] = text(parts[2], 16)
        else:
            raise CmdError(50)
        return []

    def _convert(self, parts):
        """AT+CSSLCFG="convert",2,<ca>: a certificate from /customer/ into the SSL store;
        ,1,<cert>,<key>: a client certificate and key (only checked to exist)."""
        ssltype = num(parts[1], 1, 3)
        if len(parts) < 3:
            raise CmdError(50)
        names = [text(p, 64) for p in parts[2:4]]
        for name in names:
            if (CUSTOMER, name) not in self.files:
                raise CmdError(None)
        if ssltype == 2:
            data = self.files[(CUSTOMER, names[0])]
            if not _is_certificate(data):
                raise CmdError(None)
            self.converted[names[0]] = data
        return []

    # -- connection -------------------------------------------------------------------------

    def _tls(self):
        ctx, ca, _cert = self.sh_ssl or (1, "", "")
        if not ca:  # an empty CA list: TLS without verifying the server
            return modem_http.Tls(verify=False)
        version = {1: "1.0", 2: "1.1", 3: "1.2"}.get(self.ssl.get(ctx, {}).get("sslversion", 3))
        return modem_http.Tls(verify=True, ca=self.converted.get(ca), version=version)

    def cmd_shconn(self, kind, args):
        if kind == "test":
            return []
        if kind != "exec":
            raise CmdError(50)
        if self.connected() or not self.conf["URL"]:
            raise CmdError(NOT_ALLOWED)
        scheme, host, port, _path, _hp = modem_http.parse_url(self.conf["URL"])
        try:
            self.sock = modem_http.connect(scheme, host, port,
                                           self._tls() if scheme == "https" else None)
        except NetError:
            raise CmdError(None)
        self.answer = None
        return []

    def cmd_shstate(self, kind, args):
        if kind == "test":
            return ["+SHSTATE: (0,1)"]
        if kind != "read":
            raise CmdError(50)
        return ["+SHSTATE: %d" % (1 if self.connected() else 0)]

    def cmd_shdisc(self, kind, args):
        if kind == "test":
            return []
        if kind != "exec":
            raise CmdError(50)
        if self.sock is None:
            raise CmdError(NOT_ALLOWED)
        self.cancel()
        self._drop()
        return []

    # -- request ----------------------------------------------------------------------------

    def cmd_shchead(self, kind, args):
        if kind != "exec":
            raise CmdError(50)
        self.headers = []
        return []

    def cmd_shahead(self, kind, args):
        if kind == "test":
            return ['+SHAHEAD: "type","value"']
        if kind == "read":
            return ['+SHAHEAD: "%s","%s"' % kv for kv in self.headers]
        if kind != "set":
            raise CmdError(50)
        parts = params(args, 2, 2)
        name, value = text(parts[0], 64), text(parts[1], 256)
        if not name or ":" in name:
            raise CmdError(50)
        size = sum(len(k) + len(v) + 4 for k, v in self.headers) + len(name) + len(value) + 4
        if size > self.conf["HEADERLEN"]:
            raise CmdError(None)
        self.headers.append((name, value))
        return []

    def cmd_shcpara(self, kind, args):
        if kind != "exec":
            raise CmdError(50)
        return []

    def cmd_shbod(self, kind, args):
        if kind == "test":
            return ["+SHBOD: (1-%d),(100-10000)" % self.conf["BODYLEN"]]
        if kind == "read":
            return ["+SHBOD: %d" % len(self.body)]
        if kind != "set":
            raise CmdError(50)
        parts = params(args, 2, 2)
        if parts[0][1]:  # AT+SHBOD="<text>",<len>
            body = parts[0][0].encode("latin-1")
            if num(parts[1], 1, self.conf["BODYLEN"]) != len(body):
                raise CmdError(50)
            self.body = body
            return []
        n = num(parts[0], 1, self.conf["BODYLEN"])
        ms = num(parts[1], 100, 65535)

        def on_body(data):
            self.body = bytes(data)
            return []

        def on_timeout():
            raise CmdError(None)

        self.at.begin_data(b"\r\n> ", n, ms / 1000.0, on_body, on_timeout)
        raise NoAnswer()

    def cmd_shreq(self, kind, args):
        if kind == "test":
            return ['+SHREQ: "url",(1-5)']
        if kind != "set":
            raise CmdError(50)
        parts = params(args, 2, 2)
        path = text(parts[0], 256)
        method = METHODS.get(num(parts[1], 1, 5))
        if not path.startswith("/") or self.busy or not self.connected():
            raise CmdError(NOT_ALLOWED if path.startswith("/") else 50)
        _s, _h, _p, _path, hostport = modem_http.parse_url(self.conf["URL"])
        heads = [(k, v) for k, v in self.headers if k.lower() not in ("content-length", "host")]
        heads.insert(0, ("Host", hostport))
        body = self.body if method in ("POST", "PUT", "PATCH") else b""
        if method in ("POST", "PUT", "PATCH"):
            heads.append(("Content-Length", str(len(body))))
        raw = modem_http.request_bytes(method, path, heads, body)
        self.answer = None
        if self.fault is not None:
            code = self.fault
            self.background(lambda: None,
                            lambda _r: self.at.urc('+SHREQ: "%s",%d,0' % (method, code)))
            return []
        self.requests += 1
        sock = self.sock
        timeout = min(self.conf["TIMEOUT"], modem_http.ANSWER_TIMEOUT)

        def done(result):
            if isinstance(result, NetError):
                self._drop()
                self.at.urc('+SHREQ: "%s",%d,0' % (method, NET_STATUS[result.kind]))
                return
            self.answer = result
            if result.closes:
                self._drop()
            self.at.urc('+SHREQ: "%s",%d,%d' % (method, result.status, len(result.body)))

        self.background(lambda: modem_http.exchange(sock, raw, method, timeout), done)
        return []

    def cmd_shread(self, kind, args):
        if kind == "test":
            return ["+SHREAD: (0-%d),(1-%d)" % (modem_http.MAX_RESPONSE, self.cfg["sh_read_max"])]
        if kind != "set":
            raise CmdError(50)
        parts = params(args, 2, 2)
        start = num(parts[0], 0, modem_http.MAX_RESPONSE)
        n = num(parts[1], 1, self.cfg["sh_read_max"])
        if self.busy or self.answer is None or start >= len(self.answer.body):
            raise CmdError(NOT_ALLOWED)
        chunk = self.answer.body[start:start + n]
        self.at.final("OK")
        self.at.io.write(b"\r\n+SHREAD: %d\r\n" % len(chunk))
        self.write_body(chunk)
        self.at.io.write(b"\r\n")
        raise NoAnswer()

    # -- file system ------------------------------------------------------------------------

    def cmd_cfsinit(self, kind, args):
        if kind != "exec":
            raise CmdError(50)
        self.fs_open = True
        return []

    def cmd_cfsterm(self, kind, args):
        if kind != "exec":
            raise CmdError(50)
        self.fs_open = False
        return []

    def _file_args(self, args, least, most):
        parts = params(args, least, most)
        if not self.fs_open:
            raise CmdError(NOT_ALLOWED)
        name = text(parts[1], 230)
        if not name or "/" in name:
            raise CmdError(50)
        return parts, (num(parts[0], 0, 4), name)

    def cmd_cfswfile(self, kind, args):
        if kind == "test":
            return ["+CFSWFILE: (0-4),<filename>,(0,1),(1-%d),(100-10000)" % MAX_FILE]
        if kind != "set":
            raise CmdError(50)
        parts, key = self._file_args(args, 5, 5)
        mode = num(parts[2], 0, 1)
        size = num(parts[3], 1, MAX_FILE)
        ms = num(parts[4], 100, 10000)

        def on_file(data):
            old = self.files.get(key, b"") if mode == 1 else b""
            if len(old) + len(data) > MAX_FILE:
                raise CmdError(None)
            self.files[key] = old + bytes(data)
            return []

        def on_timeout():
            raise CmdError(None)

        self.at.begin_data(b"\r\nDOWNLOAD\r\n", size, ms / 1000.0, on_file, on_timeout)
        raise NoAnswer()

    def cmd_cfsdfile(self, kind, args):
        if kind != "set":
            raise CmdError(50)
        _parts, key = self._file_args(args, 2, 2)
        if self.files.pop(key, None) is None:
            raise CmdError(None)
        return []

    def cmd_cfsgfis(self, kind, args):
        if kind != "set":
            raise CmdError(50)
        _parts, key = self._file_args(args, 2, 2)
        if key not in self.files:
            raise CmdError(None)
        return ["+CFSGFIS: %d" % len(self.files[key])]


def _is_certificate(data):
    """PEM or DER X.509 certificate (what "convert" accepts as a CA)."""
    from cryptography import x509

    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            x509.load_pem_x509_certificates(data) if hasattr(x509, "load_pem_x509_certificates") \
                else x509.load_pem_x509_certificate(data)
        else:
            x509.load_der_x509_certificate(data)
        return True
    except ValueError:
        return False
