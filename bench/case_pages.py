#!/usr/bin/env python
"""How fast the case pages answer with a district's worth of cases (issue 13: under 1 s each).

Fills a fresh SQLite registry with 114 communities, N units and C cases spread over every state
(a fifth of the running ones overdue), then renders, through the Flask test client as a
district-wide supervisor, the case list (first page and a filtered page), the inbox, one case
and the CSV export; prints the median and worst of several runs of each.

    .venv/bin/python bench/case_pages.py --units 41257 --cases 5000
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from census.settings import Settings, generate_keys  # noqa: E402
from portal import create_app  # noqa: E402
from registry.db import make_engine, make_session_factory, session_scope, upgrade  # noqa: E402
from registry.models import (  # noqa: E402
    Building,
    Case,
    CaseStatus,
    Community,
    StaffUser,
    Unit,
)
from registry.staff import upsert_staff  # noqa: E402

PASSWORD = "bench password 1"


def fill(database_url: str, units: int, cases: int, seed: int) -> None:
    """Communities, buildings of 100 units, cases in every state; a supervisor and workers."""
    engine = make_engine(database_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    with session_scope(factory) as db:
        communities = [Community(code=f"TEDA-{i:03d}", name=f"社区{i}") for i in range(114)]
        db.add_all(communities)
        db.flush()
        buildings = [Building(community_id=communities[i % 114].id, code=f"B{i:03d}")
                     for i in range(-(-units // 100))]
        db.add_all(buildings)
        db.flush()
        db.execute(insert(Unit), [
            {"building_id": buildings[i // 100].id, "code": f"{i % 100:04d}",
             "ref": f"U{i:06d}", "floor": 1 + (i % 100) // 4, "room": str(i), "area_m2": 60.0,
             "registered_occupants": 2, "is_rented": True, "meter_group": "",
             "qr_token": uuid.uuid4().hex, "risk_tier": "normal", "updated_at": now}
            for i in range(units)])
        upsert_staff(db, "boss", PASSWORD, "supervisor")
        for w in range(20):
            upsert_staff(db, f"grid{w}", PASSWORD, "grid_worker")
        db.flush()
        boss = db.query(StaffUser).filter_by(username="boss").one()
        boss.district_wide = True
        workers = [u.id for u in db.query(StaffUser).filter(StaffUser.username != "boss")]
        unit_ids = [u for (u,) in db.query(Unit.id)]
        statuses = list(CaseStatus)
        rows = []
        for _ in range(cases):
            status = rng.choice(statuses)
            running = status in (CaseStatus.ASSIGNED, CaseStatus.HANDLING,
                                 CaseStatus.FEEDBACK, CaseStatus.VERIFIED, CaseStatus.PARKED)
            opened = now - dt.timedelta(days=rng.uniform(0, 60))
            rows.append({
                "unit_id": rng.choice(unit_ids), "kind": "overcrowding", "status": status.value,
                "tier": rng.choice(["key", "attention", "normal"]),
                "evidence": {"estimated": 6.0, "registered": 2, "interval": [4.0, 8.0]},
                "assigned_to_id": rng.choice(workers) if running else None,
                "opened_at": opened, "updated_at": opened,
                "assigned_at": opened if running else None,
                "due_at": (now + dt.timedelta(days=rng.uniform(-3, 12))) if running else None,
                "pending": "", "pending_by": "", "pending_reason": ""})
        db.execute(insert(Case), rows)
    engine.dispose()


def main() -> None:
    """Fill, render, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=41257)
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="case-pages-"))
    run = uuid.uuid4().hex[:8]
    settings = Settings.load(environ={}, environment="test", var_dir=folder / "var",
                             database_url=f"sqlite:///{folder / 'registry.sqlite3'}",
                             redis_key_prefix=f"bench-{run}:", mqtt_topic_prefix=f"bench-{run}",
                             **generate_keys())
    started = time.perf_counter()
    fill(settings.database_url, args.units, args.cases, args.seed)
    print(f"registry: {args.units} units, {args.cases} cases in "
          f"{time.perf_counter() - started:.1f} s")
    app = create_app(settings, {"TESTING": True, "WTF_CSRF_ENABLED": False})
    client = app.test_client()
    client.post("/admin/login", data={"username": "boss", "password": PASSWORD})
    page = client.get("/admin/cases").get_data(as_text=True)
    first = re.search(r'href="/admin/cases/(\d+)"', page)
    assert first, "no case on the list"
    routes = {"case list": "/admin/cases",
              "overdue key cases": "/admin/cases?status=handling&tier=key&overdue=1",
              "inbox": "/admin/inbox", "one case": f"/admin/cases/{first.group(1)}",
              "CSV export": "/admin/cases.csv"}
    for name, route in routes.items():
        times = []
        for _ in range(args.runs):
            began = time.perf_counter()
            response = client.get(route)
            times.append(time.perf_counter() - began)
            assert response.status_code == 200, (route, response.status_code)
        print(f"{name:18s} median {statistics.median(times) * 1000:7.1f} ms  "
              f"worst {max(times) * 1000:7.1f} ms")
    app.extensions["portal"].close()


if __name__ == "__main__":
    main()
