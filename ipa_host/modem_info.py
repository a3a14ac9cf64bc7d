"""What `ipa info` says about a modem card (--card at:...): which modem, which AT mode, which
quirk workarounds.

Identity: 3GPP TS 27.007 5.1-5.3 AT+CGMI (manufacturer), AT+CGMM (model), AT+CGMR
(firmware revision), with V.250 ATI as the fallback of modems that refuse them. The AT mode
is the one ipa_core.at_card.AtCard settled on when it opened: CGLA (TS 27.007 8.45, a
logical channel the modem opened with AT+CCHO) or CSIM (8.17, APDUs as they are, the
IPA's own channel). Quirks are the keys of the modem's ipa_core.modems profile that differ
from the generic one; the card's notes say what this session actually worked around.
"""

from ipa_core import modems
from ipa_core.at import AtError
from ipa_core.errors import TimeoutError_

IDENT_TIMEOUT_MS = 2000
MAX_FIELD = 120  # characters kept of one identity answer

# ipa_core.modems profile keys, in words for a person ("%s": the value).
QUIRKS = (
    ("csim_only", "CSIM only: AT+CCHO is not tried"),
    ("no_cchc", "no AT+CCHC: sessions are never closed with it"),
    ("csim_logical_channels", "no logical channels through CSIM: the ISD-R goes on the basic "
                              "channel in CSIM mode"),
    ("csim_max_answer", "answers cut at %s bytes: completed with GET RESPONSE"),
    ("cgla_errors_fall_back_to_csim", "a CGLA error switches to CSIM on the IPA's own channel"),
    ("segment_size", "STORE DATA in blocks of %s bytes"),
    ("init", "sent at every open: %s"),
    ("optional", "not sent unless apply_optional: %s"),
    ("stale_channels", "stale logical channels closed at open: %s"),
    ("refresh", "SIM refresh after a profile switch: %s"),
)
MODES = {
    "cgla": "CGLA: a logical channel the modem opened (AT+CCHO / AT+CGLA)",
    "csim": "CSIM: APDUs as they are (AT+CSIM), the IPA opens its own channel",
}


def _show(value):
    if isinstance(value, (tuple, list)):
        return " ; ".join(str(v) for v in value)
    return str(value)


def _answer(engine, cmd):
    """The information lines of cmd without its echoed name or quotes; [] when refused."""
    try:
        lines = engine.command(cmd, IDENT_TIMEOUT_MS)
    except (AtError, TimeoutError_):
        return []
    out = []
    name = cmd[2:].upper() + ":"
    for line in lines:
        for text in line.split("\r\n"):
            text = text.strip()
            if text.upper().startswith(name):
                text = text[len(name):].strip()
            if len(text) > 1 and text[0] == text[-1] == '"':
                text = text[1:-1]
            if text:
                out.append(text[:MAX_FIELD])
    return out


def identity(engine):
    """{"manufacturer", "model", "revision"} (None for what the modem would not say)."""
    mfr, model, rev = (_answer(engine, c) for c in ("AT+CGMI", "AT+CGMM", "AT+CGMR"))
    if not (mfr or model):
        lines = _answer(engine, "ATI")  # manufacturer, model, "Revision: ..." on most
        rest = [x for x in lines if not x.lower().startswith("revision:")]
        mfr, model = rest[:1], rest[1:2]
        rev = rev or [x.split(":", 1)[1].strip() for x in lines
                      if x.lower().startswith("revision:")]
    if rev and rev[0].lower().startswith("revision:"):
        rev = [rev[0].split(":", 1)[1].strip()]
    return {"manufacturer": " ".join(mfr) or None, "model": " ".join(model) or None,
            "revision": " ".join(rev) or None}


def quirks(profile):
    """[{"key", "value", "what"}] for every profile key that differs from the generic one."""
    out = []
    for key, words in QUIRKS:
        value = profile.get(key, modems.DEFAULT[key])
        if value == modems.DEFAULT[key]:
            continue
        out.append({"key": key, "value": value,
                    "what": words % _show(value) if "%s" in words else words})
    return out


def modem_info(card):
    """The "modem" part of `ipa info` for an AT card (ipa_host.card.serial), else None."""
    engine = getattr(card, "engine", None)
    if engine is None or not hasattr(card, "profile"):
        return None
    p = card.profile
    d = identity(engine)
    d.update({
        "device": getattr(card, "device", None),
        "identity": getattr(card, "identity", "") or "",
        "mode": card.mode,
        "requestedMode": card.requested_mode,
        "profile": p.get("name"),
        "matched": list(p.get("matched") or ()),
        "quirks": quirks(p),
        "notes": list(card.notes),
    })
    if card.mode == "cgla" and card.session is not None:
        d["session"] = str(card.session)
    usb = getattr(card, "usb", None)
    if usb:
        d["usb"] = {"vid": "%04x" % usb["vid"], "pid": "%04x" % usb["pid"],
                    "interface": usb["interface"], "bus": usb["usb"], "known": usb["modem"]}
    return d


def print_modem(m, out):
    """The text of `ipa info` for the modem part."""
    name = " ".join(x for x in (m["manufacturer"], m["model"]) if x) or m["identity"] or "?"
    out.write("Modem          %s, firmware %s, on %s\n" % (name, m["revision"] or "unknown",
                                                          m["device"]))
    if m.get("usb"):
        u = m["usb"]
        out.write("  found by     at:auto: %s (%s:%s, USB interface %d at %s)\n" % (
            u["known"], u["vid"], u["pid"], u["interface"], u["bus"]))
    mode = MODES.get(m["mode"], m["mode"])
    if m.get("session"):
        mode += ", session %s" % m["session"]
    out.write("  AT mode      %s%s\n" % (mode, "" if m["requestedMode"] == "auto" else
                                         " (forced: mode=%s)" % m["requestedMode"]))
    matched = ", ".join(m["matched"])
    out.write("  profile      %s%s\n" % (m["profile"], " (matched: %s)" % matched
                                         if matched else " (no table entry matched)"))
    if not m["quirks"]:
        out.write("  quirks       none: TS 27.007 as written\n")
    for i, q in enumerate(m["quirks"]):
        out.write("  %-12s %s\n" % ("quirks" if i == 0 else "", q["what"]))
    for i, n in enumerate(m["notes"]):
        out.write("  %-12s %s\n" % ("this session" if i == 0 else "", n))
