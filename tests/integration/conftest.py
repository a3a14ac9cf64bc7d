"""Fixtures for the end-to-end tests: the IPA's ES10 client against the virtual eUICC.

Two transports carry the same ISD-R session (ipa_core.apdu.IsdrSession):

- "inproc": the VirtualEuicc object itself is the card (transmit in-process);
- "pcsc":   the real PC/SC stack: VirtualEuicc -> VpcdBridge -> vpcd -> pcscd
            -> libpcsclite -> pyscard -> PcscCard.

The PC/SC path costs a card insertion (pcscd polls vpcd), so one bridge and
one PcscCard connection serve the whole module: a `CardSlot` sits in the
reader and each test puts its own fresh VirtualEuicc into the slot. A new
VirtualEuicc has only the basic channel, like a card after power-on, and
every test opens its own logical channel, so tests stay independent.
"""

import os
import sys

import pytest

from ipa_core.apdu import IsdrSession
from ipa_host.sim.vpcd import VpcdBridge

_HOST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "host")
if _HOST not in sys.path:
    sys.path.insert(0, _HOST)

from euicc_fixtures import make_euicc, reopen  # noqa: E402

TRANSPORTS = ("inproc", "pcsc")
INSERT_TIMEOUT = 5.0


class CardSlot:
    """The card pcscd sees: forwards every APDU to whichever VirtualEuicc is `target`."""

    def __init__(self, target):
        self.target = target
        self.atr = target.atr  # every VirtualEuicc has the same ATR

    def transmit(self, apdu):
        return self.target.transmit(apdu)

    def reset(self):
        self.target.reset()


@pytest.fixture(scope="module")
def pcsc_reader(pcscd_server, tmp_path_factory):
    """(slot, PcscCard): a CardSlot inserted in the vpcd reader and one exclusive connection."""
    from ipa_host.card.pcsc import PcscCard

    first = make_euicc(tmp_path_factory.mktemp("slot"))
    slot = CardSlot(first)
    bridge = VpcdBridge(slot, "127.0.0.1", pcscd_server.port).start(wait=INSERT_TIMEOUT)
    card = None
    try:
        pcscd_server.wait_card(True, timeout=INSERT_TIMEOUT)
        card = PcscCard(pcscd_server.reader)
        yield slot, card
    finally:
        if card is not None:
            card.close()
        bridge.stop()
        pcscd_server.wait_card(False, timeout=INSERT_TIMEOUT)


class Rig:
    """One virtual eUICC, the card the IPA reaches it through, and an open ISD-R session.

    rig.euicc    the VirtualEuicc (to inspect its committed state, never to drive it)
    rig.card     what IsdrSession transmits to (the VirtualEuicc or a PcscCard)
    rig.s        the open IsdrSession every es10 function takes
    """

    def __init__(self, euicc, card, transport, slot=None):
        self.euicc = euicc
        self.card = card
        self.transport = transport
        self.slot = slot
        self.s = IsdrSession(card, version=euicc.version).open()

    def power_cycle(self):
        """Rebuild the eUICC from its state file (a process restart) and open a new session."""
        self.s.close()
        self.euicc = reopen(self.euicc)
        if self.slot is not None:
            self.slot.target = self.euicc
        else:
            self.card = self.euicc
        self.s = IsdrSession(self.card, version=self.euicc.version).open()
        return self

    def close(self):
        if self.s.is_open:
            self.s.close()


@pytest.fixture(params=TRANSPORTS)
def transport(request):
    return request.param


@pytest.fixture
def make_rig(request, transport, tmp_path):
    """make_rig(**make_euicc_kwargs) -> Rig on this test's transport (fresh card per call)."""
    rigs = []
    counter = [0]

    def make(**kw):
        counter[0] += 1
        euicc = make_euicc(tmp_path / ("card%d" % counter[0]), **kw)
        if transport == "pcsc":
            slot, card = request.getfixturevalue("pcsc_reader")
            slot.target = euicc
            rig = Rig(euicc, card, transport, slot)
        else:
            rig = Rig(euicc, euicc, transport)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


@pytest.fixture
def rig(make_rig):
    """The default card: 4 profiles, eIM test-eim with associationToken 1, counter 0."""
    return make_rig()
