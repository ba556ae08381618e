"""ap.conf is checked when a service starts: a bad value stops it with a message naming the key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.firmware_configs.apside import AGENT, BUSYBOX, LIB, write_conf

GOOD = {"AP_ID": "ap-teda017-b03-15", "BROKER_HOST": "127.0.0.1"}


def load(path: str, conf: Path) -> subprocess.CompletedProcess[str]:
    """Source common.sh and load conf under BusyBox ash; print the settings it ends with."""
    script = (f'. "{LIB}/common.sh"; census_load_config; '
              'echo "$TOPIC_PREFIX $BROKER_PORT $SNAPSHOT_INTERVAL $SPOOL_DIR $SPOOL_MAX_FILES '
              '$SESSION_DEFAULT_MINUTES $CENSUS_TOPIC_BASE"')
    return subprocess.run([BUSYBOX, "ash", "-c", script], capture_output=True, text=True,
                          env={"PATH": path, "CENSUS_CONF": str(conf)}, timeout=10)


def test_defaults_fill_what_ap_conf_leaves_out(openwrt_bin: str, tmp_path: Path) -> None:
    """Only AP_ID and BROKER_HOST are required; the rest default as documented."""
    run = load(openwrt_bin, write_conf(tmp_path / "ap.conf", **GOOD))
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["census", "1883", "300", "/tmp/wifi-census/spool", "500",
                                  "1440", "census/v1/ap/ap-teda017-b03-15"]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("AP_ID", "ap 15", "AP_ID='ap 15': must be 1-64 of A-Z a-z 0-9 . _ -"),
    ("AP_ID", "a" * 65, "must be 1-64"),
    ("BROKER_HOST", "", "BROKER_HOST is empty"),
    ("BROKER_PORT", "x", "BROKER_PORT='x': must be a whole number"),
    ("SNAPSHOT_INTERVAL", "0", "SNAPSHOT_INTERVAL='0'"),
    ("SPOOL_MAX_FILES", "-1", "SPOOL_MAX_FILES='-1'"),
    ("TOPIC_PREFIX", "census/#", "TOPIC_PREFIX='census/#'"),
    ("BROKER_CAFILE", "/nonexistent/ca.crt", "cannot read /nonexistent/ca.crt"),
    ("BROKER_CERTFILE", "/etc/hostname", "BROKER_CERTFILE is set but BROKER_KEYFILE is empty"),
])
def test_a_bad_value_stops_the_service_naming_the_key(openwrt_bin: str, tmp_path: Path,
                                                      key: str, value: str, message: str) -> None:
    """The error names the key and the value, and the exit code says failure."""
    run = load(openwrt_bin, write_conf(tmp_path / "ap.conf", **{**GOOD, key: value}))
    assert run.returncode == 1
    assert message in run.stderr


def test_the_agent_will_not_run_without_its_key(openwrt_bin: str, tmp_path: Path) -> None:
    """No COMMAND_KEY_FILE: the agent cannot check signatures, so it does not start."""
    conf = write_conf(tmp_path / "ap.conf", **GOOD, COMMAND_KEY_FILE=tmp_path / "missing.key")
    run = subprocess.run([BUSYBOX, "ash", str(AGENT)], capture_output=True, text=True,
                         env={"PATH": openwrt_bin, "CENSUS_CONF": str(conf),
                              "CENSUS_LIB": str(LIB)}, timeout=10)
    assert run.returncode == 1
    assert "cannot be read: the agent cannot check signatures" in run.stderr
