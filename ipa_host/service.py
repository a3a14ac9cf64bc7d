"""`ipa service install|uninstall`: the IPA as a systemd service on a Pi (or any Linux host).

Puts the files shipped in ipa_host/contrib/ in place, under a root folder ("/" by default;
--root DIR for an image being built, or a test):

    etc/systemd/system/ipa.service        the hardened unit, ExecStart = this `ipa`
    etc/udev/rules.d/77-ipa-iot-modem.rules   ModemManager kept off the known AT ports
    etc/ipa-iot/ipa.toml                  the example configuration, only when missing

Files it wrote carry a first-line marker; a file without it is not overwritten or removed
unless --force. The `ipa` user is created (useradd) only when asked (--create-user), as
root, on the running system. Nothing runs systemctl or udevadm: the next commands are
printed. --dry-run says what would happen and changes nothing.
"""

import grp
import os
import pwd
import subprocess
import sys

CONTRIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "contrib")
MARKER = "# Installed by `ipa service install` (ipa-iot)"
UNIT = ("ipa.service", "etc/systemd/system/ipa.service")
RULES = ("77-ipa-iot-modem.rules", "etc/udev/rules.d/77-ipa-iot-modem.rules")
CONFIG = ("ipa.toml", "etc/ipa-iot/ipa.toml")
STATE_DIR = "/var/lib/ipa-iot"
GROUPS = ("dialout", "plugdev")
DEFAULT_USER = "ipa"
MAX_FILE = 65536  # an installed file read back to compare
DONE = {"write": "wrote", "update": "updated", "remove": "removed", "create user": "created user"}


class ServiceError(ValueError):
    """A refusal that names the file and what to do (exit 2)."""


def add_parser(sub):
    sv = sub.add_parser("service", help="install the systemd unit, udev rule and example config",
                        description="Install or remove the IPA's systemd service (ipa run as a "
                                    "dedicated user), the udev rule that keeps ModemManager "
                                    "off the modem's AT port, and an example "
                                    "/etc/ipa-iot/ipa.toml (docs/cli.md).")
    ssub = sv.add_subparsers(dest="service_command", metavar="ACTION")
    for name, text in (("install", "put the files in place, print what to run next"),
                       ("uninstall", "remove the unit and the udev rule (the configuration "
                                     "and the state stay)")):
        a = ssub.add_parser(name, help=text, description=text)
        a.add_argument("--root", metavar="DIR", default="/",
                       help="install under this root folder (default /; an image or a test)")
        a.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
        a.add_argument("--force", action="store_true",
                       help="also overwrite / remove files that `ipa service` did not write")
        if name == "install":
            a.add_argument("--user", default=DEFAULT_USER,
                           help="the user the service runs as (default %s)" % DEFAULT_USER)
            a.add_argument("--create-user", action="store_true",
                           help="create that system user (needs root, on the running system)")
            a.add_argument("--ipa", metavar="PATH",
                           help="the `ipa` executable the unit starts (default: this one)")


def this_ipa():
    """The `ipa` command of this installation (the unit's ExecStart)."""
    argv0 = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(argv0) == "ipa" and os.path.isfile(argv0):
        return argv0
    return os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "ipa")


def _shipped(name):
    with open(os.path.join(CONTRIB, name)) as f:
        return f.read()


def _installed(path):
    try:
        with open(path) as f:
            return f.read(MAX_FILE)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise  # main: run it as root
    except (OSError, UnicodeDecodeError) as e:
        raise ServiceError("%s: cannot read it (%s)" % (path, e))


def _ours(text):
    return text is not None and text.startswith(MARKER)


class Plan:
    """What install/uninstall does, step by step: each step is printed, done unless dry."""

    def __init__(self, root, dry, out):
        self.root = root
        self.dry = dry
        self.out = out
        self.steps = []

    def path(self, rel):
        return os.path.join(self.root, rel)

    def say(self, action, path, note=""):
        """One step: a change ("write", "update", "remove", "create user": done, or "would
        ..." when dry) or a finding ("unchanged", "kept", "absent", "user exists", ...)."""
        self.steps.append({"action": action, "path": path, "done": action in DONE and not self.dry})
        verb = ("would " + action if self.dry else DONE[action]) if action in DONE else action
        self.out.write("%-18s %s%s\n" % (verb, path, "  (%s)" % note if note else ""))

    def write(self, rel, text, keep_existing=False, force=False):
        path = self.path(rel)
        old = _installed(path)
        if old == text:
            return self.say("unchanged", path)
        if old is not None and keep_existing:
            return self.say("kept", path, "exists; yours to edit")
        if old is not None and not _ours(old) and not force:
            raise ServiceError("%s exists and was not written by `ipa service install`: move "
                               "it away, or give --force to replace it" % path)
        self.say("write" if old is None else "update", path)
        if not self.dry:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + ".ipa-new"
            with open(tmp, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)

    def remove(self, rel, force=False):
        path = self.path(rel)
        old = _installed(path)
        if old is None:
            return self.say("absent", path)
        if not _ours(old) and not force:
            raise ServiceError("%s was not written by `ipa service install`: left alone (give "
                               "--force to remove it)" % path)
        self.say("remove", path)
        if not self.dry:
            os.remove(path)


def _user_step(plan, user, create):
    """Create the service user when asked (root, running system); else say how."""
    try:
        pwd.getpwnam(user)
        return plan.say("user exists", user)
    except KeyError:
        pass
    groups = [g for g in GROUPS if _group_exists(g)]
    cmd = ["useradd", "--system", "--user-group", "--home-dir", STATE_DIR, "--no-create-home",
           "--shell", "/usr/sbin/nologin"] + (["--groups", ",".join(groups)] if groups else []) \
        + [user]
    if not create:
        plan.say("no user", user, "create it: sudo " + " ".join(cmd))
        return
    if os.path.abspath(plan.root) != "/":
        raise ServiceError("--create-user works on the running system only (not with --root "
                           "%s): create the user in the image with: %s" % (plan.root, " ".join(cmd)))
    if os.geteuid() != 0:
        raise ServiceError("--create-user needs root: sudo %s service install --create-user"
                           % this_ipa())
    plan.say("create user", user, " ".join(cmd))
    if not plan.dry:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise ServiceError("%s failed: %s" % (" ".join(cmd), r.stderr.strip()))


def _group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def install(root="/", user=DEFAULT_USER, ipa=None, create_user=False, dry=False, force=False,
            out=sys.stdout):
    if not user or not user.replace("-", "").replace("_", "").isalnum() or len(user) > 32:
        raise ServiceError("--user %r: expected a user name (letters, digits, - and _)" % user)
    ipa = ipa or this_ipa()
    if not os.path.isabs(ipa):
        raise ServiceError("--ipa %s: give the absolute path of the ipa executable" % ipa)
    plan = Plan(root, dry, out)
    unit = _shipped(UNIT[0]).replace("@IPA@", ipa).replace("@USER@", user)
    plan.write(UNIT[1], unit, force=force)
    plan.write(RULES[1], _shipped(RULES[0]), force=force)
    plan.write(CONFIG[1], _shipped(CONFIG[0]), keep_existing=True)
    _user_step(plan, user, create_user)
    nxt = ["sudo udevadm control --reload && sudo udevadm trigger --subsystem-match=tty",
           "sudo systemctl daemon-reload",
           "sudo systemctl enable --now ipa.service",
           "journalctl -u ipa -f"]
    out.write("next: edit /etc/ipa-iot/ipa.toml ([card] spec, [eim]), then run:\n")
    for line in nxt:
        out.write("  %s\n" % line)
    return {"steps": plan.steps, "next": nxt, "dryRun": dry}


def uninstall(root="/", dry=False, force=False, out=sys.stdout):
    plan = Plan(root, dry, out)
    first = "sudo systemctl disable --now ipa.service"
    plan.remove(UNIT[1], force=force)
    plan.remove(RULES[1], force=force)
    out.write("kept %s and %s (your configuration and the IPA's state; remove them by hand)\n"
              % (plan.path(CONFIG[1]), STATE_DIR))
    nxt = ["sudo systemctl daemon-reload", "sudo udevadm control --reload"]
    out.write("next (stop it first if it runs: %s):\n" % first)
    for line in nxt:
        out.write("  %s\n" % line)
    return {"steps": plan.steps, "next": [first] + nxt, "dryRun": dry}


def run(a, out):
    """`ipa service ...` -> (exit code, the --json error object or None); the result goes to
    a.json_result for the one --json envelope (ipa_host.cli_json), the steps to `out`
    otherwise. 2: refused (with the reason on stderr), 1: the file system failed."""
    if a.service_command not in ("install", "uninstall"):
        return _refused(ServiceError("ipa service: choose an action: install or uninstall"))
    text = open(os.devnull, "w") if a.json else out
    try:
        if a.service_command == "install":
            r = install(a.root, a.user, a.ipa, a.create_user, a.dry_run, a.force, out=text)
        else:
            r = uninstall(a.root, a.dry_run, a.force, out=text)
    except ServiceError as e:
        return _refused(e)
    except PermissionError as e:
        return _failed(e, "%s: permission denied; run it as root (sudo %s service %s), or give "
                          "--root DIR" % (e.filename, this_ipa(), a.service_command))
    except OSError as e:
        return _failed(e, "%s: %s" % (getattr(e, "filename", None) or "service", e.strerror or e))
    finally:
        if text is not out:
            text.close()
    a.json_result = r
    return 0, None


def _refused(e):
    sys.stderr.write("ipa: %s\n" % e)
    return 2, {"code": "usage", "type": type(e).__name__, "message": str(e)}


def _failed(e, message):
    sys.stderr.write("ipa: %s\n" % message)
    return 1, {"code": "failed", "type": type(e).__name__, "message": message}
