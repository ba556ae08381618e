"""Registry CSV upload in the back office: a dry run first, then commit, all or nothing.

Administrators upload the files ``wifi-census import`` reads (units, APs, residents, utility
readings). The upload is checked by the CLI's own parsers and appliers
(``registry.importers.import_all_or_nothing``) inside a transaction that is rolled back: the
page lists every bad line, in the reader's language. Only a file without a single bad line can
be committed, and the commit checks it again. The file waits for the commit in
``<var_dir>/uploads/`` (0600, named by a random token kept in the staff member's signed
session, never in the form), and is deleted after the commit or when the next one is uploaded.
A community-scoped administrator's file may only touch their own communities. Every run is
audited.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response
from wtforms import FileField, SelectField
from wtforms.fields.choices import SelectChoice

from portal.access import roles_required
from portal.scope import services, staff
from registry.importers import (
    KINDS,
    HeaderError,
    ImportReport,
    RowError,
    import_all_or_nothing,
)
from registry.models import Community, Role

LOGGER = logging.getLogger(__name__)
bp = Blueprint("imports", __name__, url_prefix="/admin/imports")

MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # a district's residents file is about 5 MB
PENDING_SECONDS = 3600  # an unconfirmed upload is removed after this long
ERRORS_SHOWN = 500
SESSION_KEY = "registry_import"

KIND_LABELS: dict[str, Any] = {"units": _l("Units"), "aps": _l("Access points"),
                               "residents": _l("Residents"),
                               "utilities": _l("Utility readings")}
# registry.importers.PROBLEMS in the reader's language (a test keeps the two in step).
ROW_PROBLEMS: dict[str, Any] = {
    "code": _l("%(column)s “%(value)s” must be 1 to 32 letters, digits, _ or -"),
    "not_whole": _l("%(column)s “%(value)s” is not a whole number"),
    "int_range": _l("%(column)s %(value)s must be between %(low)s and %(high)s"),
    "not_number": _l("%(column)s “%(value)s” is not a number"),
    "number_range": _l("%(column)s %(value)s is out of range (%(low)s to %(high)s)"),
    "not_bool": _l("%(column)s “%(value)s” must be 1/0, yes/no or true/false"),
    "required": _l("%(column)s is required"),
    "not_date": _l("%(column)s “%(value)s” is not a date (YYYY-MM-DD)"),
    "choice": _l("%(column)s “%(value)s” must be one of %(allowed)s"),
    "ap_id": _l("ap_id “%(value)s” must be 1 to 64 letters, digits, . _ or -"),
    "unit_needed": _l("coverage “unit” needs the unit column"),
    "unit_not_allowed": _l("coverage “%(value)s” must leave the unit column empty"),
    "floor_needed": _l("coverage “floor” needs the floor column"),
    "ssid_long": _l("ssid is longer than 32 bytes"),
    "id_invalid": _l("id_number is not a valid resident ID number (%(detail)s)"),
    "id_format": _l("id_number must be 5 to 20 letters or digits"),
    "name_required": _l("name is required (at most 200 characters)"),
    "phone": _l("phone “%(value)s” is not a mainland mobile or +international number"),
    "move_order": _l("move_out is before move_in"),
    "period_order": _l("period_end must be after period_start"),
    "not_imported": _l("%(thing)s %(value)s is not in the registry (import units first)"),
    "width": _l("the line has %(found)s fields, the header has %(expected)s"),
    "duplicate": _l("same key as line %(first)s"),
    "formula": _l("%(column)s “%(value)s” starts with “%(start)s”: a spreadsheet would run "
                  "it as a formula"),
    "out_of_scope": _l("community %(value)s is not one of your communities"),
    "too_long": _l("%(column)s is longer than %(limit)s characters"),
    "host_port": _l("%(column)s “%(value)s” must be host:port, e.g. 192.168.8.1:2050 or "
                    "[fd00::1]:2050"),
    "port": _l("%(column)s port “%(value)s” must be a number from 1 to 65535"),
    "host": _l("%(column)s host “%(value)s” is not an IP address or host name"),
}
ID_DETAILS: dict[str, Any] = {
    "must be 18 characters": _l("it must be 18 characters"),
    "must be 17 digits followed by a digit or X": _l("17 digits, then a digit or X"),
    "contains an impossible birth date": _l("the birth date is impossible"),
    "check digit does not match (GB 11643)": _l("the check digit does not match, GB 11643"),
}
THINGS: dict[str, Any] = {"unit": _l("unit"), "building": _l("building")}


class UploadForm(FlaskForm):
    """Which kind of file, and the file."""

    kind = SelectField(_l("File"), choices=[SelectChoice(k, k) for k in KINDS])
    file = FileField(_l("CSV file (UTF-8, header row as in the CLI)"))


class CommitForm(FlaskForm):
    """Only a CSRF token: what is committed is the upload named in the session."""


def problem_text(error: RowError) -> str:
    """A rejected line's reason in the reader's language (English text for unknown codes)."""
    template = ROW_PROBLEMS.get(error.code)
    if template is None:
        return error.reason
    params = {k: str(v) for k, v in error.params.items()}
    if error.code == "id_invalid":
        params["detail"] = str(ID_DETAILS.get(params.get("detail", ""), params.get("detail")))
    if error.code == "not_imported":
        params["thing"] = str(THINGS.get(params.get("thing", ""), params.get("thing")))
    if error.code == "formula":
        params["start"] = params.get("start", "").replace("\t", "TAB").replace("\r", "CR")
    try:
        return str(template) % params
    except (KeyError, TypeError, ValueError):
        return error.reason


def _folder() -> Path:
    """Where uploads wait for their commit (not served by anything)."""
    folder = services().settings.var_dir / "uploads"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _sweep(folder: Path) -> None:
    """Remove uploads nobody committed within the hour."""
    cutoff = time.time() - PENDING_SECONDS
    for path in folder.glob("*.csv"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            pass


def _pending_path(pending: dict[str, str]) -> Path | None:
    """The waiting upload of this session, if it still exists."""
    token = pending.get("token", "")
    if not token.isalnum():
        return None
    path = _folder() / f"{token}.csv"
    return path if path.exists() else None


def _drop_pending() -> None:
    """Forget (and delete) this session's waiting upload."""
    pending = session.pop(SESSION_KEY, None) or {}
    path = _pending_path(pending)
    if path is not None:
        path.unlink(missing_ok=True)


def _scope() -> frozenset[str] | None:
    """The community codes this administrator may import into (None: any, district-wide)."""
    person = staff()
    if person.district_wide:
        return None
    with services().session_factory() as db:
        return frozenset(db.scalars(select(Community.code).where(
            Community.id.in_(sorted(person.communities)))))


def _run(kind: str, path: Path, name: str, commit: bool) -> ImportReport:
    """Check (and on commit, apply) an upload as the signed-in administrator."""
    return import_all_or_nothing(
        kind, path, services().session_factory, services().cipher, commit=commit,
        actor=staff().username, communities=_scope(), client_ip=request.remote_addr or "",
        source_name=name)


def _is_text(data: bytes) -> bool:
    """Whether the bytes are UTF-8 text (a CSV), not a binary file renamed."""
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _page(form: UploadForm, report: ImportReport | None = None, name: str = "",
          status: int = 200) -> tuple[str, int]:
    """The upload page, with a check's result when there is one."""
    errors = [(e.line, problem_text(e)) for e in (report.errors if report else [])]
    return render_template(
        "admin/imports.html", form=form, commit_form=CommitForm(formdata=None), report=report,
        errors=errors[:ERRORS_SHOWN], more=max(0, len(errors) - ERRORS_SHOWN), name=name,
        kind_labels=KIND_LABELS, pending=session.get(SESSION_KEY),
        max_mb=MAX_UPLOAD_BYTES // (1024 * 1024)), status


@bp.route("/", methods=["GET", "POST"])
@roles_required(Role.ADMIN.value)
def upload() -> Any:
    """Upload a registry CSV and check it (nothing is written)."""
    # The one form besides inspections larger than the portal's 64 KiB request limit.
    request.max_content_length = MAX_UPLOAD_BYTES + 64 * 1024
    if request.method == "GET":
        return _page(_form(None))
    try:
        # Reading the form is what finds a body over the limit (Werkzeug raises then).
        form = _form(request)
        valid = form.validate_on_submit()
        upload = request.files.get("file")
    except RequestEntityTooLarge:
        # The body is not read at all; the page (whose language lookup reads the form) is
        # built as if nothing had been posted.
        request.form = ImmutableMultiDict()
        request.files = ImmutableMultiDict()
        flash(_("The file is larger than %(mb)d MB: split it and upload the parts.",
                mb=MAX_UPLOAD_BYTES // (1024 * 1024)), "error")
        return _page(_form(None), status=413)
    try:
        return _check(form, valid, upload)
    finally:
        for stored in request.files.getlist("file"):
            stored.close()  # spooled to a temporary file when large: released now


def _form(source: Any) -> UploadForm:
    """The upload form, from the request or (None) empty, with the kinds in words."""
    form = UploadForm() if source is not None else UploadForm(formdata=None)
    form.kind.choices = [SelectChoice(k, str(KIND_LABELS[k])) for k in KINDS]
    return form


def _check(form: UploadForm, valid: bool, upload: Any) -> Any:
    """Check an uploaded file (nothing written); keep it for the commit when it is clean."""
    if not valid:
        flash(_("The form was not accepted (expired or incomplete). Please try again."),
              "error")
        return _page(form, status=400)
    if upload is None or not upload.filename:
        flash(_("Please choose a file."), "error")
        return _page(form, status=422)
    name = os.path.basename(upload.filename)[:200]
    data = upload.stream.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        flash(_("The file is larger than %(mb)d MB: split it and upload the parts.",
                mb=MAX_UPLOAD_BYTES // (1024 * 1024)), "error")
        return _page(form, status=413)
    if not _is_text(data):
        flash(_("This is not a CSV text file in UTF-8."), "error")
        return _page(form, status=422)
    _drop_pending()
    folder = _folder()
    _sweep(folder)
    token = secrets.token_hex(16)
    path = folder / f"{token}.csv"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    kind = str(form.kind.data)
    try:
        report = _run(kind, path, name, commit=False)
    except HeaderError as error:
        path.unlink(missing_ok=True)
        flash(_("The header row does not match a %(kind)s file: %(detail)s",
                kind=KIND_LABELS[kind], detail=str(error).split(": ", 1)[-1]), "error")
        return _page(form, status=422)
    if report.errors:
        path.unlink(missing_ok=True)
        return _page(form, report, name, status=422)
    session[SESSION_KEY] = {"token": token, "kind": kind, "name": name}
    return _page(form, report, name)


@bp.post("/commit")
@roles_required(Role.ADMIN.value)
def commit() -> Response | tuple[str, int]:
    """Write the checked upload of this session (checked again: all lines, or none)."""
    form = _form(None)
    if not CommitForm().validate_on_submit():
        flash(_("The form was not accepted (expired or incomplete). Please try again."),
              "error")
        return _page(form, status=400)
    pending = session.get(SESSION_KEY) or {}
    path = _pending_path(pending)
    if path is None or pending.get("kind") not in KINDS:
        flash(_("There is no checked file waiting: upload it again."), "error")
        return _page(form, status=409)
    try:
        report = _run(pending["kind"], path, pending.get("name", ""), commit=True)
    finally:
        _drop_pending()
    if report.errors:
        # The registry changed since the check (someone else imported): nothing was written.
        flash(_("Nothing was written: the file no longer passes the check."), "error")
        return _page(form, report, pending.get("name", ""), status=409)
    flash(_("Imported %(name)s: %(created)d new, %(updated)d changed, %(unchanged)d "
            "unchanged.", name=pending.get("name", ""), created=report.created,
            updated=report.updated, unchanged=report.unchanged), "info")
    services().directory.invalidate()
    return redirect(url_for("imports.upload"), code=303)
