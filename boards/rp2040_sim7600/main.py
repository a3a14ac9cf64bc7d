"""IPA for a Raspberry Pi Pico with a SIMCom HAT: copy to the board as /main.py (runs at boot).

Reads /ipa_config.json (eIM URL, CA file, poll period...: README.md), keeps
the IPA's progress in /ipa_state.json (flash_store: power-cut safe), brings
the modem up and runs IPA poll cycles for ever (ipa_loop) under the
hardware watchdog. Everything else is frozen into the firmware
(manifest.py) or copied to /lib (tools/freeze.py).
"""

import board
import ipa_board

CONFIG = "/ipa_config.json"


def _watchdog(ms):
    """machine.WDT with a timeout in ms (the RP2040 allows at most 8388)."""
    import machine

    return machine.WDT(timeout=ms).feed


def main():
    ipa_board.run_main(board, CONFIG, _watchdog)


if __name__ == "__main__":
    main()
