"""ipa_core.at_card and ipa_core.modems against a scripted modem (tests/core/fakestream.py).

Every AT line the card writes is compared exactly; answers carry the
quirks of the modem fact sheet (bare CCHO ids, '+CGLA:' without space,
unquoted hex, answers cut at 256 bytes, 61xx left to the host, CSIM-only
modems, CGLA failing mid-session, leaked channels, +CME ERROR instead of
ERROR, silence). The GetEID tests run the real ipa_core.es10 + IsdrSession
over AtCard in both modes.
"""

from ipa_core import es10, modems
from ipa_core.at import AtEngine, AtError, ModemRestarted
from ipa_core.at_card import (BUSY_BACKOFF_MS, FINAL_GRACE_MS, AtCard, open_isdr_session,
                              parse_apdu_answer, parse_ccho, sw_ok, tlv_total)
from ipa_core.compat import hexlify, unhexlify
from ipa_core.errors import CardError, ProtocolError, TimeoutError_, TransportError

from fakestream import FakeClock, FakeModem, Silence

OK = "\r\nOK\r\n"
ISDR = "A0000005591010FFFFFFFF8900000100"
CCHO = 'AT+CCHO="%s"' % ISDR
EID = "89049032123451234512345678901235"
EID_RSP = "BF3E125A10" + EID
TCAP = "80AA000005A903830107"


def raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def ans(prefix, hx, space=True, quote=True):
    q = '"' if quote else ""
    return "\r\n%s%s%d,%s%s%s\r\n" % (prefix, " " if space else "", len(hx), q, hx, q) + OK


def csim(apdu, rsp, **kw):
    return ('AT+CSIM=%d,"%s"' % (len(apdu), apdu), ans("+CSIM:", rsp, **kw))


def cgla(sid, apdu, rsp, **kw):
    return ('AT+CGLA=%s,%d,"%s"' % (sid, len(apdu), apdu), ans("+CGLA:", rsp, **kw))


def stale(answers=("9000", "6881", None)):
    """The three MANAGE CHANNEL close commands of open(); None answers ERROR."""
    out = []
    for ch, a in zip((1, 2, 3), answers):
        cmd = 'AT+CSIM=8,"007080%02X"' % ch
        out.append((cmd, "\r\nERROR\r\n") if a is None else csim("007080%02X" % ch, a))
    return out


BASE = [("ATE0", OK), ("AT+CMEE=1", OK)]


def opening(ccho_reply=None):
    s = BASE + stale()
    if ccho_reply is not None:
        s.append((CCHO, ccho_reply))
    return s


def make(script, mode="auto", profile=None, chunks=None, **kw):
    clock = FakeClock()
    modem = FakeModem(script, clock=clock, chunks=chunks)
    eng = AtEngine(modem, clock_ms=clock)
    card = AtCard(eng, mode=mode, profile=profile, **kw)
    return card, modem, clock


def no_test_commands(modem):
    assert [ln for ln in modem.lines if "=?" in ln] == []


# ---- full ES10 GetEID in both modes ----------------------------------------------------

def test_get_eid_in_cgla_mode_with_a_bare_ccho_answer():
    card, modem, _ = make(opening("\r\n1\r\n" + OK) + [
        cgla("1", "80E2910006BF3E035C015A", EID_RSP + "9000"),
        ("AT+CCHC=1", OK),
    ], chunks=(1, 3, 7))
    s = open_isdr_session(card)
    assert card.mode == "cgla" and card.modem_channel and card.session == "1"
    assert s.modem_channel and s.segment_size == 255
    assert es10.get_eid(s) == EID
    s.close()
    card.close()
    no_test_commands(modem)
    modem.done()


def test_get_eid_in_csim_mode_after_ccho_error_with_61xx_left_to_the_host():
    sel = "6F108410" + ISDR
    card, modem, _ = make(opening("\r\nERROR\r\n") + [
        csim(TCAP, "9000"),
        csim("0070000001", "019000"),
        csim("01A4040410" + ISDR + "00", "6114"),
        csim("01C0000014", sel + "9000"),
        csim("81E2910006BF3E035C015A", EID_RSP + "9000"),
        csim("00708001", "9000"),
    ])
    s = open_isdr_session(card)
    assert card.mode == "csim" and not card.modem_channel and not s.modem_channel
    assert s.channel == 1 and hexlify(s.select_response).decode().upper() == sel
    assert es10.get_eid(s) == EID
    s.close()
    card.close()
    assert any("AT+CCHO failed" in n for n in card.notes)
    no_test_commands(modem)
    modem.done()


def test_sequans_style_answers_unspaced_unquoted():
    sid = "000000000385a7cf"
    card, modem, _ = make(opening("\r\n+CCHO:%s\r\n" % sid + OK) + [
        cgla(sid, "80E2910006BF3E035C015A", EID_RSP.lower() + "9000", space=False, quote=False),
    ])
    s = open_isdr_session(card)
    assert card.session == sid
    assert es10.get_eid(s) == EID
    modem.done()


def test_ccho_answer_forms():
    assert parse_ccho("c", ["+CCHO: 1"]) == "1"
    assert parse_ccho("c", ['+CCHO: "12"']) == "12"
    assert parse_ccho("c", ["3"]) == "3"
    e = raises(ProtocolError, parse_ccho, 'AT+CCHO="A0"', [])
    assert "expected one session id" in str(e) and "no answer line" in str(e)
    raises(ProtocolError, parse_ccho, "c", ["1", "2"])
    raises(ProtocolError, parse_ccho, "c", ["+CCHO: x y"])


# ---- mode selection ----------------------------------------------------------------------

def test_csim_only_profile_never_tries_ccho():
    prof = modems.profile_for("Dell Inc. DW5821e Snapdragon X20 LTE")
    assert prof["csim_only"] and prof["name"] == "Dell DW5821e"
    card, modem, _ = make(opening() + [csim(TCAP, "9000")], profile=prof)
    card.open()
    assert card.mode == "csim" and not card.modem_channel
    assert card.transmit(unhexlify(TCAP)) == b"\x90\x00"
    assert CCHO not in modem.lines
    modem.done()


def test_auto_falls_back_on_cme_error_and_forced_cgla_explains():
    card, modem, _ = make(opening("\r\n+CME ERROR: 4\r\n"))
    card.open()
    assert card.mode == "csim" and isinstance(card.ccho_error, AtError)
    modem.done()
    card, modem, _ = make(opening("\r\n+CME ERROR: 3\r\n"), mode="cgla",
                          profile=modems.profile_for("Quectel RG650E"))
    e = raises(AtError, card.open)
    assert e.cme == 3 and "operation not allowed" in str(e)
    assert 'AT+QESIM="lpa_enable",0' in str(e)  # the built-in LPA may hold the ISD-R
    modem.done()


def test_forced_csim_skips_ccho():
    card, modem, _ = make(opening(), mode="csim")
    card.open()
    assert card.mode == "csim"
    modem.done()


def test_ccho_ok_without_id_falls_back_in_auto():
    card, modem, _ = make(opening(OK))
    card.open()
    assert card.mode == "csim" and isinstance(card.ccho_error, ProtocolError)
    modem.done()


def test_bad_mode_is_refused():
    e = raises(ValueError, AtCard, None, mode="qmi")
    assert "auto, cgla, csim" in str(e)


# ---- answers -------------------------------------------------------------------------

def test_bad_answers_are_protocol_errors_naming_what_came():
    c = 'AT+CSIM=10,"0070000001"'
    e = raises(ProtocolError, parse_apdu_answer, c, ['+CSIM: 5,"01900"'], "+CSIM:")
    assert "odd number (5) of hex digits" in str(e)
    e = raises(ProtocolError, parse_apdu_answer, c, ['+CSIM: 6,"01G000"'], "+CSIM:")
    assert "not hex" in str(e) and "01G000" in str(e)
    e = raises(ProtocolError, parse_apdu_answer, c, ['+CSIM: 8,"019000"'], "+CSIM:")
    assert "announces 8 hex digits but carries 6" in str(e)
    e = raises(ProtocolError, parse_apdu_answer, c, ['+CSIM: x,"9000"'], "+CSIM:")
    assert "not a number" in str(e)
    e = raises(ProtocolError, parse_apdu_answer, c, ['+CSIM: 2,"90"'], "+CSIM:")
    assert "at least SW1 SW2" in str(e)
    e = raises(ProtocolError, parse_apdu_answer, c, [], "+CSIM:")
    assert "expected a '+CSIM: <len>" in str(e) and c in str(e)
    raises(ProtocolError, parse_apdu_answer, c, ['+CSIM: 4'], "+CSIM:")


def test_repeated_answer_lines_the_last_counts():
    # Sequans / u-blox SARA-R410M: an earlier answer repeated before the current one.
    card, modem, _ = make(opening() + [
        ('AT+CSIM=10,"0070000001"',
         '\r\n+CSIM: 4,"9000"\r\n+CSIM: 6,"029000"\r\n' + OK)], mode="csim")
    assert card.transmit(unhexlify("0070000001")) == b"\x02\x90\x00"
    modem.done()


def test_transmit_through_engine_rejects_bad_answer():
    card, modem, _ = make(opening() + [
        ('AT+CSIM=10,"0070000001"', '\r\n+CSIM: 6,"0190"\r\n' + OK)], mode="csim")
    e = raises(ProtocolError, card.transmit, unhexlify("0070000001"))
    assert "announces 6 hex digits but carries 4" in str(e)


def test_cme_13_is_explained():
    card, modem, _ = make(opening() + [
        ('AT+CSIM=22,"81E2910006BF3E035C015A"', "\r\n+CME ERROR: 13\r\n")], mode="csim",
        profile=modems.profile_for("Nordic Semiconductor ASA nRF9151-LACA"))
    e = raises(AtError, card.transmit, unhexlify("81E2910006BF3E035C015A"))
    assert isinstance(e, TransportError) and e.cme == 13
    assert "+CME ERROR: 13 (SIM failure) - is this an eUICC with an enabled profile?" in str(e)
    assert "AT+CFUN=41" in str(e)
    assert any("AT+CFUN=41" in n for n in card.notes)  # optional command named, not sent
    modem.done()


def test_plain_error_on_a_channel_apdu_suggests_cgla():
    card, modem, _ = make(opening() + [
        ('AT+CSIM=10,"81F2000000"', "\r\nERROR\r\n")], mode="csim")
    e = raises(AtError, card.transmit, unhexlify("81F2000000"))
    assert "logical channels through CSIM" in str(e) and "mode=cgla" in str(e)


def test_terminal_capability_refused_by_the_modem_reads_6d00():
    card, modem, _ = make(opening() + [('AT+CSIM=20,"%s"' % TCAP, "\r\nERROR\r\n")], mode="csim")
    assert card.transmit(unhexlify(TCAP)) == b"\x6d\x00"
    assert any("TERMINAL CAPABILITY" in n for n in card.notes)


def test_transmit_rejects_bad_apdus():
    card, _, _ = make([])
    raises(ValueError, card.transmit, b"\x00\x01\x02")
    raises(ValueError, card.transmit, bytes(262))
    raises(ValueError, card.transmit, "00A40400")


# ---- truncation, 61xx, 6601 -----------------------------------------------------------

def _data(n, seed=1):
    return "".join("%02X" % ((i * 7 + seed) & 0xFF | 0x01) for i in range(n))


def test_answer_cut_at_256_bytes_is_completed_with_get_response():
    # Huawei MT5700: the card answered 256 data bytes + 612C; the modem passed only 256 bytes.
    prof = modems.profile_for("MT5700M-CN")
    assert prof["csim_max_answer"] == 256
    first, rest = _data(256), _data(44, 9)
    assert first[-4:] not in ("9000",) and first[-4:-2] != "61"
    card, modem, _ = make(opening() + [
        csim("81E2910003BF2D00", first),
        csim("01C00000FD", rest + "9000"),
    ], mode="csim", profile=prof)
    out = card.transmit(unhexlify("81E2910003BF2D00"))
    assert out == unhexlify(first + rest + "9000")
    modem.done()


def test_answer_cut_exactly_before_the_status_word():
    # 256 data bytes + 9000 from the card, cut to 256: nothing more to get.
    prof = modems.profile_for("Huawei MT5700")
    first = _data(256)
    card, modem, _ = make(opening() + [
        csim("81E2910003BF2D00", first),
        csim("01C00000FD", "6985"),
    ], mode="csim", profile=prof)
    assert card.transmit(unhexlify("81E2910003BF2D00")) == unhexlify(first + "9000")
    assert any("cut at 256" in n for n in card.notes)
    modem.done()


def test_get_response_le_is_capped_below_the_cut():
    prof = modems.profile_for("Huawei MT5700")
    card, modem, _ = make(opening() + [
        csim("81E2910003BF2D00", "6100"),
        csim("01C00000FD", _data(253) + "6103"),
        csim("01C0000003", "AABBCC9000"),
        csim("01C00000FD", _data(20) + "9000"),  # IsdrSession-style GET RESPONSE Le 00, capped
    ], mode="csim", profile=prof)
    out = card.transmit(unhexlify("81E2910003BF2D00"))
    assert out == unhexlify(_data(253) + "AABBCC9000")
    assert card.transmit(unhexlify("01C0000000")) == unhexlify(_data(20) + "9000")
    modem.done()


def test_61xx_chain_is_bounded():
    card, modem, _ = make(opening() + [csim("81E2910003BF2D00", _data(100) + "6100")],
                          mode="csim", max_response=300)
    e = raises(ProtocolError, card.transmit, unhexlify("81E2910003BF2D00"))
    assert "300-byte bound" in str(e)


def test_wrong_le_on_our_get_response_is_asked_again():
    card, modem, _ = make(opening() + [
        csim("81E2910003BF2D00", "6110"),
        csim("01C0000010", "6C08"),
        csim("01C0000008", "0102030405060708" + "9000"),
    ], mode="csim")
    assert card.transmit(unhexlify("81E2910003BF2D00")) == unhexlify("01020304050607089000")
    modem.done()


def test_6601_transmission_error_is_resent_once():
    card, modem, _ = make(opening() + [
        csim("81E2910003BF2D00", "6601"),
        csim("81E2910003BF2D00", "BF2D009000"),
        csim("81E2910003BF2D01", "6601"),
        csim("81E2910003BF2D01", "6601"),
    ], mode="csim")
    assert card.transmit(unhexlify("81E2910003BF2D00")) == unhexlify("BF2D009000")
    assert card.transmit(unhexlify("81E2910003BF2D01")) == b"\x66\x01"
    modem.done()


# ---- timeouts ----------------------------------------------------------------------------

def test_store_data_may_take_a_minute_other_apdus_may_not():
    # LoadEuiccPackage (BF51) and a BPP segment (a block of a function not listed): the
    # card may work for a minute; GetEID (a read) and GET DATA get apdu_timeout_ms.
    card, modem, clock = make(opening("\r\n+CCHO: 1\r\n" + OK) + [
        ('AT+CGLA=1,16,"80E2910002BF5100"', [Silence(60000), ans("+CGLA:", "9000")]),
        ('AT+CGLA=1,18,"80E2110004A0028700"', [Silence(60000), ans("+CGLA:", "9000")]),
        ('AT+CGLA=1,22,"80E2910006BF3E035C015A"', [Silence(20000), ans("+CGLA:", "9000")]),
    ])
    s = open_isdr_session(card)
    t0 = clock.t
    assert card.transmit(unhexlify("80E2910002BF5100")) == b"\x90\x00"
    assert card.transmit(unhexlify("80E2110004A0028700")) == b"\x90\x00"
    assert clock.t - t0 >= 120000
    t0 = clock.t
    e = raises(TimeoutError_, es10.get_eid, s)
    assert "within 10000 ms" in str(e) and "AT+CGLA=1" in str(e)
    assert clock.t - t0 <= 10100
    assert card.wait_ms(unhexlify("80CA005A00")) == 10000
    assert card.wait_ms(unhexlify("80E2910003BF3800")) == 30000  # AuthenticateServer
    assert card.wait_ms(unhexlify("80E2910003BF3600")) == 120000  # a BPP's first segment
    assert card.wait_ms(unhexlify("80E2910003BF3100")) == 120000  # EnableProfile


def test_modem_that_stops_answering_times_out_bounded():
    card, modem, clock = make(opening("\r\n+CCHO: 1\r\n" + OK) + [
        ('AT+CGLA=1,22,"80E2910006BF3E035C015A"', None)], apdu_timeout_ms=3000)
    s = open_isdr_session(card)
    t0 = clock.t
    e = raises(TimeoutError_, es10.get_eid, s)
    assert "within 3000 ms" in str(e)
    assert 3000 <= clock.t - t0 <= 3100
    modem.done()


def test_lost_final_ok_costs_the_grace_not_the_timeout():
    # The +CGLA answer came, its OK never does: the answer is taken FINAL_GRACE_MS later.
    card, modem, clock = make(opening("\r\n+CCHO: 1\r\n" + OK) + [
        ('AT+CGLA=1,22,"80E2910006BF3E035C015A"', "\r\n+CGLA: %d,\"%s9000\"\r\n" % (len(EID_RSP) + 4, EID_RSP)),
        ('AT+CGLA=1,22,"80E2910006BF3E035C015A"', ans("+CGLA:", EID_RSP + "9000")),
    ])
    s = open_isdr_session(card)
    t0 = clock.t
    assert es10.get_eid(s) == EID
    assert FINAL_GRACE_MS <= clock.t - t0 <= FINAL_GRACE_MS + 200
    assert any("no final OK within 2000 ms" in n for n in card.notes)
    assert es10.get_eid(s) == EID  # the next command is not confused
    modem.done()


def test_sim_busy_is_sent_again_with_a_back_off():
    busy = "\r\n+CME ERROR: 14\r\n"
    cmd = 'AT+CGLA=1,22,"80E2910006BF3E035C015A"'
    card, modem, clock = make(opening("\r\n+CCHO: 1\r\n" + OK) + [
        (cmd, busy), (cmd, "\r\n+CME ERROR: SIM busy\r\n"),
        (cmd, ans("+CGLA:", EID_RSP + "9000")),
        (cmd, busy), (cmd, busy), (cmd, busy),
    ])
    s = open_isdr_session(card)
    t0 = clock.t
    assert es10.get_eid(s) == EID
    assert 3 * BUSY_BACKOFF_MS <= clock.t - t0 <= 3 * BUSY_BACKOFF_MS + 300
    assert len([n for n in card.notes if "sent again" in n]) == 2
    e = raises(AtError, es10.get_eid, s)  # busy three times: the error, with its hint
    assert e.cme == 14 and "stayed busy" in str(e) and "through 3 tries" in str(e)
    modem.done()


def test_other_cme_errors_are_not_sent_again():
    card, modem, clock = make(opening("\r\n+CCHO: 1\r\n" + OK) + [
        ('AT+CGLA=1,22,"80E2910006BF3E035C015A"', "\r\n+CME ERROR: 13\r\n")])
    s = open_isdr_session(card)
    t0 = clock.t
    e = raises(AtError, es10.get_eid, s)
    assert e.cme == 13 and clock.t - t0 < 200
    modem.done()


def test_silent_stale_close_is_bounded_and_noted():
    card, modem, clock = make(BASE + [('AT+CSIM=8,"00708001"', None),
                                      (CCHO, "\r\n+CCHO: 1\r\n" + OK)])
    card.open()
    assert card.mode == "cgla"
    assert any("stale channel 1" in n for n in card.notes)
    assert clock.t <= 2000 + 2000  # one stale timeout (2 s) plus draining
    modem.done()


# ---- stale channels, close ---------------------------------------------------------------

def test_stale_sessions_and_channels_closed_at_open():
    card, modem, _ = make(
        BASE + [("AT+CCHC=7", "\r\n+CME ERROR: 21\r\n")] + stale(("9000", "9000", "6A81"))
        + [(CCHO, "\r\n+CCHO: 4\r\n" + OK), ("AT+CCHC=4", "\r\nERROR\r\n")],
        stale_sessions=("7",))
    card.open()
    assert card.session == "4"
    card.close()  # CCHC ERROR tolerated
    assert any("AT+CCHC=4" in n for n in card.notes)
    card.close()  # twice is harmless
    modem.done()


def test_no_cchc_profile_never_sends_cchc_and_stale_channels_configurable():
    prof = modems.profile_for("", {"no_cchc": True, "stale_channels": [2]})
    card, modem, _ = make(BASE + [csim("00708002", "9000"), (CCHO, "\r\n+CCHO: 1\r\n" + OK)],
                          profile=prof, stale_sessions=("9",))
    card.open()
    card.close()
    assert not [ln for ln in modem.lines if ln.startswith("AT+CCHC")]
    modem.done()


def test_em9191_goes_straight_to_csim_without_cchc():
    prof = modems.profile_for("Sierra Wireless EM9191")
    assert prof["no_cchc"] and prof["csim_only"]
    card, modem, _ = make(opening(), profile=prof, stale_sessions=("3",))
    card.open()
    assert card.mode == "csim"
    modem.done()


# ---- modem-specific switches ------------------------------------------------------------

def test_ec20f_cgla_error_switches_to_a_csim_channel_of_our_own():
    prof = modems.profile_for("Quectel EC20F")
    assert prof["cgla_errors_fall_back_to_csim"]
    card, modem, _ = make(opening("\r\n+CCHO: 2\r\n" + OK) + [
        ('AT+CGLA=2,22,"80E2910006BF3E035C015A"', "\r\nERROR\r\n"),
        ("AT+CCHC=2", OK),
        csim("0070000001", "039000"),
        csim("03A4040410" + ISDR + "00", "9000"),
        csim("83E2910006BF3E035C015A", EID_RSP + "9000"),
        csim("83E2910006BF3E035C015A", EID_RSP + "9000"),
        csim("00708003", "9000"),
    ], profile=prof)
    s = open_isdr_session(card)
    assert es10.get_eid(s) == EID
    assert card.mode == "csim" and card.channel == 3 and card.modem_channel
    assert es10.get_eid(s) == EID  # later requests keep our channel
    card.close()
    modem.done()


def test_cgla_error_mid_sequence_asks_to_repeat():
    prof = modems.profile_for("Quectel EC20F")
    card, modem, _ = make(opening("\r\n+CCHO: 2\r\n" + OK) + [
        ('AT+CGLA=2,10,"00C0000010"', "\r\nERROR\r\n"),
        ("AT+CCHC=2", OK),
        csim("0070000001", "019000"),
        csim("01A4040410" + ISDR + "00", "9000"),
    ], profile=prof)
    card.open()
    e = raises(TransportError, card.transmit, unhexlify("00C0000010"))
    assert "repeat the ES10 function" in str(e)
    modem.done()


def test_cgla_error_without_the_quirk_is_raised():
    card, modem, _ = make(opening("\r\n+CCHO: 2\r\n" + OK) + [
        ('AT+CGLA=2,22,"80E2910006BF3E035C015A"', "\r\nERROR\r\n")])
    e = raises(AtError, card.transmit, unhexlify("80E2910006BF3E035C015A"))
    assert "CGLA" in str(e) and "mode=csim" in str(e)


def test_eg25_csim_mode_uses_the_basic_channel():
    prof = modems.profile_for("Quectel EG25-G")
    assert not prof["csim_logical_channels"]
    card, modem, _ = make(opening() + [
        csim(TCAP, "9000"),
        csim("00A4040410" + ISDR + "00", "9000"),
        csim("80E2910006BF3E035C015A", EID_RSP + "9000"),
    ], mode="csim", profile=prof)
    s = open_isdr_session(card)
    assert s.channel == 0 and not s.modem_channel
    assert es10.get_eid(s) == EID
    assert any("basic channel" in n for n in card.notes)
    modem.done()


def test_sim767x_init_commands_and_failures_are_notes():
    prof = modems.profile_for("SIMCOM INCORPORATED A7672E SIMCOM_SIM7672E")
    assert prof["init"] == ("ATE0", "AT+CMEE=1", "AT+CSIMSLEEP=0")
    card, modem, _ = make(BASE + [("AT+CSIMSLEEP=0", "\r\nERROR\r\n")] + stale() +
                          [(CCHO, "\r\n+CCHO: 1\r\n" + OK)], profile=prof)
    card.open()
    assert card.mode == "cgla"
    assert any("AT+CSIMSLEEP=0 refused: ERROR" in n for n in card.notes)
    modem.done()


def test_optional_commands_sent_only_when_configured():
    prof = modems.profile_for("Quectel RG650E", {"apply_optional": True})
    card, modem, _ = make(BASE + [('AT+QESIM="lpa_enable",0', OK)] + stale() +
                          [(CCHO, "\r\n+CCHO: 1\r\n" + OK)], profile=prof)
    card.open()
    modem.done()


def test_segment_size_from_profile_and_keyword_wins():
    prof = modems.profile_for("Quectel EC25")
    card, modem, _ = make(opening("\r\n+CCHO: 1\r\n" + OK), profile=prof)
    s = open_isdr_session(card)
    assert s.segment_size == 128 == prof["segment_size"]
    card2, _, _ = make(opening("\r\n+CCHO: 1\r\n" + OK), profile=prof)
    assert open_isdr_session(card2, segment_size=64).segment_size == 64


def test_open_isdr_session_on_a_plain_card():
    from scripted import ScriptedCard
    card = ScriptedCard([(TCAP, "9000"), ("0070000001", "019000"),
                         ("01A4040410" + ISDR + "00", "9000")])
    s = open_isdr_session(card)
    assert not s.modem_channel and s.channel == 1
    card.done()


def test_refresh_runs_profile_commands_and_closes():
    card, modem, _ = make(opening("\r\n+CCHO: 1\r\n" + OK) + [
        ("AT+CCHC=1", OK), ("AT+CFUN=0", OK), ("AT+CFUN=1", OK)])
    card.open()
    card.refresh()
    assert not card.is_open
    modem.done()


# ---- modems -----------------------------------------------------------------------------

def test_identify_and_overrides():
    clock = FakeClock()
    modem = FakeModem([("AT+CGMI", "\r\nQuectel\r\n" + OK),
                       ("AT+CGMM", "\r\n+CGMM: EC20F\r\n" + OK)], clock=clock)
    ident, prof = modems.identify(AtEngine(modem, clock_ms=clock), {"segment_size": 100})
    assert ident == "Quectel EC20F"
    assert prof["name"] == "Quectel EC20F" and prof["matched"] == ("quectel", "ec20f")
    assert prof["cgla_errors_fall_back_to_csim"] and prof["segment_size"] == 100
    modem.done()


def test_identify_falls_back_to_ati():
    clock = FakeClock()
    modem = FakeModem([("AT+CGMI", "\r\nERROR\r\n"), ("AT+CGMM", "\r\nERROR\r\n"),
                       ("ATI", "\r\nManufacturer: Dell Inc.\r\nModel: DW5821e\r\n" + OK)],
                      clock=clock)
    ident, prof = modems.identify(AtEngine(modem, clock_ms=clock))
    assert "DW5821e" in ident and prof["csim_only"]
    modem.done()


def test_profile_overrides_are_checked():
    assert modems.profile_for("unknown modem")["name"] == "generic"
    e = raises(ValueError, modems.profile_for, "x", {"segment_sise": 100})
    assert "unknown modem profile key 'segment_sise'" in str(e)
    raises(ValueError, modems.profile_for, "x", {"segment_size": 0})
    raises(ValueError, modems.profile_for, "x", {"csim_only": "yes"})
    raises(ValueError, modems.profile_for, "x", {"stale_channels": [0]})
    assert modems.profile_for("x", {"init": ["ATE0", "AT+X"]})["init"] == ("ATE0", "AT+X")


def test_profile_table_covers_the_fact_sheet():
    p = modems.profile_for
    assert p("FIBOCOM FM350-GL")["init"] == ("ATE0", "AT+CMEE=1", "AT+ECSIMSLEEP=0")
    assert p("Quectel EC200U")["optional"] == ('AT+QESIM="lpa_enable",0',)
    assert p("nRF9160")["optional"] == ("AT+CFUN=41",)
    for name in ("Fibocom FG132-GL", "Quectel EM05-G", "Sierra EM7590", "Sequans Monarch",
                 "u-blox SARA-R410M"):
        assert p(name)["matched"], name


def test_cgla_fallback_without_a_free_channel_is_a_card_error():
    prof = modems.profile_for("Quectel EC20F")
    card, modem, _ = make(opening("\r\n+CCHO: 2\r\n" + OK) + [
        ('AT+CGLA=2,22,"80E2910006BF3E035C015A"', "\r\nERROR\r\n"),
        ("AT+CCHC=2", OK),
        csim("0070000001", "6A81"),
    ], profile=prof)
    card.open()
    e = raises(CardError, card.transmit, unhexlify("80E2910006BF3E035C015A"))
    assert e.sw == 0x6A81 and "MANAGE CHANNEL open after the CGLA failure" in str(e)
    modem.done()


# ---- modem restarts ----------------------------------------------------------------------

GET_EID = "80E2910006BF3E035C015A"
BOOT = "\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n"


def test_restart_during_store_data_fails_at_once_and_closes_the_card():
    card, modem, clock = make(opening("\r\n+CCHO: 1\r\n" + OK) + [
        ('AT+CGLA=1,22,"%s"' % GET_EID,
         [Silence(2000), "\r\nRDY\r\n", Silence(500), "\r\n+CFUN: 1\r\n+CPIN: READY\r\n"]),
    ] + opening("\r\n+CCHO: 2\r\n" + OK) + [
        cgla("2", GET_EID, EID_RSP + "9000"),
        ("AT+CCHC=2", OK),
    ])
    s = open_isdr_session(card)
    t0 = clock.t
    e = raises(ModemRestarted, es10.get_eid, s)
    assert clock.t - t0 <= 2100  # not the 120 s STORE DATA timeout
    assert isinstance(e, TransportError) and e.when == "during" and e.line == "RDY"
    assert str(e) == ('modem restarted during AT+CGLA=1,22,"80E2910006BF3E035C015A" '
                      "(it sent 'RDY'): logical channels are lost, reopen the session")
    assert not card.is_open and card.session is None and not card.modem_channel
    sent = len(modem.lines)
    # The lost session refuses APDUs without sending them; closing sends nothing.
    e = raises(ModemRestarted, card.transmit, unhexlify(GET_EID))
    assert e.when == "before" and "reopen the session" in str(e)
    s.close()
    card.close()
    assert len(modem.lines) == sent
    # open() starts clean: init, stale channels, a new CCHO session.
    s = open_isdr_session(card)
    assert card.session == "2" and card.engine.restarts == 1
    assert es10.get_eid(s) == EID
    card.close()
    assert "AT+CCHC=1" not in modem.lines
    assert any("modem restarted (it sent 'RDY')" in n for n in card.notes)
    modem.done()


def test_restart_between_apdus_is_caught_before_the_next_one():
    card, modem, _ = make(opening() + [
        csim(TCAP, "9000"),
        csim("0070000001", "019000"),
        csim("01A4040410" + ISDR + "00", "9000"),
        csim("81E2910006BF3E035C015A", EID_RSP + "9000"),
    ], mode="csim")
    s = open_isdr_session(card)
    assert es10.get_eid(s) == EID
    modem.inject(BOOT)  # the modem rebooted while the IPA was between two ES10 calls
    e = raises(ModemRestarted, es10.get_eid, s)
    assert e.when == "before" and e.line == "RDY"
    assert str(e).startswith('modem restarted before AT+CSIM=22,"81E2910006BF3E035C015A"')
    s.close()  # MANAGE CHANNEL close of channel 1: the restart closed it, nothing sent
    card.close()
    assert modem.lines[-1] == 'AT+CSIM=22,"81E2910006BF3E035C015A"'
    assert any("MANAGE CHANNEL close after the modem restarted" in n for n in card.notes)
    modem.done()


def test_boot_lines_at_start_up_do_not_disturb_open():
    # The port was opened while the modem booted: RDY with the first answer, the SIM
    # ready a moment later (SimModem echo_urc; Quectel, SIMCom).
    card, modem, _ = make([("ATE0", "\r\nRDY\r\n" + OK),
                           ("AT+CMEE=1", "\r\n+CPIN: READY\r\n" + OK)] + stale() + [
        (CCHO, "\r\n+CFUN: 1\r\n+CCHO: 1\r\n" + OK),
        cgla("1", GET_EID, EID_RSP + "9000"),
    ])
    s = open_isdr_session(card)
    assert es10.get_eid(s) == EID
    assert card.engine.restarts == 0 and card.is_open
    modem.done()


class _PortOwningCard(AtCard):
    """Like ipa_host.card.serial's SerialAtCard: close() also frees the port."""

    def __init__(self, engine, **kw):
        super().__init__(engine, **kw)
        self.port_closed = 0

    def close(self):
        AtCard.close(self)
        self.port_closed += 1


def test_refresh_closes_only_the_session_and_expects_the_sim_to_restart():
    clock = FakeClock()
    modem = FakeModem(opening("\r\n+CCHO: 1\r\n" + OK) + [
        ("AT+CCHC=1", OK),
        ("AT+CFUN=0", "\r\n+CPIN: NOT READY\r\n" + OK),
        ("AT+CFUN=1", OK + "\r\n+CFUN: 1\r\n"),
        ("ATE0", "\r\n+CPIN: READY\r\n" + OK),  # the SIM is ready again while we reopen
        ("AT+CMEE=1", OK)] + stale() + [
        (CCHO, "\r\n+CCHO: 2\r\n" + OK),
        cgla("2", GET_EID, EID_RSP + "9000"),
        ("AT+CCHC=2", OK),
    ], clock=clock)
    card = _PortOwningCard(AtEngine(modem, clock_ms=clock))
    card.open()
    card.refresh()
    assert card.port_closed == 0 and not card.is_open
    s = open_isdr_session(card)
    assert es10.get_eid(s) == EID
    assert card.engine.restarts == 0
    card.close()
    assert card.port_closed == 1
    modem.done()


# ---- answers cut by a modem without a profile entry -------------------------------------

SD = "81E2910003BF2D00"  # STORE DATA on channel 1 (csim mode)


def test_unknown_modem_cut_found_from_the_tlv_length():
    # 256 bytes of a 305-byte BF2D answer; its last two bytes happen to read 9000.
    first = "BF2D82012C" + _data(249) + "9000"
    rest = _data(49, 5)
    assert tlv_total(unhexlify(first)) == 305
    card, modem, _ = make(opening() + [
        csim(SD, first),
        csim("01C00000FD", rest + "9000"),
        csim("01C00000FD", _data(10) + "9000"),  # the caller's Le 00: capped from now on
    ], mode="csim")
    assert card.profile["csim_max_answer"] == 0
    assert card.transmit(unhexlify(SD)) == unhexlify(first + rest + "9000")
    assert card.profile["csim_max_answer"] == 256
    assert any("csim_max_answer=256" in n and "cut an answer at 256" in n for n in card.notes)
    assert card.transmit(unhexlify("01C0000000")) == unhexlify(_data(10) + "9000")
    modem.done()


def test_unknown_modem_cut_found_from_a_tail_that_is_no_status_word():
    # Before: "card answered SW 0A98 (unknown status)". The data ends 0A98: no SW ends so.
    first = _data(254) + "0A98"
    card, modem, _ = make(opening() + [
        csim(SD, first),
        csim("01C00000FD", "6985"),  # nothing more: the lost status word was 9000
    ], mode="csim")
    assert card.transmit(unhexlify(SD)) == unhexlify(first + "9000")
    assert card.profile["csim_max_answer"] == 256
    modem.done()


def test_cut_that_kept_sw1():
    # A 255-byte BF2D answer + 9000 = 257 bytes, cut to 256: the last byte kept is SW1.
    first = "BF2D81FB" + _data(251)
    assert tlv_total(unhexlify(first)) == 255
    for prof in (None, modems.profile_for("Huawei MT5700")):
        card, modem, _ = make(opening() + [csim(SD, first + "90")], mode="csim", profile=prof)
        assert card.transmit(unhexlify(SD)) == unhexlify(first + "9000")
        assert card.profile["csim_max_answer"] == 256
        modem.done()


def test_cut_of_our_get_response_le_ff_that_kept_61():
    card, modem, _ = make(opening() + [
        csim(SD, "61FF"),
        csim("01C00000FF", _data(255) + "61"),  # 255 data + 61.. cut: SW2 lost
        csim("01C00000FD", _data(20, 3) + "9000"),
    ], mode="csim")
    out = card.transmit(unhexlify(SD))
    assert out == unhexlify(_data(255) + _data(20, 3) + "9000")
    modem.done()


def test_complete_256_byte_answers_are_left_alone():
    whole = "BF2D81FA" + _data(250) + "9000"  # 254-byte TLV + SW: exactly 256 bytes
    warn = _data(254) + "6282"  # end of file reached: a warning that may follow data
    card, modem, _ = make(opening() + [csim(SD, whole), csim("81CA00FE00", warn)], mode="csim")
    assert card.transmit(unhexlify(SD)) == unhexlify(whole)
    assert card.transmit(unhexlify("81CA00FE00")) == unhexlify(warn)
    assert card.profile["csim_max_answer"] == 0 and card.notes == []
    modem.done()


def test_cut_that_cannot_be_completed_names_the_profile_option():
    card, modem, _ = make(opening() + [
        csim(SD, _data(254) + "0A98"),
        ('AT+CSIM=10,"01C00000FD"', "\r\nERROR\r\n"),
    ], mode="csim")
    e = raises(ProtocolError, card.transmit, unhexlify(SD))
    assert "cut an answer at 256 bytes and it cannot be completed" in str(e)
    assert "GET RESPONSE failed: ERROR" in str(e) and "csim_max_answer=256" in str(e)
    modem.done()
    card, modem, _ = make(opening() + [csim(SD, "BF2D81FB" + _data(251) + "6A")], mode="csim")
    e = raises(ProtocolError, card.transmit, unhexlify(SD))
    assert "6A" in str(e) and "csim_max_answer=256" in str(e)
    card, modem, _ = make(opening() + [
        csim(SD, "61FF"), csim("01C00000FF", _data(255) + "61"), csim("01C00000FD", "6985"),
    ], mode="csim")
    e = raises(ProtocolError, card.transmit, unhexlify(SD))
    assert "announced more" in str(e) and "csim_max_answer=256" in str(e)


def test_answer_of_another_length_ending_in_no_status_word():
    card, modem, _ = make(opening() + [csim(SD, _data(198) + "0A98")], mode="csim")
    e = raises(ProtocolError, card.transmit, unhexlify(SD))
    assert "ends 0A98, which is no status word" in str(e) and "csim_max_answer=200" in str(e)
    assert sw_ok(0x90, 0x00) and sw_ok(0x6A, 0x88) and sw_ok(0x9F, 0x10)
    assert not sw_ok(0x60, 0x00) and not sw_ok(0x0A, 0x98) and not sw_ok(0xA0, 0x00)


def test_tlv_total_reads_headers():
    assert tlv_total(unhexlify("5A0A")) == 12
    assert tlv_total(unhexlify("BF2D8200FF")) == 5 + 255
    assert tlv_total(unhexlify("BF2D81")) is None
    assert tlv_total(unhexlify("BF")) is None
    assert tlv_total(unhexlify("3080")) is None  # indefinite length


def test_cut_below_the_cards_chunks_loses_data_and_says_so():
    # csim_max_answer=200 but the card sends 256-byte chunks: bytes 200-255 of the
    # first chunk never reach us. Short data would be worse than an error.
    prof = modems.profile_for("", {"csim_max_answer": 200})
    first = "BF2D820146" + _data(195)  # 200 bytes of a 331-byte answer
    card, modem, _ = make(opening() + [
        csim(SD, first),
        csim("01C00000C5", _data(75, 7) + "9000"),  # what the card still had
    ], mode="csim", profile=prof)
    e = raises(ProtocolError, card.transmit, unhexlify(SD))
    assert "the 331-byte response came back with 275 bytes" in str(e)
    assert "csim_max_answer=200 cannot help here" in str(e)
    modem.done()


def test_complete_answer_longer_than_a_wrong_cap_is_left_alone():
    # csim_max_answer set for a modem that does not cut: a whole 258-byte answer passes.
    prof = modems.profile_for("", {"csim_max_answer": 200})
    whole = "BF2D8200FB" + _data(251) + "9000"  # 256-byte TLV + SW
    card, modem, _ = make(opening() + [csim(SD, whole)], mode="csim", profile=prof)
    assert card.transmit(unhexlify(SD)) == unhexlify(whole)
    modem.done()


def test_restart_while_closing_drops_the_session_without_more_commands():
    prof = modems.profile_for("Quectel EC20F")
    card, modem, _ = make(opening("\r\n+CCHO: 2\r\n" + OK) + [
        ('AT+CGLA=2,10,"80CA005A00"', "\r\nERROR\r\n"),  # CGLA fails: own CSIM channel 3
        ("AT+CCHC=2", OK),
        csim("0070000001", "039000"),
        csim("03A4040410" + ISDR + "00", "9000"),
        csim("83CA005A00", "9000"),
        ('AT+CSIM=8,"00708003"', "\r\n^SYSSTART\r\n"),  # rebooted while we closed it
    ], profile=prof)
    card.open()
    assert card.transmit(unhexlify("80CA005A00")) == b"\x90\x00"
    assert card.channel == 3
    card.close()  # no error, no AT+CCHC after the restart
    assert not card.is_open and card.channel == 0 and card.session is None
    assert modem.lines[-1] == 'AT+CSIM=8,"00708003"'
    assert any("modem restarted (it sent '^SYSSTART')" in n for n in card.notes)
    modem.done()
