"""Profile download end to end, as a user runs it: `ipa download <activation code>` (direct,
ES9+ JSON over real TLS) against the simulated SM-DP+ (ipa_host.sim.smdpp.smdpp: real DPauth/DPpb
signatures, a bound profile package with session keys) and the virtual eUICC
(ipa_host.sim.euicc.euicc_download), and an eIM's download trigger handled by `ipa poll`.

Three independent parties: the core IPA (ipa_core.es9p, ipa_download), the SM-DP+ simulator
and the virtual eUICC, each with its own codec; the eUICC checks every SM-DP+ signature and
the SM-DP+ every eUICC signature.
"""

import os
import subprocess

import pytest

from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.home import eim_dir, open_home_euicc, sim_dir
from ipa_host.sim.smdpp.smdpp import SmdpServer
from ipa_util import IPA, functions, info_json as info  # tests/integration/ipa_util.py
import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked

ICCID_1 = "89000123456789012341"
ICCID_CC = "89000123456789012358"


@pytest.fixture
def lab(tmp_path):
    """A provisioned home (virtual eUICC) and a running SM-DP+ under the same test CI."""
    h = str(tmp_path / "home")
    card = open_home_euicc(h)
    dp = SmdpServer(str(tmp_path / "smdp"), os.path.join(sim_dir(h), "pki")).start()
    dp.add_profile("MATCH-1", ICCID_1, "Test profile", size=20000)
    dp.add_profile("MATCH-CC", ICCID_CC, "CC profile", size=3000, cc="1234")
    try:
        yield h, card.eid, dp
    finally:
        dp.stop()


def ipa(h, dp, *args, timeout=120):
    cmd = [IPA, "--home", h, "--smdp-ca-file", dp.tls_ca_path] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_direct_download(lab):
    h, eid, dp = lab
    r = ipa(h, dp, "download", "LPA:1$%s$MATCH-1" % dp.address)
    assert r.returncode == 0, r.stderr
    assert "installed      %s  Test profile" % ICCID_1 in r.stdout
    assert "loading profile: 25/25 segments" in r.stderr
    assert functions(dp) == [("initiateAuthentication", "Executed-Success"),
                             ("authenticateClient", "Executed-Success"),
                             ("getBoundProfilePackage", "Executed-Success"),
                             ("handleNotification", "Executed-Success")]
    d = info(h)
    assert ICCID_1 in [p["iccid"] for p in d["profiles"]]
    # the PIR went to the SM-DP+ right away (test_smdp_notifications.py) and left the eUICC
    assert not any(n.get("iccid") == ICCID_1 for n in d["notifications"])


def test_json_output_and_confirmation_code(lab):
    h, eid, dp = lab
    r = ipa(h, dp, "--json", "download", "1$%s$MATCH-CC$$1" % dp.address,
            "--confirmation-code", "1234")
    assert r.returncode == 0, r.stderr
    out = cli_contract.result(r.stdout)
    assert out["ok"] is True and out["iccid"] == ICCID_CC
    assert out["pir"]["finalResult"]["successResult"]["aid"]
    assert out["profileMetadata"]["profileName"] == "CC profile"
    assert out["segments"][0] == out["segments"][1] > 3


def test_missing_confirmation_code_cancels_on_both_sides(lab):
    h, eid, dp = lab
    r = ipa(h, dp, "download", "1$%s$MATCH-CC$$1" % dp.address)
    assert r.returncode == 1
    assert "requires a confirmation code" in r.stderr
    assert "session cancelled (endUserRejection): eUICC yes, SM-DP+ yes" in r.stderr
    assert functions(dp)[-1] == ("cancelSession", "Executed-Success")
    assert list(dp.events)[-1]["reason"] == 0  # endUserRejection
    assert ICCID_CC not in [p["iccid"] for p in info(h)["profiles"]]


def test_wrong_confirmation_code(lab):
    h, eid, dp = lab
    r = ipa(h, dp, "download", "1$%s$MATCH-CC$$1" % dp.address, "--confirmation-code", "9999")
    assert r.returncode == 1
    assert "GetBoundProfilePackage" in r.stderr and "confirmationCode" in r.stderr, r.stderr
    assert ICCID_CC not in [p["iccid"] for p in info(h)["profiles"]]


def test_unknown_matching_id(lab):
    h, eid, dp = lab
    r = ipa(h, dp, "download", "1$%s$NOPE" % dp.address)
    assert r.returncode == 1
    assert "matchingIdRefused" in r.stderr and "8.2.6" in r.stderr
    assert functions(dp)[-1] == ("cancelSession", "Executed-Success")


def test_untrusted_smdp_is_a_transport_error(lab):
    h, eid, dp = lab
    r = subprocess.run([IPA, "--home", h, "download", "1$%s$MATCH-1" % dp.address],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "InitiateAuthentication" in r.stderr
    assert not list(dp.events)


def test_bad_activation_code_is_usage_error(lab):
    h, eid, dp = lab
    r = ipa(h, dp, "download", "1$%s" % dp.address)
    assert r.returncode == 2 and "at least 3" in r.stderr


def test_eim_trigger_handled_by_poll(lab):
    h, eid, dp = lab
    eim = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"),
                    association_token=1).start()
    try:
        eim.queue_download_trigger(eid, activation_code="LPA:1$%s$MATCH-1" % dp.address)
        r = ipa(h, dp, "--eim-url", eim.url, "--profile-download", "direct", "poll")
        assert r.returncode == 0, r.stderr
        assert "profileDownloadTriggerRequest" in r.stdout
        res = eim.results(eid)[-1]
        assert res["kind"] == "profileDownloadTriggerResult", res
        assert res["result"] == "profileInstallationResult" and res["eimTransactionId"], res
        assert ("getBoundProfilePackage", "Executed-Success") in functions(dp)
        assert ICCID_1 in [p["iccid"] for p in info(h)["profiles"]]
        # a direct download's PIR goes to the SM-DP+ as well as in the eIM's result
        (n,) = dp.notifications
        assert n["type"] == "pir" and n["verified"] and n["iccid"] == ICCID_1
        assert not [x for x in info(h)["notifications"] if x.get("iccid") == ICCID_1]
    finally:
        eim.stop()


def test_eim_trigger_relayed_by_an_eim_that_cannot(lab):
    """auto: the demo eIM's configuration asks for indirect download; this eIM simulator
    refuses the relay, and gets a profileDownloadError result (undefinedError), not silence."""
    h, eid, dp = lab
    eim = EimServer(eim_dir(h), pki_dir=os.path.join(sim_dir(h), "pki"),
                    association_token=1).start()
    try:
        eim.queue_download_trigger(eid, activation_code="LPA:1$%s$MATCH-1" % dp.address)
        r = ipa(h, dp, "--eim-url", eim.url, "poll")
        assert r.returncode == 0, r.stderr
        assert "failed at InitiateAuthentication" in r.stderr
        res = eim.results(eid)[-1]
        assert res["result"] == "profileDownloadError" and res["der"].endswith("300380017F"), res
        assert res["eimTransactionId"]  # echoed from the trigger
        assert not list(dp.events)  # the SM-DP+ was never contacted
    finally:
        eim.stop()


def test_download_and_enable_on_a_modem_refreshes_it(lab, tmp_path):
    """`ipa --card at:<pty> download --enable`: after ES10b.ImmediateEnable the modem is made
    to read the eUICC again (AT+CFUN=0/1) and the IPA waits for its registration, as poll
    does after a PSMO enable; `ipa info` through the modem shows the new profile enabled.
    The eUICC has no eIM: ConfigureImmediateProfileEnabling is refused once one is
    associated (associatedEimAlreadyExists)."""
    from ipa_core import es10
    from ipa_core.apdu import IsdrSession
    from ipa_host.sim.euicc.euicc import VirtualEuicc
    from ipa_host.sim.modem.modem import SimModem

    h, eid, dp = lab
    card = VirtualEuicc(os.path.join(sim_dir(h), "pki"), state_path=str(tmp_path / "no-eim.json"))
    with IsdrSession(card) as s:  # the device's set-up: immediate enabling allowed
        es10.configure_immediate_profile_enabling(s, immediate_enable_flag=True)
    m = SimModem(card, "textbook", attach_delay=0.2).start()
    try:
        r = ipa(h, dp, "--card", "at:" + m.path, "--log-level", "info", "download", "--enable",
                "LPA:1$%s$MATCH-1" % dp.address)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "enabled        ok" in r.stdout, r.stdout
        sent = list(m.received)
        assert sent.index("AT+CFUN=0") < sent.index("AT+CFUN=1")
        assert "registered (home network)" in r.stderr, r.stderr
        q = subprocess.run([IPA, "--home", h, "--card", "at:" + m.path, "--json", "info"],
                           capture_output=True, text=True, timeout=60)
        assert q.returncode == 0, q.stderr
        states = {p["iccid"]: p["profileState"] for p in cli_contract.result(q.stdout)["profiles"]}
        assert states[ICCID_1] == "enabled" and list(states.values()).count("enabled") == 1
    finally:
        m.stop()


def test_download_and_enable_on_a_modem_that_never_registers_again(lab, tmp_path):
    """The profile is installed and enabled (exit 0), the modem refreshed, and the user is
    told that it did not register within [card] attach_timeout."""
    from ipa_core import es10
    from ipa_core.apdu import IsdrSession
    from ipa_host.sim.euicc.euicc import VirtualEuicc
    from ipa_host.sim.modem.modem import SimModem

    h, eid, dp = lab
    card = VirtualEuicc(os.path.join(sim_dir(h), "pki"), state_path=str(tmp_path / "no-eim.json"))
    with IsdrSession(card) as s:
        es10.configure_immediate_profile_enabling(s, immediate_enable_flag=True)
    config = tmp_path / "ipa.toml"
    config.write_text("[card]\nattach_timeout = 1\n")
    m = SimModem(card, "textbook", reattach=False).start()
    try:
        r = ipa(h, dp, "--config", str(config), "--card", "at:" + m.path, "download",
                "--enable", "LPA:1$%s$MATCH-1" % dp.address)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "enabled        ok" in r.stdout, r.stdout
        assert "AT+CFUN=1" in m.received
        assert "the modem did not register within 1 s after enabling the new profile" \
            in r.stderr, r.stderr
    finally:
        m.stop()
