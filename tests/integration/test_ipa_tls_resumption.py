"""`ipa run` over HTTPS resumes its TLS session from one poll to the next (ipa_host.net.https
"Resumption"): the simulated eIM counts full and resumed handshakes on its ESipa listener,
and a second `ipa` process (sessions are kept in memory only) starts with a full handshake.

Real parts: the `ipa` CLI as a subprocess, the simulated eIM over TLS on loopback."""

import pytest

from ipa_host.sim.eim.eim import EimServer
from ipa_host.sim.home import eim_dir, open_home_euicc
from ipa_util import eim_polls, run_service, service_config  # tests/integration/ipa_util.py


@pytest.fixture
def lab(tmp_path):
    h = str(tmp_path / "home")
    open_home_euicc(h)
    eim = EimServer(eim_dir(h), association_token=1).start()
    try:
        yield h, service_config(tmp_path), eim
    finally:
        eim.stop()


def run_polls(h, config, eim, polls):
    """`ipa run` until the eIM has seen `polls` more polls."""
    seen = eim_polls(eim)
    run_service(["--config", config, "--home", h, "--eim-url", eim.url],
                [(lambda: eim_polls(eim) - seen >= polls, None)])


def test_second_poll_resumes_the_tls_session(lab):
    h, config, eim = lab
    run_polls(h, config, eim, 3)
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
