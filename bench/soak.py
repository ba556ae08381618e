"""Soak of the whole path: AP messages → broker → collector → InfluxDB/Redis, with sign-ins.

One command:

    .venv/bin/python bench/soak.py                      # 30 minutes at twice the district rate
    .venv/bin/python bench/soak.py --minutes 3          # a short look
    .venv/bin/python bench/soak.py --rate 140 --signin-rate 0.5

For the duration it publishes AP messages in the shape the simulator's APs send (a station
snapshot batch per AP, plus connects, disconnects and probes; timestamps are the moment of
sending) at a steady rate, QoS 1, on the shared broker, into a real collector process (`wifi-census
collector run`) writing InfluxDB and Redis, while residents sign in through a real gunicorn
portal (`wifi-census portal serve`: hand-over, form, SMS code, connected page) at a steady rate.
The default rate is twice the district's: 41,257 units' 38,920 APs send one snapshot batch
every 300 s, about 140 messages/s with the connects and probes in between, so 280 messages/s.

Every minute it prints, and at the end draws (``bench/out/soak_<start>.png``, labels in Chinese
and English) and saves (``.json``):

- the resident memory (RSS) of each process: the collector, the portal (gunicorn master and
  workers together), Mosquitto, Redis, InfluxDB (the shared servers: other work on the machine
  shows in theirs) and this driver;
- throughput: events published and events the collector wrote to InfluxDB, per second;
- p99 latencies: the collector's batch latency (first message of a batch arriving to its
  acknowledgement after the write; from its Prometheus histogram, so a bucket's upper bound) and
  a whole sign-in (three requests) as the phone sees it.

Flat memory and a stable p99 are the target. Everything runs under its own topic prefix, Redis
prefix, InfluxDB database and SQLite registry, removed at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector_throughput import generate_stream, rss_kib  # noqa: E402
from cpu_budget import server_pids  # noqa: E402
from portal_load import (  # noqa: E402
    bench_settings,
    form_fields,
    name,
    percentile,
    phone,
    populate,
    resident_id,
    signed_path,
    sms_to,
    start_portal,
)

from census.channels import RedisKeys, events_topic  # noqa: E402
from census.mqtt import MqttClient  # noqa: E402
from census.settings import PREFIX, Settings, environment_of  # noqa: E402
from registry.db import (  # noqa: E402
    bump_registry_version,
    make_engine,
    make_session_factory,
    session_scope,
)
from registry.models import AccessPoint, Building, Community, Coverage  # noqa: E402
from timeseries import TimeSeriesStore, open_store  # noqa: E402

OUT = ROOT / "bench" / "out"
BIN = Path(sys.executable).parent
DISTRICT_APS = 38_920
DISTRICT_RATE = 140.0  # messages/s: a snapshot per AP every 300 s, plus connects and probes
SIGNED_IN = "连接成功".encode()


@dataclass
class Counts:
    """What the load threads did, read and reset once a minute."""

    published_messages: int = 0
    published_events: int = 0
    signins: int = 0
    signin_errors: int = 0
    signin_seconds: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> dict[str, Any]:
        """This minute's counts, and start the next."""
        with self.lock:
            taken = {"published_messages": self.published_messages,
                     "published_events": self.published_events, "signins": self.signins,
                     "signin_errors": self.signin_errors,
                     "signin_seconds": list(self.signin_seconds)}
            self.published_messages = self.published_events = 0
            self.signins = self.signin_errors = 0
            self.signin_seconds.clear()
        return taken


def register_stream_aps(settings: Settings, ap_ids: list[str]) -> None:
    """The stream's APs in the registry (community SOAK, 20 APs a building, floor coverage)."""
    engine = make_engine(settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        community = Community(code="SOAK", name="")
        session.add(community)
        buildings: dict[int, Building] = {}
        for index, ap_id in enumerate(ap_ids):
            number = index // 20
            if number not in buildings:
                buildings[number] = Building(community=community, code=f"S{number:04d}")
            session.add(AccessPoint(ap_id=ap_id, building=buildings[number],
                                    coverage=Coverage.FLOOR, floor=index % 20))
        bump_registry_version(session)
    engine.dispose()


def publish_steadily(settings: Settings, plan: list[tuple[str, list[dict[str, Any]]]],
                     rate: float, stop: threading.Event, counts: Counts) -> None:
    """Publish the plan round and round at rate messages/s, each stamped with the moment."""
    client = MqttClient(settings, "", max_inflight=1000)
    client.connect()
    prefix = settings.mqtt_topic_prefix
    started = time.perf_counter()
    sent = 0
    try:
        while not stop.is_set():
            ap_id, events = plan[sent % len(plan)]
            now = round(time.time(), 3)
            body = json.dumps([{**event, "ts": now} for event in events],
                              separators=(",", ":")).encode()
            client.publish(events_topic(prefix, ap_id), body, wait=False)
            sent += 1
            with counts.lock:
                counts.published_messages += 1
                counts.published_events += len(events)
            ahead = sent / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        client.wait_until_published(timeout=120)
    finally:
        client.disconnect()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def sign_in_steadily(settings: Settings, port: int, rate: float, residents: int,
                     stop: threading.Event, counts: Counts) -> None:
    """Whole sign-ins (hand-over, number, code, identity) at rate per second, one after
    another."""
    http = requests.Session()
    codes = redis.Redis.from_url(settings.redis_url)
    last_key = RedisKeys(settings.redis_key_prefix).sms_last()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    n = 0
    try:
        while not stop.is_set():
            resident = n % residents
            begin = time.perf_counter()
            ok = False
            try:
                splash = http.get(base + signed_path(n), timeout=30)
                sent = http.post(base + "/signin", timeout=30, headers=FORM, data=urlencode({
                    **form_fields(splash.content), "phone": phone(resident), "consent": "y"}))
                code = codes.hget(last_key, sms_to(resident))
                if sent.status_code == 200 and code is not None:
                    text = code.decode() if isinstance(code, bytes) else str(code)
                    proven = http.post(base + "/verify", timeout=30, headers=FORM, data=urlencode(
                        {**form_fields(sent.content), "code": text}))
                    done = http.post(base + "/identity", timeout=30, headers=FORM,
                                     data=urlencode({**form_fields(proven.content),
                                                     "name": name(resident),
                                                     "id_type": "resident_id_card",
                                                     "id_number": resident_id(resident),
                                                     "unit": ""}))
                    ok = done.status_code == 200 and SIGNED_IN in done.content
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - begin
            with counts.lock:
                if ok:
                    counts.signins += 1
                    counts.signin_seconds.append(elapsed)
                else:
                    counts.signin_errors += 1
            n += 1
            ahead = n / rate - (time.perf_counter() - started)
            if ahead > 0:
                stop.wait(ahead)
    finally:
        http.close()
        codes.close()


def children(pid: int) -> list[int]:
    """The direct children of a process (gunicorn's workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def rss_mib(pids: list[int]) -> float:
    """Resident memory of these processes together, MiB (0 for those gone)."""
    total = 0
    for pid in pids:
        try:
            total += rss_kib(pid)
        except OSError:
            continue
    return total / 1024


class CollectorMetrics:
    """Reads the collector's Prometheus endpoint: events written, batch latency buckets."""

    def __init__(self, port: int) -> None:
        self._url = f"http://127.0.0.1:{port}/metrics"
        self._last_written = 0.0
        self._last_buckets: dict[float, float] = {}

    def minute(self) -> tuple[float, float]:
        """Events written since the last call, and that interval's p99 batch latency (s, the
        upper bound of the histogram bucket it falls in; NaN with no batch)."""
        written, buckets = 0.0, {}
        text = requests.get(self._url, timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "census_collector_events_written_total":
                    written = sample.value
                elif sample.name == "census_collector_batch_latency_seconds_bucket":
                    buckets[float(sample.labels["le"])] = sample.value
        delta = {le: count - self._last_buckets.get(le, 0.0) for le, count in buckets.items()}
        events = written - self._last_written
        self._last_written, self._last_buckets = written, buckets
        total = max(delta.values(), default=0.0)
        if total <= 0:
            return events, float("nan")
        for le in sorted(delta):
            if delta[le] >= 0.99 * total:
                return events, le
        return events, float("inf")


def free_port() -> int:
    """A free loopback TCP port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_collector(settings: Settings, client_id: str, metrics_port: int, log: Path
                    ) -> subprocess.Popen[bytes]:
    """The real collector, subscribed (its log says so) before the load starts."""
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith(PREFIX)},
                   **environment_of(settings), PREFIX + "LOG_LEVEL": "INFO"}
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [str(BIN / "wifi-census"), "collector", "run", "--client-id", client_id,
             "--metrics-port", str(metrics_port)],
            env=environment, stdout=subprocess.DEVNULL, stderr=handle)
    deadline = time.monotonic() + 60
    while b" subscribed to " not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the collector did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return process


def draw(path: Path, rows: list[dict[str, Any]], title: str) -> Path:
    """The soak as a picture: memory per process, throughput, p99 latencies, by minute."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    # CJK glyphs come from Noto Sans CJK (Debian's fonts-noto-cjk), as analytics' heatmaps do.
    plt.rcParams["font.family"] = ["DejaVu Sans", "Noto Sans CJK SC", "Noto Sans CJK JP"]
    minutes = [row["minute"] for row in rows]
    figure, (memory, rate, latency) = plt.subplots(3, 1, figsize=(9, 10), sharex=True)
    for process in rows[0]["rss_mib"]:
        memory.plot(minutes, [row["rss_mib"][process] for row in rows], marker="o",
                    label=process)
    memory.set_ylabel("内存 RSS (MiB)\nresident memory")
    memory.legend(fontsize=8, ncol=3)
    memory.set_title(title, fontsize=10)
    rate.plot(minutes, [row["published_events_s"] for row in rows], marker="o",
              label="发布 published")
    rate.plot(minutes, [row["written_events_s"] for row in rows], marker="s",
              label="写入 InfluxDB written")
    rate.set_ylabel("事件/秒\nevents per second")
    rate.legend(fontsize=8)
    latency.plot(minutes, [row["ingest_p99_ms"] for row in rows], marker="o",
                 label="采集批次 p99 collector batch (≤ bucket)")
    latency.plot(minutes, [row["signin_p99_ms"] for row in rows], marker="s",
                 label="整次登记 p99 whole sign-in")
    latency.set_ylabel("p99 延迟 (毫秒)\np99 latency (ms)")
    latency.set_xlabel("分钟 minute")
    latency.legend(fontsize=8)
    for axes in (memory, rate, latency):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def measure(minute: int, started: float, rows: list[dict[str, Any]], counts: Counts,
            metrics: CollectorMetrics, processes: dict[str, Callable[[], list[int]]]
            ) -> dict[str, Any]:
    """One minute's row: memory of every process, throughput, p99 latencies; printed."""
    seconds = time.monotonic() - started - (rows[-1]["at_s"] if rows else 0.0)
    taken = counts.take()
    written, ingest_p99 = metrics.minute()
    row = {
        "minute": minute, "at_s": round(time.monotonic() - started, 1),
        "rss_mib": {name: round(rss_mib(pids()), 1) for name, pids in processes.items()},
        "published_messages_s": round(taken["published_messages"] / seconds, 1),
        "published_events_s": round(taken["published_events"] / seconds, 1),
        "written_events_s": round(written / seconds, 1),
        "ingest_p99_ms": round(ingest_p99 * 1000, 1),
        "signins": taken["signins"], "signin_errors": taken["signin_errors"],
        "signin_p99_ms": round(percentile(taken["signin_seconds"], 99), 1),
        "load_average": round(os.getloadavg()[0], 1),
    }
    memory = ", ".join(f"{k} {v:.0f}" for k, v in row["rss_mib"].items())
    print(f"min {minute:3d}: RSS MiB {memory} | {row['published_messages_s']:.0f} msg/s, "
          f"events/s published {row['published_events_s']:,.0f} written "
          f"{row['written_events_s']:,.0f} | ingest p99 <= {row['ingest_p99_ms']:.0f} ms | "
          f"sign-ins {row['signins']} (errors {row['signin_errors']}) p99 "
          f"{row['signin_p99_ms']:.0f} ms | load {row['load_average']}", flush=True)
    return row


def main() -> None:
    """Run the soak; print a line a minute; draw and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (30)")
    parser.add_argument("--rate", type=float, default=2 * DISTRICT_RATE,
                        help="AP messages per second (280: twice the district's)")
    parser.add_argument("--aps", type=int, default=2000,
                        help="APs the messages come from (each with its own stations)")
    parser.add_argument("--signin-rate", type=float, default=1.0, help="sign-ins per second")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    options = parser.parse_args()
    if options.minutes <= 0 or options.rate <= 0 or options.signin_rate <= 0:
        parser.error("--minutes, --rate and --signin-rate must be positive")

    run_id = uuid.uuid4().hex[:8]
    OUT.mkdir(parents=True, exist_ok=True)
    base = Settings.load(environ={})
    settings = Settings.load(environ={}, **{
        **bench_settings(run_id, "sqlite", base).__dict__, "metrics_port": 0,
        "influx_database": f"soak_{run_id}", "portal_otp_hourly_per_ap": 100_000})
    residents = max(200, int(options.signin_rate * 120))  # none signs in twice within 2 min
    print(f"soak {run_id}: {options.minutes:g} min, {options.rate:g} messages/s from "
          f"{options.aps} APs, {options.signin_rate:g} sign-ins/s; preparing...", flush=True)
    populate(settings, residents)
    stream = generate_stream(int(options.aps * 17 * 1.2), options.aps)
    plan = [(ap_id, json.loads(payload)) for ap_id, payload in stream.messages]
    register_stream_aps(settings, sorted({ap_id for ap_id, _ in plan}))
    random.Random(7).shuffle(plan)
    store = open_store(settings)
    store.ensure_database(settings.retention_days)

    stop = threading.Event()
    counts = Counts()
    collector_id = f"soak-col-{run_id}"
    metrics_port, portal_port = free_port(), free_port()
    started_processes: list[subprocess.Popen[bytes]] = []
    threads: list[threading.Thread] = []
    rows: list[dict[str, Any]] = []
    started_at = dt.datetime.now(dt.UTC)
    try:
        collector = start_collector(settings, collector_id, metrics_port,
                                    OUT / f"soak_{run_id}_collector.log")
        started_processes.append(collector)
        portal = start_portal(settings, portal_port, options.workers, options.threads)
        started_processes.append(portal)
        processes: dict[str, Callable[[], list[int]]] = {
            "collector": lambda: [collector.pid],
            "portal": lambda: [portal.pid, *children(portal.pid)],
            **{name: (lambda pid=pid: [pid]) for name, pid in server_pids(base).items()},
            "soak driver": lambda: [os.getpid()],
        }
        metrics = CollectorMetrics(metrics_port)
        threads = [
            threading.Thread(target=publish_steadily, daemon=True,
                             args=(settings, plan, options.rate, stop, counts)),
            threading.Thread(target=sign_in_steadily, daemon=True,
                             args=(settings, portal_port, options.signin_rate, residents, stop,
                                   counts)),
        ]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        for minute in range(1, int(options.minutes + 0.999) + 1):
            wait = min(minute * 60.0, options.minutes * 60.0) - (time.monotonic() - started)
            if wait > 0:
                time.sleep(wait)
            rows.append(measure(minute, started, rows, counts, metrics, processes))
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
        for process in started_processes:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        cleanup_run(settings, collector_id, store)
    if not rows:
        return
    stamp = started_at.strftime("%Y%m%dT%H%M")
    title = (f"浸泡测试 soak {options.minutes:g} min: {options.rate:g} msg/s "
             f"({options.rate / DISTRICT_RATE:.1f}× district), {options.signin_rate:g} "
             f"sign-ins/s")
    picture = draw(OUT / f"soak_{stamp}.png", rows, title)
    (OUT / f"soak_{stamp}.json").write_text(json.dumps(
        {"options": vars(options), "started": started_at.isoformat(), "rows": rows}, indent=1))
    first, last = rows[0], rows[-1]
    growth = {k: round(last["rss_mib"][k] - first["rss_mib"][k], 1) for k in first["rss_mib"]}
    print(f"memory growth first to last minute (MiB): {growth}")
    print(f"picture: {picture}")


def cleanup_run(settings: Settings, collector_id: str, store: TimeSeriesStore) -> None:
    """End the collector's session; drop the run's InfluxDB database, Redis keys, registry."""
    try:
        client = MqttClient(settings, collector_id)
        client.connect()
        client.disconnect()
    except Exception as error:  # cleanup must go on
        print(f"could not end the collector's session: {error}", file=sys.stderr)
    store.drop_database()
    store.close()
    keys = redis.Redis.from_url(settings.redis_url)
    for key in keys.scan_iter(match=f"{settings.redis_key_prefix}*", count=5000):
        keys.delete(key)
    keys.close()
    Path(settings.database_url.split("///", 1)[1]).unlink(missing_ok=True)
    shutil.rmtree(settings.var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
