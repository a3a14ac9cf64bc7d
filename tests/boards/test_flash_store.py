"""boards/common/flash_store.py: the IPA's progress store on a board's flash.

What a user would check: what was put is there after a restart; a power cut
at any moment of a write leaves the old or the new state (a torn temporary
file, a cut between remove and rename on FAT, a truncated or damaged state
file), with a log line saying what was recovered; the file stays bounded; a
whole IPA procedure cut at every write resumes and reports exactly once.
Plain functions with assert: pytest on CPython, tools/mp_test.py on MicroPython.
"""

from ipa_core.compat import json

import flash_store
from flash_store import FlashStore, StoreError
from ipa_core import tlv
from ipa_core.errors import IpaError
from ipa_core.ipa import Ipa
from ipa_core.ipa_store import JOB, NOTIFIED

import fake_eim as fe
from boards_util import exists, listdir, read, scratch, write
from fake_euicc import ICCID_B, ICCID_C, FakeEuicc


def _store(log=None, **kw):
    d = scratch()
    lines = log if log is not None else []
    return FlashStore(d + "/state.json", log=lines.append, **kw), d, lines


def test_put_get_delete_and_restart():
    s, d, lines = _store()
    assert s.recovered == "empty" and s.keys() == []
    s.put("ipa.job", {"v": 1, "step": "load", "ops": [1, 2]})
    s.put("ipa.notified", [3, 4])
    s.delete("ipa.absent")  # no error, no write
    assert s.writes == 2
    got = s.get("ipa.job")
    got["step"] = "changed"  # a copy: the store does not change
    assert s.get("ipa.job") == {"v": 1, "step": "load", "ops": [1, 2]}
    assert s.get("missing", 7) == 7
    again = FlashStore(d + "/state.json", log=lines.append)
    assert again.recovered == "clean"
    assert again.keys() == ["ipa.job", "ipa.notified"]
    assert again.get("ipa.notified") == [3, 4]
    again.delete("ipa.job")
    assert FlashStore(d + "/state.json").keys() == ["ipa.notified"]
    assert listdir(d) == ["state.json"]  # no temporary file left behind
    assert lines == []  # nothing to recover, nothing said


def test_file_format_has_length_and_crc():
    s, d, _ = _store()
    s.put("k", "v")
    raw = read(d + "/state.json")
    head, body = raw.split(b"\n", 1)
    parts = head.split()
    assert parts[0] == b"IPA1" and int(parts[1]) == len(body)
    assert json.loads(body) == {"k": "v"}
    assert flash_store.decode(raw) == {"k": "v"}


def test_cut_while_writing_the_temporary_file_keeps_the_old_state():
    s, d, lines = _store()
    s.put("ipa.job", {"step": "load"})
    good = read(d + "/state.json")
    # The power went while the next state was being written: half a temporary file.
    new = flash_store.encode({"ipa.job": {"step": "deliver"}})
    write(d + "/state.json.tmp", new[:len(new) // 2])
    r = FlashStore(d + "/state.json", log=lines.append)
    assert r.recovered == "clean"
    assert r.get("ipa.job") == {"step": "load"}
    assert listdir(d) == ["state.json"] and read(d + "/state.json") == good
    assert len(lines) == 1 and "discarded" in lines[0] and "state.json.tmp" in lines[0], lines


def test_cut_between_remove_and_rename_recovers_the_new_state():
    # MicroPython's FAT driver renames over a file by removing it first: a cut in between
    # leaves only the complete temporary file.
    s, d, lines = _store()
    s.put("ipa.job", {"step": "load"})
    flash_store.os.rename(d + "/state.json", d + "/state.json.tmp")
    r = FlashStore(d + "/state.json", log=lines.append)
    assert r.recovered == "tmp"
    assert r.get("ipa.job") == {"step": "load"}
    assert listdir(d) == ["state.json"]
    assert "recovered the state from" in lines[0] and "is missing" in lines[0], lines


def test_truncated_state_file_falls_back_to_a_good_temporary_file():
    s, d, lines = _store()
    s.put("a", 1)
    s.put("a", 2)
    raw = read(d + "/state.json")
    write(d + "/state.json.tmp", raw)  # the complete new state
    write(d + "/state.json", raw[:-3])  # the state file cut short
    r = FlashStore(d + "/state.json", log=lines.append)
    assert r.recovered == "tmp" and r.get("a") == 2
    assert "truncated" in lines[0] and "recovered" in lines[0], lines


def test_corrupt_state_without_backup_starts_empty_and_keeps_the_evidence():
    for damage in ("truncate", "flip", "garbage", "not-an-object"):
        s, d, lines = _store()
        s.put("ipa.job", {"step": "deliver", "message": "BF50"})
        raw = read(d + "/state.json")
        if damage == "truncate":
            bad = raw[:len(raw) - 5]
        elif damage == "flip":
            i = len(raw) - 4
            bad = raw[:i] + bytes((raw[i] ^ 0x01,)) + raw[i + 1:]
        elif damage == "garbage":
            bad = b"\xff" * 40
        else:
            body = b"[1, 2]"
            bad = flash_store.MAGIC + b" %d -\n" % len(body) + body
        write(d + "/state.json", bad)
        r = FlashStore(d + "/state.json", log=lines.append)
        assert r.recovered == "corrupt" and r.keys() == [], damage
        assert read(d + "/state.json.bad") == bad, damage  # kept for a person to look at
        assert not exists(d + "/state.json"), damage
        assert len(lines) == 1 and "unreadable" in lines[0] and "empty state" in lines[0], \
            (damage, lines)
        r.put("x", 1)  # and the store works again
        assert FlashStore(d + "/state.json").get("x") == 1


def test_damage_is_named():
    raw = flash_store.encode({"k": "value"})
    for bad, words in ((raw[:-2], "truncated"), (raw.replace(b"value", b"valuf"), "CRC32"),
                       (b"IPA1 x 0\n{}", "not a number"), (b"hello\n{}", "header"),
                       (b"{}" * 30, "no header")):
        try:
            flash_store.decode(bad)
        except ValueError as e:
            assert words in str(e), (bad, str(e))
        else:
            raise AssertionError("%r decoded" % bad)


def test_size_is_bounded():
    s, d, _ = _store(max_bytes=200)
    s.put("small", "x" * 10)
    before = read(d + "/state.json")
    try:
        s.put("big", "y" * 300)
    except StoreError as e:
        assert "200" in str(e) and "state.json" in str(e)
        assert isinstance(e, IpaError) and e.transient  # the IPA retries, does not give up
    else:
        raise AssertionError("a 300-byte value fit in 200 bytes")
    assert s.keys() == ["small"] and read(d + "/state.json") == before
    # An oversized file on flash (not written by us) is not read at all.
    write(d + "/state.json", b"IPA1 5000 -\n" + b" " * 5000)
    lines = []
    r = FlashStore(d + "/state.json", max_bytes=200, log=lines.append)
    assert r.recovered == "corrupt" and "more than the 200" in lines[0], lines


def test_value_that_is_not_json_is_refused_and_nothing_stored():
    s, d, _ = _store()
    s.put("ok", 1)
    for bad in ({1, 2}, {"k": object()}, {3: "int key"}):
        try:
            s.put("bad", bad)
        except TypeError:
            pass
        else:
            raise AssertionError("%r was stored" % (bad,))
    assert s.keys() == ["ok"] and FlashStore(d + "/state.json").keys() == ["ok"]
    assert listdir(d) == ["state.json"]


def test_bytes_are_kept_and_written_as_hex_in_pieces():
    s, d, _ = _store()
    blob = bytes(range(256)) * 3  # several HEX_CHUNKs
    job = {"step": "deliver", "message": blob, "parts": [b"", b"\x01"], "included": []}
    s.put("ipa.job", job)
    got = FlashStore(d + "/state.json").get("ipa.job")
    assert got == job and type(got["message"]) is bytes
    raw = read(d + "/state.json")
    body = json.loads(raw.split(b"\n", 1)[1])
    from ipa_core.compat import hexlify

    assert body["ipa.job"]["message"] == {"$hex": hexlify(blob).decode().upper()}
    assert raw == flash_store.encode({"ipa.job": job})  # the piecewise write, byte for byte


def test_a_record_from_before_bytes_reads_as_it_was():
    # A board updated in the middle of a procedure: its file holds the TLVs as hex text
    # (ipa_steps.blob reads either).
    d = scratch()
    body = b'{"ipa.job": {"step": "deliver", "message": "BF5000"}}'
    from ipa_core.compat import crc32

    write(d + "/state.json", b"IPA1 %d %08x\n" % (len(body), crc32(body) & 0xFFFFFFFF) + body)
    s = FlashStore(d + "/state.json")
    assert s.recovered == "clean" and s.get("ipa.job") == {"step": "deliver", "message": "BF5000"}


# ---- a whole IPA procedure with the power cut inside every write ----------------------------


class PowerCut(BaseException):
    """The device loses power: nothing may catch it (a BaseException, like SystemExit: the
    IPA counts Exceptions in a step as failed attempts)."""


class Cutter:
    """Replaces flash_store's `open` and `os`: cuts the power at write number `at`, at
    `stage` "torn" (half the temporary file written) or "rename" (the temporary file
    complete, the rename not done)."""

    def __init__(self, at, stage):
        self.at = at
        self.stage = stage
        self.n = 0
        self.cut = False
        self.os = flash_store.os
        import builtins

        self.open = builtins.open

    def __enter__(self):
        flash_store.open = self._open
        flash_store.os = self
        return self

    def __exit__(self, *exc):
        import builtins

        flash_store.open = builtins.open
        flash_store.os = self.os

    def _open(self, path, mode="r"):
        f = self.open(path, mode)
        if "w" not in mode:
            return f
        self.n += 1
        if self.n != self.at or self.stage != "torn":
            return f
        cutter = self

        class Torn:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                if not cutter.cut:  # write() closed it (a second close fails before 1.14)
                    f.close()

            def write(self, data):
                f.write(data[:len(data) // 2])
                f.close()
                cutter.cut = True
                raise PowerCut("torn write")

            def flush(self):
                pass

        return Torn()

    def rename(self, a, b):
        if self.n == self.at and self.stage == "rename" and a.endswith(".tmp") and not self.cut:
            self.cut = True
            raise PowerCut("before rename")
        return self.os.rename(a, b)

    def remove(self, path):
        return self.os.remove(path)

    def stat(self, path):
        return self.os.stat(path)


def _psmo_world():
    card = FakeEuicc()
    card.add_notification("install", ICCID_C)
    eim = fe.FakeEim("asn1")
    eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)], txid=b"\x01\x02"))
    return card, eim


def _run_with_cut(at, stage):
    card, eim = _psmo_world()
    d = scratch()
    path = d + "/ipa_state.json"
    with Cutter(at, stage) as c:
        try:
            Ipa(card.session(), eim, FlashStore(path, log=None)).poll_once()
        except PowerCut:
            pass
    logs = []
    for _ in range(4):  # reboots: only the flash remembers
        ipa = Ipa(card.session(), eim, FlashStore(path, log=logs.append))
        r = ipa.poll_once()
        if r["idle"] and r["error"] is None and ipa.store.get(JOB) is None:
            break
    else:
        raise AssertionError("no idle cycle after a cut at write %d (%s)" % (at, stage))
    return card, eim, c, path, logs


def test_psmo_cycle_survives_a_power_cut_inside_every_write():
    card, eim, c, _, _ = _run_with_cut(0, "none")
    writes = c.n
    assert writes >= 4, writes  # job written before load, result, delivery, removals
    for at in range(1, writes + 1):
        for stage in ("torn", "rename"):
            card, eim, c, path, logs = _run_with_cut(at, stage)
            where = "cut at write %d (%s)" % (at, stage)
            assert c.cut, where
            # The eUICC ran the package once; the eIM got one result, the signed bytes.
            assert card.loads == 1 and card.runs == 1, where
            assert card.enabled() == ICCID_B, where
            assert len(set(eim.package_results)) == 1, where
            assert fe.result_seq(tlv.decode(eim.package_results[0])) is not None, where
            # Every notification reached the eIM and left the eUICC.
            assert card.pending == [], where
            assert len(eim.notifications) >= 3, where
            store = FlashStore(path)
            assert store.get(JOB) is None and store.get(NOTIFIED) is None, where
            # The restart said what it found on flash.
            assert any("discarded" in line or "recovered" in line for line in logs), \
                (where, logs)
