"""Modem profiles: the quirks of known modems, keyed by identity substrings.

`identify(engine)` asks the modem who it is (AT+CGMI, AT+CGMM, ATI as a
fallback) and `profile_for(identity, overrides)` merges DEFAULT, every
matching table entry (in table order, later entries refine earlier ones)
and the configuration's overrides (which always win). ipa_core.at_card
reads the result. Sources are the project's modem fact sheet (quirk table,
"where seen" column) and the public issue trackers it summarises.

Profile keys:
  name              label for messages
  segment_size      STORE DATA block size for IsdrSession (1..255)
  init              commands sent at every AtCard.open(); a failure is
                    noted, not fatal
  optional          commands with lasting effects (built-in LPA off, UICC
                    power): sent only when apply_optional is True, otherwise
                    only named in AtCard.notes
  optional_note     why the optional commands matter
  apply_optional    set from configuration to send `optional`
  csim_only         skip AT+CCHO: the modem has CSIM only, or CCHO rejects
                    the ISD-R AID
  csim_logical_channels  False: APDUs on a logical channel through CSIM fail,
                    so CSIM mode must use the basic channel (prefer CGLA)
  no_cchc           the modem has no AT+CCHC: never send it
  csim_max_answer   the modem cuts CSIM/CGLA answers at this many bytes
                    (0 = no known limit); AtCard recovers with GET RESPONSE.
                    A cut at 256 bytes is also detected without it (AtCard
                    then sets it and says so in .notes)
  cgla_errors_fall_back_to_csim  a CGLA ERROR switches to CSIM on a channel
                    AtCard opens itself
  stale_channels    logical channels closed at open() (MANAGE CHANNEL close
                    through CSIM, errors ignored)
  refresh           commands that make the modem re-read the SIM after a
                    profile is enabled
  hint              sentence added to SIM-access errors on this modem
"""

DEFAULT = {
    "name": "generic",
    "segment_size": 255,
    # ATE0: no echo; AT+CMEE=1: numeric +CME ERROR codes instead of a bare
    # ERROR, so failures can be named (fact sheet: "+CME ERROR: <n> instead of ERROR").
    "init": ("ATE0", "AT+CMEE=1"),
    "optional": (),
    "optional_note": None,
    "apply_optional": False,
    "csim_only": False,
    "csim_logical_channels": True,
    "no_cchc": False,
    "csim_max_answer": 0,
    "cgla_errors_fall_back_to_csim": False,
    "stale_channels": (1, 2, 3),
    # Fact sheet: "After enabling a profile the modem needs a SIM refresh
    # (AT+CFUN=0/1, or a REFRESH) before it attaches | all".
    "refresh": ("AT+CFUN=0", "AT+CFUN=1"),
    "hint": None,
}

# The table is tuples of (key, value) pairs, not dicts: constant tuples stay in a board's
# flash with the frozen code, where 24 dicts took 1.5 KB of its heap at import.
_QUECTEL_LPA_ON = 'AT+QESIM="lpa_enable",0'
_QUECTEL_LPA_NOTE = ("the built-in LPA may hold the ISD-R: send AT+QESIM=\"lpa_enable\",0 "
                     "(apply_optional=True) and reset the modem (AT+CFUN=1,1) once")

PROFILES = (
    ("quectel", (("name", "Quectel"),)),
    ("ec25", (("name", "Quectel EC25"), ("segment_size", 128))),
    ("eg25", (("name", "Quectel EG25"), ("csim_logical_channels", False))),
    ("ec20f", (("name", "Quectel EC20F"), ("cgla_errors_fall_back_to_csim", True))),
    ("ec200", (("name", "Quectel EC200"), ("optional", (_QUECTEL_LPA_ON,)),
               ("optional_note", _QUECTEL_LPA_NOTE))),
    ("rg650e", (("name", "Quectel RG650E"), ("optional", (_QUECTEL_LPA_ON,)),
                ("optional_note", _QUECTEL_LPA_NOTE))),
    ("em05", (("name", "Quectel EM05"),)),
    ("simcom", (("name", "SIMCom"),)),
    ("sim767", (("name", "SIMCom SIM767x"), ("init", ("ATE0", "AT+CMEE=1", "AT+CSIMSLEEP=0")))),
    ("mediatek", (("name", "MediaTek"), ("init", ("ATE0", "AT+CMEE=1", "AT+ECSIMSLEEP=0")))),
    ("fm350", (("name", "Fibocom FM350"), ("init", ("ATE0", "AT+CMEE=1", "AT+ECSIMSLEEP=0")))),
    ("fg132", (("name", "Fibocom FG132"),)),  # fact sheet: =? missing
    ("em9191", (("name", "Sierra EM9191"), ("no_cchc", True), ("csim_only", True))),
    ("em7590", (("name", "Sierra EM7590"),)),  # fact sheet: =? missing
    ("dw5821e", (("name", "Dell DW5821e"), ("csim_only", True))),
    ("t77w968", (("name", "Dell DW5821e"), ("csim_only", True))),
    ("mt5700", (("name", "Huawei MT5700"), ("csim_max_answer", 256))),
    ("sequans", (("name", "Sequans Monarch"),)),
    ("monarch", (("name", "Sequans Monarch"),)),
    ("sara-r4", (("name", "u-blox SARA-R4"),)),  # fact sheet: stray line before +CSIM:
    ("nrf91", (("name", "Nordic nRF91"), ("optional", ("AT+CFUN=41",)),
               ("optional_note", "the UICC is powered only in CFUN=1 or CFUN=41 "
                                 "(AT+CFUN=41 powers it without the radio; apply_optional=True)"),
               ("refresh", ("AT+CFUN=4", "AT+CFUN=1")),
               ("hint", "nRF91: is the UICC powered (AT+CFUN=41)?"))),
)

TYPES = (
    ("name", str), ("segment_size", int), ("init", tuple), ("optional", tuple),
    ("optional_note", str), ("apply_optional", bool), ("csim_only", bool),
    ("csim_logical_channels", bool), ("no_cchc", bool), ("csim_max_answer", int),
    ("cgla_errors_fall_back_to_csim", bool), ("stale_channels", tuple), ("refresh", tuple),
    ("hint", str),
)

MAX_IDENTITY = 200


def _check(key, value, where):
    if key not in DEFAULT:
        raise ValueError("%s: unknown modem profile key %r (known: %s)"
                         % (where, key, ", ".join(sorted(DEFAULT))))
    want = None
    for k, t in TYPES:
        if k == key:
            want = t
    if value is None and DEFAULT[key] is None:
        return value
    if want is tuple and isinstance(value, list):
        value = tuple(value)
    if want is int and isinstance(value, bool):
        raise ValueError("%s: %s must be a number, not %r" % (where, key, value))
    if not isinstance(value, want):
        raise ValueError("%s: %s must be %s, not %r" % (where, key, want.__name__, value))
    if key == "segment_size" and not 1 <= value <= 255:
        raise ValueError("%s: segment_size %d outside 1..255" % (where, value))
    if key == "csim_max_answer" and value and value < 16:
        raise ValueError("%s: csim_max_answer %d below 16 bytes" % (where, value))
    if key == "stale_channels":
        for ch in value:
            if not isinstance(ch, int) or not 1 <= ch <= 19:
                raise ValueError("%s: stale channel %r outside 1..19" % (where, ch))
    return value


def profile_for(identity, overrides=None):
    """The quirks dict for a modem identity string; `overrides` (configuration) win."""
    p = dict(DEFAULT)
    low = (identity or "").lower()
    matched = []
    for key, quirks in PROFILES:
        if key in low:
            for k, v in quirks:
                p[k] = v
            matched.append(key)
    p["matched"] = tuple(matched)
    p["identity"] = identity or ""
    if overrides:
        for k in overrides:
            p[k] = _check(k, overrides[k], "modem profile override")
    return p


def _answer(engine, cmd):
    """Information lines of cmd without the echoed name; [] if the modem refuses it."""
    from ipa_core.at import AtError

    try:
        lines = engine.command(cmd, 2000)
    except AtError:
        return []
    out = []
    name = cmd[2:].upper()
    for line in lines:
        if line.upper().startswith(name + ":"):
            line = line[len(name) + 1:].strip()
        if line.startswith('"') and line.endswith('"') and len(line) > 1:
            line = line[1:-1]
        if line:
            out.append(line)
    return out


def identify(engine, overrides=None):
    """(identity, profile): manufacturer and model from AT+CGMI/AT+CGMM (ATI as a fallback)."""
    parts = _answer(engine, "AT+CGMI") + _answer(engine, "AT+CGMM")
    if not parts:
        parts = _answer(engine, "ATI")
    identity = " ".join(parts)[:MAX_IDENTITY]
    return identity, profile_for(identity, overrides)
