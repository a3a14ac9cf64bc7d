"""ipa_host.modem_manager's edges: which ports name a device, mmcli failures that the real
mmcli does not produce on demand (a hang, garbage) from small scripts, and the bounds.
The real mmcli against the simulated ModemManager: tests/integration/test_modemmanager.py."""

import os
import time

import pytest

from ipa_host import modem_manager as mm


def script(tmp_path, body, name="mmcli"):
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)
    return str(p)


def test_port_names_follow_symlinks(tmp_path):
    link = tmp_path / "by-id-modem"
    os.symlink("/dev/null", str(link))
    assert mm.port_names(str(link)) == {"null", "by-id-modem"}
    assert mm.port_names("/dev/cdc-wdm0") == {"cdc-wdm0"}
    assert "pts/3" in mm.port_names("/dev/pts/3")


def test_owns_port_reads_mmcli_port_lists():
    # modem.generic as `mmcli -J -m 0` prints it (cli/mmcli-output.c: "<name> (<type>)")
    generic = {"ports": ["cdc-wdm0 (qmi)", "ttyUSB2 (at)", "wwan0 (net)"],
               "primary-port": "cdc-wdm0"}
    assert mm.owns_port(generic, {"cdc-wdm0"})
    assert mm.owns_port(generic, {"ttyUSB2"})
    assert not mm.owns_port(generic, {"cdc-wdm1"})
    assert not mm.owns_port(generic, {"wwan"})  # whole names only
    assert mm.owns_port({"ports": [], "primary-port": "cdc-wdm1"}, {"cdc-wdm1"})
    assert not mm.owns_port({}, {"cdc-wdm0"})


def test_a_hanging_mmcli_is_cut_off(tmp_path):
    exe = script(tmp_path, "sleep 30")
    t0 = time.monotonic()
    with pytest.raises(mm.MmcliError, match="no answer within 1 s"):
        mm.run_mmcli(["-L"], exe, timeout=1)
    assert time.monotonic() - t0 < 10


def test_mmcli_errors_keep_its_words(tmp_path):
    exe = script(tmp_path, "echo 'error: couldn'\\''t find the ModemManager process in the bus' >&2;"
                           " exit 1")
    with pytest.raises(mm.MmcliError, match="mmcli -J -L: error: couldn't find the ModemManager"):
        mm.mmcli_json(["-L"], exe)
    exe = script(tmp_path, "echo 'not json'", "garbage")
    with pytest.raises(mm.MmcliError, match="printed no JSON"):
        mm.mmcli_json(["-L"], exe)


def test_ipa_mmcli_names_the_binary(tmp_path, monkeypatch):
    exe = script(tmp_path, "exit 0")
    monkeypatch.setenv("IPA_MMCLI", exe)
    assert mm.mmcli_path() == exe
    monkeypatch.setenv("IPA_MMCLI", str(tmp_path / "missing"))
    assert mm.mmcli_path() is None
    with pytest.raises(mm.MmcliError, match="mmcli not found"):
        mm.run_mmcli(["-L"])


def test_a_modem_not_found_again_ends_the_wait_in_time(tmp_path):
    """ModemManager lists nothing after the re-attach: the wait ends at its deadline."""
    exe = script(tmp_path, 'echo \'{"modem-list":[]}\'')
    c = mm.ModemManagerConnectivity("/dev/cdc-wdm0", mmcli=exe, poll_ms=100)
    c.modem = "/org/freedesktop/ModemManager1/Modem/0"  # as refresh() left it
    t0 = time.monotonic()
    assert c.wait_connected(500) is False
    assert 0.4 < time.monotonic() - t0 < 5


def test_without_modemmanager_nothing_waits(tmp_path):
    exe = script(tmp_path, "echo 'error: couldn'\\''t find the ModemManager process' >&2; exit 1")
    c = mm.ModemManagerConnectivity("/dev/cdc-wdm0", mmcli=exe)
    c.refresh()
    assert c.modem is None and c.calls == []
    assert c.wait_connected(180000) is True


def test_the_simulator_without_jeepney_says_so_in_one_line(tmp_path):
    """`ipa-sim modem --protocol qmi --modemmanager` where jeepney is not installed (hidden
    from the interpreter: a venv without the test extra)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['jeepney'] = None; "
            "from ipa_host.sim.modem.modem import modem_main; "
            "sys.exit(modem_main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "--protocol", "qmi", "--modemmanager",
                        "--pki", str(tmp_path / "pki"), "--state", str(tmp_path / "e.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.splitlines()[-1] == ("ipa-sim modem: simulated ModemManager: the jeepney "
                                         "package (D-Bus) is missing: pip install jeepney, or "
                                         "make setup")
    assert "Traceback" not in r.stderr
