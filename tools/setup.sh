#!/bin/sh
# Install what `make test` (default) or `make demo` (`setup.sh demo`) needs,
# idempotently and quickly on a second run. The demo needs only the .venv with
# the project (pip install -e .); the tests also need Debian packages (pcscd,
# vpcd, compilers for pyscard), the extras and the MicroPython WebAssembly
# runtime in .mp/. Works as root or with sudo; says what it does before each
# slow step.
set -eu
cd "$(dirname "$0")/.."

WHAT=${1:-test}
MP_PKG="@micropython/micropython-webassembly-pyscript@1.27.0"
# Debian 12 / Raspberry Pi OS package names. libqmi-utils/libmbim-utils: qmicli and mbimcli
# check the simulated QMI/MBIM modems (tests/integration/test_qmi_mbim_interop.py). tshark: the tests read --pcap files back
# with a real Wireshark (tests/integration/test_trace.py). dbus: the private bus of the simulated
# ModemManager; libgudev-1.0-0: what mmcli links besides GLib (mmcli itself: see below).
case "$WHAT" in
    demo) DEBS="python3-venv"; EXTRAS=""; NEED_NODE=no ;;
    test) DEBS="python3-venv python3-dev gcc make libpcsclite-dev swig pcscd vsmartcard-vpcd libcoap3-bin tshark libqmi-utils libmbim-utils dbus libgudev-1.0-0"
          EXTRAS="[host,test]"; NEED_NODE=yes ;;
    *) echo "usage: tools/setup.sh [test|demo]" >&2; exit 2 ;;
esac

say() { printf 'setup: %s\n' "$*"; }

if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO=none; fi
missing=""
for p in $DEBS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ "$NEED_NODE" = yes ]; then
    command -v node >/dev/null 2>&1 || missing="$missing nodejs"
    command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi
if [ -n "$missing" ]; then
    if [ "$SUDO" = none ]; then
        say "missing Debian packages:$missing (run as root or install sudo)"; exit 1; fi
    say "installing Debian packages:$missing"
    $SUDO apt-get update -qq
    # env: sudo drops DEBIAN_FRONTEND, and wireshark-common (tshark) asks a question.
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The venv is reinstalled only when pyproject.toml changed since the last install
# of this set (a test install also serves the demo).
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$PY" -m venv .venv
fi
want=$(sha256sum < pyproject.toml | cut -c1-16)
stamp=.venv/.installed-$WHAT
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "pip install -e .$EXTRAS into .venv (once, and after pyproject.toml changes)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$EXTRAS"
    echo "$want" > "$stamp"
    if [ "$WHAT" = test ]; then echo "$want" > .venv/.installed-demo; fi
fi

# The real mmcli checks the simulated ModemManager (tests/integration/test_modemmanager.py).
# Never `apt-get install modemmanager`: that starts the daemon, which takes the machine's real
# modems. The packages are only downloaded (no root needed) and unpacked into .venv/mm/;
# .venv/mm/mmcli runs the unpacked binary with the unpacked libmm-glib.
if [ "$WHAT" = test ] && [ ! -x .venv/mm/mmcli ]; then
    say "unpacking mmcli (Debian modemmanager, without installing its daemon) into .venv/mm/"
    rm -rf .venv/mm.new && mkdir -p .venv/mm.new
    if ! (cd .venv/mm.new && apt-get download -qq modemmanager libmm-glib0 2>/dev/null); then
        [ "$SUDO" != none ] && $SUDO apt-get update -qq
        (cd .venv/mm.new && apt-get download -qq modemmanager libmm-glib0)
    fi
    for deb in .venv/mm.new/*.deb; do dpkg-deb -x "$deb" .venv/mm.new/root; done
    rm -f .venv/mm.new/*.deb
    cat > .venv/mm.new/mmcli <<'EOF'
#!/bin/sh
# mmcli unpacked from Debian's modemmanager package by tools/setup.sh (no daemon installed).
root=$(dirname "$0")/root
for lib in "$root"/usr/lib/*-linux-gnu*; do :; done
LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$root/usr/bin/mmcli" "$@"
EOF
    chmod +x .venv/mm.new/mmcli
    rm -rf .venv/mm && mv .venv/mm.new .venv/mm
fi

if [ "$NEED_NODE" = yes ] && [ ! -f ".mp/node_modules/@micropython/micropython-webassembly-pyscript/package.json" ]; then
    say "installing MicroPython runtime ($MP_PKG) into .mp/"
    mkdir -p .mp
    (cd .mp && npm install --silent --no-audit --no-fund --no-save "$MP_PKG")
fi
exit 0
