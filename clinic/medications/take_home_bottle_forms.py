"""Forms of take-home bottles and call-backs (shape only: the rules are the services':
``take_home_bottles``, ``bottle_returns``, ``call_backs``)."""

from __future__ import annotations

import datetime as dt

from wtforms import (
    BooleanField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectMultipleField,
    TextAreaField,
    widgets,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from clinic.medications.take_home_bottles import MAX_DAYS_AHEAD
from clinic.medications.take_home_models import NOTE_MAX, CallBackOutcome, ReturnOutcome
from clinic.patients.forms import CreateForm

CONFIRM_MESSAGE = (
    "Confirm the bottles with the patient: a dispensing is entered in the dose ledger and "
    "cannot be changed (only reversed)."
)


class CheckboxesField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class DispenseForm(CreateForm):
    """The take-on days chosen among those offered, and the confirmation."""

    take_on = CheckboxesField(
        "Take-on days", validators=[DataRequired(message="Choose at least one take-on day.")]
    )
    confirmed = BooleanField(
        "I have checked the bottles and the days with the patient",
        validators=[DataRequired(message=CONFIRM_MESSAGE)],
    )
    # How many bottles the page showed in the patient's hands (a later dispensing: a race).
    in_hands = HiddenField(validators=[Optional(), Length(max=2)])

    @property
    def seen_in_hands(self) -> int | None:
        raw = self.in_hands.data or ""
        return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 2 else None

    @property
    def days(self) -> list[dt.date]:
        """The chosen days (the choices are ISO dates set by the view)."""
        return [dt.date.fromisoformat(value) for value in self.take_on.data or []]


RETURN_CHOICES = [SelectChoice(o.value, o.label) for o in ReturnOutcome]


def returns_form(bottle_ids: list[int]) -> type[CreateForm]:
    """A form with one outcome (returned empty / not returned / tampered) per bottle due
    back, ``bottle_<id>``, and one note for the visit."""

    class ReturnsForm(CreateForm):
        note = TextAreaField(
            "Note",
            description="Required when a bottle is not returned or tampered: it describes the "
            "finding on the diversion incident.",
            validators=[Optional(), Length(max=NOTE_MAX - 200)],
        )

        def outcomes(self) -> dict[int, str]:
            return {i: self[f"bottle_{i}"].data for i in bottle_ids}

    for bottle_id in bottle_ids:
        setattr(
            ReturnsForm,
            f"bottle_{bottle_id}",
            RadioField(
                "Bottle",
                choices=RETURN_CHOICES,
                validators=[InputRequired(message="Record what came back for this bottle.")],
            ),
        )
    return ReturnsForm


class StartCallBackForm(CreateForm):
    """Start a call-back now: the patient is asked to bring every bottle within 24 hours."""

    confirmed = BooleanField(
        "The patient was called and asked to bring every remaining bottle within 24 hours",
        validators=[DataRequired(message="Confirm that the patient was called.")],
    )


class CallBackOutcomeForm(CreateForm):
    """The call-back's outcome, the bottles counted, a note (required for a finding)."""

    outcome = RadioField(
        "Outcome",
        choices=[SelectChoice(o.value, o.label) for o in CallBackOutcome],
        validators=[InputRequired(message="Choose the outcome.")],
    )
    bottles_counted = IntegerField(
        "Bottles counted",
        description="Leave empty if the patient did not come.",
        validators=[
            Optional(),
            NumberRange(min=0, max=MAX_DAYS_AHEAD, message="Enter a count from 0 to 28."),
        ],
    )
    note = TextAreaField(
        "Note",
        description="Required for a finding: it describes the diversion incident.",
        validators=[Optional(), Length(max=NOTE_MAX - 200)],
    )
