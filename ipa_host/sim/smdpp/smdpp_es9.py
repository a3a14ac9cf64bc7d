"""ES9+ functions of the simulated SM-DP+ (SGP.22 v2.5 5.6, JSON binding 6.5), transport-free.

    svc = Es9Service(material, address="127.0.0.1:8443")
    svc.add_profile("MATCH-1", "89000123456789012341", "Test", size=4096)
    status, obj = svc.handle("initiateAuthentication", {...json...})

`handle` takes the decoded JSON request and answers (http_status, json_obj or
None). Function errors are 200 with header.functionExecutionStatus "Failed"
and statusCodeData {subjectCode, reasonCode, message}; a request that is not
JSON-shaped as ES9+ wants (missing field, bad base64 or TLV) raises
Es9Refused (the HTTP layer answers 400).

Signed data (SGP.22 5.6 / 5.7, as read from RSPDefinitions):
  serverSignature1  = Sign(SK.DPauth, serverSigned1)
  euiccSignature1   = Sign(SK.EUICC, euiccSigned1)
  smdpSignature2    = Sign(SK.DPpb, smdpSigned2 || euiccSignature1 TLV '5F37')
  euiccSignature2   = Sign(SK.EUICC, euiccSigned2 || smdpSignature2 TLV '5F37')
  smdpSign (BF23)   = see bsp.isc_signed_bytes
  euiccSignPIR      = Sign(SK.EUICC, profileInstallationResultData BF27)
  euiccCancelSessionSignature = Sign(SK.EUICC, euiccCancelSessionSigned)
  hashCc            = SHA256(SHA256(confirmation code) || transactionId)
"""

import base64
import binascii
import collections
import hashlib
import logging
import os
import threading
import time

from cryptography.hazmat.primitives.asymmetric import ec

from ipa_core import tlv
from ipa_core.errors import TlvError

from ipa_host.sim import bsp, pki
from ipa_host.sim.smdpp import profile_package as pp

log = logging.getLogger(__name__)

SUCCESS = {"functionExecutionStatus": {"status": "Executed-Success"}}
MAX_SESSIONS = 64
SESSION_TTL = 600.0  # default session_timeout: an abandoned session ends after this long
NOTIFIED_OPS = ("install", "enable", "disable", "delete")  # notificationConfigurationInfo
CC_TRIES = 3

# SGP.22 ES9+ status codes (subjectCode, reasonCode), as best known.
ERRORS = {
    "invalidDpAddress": ("8.8.1", "3.8"),
    "euiccVersionNotSupported": ("8.8.3", "3.1"),
    "ciPKNotSupported": ("8.8.2", "3.1"),
    "eumCertificateInvalid": ("8.1.2", "6.1"),
    "euiccCertificateInvalid": ("8.1.3", "6.1"),
    "euiccSignatureInvalid": ("8.1", "6.1"),
    "matchingIdRefused": ("8.2.6", "3.8"),
    "eidMismatch": ("8.1.1", "3.8"),
    "noEligibleProfile": ("8.2", "3.7"),
    "ciPKUnknown": ("8.11.1", "3.9"),
    "invalidTransactionId": ("8.10.1", "3.9"),
    "confirmationCodeMissing": ("8.2.7", "2.2"),
    "confirmationCodeRefused": ("8.2.7", "3.8"),
    "confirmationCodeRetriesExceeded": ("8.2.7", "6.4"),
    "downloadOrderExpired": ("8.8.5", "4.10"),
    "euiccError": ("8.1", "3.8"),
}


class Es9Refused(ValueError):
    """A request that is not a well-formed ES9+ request (HTTP 400)."""


class Es9Failed(Exception):
    def __init__(self, name, message):
        super().__init__(message)
        self.name = name
        self.message = message


def _b64(b):
    return base64.b64encode(bytes(b)).decode("ascii")


def _field(obj, name, kind="b64", max_len=2 * 1024 * 1024):
    if not isinstance(obj, dict) or name not in obj:
        raise Es9Refused("missing field %r in the JSON request" % name)
    v = obj[name]
    if not isinstance(v, str) or len(v) > max_len:
        raise Es9Refused("field %r: expected a string of at most %d characters" % (name, max_len))
    try:
        if kind == "hex":
            return binascii.unhexlify(v)
        if kind == "str":
            return v
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise Es9Refused("field %r: expected %s, found %r" % (name, "hex" if kind == "hex" else "base64", v[:40]))


def _tlv(data, tag, what):
    try:
        t = tlv.decode(data)
    except TlvError as e:
        raise Es9Refused("%s: %s" % (what, e))
    if t.tag != tag:
        raise Es9Refused("%s: expected tag %X, found %X" % (what, tag, t.tag))
    return t


def _need(t, tag, what):
    try:
        return t.need(tag, what)
    except TlvError as e:
        raise Es9Refused(str(e))


def confirmation_hash(cc, transaction_id):
    """SGP.22 hashCc: SHA256(SHA256(cc) || transactionId)."""
    return hashlib.sha256(hashlib.sha256(cc.encode("utf-8")).digest() + bytes(transaction_id)).digest()


class Session:
    def __init__(self, tid, euicc_challenge, server_challenge, ci_ski):
        self.tid = tid
        self.euicc_challenge = euicc_challenge
        self.server_challenge = server_challenge
        self.ci_ski = ci_ski
        self.state = "authenticating"
        self.created = time.monotonic()
        self.euicc_cert = None
        self.eid = None
        self.profile = None
        self.euicc_signature1 = None
        self.smdp_signature2 = None
        self.cc_tries = 0


class Es9Service:
    """The SM-DP+: profiles, sessions, notifications. Thread-safe (one lock).

    The class attributes below let the simulated SM-DS (ipa_host.sim.smds) share the
    authentication half: its functions, status codes, address field and signing role."""

    METHODS = {"initiateAuthentication": "initiate_authentication",
               "authenticateClient": "authenticate_client",
               "getBoundProfilePackage": "get_bound_profile_package",
               "handleNotification": "handle_notification", "cancelSession": "cancel_session"}
    ERRORS = ERRORS
    ADDRESS_FIELD = "smdpAddress"
    ADDRESS_ERROR = "invalidDpAddress"
    AUTH_ROLE = "dpauth"

    def __init__(self, material, address, host_id=b"ipa-iot-smdp", use_ppk=False, aliases=(),
                 session_timeout=SESSION_TTL, sgp32="1.2", on_notification=None):
        self.m = material
        self.sgp32 = sgp32
        self.address = address
        self.aliases = set(aliases)
        self.host_id = bytes(host_id)
        self.use_ppk = use_ppk
        self.ci_ski = pki.ski(material["ci_cert"])
        self.smdp_oid = material["smdp_oid"]
        self.profiles = collections.OrderedDict()
        self.sessions = collections.OrderedDict()
        self.notifications = []
        self.on_notification = on_notification  # called with each record, under the lock
        self.events = []
        self.on_bound = None  # on_bound(profile): its bound package went out (SM-DS event)
        self.expired = []  # {"time", "transactionId", "matchingId", "state"}: orders released
        self.session_timeout = float(session_timeout)
        self.lock = threading.Lock()

    # ---- profiles ----------------------------------------------------------------------

    def add_profile(self, matching_id, iccid, name, size=4096, cc=None, eid=None,
                    service_provider="ipa-iot test SP", profile_class="operational", reusable=False):
        """Offer a profile for `matching_id` (optionally only to `eid`, with a confirmation code)."""
        pp.iccid_bytes(iccid)  # check early
        with self.lock:
            self.profiles[matching_id] = {
                "matching_id": matching_id, "iccid": iccid, "name": name, "size": int(size), "cc": cc,
                "eid": eid, "spn": service_provider, "class": profile_class, "reusable": reusable,
                "state": "released", "package": None,
            }
        return self.profiles[matching_id]

    def _metadata(self, p):
        # As real SM-DP+s do: every operation on the profile is notified back here.
        return pp.store_metadata(p["iccid"], p["spn"], p["name"], p["class"],
                                 notifications=[(op, self.address) for op in NOTIFIED_OPS])

    def _package(self, p):
        if p["package"] is None:
            p["package"] = pp.build_profile_package(p["iccid"], p["size"])
        return p["package"]

    # ---- dispatch ------------------------------------------------------------------------

    def handle(self, function, obj):
        fn = getattr(self, self.METHODS[function])  # KeyError: not a function of this server
        ev = {"time": time.time(), "function": function, "status": None, "error": None, "transactionId": None}
        with self.lock:
            self._expire()
            try:
                answer = fn(obj, ev)
                ev["status"] = "Executed-Success"
                if answer is None:
                    return 204, None
                out = {"header": SUCCESS}
                out.update(answer)
                return 200, out
            except Es9Failed as e:
                subject, reason = self.ERRORS[e.name]
                ev["status"], ev["error"] = "Failed", e.name
                return 200, {"header": {"functionExecutionStatus": {
                    "status": "Failed",
                    "statusCodeData": {"subjectCode": subject, "reasonCode": reason, "message": e.message}}}}
            except Es9Refused as e:
                ev["status"], ev["error"] = "refused", str(e)
                raise
            finally:
                self.events.append(ev)

    def _expire(self):
        """End sessions older than session_timeout (and the oldest past MAX_SESSIONS); an order
        such a session held goes back to released, as a real SM-DP+ does with a download
        abandoned after AuthenticateClient (SGP.22 3.1.3: the order may be retried)."""
        now = time.monotonic()
        for tid in [t for t, s in self.sessions.items() if now - s.created > self.session_timeout]:
            self._drop(self.sessions.pop(tid))
        while len(self.sessions) > MAX_SESSIONS:
            self._drop(self.sessions.popitem(last=False)[1])

    def _drop(self, s):
        if s.state != "ended" and s.profile is not None:  # it held an order: release it
            self.expired.append({"time": time.time(), "transactionId": s.tid.hex().upper(),
                                 "state": s.state,
                                 "matchingId": (s.profile or {}).get("matching_id")})
            self._end(s, "released")

    def _holder(self, p):
        """The open session that holds profile `p` (state downloading), or None."""
        for s in self.sessions.values():
            if s.profile is p and s.state != "ended":
                return s
        return None

    def _note_iot_version(self, signed1, ev):
        """ES9+ is SGP.22's in every SGP.32 version (nothing on the wire differs): the SM-DP+
        records the iotVersion the eUICC announces in euiccInfo2 (BF22 / B4 iotSpecificInfo /
        A0) and whether it names the version served; a mismatch is logged, not refused."""
        iot = signed1.find(0xBF22)
        iot = iot.find(0xB4) if iot is not None else None
        iot = iot.find(0xA0) if iot is not None else None
        found = [".".join(str(b) for b in v.value) for v in iot.children()] if iot else []
        ev["iotVersions"] = found
        ev["sgp32Match"] = any(v.startswith(self.sgp32 + ".") for v in found)
        if not ev["sgp32Match"]:
            log.warning("SM-DP+ serving SGP.32 v%s: the eUICC announces iotVersion %s",
                        self.sgp32, ", ".join(found) or "none")

    def _session(self, obj, ev, state):
        tid = _field(obj, "transactionId", "hex", 32)
        ev["transactionId"] = tid.hex().upper()
        s = self.sessions.get(tid)
        if s is None or (state and s.state != state):
            raise Es9Failed("invalidTransactionId", "transactionId %s: %s" % (
                tid.hex().upper(), "unknown" if s is None else "session is in state %s" % s.state))
        return s

    # ---- ES9+.InitiateAuthentication (SGP.22 5.6.1) -----------------------------------------

    def initiate_authentication(self, obj, ev):
        challenge = _field(obj, "euiccChallenge", max_len=64)
        address = _field(obj, self.ADDRESS_FIELD, "str", 255)
        info1 = _tlv(_field(obj, "euiccInfo1", max_len=4096), 0xBF20, "euiccInfo1")
        if len(challenge) != 16:
            raise Es9Refused("euiccChallenge: expected 16 bytes, found %d" % len(challenge))
        if address != self.address and address not in self.aliases:
            raise Es9Failed(self.ADDRESS_ERROR, "%s %r is not this server (%s)"
                            % (self.ADDRESS_FIELD, address, self.address))
        signing = _need(info1, 0xAA, "euiccCiPKIdListForSigning")
        verification = info1.find(0xA9)
        skis = [c.value for c in signing]
        if self.ci_ski not in skis or (verification is not None
                                      and self.ci_ski not in [c.value for c in verification]):
            raise Es9Failed("ciPKNotSupported", "the eUICC does not list CI key %s" % self.ci_ski.hex().upper())
        tid = os.urandom(16)
        ev["transactionId"] = tid.hex().upper()
        s = Session(tid, challenge, os.urandom(16), self.ci_ski)
        self.sessions[tid] = s
        signed1 = tlv.enc(0x30, tlv.encode(0x80, tid), tlv.encode(0x81, challenge),
                          tlv.encode(0x83, self.address.encode("utf-8")), tlv.encode(0x84, s.server_challenge))
        sig = self._sign1(signed1)
        return {"transactionId": tid.hex().upper(), "serverSigned1": _b64(signed1),
                "serverSignature1": _b64(tlv.encode(0x5F37, sig)),
                "euiccCiPKIdToBeUsed": _b64(tlv.encode(0x04, self.ci_ski)),
                "serverCertificate": _b64(pki.certificate_der(self.m[self.AUTH_ROLE + "_cert"]))}

    def _sign1(self, signed1):
        """serverSignature1 (raw r||s) over serverSigned1 with the authentication key."""
        return pki.sign_raw(self.m[self.AUTH_ROLE + "_key"], signed1)

    # ---- ES9+.AuthenticateClient (5.6.2) ------------------------------------------------------

    def _check_chain(self, euicc_der, eum_der):
        """eSIM-specific chain check: EUM signed by our CI, eUICC signed by the EUM; -> (cert, eid)."""
        from cryptography import x509
        try:
            eum = x509.load_der_x509_certificate(eum_der)
        except ValueError as e:
            raise Es9Failed("eumCertificateInvalid", "EUM certificate does not decode: %s" % e)
        try:
            euicc = x509.load_der_x509_certificate(euicc_der)
        except ValueError as e:
            raise Es9Failed("euiccCertificateInvalid", "eUICC certificate does not decode: %s" % e)
        ci = self.m["ci_cert"]
        if eum.issuer != ci.subject or not pki.verify(ci, eum.tbs_certificate_bytes, eum.signature):
            raise Es9Failed("eumCertificateInvalid", "EUM certificate is not signed by the CI %s"
                            % ci.subject.rfc4514_string())
        if euicc.issuer != eum.subject or not pki.verify(eum, euicc.tbs_certificate_bytes, euicc.signature):
            raise Es9Failed("euiccCertificateInvalid", "eUICC certificate is not signed by the EUM")
        eid = pki.eid_of(euicc)
        if not (eid and len(eid) == 32 and eid.isdigit()):
            raise Es9Failed("euiccCertificateInvalid", "eUICC certificate has no 32-digit EID, found %r" % eid)
        return euicc, eid

    def _authenticate_euicc(self, obj, ev):
        """The checks of AuthenticateClient common to SM-DP+ and SM-DS -> (session, eUICC
        certificate, EID, euiccSigned1, euiccSignature1 TLV)."""
        s = self._session(obj, ev, "authenticating")
        resp = _tlv(_field(obj, "authenticateServerResponse", max_len=16384), 0xBF38, "authenticateServerResponse")
        kids = resp.children()
        if not kids or kids[0].tag != 0xA0:
            code = None
            if kids and kids[0].tag == 0xA1 and kids[0].find(0x02) is not None:
                code = kids[0].find(0x02).as_int()   # authenticateErrorCode: untagged INTEGER
            s.state = "ended"
            raise Es9Failed("euiccError", "the eUICC answered AuthenticateServer with error %s" % code)
        ok = kids[0]
        parts = ok.children()
        if len(parts) != 4 or [p.tag for p in parts] != [0x30, 0x5F37, 0x30, 0x30]:
            raise Es9Refused("authenticateResponseOk: expected euiccSigned1 30, 5F37, euiccCertificate 30, "
                             "eumCertificate 30, found %s" % " ".join("%X" % p.tag for p in parts))
        signed1, sig1, euicc_der, eum_der = parts
        euicc, eid = self._check_chain(euicc_der.raw, eum_der.raw)
        if not pki.verify(euicc, signed1.raw, sig1.value):
            raise Es9Failed("euiccSignatureInvalid", "euiccSignature1 does not verify with the eUICC certificate")
        if _need(signed1, 0x80, "transactionId").value != s.tid:
            raise Es9Failed("invalidTransactionId", "euiccSigned1 carries another transactionId")
        if _need(signed1, 0x84, "serverChallenge").value != s.server_challenge:
            raise Es9Failed("euiccSignatureInvalid", "euiccSigned1 serverChallenge is not the one sent")
        if _need(signed1, 0x83, "serverAddress").as_str() != self.address:
            raise Es9Failed(self.ADDRESS_ERROR, "euiccSigned1 serverAddress is not this server")
        return s, euicc, eid, signed1, sig1

    def authenticate_client(self, obj, ev):
        s, euicc, eid, signed1, sig1 = self._authenticate_euicc(obj, ev)
        self._note_iot_version(signed1, ev)
        ctx = signed1.find(0xA0)
        matching = ctx.find(0x80) if ctx is not None else None
        matching_id = matching.as_str() if matching is not None else ""
        ev["matchingId"], ev["eid"] = matching_id, eid
        if matching_id:
            p = self.profiles.get(matching_id)
            if p is None or (p["state"] != "released" and not p["reusable"]):
                raise Es9Failed("matchingIdRefused", "matchingId %r: %s" % (
                    matching_id, "unknown" if p is None else self._refusal(p)))
            if p["eid"] and p["eid"] != eid:
                raise Es9Failed("eidMismatch", "matchingId %r is for another EID" % matching_id)
        else:
            cands = [p for p in self.profiles.values() if p["eid"] == eid and p["state"] == "released"]
            if not cands:
                raise Es9Failed("noEligibleProfile", "no pending profile for EID %s" % eid)
            p = cands[0]
        s.euicc_cert, s.eid, s.profile, s.euicc_signature1 = euicc, eid, p, sig1.raw
        s.state = "authenticated"
        p["state"] = "downloading"
        signed2 = tlv.enc(0x30, tlv.encode(0x80, s.tid), tlv.encode(0x01, tlv.bool_encode(bool(p["cc"]))))
        sig2 = tlv.encode(0x5F37, pki.sign_raw(self.m["dppb_key"], signed2 + sig1.raw))
        s.smdp_signature2 = sig2
        return {"transactionId": s.tid.hex().upper(), "profileMetadata": _b64(self._metadata(p)),
                "smdpSigned2": _b64(signed2), "smdpSignature2": _b64(sig2),
                "smdpCertificate": _b64(pki.certificate_der(self.m["dppb_cert"]))}

    def _refusal(self, p):
        holder = self._holder(p)
        if p["state"] != "downloading" or holder is None:
            return "profile already %s" % p["state"]
        age = time.monotonic() - holder.created
        return ("profile already downloading in session %s, opened %d s ago and not finished;"
                " released when that session is cancelled or, abandoned, in %d s"
                % (holder.tid.hex().upper(), age, max(0, self.session_timeout - age)))

    # ---- ES9+.GetBoundProfilePackage (5.6.3) --------------------------------------------------

    def get_bound_profile_package(self, obj, ev):
        s = self._session(obj, ev, None)
        if s.state not in ("authenticated", "bound"):
            raise Es9Failed("invalidTransactionId", "session %s is %s" % (s.tid.hex().upper(), s.state))
        pdr = _tlv(_field(obj, "prepareDownloadResponse", max_len=4096), 0xBF21, "prepareDownloadResponse")
        kids = pdr.children()
        if not kids or kids[0].tag != 0xA0:
            code = kids[0].find(0x02).as_int() if kids and kids[0].find(0x02) is not None else None
            self._end(s, "released")
            raise Es9Failed("euiccError", "the eUICC answered PrepareDownload with error %s" % code)
        parts = kids[0].children()
        if [p.tag for p in parts] != [0x30, 0x5F37]:
            raise Es9Refused("downloadResponseOk: expected euiccSigned2 30 and 5F37")
        signed2, sig2 = parts
        if not pki.verify(s.euicc_cert, signed2.raw + s.smdp_signature2, sig2.value):
            raise Es9Failed("euiccSignatureInvalid", "euiccSignature2 does not verify")
        if _need(signed2, 0x80, "transactionId").value != s.tid:
            raise Es9Failed("invalidTransactionId", "euiccSigned2 carries another transactionId")
        otpk = _need(signed2, 0x5F49, "euiccOtpk").value
        p = s.profile
        if p["cc"]:
            hcc = signed2.find(0x04)
            if hcc is None:
                raise Es9Failed("confirmationCodeMissing", "this profile needs a confirmation code")
            if hcc.value != confirmation_hash(p["cc"], s.tid):
                s.cc_tries += 1
                if s.cc_tries >= CC_TRIES:
                    self._end(s, "released")
                    raise Es9Failed("confirmationCodeRetriesExceeded", "wrong confirmation code %d times" % s.cc_tries)
                raise Es9Failed("confirmationCodeRefused", "wrong confirmation code")
        otsk = ec.generate_private_key(ec.SECP256R1())
        smdp_otpk = pki.public_key_bytes(otsk)
        try:
            shs = bsp.ecka_shared_secret(otsk, otpk)
        except bsp.BspError as e:
            raise Es9Refused("euiccOtpk: %s" % e)
        mcv, s_enc, s_mac = bsp.derive_session_keys(shs, self.host_id, s.eid)
        snd = bsp.BspSender(s_enc, s_mac, mcv)
        bf23 = bsp.build_initialise_secure_channel(
            s.tid, self.host_id, smdp_otpk, otpk, lambda d: pki.sign_raw(self.m["dppb_key"], d))
        parts = [bf23,
                 tlv.encode(0xA0, snd.wrap_all(0x87, tlv.encode(0xBF24, b""))),
                 tlv.encode(0xA1, snd.wrap_all(0x88, self._metadata(p), encrypt=False))]
        if self.use_ppk:
            ppk_enc, ppk_mac, ppk_mcv = os.urandom(16), os.urandom(16), os.urandom(16)
            parts.append(tlv.encode(0xA2, snd.wrap_all(0x87, bsp.replace_session_keys_request(
                ppk_enc, ppk_mac, ppk_mcv))))
            snd = bsp.BspSender(ppk_enc, ppk_mac, ppk_mcv)
        parts.append(tlv.encode(0xA3, snd.wrap_all(0x86, self._package(p))))
        bpp = tlv.encode(0xBF36, b"".join(parts))
        s.state = "bound"
        ev["bppSize"] = len(bpp)
        if self.on_bound is not None:
            self.on_bound(p)
        return {"transactionId": s.tid.hex().upper(), "boundProfilePackage": _b64(bpp)}

    def _end(self, s, profile_state):
        s.state = "ended"
        if s.profile is not None and s.profile["state"] == "downloading":
            s.profile["state"] = profile_state

    # ---- ES9+.HandleNotification (5.6.4) ------------------------------------------------------

    def handle_notification(self, obj, ev):
        data = _field(obj, "pendingNotification", max_len=16384)
        try:
            t = tlv.decode(data)
        except TlvError as e:
            raise Es9Refused("pendingNotification: %s" % e)
        rec = {"time": time.time(), "raw": data, "verified": False}
        if t.tag == 0xBF37:
            prd = _need(t, 0xBF27, "profileInstallationResultData")
            sig = _need(t, 0x5F37, "euiccSignPIR").value
            tid = _need(prd, 0x80, "transactionId").value
            ev["transactionId"] = tid.hex().upper()
            meta = prd.find(0xBF2F)
            fr = _need(prd, 0xA2, "finalResult").children()
            success = bool(fr) and fr[0].tag == 0xA0
            rec.update({"type": "pir", "transactionId": tid.hex().upper(), "success": success,
                        "smdpOid": prd.find(0x06).as_oid() if prd.find(0x06) is not None else None})
            if meta is not None and meta.find(0x5A) is not None:
                rec["iccid"] = pp.iccid_digits(meta.find(0x5A).value)
            if meta is not None and meta.find(0x80) is not None:
                rec["seqNumber"] = meta.find(0x80).as_int()
            if not success and fr:
                r = fr[0]
                rec["bppCommandId"] = r.find(0x80).as_int() if r.find(0x80) is not None else None
                rec["errorReason"] = r.find(0x81).as_int() if r.find(0x81) is not None else None
            s = self.sessions.get(tid)
            if s is not None and s.euicc_cert is not None:
                rec["eid"] = s.eid
                rec["verified"] = pki.verify(s.euicc_cert, prd.raw, sig)
                if not rec["verified"]:
                    rec["error"] = "euiccSignPIR does not verify"
                else:
                    s.state = "ended"
                    if s.profile is not None:
                        s.profile["state"] = "installed" if success else "released"
            else:
                rec["error"] = "no session %s with the eUICC's certificate to verify euiccSignPIR" \
                    % tid.hex().upper()
        elif t.tag == 0x30:
            kids = t.children()
            if len(kids) < 4 or kids[0].tag != 0xBF2F:
                raise Es9Refused("otherSignedNotification: expected BF2F, 5F37 and two certificates")
            rec.update({"type": "other", "seqNumber": kids[0].find(0x80).as_int()
                        if kids[0].find(0x80) is not None else None})
            ops = kids[0].find(0x81)
            if ops is not None:
                rec["operation"] = ops.as_bits(["install", "enable", "disable", "delete"])
            if kids[0].find(0x5A) is not None:
                rec["iccid"] = pp.iccid_digits(kids[0].find(0x5A).value)
            try:
                euicc, eid = self._check_chain(kids[2].raw, kids[3].raw)
                rec["eid"] = eid
                rec["verified"] = pki.verify(euicc, kids[0].raw, kids[1].value)
            except Es9Failed as e:
                rec["error"] = e.message
        else:
            raise Es9Refused("pendingNotification: expected BF37 or an OtherSignedNotification 30, found %X" % t.tag)
        self.notifications.append(rec)
        if self.on_notification is not None:
            self.on_notification(rec)
        return None

    # ---- ES9+.CancelSession (5.6.5) ---------------------------------------------------------------

    def cancel_session(self, obj, ev):
        s = self._session(obj, ev, None)
        if s.state == "ended":
            raise Es9Failed("invalidTransactionId", "session %s has ended" % s.tid.hex().upper())
        resp = _tlv(_field(obj, "cancelSessionResponse", max_len=4096), 0xBF41, "cancelSessionResponse")
        kids = resp.children()
        if not kids or kids[0].tag != 0xA0:
            raise Es9Refused("cancelSessionResponse: expected cancelSessionResponseOk A0")
        parts = kids[0].children()
        if [p.tag for p in parts] != [0x30, 0x5F37]:
            raise Es9Refused("cancelSessionResponseOk: expected euiccCancelSessionSigned 30 and 5F37")
        signed, sig = parts
        if s.euicc_cert is not None and not pki.verify(s.euicc_cert, signed.raw, sig.value):
            raise Es9Failed("euiccSignatureInvalid", "euiccCancelSessionSignature does not verify")
        if _need(signed, 0x80, "transactionId").value != s.tid:
            raise Es9Failed("invalidTransactionId", "euiccCancelSessionSigned carries another transactionId")
        reason = _need(signed, 0x82, "reason").as_int()
        ev["reason"] = reason
        ev["smdpOid"] = _need(signed, 0x81, "smdpOid").as_oid()
        # before authenticateClient there is no eUICC certificate to check the signature with
        ev["verified"] = s.euicc_cert is not None
        self._end(s, "released")
        return {}
