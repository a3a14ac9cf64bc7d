"""`ipa info` on a modem card: identity (AT+CGMI/CGMM/CGMR), the AT mode in use (CGLA or
CSIM) and the quirk workarounds, through the real command and the simulated modem's
personalities; with `--card at:auto` the port is found in a fake sysfs whose /dev entry is
the simulated modem's pty."""

import os

from cli_contract import result
from usb_sysfs import add_usb_device

from ipa_host.card.usb_find import ROOT_ENV


def test_textbook_modem_found_by_at_auto(modem_rig, tmp_path):
    home, _card, make_modem = modem_rig
    modem = make_modem("textbook")
    root = tmp_path / "root"
    add_usb_device(root, "1-1.3", 0x2C7C, 0x0125,
                   {0: "ttyUSB0", 1: "ttyUSB1", 2: "ttyUSB2", 3: "ttyUSB3"},
                   dev_target=modem.path)
    env = {ROOT_ENV: str(root)}
    r = home.ipa("--json", "info", url=False, card="at:auto", env=env)
    assert r.returncode == 0, r.stderr
    m = result(r.stdout, "info")["modem"]
    assert m["device"] == os.path.join(str(root), "dev", "ttyUSB2")
    assert (m["manufacturer"], m["model"], m["revision"]) == \
        ("IPA Sim", "SIM-MODEM-1", "SIMMODEM_1.0.0")
    assert m["mode"] == "cgla" and m["requestedMode"] == "auto" and m["session"]
    assert m["profile"] == "generic" and m["matched"] == [] and m["quirks"] == []
    assert m["usb"] == {"vid": "2c7c", "pid": "0125", "interface": 2, "bus": "1-1.3",
                        "known": "Quectel EC25/EG25/EC20"}

    r = home.ipa("info", url=False, card="at:auto", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "Modem          IPA Sim SIM-MODEM-1, firmware SIMMODEM_1.0.0, on %s" \
        % m["device"] in lines
    assert "  found by     at:auto: Quectel EC25/EG25/EC20 (2c7c:0125, USB interface 2 at " \
           "1-1.3)" in lines
    assert any(line.startswith("  AT mode      CGLA: ") for line in lines)
    assert "  quirks       none: TS 27.007 as written" in lines


def test_csim_only_modem_shows_csim_and_its_quirk(modem_rig):
    home, _card, make_modem = modem_rig
    modem = make_modem("csim_only")  # Dell DW5821e: AT+CSIM only, upper-case hex
    r = home.ipa("--json", "info", url=False, card="at:" + modem.path)
    assert r.returncode == 0, r.stderr
    m = result(r.stdout, "info")["modem"]
    assert m["manufacturer"] == "Dell Inc." and m["model"] == "DW5821e Snapdragon X20 LTE"
    assert m["revision"] == "T77W968.F1.0.0.4.3.GC.013"
    assert m["mode"] == "csim" and "session" not in m and "usb" not in m
    assert m["profile"] == "Dell DW5821e" and m["matched"] == ["dw5821e"]
    assert [q["key"] for q in m["quirks"]] == ["csim_only"]
    assert any("CSIM only" in n for n in m["notes"])

    r = home.ipa("info", url=False, card="at:" + modem.path)
    assert r.returncode == 0, r.stderr
    assert "  AT mode      CSIM: APDUs as they are (AT+CSIM), the IPA opens its own channel" \
        in r.stdout.splitlines()
    assert "  quirks       CSIM only: AT+CCHO is not tried" in r.stdout.splitlines()


def test_modem_cutting_answers_and_forced_mode(modem_rig):
    home, _card, make_modem = modem_rig
    modem = make_modem("truncate256")  # Huawei MT5700: answers cut at 256 bytes
    r = home.ipa("--json", "info", url=False, card="at:%s?mode=csim" % modem.path)
    assert r.returncode == 0, r.stderr
    m = result(r.stdout, "info")["modem"]
    assert m["manufacturer"].startswith("Huawei") and m["model"] == "MT5700M-CN"
    assert m["mode"] == "csim" and m["requestedMode"] == "csim"
    assert {"key": "csim_max_answer", "value": 256,
            "what": "answers cut at 256 bytes: completed with GET RESPONSE"} in m["quirks"]
    r = home.ipa("info", url=False, card="at:%s?mode=csim" % modem.path)
    assert "(forced: mode=csim)" in r.stdout


def test_no_modem_part_for_other_cards(ipa_home):
    r = ipa_home.ipa("--json", "info", url=False)
    assert r.returncode == 0, r.stderr
    assert "modem" not in result(r.stdout, "info")
    assert "Modem " not in ipa_home.ipa("info", url=False).stdout
