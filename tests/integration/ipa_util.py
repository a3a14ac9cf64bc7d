"""Helpers the integration tests share: the `ipa` command of this venv and what they read
back from it and from the simulated servers."""

import contextlib
import os
import subprocess
import sys
import time

import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked

IPA = os.path.join(os.path.dirname(sys.executable), "ipa")


def info_json(home_dir, *options):
    """`ipa --home HOME [options] --json info`, parsed (the command must succeed)."""
    r = subprocess.run([IPA, "--home", home_dir] + list(options) + ["--json", "info"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return cli_contract.result(r.stdout, "info")


def at_info(home, modem):
    """`ipa --json info` of an IpaHome through the modem's AT port, parsed."""
    r = home.ipa("--json", "info", url=False, card="at:" + modem.path)
    assert r.returncode == 0, r.stderr
    return cli_contract.result(r.stdout, "info")


def profile_states(info):
    """{iccid: profileState} of an `ipa --json info` answer ("enabled" / "disabled")."""
    return {p["iccid"]: p["profileState"] for p in info["profiles"]}


@contextlib.contextmanager
def relay_lab(tmp_path, profiles, **smdp_kw):
    """A provisioned home (virtual eUICC, demo eIM), a running SM-DP+ under the same test CI
    offering `profiles` [(matchingId, iccid, name, size)], and an eIM trusting the SM-DP+'s
    TLS CA for its relay -> (home, eid, dp, eim). smdp_kw: SmdpServer options."""
    from ipa_host.sim.eim.eim import EimServer
    from ipa_host.sim.home import eim_dir, open_home_euicc, sim_dir
    from ipa_host.sim.smdpp.smdpp import SmdpServer

    h = str(tmp_path / "home")
    card = open_home_euicc(h)
    pki_dir = os.path.join(sim_dir(h), "pki")
    dp = SmdpServer(str(tmp_path / "smdp"), pki_dir, **smdp_kw).start()
    for mid, iccid, name, size in profiles:
        dp.add_profile(mid, iccid, name, size=size)
    try:
        eim = EimServer(eim_dir(h), pki_dir=pki_dir, association_token=1,
                        smdp_ca_file=dp.tls_ca_path).start()
        try:
            yield h, card.eid, dp, eim
        finally:
            eim.stop()
    finally:
        dp.stop()


def log_lines(stderr):
    """The IPA's log lines without timestamps ('INFO ipa: modem: AT > AT+CFUN=0')."""
    out = []
    for line in stderr.splitlines():
        for level in ("DEBUG ", "INFO ", "WARNING ", "ERROR "):
            i = line.find(" " + level)
            if i >= 0:
                out.append(line[i + 1:])
                break
    return out


def log_index(log, text, start=0):
    """Index of the first log line from `start` on that contains text (AssertionError if none)."""
    for i in range(start, len(log)):
        if text in log[i]:
            return i
    raise AssertionError("%r not in the log after line %d:\n%s" % (text, start, "\n".join(log)))


def functions(dp):
    """(ES9+ function, status) of every request the simulated SM-DP+ answered."""
    return [(e["function"], e["status"]) for e in dp.events]


def service_config(tmp_path):
    """An ipa.toml for `ipa run` tests: a poll every second, 2 s network timeout."""
    config = str(tmp_path / "ipa.toml")
    with open(config, "w") as f:
        f.write("[ipa]\npoll_interval = 1\nmax_interval = 1\n[eim]\ntimeout = 2\n")
    return config


def eim_polls(eim):
    """getEimPackage requests the simulated eIM has answered."""
    return sum(1 for q in eim.requests if q["function"] == "getEimPackage")


def run_service(args, steps, wait=20, env=None, stop_wait=15):
    """`ipa <args> run` until each (condition, action[, what]) of `steps` in turn: wait (at
    most `wait` s each, failing early if `ipa` exits) for condition(), then call action (if
    any). Then SIGTERM (at most `stop_wait` s to stop); asserts a clean exit and returns
    (stdout, stderr). env: variables added to ours."""
    proc = subprocess.Popen([IPA] + list(args) + ["run"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **env) if env else None)
    try:
        for step in steps:
            cond, action = step[:2]
            what = step[2] if len(step) > 2 else "condition"
            deadline = time.monotonic() + wait
            while not cond():
                assert time.monotonic() < deadline, "%s: not met within %d s" % (what, wait)
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            if action is not None:
                action()
        proc.terminate()
        out, err = proc.communicate(timeout=stop_wait)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return out, err
