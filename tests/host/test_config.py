"""ipa_host.config: defaults, overlay, and a clear error for every kind of mistake."""

import pytest

from ipa_host.config import ConfigError, find_config, load_config


def write(tmp_path, text):
    p = tmp_path / "ipa.toml"
    p.write_text(text)
    return str(p)


def test_defaults_without_a_file():
    cfg = load_config(None)
    assert cfg["card"]["spec"] == "sim" and cfg["eim"]["binding"] == "asn1"
    assert cfg["ipa"]["poll_interval"] == 60
    assert cfg["download"]["max_package"] == 4 * 1024 * 1024


def test_file_overlays_defaults(tmp_path):
    cfg = load_config(write(tmp_path, '[card]\nspec = "pcsc:0"\n[eim]\nbinding = "json"\n'
                                      'allow_http = true\n[ipa]\npoll_interval = 5\n'))
    assert cfg["card"]["spec"] == "pcsc:0"
    assert cfg["eim"]["binding"] == "json" and cfg["eim"]["allow_http"] is True
    assert cfg["ipa"]["poll_interval"] == 5 and cfg["ipa"]["max_interval"] == 3600


@pytest.mark.parametrize("text, message", [
    ("[cards]\nspec='sim'\n", r"unknown section \[cards\]"),
    ("[card]\nspek='sim'\n", r"unknown key \[card\] spek"),
    ("[eim]\nbinding='xml'\n", r"binding = 'xml': expected one of asn1, json"),
    ("[card]\nsegment_size=300\n", r"segment_size = 300: expected a whole number 1..255"),
    ("[download]\nmax_package=100\n",
     r"max_package = 100: expected a whole number 1024..16777215"),
    ("[eim]\nallow_http='yes'\n", r"allow_http = 'yes': expected true or false"),
    ("[ipa]\npoll_interval=100\nmax_interval=10\n", "max_interval 10 is below poll_interval 100"),
    ("[card\n", "not valid TOML"),
])
def test_mistakes_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_explicit_missing_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("IPA_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="does not exist"):
        find_config(str(tmp_path / "nope.toml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert find_config(None) in (None, "/etc/ipa-iot/ipa.toml")
    (tmp_path / "ipa-iot").mkdir()
    (tmp_path / "ipa-iot" / "ipa.toml").write_text("")
    assert find_config(None) == str(tmp_path / "ipa-iot" / "ipa.toml")
