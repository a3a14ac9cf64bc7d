"""`ipa-sim eim`: run the simulated eIM, and operate it through its API (JSON output).

    ipa-sim eim serve --dir DIR [--pki PKI] [--port 8443] [--api-port 8444] [--http] [--token N]
                      [--coap-port 5684] [--smdp-ca-file PEM]
    ipa-sim eim psmo EID enable ICCID [--rollback]      (disable|delete|setFallbackAttribute ICCID,
                                                          getRAT, unsetFallbackAttribute,
                                                          listProfileInfo [ICCID] [--tag-list HEX],
                                                          setDefaultDpAddress ADDR, --ops-json)
    ipa-sim eim eco EID addEim EIMID --fqdn F --eim-cert FILE ...   (updateEim, deleteEim, listEim)
    ipa-sim eim data-request EID --tags 80,A2
    ipa-sim eim trigger EID 'LPA:1$smdp.example$MATCHING-ID'   (or --default-smdp, --smds [ADDR])
    ipa-sim eim register EID [--token N | --no-token] [--counter N] [--cert FILE]
    ipa-sim eim results|notifications|queue|delivered|show|clear-queue EID
    ipa-sim eim eids | log [EID] | unattributed

Operator commands reach the API at --api URL, or at the one `serve --dir DIR`
wrote into DIR/server.json (--dir DIR), else http://127.0.0.1:8444.
Exit status: 0 done, 1 the eIM refused (its reason on stderr), 2 usage or
the API could not be reached.
"""

import argparse
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request

from ipa_host.sim.eim import signer

DEFAULT_API = "http://127.0.0.1:8444"
PSMO_WITH_ICCID = ("enable", "disable", "delete", "setFallbackAttribute")


class CliError(Exception):
    def __init__(self, msg, code=2):
        super().__init__(msg)
        self.code = code


def _api_base(args):
    if getattr(args, "api", None):
        return args.api.rstrip("/")
    if getattr(args, "dir", None):
        path = os.path.join(args.dir, "server.json")
        try:
            with open(path) as f:
                return json.load(f)["api_url"].rstrip("/")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise CliError("%s: cannot read the API address (%s); is `ipa-sim eim serve --dir %s`"
                           " running?" % (path, e, args.dir))
    return DEFAULT_API


def call(base, method, path, body=None, timeout=30):
    """One operator API call -> decoded JSON; CliError on refusal or no answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        try:
            reason = json.loads(e.read().decode("utf-8")).get("error")
        except (ValueError, UnicodeError, AttributeError):
            reason = None
        raise CliError("eIM refused %s %s: %s %s" % (method, path, e.code, reason or e.reason), 1)
    except (urllib.error.URLError, OSError) as e:
        raise CliError("cannot reach the eIM operator API at %s: %s (is `ipa-sim eim serve` "
                       "running?)" % (base, getattr(e, "reason", e)))


def _ops_json(text):
    """--ops-json: a JSON list (or one op object) given inline or as a file name."""
    if os.path.isfile(text):
        with open(text) as f:
            text = f.read()
    try:
        ops = json.loads(text)
    except ValueError as e:
        raise CliError("--ops-json: not JSON: %s" % e)
    return ops if isinstance(ops, list) else [ops]


def _key_file(path):
    """A certificate or public key file (PEM or DER) -> DER hex for the eCO."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CliError("%s: %s" % (path, e))
    for load in (x509.load_pem_x509_certificate, x509.load_der_x509_certificate):
        try:
            return load(data).public_bytes(serialization.Encoding.DER).hex()
        except ValueError:
            pass
    for load in (serialization.load_pem_public_key, serialization.load_der_public_key):
        try:
            return load(data).public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).hex()
        except (ValueError, TypeError):
            pass
    raise CliError("%s is neither a certificate nor a public key (PEM or DER)" % path)


def _psmo_ops(args):
    if args.ops_json:
        return _ops_json(args.ops_json)
    if not args.op:
        raise CliError("psmo: give an operation (%s) or --ops-json" % ", ".join(signer.PSMO_TAGS))
    op = {"op": args.op}
    if args.op in PSMO_WITH_ICCID:
        if not args.arg:
            raise CliError("psmo %s: the ICCID is required" % args.op)
        op["iccid"] = args.arg
        if args.rollback:
            if args.op != "enable":
                raise CliError("--rollback is for enable only")
            op["rollback"] = True
    elif args.op == "listProfileInfo":
        if args.arg:
            op["iccid"] = args.arg
        if args.tag_list:
            op["tagList"] = args.tag_list
    elif args.op == "setDefaultDpAddress":
        if not args.arg:
            raise CliError("psmo setDefaultDpAddress: the address is required")
        op["defaultDpAddress"] = args.arg
    elif args.op == "configureImmediateEnable":
        op["immediateEnable"] = bool(args.immediate_enable)
        if args.smdp_oid:
            op["defaultSmdpOid"] = args.smdp_oid
        if args.smdp_address:
            op["defaultSmdpAddress"] = args.smdp_address
    elif args.arg:
        raise CliError("psmo %s takes no argument, got %r" % (args.op, args.arg))
    return [op]


def _eco_ops(args):
    if args.ops_json:
        return _ops_json(args.ops_json)
    if not args.op:
        raise CliError("eco: give an operation (%s) or --ops-json" % ", ".join(signer.ECO_TAGS))
    op = {"op": args.op}
    if args.op == "listEim":
        return [op]
    if not args.eim_id:
        raise CliError("eco %s: the eimId is required" % args.op)
    op["eimId"] = args.eim_id
    if args.op == "deleteEim":
        return [op]
    for attr, key in (("fqdn", "eimFqdn"), ("id_type", "eimIdType"),
                      ("counter_value", "counterValue"),
                      ("association_token", "associationToken"), ("ci_pkid", "euiccCiPKId")):
        if getattr(args, attr) is not None:
            op[key] = getattr(args, attr)
    if args.eim_cert:
        op["eimPublicKey"] = _key_file(args.eim_cert)
    if args.tls_cert:
        op["trustedPublicKeyTls"] = _key_file(args.tls_cert)
    if args.protocols:
        op["eimSupportedProtocol"] = [p for p in args.protocols.split(",") if p]
    if args.indirect:
        op["indirectProfileDownload"] = True
    return [op]


def _parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", help="operator API base URL (default: from --dir, else %s)"
                        % DEFAULT_API)
    common.add_argument("--dir", help="the eIM folder (reads its server.json)")
    p = argparse.ArgumentParser(prog="ipa-sim eim",
                                description="Simulated SGP.32 eIM: ESipa server and operator "
                                            "commands (JSON output).")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("serve", help="run the eIM (ESipa over HTTPS + operator API)")
    s.add_argument("--dir", required=True, help="state folder (created)")
    s.add_argument("--pki", help="PKI folder with eim.key (default: the ipa home's sim/pki, "
                   "and --token 1, when DIR is <home>/eim of an `ipa --home <home>`; else "
                   "DIR/pki, created)")
    s.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8443, help="ESipa port (default 8443)")
    s.add_argument("--api-port", type=int, default=8444,
                   help="operator API port on the same host (default 8444)")
    s.add_argument("--no-api", action="store_true", help="no operator API")
    s.add_argument("--http", action="store_true", help="plain HTTP (lab only)")
    s.add_argument("--eim-id", default=None, help="eimId (default ipa-demo-eim)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--token", type=int, help="associationToken of the PKI's eUICC for this eIM")
    g.add_argument("--no-token", action="store_true", help="the PKI's eUICC holds no token")
    s.add_argument("--sgp32", "--version", dest="sgp32", default=None, choices=signer.VERSIONS,
                   help="SGP.32 version of the ESipa forms (default: the one kept in "
                        "DIR/config.json, else 1.2; --version is the old name)")
    s.add_argument("--tls-name", action="append", default=[],
                   help="extra DNS name or IP for the TLS server certificate")
    s.add_argument("--coap-port", type=int, default=None,
                   help="also serve ESipa over CoAP (DTLS unless --http) on this UDP port "
                        "(0: any free one; default: no CoAP)")
    s.add_argument("--smdp-ca-file", metavar="PEM", default=None,
                   help="CA bundle trusted for the SM-DP+'s TLS when relaying an indirect "
                        "profile download (default: the system CAs)")

    r = sub.add_parser("register", parents=[common], help="make an EID known / set its data")
    r.add_argument("eid")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--token", type=int, help="associationToken of that eUICC for this eIM")
    g.add_argument("--no-token", action="store_true", help="that eUICC holds no token")
    r.add_argument("--counter", type=int, help="last counterValue used (next package: +1)")
    r.add_argument("--cert", help="eUICC certificate file (PEM/DER) to verify its signatures")

    s = sub.add_parser("psmo", parents=[common], help="queue a PSMO package")
    s.add_argument("eid")
    s.add_argument("op", nargs="?", choices=list(signer.PSMO_TAGS))
    s.add_argument("arg", nargs="?", help="ICCID, or the address for setDefaultDpAddress")
    s.add_argument("--rollback", action="store_true", help="enable with rollbackFlag")
    s.add_argument("--tag-list", help="listProfileInfo tagList (hex)")
    s.add_argument("--immediate-enable", action="store_true")
    s.add_argument("--smdp-oid")
    s.add_argument("--smdp-address")
    s.add_argument("--ops-json", help="operations as JSON (inline or a file)")
    s.add_argument("--transaction-id", help="eimTransactionId (hex; default random)")

    s = sub.add_parser("eco", parents=[common], help="queue an eCO package")
    s.add_argument("eid")
    s.add_argument("op", nargs="?", choices=list(signer.ECO_TAGS))
    s.add_argument("eim_id", nargs="?", metavar="EIMID")
    s.add_argument("--fqdn")
    s.add_argument("--id-type", choices=list(signer.EIM_ID_TYPES))
    s.add_argument("--counter-value", type=int)
    s.add_argument("--association-token", type=int)
    s.add_argument("--eim-cert", help="the eIM's signing certificate or public key file")
    s.add_argument("--tls-cert", help="TLS trust anchor certificate or key file")
    s.add_argument("--protocols", help="comma list of " + ",".join(signer.EIM_PROTOCOLS))
    s.add_argument("--ci-pkid")
    s.add_argument("--indirect", action="store_true", help="indirectProfileDownload")
    s.add_argument("--ops-json", help="operations as JSON (inline or a file)")
    s.add_argument("--transaction-id", help="eimTransactionId (hex; default random)")

    s = sub.add_parser("data-request", parents=[common], help="queue an IpaEuiccDataRequest")
    s.add_argument("eid")
    s.add_argument("--tags", required=True, help="tags to ask for, e.g. 80,A2 or BF20,A8")
    s.add_argument("--ci-pkid", help="euiccCiPKIdentifierToBeUsed (hex)")
    s.add_argument("--notification-seq", type=int, help="searchCriteriaNotification seqNumber")
    s.add_argument("--result-seq", type=int, help="searchCriteriaEuiccPackageResult seqNumber")
    s.add_argument("--transaction-id", help="eimTransactionId (hex; default random)")

    s = sub.add_parser("trigger", parents=[common], help="queue a ProfileDownloadTriggerRequest")
    s.add_argument("eid")
    s.add_argument("activation_code", nargs="?", help="activation code, sent as given")
    s.add_argument("--default-smdp", action="store_true", help="contactDefaultSmdp")
    s.add_argument("--smds", nargs="?", const=True, default=None,
                   help="contactSmds [SM-DS address]")
    s.add_argument("--transaction-id", help="eimTransactionId (hex; default random)")

    for name, text in (("results", "EimPackageResults received"),
                       ("notifications", "notifications received"),
                       ("queue", "packages waiting"), ("delivered", "packages handed out"),
                       ("show", "summary: counter, token, counts"),
                       ("clear-queue", "drop the waiting packages")):
        s = sub.add_parser(name, parents=[common], help="%s (one EID)" % text)
        s.add_argument("eid")
    sub.add_parser("eids", parents=[common], help="EIDs the eIM knows")
    s = sub.add_parser("log", parents=[common], help="ESipa requests (bytes as hex)")
    s.add_argument("eid", nargs="?")
    sub.add_parser("unattributed", parents=[common],
                   help="notifications no known EID was found for")
    return p


def home_pki(eim_dir):
    """<home>/sim/pki when `eim_dir` is <home>/eim of an ipa home that has its eIM key there
    (the key the home's virtual eUICC trusts: another key would make every package fail its
    signature check), else None (EimServer's default DIR/pki)."""
    pki = os.path.join(os.path.dirname(os.path.abspath(eim_dir)), "sim", "pki")
    if os.path.basename(os.path.abspath(eim_dir)) == "eim" and \
            os.path.isfile(os.path.join(pki, "eim.key")):
        return pki
    return None


def _serve(args):
    from ipa_host.sim.eim.eim import EimServer

    kw = {}
    if args.token is not None:
        kw["association_token"] = args.token
    elif args.no_token:
        kw["association_token"] = None
    if args.eim_id:
        kw["eim_id"] = args.eim_id
    pki = args.pki or home_pki(args.dir)
    if pki and not args.pki and "association_token" not in kw:
        # The home's eUICC generated associationToken 1 for the demo eIM, its first eIM.
        kw["association_token"] = 1
    try:
        server = EimServer(args.dir, pki, host=args.host, port=args.port,
                           api_port=None if args.no_api else args.api_port, tls=not args.http,
                           version=args.sgp32, tls_names=args.tls_name,
                           coap_port=args.coap_port, smdp_ca_file=args.smdp_ca_file, **kw)
        server.start()
    except (OSError, ValueError) as e:
        raise CliError("eim serve: %s" % e)
    done = threading.Event()

    def stop(*_):
        done.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    print("eIM %s: ESipa at %s (POST /gsma/rsp2/asn1, /gsma/rsp2/esipa/<function>)"
          % (server.eim_id, server.url))
    if args.http:
        print("plain HTTP: lab use only, nothing authenticates this eIM")
    else:
        print("TLS trust anchor for the IPA: %s" % server.tls_files["ca_cert"])
    if server.coap_url:
        print("ESipa over CoAP at %s" % server.coap_url)
    if server.api_url:
        print("operator API at %s" % server.api_url)
    if server.pki_eid:
        print("known eUICC %s (from %s)" % (server.pki_eid, server.pki_dir))
    sys.stdout.flush()
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


def _run(args):
    if args.cmd == "serve":
        return _serve(args)
    base = _api_base(args)
    out = None
    eid = getattr(args, "eid", None)
    txid = getattr(args, "transaction_id", None)
    if args.cmd == "register":
        body = {}
        if args.token is not None:
            body["associationToken"] = args.token
        elif args.no_token:
            body["associationToken"] = None
        if args.counter is not None:
            body["counter"] = args.counter
        if args.cert:
            try:
                with open(args.cert, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise CliError("%s: %s" % (args.cert, e))
            body["euiccCertificate"] = data.decode() if data.startswith(b"-----") else data.hex()
        out = call(base, "POST", "/eids/%s" % eid, body)
    elif args.cmd in ("psmo", "eco"):
        ops = _psmo_ops(args) if args.cmd == "psmo" else _eco_ops(args)
        body = {"ops": ops}
        if txid:
            body["transactionId"] = txid
        out = call(base, "POST", "/eids/%s/%s" % (eid, args.cmd), body)
    elif args.cmd == "data-request":
        body = {"tagList": args.tags}
        for attr, key in (("ci_pkid", "euiccCiPKId"), ("notification_seq", "notificationSeqNumber"),
                          ("result_seq", "resultSeqNumber"), ("transaction_id", "transactionId")):
            if getattr(args, attr) is not None:
                body[key] = getattr(args, attr)
        out = call(base, "POST", "/eids/%s/ipa-data-request" % eid, body)
    elif args.cmd == "trigger":
        body = {}
        if args.activation_code is not None:
            body["activationCode"] = args.activation_code
        if args.default_smdp:
            body["contactDefaultSmdp"] = True
        if args.smds is not None:
            body["contactSmds"] = args.smds
        if not body:
            raise CliError("trigger: give an activation code, --default-smdp or --smds")
        if txid:
            body["transactionId"] = txid
        out = call(base, "POST", "/eids/%s/download-trigger" % eid, body)
    elif args.cmd in ("results", "notifications", "queue", "delivered"):
        out = call(base, "GET", "/eids/%s/%s" % (eid, args.cmd))
    elif args.cmd == "show":
        out = call(base, "GET", "/eids/%s" % eid)
    elif args.cmd == "clear-queue":
        out = call(base, "DELETE", "/eids/%s/queue" % eid)
    elif args.cmd == "eids":
        out = call(base, "GET", "/eids")
    elif args.cmd == "log":
        out = call(base, "GET", "/log" + ("?eid=%s" % eid if eid else ""))
    elif args.cmd == "unattributed":
        out = call(base, "GET", "/unattributed")
    print(json.dumps(out, indent=1))
    return 0


def eim_main(argv=None):
    """Entry point of `ipa-sim eim`; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except CliError as e:
        print("ipa-sim eim: %s" % e, file=sys.stderr)
        return e.code


if __name__ == "__main__":
    sys.exit(eim_main())
