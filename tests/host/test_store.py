"""ipa_host.store.FileStore: atomic, survives reopen, refuses broken files with a clear error."""

import json
import os

import pytest

from ipa_host.store import FileStore, StoreError


def test_put_get_delete_survive_reopen(tmp_path):
    path = str(tmp_path / "ipa.json")
    s = FileStore(path)
    assert s.get("missing", 7) == 7
    s.put("pending", {"step": "provide", "result": "BF5100"})
    s.put("ack", [1, 2])
    s.delete("ack")
    s.delete("never-there")
    again = FileStore(path)
    assert again.get("pending") == {"step": "provide", "result": "BF5100"}
    assert again.get("ack") is None
    assert again.keys() == ["pending"]


def test_bytes_are_kept_as_bytes_and_written_as_hex(tmp_path):
    path = tmp_path / "ipa.json"
    s = FileStore(str(path))
    blob = bytes(range(256))
    s.put("ipa.job", {"step": "deliver", "message": blob, "included": [1, 2]})
    doc = json.loads(path.read_text())
    assert doc["ipa.job"]["message"] == {"$hex": blob.hex().upper()}  # readable, and JSON
    got = FileStore(str(path)).get("ipa.job")
    assert got == {"step": "deliver", "message": blob, "included": [1, 2]}
    assert type(got["message"]) is bytes


def test_a_record_from_before_bytes_reads_as_it_was(tmp_path):
    # State files written before the store took bytes hold the TLVs as hex text; the IPA
    # (ipa_steps.blob) reads either, so the store hands them over unchanged.
    path = tmp_path / "ipa.json"
    path.write_text(json.dumps({"ipa.job": {"step": "deliver", "message": "BF5000"}}))
    assert FileStore(str(path)).get("ipa.job") == {"step": "deliver", "message": "BF5000"}


def test_bad_hex_in_the_state_file_is_a_clear_error(tmp_path):
    path = tmp_path / "ipa.json"
    path.write_text(json.dumps({"ipa.job": {"message": {"$hex": "XYZ"}}}))
    with pytest.raises(StoreError, match="ipa.json is unreadable"):
        FileStore(str(path))


def test_values_are_copies(tmp_path):
    s = FileStore(str(tmp_path / "ipa.json"))
    s.put("list", [1])
    got = s.get("list")
    got.append(2)
    assert s.get("list") == [1]


def test_no_temporary_file_left_and_old_content_kept_on_failure(tmp_path):
    path = tmp_path / "ipa.json"
    s = FileStore(str(path))
    s.put("a", 1)
    assert sorted(os.listdir(tmp_path)) == ["ipa.json"]
    with pytest.raises(TypeError):
        s.put("b", object())  # not JSON: nothing written, nothing changed
    assert json.loads(path.read_text()) == {"a": 1}
    assert s.get("b") is None


def test_broken_or_foreign_state_file_is_a_clear_error(tmp_path):
    path = tmp_path / "ipa.json"
    path.write_text("{half")
    with pytest.raises(StoreError, match="unreadable .*move it away"):
        FileStore(str(path))
    path.write_text("[1, 2]")
    with pytest.raises(StoreError, match="expected a JSON object, found list"):
        FileStore(str(path))


def test_unwritable_folder_names_the_file(tmp_path):
    s = FileStore(str(tmp_path / "sub" / "ipa.json"))
    (tmp_path / "sub").write_text("")  # the folder became a file under our feet
    with pytest.raises(StoreError, match="cannot write IPA state .*ipa.json"):
        s.put("a", 1)
    with pytest.raises(StoreError, match="cannot read IPA state .*ipa.json"):
        FileStore(str(tmp_path / "sub" / "ipa.json"))
