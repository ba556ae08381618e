"""Fuzzing the AP command verifier and the command log's reader (issue #11; contracts §4).

Whatever arrives on a command or answer topic, the answer is a command, an answer, or the
contract's refusal word, never another exception; and no spoilt copy of a signed command is
accepted. Brief runs here; bench/command_fuzz.py runs 100,000 inputs of each.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from census.commands import CommandError, parse_ack, parse_command
from tests.common import (
    FUZZ_COMMAND_AP,
    ack_payloads,
    check_ack,
    check_command,
    command_payloads,
    fuzz_command,
)

FAST = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _with(**changes: object) -> bytes:
    """The signed command with fields changed (not signed again)."""
    return json.dumps({**fuzz_command(), **changes}).encode()


@FAST
@given(command_payloads())
@example(_with(nonce="9c1d4e0b7a2f6e31\n"))  # "$" let a trailing newline through
@example(_with(v=True))  # true == 1 in Python
@example(_with(issued=10**20))  # the command log's timestamp of it raised OverflowError
@example(b'{"v":' + b"7" * 5000 + b"}")  # int() of 5,000 digits raised ValueError
@example(b"[" * 100_000 + b"]" * 100_000)  # RecursionError
def test_the_verifier_answers_every_payload_with_a_command_or_a_refusal(payload: bytes) -> None:
    """Only CommandError; an accepted command is the signed one, field for field."""
    check_command(payload)


@FAST
@given(ack_payloads(), st.sampled_from([f"census/v1/ap/{FUZZ_COMMAND_AP}/cmd/ack",
                                        f"census/v1/ap/{FUZZ_COMMAND_AP}/cmd"]))
@example(b'{"v":1,"nonce":"' + b"7" * 5000 + b'"}', f"census/v1/ap/{FUZZ_COMMAND_AP}/cmd/ack")
@example(b'{"v":1,"nonce":"9c1d4e0b7a2f6e31","ok":false,"error":"expired\\n"}',
         f"census/v1/ap/{FUZZ_COMMAND_AP}/cmd/ack")
def test_the_command_log_reads_every_message_or_refuses_it(payload: bytes, topic: str) -> None:
    """The log service's reader: an answer, a command, or CommandError."""
    check_ack(topic, payload)


@pytest.mark.parametrize(("payload", "reason"), [
    (_with(nonce="9c1d4e0b7a2f6e31\n"), "bad_field"),
    (_with(v=True), "bad_version"),
    (_with(v=1.0), "bad_version"),
    (_with(issued=10**20), "bad_field"),
    (_with(expires=-1), "bad_field"),
    (_with(session_seconds=2**40), "bad_field"),
    (b'{"v":' + b"7" * 5000 + b"}", "bad_json"),
    (b"[" * 100_000 + b"]" * 100_000, "bad_json"),
])
def test_what_the_fuzzer_found_is_refused_by_name(payload: bytes, reason: str) -> None:
    """Each defect the fuzzer found, refused with the contract's word (it raised or passed)."""
    with pytest.raises(CommandError) as caught:
        parse_command(payload)
    assert caught.value.reason == reason
    assert len(str(caught.value)) <= 240  # a refusal quotes at most 200 characters of it


def test_an_answer_with_a_newline_after_its_word_is_refused() -> None:
    """parse_ack's error word and nonce are whole-string matches."""
    for payload in (b'{"v":1,"nonce":"9c1d4e0b7a2f6e31","ok":false,"error":"expired\\n"}',
                    b'{"v":1,"nonce":"9c1d4e0b7a2f6e31\\n","ok":true,"error":""}'):
        with pytest.raises(CommandError, match="bad_field"):
            parse_ack(payload)
