# Raspberry Pi Pico + Waveshare SIM7600X 4G HAT (or SIM7080G): what the firmware freezes.
# Firmware: make -C ports/rp2 BOARD=RPI_PICO FROZEN_MANIFEST=$PWD/boards/rp2040_sim7600/manifest.py
# Check and size it here: python3 tools/freeze.py boards/rp2040_sim7600
# ruff: noqa: F821

# The modem's HTTP stack: "simcom" (AT+HTTP*: SIM7600, A76xx) or "sim7080" (AT+SH*:
# SIM7080G). It must match http_stack in ipa_config.json.
STACK = "simcom"

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules
include("../common/manifest.py", at_stack=STACK)
module("board.py")
