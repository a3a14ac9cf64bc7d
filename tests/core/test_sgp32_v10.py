"""The IPA's SGP.32 v1.0 forms (ipa_core.version, esipa, es10) against the hand-written
vectors of sgp32_v10_vectors (derived there from the v1.0 module). Plain functions with
assert: pytest on CPython and tools/mp_test.py on MicroPython.
"""

from ipa_core import es10, esipa
from ipa_core import version as ver
from ipa_core.errors import FunctionError

import sgp32_v10_vectors as V
from scripted import ScriptedSession, clean_hex, to_bytes as h


def same(got, expected_hex):
    exp = clean_hex(expected_hex)
    assert clean_hex(got) == exp, "\n  got      %s\n  expected %s" % (clean_hex(got), exp)


def test_get_eim_package_request_v1_0_has_rplmn_at_81_and_no_cause():
    same(esipa.get_eim_package_request(V.EID, notify_state_change=True, state_change_cause="local",
                                       rplmn="21F354", version="1.0"), V.GET_EIM_PACKAGE)
    # v1.2 for contrast: stateChangeCause [1] 81, rPLMN [2] 82.
    same(esipa.get_eim_package_request(V.EID, True, "local", "21F354"),
         "BF4F1C 5A10" + V.EID + "8000 810103 820321F354")


def test_provide_eim_package_result_v1_0_is_a_choice_without_eid():
    same(esipa.provide_eim_package_result(V.EID, euicc_package_result=h(V.EPR), version="1.0"),
         V.PROVIDE_EPR)
    same(esipa.provide_eim_package_result(V.EID, euicc_package_result=h(V.EPR),
                                          notifications=[h(V.NOTIF)], version="1.0"),
         V.PROVIDE_EPR_AND_NOTIFICATIONS)
    same(esipa.provide_eim_package_result(V.EID, error_code="invalidPackageFormat",
                                          eim_transaction_id=b"\x01", version="1.0"),
         V.PROVIDE_ERROR)


def test_handle_notification_v1_0_alternatives_are_automatic_a0_a1():
    same(esipa.handle_notification(h(V.NOTIF), version="1.0"), V.HANDLE_NOTIFICATION)
    same(esipa.handle_notification(provide_eim_package_result=h(V.PROVIDE_EPR), version="1.0"),
         V.HANDLE_RESULT)


def test_ipa_euicc_data_response_v1_0():
    same(esipa.ipa_euicc_data_response(eim_transaction_id=b"\x01", notifications=[h(V.NOTIF)],
                                       default_smdp_address="dp.example", association_token=1,
                                       version="1.0"), V.IPA_EUICC_DATA)
    same(esipa.ipa_euicc_data_response(euicc_package_results=[h(V.EPR)], version="1.0"),
         V.IPA_EUICC_DATA_RESULTS)
    same(esipa.ipa_euicc_data_response(notifications=[h(V.NOTIF)],
                                       euicc_package_results=[h(V.EPR)], version="1.0"),
         V.IPA_EUICC_DATA_BOTH)
    same(esipa.ipa_euicc_data_response_error("incorrectTagList", b"\x01", "1.0"),
         V.IPA_EUICC_DATA_ERROR)
    # ecallActive is not a v1.0 code: undefinedError
    same(esipa.ipa_euicc_data_response_error("ecallActive", None, "1.0"), "BF5203 81017F")


def test_ipa_euicc_data_request_v1_0_is_read_with_v1_0_tags():
    r = esipa.decode_get_eim_package_response(h(V.GET_EIM_PACKAGE_DATA_REQUEST))
    assert r["kind"] == "ipaEuiccDataRequest"
    assert r["tagList"] == [0x80, 0xBF2B]
    assert r["searchCriteriaNotification"] == {"euiccPackageResults": True}
    assert esipa.ipa_euicc_data_items(r["tagList"], "1.0") == (
        ["defaultSmdpAddress", "notificationsList"], [])
    # the same tags name nothing in v1.2 (there 80 is no component, BF2B neither)
    assert esipa.ipa_euicc_data_items(r["tagList"], "1.2") == ([], [0x80, 0xBF2B])
    assert esipa.ipa_euicc_data_items([0xA0, 0x81, 0x87], "1.0") == ([], [0xA0, 0x81, 0x87])


def test_eim_answers_v1_0_are_read():
    r = esipa.decode_get_eim_package_response(h(V.NO_PACKAGE))
    assert r["eimPackageError"] == 1 and r["error"] == "noEimPackageAvailable"
    assert esipa.decode_provide_eim_package_result_response(h(V.PROVIDE_RESPONSE_EMPTY)) == {
        "kind": "emptyResponse", "eimAcknowledgements": []}
    assert esipa.decode_provide_eim_package_result_response(h(V.PROVIDE_RESPONSE_ACK_7))[
        "eimAcknowledgements"] == [7]


def test_initiate_authentication_v1_0_has_no_eim_transaction_id():
    same(esipa.initiate_authentication_request(h(V.CHALLENGE), smdp_address="dp.example",
                                               eim_transaction_id=b"\x01", version="1.0"),
         V.INITIATE_AUTHENTICATION)


def test_euicc_memory_reset_v1_0():
    s = ScriptedSession([(V.MEMORY_RESET, V.MEMORY_RESET_OK)], version="1.0")
    assert es10.euicc_memory_reset(s, ["deleteOperationalProfiles", "resetEimConfigData"]) == {
        "resetResult": 0, "resetEimResult": 0}
    s.done()
    assert ver.tag("EuiccMemoryReset", "1.0") == 0xBF34


def test_immediate_enable_v1_0_is_enable_using_dd_without_refresh_flag():
    s = ScriptedSession([(V.ENABLE_USING_DD, V.ENABLE_USING_DD_NOT_AVAILABLE)], version="1.0")
    try:
        es10.immediate_enable(s, True)
        raise AssertionError("autoEnableNotAvailable not raised")
    except FunctionError as e:
        assert (e.function, e.code) == ("ES10b.ImmediateEnable", 1)
    s.done()


def test_json_binding_v1_0_sends_rplmn_under_its_key():
    from ipa_core.compat import json
    from ipa_core import esipa_json

    msg = esipa.get_eim_package_request(V.EID, rplmn="21F354", version="1.0")
    fn, body = esipa_json.to_json(msg, "1.0")
    obj = json.loads(body)
    assert fn == "getEimPackage" and "stateChangeCause" not in obj
    assert obj["rPlmn"] == "IfNU"  # base64 of 21 F3 54
    fn, body = esipa_json.to_json(h(V.PROVIDE_ERROR), "1.0")
    assert json.loads(body) == {"eimPackageResult": "AgEB"}  # base64 of 02 01 01


def test_no_fact_is_left_unset_for_a_known_version():
    for name, pairs in ver.FACTS:
        for v in ver.KNOWN:
            ver.value(name, v)  # every fact has a value (possibly None) from v1.0 on
        assert pairs[0][0] == "1.0", name
    assert len(set(ver.names())) == len(ver.FACTS)  # no name twice
