"""Prometheus metrics of one collector, on its own registry (several may run in one process)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from collector.const import REASONS

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class CollectorMetrics:
    """The counters, gauges and histograms `wifi-census collector run` exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages_received = Counter(
            "census_collector_messages_received", "MQTT messages received", registry=r)
        self.events_received = Counter(
            "census_collector_events_received", "events received (valid and invalid)", registry=r)
        self.events_written = Counter(
            "census_collector_events_written",
            "points written to InfluxDB (directly or drained from the spool)", registry=r)
        self.events_spooled = Counter(
            "census_collector_events_spooled", "points put in the on-disk spool", registry=r)
        self.dead_lettered = Counter(
            "census_collector_events_dead_lettered", "events refused, by reason",
            ["reason"], registry=r)
        for reason in REASONS:
            self.dead_lettered.labels(reason=reason)  # export zeros, so rates work from start
        self.spool_depth = Gauge(
            "census_collector_spool_depth", "points waiting in the on-disk spool", registry=r)
        self.queue_depth = Gauge(
            "census_collector_queue_depth", "MQTT messages waiting to be parsed", registry=r)
        self.batch_latency = Histogram(
            "census_collector_batch_latency_seconds",
            "time from a batch's first message arriving to its acknowledgement",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.write_seconds = Histogram(
            "census_collector_store_write_seconds", "duration of one InfluxDB write request",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.confirmations = Counter(
            "census_collector_confirmations",
            "end-to-end confirmations published to APs (one per AP per stored batch)", registry=r)
        self.redis_errors = Counter(
            "census_collector_redis_errors", "failed Redis presence or dead-letter writes",
            registry=r)
        self.known_aps = Gauge(
            "census_collector_known_aps", "APs in the cached registry map", registry=r)
        self.registry_reloads = Counter(
            "census_collector_registry_reloads", "times the AP map was reloaded", registry=r)

    def track_queue(self, depth: Callable[[], int]) -> None:
        """Read the queue depth when scraped."""
        self.queue_depth.set_function(lambda: float(depth()))

    def serve(self, port: int, host: str = "127.0.0.1") -> tuple[Any, Any]:
        """Serve /metrics on host:port from a daemon thread; return (server, thread)."""
        return start_http_server(port, addr=host, registry=self.registry)
