"""`--card at:auto`: the AT port of a known USB modem from a (fake) sysfs tree, the way the
kernel lays out USB devices, interfaces and their ttys (tests/host/usb_sysfs.py)."""

import os
import subprocess
import sys

import pytest

from cli_contract import envelope
from ipa_core.errors import TransportError
from ipa_host.card import usb_find
from usb_sysfs import add_usb_device

IPA = os.path.join(os.path.dirname(sys.executable), "ipa")

# Modems as they enumerate: (bus, vid, pid, {interface: tty}, cdc_acm?, AT tty expected).
MODEMS = {
    "quectel_ec25": ("1-1.3", 0x2C7C, 0x0125,
                     {0: "ttyUSB0", 1: "ttyUSB1", 2: "ttyUSB2", 3: "ttyUSB3", 4: None}, False,
                     "ttyUSB2"),
    "quectel_bg95": ("1-1.2", 0x2C7C, 0x0700, {0: "ttyUSB0", 1: "ttyUSB1", 2: "ttyUSB2"},
                     False, "ttyUSB2"),
    "simcom_sim7600_rndis": ("1-1.4", 0x1E0E, 0x9011,
                             {0: None, 1: None, 2: "ttyUSB0", 3: "ttyUSB1", 4: "ttyUSB2",
                              5: "ttyUSB3", 6: "ttyUSB4"}, False, "ttyUSB2"),
    "simcom_sim7080": ("3-1", 0x1E0E, 0x9205, {0: "ttyUSB0", 1: "ttyUSB1", 2: "ttyUSB2",
                                               3: "ttyUSB3"}, False, "ttyUSB2"),
    "ublox_lara_r2": ("1-1", 0x1546, 0x110A, {0: "ttyACM0", 2: "ttyACM1", 4: "ttyACM2"}, True,
                      "ttyACM0"),
    "telit_le910c1": ("2-1", 0x1BC7, 0x1201, {0: "ttyUSB0", 3: "ttyUSB1", 4: "ttyUSB2",
                                              5: "ttyUSB3", 6: "ttyUSB4"}, False, "ttyUSB2"),
    "telit_me910c1": ("2-2", 0x1BC7, 0x1101, {0: "ttyUSB0", 1: "ttyUSB1", 2: "ttyUSB2"},
                      False, "ttyUSB1"),
    "sierra_em7455": ("1-1.1", 0x1199, 0x9071, {0: "ttyUSB0", 2: "ttyUSB1", 3: "ttyUSB2",
                                                8: None}, False, "ttyUSB2"),
}


def _add(root, name, renumber=0):
    bus, vid, pid, ttys, acm, at = MODEMS[name]
    if renumber:  # a second modem: its ttys come after the first one's
        bus = bus + ".%d" % renumber
        ttys = {i: t and t[:-1] + str(int(t[-1]) + 4 * renumber) for i, t in ttys.items()}
        at = at[:-1] + str(int(at[-1]) + 4 * renumber)
    add_usb_device(root, bus, vid, pid, ttys, acm=acm)
    return os.path.join(str(root), "dev", at)


@pytest.mark.parametrize("name", sorted(MODEMS))
def test_each_known_modem_gives_its_at_interface(tmp_path, name):
    want = _add(tmp_path, name)
    # A USB-serial adapter and a hub's other device beside it change nothing.
    add_usb_device(tmp_path, "1-2", 0x1A86, 0x7523, {0: "ttyUSB9"}, product="USB Serial")
    port = usb_find.find_at_port(str(tmp_path))
    assert port["device"] == want
    assert port["modem"] and port["at"]


def test_sysroot_from_the_environment(tmp_path, monkeypatch):
    want = _add(tmp_path, "quectel_ec25")
    monkeypatch.setenv(usb_find.ROOT_ENV, str(tmp_path))
    assert usb_find.find_at_port()["device"] == want


def test_unknown_devices_are_listed_with_how_to_give_the_port(tmp_path):
    add_usb_device(tmp_path, "1-2", 0x1A86, 0x7523, {0: "ttyUSB0"}, product="USB Serial")
    add_usb_device(tmp_path, "1-3", 0x05C6, 0x90DB, {0: "ttyUSB1", 2: "ttyUSB2"})
    with pytest.raises(TransportError) as e:
        usb_find.find_at_port(str(tmp_path))
    msg = str(e.value)
    assert "ttyUSB0 (USB Serial, 1a86:7523 interface 0, USB 1-2)" in msg
    assert "05c6:90db interface 2" in msg
    assert "--card at:/dev/ttyUSB2" in msg


def test_known_modem_without_a_tty_on_its_at_interface(tmp_path):
    # An EC25 whose interface 2 has no tty (driver not bound / other composition).
    add_usb_device(tmp_path, "1-1.3", 0x2C7C, 0x0125, {0: "ttyUSB0", 1: "ttyUSB1", 2: None})
    with pytest.raises(TransportError) as e:
        usb_find.find_at_port(str(tmp_path))
    assert "Quectel EC25/EG25/EC20 present, but no tty on its AT interface" in str(e.value)


def test_nothing_plugged_in(tmp_path):
    os.makedirs(tmp_path / "sys" / "bus" / "usb" / "devices")
    with pytest.raises(TransportError) as e:
        usb_find.find_at_port(str(tmp_path))
    assert "no USB serial port" in str(e.value) and "at:/dev/serial0" in str(e.value)


def test_two_modems_must_be_chosen(tmp_path):
    a = _add(tmp_path, "quectel_ec25")
    b = _add(tmp_path, "simcom_sim7080", renumber=1)
    with pytest.raises(usb_find.UsbFindError) as e:
        usb_find.find_at_port(str(tmp_path))
    msg = str(e.value)
    assert "2 modems" in msg and a in msg and b in msg
    assert "Quectel EC25" in msg and "SIMCom SIM7070/SIM7080/SIM7090" in msg


def _ipa(root, *args):
    env = dict(os.environ, **{usb_find.ROOT_ENV: str(root)})
    return subprocess.run([IPA, "--home", str(root / "home"), "--card", "at:auto"] + list(args),
                          capture_output=True, text=True, timeout=60, env=env)


def test_cli_at_auto_errors(tmp_path):
    _add(tmp_path, "quectel_ec25")
    _add(tmp_path, "telit_le910c1", renumber=1)
    r = _ipa(tmp_path, "info")
    assert r.returncode == 2  # usage: the user must choose
    assert "at:auto found the AT ports of 2 modems" in r.stderr and "Telit LE910C1" in r.stderr

    other = tmp_path / "other"
    add_usb_device(other, "1-2", 0x1A86, 0x7523, {0: "ttyUSB0"}, product="USB Serial")
    r = _ipa(other, "info")
    assert r.returncode == 3  # the card could not be reached
    assert "knows none of these USB serial ports" in r.stderr and "1a86:7523" in r.stderr


def test_cli_at_auto_errors_in_json(tmp_path):
    _add(tmp_path, "quectel_ec25")
    _add(tmp_path, "sierra_em7455", renumber=1)
    r = _ipa(tmp_path, "--json", "info")
    doc = envelope(r.stdout, "info")
    assert r.returncode == 2 and doc["error"]["code"] == "usage"
    assert doc["error"]["type"] == "UsbFindError" and "Sierra EM7455" in doc["error"]["message"]
    empty = tmp_path / "empty"
    os.makedirs(str(empty / "sys" / "bus" / "usb" / "devices"))
    r = _ipa(empty, "--json", "info")
    doc = envelope(r.stdout, "info")
    assert r.returncode == 3 and doc["error"]["code"] == "transport"
