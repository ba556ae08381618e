"""Collector throughput against its ceilings, through the real broker, InfluxDB and Redis.

One command:

    .venv/bin/python bench/collector_throughput.py                 # 1,000,000 events
    .venv/bin/python bench/collector_throughput.py --events 3000000 --collectors 2
    .venv/bin/python bench/collector_throughput.py --stream var/sim/events.jsonl
    .venv/bin/python bench/collector_throughput.py --soak 600      # + 10-minute memory run

It replays one recorded stream of AP messages (the simulator's ``events.jsonl`` when given,
else a stream generated with ``census.events`` in the shape APs send: a station snapshot batch
per AP every 300 s, plus connect/disconnect/probe messages) and prints, in one run:

- ceiling 1: how fast ``mosquitto_sub`` alone drains the stream from the broker (QoS 1,
  persistent session, the stream published beforehand as a backlog);
- ceiling 2: how fast the same points load into InfluxDB in bulk (5,000-point requests);
- the collector's sustained events/s draining the same backlog end to end (parse, pseudonymise,
  InfluxDB, Redis, acknowledgements), its ratio to the lower ceiling, and a check that InfluxDB
  holds exactly one point per event;
- with --soak S: a collector fed at a steady rate for S seconds, its resident memory sampled
  every 10 s (flat memory is the target), and the rate it sustained.

Everything runs under its own topic prefix, Redis prefix and InfluxDB databases (dropped at
the end), so it is safe beside the demo and the tests. The load average is printed beside the
figures: other work on the machine depresses them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpu_budget import cpu_seconds, draw_cpu_budget, server_pids  # noqa: E402  (bench/ is the script's folder)

from census.channels import events_topic  # noqa: E402
from census.events import PresenceEvent, encode_envelope, encode_events  # noqa: E402
from census.mqtt import MqttClient  # noqa: E402
from census.settings import Settings, environment_of  # noqa: E402
from collector.parser import ApLocation, EventParser, Pseudonymizer  # noqa: E402
from registry.db import (  # noqa: E402
    bump_registry_version,
    make_engine,
    make_session_factory,
    session_scope,
    upgrade,
)
from registry.models import AccessPoint, Building, Community, Coverage  # noqa: E402
from timeseries import open_store  # noqa: E402
from timeseries.presence import LineBuilder  # noqa: E402

BIN = Path(sys.executable).parent


@dataclass
class Stream:
    """A recorded stream: (ap_id, payload) messages and how many events they hold."""

    messages: list[tuple[str, bytes]]
    events: int
    source: str


def generate_stream(target_events: int, aps: int, seed: int = 7) -> Stream:
    """A stream in the shape APs send: snapshot batches, and single connect/disconnect/probe.

    Timestamps spread over the last five minutes, so the collector's Redis presence path does
    the work it does live (events older than the presence TTL skip Redis).
    """
    rng = random.Random(seed)
    # Each AP has its associated stations; between two snapshots about 5% leave and are
    # replaced by newcomers, so most addresses repeat from one snapshot to the next, as live.
    next_station = 0
    associated: list[list[int]] = []
    for _ in range(aps):
        count = max(1, int(rng.lognormvariate(2.8, 0.6)))
        associated.append(list(range(next_station, next_station + count)))
        next_station += count
    plan: list[tuple[str, list[tuple[str, str, int | None]]]] = []
    events = 0
    while events < target_events:
        for ap_index in range(aps):
            if events >= target_events:
                break
            ap_id = f"ap-bench-{ap_index:05d}"
            stations = associated[ap_index]
            for slot in range(len(stations)):
                if rng.random() < 0.05:
                    stations[slot] = next_station
                    next_station += 1
            chosen = stations[: target_events - events]
            plan.append((ap_id, [("snapshot", _mac(s, s % 3 == 0), -40 - (s % 50))
                                 for s in chosen]))
            events += len(chosen)
            if rng.random() < 0.1 and events < target_events:  # a connect or probe in between
                kind = rng.choice(("connect", "disconnect", "probe"))
                plan.append((ap_id, [(kind, _mac(next_station, True),
                                      None if kind == "connect" else -70)]))
                next_station += 1
                events += 1
    now = time.time()
    step = 295.0 / max(1, len(plan))
    messages = []
    for index, (ap_id, batch) in enumerate(plan):
        ts = round(now - 300.0 + index * step, 3)
        messages.append((ap_id, encode_events(
            PresenceEvent(kind, mac, ts, rssi, "Census-Free" if kind != "probe" else "")
            for kind, mac, rssi in batch
        )))
    return Stream(messages, events,
                  f"generated ({aps} APs, lognormal stations per AP, 5% churn per snapshot)")


def _mac(value: int, randomized: bool) -> str:
    """A MAC from an integer; randomized ones have the locally-administered bit set."""
    first = 0x02 if randomized else 0x00
    octets = (first, 0x1B, (value >> 24) & 0xFF, (value >> 16) & 0xFF, (value >> 8) & 0xFF,
              value & 0xFF)
    return ":".join(f"{octet:02x}" for octet in octets)


def load_stream(path: Path) -> Stream:
    """The simulator's recording: one message per line, {"ap": ..., "payload": [...]}."""
    messages: list[tuple[str, bytes]] = []
    events = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            record = json.loads(line)
            payload = record["payload"]
            events += len(payload) if isinstance(payload, list) else 1
            messages.append((record["ap"], json.dumps(payload, separators=(",", ":")).encode()))
    return Stream(messages, events, f"recorded ({path})")


def bench_settings(tmp: Path, run_id: str) -> Settings:
    """Settings isolated to this run on the shared local servers."""
    return Settings.load(
        var_dir=tmp / "var", database_url=f"sqlite:///{tmp / 'registry.sqlite3'}",
        mqtt_topic_prefix=f"bench-{run_id}", redis_key_prefix=f"bench-{run_id}:",
        influx_database=f"bench_{run_id}", metrics_port=0,
    )


def environment_for(settings: Settings) -> dict[str, str]:
    """The variables that reproduce settings in a child process."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WIFI_CENSUS_")}
    # census.settings writes lists and booleans the way they load back (str() of a tuple did
    # not: WIFI_CENSUS_PORTAL_SMS_REGIONS="('CN',)" stopped the collector at start).
    environment.update(environment_of(settings))
    return environment


def register_aps(settings: Settings, ap_ids: set[str]) -> None:
    """A registry with every AP of the stream (one building per 20 APs, floor coverage)."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with session_scope(make_session_factory(engine)) as session:
        community = Community(code="BENCH")
        session.add(community)
        buildings: dict[int, Building] = {}
        for index, ap_id in enumerate(sorted(ap_ids)):
            number = index // 20
            if number not in buildings:
                buildings[number] = Building(community=community, code=f"B{number:04d}")
            session.add(AccessPoint(ap_id=ap_id, building=buildings[number],
                                    coverage=Coverage.FLOOR, floor=index % 20))
        bump_registry_version(session)
    engine.dispose()


def publish_backlog(settings: Settings, stream: Stream) -> float:
    """Publish the whole stream (QoS 1, acknowledged); return the seconds it took."""
    client = MqttClient(settings, "", max_inflight=1000)
    client.connect()
    started = time.perf_counter()
    prefix = settings.mqtt_topic_prefix
    for ap_id, payload in stream.messages:
        client.publish(events_topic(prefix, ap_id), payload, wait=False)
    client.wait_until_published(timeout=600)
    elapsed = time.perf_counter() - started
    client.disconnect()
    return elapsed


def mosquitto_sub(settings: Settings, client_id: str, topic: str, *extra: str) -> list[str]:
    """A mosquitto_sub command line for the bench's broker, QoS 1, persistent session."""
    return [shutil.which("mosquitto_sub") or "mosquitto_sub", "-h", settings.mqtt_host,
            "-p", str(settings.mqtt_port), "-i", client_id, "-c", "-q", "1", "-t", topic,
            *extra]


def ceiling_broker(settings: Settings, stream: Stream) -> float:
    """Events/s at which mosquitto_sub alone drains the stream's backlog."""
    client_id = f"bench-sub-{uuid.uuid4().hex[:8]}"
    topic = f"{settings.mqtt_topic_prefix}/v1/ap/+/events"
    subprocess.run(mosquitto_sub(settings, client_id, topic, "-E"), check=True, timeout=30)
    publish_backlog(settings, stream)
    started = time.perf_counter()
    subprocess.run(mosquitto_sub(settings, client_id, topic, "-C", str(len(stream.messages))),
                   check=True, timeout=1800, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    # End the persistent session (clean start, nothing queued).
    subprocess.run([shutil.which("mosquitto_sub") or "mosquitto_sub", "-h", settings.mqtt_host,
                    "-p", str(settings.mqtt_port), "-i", client_id, "-t", topic, "-E"],
                   check=True, timeout=30)
    return stream.events / elapsed


def stream_lines(settings: Settings, stream: Stream, locations: dict[str, ApLocation]) -> list[str]:
    """The stream's points as the collector builds them (same tags, fields, timestamps)."""
    parser = EventParser(settings.mqtt_topic_prefix, Pseudonymizer(settings.pseudonym_key),
                         locations.get, settings.retention_days)
    builder = LineBuilder()
    lines: list[str] = []
    now = time.time()
    for ap_id, payload in stream.messages:
        parsed = parser.parse(events_topic(settings.mqtt_topic_prefix, ap_id), payload, now)
        if parsed.location is not None:
            lines += builder.lines(parsed.location, parsed.events)
    return lines


def ceiling_influx(settings: Settings, lines: list[str], batch: int) -> float:
    """Points/s at which the same points load into InfluxDB in bulk."""
    store = open_store(settings, database=settings.influx_database + "_bulk")
    store.ensure_database(settings.retention_days)
    try:
        started = time.perf_counter()
        for index in range(0, len(lines), batch):
            store.write_lines(lines[index : index + batch])
        return len(lines) / (time.perf_counter() - started)
    finally:
        store.drop_database()
        store.close()


def rss_kib(pid: int) -> int:
    """Resident memory of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def collector_command(client_id: str, share_group: str | None, idle_s: float) -> list[str]:
    """The collector's command line."""
    command = [str(BIN / "wifi-census"), "collector", "run", "--client-id", client_id,
               "--metrics-port", "0", "--summary-json", "--exit-when-idle", str(idle_s)]
    if share_group:
        command += ["--share-group", share_group]
    return command


def run_collectors(settings: Settings, stream: Stream, count: int) -> dict[str, Any]:
    """Drain the stream's backlog with count collector processes; their combined rate."""
    environment = environment_for(settings)
    group = f"bench{uuid.uuid4().hex[:6]}" if count > 1 else None
    ids = [f"bench-col-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    for client_id in ids:
        prepare = [str(BIN / "wifi-census"), "collector", "prepare", "--client-id", client_id]
        if group:
            prepare += ["--share-group", group]
        subprocess.run(prepare, env=environment, check=True, capture_output=True, timeout=60)
    publish_backlog(settings, stream)
    servers = server_pids(Settings.load())
    servers_before = {name: cpu_seconds(pid) for name, pid in servers.items()}
    started = time.perf_counter()
    processes = [
        subprocess.Popen(collector_command(client_id, group, 3.0), env=environment,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for client_id in ids
    ]
    peak_rss = 0
    while any(p.poll() is None for p in processes):
        for process in processes:
            try:
                peak_rss = max(peak_rss, rss_kib(process.pid))
            except OSError:
                pass
        time.sleep(0.5)
    wall = time.perf_counter() - started
    summaries = []
    for process in processes:
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"collector failed:\n{stderr[-3000:]}")
        summaries.append(json.loads(stdout.strip().splitlines()[-1]))
    cpu = {name: cpu_seconds(pid) - servers_before[name] for name, pid in servers.items()}
    cpu["collector"] = sum(s["active_cpu_seconds"] for s in summaries)
    for client_id in ids:  # end the sessions
        client = MqttClient(settings, client_id)
        client.connect()
        client.disconnect()
    events = sum(s["events_received"] for s in summaries)
    # Active time: first message received to last acknowledgement, across the processes.
    active = max(s["active_seconds"] for s in summaries)
    return {"events": events, "active_s": active, "rate": events / active, "wall_s": wall,
            "written": sum(s["written"] for s in summaries), "summaries": summaries,
            "cpu_s": cpu,
            "peak_rss_mib": peak_rss / 1024}


def soak(settings: Settings, stream: Stream, seconds: float, rate: float) -> dict[str, Any]:
    """Feed one collector at a steady events/s for seconds; sample its memory every 10 s."""
    environment = environment_for(settings)
    client_id = f"bench-soak-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(collector_command(client_id, None, 5.0), env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)  # let it connect and subscribe
    stop = threading.Event()
    published = [0]

    def feed() -> None:
        """Publish the stream round and round at the target rate."""
        client = MqttClient(settings, "", max_inflight=1000)
        client.connect()
        prefix = settings.mqtt_topic_prefix
        started = time.perf_counter()
        index = 0
        while not stop.is_set():
            ap_id, payload = stream.messages[index % len(stream.messages)]
            client.publish(events_topic(prefix, ap_id), payload, wait=False)
            published[0] += payload.count(b'"v":')
            index += 1
            ahead = published[0] / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        client.wait_until_published(timeout=600)
        client.disconnect()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    samples: list[tuple[float, int]] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        time.sleep(10.0)
        samples.append((time.perf_counter() - started, rss_kib(process.pid)))
        print(f"  soak t={samples[-1][0]:5.0f}s rss={samples[-1][1] / 1024:7.1f} MiB "
              f"published={published[0]}", flush=True)
    stop.set()
    feeder.join()
    stdout, stderr = process.communicate(timeout=600)
    if process.returncode != 0:
        raise SystemExit(f"soak collector failed:\n{stderr[-3000:]}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    client = MqttClient(settings, client_id)
    client.connect()
    client.disconnect()
    warm = [rss for t, rss in samples if t >= 60] or [rss for _, rss in samples]
    return {"published": published[0], "summary": summary, "samples": samples,
            "rss_first_mib": warm[0] / 1024, "rss_last_mib": warm[-1] / 1024,
            "rss_max_mib": max(warm) / 1024}


def print_cpu_budget(result: dict[str, Any], target_rate: float, picture: Path) -> None:
    """CPU per event of each process during the collector run, and the rate it caps; the same
    as a picture against the allowance at the target rate.

    Everything shares the machine's cores, so the sum of the CPU each event costs across the
    processes bounds the rate: cores / (seconds per event), even with perfect parallelism.
    """
    events = result["events"]
    per_event = {name: seconds / events * 1e6 for name, seconds in result["cpu_s"].items()}
    total = sum(per_event.values())
    parts = ", ".join(f"{name} {micros:.1f}" for name, micros in sorted(per_event.items()))
    cores = os.cpu_count() or 1
    print(f"CPU per event during that run (us): {parts}; total {total:.1f}")
    print(f"  -> {cores} cores fully used by these processes alone cap the rate at "
          f"{cores / total * 1e6:,.0f} events/s")
    drawn = draw_cpu_budget(picture, "Collector pipeline, CPU per event", "µs", per_event,
                            result["rate"], target_rate, "events/s", "0.7 of the ceiling")
    print(f"  picture: {drawn}")


def cleanup_redis(settings: Settings) -> None:
    """Delete the run's Redis keys."""
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    for key in client.scan_iter(match=f"{settings.redis_key_prefix}*", count=1000):
        client.delete(key)
    client.close()


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the stream")
    parser.add_argument("--aps", type=int, default=2000, help="APs in a generated stream")
    parser.add_argument("--stream", type=Path, help="the simulator's events.jsonl to replay")
    parser.add_argument("--collectors", type=int, default=1, help="collector processes")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of memory soak (600)")
    parser.add_argument("--soak-rate", type=float, default=50_000.0, help="events/s in the soak")
    parser.add_argument("--confirmed", action="store_true",
                        help="send every message in an end-to-end envelope (contracts 2a), so "
                             "the collector confirms each AP's stored messages per batch")
    arguments = parser.parse_args()

    run_id = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="census-bench-"))
    settings = bench_settings(tmp, run_id)
    stream = (load_stream(arguments.stream) if arguments.stream
              else generate_stream(arguments.events, arguments.aps))
    if arguments.confirmed:
        stream.messages = [(ap_id, encode_envelope(f"bench-{index}", payload))
                           for index, (ap_id, payload) in enumerate(stream.messages)]
    ap_ids = {ap_id for ap_id, _ in stream.messages}
    register_aps(settings, ap_ids)
    batch = settings.influx_batch_size
    print(f"stream: {stream.source}: {stream.events} events in {len(stream.messages)} messages "
          f"(mean {stream.events / len(stream.messages):.1f} events/message)")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"on {os.cpu_count()} cores")
    store = open_store(settings)
    try:
        broker = ceiling_broker(settings, stream)
        print(f"ceiling 1, mosquitto_sub drains the backlog:  {broker:12,.0f} events/s", flush=True)
        from collector.apmap import load_locations

        engine = make_engine(settings.database_url)
        with make_session_factory(engine)() as session:
            locations = load_locations(session)
        engine.dispose()
        lines = stream_lines(settings, stream, locations)
        bulk = ceiling_influx(settings, lines, batch)
        del lines
        print(f"ceiling 2, InfluxDB bulk load ({batch}/request): {bulk:12,.0f} points/s",
              flush=True)
        result = run_collectors(settings, stream, arguments.collectors)
        lower = min(broker, bulk)
        stored = int(store.query("SELECT count(device) AS n FROM presence")["n"].sum())
        print(f"collector x{arguments.collectors}, end to end:              "
              f"{result['rate']:12,.0f} events/s  ({result['events']} events in "
              f"{result['active_s']:.1f} s active, {result['wall_s']:.1f} s with start-up)")
        print(f"ratio to the lower ceiling ({'broker' if broker <= bulk else 'InfluxDB'}):     "
              f"{result['rate'] / lower:12.2f}   (target >= 0.70)")
        print(f"target 50,000 events/s:                       "
              f"{'met' if result['rate'] >= 50_000 else 'NOT met'}")
        print(f"stored points: {stored} for {stream.events} events "
              f"({'exactly once' if stored == stream.events else 'MISMATCH'}); "
              f"peak collector RSS {result['peak_rss_mib']:.0f} MiB")
        print_cpu_budget(result, 0.7 * lower,
                         ROOT / "bench" / "out" / f"collector_cpu_x{arguments.collectors}.png")
        if arguments.soak:
            print(f"soak: {arguments.soak:.0f} s at {arguments.soak_rate:,.0f} events/s")
            outcome = soak(settings, stream, arguments.soak, arguments.soak_rate)
            summary = outcome["summary"]
            growth = outcome["rss_last_mib"] - outcome["rss_first_mib"]
            print(f"soak: published {outcome['published']}, collector received "
                  f"{summary['events_received']} and wrote {summary['written']}; "
                  f"sustained {summary['events_per_second']:,.0f} events/s")
            print(f"soak memory after warm-up: first {outcome['rss_first_mib']:.1f} MiB, last "
                  f"{outcome['rss_last_mib']:.1f} MiB, max {outcome['rss_max_mib']:.1f} MiB "
                  f"(growth {growth:+.1f} MiB)")
        print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    finally:
        store.drop_database()
        store.close()
        cleanup_redis(settings)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
