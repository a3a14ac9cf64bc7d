"""tools/freeze.py: board bundles from manifest.py, .mpy sizes, the MicroPython import check.

What a user would check: every board folder builds; the sizes printed are the
sizes of the files written; a manifest naming a file that is not there, or
missing a module main.py needs, fails with a message naming the manifest,
the module and who imports it; --strict fails a bundle over the budget.
The import check runs real MicroPython (tools/mp_test.py's runtime): without
node and .mp/ these tests fail, they do not skip.
"""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import freeze  # noqa: E402

BOARDS = ["esp32s3_sim7080g", "quecpython_ec200u", "rp2040_sim7600"]


@pytest.fixture(scope="module")
def runtime():
    if freeze.mp_runtime() is None:
        pytest.fail("the import check needs node and the MicroPython runtime in .mp/ "
                    "(make mp)", pytrace=False)


def test_every_board_folder_has_a_manifest():
    assert [os.path.basename(d) for d in freeze.board_dirs()] == BOARDS


@pytest.mark.parametrize("board", BOARDS)
def test_board_builds_and_sizes_match_the_files(board, tmp_path, runtime):
    d = os.path.join(ROOT, "boards", board)
    r = freeze.build(d, out_dir=str(tmp_path), tar=True)
    m = r.pop("_manifest")
    assert r["modules"], r
    for x in r["modules"]:
        path = os.path.join(ROOT, x["mpy"])
        assert os.path.getsize(path) == x["size"], x
        with open(path, "rb") as f:
            assert f.read(1) == b"M"  # .mpy header
    core = [x for x in r["modules"] if x["path"].startswith("ipa_core/")]
    assert r["ipa_core_total"] == sum(x["size"] for x in core)
    assert r["total"] == sum(x["size"] for x in r["modules"])
    assert r["glue_total"] == r["total"] - r["ipa_core_total"]
    names = set(x["module"] for x in r["modules"])
    # What every board needs, and what the ASN.1-only, indirect-only subset leaves out.
    for need in ("ipa_core.ipa", "ipa_core.es10", "ipa_core.esipa", "ipa_core.ipa_download",
                 "flash_store", "ipa_loop", "ipa_board", "board"):
        assert need in names, (board, need)
    for never in ("ipa_core.esipa_json", "ipa_core.es9p", "ipa_core.ipa_direct",
                  "ipa_core.json_stream", "ipa_core.coap"):
        assert never not in names, (board, never)
    assert os.path.isfile(os.path.join(str(tmp_path), "main.py"))
    assert os.path.isfile(os.path.join(str(tmp_path), "sizes.json"))
    assert os.path.isfile(r["tar"] if os.path.isabs(r["tar"]) else os.path.join(ROOT, r["tar"]))
    check = freeze.import_check(d, m)
    assert check["ok"], check["errors"]


def test_at_boards_freeze_exactly_one_http_stack(tmp_path):
    stacks = {}
    for board in ("esp32s3_sim7080g", "rp2040_sim7600"):
        m = freeze.read_manifest(os.path.join(ROOT, "boards", board))
        stacks[board] = sorted(t for t in m.entries if t.startswith("ipa_core/at_http_"))
    assert stacks == {"esp32s3_sim7080g": ["ipa_core/at_http_sim7080.py"],
                      "rp2040_sim7600": ["ipa_core/at_http_simcom.py"]}
    quec = freeze.read_manifest(os.path.join(ROOT, "boards", "quecpython_ec200u"))
    assert not [t for t in quec.entries if t.startswith("ipa_core/at")]  # no AT port at all


def _board(tmp_path, manifest, main, board="from ipa_core import errors\n"):
    d = tmp_path / "myboard"
    d.mkdir()
    (d / "manifest.py").write_text(manifest)
    (d / "main.py").write_text(main)
    (d / "board.py").write_text(board)
    return str(d)


def test_manifest_naming_a_missing_module_is_a_clear_error(tmp_path):
    d = _board(tmp_path, 'package("ipa_core", files=["errors.py", "nothere.py"], '
                         'base_path=%r)\nmodule("board.py")\n' % ROOT, "import board\n")
    with pytest.raises(freeze.FreezeError) as e:
        freeze.build(d, out_dir=str(tmp_path / "out"))
    msg = str(e.value)
    assert "manifest.py" in msg and "ipa_core/nothere.py" in msg and "does not exist" in msg


def test_import_check_catches_a_module_missing_from_the_manifest(tmp_path, runtime):
    # board.py needs ipa_core.tlv, the manifest forgot it.
    d = _board(tmp_path, 'package("ipa_core", files=["__init__.py", "errors.py"], '
                         'base_path=%r)\nmodule("board.py")\n' % ROOT,
               "import board\n", board="from ipa_core import errors, tlv\n")
    r = freeze.build(d, out_dir=str(tmp_path / "out"))
    c = freeze.import_check(d, r["_manifest"])
    assert not c["ok"]
    text = "\n".join(c["errors"])
    assert "ipa_core.tlv" in text and "not in the manifest" in text and "board" in text, text
    # The CLI says so and fails.
    assert freeze.main([d, "--out", str(tmp_path / "out2")]) == 1


def test_import_check_stands_in_for_port_modules_only_where_the_board_has_them(tmp_path,
                                                                              runtime):
    # An RP2040 has no `network`: importing it must fail the check.
    board = 'PORT_MODULES = ("machine",)\nimport machine\nimport network\n'
    d = _board(tmp_path, 'module("board.py")\n', "import board\n", board=board)
    r = freeze.build(d, out_dir=str(tmp_path / "out"))
    c = freeze.import_check(d, r["_manifest"])
    assert not c["ok"] and "network" in "\n".join(c["errors"])


def test_manifest_functions_follow_micropython(tmp_path):
    common = tmp_path / "common"
    common.mkdir()
    (common / "a.py").write_text("A = 1\n")
    sub = common / "pkg"
    sub.mkdir()
    (sub / "__init__.py").write_text("")
    (sub / "b.py").write_text("B = 2\n")
    (common / "manifest.py").write_text(
        'options.defaults(extra=False)\nmodule("a.py")\n'
        'if options.extra:\n    freeze(".", "pkg/b.py")\n')
    d = _board(tmp_path, 'include("$(PORT_DIR)/boards/manifest.py")\n'
                         'include("../common", extra=True)\nmodule("board.py")\n'
                         'package("pkg", base_path="../common")\n', "import board\n")
    m = freeze.read_manifest(d)
    assert sorted(m.entries) == ["a.py", "board.py", "pkg/__init__.py", "pkg/b.py"]
    assert len(m.skipped) == 1 and "$(PORT_DIR)" in m.skipped[0]
    # A second module with the same target from another file is a conflict.
    (tmp_path / "myboard" / "a.py").write_text("A = 2\n")
    with open(os.path.join(d, "manifest.py"), "a") as f:
        f.write('module("a.py")\n')
    with pytest.raises(freeze.FreezeError) as e:
        freeze.read_manifest(d)
    assert "already froze it" in str(e.value)
    with open(os.path.join(d, "manifest.py"), "w") as f:
        f.write('require("aioble")\n')
    with pytest.raises(freeze.FreezeError) as e:
        freeze.read_manifest(d)
    assert "micropython-lib" in str(e.value)


def test_cli_reports_and_strict_budget(tmp_path, capsys, runtime):
    out = str(tmp_path / "rp")
    board = os.path.join(ROOT, "boards", "rp2040_sim7600")
    assert freeze.main([board, "--out", out]) == 0
    text = capsys.readouterr().out
    assert "ipa_core .mpy total:" in text and "budget 65536" in text
    assert "import check (MicroPython" in text
    assert freeze.main([board, "--out", out, "--no-check", "--strict",
                        "--budget", "1000"]) == 1
    err = capsys.readouterr().err
    assert "over the 1000-byte budget" in err and "--strict" in err


