"""The rules of take-home doses, read only: the clinic calendar, time in treatment, the caps
of 42 CFR 8.12(i), the days counted against a cap and which decisions cover a day.

Rules (DOMAIN.md "Take-home methadone (42 CFR 8.12(i))"; issue 13):

- Time in treatment counts from the current admission: the admission day is day 0
  (``treatment_day``). A readmitted patient starts again from day 0.
- Methadone take-home supply is capped by time in treatment — days 0-14: 7 days; days
  15-30: 14 days; day 31 and later: 28 days (``FEDERAL_TAKE_HOME_CAPS``). A program may set
  stricter caps, never looser ones (``cap_days`` takes the smaller of the two).
  Buprenorphine is not capped (``cap_days`` returns None).
- Clinic-closed days (the site's closed weekdays and its holidays, ``closed_days``) may be
  covered at any time: they are not counted against the cap (``counted_days``).

Dates are site-local clinical days (``clinic.sites.time.site_today``). Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import NamedTuple

import sqlalchemy as sa
import sqlalchemy.orm

from clinic.extensions import db
from clinic.medications.models import Medication
from clinic.medications.take_home_models import ScheduleKind, TakeHomeDecision
from clinic.patients.models import FEDERAL_TAKE_HOME_CAPS, Enrollment, Program
from clinic.sites.models import Site, SiteClosure

# The bands of 42 CFR 8.12(i)(3): (last treatment day of the band, program column, key of
# FEDERAL_TAKE_HOME_CAPS); the last band has no end.
CAP_BANDS = (
    (14, "take_home_cap_days_0_14", "days_0_14"),
    (30, "take_home_cap_days_15_30", "days_15_30"),
    (None, "take_home_cap_days_31_plus", "days_31_plus"),
)
UNCAPPED = (Medication.BUPRENORPHINE, Medication.BUPRENORPHINE_NALOXONE)
# A weekly schedule without an end is checked over this many days from its start (a year:
# every weekday pattern and the holidays already on the calendar).
WEEKLY_HORIZON_DAYS = 365
# How far around a new run of days other decisions are looked for (``joined_stretch``): a
# stretch away from the clinic longer than this is over every cap anyway.
JOIN_MARGIN_DAYS = 31


def closed_weekday_set(site: Site) -> set[int]:
    """The site's closed ISO weekdays (1 = Monday ... 7 = Sunday) as integers."""
    return {int(c) for c in (site.closed_weekdays or "") if c in "1234567"}


def closed_days(site: Site, start: dt.date, end: dt.date) -> set[dt.date]:
    """The site's clinic-closed days in ``[start, end]`` (site-local dates, both ends
    included): every day on one of ``site.closed_weekdays`` and every ``SiteClosure``
    holiday. One SQL statement (the holidays); an empty set if ``end < start``."""
    if end < start:
        return set()
    weekdays = closed_weekday_set(site)
    days = {
        start + dt.timedelta(days=n)
        for n in range((end - start).days + 1)
        if (start + dt.timedelta(days=n)).isoweekday() in weekdays
    }
    days.update(
        db.session.scalars(
            sa.select(SiteClosure.closed_on).where(
                SiteClosure.site_id == site.id,
                SiteClosure.closed_on >= start,
                SiteClosure.closed_on <= end,
            )
        )
    )
    return days


def treatment_day(admitted_on: dt.date, day: dt.date) -> int:
    """Days in treatment on ``day`` counted from the current admission: the admission day is
    day 0 (42 CFR 8.12(i)(3) "days 0-14"). Negative before the admission."""
    return (day - admitted_on).days


def _medication(medication: Medication | str) -> Medication:
    return medication if isinstance(medication, Medication) else Medication(medication)


def cap_days(
    program: Program | None, medication: Medication | str, treatment_day: int
) -> int | None:
    """The take-home cap in days for a patient on ``treatment_day`` (0 = admission day).

    - Buprenorphine (with or without naloxone): None — not capped (DOMAIN.md).
    - Methadone: the program's cap for the band (days 0-14 ``take_home_cap_days_0_14``,
      15-30 ``_15_30``, 31 and later ``_31_plus``), never above ``FEDERAL_TAKE_HOME_CAPS``
      (7 / 14 / 28 days). A program with no caps (not an OTP, or ``program`` None) gets the
      federal caps: methadone for opioid use disorder is only dispensed by an OTP, so the
      safe reading is the federal ceiling, never "uncapped".

    Raises ValueError for a negative treatment day or a medication that is never taken
    home (injections, naltrexone)."""
    medication = _medication(medication)
    if medication in UNCAPPED:
        return None
    if medication is not Medication.METHADONE:
        raise ValueError(f"{medication.value} is not a take-home medication")
    if treatment_day < 0:
        raise ValueError("treatment day before the admission")
    for last_day, column, key in CAP_BANDS:
        if last_day is None or treatment_day <= last_day:
            federal = FEDERAL_TAKE_HOME_CAPS[key]
            own = getattr(program, column, None) if program is not None else None
            return federal if own is None else min(own, federal)
    raise AssertionError("unreachable")  # pragma: no cover


def cap_band_label(treatment_day: int) -> str:
    """The band of 42 CFR 8.12(i)(3) a treatment day falls in, for messages."""
    if treatment_day <= 14:
        return "days 0-14"
    if treatment_day <= 30:
        return "days 15-30"
    return "day 31 and later"


def counted_days(days: Iterable[dt.date], closed: set[dt.date]) -> int:
    """The take-home days counted against a cap: the distinct ``days`` that are not
    clinic-closed days (``closed``, from ``closed_days``)."""
    return len({day for day in days if day not in closed})


def longest_run(dates: Iterable[dt.date]) -> int:
    """The length of the longest run of consecutive days among ``dates`` (0 if none)."""
    ordered = sorted(set(dates))
    best = run = 0
    previous: dt.date | None = None
    for day in ordered:
        run = run + 1 if previous is not None and (day - previous).days == 1 else 1
        best = max(best, run)
        previous = day
    return best


def run_days(start_on: dt.date, days: int) -> list[dt.date]:
    """The calendar days of a run of ``days`` take-home days from ``start_on``."""
    return [start_on + dt.timedelta(days=n) for n in range(days)]


def weekly_counted_days(
    start_on: dt.date, end_on: dt.date | None, weekdays: str, closed: set[dt.date]
) -> int:
    """Days counted against the cap for a weekly schedule: the most non-closed days of one
    stretch away from the clinic — consecutive days each either scheduled (ISO weekday in
    ``weekdays``) or clinic-closed, that contain a scheduled day. ``closed`` must cover
    ``start_on`` .. ``weekly_horizon(start_on, end_on)``."""
    last = weekly_horizon(start_on, end_on)
    scheduled = {int(c) for c in weekdays}
    best = current = 0
    has_scheduled = False
    day = start_on
    while day <= last:
        is_scheduled = day.isoweekday() in scheduled
        if is_scheduled or day in closed:
            has_scheduled = has_scheduled or is_scheduled
            if day not in closed:
                current += 1
            if has_scheduled:
                best = max(best, current)
        else:
            current = 0
            has_scheduled = False
        day += dt.timedelta(days=1)
    return best


def weekly_horizon(start_on: dt.date, end_on: dt.date | None) -> dt.date:
    """The last day a weekly schedule is checked over: its end, at most a year on."""
    limit = start_on + dt.timedelta(days=WEEKLY_HORIZON_DAYS - 1)
    return limit if end_on is None else min(end_on, limit)


def decision_covers(decision: TakeHomeDecision, day: dt.date, closed: set[dt.date]) -> bool:
    """Whether ``decision`` allows a take-home dose for ``day``: approved and not declined,
    not ended on or before ``day``, ``start_on <= day <= end_on`` (if set), and either a run
    of days (the whole period), a weekly schedule whose ISO weekdays include ``day``, or a
    clinic-closed day (``closed``) inside the period (42 CFR 8.12(i): closed days may be
    covered at any time)."""
    if decision.approved_at is None or decision.declined_at is not None:
        return False
    if decision.ended_on is not None and decision.ended_on <= day:
        return False
    if day < decision.start_on or (decision.end_on is not None and day > decision.end_on):
        return False
    if decision.schedule_kind == ScheduleKind.DAYS:
        return True
    return str(day.isoweekday()) in (decision.weekdays or "") or day in closed


def in_force_clause(day: dt.date) -> sa.ColumnElement[bool]:
    """SQL: a decision approved, not declined, not ended on or before ``day``, whose period
    reaches ``day`` or later, and whose enrollment is not discharged on or before ``day``
    (a discharge ends the patient's take-homes: the decision no longer shows in force, on
    the review list, the call-back list or the dose page)."""
    return sa.and_(
        TakeHomeDecision.approved_at.is_not(None),
        TakeHomeDecision.declined_at.is_(None),
        sa.or_(TakeHomeDecision.ended_on.is_(None), TakeHomeDecision.ended_on > day),
        sa.or_(TakeHomeDecision.end_on.is_(None), TakeHomeDecision.end_on >= day),
        sa.exists()
        .where(
            _DECISION_ENROLLMENT.id == TakeHomeDecision.enrollment_id,
            sa.or_(
                _DECISION_ENROLLMENT.discharged_on.is_(None),
                _DECISION_ENROLLMENT.discharged_on > day,
            ),
        )
        .correlate(TakeHomeDecision),
    )


# Its own alias: queries that join the enrollment table themselves keep their join.
_DECISION_ENROLLMENT = sa.orm.aliased(Enrollment, name="decision_enrollment")


def decisions_in_force(patient_id: int, day: dt.date) -> list[TakeHomeDecision]:
    """The patient's decisions in force on ``day`` or later: approved, not declined, not
    ended on or before ``day``, and covering ``day`` or a later day (future decisions
    included), by start. One SQL statement."""
    return list(
        db.session.scalars(
            sa.select(TakeHomeDecision)
            .where(TakeHomeDecision.patient_id == patient_id, in_force_clause(day))
            .order_by(TakeHomeDecision.start_on, TakeHomeDecision.id)
        )
    )


class Stretch(NamedTuple):
    """Consecutive days away from the clinic: its first day, the days counted against a cap
    (clinic-closed days not counted), and another decision joining it (or None)."""

    first: dt.date
    counted: int
    joining: TakeHomeDecision | None


def _covered_by_others(
    patient_id: int, enrollment_id: int | None, first: dt.date, last: dt.date
) -> dict[dt.date, TakeHomeDecision]:
    """The days in ``[first, last]`` covered by the patient's other live decisions (approved
    or awaiting approval; not declined; not ended by then) of the enrollment (a readmission
    or a transfer starts afresh: ``enrollment_id`` None reads every enrollment), each with
    the first decision covering it. One statement."""
    query = (
        sa.select(TakeHomeDecision)
        .where(
            TakeHomeDecision.patient_id == patient_id,
            TakeHomeDecision.declined_at.is_(None),
            TakeHomeDecision.start_on <= last,
            sa.or_(TakeHomeDecision.end_on.is_(None), TakeHomeDecision.end_on >= first),
            sa.or_(TakeHomeDecision.ended_on.is_(None), TakeHomeDecision.ended_on > first),
        )
        .order_by(TakeHomeDecision.start_on, TakeHomeDecision.id)
    )
    if enrollment_id is not None:
        query = query.where(TakeHomeDecision.enrollment_id == enrollment_id)
    covered: dict[dt.date, TakeHomeDecision] = {}
    for other in db.session.scalars(query):
        day = max(other.start_on, first)
        stop = min(other.end_on or last, last)
        if other.ended_on is not None:
            stop = min(stop, other.ended_on - dt.timedelta(days=1))
        while day <= stop:
            if other.schedule_kind == ScheduleKind.DAYS or str(day.isoweekday()) in (
                other.weekdays or ""
            ):
                covered.setdefault(day, other)
            day += dt.timedelta(days=1)
    return covered


def joined_stretch(
    patient_id: int,
    start_on: dt.date,
    end_on: dt.date,
    closed: set[dt.date],
    *,
    enrollment_id: int | None = None,
) -> Stretch:
    """A new run ``start_on`` .. ``end_on`` next to the patient's other live decisions
    (approved or awaiting approval; not declined; not ended by then; of ``enrollment_id``
    if given) makes one stretch away from the clinic: the cap applies to it as a whole
    (42 CFR 8.12(i): the supply at any one time, so the cap of the stretch's first day).
    Returns the ``Stretch`` (clinic-closed days ``closed`` — which must cover
    ``JOIN_MARGIN_DAYS`` around the run — not counted). One statement."""
    first = start_on - dt.timedelta(days=JOIN_MARGIN_DAYS)
    last = end_on + dt.timedelta(days=JOIN_MARGIN_DAYS)
    covered = _covered_by_others(patient_id, enrollment_id, first, last)

    def away(day: dt.date) -> bool:
        return start_on <= day <= end_on or day in covered or day in closed

    one_day = dt.timedelta(days=1)
    low, high = start_on, end_on
    while low - one_day >= first and away(low - one_day):
        low -= one_day
    while high + one_day <= last and away(high + one_day):
        high += one_day
    stretch = run_days(low, (high - low).days + 1)
    joining = next((covered[d] for d in stretch if d in covered), None)
    return Stretch(low, counted_days(stretch, closed), joining)


def weekly_joined_stretches(
    patient_id: int,
    start_on: dt.date,
    end_on: dt.date | None,
    weekdays: str,
    closed: set[dt.date],
    *,
    enrollment_id: int | None = None,
) -> list[Stretch]:
    """The stretches away from the clinic where a new weekly schedule (``weekdays``, ISO
    digits, ``start_on`` .. ``weekly_horizon``) meets the patient's other live decisions
    (as ``joined_stretch``): consecutive days each scheduled, covered by another decision or
    clinic-closed, with at least one scheduled day and one covered by another decision —
    two weekly schedules (Monday-Wednesday, Thursday-Saturday) chained are one stretch.
    ``closed`` must cover ``JOIN_MARGIN_DAYS`` around the schedule. One statement."""
    horizon = weekly_horizon(start_on, end_on)
    margin = dt.timedelta(days=JOIN_MARGIN_DAYS)
    first, last = start_on - margin, horizon + margin
    covered = _covered_by_others(patient_id, enrollment_id, first, last)
    scheduled = {
        day
        for day in run_days(start_on, (horizon - start_on).days + 1)
        if str(day.isoweekday()) in weekdays
    }
    stretches: list[Stretch] = []
    run: list[dt.date] = []
    for day in run_days(first, (last - first).days + 2):
        if day <= last and (day in scheduled or day in covered or day in closed):
            run.append(day)
            continue
        joining = next((covered[d] for d in run if d in covered), None)
        if joining is not None and any(d in scheduled for d in run):
            stretches.append(Stretch(run[0], counted_days(run, closed), joining))
        run = []
    return stretches
