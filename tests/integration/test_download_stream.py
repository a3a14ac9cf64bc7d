"""Streamed bound profile packages end to end (issue 13): `ipa download` as a subprocess, TLS on,
against the simulated SM-DP+ (direct, ES9+ JSON) and through the simulated eIM (indirect,
ESipa ASN.1 and JSON), with a 2 MB profile, a package over the configured limit, and SM-DP+
answers that break while the package streams (cut, malformed, a "Failed" header after it).
"""

import json
import os
import subprocess

import pytest

from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.home import eim_dir, open_home_euicc, sim_dir
from ipa_host.sim.smdpp.smdpp import SmdpServer
import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked
from ipa_util import IPA, functions, info_json as info  # tests/integration/ipa_util.py

ICCID_BIG = "89000123456789012341"
ICCID_SMALL = "89000123456789012358"
TWO_MB = 2 * 1000 * 1000


@pytest.fixture
def lab(tmp_path):
    """A provisioned home, the SM-DP+ with a 2 MB and a 40 KB profile, and the eIM that
    relays to it (trusting its TLS CA)."""
    h = str(tmp_path / "home")
    open_home_euicc(h)
    pki_dir = os.path.join(sim_dir(h), "pki")
    dp = SmdpServer(str(tmp_path / "smdp"), pki_dir).start()
    dp.add_profile("BIG", ICCID_BIG, "Two MB profile", size=TWO_MB)
    dp.add_profile("SMALL", ICCID_SMALL, "Small profile", size=40000)
    try:
        eim = EimServer(eim_dir(h), pki_dir=pki_dir, association_token=1,
                        smdp_ca_file=dp.tls_ca_path).start()
        try:
            yield h, dp, eim
        finally:
            eim.stop()
    finally:
        dp.stop()


def ipa(h, dp, *args, config=None):
    cmd = [IPA, "--home", h, "--smdp-ca-file", dp.tls_ca_path]
    if config:
        cmd += ["--config", config]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=180)


def installed(h):
    return [p["iccid"] for p in info(h)["profiles"]]


def test_two_mb_profile_direct(lab):
    h, dp, eim = lab
    r = ipa(h, dp, "--json", "download", "LPA:1$%s$BIG" % dp.address)
    assert r.returncode == 0, r.stderr
    out = cli_contract.result(r.stdout, "download")
    assert out["ok"] is True and out["iccid"] == ICCID_BIG and out["transport"] == "direct"
    assert out["segments"][0] == out["segments"][1] > 1900  # 2 MB in segments of ~1 KB
    bpp = [e for e in dp.events if e["function"] == "getBoundProfilePackage"]
    assert bpp[-1]["bppSize"] > TWO_MB
    assert ICCID_BIG in installed(h)


@pytest.mark.parametrize("binding", ["asn1", "json"])
def test_two_mb_profile_indirect(lab, binding):
    h, dp, eim = lab
    r = ipa(h, dp, "--eim-url", eim.url, "--binding", binding, "download", "--indirect",
            "LPA:1$%s$BIG" % dp.address)
    assert r.returncode == 0, r.stderr
    assert "installed      %s  Two MB profile" % ICCID_BIG in r.stdout
    assert "(indirect)" in r.stdout
    notes = [q.get("note") or "" for q in eim.requests if q["function"] ==
             "getBoundProfilePackage"]
    assert notes and "relayed to %s" % dp.address in notes[-1]
    assert int(notes[-1].split(": ")[-1].split()[0]) > TWO_MB  # "...: N bytes"
    assert ICCID_BIG in installed(h)


def test_two_mb_profile_indirect_over_coaps(tmp_path):
    """ESipa over CoAP/DTLS: the eIM's GetBoundProfilePackage answer comes in Block2 blocks,
    read as the package goes into the eUICC (ipa_core.coap.Block2Reader): one block in
    RAM, not the 1 MiB a whole CoAP answer may have."""
    pytest.importorskip("mbedtls")
    h = str(tmp_path / "home")
    open_home_euicc(h)
    pki_dir = os.path.join(sim_dir(h), "pki")
    dp = SmdpServer(str(tmp_path / "smdp"), pki_dir).start()
    dp.add_profile("BIG", ICCID_BIG, "Two MB profile", size=TWO_MB)
    eim = EimServer(eim_dir(h), pki_dir=pki_dir, association_token=1, coap_port=0,
                    smdp_ca_file=dp.tls_ca_path).start()
    try:
        r = ipa(h, dp, "--eim-url", eim.coap_url, "download", "--indirect",
                "LPA:1$%s$BIG" % dp.address)
        assert r.returncode == 0, r.stderr
        assert "installed      %s  Two MB profile" % ICCID_BIG in r.stdout
        bpp = [q for q in eim.requests if q["function"] == "getBoundProfilePackage"]
        assert bpp and bpp[-1]["conn"].startswith("coap-"), bpp[-1]  # over the CoAP endpoint
        assert int(bpp[-1]["note"].split(": ")[-1].split()[0]) > TWO_MB
        assert ICCID_BIG in installed(h)
    finally:
        eim.stop()
        dp.stop()


def test_package_over_the_configured_limit_is_refused_and_cancelled(lab, tmp_path):
    h, dp, eim = lab
    cfg = tmp_path / "ipa.toml"
    cfg.write_text("[download]\nmax_package = 30000\n")
    r = ipa(h, dp, "download", "LPA:1$%s$SMALL" % dp.address, config=str(cfg))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "profile download failed at GetBoundProfilePackage" in r.stderr
    assert "over the limit of 30000 (setting max_package)" in r.stderr, r.stderr
    assert "session cancelled (undefinedReason): eUICC yes, SM-DP+ yes" in r.stderr
    assert functions(dp)[-1] == ("cancelSession", "Executed-Success")
    assert ICCID_SMALL not in installed(h)
    # the same limit through the eIM (ESipa ASN.1)
    r = ipa(h, dp, "--eim-url", eim.url, "download", "--indirect",
            "LPA:1$%s$SMALL" % dp.address, config=str(cfg))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "over the package limit of 30000 (setting max_package)" in r.stderr, r.stderr
    assert "session cancelled (undefinedReason): eUICC yes, eIM yes" in r.stderr
    assert ICCID_SMALL not in installed(h)


def _failed_after(body):
    """The package first, then a "Failed" header (key order is the server's)."""
    obj = json.loads(body)
    failed = {"functionExecutionStatus": {"status": "Failed", "statusCodeData": {
        "subjectCode": "8.2.7", "reasonCode": "3.8", "message": "refused late"}}}
    text = '{"boundProfilePackage":"%s","transactionId":"%s","header":%s}' % (
        obj["boundProfilePackage"], obj["transactionId"], json.dumps(failed))
    return text.encode(), None


def _short_base64(body):
    """Valid JSON, valid base64, but 6 bytes short of the BF36 its header announces."""
    obj = json.loads(body)
    obj["boundProfilePackage"] = obj["boundProfilePackage"].rstrip("=")[:-8]
    obj["boundProfilePackage"] += "=" * (-len(obj["boundProfilePackage"]) % 4)
    return json.dumps(obj).encode(), None


FAULTS = {
    # cut by the server in the middle of the base64 (Content-Length announced whole)
    "cut": (lambda b: (b, len(b) // 2), "connection closed in response body"),
    "truncated base64": (_short_base64, "the body ended after"),
    "bad json": (lambda b: (b[:-1] + b",}", None), "a member name in quotes"),
    "failed status": (_failed_after, "refused late"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_broken_streamed_answer_is_a_download_error_and_cancelled(lab, fault):
    h, dp, eim = lab
    mangle, words = FAULTS[fault]
    dp.faults["getBoundProfilePackage"] = mangle
    r = ipa(h, dp, "--json", "download", "LPA:1$%s$SMALL" % dp.address)
    assert r.returncode in (1, 3), (r.stdout, r.stderr)
    doc = cli_contract.envelope(r.stdout, "download")
    assert doc["ok"] is False and doc["exitCode"] == r.returncode, doc
    assert doc["error"]["stage"] == "GetBoundProfilePackage", doc
    assert words in doc["error"]["message"], doc["error"]
    assert doc["result"]["cancel"]["euicc"] and doc["result"]["cancel"]["server"], doc
    assert "profile download failed at GetBoundProfilePackage" in r.stderr
    assert "session cancelled (undefinedReason): eUICC yes, SM-DP+ yes" in r.stderr, r.stderr
    assert functions(dp)[-1] == ("cancelSession", "Executed-Success")
    assert ICCID_SMALL not in installed(h)
