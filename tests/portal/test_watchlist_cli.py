"""Watchlist import and the `wifi-census portal` commands, through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from census.handshake import verify_signed_redirect
from census.privacy import IdentityCipher
from census.settings import Settings
from portal.watchlist import WatchlistFileError, import_watchlist
from registry.models import AccessPoint, AuditEntry, WatchlistEntry
from tests.common import FLOOR_AP, WATCHED_ID, ZHANG_ID, Place, env_of, free_port
from wifi_census.cli import main


def write(path: Path, text: str) -> Path:
    """Write a UTF-8 file and return its path."""
    path.write_text(text, encoding="utf-8")
    return path


def test_watchlist_import_keeps_digests_only_and_reports_bad_lines(
        tmp_path: Path, sqlite_session_factory: sessionmaker[Session],
        cipher: IdentityCipher) -> None:
    """Good rows stored as digests, bad rows named by line, second import changes nothing."""
    csv_file = write(tmp_path / "watch.csv", (
        "\ufeffid_type,id_number,reason\n"
        f"resident_id_card,{ZHANG_ID},case 17\n"
        "resident_id_card,110105194912310021,typo\n"
        "passport,E12345678,case 18\n"
        "spaceship,123,no\n"
        f"resident_id_card,{ZHANG_ID.lower()},again\n"
    ))
    report = import_watchlist(csv_file, sqlite_session_factory, cipher)
    assert (report.rows, report.created) == (5, 2)
    assert [line for line, _ in report.errors] == [3, 5, 6]
    assert "duplicate of line 2" in report.errors[2][1]
    with sqlite_session_factory() as db:
        digests = set(db.scalars(select(WatchlistEntry.id_digest)))
        assert digests == {cipher.digest("resident_id_card", ZHANG_ID),
                           cipher.digest("passport", "E12345678")}
        assert db.scalars(select(AuditEntry.action)).all() == ["import_watchlist"]
    again = import_watchlist(csv_file, sqlite_session_factory, cipher)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)


def test_watchlist_header_must_match(tmp_path: Path,
                                     sqlite_session_factory: sessionmaker[Session],
                                     cipher: IdentityCipher) -> None:
    """A wrong header names the unknown and missing columns."""
    bad = write(tmp_path / "w.csv", "id_type,number,reason,extra\n")
    with pytest.raises(WatchlistFileError,
                       match="unknown column.*number, extra.*missing id_number"):
        import_watchlist(bad, sqlite_session_factory, cipher)


def test_cli_watchlist_import(tmp_path: Path, settings: Settings, place: Place) -> None:
    """`wifi-census portal watchlist import FILE` prints counts; exit 2 on rejected rows."""
    good = write(tmp_path / "w.csv", f"id_type,id_number,reason\nresident_id_card,{WATCHED_ID},x\n")
    result = CliRunner().invoke(main, ["portal", "watchlist", "import", str(good)],
                                env=env_of(settings))
    assert result.exit_code == 0, result.output
    assert "1 rows, 0 created, 1 updated" in result.output  # the fixture had it with another reason
    bad = write(tmp_path / "b.csv", "id_type,id_number,reason\npassport,1,x\n")
    result = CliRunner().invoke(main, ["portal", "watchlist", "import", str(bad)],
                                env=env_of(settings))
    assert result.exit_code == 2 and "line 2" in result.output


def test_cli_ap_secret_and_sign_redirect(settings: Settings, place: Place,
                                         sqlite_session_factory: sessionmaker[Session],
                                         cipher: IdentityCipher) -> None:
    """A fresh AP secret is stored encrypted; sign-redirect signs with it."""
    runner = CliRunner()
    result = runner.invoke(main, ["portal", "ap-secret", FLOOR_AP], env=env_of(settings))
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    with sqlite_session_factory() as db:
        ap = db.scalars(select(AccessPoint).where(AccessPoint.ap_id == FLOOR_AP)).one()
        assert ap.secret_encrypted and cipher.decrypt(ap.secret_encrypted) == secret
    url = runner.invoke(main, ["portal", "sign-redirect", "--ap", FLOOR_AP, "--mac",
                               "a4:83:e7:12:9f:01", "--ip", "10.0.0.2"], env=env_of(settings))
    assert url.exit_code == 0, url.output
    from urllib.parse import parse_qsl, urlsplit

    args = dict(parse_qsl(urlsplit(url.output.strip().splitlines()[-1]).query,
                          keep_blank_values=True))
    hs = verify_signed_redirect(args, lambda ap: secret, max_age=60)
    assert hs.ap_id == FLOOR_AP
    missing = runner.invoke(main, ["portal", "ap-secret", "ap-nope"], env=env_of(settings))
    assert missing.exit_code == 1 and "not in the registry" in missing.output


@pytest.mark.slow
def test_portal_serve_answers_under_gunicorn(settings: Settings, place: Place) -> None:
    """What the demo does: `wifi-census portal serve` in the background, then it answers."""
    port = free_port()
    env = {**os.environ, **env_of(settings), "WIFI_CENSUS_LOG_LEVEL": "WARNING"}
    command = [str(Path(sys.executable).parent / "wifi-census"), "portal", "serve",
               "--port", str(port), "--workers", "2"]
    log = (Path(settings.var_dir).parent / "portal.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
                break
            except requests.RequestException:
                assert process.poll() is None, "portal exited; see portal.log"
                assert time.monotonic() < deadline, "portal did not answer within 20 s"
                time.sleep(0.2)
        assert response.status_code == 200 and response.json()["ok"] is True
        splash = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert "居民免费 Wi-Fi" in splash.text
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
