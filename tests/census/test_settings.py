"""Settings: defaults, parsing, and errors that name the variable and the value."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from census.channels import alert_topic
from census.settings import (
    VARIABLES,
    Settings,
    SettingsError,
    environment_of,
    generate_keys,
    markdown_table,
)


def test_defaults_point_at_the_local_services(tmp_path: Path) -> None:
    """With no variables set, every address is a loopback service."""
    settings = Settings.load(environ={"WIFI_CENSUS_VAR_DIR": str(tmp_path)})
    assert settings.mqtt_host == "127.0.0.1"
    assert settings.redis_url.startswith("redis://127.0.0.1:")
    assert settings.influx_url.startswith("http://127.0.0.1:")
    assert settings.database_url == f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    assert settings.timezone == "Asia/Shanghai"


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("WIFI_CENSUS_MQTT_PORT", "eighteen", "must be a whole number"),
        ("WIFI_CENSUS_MQTT_PORT", "70000", "must be between 1 and 65535"),
        ("WIFI_CENSUS_REDIS_URL", "http://127.0.0.1:6379", "must be a URL starting with redis://"),
        ("WIFI_CENSUS_INFLUX_URL", "127.0.0.1:8086", "must be a URL starting with http://"),
        ("WIFI_CENSUS_DATABASE_URL", "mysql://x", "must be a URL starting with sqlite://"),
        ("WIFI_CENSUS_TIMEZONE", "Mars/Olympus", "is not an IANA time zone name"),
        ("WIFI_CENSUS_RETENTION_DAYS", "0", "must be between 1 and 3650"),
        ("WIFI_CENSUS_MQTT_TOPIC_PREFIX", "census/#", "must be a plain topic level path"),
        ("WIFI_CENSUS_LOG_LEVEL", "LOUD", "must be one of DEBUG, INFO, WARNING, ERROR"),
        ("WIFI_CENSUS_ENVIRONMENT", "staging", "must be one of development, production, test"),
        ("WIFI_CENSUS_PORTAL_RESTART_URL", "javascript:alert(1)", "must be an http:// or https"),
        ("WIFI_CENSUS_PORTAL_RESTART_URL", "http:///login", "must be an http:// or https"),
    ],
)
def test_bad_value_names_the_variable_and_the_value(
    tmp_path: Path, variable: str, value: str, reason: str
) -> None:
    """A bad value stops loading with a message naming the variable, the value and the rule."""
    with pytest.raises(SettingsError) as caught:
        Settings.load(environ={"WIFI_CENSUS_VAR_DIR": str(tmp_path), variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}={value!r}")
    assert reason in message


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    """A malformed key is reported by name without printing the secret."""
    with pytest.raises(SettingsError) as caught:
        Settings.load(
            environ={
                "WIFI_CENSUS_VAR_DIR": str(tmp_path),
                "WIFI_CENSUS_IDENTITY_KEY": "short-secret-value",
            }
        )
    assert "WIFI_CENSUS_IDENTITY_KEY" in str(caught.value)
    assert "short-secret-value" not in str(caught.value)


def test_production_requires_keys(tmp_path: Path) -> None:
    """Production never invents keys: missing ones are named."""
    with pytest.raises(SettingsError) as caught:
        Settings.load(
            environ={"WIFI_CENSUS_VAR_DIR": str(tmp_path), "WIFI_CENSUS_ENVIRONMENT": "production"}
        )
    assert "WIFI_CENSUS_PSEUDONYM_KEY" in str(caught.value)
    assert "must be set in production" in str(caught.value)
    assert not (tmp_path / "keys.json").exists()


def test_development_keys_are_generated_once_and_kept(tmp_path: Path) -> None:
    """Development keys persist in var/keys.json (0600) so stored data stays readable."""
    first = Settings.load(environ={"WIFI_CENSUS_VAR_DIR": str(tmp_path)})
    second = Settings.load(environ={"WIFI_CENSUS_VAR_DIR": str(tmp_path)})
    assert first.pseudonym_key == second.pseudonym_key
    assert first.identity_key == second.identity_key
    path = tmp_path / "keys.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert set(json.loads(path.read_text())) >= {"pseudonym_key", "identity_key"}


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common umask 022, under which a plainly created file is readable by everyone."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_keys_are_never_readable_by_others_while_being_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, usual_umask: None) -> None:
    """At every step of writing var/keys.json (each chmod or rename) no file in the folder is
    readable by other users: the keys are 0600 from their first byte, not chmod-ed after."""
    seen: list[tuple[str, int]] = []
    real_chmod, real_replace = os.chmod, os.replace

    def snapshot() -> None:
        """Record every file's permission bits as they are right now."""
        seen.extend((p.name, p.stat().st_mode & 0o777) for p in tmp_path.iterdir())

    def chmod(path: Any, mode: int, *args: Any, **kwargs: Any) -> None:
        snapshot()
        real_chmod(path, mode, *args, **kwargs)

    def replace(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        snapshot()
        real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "chmod", chmod)
    monkeypatch.setattr(os, "replace", replace)
    Settings.load(environ={"WIFI_CENSUS_VAR_DIR": str(tmp_path)})
    monkeypatch.undo()
    assert seen, "the keys file was never written"
    assert [(name, oct(mode)) for name, mode in seen if mode & 0o077] == []
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # no temporary file left
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600


def test_keys_file_left_readable_by_an_old_version_is_closed(
        tmp_path: Path, usual_umask: None) -> None:
    """A keys.json someone left world-readable is made owner-only when it is next read."""
    first = Settings.load(environ={"WIFI_CENSUS_VAR_DIR": str(tmp_path)})
    (tmp_path / "keys.json").chmod(0o644)
    again = Settings.load(environ={"WIFI_CENSUS_VAR_DIR": str(tmp_path)})
    assert again.identity_key == first.identity_key
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600


def test_environment_overrides_defaults(tmp_path: Path) -> None:
    """Variables override defaults and are parsed to their types."""
    settings = Settings.load(
        environ={
            "WIFI_CENSUS_VAR_DIR": str(tmp_path),
            "WIFI_CENSUS_MQTT_PORT": "1883",
            "WIFI_CENSUS_RETENTION_DAYS": "30",
            "WIFI_CENSUS_MQTT_TOPIC_PREFIX": "site/a",
        }
    )
    assert settings.mqtt_port == 1883
    assert settings.retention_days == 30
    assert alert_topic(settings.mqtt_topic_prefix, "case") == "site/a/v1/alerts/case"


def test_secrets_are_masked_when_described(tmp_path: Path) -> None:
    """`wifi-census config` output never shows a secret."""
    settings = Settings.load(environ={"WIFI_CENSUS_VAR_DIR": str(tmp_path)})
    described = settings.describe()
    assert described["WIFI_CENSUS_PSEUDONYM_KEY"] == "***"
    assert settings.pseudonym_key not in repr(settings)


def test_markdown_table_lists_every_variable() -> None:
    """The README's configuration table is generated from the one list of variables."""
    table = markdown_table()
    for variable in VARIABLES:
        assert f"`{variable.env_name}`" in table


def test_the_environment_of_settings_loads_back_into_the_same_settings() -> None:
    """environment_of writes every setting the way its variable is read (lists included)."""
    original = Settings.load(environ={}, environment="test", portal_sms_regions=("CN", "HK"),
                             **generate_keys())
    assert Settings.load(environ=environment_of(original)) == original
