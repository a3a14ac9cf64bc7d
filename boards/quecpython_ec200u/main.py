"""IPA for a QuecPython module (EC200U / EG915U class): download to /usr/main.py with QPYcom.

Reads /usr/ipa_config.json (eIM URL, CA file, poll period...: README.md),
keeps the IPA's progress in /usr/ipa_state.json (flash_store: power-cut
safe) and runs IPA poll cycles for ever (ipa_loop) under QuecPython's
watchdog. The card is the module's own SIM slot (sim.genericAccess), the
eIM is reached over the module's data call (usocket + ussl).
"""

import board
import ipa_board

CONFIG = "/usr/ipa_config.json"


def _watchdog(ms):
    """QuecPython's machine.WDT takes its period in seconds."""
    from machine import WDT

    return WDT(max(1, (ms + 999) // 1000)).feed


def main():
    ipa_board.run_main(board, CONFIG, _watchdog)


if __name__ == "__main__":
    main()
