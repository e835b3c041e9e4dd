"""Use cases for the patient registry, programs and enrollment.

Each function checks the rule it names, changes rows, records the audit event and
flushes; the caller commits once. Site scoping lives here too: a user sees patients of
their own sites (organisation-wide administrators see all), plus any patient they hold a
live break-glass grant for.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.visitors import InternalTraversal

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.audit.models import BreakGlassGrant
from clinic.db import utcnow
from clinic.errors import CONFLICT_MESSAGE as CONFLICT_MESSAGE  # re-exported for the pages
from clinic.errors import ConflictError, DomainError
from clinic.extensions import db
from clinic.forms import CONTROL_CHARACTER_MESSAGE, has_control_characters
from clinic.patients.contact import (
    InvalidContact,
    normalise_phone,
    normalise_state,
    normalise_zip,
)
from clinic.patients.models import (
    ASAM_LEVELS,
    DEFAULT_BUPRENORPHINE_STEP_MG,
    DEFAULT_METHADONE_STEP_MG,
    AsamEdition,
    CarePlanReview,
    CorrectedField,
    DischargeReason,
    Enrollment,
    EnrollmentCorrection,
    Patient,
    PatientNameToken,
    Program,
    ProgramKind,
    SexAtBirth,
    Substance,
)
from clinic.patients.names import has_letter, name_keys, name_tokens, normalise, search_key
from clinic.security import Role
from clinic.sites.models import Site
from clinic.sites.time import site_today

DEADLINE_DAYS = 14  # 42 CFR 8.12(f)(2) and (f)(4), 2024 revision
DUE_SOON_DAYS = 7
ENTERED_IN_ERROR_MESSAGE = "This record was entered in error and can no longer be changed."
ALREADY_ENROLLED_MESSAGE = "The patient is already enrolled in this program."
REVIEW_EXISTS_MESSAGE = "A care-plan review on that date is already recorded."
PROGRAM_NAME_TAKEN_MESSAGE = "This site already has a program with that name."


def _audit_patient(
    patient: Patient,
    action: AuditAction,
    entity_type: str,
    entity_id: int,
    *,
    actor: User,
    details: dict | None = None,
) -> None:
    """An audit event about one patient's record, filed under the patient and their site."""
    record(
        action,
        actor=actor,
        entity_type=entity_type,
        entity_id=entity_id,
        patient_id=patient.id,
        site_id=patient.site_id,
        details=details,
    )


# --- access ----------------------------------------------------------------------------


def visible_site_ids(user: User) -> set[int] | None:
    """The sites whose patients the user may see; None for all."""
    return None if user.all_sites else user.site_ids


def _scoped(query: sa.Select, user: User) -> sa.Select:
    sites = visible_site_ids(user)
    if sites is not None:
        query = query.where(Patient.site_id.in_(sites or {-1}))
    return query


def has_break_glass(user: User, patient_id: int, now: dt.datetime | None = None) -> bool:
    """A grant of ``user`` for the patient still live at ``now``: it ends AT ``expires_at``
    (a grant is honoured strictly before that instant, never at it)."""
    return (
        db.session.scalar(
            sa.select(BreakGlassGrant.id)
            .where(
                BreakGlassGrant.user_id == user.id,
                BreakGlassGrant.patient_id == patient_id,
                BreakGlassGrant.expires_at > (now or utcnow()),
            )
            .limit(1)
        )
        is not None
    )


def patient_for(user: User, patient_id: int) -> Patient | None:
    """The patient if the user may open the chart: their site, or a live break-glass grant."""
    patient = db.session.get(Patient, patient_id)
    if patient is None:
        return None
    sites = visible_site_ids(user)
    if sites is None or patient.site_id in sites or has_break_glass(user, patient_id):
        return patient
    return None


def enrollment_for(user: User, enrollment_id: int) -> Enrollment | None:
    enrollment = db.session.get(Enrollment, enrollment_id)
    if enrollment is None or patient_for(user, enrollment.patient_id) is None:
        return None
    return enrollment


def sites_for(user: User) -> list[Site]:
    query = sa.select(Site).where(Site.active).order_by(Site.code)
    sites = visible_site_ids(user)
    if sites is not None:
        query = query.where(Site.id.in_(sites or {-1}))
    return list(db.session.scalars(query))


# --- search ----------------------------------------------------------------------------


class InAll(sa.sql.expression.ColumnElement[bool]):
    """``column`` is in every one of ``id_sets`` (SELECTs of one id column).

    SQLite: ``column IN (set1) AND column IN (set2) ...`` (each a covering-index range,
    then the rows by rowid). PostgreSQL: ``column = ANY(ARRAY(set1 INTERSECT set2 ...))``:
    the ids are collected once and the rows fetched by primary key; with ``IN
    (subquery)`` its planner guesses thousands of matches for a name search and reads the
    whole patient table (several times slower at 100,000 patients, see
    bench/patient_search.py)."""

    # Not Boolean: SQLite would then compare the whole condition with 1 ("... = 1").
    type = sa.types.NullType()
    inherit_cache = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("id_sets", InternalTraversal.dp_clauseelement_list),
    ]

    def __init__(self, column: sa.ColumnElement, id_sets: list[sa.Select]) -> None:
        self.column = column
        self.id_sets = list(id_sets)


@compiles(InAll)
def _in_all(element: InAll, compiler, **kw) -> str:
    return compiler.process(sa.and_(*(element.column.in_(ids) for ids in element.id_sets)), **kw)


@compiles(InAll, "postgresql")
def _in_all_postgresql(element: InAll, compiler, **kw) -> str:
    sets = element.id_sets
    ids = sets[0] if len(sets) == 1 else sa.intersect(*sets)
    column = compiler.process(element.column, **kw)
    return f"{column} = ANY(ARRAY({compiler.process(ids.scalar_subquery(), **kw)}))"


def _prefix(column: sa.ColumnElement, prefix: str) -> sa.ColumnElement[bool]:
    # A range, not LIKE: served by a plain b-tree index on SQLite and PostgreSQL alike.
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return sa.and_(column >= prefix, column < upper)


DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m-%d-%Y")
MRN_RE = re.compile(r"^[A-Za-z0-9]{2,10}-\d{1,9}$")


def parse_date(text: str) -> dt.date | None:
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def search_patients(user: User, text: str, *, include_in_error: bool = False) -> sa.Select:
    """Patients matching ``text``: an MRN, a date of birth, or the starts of names, each
    word matching the start of a word of the first, last or preferred name, in any script
    ("smi jo" finds Jo Smith, "petrov" and "Пет" find Петров, "parker" finds Watson-Parker;
    see ``clinic.patients.names``). Every branch is served by an index (see tests: EXPLAIN
    on both engines): a name word is a prefix range on ``patient_name_token.token``."""
    query = _scoped(sa.select(Patient), user)
    if not include_in_error:
        query = query.where(Patient.entered_in_error_at.is_(None))
    text = text.strip()
    words = text.split()
    born = parse_date(text) if len(words) == 1 else None
    if born is not None:
        return query.where(Patient.date_of_birth == born)
    if len(words) == 1 and MRN_RE.match(text):
        return query.where(Patient.mrn == text.upper())
    # Each word: the patients with a name word starting so (an index-only range scan of
    # the token index); all the words: in each of those sets; then the patients by key.
    matching = [
        sa.select(PatientNameToken.patient_id).where(_prefix(PatientNameToken.token, key))
        for key in dict.fromkeys(search_key(word) for word in words[:4])
        if key
    ]
    if matching:
        query = query.where(InAll(Patient.id, matching))
    elif words:
        # Only punctuation or symbols ("%", "*"): no name starts so, rather than everyone.
        query = query.where(sa.false())
    return query


def search_result_options() -> list:
    """Loader options for a page of search results: each patient's site and enrollments
    with their programs, in three statements whatever the page size (no N+1)."""
    return [
        selectinload(Patient.site),
        selectinload(Patient.enrollments).selectinload(Enrollment.program),
    ]


def phone_last_four(phone: str | None) -> str | None:
    """The last four digits of a phone number ("+13125550147" -> "0147"): what a front
    desk asks a caller to confirm, without showing the whole number in a list."""
    digits = "".join(c for c in phone or "" if c.isdigit())
    return digits[-4:] if len(digits) >= 4 else None


@dataclass
class RegistrationPrefill:
    first_name: str | None = None
    last_name: str | None = None
    date_of_birth: dt.date | None = None


def registration_prefill(text: str) -> RegistrationPrefill:
    """What a search that found nobody carries into the registration form: a date of
    birth typed goes to its field, an MRN nowhere (it is the clinic's, not the person's),
    and the words to the names: "Torres, Ana" and "ana torres" -> first Ana, last Torres;
    one word is the last name (what front desks search by); more words: the first is the
    first name, the rest the last name ("Ana de la Cruz"). A search typed all in lower
    case gets capitals ("ana torres" -> "Ana", "Torres"); one with any capital is kept as
    typed ("Ana de la Cruz", "ana McDonald")."""
    prefill = RegistrationPrefill()
    text = " ".join(text.split())[:200]
    if not text or MRN_RE.match(text):
        return prefill
    capitalise = text == text.lower()
    words = []
    for word in text.replace(",", " , ").split():
        born = parse_date(word)
        if born is not None and prefill.date_of_birth is None:
            prefill.date_of_birth = born
        else:
            words.append(word)

    def name(parts: list[str]) -> str | None:
        joined = " ".join(p.capitalize() if capitalise else p for p in parts if p != ",")
        return joined[:80] or None

    if "," in words:
        at = words.index(",")
        prefill.last_name, prefill.first_name = name(words[:at]), name(words[at + 1 :])
    elif len(words) == 1:
        prefill.last_name = name(words)
    elif words:
        prefill.first_name, prefill.last_name = name(words[:1]), name(words[1:])
    return prefill


# --- registration ----------------------------------------------------------------------


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


def _born_on(date_of_birth: dt.date) -> sa.Select:
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
    query = _born_on(date_of_birth)
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
    _audit_patient(
        patient,
        AuditAction.CREATE,
        "patient",
        patient.id,
        actor=actor,
        details={"duplicate_confirmed": bool(matches)},
    )
    return patient


def check_version(record_version: int, expected_version: int | None) -> None:
    """Optimistic locking: the version the user's form was built from must still be the
    record's. A form without its version (a crafted POST) is refused the same way."""
    if expected_version is None or record_version != expected_version:
        raise ConflictError()


def _refuse_if_entered_in_error(patient: Patient) -> None:
    if patient.entered_in_error:
        raise DomainError(ENTERED_IN_ERROR_MESSAGE)


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
    _refuse_if_entered_in_error(patient)
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
        _audit_patient(
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
    _audit_patient(
        patient,
        AuditAction.UPDATE,
        "patient",
        patient.id,
        actor=actor,
        details={"fields": ["entered_in_error"]},
    )


# --- programs --------------------------------------------------------------------------


@dataclass
class ProgramSettings:
    """A program's settings. The take-home caps (days) are an opioid treatment program's
    only: None for any other kind; for an OTP, None means the federal cap."""

    name: str
    kind: ProgramKind
    active: bool
    care_plan_review_days: int
    take_home_cap_days_0_14: int | None = None
    take_home_cap_days_15_30: int | None = None
    take_home_cap_days_31_plus: int | None = None
    # Dose steps in mg (text as typed, a Decimal or an int; None: the default), for the
    # kinds of program a step applies to (DOSE_STEPS); any other kind keeps the default.
    methadone_step_mg: Decimal | int | str | None = None
    buprenorphine_step_mg: Decimal | int | str | None = None


@dataclass(frozen=True)
class DoseStep:
    """A program's dose step: a change of a patient's dose larger than this asks the
    prescriber for a reason (DOMAIN.md, issue 10; clinic.medications.orders reads it)."""

    column: str
    medication: str
    kinds: frozenset[ProgramKind]
    default: int
    maximum: int  # the column's CHECK (methadone_step_range, buprenorphine_step_range)

    def applies_to(self, kind: ProgramKind | str | None) -> bool:
        return kind in {k.value for k in self.kinds}


# Methadone is dispensed by opioid treatment programs only (42 CFR 8.12); buprenorphine
# by an OTP or an office-based practice. Other kinds order neither, so they keep the
# default step: the safe one, should an order ever be written there.
DOSE_STEPS = (
    DoseStep(
        "methadone_step_mg",
        "methadone",
        frozenset({ProgramKind.METHADONE_OTP}),
        DEFAULT_METHADONE_STEP_MG,
        100,
    ),
    DoseStep(
        "buprenorphine_step_mg",
        "buprenorphine",
        frozenset({ProgramKind.METHADONE_OTP, ProgramKind.OFFICE_BUPRENORPHINE}),
        DEFAULT_BUPRENORPHINE_STEP_MG,
        32,
    ),
)


def parse_step_mg(value: Decimal | int | str | None, step: DoseStep) -> int | None:
    """A dose step typed in mg, read as an exact decimal (never a float): "10", "10.0"
    and "1e1" are 10 mg. None when empty. The step is stored in whole mg from 1 to the
    column's maximum: anything else is a DomainError next to the field."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    example = f"e.g. {step.default}"
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, TypeError, ValueError):
        amount = None
    if isinstance(value, bool) or amount is None or not amount.is_finite():
        raise DomainError(
            f"Enter the {step.medication} step as a number of mg, {example}.",
            field=step.column,
        )
    if not 1 <= amount <= step.maximum:
        raise DomainError(f"Use 1 to {step.maximum} mg.", field=step.column)
    if amount != amount.to_integral_value():
        raise DomainError(
            f"Use whole milligrams (1 to {step.maximum} mg), {example}.", field=step.column
        )
    return int(amount)


def programs_for(
    user: User, *, site_id: int | None = None, active_only: bool = False
) -> list[Program]:
    query = (
        sa.select(Program)
        .options(selectinload(Program.site))
        .order_by(Program.site_id, Program.name)
    )
    sites = visible_site_ids(user)
    if sites is not None:
        query = query.where(Program.site_id.in_(sites or {-1}))
    if site_id is not None:
        query = query.where(Program.site_id == site_id)
    if active_only:
        query = query.where(Program.active)
    return list(db.session.scalars(query))


def _check_program(settings: ProgramSettings) -> ProgramSettings:
    """The settings as stored, or a DomainError naming the field.

    42 CFR 8.12(i) take-home caps belong to opioid treatment programs: for an OTP each is
    0 up to the federal cap (empty: the federal cap); any other kind has none (the CHECK
    ``take_home_caps_otp_only``). A caller that passes caps for another kind (a program
    changed from OTP to another kind keeps the old values in its settings) gets them
    dropped; the form refuses them where the user typed them.

    Dose steps (``DOSE_STEPS``): whole mg within the column's CHECK for the kinds a step
    applies to (empty: the default); any other kind keeps the default, whatever was
    passed (as for the caps, the form refuses a step typed for such a kind)."""
    from clinic.patients.models import FEDERAL_TAKE_HOME_CAPS

    caps = {
        "take_home_cap_days_0_14": FEDERAL_TAKE_HOME_CAPS["days_0_14"],
        "take_home_cap_days_15_30": FEDERAL_TAKE_HOME_CAPS["days_15_30"],
        "take_home_cap_days_31_plus": FEDERAL_TAKE_HOME_CAPS["days_31_plus"],
    }
    values = dict(vars(settings))
    try:
        kind = values["kind"] = ProgramKind(settings.kind)
    except ValueError:
        raise DomainError("Choose the kind of program.", field="kind") from None
    for name, federal in caps.items():
        value = values[name]
        if not kind.is_otp:
            values[name] = None
            continue
        if value is None:
            values[name] = federal
        elif not 0 <= value <= federal:
            raise DomainError(
                f"42 CFR 8.12(i) allows at most {federal} days here; a program may only "
                "set a lower cap.",
                field=name,
            )
    for step in DOSE_STEPS:
        value = parse_step_mg(values[step.column], step) if kind in step.kinds else None
        values[step.column] = step.default if value is None else value
    if not 1 <= settings.care_plan_review_days <= 365:
        raise DomainError("Use 1 to 365 days.", field="care_plan_review_days")
    if not settings.name.strip():
        raise DomainError("Enter a name.", field="name")
    values["name"] = settings.name.strip()
    return ProgramSettings(**values)


def create_program(*, actor: User, site: Site, settings: ProgramSettings) -> Program:
    settings = _check_program(settings)
    if visible_site_ids(actor) is not None and site.id not in actor.site_ids:
        raise DomainError("You can only add programs at your own sites.", field="site_id")
    _check_program_name_free(site.id, settings.name)
    program = Program(site_id=site.id, **vars(settings))
    db.session.add(program)
    db.session.flush()
    record(
        AuditAction.CREATE,
        actor=actor,
        entity_type="program",
        entity_id=program.id,
        site_id=site.id,
    )
    return program


def _check_program_name_free(site_id: int, name: str, exclude_id: int | None = None) -> None:
    query = sa.select(Program.id).where(
        Program.site_id == site_id, sa.func.lower(Program.name) == name.strip().lower()
    )
    if exclude_id is not None:
        query = query.where(Program.id != exclude_id)
    if db.session.scalar(query) is not None:
        raise DomainError(PROGRAM_NAME_TAKEN_MESSAGE, field="name")


def update_program(
    program: Program, *, actor: User, settings: ProgramSettings, expected_version: int | None
) -> list[str]:
    """Change a program's settings. Saving over another administrator's newer change
    (``expected_version``, the version the form was built from; None for a form sent
    without it) is refused, not silently undone."""
    check_version(program.version, expected_version)
    settings = _check_program(settings)
    _check_program_name_free(program.site_id, settings.name, exclude_id=program.id)
    changed = []
    for name, value in vars(settings).items():
        value = value.strip() if isinstance(value, str) else value
        if getattr(program, name) != value:
            setattr(program, name, value)
            changed.append(name)
    if changed:
        db.session.flush()
        record(
            AuditAction.UPDATE,
            actor=actor,
            entity_type="program",
            entity_id=program.id,
            site_id=program.site_id,
            details={"fields": changed},
        )
    return changed


# --- enrollment ------------------------------------------------------------------------


def counselors_for(site_id: int) -> list[User]:
    """Clinicians working at the site: the choices for primary counselor."""
    return list(
        db.session.scalars(
            sa.select(User)
            .join(User.sites)
            .where(Site.id == site_id, User.role == Role.CLINICIAN, User.active)
            .order_by(User.full_name)
        )
    )


def active_enrollment_for(patient: Patient, program: Program) -> Enrollment | None:
    return db.session.scalar(
        sa.select(Enrollment).where(
            Enrollment.patient_id == patient.id,
            Enrollment.program_id == program.id,
            Enrollment.discharged_on.is_(None),
        )
    )


def _check_admission(
    patient: Patient,
    program: Program,
    *,
    admitted_on: dt.date,
    asam_edition: str,
    asam_level: str,
    primary_counselor: User | None,
    date_label: str = "admission",
) -> AsamEdition:
    """The admission rules. ``date_label`` names the date field the user sees ("transfer"
    on the transfer form), so the message reads as the field is labelled."""
    if patient.entered_in_error:
        raise DomainError("This record was entered in error; nobody can be admitted on it.")
    if program.site_id != patient.site_id:
        raise DomainError("Choose a program at the patient's site.", field="program_id")
    if not program.active:
        raise DomainError("That program is closed to admissions.", field="program_id")
    try:
        edition = AsamEdition(asam_edition)
    except ValueError:
        raise DomainError("Choose the ASAM edition.", field="asam_edition") from None
    if asam_level not in ASAM_LEVELS[edition]:
        raise DomainError(
            f"{asam_level!r} is not a level of the {edition.label} "
            f"(choose one of {', '.join(ASAM_LEVELS[edition])}).",
            field="asam_level",
        )
    if admitted_on > site_today(patient.site):
        raise DomainError(f"The {date_label} date is in the future.", field="admitted_on")
    if admitted_on < patient.date_of_birth:
        raise DomainError(
            f"The {date_label} date is before the date of birth.", field="admitted_on"
        )
    # An admission starts from the patient's intake (first contact with the clinic): an
    # enrollment before it would be a record of care the clinic never gave. The other
    # side (an intake edited to after an admission) is refused by _check_demographics.
    if admitted_on < patient.intake_date:
        raise DomainError(
            f"The {date_label} date is before the patient's intake date "
            f"({format_day(patient.intake_date)}).",
            field="admitted_on",
        )
    if primary_counselor is not None and (
        primary_counselor.role != Role.CLINICIAN
        or not primary_counselor.active
        or patient.site_id not in primary_counselor.site_ids
    ):
        raise DomainError("Choose an active clinician of this site.", field="primary_counselor_id")
    if active_enrollment_for(patient, program) is not None:
        raise DomainError(ALREADY_ENROLLED_MESSAGE, field="program_id")
    return edition


def admit(
    patient: Patient,
    program: Program,
    *,
    actor: User,
    admitted_on: dt.date,
    asam_edition: str,
    asam_level: str,
    primary_counselor: User | None,
    transferred_from: Enrollment | None = None,
) -> Enrollment:
    """Admit a patient to a program: at most one active enrollment per patient and
    program (also the partial unique index ``uq_enrollment_active_patient_program``);
    readmission is a new enrollment. Not before the intake date (also a trigger)."""
    edition = _check_admission(
        patient,
        program,
        admitted_on=admitted_on,
        asam_edition=asam_edition,
        asam_level=asam_level,
        primary_counselor=primary_counselor,
        date_label="transfer" if transferred_from is not None else "admission",
    )
    enrollment = Enrollment(
        patient_id=patient.id,
        program_id=program.id,
        admitted_on=admitted_on,
        asam_edition=edition,
        asam_level=asam_level,
        primary_counselor_id=primary_counselor.id if primary_counselor else None,
        transferred_from_id=transferred_from.id if transferred_from else None,
        created_by_id=actor.id,
    )
    db.session.add(enrollment)
    db.session.flush()
    _audit_patient(
        patient,
        AuditAction.CREATE,
        "enrollment",
        enrollment.id,
        actor=actor,
        details={"program_id": program.id, "transfer": transferred_from is not None},
    )
    return enrollment


MILESTONE_LABELS = {
    "medical_exam_on": "medical examination",
    "assessment_on": "psychosocial assessment",
    "care_plan_on": "initial care plan",
}


def _recorded(
    enrollment: Enrollment, review_date: Callable[..., sa.ColumnElement]
) -> list[tuple[str, dt.date]]:
    """The milestones of an enrollment that are recorded, and the care-plan review that
    ``review_date`` (``sa.func.min`` or ``sa.func.max``) picks: (what, when) pairs."""
    recorded = [
        (label, getattr(enrollment, name))
        for name, label in MILESTONE_LABELS.items()
        if getattr(enrollment, name) is not None
    ]
    review = db.session.scalar(
        sa.select(review_date(CarePlanReview.reviewed_on)).where(
            CarePlanReview.enrollment_id == enrollment.id
        )
    )
    if review is not None:
        recorded.append(("care-plan review", review))
    return recorded


def _last_recorded(enrollment: Enrollment) -> tuple[str, dt.date] | None:
    """The latest milestone or care-plan review of an enrollment: (what, when)."""
    recorded = _recorded(enrollment, sa.func.max)
    return max(recorded, key=lambda item: item[1]) if recorded else None


def _check_end_date(enrollment: Enrollment, on: dt.date, *, label: str, field: str) -> None:
    """An enrollment ends (discharge or transfer) on a day from its admission to today,
    and not before anything recorded in it (milestones and reviews: the same rule the
    milestones and reviews check from their side; CHECKs and a trigger in the database)."""
    if on < enrollment.admitted_on:
        raise DomainError(
            f"The {label} date is before the admission date "
            f"({format_day(enrollment.admitted_on)}).",
            field=field,
        )
    if on > site_today(enrollment.patient.site):
        raise DomainError(f"The {label} date is in the future.", field=field)
    last = _last_recorded(enrollment)
    if last is not None and on < last[1]:
        what, when = last
        raise DomainError(
            f"The {label} date is before the {what} recorded on {format_day(when)}.",
            field=field,
        )


# Called with (enrollment, actor) after an enrollment is discharged (or transferred out),
# in the same transaction: other domains end what belongs to the enrollment (medications:
# its active orders). Registered at start-up, so patients never imports those domains.
DischargeListener = Callable[[Enrollment, User], None]
discharge_listeners: list[DischargeListener] = []


def add_discharge_listener(listener: DischargeListener) -> None:
    if listener not in discharge_listeners:
        discharge_listeners.append(listener)


def discharge(
    enrollment: Enrollment,
    *,
    actor: User,
    discharged_on: dt.date,
    reason: int,
    expected_version: int | None,
    date_label: str = "discharge",
    date_field: str = "discharged_on",
) -> None:
    """Discharge with a TEDS-D reason, on a date not before admission, nor before the
    milestones and reviews already recorded, nor in the future."""
    _refuse_if_entered_in_error(enrollment.patient)
    check_version(enrollment.version, expected_version)
    if not enrollment.active:
        raise DomainError(ENDED_MESSAGE)
    try:
        reason_code = DischargeReason(int(reason))
    except (TypeError, ValueError):
        raise DomainError("Choose a discharge reason.", field="reason") from None
    _check_end_date(enrollment, discharged_on, label=date_label, field=date_field)
    enrollment.discharged_on = discharged_on
    enrollment.discharge_reason = reason_code.value
    db.session.flush()
    _audit_patient(
        enrollment.patient,
        AuditAction.UPDATE,
        "enrollment",
        enrollment.id,
        actor=actor,
        details={"fields": ["discharged_on", "discharge_reason"]},
    )
    for listener in discharge_listeners:
        listener(enrollment, actor)


def transfer(
    enrollment: Enrollment,
    to_program: Program,
    *,
    actor: User,
    on: dt.date,
    asam_edition: str,
    asam_level: str,
    primary_counselor: User | None,
    expected_version: int | None,
) -> Enrollment:
    """Close one enrollment (TEDS-D 4, transferred) and open the next on the same day, in
    one transaction: either both happen or neither. The transfer date obeys both sides'
    rules: the old enrollment's end (after its admission and everything recorded in it)
    and the new one's admission (after the intake, not in the future); messages name the
    transfer form's fields."""
    _refuse_if_entered_in_error(enrollment.patient)
    check_version(enrollment.version, expected_version)
    if not enrollment.active:
        raise DomainError(ENDED_MESSAGE)
    if to_program.id == enrollment.program_id:
        raise DomainError("Choose a different program.", field="program_id")
    _check_end_date(enrollment, on, label="transfer", field="admitted_on")
    # Check the admission first, so a refused admission leaves the old enrollment alone.
    _check_admission(
        enrollment.patient,
        to_program,
        admitted_on=on,
        asam_edition=asam_edition,
        asam_level=asam_level,
        primary_counselor=primary_counselor,
        date_label="transfer",
    )
    discharge(
        enrollment,
        actor=actor,
        discharged_on=on,
        reason=DischargeReason.TRANSFERRED,
        expected_version=expected_version,
        date_label="transfer",
        date_field="admitted_on",
    )
    return admit(
        enrollment.patient,
        to_program,
        actor=actor,
        admitted_on=on,
        asam_edition=asam_edition,
        asam_level=asam_level,
        primary_counselor=primary_counselor,
        transferred_from=enrollment,
    )


# --- corrections -----------------------------------------------------------------------

CORRECTION_REASON_MESSAGE = "Say why this is corrected, in at least 10 characters."
NOTHING_TO_CORRECT_MESSAGE = "Nothing was changed: correct at least one value."
TRANSFER_ADMISSION_MESSAGE = (
    "This enrollment began with a transfer: its admission date is the day the previous "
    "enrollment ended. Undo that transfer's discharge instead."
)


def _correction_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if len(reason) < 10 or len(reason) > 500:
        raise DomainError(CORRECTION_REASON_MESSAGE, field="reason")
    if has_control_characters(reason, multi_line=True):
        raise DomainError(CONTROL_CHARACTER_MESSAGE, field="reason")
    return reason


def _record_corrections(
    enrollment: Enrollment,
    *,
    actor: User,
    reason: str,
    changes: list[tuple[CorrectedField, str | None, str | None]],
) -> None:
    for field, old, new in changes:
        db.session.add(
            EnrollmentCorrection(
                enrollment_id=enrollment.id,
                field=field,
                old_value=old,
                new_value=new,
                reason=reason,
                corrected_by_id=actor.id,
            )
        )
    db.session.flush()
    # The reason stays in the correction rows (it may name clinical facts): the audit
    # event says what kind of change it was.
    _audit_patient(
        enrollment.patient,
        AuditAction.UPDATE,
        "enrollment",
        enrollment.id,
        actor=actor,
        details={"correction": [field.value for field, _old, _new in changes]},
    )


def _counselor_name(user: User | None) -> str | None:
    return user.full_name if user is not None else None


def correct_enrollment(
    enrollment: Enrollment,
    *,
    actor: User,
    reason: str,
    expected_version: int | None,
    primary_counselor: User | None,
    asam_edition: str,
    asam_level: str,
    admitted_on: dt.date,
) -> list[CorrectedField]:
    """Correct what was entered for an enrollment still in progress: its primary
    counselor, level of care (ASAM, with its edition) or admission date. Each changed
    value is kept as a correction (who, when, field, old, new, reason; append-only).

    The admission date obeys every rule of an admission (not in the future, not before
    the date of birth nor the intake) and of what was recorded since (not after a
    milestone or care-plan review: the CHECKs ``*_after_admission`` and the triggers of
    the patient_hardening migration). An enrollment that began with a transfer keeps the
    transfer's date (trigger ``enrollment_transfer_matches``). Raises DomainError (with
    the field) or, over someone else's newer change, the conflict message."""
    _refuse_if_entered_in_error(enrollment.patient)
    check_version(enrollment.version, expected_version)
    if not enrollment.active:
        raise DomainError(ENDED_MESSAGE)
    reason = _correction_reason(reason)
    patient = enrollment.patient
    changes: list[tuple[CorrectedField, str | None, str | None]] = []

    new_counselor_id = primary_counselor.id if primary_counselor is not None else None
    if new_counselor_id != enrollment.primary_counselor_id:
        # A new counselor is an active clinician of the site (the one already named
        # stays, even if they have since left: that is history, not a choice).
        if primary_counselor is not None and (
            primary_counselor.role != Role.CLINICIAN
            or not primary_counselor.active
            or patient.site_id not in primary_counselor.site_ids
        ):
            raise DomainError(
                "Choose an active clinician of this site.", field="primary_counselor_id"
            )
        changes.append(
            (
                CorrectedField.PRIMARY_COUNSELOR,
                _counselor_name(enrollment.primary_counselor),
                _counselor_name(primary_counselor),
            )
        )

    try:
        edition = AsamEdition(asam_edition)
    except ValueError:
        raise DomainError("Choose the level of care.", field="asam_edition") from None
    if asam_level not in ASAM_LEVELS[edition]:
        raise DomainError(
            f"{asam_level!r} is not a level of the {edition.label}.", field="asam_level"
        )
    if (edition, asam_level) != (enrollment.asam_edition, enrollment.asam_level):
        # Kept as people read it: "OTP (ASAM 3rd ed.)".
        new_label = f"{asam_level} ({edition.label})"
        changes.append((CorrectedField.LEVEL_OF_CARE, enrollment.level_label, new_label))

    if admitted_on != enrollment.admitted_on:
        _check_corrected_admission(enrollment, admitted_on)
        changes.append(
            (
                CorrectedField.ADMITTED_ON,
                enrollment.admitted_on.isoformat(),
                admitted_on.isoformat(),
            )
        )

    if not changes:
        raise DomainError(NOTHING_TO_CORRECT_MESSAGE)
    enrollment.primary_counselor_id = new_counselor_id
    enrollment.asam_edition = edition
    enrollment.asam_level = asam_level
    enrollment.admitted_on = admitted_on
    db.session.flush()
    _record_corrections(enrollment, actor=actor, reason=reason, changes=changes)
    return [field for field, _old, _new in changes]


def _check_corrected_admission(enrollment: Enrollment, admitted_on: dt.date) -> None:
    patient = enrollment.patient
    if enrollment.transferred_from_id is not None:
        raise DomainError(TRANSFER_ADMISSION_MESSAGE, field="admitted_on")
    if admitted_on > site_today(patient.site):
        raise DomainError("The admission date is in the future.", field="admitted_on")
    if admitted_on < patient.date_of_birth:
        raise DomainError("The admission date is before the date of birth.", field="admitted_on")
    if admitted_on < patient.intake_date:
        raise DomainError(
            f"The admission date is before the patient's intake date "
            f"({format_day(patient.intake_date)}).",
            field="admitted_on",
        )
    first = _first_recorded(enrollment)
    if first is not None and admitted_on > first[1]:
        what, when = first
        raise DomainError(
            f"The admission date is after the {what} recorded on {format_day(when)}.",
            field="admitted_on",
        )


def _first_recorded(enrollment: Enrollment) -> tuple[str, dt.date] | None:
    """The earliest milestone or care-plan review of an enrollment: (what, when)."""
    recorded = _recorded(enrollment, sa.func.min)
    return min(recorded, key=lambda item: item[1]) if recorded else None


def undo_discharge(
    enrollment: Enrollment, *, actor: User, reason: str, expected_version: int | None
) -> None:
    """Undo a discharge entered by mistake: the enrollment is active again, and the
    discharge (date and TEDS-D reason) is kept as a correction with the reason.

    Refused when the discharge was a transfer to an enrollment that exists (undo cannot
    leave two enrollments for one stretch of care; trigger ``enrollment_transfer_matches``)
    and when the patient has since been admitted to the same program again (one active
    enrollment per program: ``uq_enrollment_active_patient_program``)."""
    _refuse_if_entered_in_error(enrollment.patient)
    check_version(enrollment.version, expected_version)
    if enrollment.active:
        raise DomainError("This enrollment is not discharged.")
    reason = _correction_reason(reason)
    continued = db.session.scalar(
        sa.select(Enrollment.id).where(Enrollment.transferred_from_id == enrollment.id)
    )
    if continued is not None:
        raise DomainError(UNDO_TRANSFER_MESSAGE)
    if active_enrollment_for(enrollment.patient, enrollment.program) is not None:
        raise DomainError(UNDO_READMITTED_MESSAGE)
    old = f"{enrollment.discharged_on.isoformat()}: {enrollment.discharge_reason_label}"
    enrollment.discharged_on = None
    enrollment.discharge_reason = None
    db.session.flush()
    _record_corrections(
        enrollment, actor=actor, reason=reason, changes=[(CorrectedField.DISCHARGE, old, None)]
    )


UNDO_TRANSFER_MESSAGE = (
    "This enrollment ended with a transfer, and the patient's care continues in the "
    "program they moved to: a transfer cannot be undone here."
)
UNDO_READMITTED_MESSAGE = (
    "The patient was admitted to this program again since: discharge that enrollment "
    "before undoing this discharge."
)
ENDED_MESSAGE = "This enrollment has already ended."


# --- deadlines -------------------------------------------------------------------------


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_day(day: dt.date) -> str:
    """A clinical day as people read it: 2026-01-26 -> "26 Jan 2026" (English month
    names whatever the server's locale; unambiguous, unlike 01/02/2026)."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def deadline_wording(due_on: dt.date, today: dt.date, done_on: dt.date | None = None) -> str:
    """How a deadline reads, from the site's ``today``:

    - done: "done 3 Feb 2026", or "done 3 Feb 2026, late (due 19 Jan 2026)" when recorded
      after its deadline;
    - due today: "due today";
    - ahead: "due tomorrow (27 Jan 2026)", "due in 2 days (28 Jan 2026)";
    - past: "overdue since 25 Jan 2026 (1 day)", "overdue since 26 Jan 2026 (307 days)":
      the deadline's day, and how many days ago it was."""
    if done_on is not None:
        if done_on > due_on:
            return f"done {format_day(done_on)}, late (due {format_day(due_on)})"
        return f"done {format_day(done_on)}"
    ahead = (due_on - today).days
    if ahead == 0:
        return "due today"
    if ahead == 1:
        return f"due tomorrow ({format_day(due_on)})"
    if ahead > 1:
        return f"due in {_days(ahead)} ({format_day(due_on)})"
    return f"overdue since {format_day(due_on)} ({_days(-ahead)})"


@dataclass
class Deadline:
    name: str
    due_on: dt.date
    done_on: dt.date | None
    today: dt.date

    @property
    def status(self) -> str:
        if self.done_on is not None:
            return "done"
        if self.due_on < self.today:
            return "overdue"
        if (self.due_on - self.today).days <= DUE_SOON_DAYS:
            return "due"
        return "upcoming"

    @property
    def late(self) -> bool:
        """Recorded after its deadline."""
        return self.done_on is not None and self.done_on > self.due_on

    @property
    def wording(self) -> str:
        return deadline_wording(self.due_on, self.today, self.done_on)

    @property
    def badge(self) -> str | None:
        """The word of the wording a page shows as a badge: "overdue", "due", "late";
        None for a deadline met in time."""
        if self.done_on is not None:
            return "late" if self.late else None
        return "overdue" if self.status == "overdue" else "due"

    @property
    def parts(self) -> tuple[str, str | None, str]:
        """The wording split around its badge word, (before, badge, after), so a page
        shows each word once ("overdue" in the badge, " since 26 Jan 2026 (1 day)" after
        it) and a screen reader reads the one sentence."""
        wording = self.wording
        if self.badge is None or self.badge not in wording:
            return wording, None, ""
        before, word, after = wording.partition(self.badge)
        return before, word, after


def deadlines(enrollment: Enrollment, today: dt.date | None = None) -> list[Deadline]:
    """The deadlines of an enrollment, by its program's kind.

    An opioid treatment program (42 CFR 8.12(f)): medical examination and psychosocial
    assessment / initial care plan within 14 days of admission. Other kinds (office-based
    buprenorphine, naltrexone, outpatient, intensive outpatient) are not under 8.12 and
    have no admission deadline here; their dates may still be recorded. Every kind: once
    an initial care plan is recorded, reviews at the program's interval (the state's rule,
    a per-program setting, DOMAIN.md)."""
    today = today or site_today(enrollment.patient.site)
    items = []
    if enrollment.program.kind.is_otp:
        first_due = enrollment.admitted_on + dt.timedelta(days=DEADLINE_DAYS)
        items = [
            Deadline("Medical examination", first_due, enrollment.medical_exam_on, today),
            Deadline("Psychosocial assessment", first_due, enrollment.assessment_on, today),
            Deadline("Initial care plan", first_due, enrollment.care_plan_on, today),
        ]
    if enrollment.active and enrollment.care_plan_on is not None:
        last = max([enrollment.care_plan_on, *(r.reviewed_on for r in enrollment.reviews)])
        interval = dt.timedelta(days=enrollment.program.care_plan_review_days)
        items.append(Deadline("Care-plan review", last + interval, None, today))
    return items


def open_deadlines(enrollment: Enrollment, today: dt.date | None = None) -> list[Deadline]:
    if not enrollment.active:
        return []
    return [d for d in deadlines(enrollment, today) if d.status in ("due", "overdue")]


MILESTONES = ("medical_exam_on", "assessment_on", "care_plan_on")
NOTHING_TO_SAVE_MESSAGE = "Nothing to save: enter a date."


def record_milestones(
    enrollment: Enrollment,
    *,
    actor: User,
    values: dict[str, dt.date | None],
    expected_version: int | None,
) -> list[str]:
    """Record when the examination, assessment and initial care plan were done (42 CFR
    8.12(f)): each between the admission and the discharge (or today). The initial care
    plan also comes before its reviews and stays while reviews are recorded. The same
    rules hold from the other side (discharge) and in the database (CHECKs, a trigger).
    A form with no date, for an enrollment with none recorded, is refused: there is
    nothing to save (saying "saved" would mislead). Returns the fields changed."""
    _refuse_if_entered_in_error(enrollment.patient)
    check_version(enrollment.version, expected_version)
    if all(values.get(name) is None for name in MILESTONES) and all(
        getattr(enrollment, name) is None for name in MILESTONES
    ):
        raise DomainError(NOTHING_TO_SAVE_MESSAGE)
    today = site_today(enrollment.patient.site)
    first_review = db.session.scalar(
        sa.select(sa.func.min(CarePlanReview.reviewed_on)).where(
            CarePlanReview.enrollment_id == enrollment.id
        )
    )
    changed = []
    for name in MILESTONES:
        value = values.get(name)
        if value is not None and value < enrollment.admitted_on:
            raise DomainError(
                f"That is before the admission date ({format_day(enrollment.admitted_on)}).",
                field=name,
            )
        if value is not None and value > today:
            raise DomainError("That date is in the future.", field=name)
        if (
            value is not None
            and enrollment.discharged_on is not None
            and value > enrollment.discharged_on
        ):
            raise DomainError(
                f"That is after the discharge date ({format_day(enrollment.discharged_on)}).",
                field=name,
            )
        if name == "care_plan_on" and first_review is not None:
            if value is None:
                raise DomainError(
                    "Care-plan reviews are recorded: the initial care plan date stays.",
                    field=name,
                )
            if value > first_review:
                raise DomainError(
                    f"That is after the first care-plan review ({format_day(first_review)}).",
                    field=name,
                )
        if getattr(enrollment, name) != value:
            setattr(enrollment, name, value)
            changed.append(name)
    if changed:
        db.session.flush()
        _audit_patient(
            enrollment.patient,
            AuditAction.UPDATE,
            "enrollment",
            enrollment.id,
            actor=actor,
            details={"fields": changed},
        )
    return changed


def record_care_plan_review(
    enrollment: Enrollment, *, actor: User, reviewed_on: dt.date
) -> CarePlanReview:
    """A periodic care-plan review (42 CFR 8.12(f)(4)): after the initial care plan, not
    after the discharge nor in the future, once a day per enrollment (the unique
    constraint ``uq_care_plan_review_enrollment_id_reviewed_on``; the dates also a
    trigger)."""
    _refuse_if_entered_in_error(enrollment.patient)
    if enrollment.care_plan_on is None:
        raise DomainError("Record the initial care plan first.", field="reviewed_on")
    if reviewed_on < enrollment.care_plan_on:
        raise DomainError("A review cannot come before the initial care plan.", field="reviewed_on")
    if reviewed_on > site_today(enrollment.patient.site):
        raise DomainError("That date is in the future.", field="reviewed_on")
    if enrollment.discharged_on is not None and reviewed_on > enrollment.discharged_on:
        raise DomainError(
            f"That is after the discharge date ({format_day(enrollment.discharged_on)}).",
            field="reviewed_on",
        )
    exists = db.session.scalar(
        sa.select(CarePlanReview.id).where(
            CarePlanReview.enrollment_id == enrollment.id,
            CarePlanReview.reviewed_on == reviewed_on,
        )
    )
    if exists is not None:
        raise DomainError(REVIEW_EXISTS_MESSAGE, field="reviewed_on")
    review = CarePlanReview(
        enrollment_id=enrollment.id, reviewed_on=reviewed_on, recorded_by_id=actor.id
    )
    db.session.add(review)
    db.session.flush()
    db.session.refresh(enrollment, ["reviews"])
    _audit_patient(
        enrollment.patient, AuditAction.CREATE, "care_plan_review", review.id, actor=actor
    )
    return review


@dataclass
class WorklistItem:
    enrollment: Enrollment
    deadline: Deadline


def deadline_worklist(user: User, *, counselor_only: bool = False) -> list[WorklistItem]:
    """Active enrollments at the user's sites with a deadline due within a week or past."""
    query = (
        sa.select(Enrollment)
        .join(Enrollment.patient)
        .where(Enrollment.discharged_on.is_(None), Patient.entered_in_error_at.is_(None))
        .options(
            selectinload(Enrollment.patient).selectinload(Patient.site),
            selectinload(Enrollment.program),
            selectinload(Enrollment.reviews),
            selectinload(Enrollment.primary_counselor),
        )
    )
    query = _scoped(query, user)
    if counselor_only:
        query = query.where(Enrollment.primary_counselor_id == user.id)
    items = [
        WorklistItem(enrollment, deadline)
        for enrollment in db.session.scalars(query)
        for deadline in open_deadlines(enrollment)
    ]
    items.sort(key=lambda i: (i.deadline.due_on, i.enrollment.patient.last_key))
    return items


def chart_enrollments(patient: Patient) -> list[Enrollment]:
    return list(
        db.session.scalars(
            sa.select(Enrollment)
            .where(Enrollment.patient_id == patient.id)
            .options(
                selectinload(Enrollment.program),
                selectinload(Enrollment.primary_counselor),
                selectinload(Enrollment.reviews),
                selectinload(Enrollment.corrections).selectinload(
                    EnrollmentCorrection.corrected_by
                ),
            )
            .order_by(
                Enrollment.discharged_on.is_not(None),
                Enrollment.admitted_on.desc(),
                Enrollment.id.desc(),
            )
        )
    )


def programs_at(site_id: int, *, active_only: bool = True) -> list[Program]:
    query = sa.select(Program).where(Program.site_id == site_id).order_by(Program.name)
    if active_only:
        query = query.where(Program.active)
    return list(db.session.scalars(query))


def chosen(items: Iterable, item_id: int | None):
    return next((i for i in items if i.id == item_id), None)


# --- break-glass -----------------------------------------------------------------------

BREAK_GLASS_MINUTES = 60
EMERGENCY_LOOKUP_LIMIT = 20  # matches shown at most: a lookup is not a browse
LOOKUP_NAME_MESSAGE = 'Type the last name, or "last name, first name".'


class PatientNotFound(DomainError):
    """A lookup by MRN found no patient: a refused object lookup (the view records it)."""


@dataclass
class EmergencyMatch:
    """A patient an emergency lookup found, as the results show it: where and under which
    MRN, nothing of the record. ``own_site``: a patient of the user's sites (the chart
    opens without emergency access)."""

    patient_id: int
    mrn: str
    site_code: str
    site_name: str
    own_site: bool


@dataclass
class EmergencyLookup:
    matches: list[EmergencyMatch]  # at most EMERGENCY_LOOKUP_LIMIT
    total: int  # how many matched

    @property
    def more(self) -> bool:
        return self.total > len(self.matches)


def split_lookup_name(text: str) -> tuple[str, str]:
    """ "Torres, Ana" -> ("Ana", "Torres"); "de la Cruz" -> ("", "de la Cruz"): a last
    name, or "last, first" as the patient search takes it."""
    last, _, first = " ".join(text.split()).partition(",")
    return first.strip(), last.strip()


def emergency_lookup(*, actor: User, name: str, date_of_birth: dt.date) -> EmergencyLookup:
    """Find a patient for emergency access by last name (or "last, first") and date of
    birth, at every site (HIPAA 164.312(a)(2)(ii), emergency access procedure).

    Minimum necessary (45 CFR 164.502(b), 42 CFR 2.13): a match shows its site and MRN
    only, and at most EMERGENCY_LOOKUP_LIMIT of them. The names are compared as the
    duplicate check compares them (``same_names``). The lookup is recorded without what
    was typed: one ``break_glass_lookup`` event with the number of matches, and one per
    patient of another site shown (a disclosure of where they are treated)."""
    first, last = split_lookup_name(name)
    if not has_letter(last):
        raise DomainError(LOOKUP_NAME_MESSAGE, field="name")
    firsts = name_keys(first) if has_letter(first) else set()
    lasts = name_keys(last)
    found = [p for p in db.session.scalars(_born_on(date_of_birth)) if same_names(p, firsts, lasts)]
    sites = visible_site_ids(actor)
    matches = [
        EmergencyMatch(
            patient_id=p.id,
            mrn=p.mrn,
            site_code=p.site.code,
            site_name=p.site.name,
            own_site=sites is None or p.site_id in sites,
        )
        for p in found[:EMERGENCY_LOOKUP_LIMIT]
    ]
    record(
        AuditAction.VIEW,
        actor=actor,
        entity_type="break_glass_lookup",
        details={"results": len(found), "shown": len(matches)},
    )
    for match in matches:
        if not match.own_site:
            record(
                AuditAction.VIEW,
                actor=actor,
                entity_type="break_glass_lookup",
                entity_id=match.patient_id,
                patient_id=match.patient_id,
                site_id=next(p.site_id for p in found if p.id == match.patient_id),
                details={"shown": ["site", "mrn"]},
            )
    return EmergencyLookup(matches=matches, total=len(found))


@dataclass
class EmergencyAccess:
    """A live grant of emergency access; ``repeated``: it was already live (a second
    request got the same grant, not a new one)."""

    patient: Patient
    grant: BreakGlassGrant
    repeated: bool


def live_grant(
    user: User, patient_id: int, now: dt.datetime | None = None
) -> BreakGlassGrant | None:
    """The user's grant for the patient live at ``now`` (the latest, if history holds
    several), or None."""
    return db.session.scalar(
        sa.select(BreakGlassGrant)
        .where(
            BreakGlassGrant.user_id == user.id,
            BreakGlassGrant.patient_id == patient_id,
            BreakGlassGrant.expires_at > (now or utcnow()),
        )
        .order_by(BreakGlassGrant.expires_at.desc())
        .limit(1)
    )


def grant_break_glass(*, actor: User, mrn: str, reason: str) -> EmergencyAccess:
    """Emergency access to a patient outside the clinician's sites (HIPAA 164.312(a)(2)(ii)).

    Lasts BREAK_GLASS_MINUTES, is recorded as a ``break_glass`` event and waits on the
    administrators' review list until acknowledged.

    One live grant per clinician and patient: asking again while a grant is live returns
    that grant, unchanged — its expiry is NOT extended (access that outlives the hour
    needs a new request after it, reviewed on its own; a silent extension would hide
    how long the record was open). The repeat is recorded as a ``break_glass`` event on
    the same grant (``"repeat": true``; the reason stays out of the audit trail, as the
    first one does). The clinician's user row is locked first (``FOR NO KEY UPDATE`` on
    PostgreSQL; SQLite runs one writer at a time), so two requests at once make one
    grant: the second waits, then finds the first's."""
    reason = reason.strip()
    if len(reason) < 10:
        raise DomainError("Give the reason in at least 10 characters.", field="reason")
    patient = db.session.scalar(sa.select(Patient).where(Patient.mrn == mrn.strip().upper()))
    if patient is None:
        raise PatientNotFound("No patient has that medical record number.", field="mrn")
    sites = visible_site_ids(actor)
    if sites is None or patient.site_id in sites:
        raise DomainError(
            "This patient is at your site: open the chart from the patient list.", field="mrn"
        )
    # Serialise this clinician's grant requests (key_share: a foreign key to the user
    # row, e.g. an audit event of another request, is not blocked).
    db.session.execute(
        sa.select(User.id).where(User.id == actor.id).with_for_update(key_share=True)
    )
    now = utcnow()
    grant = live_grant(actor, patient.id, now)
    if grant is not None:
        _audit_patient(
            patient,
            AuditAction.BREAK_GLASS,
            "break_glass_grant",
            grant.id,
            actor=actor,
            details={"repeat": True},
        )
        return EmergencyAccess(patient, grant, repeated=True)
    grant = BreakGlassGrant(
        user_id=actor.id,
        patient_id=patient.id,
        reason=reason,
        granted_at=now,
        expires_at=now + dt.timedelta(minutes=BREAK_GLASS_MINUTES),
    )
    db.session.add(grant)
    db.session.flush()
    _audit_patient(
        patient,
        AuditAction.BREAK_GLASS,
        "break_glass_grant",
        grant.id,
        actor=actor,
        details={"minutes": BREAK_GLASS_MINUTES},
    )
    return EmergencyAccess(patient, grant, repeated=False)


# --- what the database refuses, in the services' words ---------------------------------
# Constraint and trigger names (see the models and the patient_hardening migration) with
# the message the service's own check gives, for a request that raced another one past
# that check: clinic.web.save() shows it next to the same field.

DATABASE_REFUSALS: dict[str, DomainError] = {
    "uq_enrollment_active_patient_program": DomainError(
        ALREADY_ENROLLED_MESSAGE, field="program_id"
    ),
    "uq_care_plan_review_enrollment_id_reviewed_on": DomainError(
        REVIEW_EXISTS_MESSAGE, field="reviewed_on"
    ),
    "uq_program_site_id_name": DomainError(PROGRAM_NAME_TAKEN_MESSAGE, field="name"),
    "enrollment_correction_append_only": DomainError(
        "Corrections are history: they cannot be changed or removed."
    ),
    "patient_entered_in_error": DomainError(ENTERED_IN_ERROR_MESSAGE),
}
# Date rules between records: what the service says depends on the dates of the record
# that won the race, so the view runs the service's checks again to say it.
DATE_RULES = (
    "enrollment_after_intake",
    "patient_intake_before_admissions",
    "review_within_enrollment",
    "enrollment_dates_cover_reviews",
    "enrollment_transfer_matches",
    "ck_patient_born_before_intake",
    "ck_enrollment_exam_before_discharge",
    "ck_enrollment_assessment_before_discharge",
    "ck_enrollment_care_plan_before_discharge",
    "ck_enrollment_discharge_after_admission",
)
