"""The `ipa` command on a modem's QMI and MBIM control node, end to end, as a user runs it:

    ipa --card qmi:<pty>?proxy=<socket> info|poll|download --indirect   (subprocess)
      -> ipa_host.card.qmi / mbim -> the proxy socket (default) or the node itself (proxy=0)
      -> ipa_host.sim.modem.modem_qmi / modem_mbim -> the home's VirtualEuicc
    eIM: ipa_host.sim.eim.eim.EimServer, SM-DP+: ipa_host.sim.smdpp.smdpp, over real TLS

The proxy path (what ModemManager users get by default) and the direct path both carry
`ipa info`; a PSMO cycle and an indirect download run over each protocol; each fault
personality ends in a clear error (or, for a busy UIM, in success after bounded retries),
in bounded time, and the modem is left without open channels.
"""

import os

import pytest

from ipa_host.sim.home import DEMO_PROFILES
from ipa_host.sim.modem.modem_mbim import SimMbimModem
from ipa_host.sim.modem.modem_qmi import SimQmiModem
from ipa_util import IPA, functions, relay_lab, run_service  # tests/integration/ipa_util.py
import cli_contract  # tests/host/cli_contract.py

PROFILE_A, PROFILE_B, TEST_PROFILE = (p["iccid"] for p in DEMO_PROFILES)
MODEMS = {"qmi": SimQmiModem, "mbim": SimMbimModem}
PROXY_OPENED = {"qmi": (0, 0xFF00), "mbim": (3, 1)}  # the proxy's own "open this device"


@pytest.fixture
def wdm_rig(ipa_home):
    """(home, card, make): make(protocol, personality="textbook") -> a started simulated
    QMI/MBIM modem holding the home's eUICC, with a proxy socket of its own."""
    from ipa_host.sim.home import open_home_euicc

    card = open_home_euicc(ipa_home.path)
    made = []

    def make(protocol, personality="textbook"):
        m = MODEMS[protocol](card, personality,
                             proxy="ipa-test-%s-%d-%d" % (protocol, os.getpid(), len(made))).start()
        made.append(m)
        return m

    yield ipa_home, card, make
    for m in made:
        m.stop()


def spec(protocol, modem, proxy=True):
    return "%s:%s?proxy=%s" % (protocol, modem.path, modem.proxy if proxy else "0")


def info(home, card_spec):
    r = home.ipa("--json", "info", url=False, card=card_spec)
    assert r.returncode == 0, r.stderr
    return cli_contract.result(r.stdout, "info")


@pytest.mark.parametrize("protocol", ["qmi", "mbim"])
@pytest.mark.parametrize("proxy", [True, False], ids=["proxy", "direct"])
def test_info_through_the_proxy_and_directly(wdm_rig, protocol, proxy):
    home, card, make = wdm_rig
    m = make(protocol)
    d = info(home, spec(protocol, m, proxy))
    assert d["eid"] == card.eid
    assert {p["iccid"] for p in d["profiles"]} >= {PROFILE_A, PROFILE_B}
    assert (PROXY_OPENED[protocol] in m.received) is proxy
    assert m.uicc.channels == set()  # the channel was closed at the end
    assert m.uicc.apdus >= 3 and m.uicc.get_responses == 0  # the modem followed 61xx


@pytest.mark.parametrize("protocol", ["qmi", "mbim"])
def test_poll_carries_out_a_psmo(wdm_rig, protocol):
    home, card, make = wdm_rig
    m = make(protocol)
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    r = home.ipa("--json", "poll", card=spec(protocol, m))
    assert r.returncode == 0, r.stderr
    out = cli_contract.result(r.stdout, "poll")
    assert out["result"]["operations"] == [["enableResult", 0, "ok"]], out
    epr = home.server.results(home.eid)[0]["euiccPackageResult"]
    assert epr["signatureValid"] is True
    assert [(x["name"], x["value"]) for x in epr["results"]] == [("enableResult", 0)]
    assert card.state.enabled_profile()["iccid"] == PROFILE_B
    assert m.uicc.channels == set()


@pytest.mark.parametrize("protocol,personality", [("qmi", "textbook"), ("mbim", "fragmented")])
def test_indirect_download(tmp_path, protocol, personality):
    """A 20 kB profile relayed by the eIM; MBIM answers come in 64-byte fragments."""
    import subprocess

    with relay_lab(tmp_path, [("MATCH-1", "89000123456789012341", "Relayed profile", 20000)]) \
            as (h, eid, dp, eim):
        from ipa_host.sim.home import open_home_euicc

        card = open_home_euicc(h)
        with MODEMS[protocol](card, personality, proxy="ipa-test-dl-%d" % os.getpid()) as m:
            r = subprocess.run([IPA, "--home", h, "--eim-url", eim.url, "--card", spec(protocol, m),
                                "download", "--indirect", "LPA:1$%s$MATCH-1" % dp.address],
                               capture_output=True, text=True, timeout=180)
            assert r.returncode == 0, r.stderr
            assert "installed      89000123456789012341  Relayed profile" in r.stdout
            assert functions(dp)[-1] == ("getBoundProfilePackage", "Executed-Success")
            assert m.uicc.channels == set()
            assert m.uicc.largest > 256  # AuthenticateServer's answer (certificates) in one piece
            if personality == "fragmented":
                assert m.fragmented_answers >= 3  # those answers really came in pieces
        assert "89000123456789012341" in [p["iccid"] for p in card.state.profiles]


FAULTS = [
    ("qmi", "slot_empty", "UIM uninitialized"),
    ("qmi", "channel_limit", "every logical channel of the card is in use"),
    ("qmi", "no_uim", "offers no QMI UIM service"),
    ("qmi", "gone", "closed the connection"),
    ("mbim", "slot_empty", "SIM not inserted"),
    ("mbim", "channel_limit", "every logical channel of the card is in use"),
    ("mbim", "no_uicc", "lacks Microsoft UICC low-level access"),
    ("mbim", "gone", "closed the connection"),
]


@pytest.mark.parametrize("protocol,personality,words", FAULTS)
def test_faults_end_in_clear_errors(wdm_rig, protocol, personality, words):
    home, card, make = wdm_rig
    m = make(protocol, personality)
    r = home.ipa("info", url=False, card=spec(protocol, m), timeout=60)
    assert r.returncode != 0
    assert words in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert r.elapsed < 30


def test_61xx_left_to_the_host(wdm_rig):
    """A modem that hands 61xx back: the IPA's GET RESPONSEs go through the modem's channel."""
    home, card, make = wdm_rig
    m = make("mbim", "raw_61")
    d = info(home, spec("mbim", m))
    assert d["eid"] == card.eid and len(d["profiles"]) == 3
    assert m.uicc.largest <= 258  # no answer came whole: each piece asked for
    assert m.uicc.get_responses >= 1


def test_qmi_slot_selection(wdm_rig):
    home, card, make = wdm_rig
    m = make("qmi")
    assert info(home, spec("qmi", m) + "&slot=1")["eid"] == card.eid
    r = home.ipa("info", url=False, card=spec("qmi", m) + "&slot=2")
    assert r.returncode != 0
    assert "UIM uninitialized" in r.stderr and "is a SIM/eUICC in slot 2?" in r.stderr, r.stderr
    r = home.ipa("info", url=False, card=spec("qmi", m) + "&slot=7")
    assert r.returncode != 0 and "slot='7', expected 1..5" in r.stderr, r.stderr


@pytest.mark.parametrize("protocol,personality", [("qmi", "uim_busy"), ("mbim", "uicc_busy")])
def test_busy_uicc_is_waited_for(wdm_rig, protocol, personality):
    home, card, make = wdm_rig
    m = make(protocol, personality)
    d = info(home, spec(protocol, m))
    assert d["eid"] == card.eid
    assert m.uicc.opens == 4  # three "busy" answers, then the channel


@pytest.mark.parametrize("protocol", ["qmi", "mbim"])
def test_no_proxy_and_no_device(wdm_rig, protocol):
    home, card, make = wdm_rig
    m = make(protocol)
    r = home.ipa("info", url=False, card="%s:%s?proxy=ipa-test-nobody-%d"
                 % (protocol, m.path, os.getpid()))
    assert r.returncode != 0 and "is not running" in r.stderr, r.stderr
    r = home.ipa("info", url=False, card="%s:/dev/cdc-wdm-nonexistent" % protocol)
    assert r.returncode != 0 and "does not exist" in r.stderr, r.stderr
    assert m.uicc.opens == 0


def test_the_cli_simulator_prints_the_card_to_use(ipa_home, tmp_path):
    """`ipa-sim modem --protocol qmi` as a user starts it, then `ipa info` on what it printed."""
    import signal
    import subprocess

    from ipa_host.sim.home import sim_dir

    pki = os.path.join(sim_dir(ipa_home.path), "pki")
    sim = subprocess.Popen([os.path.join(os.path.dirname(IPA), "ipa-sim"), "modem", "--protocol",
                            "qmi", "--pki", pki, "--state", str(tmp_path / "euicc.json")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = sim.stdout.readline().strip()
        assert line.startswith("qmi:/dev/pts/") and "?proxy=ipa-sim-qmi-" in line, line
        r = ipa_home.ipa("--json", "info", url=False, card=line)
        assert r.returncode == 0, r.stderr
        assert cli_contract.result(r.stdout, "info")["eid"]
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.communicate(timeout=10)
    assert sim.returncode == 0


@pytest.mark.parametrize("protocol", ["qmi", "mbim"])
def test_run_cycles_open_and_close_their_channel(wdm_rig, protocol):
    """`ipa run`: a PSMO in the first cycle, an idle second cycle on a fresh channel."""
    home, card, make = wdm_rig
    m = make(protocol)
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    out, err = run_service(
        home.command("--json", card=spec(protocol, m))[1:],
        [(lambda: home.server.results(home.eid) and len(home.server.requests) >= 3, None,
          "no second poll")], wait=30, stop_wait=20)
    cycles = [c["result"] for c in cli_contract.lines(out)]
    assert len(cycles) >= 2, out
    assert cycles[0]["result"]["operations"] == [["enableResult", 0, "ok"]]
    assert card.state.enabled_profile()["iccid"] == PROFILE_B
    assert m.uicc.opens == len(cycles)  # one channel per cycle ...
    assert m.uicc.channels == set()  # ... each closed again
