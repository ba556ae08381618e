"""Staff accounts: creation and password checks."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from registry.db import bump_registry_version
from registry.models import Role, StaffUser

MIN_PASSWORD_LENGTH = 10


def upsert_staff(
    session: Session, username: str, password: str, role: str, display_name: str = ""
) -> bool:
    """Create or update a staff account; return True when it was created.

    A new administrator is district-wide; everyone else starts with no community, and an
    administrator gives them theirs in the back office (staff page).
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    created = user is None
    if user is None:
        user = StaffUser(username=username, password_hash="", role=Role(role),
                         district_wide=role == Role.ADMIN.value)
        session.add(user)
    user.role = Role(role)
    user.display_name = display_name or user.display_name or username
    # scrypt (Werkzeug's default) costs ~96 ms a check here: right for staff logins.
    user.password_hash = generate_password_hash(password)
    user.active = True
    bump_registry_version(session)
    return created


def end_sessions(user: StaffUser) -> int:
    """End every back-office session of this user: sessions stamped with the old generation
    are refused from now on (password, role, community and activation changes do this by
    themselves, see registry.models)."""
    user.session_generation = (user.session_generation or 0) + 1
    return user.session_generation


def verify_staff(session: Session, username: str, password: str) -> StaffUser | None:
    """The active staff user with these credentials, or None (same cost either way)."""
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    if user is None or not user.active:
        # Spend the same time as a real check so a wrong user name cannot be told apart.
        check_password_hash(_DUMMY_HASH, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


_DUMMY_HASH = generate_password_hash("not-a-real-password")
