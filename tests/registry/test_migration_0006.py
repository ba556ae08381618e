"""Migration 0006 carries old cases and staff into the new loop and roles, and back."""

from __future__ import annotations

from sqlalchemy import Engine, text

from registry.db import downgrade, upgrade


def _seed_at_0003(engine: Engine) -> None:
    """Rows as the 0003 schema held them: old statuses, one-community staff."""
    downgrade(engine, "0003")
    with engine.begin() as db:
        db.execute(text("INSERT INTO communities (id, code, name) VALUES (1, 'C1', ''), "
                        "(2, 'C2', '')"))
        db.execute(text("INSERT INTO buildings (id, community_id, code, name) "
                        "VALUES (1, 1, 'B1', '')"))
        db.execute(text(
            "INSERT INTO units (id, building_id, code, ref, floor, room, area_m2, "
            "registered_occupants, is_rented, meter_group, qr_token, risk_tier, updated_at) "
            "VALUES (1, 1, '101', 'C1/B1/101', 1, '101', 50, 1, true, '', 'tok', 'normal', "
            "'2026-11-01 00:00:00')"))
        for number, status in enumerate(("discovered", "handed_over", "fed_back",
                                         "supervised", "closed"), start=1):
            db.execute(text(
                "INSERT INTO cases (id, unit_id, kind, status, tier, evidence, opened_at, "
                "updated_at) VALUES (:id, 1, 'overcrowding', :s, 'key', '{}', "
                "'2026-11-01 00:00:00', '2026-11-02 00:00:00')"), {"id": number, "s": status})
            db.execute(text(
                "INSERT INTO case_events (case_id, at, actor, from_status, to_status, note) "
                "VALUES (:id, '2026-11-02 00:00:00', 'x', 'discovered', :s, '')"),
                {"id": number, "s": status})
        db.execute(text(
            "INSERT INTO staff_users (id, username, display_name, password_hash, role, "
            "community_id, active, created_at) VALUES "
            "(1, 'boss', '', 'h', 'admin', NULL, true, '2026-11-01 00:00:00'), "
            "(2, 'grid', '', 'h', 'grid_worker', 2, true, '2026-11-01 00:00:00')"))


def test_old_statuses_and_staff_map_onto_the_new_loop(registry_engine: Engine) -> None:
    """handed_over → assigned (clock started), fed_back → feedback, supervised → verified."""
    _seed_at_0003(registry_engine)
    # 0006 itself: from 0010 on, the four open cases of one unit are folded into one.
    upgrade(registry_engine, "0006")
    with registry_engine.begin() as db:
        statuses = dict(db.execute(text("SELECT id, status FROM cases")).all())
        assert statuses == {1: "discovered", 2: "assigned", 3: "feedback", 4: "verified",
                            5: "closed"}
        events = dict(db.execute(text("SELECT case_id, to_status FROM case_events")).all())
        assert events[2] == "assigned" and events[4] == "verified"
        clocks = dict(db.execute(text("SELECT id, assigned_at FROM cases")).all())
        assert clocks[1] is None and clocks[2] is not None
        staff = {row[0]: (bool(row[1]),) for row in db.execute(
            text("SELECT username, district_wide FROM staff_users"))}
        assert staff == {"boss": (True,), "grid": (False,)}
        assert db.execute(text("SELECT staff_id, community_id FROM staff_communities")
                          ).all() == [(2, 2)]
        # The new states and roles pass the CHECK constraints; an unknown one does not.
        db.execute(text("UPDATE cases SET status = 'parked' WHERE id = 1"))
        db.execute(text("UPDATE staff_users SET role = 'supervisor' WHERE id = 2"))
    try:
        with registry_engine.begin() as db:
            db.execute(text("UPDATE cases SET status = 'handed_over' WHERE id = 1"))
    except Exception as error:  # noqa: BLE001 - the CHECK constraint's error differs per driver
        assert "check" in str(error).lower() or "constraint" in str(error).lower()
    else:
        raise AssertionError("an old status was accepted after the upgrade")


def test_downgrade_folds_the_new_states_back(registry_engine: Engine) -> None:
    """Back at 0003, every case holds a status the old schema knows."""
    _seed_at_0003(registry_engine)
    upgrade(registry_engine, "0006")
    with registry_engine.begin() as db:
        db.execute(text("UPDATE cases SET status = 'parked' WHERE id = 1"))
        db.execute(text("UPDATE staff_users SET role = 'viewer' WHERE id = 2"))
    downgrade(registry_engine, "0003")
    with registry_engine.begin() as db:
        assert dict(db.execute(text("SELECT id, status FROM cases")).all()) == {
            1: "handling", 2: "handed_over", 3: "fed_back", 4: "supervised", 5: "closed"}
        assert db.execute(text("SELECT role, community_id FROM staff_users WHERE id = 2")
                          ).one() == ("hazard_team", 2)
