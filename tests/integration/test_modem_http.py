"""ESipa through the modem's own HTTP(S) stack, end to end, as a user runs it:

    ipa --card at:<pty> --network modem --ca-file <eIM CA> poll      (subprocess)
      APDUs and HTTP commands on ONE AT port:
      -> pyserial -> pty -> ipa_host.sim.modem.modem.SimModem (quectel_http | sim7080 | a7670)
           AT+CCHO/CGLA -> the home's VirtualEuicc
           AT+QHTTP* | AT+SH* | AT+HTTP* -> real TLS (the CA uploaded through AT) ->
           ipa_host.sim.eim.eim.EimServer on 127.0.0.1

The eIM's TLS CA and server certificate are made by the test home (eim_tls.ensure_tls);
a second, unrelated CA stands for the wrong one. For each stack a queued PSMO (enable)
runs: GetEimPackage -> EnableProfile -> ProvideEimPackageResult with the notifications;
the eIM checks the eUICC's signature, and `ipa info` shows the new state. A wrong CA
fails with an error that names TLS through the modem, an HTTP stack error code comes
out with its code and meaning, and usage errors are refused before anything is sent.
"""


import pytest

from ipa_host.sim.eim.eim_tls import ensure_tls
from ipa_host.sim.home import DEMO_PROFILES
from ipa_util import at_info, profile_states  # tests/integration/ipa_util.py
import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked

PROFILE_A, PROFILE_B, TEST_PROFILE = (p["iccid"] for p in DEMO_PROFILES)
TIMEOUT = 10  # [eim] timeout for these tests: seconds per wait of the modem's HTTP stack
# What each stack's requests look like on the AT port (proof the modem carried them).
REQUEST_COMMAND = {"quectel_http": "AT+QHTTPPOST=", "sim7080": 'AT+SHREQ="',
                   "a7670": "AT+HTTPACTION=1", "a7670_slow_read": "AT+HTTPACTION=1"}


@pytest.fixture
def rig(modem_rig):
    """(home, card, make_modem) of conftest's modem_rig, [eim] timeout for the modem's
    HTTP stack."""
    home = modem_rig[0]
    with open(home.config, "w") as f:
        f.write("[eim]\ntimeout = %d\n" % TIMEOUT)
    return modem_rig


@pytest.mark.parametrize("personality,network", [
    ("quectel_http", "modem"),            # the stack picked from "Quectel EG915U"
    ("sim7080", "modem:sim7080"),         # the stack named on the command line
    ("a7670", "config"),                  # [eim] network = "modem", ca_file in the config
    ("a7670_slow_read", "modem"),         # responses trickle in 100-byte +HTTPREAD blocks
])
def test_psmo_cycle_through_the_modems_http_stack(rig, personality, network):
    home, card, make = rig
    m = make(personality)
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    if network == "config":
        with open(home.config, "a") as f:
            f.write('network = "modem"\nca_file = "%s"\n' % home.tls["ca_cert"])
        args = ("poll",)
    else:
        args = ("--network", network, "--ca-file", home.tls["ca_cert"], "poll")
    r = home.ipa(*args, card="at:" + m.path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = r.stdout.splitlines()
    assert out[0].startswith("package        euiccPackageRequest (eimTransactionId "), r.stdout
    assert "  enableResult                 ok" in out, r.stdout
    assert any(line.startswith("reported       acknowledged ") for line in out), r.stdout
    assert r.elapsed < 20, r.elapsed

    # The eIM got the signed result (and the notifications) over the modem's TLS.
    results = home.server.results(home.eid)
    assert len(results) == 1
    epr = results[0]["euiccPackageResult"]
    assert epr["signatureValid"] is True and epr["eimIdMatches"]
    assert [(x["name"], x["value"]) for x in epr["results"]] == [("enableResult", 0)]
    assert results[0]["kind"] == "ePRAndNotifications"
    assert [q["function"] for q in home.server.requests] == ["getEimPackage",
                                                            "provideEimPackageResult"]
    assert all(q["status"] == 200 for q in home.server.requests)
    assert home.server.handshake_failures == type(home.server.handshake_failures)()

    # Every ESipa request went through the modem's stack on the card's AT port.
    stack = m.at.http
    assert stack.requests == len(home.server.requests) == 2
    sent = [line for line in m.received if line.startswith(REQUEST_COMMAND[personality])]
    assert len(sent) == 2, sent
    assert m.sessions == {} and m.open_channels == set()  # the card session was closed

    # The eUICC: profile B enabled, nothing left for the eIM (it acknowledged everything).
    info = at_info(home, m)
    assert profile_states(info) == {PROFILE_A: "disabled", PROFILE_B: "enabled", TEST_PROFILE: "disabled"}
    assert info["notifications"] == []
    assert card.state.enabled_profile()["iccid"] == PROFILE_B


def test_ipa_run_uploads_the_ca_once_and_keeps_polling(rig):
    home, card, make = rig
    m = make("quectel_http")
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    r = home.ipa("--json", "--network", "modem", "--ca-file", home.tls["ca_cert"], "run",
                 "--cycles", "2", card="at:" + m.path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    cycles = [c["result"] for c in cli_contract.lines(r.stdout)]
    assert len(cycles) == 2, r.stdout
    assert cycles[0]["result"]["operations"] == [["enableResult", 0, "ok"]]
    assert cycles[1]["idle"] and cycles[1]["error"] is None
    assert "stopped after 2 cycle(s)" in r.stderr
    # One upload into the modem's flash for the whole run, not one per poll cycle.
    uploads = [line for line in m.received if line.startswith("AT+QFUPL=")]
    assert len(uploads) == 1, uploads
    seclevels = [line for line in m.received if line.startswith('AT+QSSLCFG="seclevel"')]
    assert len(seclevels) >= 2 and all(line.endswith(",1") for line in seclevels), seclevels
    assert [q["function"] for q in home.server.requests] == [
        "getEimPackage", "provideEimPackageResult", "getEimPackage"]
    assert m.at.http.requests == 3


@pytest.mark.parametrize("personality", ["quectel_http", "sim7080", "a7670"])
def test_a_wrong_ca_fails_naming_tls_through_the_modem(rig, tmp_path, personality):
    home, card, make = rig
    m = make(personality)
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    wrong = ensure_tls(str(tmp_path / "other-ca"))["ca_cert"]  # did not issue the eIM's cert
    r = home.ipa("--network", "modem", "--ca-file", wrong, "poll", card="at:" + m.path)
    assert r.returncode == 1, (r.stdout, r.stderr)  # a poll cycle that failed
    (line,) = [ln for ln in r.stdout.splitlines() if ln.startswith("error          ")]
    assert "TLS" in line, line
    assert personality != "quectel_http" or "error 716" in line, line
    assert personality != "a7670" or "error 715 (TLS handshake failed)" in line, line
    assert personality != "sim7080" or "AT+SHCONN" in line, line
    if personality != "a7670":  # where the stack's code does not say TLS, the CA file is named
        assert wrong in line, line
    # The modem refused the eIM's certificate: a handshake the eIM saw fail, no request.
    assert home.server.requests == []
    assert len(home.server.handshake_failures) >= 1
    assert home.server.queue(home.eid), "the package must still wait at the eIM"
    assert profile_states(at_info(home, m))[PROFILE_A] == "enabled"  # nothing changed on the eUICC
    assert r.elapsed < 20, r.elapsed


@pytest.mark.parametrize("personality,options,expected", [
    ("quectel_http_error", {}, "Quectel HTTP stack error 702 (HTTP(S) timeout)"),
    ("a7670", {"http_error": 706}, "SIMCom HTTP stack error 706"),
])
def test_an_http_stack_error_code_is_surfaced(rig, personality, options, expected):
    home, card, make = rig
    m = make(personality, **options)
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    r = home.ipa("--network", "modem", "--ca-file", home.tls["ca_cert"], "poll",
                 card="at:" + m.path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    (line,) = [ln for ln in r.stdout.splitlines() if ln.startswith("error          ")]
    assert expected in line, line
    assert home.server.requests == []  # the stack failed before the eIM saw anything
    assert profile_states(at_info(home, m))[PROFILE_A] == "enabled"
    # The same modem, once its stack works again, carries the cycle (nothing was lost).
    m.at.cfg["http_error"] = None
    r = home.ipa("--network", "modem", "--ca-file", home.tls["ca_cert"], "poll",
                 card="at:" + m.path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "  enableResult                 ok" in r.stdout.splitlines()


def test_usage_errors_are_refused_before_anything_is_sent(rig, tmp_path):
    home, card, make = rig
    m = make("quectel_http")
    # https through the modem without the eIM's CA: a usage error naming --ca-file
    r = home.ipa("--network", "modem", "poll", card="at:" + m.path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "needs --ca-file PEM" in r.stderr and r.stdout == ""
    # a CA file that is not a PEM certificate
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a certificate\n")
    r = home.ipa("--network", "modem", "--ca-file", str(junk), "poll", card="at:" + m.path)
    assert r.returncode == 2 and "expected a PEM certificate" in r.stderr, r.stderr
    # the modem's stack needs the card on the modem's AT port
    r = home.ipa("--network", "modem", "--ca-file", home.tls["ca_cert"], "poll")
    assert r.returncode == 2 and "needs the card on the modem's AT port" in r.stderr, r.stderr
    # an unknown stack name
    r = home.ipa("--network", "modem:nokia", "poll", card="at:" + m.path)
    assert r.returncode == 2 and "modem:quectel" in r.stderr, r.stderr
    # a modem whose identity names no stack, unless the stack is named
    t = make("textbook")
    r = home.ipa("--network", "modem", "--ca-file", home.tls["ca_cert"], "poll",
                 card="at:" + t.path)
    assert r.returncode == 2 and "cannot tell the HTTP stack" in r.stderr, r.stderr
    # a bad [eim] network in the configuration names the file, the key and the choices
    with open(home.config, "a") as f:
        f.write('network = "satellite"\n')
    r = home.ipa("poll", card="at:" + m.path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "[eim] network = 'satellite': expected one of socket, modem" in r.stderr, r.stderr
    assert home.config in r.stderr
    assert home.server.requests == [] and m.at.http.requests == 0
    assert not any("QHTTP" in line for line in m.received)
