"""ipa_core.ipa, the IPA procedures, against a fake eUICC (fake_euicc.py) and a fake eIM
(fake_eim.py) that build and read their TLVs independently of the core's message modules.

What a user would check: the eIM gets every result exactly once as the
eUICC signed it, the eUICC never runs a package twice, notifications leave
the eUICC only after the eIM took them, a restart at any point resumes.
Plain functions with assert: pytest on CPython and tools/mp_test.py on MicroPython.
"""

from ipa_core.compat import json
from ipa_core.compat import hexlify

from ipa_core import tlv
from ipa_core.errors import EimError, TransportError
from ipa_core.ipa import DEFAULTS, Ipa, MemoryStore
from ipa_core.ipa_store import JOB, NOTIFIED, STATE_CHANGE

import fake_eim as fe
from fake_euicc import (CI_PKID, EID, EIM_FQDN, EUICC_CERT, EUM_CERT, ICCID_A, ICCID_B, ICCID_C,
                        SMDP, SMDS, TLS_SPKI, TOKEN, FakeEuicc)

TXID = b"\x0a\x0b\x0c\x0d"


class Net:
    """Connectivity fake: `up()` says whether the device is attached."""

    def __init__(self, up=None, ecall=False):
        self.up = up or (lambda: True)
        self.waits = []
        self.refreshes = 0
        self.ecall = ecall

    def wait_connected(self, timeout_ms):
        self.waits.append(timeout_ms)
        return self.up()

    def refresh(self):
        self.refreshes += 1

    def ecall_active(self):
        return self.ecall


class World:
    """One device (fake eUICC, store) and one eIM, and a way to build IPAs on them."""

    def __init__(self, binding="asn1"):
        self.timeline = []
        self.card = FakeEuicc(self.timeline)
        self.eim = fe.FakeEim(binding, self.timeline)
        self.store = MemoryStore()
        self.net = Net()
        self.config = {"binding": binding}

    def ipa(self, session=None, network=None, store=None, **config):
        cfg = dict(self.config)
        cfg.update(config)
        return Ipa(session or self.card.session(), network or self.eim, store or self.store,
                   config=cfg, connectivity=self.net)


def tags_of(t):
    return [c.tag for c in t]


def epr_ops(raw):
    """EuiccResultData TLVs of a signed EuiccPackageResult, as hex."""
    data = tlv.decode(raw).need(0xA0).need(0x30)
    return [hexlify(c.raw).decode().upper() for c in data.children()[-1]]


def removed_after_taken(timeline):
    """Every removal of an existing object comes after the eIM acknowledged or took it."""
    taken = set()
    for ev in timeline:
        if ev[0] == "ack":
            for s in ev[1]:
                taken.add(s)
        elif ev[0] == "notification":
            taken.add(ev[1])
        elif ev[0] == "remove" and ev[2]:
            assert ev[1] in taken, "seqNumber %d removed before the eIM took it" % ev[1]


# ---- idle polling and back-off ---------------------------------------------------------


def test_idle_poll_and_backoff():
    w = World()
    ipa = w.ipa()
    r = ipa.poll_once()
    assert r["idle"] and r["error"] is None and r["package"] is None
    assert r["steps"] == ["getEimPackage"]
    assert w.eim.polls == [{"eid": EID, "notifyStateChange": False, "stateChangeCause": None}]
    delays = [ipa.next_poll_delay_ms(r)]
    for _ in range(7):
        delays.append(ipa.next_poll_delay_ms(ipa.poll_once()))
    assert delays == [60000, 120000, 240000, 480000, 960000, 1920000, 3600000, 3600000]
    # Transport errors: their own exponential back-off with a cap; idle starts again after.
    w.eim.reachable = lambda: False
    errs = [ipa.next_poll_delay_ms(ipa.poll_once()) for _ in range(8)]
    assert errs == [30000, 60000, 120000, 240000, 480000, 960000, 1800000, 1800000]
    w.eim.reachable = None
    r = ipa.poll_once()
    assert r["idle"] and ipa.next_poll_delay_ms(r) == 60000
    # Work done: poll again soon.
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_A)]))
    r = ipa.poll_once()
    assert not r["idle"] and ipa.next_poll_delay_ms(r) == 1000


def test_backoff_settings_and_unknown_setting():
    w = World()
    ipa = w.ipa(poll_interval_s=10, max_interval_s=25, backoff_factor=3, busy_interval_s=0)
    assert ipa.next_poll_delay_ms({"idle": True, "idleCount": 1}) == 10000
    assert ipa.next_poll_delay_ms({"idle": True, "idleCount": 2}) == 25000
    assert ipa.next_poll_delay_ms({"idle": True, "idleCount": 10 ** 6}) == 25000
    assert ipa.next_poll_delay_ms({"idle": False}) == 0
    assert "poll_interval_s" in DEFAULTS and "connectivity_timeout_s" in DEFAULTS
    try:
        w.ipa(poll_intervall_s=1)
    except ValueError as e:
        assert "poll_intervall_s" in str(e)
    else:
        raise AssertionError("a misspelt setting must be refused")


# ---- eUICC package (PSMO) cycle ----------------------------------------------------------


def test_psmo_enable_cycle_with_notifications():
    w = World()
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)], txid=TXID))
    r = w.ipa().poll_once()
    assert r["error"] is None, r["error"]
    assert r["package"] == "euiccPackageRequest" and r["eimTransactionId"] == "0A0B0C0D"
    assert r["steps"] == ["getEimPackage", "load", "connect", "collect", "deliver", "remove"]
    assert w.card.enabled() == ICCID_B and w.card.runs == 1
    # The switch: the IPA asked the modem to refresh and waited for the network.
    assert w.net.refreshes == 1 and w.net.waits == [DEFAULTS["connectivity_timeout_s"] * 1000]
    # seqNumbers: disable A 1, enable B 2, the result 3. One ePRAndNotifications '30'.
    assert len(w.eim.results) == 1
    res = tlv.decode(w.eim.results[0])
    assert res.tag == 0x30 and tags_of(res) == [0xBF51, 0xA0]
    assert [s for s, _ in w.eim.notifications] == [1, 2]
    epr = tlv.decode(w.eim.package_results[0])
    assert fe.result_seq(epr) == 3
    assert epr_ops(w.eim.package_results[0]) == ["830100"]  # enableResult ok
    assert r["result"] == {"kind": "euiccPackageResultSigned", "seqNumber": 3,
                           "operations": [["enableResult", 0, "ok"]]}
    assert r["delivered"] and r["acknowledged"] == [3, 1, 2] and r["removed"] == [3, 1, 2]
    assert w.card.pending == []
    removed_after_taken(w.timeline)
    assert w.store.keys() == []
    # The ProvideEimPackageResult carries the EID; the summary is JSON for `ipa poll --json`.
    assert w.eim.result_eids == [EID]
    assert json.loads(json.dumps(r)) == r


def test_bounded_messages_read_notifications_one_at_a_time():
    # A board (max_message_bytes): the eUICC's notifications are read one by one and the
    # ProvideEimPackageResult carries only what fits; the rest goes out with
    # HandleNotification in the next cycle. Nothing is lost, nothing is sent twice.
    w = World()
    for _ in range(3):
        w.card.add_notification("install", ICCID_C)  # seqNumbers 1, 2, 3
    size = len(w.card.notifications()[0]["der"])
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)], txid=TXID))
    ipa = w.ipa(max_message_bytes=size)
    r = ipa.poll_once()
    assert r["error"] is None and r["delivered"], r
    # The pass before GetEimPackage: the three installs, each read and sent on its own.
    assert r["notifications"]["delivered"] == [1, 2, 3]
    # The package: disable A (4), enable B (5), result 6; one notification fits the message.
    res = tlv.decode(w.eim.results[0])
    assert tags_of(res) == [0xBF51, 0xA0] and len(res.need(0xA0).children()) == 1
    assert r["acknowledged"] == [6, 4] and [p["seq"] for p in w.card.pending] == [5]
    r = ipa.poll_once()
    assert r["notifications"]["delivered"] == [5] and w.card.pending == [], r
    assert sorted(s for s, _ in w.eim.notifications) == [1, 2, 3, 4, 5]
    assert w.card.whole_lists == 0 and w.card.list_calls >= 3
    removed_after_taken(w.timeline)
    try:
        w.ipa(max_message_bytes=-1)
    except ValueError as e:
        assert "max_message_bytes" in str(e)
    else:
        raise AssertionError("a negative max_message_bytes was taken")


def test_psmo_cycle_without_notifications():
    w = World()
    # Enabling the profile that is already enabled: enableResult profileNotInDisabledState (2),
    # nothing changes, so no network wait and no notification.
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_A)]))
    r = w.ipa().poll_once()
    assert r["steps"] == ["getEimPackage", "load", "collect", "deliver", "remove"]
    assert w.net.waits == [] and w.net.refreshes == 0
    assert len(w.eim.results) == 1 and tlv.decode(w.eim.results[0]).tag == 0xBF51
    assert epr_ops(w.eim.results[0]) == ["830102"]
    assert r["result"]["operations"] == [["enableResult", 2, "profileNotInDisabledState"]]
    assert r["acknowledged"] == [1] and w.card.pending == []


def test_euicc_package_error_is_forwarded():
    w = World()
    w.card.eims["eim1"]["counter"] = 5
    w.eim.queue.append(fe.euicc_package_request(5, [fe.psmo_enable(ICCID_B)], txid=TXID))
    r = w.ipa().poll_once()
    # replayError (4), signed, not stored: forwarded as it came, nothing to acknowledge.
    assert r["result"]["kind"] == "euiccPackageErrorSigned" and r["result"]["error"] == "replayError"
    body = tlv.decode(w.eim.results[0])
    assert body.tag == 0xBF51 and body.need(0xA1).need(0x30).need(0x02).as_int() == 4
    assert r["acknowledged"] == [] and w.card.runs == 0 and w.card.enabled() == ICCID_A


def test_removal_only_of_what_the_eim_acknowledged():
    w = World()
    w.eim.ack = "result-only"
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)]))
    ipa = w.ipa()
    r = ipa.poll_once()
    assert r["acknowledged"] == [3] and r["removed"] == [3]
    assert [p["seq"] for p in w.card.pending] == [1, 2]  # the notifications stay
    # Next cycle: they go out one by one (HandleNotification) and only then leave the eUICC.
    w.eim.ack = "all"
    r = ipa.poll_once()
    assert r["notifications"]["delivered"] == [1, 2] and r["notifications"]["removed"] == [1, 2]
    assert w.card.pending == [] and r["idle"]
    removed_after_taken(w.timeline)


def test_acknowledgement_of_what_was_not_delivered_removes_nothing():
    # An eIM acknowledging a seqNumber the ProvideEimPackageResult did not carry (issue 17):
    # only what the message delivered leaves the eUICC; the rest goes out next cycle.
    w = World()
    w.card.add_notification("install", ICCID_C)  # seqNumber 1, delivered before the package
    size = len(w.card.notifications()[0]["der"])
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)], txid=TXID))
    ipa = w.ipa(max_message_bytes=size)
    w.eim.extra_acks = [3]  # disable A (2) fits the message, enable B (3) does not
    r = ipa.poll_once()
    assert r["notifications"]["delivered"] == [1]
    assert r["acknowledged"] == [4, 2, 3] and r["removed"] == [4, 2], r
    assert [p["seq"] for p in w.card.pending] == [3]
    assert 3 not in [s for s, _ in w.eim.notifications]
    w.eim.extra_acks = []
    r = ipa.poll_once()
    assert r["notifications"]["delivered"] == [3] and w.card.pending == []
    assert sorted(s for s, _ in w.eim.notifications) == [1, 2, 3]
    removed_after_taken(w.timeline)


def test_acknowledgement_of_ipa_euicc_data_removes_only_what_it_carried():
    w = World("json")
    w.eim.ack = "none"
    w.eim.refuse_notifications = True
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_disable(ICCID_A)]))
    ipa = w.ipa()
    ipa.poll_once()  # notification 1 and result 2 stay on the eUICC
    w.card.add_notification("install", ICCID_C)  # 3
    # The data request lists the EuiccPackageResults only; the eIM acknowledges 1, 2 and 3.
    w.eim.queue.append(fe.ipa_euicc_data_request(b"\xa2"))
    w.eim.extra_acks = [1, 2, 3]
    r = ipa.poll_once()
    assert r["package"] == "ipaEuiccDataRequest" and r["removed"] == [2], r
    assert [p["seq"] for p in w.card.pending] == [1, 3]


def test_empty_acknowledgement_removes_nothing():
    w = World()
    w.eim.ack = "none"
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_disable(ICCID_A)]))
    r = w.ipa().poll_once()
    assert r["delivered"] and r["acknowledged"] == [] and r["removed"] == []
    assert [p["seq"] for p in w.card.pending] == [1, 2]  # notification and result kept
    assert w.store.get(JOB) is None


# ---- rollback --------------------------------------------------------------------------------


def _rollback_world():
    w = World()
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B, rollback=True)],
                                                txid=TXID))
    return w


def _check_rolled_back(w, r):
    assert r["rolledBack"] and w.card.enabled() == ICCID_A and w.card.rollbacks == 1
    # The eIM got the rollback's result only: rollbackResult [12] ok '8C 01 00'.
    assert len(set(w.eim.package_results)) == 1
    assert epr_ops(w.eim.package_results[0]) == ["8C0100"]
    assert r["result"]["operations"] == [["rollbackResult", 0, "ok"]]
    assert w.card.pending == [] and w.store.get(JOB) is None
    removed_after_taken(w.timeline)


def test_rollback_when_the_network_does_not_come_back():
    w = _rollback_world()
    w.net.up = lambda: w.card.enabled() != ICCID_B
    ipa = w.ipa()
    r = ipa.poll_once()
    assert r["error"] is None, r["error"]
    assert r["steps"] == ["getEimPackage", "load", "connect", "rollback", "connect", "collect",
                          "deliver", "remove"]
    _check_rolled_back(w, r)
    # The next GetEimPackage tells the eIM about the local change, then the flag is gone.
    ipa.poll_once()
    assert w.eim.polls[-1]["notifyStateChange"] and w.eim.polls[-1]["stateChangeCause"] == 127
    ipa.poll_once()
    assert not w.eim.polls[-1]["notifyStateChange"]
    assert w.store.get(STATE_CHANGE) is None


def test_rollback_when_the_eim_is_unreachable_on_the_new_profile():
    w = _rollback_world()
    w.eim.reachable = lambda: w.card.enabled() != ICCID_B
    r = w.ipa().poll_once()
    assert r["steps"] == ["getEimPackage", "load", "connect", "collect", "deliver", "rollback",
                          "connect", "collect", "deliver", "remove"]
    _check_rolled_back(w, r)


def test_rollback_only_once():
    w = _rollback_world()
    w.net.up = lambda: False  # no network on either profile
    ipa = w.ipa()
    r = ipa.poll_once()
    assert r["error"]["type"] == "TransportError" and w.card.rollbacks == 1
    assert w.store.get(JOB)["step"] == "connect" and w.eim.results == []
    r = ipa.poll_once()
    assert r["error"]["type"] == "TransportError" and w.card.rollbacks == 1
    w.net.up = lambda: True
    r = ipa.poll_once()
    assert r["resumed"] == {"kind": "euiccPackageRequest", "step": "connect"}
    _check_rolled_back(w, r)


def test_no_rollback_without_the_flag():
    w = World()
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)]))
    w.eim.reachable = lambda: w.card.enabled() != ICCID_B
    ipa = w.ipa()
    r = ipa.poll_once()
    assert r["error"]["type"] == "TransportError" and w.card.rollbacks == 0
    assert w.store.get(JOB)["step"] == "deliver"
    w.eim.reachable = None
    r = ipa.poll_once()
    assert r["delivered"] and not r["rolledBack"] and w.card.enabled() == ICCID_B
    assert epr_ops(w.eim.package_results[0]) == ["830100"] and w.card.pending == []


# ---- ipaEuiccDataRequest -------------------------------------------------------------------------


def test_ipa_euicc_data_request_with_every_tag():
    w = World()
    w.card.add_notification("install", ICCID_C)  # seq 1
    tags = b"\xa0\x81\xa2\xbf\x20\xbf\x22\x83\x84\xa5\xa6\xa8\xa9"
    w.eim.queue.append(fe.ipa_euicc_data_request(tags, txid=TXID, ci_pkid=CI_PKID))
    ipa = w.ipa(ipa_capabilities={"ipaFeatures": ["minimizeEsipaBytes"],
                                  "ipaSupportedProtocols": ["ipaRetrieveHttps"]},
                device_info={"tac": "35290611", "deviceCapabilities": {"eutranEpcSupportedRelease":
                                                                       "13.0.0"}})
    ipa.choose_eim()
    r = ipa.poll_once()
    assert r["error"] is None, r["error"]
    assert r["notifications"]["delivered"] == [1]  # delivered first, so the list is empty
    assert r["package"] == "ipaEuiccDataRequest" and r["steps"][-3:] == ["collect", "deliver",
                                                                        "remove"]
    resp = tlv.decode(w.eim.results[0])
    assert resp.tag == 0xBF52
    data = resp.need(0xA0)
    # IpaEuiccData in module order, eimTransactionId [7] '87' echoed.
    assert tags_of(data) == [0xA0, 0x81, 0xA2, 0xBF20, 0xBF22, 0x83, 0x84, 0xA5, 0xA6, 0x87,
                             0xA8, 0xA9]
    assert data.need(0xA0).length == 0 and data.need(0xA2).length == 0
    assert data.need(0x81).as_str() == SMDP and data.need(0x83).as_str() == SMDS
    assert data.need(0x84).as_int() == TOKEN and data.need(0x87).value == TXID
    assert data.need(0xA5).value == EUM_CERT and data.need(0xA6).value == EUICC_CERT
    assert data.need(0xBF20).raw == w.card.handle(b"\xbf\x20\x00")
    assert data.need(0xBF22).raw == w.card.handle(b"\xbf\x22\x00")
    # IpaCapabilities { ipaFeatures [0] bit 5, ipaSupportedProtocols [1] bit 0 }.
    assert data.need(0xA8).raw == bytes([0xA8, 0x08, 0x80, 0x02, 0x02, 0x04, 0x81, 0x02, 0x07,
                                         0x80])
    assert data.need(0xA9).need(0x80).value == b"\x35\x29\x06\x11"


def test_ipa_euicc_data_request_lists_notifications_and_results():
    w = World("json")
    w.eim.ack = "none"  # leave the result (seq 2) on the eUICC
    w.eim.refuse_notifications = True  # and the notification (seq 1)
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_disable(ICCID_A)]))
    w.eim.queue.append(fe.ipa_euicc_data_request(b"\xa0\xa2"))
    ipa = w.ipa()
    ipa.poll_once()
    r = ipa.poll_once()
    assert r["notifications"]["failed"] == [1] and r["package"] == "ipaEuiccDataRequest"
    data = tlv.decode(w.eim.results[-1]).need(0xA0)
    assert tags_of(data) == [0xA0, 0xA2]
    assert fe.notification_seq(data.need(0xA0).children()[0]) == 1
    assert [fe.result_seq(c) for c in data.need(0xA2)] == [2]
    assert [p["seq"] for p in w.card.pending] == [1, 2]


def test_ipa_euicc_data_request_errors():
    cases = [
        (fe.ipa_euicc_data_request(b"\x5a", txid=TXID), {}, 1),  # no such component
        (fe.ipa_euicc_data_request(b"", txid=TXID), {}, 1),  # empty tagList
        (fe.ipa_euicc_data_request(b"\xa5", txid=TXID, ci_pkid="0102"), {}, 5),
        (fe.ipa_euicc_data_request(b"\xbf\x20", txid=TXID), {"ecall": True}, 104),
    ]
    for req, net, code in cases:
        w = World()
        w.net.ecall = net.get("ecall", False)
        w.eim.queue.append(req)
        r = w.ipa().poll_once()
        assert r["error"] is None, r["error"]
        # BF52 { ipaEuiccDataResponseError [1] A1 { eimTransactionId [0] 80, code 02 } }
        err = tlv.decode(w.eim.results[0]).need(0xA1)
        assert err.need(0x80).value == TXID and err.need(0x02).as_int() == code, code


# ---- profileDownloadTriggerRequest, invalid packages, eimPackageError ---------------------------


def test_profile_download_trigger_without_handler():
    w = World()
    w.eim.queue.append(fe.profile_download_trigger("1$smdp.example.com$ABC", txid=TXID))
    r = w.ipa().poll_once()
    assert r["package"] == "profileDownloadTriggerRequest" and r["error"] is None
    # BF54 { eimTransactionId [2] 82, profileDownloadError 30 { [0] undefinedError 127 } }
    res = tlv.decode(w.eim.results[0])
    assert res.tag == 0xBF54 and res.need(0x82).value == TXID
    assert res.need(0x30).need(0x80).as_int() == 127


def test_profile_download_trigger_with_handler():
    w = World()
    w.eim.queue.append(fe.profile_download_trigger("1$smdp.example.com$ABC", txid=TXID))
    pir = tlv.enc(0xBF37, tlv.encode(0xBF27, b""))
    seen = []

    def handler(req):
        seen.append(req["profileDownloadData"])
        return tlv.enc(0xBF54, tlv.encode(0x82, req["eimTransactionId"]), pir)

    ipa = w.ipa()
    ipa.download_handler = handler
    ipa.poll_once()
    assert seen == [{"activationCode": "1$smdp.example.com$ABC"}]
    assert tlv.decode(w.eim.results[0]).need(0xBF37).raw == pir


def test_invalid_package_is_reported():
    w = World()
    # An EuiccPackageRequest without eidValue, counterValue, package and signature.
    w.eim.queue.append(tlv.enc(0xBF51, tlv.encode(0x30, tlv.encode(0x80, b"eim1"))))
    r = w.ipa().poll_once()
    assert r["package"] == "invalid" and r["error"] is None and w.card.loads == 0
    # eimPackageResultResponseError [0] A0 { eimPackageResultErrorCode invalidPackageFormat 1 }
    assert w.eim.results[0] == bytes([0xA0, 0x03, 0x02, 0x01, 0x01])


def test_eim_package_errors():
    for code, name in ((2, "eidNotFound"), (3, "invalidEid"), (4, "missingEid"),
                       (127, "undefinedError")):
        w = World()
        w.eim.queue.append(code)
        ipa = w.ipa()
        r = ipa.poll_once()
        assert not r["idle"] and r["error"]["type"] == "EimError"
        assert r["error"]["code"] == code and r["error"]["name"] == name
        assert ipa.next_poll_delay_ms(r) == 30000
        w.eim.queue.append(code)
        try:
            ipa.poll_once(raise_errors=True)
        except EimError as e:
            assert e.code == code
        else:
            raise AssertionError("EimError expected")


# ---- JSON binding ---------------------------------------------------------------------------


def test_json_binding_psmo_cycle():
    w = World("json")
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)], txid=TXID))
    ipa = w.ipa()
    r = ipa.poll_once()
    assert r["error"] is None, r["error"]
    assert [p for p, _ in w.eim.paths] == ["/gsma/rsp2/esipa/getEimPackage",
                                           "/gsma/rsp2/esipa/provideEimPackageResult"]
    assert tlv.decode(w.eim.results[0]).tag == 0x30
    assert r["acknowledged"] == [3, 1, 2] and w.card.pending == []
    assert ipa.poll_once()["idle"]


# ---- notifications --------------------------------------------------------------------------


def test_notification_delivery_failure_keeps_the_notification():
    w = World("json")
    w.card.add_notification("install", ICCID_C)
    w.card.add_notification("delete", ICCID_C)
    w.eim.refuse_notifications = True
    ipa = w.ipa()
    r = ipa.poll_once()
    assert r["notifications"]["failed"] == [1, 2] and r["notifications"]["removed"] == []
    assert [p["seq"] for p in w.card.pending] == [1, 2] and r["idle"]
    w.eim.refuse_notifications = False
    r = ipa.process_notifications()
    assert r["delivered"] == [1, 2] and r["removed"] == [1, 2] and w.card.pending == []
    # An unreachable eIM ends the pass and keeps everything.
    w2 = World()
    w2.card.add_notification("install", ICCID_C)
    w2.eim.reachable = lambda: False
    r = w2.ipa().process_notifications()
    assert r["error"]["type"] == "TransportError" and len(w2.card.pending) == 1


def test_notifications_for_an_smdp_go_to_the_eim_and_are_noted():
    w = World()
    w.card.add_notification("install", ICCID_C)  # notificationAddress smdp.example.com
    w.card.add_notification("delete", ICCID_C, address=EIM_FQDN)
    ipa = w.ipa()
    ipa.choose_eim()
    r = ipa.process_notifications()
    assert r["delivered"] == [1, 2] and r["forSmdp"] == [1]


def test_notification_taken_before_a_restart_is_removed_not_resent():
    w = World()
    w.card.add_notification("install", ICCID_C)
    w.card.add_notification("enable", ICCID_C)

    class CutAtRemoval:
        version = "1.2"

        def store_data(self, req):
            if req[:2] == b"\xbf\x30":  # the power goes as the first removal is sent
                raise PowerCut("remove")
            return w.card.handle(req)

    try:
        w.ipa(session=CutAtRemoval()).process_notifications()
    except PowerCut:
        pass
    else:
        raise AssertionError("no power cut")
    assert w.store.get(NOTIFIED) == [1] and [s for s, _ in w.eim.notifications] == [1]
    r = w.ipa().process_notifications()
    assert r["removed"] == [1, 2] and r["delivered"] == [2]
    assert [s for s, _ in w.eim.notifications] == [1, 2] and w.card.pending == []
    assert w.store.get(NOTIFIED) is None


# ---- state change, eIM choice -------------------------------------------------------------------


def test_state_change_is_sent_until_the_eim_answered():
    w = World()
    ipa = w.ipa()
    ipa.set_state_change("fallback")
    w.eim.reachable = lambda: False
    ipa.poll_once()
    assert w.store.get(STATE_CHANGE)["cause"] == 1
    w.eim.reachable = None
    r = ipa.poll_once()
    assert r["stateChange"] == 1
    assert w.eim.polls == [{"eid": EID, "notifyStateChange": True, "stateChangeCause": 1}]
    r = ipa.poll_once()
    assert r["stateChange"] is None and not w.eim.polls[-1]["notifyStateChange"]
    ipa.set_state_change()
    ipa.poll_once()
    assert w.eim.polls[-1] == {"eid": EID, "notifyStateChange": True, "stateChangeCause": None}
    for bad in ("sideways", 128, True):
        try:
            ipa.set_state_change(bad)
        except ValueError:
            pass
        else:
            raise AssertionError("cause %r accepted" % (bad,))


def test_choose_eim():
    w = World()
    ipa = w.ipa()
    e = ipa.choose_eim()
    assert e["eimId"] == "eim1" and e["eimFqdn"] == EIM_FQDN and e["transport"] == "https"
    assert e["url"] == "https://eim.example.com" and e["protocols"] == ["eimRetrieveHttps"]
    assert e["trust"] == TLS_SPKI and e["trustKind"] == "publicKey"
    assert e["associationToken"] == TOKEN and ipa.eim_id == "eim1"
    # Only CoAP offered, the host only does HTTPS: no usable eIM.
    ipa2 = w.ipa(transports=("https",))
    w.card.eim_config_extra = [tlv.enc(0x30, tlv.encode(0x80, b"eim2"),
                                       tlv.encode(0x81, b"coap.example.com"),
                                       tlv.encode(0x87, b"\x06\x40"))]
    try:
        ipa2.choose_eim()
    except Exception as ex:  # IpaError
        assert "eIM" in str(ex) and "1 entries" in str(ex)
    else:
        raise AssertionError("an eIM without a usable protocol was chosen")
    assert w.ipa().choose_eim()["transport"] == "coaps"


def test_choose_eim_explicit_url():
    """An eIM address the user gave is used whatever eimSupportedProtocol lists (a lab eIM
    whose entry names only CoAP, or no retrieve protocol at all), with a warning."""
    w = World()
    w.card.eim_config_extra = [tlv.enc(0x30, tlv.encode(0x80, b"eim2"),
                                       tlv.encode(0x81, b"coap.example.com"),
                                       tlv.encode(0x87, b"\x06\x40"))]
    notes = []
    ipa = w.ipa(transports=("https",))
    ipa.log = lambda level, msg: notes.append((level, msg))
    e = ipa.choose_eim(url="https://127.0.0.1:8443")
    assert e["eimId"] == "eim2" and e["transport"] == "https"
    assert e["url"] == "https://127.0.0.1:8443"
    assert [lv for lv, m in notes if "eimRetrieveHttps" in m and "eim2" in m] == ["warning"]
    # the URL's own protocol listed: no warning
    notes[:] = []
    ipa = w.ipa()
    ipa.log = lambda level, msg: notes.append((level, msg))
    e = ipa.choose_eim(url="coaps://127.0.0.1:5684")
    assert e["transport"] == "coaps" and e["eimId"] == "eim2" and not notes


# ---- bounded retries --------------------------------------------------------------------------


class StatusAfter:
    """A network to the fake eIM that answers `status` to every post after the first `n`."""

    def __init__(self, eim, status, n):
        self.eim = eim
        self.status = status
        self.n = n

    def post(self, path, body, content_type, headers=None):
        self.n -= 1
        if self.n < 0:
            return self.status, b""
        return self.eim.post(path, body, content_type, headers)


def test_a_refused_delivery_is_given_up_after_max_attempts():
    w = World()
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_disable(ICCID_A)]))
    ipa = w.ipa(network=StatusAfter(w.eim, 400, 1), max_attempts=3)
    results = [ipa.poll_once() for _ in range(3)]
    assert [r["error"]["status"] for r in results] == [400, 400, 400]
    assert w.store.get(JOB)["step"] == "deliver" and w.store.get(JOB)["attempts"] == 3
    r = ipa.poll_once()
    assert r["abandoned"] and w.store.get(JOB) is None
    # What the eIM did not take stays on the eUICC (notification and result).
    assert [p["seq"] for p in w.card.pending] == [1, 2] and w.eim.results == []


def test_a_5xx_is_retried_without_bound():
    w = World()
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_disable(ICCID_A)]))
    ipa = w.ipa(network=StatusAfter(w.eim, 503, 1), max_attempts=2)
    for _ in range(5):
        r = ipa.poll_once()
        assert r["error"]["status"] == 503
    job = w.store.get(JOB)
    assert job["step"] == "deliver" and job["attempts"] == 0
    ipa.network = w.eim
    r = ipa.poll_once()
    assert r["delivered"] and w.card.pending == []


def test_a_record_written_as_hex_text_resumes():
    # Before the store took bytes, the job kept its TLVs as upper-case hex text: a device
    # updated in the middle of a procedure must still deliver exactly those bytes.
    w = World()
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_disable(ICCID_A)], txid=TXID))
    r = w.ipa(network=StatusAfter(w.eim, 503, 1)).poll_once()
    assert r["error"]["status"] == 503
    job = w.store.get(JOB)
    assert job["step"] == "deliver" and type(job["message"]) is bytes
    msg = job["message"]
    for k in ("request", "result", "message"):
        job[k] = hexlify(job[k]).decode().upper()
    w.store.put(JOB, job)
    r = w.ipa().poll_once()
    assert r["delivered"] and r["error"] is None, r
    assert len(w.eim.results) == 1 and w.eim.results[0] in msg  # the stored bytes, as sent
    assert w.card.pending == [] and w.store.get(JOB) is None


# ---- restart at every step boundary ----------------------------------------------------------


class PowerCut(BaseException):
    """The device loses power: the process just stops, so nothing in the IPA may catch it
    (a BaseException, like SystemExit: the IPA counts only Exceptions as failed steps)."""


class Plan:
    """Counts every card exchange, eIM post and store write; cuts the power at event `at`,
    before it happens or (after=True) after it happened but before its answer is used."""

    def __init__(self, at=0, after=False):
        self.n = 0
        self.at = at
        self.after = after
        self.events = []

    def event(self, what, fn, *args):
        self.n += 1
        self.events.append(what)
        if self.n == self.at and not self.after:
            raise PowerCut(what)
        r = fn(*args)
        if self.n == self.at and self.after:
            raise PowerCut(what)
        return r


class CutSession:
    version = "1.2"

    def __init__(self, card, plan):
        self.card = card
        self.plan = plan

    def store_data(self, req):
        return self.plan.event("card %s" % hexlify(req[:2]).decode(), self.card.handle, req)


class CutNetwork:
    def __init__(self, eim, plan):
        self.eim = eim
        self.plan = plan

    def post(self, path, body, content_type, headers=None):
        return self.plan.event("post", self.eim.post, path, body, content_type, headers)


class CutStore:
    def __init__(self, store, plan):
        self.store = store
        self.plan = plan

    def get(self, key, default=None):
        return self.store.get(key, default)

    def put(self, key, value):
        return self.plan.event("put %s" % key, self.store.put, key, value)

    def delete(self, key):
        return self.plan.event("delete %s" % key, self.store.delete, key)


def _cut_run(setup, at, after):
    """Run one cycle with the power cut at event `at`; then restart with a new IPA on the same
    store, card and eIM until the eIM has nothing more. Returns (world, events before the cut)."""
    w = setup()
    plan = Plan(at, after)
    ipa = w.ipa(session=CutSession(w.card, plan), network=CutNetwork(w.eim, plan),
                store=CutStore(w.store, plan))
    cut = False
    try:
        ipa.poll_once()
    except PowerCut:
        cut = True
    for _ in range(4):
        ipa = w.ipa()  # a fresh IPA, session and network: only the store remembers
        r = ipa.poll_once()
        if r["idle"] and w.store.get(JOB) is None and r["error"] is None:
            break
    else:
        raise AssertionError("no idle cycle after the restart (cut at %d%s)"
                             % (at, " after" if after else ""))
    return w, plan, cut


def _matrix(setup, check):
    w, plan, cut = _cut_run(setup, 0, False)
    assert not cut
    check(w, "no cut")
    total = plan.n
    assert total > 10, plan.events
    for at in range(1, total + 1):
        for after in (False, True):
            w, p, cut = _cut_run(setup, at, after)
            assert cut
            check(w, "cut %s event %d (%s)" % ("after" if after else "before", at,
                                                p.events[at - 1]))
    return total


def _psmo_setup():
    w = World()
    w.card.add_notification("install", ICCID_C)  # seq 1, pending before the package
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)], txid=TXID))
    return w


def _psmo_check(w, where):
    # The eUICC got the LoadEuiccPackage once and ran it once.
    assert w.card.loads == 1 and w.card.runs == 1, where
    assert w.card.enabled() == ICCID_B, where
    # The eIM got exactly one result for the package, the signed bytes the eUICC made
    # (a resend after a cut between the eIM's answer and the IPA's record is the same bytes).
    assert len(set(w.eim.package_results)) == 1, (where, w.eim.package_results)
    assert len(w.eim.package_results) <= 2, where
    assert fe.result_seq(tlv.decode(w.eim.package_results[0])) == 4, where
    # Every notification reached the eIM; everything left the eUICC only after that.
    assert set(s for s, _ in w.eim.notifications) == {1, 2, 3}, where
    assert w.card.pending == [], where
    removed_after_taken(w.timeline)
    assert w.store.get(JOB) is None and w.store.get(NOTIFIED) is None, where


def test_resume_at_every_step_of_a_psmo_cycle():
    total = _matrix(_psmo_setup, _psmo_check)
    # card: retrieve (notifications), remove; poll; load; retrieve; post; 3 removals...
    assert total >= 20


def _rollback_setup():
    w = World()
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B, rollback=True)],
                                                txid=TXID))
    w.net.up = lambda: w.card.enabled() != ICCID_B
    return w


def _rollback_check(w, where):
    assert w.card.loads == 1 and w.card.runs == 1, where
    assert w.card.rollbacks == 1 and w.card.enabled() == ICCID_A, where
    assert len(set(w.eim.package_results)) == 1, where
    assert epr_ops(w.eim.package_results[0]) == ["8C0100"], where
    assert w.card.pending == [], where
    removed_after_taken(w.timeline)
    assert any(p["notifyStateChange"] and p["stateChangeCause"] == 127
               for p in w.eim.polls), where


def test_resume_at_every_step_of_a_rollback():
    _matrix(_rollback_setup, _rollback_check)


def test_lost_load_answer_fetches_the_stored_result():
    # The card ran the package but its answer was lost: the IPA must not send it again.
    w = World()
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)]))

    class LoseLoadAnswer:
        version = "1.2"

        def store_data(self, req):
            rsp = w.card.handle(req)
            if req[:2] == b"\xbf\x51":
                raise TransportError("reader gone after the command")
            return rsp

    r = w.ipa(session=LoseLoadAnswer()).poll_once()
    assert r["error"]["type"] == "TransportError"
    assert w.store.get(JOB)["step"] == "load" and w.store.get(JOB)["sent"]
    r = w.ipa().poll_once()
    assert r["resumed"] == {"kind": "euiccPackageRequest", "step": "load"}
    assert w.card.loads == 1 and r["result"]["seqNumber"] == 3 and r["delivered"]
    assert w.card.pending == []


def test_a_card_refusing_the_package_is_given_up_after_max_attempts():
    from ipa_core.errors import CardError

    w = World()
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)], txid=TXID))
    answer = {"bf51": "gone"}

    class Card:
        version = "1.2"

        def store_data(self, req):
            if req[:2] == b"\xbf\x51":
                if answer["bf51"] == "gone":
                    raise TransportError("the reader is gone")
                raise CardError(0x6F00, "STORE DATA")
            return w.card.handle(req)

    ipa = w.ipa(session=Card(), max_attempts=3)
    for _ in range(6):  # a card that does not answer: retried without bound
        assert ipa.poll_once()["error"]["type"] == "TransportError"
    assert w.store.get(JOB)["attempts"] == 0
    answer["bf51"] = "6F00"  # a card that answers with an error: counted
    for _ in range(3):
        assert ipa.poll_once()["error"]["type"] == "CardError"
    r = ipa.poll_once()
    assert r["abandoned"] and r["delivered"] and w.store.get(JOB) is None
    # eimPackageResultResponseError [0] A0 { eimTransactionId [0] 80, undefinedError 02 01 7F }
    assert w.eim.results == [bytes([0xA0, 0x09, 0x80, 0x04]) + TXID + bytes([0x02, 0x01, 0x7F])]
    assert w.card.loads == 0


def test_a_download_handler_failing_unexpectedly_ends_in_an_error_result():
    """A handler raising something that is not an IpaError (a bug, or a module missing from a
    board's frozen bundle) fails the cycle cleanly (no exception out of poll_once), and the
    next cycle reports profileDownloadTriggerResult undefinedError: no endless retry."""
    w = World()
    w.eim.queue.append(fe.profile_download_trigger("1$smdp.example.com$ABC", txid=TXID))
    calls = []

    def handler(req):
        calls.append(1)
        raise ImportError("no module named 'ipa_core.activation'")

    ipa = w.ipa(max_attempts=2)
    ipa.download_handler = handler
    r = ipa.poll_once()
    assert r["error"]["type"] == "IpaError", r["error"]
    assert "ImportError" in r["error"]["message"] and "download" in r["error"]["message"]
    assert w.store.get(JOB)["attempts"] == 1
    r = ipa.poll_once()
    assert r["error"] is None and r["delivered"] and w.store.get(JOB) is None
    assert len(calls) == 1
    res = tlv.decode(w.eim.results[0])
    assert res.tag == 0xBF54 and res.find(0xBF37) is None  # an error result, no PIR
    assert ipa.poll_once()["idle"]


def test_a_step_failing_unexpectedly_is_counted_and_given_up():
    """A card layer raising a non-IpaError on the package counts towards max_attempts; then
    the eIM gets an undefinedError result instead of the IPA failing at every restart."""
    w = World()
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)], txid=TXID))

    class Card:
        version = "1.2"

        def store_data(self, req):
            if req[:2] == b"\xbf\x51":
                raise KeyError("a bug in the card layer")
            return w.card.handle(req)

    ipa = w.ipa(session=Card(), max_attempts=2)
    for n in (1, 2):
        r = ipa.poll_once()
        assert r["error"]["type"] == "IpaError" and "KeyError" in r["error"]["message"]
        assert w.store.get(JOB)["attempts"] == n
    r = ipa.poll_once()
    assert r["abandoned"] and r["delivered"] and w.store.get(JOB) is None
    assert w.eim.results == [bytes([0xA0, 0x09, 0x80, 0x04]) + TXID + bytes([0x02, 0x01, 0x7F])]
    assert w.card.loads == 0
