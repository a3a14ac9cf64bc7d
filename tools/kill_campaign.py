"""The full kill campaign (issue 17): tests/integration/test_kill_campaign.py with more kills
than `make test` runs, without pytest's per-test timeout.

    .venv/bin/python tools/kill_campaign.py [--kills 50] [--seed 17]

Prints the campaign's summary line (kills, packages, re-offers, notifications, results,
duplicates); exit status 0 when nothing was lost.
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TEST = os.path.join(HERE, "..", "tests", "integration", "test_kill_campaign.py")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=50, help="SIGKILLs in all (default 50)")
    p.add_argument("--seed", type=int, default=17, help="random seed (default 17)")
    a = p.parse_args(argv)
    if not 1 <= a.kills <= 10000:
        p.error("--kills must be 1..10000")
    env = dict(os.environ, KILL_CAMPAIGN_KILLS=str(a.kills), KILL_CAMPAIGN_SEED=str(a.seed))
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
           "--timeout", str(60 + 10 * a.kills), TEST]
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
