#!/usr/bin/env python
"""Load benchmark of the captive portal under gunicorn on loopback.

Starts `wifi-census portal serve` (gunicorn) against an isolated registry (its own PostgreSQL
database, or SQLite), Redis key prefix and MQTT topic prefix, fills the registry with residents,
then drives it with closed-loop clients (asyncio, raw HTTP/1.1, several processes):

1. baseline: GET /api/ping, a static answer with no work behind it;
2. splash: GET of a freshly signed AP redirect (signature, nonce claim in Redis, known-device
   lookup, form rendering);
3. sign-in: the whole path per client: signed redirect -> mobile number -> SMS code (read
   from the console sender's Redis outbox) -> verify -> identity -> authorize command
   published; an MQTT
   subscriber counts the authorize commands that reach the broker.

Prints requests/s, p50/p99 latency, sign-ins/s and each figure's ratio to the baseline measured
in the same run, with the load average beside them (the machine's cores may be shared).

    .venv/bin/python bench/portal_load.py --clients 200 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing as mp
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import redis.asyncio  # noqa: E402
import requests  # noqa: E402
from cpu_budget import draw_cpu_budget, server_pids, tree_cpu_seconds  # noqa: E402  (bench/ is the script's folder)

from census.channels import command_topic  # noqa: E402
from census.handshake import sign_redirect  # noqa: E402
from census.mqtt import MqttClient, ReceivedMessage  # noqa: E402
from census.privacy import IdentityCipher, resident_id_check_character  # noqa: E402
from census.settings import PREFIX, Settings, generate_keys  # noqa: E402
from registry.db import (  # noqa: E402
    bump_registry_version,
    make_engine,
    make_session_factory,  # noqa: E402
    session_scope,
    upgrade,
)
from registry.models import (  # noqa: E402
    AccessPoint,
    Building,
    Community,
    Coverage,
    IdType,
    Resident,
    Unit,
    Verification,
)
from wifi_census import local_servers as local_services  # noqa: E402

AP_ID = "ap-bench-01"
AP_SECRET = "bench-ap-secret-" + "0123456789abcdef" * 3
HIDDEN = re.compile(rb'name="(flow|lang|csrf_token)" type="hidden" value="([^"]*)"')


# --- set-up ---------------------------------------------------------------------------------

def bench_settings(run_id: str, database: str, base: Settings) -> Settings:
    """Settings isolated to this run (own prefixes, database; generous OTP caps)."""
    if database == "postgresql":
        url = local_services.create_database(base, f"bench_{run_id}")
    else:
        url = f"sqlite:///{ROOT / 'bench' / 'out' / f'portal_{run_id}.sqlite3'}"
    return Settings.load(
        environ={}, environment="test", var_dir=ROOT / "bench" / "out" / f"var_{run_id}",
        database_url=url, mqtt_topic_prefix=f"bench-{run_id}",
        redis_key_prefix=f"bench-{run_id}:", log_level="WARNING",
        portal_otp_daily_per_phone=100, portal_otp_daily_per_ip=10_000,
        portal_otp_hourly_per_ap=100_000, **generate_keys())


def resident_id(n: int) -> str:
    """A valid, distinct resident ID number for resident n (birth date and sequence vary)."""
    born = dt.date(1970, 1, 1) + dt.timedelta(days=n // 1000)
    first17 = f"120101{born:%Y%m%d}{n % 1000:03d}"
    return first17 + resident_id_check_character(first17)


_NAME_CHARACTERS = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥"


def name(n: int) -> str:
    """A name for resident n (letters only, as the form requires)."""
    k = len(_NAME_CHARACTERS)
    return "居民" + _NAME_CHARACTERS[n % k] + _NAME_CHARACTERS[n // k % k]


def phone(n: int) -> str:
    """A distinct mainland mobile number for resident n."""
    return f"139{n:08d}"


def sms_to(n: int) -> str:
    """Resident n's number as codes are sent to it (E.164)."""
    return "+86" + phone(n)


def populate(settings: Settings, residents: int) -> None:
    """One community, building, 100 units, one AP with its own secret, registered residents."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    cipher = IdentityCipher.from_settings(settings)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        community = Community(code="BENCH", name="基准社区")
        building = Building(community=community, code="B01", name="1号楼")
        session.add_all([community, building])
        session.flush()
        units = [Unit(building_id=building.id, code=f"{100 + i}", ref=f"BENCH/B01/{100 + i}",
                      floor=1 + i // 10, room=f"{100 + i}", area_m2=60) for i in range(100)]
        session.add_all(units)
        session.add(AccessPoint(ap_id=AP_ID, building_id=building.id, coverage=Coverage.BUILDING,
                                secret_encrypted=cipher.encrypt(AP_SECRET)))
        session.flush()
        unit_ids = [u.id for u in units]
        bump_registry_version(session)
    batch: list[Resident] = []
    for n in range(residents):
        number = resident_id(n)
        batch.append(Resident(
            unit_id=unit_ids[n % len(unit_ids)], id_type=IdType.RESIDENT_ID_CARD,
            id_number_encrypted=cipher.encrypt(number),
            id_digest=cipher.digest(IdType.RESIDENT_ID_CARD.value, number), id_last4=number[-4:],
            **cipher.person_columns(name(n), phone(n)), move_in=dt.date(2024, 1, 1),
            verification=Verification.REGISTERED))
        if len(batch) == 5000:
            with session_scope(factory) as session:
                session.add_all(batch)
            batch = []
    if batch:
        with session_scope(factory) as session:
            session.add_all(batch)
    engine.dispose()


def prepare_run(database: str) -> tuple[str, Settings, Settings]:
    """A run id, the machine's settings (its servers started) and the run's isolated settings."""
    run_id = uuid.uuid4().hex[:8]
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    base = Settings.load(environ={})
    local_services.up(base, include_postgres=database == "postgresql")
    return run_id, base, bench_settings(run_id, database, base)


def env_for(settings: Settings) -> dict[str, str]:
    """The environment that makes `wifi-census` use these settings."""
    names = ("environment", "var_dir", "database_url", "mqtt_topic_prefix", "redis_key_prefix",
             "secret_key", "pseudonym_key", "identity_key", "command_key", "log_level",
             "portal_otp_daily_per_phone", "portal_otp_daily_per_ip", "portal_otp_hourly_per_ap")
    return {**os.environ, **{PREFIX + n.upper(): str(getattr(settings, n)) for n in names}}


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_portal(settings: Settings, port: int, workers: int,
                 threads: int) -> subprocess.Popen[bytes]:
    """gunicorn via the real CLI; returns when /api/health answers."""
    log = (ROOT / "bench" / "out" / "portal_gunicorn.log").open("wb")
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "wifi-census"), "portal", "serve", "--port", str(port),
         "--workers", str(workers), "--threads", str(threads)],
        env=env_for(settings), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5).ok:
                return process
        except requests.RequestException:
            time.sleep(0.3)
        if process.poll() is not None:
            raise SystemExit("portal exited at start; see bench/out/portal_gunicorn.log")
    process.terminate()
    raise SystemExit("portal did not answer within 60 s")


# --- the load generator ---------------------------------------------------------------------

class Http:
    """One client's HTTP/1.1 connection (kept alive when the server allows it)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send a request and read the whole response."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Accept-Language: zh-CN,zh;q=0.9\r\nUser-Agent: Mozilla/5.0 (iPhone; CPU "
                "iPhone OS 17_5 like Mac OS X) Mobile/15E148\r\n")
        if body:
            head += ("Content-Type: application/x-www-form-urlencoded\r\n"
                     f"Content-Length: {len(body)}\r\n")
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readline()
        if not status_line:
            await self.close()
            return await self.request(method, path, body)  # server closed an idle keep-alive
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"connection" and value.strip().lower() == b"close":
                close = True
        payload = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


def signed_path(n: int) -> str:
    """A freshly signed AP redirect for sign-in number n (own MAC and client IP)."""
    mac = "02:{:02x}:{:02x}:{:02x}:{:02x}:01".format(*(n >> s & 0xFF for s in (24, 16, 8, 0)))
    ip = f"10.{n >> 16 & 0xFF}.{n >> 8 & 0xFF}.{n & 0xFF}"
    return "/?" + urlencode(sign_redirect(AP_SECRET, AP_ID, mac, ip, "10.0.0.1:2050",
                                          "http://example.com/"))


def form_fields(html: bytes) -> dict[str, str]:
    """The hidden fields of a page."""
    return {m.group(1).decode(): m.group(2).decode().replace("&amp;", "&")
            for m in HIDDEN.finditer(html)}


async def client_loop(kind: str, port: int, deadline: float, first: int, stride: int,
                      settings: dict[str, str], out: dict[str, list[float]]) -> None:
    """One closed-loop client until the deadline."""
    http = Http(port)
    codes = redis.asyncio.Redis.from_url(settings["redis_url"]) if kind == "signin" else None
    last_key = f"{settings['redis_key_prefix']}portal:sms:last"
    n = first
    try:
        while time.monotonic() < deadline:
            if kind == "ping":
                start = time.perf_counter()
                status, _ = await http.request("GET", "/api/ping")
                out["ping"].append(time.perf_counter() - start)
                out["errors"].append(float(status != 200))
            elif kind == "splash":
                path = signed_path(n)
                start = time.perf_counter()
                status, _ = await http.request("GET", path)
                out["splash"].append(time.perf_counter() - start)
                out["errors"].append(float(status != 200))
            else:
                assert codes is not None
                begin = time.perf_counter()
                status, html = await http.request("GET", signed_path(n))
                out["splash"].append(time.perf_counter() - begin)
                fields = form_fields(html)
                body = urlencode({**fields, "phone": phone(n), "consent": "y"}).encode()
                start = time.perf_counter()
                status, html = await http.request("POST", "/signin", body)
                out["signin"].append(time.perf_counter() - start)
                code = await codes.hget(last_key, sms_to(n))
                if status != 200 or code is None:
                    out["errors"].append(1.0)
                    n += stride
                    continue
                text = code.decode() if isinstance(code, bytes) else code
                body = urlencode({**form_fields(html), "code": text}).encode()
                start = time.perf_counter()
                status, html = await http.request("POST", "/verify", body)
                out["verify"].append(time.perf_counter() - start)
                if status != 200 or b'name="id_number"' not in html:
                    out["errors"].append(1.0)
                    n += stride
                    continue
                body = urlencode({**form_fields(html), "name": name(n),
                                  "id_type": "resident_id_card", "id_number": resident_id(n),
                                  "unit": ""}).encode()
                start = time.perf_counter()
                status, html = await http.request("POST", "/identity", body)
                out["identity"].append(time.perf_counter() - start)
                ok = status == 200 and "连接成功".encode() in html
                out["errors"].append(float(not ok))
                if ok:
                    out["done"].append(time.perf_counter() - begin)
            n += stride
    finally:
        await http.close()
        if codes is not None:
            await codes.aclose()


async def open_loop_client(port: int, deadline: float, interval: float, phase: float,
                           first: int, stride: int, out: dict[str, list[float]]) -> None:
    """One client loading the splash page every `interval` seconds on a fixed schedule.

    Latency counts from the scheduled send time, so a slow server is not hidden by the
    client waiting for it (no coordinated omission).
    """
    http = Http(port)
    scheduled = time.monotonic() + phase
    n = first
    try:
        while scheduled < deadline:
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            status, _ = await http.request("GET", signed_path(n))
            out["open"].append(time.monotonic() - scheduled)
            out["errors"].append(float(status != 200))
            scheduled += interval
            n += stride
    finally:
        await http.close()


def generator_process(kind: str, port: int, clients: int, start_at: float, duration: float,
                      offset: int, stride: int, settings: dict[str, str], queue: Any,
                      rate: float = 0.0, total_clients: int = 1) -> None:
    """A process running `clients` clients; puts its latencies on the queue."""
    out: dict[str, list[float]] = {k: [] for k in ("ping", "splash", "signin", "verify",
                                                   "identity", "done",
                                                   "open", "errors")}

    async def run() -> None:
        """Wait for the common start, run until the common deadline."""
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.monotonic() + duration
        if kind == "open":
            interval = total_clients / rate  # each client's share of the aggregate rate
            await asyncio.gather(*(open_loop_client(
                port, deadline, interval, interval * c / clients, offset + c, stride, out)
                for c in range(clients)))
            return
        await asyncio.gather(*(client_loop(kind, port, deadline, offset + c, stride, settings,
                                           out) for c in range(clients)))

    cpu = time.process_time()
    asyncio.run(run())
    out["cpu"] = [time.process_time() - cpu]
    queue.put(out)


def run_phase(kind: str, port: int, clients: int, duration: float, procs: int,
              settings: Settings, residents: int, rate: float = 0.0) -> dict[str, list[float]]:
    """Run one phase with `procs` generator processes; merge their results."""
    context = mp.get_context("spawn")
    queue: Any = context.Queue()
    start_at = time.time() + 3.0  # spawned processes need a moment to import
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    shared = {"redis_url": settings.redis_url, "redis_key_prefix": settings.redis_key_prefix}
    workers = []
    # Each process owns a slice of the residents; its client c uses c, c + count, c + 2 count...
    # so no resident (phone, identity) signs in twice. Splash MACs start past the residents.
    span = residents // procs
    for i, count in enumerate(per):
        offset = i * span + (0 if kind == "signin" else residents + i * 10_000_000)
        process = context.Process(target=generator_process, args=(
            kind, port, count, start_at, duration, offset, max(1, count), shared, queue, rate,
            clients))
        process.start()
        workers.append(process)
    merged: dict[str, list[float]] = {}
    for _ in workers:
        for key, values in queue.get().items():
            merged.setdefault(key, []).extend(values)
    for process in workers:
        process.join()
    return merged


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


class CommandCounter:
    """Counts authorize commands that reach the broker."""

    def __init__(self, settings: Settings) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._client = MqttClient(settings, client_id=f"bench-{uuid.uuid4().hex[:8]}",
                                  on_message=self._handle)
        self._client.connect()
        self._client.subscribe(command_topic(settings.mqtt_topic_prefix, "+"), qos=1)

    def _handle(self, message: ReceivedMessage) -> None:
        """Count authorize commands."""
        if b'"cmd":"authorize"' in message.payload:
            with self._lock:
                self.count += 1

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()


def main() -> None:
    """Set up, run the three phases, print the figures, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--procs", type=int, default=2, help="load generator processes")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--splash-rates", type=float, nargs="*", default=[100.0, 250.0, 500.0],
                        help="open-loop splash rates (requests/s from all clients together)")
    parser.add_argument("--residents", type=int, default=30_000,
                        help="registered residents (one per sign-in, never reused)")
    args = parser.parse_args()

    run_id, base, settings = prepare_run(args.database)
    started = time.time()
    populate(settings, args.residents)
    print(f"registry: {args.residents} residents in {time.time() - started:.1f} s "
          f"({args.database})", file=sys.stderr)
    port = free_port()
    portal = start_portal(settings, port, args.workers, args.threads)
    counter = CommandCounter(settings)
    rows: list[tuple[str, float, float, float, float, int, float]] = []
    try:
        load_before = os.getloadavg()
        results: dict[str, dict[str, list[float]]] = {}
        groups = {"portal": portal.pid,
                  **server_pids(base, include_postgres=args.database == "postgresql")}
        signin_cpu: dict[str, float] = {}
        for kind in ("ping", "splash", "signin"):
            print(f"phase {kind}: {args.clients} clients for {args.duration:.0f} s ...",
                  file=sys.stderr)
            before = {name: tree_cpu_seconds(pid) for name, pid in groups.items()}
            results[kind] = run_phase(kind, port, args.clients, args.duration, args.procs,
                                      settings, args.residents)
            if kind == "signin":
                signin_cpu = {name: tree_cpu_seconds(pid) - before[name]
                              for name, pid in groups.items()}
        for rate in args.splash_rates:
            print(f"phase splash at {rate:g}/s from {args.clients} clients ...", file=sys.stderr)
            results[f"open{rate:g}"] = run_phase("open", port, args.clients, args.duration,
                                                 args.procs, settings, args.residents, rate)
        time.sleep(1.0)  # let the last commands arrive
        load_after = os.getloadavg()
    finally:
        counter.close()
        portal.terminate()
        portal.wait(timeout=30)

    d = args.duration
    ping = results["ping"]["ping"]
    base_rate = len(ping) / d
    for name, values in (("baseline GET /api/ping", ping),
                         ("splash GET (signed redirect)", results["splash"]["splash"]),
                         ("sign-in: splash step", results["signin"]["splash"]),
                         ("sign-in: POST /signin", results["signin"]["signin"]),
                         ("sign-in: POST /verify", results["signin"]["verify"]),
                         ("sign-in: POST /identity", results["signin"]["identity"]),
                         ("sign-in: whole path", results["signin"]["done"]),
                         *((f"splash open loop {r:g}/s offered", results[f"open{r:g}"]["open"])
                           for r in args.splash_rates)):
        rate = len(values) / d
        rows.append((name, rate, percentile(values, 50), percentile(values, 99),
                     percentile(values, 99) / percentile(ping, 99), len(values),
                     rate / base_rate))
    errors = {k: int(sum(v["errors"])) for k, v in results.items()}
    signins = len(results["signin"]["done"]) / d
    generator_cpu = {k: sum(v["cpu"]) / d for k, v in results.items()}

    print(f"\nportal load benchmark  ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
          f"{os.cpu_count()} CPUs, gunicorn {args.workers} workers x {args.threads} threads, "
          f"{args.database}, {args.clients} clients, {d:.0f} s per phase, "
          f"{args.procs} generator processes)")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)\n")
    print(f"{'':32} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99/base':>9} "
          f"{'rate/base':>9} {'count':>8}")
    for name, rate, p50, p99, p99_ratio, count, rate_ratio in rows:
        print(f"{name:32} {rate:9.1f} {p50:8.2f} {p99:8.2f} {p99_ratio:9.2f} "
              f"{rate_ratio:9.3f} {count:8d}")
    print(f"\ncompleted sign-ins: {signins:.1f} /s  (target 500/s; ClearPass 25K: 300-400/s)")
    print(f"authorize commands received by an MQTT subscriber: {counter.count} "
          f"(completed sign-ins: {len(results['signin']['done'])})")
    print(f"splash p99 at {args.clients} clients, closed loop (as fast as they can): "
          f"{rows[1][3]:.1f} ms; open loop: "
          + ", ".join(f"{r[3]:.1f} ms at {r[0].split()[3]}" for r in rows[7:])
          + " (target < 50 ms)")
    print(f"errors: {errors}; generator CPU (cores busy): "
          + ", ".join(f"{k} {v:.2f}" for k, v in generator_cpu.items()))
    print_signin_budget(signin_cpu, sum(results["signin"]["cpu"]),
                        len(results["signin"]["done"]), d)
    cleanup(settings, args.database, run_id, base)


def print_signin_budget(cpu: dict[str, float], generator_cpu: float, signins: int,
                        duration: float) -> None:
    """CPU per completed sign-in of each process during the sign-in phase, and the rate it caps.

    The phase runs from the generators' start (a few seconds of import before it) to their end,
    so the portal's and servers' CPU includes a little idle time: the figures are upper bounds.
    """
    if not signins or not cpu:
        return
    per = {name: seconds / signins * 1000 for name, seconds in cpu.items()}
    per["load generator"] = generator_cpu / signins * 1000
    total = sum(per.values())
    cores = os.cpu_count() or 1
    print("CPU per sign-in during the sign-in phase (ms): "
          + ", ".join(f"{name} {ms:.2f}" for name, ms in sorted(per.items()))
          + f"; total {total:.2f}")
    print(f"  -> {cores} cores fully used by these processes alone cap sign-ins at "
          f"{cores / total * 1000:,.0f}/s")
    drawn = draw_cpu_budget(ROOT / "bench" / "out" / "portal_cpu_per_signin.png",
                            "Captive portal, CPU per completed sign-in", "ms", per,
                            signins / duration, 500.0, "sign-ins/s", "the target")
    print(f"  picture: {drawn}")


def cleanup(settings: Settings, database: str, run_id: str, base: Settings) -> None:
    """Drop the run's database and Redis keys."""
    client = redis.Redis.from_url(settings.redis_url)
    for key in client.scan_iter(match=f"{settings.redis_key_prefix}*", count=5000):
        client.delete(key)
    client.close()
    if database == "postgresql":
        local_services.drop_database(base, f"bench_{run_id}")


if __name__ == "__main__":
    main()
