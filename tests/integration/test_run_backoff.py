"""`ipa run` back-off when a cycle cannot start (docs/cli.md: 30 s doubling, reset after a
good cycle), on a fake clock: run_loop's wait() is the test's, which records each wait and
changes the world for the next cycle, as a USB modem that re-enumerates does. The card is
the simulated modem (a pty) behind a symlink that the test removes and restores; the eIM is
the simulated one over loopback HTTPS."""

import logging
import os
import re

from ipa_host import runner

NEXT = re.compile(r"next (?:try|poll) in (\d+) s")


def _settings(home, card, max_interval=3600):
    return runner.Settings(card=card, home=home.path, eim_url=home.server.url, timeout=1,
                           poll_interval=60, max_interval=max_interval)


def _announced(caplog):
    """The waits `ipa run` announced in its log, in seconds."""
    return [int(m.group(1)) for r in caplog.records if r.name == "ipa"
            for m in [NEXT.search(r.getMessage())] if m]


def test_start_failures_back_off_30s_doubling_and_reset_after_a_good_cycle(modem_rig, tmp_path,
                                                                           caplog):
    home, _card, make_modem = modem_rig
    modem = make_modem("textbook")
    link = str(tmp_path / "ttyMODEM")
    # Cycle k runs with the modem present when plan[k] is True (the link to its pty exists).
    plan = [False, False, False, True, False, False]
    waits = []

    def place(present):
        if os.path.lexists(link):
            os.remove(link)
        if present:
            os.symlink(modem.path, link)

    def fake_wait(seconds):
        waits.append(seconds)
        place(plan[len(waits)])

    place(plan[0])
    caplog.set_level(logging.INFO, logger="ipa")
    results = []
    n = runner.run_loop(_settings(home, "at:" + link), max_cycles=len(plan),
                        on_cycle=results.append, wait=fake_wait)

    assert n == len(plan)
    started = [not r.get("error") for r in results]
    assert started == plan, results
    # The good cycle found no package: its wait is the idle poll interval (60 s); the
    # failure after it starts again at 30 s instead of carrying on from the first three.
    assert waits == [30, 60, 120, 60, 30]
    assert _announced(caplog) == [30, 60, 120, 60, 30, 60]
    fails = [r.getMessage() for r in caplog.records if "could not start" in r.getMessage()]
    assert len(fails) == 5 and "does not exist" in fails[0]


def test_start_failures_cap_at_30_minutes_and_max_interval(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ipa")
    missing = "at:" + str(tmp_path / "gone")
    waits = []
    runner.run_loop(runner.Settings(card=missing, home=str(tmp_path)), max_cycles=9,
                    wait=waits.append)
    assert waits == [30, 60, 120, 240, 480, 960, 1800, 1800]

    waits = []
    runner.run_loop(runner.Settings(card=missing, home=str(tmp_path), max_interval=100),
                    max_cycles=4, wait=waits.append)
    assert waits == [30, 60, 100]
