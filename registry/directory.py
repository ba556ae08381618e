"""The access points the portal knows, with their signing keys, cached per worker.

Every hand-over needs the AP's key and place; reading them from SQL on every request would
cost more than the rest of the splash page. The cache reloads when the registry's change
counter (``registry_version``) moves, checked at most every few seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from census.privacy import IdentityCipher
from registry.db import registry_version
from registry.models import AccessPoint, Building, Community, Coverage, Unit

LOGGER = logging.getLogger(__name__)
CHECK_INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True)
class UnitChoice:
    """A unit a resident may say they live in."""

    id: int
    ref: str
    label: str


@dataclass(frozen=True, slots=True)
class ApInfo:
    """One AP: where it is and the key its redirects and commands are signed with."""

    ap_id: str
    building_id: int
    community_id: int
    coverage: Coverage
    floor: int | None
    unit_id: int | None
    key: str
    has_own_secret: bool
    place: str  # community and building names, for the page header
    fas_gateway: str = ""  # openNDS gatewayaddress when the AP hands over by FAS, else empty


class ApDirectory:
    """AP id -> ApInfo, reloaded when the registry changes."""

    def __init__(self, session_factory: sessionmaker[Session], cipher: IdentityCipher,
                 default_key: str) -> None:
        self._factory = session_factory
        self._cipher = cipher
        self._default_key = default_key
        self._lock = threading.Lock()
        self._aps: dict[str, ApInfo] = {}
        self._units: dict[str, tuple[UnitChoice, ...]] = {}
        self._version = -1
        self._checked = 0.0

    def _refresh(self) -> None:
        """Reload when the registry version moved (at most every CHECK_INTERVAL_S)."""
        now = time.monotonic()
        if now - self._checked < CHECK_INTERVAL_S and self._version >= 0:
            return
        with self._lock:
            if now - self._checked < CHECK_INTERVAL_S and self._version >= 0:
                return
            try:
                with self._factory() as session:
                    version = registry_version(session)
                    if version != self._version:
                        self._aps = self._load(session)
                        self._units = {}
                        self._version = version
                        LOGGER.info("AP directory loaded: %d APs (registry version %d)",
                                    len(self._aps), version)
            except (OperationalError, InterfaceError) as error:
                if self._version < 0:
                    raise
                # The registry is away (restarting, locked): the copy from a moment ago still
                # lets residents reach the sign-in form; the sign-in itself waits for it.
                LOGGER.warning("registry unavailable, AP directory kept from version %d: %s",
                               self._version, str(error.orig or error).splitlines()[0][:200])
            self._checked = now

    @property
    def version(self) -> int:
        """The registry version the cache was loaded at."""
        return self._version

    def invalidate(self) -> None:
        """Force a reload at the next lookup (after this process changed the registry)."""
        with self._lock:
            self._checked = 0.0
            self._version = -1

    def _load(self, session: Session) -> dict[str, ApInfo]:
        """Read every AP with its building and community."""
        rows = session.execute(
            select(AccessPoint, Building, Community)
            .join(Building, AccessPoint.building_id == Building.id)
            .join(Community, Building.community_id == Community.id)
        )
        loaded: dict[str, ApInfo] = {}
        for ap, building, community in rows:
            key = self._default_key
            if ap.secret_encrypted:
                key = self._cipher.decrypt(ap.secret_encrypted)
            place = " ".join(p for p in (community.name or community.code,
                                         building.name or building.code) if p)
            loaded[ap.ap_id] = ApInfo(
                ap_id=ap.ap_id, building_id=ap.building_id, community_id=community.id,
                coverage=ap.coverage, floor=ap.floor, unit_id=ap.unit_id, key=key,
                has_own_secret=bool(ap.secret_encrypted), place=place,
                fas_gateway=ap.fas_gateway or "",
            )
        return loaded

    def get(self, ap_id: str) -> ApInfo | None:
        """The AP, or None when it is not in the registry."""
        self._refresh()
        return self._aps.get(ap_id)

    def key_for(self, ap_id: str) -> str | None:
        """The AP's signing key (own secret or the global command key), None if unknown."""
        info = self.get(ap_id)
        return info.key if info else None

    def fas_gateway_for(self, ap_id: str) -> str | None:
        """The gateway address of an AP that hands over by openNDS FAS; None for any other."""
        info = self.get(ap_id)
        return info.fas_gateway if info is not None and info.fas_gateway else None

    def units_for(self, ap_id: str) -> tuple[UnitChoice, ...]:
        """Units the AP covers: its unit, its floor's units, or its building's units."""
        info = self.get(ap_id)
        if info is None:
            return ()
        cached = self._units.get(ap_id)
        if cached is not None:
            return cached
        query = select(Unit).where(Unit.building_id == info.building_id)
        if info.coverage is Coverage.UNIT and info.unit_id is not None:
            query = select(Unit).where(Unit.id == info.unit_id)
        elif info.coverage is Coverage.FLOOR and info.floor is not None:
            query = query.where(Unit.floor == info.floor)
        with self._factory() as session:
            units = tuple(
                UnitChoice(u.id, u.ref, u.room or u.code)
                for u in session.scalars(query.order_by(Unit.floor, Unit.code).limit(500))
            )
        self._units[ap_id] = units
        return units
