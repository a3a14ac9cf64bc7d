"""Both sides against byte strings written by hand from the ASN.1 modules.

Each exchange below is written out from SGP32Definitions (SGP.32 v1.2) and RSPDefinitions
(SGP.22 v2.5) with the derivation in comments, then checked three ways: the IPA
(ipa_core.es10 over IsdrSession) must send exactly the request bytes, the virtual eUICC
(ipa_host.sim.euicc.euicc) must answer exactly the response bytes, and the IPA must decode those
bytes to the values a person reads off the comments. The eUICC Package is also built by
the eIM-side signer (ipa_host.sim.eim.signer), which must produce the hand-written
euiccPackageSigned.

Tagging rules used (X.680 AUTOMATIC TAGS): a SEQUENCE / CHOICE whose components carry no
written tag gets [0], [1], ... in order; implicit, except that an automatic tag on a
CHOICE component is explicit (the CHOICE keeps its own alternative tag inside). As soon
as one component has a written tag, the untagged ones keep their universal tags. A
written tag on a component whose type is itself tagged ([45] CHOICE, [81] SEQUENCE)
replaces that tag (implicit).

What cannot be written by hand (ECDSA signatures, which are randomised; certificates and
the CI key identifier of the test PKI, which are generated per run) is spliced in with
`L()` below and checked separately (signatures verified, certificates compared).
"""

import os

import pytest

from euicc_fixtures import ICCID_1, ICCID_2, ICCID_FALLBACK, eim_key, make_euicc
from ipa_core import es10, tlv, version
from ipa_core.apdu import IsdrSession
from ipa_host.sim import pki
from ipa_host.sim.eim import signer

EID = "89049032123451234512345678901235"  # the test PKI's EID (eUICC certificate serialNumber)
TXID = "0A0B0C0D"
# SubjectPublicKeyInfo of the P-256 base point G (a valid public key anybody can write down):
#   30 59 { 30 13 { 06 07 id-ecPublicKey 1.2.840.10045.2.1, 06 08 prime256v1 1.2.840.10045.3.1.7 }
#           03 42 00 04 Gx Gy }
GX = "6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296"
GY = "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5"
SPKI_CONTENT = "3013 06072A8648CE3D0201 06082A8648CE3D030107" "034200 04" + GX + GY  # 89 bytes
SPKI = "3059" + SPKI_CONTENT


def H(text):
    return bytes.fromhex("".join(text.split()))


def L(n):
    """DER length octets of n (for the spliced parts whose size is only known at run time)."""
    if n < 0x80:
        return "%02X" % n
    if n < 0x100:
        return "81%02X" % n
    return "82%04X" % n


class Tap:
    """An ES10 session that records every request the IPA sends and every answer it gets."""

    def __init__(self, session):
        self.session = session
        self.version = session.version
        self.requests = []
        self.responses = []

    def store_data(self, request):
        self.requests.append(bytes(request))
        rsp = self.session.store_data(request)
        self.responses.append(bytes(rsp))
        return rsp

    def last(self):
        return self.requests[-1], self.responses[-1]


@pytest.fixture
def card(tmp_path):
    return make_euicc(tmp_path)


@pytest.fixture
def tap(card):
    s = IsdrSession(card).open()
    yield Tap(s)
    s.close()


# ---- ES10c.GetEID ------------------------------------------------------------------------------

GET_EID_REQUEST = (
    "BF3E 03"          # GetEuiccDataRequest ::= [62] SEQUENCE -> BF3E
    "   5C 01 5A"      # tagList [APPLICATION 28] Octet1 -> 5C, value '5A' (the EID's tag)
)
GET_EID_RESPONSE = (
    "BF3E 12"          # GetEuiccDataResponse ::= [62] SEQUENCE
    "   5A 10" + EID   # eidValue [APPLICATION 26] Octet16 -> 5A
)


def test_get_eid_bytes(card, tap):
    assert es10.get_eid(tap) == EID
    assert tap.last() == (H(GET_EID_REQUEST), H(GET_EID_RESPONSE))


# ---- ES10b.AddInitialEim / GetEimConfigurationData ---------------------------------------------

# EimConfigurationData ::= SEQUENCE: every component has a written tag [0]..[9], so they are
# the context tags 80.. (A5/A6 constructed); eimPublicKeyData [5] is a tagged CHOICE: [5] is
# explicit and the CHOICE's own untagged alternatives get automatic [0] SPKI / [1] Certificate,
# implicit, replacing the SEQUENCE tag 30.
EIM1 = (
    "80 04 65696D31"                            # eimId [0] "eim1"
    "81 0F 65696D2E6578616D706C652E636F6D"      # eimFqdn [1] "eim.example.com"
    "82 01 02"                                  # eimIdType [2] eimIdTypeFqdn(2)
)
EIM1_KEYS = (
    "A5 5B"                                     # eimPublicKeyData [5], explicit: 91 bytes
    "   A0 59" + SPKI_CONTENT +                 # eimPublicKey [0] SubjectPublicKeyInfo
    "87 02 05 A0"                               # eimSupportedProtocol [7] BIT STRING: bits 0, 2
                                                #   (eimRetrieveHttps, eimInjectHttps): 3 bits, 5 unused
)
ADD_INITIAL_EIM_REQUEST = (
    "BF57 81 89"       # AddInitialEimRequest ::= [87] SEQUENCE -> BF57, 137 bytes
    "   A0 81 86"      # eimConfigurationDataList [0] SEQUENCE OF, 134 bytes
    "      30 81 83"   # EimConfigurationData, 131 = 6+17+3+3+3+93+4+2
    + EIM1 +
    "         83 01 05"   # counterValue [3] 5
    "         84 01 FF"   # associationToken [4] -1: the eUICC generates one
    + EIM1_KEYS +
    "         89 00"      # indirectProfileDownload [9] NULL
)
# AddInitialEimResponse ::= [87] CHOICE { addInitialEimOk SEQUENCE OF CHOICE {associationToken
# [4] INTEGER, addOk NULL}, addInitialEimError INTEGER }: untagged alternatives -> [0] / [1].
ADD_INITIAL_EIM_RESPONSE = "BF57 05 A0 03 84 01 01"  # ok: the first token a card generates: 1

# GetEimConfigurationDataRequest ::= [85] SEQUENCE { searchCriteria CHOICE { eimId [0] } OPTIONAL }:
# the only component is untagged -> automatic [0], explicit because it is a CHOICE.
GET_EIM_CONFIG_BY_ID = "BF55 08 A0 06 80 04 65696D31"
GET_EIM_CONFIG_ALL = "BF55 00"
GET_EIM_CONFIG_NONE = "BF55 0A A0 08 80 06 6E6F626F6479"  # eimId "nobody"


def get_eim_config_response(ci_pkid):
    """GetEimConfigurationDataResponse ::= [85] SEQUENCE { eimConfigurationDataList [0] SEQUENCE OF }."""
    assert len(ci_pkid) == 20
    return (
        "BF55 81 9C"   # 156 bytes
        "   A0 81 99"  # eimConfigurationDataList [0], 153 bytes
        "      30 81 96"  # 150 = 6+17+3+3+93+4+22+2; counterValue is never given out
        + EIM1 +
        "         84 01 01"  # associationToken [4] 1, as generated
        + EIM1_KEYS +
        "         88 14" + ci_pkid.hex() +  # euiccCiPKId [8]: defaults to the eUICC's CI
        "         89 00"
    )


def test_add_initial_eim_and_get_eim_configuration_data_bytes(tmp_path):
    card = make_euicc(tmp_path, eim=False)
    s = IsdrSession(card).open()
    tap = Tap(s)
    out = es10.add_initial_eim(tap, [{
        "eimId": "eim1", "eimFqdn": "eim.example.com", "eimIdType": 2, "counterValue": 5,
        "associationToken": -1, "eimPublicKeyData": {"eimPublicKey": H(SPKI)},
        "eimSupportedProtocol": ["eimRetrieveHttps", "eimInjectHttps"],
        "indirectProfileDownload": True}])
    assert out == [{"associationToken": 1}]
    assert tap.last() == (H(ADD_INITIAL_EIM_REQUEST), H(ADD_INITIAL_EIM_RESPONSE))

    ci = pki.ski(card.pki["ci_cert"])
    expected = {"eimId": "eim1", "eimFqdn": "eim.example.com", "eimIdType": 2,
                "associationToken": 1, "eimPublicKeyData": {"eimPublicKey": H(SPKI)},
                "eimSupportedProtocol": ["eimRetrieveHttps", "eimInjectHttps"],
                "euiccCiPKId": ci.hex().upper(), "indirectProfileDownload": True}
    assert es10.get_eim_configuration_data(tap, "eim1") == [expected]
    assert tap.last() == (H(GET_EIM_CONFIG_BY_ID), H(get_eim_config_response(ci)))
    assert es10.get_eim_configuration_data(tap) == [expected]
    assert tap.last() == (H(GET_EIM_CONFIG_ALL), H(get_eim_config_response(ci)))
    assert es10.get_eim_configuration_data(tap, "nobody") == []
    assert tap.last() == (H(GET_EIM_CONFIG_NONE), H("BF55 02 A0 00"))
    s.close()


# ---- ES10c.GetProfilesInfo (pins the ISD-P AID length) ------------------------------------------

# ProfileInfoListRequest ::= [45] SEQUENCE { searchCriteria [0] CHOICE {...} OPTIONAL,
# tagList [APPLICATION 28] OCTET STRING OPTIONAL }: [0] on a CHOICE is explicit.
# ICCID 8949449999999990002 (19 digits, F-padded, nibble-swapped): 98 94 44 99 99 99 99 09 00 F2
ICCID_2_BCD = "98944499999999 0900F2"
GET_PROFILES_INFO_REQUEST = (
    "BF2D 16"
    "   A0 0C 5A 0A" + ICCID_2_BCD +   # searchCriteria [0] { iccid Iccid '5A' }
    "   5C 06 5A 4F 9F70 9F26"         # tagList: iccid, isdpAid, profileState, fallbackAttribute
)
GET_PROFILES_INFO_RESPONSE = (
    "BF2D 26"          # ProfileInfoListResponse ::= [45] CHOICE -> BF2D
    "   A0 24"         # profileInfoListOk SEQUENCE OF: untagged alternative -> automatic [0]
    "      E3 22"      # SGP32-ProfileInfo ::= [PRIVATE 3] SEQUENCE -> E3
    "         5A 0A" + ICCID_2_BCD +                   # iccid Iccid
    "         4F 10 A0000005591010FFFFFFFF8900001100"  # isdpAid [APPLICATION 15]: the
                                                       #   second ISD-P, 16 bytes
    "         9F70 01 00"  # profileState [112] disabled(0)
                           # fallbackAttribute [38] DEFAULT FALSE: left out by DER
)


def test_get_profiles_info_bytes(card, tap):
    assert es10.get_profiles_info(tap, {"iccid": ICCID_2}, [0x5A, 0x4F, 0x9F70, 0x9F26]) == [
        {"iccid": ICCID_2, "isdpAid": "A0000005591010FFFFFFFF8900001100", "profileState": 0,
         "fallbackAttribute": False}]
    assert tap.last() == (H(GET_PROFILES_INFO_REQUEST), H(GET_PROFILES_INFO_RESPONSE))


# ---- ES10b.RetrieveNotificationsList -------------------------------------------------------------

# SGP32-RetrieveNotificationsListRequest ::= [43] SEQUENCE { searchCriteria CHOICE { seqNumber [0]
# INTEGER, profileManagementOperation [1] NotificationEvent, euiccPackageResults [2] NULL }
# OPTIONAL }: the one untagged component -> automatic [0], explicit (CHOICE): A0 { 80 | 81 | 82 }.
RNL_ALL = "BF2B 00"
RNL_BY_SEQ = "BF2B 05 A0 03 80 01 02"          # seqNumber 2
RNL_BY_OP = "BF2B 06 A0 04 81 02 06 40"        # NotificationEvent notificationEnable(1):
                                               #   2 bits, 6 unused, 0100 0000
RNL_RESULTS = "BF2B 04 A0 02 82 00"            # euiccPackageResults NULL
# ICCID 8949449999999990001 -> 98 94 44 99 99 99 99 09 00 F1; ...0003 -> ... 00 F3.
ICCID_1_BCD = "98944499999999 0900F1"
ICCID_FALLBACK_BCD = "98944499999999 0900F3"
SMDP = "736D64702E6578616D706C652E636F6D"  # "smdp.example.com", 16 bytes


def metadata(seq, event_bits, iccid_bcd):
    """NotificationMetadata ::= [47] SEQUENCE { seqNumber [0], profileManagementOperation [1],
    notificationAddress UTF8String (untagged next to tagged ones: universal 0C), iccid Iccid }."""
    return ("BF2F 25"                  # 37 = 3 + 4 + 18 + 12
            "   80 01 %02X" % seq +
            "   81 02 " + event_bits +
            "   0C 10" + SMDP +
            "   5A 0A" + iccid_bcd)


def other_signed_notification(meta, sig, euicc_der, eum_der):
    """OtherSignedNotification ::= SEQUENCE { tbsOtherNotification NotificationMetadata,
    euiccNotificationSignature [APPLICATION 55], euiccCertificate Certificate, eumCertificate
    Certificate }: one written tag, so no automatic tags: BF2F, 5F37, 30, 30."""
    body = meta + "5F37 40" + sig.hex() + euicc_der.hex() + eum_der.hex()
    return "30" + L(len(H(body))) + body


def test_retrieve_notifications_list_bytes(card, tap):
    # ExecuteFallbackMechanism: seq 1 disables ICCID_1, seq 2 enables the Fallback Profile.
    es10.execute_fallback_mechanism(tap, False)
    euicc_der = pki.certificate_der(card.pki["euicc_cert"])
    eum_der = pki.certificate_der(card.pki["eum_cert"])
    m1 = metadata(1, "05 20", ICCID_1_BCD)  # notificationDisable(2): 3 bits, 5 unused, 0010 0000
    m2 = metadata(2, "06 40", ICCID_FALLBACK_BCD)

    def expect(request, metas):
        req, rsp = tap.last()
        assert req == H(request)
        # notificationList: automatic [0], A0. The signatures are the only bytes not written
        # here: take them from where the module puts them (after 5F37 40) and verify them
        # over tbsOtherNotification.
        items = [H(other_signed_notification(m, bytes(64), euicc_der, eum_der)) for m in metas]
        body = b"".join(items)
        lst = H("A0" + L(len(body))) + body
        out = bytearray(H("BF2B" + L(len(lst))) + lst)
        assert len(rsp) == len(out), (len(rsp), len(out))
        pos = len(out) - len(body)
        for meta, item in zip(metas, items):
            head = len(item) - (len(H(meta)) + 67 + len(euicc_der) + len(eum_der))
            at = pos + head + len(H(meta)) + 3
            sig = rsp[at:at + 64]
            assert pki.verify(card.pki["euicc_cert"], H(meta), sig)
            out[at:at + 64] = sig
            pos += len(item)
        assert rsp == bytes(out)

    got = es10.retrieve_notifications_list(tap)
    expect(RNL_ALL, [m1, m2])
    assert [(n["seqNumber"], n["profileManagementOperation"], n["iccid"]) for n in got] == [
        (1, ["notificationDisable"], ICCID_1), (2, ["notificationEnable"], ICCID_FALLBACK)]
    assert [n["raw"] for n in got] == list(_items(tap.last()[1]))
    es10.retrieve_notifications_list(tap, seq_number=2)
    expect(RNL_BY_SEQ, [m2])
    es10.retrieve_notifications_list(tap, profile_management_operation="notificationEnable")
    expect(RNL_BY_OP, [m2])
    assert es10.retrieve_notifications_list(tap, euicc_package_results=True) == []
    # SGP32-RetrieveNotificationsListResponse ::= [43] CHOICE { notificationList [0],
    # notificationsListResultError [1], euiccPackageResultList [2] }: an empty list of results.
    assert tap.last() == (H(RNL_RESULTS), H("BF2B 02 A2 00"))


def _items(rsp):
    return [k.raw for k in tlv.decode(rsp).need(0xA0)]


# ---- ES10b.LoadEuiccPackage: EuiccPackageRequest / EuiccPackageResult ---------------------------

EIM_ID_HEX = "746573742D65696D"  # "test-eim"
# EuiccPackageSigned ::= SEQUENCE { eimId [0], eidValue [APPLICATION 26], counterValue [1],
# eimTransactionId [2] OPTIONAL, euiccPackage EuiccPackage }: written tags, so the untagged
# euiccPackage (a CHOICE) adds no tag of its own; EuiccPackage ::= CHOICE { psmoList, ecoList }
# has no written tags -> [0] / [1], implicit on the SEQUENCE OF: A0 / A1.
PACKAGE_SIGNED = (
    "30 39"                           # 57 = 10 + 18 + 3 + 6 + 20
    "   80 08" + EIM_ID_HEX +         # eimId [0] "test-eim"
    "   5A 10" + EID +                # eidValue [APPLICATION 26]
    "   81 01 01"                     # counterValue [1] 1
    "   82 04" + TXID +               # eimTransactionId [2]
    "   A0 12"                        # psmoList [0] SEQUENCE OF Psmo
    "      A3 0E"                     # enable [3] SEQUENCE { iccid [APPLICATION 26] Iccid,
    "         5A 0A" + ICCID_2_BCD +  #   rollbackFlag NULL OPTIONAL }: iccid has a written tag,
    "         05 00"                  #   so rollbackFlag keeps the universal NULL 05
    "      A6 00"                     # getRAT [6] SEQUENCE {}
)


def package_request(sig):
    """EuiccPackageRequest ::= [81] SEQUENCE { euiccPackageSigned, eimSignature [APPLICATION 55] }."""
    return "BF51 7E" + PACKAGE_SIGNED + "5F37 40" + sig.hex()  # 126 = 59 + 67


# The eIM signs euiccPackageSigned followed by the associationToken of its eIM Configuration
# Data (SGP.32 v1.1+): test-eim has token 1 -> 84 01 01. The eUICC signs its results the same way.
TOKEN_1 = "84 01 01"

# EuiccPackageResult ::= [81] CHOICE { euiccPackageResultSigned, euiccPackageErrorSigned,
# euiccPackageErrorUnsigned }: untagged alternatives -> [0] / [1] / [2] (A0 / A1 / A2), the
# [81] is on the CHOICE itself, hence explicit: BF51 { A0 ... }.
RESULT_DATA = (
    "30 2F"                        # EuiccPackageResultDataSigned, 47 = 10 + 3 + 6 + 3 + 25
    "   80 08" + EIM_ID_HEX +      # eimId [0]
    "   81 01 01"                  # counterValue [1]
    "   82 04" + TXID +            # eimTransactionId [2]
    "   83 01 03"                  # seqNumber [3] 3 (1 = disable ICCID_1, 2 = enable ICCID_2)
    "   30 17"                     # euiccResult SEQUENCE OF EuiccResultData (untagged: 30)
    "      83 01 00"               # enableResult [3] ok(0)
    "      A6 12"                  # getRATResult [6] RulesAuthorisationTable
    "         30 10"               # ProfilePolicyAuthorisationRule: no written tags ->
    "            80 02 05 60"      #   pprIds [0]: ppr1(1), ppr2(2): 3 bits, 5 unused, 0110 0000
    "            A1 07 30 05 80 03 EEEEEE"  # allowedOperators [1] { OperatorId { mccMnc [0] } }
    "            82 01 00"         #   pprFlags [2]: no bit set
)


def package_result(sig):
    return "BF51 76 A0 74" + RESULT_DATA + "5F37 40" + sig.hex()  # 116 = 49 + 67


# EuiccPackageErrorDataSigned: eimId [0], counterValue [1], eimTransactionId [2],
# euiccPackageErrorCode INTEGER (untagged next to tagged ones: universal 02).
REPLAY_DATA = "30 16 80 08" + EIM_ID_HEX + "81 01 01 82 04" + TXID + "02 01 04"  # replayError(4)


def package_error_signed(sig):
    return "BF51 5D A1 5B" + REPLAY_DATA + "5F37 40" + sig.hex()  # 91 = 24 + 67


# EuiccPackageErrorUnsigned: eimId [0], eimTransactionId [2], associationToken [4].
PACKAGE_ERROR_UNSIGNED = "BF51 15 A2 13 80 08" + EIM_ID_HEX + "82 04" + TXID + TOKEN_1


def test_euicc_package_request_and_result_bytes(card, tap):
    key = eim_key(card)
    eim_cert = pki.load_certificate(os.path.join(card.pki["folder"], "eim.crt"))
    request = signer.build_euicc_package_request(
        "test-eim", EID, 1, [{"op": "enable", "iccid": ICCID_2, "rollback": True},
                             {"op": "getRAT"}], key, association_token=1,
        transaction_id=H(TXID))
    # The eIM side produced the hand-written euiccPackageSigned and signed it with the token.
    sig = request[-64:]
    assert request == H(package_request(sig))
    assert version.signed_bytes(H(PACKAGE_SIGNED), 1) == H(PACKAGE_SIGNED + TOKEN_1)
    assert pki.eim_signed_bytes(H(PACKAGE_SIGNED), 1) == H(PACKAGE_SIGNED + TOKEN_1)
    assert pki.verify(eim_cert, H(PACKAGE_SIGNED + TOKEN_1), sig)

    res = es10.load_euicc_package(tap, request)
    req, rsp = tap.last()
    assert req == request  # forwarded verbatim by the IPA
    epr_sig = rsp[-64:]
    assert rsp == H(package_result(epr_sig))
    assert pki.verify(card.pki["euicc_cert"], H(RESULT_DATA + TOKEN_1), epr_sig)
    assert res == {
        "raw": rsp, "kind": "euiccPackageResultSigned", "signedData": H(RESULT_DATA),
        "eimId": "test-eim", "counterValue": 1, "eimTransactionId": H(TXID), "seqNumber": 3,
        "euiccResult": [{"enableResult": 0},
                        {"getRATResult": [{"pprIds": ["ppr1", "ppr2"],
                                           "allowedOperators": [{"mccMnc": "EEEEEE"}],
                                           "pprFlags": []}]}],
        "euiccSignEPR": epr_sig}
    # The result waits for the eIM: RetrieveNotificationsList euiccPackageResults gives it
    # back in euiccPackageResultList [2], byte for byte.
    es10.retrieve_notifications_list(tap, euicc_package_results=True)
    assert tap.last() == (H(RNL_RESULTS), H("BF2B 7B A2 79") + rsp)  # 121-byte result

    # The same package again: replayError, signed.
    res = es10.load_euicc_package(tap, request)
    rsp = tap.last()[1]
    epe_sig = rsp[-64:]
    assert rsp == H(package_error_signed(epe_sig))
    assert pki.verify(card.pki["euicc_cert"], H(REPLAY_DATA + TOKEN_1), epe_sig)
    assert (res["kind"], res["euiccPackageErrorCode"], res["error"]) == (
        "euiccPackageErrorSigned", 4, "replayError")

    # A signature that does not verify: the unsigned error, nothing signed by the eUICC.
    bad = H(package_request(bytes(64)))
    res = es10.load_euicc_package(tap, bad)
    assert tap.last() == (bad, H(PACKAGE_ERROR_UNSIGNED))
    assert res == {"raw": H(PACKAGE_ERROR_UNSIGNED), "kind": "euiccPackageErrorUnsigned",
                   "eimId": "test-eim", "eimTransactionId": H(TXID), "associationToken": 1,
                   "error": "euiccPackageErrorUnsigned"}


# ---- ProfileRollback ------------------------------------------------------------------------------

# ProfileRollbackRequest ::= [88] SEQUENCE { refreshFlag BOOLEAN } -> one untagged component: [0].
# ProfileRollbackResponse ::= [88] SEQUENCE { cmdResult INTEGER, eUICCPackageResult [81]
# EuiccPackageResult OPTIONAL }: the written [81] keeps cmdResult universal (02), and [81] on the
# tagged [81] CHOICE replaces its tag: BF51 { A0 ... }, not BF51 { BF51 { A0 ... } }.
ROLLBACK_DATA = (
    "30 1B 80 08" + EIM_ID_HEX + "81 01 01 82 04" + TXID +  # 27 = 10 + 3 + 6 + 3 + 5
    "83 01 06"        # seqNumber 6: 4 = disable ICCID_2, 5 = enable ICCID_1 (rollback)
    "30 03 8C 01 00"  # euiccResult { rollbackResult [12] ok(0) }
)


def test_profile_rollback_bytes(card, tap):
    request = signer.build_euicc_package_request(
        "test-eim", EID, 1, [{"op": "enable", "iccid": ICCID_2, "rollback": True},
                             {"op": "getRAT"}], eim_key(card), association_token=1,
        transaction_id=H(TXID))
    es10.load_euicc_package(tap, request)
    res = es10.profile_rollback(tap, True)
    req, rsp = tap.last()
    assert req == H("BF58 03 80 01 FF")  # refreshFlag TRUE
    sig = rsp[-64:]
    assert rsp == H("BF58 68 02 01 00"   # cmdResult ok(0), universal INTEGER
                    "   BF51 62 A0 60" + ROLLBACK_DATA + "5F37 40" + sig.hex())  # 96 = 29 + 67
    assert pki.verify(card.pki["euicc_cert"], H(ROLLBACK_DATA + TOKEN_1), sig)
    assert res["euiccResult"] == [{"rollbackResult": 0}] and res["seqNumber"] == 6


# ---- the eIM-side signer: addEim with associationToken -1 -------------------------------------------

# Eco ::= CHOICE { addEim [8] EimConfigurationData, ... }: [8] replaces the SEQUENCE tag: A8.
ADD_EIM_ECO = (
    "A8 69"                 # 105 = 6 + 3 + 3 + 93
    "   80 04 65696D32"     # eimId "eim2"
    "   83 01 00"           # counterValue 0
    "   84 01 FF"           # associationToken -1: the eUICC generates the token
    "   A5 5B A0 59" + SPKI_CONTENT
)


def test_signer_add_eim_with_association_token_minus_one(card, tap):
    op = {"op": "addEim", "eimId": "eim2", "counterValue": 0, "associationToken": -1,
          "eimPublicKey": H("04" + GX + GY)}
    assert signer.encode_eco(op) == H(ADD_EIM_ECO)
    request = signer.build_euicc_package_request("test-eim", EID, 1, [op], eim_key(card),
                                                 association_token=1, transaction_id=H(TXID))
    signed = ("30 81 92"  # 146 = 10 + 18 + 3 + 6 + 109
              "   80 08" + EIM_ID_HEX + "5A 10" + EID + "81 01 01 82 04" + TXID +
              "   A1 6B" + ADD_EIM_ECO)  # ecoList [1]
    assert tlv.decode(request).children()[0].raw == H(signed)
    res = es10.load_euicc_package(tap, request)
    # addEimResult [8] AddEimResult, a CHOICE: explicit A8 { associationToken [4] } - token 2,
    # the next after test-eim's 1.
    assert H("30 05 A8 03 84 01 02") in tap.last()[1]
    assert res["euiccResult"] == [{"addEimResult": {"associationToken": 2}}]
    # Only addEim asks for a generated token; elsewhere -1 is refused by the signer.
    for bad in ({"op": "updateEim", "eimId": "eim2", "associationToken": -1},
                {"op": "addEim", "eimId": "eim2", "associationToken": -2,
                 "eimPublicKey": H("04" + GX + GY)}):
        with pytest.raises(ValueError, match="associationToken"):
            signer.encode_eco(bad)


def test_signer_cli_accepts_association_token_minus_one(card, capsys):
    from ipa_host.sim.eim.signer import signer_main

    key_path = os.path.join(card.pki["folder"], "eim.key")
    cert_path = os.path.join(card.pki["folder"], "eim.crt")
    rc = signer_main(["--key", key_path, "--eim-id", "test-eim", "--eid", EID, "--counter", "1",
                      "--token", "1", "addEim", "eim2", "--counter-value", "0",
                      "--association-token", "-1", "--eim-cert", cert_path])
    assert rc == 0
    out = H(capsys.readouterr().out.strip())
    assert H("83 01 00 84 01 FF A5") in out
