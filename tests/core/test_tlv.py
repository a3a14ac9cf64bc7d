"""ipa_core.tlv: round trips, spec byte strings, and every rejection with its offset.

Plain functions with assert: collected by pytest and by tools/mp_test.py
under MicroPython.
"""

from ipa_core.compat import unhexlify as h

from ipa_core import tlv
from ipa_core.errors import TlvError, ProtocolError


def raises_tlv(data, **kw):
    """Decode `data` and return the TlvError it must raise."""
    try:
        t = tlv.decode(data, **kw)
        for _ in tlv.walk(t):
            pass
    except TlvError as e:
        return e
    raise AssertionError("no TlvError for %s" % tlv.hexs(data))


def test_get_eid_request_from_the_module():
    # GetEuiccDataRequest ::= [62] SEQUENCE { tagList [APPLICATION 28] OCTET STRING } with tagList '5A'
    req = tlv.enc(0xBF3E, tlv.encode(0x5C, b"\x5a"))
    assert req == h("BF3E035C015A")
    t = tlv.decode(req)
    assert t.tag == 0xBF3E and t.constructed
    assert t.find(0x5C).value == b"\x5a"


def test_get_eid_response_and_views():
    eid = h("89049032123451234512345678901235")
    rsp = h("BF3E125A10") + eid
    t = tlv.decode(rsp)
    assert t.find(0x5A).value == eid
    assert t.path(0x5A).raw == h("5A10") + eid
    assert t.length == 18
    assert t.raw == rsp
    assert t.find(0x5B) is None
    assert [c.tag for c in t] == [0x5A]


def test_multi_byte_tags():
    for tag, hx in ((0xBF3E, "BF3E"), (0x5F37, "5F37"), (0x9F7B, "9F7B"), (0xBF7F, "BF7F"),
                    (0x1F8102, "1F8102")):
        enc = tlv.encode(tag, b"\x01")
        assert enc == h(hx + "0101"), hx
        assert tlv.decode(enc).tag == tag


def test_length_forms_round_trip():
    for n in (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 70000):
        v = bytes(n)
        e = tlv.encode(0x04, v)
        first = e[1]
        if n < 0x80:
            assert first == n
        elif n < 0x100:
            assert first == 0x81
        elif n < 0x10000:
            assert first == 0x82
        else:
            assert first == 0x83
        assert tlv.decode(e).value == v


def test_nested_path_and_find_all():
    inner = tlv.enc(0xA0, tlv.encode(0x80, b"a"), tlv.encode(0x80, b"b"), tlv.encode(0x81, b"c"))
    outer = tlv.enc(0xBF55, inner, tlv.encode(0x5A, b"\x01"))
    t = tlv.decode(outer)
    assert t.path(0xA0, 0x81).value == b"c"
    assert [c.value for c in t.find(0xA0).find_all(0x80)] == [b"a", b"b"]
    assert t.path(0xA0, 0x99) is None
    assert [d for d, _ in tlv.walk(t)] == [0, 1, 2, 2, 2, 1]


def test_need_names_the_missing_child():
    t = tlv.decode(h("A0038001FF"))
    try:
        t.need(0x81, "eimFqdn")
    except TlvError as e:
        assert "81" in str(e) and "eimFqdn" in str(e)
    else:
        raise AssertionError("need() did not raise")


def test_decode_all_and_non_strict():
    data = h("80010181020203")
    assert [t.tag for t in tlv.decode_all(data)] == [0x80, 0x81]
    t = tlv.decode(data, strict=False)
    assert t.tag == 0x80 and t.end == 3


def test_rejects_indefinite_length():
    e = raises_tlv(h("30800201000000"))
    assert e.offset == 1 and "indefinite" in e.found


def test_rejects_truncated_value():
    e = raises_tlv(h("5A1089049032"))
    assert e.offset == 0
    assert "16 value bytes" in e.expected and "only 4" in e.found


def test_rejects_truncated_header():
    assert "length byte" in raises_tlv(h("BF3E")).expected
    assert "subsequent tag byte" in raises_tlv(h("BF")).expected
    assert "2 length bytes" in raises_tlv(h("0482FF")).expected
    assert raises_tlv(b"").found == "end of data"


def test_rejects_too_many_length_bytes_and_long_tags():
    e = raises_tlv(h("04840000000100"))
    assert "at most 3 length bytes" in e.expected
    e = raises_tlv(h("1F8181810100"))
    assert "at most 3 bytes" in e.expected


def test_rejects_length_over_the_caller_bound():
    data = tlv.encode(0x04, bytes(300))
    e = raises_tlv(data, max_len=256)
    assert "at most 256" in e.expected and "300" in e.found
    # The bound holds for runs of TLVs too (second one too long).
    try:
        tlv.decode_all(h("800101") + data, max_len=256)
    except TlvError as e:
        assert e.offset == 3
    else:
        raise AssertionError("decode_all ignored max_len")


def test_strict_rejects_trailing_bytes():
    e = raises_tlv(h("800101FF"))
    assert e.offset == 3 and "trailing" in e.found
    assert tlv.decode(h("800101FF"), strict=False).value == b"\x01"


def test_children_must_fill_the_parent():
    # A0 claims 3 bytes holding a child that claims 2 value bytes: truncated inside.
    e = raises_tlv(h("A003800201"))
    assert e.offset == 2


def test_primitive_has_no_children():
    t = tlv.decode(h("800101"))
    try:
        t.children()
    except TlvError as e:
        assert "constructed" in e.expected
    else:
        raise AssertionError("primitive children() did not raise")


def test_tlv_error_is_a_protocol_error_with_a_message():
    e = raises_tlv(h("5A05"))
    assert isinstance(e, ProtocolError)
    assert str(e).startswith("TLV at offset 0: expected")


def test_integer_values():
    cases = ((0, "00"), (1, "01"), (127, "7F"), (128, "0080"), (255, "00FF"), (256, "0100"),
             (-1, "FF"), (-128, "80"), (-129, "FF7F"), (0x7FFFFFFF, "7FFFFFFF"))
    for n, hx in cases:
        assert tlv.int_encode(n) == h(hx), n
        assert tlv.int_decode(h(hx)) == n, hx
    t = tlv.decode(h("830180"))
    assert t.as_int() == -128
    try:
        t.as_uint()
    except TlvError as e:
        assert "non-negative" in e.expected and e.offset == 2
    else:
        raise AssertionError("negative counter accepted")
    try:
        tlv.decode(h("8300")).as_int()
    except TlvError as e:
        assert "INTEGER" in e.expected
    else:
        raise AssertionError("empty INTEGER accepted")


def test_boolean_and_null():
    assert tlv.bool_encode(True) == b"\xff" and tlv.bool_encode(False) == b"\x00"
    assert tlv.decode(h("0101FF")).as_bool() is True
    assert tlv.decode(h("010100")).as_bool() is False
    try:
        tlv.decode(h("01020000")).as_bool()
    except TlvError as e:
        assert "1-byte BOOLEAN" in e.expected
    else:
        raise AssertionError("2-byte BOOLEAN accepted")
    assert tlv.decode(h("0500")).as_null() is None
    try:
        tlv.decode(h("050100")).as_null()
    except TlvError:
        pass
    else:
        raise AssertionError("non-empty NULL accepted")


# IpaCapabilities ipaFeatures names in bit order (SGP.32 module).
FEATURES = ("directRspServerCommunication", "indirectRspServerCommunication",
            "eimDownloadDataHandling", "eimCtxParams1Generation",
            "eimProfileMetadataVerification", "minimizeEsipaBytes")


def test_bit_string_named_bits():
    v = tlv.bits_encode(["indirectRspServerCommunication"], FEATURES)
    assert v == h("0640")  # bit 1 set, 6 unused bits: DER drops trailing zeros
    assert tlv.bits_decode(v, FEATURES) == ["indirectRspServerCommunication"]
    v = tlv.bits_encode(["directRspServerCommunication", "minimizeEsipaBytes"], FEATURES)
    assert v == h("0284")
    assert tlv.bits_decode(v, FEATURES) == ["directRspServerCommunication", "minimizeEsipaBytes"]
    assert tlv.bits_encode([], FEATURES) == h("00")
    assert tlv.bits_decode(h("00"), FEATURES) == []
    # Bits beyond the names are reported by number (a newer peer's feature).
    assert tlv.bits_decode(h("0001"), FEATURES) == [7]
    for bad in ("", "08FF", "05"):
        try:
            tlv.bits_decode(h(bad))
        except TlvError:
            pass
        else:
            raise AssertionError("bad BIT STRING %s accepted" % bad)


def test_octet_and_utf8_strings():
    t = tlv.decode(tlv.encode(0x81, "smdp.example.com".encode()))
    assert t.as_str() == "smdp.example.com"
    t = tlv.decode(tlv.encode(0x0C, "Zürich".encode("utf-8")))
    assert t.as_str() == "Zürich"


def test_oid_values():
    # id-ecPublicKey 1.2.840.10045.2.1 and prime256v1 1.2.840.10045.3.1.7
    assert tlv.oid_encode("1.2.840.10045.2.1") == h("2A8648CE3D0201")
    assert tlv.decode(h("06082A8648CE3D030107")).as_oid() == "1.2.840.10045.3.1.7"
    assert tlv.oid_decode(tlv.oid_encode("2.999.3")) == "2.999.3"
    try:
        tlv.oid_decode(h("2A86"))
    except TlvError as e:
        assert "OBJECT IDENTIFIER" in e.expected
    else:
        raise AssertionError("truncated OID accepted")


def test_iccid_bcd():
    assert tlv.bcd_unswap("8949449999999990023") == h("989444999999990920F3")
    assert tlv.bcd_swap(h("989444999999990920F3")) == "8949449999999990023"


def test_header_for_streaming():
    # A BPP is sent as header + parts; header() must agree with encode().
    v = bytes(1000)
    assert tlv.header(0xBF36, 1000) + v == tlv.encode(0xBF36, v)
