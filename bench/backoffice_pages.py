#!/usr/bin/env python
"""Back-office page times at district scale: counts, building heatmap, unit file, QR sheet.

Builds a TEDA-sized registry (114 communities, 41,040 units, an estimate with its packed
hour x night grid for every unit, a few thousand cases with history) in a scratch SQLite file,
builds the portal with ``create_app`` on it (real Redis under a scratch key prefix), signs an
administrator in and times each page through the app's WSGI callable (Flask's test client,
so HTTP parsing by gunicorn comes on top), beside ``/api/ping`` as the baseline.

    .venv/bin/python bench/backoffice_pages.py            # about a minute, most of it filling
    .venv/bin/python bench/backoffice_pages.py --repeat 9
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

from sqlalchemy import insert, select  # noqa: E402

from analytics.heatmaps import pack_hour_night  # noqa: E402
from census.settings import Settings, generate_keys  # noqa: E402
from portal import create_app  # noqa: E402
from registry.db import make_engine, make_session_factory, session_scope, upgrade  # noqa: E402
from registry.models import (  # noqa: E402
    Building,
    Case,
    CaseEvent,
    Community,
    Unit,
    UnitEstimate,
    new_qr_token,
)
from registry.staff import upsert_staff  # noqa: E402

COMMUNITIES, BUILDINGS, FLOORS, PER_FLOOR = 114, 4, 18, 5
NIGHTS = 28
CASES = 3000
PASSWORD = "bench-password-1"


def fill(database_url: str) -> tuple[int, str]:
    """Write the district; return a building id and a flagged unit's reference."""
    engine = make_engine(database_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    rng = random.Random(41257)
    now = dt.datetime.now(dt.UTC)
    start = dt.date.today() - dt.timedelta(days=NIGHTS)
    with session_scope(factory) as db:
        upsert_staff(db, "bench-admin", PASSWORD, "admin")
        communities = [{"code": f"TEDA-{c:03d}", "name": f"泰达第{c}社区"}
                       for c in range(1, COMMUNITIES + 1)]
        db.execute(insert(Community), communities)
        ids = {code: cid for code, cid in db.execute(select(Community.code, Community.id))}
        db.execute(insert(Building), [{"community_id": ids[c["code"]], "code": f"B{b:02d}",
                                       "name": f"{b}号楼"}
                                      for c in communities for b in range(1, BUILDINGS + 1)])
        buildings = db.execute(select(Building.id, Community.code, Building.code).join(
            Community, Building.community_id == Community.id)).all()
        units = [{"building_id": bid, "code": f"{f}{r:02d}", "ref": f"{cc}/{bc}/{f}{r:02d}",
                  "floor": f, "room": f"{f}{r:02d}", "area_m2": 60.0,
                  "registered_occupants": rng.randint(1, 4), "is_rented": rng.random() < 0.2,
                  "meter_group": "", "qr_token": new_qr_token(), "risk_tier": "normal",
                  "updated_at": now}
                 for bid, cc, bc in buildings for f in range(1, FLOORS + 1)
                 for r in range(1, PER_FLOOR + 1)]
        db.execute(insert(Unit), units)
        unit_ids = db.execute(select(Unit.id, Unit.registered_occupants)).all()
        estimates = []
        for unit_id, registered in unit_ids:
            people = registered + (rng.randint(3, 8) if rng.random() < 0.013 else 0)
            observed = 0 if rng.random() < 0.05 else NIGHTS
            night = [float(people) if 14 <= h <= 23 else 1.0 for h in range(24)]
            estimates.append({
                "unit_id": unit_id, "generated_at": now, "window_start": start,
                "window_end": start + dt.timedelta(days=NIGHTS - 1), "registered": registered,
                "estimated": float(people), "low": people - 1.0, "high": people + 2.0,
                "confidence": 0.97 if people > registered + 2 else 0.02,
                "confidence_plus_one": 0.5, "persistence": 1.0, "nights_observed": observed,
                "resident_devices": people, "people_detected": people, "coverage": "unit_ap",
                "zone": "", "zone_units": 1, "utility_ratio": 1.1, "utility_people": people,
                "flag": "group_rental" if people > registered + 2 else "", "tier": "normal",
                "nights": [float(people) if observed else None] * NIGHTS, "hours": [1.0] * 24,
                "hour_night": pack_hour_night([night if observed else None] * NIGHTS)})
        for i in range(0, len(estimates), 5000):
            db.execute(insert(UnitEstimate), estimates[i:i + 5000])
        flagged = [e["unit_id"] for e in estimates if e["flag"]]
        chosen = rng.sample([u for u, _ in unit_ids], CASES - len(flagged)) + flagged
        db.execute(insert(Case), [{"unit_id": u, "kind": "overcrowding", "status": "discovered",
                                   "tier": "key", "evidence": {}, "opened_at": now
                                   - dt.timedelta(days=rng.randint(0, 60)), "updated_at": now}
                                  for u in chosen])
        case_ids = db.scalars(select(Case.id)).all()
        db.execute(insert(CaseEvent), [{"case_id": c, "at": now, "actor": "analytics",
                                        "from_status": "", "to_status": "discovered",
                                        "note": "opened"} for c in case_ids for _ in range(3)])
        unit = db.scalar(select(Unit).where(Unit.id == flagged[0]))
        assert unit is not None
        return unit.building_id, unit.ref


def main() -> None:
    """Fill, then time each page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="requests per page (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/registry.sqlite3"
        started = time.monotonic()
        building_id, ref = fill(url)
        print(f"filled {COMMUNITIES * BUILDINGS * FLOORS * PER_FLOOR} units, {CASES} cases "
              f"in {time.monotonic() - started:.1f} s")
        settings = Settings.load(environ={}, environment="test", var_dir=Path(folder) / "var",
                                 database_url=url,
                                 redis_key_prefix=f"bench-{uuid.uuid4().hex[:8]}:",
                                 **generate_keys())
        app = create_app(settings, {"TESTING": True})
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
        form = client.get("/admin/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form)
        assert token is not None
        client.post("/admin/login", data={"username": "bench-admin", "password": PASSWORD,
                                          "csrf_token": token.group(1)})
        pages = {
            "/api/ping (baseline)": "/api/ping",
            "overview, whole district": "/admin/",
            "heatmap list (456 buildings)": "/admin/heatmaps/",
            "building heatmap page": f"/admin/heatmaps/buildings/{building_id}",
            "building heatmap JSON": f"/admin/heatmaps/buildings/{building_id}.json",
            "building heatmap CSV": f"/admin/heatmaps/buildings/{building_id}.csv",
            "unit file": f"/admin/units/{ref}",
            "unit presence JSON": f"/admin/units/{ref}/presence.json",
            "QR sheet (90 codes)": f"/admin/qr/buildings/{building_id}",
        }
        print(f"{'page':32} {'median ms':>10} {'max ms':>8} {'x ping':>8}")
        baseline = 0.0
        for label, path in pages.items():
            times = []
            for _ in range(args.repeat):
                mark = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - mark) * 1000)
                assert response.status_code == 200, (path, response.status_code)
                response.close()
            median = statistics.median(times)
            baseline = baseline or median
            print(f"{label:32} {median:10.1f} {max(times):8.1f} {median / baseline:8.0f}")
        app.extensions["portal"].close()


if __name__ == "__main__":
    main()
