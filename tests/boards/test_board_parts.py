"""The SIMCom boards' board.py: the ESP32-S3 power rail (AXP2101) and both boards' PWRKEY.

machine is a stand-in recording pin levels and I2C register writes, the
modem is scripted (tests/core/fakestream). What a user would check: the
modem rail is set to 3.0 V and switched with the documented register bits
without touching the PMU's other rails; a cold start power-cycles the modem,
a watchdog restart does not; PWRKEY is pulsed high for the modem's on-time
only when the modem is silent; pins come from the one table at the top.
Plain functions with assert: pytest on CPython, tools/mp_test.py on MicroPython.
"""

import ipa_board

from boards_util import Clock, FakeI2C, FakeMachine, boards_root, load_board
from fakestream import FakeModem

OK = "\r\nOK\r\n"
IDENTIFY = [("AT+CGMI", "\r\nSIMCOM INCORPORATED\r\n" + OK),
            ("AT+CGMM", "\r\nSIMCOM_SIM7080G\r\n" + OK)]

esp = load_board("esp32s3_sim7080g")
rp = load_board("rp2040_sim7600")


def test_axp2101_dc3_codes():
    code = esp.Axp2101.dc3_code
    assert code(3000) == 102 and code(3400) == 106 and code(1600) == 88
    assert code(500) == 0 and code(1200) == 70 and code(1220) == 71 and code(1540) == 87
    for bad in (3050, 1210, 400, 3500, 1550):
        try:
            code(bad)
        except ValueError as e:
            assert str(bad) in str(e)
        else:
            raise AssertionError("%d mV accepted" % bad)


def _esp(cause, script, regs=None):
    i2c = FakeI2C(esp.PMU_ADDR, regs if regs is not None else {0x80: 0x01, 0x84: 0x80 | 0x10})
    m = FakeMachine(cause=cause, i2c=i2c)
    clock = Clock()
    modem = FakeModem(script, clock=clock)
    cfg = dict(esp.CONFIG_DEFAULTS)
    b = esp.Board(cfg, log=lambda s: None, machine=m, clock=clock, sleep=clock.sleep_ms)
    b.start(modem)
    return b, m, i2c, modem, clock


def test_esp32_cold_start_power_cycles_the_modem_rail():
    b, m, i2c, modem, clock = _esp(FakeMachine.PWRON_RESET, [("AT", OK), ("ATE0", OK)] + IDENTIFY)
    # DC3 off (bit 2 cleared, DC1 kept), 3000 mV (code 102, bit 7 kept), DC3 on.
    assert i2c.writes == [(0x80, b"\x01"), (0x84, bytes((0x80 | 102,))), (0x80, b"\x05")]
    assert 200 in clock.sleeps  # off long enough
    assert m.pins[esp.PINS["modem_pwrkey"]].levels == [0]  # the modem answered: no press
    assert m.pins[esp.PINS["modem_dtr"]].levels == [0]
    assert b.stack == "sim7080"
    modem.done()


def test_esp32_watchdog_restart_keeps_the_modem_powered_and_presses_a_silent_one():
    silent = [("AT", None)] * 4
    b, m, i2c, modem, clock = _esp(FakeMachine.WDT_RESET, silent + [("AT", OK), ("ATE0", OK)]
                                   + IDENTIFY)
    assert i2c.writes[0][0] == 0x84 and (0x80, b"\x05") in i2c.writes  # no off step
    key = m.pins[esp.PINS["modem_pwrkey"]]
    assert key.levels == [0, 1, 0]  # one pulse
    assert esp.PWRKEY_PULSE_MS in clock.sleeps
    modem.done()


def test_esp32_power_cycle_uses_the_pmu():
    b, m, i2c, modem, clock = _esp(FakeMachine.WDT_RESET, [("AT", OK), ("ATE0", OK)] + IDENTIFY)
    n = len(i2c.writes)
    assert b.power_cycle() is True
    assert [w[1][0] & 0x04 for w in i2c.writes[n:]] == [0, 0x04]
    assert esp.RAIL_OFF_MS in clock.sleeps


def test_esp32_rejects_ppp_with_a_reason():
    b, m, i2c, modem, clock = _esp(FakeMachine.WDT_RESET, [("AT", OK), ("ATE0", OK)] + IDENTIFY)
    b.cfg["transport"] = "ppp"
    try:
        b.open_network("https://eim.example.com")
    except ipa_board.ConfigError as e:
        assert "PPP is not supported" in str(e)
    else:
        raise AssertionError("transport ppp accepted")


def test_pins_are_in_one_table():
    assert esp.PINS["modem_tx"] == 5 and esp.PINS["modem_rx"] == 4
    assert esp.PINS["modem_pwrkey"] == 41 and esp.PINS["pmu_sda"] == 15
    assert rp.PINS == {"modem_uart": 0, "modem_tx": 0, "modem_rx": 1, "modem_pwrkey": 14}


def test_rp2040_pwrkey_pulse_follows_the_modem():
    for stack, ms in (("simcom", 500), ("sim7080", 1000)):
        m = FakeMachine()
        clock = Clock()
        modem = FakeModem([("AT", None)] * 2 + [("AT", OK), ("ATE0", OK)] + IDENTIFY,
                          clock=clock)
        cfg = dict(rp.CONFIG_DEFAULTS, http_stack=stack)
        b = rp.Board(cfg, log=lambda s: None, machine=m, clock=clock, sleep=clock.sleep_ms)
        b.start(modem)
        assert m.pins[14].levels == [0, 1, 0]
        assert ms in clock.sleeps and b.stack == stack
    try:
        rp.Board(dict(rp.CONFIG_DEFAULTS, http_stack="quectel"), machine=FakeMachine())
    except ipa_board.ConfigError as e:
        assert "quectel" in str(e) and "simcom" in str(e)
    else:
        raise AssertionError("a stack the board does not freeze was accepted")


def test_board_defaults_fit_the_hardware():
    assert rp.CONFIG_DEFAULTS["watchdog_ms"] <= 8388  # the RP2040 watchdog's maximum
    for mod in (esp, rp):
        assert mod.CONFIG_DEFAULTS["watchdog_ms"] > 2 * 1000  # > one ipa_loop slice
        for k in ipa_board.DEFAULTS:
            assert k in mod.CONFIG_DEFAULTS


def test_example_configurations_load():
    for name in ("esp32s3_sim7080g", "rp2040_sim7600", "quecpython_ec200u"):
        mod = load_board(name)
        missing = []
        cfg = ipa_board.load_config(boards_root() + "/" + name + "/ipa_config.json",
                                    mod.CONFIG_DEFAULTS, log=missing.append)
        assert missing == [], missing  # the file was there and read
        assert cfg["eim_url"] is None and cfg["watchdog_ms"] > 0, name
        assert "binding" not in cfg  # boards freeze the ASN.1 binding only
