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

Values are JSON-able (dict with str keys, list, str, int, bool, None) or bytes,
at any depth: the IPA keeps the TLVs it must forward (the eIM package, the
EuiccPackageResult, the message to post) as bytes, so that a board's heap holds
them once and not as text twice their size. A store writing JSON writes bytes
as {"$hex": "<upper-case hex>"} (to_json / from_json); records written before
bytes were allowed hold those fields as hex text, and the IPA reads both.

Keys (all under "ipa."):

    ipa.job          the procedure in progress, or absent. A dict:
                     v 1; kind "euiccPackageRequest" | "ipaEuiccDataRequest" |
                     "profileDownloadTriggerRequest" | "invalidPackage";
                     step "load" | "connect" | "rollback" | "collect" | "download" |
                     "deliver" | "remove"; eid; request (the eIM package TLV);
                     eimTransactionId (hex or None); attempts (failures at this step);
                     euiccPackageRequest also: eimId, counterValue, rollbackFlag, sent
                     (LoadEuiccPackage went out), result (the EuiccPackageResult
                     BF51 to deliver), resultSeq, rollback (ProfileRollback still
                     allowed), rollbackSent, rolledBack; profileDownloadTriggerRequest
                     also: started (download_handler was called); deliver/remove: message (the
                     ProvideEimPackageResult BF50 to post, built once so a resend
                     is byte-identical), included (seqNumbers of the notifications in
                     it), acked (seqNumbers the eIM acknowledged, to remove).
    ipa.stateChange  {"cause": int or None, "serial": n}: a local change the eIM must
                     hear of (notifyStateChange + stateChangeCause in the next
                     GetEimPackage); cleared once an eIM answer to that request came.
    ipa.notified     [seqNumber, ...]: notifications a peer (the eIM, an SM-DP+) took
                     (HandleNotification) and not yet removed from the eUICC.
    ipa.notifyBackoff {SM-DP+ address: {"failures": n, "until": seconds of Ipa.now_s()}}:
                     SM-DP+ that did not take a notification, left alone until then
                     (ipa_core.ipa_notify_smdp); an entry goes when its SM-DP+ takes one.
    ipa.download     the open profile download session (transactionId, SM-DP+, transport,
                     stage), from ES10b.AuthenticateServer until the download ended: what
                     the next start cancels after a cut (ipa_core.ipa_cancel has the shape).
"""

from ipa_core.compat import hexlify, json, loads, unhexlify

JOB = "ipa.job"
STATE_CHANGE = "ipa.stateChange"
NOTIFIED = "ipa.notified"
NOTIFY_BACKOFF = "ipa.notifyBackoff"
DOWNLOAD = "ipa.download"
KEYS = (JOB, STATE_CHANGE, NOTIFIED, NOTIFY_BACKOFF, DOWNLOAD)
HEX = "$hex"  # the key of the one-key object a JSON store writes bytes as


def to_json(v):
    """v with every bytes value as {"$hex": "<upper-case hex>"}: what a store writing JSON
    writes (TypeError for a value that is neither JSON-able nor bytes)."""
    if isinstance(v, (bytes, bytearray)):
        return {HEX: hexlify(bytes(v)).decode().upper()}
    if isinstance(v, dict):
        out = {}
        for k in v:
            if not isinstance(k, str):
                raise TypeError("store value: key %r is not a str" % (k,))
            out[k] = to_json(v[k])
        return out
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError("store value: %s is neither JSON-able nor bytes" % type(v).__name__)


def from_json(v):
    """The inverse of to_json: {"$hex": ...} objects back to bytes."""
    if isinstance(v, dict):
        if len(v) == 1 and HEX in v and isinstance(v[HEX], str):
            return unhexlify(v[HEX])
        return {k: from_json(v[k]) for k in v}
    if isinstance(v, list):
        return [from_json(x) for x in v]
    return v


def copy(v):
    """A copy of a stored value that a caller may change (dicts and lists are new; bytes and
    str are immutable and shared): what get() returns."""
    if isinstance(v, dict):
        return {k: copy(v[k]) for k in v}
    if isinstance(v, (list, tuple)):
        return [copy(x) for x in v]
    if isinstance(v, bytearray):
        return bytes(v)
    return v


class MemoryStore:
    """The Store interface in memory, for tests and boards without flash.

    Values go through JSON (to_json) like a file store's, so a value a file
    store could not keep (a set, a tuple read back as a list) shows up here too.
    `puts` counts writes (tests use it to cut the power at each one).
    """

    def __init__(self):
        self.data = {}
        self.puts = 0

    def get(self, key, default=None):
        if key not in self.data:
            return default
        return from_json(loads(self.data[key]))

    def put(self, key, value):
        text = json.dumps(to_json(value))  # TypeError for a value that is not JSON-able
        self.puts += 1
        self.data[key] = text

    def delete(self, key):
        if key in self.data:
            del self.data[key]

    def keys(self):
        return sorted(self.data)
