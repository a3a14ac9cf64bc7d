"""The remaining ESipa flows over CoAP/DTLS (SGP.32 eimRetrieveCoaps), end to end like
test_ipa_coaps.py: the `ipa` command as a user runs it (a subprocess), the virtual eUICC of
its home, the simulated eIM's CoAPS endpoint (real DTLS 1.2, python-mbedtls on both sides).

- rollback: an enable with rollbackFlag, then the eIM is gone after handing out the package
  (a loopback UDP relay that closes: ICMP port unreachable, as when the new profile has no
  route to the eIM): the IPA rolls back (ES10b.ProfileRollback) and, once the eIM is back,
  delivers the rollback's signed EuiccPackageResult and tells of the state change. SGP.32 has
  no eIM command for a rollback: the IPA triggers it when the eIM is unreachable after the
  switch (as test_ipa_faults.py does over HTTPS);
- eIM Configuration Operations: addEim of a second eIM that speaks CoAPS only, which the IPA
  then reaches from the eUICC's eIM Configuration Data alone (no --eim-url: the protocol from
  eimSupportedProtocol, the trust from trustedPublicKeyDataTls) and which updates, then
  deletes, the first eIM.

The eIMs verify every eUICC signature with their own code (ipa_host.sim.eim.eim).
"""

import json
import os
import select
import socket
import subprocess
import threading

import pytest

pytest.importorskip("mbedtls")

from ipa_host.sim import pki  # noqa: E402
from ipa_host.sim.eim.eim import EimServer  # noqa: E402
from ipa_host.sim.home import DEMO_EIM_ID, DEMO_PROFILES, eim_dir, open_home_euicc, sim_dir  # noqa: E402,E501
from ipa_util import IPA  # tests/integration/ipa_util.py
import cli_contract  # tests/host/cli_contract.py: the --json contract, schema-checked

PROFILE_A, PROFILE_B = DEMO_PROFILES[0]["iccid"], DEMO_PROFILES[1]["iccid"]
ENABLED, DISABLED = "enabled", "disabled"  # ProfileState names, as `ipa --json info` gives them
NO_NOTIFY = "8000"  # notifyStateChange [0] NULL in a GetEimPackageRequest
UNDEFINED_CAUSE = "81017F"  # stateChangeCause [1] undefined(127)


class Home:
    """A provisioned home (virtual eUICC, the demo eIM with a CoAPS listener) and `ipa` on it,
    with every network wait bounded to 2 s (ipa.toml)."""

    def __init__(self, tmp_path):
        self.path = str(tmp_path / "home")
        self.eid = open_home_euicc(self.path).eid
        self.pki_dir = os.path.join(sim_dir(self.path), "pki")
        self.config = str(tmp_path / "ipa.toml")
        with open(self.config, "w") as f:
            f.write("[eim]\ntimeout = 2\n")
        self.eim = EimServer(eim_dir(self.path), pki_dir=self.pki_dir, association_token=1,
                             coap_port=0).start()

    def ipa(self, *args, url=None, timeout=60):
        cmd = [IPA, "--config", self.config, "--home", self.path]
        if url is not False:
            cmd += ["--eim-url", url or self.eim.coap_url]
        return subprocess.run(cmd + list(args), capture_output=True, text=True,
                              timeout=timeout)

    def info(self):
        r = self.ipa("--json", "info", url=False)
        assert r.returncode == 0, r.stderr
        return cli_contract.result(r.stdout)

    def profiles(self):
        return {p["iccid"]: p["profileState"] for p in self.info()["profiles"]}

    def eims(self):
        r = self.ipa("--json", "eim", "list", url=False)
        assert r.returncode == 0, r.stderr
        return {e["eimId"]: e for e in cli_contract.result(r.stdout)}

    def euicc_state(self):
        """The virtual eUICC's committed state (its state file)."""
        from ipa_host.sim.euicc.euicc_state import EuiccState

        return EuiccState.load(os.path.join(sim_dir(self.path), "euicc.json")).data

    def ipa_state(self):
        try:
            with open(os.path.join(self.path, "ipa-state.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path)
    try:
        yield h
    finally:
        h.eim.stop()


def signed_result(eim, eid, index=-1):
    """An EuiccPackageResult the eIM got, checked to carry a valid eUICC signature."""
    epr = eim.results(eid)[index]["euiccPackageResult"]
    assert epr["signatureValid"] is True and epr["eimIdMatches"] is True, epr
    return epr


# ---- rollback --------------------------------------------------------------------------------


class VanishingRelay:
    """Loopback UDP relay in front of the eIM's CoAPS port that is gone once the eIM has
    handed out a package: the first datagram from the client after the eIM recorded a
    getEimPackage is dropped and the relay's socket closed, so every later datagram meets
    ICMP port unreachable (the IPA's DTLS then fails at once, with no timeout to wait for)."""

    def __init__(self, eim):
        self.eim = eim
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.connect(("127.0.0.1", eim.coap_port))
        self.client = None
        self.forwarded = {"up": 0, "down": 0}
        self.gone = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vanishing-relay", daemon=True)
        self._thread.start()

    @property
    def url(self):
        return "coaps://127.0.0.1:%d" % self.port

    def _handed_out(self):
        return any(q["function"] == "getEimPackage" for q in self.eim.requests)

    def _run(self):
        while not self._stop.is_set():
            r, _w, _x = select.select([self.sock, self.up], [], [], 0.05)
            for s in r:
                if s is self.sock:
                    data, self.client = self.sock.recvfrom(65536)
                    if self._handed_out():  # the eIM is gone from here on
                        self.sock.close()
                        self.up.close()
                        self.gone.set()
                        return
                    self.up.send(data)
                    self.forwarded["up"] += 1
                elif self.client is not None:
                    self.sock.sendto(self.up.recv(65536), self.client)
                    self.forwarded["down"] += 1

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        if not self.gone.is_set():
            self.sock.close()
            self.up.close()


def test_rollback_over_coaps_when_the_eim_vanishes_after_the_enable(home):
    eid, eim = home.eid, home.eim
    eim.queue_psmo(eid, [{"op": "enable", "iccid": PROFILE_B, "rollback": True}])
    relay = VanishingRelay(eim)
    try:
        r = home.ipa("poll", url=relay.url)
    finally:
        relay.stop()
    assert relay.gone.is_set() and relay.forwarded["down"] > 0
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "result         seqNumber" in r.stdout and "(rollback)" in r.stdout, r.stdout
    assert "rollbackResult               ok" in r.stdout, r.stdout
    assert ("DTLS to 127.0.0.1:%d: port unreachable (no CoAPS server there)" % relay.port
            in r.stdout), r.stdout
    assert "eIM unreachable after the profile switch: rolling back" in r.stderr, r.stderr
    # The package came over CoAPS; nothing else reached the eIM.
    assert [(q["binding"], q["function"]) for q in eim.requests] == [("coaps", "getEimPackage")]
    assert eim.results(eid) == []
    # The eUICC is back on the old profile; the rollback's result waits for the eIM.
    assert home.profiles()[PROFILE_A] == ENABLED and home.profiles()[PROFILE_B] == DISABLED
    job = home.ipa_state()["ipa.job"]
    assert job["step"] == "deliver" and job["rolledBack"], job
    # `ipa info`: the notifications of both switches wait; the eUICC also keeps the
    # rollback's result for the eIM
    switches = [(n["iccid"], n["profileManagementOperation"])
                for n in home.info()["notifications"]]
    assert switches == [(PROFILE_A, ["notificationDisable"]), (PROFILE_B, ["notificationEnable"]),
                        (PROFILE_B, ["notificationDisable"]), (PROFILE_A, ["notificationEnable"])]
    assert "result" in [n["kind"] for n in home.euicc_state()["notifications"]]

    # The eIM is reachable again (directly): the rollback's result, then a poll telling of
    # the change; every message over CoAPS.
    r = home.ipa("--json", "poll")
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = cli_contract.result(r.stdout)
    assert out["resumed"] == {"kind": "euiccPackageRequest", "step": "deliver"}, out
    assert out["delivered"] and out["rolledBack"], out
    assert out["result"]["operations"] == [["rollbackResult", 0, "ok"]], out
    assert len(eim.results(eid)) == 1
    epr = signed_result(eim, eid)
    assert epr["eimId"] == DEMO_EIM_ID
    assert [(x["name"], x["value"]) for x in epr["results"]] == [("rollbackResult", 0)]
    new = eim.requests[1:]
    assert [(q["binding"], q["function"]) for q in new] == [
        ("coaps", "provideEimPackageResult"), ("coaps", "getEimPackage")]
    assert new[1]["request"].hex().upper().endswith("5A10" + eid + NO_NOTIFY + UNDEFINED_CAUSE)
    changes = eim.eid_view(eid, None)["stateChanges"]
    assert [(c["notifyStateChange"], c["stateChangeCauseName"]) for c in changes] == \
        [(True, "undefined")]
    assert "ipa.job" not in home.ipa_state() and "ipa.stateChange" not in home.ipa_state()
    # the four notifications went with the result, signed, and left the eUICC
    notes = eim.notifications(eid)
    assert len(notes) == 4 and all(n["signatureValid"] is True for n in notes), notes
    assert home.info()["notifications"] == [] and home.euicc_state()["notifications"] == []
    assert home.profiles()[PROFILE_A] == ENABLED


# ---- eIM Configuration Operations ------------------------------------------------------------


def test_eco_add_a_coaps_eim_which_then_updates_and_deletes_the_first(home, tmp_path):
    eid, first = home.eid, home.eim
    # The second eIM: same signing key (the test PKI's eim.key), its own TLS CA and eimId,
    # CoAPS; the eUICC will generate associationToken 2 for it (the demo eIM has 1).
    second = EimServer(str(tmp_path / "coaps-eim"), pki_dir=home.pki_dir, eim_id="coaps-eim",
                       association_token=2, coap_port=0).start()
    try:
        assert second.tls_ca_cert_der != first.tls_ca_cert_der
        eim_cert = pki.load_certificate(os.path.join(home.pki_dir, "eim.crt"))
        fqdn = "127.0.0.1:%d" % second.coap_port

        # 1. addEim + listEim from the first eIM, over CoAPS
        first.queue_eco(eid, [{"op": "addEim", "eimId": "coaps-eim", "eimFqdn": fqdn,
                               "counterValue": 0, "associationToken": -1,
                               "eimSupportedProtocol": ["eimRetrieveCoaps"],
                               "eimPublicKey": pki.public_key_bytes(eim_cert),
                               "trustedPublicKeyTls": second.tls_ca_cert_der},
                              {"op": "listEim"}])
        r = home.ipa("poll")
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "addEimResult                 ok" in r.stdout, r.stdout
        assert "listEimResult                ok" in r.stdout, r.stdout
        epr = signed_result(first, eid)
        add, lst = epr["results"]
        assert (add["name"], add["associationToken"]) == ("addEimResult", 2), add
        assert lst["name"] == "listEimResult" and b"coaps-eim" in bytes.fromhex(lst["der"])
        assert {q["binding"] for q in first.requests} == {"coaps"}
        eims = home.eims()
        assert list(eims) == [DEMO_EIM_ID, "coaps-eim"]  # in the eUICC's order
        new = eims["coaps-eim"]
        assert (new["eimFqdn"], new["associationToken"]) == (fqdn, 2)
        assert new["eimSupportedProtocol"] == ["eimRetrieveCoaps"]
        assert "trustedCertificateTls" in new["trustedPublicKeyDataTls"]

        # 2. The new eIM, reached from the eUICC's configuration alone (CoAPS from
        # eimSupportedProtocol, its TLS CA from trustedPublicKeyDataTls): updateEim
        second.queue_eco(eid, [{"op": "updateEim", "eimId": DEMO_EIM_ID,
                                "eimFqdn": "retired-eim.example.net"}])
        r = home.ipa("--eim-id", "coaps-eim", "--json", "poll", url=False)
        assert r.returncode == 0, (r.stdout, r.stderr)
        out = cli_contract.result(r.stdout)
        assert out["eim"] == {"eimId": "coaps-eim", "url": "coaps://" + fqdn}, out
        assert out["result"]["operations"] == [["updateEimResult", 0, "ok"]], out
        epr = signed_result(second, eid)
        assert epr["eimId"] == "coaps-eim" and epr["counterValue"] == 1
        assert [(x["name"], x["value"]) for x in epr["results"]] == [("updateEimResult", 0)]
        eims = home.eims()
        assert eims[DEMO_EIM_ID]["eimFqdn"] == "retired-eim.example.net"
        assert eims[DEMO_EIM_ID]["associationToken"] == 1  # updateEim keeps the token

        # 3. deleteEim of the first eIM: the new one is left, and a plain `ipa poll` (no eIM
        # named at all) now reaches it over CoAPS
        second.queue_eco(eid, [{"op": "deleteEim", "eimId": DEMO_EIM_ID}])
        r = home.ipa("--eim-id", "coaps-eim", "poll", url=False)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "deleteEimResult              ok" in r.stdout, r.stdout
        epr = signed_result(second, eid)
        assert [(x["name"], x["value"]) for x in epr["results"]] == [("deleteEimResult", 0)]
        assert list(home.eims()) == ["coaps-eim"]
        r = home.ipa("poll", url=False)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "no package (noEimPackageAvailable)" in r.stdout, r.stdout
        assert {q["binding"] for q in second.requests} == {"coaps"}
        assert [q["function"] for q in second.requests].count("getEimPackage") == 3
        assert second.queue(eid) == [] and len(second.results(eid)) == 2
        assert len(first.results(eid)) == 1  # nothing more went to the deleted eIM
    finally:
        second.stop()
