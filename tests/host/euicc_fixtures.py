"""Shared helpers for tests that need the virtual eUICC (ipa_host.sim.euicc.euicc).

    card = make_euicc(tmp_path)                  # PKI, 4 profiles, eIM "test-eim" (token 1)
    resp = es10(card, bytes.fromhex("BF3E035C015A"))
    req = build_package(card, counter=1, psmos=[psmo_enable(ICCID_2)])
    epr = decode_epr(es10(card, req))

Everything here is built by hand from the SGP.32 / SGP.22 ASN.1 modules and
drives the card at APDU level with its own small driver: it must not share
code with the IPA's message modules (ipa_core.es10, esipa) nor with the
eIM-side signer (ipa_host.sim.eim.signer), so a wrong tag cannot hide on both
sides.
"""

import os

from ipa_core import tlv
from ipa_host.sim import pki
from ipa_host.sim.euicc.euicc import VirtualEuicc

ISDR_AID = bytes.fromhex("A0000005591010FFFFFFFF8900000100")
EIM_ID = "test-eim"
EIM_FQDN = "eim.example.com"

ICCID_1 = "8949449999999990001"  # operational, enabled
ICCID_2 = "8949449999999990002"  # operational, disabled
ICCID_FALLBACK = "8949449999999990003"  # operational, disabled, fallback attribute
ICCID_EMERGENCY = "8949449999999990004"  # operational, disabled, emergency profile

DEFAULT_PROFILES = [
    {"iccid": ICCID_1, "name": "Operational 1", "class": "operational", "state": "enabled"},
    {"iccid": ICCID_2, "name": "Operational 2", "class": "operational", "state": "disabled"},
    {"iccid": ICCID_FALLBACK, "name": "Fallback", "class": "operational", "state": "disabled",
     "fallback": True},
    {"iccid": ICCID_EMERGENCY, "name": "Emergency", "class": "operational", "state": "disabled",
     "emergency": True},
]


def make_pki(folder):
    """A test PKI in `folder` (kept if it exists); returns the folder."""
    pki.create_test_pki(str(folder))
    return str(folder)


def make_euicc(tmp_path, profiles=None, eim=True, association_token=True, version="1.2",
               persist=True, eid=None, protocol=None):
    """A ready VirtualEuicc under tmp_path: PKI in tmp_path/pki, state in tmp_path/euicc.json.

    profiles: list of profile dicts (default DEFAULT_PROFILES); eim: configure
    EIM_ID with the PKI's eim.crt (counter 0) and, with association_token,
    a generated associationToken (1 on a fresh card).
    """
    pki_dir = make_pki(os.path.join(str(tmp_path), "pki"))
    state = os.path.join(str(tmp_path), "euicc.json") if persist else None
    card = VirtualEuicc(pki_dir, state_path=state, eid=eid, version=version, protocol=protocol)
    card.load_profiles(DEFAULT_PROFILES if profiles is None else profiles)
    if eim:
        card.add_eim(EIM_ID, pki.load_certificate(os.path.join(pki_dir, "eim.crt")),
                     fqdn=EIM_FQDN, association_token=association_token)
    return card


def reopen(card):
    """A new VirtualEuicc from the same PKI and state file (a power cycle of the process)."""
    return VirtualEuicc(card.pki["folder"], state_path=card.state_path, version=card.version)


def eim_key(card):
    return pki.load_private_key(os.path.join(card.pki["folder"], "eim.key"))


def eim_token(card, eim_id=EIM_ID):
    e = card.state.find_eim(eim_id)
    return e["token"] if e else None


# ---- a minimal APDU driver (independent of ipa_core.apdu) ------------------------------


def sw_of(resp):
    return (resp[-2] << 8) | resp[-1]


def cla(base, channel):
    if channel < 4:
        return base | channel
    return base | 0x40 | (channel - 4)


def open_isdr(card):
    """MANAGE CHANNEL open + SELECT ISD-R; returns the channel number."""
    r = card.transmit(bytes.fromhex("0070000001"))
    assert sw_of(r) == 0x9000, r.hex()
    ch = r[0]
    r = card.transmit(bytes((cla(0, ch), 0xA4, 0x04, 0x00, 16)) + ISDR_AID + b"\x00")
    assert follow(card, ch, r)[1] == 0x9000, r.hex()
    return ch


def follow(card, ch, r):
    """(data, sw) of answer `r` on channel `ch`, 61xx followed with GET RESPONSE."""
    data = bytearray(r[:-2])
    sw = sw_of(r)
    while sw >> 8 == 0x61:
        r = card.transmit(bytes((cla(0, ch), 0xC0, 0, 0, sw & 0xFF)))
        data += r[:-2]
        sw = sw_of(r)
    return bytes(data), sw


def close(card, ch):
    assert sw_of(card.transmit(bytes((0, 0x70, 0x80, ch)))) == 0x9000


def store_data(card, ch, request, block=255):
    """Send `request` as STORE DATA blocks; follow 61xx. Returns (data, sw)."""
    n = 0
    off = 0
    while True:
        part = request[off:off + block]
        off += len(part)
        last = off >= len(request)
        r = card.transmit(bytes((cla(0x80, ch), 0xE2, 0x91 if last else 0x11, n, len(part))) + part)
        if not last:
            assert sw_of(r) == 0x9000, "block %d: %s" % (n, r.hex())
            n += 1
            continue
        return follow(card, ch, r)


def es10(card, request, expect_sw=0x9000):
    """One ES10 request on a fresh channel; returns the response data (asserts the SW)."""
    ch = open_isdr(card)
    try:
        data, sw = store_data(card, ch, request)
    finally:
        close(card, ch)
    assert sw == expect_sw, "SW %04X, expected %04X" % (sw, expect_sw)
    return data


# ---- eUICC Package requests (SGP32Definitions EuiccPackageRequest) ----------------------


def iccid_tlv(digits):
    d = digits + "F" * (20 - len(digits))
    return tlv.encode(0x5A, tlv.bcd_unswap(d))


def psmo_enable(iccid, rollback=False):
    """enable [3] { 5A iccid, [05 00 rollbackFlag] }."""
    return tlv.enc(0xA3, iccid_tlv(iccid), tlv.encode(0x05, b"") if rollback else None)


def psmo_disable(iccid):
    return tlv.encode(0xA4, iccid_tlv(iccid))


def psmo_delete(iccid):
    return tlv.encode(0xA5, iccid_tlv(iccid))


def psmo_list_profile_info(tag_list=None):
    """listProfileInfo [45] ProfileInfoListRequest: BF2D { [5C tags] }."""
    return tlv.enc(0xBF2D, tlv.encode(0x5C, tag_list) if tag_list is not None else None)


def eco_add_eim(config):
    """addEim [8] EimConfigurationData: the SEQUENCE's 30 replaced by A8 (implicit)."""
    return tlv.encode(0xA8, tlv.decode(config).value)


def eco_list_eim():
    return tlv.encode(0xAB, b"")


def eco_delete_eim(eim_id):
    return tlv.encode(0xA9, tlv.encode(0x80, eim_id.encode()))


def eim_config(eim_id, cert=None, counter=0, token=None, fqdn=None, ci_pkid=None, extra=b""):
    """EimConfigurationData: 30 { 80 id, [81 fqdn], [83 counter], [84 token], [A5 { A1 cert }], [88] }."""
    return tlv.enc(
        0x30,
        tlv.encode(0x80, eim_id.encode()),
        tlv.encode(0x81, fqdn.encode()) if fqdn else None,
        tlv.encode(0x83, tlv.int_encode(counter)) if counter is not None else None,
        tlv.encode(0x84, tlv.int_encode(token)) if token is not None else None,
        tlv.encode(0xA5, tlv.encode(0xA1, tlv.decode(pki.certificate_der(cert)).value))
        if cert is not None else None,
        tlv.encode(0x88, ci_pkid) if ci_pkid is not None else None,
        extra or None,
    )


def package_signed(eid, counter, psmos=None, ecos=None, eim_id=EIM_ID, txid=None):
    """euiccPackageSigned 30 { 80 eimId, 5A eid, 81 counter, [82 txid], A0 psmoList | A1 ecoList }."""
    body = tlv.encode(0xA0, b"".join(psmos)) if psmos is not None else tlv.encode(0xA1, b"".join(ecos))
    return tlv.enc(0x30, tlv.encode(0x80, eim_id.encode()), tlv.encode(0x5A, bytes.fromhex(eid)),
                   tlv.encode(0x81, tlv.int_encode(counter)),
                   tlv.encode(0x82, txid) if txid is not None else None, body)


def build_package(card, counter, psmos=None, ecos=None, eim_id=EIM_ID, txid=b"\x01\x02",
                  eid=None, token="card", key=None, version=None):
    """A signed EuiccPackageRequest BF51 for `card` (its EID, its eIM's token by default)."""
    signed = package_signed(eid or card.eid, counter, psmos, ecos, eim_id, txid)
    if token == "card":
        token = eim_token(card, eim_id)
    sig = pki.sign_raw(key or eim_key(card),
                       pki.eim_signed_bytes(signed, token, version or card.version))
    return tlv.encode(0xBF51, signed + tlv.encode(0x5F37, sig))


def decode_epr(data):
    """EuiccPackageResult BF51 -> dict.

    kind "result" (A0): eim_id, counter, txid, seq, results [(tag, bytes)] where bytes
    is the value of a primitive result and the whole TLV of a constructed one,
    signed (raw data object), signature; "error" (A1): code instead of seq/results;
    "unsigned" (A2): eim_id, txid, token.
    """
    top = tlv.decode(data)
    assert top.tag == 0xBF51, hex(top.tag)
    (alt,) = top.children()
    out = {"raw": data}
    if alt.tag == 0xA2:
        out["kind"] = "unsigned"
        out["eim_id"] = alt.need(0x80).as_str()
        out["txid"] = alt.find(0x82).value if alt.find(0x82) is not None else None
        out["token"] = alt.find(0x84).as_int() if alt.find(0x84) is not None else None
        return out
    assert alt.tag in (0xA0, 0xA1), hex(alt.tag)
    signed, sig = alt.children()
    assert signed.tag == 0x30 and sig.tag == 0x5F37
    out["signed"] = signed.raw
    out["signature"] = sig.value
    out["eim_id"] = signed.need(0x80).as_str()
    out["counter"] = signed.need(0x81).as_int()
    out["txid"] = signed.find(0x82).value if signed.find(0x82) is not None else None
    if alt.tag == 0xA1:
        out["kind"] = "error"
        out["code"] = signed.need(0x02).as_int()
        return out
    out["kind"] = "result"
    out["seq"] = signed.need(0x83).as_int()
    out["results"] = [(c.tag, c.value if not c.constructed else c.raw) for c in signed.need(0x30)]
    return out


def epr_signature_ok(card, epr, token="card"):
    """True when the eUICC's signature on a decoded result/error verifies (eUICC certificate)."""
    if token == "card":
        token = eim_token(card, epr["eim_id"])
    return pki.verify(card.pki["euicc_cert"], pki.eim_signed_bytes(epr["signed"], token, card.version),
                      epr["signature"])
