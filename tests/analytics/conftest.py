"""Small, deterministic worlds for analytics tests: registry CSVs and raw presence events.

Each person or device is a daily routine (when it is home, at which AP, how strong); events
are the snapshots an AP would send every 300 s, plus connect/disconnect at the edges. The
worlds are tiny on purpose: every expected count can be worked out by hand.
"""

from __future__ import annotations

import datetime as dt

import pytest

from analytics.config import Window
from tests.common import recent_last_night

TZ = "Asia/Shanghai"
LAST_NIGHT = dt.date(2026, 11, 10)  # replaced by a recent date where InfluxDB retention matters


@pytest.fixture
def window() -> Window:
    """Fourteen nights ending a couple of days ago."""
    return Window(last_night=recent_last_night(), nights=14, timezone=TZ)
