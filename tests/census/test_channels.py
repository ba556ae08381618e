"""The topics and Redis keys in census.channels are the ones docs/contracts.md writes down."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from census.channels import (
    AP_ID_PATTERN,
    RedisKeys,
    ack_topic,
    alert_topic,
    command_topic,
    events_subscription,
    events_topic,
    is_ap_id,
    status_topic,
)

ROOT = Path(__file__).resolve().parents[2]


def test_topics_are_the_contracts() -> None:
    """Every topic as docs/contracts.md sections 2-4 spell it."""
    assert events_topic("site", "ap-1") == "site/v1/ap/ap-1/events"
    assert events_subscription("site") == "site/v1/ap/+/events"
    assert events_subscription("site", "collectors") == "$share/collectors/site/v1/ap/+/events"
    assert command_topic("site", "ap-1") == "site/v1/ap/ap-1/cmd"
    assert ack_topic("site", "ap-1") == "site/v1/ap/ap-1/cmd/ack"
    assert status_topic("site", "ap-1") == "site/v1/ap/ap-1/status"
    assert alert_topic("site", "case") == "site/v1/alerts/case"


def test_collector_keys_are_the_contracts() -> None:
    """The collector's keys as docs/contracts.md section 7 spells them."""
    keys = RedisKeys("census:")
    assert keys.here_ap("ap-1") == "census:here:ap:ap-1"
    assert keys.here_unit("T1-B03-1502") == "census:here:unit:T1-B03-1502"
    assert keys.deadletter() == "census:deadletter"
    assert keys.pattern() == "census:*"


def test_every_portal_key_lives_under_the_prefix_and_its_own_name() -> None:
    """Each portal key starts with the prefix and ``portal:``; no two builders collide."""
    keys = RedisKeys("p:")
    built = {
        keys.portal_client("ap", "10.0.0.2"), keys.portal_device("d"), keys.portal_known("d"),
        keys.flow("f"), keys.rate_limit("signin", "c", 7), keys.handshake_nonce("ap", "n"),
        keys.sms_outbox(), keys.sms_last(), keys.staff_failures("x"), keys.staff_name("x", 1),
        keys.staff_address("x", 1), keys.staff_known("x"), keys.otp("f"), keys.otp_cooldown("d"),
        keys.otp_day_phone("d", "20261129"), keys.otp_day_client("c", "20261129"),
        keys.otp_hour_ap("ap", "2026112918"), keys.otp_hour_ap_alerted("ap", "2026112918"),
    }
    assert len(built) == 18
    assert all(key.startswith("p:portal:") for key in built)


@pytest.mark.parametrize("value", ["ap-1", "AP_2.b", "a" * 64])
def test_ap_id_pattern_accepts_ids(value: str) -> None:
    """Letters, digits, dot, dash and underscore, up to 64."""
    assert is_ap_id(value)


@pytest.mark.parametrize("value", ["", "a" * 65, "ap/1", "+", "#", "ap 1", "ap:1", "ap-1\n"])
def test_ap_id_pattern_refuses_what_would_widen_a_topic_or_key(value: str) -> None:
    """A wildcard, a level separator, a key separator or a newline is never an AP id."""
    assert not is_ap_id(value)


def test_the_ap_id_pattern_is_written_once() -> None:
    """No module of ours compiles its own copy of the AP-id pattern."""
    copies = []
    for path in ROOT.glob("*/**/*.py"):
        if path.parts[len(ROOT.parts)] in {".venv", "var", "tests", "bench"}:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and re.fullmatch(r"\^?\[A-Za-z0-9\._-\]\{1,64\}\$?", node.value)):
                copies.append(str(path.relative_to(ROOT)))
    assert copies == [], copies
    assert AP_ID_PATTERN.pattern == r"\A[A-Za-z0-9._-]{1,64}\Z"
