"""The IPA's progress store: the Store interface, its keys, and MemoryStore (design.md,
"Nothing is lost").

The IPA writes where it is in a procedure BEFORE each step it takes, so that
a power cut or a failure at any point resumes from the last written step and
nothing the eIM must get is lost, and nothing the eUICC must not do twice is
done twice. ipa_core.ipa is the only writer.

Store interface (the host supplies a file-backed atomic one, e.g.
ipa_host.store.FileStore; a board one over its flash):

    get(key, default=None) -> value     (a copy: changing it changes nothing stored)
    put(key, value)                     atomic: after a power cut the old or the new value
    delete(key)                         no error if absent

Values are JSON-able: dict, list, str, int, bool, None (bytes are stored as
upper-case hex by the IPA).

Keys (all under "ipa."):

    ipa.job          the procedure in progress, or absent. A dict:
                     v 1; kind "euiccPackageRequest" | "ipaEuiccDataRequest" |
                     "profileDownloadTriggerRequest" | "invalidPackage";
                     step "load" | "connect" | "rollback" | "collect" | "download" |
                     "deliver" | "remove"; eid; request (hex of the eIM package TLV);
                     eimTransactionId (hex or None); attempts (failures at this step);
                     euiccPackageRequest also: eimId, counterValue, rollbackFlag, sent
                     (LoadEuiccPackage went out), result (hex of the EuiccPackageResult
                     BF51 to deliver), resultSeq, rollback (ProfileRollback still
                     allowed), rollbackSent, rolledBack; profileDownloadTriggerRequest
                     also: started (download_handler was called); deliver/remove: message (hex
                     of the ProvideEimPackageResult BF50 to post, built once so a resend
                     is byte-identical), included (seqNumbers of the notifications in
                     it), acked (seqNumbers the eIM acknowledged, to remove).
    ipa.stateChange  {"cause": int or None, "serial": n}: a local change the eIM must
                     hear of (notifyStateChange + stateChangeCause in the next
                     GetEimPackage); cleared once an eIM answer to that request came.
    ipa.notified     [seqNumber, ...]: notifications the eIM took (HandleNotification)
                     and not yet removed from the eUICC.
"""

import json

JOB = "ipa.job"
STATE_CHANGE = "ipa.stateChange"
NOTIFIED = "ipa.notified"
KEYS = (JOB, STATE_CHANGE, NOTIFIED)


class MemoryStore:
    """The Store interface in memory, for tests and boards without flash.

    Values go through JSON like the file store's, so a value a file store
    could not keep (bytes, a tuple read back as a list) shows up here too.
    `puts` counts writes (tests use it to cut the power at each one).
    """

    def __init__(self):
        self.data = {}
        self.puts = 0

    def get(self, key, default=None):
        if key not in self.data:
            return default
        return json.loads(self.data[key])

    def put(self, key, value):
        text = json.dumps(value)  # TypeError for a value that is not JSON-able
        self.puts += 1
        self.data[key] = text

    def delete(self, key):
        if key in self.data:
            del self.data[key]

    def keys(self):
        return sorted(self.data)
