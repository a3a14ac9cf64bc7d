"""SGP.22 BSP (SCP03t) session keys and segment protection (ipa_host/sim/bsp.py).

Known answers: public vectors (osmocom pySim unit tests, one from a third-party
SM-DP+ trace) for the X9.63 KDF and an 87 / 88 / 87 segment chain.
"""

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ipa_host.sim import bsp

h = bytes.fromhex

KEYS = (h("472f5bfadd97f21d34f3ce9b51b92751"), h("9ec07f5b36a13e12a991d66e294e6242"),
        h("406d507b448a699e7a36a38494debbde"))  # S-ENC, S-MAC, initial MCV
CONFIGURE_ISDP = h("bf2400")
METADATA = h("bf252d5a0a98001032547698103214910947534d415f54455354921147534d415f544553545f"
             "50524f46494c45950100")
RSK = h("bf26368010000102030405060708090a0b0c0d0e0f8110010102030405060708090a0b0c0d0e0f"
        "8210020102030405060708090a0b0c0d0e0f")
SEG87 = h("8718f6fe031e4b9cfe87c8e1e62f3fde85c49412d7722a6a2d89")
SEG88 = METADATA.join((h("8838"), h("8a62cc9adbb5ccbc")))
SEG87_RSK = h("8748a14c800a001992351cd46ad2945654674369701d82b7b46567652bc8fbed234939fc57fba748"
              "015525fd6c651e9d3d1330652d42a0cfad950e912122af4ec5362d3c0bc535729c40")


def sender():
    s_enc, s_mac, mcv = KEYS
    return bsp.BspSender(s_enc, s_mac, mcv)


def receiver():
    s_enc, s_mac, mcv = KEYS
    return bsp.BspReceiver(s_enc, s_mac, mcv)


@pytest.mark.parametrize("secret,eid,mcv,s_enc,s_mac", [
    ("8902dca391bbb22570fe60c176076246f568b1941265dff1d729e63039658089", "89049032123451234512345678901335",
     "734bc93ddb10c71c5ad13d420dc08b5b", "d782d575b22a38334556a3d9a1e2ae6b", "a35addc192ae8f934e2932116c7e89e7"),
    ("c9a993dd4879a8f7161f2085410edd4f9652f1df37be097ba96ba2ca6be528fe", "89049032123451234512345678901235",
     "406d507b448a699e7a36a38494debbde", "472f5bfadd97f21d34f3ce9b51b92751", "9ec07f5b36a13e12a991d66e294e6242"),
])
def test_kdf_known_answers(secret, eid, mcv, s_enc, s_mac):
    out = bsp.derive_session_keys(h(secret), b"\x80" * 8, eid)
    assert out == (h(mcv), h(s_enc), h(s_mac))
    assert bsp.derive_session_keys(h(secret), b"\x80" * 8, h(eid)) == out  # EID as bytes


def test_segment_chain_known_answers():
    s = sender()
    assert s.wrap(0x87, CONFIGURE_ISDP) == SEG87
    assert s.wrap(0x88, METADATA, encrypt=False) == SEG88
    assert s.wrap(0x87, RSK) == SEG87_RSK   # counter 3: the MAC-only segment counted too
    assert s.counter == 4


def test_receiver_reads_the_known_chain():
    r = receiver()
    assert r.unwrap(SEG87) == CONFIGURE_ISDP
    assert r.unwrap(SEG88, decrypt=False) == METADATA
    assert bsp.parse_replace_session_keys(r.unwrap(SEG87_RSK, tag=0x87)) == (
        h("000102030405060708090a0b0c0d0e0f"), h("010102030405060708090a0b0c0d0e0f"),
        h("020102030405060708090a0b0c0d0e0f"))


def test_replace_session_keys_round_trip():
    mcv, enc, mac = bytes(range(16)), b"\x01" * 16, b"\x02" * 16
    assert bsp.parse_replace_session_keys(bsp.replace_session_keys_request(enc, mac, mcv)) == (mcv, enc, mac)


def test_ecka_both_sides_agree_and_derive_same_keys():
    dp, card = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    from ipa_host.sim.pki import public_key_bytes
    a = bsp.ecka_shared_secret(dp, public_key_bytes(card))
    b = bsp.ecka_shared_secret(card, dp.public_key())
    assert a == b and len(a) == 32
    eid = "89049032123451234512345678901235"
    assert bsp.derive_session_keys(a, b"host", eid) == bsp.derive_session_keys(b, b"host", eid)
    with pytest.raises(bsp.BspError):
        bsp.ecka_shared_secret(dp, b"\x04" + b"\x01" * 64)   # not on the curve


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1006, 1007, 1008, 3000, 100_000])
def test_round_trip_all_sizes(size):
    data = bytes((i * 7) & 0xFF for i in range(size))
    s, r = sender(), receiver()
    segs = s.wrap_all(0x86, data)
    assert all(len(x) <= bsp.MAX_SEGMENT for x in segs)
    assert r.unwrap_all(segs, tag=0x86) == data
    assert r.mac_chain == s.mac_chain and r.counter == s.counter == len(segs) + 1
    macs = s.wrap_all(0x88, data, encrypt=False)
    assert all(len(x) <= bsp.MAX_SEGMENT for x in macs)
    assert r.unwrap_all(macs, decrypt=False) == data


def test_full_segment_is_1020_bytes():
    seg = sender().wrap(0x86, b"\x55" * bsp.MAX_ENC_PLAIN)
    assert len(seg) == 1020 and seg[:4] == h("868203f8")
    with pytest.raises(ValueError):
        sender().wrap(0x86, b"\x55" * (bsp.MAX_ENC_PLAIN + 1))


def test_every_bit_flip_is_a_mac_error():
    seg = sender().wrap(0x86, b"profile element bytes" * 3)
    for i in range(2, len(seg)):        # after tag + length
        for bit in (0x01, 0x80):
            bad = bytearray(seg)
            bad[i] ^= bit
            r = receiver()
            with pytest.raises(bsp.BspError) as e:
                r.unwrap(bytes(bad))
            assert e.value.reason == "mac"
            assert r.counter == 1 and r.mac_chain == KEYS[2]   # state untouched


def test_out_of_order_and_replay_fail():
    s = sender()
    a, b = s.wrap(0x86, b"first"), s.wrap(0x86, b"second")
    with pytest.raises(bsp.BspError, match="MAC"):
        receiver().unwrap(b)
    r = receiver()
    r.unwrap(a)
    with pytest.raises(bsp.BspError):
        r.unwrap(a)


def test_wrong_key_and_structure_errors():
    seg = sender().wrap(0x87, CONFIGURE_ISDP)
    s_enc, s_mac, mcv = KEYS
    with pytest.raises(bsp.BspError) as e:
        bsp.BspReceiver(s_enc, bytes(16), mcv).unwrap(seg)
    assert e.value.reason == "mac"
    # right MAC key, wrong encryption key: MAC passes, padding does not (or data is garbage)
    with pytest.raises(bsp.BspError) as e:
        bsp.BspReceiver(bytes(16), s_mac, mcv).unwrap(seg)
    assert e.value.reason == "padding"
    with pytest.raises(bsp.BspError, match="expected segment tag 86"):
        receiver().unwrap(seg, tag=0x86)
    for junk in (b"", h("8703010203"), seg + b"\x00", h("8701"), b"\x86" + bytes([0x82, 0x10, 0x00])):
        with pytest.raises(bsp.BspError) as e:
            receiver().unwrap(junk)
        assert e.value.reason == "structure"


def test_mac_only_block_that_is_not_a_multiple_of_16_cannot_be_decrypted():
    seg = sender().wrap(0x88, b"abc", encrypt=False)
    with pytest.raises(bsp.BspError, match="whole 16-byte blocks"):
        receiver().unwrap(seg)


def test_initialise_secure_channel_signature_bytes():
    key = ec.generate_private_key(ec.SECP256R1())
    from ipa_host.sim import pki
    smdp_otpk, euicc_otpk = b"\x04" + b"\x11" * 64, b"\x04" + b"\x22" * 64
    bf23 = bsp.build_initialise_secure_channel(b"\x01" * 16, b"\x80" * 8, smdp_otpk, euicc_otpk,
                                               lambda d: pki.sign_raw(key, d))
    p = bsp.parse_initialise_secure_channel(bf23)
    assert p["remote_op_id"] == 1 and p["transaction_id"] == b"\x01" * 16
    assert (p["key_type"], p["key_len"], p["host_id"]) == (0x88, 16, b"\x80" * 8)
    assert p["smdp_otpk"] == smdp_otpk and len(p["smdp_sign"]) == 64
    signed = bsp.isc_signed_bytes(bf23, euicc_otpk)
    assert signed.startswith(h("820101" "8010") + b"\x01" * 16 + h("a610800188810110840880"))
    assert signed.endswith(h("5f4941") + euicc_otpk)
    assert pki.verify(key, signed, p["smdp_sign"])
    assert not pki.verify(key, bsp.isc_signed_bytes(bf23, b"\x04" + b"\x33" * 64), p["smdp_sign"])
    with pytest.raises(bsp.BspError):
        bsp.parse_initialise_secure_channel(h("bf2300"))
