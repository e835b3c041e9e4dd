"""The missed-dose review: the list of patients whose missed days await a clinician, and
the clinician's decision — continue, hold doses, or a new order (DOMAIN.md: "clinical
review before the next dose"; 42 CFR 8.12). Missed days themselves are derived in
``clinic.medications.missed``.

The review checks, writes, records its audit event and flushes; the caller commits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications.dose_day import daily_order
from clinic.medications.ledger import NO_ORDER_MESSAGE, audit_created, clean_text
from clinic.medications.missed import MissedDays, patient_missed_days
from clinic.medications.models import (
    MedicationOrder,
    MissedDoseReview,
    ReviewDecision,
)
from clinic.medications.worklists import dosing_screen
from clinic.patients.models import Patient
from clinic.security import Permission
from clinic.sites.models import Site
from clinic.sites.time import site_today

REVIEW_NOT_DUE_MESSAGE = "This patient has no missed days to review."


def record_review(
    patient: Patient,
    *,
    actor: User,
    decision: str,
    note: str | None,
    now: dt.datetime | None = None,
) -> MissedDoseReview:
    """A clinician's review of 3 or more missed days (DOMAIN.md): continue the order, hold
    doses (a stop-dose hold through the holds service) or write a new order (the order
    form follows). The patient leaves the review list and the dosing screen's alert."""
    if not actor.can(Permission.MEDICATION_HOLD):
        raise DomainError("Only a clinician records a missed-dose review.")
    try:
        choice = ReviewDecision(decision)
    except ValueError:
        raise DomainError("Choose what happens next.", field="decision") from None
    note = clean_text(note)
    now = now or utcnow()
    today = site_today(patient.site, now)
    order = daily_order(patient, today)
    if order is None:
        raise DomainError(NO_ORDER_MESSAGE)
    status = patient_missed_days(patient, order, today)
    if status.count == 0:
        raise DomainError(REVIEW_NOT_DUE_MESSAGE)
    if choice is ReviewDecision.HOLD:
        if note is None:
            raise DomainError(
                "Say why doses are held (it becomes the hold's reason).", field="note"
            )
        from clinic.medications import holds

        holds.place_hold(patient, actor=actor, reason=note, until_on=None)
    review = MissedDoseReview(
        patient_id=patient.id,
        order_id=order.id,
        reviewed_on=today,
        missed_days=status.count,
        decision=choice,
        note=note,
        reviewed_by_id=actor.id,
        reviewed_at=now,
    )
    db.session.add(review)
    db.session.flush()
    audit_created("missed_dose_review", review.id, patient, actor, decision=choice.value)
    return review


@dataclass
class ReviewRow:
    patient: Patient
    order: MedicationOrder
    missed: MissedDays


def review_list(site_ids: set[int] | None, *, now: dt.datetime | None = None) -> list[ReviewRow]:
    """Patients at the sites (None: all) with 3 or more consecutive missed days not yet
    reviewed, most days first: a constant number of statements per site."""
    sites_query = sa.select(Site).order_by(Site.code)
    if site_ids is not None:
        sites_query = sites_query.where(Site.id.in_(site_ids or {-1}))
    rows: list[ReviewRow] = []
    for site in db.session.scalars(sites_query):
        today = site_today(site, now)
        for row in dosing_screen(site, today):
            if row.missed.needs_review:
                rows.append(ReviewRow(row.patient, row.due.order, row.missed))
    rows.sort(key=lambda r: (-r.missed.count, r.patient.last_key, r.patient.id))
    return rows
