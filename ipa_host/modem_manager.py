"""Re-attach through ModemManager after a profile switch (the Ipa's "connectivity" for
--card qmi:/mbim:, ipa_core.ipa).

A modem that ModemManager owns must read the eUICC again after the enabled
profile changed, but AT+CFUN is not ours to send: ModemManager keeps the
modem's state machine and would not notice. Its own equivalent is
Modem.Enable(false) then Modem.Enable(true) (`mmcli -m M --disable/--enable`):
the modem goes to low power and back, reads the SIM, and ModemManager
registers it again. This module drives the real `mmcli` (its JSON output,
keys as cli/mmcli-output.c of ModemManager 1.20 names them: "modem-list",
modem.generic.ports / primary-port / state / sim, sim.properties.iccid):

  find_modem(device)   the ModemManager modem whose ports (or primary port)
                       name the card's device node: "cdc-wdm0 (qmi)" for
                       /dev/cdc-wdm0 (symlinks such as /dev/serial/by-id/...
                       resolved); None when mmcli is missing, ModemManager
                       is not running, or no modem it manages has that port.
  refresh()            disable + enable that modem through ModemManager.
  wait_connected(ms)   the modem, found again by its port (ModemManager may
                       re-probe it under a new index after the SIM changed,
                       and leave the new one disabled: it is enabled once),
                       registered or connected within `ms`; then logs the
                       ICCID of the SIM ModemManager now sees and warns when
                       it is not the profile the eUICC has enabled.

Without ModemManager (or with [card] refresh = false) nothing is sent and
wait_connected answers True at once, as before this existed: the eIM
exchange that follows decides. Every mmcli run is bounded (MMCLI_TIMEOUT_S);
IPA_MMCLI names another mmcli binary (the tests' extracted copy), and mmcli
itself honours DBUS_SYSTEM_BUS_ADDRESS.
"""

import json
import os
import shutil
import subprocess
import time

from ipa_core.errors import IpaError

MMCLI_ENV = "IPA_MMCLI"
MMCLI_TIMEOUT_S = 30  # one mmcli call (an Enable can take seconds on a real modem)
POLL_MS = 1000
MAX_OUTPUT = 1 << 20  # bytes of mmcli JSON read at most
# MMModemState names as mmcli prints them (modem.generic.state): the modem is on the network.
ATTACHED = ("registered", "connecting", "connected", "disconnecting")


class MmcliError(Exception):
    """mmcli is missing, failed, timed out or printed what is not JSON."""


def mmcli_path():
    """The mmcli to run: $IPA_MMCLI, else mmcli on PATH; None when there is none."""
    named = os.environ.get(MMCLI_ENV)
    if named:
        return named if os.access(named, os.X_OK) else None
    return shutil.which("mmcli")


def run_mmcli(args, mmcli=None, timeout=MMCLI_TIMEOUT_S):
    """Output of `mmcli args` (str); MmcliError with mmcli's own words when it fails."""
    exe = mmcli or mmcli_path()
    if exe is None:
        raise MmcliError("mmcli not found (install ModemManager, or set %s)" % MMCLI_ENV)
    try:
        r = subprocess.run([exe] + list(args), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MmcliError("mmcli %s: no answer within %d s" % (" ".join(args), timeout))
    except OSError as e:
        raise MmcliError("mmcli: %s" % (e.strerror or e))
    if r.returncode != 0:
        words = (r.stderr or r.stdout).strip().splitlines()
        raise MmcliError("mmcli %s: %s" % (" ".join(args), words[-1] if words else
                                          "exit status %d" % r.returncode))
    return r.stdout[:MAX_OUTPUT]


def mmcli_json(args, mmcli=None, timeout=MMCLI_TIMEOUT_S):
    out = run_mmcli(["-J"] + list(args), mmcli, timeout)
    try:
        return json.loads(out)
    except ValueError:
        raise MmcliError("mmcli -J %s printed no JSON: %r" % (" ".join(args), out[:80]))


def port_names(device):
    """The names ModemManager may list for `device`: the kernel name (basename of the
    resolved path: cdc-wdm0, ttyUSB2) and its path under /dev (pts/3)."""
    real = os.path.realpath(device)
    names = {os.path.basename(real), os.path.basename(device)}
    if real.startswith("/dev/"):
        names.add(real[len("/dev/"):])
    return names


def owns_port(generic, names):
    """True when a modem's modem.generic section lists one of `names` as a port."""
    listed = [str(p).split(" (")[0] for p in generic.get("ports") or ()]
    listed.append(str(generic.get("primary-port") or ""))
    return any(p in names for p in listed)


def find_modem(device, mmcli=None, timeout=MMCLI_TIMEOUT_S):
    """(D-Bus path, modem.generic dict) of the ModemManager modem with `device` among its
    ports, or None. MmcliError when mmcli is missing or ModemManager does not answer."""
    names = port_names(device)
    for path in mmcli_json(["-L"], mmcli, timeout).get("modem-list") or ():
        try:
            generic = mmcli_json(["-m", path], mmcli, timeout)["modem"]["generic"]
        except MmcliError:
            continue  # gone between the list and the query (a re-probe)
        except (KeyError, TypeError):
            continue
        if owns_port(generic, names):
            return path, generic
    return None


def sim_iccid(sim_path, mmcli=None, timeout=MMCLI_TIMEOUT_S):
    """The ICCID ModemManager reads from the SIM at `sim_path` ("" when it has none)."""
    if not sim_path or sim_path in ("/", "--"):
        return ""
    props = mmcli_json(["-i", sim_path], mmcli, timeout).get("sim", {}).get("properties", {})
    iccid = props.get("iccid") or ""
    return "" if iccid == "--" else iccid


def enabled_iccid(session):
    """ICCID of the profile the eUICC has enabled (ES10c.GetProfilesInfo), or None."""
    from ipa_core import es10

    for p in es10.get_profiles_info(session, tags=[0x5A, 0x9F70]):
        if p.get("profileState") == 1:
            return p.get("iccid")
    return None


def _digits(iccid):
    """An ICCID as both sides may write it: upper case, no F padding (MM strips it)."""
    return str(iccid).upper().rstrip("F")


class ModemManagerConnectivity:
    """The Ipa's connectivity for a card on a modem ModemManager owns (module docstring).

    device    the card's device node (/dev/cdc-wdm0)
    session   the ISD-R session (read for the enabled profile's ICCID), or None
    refresh   False: nothing sent, no wait (as without ModemManager)
    mmcli     the mmcli binary (default: mmcli_path())
    log       a logging.Logger

    After refresh(): .modem (D-Bus path, or None when ModemManager does not own the
    modem), .calls ([("disable"|"enable", path)]); after wait_connected(): .iccid.
    """

    stack = None  # no modem HTTP stack: the host's own network carries ESipa

    def __init__(self, device, session=None, refresh=True, mmcli=None, poll_ms=POLL_MS,
                 timeout_s=MMCLI_TIMEOUT_S, log=None):
        self.device = device
        self.session = session
        self.enabled = bool(refresh)
        self.mmcli = mmcli or mmcli_path()
        self.poll_ms = poll_ms
        self.timeout_s = timeout_s
        self.log = log
        self.modem = None
        self.expected = None
        self.iccid = None
        self.calls = []
        self.clock_ms = lambda: int(time.monotonic() * 1000)

    def note(self, level, msg, *args):
        if self.log is not None:
            getattr(self.log, level)("modemmanager: " + msg, *args)

    def _mmcli(self, args, timeout=None):
        return run_mmcli(args, self.mmcli, timeout or self.timeout_s)

    def locate(self, timeout=None, level="info"):
        """find_modem for our device; None (logged at `level`) when ModemManager is not
        there."""
        if self.mmcli is None:
            self.note(level, "mmcli not found (set %s to use ModemManager): no re-attach "
                              "through ModemManager", MMCLI_ENV)
            return None
        try:
            return find_modem(self.device, self.mmcli, timeout or self.timeout_s)
        except MmcliError as e:
            self.note(level, "ModemManager does not answer (%s): no re-attach through it", e)
            return None

    # ---- the Ipa's connectivity --------------------------------------------------------

    def refresh(self):
        """Disable then enable the modem through ModemManager, so that it reads the eUICC
        again and registers with the enabled profile."""
        self.modem = None
        if not self.enabled:
            self.note("info", "profile switch: no re-attach ([card] refresh = false)")
            return
        found = self.locate()
        if found is None:
            self.note("info", "ModemManager does not manage %s: the modem is not re-attached "
                              "by the IPA", self.device)
            return
        self.modem, generic = found
        if self.session is not None:
            try:
                self.expected = enabled_iccid(self.session)
            except (IpaError, ValueError) as e:  # only for the log line: never stops the switch
                self.note("debug", "enabled profile not read: %s", e)
        self.note("info", "profile switch: re-attaching modem %s (%s, state %s) through "
                          "ModemManager: disable, enable", self.modem, self.device,
                  generic.get("state"))
        for verb in ("disable", "enable"):
            self.calls.append((verb, self.modem))
            try:
                self._mmcli(["-m", self.modem, "--" + verb])
            except MmcliError as e:
                self.note("warning", "%s failed: %s; waiting for the network anyway", verb, e)
                return

    def wait_connected(self, timeout_ms):
        """True once ModemManager shows the modem registered or connected within timeout_ms
        (True at once when ModemManager was not used); False when the time is over."""
        if self.modem is None:
            return True
        t0 = self.clock_ms()
        deadline = t0 + max(0, int(timeout_ms))
        self.note("info", "waiting up to %d s for modem %s to register",
                  int(timeout_ms) // 1000, self.device)
        state, woken = None, set()
        while True:
            left_s = max(1, (deadline - self.clock_ms()) // 1000)
            found = self.locate(min(self.timeout_s, left_s), "debug")  # a re-probe: gone a while
            if found is not None:
                path, generic = found
                if path != self.modem:
                    self.note("info", "ModemManager re-probed the modem: now %s", path)
                    self.modem = path
                state = generic.get("state")
                if state in ATTACHED:
                    return self._attached(generic, t0)
                if state == "disabled" and path not in woken:
                    # A re-probed modem starts disabled (and an --enable that failed above
                    # left ours so): enable it, once per modem object.
                    woken.add(path)
                    self.calls.append(("enable", path))
                    try:
                        self._mmcli(["-m", path, "--enable"], min(self.timeout_s, left_s))
                    except MmcliError as e:
                        self.note("warning", "enable failed: %s", e)
                self.note("debug", "modem %s: %s", path, state)
            left = deadline - self.clock_ms()
            if left <= 0:
                self.note("warning", "modem %s not registered within %d s after the profile "
                                     "switch (last state: %s)", self.device,
                          int(timeout_ms) // 1000, state or "not found")
                return False
            time.sleep(min(self.poll_ms, left) / 1000.0)

    def _attached(self, generic, t0):
        try:
            self.iccid = sim_iccid(generic.get("sim"), self.mmcli, self.timeout_s)
        except MmcliError as e:
            self.note("warning", "SIM not read: %s", e)
            self.iccid = ""
        self.note("info", "modem %s %s %d ms after the wait began; SIM ICCID %s",
                  self.modem, generic.get("state"), self.clock_ms() - t0, self.iccid or "unknown")
        if self.expected and self.iccid and _digits(self.iccid) != _digits(self.expected):
            self.note("warning", "the modem runs on ICCID %s, not on the profile the eUICC has "
                                 "enabled (%s): it has not read the eUICC again",
                      self.iccid, self.expected)
        return True


def card_info(card_spec, mmcli=None, timeout=5):
    """The "modemManager" part of `ipa info` for a qmi:/mbim: card: {"modem": D-Bus path,
    "state": modem.generic.state, "device": the card's node} when ModemManager owns the
    modem, else None; never raises."""
    from ipa_host.card.select import parse_card_spec

    try:
        kind, device = parse_card_spec(card_spec)[:2]
    except ValueError:
        return None
    exe = mmcli or mmcli_path()
    if kind not in ("qmi", "mbim") or exe is None:
        return None
    try:
        found = find_modem(device, exe, timeout)
    except MmcliError:
        return None
    if found is None:
        return None
    return {"modem": found[0], "state": found[1].get("state"), "device": device}


def print_card_info(m, out):
    """The text of `ipa info` for the modemManager part."""
    out.write("ModemManager   modem %s (state %s), owns %s\n"
              % (m["modem"].rsplit("/", 1)[-1], m["state"], m["device"]))
