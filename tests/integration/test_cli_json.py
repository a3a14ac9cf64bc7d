"""One JSON contract for every command (docs/cli.md "Scripts: --json"): the real `ipa`
command run as a script runs it, success and failure, every document validated against
docs/cli-output.schema.json by jsonschema (tests/host/cli_contract.py)."""

import json
import os
import subprocess

import pytest

import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked
from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.home import DEMO_PROFILES, eim_dir, open_home_euicc, sim_dir
from ipa_util import IPA  # tests/integration/ipa_util.py

PROFILE_A, PROFILE_B, TEST_PROFILE = (p["iccid"] for p in DEMO_PROFILES)


def run(*args, home=None, timeout=60):
    cmd = [IPA] + (["--home", home] if home else []) + ["--json"] + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.stdout.count("\n") >= 1, (r.stdout, r.stderr)
    doc = cli_contract.envelope(r.stdout)
    assert doc["exitCode"] == r.returncode, doc
    return doc, r


@pytest.fixture
def home(tmp_path):
    h = str(tmp_path / "home")
    open_home_euicc(h)
    return h


def test_success_documents_carry_version_command_and_named_enums(home):
    from importlib.metadata import version

    doc, _ = run("info", home=home)
    assert doc["ipa"] == version("ipa-iot") and doc["command"] == "info" and doc["ok"]
    info = doc["result"]
    states = {p["iccid"]: p["profileState"] for p in info["profiles"]}
    assert states == {PROFILE_A: "enabled", PROFILE_B: "disabled", TEST_PROFILE: "disabled"}
    assert {p["profileClass"] for p in info["profiles"]} == {"operational", "test"}
    assert info["eims"][0]["eimIdType"] == "eimIdTypeProprietary"
    assert info["euiccInfo2"]["ipaMode"] == "ipad"
    for args, command in ((("notifications", "list"), "notifications list"),
                          (("eim", "list"), "eim list"),
                          (("euicc", "addresses"), "euicc addresses"),
                          (("euicc", "certs"), "euicc certs"),
                          (("euicc", "rat"), "euicc rat")):
        doc, r = run(*args, home=home)
        assert doc["command"] == command and doc["ok"] and r.returncode == 0, doc


def test_usage_errors_are_documents_too(home, tmp_path):
    doc, r = run("info", "--no-such-option", home=home)
    assert r.returncode == 2 and doc["error"]["code"] == "usage"
    assert "--no-such-option" in doc["error"]["message"]
    doc, _ = run("download", "not-an-activation-code", home=home)
    assert doc["command"] == "download" and doc["error"]["code"] == "usage"
    bad = tmp_path / "bad.toml"
    bad.write_text("[card]\nsgp32 = \"9.9\"\n")
    doc, _ = run("--config", str(bad), "info", home=home)
    assert doc["error"]["code"] == "usage" and "sgp32" in doc["error"]["message"]
    doc, _ = run("--card", "bogus", "info", home=home)
    assert doc["error"] == {"code": "usage", "type": "CardSpecError",
                            "message": doc["error"]["message"]}
    assert doc["result"] is None


def test_card_out_of_reach_is_a_transport_error(home, tmp_path):
    doc, r = run("--card", "at:%s" % (tmp_path / "ttyNONE"), "info", home=home)
    assert r.returncode == 3 and doc["error"]["code"] == "transport", doc
    assert "ttyNONE" in doc["error"]["message"]


def test_refusals_name_the_function_and_the_reason(home):
    doc, r = run("euicc", "fallback", "execute", home=home)
    assert r.returncode == 1 and doc["command"] == "euicc fallback"
    e = doc["error"]
    assert e["code"] == "refused" and e["function"] == "ES10b.ExecuteFallbackMechanism"
    assert e["reason"] == "fallbackNotAvailable" and e["reasonCode"] == 6
    doc, _ = run("notifications", "remove", "99", "--yes", home=home)
    assert doc["error"]["reason"] == "nothingToDelete"
    assert doc["result"] == {"removed": [], "nothingToDelete": [99]}


def test_poll_run_and_download_failures(home):
    # No eIM listening at the demo address: the cycle fails, the document says why.
    doc, r = run("--eim-url", "https://127.0.0.1:9", "poll", home=home)
    assert r.returncode == 1 and doc["error"]["code"] == "transport", doc
    assert doc["result"]["error"]["type"] == doc["error"]["type"]
    # A direct download whose SM-DP+ is not there: what was done, and the stage.
    doc, r = run("download", "LPA:1$127.0.0.1:9$MATCH", home=home)
    assert r.returncode == 3 and doc["error"]["code"] == "transport"
    assert doc["error"]["stage"] == "InitiateAuthentication"
    assert doc["result"]["transport"] == "direct" and doc["result"]["ok"] is False


def test_poll_and_run_with_an_eim(home):
    server = EimServer(eim_dir(home), pki_dir=os.path.join(sim_dir(home), "pki"),
                       association_token=1).start()
    try:
        eid = open_home_euicc(home).eid
        server.queue_psmo(eid, [{"op": "enable", "iccid": PROFILE_B}])
        doc, r = run("--eim-url", server.url, "poll", home=home)
        assert r.returncode == 0 and doc["result"]["package"] == "euiccPackageRequest"
        r = subprocess.run([IPA, "--home", home, "--eim-url", server.url, "--json", "run",
                            "--cycles", "2"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        cycles = cli_contract.lines(r.stdout)
        assert len(cycles) == 2 and all(c["ok"] and c["result"]["idle"] for c in cycles)
        assert json.loads(r.stdout.splitlines()[0])["command"] == "run"
    finally:
        server.stop()
