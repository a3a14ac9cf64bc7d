# LilyGO T-SIM7080G-S3 (ESP32-S3 + SIM7080G): what the firmware freezes.
# Firmware: make -C ports/esp32 BOARD=ESP32_GENERIC_S3 FROZEN_MANIFEST=$PWD/boards/esp32s3_sim7080g/manifest.py
# Check and size it here: python3 tools/freeze.py boards/esp32s3_sim7080g
# ruff: noqa: F821

# True: also freeze the Wi-Fi transport (ESP32 ssl + ipa_core.http, ~12 KB of .mpy) for
# transport "wifi" in ipa_config.json, a lab set-up. The default reaches the eIM through
# the SIM7080G's own HTTPS stack (AT+SH*) only.
WIFI = False

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules (_boot, ...)
include("../common/manifest.py", at_stack="sim7080", sockets=WIFI)
module("board.py")
