"""The virtual eUICC behind the real PC/SC stack in both transmission protocols, used by
two clients that share no code: the IPA (`ipa --card pcsc:...`, a subprocess) and a minimal
client written from ISO/IEC 7816-3/-4 and SGP.22 only (tests/host/iso7816_client.py).

    VirtualEuicc(protocol=T0|T1) -> Recorder -> VpcdBridge -> vpcd -> pcscd -> pyscard -> client

T=0: every command that carries data is answered 61xx without data, GET RESPONSE fetches
the data, a wrong Le gets 6Cxx. T=1: data come with the answer. The Recorder shows what
the card itself saw: pcsc-lite 1.9.9 and vpcd pass APDUs through unchanged in both
directions (no GET RESPONSE of their own in T=0, Le not stripped). Last, `ipa-sim euicc
--vpcd --protocol` run as a user runs it keeps its protocol in the state file.
"""

import os
import signal
import subprocess
import sys

import pytest

from euicc_fixtures import make_euicc
from ipa_host.sim.euicc.euicc import VirtualEuicc
from ipa_host.sim.euicc.vpcd import VpcdBridge
from ipa_host.sim.home import DEMO_PROFILES, sim_dir
from iso7816_client import ClientError, Iso7816Client, parse_atr
import cli_contract

INSERT_TIMEOUT = 5.0
GET_EID = bytes.fromhex("BF3E035C015A")
GET_CERTS = bytes.fromhex("BF5600")  # more than 512 bytes: chained 61xx
PROFILE_B = DEMO_PROFILES[1]["iccid"]


class Recorder:
    """The card as pcscd reaches it, keeping every (command, response) the card exchanged."""

    def __init__(self, card, atr=None):
        self.card = card
        self.atr = atr or card.atr
        self.seen = []

    def transmit(self, apdu):
        resp = self.card.transmit(apdu)
        self.seen.append((bytes(apdu), bytes(resp)))
        return resp

    def reset(self):
        self.card.reset()

    def case4_answers(self):
        """Answers to commands that carried data (Lc > 0): SELECT, STORE DATA."""
        return [r for c, r in self.seen if len(c) > 5 and c[1] != 0xC0]


@pytest.fixture
def insert(pcscd_server):
    """insert(card) -> Recorder of `card`, in the vpcd reader until the test ends."""
    bridges = []

    def put(card, atr=None):
        rec = Recorder(card, atr)
        bridges.append(VpcdBridge(rec, "127.0.0.1", pcscd_server.port).start(wait=INSERT_TIMEOUT))
        pcscd_server.wait_card(True, timeout=INSERT_TIMEOUT)
        return rec

    yield put
    for b in bridges:
        b.stop()
        pcscd_server.wait_card(False, timeout=INSERT_TIMEOUT)


def _eid(answer):
    assert answer[:3] == bytes.fromhex("BF3E12") and answer[3:5] == b"\x5a\x10", answer.hex()
    return answer[5:21].hex().upper()


# ---- the independent client ----------------------------------------------------------------


def test_t0_client_that_only_accepts_61xx(pcscd_server, insert, tmp_path):
    card = make_euicc(tmp_path)  # a new card speaks T=0
    rec = insert(card)
    with Iso7816Client(pcscd_server.reader, "T0") as c:
        assert parse_atr(c.atr)["protocols"] == [0, 15] and c.atr == card.atr
        assert _eid(c.es10(GET_EID)) == card.eid
        certs = c.es10(GET_CERTS, block=2)  # 2-byte blocks: P1 11 then 91, P2 counting
        assert card.euicc_cert_der[4:] in certs and len(certs) > 512
    # Every SELECT and STORE DATA (last block) was answered 61xx with no data, and the
    # card saw each GET RESPONSE the client sent: pcscd did none of its own.
    answers = rec.case4_answers()
    assert answers and all(len(r) == 2 and r[0] in (0x61, 0x90) for r in answers), answers
    assert sum(1 for r in answers if r[0] == 0x61) == 4  # 2 SELECTs, 2 final STORE DATAs
    assert [x[0] for x in rec.seen] == [x[0] for x in c.log]
    assert [x[1] for x in rec.seen] == [x[1] for x in c.log]
    # The client sent case 4 the T=0 way (no Le) and the card got exactly that.
    select = [cmd for cmd, _ in rec.seen if cmd[1] == 0xA4][0]
    assert len(select) == 5 + 16


def test_t0_wrong_le_is_answered_6cxx_and_corrected(pcscd_server, insert, tmp_path):
    card = make_euicc(tmp_path)
    rec = insert(card)
    with Iso7816Client(pcscd_server.reader, "T0", naive_get_response=True) as c:
        assert c.open_channel(le=256) == 1  # P3 00: 6C01, then P3 01
        assert c.log[0] == (bytes.fromhex("0070000000"), bytes.fromhex("6C01"))
        assert c.log[1] == (bytes.fromhex("0070000001"), bytes.fromhex("019000"))
        c.select_isdr(1)
        assert _eid(c.store_data(1, GET_EID)) == card.eid
        c.close_channel(1)
    # GET RESPONSE asked 256 bytes, the card named the exact rest: 6C23, then 23 bytes.
    gr = [(cmd.hex().upper(), r[-2:].hex().upper()) for cmd, r in rec.seen if cmd[1] == 0xC0]
    assert ("01C0000000", "6C15") in gr and ("01C0000015", "9000") in gr
    assert ("01C0000000", "6C23") in gr and ("01C0000023", "9000") in gr  # the FCI


def test_t1_client_gets_data_in_the_answer(pcscd_server, insert, tmp_path):
    card = make_euicc(tmp_path, protocol="T1")
    rec = insert(card)
    with Iso7816Client(pcscd_server.reader, "T1") as c:
        atr = parse_atr(c.atr)
        assert atr["protocols"] == [1, 1, 15] and atr["tck"] and atr["historical"].endswith(b"eUICC-V")
        assert _eid(c.es10(GET_EID)) == card.eid
        certs = c.es10(GET_CERTS)
        assert card.euicc_cert_der[4:] in certs
    answers = rec.case4_answers()
    assert any(r[-2:] == b"\x90\x00" and len(r) > 2 for r in answers)  # SELECT, GetEID
    assert any(len(r) == 258 and r[-2] == 0x61 for r in answers)  # GetCerts: 256 + 61xx
    with pytest.raises(ClientError, match="reader chose|connect"):
        Iso7816Client(pcscd_server.reader, "T0")  # the ATR offers no T=0


def test_t0_client_refuses_a_card_that_answers_case4_directly(pcscd_server, insert, tmp_path):
    """What the simulator did before: a T=0 ATR and T=1 answers. The strict client stops at
    the first SELECT, as an IPA written for real T=0 cards does."""
    t1 = make_euicc(tmp_path, protocol="T1")
    insert(t1, atr=VirtualEuicc(t1.pki["folder"]).atr)  # a T=0 ATR (a card in memory only)
    with Iso7816Client(pcscd_server.reader, "T0") as c:
        assert parse_atr(c.atr)["protocols"] == [0, 15]
        with pytest.raises(ClientError, match="answered 01A40400 with 35 data bytes and SW 9000"):
            c.es10(GET_EID)


# ---- the IPA: `ipa --card pcsc:... info` and a poll ------------------------------------------


@pytest.mark.parametrize("protocol", ["T0", "T1"])
def test_ipa_info_and_poll_over_pcsc(pcscd_server, insert, ipa_home, protocol):
    home = ipa_home
    card = VirtualEuicc(home.pki_dir, state_path=os.path.join(sim_dir(home.path), "euicc.json"),
                        protocol=protocol, strict=True)  # this IPA gets no leniency
    rec = insert(card)
    spec = "pcsc:" + pcscd_server.reader
    r = home.ipa("--json", "info", url=False, card=spec)
    assert r.returncode == 0, r.stderr
    d = cli_contract.result(r.stdout, "info")
    assert d["eid"] == card.eid == home.eid
    assert [p["iccid"] for p in d["profiles"]] == [p["iccid"] for p in DEMO_PROFILES]
    home.server.queue_psmo(home.eid, [{"op": "enable", "iccid": PROFILE_B}])
    r = home.ipa("--json", "poll", card=spec)
    assert r.returncode == 0, r.stderr
    poll = cli_contract.result(r.stdout, "poll")
    assert poll["package"] == "euiccPackageRequest" and poll["delivered"], poll
    assert poll["result"]["operations"] == [["enableResult", 0, "ok"]]
    epr = home.server.results(home.eid)[0]["euiccPackageResult"]
    assert epr["signatureValid"] is True and [x["name"] for x in epr["results"]] == ["enableResult"]
    assert card.state.enabled_profile()["iccid"] == PROFILE_B
    # The IPA sends SELECT with Le 00; pcscd and vpcd hand it over as it is, in T=0 too.
    selects = [c for c, _ in rec.seen if c[1] == 0xA4]
    assert selects and all(len(c) == 5 + 16 + 1 and c[-1] == 0 for c in selects)
    answers = rec.case4_answers()
    if protocol == "T0":  # the IPA followed 61xx for every answer that had data
        assert all(len(x) == 2 for x in answers)
        assert sum(1 for x in answers if x[0] == 0x61) >= 4
    else:
        assert sum(1 for x in answers if len(x) > 2) >= 4


# ---- `ipa-sim euicc --vpcd ... --protocol` as a user runs it ----------------------------------


def _serve(pcscd_server, pki_dir, state, *options):
    """`ipa-sim euicc --vpcd ...` in a subprocess, until the card is in the reader."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "ipa-sim"), "euicc", "--vpcd",
           "127.0.0.1:%d" % pcscd_server.port, "--pki", pki_dir, "--state", state] + list(options)
    # Ctrl-C must reach it as a user's would: a test run started in the background (CI, `&`)
    # hands its children SIGINT ignored, and Python keeps it so.
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    banner = ""
    for _ in range(3):  # "creating a test PKI in ..." comes first on a new folder
        banner = p.stderr.readline()
        if "serving vpcd" in banner:
            break
    pcscd_server.wait_card(True, timeout=INSERT_TIMEOUT)
    return p, banner


def _stop(pcscd_server, p):
    p.send_signal(signal.SIGINT)  # Ctrl-C, as its banner says
    try:
        code = p.wait(30)  # bounded; generous on a loaded machine
    except subprocess.TimeoutExpired:
        p.kill()  # never leave a card in the reader for the tests that follow
        p.wait(10)
        raise AssertionError("ipa-sim euicc --vpcd did not stop within 30 s of Ctrl-C")
    assert code == 0, p.stderr.read()
    pcscd_server.wait_card(False, timeout=INSERT_TIMEOUT)


def test_ipa_sim_euicc_vpcd_protocol_is_kept_in_the_state(pcscd_server, tmp_path):
    pki_dir, state = str(tmp_path / "pki"), str(tmp_path / "euicc.json")
    p, banner = _serve(pcscd_server, pki_dir, state, "--protocol", "T1")
    try:
        assert "T=1" in banner, banner
        with Iso7816Client(pcscd_server.reader, "T1") as c:
            assert parse_atr(c.atr)["protocols"] == [1, 1, 15]
            eid = _eid(c.es10(GET_EID))
    finally:
        _stop(pcscd_server, p)
    # Served again without --protocol: still T=1, from the state file.
    p, banner = _serve(pcscd_server, pki_dir, state)
    try:
        assert "T=1" in banner, banner
        with Iso7816Client(pcscd_server.reader, "T1") as c:
            assert _eid(c.es10(GET_EID)) == eid
    finally:
        _stop(pcscd_server, p)
    p, banner = _serve(pcscd_server, pki_dir, state, "--protocol", "T0")
    try:
        assert "T=0" in banner, banner
        with Iso7816Client(pcscd_server.reader, "T0") as c:
            assert parse_atr(c.atr)["protocols"] == [0, 15]
            assert _eid(c.es10(GET_EID)) == eid
    finally:
        _stop(pcscd_server, p)


def test_lpac_style_client_on_a_lenient_and_a_strict_card(pcscd_server, tmp_path):
    """GET RESPONSE as 80|ch C0 and MANAGE CHANNEL close with Le, as lpac sends them: the
    card served as a bench takes them (docs/sim-euicc.md, lenient); with --strict it
    refuses them as ISO/IEC 7816-4 reads, and still serves a client that keeps to it."""
    pki_dir, state = str(tmp_path / "pki"), str(tmp_path / "euicc.json")
    for protocol in ("T0", "T1"):
        p, banner = _serve(pcscd_server, pki_dir, state, "--protocol", protocol)
        try:
            assert "strict" not in banner, banner
            with Iso7816Client(pcscd_server.reader, protocol, lpac_style=True) as c:
                eid = _eid(c.es10(GET_EID))
                assert len(c.es10(GET_CERTS)) > 512  # 61xx, then GET RESPONSEs in class 80
            gr = [(cmd, r) for cmd, r in c.log if cmd[1] == 0xC0]
            assert gr and all(cmd[0] & 0x80 and r[-2] in (0x61, 0x90) for cmd, r in gr), gr
            closes = [(cmd, r) for cmd, r in c.log if cmd[:3] == bytes.fromhex("007080")]
            assert closes and all(len(cmd) == 5 and r == b"\x90\x00" for cmd, r in closes)
        finally:
            _stop(pcscd_server, p)
    p, banner = _serve(pcscd_server, pki_dir, state, "--protocol", "T0", "--strict")
    try:
        assert "T=0, strict" in banner, banner
        with Iso7816Client(pcscd_server.reader, "T0") as c:
            assert _eid(c.es10(GET_EID)) == eid  # by the book: served
        with Iso7816Client(pcscd_server.reader, "T0", lpac_style=True) as c:
            ch = c.open_channel()
            with pytest.raises(ClientError, match="SELECT ISD-R:  6E00"):
                c.select_isdr(ch)  # 61xx, then GET RESPONSE 80|ch: class not supported
            c.close_channel(ch)  # P3 00: how T=0 carries a case-1 command, taken
    finally:
        _stop(pcscd_server, p)
    p, banner = _serve(pcscd_server, pki_dir, state, "--protocol", "T1", "--strict")
    try:
        assert "T=1, strict" in banner, banner
        with Iso7816Client(pcscd_server.reader, "T1", lpac_style=True) as c:
            ch = c.open_channel()
            c.select_isdr(ch)
            assert _eid(c.store_data(ch, GET_EID)) == eid
            with pytest.raises(ClientError, match="MANAGE CHANNEL close %d: 6700" % ch):
                c.close_channel(ch)  # case 1 sent with an Le byte
    finally:
        _stop(pcscd_server, p)
