"""Flask-WTF forms: the resident's pages (CSRF bound to the sign-in flow) and the staff's.

Residents' forms cannot rely on a session cookie (captive mini-browsers drop them), so their
CSRF token is an HMAC of the flow id and a timestamp, checked against the signed flow token
posted with it: a page on another site cannot produce either for someone else's flow. Staff
forms use Flask-WTF's usual session-bound token.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
    ValidationError,
)
from wtforms.csrf.core import CSRF
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length

from portal.identity import id_number_problem, name_problem, phone_problem
from registry.models import IdType

PROBLEM_MESSAGES: dict[str, Any] = {
    "name_required": _l("Please enter your name."),
    "name_invalid": _l("Please enter your name as on your ID document (letters only)."),
    "phone_required": _l("Please enter your mobile number."),
    "phone_invalid": _l("Please enter a mobile number that can receive text messages "
                        "(mainland: 11 digits)."),
    "id_required": _l("Please enter your ID number."),
    "id_length": _l("A resident ID card number has 18 characters."),
    "id_characters": _l("A resident ID card number is 17 digits followed by a digit or X."),
    "id_birth_date": _l("The birth date inside this ID card number is not possible."),
    "id_checksum": _l("This ID card number is not valid: its last character does not match. "
                      "Please check it."),
    "id_invalid": _l("This ID card number is not valid."),
    "id_other_invalid": _l("Please enter the document number: 5 to 20 letters or digits."),
}

ID_TYPE_LABELS: dict[str, Any] = {
    IdType.RESIDENT_ID_CARD.value: _l("Resident ID card (mainland)"),
    IdType.PASSPORT.value: _l("Passport"),
    IdType.HK_MACAO_PERMIT.value: _l("Mainland travel permit for Hong Kong and Macao residents"),
    IdType.TAIWAN_PERMIT.value: _l("Mainland travel permit for Taiwan residents"),
    IdType.FOREIGN_PERMANENT_ID.value: _l("Foreigner's permanent residence ID card"),
    IdType.OTHER.value: _l("Other document"),
}

UNIT_NOT_GIVEN = ""
UNIT_VISITOR = "visitor"


def _flow_mac(secret: Any, fid: str, stamp: str) -> str:
    """HMAC of flow id and timestamp under the CSRF secret."""
    message = f"{fid}.{stamp}".encode()
    return hmac.new(str(secret).encode("utf-8"), message, hashlib.sha256).hexdigest()


def flow_csrf_token(fid: str) -> str:
    """A flow's CSRF token as FlowCSRF makes it, for a page rendered without its form."""
    secret = current_app.config.get("WTF_CSRF_SECRET_KEY", current_app.secret_key)
    stamp = str(int(time.time()))
    return f"{stamp}.{_flow_mac(secret, fid, stamp)}"


class FlowCSRF(CSRF):
    """A CSRF token bound to the sign-in flow id instead of a cookie session."""

    def setup_form(self, form: Any) -> Any:
        """Keep the form's meta (flow id, secret, time limit) for token work."""
        self.form_meta = form.meta
        return super().setup_form(form)

    def _mac(self, stamp: str) -> str:
        """HMAC of flow id and timestamp under the CSRF secret."""
        return _flow_mac(self.form_meta.csrf_secret, str(self.form_meta.csrf_context), stamp)

    def generate_csrf_token(self, csrf_token_field: Any) -> str:
        """A fresh token for this flow."""
        stamp = str(int(time.time()))
        return f"{stamp}.{self._mac(stamp)}"

    def validate_csrf_token(self, form: Any, field: Any) -> None:
        """Refuse a token that is missing, forged, for another flow or too old."""
        stamp, _, mac = str(field.data or "").partition(".")
        # ASCII first: compare_digest raises TypeError on a non-ASCII str (a 500, found by
        # bench/form_fuzz.py), and str.isdigit() is true for other scripts' digits.
        if not (stamp.isascii() and stamp.isdigit() and mac.isascii()) or not (
                hmac.compare_digest(self._mac(stamp), mac)):
            raise ValidationError(_l("This page has expired. Please start again."))
        if time.time() - int(stamp) > int(self.form_meta.csrf_time_limit or 3600):
            raise ValidationError(_l("This page has expired. Please start again."))


class FlowForm(FlaskForm):
    """Base of the resident's forms: the signed flow token and the chosen language."""

    class Meta(FlaskForm.Meta):
        """CSRF bound to the flow (pass meta={'csrf_context': fid})."""

        csrf_class = FlowCSRF

    flow = HiddenField()
    lang = HiddenField()


def _problem_check(check: Any) -> Any:
    """A WTForms validator from a problem-code function."""

    def validate(form: Any, field: Any) -> None:
        """Raise the translated message for the field's problem, if any."""
        problem = check(field.data or "")
        if problem:
            raise ValidationError(PROBLEM_MESSAGES[problem])

    return validate


def _validate_phone(form: Any, field: Any) -> None:
    """A mobile of a region codes are sent to (WIFI_CENSUS_PORTAL_SMS_REGIONS)."""
    regions = current_app.extensions["portal"].settings.portal_sms_regions
    problem = phone_problem(field.data or "", regions)
    if problem:
        raise ValidationError(PROBLEM_MESSAGES[problem])


def _validate_id_number(form: Any, field: Any) -> None:
    """Check the number against the chosen document type (GB 11643 for ID cards)."""
    problem = id_number_problem(form.id_type.data or "", field.data or "")
    if problem:
        raise ValidationError(PROBLEM_MESSAGES[problem])


class ChoiceSetField(SelectField):
    """A SelectField checked against a set of allowed values when one is given: WTForms
    normalises every choice on every check, and a building AP lists a hundred units."""

    allowed: frozenset[str] | None = None

    def pre_validate(self, form: Any) -> None:
        """The posted value must be one of the allowed ones (as SelectField checks it)."""
        if self.allowed is None or self.process_errors or not self.validate_choice:
            super().pre_validate(form)
        elif self.data not in self.allowed:
            raise ValidationError(
                self.invalid_choice_message or self.gettext("Not a valid choice."))


class PhoneForm(FlowForm):
    """The first page: the mobile number the code goes to, and consent."""

    phone = StringField(_l("Mobile number"), validators=[_validate_phone])
    consent = BooleanField(validators=[DataRequired(
        _l("Please read and accept the terms and the privacy notice."))])
    submit = SubmitField(_l("Get verification code"))


class IdentityForm(FlowForm):
    """The last page, once the number is proven: name, identity document, where one lives."""

    name = StringField(_l("Full name"), validators=[_problem_check(name_problem)])
    id_type = SelectField(_l("ID document"),
                          choices=[SelectChoice(v, label) for v, label in ID_TYPE_LABELS.items()],
                          default=IdType.RESIDENT_ID_CARD.value,
                          invalid_choice_message=_l("Please choose from the list."))
    id_number = StringField(_l("ID number"), validators=[_validate_id_number])
    unit = ChoiceSetField(_l("Where do you live?"), choices=[], validate_choice=True,
                       invalid_choice_message=_l("Please choose from the list."))
    submit = SubmitField(_l("Sign in and connect"))


class CodeForm(FlowForm):
    """The six-digit code from the SMS."""

    code = StringField(_l("Verification code"),
                       validators=[InputRequired(_l("Please enter the 6-digit code.")),
                                   Length(min=6, max=8,
                                          message=_l("Please enter the 6-digit code."))])
    submit = SubmitField(_l("Verify and connect"))


class ResendForm(FlowForm):
    """Ask for a new code."""

    submit = SubmitField(_l("Send a new code"))


class OneTapForm(FlowForm):
    """Sign a known device in with one tap."""

    submit = SubmitField(_l("Connect"))


class StaffLoginForm(FlaskForm):
    """Staff user name and password."""

    username = StringField(_l("User name"), validators=[InputRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[InputRequired(), Length(max=200)])
    submit = SubmitField(_l("Sign in"))


class MoveOutForm(FlaskForm):
    """Record a resident's move-out (revokes every device)."""

    move_out = DateField(_l("Move-out date"), validators=[InputRequired()])
    submit = SubmitField(_l("Record move-out and revoke devices"))


class AcknowledgeForm(FlaskForm):
    """Acknowledge an alert."""

    submit = SubmitField(_l("Acknowledge"))
