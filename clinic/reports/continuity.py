"""Continuity of pharmacotherapy for opioid use disorder (NQF #3175; the HEDIS POD gap
convention): of the MOUD treatment episodes that start in the period, the share with 180
or more days of continuous medication coverage.

Definitions (DOMAIN.md, "Measures"; issue 14):

- **Days covered** come from the dose ledger (``DoseEntry``), never from orders: an
  observed dose covers the site-local day it was given (``dispensed_on``); a take-home
  bottle covers its take-on day (``take_on``), not the day it was handed out; an
  extended-release injection covers its interval from the day given, from its order's
  schedule (weekly 7 days, monthly 31 days — DOMAIN.md —, every 4 weeks 28 days).
  Missed and held rows cover nothing; a reversed row and the reversal row itself cover
  nothing. Coverage after ``filters.today`` (a bottle for tomorrow, the rest of an
  injection's interval) is not counted yet.
- **Episodes**: a patient's covered days, across every medication (a switch, e.g.
  methadone to buprenorphine, does not break continuity) and every enrollment (a transfer
  between programs does not either), are merged into islands: a gap of 8 or more
  uncovered days ends an episode; a gap of 7 or fewer is bridged (the episode runs from
  its first covered day to its last, the gap days included). Gaps-and-islands in one SQL
  statement: the rows are first collapsed per patient and 7-day bucket (a gap inside 7
  days never breaks, so nothing is lost, and the window functions sort about 7 times
  fewer rows), then a running MAX of the previous buckets' last covered day (``LAG`` is
  not enough when an injection's interval outlasts later rows), a "new island" flag, and
  a running SUM of the flags.
- **Denominator**: episodes (HEDIS POD counts treatment events, not people: a patient who
  restarts after a break has a new episode) whose first covered day lies in the period, of
  patients not entered in error, with doses at the chosen sites. The program and the
  medication of an episode are those of its first covered day (the filters select
  episodes by them; the coverage of the whole episode still counts every medication and
  program).
- **Numerator**: episodes with 180 or more days from the first covered day to the last.
- **Not yet measurable** (shown, left out of the share): an episode under 180 days that
  is still continuing on ``filters.today`` — its last covered day at most 8 days before
  today, so fewer than 8 uncovered days up to yesterday. An episode that broke before
  180 days is a measured failure, whenever it started.
- **Default period** (``measurable_twelve_months``): the twelve whole months ending at
  least 180 days before today, so that no episode of it is still unmeasurable; a more
  recent period chosen by the user shows its "not yet measurable" count.

Shapes: day numbers are integer days since 1970-01-01 (``clinic.reports.sql``); dates are
site-local days. One SQL statement, whatever the number of patients or doses.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from clinic.medications.models import DoseEntry, DoseKind, Medication, MedicationOrder, Schedule
from clinic.patients.models import Enrollment, Patient
from clinic.reports.core import (
    Chart,
    ChartKind,
    Column,
    FilterName,
    Kind,
    Report,
    ReportResult,
    Table,
    percent,
    register_report,
)
from clinic.reports.database import session
from clinic.reports.filters import ReportFilters
from clinic.reports.sql import day_number, days, from_day_number, month_key

TARGET_DAYS = 180  # NQF #3175: at least 180 days of continuous pharmacotherapy
GAP_BREAK_DAYS = 8  # HEDIS POD: a gap of 8 or more uncovered days breaks continuity
COVERING_KINDS = (DoseKind.OBSERVED, DoseKind.TAKE_HOME, DoseKind.INJECTION)
# The longest interval a ledger row covers (a monthly injection): how far before the
# period a row may start and still reach into the look-back window.
LONGEST_COVER_DAYS = max(s.interval_days or 1 for s in Schedule)
# first day * ID_SPAN + id: one number ordering rows by day, then id (ids stay below 10**12).
ID_SPAN = 10**12
LENGTH_BANDS = ((30, "1 to 29 days"), (90, "30 to 89 days"), (180, "90 to 179 days"))
LONGEST_BAND = "180 days or more"


def measurable_twelve_months(today: dt.date) -> tuple[dt.date, dt.date]:
    """The default period: the twelve whole months whose last day is at least
    ``TARGET_DAYS`` (180) days before ``today``, so that every episode starting in them has
    had its 180 days and none is "not yet measurable" (the last twelve months would show
    recent months with only their broken episodes measured, near 0 %)."""
    latest = today - dt.timedelta(days=TARGET_DAYS)
    after = latest + dt.timedelta(days=1)
    last = latest if after.day == 1 else latest.replace(day=1) - dt.timedelta(days=1)
    first = last.replace(day=1)
    month = first.month - 11
    first = first.replace(year=first.year + (month - 1) // 12, month=(month - 1) % 12 + 1)
    return first, last


def _months(first: dt.date, last: dt.date) -> list[str]:
    """'YYYY-MM' of every month from ``first``'s to ``last``'s."""
    months, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _statement(filters: ReportFilters) -> sa.Select:
    """The one statement: rows ``(grouping, key, episodes, pending, reached, patients)``
    with grouping 'medication' (key: the medication at the start), 'total' (key NULL),
    'month' (key 'YYYY-MM' of the start) and 'length' (key: the band of the episode's
    length; measurable episodes only)."""
    entry = DoseEntry
    reversal = aliased(DoseEntry)
    first_day, last_day = days(filters.date_from), days(filters.date_to)
    today = days(filters.today)
    # Look-back: a row ending before this cannot bridge into an episode starting in the
    # period (its gap to any day of the period is 9 days or more), so it need not be read
    # (an episode that started earlier still starts before the period without it).
    look_back = first_day - GAP_BREAK_DAYS - 1
    # Follow-up: the row that takes an episode starting on the period's last day to its
    # 180th day starts at most 186 days later (day 179 plus a bridged gap of 7); nothing
    # later is read, and nothing after today counts.
    horizon = min(today, last_day + TARGET_DAYS - 1 + GAP_BREAK_DAYS - 1)

    covered_on = sa.case(
        (entry.kind == DoseKind.TAKE_HOME, entry.take_on), else_=entry.dispensed_on
    )
    start = day_number(covered_on)
    earliest = from_day_number(look_back - LONGEST_COVER_DAYS + 1)
    in_window = [
        entry.site_id.in_(filters.site_ids),
        # A reversal is recorded on or after the day of the row it reverses, at its site:
        # only the window's reversals are looked at (a small hashed set).
        ~sa.exists().where(
            reversal.reverses_id == entry.id,
            reversal.kind == DoseKind.REVERSAL,
            reversal.site_id.in_(filters.site_ids),
            reversal.dispensed_on >= earliest,
        ),
        # Every row that may end on or after the look-back day (an injection given up to
        # 30 days before it, a bottle handed out up to 28 days before its take-on day);
        # more rows before it change nothing. Nothing taken after the horizon.
        entry.dispensed_on >= earliest,
        entry.dispensed_on <= from_day_number(horizon),
    ]
    # Observed doses and bottles cover one day; injections their order's interval (a
    # small hashed set of the injection orders, not a join of every order).
    intervals = (
        sa.select(
            MedicationOrder.id.label("order_id"),
            sa.case(
                *[
                    (MedicationOrder.schedule == schedule, schedule.interval_days)
                    for schedule in Schedule
                    if schedule.interval_days
                ],
                else_=1,
            ).label("days"),
        )
        .where(MedicationOrder.schedule.in_([s for s in Schedule if s.interval_days]))
        .subquery("intervals")
    )
    raw_end = start + sa.func.coalesce(intervals.c.days, 1) - 1
    rows = (
        sa.select(
            entry.patient_id.label("patient_id"),
            entry.id.label("entry_id"),
            start.label("start_day"),
            sa.case((raw_end > horizon, horizon), else_=raw_end).label("end_day"),
        )
        .outerjoin(
            intervals,
            sa.and_(intervals.c.order_id == entry.order_id, entry.kind == DoseKind.INJECTION),
        )
        .where(
            *in_window,
            entry.kind.in_(COVERING_KINDS),
            sa.or_(entry.kind != DoseKind.TAKE_HOME, entry.take_on <= from_day_number(horizon)),
        )
        .subquery("rows")
    )
    # The first row of a group: its day, then its id, as one number.
    first_key = sa.cast(rows.c.start_day, sa.BigInteger) * ID_SPAN + rows.c.entry_id

    # Rows collapsed per patient and 7-day bucket of their first day: a gap inside 7 days
    # is at most 5 days, never a break, so a bucket's coverage is [first day, last day]
    # and the islands of the buckets are those of the rows — with about 7 times fewer
    # rows to sort. Only the ledger is read here; the patient, the order and the
    # enrollment are joined to the episodes, once per episode.
    buckets = (
        sa.select(
            rows.c.patient_id,
            sa.func.min(rows.c.start_day).label("start_day"),
            sa.func.max(rows.c.end_day).label("end_day"),
            sa.func.min(first_key).label("first_key"),
        )
        .group_by(rows.c.patient_id, rows.c.start_day // 7)
        .cte("buckets")
    )
    order = (buckets.c.start_day, buckets.c.end_day, buckets.c.first_key)
    ordered = sa.select(
        buckets,
        sa.func.max(buckets.c.end_day)
        .over(partition_by=buckets.c.patient_id, order_by=order, rows=(None, -1))
        .label("previous_end"),
    ).cte("ordered")
    is_start = sa.case(
        (
            sa.or_(
                ordered.c.previous_end.is_(None),
                ordered.c.start_day - ordered.c.previous_end - 1 >= GAP_BREAK_DAYS,
            ),
            1,
        ),
        else_=0,
    )
    islands = sa.select(
        ordered.c.patient_id,
        ordered.c.start_day,
        ordered.c.end_day,
        ordered.c.first_key,
        sa.func.sum(is_start)
        .over(
            partition_by=ordered.c.patient_id,
            order_by=(ordered.c.start_day, ordered.c.end_day, ordered.c.first_key),
            rows=(None, 0),
        )
        .label("island"),
    ).cte("islands")
    episodes = (
        sa.select(
            islands.c.patient_id,
            sa.func.min(islands.c.start_day).label("first_day"),
            sa.func.max(islands.c.end_day).label("last_day"),
            sa.func.min(islands.c.first_key).label("first_key"),
        )
        .group_by(islands.c.patient_id, islands.c.island)
        .cte("episodes")
    )
    # The episode's first row: its medication, its day (the month) and its order's
    # enrollment's program.
    first = aliased(DoseEntry)
    first_on = sa.case((first.kind == DoseKind.TAKE_HOME, first.take_on), else_=first.dispensed_on)
    medication = sa.cast(first.medication, sa.String)
    length = episodes.c.last_day - episodes.c.first_day + 1
    conditions = [
        episodes.c.first_day >= first_day,
        episodes.c.first_day <= last_day,
        Patient.entered_in_error_at.is_(None),
    ]
    if filters.medication_values is not None:
        conditions.append(medication.in_(filters.medication_values))
    band = sa.case(*[(length < upper, label) for upper, label in LENGTH_BANDS], else_=LONGEST_BAND)
    scored = (
        sa.select(
            episodes.c.patient_id,
            medication.label("medication"),
            month_key(first_on).label("month"),
            band.label("band"),
            sa.case((length >= TARGET_DAYS, 1), else_=0).label("reached"),
            sa.case(
                (
                    sa.and_(length < TARGET_DAYS, episodes.c.last_day >= today - GAP_BREAK_DAYS),
                    1,
                ),
                else_=0,
            ).label("pending"),
        )
        .select_from(episodes)
        .join(first, first.id == episodes.c.first_key % ID_SPAN)
        .join(Patient, Patient.id == episodes.c.patient_id)
        .where(*conditions)
    )
    if filters.program_id is not None:
        scored = (
            scored.join(MedicationOrder, MedicationOrder.id == first.order_id)
            .join(Enrollment, Enrollment.id == MedicationOrder.enrollment_id)
            .where(Enrollment.program_id == filters.program_id)
        )
    scored = scored.cte("scored")

    def grouped(name: str, key) -> sa.Select:
        return sa.select(
            sa.literal_column(f"'{name}'", sa.String).label("grouping"),
            key.label("key"),
            sa.func.count().label("episodes"),
            sa.func.coalesce(sa.func.sum(scored.c.pending), 0).label("pending"),
            sa.func.coalesce(sa.func.sum(scored.c.reached), 0).label("reached"),
            sa.func.count(sa.distinct(scored.c.patient_id)).label("patients"),
        )

    return sa.union_all(
        grouped("medication", scored.c.medication).group_by(scored.c.medication),
        grouped("total", sa.cast(sa.null(), sa.String)),
        grouped("month", scored.c.month).group_by(scored.c.month),
        grouped("length", scored.c.band).where(scored.c.pending == 0).group_by(scored.c.band),
    )


def _counts(episodes: int, pending: int, reached: int) -> dict[str, int | float | None]:
    measurable = episodes - pending
    return {
        "episodes": episodes,
        "pending": pending,
        "measurable": measurable,
        "reached": reached,
        "share": percent(reached, measurable),
    }


COUNT_COLUMNS = (
    Column("episodes", "Episodes started", Kind.COUNT),
    Column("pending", "Not yet measurable (still continuing)", Kind.COUNT),
    Column("measurable", "Measurable episodes", Kind.COUNT),
    Column("reached", "180 days or more continuous", Kind.COUNT),
    Column("share", "Share with 180 days or more", Kind.PERCENT, of="measurable"),
)


def compute(filters: ReportFilters) -> ReportResult:
    """Tables ``by_medication`` (with a total row), ``by_month`` (every month of the
    period) and ``by_length`` (measurable episodes by length band), and a bar chart of
    the share with 180 days or more by start month. One statement."""
    grouped: dict[str, dict[str | None, tuple[int, int, int, int]]] = {
        "medication": {},
        "total": {},
        "month": {},
        "length": {},
    }
    for grouping, key, episodes, pending, reached, patients in session.execute(_statement(filters)):
        grouped[grouping][key] = (int(episodes), int(pending), int(reached), int(patients))

    medication_rows = [
        {
            "medication": medication.label,
            "patients": grouped["medication"][medication.value][3],
            **_counts(*grouped["medication"][medication.value][:3]),
        }
        for medication in Medication
        if medication.value in grouped["medication"]
    ]
    total_counts = grouped["total"].get(None, (0, 0, 0, 0))
    total = (
        {"medication": "All medications", "patients": total_counts[3], **_counts(*total_counts[:3])}
        if medication_rows
        else None
    )
    month_rows = [
        {"month": month, **_counts(*grouped["month"].get(month, (0, 0, 0, 0))[:3])}
        for month in _months(filters.date_from, filters.date_to)
    ]
    length_rows = [
        {"band": label, "episodes": grouped["length"][label][0]}
        for label in [label for _upper, label in LENGTH_BANDS] + [LONGEST_BAND]
        if label in grouped["length"]
    ]
    tables = [
        Table(
            key="by_medication",
            title="Continuity by medication at the start of the episode",
            columns=[
                Column("medication", "Medication at start"),
                Column("patients", "Patients", Kind.COUNT),
                *COUNT_COLUMNS,
            ],
            rows=medication_rows,
            total=total,
            empty="No MOUD treatment episode starts in this period.",
        ),
        Table(
            key="by_month",
            title="Continuity by month the episode started",
            columns=[Column("month", "Start month"), *COUNT_COLUMNS],
            rows=month_rows if medication_rows else [],
            empty="No MOUD treatment episode starts in this period.",
        ),
        Table(
            key="by_length",
            title="Measurable episodes by length of continuous coverage",
            columns=[
                Column("band", "Continuous coverage"),
                Column("episodes", "Episodes", Kind.COUNT),
            ],
            rows=length_rows,
            empty="No measurable episode in this period.",
        ),
    ]
    chart = None
    if medication_rows:
        chart = Chart(
            kind=ChartKind.BAR,
            title="Share of episodes with 180 days or more of continuous MOUD, by start month",
            categories=[row["month"] for row in month_rows],
            series=[("180 days or more", [row["share"] for row in month_rows])],
            x_label="Month the episode started",
            y_label="Share of measurable episodes",
            percent=True,
        )
    return ReportResult(tables=tables, chart=chart, notes=NOTES)


NOTES = [
    "Continuity of pharmacotherapy for opioid use disorder (NQF #3175): the share of MOUD "
    "treatment episodes starting in the period with 180 days or more of continuous "
    "medication coverage.",
    "Days covered come from the dose ledger: an observed dose covers the day it was "
    "given; a take-home bottle covers its take-on day; an extended-release injection "
    "covers its interval from the day given (weekly 7 days, monthly 31 days, every 4 weeks "
    "28 days). Missed and held days, reversed doses and reversals cover nothing; days "
    "after today are not counted yet.",
    "A gap of 8 or more days without coverage ends an episode (HEDIS POD); a gap of 7 days "
    "or fewer is bridged and its days count towards the episode's length, from its first "
    "covered day to its last. Switching medication or transferring between programs does "
    "not end an episode.",
    "Each episode is counted once, in the month of its first covered day, with the "
    "medication and program of that day (the medication and program filters choose "
    "episodes by them). A patient who restarts after a gap of 8 days or more starts a new "
    "episode.",
    "Not yet measurable: an episode shorter than 180 days that is still continuing today "
    "(its last covered day at most 8 days ago). It is left out of the share until it "
    "reaches 180 days or breaks. An episode that ended before 180 days counts as not "
    "continuous.",
    "The period shown by default is the twelve whole months ending at least 180 days "
    "before today, so every episode starting in it has had its 180 days to reach the "
    "target. A more recent period can be chosen: its episodes still continuing are "
    "counted as not yet measurable.",
    "Patients whose record was entered in error are left out; only doses given at the "
    "chosen sites count.",
]


register_report(
    Report(
        slug="continuity",
        title="Continuity of pharmacotherapy",
        summary=(
            "NQF #3175: the share of MOUD treatment episodes with 180 days or more of "
            "continuous medication, from the dose ledger (a gap of 8 days or more breaks "
            "continuity)."
        ),
        filters=frozenset(
            {FilterName.SITE, FilterName.PROGRAM, FilterName.MEDICATION, FilterName.PERIOD}
        ),
        compute=compute,
        default_period=measurable_twelve_months,
        order=40,
    )
)
