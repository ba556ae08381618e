"""The `wifi-census` command: import reports, configuration errors, keys, status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from census.settings import Settings
from wifi_census.cli import main

UNITS = (
    "community,community_name,building,building_name,unit,floor,room,area_m2,"
    "registered_occupants,rented,meter_group\n"
    "C1,,B1,,101,1,101,50,2,0,\n"
    "C1,,B1,,102,1,102,fifty,2,0,\n"
    "C1,,B1,,103,1,103,45,1,1,\n"
)


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """Environment variables pointing the CLI at this test's isolated settings."""
    return {
        "WIFI_CENSUS_VAR_DIR": str(settings.var_dir),
        "WIFI_CENSUS_DATABASE_URL": settings.database_url,
        "WIFI_CENSUS_ENVIRONMENT": "test",
    }


def test_import_reports_rejected_rows_by_line_and_exits_2(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """Good rows land, the bad row is listed with its line, and the exit code says so."""
    path = tmp_path / "units.csv"
    path.write_text(UNITS, encoding="utf-8")
    result = CliRunner().invoke(main, ["import", "units", str(path)], env=cli_env)
    assert result.exit_code == 2
    assert "units: 3 rows, 2 created, 0 updated, 0 unchanged, 1 rejected" in result.stdout
    assert "units.csv: line 3: area_m2 'fifty' is not a number" in result.stderr
    again = CliRunner().invoke(main, ["import", "units", str(path), "--json"], env=cli_env)
    report = json.loads(again.stdout.strip().splitlines()[-1])
    assert (report["created"], report["unchanged"]) == (0, 2)
    assert report["errors"] == [{"line": 3, "reason": "area_m2 'fifty' is not a number"}]


def test_a_bad_header_is_a_clear_error(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """A file of the wrong kind stops with the columns named, not a traceback."""
    path = tmp_path / "aps.csv"
    path.write_text("ap_id,community\nap1,C1\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["import", "units", str(path)], env=cli_env)
    assert result.exit_code == 1
    assert "line 1: missing columns:" in result.stderr
    assert "unknown columns: ap_id" in result.stderr


def test_a_bad_setting_stops_the_command_naming_it(cli_env: dict[str, str]) -> None:
    """Start-up configuration errors name the variable and the value."""
    env = {**cli_env, "WIFI_CENSUS_MQTT_PORT": "not-a-port"}
    result = CliRunner().invoke(main, ["config"], env=env)
    assert result.exit_code == 1
    assert "configuration error: WIFI_CENSUS_MQTT_PORT='not-a-port': must be a whole number" in (
        result.stderr
    )


def test_config_prints_settings_with_secrets_masked(cli_env: dict[str, str]) -> None:
    """`config` shows every variable and never a key."""
    result = CliRunner().invoke(main, ["config"], env=cli_env)
    assert result.exit_code == 0
    assert "WIFI_CENSUS_PSEUDONYM_KEY=***" in result.stdout
    assert "WIFI_CENSUS_MQTT_HOST=127.0.0.1" in result.stdout


def test_keys_prints_loadable_production_keys(tmp_path: Path) -> None:
    """Keys from `wifi-census keys` satisfy production's start-up checks."""
    result = CliRunner().invoke(main, ["keys"])
    env = dict(line.split("=", 1) for line in result.stdout.strip().splitlines())
    settings = Settings.load(environ={**env, "WIFI_CENSUS_ENVIRONMENT": "production",
                                      "WIFI_CENSUS_VAR_DIR": str(tmp_path)})
    assert settings.identity_key == env["WIFI_CENSUS_IDENTITY_KEY"]


def test_status_reports_the_running_services(running_services: Settings) -> None:
    """`services status` lists the shared servers as up."""
    result = CliRunner().invoke(main, ["services", "status"],
                                env={"WIFI_CENSUS_VAR_DIR": str(running_services.var_dir)})
    assert result.exit_code == 0, result.output
    for name in ("mosquitto", "redis", "influxdb"):
        line = next(line for line in result.stdout.splitlines() if line.startswith(name))
        assert " up " in line


def test_create_staff_refuses_a_short_password(cli_env: dict[str, str]) -> None:
    """A weak password is a message, not an account."""
    CliRunner().invoke(main, ["db", "upgrade"], env=cli_env)
    result = CliRunner().invoke(
        main, ["db", "create-staff", "ops", "--role", "admin", "--password", "short"], env=cli_env
    )
    assert result.exit_code == 1
    assert "Error: password must be at least 10 characters" in result.stderr
    ok = CliRunner().invoke(
        main, ["db", "create-staff", "ops", "--role", "admin", "--password", "long enough pw"],
        env=cli_env,
    )
    assert ok.exit_code == 0 and "created admin ops" in ok.stdout
