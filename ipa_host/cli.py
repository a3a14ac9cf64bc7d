"""The `ipa` command: the IoT Profile Assistant for people and scripts.

Every subcommand talks to one eUICC chosen with --card (docs/cli.md):
`sim` (the built-in virtual eUICC, state under --home), `pcsc`,
`pcsc:<reader>`, `at:<port>?...`. Output is for people by default and a
single JSON document with --json. Exit codes: 0 ok, 1 the eUICC or a
server refused, 2 bad usage, 3 transport failure (reader, modem, network).
"""

import argparse
import json
import os
import sys

from ipa_core import apdu, es10
from ipa_core.errors import CardError, FunctionError, IpaError, TransportError

EXAMPLES = """\
examples:
  ipa info                         the built-in virtual eUICC (state in ~/.local/share/ipa-iot)
  ipa --card pcsc info             the eUICC in the only PC/SC reader with a card
  ipa --card 'pcsc:Gemalto' --json info
  ipa --trace info                 show every APDU on stderr

card selection (--card or $IPA_CARD):
  sim | pcsc | pcsc:<reader name or index>[?shared=1&protocol=T0|T1]
  at:/dev/ttyUSB2?baud=115200&mode=auto|cgla|csim
"""


def default_home():
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.environ.get("IPA_HOME") or os.path.join(base, "ipa-iot")


def build_parser():
    p = argparse.ArgumentParser(
        prog="ipa",
        description="IoT Profile Assistant (GSMA SGP.32 IPAd): manage the profiles of an IoT "
                    "eUICC on behalf of its eIM.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--card", default=os.environ.get("IPA_CARD", "sim"), metavar="SPEC",
                   help="which eUICC to use (default: %(default)s; see below)")
    p.add_argument("--home", default=default_home(), metavar="DIR",
                   help="state folder; also holds the virtual eUICC (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--trace", action="store_true", help="print every APDU to stderr")
    p.add_argument("--segment-size", type=int, default=None, metavar="N",
                   help="STORE DATA block size, 1..255 (default: the modem profile's, else %d)"
                        % apdu.SEGMENT_SIZE)
    p.add_argument("--sgp32", default="1.2", choices=("1.0", "1.1", "1.2"),
                   help="SGP.32 version the eUICC implements (default: %(default)s)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="EID, eUICC info, eIM configurations, profiles, pending notifications",
                   description="Read everything the IPA knows about the eUICC, changing nothing.")
    return p


def open_session(a):
    """The ISD-R session for the card the user chose (the caller closes it)."""
    from ipa_host.card.select import open_card, parse_card_spec

    kind, _target, opts = parse_card_spec(a.card)
    if kind == "sim" and "pki" not in opts:
        from ipa_host.sim.home import open_home_euicc

        card = open_home_euicc(a.home)
    else:
        card = open_card(a.card)
    trace = None
    if a.trace:
        def trace(direction, data):
            sys.stderr.write("%s %s\n" % (direction, bytes(data).hex().upper()))
    if kind == "at":
        # The modem may own the channel (CGLA): the card knows, and its
        # profile may lower the segment size for a fragile UART.
        from ipa_core.at_card import open_isdr_session

        kw = {"segment_size": a.segment_size} if a.segment_size else {}
        return open_isdr_session(card, trace=trace, version=a.sgp32, **kw)
    s = apdu.IsdrSession(card, segment_size=a.segment_size or apdu.SEGMENT_SIZE, trace=trace,
                         version=a.sgp32)
    s.open()
    return s


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


def _plain(x):
    """JSON-ready copy: bytes become upper-case hex."""
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).hex().upper()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items() if k != "raw"}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _version(v):
    if isinstance(v, (bytes, bytearray)) and len(v) == 3:
        return "%d.%d.%d" % tuple(v)
    return str(_plain(v))


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


def cmd_info(a, out):
    s = open_session(a)
    try:
        d = collect_info(s)
    finally:
        s.close()
    if a.json:
        json.dump(_plain(d), out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        print_info(d, out)
    return 0


COMMANDS = {"info": cmd_info}


def main(argv=None, out=None):
    if out is None:
        # `ipa info | head` must end quietly, like any Unix tool.
        import signal

        if hasattr(signal, "SIGPIPE"):
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        out = sys.stdout
    p = build_parser()
    a = p.parse_args(argv)
    if not a.command:
        p.print_help(out)
        return 0
    if a.segment_size is not None and not 1 <= a.segment_size <= 255:
        p.error("--segment-size %d outside 1..255" % a.segment_size)
    try:
        return COMMANDS[a.command](a, out)
    except ValueError as e:  # bad card spec and other usage errors
        sys.stderr.write("ipa: %s\n" % e)
        return 2
    except TransportError as e:
        sys.stderr.write("ipa: %s\n" % e)
        return 3
    except (CardError, FunctionError) as e:
        sys.stderr.write("ipa: %s\n" % e)
        return 1
    except IpaError as e:
        sys.stderr.write("ipa: %s\n" % e)
        return 1
