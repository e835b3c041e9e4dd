"""Use cases for the patient registry, programs and enrollment.

Each function checks the rule it names, changes rows, records the audit event and
flushes; the caller commits once. Site scoping lives here too: a user sees patients of
their own sites (organisation-wide administrators see all), plus any patient they hold a
live break-glass grant for.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, fields

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.audit.models import BreakGlassGrant
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients.models import (
    ASAM_LEVELS,
    AsamEdition,
    CarePlanReview,
    DischargeReason,
    Enrollment,
    Patient,
    Program,
    ProgramKind,
    SexAtBirth,
    Substance,
)
from clinic.security import Role
from clinic.sites.models import Site
from clinic.sites.time import site_today

DEADLINE_DAYS = 14  # 42 CFR 8.12(f)(2) and (f)(4), 2024 revision
DUE_SOON_DAYS = 7
CONFLICT_MESSAGE = (
    "Someone else changed this record after you opened it. Your entries are still in the "
    "form: check the record's current values, then save again."
)


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


def search_key(name: str | None) -> str:
    """Lower-case ASCII letters and digits: 'O'Brien-Núñez' -> 'obriennunez'."""
    if not name:
        return ""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", ascii_name.lower())


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
    word matching the start of a first, last or preferred name ("smi jo" finds Jo Smith).
    Every branch is served by an index (see tests: EXPLAIN on both engines)."""
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
    for word in words[:4]:
        key = search_key(word)
        if not key:
            continue
        query = query.where(
            sa.or_(
                _prefix(Patient.last_key, key),
                _prefix(Patient.first_key, key),
                _prefix(Patient.preferred_key, key),
            )
        )
    return query


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
    """Same name and date of birth as patients already registered: the user must confirm."""

    def __init__(self, matches: list[Patient]) -> None:
        super().__init__(
            "A patient with the same name and date of birth is already registered. "
            "Check the list below; if this is a different person, confirm and save again.",
            field=None,
        )
        self.matches = matches


def possible_duplicates(
    user: User,
    first_name: str,
    last_name: str,
    date_of_birth: dt.date,
    *,
    exclude_id: int | None = None,
) -> list[Patient]:
    query = _scoped(
        sa.select(Patient).where(
            Patient.date_of_birth == date_of_birth,
            Patient.last_key == search_key(last_name),
            Patient.first_key == search_key(first_name),
            Patient.entered_in_error_at.is_(None),
        ),
        user,
    ).options(selectinload(Patient.site))
    if exclude_id is not None:
        query = query.where(Patient.id != exclude_id)
    return list(db.session.scalars(query.order_by(Patient.id)))


def _check_demographics(data: Demographics, site: Site) -> None:
    today = site_today(site)
    if not search_key(data.first_name):
        raise DomainError("Enter a first name with at least one letter.", field="first_name")
    if not search_key(data.last_name):
        raise DomainError("Enter a last name with at least one letter.", field="last_name")
    if data.date_of_birth > today:
        raise DomainError("The date of birth is in the future.", field="date_of_birth")
    if data.date_of_birth.year < 1900:
        raise DomainError("Check the year of birth.", field="date_of_birth")
    if data.intake_date > today:
        raise DomainError("The intake date is in the future.", field="intake_date")
    if data.intake_date < data.date_of_birth:
        raise DomainError("The intake date is before the date of birth.", field="intake_date")


def _apply(patient: Patient, data: Demographics) -> list[str]:
    changed = []
    for name in Demographics.field_names():
        value = getattr(data, name)
        if getattr(patient, name) != value:
            setattr(patient, name, value)
            changed.append(name)
    patient.first_key = search_key(patient.first_name)
    patient.last_key = search_key(patient.last_name)
    patient.preferred_key = search_key(patient.preferred_name) or None
    return changed


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
    *, actor: User, site: Site, data: Demographics, confirm_duplicate: bool = False
) -> Patient:
    """Register a patient at ``site``. Same name and date of birth as a patient the user
    can see raises PossibleDuplicate unless the user has confirmed it is someone else."""
    if visible_site_ids(actor) is not None and site.id not in actor.site_ids:
        raise DomainError("You can only register patients at your own sites.", field="site_id")
    _check_demographics(data, site)
    if not confirm_duplicate:
        matches = possible_duplicates(actor, data.first_name, data.last_name, data.date_of_birth)
        if matches:
            raise PossibleDuplicate(matches)
    patient = Patient(site_id=site.id, mrn=_next_mrn(site), created_by_id=actor.id)
    _apply(patient, data)
    db.session.add(patient)
    db.session.flush()
    _audit_patient(
        patient,
        AuditAction.CREATE,
        "patient",
        patient.id,
        actor=actor,
        details={"duplicate_confirmed": confirm_duplicate},
    )
    return patient


def _check_version(record_version: int, expected_version: int | None) -> None:
    if expected_version is not None and record_version != expected_version:
        raise DomainError(CONFLICT_MESSAGE)


def update_demographics(
    patient: Patient, *, actor: User, data: Demographics, expected_version: int | None
) -> list[str]:
    """Change demographics. Saving over someone else's newer change is refused."""
    _check_version(patient.version, expected_version)
    _check_demographics(data, patient.site)
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


def mark_entered_in_error(patient: Patient, *, actor: User, reason: str) -> None:
    """Patients are never deleted: a record made by mistake is marked, with who and why."""
    reason = reason.strip()
    if len(reason) < 10:
        raise DomainError("Say why, in at least 10 characters.", field="reason")
    if patient.entered_in_error:
        raise DomainError("This record is already marked as entered in error.")
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
    name: str
    kind: ProgramKind
    active: bool
    care_plan_review_days: int
    take_home_cap_days_0_14: int
    take_home_cap_days_15_30: int
    take_home_cap_days_31_plus: int


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


def _check_program(settings: ProgramSettings) -> None:
    from clinic.patients.models import FEDERAL_TAKE_HOME_CAPS

    caps = {
        "take_home_cap_days_0_14": FEDERAL_TAKE_HOME_CAPS["days_0_14"],
        "take_home_cap_days_15_30": FEDERAL_TAKE_HOME_CAPS["days_15_30"],
        "take_home_cap_days_31_plus": FEDERAL_TAKE_HOME_CAPS["days_31_plus"],
    }
    for name, federal in caps.items():
        value = getattr(settings, name)
        if not 0 <= value <= federal:
            raise DomainError(
                f"42 CFR 8.12(i) allows at most {federal} days here; a program may only "
                "set a lower cap.",
                field=name,
            )
    if not 1 <= settings.care_plan_review_days <= 365:
        raise DomainError("Use 1 to 365 days.", field="care_plan_review_days")
    if not settings.name.strip():
        raise DomainError("Enter a name.", field="name")


def create_program(*, actor: User, site: Site, settings: ProgramSettings) -> Program:
    _check_program(settings)
    if visible_site_ids(actor) is not None and site.id not in actor.site_ids:
        raise DomainError("You can only add programs at your own sites.", field="site_id")
    _check_program_name_free(site.id, settings.name)
    program = Program(site_id=site.id, **{**vars(settings), "name": settings.name.strip()})
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
        raise DomainError("This site already has a program with that name.", field="name")


def update_program(program: Program, *, actor: User, settings: ProgramSettings) -> list[str]:
    _check_program(settings)
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
) -> AsamEdition:
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
        raise DomainError("The admission date is in the future.", field="admitted_on")
    if admitted_on < patient.date_of_birth:
        raise DomainError("The admission date is before the date of birth.", field="admitted_on")
    if primary_counselor is not None and (
        primary_counselor.role != Role.CLINICIAN
        or not primary_counselor.active
        or patient.site_id not in primary_counselor.site_ids
    ):
        raise DomainError("Choose an active clinician of this site.", field="primary_counselor_id")
    if active_enrollment_for(patient, program) is not None:
        raise DomainError("The patient is already enrolled in this program.", field="program_id")
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
    program (also a partial unique index); readmission is a new enrollment."""
    edition = _check_admission(
        patient,
        program,
        admitted_on=admitted_on,
        asam_edition=asam_edition,
        asam_level=asam_level,
        primary_counselor=primary_counselor,
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


def discharge(
    enrollment: Enrollment,
    *,
    actor: User,
    discharged_on: dt.date,
    reason: int,
    expected_version: int | None,
) -> None:
    """Discharge with a TEDS-D reason, on a date not before admission nor in the future."""
    _check_version(enrollment.version, expected_version)
    if not enrollment.active:
        raise DomainError("This enrollment has already ended.")
    try:
        reason_code = DischargeReason(int(reason))
    except (TypeError, ValueError):
        raise DomainError("Choose a discharge reason.", field="reason") from None
    if discharged_on < enrollment.admitted_on:
        raise DomainError("The discharge date is before the admission date.", field="discharged_on")
    if discharged_on > site_today(enrollment.patient.site):
        raise DomainError("The discharge date is in the future.", field="discharged_on")
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
    one transaction: either both happen or neither."""
    if to_program.id == enrollment.program_id:
        raise DomainError("Choose a different program.", field="program_id")
    # Check the admission first, so a refused admission leaves the old enrollment alone.
    _check_admission(
        enrollment.patient,
        to_program,
        admitted_on=on,
        asam_edition=asam_edition,
        asam_level=asam_level,
        primary_counselor=primary_counselor,
    )
    discharge(
        enrollment,
        actor=actor,
        discharged_on=on,
        reason=DischargeReason.TRANSFERRED,
        expected_version=expected_version,
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


# --- deadlines -------------------------------------------------------------------------


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


def deadlines(enrollment: Enrollment, today: dt.date | None = None) -> list[Deadline]:
    """42 CFR 8.12(f): medical examination and psychosocial assessment / initial care plan
    within 14 days of admission; then care-plan reviews at the program's interval."""
    today = today or site_today(enrollment.patient.site)
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


def record_milestones(
    enrollment: Enrollment,
    *,
    actor: User,
    values: dict[str, dt.date | None],
    expected_version: int | None,
) -> list[str]:
    """Record when the examination, assessment and initial care plan were done."""
    _check_version(enrollment.version, expected_version)
    today = site_today(enrollment.patient.site)
    changed = []
    for name in MILESTONES:
        value = values.get(name)
        if value is not None and value < enrollment.admitted_on:
            raise DomainError("That is before the admission date.", field=name)
        if value is not None and value > today:
            raise DomainError("That date is in the future.", field=name)
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
    if enrollment.care_plan_on is None:
        raise DomainError("Record the initial care plan first.", field="reviewed_on")
    if reviewed_on < enrollment.care_plan_on:
        raise DomainError("A review cannot come before the initial care plan.", field="reviewed_on")
    if reviewed_on > site_today(enrollment.patient.site):
        raise DomainError("That date is in the future.", field="reviewed_on")
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


def grant_break_glass(*, actor: User, mrn: str, reason: str) -> Patient:
    """Emergency access to a patient outside the clinician's sites (HIPAA 164.312(a)(2)(ii)).

    Lasts BREAK_GLASS_MINUTES, is recorded as a ``break_glass`` event and waits on the
    administrators' review list until acknowledged."""
    reason = reason.strip()
    if len(reason) < 10:
        raise DomainError("Give the reason in at least 10 characters.", field="reason")
    patient = db.session.scalar(sa.select(Patient).where(Patient.mrn == mrn.strip().upper()))
    if patient is None:
        raise DomainError("No patient has that medical record number.", field="mrn")
    sites = visible_site_ids(actor)
    if sites is None or patient.site_id in sites:
        raise DomainError(
            "This patient is at your site: open the chart from the patient list.", field="mrn"
        )
    now = utcnow()
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
    return patient
