"""The built-in virtual eUICC of `ipa --card sim` and its demo eIM, under one home folder.

    HOME/sim/pki/        test PKI (CI, EUM, eUICC, eIM keys and certificates)
    HOME/sim/euicc.json  the virtual eUICC's state
    HOME/sim/euicc-ram.json  what it keeps while powered (an open download session);
                         `ipa-sim euicc reset --home HOME` power-cycles it
    HOME/eim/            the demo eIM server's folder (its TLS CA in tls/ca.crt)

On first use the eUICC gets three demo profiles and an eIM configuration for
the local demo eIM (`DEMO_EIM_ID` at `DEMO_EIM_FQDN`, signing key
pki/eim.crt, TLS trust anchor = the demo eIM's TLS CA), as a factory would
provision it. Later uses open the same state, so what a command changed is
still there the next time.
"""

import os

from cryptography import x509

from ipa_host.sim import pki
from ipa_host.sim.eim.eim_tls import ensure_tls
from ipa_host.sim.euicc.euicc import VirtualEuicc

DEMO_EIM_ID = "ipa-demo-eim"
DEMO_EIM_FQDN = "127.0.0.1:8443"
# The preloaded demo profiles name the demo eIM as their notification receiver (SGP.32 lets
# a profile's metadata do so): their notifications go to the eIM, those of profiles
# downloaded later to the SM-DP+ their metadata names.
DEMO_PROFILES = [
    {"iccid": "8944476500000000017", "name": "Demo Operator A", "class": "operational",
     "state": "enabled", "notification_address": DEMO_EIM_FQDN},
    {"iccid": "8944476500000000025", "name": "Demo Operator B", "class": "operational",
     "state": "disabled", "notification_address": DEMO_EIM_FQDN},
    {"iccid": "8944476500000000033", "name": "Demo Test Profile", "class": "test",
     "state": "disabled", "notification_address": DEMO_EIM_FQDN},
]


def sim_dir(home):
    return os.path.join(home, "sim")


def eim_dir(home):
    return os.path.join(home, "eim")


def ram_path(home):
    """The home eUICC's volatile memory: the IPA's processes come and go, the card stays
    powered (VirtualEuicc ram_path)."""
    return os.path.join(sim_dir(home), "euicc-ram.json")


def open_home_euicc(home, version=None, strict=False):
    """The VirtualEuicc kept under `home`, provisioned on first use.

    version: the SGP.32 version it speaks (None: the one kept in its state, else 1.2).
    strict: refuse what the card otherwise accepts as real eUICCs do (euicc_apdu.LENIENCIES);
    `ipa --card sim` opens it so, to hold this project's IPA to the letter.
    """
    folder = sim_dir(home)
    pki_dir = os.path.join(folder, "pki")
    state_path = os.path.join(folder, "euicc.json")
    if not os.path.exists(os.path.join(pki_dir, "euicc.crt")):
        os.makedirs(pki_dir, exist_ok=True)
        pki.create_test_pki(pki_dir)
    fresh = not os.path.exists(state_path)
    card = VirtualEuicc(pki_dir, state_path=state_path, ram_path=ram_path(home), version=version,
                        strict=strict)
    if fresh:
        card.load_profiles(DEMO_PROFILES)
        tls_ca = x509.load_der_x509_certificate(ensure_tls(eim_dir(home))["ca_der"])
        card.add_eim(DEMO_EIM_ID, pki.load_certificate(os.path.join(pki_dir, "eim.crt")),
                     fqdn=DEMO_EIM_FQDN, association_token=True, tls=tls_ca)
    return card
