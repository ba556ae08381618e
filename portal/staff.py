"""Staff management for administrators: accounts, roles, community scope, passwords.

Only district-wide administrators manage staff (a community's administrator could otherwise
grant scope they do not have). Role, scope and deactivation take effect on the person's next
request: the login loader reads the account each time. Every change is audited.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash
from werkzeug.wrappers import Response
from wtforms import (
    BooleanField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional, Regexp

from portal.access import roles_required, staff
from portal.audit import record
from portal.cases import ROLE_LABELS
from portal.services import portal_services
from registry.db import bump_registry_version, session_scope
from registry.models import Community, Role, StaffUser
from registry.staff import MIN_PASSWORD_LENGTH

LOGGER = logging.getLogger(__name__)
bp = Blueprint("staff", __name__, url_prefix="/admin/staff")
PAGE_SIZE = 50


class StaffForm(FlaskForm):
    """An account's name, role and scope (and, for a new account, its password)."""

    username = StringField(_l("User name"), validators=[
        InputRequired(), Regexp(r"^[A-Za-z0-9._-]{2,64}$",
                                message=_l("2 to 64 letters, digits, dots, dashes or _."))])
    display_name = StringField(_l("Name shown"), validators=[Optional(), Length(max=200)])
    role = SelectField(_l("Role"), choices=[SelectChoice(r.value, ROLE_LABELS[r.value])
                                            for r in Role])
    communities = SelectMultipleField(_l("Communities"), coerce=int, choices=[])
    district_wide = BooleanField(_l("District-wide (every community)"))
    active = BooleanField(_l("Active"), default=True)
    password = PasswordField(_l("Password"), validators=[
        Optional(), Length(min=MIN_PASSWORD_LENGTH, max=200,
                           message=_l("At least 10 characters."))])


class PasswordForm(FlaskForm):
    """A new password set by an administrator."""

    password = PasswordField(_l("New password"), validators=[
        InputRequired(), Length(min=MIN_PASSWORD_LENGTH, max=200,
                                message=_l("At least 10 characters."))])


def _district_admin() -> None:
    """Only district-wide administrators manage staff."""
    if not staff().district_wide:
        abort(403)


def _community_choices() -> list[SelectChoice]:
    """Every community, for the scope picker."""
    with portal_services().session_factory() as db:
        return [SelectChoice(c.id, f"{c.name or c.code} ({c.code})") for c in db.scalars(
            select(Community).order_by(Community.code))]


@bp.get("/")
@roles_required(Role.ADMIN.value)
def staff_list() -> str:
    """Every account with its role, scope and state, a page at a time."""
    _district_admin()
    raw = request.args.get("page", "1")
    page = max(1, int(raw)) if raw.isdigit() else 1
    with portal_services().session_factory() as db:
        total = db.scalar(select(func.count()).select_from(StaffUser)) or 0
        users = list(db.scalars(select(StaffUser).order_by(StaffUser.username)
                                .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)))
        scopes = {u.id: [c.name or c.code for c in u.communities] for u in users}
    return render_template("admin/staff_list.html", users=users, scopes=scopes, total=total,
                           page=page, pages=max(1, -(-total // PAGE_SIZE)))


def _apply_form(user: StaffUser, form: StaffForm, db: Any) -> None:
    """Copy the form onto the account."""
    user.display_name = (form.display_name.data or "").strip() or user.username
    user.role = Role(form.role.data)
    user.district_wide = bool(form.district_wide.data)
    chosen = set(form.communities.data or [])
    user.communities = list(db.scalars(select(Community).where(Community.id.in_(chosen))))
    user.active = bool(form.active.data)


@bp.route("/new", methods=["GET", "POST"])
@roles_required(Role.ADMIN.value)
def staff_new() -> Any:
    """Create an account."""
    _district_admin()
    form = StaffForm()
    form.communities.choices = _community_choices()
    if form.validate_on_submit():
        if not form.password.data:
            form.password.errors = [_("Please set a password.")]
        else:
            with session_scope(portal_services().session_factory) as db:
                taken = db.scalar(select(StaffUser.id).where(
                    StaffUser.username == form.username.data))
                if taken is None:
                    user = StaffUser(username=form.username.data,
                                     password_hash=generate_password_hash(form.password.data))
                    _apply_form(user, form, db)
                    db.add(user)
                    db.flush()
                    record(db, staff().username, "create_staff", f"staff:{user.id}",
                           _scope_detail(user), request.remote_addr or "")
                    bump_registry_version(db)
            if taken is None:
                flash(_("Account %(name)s created.", name=form.username.data), "info")
                return redirect(url_for("staff.staff_list"), code=303)
            form.username.errors = [_("This user name is taken.")]
    return render_template("admin/staff_edit.html", form=form, user=None,
                           password_form=None), 200 if request.method == "GET" else 422


def _scope_detail(user: StaffUser) -> dict[str, Any]:
    """What the audit log keeps of an account change."""
    return {"role": user.role.value, "district_wide": user.district_wide,
            "communities": sorted(c.id for c in user.communities), "active": user.active}


@bp.route("/<int:user_id>", methods=["GET", "POST"])
@roles_required(Role.ADMIN.value)
def staff_edit(user_id: int) -> Any:
    """Change an account's name, role, scope or state."""
    _district_admin()
    with portal_services().session_factory() as db:
        user = db.get(StaffUser, user_id)
        if user is None:
            abort(404)
        data = {"username": user.username, "display_name": user.display_name,
                "role": user.role.value, "communities": [c.id for c in user.communities],
                "district_wide": user.district_wide, "active": user.active}
    form = StaffForm(data=data) if request.method == "GET" else StaffForm()
    form.communities.choices = _community_choices()
    form.username.data = data["username"]  # the user name does not change
    if request.method == "POST" and form.validate_on_submit():
        me = user_id == staff().id
        if me and (form.role.data != Role.ADMIN.value or not form.active.data
                   or not form.district_wide.data):
            # Nobody locks themselves out; another administrator can do it if it is meant.
            flash(_("You cannot remove your own administrator rights."), "error")
        else:
            with session_scope(portal_services().session_factory) as db:
                user = db.get_one(StaffUser, user_id)
                _apply_form(user, form, db)
                record(db, staff().username, "change_staff", f"staff:{user_id}",
                       _scope_detail(user), request.remote_addr or "")
                bump_registry_version(db)
            flash(_("Account %(name)s saved.", name=data["username"]), "info")
            return redirect(url_for("staff.staff_list"), code=303)
    return render_template("admin/staff_edit.html", form=form, user=data, user_id=user_id,
                           password_form=PasswordForm())


@bp.post("/<int:user_id>/password")
@roles_required(Role.ADMIN.value)
def staff_password(user_id: int) -> Response:
    """Set a new password for an account (the person changes it after)."""
    _district_admin()
    form = PasswordForm()
    if not form.validate_on_submit():
        flash(_("The password needs at least 10 characters."), "error")
        return redirect(url_for("staff.staff_edit", user_id=user_id), code=303)
    with session_scope(portal_services().session_factory) as db:
        user = db.get(StaffUser, user_id)
        if user is None:
            abort(404)
        user.password_hash = generate_password_hash(form.password.data or "")
        record(db, staff().username, "reset_staff_password", f"staff:{user_id}", {},
               request.remote_addr or "")
    flash(_("Password set."), "info")
    return redirect(url_for("staff.staff_edit", user_id=user_id), code=303)
