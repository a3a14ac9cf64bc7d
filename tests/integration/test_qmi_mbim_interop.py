"""The simulated QMI and MBIM modems checked by code nobody here wrote: libqmi's `qmicli`
and libmbim's `mbimcli` (Debian libqmi-utils, libmbim-utils; tools/setup.sh installs them).

They reach the simulated control node (a pty: `qmicli` needs --device-open-qmi there, as it
cannot tell a pty's driver) directly, and through the simulated proxy, which must then
take the names libqmi/libmbim connect to ("qmi-proxy", "mbim-proxy": abstract sockets,
one per machine, so those tests hold a lock and fail if a real proxy runs here).

And the other way round: the real qmi-proxy and mbim-proxy (/usr/libexec) between the
`ipa` command (its default card spec: through the proxy) and the simulated modem, so the
IPA's side of the proxy protocol is checked by the maintained proxies themselves.
"""

import contextlib
import fcntl
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from ipa_host.sim.modem.modem_mbim import SimMbimModem
from ipa_host.sim.modem.modem_qmi import SimQmiModem
import cli_contract  # tests/host/cli_contract.py

ISDR = "A0000005591010FFFFFFFF8900000100"
GET_EID = "80E2910006BF3E035C015A"


def tool(name):
    path = shutil.which(name)
    assert path, "%s is missing: make setup installs libqmi-utils and libmbim-utils" % name
    return path


def run(*cmd):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


# Not root: the maintained proxies serve only root, so they and their clients run through
# sudo (passwordless, as `make test` needs for the private pcscd anyway).
AS_ROOT = [] if os.geteuid() == 0 else ["sudo", "-n"]


@contextlib.contextmanager
def machine_proxy_lock():
    """The proxies' socket names are machine-wide: one test at a time, whoever runs it (a
    lock file another user created is opened read-only; flock needs no write access)."""
    fd = os.open("/tmp/ipa-qmi-mbim-proxy.lock", os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        try:
            os.fchmod(fd, 0o666)
        except OSError:
            pass  # another user's file
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.fixture
def card(ipa_home):
    from ipa_host.sim.home import open_home_euicc

    return open_home_euicc(ipa_home.path)


def qmicli_card_status(modem, proxy):
    return run(tool("qmicli"), *(["-p"] if proxy else []), "--device-open-qmi", "-d", modem.path,
               "--uim-get-card-status")


@pytest.mark.parametrize("personality,state", [("textbook", "present"), ("slot_empty", "absent")])
def test_qmicli_reads_the_card_status(card, personality, state):
    with SimQmiModem(card, personality) as m:
        rc, out = qmicli_card_status(m, False)
    assert rc == 0, out
    assert "Card state: '%s'" % state in out, out
    # libqmi allocated a UIM client id, asked, and gave the id back
    assert m.received[-3:] == [(0, 0x0022), (11, 0x002F), (0, 0x0023)], m.received
    assert m.clients == {}


def test_qmicli_through_the_simulated_qmi_proxy(card):
    with machine_proxy_lock(), SimQmiModem(card, proxy="qmi-proxy") as m:
        rc, out = qmicli_card_status(m, True)
    assert rc == 0, out
    assert "Card state: 'present'" in out
    assert (0, 0xFF00) in m.received  # libqmi's own proxy open came first


def mbimcli(modem, proxy, *args):
    return run(tool("mbimcli"), *(["-p"] if proxy else []), "-d", modem.path, *args)


@pytest.mark.parametrize("personality", ["textbook", "fragmented"])
def test_mbimcli_opens_a_channel_sends_an_apdu_and_closes_it(card, personality):
    """libmbim reassembles the simulated modem's fragments (64-byte ones when fragmented)."""
    with SimMbimModem(card, personality) as m:
        rc, out = mbimcli(m, False, "--ms-query-uicc-atr")
        assert rc == 0, out
        assert card.atr.hex(":").upper() in out, out
        rc, out = mbimcli(m, False, "--ms-set-uicc-open-channel=application-id=%s" % ISDR)
        assert rc == 0, out
        assert "status: 36864" in out  # 9000
        ch = int(re.search(r"channel: (\d+)", out).group(1))
        assert m.uicc.channels == {ch}  # kept by the modem between mbimcli runs, as hardware does
        rc, out = mbimcli(m, False, "--ms-set-uicc-apdu=channel=%d,secure-message=none,"
                                    "classbyte-type=inter-industry,command=%s" % (ch, GET_EID))
        assert rc == 0, out
        assert "status: 36864" in out
        assert card.eid in out.replace(":", ""), out
        rc, out = mbimcli(m, False, "--ms-set-uicc-close-channel=channel=%d" % ch)
        assert rc == 0, out
        assert m.uicc.channels == set()


def test_mbimcli_through_the_simulated_mbim_proxy(card):
    with machine_proxy_lock(), SimMbimModem(card, proxy="mbim-proxy") as m:
        rc, out = mbimcli(m, True, "--ms-query-uicc-atr")
    assert rc == 0, out
    assert card.atr.hex(":").upper() in out
    assert (3, 1) in m.received  # libmbim's proxy configuration came first


@contextlib.contextmanager
def real_proxy(name):
    """libqmi's qmi-proxy / libmbim's mbim-proxy (Debian: /usr/libexec), as ModemManager
    starts it, listening on its abstract socket; stopped at the end."""
    binary = "/usr/libexec/" + name
    assert os.path.exists(binary), "%s is missing: make setup installs libqmi-utils and " \
                                   "libmbim-utils" % binary
    with machine_proxy_lock():
        proc = subprocess.Popen(AS_ROOT + [binary, "--verbose"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 10
            while True:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect("\0" + name)
                    break
                except OSError:
                    assert time.monotonic() < deadline, "%s did not listen within 10 s" % name
                    time.sleep(0.05)
                finally:
                    s.close()
            yield proc
        finally:
            proc.terminate()
            proc.communicate(timeout=10)


@pytest.mark.parametrize("protocol", ["qmi", "mbim"])
def test_ipa_through_the_real_proxy(ipa_home, card, protocol):
    """The default card spec (qmi:<node>, mbim:<node>: through qmi-proxy/mbim-proxy) with
    the maintained proxies between the IPA and the simulated modem, as under ModemManager."""
    modem = {"qmi": SimQmiModem, "mbim": SimMbimModem}[protocol]
    with real_proxy(protocol + "-proxy"), modem(card, "fragmented" if protocol == "mbim"
                                                 else "textbook") as m:
        if AS_ROOT:  # the proxy drops a non-root client: the IPA runs as root here
            r = subprocess.run(AS_ROOT + ipa_home.command(
                "--json", "info", url=False, card="%s:%s" % (protocol, m.path)),
                capture_output=True, text=True, timeout=60)
        else:
            r = ipa_home.ipa("--json", "info", url=False, card="%s:%s" % (protocol, m.path))
        assert r.returncode == 0, r.stderr
        assert cli_contract.result(r.stdout, "info")["eid"] == card.eid
        assert m.uicc.channels == set() and m.uicc.apdus >= 3


@pytest.mark.parametrize("protocol", ["qmi", "mbim"])
def test_real_proxy_refuses_a_user_and_the_ipa_says_why(card, protocol):
    """libqmi's and libmbim's proxies drop clients that are not root: the IPA's card, run as
    `nobody` (runuser) from a copy of the code that user can read, names the cause."""
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    copy = tempfile.mkdtemp(prefix="ipa-nobody-")
    try:
        shutil.copytree(os.path.join(root, "ipa_core"), os.path.join(copy, "ipa_core"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(os.path.join(root, "ipa_host", "card"),
                        os.path.join(copy, "ipa_host", "card"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        open(os.path.join(copy, "ipa_host", "__init__.py"), "w").close()
        for d, _dirs, files in os.walk(copy):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        modem = {"qmi": SimQmiModem, "mbim": SimMbimModem}[protocol]
        with real_proxy(protocol + "-proxy"), modem(card) as m:
            code = ("import sys; sys.dont_write_bytecode = True; sys.path.insert(0, %r)\n"
                    "from ipa_host.card.select import open_card\n"
                    "from ipa_core.errors import TransportError\n"
                    "try:\n    open_card(%r)\nexcept TransportError as e:\n"
                    "    print(e); sys.exit(3)\n" % (copy, "%s:%s" % (protocol, m.path)))
            r = subprocess.run(AS_ROOT + ["runuser", "-u", "nobody", "--", "/usr/bin/python3",
                                          "-c", code],
                               capture_output=True, text=True, timeout=60)
            assert m.uicc.opens == 0
    finally:
        shutil.rmtree(copy)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "closed the connection at once: it serves only root" in r.stdout, r.stdout
