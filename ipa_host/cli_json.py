"""The `ipa --json` contract: one JSON object per run, the same for every command.

    {"ipa": "0.1.0", "command": "notifications list", "ok": true, "exitCode": 0,
     "result": <what the command reports>, "error": null}
    {"ipa": "0.1.0", "command": "download", "ok": false, "exitCode": 3,
     "result": <what was done before it failed, or null>,
     "error": {"code": "transport", "type": "TransportError", "message": "...", ...}}

error.code is a category a script can branch on (ERROR_CODES); type the exception's
class; message the text stderr shows; optional details: function (the ES10/ESipa/ES9+
function), reason / reasonCode (the spec's error name and number), status (HTTP),
stage (download). Enumerated fields are names ("profileState": "enabled"), not the
numbers the eUICC sends (ENUMS). `ipa run` writes one such object per cycle (JSON
Lines). The JSON Schema of the whole contract is docs/cli-output.schema.json; the tests
validate every command's real output against it.
"""

import json

from ipa_core.errors import (
    CardError, FunctionError, ProtocolError, TransportError,
)
from ipa_host.version import version  # the "ipa" field: the same as `ipa --version`

SCHEMA = "docs/cli-output.schema.json"

# error.code by what went wrong, with the exit code each has (docs/cli.md)
ERROR_CODES = {
    "usage": 2,      # bad option, activation code, config file
    "transport": 3,  # the card, the modem or a server could not be reached
    "card": 1,       # the card answered with an error status word
    "refused": 1,    # an ES10 / ESipa / ES9+ function answered with an error
    "protocol": 1,   # a peer's answer broke the protocol (malformed, unexpected)
    "failed": 1,     # any other failure of the command (e.g. a poll cycle)
    "noEvent": 4,    # download --smds: the SM-DS had no event for this eUICC
}


# Names for the numbers the eUICC and servers send (SGP.22 ProfileInfo, SGP.32 IpaMode,
# EimConfigurationData, EuiccMemoryReset).
ENUMS = {
    "profileState": {0: "disabled", 1: "enabled"},
    "profileClass": {0: "test", 1: "provisioning", 2: "operational"},
    "ipaMode": {0: "ipad", 1: "ipae"},
    "eimIdType": {1: "eimIdTypeOid", 2: "eimIdTypeFqdn", 3: "eimIdTypeProprietary"},
    "iconType": {0: "jpg", 1: "png"},
    "resetResult": {0: "ok", 1: "nothingToDelete", 5: "catBusy", 104: "ecallActive",
                    127: "undefinedError"},
}


def plain(x):
    """JSON-ready copy: bytes become upper-case hex, "raw" copies are dropped, enumerated
    fields get their names."""
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).hex().upper()
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if k == "raw":
                continue
            names = ENUMS.get(k)
            if names is not None and isinstance(v, int) and not isinstance(v, bool):
                out[k] = names.get(v, v)
            else:
                out[k] = plain(v)
        return out
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def category(exc):
    """error.code for an exception (ERROR_CODES)."""
    if isinstance(exc, TransportError):
        return "transport"
    if isinstance(exc, CardError):
        return "card"
    if isinstance(exc, FunctionError):
        return "refused"
    if isinstance(exc, ProtocolError):
        return "protocol"
    if isinstance(exc, ValueError):  # card spec, config, activation code: the user's input
        return "usage"
    return "failed"


def error(exc, **details):
    """The envelope's error object for an exception: error_from_summary of
    ipa_core.ipa.error_info(exc), with the code from the exception's class (category)."""
    from ipa_core.ipa import error_info

    out = error_from_summary(error_info(exc), **details)
    out["code"] = category(exc)
    return out


# error.code for an exception known only by its class name (a summary's error dict)
_NAMED = {"transport": ("TransportError", "TimeoutError_", "ConnectionClosed", "AtError",
                        "ModemRestarted", "HttpStackError", "CoapReset"),
          "card": ("CardError",), "refused": ("FunctionError", "EimError", "Es9Error"),
          "protocol": ("ProtocolError", "TlvError", "HttpStatusError")}


def error_from_summary(info, **details):
    """The envelope's error object from a summary's error dict (ipa_core.ipa.error_info:
    type, message, function?, code?, name?, status?), when the exception itself is gone."""
    t = info.get("type", "Error")
    out = {"code": "failed", "type": t, "message": info.get("message", "")}
    for code, names in _NAMED.items():
        if t in names:
            out["code"] = code
    for src, dst in (("function", "function"), ("name", "reason"), ("status", "status")):
        if info.get(src) is not None:
            out[dst] = info[src]
    if isinstance(info.get("code"), int):
        out["reasonCode"] = info["code"]
    out.update(details)
    return out


def envelope(command, exit_code, result=None, err=None):
    if exit_code and err is None:
        err = {"code": "failed", "type": "Failed", "message": "exit code %d" % exit_code}
    return {"ipa": version(), "command": command, "ok": exit_code == 0,
            "exitCode": exit_code, "result": plain(result), "error": err}


def write(out, doc, lines=False):
    """One document: indented, or one line (JSON Lines, `ipa run`)."""
    if lines:
        out.write(json.dumps(doc, sort_keys=True) + "\n")
    else:
        json.dump(doc, out, indent=2, sort_keys=True)
        out.write("\n")
    out.flush()
