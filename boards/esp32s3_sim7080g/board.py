"""LilyGO T-SIM7080G-S3: ESP32-S3 + SIMCom SIM7080G (Cat-M / NB-IoT) + X-Powers AXP2101 PMU.

The eUICC sits in the SIM7080G; the ESP32 talks to it over the modem UART
(AT+CCHO/CGLA or AT+CSIM, ipa_core.at_card) and reaches the eIM through the
SIM7080G's own HTTPS stack (AT+SH*, ipa_core.at_http_sim7080). With
transport "wifi" (a lab set-up) the eIM is reached over the ESP32's Wi-Fi
with MicroPython's ssl and ipa_core.http instead; the card still goes
through the modem. PPP is not offered: the board has one modem UART and the
APDUs need it between every eIM exchange (see README.md).

Pins: LilyGO's own examples for this board (utilities.h,
LILYGO_ESP32S3_CAM_SIM7080G, and MinimalModemNBIOTExample.ino). Check them
against your board revision's schematic before powering anything.
"""

# name: GPIO (or value); everything board-specific is in this table and PMU_* below
PINS = {
    "modem_uart": 1,  # ESP32-S3 UART1
    "modem_tx": 5,  # ESP32 TX -> SIM7080G RXD (LilyGO BOARD_MODEM_TXD_PIN)
    "modem_rx": 4,  # ESP32 RX <- SIM7080G TXD (BOARD_MODEM_RXD_PIN)
    "modem_pwrkey": 41,  # high = PWRKEY pulled low through a transistor (BOARD_MODEM_PWR_PIN)
    "modem_dtr": 42,  # BOARD_MODEM_DTR_PIN: held low (modem awake)
    "modem_ri": 3,  # BOARD_MODEM_RI_PIN (unused)
    "pmu_sda": 15,  # AXP2101 I2C (I2C_SDA)
    "pmu_scl": 7,  # I2C_SCL
    "pmu_irq": 6,  # PMU_INPUT_PIN (unused)
}
PMU_ADDR = 0x34  # AXP2101 7-bit I2C address
MODEM_RAIL_MV = 3000  # AXP2101 DC3 feeds the SIM7080G (LilyGO: 2700..3400 mV, set 3000)
PWRKEY_PULSE_MS = 1000  # SIM7080G: PWRKEY low >= 1 s switches it on (or off, if it was on)
RAIL_OFF_MS = 1000  # supply off time for a power cycle

# The port's own modules this board's code may import (tools/freeze.py stands them in).
PORT_MODULES = ("machine", "network", "socket", "ssl", "esp32")

import at_modem  # noqa: E402 - the pin table stays at the top, as the README promises
import ipa_board  # noqa: E402

CONFIG_DEFAULTS = dict(ipa_board.DEFAULTS)
CONFIG_DEFAULTS.update(at_modem.DEFAULTS)
CONFIG_DEFAULTS.update({
    "http_stack": "sim7080",
    "watchdog_ms": 30000,
    "transport": "modem",  # "modem": SIM7080G HTTPS stack; "wifi": ESP32 Wi-Fi + ssl (lab)
    "wifi_ssid": None,
    "wifi_password": None,
})


class Axp2101:
    """The two AXP2101 registers the modem supply needs (X-Powers AXP2101 register map:
    0x80 DCDC on/off, bit 2 = DC3; 0x84 DC3 voltage, bits 6:0, bit 7 kept)."""

    DC_ONOFF = 0x80
    DC3_VOLTAGE = 0x84

    def __init__(self, i2c, addr=PMU_ADDR):
        self.i2c = i2c
        self.addr = addr

    @staticmethod
    def dc3_code(mv):
        """DC3 voltage code: 0.5-1.2 V in 10 mV steps (0..70), 1.22-1.54 V in 20 mV steps
        (71..87), 1.6-3.4 V in 100 mV steps (88..106)."""
        if 500 <= mv <= 1200 and mv % 10 == 0:
            return (mv - 500) // 10
        if 1220 <= mv <= 1540 and mv % 20 == 0:
            return 71 + (mv - 1220) // 20
        if 1600 <= mv <= 3400 and mv % 100 == 0:
            return 88 + (mv - 1600) // 100
        raise ValueError("DC3 %r mV: expected 500..1200 (10 mV steps), 1220..1540 (20 mV) or "
                         "1600..3400 (100 mV)" % (mv,))

    def read(self, reg):
        return self.i2c.readfrom_mem(self.addr, reg, 1)[0]

    def write(self, reg, value):
        self.i2c.writeto_mem(self.addr, reg, bytes((value & 0xFF,)))

    def set_dc3(self, mv):
        self.write(self.DC3_VOLTAGE, (self.read(self.DC3_VOLTAGE) & 0x80) | self.dc3_code(mv))

    def dc3(self, on):
        v = self.read(self.DC_ONOFF)
        self.write(self.DC_ONOFF, (v | 0x04) if on else (v & ~0x04))


class Board(at_modem.AtModemBoard):
    """T-SIM7080G-S3 (see the module docstring); `machine` replaces the module in tests."""

    def __init__(self, cfg, feed=None, log=print, machine=None, **kw):
        super().__init__(cfg, feed, log, **kw)
        if machine is None:
            import machine
        self.machine = machine
        self.pmu = None
        self.pins = PINS
        self.pulse_ms = PWRKEY_PULSE_MS

    def start(self, stream=None):
        m = self.machine
        self.pmu = Axp2101(m.I2C(0, sda=m.Pin(PINS["pmu_sda"]), scl=m.Pin(PINS["pmu_scl"]),
                                 freq=400000))
        self.pwrkey = m.Pin(PINS["modem_pwrkey"], m.Pin.OUT, value=0)
        m.Pin(PINS["modem_dtr"], m.Pin.OUT, value=0)
        if m.reset_cause() == m.PWRON_RESET:
            # Cold start: give the modem a clean power-up, as LilyGO's examples do.
            self.pmu.dc3(False)
            self.sleep_ms(200)
        self.pmu.set_dc3(MODEM_RAIL_MV)
        self.pmu.dc3(True)
        self.sleep_ms(100)
        return super().start(stream)

    def power_cycle(self):
        self.pmu.dc3(False)
        self.sleep_ms(RAIL_OFF_MS)
        self.pmu.dc3(True)
        self.sleep_ms(100)
        return True

    def open_network(self, url, trust_pem=None):
        if self.cfg.get("transport", "modem") == "modem":
            return super().open_network(url, trust_pem)
        if self.cfg["transport"] != "wifi":
            raise ipa_board.ConfigError("transport %r: expected 'modem' or 'wifi' (PPP is not "
                                        "supported on this board, see README.md)"
                                        % (self.cfg["transport"],))
        try:
            from socket_net import socket_network
        except ImportError:
            raise ipa_board.ConfigError("transport 'wifi': this firmware was built without it "
                                        "(set WIFI = True in manifest.py)")
        self._wifi()

        return socket_network(url, ca_pem=trust_pem, log=self.log, idle=self.feed)

    def _wifi(self, timeout_ms=30000):
        import network

        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        if wlan.isconnected():
            return
        if not self.cfg.get("wifi_ssid"):
            raise ipa_board.ConfigError("transport 'wifi' needs wifi_ssid (and wifi_password)")
        wlan.connect(self.cfg["wifi_ssid"], self.cfg.get("wifi_password") or "")
        t0 = self.clock()
        while not wlan.isconnected():
            if self.clock() - t0 > timeout_ms:
                from ipa_core.errors import TransportError

                raise TransportError("Wi-Fi %r: not connected within %d ms"
                                     % (self.cfg["wifi_ssid"], timeout_ms))
            if self.feed is not None:
                self.feed()
            self.sleep_ms(200)

    def wait_connected(self, timeout_ms):
        if self.cfg.get("transport", "modem") == "wifi":
            # The eIM is reached over Wi-Fi: the switch only needs the eUICC re-read.
            return True
        return super().wait_connected(timeout_ms)
