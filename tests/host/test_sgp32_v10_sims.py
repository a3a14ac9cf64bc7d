"""Both simulators' own codecs against the hand-written SGP.32 v1.0 vectors
(tests/core/sgp32_v10_vectors.py): the eIM (ipa_host.sim.eim.eim_codec, EsipaService) and
the virtual eUICC each encode the v1.0 forms byte for byte, read them, and refuse the v1.2
forms where the module differs - and the other way round in v1.2.
"""

import os
import sys

import pytest

from ipa_core import tlv
from ipa_core.errors import TlvError
from ipa_host.sim.eim import eim_codec as codec
from ipa_host.sim.eim.eim_esipa import EsipaRefused, EsipaService
from ipa_host.sim.eim.eim_state import Store
from euicc_fixtures import es10, make_euicc  # tests/host/euicc_fixtures.py

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "core"))
import sgp32_v10_vectors as V  # noqa: E402

H = bytes.fromhex


def T(hexstr):
    return tlv.decode(H(hexstr))


# ---- eIM codec ------------------------------------------------------------------------------


def test_eim_encodes_the_v1_0_forms():
    assert codec.get_eim_package_error(1, "1.0") == H(V.NO_PACKAGE)
    assert codec.get_eim_package_error(codec.EID_NOT_FOUND, "1.0") == H(V.NO_PACKAGE_UNDEFINED)
    assert codec.provide_result_response([], "1.0") == H(V.PROVIDE_RESPONSE_EMPTY)
    assert codec.provide_result_response([7], "1.0") == H(V.PROVIDE_RESPONSE_ACK_7)
    assert codec.ipa_euicc_data_request(["80", "BF2B"], transaction_id=b"\x01",
                                        euicc_package_results=True, version="1.0") == \
        H(V.IPA_EUICC_DATA_REQUEST)
    # v1.2 for contrast: emptyResponse 30 00, and no euiccPackageResults criterion
    assert codec.provide_result_response([]) == H("BF50023000")
    with pytest.raises(ValueError, match="v1.0"):
        codec.ipa_euicc_data_request(["A2"], euicc_package_results=True)
    with pytest.raises(ValueError, match="not in SGP.32 v1.0"):
        codec.ipa_euicc_data_request(["BF2B"], result_seq=3, version="1.0")


def test_eim_reads_the_v1_0_forms():
    req = codec.parse_get_eim_package_request(T(V.GET_EIM_PACKAGE), "1.0")
    assert req["eid"] == H(V.EID) and req["notifyStateChange"]
    assert req["rPLMN"] == H("21F354") and req["stateChangeCause"] is None
    eid, res = codec.parse_provide_result(T(V.PROVIDE_EPR), "1.0")
    assert eid is None and res.raw == H(V.EPR)
    eid, res = codec.parse_provide_result(T(V.PROVIDE_EPR_AND_NOTIFICATIONS), "1.0")
    epr, notes = codec.parse_epr_and_notifications(res, "1.0")
    assert epr.raw == H(V.EPR) and [n.raw for n in notes] == [H(V.NOTIF)]
    assert codec.parse_euicc_package_result(epr)["seqNumber"] == 7
    eid, res = codec.parse_provide_result(T(V.PROVIDE_ERROR), "1.0")
    assert res.tag == 0x02
    kind, c = codec.parse_handle_notification(T(V.HANDLE_NOTIFICATION), "1.0")
    assert kind == "notification" and c.raw == H(V.NOTIF)
    kind, c = codec.parse_handle_notification(T(V.HANDLE_RESULT), "1.0")
    assert kind == "result" and c.raw == H(V.PROVIDE_EPR)
    d = codec.parse_ipa_euicc_data_response(T(V.IPA_EUICC_DATA), "1.0")
    assert d["fields"] == ["80", "84", "BF2B"] and [n.raw for n in d["notifications"]] == [
        H(V.NOTIF)]
    d = codec.parse_ipa_euicc_data_response(T(V.IPA_EUICC_DATA_RESULTS), "1.0")
    assert [r.raw for r in d["results"]] == [H(V.EPR)] and d["notifications"] == []
    d = codec.parse_ipa_euicc_data_response(T(V.IPA_EUICC_DATA_BOTH), "1.0")
    assert [r.raw for r in d["results"]] == [H(V.EPR)]
    assert [n.raw for n in d["notifications"]] == [H(V.NOTIF)]
    d = codec.parse_ipa_euicc_data_response(T(V.IPA_EUICC_DATA_ERROR), "1.0")
    assert (d["kind"], d["errorName"]) == ("ipaEuiccDataError", "incorrectTagList")


@pytest.mark.parametrize("fn,hexstr,said", [
    (codec.parse_provide_result, "BF506D 5A10" + V.EID + V.EPR, "tag 5A (a v1.2 form)"),
    (codec.parse_provide_result, "BF5005 A003 020101", "tag A0 (a v1.2 form)"),
    (codec.parse_handle_notification, "BF3D5E BF505B" + V.EPR, "BF50 (the v1.2 form)"),
    (codec.parse_get_eim_package_request, "BF4F17 5A10" + V.EID + "820321F354",
     "tag 82 (v1.2's rPLMN)"),
    (codec.parse_ipa_euicc_data_response, "BF5209 A007 810564702E696F", "tag 81 (a v1.2 form)"),
    (codec.parse_ipa_euicc_data_response, "BF5205 A103 020101", "tags A1"),
])
def test_eim_v1_0_refuses_v1_2_forms(fn, hexstr, said):
    with pytest.raises(TlvError, match=r"v1\.0") as e:
        fn(T(hexstr), "1.0")
    assert said in str(e.value)


def test_eim_v1_2_refuses_v1_0_forms():
    _eid, res = codec.parse_provide_result(T(V.PROVIDE_EPR_AND_NOTIFICATIONS))
    with pytest.raises(TlvError, match=r"a v1\.0 form \(BF2B\)"):
        codec.parse_epr_and_notifications(res)
    with pytest.raises(TlvError, match=r"tag 2 \(a v1\.0 form\)"):
        codec.parse_provide_result(T(V.PROVIDE_ERROR))
    with pytest.raises(TlvError, match=r"tag 80 \(a v1\.0 form\)"):
        codec.parse_ipa_euicc_data_response(T(V.IPA_EUICC_DATA))
    with pytest.raises(TlvError, match=r"the v1\.0 form"):
        codec.parse_handle_notification(T(V.HANDLE_RESULT))


def test_eim_service_v1_0_answers_a_result_without_eid(tmp_path):
    """ProvideEimPackageResult without eidValue: the EID comes from the package awaiting it."""
    from ipa_host.sim import pki

    paths = pki.create_test_pki(str(tmp_path / "pki"), eid=V.EID)
    svc = EsipaService(Store(str(tmp_path / "eim")), "eim1", pki.load_private_key(paths["eim.key"]),
                       version="1.0")
    svc.queue(V.EID, "ipaEuiccDataRequest", {"tagList": ["80", "BF2B"]})
    answer, info = svc.handle(H(V.GET_EIM_PACKAGE), {})
    assert tlv.decode(answer).children()[0].tag == 0xBF52
    answer, info = svc.handle(H(V.PROVIDE_EPR_AND_NOTIFICATIONS), {})
    assert info["eid"] == V.EID
    assert answer == H(V.PROVIDE_RESPONSE_ACK_7)  # the result's and the notification's seq 7
    # nothing awaits a result now, no connection EID: v1.0 has no error to answer with
    with pytest.raises(EsipaRefused, match="missingEid"):
        svc.handle(H(V.PROVIDE_EPR), {})


# ---- virtual eUICC ------------------------------------------------------------------------


def test_euicc_v1_0_memory_reset_bytes(tmp_path):
    card = make_euicc(tmp_path, version="1.0")
    assert es10(card, H(V.MEMORY_RESET)) == H(V.MEMORY_RESET_OK)
    assert card.state.eims == [] and card.state.data["sgp32"] == "1.0"
    assert es10(card, H("BF640482020780"), expect_sw=0x6A88) == b""  # v1.2's tag is unknown


def test_euicc_keeps_its_version_in_the_state_file(tmp_path):
    from ipa_host.sim.euicc.euicc import VirtualEuicc

    make_euicc(tmp_path, version="1.0")
    again = VirtualEuicc(os.path.join(str(tmp_path), "pki"),
                         state_path=os.path.join(str(tmp_path), "euicc.json"))
    assert again.version == "1.0"
    assert es10(again, H(V.MEMORY_RESET))[:2] == H("BF34")


def test_euicc_v1_0_enable_using_dd_is_empty(tmp_path):
    card = make_euicc(tmp_path, version="1.0")
    assert es10(card, H(V.ENABLE_USING_DD)) == H(V.ENABLE_USING_DD_NOT_AVAILABLE)
    assert es10(card, H("BF5A03800100"), expect_sw=0x6A80) == b""  # v1.2's refreshFlag
