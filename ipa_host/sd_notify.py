"""systemd service notifications (sd_notify(3)) without libsystemd: one datagram per state.

Under a `Type=notify` unit systemd puts the path of its notification socket in
$NOTIFY_SOCKET (a file path, or "@name" for the abstract namespace) and reads
"READY=1", "STATUS=...", "STOPPING=1" and "WATCHDOG=1" from it. With
`WatchdogSec=` it also sets $WATCHDOG_USEC (and $WATCHDOG_PID): the service
must send WATCHDOG=1 more often than that, or systemd restarts it. Outside
systemd (no $NOTIFY_SOCKET) every call does nothing.
"""

import os
import socket
import time

MAX_MESSAGE = 4096  # a STATUS line is one log line; bound it


def notify(message):
    """Send one notification; False when not under systemd or the socket refused it
    (a notification is never worth stopping the IPA for)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path or not isinstance(message, str):
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    data = message.encode("utf-8", "replace")[:MAX_MESSAGE]
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError:
        return False
    try:
        s.settimeout(1.0)
        s.sendto(data, path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def watchdog_s():
    """Half the watchdog interval systemd asked for, in seconds (how often to ping), or None
    without a watchdog (or when $WATCHDOG_PID names another process)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        usec = int(usec)
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


_last_ping = [None]  # monotonic time of the last WATCHDOG=1


def keepalive():
    """WATCHDOG=1 when a watchdog is on and the last ping is over half a ping interval old:
    called on progress inside a cycle (each ES10 exchange, runner.IpaHost), so a long
    profile download that advances is not taken for a hang; cheap to call often."""
    ping = watchdog_s()
    if ping is None:
        return False
    now = time.monotonic()
    if _last_ping[0] is not None and now - _last_ping[0] < ping / 2:
        return False
    _last_ping[0] = now
    return notify("WATCHDOG=1")


def wait(stop, seconds):
    """stop.wait(seconds) in pieces of half the watchdog interval, pinging WATCHDOG=1 before
    each, so a long back-off is not mistaken for a hung IPA. True when stop was set."""
    ping = watchdog_s()
    if ping is None:
        return stop.wait(seconds)
    left = seconds
    while True:
        _last_ping[0] = time.monotonic()
        notify("WATCHDOG=1")
        piece = min(left, ping)
        if stop.wait(piece):
            return True
        left -= piece
        if left <= 0:
            return False
