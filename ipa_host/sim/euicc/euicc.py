"""A virtual SGP.32 v1.2 IoT eUICC with real cryptography, reached by APDUs.

    card = VirtualEuicc("pki/", state_path="euicc.json")
    card.transmit(bytes.fromhex("0070000001"))   # -> 01 90 00

The card is any object with `transmit(apdu) -> response + SW`, like every
card transport of the IPA. Layers:

- euicc_apdu.py      channels, SELECT ISD-R, STORE DATA, GET RESPONSE
- euicc_es10.py      ES10a/b/c functions (info, certs, eIM configuration,
                     notifications, profiles, fallback, emergency, reset)
- euicc_package.py   ES10b.LoadEuiccPackage and ProfileRollback
- euicc_download.py  profile download: AuthenticateServer, PrepareDownload,
                     LoadBoundProfilePackage (segmented), CancelSession
- euicc_profiles.py  profile state changes and their notifications
- euicc_codec.py     data objects shared by those
- euicc_state.py     committed state, written atomically after every change

Keys and certificates come from a PKI folder (see pki.py): euicc.crt,
euicc.key and eum.crt are needed, ci.crt gives the CI key identifier (else
the EUM certificate's authority key identifier is used).

Each ES10 function runs on a copy of the committed state: when it fails the
state is as before, when it succeeds the new state is saved (temp file,
fsync, rename) before the answer leaves the card. A test may therefore drop
the object between any two APDUs and build a new one from the same state
file; only channels and a half-sent STORE DATA are lost, as in a power cycle.
"""

import argparse
import copy
import json
import logging
import os
import sys
import threading

from ipa_core import tlv
from ipa_core.errors import TlvError

from ipa_host.sim.euicc import euicc_codec as codec
from ipa_host.sim.euicc import euicc_download as download
from ipa_host.sim.euicc import euicc_es10 as es10
from ipa_host.sim.euicc import euicc_package as package
from ipa_host.sim import pki
from ipa_host.sim.euicc.euicc_apdu import PROTOCOLS, ApduLayer, SwError
from ipa_host.sim.euicc.euicc_state import EuiccState, StateError

log = logging.getLogger(__name__)

# What differs between the SGP.32 versions this card can pretend to be.
VERSIONS = {
    "1.0": {"svn": "2.4.0", "iot": "1.0.0", "memory_reset": 0xBF34},
    "1.1": {"svn": "2.5.0", "iot": "1.1.0", "memory_reset": 0xBF64},
    "1.2": {"svn": "2.5.0", "iot": "1.2.0", "memory_reset": 0xBF64},
}

# ES10 request tag -> (spec name, function)
FUNCTIONS = {
    0xBF20: ("ES10b.GetEuiccInfo1", es10.get_euicc_info1),
    0xBF22: ("ES10b.GetEuiccInfo2", es10.get_euicc_info2),
    0xBF3E: ("ES10c.GetEID", es10.get_eid),
    0xBF56: ("ES10b.GetCerts", es10.get_certs),
    0xBF55: ("ES10b.GetEimConfigurationData", es10.get_eim_configuration_data),
    0xBF57: ("ES10b.AddInitialEim", es10.add_initial_eim),
    0xBF51: ("ES10b.LoadEuiccPackage", package.load_euicc_package),
    0xBF2B: ("ES10b.RetrieveNotificationsList", es10.retrieve_notifications_list),
    0xBF28: ("ES10b.ListNotification", download.list_notification),
    0xBF30: ("ES10b.RemoveNotificationFromList", es10.remove_notification_from_list),
    0xBF2D: ("ES10c.GetProfilesInfo", es10.get_profiles_info),
    0xBF58: ("ES10b.ProfileRollback", package.profile_rollback),
    0xBF5A: ("ES10b.ImmediateEnable", es10.immediate_enable),
    0xBF59: ("ES10b.ConfigureImmediateProfileEnabling", es10.configure_immediate_profile_enabling),
    0xBF5B: ("ES10b.EnableEmergencyProfile", es10.enable_emergency_profile),
    0xBF5C: ("ES10b.DisableEmergencyProfile", es10.disable_emergency_profile),
    0xBF5D: ("ES10b.ExecuteFallbackMechanism", es10.execute_fallback_mechanism),
    0xBF5E: ("ES10b.ReturnFromFallback", es10.return_from_fallback),
    0xBF43: ("ES10b.GetRAT", es10.get_rat),
    0xBF3C: ("ES10a.GetEuiccConfiguredAddresses", es10.get_euicc_configured_addresses),
    0xBF65: ("ES10a.SetDefaultDpAddress", es10.set_default_dp_address),
    0xBF3F: ("ES10a.SetDefaultDpAddress (SGP.22)", es10.set_default_dp_address),
    0xBF5F: ("ES10b.GetConnectivityParameters", es10.get_connectivity_parameters),
    0xBF41: ("ES10b.CancelSession", download.cancel_session),
    0xBF2E: ("ES10b.GetEuiccChallenge", download.get_euicc_challenge),
    0xBF38: ("ES10b.AuthenticateServer", download.authenticate_server),
    0xBF21: ("ES10b.PrepareDownload", download.prepare_download),
}

# ATRs (ISO/IEC 7816-3 answer-to-reset): TS 3B (direct convention), T0 9F (TA1 and TD1 follow, 15
# historical bytes), TA1 96 (Fi 512, Di 32), then per protocol:
#   T=0: TD1 80 (T=0, TD2 follows), TD2 1F (T=15, TA3 follows), TA3 C7 (clock stop, classes A-C)
#   T=1: TD1 81 (T=1, TD2 follows), TD2 B1 (T=1, TA3 TB3 TD3 follow), TA3 FE (IFSC 254),
#        TB3 45 (BWI 4, CWI 5), TD3 1F (T=15, TA4 follows), TA4 C7
# historical: 80 31 E0 73 FE 21 13 67 "eUICC-V" (compact-TLV); TCK (T=15 is announced).
_HISTORICAL = bytes.fromhex("8031E073FE211367") + b"eUICC-V"
_INTERFACE = {"T0": "9F96801FC7", "T1": "9F9681B1FE451FC7"}


def _atr(protocol):
    body = bytes.fromhex(_INTERFACE[protocol]) + _HISTORICAL
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes((tck,))


class VirtualEuicc:
    """A virtual IoT eUICC: `transmit(apdu) -> response`, `atr`, `reset()`.

    pki_dir     folder with euicc.crt, euicc.key, eum.crt (ci.crt optional)
    state_path  JSON file for the committed state (None: memory only)
    ram_path    JSON file for what the card keeps while powered (the RSP session context
                and the challenge): kept across processes, deleted by reset() (None:
                memory only, a new object is a card after power-on)
    eid         32 digits; default: the eUICC certificate's serialNumber
    version     "1.2", "1.1" or "1.0" (v1.0: its ES10 forms - EuiccMemoryReset BF34,
                eUICC Package signatures without the associationToken, ... see
                docs/versions.md); None (default): the one kept in the state file,
                else "1.2". The version used is kept in the state file.
    protocol    "T0" or "T1": the ATR and the APDU exchange (euicc_apdu); None
                keeps the state file's, "T0" for a new card
    strict      refuse the APDU forms real eUICCs accept where the specifications leave
                room (euicc_apdu.LENIENCIES); default lenient, for other LPAs and IPAs
    """

    def __init__(self, pki_dir, state_path=None, eid=None, version=None, ram_path=None,
                 protocol=None, strict=False):
        state = EuiccState.load(state_path) if state_path and os.path.exists(state_path) else None
        version = version or (state.data.get("sgp32") if state else None) or "1.2"
        if version not in VERSIONS:
            raise ValueError("SGP.32 version must be one of %s, found %r"
                             % (", ".join(VERSIONS), version))
        self.version = version
        self.info = {"svn": codec.version_bytes(VERSIONS[version]["svn"]),
                     "iot": codec.version_bytes(VERSIONS[version]["iot"])}
        self.pki = pki.load_pki(pki_dir)
        missing = [n for n in ("euicc_cert", "euicc_key", "eum_cert") if n not in self.pki]
        if missing:
            raise FileNotFoundError(
                "%s: missing %s (create a test PKI with `ipa-sim pki create %s`)"
                % (pki_dir, ", ".join(m.replace("_cert", ".crt").replace("_key", ".key") for m in missing),
                   pki_dir))
        if pki.public_key_bytes(self.pki["euicc_cert"]) != pki.public_key_bytes(self.pki["euicc_key"]):
            raise ValueError("%s: euicc.key does not belong to euicc.crt" % pki_dir)
        self.euicc_cert_der = pki.certificate_der(self.pki["euicc_cert"])
        self.eum_cert_der = pki.certificate_der(self.pki["eum_cert"])
        ci = pki.ski(self.pki["ci_cert"]) if "ci_cert" in self.pki else pki.aki(self.pki["eum_cert"])
        if ci is None:
            raise ValueError("%s: no ci.crt and eum.crt has no authority key identifier" % pki_dir)
        self.ci_pkids = [ci]
        self.eid = eid or pki.eid_of(self.pki["euicc_cert"]) or pki.DEFAULT_EID
        if not (len(self.eid) == 32 and self.eid.isdigit()):
            raise ValueError("EID must be 32 digits, found %r" % (self.eid,))
        self.eid_bytes = bytes.fromhex(self.eid)
        self.state_path = state_path
        if state is not None:
            self.state = state
            if self.state.data["eid"] not in (None, self.eid):
                raise StateError("%s belongs to EID %s, not %s"
                                 % (state_path, self.state.data["eid"], self.eid))
        else:
            self.state = EuiccState()
        self.state.data["eid"] = self.eid
        self.state.data["sgp32"] = version
        protocol = protocol or self.state.data.get("protocol") or "T0"
        if protocol not in PROTOCOLS:
            raise ValueError("protocol must be one of %s, found %r" % (", ".join(PROTOCOLS), protocol))
        self.state.data["protocol"] = self.protocol = protocol
        self._saved = None
        self._save()
        self.atr = _atr(protocol)
        self.challenge = None
        self.download = None  # RSP session context (euicc_download): volatile
        self.ram_path = ram_path
        self._ram = None
        self._load_ram()
        self.last_error = None
        self._lock = threading.RLock()
        self.functions = dict(FUNCTIONS)
        if VERSIONS[version]["memory_reset"] == 0xBF34:
            self.functions[0xBF34] = ("ES10c.eUICCMemoryReset", es10.euicc_memory_reset)
        else:
            self.functions[0xBF64] = ("ES10c.eUICCMemoryReset", es10.euicc_memory_reset)
        self.strict = strict
        self.apdu = ApduLayer(self._process, fci=lambda: es10.select_proprietary_data(self),
                              protocol=protocol, strict=strict)

    # -- card interface ------------------------------------------------------------------

    def transmit(self, apdu):
        """One command APDU -> response data + SW1 SW2. Never raises on bad input."""
        with self._lock:
            try:
                return self.apdu.transmit(apdu)
            except Exception as e:  # last resort: a card answers, it does not throw
                self.last_error = "transmit: %r" % (e,)
                log.exception("APDU layer failed")
                return b"\x6f\x00"

    def reset(self):
        """Power cycle: logical channels closed, partial STORE DATA dropped. Returns the ATR."""
        with self._lock:
            self.apdu.reset()
            self.challenge = None
            self.download = None
            self._save_ram()
            return self.atr

    def sign(self, data):
        """ECDSA with the eUICC key, r||s (SK.EUICC.ECDSA)."""
        return pki.sign_raw(self.pki["euicc_key"], data)

    # -- ES10 dispatch --------------------------------------------------------------------

    def _process(self, request):
        if download.is_bpp_segment(self, request):
            # LoadBoundProfilePackage comes in pieces that are not whole TLVs (SGP.22 5.7.6)
            req = request
            name, fn = "ES10b.LoadBoundProfilePackage", download.load_bound_profile_package
        else:
            try:
                req = tlv.decode(request)
            except TlvError as e:
                log.info("malformed ES10 request: %s", e)
                raise SwError(0x6A80, str(e))
            entry = self.functions.get(req.tag)
            if entry is None:
                raise SwError(0x6A88, "no ES10 function with tag %X" % req.tag)
            name, fn = entry
        before = copy.deepcopy(self.state.data)
        try:
            response = fn(self, req)
        except TlvError as e:
            self.state.data = before
            self.last_error = "%s: %s" % (name, e)
            log.info("%s: malformed request: %s", name, e)
            raise SwError(0x6A80, str(e))
        except SwError:
            self.state.data = before
            raise
        except Exception as e:  # a bug in the simulator must not leave half a change behind
            self.state.data = before
            self.last_error = "%s: %r" % (name, e)
            log.exception("%s failed", name)
            raise SwError(0x6F00, repr(e))
        try:
            self._save()
        except OSError as e:  # not committed: the card answers as if nothing happened
            self.state.data = before
            self.last_error = "%s: state not saved: %s" % (name, e)
            log.error("%s: state not saved: %s", name, e)
            raise SwError(0x6581, str(e))  # memory failure
        self._save_ram()
        return response

    def _save(self):
        """Write the state when it changed since the last write (atomic)."""
        text = self.state.dumps()
        if text == self._saved:
            return
        if self.state_path:
            self.state.save(self.state_path, text)
        self._saved = text

    def _load_ram(self):
        if not self.ram_path or not os.path.exists(self.ram_path):
            return
        try:
            with open(self.ram_path) as f:
                ram = json.load(f)
            self.download = download.session_from_json(ram.get("download"))
            c = ram.get("challenge")
            self.challenge = bytes.fromhex(c) if c else None
        except (OSError, ValueError, KeyError, TypeError) as e:  # unreadable: as after power-up
            log.warning("%s: ignored (%s): the card starts without a session", self.ram_path, e)
            self.download = self.challenge = None

    def _save_ram(self):
        """Write the volatile part when it changed (ram_path only; nothing kept: no file)."""
        if not self.ram_path:
            return
        ram = {"download": download.session_to_json(self.download),
               "challenge": self.challenge.hex() if self.challenge else None}
        if ram == self._ram:
            return
        if ram["download"] is None and ram["challenge"] is None:
            if os.path.exists(self.ram_path):
                os.remove(self.ram_path)
        else:
            tmp = self.ram_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(ram, f)
            os.replace(tmp, self.ram_path)
        self._ram = ram

    # -- set-up helpers (not part of the card's interface) ------------------------------------

    def set_root_ds_address(self, address):
        """The root SM-DS address of ES10a.GetEuiccConfiguredAddresses (set at manufacture:
        SGP.22 gives no ES10 function to change it)."""
        if not isinstance(address, str) or not 0 < len(address.encode("utf-8")) <= 255:
            raise ValueError("root SM-DS address: expected 1..255 bytes of text, got %r"
                             % (address,))
        self.state.data["root_ds_address"] = address
        self._save()

    def load_profiles(self, path_or_list):
        """Replace the profiles with pre-loaded ones from a JSON file or a list of dicts.

        Each entry: {"iccid": "89...", "name": "...", "class": "operational|test|provisioning",
        "state": "enabled|disabled", "fallback": false, "emergency": false} and optionally
        "provider", "nickname", "fallback_allowed" (default true), "ppr" (["ppr1", "ppr2"]),
        "notification_address", "preloaded" (default true). StateError on bad input.
        """
        if isinstance(path_or_list, (str, os.PathLike)):
            with open(path_or_list, "r", encoding="utf-8") as f:
                entries = json.load(f)
        else:
            entries = path_or_list
        if not isinstance(entries, list):
            raise StateError("expected a list of profiles, found %s" % type(entries).__name__)
        with self._lock:
            before = copy.deepcopy(self.state.data)
            self.state.data["profiles"] = []
            try:
                for e in entries:
                    self.state.add_profile(e)
            except StateError:
                self.state.data = before
                raise
            self._save()
        return [p["iccid"] for p in self.state.profiles]

    def add_eim(self, eim_id, signing_key, fqdn=None, counter_value=0, association_token=False,
                protocols=("eimRetrieveHttps",), tls=None, indirect_download=True):
        """Configure an eIM directly (what AddInitialEim does, without APDUs) for benches and tests.

        signing_key: the eIM certificate or public key (eimPublicKeyData); tls: a
        certificate or key for trustedPublicKeyDataTls. association_token=True
        makes the eUICC generate one. Returns the token or None.
        """
        cfg = {"eim_id": eim_id, "fqdn": fqdn, "id_type": None, "counter": counter_value,
               "token": -1 if association_token else None,
               "public_key_data": codec.public_key_data_for(signing_key),
               "tls_data": codec.public_key_data_for(tls) if tls is not None else None,
               "protocols": tlv.bits_encode(list(protocols), codec.EIM_PROTOCOLS).hex(),
               "ci_pkid": None, "indirect": bool(indirect_download)}
        with self._lock:
            code = es10.check_eim_config(self, cfg, adding=True)
            if code:
                raise ValueError("eIM %r refused: AddEimResult %d" % (eim_id, code))
            token = es10.store_new_eim(self, cfg)
            self._save()
        return token

    def mark_installed(self, iccid):
        """Record `iccid` as just downloaded (the session context ImmediateEnable uses)."""
        with self._lock:
            if self.state.find_profile(iccid) is None:
                raise StateError("no profile %s" % iccid)
            self.state.data["last_installed"] = iccid
            self._save()

    def set_connectivity_parameters(self, http_params):
        """Set the httpParams GetConnectivityParameters answers (bytes, or None for none)."""
        with self._lock:
            self.state.data["http_params"] = http_params.hex() if http_params is not None else None
            self._save()


# ---- command line -----------------------------------------------------------------------


def add_sgp32_option(parser):
    """--sgp32 1.0|1.1|1.2 (--version kept as its old name); default: the state file's, else 1.2."""
    parser.add_argument("--sgp32", "--version", dest="sgp32", choices=sorted(VERSIONS),
                        help="SGP.32 version the card speaks (default: the one in the state "
                             "file, else 1.2; kept there)")


def _summary(card):
    d = card.state.data
    lines = ["EID %s  (SGP.32 v%s, %s, ATR %s)" % (card.eid, card.version, card.protocol.replace("T", "T="),
                                                   card.atr.hex().upper())]
    for p in d["profiles"]:
        flags = [f for f in ("fallback", "emergency") if p.get(f)]
        lines.append("profile %s %-8s %-12s %s%s" % (p["iccid"], p["state"], p["class"], p["name"],
                                                     " [" + ",".join(flags) + "]" if flags else ""))
    for e in d["eims"]:
        lines.append("eIM %s fqdn=%s counter=%s token=%s" % (e["eim_id"], e["fqdn"], e["counter"],
                                                              e["token"]))
    pending = ", ".join("%d:%s" % (n["seq"], n.get("event", n["kind"])) for n in d["notifications"])
    lines.append("pending: %s" % (pending or "none"))
    lines.append("default SM-DP+ %s, root SM-DS %s" % (d["default_dp_address"], d["root_ds_address"]))
    return "\n".join(lines)


def euicc_main(argv=None):
    """`ipa-sim euicc` - set up and inspect a virtual eUICC state file, send it APDUs.

    ipa-sim euicc init  --pki DIR --state FILE [--profiles JSON] [--eim-id ID --eim-fqdn FQDN]
    ipa-sim euicc show  --pki DIR --state FILE
    ipa-sim euicc apdu  --pki DIR --state FILE HEX... ('-' reads one APDU per line from stdin)
    ipa-sim euicc reset --home HOME   power-cycle the home eUICC of `ipa --card sim`
    ipa-sim euicc [serve] --vpcd HOST:PORT --pki DIR [--state FILE] [--protocol T0|T1] [--strict]
                                                                       (ipa_host.sim.euicc.vpcd)
    each takes --sgp32 1.0|1.1|1.2 (default: the state file's, else 1.2; kept in the state)
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and (argv[0] == "serve" or argv[0].startswith("--")) and argv[0] not in ("--help",):
        from ipa_host.sim.euicc.vpcd import vpcd_main  # the PC/SC bridge lives there

        return vpcd_main(argv[1:] if argv[0] == "serve" else argv)
    ap = argparse.ArgumentParser(prog="ipa-sim euicc", description="virtual SGP.32 IoT eUICC")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("serve", help="serve the card in a vpcd PC/SC reader (see serve --help)")
    r = sub.add_parser("reset", help="power-cycle the home eUICC of `ipa --card sim --home "
                       "HOME`: what it keeps while powered (an open download session) is lost")
    r.add_argument("--home", required=True, help="the ipa home folder")
    for name, text in (("init", "create or update a state file"), ("show", "print the state"),
                       ("apdu", "send APDUs and print the answers")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--pki", required=True, help="folder with euicc.crt/euicc.key/eum.crt/ci.crt")
        s.add_argument("--state", required=True, help="state file (JSON)")
        s.add_argument("--eid", help="EID (default: from euicc.crt)")
        add_sgp32_option(s)
        s.add_argument("--protocol", choices=PROTOCOLS,
                       help="transmission protocol and ATR (kept in the state; new card: T0)")
        if name == "init":
            s.add_argument("--create-pki", action="store_true", help="create the test PKI if missing")
            s.add_argument("--profiles", help="JSON file of pre-loaded profiles")
            s.add_argument("--eim-id", help="configure an eIM with eim.crt from the PKI folder")
            s.add_argument("--eim-fqdn", help="the eIM's FQDN")
            s.add_argument("--association-token", action="store_true",
                           help="let the eUICC generate an associationToken for the eIM")
            s.add_argument("--root-ds", metavar="ADDRESS",
                           help="the root SM-DS address (GetEuiccConfiguredAddresses)")
        if name == "apdu":
            s.add_argument("apdus", nargs="+", help="APDUs in hex, or - for stdin")
    args = ap.parse_args(argv)
    if args.cmd == "reset":
        from ipa_host.sim.home import open_home_euicc, sim_dir

        if not os.path.exists(os.path.join(sim_dir(args.home), "euicc.json")):
            print("ipa-sim euicc: no virtual eUICC under %s" % args.home, file=sys.stderr)
            return 2
        card = open_home_euicc(args.home)
        held = card.download
        card.reset()
        print("eUICC power-cycled%s" % (": download session %s lost" % held["txid"].hex().upper()
                                        if held else ""))
        return 0
    try:
        if args.cmd == "init" and args.create_pki:
            pki.create_test_pki(args.pki, **({"eid": args.eid} if args.eid else {}))
        card = VirtualEuicc(args.pki, state_path=args.state, eid=args.eid, version=args.sgp32,
                            protocol=args.protocol)
        if args.cmd == "init":
            if args.profiles:
                card.load_profiles(args.profiles)
            if args.root_ds:
                card.set_root_ds_address(args.root_ds)
            if args.eim_id:
                token = card.add_eim(args.eim_id, pki.load_certificate(os.path.join(args.pki, "eim.crt")),
                                     fqdn=args.eim_fqdn, association_token=args.association_token)
                if token is not None:
                    print("associationToken %d" % token)
            print(_summary(card))
        elif args.cmd == "show":
            print(_summary(card))
        else:
            lines = sys.stdin.read().split() if args.apdus == ["-"] else args.apdus
            for line in lines:
                try:
                    apdu = bytes.fromhex(line)
                except ValueError:
                    print("ipa-sim euicc: not hex: %r" % line, file=sys.stderr)
                    return 2
                print(card.transmit(apdu).hex().upper())
        return 0
    except (OSError, ValueError) as e:
        print("ipa-sim euicc: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(euicc_main())
