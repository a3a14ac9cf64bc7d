"""ipa_core.at_http* (modem HTTP(S) stacks) against scripted modems (tests/core/fakestream.py).

Each stack's AT dialogue is scripted byte for byte: the exact commands, raw
request bodies with CR LF "OK" look-alikes inside, response bodies of any
byte value read whole and in chunks, stack error codes, timeouts on a fake
clock, garbage answers and the CA upload. Plain functions with assert:
pytest and tools/mp_test.py run them.
"""

from ipa_core import at_http
from ipa_core.at import AtEngine
from ipa_core.at_http import HttpStackError, open_network, pick, split_url
from ipa_core.at_http_quectel import QuectelHttp
from ipa_core.at_http_sim7080 import Sim7080Http
from ipa_core.at_http_simcom import SimcomHttp
from ipa_core.errors import ProtocolError, TimeoutError_, TransportError

from fakestream import FakeClock, FakeModem, Silence

OK = "\r\nOK\r\n"
URL = "https://eim.example:8443"
PATH = "/gsma/rsp2/asn1"
CT = "application/x-gsma-rsp-asn1"
HDRS = {"X-Admin-Protocol": "gsma/rsp/v2.1.0"}
# Bodies that look like AT answers: a reader that parses lines would stop early.
REQ_BODY = b"\xbf\x3e\x00\r\nOK\r\nERROR\r\n> CONNECT\r\n+QHTTPPOST: 0,200,1\r\n\x00\xff"
RSP_BODY = (b"\r\nOK\r\n\x00\x01\xfe\xff\r\n+SHREAD: 9\r\nERROR\r\nDOWNLOAD\r\n>\r\n" +
            bytes(range(256)))


def raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def rig(cls, script, url=URL, chunks=(1, 7, 64, 300), **options):
    """(network, modem, clock) over a FakeModem; the engine keeps URCs in .urcs."""
    clock = FakeClock()
    modem = FakeModem(script, clock=clock, chunks=chunks)
    eng = AtEngine(modem, clock_ms=clock)
    return cls(eng, url, **options), modem, clock


def big(n):
    """n bytes of every value, CR LF OK included."""
    return bytes((i * 7 + (i >> 8)) & 0xFF for i in range(n)) + b"\r\nOK\r\n"


# ---- shared parts -------------------------------------------------------------------------

def test_split_url():
    assert split_url("https://eim.example") == ("https", "eim.example", 443, "")
    assert split_url("http://10.0.0.1:8080/") == ("http", "10.0.0.1", 8080, "")
    assert split_url("HTTPS://[::1]:9443/eim/v1/") == ("https", "[::1]", 9443, "/eim/v1")
    for bad in ("eim.example", "ftp://x", "https://", "https://x:0", "https://x:70000",
                "https://x:ab", 'https://a"b', "https://a b", "https://u@x"):
        e = raises(ValueError, split_url, bad)
        assert "base URL" in str(e), bad


def test_pick_resolve_and_lazy_open():
    assert pick("Quectel EG915U") == "quectel"
    assert pick("SIMCOM_Ltd SIMCOM_SIM7080G") == "sim7080"
    assert pick("SIMCOM INCORPORATED A7670E-LASE") == "simcom"
    assert pick("SIMCOM_Ltd SIMCOM_SIM7600G-H") == "simcom"
    assert pick("u-blox SARA-R410M") is None and pick(None) is None
    assert sorted(at_http.STACKS) == ["quectel", "sim7080", "simcom"]
    eng = AtEngine(FakeModem([]), clock_ms=FakeClock())
    assert isinstance(open_network(eng, URL, "quectel"), QuectelHttp)
    assert isinstance(open_network(eng, URL, "SIM7070", chunk=512), Sim7080Http)
    assert isinstance(open_network(eng, URL, "a76xx"), SimcomHttp)
    e = raises(ValueError, open_network, eng, URL, "ublox")
    assert "quectel, sim7080, simcom" in str(e)


def test_options_and_requests_are_checked():
    eng = AtEngine(FakeModem([]), clock_ms=FakeClock())
    e = raises(ValueError, QuectelHttp, eng, URL, timout_ms=5)
    assert "timout_ms" in str(e) and "timeout_ms" in str(e)
    raises(ValueError, SimcomHttp, eng, URL, max_body=-1)
    raises(ValueError, Sim7080Http, eng, URL, chunk=4096)
    raises(ValueError, Sim7080Http, eng, URL, body_len=5000)
    net = QuectelHttp(eng, URL)
    # Refused before anything is sent (the scripted modem has no steps).
    raises(ValueError, net.post, "gsma", b"", CT)
    raises(ValueError, net.post, PATH, b"", CT, {"Content-Length": "3"})
    raises(ValueError, net.post, PATH, b"", CT, {"X-A": 'say "hi"'})
    raises(ValueError, net.post, PATH, b"", CT, {"Bad Name": "x"})
    raises(ValueError, net.install_ca, b"", "ca.pem")
    raises(ValueError, net.install_ca, b"x" * 10241, "ca.pem")
    raises(ValueError, net.install_ca, b"pem", "../ca.pem")
    net.verify = True
    e = raises(ValueError, net.verifying)
    assert "install_ca" in str(e)


# ---- Quectel ------------------------------------------------------------------------------

def q_setup(seclevel=0, ca=None):
    steps = [
        ('AT+QHTTPCFG="contextid",1', OK),
        ('AT+QHTTPCFG="responseheader",0', OK),
        ('AT+QHTTPCFG="requestheader",1', OK),
        ('AT+QHTTPCFG="sslctxid",1', OK),
        ('AT+QSSLCFG="sslversion",1,3', OK),
        ('AT+QSSLCFG="ciphersuite",1,0xFFFF', OK),
        ('AT+QSSLCFG="seclevel",1,%d' % seclevel, OK),
    ]
    if ca:
        steps.append(('AT+QSSLCFG="cacert",1,"UFS:%s"' % ca, OK))
    steps.append(('AT+QSSLCFG="sni",1,1', OK))
    return steps


def q_request(body, headers=b"X-Admin-Protocol: gsma/rsp/v2.1.0\r\n"):
    return (b"POST /gsma/rsp2/asn1 HTTP/1.1\r\nHost: eim.example:8443\r\n"
            b"Content-Type: application/x-gsma-rsp-asn1\r\n" + headers +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def q_url():
    url = URL + PATH
    return [("AT+QHTTPURL=%d,10" % len(url), "\r\nCONNECT\r\n"), (url.encode(), OK)]


def q_post(req, urc, delay=300, rsp=60):
    return [("AT+QHTTPPOST=%d,10,%d" % (len(req), rsp), "\r\nCONNECT\r\n"),
            (req, [OK, Silence(delay), "\r\n%s\r\n" % urc])]


def q_read(body, trailer=OK + "\r\n+QHTTPREAD: 0\r\n"):
    return [("AT+QHTTPREAD=10", ["\r\nCONNECT\r\n", body, trailer])]


def test_quectel_post_exact_dialogue_binary_both_ways():
    req = q_request(REQ_BODY)
    req2 = q_request(b"\x30\x00")
    script = (q_setup() + q_url() + q_post(req, "+QHTTPPOST: 0,200,%d" % len(RSP_BODY)) +
              q_read(RSP_BODY) +
              # Same URL: no QHTTPURL; 204 without a body: no QHTTPREAD.
              q_post(req2, "+QHTTPPOST: 0,204,0"))
    net, modem, _ = rig(QuectelHttp, script)
    assert net.post(PATH, REQ_BODY, CT, HDRS) == (200, RSP_BODY)
    assert net.post(PATH, b"\x30\x00", CT, HDRS) == (204, b"")
    assert modem.raw[1] == req and net.requests == 2 and net.status == 204
    modem.done()


def test_quectel_http_without_tls_and_non_2xx_is_returned():
    body = b"<html>not here</html>"
    url = "http://10.1.2.3/eim" + PATH
    req = (b"POST /eim/gsma/rsp2/asn1 HTTP/1.1\r\nHost: 10.1.2.3\r\n"
           b"Content-Type: application/x-gsma-rsp-asn1\r\nContent-Length: 1\r\n\r\nZ")
    script = [('AT+QHTTPCFG="contextid",2', OK), ('AT+QHTTPCFG="responseheader",0', OK),
              ('AT+QHTTPCFG="requestheader",1', OK),
              ("AT+QHTTPURL=%d,10" % len(url), "\r\nCONNECT\r\n"), (url.encode(), OK)]
    script += q_post(req, "+QHTTPPOST: 0,404,%d" % len(body)) + q_read(body)
    net, modem, _ = rig(QuectelHttp, script, url="http://10.1.2.3/eim/", context_id=2)
    assert net.post(PATH, b"Z", CT) == (404, body)
    modem.done()


def test_quectel_stream_reads_a_large_body_in_chunks():
    body = big(6000)
    req = q_request(b"\x01")
    script = q_setup() + q_url() + q_post(req, "+QHTTPPOST: 0,200,%d" % len(body)) + q_read(body)
    script += q_post(req, "+QHTTPPOST: 0,200,2") + q_read(b"ok")
    net, modem, _ = rig(QuectelHttp, script, chunk=512)
    status, reader = net.post_stream(PATH, b"\x01", CT, HDRS)
    assert status == 200 and reader.length == len(body)
    got = bytearray()
    sizes = []
    while True:
        part = reader.read(700)
        if not part:
            break
        assert 1 <= len(part) <= 700
        sizes.append(len(part))
        got.extend(part)
    assert bytes(got) == body and max(sizes) <= 512 and len(sizes) >= 12
    assert reader.read(10) == b""
    reader.close()
    assert net.post(PATH, b"\x01", CT, HDRS) == (200, b"ok")
    modem.done()


def test_quectel_unknown_length_is_scanned_to_the_trailer():
    body = b"\r\nOK\r\n" + big(3000) + b"\r\nOK\r\n\r\n+QHTTPREA"
    req = q_request(b"\x02")
    # Both trailer orders: OK then the URC (the manual), the URC then OK.
    script = (q_setup() + q_url() + q_post(req, "+QHTTPPOST: 0,200") + q_read(body) +
              q_post(req, "+QHTTPPOST: 0,200,") +
              q_read(b"tiny\r\n", "\r\n+QHTTPREAD: 0\r\n" + OK) +
              q_post(req, "+QHTTPPOST: 0,200") + q_read(b""))
    for chunks in ((1,), (3, 250, 17), (4096,)):
        net, modem, _ = rig(QuectelHttp, script, chunks=chunks, chunk=256)
        status, reader = net.post_stream(PATH, b"\x02", CT, HDRS)
        assert status == 200 and reader.length is None
        assert reader.readall() == body
        assert net.post(PATH, b"\x02", CT, HDRS) == (200, b"tiny\r\n")
        assert net.post(PATH, b"\x02", CT, HDRS) == (200, b"")
        modem.done()


def test_quectel_reader_closed_early_is_drained():
    body = big(5000)
    req = q_request(b"\x03")
    script = (q_setup() + q_url() + q_post(req, "+QHTTPPOST: 0,200,%d" % len(body)) +
              q_read(body) + q_post(req, "+QHTTPPOST: 0,201,1") + q_read(b"!"))
    net, modem, _ = rig(QuectelHttp, script)
    status, reader = net.post_stream(PATH, b"\x03", CT, HDRS)
    assert reader.read(100) == body[:100]
    reader.close()
    raises(TransportError, reader.read, 1)
    assert net.post(PATH, b"\x03", CT, HDRS) == (201, b"!")
    modem.done()


def test_quectel_stack_errors_name_command_code_and_meaning():
    req = q_request(b"\x04")
    script = (q_setup() + q_url() + q_post(req, "+QHTTPPOST: 716") +
              # After a failure the session is reset before the next request.
              [("AT+QHTTPSTOP", OK)] + q_setup() + q_url() +
              [("AT+QHTTPPOST=%d,10,60" % len(req), "\r\n+CME ERROR: 703\r\n")] +
              [("AT+QHTTPSTOP", "\r\n+CME ERROR: 705\r\n")] + q_setup() + q_url() +
              q_post(req, "+QHTTPPOST: 0,200,4") + q_read(b"abcd", OK + "\r\n+QHTTPREAD: 717\r\n"))
    net, modem, _ = rig(QuectelHttp, script)
    e = raises(HttpStackError, net.post, PATH, b"\x04", CT, HDRS)
    assert e.code == 716 and e.command.startswith("AT+QHTTPPOST=")
    assert "HTTP stack error 716 (HTTP(S) socket connect error)" in str(e)
    e = raises(HttpStackError, net.post, PATH, b"\x04", CT, HDRS)
    assert e.code == 703 and "busy" in str(e) and isinstance(e, TransportError)
    e = raises(HttpStackError, net.post, PATH, b"\x04", CT, HDRS)
    assert e.command == "AT+QHTTPREAD=10" and "717 (HTTP(S) socket read error)" in str(e)
    modem.done()


def test_quectel_timeouts_are_bounded_and_named():
    req = q_request(b"\x05")
    script = (q_setup() + q_url() +
              [("AT+QHTTPPOST=%d,10,30" % len(req), "\r\nCONNECT\r\n"), (req, OK)] +
              [("AT+QHTTPSTOP", OK)] + q_setup() + q_url() +
              q_post(req, "+QHTTPPOST: 0,200,9", rsp=30) +
              [("AT+QHTTPREAD=3", ["\r\nCONNECT\r\n", b"abc"])])  # 6 bytes never come
    net, modem, clock = rig(QuectelHttp, script, http_timeout_ms=30000, read_timeout_ms=2500)
    t0 = clock.t
    e = raises(TimeoutError_, net.post, PATH, b"\x05", CT, HDRS)
    assert "AT+QHTTPPOST=" in str(e) and "within 30000 ms" in str(e)
    assert 30000 <= clock.t - t0 <= 31000
    t0 = clock.t
    e = raises(TimeoutError_, net.post, PATH, b"\x05", CT, HDRS)
    assert "3 of 9 bytes" in str(e) and clock.t - t0 <= 3000
    modem.done()


def test_quectel_garbage_answers_are_clear_errors():
    req = q_request(b"\x06")
    script = (q_setup() + q_url() + q_post(req, "+QHTTPPOST: 0,OK,12") +
              [("AT+QHTTPSTOP", OK)] + q_setup() + q_url() +
              q_post(req, "+QHTTPPOST: 0,200,%d" % (2 * 1024 * 1024)))
    net, modem, _ = rig(QuectelHttp, script)
    e = raises(ProtocolError, net.post, PATH, b"\x06", CT, HDRS)
    assert "HTTP status 'OK' is not a number" in str(e) and "+QHTTPPOST: 0,OK,12" in str(e)
    e = raises(ProtocolError, net.post, PATH, b"\x06", CT, HDRS)
    assert "max_body=1048576" in str(e)
    modem.done()


def test_quectel_install_ca_then_verified_requests_and_close():
    pem = b"-----BEGIN CERTIFICATE-----\r\nMIIB\r\n-----END CERTIFICATE-----\r\n"
    req = q_request(b"\x07", b"")
    script = [
        ('AT+QFDEL="UFS:eim_ca.pem"', "\r\n+CME ERROR: 405\r\n"),  # no such file: fine
        ('AT+QFUPL="UFS:eim_ca.pem",%d,10' % len(pem), "\r\nCONNECT\r\n"),
        (pem, "\r\n+QFUPL: %d,3fa0\r\n" % len(pem) + OK),
        ('AT+QSSLCFG="cacert",1,"UFS:eim_ca.pem"', OK),
        ('AT+QSSLCFG="seclevel",1,1', OK),
    ] + q_setup(1, "eim_ca.pem") + q_url() + q_post(req, "+QHTTPPOST: 0,200,0") + [
        ("AT+QHTTPSTOP", OK),
        ('AT+QFDEL="UFS:x.pem"', OK),
        ('AT+QFUPL="UFS:x.pem",%d,10' % len(pem), "\r\nCONNECT\r\n"),
        (pem, "\r\n+QFUPL: 12,3fa0\r\n" + OK),
    ]
    net, modem, _ = rig(QuectelHttp, script)
    net.install_ca(pem)
    assert net.ca == "eim_ca.pem"
    assert net.post(PATH, b"\x07", CT) == (200, b"")
    net.close()
    net.close()  # nothing open: nothing sent
    e = raises(ProtocolError, net.install_ca, pem, "x.pem")
    assert "stored 12 bytes, expected %d" % len(pem) in str(e)
    modem.done()


def test_quectel_modem_restart_sets_the_stack_up_again():
    req = q_request(b"\x08")
    script = (q_setup() + q_url() + q_post(req, "+QHTTPPOST: 0,204,0") +
              [("AT", OK)] +
              [("AT+QHTTPSTOP", "\r\nERROR\r\n")] + q_setup() + q_url() +
              q_post(req, "+QHTTPPOST: 0,204,0"))
    net, modem, _ = rig(QuectelHttp, script)
    assert net.post(PATH, b"\x08", CT, HDRS)[0] == 204
    net.engine.command("AT")
    modem.inject("\r\nRDY\r\n")  # the modem rebooted: its HTTP settings are gone
    assert net.post(PATH, b"\x08", CT, HDRS)[0] == 204
    modem.done()


# ---- SIM7080 ------------------------------------------------------------------------------

def s7_setup(ca=""):
    return [
        ('AT+SHCONF="URL","https://eim.example:8443"', OK),
        ('AT+SHCONF="BODYLEN",4096', OK),
        ('AT+SHCONF="HEADERLEN",350', OK),
        ('AT+CSSLCFG="sslversion",1,3', OK),
        ('AT+CSSLCFG="sni",1,"eim.example"', OK),
        ('AT+SHSSL=1,"%s"' % ca, OK),
        ("AT+SHCONN", [Silence(2000), OK]),
    ]


def s7_request(body, status, length, state=None):
    steps = []
    if state is not None:
        steps.append(("AT+SHSTATE?", "\r\n+SHSTATE: %d\r\n" % state + OK))
        if state == 0:
            steps.append(("AT+SHCONN", OK))
    steps += [
        ("AT+SHCHEAD", OK),
        ('AT+SHAHEAD="Content-Type","application/x-gsma-rsp-asn1"', OK),
        ('AT+SHAHEAD="X-Admin-Protocol","gsma/rsp/v2.1.0"', OK),
    ]
    if body:
        steps += [("AT+SHBOD=%d,10000" % len(body), "\r\n> "), (body, OK)]
    steps.append(('AT+SHREQ="/gsma/rsp2/asn1",3',
                  [OK, Silence(700), '\r\n+SHREQ: "POST",%d,%d\r\n' % (status, length)]))
    return steps


def s7_read(body, offset=0, n=None):
    n = len(body) if n is None else n
    return [("AT+SHREAD=%d,%d" % (offset, n), [OK, "\r\n+SHREAD: %d\r\n" % len(body), body,
                                                 "\r\n"])]


def test_sim7080_post_exact_dialogue_binary_both_ways():
    script = (s7_setup() + s7_request(REQ_BODY, 200, len(RSP_BODY)) + s7_read(RSP_BODY) +
              s7_request(b"", 204, 0, state=1))
    net, modem, _ = rig(Sim7080Http, script)
    assert net.post(PATH, REQ_BODY, CT, HDRS) == (200, RSP_BODY)
    assert net.post(PATH, b"", CT, HDRS) == (204, b"")
    assert modem.raw == [REQ_BODY]
    modem.done()


def test_sim7080_stream_reads_by_offset_in_2048_byte_chunks():
    body = big(5000)
    script = (s7_setup() + s7_request(b"\x01", 200, len(body)) +
              s7_read(body[:2048], 0) + s7_read(body[2048:4096], 2048) +
              s7_read(body[4096:], 4096) +
              # closed early: the next request needs no draining (the server closed meanwhile)
              s7_request(b"\x02", 200, len(body), state=0) + s7_read(body[:2048], 0) +
              s7_request(b"\x03", 500, 3, state=1) + s7_read(b"err"))
    net, modem, _ = rig(Sim7080Http, script, chunks=(1, 100, 999))
    status, reader = net.post_stream(PATH, b"\x01", CT, HDRS)
    assert status == 200 and reader.length == len(body)
    got = bytearray()
    while True:
        part = reader.read(300)
        if not part:
            break
        assert len(part) <= 300
        got.extend(part)
    assert bytes(got) == body
    status, reader = net.post_stream(PATH, b"\x02", CT, HDRS)
    assert reader.read(10) == body[:10]
    reader.close()
    assert net.post(PATH, b"\x03", CT, HDRS) == (500, b"err")
    modem.done()


def test_sim7080_errors():
    script = (s7_setup() + s7_request(b"\x01", 603, 0) +
              [("AT+SHDISC", OK)] + s7_setup() + s7_request(b"\x01", 200, 10) +
              [("AT+SHREAD=0,10", [OK, "\r\n+SHREAD: 0\r\n"])] +
              [("AT+SHDISC", OK)] + s7_setup() + s7_request(b"\x01", 200, 10) +
              [("AT+SHREAD=0,10", [OK, "\r\n+SHREAD: many\r\n"])] +
              [("AT+SHDISC", OK)] + s7_setup() + s7_request(b"\x01", 200, 10) +
              [("AT+SHREAD=0,10", [OK, "\r\n+SHREAD: 10\r\nabc"])])
    net, modem, _ = rig(Sim7080Http, script, read_timeout_ms=1000)
    e = raises(HttpStackError, net.post, PATH, b"\x01", CT, HDRS)
    assert e.code == 603 and "DNS error" in str(e) and 'AT+SHREQ="/gsma/rsp2/asn1",3' in str(e)
    e = raises(ProtocolError, net.post, PATH, b"\x01", CT, HDRS)
    assert "shorter than announced: 0 of 10" in str(e)
    e = raises(ProtocolError, net.post, PATH, b"\x01", CT, HDRS)
    assert "'many' is not a number" in str(e)
    e = raises(TimeoutError_, net.post, PATH, b"\x01", CT, HDRS)  # 3 of 10 bytes, then silence
    assert "3 of 10 bytes" in str(e)
    raises(TransportError, net.post, PATH, b"x" * 4097, CT, HDRS)
    modem.done()


def test_sim7080_request_timeout_and_left_open_session():
    script = ([('AT+SHCONF="URL","http://eim.example"', "\r\nERROR\r\n"),
               ("AT+SHDISC", OK),
               ('AT+SHCONF="URL","http://eim.example"', OK),
               ('AT+SHCONF="BODYLEN",1024', OK), ('AT+SHCONF="HEADERLEN",350', OK),
               ("AT+SHCONN", OK)] +
              s7_request(b"\x01", 200, 1)[:-1] + [('AT+SHREQ="/gsma/rsp2/asn1",3', OK)])
    net, modem, clock = rig(Sim7080Http, script, url="http://eim.example",
                            body_len=1024, check_state=False, http_timeout_ms=20000)
    t0 = clock.t
    e = raises(TimeoutError_, net.post, PATH, b"\x01", CT, HDRS)
    assert 'AT+SHREQ="/gsma/rsp2/asn1",3: no +SHREQ answer within 20000 ms' == str(e)
    assert clock.t - t0 <= 21000
    modem.done()


def test_sim7080_install_ca_then_reconnect_with_it():
    pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    script = (s7_setup() + s7_request(b"\x01", 204, 0) + [
        ("AT+SHDISC", OK),
        ("AT+CFSINIT", OK),
        ('AT+CFSWFILE=3,"eim_ca.pem",0,%d,10000' % len(pem), "\r\nDOWNLOAD\r\n"),
        (pem, OK),
        ("AT+CFSTERM", OK),
        ('AT+CSSLCFG="sslversion",1,3', OK),
        ('AT+CSSLCFG="convert",2,"eim_ca.pem"', OK),
    ] + s7_setup("eim_ca.pem") + s7_request(b"\x01", 204, 0) + [
        ("AT+SHDISC", OK),
        ("AT+CFSINIT", "\r\nERROR\r\n"),
        ('AT+CFSWFILE=3,"b.pem",0,%d,10000' % len(pem), "\r\n+CME ERROR: 23\r\n"),
        ("AT+CFSTERM", OK),
    ])
    net, modem, _ = rig(Sim7080Http, script)
    assert net.post(PATH, b"\x01", CT, HDRS)[0] == 204
    net.install_ca(pem)
    assert net.post(PATH, b"\x01", CT, HDRS)[0] == 204
    e = raises(TransportError, net.install_ca, pem, "b.pem")
    assert "CFSWFILE" in str(e) and "+CME ERROR: 23" in str(e)
    modem.done()


# ---- SIMCom A76xx / SIM7600 ---------------------------------------------------------------

def sc_setup(ca=None, init="\r\nOK\r\n"):
    steps = [("AT+HTTPINIT", init)]
    if init != OK:
        steps += [("AT+HTTPTERM", OK), ("AT+HTTPINIT", OK)]
    steps += [('AT+CSSLCFG="sslversion",0,3', OK),
              ('AT+CSSLCFG="authmode",0,%d' % (1 if ca else 0), OK)]
    if ca:
        steps.append(('AT+CSSLCFG="cacert",0,"%s"' % ca, OK))
    steps += [('AT+CSSLCFG="enableSNI",0,1', OK), ('AT+HTTPPARA="SSLCFG",0', OK)]
    return steps


def sc_params():
    return [('AT+HTTPPARA="URL","https://eim.example:8443/gsma/rsp2/asn1"', OK),
            ('AT+HTTPPARA="CONTENT","application/x-gsma-rsp-asn1"', OK),
            ('AT+HTTPPARA="USERDATA","X-Admin-Protocol: gsma/rsp/v2.1.0\\r\\n'
             'User-Agent: gsma-rsp-ipad"', OK)]


def sc_action(body, status, length):
    steps = []
    if body:
        steps += [("AT+HTTPDATA=%d,10" % len(body), "\r\nDOWNLOAD\r\n"), (body, OK)]
    steps.append(("AT+HTTPACTION=1",
                  [OK, Silence(1500), "\r\n+HTTPACTION: 1,%d,%d\r\n" % (status, length)]))
    return steps


def sc_read(offset, n, *blocks):
    reply = [OK]
    for b in blocks:
        reply += ["\r\n+HTTPREAD: %d\r\n" % len(b), b]
    reply.append("\r\n+HTTPREAD: 0\r\n")
    return [("AT+HTTPREAD=%d,%d" % (offset, n), reply)]


ESIPA = {"X-Admin-Protocol": "gsma/rsp/v2.1.0", "User-Agent": "gsma-rsp-ipad"}


def test_simcom_post_exact_dialogue_binary_both_ways():
    script = (sc_setup() + sc_params() + sc_action(REQ_BODY, 200, len(RSP_BODY)) +
              sc_read(0, len(RSP_BODY), RSP_BODY) +
              # Same parameters: only the data and the action again.
              sc_action(b"\x00", 204, 0) + [("AT+HTTPTERM", OK)])
    net, modem, _ = rig(SimcomHttp, script)
    assert net.post(PATH, REQ_BODY, CT, ESIPA) == (200, RSP_BODY)
    assert net.post(PATH, b"\x00", CT, ESIPA) == (204, b"")
    net.close()
    assert modem.raw == [REQ_BODY, b"\x00"]
    modem.done()


def test_simcom_stream_reads_in_chunks_and_blocks():
    body = big(5200)
    script = (sc_setup() + sc_params() + sc_action(b"\x01", 200, len(body)) +
              sc_read(0, 1024, body[:1024]) +
              # One answer in several +HTTPREAD blocks.
              sc_read(1024, 1024, body[1024:1500], body[1500:2048]) +
              sc_read(2048, 1024, body[2048:3072]) + sc_read(3072, 1024, body[3072:4096]) +
              sc_read(4096, 1024, body[4096:5120]) + sc_read(5120, len(body) - 5120, body[5120:]))
    net, modem, _ = rig(SimcomHttp, script, chunks=(2, 33, 512))
    status, reader = net.post_stream(PATH, b"\x01", CT, ESIPA)
    assert status == 200 and reader.length == len(body)
    got = bytearray()
    while True:
        part = reader.read(4000)
        if not part:
            break
        assert len(part) <= 1024
        got.extend(part)
    assert bytes(got) == body
    modem.done()


def test_simcom_errors_and_restart_of_a_left_open_service():
    script = (sc_setup(init="\r\nERROR\r\n") + sc_params() + sc_action(b"\x01", 715, 0) +
              [("AT+HTTPTERM", OK)] + sc_setup() + sc_params() + sc_action(b"\x01", 200, 5) +
              [("AT+HTTPREAD=0,5", [OK, "\r\n+HTTPREAD: 9\r\n"])] +
              [("AT+HTTPTERM", "\r\nERROR\r\n")] + sc_setup() + sc_params() +
              [("AT+HTTPDATA=1,10", "\r\n+CME ERROR: 708\r\n")])
    net, modem, _ = rig(SimcomHttp, script)
    e = raises(HttpStackError, net.post, PATH, b"\x01", CT, ESIPA)
    assert e.code == 715 and e.command == "AT+HTTPACTION=1" and "TLS handshake failed" in str(e)
    e = raises(ProtocolError, net.post, PATH, b"\x01", CT, ESIPA)
    assert "at most 5 bytes, the modem announced 9" in str(e)
    e = raises(HttpStackError, net.post, PATH, b"\x01", CT, ESIPA)
    assert e.code == 708 and "invalid parameter" in str(e)
    e = raises(TransportError, net.post, PATH, b"", CT, {"X-Long": "v" * 200, "X-L2": "w" * 100})
    assert "USERDATA holds at most 256" in str(e)
    modem.done()


def test_simcom_install_ca_and_verified_setup():
    pem = b"-----BEGIN CERTIFICATE-----\r\nQUJD\r\n-----END CERTIFICATE-----\r\n"
    script = ([('AT+CCERTDOWN="eim_ca.pem",%d' % len(pem), "\r\n> "), (pem, OK),
               ('AT+CSSLCFG="cacert",0,"eim_ca.pem"', OK), ('AT+CSSLCFG="authmode",0,1', OK)] +
              sc_setup("eim_ca.pem") +
              [('AT+HTTPPARA="URL","https://eim.example:8443/gsma/rsp2/asn1"', OK),
               ('AT+HTTPPARA="CONTENT","application/x-gsma-rsp-asn1"', OK)] +
              sc_action(b"", 200, 2) + sc_read(0, 2, b"\x30\x00"))
    net, modem, _ = rig(SimcomHttp, script)
    net.install_ca(pem)
    assert net.post(PATH, b"", CT) == (200, b"\x30\x00")
    modem.done()


def test_ip_literal_gets_no_sni_and_a_plain_error_stays_an_at_error():
    from ipa_core.at import AtError

    script = [('AT+SHCONF="URL","https://10.0.0.1"', OK), ('AT+SHCONF="BODYLEN",4096', OK),
              ('AT+SHCONF="HEADERLEN",350', OK), ('AT+CSSLCFG="sslversion",1,3', OK),
              ('AT+SHSSL=1,"ca.pem"', OK), ("AT+SHCONN", "\r\nERROR\r\n")]
    net, modem, _ = rig(Sim7080Http, script, url="https://10.0.0.1", ca="ca.pem")
    e = raises(AtError, net.post, PATH, b"\x01", CT, HDRS)
    assert not isinstance(e, HttpStackError) and e.command == "AT+SHCONN"
    assert net.sni_host() is None
    modem.done()
    script = [("AT+HTTPINIT", OK), ('AT+CSSLCFG="sslversion",0,3', OK),
              ('AT+CSSLCFG="authmode",0,0', OK), ('AT+HTTPPARA="SSLCFG",0', OK),
              ('AT+HTTPPARA="URL","https://[fd00::1]/gsma/rsp2/asn1"', OK),
              ('AT+HTTPPARA="CONTENT","application/x-gsma-rsp-asn1"', OK)] + \
        sc_action(b"\x01", 200, 3) + [("AT+HTTPREAD=0,3", ['\r\n+HTTPREAD: 3\r\nabc' + OK])]
    net, modem, _ = rig(SimcomHttp, script, url="https://[fd00::1]")
    status, reader = net.post_stream(PATH, b"\x01", CT)
    assert status == 200 and reader.read(0) == b""
    e = raises(ProtocolError, reader.read, 3)  # the data before OK: not parsed as lines
    assert "before OK" in str(e)
    modem.done()
