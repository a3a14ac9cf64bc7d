"""IPA for the LilyGO T-SIM7080G-S3: copy to the board as /main.py (it runs at every boot).

Reads /ipa_config.json (eIM URL, CA file, poll period...: README.md), keeps
the IPA's progress in /ipa_state.json (flash_store: power-cut safe), brings
the SIM7080G up and runs IPA poll cycles for ever (ipa_loop) under the
hardware watchdog. Everything else is frozen into the firmware
(manifest.py) or copied to /lib (tools/freeze.py).
"""

import machine

import board
import ipa_board
import ipa_loop
from flash_store import FlashStore
from uart_stream import clock_ms, sleep_ms

CONFIG = "/ipa_config.json"


def _no_watchdog():
    pass


def main():
    cfg = ipa_board.load_config(CONFIG, board.CONFIG_DEFAULTS)
    # watchdog_ms 0: no watchdog (development at the REPL; a running WDT cannot be stopped)
    feed = machine.WDT(timeout=cfg["watchdog_ms"]).feed if cfg["watchdog_ms"] else _no_watchdog
    store = FlashStore(cfg["state_file"])
    bi = ipa_board.BoardIpa(board.Board(cfg, feed=feed), store, cfg, clock=clock_ms)
    ipa = bi.start(sleep_ms, feed)
    try:
        ipa_loop.run(ipa, sleep_ms, feed, clock=clock_ms, reopen=bi.reopen)
    finally:
        bi.close()


if __name__ == "__main__":
    main()
