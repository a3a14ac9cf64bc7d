"""A simulated ModemManager on D-Bus, owning a simulated QMI/MBIM modem and its eUICC.

    bus = PrivateBus(tmpdir).start()              # a real dbus-daemon on a unix socket
    mm = SimModemManager(card, "/dev/pts/7", "qmi", bus.address).start()
    DBUS_SYSTEM_BUS_ADDRESS=<bus.address> mmcli -L / -m 0 / -m 0 --disable / --enable

What it serves (names and D-Bus types from ModemManager 1.20's introspection
XML, org.freedesktop.ModemManager1*.xml; enum values from ModemManager-enums.h):

  /org/freedesktop/ModemManager1          org.freedesktop.ModemManager1 (Version,
                                          ScanDevices, SetLogging), ObjectManager
                                          (GetManagedObjects, InterfacesAdded/Removed)
  .../Modem/N                             Modem (State, Ports a(su), PrimaryPort, Device,
                                          Sim, SimSlots, ... ; Enable(b)) and Modem3gpp
                                          (RegistrationState, Imei, operator)
  .../SIM/N                               Sim (SimIdentifier = ICCID, Eid, Active, ...)

plus org.freedesktop.DBus.Properties (Get, GetAll; PropertiesChanged and the
Modem's StateChanged signals as the state moves). The SIM's ICCID is the
ICCID of the profile the eUICC (`card`, the one the simulated QMI/MBIM modem
serves) has enabled when the modem was last enabled, as a real modem reads
the SIM when it is enabled. Enable(false): disabling (4) -> disabled (3);
Enable(true): enabling (5) -> enabled (6), then searching (7) and, after
`attach_delay`, registered (8). Each step takes `step_delay`; the method
answers when its step is over, as ModemManager does.

Personalities (faults): textbook; never_registers (stays searching);
reprobe (after Enable(true) finds another ICCID the modem disappears and
comes back under the next index, disabled, as ModemManager re-probes a
modem after a SIM change); enable_fails (Enable answers
org.freedesktop.ModemManager1.Error.Core.Failed). Option no_network_iccids: profiles
with which the modem stays searching (a rollback's "no coverage"). docs/sim-modemmanager.md.

Not simulated: bearers, Simple.Connect, location, messaging, voice,
signal, firmware, SIM PIN; the UIM channels of the simulated QMI/MBIM modem
are left open across Enable(false/true) (the modem's low-power mode here
does not power the card down). `calls` records every Enable: [(index, bool)].
"""

import os
import shutil
import subprocess
import threading
import time

try:
    from jeepney import DBusAddress, HeaderFields, MessageType, new_error, new_method_return, \
        new_signal
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection
except ImportError:  # the simulator says so when started (need_jeepney)
    open_dbus_connection = None

NAME = "org.freedesktop.ModemManager1"
ROOT = "/org/freedesktop/ModemManager1"
I_MM = NAME
I_MODEM = NAME + ".Modem"
I_3GPP = NAME + ".Modem.Modem3gpp"
I_SIM = NAME + ".Sim"
I_PROPS = "org.freedesktop.DBus.Properties"
I_OM = "org.freedesktop.DBus.ObjectManager"
E_FAILED = NAME + ".Error.Core.Failed"
E_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
E_UNKNOWN_PROPERTY = "org.freedesktop.DBus.Error.UnknownProperty"

# MMModemState, MMModem3gppRegistrationState, MMModemPortType (ModemManager-enums.h)
DISABLED, DISABLING, ENABLING, ENABLED, SEARCHING, REGISTERED = 3, 4, 5, 6, 7, 8
REG_IDLE, REG_HOME, REG_SEARCHING = 0, 1, 2
PORT_NET, PORT_QMI, PORT_MBIM = 2, 6, 7
PERSONALITIES = ("textbook", "never_registers", "reprobe", "enable_fails")
VERSION = "1.20.4"
POLL = 0.05
BUS_START_TIMEOUT = 10.0


def need_jeepney():
    """None, or the one-line message to print when the D-Bus library is missing."""
    if open_dbus_connection is None:
        return "the jeepney package (D-Bus) is missing: pip install jeepney, or make setup"
    return None


class PrivateBus:
    """A real dbus-daemon on a unix socket in `folder` (a system-bus-like bus nobody
    else uses): .address for DBUS_SYSTEM_BUS_ADDRESS; stop() ends it."""

    CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_type="method_call"/>
    <allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
  </policy>
</busconfig>
"""

    def __init__(self, folder):
        self.folder = str(folder)
        self.address = None
        self.proc = None

    def start(self):
        exe = shutil.which("dbus-daemon")
        if exe is None:
            raise OSError("dbus-daemon is not installed (Debian package dbus)")
        sock = os.path.join(self.folder, "bus")
        conf = os.path.join(self.folder, "bus.conf")
        with open(conf, "w") as f:
            f.write(self.CONFIG % sock)
        self.proc = subprocess.Popen([exe, "--config-file", conf, "--nofork", "--nopidfile"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + BUS_START_TIMEOUT
        while not os.path.exists(sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise OSError("dbus-daemon did not start on %s" % sock)
            time.sleep(POLL)
        self.address = "unix:path=" + sock
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _v(sig, value):
    return (sig, value)


class SimModemManager:
    """ModemManager owning one modem whose control port is `device` (see module docstring).

    card           the virtual eUICC the simulated QMI/MBIM modem serves (its enabled
                   profile is the SIM's ICCID); None: no SIM
    device         the modem's control node (the simulated modem's pty path); listed as
                   port "<name under /dev> (qmi|mbim)" and as PrimaryPort
    protocol       "qmi" or "mbim"
    bus            D-Bus address to serve on (a PrivateBus's)
    attach_delay   seconds from searching to registered after Enable(true)
    step_delay     seconds of each disabling / enabling step
    no_network_iccids  profiles that find no network: the modem stays searching with them
    """

    def __init__(self, card, device, protocol="qmi", bus=None, personality="textbook",
                 attach_delay=0.3, step_delay=0.05, no_network_iccids=()):
        if personality not in PERSONALITIES:
            raise ValueError("ModemManager personality %r: expected one of %s"
                             % (personality, ", ".join(PERSONALITIES)))
        if protocol not in ("qmi", "mbim"):
            raise ValueError("protocol %r: expected qmi or mbim" % (protocol,))
        self.card = card
        self.device = device
        self.port = os.path.relpath(device, "/dev") if device.startswith("/dev/") else device
        self.protocol = protocol
        self.bus = bus
        self.personality = personality
        self.attach_delay = attach_delay
        self.step_delay = step_delay
        self.no_network_iccids = tuple(no_network_iccids)
        self.index = 0
        self.state = DISABLED
        self.reg = REG_IDLE
        self.iccid = self._read_iccid()
        self.calls = []  # (modem index, enable) per Enable call
        self.conn = None
        self._timers = []  # (when, fn)
        self._thread = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- life cycle ----------------------------------------------------------------------

    def start(self, enabled=True):
        """Own org.freedesktop.ModemManager1 on the bus and serve in a thread; the modem
        starts registered (enabled=True) or disabled. Returns self."""
        missing = need_jeepney()
        if missing:
            raise OSError(missing)
        self.conn = open_dbus_connection(bus=self.bus)
        reply = self.conn.send_and_get_reply(message_bus.RequestName(NAME, 4), timeout=10)
        if reply.body[0] != 1:  # DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER
            self.conn.close()
            raise OSError("%s is already owned on %s" % (NAME, self.bus))
        if enabled:
            self.state, self.reg = REGISTERED, REG_HOME
        self._thread = threading.Thread(target=self._run, name="SimModemManager", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self):
        return self.start() if self._thread is None else self

    def __exit__(self, *exc):
        self.stop()

    # -- objects ---------------------------------------------------------------------------

    @property
    def modem_path(self):
        return "%s/Modem/%d" % (ROOT, self.index)

    @property
    def sim_path(self):
        return "%s/SIM/%d" % (ROOT, self.index) if self.card is not None else "/"

    def _read_iccid(self):
        if self.card is None:
            return ""
        p = self.card.state.enabled_profile()
        return p["iccid"] if p else ""

    def modem_props(self):
        port_type = PORT_QMI if self.protocol == "qmi" else PORT_MBIM
        sysfs = "/sys/devices/platform/ipa-sim/usb1/1-1"
        return {
            "Sim": _v("o", self.sim_path),
            "SimSlots": _v("ao", [self.sim_path] if self.card is not None else []),
            "PrimarySimSlot": _v("u", 1),
            "Bearers": _v("ao", []),
            "SupportedCapabilities": _v("au", [8]),  # LTE
            "CurrentCapabilities": _v("u", 8),
            "MaxBearers": _v("u", 1),
            "MaxActiveBearers": _v("u", 1),
            "MaxActiveMultiplexedBearers": _v("u", 0),
            "Manufacturer": _v("s", "ipa-sim"),
            "Model": _v("s", "simulated %s modem" % self.protocol.upper()),
            "Revision": _v("s", VERSION),
            "CarrierConfiguration": _v("s", ""),
            "CarrierConfigurationRevision": _v("s", ""),
            "HardwareRevision": _v("s", "1"),
            "DeviceIdentifier": _v("s", "ipasim%040d" % self.index),
            "Device": _v("s", sysfs),
            "Physdev": _v("s", sysfs),
            "Drivers": _v("as", ["qmi_wwan" if self.protocol == "qmi" else "cdc_mbim"]),
            "Plugin": _v("s", "generic"),
            "PrimaryPort": _v("s", self.port),
            "Ports": _v("a(su)", [(self.port, port_type), ("wwan0", PORT_NET)]),
            "EquipmentIdentifier": _v("s", "490154203237518"),
            "UnlockRequired": _v("u", 1),  # MM_MODEM_LOCK_NONE
            "UnlockRetries": _v("a{uu}", {}),
            "State": _v("i", self.state),
            "StateFailedReason": _v("u", 0),
            "AccessTechnologies": _v("u", 1 << 14 if self.state >= REGISTERED else 0),
            "SignalQuality": _v("(ub)", (70 if self.state >= REGISTERED else 0, True)),
            "OwnNumbers": _v("as", []),
            "PowerState": _v("u", 3),  # MM_MODEM_POWER_STATE_ON
            "SupportedModes": _v("a(uu)", [(8, 8)]),  # 4G
            "CurrentModes": _v("(uu)", (8, 8)),
            "SupportedBands": _v("au", []),
            "CurrentBands": _v("au", []),
            "SupportedIpFamilies": _v("u", 7),
        }

    def modem3gpp_props(self):
        registered = self.reg in (REG_HOME, 5)
        return {
            "Imei": _v("s", "490154203237518"),
            "RegistrationState": _v("u", self.reg),
            "OperatorCode": _v("s", "00101" if registered else ""),
            "OperatorName": _v("s", "ipa-sim network" if registered else ""),
            "EnabledFacilityLocks": _v("u", 0),
            "EpsUeModeOperation": _v("u", 0),
            "Pco": _v("a(ubay)", []),
            "InitialEpsBearer": _v("o", "/"),
            "InitialEpsBearerSettings": _v("a{sv}", {}),
            "PacketServiceState": _v("u", 2 if registered else 1),
        }

    def sim_props(self):
        return {
            "Active": _v("b", True),
            "SimIdentifier": _v("s", self.iccid),
            "Imsi": _v("s", ("00101" + self.iccid[-10:]) if self.iccid else ""),
            "Eid": _v("s", getattr(self.card, "eid", "")),
            "OperatorIdentifier": _v("s", "00101"),
            "OperatorName": _v("s", "ipa-sim"),
            "EmergencyNumbers": _v("as", []),
            "PreferredNetworks": _v("a(su)", []),
            "Gid1": _v("ay", b""),
            "Gid2": _v("ay", b""),
            "SimType": _v("u", 2),  # MM_SIM_TYPE_ESIM
            "EsimStatus": _v("u", 2),  # MM_SIM_ESIM_STATUS_WITH_PROFILES
            "Removability": _v("u", 2),  # MM_SIM_REMOVABILITY_NOT_REMOVABLE
        }

    def interfaces(self, path):
        """{interface: properties} of the object at `path`, or None."""
        if path == ROOT:
            return {I_MM: {"Version": _v("s", VERSION)}}
        if path == self.modem_path:
            return {I_MODEM: self.modem_props(), I_3GPP: self.modem3gpp_props()}
        if self.card is not None and path == self.sim_path:
            return {I_SIM: self.sim_props()}
        return None

    def managed_objects(self):
        return {self.modem_path: {name: props for name, props in
                                  self.interfaces(self.modem_path).items()}}

    # -- serving -----------------------------------------------------------------------------

    def _run(self):
        while not self._stop.is_set():
            now = time.monotonic()
            due = [t for t in self._timers if t[0] <= now]
            for t in due:
                self._timers.remove(t)
                t[1]()
            wait = POLL
            if self._timers:
                wait = max(0.0, min(wait, min(t[0] for t in self._timers) - now))
            try:
                msg = self.conn.receive(timeout=wait)
            except TimeoutError:
                continue
            except (OSError, ValueError):
                return  # the bus went away
            if msg.header.message_type == MessageType.method_call:
                self._dispatch(msg)

    def later(self, delay, fn):
        self._timers.append((time.monotonic() + delay, fn))

    def _dispatch(self, msg):
        f = msg.header.fields
        path, iface, member = (f.get(HeaderFields.path), f.get(HeaderFields.interface),
                               f.get(HeaderFields.member))
        objects = self.interfaces(path)
        if objects is None:
            return self.conn.send(new_error(msg, E_UNKNOWN_METHOD, "s",
                                            ("no object at %s" % path,)))
        if iface == I_PROPS and member == "GetAll":
            return self.conn.send(new_method_return(msg, "a{sv}",
                                                    (objects.get(msg.body[0], {}),)))
        if iface == I_PROPS and member == "Get":
            value = objects.get(msg.body[0], {}).get(msg.body[1])
            if value is None:
                return self.conn.send(new_error(msg, E_UNKNOWN_PROPERTY, "s",
                                                ("no property %s.%s" % msg.body[:2],)))
            return self.conn.send(new_method_return(msg, "v", (value,)))
        if path == ROOT and iface == I_OM and member == "GetManagedObjects":
            return self.conn.send(new_method_return(msg, "a{oa{sa{sv}}}",
                                                    (self.managed_objects(),)))
        if path == ROOT and iface == I_MM and member in ("ScanDevices", "SetLogging"):
            return self.conn.send(new_method_return(msg))
        if path == self.modem_path and iface == I_MODEM and member == "Enable":
            return self._enable(msg, bool(msg.body[0]))
        self.conn.send(new_error(msg, E_UNKNOWN_METHOD, "s",
                                 ("%s.%s is not simulated" % (iface, member),)))

    # -- the modem's state machine -----------------------------------------------------------

    def _set_state(self, state, reg=None):
        old = self.state
        self.state = state
        changed = {"State": _v("i", state)}
        if reg is not None:
            self.reg = reg
            self.conn.send(new_signal(DBusAddress(self.modem_path, interface=I_PROPS),
                                      "PropertiesChanged", "sa{sv}as",
                                      (I_3GPP, {"RegistrationState": _v("u", reg)}, [])))
        self.conn.send(new_signal(DBusAddress(self.modem_path, interface=I_PROPS),
                                  "PropertiesChanged", "sa{sv}as", (I_MODEM, changed, [])))
        self.conn.send(new_signal(DBusAddress(self.modem_path, interface=I_MODEM),
                                  "StateChanged", "iiu", (old, state, 1)))

    def _enable(self, msg, enable):
        self.calls.append((self.index, enable))
        if self.personality == "enable_fails":
            return self.conn.send(new_error(msg, E_FAILED, "s",
                                            ("simulated failure of %s" %
                                             ("enabling" if enable else "disabling"),)))
        if enable == (self.state >= ENABLED):
            return self.conn.send(new_method_return(msg))  # already there, as MM answers
        if not enable:
            self._set_state(DISABLING)

            def disabled():
                self._set_state(DISABLED, REG_IDLE)
                self.conn.send(new_method_return(msg))

            return self.later(self.step_delay, disabled)
        self._set_state(ENABLING)
        self.later(self.step_delay, lambda: self._enabled(msg))

    def _enabled(self, msg):
        """The modem read the SIM again: its ICCID is the eUICC's enabled profile now."""
        before, self.iccid = self.iccid, self._read_iccid()
        self._set_state(ENABLED)
        self.conn.send(new_method_return(msg))
        if self.personality == "reprobe" and self.iccid != before:
            self.later(self.step_delay, self._reprobe)
            return
        self._set_state(SEARCHING, REG_SEARCHING)
        if self.personality != "never_registers" and self.iccid not in self.no_network_iccids:
            self.later(self.attach_delay, lambda: self._set_state(REGISTERED, REG_HOME))

    def _reprobe(self):
        """The SIM changed: ModemManager drops the modem and probes it again under the next
        index; the new modem object starts disabled."""
        om = DBusAddress(ROOT, interface=I_OM)
        self.conn.send(new_signal(om, "InterfacesRemoved", "oas",
                                  (self.modem_path, [I_MODEM, I_3GPP])))
        self.index += 1
        self.state, self.reg = DISABLED, REG_IDLE
        self.conn.send(new_signal(om, "InterfacesAdded", "oa{sa{sv}}",
                                  (self.modem_path, self.managed_objects()[self.modem_path])))
        self.personality = "textbook"  # the re-probed modem behaves


def serve_for(modem, protocol, card, bus="private", personality="textbook"):
    """`ipa-sim modem --protocol qmi|mbim --modemmanager [BUS]`: a SimModemManager owning
    the started `modem`, on the D-Bus address `bus` or ("private") on a dbus-daemon of its
    own in a temporary folder. Returns (stop(), the line telling mmcli where to look)."""
    import tempfile

    missing = need_jeepney()
    if missing:
        raise OSError(missing)
    private = folder = None
    if bus == "private":
        folder = tempfile.mkdtemp(prefix="ipa-sim-mm-")
        private = PrivateBus(folder).start()
        bus = private.address
    try:
        mm = SimModemManager(card, modem.path, protocol, bus, personality).start()
    except BaseException:
        if private is not None:
            private.stop()
        raise

    def stop():
        mm.stop()
        if private is not None:
            private.stop()
            shutil.rmtree(folder, ignore_errors=True)

    return stop, "DBUS_SYSTEM_BUS_ADDRESS=%s" % bus
