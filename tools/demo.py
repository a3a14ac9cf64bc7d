#!/usr/bin/env python3
"""`make demo`: the IPA's main job on loopback, told step by step.

Starts the virtual IoT eUICC and the simulated eIM (ESipa over HTTPS with its
own TLS CA, which the eUICC holds as trustedPublicKeyDataTls), queues an
enable PSMO for a pre-loaded profile, an ipaEuiccDataRequest and an eCO
(addEim), then runs the IPA poll cycles until the eIM's queue is empty and
shows what each side saw. Everything lives in a fresh folder (default
.demo/), nothing leaves 127.0.0.1.

    python3 tools/demo.py [--home DIR] [--port 8443] [--binding asn1|json]
"""

import argparse
import io
import os
import shutil
import socket
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ipa_host import cli, runner  # noqa: E402
from ipa_host.sim import pki  # noqa: E402
from ipa_host.sim.eim.eim import EimServer  # noqa: E402
from ipa_host.sim.home import (DEMO_EIM_FQDN, DEMO_EIM_ID, DEMO_PROFILES, eim_dir,  # noqa: E402
                               open_home_euicc, sim_dir)

MAX_CYCLES = 10


def say(text=""):
    print(text, flush=True)


def step(n, text):
    say()
    say("== %d. %s" % (n, text))


def port_free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def show_info(st):
    out = io.StringIO()
    s = runner.open_session(st)
    try:
        cli.print_info(cli.collect_info(s), out)
    finally:
        s.close()
    for line in out.getvalue().splitlines():
        say("   " + line)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", default=os.path.join(ROOT, ".demo"), help="demo folder (recreated)")
    ap.add_argument("--port", type=int, default=8443, help="eIM port (the eUICC's eimFqdn)")
    ap.add_argument("--binding", choices=("asn1", "json"), default="asn1")
    ap.add_argument("--sgp32", choices=("1.0", "1.1", "1.2"), default="1.2",
                    help="SGP.32 version of the eUICC, the eIM and the IPA (docs/versions.md)")
    a = ap.parse_args(argv)

    shutil.rmtree(a.home, ignore_errors=True)
    step(1, "A virtual IoT eUICC, provisioned as a factory would (folder %s)" % a.home)
    card = open_home_euicc(a.home, version=a.sgp32)
    eid = card.eid
    say("   it speaks SGP.32 v%s, and so do the eIM and the IPA below" % a.sgp32)
    st = runner.Settings(card="sim", home=a.home, binding=a.binding, sgp32=a.sgp32)
    show_info(st)

    step(2, "The eIM %s starts on loopback" % DEMO_EIM_ID)
    port = a.port if a.port and port_free(a.port) else 0
    server = EimServer(eim_dir(a.home), pki_dir=os.path.join(sim_dir(a.home), "pki"),
                       port=port, api_port=None, association_token=1, version=a.sgp32).start()
    try:
        if server.url != "https://" + DEMO_EIM_FQDN:
            # The eUICC's eIM address names the default port; use the one we got.
            st.eim_url = server.url
            say("   port %d is busy or not chosen: the IPA is pointed at %s instead of %s"
                % (a.port, server.url, DEMO_EIM_FQDN))
        say("   ESipa at %s (TLS certificate from its own CA; the eUICC trusts that CA)"
            % server.url)
        return run_story(st, server, eid)
    finally:
        server.stop()


def run_story(st, server, eid):
    step(3, "The eIM operator queues three eIM packages for EID %s" % eid)
    target = DEMO_PROFILES[1]
    server.queue_psmo(eid, [{"op": "enable", "iccid": target["iccid"], "rollback": True}])
    say("   a. euiccPackageRequest: enable %s (%s), with rollbackFlag"
        % (target["iccid"], target["name"]))
    server.queue_data_request(eid, ["BF22", "84", "A8"])
    say("   b. ipaEuiccDataRequest: EUICCInfo2 (BF22), associationToken (84), "
        "IPA capabilities (A8)")
    eim_cert = pki.load_certificate(os.path.join(sim_dir(st.home), "pki", "eim.crt"))
    server.queue_eco(eid, [{"op": "addEim", "eimId": "backup-eim",
                            "eimFqdn": "backup-eim.example.net", "counterValue": 0,
                            "eimSupportedProtocol": ["eimRetrieveHttps"],
                            "eimPublicKey": pki.public_key_bytes(eim_cert)}])
    say("   c. euiccPackageRequest with an eCO: addEim backup-eim")

    step(4, "The IPA polls the eIM until the queue is empty (same steps as `ipa poll`)")
    cycles = 0
    failed = False
    while cycles < MAX_CYCLES:
        cycles += 1
        with runner.IpaHost(st) as h:
            r = h.ipa.poll_once()
        say("-- cycle %d" % cycles)
        out = io.StringIO()
        cli.print_poll(r, out)
        for line in out.getvalue().splitlines():
            say("   " + line)
        if r.get("error"):
            failed = True
            break
        if r.get("idle"):
            break

    step(5, "What the eIM received (signatures checked with the eUICC certificate)")
    for res in server.results(eid):
        epr = res.get("euiccPackageResult")
        if epr:
            ops = ", ".join("%s=%s" % (x.get("name"), x.get("value")) for x in epr["results"])
            say("   %-22s seqNumber %s: %s; eUICC signature %s" % (
                res["kind"], epr.get("seqNumber"), ops,
                "valid" if epr.get("signatureValid") else "INVALID"))
        else:
            say("   %-22s %s" % (res["kind"], res.get("response", "")))
    say("   notifications: %d (all signatures %s)" % (
        len(server.notifications(eid)),
        "valid" if all(n.get("signatureValid", True) for n in server.notifications(eid))
        else "NOT all valid"))

    step(6, "The eUICC afterwards (`ipa info`)")
    show_info(st)
    left = server.queue(eid)
    say()
    if failed or left:
        say("demo FAILED: %s" % ("a cycle failed" if failed else "%d package(s) left" % len(left)))
        return 1
    say("demo done: %d poll cycles, queue empty. Try it yourself:" % cycles)
    say("   .venv/bin/ipa --home %s%s info" % (st.home, "" if st.sgp32 == "1.2"
                                               else " --sgp32 " + st.sgp32))
    say("   .venv/bin/ipa-sim --help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
