"""boards/common/ipa_loop.py: the board's run loop around a real ipa_core.ipa.Ipa.

The IPA talks to the fake eUICC and eIM of tests/core (their own TLV
encoders); time is fake (sleep_ms advances a counter), the watchdog is a
counter. What a user would check: the loop never dies of an IPA or port
failure, waits with the core's back-off, feeds the watchdog in slices
shorter than its timeout, reopens card and network after a transport
failure before polling again, and resets the board (re-raises) only after
repeated failures that are not IPA errors.
Plain functions with assert: pytest on CPython, tools/mp_test.py on MicroPython.
"""

import ipa_loop
from ipa_core import tlv
from ipa_core.errors import TransportError
from ipa_core.ipa import Ipa, MemoryStore

import fake_eim as fe
from boards_util import Clock
from fake_euicc import ICCID_B, FakeEuicc


class Dog:
    """A watchdog with a timeout: feeds are recorded against the fake clock."""

    def __init__(self, clock, timeout_ms):
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.feeds = 0
        self.last = 0
        self.longest = 0

    def feed(self):
        now = self.clock.t
        self.longest = max(self.longest, now - self.last)
        self.last = now
        self.feeds += 1


def _world(**config):
    card = FakeEuicc()
    eim = fe.FakeEim("asn1")
    ipa = Ipa(card.session(), eim, MemoryStore(), config=config)
    return card, eim, ipa


def _run(ipa, clock, dog, **kw):
    lines = []
    n = ipa_loop.run(ipa, clock.sleep_ms, dog.feed, log=lines.append, clock=clock,
                     traceback=False, **kw)
    return n, lines


def test_idle_polls_grow_and_the_watchdog_is_fed_in_slices():
    card, eim, ipa = _world(poll_interval_s=60, max_interval_s=3600)
    clock = Clock()
    dog = Dog(clock, 8000)
    n, lines = _run(ipa, clock, dog, max_cycles=3, slice_ms=1000)
    assert n == 3 and len(eim.polls) == 3
    # idle back-off: 60 s, then 120 s; no wait after the last cycle
    assert sum(clock.sleeps) == 180000, sum(clock.sleeps)
    assert max(clock.sleeps) <= 1000
    assert dog.longest <= 1000 and dog.feeds >= 180
    assert "cycle 1 idle; next poll in 60 s" in lines[0], lines
    assert "cycle 2 idle; next poll in 120 s" in lines[1], lines


def test_transport_failures_back_off_reopen_and_recover():
    card, eim, ipa = _world(error_backoff_s=30, max_error_backoff_s=1800)
    eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)], txid=b"\x01"))
    up = [False]
    eim.reachable = lambda: up[0]
    reopened = []

    def reopen(err):
        reopened.append(err)
        if len(reopened) == 2:
            up[0] = True  # the modem came back after two recoveries
        ipa.session = card.session()  # what a board does: a fresh session and network

    clock = Clock()
    dog = Dog(clock, 8000)
    n, lines = _run(ipa, clock, dog, max_cycles=4, reopen=reopen)
    assert n == 4
    # Two failed cycles, each followed by a reopen before the next poll.
    assert len(reopened) == 2 and all(isinstance(e, TransportError) for e in reopened)
    assert "failed (TransportError" in lines[0] and "next try in 30 s" in lines[0], lines
    assert "reopened card and network" in lines[1], lines
    assert "failed (TransportError" in lines[2] and "next try in 60 s" in lines[2], lines
    # The third cycle did the package: enabled, result delivered once.
    assert card.enabled() == ICCID_B and len(eim.package_results) == 1
    assert fe.result_seq(tlv.decode(eim.package_results[0])) is not None
    assert sum(clock.sleeps) >= 30000 + 60000
    assert dog.longest <= ipa_loop.SLICE_MS


def test_a_failing_reopen_is_retried_before_any_poll():
    card, eim, ipa = _world(error_backoff_s=10)
    attempts = [0]

    def reachable():
        attempts[0] += 1
        return False

    eim.reachable = reachable
    calls = []

    def reopen(err):
        calls.append(attempts[0])
        if len(calls) < 3:
            raise OSError(5, "EIO")  # the UART driver fails too
        eim.reachable = None

    clock = Clock()
    n, lines = _run(ipa, clock, Dog(clock, 8000), max_cycles=5, reopen=reopen)
    # cycle 1 polls and fails; cycles 2, 3 only try to reopen (no poll in between);
    # cycle 4 reopens and polls; cycle 5 polls
    assert calls == [1, 1, 1], calls
    assert len(eim.polls) == 2, eim.polls
    assert "could not reopen card and network (OSError" in lines[1], lines
    assert "next try in 10 s" in lines[1] and "next try in 20 s" in lines[2], lines
    assert "reopened" in lines[3] and "idle" in lines[4], lines


def test_os_errors_never_stop_the_loop():
    card, eim, ipa = _world()

    class Broken:
        def post(self, *a):
            raise OSError(5, "EIO")  # a UART or socket driver failing

    ipa.network = Broken()
    reopened = []
    clock = Clock()
    n, lines = _run(ipa, clock, Dog(clock, 8000), max_cycles=6, reopen=reopened.append)
    assert n == 6 and len(reopened) == 5  # after each failure but the last
    assert sum(1 for ln in lines if "failed (OSError" in ln) == 6, lines
    assert ipa.error_count == 6  # the back-off kept growing: 30, 60, 120, ... s
    assert clock.sleeps and sum(clock.sleeps) == (30 + 60 + 120 + 240 + 480) * 1000


def test_repeated_unexpected_failures_end_the_loop_so_the_board_restarts():
    card, eim, ipa = _world()

    class Buggy:
        version = "1.2"

        def store_data(self, req):
            raise ValueError("a bug in the card glue")

    ipa.session = Buggy()
    clock = Clock()
    lines = []
    try:
        ipa_loop.run(ipa, clock.sleep_ms, lambda: None, log=lines.append, max_unexpected=3,
                     traceback=False)
    except ValueError as e:
        assert "a bug" in str(e)
    else:
        raise AssertionError("the loop swallowed a bug for ever")
    assert sum(1 for ln in lines if "raised ValueError" in ln) == 3, lines
    assert "stopping so the board restarts" in lines[-1]
    assert len(clock.sleeps) > 0  # it backed off between the tries


def test_a_success_resets_the_unexpected_count():
    card, eim, ipa = _world()
    real = ipa.session
    cycle = [1]

    class Flaky:
        version = "1.2"

        def store_data(self, req):
            if cycle[0] % 3:  # cycles 1, 2 fail, 3 works, 4, 5 fail, ...
                raise ValueError("flaky")
            return real.store_data(req)

    def on_cycle(r):
        cycle[0] += 1

    ipa.session = Flaky()
    clock = Clock()
    n, lines = _run(ipa, clock, Dog(clock, 8000), max_cycles=9, max_unexpected=3,
                    on_cycle=on_cycle)
    assert n == 9  # never three in a row
    assert sum(1 for ln in lines if "raised ValueError" in ln) == 6, lines


def test_stop_ends_the_wait_early():
    card, eim, ipa = _world(poll_interval_s=600)
    clock = Clock()
    stop_at = [0]

    def stop():
        stop_at[0] += 1
        return clock.t >= 5000

    n, _ = _run(ipa, clock, Dog(clock, 8000), stop=stop)
    assert n == 1 and 5000 <= clock.t < 10000


def test_ipa_log_and_summary_lines():
    out = []
    note = ipa_loop.ipa_log(out.append)
    note("debug", "noise")
    note("warning", "poll: eIM unreachable")
    assert out == ["warning: poll: eIM unreachable"]
    line = ipa_loop.summary_line(4, {"package": "euiccPackageRequest",
                                     "steps": ["getEimPackage", "load", "deliver"]}, 1000)
    assert line == "ipa: cycle 4 euiccPackageRequest: getEimPackage,load,deliver; next poll in 1 s"
    e = ValueError("x" * 500)
    assert len(ipa_loop.describe(e)) < 240


def test_wait_feeds_in_slices_and_rejects_a_bad_slice():
    clock = Clock()
    dog = Dog(clock, 1000)
    assert ipa_loop.wait(2500, clock.sleep_ms, dog.feed, 700)
    assert clock.sleeps == [700, 700, 700, 400] and dog.feeds == 5
    try:
        ipa_loop.wait(10, clock.sleep_ms, dog.feed, 0)
    except ValueError as e:
        assert "slice_ms" in str(e)
    else:
        raise AssertionError("slice_ms 0 accepted")
