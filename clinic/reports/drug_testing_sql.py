"""The SQL building blocks of the drug-testing report (``clinic.reports.drug_testing``,
whose module doc gives the definitions): the days each enrollment in scope spends in
treatment inside the period, the tests collected in treatment, the patient's own
medication on a test's day, and the pro-rata 8-a-year check. Each returns a SQLAlchemy
expression or CTE to build one statement with; none runs a query.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from clinic.medications.drug_test_models import (
    Analyte,
    DrugTest,
    DrugTestResult,
    ResultMethod,
    ResultValue,
    TestReason,
)
from clinic.medications.drug_test_schedule import MAINTENANCE_KINDS, TESTS_PER_YEAR, YEAR_DAYS
from clinic.medications.models import Medication, MedicationOrder
from clinic.patients.models import Enrollment, Patient, Program
from clinic.reports.filters import ReportFilters
from clinic.reports.sql import date_param, day_number, days, month_key

OWN_MEDICATIONS = {
    Analyte.METHADONE.value: (Medication.METHADONE.value,),
    Analyte.BUPRENORPHINE.value: (
        Medication.BUPRENORPHINE.value,
        Medication.BUPRENORPHINE_NALOXONE.value,
        Medication.XR_BUPRENORPHINE.value,
    ),
}
MAINTENANCE_VALUES = tuple(k.value for k in MAINTENANCE_KINDS)


def _greatest(a, b) -> sa.ColumnElement:
    return sa.case((a > b, a), else_=b)


def _least(a, b) -> sa.ColumnElement:
    return sa.case((a < b, a), else_=b)


def last_day(filters: ReportFilters) -> dt.date:
    """The period's last day counted: its end, or today when it ends later."""
    return min(filters.date_to, filters.today)


def enrolled_spans(filters: ReportFilters) -> sa.CTE:
    """Per enrollment in scope: (enrollment_id, patient_id, program_id, maintenance 0/1,
    ``s`` and ``e`` the first and last day numbers (``sql.day_number``) inside the period,
    ``days``), only those with at least one day. A day shared with an earlier enrollment
    of the patient (a transfer day) is trimmed: a running MAX of the earlier ends over
    the patient's enrollments (a window), so a patient's spans never overlap."""
    first, last = days(filters.date_from), days(last_day(filters))
    start = _greatest(day_number(Enrollment.admitted_on), first)
    end = sa.case(
        (Enrollment.discharged_on.is_(None), last),
        else_=_least(day_number(Enrollment.discharged_on), last),
    )
    base = (
        sa.select(
            Enrollment.id.label("enrollment_id"),
            Enrollment.patient_id.label("patient_id"),
            Enrollment.program_id.label("program_id"),
            sa.case((Program.kind.in_(MAINTENANCE_VALUES), 1), else_=0).label("maintenance"),
            start.label("s"),
            end.label("e"),
        )
        .join(Program, Program.id == Enrollment.program_id)
        .join(Patient, Patient.id == Enrollment.patient_id)
        .where(
            Program.site_id.in_(filters.site_ids),
            Patient.entered_in_error_at.is_(None),
            Enrollment.admitted_on <= date_param(last_day(filters)),
            sa.or_(
                Enrollment.discharged_on.is_(None),
                Enrollment.discharged_on >= date_param(filters.date_from),
            ),
        )
    )
    # The program filter applies after the trimming: a transfer day stays with the earlier
    # enrollment whether its program or the next one is chosen (a program's figures are
    # the same with or without the filter).
    base = base.cte("enrolled")
    before = sa.func.max(base.c.e).over(
        partition_by=base.c.patient_id, order_by=(base.c.s, base.c.enrollment_id), rows=(None, -1)
    )
    trimmed = sa.select(
        base.c.enrollment_id,
        base.c.patient_id,
        base.c.program_id,
        base.c.maintenance,
        sa.case((before >= base.c.s, before + 1), else_=base.c.s).label("s"),
        base.c.e,
    ).cte("trimmed")
    spans = sa.select(trimmed, (trimmed.c.e - trimmed.c.s + 1).label("days")).where(
        trimmed.c.e >= trimmed.c.s
    )
    if filters.program_id is not None:
        spans = spans.where(trimmed.c.program_id == filters.program_id)
    return spans.cte("spans")


def own_medication(tests: sa.CTE) -> sa.Subquery:
    """Per test of ``tests`` (``tests_in_treatment``) whose patient has an order started
    before the collection day: (test_id, own_methadone, own_buprenorphine), 1/0 — the
    patient's own medication that day by
    ``clinic.medications.drug_test_reading.own_analytes``'s rule, set-based (hash joins
    and a window, no subquery per test): an order counts from the day after its start; it
    is in force while not ended (``end_on`` inclusive) and not replaced by an order
    started before the day; when none of the patient's orders is in force, the order that
    ended last (by end or start day, start day, id) counts. A cancelled order (ended
    before its start) never counts."""
    order, replacer = aliased(MedicationOrder), aliased(MedicationOrder)
    day = tests.c.collected_on

    def live(o):
        return sa.or_(o.end_on.is_(None), o.end_on >= o.start_on)

    replaced = (
        sa.select(replacer.replaces_id, sa.func.min(replacer.start_on).label("first_start"))
        .where(replacer.replaces_id.is_not(None), live(replacer))
        .group_by(replacer.replaces_id)
        .subquery("replaced")
    )
    in_force = sa.and_(
        sa.or_(order.end_on.is_(None), order.end_on >= day),
        sa.or_(replaced.c.first_start.is_(None), replaced.c.first_start >= day),
    )
    ordered = (
        sa.select(
            tests.c.test_id,
            sa.cast(order.medication, sa.String(32)).label("medication"),
            sa.case((in_force, 1), else_=0).label("in_force"),
            sa.func.row_number()
            .over(
                partition_by=tests.c.test_id,
                order_by=(
                    sa.func.coalesce(order.end_on, order.start_on).desc(),
                    order.start_on.desc(),
                    order.id.desc(),
                ),
            )
            .label("recency"),
        )
        .select_from(tests)
        .join(
            order,
            sa.and_(order.patient_id == tests.c.patient_id, order.start_on < day, live(order)),
        )
        .outerjoin(replaced, replaced.c.replaces_id == order.id)
        .subquery("ordered")
    )

    def flag(condition) -> sa.ColumnElement:
        return sa.func.max(sa.case((condition, 1), else_=0))

    flags = (
        sa.select(
            ordered.c.test_id,
            sa.func.max(ordered.c.in_force).label("any_in_force"),
            *(
                flag(sa.and_(ordered.c.in_force == 1, ordered.c.medication.in_(meds))).label(
                    f"{analyte}_in_force"
                )
                for analyte, meds in OWN_MEDICATIONS.items()
            ),
            *(
                flag(sa.and_(ordered.c.recency == 1, ordered.c.medication.in_(meds))).label(
                    f"{analyte}_last"
                )
                for analyte, meds in OWN_MEDICATIONS.items()
            ),
        )
        .group_by(ordered.c.test_id)
        .subquery("order_flags")
    )

    def own(analyte: str) -> sa.ColumnElement:
        return sa.case(
            (flags.c[f"{analyte}_in_force"] == 1, 1),
            (sa.and_(flags.c.any_in_force == 0, flags.c[f"{analyte}_last"] == 1), 1),
            else_=0,
        )

    return sa.select(
        flags.c.test_id,
        own(Analyte.METHADONE.value).label("own_methadone"),
        own(Analyte.BUPRENORPHINE.value).label("own_buprenorphine"),
    ).subquery("own_medication")


def effective_results(tests: sa.CTE) -> sa.Subquery:
    """Per test of ``tests`` and analyte ("other" substances by name, whatever the letter
    case): (test_id, analyte, result) — the definitive result when there is one, else the
    presumptive one (``drug_test_reading``'s rule), one GROUP BY pass; "not tested" left
    out."""
    result = DrugTestResult

    def by(method: ResultMethod) -> sa.ColumnElement:
        return sa.func.max(
            sa.case((result.method == method, sa.cast(result.result, sa.String(16))))
        )

    effective = (
        sa.select(
            result.test_id,
            sa.cast(result.analyte, sa.String(20)).label("analyte"),
            sa.func.coalesce(by(ResultMethod.DEFINITIVE), by(ResultMethod.PRESUMPTIVE)).label(
                "result"
            ),
        )
        .join(tests, tests.c.test_id == result.test_id)
        .group_by(result.test_id, result.analyte, sa.func.lower(result.other_name))
        .subquery("effective_all")
    )
    return (
        sa.select(effective)
        .where(effective.c.result.in_((ResultValue.POSITIVE.value, ResultValue.NEGATIVE.value)))
        .subquery("effective")
    )


def tests_in_treatment(filters: ReportFilters, spans: sa.CTE) -> sa.CTE:
    """The tests counted: (test_id, patient_id, collected_on, random 1/0, program_id and
    maintenance 1/0 of the enrollment span holding the collection day), not entered in
    error, collected at a site in scope on a day of one of ``spans`` (at most one: the
    spans of a patient never overlap)."""
    return (
        sa.select(
            DrugTest.id.label("test_id"),
            DrugTest.patient_id.label("patient_id"),
            DrugTest.collected_on.label("collected_on"),
            sa.case((DrugTest.reason == TestReason.RANDOM, 1), else_=0).label("random"),
            spans.c.program_id,
            spans.c.maintenance,
        )
        .join(
            spans,
            sa.and_(
                spans.c.patient_id == DrugTest.patient_id,
                day_number(DrugTest.collected_on) >= spans.c.s,
                day_number(DrugTest.collected_on) <= spans.c.e,
            ),
        )
        .where(
            DrugTest.entered_in_error_at.is_(None),
            DrugTest.site_id.in_(filters.site_ids),
        )
        .cte("tests")
    )


def tests_in_period(filters: ReportFilters) -> sa.CTE:
    """The tests whose results count for positivity: (test_id, patient_id, collected_on,
    month 'YYYY-MM')
    — the same tests as ``tests_in_treatment`` (not entered in error, at a site in scope,
    collected in the period on a day the patient had an enrollment in scope), written
    with plain range conditions on the test and an EXISTS on the enrollments, so the
    planner estimates them well (a join on day ranges is under-estimated and the plan
    that follows can be slow)."""
    first, last = date_param(filters.date_from), date_param(last_day(filters))
    enrolled = (
        sa.select(Enrollment.id)
        .join(Program, Program.id == Enrollment.program_id)
        .where(
            Enrollment.patient_id == DrugTest.patient_id,
            Enrollment.admitted_on <= DrugTest.collected_on,
            sa.or_(
                Enrollment.discharged_on.is_(None),
                Enrollment.discharged_on >= DrugTest.collected_on,
            ),
            Program.site_id.in_(filters.site_ids),
        )
        .correlate(DrugTest)
    )
    if filters.program_id is not None:
        # The day must be the chosen program's: no enrollment of the patient in scope that
        # comes first in ``enrolled_spans``'s order (its first day in the period, then its
        # id) covers it too (a transfer day belongs to the enrollment left that day).
        earlier, earlier_program = aliased(Enrollment), aliased(Program)

        def start(enrollment) -> sa.ColumnElement:
            return _greatest(enrollment.admitted_on, first)

        before = (
            sa.select(earlier.id)
            .join(earlier_program, earlier_program.id == earlier.program_id)
            .where(
                earlier.patient_id == DrugTest.patient_id,
                earlier.admitted_on <= DrugTest.collected_on,
                sa.or_(
                    earlier.discharged_on.is_(None),
                    earlier.discharged_on >= DrugTest.collected_on,
                ),
                earlier_program.site_id.in_(filters.site_ids),
                sa.or_(
                    start(earlier) < start(Enrollment),
                    sa.and_(start(earlier) == start(Enrollment), earlier.id < Enrollment.id),
                ),
            )
            .correlate(DrugTest, Enrollment)
        )
        enrolled = enrolled.where(Enrollment.program_id == filters.program_id, ~before.exists())
    return (
        sa.select(
            DrugTest.id.label("test_id"),
            DrugTest.patient_id.label("patient_id"),
            DrugTest.collected_on.label("collected_on"),
            month_key(DrugTest.collected_on).label("month"),
        )
        .join(Patient, Patient.id == DrugTest.patient_id)
        .where(
            DrugTest.entered_in_error_at.is_(None),
            DrugTest.site_id.in_(filters.site_ids),
            DrugTest.collected_on >= first,
            DrugTest.collected_on <= last,
            Patient.entered_in_error_at.is_(None),
            enrolled.exists(),
        )
        .cte("tests")
    )


def below_standard(random_tests, maintenance_days) -> sa.ColumnElement:
    """1 when a maintenance patient's random tests are fewer than floor(8 * days / 365)."""
    return sa.case(
        (
            sa.and_(
                maintenance_days > 0,
                (sa.func.coalesce(random_tests, 0) + 1) * YEAR_DAYS
                <= TESTS_PER_YEAR * maintenance_days,
            ),
            1,
        ),
        else_=0,
    )
