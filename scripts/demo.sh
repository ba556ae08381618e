#!/usr/bin/env bash
# Set up from nothing and run the demo: a simulated community flows through the broker,
# the collector, InfluxDB and analytics to flags, and the portal keeps serving on 127.0.0.1
# (stop everything with `.venv/bin/wifi-census services down`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/wifi-census services up
exec .venv/bin/wifi-census demo "$@"
