#!/usr/bin/env bash
# Refresh uv.lock from pyproject.toml's ranges: the one way the locked versions change. Review the
# diff (and run ./scripts/test.sh) before committing it. Pass uv options through, for example
# `./scripts/lock.sh --upgrade-package mypy` to move one package on.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .tools/bin/uv ] || ./scripts/setup.sh
UV_PYTHON_DOWNLOADS=never exec .tools/bin/uv lock "$@"
