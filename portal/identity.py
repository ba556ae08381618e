"""Identity documents, names and phone numbers: checking what a resident typed, and matching it.

The checks are pure functions returning a problem code (translated by the form layer) or None.
Matching against the registry and the watchlist happens only after the phone number has been
verified, and every outcome looks the same to the resident: the portal never says whether an
identity is registered, mismatched or on the watchlist.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import String, bindparam, literal_column, select
from sqlalchemy.orm import Session

from census.phones import mobile_e164
from census.privacy import (
    IdentityCipher,
    name_match_key,
    normalize_id_number,
    resident_id_problem,
)
from registry.models import IdType, Resident, WatchlistEntry

# Regions whose mobiles receive codes unless settings say otherwise.
DEFAULT_SMS_REGIONS = ("CN",)
OTHER_ID_PATTERN = re.compile(r"\A[A-Z0-9]{5,20}\Z")
# Letters of any script, spaces, the middle dot of minority and transliterated names (·, •),
# and the punctuation of foreign names.
NAME_PATTERN = re.compile(r"\A[^\W\d_]+(?:[ ·•.'\-][^\W\d_]+)*\.?\Z")
MAX_NAME_LENGTH = 60
# Characters that are letters to the regex but show as nothing: Hangul fillers (U+3164 alone
# passed as a name), other default-ignorable code points, variation selectors, bidi controls.
INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")

# resident_id_problem() phrases -> problem codes the form layer translates.
_ID_CARD_PROBLEMS = {
    "must be 18 characters": "id_length",
    "must be 17 digits followed by a digit or X": "id_characters",
    "contains an impossible birth date": "id_birth_date",
    "check digit does not match (GB 11643)": "id_checksum",
}


def clean_name(raw: str) -> str:
    """A name with Unicode normalised (full-width letters folded) and spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", raw).split())


def name_problem(raw: str) -> str | None:
    """Why a name cannot be a person's name, or None."""
    name = clean_name(raw)
    if not name:
        return "name_required"
    if len(name) > MAX_NAME_LENGTH or INVISIBLE.search(name) or not NAME_PATTERN.match(name):
        return "name_invalid"
    return None


def same_name(a: str, b: str) -> bool:
    """Names compared without case, spacing or middle-dot differences."""
    return name_match_key(a) == name_match_key(b)


def clean_phone(raw: str, regions: Collection[str] = DEFAULT_SMS_REGIONS) -> str:
    """A mobile number in E.164 with ASCII digits (empty when it is not one we send to)."""
    return mobile_e164(raw, regions) or ""


def phone_problem(raw: str, regions: Collection[str] = DEFAULT_SMS_REGIONS) -> str | None:
    """Why a phone number cannot receive our SMS, or None (mainland mobiles by their real
    pattern; other countries only when WIFI_CENSUS_PORTAL_SMS_REGIONS lists them)."""
    if not unicodedata.normalize("NFKC", raw).strip():
        return "phone_required"
    if mobile_e164(raw, regions) is None:
        return "phone_invalid"
    return None


def id_number_problem(id_type: str, raw: str) -> str | None:
    """Why an identity number is not valid for its document type, or None."""
    number = normalize_id_number(unicodedata.normalize("NFKC", raw))
    if not number:
        return "id_required"
    if id_type == IdType.RESIDENT_ID_CARD.value:
        problem = resident_id_problem(number)
        return _ID_CARD_PROBLEMS.get(problem, "id_invalid") if problem else None
    if not OTHER_ID_PATTERN.match(number):
        return "id_other_invalid"
    return None


def clean_id_number(raw: str) -> str:
    """The stored form of an identity number."""
    return normalize_id_number(unicodedata.normalize("NFKC", raw))


@dataclass(frozen=True, slots=True)
class DeclaredIdentity:
    """What the resident typed, checked and cleaned."""

    name: str
    id_type: str
    id_number: str
    phone: str
    unit_id: int | None
    consent_version: str

    def to_dict(self) -> dict[str, Any]:
        """As a JSON-able dict (kept encrypted in Redis while the code is pending)."""
        return asdict(self)

    def binding_parts(self) -> tuple[str, ...]:
        """Every field, as text in a fixed order: what a one-time code is bound to."""
        return (self.name, self.id_type, self.id_number, self.phone,
                "" if self.unit_id is None else str(self.unit_id), self.consent_version)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeclaredIdentity:
        """Back from to_dict()."""
        return cls(**data)


@dataclass(frozen=True, slots=True)
class RegistryPerson:
    """The registry's resident holding a declared identity: what a sign-in needs of them."""

    id: int
    unit_id: int
    has_phone: bool  # a phone is on file (its digest; the number itself stays encrypted)
    move_out: dt.date | None


@dataclass(frozen=True, slots=True)
class WatchHit:
    """The watchlist entry of a declared identity."""

    id: int
    reason: str


@dataclass(frozen=True, slots=True)
class IdentityMatch:
    """What the registry says about a declared identity."""

    digest: str
    resident: RegistryPerson | None  # the registry's person with this identity, if any
    name_ok: bool
    phone_ok: bool
    moved_out: bool
    watchlist: WatchHit | None

    @property
    def registered(self) -> bool:
        """The identity is a current resident and the name and phone agree."""
        return (self.resident is not None and self.name_ok and self.phone_ok
                and not self.moved_out)

    @property
    def unconfirmed(self) -> bool:
        """A current resident whose name agrees but who has no phone on file to check against."""
        return (self.resident is not None and self.name_ok and not self.resident.has_phone
                and not self.moved_out)


_RESIDENTS = Resident.metadata.tables[Resident.__tablename__]
_WATCHLIST = WatchlistEntry.metadata.tables[WatchlistEntry.__tablename__]
# Both lookups in one statement, built once: a one-row query outer-joined to the residents and
# to the watchlist by the identity's digests (one per configured digest key: while a digest
# rotation runs a row may still hold the old key's). Each identity has at most one row in each.
_ONE = select(literal_column("1").label("one")).subquery()
_DIGESTS = bindparam("digests", type_=String, expanding=True)
_MATCH = (
    select(_RESIDENTS.c.id, _RESIDENTS.c.unit_id, _RESIDENTS.c.name_digest,
           _RESIDENTS.c.phone_digest,
           _RESIDENTS.c.move_out, _WATCHLIST.c.id.label("watch_id"), _WATCHLIST.c.reason)
    .select_from(_ONE
                 .outerjoin(_RESIDENTS, _RESIDENTS.c.id_digest.in_(_DIGESTS))
                 .outerjoin(_WATCHLIST, _WATCHLIST.c.id_digest.in_(_DIGESTS)))
)


def match_identity(session: Session, cipher: IdentityCipher, declared: DeclaredIdentity,
                   today: dt.date) -> IdentityMatch:
    """Look the identity up in the registry and the watchlist (by keyed digests only: the
    name and phone are compared as digests too, nothing is decrypted)."""
    digests = cipher.digests(declared.id_type, declared.id_number)
    row = session.connection().execute(_MATCH, {"digests": list(digests)}).first()
    assert row is not None  # the one-row query always answers
    digest = digests[0]  # what a new row is stored under: the primary key's
    watch = WatchHit(row.watch_id, row.reason) if row.watch_id is not None else None
    if row.id is None:
        return IdentityMatch(digest, None, False, False, False, watch)
    resident = RegistryPerson(row.id, row.unit_id, bool(row.phone_digest), row.move_out)
    moved_out = resident.move_out is not None and resident.move_out <= today
    # The verified phone must be the one on file, or anybody who knows a neighbour's name and
    # ID number could sign in as them. No phone on file proves nothing: the number becomes the
    # resident's only by staff confirmation or the registry import (issue #11 defect 3).
    phone_ok = bool(row.phone_digest) and row.phone_digest in cipher.phone_digests(declared.phone)
    name_ok = row.name_digest in cipher.name_digests(declared.name)
    return IdentityMatch(digest, resident, name_ok, phone_ok,
                         moved_out, watch)
