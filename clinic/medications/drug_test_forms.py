"""Forms of the drug test pages (shape only: the rules are ``clinic.medications.drug_tests``').

Text fields are checked for control characters and NUL bytes by ``clinic.forms.ClinicForm``
(the results' rows too: it walks FieldList entries).
"""

from __future__ import annotations

from typing import Any

from flask import has_request_context, request
from wtforms import (
    BooleanField,
    DateField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
    TimeField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from clinic.forms import OUT_OF_DATE_FORM_MESSAGE
from clinic.medications.drug_test_models import (
    OTHER_ANALYTE_MAX,
    REASON_MAX,
    Analyte,
    ResultMethod,
    ResultValue,
    Specimen,
    TestReason,
)
from clinic.medications.drug_tests import TEMPERATURE_NEEDED_MESSAGE
from clinic.patients.forms import CreateForm

MAX_ROWS = 20
YES_NO = [SelectChoice("", "Choose…"), SelectChoice("yes", "Yes"), SelectChoice("no", "No")]


def _choices(enum, blank: str | None = "Choose…") -> list[SelectChoice]:
    items = [SelectChoice(m.value, m.label) for m in enum]
    return [SelectChoice("", blank), *items] if blank is not None else items


NOT_APPLICABLE = "na"


def yes_no(value: str | None) -> bool | None:
    """The temperature answer as stored: True for "yes", False for "no", None for anything
    else (blank, ``NOT_APPLICABLE``)."""
    return {"yes": True, "no": False}.get(value or "")


class CollectionForm(CreateForm):
    """A specimen collected: when (site-local), what, observed or not, random or scheduled,
    and the validity checks. ``selection_id``: the random draw's selection it answers."""

    collected_on = DateField("Collection date", validators=[InputRequired("Enter the date.")])
    collected_time = TimeField(
        "Collection time", validators=[InputRequired("Enter the time.")], format="%H:%M"
    )
    specimen = SelectField(
        "Specimen", choices=_choices(Specimen), validators=[DataRequired("Choose the specimen.")]
    )
    observed = SelectField(
        "Observed collection",
        choices=YES_NO,
        validators=[DataRequired("Say whether the collection was observed.")],
    )
    reason = SelectField(
        "Random or scheduled",
        choices=_choices(TestReason),
        validators=[DataRequired("Choose random or scheduled.")],
    )
    temperature_in_range = SelectField(
        "Temperature in range (urine, 32 to 38 °C within 4 minutes)",
        choices=[
            SelectChoice("", "Choose…"),
            SelectChoice("yes", "In range"),
            SelectChoice("no", "Out of range"),
            SelectChoice(NOT_APPLICABLE, "Not applicable (oral fluid)"),
        ],
        description="Required for urine; not applicable to oral fluid.",
        validators=[Optional()],
    )
    adulteration_suspected = BooleanField("Adulteration or substitution suspected")
    selection_id = HiddenField(validators=[Optional(), Length(max=10)])
    submit = SubmitField("Record the collection")

    @property
    def selection_number(self) -> int | None:
        raw = self.selection_id.data or ""
        return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators=extra_validators)
        # Urine needs the temperature check answered (the service's rule, said here too so
        # that it comes with the form's other messages, in one round).
        if (
            self.specimen.data == Specimen.URINE.value
            and yes_no(self.temperature_in_range.data) is None
            and not self.temperature_in_range.errors
        ):
            self.temperature_in_range.errors = [TEMPERATURE_NEEDED_MESSAGE]
            ok = False
        raw = self.selection_id.data or ""
        if raw and self.selection_number is None:
            if OUT_OF_DATE_FORM_MESSAGE not in self.form_errors:
                self.form_errors.append(OUT_OF_DATE_FORM_MESSAGE)
            ok = False
        return ok


class ResultRowForm(Form):
    """One analyte's line (a FieldList entry: ``rows-<i>-result``, the names the service's
    errors use). A row whose result is left empty is not entered."""

    analyte = HiddenField()
    other_name = StringField(
        "Substance",
        validators=[Optional(), Length(max=OTHER_ANALYTE_MAX)],
        render_kw={"autocomplete": "off"},
    )
    result = SelectField("Result", choices=_choices(ResultValue, "—"), validators=[Optional()])
    method = SelectField(
        "Method", choices=_choices(ResultMethod, None), validators=[DataRequired()]
    )


class ResultsForm(CreateForm):
    """The results of one test: the standard panel's rows and two for other substances."""

    rows = FieldList(FormField(ResultRowForm), max_entries=MAX_ROWS)
    submit = SubmitField("Save the results")

    def too_many_rows(self) -> bool:
        """FieldList keeps the first ``MAX_ROWS`` entries sent and drops the rest without
        a word: a form sent with more (tampered with) is refused, never half-saved."""
        if not has_request_context():
            return False
        sent = {key.split("-")[1] for key in request.form if key.startswith("rows-")}
        return len(sent) > MAX_ROWS

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators=extra_validators)
        known = {a.value for a in Analyte}
        if self.too_many_rows() or any(row.form.analyte.data not in known for row in self.rows):
            # A hidden field no one can fix: the form is out of date or was tampered with.
            if OUT_OF_DATE_FORM_MESSAGE not in self.form_errors:
                self.form_errors.append(OUT_OF_DATE_FORM_MESSAGE)
            ok = False
        return ok

    def entered_rows(self) -> list[tuple[int, ResultRowForm]]:
        """(index, row) of the rows with a result chosen, or a name typed for "other"."""
        return [
            (index, row.form)
            for index, row in enumerate(self.rows)
            if row.form.result.data or (row.form.other_name.data or "").strip()
        ]


class TestInErrorForm(CreateForm):
    """Confirmation, with the reason, that a test was entered in error."""

    __test__ = False  # not a pytest class

    reason = TextAreaField(
        "Reason",
        description="Why this test record is wrong (kept with the record, shown to clinicians).",
        validators=[DataRequired("Give the reason."), Length(max=REASON_MAX)],
    )
    submit = SubmitField("Mark entered in error")
