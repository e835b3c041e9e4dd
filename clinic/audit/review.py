"""Reviewing access: acknowledging break-glass grants (with an outcome and a note) and the
patient access report (who opened a patient's record, when, and how)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import display
from clinic.audit.models import (
    REVIEW_NOTE_MAX,
    AuditAction,
    AuditEvent,
    AuditOutcome,
    BreakGlassGrant,
    ReviewOutcome,
)
from clinic.audit.reading import AuditScope
from clinic.audit.services import MAX_ID, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients.models import Patient
from clinic.sites.models import Site

# --- break-glass review ---------------------------------------------------------------


def _grants_in_scope(scope: AuditScope) -> sa.Select:
    query = sa.select(BreakGlassGrant)
    if scope.site_ids is not None:
        patients = sa.select(Patient.id).where(Patient.site_id.in_(scope._sites()))
        query = query.where(BreakGlassGrant.patient_id.in_(patients))
    return query


@dataclass
class GrantRow:
    """One emergency access as the review shows it: the grant, who opened which patient
    at which site, who reviewed it, and how many pages of the patient's record the
    clinician viewed while the grant lasted."""

    grant: BreakGlassGrant
    clinician: User
    patient: Patient
    site: Site
    reviewer: User | None
    pages_viewed: int

    @property
    def live(self) -> bool:
        """The access has not ended yet: a review may come while it lasts, and must not
        say it ended."""
        return self.grant.expires_at > utcnow()


def _grant_rows(query: sa.Select) -> list[GrantRow]:
    # One statement for the whole list: the people, the patient, the site and the
    # count of views inside the grant's window (a correlated subquery on the
    # (user_id, seq) index), whatever the number of grants.
    clinician = sa.orm.aliased(User)
    reviewer = sa.orm.aliased(User)
    views = (
        sa.select(sa.func.count(AuditEvent.id))
        .where(
            AuditEvent.user_id == BreakGlassGrant.user_id,
            AuditEvent.patient_id == BreakGlassGrant.patient_id,
            AuditEvent.action == AuditAction.VIEW,
            AuditEvent.occurred_at >= BreakGlassGrant.granted_at,
            AuditEvent.occurred_at < BreakGlassGrant.expires_at,
        )
        .correlate(BreakGlassGrant)
        .scalar_subquery()
    )
    query = (
        query.add_columns(clinician, Patient, Site, reviewer, views)
        .join(clinician, clinician.id == BreakGlassGrant.user_id)
        .join(Patient, Patient.id == BreakGlassGrant.patient_id)
        .join(Site, Site.id == Patient.site_id)
        .outerjoin(reviewer, reviewer.id == BreakGlassGrant.acknowledged_by_id)
    )
    return [GrantRow(*row) for row in db.session.execute(query)]


def break_glass_grants(
    scope: AuditScope, *, unacknowledged_only: bool = True, limit: int = 200
) -> list[GrantRow]:
    """Emergency accesses to patients in ``scope``, newest first (the review list), at
    most ``limit``; in one statement whatever their number."""
    query = _grants_in_scope(scope).order_by(BreakGlassGrant.granted_at.desc()).limit(limit)
    if unacknowledged_only:
        query = query.where(BreakGlassGrant.acknowledged_at.is_(None))
    return _grant_rows(query)


def grant_row(scope: AuditScope, grant_id: int) -> GrantRow | None:
    """One grant as the review shows it, or None when it does not exist or its patient
    lies outside ``scope`` (the caller answers 404 for both)."""
    if not 1 <= grant_id <= MAX_ID:
        return None
    rows = _grant_rows(_grants_in_scope(scope).where(BreakGlassGrant.id == grant_id))
    return rows[0] if rows else None


def grant_for_review(scope: AuditScope, grant_id: int) -> BreakGlassGrant | None:
    """The grant, or None when it does not exist or its patient lies outside ``scope``."""
    if not 1 <= grant_id <= MAX_ID:
        return None
    return db.session.scalar(_grants_in_scope(scope).where(BreakGlassGrant.id == grant_id))


ESCALATION_NOTE_MESSAGE = "Say why this access is escalated and to whom."
ALREADY_REVIEWED_MESSAGE = "This emergency access was already acknowledged; nothing was changed."


def acknowledge_break_glass(
    grant: BreakGlassGrant, *, actor: Any, outcome: ReviewOutcome | str, note: str | None = None
) -> None:
    """An administrator has reviewed an emergency access and its reason
    (HIPAA 164.308(a)(1)(ii)(D) information system activity review): ``outcome`` is
    ``appropriate`` or ``escalated``; ``note`` (at most ``REVIEW_NOTE_MAX`` characters)
    is required for an escalation and stays on the grant: the audit event records the
    outcome, never the note.

    Raises ``DomainError`` (field ``outcome`` or ``note``) for an unknown outcome or an
    escalation without a note, and when the grant was already acknowledged, by this
    request's reader or a racing one (the UPDATE only changes an unacknowledged row).
    The CHECKs on ``break_glass_grant`` hold the same rules in the database.
    """
    try:
        outcome = ReviewOutcome(outcome)
    except ValueError:
        raise DomainError("Choose an outcome.", field="outcome") from None
    note = (note or "").strip() or None
    if outcome is ReviewOutcome.ESCALATED and note is None:
        raise DomainError(ESCALATION_NOTE_MESSAGE, field="note")
    if note is not None and len(note) > REVIEW_NOTE_MAX:
        raise DomainError(f"Enter at most {REVIEW_NOTE_MAX} characters.", field="note")
    grant_id, patient_id = grant.id, grant.patient_id
    table = BreakGlassGrant.__table__
    changed = db.session.execute(
        sa.update(table)
        .where(table.c.id == grant_id, table.c.acknowledged_at.is_(None))
        .values(
            acknowledged_at=utcnow(),
            acknowledged_by_id=actor.id,
            review_outcome=outcome.value,
            review_note=note,
        )
    ).rowcount
    if changed != 1:
        raise DomainError(ALREADY_REVIEWED_MESSAGE)
    db.session.expire(grant)
    record(
        AuditAction.ACKNOWLEDGE,
        actor=actor,
        entity_type="break_glass_grant",
        entity_id=grant_id,
        patient_id=patient_id,
        details={"outcome": outcome.value},
    )


# --- patient access report ------------------------------------------------------------


@dataclass
class AccessEntry:
    """One access to a patient's record as the report shows it: no ids, hashes or IPs."""

    when: display.Moment
    who: str
    role: str
    what: str
    reason: str | None


@dataclass
class AccessReport:
    patient: Patient
    site: Site
    date_from: dt.date | None
    date_to: dt.date | None
    entries: list[AccessEntry]


def _site_day_start(day: dt.date, timezone: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), ZoneInfo(timezone)).astimezone(dt.UTC)


def access_report(
    patient: Patient, *, date_from: dt.date | None = None, date_to: dt.date | None = None
) -> AccessReport:
    """Who accessed ``patient``'s record, newest first, for the accounting a patient may
    ask for (45 CFR 164.528; 42 CFR 2.24): each successful event about the patient with
    the person's full name and role at the time, the moment in the patient's site time,
    the access in plain words (``display.describe``) and, for emergency access, the
    reason the clinician gave. ``date_from``/``date_to`` are days in the site's time
    zone, both included. Refused attempts are not accesses and are left out.

    Four statements whatever the number of events: the site, the events (by the
    ``(patient_id, seq)`` index), the people and the patient's emergency-access grants.
    The caller has checked that the administrator may see the patient.
    """
    site = db.session.get(Site, patient.site_id)
    query = sa.select(AuditEvent).where(
        AuditEvent.patient_id == patient.id, AuditEvent.outcome == AuditOutcome.SUCCESS
    )
    if date_from is not None:
        query = query.where(AuditEvent.occurred_at >= _site_day_start(date_from, site.timezone))
    if date_to is not None:
        end = _site_day_start(date_to + dt.timedelta(days=1), site.timezone)
        query = query.where(AuditEvent.occurred_at < end)
    events = list(db.session.scalars(query.order_by(AuditEvent.seq.desc())))
    user_ids = {e.user_id for e in events if e.user_id is not None}
    names: dict[int, str] = {}
    if user_ids:
        rows = db.session.execute(sa.select(User.id, User.full_name).where(User.id.in_(user_ids)))
        # Not dict(rows): a Result has .keys() (its columns), so dict() would index it.
        names = {user_id: full_name for user_id, full_name in rows}  # noqa: C416
    grants = list(
        db.session.scalars(
            sa.select(BreakGlassGrant).where(BreakGlassGrant.patient_id == patient.id)
        )
    )

    def emergency_reason(event: AuditEvent, details: dict) -> str | None:
        if event.action == AuditAction.BREAK_GLASS:
            return next((g.reason for g in grants if str(g.id) == event.entity_id), None)
        if not details.get("break_glass"):
            return None
        return next(
            (
                g.reason
                for g in grants
                if g.user_id == event.user_id and g.granted_at <= event.occurred_at < g.expires_at
            ),
            None,
        )

    entries = []
    for item in events:
        details = display.details_of(item.details)
        entries.append(
            AccessEntry(
                when=display.moment(item.occurred_at, site.timezone),
                who=names.get(item.user_id) or ("A former user" if item.user_id else "The system"),
                role=display.role_label(item.role) if item.user_id else "",
                what=display.describe(item.action.value, item.entity_type, details),
                reason=emergency_reason(item, details),
            )
        )
    return AccessReport(patient, site, date_from, date_to, entries)
