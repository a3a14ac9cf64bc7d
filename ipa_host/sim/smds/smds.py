"""A simulated SGP.22 SM-DS for tests and demos: ES11 and ES12 JSON over HTTPS, real DSauth
signatures under the test CI.

    with SmdsServer("smds/", "pki/").start() as ds:       # pki/ holds the test CI (pki.py)
        ds.address        # "127.0.0.1:<port>": the eUICC's rootDsAddress, the smdsAddress
        ds.event_records(eid)
        ds.retrievals     # what each ES11.AuthenticateClient answered

    with SmdpServer("smdp/", "pki/", smds_address=ds.address).start() as dp:
        dp.add_profile("EV-1", iccid, "name", eid=eid)
        dp.register_event("EV-1")   # ES12.RegisterEvent over HTTPS; deleted after the download

Layers: smds_es11.py (the ES11 and ES12 functions, event records); the HTTPS front end,
the life cycle and the certificates are shared with the SM-DP+ simulator (smdpp.RspServer,
smdpp_http.Es9Handler, pki_smdp with the DS roles: dsauth.crt, dstls.crt, OID 2.999.20).

CLI (`ipa-sim smds`):

    smds serve --dir DIR --pki PKI [--host H] [--port P] [--fault bad-signature]
"""

import logging
import sys

from ipa_host.sim.smdpp import pki_smdp
from ipa_host.sim.smdpp.smdpp import RspServer, serve_parser, serve_until_signalled
from ipa_host.sim.smdpp.smdpp_http import Es9Handler
from ipa_host.sim.smds.smds_es11 import FAULTS, SmdsService

ES11_FUNCTIONS = ("initiateAuthentication", "authenticateClient")
ES12_FUNCTIONS = ("registerEvent", "deleteEvent")


class SmdsHandler(Es9Handler):
    server_version = "ipa-iot-smds-sim"
    PATHS = {"/gsma/rsp2/es11/": ES11_FUNCTIONS, "/gsma/rsp2/es12/": ES12_FUNCTIONS}
    PEER = "SM-DS"


class SmdsServer(RspServer):
    """The SM-DS simulator: folder for its certificates (DSauth, DS TLS), the CI from pki_dir."""

    HANDLER = SmdsHandler
    ROLES = pki_smdp.DS_NAMES
    NAME = "smds"

    def __init__(self, folder, pki_dir, host="127.0.0.1", port=0, tls_names=(), idle_timeout=30.0,
                 smds_oid=pki_smdp.DS_OID, fault=None):
        if fault is not None and fault not in FAULTS:
            raise ValueError("fault %r: expected one of %s" % (fault, ", ".join(FAULTS)))
        super().__init__(folder, pki_dir, host=host, port=port, tls_names=tls_names,
                         idle_timeout=idle_timeout, oid=smds_oid)
        self.fault = fault

    def _service(self):
        return SmdsService(self.material, self.address, fault=self.fault)

    def event_records(self, eid=None):
        """The events the SM-DS holds (for one EID), oldest first."""
        return self.service.event_records(eid) if self.service else []

    @property
    def retrievals(self):
        return list(self.service.retrievals) if self.service else []


def smds_main(argv=None):
    """`ipa-sim smds serve --dir DIR --pki PKI [--host H] [--port P] [--fault F]`."""
    ap, s = serve_parser("smds", "SM-DS", "ES11 and ES12", 8444)
    s.add_argument("--fault", choices=FAULTS, help="misbehave on purpose (tests): bad-signature")
    s.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        ds = SmdsServer(args.dir, args.pki, host=args.host, port=args.port, fault=args.fault).start()
    except (OSError, ValueError) as e:
        print("ipa-sim smds: %s" % e, file=sys.stderr)
        return 2
    print("SM-DS at %s  address %s  TLS trust anchor %s" % (ds.url, ds.address, ds.tls_ca_path), flush=True)
    serve_until_signalled(ds)
    return 0


if __name__ == "__main__":
    sys.exit(smds_main())
