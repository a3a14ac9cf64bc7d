# Raspberry Pi Pico + Waveshare SIM7600X 4G HAT (or SIM7080G): what the firmware freezes.
# Firmware: make -C ports/rp2 BOARD=RPI_PICO FROZEN_MANIFEST=$PWD/boards/rp2040_sim7600/manifest.py
# Check and size it here: python3 tools/freeze.py boards/rp2040_sim7600
# ruff: noqa: F821

# The version is pyproject.toml's; package.json (mpremote mip install) is written from this
# manifest: python3 tools/freeze.py --write-packages boards/rp2040_sim7600
metadata(version="0.1.0",
         description="SGP.32 IoT IPA for the Raspberry Pi Pico + SIMCom SIM7600 / SIM7080G")

# The modem's HTTP stack: "simcom" (AT+HTTP*: SIM7600, A76xx) or "sim7080" (AT+SH*:
# SIM7080G). It must match http_stack in ipa_config.json.
STACK = "simcom"

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules
include("../common/manifest.py", at_stack=STACK)
module("board.py")
