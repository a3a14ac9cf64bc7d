"""Committed state of the virtual eUICC and its atomic persistence.

Everything an eUICC keeps across a power cycle lives in one `EuiccState`:
profiles, eIM Configuration Data with counters and association tokens,
pending notifications and eUICC Package Results with their sequence
numbers, configured addresses, immediate-enable configuration and the
rollback / fallback / emergency contexts. Logical channels and partial
STORE DATA are not state: a power cycle loses them, as on a real card.

`save` writes the JSON to a temporary file, fsyncs it and renames it over
the old one (then fsyncs the folder), so a crash leaves either the old or
the new state, never a mix.
"""

import json
import os

STATE_VERSION = 1

PROFILE_CLASSES = ("test", "provisioning", "operational")  # ProfileClass values 0, 1, 2
# ISD-P AIDs are 16 bytes like the ISD-R's: A0000005591010FFFFFFFF89 0000 1000, 0000 1100, ...
ISDP_AID_PREFIX = "A0000005591010FFFFFFFF890000"


class StateError(ValueError):
    """A state file or profile list that cannot be used as it is."""


def _default():
    return {
        "version": STATE_VERSION,
        "eid": None,
        "profiles": [],
        "eims": [],
        "seq": 0,  # last notification / eUICC Package Result sequence number used
        "token_counter": 0,  # last associationToken generated (never reset, SGP.32 5.9.4)
        "notifications": [],  # {"seq", "kind": "notification"|"result", "der", ...}
        "default_dp_address": None,
        "root_ds_address": "testrootsmds.example.com",
        "immediate_enable": {"flag": False, "oid": None, "address": None},
        "rollback": None,  # after enable with rollbackFlag: {"iccid", "eim_id", "counter", "txid", "seq"}
        "fallback_previous": None,  # ICCID to return to after ExecuteFallbackMechanism
        "emergency_previous": None,  # ICCID enabled before EnableEmergencyProfile
        "last_installed": None,  # ICCID of the last downloaded profile (ImmediateEnable)
        "http_params": None,  # hex of ConnectivityParameters.httpParams
        "next_isdp": 0,
        "sgp32": None,  # the SGP.32 version the card was last run as ("1.0", "1.1", "1.2")
    }


class EuiccState:
    """The committed state as a plain dict (`data`) with small helpers."""

    def __init__(self, data=None):
        self.data = _default()
        if data:
            self.data.update(data)

    # -- persistence -------------------------------------------------------------

    def dumps(self):
        return json.dumps(self.data, sort_keys=True, indent=1)

    @classmethod
    def load(cls, path):
        try:
            with open(path, "r", encoding="utf-8") as f:
                data = json.load(f)
        except ValueError as e:
            raise StateError("%s: not a virtual eUICC state file (%s)" % (path, e))
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise StateError(
                "%s: expected a state file of version %d, found %r"
                % (path, STATE_VERSION, data.get("version") if isinstance(data, dict) else data)
            )
        return cls(data)

    def save(self, path, text=None):
        """Atomic write: temp file, fsync, rename, fsync of the folder."""
        text = self.dumps() if text is None else text
        folder = os.path.dirname(os.path.abspath(path))
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass  # some file systems cannot fsync a directory
        finally:
            os.close(fd)

    # -- profiles ----------------------------------------------------------------

    @property
    def profiles(self):
        return self.data["profiles"]

    def find_profile(self, iccid):
        for p in self.data["profiles"]:
            if p["iccid"] == iccid:
                return p
        return None

    def find_by_aid(self, aid_hex):
        for p in self.data["profiles"]:
            if p["isdp_aid"].upper() == aid_hex.upper():
                return p
        return None

    def enabled_profile(self):
        for p in self.data["profiles"]:
            if p["state"] == "enabled":
                return p
        return None

    def fallback_profile(self):
        for p in self.data["profiles"]:
            if p.get("fallback"):
                return p
        return None

    def emergency_profile(self):
        for p in self.data["profiles"]:
            if p.get("emergency"):
                return p
        return None

    def ecall_active(self):
        """True while the Emergency Profile is the enabled one (SGP.32 ecallActive)."""
        p = self.enabled_profile()
        return bool(p and p.get("emergency"))

    def new_isdp_aid(self):
        n = self.data["next_isdp"]
        self.data["next_isdp"] = n + 1
        return ISDP_AID_PREFIX + "%04X" % (0x1000 + 0x100 * n)

    def add_profile(self, entry):
        """Validate one profile description and add it (see VirtualEuicc.load_profiles)."""
        if not isinstance(entry, dict):
            raise StateError("profile entry must be an object, found %r" % (entry,))
        iccid = str(entry.get("iccid", "")).upper().rstrip("F")
        if not (18 <= len(iccid) <= 20 and iccid.isdigit()):
            raise StateError("profile iccid must be 18..20 digits, found %r" % (entry.get("iccid"),))
        if self.find_profile(iccid):
            raise StateError("profile iccid %s appears twice" % iccid)
        cls = entry.get("class", "operational")
        if cls not in PROFILE_CLASSES:
            raise StateError("profile %s: class must be one of %s, found %r"
                             % (iccid, "/".join(PROFILE_CLASSES), cls))
        state = entry.get("state", "disabled")
        if state not in ("enabled", "disabled"):
            raise StateError("profile %s: state must be enabled or disabled, found %r" % (iccid, state))
        if state == "enabled" and self.enabled_profile():
            raise StateError("profile %s: only one profile can be enabled" % iccid)
        if entry.get("fallback") and self.fallback_profile():
            raise StateError("profile %s: only one profile can carry the fallback attribute" % iccid)
        ppr = entry.get("ppr", [])
        if not isinstance(ppr, list) or any(x not in ("ppr1", "ppr2") for x in ppr):
            raise StateError("profile %s: ppr must be a list of ppr1/ppr2, found %r" % (iccid, ppr))
        p = {
            "iccid": iccid,
            "isdp_aid": entry.get("isdp_aid") or self.new_isdp_aid(),
            "name": str(entry.get("name", "Profile " + iccid[-4:])),
            "provider": str(entry.get("provider", "ipa-iot test operator")),
            "nickname": entry.get("nickname"),
            "class": cls,
            "state": state,
            "fallback": bool(entry.get("fallback", False)),
            "fallback_allowed": bool(entry.get("fallback_allowed", True)),
            "emergency": bool(entry.get("emergency", False)),
            "preloaded": bool(entry.get("preloaded", True)),
            "notification_address": str(entry.get("notification_address", "smdp.example.com")),
            # {event: address} from the metadata's notificationConfigurationInfo (downloaded
            # profiles); absent for preloaded ones, which notify notification_address
            "notification_addresses": _addresses(iccid, entry.get("notification_addresses")),
            "ppr": ppr,
        }
        self.data["profiles"].append(p)
        return p

    # -- eIMs --------------------------------------------------------------------

    @property
    def eims(self):
        return self.data["eims"]

    def find_eim(self, eim_id):
        for e in self.data["eims"]:
            if e["eim_id"] == eim_id:
                return e
        return None

    # -- notifications and results -------------------------------------------------

    def next_seq(self):
        self.data["seq"] += 1
        return self.data["seq"]

    def add_pending(self, seq, kind, der, **extra):
        entry = {"seq": seq, "kind": kind, "der": der.hex()}
        entry.update(extra)
        self.data["notifications"].append(entry)
        return entry

    def pending(self, kind=None):
        return [n for n in self.data["notifications"] if kind is None or n["kind"] == kind]

    def remove_pending(self, seq):
        before = len(self.data["notifications"])
        self.data["notifications"] = [n for n in self.data["notifications"] if n["seq"] != seq]
        return len(self.data["notifications"]) != before


def _addresses(iccid, v):
    """notification_addresses of a profile entry: None or {install|enable|disable|delete: str}."""
    if v is None:
        return None
    if not isinstance(v, dict) or any(k not in ("install", "enable", "disable", "delete")
                                      or not isinstance(a, str) for k, a in v.items()):
        raise StateError("profile %s: notification_addresses must map install/enable/disable/"
                         "delete to addresses, found %r" % (iccid, v))
    return dict(v)
