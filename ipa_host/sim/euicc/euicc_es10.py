"""ES10 functions of the virtual eUICC, apart from the eUICC Package ones (euicc_package.py).

Each function is named after the spec function, takes the card
(VirtualEuicc) and the decoded request TLV, and returns the response TLV.
A request that does not follow the module raises TlvError (answered 6A80
by the APDU layer). Tags are written from SGP32Definitions (SGP.32 v1.2,
section 5.9) and RSPDefinitions (SGP.22 v2.5, section 5.7) with AUTOMATIC
TAGS applied by hand; the comment on each function shows the shape.
"""

import os

from ipa_core import tlv
from ipa_core.errors import TlvError

from ipa_host.sim.euicc import euicc_codec as codec
from ipa_host.sim.euicc import euicc_profiles as profiles

MAX_EIMS = 8


def _result(tag, code, rtag=0x80):
    """The common one-result answer, e.g. BF5A { 80 01 00 }."""
    return tlv.encode(tag, tlv.encode(rtag, tlv.int_encode(code)))


def _refresh_flag(req):
    """refreshFlag BOOLEAN, the only component: [0] under AUTOMATIC TAGS (80); 01 tolerated."""
    c = req.find(0x80) or req.find(0x01)
    if c is None:
        raise TlvError(req.vstart, "refreshFlag (80) in %X" % req.tag, "it missing")
    return c.as_bool()


# ---- eUICC information (SGP.22 5.7.8 / 5.7.9 / 5.7.20, SGP.32 5.9) ----------------------


def get_euicc_info1(card, req):
    """ES10b.GetEuiccInfo1: BF20 { 82 svn, A9 { 04 ciPKId.. }, AA { 04 ciPKId.. } }."""
    return euicc_info1(card)


def euicc_info1(card):
    ids = b"".join(tlv.encode(0x04, k) for k in card.ci_pkids)
    return tlv.enc(0xBF20, tlv.encode(0x82, card.info["svn"]),
                   tlv.encode(0xA9, ids), tlv.encode(0xAA, ids))


def get_euicc_info2(card, req):
    """ES10b.GetEuiccInfo2: SGP32-EUICCInfo2 (BF22), fields in declaration order.

    81 profileVersion, 82 svn, 83 euiccFirmwareVer, 84 extCardResource,
    85 uiccCapability, 87 globalplatformVersion, 88 rspCapability, A9/AA CI
    PKIds, 04 ppVersion, 0C sasAcreditationNumber, 90 ipaMode (ipad 0),
    B4 iotSpecificInfo { A0 { 04 iotVersion }, 81 ecallSupported, 82 fallbackSupported } (v1.0:
    iotVersion only).
    """
    return euicc_info2(card)


def euicc_info2(card):
    i = card.info
    ids = b"".join(tlv.encode(0x04, k) for k in card.ci_pkids)
    free = max(0, 0x100000 - 0x8000 * len(card.state.profiles))
    ext = (tlv.encode(0x81, bytes((len(card.state.profiles),)))
           + tlv.encode(0x82, free.to_bytes(4, "big"))
           + tlv.encode(0x83, (0x8000).to_bytes(4, "big")))
    uicc = tlv.bits_encode(["usimSupport", "isimSupport", "akaMilenage", "akaTuak128",
                            "gbaAuthenUsim", "javacard", "berTlvFileSupport", "dfLinkSupport",
                            "getIdentity", "profile-a-x25519", "profile-b-p256",
                            "suciCalculatorApi"], codec.UICC_CAPABILITY)
    rsp = tlv.bits_encode(["additionalProfile", "testProfileSupport"], codec.RSP_CAPABILITY)
    later = card.version != "1.0"  # v1.0's IoTSpecificInfo has iotVersion only
    iot = tlv.enc(0xB4, tlv.encode(0xA0, tlv.encode(0x04, i["iot"])),
                  tlv.encode(0x81, b"") if later else None, tlv.encode(0x82, b"") if later else None)
    return tlv.enc(
        0xBF22,
        tlv.encode(0x81, codec.version_bytes("2.3.1")),
        tlv.encode(0x82, i["svn"]),
        tlv.encode(0x83, codec.version_bytes("1.0.0")),
        tlv.encode(0x84, ext),
        tlv.encode(0x85, uicc),
        tlv.encode(0x87, codec.version_bytes("2.3.0")),
        tlv.encode(0x88, rsp),
        tlv.encode(0xA9, ids),
        tlv.encode(0xAA, ids),
        tlv.encode(0x04, codec.version_bytes("1.0.0")),
        tlv.encode(0x0C, b"IPA-IOT-VIRTUAL-EUICC"),
        tlv.encode(0x90, tlv.int_encode(0)),
        iot,
    )


def get_eid(card, req):
    """ES10c.GetEID: BF3E { 5C 01 5A } -> BF3E { 5A 10 <EID> }."""
    tl = req.find(0x5C)
    if tl is not None and 0x5A not in codec.parse_tag_list(tl.value):
        raise TlvError(tl.vstart, "tagList 5A", tl.value.hex().upper())
    return tlv.encode(0xBF3E, tlv.encode(0x5A, card.eid_bytes))


def get_certs(card, req):
    """ES10b.GetCerts (SGP.32 5.9.x): BF56 { [80 ciPKId] } -> BF56 { A0 { A5 eum, A6 euicc } }.

    GetCertsRequest's lone component gets [0] (80); 04 tolerated. An unknown
    CI key id answers getCertsError invalidCiPKId: BF56 { 81 01 01 }.
    """
    want = req.find(0x80) or req.find(0x04)
    if want is not None and want.value not in card.ci_pkids:
        return _result(0xBF56, 1, 0x81)
    eum = tlv.encode(0xA5, tlv.decode(card.eum_cert_der).value)
    euicc = tlv.encode(0xA6, tlv.decode(card.euicc_cert_der).value)
    return tlv.encode(0xBF56, tlv.encode(0xA0, eum + euicc))


def get_euicc_challenge(card, req):
    """ES10b.GetEuiccChallenge: BF2E { 80 <16 random bytes> }."""
    card.challenge = os.urandom(16)
    return tlv.encode(0xBF2E, tlv.encode(0x80, card.challenge))


def get_rat(card, req):
    """ES10b.GetRAT: BF43 { A0 { 30 { 80 pprIds, A1 { 30 { 80 mccMnc } }, 82 pprFlags } } }."""
    return tlv.encode(0xBF43, tlv.encode(0xA0, rat_rules()))


def rat_rules():
    """The Rules Authorisation Table: PPR1 and PPR2 allowed for any operator, no consent."""
    rule = tlv.enc(0x30,
                   tlv.encode(0x80, tlv.bits_encode(["ppr1", "ppr2"], codec.PPR_IDS)),
                   tlv.encode(0xA1, tlv.encode(0x30, tlv.encode(0x80, b"\xee\xee\xee"))),
                   tlv.encode(0x82, tlv.bits_encode([], ("consentRequired",))))
    return rule


# ---- addresses (SGP.22 5.7.x, SGP.32 5.9.x) ---------------------------------------------


def get_euicc_configured_addresses(card, req):
    """ES10a.GetEuiccConfiguredAddresses: BF3C { [80 defaultDpAddress] 81 rootDsAddress }."""
    d = card.state.data
    return tlv.enc(0xBF3C,
                   tlv.encode(0x80, d["default_dp_address"].encode("utf-8"))
                   if d["default_dp_address"] else None,
                   tlv.encode(0x81, d["root_ds_address"].encode("utf-8")))


def set_default_dp_address(card, req):
    """ES10a.SetDefaultDpAddress: BF65 (SGP.32) or BF3F (SGP.22) { 80 address } -> { 80 00 }."""
    addr = req.need(0x80, "defaultDpAddress").as_str()
    card.state.data["default_dp_address"] = addr or None
    return _result(req.tag, 0)


def get_connectivity_parameters(card, req):
    """ES10b.GetConnectivityParameters: BF5F { A0 { 81 httpParams } } or BF5F { 81 01 01 }."""
    hp = card.state.data["http_params"]
    if hp is None:
        return _result(0xBF5F, 1, 0x81)  # parametersNotAvailable
    return tlv.encode(0xBF5F, tlv.encode(0xA0, tlv.encode(0x81, bytes.fromhex(hp))))


# ---- eIM configuration (SGP.32 5.9.4, 5.9.18) -------------------------------------------


def get_eim_configuration_data(card, req):
    """ES10b.GetEimConfigurationData: BF55 { [A0 { 80 eimId }] } -> BF55 { A0 { 30 ... } }.

    searchCriteria is a CHOICE given [0] by AUTOMATIC TAGS, so explicit: A0 { 80 id };
    a bare 80 is tolerated. counterValue is never returned (5.9.18).
    """
    crit = req.find(0xA0)
    eim_id = crit.need(0x80, "eimId").as_str() if crit is not None else None
    if eim_id is None and req.find(0x80) is not None:
        eim_id = req.find(0x80).as_str()
    items = [codec.encode_eim_config(e) for e in card.state.eims
             if eim_id is None or e["eim_id"] == eim_id]
    return tlv.encode(0xBF55, tlv.encode(0xA0, items))


def check_eim_config(card, cfg, adding):
    """The SGP.32 5.9.4 / 3.5 checks for one new eIM: 0 or an AddEimResult error code."""
    if not cfg["eim_id"] or len(cfg["eim_id"]) > 128:
        return 7  # commandError
    if cfg["counter"] is None or cfg["public_key_data"] is None:
        return 7  # mandatory: counterValue and eimPublicKey/eimCertificate
    if codec.eim_public_key(cfg["public_key_data"]) is None:
        return 7
    if adding and card.state.find_eim(cfg["eim_id"]):
        return 2  # associatedEimAlreadyExists
    if not 0 <= cfg["counter"] <= codec.MAX_COUNTER:
        return 6  # counterValueOutOfRange
    if cfg["token"] is not None and cfg["token"] != -1:
        return 5  # invalidAssociationToken: only -1 (eUICC, calculate one) is allowed
    if cfg["ci_pkid"] is not None and bytes.fromhex(cfg["ci_pkid"]) not in card.ci_pkids:
        return 3  # ciPKUnknown
    return 0


def store_new_eim(card, cfg):
    """Apply the defaults of 5.9.4 and store; returns the generated associationToken or None."""
    if cfg["id_type"] is None:
        cfg["id_type"] = codec.EIM_ID_TYPE_PROPRIETARY
    if cfg["protocols"] is None:
        cfg["protocols"] = tlv.bits_encode(["eimProprietary"], codec.EIM_PROTOCOLS).hex()
    if cfg["ci_pkid"] is None:
        cfg["ci_pkid"] = card.ci_pkids[0].hex()
    token = None
    if cfg["token"] == -1:
        card.state.data["token_counter"] += 1
        token = card.state.data["token_counter"]
    cfg["token"] = token
    card.state.eims.append(cfg)
    return token


def add_initial_eim(card, req):
    """ES10b.AddInitialEim: BF57 { A0 { 30 EimConfigurationData ... } }.

    Answer BF57 { A0 { 84 token | 05 00 (addOk) ... } } or BF57 { 81 code }.
    Only when no eIM is configured yet (else associatedEimAlreadyExists); all
    entries or none are added.
    """
    lst = req.find(0xA0)
    if card.state.eims:
        return _result(0xBF57, 2, 0x81)
    if lst is None:
        return _result(0xBF57, 7, 0x81)
    entries = [codec.parse_eim_config(c) for c in lst]
    if not entries:
        return _result(0xBF57, 7, 0x81)
    ids = [e["eim_id"] for e in entries]
    if len(set(ids)) != len(ids):
        return _result(0xBF57, 7, 0x81)
    if len(entries) > MAX_EIMS:
        return _result(0xBF57, 1, 0x81)
    for e in entries:
        code = check_eim_config(card, e, adding=True)
        if code:
            return _result(0xBF57, code, 0x81)
    oks = []
    for e in entries:
        token = store_new_eim(card, e)
        oks.append(tlv.encode(0x84, tlv.int_encode(token)) if token is not None
                   else tlv.encode(0x05, b""))
    return tlv.encode(0xBF57, tlv.encode(0xA0, oks))


# ---- notifications (SGP.22 5.7.10 / 5.7.11, SGP.32 5.9.x) ------------------------------


def _criteria(req):
    """The searchCriteria alternative: inside A0 (explicit, per X.680) or bare."""
    crit = req.find(0xA0)
    kids = crit.children() if crit is not None else [c for c in req if c.tag in (0x80, 0x81, 0x82)]
    if len(kids) > 1:
        raise TlvError(req.vstart, "one search criterion", "%d" % len(kids))
    return kids[0] if kids else None


def retrieve_notifications_list(card, req):
    """ES10b.RetrieveNotificationsList: SGP32-RetrieveNotificationsListRequest BF2B.

    searchCriteria: 80 seqNumber | 81 profileManagementOperation | 82 euiccPackageResults.
    Answers BF2B { A0 { PendingNotification.. } } (notificationList) or
    BF2B { A2 { BF51.. } } (euiccPackageResultList): a seqNumber that names an
    eUICC Package Result, and the euiccPackageResults criterion, give A2.
    """
    c = _criteria(req)
    st = card.state
    if c is not None and c.tag == 0x82:
        return _list(0xA2, st.pending("result"))
    if c is not None and c.tag == 0x80:
        seq = c.as_int()
        hits = [n for n in st.pending() if n["seq"] == seq]
        if hits and hits[0]["kind"] == "result":
            return _list(0xA2, hits)
        return _list(0xA0, hits)
    notes = st.pending("notification")
    if c is not None and c.tag == 0x81:
        events = set(c.as_bits(codec.NOTIFICATION_EVENTS))
        notes = [n for n in notes if codec.EVENT_BIT[n["event"]] in events]
    return _list(0xA0, notes)


def _list(tag, entries):
    return tlv.encode(0xBF2B, tlv.encode(tag, [bytes.fromhex(n["der"]) for n in entries]))


def list_notification(card, req):
    """ES10b.ListNotification: BF28 { [81 event bits] } -> BF28 { A0 { BF2F.. } }."""
    notes = card.state.pending("notification")
    f = req.find(0x81)
    if f is not None:
        events = set(f.as_bits(codec.NOTIFICATION_EVENTS))
        notes = [n for n in notes if codec.EVENT_BIT[n["event"]] in events]
    metas = [tlv.decode(bytes.fromhex(n["der"])).need(0xBF2F).raw for n in notes]
    return tlv.encode(0xBF28, tlv.encode(0xA0, metas))


def remove_notification_from_list(card, req):
    """ES10b.RemoveNotificationFromList: BF30 { 80 seq } -> BF30 { 80 00 ok | 01 nothingToDelete }.

    Removes a notification or an eUICC Package Result (they share seqNumbers).
    """
    seq = req.need(0x80, "seqNumber").as_int()
    return _result(0xBF30, 0 if card.state.remove_pending(seq) else 1)


# ---- profiles (SGP.22 5.7.15, SGP.32 5.9.x) ---------------------------------------------


def get_profiles_info(card, req):
    """ES10c.GetProfilesInfo: ProfileInfoListRequest BF2D -> BF2D { A0 { E3.. } }."""
    return profiles.profile_info_list(card, req, None)


def immediate_enable(card, req):
    """ES10b.ImmediateEnable: BF5A { 80 refreshFlag } -> BF5A { 80 result }.

    Enables the profile just downloaded when immediate enabling is configured:
    immediateEnableNotAvailable(1) otherwise, noSessionContext(4) without a download.
    v1.0 (EnableUsingDD): the request is empty; a refreshFlag there is refused.
    """
    if card.version == "1.0":
        if req.length:
            raise TlvError(req.vstart, "an empty SGP.32 v1.0 EnableUsingDDRequest (BF5A 00)",
                           "%d bytes (v1.2's refreshFlag?)" % req.length)
    else:
        _refresh_flag(req)
    st = card.state
    if not st.data["immediate_enable"]["flag"]:
        return _result(0xBF5A, 1)
    p = st.find_profile(st.data["last_installed"]) if st.data["last_installed"] else None
    if p is None:
        return _result(0xBF5A, 4)
    if st.ecall_active():
        return _result(0xBF5A, 127)
    st.data["last_installed"] = None
    if p["state"] != "enabled":
        profiles.enable(card, p)
    return _result(0xBF5A, 0)


def configure_immediate_profile_enabling(card, req):
    """ES10b.ConfigureImmediateProfileEnabling: BF59 { [80 flag] [81 oid] [82 address] } -> BF59 { 80 }.

    Local configuration only while no eIM is associated (associatedEimAlreadyExists(2)).
    """
    if card.state.eims:
        return _result(0xBF59, 2)
    card.state.data["immediate_enable"] = immediate_config(req)
    return _result(0xBF59, 0)


def immediate_config(t):
    """{flag, oid, address} from ConfigureImmediateProfileEnablingRequest / configureImmediateEnable."""
    oid = t.find(0x81)
    addr = t.find(0x82)
    return {"flag": t.find(0x80) is not None,
            "oid": oid.as_oid() if oid is not None else None,
            "address": addr.as_str() if addr is not None else None}


def enable_emergency_profile(card, req):
    """ES10b.EnableEmergencyProfile: BF5B { 80 refreshFlag } -> BF5B { 80 result }.

    ecallNotAvailable(8) without an Emergency Profile, profileNotInDisabledState(2)
    when it is already enabled. The profile enabled before is remembered for
    DisableEmergencyProfile.
    """
    _refresh_flag(req)
    st = card.state
    p = st.emergency_profile()
    if p is None:
        return _result(0xBF5B, 8)
    if p["state"] == "enabled":
        return _result(0xBF5B, 2)
    cur = st.enabled_profile()
    st.data["emergency_previous"] = cur["iccid"] if cur else None
    profiles.enable(card, p)
    return _result(0xBF5B, 0)


def disable_emergency_profile(card, req):
    """ES10b.DisableEmergencyProfile: BF5C { 80 refreshFlag } -> BF5C { 80 result }.

    Disables the Emergency Profile and re-enables the profile enabled before it.
    """
    _refresh_flag(req)
    st = card.state
    p = st.emergency_profile()
    if p is None or p["state"] != "enabled":
        return _result(0xBF5C, 2)
    prev = st.find_profile(st.data["emergency_previous"]) if st.data["emergency_previous"] else None
    st.data["emergency_previous"] = None
    if prev is not None:
        profiles.enable(card, prev)
    else:
        profiles.disable(card, p)
    return _result(0xBF5C, 0)


def execute_fallback_mechanism(card, req):
    """ES10b.ExecuteFallbackMechanism: BF5D { 80 refreshFlag } -> BF5D { 80 result }.

    ecallActive(104) while the Emergency Profile is enabled; fallbackNotAvailable(6)
    without a Fallback Profile; profileNotInDisabledState(2) when it is already
    enabled; commandError(7) with no enabled profile to fall back from.
    """
    _refresh_flag(req)
    st = card.state
    if st.ecall_active():
        return _result(0xBF5D, 104)
    fb = st.fallback_profile()
    if fb is None:
        return _result(0xBF5D, 6)
    if fb["state"] == "enabled":
        return _result(0xBF5D, 2)
    cur = st.enabled_profile()
    if cur is None:
        return _result(0xBF5D, 7)
    st.data["fallback_previous"] = cur["iccid"]
    st.data["rollback"] = None  # the switch ends any rollback authorisation
    profiles.enable(card, fb)
    return _result(0xBF5D, 0)


def return_from_fallback(card, req):
    """ES10b.ReturnFromFallback: BF5E { 80 refreshFlag } -> BF5E { 80 result }.

    fallbackNotAvailable(6) unless the Fallback Profile is enabled by the
    fallback mechanism and the profile to return to still exists.
    """
    _refresh_flag(req)
    st = card.state
    fb = st.fallback_profile()
    prev = st.find_profile(st.data["fallback_previous"]) if st.data["fallback_previous"] else None
    if fb is None or fb["state"] != "enabled" or prev is None:
        return _result(0xBF5E, 6)
    st.data["fallback_previous"] = None
    st.data["rollback"] = None
    profiles.enable(card, prev)
    return _result(0xBF5E, 0)


# ---- memory reset (SGP.32 5.9.5; SGP.22 5.7.19) -------------------------------------------


def euicc_memory_reset(card, req):
    """ES10c.eUICCMemoryReset: BF64 (BF34 for v1.0) { 82 resetOptions } -> { 80 [81] [82] }.

    v1.0: resetOptions bit 3 is resetEimConfigData, bit 4 resetAutoEnableConfig (read
    as resetImmediateEnableConfig); resetResult is '02' (untagged beside tagged siblings).

    resetResult 80 (ok 0, nothingToDelete 1, ecallActive 104); resetEimResult 81
    only when resetEimConfigData was asked; resetImmediateEnableConfigResult 82
    only when resetImmediateEnableConfig was asked. No notifications.
    """
    v1_0 = card.version == "1.0"
    opts = set(req.need(0x82, "resetOptions").as_bits(
        codec.RESET_OPTIONS_V1_0 if v1_0 else codec.RESET_OPTIONS))
    first = 0x02 if v1_0 else 0x80
    st = card.state
    if st.ecall_active():
        return _result(req.tag, 104 if not v1_0 else 127, first)
    did = False
    doomed = []
    for p in st.profiles:
        c = p["class"]
        if ((c == "operational" and "deleteOperationalProfiles" in opts)
                or (c == "provisioning" and "deleteProvisioningProfiles" in opts)
                or (c == "test" and p["preloaded"] and "deletePreLoadedTestProfiles" in opts)
                or (c == "test" and not p["preloaded"] and "deleteFieldLoadedTestProfiles" in opts)):
            doomed.append(p)
    for p in doomed:
        profiles.delete(card, p, notify=False)
        did = True
    if "resetDefaultSmdpAddress" in opts and st.data["default_dp_address"]:
        st.data["default_dp_address"] = None
        did = True
    parts = []
    eim_result = iec_result = None
    if "resetEimConfigData" in opts:
        eim_result = 0 if st.eims else 1
        st.data["eims"] = []
        did = did or eim_result == 0
    if "resetImmediateEnableConfig" in opts:
        st.data["immediate_enable"] = {"flag": False, "oid": None, "address": None}
        iec_result = 0
        did = True
    parts.append(tlv.encode(first, tlv.int_encode(0 if did else 1)))
    if eim_result is not None:
        parts.append(tlv.encode(0x81, tlv.int_encode(eim_result)))
    if iec_result is not None:
        parts.append(tlv.encode(0x82, tlv.int_encode(iec_result)))
    return tlv.encode(req.tag, parts)


# ---- download session (SGP.22 5.7.14) -------------------------------------------------------


def cancel_session(card, req):
    """ES10b.CancelSession: BF41 { 80 transactionId, 81 reason } -> SGP32-CancelSessionResponse.

    Without a download session in progress: cancelSessionResponseError
    invalidTransactionId, BF41 { 81 01 05 }.
    """
    req.need(0x80, "transactionId")
    req.need(0x81, "reason").as_int()
    return _result(0xBF41, 5, 0x81)


def select_proprietary_data(card):
    """FCI proprietary data of the ISD-R: E0 (SGP.22) and E1 (SGP.32 ISDRProprietaryApplicationTemplateIoT)."""
    conf = ["enabledProfile"] if card.state.enabled_profile() else []
    return (tlv.encode(0xE0, tlv.encode(0x82, card.info["svn"]))
            + tlv.encode(0xE1, tlv.encode(0x80, tlv.bits_encode(conf, codec.EUICC_CONFIGURATION))))

