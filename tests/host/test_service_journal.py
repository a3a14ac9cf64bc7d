"""`ipa` under systemd: journald priority prefixes and sd_notify, through the real command.

systemd connects stderr to the journal and names that stream in $JOURNAL_STREAM
("device:inode"); here stderr is a file whose device and inode the test puts there, as
systemd would. $NOTIFY_SOCKET is a datagram socket the test binds, as systemd does for a
Type=notify unit."""

import os
import socket
import subprocess
import sys
import threading

from ipa_host import runner, sd_notify

IPA = os.path.join(os.path.dirname(sys.executable), "ipa")


def _run_with_stderr_file(tmp_path, args, journal=True, env=None):
    err_path = tmp_path / "stderr.txt"
    full = dict(os.environ, **(env or {}))
    full.pop("JOURNAL_STREAM", None)
    with open(err_path, "wb") as err:
        st = os.fstat(err.fileno())
        if journal:
            full["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        r = subprocess.run([IPA, "--home", str(tmp_path)] + args, stdout=subprocess.PIPE,
                           stderr=err, text=True, timeout=60, env=full)
    return r, err_path.read_text().splitlines()


def test_run_log_lines_carry_syslog_priorities_under_journald(tmp_path):
    missing = "at:" + str(tmp_path / "ttyGONE")
    r, lines = _run_with_stderr_file(tmp_path, ["--card", missing, "run", "--cycles", "1"])
    assert r.returncode == 0
    assert lines, "no log lines"
    # Every line starts with its priority, so `journalctl -p warning` shows the failures only.
    assert all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in lines), lines
    warnings = [line for line in lines if line.startswith("<4>")]
    assert any("cycle could not start" in w and "does not exist" in w for w in warnings)
    assert any("next try in 30 s" in w for w in warnings)
    assert "<6>INFO ipa: stopped after 1 cycle(s)" in lines
    # No timestamp of our own: journald adds one.
    assert all(line.split(" ", 1)[0] in ("<4>WARNING", "<6>INFO", "<7>DEBUG", "<3>ERROR")
               for line in lines), lines


def test_fatal_errors_are_priority_3_under_journald(tmp_path):
    missing = "at:" + str(tmp_path / "ttyGONE")
    r, lines = _run_with_stderr_file(tmp_path, ["--card", missing, "info"])
    assert r.returncode == 3
    assert lines[-1].startswith("<3>ipa: AT port ") and "does not exist" in lines[-1]


def test_no_prefixes_outside_journald(tmp_path):
    missing = "at:" + str(tmp_path / "ttyGONE")
    r, lines = _run_with_stderr_file(tmp_path, ["--card", missing, "run", "--cycles", "1"],
                                     journal=False)
    assert r.returncode == 0
    assert lines and not any(line.startswith("<") for line in lines)
    assert lines[0][:4].isdigit()  # our own timestamp: 2026-...
    # A JOURNAL_STREAM that names another stream (stderr redirected by a child) is ignored.
    r, lines = _run_with_stderr_file(tmp_path, ["--card", missing, "info"], journal=False,
                                     env={"JOURNAL_STREAM": "1:1"})
    assert r.returncode == 3 and lines[-1].startswith("ipa: AT port ")


def test_priority_of_each_level():
    assert [runner.sd_priority(n) for n in (50, 40, 30, 20, 10, 5)] == [3, 3, 4, 6, 7, 7]


class NotifySocket:
    """What systemd listens on for a Type=notify unit: a bound AF_UNIX datagram socket."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(5)

    def messages(self):
        out = []
        self.sock.settimeout(0.2)
        try:
            while True:
                out.append(self.sock.recv(65536).decode())
        except socket.timeout:
            pass
        return out

    def close(self):
        self.sock.close()


def test_run_notifies_systemd_ready_status_stopping(tmp_path):
    sock = NotifySocket(tmp_path / "notify")
    try:
        missing = "at:" + str(tmp_path / "ttyGONE")
        r = subprocess.run([IPA, "--home", str(tmp_path), "--card", missing, "run", "--cycles",
                            "1"], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, NOTIFY_SOCKET=sock.path))
        assert r.returncode == 0, r.stderr
        msgs = sock.messages()
    finally:
        sock.close()
    assert msgs[0] == "READY=1"
    assert msgs[1].startswith("STATUS=poll failed: AT port ") and \
        msgs[1].endswith("next try in 30 s")
    assert msgs[-1] == "STOPPING=1"


def test_long_waits_ping_the_watchdog(tmp_path, monkeypatch):
    sock = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", sock.path)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 50 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        stopped = sd_notify.wait(threading.Event(), 0.3)
        msgs = sock.messages()
    finally:
        sock.close()
    assert stopped is False
    assert len(msgs) >= 3 and set(msgs) == {"WATCHDOG=1"}
    # Not under systemd: nothing is sent, nothing fails.
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert sd_notify.notify("READY=1") is False


def test_config_log_level_rules_run(tmp_path):
    conf = tmp_path / "ipa.toml"
    conf.write_text('[ipa]\nlog_level = "warning"\n')
    missing = "at:" + str(tmp_path / "ttyGONE")
    r, lines = _run_with_stderr_file(tmp_path, ["--config", str(conf), "--card", missing, "run",
                                                "--cycles", "1"])
    assert r.returncode == 0
    assert lines and all(line.startswith("<4>") for line in lines), lines


def test_es10_exchanges_of_a_cycle_keep_the_watchdog_fed(tmp_path, monkeypatch):
    from ipa_core import es10

    sock = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", sock.path)
    monkeypatch.setenv("WATCHDOG_USEC", str(60 * 10 ** 6))  # ping at most every 15 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setattr(sd_notify, "_last_ping", [None])
    st = runner.Settings(card="sim", home=str(tmp_path / "home"), eim_url="https://127.0.0.1:9")
    try:
        with runner.IpaHost(st) as h:
            for _ in range(3):
                assert len(es10.get_eid(h.session)) == 32
        msgs = sock.messages()
    finally:
        sock.close()
    # The first exchange pinged; the next ones fell inside the same quarter interval.
    assert msgs == ["WATCHDOG=1"]
    # Without a watchdog the session is left as it is.
    monkeypatch.delenv("WATCHDOG_USEC")
    with runner.IpaHost(st) as h:
        assert h.session.store_data.__name__ == "store_data"


def test_notify_socket_in_the_abstract_namespace():
    name = "ipa-test-notify-%d" % os.getpid()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    old = os.environ.get("NOTIFY_SOCKET")
    os.environ["NOTIFY_SOCKET"] = "@" + name
    try:
        assert sd_notify.notify("STATUS=x" * 1000) is True
        got = sock.recv(65536)
    finally:
        sock.close()
        if old is None:
            del os.environ["NOTIFY_SOCKET"]
        else:
            os.environ["NOTIFY_SOCKET"] = old
    assert len(got) == sd_notify.MAX_MESSAGE and got.startswith(b"STATUS=x")
