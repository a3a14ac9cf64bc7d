"""A small stateful fake IoT eUICC for core tests of the IPA procedures (ipa_core.ipa).

It answers ES10 requests (`store_data(request) -> response`) with TLVs built
here from the SGP.22 / SGP.32 ASN.1 modules, independently of ipa_core.es10
(only ipa_core.tlv is shared): profiles that can be enabled / disabled /
deleted by an eUICC Package, signed-looking results and notifications
(fixed fake signatures: the IPA never verifies them), the counterValue replay
check, ProfileRollback, and the information functions an ipaEuiccDataRequest
needs. MicroPython-clean.

    card = FakeEuicc(timeline)      # timeline: a list both fakes append events to
    session = card.session()        # what the IPA gets; card survives a "restart"

Counters for assertions: `loads` (LoadEuiccPackage requests received),
`runs` (packages accepted and run), `rollbacks`; `pending` holds the stored
notifications and results as {"seq", "kind": "notification"|"result", "der"}.
"""

from ipa_core import tlv

EID = "89049032123451234512345678901235"
ICCID_A = "89000123456789012341"
ICCID_B = "89000123456789012358"
ICCID_C = "89000123456789012366"
SMDP = "smdp.example.com"
SMDS = "smds.example.com"
EIM_ID = "eim1"
EIM_FQDN = "eim.example.com"
TOKEN = 7
CI_PKID = "F54172BDF98A95D65CBEB88A38A1C11D800A85C3"
SIG = b"\xab" * 64
# Certificate-shaped SEQUENCE contents (tbsCertificate, signatureAlgorithm, signature).
EUM_CERT = b"\x30\x03\x02\x01\x01\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02\x03\x03\x00\x01\x02"
EUICC_CERT = b"\x30\x03\x02\x01\x02\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02\x03\x03\x00\x01\x02"
# SubjectPublicKeyInfo of the eIM's TLS key (shape only).
TLS_SPKI = (b"\x30\x19\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48\xce\x3d"
            b"\x03\x01\x07\x03\x02\x00\x04")

# NotificationEvent BIT STRING values (DER, one named bit): install 0, enable 1, disable 2, delete 3.
EVENT_BITS = {"install": b"\x07\x80", "enable": b"\x06\x40", "disable": b"\x05\x20",
              "delete": b"\x04\x10"}


def iccid_bcd(digits):
    """ICCID digits -> the 10 nibble-swapped bytes ('F' padded)."""
    digits = digits + "F" * (20 - len(digits))
    out = []
    for i in range(0, 20, 2):
        out.append(int(digits[i + 1], 16) << 4 | int(digits[i], 16))
    return bytes(out)


def iccid_digits(b):
    s = ""
    for x in b:
        s += "%X%X" % (x & 0x0F, x >> 4)
    return s.rstrip("F")


def _int(tag, n):
    return tlv.encode(tag, tlv.int_encode(n))


class FakeSession:
    """The ES10 session the IPA talks to: forwards to the FakeEuicc."""

    version = "1.2"

    def __init__(self, card):
        self.card = card

    def store_data(self, request):
        return self.card.handle(bytes(request))


class FakeEuicc:
    def __init__(self, timeline=None, profiles=None):
        self.timeline = timeline if timeline is not None else []
        if profiles is None:
            profiles = [(ICCID_A, True), (ICCID_B, False), (ICCID_C, False)]
        self.profiles = [{"iccid": i, "enabled": e} for i, e in profiles]
        self.eims = {EIM_ID: {"counter": 0, "token": TOKEN, "fqdn": EIM_FQDN}}
        self.pending = []
        self.seq = 0
        self.loads = 0
        self.runs = 0
        self.list_calls = 0  # ListNotification requests
        self.whole_lists = 0  # RetrieveNotificationsList requests without a search criterion
        self.rollbacks = 0
        self.rollback_ctx = None
        self.ecall = False
        self.default_dp = SMDP
        self.eim_config_extra = None  # replaces the configuration data list when set

    def session(self):
        return FakeSession(self)

    def enabled(self):
        for p in self.profiles:
            if p["enabled"]:
                return p["iccid"]
        return None

    def _profile(self, iccid):
        for p in self.profiles:
            if p["iccid"] == iccid:
                return p
        return None

    # -- stored objects

    def _next_seq(self):
        self.seq += 1
        return self.seq

    def add_notification(self, event, iccid, address=SMDP):
        """OtherSignedNotification 30 { BF2F { 80 seq, 81 event, 0C address, 5A iccid }, 5F37 }."""
        seq = self._next_seq()
        meta = tlv.enc(0xBF2F, _int(0x80, seq), tlv.encode(0x81, EVENT_BITS[event]),
                       tlv.encode(0x0C, address.encode()), tlv.encode(0x5A, iccid_bcd(iccid)))
        self.pending.append({"seq": seq, "kind": "notification",
                             "der": tlv.enc(0x30, meta, tlv.encode(0x5F37, SIG))})
        return seq

    def _set_enabled(self, p, on):
        p["enabled"] = on
        self.add_notification("enable" if on else "disable", p["iccid"])

    def _sign_result(self, eim_id, counter, txid, results):
        seq = self._next_seq()
        data = tlv.enc(0x30, tlv.encode(0x80, eim_id.encode()), _int(0x81, counter),
                       None if txid is None else tlv.encode(0x82, txid), _int(0x83, seq),
                       tlv.encode(0x30, b"".join(results)))
        der = tlv.encode(0xBF51, tlv.enc(0xA0, data, tlv.encode(0x5F37, SIG)))
        self.pending.append({"seq": seq, "kind": "result", "der": der})
        return der, seq

    def results(self):
        return [p for p in self.pending if p["kind"] == "result"]

    def notifications(self):
        return [p for p in self.pending if p["kind"] == "notification"]

    # -- ES10 dispatch

    def handle(self, req):
        t = tlv.decode(req)
        f = {0xBF3E: self._get_eid, 0xBF51: self._load_euicc_package,
             0xBF2B: self._retrieve_notifications, 0xBF30: self._remove_notification,
             0xBF28: self._list_notification,
             0xBF58: self._profile_rollback, 0xBF55: self._eim_configuration,
             0xBF20: self._info1, 0xBF22: self._info2, 0xBF3C: self._addresses,
             0xBF56: self._get_certs}.get(t.tag)
        if f is None:
            raise AssertionError("FakeEuicc: no ES10 function with tag %X" % t.tag)
        return f(t)

    def _get_eid(self, t):
        from ipa_core.compat import unhexlify

        return tlv.enc(0xBF3E, tlv.encode(0x5A, unhexlify(EID)))

    def _load_euicc_package(self, t):
        self.loads += 1
        signed = t.need(0x30)
        eim_id = signed.need(0x80).as_str()
        counter = signed.need(0x81).as_int()
        tid = signed.find(0x82)
        txid = None if tid is None else tid.value
        self.timeline.append(("load", counter))
        eim = self.eims[eim_id]
        from ipa_core.compat import hexlify

        code = None
        if hexlify(signed.need(0x5A).value).decode().upper() != EID:
            code = 3  # invalidEid
        elif counter <= eim["counter"]:
            code = 4  # replayError
        elif self.ecall:
            code = 104  # ecallActive
        if code is not None:  # EuiccPackageErrorSigned, not stored
            data = tlv.enc(0x30, tlv.encode(0x80, eim_id.encode()), _int(0x81, counter),
                           None if txid is None else tlv.encode(0x82, txid), _int(0x02, code))
            return tlv.encode(0xBF51, tlv.enc(0xA1, data, tlv.encode(0x5F37, SIG)))
        eim["counter"] = counter
        self.runs += 1
        self.rollback_ctx = None
        results = []
        rollback_to = None
        for op in signed.need(0xA0):
            if op.tag == 0xA3:
                p = self._profile(iccid_digits(op.need(0x5A).value))
                prev = self.enabled()
                if p is None:
                    results.append(_int(0x83, 1))
                elif p["enabled"]:
                    results.append(_int(0x83, 2))
                else:
                    if prev is not None:
                        self._set_enabled(self._profile(prev), False)
                    self._set_enabled(p, True)
                    if op.find(0x05) is not None:
                        rollback_to = prev
                    results.append(_int(0x83, 0))
            elif op.tag == 0xA4:
                p = self._profile(iccid_digits(op.need(0x5A).value))
                if p is None or not p["enabled"]:
                    results.append(_int(0x84, 1 if p is None else 2))
                else:
                    self._set_enabled(p, False)
                    results.append(_int(0x84, 0))
            elif op.tag == 0xA5:
                p = self._profile(iccid_digits(op.need(0x5A).value))
                if p is None or p["enabled"]:
                    results.append(_int(0x85, 1 if p is None else 2))
                else:
                    self.profiles.remove(p)
                    self.add_notification("delete", p["iccid"])
                    results.append(_int(0x85, 0))
            else:
                results.append(_int(0x02, 2))  # processingTerminated unknownOrDamagedCommand
                break
        der, seq = self._sign_result(eim_id, counter, txid, results)
        if rollback_to is not None:
            self.rollback_ctx = {"to": rollback_to, "eim": eim_id, "counter": counter,
                                 "txid": txid, "seq": seq}
        return der

    def _retrieve_notifications(self, t):
        crit = t.find(0xA0)
        c = crit.children()[0] if crit is not None and crit.length else None
        if c is not None and c.tag == 0x82:
            return self._list(0xA2, self.results())
        if c is not None and c.tag == 0x80:
            hits = [p for p in self.pending if p["seq"] == c.as_int()]
            if hits and hits[0]["kind"] == "result":
                return self._list(0xA2, hits)
            return self._list(0xA0, hits)
        self.whole_lists += 1
        return self._list(0xA0, self.notifications())

    def _list_notification(self, t):
        """ES10b.ListNotification: the NotificationMetadata of each pending notification."""
        self.list_calls += 1
        metas = [tlv.decode(p["der"]).need(0xBF2F).raw for p in self.notifications()]
        return tlv.encode(0xBF28, tlv.encode(0xA0, b"".join(metas)))

    def _list(self, tag, entries):
        return tlv.encode(0xBF2B, tlv.encode(tag, b"".join(p["der"] for p in entries)))

    def _remove_notification(self, t):
        seq = t.need(0x80).as_int()
        before = len(self.pending)
        self.pending = [p for p in self.pending if p["seq"] != seq]
        found = len(self.pending) != before
        self.timeline.append(("remove", seq, found))
        return tlv.enc(0xBF30, _int(0x80, 0 if found else 1))

    def _profile_rollback(self, t):
        self.rollbacks += 1
        self.timeline.append(("rollback",))
        ctx = self.rollback_ctx
        if ctx is None:
            return tlv.enc(0xBF58, _int(0x02, 1))  # rollbackNotAllowed
        self.rollback_ctx = None
        cur = self.enabled()
        if cur is not None:
            self._set_enabled(self._profile(cur), False)
        self._set_enabled(self._profile(ctx["to"]), True)
        self.pending = [p for p in self.pending if p["seq"] != ctx["seq"]]
        der, _seq = self._sign_result(ctx["eim"], ctx["counter"], ctx["txid"],
                                      [_int(0x8C, 0)])
        return tlv.enc(0xBF58, _int(0x02, 0), der)

    def _eim_configuration(self, t):
        if self.eim_config_extra is not None:
            return tlv.enc(0xBF55, tlv.encode(0xA0, b"".join(self.eim_config_extra)))
        items = []
        for eim_id in self.eims:
            e = self.eims[eim_id]
            items.append(tlv.enc(
                0x30, tlv.encode(0x80, eim_id.encode()), tlv.encode(0x81, e["fqdn"].encode()),
                _int(0x83, e["counter"]), _int(0x84, e["token"]),
                tlv.encode(0xA6, tlv.encode(0xA0, tlv.decode(TLS_SPKI).value)),
                tlv.encode(0x87, b"\x07\x80")))  # eimRetrieveHttps
        return tlv.enc(0xBF55, tlv.encode(0xA0, b"".join(items)))

    def _info1(self, t):
        from ipa_core.compat import unhexlify

        k = tlv.encode(0x04, unhexlify(CI_PKID))
        return tlv.enc(0xBF20, tlv.encode(0x82, b"\x02\x05\x00"), tlv.encode(0xA9, k),
                       tlv.encode(0xAA, k))

    def _info2(self, t):
        return tlv.enc(0xBF22, tlv.encode(0x81, b"\x02\x03\x01"), tlv.encode(0x82, b"\x02\x05\x00"),
                       tlv.encode(0x83, b"\x01\x00\x00"), tlv.encode(0x90, b"\x00"))

    def _addresses(self, t):
        return tlv.enc(0xBF3C, None if self.default_dp is None else
                       tlv.encode(0x80, self.default_dp.encode()), tlv.encode(0x81, SMDS.encode()))

    def _get_certs(self, t):
        from ipa_core.compat import hexlify

        k = t.find(0x80)
        if k is not None and hexlify(k.value).decode().upper() != CI_PKID:
            return tlv.enc(0xBF56, _int(0x81, 1))  # invalidCiPKId
        return tlv.enc(0xBF56, tlv.enc(0xA0, tlv.encode(0xA5, EUM_CERT),
                                       tlv.encode(0xA6, EUICC_CERT)))
