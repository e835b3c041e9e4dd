"""Forms of the therapy pages (shape only: the rules are the services', clinic/therapy/)."""

from __future__ import annotations

from typing import Any

from wtforms import (
    BooleanField,
    DateField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
    TimeField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from clinic.accounts.forms import MultiCheckboxField
from clinic.forms import ClinicForm
from clinic.therapy.models import (
    GROUP_NAME_MAX,
    MAX_ATTENDEES,
    NOTE_TEXT_MAX,
    Attendance,
    Modality,
    SessionKind,
    SessionSetting,
)
from clinic.therapy.sessions import MAX_WEEKS
from clinic.web import OUT_OF_DATE_FORM_MESSAGE, arm, submission_token_field

_Auto = object()


def _choices(enum, blank: str = "Choose…") -> list[SelectChoice]:
    return [SelectChoice("", blank), *(SelectChoice(m.value, m.label) for m in enum)]


class _TokenForm(ClinicForm):
    """A form that creates something: a random submission token (``clinic.web.save``'s
    idempotency key), new on a fresh form, kept when the form comes back with an error."""

    submission_token = submission_token_field()

    def __init__(self, formdata: Any = _Auto, **kwargs: Any) -> None:
        if formdata is _Auto:
            super().__init__(**kwargs)
        else:
            super().__init__(formdata=formdata, **kwargs)
        arm(self, fresh=formdata is None or not self.is_submitted())

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators=extra_validators)
        for message in self.submission_token.errors:
            if message not in self.form_errors:
                self.form_errors.append(message)
        return ok


class PlanForm(_TokenForm):
    site_id = SelectField("Site", coerce=int, validators=[InputRequired()])
    day = DateField("Date", validators=[InputRequired()])
    start_time = TimeField(
        "Start time", description="In the site's time zone.", validators=[InputRequired()]
    )
    duration_minutes = IntegerField(
        "Duration (minutes)",
        validators=[InputRequired()],
        render_kw={"inputmode": "numeric", "autocomplete": "off"},
    )
    kind = SelectField("Kind", choices=_choices(SessionKind), validators=[DataRequired()])
    modality = SelectField("Modality", choices=_choices(Modality), validators=[DataRequired()])
    setting = SelectField("Setting", choices=_choices(SessionSetting), validators=[DataRequired()])
    group_name = StringField(
        "Group name",
        description='Group and family sessions only, e.g. "Tuesday relapse prevention".',
        validators=[Optional(), Length(max=GROUP_NAME_MAX)],
    )
    patient_ids = MultiCheckboxField(
        "Attendees",
        coerce=int,
        description=f"One for an individual session; up to {MAX_ATTENDEES} for a group.",
    )
    weeks = IntegerField(
        "Repeat weekly for (weeks)",
        description=f"A group or family session: 2 to {MAX_WEEKS} plans one a week. Leave "
        "empty for one session.",
        validators=[Optional(), NumberRange(min=1, max=MAX_WEEKS)],
        render_kw={"inputmode": "numeric", "autocomplete": "off"},
    )
    submit = SubmitField("Plan the session")


class AttendeeRow(Form):
    """One attendee's line when a session is recorded (a FieldList entry:
    ``attendees-<i>-attendance``, the names the service's errors use)."""

    patient_id = HiddenField()
    attendance = SelectField("Attendance", choices=_choices(Attendance), validators=[Optional()])
    minutes = IntegerField(
        "Minutes attended",
        validators=[Optional()],
        render_kw={"inputmode": "numeric", "autocomplete": "off"},
    )
    note = TextAreaField(
        "Individual note",
        description="Optional. Shown only in this patient's chart.",
        validators=[Optional(), Length(max=NOTE_TEXT_MAX)],
    )


class RecordForm(_TokenForm):
    attendees = FieldList(FormField(AttendeeRow), max_entries=MAX_ATTENDEES)
    group_note = TextAreaField(
        "Group note",
        description="Shown in every attendee's chart: name no attendee.",
        validators=[Optional(), Length(max=NOTE_TEXT_MAX)],
    )
    confirm_names = BooleanField("The group note names an attendee: save it anyway")
    sign = BooleanField("Sign the notes now")
    submit = SubmitField("Record the session")


class _EditForm(ClinicForm):
    """A form that changes a note: the version it was built from (the optimistic lock)
    and an optional submission token (a double click shows the first result)."""

    version = HiddenField(validators=[InputRequired(message=OUT_OF_DATE_FORM_MESSAGE)])
    submission_token = submission_token_field(required=False)

    def __init__(self, formdata: Any = _Auto, **kwargs: Any) -> None:
        if formdata is _Auto:
            super().__init__(**kwargs)
        else:
            super().__init__(formdata=formdata, **kwargs)
        arm(self, fresh=formdata is None or not self.is_submitted())

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators=extra_validators)
        for field in (self.version, self.submission_token):
            for message in field.errors:
                if message not in self.form_errors:
                    self.form_errors.append(message)
        return ok

    @property
    def version_number(self) -> int | None:
        try:
            return int(self.version.data)
        except (TypeError, ValueError):
            return None


class NoteForm(_EditForm):
    text = TextAreaField(
        "Note", validators=[Optional(), Length(max=NOTE_TEXT_MAX)], render_kw={"rows": 12}
    )
    submit = SubmitField("Save the draft")


class SignForm(_EditForm):
    submit = SubmitField("Sign the note")


class AddendumForm(_TokenForm):
    text = TextAreaField(
        "Addendum",
        description="Signed when saved; shown under the note. The note itself never changes.",
        validators=[Optional(), Length(max=NOTE_TEXT_MAX)],
        render_kw={"rows": 6},
    )
    submit = SubmitField("Sign and add the addendum")


class CosignForm(ClinicForm):
    submit = SubmitField("Co-sign")


class EnteredInErrorForm(ClinicForm):
    reason = TextAreaField("Reason", validators=[DataRequired(), Length(max=500)])
    submit = SubmitField("Mark entered in error")
