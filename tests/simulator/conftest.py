"""Fixtures for the simulator tests: small runs generated once per session and shared."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from simulator import SimulationConfig, SimulationResult, simulate
from simulator.truth import load_truth

# A fixed end keeps runs reproducible (and inside the heating season, so heat rows appear).
END = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.UTC)


def run(out: Path, **overrides: Any) -> SimulationResult:
    """Simulate into ``out`` with small defaults and the fixed end."""
    values: dict[str, Any] = {"units": 40, "days": 2, "seed": 11, "end": END}
    values.update(overrides)
    return simulate(SimulationConfig(out=out, **values))


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """A 300-unit, 2-day community: a few group rentals and every modelled behaviour.

    Snapshots every 600 s (not the default 300) keep the stream checks quick and exercise the
    interval parameter.
    """
    return run(tmp_path_factory.mktemp("small_run"), units=300, days=2, seed=20250310,
               snapshot_interval=600)


@pytest.fixture(scope="session")
def small_truth(small_run: SimulationResult) -> dict[str, Any]:
    """The small run's truth.json, loaded."""
    return load_truth(small_run.truth_path)
