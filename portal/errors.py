"""Styled error pages (403, 404, 500) in the page's language, for staff and residents alike."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify, render_template, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

LOGGER = logging.getLogger(__name__)
bp = Blueprint("errors", __name__)


def _page(code: int, title: str, message: str) -> tuple[Any, int]:
    """The error page (JSON for the API)."""
    if request.path.startswith("/api/"):
        return jsonify({"error": code, "message": title}), code
    home = "/admin/" if request.path.startswith("/admin") else "/"
    return render_template("admin/error.html", code=code, title=title, message=message,
                           home=home), code


@bp.app_errorhandler(403)
def forbidden(_error: HTTPException) -> tuple[Any, int]:
    """Not allowed."""
    return _page(403, _("Not allowed"),
                 _("Your role or your communities do not include this page."))


@bp.app_errorhandler(404)
def not_found(_error: HTTPException) -> tuple[Any, int]:
    """Not there (or not yours: the two look the same)."""
    return _page(404, _("Page not found"),
                 _("There is nothing here, or it is not in your communities."))


@bp.app_errorhandler(500)
def server_error(_error: Exception) -> tuple[Any, int]:
    """Something broke; the log has the details."""
    return _page(500, _("Something went wrong"),
                 _("The problem has been logged. Please try again in a moment."))
