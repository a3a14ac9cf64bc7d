"""Notification delivery of the IPA (SGP.32 v1.2 ESipa.HandleNotification 'BF3D'):
deliver every pending notification to the eIM, then remove it from the eUICC -
only after the eIM took it (HTTP 200/204), never before (design.md, "Nothing is lost").

Before each removal the seqNumber is written to the store (ipa.notified), so
after a restart the IPA removes what the eIM already has instead of
delivering it a second time.

How they are read from the eUICC: all at once (one RetrieveNotificationsList),
or, with the setting max_message_bytes (boards), one at a time - ListNotification
for the seqNumbers, then RetrieveNotificationsList by seqNumber - so that a
board's heap holds one signed notification, never the list of them, and a
ProvideEimPackageResult carries at most max_message_bytes of them (those left
go out with HandleNotification in the next pass). Functions take the ipa_core.ipa.Ipa and a
`notes` dict ({"delivered", "removed", "failed", "forSmdp": [seqNumber...]})
that they fill.
"""

from ipa_core import es10, esipa, tlv
from ipa_core.errors import EimError
from ipa_core.ipa_store import NOTIFIED


def new_notes():
    return {"delivered": [], "removed": [], "failed": [], "forSmdp": [], "error": None}


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


def pending(ipa, budget=None):
    """The pending notifications as a list; with `budget`, as many (oldest first) as fit in
    that many bytes of signed notifications."""
    out = []
    total = 0
    for n in notifications(ipa):
        if budget is not None and total + len(n["raw"]) > budget:
            break
        total += len(n["raw"])
        out.append(n)
    return out


def finish_removals(ipa, notes):
    """Remove what the eIM took before a restart (ipa.notified)."""
    taken = ipa.store.get(NOTIFIED) or []
    for seq in taken:
        es10.remove_notification_from_list(ipa.session, seq)  # nothingToDelete is fine
        notes["removed"].append(seq)
    if taken:
        ipa.store.delete(NOTIFIED)


def deliver_all(ipa, notes):
    """HandleNotification for each pending notification, then its removal.

    One the eIM refuses (EimError) stays on the eUICC for the next pass; a
    TransportError or an HTTP error status ends the pass (raised).
    """
    for n in notifications(ipa):
        seq = n.get("seqNumber")
        msg = esipa.handle_notification(pending_notification=n["raw"], version=ipa.version)
        try:
            ipa.exchange("handleNotification", msg)
        except EimError as e:
            notes["failed"].append(seq)
            ipa.note("warning", "notification %s kept: the eIM refused it: %s" % (seq, e))
            continue
        notes["delivered"].append(seq)
        addr = n.get("notificationAddress")
        if ipa.eim is not None and addr and addr != ipa.eim.get("eimFqdn"):
            notes["forSmdp"].append(seq)
            ipa.note("info", "notification %s for %s delivered to the eIM (direct delivery to "
                     "an SM-DP+ is not done yet)" % (seq, addr))
        taken = ipa.store.get(NOTIFIED) or []
        taken.append(seq)
        ipa.store.put(NOTIFIED, taken)
        es10.remove_notification_from_list(ipa.session, seq)
        notes["removed"].append(seq)
        taken.remove(seq)
        if taken:
            ipa.store.put(NOTIFIED, taken)
        else:
            ipa.store.delete(NOTIFIED)
