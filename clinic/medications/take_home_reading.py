"""Take-home decisions, read: a decision by id within the user's reach, a patient's
decisions with their review status, the evidence shown beside the six criteria (the latest
drug tests with their effective results, attendance over the last 90 days, bottle
findings, safe-storage education, the current decisions and their cap) and the site's
review list.

Rules (DOMAIN.md "Take-home methadone"; issue 13):

- A decision in force is due for review when the program's ``take_home_review_days``
  (default 90) have passed since its approval or its last review.
- A positive drug test (the effective result — definitive supersedes presumptive — for
  anything but the patient's own medication) or a bottle finding (``DiversionIncident``)
  after the decision's approval or its last review puts it on the review list at once.
- Attendance: over the last 90 days (up to yesterday), the days with an observed dose or
  an injection not reversed, against the days due — days a daily or split order was in
  force, not clinic-closed, not covered by a take-home bottle and not held.

Reads only; dates are site-local days. Query counts are fixed (see each function).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications import drug_tests
from clinic.medications.dose_day import DAILY_SCHEDULES, GIVEN_KINDS, not_reversed
from clinic.medications.models import DoseEntry, DoseKind, MedicationOrder
from clinic.medications.take_home_models import (
    DiversionIncident,
    TakeHomeDecision,
    TakeHomeReview,
)
from clinic.medications.take_home_rules import closed_days, in_force_clause
from clinic.patients.common import patient_for, visible_site_ids
from clinic.patients.models import Enrollment, Patient, Program
from clinic.sites.models import Site
from clinic.sites.time import site_today

ATTENDANCE_DAYS = 90
LATEST_TESTS = 5


def local_day(instant: dt.datetime, site: Site) -> dt.date:
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=dt.UTC)
    return instant.astimezone(ZoneInfo(site.timezone)).date()


def decision_for(user: User, decision_id: int) -> TakeHomeDecision | None:
    """A decision by id, only if its patient is within the user's reach (their sites or a
    live break-glass grant)."""
    decision = db.session.get(TakeHomeDecision, decision_id)
    if decision is None or patient_for(user, decision.patient_id) is None:
        return None
    return decision


@dataclass
class DecisionStatus:
    """A decision with its review state on ``today``."""

    decision: TakeHomeDecision
    last_review: TakeHomeReview | None
    review_due_on: dt.date | None  # None: not approved, ended, or its period is over
    in_force: bool = False  # approved, not ended, its period reaching today or later
    reasons: list[str] = field(default_factory=list)  # why it is on the review list

    @property
    def state(self) -> str:
        d = self.decision
        if d.declined_at is not None:
            return "Declined"
        if d.approved_at is None:
            return "Awaiting approval"
        if d.ended_at is not None:
            return f"Ends on {d.ended_on:%d %b %Y}" if self.in_force else "Ended"
        return "In force" if self.in_force else "Period over"

    @property
    def on_review_list(self) -> bool:
        return bool(self.reasons)


def _baseline(decision: TakeHomeDecision, last: TakeHomeReview | None) -> dt.datetime:
    at = last.reviewed_at if last is not None else decision.approved_at
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _latest_reviews(decision_ids: list[int]) -> dict[int, TakeHomeReview]:
    if not decision_ids:
        return {}
    latest = (
        sa.select(sa.func.max(TakeHomeReview.id))
        .where(TakeHomeReview.decision_id.in_(decision_ids))
        .group_by(TakeHomeReview.decision_id)
    )
    rows = db.session.scalars(
        sa.select(TakeHomeReview)
        .options(joinedload(TakeHomeReview.reviewed_by))
        .where(TakeHomeReview.id.in_(latest))
    )
    return {r.decision_id: r for r in rows}


def _statuses(
    decisions: list[TakeHomeDecision],
    review_days: dict[int, int],
    site_of: dict[int, Site],
    today_of: dict[int, dt.date],
) -> list[DecisionStatus]:
    """Statuses of ``decisions`` (their programs' review intervals by decision id): three
    statements (latest reviews, positive tests, incidents) whatever their number."""
    reviews = _latest_reviews([d.id for d in decisions])
    statuses: list[DecisionStatus] = []
    watched: dict[int, DecisionStatus] = {}
    for d in decisions:
        last = reviews.get(d.id)
        today = today_of[d.id]
        in_force = (
            d.approved_at is not None
            and d.declined_at is None
            and (d.ended_on is None or d.ended_on > today)
            and (d.end_on is None or d.end_on >= today)
        )
        status = DecisionStatus(d, last, None, in_force)
        if in_force and d.ended_at is None:
            since = (
                last.reviewed_on if last is not None else local_day(d.approved_at, site_of[d.id])
            )
            status.review_due_on = since + dt.timedelta(days=review_days[d.id])
            if status.review_due_on <= today:
                status.reasons.append(f"Review due since {status.review_due_on:%d %b %Y}")
            watched[d.id] = status
        statuses.append(status)
    if watched:
        bounds: dict[int, dt.datetime] = {}
        for s in watched.values():
            at = _baseline(s.decision, s.last_review)
            pid = s.decision.patient_id
            bounds[pid] = min(bounds.get(pid, at), at)
        positives = drug_tests.unexpected_positives(list(bounds), bounds)
        incidents = db.session.execute(
            sa.select(DiversionIncident.patient_id, DiversionIncident.recorded_at).where(
                DiversionIncident.patient_id.in_(list(bounds)),
                DiversionIncident.recorded_at > min(bounds.values()),
            )
        ).all()
        incidents_of: dict[int, list[dt.datetime]] = {}
        for row in incidents:
            incidents_of.setdefault(row.patient_id, []).append(_aware(row.recorded_at))
        for s in watched.values():
            at = _baseline(s.decision, s.last_review)
            pid = s.decision.patient_id
            found = [p for p in positives.get(pid, []) if p.collected_at > at]
            if found:
                names = ", ".join(sorted({p.label for p in found}))
                s.reasons.append(f"Positive test since the decision or its last review: {names}")
            hits = [r for r in incidents_of.get(pid, []) if r > at]
            if hits:
                s.reasons.append(
                    f"Bottle finding since the decision or its last review ({len(hits)})"
                )
    return statuses


def _aware(instant: dt.datetime) -> dt.datetime:
    return instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)


def patient_statuses(patient: Patient, today: dt.date | None = None) -> list[DecisionStatus]:
    """The patient's decisions, newest first, with who recorded, approved, declined and
    ended them, and their review state: a fixed number of statements."""
    site = patient.site
    today = today or site_today(site)
    decisions = list(
        db.session.scalars(
            sa.select(TakeHomeDecision)
            .options(
                joinedload(TakeHomeDecision.recorded_by),
                joinedload(TakeHomeDecision.approved_by),
                joinedload(TakeHomeDecision.declined_by),
                joinedload(TakeHomeDecision.ended_by),
                joinedload(TakeHomeDecision.enrollment).joinedload(Enrollment.program),
            )
            .where(TakeHomeDecision.patient_id == patient.id)
            .order_by(TakeHomeDecision.start_on.desc(), TakeHomeDecision.id.desc())
        ).unique()
    )
    return _statuses(
        decisions,
        {d.id: d.enrollment.program.take_home_review_days for d in decisions},
        {d.id: site for d in decisions},
        {d.id: today for d in decisions},
    )


def decision_reviews(decision: TakeHomeDecision) -> list[TakeHomeReview]:
    """The decision's reviews, newest first, with their reviewers: one statement."""
    return list(
        db.session.scalars(
            sa.select(TakeHomeReview)
            .options(joinedload(TakeHomeReview.reviewed_by))
            .where(TakeHomeReview.decision_id == decision.id)
            .order_by(TakeHomeReview.reviewed_at.desc(), TakeHomeReview.id.desc())
        )
    )


@dataclass
class Attendance:
    first_day: dt.date
    last_day: dt.date
    due: int
    attended: int

    @property
    def percent(self) -> int | None:
        return round(100 * self.attended / self.due) if self.due else None


def attendance(patient: Patient, today: dt.date) -> Attendance:
    """Attendance over the ``ATTENDANCE_DAYS`` days up to yesterday (see the module
    docstring): four statements."""
    first, last = today - dt.timedelta(days=ATTENDANCE_DAYS), today - dt.timedelta(days=1)
    orders = db.session.execute(
        sa.select(
            MedicationOrder.id,
            MedicationOrder.start_on,
            MedicationOrder.end_on,
            MedicationOrder.replaces_id,
        ).where(
            MedicationOrder.patient_id == patient.id,
            MedicationOrder.schedule.in_(DAILY_SCHEDULES),
            MedicationOrder.start_on <= last,
            sa.or_(MedicationOrder.end_on.is_(None), MedicationOrder.end_on >= first),
        )
    ).all()
    entries = db.session.execute(
        sa.select(DoseEntry.kind, DoseEntry.dispensed_on, DoseEntry.take_on).where(
            DoseEntry.patient_id == patient.id,
            DoseEntry.kind.in_([*GIVEN_KINDS, DoseKind.TAKE_HOME, DoseKind.HELD]),
            sa.or_(
                DoseEntry.dispensed_on.between(first, last),
                DoseEntry.take_on.between(first, last),
            ),
            not_reversed(),
        )
    ).all()
    closed = closed_days(patient.site, first, last)
    given = {e.dispensed_on for e in entries if e.kind in GIVEN_KINDS}
    away = {e.take_on for e in entries if e.kind == DoseKind.TAKE_HOME and e.take_on}
    away |= {e.dispensed_on for e in entries if e.kind == DoseKind.HELD}
    due = attended = 0
    day = first
    while day <= last:
        replaced = {o.replaces_id for o in orders if o.replaces_id and o.start_on <= day}
        in_force = any(
            o.start_on <= day and (o.end_on is None or o.end_on >= day) and o.id not in replaced
            for o in orders
        )
        if in_force and day not in closed and day not in away:
            due += 1
            attended += day in given
        day += dt.timedelta(days=1)
    return Attendance(first, last, due, attended)


@dataclass
class Evidence:
    """What the review page shows beside the six criteria."""

    tests: drug_tests.HistoryPage
    attendance: Attendance
    incidents: list[DiversionIncident]
    last_education_on: dt.date | None
    statuses: list[DecisionStatus]


def evidence(patient: Patient, today: dt.date) -> Evidence:
    """The evidence for the patient's take-home review: a fixed number of statements."""
    incidents = list(
        db.session.scalars(
            sa.select(DiversionIncident)
            .where(DiversionIncident.patient_id == patient.id)
            .order_by(DiversionIncident.found_on.desc(), DiversionIncident.id.desc())
            .limit(20)
        )
    )
    education = db.session.scalar(
        sa.select(sa.func.max(TakeHomeDecision.storage_education_on)).where(
            TakeHomeDecision.patient_id == patient.id
        )
    )
    return Evidence(
        tests=drug_tests.test_history(patient, limit=LATEST_TESTS),
        attendance=attendance(patient, today),
        incidents=incidents,
        last_education_on=education,
        statuses=patient_statuses(patient, today),
    )


def review_list(user: User, now: dt.datetime | None = None) -> list[DecisionStatus]:
    """The decisions in force at the user's sites due for review or with a positive test or
    a bottle finding since their approval or last review, most urgent first (due day).
    A fixed number of statements whatever the number of patients: the sites, the decisions
    in force with their patients and programs, then ``_statuses``' three."""
    sites_query = sa.select(Site)
    sites = visible_site_ids(user)
    if sites is not None:
        sites_query = sites_query.where(Site.id.in_(sites or {-1}))
    site_by_id = {s.id: s for s in db.session.scalars(sites_query)}
    if not site_by_id:
        return []
    today_by_site = {sid: site_today(s, now) for sid, s in site_by_id.items()}
    earliest = min(today_by_site.values())
    rows = db.session.execute(
        sa.select(TakeHomeDecision, Program.take_home_review_days)
        .join(Enrollment, Enrollment.id == TakeHomeDecision.enrollment_id)
        .join(Program, Program.id == Enrollment.program_id)
        .options(joinedload(TakeHomeDecision.patient))
        .where(TakeHomeDecision.site_id.in_(list(site_by_id)), in_force_clause(earliest))
    ).all()
    decisions = [r[0] for r in rows]
    statuses = _statuses(
        decisions,
        {r[0].id: r[1] for r in rows},
        {d.id: site_by_id[d.site_id] for d in decisions},
        {d.id: today_by_site[d.site_id] for d in decisions},
    )
    listed = [s for s in statuses if s.on_review_list]
    listed.sort(
        key=lambda s: (s.review_due_on or dt.date.max, s.decision.patient_id, s.decision.id)
    )
    return listed


def awaiting_approval(user: User) -> sa.Select[tuple[TakeHomeDecision]]:
    """Decisions at ``user``'s sites neither approved nor declined yet, oldest first (the
    prescribers' worklist), patients entered in error left out: a select, for the review
    list (its first rows) and the dashboard (its count)."""
    query = (
        sa.select(TakeHomeDecision)
        .join(Patient, Patient.id == TakeHomeDecision.patient_id)
        .where(
            TakeHomeDecision.approved_at.is_(None),
            TakeHomeDecision.declined_at.is_(None),
            Patient.entered_in_error_at.is_(None),
        )
        .order_by(TakeHomeDecision.recorded_at, TakeHomeDecision.id)
    )
    sites = visible_site_ids(user)
    if sites is not None:
        query = query.where(TakeHomeDecision.site_id.in_(sites or {-1}))
    return query
