"""`ipa download --smds [ADDRESS]`: Event Retrieval at an SM-DS (SGP.22 3.6.2, ES11), then
the download of each event from its SM-DP+ (matchingId = eventId), as a user expects of it.

- ADDRESS defaults to the eUICC's root SM-DS (ES10a.GetEuiccConfiguredAddresses).
- Every event is downloaded, in the SM-DS's order (`--first`: only the first); a failed
  one does not stop the next: each has its result. The SM-DS keeps an event until its
  SM-DP+ deletes it (ES12.DeleteEvent), so a failed one is offered again next time.
- The installation results (PIRs) go to their SM-DP+ right after the downloads
  (ES9+.HandleNotification, as `ipa download` does; "notifications" in the result).
- TLS trust for the SM-DS is the SM-DP+ one (--smdp-ca-file, else the system CAs): both
  are RSP servers certified under the same GSMA CI.
- Exit codes: 0 every event installed, 1 a retrieval or a download failed, 3 the SM-DS
  could not be reached, 4 the SM-DS had no event for this eUICC (nothing done).
- --json (ipa_host.cli_json's envelope): result {"smdsAddress", "transactionId",
  "eventEntries", "more", "downloads": [each download's result; a failed one with its
  "stage" and "error" object], "ok"}; error: the retrieval's, the first failed
  download's, or code "noEvent".
"""

import os
import sys

from ipa_core import activation, es10
from ipa_core import ipa_download as dl
from ipa_core import ipa_smds
from ipa_core.errors import TransportError
from ipa_core.ipa_direct import DirectTransport
from ipa_host import cli_json, runner
from ipa_host.cli import _after_enable, deliver_pirs, emit, fail, print_download, print_peers
from ipa_host.store import FileStore

NO_EVENT = cli_json.ERROR_CODES["noEvent"]


def print_smds(r, out):
    n = len(r["eventEntries"])
    out.write("SM-DS          %s: %s\n" % (r["smdsAddress"], "%d event%s" % (n, "s" * (n != 1))
                                           if n else "no event for this eUICC, nothing to "
                                                     "download"))
    if r.get("more"):
        out.write("               %d more left at the SM-DS (at most %d at a time)\n"
                  % (r["more"], len(r["eventEntries"])))
    for d in r["downloads"]:
        out.write("\nevent          %s at %s\n" % (d["eventId"], d["smdpAddress"]))
        if "stage" in d:
            out.write("failed         at %s: %s\n" % (d["stage"], d["error"]["message"]))
        else:
            print_download(d, out)
    if (r.get("notifications") or {}).get("peers"):
        out.write("\n")
        print_peers(r["notifications"], out, "notified       ")


def _download_event(st, session, ev, kw):
    """One event -> the download's result dict; failed: what was done, with "stage" and
    "error" (the --json error object)."""
    net = runner.build_smdp_network(st, ev["rspServerAddress"])
    try:
        return dl.download(session, DirectTransport(net, max_package=st.max_package),
                           smdp_address=ev["rspServerAddress"], matching_id=ev["eventId"], **kw)
    except dl.DownloadError as e:
        sys.stderr.write("ipa: event %s: %s\n" % (ev["eventId"], e))
        return dict(e.result, stage=e.stage,
                    error=cli_json.error(e.cause, stage=e.stage, message=str(e)))
    finally:
        net.close()


def download_from_smds(a, st, out, kw):
    """The command (see the module docstring); kw: dl.download's options from cmd_download."""
    s = runner.open_session(st)
    try:
        # a download an earlier run left open is cancelled before the SM-DS's session (its
        # GetEUICCChallenge) ends it on the eUICC; each download here is recorded the same way
        store = FileStore(os.path.join(st.home, runner.STATE_FILE))
        recovered = runner.recover_direct(st, s, store, lambda level, msg: sys.stderr.write(
            "ipa: %s\n" % msg))
        kw = dict(kw, store=store)
        address = a.smds or es10.get_euicc_configured_addresses(s)["rootDsAddress"]
        activation.check_address(address, "SM-DS address")  # ValueError: exit 2
        net = runner.build_smdp_network(st, address)
        try:
            r = ipa_smds.retrieve_events(s, net, address, imei=a.imei, log=kw["log"])
        except ipa_smds.SmdsError as e:
            sys.stderr.write("ipa: %s\n" % e)
            emit(a, out, {"smdsAddress": address}, lambda d, o: None)
            fail(a, cli_json.error(e.cause, stage=e.stage, message=str(e)))
            return 3 if isinstance(e.cause, TransportError) else 1
        finally:
            net.close()
        r["downloads"] = []
        r["recovered"] = recovered
        for ev in r["eventEntries"][:1] if a.first else r["eventEntries"]:
            d = _download_event(st, s, ev, kw)
            d["eventId"] = ev["eventId"]
            r["downloads"].append(d)
            _after_enable(st, s, d)
    finally:
        s.close()
    r["notifications"] = deliver_pirs(st, r["downloads"])
    r["ok"] = bool(r["downloads"]) and all(d.get("ok") for d in r["downloads"])
    emit(a, out, r, print_smds)
    if not r["eventEntries"]:
        fail(a, {"code": "noEvent", "type": "NoEvent", "message": "the SM-DS %s has no event "
                 "for this eUICC" % address})
        return NO_EVENT
    if not r["ok"]:
        bad = [d for d in r["downloads"] if not d.get("ok")][0]
        fail(a, bad.get("error") or {"code": "failed", "type": "InstallationFailed",
                                     "message": "event %s: the profile was not installed"
                                     % bad["eventId"]})
        return 1
    return 0
