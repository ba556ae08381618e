"""Personal-data primitives: MAC pseudonyms, encryption of identities, names, phones; masking.

Everything that turns personal data into something safer to store lives here, so that the
rules (which key, which algorithm, how much is shown) are written once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from census.phones import canonical_phone

if TYPE_CHECKING:
    from census.settings import Settings

LOGGER = logging.getLogger(__name__)

_MAC_PATTERN = re.compile(r"\A[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}\Z")

PSEUDONYM_HEX_LENGTH = 16


class InvalidMacError(ValueError):
    """A string is not a MAC address."""


def normalize_mac(raw: str) -> str:
    """Return a MAC as lowercase, colon separated; raise InvalidMacError otherwise."""
    lowered = raw.strip().lower()
    if not _MAC_PATTERN.match(lowered):
        raise InvalidMacError(f"not a MAC address: {raw!r}")
    digits = lowered.replace(":", "").replace("-", "")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def is_locally_administered(mac: str) -> bool:
    """True for randomized ("private") addresses: bit 1 of the first octet is set."""
    return bool(int(mac[:2], 16) & 0x02)


def pseudonymize_mac(mac: str, key: str) -> str:
    """The device pseudonym: first 8 bytes of HMAC-SHA256(key, normalised MAC), as hex."""
    digest = hmac.new(key.encode("utf-8"), normalize_mac(mac).encode("ascii"), hashlib.sha256)
    return digest.hexdigest()[:PSEUDONYM_HEX_LENGTH]


class IdentityCipher:
    """Encrypts identity values at rest and derives a keyed lookup digest (blind index).

    Encryption uses the primary Fernet key; earlier keys stay readable (MultiFernet) until
    ``wifi-census keys rotate`` has re-encrypted everything under the primary. The digest has
    its own key (``digest_key``, 32 bytes as hex), so rotating the encryption key leaves every
    digest, and the watchlist that holds nothing else, valid. Without one the digest key is
    derived from the primary key, as before it could be set.
    """

    def __init__(self, fernet_key: str, previous_keys: Sequence[str] = (),
                 digest_key: str = "", previous_digest_keys: Sequence[str] = ()) -> None:
        if (previous_keys or previous_digest_keys) and not digest_key:
            # A derived digest key would follow the new primary and orphan every digest.
            raise ValueError("a digest key must be given while previous keys are")
        self._primary = Fernet(fernet_key.encode("ascii"))
        self._fernet = MultiFernet([self._primary,
                                    *(Fernet(key.encode("ascii")) for key in previous_keys)])
        # A derived blind-index key still differs from the encryption key, so the digest
        # column alone cannot be reversed by hashing the 10^8-ish space of plausible numbers.
        self._index_key = (bytes.fromhex(digest_key) if digest_key
                           else derived_digest_key(fernet_key))
        # Earlier digest keys are matched, never written, while `keys rotate --digest` moves
        # the stored digests to the primary one.
        self._index_keys = (self._index_key,
                            *(bytes.fromhex(key) for key in previous_digest_keys))

    @classmethod
    def from_settings(cls, settings: Settings) -> IdentityCipher:
        """The cipher the settings describe (primary, previous and digest keys)."""
        previous = [key for key in settings.identity_keys_previous.split(",") if key]
        previous_digests = [key for key in settings.digest_keys_previous.split(",") if key]
        return cls(settings.identity_key, previous, settings.digest_key, previous_digests)

    @property
    def rotating_digests(self) -> bool:
        """True while earlier digest keys are configured (stored digests may be under them)."""
        return len(self._index_keys) > 1

    def encrypt(self, plaintext: str) -> bytes:
        """Encrypt a value under the primary key (authenticated, random IV)."""
        return self._primary.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, token: bytes) -> str:
        """Decrypt a value; raise ValueError if no configured key opens it."""
        try:
            return self._fernet.decrypt(token).decode("utf-8")
        except InvalidToken:
            raise ValueError("identity value cannot be decrypted with the configured key") from None

    def is_current(self, token: bytes) -> bool:
        """True when a value is already encrypted under the primary key."""
        try:
            self._primary.decrypt(token)
        except InvalidToken:
            return False
        return True

    def rotate(self, token: bytes) -> bytes:
        """The same value encrypted under the primary key; ValueError if no key opens it."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise ValueError("identity value cannot be decrypted with the configured key") from None

    def digest(self, id_type: str, number: str) -> str:
        """A keyed digest of (type, number) for finding a resident without decrypting."""
        return self.digests(id_type, number)[0]

    def digests(self, id_type: str, number: str) -> tuple[str, ...]:
        """The digest of (type, number) under every configured digest key, primary first
        (what a lookup matches while a digest rotation runs)."""
        return self._all(f"{id_type}\x00{normalize_id_number(number)}")

    def name_digest(self, name: str) -> str:
        """A keyed digest of a name in its comparable form (exact search, sign-in matching)."""
        return self.name_digests(name)[0]

    def name_digests(self, name: str) -> tuple[str, ...]:
        """A name's digest under every configured digest key, primary first."""
        # The "name" prefix keeps it apart from the identity digests (whose prefixes are
        # document types) under the same key.
        return self._all(f"name\x00{name_match_key(name)}")

    def phone_digest(self, phone: str) -> str:
        """A keyed digest of a phone number in E.164 (empty for no number)."""
        return self.phone_digests(phone)[0]

    def phone_digests(self, phone: str) -> tuple[str, ...]:
        """A phone's digest under every configured digest key, primary first (("",) for none)."""
        canonical = canonical_phone(phone) if phone.strip() else ""
        return self._all(f"phone\x00{canonical}") if canonical else ("",)

    def _e164_digest(self, canonical: str) -> str:
        """The digest of a number already in its canonical form (empty for none)."""
        return self._all(f"phone\x00{canonical}")[0] if canonical else ""

    def _all(self, message: str) -> tuple[str, ...]:
        """HMAC-SHA256 of a message under each digest key, primary first."""
        data = message.encode()
        return tuple(hmac.new(key, data, hashlib.sha256).hexdigest() for key in self._index_keys)

    def person_columns(self, name: str | None, phone: str | None) -> dict[str, bytes | str | None]:
        """The stored form of a name and a phone: encrypted, with their lookup digests.

        Used for residents and sign-ins alike, so both tables hold the same four columns.
        The phone is kept in E.164 (as written when it does not parse), no phone as None.
        """
        canonical = canonical_phone(phone) if phone and phone.strip() else ""
        return {
            "name_encrypted": self.encrypt(name) if name else None,
            "name_digest": self.name_digest(name) if name else "",
            "phone_encrypted": self.encrypt(canonical) if canonical else None,
            "phone_digest": self._e164_digest(canonical),
        }

    def reveal(self, token: bytes | None) -> str:
        """Decrypt an optional value: empty for none, "?" (logged) when no key opens it."""
        if not token:
            return ""
        try:
            return self.decrypt(token)
        except ValueError:
            LOGGER.error("a stored personal value cannot be decrypted with the configured keys")
            return "?"


def name_match_key(name: str) -> str:
    """A name as compared: Unicode folded, no spacing, middle dots or hyphens, no case."""
    cleaned = " ".join(unicodedata.normalize("NFKC", name).split())
    return re.sub(r"[\s·•.\-']", "", cleaned).casefold()


def derived_digest_key(fernet_key: str) -> bytes:
    """The digest key of a deployment that never set one: derived from its identity key."""
    return hashlib.sha256(b"wifi-census blind index\x00" + fernet_key.encode()).digest()


def normalize_id_number(number: str) -> str:
    """Identity numbers are compared without spaces and in upper case (the X check digit)."""
    return re.sub(r"\s+", "", number).upper()


def mask_id_number(number: str) -> str:
    """Show only the first and last characters of an identity number: 1201**********123X."""
    cleaned = normalize_id_number(number)
    if len(cleaned) <= 4:
        return "*" * len(cleaned)
    keep_head = 4 if len(cleaned) >= 15 else 1
    return cleaned[:keep_head] + "*" * (len(cleaned) - keep_head - 4) + cleaned[-4:]


def mask_phone(phone: str) -> str:
    """Show a phone number as 138****1234 (a mainland number in E.164 as its national form)."""
    if phone.startswith("+86") and len(phone) == 14:
        phone = phone[3:]
    if len(phone) < 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_name(name: str) -> str:
    """Show a name as its first character and stars (张**, J***)."""
    if not name:
        return ""
    return name[0] + "*" * max(1, len(name) - 1)


# GB 11643-1999: weights for the first 17 digits and the check characters by sum mod 11.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def resident_id_check_character(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits of a resident ID number."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def resident_id_problem(number: str) -> str | None:
    """Why a mainland resident ID number is invalid, or None when it is valid."""
    cleaned = normalize_id_number(number)
    if len(cleaned) != 18:
        return "must be 18 characters"
    if not cleaned[:17].isdigit() or not (cleaned[17].isdigit() or cleaned[17] == "X"):
        return "must be 17 digits followed by a digit or X"
    year, month, day = int(cleaned[6:10]), int(cleaned[10:12]), int(cleaned[12:14])
    try:
        born = dt.date(year, month, day)
    except ValueError:
        return "contains an impossible birth date"
    if born.year < 1900 or born > dt.date.today():
        return "contains an impossible birth date"
    if resident_id_check_character(cleaned[:17]) != cleaned[17]:
        return "check digit does not match (GB 11643)"
    return None
