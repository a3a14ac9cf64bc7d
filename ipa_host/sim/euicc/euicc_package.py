"""ES10b.LoadEuiccPackage and ES10b.ProfileRollback of the virtual eUICC (SGP.32 5.9.1, 5.9.16).

Request (SGP32Definitions, AUTOMATIC TAGS applied):

    EuiccPackageRequest BF51 {
      30 euiccPackageSigned { 80 eimId, 5A eidValue, 81 counterValue, [82 eimTransactionId],
                              A0 psmoList { Psmo.. } | A1 ecoList { Eco.. } },
      5F37 eimSignature }

    Psmo: A3 enable {5A iccid, [05 00 rollbackFlag]}, A4 disable {5A}, A5 delete {5A},
          BF2D listProfileInfo, A6 getRAT {}, A7 configureImmediateEnable {[80] [81] [82]},
          A8 setFallbackAttribute {5A}, A9 unsetFallbackAttribute {}, BF65 setDefaultDpAddress {80}
    Eco:  A8 addEim EimConfigurationData, A9 deleteEim {80}, AA updateEim, AB listEim {}

Answer EuiccPackageResult, a [81] CHOICE whose alternatives get [0]..[2]:

    BF51 { A0 { 30 {80 eimId, 81 counter, [82 txid], 83 seqNumber, 30 {EuiccResultData..}},
                5F37 euiccSignEPR } }                       euiccPackageResultSigned
    BF51 { A1 { 30 {80 eimId, 81 counter, [82 txid], 02 errorCode}, 5F37 euiccSignEPE } }
    BF51 { A2 { 80 eimId, [82 txid], [84 associationToken] } }  euiccPackageErrorUnsigned

The eIM signature is checked over pki.eim_signed_bytes(euiccPackageSigned as
received, associationToken); the eUICC signs its results the same way. An
unknown eIM or a signature that does not verify gets the unsigned error (the
eUICC does not sign answers to packages it cannot authenticate); invalidEid,
counterValueOutOfRange, replayError, sizeOverflow and ecallActive get the
signed error. PSMOs / eCOs run in order and stop at the first failure.
"""

from ipa_core import tlv
from ipa_core.errors import TlvError

from ipa_host.sim.euicc import euicc_codec as codec
from ipa_host.sim.euicc import euicc_es10 as es10
from ipa_host.sim.euicc import euicc_profiles as profiles
from ipa_host.sim import pki

MAX_PACKAGE = 0x2000  # bytes of one EuiccPackageRequest; more is sizeOverflow

# EuiccPackageErrorCode
INVALID_EID, REPLAY_ERROR, COUNTER_OUT_OF_RANGE, SIZE_OVERFLOW, ECALL_ACTIVE = 3, 4, 6, 15, 104
# processingTerminated
UNKNOWN_OR_DAMAGED_COMMAND = 2


def _int(tag, n):
    return tlv.encode(tag, tlv.int_encode(n))


def load_euicc_package(card, req):
    """ES10b.LoadEuiccPackage: verify, check EID and counter, run the package, sign the result."""
    signed = req.find(0x30)
    if signed is None:
        raise TlvError(req.vstart, "euiccPackageSigned (30) in BF51", "it missing")
    eim_id_t = signed.need(0x80, "eimId")
    eim_id = eim_id_t.as_str()
    if not 1 <= len(eim_id) <= 128:
        raise TlvError(eim_id_t.vstart, "an eimId of 1..128 characters", "%d" % len(eim_id))
    txid_t = signed.find(0x82)
    txid = txid_t.value if txid_t is not None else None
    sig = req.find(0x5F37)
    st = card.state
    eim = st.find_eim(eim_id)
    key = codec.eim_public_key(eim["public_key_data"]) if eim else None
    if (key is None or sig is None or not pki.verify(
            key, pki.eim_signed_bytes(signed.raw, eim["token"], card.version), sig.value)):
        return _error_unsigned(eim_id, txid, eim, card.version)

    counter = signed.need(0x81, "counterValue").as_int()
    eid = signed.find(0x5A)
    if eid is None or eid.value != card.eid_bytes:
        return _error_signed(card, eim, counter, txid, INVALID_EID)
    if not 0 <= counter <= codec.MAX_COUNTER:
        return _error_signed(card, eim, counter, txid, COUNTER_OUT_OF_RANGE)
    if counter <= eim["counter"]:
        return _error_signed(card, eim, counter, txid, REPLAY_ERROR)
    if len(req.raw) > MAX_PACKAGE:
        return _error_signed(card, eim, counter, txid, SIZE_OVERFLOW)
    if st.ecall_active():
        return _error_signed(card, eim, counter, txid, ECALL_ACTIVE)

    # Accepted: the counter moves before anything runs (a replay can never run twice)
    # and any earlier rollback authorisation ends.
    eim["counter"] = counter
    st.data["rollback"] = None
    run = {"enable": False, "disable": False, "disabled": None, "rollback_to": None,
           "delete_eims": []}
    results = []
    psmos, ecos = signed.find(0xA0), signed.find(0xA1)
    if psmos is not None:
        _run(card, run, psmos, _psmo, results)
    elif ecos is not None:
        _run(card, run, ecos, _eco, results)
    else:
        results.append(_int(0x02, UNKNOWN_OR_DAMAGED_COMMAND))

    token = eim["token"]
    epr, seq = sign_result(card, eim_id, token, counter, txid, results)
    if run["rollback_to"] is not None:
        st.data["rollback"] = {"iccid": run["rollback_to"], "eim_id": eim_id, "counter": counter,
                               "txid": txid.hex() if txid is not None else None, "seq": seq}
    for gone in run["delete_eims"]:  # after signing: an eIM may delete itself
        if gone in st.eims:
            st.eims.remove(gone)
    return epr


def _run(card, run, ops, handler, results):
    try:
        items = ops.children()
    except TlvError:
        results.append(_int(0x02, UNKNOWN_OR_DAMAGED_COMMAND))
        return
    for op in items:
        try:
            data, ok = handler(card, run, op)
        except TlvError:
            data, ok = _int(0x02, UNKNOWN_OR_DAMAGED_COMMAND), False
        results.append(data)
        if not ok:
            break  # SGP.32 3.3.1: processing stops at the first failure


def sign_result(card, eim_id, token, counter, txid, results):
    """EuiccPackageResultSigned with a new seqNumber, stored until removed. -> (BF51, seq)."""
    seq = card.state.next_seq()
    data = tlv.enc(0x30, tlv.encode(0x80, eim_id.encode("utf-8")), _int(0x81, counter),
                   tlv.encode(0x82, txid) if txid is not None else None,
                   _int(0x83, seq), tlv.encode(0x30, results))
    sig = card.sign(pki.eim_signed_bytes(data, token, card.version))
    epr = tlv.encode(0xBF51, tlv.encode(0xA0, data + tlv.encode(0x5F37, sig)))
    card.state.add_pending(seq, "result", epr, eim_id=eim_id)
    return epr, seq


def _error_signed(card, eim, counter, txid, code):
    """EuiccPackageErrorSigned: BF51 { A1 { 30 {80, 81, [82], 02 code}, 5F37 } } (not stored)."""
    data = tlv.enc(0x30, tlv.encode(0x80, eim["eim_id"].encode("utf-8")), _int(0x81, counter),
                   tlv.encode(0x82, txid) if txid is not None else None, _int(0x02, code))
    sig = card.sign(pki.eim_signed_bytes(data, eim["token"], card.version))
    return tlv.encode(0xBF51, tlv.encode(0xA1, data + tlv.encode(0x5F37, sig)))


def _error_unsigned(eim_id, txid, eim, version="1.2"):
    """EuiccPackageErrorUnsigned: BF51 { A2 { 80 eimId, [82 txid], [84 associationToken] } }
    (SGP.32 v1.0's has no eimTransactionId)."""
    token = eim["token"] if eim else None
    if version == "1.0":
        txid = None
    return tlv.enc(0xBF51, tlv.enc(
        0xA2, tlv.encode(0x80, eim_id.encode("utf-8")),
        tlv.encode(0x82, txid) if txid is not None else None,
        _int(0x84, token) if token is not None else None))


# ---- PSMOs (SGP.32 3.4) ---------------------------------------------------------------------


def _iccid(op):
    return codec.iccid_digits(op.need(0x5A, "iccid").value)


# What SGP.32 v1.0's Psmo CHOICE lacks (it ends at configureAutoEnable [7]): unknown there.
V1_2_PSMOS = (0xA8, 0xA9, 0xBF65)


def _psmo(card, run, op):
    """One PSMO -> (EuiccResultData bytes, success)."""
    st = card.state
    t = op.tag
    if card.version == "1.0" and t in V1_2_PSMOS:
        return _int(0x02, UNKNOWN_OR_DAMAGED_COMMAND), False
    if t == 0xA3:  # enable (3.4.1)
        p = st.find_profile(_iccid(op))
        rollback = op.find(0x05) is not None
        cur = st.enabled_profile()
        back = cur["iccid"] if cur else run["disabled"]
        if run["enable"]:
            code = 127
        elif p is None:
            code = 1
        elif p["state"] == "enabled":
            code = 2
        elif p.get("emergency"):
            code = 3  # the Emergency Profile is enabled only by EnableEmergencyProfile
        elif rollback and back is None:
            code = 20  # rollbackNotAvailable: nothing to roll back to
        else:
            code = 0
            run["enable"] = True
            profiles.enable(card, p)
            st.data["fallback_previous"] = None
            if rollback:
                run["rollback_to"] = back
        return _int(0x83, code), code == 0
    if t == 0xA4:  # disable (3.4.2)
        p = st.find_profile(_iccid(op))
        if run["enable"] or run["disable"]:
            code = 127
        elif p is None:
            code = 1
        elif p["state"] != "enabled":
            code = 2
        elif "ppr1" in p["ppr"]:
            code = 3
        else:
            code = 0
            run["disable"] = True
            run["disabled"] = p["iccid"]
            profiles.disable(card, p)
            if p.get("fallback"):
                st.data["fallback_previous"] = None
        return _int(0x84, code), code == 0
    if t == 0xA5:  # delete (3.4.3)
        p = st.find_profile(_iccid(op))
        if p is None:
            code = 1
        elif p["state"] == "enabled":
            code = 2
        elif "ppr2" in p["ppr"]:
            code = 3
        elif run["rollback_to"] == p["iccid"]:
            code = 20  # it is the profile a rollback would return to
        elif st.data["fallback_previous"] == p["iccid"]:
            code = 21  # returnFallbackProfile: the way back from the Fallback Profile
        else:
            code = 0
            profiles.delete(card, p)
        return _int(0x85, code), code == 0
    if t == 0xBF2D:  # listProfileInfo: [45] replaces ProfileInfoListResponse's own [45]
        resp = profiles.profile_info_list(card, op, codec.PSMO_DEFAULT_TAGS)
        return resp, tlv.decode(resp).find(0xA0) is not None
    if t == 0xA6:  # getRAT: [6] RulesAuthorisationTable
        return tlv.encode(0xA6, es10.rat_rules()), True
    if t == 0xA7:  # configureImmediateEnable (3.4.4)
        st.data["immediate_enable"] = es10.immediate_config(op)
        return _int(0x87, 0), True
    if t == 0xA8:  # setFallbackAttribute (3.4.6)
        p = st.find_profile(_iccid(op))
        fb = st.fallback_profile()
        if p is None:
            code = 1
        elif p is fb:
            code = 0
        elif not p.get("fallback_allowed", True):
            code = 2
        elif fb is not None and fb["state"] == "enabled":
            code = 3
        else:
            code = 0
            if fb is not None:
                fb["fallback"] = False
            p["fallback"] = True
        return _int(0x8D, code), code == 0
    if t == 0xA9:  # unsetFallbackAttribute (3.4.7)
        fb = st.fallback_profile()
        if fb is None:
            code = 2
        elif fb["state"] == "enabled":
            code = 3
        else:
            code = 0
            fb["fallback"] = False
        return _int(0x8E, code), code == 0
    if t == 0xBF65:  # setDefaultDpAddress
        addr = op.need(0x80, "defaultDpAddress").as_str()
        st.data["default_dp_address"] = addr or None
        return tlv.encode(0xBF65, _int(0x80, 0)), True
    return _int(0x02, UNKNOWN_OR_DAMAGED_COMMAND), False


# ---- eCOs (SGP.32 3.5) ----------------------------------------------------------------------


def _eco(card, run, op):
    """One eCO -> (EuiccResultData bytes, success)."""
    st = card.state
    t = op.tag
    if t in (0xA8, 0xAA) and card.version == "1.0" and op.find(0x89) is not None:
        # indirectProfileDownload [9] is not in v1.0's EimConfigurationData
        return _int(0x02, UNKNOWN_OR_DAMAGED_COMMAND), False
    if t == 0xA8:  # addEim -> addEimResult [8] CHOICE {84 associationToken | 02 code}
        cfg = codec.parse_eim_config(op)
        code = es10.check_eim_config(card, cfg, adding=True)
        if code == 0 and len(st.eims) >= es10.MAX_EIMS:
            code = 1
        if code:
            return tlv.encode(0xA8, _int(0x02, code)), False
        token = es10.store_new_eim(card, cfg)
        if token is not None:
            return tlv.encode(0xA8, _int(0x84, token)), True
        return tlv.encode(0xA8, _int(0x02, 0)), True
    if t == 0xA9:  # deleteEim -> 89 (lastEimDeleted(2) when none is left)
        e = st.find_eim(op.need(0x80, "eimId").as_str())
        if e is None:
            return _int(0x89, 1), False
        if e not in run["delete_eims"]:
            run["delete_eims"].append(e)
        code = 2 if len(st.eims) == len(run["delete_eims"]) else 0
        return _int(0x89, code), True
    if t == 0xAA:  # updateEim -> 8A
        code = _update_eim(card, op)
        return _int(0x8A, code), code == 0
    if t == 0xAB:  # listEim -> AB { A0 { 30 {80 eimId, [82 eimIdType]}.. } } (v1.0: [4] 84)
        id_tag = 0x84 if card.version == "1.0" else 0x82
        items = [tlv.enc(0x30, tlv.encode(0x80, e["eim_id"].encode("utf-8")),
                         _int(id_tag, e["id_type"]) if e.get("id_type") in (1, 2) else None)
                 for e in st.eims]
        return tlv.encode(0xAB, tlv.encode(0xA0, items)), True
    return _int(0x02, UNKNOWN_OR_DAMAGED_COMMAND), False


def _update_eim(card, op):
    """updateEim: the given fields replace the stored ones; eimId selects, the token stays."""
    new = codec.parse_eim_config(op)
    if not new["eim_id"]:
        return 7
    e = card.state.find_eim(new["eim_id"])
    if e is None:
        return 1  # eimNotFound
    if new["token"] is not None:
        return 7  # the association token cannot be changed
    fields = ("fqdn", "id_type", "counter", "public_key_data", "tls_data", "protocols", "ci_pkid")
    if all(new[f] is None for f in fields) and not new["indirect"]:
        return 7  # nothing to update
    if new["ci_pkid"] is not None and bytes.fromhex(new["ci_pkid"]) not in card.ci_pkids:
        return 3
    if new["counter"] is not None and not 0 <= new["counter"] <= codec.MAX_COUNTER:
        return 6
    if new["public_key_data"] is not None and codec.eim_public_key(new["public_key_data"]) is None:
        return 7
    if new["counter"] is not None and new["counter"] < e["counter"] and new["public_key_data"] is None:
        return 7  # a lower counter only together with a new key
    for f in fields:
        if new[f] is not None:
            e[f] = new[f]
    if new["indirect"]:
        e["indirect"] = True
    return 0


# ---- ProfileRollback (SGP.32 5.9.16) ----------------------------------------------------------


def profile_rollback(card, req):
    """ES10b.ProfileRollback: BF58 { 80 refreshFlag } -> BF58 { 02 cmdResult, [BF51 result] }.

    Only after an enable with rollbackFlag (rollbackNotAllowed(1) otherwise):
    re-enables the previous profile and answers a new signed EuiccPackageResult
    {rollbackResult ok} for the same eIM, counter and transaction id. The
    result of the package that granted the rollback is discarded (the IPA
    delivers the rollback's instead). cmdResult is untagged: the other
    component has a tag, so AUTOMATIC TAGS do not apply; the [81] on the
    result replaces EuiccPackageResult's own [81] (X.680 implicit tagging).
    """
    es10._refresh_flag(req)
    st = card.state
    rb = st.data["rollback"]
    eim = st.find_eim(rb["eim_id"]) if rb else None
    if rb is None or eim is None:
        return tlv.encode(0xBF58, _int(0x02, 1))
    if st.ecall_active():
        return tlv.encode(0xBF58, _int(0x02, 7))
    target = st.find_profile(rb["iccid"])
    if target is None:
        return tlv.encode(0xBF58, _int(0x02, 7))
    if target["state"] != "enabled":
        profiles.enable(card, target)
    st.remove_pending(rb["seq"])
    st.data["rollback"] = None
    txid = bytes.fromhex(rb["txid"]) if rb["txid"] is not None else None
    epr, _ = sign_result(card, rb["eim_id"], eim["token"], rb["counter"], txid, [_int(0x8C, 0)])
    return tlv.encode(0xBF58, _int(0x02, 0) + epr)
