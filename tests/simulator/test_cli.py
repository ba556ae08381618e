"""`wifi-census simulate` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from census.settings import Settings, generate_keys
from wifi_census.cli import main


@pytest.fixture
def env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """Environment pointing the CLI at this test's prefix and folders."""
    values = {
        "WIFI_CENSUS_VAR_DIR": str(tmp_path / "var"),
        "WIFI_CENSUS_MQTT_TOPIC_PREFIX": settings.mqtt_topic_prefix,
        "WIFI_CENSUS_LOG_LEVEL": "WARNING",
    }
    values.update({f"WIFI_CENSUS_{k.upper()}": v for k, v in generate_keys().items()})
    return values


def test_simulate_writes_the_files_and_reports(tmp_path: Path, env: dict[str, str]) -> None:
    """The command writes six files and prints a JSON summary."""
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["simulate", "--units", "30", "--days", "1", "--seed", "4",
                                       "--out", str(out), "--end", "2025-03-10", "--json"],
                                env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["units"] == 30 and summary["messages"] > 0
    assert summary["period_end"] == "2025-03-09T06:00:00+08:00"  # naive --end: local time
    assert "retention window" in result.stderr  # March 2025 is long past 90 days
    assert sorted(p.name for p in out.iterdir()) == [
        "aps.csv", "events.jsonl", "residents.csv", "truth.json", "units.csv", "utilities.csv"]


def test_simulate_publish_and_replay(tmp_path: Path, env: dict[str, str]) -> None:
    """--publish sends what it generated; --replay sends an earlier run again."""
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(main, ["simulate", "--units", "10", "--days", "1", "--out", str(out),
                                 "--end", "2025-03-10T12:00+08:00", "--publish", "--json"],
                          env=env)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["published"] == summary["messages"] > 0
    again = runner.invoke(main, ["simulate", "--out", str(out), "--replay", "--json"], env=env)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.strip().splitlines()[-1])["published"] == summary["messages"]


@pytest.mark.parametrize(("arguments", "message"), [
    (["--units", "0"], "--units"),
    (["--days", "400"], "--days"),
    (["--end", "yesterday"], "is not an ISO date"),
    (["--group-rental-share", "2"], "--group-rental-share"),
    (["--live", "--end", "2025-03-10"], "--live starts the period today"),
])
def test_bad_options_are_named(tmp_path: Path, env: dict[str, str], arguments: list[str],
                               message: str) -> None:
    """A bad option is a usage error naming it; nothing is written."""
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["simulate", "--out", str(out), *arguments], env=env)
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()


def test_replay_without_a_run_says_so(tmp_path: Path, env: dict[str, str]) -> None:
    """--replay on an empty folder explains what is missing."""
    result = CliRunner().invoke(main, ["simulate", "--out", str(tmp_path), "--replay"], env=env)
    assert result.exit_code == 1
    assert "events.jsonl does not exist" in result.output


def test_unreachable_broker_is_a_clear_error(tmp_path: Path, env: dict[str, str]) -> None:
    """--publish with no broker fails with the address it tried; the files are kept."""
    env = {**env, "WIFI_CENSUS_MQTT_PORT": "1"}
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["simulate", "--units", "10", "--days", "1", "--out",
                                       str(out), "--end", "2025-03-10", "--publish"], env=env)
    assert result.exit_code == 1
    assert "cannot reach MQTT broker 127.0.0.1:1" in result.output
    assert (out / "events.jsonl").stat().st_size > 0
