"""The `ipa` command as a user runs it: help, `info` on the built-in virtual eUICC and over PC/SC."""

import io
import os
import subprocess
import sys

from ipa_host import cli
from ipa_host.sim.home import DEMO_EIM_ID, DEMO_PROFILES, open_home_euicc
import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked

IPA = os.path.join(os.path.dirname(sys.executable), "ipa")


def run(*argv):
    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


def test_help_lists_commands_and_card_syntax():
    r = subprocess.run([IPA, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "info" in r.stdout and "--card" in r.stdout
    assert "pcsc:<reader name or index>" in r.stdout
    assert "at:/dev/ttyUSB2" in r.stdout


def test_info_on_the_built_in_virtual_euicc(tmp_path):
    r = subprocess.run([IPA, "--home", str(tmp_path), "info"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("EID ") and len(lines[0].split()[1]) == 32
    assert "SGP.32 1.2.0" in r.stdout
    assert DEMO_EIM_ID in r.stdout
    for p in DEMO_PROFILES:
        row = [line for line in lines if p["iccid"] in line]
        assert len(row) == 1 and p["state"] in row[0] and p["name"] in row[0]
    assert "Notifications  0 pending" in r.stdout
    # The state persists: the same folder gives the same EID without re-provisioning.
    again = subprocess.run([IPA, "--home", str(tmp_path), "info"], capture_output=True, text=True,
                           timeout=60)
    assert again.stdout == r.stdout


def test_info_json_is_one_document_with_spec_names(tmp_path):
    code, text = run("--home", str(tmp_path), "--json", "info")
    assert code == 0
    d = cli_contract.result(text, "info")
    assert set(d) == {"eid", "euiccInfo2", "eims", "profiles", "notifications", "openDownload"}
    assert d["openDownload"] is None  # no download cut off (ipa_core.ipa_cancel)
    assert d["eims"][0]["eimId"] == DEMO_EIM_ID
    assert d["eims"][0]["eimSupportedProtocol"] == ["eimRetrieveHttps"]
    assert {p["iccid"] for p in d["profiles"]} == {p["iccid"] for p in DEMO_PROFILES}
    assert d["euiccInfo2"]["iotSpecificInfo"]["iotVersion"] == ["1.2.0"]


def test_trace_shows_the_apdus(tmp_path, capfd):
    code, _ = run("--home", str(tmp_path), "--trace", "info")
    assert code == 0
    err = capfd.readouterr().err
    lines = [line.split() for line in err.splitlines()]
    assert [">", "MANAGE", "CHANNEL", "open", "0070000001"] in lines
    assert [">", "ES10c.GetEID", "81E2910006BF3E035C015A"] in lines  # GetEID on channel 1


def test_small_segment_size_gives_the_same_answer(tmp_path):
    code1, full = run("--home", str(tmp_path), "--json", "info")
    code2, small = run("--home", str(tmp_path), "--json", "--segment-size", "3", "info")
    assert code1 == code2 == 0 and full == small


def test_bad_card_spec_and_bad_options(tmp_path, capsys):
    code, _ = run("--home", str(tmp_path), "--card", "floppy", "info")
    assert code == 2
    assert "unknown card kind 'floppy'" in capsys.readouterr().err
    code, _ = run("--home", str(tmp_path), "--card", "sim:x", "info")
    assert code == 2
    r = subprocess.run([IPA, "--segment-size", "0", "info"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "outside 1..255" in r.stderr


def test_no_command_prints_help():
    code, text = run()
    assert code == 0 and "usage: ipa" in text


def test_info_over_pcsc_with_the_virtual_euicc_behind_vpcd(tmp_path, pcscd_server):
    from ipa_host.sim.euicc.vpcd import VpcdBridge

    card = open_home_euicc(str(tmp_path))
    with VpcdBridge(card, port=pcscd_server.port):
        pcscd_server.wait_card(True, timeout=10)
        # The same command a bench user types, against the reader by name.
        r = subprocess.run([IPA, "--card", "pcsc:%s" % pcscd_server.reader, "--json", "info"],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    d = cli_contract.result(r.stdout)
    assert d["eid"] == card.eid
    assert [p["iccid"] for p in d["profiles"]] == [p["iccid"] for p in DEMO_PROFILES]


def test_pcsc_reader_not_found_lists_the_readers(pcscd_server):
    r = subprocess.run([IPA, "--card", "pcsc:NoSuchReader", "info"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 3
    assert "NoSuchReader" in r.stderr and pcscd_server.reader in r.stderr
