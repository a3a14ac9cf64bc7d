"""The steps of the IPA procedures (ipa_core.ipa runs them; ipa_core.ipa_store has the record).

Each step is `step(ipa, job, out) -> job or None`: it acts, writes the next
step into the store (`advance`) BEFORE the next one acts, and returns the
updated record; None when the procedure ended (record deleted). `out` is
the poll summary being filled. Steps:

    load      ES10b.LoadEuiccPackage (or, after a restart, the stored result)
    connect   the enabled profile changed: wait for the network
    rollback  ES10b.ProfileRollback, once
    collect   ES10b.RetrieveNotificationsList / IpaEuiccData -> the message to post
    download  profileDownloadTriggerRequest -> ProfileDownloadTriggerResult
    deliver   ESipa.ProvideEimPackageResult -> eimAcknowledgements
    remove    ES10b.RemoveNotificationFromList for each acknowledged seqNumber
"""

from ipa_core.compat import hexlify, unhexlify

from ipa_core import es10, esipa, ipa_data, ipa_notify, tlv
from ipa_core import es10_signed as sg
from ipa_core.errors import FunctionError, ProtocolError, TransportError
from ipa_core.ipa_store import JOB

ROLLBACK_NOT_ALLOWED = 1  # ProfileRollbackResponse cmdResult


def hexu(b):
    """bytes -> upper-case hex (None stays None): the eimTransactionId as kept and shown."""
    return None if b is None else hexlify(bytes(b)).decode().upper()


def unhex(s):
    return None if s is None else unhexlify(s)


def blob(v):
    """A TLV kept in the job record as bytes; as hex text in records written before the
    store took bytes (ipa_core.ipa_store), so that a board updated mid-procedure resumes."""
    return unhexlify(v) if isinstance(v, str) else v


def result_summary(r):
    """A short JSON-able view of an EuiccPackageResult dict for summaries and logs."""
    out = {"kind": r.get("kind"), "seqNumber": r.get("seqNumber")}
    if r.get("error"):
        out["error"] = r["error"]
    ops = []
    for entry in r.get("euiccResult") or ():
        op, code, name = sg.result_summary(entry)
        ops.append([op, code, name])
    if ops:
        out["operations"] = ops
    return out


def stored_result_summary(job):
    """result_summary of the result kept in a job record, or None."""
    if not job.get("result"):
        return None
    return result_summary(sg.euicc_package_result(tlv.decode(blob(job["result"]))))


def advance(ipa, job, step):
    """Record that `step` comes next (attempts start again) before anything acts on it."""
    job["step"] = step
    job["attempts"] = 0
    ipa.store.put(JOB, job)
    return job


def give_up(ipa, job, out):
    """After max_attempts failures of one step: report an error result or stop."""
    step = job["step"]
    kind = job["kind"]
    ipa.note("error", "%s: step %s failed %d times, giving up on it"
             % (kind, step, job.get("attempts", 0)))
    tid = job.get("eimTransactionId")
    if step in ("rollback", "connect"):
        job["rollback"] = False  # deliver what there is, on whatever network there is
        return advance(ipa, job, "collect")
    if step == "collect" and kind == "euiccPackageRequest":
        msg = esipa.provide_eim_package_result(job["eid"], euicc_package_result=blob(
            job["result"]), version=ipa.version)  # the result without notifications
    elif step == "load":
        msg = esipa.provide_eim_package_result(job["eid"], error_code="undefinedError",
                                               eim_transaction_id=tid and unhex(tid),
                                               version=ipa.version)
    elif step == "collect":
        msg = esipa.provide_eim_package_result(
            job["eid"], ipa_euicc_data_response=esipa.ipa_euicc_data_response_error(
                "undefinedError", tid and unhex(tid), ipa.version), version=ipa.version)
    elif step == "download":
        msg = esipa.provide_eim_package_result(
            job["eid"], profile_download_trigger_result=esipa.profile_download_trigger_result(
                error_reason="undefinedError", eim_transaction_id=tid and unhex(tid)),
            version=ipa.version)
    else:  # deliver, remove: what is left stays on the eUICC
        out["abandoned"] = True
        ipa.store.delete(JOB)
        return None
    out["abandoned"] = True
    job["message"] = msg
    job["included"] = []
    return advance(ipa, job, "deliver")


# -- euiccPackageRequest


def find_result(ipa, job, rollback):
    """The eUICC's stored EuiccPackageResult for job's package (RetrieveNotificationsList
    with euiccPackageResults): same eimId, counterValue and eimTransactionId; with or
    without a rollbackResult as `rollback` says. None when there is none."""
    for r in es10.retrieve_notifications_list(ipa.session, euicc_package_results=True):
        if r.get("kind") != "euiccPackageResultSigned":
            continue
        if r.get("eimId") != job["eimId"] or r.get("counterValue") != job["counterValue"]:
            continue
        tid = r.get("eimTransactionId")
        if tid is not None and job.get("eimTransactionId") not in (None, hexu(tid)):
            continue
        has_rb = False
        for entry in r.get("euiccResult") or ():
            if "rollbackResult" in entry:
                has_rb = True
        if has_rb == rollback:
            return r
    return None


def load(ipa, job, out):
    """ES10b.LoadEuiccPackage, once: after a restart, the result the eUICC stored."""
    result = None
    if job.get("sent"):
        result = find_result(ipa, job, False)
        if result is None:
            ipa.note("info", "no stored result for the package sent before: sending it "
                     "again (a package that ran is refused as a replay)")
        else:
            ipa.note("info", "result of the package sent before found on the eUICC")
    if result is None:
        job["sent"] = True
        ipa.store.put(JOB, job)
        result = es10.load_euicc_package(ipa.session, blob(job["request"]))
    job["result"] = bytes(result["raw"])
    job["resultSeq"] = result.get("seqNumber")
    changed = enabled = False
    for entry in result.get("euiccResult") or ():
        if entry.get("enableResult") == 0:
            changed = enabled = True
        if entry.get("disableResult") == 0:
            changed = True
    job["rollback"] = bool(enabled and job.get("rollbackFlag"))
    out["result"] = result_summary(result)
    ipa.note("info", "LoadEuiccPackage: %r" % (out["result"],))
    return advance(ipa, job, "connect" if changed else "collect")


def connect(ipa, job, out):
    """The enabled profile changed: drop the old connection, let the modem re-attach, wait."""
    close = getattr(ipa.network, "close", None)
    if close is not None:
        close()
    refresh = getattr(ipa.connectivity, "refresh", None)
    if refresh is not None:
        refresh()
    timeout_ms = int(ipa.config["connectivity_timeout_s"] * 1000)
    if ipa.connectivity.wait_connected(timeout_ms):
        return advance(ipa, job, "collect")
    if job.get("rollback"):
        ipa.note("warning", "no network after the profile switch: rolling back")
        return advance(ipa, job, "rollback")
    raise TransportError("no network within %d s after the profile change"
                         % ipa.config["connectivity_timeout_s"])


def rollback(ipa, job, out):
    """ES10b.ProfileRollback (once); its EuiccPackageResult replaces the enable's."""
    result = None
    if job.get("rollbackSent"):
        result = find_result(ipa, job, True)
    if result is None:
        job["rollback"] = False  # once
        job["rollbackSent"] = True
        ipa.store.put(JOB, job)
        try:
            result = es10.profile_rollback(ipa.session, ipa.config["refresh_flag"])
        except FunctionError as e:
            if e.code != ROLLBACK_NOT_ALLOWED:
                raise
            result = find_result(ipa, job, True)
            if result is None:
                ipa.note("warning", "ProfileRollback refused (%s): delivering the "
                         "enable's result" % e)
                return advance(ipa, job, "collect")
    if result is None:
        result = find_result(ipa, job, True)
    if result is None:
        ipa.note("warning", "ProfileRollback gave no result: delivering the enable's")
        return advance(ipa, job, "collect")
    job["result"] = bytes(result["raw"])
    job["resultSeq"] = result.get("seqNumber")
    job["rollback"] = False
    job["rolledBack"] = True
    out["rolledBack"] = True
    out["result"] = result_summary(result)
    ipa.note("warning", "rolled back to the previous profile")
    ipa.set_state_change(ipa.config["rollback_cause"])
    return advance(ipa, job, "connect")


def collect(ipa, job, out):
    """Build the ProvideEimPackageResult to post (kept, so a resend is the same bytes)."""
    if job["kind"] == "euiccPackageRequest":
        # A board bounds the message (max_message_bytes): what does not fit is delivered
        # with HandleNotification in the next pass. Only the eIM's: a notification for an
        # SM-DP+ the IPA reaches goes there (ipa_notify.route).
        notes = ipa_notify.pending(ipa, ipa.config.get("max_message_bytes"), for_eim=True)
        msg = esipa.provide_eim_package_result(
            job["eid"], euicc_package_result=blob(job["result"]),
            notifications=[n["raw"] for n in notes], version=ipa.version)
        job["included"] = [n.get("seqNumber") for n in notes]
    else:
        req = esipa.ipa_euicc_data_request(tlv.decode(blob(job["request"])))
        included = []
        data = ipa_data.collect(ipa.session, req, eim_id=ipa.eim_id,
                                ipa_capabilities=ipa.config["ipa_capabilities"],
                                device_info=ipa.config["device_info"],
                                ecall_active=ipa.ecall_active(),
                                max_items=ipa.config["max_notifications"], log=ipa.note,
                                version=ipa.version, included=included)
        msg = esipa.provide_eim_package_result(job["eid"], ipa_euicc_data_response=data,
                                               version=ipa.version)
        job["included"] = included
    job["message"] = msg
    return advance(ipa, job, "deliver")


# -- profileDownloadTriggerRequest


def download(ipa, job, out):
    """profileDownloadTriggerRequest -> ProfileDownloadTriggerResult (download_handler)."""
    req = esipa.profile_download_trigger_request(tlv.decode(blob(job["request"])))
    tid = req.get("eimTransactionId")
    if ipa.ecall_active():
        result = esipa.profile_download_trigger_result(error_reason="ecallActive",
                                                       eim_transaction_id=tid)
    elif ipa.download_handler is None or job.get("started"):
        if job.get("started"):
            ipa.note("warning", "a profile download was cut off: reporting undefinedError")
        else:
            ipa.note("warning", "profileDownloadTriggerRequest: no download handler: "
                     "reporting undefinedError")
        result = esipa.profile_download_trigger_result(error_reason="undefinedError",
                                                       eim_transaction_id=tid)
    else:
        job["started"] = True
        ipa.store.put(JOB, job)
        result = ipa.download_handler(req)
        result = esipa.raw_tlv(result, (0xBF54,), "ProfileDownloadTriggerResult")
    job["message"] = esipa.provide_eim_package_result(
        job["eid"], profile_download_trigger_result=result, version=ipa.version)
    job["included"] = pir_seq(result)
    return advance(ipa, job, "deliver")


def pir_seq(result):
    """[seqNumber] of the ProfileInstallationResult 'BF37' a ProfileDownloadTriggerResult
    'BF54' carries (delivered with it, so the eIM may acknowledge it), else [] - also for
    one that does not decode: it is forwarded as it came, and kept on the eUICC."""
    try:
        for c in tlv.decode(bytes(result)):
            if c.tag == 0xBF37:
                seq = sg.pending_notification(c).get("seqNumber")
                return [] if seq is None else [seq]
    except ProtocolError:
        pass
    return []


# -- every package: report, then remove what the eIM acknowledged


def deliver(ipa, job, out):
    """ESipa.ProvideEimPackageResult; no eIM after an enable with rollbackFlag: roll back."""
    try:
        ans = ipa.exchange("provideEimPackageResult", blob(job["message"]))
    except TransportError:
        if job.get("rollback"):
            ipa.note("warning", "eIM unreachable after the profile switch: rolling back")
            return advance(ipa, job, "rollback")
        raise
    out["delivered"] = True
    job["acked"] = ans.get("eimAcknowledgements") or []
    job["rollback"] = False  # the eIM was reached: the new profile works
    out["acknowledged"] = list(job["acked"])
    return advance(ipa, job, "remove")


def remove(ipa, job, out):
    """ES10b.RemoveNotificationFromList for every acknowledged seqNumber this exchange
    delivered, and only those (SGP.32 ESipa.ProvideEimPackageResult: remove "after delivery
    is acknowledged"). eimAcknowledgements answers the ProvideEimPackageResult: a seqNumber
    in it the message did not carry was not delivered by it - removing it would lose an
    object the eIM never got; keeping it costs one duplicate at most (HandleNotification)."""
    out["acknowledged"] = list(job.get("acked") or ())
    sent = delivered(job)
    for seq in job.get("acked") or ():
        if seq not in sent:
            ipa.note("warning", "the eIM acknowledged seqNumber %s, not delivered in this "
                     "exchange: kept on the eUICC" % seq)
            continue
        es10.remove_notification_from_list(ipa.session, seq)  # nothingToDelete is fine
        out["removed"].append(seq)
    ipa.store.delete(JOB)
    return None


def delivered(job):
    """seqNumbers the job's ProvideEimPackageResult carried: the EuiccPackageResult and the
    notifications in it (included; for IpaEuiccData, its notification and result lists)."""
    sent = list(job.get("included") or ())
    if job.get("resultSeq") is not None:
        sent.append(job["resultSeq"])
    return sent
