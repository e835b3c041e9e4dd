"""The patient registry: register a patient, update demographics, warn about possible
duplicates, refuse an implausible age, mark a record entered in error.

Each function checks its rule, changes rows, records the audit event (HIPAA 164.312(b)) and
flushes; the caller commits once. Records are never deleted: a mistaken one is marked
entered in error and kept (42 CFR Part 2 records, HIPAA 164.312(c)(1) integrity).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from clinic.accounts.models import User
from clinic.audit import AuditAction
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients.common import (
    audit_patient,
    check_version,
    format_day,
    refuse_if_entered_in_error,
    visible_site_ids,
)
from clinic.patients.contact import (
    InvalidContact,
    normalise_phone,
    normalise_state,
    normalise_zip,
)
from clinic.patients.models import (
    Enrollment,
    Patient,
    PatientNameToken,
    SexAtBirth,
    Substance,
)
from clinic.patients.names import has_letter, name_keys, name_tokens, normalise, search_key
from clinic.sites.models import Site
from clinic.sites.time import site_today


@dataclass
class Demographics:
    first_name: str
    last_name: str
    date_of_birth: dt.date
    sex_at_birth: SexAtBirth
    primary_substance: Substance
    intake_date: dt.date
    preferred_name: str | None = None
    gender_identity: str | None = None
    phone: str | None = None
    email: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    emergency_contact_name: str | None = None
    emergency_contact_phone: str | None = None
    emergency_contact_relationship: str | None = None
    state_registry_id: str | None = None

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_mapping(cls, data: dict) -> Demographics:
        values = {}
        for name in cls.field_names():
            value = data.get(name)
            if isinstance(value, str):
                value = value.strip() or None
            values[name] = value
        return cls(**values)


class PossibleDuplicate(DomainError):
    """Same name and date of birth as patients already registered, at any site of the
    organisation: the user must confirm it is someone else. ``matches`` are the patients;
    show the ones outside the user's sites by site and MRN only."""

    def __init__(self, matches: list[Patient]) -> None:
        super().__init__(
            "A patient with the same name and date of birth is already registered. "
            "Check the list below; if this is a different person, confirm and save again.",
            field=None,
        )
        self.matches = matches


def patients_born_on(date_of_birth: dt.date) -> sa.Select:
    """Patients of every site born on ``date_of_birth``, not entered in error, with their
    site: an index seek on the date of birth (a few patients a day)."""
    return (
        sa.select(Patient)
        .where(Patient.date_of_birth == date_of_birth, Patient.entered_in_error_at.is_(None))
        .options(selectinload(Patient.site))
        .order_by(Patient.site_id, Patient.id)
    )


def same_names(patient: Patient, firsts: set[str], lasts: set[str]) -> bool:
    """The patient's names are the typed names in some spelling: their ``name_keys`` meet
    (with or without diacritics, in their own script or a common romanisation). An empty
    ``firsts`` (no first name typed) matches any first name."""
    if firsts and not firsts & name_keys(patient.first_name):
        return False
    return bool(lasts & name_keys(patient.last_name))


def possible_duplicates(
    first_name: str,
    last_name: str,
    date_of_birth: dt.date,
    *,
    exclude_id: int | None = None,
) -> list[Patient]:
    """Patients of every site born on ``date_of_birth``, not entered in error, whose first
    and last names are the same names in any spelling: with or without diacritics, in
    their own script or a common romanisation ("Παπαδόπουλος" and "Papadopoulos",
    ``names.name_keys``). Organisation-wide on purpose: the same person registered at two
    sites is the error this check exists for. The date of birth is an index seek; the
    few patients born that day are compared here."""
    query = patients_born_on(date_of_birth)
    if exclude_id is not None:
        query = query.where(Patient.id != exclude_id)
    firsts, lasts = name_keys(first_name) or {""}, name_keys(last_name)
    return [p for p in db.session.scalars(query) if same_names(p, firsts, lasts)]


def duplicate_warning(data: Demographics, *, exclude_id: int | None = None) -> DomainError:
    """The warning a registration racing another one gets when the database's unique
    index refused it: the same warning as the service's own check."""
    matches = possible_duplicates(
        data.first_name, data.last_name, data.date_of_birth, exclude_id=exclude_id
    )
    return PossibleDuplicate(matches)


def _first_admission(patient: Patient) -> Enrollment | None:
    if patient.id is None:
        return None
    return db.session.scalar(
        sa.select(Enrollment)
        .where(Enrollment.patient_id == patient.id)
        .order_by(Enrollment.admitted_on, Enrollment.id)
        .limit(1)
    )


def _check_demographics(data: Demographics, site: Site, patient: Patient | None = None) -> None:
    """Shape rules of a registration or an edit. The date of birth and the intake date
    come before every admission (checked here for an existing patient; the database
    holds the same rule as a CHECK and a trigger)."""
    today = site_today(site)
    if not has_letter(data.first_name) or not search_key(data.first_name):
        raise DomainError("Enter a first name with at least one letter.", field="first_name")
    if not has_letter(data.last_name) or not search_key(data.last_name):
        raise DomainError("Enter a last name with at least one letter.", field="last_name")
    if data.date_of_birth > today:
        raise DomainError("The date of birth is in the future.", field="date_of_birth")
    if data.date_of_birth.year < 1900:
        raise DomainError("Check the year of birth.", field="date_of_birth")
    first = _first_admission(patient) if patient is not None else None
    if first is not None and data.date_of_birth > first.admitted_on:
        raise DomainError(
            f"The date of birth is after the patient's first admission "
            f"({format_day(first.admitted_on)}).",
            field="date_of_birth",
        )
    if data.intake_date > today:
        raise DomainError("The intake date is in the future.", field="intake_date")
    if data.intake_date < data.date_of_birth:
        raise DomainError("The intake date is before the date of birth.", field="intake_date")
    if first is not None and data.intake_date > first.admitted_on:
        raise DomainError(INTAKE_AFTER_ADMISSION_MESSAGE, field="intake_date")


# An age at intake outside these (years, inclusive) is more likely a typing error (a
# year off by a century, today's date typed as the birth date) than a patient: the user
# is warned and confirms, as for a possible duplicate. Not refused: such patients exist.
PLAUSIBLE_AGE_AT_INTAKE = (12, 110)


class ImplausibleAge(DomainError):
    """The age at intake is outside PLAUSIBLE_AGE_AT_INTAKE and the user has not
    confirmed it (``field``: the date of birth)."""

    def __init__(self, age: int) -> None:
        super().__init__(
            f"With this date of birth the patient was {age} at intake. Check the date of "
            "birth and the intake date; if they are right, confirm it below and save again.",
            field="date_of_birth",
        )
        self.age = age


def age_on(born: dt.date, day: dt.date) -> int:
    """Whole years from ``born`` to ``day``."""
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def _check_age(data: Demographics, *, confirmed: bool) -> None:
    age = age_on(data.date_of_birth, data.intake_date)
    low, high = PLAUSIBLE_AGE_AT_INTAKE
    if not low <= age <= high and not confirmed:
        raise ImplausibleAge(age)


def _check_contact(data: Demographics, *, kept_state: str | None = None) -> None:
    """Phone numbers to E.164, the ZIP code to the USPS format and the state to its USPS
    code (``clinic.patients.contact``), in place; DomainError naming the field otherwise.
    ``kept_state``: the value stored before states were checked ("Illinois"), which an
    edit that leaves it as it is keeps (stored values are never rewritten unasked)."""
    for name in ("phone", "emergency_contact_phone"):
        try:
            setattr(data, name, normalise_phone(getattr(data, name)))
        except InvalidContact as error:
            raise DomainError(error.message, field=name) from None
    try:
        data.postal_code = normalise_zip(data.postal_code)
    except InvalidContact as error:
        raise DomainError(error.message, field="postal_code") from None
    if data.state is not None and data.state == kept_state:
        return
    try:
        data.state = normalise_state(data.state)
    except InvalidContact as error:
        raise DomainError(error.message, field="state") from None


INTAKE_AFTER_ADMISSION_MESSAGE = (
    "The intake date is after the patient's first admission: the intake comes first."
)


def _apply(patient: Patient, data: Demographics) -> list[str]:
    changed = []
    for name in Demographics.field_names():
        value = getattr(data, name)
        if name in ("first_name", "last_name", "preferred_name"):
            value = normalise(value)
        if getattr(patient, name) != value:
            setattr(patient, name, value)
            changed.append(name)
    patient.first_key = search_key(patient.first_name)
    patient.last_key = search_key(patient.last_name)
    patient.preferred_key = search_key(patient.preferred_name) or None
    _sync_name_tokens(patient)
    return changed


def _sync_name_tokens(patient: Patient) -> None:
    wanted = name_tokens(patient.first_name, patient.last_name, patient.preferred_name)
    current = list(patient.name_tokens) if patient.id is not None else []
    for row in current:
        if row.token not in wanted:
            patient.name_tokens.remove(row)
    have = {row.token for row in current}
    for token in sorted(wanted - have):
        patient.name_tokens.append(PatientNameToken(token=token))


def _next_mrn(site: Site) -> str:
    # UPDATE ... RETURNING takes the site row's lock: two registrations at once at the
    # same site get different numbers.
    number = db.session.execute(
        sa.update(Site)
        .where(Site.id == site.id)
        .values(last_mrn=Site.last_mrn + 1)
        .returning(Site.last_mrn)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    return f"{site.code}-{number:06d}"


def register_patient(
    *,
    actor: User,
    site: Site,
    data: Demographics,
    confirm_duplicate: bool = False,
    confirm_age: bool = False,
) -> Patient:
    """Register a patient at ``site``. Same name and date of birth as a patient at any
    site raises PossibleDuplicate unless the user has confirmed it is someone else. Two
    unconfirmed registrations of one person racing each other: the unique index
    ``uq_patient_unconfirmed_identity`` refuses the second (IntegrityError; the views
    turn it into the same warning with ``duplicate_warning``). An age at intake outside
    PLAUSIBLE_AGE_AT_INTAKE raises ImplausibleAge unless ``confirm_age``. Phone numbers
    are stored in E.164, the ZIP code in the USPS format and the state as its USPS code
    (DomainError otherwise)."""
    if visible_site_ids(actor) is not None and site.id not in actor.site_ids:
        raise DomainError("You can only register patients at your own sites.", field="site_id")
    _check_demographics(data, site)
    _check_contact(data)
    _check_age(data, confirmed=confirm_age)
    matches = possible_duplicates(data.first_name, data.last_name, data.date_of_birth)
    if matches and not confirm_duplicate:
        raise PossibleDuplicate(matches)
    patient = Patient(
        site_id=site.id,
        mrn=_next_mrn(site),
        created_by_id=actor.id,
        duplicate_confirmed=bool(matches),
    )
    _apply(patient, data)
    db.session.add(patient)
    db.session.flush()
    audit_patient(
        patient,
        AuditAction.CREATE,
        "patient",
        patient.id,
        actor=actor,
        details={"duplicate_confirmed": bool(matches)},
    )
    return patient


def update_demographics(
    patient: Patient,
    *,
    actor: User,
    data: Demographics,
    expected_version: int | None,
    confirm_duplicate: bool = False,
    confirm_age: bool = False,
) -> list[str]:
    """Change demographics. Saving over someone else's newer change is refused, and so is
    any change to a record entered in error. A new name or date of birth that matches
    another patient asks for the same confirmation as a registration; a new date of birth
    or intake date giving an implausible age, the same confirmation of the age."""
    refuse_if_entered_in_error(patient)
    check_version(patient.version, expected_version)
    _check_demographics(data, patient.site, patient)
    _check_contact(data, kept_state=patient.state)
    if (data.date_of_birth, data.intake_date) != (patient.date_of_birth, patient.intake_date):
        _check_age(data, confirmed=confirm_age)
    identity = (search_key(data.first_name), search_key(data.last_name), data.date_of_birth)
    if identity != (patient.first_key, patient.last_key, patient.date_of_birth):
        matches = possible_duplicates(
            data.first_name, data.last_name, data.date_of_birth, exclude_id=patient.id
        )
        if matches and not confirm_duplicate:
            raise PossibleDuplicate(matches)
        patient.duplicate_confirmed = bool(matches)
    changed = _apply(patient, data)
    if changed:
        db.session.flush()
        audit_patient(
            patient,
            AuditAction.UPDATE,
            "patient",
            patient.id,
            actor=actor,
            details={"fields": changed},
        )
    return changed


def mark_entered_in_error(
    patient: Patient, *, actor: User, reason: str, expected_version: int | None
) -> None:
    """Patients are never deleted: a record made by mistake is marked, with who and why.
    Refused over someone else's newer change (``expected_version``)."""
    reason = reason.strip()
    if patient.entered_in_error:
        raise DomainError("This record is already marked as entered in error.")
    check_version(patient.version, expected_version)
    if len(reason) < 10:
        raise DomainError("Say why, in at least 10 characters.", field="reason")
    if any(e.active for e in patient.enrollments):
        raise DomainError("Discharge the patient's active enrollments first.")
    patient.entered_in_error_at = utcnow()
    patient.entered_in_error_reason = reason
    patient.entered_in_error_by_id = actor.id
    db.session.flush()
    audit_patient(
        patient,
        AuditAction.UPDATE,
        "patient",
        patient.id,
        actor=actor,
        details={"fields": ["entered_in_error"]},
    )


# --- programs --------------------------------------------------------------------------
