"""What ships is the installed package: build the wheel, install it from the lock into a fresh
venv outside the checkout, and run it from a folder that is not the checkout.

Every other test imports the checkout; this one is how the production image runs the code
(Dockerfile: wheel + `pip install --require-hashes` from uv.lock). It failed while the portal
read its templates from beside the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from census.settings import Settings
from tests.common import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
UV = ROOT / ".tools" / "bin" / "uv"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Installed:
    """A wheel of the project installed into its own venv, and a folder to run it from."""

    wheel: Path
    venv: Path
    workdir: Path

    @property
    def command(self) -> Path:
        """The installed `wifi-census` console script."""
        return self.venv / "bin" / "wifi-census"


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command; fail with its output if it fails."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The project's wheel, built from its tracked files, installed from uv.lock into a venv."""
    if not UV.exists():
        pytest.fail("uv is missing: run ./scripts/setup.sh")
    base = tmp_path_factory.mktemp("installed")
    source = base / "source"
    # Only what git would hand to a fresh clone (tracked, or new and not ignored): a file the
    # package needs but that is not committed must fail here, not in production.
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                  cwd=ROOT).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    uv_env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    uv_env.pop("VIRTUAL_ENV", None)
    # The locked build backend from .venv (group `build`), as the Dockerfile uses it.
    _run([str(UV), "build", "--wheel", "--no-build-isolation", "--python", sys.executable,
          "--out-dir", str(base / "dist")], cwd=source, env=uv_env)
    wheel = next((base / "dist").glob("wifi_census-*.whl"))
    requirements = base / "runtime.txt"
    _run([str(UV), "export", "--frozen", "--no-dev", "--no-emit-project", "--quiet",
          "--format", "requirements.txt", "-o", str(requirements)], cwd=source, env=uv_env)
    venv = base / "venv"
    _run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], cwd=base,
         env=uv_env)
    python = str(venv / "bin" / "python")
    _run([str(UV), "pip", "install", "--quiet", "--python", python, "--require-hashes",
          "-r", str(requirements)], cwd=base, env=uv_env)
    _run([str(UV), "pip", "install", "--quiet", "--python", python, "--no-deps", str(wheel)],
         cwd=base, env=uv_env)
    workdir = base / "run"
    workdir.mkdir()
    return Installed(wheel, venv, workdir)


@pytest.fixture
def installed_env(installed: Installed, settings: Settings) -> dict[str, str]:
    """Environment for the installed command: this test's servers and prefixes, no checkout."""
    environment = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("WIFI_CENSUS_", "PYTHON", "VIRTUAL_ENV"))
    }
    environment.update({
        "PATH": f"{installed.venv / 'bin'}:/usr/bin:/bin",
        "WIFI_CENSUS_ENVIRONMENT": "development",
        "WIFI_CENSUS_VAR_DIR": str(installed.workdir / "var"),
        "WIFI_CENSUS_DATABASE_URL": settings.database_url,
        "WIFI_CENSUS_MQTT_PORT": str(settings.mqtt_port),
        "WIFI_CENSUS_MQTT_TOPIC_PREFIX": settings.mqtt_topic_prefix,
        "WIFI_CENSUS_REDIS_URL": settings.redis_url,
        "WIFI_CENSUS_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "WIFI_CENSUS_INFLUX_URL": settings.influx_url,
        "WIFI_CENSUS_INFLUX_DATABASE": settings.influx_database,
    })
    return environment


def test_the_wheel_carries_what_the_package_reads_at_run_time(installed: Installed) -> None:
    """Templates, compiled catalogs, migrations and the hazard catalogue are in the wheel."""
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for template in (ROOT / "portal" / "templates").rglob("*.html"):
        assert template.relative_to(ROOT).as_posix() in names
    for catalog in (ROOT / "portal" / "translations").rglob("*.mo"):
        assert catalog.relative_to(ROOT).as_posix() in names
    for migration in (ROOT / "registry" / "migrations" / "versions").glob("*.py"):
        assert migration.relative_to(ROOT).as_posix() in names
    assert "registry/migrations/env.py" in names
    assert "analytics/hazards.json" in names


def test_the_installed_package_does_not_import_the_checkout(
    installed: Installed, installed_env: dict[str, str]
) -> None:
    """Run from another folder, every package resolves inside the venv."""
    probe = ("import census, registry, collector, analytics, portal, simulator, wifi_census;"
             "print('\\n'.join(m.__file__ for m in (census, registry, collector, analytics,"
             " portal, simulator, wifi_census)))")
    result = _run([str(installed.venv / "bin" / "python"), "-c", probe], cwd=installed.workdir,
                  env=installed_env)
    for path in result.stdout.split():
        assert Path(path).is_relative_to(installed.venv), path


def test_installed_command_migrates_and_serves_both_languages(
    installed: Installed, installed_env: dict[str, str]
) -> None:
    """`db upgrade`, then `portal serve`: the resident's start page and the staff login render
    in Chinese and in English."""
    _run([str(installed.command), "db", "upgrade"], cwd=installed.workdir, env=installed_env)
    port = free_port()
    log = (installed.workdir / "portal.log").open("w")
    server = subprocess.Popen(
        [str(installed.command), "portal", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=installed.workdir, env=installed_env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/api/ping"), timeout=60, what="the installed portal")
        pages = {
            ("/", "zh-CN"): "居民免费 Wi-Fi",
            ("/", "en"): "Free Wi-Fi for residents",
            ("/admin/login", "zh-CN"): "工作人员登录",
            ("/admin/login", "en"): "Staff sign-in",
        }
        for (path, language), expected in pages.items():
            response = requests.get(f"{base}{path}", headers={"Accept-Language": language},
                                    timeout=10)
            assert response.status_code == 200, (path, language, response.text[:500])
            assert expected in response.text, (path, language)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert "Traceback" not in (installed.workdir / "portal.log").read_text()


def _answers(url: str) -> bool:
    """True when the URL answers 200."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _compose_commands() -> Iterator[list[str]]:
    """Each `wifi-census ...` command line that docker-compose.yml runs."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    for spec in compose["services"].values():
        words = [str(w) for w in (spec.get("entrypoint") or []) + (spec.get("command") or [])]
        text = " ".join(words)
        for part in text.split(";"):
            if "wifi-census" in part:
                command = part[part.index("wifi-census"):].split("&&")[0].split()
                yield command


def test_every_command_compose_runs_answers_help_when_installed(
    installed: Installed, installed_env: dict[str, str]
) -> None:
    """`--help` of each command docker-compose.yml runs works in the installed package."""
    commands = list(_compose_commands())
    assert len(commands) >= 5
    for command in commands:
        _run([str(installed.venv / "bin" / command[0]), *command[1:], "--help"],
             cwd=installed.workdir, env=installed_env, timeout=60)
