# The board-independent part of every board's firmware: the boards/common glue and the
# ipa_core modules a board needs. A board manifest includes it with its options:
#     include("../common/manifest.py", at_stack="sim7080", sockets=True)
# MicroPython manifest syntax (tools/freeze.py runs it too); paths are relative to this
# file; names like module() and options come from the freezer.
# ruff: noqa: F821
# No metadata() here: an included manifest shares its includer's metadata, and MicroPython's
# freezer refuses a second metadata() call; each board manifest sets the version.

options.defaults(at_stack=None, sockets=False)

module("flash_store.py")
module("ipa_loop.py")
module("ipa_board.py")
module("uart_stream.py")

# ESipa ASN.1 binding, the IPA procedures, indirect profile download. Left out on purpose:
# esipa_json (JSON binding), es9p, json_stream and ipa_direct (direct download), es11 and
# ipa_smds (SM-DS discovery, direct only), coap, b64.
# activation is in: an eIM's profileDownloadTriggerRequest may carry an Activation Code
# for an indirect download too (ipa_download then imports it).
core = [
    "__init__.py", "compat.py", "errors.py", "clock.py", "tlv.py", "apdu.py", "version.py", "stream.py",
    "es10.py", "es10_decode.py", "es10_download.py", "es10_signed.py",
    "esipa.py", "esipa_decode.py",
    "ipa.py", "ipa_data.py", "ipa_notify.py", "ipa_steps.py", "ipa_store.py",
    "ipa_download.py", "ipa_cancel.py", "activation.py",
]

if options.at_stack:
    # The eUICC behind the modem's AT port, the eIM through the modem's HTTP(S) stack:
    # ipa_core.at_http plus the one stack module ("sim7080", "simcom" or "quectel").
    module("at_modem.py")
    core += ["at.py", "at_card.py", "modems.py", "at_http.py",
             "at_http_%s.py" % options.at_stack]

if options.sockets:
    # The eIM over the MCU's own socket + TLS (ESP32 Wi-Fi, QuecPython usocket/ussl).
    module("socket_net.py")
    core += ["http.py"]

package("ipa_core", files=core, base_path="../..")
