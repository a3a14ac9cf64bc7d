# QuecPython (EC200U / EG915U class): the module set to download to /usr with QPYcom.
# Quectel builds QuecPython firmware, so nothing is frozen into it: tools/freeze.py builds
# the bundle (build/quecpython_ec200u/) and checks it is complete.
# ruff: noqa: F821

include("../common/manifest.py", sockets=True)  # eIM over usocket + ussl + ipa_core.http
module("board.py")
