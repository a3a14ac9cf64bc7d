"""File-backed Store for the IPA's progress (ipa_core.ipa writes before each step).

One JSON document, rewritten atomically on every put/delete: a temporary file
in the same folder, fsync, os.replace, fsync of the folder. A power cut leaves
either the old or the new document, never half of one, so the IPA resumes
from the last step it recorded. Bytes values (the TLVs the IPA keeps) are written
as {"$hex": "..."} (ipa_core.ipa_store.to_json) and read back as bytes.
"""

import json
import os
import threading

from ipa_core.ipa_store import copy, from_json, to_json

MAX_STORE = 4 * 1024 * 1024  # the IPA keeps a few results and seqNumbers, never megabytes


class StoreError(Exception):
    """The state file cannot be read or written; the message names the file."""


class FileStore:
    """Store interface (get/put/delete) over one JSON file."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self._data = self._load()

    def _load(self):
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise StoreError("cannot read IPA state %s: %s" % (self.path, e))
        if size > MAX_STORE:
            raise StoreError("IPA state %s is %d bytes, more than the %d a valid one can have"
                             % (self.path, size, MAX_STORE))
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise StoreError("IPA state %s is unreadable (%s); move it away to start afresh"
                             % (self.path, e))
        if not isinstance(data, dict):
            raise StoreError("IPA state %s: expected a JSON object, found %s"
                             % (self.path, type(data).__name__))
        try:
            return from_json(data)
        except ValueError as e:  # a {"$hex": ...} that is no hex
            raise StoreError("IPA state %s is unreadable (%s); move it away to start afresh"
                             % (self.path, e))

    def get(self, key, default=None):
        with self._lock:
            # A copy: callers may change what they got without changing the store.
            return copy(self._data.get(key, default))

    def put(self, key, value):
        with self._lock:
            new = dict(self._data)
            new[key] = value
            self._write(new)
            self._data = new

    def delete(self, key):
        with self._lock:
            if key not in self._data:
                return
            new = dict(self._data)
            del new[key]
            self._write(new)
            self._data = new

    def keys(self):
        with self._lock:
            return sorted(self._data)

    def _write(self, data):
        text = json.dumps(to_json(data), sort_keys=True, indent=1)
        if len(text) > MAX_STORE:
            raise StoreError("IPA state would grow to %d bytes (bound %d)" % (len(text), MAX_STORE))
        folder = os.path.dirname(os.path.abspath(self.path))
        tmp = self.path + ".tmp"
        try:
            os.makedirs(folder, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise StoreError("cannot write IPA state %s: %s" % (self.path, e))
