"""Human words for the codes and machine notes the back office would otherwise show raw.

Case history notes are written by analytics (``analytics.delivery``), the case clock
(``registry.casework``) and inspections (``portal.inspections``) in fixed English shapes; they
are kept that way in the database (the audit trail stays as written) and rendered here in the
reader's language. A note in no known shape, or a code with no label, is shown as written,
made readable (underscores become spaces): never an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

LOGGER = logging.getLogger(__name__)
bp = Blueprint("labels", __name__)

FLAG_LABELS: dict[str, Any] = {"group_rental": _l("suspected group rental"),
                               "attention": _l("more people than registered")}
ALERT_KIND_LABELS: dict[str, Any] = {
    "watchlist": _l("Watchlist sign-in"), "overcrowding": _l("Overcrowding flag"),
    "ap_command_refused": _l("AP refuses commands"), "sms_budget": _l("SMS budget used up"),
}
OUTCOME_LABELS: dict[str, Any] = {
    "registered": _l("registered resident"), "self_declared": _l("self-declared, unverified"),
    "unconfirmed": _l("phone not yet confirmed"),
    "mismatch": _l("identity does not match the registry"), "visitor": _l("visitor"),
}
METHOD_LABELS: dict[str, Any] = {"sms": _l("SMS code"), "one_tap": _l("one tap on a known device")}
REFUSAL_LABELS: dict[str, Any] = {
    "bad_signature": _l("bad signature (wrong key)"), "wrong_ap": _l("meant for another AP"),
    "not_yet_valid": _l("not yet valid (AP clock)"), "replayed": _l("replayed"),
    "expired": _l("expired"),
}
REQUEST_WORDS: dict[str, Any] = {"return": _l("return"), "extend": _l("extension"),
                                 "park": _l("parking")}

_NUMBER = r"-?\d+(?:\.\d+)?"
_FLAG = (r"(?P<flag>[a-z ]+): estimated (?P<estimated>" + _NUMBER + r") people \(90% "
         r"(?P<low>" + _NUMBER + r")-(?P<high>" + _NUMBER + r")\) against (?P<registered>\d+) "
         r"registered; P\(>= registered \+ 2\) = (?P<confidence>[\d.]+); (?P<nights>\d+) nights "
         r"observed, window (?P<start>[\d-]+)\.\.(?P<end>[\d-]+)")


def readable(code: str) -> str:
    """A code no label knows, shown as words."""
    return code.replace("_", " ")


def label(labels: dict[str, Any], code: str | None) -> str:
    """The label of a code, or the code made readable."""
    if not code:
        return ""
    found = labels.get(code)
    return str(found) if found is not None else readable(code)


def _flag(m: re.Match[str]) -> str:
    """A flag's evidence in words."""
    return _("%(flag)s: about %(estimated)s people living there (90%% interval %(low)s–%(high)s) "
             "against %(registered)s registered; %(confidence)s%% likely at least two more; "
             "%(nights)s nights observed, %(start)s to %(end)s",
             flag=label(FLAG_LABELS, m["flag"].replace(" ", "_")), estimated=m["estimated"],
             low=m["low"], high=m["high"], registered=m["registered"],
             confidence=f"{float(m['confidence']) * 100:.0f}", nights=m["nights"],
             start=m["start"], end=m["end"])


def _inspection(m: re.Match[str]) -> str:
    """An inspection's summary in words (with what the inspector wrote, as written)."""
    parts = [_("On-site inspection #%(id)s", id=m["id"])]
    if m["people"] is not None:
        parts.append(_("%(n)s people found", n=m["people"]))
    if m["unregistered"] is not None:
        parts.append(_("%(n)s not registered", n=m["unregistered"]))
    parts.append(_("%(n)s hazards", n=m["hazards"]))
    parts.append(_("%(n)s photos", n=m["photos"]))
    text = " · ".join(parts)
    return text + (f": {m['note']}" if m["note"] else "")


# (pattern, how to say it). Tried in order; the first that matches the whole note wins.
NOTES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"opened: " + _FLAG), lambda m: _("Opened by analytics: %(what)s",
                                                  what=_flag(m))),
    (re.compile(r"flag persists: " + _FLAG), lambda m: _("The flag persists: %(what)s",
                                                         what=_flag(m))),
    (re.compile(r"flag persists after dismissal: " + _FLAG),
     lambda m: _("Flagged again after dismissal: %(what)s", what=_flag(m))),
    (re.compile(r"opened: (?P<flag>[a-z ]+)"),
     lambda m: _("Opened by analytics: %(what)s",
                 what=label(FLAG_LABELS, m["flag"].replace(" ", "_")))),
    (re.compile(r"not flagged in window (?P<start>[\d-]+)\.\.(?P<end>[\d-]+); left open for "
                r"the hazard team to close"),
     lambda m: _("Not flagged from %(start)s to %(end)s; left open for the hazard team to "
                 "close", start=m["start"], end=m["end"])),
    (re.compile(r"overdue by (?P<d>\d+) d (?P<h>\d+) h"),
     lambda m: _("Overdue by %(days)s days %(hours)s hours", days=m["d"], hours=m["h"])),
    (re.compile(r"opened: watchlist sign-in \(alert (?P<id>\d+)\)"),
     lambda m: _("Opened by a watchlist sign-in (alert #%(id)s)", id=m["id"])),
    (re.compile(r"another watchlist sign-in \(alert (?P<id>\d+)\)"),
     lambda m: _("Another watchlist sign-in (alert #%(id)s)", id=m["id"])),
    (re.compile(r"opened by inspection (?P<id>\d+)"),
     lambda m: _("Opened from on-site inspection #%(id)s", id=m["id"])),
    (re.compile(r"inspection (?P<id>\d+):(?: people=(?P<people>\d+))?"
                r"(?: unregistered=(?P<unregistered>\d+))? hazards=(?P<hazards>\d+) "
                r"photos=(?P<photos>\d+)(?: — (?P<note>.*))?", re.S), _inspection),
    (re.compile(r"\+(?P<days>\d+) d: (?P<why>.*)", re.S),
     lambda m: _("%(days)s more days asked: %(why)s", days=m["days"], why=m["why"])),
    (re.compile(r"(?P<request>return|extend|park): (?P<why>.*)", re.S),
     lambda m: _("%(request)s: %(why)s", request=label(REQUEST_WORDS, m["request"]),
                 why=m["why"])),
]


def note_text(note: str) -> str:
    """A case history note in the reader's language; unknown shapes as written."""
    for pattern, say in NOTES:
        match = pattern.fullmatch(note)
        if match is not None:
            try:
                return say(match)
            except (KeyError, ValueError, TypeError):  # a shape half-known: show it raw
                LOGGER.warning("case note not rendered: %r", note[:80])
                return note
    return note


@bp.app_template_filter("case_note")
def _case_note(note: str) -> str:
    """Template filter: a case history note in words."""
    return note_text(note or "")


@bp.app_context_processor
def _label_context() -> dict[str, Any]:
    """The label tables and lookup for every template."""
    return {"label": label, "alert_kind_labels": ALERT_KIND_LABELS,
            "outcome_labels": OUTCOME_LABELS, "method_labels": METHOD_LABELS,
            "refusal_labels": REFUSAL_LABELS}
