"""Regenerate the seed corpora of tests/fuzz/corpus/ from real traffic of the simulators.

    .venv/bin/python tests/fuzz/make_corpus.py        (about 30 s; rewrites corpus/)

Everything here is captured, not written by hand, except where a line says so:

  apdu, es10, tlv   the virtual eUICC's R-APDUs and ES10 answers (ipa_host.sim.euicc) to
                    the core's own ES10 calls over an IsdrSession
  esipa, esipa_json, tlv  the simulated eIM's ESipa answers (ipa_host.sim.eim) to the real
                    `ipa poll` (subprocess, real TLS) for PSMOs, eCOs and data requests,
                    in both bindings (EimServer.requests keeps each request and answer)
  http, http_client the eIM's raw HTTP/1.1 answer bytes over TLS to a captured request
                    (plus one chunked re-framing of the same answer, made here)
  coap, coap_client the eIM's CoAP datagrams inside DTLS (ipa_host.net.coaps), 64-byte
                    blocks both ways
  at, at_card, at_http_*  the simulated modem's bytes on its pty (ipa_host.sim.modem) after
                    each write of the core's AtEngine / AtCard / HTTP stacks, which reach
                    the eIM through the modem's own TLS
  es9p, json_stream  the simulated SM-DP+'s ES9+ answers (ipa_host.sim.smdpp) to the real
                    `ipa download` (subprocess, real TLS), one refused; ES11 answers have
                    the same members, so they seed ES11's decoders too
  b64, activation   base64 members of the JSON bodies above; activation codes from the
                    core's own activation.build (an eIM or a person hands them over)

Frames: see tests/fuzz/targets.py. Each corpus keeps at most MAX_PER_TARGET entries of at
most MAX_ENTRY bytes (the committed corpus stays small).
"""

import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from ipa_core import b64, es10, es10_admin, esipa, esipa_json  # noqa: E402
from ipa_core.apdu import IsdrSession  # noqa: E402
from ipa_core.at import AtEngine  # noqa: E402
from ipa_core.at_card import AtCard, open_isdr_session  # noqa: E402
from ipa_core.at_http import open_network  # noqa: E402
from targets import ES10_CALLS, ESIPA_HEADERS, pack  # noqa: E402

MAX_PER_TARGET = 12
MAX_ENTRY = 8192
IPA = os.path.join(os.path.dirname(sys.executable), "ipa")


class Corpus:
    def __init__(self):
        self.entries = {}

    def add(self, target, data):
        data = bytes(data)[:MAX_ENTRY]
        got = self.entries.setdefault(target, [])
        if data not in got and len(got) < MAX_PER_TARGET:
            got.append(data)

    def write(self):
        base = os.path.join(HERE, "corpus")
        shutil.rmtree(base, ignore_errors=True)
        for target, items in sorted(self.entries.items()):
            os.makedirs(os.path.join(base, target))
            for data in items:
                name = hashlib.sha1(data).hexdigest()[:16]
                with open(os.path.join(base, target, name), "wb") as f:
                    f.write(data)
            print("%-16s %3d entries %7d bytes" % (target, len(items), sum(map(len, items))))


class RecCard:
    def __init__(self, card):
        self.card = card
        self.answers = []

    def transmit(self, apdu):
        r = self.card.transmit(apdu)
        self.answers.append(r)
        return r


class RecStream:
    """A stream that records what came back after each write, as frames."""

    def __init__(self, stream):
        self.stream = stream
        self.frames = [bytearray()]

    def write(self, b):
        self.frames.append(bytearray())
        return self.stream.write(b)

    def read(self, n):
        data = self.stream.read(n)
        if data:
            self.frames[-1] += data
        return data

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def take(self):
        out = pack(self.frames)
        self.last = self.frames
        self.frames = [bytearray()]
        return out


def capture_es10(c, home):
    from ipa_host.sim.home import open_home_euicc

    card = RecCard(open_home_euicc(home))
    s = IsdrSession(card)
    es10.get_eid(s)
    es10.get_euicc_info1(s)
    c.add("apdu", pack(card.answers))
    s.close()
    # A session with 60-byte STORE DATA blocks and 61xx chains (GET RESPONSE).
    card.answers = []
    s = IsdrSession(card, segment_size=60)
    es10.get_eid(s)
    es10_admin.get_euicc_info2(s)
    c.add("apdu", pack(card.answers))
    answers = []
    store = s.store_data

    def rec(request):
        r = store(request)
        answers.append(r)
        return r

    s.store_data = rec
    for i, fn in enumerate(ES10_CALLS[:10]):
        del answers[:]
        try:
            fn(s)
        except Exception as e:  # noqa: B902 - a call the virtual card refuses still gave bytes
            print("  es10 call %d: %s" % (i, e))
        c.add("es10", bytes((i,)) + pack(answers))
        for a in answers:
            c.add("tlv", a)
    s.close()


def capture_esipa(c, h, server, eid, profiles):
    def poll(binding):
        r = subprocess.run([IPA, "--home", h, "--eim-url", server.url, "--binding", binding,
                            "poll"], capture_output=True, text=True, timeout=60)
        if r.returncode not in (0, 4):
            print("  ipa poll (%s) exited %d: %s" % (binding, r.returncode, r.stdout[-300:]))

    for binding in ("asn1", "json"):
        server.queue_psmo(eid, [{"op": "enable", "iccid": profiles[1]}])
        poll(binding)
        server.queue_psmo(eid, [{"op": "enable", "iccid": profiles[0]},
                                {"op": "getRAT"}])
        poll(binding)
        server.queue_eco(eid, [{"op": "listEim"}])
        poll(binding)
        server.queue_data_request(eid, ["80", "BF22", "A2"])
        poll(binding)
        poll(binding)  # nothing queued: noEimPackageAvailable
    asn1_index = {"getEimPackage": 0, "provideEimPackageResult": 1}
    json_names = esipa_json.FUNCTIONS + ("handleNotification",)
    for q in server.requests:
        body = q["response"] or b""
        f = q["function"]
        if q["binding"] == "json" or (body[:1] == b"{"):
            if f in json_names:
                c.add("esipa_json", bytes((json_names.index(f),)) + body)
            c.add("json_stream", body)
            try:
                obj = json.loads(body)
            except ValueError:
                continue
            for v in _strings(obj):
                if len(v) >= 8 and len(v) % 4 == 0:
                    c.add("b64", v.encode())
        else:
            if f in asn1_index:
                c.add("esipa", bytes((asn1_index[f],)) + body)
            c.add("tlv", body)
            c.add("tlv", q["request"] or b"")
    return [q for q in server.requests if q["function"] == "getEimPackage"][0]["request"]


# ES9+ function -> the es9p target's selector bytes (targets.ES9P_CALLS; 7: ES11's
# InitiateAuthentication, the same JSON members).
ES9P_SELECTORS = {"initiateAuthentication": (0, 7), "authenticateClient": (2, 8),
                  "getBoundProfilePackage": (3, 6), "handleNotification": (4,),
                  "cancelSession": (5,)}


def capture_es9p(c, home):
    """`ipa download` (subprocess, real TLS) from the simulated SM-DP+; its JSON answers."""
    from ipa_host.sim.home import open_home_euicc, sim_dir
    from ipa_host.sim.smdpp.smdpp import SmdpServer

    open_home_euicc(home)
    dp = SmdpServer(os.path.join(home, "smdp"), os.path.join(sim_dir(home), "pki")).start()
    got = []
    handle = dp.service.handle

    def rec(function, obj):
        status, answer = handle(function, obj)
        got.append((function, answer))
        return status, answer

    dp.service.handle = rec
    try:
        dp.add_profile("MATCH-1", "8949449999999990017", "Fuzz seed", size=1500)
        r = subprocess.run([IPA, "--home", home, "--smdp-ca-file", dp.tls_ca_path, "download",
                            "LPA:1$%s$MATCH-1" % dp.address], capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0:
            print("  ipa download exited %d: %s" % (r.returncode, r.stdout[-300:]))
        # A refused one too: an unknown matchingId answers a Failed header.
        subprocess.run([IPA, "--home", home, "--smdp-ca-file", dp.tls_ca_path, "download",
                        "LPA:1$%s$NO-SUCH" % dp.address], capture_output=True, timeout=120)
    finally:
        dp.stop()
    for function, answer in got:
        body = b"" if answer is None else json.dumps(answer, separators=(",", ":")).encode()
        for sel in ES9P_SELECTORS.get(function, ()):
            c.add("es9p", bytes((sel,)) + body)
        c.add("json_stream", body)


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def capture_http(c, server, request):
    ctx = ssl.create_default_context(cafile=server.tls_files["ca_cert"])
    ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with ctx.wrap_socket(raw) as s:
        s.sendall(b"POST /gsma/rsp2/asn1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: gsma-rsp-lpad"
                  b"\r\nX-Admin-Protocol: gsma/rsp/v2.1.0\r\nContent-Type: "
                  b"application/x-gsma-rsp-asn1\r\nContent-Length: %d\r\nConnection: close\r\n"
                  b"\r\n" % len(request) + request)
        answer = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            answer += d
    c.add("http", answer)
    c.add("http_client", answer)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = [x for x in head.split(b"\r\n") if not x.lower().startswith(b"content-length")]
    chunked = b"\r\n".join(lines + [b"Transfer-Encoding: chunked"]) + b"\r\n\r\n"
    for i in range(0, len(body), 7):  # made here: the same answer re-framed as chunks
        part = body[i:i + 7]
        chunked += b"%x;ext=1\r\n%s\r\n" % (len(part), part)
    chunked += b"0\r\nX-Trailer: 1\r\n\r\n"
    c.add("http", chunked)
    c.add("http_client", chunked)


def capture_coap(c, server, request, queue):
    """The eIM's datagrams inside DTLS: a queued package (Block2 in 64-byte blocks), then
    the request with 200 bytes more (Block1; the eIM refuses the body at its end)."""
    from ipa_host.net.coaps import CoapsNetwork

    for sel, body in ((0, request), (1, request + bytes(200))):
        net = CoapsNetwork(server.coap_url, ca_file=server.tls_files["ca_cert"], block_size=64,
                           timeout=5)
        client = net._open()
        got = []
        recv = client.dgram.recv

        def rec(timeout_ms, recv=recv, got=got):
            d = recv(timeout_ms)
            if d is not None:
                got.append(bytes(d))
            return d

        client.dgram.recv = rec
        if sel == 0:
            queue()
        try:
            net.post("/gsma/rsp2/asn1", body, "application/x-gsma-rsp-asn1")
        finally:
            net.close()
        for d in got:
            c.add("coap", d)
        c.add("coap_client", bytes((sel,)) + pack(got))


def capture_modem(c, home, server, request, queue):
    from ipa_host.card.serial import SerialStream
    from ipa_host.sim.home import open_home_euicc
    from ipa_host.sim.modem.modem import SimModem

    card = open_home_euicc(home)
    with open(server.tls_files["ca_cert"]) as f:
        pem = f.read()
    for personality, stack, target in (("quectel_http", "quectel", "at_http_quectel"),
                                       ("a7670", "simcom", "at_http_simcom"),
                                       ("sim7080", "sim7080", "at_http_sim7080")):
        m = SimModem(card, personality).start()
        try:
            rs = RecStream(SerialStream(m.path))
            eng = AtEngine(rs)
            eng.sync()
            rs.take()
            for mode, sel in (("auto", 0), ("csim", 2)):
                ac = AtCard(eng, mode=mode)
                es10.get_eid(open_isdr_session(ac))
                ac.close()
                got = rs.take()
                c.add("at_card", bytes((sel,)) + got)
                for frame in rs.last:
                    for i, prefix in enumerate((b"+CGLA:", b"+CSIM:", b"+CCHO:")):
                        if prefix in frame:
                            c.add("at_lines", bytes((i,)) + bytes(frame))
            eng.command("AT+CGMM")
            eng.command("AT+CPIN?", prefix="+CPIN:")
            c.add("at", rs.take())
            net = open_network(eng, server.url, stack, timeout_ms=5000, http_timeout_ms=10000)
            net.install_ca(pem, "eim_ca.pem")
            net.close()
            net = open_network(eng, server.url, stack, timeout_ms=5000, http_timeout_ms=10000,
                               ca="eim_ca.pem")
            rs.take()
            queue()
            net.post("/gsma/rsp2/asn1", request, "application/x-gsma-rsp-asn1",
                     ESIPA_HEADERS)
            net.close()
            c.add(target, rs.take())
            rs.stream.close()
        finally:
            m.stop()


def main():
    from ipa_host.sim.eim.eim import EimServer
    from ipa_host.sim.home import DEMO_PROFILES, eim_dir, open_home_euicc, sim_dir

    c = Corpus()
    tmp = tempfile.mkdtemp(prefix="ipa-fuzz-corpus-")
    try:
        capture_es10(c, os.path.join(tmp, "card"))
        capture_es9p(c, os.path.join(tmp, "dl"))
        h = os.path.join(tmp, "home")
        eid = open_home_euicc(h).eid
        server = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"),
                           association_token=1, coap_port=0).start()
        try:
            request = capture_esipa(c, h, server, eid, [p["iccid"] for p in DEMO_PROFILES])
            capture_http(c, server, request)

            def queue():
                server.queue_psmo(eid, [{"op": "enable", "iccid": DEMO_PROFILES[1]["iccid"]}])

            capture_coap(c, server, request, queue)
            capture_modem(c, h, server, request, queue)
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Strings the IPA takes from people and servers (activation codes come from an eIM's
    # ProfileDownloadTriggerRequest or a user): the core's own builder, no simulator.
    from ipa_core import activation

    for ac in (activation.build("smdp.example.com", "ABC-123"),
               activation.build("smdp.example.com:8443", "X", "2.999.10", True),
               "LPA:1$127.0.0.1:8443$$"):
        c.add("activation", ac.encode())
    c.add("b64", b64.encode(esipa.get_eim_package_request("89049032123451234512345678901235"))
          .encode())
    c.write()


if __name__ == "__main__":
    main()
