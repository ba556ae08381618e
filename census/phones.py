"""Phone numbers in one canonical form: E.164 with ASCII digits, through Google's libphonenumber.

Every way of writing one number (``138 0013 8000``, ``+86 138…``, ``0086…``, ``+0086…``,
``+860138…``, full-width digits) becomes the same ``+8613800138000``, so that a limit keyed on a
number cannot be dodged by writing it differently. Digits of other scripts (Arabic-Indic,
Devanagari, ...) are refused rather than folded: nobody in a captive portal types them by
accident, and an SMS gateway may read them differently from us.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

# Numbers written without a country code are mainland numbers.
DEFAULT_REGION = "CN"
# After NFKC (full-width folded): an optional plus, then ASCII digits and the separators people
# type. Anything else (letters, other scripts' digits, a second plus) is not a phone number.
_TYPED = re.compile(r"\A\+?[0-9][0-9 ()\-.]{0,39}\Z")
_MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def _parse(raw: str) -> phonenumbers.PhoneNumber | None:
    """The parsed number when the text is ASCII digits and separators, else None."""
    text = unicodedata.normalize("NFKC", raw).strip()
    if not _TYPED.match(text):
        return None
    try:
        return phonenumbers.parse(text, DEFAULT_REGION)
    except NumberParseException:
        return None


def mobile_e164(raw: str, regions: Collection[str]) -> str | None:
    """The E.164 form of a valid mobile number of one of the regions (ISO codes), else None."""
    number = _parse(raw)
    if number is None or not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.region_code_for_number(number) not in regions:
        return None
    if phonenumbers.number_type(number) not in _MOBILE:
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def canonical_phone(raw: str) -> str:
    """Any stored number (registry import, sign-in) in E.164 for comparing; unparseable text
    comes back stripped, so that it still equals only itself."""
    number = _parse(raw)
    if number is None or not phonenumbers.is_possible_number(number):
        return raw.strip()
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def same_phone(a: str, b: str) -> bool:
    """Two stored numbers are the same number (an empty one is nobody's)."""
    return bool(a.strip()) and bool(b.strip()) and canonical_phone(a) == canonical_phone(b)
