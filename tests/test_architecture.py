"""Imports point one way: no package imports one above it (docs/architecture.md).

Every module of every package is parsed (module-level and function-level imports alike, so a
lazy import inside a click command counts); a package absent from the checkout is skipped, so
the rules can name a package before it exists.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each package's layer; a package may import its own layer's package only if ALLOWED says so.
LAYERS: dict[str, int] = {
    "census": 0,  # foundation: settings, privacy, MQTT client, the contracts
    "timeseries": 1,  # the InfluxDB schema and store
    "registry": 1,  # the SQL models and what works on them alone
    "collector": 2,
    "apcommands": 2,
    "analytics": 2,
    "simulator": 2,
    "portal": 3,
    "wifi_census": 4,  # command line, demo, local servers, provisioning, accuracy harness
}
# Same-layer imports with a real need, each with its reason (docs/architecture.md); one way only.
ALLOWED: dict[tuple[str, str], str] = {
    ("registry", "timeseries"): "registry.retention deletes raw presence and roll-ups past their "
                                "retention through the time-series store",
}


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every absolute import in a file, wherever it sits."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def package_modules() -> Iterator[tuple[str, Path]]:
    """(package, file) for every Python file of every package present."""
    for package in LAYERS:
        folder = ROOT / package
        if folder.is_dir():
            for path in sorted(folder.rglob("*.py")):
                yield package, path


def violations(package: str, path: Path, name: str) -> list[str]:
    """Each import in one file of package that reaches above it (or beside it, unless allowed)."""
    found = []
    for line, module in imports_of(path):
        target = module.split(".")[0]
        if target == package or target not in LAYERS:
            continue
        upward = LAYERS[target] > LAYERS[package]
        sideways = LAYERS[target] == LAYERS[package] and (package, target) not in ALLOWED
        if upward or sideways:
            found.append(f"{name}:{line}: {package} (layer {LAYERS[package]}) imports {module} "
                         f"(layer {LAYERS[target]})")
    return found


def test_no_package_imports_one_above_it() -> None:
    """The real import graph obeys the layers."""
    present = [package for package in LAYERS if (ROOT / package).is_dir()]
    assert {"census", "registry", "collector", "analytics", "simulator", "portal",
            "wifi_census"} <= set(present)
    found = [violation for package, path in package_modules()
             for violation in violations(package, path, str(path.relative_to(ROOT)))]
    assert found == []


def test_every_top_level_package_has_a_layer() -> None:
    """A new package must be placed in the layers before it can be imported."""
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert packages - set(LAYERS) - {"tests", "bench"} == set()


@pytest.mark.parametrize(("package", "source", "expected"), [
    ("census", "def f():\n    from portal import x\n", "census (layer 0) imports portal"),
    ("registry", "import analytics.flags\n", "registry (layer 1) imports analytics.flags"),
    ("collector", "from analytics.rollup import y\n", "collector (layer 2) imports analytics"),
    ("portal", "from wifi_census.cli import main\n", "portal (layer 3) imports wifi_census"),
])
def test_the_check_catches_an_upward_or_sideways_import(tmp_path: Path, package: str,
                                                        source: str, expected: str) -> None:
    """A forbidden import, even one hidden inside a function, is reported with its line."""
    probe = tmp_path / "_probe.py"
    probe.write_text(source, encoding="utf-8")
    found = violations(package, probe, f"{package}/_probe.py")
    assert len(found) == 1 and expected in found[0], found


def test_a_downward_import_passes(tmp_path: Path) -> None:
    """Importing the foundation or a lower layer is what the layers are for."""
    probe = tmp_path / "_probe.py"
    probe.write_text("from census.settings import Settings\nimport registry.models\n"
                     "def f():\n    from analytics import flags\n", encoding="utf-8")
    assert violations("portal", probe, "portal/_probe.py") == []
