"""boards/common/ipa_board.py: the configuration file and an Ipa built from a board's parts.

A board stand-in gives a session on the fake eUICC and a network on the fake
eIM of tests/core. What a user would check: a bad configuration is refused
with the key and the file named; the eIM comes from the configuration or
from the eUICC's eIM Configuration Data, with the eUICC's TLS certificate as
trust anchor (a public-key pin needs a CA file); start-up retries until the
modem and the network are there; a reopen swaps session and network in the
same Ipa (its back-off counters survive).
Plain functions with assert: pytest on CPython, tools/mp_test.py on MicroPython.
"""

import ipa_board
from ipa_core import tlv
from ipa_core.errors import IpaError, TransportError
from ipa_core.ipa import MemoryStore

import fake_eim as fe
from boards_util import Clock, boards_root, load_board, scratch, write
from fake_euicc import EIM_FQDN, EUM_CERT, FakeEuicc
from socket_net import pem_to_der

DEFAULTS = dict(ipa_board.DEFAULTS, apn=None, modem_baud=115200)


def _config(text):
    d = scratch()
    write(d + "/ipa_config.json", text.encode())
    return d + "/ipa_config.json"


def test_config_file_overrides_defaults():
    path = _config('{"eim_url": "https://eim.example.com", "poll_interval_s": 30.5, '
                   '"apn": "iot", "debug": true}')
    cfg = ipa_board.load_config(path, DEFAULTS)
    assert cfg["eim_url"] == "https://eim.example.com" and cfg["poll_interval_s"] == 30.5
    assert cfg["apn"] == "iot" and cfg["debug"] is True
    assert cfg["max_interval_s"] == 3600 and cfg["modem_baud"] == 115200


def test_missing_config_file_means_defaults():
    lines = []
    cfg = ipa_board.load_config(scratch() + "/none.json", DEFAULTS, log=lines.append)
    assert cfg == DEFAULTS and "not found" in lines[0]


def test_bad_config_is_refused_naming_key_and_file():
    for text, words in (('{"eim_ulr": "x"}', "unknown setting 'eim_ulr'"),
                        ('{"poll_interval_s": "60"}', "poll_interval_s is '60'"),
                        ('{"debug": 1}', "debug is 1"),
                        ('{"modem_baud": true}', "modem_baud is True"),
                        ("[1]", "expected a JSON object"),
                        ('{"eim_url": ', "not valid JSON"),
                        ('{"apn": "' + "a" * 5000 + '"}', "over 4096 bytes")):
        path = _config(text)
        try:
            ipa_board.load_config(path, DEFAULTS)
        except ipa_board.ConfigError as e:
            assert words in str(e) and "ipa_config.json" in str(e), (text[:40], str(e))
        else:
            raise AssertionError("%r accepted" % text[:40])


def test_config_cut_short_is_refused_on_every_micropython():
    # A copy to the board interrupted: before 1.26 MicroPython's json.loads took '{"a": ' as {}.
    with open(boards_root() + "/quecpython_ec200u/ipa_config.json", "rb") as f:
        text = f.read().decode().rstrip()
    defaults = load_board("quecpython_ec200u").CONFIG_DEFAULTS
    assert ipa_board.load_config(_config(text), defaults)["card_api"] == "auto"
    for n in range(1, len(text)):
        path = _config(text[:n])
        try:
            ipa_board.load_config(path, defaults)
        except ipa_board.ConfigError as e:
            assert "not valid JSON" in str(e), (text[:n], str(e))
        else:
            raise AssertionError("%r accepted" % text[:n])


def test_read_file_is_bounded_and_whole_across_chunks():
    d = scratch()
    data = bytes(range(256)) * 5 + b"tail"  # over READ_CHUNK: several reads
    write(d + "/ca.pem", data)
    assert ipa_board.read_file(d + "/ca.pem") == data
    assert ipa_board.read_file(d + "/ca.pem", limit=len(data)) == data
    try:
        ipa_board.read_file(d + "/ca.pem", limit=len(data) - 1)
    except ipa_board.ConfigError as e:
        assert "ca.pem is over %d bytes" % (len(data) - 1) in str(e), str(e)
    else:
        raise AssertionError("a file over its limit was accepted")


def test_pem_of_a_der_certificate_round_trips():
    der = bytes(range(256)) * 2
    pem = ipa_board.der_to_pem(der)
    lines = pem.split(b"\n")
    assert lines[0] == b"-----BEGIN CERTIFICATE-----" and lines[-2] == b"-----END CERTIFICATE-----"
    assert max(len(x) for x in lines) == 64
    assert pem_to_der(pem) == der


class FakeBoard:
    """The Board interface over the fake eUICC and eIM; start() fails `start_failures` times."""

    def __init__(self, card, eim, start_failures=0, network_failures=0):
        self.card = card
        self.eim = eim
        self.start_failures = start_failures
        self.network_failures = network_failures
        self.started = 0
        self.sessions = 0
        self.networks = []
        self.recovered = []
        self.connectivity = None
        self.closed = False

    def start(self):
        if self.start_failures:
            self.start_failures -= 1
            raise TransportError("modem did not answer AT")
        self.started += 1
        return self

    def open_session(self):
        self.sessions += 1
        return self.card.session()

    def open_network(self, url, trust_pem=None):
        if self.network_failures:
            self.network_failures -= 1
            raise TransportError("not registered")
        self.networks.append((url, trust_pem))
        return self.eim

    def recover(self, error=None):
        self.recovered.append(error)

    def close(self):
        self.closed = True


def test_eim_from_the_configuration_with_a_ca_file():
    card, eim = FakeEuicc(), fe.FakeEim("asn1")
    d = scratch()
    write(d + "/ca.pem", b"-----BEGIN CERTIFICATE-----\nMAMCAQc=\n-----END CERTIFICATE-----\n")
    cfg = dict(DEFAULTS, eim_url="https://lab-eim:8443", ca_file=d + "/ca.pem")
    b = FakeBoard(card, eim)
    ipa = ipa_board.BoardIpa(b, MemoryStore(), cfg, log=lambda s: None).open()
    assert b.networks == [("https://lab-eim:8443", b"-----BEGIN CERTIFICATE-----\nMAMCAQc=\n"
                           b"-----END CERTIFICATE-----\n")]
    assert ipa.network is eim and ipa.download_handler is not None
    assert ipa.poll_once()["idle"]
    # A reopen (the modem was restarted) installs the CA again, read from the file: the heap
    # does not keep it in between, and a CA replaced on flash is the one used.
    write(d + "/ca.pem", b"-----BEGIN CERTIFICATE-----\nMAMCAQg=\n-----END CERTIFICATE-----\n")
    bi = ipa_board.BoardIpa(b, MemoryStore(), cfg, log=lambda s: None)
    bi.open()
    assert bi.trust is None
    bi.reopen(TransportError("modem restarted"))
    assert b.networks[-1] == ("https://lab-eim:8443", b"-----BEGIN CERTIFICATE-----\nMAMCAQg=\n"
                              b"-----END CERTIFICATE-----\n")


def test_eim_from_the_euicc_needs_a_ca_file_when_pinned_by_key():
    card, eim = FakeEuicc(), fe.FakeEim("asn1")  # its eIM entry pins a TLS public key
    b = FakeBoard(card, eim)
    try:
        ipa_board.BoardIpa(b, MemoryStore(), dict(DEFAULTS), log=lambda s: None).open()
    except IpaError as e:
        assert "public key" in str(e) and "ca_file" in str(e)
    else:
        raise AssertionError("no trust anchor, and no complaint")
    assert b.networks == []


def test_eim_from_the_euicc_with_its_tls_certificate():
    card, eim = FakeEuicc(), fe.FakeEim("asn1")
    # eIM Configuration Data with trustedCertificateTls [1] instead of a key.
    card.eim_config_extra = [tlv.enc(
        0x30, tlv.encode(0x80, b"eim1"), tlv.encode(0x81, EIM_FQDN.encode()),
        tlv.encode(0x83, b"\x00"), tlv.encode(0x84, b"\x07"),
        tlv.encode(0xA6, tlv.encode(0xA1, EUM_CERT)), tlv.encode(0x87, b"\x07\x80"))]
    b = FakeBoard(card, eim)
    bi = ipa_board.BoardIpa(b, MemoryStore(), dict(DEFAULTS), log=lambda s: None)
    bi.open()
    url, pem = b.networks[0]
    assert url == "https://" + EIM_FQDN
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert tlv.decode(pem_to_der(pem)).value == EUM_CERT  # the eUICC's bytes, as PEM


def test_start_retries_until_modem_and_network_are_there():
    card, eim = FakeEuicc(), fe.FakeEim("asn1")
    b = FakeBoard(card, eim, start_failures=2, network_failures=1)
    cfg = dict(DEFAULTS, eim_url="http://eim")
    lines = []
    clock = Clock()
    feeds = []
    bi = ipa_board.BoardIpa(b, MemoryStore(), cfg, log=lines.append)
    ipa = bi.start(clock.sleep_ms, lambda: feeds.append(clock.t), delays_s=(5, 15))
    assert ipa is bi.ipa and b.started == 1
    assert sum(clock.sleeps) == (5 + 15 + 15) * 1000  # the last delay repeats
    assert max(clock.sleeps) <= 1000 and len(feeds) > 35
    assert len(b.recovered) == 1  # once the modem was up, a failure asks the board to recover
    assert "try 1 failed (TransportError: modem did not answer AT)" in lines[0], lines
    assert "try 3 failed (TransportError: not registered)" in lines[2], lines


def test_start_gives_up_when_told_to():
    b = FakeBoard(FakeEuicc(), fe.FakeEim("asn1"), start_failures=5)
    clock = Clock()
    try:
        ipa_board.BoardIpa(b, MemoryStore(), dict(DEFAULTS), log=lambda s: None).start(
            clock.sleep_ms, lambda: None, max_tries=2)
    except TransportError:
        pass
    else:
        raise AssertionError("start() ignored max_tries")


def test_reopen_swaps_session_and_network_in_the_same_ipa():
    card, eim = FakeEuicc(), fe.FakeEim("asn1")
    b = FakeBoard(card, eim)
    bi = ipa_board.BoardIpa(b, MemoryStore(), dict(DEFAULTS, eim_url="http://eim"),
                            log=lambda s: None)
    ipa = bi.open()
    ipa.error_count = 3  # the loop's back-off state
    old = ipa.session
    err = TransportError("modem restarted")
    bi.reopen(err)
    assert bi.ipa is ipa and ipa.error_count == 3
    assert ipa.session is not old and b.sessions == 2 and len(b.networks) == 2
    assert b.recovered == [err]
    bi.close()
    assert b.closed


def test_gc_threshold_is_set_where_the_port_has_one():
    import gc

    f = getattr(gc, "threshold", None)  # MicroPython; CPython has none: a no-op there
    old = f() if f is not None else None
    try:
        ipa_board.set_gc_threshold(4096)
        if f is not None:
            assert f() == 4096
        ipa_board.set_gc_threshold(0)  # 0: the port's default is left alone
        if f is not None:
            assert f() == 4096
    finally:
        if f is not None:
            f(old)
    assert ipa_board.DEFAULTS["gc_threshold"] == 4096
