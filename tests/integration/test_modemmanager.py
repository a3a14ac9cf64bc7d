"""Re-attach through ModemManager after a profile switch on qmi:/mbim:, end to end:

    ipa --card qmi:<pty>?proxy=<socket> poll                          (subprocess)
      -> ipa_host.card.qmi / mbim -> ipa_host.sim.modem.modem_qmi / modem_mbim -> VirtualEuicc
      -> after the enable: ipa_host.modem_manager -> the real mmcli (ModemManager 1.20,
         extracted by tools/setup.sh into .venv/mm/) -> a real dbus-daemon (private bus)
         -> ipa_host.sim.modem.mm_dbus.SimModemManager, owning that modem and eUICC
    eIM: ipa_host.sim.eim.eim.EimServer over real TLS

First the real mmcli reads the simulated ModemManager (code nobody here wrote checks the
simulator); then a PSMO enable makes the IPA disable and enable the modem through
ModemManager, wait for its registration and log the ICCID ModemManager now reads, before
the signed result goes to the eIM. A profile without network rolls back; without
ModemManager (mmcli missing, nobody on the bus, another modem) the poll goes on as before.
"""

import json
import os
import subprocess

import pytest

from ipa_host.sim.home import DEMO_PROFILES
from ipa_host.sim.modem.mm_dbus import PrivateBus, SimModemManager
from ipa_host.sim.modem.modem_mbim import SimMbimModem
from ipa_host.sim.modem.modem_qmi import SimQmiModem
import cli_contract  # tests/host/cli_contract.py
from ipa_util import log_index, log_lines, run_service  # tests/integration/ipa_util.py

PROFILE_A, PROFILE_B, TEST_PROFILE = (p["iccid"] for p in DEMO_PROFILES)
MODEMS = {"qmi": SimQmiModem, "mbim": SimMbimModem}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MMCLI = os.environ.get("IPA_MMCLI") or os.path.join(ROOT, ".venv", "mm", "mmcli")
MODEM0 = "/org/freedesktop/ModemManager1/Modem/0"


@pytest.fixture
def bus(tmp_path):
    assert os.access(MMCLI, os.X_OK), "no mmcli at %s: run `make setup`" % MMCLI
    b = PrivateBus(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture
def mm_rig(ipa_home, bus):
    """(home, card, make, env): make(protocol, personality="textbook", **options) -> (a started
    simulated QMI/MBIM modem holding the home's eUICC, the simulated ModemManager owning it);
    env: what `ipa` needs to reach them (IPA_MMCLI, DBUS_SYSTEM_BUS_ADDRESS). The IPA waits
    [card] attach_timeout = 3 s for the registration."""
    from ipa_host.sim.home import open_home_euicc

    with open(ipa_home.config, "w") as f:
        f.write("[card]\nattach_timeout = 3\n[eim]\ntimeout = 10\n")
    card = open_home_euicc(ipa_home.path)
    made = []

    def make(protocol, personality="textbook", **options):
        m = MODEMS[protocol](card, proxy="ipa-test-mm-%s-%d-%d"
                             % (protocol, os.getpid(), len(made))).start()
        made.append(m)
        mm = SimModemManager(card, m.path, protocol, bus.address, personality, **options)
        made.append(mm.start())
        return m, mm

    env = {"IPA_MMCLI": MMCLI, "DBUS_SYSTEM_BUS_ADDRESS": bus.address}
    yield ipa_home, card, make, env
    for x in reversed(made):
        x.stop()


def mmcli(env, *args):
    r = subprocess.run([MMCLI] + list(args), capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, **env))
    assert r.returncode == 0, r.stderr
    return r.stdout


def spec(protocol, modem):
    return "%s:%s?proxy=%s" % (protocol, modem.path, modem.proxy)


after = log_index


def signed_results(home):
    out = []
    for r in home.server.results(home.eid):
        epr = r["euiccPackageResult"]
        assert epr["signatureValid"] is True
        out.append([(x["name"], x["value"]) for x in epr["results"]])
    return out


@pytest.mark.parametrize("protocol", ["qmi", "mbim"])
def test_the_real_mmcli_reads_the_simulated_modemmanager(mm_rig, protocol):
    home, card, make, env = mm_rig
    m, mm = make(protocol)
    port = m.path[len("/dev/"):]
    assert MODEM0 in mmcli(env, "-L")
    modem = json.loads(mmcli(env, "-J", "-m", "0"))["modem"]
    assert modem["dbus-path"] == MODEM0
    g = modem["generic"]
    assert g["ports"] == ["%s (%s)" % (port, protocol), "wwan0 (net)"]
    assert g["primary-port"] == port and g["state"] == "registered"
    assert modem["3gpp"]["registration-state"] == "home"
    sim = json.loads(mmcli(env, "-J", "-i", g["sim"]))["sim"]["properties"]
    assert sim["iccid"] == PROFILE_A and sim["eid"] == card.eid
    assert "successfully disabled the modem" in mmcli(env, "-m", "0", "--disable")
    assert json.loads(mmcli(env, "-J", "-m", "0"))["modem"]["generic"]["state"] == "disabled"
    assert "successfully enabled the modem" in mmcli(env, "-m", "0", "--enable")
    assert json.loads(mmcli(env, "-J", "-m", "0"))["modem"]["generic"]["state"] in (
        "searching", "registered")
    assert mm.calls == [(0, False), (0, True)]


@pytest.mark.parametrize("protocol", ["qmi", "mbim"])
def test_a_psmo_enable_re_attaches_through_modemmanager(mm_rig, protocol):
    home, card, make, env = mm_rig
    m, mm = make(protocol)
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    r = home.ipa("--log-level", "info", "--json", "poll", card=spec(protocol, m), env=env)
    assert r.returncode == 0, r.stderr
    out = cli_contract.result(r.stdout, "poll")
    assert out["result"]["operations"] == [["enableResult", 0, "ok"]], out
    assert mm.calls == [(0, False), (0, True)]  # disable, enable: through ModemManager
    log = log_lines(r.stderr)
    i = after(log, "INFO ipa: modemmanager: profile switch: re-attaching modem %s (%s, state "
                   "registered) through ModemManager: disable, enable" % (MODEM0, m.path))
    i = after(log, "INFO ipa: modemmanager: waiting up to 3 s for modem %s to register"
              % m.path, i)
    after(log, "INFO ipa: modemmanager: modem %s registered" % MODEM0, i)
    assert ("SIM ICCID %s" % PROFILE_B) in log[after(log, "registered", i)]
    assert not [x for x in log if x.startswith("WARNING")], log
    # The modem reads the new profile; the eIM got the signed result after that.
    assert mm.iccid == PROFILE_B and mm.state == 8
    assert card.state.enabled_profile()["iccid"] == PROFILE_B
    assert signed_results(home) == [[("enableResult", 0)]]
    assert m.uicc.channels == set()


def test_a_modem_reprobed_under_a_new_index_is_found_by_its_port(mm_rig):
    home, card, make, env = mm_rig
    m, mm = make("qmi", "reprobe")
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    r = home.ipa("--log-level", "info", "poll", card=spec("qmi", m), env=env)
    assert r.returncode == 0, r.stderr
    modem1 = "/org/freedesktop/ModemManager1/Modem/1"
    # ModemManager dropped Modem/0 after the SIM change; the new one starts disabled and
    # the IPA enables it.
    assert mm.calls == [(0, False), (0, True), (1, True)]
    log = log_lines(r.stderr)
    i = after(log, "INFO ipa: modemmanager: ModemManager re-probed the modem: now " + modem1)
    assert ("modem %s registered" % modem1) in log[after(log, "SIM ICCID " + PROFILE_B, i)]
    assert signed_results(home) == [[("enableResult", 0)]]
    assert mmcli(env, "-L").split()[0] == modem1


def test_no_network_with_the_new_profile_rolls_back(mm_rig):
    home, card, make, env = mm_rig
    m, mm = make("mbim", no_network_iccids=(PROFILE_B,))
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B, "rollback": True}])
    r = home.ipa("--log-level", "info", "poll", card=spec("mbim", m), env=env)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "rollbackResult               ok" in r.stdout, r.stdout
    assert r.elapsed < 30, r.elapsed
    log = log_lines(r.stderr)
    i = after(log, "WARNING ipa: modemmanager: modem %s not registered within 3 s after the "
                   "profile switch (last state: searching)" % m.path)
    i = after(log, "WARNING ipa: no network after the profile switch: rolling back", i)
    i = after(log, "INFO ipa: modemmanager: profile switch: re-attaching modem", i)
    after(log, "SIM ICCID " + PROFILE_A, i)
    # Two re-attaches (the enable, the rollback); ModemManager reads profile A again.
    assert mm.calls == [(0, False), (0, True)] * 2
    assert mm.iccid == PROFILE_A and mm.state == 8
    assert home.profiles()[PROFILE_A] == "enabled" and home.profiles()[PROFILE_B] == "disabled"
    assert signed_results(home) == [[("rollbackResult", 0)]]
    assert home.job() is None and home.pending() == []


def test_a_modem_that_never_registers_keeps_the_result(mm_rig):
    home, card, make, env = mm_rig
    m, mm = make("qmi", "never_registers")
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    r = home.ipa("poll", card=spec("qmi", m), env=env)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "error          no network within 3 s after the profile change" in r.stdout
    assert r.elapsed < 30, r.elapsed
    assert mm.calls == [(0, False), (0, True)] and mm.state == 7  # searching
    assert home.server.results(home.eid) == []  # the result waits for a network
    assert home.job()["step"] == "connect"


def test_enable_refused_by_modemmanager_is_logged_and_the_iccid_checked(mm_rig):
    """ModemManager refuses Enable: the modem keeps running on what it read before (profile
    A), and the IPA says so plainly; the eIM still gets the result (the network is up)."""
    home, card, make, env = mm_rig
    m, mm = make("qmi", "enable_fails")
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    r = home.ipa("--log-level", "info", "poll", card=spec("qmi", m), env=env)
    assert r.returncode == 0, r.stderr
    log = log_lines(r.stderr)
    i = after(log, "WARNING ipa: modemmanager: disable failed: mmcli -m %s --disable: " % MODEM0)
    assert "simulated failure of disabling" in log[i]
    after(log, "WARNING ipa: modemmanager: the modem runs on ICCID %s, not on the profile the "
               "eUICC has enabled (%s)" % (PROFILE_A, PROFILE_B), i)
    assert mm.calls == [(0, False)]
    assert signed_results(home) == [[("enableResult", 0)]]


@pytest.mark.parametrize("case", ["no_mmcli", "no_modemmanager", "another_modem"])
def test_without_modemmanager_the_poll_goes_on(mm_rig, bus, case):
    home, card, make, env = mm_rig
    if case == "no_modemmanager":
        m = SimQmiModem(card, proxy="ipa-test-mm-alone-%d" % os.getpid()).start()
    else:
        m, mm = make("qmi")
    other = None
    if case == "another_modem":  # ModemManager owns a modem on another port only
        other = SimQmiModem(card, proxy="ipa-test-mm-other-%d" % os.getpid()).start()
        card_spec = spec("qmi", other)
    else:
        card_spec = spec("qmi", m)
    if case == "no_mmcli":
        env = dict(env, IPA_MMCLI=os.path.join(str(home.path), "no-such-mmcli"))
    try:
        home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
        r = home.ipa("--log-level", "info", "poll", card=card_spec, env=env)
    finally:
        for x in (other, m if case == "no_modemmanager" else None):
            if x is not None:
                x.stop()
    assert r.returncode == 0, r.stderr
    assert signed_results(home) == [[("enableResult", 0)]]
    log = log_lines(r.stderr)
    words = {"no_mmcli": "mmcli not found (set IPA_MMCLI to use ModemManager)",
             "no_modemmanager": "ModemManager does not answer (mmcli -J -L: ",
             "another_modem": "ModemManager does not manage %s: the modem is not re-attached"
                              % (other.path if other else "")}[case]
    after(log, "INFO ipa: modemmanager: " + words)
    assert "Traceback" not in r.stderr
    if case != "no_modemmanager":
        assert mm.calls == []


def test_refresh_false_leaves_the_modem_alone(mm_rig):
    home, card, make, env = mm_rig
    with open(home.config, "w") as f:
        f.write("[card]\nrefresh = false\nattach_timeout = 3\n[eim]\ntimeout = 10\n")
    m, mm = make("qmi")
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    r = home.ipa("--log-level", "info", "poll", card=spec("qmi", m), env=env)
    assert r.returncode == 0, r.stderr
    after(log_lines(r.stderr), "INFO ipa: modemmanager: profile switch: no re-attach "
                               "([card] refresh = false)")
    assert mm.calls == []
    assert signed_results(home) == [[("enableResult", 0)]]


@pytest.mark.parametrize("protocol", ["qmi", "mbim"])
def test_info_names_the_modemmanager_modem(mm_rig, protocol):
    home, card, make, env = mm_rig
    m, mm = make(protocol)
    r = home.ipa("--json", "info", url=False, card=spec(protocol, m), env=env)
    assert r.returncode == 0, r.stderr
    d = cli_contract.result(r.stdout, "info")  # checked against docs/cli-output.schema.json
    assert d["modemManager"] == {"modem": MODEM0, "state": "registered", "device": m.path}
    r = home.ipa("info", url=False, card=spec(protocol, m), env=env)
    assert "ModemManager   modem 0 (state registered), owns %s\n" % m.path in r.stdout
    # Without ModemManager on the bus, info says nothing of it (and still works).
    mm.stop()
    r = home.ipa("--json", "info", url=False, card=spec(protocol, m), env=env)
    assert r.returncode == 0, r.stderr
    assert "modemManager" not in cli_contract.result(r.stdout, "info")


def test_ipa_sim_modem_with_its_modemmanager(ipa_home, tmp_path):
    """`ipa-sim modem --protocol qmi --modemmanager` as a user starts it: the card line, then
    the bus for mmcli; the real mmcli and `ipa info` find the modem there."""
    import signal

    from ipa_util import IPA  # tests/integration/ipa_util.py

    from ipa_host.sim.home import sim_dir

    assert os.access(MMCLI, os.X_OK), "no mmcli at %s: run `make setup`" % MMCLI
    pki = os.path.join(sim_dir(ipa_home.path), "pki")
    sim = subprocess.Popen([os.path.join(os.path.dirname(IPA), "ipa-sim"), "modem", "--protocol",
                            "qmi", "--modemmanager", "--pki", pki,
                            "--state", str(tmp_path / "euicc.json")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        card_line = sim.stdout.readline().strip()
        bus_line = sim.stdout.readline().strip()
        assert card_line.startswith("qmi:/dev/pts/"), card_line
        assert bus_line.startswith("DBUS_SYSTEM_BUS_ADDRESS=unix:path="), bus_line
        env = {"IPA_MMCLI": MMCLI, "DBUS_SYSTEM_BUS_ADDRESS": bus_line.split("=", 1)[1]}
        device = card_line[len("qmi:"):].split("?")[0]
        g = json.loads(mmcli(env, "-J", "-m", "0"))["modem"]["generic"]
        assert g["primary-port"] == device[len("/dev/"):]
        r = ipa_home.ipa("--json", "info", url=False, card=card_line, env=env)
        assert r.returncode == 0, r.stderr
        assert cli_contract.result(r.stdout, "info")["modemManager"]["device"] == device
    finally:
        sim.send_signal(signal.SIGTERM)
        out, err = sim.communicate(timeout=20)
    assert sim.returncode == 0, err
    assert not os.path.exists(bus_line.split("=unix:path=", 1)[1])  # its bus folder is gone


def test_a_fallback_by_the_ipa_re_attaches_too(mm_rig):
    """`ipa euicc fallback execute` (the IPA switches the profile itself, not an eIM): the
    same disable + enable through ModemManager, then the registration wait."""
    home, card, make, env = mm_rig
    card.state.find_profile(PROFILE_B)["fallback"] = True  # as a card personalisation sets it
    m, mm = make("qmi")
    r = home.ipa("--log-level", "info", "euicc", "fallback", "execute", url=False,
                 card=spec("qmi", m), env=env)
    assert r.returncode == 0, r.stderr
    assert "fallback execute: done" in r.stdout
    assert mm.calls == [(0, False), (0, True)]
    after(log_lines(r.stderr), "SIM ICCID " + PROFILE_B)
    assert mm.iccid == PROFILE_B and card.state.enabled_profile()["iccid"] == PROFILE_B


def test_ipa_run_re_attaches_in_its_cycle(mm_rig):
    """`ipa run` (the service): the PSMO of the first cycle re-attaches through ModemManager
    before its result goes out; the next cycle finds the modem as it is and sends nothing."""
    home, card, make, env = mm_rig
    m, mm = make("mbim")
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    run_service(home.command(card=spec("mbim", m))[1:],
                [(lambda: home.server.results(home.eid) and len(home.server.requests) >= 3,
                  None)], wait=30, env=env)
    assert mm.calls == [(0, False), (0, True)]  # once, in the cycle that switched
    assert mm.iccid == PROFILE_B
    assert signed_results(home) == [[("enableResult", 0)]]
