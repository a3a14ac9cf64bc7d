"""IPA side of the eIM's ipaEuiccDataRequest (SGP.32 v1.2, IpaEuiccDataRequest /
IpaEuiccDataResponse 'BF52' in SGP32Definitions): collect what the tagList selects
and build the IpaEuiccDataResponse 'BF52'.

Each IpaEuiccData component comes from the eUICC (ES10) or from the IPA's
own configuration:

    A0 notificationsList       ES10b.RetrieveNotificationsList (searchCriteriaNotification)
    81 defaultSmdpAddress      ES10a.GetEuiccConfiguredAddresses
    A2 euiccPackageResultList  ES10b.RetrieveNotificationsList (euiccPackageResults, or
                               searchCriteriaEuiccPackageResult's seqNumber)
    BF20 / BF22 euiccInfo1/2   ES10b.GetEUICCInfo (forwarded as the eUICC gave them)
    83 rootSmdsAddress         ES10a.GetEuiccConfiguredAddresses
    84 associationToken        ES10b.GetEimConfigurationData (this eIM's entry)
    A5 / A6 certificates       ES10b.GetCerts (euiccCiPKIdentifierToBeUsed)
    87 eimTransactionId        the request's, echoed whenever it has one
    A8 ipaCapabilities         config ipa_capabilities
    A9 deviceInfo              config device_info

In v1.0 (ipa_core.version) the tagList names notificationsList 'BF2B' and
defaultSmdpAddress '80'; notificationsList then carries what the eIM's
searchCriteria selects (euiccPackageResults: the results; no criterion: the
notifications and the results, notificationAndEprList) and there is no
eimTransactionId to echo.

Errors go back as ipaEuiccDataResponseError 'A1': incorrectTagList (1) for
a tag naming no IpaEuiccData component (or an empty tagList),
euiccCiPKIdNotFound (5) when GetCerts does not know the CI key, ecallActive
(104) while the device is in an emergency call (or an ES10 function says
so), undefinedError (127) for any other ES10 function error. A card that
does not answer raises (the IPA retries the step, bounded).
"""

from ipa_core import es10, esipa
from ipa_core import version as ver
from ipa_core.errors import FunctionError

ECALL_ACTIVE = 104
GET_CERTS_INVALID_CI_PKID = 1


def _not_results(items):
    """Pending notifications only (a mixed list may carry EuiccPackageResults 'BF51')."""
    return [n for n in items if n["raw"][:2] != b"\xbf\x51"]


def _results(items):
    return [n for n in items if n["raw"][:2] == b"\xbf\x51"]


def _raws(items, included):
    """The TLVs of `items`; their seqNumbers go to `included` (what the response carries)."""
    if included is not None:
        included.extend(n.get("seqNumber") for n in items if n.get("seqNumber") is not None)
    return [n["raw"] for n in items]


def _association_token(session, eim_id):
    for e in es10.get_eim_configuration_data(session, eim_id):
        if eim_id is None or e.get("eimId") == eim_id:
            return e.get("associationToken")
    return None


def _v1_0_lists(session, crit, max_items, included):
    """v1.0 notificationsList: (notifications, results) its searchCriteria selects (None: not
    sent), as TLVs; the seqNumbers of what is sent go to `included`."""
    def raws(items):
        return _raws(items[:max_items], included)

    if crit.get("euiccPackageResults"):
        return None, raws(_results(es10.retrieve_notifications_list(
            session, euicc_package_results=True)))
    if crit.get("seqNumber") is not None or crit.get("profileManagementOperation"):
        got = es10.retrieve_notifications_list(
            session, seq_number=crit.get("seqNumber"),
            profile_management_operation=crit.get("profileManagementOperation"))
        notes, results = _not_results(got), _results(got)
        return (None, raws(results)) if results else (raws(notes), None)
    notes = raws(_not_results(es10.retrieve_notifications_list(session)))
    results = raws(_results(es10.retrieve_notifications_list(
        session, euicc_package_results=True)))
    return notes, results or None


def collect(session, request, eim_id=None, ipa_capabilities=None, device_info=None,
            ecall_active=False, max_items=32, log=None, version=ver.DEFAULT, included=None):
    """The IpaEuiccDataResponse 'BF52' bytes for `request` (esipa.ipa_euicc_data_request's dict).

    eim_id: the eIM asking (its associationToken is returned); max_items
    bounds the notification and result lists. Components the eUICC or the
    configuration does not have (no default SM-DP+ address, no token, no
    deviceInfo configured) are left out. included (a list): gets the seqNumbers of the
    notifications and EuiccPackageResults put in the response.
    """
    txid = request.get("eimTransactionId")

    def error(name):
        return esipa.ipa_euicc_data_response_error(name, txid, version)

    if ecall_active:
        return error("ecallActive")
    items, unknown = esipa.ipa_euicc_data_items(request.get("tagList") or (), version)
    if unknown or not request.get("tagList"):
        if log:
            log("warning", "ipaEuiccDataRequest: tagList %s names no SGP.32 v%s IpaEuiccData "
                "component" % (", ".join("%X" % t for t in unknown), ver.norm(version)))
        return error("incorrectTagList")
    kw = {}
    try:
        if "notificationsList" in items and ver.is_v1_0(version):
            kw["notifications"], kw["euicc_package_results"] = _v1_0_lists(
                session, request.get("searchCriteriaNotification") or {}, max_items, included)
        elif "notificationsList" in items:
            crit = request.get("searchCriteriaNotification") or {}
            got = es10.retrieve_notifications_list(
                session, seq_number=crit.get("seqNumber"),
                profile_management_operation=crit.get("profileManagementOperation"))
            kw["notifications"] = _raws(_not_results(got)[:max_items], included)
        if "euiccPackageResultList" in items:
            crit = request.get("searchCriteriaEuiccPackageResult") or {}
            if crit.get("seqNumber") is not None:
                got = es10.retrieve_notifications_list(session, seq_number=crit["seqNumber"])
            else:
                got = es10.retrieve_notifications_list(session, euicc_package_results=True)
            kw["euicc_package_results"] = _raws(_results(got)[:max_items], included)
        if "defaultSmdpAddress" in items or "rootSmdsAddress" in items:
            addr = es10.get_euicc_configured_addresses(session)
            if "defaultSmdpAddress" in items:
                kw["default_smdp_address"] = addr.get("defaultDpAddress")
            if "rootSmdsAddress" in items:
                kw["root_smds_address"] = addr.get("rootDsAddress")
        if "euiccInfo1" in items:
            kw["euicc_info1"] = es10.get_euicc_info1(session)["raw"]
        if "euiccInfo2" in items:
            kw["euicc_info2"] = es10.get_euicc_info2_raw(session)
        if "associationToken" in items:
            kw["association_token"] = _association_token(session, eim_id)
        if "eumCertificate" in items or "euiccCertificate" in items:
            certs = es10.get_certs(session, request.get("euiccCiPKIdentifierToBeUsed"))
            if "eumCertificate" in items:
                kw["eum_certificate"] = certs["eumCertificate"]
            if "euiccCertificate" in items:
                kw["euicc_certificate"] = certs["euiccCertificate"]
    except FunctionError as e:
        if log:
            log("warning", "ipaEuiccDataRequest: %s" % e)
        if e.code == ECALL_ACTIVE:
            return error("ecallActive")
        if e.function == "ES10b.GetCerts" and e.code == GET_CERTS_INVALID_CI_PKID:
            return error("euiccCiPKIdNotFound")
        return error("undefinedError")
    if "ipaCapabilities" in items and ipa_capabilities is not None:
        kw["ipa_capabilities"] = ipa_capabilities
    if "deviceInfo" in items:
        if device_info is None:
            if log:
                log("warning", "ipaEuiccDataRequest: deviceInfo asked for, none configured")
        else:
            kw["device_info"] = device_info
    return esipa.ipa_euicc_data_response(eim_transaction_id=txid, version=version, **kw)
