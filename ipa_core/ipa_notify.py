"""Notification delivery of the IPA (SGP.22 v2.5 3.5 and 5.6.4, SGP.32 v1.2 ESipa
HandleNotification 'BF3D'): each pending notification goes to the peer its
notificationAddress names, and is removed from the eUICC only after that peer took it
(HTTP 200/204), never before (design.md, "Nothing is lost").

Where each one goes (route):
- to the eIM (ESipa.HandleNotification) when its notificationAddress is the eIM's eimFqdn,
  or it has none;
- to the SM-DP+ at its notificationAddress (ES9+.HandleNotification over
  ipa.smdp_network(address), ipa_core.ipa_direct) when the IPA has such a factory: the
  PIR of a direct download and the enable/disable/delete notifications the profile's
  metadata addresses to its SM-DP+;
- without a factory (a board doing indirect downloads only) to the eIM, which relays
  it to the SM-DP+ as in SGP.32's indirect mode; listed in forSmdp;
- with neither (no eIM, no factory): kept on the eUICC, listed in kept, with a warning.

Before each removal the seqNumber is written to the store (ipa.notified), so after a
restart the IPA removes what a peer already has instead of delivering it a second time.

An SM-DP+ that does not take a notification keeps it on the eUICC and is left alone for
a while (ipa_core.ipa_notify_smdp: back-off per address, kept in the store; loaded only
for a notification routed to an SM-DP+, so a board never loads it nor ES9+). An eIM that
refuses one (EimError) keeps that one; an unreachable eIM keeps the rest of its own and
ends the pass with that error once the other peers had theirs. A notification for another
eIM of the eUICC is kept for that eIM's pass.

How they are read from the eUICC: all at once (one RetrieveNotificationsList),
or, with the setting max_message_bytes (boards), one at a time - ListNotification
for the seqNumbers, then RetrieveNotificationsList by seqNumber - so that a
board's heap holds one signed notification, never the list of them, and a
ProvideEimPackageResult carries at most max_message_bytes of them (those left
go out with HandleNotification in the next pass). Functions take the ipa_core.ipa.Ipa and a
`notes` dict (new_notes) that they fill.
"""

from ipa_core import es10, esipa, tlv
from ipa_core.errors import EimError, IpaError
from ipa_core.ipa_store import NOTIFIED


def new_notes():
    """{"delivered", "removed", "failed", "kept", "forSmdp": [seqNumber...], "peers", "error"}.

    peers: {address: {"peer": "eim" | "smdp" | None, "delivered", "removed", "failed",
    "kept": [seqNumber...], "error": None or a message, "retryInS"?: seconds of back-off
    left}} - one entry per destination (the eIM under its eimFqdn, or "eIM")."""
    return {"delivered": [], "removed": [], "failed": [], "kept": [], "forSmdp": [],
            "peers": {}, "error": None}


def _is_result(n):
    return tlv.decode(n["raw"]).tag == 0xBF51


def notifications(ipa):
    """The pending notifications (not EuiccPackageResults), at most max_notifications, one
    after the other: read one at a time when max_message_bytes is set (module doc)."""
    cap = ipa.config["max_notifications"]
    if ipa.config.get("max_message_bytes") is None:
        items = es10.retrieve_notifications_list(ipa.session)
        for n in [n for n in items if not _is_result(n)][:cap]:
            yield n
        return
    seqs = [m["seqNumber"] for m in es10.list_notification(ipa.session)][:cap]
    for seq in seqs:
        for n in es10.retrieve_notifications_list(ipa.session, seq_number=seq):
            if n.get("seqNumber") == seq and not _is_result(n):
                yield n  # gone since the list (or an EuiccPackageResult): skipped


def route(ipa, n):
    """(peer, address) for notification `n`: peer "eim", "smdp" or None (kept); see the
    module docstring."""
    addr = n.get("notificationAddress")
    eim_fqdn = (ipa.eim or {}).get("eimFqdn")
    eim_key = eim_fqdn or "eIM"
    if not addr or (eim_fqdn and addr.lower() == eim_fqdn.lower()) or ipa.smdp_network is None:
        return ("eim", eim_key) if ipa.network is not None else (None, addr or eim_key)
    if addr.lower() in ipa.eim_addresses():
        return None, addr  # another eIM's (or no eIM open): that eIM's own pass delivers it
    return "smdp", addr


def pending(ipa, budget=None, for_eim=False):
    """The pending notifications as a list; with `budget`, as many (oldest first) as fit in
    that many bytes of signed notifications; with `for_eim`, only those routed to the eIM
    (a ProvideEimPackageResult carries those; an SM-DP+ gets its own)."""
    out = []
    total = 0
    for n in notifications(ipa):
        if for_eim and route(ipa, n)[0] != "eim":
            continue
        if budget is not None and total + len(n["raw"]) > budget:
            break
        total += len(n["raw"])
        out.append(n)
    return out


def finish_removals(ipa, notes):
    """Remove what a peer took before a restart (ipa.notified)."""
    taken = ipa.store.get(NOTIFIED) or []
    for seq in taken:
        es10.remove_notification_from_list(ipa.session, seq)  # nothingToDelete is fine
        notes["removed"].append(seq)
    if taken:
        ipa.store.delete(NOTIFIED)


def _peer(notes, kind, addr):
    p = notes["peers"].get(addr)
    if p is None:
        p = {"peer": kind, "delivered": [], "removed": [], "failed": [], "kept": [],
             "error": None}
        notes["peers"][addr] = p
    return p


def _mark(notes, p, what, seq):
    notes[what].append(seq)
    p[what].append(seq)


def _remove(ipa, seq, notes, p):
    """RemoveNotificationFromList for `seq`, the peer having taken it: ipa.notified first."""
    taken = ipa.store.get(NOTIFIED) or []
    taken.append(seq)
    ipa.store.put(NOTIFIED, taken)
    es10.remove_notification_from_list(ipa.session, seq)
    _mark(notes, p, "removed", seq)
    taken.remove(seq)
    if taken:
        ipa.store.put(NOTIFIED, taken)
    else:
        ipa.store.delete(NOTIFIED)


# ---- delivery --------------------------------------------------------------------------------


def _to_eim(ipa, n):
    ipa.exchange("handleNotification",
                 esipa.handle_notification(pending_notification=n["raw"], version=ipa.version))


def deliver_all(ipa, notes, force=False, only=None):
    """Deliver each pending notification to its peer (route), then remove it.

    `force`: try SM-DP+ addresses that are backing off; `only`: the seqNumbers to deliver
    (None: all). Raises the eIM's TransportError / HTTP error (after the other peers had
    theirs), never an SM-DP+'s: those go to notes["peers"][address]["error"].
    """
    smdp = None  # ipa_notify_smdp.SmdpPeers, loaded for the first SM-DP+ notification
    eim_error = None
    try:
        for n in notifications(ipa):
            seq = n.get("seqNumber")
            if only is not None and seq not in only:
                continue
            kind, addr = route(ipa, n)
            p = _peer(notes, kind, addr)
            if kind is None:
                _mark(notes, p, "kept", seq)
                ipa.note("warning", "notification %s for %s kept: that peer is not reachable "
                         "in this pass (an eIM not opened, or no way to an SM-DP+)" % (seq, addr))
                continue
            if kind == "eim":
                if eim_error is not None:
                    _mark(notes, p, "kept", seq)
                    continue
                try:
                    _to_eim(ipa, n)
                except EimError as e:
                    _mark(notes, p, "failed", seq)
                    ipa.note("warning", "notification %s kept: the eIM refused it: %s" % (seq, e))
                    continue
                except IpaError as e:
                    eim_error = e
                    p["error"] = "%s: %s" % (type(e).__name__, e)
                    _mark(notes, p, "failed", seq)
                    continue
                a = n.get("notificationAddress")
                if a and ipa.eim is not None and a.lower() != addr.lower():
                    notes["forSmdp"].append(seq)
            else:
                if smdp is None:
                    from ipa_core.ipa_notify_smdp import SmdpPeers

                    smdp = SmdpPeers(ipa, force)
                what = smdp.deliver(addr, n["raw"], p)
                if what != "delivered":
                    _mark(notes, p, what, seq)
                    continue
            _mark(notes, p, "delivered", seq)
            _remove(ipa, seq, notes, p)
    finally:
        if smdp is not None:
            smdp.close()
    if eim_error is not None:
        raise eim_error
