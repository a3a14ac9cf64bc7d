"""The `ipa` command: the IoT Profile Assistant for people and scripts.

Every subcommand talks to one eUICC chosen with --card (docs/cli.md):
`sim` (the built-in virtual eUICC, state under --home), `pcsc`,
`pcsc:<reader>`, `at:<port>?...`. Output is for people by default and a
single JSON document with --json. Exit codes: 0 ok, 1 the eUICC or a
server refused or a poll cycle failed, 2 bad usage, 3 the card could not be
reached (reader, modem).
"""

import argparse
import os
import sys

from ipa_core import apdu, es10
from ipa_core.errors import IpaError, TransportError
from ipa_host import cli_euicc, cli_json, runner
from ipa_host.config import ConfigError, find_config, load_config, parse_network
from ipa_host.trace import open_tracer
from ipa_host.version import version

EXAMPLES = """\
examples:
  ipa info                         the built-in virtual eUICC (state in ~/.local/share/ipa-iot)
  ipa --card pcsc info             the eUICC in the only PC/SC reader with a card
  ipa --card 'pcsc:Gemalto' --json info
  ipa poll                         one cycle with the eIM: get a package, run it, report
  ipa run                          poll for ever with back-off (for systemd, docs/cli.md)
  ipa notifications process        deliver pending notifications (eIM / SM-DP+)
  ipa download 'LPA:1$smdp.example.com$MATCHING-ID'   install a profile from the SM-DP+
  ipa download --smds              install what the eUICC's root SM-DS announces for it
  ipa --trace info                 show every APDU on stderr, ES10 functions named
  ipa --pcap session.pcap poll     APDUs and eIM exchanges in one file for Wireshark
  ipa --card at:auto info          the eUICC in the USB modem plugged in, and the modem
  sudo ipa service install --create-user   systemd unit, udev rule, /etc/ipa-iot/ipa.toml
  ipa euicc certs                  lab commands: one ES10 function each (ipa euicc --help)
  ipa --card at:/dev/ttyUSB2 --network modem --ca-file eim-ca.pem poll
                                   the eIM through the modem's own HTTPS stack

card selection (--card, $IPA_CARD or [card] spec in the config file):
  sim | pcsc | pcsc:<reader name or index>[?shared=1&protocol=T0|T1]
  at:/dev/ttyUSB2?baud=115200&mode=auto|cgla|csim
  at:auto                          the AT port of the one known USB modem (docs/modems.md)
  qmi:/dev/cdc-wdm0?slot=1&proxy=1|0   QMI UIM, through qmi-proxy (ModemManager) by default
  mbim:/dev/cdc-wdm0?proxy=1|0     MBIM UICC low-level access, through mbim-proxy by default
"""


def default_home():
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.environ.get("IPA_HOME") or os.path.join(base, "ipa-iot")


def build_parser():
    p = _Parser(
        prog="ipa",
        description="IoT Profile Assistant (GSMA SGP.32 IPAd): manage the profiles of an IoT "
                    "eUICC on behalf of its eIM.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version="ipa " + version())
    p.add_argument("--config", metavar="FILE",
                   help="TOML configuration (default: $IPA_CONFIG, ~/.config/ipa-iot/ipa.toml, "
                        "/etc/ipa-iot/ipa.toml)")
    p.add_argument("--card", metavar="SPEC", help="which eUICC to use (default: sim; see below)")
    p.add_argument("--home", metavar="DIR",
                   help="state folder; also holds the virtual eUICC (default: %s)" % default_home())
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--trace", action="store_true",
                   help="print every APDU to stderr, each command named (ES10 function)")
    p.add_argument("--pcap", metavar="FILE", help="write every APDU (GSMTAP SIM) and every "
                   "eIM / SM-DP+ exchange (HTTP, CoAP) to a pcap file for Wireshark")
    p.add_argument("--pcap-max", metavar="SIZE", help="size cap of the --pcap file, e.g. 64M "
                   "(default), 500k")
    p.add_argument("--gsmtap", metavar="HOST[:PORT]", help="send every APDU as GSMTAP SIM over "
                   "UDP (port 4729 by default) to a live Wireshark")
    p.add_argument("--segment-size", type=int, default=None, metavar="N",
                   help="STORE DATA block size, 1..255 (default: the modem profile's, else %d)"
                        % apdu.SEGMENT_SIZE)
    p.add_argument("--sgp32", choices=("1.0", "1.1", "1.2"),
                   help="SGP.32 version the eUICC implements (default: 1.2)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   help="log detail on stderr (default: info for run, warning otherwise)")
    g = p.add_argument_group("eIM (default: from the eUICC's eIM Configuration Data)")
    g.add_argument("--eim-id", metavar="ID", help="poll this eIM (eimId)")
    g.add_argument("--eim-url", metavar="URL", help="override the eIM address, e.g. "
                   "https://eim.example.com:8443 (used even when the eIM entry's protocol "
                   "bits do not list it)")
    g.add_argument("--binding", choices=("asn1", "json"), help="ESipa HTTPS binding (default asn1)")
    g.add_argument("--network", metavar="HOW", type=_network,
                   help="how to reach the eIM: socket (this host's own TCP/TLS, default) or "
                        "modem[:quectel|sim7080|simcom] (the HTTP(S) stack of the modem on the "
                        "--card at: port, sharing it with the APDUs; the stack is picked from "
                        "the modem's identity unless named; https needs --ca-file)")
    g.add_argument("--ca-file", metavar="PEM", help="trust this CA bundle instead of the "
                   "eUICC's trustedPublicKeyDataTls; with --network modem: the eIM's CA PEM, "
                   "uploaded to the modem (required for https)")
    g.add_argument("--allow-http", action="store_true", help="allow plain http:// (lab use only)")
    p.add_argument("--smdp-ca-file", metavar="PEM",
                   help="trust this CA bundle for SM-DP+ servers (direct profile download: "
                        "`download`, and eIM download triggers in poll/run) instead of the "
                        "system CAs (labs)")
    p.add_argument("--profile-download", choices=("auto", "direct", "indirect"),
                   help="how poll/run carry out an eIM's download trigger: direct to the SM-DP+ "
                        "(ES9+), relayed by the eIM (ESipa), or auto: the eIM Configuration "
                        "Data's indirectProfileDownload (default)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="EID, eUICC info, eIM configurations, profiles, pending notifications",
                   description="Read everything the IPA knows about the eUICC, changing nothing.")
    sub.add_parser("poll", help="one cycle with the eIM (GetEimPackage, run, report)",
                   description="Resume any unfinished procedure, deliver notifications, ask the "
                               "eIM for a package and carry it out. Exit 0 also when idle.")
    r = sub.add_parser("run", help="poll the eIM for ever, with back-off (a service)",
                       description="Long-running IPA: poll cycles with back-off until SIGTERM "
                                   "or SIGINT. Logs go to stderr (journald under systemd).")
    r.add_argument("--cycles", type=int, metavar="N", help="stop after N cycles")
    e = sub.add_parser("eim", help="eIM configurations on the eUICC")
    esub = e.add_subparsers(dest="eim_command", metavar="ACTION")
    esub.add_parser("list", help="list the eIM Configuration Data")
    a = esub.add_parser("add-initial", help="ES10b.AddInitialEim: the first eIM of a fresh eUICC",
                        description="Add the first eIM to an eUICC that has none (factory or "
                                    "first-boot provisioning).")
    a.add_argument("--id", required=True, help="eimId")
    a.add_argument("--fqdn", required=True, help="eimFqdn, host[:port]")
    a.add_argument("--key", required=True, metavar="PEM",
                   help="the eIM's signing certificate (or public key) PEM/DER: eimPublicKeyData")
    a.add_argument("--tls", metavar="PEM", help="TLS trust anchor: certificate (or public key) "
                   "for trustedPublicKeyDataTls")
    a.add_argument("--counter", type=int, default=0, help="initial counterValue (default 0)")
    a.add_argument("--token", action="store_true", help="ask the eUICC for an associationToken")
    a.add_argument("--protocol", action="append", choices=("https", "coaps"),
                   help="eimSupportedProtocol retrieve protocols (default https)")
    n = sub.add_parser("notifications", help="pending notifications on the eUICC")
    nsub = n.add_subparsers(dest="notif_command", metavar="ACTION")
    nsub.add_parser("list", help="list pending notifications (ES10b.ListNotification)")
    nsub.add_parser("process", help="deliver each to its peer (the eIM, or the SM-DP+ it is "
                    "addressed to), remove what the peer took")
    cli_euicc.add_notifications_remove(nsub)
    add_download_parser(sub)
    cli_euicc.add_parsers(sub)
    from ipa_host import service

    service.add_parser(sub)
    return p


def _network(value):
    """--network: argparse type (a bad value is a usage error naming the choices)."""
    try:
        return parse_network(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def settings(a):
    """Options over the config file over defaults -> runner.Settings."""
    cfg = load_config(find_config(a.config))
    c, e, i, dl = cfg["card"], cfg["eim"], cfg["ipa"], cfg["download"]
    home = a.home or (os.path.expanduser(i["home"]) if i["home"] else default_home())
    trace = open_tracer(a.trace, a.pcap, a.pcap_max, a.gsmtap,
                        warn=lambda msg: runner.log.warning("%s", msg))
    st = runner.Settings(
        card=a.card or os.environ.get("IPA_CARD") or c["spec"], home=home,
        segment_size=a.segment_size or c["segment_size"], sgp32=a.sgp32 or c["sgp32"],
        trace=trace, eim_id=a.eim_id or e["id"], eim_url=a.eim_url or e["url"],
        binding=a.binding or e["binding"], ca_file=a.ca_file or e["ca_file"],
        allow_http=a.allow_http or e["allow_http"], timeout=e["timeout"],
        poll_interval=i["poll_interval"], max_interval=i["max_interval"],
        error_backoff=i["error_backoff"], max_attempts=i["max_attempts"],
        smdp_ca_file=a.smdp_ca_file or dl["smdp_ca_file"],
        profile_download=a.profile_download or dl["mode"],
        network=a.network or e["network"], refresh=c["refresh"],
        attach_timeout=c["attach_timeout"], refresh_flag=c["refresh_flag"],
        max_package=dl["max_package"], min_rate=dl["min_rate"])
    return st, i["log_level"]


# ---- info -------------------------------------------------------------------


def collect_info(s):
    """Everything `ipa info` shows, as plain data (also the --json document)."""
    info2 = es10.get_euicc_info2(s)
    out = {
        "eid": es10.get_eid(s),
        "euiccInfo2": {k: v for k, v in info2.items() if k != "raw"},
        "eims": es10.get_eim_configuration_data(s),
        "profiles": es10.get_profiles_info(s),
        "notifications": es10.list_notification(s),
    }
    return out


def open_download(st):
    """The open profile download session recorded in the IPA's store (ipa_core.ipa_cancel),
    without the eUICC's signed answer; None when there is none."""
    from ipa_core.ipa_store import DOWNLOAD
    from ipa_host.store import FileStore

    rec = FileStore(os.path.join(st.home, runner.STATE_FILE)).get(DOWNLOAD)
    if rec is not None:
        rec.pop("cancelSessionResponse", None)
    return rec


def _version(v):
    if isinstance(v, (bytes, bytearray)) and len(v) == 3:
        return "%d.%d.%d" % tuple(v)
    return str(cli_json.plain(v))


# Names for the numbers the eUICC reports (SGP.22 ProfileInfo, SGP.32 IpaMode).
PROFILE_STATE = {0: "disabled", 1: "enabled"}
PROFILE_CLASS = {0: "test", 1: "provisioning", 2: "operational"}
IPA_MODE = {0: "IPAd (in the device)", 1: "IPAe (in the eUICC)"}


def free_memory(ext_card_resource):
    """(free non-volatile, free volatile) bytes from EUICCInfo2.extCardResource (81/82/83 TLVs)."""
    from ipa_core import tlv

    if not isinstance(ext_card_resource, (bytes, bytearray)):
        return None, None
    try:
        items = {t.tag: t.as_uint() for t in tlv.decode_all(bytes(ext_card_resource))}
    except IpaError:
        return None, None
    return items.get(0x82), items.get(0x83)


def print_info(d, out):
    i2 = d["euiccInfo2"]
    out.write("EID            %s\n" % d["eid"])
    out.write("eUICC          SGP.22 %s, profile package %s, firmware %s\n" % (
        _version(i2.get("svn")), _version(i2.get("profileVersion")),
        _version(i2.get("euiccFirmwareVer"))))
    nvm, ram = free_memory(i2.get("extCardResource"))
    if nvm is not None:
        out.write("Free memory    %d bytes non-volatile%s\n" % (
            nvm, ", %d bytes volatile" % ram if ram is not None else ""))
    iot = i2.get("iotSpecificInfo")
    if isinstance(iot, dict) and "iotVersion" in iot:
        vers = iot["iotVersion"]
        vers = vers if isinstance(vers, list) else [vers]
        out.write("IoT            SGP.32 %s\n" % ", ".join(_version(v) for v in vers))
    if "ipaMode" in i2:
        out.write("IPA mode       %s\n" % IPA_MODE.get(i2["ipaMode"], i2["ipaMode"]))
    out.write("eIMs           %d\n" % len(d["eims"]))
    for e in d["eims"]:
        protos = ",".join(e.get("eimSupportedProtocol") or [])
        extra = ""
        if "counterValue" in e:
            extra += "  counter %d" % e["counterValue"]
        if "associationToken" in e:
            extra += "  token %d" % e["associationToken"]
        out.write("  %-24s %-24s %s%s\n" % (e.get("eimId"), e.get("eimFqdn", "-"), protos, extra))
    out.write("Profiles       %d\n" % len(d["profiles"]))
    for p in d["profiles"]:
        out.write("  %-20s %-9s %-12s %s\n" % (
            p.get("iccid"), PROFILE_STATE.get(p.get("profileState"), p.get("profileState", "?")),
            PROFILE_CLASS.get(p.get("profileClass"), p.get("profileClass", "-")),
            p.get("profileNickname") or p.get("profileName") or ""))
    out.write("Notifications  %d pending\n" % len(d["notifications"]))
    for n in d["notifications"]:
        what = n.get("profileManagementOperation", n.get("kind", ""))
        if isinstance(what, list):
            what = ",".join(str(w) for w in what)
        out.write("  #%-5s %-24s %s\n" % (n.get("seqNumber"), what, n.get("notificationAddress", "")))
    o = d.get("openDownload")
    if o:
        out.write("Open download  transaction %s with %s (%s%s), matchingId %s: %s, %d "
                  "cancel attempt(s)\n" % (
                      o.get("transactionId"), o.get("smdpAddress") or "the eIM's SM-DP+",
                      o.get("transport"), " via eIM %s" % o["eimId"] if o.get("eimId") else "",
                      o.get("matchingId") or "-", o.get("stage"), o.get("attempts", 0)))


def emit(a, out, data, human):
    """The command's result: for people now, or kept for the one --json envelope that
    main() writes when the command is over (ipa_host.cli_json)."""
    if a.json:
        a.json_result = data
    else:
        human(data, out)


def fail(a, err):
    """A failure the command reports itself (exit code 1 without an exception): the
    --json envelope's error object."""
    a.json_error = err


def cmd_info(a, st, out):
    from ipa_host import modem_manager
    from ipa_host.modem_info import modem_info, print_modem

    s = runner.open_session(st)
    try:
        d = collect_info(s)
        modem = modem_info(getattr(s, "card", None))  # --card at:...: which modem, mode, quirks
    finally:
        s.close()
    d["openDownload"] = open_download(st)
    if modem is not None:
        d["modem"] = modem
    mm = modem_manager.card_info(st.card)  # qmi:/mbim: the ModemManager modem, if one owns it
    if mm is not None:
        d["modemManager"] = mm
    emit(a, out, d, lambda d, o: (print_info(d, o), modem and print_modem(modem, o),
                                  mm and modem_manager.print_card_info(mm, o)))
    return 0


# ---- poll / run ---------------------------------------------------------------


def print_recovered(r, out):
    """The cancel of a download session a cut left open (ipa_core.ipa_cancel), if any."""
    if r.get("recovered"):
        out.write("recovered      %s\n" % r["recovered"]["message"])


def print_poll(r, out):
    print_recovered(r, out)
    if r.get("resumed"):
        out.write("resumed        %s at step %s\n" % (r["resumed"]["kind"], r["resumed"]["step"]))
    print_peers(r.get("notifications") or {}, out, "notifications  ")
    if r.get("idle"):
        out.write("eIM            no package (noEimPackageAvailable)\n")
    elif r.get("package"):
        out.write("package        %s%s\n" % (r["package"], " (eimTransactionId %s)"
                                              % r["eimTransactionId"] if r.get("eimTransactionId") else ""))
    res = r.get("result")
    if res:
        out.write("result         seqNumber %s%s\n" % (res.get("seqNumber"), " (rollback)"
                                                      if r.get("rolledBack") else ""))
        for op in res.get("operations") or []:
            out.write("  %-28s %s\n" % (op[0], op[2] if len(op) > 2 else op[1]))
        if res.get("error"):
            out.write("  error %s\n" % res["error"])
    if r.get("delivered"):
        out.write("reported       acknowledged %s, removed %s\n" % (
            ",".join(str(n) for n in r.get("acknowledged") or []) or "nothing",
            ",".join(str(n) for n in r.get("removed") or []) or "nothing"))
    if r.get("error"):
        out.write("error          %s\n" % r["error"].get("message"))


def cmd_poll(a, st, out):
    with runner.IpaHost(st) as h:
        r = h.ipa.poll_once()
    r["eim"] = {"eimId": h.eim["eimId"], "url": st.eim_url or h.eim["url"]}
    emit(a, out, r, print_poll)
    if r.get("error"):
        fail(a, cli_json.error_from_summary(r["error"]))
        return 1
    return 0


def cmd_run(a, st, out):
    def show(r):
        if a.json:  # JSON Lines: one envelope per cycle
            err = cli_json.error_from_summary(r["error"]) if r.get("error") else None
            cli_json.write(out, cli_json.envelope("run", 1 if err else 0, r, err), lines=True)
    runner.run_loop(st, max_cycles=a.cycles, on_cycle=show)
    return 0


# ---- eim / notifications --------------------------------------------------------


def print_eims(eims, out):
    for e in eims:
        out.write("%s\n" % e.get("eimId"))
        for k in ("eimFqdn", "eimIdType", "counterValue", "associationToken",
                  "eimSupportedProtocol", "indirectProfileDownload"):
            if k in e:
                v = e[k]
                out.write("  %-24s %s\n" % (k, ",".join(v) if isinstance(v, list) else v))
        for k in ("eimPublicKeyData", "trustedPublicKeyDataTls"):
            if k in e:
                out.write("  %-24s %s\n" % (k, ", ".join(sorted(e[k]))))


def _key_choice(path, names):
    """{names[0]: SPKI DER} or {names[1]: certificate DER} from a PEM/DER file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    with open(path, "rb") as f:
        data = f.read()
    try:
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
        return {names[1]: cert.public_bytes(serialization.Encoding.DER)}
    except ValueError:
        pass
    try:
        key = (serialization.load_pem_public_key(data) if b"-----BEGIN" in data
               else serialization.load_der_public_key(data))
    except ValueError:
        raise ValueError("%s: expected a certificate or public key (PEM or DER)" % path)
    return {names[0]: key.public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)}


def cmd_eim(a, st, out):
    if a.eim_command not in ("list", "add-initial"):
        raise ValueError("ipa eim: choose an action: list or add-initial")
    s = runner.open_session(st)
    try:
        if a.eim_command == "list":
            emit(a, out, es10.get_eim_configuration_data(s), print_eims)
            return 0
        e = {"eimId": a.id, "eimFqdn": a.fqdn, "counterValue": a.counter,
             "eimPublicKeyData": _key_choice(a.key, ("eimPublicKey", "eimCertificate")),
             "eimSupportedProtocol": ["eimRetrieve" + p.capitalize()
                                      for p in (a.protocol or ["https"])]}
        if a.tls:
            e["trustedPublicKeyDataTls"] = _key_choice(a.tls, ("trustedEimPkTls",
                                                               "trustedCertificateTls"))
        if a.token:
            e["associationToken"] = -1
        r = es10.add_initial_eim(s, [e])
    finally:
        s.close()
    emit(a, out, r, lambda r, o: o.write("added eIM %s%s\n" % (
        a.id, "; associationToken %d" % r[0]["associationToken"]
        if r and "associationToken" in r[0] else "")))
    return 0


def print_notifications(ns, out):
    if not ns:
        out.write("no pending notifications\n")
    for n in ns:
        what = n.get("profileManagementOperation", n.get("kind", ""))
        if isinstance(what, list):
            what = ",".join(str(w) for w in what)
        out.write("#%-5s %-24s %-22s %s\n" % (n.get("seqNumber"), what, n.get("iccid", ""),
                                              n.get("notificationAddress", "")))


PEER_NAMES = {"eim": "eIM", "smdp": "SM-DP+", None: "no peer"}


def _seqs(v):
    return ",".join(str(n) for n in v)


def print_peers(notes, out, prefix=""):
    """One line per destination of a notification pass (ipa_core.ipa_notify.new_notes)."""
    for addr in sorted(notes.get("peers") or {}):
        p = notes["peers"][addr]
        parts = ["%s %s" % (k, _seqs(p[k])) for k in ("delivered", "removed", "failed", "kept")
                 if p.get(k)]
        if p.get("retryInS"):
            parts.append("retry in %d s" % p["retryInS"])
        out.write("%s%s %s: %s%s\n" % (prefix, PEER_NAMES.get(p.get("peer"), p.get("peer")),
                                       addr, ", ".join(parts),
                                       " (%s)" % p["error"] if p.get("error") else ""))


def undelivered(r):
    """The --json error of a notification pass that left some on the eUICC: the first
    peer's reason (an SM-DP+ down, backing off, no peer)."""
    why = []
    for addr in sorted(r.get("peers") or {}):
        p = r["peers"][addr]
        if p.get("failed") or p.get("kept"):
            why.append("%s %s: %s" % (PEER_NAMES.get(p.get("peer"), p.get("peer")), addr,
                                      p.get("error") or ("retry in %d s" % p["retryInS"]
                                                         if p.get("retryInS") else "kept")))
    return {"code": "failed", "type": "NotDelivered",
            "message": "notifications left on the eUICC (failed %s, kept %s): %s" % (
                _seqs(r.get("failed") or []) or "none", _seqs(r.get("kept") or []) or "none",
                "; ".join(why))}


def print_processed(r, out):
    print_recovered(r, out)
    out.write("delivered %s; removed %s%s\n" % (
        _seqs(r.get("delivered") or []) or "nothing", _seqs(r.get("removed") or []) or "nothing",
        "; failed %s" % _seqs(r["failed"]) if r.get("failed") else ""))
    print_peers(r, out, "  ")
    if r.get("error"):
        out.write("error: %s\n" % r["error"].get("message"))


def cmd_notifications(a, st, out):
    if a.notif_command == "list":
        s = runner.open_session(st)
        try:
            emit(a, out, es10.list_notification(s), print_notifications)
        finally:
            s.close()
        return 0
    if a.notif_command == "process":
        with runner.IpaHost(st, need_eim=False) as h:
            r = h.ipa.process_notifications()
        emit(a, out, r, print_processed)
        if r.get("error"):
            fail(a, cli_json.error_from_summary(r["error"]))
            return 1
        if r.get("failed") or r.get("kept"):
            fail(a, undelivered(r))
            return 1
        return 0
    if a.notif_command == "remove":
        return cli_euicc.cmd_notifications_remove(a, st, out, emit)
    raise ValueError("ipa notifications: choose an action: list, process or remove")


# ---- download -------------------------------------------------------------------


def add_download_parser(sub):
    d = sub.add_parser(
        "download", help="download and install a profile from an activation code or an SM-DS",
        description="Profile download (SGP.32 3.2.3): directly from the SM-DP+ over ES9+ "
                    "(default), or relayed by the eIM over ESipa (--indirect); or every "
                    "profile an SM-DS announces for this eUICC (--smds, ES11). The progress "
                    "of the bound profile package goes to stderr. Exit 4: the SM-DS had no "
                    "event for this eUICC.")
    d.add_argument("activation_code", metavar="ACTIVATION-CODE", nargs="?",
                   help="LPA:1$<SM-DP+ address>$<matchingId>[$<OID>[$1]] (LPA: optional)")
    d.add_argument("--smds", metavar="ADDRESS", nargs="?", const="",
                   help="instead of an activation code: ask this SM-DS (default: the eUICC's "
                        "root SM-DS) for the events of this eUICC and download each from its "
                        "SM-DP+ (TLS trust: --smdp-ca-file, as for SM-DP+ servers)")
    d.add_argument("--first", action="store_true",
                   help="with --smds: download the first event only (the others stay there)")
    d.add_argument("--confirmation-code", metavar="CODE",
                   help="confirmation code, if the SM-DP+ asks for one")
    d.add_argument("--enable", action="store_true",
                   help="enable the profile right after installation (ES10b.ImmediateEnable)")
    d.add_argument("--indirect", action="store_true",
                   help="relay through the eIM (ESipa) instead of talking to the SM-DP+")
    d.add_argument("--imei", metavar="DIGITS", help="IMEI to put in deviceInfo")


class ProgressBar:
    """`progress(done, total)` for the BPP segments: a bar on a terminal, else a few lines."""

    def __init__(self, err, width=30):
        self.err = err
        self.width = width
        self.tty = hasattr(err, "isatty") and err.isatty()
        self.shown = -1

    def __call__(self, done, total):
        if self.tty:
            n = self.width * done // max(total, 1)
            self.err.write("\rloading profile [%s%s] %d/%d segments" % (
                "#" * n, "." * (self.width - n), done, total))
            if done >= total:
                self.err.write("\n")
        elif done in (0, total) or done * 4 // max(total, 1) != self.shown:
            self.shown = done * 4 // max(total, 1)
            self.err.write("loading profile: %d/%d segments\n" % (done, total))
        self.err.flush()


def print_download(r, out):
    md = r.get("profileMetadata") or {}
    name = md.get("profileName") or md.get("serviceProviderName") or ""
    if r.get("ok"):
        out.write("installed      %s%s\n" % (r.get("iccid"), "  " + name if name else ""))
    else:
        fr = ((r.get("pir") or {}).get("finalResult") or {}).get("errorResult") or {}
        out.write("failed         %s (bppCommandId %s, errorReason %s)\n" % (
            (r.get("pir") or {}).get("error"), fr.get("bppCommandId"), fr.get("errorReason")))
    out.write("SM-DP+         %s (%s)\n" % (r.get("smdpAddress") or "chosen by the eIM",
                                           r.get("transport")))
    out.write("transaction    %s\n" % r.get("transactionId"))
    if r.get("segments"):
        out.write("segments       %d of %d\n" % tuple(r["segments"]))
    if "immediateEnable" in r:
        out.write("enabled        %s\n" % r["immediateEnable"])
    print_peers(r.get("notifications") or {}, out, "notified       ")


def _after_enable(st, session, r):
    """ImmediateEnable switched the profile: on a modem, as after any switch."""
    if r.get("immediateEnable") == "ok":
        runner.after_profile_switch(st, session, "enabling the new profile")


def deliver_pirs(st, results):
    """ES9+.HandleNotification of the PIRs of these download results to the SM-DP+ each is
    addressed to, right away (SGP.22 3.1.3), in one notification pass (its notes, or None
    without a PIR); what fails stays on the eUICC for the next pass, with a warning."""
    seqs = [(r.get("pir") or {}).get("seqNumber") for r in results]
    seqs = [q for q in seqs if q is not None]
    if not seqs:
        return None
    with runner.IpaHost(st, need_eim=False) as h:
        if h.ipa.smdp_network is None:  # [download] mode = "indirect": these were direct
            h.ipa.smdp_network = lambda address: runner.build_smdp_network(st, address)
        notes = h.ipa.process_notifications(only=seqs)
    left = [q for q in seqs if q not in notes["removed"]]
    if left:
        runner.log.warning("the ProfileInstallationResult (notification %s) stays on the eUICC; "
                           "`ipa notifications process` delivers it later", _seqs(left))
    return notes


def cmd_download(a, st, out):
    from ipa_core import activation
    from ipa_core import ipa_download as dl
    from ipa_core.ipa_direct import DirectTransport

    if (a.smds is None) == (a.activation_code is None):
        raise ValueError("download: give an activation code or --smds [ADDRESS], one of them")
    if a.smds is not None and a.indirect:
        raise ValueError("download --smds: the SM-DS is reached directly; --indirect does not "
                         "apply")
    if a.first and a.smds is None:
        raise ValueError("download --first: only with --smds")
    kw = {"confirmation_code": a.confirmation_code, "imei": a.imei,
          "immediate_enable": a.enable, "refresh_flag": st.refresh_flag,
          "progress": ProgressBar(sys.stderr), "log": runner.core_log}
    if a.smds is not None:
        from ipa_host.smds_download import download_from_smds

        return download_from_smds(a, st, out, kw)
    kw["activation"] = ac = activation.parse(a.activation_code)  # ValueError: exit 2
    said = lambda level, msg: sys.stderr.write("ipa: %s\n" % msg)  # noqa: E731
    recovered = None
    try:
        # First the session an earlier, cut-off download left open (ipa_core.ipa_cancel):
        # its cancel must reach the eUICC before this download's GetEUICCChallenge ends it.
        if a.indirect:
            with runner.IpaHost(st) as h:
                recovered = h.ipa.recover_download(said)
                r = dl.download(h.session, dl.IndirectTransport(h.ipa), store=h.ipa.store, **kw)
                _after_enable(st, h.session, r)
        else:
            with runner.SmdpHost(st, ac["smdpAddress"]) as h:
                recovered = h.recover(said)
                r = dl.download(h.session, DirectTransport(h.network, max_package=st.max_package),
                                store=h.store, **kw)
                _after_enable(st, h.session, r)
            r["notifications"] = deliver_pirs(st, [r])
    except dl.DownloadError as e:
        sys.stderr.write("ipa: %s\n" % e)
        c = e.result.get("cancel")
        if c:
            sys.stderr.write("ipa: session cancelled (%s): eUICC %s, %s %s\n" % (
                c["reason"], "yes" if c["euicc"] else "no (%s)" % c.get("euiccError"),
                "SM-DP+" if not a.indirect else "eIM",
                "yes" if c["server"] else "no (%s)" % c.get("serverError")))
        e.result["recovered"] = recovered
        emit(a, out, e.result, lambda d, o: None)
        fail(a, cli_json.error(e.cause, stage=e.stage, message=str(e)))
        return 3 if isinstance(e.cause, TransportError) else 1
    r["recovered"] = recovered
    emit(a, out, r, print_download)
    return 0 if r.get("ok") else 1


COMMANDS = {"info": cmd_info, "poll": cmd_poll, "run": cmd_run, "eim": cmd_eim,
            "notifications": cmd_notifications, "download": cmd_download,
            "euicc": lambda a, st, out: cli_euicc.cmd_euicc(a, st, out, emit)}


class _Parser(argparse.ArgumentParser):
    """argparse with the --json contract for usage errors too: the envelope on stdout
    (error.code "usage"), the usual message on stderr, exit code 2."""

    json_out = None  # the stream for the envelope, when --json is on the command line

    def error(self, message):
        if _Parser.json_out is not None:
            cli_json.write(_Parser.json_out, cli_json.envelope(
                self.prog.replace("ipa", "", 1).strip() or None, 2, None,
                {"code": "usage", "type": "UsageError", "message": message}))
        super().error(message)


def command_name(a):
    """"notifications list", "euicc memory-reset", ...: the command as typed."""
    sub = [getattr(a, k, None) for k in ("eim_command", "notif_command", "euicc_command",
                                         "service_command")]
    return " ".join([a.command] + [x for x in sub if x])


def main(argv=None, out=None):
    if out is None:
        # `ipa info | head` must end quietly, like any Unix tool.
        import signal

        if hasattr(signal, "SIGPIPE"):
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        out = sys.stdout
    argv = sys.argv[1:] if argv is None else list(argv)
    _Parser.json_out = out if "--json" in argv else None
    try:
        p = build_parser()
        a = p.parse_args(argv)
    finally:
        _Parser.json_out = None
    if not a.command:
        p.print_help(out)
        return 0
    a.json_result = a.json_error = None
    code, err = _run(p, a, out)
    if a.json and (a.command != "run" or err is not None):
        if code and err is None:
            err = a.json_error
        cli_json.write(out, cli_json.envelope(command_name(a), code, a.json_result, err))
    return code


def _run(p, a, out):
    """The command -> (exit code, the --json error object of an exception or None)."""
    if a.command == "service":  # files on this host only: no card, no configuration read
        from ipa_host import service

        return service.run(a, out)
    st = None
    try:
        if a.segment_size is not None and not 1 <= a.segment_size <= 255:
            raise ValueError("--segment-size %d outside 1..255" % a.segment_size)
        st, level = settings(a)
        # [ipa] log_level rules `run` (a service); other commands say only warnings at "info".
        runner.setup_logging(a.log_level or (level if a.command == "run" else
                                             "warning" if level == "info" else level))
        return COMMANDS[a.command](a, st, out), None
    except (ValueError, ConfigError, IpaError) as e:
        # bad card spec, config and other usage errors: 2; the card or a server out of
        # reach: 3; refused or failed: 1
        sys.stderr.write(runner.error_line("ipa: %s" % e))
        err = cli_json.error(e)
        return cli_json.ERROR_CODES[err["code"]], err
    finally:
        if st is not None and hasattr(st.trace, "close"):
            st.trace.close()  # --pcap, --gsmtap
