"""Forms of the take-home decision pages (shape only: the rules are
``clinic.medications.take_home_decisions``'s)."""

from __future__ import annotations

from wtforms import (
    BooleanField,
    DateField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, Optional

from clinic.accounts.forms import MultiCheckboxField
from clinic.medications.take_home_decisions import Criterion
from clinic.medications.take_home_models import (
    CRITERIA,
    NOTE_MAX,
    REASON_MAX,
    ReviewOutcome,
    ScheduleKind,
)
from clinic.patients.forms import CreateForm

WEEKDAY_CHOICES = [
    SelectChoice(str(n), name)
    for n, name in enumerate(
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"), start=1
    )
]


class DecisionForm(CreateForm):
    """A take-home decision: the order, the schedule (a run of days or weekly days), the six
    criteria each met with a note, safe-storage education, and — for a prescriber —
    approval at once. ``order_id`` choices are set by the view."""

    order_id = SelectField("Order", validators=[InputRequired(message="Choose the order.")])
    schedule_kind = RadioField(
        "Schedule",
        choices=[SelectChoice(k.value, k.label) for k in ScheduleKind],
        default=ScheduleKind.DAYS.value,
        validators=[InputRequired(message="Choose a run of days or a weekly schedule.")],
    )
    start_on = DateField(
        "First take-home day", validators=[InputRequired(message="Enter the first day.")]
    )
    days = IntegerField(
        "Number of days (a run of days)",
        validators=[Optional()],
        description="1 to 28 consecutive days from the first day; clinic-closed days are "
        "not counted against the cap.",
        render_kw={"inputmode": "numeric", "autocomplete": "off"},
    )
    weekdays = MultiCheckboxField("Days of the week (a weekly schedule)", choices=WEEKDAY_CHOICES)
    end_on = DateField("Last day of the weekly schedule (optional)", validators=[Optional()])
    storage_education_on = DateField(
        "Safe-storage education given on",
        validators=[InputRequired(message="Enter the day safe-storage education was given.")],
    )
    approve = BooleanField("Approve now (prescriber)")

    def criteria(self) -> dict[str, Criterion]:
        return {
            name: Criterion(
                met=bool(getattr(self, f"{name}_met").data), note=getattr(self, f"{name}_note").data
            )
            for name, _label in CRITERIA
        }

    def criterion_fields(self):
        """(label, met field, note field) in the order of 42 CFR 8.12(i)(2)."""
        return [
            (label, getattr(self, f"{name}_met"), getattr(self, f"{name}_note"))
            for name, label in CRITERIA
        ]


for _name, _label in CRITERIA:
    setattr(DecisionForm, f"{_name}_met", BooleanField("Met"))
    setattr(
        DecisionForm,
        f"{_name}_note",
        TextAreaField(f"Note: {_label}", validators=[Length(max=NOTE_MAX)], render_kw={"rows": 2}),
    )


class ApproveForm(CreateForm):
    """A prescriber's approval (the CSRF token and the submission token)."""


class DeclineForm(CreateForm):
    reason = TextAreaField(
        "Reason for declining",
        validators=[InputRequired(message="Say why it is declined."), Length(max=REASON_MAX)],
        render_kw={"rows": 2},
    )


class EndForm(CreateForm):
    ended_on = DateField(
        "First day no longer covered",
        validators=[InputRequired(message="Enter the first day it no longer covers.")],
    )
    reason = TextAreaField(
        "Reason",
        validators=[InputRequired(message="Say why it ends."), Length(max=REASON_MAX)],
        render_kw={"rows": 2},
    )


class ReviewForm(CreateForm):
    outcome = RadioField(
        "Outcome",
        choices=[SelectChoice(o.value, o.label) for o in ReviewOutcome],
        validators=[InputRequired(message="Choose to continue or end the decision.")],
    )
    note = TextAreaField(
        "Review note",
        validators=[InputRequired(message="Write the review's note."), Length(max=NOTE_MAX)],
        render_kw={"rows": 3},
    )
