"""The community simulator: a synthetic district with ground truth (docs/simulator.md).

``simulate(config)`` writes the registry CSVs, the event stream and the truth into a folder;
``publish(settings, events_path)`` sends a recorded stream to the broker.
"""

from simulator.config import ConfigError, SimulationConfig
from simulator.publisher import publish
from simulator.run import SimulationResult, simulate

__all__ = ["ConfigError", "SimulationConfig", "SimulationResult", "publish", "simulate"]
