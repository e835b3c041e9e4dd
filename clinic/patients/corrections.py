"""Corrections of an enrollment (counselor, level of care, admission date) and undoing a
discharge entered by mistake: the old value is kept as an append-only correction with who
and why (HIPAA 164.312(c)(1) integrity; 42 CFR Part 2 records are amended, never erased).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import AuditAction
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.forms import CONTROL_CHARACTER_MESSAGE, has_control_characters
from clinic.patients.admissions import ENDED_MESSAGE, active_enrollment_for, recorded_dates
from clinic.patients.common import (
    audit_patient,
    check_version,
    format_day,
    refuse_if_entered_in_error,
)
from clinic.patients.models import (
    ASAM_LEVELS,
    AsamEdition,
    CorrectedField,
    Enrollment,
    EnrollmentCorrection,
)
from clinic.security import Role
from clinic.sites.time import site_today

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
    audit_patient(
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
    refuse_if_entered_in_error(enrollment.patient)
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
    recorded = recorded_dates(enrollment, sa.func.min)
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
    refuse_if_entered_in_error(enrollment.patient)
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
