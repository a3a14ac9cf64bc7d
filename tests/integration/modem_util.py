"""Helpers of the integration tests that drive `ipa` through a simulated modem."""

import json


def at_info(home, modem):
    """`ipa --json info` through the modem's AT port, parsed (the command must succeed)."""
    r = home.ipa("--json", "info", url=False, card="at:" + modem.path)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def profile_states(info):
    """{iccid: profileState} of an `ipa --json info` answer."""
    return {p["iccid"]: p["profileState"] for p in info["profiles"]}
