"""Choosing the page language: an explicit choice, else the browser's, else Chinese."""

from __future__ import annotations

from collections.abc import Iterable

from babel import Locale
from flask import request
from flask_babel import get_locale

from portal.const import DEFAULT_LOCALE, LOCALES

# Catalogs live in portal/translations/zh_Hans_CN: Babel parses "zh_CN" as zh_Hans_CN.
# Primary language subtag -> our locale. Any Chinese (zh-CN, zh-Hans-CN, zh-TW, zh-HK) gets the
# simplified Chinese pages: the only Chinese catalog we have.
_PRIMARY = {"zh": "zh_CN", "en": "en"}


def best_locale(accepted: Iterable[tuple[str, float]]) -> str:
    """Our locale for an Accept-Language list of (tag, quality), best quality first."""
    ranked = sorted(accepted, key=lambda item: -item[1])
    for tag, quality in ranked:
        if quality <= 0:
            continue
        locale = _PRIMARY.get(tag.replace("_", "-").split("-")[0].lower())
        if locale:
            return locale
    return DEFAULT_LOCALE


# Parsed once: Babel's Locale.parse of a string costs about half a millisecond (it scans the
# list of known locales), and Flask-Babel passes a Locale object through unchanged.
_PARSED = {name: Locale.parse(name) for name in LOCALES}


def select_locale() -> Locale:
    """Flask-Babel's locale selector: ?lang= or form lang, then Accept-Language."""
    chosen = request.values.get("lang", "")
    if chosen in LOCALES:
        return _PARSED[chosen]
    return _PARSED[best_locale(request.accept_languages)]


def page_locale() -> str:
    """The request's locale as one of LOCALES (Babel expands zh_CN to zh_Hans_CN)."""
    locale = get_locale()
    if locale is not None and locale.language == "en":
        return "en"
    return DEFAULT_LOCALE
