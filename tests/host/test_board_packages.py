"""boards/<board>/package.json: what `mpremote mip install` puts on a device is the manifest's set.

mip (MicroPython's installer, on the device and in mpremote) reads a package.json of
{"urls": [[destination, source], ...], "deps": [...], "version": "..."}, writes each source
to <lib folder>/<destination> and resolves a source that is not a URL against the folder of
the package.json by joining the strings ("<folder>/<source>"). These tests resolve every
source that way and check, per board: the package.json is the JSON tools/freeze.py writes from
the manifest, it installs exactly the files the manifest freezes (same destinations, same
source files), and its version is the manifest's metadata(version=...) and the package's
(ipa_core.__version__, which pyproject.toml reads).
A module added to a manifest and not to package.json fails here: run
`python3 tools/freeze.py --all --write-packages`.
"""

import json
import os
import posixpath
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import freeze  # noqa: E402

BOARDS = [os.path.basename(d) for d in freeze.board_dirs()]
URL_PREFIXES = ("http://", "https://", "github:", "gitlab:", "codeberg:")


def pyproject_version():
    """The package version: pyproject.toml takes it from ipa_core.__version__ (dynamic)."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^dynamic\s*=\s*\[[^]]*"version"', project, re.M), project
    assert re.search(r'^version\s*=\s*\{\s*attr\s*=\s*"ipa_core.__version__"\s*\}', text, re.M)
    with open(os.path.join(ROOT, "ipa_core", "__init__.py"), encoding="utf-8") as f:
        found = re.findall(r'^__version__\s*=\s*"([^"]+)"', f.read(), re.M)
    assert len(found) == 1, found
    return found[0]


def load(board):
    path = os.path.join(ROOT, "boards", board, "package.json")
    assert os.path.isfile(path), "%s has no package.json (tools/freeze.py --write-packages)" \
        % board
    with open(path, encoding="utf-8") as f:
        return path, json.load(f)


def mip_source(package_path, url):
    """The repository file mip fetches for `url` in the package.json at package_path: a
    relative source is "<folder of package.json>/<source>" (a local clone: the filesystem
    resolves "../"); github:OWNER/REPO/<path> is <path> in the repository."""
    assert "\\" not in url, url  # mpremote refuses backslashes in file sources
    if url.startswith("github:"):
        parts = url[len("github:"):].split("/")
        assert len(parts) > 2, url
        rel = "/".join(parts[2:])
    else:
        assert not url.startswith(URL_PREFIXES), "%s: only relative or github: sources" % url
        rel = posixpath.join(os.path.relpath(os.path.dirname(package_path), ROOT)
                             .replace(os.sep, "/"), url)
    rel = posixpath.normpath(rel)
    assert not rel.startswith("../") and not posixpath.isabs(rel), (url, rel)
    return os.path.join(ROOT, *rel.split("/"))


def test_every_board_has_a_package():
    assert BOARDS
    for board in BOARDS:
        load(board)


@pytest.mark.parametrize("board", BOARDS)
def test_versions_agree(board):
    _, pkg = load(board)
    m = freeze.read_manifest(os.path.join(ROOT, "boards", board))
    assert m.meta.get("version") == pyproject_version(), (board, m.meta)
    assert m.meta.get("description"), board
    assert m.meta_origin == os.path.join("boards", board, "manifest.py")
    assert pkg["version"] == pyproject_version(), board


@pytest.mark.parametrize("board", BOARDS)
def test_package_installs_exactly_what_the_manifest_freezes(board):
    path, pkg = load(board)
    assert set(pkg) <= {"urls", "deps", "version"}, sorted(pkg)
    assert pkg["deps"] == []
    dests = [u[0] for u in pkg["urls"]]
    assert all(isinstance(u, list) and len(u) == 2 for u in pkg["urls"]), pkg["urls"]
    assert len(dests) == len(set(dests)), "a destination twice"
    m = freeze.read_manifest(os.path.join(ROOT, "boards", board))
    assert set(dests) == set(m.entries), (
        "only in package.json: %s; only in the manifest: %s"
        % (sorted(set(dests) - set(m.entries)), sorted(set(m.entries) - set(dests))))
    for dest, url in pkg["urls"]:
        assert not dest.startswith("/") and ".." not in dest.split("/"), dest
        src = mip_source(path, url)
        assert os.path.isfile(src), (dest, url, src)
        assert os.path.samefile(src, m.entries[dest]), (dest, url, m.entries[dest])
    # ipa_core lands as a package, board code at the top of the lib folder
    assert "ipa_core/__init__.py" in dests
    assert "board.py" in dests
    assert "main.py" not in dests and "ipa_config.json" not in dests


@pytest.mark.parametrize("board", BOARDS)
def test_package_is_up_to_date(board):
    d = os.path.join(ROOT, "boards", board)
    assert freeze.package_status(d) is None, \
        "run: python3 tools/freeze.py --write-packages boards/%s" % board


def test_github_form_resolves_to_the_same_files(tmp_path):
    for board in BOARDS:
        d = os.path.join(ROOT, "boards", board)
        pkg = freeze.package_json(d, github="owner/repo")
        assert freeze.package_github(pkg) == "owner/repo"
        rel = freeze.package_json(d)
        assert freeze.package_github(rel) is None
        assert [u[0] for u in pkg["urls"]] == [u[0] for u in rel["urls"]]
        path = os.path.join(d, "package.json")
        for (dest, url), (_, relurl) in zip(pkg["urls"], rel["urls"]):
            assert url.startswith("github:owner/repo/"), url
            assert mip_source(path, url) == mip_source(path, relurl), dest
        text = freeze.package_json_text(pkg)
        assert json.loads(text) == pkg


def test_write_packages_writes_what_the_check_expects(tmp_path):
    """--write-packages on a copy of a board tree: the file it writes passes package_status,
    and a module added to the manifest afterwards makes package_status fail."""
    board = os.path.join(str(tmp_path), "boards", "b")
    os.makedirs(os.path.join(board))
    with open(os.path.join(board, "board.py"), "w") as f:
        f.write("X = 1\n")
    with open(os.path.join(board, "extra.py"), "w") as f:
        f.write("Y = 2\n")
    manifest = os.path.join(board, "manifest.py")
    with open(manifest, "w") as f:
        f.write('metadata(version="9.9", description="t")\nmodule("board.py")\n')
    path, pkg = freeze.write_package(board)
    assert pkg == {"urls": [["board.py", "board.py"]], "deps": [], "version": "9.9"}
    assert freeze.package_status(board) is None
    with open(manifest, "a") as f:
        f.write('module("extra.py")\n')
    assert "does not match" in freeze.package_status(board)
    os.remove(path)
    assert "missing" in freeze.package_status(board)


def test_metadata_follows_micropython_rules(tmp_path):
    """MicroPython's freezer shares metadata between a manifest and what it includes and
    refuses a second metadata() call; tools/freeze.py refuses it the same way, and refuses
    keywords manifestfile.py does not know."""
    common = tmp_path / "common"
    board = tmp_path / "b"
    common.mkdir()
    board.mkdir()
    (common / "m.py").write_text("Z = 0\n")
    (board / "board.py").write_text("X = 1\n")
    (common / "manifest.py").write_text('metadata(version="1")\nmodule("m.py")\n')
    (board / "manifest.py").write_text('metadata(version="1")\ninclude("../common")\n'
                                       'module("board.py")\n')
    with pytest.raises(freeze.FreezeError, match="second metadata"):
        freeze.read_manifest(str(board))
    (board / "manifest.py").write_text('metadata(versoin="1")\nmodule("board.py")\n')
    with pytest.raises(freeze.FreezeError, match="versoin"):
        freeze.read_manifest(str(board))
    (board / "manifest.py").write_text('module("board.py")\n')
    with pytest.raises(freeze.FreezeError, match="metadata"):
        freeze.package_json(str(board))
