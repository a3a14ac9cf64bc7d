"""A scripted fake eIM for core tests of the IPA procedures: the NETWORK object the IPA posts to.

`FakeEim.post(path, body, content_type, headers=None) -> (status, body)`
speaks ESipa in the ASN.1 binding (POST /gsma/rsp2/asn1) or the JSON binding
(POST /gsma/rsp2/esipa/<function>). It reads the IPA's messages and builds
its answers here from SGP32Definitions v1.2, independently of ipa_core.esipa
and ipa_core.esipa_json (only ipa_core.tlv is shared), and records what came:

    polls          GetEimPackage requests: {"eid", "notifyStateChange", "stateChangeCause"}
    results        EimPackageResult TLVs received (ProvideEimPackageResult), in order
    result_eids    the eidValue of each (hex), or None
    package_results  the EuiccPackageResult 'BF51' TLVs among them
    notifications  (seqNumber, TLV) of every notification received (HandleNotification
                   and ePRAndNotifications)
    acked          every seqNumber acknowledged (eimAcknowledgements)

Packages to hand out go into `queue` (TLVs from the builders below, or an int
eimPackageError code); an empty queue answers noEimPackageAvailable. A package
handed out is handed out again until a ProvideEimPackageResult came.
Behaviour switches: `ack` ("all" | "none" | "result-only"), `extra_acks` (seqNumbers
acknowledged on top, delivered or not), `reachable`
(a function -> bool; False raises TransportError before anything is
recorded), `status` (an HTTP status to answer everything with),
`refuse_notifications` (JSON: a Failed header for HandleNotification).
`timeline` (shared with the fake eUICC) gets ("ack", [seq...]) events.
MicroPython-clean.
"""

from ipa_core.compat import json
from ipa_core.compat import a2b_base64, b2a_base64, hexlify, unhexlify

from ipa_core import tlv
from ipa_core.errors import TransportError

from fake_euicc import EID, EIM_ID, SIG, iccid_bcd

ASN1_PATH = "/gsma/rsp2/asn1"
JSON_PATH = "/gsma/rsp2/esipa/"
SUCCESS = {"functionExecutionStatus": {"status": "Executed-Success"}}


def b64(b):
    return b2a_base64(bytes(b)).decode().strip()


def _int(tag, n):
    return tlv.encode(tag, tlv.int_encode(n))


# ---- package builders (eIM -> IPA), from SGP32Definitions ------------------------------------


def psmo_enable(iccid, rollback=False):
    """enable [3] SEQUENCE { iccid '5A', rollbackFlag NULL OPTIONAL (universal '05') }."""
    return tlv.enc(0xA3, tlv.encode(0x5A, iccid_bcd(iccid)), tlv.encode(0x05) if rollback else None)


def psmo_disable(iccid):
    return tlv.enc(0xA4, tlv.encode(0x5A, iccid_bcd(iccid)))


def psmo_delete(iccid):
    return tlv.enc(0xA5, tlv.encode(0x5A, iccid_bcd(iccid)))


def euicc_package_request(counter, ops, txid=None, eid=EID, eim_id=EIM_ID):
    """EuiccPackageRequest 'BF51' { euiccPackageSigned 30 { eimId 80, eidValue 5A, counterValue 81,
    eimTransactionId 82?, psmoList A0 { ops } }, eimSignature 5F37 } (a fake signature)."""
    signed = tlv.enc(0x30, tlv.encode(0x80, eim_id.encode()), tlv.encode(0x5A, unhexlify(eid)),
                     _int(0x81, counter), None if txid is None else tlv.encode(0x82, txid),
                     tlv.encode(0xA0, b"".join(ops)))
    return tlv.enc(0xBF51, signed, tlv.encode(0x5F37, SIG))


def ipa_euicc_data_request(tags, txid=None, ci_pkid=None, notification_seq=None):
    """IpaEuiccDataRequest 'BF52' { tagList 5C, euiccCiPKIdentifierToBeUsed 04?,
    searchCriteriaNotification [1] A1 { seqNumber [0] 80 }?, eimTransactionId [3] 83? }."""
    return tlv.enc(0xBF52, tlv.encode(0x5C, bytes(tags)),
                   None if ci_pkid is None else tlv.encode(0x04, unhexlify(ci_pkid)),
                   None if notification_seq is None else tlv.encode(0xA1, _int(0x80,
                                                                                notification_seq)),
                   None if txid is None else tlv.encode(0x83, txid))


def profile_download_trigger(activation_code, txid=None):
    """ProfileDownloadTriggerRequest 'BF54' { profileDownloadData [0] A0 { activationCode [0] 80 },
    eimTransactionId [2] 82? }."""
    return tlv.enc(0xBF54, tlv.encode(0xA0, tlv.encode(0x80, activation_code.encode())),
                   None if txid is None else tlv.encode(0x82, txid))


# ---- reading what the IPA sends ---------------------------------------------------------------


def notification_seq(t):
    """seqNumber of a PendingNotification TLV: ProfileInstallationResult BF37 { BF27 { .. BF2F } },
    otherSignedNotification 30 { BF2F } or compactOtherSignedNotification A1 { BF2F }."""
    if t.tag == 0xBF37:
        t = t.need(0xBF27)
    elif t.tag not in (0x30, 0xA1):
        raise AssertionError("FakeEim: no PendingNotification with tag %X" % t.tag)
    return t.need(0xBF2F).need(0x80).as_int()


def result_seq(t):
    """seqNumber of a signed EuiccPackageResult 'BF51' { A0 { 30 { ... 83 } } }, or None."""
    a0 = t.find(0xA0)
    if a0 is None:
        return None
    return a0.need(0x30).need(0x83).as_int()


class FakeEim:
    def __init__(self, binding="asn1", timeline=None):
        self.binding = binding
        self.timeline = timeline if timeline is not None else []
        self.queue = []
        self.polls = []
        self.results = []
        self.result_eids = []
        self.package_results = []
        self.notifications = []
        self.acked = []
        self.paths = []
        self.outstanding = None
        self.ack = "all"
        self.extra_acks = []  # seqNumbers acknowledged on top (an eIM that over-acknowledges)
        self.reachable = None
        self.status = None
        self.refuse_notifications = False

    # -- the network interface

    def post(self, path, body, content_type, headers=None):
        if self.reachable is not None and not self.reachable():
            raise TransportError("FakeEim: connecting to eim.example.com failed: unreachable")
        self.paths.append((path, content_type))
        if self.status is not None:
            return self.status, b""
        if self.binding == "asn1":
            assert path == ASN1_PATH, path
            assert content_type == "application/x-gsma-rsp-asn1", content_type
            return self._asn1(bytes(body))
        assert path.startswith(JSON_PATH), path
        assert content_type.startswith("application/json"), content_type
        return self._json(path[len(JSON_PATH):], json.loads(bytes(body).decode()))

    # -- ASN.1 binding

    def _asn1(self, body):
        t = tlv.decode(body)
        if t.tag == 0xBF4F:
            self._poll(t)
            return 200, tlv.encode(0xBF4F, self._next_package())
        if t.tag == 0xBF50:
            acks = self._result(t)
            if not acks:
                return 200, tlv.encode(0xBF50, tlv.encode(0x30))  # emptyResponse
            return 200, tlv.encode(0xBF50, tlv.encode(0xBF53, b"".join(
                _int(0x80, s) for s in acks)))
        if t.tag == 0xBF3D:
            c = t.children()[0]
            assert c.tag == 0xA0, "HandleNotification: expected pendingNotification [0] A0"
            self._notification(c.children()[0])
            return 204, b""
        raise AssertionError("FakeEim: unexpected ESipa message %X" % t.tag)

    def _next_package(self):
        # A package handed out stays outstanding until a result comes: an answer lost on
        # the way to the IPA must not lose the package.
        if self.outstanding is not None:
            return self.outstanding
        if not self.queue:
            return _int(0x02, 1)  # eimPackageError noEimPackageAvailable
        p = self.queue.pop(0)
        if isinstance(p, int):
            return _int(0x02, p)
        self.outstanding = p
        return p

    def _poll(self, t):
        eid = t.need(0x5A)
        cause = t.find(0x81)
        self.polls.append({"eid": hexlify(eid.value).decode().upper(),
                           "notifyStateChange": t.find(0x80) is not None,
                           "stateChangeCause": None if cause is None else cause.as_int()})

    def _notification(self, n):
        seq = notification_seq(n)
        self.notifications.append((seq, n.raw))
        self.timeline.append(("notification", seq))
        return seq

    def _result(self, t):
        """Record a ProvideEimPackageResult 'BF50'; return the seqNumbers to acknowledge."""
        eid = t.find(0x5A)
        self.result_eids.append(None if eid is None else hexlify(eid.value).decode().upper())
        kids = [c for c in t if c.tag != 0x5A]
        assert len(kids) == 1, "ProvideEimPackageResult: one EimPackageResult expected"
        r = kids[0]
        self.results.append(r.raw)
        self.outstanding = None
        seqs = []
        epr = None
        if r.tag == 0xBF51:
            epr = r
        elif r.tag == 0x30:  # ePRAndNotifications { BF51, notificationList [0] A0 }
            epr = r.need(0xBF51)
            for n in r.need(0xA0):
                seqs.append(self._notification(n))
        if epr is not None:
            self.package_results.append(epr.raw)
            s = result_seq(epr)
            if s is not None:
                seqs.insert(0, s)
        if self.ack == "none":
            seqs = []
        elif self.ack == "result-only":
            seqs = seqs[:1] if epr is not None and result_seq(epr) is not None else []
        seqs = seqs + self.extra_acks
        self.acked.extend(seqs)
        self.timeline.append(("ack", list(seqs)))
        return seqs

    # -- JSON binding (keys = ASN.1 names, TLVs as base64)

    def _json(self, function, obj):
        if function == "getEimPackage":
            eid = obj["eidValue"]
            self.polls.append({"eid": eid, "notifyStateChange": bool(obj.get("notifyStateChange")),
                               "stateChangeCause": obj.get("stateChangeCause")})
            p = self._next_package()
            t = tlv.decode(p)
            names = {0xBF51: "euiccPackageRequest", 0xBF52: "ipaEuiccDataRequest",
                     0xBF54: "profileDownloadTriggerRequest"}
            ans = {"header": SUCCESS}
            if t.tag == 0x02:
                ans["eimPackageError"] = t.as_int()
            else:
                ans[names[t.tag]] = b64(p)
            return 200, json.dumps(ans).encode()
        if function == "provideEimPackageResult":
            r = a2b_base64(obj["eimPackageResult"].encode())
            acks = self._result(tlv.decode(tlv.encode(0xBF50, r)))
            ans = {"header": SUCCESS}
            if acks:
                ans["eimAcknowledgements"] = b64(tlv.encode(0xBF53, b"".join(
                    _int(0x80, s) for s in acks)))
            return 200, json.dumps(ans).encode()
        if function == "handleNotification":
            if self.refuse_notifications:
                return 200, json.dumps({"header": {"functionExecutionStatus": {
                    "status": "Failed", "statusCodeData": {"subjectCode": "8.1",
                                                           "reasonCode": "1.1"}}}}).encode()
            self._notification(tlv.decode(a2b_base64(obj["pendingNotification"].encode())))
            return 204, b""
        raise AssertionError("FakeEim: unexpected JSON function %r" % function)
