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

from clinic.accounts.forms import MultiCheckboxField, optional_id
from clinic.forms import (
    OUT_OF_DATE_FORM_MESSAGE,
    ClinicForm,
    TokenForm,
    submission_token_field,
)
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


def _choices(enum, blank: str = "Choose…") -> list[SelectChoice]:
    return [SelectChoice("", blank), *(SelectChoice(m.value, m.label) for m in enum)]


class PlanForm(TokenForm):
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
        description=f"A group or family session: up to {MAX_WEEKS} weeks plans one a week. "
        "Leave empty for one session.",
        validators=[
            Optional(),
            NumberRange(min=1, max=MAX_WEEKS, message=f"Enter 1 to {MAX_WEEKS} weeks."),
        ],
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


class RecordForm(TokenForm):
    attendees = FieldList(FormField(AttendeeRow), max_entries=MAX_ATTENDEES)
    group_note = TextAreaField(
        "Group note",
        description="Shown in every attendee's chart: name no attendee.",
        validators=[Optional(), Length(max=NOTE_TEXT_MAX)],
    )
    confirm_names = BooleanField("A note names an attendee: save it anyway")
    sign = BooleanField("Sign the notes now")
    submit = SubmitField("Record the session")

    def validate(self, extra_validators: Any = None) -> bool:
        # Each row's text is checked by ClinicForm (control characters, NUL bytes: an error
        # beside the field). A row's hidden patient id has no place for its error: on top.
        ok = super().validate(extra_validators=extra_validators)
        hidden_refused = any(row.form.patient_id.errors for row in self.attendees)
        if hidden_refused and OUT_OF_DATE_FORM_MESSAGE not in self.form_errors:
            self.form_errors.append(OUT_OF_DATE_FORM_MESSAGE)
        return ok


class ReassignDraftsForm(TokenForm):
    """An administrator gives drafts of deactivated clinicians to an active clinician."""

    note_ids = MultiCheckboxField("Drafts to reassign", coerce=int)
    author_id = SelectField(
        "New author",
        coerce=optional_id,
        description="An active clinician of the drafts' site: the draft becomes theirs to "
        "finish and sign.",
    )
    submit = SubmitField("Reassign the chosen drafts")

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators=extra_validators)
        if not self.note_ids.errors and not self.note_ids.data:
            self.note_ids.errors = [*self.note_ids.errors, "Choose at least one draft."]
            ok = False
        if not self.author_id.errors and self.author_id.data is None:
            self.author_id.errors = [*self.author_id.errors, "Choose the new author."]
            ok = False
        return ok


class _EditForm(TokenForm):
    """A form that changes a note: the version it was built from (the optimistic lock)
    and an optional submission token (a double click shows the first result)."""

    version = HiddenField(validators=[InputRequired(message=OUT_OF_DATE_FORM_MESSAGE)])
    submission_token = submission_token_field(required=False)


class NoteForm(_EditForm):
    text = TextAreaField(
        "Note", validators=[Optional(), Length(max=NOTE_TEXT_MAX)], render_kw={"rows": 12}
    )
    confirm_names = BooleanField("The note names an attendee: save it anyway")
    submit = SubmitField("Save the draft")


class SignForm(_EditForm):
    submit = SubmitField("Sign the note")


class AddendumForm(TokenForm):
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


# --- SUD counseling notes (clinic/therapy/counseling.py) -------------------------------------


class CounselingNoteForm(TokenForm):
    text = TextAreaField(
        "Counseling note",
        description="Your analysis of the session, kept apart from the chart: read only by "
        "you and the clinicians your site allows. Signed when saved; it cannot be changed.",
        validators=[Optional(), Length(max=NOTE_TEXT_MAX)],
        render_kw={"rows": 12, "autocomplete": "off", "spellcheck": "true"},
    )
    submit = SubmitField("Sign and save the counseling note")


class CounselingReaderForm(TokenForm):
    """Allow a clinician to read the site's counseling notes (the id is checked here
    for shape, by the service for who may be chosen)."""

    user_id = SelectField(
        "Clinician",
        description="Active clinicians of this site who do not read its counseling notes yet.",
        validators=[DataRequired(message="Choose a clinician.")],
        # The service checks the choice (an active clinician of the site, not granted
        # yet): a double submit then meets its first result, not "not a valid choice".
        validate_choice=False,
    )
    submit = SubmitField("Allow to read counseling notes")

    @property
    def user_number(self) -> int | None:
        from clinic.converters import DATABASE_INT_MAX  # (the imports above are shared)

        raw = self.user_id.data or ""
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 10):
            return None
        return int(raw) if int(raw) <= DATABASE_INT_MAX else None


class RevokeReaderForm(ClinicForm):
    submit = SubmitField("Revoke the grant")


class SessionInErrorForm(ClinicForm):
    """Mark a whole session entered in error: the reason (the service checks its length
    and characters) and the version the confirmation page showed (the optimistic lock:
    a session recorded meanwhile is a conflict, shown again with its new facts)."""

    version = HiddenField(validators=[InputRequired(message=OUT_OF_DATE_FORM_MESSAGE)])
    reason = StringField(
        "Reason",
        description="On one line. Shown to clinicians in every attendee's chart: name no patient.",
        validators=[Optional()],
        render_kw={"autocomplete": "off"},
    )
    submit = SubmitField("Mark the session entered in error")

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators=extra_validators)
        for message in self.version.errors:
            if message not in self.form_errors:
                self.form_errors.append(message)
        return ok

    @property
    def version_number(self) -> int | None:
        raw = self.version.data or ""
        return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 10 else None
