"""One settings object for every part of wifi-census, loaded from WIFI_CENSUS_* variables.

Each variable is declared once in ``VARIABLES`` (name, parser, default, meaning); the README's
configuration table is generated from that list (``wifi-census config --markdown``), so the
documentation cannot drift from the code. Defaults point at the services that
``wifi-census services up`` starts on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LOGGER = logging.getLogger(__name__)
PREFIX = "WIFI_CENSUS_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_var_dir() -> Path:
    """`<checkout>/var` when running from a checkout, else the user's state folder.

    An installed package lives in site-packages, where `var/` beside it would be wrong (and often
    read-only); production sets WIFI_CENSUS_VAR_DIR explicitly.
    """
    if (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT / "var"
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "wifi-census"


class SettingsError(ValueError):
    """A configuration variable holds a value the program cannot use."""

    def __init__(self, variable: str, value: str, reason: str) -> None:
        super().__init__(f"{variable}={value!r}: {reason}")
        self.variable = variable
        self.value = value
        self.reason = reason


def _parse_int(low: int, high: int) -> Callable[[str], int]:
    """Build a parser for an integer in [low, high]."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("must be a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _parse_port(raw: str) -> int:
    """Parse a TCP port number."""
    return _parse_int(1, 65535)(raw)


def _parse_bool(raw: str) -> bool:
    """Parse the usual spellings of yes and no."""
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be one of 1/0, true/false, yes/no, on/off")


def _parse_url(*schemes: str) -> Callable[[str], str]:
    """Build a parser for a URL with one of the given schemes."""

    def parse(raw: str) -> str:
        parsed = urlparse(raw)
        scheme = parsed.scheme.split("+")[0]
        if scheme not in schemes:
            raise ValueError(
                f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
            )
        return raw

    return parse


def _parse_page_url(raw: str) -> str:
    """Check a link for a resident's browser: http(s) with a host, nothing else."""
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("must be an http:// or https:// URL with a host name")
    return raw


def _parse_timezone(raw: str) -> str:
    """Check that a name is a known IANA time zone."""
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not an IANA time zone name such as Asia/Shanghai") from None
    return raw


def _parse_topic_prefix(raw: str) -> str:
    """Check an MQTT topic prefix: non-empty, no wildcards, no leading/trailing slash."""
    if (
        not raw
        or any(c in raw for c in "#+\x00")
        or raw.startswith(("/", "$"))
        or raw.endswith("/")
    ):
        raise ValueError("must be a plain topic level path such as 'census' (no # + $ or edge /)")
    return raw


def _parse_key(raw: str) -> str:
    """Check a secret key: at least 32 bytes of urlsafe base64 or 32+ characters."""
    if len(raw) < 32:
        raise ValueError("must be at least 32 characters (use `wifi-census keys` to make one)")
    return raw


def _parse_fernet_key(raw: str) -> str:
    """Check a Fernet key: 32 bytes, urlsafe base64."""
    try:
        decoded = base64.urlsafe_b64decode(raw.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("must be urlsafe base64 of 32 bytes (use `wifi-census keys`)") from None
    if len(decoded) != 32:
        raise ValueError("must be urlsafe base64 of exactly 32 bytes (use `wifi-census keys`)")
    return raw


def _parse_fernet_keys(raw: str) -> str:
    """Comma-separated Fernet keys (empty: none), each checked; kept as one string so that the
    setting round-trips through the environment."""
    return ",".join(_parse_fernet_key(key.strip()) for key in raw.split(",") if key.strip())


def _parse_digest_key(raw: str) -> str:
    """A blind-index key: empty (derived from the identity key) or 32 bytes as 64 hex digits."""
    if raw and not re.fullmatch(r"[0-9a-fA-F]{64}", raw):
        raise ValueError("must be 64 hex digits (use `wifi-census keys`, or `wifi-census keys "
                         "digest` for the one in use now)")
    return raw.lower()


def _parse_digest_keys(raw: str) -> str:
    """Comma-separated blind-index keys (empty: none), each 64 hex digits."""
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    if any(not re.fullmatch(r"[0-9a-fA-F]{64}", key) for key in keys):
        raise ValueError("must be 64 hex digits each, comma separated")
    return ",".join(key.lower() for key in keys)


def _parse_choice(*choices: str) -> Callable[[str], str]:
    """Build a parser accepting one of a fixed set of words."""

    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw

    return parse


def _parse_regions(raw: str) -> tuple[str, ...]:
    """Comma-separated ISO 3166 region codes that libphonenumber knows (CN, HK, MO, ...)."""
    import phonenumbers  # only this parser needs it

    codes = tuple(dict.fromkeys(part.strip().upper() for part in raw.split(",") if part.strip()))
    unknown = [code for code in codes if code not in phonenumbers.SUPPORTED_REGIONS]
    if not codes or unknown:
        raise ValueError("must be comma-separated region codes such as CN,HK,MO"
                         + (f" ({', '.join(unknown)} unknown)" if unknown else ""))
    return codes


_HELP_PHONE = re.compile(r"\A\+?[0-9][0-9 \-]{1,23}[0-9]\Z")


def _parse_help_phone(raw: str) -> str:
    """A telephone number as shown to residents: ASCII digits, spaces, hyphens, a leading +."""
    value = raw.strip()
    if not _HELP_PHONE.match(value):
        raise ValueError(f"{raw!r} is not a telephone number (digits, spaces, hyphens, "
                         "an optional leading +)")
    return value


def _parse_client_id(raw: str) -> str:
    """Check an MQTT client id: 1-64 printable characters without spaces or wildcards."""
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", raw):
        raise ValueError("must be 1-64 letters, digits, . _ : or -")
    return raw


def _parse_share_group(raw: str) -> str:
    """Check an MQTT shared-subscription group name (empty: no sharing)."""
    if raw and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", raw):
        raise ValueError("must be empty or 1-64 letters, digits, _ or - (no / + #)")
    return raw


def _parse_optional_url(raw: str) -> str:
    """An http(s) URL, or empty."""
    return _parse_url("http", "https")(raw) if raw.strip() else ""


def _parse_str(raw: str) -> str:
    """Accept any string."""
    return raw


@dataclass(frozen=True)
class Variable:
    """One configuration variable: where it lives, how to read it, what it means."""

    attribute: str
    parse: Callable[[str], Any]
    default: str | None
    help: str
    secret: bool = False

    @property
    def env_name(self) -> str:
        """The environment variable name."""
        return PREFIX + self.attribute.upper()


# Keys that protect personal data get no default: in development they are generated once and
# kept in var/keys.json; in production they must be given (see Settings.load).
GENERATED_KEYS = ("secret_key", "pseudonym_key", "identity_key", "command_key")

VARIABLES: tuple[Variable, ...] = (
    Variable(
        "environment",
        _parse_choice("development", "production", "test"),
        "development",
        "development generates missing keys into var/keys.json; production requires them",
    ),
    Variable(
        "var_dir",
        _parse_str,
        str(default_var_dir()),
        "folder for local service data, logs, PID files, spool and generated keys "
        "(installed without a checkout: $XDG_STATE_HOME/wifi-census)",
    ),
    Variable(
        "database_url",
        _parse_url("sqlite", "postgresql"),
        None,
        "registry database (SQLAlchemy URL); default sqlite:///<var_dir>/registry.sqlite3",
    ),
    Variable("mqtt_host", _parse_str, "127.0.0.1", "MQTT broker host"),
    Variable("mqtt_port", _parse_port, "18830", "MQTT broker port"),
    Variable("mqtt_username", _parse_str, "", "MQTT user name (empty: anonymous)"),
    Variable("mqtt_password", _parse_str, "", "MQTT password", secret=True),
    Variable(
        "mqtt_tls_ca",
        _parse_str,
        "",
        "CA certificate file (PEM) that signed the broker's; set: connect over TLS (empty: plain)",
    ),
    Variable(
        "mqtt_tls_certfile",
        _parse_str,
        "",
        "client certificate file (PEM) for brokers that want one (needs the CA and the key)",
    ),
    Variable(
        "mqtt_tls_keyfile", _parse_str, "", "private key file (PEM) of the client certificate"
    ),
    Variable(
        "mqtt_topic_prefix",
        _parse_topic_prefix,
        "census",
        "first topic level of every topic (see docs/contracts.md)",
    ),
    Variable(
        "redis_url",
        _parse_url("redis", "rediss", "unix"),
        "redis://127.0.0.1:16379/0",
        "Redis URL for live presence, sessions, one-time codes and rate limits",
    ),
    Variable("redis_key_prefix", _parse_str, "census:", "prefix of every Redis key"),
    Variable(
        "influx_url",
        _parse_url("http", "https"),
        "http://127.0.0.1:18086",
        "InfluxDB base URL (1.x, or 2.x/3.x through the v1-compatible API)",
    ),
    Variable(
        "influx_database",
        _parse_str,
        "census",
        "InfluxDB database (2.x: the database name mapped to a bucket by DBRP)",
    ),
    Variable("influx_username", _parse_str, "", "InfluxDB 1.x user (empty: no auth)"),
    Variable("influx_password", _parse_str, "", "InfluxDB 1.x password", secret=True),
    Variable(
        "influx_token",
        _parse_str,
        "",
        "InfluxDB 2.x/3.x API token; when set it is sent as 'Authorization: Token ...'",
        secret=True,
    ),
    Variable(
        "influx_batch_size", _parse_int(1, 100_000), "5000", "points per InfluxDB write request"
    ),
    Variable(
        "timezone",
        _parse_timezone,
        "Asia/Shanghai",
        "the site's local time zone: nights are local nights",
    ),
    Variable(
        "retention_days",
        _parse_int(1, 3650),
        "90",
        "days raw presence (InfluxDB `presence`) and dead letters are kept (docs/privacy.md)",
    ),
    # --- retention per data class (docs/privacy.md gives each default's legal reason) ---
    Variable(
        "retention_rollup_days",
        _parse_int(1, 3650),
        "90",
        "days the nightly presence roll-ups (`presence_daily`) are kept",
    ),
    Variable(
        "retention_network_log_days",
        _parse_int(180, 3650),
        "180",
        "days sign-in records (the network log) are kept; the Cybersecurity Law art. 21 "
        "requires at least 180",
    ),
    Variable(
        "retention_ap_commands_days",
        _parse_int(180, 3650),
        "180",
        "days the AP command log (when each device was let on and off) is kept; at least 180",
    ),
    Variable(
        "retention_devices_days",
        _parse_int(1, 3650),
        "180",
        "days a device binding is kept after it was revoked or last used",
    ),
    Variable(
        "retention_residents_days",
        _parse_int(1, 3650),
        "180",
        "days a resident is kept after moving out (self-declared ones: after their last "
        "sign-in)",
    ),
    Variable(
        "retention_audit_days",
        _parse_int(180, 3650),
        "1095",
        "days the audit log (staff access to personal data) is kept; at least 180",
    ),
    Variable(
        "retention_alerts_days",
        _parse_int(1, 3650),
        "180",
        "days an alert is kept after it was acknowledged (open alerts are kept)",
    ),
    Variable(
        "retention_cases_days",
        _parse_int(1, 3650),
        "1095",
        "days a case (its steps and inspections) is kept after it was closed",
    ),
    Variable("portal_host", _parse_str, "127.0.0.1", "address the portal listens on"),
    Variable("portal_port", _parse_port, "18080", "port the portal listens on"),
    Variable(
        "portal_public_url",
        _parse_url("http", "https"),
        "http://127.0.0.1:18080",
        "the portal's URL as residents' phones reach it (used in redirects)",
    ),
    Variable(
        "alert_webhook_url",
        _parse_str,
        "",
        "URL that alerts are POSTed to as JSON (empty: MQTT only)",
    ),
    Variable(
        "metrics_port",
        _parse_int(0, 65535),
        "19100",
        "collector's Prometheus metrics port (0: off)",
    ),
    Variable(
        "postgres_port",
        _parse_port,
        "15432",
        "port of the project's own PostgreSQL cluster (`services up --postgres`)",
    ),
    Variable("secret_key", _parse_key, None, "Flask session and CSRF signing key", secret=True),
    Variable(
        "pseudonym_key",
        _parse_key,
        None,
        "HMAC key that turns device MAC addresses into pseudonyms",
        secret=True,
    ),
    Variable(
        "identity_key",
        _parse_fernet_key,
        None,
        "Fernet key that encrypts identity numbers at rest",
        secret=True,
    ),
    Variable(
        "identity_keys_previous",
        _parse_fernet_keys,
        "",
        "earlier identity keys, comma separated: still read, never written; empty them once "
        "`wifi-census keys rotate` has finished",
        secret=True,
    ),
    Variable(
        "digest_key",
        _parse_digest_key,
        "",
        "HMAC key (64 hex digits) of the identity lookup digests; empty: derived from the "
        "identity key (must be set to rotate it: `wifi-census keys digest`)",
        secret=True,
    ),
    Variable(
        "digest_keys_previous",
        _parse_digest_keys,
        "",
        "earlier digest keys, comma separated: still matched, never written; empty them once "
        "`wifi-census keys rotate --digest` has finished",
        secret=True,
    ),
    Variable(
        "command_key",
        _parse_key,
        None,
        "default HMAC key for signing AP commands (an AP may have its own)",
        secret=True,
    ),
    Variable(
        "log_level", _parse_choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", "logging level"
    ),
    # --- portal (issue 7); see portal/README.md ---
    Variable(
        "portal_session_seconds",
        _parse_int(60, 30 * 86400),
        "86400",
        "how long an authorized device stays online before signing in again",
    ),
    Variable(
        "portal_device_quota",
        _parse_int(1, 20),
        "3",
        "devices a resident may have authorized at once (the oldest is released)",
    ),
    Variable(
        "portal_help_phone",
        _parse_help_phone,
        "12345",
        "the help number shown on every resident page (default: the government service "
        "hotline; set the community service centre's own)",
    ),
    Variable(
        "portal_restart_url",
        _parse_page_url,
        "http://status.client/login",
        "where the \"start again\" button of a page with no valid sign-in link goes: a plain-HTTP "
        "address the AP intercepts and answers with a fresh portal redirect (default: openNDS's "
        "RFC 8910 login URL on its default gatewayfqdn)",
    ),
    Variable(
        "portal_name_search_max",
        _parse_int(0, 1_000_000),
        "5000",
        "most residents whose names one back-office search by part of a name may decrypt (the "
        "staff member's communities; 0 turns that search off)",
    ),
    Variable(
        "portal_reverify_days",
        _parse_int(0, 365),
        "30",
        "days a known device may sign in with one tap before a new SMS code is asked",
    ),
    Variable(
        "portal_redirect_max_age",
        _parse_int(10, 3600),
        "300",
        "seconds a signed redirect from an AP stays valid (clock skew included)",
    ),
    Variable("portal_otp_ttl", _parse_int(60, 1800), "300", "seconds a one-time code is valid"),
    Variable("portal_otp_max_tries", _parse_int(1, 10), "5", "wrong entries allowed per code"),
    Variable(
        "portal_otp_resend_seconds",
        _parse_int(10, 600),
        "60",
        "cooldown before another code can be sent to the same number",
    ),
    Variable(
        "portal_otp_daily_per_phone",
        _parse_int(1, 100),
        "10",
        "codes sent to one number per local day",
    ),
    Variable(
        "portal_otp_daily_per_ip",
        _parse_int(1, 10_000),
        "30",
        "codes requested by one client per local day (the AP-signed client IP; for FAS, the "
        "connecting address)",
    ),
    Variable(
        "portal_otp_hourly_per_ap",
        _parse_int(1, 100_000),
        "100",
        "codes sent through one AP per hour, all numbers together; hitting it raises an alert",
    ),
    Variable(
        "portal_sms_regions",
        _parse_regions,
        "CN",
        "regions (ISO codes, comma-separated) whose mobile numbers may receive codes",
    ),
    Variable(
        "portal_sms_sender",
        _parse_choice("console", "http"),
        "console",
        "console: log codes and keep them in a Redis outbox (development only); "
        "http: POST to WIFI_CENSUS_PORTAL_SMS_URL",
    ),
    Variable("portal_sms_url", _parse_str, "", "SMS gateway endpoint for the http sender"),
    Variable("portal_sms_token", _parse_str, "", "bearer token for the SMS gateway", secret=True),
    Variable(
        "portal_venue_info_url",
        _parse_str,
        "",
        "venue-info-url of the RFC 8908 API (empty: the portal's own about page)",
    ),
    Variable(
        "local_broker_durable",
        _parse_bool,
        "false",
        "the local Mosquitto (`services up`) saves on every change as production does, so what it "
        "acknowledged survives kill -9; off: a save every 60 s (bulk replays such as the demo "
        "run about 8 times faster)",
    ),
    Variable(
        "portal_admin_host",
        _parse_str,
        "127.0.0.1",
        "address the back office listens on (`portal serve --role admin`); put HTTPS in front",
    ),
    Variable(
        "portal_admin_port",
        _parse_port,
        "18081",
        "port of the back office's own listener (`portal serve --role admin`)",
    ),
    Variable(
        "portal_admin_public_url",
        _parse_optional_url,
        "",
        "the back office's URL as staff phones reach it, carried by the units' QR codes "
        "(empty: WIFI_CENSUS_PORTAL_PUBLIC_URL, where one listener serves both)",
    ),
    Variable(
        "portal_staff_idle_minutes",
        _parse_int(1, 24 * 60),
        "30",
        "minutes a back-office session may sit unused before it ends",
    ),
    Variable(
        "portal_staff_session_hours",
        _parse_int(1, 24),
        "8",
        "hours after sign-in that a back-office session ends, used or not",
    ),
    Variable(
        "collector_client_id",
        _parse_client_id,
        "wifi-census-collector",
        "the collector's MQTT client id: its persistent session (give each collector its own)",
    ),
    Variable(
        "collector_share_group",
        _parse_share_group,
        "",
        "MQTT shared-subscription group ($share/NAME/...) for several collectors; empty: none",
    ),
    Variable(
        "collector_spool_dir",
        _parse_str,
        "",
        "folder of the collector's on-disk spool (empty: <var_dir>/spool/collector)",
    ),
    Variable(
        "collector_receive_maximum",
        _parse_int(10, 65535),
        "1000",
        "MQTT messages a collector holds unacknowledged (also its hand-off queue size)",
    ),
    Variable(
        "collector_flush_ms",
        _parse_int(10, 60_000),
        "200",
        "longest a collector holds events before writing them (milliseconds)",
    ),
    Variable(
        "collector_registry_poll_s",
        _parse_int(1, 3600),
        "10",
        "seconds between checks of the registry version (AP map reload)",
    ),
    Variable(
        "command_log_client_id",
        _parse_client_id,
        "wifi-census-command-log",
        "MQTT client id (persistent session) of the AP command log (`ap-commands run`)",
    ),
    # --- access-point provisioning (issue 14); see firmware_configs/README.md ---
    Variable(
        "firmware_broker_host",
        _parse_str,
        "",
        "the broker's address as APs and building gateways reach it (empty: WIFI_CENSUS_MQTT_HOST)",
    ),
    Variable(
        "firmware_broker_port",
        _parse_port,
        "8883",
        "the broker's TLS port for APs and building gateways",
    ),
    Variable(
        "firmware_broker_ca",
        _parse_str,
        "",
        "CA certificate (PEM) shipped to APs to check the broker (empty: WIFI_CENSUS_MQTT_TLS_CA; "
        "both empty: APs bridge without TLS)",
    ),
    Variable(
        "firmware_password_file",
        _parse_str,
        "",
        "the broker's password file of AP users, kept by `firmware ap-cred` "
        "(empty: <var_dir>/broker/aps.passwd)",
    ),
    Variable(
        "firmware_templates",
        _parse_str,
        str(PROJECT_ROOT / "firmware_configs"),
        "folder of the AP templates (openwrt/**/*.in, broker/*.in) that `firmware render` fills",
    ),
    Variable(
        "analytics_config",
        _parse_str,
        "",
        "JSON file of analytics parameters (docs/analytics.md); empty: the built-in defaults; "
        "`analytics --config` overrides it",
    ),
    # --- cases (issue 13); see registry/case_flow.py ---
    Variable(
        "case_due_days_key",
        _parse_int(1, 15),
        "3",
        "days from assignment a case of a key unit (重点户) has until it is closed",
    ),
    Variable(
        "case_due_days_attention",
        _parse_int(1, 15),
        "7",
        "days from assignment a case of an attention unit (关注户) has until it is closed",
    ),
    Variable(
        "case_due_days_normal",
        _parse_int(1, 15),
        "15",
        "days from assignment a case of a normal unit (普通户) has until it is closed",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Validated configuration; build it with ``Settings.load()``."""

    environment: str
    var_dir: Path
    database_url: str
    mqtt_host: str
    mqtt_port: int
    mqtt_username: str
    mqtt_password: str = field(repr=False)
    mqtt_tls_ca: str
    mqtt_tls_certfile: str
    mqtt_tls_keyfile: str
    mqtt_topic_prefix: str
    redis_url: str
    redis_key_prefix: str
    influx_url: str
    influx_database: str
    influx_username: str
    influx_password: str = field(repr=False)
    influx_token: str = field(repr=False)
    influx_batch_size: int
    timezone: str
    retention_days: int
    retention_rollup_days: int
    retention_network_log_days: int
    retention_ap_commands_days: int
    retention_devices_days: int
    retention_residents_days: int
    retention_audit_days: int
    retention_alerts_days: int
    retention_cases_days: int
    portal_host: str
    portal_port: int
    portal_public_url: str
    alert_webhook_url: str
    metrics_port: int
    postgres_port: int
    secret_key: str = field(repr=False)
    pseudonym_key: str = field(repr=False)
    identity_key: str = field(repr=False)
    identity_keys_previous: str = field(repr=False)
    digest_key: str = field(repr=False)
    digest_keys_previous: str = field(repr=False)
    command_key: str = field(repr=False)
    log_level: str
    portal_session_seconds: int
    portal_device_quota: int
    portal_help_phone: str
    portal_restart_url: str
    portal_name_search_max: int
    portal_reverify_days: int
    portal_redirect_max_age: int
    portal_otp_ttl: int
    portal_otp_max_tries: int
    portal_otp_resend_seconds: int
    portal_otp_daily_per_phone: int
    portal_otp_daily_per_ip: int
    portal_otp_hourly_per_ap: int
    portal_sms_regions: tuple[str, ...]
    portal_sms_sender: str
    portal_sms_url: str
    portal_sms_token: str = field(repr=False)
    portal_venue_info_url: str
    portal_admin_host: str
    portal_admin_port: int
    local_broker_durable: bool
    portal_admin_public_url: str
    portal_staff_idle_minutes: int
    portal_staff_session_hours: int
    collector_client_id: str
    collector_share_group: str
    collector_spool_dir: str
    collector_receive_maximum: int
    collector_flush_ms: int
    collector_registry_poll_s: int
    command_log_client_id: str
    firmware_broker_host: str
    firmware_broker_port: int
    firmware_broker_ca: str
    firmware_password_file: str
    firmware_templates: str
    analytics_config: str
    case_due_days_key: int
    case_due_days_attention: int
    case_due_days_normal: int

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read, check and return the settings; raise SettingsError naming the bad variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for variable in VARIABLES:
            if variable.attribute in overrides:
                values[variable.attribute] = overrides[variable.attribute]
                continue
            raw = env.get(variable.env_name)
            if raw is None:
                raw = variable.default
            if raw is None:
                values[variable.attribute] = None
                continue
            try:
                values[variable.attribute] = variable.parse(raw)
            except ValueError as error:
                shown = "***" if variable.secret else raw
                raise SettingsError(variable.env_name, shown, str(error)) from None
        values["var_dir"] = Path(values["var_dir"]).resolve()
        _check_tls(values)
        if values["database_url"] is None:
            values["database_url"] = f"sqlite:///{values['var_dir'] / 'registry.sqlite3'}"
        if values["identity_keys_previous"] and not values["digest_key"]:
            raise SettingsError(
                PREFIX + "DIGEST_KEY", "",
                "must be set while WIFI_CENSUS_IDENTITY_KEYS_PREVIOUS is (the digest key would "
                "otherwise follow the new identity key); `wifi-census keys digest` prints the "
                "one in use now")
        if values["digest_keys_previous"] and not values["digest_key"]:
            raise SettingsError(
                PREFIX + "DIGEST_KEY", "",
                "must be set while WIFI_CENSUS_DIGEST_KEYS_PREVIOUS is (the new digest key)")
        missing = [name for name in GENERATED_KEYS if values[name] is None]
        if missing:
            if values["environment"] == "production":
                names = ", ".join(PREFIX + name.upper() for name in missing)
                raise SettingsError(names, "", "must be set in production")
            values.update(_development_keys(values["var_dir"], missing))
        return cls(**values)

    @property
    def influx_policy_days(self) -> int:
        """Duration of the InfluxDB retention policy: the longest kept of its measurements
        (`wifi-census retention run` deletes each earlier, to its own setting)."""
        return max(self.retention_days, self.retention_rollup_days)

    @property
    def tz(self) -> ZoneInfo:
        """The site's time zone."""
        return ZoneInfo(self.timezone)

    def describe(self) -> dict[str, Any]:
        """Settings as a dict with secrets masked, for `wifi-census config`."""
        shown: dict[str, Any] = {}
        by_attribute = {v.attribute: v for v in VARIABLES}
        for f in fields(self):
            value = getattr(self, f.name)
            if by_attribute[f.name].secret and value:
                value = "***"
            shown[PREFIX + f.name.upper()] = str(value)
        return shown


def _check_tls(values: Mapping[str, Any]) -> None:
    """A client certificate needs its key and the CA (TLS is on only with a CA)."""
    certfile, keyfile = values["mqtt_tls_certfile"], values["mqtt_tls_keyfile"]
    if bool(certfile) != bool(keyfile):
        name = "MQTT_TLS_KEYFILE" if certfile else "MQTT_TLS_CERTFILE"
        raise SettingsError(PREFIX + name, "", "a client certificate needs both the certificate "
                            "and its key file")
    if certfile and not values["mqtt_tls_ca"]:
        raise SettingsError(PREFIX + "MQTT_TLS_CA", "", "a client certificate needs the CA "
                            "(TLS is on only when WIFI_CENSUS_MQTT_TLS_CA is set)")


def generate_keys() -> dict[str, str]:
    """Fresh random values for every generated key."""
    return {
        "secret_key": secrets.token_urlsafe(48),
        "pseudonym_key": secrets.token_urlsafe(48),
        "identity_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii"),
        "command_key": secrets.token_urlsafe(48),
    }


def generate_digest_key() -> str:
    """A fresh identity-digest key (64 hex digits) for a new deployment."""
    return secrets.token_hex(32)


def _development_keys(var_dir: Path, missing: list[str]) -> dict[str, str]:
    """Keys kept in var/keys.json so that development data stays readable across runs."""
    path = var_dir / "keys.json"
    stored: dict[str, str] = {}
    if path.exists():
        if path.stat().st_mode & 0o077:
            # Written by an older version (or copied carelessly): close it before reading on.
            LOGGER.warning("%s was readable by others; now owner-only (0600)", path)
            path.chmod(0o600)
        stored = json.loads(path.read_text(encoding="utf-8"))
    if any(name not in stored for name in missing):
        fresh = generate_keys()
        for name in GENERATED_KEYS:
            stored.setdefault(name, fresh[name])
        var_dir.mkdir(parents=True, exist_ok=True)
        _write_private(path, json.dumps(stored, indent=2))
    return {name: stored[name] for name in missing}


def _write_private(path: Path, text: str) -> None:
    """Replace path with text, owner-only (0600) from the first byte: mkstemp creates the file
    with that mode (O_EXCL), so no other user can open it between creation and chmod."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def markdown_table() -> str:
    """The configuration table for the README."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for variable in VARIABLES:
        default = variable.default
        if variable.attribute == "var_dir":
            default = "`<checkout>/var`"
        elif variable.attribute == "firmware_templates":
            default = "`<checkout>/firmware_configs`"
        elif default is None:
            default = "generated in development" if variable.secret else "see meaning"
        else:
            default = f"`{default}`" if default else "(empty)"
        lines.append(f"| `{variable.env_name}` | {default} | {variable.help} |")
    return "\n".join(lines)


def environment_of(settings: Settings) -> dict[str, str]:
    """The WIFI_CENSUS_* variables that load back into these settings (for child processes)."""
    environment: dict[str, str] = {}
    for variable in VARIABLES:
        value = getattr(settings, variable.attribute)
        if value is None:
            text = ""
        elif isinstance(value, tuple | list):
            text = ",".join(str(item) for item in value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        environment[variable.env_name] = text
    return environment
