"""The on-disk spool: line-protocol batches kept while InfluxDB cannot take them.

Each batch is one file, written to a temporary name, fsynced and renamed, so a file in the
spool is always complete (a crash leaves at most a ``.tmp`` that is removed at start). Files
are named ``<sequence>-<points>.lp`` so the depth (presence points; the batch's heartbeat lines
are not counted) is known without reading them. Draining writes
a file and then deletes it; a crash in between writes it again, which is harmless because the
points are idempotent (contracts, section 6).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

LOGGER = logging.getLogger(__name__)

_NAME = re.compile(r"\A(\d{12})-(\d+)\.lp\Z")


@dataclass(frozen=True, slots=True)
class SpoolFile:
    """One spooled batch."""

    path: Path
    sequence: int
    points: int


class Spool:
    """A folder of spooled line-protocol batches, oldest first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.tmp"):
            leftover.unlink(missing_ok=True)  # an interrupted append: its batch was never acked
        self._files: list[SpoolFile] = sorted(self._scan(), key=lambda f: f.sequence)
        self._next = (self._files[-1].sequence + 1) if self._files else 1
        self.depth = sum(f.points for f in self._files)
        if self._files:
            LOGGER.warning("spool %s holds %d points in %d files from an earlier run",
                           directory, self.depth, len(self._files))

    def _scan(self) -> list[SpoolFile]:
        """The spool files present on disk."""
        found = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match:
                found.append(SpoolFile(path, int(match.group(1)), int(match.group(2))))
        return found

    @property
    def files(self) -> int:
        """How many batches wait in the spool."""
        return len(self._files)

    def append(self, lines: list[str], points: int | None = None) -> SpoolFile:
        """Store a batch durably (fsync of the file and the folder) before returning.

        ``points`` is what the batch counts for in the depth (default: every line).
        """
        sequence = self._next
        points = len(lines) if points is None else points
        final = self.directory / f"{sequence:012d}-{points}.lp"
        temporary = final.with_suffix(".tmp")
        data = "\n".join(lines).encode("utf-8")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(descriptor, view)  # may write less than asked
                view = view[written:]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, final)
        self._fsync_directory()
        self._next += 1
        spooled = SpoolFile(final, sequence, points)
        self._files.append(spooled)
        self.depth += spooled.points
        return spooled

    def oldest(self) -> SpoolFile | None:
        """The batch to drain next."""
        return self._files[0] if self._files else None

    @staticmethod
    def read(spooled: SpoolFile) -> list[str]:
        """The lines of a spooled batch."""
        return spooled.path.read_text(encoding="utf-8").split("\n")

    def remove(self, spooled: SpoolFile) -> None:
        """Forget a batch once InfluxDB has it."""
        spooled.path.unlink(missing_ok=True)
        self._files.remove(spooled)
        self.depth -= spooled.points

    def _fsync_directory(self) -> None:
        """Make the rename durable."""
        descriptor = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
