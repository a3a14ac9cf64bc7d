"""The IPA's main job end to end, as a user runs it: `ipa poll` / `ipa run` (ipa_core.ipa over
ipa_host.net.https) against the simulated eIM over real TLS, with the virtual eUICC.

Three independent parties: the core IPA, ipa_host.sim.eim.eim (its own ESipa codec) and
ipa_host.sim.euicc.euicc (its own ES10 codec). The eIM verifies every signature the eUICC made.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.home import DEMO_PROFILES, eim_dir, open_home_euicc, sim_dir
from ipa_util import IPA, info_json, profile_states  # tests/integration/ipa_util.py
import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked

PROFILE_A, PROFILE_B, TEST_PROFILE = (p["iccid"] for p in DEMO_PROFILES)


@pytest.fixture
def home(tmp_path):
    """A provisioned home (virtual eUICC + demo eIM folder) and its running eIM."""
    h = str(tmp_path / "home")
    card = open_home_euicc(h)
    server = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"),
                       association_token=1).start()
    try:
        yield h, card.eid, server
    finally:
        server.stop()


def ipa(h, server, *args, binding="asn1", timeout=60):
    """Run the `ipa` command against `server` (the eUICC's eIM FQDN is the demo port, so
    the URL is overridden; trust still comes from the eUICC's trustedPublicKeyDataTls)."""
    cmd = [IPA, "--home", h, "--eim-url", server.url, "--binding", binding] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def profiles(h):
    d = info_json(h)
    return profile_states(d), d["notifications"]


def test_idle_poll(home):
    h, eid, server = home
    r = ipa(h, server, "poll")
    assert r.returncode == 0, r.stderr
    assert "no package (noEimPackageAvailable)" in r.stdout
    assert [q["function"] for q in server.requests][-1:] == ["getEimPackage"]


@pytest.mark.parametrize("binding", ["asn1", "json"])
def test_psmo_cycle_enable_reported_and_acknowledged(home, binding):
    h, eid, server = home
    server.queue_psmo(eid, [{"op": "enable", "iccid": PROFILE_B}])
    r = ipa(h, server, "--json", "poll", binding=binding)
    assert r.returncode == 0, r.stderr
    out = cli_contract.result(r.stdout)
    assert out["package"] == "euiccPackageRequest"
    assert out["result"]["operations"][0][:2] == ["enableResult", 0]
    assert out["delivered"] and out["acknowledged"]
    assert sorted(out["removed"]) == sorted(out["acknowledged"])
    # The eUICC switched profiles and kept nothing the eIM already has.
    states, pending = profiles(h)
    assert states[PROFILE_B] == "enabled" and states[PROFILE_A] == "disabled"
    assert pending == []
    # The eIM got the eUICC-signed result and the profile notifications, all verified.
    results = server.results(eid)
    assert len(results) == 1
    epr = results[0]["euiccPackageResult"]
    assert epr["signatureValid"] and epr["eimIdMatches"]
    assert epr["results"][0]["name"] == "enableResult" and epr["results"][0]["value"] == 0
    assert server.queue(eid) == []


def test_failed_operation_is_reported_not_hidden(home):
    h, eid, server = home
    server.queue_psmo(eid, [{"op": "enable", "iccid": PROFILE_A}])  # already enabled
    r = ipa(h, server, "--json", "poll")
    assert r.returncode == 0, r.stderr
    out = cli_contract.result(r.stdout)
    op, code, name = out["result"]["operations"][0]
    assert op == "enableResult" and code != 0 and name == "profileNotInDisabledState"
    assert server.results(eid)[0]["euiccPackageResult"]["signatureValid"]


def test_ipa_euicc_data_request(home):
    h, eid, server = home
    # 81 defaultSmdpAddress, A2 euiccPackageResultList, BF22 EUICCInfo2, 84 associationToken
    server.queue_data_request(eid, ["81", "A2", "BF22", "84"])
    r = ipa(h, server, "--json", "poll")
    assert r.returncode == 0, r.stderr
    assert cli_contract.result(r.stdout)["package"] == "ipaEuiccDataRequest"
    got = server.results(eid)[-1]
    assert got["kind"] == "ipaEuiccDataResponse", got
    der = bytes.fromhex(got["der"])
    from ipa_core import tlv

    data = tlv.decode(der).find(0xA0)  # ipaEuiccData
    assert data is not None, got
    tags = [c.tag for c in data]
    assert 0xBF22 in tags and 0x84 in tags and 0xA2 in tags
    assert data.find(0x84).as_int() == 1  # the associationToken the eUICC generated


def test_ipa_euicc_data_request_with_a_bad_tag_is_answered_with_an_error(home):
    h, eid, server = home
    server.queue_data_request(eid, ["80"])  # no IpaEuiccData field has tag 80
    r = ipa(h, server, "--json", "poll")
    assert r.returncode == 0, r.stderr
    got = server.results(eid)[-1]
    assert got["kind"] == "ipaEuiccDataResponse"
    assert "incorrectTagList" in json.dumps(got)


def test_cut_after_load_resumes_and_loses_nothing(home, tmp_path):
    """The eIM vanishes after it handed out the package: the eUICC ran it, the result
    could not be delivered. The next poll (a new process) delivers the same signed
    result without running the package again."""
    h, eid, server = home
    server.queue_psmo(eid, [{"op": "disable", "iccid": PROFILE_A}])
    port = server.port
    server.stop()
    # A fake eIM that answers GetEimPackage from the real one's queue, then dies:
    # simplest real fault here is to stop the server between the two calls, which we
    # get by handing the package out with the server, then cutting before provide.
    server2 = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"), port=port,
                        association_token=1)
    server2.start()
    try:
        # Poll once with a network that fails after the first exchange: stop the server as
        # soon as it logged getEimPackage.
        proc = subprocess.Popen([IPA, "--home", h, "--eim-url", server2.url, "--json", "poll"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                q["function"] == "getEimPackage" for q in server2.requests):
            time.sleep(0.005)
        server2.stop()
        out, err = proc.communicate(timeout=60)
    finally:
        server2.stop()
    first = cli_contract.envelope(out, "poll")["result"]
    states, _ = profiles(h)
    if not first.get("error"):
        pytest.fail("the eIM stopped too late to cut the procedure: %s" % out)
    assert states[PROFILE_A] == "disabled", "the package ran on the eUICC before the cut"
    server3 = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"), port=port,
                        association_token=1).start()
    try:
        r = subprocess.run([IPA, "--home", h, "--eim-url", server3.url, "--json", "poll"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        second = cli_contract.result(r.stdout)
        assert second["resumed"] is not None
        assert second["delivered"]
        results = server3.results(eid)
        assert len(results) == 1
        assert results[0]["euiccPackageResult"]["results"][0]["name"] == "disableResult"
        assert results[0]["euiccPackageResult"]["results"][0]["value"] == 0
        assert results[0]["euiccPackageResult"]["signatureValid"]
    finally:
        server3.stop()


def test_notifications_list_and_process(home):
    h, eid, server = home
    # A disable produces a profile notification; make the eIM refuse the result so the
    # notification stays pending, then deliver it with `ipa notifications process`.
    card = open_home_euicc(h)
    from ipa_host.sim.eim.signer import build_euicc_package_request
    from ipa_host.sim import pki

    req = build_euicc_package_request("ipa-demo-eim", eid, 1, [{"op": "disable", "iccid": PROFILE_A}],
                                      pki.load_private_key(os.path.join(sim_dir(h), "pki", "eim.key")),
                                      association_token=1)
    from ipa_core import apdu, es10

    s = apdu.IsdrSession(card).open()
    es10.load_euicc_package(s, req)
    s.close()
    r = subprocess.run([IPA, "--home", h, "--json", "notifications", "list"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    pending = cli_contract.result(r.stdout)
    assert len(pending) >= 1
    r = ipa(h, server, "--json", "notifications", "process")
    assert r.returncode == 0, r.stderr
    done = cli_contract.result(r.stdout)
    assert sorted(done["removed"]) == sorted(done["delivered"]) and done["delivered"]
    assert server.notifications(eid)
    _, left = profiles(h)
    assert [n["seqNumber"] for n in left] == [n["seqNumber"] for n in pending
                                              if n["seqNumber"] not in done["removed"]]


def test_run_polls_until_sigterm_and_stops_cleanly(home):
    h, eid, server = home
    server.queue_psmo(eid, [{"op": "enable", "iccid": TEST_PROFILE}])
    proc = subprocess.Popen([IPA, "--home", h, "--eim-url", server.url, "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not server.results(eid):
            time.sleep(0.05)
        assert server.results(eid), "ipa run did not report within 30 s"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped after" in err
    states, _ = profiles(h)
    assert states[TEST_PROFILE] == "enabled"


def test_run_with_cycle_limit_and_json_lines(home):
    h, eid, server = home
    r = ipa(h, server, "--json", "run", "--cycles", "1")
    assert r.returncode == 0, r.stderr
    lines = [c["result"] for c in cli_contract.lines(r.stdout)]
    assert len(lines) == 1 and lines[0]["idle"]


def test_unreachable_eim_is_a_clear_error(home):
    h, eid, server = home
    r = subprocess.run([IPA, "--home", h, "--eim-url", "https://127.0.0.1:9", "poll"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "error" in r.stdout and "127.0.0.1" in r.stdout


def test_eim_list_and_add_initial_on_a_fresh_euicc(tmp_path):
    from ipa_host.sim import pki

    pki_dir = str(tmp_path / "pki")
    pki.create_test_pki(pki_dir)
    spec = "sim?pki=%s&state=%s" % (pki_dir, tmp_path / "euicc.json")
    r = subprocess.run([IPA, "--card", spec, "--json", "eim", "list"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert cli_contract.result(r.stdout) == []
    r = subprocess.run([IPA, "--card", spec, "eim", "add-initial", "--id", "factory-eim",
                        "--fqdn", "eim.example.com", "--key", os.path.join(pki_dir, "eim.crt"),
                        "--tls", os.path.join(pki_dir, "ci.crt"), "--token"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "added eIM factory-eim; associationToken" in r.stdout
    r = subprocess.run([IPA, "--card", spec, "--json", "eim", "list"], capture_output=True,
                       text=True, timeout=60)
    eims = cli_contract.result(r.stdout)
    assert [e["eimId"] for e in eims] == ["factory-eim"]
    assert eims[0]["eimFqdn"] == "eim.example.com"
    assert "trustedCertificateTls" in eims[0]["trustedPublicKeyDataTls"]
    # A second initial eIM is refused by the eUICC, and the user is told.
    r = subprocess.run([IPA, "--card", spec, "eim", "add-initial", "--id", "other",
                        "--fqdn", "x.example", "--key", os.path.join(pki_dir, "eim.crt")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "AddInitialEim" in r.stderr


def test_plain_http_lab_eim_with_allow_http(tmp_path):
    """F4 (issue 17): the lab path. The demo eUICC holds a TLS trust anchor for its eIM; with
    a plain http:// --eim-url and --allow-http the IPA warns and leaves it unused instead of
    exiting 2, and a PSMO runs end to end over plain HTTP."""
    h = str(tmp_path / "home")
    eid = open_home_euicc(h).eid
    server = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"), tls=False,
                       association_token=1).start()
    try:
        assert server.url.startswith("http://")
        server.queue_psmo(eid, [{"op": "enable", "iccid": PROFILE_B}])
        cmd = [IPA, "--home", h, "--eim-url", server.url]
        refused = subprocess.run(cmd + ["poll"], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "plain http:// refused" in refused.stderr
        r = subprocess.run(cmd + ["--allow-http", "--json", "poll"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "TLS trust anchor for the eIM is not used" in r.stderr
        out = cli_contract.result(r.stdout)
        assert out["result"]["operations"][0][:2] == ["enableResult", 0]
        assert len(server.results(eid)) == 1 and server.queue(eid) == []
        assert profile_states(info_json(h))[PROFILE_B] == "enabled"
    finally:
        server.stop()
