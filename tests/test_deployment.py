"""docker-compose.yml and the Dockerfile stay correct: parseable, and every command they run
exists in the package with the options they pass.

There is no Docker engine on these machines, so this checks what can be checked without one:
the structure, the commands against the real CLI, the settings against the settings loader.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from census.cli import main
from census.settings import VARIABLES, Settings, generate_keys

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]
OUR_SERVICES = [name for name, spec in SERVICES.items() if "build" in spec]


def command_of(spec: dict[str, Any]) -> list[str]:
    """The wifi-census command line a service runs (unwrapping an sh -c loop)."""
    words = list(spec.get("entrypoint") or []) + list(spec.get("command") or [])
    if words[:2] == ["/bin/sh", "-c"]:
        match = re.search(r"wifi-census [^;&|]+", words[2])
        assert match, f"no wifi-census command in {words[2]!r}"
        words = shlex.split(match.group(0))
    return words


def test_the_stores_and_broker_are_the_production_versions() -> None:
    """mosquitto 2, influxdb 2.7, redis 7, postgres 16, as the deployment promises."""
    assert SERVICES["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert SERVICES["influxdb"]["image"] == "influxdb:2.7"
    assert SERVICES["redis"]["image"] == "redis:7"
    assert SERVICES["postgres"]["image"] == "postgres:16"
    assert set(OUR_SERVICES) == {"migrate", "portal", "collector", "ap-commands", "analytics",
                                 "maintenance"}


def test_influxdb_is_initialised_with_org_bucket_token_and_dbrp_mapping() -> None:
    """Automated set-up plus the v1 DBRP mapping the shared code path needs."""
    influx = SERVICES["influxdb"]
    environment = influx["environment"]
    for key in ("MODE", "ORG", "BUCKET", "ADMIN_TOKEN", "RETENTION"):
        assert environment[f"DOCKER_INFLUXDB_INIT_{key}"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in influx["volumes"] if v.startswith("./")}
    script = ROOT / "deploy/influxdb/10-dbrp.sh"
    assert mounted["./deploy/influxdb/10-dbrp.sh"].startswith("/docker-entrypoint-initdb.d/")
    assert "influx v1 dbrp create" in script.read_text()
    assert environment["DOCKER_INFLUXDB_INIT_BUCKET"] == "census"


@pytest.mark.parametrize("service", OUR_SERVICES)
def test_every_service_command_exists_with_its_options(service: str) -> None:
    """`wifi-census <subcommand> <options> --help` parses: the command and options exist."""
    words = command_of(SERVICES[service])
    assert words[0] == "wifi-census"
    result = CliRunner().invoke(main, [*words[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_environment_uses_only_known_settings_and_loads_in_production() -> None:
    """Every WIFI_CENSUS_* variable is a real setting, and together they load cleanly."""
    environment = COMPOSE["x-census-environment"]
    known = {variable.env_name for variable in VARIABLES}
    assert set(environment) <= known, set(environment) - known
    keys = generate_keys()
    filled: dict[str, str] = {}
    for name, value in environment.items():
        filled[name] = re.sub(
            r"\$\{([A-Z_]+)(:-[^}]*)?[^}]*\}", lambda match: _fill(match, keys), str(value)
        )
    settings = Settings.load(environ=filled)
    assert settings.environment == "production"
    assert settings.database_url.startswith("postgresql://census:")
    assert settings.influx_token == "x"


def _fill(match: re.Match[str], keys: dict[str, str]) -> str:
    """Stand in for ${VAR...} the way a filled-in .env would: defaults, keys, placeholders."""
    variable, default = match.group(1), match.group(2)
    if default:
        return default[2:]
    generated = {f"WIFI_CENSUS_{k.upper()}": v for k, v in keys.items()}
    if variable in generated:
        return generated[variable]
    return "https://portal.example.org" if "URL" in variable else "x"


def test_every_referenced_file_exists() -> None:
    """Bind-mounted configuration files are in the repository."""
    for spec in SERVICES.values():
        for volume in spec.get("volumes", []):
            if volume.startswith("./"):
                assert (ROOT / volume.split(":")[0]).exists(), volume


def test_the_broker_config_keeps_a_collector_backlog() -> None:
    """Mosquitto's default queue of 1000 messages would drop events; production raises it."""
    text = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    assert re.search(r"^max_queued_messages\s+\d{6,}", text, re.M)
    assert "allow_anonymous false" in text


def test_the_broker_configs_save_on_every_change() -> None:
    """Production and the local broker persist what they acknowledged, not every 60 s."""
    from census.services import MOSQUITTO_AUTOSAVE

    text = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    settings = [line for line in text.splitlines() if line.startswith("autosave")]
    assert settings == list(MOSQUITTO_AUTOSAVE) == ["autosave_on_changes true",
                                                    "autosave_interval 1"]


def test_the_image_contains_every_package() -> None:
    """The Dockerfile copies each top-level package (templates ship inside portal) to install."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    packages = ("census", "registry", "collector", "analytics", "portal", "simulator")
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile
    assert "RUN pip install ." in dockerfile


def test_readme_configuration_table_is_current() -> None:
    """The README's table is exactly what the settings declare (regenerate it if this fails)."""
    from census.settings import markdown_table

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- configuration table")
    start = readme.index("\n", start) + 1
    end = readme.index("<!-- end of configuration table -->")
    assert readme[start:end].strip() == markdown_table().strip()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """.ci/run calls the README's test command and nothing else."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "./scripts/test.sh" in readme and "./scripts/demo.sh" in readme
    ci = [line for line in (ROOT / ".ci/run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert ci == ['cd "$(dirname "$0")/.." && exec ./scripts/test.sh']
