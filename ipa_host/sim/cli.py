"""`ipa-sim`: run the simulators (virtual eUICC, PKI tool, eIM-side signer).

    ipa-sim pki create DIR            test CI -> EUM -> eUICC chain and an eIM key
    ipa-sim euicc [--vpcd HOST:PORT]  a virtual IoT eUICC (behind vpcd for PC/SC)
    ipa-sim sign ...                  build and sign an EuiccPackageRequest
    ipa-sim modem --personality P     a simulated (quirky) modem on a pty
    ipa-sim eim serve --dir DIR       the simulated eIM (ESipa over HTTPS); also
    ipa-sim eim psmo|eco|results ...  its operator commands
    ipa-sim smdpp serve --dir DIR     the simulated SM-DP+ (ES9+ over HTTPS, real binding)
    ipa-sim smds serve --dir DIR      the simulated SM-DS (ES11 and ES12 over HTTPS)
"""
import sys

COMMANDS = {
    "pki": ("ipa_host.sim.pki", "pki_main", "create or inspect a test PKI"),
    "euicc": ("ipa_host.sim.euicc.euicc", "euicc_main", "run a virtual IoT eUICC"),
    "sign": ("ipa_host.sim.eim.signer", "signer_main", "build and sign an EuiccPackageRequest"),
    "modem": ("ipa_host.sim.modem.modem", "modem_main", "run a simulated modem on a pty"),
    "eim": ("ipa_host.sim.eim.eim", "eim_main", "run or operate the simulated eIM"),
    "smdpp": ("ipa_host.sim.smdpp.smdpp", "smdpp_main", "run the simulated SM-DP+ (ES9+ over HTTPS)"),
    "smds": ("ipa_host.sim.smds.smds", "smds_main", "run the simulated SM-DS (ES11/ES12 over HTTPS)"),
}


def usage(out):
    out.write(__doc__.strip().split("\n\n", 1)[1] + "\n\n")
    out.write("Run `ipa-sim COMMAND --help` for the options of each command; "
              "`ipa-sim --version` for the version.\n")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        usage(sys.stdout)
        return 0
    cmd = argv[0]
    if cmd == "--version":
        from ipa_host.version import version

        sys.stdout.write("ipa-sim %s\n" % version())
        return 0
    if cmd not in COMMANDS:
        sys.stderr.write("ipa-sim: unknown command %r (choose from %s)\n"
                         % (cmd, ", ".join(sorted(COMMANDS))))
        return 2
    module, func, _ = COMMANDS[cmd]
    mod = __import__(module, fromlist=[func])
    return getattr(mod, func)(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
