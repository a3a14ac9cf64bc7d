"""The eIM-side signer: exact bytes written by hand from SGP32Definitions, real signatures.

Expected byte strings below were written from the ASN.1 module (AUTOMATIC
TAGS), not from the module under test; the comments show the derivation.
"""

import binascii
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ipa_core import tlv
from ipa_host.sim import pki
from ipa_host.sim.eim.signer import (
    build_euicc_package_request,
    encode_eco,
    encode_euicc_package_signed,
    encode_psmo,
    signer_main,
)

H = binascii.unhexlify
EIM_ID = "eim.example"
EID = "89049032123451234512345678901235"
ICCID20 = "89445000001234567890"  # 98 44 05 00 00 21 43 65 87 09
ICCID19 = "8944500000123456789"  # 98 44 05 00 00 21 43 65 87 F9 (F-padded)
POINT = H("04" + "11" * 32 + "22" * 32)

HDR = (
    "800B" + "65696D2E6578616D706C65"  # eimId [0] "eim.example"
    + "5A10" + EID  # eidValue [APPLICATION 26]
    + "810105"  # counterValue [1] 5
)

PSMOS = [
    {"op": "enable", "iccid": ICCID20, "rollback": True},
    {"op": "disable", "iccid": ICCID19},
    {"op": "listProfileInfo", "profileClass": "operational", "tagList": "5A"},
    {"op": "getRAT"},
    {"op": "setDefaultDpAddress", "defaultDpAddress": "smdp.io"},
    {"op": "configureImmediateEnable", "immediateEnable": True, "defaultSmdpAddress": "a.b"},
]
PSMO_SIGNED = (
    "3068" + HDR
    + "820201AB"  # eimTransactionId [2]
    + "A040"  # psmoList: untagged CHOICE alternative 1 -> automatic [0], 64 bytes
    + "A30E" + "5A0A98440500002143658709" + "0500"  # enable [3] {iccid, rollbackFlag NULL}
    + "A40C" + "5A0A984405000021436587F9"  # disable [4] {iccid}
    + "BF2D08" + "A003950102" + "5C015A"  # ProfileInfoListRequest {[0]{profileClass 95}, 5C}
    + "A600"  # getRAT [6] SEQUENCE {}
    + "BF6509" + "8007736D64702E696F"  # SetDefaultDpAddress {[0] "smdp.io"}
    + "A707" + "8000" + "8203612E62"  # configureImmediateEnable {[0] NULL, [2] "a.b"}
)

ECOS = [
    {"op": "addEim", "eimId": "eim2", "eimFqdn": "eim2.example", "eimIdType": "fqdn",
     "counterValue": 0, "associationToken": 7, "eimPublicKey": POINT,
     "eimSupportedProtocol": ["eimRetrieveHttps", "eimRetrieveCoaps"],
     "indirectProfileDownload": True},
    {"op": "deleteEim", "eimId": "eim3"},
    {"op": "listEim"},
]
SPKI_CONTENT = (
    "3013" + "06072A8648CE3D0201" + "06082A8648CE3D030107"  # id-ecPublicKey, prime256v1
    + "034200" + "04" + "11" * 32 + "22" * 32
)
ECO_SIGNED = (
    "3081B2" + HDR
    + "A1818D"  # ecoList: automatic [1], 141 bytes
    + "A88180"  # addEim [8] EimConfigurationData, 128 bytes
    + "800465696D32"  # eimId
    + "810C65696D322E6578616D706C65"  # eimFqdn "eim2.example"
    + "820102"  # eimIdType fqdn(2)
    + "830100"  # counterValue 0
    + "840107"  # associationToken 7
    + "A55B" + "A059" + SPKI_CONTENT  # eimPublicKeyData [5] explicit {eimPublicKey [0] SPKI}
    + "870206C0"  # eimSupportedProtocol bits 0,1
    + "8900"  # indirectProfileDownload
    + "A906" + "800465696D33"  # deleteEim [9] {eimId [0] "eim3"}
    + "AB00"  # listEim [11] SEQUENCE {}
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    paths = pki.create_test_pki(str(tmp_path_factory.mktemp("pki")), eid=EID)
    return {
        "key": pki.load_private_key(paths["eim.key"]),
        "cert": pki.load_certificate(paths["eim.crt"]),
        "paths": paths,
    }


def split(request):
    """BF51 -> (euiccPackageSigned raw, eimSignature value); checks the outer shape."""
    t = tlv.decode(request)
    assert t.tag == 0xBF51
    kids = t.children()
    assert [k.tag for k in kids] == [0x30, 0x5F37]
    return kids[0].raw, kids[1].value


# ---- exact bytes -------------------------------------------------------------------


def test_psmo_list_exact_bytes_and_signature(keys):
    req = build_euicc_package_request(EIM_ID, EID, 5, PSMOS, keys["key"],
                                      association_token=7, transaction_id=H("01AB"))
    signed, sig = split(req)
    assert signed == H(PSMO_SIGNED)
    assert req[:4] == H("BF5181AD")  # 0x68+2 signed + 3+64 signature = 173
    assert len(sig) == 64  # TR-03111 r||s, not DER
    # v1.1+: the signature covers the signed object + associationToken 84 01 07.
    assert pki.verify(keys["cert"], H(PSMO_SIGNED + "840107"), sig)
    assert not pki.verify(keys["cert"], H(PSMO_SIGNED), sig)


def test_eco_list_exact_bytes_and_signature(keys):
    req = build_euicc_package_request(EIM_ID, EID, 5, ECOS, keys["key"])
    signed, sig = split(req)
    assert signed == H(ECO_SIGNED)
    # No association token: 84 01 00 is appended (SGP.32 v1.1+).
    assert pki.verify(keys["cert"], H(ECO_SIGNED + "840100"), sig)


def test_version_1_0_signs_the_object_alone(keys):
    ecos = [dict(op) for op in ECOS]
    del ecos[0]["indirectProfileDownload"]  # not in v1.0's EimConfigurationData
    req = build_euicc_package_request(EIM_ID, EID, 5, ecos, keys["key"], association_token=9,
                                      version="1.0")
    signed, sig = split(req)
    # ECO_SIGNED less indirectProfileDownload '89 00': addEim 126 bytes (short length A8 7E),
    # ecoList 141 - 3 = 138 (8A), the whole 178 - 3 = 175 (AF)
    assert signed == H(ECO_SIGNED.replace("8900", "").replace("A88180", "A87E")
                       .replace("A1818D", "A1818A").replace("3081B2", "3081AF"))
    assert pki.verify(keys["cert"], signed, sig)
    assert not pki.verify(keys["cert"], signed + H("840109"), sig)  # no associationToken TLV


def test_version_1_0_refuses_what_its_module_lacks(keys):
    for ops, what in ((ECOS, "indirectProfileDownload"), (PSMOS, "setDefaultDpAddress")):
        with pytest.raises(ValueError, match=what + ".*SGP.32 v1.0|SGP.32 v1.0.*" + what):
            build_euicc_package_request(EIM_ID, EID, 5, ops, keys["key"], version="1.0")


def test_one_bit_flip_breaks_the_signature(keys):
    req = build_euicc_package_request(EIM_ID, EID, 5, PSMOS, keys["key"], association_token=7,
                                      transaction_id=H("01AB"))
    signed, sig = split(req)
    good = pki.eim_signed_bytes(signed, 7, "1.2")
    assert pki.verify(keys["cert"], good, sig)
    for pos in (0, len(HDR) // 4, len(signed) - 1):  # tag, inside eimId/EID, last PSMO byte
        bad = bytearray(signed)
        bad[pos] ^= 0x01
        assert not pki.verify(keys["cert"], pki.eim_signed_bytes(bytes(bad), 7, "1.2"), sig)
    bad_sig = bytearray(sig)
    bad_sig[10] ^= 0x80
    assert not pki.verify(keys["cert"], good, bytes(bad_sig))
    assert not pki.verify(keys["cert"], pki.eim_signed_bytes(signed, 8, "1.2"), sig)


@pytest.mark.parametrize("op,hexs", [
    ({"op": "enable", "iccid": ICCID20}, "A30C5A0A98440500002143658709"),
    ({"op": "enable", "iccid": ICCID20, "rollback": False}, "A30C5A0A98440500002143658709"),
    ({"op": "delete", "iccid": ICCID19}, "A50C5A0A984405000021436587F9"),
    ({"op": "delete", "iccid": ICCID19 + "F"}, "A50C5A0A984405000021436587F9"),
    ({"op": "setFallbackAttribute", "iccid": ICCID20}, "A80C5A0A98440500002143658709"),
    ({"op": "unsetFallbackAttribute"}, "A900"),
    ({"op": "listProfileInfo"}, "BF2D00"),
    ({"op": "listProfileInfo", "iccid": ICCID20}, "BF2D0EA00C5A0A98440500002143658709"),
    ({"op": "listProfileInfo", "isdpAid": "A0000005591010FFFFFFFF8900001000"},
     "BF2D14A0124F10A0000005591010FFFFFFFF8900001000"),
    ({"op": "listProfileInfo", "profileClass": 0}, "BF2D05A003950100"),
    ({"op": "configureImmediateEnable"}, "A700"),
    # OID 2.999.1 -> 88 37 01 (2*40+999 = 1079 = 0x437 -> 88 37)
    ({"op": "configureImmediateEnable", "defaultSmdpOid": "2.999.1"}, "A705810388 3701"),
])
def test_single_psmo_bytes(op, hexs):
    assert encode_psmo(op) == H(hexs.replace(" ", ""))


def test_eim_configuration_data_variants(keys):
    cert_der = keys["cert"].public_bytes(serialization.Encoding.DER)
    cert_content = tlv.decode(cert_der).value
    # A certificate goes in as eimCertificate [1]: A5 { A1 <certificate content> }.
    out = tlv.decode(encode_eco({"op": "addEim", "eimId": "x", "eimPublicKey": cert_der}))
    assert out.tag == 0xA8
    a5 = out.need(0xA5)
    assert [c.tag for c in a5] == [0xA1]
    assert a5.need(0xA1).value == cert_content
    # A cryptography certificate object is the same thing.
    assert encode_eco({"op": "addEim", "eimId": "x", "eimPublicKey": keys["cert"]}) == out.raw
    # A SubjectPublicKeyInfo DER goes in as eimPublicKey [0], as does the bare point.
    spki = keys["cert"].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    point = pki.public_key_bytes(keys["cert"])
    a = encode_eco({"op": "updateEim", "eimId": "x", "trustedPublicKeyTls": spki})
    b = encode_eco({"op": "updateEim", "eimId": "x", "trustedPublicKeyTls": point})
    assert a == b
    assert a == tlv.enc(0xAA, H("800178"), tlv.enc(0xA6, tlv.encode(0xA0, tlv.decode(spki).value)))
    # updateEim needs no key; eimIdType by number, euiccCiPKId as hex, all protocols.
    assert encode_eco({"op": "updateEim", "eimId": "x", "eimIdType": 1, "euiccCiPKId": "F54172BD",
                       "eimSupportedProtocol": ["eimProprietary"]}) == H(
        "AA10" "800178" "820101" "87020308" "8804F54172BD")


@pytest.mark.parametrize("kwargs,words", [
    ({"ops": []}, "non-empty list"),
    ({"ops": {"op": "getRAT"}}, "non-empty list"),
    ({"ops": [{"op": "getRAT"}, {"op": "listEim"}]}, "PSMOs or eCOs, not both"),
    ({"ops": [{"op": "enable", "iccid": "8944"}]}, "enable: iccid must be 18..20 decimal digits"),
    ({"ops": [{"op": "enable", "iccid": "89445000001234567X90"}]}, "decimal digits"),
    ({"ops": [{"op": "enable"}]}, "enable: iccid is required"),
    ({"ops": [{"op": "enable", "iccid": ICCID20, "rollbak": True}]}, "unknown field(s) rollbak"),
    ({"ops": [{"op": "enable", "iccid": ICCID20, "rollback": "yes"}]}, "must be true or false"),
    ({"ops": [{"op": "switch"}]}, "unknown operation 'switch'"),
    ({"ops": ["enable"]}, "dict with an 'op' key"),
    ({"ops": [{"op": "listProfileInfo", "iccid": ICCID20, "profileClass": 2}]},
     "one search criterion at most"),
    ({"ops": [{"op": "listProfileInfo", "profileClass": "gold"}]}, "profileClass must be one of"),
    ({"ops": [{"op": "setDefaultDpAddress"}]}, "defaultDpAddress is required"),
    ({"ops": [{"op": "configureImmediateEnable", "defaultSmdpOid": "x.y"}]}, "dotted OID"),
    ({"ops": [{"op": "addEim", "eimId": "x"}]}, "addEim: eimPublicKey is required"),
    ({"ops": [{"op": "addEim", "eimId": "x", "eimPublicKey": b"\x04" * 10}]},
     "eimPublicKey must be 65..8192 bytes"),
    ({"ops": [{"op": "addEim", "eimId": "x", "eimPublicKey": b"\x05" + b"\x00" * 64}]},
     "must be a 65-byte point"),
    ({"ops": [{"op": "addEim", "eimId": "", "eimPublicKey": POINT}]}, "eimId must be text of 1..128"),
    ({"ops": [{"op": "updateEim", "eimId": "x", "eimIdType": "url"}]}, "eimIdType must be one of"),
    ({"ops": [{"op": "updateEim", "eimId": "x", "eimSupportedProtocol": "eimRetrieveHttps"}]},
     "eimSupportedProtocol must be a list"),
    ({"ops": [{"op": "deleteEim"}]}, "deleteEim: eimId is required"),
    ({"ops": [{"op": "getRAT"}] * 65}, "at most 64 operations"),
    ({"eim_id": "x" * 129}, "eimId must be text of 1..128"),
    ({"eid": "8904903212345123451234567890123"}, "EID must be 32 hex digits"),
    ({"counter": -1}, "counterValue must be an integer 0.."),
    ({"counter": True}, "counterValue must be an integer"),
    ({"transaction_id": b""}, "eimTransactionId must be 1..16 bytes"),
    ({"transaction_id": "zz"}, "eimTransactionId must be hex"),
    ({"version": "2.0"}, "version must be one of 1.0/1.1/1.2"),
    ({"association_token": -3}, "associationToken must be an integer"),
])
def test_validation_errors(keys, kwargs, words):
    args = {"eim_id": EIM_ID, "eid_hex": EID, "counter": 1, "ops": [{"op": "getRAT"}],
            "private_key": keys["key"]}
    if "eid" in kwargs:
        kwargs = dict(kwargs, eid_hex=kwargs.pop("eid"))
    args.update(kwargs)
    with pytest.raises(ValueError) as e:
        build_euicc_package_request(**args)
    assert words in str(e.value)


def test_signed_part_is_deterministic():
    a = encode_euicc_package_signed(EIM_ID, EID, 5, ECOS)
    assert a == encode_euicc_package_signed(EIM_ID, EID.lower(), 5, ECOS) == H(ECO_SIGNED)


# ---- command line ---------------------------------------------------------------


def test_cli_enable_prints_hex(keys, capsys):
    rc = signer_main(["--key", keys["paths"]["eim.key"], "--eim-id", EIM_ID, "--eid", EID,
                      "--counter", "5", "--token", "7", "enable", ICCID20, "--rollback"])
    assert rc == 0
    req = H(capsys.readouterr().out.strip())
    signed, sig = split(req)
    assert signed == H("3034" + HDR + "A010" + "A30E5A0A984405000021436587090500")
    assert pki.verify(keys["cert"], H("3034" + HDR + "A010A30E5A0A984405000021436587090500840107"),
                      sig)


def test_cli_add_eim_with_cert_file_to_out_file(keys, tmp_path):
    out = tmp_path / "pkg.der"
    rc = signer_main(["--key", keys["paths"]["eim.key"], "--eim-id", EIM_ID, "--eid", EID,
                      "--counter", "6", "--out", str(out), "addEim", "eim2",
                      "--fqdn", "eim2.example", "--eim-cert", keys["paths"]["eim.crt"],
                      "--protocols", "eimRetrieveHttps,eimRetrieveCoaps"])
    assert rc == 0
    signed, sig = split(out.read_bytes())
    add = tlv.decode(signed).need(0xA1).need(0xA8)
    assert add.need(0x80).as_str() == "eim2"
    assert add.need(0x87).value == H("06C0")
    cert = x509.load_der_x509_certificate(tlv.encode(0x30, add.need(0xA5).need(0xA1).value))
    assert cert == keys["cert"]
    assert pki.verify(keys["cert"], pki.eim_signed_bytes(signed, None), sig)


def test_cli_ops_json(keys, tmp_path, capsys):
    ops = tmp_path / "ops.json"
    ops.write_text(json.dumps([{"op": "disable", "iccid": ICCID19}, {"op": "getRAT"}]))
    rc = signer_main(["--key", keys["paths"]["eim.key"], "--eim-id", EIM_ID, "--eid", EID,
                      "--counter", "5", "--transaction-id", "01AB", "--ops-json", str(ops)])
    assert rc == 0
    signed, _ = split(H(capsys.readouterr().out.strip()))
    assert signed == H("3038" + HDR + "820201AB" + "A010"
                       + "A40C5A0A984405000021436587F9" + "A600")


def test_cli_bad_input_exits_2_with_message(keys, capsys):
    rc = signer_main(["--key", keys["paths"]["eim.key"], "--eim-id", EIM_ID, "--eid", EID,
                      "--counter", "5", "enable", "12345"])
    assert rc == 2
    assert "enable: iccid must be 18..20 decimal digits, got '12345'" in capsys.readouterr().err
    rc = signer_main(["--key", "/nonexistent/eim.key", "--eim-id", EIM_ID, "--eid", EID,
                      "--counter", "5", "getRAT"])
    assert rc == 2
    assert "/nonexistent/eim.key" in capsys.readouterr().err
