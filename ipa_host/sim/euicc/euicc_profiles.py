"""Profile state changes of the virtual eUICC and the notifications they produce.

One enabled profile at a time. Every enable, disable and delete, whoever
asks for it (eIM PSMO, rollback, fallback, emergency, immediate enable),
goes through these functions so it always leaves a signed notification
(SGP.22 OtherSignedNotification, RSPDefinitions) with the next sequence
number in the pending list, to be fetched by RetrieveNotificationsList and
removed only by RemoveNotificationFromList.
"""

from ipa_core import tlv
from ipa_core.errors import TlvError

from ipa_host.sim.euicc import euicc_codec as codec


def add_notification(card, event, p):
    """OtherSignedNotification {tbsOtherNotification BF2F, 5F37, euiccCertificate, eumCertificate}.

    euiccNotificationSignature covers the DER of tbsOtherNotification (SGP.22 5.7.x). A
    downloaded profile notifies only the operations its metadata's
    notificationConfigurationInfo lists, each to the address given there (SGP.22 4.4,
    NotificationConfigurationInformation); a preloaded one its notification_address.
    Returns the seqNumber, or None when the metadata asks for no notification.
    """
    addresses = p.get("notification_addresses")
    address = p["notification_address"] if addresses is None else addresses.get(event)
    if address is None:
        return None
    seq = card.state.next_seq()
    meta = codec.notification_metadata(seq, event, address, p["iccid"])
    der = tlv.encode(0x30, [meta, tlv.encode(0x5F37, card.sign(meta)),
                            card.euicc_cert_der, card.eum_cert_der])
    card.state.add_pending(seq, "notification", der, event=event, iccid=p["iccid"])
    return seq


def enable(card, p):
    """Enable `p` (disabled), disabling the enabled profile first: two notifications."""
    cur = card.state.enabled_profile()
    if cur is not None and cur is not p:
        cur["state"] = "disabled"
        add_notification(card, "disable", cur)
    p["state"] = "enabled"
    add_notification(card, "enable", p)


def disable(card, p):
    p["state"] = "disabled"
    add_notification(card, "disable", p)


def delete(card, p, notify=True):
    """Remove `p` and every context that points at it."""
    card.state.profiles.remove(p)
    forget(card, p["iccid"])
    if notify:
        add_notification(card, "delete", p)


def forget(card, iccid):
    """Drop rollback / fallback / emergency / immediate-enable references to a profile."""
    d = card.state.data
    if d["rollback"] and d["rollback"].get("iccid") == iccid:
        d["rollback"] = None
    for key in ("fallback_previous", "emergency_previous", "last_installed"):
        if d[key] == iccid:
            d[key] = None


def profile_info_list(card, req, default_tags):
    """ProfileInfoListRequest (BF2D) -> ProfileInfoListResponse (BF2D).

    searchCriteria [0] is an explicit CHOICE: A0 { 4F aid | 5A iccid | 95 class };
    tagList 5C limits the fields. Success: BF2D { A0 { E3 ... } } (profileInfoListOk
    gets [0] under AUTOMATIC TAGS); a bad request: BF2D { 81 01 01 } incorrectInputValues.
    A search that matches nothing is an empty list.
    """
    profiles = list(card.state.profiles)
    tags = default_tags
    try:
        for c in req:
            if c.tag == 0xA0:
                kids = c.children()
                if len(kids) != 1:
                    raise TlvError(c.vstart, "one search criterion", "%d" % len(kids))
                k = kids[0]
                if k.tag == 0x5A:
                    iccid = codec.iccid_digits(k.value)
                    profiles = [p for p in profiles if p["iccid"] == iccid]
                elif k.tag == 0x4F:
                    profiles = [p for p in profiles if p["isdp_aid"].upper() == k.value.hex().upper()]
                elif k.tag == 0x95:
                    cls = codec.PROFILE_CLASS_NAME.get(k.as_int())
                    profiles = [p for p in profiles if p["class"] == cls]
                else:
                    raise TlvError(k.start, "searchCriteria 4F, 5A or 95", "%X" % k.tag)
            elif c.tag == 0x5C:
                tags = codec.parse_tag_list(c.value)
    except TlvError:
        return tlv.encode(0xBF2D, tlv.encode(0x81, tlv.int_encode(1)))
    items = [codec.profile_info(p, tags) for p in profiles]
    return tlv.encode(0xBF2D, tlv.encode(0xA0, items))
