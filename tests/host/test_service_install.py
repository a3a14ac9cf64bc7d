"""`ipa service install|uninstall` through the real command into a temporary root folder, and
the shipped files themselves: the unit (checked by systemd-analyze verify), the udev rule
(the same modems as `--card at:auto`) and the example configuration (read by the real
configuration loader, every key it knows present)."""

import os
import re
import subprocess
import sys

from cli_contract import envelope, result
from ipa_host import config
from ipa_host.card.usb_find import KNOWN_MODEMS
from ipa_host.service import CONTRIB

IPA = os.path.join(os.path.dirname(sys.executable), "ipa")
UNIT = "etc/systemd/system/ipa.service"
RULES = "etc/udev/rules.d/77-ipa-iot-modem.rules"
CONF = "etc/ipa-iot/ipa.toml"


def ipa(*args):
    return subprocess.run([IPA] + list(args), capture_output=True, text=True, timeout=60)


def read(root, rel):
    with open(os.path.join(str(root), rel)) as f:
        return f.read()


def test_dry_run_changes_nothing(tmp_path):
    r = ipa("service", "install", "--root", str(tmp_path), "--dry-run")
    assert r.returncode == 0, r.stderr
    for rel in (UNIT, RULES, CONF):
        assert "would write        %s" % os.path.join(str(tmp_path), rel) in r.stdout
    assert "sudo systemctl enable --now ipa.service" in r.stdout
    assert os.listdir(str(tmp_path)) == []


def test_install_puts_a_hardened_unit_the_rule_and_the_config_in_place(tmp_path):
    r = ipa("service", "install", "--root", str(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for rel in (UNIT, RULES, CONF):
        assert "wrote              %s" % os.path.join(str(tmp_path), rel) in lines
    assert "  sudo systemctl daemon-reload" in lines
    unit = read(tmp_path, UNIT)
    keys = dict(line.split("=", 1) for line in unit.splitlines()
                if "=" in line and not line.startswith("#"))
    assert keys["ExecStart"] == "%s --config /etc/ipa-iot/ipa.toml run" % IPA
    assert keys["User"] == "ipa" and keys["Type"] == "notify"
    assert set(keys["SupplementaryGroups"].split()) == {"dialout", "plugdev"}
    for k, v in (("ProtectSystem", "strict"), ("StateDirectory", "ipa-iot"),
                 ("ProtectHome", "yes"), ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"),
                 ("Restart", "on-failure")):
        assert keys[k] == v, k
    assert keys["WatchdogSec"]
    # systemd's own parser: no unknown key, a real executable.
    v = subprocess.run(["systemd-analyze", "verify", os.path.join(str(tmp_path), UNIT)],
                       capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and v.stderr.strip() == "", v.stderr
    # The installed configuration works with the real command (card overridden: no modem).
    r = ipa("--config", os.path.join(str(tmp_path), CONF), "--home", str(tmp_path / "home"),
            "--card", "sim", "info")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("EID ")


def test_reinstall_keeps_the_users_config_and_refuses_foreign_files(tmp_path):
    root = str(tmp_path)
    assert ipa("service", "install", "--root", root).returncode == 0
    conf = os.path.join(root, CONF)
    with open(conf, "a") as f:
        f.write("# mine\n")
    r = ipa("service", "install", "--root", root, "--user", "modem")
    assert r.returncode == 0, r.stderr
    assert "updated            %s" % os.path.join(root, UNIT) in r.stdout
    assert "unchanged          %s" % os.path.join(root, RULES) in r.stdout
    assert "kept               %s  (exists; yours to edit)" % conf in r.stdout
    assert read(tmp_path, CONF).endswith("# mine\n")
    assert "User=modem\n" in read(tmp_path, UNIT)

    # A unit somebody else wrote is not replaced without --force.
    with open(os.path.join(root, UNIT), "w") as f:
        f.write("[Service]\nExecStart=/usr/bin/true\n")
    r = ipa("service", "install", "--root", root)
    assert r.returncode == 2
    assert "was not written by `ipa service install`" in r.stderr and "--force" in r.stderr
    assert read(tmp_path, UNIT) == "[Service]\nExecStart=/usr/bin/true\n"
    r = ipa("service", "install", "--root", root, "--force")
    assert r.returncode == 0 and "User=ipa\n" in read(tmp_path, UNIT)


def test_uninstall_removes_its_files_and_keeps_config_and_state(tmp_path):
    root = str(tmp_path)
    assert ipa("service", "install", "--root", root).returncode == 0
    r = ipa("service", "uninstall", "--root", root, "--dry-run")
    assert r.returncode == 0 and "would remove       %s" % os.path.join(root, UNIT) in r.stdout
    assert os.path.exists(os.path.join(root, UNIT))
    r = ipa("--json", "service", "uninstall", "--root", root)
    assert r.returncode == 0, r.stderr
    d = result(r.stdout, "service uninstall")
    assert [(s["action"], s["done"]) for s in d["steps"]] == [("remove", True), ("remove", True)]
    assert d["next"][0] == "sudo systemctl disable --now ipa.service"
    assert not os.path.exists(os.path.join(root, UNIT))
    assert not os.path.exists(os.path.join(root, RULES))
    assert os.path.exists(os.path.join(root, CONF))
    r = ipa("service", "uninstall", "--root", root)
    assert r.returncode == 0 and "absent             %s" % os.path.join(root, UNIT) in r.stdout
    # A file it did not write is left alone.
    os.makedirs(os.path.dirname(os.path.join(root, RULES)), exist_ok=True)
    with open(os.path.join(root, RULES), "w") as f:
        f.write("# local rule\n")
    r = ipa("service", "uninstall", "--root", root)
    assert r.returncode == 2 and "left alone" in r.stderr
    assert read(tmp_path, RULES) == "# local rule\n"


def test_create_user_only_on_the_running_system(tmp_path):
    r = ipa("service", "install", "--root", str(tmp_path), "--create-user",
            "--user", "ipa-test-nobody")
    assert r.returncode == 2
    assert "--create-user works on the running system only" in r.stderr
    assert "useradd --system" in r.stderr
    r = ipa("service", "install", "--root", str(tmp_path), "--user", "bad name")
    assert r.returncode == 2 and "expected a user name" in r.stderr


def test_udev_rule_covers_the_at_auto_table():
    with open(os.path.join(CONTRIB, "77-ipa-iot-modem.rules")) as f:
        text = f.read()
    rule = re.compile(r'^ATTRS\{idVendor\}=="([0-9a-f]{4})", ATTRS\{idProduct\}=="([0-9a-f]{4})",'
                      r' ENV\{\.IPA_IFNUM\}=="([0-9a-f]{2})", ENV\{ID_MM_PORT_IGNORE\}="1"$')
    ignored = set()
    for line in text.splitlines():
        m = rule.match(line)
        if m:
            ignored.add((int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16)))
        else:
            assert not line.startswith("ATTRS"), line
    assert ignored == {(v, p, i) for v, p, i, _ in KNOWN_MODEMS}


def test_example_config_parses_and_names_every_key():
    path = os.path.join(CONTRIB, "ipa.toml")
    cfg = config.load_config(path)
    assert cfg["card"]["spec"] == "at:auto" and cfg["ipa"]["home"] == "/var/lib/ipa-iot"
    with open(path) as f:
        text = f.read()
    section = None
    present = set()
    for line in text.splitlines():
        m = re.match(r"^\[(\w+)\]$", line)
        if m:
            section = m.group(1)
        m = re.match(r'^(?:# )?(\w+) = ("[^"]*"|\d+|true|false)$', line)  # a setting
        if m and section:
            present.add((section, m.group(1)))
    known = {(s, k) for s, keys in config.DEFAULTS.items() for k in keys}
    assert present == known


def test_create_user_on_the_running_system(tmp_path):
    # A dry run on the real root: nothing is written, the user is not created.
    r = ipa("service", "install", "--dry-run", "--create-user", "--user", "ipa-test-nobody")
    if os.geteuid() == 0:
        assert r.returncode == 0, r.stderr
        assert re.search(r"^would create user +ipa-test-nobody  \(useradd --system "
                         r"--user-group .* ipa-test-nobody\)$", r.stdout, re.M), r.stdout
    else:
        assert r.returncode == 2 and "--create-user needs root" in r.stderr


def test_unwritable_root_says_to_use_sudo():
    import shutil
    import tempfile

    # A root folder the user may not write (as root: run as nobody, in a folder nobody reaches).
    top = tempfile.mkdtemp(prefix="ipa-service-test-")
    root = os.path.join(top, "ro")
    os.mkdir(root)
    try:
        os.chmod(top, 0o755)
        os.chmod(root, 0o555)
        cmd = [IPA, "service", "install", "--root", root]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    finally:
        os.chmod(root, 0o755)
        shutil.rmtree(top)
    assert r.returncode == 1, r.stderr
    assert "permission denied; run it as root (sudo " in r.stderr
    assert os.path.join(root, "etc") in r.stderr


def test_json_contract_of_service(tmp_path):
    root = str(tmp_path)
    r = ipa("--json", "service", "install", "--root", root, "--dry-run")
    assert r.returncode == 0, r.stderr
    d = result(r.stdout, "service install")
    assert d["dryRun"] is True
    assert [s["action"] for s in d["steps"]][:3] == ["write", "write", "write"]
    assert not any(s["done"] for s in d["steps"])
    os.makedirs(os.path.dirname(os.path.join(root, UNIT)))
    with open(os.path.join(root, UNIT), "w") as f:
        f.write("[Service]\n")
    r = ipa("--json", "service", "install", "--root", root)
    assert r.returncode == 2
    doc = envelope(r.stdout, "service install")
    assert doc["ok"] is False and doc["error"]["code"] == "usage"
    assert "was not written by `ipa service install`" in doc["error"]["message"]
