"""Forms of the dosing window (shape only: the rules are ``clinic.medications.ledger``'s)."""

from __future__ import annotations

from wtforms import (
    BooleanField,
    HiddenField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from clinic.errors import DomainError
from clinic.medications import ledger
from clinic.medications.models import ReviewDecision
from clinic.patients.forms import CreateForm, PatientsBaseForm

DOB_NOT_CONFIRMED_MESSAGE = "Confirm the date of birth with the patient before recording."


def _milligrams(form, field) -> None:
    """Text that is an amount in mg: "abc", "-5", "0" or "10000" is an error next to the
    field (``ledger.parse_mg``)."""
    try:
        ledger.parse_mg(field.data, field_name=field.name)
    except DomainError as error:
        raise ValidationError(error.message) from None


def _amount_field(label: str = "Amount (mg)") -> StringField:
    return StringField(
        label,
        validators=[InputRequired(message="Enter the amount in mg."), Length(max=12), _milligrams],
        render_kw={"inputmode": "decimal", "autocomplete": "off"},
    )


class DoseForm(CreateForm):
    """Record today's observed dose: the date of birth confirmed with the patient, the
    amount (prefilled from the order), a reason when it differs, the dosing station."""

    dob_confirmed = BooleanField(
        "Date of birth confirmed with the patient",
        validators=[DataRequired(message=DOB_NOT_CONFIRMED_MESSAGE)],
        description="Space checks it; Enter records.",
        render_kw={"autofocus": True},
    )
    amount_mg = _amount_field()
    reason = StringField(
        "Reason (when the amount differs from the order)",
        validators=[Optional(), Length(max=500)],
    )
    station = StringField(
        "Dosing station",
        description="Kept for your next doses on this device.",
        validators=[Optional(), Length(max=40)],
        render_kw={"autocomplete": "off"},
    )
    # How many doses of the day the page showed (a later dose by someone else: a race).
    given_count = HiddenField(validators=[Optional(), Length(max=2)])

    @property
    def seen_given(self) -> int | None:
        raw = self.given_count.data or ""
        return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 2 else None


class HeldForm(CreateForm):
    """Today's dose held (not given), with the reason."""

    held_reason = StringField(
        "Reason the dose is held",
        validators=[DataRequired(message=ledger.HELD_REASON_MESSAGE), Length(max=500)],
    )


class AcknowledgeForm(PatientsBaseForm):
    """Acknowledge a warning flag for today (its id in a hidden field)."""

    flag_id = HiddenField(validators=[DataRequired()])

    @property
    def flag_number(self) -> int | None:
        raw = self.flag_id.data or ""
        return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None


class ReverseForm(CreateForm):
    """Reverse one of the patient's recent doses, with the reason."""

    dose_id = RadioField(
        "Dose to reverse", coerce=int, validators=[InputRequired(message="Choose the dose.")]
    )
    reason = TextAreaField(
        "Reason for the reversal",
        validators=[DataRequired(message=ledger.REVERSAL_REASON_MESSAGE), Length(max=500)],
    )


class InjectionForm(CreateForm):
    """An extended-release injection: amount, lot, site of injection."""

    dob_confirmed = BooleanField(
        "Date of birth confirmed with the patient",
        validators=[DataRequired(message=DOB_NOT_CONFIRMED_MESSAGE)],
        description="Space checks it; Enter records.",
        render_kw={"autofocus": True},
    )
    amount_mg = _amount_field()
    lot = StringField(
        "Lot number",
        validators=[DataRequired(message="Enter the lot number from the package."), Length(max=40)],
        render_kw={"autocomplete": "off"},
    )
    injection_site = SelectField(
        "Site of injection",
        choices=[SelectChoice("", "Choose…")]
        + [SelectChoice(value, label) for value, label in ledger.INJECTION_SITES],
        validators=[DataRequired(message="Choose the site of injection.")],
    )
    reason = StringField(
        "Reason (when the amount differs from the order)",
        validators=[Optional(), Length(max=500)],
    )


class MissedReviewForm(CreateForm):
    """A clinician's review of 3 or more missed days."""

    decision = RadioField(
        "What happens next",
        choices=[SelectChoice(d.value, d.label) for d in ReviewDecision],
        validators=[InputRequired(message="Choose what happens next.")],
    )
    note = TextAreaField(
        "Note",
        description="Required for a hold: it becomes the hold's reason.",
        validators=[Optional(), Length(max=500)],
    )
