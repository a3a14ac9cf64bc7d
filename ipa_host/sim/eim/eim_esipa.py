"""The eIM side of ESipa (SGP.32 v1.2 5.14, 6.3): GetEimPackage, ProvideEimPackageResult,
HandleNotification, and the per-EID queue of eIM Packages behind them.

    svc = EsipaService(store, eim_id, eim_private_key, version="1.2")
    svc.queue(eid, "psmo", {"ops": [{"op": "enable", "iccid": "89..."}]})
    answer, info = svc.handle(request_der, conn)      # one ESipa message -> its answer

Packages are built when they are handed out, not when queued: an
EuiccPackageRequest gets the next counterValue of that EID (persisted before
the answer leaves) and is signed then with ipa_host.sim.eim.signer; every
package carries a fresh eimTransactionId (8 random bytes) unless the operator
chose one, so results can be matched to what was sent. A package leaves the
queue when it is handed out. One handed out that got no result (none matched
its eimTransactionId) is offered again, the same bytes (same counterValue,
same eimTransactionId), at the EID's next GetEimPackage, before anything
queued: the IPA finishes a package it wrote down before it polls again, so a
poll means the answer was lost or the IPA was cut before writing it
(docs/sim-eim.md, "Re-offer"). max_offers (MAX_OFFERS) hand-outs at most,
the last one marks the package givenUp.

ProvideEimPackageResult: eidValue is optional; without it the EID is found
from the eimTransactionId of a delivered package, else from the last EID
polled on the same connection, else the one EID whose last package awaits its
result (SGP.32 v1.0 results carry no EID, and v1.0's ipaEuiccData no transaction
id), else missingEid (v1.0, whose answer has no error alternative: HTTP 400).
The version (`version`, ipa_host.sim.eim.eim_codec) picks the forms read and
written. euiccSignEPR / euiccSignEPE
are verified with the eUICC certificate when the eIM knows it
(`signatureValid` true/false, None when it does not). Every seqNumber
received (the result's and the notifications') is acknowledged in
eimAcknowledgements. HandleNotification records the notification under the
EID it names (compact form), the EID in its eUICC certificate, the eUICC
whose certificate verifies it, or the connection's last EID, in that order.
"""

import binascii
import os
import time

from ipa_core import tlv
from ipa_core.errors import TlvError
from ipa_host.sim.eim import eim_codec as codec
from ipa_host.sim import pki
from ipa_host.sim.eim import signer
from ipa_host.sim.eim.eim_state import MAX_QUEUE, check_eid

KINDS = ("psmo", "eco", "ipaEuiccDataRequest", "profileDownloadTrigger")
MAX_OFFERS = 5  # hand-outs of one package without a result before the eIM gives up on it
MAX_BODY = 1 << 20  # bytes of one ESipa request; the IPA's largest is far below

RELAY_NOTE = ("indirect profile download (ES9+ relay through the eIM) is not available in this "
              "eIM simulator yet: no SM-DP+ behind it")


class EsipaRefused(Exception):
    """A request this eIM answers with HTTP 400: `reason` says what was wrong."""


def _hex(b):
    return binascii.hexlify(bytes(b)).decode().upper()


def _eid_text(eid_bytes):
    """EID bytes -> 32 digits, or None when they are not 16 bytes of decimal BCD (invalidEid)."""
    if len(eid_bytes) != 16:
        return None
    text = _hex(eid_bytes)
    return text if text.isdigit() else None


def _jsonable(value, what):
    """Operation parameters as JSON: bytes -> hex, keys/certificates -> DER hex."""
    if isinstance(value, dict):
        return {k: _jsonable(v, what) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, what) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _hex(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:  # pragma: no cover
        raise ValueError("%s: cannot store a %s" % (what, type(value).__name__))
    if isinstance(value, x509.Certificate):
        return _hex(value.public_bytes(serialization.Encoding.DER))
    if isinstance(value, ec.EllipticCurvePublicKey):
        return _hex(value.public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    raise ValueError("%s: cannot store a %s" % (what, type(value).__name__))


def _txid_bytes(value):
    return None if value is None else hex_bytes(value, "transactionId", 1, 16)


class EsipaService:
    """ESipa functions of one eIM over a Store (see the module docstring)."""

    def __init__(self, store, eim_id, signing_key, version="1.2"):
        if version not in signer.VERSIONS:
            raise ValueError("version must be one of %s, got %r" % ("/".join(signer.VERSIONS),
                                                                     version))
        self.store = store
        self.eim_id = eim_id
        self.key = signing_key
        self.version = version
        self.relay = None  # an eim_relay.SmdpRelay: indirect downloads relayed to the SM-DP+
        self.max_offers = MAX_OFFERS  # hand-outs of a package without a result (1: no re-offer)

    # ---- the operator side -------------------------------------------------------------

    def register(self, eid, association_token=None, counter=None, euicc_cert=None,
                 set_token=False):
        """Make `eid` known (idempotent); set the given fields. Returns the record."""
        check_eid(eid)
        if counter is not None and (isinstance(counter, bool) or not isinstance(counter, int)
                                    or not 0 <= counter <= signer.MAX_COUNTER):
            raise ValueError("counter must be an integer 0..%d, got %r"
                             % (signer.MAX_COUNTER, counter))
        if set_token and association_token is not None and (
                isinstance(association_token, bool) or not isinstance(association_token, int)
                or association_token < 0):
            raise ValueError("associationToken must be a non-negative integer or null, got %r"
                             % (association_token,))
        cert_hex = _hex(cert_der(euicc_cert)) if euicc_cert is not None else None
        with self.store.lock:
            rec = self.store.get_or_create(eid)
            if set_token:
                rec["association_token"] = association_token
            if counter is not None:
                rec["counter"] = counter
            if cert_hex is not None:
                rec["euicc_cert"] = cert_hex
            self.store.save(eid)
            return rec

    def queue(self, eid, kind, params, transaction_id=None):
        """Queue one eIM Package for `eid` (registering the EID). Returns the queued item.

        kind "psmo"/"eco": params {"ops": [...]} (signer operation dicts);
        "ipaEuiccDataRequest": {"tagList", "euiccCiPKId"?, "notificationSeqNumber"?,
        "notificationEvents"?, "resultSeqNumber"?}; "profileDownloadTrigger":
        {"activationCode" | "contactDefaultSmdp" | "contactSmds"}. Invalid
        parameters are a ValueError now, not a broken package later.
        """
        check_eid(eid)
        if kind not in KINDS:
            raise ValueError("kind must be one of %s, got %r" % (", ".join(KINDS), kind))
        if not isinstance(params, dict):
            raise ValueError("parameters must be an object, got %r" % (params,))
        params = _jsonable(params, kind)
        txid = _txid_bytes(transaction_id)
        self._build(eid, kind, params, 1, txid or b"\x00", None)  # validates, result unused
        with self.store.lock:
            rec = self.store.get_or_create(eid)
            if len(rec["queue"]) >= MAX_QUEUE:
                raise ValueError("the queue of %s is full (%d packages)" % (eid, MAX_QUEUE))
            item = {"id": rec["next_id"], "kind": kind, "params": params,
                    "transactionId": _hex(txid) if txid else None, "queued": time.time()}
            rec["next_id"] += 1
            rec["queue"].append(item)
            self.store.save(eid)
            return dict(item)

    def _build(self, eid, kind, params, counter, txid, token):
        """The DER of one eIM Package (BF51 / BF52 / BF54)."""
        if kind in ("psmo", "eco"):
            ops = params.get("ops")
            extra = sorted(set(params) - {"ops"})
            if extra:
                raise ValueError("%s: unknown field(s) %s (expected ops)" % (kind, ", ".join(extra)))
            if not isinstance(ops, list) or not ops:
                raise ValueError("%s: ops must be a non-empty list of operations" % kind)
            names = [op.get("op") if isinstance(op, dict) else None for op in ops]
            table = signer.PSMO_TAGS if kind == "psmo" else signer.ECO_TAGS
            wrong = [n for n in names if n not in table]
            if wrong:
                raise ValueError("%s: %s not %s (known: %s)"
                                 % (kind, ", ".join(map(repr, wrong)),
                                    "a PSMO" if kind == "psmo" else "an eCO", ", ".join(table)))
            return signer.build_euicc_package_request(
                self.eim_id, eid, counter, ops, self.key, association_token=token,
                transaction_id=txid, version=self.version)
        if kind == "ipaEuiccDataRequest":
            known = {"tagList", "euiccCiPKId", "notificationSeqNumber", "notificationEvents",
                     "resultSeqNumber", "euiccPackageResults"}
            extra = sorted(set(params) - known)
            if extra:
                raise ValueError("ipaEuiccDataRequest: unknown field(s) %s (known: %s)"
                                 % (", ".join(extra), ", ".join(sorted(known))))
            if "tagList" not in params:
                raise ValueError("ipaEuiccDataRequest: tagList is required")
            for k in ("notificationSeqNumber", "resultSeqNumber"):
                v = params.get(k)
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                    raise ValueError("ipaEuiccDataRequest: %s must be a non-negative integer" % k)
            ci = params.get("euiccCiPKId")
            if ci is not None:
                ci = hex_bytes(ci, "euiccCiPKId", 1, 32)
            return codec.ipa_euicc_data_request(
                params["tagList"], transaction_id=txid, ci_pkid=ci,
                notification_seq=params.get("notificationSeqNumber"),
                notification_events=params.get("notificationEvents"),
                result_seq=params.get("resultSeqNumber"),
                euicc_package_results=params.get("euiccPackageResults", False),
                version=self.version)
        known = {"activationCode", "contactDefaultSmdp", "contactSmds"}
        extra = sorted(set(params) - known)
        if extra:
            raise ValueError("profileDownloadTrigger: unknown field(s) %s (known: %s)"
                             % (", ".join(extra), ", ".join(sorted(known))))
        return codec.profile_download_trigger_request(
            activation_code=params.get("activationCode"),
            contact_default_smdp=params.get("contactDefaultSmdp", False),
            contact_smds=params.get("contactSmds"), transaction_id=txid)

    # ---- ESipa ---------------------------------------------------------------------------

    def handle(self, body, conn):
        """One ESipa message (DER) -> (answer DER or b"" for 204, info dict).

        info: {"function", "eid", "status" (HTTP), "note"}. Malformed input
        raises EsipaRefused (HTTP 400) with the reason; function-level
        problems are answered with the function's error alternative.
        """
        info = {"function": None, "eid": None, "status": 200, "note": None}
        if not body:
            raise EsipaRefused("empty body: expected one ESipa message (BF4F, BF50, BF3D, ...)")
        try:
            t = tlv.decode(body, max_len=MAX_BODY)
        except TlvError as e:
            raise EsipaRefused("not one BER-TLV ESipa message: %s" % e)
        info["function"] = codec.FUNCTIONS.get(t.tag)
        try:
            if t.tag == codec.GET_EIM_PACKAGE:
                return self._get_eim_package(t, conn, info), info
            if t.tag == codec.PROVIDE_EIM_PACKAGE_RESULT:
                return self._provide_result(t, conn, info, "provideEimPackageResult"), info
            if t.tag == codec.HANDLE_NOTIFICATION:
                self._handle_notification(t, conn, info)
                info["status"] = 204
                return b"", info
            if t.tag in codec.RELAY_ERROR_TAGS:
                if self.relay is None:
                    info["note"] = RELAY_NOTE
                    return codec.relay_error(t.tag), info
                answer, info["note"] = self.relay.handle(t)
                return answer, info
        except TlvError as e:
            raise EsipaRefused("%s: %s" % (info["function"], e))
        if t.tag == codec.TRANSFER_EIM_PACKAGE:
            raise EsipaRefused("transferEimPackageResponse (BF4E) answers an eIM push, and this "
                               "eIM does not push (eimRetrieveHttps only)")
        raise EsipaRefused("tag %X is not an ESipa message from the IPA (expected BF4F, BF50, "
                           "BF3D, BF39, BF3B, BF3A or BF41)" % t.tag)

    def _get_eim_package(self, t, conn, info):
        req = codec.parse_get_eim_package_request(t, self.version)
        if req["eid"] is None:
            return codec.get_eim_package_error(codec.MISSING_EID, self.version)
        eid = _eid_text(req["eid"])
        if eid is None:
            info["note"] = "eidValue %s is not 16 bytes of decimal digits" % _hex(req["eid"][:20])
            return codec.get_eim_package_error(codec.INVALID_EID, self.version)
        info["eid"] = eid
        with self.store.lock:
            rec = self.store.get(eid)
            if rec is None:
                return codec.get_eim_package_error(codec.EID_NOT_FOUND, self.version)
            conn["eid"] = eid
            rec["polls"] += 1
            rec["last_poll"] = time.time()
            changed = bool(req["notifyStateChange"] or req["stateChangeCause"] is not None
                           or req["rPLMN"])
            if changed:
                rec["state_changes"].append({
                    "time": time.time(), "notifyStateChange": req["notifyStateChange"],
                    "stateChangeCause": req["stateChangeCause"],
                    "stateChangeCauseName": codec.STATE_CHANGE_CAUSES.get(req["stateChangeCause"]),
                    "rPLMN": _hex(req["rPLMN"]) if req["rPLMN"] else None})
            again = _unanswered(rec)
            if again is not None:
                again["offers"] = again.get("offers", 1) + 1
                again["givenUp"] = again["offers"] >= self.max_offers  # its last hand-out
                self.store.save(eid)
                info["note"] = "package %d (%s) offered again (%d): no result yet" % (
                    again["id"], again["kind"], again["offers"])
                return codec.get_eim_package_response(binascii.unhexlify(again["der"]))
            if not rec["queue"]:
                if changed:
                    self.store.save(eid)  # poll counts alone are not worth a disk write
                return codec.get_eim_package_error(codec.NO_EIM_PACKAGE_AVAILABLE, self.version)
            item = rec["queue"].pop(0)
            txid = _txid_bytes(item["transactionId"]) or os.urandom(8)
            counter = rec["counter"] + 1 if item["kind"] in ("psmo", "eco") else None
            try:
                der = self._build(eid, item["kind"], item["params"], counter, txid,
                                  rec["association_token"])
            except (ValueError, TypeError) as e:  # validated when queued: only a broken state file
                info["note"] = "package %d dropped: %s" % (item["id"], e)
                self.store.save(eid)
                return codec.get_eim_package_error(codec.UNDEFINED_ERROR, self.version)
            if counter is not None:
                rec["counter"] = counter
            sent = dict(item)
            sent.update({"delivered": time.time(), "counterValue": counter,
                         "transactionId": _hex(txid), "der": _hex(der), "result": None,
                         "offers": 1, "givenUp": self.max_offers <= 1})
            rec["delivered"].append(sent)
            self.store.save(eid)  # the counter is on disk before the package leaves
            info["note"] = "package %d (%s)" % (item["id"], item["kind"])
            return codec.get_eim_package_response(der)

    def _find_eid(self, eid_bytes, txid, conn):
        """(eid, error code) for ProvideEimPackageResult."""
        if eid_bytes is not None:
            eid = _eid_text(eid_bytes)
            if eid is None:
                return None, codec.INVALID_EID
            if self.store.get(eid) is None:
                return eid, codec.EID_NOT_FOUND
            return eid, None
        if txid:
            for eid in self.store.eids():
                rec = self.store.get(eid)
                if any(d.get("transactionId") == txid for d in rec["delivered"]):
                    return eid, None
        if conn.get("eid"):
            return conn["eid"], None
        # SGP.32 v1.0 results carry no EID, and ipaEuiccData no transaction id either: the
        # one EID with a package still awaiting its result (none or several: missingEid)
        waiting = [e for e in self.store.eids()
                   if any(d.get("result") is None for d in self.store.get(e)["delivered"][-1:])]
        if len(waiting) == 1:
            return waiting[0], None
        return None, codec.MISSING_EID

    def _provide_result(self, t, conn, info, via):
        eid_bytes, result = codec.parse_provide_result(t, self.version)
        parsed = self._parse_result(result)
        with self.store.lock:
            eid, err = self._find_eid(eid_bytes, parsed["entry"].get("eimTransactionId"), conn)
            info["eid"] = eid
            if err is not None and codec.v1_0(self.version):
                # v1.0's ProvideEimPackageResultResponse has no error alternative
                raise EsipaRefused("provideEimPackageResult: %s (SGP.32 v1.0 carries no EID here:"
                                   " poll with GetEimPackage first on this connection)"
                                   % codec.PROVIDE_RESULT_ERRORS[err])
            if err is not None:
                return codec.provide_result_error(err)
            rec = self.store.get(eid)
            conn["eid"] = eid
            acks = self._record_result(rec, parsed, via)
            self.store.save(eid)
        info["note"] = "%s; acknowledged %s" % (parsed["entry"]["kind"], acks or "nothing")
        self._forward_pirs(parsed["notifications"], info)
        return codec.provide_result_response(acks, self.version)

    def _parse_result(self, result):
        """EimPackageResult TLV -> {"entry": result record, "results": [EPR TLVs],
        "notifications": [PendingNotification TLVs]} (records filled in later)."""
        entry = {"der": _hex(result.raw)}
        out = {"entry": entry, "epr": None, "results": [], "notifications": []}
        if result.tag == 0xBF51:
            entry["kind"] = "euiccPackageResult"
            out["epr"] = result
        elif result.tag == 0x30:
            entry["kind"] = "ePRAndNotifications"
            out["epr"], out["notifications"] = codec.parse_epr_and_notifications(result,
                                                                                 self.version)
        elif result.tag == 0xBF52:
            d = codec.parse_ipa_euicc_data_response(result, self.version)
            entry.update({"kind": "ipaEuiccDataResponse", "response": d["kind"],
                          "eimTransactionId": d["eimTransactionId"], "errorCode": d["errorCode"],
                          "errorName": d["errorName"], "fields": d["fields"]})
            out["results"] = d["results"]
            out["notifications"] = d["notifications"]
        elif result.tag == 0xBF54:
            d = codec.parse_download_trigger_result(result)
            entry.update({"kind": "profileDownloadTriggerResult", "result": d["kind"],
                          "eimTransactionId": d["eimTransactionId"], "errorCode": d["errorCode"],
                          "errorResponse": d["errorResponse"]})
            if d["pir"] is not None:
                out["notifications"] = [d["pir"]]
        elif result.tag == 0x02:  # v1.0 eimPackageError
            code = codec.small_int(result, "eimPackageError")
            entry.update({"kind": "eimPackageError", "eimTransactionId": None, "errorCode": code,
                          "errorName": codec.EIM_PACKAGE_RESULT_ERRORS.get(code, "unknown")})
        else:  # A0
            d = codec.parse_result_error(result)
            entry.update({"kind": "eimPackageResultResponseError"})
            entry.update(d)
        if out["epr"] is not None:
            epr = codec.parse_euicc_package_result(out["epr"])
            entry["eimTransactionId"] = epr["eimTransactionId"]
            out["epr_parsed"] = epr
        # every notification and embedded result must parse before anything is recorded
        out["notes_parsed"] = [codec.parse_pending_notification(n) for n in out["notifications"]]
        out["results_parsed"] = [codec.parse_euicc_package_result(r) for r in out["results"]]
        return out

    def _epr_record(self, rec, epr, der):
        r = {k: v for k, v in epr.items() if k != "signed"}
        r["der"] = _hex(der)
        r["eimIdMatches"] = epr["eimId"] == self.eim_id
        r["signatureValid"] = None
        if epr["signed"] is not None and rec["euicc_cert"]:
            data, sig = epr["signed"]
            r["signatureValid"] = pki.verify(
                binascii.unhexlify(rec["euicc_cert"]),
                pki.eim_signed_bytes(data, rec["association_token"], self.version), sig)
        return r

    def _record_result(self, rec, parsed, via):
        """Store one EimPackageResult and what it carried; return the seqNumbers to acknowledge."""
        now = time.time()
        entry = parsed["entry"]
        entry.update({"time": now, "via": via})
        acks = []
        if "epr_parsed" in parsed:
            epr = self._epr_record(rec, parsed["epr_parsed"], parsed["epr"].raw)
            entry["euiccPackageResult"] = epr
            if epr["seqNumber"] is not None:
                acks.append(epr["seqNumber"])
        entry["duplicate"] = any(r.get("der") == entry["der"] for r in rec["results"])
        entry["package"] = self._match(rec, entry.get("eimTransactionId"), len(rec["results"]))
        rec["results"].append(entry)
        for r, tlv_ in zip(parsed["results_parsed"], parsed["results"]):
            epr = self._epr_record(rec, r, tlv_.raw)
            rec["results"].append({"time": now, "via": via + "/ipaEuiccData", "der": epr["der"],
                                   "kind": "euiccPackageResult",
                                   "eimTransactionId": epr["eimTransactionId"],
                                   "euiccPackageResult": epr, "package": None,
                                   "duplicate": False})
            if epr["seqNumber"] is not None:
                acks.append(epr["seqNumber"])
        for n, tlv_ in zip(parsed["notes_parsed"], parsed["notifications"]):
            note = self._notification_record(rec, n, tlv_.raw, via)
            rec["notifications"].append(note)
            if note["seqNumber"] is not None:
                acks.append(note["seqNumber"])
        out = []
        for s in acks:
            if s not in out:
                out.append(s)
        rec["acknowledged"].extend(out)
        return out

    def _match(self, rec, txid, index):
        """The id of the delivered package this result answers (by eimTransactionId; in
        v1.0, whose ipaEuiccData has none, a result without one answers the last package)."""
        if not txid and codec.v1_0(self.version) and rec["delivered"] \
                and rec["delivered"][-1].get("result") is None:
            rec["delivered"][-1]["result"] = index
            return rec["delivered"][-1]["id"]
        if not txid:
            return None
        for d in reversed(rec["delivered"]):
            if d.get("transactionId") == txid:
                if d.get("result") is None:
                    d["result"] = index
                return d["id"]
        return None

    def _notification_record(self, rec, n, der, via):
        note = {k: v for k, v in n.items() if k not in ("signed", "certificate")}
        note.update({"time": time.time(), "via": via, "der": _hex(der),
                     "signatureValid": None, "verifiedWith": None})
        if rec is not None:
            note["duplicate"] = any(x.get("der") == note["der"] for x in rec["notifications"])
        if n["signed"] is not None:
            data, sig = n["signed"]
            if rec is not None and rec.get("euicc_cert"):
                note["signatureValid"] = pki.verify(binascii.unhexlify(rec["euicc_cert"]),
                                                    data, sig)
                note["verifiedWith"] = "known eUICC certificate"
            elif n["certificate"] is not None:
                note["signatureValid"] = pki.verify(n["certificate"], data, sig)
                note["verifiedWith"] = "certificate in the notification"
        return note

    def _handle_notification(self, t, conn, info):
        kind, c = codec.parse_handle_notification(t, self.version)
        if kind == "result":
            self._provide_result(c, conn, info, "handleNotification")
            return
        n = codec.parse_pending_notification(c)
        with self.store.lock:
            eid = self._attribute(n, conn)
            info["eid"] = eid
            rec = self.store.get(eid) if eid else None
            note = self._notification_record(rec, n, c.raw, "handleNotification")
            if rec is None:
                note["eid"] = eid
                self.store.add_unattributed(note)
                info["note"] = "notification %s not attributed to a known EID" % n["seqNumber"]
                return
            rec["notifications"].append(note)
            self.store.save(eid)
        info["note"] = "%s seqNumber %s" % (n["kind"], n["seqNumber"])
        self._forward_pirs([c], info)

    def _forward_pirs(self, notifications, info):
        """PIRs of downloads this eIM relayed go on to their SM-DP+ (outside the store lock)."""
        if self.relay is None:
            return
        for n in notifications:
            if n.tag == codec.PROFILE_INSTALLATION_RESULT:
                done = self.relay.notify_pir(n.raw)
                if done:
                    info["note"] = "%s; %s" % (info["note"], done)

    def _attribute(self, n, conn):
        """Which EID a HandleNotification belongs to (see the module docstring)."""
        if n.get("eid"):
            return _eid_text(n["eid"])
        if n["certificate"] is not None:
            try:
                from cryptography import x509
                eid = pki.eid_of(x509.load_der_x509_certificate(n["certificate"]))
            except ValueError:
                eid = None
            if eid:
                return eid
        if n["signed"] is not None:
            data, sig = n["signed"]
            for eid in self.store.eids():
                rec = self.store.get(eid)
                if rec["euicc_cert"] and pki.verify(binascii.unhexlify(rec["euicc_cert"]),
                                                    data, sig):
                    return eid
        return conn.get("eid")


def _unanswered(rec):
    """The oldest package handed out without a result that is still offered, or None."""
    for d in rec["delivered"]:
        if d.get("result") is None and not d.get("givenUp") and d.get("der"):
            return d
    return None


def cert_der(value):
    """A certificate (cryptography object, DER or PEM bytes, PEM text, hex DER, or a file
    path) -> DER bytes, checked to load; else ValueError."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if isinstance(value, x509.Certificate):
        return value.public_bytes(serialization.Encoding.DER)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("-----BEGIN"):
            value = text.encode()
        elif os.path.isfile(text):
            with open(text, "rb") as f:
                value = f.read()
        else:
            try:
                value = binascii.unhexlify(text)
            except (binascii.Error, ValueError):
                raise ValueError("euiccCertificate must be PEM, hex DER or a file, got %r"
                                 % text[:40])
    if not isinstance(value, (bytes, bytearray)):
        raise ValueError("euiccCertificate: cannot use a %s" % type(value).__name__)
    try:
        if bytes(value).lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(bytes(value))
        else:
            cert = x509.load_der_x509_certificate(bytes(value))
    except ValueError as e:
        raise ValueError("euiccCertificate does not load as an X.509 certificate: %s" % e)
    return cert.public_bytes(serialization.Encoding.DER)


def hex_bytes(value, what, lo, hi):
    """bytes or hex text of lo..hi bytes."""
    if isinstance(value, str):
        try:
            value = binascii.unhexlify(value.replace(" ", ""))
        except (binascii.Error, ValueError):
            raise ValueError("%s must be hex, got %r" % (what, value))
    if not isinstance(value, (bytes, bytearray)) or not lo <= len(value) <= hi:
        raise ValueError("%s must be %d..%d bytes (hex), got %r" % (what, lo, hi, value))
    return bytes(value)
