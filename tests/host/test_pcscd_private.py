"""The test pcscd leaves the system's pcscd alone (issue 14): a lab user's pcscd on the
fixed socket keeps running and serving while a test pcscd starts, serves and stops.

The "system" pcscd is the one answering on the compiled-in socket when there is one,
else a stand-in started here on that very socket (its USB drivers hidden, so it never
claims a real reader). Clients run as subprocesses: libpcsclite reads
PCSCLITE_CSOCK_NAME once per process.
"""

import json
import os
import subprocess
import sys
import time

import pytest

import pcscd

HOST = os.path.dirname(os.path.abspath(__file__))

# Lists the readers of the pcscd at PCSCLITE_CSOCK_NAME: {"ok": bool, "readers"|"error": ...}.
LIST_READERS = """
import json
from smartcard import scard as s
hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
if hr != s.SCARD_S_SUCCESS:
    print(json.dumps({"ok": False, "error": s.SCardGetErrorMessage(hr)}))
else:
    hr, names = s.SCardListReaders(ctx, [])
    s.SCardReleaseContext(ctx)
    print(json.dumps({"ok": True, "readers": names if hr == s.SCARD_S_SUCCESS else []}))
"""

# Starts a test pcscd in folder argv[1] (as tests/conftest.py does), prints its readers, stops.
PRIVATE_RUN = """
import json, os, sys
sys.path.insert(0, %r)
import pcscd
import pytest
server = pcscd.Pcscd(workdir=sys.argv[1])
os.environ["PCSCLITE_CSOCK_NAME"] = server.socket
server.start()
from smartcard import scard as s
hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
hr, names = s.SCardListReaders(ctx, [])
s.SCardReleaseContext(ctx)
print(json.dumps({"socket": server.socket, "readers": names}))
server.stop()
""" % HOST


def readers_at(sock):
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=sock)
    r = subprocess.run([sys.executable, "-c", LIST_READERS], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def start_stand_in(system_sock, conf_dir):
    """A pcscd on the system socket, USB drivers hidden; returns its Popen once it answers."""
    exe = pcscd.find_pcscd()
    drop = pcscd.pcscd_dirs(exe)["usbdropdir"]
    os.mkdir(conf_dir)
    sh = 'if [ -d "$1" ]; then mount -t tmpfs stand-in "$1"; fi; shift; exec "$@"'
    proc = subprocess.Popen(pcscd.as_root() + [pcscd.find_unshare(), "--mount", "--propagation",
                                               "private", "sh", "-c", sh, "stand-in", drop, exe,
                                               "--foreground", "--config", conf_dir],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + pcscd.START_TIMEOUT
    while not readers_at(system_sock)["ok"] or not os.path.exists(system_sock):
        assert proc.poll() is None, "stand-in pcscd exited with %s" % proc.returncode
        assert time.monotonic() < deadline, "stand-in pcscd did not answer on " + system_sock
        time.sleep(0.2)
    return proc


def test_a_test_pcscd_leaves_the_system_pcscd_running(tmp_path):
    exe = pcscd.find_pcscd()
    system_sock = os.path.join(pcscd.pcscd_dirs(exe)["ipcdir"], "pcscd.comm")
    stand_in = None
    if not readers_at(system_sock)["ok"]:
        stand_in = start_stand_in(system_sock, str(tmp_path / "stand-in.conf.d"))
    try:
        before = readers_at(system_sock)
        workdir = str(tmp_path / "test-pcscd")
        r = subprocess.run([sys.executable, "-c", PRIVATE_RUN, workdir], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        private = json.loads(r.stdout)
        # Ours served our reader on a socket of its own...
        assert private["socket"] == pcscd.socket_path(workdir) != system_sock
        assert pcscd.READER_NAME + " 00 00" in private["readers"]
        # ...and is gone with its folder, while the system's still answers, unchanged.
        assert not os.path.exists(workdir)
        after = readers_at(system_sock)
        assert after["ok"], after
        assert pcscd.READER_NAME + " 00 00" not in after["readers"]
        if stand_in is not None:  # a real one's readers may come and go meanwhile
            assert stand_in.poll() is None, "the stand-in system pcscd died"
            assert after == before
    finally:
        if stand_in is not None:
            stand_in.terminate()
            stand_in.wait(pcscd.STOP_TIMEOUT)


def test_start_refuses_when_clients_would_reach_another_pcscd(tmp_path, monkeypatch):
    """Without PCSCLITE_CSOCK_NAME on our socket, pyscard would talk to the system's pcscd."""
    monkeypatch.setenv("PCSCLITE_CSOCK_NAME", "/run/pcscd/pcscd.comm")
    server = pcscd.Pcscd(workdir=str(tmp_path / "p"))
    with pytest.raises(pcscd.PcscdUnavailable) as e:
        server.start()
    assert "PCSCLITE_CSOCK_NAME must be " + server.socket in str(e.value)
    assert not os.path.exists(server.workdir)  # refused before making anything


def test_start_refuses_a_folder_left_by_a_killed_run(tmp_path, monkeypatch):
    workdir = tmp_path / "p"
    workdir.mkdir()
    (workdir / "pcscd.log").write_text("left")
    server = pcscd.Pcscd(workdir=str(workdir))
    monkeypatch.setenv("PCSCLITE_CSOCK_NAME", server.socket)
    with pytest.raises(pcscd.PcscdUnavailable) as e:
        server.start()
    assert str(workdir) + " exists" in str(e.value)
    assert (workdir / "pcscd.log").read_text() == "left"  # not touched
