"""The dosing report's missed-dose statement (``clinic.reports.dosing``): expected dosing
days and missed days per medication, in one SQL statement.

Rules (``clinic.medications.missed``; DOMAIN.md, "Medication for opioid use disorder"):
an expected dosing day is a day of the period before today on which the patient had a
daily or split order in force (from its start to its end day) in an enrollment admitted
and not yet discharged, on which the program's site was open — not one of its closed
weekdays (``Site.closed_weekdays``, ISO digits, "7" = Sunday) nor one of its holidays
(``SiteClosure``), as ``clinic.medications.take_home_rules.closed_days`` reads them —, and
which was not held — a dose recorded as held, or a stop-dose
hold in force (placed on or before the day, lifted after it, not past its until-date; the
site-local days of the hold's instants use the site's UTC offset at the end of the
period). A missed day is an expected day with no dose given (observed or injected) and no
take-home bottle for it, at the chosen sites.

Day numbers are integer days since 1970-01-01 (``clinic.reports.sql``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.functions import FunctionElement

from clinic.medications.models import (
    DoseEntry,
    DoseKind,
    MedicationHold,
    MedicationOrder,
    Schedule,
)
from clinic.patients.models import Enrollment, Patient, Program
from clinic.reports.database import session
from clinic.reports.filters import ReportFilters
from clinic.reports.sql import day_number, from_day_number
from clinic.sites.models import Site, SiteClosure

GIVEN_OUT = (DoseKind.OBSERVED, DoseKind.TAKE_HOME, DoseKind.INJECTION)
TAKE_HOME_AHEAD_DAYS = 28  # a bottle's take-on day is at most 28 days after it is handed out


class local_day_number(FunctionElement):
    """Integer days since 1970-01-01 of a UTC timestamp shifted by ``offset_minutes``
    (the site's offset from UTC): the site-local day of the instant."""

    type = sa.Integer()
    inherit_cache = True
    name = "local_day_number"


@compiles(local_day_number)
def _local_day_sqlite(element: local_day_number, compiler: Any, **kw: Any) -> str:
    timestamp, offset = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(julianday({timestamp}) - 2440587.5 + ({offset}) / 1440.0 AS INTEGER)"


@compiles(local_day_number, "postgresql")
def _local_day_postgresql(element: local_day_number, compiler: Any, **kw: Any) -> str:
    timestamp, offset = (compiler.process(c, **kw) for c in element.clauses)
    return (
        f"CAST(floor(EXTRACT(EPOCH FROM {timestamp}) / 86400.0 + ({offset}) / 1440.0) AS INTEGER)"
    )


def not_reversed(entry, since: dt.date, site_ids: tuple[int, ...] | None = None):
    """No reversal row names ``entry``. A reversal is recorded at the row's site on or
    after the row's day: only reversals from ``since`` (the earliest day of the rows
    read) are looked at, a small set the database hashes once."""
    reversal = aliased(DoseEntry)
    conditions = [
        reversal.reverses_id == entry.id,
        reversal.kind == DoseKind.REVERSAL,
        reversal.dispensed_on >= since,
    ]
    if site_ids is not None:
        conditions.append(reversal.site_id.in_(site_ids))
    return ~sa.exists().where(*conditions)


def site_offsets(on: dt.date) -> dict[int, int]:
    """Each site's offset from UTC in minutes at noon of ``on`` (one statement)."""
    noon = dt.datetime.combine(on, dt.time(12))
    return {
        site_id: int(noon.replace(tzinfo=ZoneInfo(zone)).utcoffset().total_seconds() // 60)
        for site_id, zone in session.execute(sa.select(Site.id, Site.timezone))
    }


def iso_weekday(day: sa.ColumnElement) -> sa.ColumnElement:
    """The ISO weekday (1 = Monday ... 7 = Sunday) of a day number: 1970-01-01, day 0,
    was a Thursday (4). Day numbers of the reports are never negative."""
    return (day + 3) % 7 + 1


def site_open(site_id: sa.ColumnElement, day: sa.ColumnElement) -> sa.ColumnElement:
    """The site ``site_id`` is open on day number ``day``: not one of its closed weekdays,
    not one of its holidays (``clinic.medications.take_home_rules.closed_days``)."""
    return sa.and_(
        ~Site.closed_weekdays.contains(sa.cast(iso_weekday(day), sa.String)),
        ~sa.exists().where(
            SiteClosure.site_id == site_id, day_number(SiteClosure.closed_on) == day
        ),
    )


def missed_statement(filters: ReportFilters, first: int, last: int, offsets) -> sa.Select:
    """Rows ``(medication, expected, missed)`` per medication of the daily orders, and a
    row with medication NULL for all of them (a patient-day counted once). ``first`` ..
    ``last``: the day numbers counted (the period, before today)."""
    # Day numbers inlined (integers from Python): one type for both terms of the recursion.
    calendar = sa.select(sa.literal_column(str(int(first)), sa.Integer).label("d")).cte(
        "calendar", recursive=True
    )
    calendar = calendar.union_all(
        sa.select((calendar.c.d + sa.literal_column("1", sa.Integer)).label("d")).where(
            calendar.c.d < sa.literal_column(str(int(last)), sa.Integer)
        )
    )
    order = MedicationOrder
    day = calendar.c.d
    expected_conditions = [
        order.schedule.in_((Schedule.DAILY, Schedule.SPLIT)),
        order.start_on <= from_day_number(last),
        sa.or_(order.end_on.is_(None), order.end_on >= from_day_number(first)),
        day_number(order.start_on) <= day,
        sa.or_(order.end_on.is_(None), day_number(order.end_on) >= day),
        day_number(Enrollment.admitted_on) <= day,
        sa.or_(Enrollment.discharged_on.is_(None), day_number(Enrollment.discharged_on) > day),
        Program.site_id.in_(filters.site_ids),
        Patient.entered_in_error_at.is_(None),
        site_open(Program.site_id, day),
    ]
    if filters.program_id is not None:
        expected_conditions.append(Enrollment.program_id == filters.program_id)
    if filters.medication_values is not None:
        expected_conditions.append(order.medication.in_(filters.medication_values))
    expected = (
        sa.select(
            order.patient_id.label("patient_id"),
            sa.cast(order.medication, sa.String).label("medication"),
            day.label("d"),
        )
        .distinct()
        .select_from(calendar)
        .join(order, sa.true())
        .join(Enrollment, Enrollment.id == order.enrollment_id)
        .join(Program, Program.id == Enrollment.program_id)
        .join(Site, Site.id == Program.site_id)
        .join(Patient, Patient.id == order.patient_id)
        .where(*expected_conditions)
        .cte("expected")
    )
    entry, since = DoseEntry, filters.date_from - dt.timedelta(days=TAKE_HOME_AHEAD_DAYS)
    covered_on = sa.case(
        (entry.kind == DoseKind.TAKE_HOME, entry.take_on), else_=entry.dispensed_on
    )
    # The ledger's days at the chosen sites, in one pass: a dose given or a bottle for the
    # day (covered), or a dose recorded as held.
    ledger_days = (
        sa.select(
            entry.patient_id.label("patient_id"),
            day_number(covered_on).label("d"),
            sa.func.max(sa.case((entry.kind == DoseKind.HELD, 0), else_=1)).label("given"),
            sa.func.max(sa.case((entry.kind == DoseKind.HELD, 1), else_=0)).label("held"),
        )
        .where(
            entry.site_id.in_(filters.site_ids),
            entry.kind.in_((*GIVEN_OUT, DoseKind.HELD)),
            not_reversed(entry, since, filters.site_ids),
            entry.dispensed_on >= since,
            entry.dispensed_on <= from_day_number(last),
            sa.or_(
                sa.and_(entry.kind != DoseKind.TAKE_HOME, entry.dispensed_on >= filters.date_from),
                sa.and_(
                    entry.kind == DoseKind.TAKE_HOME,
                    entry.take_on >= filters.date_from,
                    entry.take_on <= from_day_number(last),
                ),
            ),
        )
        .group_by(entry.patient_id, day_number(covered_on))
        .cte("ledger_days")
    )
    offset = sa.case(
        *[(Patient.site_id == site_id, minutes) for site_id, minutes in offsets.items()],
        else_=0,
    )
    hold = MedicationHold
    hold_days = (
        sa.select(hold.patient_id.label("patient_id"), day.label("d"))
        .distinct()
        .select_from(calendar)
        .join(hold, sa.true())
        .join(Patient, Patient.id == hold.patient_id)
        .where(
            hold.patient_id.in_(sa.select(expected.c.patient_id)),
            local_day_number(hold.placed_at, offset) <= day,
            sa.or_(hold.lifted_at.is_(None), local_day_number(hold.lifted_at, offset) > day),
            sa.or_(hold.until_on.is_(None), day_number(hold.until_on) >= day),
        )
        .cte("hold_days")
    )

    def rates(source, medication) -> sa.Select:
        counted = sa.and_(
            sa.func.coalesce(ledger_days.c.held, 0) == 0, hold_days.c.patient_id.is_(None)
        )
        missed = sa.and_(counted, sa.func.coalesce(ledger_days.c.given, 0) == 0)
        return (
            sa.select(
                medication.label("medication"),
                sa.func.coalesce(sa.func.sum(sa.case((counted, 1), else_=0)), 0).label("expected"),
                sa.func.coalesce(sa.func.sum(sa.case((missed, 1), else_=0)), 0).label("missed"),
            )
            .select_from(source)
            .outerjoin(
                ledger_days,
                sa.and_(
                    ledger_days.c.patient_id == source.c.patient_id,
                    ledger_days.c.d == source.c.d,
                ),
            )
            .outerjoin(
                hold_days,
                sa.and_(hold_days.c.patient_id == source.c.patient_id, hold_days.c.d == source.c.d),
            )
        )

    patient_days = sa.select(expected.c.patient_id, expected.c.d).distinct().cte("patient_days")
    return sa.union_all(
        rates(expected, expected.c.medication).group_by(expected.c.medication),
        rates(patient_days, sa.cast(sa.null(), sa.String)),
    )
