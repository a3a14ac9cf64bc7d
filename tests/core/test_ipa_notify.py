"""ipa_core.ipa_notify: each notification to the peer its notificationAddress names - the eIM
(ESipa) or an SM-DP+ (ES9+.HandleNotification over the Ipa's smdp_network factory) - removed
from the eUICC only after that peer took it, an SM-DP+ that did not take one left alone for a
while (back-off kept in the store) and never sent one twice.

The SM-DP+ here is a fake network object that reads the ES9+ JSON body itself (json, base64
from binascii); the eUICC and the eIM are those of test_ipa.py. Plain functions with assert:
pytest on CPython and tools/mp_test.py on MicroPython.
"""

from ipa_core import tlv
from ipa_core.compat import a2b_base64, json
from ipa_core.errors import TransportError
from ipa_core.ipa import Ipa, MemoryStore
from ipa_core.ipa_store import NOTIFIED, NOTIFY_BACKOFF

import fake_eim as fe
from fake_euicc import EIM_FQDN, ICCID_B, ICCID_C, SMDP, FakeEuicc

SMDP2 = "dp2.example.net"


class Smdp:
    """The SM-DP+ at one address: takes HandleNotification (204) unless `down` (TransportError)
    or `answer` says otherwise; `got` holds the pendingNotification bytes it took."""

    def __init__(self):
        self.got = []
        self.down = False
        self.answer = None  # (status, body) to answer instead of 204
        self.opened = []
        self.closed = 0

    def factory(self, address):
        self.opened.append(address)
        return SmdpNet(self, address)


class SmdpNet:
    def __init__(self, dp, address):
        self.dp = dp
        self.address = address

    def post(self, path, body, content_type, headers=None):
        if self.dp.down:
            raise TransportError("connecting to %s failed: refused" % self.address)
        assert path == "/gsma/rsp2/es9plus/handleNotification", path
        assert content_type.startswith("application/json")
        assert headers["X-Admin-Protocol"].startswith("gsma/rsp/v2.")
        obj = json.loads(body)
        if self.dp.answer is not None:
            return self.dp.answer
        self.dp.got.append((self.address, a2b_base64(obj["pendingNotification"].encode())))
        return 204, b""

    def close(self):
        self.dp.closed += 1


class Clock:
    def __init__(self):
        self.t = 1000000

    def __call__(self):
        return self.t


class World:
    def __init__(self):
        self.card = FakeEuicc([])
        self.eim = fe.FakeEim("asn1", [])
        self.store = MemoryStore()
        self.dp = Smdp()
        self.clock = Clock()

    def ipa(self, session=None, eim=True, smdp=True, **config):
        ipa = Ipa(session or self.card.session(), self.eim if eim else None, self.store,
                  config=config, smdp_network=self.dp.factory if smdp else None,
                  time_s=self.clock)
        if eim:
            ipa.choose_eim()
        return ipa

    def pending(self):
        return [p["seq"] for p in self.card.pending]


def raw_of(w, seq):
    return [p["der"] for p in w.card.pending if p["seq"] == seq][0]


def test_each_notification_goes_to_its_own_peer():
    w = World()
    s1 = w.card.add_notification("install", ICCID_C)  # SMDP
    s2 = w.card.add_notification("enable", ICCID_B, address=EIM_FQDN)
    s3 = w.card.add_notification("delete", ICCID_C, address=SMDP2)
    raws = {s: raw_of(w, s) for s in (s1, s2, s3)}
    r = w.ipa().process_notifications()
    assert r["error"] is None and r["delivered"] == [s1, s2, s3] == r["removed"]
    assert w.dp.got == [(SMDP, raws[s1]), (SMDP2, raws[s3])]  # byte for byte
    assert [s for s, _ in w.eim.notifications] == [s2] and r["forSmdp"] == []
    assert r["peers"][SMDP]["peer"] == "smdp" and r["peers"][SMDP]["delivered"] == [s1]
    assert r["peers"][EIM_FQDN]["peer"] == "eim" and r["peers"][EIM_FQDN]["removed"] == [s2]
    assert w.pending() == [] and w.dp.closed == len(w.dp.opened) == 2


def test_without_a_factory_the_eim_relays_and_without_an_eim_they_stay():
    w = World()
    s1 = w.card.add_notification("install", ICCID_C)
    r = w.ipa(smdp=False).process_notifications()
    assert r["delivered"] == [s1] and r["forSmdp"] == [s1] and w.dp.opened == []
    s2 = w.card.add_notification("delete", ICCID_C)
    r = w.ipa(eim=False, smdp=False).process_notifications()
    assert r["kept"] == [s2] and r["delivered"] == [] and w.pending() == [s2]
    assert r["peers"][SMDP]["peer"] is None


def test_only_the_named_notifications():
    w = World()
    s1 = w.card.add_notification("enable", ICCID_C)
    s2 = w.card.add_notification("install", ICCID_C)
    r = w.ipa(eim=False).process_notifications(only=[s2])
    assert r["delivered"] == [s2] and w.pending() == [s1]


def test_an_unreachable_smdp_keeps_them_and_backs_off():
    w = World()
    s1 = w.card.add_notification("install", ICCID_C)
    s2 = w.card.add_notification("enable", ICCID_C)
    s3 = w.card.add_notification("enable", ICCID_B, address=EIM_FQDN)
    w.dp.down = True
    ipa = w.ipa(error_backoff_s=30)
    r = ipa.poll_once()
    n = r["notifications"]
    assert r["error"] is None and r["idle"]  # the eIM cycle goes on
    # one try for the SM-DP+ in the pass, the second one of its notifications not attempted
    assert n["failed"] == [s1] and n["kept"] == [s2] and n["delivered"] == [s3]
    assert n["peers"][SMDP]["retryInS"] == 30 and "refused" in n["peers"][SMDP]["error"]
    assert w.pending() == [s1, s2]
    assert w.store.get(NOTIFY_BACKOFF)[SMDP]["failures"] == 1
    # it is back, but the back-off holds: a poll does not even open a connection
    w.dp.down = False
    w.clock.t += 10
    opened = len(w.dp.opened)
    n = w.ipa().poll_once()["notifications"]
    assert n["kept"] == [s1, s2] and n["peers"][SMDP]["retryInS"] == 20
    assert len(w.dp.opened) == opened and w.pending() == [s1, s2]
    # once it is over: delivered, each once, and the back-off forgotten
    w.clock.t += 20
    n = w.ipa().poll_once()["notifications"]
    assert n["delivered"] == [s1, s2] and w.pending() == [] and len(w.dp.got) == 2
    assert w.store.get(NOTIFY_BACKOFF) is None
    assert w.ipa().poll_once()["notifications"]["delivered"] == [] and len(w.dp.got) == 2


def test_backoff_grows_and_a_forced_pass_ignores_it():
    w = World()
    s1 = w.card.add_notification("install", ICCID_C)
    w.dp.down = True
    for failures, wait in ((1, 30), (2, 60), (3, 120)):
        r = w.ipa(error_backoff_s=30).process_notifications()  # forced: tried each time
        assert r["failed"] == [s1] and r["peers"][SMDP]["retryInS"] == wait
        assert w.store.get(NOTIFY_BACKOFF)[SMDP]["failures"] == failures
    w.dp.down = False
    r = w.ipa().process_notifications(force=False)
    assert r["kept"] == [s1] and w.dp.got == []
    r = w.ipa().process_notifications()
    assert r["delivered"] == [s1] and w.pending() == []


def test_a_refusal_keeps_the_notification():
    w = World()
    s1 = w.card.add_notification("delete", ICCID_C)
    for answer in ((200, b'{"header":{"functionExecutionStatus":{"status":"Failed",'
                         b'"statusCodeData":{"subjectCode":"8.1","reasonCode":"6.1"}}}}'),
                   (404, b"not here")):
        w.dp.answer = answer
        r = w.ipa().process_notifications()
        assert r["failed"] == [s1] and r["removed"] == [] and w.pending() == [s1]
        assert r["peers"][SMDP]["error"]
    w.dp.answer = None
    assert w.ipa().process_notifications()["removed"] == [s1]


def test_a_factory_that_fails_is_that_peers_failure():
    w = World()
    s1 = w.card.add_notification("install", ICCID_C, address="bad address")
    s2 = w.card.add_notification("enable", ICCID_B, address=EIM_FQDN)

    def factory(address):
        raise ValueError("%r is no host name" % address)
    ipa = w.ipa()
    ipa.smdp_network = factory
    r = ipa.process_notifications()
    assert r["failed"] == [s1] and r["delivered"] == [s2] and "no host name" in \
        r["peers"]["bad address"]["error"]


def test_taken_by_the_smdp_before_a_power_cut_is_removed_not_resent():
    w = World()
    s1 = w.card.add_notification("install", ICCID_C)

    class CutAtRemoval:
        version = "1.2"

        def store_data(self, req):
            if req[:2] == b"\xbf\x30":
                raise KeyboardInterrupt("power cut")
            return w.card.handle(req)

    try:
        w.ipa(session=CutAtRemoval(), eim=False).process_notifications()
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("no power cut")
    assert w.store.get(NOTIFIED) == [s1] and len(w.dp.got) == 1
    r = w.ipa(eim=False).process_notifications()
    assert r["removed"] == [s1] and r["delivered"] == [] and len(w.dp.got) == 1
    assert w.pending() == []


def test_the_eims_result_carries_only_its_own_notifications():
    w = World()
    w.eim.queue.append(fe.euicc_package_request(1, [fe.psmo_enable(ICCID_B)]))
    r = w.ipa().poll_once()
    assert r["error"] is None and r["result"]["operations"][0][:2] == ["enableResult", 0]
    # the fake eUICC addresses its enable/disable notifications to SMDP: not in the result,
    # delivered to the SM-DP+ by the next pass
    assert r["acknowledged"] == [r["result"]["seqNumber"]]
    left = w.pending()
    assert len(left) == 2 and w.dp.got == []
    n = w.ipa().poll_once()["notifications"]
    assert n["delivered"] == left and [tlv.decode(g).tag for _, g in w.dp.got] == [0x30, 0x30]
    assert w.pending() == []


def test_one_for_an_eim_never_goes_to_an_smdp():
    w = World()
    s1 = w.card.add_notification("enable", ICCID_B, address=EIM_FQDN)
    s2 = w.card.add_notification("enable", ICCID_C)
    r = w.ipa(eim=False).process_notifications()  # no eIM open: it waits for the eIM's pass
    assert r["kept"] == [s1] and r["peers"][EIM_FQDN]["peer"] is None
    assert r["delivered"] == [s2]
    assert [a for a, _ in w.dp.got] == [SMDP] and w.pending() == [s1]
