"""Fixtures for the access-point script tests: an OpenWrt-like PATH and a stand-in ubus."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.firmware_configs.apside import TESTDATA, openwrt_path


@pytest.fixture(scope="session")
def openwrt_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """PATH for the AP scripts: BusyBox applets, real MQTT tools and openssl, stand-ins."""
    return openwrt_path(tmp_path_factory.mktemp("openwrt-bin"))


@pytest.fixture
def ubus_state(tmp_path: Path) -> Path:
    """The stand-in ubus's folder: hostapd.wlan0 on the bus with the recorded answers."""
    state = tmp_path / "ubus"
    state.mkdir()
    for answer in TESTDATA.glob("hostapd.*.json"):
        shutil.copy(answer, state / answer.name)
    (state / "objects").write_text("hostapd.wlan0 0a1b2c3d\n")
    return state
