"""On-site inspections: the QR landing page and the form a grid worker fills in on a phone.

``/q/<token>`` is what a unit's QR code carries. The token alone names the unit: it is random
(``registry.models.new_qr_token``), unique, and replaced when a code is regenerated, so it can
neither be guessed nor point at another unit; the form has no field that could. A signed-out
phone is sent to the staff login and straight back here. The form records who was found, the
hazard categories checked (the configurable catalogue), findings and photos.

An inspection belongs in the case loop. When the unit has an open case, the form offers it:
if the case waits on this person's feedback (assigned to them: started now if it was not yet),
the inspection *is* that feedback step (``registry.casework.apply``, so the state machine
checks it), with its photos on the case; otherwise it is added to the case's history as a
note. With no case open, the inspector may open one (kind ``inspection``), or leave it
standalone for a supervisor to open a case from later (``open_case``).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response
from wtforms import BooleanField, IntegerField, MultipleFileField, SubmitField, TextAreaField
from wtforms.validators import Length, NumberRange, Optional

from analytics.flags import TIER_ORDER
from portal import photos
from portal.access import DISPATCHERS
from portal.admin import roles_required
from portal.audit import record
from portal.scope import INSPECTORS, scoped_units, services, staff
from portal.units import hazard_catalogue
from registry.case_flow import OPEN_STATUSES, Action, Refusal, TransitionRefused, allowed
from registry.casework import Actor, DuePolicy, apply
from registry.db import session_scope
from registry.models import (
    Case,
    CaseEvent,
    CaseStatus,
    Inspection,
    InspectionPhoto,
    RiskTier,
    Role,
    Unit,
)

LOGGER = logging.getLogger(__name__)
bp = Blueprint("inspections", __name__)

CASE_KIND = "inspection"
PHOTO_MESSAGES = {
    "too_large": _l("A photo is larger than %(mb)d MB; please take it again at a smaller size."),
    "not_image": _l("A file is not a JPEG, PNG or WebP photo."),
    "too_many_pixels": _l("A photo has too many pixels."),
}


class InspectionForm(FlaskForm):
    """What was found on site (hazard checkboxes are read from the catalogue, by code)."""

    people_found = IntegerField(_l("People found"), validators=[Optional(), NumberRange(0, 99)])
    people_unregistered = IntegerField(_l("Of them, not registered for this unit"),
                                       validators=[Optional(), NumberRange(0, 99)])
    note = TextAreaField(_l("Findings"), validators=[Length(max=2000)])
    photos = MultipleFileField(_l("Photos"))
    # The open case of this unit the inspection belongs to (0: none); checked on the server
    # against the unit's open cases, so no posted id can reach another unit's case.
    case = IntegerField(validators=[Optional()])
    open_case = BooleanField(_l("Open a case for the hazard team"))
    submit = SubmitField(_l("Save the inspection"))


def _unit_by_token(token: str) -> Unit:
    """The unit whose current QR token this is, inside the staff member's scope, or a 404."""
    if not 16 <= len(token) <= 64:
        abort(404)
    with services().session_factory() as db:
        unit = db.scalar(scoped_units(select(Unit).where(Unit.qr_token == token)))
        if unit is None:
            abort(404)
        unit.building.community  # noqa: B018 - loaded for the template
        return unit


def _case_tier(codes: list[str], unregistered: int | None) -> RiskTier:
    """The tier an inspection's findings imply: the highest category's, attention at least."""
    catalogue = hazard_catalogue()
    tier = "attention"
    for code in codes:
        category = catalogue.get(code)
        if category is not None and TIER_ORDER[category.tier] > TIER_ORDER[tier]:
            tier = category.tier
    if unregistered is not None and unregistered > 2:
        tier = "key"
    return RiskTier(tier)


def _open_cases(unit_id: int) -> list[tuple[Case, bool]]:
    """The unit's open cases, each with whether this person can record feedback on it now."""
    person = staff()
    role = Role(person.role)
    with services().session_factory() as db:
        cases = list(db.scalars(select(Case).where(
            Case.unit_id == unit_id, Case.status.in_(list(OPEN_STATUSES)))
            .order_by(Case.due_at.is_(None), Case.due_at, Case.id)))
    found = []
    for case in cases:
        mine = case.assigned_to_id == person.id
        steps = set(allowed(case.status, case.pending, role, mine))
        # An assigned case not yet started is started by the visit itself.
        found.append((case, Action.FEEDBACK in steps or (
            Action.START in steps and Action.FEEDBACK in set(allowed(
                CaseStatus.HANDLING, case.pending, role, mine)))))
    # The cases waiting on this person's feedback first: the form offers the first by default.
    found.sort(key=lambda item: not item[1])
    return found


@bp.route("/q/<token>", methods=["GET", "POST"])
@roles_required(*INSPECTORS)
def scan(token: str) -> Any:
    """A unit's QR landing page: its inspection form (phone layout)."""
    # Photos make this the one staff form larger than the portal's 64 KiB request limit.
    request.max_content_length = (photos.MAX_PHOTOS * photos.MAX_PHOTO_BYTES) + 256 * 1024
    unit = _unit_by_token(token)
    catalogue = hazard_catalogue()
    open_cases = _open_cases(unit.id)
    form = InspectionForm()
    if request.method == "GET":
        # Offer a case by default only while it waits on this person's feedback: once fed back
        # it stays open for verification, and a later visit is not about it unless chosen.
        waiting = [case.id for case, mine in open_cases if mine]
        form.case.data = waiting[0] if waiting else 0
    checked = [c for c in request.form.getlist("hazard") if c in catalogue]
    if form.validate_on_submit():
        chosen = form.case.data or 0
        try:
            problem = _problem(form)
            if not problem and chosen and chosen not in {c.id for c, _mine in open_cases}:
                problem = _("That case is not open for this unit any more.")
            saved = None if problem else _save(unit, form, checked, chosen)
        finally:
            # Large uploads are spooled to temporary files: release them now, saved or not.
            for upload in request.files.getlist("photos"):
                upload.close()
        if problem:
            flash(problem, "error")
        elif saved is not None:
            flash(_("Inspection saved."), "info")
            return redirect(url_for("inspections.scan", token=token))
    elif request.method == "POST":
        flash(_("Please check the form: %(fields)s", fields=", ".join(
            str(getattr(form, name).label.text) for name in form.errors)), "error")
    with services().session_factory() as db:
        recent = list(db.scalars(select(Inspection).where(Inspection.unit_id == unit.id)
                                 .options(selectinload(Inspection.photos))
                                 .order_by(Inspection.at.desc()).limit(3)))
    groups: dict[str, list[Any]] = {}
    for category in catalogue.values():
        groups.setdefault(category.group, []).append(category)
    return render_template("admin/inspect.html", unit=unit, form=form, groups=groups,
                           checked=set(checked), recent=recent, catalogue=catalogue,
                           open_cases=open_cases,
                           max_photos=photos.MAX_PHOTOS,
                           max_mb=photos.MAX_PHOTO_BYTES // (1024 * 1024))


def _problem(form: InspectionForm) -> str:
    """A message for findings that do not add up, or ''."""
    found, unregistered = form.people_found.data, form.people_unregistered.data
    if unregistered is not None and (found is None or unregistered > found):
        return _("Not registered cannot be more than the people found.")
    files = [f for f in (form.photos.data or []) if getattr(f, "filename", "")]
    if len(files) > photos.MAX_PHOTOS:
        return _("At most %(n)d photos per inspection.", n=photos.MAX_PHOTOS)
    return ""


def _save(unit: Unit, form: InspectionForm, checked: list[str], case_id: int
          ) -> Inspection | None:
    """Store the photos, then the inspection and its step in the case loop, in one transaction."""
    folder = photos.photo_folder(services().settings.var_dir)
    stored: list[photos.StoredPhoto] = []
    for upload in form.photos.data or []:
        if not getattr(upload, "filename", ""):
            continue
        # Read one byte past the limit: enough to know it is too large, without reading more.
        data = upload.stream.read(photos.MAX_PHOTO_BYTES + 1)
        try:
            stored.append(photos.store(data, folder))
        except photos.PhotoError as error:
            LOGGER.info("photo refused for %s: %s", unit.ref, error.reason)
            flash(str(PHOTO_MESSAGES[error.reason]) % {
                "mb": photos.MAX_PHOTO_BYTES // (1024 * 1024)}, "error")
            return None
    user = staff()
    notices: list[dict[str, Any]] = []
    with session_scope(services().session_factory) as db:
        inspection = Inspection(unit_id=unit.id, inspector_id=user.id,
                                people_found=form.people_found.data,
                                people_unregistered=form.people_unregistered.data,
                                hazards=checked, note=(form.note.data or "").strip())
        db.add(inspection)
        db.flush()
        for photo in stored:
            db.add(InspectionPhoto(inspection_id=inspection.id, path=photo.path,
                                   media_type=photos.MEDIA_TYPE, size=photo.size,
                                   sha256=photo.sha256))
        fed_back = False
        if case_id:
            try:
                fed_back, notices = _feed_back(db, case_id, unit, inspection, len(stored))
            except TransitionRefused as refused:
                # The case moved between showing the form and saving it: nothing is kept.
                LOGGER.info("inspection feedback on case %s refused: %s", case_id, refused)
                flash(_("The case has changed meanwhile; please look at it again."), "error")
                # Photo files are content-addressed and may be shared: they are not deleted.
                db.rollback()
                return None
        elif form.open_case.data:
            inspection.case_id = open_inspection_case(db, inspection, user.username)
        record(db, user.username, "record_inspection", f"unit:{unit.ref}",
               {"inspection_id": inspection.id, "hazards": len(checked),
                "photos": len(stored), "case_id": inspection.case_id,
                "feedback": fed_back}, request.remote_addr or "")
    for item in notices:  # after the commit, as for every case step
        services().alerts.dispatch(item["kind"], item)
    return inspection


def inspection_note(inspection: Inspection, photo_count: int) -> str:
    """The case history's note for an inspection: what the inspector wrote, with its number.

    Stored in one fixed shape ("inspection N: ...") that ``portal.labels`` renders in the
    reader's language.
    """
    found = "" if inspection.people_found is None else f" people={inspection.people_found}"
    unregistered = ("" if inspection.people_unregistered is None
                    else f" unregistered={inspection.people_unregistered}")
    return (f"inspection {inspection.id}:{found}{unregistered} hazards={len(inspection.hazards)}"
            f" photos={photo_count}" + (f" — {inspection.note}" if inspection.note else ""))


def _feed_back(db: Any, case_id: int, unit: Unit, inspection: Inspection, photo_count: int
               ) -> tuple[bool, list[dict[str, Any]]]:
    """Tie the inspection to an open case of its unit: its feedback step when the case waits
    on this person, else a note in its history. Returns (fed back, notices)."""
    case = db.scalar(select(Case).where(Case.id == case_id, Case.unit_id == unit.id,
                                        Case.status.in_(list(OPEN_STATUSES))))
    if case is None:  # checked before; the case closed meanwhile
        raise TransitionRefused(Refusal.ILLEGAL, "the case is not open")
    person = staff()
    actor = Actor(person.id, person.username, Role(person.role))
    note = inspection_note(inspection, photo_count)
    inspection.case_id = case.id
    steps = set(allowed(case.status, case.pending, actor.role, case.assigned_to_id == actor.id))
    notices: list[dict[str, Any]] = []
    policy = DuePolicy.from_settings(services().settings)
    if Action.START in steps and Action.FEEDBACK not in steps:
        notices += apply(db, case, actor, Action.START, policy=policy)
        steps = set(allowed(case.status, case.pending, actor.role, True))
    if Action.FEEDBACK in steps:
        notices += apply(db, case, actor, Action.FEEDBACK, reason=note, policy=policy)
        return True, notices
    db.add(CaseEvent(case_id=case.id, actor=person.username, action="",
                     from_status=case.status.value, to_status=case.status.value, note=note))
    return False, notices


def open_inspection_case(db: Any, inspection: Inspection, actor: str) -> int:
    """Open a case (kind ``inspection``, to be reviewed) from an inspection; its id."""
    photo_count = db.scalar(select(func.count()).select_from(InspectionPhoto).where(
        InspectionPhoto.inspection_id == inspection.id)) or 0
    case = Case(unit_id=inspection.unit_id, kind=CASE_KIND, status=CaseStatus.DISCOVERED,
                tier=_case_tier(list(inspection.hazards), inspection.people_unregistered),
                evidence={"inspection_id": inspection.id, "hazards": list(inspection.hazards),
                          "people_found": inspection.people_found,
                          "people_unregistered": inspection.people_unregistered,
                          "photos": photo_count})
    db.add(case)
    db.flush()
    db.add(CaseEvent(case_id=case.id, actor=actor, from_status="",
                     to_status=CaseStatus.DISCOVERED.value,
                     note=f"opened by inspection {inspection.id}"))
    return int(case.id)


class _OpenCaseForm(FlaskForm):
    """Only a CSRF token."""


@bp.post("/admin/inspections/<int:inspection_id>/open-case")
@roles_required(*DISPATCHERS)
def open_case(inspection_id: int) -> Response:
    """A supervisor opens a case from a standalone inspection (once)."""
    if not _OpenCaseForm().validate_on_submit():
        abort(400)
    user = staff()
    with session_scope(services().session_factory) as db:
        inspection = db.get(Inspection, inspection_id)
        if inspection is None or db.scalar(scoped_units(select(Unit.id).where(
                Unit.id == inspection.unit_id))) is None:
            abort(404)
        if inspection.case_id is None:
            inspection.case_id = open_inspection_case(db, inspection, user.username)
            record(db, user.username, "open_case_from_inspection",
                   f"inspection:{inspection_id}", {"case_id": inspection.case_id},
                   request.remote_addr or "")
        case_id = inspection.case_id
    return redirect(url_for("cases.case_detail", case_id=case_id), code=303)


@bp.get("/admin/photos/<int:photo_id>")
@roles_required(*INSPECTORS)
def photo(photo_id: int) -> Response:
    """An inspection photo, for signed-in staff whose scope holds the unit."""
    with services().session_factory() as db:
        found = db.get(InspectionPhoto, photo_id)
        if found is None:
            abort(404)
        unit_id = found.inspection.unit_id
        if db.scalar(scoped_units(select(Unit.id).where(Unit.id == unit_id))) is None:
            abort(404)
        relative = found.path
    try:
        path = photos.open_stored(photos.photo_folder(services().settings.var_dir), relative)
    except ValueError:
        abort(404)
    if not path.exists():
        abort(404)
    response = send_file(path, mimetype=photos.MEDIA_TYPE, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response
