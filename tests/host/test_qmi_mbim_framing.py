"""QMUX/QMI and MBIM framing (ipa_host.card.qmux, mbim_frame) and the qmi:/mbim: card
selection: what a modem or a user can send wrong ends in a clear error, never a crash; and
a modem that never answers ends in a timeout within the bound (the simulated modems)."""

import struct

import pytest

from ipa_core.errors import ProtocolError
from ipa_host.card import mbim_frame as mf
from ipa_host.card import qmux
from ipa_host.card.select import CardSpecError, parse_card_spec


def test_qmux_round_trip_ctl_and_uim():
    f = qmux.encode(qmux.SVC_CTL, 0, 7, qmux.CTL_ALLOCATE_CID, [(0x01, b"\x0b")])
    assert f[:6] == bytes((1, len(f) - 1, 0, 0, 0, 0))  # I/F type, length, flags, CTL, cid 0
    m = qmux.decode(f)
    assert (m.service, m.tid, m.msg_id, m.kind, m.tlvs) == (0, 7, 0x22, "request", {1: b"\x0b"})
    f = qmux.encode(qmux.SVC_UIM, 3, 0x1234, qmux.UIM_SEND_APDU,
                    [(0x02, qmux.result_tlv(0)[3:]), (0x10, b"\x02\x00\x90\x00")], "response")
    m = qmux.decode(f)
    assert (m.service, m.client, m.tid, m.kind) == (11, 3, 0x1234, "response")
    assert m.result() == (0, 0) and m.tlvs[0x10] == b"\x02\x00\x90\x00"


@pytest.mark.parametrize("frame,words", [
    (b"\x02\x0b\x00", "expected 01"),
    (bytes.fromhex("010b00000b0100010000"), "does not match its length"),
    # TLV header claims 5 bytes, 1 follows
    (bytes.fromhex("0110000000000100220004000105000b"), "does not match its length"),
    (bytes.fromhex("010f0000000001002200040001050b00"), "runs past the message"),
])
def test_qmux_malformed_frames(frame, words):
    with pytest.raises(ProtocolError, match=words):
        qmux.decode(frame)


def test_qmi_message_without_result():
    m = qmux.decode(qmux.encode(qmux.SVC_UIM, 1, 1, 0x2F, [], "response"))
    with pytest.raises(ProtocolError, match="without a result TLV"):
        m.result()


def test_mbim_fragments_and_reassembly():
    info = bytes(range(256)) * 3
    frags = mf.command_done(9, mf.UUID_MS_UICC, mf.CID_UICC_APDU, 0, info, max_transfer=64)
    assert len(frags) > 10 and all(len(f) <= 64 for f in frags)
    assert {struct.unpack_from("<III", f)[2] for f in frags} == {9}
    r = mf.Reassembly()
    got = [r.feed(f) for f in frags]
    assert got[:-1] == [None] * (len(frags) - 1)
    t, tid, payload = got[-1]
    assert (t, tid) == (mf.COMMAND_DONE, 9)
    assert mf.parse_command(payload, True) == (mf.UUID_MS_UICC, mf.CID_UICC_APDU, 0, info)


def test_mbim_fragment_out_of_sequence():
    frags = mf.command(5, mf.UUID_MS_UICC, 4, mf.SET, b"x" * 200, max_transfer=64)
    r = mf.Reassembly()
    r.feed(frags[0])
    with pytest.raises(ProtocolError, match="out of sequence"):
        r.feed(frags[2])


def test_mbim_bad_lengths():
    with pytest.raises(ProtocolError, match="out of range"):
        mf.frame_length(struct.pack("<III", 3, 4, 1))
    with pytest.raises(ProtocolError, match="cut short"):
        mf.parse_command(b"\0" * 20, True)
    with pytest.raises(ProtocolError, match="runs past"):
        mf.ref(b"abc", 2, 5)
    payload = mf.UUID_MS_UICC + struct.pack("<III", 4, 0, 10) + b"short"
    with pytest.raises(ProtocolError, match="announces 10 bytes"):
        mf.parse_command(payload, True)


def test_card_specs():
    assert parse_card_spec("qmi:/dev/cdc-wdm0") == ("qmi", "/dev/cdc-wdm0",
                                                   {"proxy": "qmi-proxy", "slot": 1})
    assert parse_card_spec("qmi:/dev/cdc-wdm0?slot=2&proxy=0") == (
        "qmi", "/dev/cdc-wdm0", {"proxy": None, "slot": 2})
    assert parse_card_spec("mbim:/dev/cdc-wdm1?proxy=my-proxy") == (
        "mbim", "/dev/cdc-wdm1", {"proxy": "my-proxy"})
    for bad, words in (("qmi:", "needs the modem's control device"),
                       ("qmi:/dev/cdc-wdm0?slot=9", "slot='9'"),
                       ("mbim:/dev/cdc-wdm0?slot=1", "unknown option 'slot'"),
                       ("mbim:/dev/x?proxy=a/b", "neither 1/0 nor a proxy socket name")):
        with pytest.raises(CardSpecError, match=words):
            parse_card_spec(bad)


@pytest.mark.parametrize("protocol", ["qmi", "mbim"])
def test_a_silent_modem_times_out_within_the_bound(tmp_path, protocol):
    """A modem that swallows UIM/UICC requests: the open fails after command_timeout, no hang."""
    import time

    from ipa_core.errors import TimeoutError_
    from ipa_host.card.mbim import MbimCard
    from ipa_host.card.qmi import QmiCard
    from ipa_host.sim import pki
    from ipa_host.sim.euicc.euicc import VirtualEuicc
    from ipa_host.sim.modem.modem_mbim import SimMbimModem
    from ipa_host.sim.modem.modem_qmi import SimQmiModem

    pki.create_test_pki(str(tmp_path))
    card = VirtualEuicc(str(tmp_path))
    modem = {"qmi": SimQmiModem, "mbim": SimMbimModem}[protocol]
    cls = {"qmi": QmiCard, "mbim": MbimCard}[protocol]
    with modem(card, "silent") as m:
        c = cls(m.path, proxy=None, command_timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError_, match="no progress waiting for an answer"):
            c.open()
        assert time.monotonic() - t0 < 5  # the open and the clean-up messages, each bounded
        assert c.link is None  # the node was closed again
