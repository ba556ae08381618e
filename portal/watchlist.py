"""Importing the watchlist: identities matched by keyed digests, kept encrypted, never in clear.

CSV with a header ``id_type,id_number,reason`` (UTF-8, a byte-order mark accepted). Each row is
checked on its own; a bad row is reported with its line number (the header is line 1) and
skipped. Importing the same file twice changes nothing. The encrypted number lets `wifi-census
keys rotate --digest` digest the entry under a new key; an entry from before it was kept gets
it when the list is imported again.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from census.privacy import IdentityCipher
from portal.audit import record
from portal.identity import clean_id_number, id_number_problem
from registry.db import session_scope
from registry.models import IdType, WatchlistEntry

COLUMNS = ("id_type", "id_number", "reason")
MAX_REASON = 200


class WatchlistFileError(ValueError):
    """The file as a whole cannot be read (header, encoding)."""


@dataclass
class WatchlistReport:
    """What an import did."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def import_watchlist(path: Path, session_factory: sessionmaker[Session], cipher: IdentityCipher,
                     actor: str = "cli") -> WatchlistReport:
    """Import a watchlist CSV; return counts and the rejected lines."""
    report = WatchlistReport()
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            extra = [h for h in header if h not in COLUMNS]
            missing = [c for c in COLUMNS if c not in header]
            if extra or missing:
                raise WatchlistFileError(
                    f"{path.name}: header must be {','.join(COLUMNS)}"
                    + (f"; unknown column(s) {', '.join(extra)}" if extra else "")
                    + (f"; missing {', '.join(missing)}" if missing else "")
                )
            entries: dict[str, tuple[int, str, str, str]] = {}
            for line, values in enumerate(reader, start=2):
                if not any(v.strip() for v in values):
                    continue
                report.rows += 1
                if len(values) != len(header):
                    report.errors.append((line, f"has {len(values)} fields, the header has "
                                                f"{len(header)}"))
                    continue
                row = dict(zip(header, values, strict=True))
                id_type = row["id_type"].strip()
                if id_type not in {t.value for t in IdType}:
                    report.errors.append((line, f"id_type {id_type!r} is not one of "
                                                f"{', '.join(t.value for t in IdType)}"))
                    continue
                problem = id_number_problem(id_type, row["id_number"])
                if problem:
                    report.errors.append((line, f"id_number is not valid ({problem})"))
                    continue
                reason = row["reason"].strip()
                if len(reason) > MAX_REASON:
                    report.errors.append((line, f"reason is longer than {MAX_REASON} characters"))
                    continue
                number = clean_id_number(row["id_number"])
                digest = cipher.digest(id_type, number)
                if digest in entries:
                    report.errors.append((line, f"duplicate of line {entries[digest][0]}"))
                    continue
                entries[digest] = (line, reason, id_type, number)
    except UnicodeDecodeError as error:
        raise WatchlistFileError(f"{path.name}: not UTF-8 ({error.reason})") from None
    # An entry is found under any configured digest key (a digest rotation may be running).
    primary_of = {any_key: digest for digest, (_l, _r, id_type, number) in entries.items()
                  for any_key in cipher.digests(id_type, number)}
    with session_scope(session_factory) as session:
        existing = {primary_of[e.id_digest]: e for e in session.scalars(
            select(WatchlistEntry).where(WatchlistEntry.id_digest.in_(list(primary_of))))}
        for digest, (_line, reason, id_type, number) in entries.items():
            entry = existing.get(digest)
            if entry is None:
                session.add(WatchlistEntry(id_digest=digest, reason=reason, id_type=id_type,
                                           id_number_encrypted=cipher.encrypt(number)))
                report.created += 1
                continue
            changed = entry.reason != reason
            entry.reason = reason
            if entry.id_number_encrypted is None or entry.id_digest != digest:
                # Kept as a digest only (imported before), or under an earlier digest key.
                entry.id_type, entry.id_digest = id_type, digest
                entry.id_number_encrypted = cipher.encrypt(number)
                changed = True
            if changed:
                report.updated += 1
            else:
                report.unchanged += 1
        record(session, actor, "import_watchlist", path.name,
               {"rows": report.rows, "created": report.created, "updated": report.updated,
                "unchanged": report.unchanged, "rejected": len(report.errors)})
    return report
