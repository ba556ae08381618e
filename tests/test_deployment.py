"""docker-compose.yml and the Dockerfile stay correct: parseable, and every command they run
exists in the package with the options they pass.

There is no Docker engine on these machines, so this checks what can be checked without one:
the structure, the commands against the real CLI, the settings against the settings loader.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from census.settings import VARIABLES, Settings, generate_keys
from wifi_census.cli import main

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
    assert SERVICES["mosquitto"]["image"].startswith("eclipse-mosquitto:2.")
    assert SERVICES["influxdb"]["image"].startswith("influxdb:2.7.")
    assert SERVICES["redis"]["image"].startswith("redis:7.")
    assert SERVICES["postgres"]["image"].startswith("postgres:16.")
    assert set(OUR_SERVICES) == {"migrate", "portal", "portal-admin", "collector",
                                 "ap-commands", "analytics", "maintenance", "firmware",
                                 "case-clock"}


# A release tag, optionally with a -variant and a digest; never a floating tag like `2`, `7`,
# `latest` or `2.7` that moves under a deployment. PostgreSQL numbers its releases major.minor
# (16.9); the others major.minor.patch.
PINNED_IMAGE = re.compile(
    r"^(?:postgres:\d+\.\d+|[a-z0-9./-]+:\d+\.\d+\.\d+)(-[a-z0-9.-]+)?(@sha256:[0-9a-f]{64})?$"
)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_compose_image_is_pinned_to_a_release(service: str) -> None:
    """Each service's image names an exact release, so two deployments run the same bits."""
    image = SERVICES[service]["image"]
    assert PINNED_IMAGE.match(image), f"{service}: image {image!r} floats"


def test_our_image_is_tagged_with_the_project_version() -> None:
    """The image built from the Dockerfile carries pyproject.toml's version, not `latest`."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in OUR_SERVICES:
        assert SERVICES[name]["image"] == f"wifi-census:{version}"


def test_the_dockerfile_base_image_is_pinned() -> None:
    """Every FROM (directly or through its ARG default) names an exact release."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.M))
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert bases
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda match: defaults[match.group(1)], base)
        assert PINNED_IMAGE.match(image), f"FROM {base} ({image}) floats"


def test_floating_tags_are_refused() -> None:
    """The pin check itself refuses the tags this deployment used to float on."""
    for floating in ("eclipse-mosquitto:2", "influxdb:2.7", "redis:7", "python:3.11-slim",
                     "wifi-census:latest", "postgres"):
        assert not PINNED_IMAGE.match(floating)


def test_back_office_has_its_own_listener_on_loopback_only() -> None:
    """The residents' listener serves no back office; the back office is published on the
    host's loopback, for the HTTPS proxy in front of it (issue 11, defect 9)."""
    assert command_of(SERVICES["portal"])[3:5] == ["--role", "captive"]
    admin = command_of(SERVICES["portal-admin"])
    assert admin[3:5] == ["--role", "admin"]
    assert all(port.startswith("127.0.0.1:") for port in SERVICES["portal-admin"]["ports"])


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


@pytest.mark.parametrize("service", OUR_SERVICES)
def test_environment_uses_only_known_settings_and_loads_in_production(service: str) -> None:
    """Every WIFI_CENSUS_* variable a service gets is a real setting, and they load cleanly."""
    environment = SERVICES[service]["environment"]
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


def broker_listeners() -> dict[str, dict[str, str]]:
    """mosquitto.conf's listeners: port -> their options (per_listener_settings)."""
    listeners: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in (ROOT / "deploy/mosquitto/mosquitto.conf").read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "listener":
            current = listeners.setdefault(words[1], {})
        elif current is not None:
            current[words[0]] = " ".join(words[1:])
    return listeners


def test_every_broker_listener_authenticates_and_only_tls_is_published() -> None:
    """No anonymous listener; each has its own password file and ACL; client ids are bound to
    users everywhere but the portal's own listener; only the TLS port leaves the host."""
    text = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    assert re.search(r"^per_listener_settings true$", text, re.M)
    listeners = broker_listeners()
    assert set(listeners) == {"8883", "1883", "1884"}
    for port, options in listeners.items():
        assert options["allow_anonymous"] == "false", port
        assert options["password_file"] and options["acl_file"], port
        assert options.get("use_username_as_clientid") == ("false" if port == "1884" else "true")
    assert {"certfile", "keyfile"} <= set(listeners["8883"])
    assert len({options["password_file"] for options in listeners.values()}) == 3
    assert SERVICES["mosquitto"]["ports"] == ["8883:8883"]


def test_each_service_has_its_own_broker_user_on_its_listener() -> None:
    """Every MQTT-speaking service logs in as the user the ACL gives its rights to."""
    acl = (ROOT / "deploy/mosquitto/services.acl.in").read_text()
    broker_env = SERVICES["mosquitto"]["environment"]
    acl_users = set(re.findall(r"^user (\S+)$", acl.replace("@COLLECTOR_USER@",
                                                           broker_env["MQTT_COLLECTOR_USER"]),
                               re.M))
    expected = {"collector": ("collector-1", "1883"), "ap-commands": ("command-log", "1883"),
                "analytics": ("analytics", "1883"), "portal": ("portal", "1884")}
    users = set()
    for service, (user, port) in expected.items():
        environment = SERVICES[service]["environment"]
        assert environment["WIFI_CENSUS_MQTT_USERNAME"] == user
        assert environment.get("WIFI_CENSUS_MQTT_PORT", "1883") == port
        password = re.match(r"\$\{(\w+):", environment["WIFI_CENSUS_MQTT_PASSWORD"])
        assert password and password.group(1) in broker_env
        users.add(user)
    assert users == acl_users
    # The persistent sessions' client ids are their users (the broker would force it anyway).
    assert SERVICES["collector"]["environment"]["WIFI_CENSUS_COLLECTOR_CLIENT_ID"] == "collector-1"
    assert SERVICES["ap-commands"]["environment"][
        "WIFI_CENSUS_COMMAND_LOG_CLIENT_ID"] == "command-log"


def test_the_broker_entrypoint_is_posix_sh() -> None:
    """entrypoint.sh runs under the image's BusyBox sh: shellcheck -s sh finds nothing."""
    script = ROOT / "deploy/mosquitto/entrypoint.sh"
    result = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


def test_the_production_broker_saves_on_every_change() -> None:
    """Production persists what it acknowledged, not every 60 s (so do the fault tests'
    brokers, WIFI_CENSUS_LOCAL_BROKER_DURABLE=true)."""
    from wifi_census.local_servers import MOSQUITTO_AUTOSAVE

    text = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    settings = [line for line in text.splitlines() if line.startswith("autosave")]
    assert settings == list(MOSQUITTO_AUTOSAVE) == ["autosave_on_changes true",
                                                    "autosave_interval 1"]


def test_the_image_contains_every_package() -> None:
    """The Dockerfile copies each top-level package (templates ship inside portal) to build."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    packages = ("census", "timeseries", "registry", "collector", "apcommands", "analytics",
                "portal", "simulator", "wifi_census")
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile


def test_the_image_installs_from_the_lock_with_hashes() -> None:
    """Every pip install in the image checks hashes from uv.lock; nothing resolves afresh."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install ([^\n&]+)", dockerfile)
    assert installs
    for arguments in installs:
        assert "--require-hashes" in arguments or "--no-deps" in arguments, arguments
    assert "uv export --frozen" in dockerfile
    assert "COPY pyproject.toml uv.lock" in dockerfile


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
