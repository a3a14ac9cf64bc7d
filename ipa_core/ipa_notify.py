"""Notification delivery of the IPA (SGP.32 v1.2 ESipa.HandleNotification 'BF3D'):
deliver every pending notification to the eIM, then remove it from the eUICC -
only after the eIM took it (HTTP 200/204), never before (design.md, "Nothing is lost").

Before each removal the seqNumber is written to the store (ipa.notified), so
after a restart the IPA removes what the eIM already has instead of
delivering it a second time. Functions take the ipa_core.ipa.Ipa and a
`notes` dict ({"delivered", "removed", "failed", "forSmdp": [seqNumber...]})
that they fill.
"""

from ipa_core import es10, esipa, tlv
from ipa_core.errors import EimError
from ipa_core.ipa_store import NOTIFIED


def new_notes():
    return {"delivered": [], "removed": [], "failed": [], "forSmdp": [], "error": None}


def pending(ipa):
    """Pending notifications (not EuiccPackageResults) on the eUICC, at most max_notifications."""
    items = es10.retrieve_notifications_list(ipa.session)
    notes = [n for n in items if tlv.decode(n["raw"]).tag != 0xBF51]
    return notes[:ipa.config["max_notifications"]]


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
    for n in pending(ipa):
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
