"""The one time-series store interface the rest of the system depends on, and its errors.

Failures are split the way the collector needs them: ``TransientStoreError`` (cannot reach the
server, 5xx, 429: retry or spool) and ``PermanentStoreError`` (the server rejected the data or
query: retrying will not help).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import pandas as pd

from timeseries.lineprotocol import Point

SeriesChunk = tuple[list[str], dict[str, str], list[list[Any]]]


class StoreError(RuntimeError):
    """The time-series store failed."""


class TransientStoreError(StoreError):
    """A failure that may pass: the server is unreachable, overloaded or restarting."""


class PermanentStoreError(StoreError):
    """The server rejected the request; sending it again will fail again."""


class TimeSeriesStore(Protocol):
    """What the rest of the system needs from a time-series store (one adapter per server)."""

    database: str

    def ping(self) -> bool:
        """True when the server answers."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def ensure_database(self, retention_days: int) -> None:
        """Create the database and its retention policy if they do not exist."""
        ...

    def drop_database(self) -> None:
        """Drop the database (tests and resets only)."""
        ...

    def write(self, points: Sequence[Point]) -> None:
        """Write points; raise TransientStoreError or PermanentStoreError on failure."""
        ...

    def write_lines(self, lines: Iterable[str]) -> None:
        """Write line-protocol lines made by ``timeseries.lineprotocol`` in one request."""
        ...

    def query(self, influxql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run one InfluxQL SELECT and return its rows (tags and fields as columns)."""
        ...

    def query_chunks(
        self, influxql: str, params: Mapping[str, Any] | None = None, chunk_size: int = 50_000
    ) -> Iterator[pd.DataFrame]:
        """Run one InfluxQL statement, yielding its rows a chunk at a time (bounded memory)."""
        ...

    def query_series(
        self, influxql: str, params: Mapping[str, Any] | None = None, chunk_size: int = 50_000
    ) -> Iterator[SeriesChunk]:
        """Run one InfluxQL SELECT, yielding (columns, tags, rows) per series chunk, raw."""
        ...

    def count_before(self, measurement: str, field_name: str, before_ns: int) -> int:
        """How many points of a measurement are older than a time."""
        ...

    def delete_before(self, measurement: str, before_ns: int) -> None:
        """Delete a measurement's points older than a time."""
        ...
