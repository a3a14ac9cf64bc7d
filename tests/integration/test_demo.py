"""`make demo` (tools/demo.py) tells the whole story and exits 0 (on any free port)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("sgp32", ["1.2", "1.0"])
def test_demo_runs_the_queue_empty(tmp_path, sgp32):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "demo.py"),
                        "--home", str(tmp_path / "demo"), "--port", "0", "--sgp32", sgp32],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "enableResult                 ok" in out
    assert "addEimResult                 ok" in out
    assert "ipaEuiccDataResponse" in out
    assert out.count("eUICC signature valid") == 2
    assert "no package (noEimPackageAvailable)" in out
    # The final `ipa info`: the enabled profile switched and the eCO added an eIM.
    final = out[out.index("== 6."):]
    assert "8944476500000000025  enabled" in final and "backup-eim" in final
    assert "demo done" in out
    assert "IoT            SGP.32 %s.0" % sgp32 in final  # the eUICC's iotVersion
