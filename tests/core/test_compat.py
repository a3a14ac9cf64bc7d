"""ipa_core.compat (and es9p.dumps, coap.default_random): the same answers on MicroPython 1.13 (QuecPython) and on CPython.

tools/mp_versions.py runs these under each MicroPython release; a truncated JSON document
is the case that differs (before 1.26 MicroPython's json.loads accepts one)."""

from ipa_core import coap, compat, es9p, esipa_json
from ipa_core.compat import find, hexlify, json, loads
from ipa_core.es9p import dumps
from ipa_core.errors import ProtocolError
from test_es9p import raises

DOC = '{"header": {"functionExecutionStatus": {"status": "Executed-Success"}}, ' \
      '"transactionId": "0102", "list": [1, [2, 3], {"k": null}], "flag": true}'


def test_dumps_is_compact_and_reads_back():
    obj = {"a": [1, "x y", None, True, {"b": -2}], "c": {}, "d": []}
    text = dumps(obj)
    assert " " not in text.replace("x y", "") and json.loads(text) == obj
    assert dumps({"k": "q\"uote"}) == '{"k":"q\\"uote"}'


def test_loads_refuses_every_cut_of_a_document():
    assert loads(DOC) == json.loads(DOC)
    assert loads(DOC + " \n") == json.loads(DOC) and loads(DOC.encode()) == json.loads(DOC)
    for n in range(1, len(DOC)):
        raises(ValueError, lambda t=DOC[:n]: loads(t))


def test_loads_keeps_scalars_and_refuses_garbage():
    assert loads("12") == 12 and loads('"ab"') == "ab" and loads("[]") == []
    for bad in ('{"a": [1}', "", "{} x", '{"a": 1}}'):
        raises(ValueError, lambda t=bad: loads(t))


def test_json_answers_cut_short_are_protocol_errors():
    # An ES9+ or ESipa answer cut by a dropped connection never reads as a shorter one.
    for n in (len(DOC) - 1, len(DOC) // 2, 12):
        t = DOC[:n]
        raises(ProtocolError, lambda t=t: es9p.parse_body("ES9+.InitiateAuthentication", t),
               "not JSON")
        raises(ProtocolError, lambda t=t: esipa_json.load(t.encode(), "ESipa.GetEimPackage"),
               "not JSON")


def test_find_on_bytes_and_bytearray():
    for buf in (b"AT\r\nOK\r\n", bytearray(b"AT\r\nOK\r\n")):
        assert find(buf, b"\n") == 3 and find(buf, b"\n", 4) == 7 and find(buf, b"X") == -1


def test_hashes_and_random():
    assert hexlify(compat.sha256(b"abc").digest())[:16] == b"ba7816bf8f01cfea"
    r = coap.default_random(16)
    assert isinstance(r, bytes) and len(r) == 16 and r != coap.default_random(16)
    assert compat.time.ticks_ms if hasattr(compat.time, "ticks_ms") else compat.time.monotonic
