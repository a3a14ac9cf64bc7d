"""ipa_core.es11 and ipa_core.ipa_smds: the ES11 JSON binding (SGP.22 5.8, 6.5) and Event
Retrieval against a scripted eUICC (ES10 bytes checked) and a scripted SM-DS (JSON checked).

What a user would check: the requests carry what SGP.22 names (smdsAddress, no matchingId
in ctxParams1), the events come out in order and bounded, a failed status reads as an
ES11 error with its name, an eUICC that refuses the SM-DS stops the retrieval with its
reason after telling the SM-DS. Plain functions with assert (pytest and MicroPython).
"""

from ipa_core.compat import json
from ipa_core.compat import hexlify, unhexlify

from ipa_core import es11, ipa_smds, tlv
from ipa_core.errors import FunctionError, IpaError, ProtocolError

from scripted import ScriptedSession
from test_es9p import CERT, INFO1, PKID, SIG, b64, raises

TID = unhexlify("00112233445566778899AABBCCDDEEFF")
TID_HEX = "00112233445566778899AABBCCDDEEFF"
CHALLENGE = bytes(range(16, 32))
SS1 = tlv.enc(0x30, tlv.encode(0x80, TID), tlv.encode(0x81, CHALLENGE),
              tlv.encode(0x83, b"ds.example"), tlv.encode(0x84, b"\x22" * 16))
ASR_OK = tlv.enc(0xBF38, tlv.enc(0xA0, tlv.enc(0x30, tlv.encode(0x80, TID)), SIG, CERT, CERT))
ASR_ERR = tlv.enc(0xBF38, tlv.enc(0xA1, tlv.encode(0x80, TID), tlv.encode(0x02, b"\x02")))
# CtxParams1 without matchingId: deviceInfo { tac 00000000, eutranEpcSupportedRelease 15.0.0 }
CTX = "A0 0F A1 0D 80 04 00000000 A1 05 85 03 0F0000"
OK = {"functionExecutionStatus": {"status": "Executed-Success"}}
EVENTS = [{"eventId": "EV-1", "rspServerAddress": "dp.example:8443"},
          {"eventId": "EV-2", "rspServerAddress": "dp2.example"}]


def hx(b):
    return hexlify(b).decode().upper()


def ia_answer(ss1=SS1):
    return {"header": OK, "transactionId": TID_HEX, "serverSigned1": b64(ss1),
            "serverSignature1": b64(SIG), "euiccCiPKIdToBeUsed": b64(PKID),
            "serverCertificate": b64(CERT)}


def ac_answer(events=EVENTS):
    return {"header": OK, "transactionId": TID_HEX, "eventEntries": events}


def failed(subject, reason):
    return {"header": {"functionExecutionStatus": {
        "status": "Failed", "statusCodeData": {"subjectCode": subject, "reasonCode": reason}}}}


def body(obj):
    return json.dumps(obj).encode()


class SmdsNet:
    """A scripted SM-DS: [(function, expected request dict, (status, answer obj))]."""

    def __init__(self, script):
        self.script = list(script)

    def post(self, path, data, content_type, headers=None):
        assert content_type == "application/json" and path.startswith("/gsma/rsp2/es11/"), path
        assert headers["X-Admin-Protocol"] == "gsma/rsp/v2.1.0", headers
        fn = path[len("/gsma/rsp2/es11/"):]
        assert self.script, "unexpected ES11 %s" % fn
        want_fn, want, (status, obj) = self.script.pop(0)
        assert fn == want_fn, "ES11 %s, expected %s" % (fn, want_fn)
        assert json.loads(data) == want, "%s request %r" % (fn, data)
        return status, body(obj)

    def done(self):
        assert not self.script, "ES11 calls left: %r" % ([s[0] for s in self.script],)


def es10_script(asr=ASR_OK):
    auth = hx(tlv.enc(0xBF38, SS1, SIG, PKID, CERT, unhexlify(CTX.replace(" ", ""))))
    return [("BF20 00", INFO1), ("BF2E 00", "BF2E 12 80 10" + hx(CHALLENGE)), (auth, asr)]


def es11_script(ac=None, asr=ASR_OK):
    return [("initiateAuthentication", {"euiccChallenge": b64(CHALLENGE), "euiccInfo1": b64(INFO1),
                                        "smdsAddress": "ds.example"}, (200, ia_answer())),
            ("authenticateClient", {"transactionId": TID_HEX,
                                    "authenticateServerResponse": b64(asr)},
             (200, ac_answer() if ac is None else ac))]


def retrieve(session, net):
    return ipa_smds.retrieve_events(session, net, "ds.example", b"\x00" * 4,
                                    {"eutranEpcSupportedRelease": "15.0.0"})


# ---- the codec -------------------------------------------------------------------------------


def test_requests():
    got = json.loads(es11.initiate_authentication_request(CHALLENGE, INFO1, "ds.example:8443"))
    assert got == {"euiccChallenge": b64(CHALLENGE), "euiccInfo1": b64(INFO1),
                   "smdsAddress": "ds.example:8443"}
    got = json.loads(es11.authenticate_client_request(TID, ASR_OK))
    assert got == {"transactionId": TID_HEX, "authenticateServerResponse": b64(ASR_OK)}
    assert es11.path("authenticateClient") == "/gsma/rsp2/es11/authenticateClient"
    raises(ValueError, lambda: es11.path("getBoundProfilePackage"), "unknown ES11 function")
    raises(ValueError, lambda: es11.initiate_authentication_request(CHALLENGE, INFO1, "a b"),
           "SM-DS address")


def test_initiate_authentication_answer():
    r = es11.decode_initiate_authentication_response(body(ia_answer()))
    assert r["transactionId"] == TID and r["serverSigned1"] == SS1
    assert r["serverAddress"] == "ds.example" and r["euiccChallenge"] == CHALLENGE
    e = raises(FunctionError, lambda: es11.decode_initiate_authentication_response(
        body(failed("8.8.2", "3.1"))), "ES11.InitiateAuthentication", "ciPKIdNotSupported")
    assert isinstance(e, es11.Es11Error) and e.code == 3 and e.subject_code == "8.8.2"


def test_authenticate_client_events_in_order():
    r = es11.decode_authenticate_client_response(body(ac_answer()), TID)
    assert r == {"transactionId": TID, "eventEntries": EVENTS, "more": 0}
    # no events: an empty list, or none at all
    assert es11.decode_authenticate_client_response(body(ac_answer([])))["eventEntries"] == []
    assert es11.decode_authenticate_client_response(
        body({"header": OK, "transactionId": TID_HEX}))["eventEntries"] == []


def test_authenticate_client_bounds_and_hostile_shapes():
    many = [{"eventId": "E%d" % i, "rspServerAddress": "dp.example"} for i in range(40)]
    r = es11.decode_authenticate_client_response(body(ac_answer(many)))
    assert len(r["eventEntries"]) == es11.MAX_EVENTS and r["more"] == 40 - es11.MAX_EVENTS
    assert r["eventEntries"][0]["eventId"] == "E0"
    dec = es11.decode_authenticate_client_response
    raises(ProtocolError, lambda: dec(body(ac_answer({"eventId": "x"}))), "expected a list")
    raises(ProtocolError, lambda: dec(body(ac_answer(["x"]))), "eventEntries[0]")
    raises(ProtocolError, lambda: dec(body(ac_answer([{"eventId": 5, "rspServerAddress": "a"}]))),
           "eventId and rspServerAddress")
    raises(ProtocolError, lambda: dec(body(ac_answer([{"eventId": "E", "rspServerAddress":
                                                       "evil/path"}]))), "rspServerAddress")
    raises(ProtocolError, lambda: dec(body(ac_answer([{"eventId": "E$1", "rspServerAddress":
                                                       "dp.example"}]))), "eventId")
    raises(ProtocolError, lambda: dec(body(ac_answer()), b"\x01"), "expected the session's")
    raises(ProtocolError, lambda: dec(b"x" * (es11.MAX_BODY + 1)), "at most")
    e = raises(FunctionError, lambda: dec(body(failed("8.10.1", "3.9"))), "invalidTransactionId")
    assert e.function == "ES11.AuthenticateClient" and e.code == 7
    assert raises(FunctionError, lambda: dec(body(failed("9", {})))).code == 127


# ---- the procedure ---------------------------------------------------------------------------


def test_retrieve_events_in_spec_order():
    card = ScriptedSession(es10_script())
    net = SmdsNet(es11_script())
    r = retrieve(card, net)
    card.done()
    net.done()
    assert r == {"smdsAddress": "ds.example", "transactionId": TID_HEX, "eventEntries": EVENTS,
                 "more": 0}


def test_euicc_refusal_goes_to_the_smds_then_stops():
    card = ScriptedSession(es10_script(ASR_ERR))
    net = SmdsNet(es11_script(failed("8.1", "6.1"), ASR_ERR))
    e = raises(ipa_smds.SmdsError, lambda: retrieve(card, net), "the eUICC refused the SM-DS",
               "invalidSignature")
    assert e.stage == "ES10b.AuthenticateServer"
    card.done()
    net.done()


def test_server_answering_for_another_address_is_refused_before_the_euicc_signs():
    other = tlv.enc(0x30, tlv.encode(0x80, TID), tlv.encode(0x81, CHALLENGE),
                    tlv.encode(0x83, b"evil.example"), tlv.encode(0x84, b"\x22" * 16))
    card = ScriptedSession(es10_script()[:2])
    script = es11_script()[:1]
    script[0] = script[0][:2] + ((200, ia_answer(other)),)
    net = SmdsNet(script)
    e = raises(ipa_smds.SmdsError, lambda: retrieve(card, net), "evil.example")
    assert e.stage == "ES11.InitiateAuthentication"
    card.done()
    net.done()


def test_http_error_status_names_the_smds():
    card = ScriptedSession(es10_script()[:2])
    script = es11_script()[:1]
    script[0] = script[0][:2] + ((503, {"x": 1}),)
    e = raises(ipa_smds.SmdsError, lambda: retrieve(card, SmdsNet(script)), "SM-DS answered HTTP 503")
    assert isinstance(e.cause, ProtocolError)


def test_contact_smds_uses_the_root_address_and_closes_the_network():
    # GetEuiccConfiguredAddresses: rootDsAddress "ds.example" (81 0A), no default SM-DP+
    card = ScriptedSession([("BF3C 00", "BF3C 0C 81 0A" + hx(b"ds.example"))] + es10_script())
    net = SmdsNet(es11_script())
    asked = []

    def factory(address):
        asked.append(address)
        net.close = lambda: asked.append("closed")
        return net

    r = ipa_smds.contact_smds(card, factory, None, {"tac": None})
    assert asked == ["ds.example", "closed"] and r["eventEntries"] == EVENTS
    card.done()
    net.done()
    # no event: an error naming the SM-DS, the network closed all the same
    card = ScriptedSession(es10_script())
    net = SmdsNet(es11_script(ac_answer([])))
    asked[:] = []
    raises(IpaError, lambda: ipa_smds.contact_smds(card, factory, "ds.example", {}),
           "the SM-DS ds.example has no event for this eUICC")
    assert asked == ["ds.example", "closed"]
