"""Every shell file for the AP passes `shellcheck -s sh`; the init scripts start what ships."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.firmware_configs.apside import BUSYBOX, FILES, ROOT, TEMPLATES

FIRMWARE = ROOT / "firmware_configs"


def shell_files() -> list[Path]:
    """Files that are shell scripts: a sh shebang, or a shellcheck shell=sh directive."""
    found = []
    for path in sorted(FIRMWARE.rglob("*")):
        if not path.is_file():
            continue
        head = path.read_bytes()[:200].decode("utf-8", "replace")
        if head.startswith("#!/bin/sh") or "# shellcheck shell=sh" in head:
            found.append(path)
    return found


def test_the_ap_ships_its_shell_scripts() -> None:
    """The scripts this test checks are the ones that exist (a rename would skip them)."""
    names = {path.relative_to(FIRMWARE).as_posix() for path in shell_files()}
    assert names == {
        "openwrt/files/etc/init.d/census-agent",
        "openwrt/files/etc/init.d/census-publisher",
        "openwrt/files/etc/wifi-census/ap.conf.example",
        "openwrt/files/usr/lib/wifi-census/common.sh",
        "openwrt/files/usr/sbin/census-agent",
        "openwrt/files/usr/sbin/census-publisher",
        "openwrt/templates/etc/uci-defaults/95-census-captive-api",
        "openwrt/templates/etc/wifi-census/ap.conf",
    }


@pytest.mark.parametrize("script", shell_files(), ids=lambda path: path.name)
def test_shellcheck_finds_nothing(script: Path) -> None:
    """POSIX sh only (BusyBox ash on the AP), every warning and note fixed."""
    result = subprocess.run(["shellcheck", "-s", "sh", "-x", script.name], cwd=script.parent,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", ["census-agent", "census-publisher"])
def test_init_script_runs_the_shipped_program_with_respawn(service: str, tmp_path: Path) -> None:
    """procd gets the program this folder ships, respawn for ever, restart on ap.conf change."""
    probe = tmp_path / "probe.sh"
    probe.write_text(
        "procd_open_instance() { echo open; }\n"
        "procd_set_param() { echo \"param $*\"; }\n"
        "procd_close_instance() { echo close; }\n"
        f". {FILES / 'etc' / 'init.d' / service}\n"
        f"CONF={tmp_path / 'ap.conf'}\n"
        "start_service\n")
    (tmp_path / "ap.conf").write_text("AP_ID='x'\n")
    run = subprocess.run([BUSYBOX, "ash", str(probe)], capture_output=True, text=True, timeout=10)
    lines = run.stdout.splitlines()
    assert lines[0] == "open" and lines[-1] == "close", run.stderr
    assert f"param command /usr/sbin/{service}" in lines
    assert "param respawn 3600 5 0" in lines
    assert f"param file {tmp_path / 'ap.conf'}" in lines
    assert (FILES / "usr" / "sbin" / service).stat().st_mode & 0o111


def test_templates_that_are_scripts_are_executable() -> None:
    """uci-defaults scripts run by sh anyway, but the copied file keeps its mode."""
    script = TEMPLATES / "etc" / "uci-defaults" / "95-census-captive-api"
    assert script.stat().st_mode & 0o111
