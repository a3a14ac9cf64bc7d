"""Raspberry Pi Pico (RP2040) + a Waveshare SIMCom modem: SIM7600X 4G HAT or SIM7080G.

The RP2040 has no TLS in MicroPython's standard build, so both the eUICC
and the eIM go through the modem's AT port: APDUs with AT+CCHO/CGLA or
AT+CSIM (ipa_core.at_card), HTTPS with the modem's own stack
(ipa_core.at_http: "simcom" AT+HTTP* on the SIM7600, "sim7080" AT+SH* on
the SIM7080G).

Wiring (one table, README.md has the picture in words):
  - Waveshare Pico-SIM7080G-Cat-M/NB-IoT: the Pico plugs in; UART0 on GP0
    (TX) / GP1 (RX), PWRKEY on GP14 (Waveshare's Pico examples).
  - Waveshare SIM7600X 4G HAT (a Raspberry Pi HAT, wired by jumpers): HAT
    RXD <- GP0, HAT TXD -> GP1, GND, and the HAT's PWRKEY control pin (the
    "PWR" jumper set to D6, i.e. Raspberry Pi BCM6, header pin 31) <- GP14.
    The HAT needs its own 5 V / 2 A supply; the Pico's VBUS is not enough.
On both, a high level on the GPIO pulls PWRKEY low through a transistor.
"""

# name: GPIO (or value); everything board-specific is in this table
PINS = {
    "modem_uart": 0,  # RP2040 UART0
    "modem_tx": 0,  # GP0 = UART0 TX -> modem RXD
    "modem_rx": 1,  # GP1 = UART0 RX <- modem TXD
    "modem_pwrkey": 14,  # GP14: high pulls PWRKEY low (Waveshare Pico-SIM7080G; jumper on the HAT)
}
# PWRKEY low time that switches the modem on (it switches a running modem OFF after longer):
# SIM7600 on >= 0.5 s (off >= 2.5 s); SIM7080G on >= 1 s (off >= 1.2 s).
PWRKEY_PULSE_MS = {"simcom": 500, "sim7080": 1000}

# The port's own modules this board's code may import (tools/freeze.py stands them in).
PORT_MODULES = ("machine", "rp2")

import at_modem  # noqa: E402 - the pin table stays at the top, as the README promises
import ipa_board  # noqa: E402

CONFIG_DEFAULTS = dict(ipa_board.DEFAULTS)
CONFIG_DEFAULTS.update(at_modem.DEFAULTS)
CONFIG_DEFAULTS.update({
    "http_stack": "simcom",  # SIM7600X HAT; "sim7080" for the SIM7080G
    "watchdog_ms": 8000,  # the RP2040 watchdog's maximum is 8388 ms
})


class Board(at_modem.AtModemBoard):
    """Pico + SIMCom modem (see the module docstring); `machine` replaces the module in tests."""

    def __init__(self, cfg, feed=None, log=print, machine=None, **kw):
        super().__init__(cfg, feed, log, **kw)
        if machine is None:
            import machine
        self.machine = machine
        self.pins = PINS
        stack = cfg.get("http_stack") or "simcom"
        if stack not in PWRKEY_PULSE_MS:
            raise ipa_board.ConfigError("http_stack %r: expected 'simcom' (SIM7600) or 'sim7080'"
                                        % (stack,))
        self.pulse_ms = PWRKEY_PULSE_MS[stack]

    def start(self, stream=None):
        m = self.machine
        self.pwrkey = m.Pin(PINS["modem_pwrkey"], m.Pin.OUT, value=0)
        return super().start(stream)

