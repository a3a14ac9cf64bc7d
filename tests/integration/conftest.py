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
from ipa_host.sim.euicc.vpcd import VpcdBridge

_HOST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "host")
if _HOST not in sys.path:
    sys.path.insert(0, _HOST)

from euicc_fixtures import make_euicc, reopen  # noqa: E402
from ipa_util import IPA  # noqa: E402 - tests/integration/ipa_util.py

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


# ---- the `ipa` command against the simulated eIM (test_ipa_faults.py, test_ipa_modem.py) ----

NET_TIMEOUT = 1  # [eim] timeout: every network wait 1 s, one whole request 4 s at most


class IpaHome:
    """A provisioned `ipa` home (the virtual eUICC, the demo eIM's folder and TLS identity),
    the eIM serving it, and the `ipa` command run on it as a user runs it (a subprocess).

    home.path / eid / pki_dir    the home folder, the eUICC's EID, its test PKI
    home.tls                     the eIM's TLS files (ipa_host.sim.eim.eim_tls.ensure_tls): the
                                 eUICC's trustedPublicKeyDataTls is their CA
    home.server                  the running EimServer (start_eim / stop_eim)
    home.ipa(*args, url=...)     `ipa --config <timeout 1 s> --home <path> --eim-url <url> ...`
    home.profiles() / pending()  the eUICC's committed state, read from its state file
    home.job()                   the IPA's unfinished procedure (ipa-state.json), or None
    """

    def __init__(self, path):
        from ipa_host.sim.eim.eim_tls import ensure_tls
        from ipa_host.sim.home import eim_dir, open_home_euicc, sim_dir

        self.path = str(path)
        self.eid = open_home_euicc(self.path).eid
        self.pki_dir = os.path.join(sim_dir(self.path), "pki")
        self.eim_dir = eim_dir(self.path)
        self.tls = ensure_tls(self.eim_dir)
        self.config = os.path.join(self.path, "ipa.toml")
        with open(self.config, "w") as f:
            f.write("[eim]\ntimeout = %d\n" % NET_TIMEOUT)
        self.server = None
        self._hostile = []

    def start_eim(self, port=0):
        from ipa_host.sim.eim.eim import EimServer

        self.server = EimServer(self.eim_dir, pki_dir=self.pki_dir, association_token=1,
                                port=port).start()
        return self.server

    def stop_eim(self):
        if self.server is not None:
            self.server.stop()

    def hostile(self, faults, upstream=True):
        """A HostileEim (tests/host/hostile_eim.py) with the eIM's own TLS identity."""
        from hostile_eim import HostileEim

        bad = HostileEim(self.tls["server_cert"], self.tls["server_key"],
                         upstream=self.server if upstream else None, faults=faults).start()
        self._hostile.append(bad)
        return bad

    def command(self, *args, url=None, card=None):
        cmd = [IPA, "--config", self.config, "--home", self.path]
        if card is not None:
            cmd += ["--card", card]
        if url is not False:
            cmd += ["--eim-url", url or self.server.url]
        return cmd + list(args)

    def ipa(self, *args, url=None, card=None, env=None, timeout=60):
        """Run `ipa`; the CompletedProcess gets `.elapsed` (seconds)."""
        import subprocess
        import time

        full_env = dict(os.environ, **(env or {}))
        t0 = time.monotonic()
        r = subprocess.run(self.command(*args, url=url, card=card), capture_output=True,
                           text=True, timeout=timeout, env=full_env)
        r.elapsed = time.monotonic() - t0
        return r

    def euicc_state(self):
        from ipa_host.sim.euicc.euicc_state import EuiccState
        from ipa_host.sim.home import sim_dir

        return EuiccState.load(os.path.join(sim_dir(self.path), "euicc.json")).data

    def profiles(self):
        return {p["iccid"]: p["state"] for p in self.euicc_state()["profiles"]}

    def pending(self):
        """What the eUICC keeps for the eIM: [(seq, kind)], kind "notification" or "result"."""
        return [(n["seq"], n["kind"]) for n in self.euicc_state()["notifications"]]

    def ipa_state(self):
        import json

        try:
            with open(os.path.join(self.path, "ipa-state.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def job(self):
        return self.ipa_state().get("ipa.job")

    def close(self):
        for bad in self._hostile:
            bad.stop()
        self.stop_eim()


@pytest.fixture
def make_ipa_home(tmp_path):
    """make_ipa_home(name="home") -> a new IpaHome under tmp_path with its eIM running;
    all closed (eIMs stopped) at the end of the test."""
    homes = []

    def make(name="home"):
        home = IpaHome(tmp_path / name)
        homes.append(home)
        home.start_eim()
        return home

    yield make
    for home in homes:
        home.close()


@pytest.fixture
def ipa_home(make_ipa_home):
    """An IpaHome with its eIM running."""
    return make_ipa_home()


@pytest.fixture
def modem_rig(ipa_home):
    """(home, card, make_modem): an IpaHome with its eIM running, its virtual eUICC, and
    make_modem(personality="textbook", **options) -> a started SimModem (ipa_host.sim.modem.modem,
    a pty) holding that eUICC; every modem made is stopped at the end of the test."""
    from ipa_host.sim.home import open_home_euicc
    from ipa_host.sim.modem.modem import SimModem

    card = open_home_euicc(ipa_home.path)
    made = []

    def make(personality="textbook", **options):
        m = SimModem(card, personality, **options).start()
        made.append(m)
        return m

    yield ipa_home, card, make
    for m in made:
        m.stop()

