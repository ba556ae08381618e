"""The time-series package: the whole InfluxDB schema behind one store interface.

Callers depend on ``TimeSeriesStore`` and get one from ``open_store(settings)``; the schema
(``schema``), the one line-protocol writer (``lineprotocol``, ``presence``) and every InfluxQL
statement (``queries``) live here. Imports only ``census``.
"""

from __future__ import annotations

from census.settings import Settings
from timeseries.influx_v1 import InfluxV1Store
from timeseries.lineprotocol import Point
from timeseries.store import (
    PermanentStoreError,
    StoreError,
    TimeSeriesStore,
    TransientStoreError,
)

__all__ = [
    "PermanentStoreError",
    "Point",
    "StoreError",
    "TimeSeriesStore",
    "TransientStoreError",
    "open_store",
]


def open_store(settings: Settings, *, database: str | None = None,
               timeout_s: float = 30.0) -> TimeSeriesStore:
    """The store the settings describe (the one place a concrete adapter is chosen).

    Every InfluxDB this project runs against (1.x here, 2.7 in production through its v1
    API and a DBRP mapping) is reached through the v1 adapter; native 2.x/3.x adapters would
    be chosen here.
    """
    return InfluxV1Store.from_settings(settings, database=database, timeout_s=timeout_s)
