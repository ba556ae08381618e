"""ruff and mypy are part of the test command: a lint or type error fails the suite."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    """Run a tool from this environment in the repository root."""
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_finds_nothing() -> None:
    """ruff (rules B, E, F, I, UP, W) passes on the whole repository."""
    result = run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing() -> None:
    """mypy passes on every package."""
    result = run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


# A whole-string pattern anchored with "$" also matches before a final newline: a nonce
# "…\n" passed for 16 hex characters in the AP command verifier (issue #11).
DOLLAR_ANCHORED = re.compile(
    r"""re\.(?:compile|match|fullmatch|search)\(\s*r?f?["']\^[^"'\n]*\$["']""")


def test_no_validation_pattern_ends_with_a_dollar() -> None:
    """Validation patterns use \\A and \\Z (or fullmatch), never ^ and $."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["packages"]
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for package in packages for path in sorted((ROOT / package).rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if DOLLAR_ANCHORED.search(line)]
    assert not found, "\n".join(found)
    assert DOLLAR_ANCHORED.search('X = re.compile(r"^[0-9a-f]{16}$")')  # the check can fail
