"""Issue 17, F2: a peer's number with a non-ASCII digit ('²', U+00B2, passes str.isdigit())
is a ProtocolError naming the field at every place that reads one (also runs under
MicroPython)."""

from ipa_core import at, at_card, at_http, http
from ipa_core.errors import ProtocolError, is_digits

from test_http import Stream, raises

SUP2 = "\u00b2"  # '²': str.isdigit() is True, int() fails


def test_is_digits_takes_ascii_digits_only():
    assert is_digits("0123456789") and is_digits(b"42")
    for s in ("", b"", None, SUP2 + "5", "\u0663", "1 2", "-1", "+1", "1.0", b"\xb25", "\uff11"):
        assert not is_digits(s), s


def test_http_content_length_with_superscript_two():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: \xb25\r\n\r\n" + b"x" * 25
    e = raises(ProtocolError, http.read_response, Stream(head))
    assert "Content-Length: expected one decimal number" in str(e)
    # The same in UTF-8 (c2 b2) and an Arabic-Indic digit.
    for v in (b"\xc2\xb25", b"\xd9\xa3"):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: " + v + b"\r\n\r\n"
        raises(ProtocolError, http.read_response, Stream(head))


def test_at_cme_error_code_with_superscript_two_is_text():
    code, text = at._error_code("+CME ERROR: " + SUP2, "+CME ERROR:", at.CME_ERRORS)
    assert code is None and text == SUP2


def test_at_card_answer_length_with_superscript_two():
    e = raises(ProtocolError, at_card.parse_apdu_answer, 'AT+CSIM=10,"0070000001"',
               ["+CSIM: " + SUP2 + ',"9000"'], "+CSIM:")
    assert "is not a number" in str(e)


def test_at_http_number_and_url_port_with_superscript_two():
    e = raises(ProtocolError, at_http.number, SUP2 + "00", "status", "+QHTTPPOST: 0," + SUP2,
               "AT+QHTTPPOST=3")
    assert "status" in str(e) and "is not a number" in str(e)
    assert at_http.number("200", "status", "", "AT") == 200
    e = raises(ValueError, at_http.split_url, "https://eim.example:" + SUP2 + "443/")
    assert "base URL" in str(e)  # refused before the port is read (printable ASCII only)
