"""The lab bench's hands on the eUICC, as a lab user runs them: `ipa euicc ...`,
`ipa notifications remove`, an explicit --eim-url whatever the protocol bits say, and the
configurable refreshFlag - the real `ipa` command against the built-in virtual eUICC (its
own ES10 implementation) and the simulated eIM over TLS."""

import json
import os
import subprocess

import pytest
from cryptography import x509

from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.home import DEMO_PROFILES, eim_dir, open_home_euicc, sim_dir
from ipa_util import IPA, info_json, profile_states  # tests/integration/ipa_util.py
import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked

PROFILE_A, PROFILE_B, TEST_PROFILE = (p["iccid"] for p in DEMO_PROFILES)


def ipa(h, *args, timeout=60):
    return subprocess.run([IPA, "--home", h] + list(args), capture_output=True, text=True,
                          timeout=timeout)


def ok_json(h, *args):
    r = ipa(h, "--json", *args)
    assert r.returncode == 0, r.stderr
    return cli_contract.result(r.stdout)


@pytest.fixture
def home(tmp_path):
    h = str(tmp_path / "home")
    open_home_euicc(h)
    return h


def edit_euicc(h, change):
    """Change the virtual eUICC's state file as a card personalisation would."""
    path = os.path.join(sim_dir(h), "euicc.json")
    with open(path) as f:
        d = json.load(f)
    change(d)
    with open(path, "w") as f:
        json.dump(d, f)


def state_change(h):
    with open(os.path.join(h, "ipa-state.json")) as f:
        return json.load(f).get("ipa.stateChange")


def test_addresses_and_default_dp(home):
    before = ok_json(home, "euicc", "addresses")
    assert before.get("defaultDpAddress") is None and before["rootDsAddress"]
    r = ipa(home, "euicc", "default-dp", "smdp.lab.example:8443")
    assert r.returncode == 0 and "smdp.lab.example:8443" in r.stdout, r.stderr
    after = ok_json(home, "euicc", "addresses")
    assert after["defaultDpAddress"] == "smdp.lab.example:8443"
    assert after["rootDsAddress"] == before["rootDsAddress"]
    text = ipa(home, "euicc", "addresses").stdout
    assert "default SM-DP+  smdp.lab.example:8443" in text


def test_certs_are_the_chain_the_pki_issued(home):
    d = ok_json(home, "euicc", "certs")
    eum, euicc = d["eumCertificate"], d["euiccCertificate"]
    assert euicc["issuer"] == eum["subject"]
    assert euicc["authorityKeyIdentifier"] == eum["subjectKeyIdentifier"]
    with open(os.path.join(sim_dir(home), "pki", "eum.crt"), "rb") as f:
        eum_file = x509.load_pem_x509_certificate(f.read())
    assert eum["serialNumber"] == "%X" % eum_file.serial_number
    assert euicc["publicKey"] == "secp256r1"
    text = ipa(home, "euicc", "certs").stdout
    assert "euiccCertificate" in text and eum["subject"] in text


def test_rat_lists_the_rules(home):
    rules = ok_json(home, "euicc", "rat")
    assert rules and all("pprIds" in r for r in rules)
    text = ipa(home, "euicc", "rat").stdout
    assert text.startswith("rule 0  pprIds ")


def test_memory_reset_needs_yes_then_deletes_and_flags_the_eim(home):
    r = ipa(home, "euicc", "memory-reset", "--operational")
    assert r.returncode == 2 and "--yes" in r.stderr and "delete operational profiles" in r.stderr
    assert len(info_json(home)["profiles"]) == 3  # nothing happened
    r = ipa(home, "euicc", "memory-reset")
    assert r.returncode == 2 and "--operational" in r.stderr
    d = ok_json(home, "euicc", "memory-reset", "--operational", "--yes")
    assert d["resetResult"] == "ok" and d["resetOptions"] == ["deleteOperationalProfiles"]
    left = profile_states(info_json(home))
    assert list(left) == [TEST_PROFILE]
    assert state_change(home)["cause"] == 4  # reset: the eIM hears of it in the next poll


def test_fallback_and_emergency_switch_profiles_with_the_refresh_flag_asked(home):
    def personalise(d):
        for p in d["profiles"]:
            p["fallback"] = p["iccid"] == PROFILE_B
            p["emergency"] = p["iccid"] == TEST_PROFILE
    edit_euicc(home, personalise)
    r = ipa(home, "--trace", "euicc", "fallback", "execute", "--no-refresh")
    assert r.returncode == 0, r.stderr
    assert "refreshFlag clear" in r.stdout
    # BF5D { 80 01 00 }: refreshFlag FALSE went to the card
    assert any("E29100" in line and "BF5D03800100" in line
               for line in r.stderr.splitlines() if line.startswith(">")), r.stderr
    states = profile_states(info_json(home))
    assert states[PROFILE_B] == "enabled" and states[PROFILE_A] == "disabled"
    assert state_change(home)["cause"] == 1  # fallback
    r = ipa(home, "--trace", "euicc", "fallback", "return")
    assert r.returncode == 0 and "refreshFlag set" in r.stdout, r.stderr
    assert profile_states(info_json(home))[PROFILE_A] == "enabled"
    d = ok_json(home, "euicc", "emergency", "enable")
    assert d["refreshFlag"] is True
    assert profile_states(info_json(home))[TEST_PROFILE] == "enabled"
    assert state_change(home)["cause"] == 2  # emergencyProfile
    ok_json(home, "euicc", "emergency", "disable")
    assert profile_states(info_json(home))[PROFILE_A] == "enabled"
    # Refused by the eUICC: its reason, exit 1
    r = ipa(home, "euicc", "fallback", "return")
    assert r.returncode == 1 and "fallbackNotAvailable" in r.stderr


def test_refresh_flag_from_the_config_file(home, tmp_path):
    edit_euicc(home, lambda d: d["profiles"][1].update(fallback=True))
    cfg = tmp_path / "ipa.toml"
    cfg.write_text("[card]\nrefresh_flag = false\n")
    r = ipa(home, "--config", str(cfg), "--trace", "euicc", "fallback", "execute")
    assert r.returncode == 0 and "refreshFlag clear" in r.stdout, r.stderr
    cfg.write_text("[card]\nrefresh_flag = 3\n")
    r = ipa(home, "--config", str(cfg), "euicc", "addresses")
    assert r.returncode == 2 and "refresh_flag" in r.stderr and "true or false" in r.stderr


def test_notifications_remove_needs_yes_and_says_what_was_not_there(home):
    edit_euicc(home, lambda d: d["profiles"][1].update(fallback=True))
    ok_json(home, "euicc", "fallback", "execute")  # a disable and an enable notification
    pending = [n["seqNumber"] for n in ok_json(home, "notifications", "list")]
    assert len(pending) == 2
    r = ipa(home, "notifications", "remove", str(pending[0]))
    assert r.returncode == 2 and "--yes" in r.stderr
    assert [n["seqNumber"] for n in ok_json(home, "notifications", "list")] == pending
    d = ok_json(home, "notifications", "remove", str(pending[0]), "--yes")
    assert d == {"removed": [pending[0]], "nothingToDelete": []}
    r = ipa(home, "notifications", "remove", str(pending[0]), str(pending[1]), "--yes")
    assert r.returncode == 1 and "no notification %d" % pending[0] in r.stderr
    assert ok_json(home, "notifications", "list") == []


def test_explicit_eim_url_is_used_whatever_the_protocol_bits(home):
    # The eIM entry lists eimInjectHttps only: no retrieve protocol the IPA can use.
    edit_euicc(home, lambda d: d["eims"][0].update(protocols="0520"))
    r = ipa(home, "poll")
    assert r.returncode == 1 and "retrieve protocol" in r.stderr
    server = EimServer(eim_dir(home), pki_dir=os.path.join(sim_dir(home), "pki"),
                       association_token=1).start()
    try:
        r = ipa(home, "--eim-url", server.url, "poll")
        assert r.returncode == 0, r.stderr
        assert "no package (noEimPackageAvailable)" in r.stdout
        assert "does not list eimRetrieveHttps" in r.stderr and server.url in r.stderr
        assert [q["function"] for q in server.requests][-1:] == ["getEimPackage"]
    finally:
        server.stop()
