#!/usr/bin/env bash
# Install everything wifi-census needs on a Debian machine, idempotently, without Docker:
# Debian's servers (Mosquitto, Redis, InfluxDB 1.x, PostgreSQL), Chromium for browser tests,
# CJK fonts for screenshots and charts, and the Python package with its test tools in .venv.
# apt installs the servers but does not start them; `wifi-census services up` does, on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

DEBIAN_PACKAGES=(mosquitto mosquitto-clients redis-server influxdb postgresql chromium
                 fonts-noto-cjk python3-venv)
missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the dependency list changed (the stamp holds pyproject.toml's hash).
stamp=.venv/.wifi-census-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "setup: installing the Python package and its test tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$wanted" > "$stamp"
fi
echo "setup: done"
