"""ASCII decimal numbers in peer text (HTTP fields, AT answers): "0".."9" only.

str.isdigit() also accepts other scripts' digits ("²", "٣") that int() then
refuses with a bare ValueError (issue 17, F2); a peer's number is checked here
first so that only a ProtocolError from the caller can follow.
"""


def is_digits(s):
    """True when `s` (str or bytes) is non-empty and every character is 0-9 in ASCII."""
    if not s:
        return False
    if isinstance(s, (bytes, bytearray)):
        for c in s:
            if c < 48 or c > 57:
                return False
        return True
    for ch in s:
        if ch < "0" or ch > "9":
            return False
    return True
