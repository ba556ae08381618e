"""Dependencies are locked: uv.lock matches pyproject.toml, and every installer uses it.

A fresh clone once resolved whatever the registry served that day; a new mypy then failed the
suite with no change of ours. These tests keep the lock the single source of versions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UV = ROOT / ".tools" / "bin" / "uv"


def uv_binary() -> str:
    """The pinned uv that scripts/setup.sh installs (or one on PATH outside a set-up checkout)."""
    if UV.exists():
        return str(UV)
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is missing: run ./scripts/setup.sh")
    return found


def test_the_lock_matches_pyproject() -> None:
    """`uv lock --check` passes: pyproject.toml and uv.lock agree (else ./scripts/lock.sh)."""
    result = subprocess.run(
        [uv_binary(), "lock", "--check", "--offline"],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_changed_range_is_noticed(tmp_path: Path) -> None:
    """The check fails once pyproject.toml asks for something the lock does not record."""
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    pyproject = tmp_path / "pyproject.toml"
    # A new runtime dependency the lock holds only as a test tool: resolvable offline, but the
    # lock no longer records what pyproject.toml asks for.
    text = pyproject.read_text()
    assert '"click>=8.1,<9",' in text
    pyproject.write_text(text.replace('"click>=8.1,<9",', '"click>=8.1,<9", "pyyaml>=6",'))
    result = subprocess.run(
        [uv_binary(), "lock", "--check", "--offline"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )
    assert result.returncode != 0
    assert "needs to be updated" in result.stderr, result.stderr


def test_every_dependency_is_locked_to_one_version_with_hashes() -> None:
    """Each locked package from the registry names an exact version and sha256 hashes."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = [p for p in lock["package"] if p["name"] != "wifi-census"]
    assert len(packages) > 40
    for package in packages:
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", package["version"]), package["name"]
        files = list(package.get("wheels", [])) + ([package["sdist"]] if "sdist" in package else [])
        assert files, package["name"]
        assert all(f["hash"].startswith("sha256:") for f in files), package["name"]


def test_setup_installs_from_the_lock() -> None:
    """scripts/setup.sh syncs .venv from uv.lock, refusing a stale lock; uv itself is hashed."""
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert re.search(r"uv sync --locked", setup)
    assert "pip install" not in setup.replace(
        "pip install -q --disable-pip-version-check --require-hashes", "")
    bootstrap = (ROOT / "scripts" / "uv-requirements.txt").read_text()
    assert re.search(r"^uv==\d+\.\d+\.\d+ \\$", bootstrap, re.M)
    assert bootstrap.count("--hash=sha256:") >= 2
