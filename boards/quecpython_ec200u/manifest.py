# QuecPython (EC200U / EG915U class): the module set to download to /usr with QPYcom.
# Quectel builds QuecPython firmware, so nothing is frozen into it: tools/freeze.py builds
# the bundle (build/quecpython_ec200u/) and checks it is complete.
# ruff: noqa: F821

# The version is pyproject.toml's; package.json (mpremote mip install) is written from this
# manifest: python3 tools/freeze.py --write-packages boards/quecpython_ec200u
metadata(version="0.1.0",
         description="SGP.32 IoT IPA for Quectel EC200U / EG915U modules running QuecPython")

include("../common/manifest.py", sockets=True)  # eIM over usocket + ussl + ipa_core.http
module("board.py")
