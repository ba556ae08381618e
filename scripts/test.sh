#!/usr/bin/env bash
# Set up from nothing and run the whole test suite (lint and type checks included) against the
# real local servers, then stop the servers. The exit code is pytest's.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh || exit 1
.venv/bin/wifi-census services up --postgres || exit 1
.venv/bin/python -m pytest "$@"
status=$?
.venv/bin/wifi-census services down
exit $status
