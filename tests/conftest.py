"""Shared pytest fixtures (CPython only; tests/core stays fixture-free for MicroPython)."""

import os
import sys

import pytest

# tests/host/pcscd.py is a plain helper module; make it importable from every test folder.
_HOST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "host")
if _HOST not in sys.path:
    sys.path.insert(0, _HOST)

import pcscd as _pcscd  # noqa: E402

# Every PC/SC client of this run (pyscard here, each `ipa` it starts) talks to the private
# pcscd of pcscd_server, never to the system's: libpcsclite reads this once, at its first call.
os.environ["PCSCLITE_CSOCK_NAME"] = _pcscd.socket_path(_pcscd.session_workdir())


@pytest.fixture(scope="session")
def pcscd_server():
    """A private pcscd with a vpcd reader (one per session, at PCSCLITE_CSOCK_NAME); the
    system's pcscd keeps running. Fails, never skips, when pcscd/vpcd/pyscard are missing."""
    server = _pcscd.Pcscd(debug=bool(os.environ.get("IPA_PCSCD_DEBUG")))
    problem = None
    try:
        server.start()
    except _pcscd.PcscdUnavailable as e:
        problem = str(e)
    if problem:  # outside the except: no chained traceback around the advice
        pytest.fail(problem, pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    """A test PKI folder (ipa_host.sim.pki.create_test_pki), one per test module."""
    from ipa_host.sim import pki

    d = str(tmp_path_factory.mktemp("pki"))
    pki.create_test_pki(d)
    return d
