"""Forms for registration, demographics, programs and enrollment (shape only)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

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
from wtforms.validators import (
    DataRequired,
    Email,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from clinic.errors import DomainError
from clinic.forms import (
    OUT_OF_DATE_FORM_MESSAGE,
    BookkeepingForm,
    TokenForm,
    submission_token_field,
    version_field,
)
from clinic.patients.contact import (
    InvalidContact,
    normalise_phone,
    normalise_state,
    normalise_zip,
)
from clinic.patients.models import (
    ASAM_LEVELS,
    DEFAULT_TAKE_HOME_REVIEW_DAYS,
    FEDERAL_TAKE_HOME_CAPS,
    TAKE_HOME_CAP_COLUMNS,
    DischargeReason,
    ProgramKind,
    SexAtBirth,
    Substance,
)
from clinic.patients.program_settings import DOSE_STEPS, DoseStep, parse_step_mg

TAKE_HOME_CAPS_NOT_OTP_MESSAGE = (
    "Take-home caps (42 CFR 8.12(i)) apply to opioid treatment programs only: leave this "
    "empty for this kind of program."
)

RELOAD_MESSAGE = OUT_OF_DATE_FORM_MESSAGE
VersionField = version_field  # a field factory, read like a class


PatientsBaseForm = BookkeepingForm


class CreateForm(TokenForm):
    """A form that creates a record: sent twice, it creates once (the token is required)."""


class EditForm(TokenForm):
    """A form that changes a record (it carries the record's ``version``): sent twice (a
    double click), the second post shows the first one's result rather than a conflict
    with itself. The token is optional here: without it the version check still refuses
    the repeat."""

    submission_token = submission_token_field(required=False)


def _choices(enum, blank: str | None = None) -> list[SelectChoice]:
    items = [SelectChoice(m.value, m.label) for m in enum]
    return [SelectChoice("", blank), *items] if blank else items


LEVEL_OF_CARE_CHOICES = [SelectChoice("", "Choose…")] + [
    SelectChoice(f"{edition.value}:{level}", f"{level} ({edition.label})", optgroup=edition.label)
    for edition, levels in ASAM_LEVELS.items()
    for level in levels
]


def split_level_of_care(value: str | None) -> tuple[str, str]:
    """'3:OTP' -> ('3', 'OTP')."""
    edition, _, level = (value or "").partition(":")
    return edition, level


class PatientFields(PatientsBaseForm):
    site_id = SelectField("Site", coerce=int, validators=[DataRequired()])
    first_name = StringField("First name", validators=[DataRequired(), Length(max=80)])
    last_name = StringField("Last name", validators=[DataRequired(), Length(max=80)])
    preferred_name = StringField("Preferred name", validators=[Optional(), Length(max=80)])
    date_of_birth = DateField("Date of birth", validators=[InputRequired()])
    sex_at_birth = SelectField(
        "Sex at birth", choices=_choices(SexAtBirth, "Choose…"), validators=[DataRequired()]
    )
    gender_identity = StringField(
        "Gender identity",
        validators=[Optional(), Length(max=60)],
        description="Optional, in the patient's own words.",
    )
    phone = TelField(
        "Phone",
        validators=[Optional(), Length(max=32)],
        description="With the area code, e.g. (312) 555-0147; another country: +44 …",
    )
    email = EmailField(
        "Email", validators=[Optional(), Length(max=254), Email(check_deliverability=False)]
    )
    address_line1 = StringField("Address", validators=[Optional(), Length(max=120)])
    address_line2 = StringField("Address line 2", validators=[Optional(), Length(max=120)])
    city = StringField("City", validators=[Optional(), Length(max=80)])
    state = StringField(
        "State",
        validators=[Optional(), Length(max=40)],
        description="Two-letter code, e.g. IL.",
        render_kw={"autocomplete": "address-level1"},
    )
    postal_code = StringField(
        "ZIP code",
        validators=[Optional(), Length(max=16)],
        description="5 digits, or ZIP+4 (60601-1234).",
    )
    emergency_contact_name = StringField(
        "Emergency contact", validators=[Optional(), Length(max=120)]
    )
    emergency_contact_phone = TelField(
        "Emergency contact phone", validators=[Optional(), Length(max=32)]
    )
    emergency_contact_relationship = StringField(
        "Relationship", validators=[Optional(), Length(max=60)]
    )
    primary_substance = SelectField(
        "Primary substance", choices=_choices(Substance, "Choose…"), validators=[DataRequired()]
    )
    intake_date = DateField("Intake date", validators=[InputRequired()])
    state_registry_id = StringField(
        "State central-registry id", validators=[Optional(), Length(max=40)]
    )
    confirm_duplicate = BooleanField("I checked: this is a different person")
    confirm_age = BooleanField("I checked: the date of birth and the intake date are right")
    submit = SubmitField("Save")

    # The service checks these too (its DomainError names one field at a time); checked
    # here as well, every wrong field shows its message in the same answer.
    def validate_phone(self, field: Any) -> None:
        _check_contact(normalise_phone, field.data)

    def validate_emergency_contact_phone(self, field: Any) -> None:
        _check_contact(normalise_phone, field.data)

    def validate_postal_code(self, field: Any) -> None:
        _check_contact(normalise_zip, field.data)

    # The state stored before states were checked ("Illinois"): an edit that leaves it as
    # it is may keep it (set by the edit page; the service checks the same way).
    kept_state: str | None = None

    def validate_state(self, field: Any) -> None:
        if self.kept_state is not None and (field.data or "").strip() == self.kept_state:
            return
        _check_contact(normalise_state, field.data)


def _check_contact(normalise: Any, value: str | None) -> None:
    try:
        normalise(value)
    except InvalidContact as error:
        raise ValidationError(str(error)) from None


class PatientForm(CreateForm, PatientFields):
    """Registration."""


class EditPatientForm(EditForm, PatientFields):
    version = VersionField()


class EnteredInErrorForm(EditForm):
    reason = TextAreaField(
        "Why was this record entered in error?",
        validators=[DataRequired(), Length(min=10, max=500)],
    )
    version = VersionField()
    submit = SubmitField("Mark as entered in error")


class AdmitForm(CreateForm):
    program_id = SelectField("Program", coerce=int, validators=[DataRequired()])
    admitted_on = DateField("Admission date", validators=[InputRequired()])
    level_of_care = SelectField(
        "Level of care (ASAM)", choices=LEVEL_OF_CARE_CHOICES, validators=[DataRequired()]
    )
    primary_counselor_id = SelectField("Primary counselor", coerce=int, validators=[Optional()])
    submit = SubmitField("Admit")


class TransferForm(AdmitForm):
    program_id = SelectField("Transfer to program", coerce=int, validators=[DataRequired()])
    admitted_on = DateField("Transfer date", validators=[InputRequired()])
    version = VersionField()
    submit = SubmitField("Transfer")


class DischargeForm(EditForm):
    discharged_on = DateField("Discharge date", validators=[InputRequired()])
    reason = SelectField(
        "Reason (TEDS-D)",
        choices=[SelectChoice("", "Choose…")]
        + [SelectChoice(str(r.value), f"{r.value} — {r.label}") for r in DischargeReason],
        validators=[DataRequired()],
    )
    version = VersionField()
    submit = SubmitField("Discharge")


class MilestonesForm(EditForm):
    medical_exam_on = DateField("Full medical examination done on", validators=[Optional()])
    assessment_on = DateField("Psychosocial assessment done on", validators=[Optional()])
    care_plan_on = DateField("Initial care plan done on", validators=[Optional()])
    version = VersionField()
    submit = SubmitField("Save dates")


class CorrectEnrollmentForm(EditForm):
    """Corrections of an enrollment in progress; the reason is required."""

    primary_counselor_id = SelectField("Primary counselor", coerce=int, validators=[Optional()])
    level_of_care = SelectField(
        "Level of care (ASAM)", choices=LEVEL_OF_CARE_CHOICES, validators=[DataRequired()]
    )
    admitted_on = DateField("Admission date", validators=[InputRequired()])
    reason = TextAreaField(
        "Reason for the correction",
        validators=[DataRequired(), Length(min=10, max=500)],
        description="Kept with the correction, for whoever reads this record's history.",
    )
    version = VersionField()
    submit = SubmitField("Save the correction")


class UndoDischargeForm(EditForm):
    reason = TextAreaField(
        "Why was this discharge a mistake?",
        validators=[DataRequired(), Length(min=10, max=500)],
        description="Kept with the correction, for whoever reads this record's history.",
    )
    version = VersionField()
    submit = SubmitField("Undo the discharge")


class ReviewForm(CreateForm):
    reviewed_on = DateField("Care plan reviewed on", validators=[InputRequired()])
    submit = SubmitField("Record review")


def _step_text(value: Any) -> Any:
    """A step typed as "10.0" or " 10 " reads "10" (the same exact amount), so the page
    and a conflict's comparison show it as the record does."""
    if not isinstance(value, str):
        return value
    value = value.strip()
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return value
    if amount.is_finite() and abs(amount) <= 10**6 and amount == amount.to_integral_value():
        return str(int(amount))
    return value


def _dose_step(step: DoseStep) -> Any:
    """A validator: the service's own reading of the step (exact decimal, whole mg within
    the column's CHECK), its refusal next to the field."""

    def check(form: Any, field: Any) -> None:
        try:
            parse_step_mg(field.data, step)
        except DomainError as error:
            raise ValidationError(error.message) from None

    return check


def DoseStepField(step: DoseStep, label: str, applies: str) -> StringField:
    return StringField(
        label,
        filters=[_step_text],
        validators=[Optional(), Length(max=12), _dose_step(step)],
        description=(
            f"A dose change larger than this asks the prescriber for a reason. {applies} "
            f"1 to {step.maximum} mg, whole mg. Empty: {step.default} mg."
        ),
        render_kw={"inputmode": "decimal", "autocomplete": "off"},
    )


METHADONE_STEP, BUPRENORPHINE_STEP = DOSE_STEPS
DOSE_STEP_NOT_APPLICABLE_MESSAGES = {
    "methadone_step_mg": (
        "The methadone step applies to opioid treatment programs only: leave this empty "
        "for this kind of program."
    ),
    "buprenorphine_step_mg": (
        "The buprenorphine step applies to opioid treatment programs and office-based "
        "buprenorphine only: leave this empty for this kind of program."
    ),
}


class ProgramForm(EditForm):
    site_id = SelectField("Site", coerce=int, validators=[DataRequired()])
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    kind = SelectField(
        "Kind", choices=_choices(ProgramKind, "Choose…"), validators=[DataRequired()]
    )
    active = BooleanField("Open to admissions", default=True)
    care_plan_review_days = IntegerField(
        "Care-plan review interval (days)",
        default=90,
        validators=[DataRequired(), NumberRange(min=1, max=365)],
        description="Your state sets it; 90 days is common.",
    )
    take_home_review_days = IntegerField(
        "Take-home review interval (days)",
        default=DEFAULT_TAKE_HOME_REVIEW_DAYS,
        validators=[Optional(), NumberRange(min=1, max=365)],
        description=(
            "A take-home decision older than this shows as due for review. "
            f"Empty: {DEFAULT_TAKE_HOME_REVIEW_DAYS} days."
        ),
    )
    take_home_cap_days_0_14 = IntegerField(
        "Take-home cap, days 0-14 of treatment",
        validators=[Optional(), NumberRange(min=0, max=FEDERAL_TAKE_HOME_CAPS["days_0_14"])],
        description="42 CFR 8.12(i): at most 7; a state may require fewer. Empty: 7.",
    )
    take_home_cap_days_15_30 = IntegerField(
        "Take-home cap, days 15-30",
        validators=[Optional(), NumberRange(min=0, max=FEDERAL_TAKE_HOME_CAPS["days_15_30"])],
        description="At most 14. Empty: 14.",
    )
    take_home_cap_days_31_plus = IntegerField(
        "Take-home cap, from day 31",
        validators=[Optional(), NumberRange(min=0, max=FEDERAL_TAKE_HOME_CAPS["days_31_plus"])],
        description="At most 28. Empty: 28.",
    )
    methadone_step_mg = DoseStepField(
        METHADONE_STEP, "Methadone dose step (mg)", "Opioid treatment programs only."
    )
    buprenorphine_step_mg = DoseStepField(
        BUPRENORPHINE_STEP,
        "Buprenorphine dose step (mg)",
        "Opioid treatment programs and office-based buprenorphine.",
    )
    version = VersionField()
    submit = SubmitField("Save")

    def validate(self, extra_validators: Any = None) -> bool:
        """Take-home caps typed for a program that is not an opioid treatment program are
        refused next to the field (not dropped: the user typed them for a reason); so is
        a dose step typed for a kind of program it does not apply to."""
        ok = super().validate(extra_validators=extra_validators)
        if self.kind.data and self.kind.data != ProgramKind.METHADONE_OTP.value:
            for name in TAKE_HOME_CAP_COLUMNS:
                field = self[name]
                if field.data is not None and not field.errors:
                    field.errors = [*field.errors, TAKE_HOME_CAPS_NOT_OTP_MESSAGE]
                    ok = False
        for step in DOSE_STEPS:
            field = self[step.column]
            typed = field.data not in (None, "") and not field.errors
            known_kind = self.kind.data and not self.kind.errors
            if typed and known_kind and not step.applies_to(self.kind.data):
                field.errors = [*field.errors, DOSE_STEP_NOT_APPLICABLE_MESSAGES[step.column]]
                ok = False
        return ok


class NewProgramForm(CreateForm, ProgramForm):
    """A program's settings, as a create (idempotent)."""

    version = None  # a new program has no version yet


class EmergencyLookupForm(PatientsBaseForm):
    """Find a patient of another site for emergency access (results: site and MRN)."""

    name = StringField(
        "Last name",
        validators=[DataRequired(), Length(max=170)],
        description='The last name, or "last name, first name": Torres, Ana.',
    )
    date_of_birth = DateField("Date of birth", validators=[InputRequired()])
    submit = SubmitField("Find")


class BreakGlassForm(CreateForm):
    mrn = StringField(
        "Medical record number",
        validators=[DataRequired(), Length(max=24)],
        description="For example EAST-000123.",
    )
    reason = TextAreaField(
        "Reason for emergency access",
        validators=[DataRequired(), Length(min=10, max=500)],
        description="Recorded in the audit trail and reviewed by an administrator.",
    )
    submit = SubmitField("Open the record")
