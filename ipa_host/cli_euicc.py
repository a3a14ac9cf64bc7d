"""`ipa euicc ...` and `ipa notifications remove`: the lab bench's hands on the eUICC.

Each subcommand is one ES10 function (SGP.32 v1.2 5.9, SGP.22 v2.5 5.7) that a
test lab or a provisioning line calls by hand; the IPA itself calls none of
them on its own. Those that destroy data (EuiccMemoryReset, removing a
notification that was never delivered) refuse to run without --yes. Those that
switch the enabled profile (fallback, emergency) flag the change for the eIM
(notifyStateChange in the next GetEimPackage, SGP.32 3.6.1) and, on a modem,
make it read the eUICC again, as the IPA does after its own switches.
"""

import os
import sys

from ipa_core import es10
from ipa_host import runner

# EuiccMemoryReset resetOptions (SGP.32 5.9.x, ES10c) by option name.
RESET_FLAGS = (
    ("operational", "deleteOperationalProfiles", "delete operational profiles"),
    ("test", "deleteFieldLoadedTestProfiles", "delete field-loaded test profiles"),
    ("default-smdp", "resetDefaultSmdpAddress", "reset the default SM-DP+ address"),
    ("preloaded-test", "deletePreLoadedTestProfiles", "delete pre-loaded test profiles"),
    ("provisioning", "deleteProvisioningProfiles", "delete provisioning profiles"),
    ("eim", "resetEimConfigData", "delete the eIM Configuration Data"),
    ("immediate-enable-config", "resetImmediateEnableConfig",
     "reset the immediate-enable configuration"),
)
# stateChangeCause for the eIM after a local switch (SGP.32 GetEimPackageRequest)
SWITCH_CAUSE = {"fallback": "fallback", "emergency": "emergencyProfile"}


def add_parsers(sub):
    """`ipa euicc ...` under the top-level subparsers; `remove` under notifications."""
    e = sub.add_parser("euicc", help="lab commands: one ES10 function each (reset, fallback, "
                                     "emergency, addresses, RAT, certificates)",
                       description="Call one ES10 function on the eUICC by hand (test labs, "
                                   "provisioning). Destructive ones need --yes.")
    es = e.add_subparsers(dest="euicc_command", metavar="ACTION")
    es.add_parser("addresses", help="ES10a.GetEuiccConfiguredAddresses: default SM-DP+ and "
                                    "root SM-DS")
    d = es.add_parser("default-dp", help="ES10a.SetDefaultDpAddress",
                      description="Set the eUICC's default SM-DP+ address (an empty string "
                                  "clears it).")
    d.add_argument("address", metavar="ADDRESS", help="FQDN[:port] of the SM-DP+, or ''")
    es.add_parser("rat", help="ES10b.GetRAT: the Rules Authorisation Table")
    es.add_parser("certs", help="ES10b.GetCerts: the EUM and eUICC certificates")
    m = es.add_parser("memory-reset", help="ES10c.EuiccMemoryReset (destroys data: --yes)",
                      description="Reset the eUICC's memory as the options say. Profiles and "
                                  "settings deleted this way are gone for good.")
    for flag, _name, what in RESET_FLAGS:
        m.add_argument("--" + flag, action="store_true", help=what)
    m.add_argument("--yes", action="store_true", help="confirm: this destroys data")
    i = es.add_parser("immediate-enable", help="ES10b.ConfigureImmediateProfileEnabling",
                      description="Let the eUICC enable a newly downloaded profile at once "
                                  "(immediateEnableFlag), and the SM-DP+ it takes for that.")
    g = i.add_mutually_exclusive_group(required=True)
    g.add_argument("--on", action="store_true", help="set immediateEnableFlag")
    g.add_argument("--off", action="store_true", help="leave immediateEnableFlag out")
    i.add_argument("--smdp-oid", metavar="OID", help="defaultSmdpOid, e.g. 2.999.10")
    i.add_argument("--smdp-address", metavar="ADDRESS", help="defaultSmdpAddress")
    for name, actions, spec in (("fallback", ("execute", "return"),
                                 "ES10b.ExecuteFallbackMechanism / ReturnFromFallback"),
                                ("emergency", ("enable", "disable"),
                                 "ES10b.EnableEmergencyProfile / DisableEmergencyProfile")):
        f = es.add_parser(name, help=spec, description=spec + ". The enabled profile "
                          "changes: the eIM hears of it in the next poll (stateChangeCause).")
        f.add_argument("action", choices=actions)
        _refresh_option(f)


def add_notifications_remove(nsub):
    r = nsub.add_parser("remove", help="ES10b.RemoveNotificationFromList (--yes)",
                        description="Remove notifications from the eUICC without delivering "
                                    "them: their peers never get them.")
    r.add_argument("seq", type=int, nargs="+", metavar="SEQ", help="seqNumber(s)")
    r.add_argument("--yes", action="store_true", help="confirm: the notifications are lost")


def _refresh_option(p):
    p.add_argument("--refresh", dest="refresh_flag", action="store_true", default=None,
                   help="refreshFlag set: the eUICC asks the modem for a REFRESH (default: "
                        "[card] refresh_flag, true)")
    p.add_argument("--no-refresh", dest="refresh_flag", action="store_false",
                   help="refreshFlag clear: the device resets the modem itself")


def _session(st):
    return runner.open_session(st)


def _flag_switch(st, session, cause):
    """Record a local profile switch for the eIM (Ipa.set_state_change, in the store)."""
    from ipa_core.ipa import Ipa
    from ipa_host.store import FileStore

    store = FileStore(os.path.join(st.home, runner.STATE_FILE))
    Ipa(session, None, store).set_state_change(cause)


def cert_summary(der):
    """What a person checks in a certificate: subject, issuer, validity, key, SKI/AKI."""
    from cryptography import x509

    c = x509.load_der_x509_certificate(bytes(der))
    out = {"subject": c.subject.rfc4514_string(), "issuer": c.issuer.rfc4514_string(),
           "serialNumber": "%X" % c.serial_number,
           "notBefore": _utc(c, "not_valid_before"), "notAfter": _utc(c, "not_valid_after"),
           "publicKey": getattr(getattr(c.public_key(), "curve", None), "name", "other"),
           "der": bytes(der)}
    for oid, key, attr in ((x509.SubjectKeyIdentifier, "subjectKeyIdentifier", "digest"),
                           (x509.AuthorityKeyIdentifier, "authorityKeyIdentifier",
                            "key_identifier")):
        try:
            out[key] = getattr(c.extensions.get_extension_for_class(oid).value, attr)
        except x509.ExtensionNotFound:
            pass
    return out


def _utc(cert, name):
    t = getattr(cert, name + "_utc", None) or getattr(cert, name)  # cryptography < 42: naive UTC
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_certs(r, out):
    for name in ("eumCertificate", "euiccCertificate"):
        c = r[name]
        out.write("%s\n" % name)
        for k in ("subject", "issuer", "serialNumber", "notBefore", "notAfter", "publicKey"):
            out.write("  %-22s %s\n" % (k, c[k]))
        for k in ("subjectKeyIdentifier", "authorityKeyIdentifier"):
            if c.get(k) is not None:
                out.write("  %-22s %s\n" % (k, bytes(c[k]).hex().upper()))


def _print_rat(rules, out):
    if not rules:
        out.write("no rules (the RAT is empty)\n")
    for i, r in enumerate(rules):
        ops = ", ".join("%s%s" % (o.get("mccMnc"), "" if len(o) == 1 else " (%s)" % ", ".join(
            "%s %s" % (k, v) for k, v in sorted(o.items()) if k != "mccMnc"))
            for o in r.get("allowedOperators") or [])
        out.write("rule %d  pprIds %s  flags %s  operators %s\n" % (
            i, ",".join(r.get("pprIds") or []) or "none",
            ",".join(r.get("pprFlags") or []) or "none", ops or "none"))


def _print_addresses(r, out):
    out.write("default SM-DP+  %s\n" % (r.get("defaultDpAddress") or "(none)"))
    out.write("root SM-DS      %s\n" % (r.get("rootDsAddress") or "(none)"))


def _done(text):
    return lambda r, out: out.write(text + "\n")


def cmd_euicc(a, st, out, emit):
    """`ipa euicc ACTION`: see add_parsers. `emit(a, out, data, human)` prints."""
    c = a.euicc_command
    if c is None:
        raise ValueError("ipa euicc: choose an action: addresses, default-dp, rat, certs, "
                         "memory-reset, immediate-enable, fallback, emergency")
    if c == "memory-reset":
        options = [name for flag, name, _w in RESET_FLAGS
                   if getattr(a, flag.replace("-", "_"))]
        if not options:
            raise ValueError("ipa euicc memory-reset: say what to reset (%s)"
                             % ", ".join("--" + f for f, _n, _w in RESET_FLAGS))
        if not a.yes:
            raise ValueError("ipa euicc memory-reset: this will %s; add --yes to go ahead"
                             % "; ".join(w for f, n, w in RESET_FLAGS if n in options))
    s = _session(st)
    try:
        if c == "addresses":
            emit(a, out, es10.get_euicc_configured_addresses(s), _print_addresses)
        elif c == "default-dp":
            es10.set_default_dp_address(s, a.address)
            emit(a, out, {"defaultDpAddress": a.address},
                 _done("default SM-DP+ address set to %s" % (a.address or "(none)")))
        elif c == "rat":
            emit(a, out, es10.get_rat(s), _print_rat)
        elif c == "certs":
            r = es10.get_certs(s)
            emit(a, out, {k: cert_summary(v) for k, v in r.items()}, _print_certs)
        elif c == "memory-reset":
            r = es10.euicc_memory_reset(s, options)
            r["resetOptions"] = options
            emit(a, out, r, _done("EuiccMemoryReset: %s (%s)" % (
                es10.RESET_RESULT.get(r["resetResult"]), ", ".join(options))))
            if "resetEimConfigData" in options or "deleteOperationalProfiles" in options:
                _flag_switch(st, s, "reset")
        elif c == "immediate-enable":
            es10.configure_immediate_profile_enabling(s, a.on, a.smdp_oid, a.smdp_address)
            emit(a, out, {"immediateEnableFlag": bool(a.on), "defaultSmdpOid": a.smdp_oid,
                          "defaultSmdpAddress": a.smdp_address},
                 _done("immediate profile enabling %s" % ("on" if a.on else "off")))
        else:  # fallback / emergency: the enabled profile changes
            refresh = st.refresh_flag if a.refresh_flag is None else a.refresh_flag
            fn = {("fallback", "execute"): es10.execute_fallback_mechanism,
                  ("fallback", "return"): es10.return_from_fallback,
                  ("emergency", "enable"): es10.enable_emergency_profile,
                  ("emergency", "disable"): es10.disable_emergency_profile}[(c, a.action)]
            fn(s, refresh)
            _flag_switch(st, s, SWITCH_CAUSE[c])
            runner.after_profile_switch(st, s, "%s %s" % (c, a.action))
            emit(a, out, {"function": fn.__name__, "refreshFlag": refresh},
                 _done("%s %s: done (refreshFlag %s); the eIM hears of it in the next poll"
                       % (c, a.action, "set" if refresh else "clear")))
    finally:
        s.close()
    return 0


def cmd_notifications_remove(a, st, out, emit):
    if not a.yes:
        raise ValueError("ipa notifications remove %s: the notification(s) will never reach "
                         "their eIM or SM-DP+; add --yes to go ahead"
                         % " ".join(str(n) for n in a.seq))
    s = _session(st)
    try:
        r = {"removed": [], "nothingToDelete": []}
        for seq in a.seq:
            code = es10.remove_notification_from_list(s, seq)
            r["removed" if code == 0 else "nothingToDelete"].append(seq)
    finally:
        s.close()
    emit(a, out, r, lambda r, o: o.write("removed %s%s\n" % (
        ",".join(str(n) for n in r["removed"]) or "nothing",
        "; not on the eUICC: %s" % ",".join(str(n) for n in r["nothingToDelete"])
        if r["nothingToDelete"] else "")))
    if r["nothingToDelete"]:
        msg = "no notification %s on the eUICC" % ",".join(str(n) for n in r["nothingToDelete"])
        sys.stderr.write("ipa: %s\n" % msg)
        a.json_error = {"code": "refused", "type": "FunctionError", "message": msg,
                        "function": "ES10b.RemoveNotificationFromList",
                        "reason": "nothingToDelete", "reasonCode": 1}
        return 1
    return 0
