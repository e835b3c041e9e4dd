"""What several patient use cases share: site scoping, audit events, optimistic locking,
clinical-day wording and the messages the database's refusals are shown with.

A user sees patients of their own sites (organisation-wide administrators see all), plus
any patient they hold a live break-glass grant for (HIPAA 164.312(a)(1) access control,
164.312(a)(2)(ii) emergency access; 42 CFR Part 2 limits who sees a record at all). Every
change to a patient's record is filed under the patient and their site (HIPAA 164.312(b),
audit controls). ``DATABASE_REFUSALS`` and ``DATE_RULES`` give the constraint and trigger
names (see the models and the patient_hardening migration) in the services' own words.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.audit.models import BreakGlassGrant
from clinic.db import utcnow
from clinic.errors import ConflictError, DomainError
from clinic.extensions import db
from clinic.patients.models import (
    Enrollment,
    Patient,
)
from clinic.sites.models import Site

ENTERED_IN_ERROR_MESSAGE = "This record was entered in error and can no longer be changed."
ALREADY_ENROLLED_MESSAGE = "The patient is already enrolled in this program."
REVIEW_EXISTS_MESSAGE = "A care-plan review on that date is already recorded."
PROGRAM_NAME_TAKEN_MESSAGE = "This site already has a program with that name."


def audit_patient(
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


def scoped(query: sa.Select, user: User) -> sa.Select:
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
def check_version(record_version: int, expected_version: int | None) -> None:
    """Optimistic locking: the version the user's form was built from must still be the
    record's. A form without its version (a crafted POST) is refused the same way."""
    if expected_version is None or record_version != expected_version:
        raise ConflictError()


def refuse_if_entered_in_error(patient: Patient) -> None:
    if patient.entered_in_error:
        raise DomainError(ENTERED_IN_ERROR_MESSAGE)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_day(day: dt.date) -> str:
    """A clinical day as people read it: 2026-01-26 -> "26 Jan 2026" (English month
    names whatever the server's locale; unambiguous, unlike 01/02/2026)."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def chosen(items: Iterable, item_id: int | None):
    return next((i for i in items if i.id == item_id), None)


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
