"""Fuzzing what a resident's side accepts: hand-overs, numbers, names, ID numbers.

Whatever comes in, the answer is a value or the module's own refusal, never another exception
(a 500). Brief runs here; issue #11 asks for long ones in bench/.
"""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from census.handshake import (
    REDIRECT_FIELDS,
    Handshake,
    HandshakeError,
    encode_fas_parameter,
    parse_fas,
    redirect_signature,
    verify_signed_redirect,
)
from census.phones import canonical_phone, mobile_e164
from portal.identity import id_number_problem, name_problem
from registry.models import IdType

KEY = "k" * 40
NOW = 1_764_000_000.0
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")

VALID = {"ap": "ap-1", "mac": "a4:83:e7:12:9f:01", "ip": "10.0.0.2", "gw": "10.0.0.1:2050",
         "url": "http://example.com/", "ts": str(int(NOW)), "nonce": "0123456789abcdef"}
# A valid redirect with some fields replaced by arbitrary text or long digit strings, so that
# runs reach every check (the signature first, then the clock).
_VALUE = st.one_of(st.text(max_size=80), st.from_regex(r"\A-?[0-9]{1,400}\Z"),
                   st.integers(1, 400).map(lambda n: "9" * n))


@settings(max_examples=300, deadline=None)
@example(changes={"ts": "9" * 400}, signed=True, drop=None)  # was a 500 (issue #11 defect 9)
@given(changes=st.dictionaries(st.sampled_from(REDIRECT_FIELDS), _VALUE, max_size=3),
       signed=st.booleans(), drop=st.sampled_from((None, *REDIRECT_FIELDS, "sig")))
def test_a_signed_redirect_is_accepted_or_refused_never_crashes(
        changes: dict[str, str], signed: bool, drop: str | None) -> None:
    """Correctly signed (a hostile AP) or not: a Handshake or a HandshakeError."""
    values = VALID | changes
    args = dict(values)
    args["sig"] = redirect_signature(KEY, values) if signed else "0" * 64
    if drop is not None:
        del args[drop]
    try:
        result = verify_signed_redirect(args, lambda ap: KEY if ap == "ap-1" else None, 300,
                                        now=NOW)
    except HandshakeError:
        return
    assert isinstance(result, Handshake)


_FAS_FIELDS = st.dictionaries(
    st.sampled_from(("clientip", "clientmac", "gatewayname", "hid", "gatewayaddress",
                     "authdir", "originurl", "redir", "tok", "x")),
    # A lone surrogate cannot reach the portal (openNDS encodes UTF-8, Werkzeug decodes
    # with replacement), and the test's own encoder could not write it.
    st.one_of(st.text(alphabet=st.characters(blacklist_characters=",",
                                             blacklist_categories=("Cs",)), max_size=80),
              st.just("ap-1"), st.just("192.168.8.1:2050"), st.just("a" * 64)))


@settings(max_examples=200, deadline=None)
@given(fields=_FAS_FIELDS, raw=st.one_of(st.none(), st.text(max_size=200)))
def test_a_fas_hand_over_is_accepted_or_refused_never_crashes(
        fields: dict[str, str], raw: str | None) -> None:
    """Encoded as openNDS does, as plain parameters, or any text as fas=."""
    gateways = {"ap-1": "192.168.8.1:2050"}.get
    for args in ({"fas": encode_fas_parameter(fields)}, fields,
                 {"fas": raw} if raw is not None else {}):
        try:
            assert isinstance(parse_fas(args, gateways), Handshake)
        except HandshakeError:
            pass


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.text(max_size=40),
                     st.from_regex(r"\A[+0０-９ ]{0,3}[0-9０-９٠-٩ \-()]{5,20}\Z")))
def test_a_phone_number_is_e164_with_ascii_digits_or_nothing(raw: str) -> None:
    """Whatever is typed: None, or E.164 with ASCII digits; canonical_phone never raises."""
    result = mobile_e164(raw, ("CN", "HK"))
    assert result is None or E164.match(result)
    canonical_phone(raw)


@settings(max_examples=300, deadline=None)
@given(raw=st.text(max_size=100), id_type=st.sampled_from([t.value for t in IdType]))
def test_names_and_id_numbers_get_an_answer_never_an_exception(raw: str, id_type: str) -> None:
    """The form's checks return a problem code or None for any text."""
    assert name_problem(raw) in (None, "name_required", "name_invalid")
    assert id_number_problem(id_type, raw) is None or isinstance(
        id_number_problem(id_type, raw), str)
