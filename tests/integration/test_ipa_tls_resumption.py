"""`ipa run` over HTTPS resumes its TLS session from one poll to the next (ipa_host.net.https
"Resumption"): the simulated eIM counts full and resumed handshakes on its ESipa listener,
and a second `ipa` process (sessions are kept in memory only) starts with a full handshake.

Real parts: the `ipa` CLI as a subprocess, the simulated eIM over TLS on loopback."""

import subprocess
import time

import pytest

from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.home import eim_dir, open_home_euicc
from ipa_util import IPA  # tests/integration/ipa_util.py

WAIT = 20  # seconds: bound on the wait for the polls


@pytest.fixture
def lab(tmp_path):
    h = str(tmp_path / "home")
    open_home_euicc(h)
    config = str(tmp_path / "ipa.toml")
    with open(config, "w") as f:
        f.write("[ipa]\npoll_interval = 1\nmax_interval = 1\n[eim]\ntimeout = 2\n")
    eim = EimServer(eim_dir(h), association_token=1).start()
    try:
        yield h, config, eim
    finally:
        eim.stop()


def run_polls(h, config, eim, polls):
    """`ipa run` until the eIM has seen `polls` more getEimPackage requests; its stderr."""
    seen = len(eim.requests)
    proc = subprocess.Popen([IPA, "--config", config, "--home", h, "--eim-url", eim.url, "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WAIT
        while len(eim.requests) - seen < polls:
            assert time.monotonic() < deadline, "no %d polls within %d s" % (polls, WAIT)
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return err


def test_second_poll_resumes_the_tls_session(lab):
    h, config, eim = lab
    run_polls(h, config, eim, 3)
    polls = [q for q in eim.requests if q["function"] == "getEimPackage"]
    assert len(polls) >= 3
    hs = eim.tls_handshakes
    # the first poll pays the full handshake; every later one offers the kept ticket
    assert hs["full"] == 1 and hs["resumed"] >= 2, hs

    # a new process: the sessions lived in the first one's memory only
    run_polls(h, config, eim, 1)
    assert eim.tls_handshakes["full"] == 2, eim.tls_handshakes


def test_no_resumption_without_tickets(lab):
    """A server that issues no tickets (tls_tickets = 0): every poll a full handshake, and
    the polls still work."""
    h, config, eim = lab
    eim.stop()
    eim.tls_tickets = 0
    eim.start()
    run_polls(h, config, eim, 2)
    hs = eim.tls_handshakes
    assert hs["resumed"] == 0 and hs["full"] >= 2, hs
