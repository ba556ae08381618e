"""CSV import: good rows kept, bad rows reported by line, duplicates, idempotence, both DBs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from census.privacy import IdentityCipher
from registry.db import registry_version
from registry.importers import HeaderError, import_csv
from registry.models import AccessPoint, AuditEntry, Coverage, Resident, Unit, UtilityReading

UNITS_HEADER = (
    "community,community_name,building,building_name,unit,floor,room,area_m2,"
    "registered_occupants,rented,meter_group"
)
UNITS = UNITS_HEADER + """
TEDA-01,泰达一区,B01,一号楼,0101,1,101,62.5,2,0,
TEDA-01,泰达一区,B01,一号楼,0102,1,102,48,1,1,
TEDA-01,泰达一区,B01,一号楼,0201,2,201,75,3,yes,M-B01-2
TEDA-01,泰达一区,B02,二号楼,0101,1,101,55,0,no,
"""

APS = """ap_id,community,building,floor,unit,coverage,ssid
ap-b01-0101,TEDA-01,B01,1,0101,unit,Census-Free
ap-b01-f2,TEDA-01,B01,2,,floor,Census-Free
ap-b02-lobby,TEDA-01,B02,,,building,Census-Free
"""

RESIDENTS = """community,building,unit,name,id_type,id_number,phone,move_in,move_out
TEDA-01,B01,0101,张伟,resident_id_card,11010519491231002X,13812345678,2024-03-01,
TEDA-01,B01,0101,王芳,resident_id_card,110105194912310021,13912345678,2024-03-01,
TEDA-01,B01,0102,John Smith,passport,E1234567,+447700900123,2025-01-10,
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write a CSV fixture file."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def import_base(tmp_path: Path, factory: sessionmaker[Session], cipher: IdentityCipher) -> None:
    """Import the good units and APs the other imports refer to."""
    assert not import_csv("units", write(tmp_path, "units.csv", UNITS), factory).errors
    assert not import_csv("aps", write(tmp_path, "aps.csv", APS), factory).errors


def test_units_import_creates_places_and_is_idempotent(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    """Units, buildings and communities are created once; a re-run changes nothing."""
    path = write(tmp_path, "units.csv", UNITS)
    first = import_csv("units", path, session_factory)
    assert (first.rows, first.created, first.updated, first.errors) == (4, 4, 0, [])
    with session_factory() as session:
        version = registry_version(session)
        unit = session.scalar(select(Unit).where(Unit.ref == "TEDA-01/B01/0201"))
        assert unit is not None
        assert (
            unit.floor,
            unit.area_m2,
            unit.registered_occupants,
            unit.is_rented,
            unit.meter_group,
        ) == (2, 75.0, 3, True, "M-B01-2")
        assert unit.building.community.name == "泰达一区"
        assert len(unit.qr_token) >= 20
        token = unit.qr_token
    second = import_csv("units", path, session_factory)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 4)
    with session_factory() as session:
        assert registry_version(session) == version  # nothing changed, caches stay valid
        assert session.scalar(select(func.count()).select_from(Unit)) == 4
        again = session.scalar(select(Unit).where(Unit.ref == "TEDA-01/B01/0201"))
        assert again is not None and again.qr_token == token


def test_changed_rows_update_in_place(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    """A changed value updates the existing unit instead of adding one."""
    import_csv("units", write(tmp_path, "units.csv", UNITS), session_factory)
    changed = UNITS.replace("0102,1,102,48,1,1,", "0102,1,102,48,4,1,")
    report = import_csv("units", write(tmp_path, "units2.csv", changed), session_factory)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 3)
    with session_factory() as session:
        unit = session.scalar(select(Unit).where(Unit.ref == "TEDA-01/B01/0102"))
        assert unit is not None and unit.registered_occupants == 4


def test_bad_rows_are_reported_by_line_and_good_rows_kept(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    """Each bad row is named by its line number and reason; the rows around it land."""
    text = (
        UNITS
        + "\n".join(
            [
                "TEDA-01,泰达一区,B01,一号楼,0301,three,301,60,2,0,",  # line 6: floor
                "TEDA-01,泰达一区,B01,一号楼,0302,3,302,-5,2,0,",  # line 7: area
                "TEDA-01,泰达一区,B01,一号楼,0303,3,303,60,2,maybe,",  # line 8: rented
                "TEDA 01,泰达一区,B01,一号楼,0304,3,304,60,2,0,",  # line 9: code
                "TEDA-01,泰达一区,B01,一号楼,0101,1,101,62.5,2,0,",  # line 10: duplicate of 2
                "TEDA-01,泰达一区,B01,一号楼,0305,3,305,60",  # line 11: short row
                "TEDA-01,泰达一区,B01,一号楼,0306,3,306,58,1,0,",  # line 12: good
            ]
        )
        + "\n"
    )
    report = import_csv("units", write(tmp_path, "units.csv", text), session_factory)
    assert report.created == 5
    reasons = {error.line: error.reason for error in report.errors}
    assert sorted(reasons) == [6, 7, 8, 9, 10, 11]
    assert "floor 'three' is not a whole number" in reasons[6]
    assert "area_m2 -5 must be more than 0" in reasons[7]
    assert "rented 'maybe'" in reasons[8]
    assert "community 'TEDA 01'" in reasons[9]
    assert reasons[10] == "duplicate of line 2 (same key)"
    assert "has 8 fields, the header has 11" in reasons[11]


def test_header_problems_name_the_columns(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    """A wrong header stops the import before any row, naming missing and unknown columns."""
    bad = "community,building,unit,floors\nA,B,C,1\n"
    with pytest.raises(
        HeaderError, match=r"line 1: missing columns: .*community_name.*unknown columns: floors"
    ):
        import_csv("units", write(tmp_path, "units.csv", bad), session_factory)


def test_access_points_need_known_places_and_consistent_coverage(
    tmp_path: Path, session_factory: sessionmaker[Session], cipher: IdentityCipher
) -> None:
    """APs land with their coverage; unknown units and inconsistent rows are explained."""
    import_base(tmp_path, session_factory, cipher)
    bad = (
        APS
        + "\n".join(
            [
                "ap-x1,TEDA-01,B01,1,0999,unit,Census-Free",  # line 5: unknown unit
                "ap-x2,TEDA-01,B01,3,,unit,Census-Free",  # line 6: unit coverage, no unit
                "ap-x3,TEDA-01,B01,,,floor,Census-Free",  # line 7: floor coverage, no floor
                "ap-x4,TEDA-09,B01,1,,floor,Census-Free",  # line 8: unknown building
            ]
        )
        + "\n"
    )
    report = import_csv("aps", write(tmp_path, "aps2.csv", bad), session_factory)
    assert report.unchanged == 3
    reasons = {error.line: error.reason for error in report.errors}
    assert "unit TEDA-01/B01/0999 is not in the registry" in reasons[5]
    assert "needs the unit column" in reasons[6]
    assert "needs the floor column" in reasons[7]
    assert "building TEDA-09/B01 is not in the registry" in reasons[8]
    with session_factory() as session:
        corridor = session.scalar(select(AccessPoint).where(AccessPoint.ap_id == "ap-b01-f2"))
        assert corridor is not None and corridor.coverage is Coverage.FLOOR and corridor.floor == 2


def test_residents_are_encrypted_at_rest_and_keyed_by_document(
    tmp_path: Path, session_factory: sessionmaker[Session], cipher: IdentityCipher
) -> None:
    """No identity number is stored in clear; re-importing finds residents by digest."""
    import_base(tmp_path, session_factory, cipher)
    path = write(tmp_path, "residents.csv", RESIDENTS)
    first = import_csv("residents", path, session_factory, cipher)
    assert [(e.line, e.reason) for e in first.errors] == [
        (3, "id_number check digit does not match (GB 11643)")
    ]
    assert first.created == 2
    second = import_csv("residents", path, session_factory, cipher)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 2)
    with session_factory() as session:
        residents = session.scalars(select(Resident).order_by(Resident.id)).all()
        assert sorted(cipher.decrypt(r.name_encrypted) for r in residents) == [
            "John Smith", "张伟"]
        residents.sort(key=lambda r: cipher.decrypt(r.name_encrypted))
        for resident in residents:
            assert b"E1234567" not in resident.id_number_encrypted
            assert b"11010519491231002X" not in resident.id_number_encrypted
        assert cipher.decrypt(residents[1].id_number_encrypted) == "11010519491231002X"
        assert residents[1].id_last4 == "002X"
        assert (
            session.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "import_residents")
            )
            == 2
        )


def test_utilities_import_and_reject_bad_periods(
    tmp_path: Path, session_factory: sessionmaker[Session], cipher: IdentityCipher
) -> None:
    """Readings land once per unit, kind and period; bad kinds and periods are explained."""
    import_base(tmp_path, session_factory, cipher)
    text = (
        "\n".join(
            [
                "community,building,unit,kind,period_start,period_end,amount",
                "TEDA-01,B01,0101,water,2026-11-01,2026-11-02,0.31",
                "TEDA-01,B01,0101,electricity,2026-11-01,2026-11-02,7.5",
                "TEDA-01,B01,0101,steam,2026-11-01,2026-11-02,1",  # line 4: kind
                "TEDA-01,B01,0101,water,2026-11-03,2026-11-02,1",  # line 5: period
                "TEDA-01,B01,0101,water,2026-11-02,2026-11-03,-1",  # line 6: amount
                "TEDA-01,B01,0101,water,2026-11-01,2026-11-02,0.31",  # line 7: duplicate
            ]
        )
        + "\n"
    )
    path = write(tmp_path, "utilities.csv", text)
    report = import_csv("utilities", path, session_factory)
    assert report.created == 2
    assert [e.line for e in report.errors] == [4, 5, 6, 7]
    assert "kind 'steam' must be one of water, electricity, gas, heat" in report.errors[0].reason
    assert import_csv("utilities", path, session_factory).unchanged == 2
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(UtilityReading)) == 2


def test_a_large_file_imports_in_chunks_with_progress(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    """Files bigger than one chunk are imported whole and progress adds up to every row."""
    header = UNITS.splitlines()[0]
    rows = [f"TEDA-02,,B{i // 500:02d},,{i:05d},{i % 30},{i},50,2,0," for i in range(4500)]
    path = write(tmp_path, "big.csv", "\n".join([header, *rows]) + "\n")
    seen: list[int] = []
    report = import_csv("units", path, session_factory, progress=seen.append)
    assert report.created == 4500 and not report.errors
    assert sum(seen) == 4500 and len(seen) == 3


def test_access_points_set_or_clear_their_fas_gateway_with_line_numbered_errors(
    tmp_path: Path, session_factory: sessionmaker[Session], cipher: IdentityCipher
) -> None:
    """The optional fas_gateway column enables openNDS FAS per AP (host:port), an empty cell
    turns it off, a bad value is reported by line and changes nothing; a file without the
    column leaves what was set."""
    import_base(tmp_path, session_factory, cipher)
    header = "ap_id,community,building,floor,unit,coverage,ssid,fas_gateway\n"
    good = (header
            + "ap-b01-0101,TEDA-01,B01,1,0101,unit,Census-Free,192.168.8.1:2050\n"
            + "ap-b01-f2,TEDA-01,B01,2,,floor,Census-Free,[fd00::1]:2050\n"
            + "ap-b02-lobby,TEDA-01,B02,,,building,Census-Free,gw-b02.teda.local:2050\n")
    report = import_csv("aps", write(tmp_path, "aps-fas.csv", good), session_factory)
    assert (report.updated, report.errors) == (3, [])
    bad = (header
           + "ap-b01-0101,TEDA-01,B01,1,0101,unit,Census-Free,192.168.8.1\n"
           + "ap-b01-f2,TEDA-01,B01,2,,floor,Census-Free,192.168.8.1:99999\n"
           + "ap-b02-lobby,TEDA-01,B02,,,building,Census-Free,gw b02:2050\n"
           + "ap-x1,TEDA-01,B02,,,building,Census-Free,fd00::1:2050\n"
           + "ap-x2,TEDA-01,B02,,,building,Census-Free,999.1.1.1:2050\n"
           + "ap-x3,TEDA-01,B02,,,building,Census-Free,[gw]:2050\n")
    report = import_csv("aps", write(tmp_path, "aps-bad.csv", bad), session_factory)
    assert [(e.line, e.reason) for e in report.errors] == [
        (2, "fas_gateway '192.168.8.1' must be host:port, e.g. 192.168.8.1:2050 or "
            "[fd00::1]:2050"),
        (3, "fas_gateway port '99999' must be a number from 1 to 65535"),
        (4, "fas_gateway host 'gw b02' is not an IP address or host name"),
        (5, "fas_gateway 'fd00::1:2050' must be host:port, e.g. 192.168.8.1:2050 or "
            "[fd00::1]:2050"),
        (6, "fas_gateway host '999.1.1.1' is not an IP address or host name"),
        (7, "fas_gateway host 'gw' is not an IP address or host name"),
    ]
    assert report.created == report.updated == 0
    with session_factory() as session:
        gateways = {ap_id: gateway for ap_id, gateway in session.execute(
            select(AccessPoint.ap_id, AccessPoint.fas_gateway))}
    assert gateways == {"ap-b01-0101": "192.168.8.1:2050", "ap-b01-f2": "[fd00::1]:2050",
                        "ap-b02-lobby": "gw-b02.teda.local:2050"}
    # Without the column (an older file): FAS stays as set. An empty cell turns it off.
    assert import_csv("aps", write(tmp_path, "aps.csv", APS), session_factory).unchanged == 3
    off = header + "ap-b01-f2,TEDA-01,B01,2,,floor,Census-Free,\n"
    assert import_csv("aps", write(tmp_path, "aps-off.csv", off), session_factory).updated == 1
    with session_factory() as session:
        gateways = {ap_id: gateway for ap_id, gateway in session.execute(
            select(AccessPoint.ap_id, AccessPoint.fas_gateway))}
    assert gateways["ap-b01-f2"] == "" and gateways["ap-b01-0101"] == "192.168.8.1:2050"
