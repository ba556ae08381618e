"""Privacy primitives: MAC pseudonyms, identity encryption, masking, ID checksums."""

from __future__ import annotations

import pytest

from census.privacy import (
    IdentityCipher,
    InvalidMacError,
    is_locally_administered,
    mask_id_number,
    mask_name,
    mask_phone,
    normalize_mac,
    pseudonymize_mac,
    resident_id_check_character,
    resident_id_problem,
)
from census.settings import generate_keys


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("A4:83:E7:12:9F:01", "a4:83:e7:12:9f:01"),
        ("a4-83-e7-12-9f-01", "a4:83:e7:12:9f:01"),
        ("a483e7129f01", "a4:83:e7:12:9f:01"),
        (" A4:83:e7:12:9f:01 ", "a4:83:e7:12:9f:01"),
    ],
)
def test_mac_addresses_are_normalised(raw: str, normal: str) -> None:
    """Every accepted spelling becomes lowercase colon form."""
    assert normalize_mac(raw) == normal


@pytest.mark.parametrize(
    "raw", ["", "a4:83:e7:12:9f", "a4:83-e7:12:9f:01", "zz:83:e7:12:9f:01", "a4:83:e7:12:9f:01:02"]
)
def test_malformed_macs_are_refused(raw: str) -> None:
    """Anything that is not six octets is an InvalidMacError."""
    with pytest.raises(InvalidMacError):
        normalize_mac(raw)


def test_pseudonym_is_keyed_stable_and_spelling_blind() -> None:
    """Same key and MAC give the same 16-hex pseudonym; another key gives another."""
    key, other = "k" * 40, "j" * 40
    first = pseudonymize_mac("A4:83:E7:12:9F:01", key)
    assert first == pseudonymize_mac("a4-83-e7-12-9f-01", key)
    assert len(first) == 16 and int(first, 16) >= 0
    assert first != pseudonymize_mac("a4:83:e7:12:9f:01", other)


@pytest.mark.parametrize(
    ("mac", "randomized"),
    [
        ("a4:83:e7:12:9f:01", False),
        ("a6:83:e7:12:9f:01", True),
        ("02:00:00:00:00:01", True),
        ("da:a1:19:00:00:01", True),
        ("00:1a:2b:3c:4d:5e", False),
    ],
)
def test_locally_administered_bit(mac: str, randomized: bool) -> None:
    """Bit 1 of the first octet marks randomized addresses."""
    assert is_locally_administered(mac) is randomized


def test_identity_numbers_round_trip_and_digest_without_decrypting() -> None:
    """Encryption is randomised; the digest finds the same number in any spelling."""
    cipher = IdentityCipher(generate_keys()["identity_key"])
    token_a = cipher.encrypt("11010519491231002X")
    token_b = cipher.encrypt("11010519491231002X")
    assert token_a != token_b and b"11010519491231002X" not in token_a
    assert cipher.decrypt(token_a) == "11010519491231002X"
    assert cipher.digest("resident_id_card", "11010519491231002x") == cipher.digest(
        "resident_id_card", "110105 19491231002X"
    )
    assert cipher.digest("passport", "E1234567") != cipher.digest("other", "E1234567")


def test_decrypting_with_another_key_is_a_clear_error() -> None:
    """A wrong key is reported, not returned as garbage."""
    token = IdentityCipher(generate_keys()["identity_key"]).encrypt("E1234567")
    with pytest.raises(ValueError, match="cannot be decrypted"):
        IdentityCipher(generate_keys()["identity_key"]).decrypt(token)


def test_masks_show_only_what_staff_need() -> None:
    """ID numbers, phones and names are masked for display."""
    assert mask_id_number("11010519491231002X") == "1101**********002X"
    assert mask_id_number("E1234567") == "E***4567"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+8613812345678") == "138****5678"
    assert mask_name("张三丰") == "张**"


def test_gb11643_check_character_from_the_standard_example() -> None:
    """The standard's worked example 11010519491231002X has check character X."""
    assert resident_id_check_character("11010519491231002") == "X"
    assert resident_id_problem("11010519491231002X") is None
    assert resident_id_problem("11010519491231002x") is None


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("110105194912310021", "check digit does not match"),
        ("1101051949123100", "must be 18 characters"),
        ("11010519491331002X", "impossible birth date"),
        ("1101051949123100AX", "17 digits followed by"),
    ],
)
def test_gb11643_rejections(number: str, problem: str) -> None:
    """Wrong length, characters, dates and check digits are each explained."""
    assert problem in (resident_id_problem(number) or "")
