"""One settings object for every part of wifi-census, loaded from WIFI_CENSUS_* variables.

Each variable is declared once in ``VARIABLES`` (name, parser, default, meaning); the README's
configuration table is generated from that list (``wifi-census config --markdown``), so the
documentation cannot drift from the code. Defaults point at the services that
``wifi-census services up`` starts on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PREFIX = "WIFI_CENSUS_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


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


def _parse_choice(*choices: str) -> Callable[[str], str]:
    """Build a parser accepting one of a fixed set of words."""

    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw

    return parse


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
        str(PROJECT_ROOT / "var"),
        "folder for local service data, logs, PID files, spool and generated keys",
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
        "days raw presence data and dead letters are kept before they are deleted",
    ),
    Variable("portal_host", _parse_str, "127.0.0.1", "address the portal listens on"),
    Variable("portal_port", _parse_port, "18080", "port the portal listens on"),
    Variable(
        "portal_public_url",
        _parse_url("http", "https"),
        "http://127.0.0.1:18080",
        "the portal's URL as residents' phones reach it (used in redirects and QR codes)",
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
        "codes requested from one client IP per local day",
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
    portal_host: str
    portal_port: int
    portal_public_url: str
    alert_webhook_url: str
    metrics_port: int
    postgres_port: int
    secret_key: str = field(repr=False)
    pseudonym_key: str = field(repr=False)
    identity_key: str = field(repr=False)
    command_key: str = field(repr=False)
    log_level: str
    portal_session_seconds: int
    portal_device_quota: int
    portal_reverify_days: int
    portal_redirect_max_age: int
    portal_otp_ttl: int
    portal_otp_max_tries: int
    portal_otp_resend_seconds: int
    portal_otp_daily_per_phone: int
    portal_otp_daily_per_ip: int
    portal_sms_sender: str
    portal_sms_url: str
    portal_sms_token: str = field(repr=False)
    portal_venue_info_url: str
    collector_client_id: str
    collector_share_group: str
    collector_spool_dir: str
    collector_receive_maximum: int
    collector_flush_ms: int
    collector_registry_poll_s: int
    command_log_client_id: str
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
        if values["database_url"] is None:
            values["database_url"] = f"sqlite:///{values['var_dir'] / 'registry.sqlite3'}"
        missing = [name for name in GENERATED_KEYS if values[name] is None]
        if missing:
            if values["environment"] == "production":
                names = ", ".join(PREFIX + name.upper() for name in missing)
                raise SettingsError(names, "", "must be set in production")
            values.update(_development_keys(values["var_dir"], missing))
        return cls(**values)

    def topic(self, *levels: str) -> str:
        """Join topic levels under the configured prefix."""
        return "/".join((self.mqtt_topic_prefix, *levels))

    def redis_key(self, *parts: str) -> str:
        """Join Redis key parts under the configured prefix."""
        return self.redis_key_prefix + ":".join(parts)

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


def generate_keys() -> dict[str, str]:
    """Fresh random values for every generated key."""
    return {
        "secret_key": secrets.token_urlsafe(48),
        "pseudonym_key": secrets.token_urlsafe(48),
        "identity_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii"),
        "command_key": secrets.token_urlsafe(48),
    }


def _development_keys(var_dir: Path, missing: list[str]) -> dict[str, str]:
    """Keys kept in var/keys.json so that development data stays readable across runs."""
    path = var_dir / "keys.json"
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
    if any(name not in stored for name in missing):
        fresh = generate_keys()
        for name in GENERATED_KEYS:
            stored.setdefault(name, fresh[name])
        var_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(stored, indent=2), encoding="utf-8")
        temporary.chmod(0o600)
        temporary.replace(path)
    return {name: stored[name] for name in missing}


def markdown_table() -> str:
    """The configuration table for the README."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for variable in VARIABLES:
        default = variable.default
        if variable.attribute == "var_dir":
            default = "`<checkout>/var`"
        elif default is None:
            default = "generated in development" if variable.secret else "see meaning"
        else:
            default = f"`{default}`" if default else "(empty)"
        lines.append(f"| `{variable.env_name}` | {default} | {variable.help} |")
    return "\n".join(lines)
