"""The one card-selection syntax of the `ipa` and `ipa-sim` commands.

    sim                          the virtual eUICC in this process
    sim?pki=DIR&state=FILE       ... with its PKI folder / state file
    pcsc                         the one PC/SC reader holding a card
    pcsc:<index>                 PC/SC reader by position (pcsc:0)
    pcsc:<name>                  PC/SC reader by exact name or unique substring
    pcsc:<reader>?shared=1&protocol=T0|T1|any
    at:/dev/ttyUSB2?baud=115200&mode=auto|cgla|csim
                                 a modem's AT port (ipa_host.card.serial.open_at_card:
                                 AT+CCHO/CGLA, or AT+CSIM; auto tries CCHO first)
    at:auto?mode=...             the AT port of the one known USB modem plugged in
                                 (ipa_host.card.usb_find: USB vendor/product/interface)
    qmi:/dev/cdc-wdm0?slot=1&proxy=1|0|<name>
                                 a modem's QMI UIM service (ipa_host.card.qmi), through
                                 qmi-proxy by default (ModemManager keeps the modem);
                                 proxy=0 opens the device itself, proxy=<name> another
                                 proxy socket
    mbim:/dev/cdc-wdm0?proxy=1|0|<name>
                                 MBIM Microsoft UICC low-level access (ipa_host.card.mbim),
                                 through mbim-proxy by default

`parse_card_spec(spec)` turns the text into (kind, target, options) and
rejects what it cannot use; `open_card(spec, **options)` returns a card
object (`transmit(apdu) -> bytes`).
"""

from ipa_core.errors import IpaError, is_digits

KINDS = ("sim", "pcsc", "at", "qmi", "mbim")
OPTIONS = {
    "sim": ("pki", "state"),
    "pcsc": ("shared", "protocol"),
    "at": ("baud", "mode"),
    "qmi": ("slot", "proxy"),
    "mbim": ("proxy",),
}
PROXIES = {"qmi": "qmi-proxy", "mbim": "mbim-proxy"}
AT_MODES = ("auto", "cgla", "csim")
AT_BAUDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1000000,
            2000000, 3000000, 3686400, 4000000)
PCSC_PROTOCOLS = ("any", "T0", "T1")
MAX_SPEC = 1024
SYNTAX = ("sim | pcsc | pcsc:<reader name or index> | at:<device>|auto?baud=<n>"
          "&mode=auto|cgla|csim | qmi:<device>?slot=<n>&proxy=1|0 | mbim:<device>?proxy=1|0")


class CardSpecError(IpaError, ValueError):
    """A card selection the tool cannot use; the message shows the syntax."""

    def __init__(self, spec, problem):
        self.spec = spec
        IpaError.__init__(self, "card %r: %s (expected %s)" % (spec, problem, SYNTAX))


def _bool(spec, key, value):
    v = value.lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise CardSpecError(spec, "option %s=%r is not a yes/no value (1/0)" % (key, value))


def parse_card_spec(spec):
    """'pcsc:1?shared=1' -> ('pcsc', 1, {'shared': True}). Raises CardSpecError."""
    if not isinstance(spec, str):
        raise CardSpecError(spec, "a card selection is text, not %s" % type(spec).__name__)
    if not spec.strip():
        raise CardSpecError(spec, "empty card selection")
    if len(spec) > MAX_SPEC:
        raise CardSpecError(spec[:40] + "...", "longer than %d characters" % MAX_SPEC)
    head, _, query = spec.partition("?")
    kind, colon, target = head.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise CardSpecError(spec, "unknown card kind %r" % kind)
    opts = {}
    if query:
        for part in query.split("&"):
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise CardSpecError(spec, "option %r is not key=value" % part)
            if key not in OPTIONS[kind]:
                raise CardSpecError(
                    spec, "unknown option %r for %s (known: %s)" % (key, kind, ", ".join(OPTIONS[kind]))
                )
            if key in opts:
                raise CardSpecError(spec, "option %r given twice" % key)
            opts[key] = value
    if kind == "sim":
        if colon:
            raise CardSpecError(spec, "sim takes no target after ':' (options go after '?')")
        return kind, None, opts
    if kind == "pcsc":
        if colon and not target:
            raise CardSpecError(spec, "empty reader after 'pcsc:'")
        if is_digits(target):
            target = int(target)
        if "shared" in opts:
            opts["shared"] = _bool(spec, "shared", opts["shared"])
        if "protocol" in opts:
            match = [p for p in PCSC_PROTOCOLS if p.lower() == opts["protocol"].lower()]
            if not match:
                raise CardSpecError(
                    spec, "protocol=%r, expected one of %s" % (opts["protocol"], "/".join(PCSC_PROTOCOLS))
                )
            opts["protocol"] = match[0]
        return kind, (target if colon else None), opts
    if kind in PROXIES:
        return _parse_wdm(spec, kind, target, opts)
    # at:<device>
    if not target:
        raise CardSpecError(spec, "at: needs the modem's AT port, e.g. at:/dev/ttyUSB2")
    baud = opts.get("baud", "115200")
    if not is_digits(baud) or int(baud) not in AT_BAUDS:
        raise CardSpecError(
            spec, "baud=%r, expected one of %s" % (baud, ", ".join(str(b) for b in AT_BAUDS))
        )
    mode = opts.get("mode", "auto").lower()
    if mode not in AT_MODES:
        raise CardSpecError(spec, "mode=%r, expected one of %s" % (opts.get("mode"), "/".join(AT_MODES)))
    return kind, target, {"baud": int(baud), "mode": mode}


def _parse_wdm(spec, kind, target, opts):
    """qmi:/mbim: a control device path, the proxy (default, off, or a socket name), slot."""
    if not target.startswith("/"):
        raise CardSpecError(spec, "%s: needs the modem's control device, e.g. %s:/dev/cdc-wdm0"
                            % (kind, kind))
    proxy = opts.get("proxy", "1")
    if proxy.lower() in ("1", "true", "yes", "on"):
        proxy = PROXIES[kind]
    elif proxy.lower() in ("0", "false", "no", "off"):
        proxy = None
    elif not proxy.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(proxy) > 100:
        raise CardSpecError(spec, "proxy=%r is neither 1/0 nor a proxy socket name" % proxy)
    out = {"proxy": proxy}
    if kind == "qmi":
        slot = opts.get("slot", "1")
        if not slot.isdigit() or not 1 <= int(slot) <= 5:
            raise CardSpecError(spec, "slot=%r, expected 1..5" % slot)
        out["slot"] = int(slot)
    return kind, target, out


def open_card(spec, **options):
    """Open the card a spec names. `options` go to the constructor and win over
    options in the spec (for `sim`: pki_dir=..., state_path=...)."""
    kind, target, opts = parse_card_spec(spec)
    if kind == "sim":
        kw = {}
        if "pki" in opts:
            kw["pki_dir"] = opts["pki"]
        if "state" in opts:
            kw["state_path"] = opts["state"]
        kw.update(options)
        if "pki_dir" not in kw:
            raise CardSpecError(spec, "the virtual eUICC needs its PKI folder (sim?pki=DIR)")
        from ipa_host.sim.euicc.euicc import VirtualEuicc

        pki_dir = kw.pop("pki_dir")
        kw.setdefault("strict", True)  # the IPA's own card: no leniency (docs/sim-euicc.md)
        return VirtualEuicc(pki_dir, **kw)
    if kind == "pcsc":
        from ipa_host.card.pcsc import PcscCard

        opts.update(options)
        return PcscCard(target, **opts)
    if kind in PROXIES:
        if kind == "qmi":
            from ipa_host.card.qmi import QmiCard as cls
        else:
            from ipa_host.card.mbim import MbimCard as cls
        opts.update(options)
        return cls(target, **opts).open()
    # at: options (profile_overrides=..., segment_timeout_ms=..., trace=...) go to open_at_card.
    from ipa_host.card.serial import open_at_card

    kw = {"baud": opts["baud"], "mode": opts["mode"]}
    kw.update(options)
    usb = None
    if target == "auto":
        from ipa_host.card.usb_find import find_at_port

        usb = find_at_port()
        target = usb["device"]
    card = open_at_card(target, **kw)
    card.usb = usb  # what at:auto found (ipa info shows it), None for a named port
    return card
