"""The audit viewer's filter form (read from the query string).

An invalid filter fails closed: the viewer shows the error next to the field and no
events, the CSV export answers 400 (``views.py``). Every value is bounded here, so none
reaches the database out of its column's range.
"""

from __future__ import annotations

import datetime as dt

from wtforms import DateField, IntegerField, SelectChoice, SelectField, StringField
from wtforms.validators import Length, NumberRange, Optional, ValidationError

from clinic.audit.models import AuditAction
from clinic.audit.services import MAX_ID
from clinic.forms import ClinicForm

# The trail starts long after the first and ends long before the last date a
# ``date`` can hold (a "to" date of 9999-12-31 would overflow when its day is closed).
EARLIEST_DATE = dt.date(2000, 1, 1)
LATEST_DATE = dt.date(2999, 12, 31)
DATE_MESSAGE = f"Enter a date from {EARLIEST_DATE.isoformat()} to {LATEST_DATE.isoformat()}."
DATE_FORMAT = "Enter a date as YYYY-MM-DD, like 2026-03-31."
FILTER_NAMES = ("user", "patient", "action", "entity", "date_from", "date_to")


def _date_in_range(form: ClinicForm, field: DateField) -> None:
    if field.data is not None and not EARLIEST_DATE <= field.data <= LATEST_DATE:
        raise ValidationError(DATE_MESSAGE)


class AuditFilterForm(ClinicForm):
    class Meta:
        csrf = False  # a GET search form: it changes nothing

    user = StringField(
        "Username", validators=[Optional(), Length(max=64, message="Enter at most 64 characters.")]
    )
    patient = IntegerField(
        "Patient id",
        invalid_value_message="Enter a patient id as a whole number, like 1042.",
        validators=[
            Optional(),
            NumberRange(min=1, max=MAX_ID, message="Enter a patient id from 1 to %(max)s."),
        ],
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
            raise ValidationError("Enter a date on or after the From date.")

    def submitted_filters(self) -> dict[str, str]:
        """The filters the user gave, as query-string values (for the pager and CSV
        links): only this form's own fields, never other keys of the query string."""
        return {
            name: self[name].raw_data[0]
            for name in FILTER_NAMES
            if self[name].raw_data and self[name].raw_data[0]
        }
