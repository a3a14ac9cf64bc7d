"""ipa_core.ipa_cancel: the open download session in the store, and its cancel after a cut.

A scripted eUICC (every ES10 request checked byte for byte) and a scripted SM-DP+ (every ES9+
request checked as JSON), from tests/core/test_ipa_download.py. What a user would check: the
record exists exactly while the SM-DP+ could hold the order, a cut at any point leaves no
record or one the next start acts on, that start cancels on the eUICC then on the server
with the eUICC's signed answer (kept before the server call), an installed profile is never
cancelled, a session the eUICC lost is reported with what to do and given up after a bound.
Plain functions with assert (pytest on CPython, tools/mp_test.py on MicroPython).
"""

from ipa_core import ipa_cancel, tlv
from ipa_core import ipa_download as dl
from ipa_core.errors import TransportError
from ipa_core.ipa_direct import DirectTransport
from ipa_core.ipa_store import DOWNLOAD, MemoryStore

from test_ipa_download import (BPP, CSR, CSR_ERR, TID_HEX, Es9Net, Recorder, ac_ok, b64,
                               cancel_es10, cancel_ok, es10_head, es9_requests_ok,
                               expect_error, failed, hx, ia_ok, load_script, pir, segments)

AC = "LPA:1$dp.example$ABC-123"
PIR_SEARCH = "BF2B 06 A0 04 81 02 07 80"  # RetrieveNotificationsList, notificationInstall


class PowerCut(BaseException):
    """The device loses power: nothing in the IPA may catch it."""


class TimelineStore(MemoryStore):
    """A MemoryStore that writes ("put"/"delete", stage) into the shared timeline and can
    lose power at its n-th event of the whole timeline."""

    def __init__(self, timeline, cut=None):
        MemoryStore.__init__(self)
        self.timeline = timeline
        self.cut = cut

    def put(self, key, value):
        MemoryStore.put(self, key, value)
        self.timeline.append(("put", value.get("stage")))
        self._maybe_cut()

    def delete(self, key):
        MemoryStore.delete(self, key)
        self.timeline.append(("delete", None))
        self._maybe_cut()

    def _maybe_cut(self):
        if self.cut is not None and len(self.timeline) >= self.cut:
            raise PowerCut()


class Cutting:
    """Wraps a peer (card or network): power goes after the timeline's n-th event."""

    def __init__(self, peer, timeline, cut, method):
        self.peer = peer
        self.timeline = timeline
        self.cut = cut
        self.version = "1.2"
        setattr(self, method, self._call)
        self.method = method

    def _call(self, *args):
        r = getattr(self.peer, self.method)(*args)
        if len(self.timeline) >= self.cut:
            raise PowerCut()
        return r


def record(stage="authenticated", **kw):
    r = {"v": 1, "transactionId": TID_HEX, "smdpAddress": "dp.example", "matchingId": "ABC-123",
         "transport": "direct", "eimId": None, "attempts": 0, "stage": stage}
    r.update(kw)
    return r


def pir_list():
    """RetrieveNotificationsList answer holding the PIR of TID (the load finished)."""
    return tlv.enc(0xBF2B, tlv.enc(0xA0, pir()))


def direct(net):
    return lambda rec: DirectTransport(net)


def refused_download(store, tl, server_cancel):
    """A download the SM-DP+ refuses at AuthenticateClient (matchingIdRefused), cancelled on
    the eUICC, then at the SM-DP+ answered `server_cancel` -> the DownloadError."""
    card = Recorder(es10_head()[:3] + cancel_es10(127), tl)
    net = Es9Net(es9_requests_ok()[:1] + [("authenticateClient", None, failed("8.2.6", "3.8")),
                                          ("cancelSession", None, server_cancel)], tl)
    e = expect_error(lambda: dl.download(card, DirectTransport(net), activation=AC,
                                         store=store), "AuthenticateClient")
    card.done()
    net.done()
    return e


# ---- the record during a download ----------------------------------------------------------


def test_record_lives_from_authenticate_server_to_the_pir():
    tl = []
    store = TimelineStore(tl)
    card = Recorder(es10_head() + load_script(), tl)
    net = Es9Net(es9_requests_ok(), tl)
    r = dl.download(card, DirectTransport(net), activation=AC, store=store)
    card.done()
    net.done()
    assert r["ok"] is True
    n = len(segments())
    assert tl == [("es10", "BF20"), ("es10", "BF2E"), ("es9", "initiateAuthentication"),
                  ("es10", "BF38"), ("put", "authenticated"), ("es9", "authenticateClient"),
                  ("es10", "BF21"), ("es9", "getBoundProfilePackage"), ("put", "loading")] + \
        [("es10", hx(x[:2])) for x in segments()] + [("delete", None)]
    assert n == 9 and store.get(DOWNLOAD) is None


def test_a_failure_cancelled_on_both_sides_leaves_no_record():
    tl = []
    store = TimelineStore(tl)
    refused_download(store, tl, cancel_ok())
    # the eUICC's signed answer was kept before it went to the SM-DP+, dropped after
    assert tl[-4:] == [("es10", "BF41"), ("put", "cancelled"), ("es9", "cancelSession"),
                       ("delete", None)], tl
    assert store.get(DOWNLOAD) is None


def test_a_server_cancel_that_fails_keeps_the_signed_answer():
    tl = []
    store = TimelineStore(tl)
    e = refused_download(store, tl, (0, TransportError("connection reset")))
    assert e.result["cancel"]["euicc"] is True and e.result["cancel"]["server"] is False
    rec = store.get(DOWNLOAD)
    assert rec["stage"] == "cancelled" and rec["cancelSessionResponse"] == CSR
    assert rec["reason"] == "undefinedReason" and "connection reset" in rec["error"]


def test_a_power_cut_at_every_event_leaves_no_record_or_one_to_act_on():
    """Cut after every event of a whole download; the record must be there exactly when the
    eUICC answered AuthenticateServer and the PIR is not yet out, with the stage to cancel."""
    tl = []
    full = TimelineStore(tl)
    card = Recorder(es10_head() + load_script(), tl)
    dl.download(card, DirectTransport(Es9Net(es9_requests_ok(), tl)), activation=AC, store=full)
    events = list(tl)
    assert len(events) == 19
    for cut in range(1, len(events) + 1):
        tl = []
        store = TimelineStore(tl, cut)
        card = Cutting(Recorder(es10_head() + load_script(), tl), tl, cut, "store_data")
        net = Cutting(Es9Net(es9_requests_ok(), tl), tl, cut, "post")
        try:
            dl.download(card, DirectTransport(net), activation=AC, store=store)
        except PowerCut:
            pass
        else:
            raise AssertionError("no power cut at event %d" % cut)
        assert tl == events[:cut]
        rec = store.get(DOWNLOAD)
        opened = ("put", "authenticated") in tl
        loading = ("put", "loading") in tl
        if not opened or ("delete", None) in tl:
            assert rec is None, (cut, rec)
        else:
            assert rec["transactionId"] == TID_HEX and rec["smdpAddress"] == "dp.example"
            assert rec["stage"] == ("loading" if loading else "authenticated"), (cut, rec)


# ---- recover() after a cut -------------------------------------------------------------------


def test_recover_cancels_on_the_euicc_then_on_the_smdp():
    tl = []
    store = TimelineStore(tl)
    MemoryStore.put(store, DOWNLOAD, record())
    card = Recorder(cancel_es10(127), tl)
    net = Es9Net([("cancelSession", {"transactionId": TID_HEX,
                                     "cancelSessionResponse": b64(CSR)}, cancel_ok())], tl)
    r = ipa_cancel.recover(card, store, direct(net))
    card.done()
    net.done()
    assert r["outcome"] == "cancelled" and r["transactionId"] == TID_HEX
    assert "cancelled on the eUICC and the server (undefinedReason)" in r["message"]
    assert tl == [("es10", "BF41"), ("put", "cancelled"), ("es9", "cancelSession"),
                  ("delete", None)]
    assert net.closed and store.get(DOWNLOAD) is None


def test_recover_during_the_load_cancels_with_load_bpp_execution_error():
    tl = []
    store = MemoryStore()
    store.put(DOWNLOAD, record("loading"))
    card = Recorder(cancel_es10(5), tl)
    net = Es9Net([("cancelSession", None, cancel_ok())], tl)
    r = ipa_cancel.recover(card, store, direct(net))
    card.done()
    net.done()
    assert r["outcome"] == "cancelled" and "loadBppExecutionError" in r["message"]


def test_an_installed_profile_is_not_cancelled():
    """The load finished before the cut: the eUICC ended the session with a PIR, which the
    notification path delivers; nothing goes to the SM-DP+."""
    tl = []
    store = MemoryStore()
    store.put(DOWNLOAD, record("loading"))
    card = Recorder(cancel_es10(5, CSR_ERR) + [(PIR_SEARCH, pir_list())], tl)
    net = Es9Net([], tl)
    r = ipa_cancel.recover(card, store, direct(net))
    card.done()
    net.done()
    assert r["outcome"] == "installed" and "waits on the eUICC as a notification" in r["message"]
    assert store.get(DOWNLOAD) is None


def test_a_session_the_euicc_lost_is_explained_and_given_up_after_a_bound():
    tl = []
    store = MemoryStore()
    store.put(DOWNLOAD, record())
    card = Recorder(cancel_es10(127, CSR_ERR) + [(PIR_SEARCH, "BF2B 02 A0 00")], tl)
    net = Es9Net([], tl)
    r = ipa_cancel.recover(card, store, direct(net))
    card.done()
    assert r["outcome"] == "lost"
    assert "no longer knows it" in r["message"] and "ask the operator" in r["message"]
    assert "matchingId ABC-123" in r["message"] and "dp.example" in r["message"]
    assert store.get(DOWNLOAD)["stage"] == "lost"
    for n in range(2, ipa_cancel.MAX_ATTEMPTS + 1):  # nothing more goes to the card
        r = ipa_cancel.recover(Recorder([], tl), store, direct(net))
        assert r["outcome"] == ("given up" if n == ipa_cancel.MAX_ATTEMPTS else "lost"), (n, r)
    assert store.get(DOWNLOAD) is None
    assert ipa_cancel.recover(Recorder([], tl), store, direct(net)) is None
    net.done()


def test_an_unreachable_server_is_retried_with_the_kept_answer_then_given_up():
    tl = []
    store = MemoryStore()
    store.put(DOWNLOAD, record())
    card = Recorder(cancel_es10(127), tl)
    down = Es9Net([("cancelSession", None, (0, TransportError("connection refused")))], tl)
    r = ipa_cancel.recover(card, store, direct(down))
    card.done()
    assert r["outcome"] == "pending" and "connection refused" in r["message"]
    assert store.get(DOWNLOAD)["cancelSessionResponse"] == CSR
    # next start: no ES10 (the eUICC cannot sign again), the same answer to the SM-DP+
    net = Es9Net([("cancelSession", {"transactionId": TID_HEX,
                                     "cancelSessionResponse": b64(CSR)}, cancel_ok())], tl)
    r = ipa_cancel.recover(Recorder([], tl), store, direct(net))
    net.done()
    assert r["outcome"] == "cancelled" and store.get(DOWNLOAD) is None
    # never reachable: given up after MAX_ATTEMPTS starts
    store.put(DOWNLOAD, record("cancelled", cancelSessionResponse=CSR, reason="undefinedReason"))
    for _ in range(ipa_cancel.MAX_ATTEMPTS):
        down = Es9Net([("cancelSession", None, (0, TransportError("no route")))], tl)
        r = ipa_cancel.recover(Recorder([], tl), store, direct(down))
    assert r["outcome"] == "given up" and "ask the operator" in r["message"]
    assert store.get(DOWNLOAD) is None


def test_a_server_that_no_longer_knows_the_session_ends_the_record():
    store = MemoryStore()
    store.put(DOWNLOAD, record("cancelled", cancelSessionResponse=CSR, reason="undefinedReason"))
    net = Es9Net([("cancelSession", None, failed("8.10.1", "3.9"))], [])
    r = ipa_cancel.recover(Recorder([], []), store, direct(net))
    assert r["outcome"] == "cancelled" and "8.10.1" in r["message"]
    assert store.get(DOWNLOAD) is None


def test_an_unreadable_record_is_dropped():
    store = MemoryStore()
    store.put(DOWNLOAD, {"v": 9})
    logged = []
    assert ipa_cancel.recover(Recorder([], []), store, None,
                              lambda level, msg: logged.append(level)) is None
    assert store.get(DOWNLOAD) is None and logged == ["error"]


# ---- a retry that meets the old session ------------------------------------------------------


def test_matching_id_refused_names_the_lost_session_and_keeps_it():
    store = MemoryStore()
    store.put(DOWNLOAD, record("lost", attempts=1))
    e = refused_download(store, [], cancel_ok())
    assert "matchingIdRefused" in str(e)
    assert "an earlier download of this eUICC was cut off (transaction %s, lost)" % TID_HEX \
        in str(e)
    assert "ask the operator to reset the order" in str(e)
    # the new session was cancelled; the lost one is still there to explain (and show)
    assert store.get(DOWNLOAD) == record("lost", attempts=1)


def test_a_successful_retry_drops_the_lost_session_of_that_order():
    store = MemoryStore()
    store.put(DOWNLOAD, record("lost", transactionId="AA" * 16))
    card = Recorder(es10_head() + load_script(), [])
    net = Es9Net(es9_requests_ok(), [])
    assert dl.download(card, DirectTransport(net), activation=AC, store=store)["ok"]
    assert store.get(DOWNLOAD) is None


def test_a_pending_cancel_survives_a_new_download():
    """A cancel the SM-DP+ has not taken yet rides inside the new record and comes back."""
    tl = []
    store = TimelineStore(tl)
    old = record("cancelled", transactionId="AA" * 16, cancelSessionResponse=CSR,
                 reason="undefinedReason", smdpAddress="other.example")
    MemoryStore.put(store, DOWNLOAD, old)
    card = Recorder(es10_head() + load_script(), tl)
    net = Es9Net(es9_requests_ok(), tl)
    assert dl.download(card, DirectTransport(net), activation=AC, store=store)["ok"]
    assert tl[4] == ("put", "authenticated")
    assert store.get(DOWNLOAD) == old


def test_without_a_store_nothing_is_recorded():
    card = Recorder(es10_head() + load_script(), [])
    net = Es9Net([("initiateAuthentication", None, ia_ok()), ("authenticateClient", None,
                                                              ac_ok()),
                  ("getBoundProfilePackage", None, (200, {
                      "header": {"functionExecutionStatus": {"status": "Executed-Success"}},
                      "transactionId": TID_HEX, "boundProfilePackage": b64(BPP)}))], [])
    assert dl.download(card, DirectTransport(net), activation=AC)["ok"]
    card.done()
    net.done()


def test_a_server_this_caller_cannot_reach_waits_without_counting():
    """A direct `ipa download` meeting a session relayed by an eIM: the eUICC cancels now,
    the signed answer waits for a caller that reaches the eIM; no attempt is used up."""
    tl = []
    store = MemoryStore()
    store.put(DOWNLOAD, record(transport="indirect", eimId="eim-1"))
    card = Recorder(cancel_es10(127), tl)
    r = ipa_cancel.recover(card, store, lambda rec: None)
    card.done()
    assert r["outcome"] == "pending" and "waits for a command that reaches it" in r["message"]
    rec = store.get(DOWNLOAD)
    assert rec["stage"] == "cancelled" and rec["cancelSessionResponse"] == CSR
    assert rec["attempts"] == 0
