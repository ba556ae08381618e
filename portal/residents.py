"""A resident's rights in the back office: export of everything held, erasure, phone confirmation.

Export and erasure (PIPL arts. 45-47) are for administrators only, within their communities: a
resident of another community is a 404, like one that does not exist. Erasure needs a ticked
confirmation and a typed reason. Confirming a phone (an ``unconfirmed`` sign-in: a registered
resident with no phone on file, seen in person with their document) is for the staff who manage
residents. Every page view, export, erasure and confirmation leaves an audit entry.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse
from wtforms import BooleanField, StringField, SubmitField
from wtforms.validators import DataRequired, Length

from portal.access import residents_in_scope, roles_required
from portal.access import staff as current_staff
from portal.audit import record
from portal.const import OUTCOME_UNCONFIRMED
from portal.devices import Revocation
from portal.services import portal_services
from portal.signin import confirm_phone, queue_revocations, send_revocations
from registry.db import session_scope
from registry.models import Resident, Role, SignIn
from registry.subject_rights import erase_resident, export_resident

LOGGER = logging.getLogger(__name__)
bp = Blueprint("residents", __name__, url_prefix="/admin")

RIGHTS_ROLES = (Role.ADMIN.value,)  # export and erasure: PIPL, the fewest people necessary
PHONE_CONFIRMERS = (Role.ADMIN.value, Role.GRID_WORKER.value)  # who meet residents in person


class EraseForm(FlaskForm):
    """Erase a resident: a ticked confirmation and the reason (kept in the audit log)."""

    confirm = BooleanField(_l("I have checked the request and the resident's identity; this "
                              "cannot be undone."), validators=[DataRequired()])
    reason = StringField(_l("Reason (the request, its date, who asked)"),
                         validators=[DataRequired(), Length(min=10, max=500)])
    submit = SubmitField(_l("Erase this resident"))


class ConfirmPhoneForm(FlaskForm):
    """Make an unconfirmed sign-in's verified phone its resident's."""

    submit = SubmitField(_l("Confirm phone (seen in person)"))


def _audit(action: str, subject: str, detail: dict[str, Any] | None = None) -> None:
    """An audit entry in its own transaction."""
    with session_scope(portal_services().session_factory) as db:
        record(db, current_staff().username, action, subject, detail or {},
               request.remote_addr or "")


def _resident_in_scope(resident_id: int) -> None:
    """404 unless the resident exists in the staff member's communities (same for both)."""
    with portal_services().session_factory() as db:
        if db.scalar(select(Resident.id).where(Resident.id == resident_id,
                                               Resident.id.in_(residents_in_scope()))) is None:
            abort(404)


def _export(resident_id: int) -> dict[str, Any]:
    """The resident's export document."""
    services = portal_services()
    with services.session_factory() as db:
        return export_resident(db, services.cipher, services.settings, resident_id)


def both(message: str, **values: Any) -> Markup:
    """A label in Chinese and English, whatever the page's language (the export is handed to
    the resident, who may read either). Extracted by pybabel's ``-k both`` (portal/README.md)."""
    with force_locale("zh_CN"):
        chinese = _(message, **values)
    with force_locale("en"):
        english = _(message, **values)
    if chinese == english:
        return Markup(escape(english))
    return Markup(f"{escape(chinese)} <span class=\"en\">{escape(english)}</span>")


@bp.get("/residents/<int:resident_id>/privacy")
@roles_required(*RIGHTS_ROLES)
def privacy(resident_id: int) -> str:
    """The resident's rights page: what is held (counts), the export, the erasure form."""
    _resident_in_scope(resident_id)
    document = _export(resident_id)
    _audit("view_resident_rights", f"resident:{resident_id}")
    return render_template("admin/resident_privacy.html", doc=document,
                           resident_id=resident_id, form=EraseForm())


@bp.get("/residents/<int:resident_id>/export.json")
@roles_required(*RIGHTS_ROLES)
def export_json(resident_id: int) -> Response:
    """Everything held on the resident as a JSON download."""
    _resident_in_scope(resident_id)
    document = _export(resident_id)
    _audit("export_resident", f"resident:{resident_id}", {"format": "json"})
    body = json.dumps(document, ensure_ascii=False, indent=2)
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": f"attachment; filename=resident-{resident_id}.json",
        "Cache-Control": "no-store"})


@bp.get("/residents/<int:resident_id>/export")
@roles_required(*RIGHTS_ROLES)
def export_page(resident_id: int) -> Response:
    """Everything held on the resident as a readable page, in Chinese and English."""
    _resident_in_scope(resident_id)
    document = _export(resident_id)
    _audit("export_resident", f"resident:{resident_id}", {"format": "html"})
    response = Response(render_export(document))
    response.headers["Cache-Control"] = "no-store"
    return response


def render_export(document: dict[str, Any]) -> str:
    """The bilingual export page of an export document (also written by the CLI)."""
    return render_template("admin/resident_export.html", doc=document, both=both)


@bp.post("/residents/<int:resident_id>/erase")
@roles_required(*RIGHTS_ROLES)
def erase(resident_id: int) -> BaseResponse:
    """Erase the resident (what the law lets go), deauthorize their devices, audit why."""
    _resident_in_scope(resident_id)
    form = EraseForm()
    if not form.validate_on_submit():
        flash(_("Tick the confirmation and give the reason (at least 10 characters)."),
              "error")
        return redirect(url_for("residents.privacy", resident_id=resident_id))
    services = portal_services()
    with session_scope(services.session_factory) as db:
        report = erase_resident(db, services.cipher, resident_id)
        record(db, current_staff().username, "erase_resident", f"resident:{resident_id}",
               {"reason": (form.reason.data or "").strip(), **report.as_dict()},
               request.remote_addr or "")
        revoked = [Revocation(device_id, ap, mac, "erased")
                   for device_id, mac, ap in report.revoked]
        queued = queue_revocations(db, services, revoked, dt.datetime.now(dt.UTC))
    send_revocations(services, revoked, queued)
    services.directory.invalidate()
    LOGGER.info("resident %d erased by %s", resident_id, current_staff().username)
    flash(_("The resident is erased. Kept as the law requires: %(count)d sign-in(s) of the "
            "network log, until %(until)s; the audit log.",
            count=report.kept.get("signins", {}).get("count", 0),
            until=report.kept.get("signins", {}).get("until") or "—"), "info")
    return redirect(url_for("admin.residents"))


@bp.post("/signins/<int:signin_id>/confirm-phone")
@roles_required(*PHONE_CONFIRMERS)
def confirm_signin_phone(signin_id: int) -> BaseResponse:
    """Make an unconfirmed sign-in's verified phone its resident's (seen in person)."""
    form = ConfirmPhoneForm()
    if not form.validate_on_submit():
        abort(400)
    services = portal_services()
    with services.session_factory() as db:
        resident_id = db.scalar(select(SignIn.resident_id).where(
            SignIn.id == signin_id, SignIn.outcome == OUTCOME_UNCONFIRMED,
            SignIn.resident_id.in_(residents_in_scope())))
    if resident_id is None:
        abort(404)  # not unconfirmed, not yours, or gone: the same answer
    try:
        confirm_phone(services.session_factory, signin_id, current_staff().username,
                      request.remote_addr or "", cipher=services.cipher)
    except LookupError as error:
        LOGGER.info("confirm-phone of sign-in %d refused: %s", signin_id, error)
        flash(_("This phone cannot be confirmed: the resident already has one on file, or the "
                "sign-in has no verified phone."), "error")
        return redirect(url_for("admin.signins", outcome=OUTCOME_UNCONFIRMED))
    services.directory.invalidate()
    flash(_("Phone confirmed: the resident can sign in with it from now on."), "info")
    return redirect(url_for("admin.resident", resident_id=resident_id))


def export_time(value: str | None) -> str:
    """An ISO time from an export shown as a local date and time (template filter)."""
    if not value:
        return ""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        return value
    return moment.astimezone(portal_services().settings.tz).strftime("%Y-%m-%d %H:%M")


bp.add_app_template_filter(export_time, "export_time")
