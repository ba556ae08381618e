"""The per-AP templates and the configuration contract: placeholders, openNDS, DHCP option 114."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from census.handshake import fas_return_token, parse_fas
from portal.api import bp as captive_api
from tests.firmware_configs.apside import BUSYBOX, FILES, ROOT, TEMPLATES

AP_CONF_KEYS = (
    "AP_ID", "TOPIC_PREFIX", "BROKER_HOST", "BROKER_PORT", "BROKER_USER", "BROKER_PASSWORD_FILE",
    "BROKER_CAFILE", "BROKER_CERTFILE", "BROKER_KEYFILE", "COMMAND_KEY_FILE",
    "SNAPSHOT_INTERVAL", "SPOOL_DIR", "SPOOL_MAX_FILES", "CONFIRM_RESEND_S",
    "SESSION_DEFAULT_MINUTES",
)
PORTAL_KEYS = ("PORTAL_FQDN", "PORTAL_PORT", "FAS_KEY")
PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")
VALUES = {
    "AP_ID": "ap-teda017-b03-15", "TOPIC_PREFIX": "census", "BROKER_HOST": "mqtt.example.cn",
    "BROKER_PORT": "8883", "BROKER_USER": "ap-teda017-b03-15",
    "BROKER_PASSWORD_FILE": "/etc/wifi-census/broker.password",
    "BROKER_CAFILE": "/etc/wifi-census/ca.crt", "BROKER_CERTFILE": "", "BROKER_KEYFILE": "",
    "COMMAND_KEY_FILE": "/etc/wifi-census/command.key", "SNAPSHOT_INTERVAL": "300",
    "SPOOL_DIR": "/tmp/wifi-census/spool", "SPOOL_MAX_FILES": "500", "CONFIRM_RESEND_S": "120",
    "SESSION_DEFAULT_MINUTES": "1440", "PORTAL_FQDN": "portal.example.cn", "PORTAL_PORT": "8080",
    "FAS_KEY": "s3cret-of-this-ap",
}


def templates() -> list[Path]:
    """Every template file."""
    return sorted(path for path in TEMPLATES.rglob("*") if path.is_file())


def render(template: Path) -> str:
    """Fill a template's placeholders the way `wifi-census firmware render` is to."""
    return PLACEHOLDER.sub(lambda match: VALUES[match.group(1)], template.read_text())


def uci_options(text: str) -> dict[str, list[str]]:
    """option/list values of a UCI file, by name."""
    found: dict[str, list[str]] = {}
    for _kind, name, value in re.findall(r"^\s*(option|list)\s+(\S+)\s+'([^']*)'", text, re.M):
        found.setdefault(name, []).append(value)
    return found


def test_templates_use_only_the_documented_placeholders() -> None:
    """Each @NAME@ is an ap.conf key or a portal key, and the README documents every one."""
    readme = (ROOT / "firmware_configs" / "README.md").read_text()
    used = {name for path in templates() for name in PLACEHOLDER.findall(path.read_text())}
    assert used <= set(AP_CONF_KEYS) | set(PORTAL_KEYS)
    assert {"AP_ID", *PORTAL_KEYS} <= used
    for key in (*AP_CONF_KEYS, *PORTAL_KEYS):
        assert f"`{key}`" in readme, f"{key} is not documented in firmware_configs/README.md"


def test_the_ap_conf_example_and_template_hold_every_key() -> None:
    """ap.conf.example shows, and the ap.conf template fills, exactly the contract's keys."""
    example = (FILES / "etc" / "wifi-census" / "ap.conf.example").read_text()
    template = (TEMPLATES / "etc" / "wifi-census" / "ap.conf").read_text()
    assignment = re.compile(r"^([A-Z_]+)=", re.M)
    assert sorted(assignment.findall(example)) == sorted(AP_CONF_KEYS)
    assert sorted(assignment.findall(template)) == sorted(AP_CONF_KEYS)


def test_opennds_hands_clients_to_the_portal_the_way_it_accepts() -> None:
    """FAS level 1 to the portal, gatewayname = AP id, faskey = the AP secret, no own option 114."""
    options = uci_options(render(TEMPLATES / "etc" / "config" / "opennds"))
    single = {name: values[0] for name, values in options.items()}
    assert single["fasremotefqdn"] == VALUES["PORTAL_FQDN"]
    assert single["fasport"] == VALUES["PORTAL_PORT"] and single["faspath"] == "/"
    assert single["fas_secure_enabled"] == "1" and single["login_option_enabled"] == "0"
    assert single["sessiontimeout"] == VALUES["SESSION_DEFAULT_MINUTES"]
    assert single["dhcp_default_url_enable"] == "0"
    assert int(single["preauthidletimeout"]) > 0 and int(single["authidletimeout"]) > 0
    assert options["preauthenticated_users"] == [f"allow tcp port 443 to {VALUES['PORTAL_FQDN']}"]
    # What openNDS 9+ sends at level 1 with this configuration, as the portal parses it.
    token = "c0ffee" * 5
    hid = hashlib.sha256(token.encode()).hexdigest()
    fas = base64.b64encode(
        f"clientip=10.1.15.23, clientmac=a4:83:e7:12:9f:01, gatewayname={single['gatewayname']}, "
        f"hid={hid}, gatewayaddress=10.1.15.1:2050, authdir=opennds_auth, "
        "originurl=http%3A%2F%2Fexample.com%2F".encode()).decode()
    # FAS is enabled per AP at its gateway address (`wifi-census portal ap-fas`).
    handshake = parse_fas({"fas": fas}, lambda ap: "10.1.15.1:2050" if ap == VALUES["AP_ID"]
                          else None)
    assert handshake.ap_id == VALUES["AP_ID"]
    # openNDS checks tok = sha256(hid + faskey): the portal computes it with the AP's secret.
    assert fas_return_token(hid, VALUES["FAS_KEY"]) == hashlib.sha256(
        (hid + single["faskey"]).encode()).hexdigest()


@pytest.mark.parametrize("before", [
    [],
    ["3,192.168.1.1", "114,http://status.client"],  # openNDS's own, http: replaced
    ["114,https://old-portal.example.cn/api/captive?ap=ap-teda017-b03-15"],
])
def test_dnsmasq_announces_the_https_captive_portal_api(tmp_path: Path, openwrt_bin: str,
                                                        before: list[str]) -> None:
    """DHCP option 114 (RFC 8910) = the portal's RFC 8908 API over https, exactly once."""
    script = tmp_path / "95-census-captive-api"
    script.write_text(render(TEMPLATES / "etc" / "uci-defaults" / "95-census-captive-api"))
    state = tmp_path / "uci"
    state.mkdir()
    config = {"dhcp": {"lan": {".type": "dhcp", "dhcp_option_force": before}}}
    (state / "config.json").write_text(json.dumps(config))
    run = subprocess.run([BUSYBOX, "ash", str(script)], capture_output=True, text=True,
                         env={"PATH": openwrt_bin, "UCI_STANDIN_DIR": str(state)}, timeout=20)
    assert run.returncode == 0, run.stderr
    after = json.loads((state / "config.json").read_text())["dhcp"]["lan"]["dhcp_option_force"]
    url = f"https://{VALUES['PORTAL_FQDN']}{captive_api.url_prefix}/captive?ap={VALUES['AP_ID']}"
    kept = [value for value in before if not value.startswith("114,")]
    assert after == [*kept, f"114,{url}"]
    assert (state / "commits").read_text() == "dhcp\n"


def test_option_114_needs_the_dhcp_section(tmp_path: Path, openwrt_bin: str) -> None:
    """No dhcp.lan: a clear message and a failing exit (uci-defaults keeps it for next boot)."""
    script = tmp_path / "95-census-captive-api"
    script.write_text(render(TEMPLATES / "etc" / "uci-defaults" / "95-census-captive-api"))
    state = tmp_path / "uci"
    state.mkdir()
    (state / "config.json").write_text(json.dumps({"dhcp": {}}))
    run = subprocess.run([BUSYBOX, "ash", str(script)], capture_output=True, text=True,
                         env={"PATH": openwrt_bin, "UCI_STANDIN_DIR": str(state)}, timeout=20)
    assert run.returncode == 1 and "no dhcp.lan section" in run.stderr
