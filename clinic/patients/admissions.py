"""Enrollment: admit a patient to a program, transfer them to another, discharge them (TEDS-D
reason), the listeners other domains register to hear of a discharge, and the enrollments
a chart shows.

One active enrollment per patient and program (``uq_enrollment_active_patient_program``);
dates are checked against the milestones and reviews recorded (42 CFR 8.12(f)). Each
change is audited (HIPAA 164.312(b)) and flushed; the caller commits once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from clinic.accounts.models import User
from clinic.audit import AuditAction
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients.common import (
    ALREADY_ENROLLED_MESSAGE,
    audit_patient,
    check_version,
    format_day,
    refuse_if_entered_in_error,
)
from clinic.patients.models import (
    ASAM_LEVELS,
    AsamEdition,
    CarePlanReview,
    DischargeReason,
    Enrollment,
    EnrollmentCorrection,
    Patient,
    Program,
)
from clinic.security import Role
from clinic.sites.time import site_today


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
    audit_patient(
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


def recorded_dates(
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
    recorded = recorded_dates(enrollment, sa.func.max)
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
    refuse_if_entered_in_error(enrollment.patient)
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
    audit_patient(
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
    refuse_if_entered_in_error(enrollment.patient)
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
ENDED_MESSAGE = "This enrollment has already ended."


# --- deadlines -------------------------------------------------------------------------


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
