"""Smoke test of tools/bench_serial.py: its figures add up (it is a measurement; no speed asserted).

A tiny script (GetEID + a 266-byte LoadEuiccPackage) runs over the pty to the
simulated modem in both modes at segment 128. The APDU counts are compared
with numbers worked out here from the ES10 request/response sizes and the
virtual eUICC's 256-byte answer chunks; the line bytes with what the modem
received and wrote; the line-rate limit with its formula.
"""

import json
import math
import os
import sys

import pytest

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "tools")
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)

import bench_serial as bench  # noqa: E402

BAUD = 460800  # paced, but quick
SEG = 128
CARD_CHUNK = 256  # data bytes per GET RESPONSE of the virtual eUICC (61xx for the rest)
STALE = 3  # MANAGE CHANNEL close of channels 1-3 at AtCard.open (generic profile)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    got = bench.run_bench(tmp, personalities=("textbook",), modes=("cgla", "csim"),
                          segments=(SEG,), baud=BAUD, script="tiny")
    return {r["mode"]: r for r in got}


def expected_store_data(r):
    return sum(math.ceil(q / SEG) for q, _r in r["exchanges"])


def expected_get_response(r):
    # The card speaks T=0: every answer with data is announced (61xx) and fetched in chunks.
    return sum(math.ceil(n / CARD_CHUNK) for _q, n in r["exchanges"])


def test_script_ran_as_expected(runs):
    for r in runs.values():
        assert r["steps"] == ["GetEID", "LoadEuiccPackage"]
        q, n = r["exchanges"][1]
        assert q > 255 and n > CARD_CHUNK  # several STORE DATA blocks, several answers
        assert r["es10_bytes"] == sum(a + b for a, b in r["exchanges"])
    assert runs["cgla"]["exchanges"] == runs["csim"]["exchanges"]  # same ES10 bytes both ways


def test_apdu_counts(runs):
    cgla, csim = runs["cgla"], runs["csim"]
    # CGLA: the modem owns the channel, IsdrSession sends STORE DATA only.
    assert cgla["apdus_ipa"] == expected_store_data(cgla)
    # CSIM: TERMINAL CAPABILITY, MANAGE CHANNEL open, SELECT ... MANAGE CHANNEL close.
    assert csim["apdus_ipa"] == expected_store_data(csim) + 4
    # AtCard adds the GET RESPONSEs of the answers and the stale-channel closes; in CSIM mode
    # the SELECT's FCI comes through one more GET RESPONSE.
    assert cgla["apdus_line"] == cgla["apdus_ipa"] + expected_get_response(cgla) + STALE
    assert csim["apdus_line"] == csim["apdus_ipa"] + expected_get_response(csim) + 1 + STALE
    # The card sees the line's APDUs, plus in CGLA mode those the modem sends for
    # AT+CCHO (MANAGE CHANNEL, SELECT, GET RESPONSE of the FCI) and AT+CCHC (close).
    assert csim["apdus_card"] == csim["apdus_line"]
    assert cgla["apdus_card"] == cgla["apdus_line"] + 4
    # Same AT commands besides the APDUs, except AT+CCHO and AT+CCHC.
    assert cgla["at_commands"] - cgla["apdus_line"] == csim["at_commands"] - csim["apdus_line"] + 2


def test_line_bytes_agree_at_both_ends(runs):
    for r in runs.values():
        assert r["line_out"] == r["modem_received"] > 0
        assert r["line_in"] == r["modem_written"] > 0
        # APDUs travel as hex inside the AT lines: at least two line bytes per APDU byte.
        assert r["apdu_bytes"] == r["apdu_out"] + r["apdu_in"]
        assert r["line_out"] >= 2 * r["apdu_out"] and r["line_in"] >= 2 * r["apdu_in"]
        assert r["overhead"] == round((r["line_out"] + r["line_in"]) / r["apdu_bytes"], 3)
    assert runs["csim"]["card_bytes"] == runs["csim"]["apdu_bytes"]
    # the phases add up to the whole run
    for r in runs.values():
        for key in ("line_out", "line_in", "at_commands", "apdus_line", "apdus_ipa"):
            assert sum(p[key] for p in r["phases"].values()) == r[key], key


def test_line_rate_limit(runs):
    for r in runs.values():
        assert r["baud"] == BAUD
        assert r["limit_s"] == round((r["line_out"] + r["line_in"]) * 10 / BAUD, 4)
        # both directions are paced: the run cannot beat the line
        assert r["wall_s"] >= r["limit_s"]
        assert r["ratio"] == pytest.approx(r["wall_s"] / r["limit_s"], rel=0.01)


def test_write_docs_keeps_other_sections(runs, tmp_path):
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\nintro\n\n## Other bench\n\nkept\n")
    text = bench.section([runs["cgla"], runs["csim"]], "python tools/bench_serial.py --x", BAUD,
                         "tiny")
    bench.write_docs(text, str(doc))
    bench.write_docs(text, str(doc))  # a second run replaces, never duplicates
    out = doc.read_text()
    assert out.count(bench.SECTION) == 1
    assert "## Other bench\n\nkept\n" in out
    assert "python tools/bench_serial.py --x" in out
    row = [ln for ln in out.splitlines() if ln.startswith("| textbook") and " csim " in ln]
    assert len(row) == 1 and (" %d |" % runs["csim"]["apdus_line"]) in row[0]


def test_cli_json_unpaced(capsys):
    assert bench.main(["--script", "tiny", "--personalities", "textbook", "--modes", "cgla",
                       "--segments", "255", "--baud", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (r,) = out["runs"]
    assert (r["mode"], r["segment"], r["limit_s"], r["ratio"]) == ("cgla", 255, None, None)
    assert r["line_out"] == r["modem_received"] and r["line_in"] == r["modem_written"]
