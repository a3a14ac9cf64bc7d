"""A private pcscd with a vpcd virtual reader, for tests that use the real PC/SC stack.

pcsc-lite 1.9.9 (Debian): `pcscd -f -c <dir>` runs in the foreground and reads
reader configurations from `<dir>` instead of /etc/reader.conf.d. Our config
puts vpcd on a free high port (`DEVICENAME /dev/null:0x<port>`; slot 1 takes
port+1). The "reversed" vpcd form (`DEVICENAME 127.0.0.1:<port>`) crashed
pcscd here, so the card side always connects to vpcd.

The client socket is fixed at /run/pcscd/pcscd.comm, so only one pcscd can
run: `Pcscd.start()` refuses (with the command to stop it) when another one
answers there. A missing pcscd, vpcd driver or pyscard is a failure that
says what to install, never a silent skip.
"""

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time

SOCKET = "/run/pcscd/pcscd.comm"
PIDFILE = "/run/pcscd/pcscd.pid"
INSTALL = "apt-get install pcscd vsmartcard-vpcd libpcsclite-dev swig && pip install pyscard"
VPCD_DRIVERS = (
    "/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/lib64/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so",
)
READER_NAME = "IPA Test VPCD"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
OTHER_TEST_WAIT = 300.0  # another checkout's test pcscd, seconds


class PcscdUnavailable(RuntimeError):
    """pcscd cannot be used for the tests; the message says why and what to do."""


def find_pcscd():
    for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/sbin"]:
        p = os.path.join(d, "pcscd")
        if d and os.access(p, os.X_OK):
            return p
    raise PcscdUnavailable("pcscd not found (PATH, /usr/sbin): install it: " + INSTALL)


def find_vpcd_driver():
    for p in VPCD_DRIVERS:
        if os.path.exists(p):
            return p
    raise PcscdUnavailable(
        "vpcd reader driver not found in %s: install it: %s" % (", ".join(VPCD_DRIVERS), INSTALL)
    )


def running_pcscd():
    """A description of a pcscd answering on the client socket, or None.

    A socket file nobody listens on is stale (pcscd killed hard); pcscd
    itself replaces it, so it does not count.
    """
    if not os.path.exists(SOCKET):
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(SOCKET)
    except OSError:
        return None
    finally:
        s.close()
    pid = "?"
    try:
        with open(PIDFILE) as f:
            pid = f.read().strip("\0 \n") or "?"  # pcscd writes "<pid>\n\0"
    except OSError:
        pass  # systemd socket activation: no pid file until pcscd starts
    return "pid %s on %s" % (pid, SOCKET)


def _pcscd_cmdline():
    try:
        with open(PIDFILE) as f:
            pid = int(f.read().strip("\0 \n"))
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return ""


def wait_for_other_test_pcscd(timeout=OTHER_TEST_WAIT):
    """Another test run's private pcscd (tests in parallel checkouts) ends by itself:
    wait for it, bounded. Returns running_pcscd() afterwards."""
    deadline = time.monotonic() + timeout
    other = running_pcscd()
    while other and "ipa-pcscd-" in _pcscd_cmdline() and time.monotonic() < deadline:
        time.sleep(0.5)
        other = running_pcscd()
    return other


def as_root():
    """[] as root; ["sudo", "-n"] for a user with password-less sudo (pcscd needs
    /run/pcscd); otherwise a PcscdUnavailable saying how to run the tests."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True,
                                               timeout=30).returncode == 0:
        return ["sudo", "-n"]
    raise PcscdUnavailable("pcscd must run as root (it owns /run/pcscd): run the tests as root "
                           "or as a user with password-less sudo (`sudo -v` first)")


def systemd_pcscd_active():
    """True when systemd manages pcscd (socket activation) and can stop/start it."""
    if not shutil.which("systemctl"):
        return False
    r = subprocess.run(["systemctl", "is-active", "pcscd.socket", "pcscd.service"],
                       capture_output=True, text=True, timeout=30)
    return "active" in r.stdout.split()


def free_port_pair(lo=40000, hi=60000, tries=200):
    """A port p with p and p+1 free on all interfaces (vpcd binds 0.0.0.0, slot 1 at p+1)."""
    rnd = random.Random()
    for _ in range(tries):
        p = rnd.randrange(lo, hi)
        socks = []
        try:
            for q in (p, p + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("0.0.0.0", q))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise PcscdUnavailable("no free TCP port pair in %d..%d after %d tries" % (lo, hi, tries))


class Pcscd:
    """One private pcscd with a vpcd reader named READER_NAME on `port`."""

    def __init__(self, port=None, workdir=None, debug=False):
        self.port = port
        self.workdir = workdir
        self.debug = debug
        self.proc = None
        self._own_dir = False
        self._restart_systemd = False

    @property
    def reader(self):
        """pcscd's name for slot 0 of our vpcd reader."""
        return READER_NAME + " 00 00"

    def log_text(self, limit=4000):
        try:
            with open(os.path.join(self.workdir, "pcscd.log"), errors="replace") as f:
                return f.read()[-limit:]
        except (OSError, TypeError):
            return ""

    def start(self, timeout=START_TIMEOUT):
        exe = find_pcscd()
        driver = find_vpcd_driver()
        try:
            import smartcard.scard  # noqa: F401  (the wait below needs it)
        except ImportError:
            raise PcscdUnavailable("pyscard is not installed: " + INSTALL)
        other = wait_for_other_test_pcscd()
        if other and systemd_pcscd_active():
            # Debian enables socket activation when pcscd is installed: park the
            # system service for this test session and bring it back in stop().
            subprocess.run(as_root() + ["systemctl", "stop", "pcscd.socket", "pcscd.service"],
                           capture_output=True, timeout=30)
            self._restart_systemd = True
            other = running_pcscd()
        if other:
            raise PcscdUnavailable(
                "a pcscd is already running (%s); these tests need their own with a private "
                "vpcd reader. Stop it first: `systemctl stop pcscd.socket pcscd.service` "
                "(or kill that pid), then run the tests again." % other
            )
        if self.port is None:
            self.port = free_port_pair()
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="ipa-pcscd-")
            self._own_dir = True
        conf = os.path.join(self.workdir, "reader.conf.d")
        os.makedirs(conf, exist_ok=True)
        with open(os.path.join(conf, "vpcd"), "w") as f:
            f.write(
                'FRIENDLYNAME "%s"\nDEVICENAME   /dev/null:0x%04X\nLIBPATH      %s\n'
                "CHANNELID    0x%04X\n" % (READER_NAME, self.port, driver, self.port)
            )
        cmd = as_root() + [exe, "--foreground", "--config", conf]
        if self.debug:
            cmd += ["--debug", "--apdu"]
        logf = open(os.path.join(self.workdir, "pcscd.log"), "wb")
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT
            )
        except OSError as e:
            raise PcscdUnavailable("cannot run %s: %s" % (exe, e))
        finally:
            logf.close()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout):
        """Until pcscd answers and lists our reader (it adds readers before it listens,
        but checking the list makes the wait independent of that order)."""
        from smartcard import scard as s

        deadline = time.monotonic() + timeout
        last = "no answer on %s" % SOCKET
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PcscdUnavailable(
                    "pcscd exited with code %s at start (needs root for /run/pcscd?); "
                    "its log:\n%s" % (self.proc.returncode, self.log_text())
                )
            if os.path.exists(SOCKET):
                hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
                if hr == s.SCARD_S_SUCCESS:
                    hr, names = s.SCardListReaders(ctx, [])
                    s.SCardReleaseContext(ctx)
                    if hr == s.SCARD_S_SUCCESS and self.reader in names:
                        return
                    last = "readers: %r" % (names if hr == s.SCARD_S_SUCCESS else [],)
                else:
                    last = s.SCardGetErrorMessage(hr)
            time.sleep(0.05)
        raise PcscdUnavailable(
            "pcscd did not offer reader %r within %.0f s (%s); its log:\n%s"
            % (self.reader, timeout, last, self.log_text())
        )

    def wait_card(self, present=True, timeout=5.0, reader=None):
        """Until pcscd reports a card in (or gone from) `reader`; pcscd polls vpcd,
        so a (re)connected bridge shows up a few hundred ms later."""
        from smartcard import scard as s

        reader = reader or self.reader
        hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
        if hr != s.SCARD_S_SUCCESS:
            raise PcscdUnavailable("pcscd not reachable: " + s.SCardGetErrorMessage(hr))
        try:
            state = s.SCARD_STATE_UNAWARE
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                hr, out = s.SCardGetStatusChange(ctx, max(0, int(left * 1000)), [(reader, state)])
                if hr == s.SCARD_S_SUCCESS:
                    state = out[0][1] & ~s.SCARD_STATE_CHANGED
                    if bool(state & s.SCARD_STATE_PRESENT) == present:
                        return
                elif hr != s.SCARD_E_TIMEOUT:
                    raise PcscdUnavailable(
                        "reading %r failed: %s" % (reader, s.SCardGetErrorMessage(hr))
                    )
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        "card %s %r within %.1f s" % ("not in" if present else "still in", reader, timeout)
                    )
        finally:
            s.SCardReleaseContext(ctx)

    def stop(self, timeout=STOP_TIMEOUT):
        """Terminate our pcscd (SIGTERM, then SIGKILL); clean its files if it was killed."""
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout)
                for f in (SOCKET, PIDFILE):  # SIGKILL leaves them; they were ours
                    try:
                        os.unlink(f)
                    except OSError:
                        pass
        if self._own_dir and self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self._own_dir = False
        if self._restart_systemd:
            self._restart_systemd = False
            subprocess.run(as_root() + ["systemctl", "start", "pcscd.socket"], capture_output=True,
                           timeout=30)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
