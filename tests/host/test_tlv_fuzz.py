"""Property tests of ipa_core.tlv on CPython: any input either decodes or raises TlvError.

Random bytes, mutations of valid ES10-shaped messages, and round trips of
generated trees. Anything else escaping (IndexError, ValueError, recursion)
is a bug a hostile eIM or a broken modem could trigger.
"""

from hypothesis import given, settings, strategies as st

from ipa_core import tlv
from ipa_core.errors import TlvError

NAMES = ("a", "b", "c", "d", "e", "f", "g", "h", "i")

# A few real shapes to mutate: GetEID, an eIM configuration, a nested result.
SEEDS = [
    bytes.fromhex("BF3E035C015A"),
    bytes.fromhex("BF3E125A1089049032123451234512345678901235"),
    tlv.enc(0xBF55, tlv.enc(0xA0, tlv.enc(0x30, tlv.encode(0x80, b"eim-1"),
                                             tlv.encode(0x81, b"eim.example.com"),
                                             tlv.encode(0x83, tlv.int_encode(7))))),
    tlv.enc(0xBF51, tlv.enc(0xBF2F, tlv.encode(0x5F37, bytes(64))), tlv.encode(0x03, b"\x06\x40")),
]


def exercise(data, strict=True, max_len=tlv.MAX_LEN):
    """Decode and touch everything a caller could touch."""
    try:
        t = tlv.decode(data, strict=strict, max_len=max_len)
        for _depth, node in tlv.walk(t):
            assert node.raw[-node.length:] == node.value if node.length else True
            if not node.constructed:
                for helper in (node.as_int, node.as_bool, node.as_null, node.as_str, node.as_oid,
                               lambda n=node: n.as_bits(NAMES)):
                    try:
                        helper()
                    except TlvError:
                        pass
        for _ in tlv.decode_all(data, max_len=max_len):
            pass
    except TlvError as e:
        assert e.offset >= 0 and e.expected and e.found


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=64), st.booleans())
def test_random_bytes_only_raise_tlv_error(data, strict):
    exercise(data, strict)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)),
                                         max_size=4), st.integers(0, 200), st.integers(1, 70000))
def test_mutated_messages_only_raise_tlv_error(seed, flips, cut, max_len):
    data = bytearray(seed)
    for pos, val in flips:
        if data:
            data[pos % len(data)] = val
    data = bytes(data[: max(0, len(data) - cut % 8)])
    exercise(data, True, max_len)
    exercise(data, False, max_len)


tree = st.recursive(
    st.tuples(st.sampled_from([0x80, 0x81, 0x5A, 0x5F37, 0x9F7B, 0x04]), st.binary(max_size=300)),
    lambda kids: st.tuples(st.sampled_from([0xA0, 0x30, 0xBF3E, 0xBF51, 0x7F21]),
                           st.lists(kids, max_size=4)),
    max_leaves=12,
)


def build(node):
    tag, body = node
    if isinstance(body, list):
        return tlv.enc(tag, *[build(c) for c in body])
    return tlv.encode(tag, body)


def shape(t):
    if t.constructed:
        return (t.tag, [shape(c) for c in t])
    return (t.tag, t.value)


@settings(max_examples=400, deadline=None)
@given(tree)
def test_round_trip_of_generated_trees(node):
    data = build(node)
    t = tlv.decode(data)
    assert t.raw == data
    assert shape(t) == node
    # Re-encoding the decoded view gives the same (DER-minimal) bytes.
    assert build(shape(t)) == data


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2 ** 70), 2 ** 70))
def test_integer_round_trip_is_minimal(n):
    v = tlv.int_encode(n)
    assert tlv.int_decode(v) == n
    if len(v) > 1:
        # DER: the first 9 bits are never all equal.
        assert not (v[0] == 0 and v[1] < 0x80) and not (v[0] == 0xFF and v[1] >= 0x80)
