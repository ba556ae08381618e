"""What residents type: ID numbers (GB 11643), other documents, names, phone numbers."""

from __future__ import annotations

import pytest

from portal.identity import (
    clean_id_number,
    clean_phone,
    id_number_problem,
    name_problem,
    phone_problem,
    same_name,
)
from tests.common import ZHANG_ID, make_id

CARD = "resident_id_card"


@pytest.mark.parametrize(("number", "problem"), [
    (ZHANG_ID, None),
    ("11010519491231002X", None),  # the standard's own example, X check character
    ("11010519491231002x", None),  # lower-case x is the same character
    (" 1101 0519 4912 3100 2X ", None),  # spaces as people type them
    ("１１０１０５１９４９１２３１００２Ｘ", None),  # full-width digits from a Chinese keyboard
    ("110105194912310021", "id_checksum"),
    ("110105194912310029", "id_checksum"),
    (ZHANG_ID[:-1] + ("0" if ZHANG_ID[-1] != "0" else "1"), "id_checksum"),
    ("11010519491231002", "id_length"),
    ("1101051949123100211", "id_length"),
    ("11010519491231A02X", "id_characters"),
    (make_id("11010519491331002"), "id_birth_date"),  # month 13
    (make_id("11010518000101002"), "id_birth_date"),  # before 1900
    (make_id("11010530000101002"), "id_birth_date"),  # in the future
    ("", "id_required"),
])
def test_resident_id_card_numbers(number: str, problem: str | None) -> None:
    """Each way a mainland ID number can be wrong has its own message."""
    assert id_number_problem(CARD, number) == problem


@pytest.mark.parametrize(("id_type", "number", "problem"), [
    ("passport", "E12345678", None),
    ("passport", "e1234567", None),
    ("passport", "G1234", None),
    ("passport", "1234", "id_other_invalid"),
    ("passport", "E1234567890123456789X", "id_other_invalid"),
    ("passport", "E123-456", "id_other_invalid"),
    ("hk_macao_permit", "H12345678", None),
    ("foreign_permanent_id", "USA123456789012", None),
])
def test_other_documents(id_type: str, number: str, problem: str | None) -> None:
    """Passports and permits: 5 to 20 letters or digits, any case."""
    assert id_number_problem(id_type, number) == problem


def test_id_numbers_are_stored_cleaned() -> None:
    """Upper case, no spaces, half-width."""
    assert clean_id_number(" １１０１ 0519 4912 3100 2x") == "11010519491231002X"


@pytest.mark.parametrize(("name", "problem"), [
    ("张三", None), ("阿卜杜拉·买买提", None), ("John Smith", None), ("O'Brien", None),
    ("Jean-Luc Picard", None), ("", "name_required"), ("   ", "name_required"),
    ("张3", "name_invalid"), ("<script>", "name_invalid"), ("x" * 61, "name_invalid"),
])
def test_names(name: str, problem: str | None) -> None:
    """Letters of any script with the punctuation real names use."""
    assert name_problem(name) == problem


def test_names_compare_without_case_spacing_or_middle_dots() -> None:
    """The registry and the form may write the same name differently."""
    assert same_name("阿卜杜拉·买买提", "阿卜杜拉 买买提")
    assert same_name("john  SMITH", "John Smith")
    assert not same_name("张三", "张四")


@pytest.mark.parametrize(("phone", "problem", "clean"), [
    ("13800138000", None, "+8613800138000"), ("138 0013 8000", None, "+8613800138000"),
    ("+8613800138000", None, "+8613800138000"), ("+86 138-0013-8000", None, "+8613800138000"),
    ("１３８００１３８０００", None, "+8613800138000"),  # full-width, from a Chinese keyboard
    ("008613800138000", None, "+8613800138000"),
    ("+008613800138000", None, "+8613800138000"),  # the same number, not a new one
    ("+0086 13800138000", None, "+8613800138000"),
    ("+86013800138000", None, "+8613800138000"),
    ("+860 13800138000", None, "+8613800138000"),
    ("19912345678", None, "+8619912345678"),
    ("١٣٨٠٠١٣٨٠٠٠", "phone_invalid", ""),  # Arabic-Indic digits: refused, not folded
    ("१३८००१३८०००", "phone_invalid", ""),  # Devanagari digits
    ("+86１38００138000\u0660", "phone_invalid", ""),
    ("12800138000", "phone_invalid", ""), ("1380013800", "phone_invalid", ""),
    ("12345678901", "phone_invalid", ""),  # 11 digits, but no mainland mobile range
    ("02188888888", "phone_invalid", ""),  # a Shanghai landline cannot get an SMS
    ("10086", "phone_invalid", ""),
    ("+447911123456", "phone_invalid", ""),  # a UK mobile: not a configured region
    ("+85291234567", "phone_invalid", ""),  # Hong Kong: not configured by default
    ("13800138000x", "phone_invalid", ""), ("+86+13800138000", "phone_invalid", ""),
    ("", "phone_required", ""),
])
def test_phone_numbers(phone: str, problem: str | None, clean: str) -> None:
    """Defect 4: mainland mobiles by their real ranges, one E.164 form per number, ASCII
    digits only; other countries only when configured."""
    assert phone_problem(phone) == problem
    assert clean_phone(phone) == clean


def test_other_regions_only_when_configured() -> None:
    """WIFI_CENSUS_PORTAL_SMS_REGIONS=CN,HK lets Hong Kong mobiles in, still not the UK."""
    assert clean_phone("+852 9123 4567", ("CN", "HK")) == "+85291234567"
    assert phone_problem("+447911123456", ("CN", "HK")) == "phone_invalid"
