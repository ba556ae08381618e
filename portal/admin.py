"""The staff back office: login, resident lookup (masked, audited), sign-ins, alerts, audit log.

A minimal but real base for the full dashboard (a later issue): every page extends
``admin/base.html`` (navigation block, role-aware), access goes through ``roles_required``, and
every look at a resident's data leaves an audit entry. Staff limited to one community only see
that community's residents. Sessions are checked on every request against the registry
(portal/staff_auth.py): logout, a password, role or community change, another address, idling
or age end them server-side.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import (
    LoginManager,
    login_required,
    login_user,
    logout_user,
)
from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select, true
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from census.privacy import mask_name, mask_phone, name_match_key, normalize_id_number
from portal import staff_auth
from portal.access import (
    OPERATORS,
    StaffPrincipal,
    residents_in_scope,
    roles_required,
    units_in_scope,
)
from portal.access import staff as _staff
from portal.audit import record
from portal.forms import ID_TYPE_LABELS, AcknowledgeForm, MoveOutForm, StaffLoginForm
from portal.scope import safe_next
from portal.services import portal_services
from portal.signin import move_out
from registry.db import session_scope
from registry.models import (
    Alert,
    AuditEntry,
    Device,
    IdType,
    Resident,
    Role,
    SignIn,
    StaffUser,
    Unit,
)
from registry.staff import end_sessions, verify_staff

LOGGER = logging.getLogger(__name__)
bp = Blueprint("admin", __name__, url_prefix="/admin")
PAGE_SIZE = 50


def init_login(manager: LoginManager) -> None:
    """Wire flask-login to the staff table."""
    manager.login_view = "admin.login"
    manager.login_message = ""

    @manager.user_loader
    def load_user(user_id: str) -> StaffPrincipal | None:
        """The active staff member of a session that may still be used, or None."""
        if not user_id.isdigit():
            return None
        with portal_services().session_factory() as db:
            user = db.get(StaffUser, int(user_id))
            if user is None or not user.active:
                return None
            principal, generation = StaffPrincipal.of(user), user.session_generation
        settings = portal_services().settings
        problem = staff_auth.session_problem(
            session, generation, request.remote_addr or "",
            idle_s=settings.portal_staff_idle_minutes * 60,
            max_age_s=settings.portal_staff_session_hours * 3600)
        if problem is not None:
            LOGGER.info("staff session of %s refused: %s", principal.username, problem)
            session.clear()
            return None
        return principal


ALL_STAFF = OPERATORS  # the pages with residents' data: not for viewers
RESIDENT_MANAGERS = (Role.ADMIN.value, Role.GRID_WORKER.value)


@dataclass(frozen=True)
class Pager:
    """Where a page of a list stands: its number, the rows it shows and how many there are."""

    page: int
    total: int
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        """Number of pages (at least one)."""
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        """The 1-based number of the page's first row (0 when the list is empty)."""
        return min(self.total, (self.page - 1) * self.size + 1)

    @property
    def last(self) -> int:
        """The 1-based number of the page's last row."""
        return min(self.total, self.page * self.size)

    @property
    def offset(self) -> int:
        """Rows before this page."""
        return (self.page - 1) * self.size


def pager(db: Session, statement: Select[Any]) -> Pager:
    """The page asked for (``page`` in the query or form), kept inside the list's pages."""
    total = db.scalar(select(func.count()).select_from(
        statement.order_by(None).limit(None).subquery())) or 0
    raw = request.values.get("page", "1")
    asked = int(raw) if raw.isdigit() and len(raw) < 7 else 1
    return Pager(max(1, min(asked, Pager(1, total).pages)), total)


def _audit(action: str, subject: str = "", detail: dict[str, Any] | None = None) -> None:
    """An audit entry in its own transaction, for views that change nothing."""
    with session_scope(portal_services().session_factory) as db:
        record(db, _staff().username, action, subject, detail, request.remote_addr or "")


def _scoped(query: Select[Any]) -> Select[Any]:
    """Limit a resident query to the staff member's communities."""
    return query.where(Resident.unit_id.in_(units_in_scope()))


def alerts_in_scope() -> ColumnElement[bool]:
    """Alerts about units or residents in scope; alerts about neither (an AP's) district-wide."""
    if _staff().district_wide:
        return true()
    return or_(Alert.unit_id.in_(units_in_scope()),
               and_(Alert.unit_id.is_(None), Alert.resident_id.in_(residents_in_scope())))


def masked_id(id_type: str, last4: str) -> str:
    """An identity number shown without decrypting it: stars and the last four characters."""
    stars = 14 if id_type == IdType.RESIDENT_ID_CARD.value else 4
    return "*" * stars + last4


@bp.app_template_filter("masked_name")
def _masked_name(name: bytes | str | None) -> str:
    """Template filter: a masked name (from its encrypted column: decrypted only to mask)."""
    clear = portal_services().cipher.reveal(name) if isinstance(name, bytes) else name or ""
    return mask_name(clear)


@bp.app_template_filter("masked_phone")
def _masked_phone(phone: bytes | str | None) -> str:
    """Template filter: a masked phone number (from its encrypted column)."""
    clear = portal_services().cipher.reveal(phone) if isinstance(phone, bytes) else phone or ""
    return mask_phone(clear) if clear else ""


@bp.app_template_filter("local_time")
def _local_time(moment: dt.datetime | None) -> str:
    """Template filter: a UTC time shown in the site's time zone (the only place it is local)."""
    if moment is None:
        return ""
    return moment.astimezone(portal_services().settings.tz).strftime("%Y-%m-%d %H:%M")


@bp.app_context_processor
def _admin_context() -> dict[str, Any]:
    """Values the staff templates use."""
    return {"id_type_labels": ID_TYPE_LABELS, "masked_id": masked_id}


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Staff sign-in, with back-off per (user name, address) and slower global limits."""
    form = StaffLoginForm()
    if form.validate_on_submit():
        services = portal_services()
        username = (form.username.data or "").strip()
        remote = request.remote_addr or ""
        attempt = services.login_guard.reserve(username, remote)
        if not attempt.allowed:
            flash(_("Too many attempts. Please wait %(minutes)d minutes.",
                    minutes=max(1, -(-attempt.wait // 60))), "error")
            return render_template("admin/login.html", form=form,
                                   next=safe_next(request.args.get("next"))), 429
        with session_scope(services.session_factory) as db:
            user = verify_staff(db, username, form.password.data or "")
            record(db, username, "staff_login" if user else "staff_login_failed", "", {}, remote)
            principal = StaffPrincipal.of(user) if user else None
            generation = user.session_generation if user else 0
        if principal is None:
            # One message for unknown users and wrong passwords: no user enumeration.
            flash(_("User name or password is not right."), "error")
            return render_template("admin/login.html", form=form,
                                   next=safe_next(request.args.get("next"))), 200
        services.login_guard.succeeded(attempt)
        # A fresh session (no fixation), not permanent: the cookie dies with the browser, and
        # the server refuses it once it idles, ages, moves address or is ended.
        session.clear()
        login_user(principal)
        staff_auth.begin_session(session, generation, remote)
        # Back to where the login was asked for (a unit's QR page), never to another site.
        return redirect(safe_next(request.args.get("next")) or url_for("overview.index"))
    return render_template("admin/login.html", form=form,
                           next=safe_next(request.args.get("next")))


@bp.post("/logout")
@login_required
def logout() -> Response:
    """End every session of this staff member, server-side: a copied cookie is dead too."""
    with session_scope(portal_services().session_factory) as db:
        user = db.get(StaffUser, _staff().id)
        if user is not None:
            end_sessions(user)
        record(db, _staff().username, "staff_logout", "", {}, request.remote_addr or "")
    logout_user()
    session.clear()
    return redirect(url_for("admin.login"))


def _search(db: Session, by: str, query: str) -> Select[Any]:
    """Residents found by full name, ID number, phone or unit reference (keyed digests for
    all but the unit: names and phones are encrypted, so a name is found whole, not by prefix)."""
    statement = select(Resident)
    cipher = portal_services().cipher
    if by == "id":
        number = normalize_id_number(query)
        # Every document type, under every configured digest key (a digest rotation may run).
        digests = [d for t in IdType for d in cipher.digests(t.value, number)]
        statement = statement.where(Resident.id_digest.in_(digests))
    elif by == "phone":
        # Every stored number is digested in E.164, however it was written.
        phones = [d for d in cipher.phone_digests(query) if d]
        statement = statement.where(Resident.phone_digest.in_(phones))
    elif by == "unit":
        statement = statement.join(Unit, Resident.unit_id == Unit.id).where(
            Unit.ref.startswith(query, autoescape=True))
    else:
        statement = statement.where(Resident.name_digest.in_(cipher.name_digests(query)))
    return _scoped(statement)


NAME_PART_BATCH = 500  # names decrypted per query of a search by part of a name


class NameSearchTooWide(Exception):
    """More residents in scope than a search by part of a name may decrypt."""

    def __init__(self, residents: int) -> None:
        super().__init__(residents)
        self.residents = residents


def _name_part_search(db: Session, query: str) -> tuple[Select[Any], int]:
    """Residents in the staff member's communities whose name contains query (compared as
    names are: folded, no spacing), and how many names were decrypted for it.

    Names are stored encrypted and found whole by digest; this decrypts, batch by batch, the
    names of the residents in scope only, at most WIFI_CENSUS_PORTAL_NAME_SEARCH_MAX of them
    (NameSearchTooWide beyond: a district-wide account narrows by unit instead).
    """
    wanted = name_match_key(query)
    limit = portal_services().settings.portal_name_search_max
    if not wanted:
        return select(Resident).where(false()), 0
    in_scope = db.scalar(_scoped(select(func.count(Resident.id)))) or 0
    if in_scope > limit or limit == 0:
        raise NameSearchTooWide(in_scope)
    cipher = portal_services().cipher
    scoped = (select(Resident.id, Resident.name_encrypted)
              .where(Resident.unit_id.in_(units_in_scope())).order_by(Resident.id))
    matched: list[int] = []
    last = 0
    while True:
        rows = db.execute(scoped.where(Resident.id > last).limit(NAME_PART_BATCH)).all()
        if not rows:
            break
        matched += [rid for rid, token in rows if wanted in name_match_key(cipher.reveal(token))]
        last = rows[-1][0]
    return select(Resident).where(Resident.id.in_(matched)), in_scope


@bp.route("/residents", methods=["GET", "POST"])
@roles_required(*ALL_STAFF)
def residents() -> str | tuple[str, int]:
    """Find residents; results are masked and the search is audited (not its raw text).

    Searches are POSTed so that identity numbers never land in URLs, logs or history.
    """
    by = request.form.get("by", "name")
    query = request.form.get("q", "").strip()[:64]
    found: list[Resident] = []
    units: dict[int, str] = {}
    searched = request.method == "POST" and bool(query)
    page = Pager(1, 0)
    if searched:
        detail: dict[str, Any] = {"by": by}
        decision = portal_services().limiter.hit("staff_search", str(_staff().id))
        if not decision.allowed:
            _audit("search_residents", "", detail | {"refused": "rate"})
            flash(_("Too many searches in a short time. Try again in %(minutes)d minutes.",
                    minutes=max(1, -(-decision.retry_after // 60))), "error")
            return render_template("admin/residents.html", residents=[], units={}, by=by,
                                   q="", searched=False, pager=page), 429
        with portal_services().session_factory() as db:
            try:
                if by == "name_part":
                    statement, detail["decrypted"] = _name_part_search(db, query)
                else:
                    statement = _search(db, by, query)
            except NameSearchTooWide as error:
                detail["refused"] = error.residents
                flash(_("Your communities have %(count)d residents, more than a search by part "
                        "of a name may look through. Search by full name, or by unit.",
                        count=error.residents), "error")
                statement = select(Resident).where(false())
            page = pager(db, statement)
            found = list(db.scalars(statement.order_by(Resident.id).offset(page.offset)
                                    .limit(PAGE_SIZE)))
            ids = {r.unit_id for r in found}
            units = dict(db.execute(select(Unit.id, Unit.ref).where(Unit.id.in_(ids))).all())
        _audit("search_residents", "", detail | {"results": page.total, "page": page.page})
    shown = query if by != "id" else ""  # an ID number is not echoed back into the page
    return render_template("admin/residents.html", residents=found, units=units, by=by,
                           q=shown, searched=searched, pager=page)


@bp.get("/residents/<int:resident_id>")
@roles_required(*ALL_STAFF)
def resident(resident_id: int) -> str:
    """One resident: masked identity, devices, recent sign-ins. Each view is audited."""
    with portal_services().session_factory() as db:
        found = db.scalar(_scoped(select(Resident).where(Resident.id == resident_id)))
        if found is None:
            abort(404)
        unit = db.get(Unit, found.unit_id)
        devices = list(db.scalars(select(Device).where(Device.resident_id == resident_id)
                                  .order_by(Device.bound_at.desc())))
        signins = list(db.scalars(select(SignIn).where(SignIn.resident_id == resident_id)
                                  .order_by(SignIn.at.desc()).limit(20)))
    _audit("view_resident", f"resident:{resident_id}")
    form = MoveOutForm(formdata=None, data={"move_out": dt.date.today()})
    return render_template("admin/resident.html", resident=found, unit=unit, devices=devices,
                           signins=signins, form=form,
                           can_move_out=_staff().role in RESIDENT_MANAGERS)


@bp.post("/residents/<int:resident_id>/move-out")
@roles_required(*RESIDENT_MANAGERS)
def resident_move_out(resident_id: int) -> Response:
    """Record a move-out: every device of the resident is revoked on its AP."""
    form = MoveOutForm()
    if not form.validate_on_submit() or form.move_out.data is None:
        flash(_("Please give a valid move-out date."), "error")
        return redirect(url_for("admin.resident", resident_id=resident_id))
    with portal_services().session_factory() as db:
        if db.scalar(_scoped(select(Resident.id).where(Resident.id == resident_id))) is None:
            abort(404)
    sent = move_out(portal_services(), resident_id, form.move_out.data, _staff().username,
                    request.remote_addr or "")
    portal_services().directory.invalidate()
    flash(_("Move-out recorded; %(count)d device(s) disconnected.", count=sent), "info")
    return redirect(url_for("admin.resident", resident_id=resident_id))


@bp.get("/signins")
@roles_required(*ALL_STAFF)
def signins() -> str:
    """Recent sign-ins, filterable by outcome (self-declared and mismatches stand out)."""
    outcome = request.args.get("outcome", "")[:32]
    with portal_services().session_factory() as db:
        statement = select(SignIn)
        if outcome:
            statement = statement.where(SignIn.outcome == outcome)
        if not _staff().district_wide:
            # An unconfirmed sign-in names no unit but a resident: theirs is where it belongs.
            statement = statement.where(or_(SignIn.unit_id.in_(units_in_scope()),
                                            SignIn.resident_id.in_(residents_in_scope())))
        page = pager(db, statement)
        rows = list(db.scalars(statement.order_by(SignIn.at.desc(), SignIn.id.desc())
                               .offset(page.offset).limit(PAGE_SIZE)))
        units = dict(db.execute(select(Unit.id, Unit.ref).where(
            Unit.id.in_({r.unit_id for r in rows if r.unit_id}))).all())
    _audit("list_signins", "", {"outcome": outcome, "results": page.total, "page": page.page})
    return render_template("admin/signins.html", signins=rows, units=units, outcome=outcome,
                           pager=page, args={"outcome": outcome} if outcome else {})


@bp.get("/alerts")
@roles_required(*ALL_STAFF)
def alerts() -> str:
    """Alerts, newest first: watchlist sign-ins and overcrowding flags."""
    kind = request.args.get("kind", "")[:32]
    with portal_services().session_factory() as db:
        statement = select(Alert).where(alerts_in_scope())
        if kind:
            statement = statement.where(Alert.kind == kind)
        page = pager(db, statement)
        rows = list(db.scalars(statement.order_by(Alert.at.desc(), Alert.id.desc())
                               .offset(page.offset).limit(PAGE_SIZE)))
        units = dict(db.execute(select(Unit.id, Unit.ref).where(
            Unit.id.in_({a.unit_id for a in rows if a.unit_id}))).all())
    _audit("list_alerts", "", {"kind": kind, "results": page.total, "page": page.page})
    return render_template("admin/alerts.html", alerts=rows, units=units, kind=kind,
                           form=AcknowledgeForm(), pager=page,
                           args={"kind": kind} if kind else {})


@bp.post("/alerts/<int:alert_id>/ack")
@roles_required(*ALL_STAFF)
def acknowledge(alert_id: int) -> Response:
    """Mark an alert as seen by this staff member."""
    form = AcknowledgeForm()
    if form.validate_on_submit():
        with session_scope(portal_services().session_factory) as db:
            alert = db.scalar(select(Alert).where(Alert.id == alert_id, alerts_in_scope()))
            if alert is None:
                abort(404)  # not found and not yours look the same
            if alert.acknowledged_at is None:
                alert.acknowledged_by = _staff().username
                alert.acknowledged_at = dt.datetime.now(dt.UTC)
                record(db, _staff().username, "acknowledge_alert", f"alert:{alert_id}", {},
                       request.remote_addr or "")
    # Back to the same page of the same filtered list.
    kept: dict[str, Any] = {k: request.args[k][:32] for k in ("kind", "page")
                            if request.args.get(k)}
    return redirect(url_for("admin.alerts", **kept))


@bp.get("/audit")
@roles_required(Role.ADMIN.value)
def audit() -> str:
    """The audit log (district-wide administrators only: its entries name no community)."""
    if not _staff().district_wide:
        abort(403)
    actor = request.args.get("actor", "").strip()[:64]
    with portal_services().session_factory() as db:
        statement = select(AuditEntry).order_by(AuditEntry.at.desc()).limit(200)
        if actor:
            statement = statement.where(AuditEntry.actor == actor)
        rows = list(db.scalars(statement))
    return render_template("admin/audit.html", entries=rows, actor=actor)
