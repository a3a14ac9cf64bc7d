"""The virtual SGP.32 IoT eUICC (ipa_host.sim.euicc.euicc), driven at APDU level.

Requests are written by hand from the ASN.1 modules (SGP32Definitions,
RSPDefinitions; AUTOMATIC TAGS applied by hand), as hex where the bytes are
fixed, so these tests pin the encoding independently of the IPA's code.
"""

import json
import os
import random

import pytest

from euicc_fixtures import (
    DEFAULT_PROFILES, EIM_FQDN, EIM_ID, ICCID_1, ICCID_2, ICCID_EMERGENCY, ICCID_FALLBACK,
    ISDR_AID, build_package, decode_epr, eco_add_eim, eco_delete_eim, eco_list_eim, eim_config,
    eim_key, epr_signature_ok, es10, follow, iccid_tlv, make_euicc, open_isdr, psmo_delete, psmo_disable,
    psmo_enable, psmo_list_profile_info, reopen, store_data, sw_of,
)
from iso7816_client import parse_atr  # tests/host: the ATR read by ISO 7816-3, not by the card
from ipa_core import tlv
from ipa_host.sim.euicc import euicc as euicc_mod
from ipa_host.sim import pki
from ipa_host.sim.euicc.euicc import VirtualEuicc
from ipa_host.sim.euicc.euicc_state import StateError

H = bytes.fromhex
EID = "89049032123451234512345678901235"


@pytest.fixture
def card(tmp_path):
    return make_euicc(tmp_path)


def apdu(card, hexstr):
    return card.transmit(H(hexstr))


def whole(card, hexstr):
    """apdu() with a 61xx answer followed by GET RESPONSE on the command's channel: data + SW."""
    cmd = H(hexstr)
    c = cmd[0] & 0x7F
    data, sw_ = follow(card, 4 + (c & 0x0F) if c & 0x40 else c & 0x03, card.transmit(cmd))
    return data + bytes((sw_ >> 8, sw_ & 0xFF))


def sw(resp):
    return "%04X" % sw_of(resp)


def call(card, hexstr):
    """One ES10 request given as hex -> decoded response TLV."""
    return tlv.decode(es10(card, H(hexstr)))


def states(card):
    return {p["iccid"]: p["state"] for p in card.state.profiles}


def pending_notifications(card):
    """(seq, event, iccid) of the pending notifications, from RetrieveNotificationsList."""
    r = call(card, "BF2B00")
    out = []
    for n in r.need(0xA0):
        meta = n.need(0xBF2F)
        bits = meta.need(0x81).as_bits(("install", "enable", "disable", "delete"))
        out.append((meta.need(0x80).as_int(), bits[0], tlv.bcd_swap(meta.need(0x5A).value)))
    return out


# ---- APDU layer ---------------------------------------------------------------------------


def test_atr_is_a_well_formed_t0_t15_atr(card):
    atr = card.atr
    assert atr[0] == 0x3B and len(atr) == 2 + 4 + (atr[1] & 0x0F) + 1
    x = 0
    for b in atr[1:]:
        x ^= b
    assert x == 0  # TCK makes the XOR of T0..TCK zero
    assert b"eUICC" in atr
    assert card.reset() == atr


def test_manage_channel_opens_1_to_19_then_refuses(card):
    for n in range(1, 20):
        assert apdu(card, "0070000001").hex() == "%02x9000" % n
    assert sw(apdu(card, "0070000001")) == "6881"
    assert sw(apdu(card, "0070800500")) == "9000"
    assert apdu(card, "0070000001").hex() == "059000"  # the lowest free one again
    assert sw(apdu(card, "0070800300")) == "9000"
    assert sw(apdu(card, "0070800300")) == "6881"  # not open any more
    assert sw(apdu(card, "0070800000")) == "6A86"  # the basic channel stays
    assert sw(apdu(card, "0070801400")) == "6A86"  # channel 20 does not exist
    assert sw(apdu(card, "0070400000")) == "6A86"
    assert sw(apdu(card, "007000000101")) == "6700"


def test_manage_channel_close_from_its_own_cla(card):
    assert apdu(card, "0070000001").hex() == "019000"
    assert sw(apdu(card, "0170800000")) == "9000"  # P2 00: close the CLA's channel
    assert sw(apdu(card, "01A4040010" + ISDR_AID.hex() + "00")) == "6881"


def test_select_isdr_answers_fci_fcp_or_nothing(card):
    r = whole(card, "00A4040010" + ISDR_AID.hex() + "00")
    assert sw(r) == "9000"
    fci = tlv.decode(r[:-2])
    assert fci.tag == 0x6F and fci.need(0x84).value == ISDR_AID
    prop = fci.need(0xA5)
    assert prop.path(0xE0, 0x82).value == H("020500")  # SGP.22 svn
    # ISDRProprietaryApplicationTemplateIoT: euiccConfiguration, enabledProfile set
    assert prop.path(0xE1, 0x80).as_bits(("ipaeSupported", "enabledProfile")) == ["enabledProfile"]
    r = whole(card, "00A4040410" + ISDR_AID.hex() + "00")
    assert sw(r) == "9000" and r[0] == 0x62
    assert apdu(card, "00A4040C10" + ISDR_AID.hex()).hex() == "9000"
    assert sw(whole(card, "00A404000BA0000005591010FFFFFFFF00")) == "9000"  # partial AID
    assert sw(apdu(card, "00A4040007A000000087100200")) == "6A82"  # USIM: not here
    assert sw(apdu(card, "00A4000C023F00")) == "6A86"  # select by FID
    assert sw(apdu(card, "00A4040200")) == "6A86"
    assert sw(apdu(card, "00A40400")) == "6700"
    assert sw(apdu(card, "02A4040010" + ISDR_AID.hex() + "00")) == "6881"  # channel 2 closed


def test_cla_coding_of_channels_4_to_19(card):
    for _ in range(19):
        apdu(card, "0070000001")
    for ch in (4, 11, 19):
        c = 0x40 | (ch - 4)
        assert sw(apdu(card, "%02XA4040C10%s" % (c, ISDR_AID.hex()))) == "9000"
        r = whole(card, "%02XE2910006BF3E035C015A" % (0x80 | c))
        assert r.hex().upper() == "BF3E125A10" + EID + "9000"
        assert sw(apdu(card, "%02XA4040C10%s" % (c, ISDR_AID.hex()))) == "9000"
    assert sw(apdu(card, "0070800B00")) == "9000"
    assert sw(apdu(card, "47A4040C10" + ISDR_AID.hex())) == "6881"  # 0x47 = channel 11


def test_bad_class_instruction_and_lengths_are_status_words(card):
    assert sw(apdu(card, "A0A40000023F00")) == "6E00"  # GSM class
    assert sw(apdu(card, "FFA4040000")) == "6E00"
    assert sw(apdu(card, "20A4040C10" + ISDR_AID.hex())) == "6E00"  # RFU class
    assert sw(apdu(card, "00E2910003BF2000")) == "6E00"  # STORE DATA in the interindustry class
    assert sw(apdu(card, "80A4040C10" + ISDR_AID.hex())) == "6E00"  # SELECT proprietary
    assert sw(apdu(card, "00CA9F7F00")) == "6D00"
    assert sw(apdu(card, "80F2000000")) == "6D00"
    assert sw(apdu(card, "10A4040C10" + ISDR_AID.hex())) == "6884"  # chaining
    assert sw(apdu(card, "0CA4040C10" + ISDR_AID.hex())) == "6882"  # secure messaging
    assert sw(apdu(card, "00A404")) == "6700"
    assert sw(apdu(card, "00A4040C05A0000005")) == "6700"  # Lc 5, 4 bytes
    assert sw(apdu(card, "00A4040C00")) == "6700"  # Le only, no AID
    assert sw(apdu(card, "80E2910000")) == "6700"  # Le only: no data
    assert sw(apdu(card, "80E291000000000300BF20")) == "6700"  # extended length
    assert sw(card.transmit(b"")) == "6700"
    assert sw(card.transmit(None)) == "6700"
    assert sw(card.transmit("text")) == "6700"


def test_terminal_capability_is_accepted(card):
    assert apdu(card, "80AA000005A903830107").hex() == "9000"
    assert apdu(card, "80AA0000").hex() == "9000"
    assert sw(apdu(card, "80AA010005A903830107")) == "6A86"


def test_store_data_needs_the_isdr_selected_on_that_channel(card):
    assert sw(apdu(card, "80E2910003BF2000")) == "6985"  # basic channel, nothing selected
    assert apdu(card, "0070000001").hex() == "019000"
    assert sw(apdu(card, "81E2910003BF2000")) == "6985"
    assert sw(apdu(card, "01A4040007A000000087100200")) == "6A82"
    assert sw(apdu(card, "81E2910003BF2000")) == "6985"
    assert sw(apdu(card, "01A4040C10" + ISDR_AID.hex())) == "9000"
    assert sw(whole(card, "81E2910003BF2000")) == "9000"
    assert sw(apdu(card, "80E2910003BF2000")) == "6985"  # still not on channel 0


def test_store_data_blocks_must_come_in_order(card):
    ch = open_isdr(card)
    c = "%02X" % (0x80 | ch)
    assert sw(apdu(card, c + "E2110002BF3E")) == "9000"
    assert sw(apdu(card, c + "E2910204035C015A")) == "6985"  # block 2 after block 0
    assert sw(apdu(card, c + "E2910104035C015A")) == "6985"  # the partial request is gone
    assert sw(apdu(card, c + "E2110002BF3E")) == "9000"  # block 0 starts again
    assert sw(apdu(card, c + "E2110102035C")) == "9000"
    r = whole(card, c + "E2910202015A")
    assert r.hex().upper() == "BF3E125A10" + EID + "9000"
    assert sw(apdu(card, c + "E2120003BF2000")) == "6A86"  # P1 neither 11 nor 91
    assert sw(apdu(card, c + "E2110002BF3E")) == "9000"
    assert sw(apdu(card, c + "E2110002BF3E")) == "9000"  # block 0 again: a new request


def test_store_data_reassembles_per_channel(card):
    a, b = open_isdr(card), open_isdr(card)
    assert sw(apdu(card, "%02XE2110002BF3E" % (0x80 | a))) == "9000"
    assert sw(apdu(card, "%02XE2110002BF20" % (0x80 | b))) == "9000"
    ra = whole(card, "%02XE2910104035C015A" % (0x80 | a))
    rb = whole(card, "%02XE291010100" % (0x80 | b))
    assert ra.hex().upper() == "BF3E125A10" + EID + "9000"
    assert rb[:2] == H("BF20") and sw(rb) == "9000"


def test_malformed_unknown_and_trailing_requests(card):
    ch = open_isdr(card)
    assert store_data(card, ch, H("BF3E055C015A"))[1] == 0x6A80  # length past the end
    assert store_data(card, ch, H("BF3E035C015A00"))[1] == 0x6A80  # trailing byte
    assert store_data(card, ch, H("BF3E80"))[1] == 0x6A80  # indefinite length
    assert store_data(card, ch, H("BF7F00"))[1] == 0x6A88  # no such function
    assert store_data(card, ch, H("BF3E035C0101"))[1] == 0x6A80  # tagList not 5A
    assert store_data(card, ch, H("BF3000"))[1] == 0x6A80  # seqNumber missing
    assert store_data(card, ch, H("BF5A00"))[1] == 0x6A80  # refreshFlag missing
    assert store_data(card, ch, H("BF3E035C015A"))[1] == 0x9000


@pytest.mark.parametrize("protocol", ["T0", "T1"])
def test_long_answers_come_in_256_byte_chunks_through_get_response(tmp_path, protocol):
    card = make_euicc(tmp_path, protocol=protocol)
    ch = open_isdr(card)
    r = apdu(card, "%02XE2910003BF5600" % (0x80 | ch))
    if protocol == "T0":  # case 4 in T=0: only the announcement, 256 or more (61 00)
        assert r == H("6100")
    else:  # T=1: the first 256 bytes in the answer
        assert len(r) == 258 and r[-2] == 0x61
    whole = bytearray(r[:-2])
    announced = r[-1]
    steps = 0
    while True:
        r = apdu(card, "%02XC00000%02X" % (ch, announced))
        steps += 1
        whole += r[:-2]
        if r[-2] == 0x61:
            assert len(r) == 258
            announced = r[-1]
            continue
        assert sw(r) == "9000" and len(r) - 2 == (announced or 256)
        break
    certs = tlv.decode(bytes(whole)).need(0xA0)
    assert len(whole) > 512 and steps >= 2
    assert tlv.encode(0x30, certs.need(0xA5).value) == card.eum_cert_der
    assert tlv.encode(0x30, certs.need(0xA6).value) == card.euicc_cert_der
    assert sw(apdu(card, "%02XC0000000" % ch)) == "6985"  # nothing left


def test_get_response_small_le_wrong_p1p2_and_lost_answers(card):
    ch = open_isdr(card)
    r = apdu(card, "%02XE2910003BF5600" % (0x80 | ch))
    assert r[-2] == 0x61
    assert sw(apdu(card, "%02XC0010010" % ch)) == "6B00"
    r = apdu(card, "%02XC0000010" % ch)  # 16 bytes only
    assert len(r) == 18 and r[-2] == 0x61
    # any other command on the channel drops the rest of the answer
    assert sw(apdu(card, "%02XA4040C10%s" % (ch, ISDR_AID.hex()))) == "9000"
    assert sw(apdu(card, "%02XC0000000" % ch)) == "6985"
    assert sw(apdu(card, "00C0000000")) == "6985"


# ---- transmission protocol: T=0 (default) and T=1 (ISO/IEC 7816-3 cases 1S-4S) ------------


def test_atr_announces_the_protocol_the_card_speaks(tmp_path):
    t0 = make_euicc(tmp_path / "a")
    t1 = make_euicc(tmp_path / "b", protocol="T1")
    assert parse_atr(t0.atr)["protocols"] == [0, 15]  # TD1 80, TD2 1F
    assert parse_atr(t1.atr)["protocols"] == [1, 1, 15]  # TD1 81, TD2 B1, TD3 1F
    assert t0.atr[:6] == H("3B9F96801FC7") and t1.atr[:9] == H("3B9F9681B1FE451FC7")
    assert parse_atr(t1.atr)["historical"] == parse_atr(t0.atr)["historical"]
    assert t1.reset() == t1.atr
    # Kept in the state file: reopened without a protocol, the card stays T=1.
    assert reopen(t1).protocol == "T1" and reopen(t1).atr == t1.atr
    assert json.load(open(t1.state_path))["protocol"] == "T1"
    with pytest.raises(ValueError, match="protocol must be one of T0, T1"):
        VirtualEuicc(t0.pki["folder"], protocol="T=2")


def test_t0_case4_is_answered_61xx_and_fetched_with_get_response(card):
    """SELECT and STORE DATA carry data: in T=0 the answer is only announced, with or
    without an Le byte in the command (a T=0 reader strips it)."""
    for select in ("00A4040010" + ISDR_AID.hex() + "00", "00A4040010" + ISDR_AID.hex()):
        assert apdu(card, select) == H("6123")
        fci = apdu(card, "00C0000023")
        assert fci[0] == 0x6F and len(fci) == 0x23 + 2 and sw(fci) == "9000"
    assert apdu(card, "00A4040C10" + ISDR_AID.hex()) == H("9000")  # nothing to announce
    assert apdu(card, "80E2910006BF3E035C015A") == H("6115")
    assert apdu(card, "00C0000015").hex().upper() == "BF3E125A10" + EID + "9000"
    assert apdu(card, "80E2110002BF3E") == H("9000")  # a block that is not the last
    assert sw(apdu(card, "00C0000000")) == "6985"  # nothing pending


def test_t0_wrong_le_is_refused_with_6cxx_and_has_no_effect(card):
    assert apdu(card, "0070000000") == H("6C01")  # Le 256 for a 1-byte answer
    assert apdu(card, "00700000") == H("6C01")  # no Le: P3 00 in T=0, the same
    assert apdu(card, "0070000002") == H("6C01")
    assert apdu(card, "0070000001") == H("019000")  # no channel was opened before
    assert apdu(card, "01A4040010" + ISDR_AID.hex()) == H("6123")
    assert apdu(card, "01C0000000") == H("6C23")  # more than there is
    assert apdu(card, "01C0000030") == H("6C23")
    part = apdu(card, "01C0000010")  # less: that much, and the rest announced
    assert len(part) == 0x12 and part[-2:] == H("6113")
    rest = apdu(card, "01C0000013")
    assert part[:-2] + rest[:-2] == tlv.encode(0x6F, tlv.decode(part[:-2] + rest[:-2]).value)
    assert sw(rest) == "9000"


def test_t0_get_response_on_channels_4_to_19(card):
    for _ in range(19):
        apdu(card, "0070000001")
    for ch, c in ((4, 0x40), (11, 0x47), (19, 0x4F)):
        assert apdu(card, "%02XA4040C10%s" % (c, ISDR_AID.hex())) == H("9000")
        assert apdu(card, "%02XE2910006BF3E035C015A" % (0x80 | c)) == H("6115")
        assert sw(apdu(card, "%02XC0000015" % (c ^ 1))) == "6985"  # another channel: nothing
        r = apdu(card, "%02XC0000015" % c)
        assert r.hex().upper() == "BF3E125A10" + EID + "9000", ch


def test_t1_answers_data_in_the_same_exchange(tmp_path):
    card = make_euicc(tmp_path, protocol="T1")
    r = apdu(card, "00A4040010" + ISDR_AID.hex() + "00")
    assert r[0] == 0x6F and len(r) == 0x23 + 2 and sw(r) == "9000"
    assert apdu(card, "0070000001") == H("019000")
    assert apdu(card, "01A4040C10" + ISDR_AID.hex()) == H("9000")
    r = apdu(card, "81E2910006BF3E035C015A")
    assert r.hex().upper() == "BF3E125A10" + EID + "9000"
    r = apdu(card, "81E2910003BF5600")  # long: 256 bytes, then 61xx
    assert len(r) == 258 and r[-2] == 0x61
    data, last = follow(card, 1, r)
    assert last == 0x9000 and tlv.decode(data).tag == 0xBF56


# ---- lenient by default, strict on request (docs/sim-euicc.md) -------------------------------


@pytest.mark.parametrize("protocol", ["T0", "T1"])
def test_each_leniency_is_taken_and_refused_when_strict(tmp_path, protocol):
    """euicc_apdu.LENIENCIES: each accepted by the card served as a bench, each refused by
    the strict card `ipa --card sim` uses; the forms ISO/IEC 7816-4 gives pass on both."""
    lenient = make_euicc(tmp_path / "l", protocol=protocol)
    strict = VirtualEuicc(lenient.pki["folder"], state_path=lenient.state_path, strict=True)
    assert strict.protocol == protocol and not lenient.strict and strict.strict
    aid = ISDR_AID.hex()

    def both(hexstr):
        return sw(apdu(lenient, hexstr)), sw(apdu(strict, hexstr))

    for card in (lenient, strict):
        assert apdu(card, "0070000001") == H("019000")
    # GET RESPONSE in the proprietary class (lpac: 80|ch C0)
    assert both("01A4040010%s" % aid) == (("6123",) * 2 if protocol == "T0" else ("9000",) * 2)
    if protocol == "T0":
        assert both("81C0000023") == ("9000", "6E00")
        assert sw(apdu(strict, "01C0000023")) == "9000"  # the interindustry class: taken
    # MANAGE CHANNEL close with an Le byte (lpac: 00 70 80 0N 00)
    assert both("0070800100") == ("9000", "9000" if protocol == "T0" else "6700")
    if protocol == "T1":
        assert sw(apdu(strict, "00708001")) == "9000"  # case 1, as ISO/IEC 7816-4 has it
    for card in (lenient, strict):
        assert apdu(card, "0070000001") == H("019000")
    assert both("0070800105") == ("9000", "6700")  # P3 05 is no case-1 form in T=0 either
    assert sw(apdu(strict, "00708001")) == "9000"
    # SELECT by a right-truncated AID
    assert both("00A404000BA0000005591010FFFFFFFF") == (
        ("6123" if protocol == "T0" else "9000"), "6A82")
    # TERMINAL CAPABILITY: any data, or one A9 TLV (ETSI TS 102 221 11.1.19)
    assert both("80AA000005A903830107") == ("9000", "9000")
    assert both("80AA000003830107") == ("9000", "6A80")
    assert both("80AA000003A90583") == ("9000", "6A80")  # A9 cut short
    assert both("80AA0000") == ("9000", "6700")
    if protocol == "T1":  # an Le shorter than the answer: ignored, or that much and 61xx
        for card in (lenient, strict):
            assert sw(apdu(card, "00A4040C10%s" % aid)) == "9000"
        r_l, r_s = (apdu(c, "80E2910006BF3E035C015A10") for c in (lenient, strict))
        assert len(r_l) == 0x15 + 2 and sw(r_l) == "9000"
        assert len(r_s) == 0x10 + 2 and sw(r_s) == "6105"
        assert apdu(strict, "00C0000005")[:-2] == r_l[0x10:0x15]


def test_reset_closes_channels_and_drops_a_partial_request(card):
    ch = open_isdr(card)
    assert sw(apdu(card, "%02XE2110002BF3E" % (0x80 | ch))) == "9000"
    assert card.reset() == card.atr
    assert sw(apdu(card, "%02XE2910104035C015A" % (0x80 | ch))) == "6881"
    assert apdu(card, "0070000001").hex() == "019000"
    assert sw(apdu(card, "01A4040C10" + ISDR_AID.hex())) == "9000"
    assert sw(apdu(card, "81E2910104035C015A")) == "6985"  # block 1 without block 0


def test_transmit_never_raises_on_random_input(card):
    rnd = random.Random(1234)
    ch = open_isdr(card)
    for _ in range(3000):
        n = rnd.choice((0, 1, 3, 4, 5, 6, 8, 12, 40, 300))
        b = bytearray(rnd.getrandbits(8) for _ in range(n))
        if n >= 4 and rnd.random() < 0.5:
            b[0] = rnd.choice((0x00, 0x80, ch, 0x80 | ch))
            b[1] = rnd.choice((0x70, 0xA4, 0xC0, 0xE2, 0xAA))
        if n > 5 and rnd.random() < 0.5:
            b[4] = min(n - 5, 255)
        r = card.transmit(bytes(b))
        assert isinstance(r, bytes) and len(r) >= 2
        assert r[-2:] != b"\x6f\x00", (bytes(b).hex(), card.last_error)


# ---- ES10: information ---------------------------------------------------------------------


def test_get_eid(card):
    assert es10(card, H("BF3E035C015A")).hex().upper() == "BF3E125A10" + EID
    assert es10(card, H("BF3E00")).hex().upper() == "BF3E125A10" + EID


def test_get_euicc_info1(card):
    r = call(card, "BF2000")
    ci = pki.ski(card.pki["ci_cert"])
    assert [c.tag for c in r] == [0x82, 0xA9, 0xAA]
    assert r.need(0x82).value == H("020500")
    assert [c.value for c in r.need(0xA9)] == [ci] and [c.value for c in r.need(0xAA)] == [ci]


def test_get_euicc_info2_has_the_sgp32_fields_in_order(card):
    r = call(card, "BF2200")
    tags = [c.tag for c in r]
    assert tags == [0x81, 0x82, 0x83, 0x84, 0x85, 0x87, 0x88, 0xA9, 0xAA, 0x04, 0x0C, 0x90, 0xB4]
    assert r.need(0x90).as_int() == 0  # ipaMode ipad
    iot = r.need(0xB4)
    assert [c.value for c in iot.need(0xA0)] == [H("010200")]  # iotVersion 1.2.0
    assert iot.need(0x81).value == b"" and iot.need(0x82).value == b""  # ecall, fallback
    assert r.need(0x04).value == H("010000") and r.need(0x0C).as_str()
    bits = r.need(0x85).as_bits(None)
    assert 1 in bits  # usimSupport


def test_get_certs_and_ci_key_id(card):
    r = call(card, "BF5600")
    certs = r.need(0xA0)
    assert [c.tag for c in certs] == [0xA5, 0xA6]
    ci = pki.ski(card.pki["ci_cert"])
    r = call(card, "BF5616" + "8014" + ci.hex())
    assert r.need(0xA0) is not None
    assert call(card, "BF56168014" + "00" * 20).raw.hex().upper() == "BF5603810101"


def test_get_euicc_challenge_is_fresh(card):
    a = call(card, "BF2E00").need(0x80).value
    b = call(card, "BF2E00").need(0x80).value
    assert len(a) == 16 and len(b) == 16 and a != b


def test_get_rat(card):
    rat = call(card, "BF4300").need(0xA0)
    rule = rat.children()[0]
    assert [c.tag for c in rule] == [0x80, 0xA1, 0x82]
    assert rule.need(0x80).as_bits(("pprUpdateControl", "ppr1", "ppr2")) == ["ppr1", "ppr2"]


def test_addresses_and_set_default_dp_address(card):
    assert call(card, "BF3C00").raw.hex().upper() == \
        "BF3C1A8118" + b"testrootsmds.example.com".hex().upper()
    assert call(card, "BF6512" + "8010" + b"smdp.example.org".hex()).raw.hex().upper() == "BF6503800100"
    r = call(card, "BF3C00")
    assert r.need(0x80).as_str() == "smdp.example.org" and [c.tag for c in r] == [0x80, 0x81]
    assert call(card, "BF3F058003616263").raw.hex().upper() == "BF3F03800100"  # SGP.22 tag
    assert call(card, "BF3C00").need(0x80).as_str() == "abc"


def test_get_connectivity_parameters(card):
    assert call(card, "BF5F00").raw.hex().upper() == "BF5F03810101"  # parametersNotAvailable
    card.set_connectivity_parameters(H("3501010203"))
    assert call(card, "BF5F00").raw.hex().upper() == "BF5F09A00781053501010203"


def test_cancel_session_without_a_session(card):
    assert call(card, "BF4106800101810101").raw.hex().upper() == "BF4103810105"
    assert es10(card, H("BF4103800101"), expect_sw=0x6A80) == b""


# ---- ES10: profiles -----------------------------------------------------------------------


def test_get_profiles_info_all_and_searched(card):
    r = call(card, "BF2D00")
    infos = r.need(0xA0).children()
    assert [tlv.bcd_swap(i.need(0x5A).value) for i in infos] == [p["iccid"] for p in DEFAULT_PROFILES]
    first = infos[0]
    assert first.need(0x9F70).as_int() == 1 and first.need(0x95).as_int() == 2
    assert first.need(0x92).as_str() == "Operational 1"
    assert first.need(0x4F).value.hex().upper().startswith("A0000005591010FFFFFFFF89")
    assert infos[2].need(0x9F26).as_bool() and infos[0].find(0x9F26) is None  # DEFAULT FALSE
    assert infos[3].need(0x9F7B).as_bool()  # ecallIndication
    # by ICCID (searchCriteria [0] explicit: A0 { 5A }), with a tag list
    r = call(card, "BF2D" + "14" + "A00C" + iccid_tlv(ICCID_2).hex() + "5C045A9F7092")
    (only,) = r.need(0xA0).children()
    assert [c.tag for c in only] == [0x5A, 0x9F70, 0x92]
    assert only.need(0x9F70).as_int() == 0
    # by class: no test profiles
    assert call(card, "BF2D05A003950100").raw.hex().upper() == "BF2D02A000"
    assert call(card, "BF2D0EA00C" + iccid_tlv("8900000000000000000").hex()).raw.hex().upper() == \
        "BF2D02A000"
    # a bad criterion: incorrectInputValues
    assert call(card, "BF2D05A003800101").raw.hex().upper() == "BF2D03810101"


def test_load_profiles_validates(card, tmp_path):
    with pytest.raises(StateError, match="only one profile can be enabled"):
        card.load_profiles([{"iccid": ICCID_1, "state": "enabled"},
                            {"iccid": ICCID_2, "state": "enabled"}])
    assert len(card.state.profiles) == 4  # unchanged
    with pytest.raises(StateError, match="class"):
        card.load_profiles([{"iccid": ICCID_1, "class": "nonsense"}])
    with pytest.raises(StateError, match="iccid"):
        card.load_profiles([{"iccid": "89AB"}])
    with pytest.raises(StateError, match="twice"):
        card.load_profiles([{"iccid": ICCID_1}, {"iccid": ICCID_1}])
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps([{"iccid": "89490000000000000017", "name": "T", "class": "test",
                                 "state": "enabled"}]))
    assert card.load_profiles(str(path)) == ["89490000000000000017"]
    info = call(card, "BF2D00").need(0xA0).children()[0]
    assert info.need(0x5A).value == H("98940000000000000071") and info.need(0x95).as_int() == 0


# ---- ES10: eIM configuration ------------------------------------------------------------------


def test_get_eim_configuration_data(card):
    r = call(card, "BF5500")
    (cfg,) = r.need(0xA0).children()
    assert cfg.tag == 0x30
    assert [c.tag for c in cfg] == [0x80, 0x81, 0x82, 0x84, 0xA5, 0x87, 0x88, 0x89]
    assert cfg.need(0x80).as_str() == EIM_ID and cfg.need(0x81).as_str() == EIM_FQDN
    assert cfg.need(0x82).as_int() == 3  # eimIdTypeProprietary by default
    assert cfg.need(0x84).as_int() == 1  # the generated associationToken
    assert cfg.find(0x83) is None  # counterValue is never returned
    alt = cfg.need(0xA5).children()[0]
    assert alt.tag == 0xA1  # eimCertificate
    assert tlv.encode(0x30, alt.value) == pki.certificate_der(pki.load_certificate(
        os.path.join(card.pki["folder"], "eim.crt")))
    assert cfg.need(0x88).value == pki.ski(card.pki["ci_cert"])
    # search by eimId: searchCriteria [0] explicit CHOICE -> A0 { 80 }
    q = tlv.encode(0xBF55, tlv.encode(0xA0, tlv.encode(0x80, EIM_ID.encode())))
    assert tlv.decode(es10(card, q)).need(0xA0).children()[0].need(0x80).as_str() == EIM_ID
    assert call(card, "BF5505A003800178").raw.hex().upper() == "BF5502A000"


def _add_initial(card, *entries):
    req = tlv.encode(0xBF57, tlv.encode(0xA0, b"".join(entries)))
    return tlv.decode(es10(card, req))


def test_add_initial_eim(tmp_path):
    card = make_euicc(tmp_path, eim=False)
    cert = pki.load_certificate(os.path.join(card.pki["folder"], "eim.crt"))
    ci = pki.ski(card.pki["ci_cert"])
    code = lambda r: r.need(0x81).as_int()  # noqa: E731
    assert code(_add_initial(card)) == 7  # empty list
    assert code(_add_initial(card, eim_config("a", cert, counter=None))) == 7  # no counter
    assert code(_add_initial(card, eim_config("a", None))) == 7  # no key
    assert code(_add_initial(card, eim_config("a", cert, token=7))) == 5
    assert code(_add_initial(card, eim_config("a", cert, counter=0x800000))) == 6
    assert code(_add_initial(card, eim_config("a", cert, ci_pkid=b"\x01" * 20))) == 3
    assert code(_add_initial(card, eim_config("a", cert), eim_config("a", cert))) == 7
    assert code(_add_initial(card, *[eim_config("e%d" % i, cert) for i in range(9)])) == 1
    assert card.state.eims == []  # nothing of a failed request stays
    r = _add_initial(card, eim_config("first", cert, token=-1, ci_pkid=ci),
                     eim_config("second", cert, fqdn="eim2.example.com"))
    assert r.raw.hex().upper() == "BF5707A0058401010500"  # associationToken 1, addOk
    assert code(_add_initial(card, eim_config("third", cert))) == 2  # associatedEimAlreadyExists
    ids = [c.need(0x80).as_str() for c in call(card, "BF5500").need(0xA0)]
    assert ids == ["first", "second"]
    # the new eIM's packages verify with its token in the signed bytes
    req = build_package(card, 1, psmos=[psmo_enable(ICCID_2)], eim_id="first")
    epr = decode_epr(es10(card, req))
    assert epr["kind"] == "result" and epr["results"] == [(0x83, b"\x00")]
    assert epr_signature_ok(card, epr)


def test_configure_immediate_profile_enabling_and_immediate_enable(tmp_path):
    card = make_euicc(tmp_path)
    assert call(card, "BF5900").raw.hex().upper() == "BF5903800102"  # an eIM is associated
    card = make_euicc(tmp_path / "b", eim=False)
    assert call(card, "BF5A038001FF").raw.hex().upper() == "BF5A03800101"  # not configured
    req = "BF5911" + "8000" + "8104" + "2B060104" + "8207" + b"dp.test".hex()
    assert call(card, req).raw.hex().upper() == "BF5903800100"
    assert card.state.data["immediate_enable"] == {"flag": True, "oid": "1.3.6.1.4",
                                                   "address": "dp.test"}
    assert call(card, "BF5A03800100").raw.hex().upper() == "BF5A03800104"  # noSessionContext
    card.mark_installed(ICCID_2)
    assert call(card, "BF5A03800100").raw.hex().upper() == "BF5A03800100"
    assert states(card)[ICCID_2] == "enabled" and states(card)[ICCID_1] == "disabled"
    assert [(e, i) for _, e, i in pending_notifications(card)] == [("disable", ICCID_1),
                                                                   ("enable", ICCID_2)]
    assert call(card, "BF5A03800100").raw.hex().upper() == "BF5A03800104"  # used up


# ---- ES10: notifications ------------------------------------------------------------------------


def test_notifications_are_signed_listed_filtered_and_removed(card):
    epr = decode_epr(es10(card, build_package(card, 1, psmos=[psmo_enable(ICCID_2)])))
    notes = pending_notifications(card)
    assert [(e, i) for _, e, i in notes] == [("disable", ICCID_1), ("enable", ICCID_2)]
    assert [s for s, _, _ in notes] == [1, 2] and epr["seq"] == 3
    # OtherSignedNotification: BF2F, 5F37 over BF2F, eUICC and EUM certificates
    first = call(card, "BF2B00").need(0xA0).children()[0]
    meta, sig, euicc_cert, eum_cert = first.children()
    assert (meta.tag, sig.tag, euicc_cert.raw, eum_cert.raw) == \
        (0xBF2F, 0x5F37, card.euicc_cert_der, card.eum_cert_der)
    assert len(sig.value) == 64 and pki.verify(card.pki["euicc_cert"], meta.raw, sig.value)
    assert meta.children()[2].tag == 0x0C and meta.children()[2].as_str() == "smdp.example.com"
    # ListNotification: metadata only, filter on the operation (81 bits)
    lst = call(card, "BF2800").need(0xA0).children()
    assert [m.tag for m in lst] == [0xBF2F, 0xBF2F]
    assert [m.need(0x80).as_int() for m in call(card, "BF280481020520").need(0xA0)] == [1]
    # RetrieveNotificationsList search criteria: A0 { 80 seq | 81 event | 82 NULL }
    by_seq = call(card, "BF2B05A003800102").need(0xA0).children()
    assert [n.path(0xBF2F, 0x80).as_int() for n in by_seq] == [2]
    by_op = call(card, "BF2B06A00481020640").need(0xA0).children()
    assert [n.path(0xBF2F, 0x80).as_int() for n in by_op] == [2]
    results = call(card, "BF2B04A0028200").need(0xA2).children()
    assert [r.raw for r in results] == [epr["raw"]]
    assert call(card, "BF2B05A003800103").need(0xA2).children()[0].raw == epr["raw"]
    assert call(card, "BF2B05A003800163").raw.hex().upper() == "BF2B02A000"
    # the bare criterion some encoders send is understood too
    assert call(card, "BF2B028200").need(0xA2).children()[0].raw == epr["raw"]
    # RemoveNotificationFromList: ok, then nothingToDelete
    assert call(card, "BF3003800101").raw.hex().upper() == "BF3003800100"
    assert call(card, "BF3003800101").raw.hex().upper() == "BF3003800101"
    assert call(card, "BF3003800103").raw.hex().upper() == "BF3003800100"
    assert call(card, "BF2B04A0028200").raw.hex().upper() == "BF2B02A200"
    assert [s for s, _, _ in pending_notifications(card)] == [2]


# ---- LoadEuiccPackage ------------------------------------------------------------------------------


def test_load_euicc_package_enable_yields_a_signed_stored_result(card):
    req = build_package(card, 5, psmos=[psmo_enable(ICCID_2)], txid=b"\xAA\xBB")
    raw = es10(card, req)
    assert raw[:2] == H("BF51") and tlv.decode(raw).children()[0].tag == 0xA0
    epr = decode_epr(raw)
    assert (epr["kind"], epr["eim_id"], epr["counter"], epr["txid"]) == \
        ("result", EIM_ID, 5, b"\xAA\xBB")
    assert epr["results"] == [(0x83, b"\x00")]
    assert len(epr["signature"]) == 64 and epr_signature_ok(card, epr)
    # the signature covers data + 84 01 01 (token 1), not the data alone
    assert not pki.verify(card.pki["euicc_cert"], epr["signed"], epr["signature"])
    assert pki.verify(card.pki["euicc_cert"], epr["signed"] + H("840101"), epr["signature"])
    assert states(card)[ICCID_2] == "enabled" and states(card)[ICCID_1] == "disabled"
    assert card.state.find_eim(EIM_ID)["counter"] == 5
    assert [bytes.fromhex(n["der"]) for n in card.state.pending("result")] == [raw]


def test_load_euicc_package_unsigned_errors(card):
    req = bytearray(build_package(card, 1, psmos=[psmo_enable(ICCID_2)]))
    req[-1] ^= 0x01  # break the signature
    epr = decode_epr(es10(card, bytes(req)))
    assert epr == {"raw": epr["raw"], "kind": "unsigned", "eim_id": EIM_ID, "txid": b"\x01\x02",
                   "token": 1}
    assert epr["raw"].hex().upper() == "BF5113A211" + "8008" + EIM_ID.encode().hex().upper() + \
        "82020102" + "840101"
    # signed with the right key but without the token: also not authentic
    epr = decode_epr(es10(card, build_package(card, 1, psmos=[psmo_enable(ICCID_2)], token=None)))
    assert epr["kind"] == "unsigned"
    # unknown eIM: no token to tell
    epr = decode_epr(es10(card, build_package(card, 1, psmos=[psmo_enable(ICCID_2)],
                                              eim_id="other-eim", token=None)))
    assert (epr["kind"], epr["eim_id"], epr["token"]) == ("unsigned", "other-eim", None)
    # signed by another key
    other = pki.load_private_key(os.path.join(card.pki["folder"], "euicc.key"))
    epr = decode_epr(es10(card, build_package(card, 1, psmos=[psmo_enable(ICCID_2)], key=other)))
    assert epr["kind"] == "unsigned"
    assert states(card)[ICCID_1] == "enabled" and card.state.find_eim(EIM_ID)["counter"] == 0
    assert card.state.pending() == []


def test_load_euicc_package_signed_errors(card):
    def err(req):
        epr = decode_epr(es10(card, req))
        assert epr["kind"] == "error" and epr_signature_ok(card, epr)
        return epr["code"], epr["counter"]

    wrong_eid = "89049032123451234512345678909999"
    assert err(build_package(card, 1, psmos=[psmo_enable(ICCID_2)], eid=wrong_eid)) == (3, 1)
    assert err(build_package(card, 0x800000, psmos=[psmo_enable(ICCID_2)])) == (6, 0x800000)
    assert err(build_package(card, -5, psmos=[psmo_enable(ICCID_2)])) == (6, -5)
    assert decode_epr(es10(card, build_package(card, 3, psmos=[psmo_enable(ICCID_2)])))["kind"] == \
        "result"
    assert err(build_package(card, 3, psmos=[psmo_disable(ICCID_2)])) == (4, 3)  # replayError
    assert err(build_package(card, 2, psmos=[psmo_disable(ICCID_2)])) == (4, 2)
    big = build_package(card, 4, psmos=[tlv.encode(0xA6, b"")] * 4200)
    assert err(big) == (15, 4)  # sizeOverflow
    assert states(card)[ICCID_2] == "enabled" and card.state.find_eim(EIM_ID)["counter"] == 3
    # the signed error is not kept as a pending result
    assert len(card.state.pending("result")) == 1


def test_psmo_results_and_stop_at_first_failure(card):
    def run(counter, *psmos):
        epr = decode_epr(es10(card, build_package(card, counter, psmos=list(psmos))))
        assert epr["kind"] == "result" and epr_signature_ok(card, epr)
        return epr["results"]

    unknown = "8949449999999999999"
    assert run(1, psmo_enable(unknown), psmo_disable(ICCID_1)) == [(0x83, b"\x01")]
    assert run(2, psmo_enable(ICCID_1)) == [(0x83, b"\x02")]  # already enabled
    assert run(3, psmo_disable(ICCID_2)) == [(0x84, b"\x02")]  # not enabled
    assert run(4, psmo_delete(ICCID_1)) == [(0x85, b"\x02")]  # enabled
    assert run(5, psmo_delete(unknown)) == [(0x85, b"\x01")]
    assert run(6, psmo_enable(ICCID_EMERGENCY)) == [(0x83, b"\x03")]  # only via EnableEmergency
    assert run(7, psmo_disable(ICCID_1), psmo_delete(ICCID_2)) == [(0x84, b"\x00"), (0x85, b"\x00")]
    assert ICCID_2 not in states(card) and states(card)[ICCID_1] == "disabled"
    assert run(8, psmo_enable(ICCID_1), psmo_enable(ICCID_FALLBACK)) == [(0x83, b"\x00"),
                                                                         (0x83, b"\x7f")]
    assert run(9, H("A000")) == [(0x02, b"\x02")]  # unknown PSMO: processingTerminated
    assert run(10, H("A30100")) == [(0x02, b"\x02")]  # damaged enable


def test_psmo_list_profile_info_get_rat_and_settings(card):
    epr = decode_epr(es10(card, build_package(card, 1, psmos=[
        psmo_list_profile_info(), psmo_list_profile_info(H("5A9F70")), tlv.encode(0xA6, b""),
        H("A70C8000820864702E6578616D70"), tlv.encode(0xBF65, tlv.encode(0x80, b"dp.example")),
    ])))
    (t1, v1), (t2, v2), (t3, v3), (t4, v4), (t5, v5) = epr["results"]
    assert t1 == 0xBF2D
    infos = tlv.decode(v1).need(0xA0).children()
    assert len(infos) == 4
    assert [c.tag for c in infos[2]] == [0x5A, 0x4F, 0x9F70, 0x91, 0x92, 0x95, 0x9F26, 0x9F67]
    assert [c.tag for c in tlv.decode(v2).need(0xA0).children()[0]] == [0x5A, 0x9F70]
    assert t3 == 0xA6 and tlv.decode(v3).children()[0].tag == 0x30
    assert (t4, v4) == (0x87, b"\x00")
    assert card.state.data["immediate_enable"] == {"flag": True, "oid": None, "address": "dp.examp"}
    assert (t5, tlv.decode(v5).need(0x80).as_int()) == (0xBF65, 0)
    assert card.state.data["default_dp_address"] == "dp.example"


def test_psmo_fallback_attribute(card):
    def run(counter, psmo):
        return decode_epr(es10(card, build_package(card, counter, psmos=[psmo])))["results"][0]

    assert run(1, tlv.encode(0xA8, iccid_tlv("8949449999999999999"))) == (0x8D, b"\x01")
    assert run(2, tlv.encode(0xA8, iccid_tlv(ICCID_2))) == (0x8D, b"\x00")
    assert card.state.fallback_profile()["iccid"] == ICCID_2
    card.state.find_profile(ICCID_FALLBACK)["fallback_allowed"] = False
    assert run(3, tlv.encode(0xA8, iccid_tlv(ICCID_FALLBACK))) == (0x8D, b"\x02")
    assert run(4, tlv.encode(0xA9, b"")) == (0x8E, b"\x00")
    assert card.state.fallback_profile() is None
    assert run(5, tlv.encode(0xA9, b"")) == (0x8E, b"\x02")  # noFallbackAttribute
    assert run(6, tlv.encode(0xA8, iccid_tlv(ICCID_1))) == (0x8D, b"\x00")
    assert run(7, tlv.encode(0xA9, b"")) == (0x8E, b"\x03")  # the enabled profile has it


def test_ecos_add_list_update_delete_eim(card):
    cert = pki.load_certificate(os.path.join(card.pki["folder"], "eim.crt"))

    def run(counter, *ecos, eim_id=EIM_ID):
        token = card.state.find_eim(eim_id)["token"]  # the eIM may delete itself
        epr = decode_epr(es10(card, build_package(card, counter, ecos=list(ecos), eim_id=eim_id)))
        assert epr["kind"] == "result" and epr_signature_ok(card, epr, token=token)
        return epr["results"]

    # addEim [8] EimConfigurationData -> addEimResult [8] CHOICE { 84 token | 02 code }
    assert run(1, eco_add_eim(eim_config("eim-2", cert, token=-1, counter=10))) == \
        [(0xA8, H("A803840102"))]
    assert run(2, eco_add_eim(eim_config("eim-3", cert))) == [(0xA8, H("A803020100"))]
    assert run(3, eco_add_eim(eim_config("eim-3", cert))) == [(0xA8, H("A803020102"))]  # exists
    assert run(4, eco_add_eim(eim_config("eim-4", cert, token=3))) == [(0xA8, H("A803020105"))]
    assert run(5, eco_add_eim(eim_config("eim-4", None))) == [(0xA8, H("A803020107"))]  # no key
    lst = run(6, eco_list_eim())
    assert lst[0][0] == 0xAB
    ids = [e.need(0x80).as_str() for e in tlv.decode(lst[0][1]).need(0xA0)]
    assert ids == [EIM_ID, "eim-2", "eim-3"]
    upd = tlv.encode(0xAA, tlv.encode(0x80, b"eim-3") + tlv.encode(0x81, b"new.example.com"))
    assert run(7, upd) == [(0x8A, b"\x00")]
    assert card.state.find_eim("eim-3")["fqdn"] == "new.example.com"
    assert run(8, tlv.encode(0xAA, tlv.encode(0x80, b"nope") + tlv.encode(0x81, b"x"))) == \
        [(0x8A, b"\x01")]
    assert run(9, tlv.encode(0xAA, tlv.encode(0x80, b"eim-3"))) == [(0x8A, b"\x07")]  # nothing
    assert run(10, tlv.encode(0xAA, tlv.encode(0x80, b"eim-3") + tlv.encode(0x84, b"\x05"))) == \
        [(0x8A, b"\x07")]  # the token cannot be changed
    assert run(11, eco_delete_eim("eim-3"), eco_delete_eim("nope")) == [(0x89, b"\x00"),
                                                                      (0x89, b"\x01")]
    assert card.state.find_eim("eim-3") is None
    # eim-2 (token 2, counter 10) signs its own packages
    assert run(11, eco_delete_eim(EIM_ID), eim_id="eim-2") == [(0x89, b"\x00")]
    assert run(12, eco_delete_eim("eim-2"), eim_id="eim-2") == [(0x89, b"\x02")]  # lastEimDeleted
    assert card.state.eims == []
    assert call(card, "BF5500").raw.hex().upper() == "BF5502A000"


def test_version_1_0_signs_without_the_token_and_resets_with_bf34(tmp_path):
    card = make_euicc(tmp_path, version="1.0")
    epr = decode_epr(es10(card, build_package(card, 1, psmos=[psmo_enable(ICCID_2)])))
    assert epr["kind"] == "result"
    assert pki.verify(card.pki["euicc_cert"], epr["signed"], epr["signature"])
    epr = decode_epr(es10(card, build_package(card, 2, psmos=[psmo_enable(ICCID_1)], version="1.2")))
    assert epr["kind"] == "unsigned"
    assert call(card, "BF2200").path(0xB4, 0xA0, 0x04).value == H("010000")
    call(card, "BF6505800364702E")
    # v1.0 SGP32-EuiccMemoryResetResponse: resetResult untagged beside tagged siblings -> 02
    assert call(card, "BF340482020520").raw.hex().upper() == "BF3403020100"  # resetDefaultSmdpAddress
    assert call(card, "BF340482020520").raw.hex().upper() == "BF3403020101"  # nothingToDelete
    # v1.0 bit 3 is resetEimConfigData: resetEimResult [1] 81 ok
    assert call(card, "BF340482020410").raw.hex().upper() == "BF3406020100810100"
    assert es10(card, H("BF640482020780"), expect_sw=0x6A88) == b""


# ---- rollback, fallback, emergency ------------------------------------------------------------------


def test_profile_rollback_after_enable_with_rollback_flag(card):
    assert call(card, "BF5803800100").raw.hex().upper() == "BF5803020101"  # nothing to roll back
    first = decode_epr(es10(card, build_package(card, 1, psmos=[psmo_enable(ICCID_2, rollback=True)],
                                                txid=b"\x77")))
    assert first["results"] == [(0x83, b"\x00")] and states(card)[ICCID_2] == "enabled"
    r = call(card, "BF5803800100")
    cmd, result = r.children()
    assert (cmd.tag, cmd.as_int(), result.tag) == (0x02, 0, 0xBF51)
    epr = decode_epr(result.raw)
    assert (epr["kind"], epr["counter"], epr["txid"], epr["results"]) == \
        ("result", 1, b"\x77", [(0x8C, b"\x00")])
    assert epr["seq"] > first["seq"] and epr_signature_ok(card, epr)
    assert states(card)[ICCID_1] == "enabled" and states(card)[ICCID_2] == "disabled"
    # the first result is replaced by the rollback's
    pending = [decode_epr(bytes.fromhex(n["der"]))["seq"] for n in card.state.pending("result")]
    assert pending == [epr["seq"]]
    assert call(card, "BF5803800100").raw.hex().upper() == "BF5803020101"  # once only
    # a later package ends the authorisation
    es10(card, build_package(card, 2, psmos=[psmo_enable(ICCID_2, rollback=True)]))
    es10(card, build_package(card, 3, psmos=[psmo_list_profile_info()]))
    assert call(card, "BF5803800100").raw.hex().upper() == "BF5803020101"


def test_rollback_flag_needs_a_profile_to_return_to(tmp_path):
    card = make_euicc(tmp_path, profiles=[{"iccid": ICCID_1}, {"iccid": ICCID_2}])
    epr = decode_epr(es10(card, build_package(card, 1, psmos=[psmo_enable(ICCID_2, rollback=True)])))
    assert epr["results"] == [(0x83, bytes((20,)))]  # rollbackNotAvailable
    # disabled earlier in the same package counts as the profile to return to
    card = make_euicc(tmp_path / "b")
    epr = decode_epr(es10(card, build_package(card, 1, psmos=[
        psmo_disable(ICCID_1), psmo_enable(ICCID_2, rollback=True)])))
    assert epr["results"] == [(0x84, b"\x00"), (0x83, b"\x00")]
    assert tlv.decode(es10(card, H("BF5803800100"))).children()[0].as_int() == 0
    assert states(card)[ICCID_1] == "enabled"
    # and an enable after an enable, or a disable after one, is refused
    epr = decode_epr(es10(card, build_package(card, 2, psmos=[
        psmo_enable(ICCID_2), psmo_disable(ICCID_2)])))
    assert epr["results"] == [(0x83, b"\x00"), (0x84, b"\x7f")]
    epr = decode_epr(es10(card, build_package(card, 3, psmos=[psmo_enable(ICCID_1)])))
    assert epr["results"] == [(0x83, b"\x00")]
    epr = decode_epr(es10(card, build_package(card, 4, psmos=[
        psmo_enable(ICCID_2, rollback=True), psmo_delete(ICCID_1)])))
    assert epr["results"] == [(0x83, b"\x00"), (0x85, bytes((20,)))]  # it is the way back


def test_fallback_mechanism(card):
    assert call(card, "BF5E03800100").raw.hex().upper() == "BF5E03800106"  # not in fallback
    assert call(card, "BF5D038001FF").raw.hex().upper() == "BF5D03800100"
    assert states(card)[ICCID_FALLBACK] == "enabled" and states(card)[ICCID_1] == "disabled"
    assert call(card, "BF5D03800100").raw.hex().upper() == "BF5D03800102"  # already enabled
    # the way back cannot be deleted meanwhile
    epr = decode_epr(es10(card, build_package(card, 1, psmos=[psmo_delete(ICCID_1)])))
    assert epr["results"] == [(0x85, bytes((21,)))]
    assert call(card, "BF5E03800100").raw.hex().upper() == "BF5E03800100"
    assert states(card)[ICCID_1] == "enabled" and states(card)[ICCID_FALLBACK] == "disabled"
    events = [(e, i) for _, e, i in pending_notifications(card)]
    assert events == [("disable", ICCID_1), ("enable", ICCID_FALLBACK),
                      ("disable", ICCID_FALLBACK), ("enable", ICCID_1)]
    assert call(card, "BF5E03800100").raw.hex().upper() == "BF5E03800106"


def test_fallback_not_available_and_no_enabled_profile(tmp_path):
    card = make_euicc(tmp_path, profiles=[{"iccid": ICCID_1, "state": "enabled"}])
    assert call(card, "BF5D03800100").raw.hex().upper() == "BF5D03800106"
    card = make_euicc(tmp_path / "b", profiles=[{"iccid": ICCID_1, "fallback": True}])
    assert call(card, "BF5D03800100").raw.hex().upper() == "BF5D03800107"


def test_emergency_profile_blocks_other_operations(card):
    assert call(card, "BF5C03800100").raw.hex().upper() == "BF5C03800102"  # not enabled
    assert call(card, "BF5B03800100").raw.hex().upper() == "BF5B03800100"
    assert states(card)[ICCID_EMERGENCY] == "enabled"
    assert call(card, "BF5B03800100").raw.hex().upper() == "BF5B03800102"
    epr = decode_epr(es10(card, build_package(card, 1, psmos=[psmo_enable(ICCID_2)])))
    assert (epr["kind"], epr["code"]) == ("error", 104) and epr_signature_ok(card, epr)
    assert card.state.find_eim(EIM_ID)["counter"] == 0  # a refused package does not count
    assert call(card, "BF5D03800100").raw.hex().upper() == "BF5D03800168"  # ecallActive
    assert call(card, "BF640482020780").raw.hex().upper() == "BF6403800168"
    assert call(card, "BF5C03800100").raw.hex().upper() == "BF5C03800100"
    assert states(card)[ICCID_1] == "enabled" and states(card)[ICCID_EMERGENCY] == "disabled"
    epr = decode_epr(es10(card, build_package(card, 1, psmos=[psmo_enable(ICCID_2)])))
    assert epr["kind"] == "result"


def test_enable_emergency_without_an_emergency_profile(tmp_path):
    card = make_euicc(tmp_path, profiles=[{"iccid": ICCID_1, "state": "enabled"}])
    assert call(card, "BF5B03800100").raw.hex().upper() == "BF5B03800108"  # ecallNotAvailable


# ---- memory reset ---------------------------------------------------------------------------------


def test_euicc_memory_reset_options(tmp_path):
    profiles = DEFAULT_PROFILES + [
        {"iccid": "8949449999999990005", "class": "test"},
        {"iccid": "8949449999999990006", "class": "test", "preloaded": False},
        {"iccid": "8949449999999990007", "class": "provisioning"},
    ]
    card = make_euicc(tmp_path, profiles=profiles)
    call(card, "BF6505800364702E")  # a default SM-DP+ address "dp."
    # deleteFieldLoadedTestProfiles only (bit 1): 82 02 06 40
    assert call(card, "BF640482020640").raw.hex().upper() == "BF6403800100"
    assert "8949449999999990006" not in states(card) and "8949449999999990005" in states(card)
    # the same again: nothingToDelete
    assert call(card, "BF640482020640").raw.hex().upper() == "BF6403800101"
    # operational + default SM-DP+ address + eIM config + IEC: 82 02 01 A6 (bits 0, 2, 5, 6)
    r = call(card, "BF6404820201A6")
    assert r.raw.hex().upper() == "BF6409800100810100820100"
    assert sorted(states(card)) == ["8949449999999990005", "8949449999999990007"]
    assert card.state.eims == [] and card.state.data["default_dp_address"] is None
    assert card.state.enabled_profile() is None
    # resetEimConfigData with no eIM left: resetEimResult nothingToDelete
    assert call(card, "BF640482020204").raw.hex().upper() == "BF6406800101810101"
    # preloaded test profiles and provisioning profiles (bits 3, 4): 82 02 03 18
    assert call(card, "BF640482020318").raw.hex().upper() == "BF6403800100"
    assert states(card) == {}
    assert pending_notifications(card) == []  # a reset leaves no notifications


# ---- persistence -------------------------------------------------------------------------------


def test_kill_and_restart_between_apdus_loses_nothing(tmp_path):
    card = make_euicc(tmp_path)
    path = card.state_path
    ch = open_isdr(card)
    req = build_package(card, 1, psmos=[psmo_enable(ICCID_2, rollback=True)])
    # the first blocks of a request, then the process dies
    assert sw(card.transmit(bytes((0x80 | ch, 0xE2, 0x11, 0, 16)) + req[:16])) == "9000"
    card = reopen(card)
    assert sw(card.transmit(bytes((0x80 | ch, 0xE2, 0x91, 1, len(req) - 16)) + req[16:])) == "6881"
    epr = decode_epr(es10(card, req))  # sent again in full after the restart
    assert epr["kind"] == "result"
    with open(path) as f:
        on_disk = json.load(f)
    assert on_disk["eims"][0]["counter"] == 1
    card = reopen(card)
    assert states(card)[ICCID_2] == "enabled"
    assert decode_epr(es10(card, req))["code"] == 4  # the replay is still refused
    assert call(card, "BF2B04A0028200").need(0xA2).children()[0].raw == epr["raw"]
    card = reopen(card)
    r = call(card, "BF5803800100")  # the rollback authorisation survived
    assert r.children()[0].as_int() == 0
    card = reopen(card)
    seqs = [s for s, _, _ in pending_notifications(card)]
    assert seqs == [1, 2, 4, 5]
    assert call(card, "BF3003800104").raw.hex().upper() == "BF3003800100"
    card = reopen(card)
    assert [s for s, _, _ in pending_notifications(card)] == [1, 2, 5]
    assert decode_epr(es10(card, build_package(card, 2, psmos=[psmo_enable(ICCID_2)])))["seq"] == 9
    assert not [n for n in os.listdir(str(tmp_path)) if n.endswith(".tmp")]


def test_every_apdu_leaves_a_loadable_state_file(tmp_path):
    card = make_euicc(tmp_path)
    req = build_package(card, 1, psmos=[psmo_enable(ICCID_2)])
    ch = open_isdr(card)
    blocks = [req[i:i + 40] for i in range(0, len(req), 40)]
    for n, b in enumerate(blocks):
        last = n == len(blocks) - 1
        r = card.transmit(bytes((0x80 | ch, 0xE2, 0x91 if last else 0x11, n, len(b))) + b)
        again = reopen(card)  # a second process reading the same file at any point
        assert again.state.find_eim(EIM_ID)["counter"] == (1 if last else 0)
    assert follow(card, ch, r)[1] == 0x9000


def test_a_failed_save_is_not_committed(tmp_path, monkeypatch):
    card = make_euicc(tmp_path)
    before = open(card.state_path).read()

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    ch = open_isdr(card)
    data, status = store_data(card, ch, build_package(card, 1, psmos=[psmo_enable(ICCID_2)]))
    assert status == 0x6581 and data == b""
    monkeypatch.undo()
    assert open(card.state_path).read() == before
    assert states(card)[ICCID_1] == "enabled" and card.state.find_eim(EIM_ID)["counter"] == 0
    assert "not saved" in card.last_error


def test_state_file_of_another_eid_is_refused(tmp_path):
    card = make_euicc(tmp_path)
    with pytest.raises(StateError, match="belongs to EID"):
        VirtualEuicc(card.pki["folder"], state_path=card.state_path,
                     eid="89049032123451234512345678900000")
    with open(card.state_path, "w") as f:
        f.write("{not json")
    with pytest.raises(StateError, match="not a virtual eUICC state file"):
        reopen(card)


def test_missing_or_mismatched_pki_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="euicc.crt.*ipa-sim pki create"):
        VirtualEuicc(str(tmp_path))
    a = pki.create_test_pki(str(tmp_path / "a"))
    b = pki.create_test_pki(str(tmp_path / "b"))
    os.replace(b["euicc.key"], a["euicc.key"])
    with pytest.raises(ValueError, match="euicc.key does not belong to euicc.crt"):
        VirtualEuicc(str(tmp_path / "a"))


def test_loads_a_chain_from_pem_files_of_another_pki(tmp_path):
    """A bench folder with its own chain (e.g. SGP.26 files renamed): EID and certs from it."""
    folder = str(tmp_path / "bench")
    eid = "89049032123451234512345678901111"
    pki.create_test_pki(folder, eid=eid)
    os.remove(os.path.join(folder, "ci.key"))
    os.remove(os.path.join(folder, "eim.key"))
    card = VirtualEuicc(folder)
    assert card.eid == eid
    assert es10(card, H("BF3E035C015A")).hex().upper() == "BF3E125A10" + eid
    certs = tlv.decode(es10(card, H("BF5600"))).need(0xA0)
    with open(os.path.join(folder, "euicc.crt"), "rb") as f:
        pem = f.read()
    assert tlv.encode(0x30, certs.need(0xA6).value) == pki.certificate_der(
        pki.load_certificate(os.path.join(folder, "euicc.crt")))
    assert b"BEGIN CERTIFICATE" in pem
    os.remove(os.path.join(folder, "ci.crt"))  # CI key id then from the EUM's AKI
    assert VirtualEuicc(folder).ci_pkids == [pki.aki(card.pki["eum_cert"])]


# ---- command line --------------------------------------------------------------------------------


def test_euicc_main_init_show_apdu(tmp_path, capsys):
    pki_dir, state = str(tmp_path / "pki"), str(tmp_path / "s.json")
    profiles = tmp_path / "p.json"
    profiles.write_text(json.dumps(DEFAULT_PROFILES[:2]))
    assert euicc_mod.euicc_main(["init", "--pki", pki_dir, "--state", state, "--create-pki",
                                 "--profiles", str(profiles), "--eim-id", "bench-eim",
                                 "--eim-fqdn", "eim.bench", "--association-token"]) == 0
    out = capsys.readouterr().out
    assert "associationToken 1" in out and "eIM bench-eim fqdn=eim.bench" in out
    assert ICCID_1 in out
    get_eid = ["0070000001", "01A4040C10" + ISDR_AID.hex(), "81E2910006BF3E035C015A"]
    # A new card speaks T=0: the answer to STORE DATA is announced, GET RESPONSE fetches it.
    assert euicc_mod.euicc_main(["apdu", "--pki", pki_dir, "--state", state] + get_eid
                                + ["01C0000015"]) == 0
    assert capsys.readouterr().out.split() == ["019000", "9000", "6115",
                                               "BF3E125A10" + EID + "9000"]
    assert euicc_mod.euicc_main(["show", "--pki", pki_dir, "--state", state]) == 0
    out = capsys.readouterr().out
    assert "pending: none" in out and "T=0, ATR 3B9F96801FC7" in out
    # --protocol T1 is kept in the state file: later runs without it stay T=1.
    assert euicc_mod.euicc_main(["apdu", "--pki", pki_dir, "--state", state, "--protocol", "T1"]
                                + get_eid) == 0
    assert capsys.readouterr().out.split() == ["019000", "9000", "BF3E125A10" + EID + "9000"]
    assert euicc_mod.euicc_main(["show", "--pki", pki_dir, "--state", state]) == 0
    assert "T=1, ATR 3B9F9681B1FE451FC7" in capsys.readouterr().out
    assert json.load(open(state))["protocol"] == "T1"
    assert euicc_mod.euicc_main(["apdu", "--pki", pki_dir, "--state", state, "zz"]) == 2
    assert euicc_mod.euicc_main(["show", "--pki", str(tmp_path / "none"), "--state", state]) == 2


def test_reopened_card_keeps_working_with_a_real_signer_key(card):
    """The fixture's eIM key is the PKI's eim.key; packages signed with it verify after restarts."""
    key = eim_key(card)
    card = reopen(card)
    epr = decode_epr(es10(card, build_package(card, 1, psmos=[psmo_enable(ICCID_2)], key=key)))
    assert epr["kind"] == "result" and epr_signature_ok(card, epr)


def test_euicc_main_hands_vpcd_serving_to_the_bridge(capsys):
    with pytest.raises(SystemExit) as e:
        euicc_mod.euicc_main(["serve", "--help"])
    assert e.value.code == 0
    assert "--vpcd" in capsys.readouterr().out
