"""Helpers the integration tests share: the `ipa` command of this venv and what they read
back from it and from the simulated servers."""

import os
import subprocess
import sys

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


def functions(dp):
    """(ES9+ function, status) of every request the simulated SM-DP+ answered."""
    return [(e["function"], e["status"]) for e in dp.events]
