"""Forms for medication orders, holds and flags (shape only: the rules are the services')."""

from __future__ import annotations

from wtforms import DateField, SelectChoice, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from clinic.errors import DomainError
from clinic.medications.amounts import parse_mg
from clinic.medications.models import FlagCategory, Medication, ProductForm, Schedule
from clinic.patients.forms import CreateForm, PatientsBaseForm


def _choices(enum, blank: str = "Choose…") -> list[SelectChoice]:
    return [SelectChoice("", blank), *(SelectChoice(m.value, m.label) for m in enum)]


def _milligrams(label: str):
    """A validator: text that is an amount in mg (exact decimal, above 0, at most the
    ceiling, to 0.01 mg); "abc" or "-5" is an error next to the field."""

    def check(form, field) -> None:
        if not (field.data or "").strip():
            return
        try:
            parse_mg(field.data, field=field.name, label=label)
        except DomainError as error:
            raise ValidationError(error.message) from None

    return check


def MgField(label: str, description: str = "", *, required: bool = False) -> StringField:
    return StringField(
        label,
        description=description,
        validators=[
            InputRequired() if required else Optional(),
            Length(max=12),
            _milligrams(label.lower().replace(" (mg)", "")),
        ],
        render_kw={"inputmode": "decimal", "autocomplete": "off"},
    )


class OrderForm(CreateForm):
    """A new order, a dose change or a switch (the view picks which fields it shows)."""

    enrollment_id = SelectField("Enrollment", coerce=int, validators=[Optional()])
    medication = SelectField(
        "Medication", choices=_choices(Medication), validators=[DataRequired()]
    )
    product_form = SelectField(
        "Product and form", choices=_choices(ProductForm), validators=[DataRequired()]
    )
    strength = StringField(
        "Strength",
        description="As on the product, e.g. 10 mg/mL, 8 mg/2 mg.",
        validators=[DataRequired(), Length(max=40)],
    )
    dose_mg = MgField(
        "Dose (mg)", "Exact, e.g. 62.5. A split dose: the day's total.", required=True
    )
    schedule = SelectField("Schedule", choices=_choices(Schedule), validators=[DataRequired()])
    split_first_mg = MgField("First portion (mg)", "Split schedule only.")
    split_second_mg = MgField("Second portion (mg)", "Split schedule only.")
    start_on = DateField("Start date", validators=[InputRequired()])
    reason = TextAreaField(
        "Reason",
        description="Required for a change larger than the program's step and for a switch.",
        validators=[Optional(), Length(max=500)],
    )
    justification = TextAreaField(
        "Clinical justification",
        description=(
            "Required for methadone above 50 mg on the first day (42 CFR 8.12(h)(3)(ii)), a "
            "dose above the usual range, or naltrexone without 7 opioid-free days."
        ),
        validators=[Optional(), Length(max=1000)],
    )
    last_opioid_use_on = DateField(
        "Last opioid use", description="For naltrexone.", validators=[Optional()]
    )
    submit = SubmitField("Save order")


class EndOrderForm(PatientsBaseForm):
    end_on = DateField(
        "Last day of the order",
        description="The last day it was in force, today at the latest.",
        validators=[InputRequired()],
    )
    reason = TextAreaField("Reason", validators=[DataRequired(), Length(max=500)])
    submit = SubmitField("End the order")


class HoldForm(CreateForm):
    reason = TextAreaField("Reason for the hold", validators=[DataRequired(), Length(max=500)])
    until_on = DateField(
        "Hold until (last day)",
        description="Leave empty to hold until a clinician lifts it.",
        validators=[Optional()],
    )
    submit = SubmitField("Place the hold")


class LiftHoldForm(PatientsBaseForm):
    reason = TextAreaField("Reason for lifting", validators=[DataRequired(), Length(max=500)])
    submit = SubmitField("Lift the hold")


class FlagForm(CreateForm):
    category = SelectField(
        "Category",
        choices=_choices(FlagCategory),
        description="A warning must be acknowledged at the dosing window once a day.",
        validators=[DataRequired()],
    )
    text = TextAreaField("Text", validators=[DataRequired(), Length(max=500)])
    submit = SubmitField("Add the flag")


class ClearFlagForm(PatientsBaseForm):
    submit = SubmitField("Clear")
