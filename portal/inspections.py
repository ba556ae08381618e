"""On-site inspections: the QR landing page and the form a grid worker fills in on a phone.

``/q/<token>`` is what a unit's QR code carries. The token alone names the unit: it is random
(``registry.models.new_qr_token``), unique, and replaced when a code is regenerated, so it can
neither be guessed nor point at another unit; the form has no field that could. A signed-out
phone is sent to the staff login and straight back here. The form records who was found, the
hazard categories checked (the configurable catalogue), findings and photos, and may open a
case of kind ``inspection``.
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
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response
from wtforms import BooleanField, IntegerField, MultipleFileField, SubmitField, TextAreaField
from wtforms.validators import Length, NumberRange, Optional

from analytics.flags import TIER_ORDER
from portal import photos
from portal.admin import roles_required
from portal.audit import record
from portal.scope import INSPECTORS, scoped_units, services, staff
from portal.units import hazard_catalogue
from registry.db import session_scope
from registry.models import (
    Case,
    CaseEvent,
    CaseStatus,
    Inspection,
    InspectionPhoto,
    RiskTier,
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


@bp.route("/q/<token>", methods=["GET", "POST"])
@roles_required(*INSPECTORS)
def scan(token: str) -> Any:
    """A unit's QR landing page: its inspection form (phone layout)."""
    # Photos make this the one staff form larger than the portal's 64 KiB request limit.
    request.max_content_length = (photos.MAX_PHOTOS * photos.MAX_PHOTO_BYTES) + 256 * 1024
    unit = _unit_by_token(token)
    catalogue = hazard_catalogue()
    form = InspectionForm()
    checked = [c for c in request.form.getlist("hazard") if c in catalogue]
    if form.validate_on_submit():
        try:
            problem = _problem(form)
            saved = None if problem else _save(unit, form, checked)
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


def _save(unit: Unit, form: InspectionForm, checked: list[str]) -> Inspection | None:
    """Store the photos, then the inspection (and its case) in one transaction."""
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
        if form.open_case.data:
            case = Case(unit_id=unit.id, kind=CASE_KIND, status=CaseStatus.DISCOVERED,
                        tier=_case_tier(checked, inspection.people_unregistered),
                        evidence={"inspection_id": inspection.id, "hazards": checked,
                                  "people_found": inspection.people_found,
                                  "people_unregistered": inspection.people_unregistered,
                                  "photos": len(stored)})
            db.add(case)
            db.flush()
            db.add(CaseEvent(case_id=case.id, actor=user.username, from_status="",
                             to_status=CaseStatus.DISCOVERED.value,
                             note=f"opened by inspection {inspection.id}"))
            inspection.case_id = case.id
        record(db, user.username, "record_inspection", f"unit:{unit.ref}",
               {"inspection_id": inspection.id, "hazards": len(checked),
                "photos": len(stored), "case_id": inspection.case_id},
               request.remote_addr or "")
    return inspection


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
