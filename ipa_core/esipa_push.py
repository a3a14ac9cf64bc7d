"""ESipa TransferEimPackage (SGP.32 v1.2 6.3.2.7: the eIM pushing a package to the IPA over
an inject endpoint) and decode_eim_message (any EsipaMessageFromEimToIpa, for a CoAP /
inject endpoint where the tag says what came).

A polling IPA (GetEimPackage, as every board does) never needs these: they
live here, outside the modules a board freezes, and stay reachable by their
old names (ipa_core.esipa.transfer_eim_package_response,
ipa_core.esipa.decode_transfer_eim_package_request, ipa_core.esipa.decode_eim_message),
imported on first use. The helpers it shares with ipa_core.esipa live in esipa_decode:
this module never imports esipa (esipa imports it).
Conventions and errors as in ipa_core.esipa / ipa_core.esipa_decode.
"""

from ipa_core import tlv
from ipa_core import version as ver
from ipa_core.errors import ProtocolError
from ipa_core.esipa_decode import (
    EIM_PACKAGE_RESULT_ERROR_CODE, _eim_package, alternative, code,
    decode_authenticate_client_response, decode_cancel_session_response,
    decode_get_bound_profile_package_response, decode_get_eim_package_response,
    decode_initiate_authentication_response, decode_provide_eim_package_result_response,
    epr_and_notifications, message, raw_tlv,
)


# ---- TransferEimPackage -----------------------------------------------------------------


def decode_transfer_eim_package_request(data):
    """ESipa.TransferEimPackage request pushed by the eIM 'BF4E' -> the package dict.

    Same shapes as decode_get_eim_package_response, plus kind
    "eimAcknowledgements" {"eimAcknowledgements": [seqNumber, ...]}.
    """
    t = message(data, 0xBF4E, "ESipa.TransferEimPackage", "TransferEimPackageRequest")
    return _eim_package(alternative(t, "TransferEimPackageRequest"),
                        "TransferEimPackageRequest", None)


def transfer_eim_package_response(euicc_package_result=None, notifications=None,
                                  ipa_euicc_data_response=None, eim_package_received=False,
                                  error_code=None, version=ver.DEFAULT):
    """ESipa.TransferEimPackage response 'BF4E' (the IPA answering an eIM push), one of:

    euicc_package_result 'BF51' (with notifications: ePRAndNotifications '30',
    as in eim_package_result), ipa_euicc_data_response 'BF52',
    eim_package_received (NULL '05 00': processed later, the result follows
    with ProvideEimPackageResult), error_code '02' (int or
    EIM_PACKAGE_RESULT_ERROR_CODE name: invalidPackageFormat, unknownPackage,
    undefinedError).
    """
    version = ver.norm(version)
    given = [euicc_package_result is not None, ipa_euicc_data_response is not None,
             bool(eim_package_received), error_code is not None]
    if given.count(True) != 1:
        raise ValueError("TransferEimPackageResponse takes exactly one of euicc_package_result, "
                         "ipa_euicc_data_response, eim_package_received, error_code")
    if notifications and euicc_package_result is None:
        raise ValueError("notifications go with a euicc_package_result (ePRAndNotifications)")
    if euicc_package_result is not None:
        body = raw_tlv(euicc_package_result, (0xBF51,), "euiccPackageResult")
        if notifications:
            body = epr_and_notifications(body, notifications, version)
    elif ipa_euicc_data_response is not None:
        body = raw_tlv(ipa_euicc_data_response, (0xBF52,), "ipaEuiccDataResponse")
    elif eim_package_received:
        body = tlv.encode(0x05)
    else:
        body = tlv.encode(0x02, tlv.int_encode(code(error_code, EIM_PACKAGE_RESULT_ERROR_CODE,
                                                    "eimPackageError")))
    return tlv.encode(0xBF4E, body)


# ---- any message ------------------------------------------------------------------------

MESSAGES = {
    0xBF39: ("initiateAuthenticationResponseEsipa", decode_initiate_authentication_response),
    0xBF3B: ("authenticateClientResponseEsipa", decode_authenticate_client_response),
    0xBF3A: ("getBoundProfilePackageResponseEsipa", decode_get_bound_profile_package_response),
    0xBF41: ("cancelSessionResponseEsipa", decode_cancel_session_response),
    0xBF4E: ("transferEimPackageRequest", decode_transfer_eim_package_request),
    0xBF4F: ("getEimPackageResponse", decode_get_eim_package_response),
    0xBF50: ("provideEimPackageResultResponse", decode_provide_eim_package_result_response),
}


def decode_eim_message(data):
    """Any EsipaMessageFromEimToIpa -> its decoder's dict plus "message" (the alternative name).

    For a CoAP/inject endpoint where the tag says what came. An unknown tag
    -> ProtocolError naming it; error answers raise as their decoders do.
    """
    if data is None or not len(data):
        raise ProtocolError("ESipa: the eIM sent no data, expected an EsipaMessageFromEimToIpa")
    t = tlv.decode(data)
    m = MESSAGES.get(t.tag)
    if m is None:
        raise ProtocolError("unknown EsipaMessageFromEimToIpa tag %02X, expected one of %s"
                            % (t.tag, ", ".join("%02X" % x for x in sorted(MESSAGES))))
    out = m[1](data)
    out["message"] = m[0]
    return out
