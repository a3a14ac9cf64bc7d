"""Open download sessions that a cut left behind, and their cancel (SGP.22 v2.5 3.1.3 /
5.7.14 ES10b.CancelSession, 5.6.5 ES9+.CancelSession; SGP.32 v1.2 6.3.2.4
ESipa.CancelSession).

Once the eUICC answered ES10b.AuthenticateServer, the SM-DP+ is about to tie
the order (matchingId) to that transaction: if the IPA then dies (power cut,
card pulled, process killed), the SM-DP+ keeps the order "downloading" and
refuses every retry (matchingIdRefused) until its session expires. So
ipa_download.download() records the open transaction in the store (key
ipa.download, ipa_core.ipa_store) from AuthenticateServer until the end, via
a Recorder, and the next start calls recover() before anything else touches
the eUICC's RSP session (a new GetEUICCChallenge would drop it).

The record (a dict): v 1; transactionId (hex); smdpAddress; matchingId;
transport "direct" | "indirect"; eimId (indirect); stage:
    authenticated   the eUICC holds the session, nothing installed yet
    loading         LoadBoundProfilePackage began: the PIR may exist
    cancelled       the eUICC cancelled: cancelSessionResponse (its signed
                    answer, bytes) and reason wait for the server's CancelSession
    lost            the eUICC no longer knows the session (reset, power cycle):
                    nothing can sign a cancel; kept to explain a refusal
attempts (recover() runs that did not finish it; MAX_ATTEMPTS ends it); error;
earlier: the record a new download found unfinished (a cancel the server has
not taken, a lost session), kept inside the new one (one level) so that
nothing the next start must act on or explain is overwritten; it comes back
as the record once the new download ended.

recover(), per stage:
  authenticated / loading -> ES10b.CancelSession with the recorded
      transactionId; reason undefinedReason (127) when the cut came before
      the load (no CancelSessionReason names a power loss), loadBppExecutionError
      (5) when it came during the load (SGP.22 3.1.3.4: the BPP did not finish).
      invalidTransactionId: the eUICC ended the session itself - with a PIR
      (the profile's result waits as a notification: that path delivers it,
      an installed profile is never cancelled) or by a reset ("lost").
  cancelled -> the server's CancelSession with the eUICC's signed answer:
      ES9+ to the SM-DP+ (direct) or ESipa to the eIM (indirect).
The signed answer is written before the server call: the eUICC cannot sign
it twice. Failures keep the record, counted; never raised: other work goes on.
"""

from ipa_core.compat import hexlify, unhexlify

from ipa_core import es10
from ipa_core.errors import FunctionError, IpaError
from ipa_core.ipa_store import DOWNLOAD

MAX_ATTEMPTS = 5  # recover() runs per record before it is given up (reported, dropped)
INVALID_TRANSACTION_ID = 5  # CancelSessionResponse error (SGP.22 5.7.14)
REFUSED = "matchingIdRefused"


def _reason(stage):
    return "loadBppExecutionError" if stage == "loading" else "undefinedReason"


def advice(rec):
    """What the user must do about a session the IPA could not cancel."""
    return ("the SM-DP+ %s may keep the order for matchingId %s 'downloading' (transaction %s)"
            " until its session expires; retry later or ask the operator to reset the order"
            % (rec.get("smdpAddress") or "(chosen by the eIM)", rec.get("matchingId") or "-",
               rec.get("transactionId")))


class Recorder:
    """The download's side of the record; every method is a no-op without a store."""

    def __init__(self, store, transport, smdp_address, matching_id):
        self.store = store
        self.rec = None
        self.prior = store.get(DOWNLOAD) if store is not None else None
        ipa = getattr(transport, "ipa", None)  # IndirectTransport: the eIM relays
        self.base = {"v": 1, "smdpAddress": smdp_address, "matchingId": matching_id,
                     "transport": transport.name, "attempts": 0,
                     "eimId": getattr(ipa, "eim_id", None) if ipa is not None else None}

    def opened(self, tid_hex):
        """The eUICC answered AuthenticateServer: the session exists, record it."""
        if self.store is None:
            return
        self.rec = dict(self.base)
        self.rec["transactionId"] = tid_hex
        self.rec["stage"] = "authenticated"
        p = self.prior
        if p is not None:
            p = dict(p)
            p.pop("earlier", None)
            if p.get("stage") in ("authenticated", "loading"):
                p["stage"] = "lost"  # this download's GetEUICCChallenge ended it on the eUICC
            self.rec["earlier"] = p
        self.store.put(DOWNLOAD, self.rec)

    def stage(self, stage):
        if self.rec is not None:
            self.rec["stage"] = stage
            self.store.put(DOWNLOAD, self.rec)

    def euicc_cancelled(self, reason, response):
        """ES10b.CancelSession answered: keep its signed answer for the server's cancel."""
        if self.rec is not None:
            _put_cancelled(self.store, self.rec, reason, response)

    def ended(self, cancel=None):
        """The download ended: installed (a PIR), or failed with `cancel` (out["cancel"]).
        The record stays only for a cancel the server has not taken (or the eUICC refused)."""
        if self.rec is None:
            return
        if cancel is not None and not cancel.get("server"):
            if not cancel.get("euicc"):
                return  # the session is still open on the eUICC: recover() tries again
            self.rec["error"] = cancel.get("serverError")
            self.store.put(DOWNLOAD, self.rec)
            return
        p = self.rec.get("earlier")
        if p is not None and cancel is None and p.get("stage") == "lost" and \
                p.get("matchingId") == self.base["matchingId"]:
            p = None  # the order it held went through now: nothing left to explain
        if p is None:
            self.store.delete(DOWNLOAD)
        else:
            self.store.put(DOWNLOAD, p)
        self.rec = None

    def note(self, cause):
        """For a matchingIdRefused: the earlier session that explains it, if one is recorded."""
        p = self.prior
        if p is None or REFUSED not in ("%s %s" % (getattr(cause, "name", ""), cause)):
            return None
        if p.get("matchingId") not in (None, self.base["matchingId"]):
            return None
        return ("an earlier download of this eUICC was cut off (transaction %s, %s); %s"
                % (p.get("transactionId"), p.get("stage"), advice(p)))


def _put_cancelled(store, rec, reason, response):
    """Written before the server's CancelSession: the eUICC has dropped the session and
    cannot sign this answer again."""
    rec["stage"] = "cancelled"
    rec["reason"] = reason
    rec["cancelSessionResponse"] = bytes(response)
    store.put(DOWNLOAD, rec)


def _found_pir(session, tid):
    """True when the eUICC holds a ProfileInstallationResult for `tid` (the load finished)."""
    for n in es10.retrieve_notifications_list(
            session, profile_management_operation=["notificationInstall"]):
        if n.get("kind") == "profileInstallationResult" and \
                _hex(n.get("transactionId")) == tid:
            return True
    return False


def _hex(b):
    return None if b is None else hexlify(bytes(b)).decode().upper()


def recover(session, store, transport_for, log=None):
    """Finish the open download session recorded in `store`, if any (see the module docstring).

    transport_for(record) -> the server transport to cancel with (has
    cancel_session(transactionId, response), optional close()), or None when
    this caller cannot reach that server (a direct `ipa download` meeting a
    session relayed by an eIM): the eUICC side is still done, the server side
    waits for a caller that can, without counting an attempt. Returns None
    when nothing was recorded, else a summary: transactionId, smdpAddress,
    matchingId, transport, stage (as found), outcome "cancelled" | "installed"
    | "lost" | "pending" | "given up", message (for people), error."""
    rec = store.get(DOWNLOAD)
    if rec is None:
        return None
    if not isinstance(rec, dict) or rec.get("v") != 1 or not rec.get("transactionId"):
        _log(log, "error", "dropping an unreadable download record: %r" % (rec,))
        store.delete(DOWNLOAD)
        return None
    out = _recover_one(session, store, rec, transport_for, log)
    earlier = rec.pop("earlier", None)
    if out["outcome"] in FINISHED:
        rec = None
    if isinstance(earlier, dict) and earlier.get("transactionId"):
        out["earlier"] = _recover_one(session, store, earlier, transport_for, log)
        if out["earlier"]["outcome"] in FINISHED:
            earlier = None
    if rec is not None:
        if earlier is not None:
            rec["earlier"] = earlier
        store.put(DOWNLOAD, rec)
    elif earlier is not None:
        store.put(DOWNLOAD, earlier)
    else:
        store.delete(DOWNLOAD)
    return out


FINISHED = ("cancelled", "installed", "given up")


def _recover_one(session, store, rec, transport_for, log):
    out = {"transactionId": rec["transactionId"], "smdpAddress": rec.get("smdpAddress"),
           "matchingId": rec.get("matchingId"), "transport": rec.get("transport"),
           "stage": rec.get("stage"), "outcome": "pending", "error": None}
    rec["attempts"] = rec.get("attempts", 0) + 1
    try:
        if rec.get("stage") in ("authenticated", "loading"):
            _cancel_on_euicc(session, store, rec, out)
        if rec.get("stage") == "cancelled":
            _cancel_on_server(rec, transport_for, out)
        elif rec.get("stage") == "lost":
            out["outcome"] = "lost"
    except IpaError as e:
        out["error"] = str(e)
        rec["error"] = str(e)
    if out.get("deferred"):
        rec["attempts"] -= 1  # not tried: this caller cannot reach that server
    if out["outcome"] not in FINISHED and rec["attempts"] >= MAX_ATTEMPTS:
        out["outcome"] = "given up"
    out["message"] = _message(rec, out)
    _log(log, "info" if out["outcome"] in ("cancelled", "installed") else "warning",
         out["message"])
    return out


def _cancel_on_euicc(session, store, rec, out):
    tid = rec["transactionId"]
    reason = _reason(rec.get("stage"))
    try:
        csr = es10.cancel_session(session, unhexlify(tid), reason)
    except FunctionError as e:
        if e.code != INVALID_TRANSACTION_ID:
            raise
        if _found_pir(session, tid):
            out["outcome"] = "installed"
        else:
            rec["stage"] = "lost"
            out["outcome"] = "lost"
        return
    _put_cancelled(store, rec, reason, csr["raw"])


def _cancel_on_server(rec, transport_for, out):
    transport = transport_for(rec)
    if transport is None:
        out["deferred"] = True
        return
    try:
        transport.cancel_session(unhexlify(rec["transactionId"]), rec["cancelSessionResponse"])
    except FunctionError as e:
        # The server answered: it no longer holds the session (ended or expired) or refuses
        # this answer for good. Either way there is nothing left to send.
        out["error"] = str(e)
    finally:
        close = getattr(transport, "close", None)
        if close is not None:
            close()
    out["outcome"] = "cancelled"


def _message(rec, out):
    where = "%s (%s)" % (rec.get("smdpAddress") or "the eIM's SM-DP+", rec.get("transport"))
    cut = out["stage"] in ("authenticated", "loading")
    head = "download session %s with %s%s: " % (rec["transactionId"], where,
                                                ", cut off at %s" % out["stage"] if cut else "")
    o = out["outcome"]
    if o == "cancelled":
        return head + "cancelled on the eUICC and the server (%s)%s" % (
            rec.get("reason"), "; the server answered: %s" % out["error"] if out["error"] else "")
    if o == "installed":
        return head + "the profile was installed; its result waits on the eUICC as a " \
                      "notification"
    if o == "lost":
        return head + "the eUICC no longer knows it (it was reset), so it cannot be " \
                      "cancelled; " + advice(rec)
    if o == "given up":
        return head + "given up after %d attempts (%s); %s" % (
            rec["attempts"], out["error"] or rec.get("stage"), advice(rec))
    if out.get("deferred"):
        return head + "cancelled on the eUICC; the %s cancel waits for a command that " \
                      "reaches it (`ipa poll` for the eIM)" % rec.get("transport")
    return head + "not finished (%s), tried again at the next start (attempt %d of %d)" % (
        out["error"], rec["attempts"], MAX_ATTEMPTS)


def _log(log, level, msg):
    if log is not None:
        log(level, msg)
