"""Retention: of the patients admitted in a period, the share still in treatment 30, 90,
180 and 365 days after admission, by admission-month cohort, as retention curves.

Definitions (DOMAIN.md "Measures": retention at 90 and 180 days; issue 14):

- **Cohort**: the episodes that start in the period — new admissions and readmissions
  (an enrollment with no ``transferred_from_id``) whose ``admitted_on`` (a site-local
  date) falls in it, grouped by that date's month ('YYYY-MM'). A transfer in is not an
  admission: it continues its episode.
- **Episode**: the admission and the enrollments it was transferred into, following
  ``transferred_from_id`` (a recursive CTE, whatever program or site filter chose the
  first enrollment). The episode ends on the discharge date of its last enrollment; a
  transfer to another program of the clinic does not end it. A discharge with reason 4
  that no enrollment continues (a transfer to another facility) ends it.
- **Still in treatment N days after admission**: the episode had not ended before day
  ``admitted_on + N`` (still enrolled that day: ``discharged_on >= admitted_on + N``, or
  not discharged). A discharge on day 89 is not retained at 90; one on day 90 is.
- **Not yet**: a milestone day after today is not reached; that patient is left out of
  that milestone's denominator ("Reached day N"), and a cohort with nobody reaching it
  shows no percentage.
- Scope: the chosen sites' programs and the chosen program (of the admission), patients
  not entered in error.
- Default period: the previous calendar year (``previous_calendar_year``).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from clinic.patients.models import Enrollment
from clinic.reports.admissions import in_scope
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
from clinic.reports.sql import date_param, day_number, days, month_key

MILESTONES = (30, 90, 180, 365)
# More cohorts than this draw one line per admission quarter (then year) instead of month.
MAX_COHORT_LINES = 6


def previous_calendar_year(today: dt.date) -> tuple[dt.date, dt.date]:
    """The default period: 1 January to 31 December of the year before ``today``'s
    (SCENARIOS.md, Friday: "90/180-day retention for last year's cohorts")."""
    return dt.date(today.year - 1, 1, 1), dt.date(today.year - 1, 12, 31)


def episodes(filters: ReportFilters) -> sa.Subquery:
    """One row per episode admitted in the period: (root_id, admit_day, month, end_day);
    ``admit_day``/``end_day`` are day numbers (``clinic.reports.sql.day_number``),
    ``end_day`` None while the episode goes on."""
    start, end = date_param(filters.date_from), date_param(filters.date_to)
    anchor = in_scope(
        sa.select(Enrollment.id.label("root_id"), Enrollment.id.label("enrollment_id")).select_from(
            Enrollment
        ),
        filters,
    ).where(
        Enrollment.transferred_from_id.is_(None),
        Enrollment.admitted_on >= start,
        Enrollment.admitted_on <= end,
    )
    chain = anchor.cte("chain", recursive=True)
    child = aliased(Enrollment)
    chain = chain.union_all(
        sa.select(chain.c.root_id, child.id).join(
            child, child.transferred_from_id == chain.c.enrollment_id
        )
    )
    member = aliased(Enrollment)
    open_members = sa.func.sum(sa.case((member.discharged_on.is_(None), 1), else_=0))
    ends = (
        sa.select(
            chain.c.root_id,
            sa.case(
                (open_members > 0, sa.null()), else_=sa.func.max(day_number(member.discharged_on))
            ).label("end_day"),
        )
        .join(member, member.id == chain.c.enrollment_id)
        .group_by(chain.c.root_id)
        .subquery("ends")
    )
    root = aliased(Enrollment)
    return (
        sa.select(
            ends.c.root_id,
            day_number(root.admitted_on).label("admit_day"),
            month_key(root.admitted_on).label("month"),
            ends.c.end_day,
        )
        .join(root, root.id == ends.c.root_id)
        .subquery("episodes")
    )


def _months(start: dt.date, end: dt.date) -> list[str]:
    months, year, month = [], start.year, start.month
    while (year, month) <= (end.year, end.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _row(label: str, counts: dict) -> dict:
    row = {"cohort": label, "admitted": counts["admitted"]}
    for n in MILESTONES:
        row[f"reached_{n}"] = counts[f"reached_{n}"]
        row[f"retained_{n}"] = counts[f"retained_{n}"]
        row[f"share_{n}"] = percent(counts[f"retained_{n}"], counts[f"reached_{n}"])
    return row


def _curve(row: dict) -> list[float | None]:
    return [100.0 if row["admitted"] else None] + [row[f"share_{n}"] for n in MILESTONES]


def _quarter(month: str) -> str:
    year, number = month.split("-")
    return f"{year} Q{(int(number) - 1) // 3 + 1}"


def compute(filters: ReportFilters) -> ReportResult:
    """Retention by admission-month cohort: one table (a row per month of the period and
    a total) and a line chart of the curves (day 0, 30, 90, 180, 365). One statement."""
    episode = episodes(filters)
    today = days(filters.today)
    columns = [sa.func.count().label("admitted")]
    for n in MILESTONES:
        reached = episode.c.admit_day + n <= today
        in_treatment = sa.or_(
            episode.c.end_day.is_(None), episode.c.end_day >= episode.c.admit_day + n
        )
        columns.append(sa.func.sum(sa.case((reached, 1), else_=0)).label(f"reached_{n}"))
        columns.append(
            sa.func.sum(sa.case((sa.and_(reached, in_treatment), 1), else_=0)).label(
                f"retained_{n}"
            )
        )
    found = {
        row.month: {key: int(value or 0) for key, value in row._mapping.items() if key != "month"}
        for row in session.execute(
            sa.select(episode.c.month, *columns).group_by(episode.c.month)
        ).all()
    }
    keys = ["admitted"] + [f"{what}_{n}" for n in MILESTONES for what in ("reached", "retained")]
    empty = dict.fromkeys(keys, 0)
    rows = [
        _row(month, found.get(month, empty))
        for month in _months(filters.date_from, filters.date_to)
    ]
    totals = {key: sum(found[m][key] for m in found) for key in keys}
    total = _row("All cohorts", totals)

    table_columns = [
        Column("cohort", "Admission month"),
        Column("admitted", "Admitted", Kind.COUNT),
    ]
    for n in MILESTONES:
        table_columns += [
            Column(f"reached_{n}", f"Reached day {n}", Kind.COUNT),
            Column(f"retained_{n}", f"In treatment on day {n}", Kind.COUNT),
            Column(f"share_{n}", f"Retained at {n} days", Kind.PERCENT, of=f"reached_{n}"),
        ]
    cohorts = Table(
        "cohorts",
        "Retention by admission-month cohort",
        table_columns,
        rows if totals["admitted"] else [],
        empty="Nobody was admitted in this period.",
        total=total,
    )

    series = [("All cohorts", _curve(total))] if totals["admitted"] else []
    # One line per month; with too many, per admission quarter; then per year.
    for group in (lambda month: month, _quarter, lambda month: month[:4]):
        grouped: dict[str, dict] = {}
        for month in sorted(found):
            counts = grouped.setdefault(group(month), dict.fromkeys(keys, 0))
            for key in keys:
                counts[key] += found[month][key]
        if len(grouped) <= MAX_COHORT_LINES:
            break
    if len(grouped) > 1:
        series += [(name, _curve(_row(name, counts))) for name, counts in grouped.items()]
    chart = Chart(
        ChartKind.LINE,
        f"Retention after admission, admitted {filters.date_from.isoformat()} to "
        f"{filters.date_to.isoformat()}",
        ["Day 0"] + [f"Day {n}" for n in MILESTONES],
        series,
        x_label="Days after admission",
        y_label="Still in treatment (%)",
        percent=True,
    )
    return ReportResult([cohorts], chart=chart, notes=list(NOTES))


NOTES = [
    "Cohorts: new admissions and readmissions in the period, by the month of the "
    "admission date (the site's local date). A transfer in is not an admission: it "
    "continues the patient's episode.",
    "Still in treatment on day N: the episode had not ended before the day N days after "
    "admission (a discharge on day 89 is not retained at 90 days; one on day 90 is). A "
    "transfer to another program of the clinic does not end the episode; a discharge "
    "with no enrollment following it does, whatever its reason.",
    "Not yet: a patient whose day N is after today has not reached that milestone and is "
    "left out of its count (\u201cReached day N\u201d); a cohort nobody in which has "
    "reached it shows no percentage.",
    "Curves: day 0 is 100 %; with more than six monthly cohorts the chart draws one line "
    "per admission quarter, and with more than six quarters one per year (the table has "
    "every month).",
    "By default the cohorts are those of the previous calendar year (1 January to 31 "
    "December), whose patients have mostly had the time to reach day 90 and day 180. The "
    "\u201cAll cohorts\u201d line at day N counts only the patients who have reached day N "
    "(\u201cReached day N\u201d, shown for each milestone).",
    "Patients entered in error are not counted; only the chosen sites' programs are.",
]


REPORT = register_report(
    Report(
        slug="retention",
        title="Retention",
        summary="Of the patients admitted in a period, the share still in treatment 30, 90, "
        "180 and 365 days after admission, by admission-month cohort.",
        filters=frozenset({FilterName.SITE, FilterName.PROGRAM, FilterName.PERIOD}),
        compute=compute,
        default_period=previous_calendar_year,
        order=30,
    )
)
