"""`--card at:auto`: the AT port of a known USB modem, found in sysfs.

A USB modem shows several ttys (diagnostics, NMEA, AT, PPP), one per USB
interface; which interface carries the AT commands is fixed per product. The
table below gives it for the modems the IPA knows, by USB vendor/product id.
Facts from public sources: ModemManager's per-vendor port-type udev rules
(the interface each marks "AT primary") and the vendors' Linux USB guides.
A modem in another USB composition (a different product id, e.g. after
AT+QCFG="usbnet" or AT+CUSBPIDSWITCH) is not matched: give its port.

The scan reads, under a root folder (default "/", $IPA_SYSROOT or the `root`
argument for tests and containers):

    sys/bus/usb/devices/<dev>/idVendor, idProduct        the USB device
    sys/bus/usb/devices/<dev>:<cfg>.<if>/bInterfaceNumber one of its interfaces
    .../<dev>:<cfg>.<if>/ttyUSB<n>   or  .../tty/ttyACM<n> the tty on it
    dev/ttyUSB<n>                                        the device node
"""

import logging
import os

from ipa_core.errors import IpaError, TransportError

ROOT_ENV = "IPA_SYSROOT"
USB_DEVICES = os.path.join("sys", "bus", "usb", "devices")
MAX_ENTRIES = 2048  # sysfs entries looked at (a hub farm, not a loop)
MAX_ATTR = 256  # bytes read from one sysfs attribute

# (USB vendor id, product id, AT interface number, name).
KNOWN_MODEMS = (
    # Quectel (vendor 2c7c): interface 0 diagnostics, 1 NMEA, 2 AT, 3 AT/PPP.
    (0x2C7C, 0x0121, 2, "Quectel EC21"),
    (0x2C7C, 0x0125, 2, "Quectel EC25/EG25/EC20"),
    (0x2C7C, 0x0191, 2, "Quectel EG91"),
    (0x2C7C, 0x0195, 2, "Quectel EG95"),
    (0x2C7C, 0x0296, 2, "Quectel BG96"),
    (0x2C7C, 0x0306, 2, "Quectel EG06/EP06/EM06"),
    (0x2C7C, 0x0700, 2, "Quectel BG95/BG77"),
    (0x2C7C, 0x0800, 2, "Quectel RM500"),
    # SIMCom (vendor 1e0e): 9001 and 9205/9206 put AT on interface 2; the RNDIS
    # composition 9011 (SIM7600 after AT+CUSBPIDSWITCH=9011, A76xx) moves the ttys up by two.
    (0x1E0E, 0x9001, 2, "SIMCom SIM7600/SIM7100/SIM7000"),
    (0x1E0E, 0x9011, 4, "SIMCom SIM7600/A7670 (RNDIS)"),
    (0x1E0E, 0x9205, 2, "SIMCom SIM7070/SIM7080/SIM7090"),
    (0x1E0E, 0x9206, 2, "SIMCom SIM7070/SIM7080/SIM7090"),
    # u-blox (vendor 1546, cdc_acm: ttyACM*): the primary AT port is interface 0.
    (0x1546, 0x1107, 0, "u-blox TOBY-R2"),
    (0x1546, 0x110A, 0, "u-blox LARA-R2"),
    # Telit (vendor 1bc7).
    (0x1BC7, 0x1101, 1, "Telit ME910C1"),
    (0x1BC7, 0x110A, 1, "Telit MEx10G1"),
    (0x1BC7, 0x1201, 4, "Telit LE910C1"),
    # Sierra Wireless (vendor 1199, qcserial: 0 diagnostics, 2 NMEA, 3 AT).
    (0x1199, 0x9071, 3, "Sierra EM7455/MC7455/MC7430"),
    (0x1199, 0x9091, 3, "Sierra EM7565"),
)

log = logging.getLogger("ipa")


class UsbFindError(IpaError, ValueError):
    """Several known modems: the user must say which (a usage error, exit 2)."""


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read(MAX_ATTR).decode("ascii", "replace").strip()
    except OSError:
        return None


def _hex(text):
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


def _ttys(iface_dir):
    """tty names on one interface: ttyUSB<n> right in it (usb-serial drivers) or under
    tty/ (cdc_acm)."""
    out = []
    for where in (iface_dir, os.path.join(iface_dir, "tty")):
        try:
            names = sorted(os.listdir(where))[:MAX_ENTRIES]
        except OSError:
            continue
        out += [n for n in names if n.startswith("tty") and n != "tty"]
    return out


def known(vid, pid):
    """(AT interface, name) of a modem in KNOWN_MODEMS, or None."""
    for v, p, iface, name in KNOWN_MODEMS:
        if (v, p) == (vid, pid):
            return iface, name
    return None


def scan(root=None):
    """Every tty on a USB interface, as dicts: device (the /dev path under root), usb (bus
    path, e.g. 1-1.3), vid, pid, interface, product (the device's own name, if any), modem
    (name from KNOWN_MODEMS or None), at (True on the known AT interface)."""
    root = root or os.environ.get(ROOT_ENV) or "/"
    base = os.path.join(root, USB_DEVICES)
    try:
        entries = sorted(os.listdir(base))[:MAX_ENTRIES]
    except OSError:
        return []
    found = []
    for entry in entries:
        usb, colon, _ = entry.partition(":")
        if not colon:
            continue  # a device or hub, not an interface
        iface_dir = os.path.join(base, entry)
        number = _hex(_read(os.path.join(iface_dir, "bInterfaceNumber")))
        dev_dir = os.path.join(base, usb)
        vid = _hex(_read(os.path.join(dev_dir, "idVendor")))
        pid = _hex(_read(os.path.join(dev_dir, "idProduct")))
        if number is None or vid is None or pid is None:
            continue
        k = known(vid, pid)
        product = " ".join(x for x in (_read(os.path.join(dev_dir, "manufacturer")),
                                       _read(os.path.join(dev_dir, "product"))) if x)
        for tty in _ttys(iface_dir):
            found.append({"device": os.path.join(root, "dev", tty), "usb": usb, "vid": vid,
                          "pid": pid, "interface": number, "product": product,
                          "modem": k[1] if k else None, "at": bool(k) and k[0] == number})
    return found


def describe(c):
    what = c["modem"] or c["product"] or "unknown device"
    return "%s (%s, %04x:%04x interface %d, USB %s)" % (
        c["device"], what, c["vid"], c["pid"], c["interface"], c["usb"])


def find_at_port(root=None):
    """The one AT port of a known modem (its scan() dict). TransportError when there is
    none (naming what was seen and how to give the port), UsbFindError when there are
    several (naming them)."""
    seen = scan(root)
    ports = [c for c in seen if c["at"]]
    if len(ports) == 1:
        log.info("at:auto: %s", describe(ports[0]))
        return ports[0]
    if ports:
        raise UsbFindError("at:auto found the AT ports of %d modems: %s; choose one with "
                           "--card at:<port>" % (len(ports), "; ".join(describe(c) for c in ports)))
    if not seen:
        raise TransportError(
            "at:auto found no USB serial port under %s: is the modem plugged in and its "
            "driver (option, qcserial, cdc_acm) loaded? For a modem on a UART give its port: "
            "--card at:/dev/serial0" % os.path.join(root or os.environ.get(ROOT_ENV) or "/",
                                                   USB_DEVICES))
    hint = ""
    modems = sorted(set(c["modem"] for c in seen if c["modem"]))
    if modems:
        hint = " (%s present, but no tty on its AT interface: another USB composition?)" \
            % ", ".join(modems)
    raise TransportError(
        "at:auto knows none of these USB serial ports as a modem's AT port%s: %s; give the "
        "AT port: --card at:/dev/ttyUSB2 (docs/modems.md, \"Finding the AT port\")"
        % (hint, "; ".join(describe(c) for c in seen)))
