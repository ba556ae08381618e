"""Who the signed-in staff member is, and what they may see: roles and community scope.

Every back-office view and API goes through ``roles_required`` (the role) and filters its
queries with ``in_scope`` / ``units_in_scope`` (the communities): staff limited to some
communities never see or act on another's residents, alerts or cases. District-wide staff
(usually administrators) see every community.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import abort
from flask_login import UserMixin, current_user, login_required
from sqlalchemy import ColumnElement, Select, false, select, true

from registry.models import Building, Resident, Role, StaffUser, Unit

F = TypeVar("F", bound=Callable[..., Any])

ALL_ROLES = tuple(r.value for r in Role)
# Everyone but viewers works with residents' data (PIPL: the fewest people necessary).
OPERATORS = (Role.ADMIN.value, Role.SUPERVISOR.value, Role.HAZARD_TEAM.value,
             Role.GRID_WORKER.value)
DISPATCHERS = (Role.ADMIN.value, Role.SUPERVISOR.value)


@dataclass(frozen=True)
class StaffPrincipal(UserMixin):
    """The signed-in staff member, detached from the database session."""

    id: int
    username: str
    display_name: str
    role: str
    communities: frozenset[int]
    district_wide: bool

    def get_id(self) -> str:
        """flask-login's user id."""
        return str(self.id)

    @classmethod
    def of(cls, user: StaffUser) -> StaffPrincipal:
        """From a StaffUser row (its communities loaded)."""
        return cls(user.id, user.username, user.display_name, user.role.value,
                   frozenset(c.id for c in user.communities), user.district_wide)

    def covers(self, community_id: int | None) -> bool:
        """Whether this person's scope includes a community."""
        return self.district_wide or (community_id is not None
                                      and community_id in self.communities)


def staff() -> StaffPrincipal:
    """The signed-in staff member."""
    return cast(StaffPrincipal, current_user._get_current_object())  # noqa: SLF001


def roles_required(*roles: str) -> Callable[[F], F]:
    """Let only signed-in staff with one of these roles through (403 for the others)."""

    def decorate(view: F) -> F:
        """Wrap a view."""

        @functools.wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            """Check the role, then run the view."""
            if staff().role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorate


def in_scope(community_column: Any) -> ColumnElement[bool]:
    """A WHERE clause keeping rows of the signed-in person's communities."""
    person = staff()
    if person.district_wide:
        return true()
    if not person.communities:
        return false()
    return cast(ColumnElement[bool], community_column.in_(sorted(person.communities)))


def units_in_scope() -> Select[Any]:
    """The ids of the units the signed-in person may see (a subquery)."""
    return select(Unit.id).join(Building, Unit.building_id == Building.id).where(
        in_scope(Building.community_id))


def residents_in_scope() -> Select[Any]:
    """The ids of the residents the signed-in person may see (a subquery)."""
    return select(Resident.id).where(Resident.unit_id.in_(units_in_scope()))
