"""Shared helpers for the access-point script tests: an OpenWrt-like PATH and running a script.

The scripts run under Debian's BusyBox ash with a PATH of BusyBox applets only (as on OpenWrt,
so a GNU-only option fails here too), the real ``mosquitto_pub`` / ``mosquitto_sub`` /
``openssl``, and stand-ins for the tools only OpenWrt has (``ubus``, ``jsonfilter``, ``ndsctl``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "firmware_configs" / "openwrt" / "files"
TEMPLATES = ROOT / "firmware_configs" / "openwrt" / "templates"
LIB = FILES / "usr" / "lib" / "wifi-census"
PUBLISHER = FILES / "usr" / "sbin" / "census-publisher"
AGENT = FILES / "usr" / "sbin" / "census-agent"
STANDINS = Path(__file__).resolve().parent / "standins"
TESTDATA = Path(__file__).resolve().parent / "testdata"
BUSYBOX = shutil.which("busybox") or "/usr/bin/busybox"
REAL_TOOLS = ("mosquitto_pub", "mosquitto_sub", "openssl")


def openwrt_path(bin_dir: Path) -> str:
    """Fill bin_dir with BusyBox applets, the real MQTT/openssl tools and the stand-ins."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    busybox = shutil.which("busybox")
    assert busybox, "busybox is not installed (scripts/setup.sh installs it)"
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        (bin_dir / applet).symlink_to(busybox)
    for tool in REAL_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is not installed"
        (bin_dir / tool).unlink(missing_ok=True)
        (bin_dir / tool).symlink_to(found)
    for standin in STANDINS.glob("*.py"):
        wrapper = bin_dir / standin.stem
        wrapper.unlink(missing_ok=True)
        wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {standin} \"$@\"\n")
        wrapper.chmod(0o755)
    return str(bin_dir)


def write_conf(path: Path, **keys: object) -> Path:
    """An ap.conf with the given keys, shell-quoted."""
    lines = [f"{name}='{value}'" for name, value in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Script:
    """A running AP script: its process and where its stderr goes."""

    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 5.0) -> str:
        """SIGTERM (as procd stops a service), then make sure nothing of it is left; its log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # children a failed test left behind
        except ProcessLookupError:
            pass
        return self.log.read_text()

    def output(self) -> str:
        """What the script logged so far."""
        return self.log.read_text()


def start_script(script: Path, path: str, log: Path, **environment: str) -> Script:
    """Run an AP script under BusyBox ash, in its own process group."""
    env = {"PATH": path, "CENSUS_LIB": str(LIB), "HOME": str(log.parent), **environment}
    with open(log, "wb") as handle:
        process = subprocess.Popen([BUSYBOX, "ash", str(script)], env=env,
                                   stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Script(process, log)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until predicate() holds; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
