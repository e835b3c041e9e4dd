"""The audit viewer's filter form (read from the query string).

An invalid filter fails closed: the viewer shows the error next to the field and no
events, the CSV export answers 400 (``views.py``). Every value is bounded here, so none
reaches the database out of its column's range.
"""

from __future__ import annotations

import datetime as dt

from wtforms import (
    BooleanField,
    DateField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    Optional,
    ValidationError,
)

from clinic.audit.models import REVIEW_NOTE_MAX, AuditAction, ReviewOutcome
from clinic.forms import ClinicForm

# The trail starts long after the first and ends long before the last date a
# ``date`` can hold (a "to" date of 9999-12-31 would overflow when its day is closed).
EARLIEST_DATE = dt.date(2000, 1, 1)
LATEST_DATE = dt.date(2999, 12, 31)
DATE_MESSAGE = f"Enter a date from {EARLIEST_DATE.isoformat()} to {LATEST_DATE.isoformat()}."
# Shown only for a value a date input cannot send (the browser shows its own format).
DATE_FORMAT = "Enter a valid date."
REVERSED_RANGE_MESSAGE = "The To date is before the From date: enter a To date on or after it."
FILTER_NAMES = ("user", "patient", "action", "entity", "date_from", "date_to")


def _date_in_range(form: ClinicForm, field: DateField) -> None:
    if field.data is not None and not EARLIEST_DATE <= field.data <= LATEST_DATE:
        raise ValidationError(DATE_MESSAGE)


class AuditFilterForm(ClinicForm):
    class Meta:
        csrf = False  # a GET search form: it changes nothing

    user = StringField(
        "Username starts with",
        validators=[Optional(), Length(max=64, message="Enter at most 64 characters.")],
    )
    patient = StringField(
        "Patient (MRN or name)",
        validators=[Optional(), Length(max=80, message="Enter at most 80 characters.")],
    )
    action = SelectField(
        "Action",
        choices=[SelectChoice("", "Any")] + [SelectChoice(a.value, a.value) for a in AuditAction],
        validators=[Optional()],
        validate_choice=True,
    )
    entity = StringField(
        "Record type",
        validators=[Optional(), Length(max=32, message="Enter at most 32 characters.")],
    )
    date_from = DateField(
        "From (UTC)", validators=[Optional(), _date_in_range], invalid_value_message=DATE_FORMAT
    )
    date_to = DateField(
        "To (UTC)", validators=[Optional(), _date_in_range], invalid_value_message=DATE_FORMAT
    )

    def validate_date_to(self, field: DateField) -> None:
        start = self.date_from.data
        if field.data is not None and start is not None and field.data < start:
            raise ValidationError(REVERSED_RANGE_MESSAGE)

    def submitted_filters(self) -> dict[str, str]:
        """The filters the user gave, as query-string values (for the pager and CSV
        links): only this form's own fields, never other keys of the query string."""
        return {
            name: self[name].raw_data[0]
            for name in FILTER_NAMES
            if self[name].raw_data and self[name].raw_data[0]
        }


class ReviewForm(ClinicForm):
    """Acknowledging an emergency access: the outcome, a note (required for an
    escalation, checked by the service too) and a confirmation, since an
    acknowledgement cannot be undone."""

    outcome = RadioField(
        "Outcome of the review",
        choices=[SelectChoice(o.value, o.label) for o in ReviewOutcome],
        validators=[InputRequired(message="Choose an outcome.")],
    )
    note = TextAreaField(
        "Note",
        description="Required when escalating: what follows and who was told. "
        "Kept with the review; never copied into the audit trail.",
        validators=[
            Optional(),
            Length(max=REVIEW_NOTE_MAX, message=f"Enter at most {REVIEW_NOTE_MAX} characters."),
        ],
    )
    confirm = BooleanField(
        "I reviewed this access. An acknowledgement cannot be undone.",
        validators=[DataRequired(message="Tick the box to confirm the acknowledgement.")],
    )
    submit = SubmitField("Acknowledge")


class ReportPeriodForm(ClinicForm):
    """The period of a patient access report: days in the patient's site time zone,
    both optional (without them, every recorded access)."""

    class Meta:
        csrf = False  # a GET form: it changes nothing

    date_from = DateField(
        "From", validators=[Optional(), _date_in_range], invalid_value_message=DATE_FORMAT
    )
    date_to = DateField(
        "To", validators=[Optional(), _date_in_range], invalid_value_message=DATE_FORMAT
    )

    def validate_date_to(self, field: DateField) -> None:
        start = self.date_from.data
        if field.data is not None and start is not None and field.data < start:
            raise ValidationError(REVERSED_RANGE_MESSAGE)
