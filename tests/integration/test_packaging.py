"""`pip install .` as a new user does it (issue 14): a fresh venv, the package with no
extras, then the installed `ipa` and `ipa-sim` as subprocesses.

pip takes the wheels from its cache when they are there (offline), else from the index.
The source is copied first so the build leaves nothing (build/, *.egg-info) in the tree.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

from ipa_core import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "ipa_core", "ipa_host")
INSTALL_TIMEOUT = 600
RUN_TIMEOUT = 60


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A venv with `pip install <copy of the tree>`; yields (bin folder, env for its commands)."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, str(src / name),
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, str(src / name))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=RUN_TIMEOUT)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "IPA_HOME", "IPA_CARD",
                        "IPA_CONFIG")}
    (tmp / "pip-tmp").mkdir()
    # The user's HOME (pip's cache: wheels already there install offline); pip's scratch
    # folders under tmp, not /tmp.
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", str(src)],
                       env=dict(env, TMPDIR=str(tmp / "pip-tmp")), capture_output=True,
                       text=True, timeout=INSTALL_TIMEOUT, cwd=str(tmp))
    assert r.returncode == 0, "pip install . failed:\n" + r.stdout + r.stderr
    # The commands as a new user: a HOME of their own (the virtual eUICC's state goes there).
    env.update(HOME=str(tmp / "home"), XDG_DATA_HOME=str(tmp / "home" / "data"),
               XDG_CONFIG_HOME=str(tmp / "home" / "config"))
    yield str(venv / "bin"), env


def run(fresh, *argv):
    bindir, env = fresh
    return subprocess.run([os.path.join(bindir, argv[0])] + list(argv[1:]), env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          cwd=os.path.dirname(bindir))


def test_versions_come_from_the_package_metadata(fresh):
    r = run(fresh, "ipa", "--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, "ipa %s\n" % __version__, "")
    r = run(fresh, "ipa-sim", "--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, "ipa-sim %s\n" % __version__, "")


def test_info_on_the_virtual_euicc_works_without_extras(fresh):
    r = run(fresh, "ipa", "--card", "sim", "info")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert re.search(r"^EID +\d{32}$", r.stdout, re.M), r.stdout
    assert re.search(r"^Profiles +3$", r.stdout, re.M), r.stdout
    assert "Demo Operator A" in r.stdout


def test_a_missing_extra_is_one_line_naming_it(fresh):
    """pyscard and python-mbedtls build from source where no wheel is: extras, not defaults."""
    r = run(fresh, "ipa", "--card", "pcsc", "info")
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "pip install 'ipa-iot[pcsc]'" in r.stderr, r.stderr
    # (after the warning that the demo eIM entry lists https only)
    r = run(fresh, "ipa", "--card", "sim", "--eim-url", "coaps://127.0.0.1:5684", "poll")
    assert r.returncode == 3 and r.stdout == "" and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.splitlines()[-1].startswith("ipa: CoAP/DTLS needs python-mbedtls, the coap "
                                                "extra: pip install 'ipa-iot[coap]'"), r.stderr
