"""Fixtures for the simulator tests: small runs generated once per session and shared."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import SimulationResult
from simulator.truth import load_truth
from tests.common import simulate_into


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """A 300-unit, 2-day community: a few group rentals and every modelled behaviour.

    Snapshots every 600 s (not the default 300) keep the stream checks quick and exercise the
    interval parameter.
    """
    return simulate_into(tmp_path_factory.mktemp("small_run"), units=300, days=2, seed=20250310,
               snapshot_interval=600)


@pytest.fixture(scope="session")
def small_truth(small_run: SimulationResult) -> dict[str, Any]:
    """The small run's truth.json, loaded."""
    return load_truth(small_run.truth_path)
