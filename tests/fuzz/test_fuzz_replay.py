"""The fuzz corpus, replayed deterministically in `make test` (issue 17).

Every seed of tests/fuzz/corpus/ (real traffic of the simulators, make_corpus.py) and
every reproducer of tests/fuzz/regress/ (one file a finding: <target>-<finding>-<what>)
goes through its target once: only the declared error types escape (targets.check),
and no input makes the target allocate more than MAX_PEAK bytes at once (tracemalloc).
A fixed-seed mutation pass over the corpus adds a few hundred inputs a target, the
same ones every run. The time bound (1 s an input) is the fuzzer's (tests/fuzz/run.py):
this file asserts no time, pytest-timeout bounds it as a whole.
"""

import os
import random
import tracemalloc

import pytest

import targets
from run import mutate

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_PEAK = 16 << 20  # bytes a target may hold at once for one input of a few KB
MUTANTS = 150  # per target, fixed seed


def _files(folder):
    base = os.path.join(HERE, folder)
    out = []
    for root, _dirs, names in os.walk(base):
        for n in sorted(names):
            path = os.path.join(root, n)
            target = os.path.basename(root) if folder == "corpus" else n.split("-")[0]
            out.append((target, os.path.relpath(path, HERE)))
    return sorted(out)


CORPUS = _files("corpus")
REGRESS = _files("regress")


def _read(rel):
    with open(os.path.join(HERE, rel), "rb") as f:
        return f.read()


def _bounded(target, data):
    tracemalloc.start()
    try:
        targets.check(target, data)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_PEAK, "%s: %d bytes held at once for a %d-byte input" % (
        target, peak, len(data))


def test_every_target_has_seeds_and_every_file_a_target():
    assert {t for t, _ in CORPUS} == set(targets.TARGETS)
    for t, rel in CORPUS + REGRESS:
        assert t in targets.TARGETS, rel


@pytest.mark.parametrize("target,rel", REGRESS, ids=[r for _, r in REGRESS])
def test_reproducer(target, rel):
    _bounded(target, _read(rel))


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_corpus_and_fixed_mutants(target):
    pool = [_read(rel) for t, rel in CORPUS if t == target]
    for data in pool:
        _bounded(target, data)
    rng = random.Random(17)
    for _ in range(MUTANTS):
        targets.check(target, mutate(rng, rng.choice(pool), pool))


def test_the_rule_catches_an_escape():
    """check() is not a catch-all: an error type outside the declared ones is a finding."""
    targets.TARGETS["_probe"] = lambda data: {}[data]
    try:
        with pytest.raises(targets.Escape, match="KeyError escaped"):
            targets.check("_probe", b"x")
    finally:
        del targets.TARGETS["_probe"]


def test_frames_round_trip():
    parts = [b"", b"\r\nOK\r\n", bytes(300)]
    assert targets.frames(targets.pack(parts)) == parts
    assert targets.frames(b"\x00\x05ab") == [b"ab"]  # a cut frame is what is there
    assert targets.frames(b"\x00") == [b"\x00"]
