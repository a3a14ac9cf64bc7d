"""The built-in virtual eUICC of `ipa --card sim`: a test PKI, a state file, a demo eIM.

On first use the folder gets a fresh test PKI (`pki/`), a state file
(`euicc.json`) with three demo profiles, and an eIM configuration for the
local demo eIM (`DEMO_EIM_ID` at `DEMO_EIM_FQDN`, its key from pki/eim.crt),
as a factory would provision it. Later uses open the same state, so what a
command changed is still there the next time.
"""

import os

from ipa_host.sim import pki
from ipa_host.sim.euicc import VirtualEuicc

DEMO_EIM_ID = "ipa-demo-eim"
DEMO_EIM_FQDN = "127.0.0.1:8443"
DEMO_PROFILES = [
    {"iccid": "8944476500000000017", "name": "Demo Operator A", "class": "operational",
     "state": "enabled"},
    {"iccid": "8944476500000000025", "name": "Demo Operator B", "class": "operational",
     "state": "disabled"},
    {"iccid": "8944476500000000033", "name": "Demo Test Profile", "class": "test",
     "state": "disabled"},
]


def open_home_euicc(folder):
    """The VirtualEuicc kept in `folder`, provisioned on first use."""
    pki_dir = os.path.join(folder, "pki")
    state_path = os.path.join(folder, "euicc.json")
    if not os.path.exists(os.path.join(pki_dir, "euicc.crt")):
        os.makedirs(pki_dir, exist_ok=True)
        pki.create_test_pki(pki_dir)
    fresh = not os.path.exists(state_path)
    card = VirtualEuicc(pki_dir, state_path=state_path)
    if fresh:
        card.load_profiles(DEMO_PROFILES)
        card.add_eim(DEMO_EIM_ID, pki.load_certificate(os.path.join(pki_dir, "eim.crt")),
                     fqdn=DEMO_EIM_FQDN, association_token=True)
    return card
