"""Unit tests of the pure parser: every rule of contracts section 2."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from census.events import PresenceEvent, encode_envelope, encode_event, encode_events
from census.privacy import pseudonymize_mac
from collector.parser import (
    ApLocation,
    EventParser,
    ParsedEvent,
    Pseudonymizer,
    dead_letter_payload,
    sample_bytes,
)

KEY = "k" * 40
NOW = 1_764_000_000.0
TOPIC = "site/v1/ap/ap-1/events"
LOCATION = ApLocation("ap-1", "C1", "B1", "3", "")
GOOD: dict[str, Any] = {"v": 1, "type": "snapshot", "mac": "A4-83-E7-12-9F-01", "ts": NOW - 10,
                        "rssi": -48, "ssid": "Census-Free"}


def make_parser() -> EventParser:
    """A parser for prefix 'site' that knows one AP and keeps 90 days."""
    return EventParser("site", Pseudonymizer(KEY), {"ap-1": LOCATION}.get, retention_days=90)


def parse(payload: Any, topic: str = TOPIC) -> Any:
    """Parse a JSON-able payload (or raw bytes)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return make_parser().parse(topic, body, NOW)


def test_a_single_event_object_is_accepted_and_pseudonymised() -> None:
    """One event object becomes one ParsedEvent with the keyed pseudonym, not the MAC."""
    result = parse(GOOD)
    assert result.rejects == [] and result.location == LOCATION
    assert result.events == [ParsedEvent("snapshot", pseudonymize_mac("a4:83:e7:12:9f:01", KEY),
                                         False, NOW - 10, -48, "Census-Free")]


def test_a_batch_keeps_good_events_around_bad_ones() -> None:
    """One bad event in a batch does not reject its neighbours."""
    bad = dict(GOOD, rssi="loud")
    result = parse([GOOD, bad, dict(GOOD, mac="02:00:00:00:00:01")])
    assert len(result.events) == 2 and result.events[1].randomized is True
    assert [r.reason for r in result.rejects] == ["bad_field"]
    assert result.rejects[0].sample == bad and result.total == 3


def test_encoded_events_from_census_events_round_trip() -> None:
    """What producers encode with census.events is exactly what the parser accepts."""
    events = [PresenceEvent("connect", "00:11:22:33:44:55", NOW, None, "x"),
              PresenceEvent("probe", "02:11:22:33:44:55", NOW, -90, "")]
    result = make_parser().parse(TOPIC, encode_events(events), NOW)
    assert [e.type for e in result.events] == ["connect", "probe"] and not result.rejects
    single = make_parser().parse(TOPIC, encode_event(events[0]), NOW)
    assert len(single.events) == 1


def test_an_empty_batch_is_an_alive_ap_with_nobody() -> None:
    """`[]` is valid: no events, no rejects."""
    result = parse([])
    assert result.events == [] and result.rejects == [] and result.total == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": None}, "bad_field"),
        ({"v": "1"}, "bad_field"),
        ({"v": True}, "bad_field"),
        ({"v": 2}, "bad_version"),
        ({"type": "roam"}, "bad_field"),
        ({"type": ["snapshot"]}, "bad_field"),
        ({"mac": "not-a-mac"}, "bad_field"),
        ({"mac": 12345}, "bad_field"),
        ({"mac": None}, "bad_field"),
        ({"ts": "yesterday"}, "bad_field"),
        ({"ts": None}, "bad_field"),
        ({"ts": True}, "bad_field"),
        ({"ts": NOW + 301}, "bad_timestamp"),
        ({"ts": NOW - 91 * 86400}, "bad_timestamp"),
        ({"rssi": None}, "bad_field"),  # required for a snapshot
        ({"rssi": 5}, "bad_field"),
        ({"rssi": -48.5}, "bad_field"),
        ({"rssi": False}, "bad_field"),
        ({"ssid": "x" * 33}, "bad_field"),
        ({"ssid": "网" * 11}, "bad_field"),  # 33 bytes in UTF-8
        ({"ssid": 7}, "bad_field"),
        ({"ap": "ap-2"}, "ap_mismatch"),
    ],
)
def test_invalid_events_are_rejected_with_their_reason(change: dict[str, Any], reason: str) -> None:
    """Each malformed field is refused with the contract's reason (None: the field is missing)."""
    event = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    result = parse([event, GOOD])
    assert [r.reason for r in result.rejects] == [reason]
    assert len(result.events) == 1


def test_rssi_is_optional_for_connect_and_disconnect_and_extra_fields_are_ignored() -> None:
    """Forward compatible: unknown fields pass; connect needs no RSSI."""
    event = {"v": 1, "type": "disconnect", "mac": "00:11:22:33:44:55", "ts": NOW, "band": "5g",
             "ap": "ap-1"}
    result = parse(event)
    assert len(result.events) == 1 and result.events[0].rssi is None


def test_lone_surrogate_in_ssid_is_rejected_not_crashing() -> None:
    """JSON can carry an unpaired surrogate that UTF-8 cannot encode: a bad field."""
    body = json.dumps(GOOD).replace("Census-Free", "\\ud800").encode()
    assert parse(body).rejects[0].reason == "bad_field"


def test_non_finite_timestamps_are_bad_fields() -> None:
    """NaN and Infinity (Python's json accepts them) are refused."""
    for literal in (b"NaN", b"Infinity"):
        body = json.dumps(dict(GOOD, ts=0)).encode().replace(b'"ts": 0', b'"ts": ' + literal)
        assert parse(body).rejects[0].reason == "bad_field"


@pytest.mark.parametrize(
    ("payload", "topic", "reason", "count"),
    [
        (b"{not json", TOPIC, "bad_json", 1),
        (b"\xff\xfe\x00garbage", TOPIC, "bad_json", 1),
        (b"", TOPIC, "bad_json", 1),
        (b"[" + b" " * (1024 * 1024) + b"]", TOPIC, "oversized", 1),
        (json.dumps([GOOD] * 5001).encode(), TOPIC, "oversized", 5001),
        (json.dumps([GOOD] * 3).encode(), "site/v1/ap/ap-9/events", "unknown_ap", 3),
        (json.dumps(GOOD).encode(), "site/v1/ap/bad ap/events", "bad_topic", 1),
        (json.dumps(GOOD).encode(), "other/v1/ap/ap-1/events", "bad_topic", 1),
        (b"42", TOPIC, "bad_field", 1),
        (b"[1, \"x\", null]", TOPIC, "bad_field", 3),
    ],
)
def test_whole_message_problems(payload: bytes, topic: str, reason: str, count: int) -> None:
    """Message-level problems reject the message, counted as the events it held."""
    result = make_parser().parse(topic, payload, NOW)
    assert result.events == []
    assert {r.reason for r in result.rejects} == {reason}
    assert result.rejected == count


def test_a_full_batch_of_5000_is_accepted() -> None:
    """The batch limit is inclusive."""
    assert len(parse([GOOD] * 5000).events) == 5000


def test_pseudonymizer_memo_is_bounded_and_consistent() -> None:
    """The memo never grows past its bound and returns the same answers after clearing."""
    pseudonymizer = Pseudonymizer(KEY, max_entries=10)
    first = pseudonymizer.lookup("00:11:22:33:44:55")
    for index in range(25):
        pseudonymizer.lookup(f"00:11:22:33:44:{index:02x}")
    assert len(pseudonymizer._memo) <= 10  # noqa: SLF001
    assert pseudonymizer.lookup("00:11:22:33:44:55") == first
    assert pseudonymizer.lookup("zz") is None


def test_redaction_replaces_every_mac_shape_with_its_pseudonym() -> None:
    """Dead-letter samples keep no raw MAC, in any spelling."""
    pseudonymizer = Pseudonymizer(KEY)
    sample = b'{"mac":"A4:83:E7:12:9F:01","x":"a4-83-e7-12-9f-01","y":"a483e7129f01"}'
    redacted = pseudonymizer.redact(sample)
    expected = b"mac~" + pseudonymize_mac("a4:83:e7:12:9f:01", KEY).encode()
    assert redacted.count(expected) == 3
    assert b"83:e7" not in redacted and b"a483e7" not in redacted.lower()


def test_samples_are_capped_at_4_kib_after_redaction() -> None:
    """A dead-letter payload is at most 4 KiB, whatever the sample was, and has no raw MAC."""
    pseudonymizer = Pseudonymizer(KEY)
    assert len(dead_letter_payload(pseudonymizer, b"x" * 10_000)) == 4096
    assert len(dead_letter_payload(pseudonymizer, {"a": "y" * 10_000})) == 4096
    assert sample_bytes({"a": 1}) == b'{"a":1}'
    many = b",".join([b"00:11:22:33:44:55"] * 1000)  # redaction makes the text longer
    stored = dead_letter_payload(pseudonymizer, many)
    assert len(stored) == 4096 and b"00:11:22" not in stored


# --- the fast path and the per-event path agree ---------------------------------------------

_VALID_FIELDS: dict[str, Any] = {
    "v": st.just(1),
    "type": st.sampled_from(["snapshot", "probe", "connect", "disconnect"]),
    "mac": st.sampled_from(["a4:83:e7:12:9f:01", "A4-83-E7-12-9F-02", "a483e7129f03",
                            "02:11:22:33:44:55"]),
    "ts": st.one_of(st.floats(NOW - 90 * 86400, NOW + 300), st.just(int(NOW))),
    "rssi": st.integers(-120, 0),
    "ssid": st.one_of(st.text(max_size=8), st.just("Census-Free"), st.just("网" * 10)),
    "ap": st.just("ap-1"),
}
_MISSING = object()
_WRONG_FIELDS: dict[str, list[Any]] = {
    "v": [2, 0, True, "1", 1.0, None],
    "type": ["roam", "", 3, None],
    "mac": ["a4:83:e7:12:9f", "zz:zz:zz:zz:zz:zz", "", 7, None],
    "ts": [NOW + 301, NOW - 91 * 86400, 10**30, -1, "1764000000", True, None],
    "rssi": [-121, 1, -40.0, True, "x", None],
    "ssid": ["x" * 33, "网" * 11, 5, ["a"]],
    "ap": ["ap-2", 1, ""],
}


def assert_both_paths_agree(body: bytes, topic: str = TOPIC) -> None:
    """``parse`` (C-decoded fast path) and ``parse_checked`` (event by event) give one result."""
    fast = make_parser().parse(topic, body, NOW)
    checked = make_parser().parse_checked(topic, body, NOW)
    assert fast.events == checked.events, body
    assert fast.location == checked.location, body
    assert fast.message_id == checked.message_id, body
    assert [(r.reason, r.detail, r.count) for r in fast.rejects] == \
           [(r.reason, r.detail, r.count) for r in checked.rejects], body


@st.composite
def _wire_event(draw: st.DrawFn, wrong: bool) -> Any:
    """A valid event, or with one field wrong or missing, or now and then not an object."""
    event = {name: draw(values) for name, values in _VALID_FIELDS.items()
             if name not in ("ssid", "ap", "rssi") or draw(st.booleans())}
    if event["type"] in ("snapshot", "probe"):
        event.setdefault("rssi", -50)
    if draw(st.integers(0, 1)):
        event["band"] = draw(st.sampled_from([1, "5g", [1, {"y": 2}], None]))
    if wrong:
        if not draw(st.integers(0, 20)):
            return draw(st.sampled_from([1, "x", None, []]))
        name = draw(st.sampled_from(sorted(_WRONG_FIELDS)))
        if draw(st.integers(0, 4)) == 0:
            event.pop(name, None)
        else:
            event[name] = draw(st.sampled_from(_WRONG_FIELDS[name]))
    return event


@st.composite
def _wire_batch(draw: st.DrawFn) -> list[Any]:
    """Valid events with at most one defective among them: the cases that tell paths apart."""
    events = draw(st.lists(_wire_event(wrong=False), max_size=3))
    if draw(st.integers(0, 3)):
        position = draw(st.integers(0, len(events)))
        events.insert(position, draw(_wire_event(wrong=True)))
    return events


@settings(max_examples=500, deadline=None)
@given(events=_wire_batch(), single=st.booleans(),
       ap_id=st.sampled_from(["ap-1", "ap-1", "ap-9"]), spacing=st.sampled_from(["", " ", "\n"]))
def test_the_fast_path_and_the_checked_path_give_the_same_result(
    events: list[Any], single: bool, ap_id: str, spacing: str
) -> None:
    """Random mixes of good events and one defective one, as a batch or a single object."""
    document: Any = events[0] if single and events else events
    body = (spacing + json.dumps(document, separators=("," + spacing, ":"))).encode()
    assert_both_paths_agree(body, f"site/v1/ap/{ap_id}/events")


@pytest.mark.parametrize("body", [
    b'{"v":1,"type":"probe","mac":"02:11:22:33:44:55","ts":1764000000,"rssi":-40,"v":2}',
    b'{"v":2,"type":"probe","mac":"02:11:22:33:44:55","ts":1764000000,"rssi":-40,"v":1}',
    b'\xef\xbb\xbf[{"v":1,"type":"connect","mac":"02:11:22:33:44:55","ts":1764000000}]',
    b'{"v":1,"type":"probe","mac":"02:11:22:33:44:55","ts":1e999,"rssi":-40}',
    b'{"v":1,"type":"probe","mac":"02:11:22:33:44:55","ts":1764000000,"rssi":-40,"ssid":"\\ud83d"}',
    b'{"v":1,"type":"probe","mac":"02:11:22:33:44:55","ts":1764000000,"rssi":-40,"ssid":"\\ud83d\\ude00"}',
])
def test_the_two_paths_agree_on_json_corner_cases(body: bytes) -> None:
    """Duplicate keys (last wins), a UTF-8 BOM, overflowing numbers, surrogate escapes."""
    assert_both_paths_agree(body)


@pytest.mark.parametrize("kind", ["snapshot", "probe", "connect", "disconnect"])
def test_the_two_paths_agree_on_every_single_wrong_field(kind: str) -> None:
    """Each wrong value (and each missing field) of each event type, alone among good events."""
    wrong_values = [(name, value) for name, values in _WRONG_FIELDS.items()
                    for value in values]
    wrong_values += [(name, _MISSING) for name in GOOD]
    for name, value in wrong_values:
        event = dict(GOOD, type=kind)
        if value is _MISSING:
            event.pop(name)
        else:
            event[name] = value
        assert_both_paths_agree(json.dumps([GOOD, event, GOOD]).encode())


# --- hostile input: any bytes, any nesting, any number -----------------------------------------

_DEEP = 100_000  # far past any recursion limit: the decoders must not be asked to recurse


def _with_poison(poison: bytes) -> bytes:
    """Ten good events with one poisoned event (raw JSON text) in the middle."""
    good = [json.dumps(dict(GOOD, mac=f"00:16:3e:00:00:{index:02x}")).encode()
            for index in range(10)]
    return b"[" + b",".join(good[:5] + [poison] + good[5:]) + b"]"


def _event_text(**raw_fields: bytes) -> bytes:
    """A good event as JSON text with some fields replaced by raw JSON text."""
    fields = {name: json.dumps(value).encode() for name, value in GOOD.items()}
    fields.update(raw_fields)
    return b"{" + b",".join(b'"%s":%s' % (name.encode(), value)
                            for name, value in fields.items()) + b"}"


_POISONS: list[tuple[str, bytes, str]] = [
    ("ts 10**400", _event_text(ts=b"1" + b"0" * 400), "bad_field"),
    ("ts -10**400", _event_text(ts=b"-1" + b"0" * 400), "bad_field"),
    ("ts of 100,000 digits", _event_text(ts=b"9" * 100_000), "bad_field"),
    ("ts 10**30", _event_text(ts=b"1" + b"0" * 30), "bad_timestamp"),
    ("ts NaN", _event_text(ts=b"NaN"), "bad_field"),
    ("ts -Infinity", _event_text(ts=b"-Infinity"), "bad_field"),
    ("ts 1e400", _event_text(ts=b"1e400"), "bad_field"),
    ("v 10**5000", _event_text(v=b"1" + b"0" * 5000), "bad_field"),
    ("rssi -10**400", _event_text(rssi=b"-1" + b"0" * 400), "bad_field"),
    ("deep unknown field", _event_text(x=b"[" * _DEEP + b"]" * _DEEP), "bad_field"),
    ("deep object field", _event_text(x=b'{"a":' * _DEEP + b"1" + b"}" * _DEEP), "bad_field"),
    ("deep event", b"[" * _DEEP + b"]" * _DEEP, "bad_field"),
]


@pytest.mark.parametrize(("poison", "reason"), [(p, r) for _n, p, r in _POISONS],
                         ids=[name for name, _p, _r in _POISONS])
def test_one_poisoned_event_is_dead_lettered_alone(poison: bytes, reason: str) -> None:
    """10 good + 1 poisoned: 10 events, 1 reject with its reason, the same on both paths."""
    body = _with_poison(poison)
    for method in (make_parser().parse, make_parser().parse_checked):
        result = method(TOPIC, body, NOW)
        assert len(result.events) == 10
        assert [(r.reason, r.count) for r in result.rejects] == [(reason, 1)]
        assert len(dead_letter_payload(Pseudonymizer(KEY), result.rejects[0].sample)) <= 4096
    assert_both_paths_agree(body)


def test_a_nested_unknown_field_within_the_limit_is_ignored() -> None:
    """Forward compatible: an unknown field nested 31 levels is ignored, on both paths."""
    body = _with_poison(_event_text(x=b"[" * 31 + b"]" * 31))
    assert len(make_parser().parse(TOPIC, body, NOW).events) == 11
    assert_both_paths_agree(body)


def test_brackets_inside_strings_are_text_not_nesting() -> None:
    """An SSID of 32 opening brackets is an SSID: the event is kept, on both paths."""
    body = _with_poison(_event_text(ssid=b'"' + b"[" * 32 + b'"'))
    result = make_parser().parse(TOPIC, body, NOW)
    assert len(result.events) == 11 and result.events[5].ssid == "[" * 32
    assert_both_paths_agree(body)


@pytest.mark.parametrize("body", [
    b"[" * _DEEP + b"]" * _DEEP,
    b'{"v":' * _DEEP + b"1" + b"}" * _DEEP,
    b"[" * _DEEP,
    b"[" + b"1," * 1000 + b"[" * _DEEP,
    b'["' + b"[" * _DEEP + b'"]',
], ids=["deep array", "deep object", "unclosed", "unclosed after items", "brackets in a string"])
def test_whole_messages_nested_too_deep_are_refused_without_raising(body: bytes) -> None:
    """A message too deep to be one event, or not JSON at all, is one reject; nothing raises."""
    result = make_parser().parse(TOPIC, body, NOW)
    assert result.events == [] and result.rejected >= 1
    assert {r.reason for r in result.rejects} <= {"bad_field", "bad_json"}
    assert_both_paths_agree(body)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
_HOSTILE_NUMBERS = st.sampled_from([b"1" + b"0" * 400, b"-" + b"9" * 5000, b"NaN", b"Infinity",
                                    b"-Infinity", b"1e999", b"-0", b"0.0000001e-400"])


@st.composite
def _hostile_event(draw: st.DrawFn) -> bytes:
    """JSON text of a hostile event: any JSON value, a good event with a field of any value or
    a hostile number, or a value nested deeply."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return json.dumps(draw(_JSON_VALUES)).encode()
    name = draw(st.sampled_from([*GOOD, "extra"]))
    if choice == 1:
        return _event_text(**{name: json.dumps(draw(_JSON_VALUES)).encode()})
    if choice == 2:
        return _event_text(**{name: draw(_HOSTILE_NUMBERS)})
    depth = draw(st.integers(1, 3000))
    return _event_text(**{name: b"[" * depth + b"]" * depth})


@settings(max_examples=300, deadline=None)
@given(good=st.lists(st.sampled_from(["00:16:3e:00:00:01", "02:16:3e:00:00:02"]), max_size=4),
       hostile=st.lists(_hostile_event(), min_size=1, max_size=3), data=st.data())
def test_fuzzed_hostile_events_never_raise_and_never_take_good_events_with_them(
    good: list[str], hostile: list[bytes], data: st.DataObject
) -> None:
    """Good events mixed with hostile ones: every good event is kept, the rest are rejects."""
    items = [json.dumps(dict(GOOD, mac=mac)).encode() for mac in good]
    for poison in hostile:
        items.insert(data.draw(st.integers(0, len(items))), poison)
    body = b"[" + b",".join(items) + b"]"
    result = make_parser().parse(TOPIC, body, NOW)
    assert result.total == len(items)
    kept = [event.device for event in result.events]
    expected = [pseudonymize_mac(mac, KEY) for mac in good]
    assert all(device in kept for device in expected), body[:300]
    assert_both_paths_agree(body)
    for reject in result.rejects:
        dead_letter_payload(Pseudonymizer(KEY), reject.sample)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300) | st.text(max_size=100).map(str.encode)
       | _JSON_VALUES.map(lambda value: json.dumps(value).encode()),
       topic=st.sampled_from([TOPIC, "site/v1/ap/ap-9/events", "x"]))
def test_fuzzed_payloads_never_raise(body: bytes, topic: str) -> None:
    """Any bytes on any topic: a result with every problem as a reject, never an exception."""
    result = make_parser().parse(topic, body, NOW)
    assert result.total >= len(result.events)
    assert_both_paths_agree(body, topic)
    for reject in result.rejects:
        dead_letter_payload(Pseudonymizer(KEY), reject.sample)


def test_a_confirmed_envelope_carries_its_id_and_its_events() -> None:
    """{"v":1,"id":...,"events":[...]}: the events as if sent bare, and the id to confirm."""
    body = encode_envelope("boot7-42", json.dumps([GOOD, dict(GOOD, rssi="loud")]).encode())
    result = parse(body)
    assert result.message_id == "boot7-42"
    assert len(result.events) == 1 and [r.reason for r in result.rejects] == ["bad_field"]
    assert parse(encode_envelope("x", b"[]")).message_id == "x"  # an empty report is confirmed
    assert parse([GOOD]).message_id is None  # no envelope: accepted, never confirmed
    assert_both_paths_agree(body)


@pytest.mark.parametrize("deep", ["[" * 40 + "]" * 40, '{"a":' * 200 + "0" + "}" * 200])
def test_a_deep_event_inside_an_envelope_takes_no_good_event_with_it(deep: str) -> None:
    """Found by bench/parser_fuzz.py: nesting was counted from the envelope, so one deep event
    refused the whole envelope; now it is refused alone, as in a bare batch."""
    events = json.dumps([GOOD]).encode()[:-1] + b"," + deep.encode() + b"," + json.dumps(
        dict(GOOD, mac="02:16:3e:00:00:02")).encode() + b"]"
    for body in (encode_envelope("boot-1", events),
                 b'{"events":' + events + b',"id":"boot-1","v":1}',
                 encode_envelope("boot-1", b"[" + deep.encode() + b"]")):
        result = parse(body)
        assert result.message_id == "boot-1"
        assert [r.reason for r in result.rejects] == ["bad_field"]
        assert_both_paths_agree(body)
    assert len(parse(encode_envelope("boot-1", events)).events) == 2
    deep_id = b'{"v":1,"id":' + deep.encode() + b',"events":' + events + b"}"
    assert parse(deep_id).events == []  # an envelope field nested too deep: refused whole


@pytest.mark.parametrize(("envelope", "reason", "message_id"), [
    ({"v": 2, "id": "a", "events": [GOOD]}, "bad_version", "a"),
    ({"v": "1", "id": "a", "events": [GOOD]}, "bad_field", "a"),
    ({"v": 1, "id": "a/b", "events": [GOOD]}, "bad_field", None),
    ({"v": 1, "id": 7, "events": [GOOD]}, "bad_field", None),
    ({"v": 1, "id": "a", "events": GOOD}, "bad_field", "a"),
])
def test_a_broken_envelope_is_refused_whole_and_confirmed_when_its_id_is_readable(
    envelope: dict[str, Any], reason: str, message_id: str | None,
) -> None:
    """A bad envelope dead-letters its events; a readable id is still confirmed (handled)."""
    body = json.dumps(envelope).encode()
    result = parse(body)
    assert result.events == [] and [r.reason for r in result.rejects] == [reason]
    assert result.message_id == message_id
    assert_both_paths_agree(body)
