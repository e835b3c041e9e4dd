"""Forms of the resource directory (shape only: the service checks the rules)."""

from __future__ import annotations

from typing import Any

from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    TelField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional, ValidationError

from clinic.aftercare.models import (
    BEDS_MAX,
    CITY_MAX,
    CONTACT_MAX,
    EMAIL_MAX,
    MEETING_TIMES_MAX,
    NAME_MAX,
    NOTES_MAX,
    PHONE_MAX,
    STREET_MAX,
    GenderServed,
    NarrLevel,
    ResourceKind,
    SupportGroupType,
    Tristate,
)
from clinic.forms import ClinicForm, TokenForm, submission_token_field, version_field
from clinic.patients.contact import (
    InvalidContact,
    normalise_phone,
    normalise_state,
    normalise_zip,
)

BEDS_RANGE_MESSAGE = f"Enter a number of beds from 0 to {BEDS_MAX}."


def _choices(enum: Any, blank: str | None = None) -> list[SelectChoice]:
    head = [SelectChoice("", blank)] if blank is not None else []
    return [*head, *(SelectChoice(m.value, m.label) for m in enum)]


class ResourceForm(TokenForm):
    name = StringField("Name", validators=[InputRequired(), Length(max=NAME_MAX)])
    kind = SelectField(
        "Kind", choices=_choices(ResourceKind, "Choose…"), validators=[InputRequired()]
    )
    narr_level = SelectField(
        "NARR level",
        choices=_choices(NarrLevel, "None / not certified"),
        validators=[Optional()],
        description="Sober-living homes (recovery residences) only.",
    )
    support_group_type = SelectField(
        "Support-group type",
        choices=_choices(SupportGroupType, "Not a support group"),
        validators=[Optional()],
        description="Support groups only, and required for them.",
    )
    street = StringField(
        "Street address",
        validators=[Optional(), Length(max=STREET_MAX)],
        render_kw={"autocomplete": "off"},
    )
    city = StringField("City", validators=[Optional(), Length(max=CITY_MAX)])
    state = StringField(
        "State",
        validators=[Optional(), Length(max=40)],
        description="Two-letter code, e.g. IL.",
    )
    postal_code = StringField(
        "ZIP code",
        validators=[Optional(), Length(max=16)],
        description="5 digits, or ZIP+4 (60601-1234).",
    )
    phone = TelField(
        "Phone",
        validators=[Optional(), Length(max=PHONE_MAX)],
        description="With its area code, e.g. (312) 555-0147.",
    )
    email = EmailField("Email", validators=[Optional(), Length(max=EMAIL_MAX)])
    contact_name = StringField("Contact person", validators=[Optional(), Length(max=CONTACT_MAX)])
    accepts_moud = SelectField(
        "Accepts residents or members on MOUD",
        choices=_choices(Tristate),
        default=Tristate.UNKNOWN.value,
        validators=[InputRequired()],
    )
    accepts_methadone = SelectField(
        "Accepts residents or members on methadone",
        choices=_choices(Tristate),
        default=Tristate.UNKNOWN.value,
        validators=[InputRequired()],
        description="Methadone is MOUD: “yes” here means MOUD is accepted too.",
    )
    beds_total = IntegerField(
        "Beds in total",
        validators=[Optional(), NumberRange(min=0, max=BEDS_MAX, message=BEDS_RANGE_MESSAGE)],
        description="Halfway houses and recovery residences only.",
    )
    beds_available = IntegerField(
        "Beds available",
        validators=[Optional(), NumberRange(min=0, max=BEDS_MAX, message=BEDS_RANGE_MESSAGE)],
    )
    beds_confirmed_on = DateField(
        "Beds confirmed on",
        validators=[Optional()],
        description="The day someone at the residence confirmed the available beds.",
    )
    meeting_times = TextAreaField(
        "Meeting times",
        validators=[Optional(), Length(max=MEETING_TIMES_MAX)],
        description="Support groups only, e.g. “Mondays and Thursdays 7 pm”.",
    )
    gender_served = SelectField(
        "Serves", choices=_choices(GenderServed), default=GenderServed.ALL.value
    )
    notes = TextAreaField("Notes", validators=[Optional(), Length(max=NOTES_MAX)])
    site_id = SelectField(
        "Site area",
        coerce=int,
        validators=[Optional()],
        description="The site nearest to it, if any. Every site sees the directory.",
    )
    submit = SubmitField("Save")

    # The service checks these too (one field at a time); checked here as well, every
    # wrong contact field shows its message in the same answer.
    def validate_phone(self, field: Any) -> None:
        _check_contact(normalise_phone, field.data)

    def validate_postal_code(self, field: Any) -> None:
        _check_contact(normalise_zip, field.data)

    def validate_state(self, field: Any) -> None:
        _check_contact(normalise_state, field.data)


def _check_contact(normalise: Any, value: str | None) -> None:
    try:
        normalise(value)
    except InvalidContact as error:
        raise ValidationError(error.message) from None


class EditResourceForm(ResourceForm):
    submission_token = submission_token_field(required=False)
    version = version_field()


class ActiveForm(TokenForm):
    """Deactivate or reactivate: a confirmation (the record's version guards it)."""

    submission_token = submission_token_field(required=False)
    version = version_field()
    submit = SubmitField("Confirm")


class ImportForm(TokenForm):
    file = FileField("Directory file (CSV)")
    check_only = BooleanField("Only check the file (import nothing)")
    submit = SubmitField("Import")


class DirectoryFilterForm(ClinicForm):
    """The directory's filters, read from the query string (a GET form: no CSRF)."""

    class Meta:
        csrf = False

    q = StringField("Search", validators=[Optional(), Length(max=100)])
    kind = SelectField("Kind", choices=_choices(ResourceKind, "Any kind"), validators=[Optional()])
    moud = SelectField("Accepts MOUD", choices=_choices(Tristate, "Any"), validators=[Optional()])
    methadone = SelectField(
        "Accepts methadone", choices=_choices(Tristate, "Any"), validators=[Optional()]
    )
    beds = BooleanField("With a bed available")
    city = StringField("City", validators=[Optional(), Length(max=CITY_MAX)])
    area = SelectField("Site area", validators=[Optional()])
    inactive = BooleanField("Include inactive")
