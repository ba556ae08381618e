"""Every MQTT topic and Redis key of the project, and the one AP-id pattern (contracts 1, 3, 7).

Topics and keys are names two processes must agree on (an AP and the collector, the collector
and the portal's overview, two portal workers), so each is spelled once, here; nothing else
writes ``/v1/ap/`` or ``portal:otp:`` by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An AP id is a path level of its topics and a part of Redis keys: no '/', '+', '#', ':' or
# spaces, so it can never widen a subscription or a key (contracts section 1).
AP_ID_CHARS = "A-Za-z0-9._-"
AP_ID_MAX = 64
# \A and \Z, not ^ and $: '$' also matches before a trailing newline, so 'ap-1\n' passed.
AP_ID_PATTERN = re.compile(rf"\A[{AP_ID_CHARS}]{{1,{AP_ID_MAX}}}\Z")


def is_ap_id(value: str) -> bool:
    """Whether value is a valid AP id."""
    return AP_ID_PATTERN.match(value) is not None


# --- MQTT topics -----------------------------------------------------------------------------


def ap_topic_head(prefix: str) -> str:
    """The start every per-AP topic shares: ``{p}/v1/ap/``."""
    return f"{prefix}/v1/ap/"


def events_topic(prefix: str, ap_id: str) -> str:
    """The topic an AP publishes its events on."""
    return f"{ap_topic_head(prefix)}{ap_id}/events"


def events_subscription(prefix: str, share_group: str | None = None) -> str:
    """The subscription that receives every AP's events, optionally as a shared subscription."""
    topic = events_topic(prefix, "+")
    return f"$share/{share_group}/{topic}" if share_group else topic


def stored_topic(prefix: str, ap_id: str) -> str:
    """The topic the collector confirms an AP's stored messages on (end-to-end acknowledgement)."""
    return f"{ap_topic_head(prefix)}{ap_id}/stored"


def command_topic(prefix: str, ap_id: str) -> str:
    """The topic an AP's agent receives signed commands on."""
    return f"{ap_topic_head(prefix)}{ap_id}/cmd"


def ack_topic(prefix: str, ap_id: str) -> str:
    """The topic an AP's agent acknowledges commands on."""
    return f"{command_topic(prefix, ap_id)}/ack"


def status_topic(prefix: str, ap_id: str) -> str:
    """The topic an AP's agent keeps its retained online/offline status on."""
    return f"{ap_topic_head(prefix)}{ap_id}/status"


def alert_topic(prefix: str, kind: str) -> str:
    """The topic alerts of one kind are published on (``+``: every kind)."""
    return f"{prefix}/v1/alerts/{kind}"


# --- Redis keys ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """The Redis keys under one deployment's prefix (``WIFI_CENSUS_REDIS_KEY_PREFIX``)."""

    prefix: str

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this prefix."""
        return f"{self.prefix}*"

    # collector: dead letters and who is here now (contracts section 7)
    def deadletter(self) -> str:
        """The stream of rejected messages."""
        return f"{self.prefix}deadletter"

    def here_ap(self, ap_id: str) -> str:
        """The sorted set of devices seen at an AP (score: last seen)."""
        return f"{self.prefix}here:ap:{ap_id}"

    def here_unit(self, unit_ref: str) -> str:
        """The sorted set of devices seen in a unit (score: last seen)."""
        return f"{self.prefix}here:unit:{unit_ref}"

    # portal: sessions, flows, rate limits, hand-over nonces
    def portal_client(self, ap_id: str, client_ip: str) -> str:
        """An online client's session, by AP and client IP."""
        return f"{self.prefix}portal:client:{ap_id}:{client_ip}"

    def portal_device(self, pseudonym: str) -> str:
        """From a device pseudonym to its session key."""
        return f"{self.prefix}portal:dev:{pseudonym}"

    def portal_known(self, pseudonym: str) -> str:
        """The hint that a device pseudonym is bound to a resident."""
        return f"{self.prefix}portal:known:{pseudonym}"

    def flow(self, fid: str) -> str:
        """A sign-in flow's state."""
        return f"{self.prefix}portal:flow:{fid}"

    def flow_draft(self, fid: str) -> str:
        """What a resident has typed so far in a flow (encrypted), kept across a refresh."""
        return f"{self.prefix}portal:draft:{fid}"

    def flow_first_try(self, fid: str) -> str:
        """When a flow first tried to record its sign-in: its idempotency moment."""
        return f"{self.prefix}portal:flow:{fid}:at"

    def rate_limit(self, name: str, ident: str, window: int) -> str:
        """Hits of one limit by one client in one fixed window (its index)."""
        return f"{self.prefix}portal:rl:{name}:{ident}:{window}"

    def handshake_nonce(self, ap_id: str, nonce: str) -> str:
        """A signed redirect's nonce, kept so that it is used once."""
        return f"{self.prefix}portal:nonce:{ap_id}:{nonce}"

    def sms_outbox(self) -> str:
        """The development SMS outbox (a list)."""
        return f"{self.prefix}portal:sms:outbox"

    def sms_last(self) -> str:
        """The last development SMS (for the demo and tests)."""
        return f"{self.prefix}portal:sms:last"

    # portal: staff login back-off
    def staff_failures(self, pair: str) -> str:
        """Refused attempts and the last one for a (username, address) digest."""
        return f"{self.prefix}portal:staff:fail:{pair}"

    def staff_name(self, name_digest: str, window: int) -> str:
        """Attempts on one username in one window."""
        return f"{self.prefix}portal:staff:name:{name_digest}:{window}"

    def staff_address(self, address_digest: str, window: int) -> str:
        """Attempts from one address in one window."""
        return f"{self.prefix}portal:staff:addr:{address_digest}:{window}"

    def staff_known(self, pair: str) -> str:
        """A (username, address) digest that logged in before."""
        return f"{self.prefix}portal:staff:known:{pair}"

    # portal: one-time codes
    def otp(self, fid: str) -> str:
        """The code issued to a flow."""
        return f"{self.prefix}portal:otp:{fid}"

    def otp_cooldown(self, phone_digest: str) -> str:
        """The resend cool-down of a number."""
        return f"{self.prefix}portal:otp:cool:{phone_digest}"

    def otp_day_phone(self, phone_digest: str, day: str) -> str:
        """Codes sent to a number on a local day (YYYYMMDD)."""
        return f"{self.prefix}portal:otp:day:phone:{phone_digest}:{day}"

    def otp_day_client(self, client: str, day: str) -> str:
        """Codes asked for by a client on a local day (YYYYMMDD)."""
        return f"{self.prefix}portal:otp:day:client:{client}:{day}"

    def otp_hour_ap(self, ap_id: str, hour: str) -> str:
        """Codes paid from an AP's budget in a local hour (YYYYMMDDHH)."""
        return f"{self.prefix}portal:otp:hour:ap:{ap_id}:{hour}"

    def otp_hour_ap_alerted(self, ap_id: str, hour: str) -> str:
        """Set once an AP's hourly budget ran out and staff were alerted."""
        return f"{self.otp_hour_ap(ap_id, hour)}:alerted"
