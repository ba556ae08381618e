#!/usr/bin/env python
"""CPU profile of whole captive-portal sign-ins, in one process, against the real servers.

Builds the portal with ``create_app`` on an isolated registry (its own PostgreSQL database, or
SQLite), Redis key prefix and MQTT topic prefix, then walks sign-ins one after another through
the app's WSGI callable: signed redirect -> POST /signin, the number (SMS code read from
the console sender's Redis outbox) -> POST /verify -> POST /identity (registry transaction,
authorize command published and acknowledged by the broker). Each request's WSGI environ is
built and its page
parsed outside the measured span, so the figures are the portal's own work (gunicorn's HTTP
parsing comes on top).

Prints CPU milliseconds (``time.process_time``: every thread of this process, so the MQTT
client's network thread counts) and wall milliseconds per request type and per whole sign-in;
with ``--profile`` also the top functions by own and cumulative time (cProfile, this thread).
Decides changes without a load run: two cores shared with other work make wall-clock
throughput move with the neighbours, CPU per sign-in much less.

    .venv/bin/python bench/portal_profile.py --signins 400
    .venv/bin/python bench/portal_profile.py --signins 200 --profile --top 30
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import logging
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from sqlalchemy import event  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from bench.portal_load import (  # noqa: E402
    cleanup,
    form_fields,
    name,
    phone,
    populate,
    prepare_run,
    resident_id,
    signed_path,
    sms_to,
)
from census.channels import RedisKeys  # noqa: E402
from portal import create_app  # noqa: E402

HEADERS = {
    "Accept-Language": "zh-CN,zh;q=0.9",
    "User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
}
STEPS = ("splash", "signin", "verify", "identity")


class Runner:
    """Calls the WSGI app the way a server would and measures only the app's work."""

    def __init__(self, app: Any, profiler: cProfile.Profile | None) -> None:
        self.app = app
        self.profiler = profiler
        self.cpu: dict[str, list[float]] = {}
        self.wall: dict[str, list[float]] = {}
        self.step = ""
        self.statements: list[tuple[int, str, str]] = []  # (sign-in, step, SQL) with --sql
        self.number = 0

    def call(self, step: str, method: str, path: str, form: dict[str, str] | None = None,
             record: bool = True) -> tuple[int, bytes]:
        """One request; its CPU and wall time are added to step's figures when record."""
        builder = EnvironBuilder(path=path, method=method, headers=list(HEADERS.items()),
                                 data=urlencode(form) if form is not None else None,
                                 content_type=("application/x-www-form-urlencoded"
                                               if form is not None else None),
                                 environ_base={"REMOTE_ADDR": "127.0.0.1"})
        environ = builder.get_environ()
        builder.close()
        status: list[str] = []

        def start_response(line: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            """Keep the status line."""
            status.append(line)
            return lambda _data: None

        self.step = step if record else ""
        if self.profiler is not None and record:
            self.profiler.enable()
        cpu, wall = time.process_time(), time.perf_counter()
        result: Iterable[bytes] = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if self.profiler is not None and record:
            self.profiler.disable()
        if record:
            self.cpu.setdefault(step, []).append(cpu)
            self.wall.setdefault(step, []).append(wall)
        return int(status[0].split()[0]), body


def sign_in(runner: Runner, codes: redis.Redis, last_key: str, n: int, record: bool) -> None:
    """One whole sign-in of resident n from a new device; raise if any step fails."""
    runner.number = n
    status, html = runner.call("splash", "GET", signed_path(n), record=record)
    if status != 200:
        raise SystemExit(f"splash answered {status}")
    body = {**form_fields(html), "phone": phone(n), "consent": "y"}
    status, html = runner.call("signin", "POST", "/signin", body, record=record)
    code = codes.hget(last_key, sms_to(n))
    if status != 200 or code is None:
        raise SystemExit(f"/signin answered {status}: {html[:300]!r}")
    body = {**form_fields(html), "code": code.decode() if isinstance(code, bytes) else code}
    status, html = runner.call("verify", "POST", "/verify", body, record=record)
    if status != 200 or b'name="id_number"' not in html:
        raise SystemExit(f"/verify answered {status}: {html[:300]!r}")
    body = {**form_fields(html), "name": name(n), "id_type": "resident_id_card",
            "id_number": resident_id(n), "unit": ""}
    status, html = runner.call("identity", "POST", "/identity", body, record=record)
    if status != 200 or "连接成功".encode() not in html:
        raise SystemExit(f"/identity answered {status}: {html[:300]!r}")


def ms(values: list[float], fn: Callable[[list[float]], float]) -> float:
    """A statistic of seconds, in milliseconds."""
    return fn(values) * 1000 if values else float("nan")


def report(runner: Runner, pings: Runner, signins: int) -> None:
    """Per-step and per-sign-in CPU and wall milliseconds."""
    # CPU speed here moves with what else runs on the machine; the same process's /api/ping
    # (Flask's fixed cost, nothing behind it) is measured in turn with the sign-ins, and the
    # ratio to it compares runs made at different times.
    ping = statistics.fmean(pings.cpu["ping"])
    print(f"{'':24} {'cpu mean':>9} {'cpu p50':>8} {'x ping':>7} {'wall mean':>10} "
          f"{'wall p50':>9} {'count':>6}")
    rows = [("GET /api/ping", pings.cpu["ping"], pings.wall["ping"])]
    rows += [(f"{step}", runner.cpu[step], runner.wall[step]) for step in STEPS]
    for label, cpu, wall in rows:
        print(f"{label:24} {ms(cpu, statistics.fmean):9.3f} {ms(cpu, statistics.median):8.3f} "
              f"{statistics.fmean(cpu) / ping:7.2f} {ms(wall, statistics.fmean):10.3f} "
              f"{ms(wall, statistics.median):9.3f} {len(cpu):6d}")
    whole_cpu = sum(sum(runner.cpu[s]) for s in STEPS) / signins
    whole_wall = sum(sum(runner.wall[s]) for s in STEPS) / signins
    print(f"{'whole sign-in':24} {whole_cpu * 1000:9.3f} {'':8} {whole_cpu / ping:7.2f} "
          f"{whole_wall * 1000:10.3f}")
    print(f"\nportal CPU per sign-in: {whole_cpu * 1000:.2f} ms -> at most "
          f"{1 / whole_cpu:.0f} sign-ins/s per fully busy core (before gunicorn's own share)")


def main() -> None:
    """Set up, warm up, measure, print, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signins", type=int, default=400, help="measured sign-ins")
    parser.add_argument("--warmup", type=int, default=50, help="sign-ins before measuring")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--profile", action="store_true", help="cProfile the measured requests")
    parser.add_argument("--top", type=int, default=25, help="functions listed with --profile")
    parser.add_argument("--sql", action="store_true",
                        help="count SQL statements per step and print one sign-in's")
    parser.add_argument("--sort", default="tottime,cumulative",
                        help="pstats sort keys to list, comma separated")
    args = parser.parse_args()

    run_id, base, settings = prepare_run(args.database)
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    total = args.warmup + args.signins
    populate(settings, total)
    app = create_app(settings)
    codes = redis.Redis.from_url(settings.redis_url)
    last_key = RedisKeys(settings.redis_key_prefix).sms_last()
    # This thread's CPU only: a wall-clock profile would charge the waits for PostgreSQL, Redis
    # and the broker's PUBACK to whatever function was waiting.
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    runner = Runner(app, profiler)
    pings = Runner(app, None)
    if args.sql:
        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            """Note each statement under the step that sent it."""
            if runner.step:
                runner.statements.append((runner.number, runner.step, statement))

        event.listen(app.extensions["portal"].engine, "before_cursor_execute", count)
    load_before = os.getloadavg()
    try:
        for n in range(args.warmup):
            sign_in(runner, codes, last_key, n, record=False)
            pings.call("ping", "GET", "/api/ping", record=False)
        for n in range(args.warmup, total):
            sign_in(runner, codes, last_key, n, record=True)
            pings.call("ping", "GET", "/api/ping")
    finally:
        load_after = os.getloadavg()
        app.extensions["portal"].close()
        codes.close()
        cleanup(settings, args.database, run_id, base)

    print(f"portal CPU profile  ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
          f"{args.database}, {args.signins} sign-ins after {args.warmup} warm-up, "
          f"{'cProfile on' if profiler else 'no profiler'})")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)\n")
    report(runner, pings, args.signins)
    if args.sql:
        print("\nSQL statements per request (mean):")
        for step in STEPS:
            sent = sum(1 for _n, s, _sql in runner.statements if s == step)
            print(f"  {step:8} {sent / args.signins:.2f}")
        print("the last sign-in's:")
        for n, step, statement in runner.statements:
            if n == total - 1:
                print(f"  [{step}] {' '.join(statement.split())[:150]}")
    if profiler is not None:
        for key in args.sort.split(","):
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats(key).print_stats(args.top)
            text = out.getvalue()
            print(f"\n--- top {args.top} by {key} ---")
            print(text[text.find("   ncalls"):].rstrip())


if __name__ == "__main__":
    main()
