"""Per-EID state of the simulated eIM, one JSON file per eUICC, written atomically.

    <folder>/eids/<EID>.json
      eid                 32 digits
      association_token   the associationToken of this eIM's configuration on that
                          eUICC (None: "84 01 00" is signed), SGP.32 2.11.1.2
      counter             last counterValue used in an EuiccPackageRequest (the next
                          one is counter + 1; the eUICC refuses anything not greater)
      euicc_cert          eUICC certificate DER (hex) to verify euiccSignEPR, or None
      next_id             id of the next queued item
      queue               eIM Packages waiting for ESipa.GetEimPackage, oldest first
      delivered           packages handed out (with counter, eimTransactionId, DER)
      results             EimPackageResults received (ESipa.ProvideEimPackageResult)
      notifications       notifications received (HandleNotification, ePRAndNotifications,
                          ipaEuiccData, PIRs)
      acknowledged        seqNumbers answered in eimAcknowledgements
      state_changes       notifyStateChange / stateChangeCause / rPLMN seen in polls
    <folder>/unattributed.json
                          notifications no known EID could be found for

Every change is written to a temporary file, flushed, fsynced and renamed
over the old one (and the folder fsynced), so a crash or restart at any
point leaves either the old or the new state, never a torn file. Lists are
bounded; the oldest records go first and `dropped` counts them.
"""

import json
import os
import re
import threading
import time

MAX_QUEUE = 1000
MAX_RECORDS = 2000
MAX_DELIVERED = 500
MAX_ACKS = 5000

EID_RE = re.compile(r"[0-9]{32}")


class StateError(Exception):
    """A state file that cannot be read, or an EID that is not 32 digits."""


def check_eid(eid):
    """32 decimal digits (the EID as written, SGP.29), else ValueError."""
    if not isinstance(eid, str) or not EID_RE.fullmatch(eid):
        raise ValueError("EID must be 32 decimal digits, got %r" % (eid,))
    return eid


def _new(eid):
    return {"eid": eid, "association_token": None, "counter": 0, "euicc_cert": None,
            "next_id": 1, "queue": [], "delivered": [], "results": [], "notifications": [],
            "acknowledged": [], "state_changes": [], "polls": 0, "last_poll": None,
            "dropped": 0, "created": time.time()}


def read_config(path):
    """A server's config.json as a dict ({} when there is none); unreadable: ValueError."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError("%s: cannot read: %s" % (path, e))


def _write_atomic(path, data):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename is still atomic
    finally:
        os.close(dfd)


class Store:
    """The per-EID records under `folder`/eids, cached in memory, guarded by one lock.

    Use `with store.lock:` around a read-modify-`save` sequence.
    """

    def __init__(self, folder):
        self.dir = os.path.join(folder, "eids")
        os.makedirs(self.dir, exist_ok=True)
        self.lock = threading.RLock()
        self._cache = {}
        self._unattributed_path = os.path.join(folder, "unattributed.json")
        self.unattributed = []
        if os.path.exists(self._unattributed_path):
            try:
                with open(self._unattributed_path, "rb") as f:
                    self.unattributed = json.loads(f.read().decode("utf-8"))
            except (OSError, ValueError, UnicodeError) as e:
                raise StateError("%s: cannot read: %s" % (self._unattributed_path, e))
            if not isinstance(self.unattributed, list):
                raise StateError("%s: expected a list" % self._unattributed_path)

    def add_unattributed(self, note):
        """A notification no known EID could be found for (kept, never dropped silently)."""
        with self.lock:
            self.unattributed.append(note)
            extra = len(self.unattributed) - MAX_RECORDS
            if extra > 0:
                del self.unattributed[:extra]
            _write_atomic(self._unattributed_path,
                          json.dumps(self.unattributed, indent=1, sort_keys=True).encode())

    def _path(self, eid):
        return os.path.join(self.dir, check_eid(eid) + ".json")

    def get(self, eid):
        """The record of `eid`, or None when this eIM does not know it."""
        with self.lock:
            if eid in self._cache:
                return self._cache[eid]
            path = self._path(eid)
            if not os.path.exists(path):
                return None
            try:
                with open(path, "rb") as f:
                    rec = json.loads(f.read().decode("utf-8"))
            except (OSError, ValueError, UnicodeError) as e:
                raise StateError("%s: cannot read the eIM state of EID %s: %s" % (path, eid, e))
            if not isinstance(rec, dict) or rec.get("eid") != eid:
                raise StateError("%s: not the eIM state of EID %s" % (path, eid))
            base = _new(eid)
            base.update(rec)
            self._cache[eid] = base
            return base

    def get_or_create(self, eid):
        with self.lock:
            rec = self.get(eid)
            if rec is None:
                rec = _new(eid)
                self._cache[eid] = rec
                self.save(eid)
            return rec

    def save(self, eid):
        with self.lock:
            rec = self._cache[eid]
            _trim(rec)
            _write_atomic(self._path(eid), json.dumps(rec, indent=1, sort_keys=True).encode())

    def eids(self):
        with self.lock:
            names = set(self._cache)
            for n in os.listdir(self.dir):
                if n.endswith(".json") and EID_RE.fullmatch(n[:-5]):
                    names.add(n[:-5])
            return sorted(names)


def _trim(rec):
    for key, bound in (("results", MAX_RECORDS), ("notifications", MAX_RECORDS),
                       ("delivered", MAX_DELIVERED), ("state_changes", MAX_RECORDS),
                       ("acknowledged", MAX_ACKS)):
        extra = len(rec[key]) - bound
        if extra > 0:
            del rec[key][:extra]
            rec["dropped"] += extra
