"""A fake sysfs of USB devices for `--card at:auto` (ipa_host.card.usb_find): the folders and
attribute files the kernel shows under /sys/bus/usb/devices, built under a root folder."""

import os


def add_usb_device(root, bus, vid, pid, ttys, acm=False, product=None, dev_target=None):
    """One USB device at bus path `bus` (e.g. "1-1.3"): ttys {interface number: tty name}
    (usb-serial drivers put ttyUSB<n> right in the interface folder, cdc_acm under tty/).
    With dev_target, root/dev/<tty> of each tty is a symlink to it (a simulated modem's pty)."""
    base = os.path.join(str(root), "sys", "bus", "usb", "devices")
    dev = os.path.join(base, bus)
    os.makedirs(dev, exist_ok=True)
    _write(os.path.join(dev, "idVendor"), "%04x\n" % vid)
    _write(os.path.join(dev, "idProduct"), "%04x\n" % pid)
    if product:
        _write(os.path.join(dev, "product"), product + "\n")
    for number, tty in ttys.items():
        iface = os.path.join(base, "%s:1.%d" % (bus, number))
        os.makedirs(iface, exist_ok=True)
        _write(os.path.join(iface, "bInterfaceNumber"), "%02x\n" % number)
        if tty is None:
            continue  # an interface without a tty (network, audio, no driver)
        os.makedirs(os.path.join(iface, "tty", tty) if acm else os.path.join(iface, tty),
                    exist_ok=True)
        if dev_target is not None:
            os.makedirs(os.path.join(str(root), "dev"), exist_ok=True)
            os.symlink(dev_target, os.path.join(str(root), "dev", tty))
    return os.path.join(str(root), "dev")


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
