"""ipa_core.apdu: exact bytes of every APDU the ISD-R session sends.

Each test scripts a card with (expected command, response) pairs; the card
fails the test on the first byte that differs.
"""

from ipa_core import apdu
from ipa_core.compat import hexlify, unhexlify
from ipa_core.errors import CardError, ProtocolError, TransportError
from scripted import ScriptedCard

ISDR = "A0000005591010FFFFFFFF8900000100"
TCAP = ("80AA000005A903830107", "9000")


def opened(extra, channel=1, tcap=True):
    """Script for open() on `channel`, then `extra`."""
    s = [TCAP] if tcap else []
    s.append(("0070000001", "%02X9000" % channel))
    s.append(("%02XA4040410%s00" % (apdu.cla_for(0, channel), ISDR), "6F108410" + ISDR + "9000"))
    return s + list(extra)


def raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def test_command_cases():
    assert apdu.command(0x00, 0x70, 0x80, 0x01) == unhexlify("00708001")  # case 1
    assert apdu.command(0x00, 0xC0, 0, 0, le=0x10) == unhexlify("00C0000010")  # case 2
    assert apdu.command(0x80, 0xE2, 0x91, 0, b"\xbf\x2e\x00") == unhexlify("80E2910003BF2E00")
    assert apdu.command(0x00, 0xA4, 4, 4, b"\xa0", le=256) == unhexlify("00A4040401A000")
    raises(ValueError, apdu.command, 0, 0, 0, 0, bytes(256))
    raises(ValueError, apdu.command, 0, 0, 0, 0, None, 257)


def test_split_response_and_sw_names():
    assert apdu.split_response(unhexlify("5A9000")) == (b"\x5a", 0x9000)
    e = raises(TransportError, apdu.split_response, b"\x90")
    assert "1 bytes" in str(e) and "SW1 SW2" in str(e)
    raises(TransportError, apdu.split_response, b"")
    assert apdu.sw_name(0x6A88) == "referenced data not found"
    assert apdu.sw_name(0x6110) == "16 more bytes available"
    assert apdu.sw_name(0x6C05) == "wrong Le, exact length 5"
    assert apdu.sw_name(0x1234) == "unknown status"


def test_card_error_names_the_status_word():
    e = CardError(0x6A88, "STORE DATA block 0")
    assert e.sw == 0x6A88
    assert str(e) == "STORE DATA block 0: card answered SW 6A88 (referenced data not found), expected 9000"


def test_cla_coding_for_channels_0_to_19():
    assert [apdu.cla_for(0x00, c) for c in (0, 1, 2, 3)] == [0x00, 0x01, 0x02, 0x03]
    assert [apdu.cla_for(0x80, c) for c in (0, 1, 3)] == [0x80, 0x81, 0x83]
    assert apdu.cla_for(0x00, 4) == 0x40 and apdu.cla_for(0x00, 19) == 0x4F
    assert apdu.cla_for(0x80, 4) == 0xC0 and apdu.cla_for(0x80, 19) == 0xCF
    raises(ValueError, apdu.cla_for, 0x00, 20)


def test_open_store_data_close_on_channel_1():
    card = ScriptedCard(opened([
        ("81E2910006BF3E035C015A", "BF3E125A1089049032123451234512345678901235" + "9000"),
        ("00708001", "9000"),  # MANAGE CHANNEL close is case 1
    ]))
    s = apdu.IsdrSession(card).open()
    assert s.channel == 1
    rsp = s.store_data(unhexlify("BF3E035C015A"))
    assert hexlify(rsp).decode().upper().startswith("BF3E125A10890490")
    s.close()
    card.done()


def test_high_channel_cla_and_select_p2():
    card = ScriptedCard(opened([("C1E2910003BF2E00", "BF2E0380011A9000")], channel=5))
    s = apdu.IsdrSession(card).open()
    assert s.store_data(unhexlify("BF2E00")) == unhexlify("BF2E0380011A")
    card.done()


def test_store_data_segments_with_block_numbers():
    req = bytes(range(256)) * 2 + bytes(88)  # 600 bytes -> 255 + 255 + 90
    card = ScriptedCard(opened([
        ("81E21100FF" + hexlify(req[:255]).decode(), "9000"),
        ("81E21101FF" + hexlify(req[255:510]).decode(), "9000"),
        ("81E291025A" + hexlify(req[510:]).decode(), "BF2B00" + "9000"),
    ], tcap=False))
    s = apdu.IsdrSession(card, terminal_capability=False).open()
    assert s.store_data(req) == unhexlify("BF2B00")
    card.done()


def test_configurable_segment_size():
    req = bytes(range(10))
    card = ScriptedCard(opened([
        ("81E2110004" + hexlify(req[:4]).decode(), "9000"),
        ("81E2110104" + hexlify(req[4:8]).decode(), "9000"),
        ("81E2910202" + hexlify(req[8:]).decode(), "9000"),
    ]))
    assert apdu.IsdrSession(card, segment_size=4).open().store_data(req) == b""
    card.done()
    raises(ValueError, apdu.IsdrSession, card, apdu.ISDR_AID, 0)
    raises(ValueError, apdu.IsdrSession, card, apdu.ISDR_AID, 256)


def test_get_response_loop_collects_a_long_answer():
    part1 = bytes(range(256))
    part2 = bytes(100)
    card = ScriptedCard(opened([
        ("81E2910003BF2800", "6100"),
        ("01C0000000", hexlify(part1).decode() + "6164"),
        ("01C0000064", hexlify(part2).decode() + "9000"),
    ]))
    s = apdu.IsdrSession(card).open()
    assert s.store_data(unhexlify("BF2800")) == part1 + part2
    card.done()


def test_wrong_le_is_resent_with_the_exact_length():
    card = ScriptedCard([
        ("00CA00FE00", "6C08"),
        ("00CA00FE08", "0102030405060708" + "9000"),
    ])
    s = apdu.IsdrSession(card)
    data, sw = s.transmit(unhexlify("00CA00FE00"))
    assert sw == 0x9000 and data == unhexlify("0102030405060708")
    card.done()


def test_response_bound_stops_a_runaway_card():
    script = opened([("81E2910003BF2800", "6100")])
    for _ in range(4):
        script.append(("01C0000000", "00" * 256 + "6100"))
    card = ScriptedCard(script)
    s = apdu.IsdrSession(card, max_response=1000).open()
    e = raises(ProtocolError, s.store_data, unhexlify("BF2800"))
    assert "1000-byte bound" in str(e)


def test_fallback_to_basic_channel_on_6881():
    card = ScriptedCard([
        TCAP,
        ("0070000001", "6881"),
        ("00A4040410" + ISDR + "00", "9000"),
        ("80E2910003BF2E00", "BF2E0380011A9000"),
    ])
    s = apdu.IsdrSession(card).open()
    assert s.channel == 0
    assert s.store_data(unhexlify("BF2E00")) == unhexlify("BF2E0380011A")
    s.close()  # nothing sent: the basic channel is never closed
    card.done()


def test_fallback_to_basic_channel_when_select_on_the_channel_answers_6881():
    card = ScriptedCard([
        TCAP,
        ("0070000001", "019000"),
        ("01A4040410" + ISDR + "00", "6881"),
        ("00708001", "9000"),
        ("00A4040410" + ISDR + "00", "9000"),
        ("80E2910003BF2E00", "BF2E0380011A9000"),
    ])
    s = apdu.IsdrSession(card).open()
    assert s.channel == 0 and s.is_open
    assert s.store_data(unhexlify("BF2E00")) == unhexlify("BF2E0380011A")
    card.done()


def test_terminal_capability_refusal_is_not_fatal():
    card = ScriptedCard([("80AA000005A903830107", "6D00")] + opened([], tcap=False))
    apdu.IsdrSession(card).open()
    card.done()


def test_manage_channel_errors():
    card = ScriptedCard([TCAP, ("0070000001", "6A81")])
    e = raises(CardError, apdu.IsdrSession(card).open)
    assert e.sw == 0x6A81 and "MANAGE CHANNEL open" in str(e)
    card = ScriptedCard([TCAP, ("0070000001", "009000")])
    e = raises(ProtocolError, apdu.IsdrSession(card).open)
    assert "channel number" in str(e)


def test_select_failure_closes_the_channel_and_names_the_sw():
    card = ScriptedCard([
        TCAP,
        ("0070000001", "029000"),
        ("02A4040410" + ISDR + "00", "6A82"),
        ("00708002", "9000"),
    ])
    e = raises(CardError, apdu.IsdrSession(card).open)
    assert e.sw == 0x6A82 and "SELECT ISD-R" in str(e)
    card.done()


def test_store_data_error_names_the_block():
    card = ScriptedCard(opened([("81E2910003BF5100", "6A80")]))
    s = apdu.IsdrSession(card).open()
    e = raises(CardError, s.store_data, unhexlify("BF5100"))
    assert e.sw == 0x6A80 and "STORE DATA block 0" in str(e) and "incorrect data field" in str(e)
    raises(ValueError, s.store_data, b"")


def test_truncated_response_is_a_transport_error():
    card = ScriptedCard(opened([("81E2910003BF2E00", "90")]))
    s = apdu.IsdrSession(card).open()
    e = raises(TransportError, s.store_data, unhexlify("BF2E00"))
    assert "expected at least SW1 SW2" in str(e)


def test_modem_channel_sends_channel_bits_zero():
    # AT+CCHO already opened and selected: no MANAGE CHANNEL, no SELECT, CLA 80/00.
    card = ScriptedCard([
        ("80E2910003BF2800", "6105"),
        ("00C0000005", "BF28020000" + "9000"),
    ])
    s = apdu.IsdrSession(card, modem_channel=True).open()
    assert s.store_data(unhexlify("BF2800")) == unhexlify("BF28020000")
    s.close()
    card.done()


def test_trace_sees_every_apdu():
    seen = []
    card = ScriptedCard([("80E2910003BF2800", "9000")])
    s = apdu.IsdrSession(card, modem_channel=True, trace=lambda d, b: seen.append((d, bytes(b))))
    s.store_data(unhexlify("BF2800"))
    assert seen == [(">", unhexlify("80E2910003BF2800")), ("<", unhexlify("9000"))]


def test_context_manager_opens_and_closes():
    card = ScriptedCard(opened([("00708001", "9000")]))
    with apdu.IsdrSession(card) as s:
        assert s.is_open and s.channel == 1
    assert not s.is_open
    card.done()


def test_invalidate_forgets_the_channel_without_closing_it():
    """After a SIM refresh the channel is gone: no MANAGE CHANNEL close for it; the next
    STORE DATA opens a new channel (and selects the ISD-R) first."""
    card = ScriptedCard(opened([("81E2910003BF2E00", "BF2E0380011A9000")], tcap=False)
                        + opened([("82E2910003BF2E00", "BF2E0380011A9000")], channel=2,
                                 tcap=False))
    s = apdu.IsdrSession(card, terminal_capability=False).open()
    s.store_data(unhexlify("BF2E00"))
    s.invalidate()
    assert not s.is_open and s.channel == 0
    assert s.store_data(unhexlify("BF2E00")) == unhexlify("BF2E0380011A")
    assert s.channel == 2
    card.done()
