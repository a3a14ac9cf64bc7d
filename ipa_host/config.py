"""The `ipa` configuration file (TOML) and its defaults.

Looked up in this order: `--config FILE`, `$IPA_CONFIG`, `~/.config/ipa-iot/ipa.toml`,
`/etc/ipa-iot/ipa.toml`; none is fine (defaults). Command-line options win over
the file. Unknown sections or keys are errors, so a typo never goes unnoticed.
The example with every key explained ships as ipa_host/contrib/ipa.toml (`ipa service
install` puts it in /etc/ipa-iot/); a test keeps it in step with DEFAULTS.

    [card]
    spec = "sim"                 # sim | pcsc[:reader] | at:auto | at:/dev/ttyUSB2?baud=115200&mode=auto
    segment_size = 255           # STORE DATA block size (omit: modem profile's)
    sgp32 = "1.2"                # SGP.32 version of the eUICC
    refresh = true               # after a profile switch, make the modem read the eUICC
                                 # again: at: cards AT+CFUN=0/1; qmi:/mbim: disable + enable
                                 # through ModemManager when it owns the modem (mmcli;
                                 # $IPA_MMCLI names another binary). Default true; others: unused
    attach_timeout = 180         # at:, qmi:, mbim: seconds for registration (and the bearer
                                 # of --network modem) after a profile switch, else rollback
    refresh_flag = true          # refreshFlag the IPA gives the eUICC when it switches
                                 # profiles itself (ProfileRollback, ImmediateEnable,
                                 # fallback / emergency): true asks the eUICC for a REFRESH
                                 # proactive command; false when the device resets the
                                 # modem itself (SGP.32 5.9.16, ES10b)

    [eim]
    id = ""                      # eIM to use (eimId); empty: the first configured one
    url = ""                     # override, e.g. "https://eim.example.com:8443"
    binding = "asn1"             # asn1 | json
    ca_file = ""                 # CA bundle instead of the eUICC's trustedPublicKeyDataTls;
                                 # with network = "modem": the eIM's CA PEM for the modem
    allow_http = false           # plain HTTP to the eIM: lab use only
    timeout = 30                 # seconds per network wait
    network = "socket"           # socket (the host's TCP/TLS) | modem | modem:quectel |
                                 # modem:sim7080 | modem:simcom (the modem's HTTP(S) stack)

    [download]
    mode = "auto"                # auto (as the eIM configuration says) | direct | indirect
    smdp_ca_file = ""            # CA bundle for SM-DP+ TLS (default: the system CAs)
    max_package = 4194304        # bytes of a bound profile package accepted at most (it is
                                 # streamed: RAM use does not grow with it)
    min_rate = 256               # bytes/s: the package's download gets 4 x timeout plus
                                 # 1 s per min_rate bytes that came (a slow link finishes,
                                 # a drip does not hold the IPA)

    [ipa]
    home = "~/.local/share/ipa-iot"   # state folder (IPA progress, virtual eUICC)
    poll_interval = 60           # seconds between polls when idle (grows to max_interval)
    max_interval = 3600
    error_backoff = 30           # seconds after a failed cycle (doubling to 1800); also the
                                 # first wait before an SM-DP+ that did not take a
                                 # notification is tried again
    max_attempts = 5             # tries of one step the eUICC or the eIM refuses (an
                                 # answer, not silence) before the IPA gives up on it
                                 # (docs/resilience.md)
    log_level = "info"           # debug | info | warning | error
"""

import os

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

DEFAULTS = {
    "card": {"spec": "sim", "segment_size": None, "sgp32": "1.2", "refresh": None,
             "attach_timeout": 180, "refresh_flag": True},
    "eim": {"id": "", "url": "", "binding": "asn1", "ca_file": "", "allow_http": False,
            "timeout": 30, "network": "socket"},
    "download": {"mode": "auto", "smdp_ca_file": "", "max_package": 4 * 1024 * 1024,
                 "min_rate": 256},
    "ipa": {"home": "", "poll_interval": 60, "max_interval": 3600, "error_backoff": 30,
            "max_attempts": 5, "log_level": "info"},
}
CHOICES = {
    ("card", "sgp32"): ("1.0", "1.1", "1.2"),
    ("eim", "binding"): ("asn1", "json"),
    ("download", "mode"): ("auto", "direct", "indirect"),
    ("ipa", "log_level"): ("debug", "info", "warning", "error"),
}
RANGES = {
    ("card", "segment_size"): (1, 255),
    ("card", "attach_timeout"): (1, 3600),
    ("eim", "timeout"): (1, 600),
    ("download", "max_package"): (1024, 0xFFFFFF),
    ("download", "min_rate"): (1, 10000000),
    ("ipa", "poll_interval"): (1, 7 * 86400),
    ("ipa", "max_interval"): (1, 7 * 86400),
    ("ipa", "error_backoff"): (1, 86400),
    ("ipa", "max_attempts"): (1, 100),
}


BOOLS = (("card", "refresh"),)  # true/false keys whose default None means "by card kind"


class ConfigError(ValueError):
    """The configuration file is unusable; the message names file, key and problem."""


NETWORKS = ("socket", "modem", "modem:quectel", "modem:sim7080", "modem:simcom")


def parse_network(value):
    """How the IPA reaches the eIM: 'socket', 'modem' (the modem's HTTP stack, picked from
    its identity) or 'modem:<stack>' (a name or alias of ipa_core.at_http) -> one of
    NETWORKS; ValueError naming the choices."""
    v = (value or "socket").strip().lower()
    if v in ("socket", "modem"):
        return v
    if v.startswith("modem:"):
        from ipa_core import at_http

        try:
            return "modem:" + at_http.resolve(v[6:])
        except ValueError:
            pass
    raise ValueError("network %r: expected one of %s" % (value, ", ".join(NETWORKS)))


def search_path():
    home = os.path.expanduser("~")
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return [os.path.join(xdg, "ipa-iot", "ipa.toml"), "/etc/ipa-iot/ipa.toml"]


def find_config(explicit=None):
    """The file to read, or None. An explicit file (option or $IPA_CONFIG) must exist."""
    explicit = explicit or os.environ.get("IPA_CONFIG")
    if explicit:
        if not os.path.isfile(explicit):
            raise ConfigError("configuration file %s does not exist" % explicit)
        return explicit
    for p in search_path():
        if os.path.isfile(p):
            return p
    return None


def _check(path, section, key, value):
    default = DEFAULTS[section][key]
    where = "%s: [%s] %s" % (path, section, key)
    if (section, key) in RANGES:
        lo, hi = RANGES[(section, key)]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError("%s = %r: expected a whole number %d..%d" % (where, value, lo, hi))
    elif isinstance(default, bool) or (section, key) in BOOLS:
        if not isinstance(value, bool):
            raise ConfigError("%s = %r: expected true or false" % (where, value))
    elif not isinstance(value, str):
        raise ConfigError("%s = %r: expected text in quotes" % (where, value))
    if (section, key) in CHOICES and value not in CHOICES[(section, key)]:
        raise ConfigError("%s = %r: expected one of %s"
                          % (where, value, ", ".join(CHOICES[(section, key)])))
    if (section, key) == ("eim", "network"):
        try:
            return parse_network(value)
        except ValueError:
            raise ConfigError("%s = %r: expected one of %s" % (where, value, ", ".join(NETWORKS)))
    return value


def load_config(path=None):
    """Defaults overlaid with the file at `path` (if any); returns {section: {key: value}}."""
    cfg = {s: dict(v) for s, v in DEFAULTS.items()}
    cfg["_path"] = path
    if path is None:
        return cfg
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError("cannot read configuration %s: %s" % (path, e))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("configuration %s is not valid TOML: %s" % (path, e))
    for section, values in data.items():
        if section not in DEFAULTS:
            raise ConfigError("%s: unknown section [%s] (known: %s)"
                              % (path, section, ", ".join(sorted(DEFAULTS))))
        if not isinstance(values, dict):
            raise ConfigError("%s: %s must be a [section]" % (path, section))
        for key, value in values.items():
            if key not in DEFAULTS[section]:
                raise ConfigError("%s: unknown key [%s] %s (known: %s)"
                                  % (path, section, key, ", ".join(sorted(DEFAULTS[section]))))
            cfg[section][key] = _check(path, section, key, value)
    if cfg["ipa"]["max_interval"] < cfg["ipa"]["poll_interval"]:
        raise ConfigError("%s: [ipa] max_interval %d is below poll_interval %d"
                          % (path, cfg["ipa"]["max_interval"], cfg["ipa"]["poll_interval"]))
    return cfg
