"""ES11 and ES12 functions of the simulated SM-DS (SGP.22 v2.5 5.8, 5.9; JSON binding 6.5),
transport-free.

    svc = SmdsService(material, address="127.0.0.1:8444")   # material: pki_smdp DS roles
    status, obj = svc.handle("registerEvent", {"eid", "rspServerAddress", "eventId"})
    status, obj = svc.handle("initiateAuthentication", {...})   # then authenticateClient

ES11 (the LPA / IPAd) is the SM-DP+'s mutual authentication with CERT.DSauth in place of
CERT.DPauth (shared with smdpp_es9.Es9Service: the eUICC chain, euiccSignature1,
transactionId, serverChallenge and serverAddress are checked the same way);
AuthenticateClient answers the event records of the EID in the eUICC certificate, all of
them, or only the one whose eventId is the ctxParams1 matchingId (eventIdUnknown when
none). Retrieval does not delete an event: the SM-DP+ does, with ES12.DeleteEvent, once the
download it announced is over (SGP.22 3.6.3), so a retrieval that is cut loses nothing.

ES12 (the SM-DP+): RegisterEvent {eid, rspServerAddress, eventId, forwardingIndicator?}
(the same eventId again replaces the record), DeleteEvent {eid, eventId}. Bounded:
MAX_PER_EID records per EID (eventRecordsLimit reached beyond), MAX_EIDS EIDs.

`fault="bad-signature"` makes serverSignature1 not verify (one bit flipped): what the eUICC
must refuse, for tests of that path.
"""

import collections
import time

from ipa_host.sim.smdpp.smdpp_es9 import ERRORS as ES9_ERRORS
from ipa_host.sim.smdpp.smdpp_es9 import Es9Failed, Es9Refused, Es9Service, _field

MAX_PER_EID = 32
MAX_EIDS = 10000
FAULTS = ("bad-signature",)

# SGP.22 ES11 / ES12 status codes (subjectCode, reasonCode), as best known.
ERRORS = dict(ES9_ERRORS, invalidSmdsAddress=("8.9.1", "3.8"), eventIdUnknown=("8.9.5", "3.9"),
              eventRecordsLimit=("8.9", "6.4"))


class SmdsService(Es9Service):
    """The SM-DS: event records and ES11 sessions. Thread-safe (Es9Service's lock)."""

    METHODS = {"initiateAuthentication": "initiate_authentication",
               "authenticateClient": "authenticate_client",
               "registerEvent": "register_event", "deleteEvent": "delete_event"}
    ERRORS = ERRORS
    ADDRESS_FIELD = "smdsAddress"
    ADDRESS_ERROR = "invalidSmdsAddress"
    AUTH_ROLE = "dsauth"

    def __init__(self, material, address, fault=None):
        if fault is not None and fault not in FAULTS:
            raise ValueError("fault %r: expected one of %s" % (fault, ", ".join(FAULTS)))
        super().__init__(material, address)
        self.fault = fault
        self.records = collections.OrderedDict()  # eid -> OrderedDict(eventId -> record)
        self.retrievals = []  # what each AuthenticateClient answered, for tests

    def _sign1(self, signed1):
        sig = super()._sign1(signed1)
        if self.fault == "bad-signature":
            sig = sig[:-1] + bytes([sig[-1] ^ 1])
        return sig

    # ---- ES11.AuthenticateClient (SGP.22 5.8.2) ------------------------------------------------

    def authenticate_client(self, obj, ev):
        s, euicc, eid, signed1, sig1 = self._authenticate_euicc(obj, ev)
        s.state = "ended"
        ctx = signed1.find(0xA0)
        wanted = ctx.find(0x80) if ctx is not None else None
        found = list(self.records.get(eid, {}).values())
        if wanted is not None:
            found = [r for r in found if r["eventId"] == wanted.as_str()]
            if not found:
                raise Es9Failed("eventIdUnknown", "no event %r for EID %s" % (wanted.as_str(), eid))
        entries = [{"eventId": r["eventId"], "rspServerAddress": r["rspServerAddress"]} for r in found]
        ev["eid"], ev["events"] = eid, len(entries)
        self.retrievals.append({"time": time.time(), "eid": eid, "eventEntries": entries})
        return {"transactionId": s.tid.hex().upper(), "eventEntries": entries}

    # ---- ES12 (SGP.22 5.9) ---------------------------------------------------------------------

    @staticmethod
    def _eid(obj):
        eid = _field(obj, "eid", "str", 32)
        if len(eid) != 32 or not eid.isdigit():
            raise Es9Refused("eid: expected 32 digits, found %r" % eid)
        return eid

    def register_event(self, obj, ev):
        eid = self._eid(obj)
        event_id = _field(obj, "eventId", "str", 255)
        address = _field(obj, "rspServerAddress", "str", 255)
        if not event_id or not address:
            raise Es9Refused("eventId and rspServerAddress: expected non-empty strings")
        recs = self.records.get(eid)
        if recs is None:
            if len(self.records) >= MAX_EIDS:
                raise Es9Failed("eventRecordsLimit", "the SM-DS holds events for %d EIDs" % MAX_EIDS)
            recs = self.records[eid] = collections.OrderedDict()
        if event_id not in recs and len(recs) >= MAX_PER_EID:
            raise Es9Failed("eventRecordsLimit", "EID %s has %d events already" % (eid, MAX_PER_EID))
        recs[event_id] = {"eventId": event_id, "rspServerAddress": address, "time": time.time(),
                          "forwardingIndicator": bool(obj.get("forwardingIndicator"))}
        ev["eid"], ev["eventId"] = eid, event_id
        return {}

    def delete_event(self, obj, ev):
        eid = self._eid(obj)
        event_id = _field(obj, "eventId", "str", 255)
        ev["eid"], ev["eventId"] = eid, event_id
        recs = self.records.get(eid, {})
        if event_id not in recs:
            raise Es9Failed("eventIdUnknown", "no event %r for EID %s" % (event_id, eid))
        del recs[event_id]
        if not recs:
            self.records.pop(eid, None)
        return {}

    def event_records(self, eid=None):
        """The event records (of one EID), oldest first: copies."""
        with self.lock:
            return [dict(r, eid=e) for e, recs in self.records.items() if eid in (None, e)
                    for r in recs.values()]

