# LilyGO T-SIM7080G-S3 (ESP32-S3 + SIM7080G): what the firmware freezes.
# Firmware: make -C ports/esp32 BOARD=ESP32_GENERIC_S3 BOARD_VARIANT=SPIRAM_OCT FROZEN_MANIFEST=$PWD/boards/esp32s3_sim7080g/manifest.py
# Check and size it here: python3 tools/freeze.py boards/esp32s3_sim7080g
# ruff: noqa: F821

# The version is pyproject.toml's; package.json (mpremote mip install) is written from this
# manifest: python3 tools/freeze.py --write-packages boards/esp32s3_sim7080g
metadata(version="0.1.0",
         description="SGP.32 IoT IPA for the LilyGO T-SIM7080G-S3 (ESP32-S3 + SIMCom SIM7080G)")

# True: also freeze the Wi-Fi transport (ESP32 ssl + ipa_core.http, ~12 KB of .mpy) for
# transport "wifi" in ipa_config.json, a lab set-up. The default reaches the eIM through
# the SIM7080G's own HTTPS stack (AT+SH*) only.
WIFI = False

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules (_boot, ...)
include("../common/manifest.py", at_stack="sim7080", sockets=WIFI)
module("board.py")
