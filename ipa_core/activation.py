"""Activation Codes (SGP.22 v2.5 4.1): parse and check what a user, a QR code or an eIM gives.

    AC = [LPA:]<AC_Format>$<SM-DP+ Address>$<AC_Token>[$<SM-DP+ OID>[$<CC Required Flag>]]

    parse("LPA:1$smdp.example.com$04386-AGYFT-A74Y8-3F815$$1")
    -> {"smdpAddress": "smdp.example.com", "matchingId": "04386-AGYFT-A74Y8-3F815",
        "smdpOid": None, "ccRequired": True}

Decisions (where inputs in the field differ from the letter of the spec):
- the "LPA:" prefix is what a QR code carries (SGP.22 4.1.3); an eIM's
  ProfileDownloadData.activationCode or a typed code may come without it:
  both are accepted, the prefix in any case ("lpa:" too);
- surrounding white space (a pasted code, a trailing newline) is stripped;
  white space inside is an error;
- AC_Format must be "1" (the only format defined);
- AC_Token (the matchingId) may be empty ("1$dp.example$$..." names only the
  SM-DP+): matchingId is then None. Allowed characters are those SGP.22
  gives (0-9, A-Z, '-'); lower case letters are accepted too, since some
  SM-DP+ issue them;
- the SM-DP+ address is an FQDN (letters, digits, '-', '.'; labels of
  1..63 characters); ":<port>" is accepted as a lab extension;
- an optional field that is present but empty ("$$1") counts as absent, so
  "1$dp$tok$" is read like "1$dp$tok";
- the Confirmation Code Required Flag, when present, must be "1";
- at most 255 characters without the prefix (SGP.32 activationCode
  UTF8String (SIZE(0..255))).
Every error is a ValueError saying what was expected and what came.
"""

MAX_LEN = 255  # SGP.32 ProfileDownloadData.activationCode (SIZE(0..255))
MAX_LABEL = 63
MAX_FQDN = 253
PREFIX = "LPA:"

_DIGITS = "0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_TOKEN_CHARS = _DIGITS + _UPPER + _LOWER + "-"
_HOST_CHARS = _DIGITS + _UPPER + _LOWER + "-."


def _bad_char(s, allowed):
    """Index and character of the first character of s not in allowed, or None."""
    for i in range(len(s)):
        if s[i] not in allowed:
            return i, s[i]
    return None


def check_address(addr, what="SM-DP+ address"):
    """An FQDN with an optional ':port' -> the address (unchanged); else ValueError."""
    if not addr:
        raise ValueError("%s: expected an FQDN such as smdp.example.com, got nothing" % what)
    host = addr
    port = None
    if ":" in addr:
        host, port = addr.split(":", 1)
        if not port or _bad_char(port, _DIGITS) is not None or not 1 <= int(port) <= 65535:
            raise ValueError("%s %r: expected a port number 1..65535 after ':', got %r"
                             % (what, addr, port))
    bad = _bad_char(host, _HOST_CHARS)
    if bad is not None:
        raise ValueError("%s %r: illegal character %r at %d, expected letters, digits, "
                         "'-' and '.'" % (what, addr, bad[1], bad[0]))
    if len(host) > MAX_FQDN:
        raise ValueError("%s: expected at most %d characters, got %d" % (what, MAX_FQDN,
                                                                           len(host)))
    for label in host.split("."):
        if not 1 <= len(label) <= MAX_LABEL:
            raise ValueError("%s %r: expected labels of 1..%d characters between dots, got %r"
                             % (what, addr, MAX_LABEL, label))
        if label[0] == "-" or label[-1] == "-":
            raise ValueError("%s %r: a label may not start or end with '-', got %r"
                             % (what, addr, label))
    return addr


def check_oid(oid, what="SM-DP+ OID"):
    """Dotted-decimal OID (at least two arcs, first 0..2) -> the OID (unchanged); else ValueError."""
    arcs = oid.split(".")
    if len(arcs) < 2:
        raise ValueError("%s %r: expected a dotted OID such as 1.3.6.1.4.1.31746, got one arc"
                         % (what, oid))
    for a in arcs:
        if not a or _bad_char(a, _DIGITS) is not None:
            raise ValueError("%s %r: expected arcs of decimal digits separated by '.', got %r"
                             % (what, oid, a))
        if len(a) > 1 and a[0] == "0":
            raise ValueError("%s %r: arc %r has a leading zero" % (what, oid, a))
    if int(arcs[0]) > 2:
        raise ValueError("%s %r: the first arc must be 0, 1 or 2, got %s" % (what, oid, arcs[0]))
    return oid


def check_matching_id(mid, what="AC_Token (matchingId)"):
    """matchingId characters (0-9, A-Z, a-z, '-'), at most 255 -> mid; else ValueError."""
    if len(mid) > MAX_LEN:
        raise ValueError("%s: expected at most %d characters, got %d" % (what, MAX_LEN, len(mid)))
    bad = _bad_char(mid, _TOKEN_CHARS)
    if bad is not None:
        raise ValueError("%s %r: illegal character %r at %d, expected 0-9, A-Z and '-'"
                         % (what, mid, bad[1], bad[0]))
    return mid


def parse(code):
    """An Activation Code string -> {"smdpAddress", "matchingId", "smdpOid", "ccRequired"}.

    matchingId / smdpOid are None when absent (or empty); ccRequired is a
    bool. Any deviation -> ValueError (see the module docstring).
    """
    if isinstance(code, (bytes, bytearray)):
        try:
            code = bytes(code).decode("utf-8")
        except UnicodeError:
            raise ValueError("activation code: expected UTF-8 text, got undecodable bytes")
    if not isinstance(code, str):
        raise ValueError("activation code: expected a string, got %r" % (code,))
    s = code.strip()
    if s[:4].upper() == PREFIX:
        s = s[4:]
    if not s:
        raise ValueError("activation code: expected 1$<SM-DP+ address>$<matchingId>, got "
                         "nothing")
    if len(s) > MAX_LEN:
        raise ValueError("activation code: expected at most %d characters, got %d"
                         % (MAX_LEN, len(s)))
    for i in range(len(s)):
        if s[i] in " \t\r\n" or ord(s[i]) < 0x20:
            raise ValueError("activation code: illegal character %r at %d (white space or "
                             "control character)" % (s[i], i))
    parts = s.split("$")
    if parts[0] != "1":
        raise ValueError("activation code: expected AC_Format '1' before the first '$', got %r"
                         % (parts[0] if len(parts) > 1 else s[:20],))
    if len(parts) < 3:
        raise ValueError("activation code: expected at least 3 '$'-separated fields "
                         "(1$<SM-DP+ address>$<matchingId>), got %d" % len(parts))
    if len(parts) > 5:
        raise ValueError("activation code: expected at most 5 '$'-separated fields "
                         "(format, address, matchingId, OID, CC flag), got %d" % len(parts))
    out = {"smdpAddress": check_address(parts[1]),
           "matchingId": check_matching_id(parts[2]) or None,
           "smdpOid": None, "ccRequired": False}
    if len(parts) > 3 and parts[3]:
        out["smdpOid"] = check_oid(parts[3])
    if len(parts) > 4 and parts[4]:
        if parts[4] != "1":
            raise ValueError("activation code: Confirmation Code Required Flag: expected '1' "
                             "or nothing, got %r" % (parts[4],))
        out["ccRequired"] = True
    return out


def build(smdp_address, matching_id=None, smdp_oid=None, cc_required=False, prefix=True):
    """The Activation Code string for these parts (checked as parse() checks them)."""
    parts = ["1", check_address(smdp_address), check_matching_id(matching_id or "")]
    if smdp_oid or cc_required:
        parts.append(check_oid(smdp_oid) if smdp_oid else "")
    if cc_required:
        parts.append("1")
    s = "$".join(parts)
    if len(s) > MAX_LEN:
        raise ValueError("activation code: expected at most %d characters, got %d"
                         % (MAX_LEN, len(s)))
    return (PREFIX + s) if prefix else s
