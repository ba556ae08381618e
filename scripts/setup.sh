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
                 fonts-noto-cjk python3-venv busybox shellcheck openssl)
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
# uv installs the locked dependencies (uv.lock: exact versions and hashes for every platform and
# Python we support), so every set-up from one commit gets the same packages on any day. uv
# itself comes pinned with hashes (scripts/uv-requirements.txt) into a small venv of its own,
# apart from .venv, which `uv sync` keeps exactly equal to the lock.
if [ ! -x .tools/bin/uv ] || [ "$(.tools/bin/uv --version | cut -d' ' -f2)" != \
     "$(sed -n 's/^uv==\([0-9.]*\).*/\1/p' scripts/uv-requirements.txt)" ]; then
  echo "setup: installing uv (pinned, hash-checked) into .tools"
  "$PYTHON" -m venv .tools
  .tools/bin/python -m pip install -q --disable-pip-version-check --require-hashes \
    -r scripts/uv-requirements.txt
fi
echo "setup: installing the locked Python dependencies and the package into .venv"
# --locked: stop if uv.lock no longer matches pyproject.toml (refresh with ./scripts/lock.sh).
UV_PYTHON_DOWNLOADS=never .tools/bin/uv sync --locked --extra test --group build --python "$PYTHON" --quiet
echo "setup: done"
