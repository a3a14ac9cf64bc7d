"""pytest collects tests/boards like tests/core: plain functions, also run under MicroPython
(tools/mp_test.py puts boards/common in /lib there). Here boards/common and tests/core (the
fake eUICC / eIM / modem) go on sys.path the same way."""

import os
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
for _p in (os.path.join(_ROOT, "tests", "core"), os.path.join(_ROOT, "boards", "common"), _HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)


@pytest.fixture(autouse=True)
def _scratch_under_tmp_path(tmp_path, monkeypatch):
    """boards_util.scratch() folders go under the test's tmp_path: none is left in /tmp."""
    import boards_util

    monkeypatch.setattr(boards_util, "_base", [str(tmp_path)])
