"""Missed days, derived: the run of consecutive due days without a dose, up to
yesterday, and the facts about a set of patients it is derived from (read in a constant
number of statements, shared with the dosing screen).

Rules (DOMAIN.md, "Medication for opioid use disorder"; issue 10; 42 CFR 8.12 — the
program's dosing and clinical-review duties):

- Missed days are derived, never stored by a job: the consecutive due days (of an active
  daily or split order) without a dose or a take-home bottle for the day, up to yesterday,
  not counting held days — a
  stop-dose hold in force, or a dose the dispenser recorded as held (the clinic's choice,
  not the patient's absence).
- 3 or more (``MISSED_DAYS_FOR_REVIEW``) put the patient on the review list and refuse the
  next daily dose ("clinical review before the next dose") until a clinician records a
  review (``clinic.medications.reviews``). Injections are not due daily: the rule does not
  apply to them.

Reads only: nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from clinic.extensions import db
from clinic.medications.dose_day import GIVEN_KINDS, not_reversed
from clinic.medications.models import (
    DoseEntry,
    DoseKind,
    FlagAcknowledgement,
    MedicationHold,
    MedicationOrder,
    MissedDoseReview,
    PatientFlag,
)
from clinic.patients.common import format_day
from clinic.patients.models import Patient

MISSED_DAYS_FOR_REVIEW = 3  # DOMAIN.md: 3 or more consecutive missed days
# How far back the dosing screen looks for holds when it counts missed days.
HOLD_LOOKBACK_DAYS = 120
# The recent window in which a patient's last covered day is looked for first (days).
LAST_GIVEN_WINDOW_DAYS = 60
REVIEW_NEEDED_MESSAGE = (
    "{count} missed days ({since}): a clinician's review is needed before the next dose."
)


def review_needed_message(missed: MissedDays) -> str:
    """The refusal of a dose while missed days await a review, e.g. "3 missed days (last
    dose 21 Nov): a clinician's review is needed before the next dose"."""
    if missed.last_given is not None:
        since = f"last dose {_short_day(missed.last_given, missed.since)}"
    else:
        since = f"no dose since the order started {_short_day(missed.since, missed.since)}"
    return REVIEW_NEEDED_MESSAGE.format(count=missed.unreviewed_count, since=since)


def _short_day(day: dt.date | None, near: dt.date | None) -> str:
    """ "21 Nov" for a day in the months around ``near``, "21 Nov 2025" further back."""
    if day is None:
        return "unknown"
    full = format_day(day)
    if near is not None and abs((near - day).days) < 180:
        return full.rsplit(" ", 1)[0]
    return full


@dataclass
class MissedDays:
    """The patient's current run of missed due days up to yesterday."""

    count: int  # missed due days in the run (held days not counted)
    since: dt.date | None  # the first day of the run
    reviewed_on: dt.date | None  # the latest review of this run, if any
    count_after_review: int  # missed due days after that review
    last_given: dt.date | None = None  # the last dose before the run (None: none yet)

    @property
    def unreviewed_count(self) -> int:
        """The missed days a review has not yet seen."""
        return self.count if self.reviewed_on is None else self.count_after_review

    @property
    def needs_review(self) -> bool:
        """3 or more missed days, unreviewed (or 3 more since the last review)."""
        if self.reviewed_on is None:
            return self.count >= MISSED_DAYS_FOR_REVIEW
        return self.count_after_review >= MISSED_DAYS_FOR_REVIEW

    @property
    def refusal(self) -> str | None:
        """Why the next daily dose is refused, if it is."""
        return review_needed_message(self) if self.needs_review else None


def _hold_days(
    holds: list[MedicationHold], tz: ZoneInfo, start: dt.date, end: dt.date
) -> set[dt.date]:
    """Days in [start, end] on which one of ``holds`` was in force all day (placed on or
    before it, lifted after it, not past its until-date)."""
    days: set[dt.date] = set()
    for hold in holds:
        first = max(start, hold.placed_at.astimezone(tz).date())
        last = end
        if hold.until_on is not None:
            last = min(last, hold.until_on)
        if hold.lifted_at is not None:
            last = min(last, hold.lifted_at.astimezone(tz).date() - dt.timedelta(days=1))
        day = first
        while day <= last:
            days.add(day)
            day += dt.timedelta(days=1)
    return days


def _count_missed(start: dt.date, end: dt.date, held: set[dt.date]) -> int:
    if end < start:
        return 0
    total = (end - start).days + 1
    return total - sum(1 for d in held if start <= d <= end)


def missed_days(
    order: MedicationOrder,
    *,
    today: dt.date,
    last_given: dt.date | None,
    holds: list[MedicationHold],
    last_review: dt.date | None,
    tz: ZoneInfo,
    held_days: Iterable[dt.date] = (),
) -> MissedDays:
    """The run of consecutive due days of ``order`` without a dose, up to yesterday (today
    may still be dosed). It starts the day after the last dose — or at the order's start,
    if no dose was given since then (a dose change's new order carries on the run of the
    order it replaces). Held days are not missed: days a hold was in force and
    ``held_days`` (doses the dispenser recorded as held) — they neither count nor end the
    run. A review on a day of the run (or later) clears it; missed days after the review's
    day count again."""
    yesterday = today - dt.timedelta(days=1)
    if last_given is not None and (order.replaces_id is not None or last_given >= order.start_on):
        start = last_given + dt.timedelta(days=1)
    else:
        start = order.start_on
    dosed_before = last_given if last_given is not None and start > order.start_on else None
    if start > yesterday:
        return MissedDays(0, None, None, 0, dosed_before)
    held = _hold_days(holds, tz, start, yesterday) | {
        d for d in held_days if start <= d <= yesterday
    }
    count = _count_missed(start, yesterday, held)
    reviewed = last_review if last_review is not None and last_review >= start else None
    after = _count_missed(reviewed + dt.timedelta(days=1), yesterday, held) if reviewed else 0
    return MissedDays(count, start if count else None, reviewed, after, dosed_before)


def patient_missed_days(patient: Patient, order: MedicationOrder, today: dt.date) -> MissedDays:
    facts = day_facts([patient.id], today, ZoneInfo(patient.site.timezone))
    return facts.missed(order, today)


@dataclass
class DayFacts:
    """What the screen and the review list need about a set of patients, read in a
    constant number of statements."""

    tz: ZoneInfo
    given_today: dict[int, list[DoseEntry]] = field(default_factory=dict)
    last_given: dict[int, dt.date] = field(default_factory=dict)
    holds: dict[int, list[MedicationHold]] = field(default_factory=dict)
    flags: dict[int, list[PatientFlag]] = field(default_factory=dict)
    acknowledged: set[int] = field(default_factory=set)
    last_review: dict[int, dt.date] = field(default_factory=dict)
    held_days: dict[int, set[dt.date]] = field(default_factory=dict)

    def missed(self, order: MedicationOrder, today: dt.date) -> MissedDays:
        return missed_days(
            order,
            today=today,
            last_given=self.last_given.get(order.patient_id),
            holds=self.holds.get(order.patient_id, []),
            last_review=self.last_review.get(order.patient_id),
            tz=self.tz,
            held_days=self.held_days.get(order.patient_id, ()),
        )


def day_facts(patient_ids: sa.Select | list[int], day: dt.date, tz: ZoneInfo) -> DayFacts:
    """Seven statements, whatever the number of patients (``patient_ids``: a list or a
    SELECT of ids)."""
    facts = DayFacts(tz)
    for entry in db.session.scalars(
        sa.select(DoseEntry)
        .where(
            DoseEntry.patient_id.in_(patient_ids),
            DoseEntry.dispensed_on == day,
            DoseEntry.kind.in_(GIVEN_KINDS),
            not_reversed(),
        )
        .order_by(DoseEntry.slot)
    ):
        facts.given_today.setdefault(entry.patient_id, []).append(entry)
    # The last day covered by medication before ``day``: a dose given (its day) or a
    # take-home bottle (its take-on day, issue 13) — a day taken at home is not missed.
    covered_on = sa.case(
        (DoseEntry.kind == DoseKind.TAKE_HOME, DoseEntry.take_on), else_=DoseEntry.dispensed_on
    )
    covering = (
        DoseEntry.patient_id.in_(patient_ids),
        covered_on < day,
        DoseEntry.kind.in_((*GIVEN_KINDS, DoseKind.TAKE_HOME)),
        not_reversed(),
    )
    # Most patients were covered in the last weeks: their last covered day is found among
    # the rows of the recent window alone, read by the indexes on (patient_id,
    # dispensed_on) and (patient_id, take_on) — not the whole ledger. Only patients with no
    # covered day in the window have their whole history read. One statement either way.
    since = day - dt.timedelta(days=LAST_GIVEN_WINDOW_DAYS)
    recent = (
        sa.select(DoseEntry.patient_id, sa.func.max(covered_on).label("last_covered"))
        .where(
            *covering,
            sa.or_(
                sa.and_(DoseEntry.kind.in_(GIVEN_KINDS), DoseEntry.dispensed_on >= since),
                sa.and_(DoseEntry.kind == DoseKind.TAKE_HOME, DoseEntry.take_on >= since),
            ),
        )
        .group_by(DoseEntry.patient_id)
        .cte("recent_cover")
    )
    older = (
        sa.select(DoseEntry.patient_id, sa.func.max(covered_on))
        .where(*covering, DoseEntry.patient_id.not_in(sa.select(recent.c.patient_id)))
        .group_by(DoseEntry.patient_id)
    )
    facts.last_given = dict(
        db.session.execute(
            sa.union_all(sa.select(recent.c.patient_id, recent.c.last_covered), older)
        ).all()
    )
    lookback = dt.datetime.combine(day - dt.timedelta(days=HOLD_LOOKBACK_DAYS), dt.time(), tz)
    for hold in db.session.scalars(
        sa.select(MedicationHold)
        .where(
            MedicationHold.patient_id.in_(patient_ids),
            sa.or_(MedicationHold.lifted_at.is_(None), MedicationHold.lifted_at >= lookback),
        )
        .order_by(MedicationHold.placed_at)
    ):
        facts.holds.setdefault(hold.patient_id, []).append(hold)
    # Doses recorded as held since the last dose (the lookback bounds them, as for holds).
    for patient_id, held_on in db.session.execute(
        sa.select(DoseEntry.patient_id, DoseEntry.dispensed_on)
        .where(
            DoseEntry.patient_id.in_(patient_ids),
            DoseEntry.kind == DoseKind.HELD,
            DoseEntry.dispensed_on >= day - dt.timedelta(days=HOLD_LOOKBACK_DAYS),
            DoseEntry.dispensed_on < day,
        )
        .distinct()
    ):
        facts.held_days.setdefault(patient_id, set()).add(held_on)
    for flag in db.session.scalars(
        sa.select(PatientFlag)
        .where(PatientFlag.patient_id.in_(patient_ids), PatientFlag.cleared_at.is_(None))
        .order_by(PatientFlag.category.desc(), PatientFlag.id)
    ):
        facts.flags.setdefault(flag.patient_id, []).append(flag)
    facts.acknowledged = set(
        db.session.scalars(
            sa.select(FlagAcknowledgement.flag_id).where(
                FlagAcknowledgement.patient_id.in_(patient_ids),
                FlagAcknowledgement.acknowledged_on == day,
            )
        )
    )
    facts.last_review = dict(
        db.session.execute(
            sa.select(MissedDoseReview.patient_id, sa.func.max(MissedDoseReview.reviewed_on))
            .where(MissedDoseReview.patient_id.in_(patient_ids))
            .group_by(MissedDoseReview.patient_id)
        ).all()
    )
    return facts
