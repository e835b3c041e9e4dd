"""Forms of the support network, consent and restriction pages (shape only: which element
is required, and every rule between them, is the services' — so a blank §2.31 element is
refused with the service's message, next to its field)."""

from __future__ import annotations

from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    HiddenField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    TelField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from clinic.aftercare.consent_models import (
    ELEMENT_MAX,
    EMAIL_MAX,
    NAME_MAX,
    NOTES_MAX,
    PHONE_MAX,
    SHORT_MAX,
    ConsentKind,
    ConsentPurpose,
    ExpiryKind,
    RecipientClass,
    Relationship,
    SignatureMethod,
)
from clinic.patients.contact import InvalidContact, normalise_phone
from clinic.patients.forms import CreateForm, EditForm, PatientsBaseForm, VersionField

RECIPIENT_TYPES = [
    SelectChoice("", "Choose…"),
    SelectChoice("resource", "A resource of the aftercare directory"),
    SelectChoice("support_person", "A person of the patient's support network"),
    SelectChoice("class", "A described class of recipients"),
]
RESTRICTION_RECIPIENT_TYPES = [
    SelectChoice("", "Choose…"),
    SelectChoice("anyone", "Anyone"),
    *RECIPIENT_TYPES[1:],
]


def _choices(enum, blank: str | None = "Choose…") -> list[SelectChoice]:
    items = [SelectChoice(m.value, m.label) for m in enum]
    return [SelectChoice("", blank), *items] if blank is not None else items


def optional_int(value) -> int | None:
    """A select's value as an id, or None for the blank choice (or anything not a number:
    the choice check then refuses it by the field)."""
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(label: str, limit: int, description: str = "", *, area: bool = True):
    field = TextAreaField if area else StringField
    return field(label, description=description, validators=[Optional(), Length(max=limit)])


def _phone(form, field) -> None:
    """A phone number libphonenumber holds valid (checked here too, so its error shows
    beside the others' rather than after them)."""
    try:
        normalise_phone(field.data)
    except InvalidContact as error:
        raise ValidationError(error.message) from None


class _SupportPersonFields(PatientsBaseForm):
    name = StringField(
        "Name", validators=[DataRequired("Enter the person's name."), Length(max=NAME_MAX)]
    )
    relationship = SelectField("Relationship", choices=_choices(Relationship))
    phone = TelField(
        "Phone",
        validators=[Optional(), Length(max=PHONE_MAX), _phone],
        description="With the area code, e.g. (312) 555-0147.",
    )
    email = EmailField("Email", validators=[Optional(), Length(max=EMAIL_MAX)])
    can_offer_housing = BooleanField("Can offer the patient a place to stay")
    notes = _text("Notes", NOTES_MAX)


class SupportPersonForm(_SupportPersonFields, CreateForm):
    submit = SubmitField("Add to the support network")


class SupportPersonEditForm(_SupportPersonFields, EditForm):
    version = VersionField()
    submit = SubmitField("Save changes")


class ArchiveSupportPersonForm(PatientsBaseForm):
    version = VersionField()
    submit = SubmitField("Remove from the support network")


class ConsentForm(CreateForm):
    """Every §2.31 element; the view fills the program, resource and support person
    choices. ``based_on_id``: the consent this one replaces (a changed consent is a new one)."""

    kind = SelectField(
        "Kind of consent",
        choices=_choices(ConsentKind),
        description="TPO: one consent for all future treatment, payment and health care "
        "operations. Counseling notes always need a consent of their own.",
    )
    program_id = SelectField(
        "Who may disclose (the program)", coerce=optional_int, validate_choice=True
    )
    information_description = _text(
        "Information that may be disclosed",
        ELEMENT_MAX,
        'Specific: how much and what kind, e.g. "Enrollment in treatment, current '
        'medication (methadone) and the discharge date".',
    )
    recipient_type = SelectField("Recipient", choices=RECIPIENT_TYPES)
    resource_id = SelectField(
        "Resource (named recipient)", coerce=optional_int, description="If a resource."
    )
    support_person_id = SelectField(
        "Support person (named recipient)", coerce=optional_int, description="If a person."
    )
    recipient_class = SelectField(
        "Class of recipients",
        choices=_choices(RecipientClass),
        description="If a class: the consent names the class as written here.",
    )
    purpose = SelectField("Purpose", choices=_choices(ConsentPurpose))
    purpose_text = _text(
        "Purpose, as written on the consent",
        ELEMENT_MAX,
        'As specific as the patient agreed, e.g. "Placement in a recovery residence".',
    )
    right_to_revoke = _text(
        "Right to revoke, and how", ELEMENT_MAX, "Prefilled with the program's wording."
    )
    expiry_kind = SelectField(
        "Expiration",
        choices=_choices(ExpiryKind),
        description="A date, the end of treatment (the patient's discharge), or none for "
        "a TPO consent.",
    )
    expires_on = DateField(
        "Expiration date", validators=[Optional()], description="If it expires on a date."
    )
    expiry_event = _text(
        "Event that ends it",
        SHORT_MAX,
        "If it ends with an event: the end of treatment.",
        area=False,
    )
    signature_method = SelectField("Signature", choices=_choices(SignatureMethod))
    paper_scan_reference = _text(
        "Scan reference of the signed paper",
        SHORT_MAX,
        "If signed on paper: where the scan is filed.",
        area=False,
    )
    electronic_signature_name = _text(
        "Name typed by the patient", SHORT_MAX, "If signed electronically.", area=False
    )
    signed_on = DateField("Date signed", validators=[Optional()])
    redisclosure_statement = _text(
        "Redisclosure statement (TPO)",
        ELEMENT_MAX,
        "Required on a TPO consent (42 CFR 2.33(b)); ignored on other kinds.",
    )
    based_on_id = HiddenField()
    submit = SubmitField("Record the consent")


class RevokeConsentForm(PatientsBaseForm):
    revoked_on = DateField("Date of the revocation", validators=[Optional()])
    revocation_method = _text(
        "How the patient revoked it in writing",
        ELEMENT_MAX,
        'E.g. "Signed letter handed in at the front desk, scanned as 2026-114".',
    )
    submit = SubmitField("Revoke the consent")


class RestrictionForm(CreateForm):
    purpose = SelectField(
        "For which purpose",
        choices=[SelectChoice("", "Any purpose"), *_choices(ConsentPurpose, None)],
    )
    recipient_type = SelectField("Not to be disclosed to", choices=RESTRICTION_RECIPIENT_TYPES)
    resource_id = SelectField("Resource", coerce=optional_int, description="If a resource.")
    support_person_id = SelectField(
        "Support person", coerce=optional_int, description="If a person."
    )
    recipient_class = SelectField(
        "Class of recipients", choices=_choices(RecipientClass), description="If a class."
    )
    details = _text("The patient's request, in their words", ELEMENT_MAX)
    requested_on = DateField("Date of the request", validators=[Optional()])
    submit = SubmitField("Record the request")


class LiftRestrictionForm(PatientsBaseForm):
    lifted_on = DateField("Ends on", validators=[Optional()])
    reason = _text("Why it ends", ELEMENT_MAX)
    submit = SubmitField("Lift the restriction")
