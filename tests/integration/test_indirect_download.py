"""Indirect profile download end to end (SGP.32 v1.2 3.2.3, ESipa 6.3.2.1-6.3.2.4): the IPA
talks only to the eIM, and the simulated eIM relays each step to the SM-DP+ as its ES9+ client
(ipa_host.sim.eim.eim_relay), over real TLS on both hops.

Four independent parties: the core IPA (`ipa` subprocess: ipa_core.esipa, ipa_download), the
eIM simulator (its own ESipa codec and ES9+ client), the SM-DP+ simulator (ipa_host.sim.smdpp.smdpp)
and the virtual eUICC; the eUICC checks every SM-DP+ signature, the SM-DP+ every eUICC
signature, and the eIM the eUICC's signature on the PIR it reports.
"""

import base64
import json
import subprocess

import pytest

from ipa_core import tlv
from ipa_util import IPA, functions, info_json as info, relay_lab, run_service  # tests/integration/ipa_util.py

ICCID_1 = "89000123456789012341"
ICCID_2 = "89000123456789012358"


@pytest.fixture
def lab(tmp_path):
    """A provisioned home (virtual eUICC, demo eIM), a running SM-DP+ under the same test CI,
    and the eIM trusting the SM-DP+'s TLS CA for its relay. The IPA itself gets no SM-DP+
    trust: indirect, it never reaches the SM-DP+."""
    with relay_lab(tmp_path, [("MATCH-1", ICCID_1, "Relayed profile", 20000),
                              ("MATCH-2", ICCID_2, "Triggered profile", 6000)]) as lab:
        yield lab


def ipa(h, eim, *args, timeout=120):
    cmd = [IPA, "--home", h, "--eim-url", eim.url] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def relayed(eim):
    return [(q["function"], q.get("note")) for q in eim.requests
            if q["function"] in ("initiateAuthentication", "authenticateClient",
                                 "getBoundProfilePackage", "cancelSession")]


def pir_success(der_hex):
    """finalResult of a PIR 'BF37' is successResult 'A0'."""
    pir = tlv.decode(bytes.fromhex(der_hex))
    return pir.need(0xBF27).need(0xA2).children()[0].tag == 0xA0


@pytest.mark.parametrize("binding", ["asn1", "json"])
def test_ipa_download_indirect_installs_through_the_eim(lab, binding):
    h, eid, dp, eim = lab
    r = ipa(h, eim, "--binding", binding, "download", "--indirect",
            "LPA:1$%s$MATCH-1" % dp.address)
    assert r.returncode == 0, r.stderr
    assert "installed      %s  Relayed profile" % ICCID_1 in r.stdout
    assert "(indirect)" in r.stdout
    assert "loading profile: 25/25 segments" in r.stderr
    # the SM-DP+ served the eIM, every step in order and successful
    assert functions(dp) == [("initiateAuthentication", "Executed-Success"),
                             ("authenticateClient", "Executed-Success"),
                             ("getBoundProfilePackage", "Executed-Success")]
    assert dp.events[1]["eid"] == eid and dp.events[1]["matchingId"] == "MATCH-1"
    steps = relayed(eim)
    assert [f for f, _ in steps] == ["initiateAuthentication", "authenticateClient",
                                     "getBoundProfilePackage"]
    assert all("relayed to %s" % dp.address in note for _, note in steps), steps
    assert {q["binding"] for q in eim.requests} == {binding}
    d = info(h)
    assert ICCID_1 in [p["iccid"] for p in d["profiles"]]
    assert any(n.get("iccid") == ICCID_1 for n in d["notifications"])  # the PIR waits


def test_trigger_carried_out_by_ipa_run_indirect(lab):
    h, eid, dp, eim = lab
    eim.queue_download_trigger(eid, activation_code="LPA:1$%s$MATCH-2" % dp.address)
    _out, err = run_service(["--home", h, "--eim-url", eim.url, "--profile-download", "indirect"],
                            [(lambda: eim.results(eid), None,
                              "ipa run reporting the download")], wait=60, stop_wait=30)
    assert "stopped after" in err
    res = eim.results(eid)[-1]
    assert res["kind"] == "profileDownloadTriggerResult", res
    assert res["result"] == "profileInstallationResult", res
    assert res["eimTransactionId"] == eim.delivered(eid)[-1]["transactionId"]
    assert res["package"] == eim.delivered(eid)[-1]["id"]
    # the PIR inside the result: signed by the eUICC, checked with its certificate
    pir = [n for n in eim.notifications(eid) if n["kind"] == "profileInstallationResult"]
    assert pir and pir[-1]["signatureValid"] is True, pir
    assert pir[-1]["verifiedWith"] == "known eUICC certificate"
    assert pir_success(pir[-1]["der"])
    assert [f for f, _ in relayed(eim)] == ["initiateAuthentication", "authenticateClient",
                                            "getBoundProfilePackage"]
    # the eIM forwarded the PIR to the SM-DP+ of its session: it knows the profile is installed
    assert dp.notifications and dp.notifications[-1]["type"] == "pir"
    assert dp.notifications[-1]["verified"] is True and dp.notifications[-1]["success"] is True
    assert dp.profile("MATCH-2")["state"] == "installed"
    assert ICCID_2 in [p["iccid"] for p in info(h)["profiles"]]


def test_smdp_refusal_is_relayed_as_an_error(lab):
    h, eid, dp, eim = lab
    r = ipa(h, eim, "download", "--indirect", "LPA:1$%s$NOPE" % dp.address)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "failed at AuthenticateClient" in r.stderr, r.stderr
    assert "matchingIdRefused" in r.stderr, r.stderr
    assert "session cancelled (undefinedReason): eUICC yes, eIM yes" in r.stderr, r.stderr
    # the SM-DP+ refused, and its session was cancelled through the eIM
    assert functions(dp) == [("initiateAuthentication", "Executed-Success"),
                             ("authenticateClient", "Failed"),
                             ("cancelSession", "Executed-Success")]
    assert dp.events[1]["error"] == "matchingIdRefused"
    steps = dict(relayed(eim))
    assert "error 6" in steps["authenticateClient"], steps

    # the same refusal for an eIM's trigger: a profileDownloadError result, not silence
    eim.queue_download_trigger(eid, activation_code="LPA:1$%s$NOPE" % dp.address)
    r = ipa(h, eim, "--profile-download", "indirect", "poll")
    assert r.returncode == 0, r.stderr
    assert "matchingIdRefused" in r.stderr, r.stderr
    res = eim.results(eid)[-1]
    assert res["kind"] == "profileDownloadTriggerResult", res
    assert res["result"] == "profileDownloadError" and res["errorCode"] == 127, res
    assert res["eimTransactionId"] == eim.delivered(eid)[-1]["transactionId"]
    assert ICCID_1 not in [p["iccid"] for p in info(h)["profiles"]]


def test_untrusted_smdp_and_unknown_session(lab, tmp_path):
    """An eIM that does not trust the SM-DP+'s TLS answers undefinedError without reaching
    it; a transactionId the eIM never relayed gets invalidTransactionId."""
    h, eid, dp, eim = lab
    eim.relay.ca_file = None  # system CAs: the test CI is not one of them
    r = ipa(h, eim, "download", "--indirect", "LPA:1$%s$MATCH-1" % dp.address)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "failed at InitiateAuthentication" in r.stderr and "undefinedError" in r.stderr
    assert not list(dp.events)
    assert "relay not available" in relayed(eim)[-1][1]

    from ipa_host.net.https import HttpsNetwork
    net = HttpsNetwork(eim.url, trust=eim.tls_ca_cert_der, timeout=10)
    try:
        asr = tlv.encode(0xBF38, tlv.encode(0xA0, b""))
        body = tlv.encode(0xBF3B, tlv.encode(0x80, b"\x01" * 16) + asr)
        status, ans = net.post("/gsma/rsp2/asn1", body, "application/x-gsma-rsp-asn1")
        assert (status, ans.hex().upper()) == (200, "BF3B0382010A")  # invalidTransactionId
        status, ans = net.post("/gsma/rsp2/esipa/getBoundProfilePackage", json.dumps({
            "transactionId": "01" * 16, "prepareDownloadResponse": base64.b64encode(
                tlv.encode(0xBF21, tlv.encode(0xA0, b""))).decode()}).encode(),
            "application/json")
        fes = json.loads(ans)["header"]["functionExecutionStatus"]
        assert status == 200 and fes["status"] == "Failed"
        assert (fes["statusCodeData"]["subjectCode"], fes["statusCodeData"]["reasonCode"]) == (
            "8.10.1", "3.9")
    finally:
        net.close()


def luhn_iccid(prefix19):
    """prefix19 + its Luhn check digit (ITU-T E.118 ICCID)."""
    total = 0
    for i, ch in enumerate(reversed(prefix19)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix19 + str((10 - total % 10) % 10)


class CountingReader:
    """Wraps the HTTPS network's streamed answer: bytes taken from the network so far."""

    def __init__(self, reader):
        self.reader = reader
        self.length = reader.length
        self.consumed = 0
        self.largest_read = 0
        self.closed = False

    def read(self, n):
        data = self.reader.read(n)
        self.consumed += len(data)
        self.largest_read = max(self.largest_read, len(data))
        return data

    def close(self):
        self.closed = True
        self.reader.close()


def test_indirect_download_over_https_streams_the_package(lab):
    """In process, over real TLS to the eIM relay: the 40 KB package is read from the HTTPS
    connection one STORE DATA segment at a time, never a whole package in RAM."""
    from ipa_core import ipa_download as dl
    from ipa_core.stream import CHUNK
    from ipa_host import runner

    h, eid, dp, eim = lab
    iccid = luhn_iccid("8900012345678901237")
    dp.add_profile("BIG-1", iccid, "Big profile", size=40000)
    st = runner.Settings(home=h, eim_url=eim.url)
    readers = []
    sends = []  # (segment length, bytes of the answer read when it went to the eUICC)
    with runner.IpaHost(st) as host:
        net = host.network
        plain = net.post_stream

        def post_stream(*args, **kw):
            status, reader = plain(*args, **kw)
            readers.append(CountingReader(reader))
            return status, readers[-1]

        net.post_stream = post_stream
        store_data = host.session.store_data

        def recording(req):
            if readers and not readers[-1].closed:
                sends.append((len(req), readers[-1].consumed))
            return store_data(req)

        host.session.store_data = recording
        r = dl.download(host.session, dl.IndirectTransport(host.ipa),
                        activation="LPA:1$%s$BIG-1" % dp.address)
        assert r["ok"], r
        assert host.ipa.network.connections == 1  # the kept-alive connection survived
    assert r["iccid"] == iccid and r["segments"][0] == r["segments"][1] == len(sends)
    assert len(readers) == 1 and readers[0].closed
    body = readers[0].length
    assert body > 40000 and readers[0].consumed == body  # read to its end, no more
    sent = 0
    ahead = 0
    for size, consumed in sends:
        sent += size
        ahead = max(ahead, consumed - sent)
        assert size <= 1024, size  # SGP.22 2.5.3: a segment TLV is at most 1020 bytes
    # what was read but not yet sent: the ESipa wrapper (BF3A, A0 headers, transactionId:
    # at most 8 + 18 bytes) and the TLV-header read-ahead, never a segment more; and no
    # network read larger than one segment
    assert ahead <= 26 + CHUNK, ahead
    assert readers[0].largest_read <= 1024
    assert ICCID_1 not in [p["iccid"] for p in info(h)["profiles"]]
    assert iccid in [p["iccid"] for p in info(h)["profiles"]]
