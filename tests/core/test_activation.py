"""ipa_core.activation: SGP.22 4.1 Activation Codes, every accepted form and every error.

Plain functions with assert (pytest on CPython, tools/mp_test.py on MicroPython).
"""

from ipa_core import activation as act


def refused(code, *words):
    """parse(code) raises ValueError whose message has every word."""
    try:
        act.parse(code)
    except ValueError as e:
        msg = str(e)
        for w in words:
            assert w in msg, "%r not in %r" % (w, msg)
        return msg
    raise AssertionError("accepted %r" % (code,))


def test_full_code_with_prefix():
    r = act.parse("LPA:1$smdp.example.com$04386-AGYFT-A74Y8-3F815$1.3.6.1.4.1.31746$1")
    assert r == {"smdpAddress": "smdp.example.com", "matchingId": "04386-AGYFT-A74Y8-3F815",
                 "smdpOid": "1.3.6.1.4.1.31746", "ccRequired": True}


def test_minimal_code_without_prefix():
    r = act.parse("1$rsp.truphone.com$QRF-SPEEDTEST")
    assert r == {"smdpAddress": "rsp.truphone.com", "matchingId": "QRF-SPEEDTEST",
                 "smdpOid": None, "ccRequired": False}


def test_prefix_any_case_and_white_space_around():
    r = act.parse("  lpa:1$dp.example$ABC\n")
    assert r["smdpAddress"] == "dp.example" and r["matchingId"] == "ABC"


def test_bytes_input():
    assert act.parse(b"LPA:1$dp.example$ABC")["matchingId"] == "ABC"


def test_empty_matching_id_and_empty_oid_with_cc_flag():
    r = act.parse("LPA:1$dp.example$$$1")
    assert r == {"smdpAddress": "dp.example", "matchingId": None, "smdpOid": None,
                 "ccRequired": True}


def test_trailing_delimiters_are_empty_optional_fields():
    assert act.parse("1$dp.example$ABC$")["smdpOid"] is None
    r = act.parse("1$dp.example$ABC$1.2.3$")
    assert r["smdpOid"] == "1.2.3" and r["ccRequired"] is False


def test_lab_port_and_lower_case_token():
    r = act.parse("1$127.0.0.1:8443$abc-123")
    assert r["smdpAddress"] == "127.0.0.1:8443" and r["matchingId"] == "abc-123"


def test_wrong_format_version():
    refused("LPA:2$dp.example$ABC", "AC_Format '1'", "'2'")
    refused("dp.example$ABC", "AC_Format '1'", "'dp.example'")


def test_too_few_and_too_many_fields():
    refused("LPA:1$dp.example", "at least 3", "got 2")
    refused("1", "at least 3", "got 1")
    refused("1$dp$A$1.2$1$x", "at most 5", "got 6")


def test_empty_inputs():
    refused("", "got nothing")
    refused("LPA:", "got nothing")
    refused("   ", "got nothing")


def test_empty_address():
    refused("1$$ABC", "SM-DP+ address", "got nothing")


def test_bad_addresses():
    refused("1$dp_example.com$ABC", "illegal character '_'", "SM-DP+ address")
    refused("1$dp..example$ABC", "labels of 1..63")
    refused("1$-dp.example$ABC", "may not start or end with '-'")
    refused("1$dp.example:0$ABC", "port number 1..65535", "'0'")
    refused("1$dp.example:$ABC", "port number")
    refused("1$dp.example:80x$ABC", "port number")
    refused("1$" + "a" * 64 + ".com$ABC", "labels of 1..63")


def test_illegal_token_characters():
    refused("1$dp.example$AB_C", "AC_Token", "illegal character '_' at 2")
    refused("1$dp.example$AB/C", "illegal character '/'")


def test_white_space_inside():
    refused("1$dp.example$AB C", "illegal character ' ' at 15")
    refused("1$dp.example$AB\tC", "white space")


def test_bad_oids():
    refused("1$dp.example$ABC$1", "one arc")
    refused("1$dp.example$ABC$1..2", "arcs of decimal digits")
    refused("1$dp.example$ABC$1.x.2", "arcs of decimal digits", "'x'")
    refused("1$dp.example$ABC$3.1", "first arc must be 0, 1 or 2")
    refused("1$dp.example$ABC$1.02", "leading zero")


def test_bad_cc_flag():
    refused("1$dp.example$ABC$$0", "Confirmation Code Required Flag", "'0'")
    refused("1$dp.example$ABC$1.2.3$yes", "expected '1' or nothing", "'yes'")


def test_too_long():
    code = "1$dp.example$" + "A" * 243  # 256 characters
    refused(code, "at most 255", "got 256")
    assert act.parse("LPA:" + code[:-1])["matchingId"] == "A" * 242  # 255 is fine


def test_not_text():
    refused(12, "expected a string")
    refused(b"\xff\xfe", "UTF-8")


def test_build_round_trip():
    s = act.build("dp.example", "ABC-1", "1.3.6.1.4.1.31746", True)
    assert s == "LPA:1$dp.example$ABC-1$1.3.6.1.4.1.31746$1"
    assert act.build("dp.example", None, None, True, prefix=False) == "1$dp.example$$$1"
    assert act.build("dp.example", "X") == "LPA:1$dp.example$X"
    assert act.parse(s)["ccRequired"] is True
    try:
        act.build("dp example", "X")
    except ValueError as e:
        assert "illegal character ' '" in str(e)
    else:
        raise AssertionError("accepted a bad address")
