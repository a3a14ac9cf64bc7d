"""A private pcscd with a vpcd virtual reader, for tests that use the real PC/SC stack.

pcsc-lite 1.9.9 (Debian): `pcscd -f -c <dir>` runs in the foreground and reads
reader configurations from `<dir>` instead of /etc/reader.conf.d. Our config
puts vpcd on a free high port (`DEVICENAME /dev/null:0x<port>`; slot 1 takes
port+1). The "reversed" vpcd form (`DEVICENAME 127.0.0.1:<port>`) crashed
pcscd here, so the card side always connects to vpcd.

The system's pcscd (and a lab user's reader sessions) is left alone: pcscd's
own socket and pid file sit in its compiled-in ipcdir (/run/pcscd, `pcscd -v`),
so ours runs in a mount namespace of its own (`unshare --mount`, as root or
through `sudo -n`) where a folder of the test run is bound over that ipcdir.
Its socket is thus a file in that folder, which clients reach through
libpcsclite's PCSCLITE_CSOCK_NAME (tests/conftest.py sets it for the test
process and every `ipa` it starts, before pyscard first connects: the library
reads it once). The namespace also hides the USB driver folder (usbdropdir),
so our pcscd never claims a real reader; vpcd's driver is bound in first.
Test runs in parallel checkouts each have their own pcscd and port.

A missing pcscd, vpcd driver, unshare or pyscard is a failure that says what
to install, never a silent skip.
"""

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time

INSTALL = "apt-get install pcscd vsmartcard-vpcd libpcsclite-dev swig && pip install pyscard"
VPCD_DRIVERS = (
    "/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/lib64/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so",
)
READER_NAME = "IPA Test VPCD"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
SUN_PATH_MAX = 107  # sockaddr_un.sun_path less its NUL
# pcscd -v: "... usbdropdir=/usr/lib/pcsc/drivers ipcdir=/run/pcscd ..."
DEFAULT_DIRS = {"ipcdir": "/run/pcscd", "usbdropdir": "/usr/lib/pcsc/drivers"}

# Run as root in the new mount namespace (private propagation: nothing leaks out).
# $1 run folder, $2 ipcdir, $3 usbdropdir, $4 vpcd driver, $5 its bind target; then pcscd.
NAMESPACE_SH = """set -e
run=$1 ipc=$2 drop=$3 drv=$4 drvbind=$5; shift 5
if [ ! -d "$ipc" ]; then
    mount -t tmpfs ipa-pcscd "$(dirname "$ipc")"; mkdir -p "$ipc"
fi
mount --bind "$run" "$ipc"
mount --bind "$drv" "$drvbind"
if [ -d "$drop" ]; then mount -t tmpfs ipa-pcscd "$drop"; fi
exec "$@"
"""


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


def find_unshare():
    for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/bin"]:
        p = os.path.join(d, "unshare")
        if d and os.access(p, os.X_OK):
            return p
    raise PcscdUnavailable("unshare not found (PATH, /usr/bin): install util-linux")


def pcscd_dirs(exe):
    """pcscd's compiled-in ipcdir and usbdropdir, from its `-v` feature line."""
    dirs = dict(DEFAULT_DIRS)
    try:
        out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return dirs
    for word in out.split():
        key, _, value = word.partition("=")
        if key in dirs and value.startswith("/"):
            dirs[key] = value
    return dirs


def session_workdir():
    """This process's pcscd folder (made by Pcscd.start, removed by stop): a fixed name, so the
    client socket path is known before the first pyscard call."""
    return os.path.join(tempfile.gettempdir(), "ipa-pcscd-%d" % os.getpid())


def socket_path(workdir):
    """The client socket of the pcscd whose folder is `workdir` (PCSCLITE_CSOCK_NAME)."""
    return os.path.join(workdir, "run", "pcscd.comm")


def as_root():
    """[] as root; ["sudo", "-n"] for a user with password-less sudo (pcscd needs a mount
    namespace); otherwise a PcscdUnavailable saying how to run the tests."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True,
                                               timeout=30).returncode == 0:
        return ["sudo", "-n"]
    raise PcscdUnavailable("the test pcscd runs in a mount namespace of its own, which needs "
                           "root: run the tests as root or as a user with password-less sudo "
                           "(`sudo -v` first)")


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
    """One private pcscd with a vpcd reader named READER_NAME on `port`, its files (config,
    log, client socket) in `workdir` (session_workdir() when None), which stop() removes."""

    def __init__(self, port=None, workdir=None, debug=False):
        self.port = port
        self.workdir = workdir or session_workdir()
        self.debug = debug
        self.proc = None

    @property
    def reader(self):
        """pcscd's name for slot 0 of our vpcd reader."""
        return READER_NAME + " 00 00"

    @property
    def socket(self):
        """Our pcscd's client socket: clients need PCSCLITE_CSOCK_NAME set to it."""
        return socket_path(self.workdir)

    def log_text(self, limit=4000):
        try:
            with open(os.path.join(self.workdir, "pcscd.log"), errors="replace") as f:
                return f.read()[-limit:]
        except (OSError, TypeError):
            return ""

    def start(self, timeout=START_TIMEOUT):
        exe = find_pcscd()
        driver = find_vpcd_driver()
        unshare = find_unshare()
        try:
            import smartcard.scard  # noqa: F401  (the wait below needs it)
        except ImportError:
            raise PcscdUnavailable("pyscard is not installed: " + INSTALL)
        sudo = as_root()
        if os.environ.get("PCSCLITE_CSOCK_NAME") != self.socket:
            raise PcscdUnavailable(
                "PCSCLITE_CSOCK_NAME must be %s before pyscard first connects (tests/conftest.py "
                "sets it), else the tests would talk to the system's pcscd" % self.socket)
        if len(self.socket) > SUN_PATH_MAX:
            raise PcscdUnavailable("socket path %s is longer than %d bytes: set a shorter TMPDIR"
                                   % (self.socket, SUN_PATH_MAX))
        if self.port is None:
            self.port = free_port_pair()
        try:
            os.makedirs(self.workdir, mode=0o700)  # never reuse one: its pcscd may still run
        except FileExistsError:
            raise PcscdUnavailable("%s exists (a killed test run's?): stop a pcscd that runs "
                                   "with --config there, remove the folder, run again"
                                   % self.workdir)
        run = os.path.join(self.workdir, "run")
        os.mkdir(run, 0o755)
        drvbind = os.path.join(self.workdir, "libifdvpcd.so")
        open(drvbind, "wb").close()  # a mount point for the driver, inside the namespace
        conf = os.path.join(self.workdir, "reader.conf.d")
        os.mkdir(conf)
        with open(os.path.join(conf, "vpcd"), "w") as f:
            f.write(
                'FRIENDLYNAME "%s"\nDEVICENAME   /dev/null:0x%04X\nLIBPATH      %s\n'
                "CHANNELID    0x%04X\n" % (READER_NAME, self.port, drvbind, self.port)
            )
        dirs = pcscd_dirs(exe)
        cmd = sudo + [unshare, "--mount", "--propagation", "private", "sh", "-c", NAMESPACE_SH,
                      "ipa-pcscd", run, dirs["ipcdir"], dirs["usbdropdir"], driver, drvbind,
                      exe, "--foreground", "--config", conf]
        if self.debug:
            cmd += ["--debug", "--apdu"]
        logf = open(os.path.join(self.workdir, "pcscd.log"), "wb")
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT
            )
        except OSError as e:
            raise PcscdUnavailable("cannot run %s: %s" % (unshare, e))
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
        last = "no answer on %s" % self.socket
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PcscdUnavailable(
                    "pcscd exited with code %s at start (mount namespace refused?); "
                    "its log:\n%s" % (self.proc.returncode, self.log_text())
                )
            if os.path.exists(self.socket):
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
        """Terminate our pcscd (SIGTERM, then SIGKILL) and remove its folder."""
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.terminate()  # sudo passes SIGTERM on to pcscd
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_pcscd()  # through sudo: killing sudo alone would orphan pcscd
                p.kill()
                p.wait(timeout)
        if self.workdir and os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _kill_pcscd(self):
        try:
            with open(os.path.join(self.workdir, "run", "pcscd.pid")) as f:
                pid = int(f.read().strip("\0 \n"))  # pcscd writes "<pid>\n\0"
        except (OSError, ValueError):
            return
        subprocess.run(as_root() + ["kill", "-KILL", str(pid)], capture_output=True, timeout=30)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
