"""IPA for a QuecPython module (EC200U / EG915U class): download to /usr/main.py with QPYcom.

Reads /usr/ipa_config.json (eIM URL, CA file, poll period...: README.md),
keeps the IPA's progress in /usr/ipa_state.json (flash_store: power-cut
safe) and runs IPA poll cycles for ever (ipa_loop) under QuecPython's
watchdog. The card is the module's own SIM slot (sim.genericAccess), the
eIM is reached over the module's data call (usocket + ussl).
"""

import board
import ipa_board
import ipa_loop
from flash_store import FlashStore
from uart_stream import clock_ms, sleep_ms

CONFIG = "/usr/ipa_config.json"


def _no_watchdog():
    pass


def _watchdog(ms):
    """machine.WDT(period in seconds) on QuecPython; 0: none (development)."""
    if not ms:
        return _no_watchdog
    from machine import WDT

    return WDT(max(1, (ms + 999) // 1000)).feed


def main():
    cfg = ipa_board.load_config(CONFIG, board.CONFIG_DEFAULTS)
    feed = _watchdog(cfg["watchdog_ms"])
    store = FlashStore(cfg["state_file"])
    bi = ipa_board.BoardIpa(board.Board(cfg, feed=feed), store, cfg, clock=clock_ms)
    ipa = bi.start(sleep_ms, feed)
    try:
        ipa_loop.run(ipa, sleep_ms, feed, clock=clock_ms, reopen=bi.reopen)
    finally:
        bi.close()


if __name__ == "__main__":
    main()
