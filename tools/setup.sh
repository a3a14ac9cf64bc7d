#!/bin/sh
# Install what `make test` / `make demo` need, idempotently and quickly on a
# second run: Debian packages, the .venv with the project and its extras, and
# the MicroPython WebAssembly runtime in .mp/. Works as root or with sudo.
set -eu
cd "$(dirname "$0")/.."

MP_PKG="@micropython/micropython-webassembly-pyscript@1.27.0"
# Debian 12 / Raspberry Pi OS package names. tshark: the tests read --pcap files back
# with a real Wireshark (tests/integration/test_trace.py).
DEBS="python3-venv python3-dev gcc make libpcsclite-dev swig pcscd vsmartcard-vpcd libcoap3-bin tshark"

say() { printf 'setup: %s\n' "$*"; }

missing=""
for p in $DEBS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        say "missing Debian packages:$missing (run as root or install sudo)"; exit 1; fi
    say "installing Debian packages:$missing"
    $SUDO apt-get update -qq
    # env: sudo drops DEBIAN_FRONTEND, and wireshark-common (tshark) asks a question.
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The venv is rebuilt only when pyproject.toml changed since the last install.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$PY" -m venv .venv
fi
stamp=.venv/.installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "pip install -e .[host,test]"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[host,test]"
    echo "$want" > "$stamp"
fi

if [ ! -f ".mp/node_modules/@micropython/micropython-webassembly-pyscript/package.json" ]; then
    say "installing MicroPython runtime ($MP_PKG) into .mp/"
    mkdir -p .mp
    (cd .mp && npm install --silent --no-audit --no-fund --no-save "$MP_PKG")
fi
