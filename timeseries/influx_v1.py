"""The InfluxDB adapter: the v1 HTTP API (1.x natively, 2.x through v1 compatibility + DBRP).

It speaks the API that InfluxDB 1.x, 2.x (v1-compatibility endpoints with a DBRP mapping) and
3.x share: line-protocol ``/write`` and InfluxQL ``/query`` with bound parameters.
influxdb-client's write and query calls use ``/api/v2`` endpoints that InfluxDB 1.6 (Debian's,
the one tested here) does not have, so the adapter uses HTTP directly; the client library is
still used where it serves (``ping``). Production's InfluxDB 2.7 is served through this adapter
(docker-compose.yml, deploy/influxdb); native 2.x/3.x adapters are the next step (README.md).
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import requests

from census.settings import Settings
from timeseries import queries
from timeseries.lineprotocol import Point
from timeseries.store import PermanentStoreError, SeriesChunk, TransientStoreError

LOGGER = logging.getLogger(__name__)


@dataclass
class InfluxV1Store:
    """InfluxDB through the v1 HTTP API (1.x natively, 2.x/3.x through v1 compatibility)."""

    url: str
    database: str
    username: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    timeout_s: float = 30.0
    retention_policy: str = ""
    _session: requests.Session = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Open one HTTP session (keep-alive) for all requests."""
        self.url = self.url.rstrip("/")
        self._session = requests.Session()
        if self.token:
            self._session.headers["Authorization"] = f"Token {self.token}"
        elif self.username:
            self._session.auth = (self.username, self.password)

    @classmethod
    def from_settings(cls, settings: Settings, database: str | None = None,
                      timeout_s: float = 30.0) -> InfluxV1Store:
        """Build the store the settings describe."""
        return cls(
            url=settings.influx_url,
            database=database or settings.influx_database,
            username=settings.influx_username,
            password=settings.influx_password,
            token=settings.influx_token,
            timeout_s=timeout_s,
        )

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def ping(self) -> bool:
        """True when the server answers its ping endpoint."""
        from influxdb_client import InfluxDBClient  # the library's ping works on 1.x and 2.x

        with InfluxDBClient(url=self.url, token=self.token or "none", timeout=5000) as client:
            try:
                return bool(client.ping())
            except Exception:  # ping reports any failure as "not up"
                return False

    def ensure_database(self, retention_days: int) -> None:
        """Create the database with a retention policy (1.x); 2.x/3.x map it at set-up."""
        if self.token:
            return  # InfluxDB 2.x/3.x: the bucket and its DBRP mapping are made at set-up
        # Identifiers cannot be bound parameters in InfluxQL; the database name is checked
        # against a strict pattern instead, so nothing user-controlled reaches the statement.
        _check_identifier(self.database)
        self._post_query(f'CREATE DATABASE "{self.database}"')
        policy = "census_retention"
        statement = (
            f'CREATE RETENTION POLICY "{policy}" ON "{self.database}" '
            f"DURATION {int(retention_days)}d REPLICATION 1 DEFAULT"
        )
        try:
            self._post_query(statement)
        except PermanentStoreError as error:
            if "already exists" not in str(error):
                raise
            self._post_query(
                f'ALTER RETENTION POLICY "{policy}" ON "{self.database}" '
                f"DURATION {int(retention_days)}d DEFAULT"
            )

    def count_before(self, measurement: str, field_name: str, before_ns: int) -> int:
        """How many points of a measurement are older than a time (what a delete would take)."""
        total = 0
        for _columns, _tags, rows in self.query_series(
                *queries.count_before(measurement, field_name, before_ns)):
            total += sum(int(row[1] or 0) for row in rows)
        return total

    def delete_before(self, measurement: str, before_ns: int) -> None:
        """Delete a measurement's points older than a time (retention per data class: one
        database, one retention policy as the backstop, shorter classes deleted here)."""
        statement, params = queries.delete_before(measurement, before_ns)
        try:
            response = self._session.post(
                f"{self.url}/query", data={"db": self.database, "q": statement,
                                           "params": json.dumps(params)},
                timeout=self.timeout_s)
        except requests.RequestException as error:
            raise TransientStoreError(f"InfluxDB delete failed: {error}") from None
        _raise_for_status(response, "delete")
        for result in response.json().get("results", []):
            if "error" in result:
                raise PermanentStoreError(f"InfluxDB refused {statement!r}: {result['error']}")

    def drop_database(self) -> None:
        """Drop the database (tests and `services reset` only)."""
        _check_identifier(self.database)
        self._post_query(f'DROP DATABASE "{self.database}"')

    def write(self, points: Sequence[Point]) -> None:
        """Write points as one gzip-compressed line-protocol request."""
        if not points:
            return
        self.write_lines(point.to_line() for point in points)

    def write_lines(self, lines: Iterable[str]) -> None:
        """Write pre-formatted line-protocol lines in one request."""
        body = gzip.compress("\n".join(lines).encode("utf-8"), compresslevel=1)
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        try:
            response = self._session.post(
                f"{self.url}/write",
                params=params,
                data=body,
                headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
                timeout=self.timeout_s,
            )
        except requests.RequestException as error:
            raise TransientStoreError(f"InfluxDB write failed: {error}") from None
        _raise_for_status(response, "write")

    def query(self, influxql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run one SELECT and return all its rows as one DataFrame."""
        frames = list(self.query_chunks(influxql, params))
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)

    def query_chunks(
        self, influxql: str, params: Mapping[str, Any] | None = None, chunk_size: int = 50_000
    ) -> Iterator[pd.DataFrame]:
        """Run one SELECT in chunked mode; yield a DataFrame per chunk, time as UTC."""
        for columns, tags, rows in self.query_series(influxql, params, chunk_size):
            frame = pd.DataFrame(rows, columns=columns)
            for tag, value in tags.items():
                frame[tag] = value
            if "time" in frame.columns:
                frame["time"] = pd.to_datetime(frame["time"], unit="ns", utc=True)
            yield frame

    def query_series(
        self, influxql: str, params: Mapping[str, Any] | None = None, chunk_size: int = 50_000
    ) -> Iterator[SeriesChunk]:
        """Run one SELECT in chunked mode; yield (columns, tags, rows) per series chunk, raw.

        For large reads: building a DataFrame per series (``query_chunks``) costs ~10 ms each,
        which dominates a query returning thousands of series; callers that build one frame
        from all rows use this instead. Times are integer nanoseconds.
        """
        for document in self._query_documents(influxql, params, chunk_size):
            for result in document.get("results", []):
                if "error" in result:
                    raise PermanentStoreError(f"InfluxDB query error: {result['error']}")
                for series in result.get("series", []):
                    yield series["columns"], series.get("tags") or {}, series["values"]

    def _query_documents(
        self, influxql: str, params: Mapping[str, Any] | None, chunk_size: int
    ) -> Iterator[dict[str, Any]]:
        """POST one chunked InfluxQL query; yield its JSON documents (one per chunk)."""
        request_params = {
            "db": self.database, "q": influxql, "epoch": "ns", "chunked": "true",
            "chunk_size": str(chunk_size),
        }
        if params:
            request_params["params"] = json.dumps(dict(params))
        try:
            response = self._session.post(
                f"{self.url}/query", data=request_params, stream=True, timeout=self.timeout_s
            )
        except requests.RequestException as error:
            raise TransientStoreError(f"InfluxDB query failed: {error}") from None
        with response:
            _raise_for_status(response, "query")
            # Each chunk is one JSON line of several MB; iter_lines' default 512-byte reads
            # re-split the growing buffer on every read (measured: a third of a large query).
            for line in response.iter_lines(chunk_size=1 << 20):
                if not line:
                    continue
                document: dict[str, Any] = json.loads(line)
                if "error" in document:
                    raise PermanentStoreError(f"InfluxDB query error: {document['error']}")
                yield document

    def _post_query(self, statement: str) -> dict[str, Any]:
        """Run a management statement (CREATE, DROP, ALTER) and check its result."""
        try:
            response = self._session.post(
                f"{self.url}/query", data={"q": statement}, timeout=self.timeout_s
            )
        except requests.RequestException as error:
            raise TransientStoreError(f"InfluxDB statement failed: {error}") from None
        _raise_for_status(response, "statement")
        document: dict[str, Any] = response.json()
        for result in document.get("results", []):
            if "error" in result:
                raise PermanentStoreError(f"InfluxDB refused {statement!r}: {result['error']}")
        return document


def _raise_for_status(response: requests.Response, action: str) -> None:
    """Translate an HTTP status into the store's error classes."""
    if response.status_code < 300:
        return
    detail = response.text[:500].strip()
    message = f"InfluxDB {action} returned HTTP {response.status_code}: {detail}"
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientStoreError(message)
    raise PermanentStoreError(message)


def _check_identifier(name: str) -> None:
    """Allow only plain identifiers where InfluxQL cannot take a bound parameter."""
    queries.identifier(name)
