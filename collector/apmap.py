"""The AP -> community/building/floor/unit map, read from the registry and kept fresh.

The whole map is loaded at once (a district has tens of thousands of APs: a few MB) and
reloaded when the registry's change counter (``registry_version``) moves; the counter is
polled, and also checked early when an unknown AP shows up (it may just have been imported).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from collector.parser import ApLocation
from registry.db import registry_version
from registry.models import AccessPoint, Building, Community, Coverage, Unit

LOGGER = logging.getLogger(__name__)

# An unknown AP triggers an early version check at most this often.
UNKNOWN_AP_RECHECK_S = 5.0


def load_locations(session: Session) -> dict[str, ApLocation]:
    """Every AP in the registry with its location tags."""
    statement = (
        select(
            AccessPoint.ap_id, AccessPoint.coverage, AccessPoint.floor,
            Community.code, Building.code, Unit.ref, Unit.floor,
        )
        .join(Building, AccessPoint.building_id == Building.id)
        .join(Community, Building.community_id == Community.id)
        .outerjoin(Unit, AccessPoint.unit_id == Unit.id)
    )
    locations: dict[str, ApLocation] = {}
    for ap_id, coverage, ap_floor, community, building, unit_ref, unit_floor in session.execute(
        statement
    ):
        single_unit = coverage == Coverage.UNIT and unit_ref is not None
        floor = ap_floor if ap_floor is not None else (unit_floor if single_unit else None)
        locations[ap_id] = ApLocation(
            ap_id=ap_id, community=community, building=building,
            floor="" if floor is None else str(floor),
            unit=unit_ref if single_unit else "",
        )
    return locations


class RegistryApMap:
    """A cached AP map that reloads itself when the registry changes."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        poll_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = session_factory
        self._poll_s = poll_s
        self._clock = clock
        self._locations: dict[str, ApLocation] = {}
        self._version: int | None = None
        self._next_poll = 0.0
        self._next_unknown_check = 0.0
        self.reloads = 0

    @property
    def size(self) -> int:
        """How many APs are known."""
        return len(self._locations)

    @property
    def version(self) -> int | None:
        """The registry version the map was loaded at (None before the first load)."""
        return self._version

    def get(self, ap_id: str) -> ApLocation | None:
        """The AP's location, or None when the registry does not know it."""
        found = self._locations.get(ap_id)
        if found is None and self._clock() >= self._next_unknown_check:
            self._next_unknown_check = self._clock() + UNKNOWN_AP_RECHECK_S
            if self.refresh(force_check=True):
                found = self._locations.get(ap_id)
        return found

    def refresh(self, force_check: bool = False) -> bool:
        """Reload if the poll is due (or forced) and the registry changed; True if reloaded."""
        now = self._clock()
        if not force_check and now < self._next_poll:
            return False
        self._next_poll = now + self._poll_s
        try:
            with self._factory() as session:
                version = registry_version(session)
                if version == self._version:
                    return False
                locations = load_locations(session)
        except SQLAlchemyError as error:
            # Keep serving the map we have: a registry hiccup must not stop ingest.
            LOGGER.error("registry unavailable, keeping %d known APs: %s", self.size, error)
            return False
        self._locations = locations
        self._version = version
        self.reloads += 1
        LOGGER.info("AP map loaded: %d APs at registry version %d", len(locations), version)
        return True
