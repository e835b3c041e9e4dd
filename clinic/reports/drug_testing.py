"""Drug testing: tests per patient-year against the 8-a-year standard, and positivity by
analyte and month (issue 14, report 6; DOMAIN.md "Medication for opioid use disorder": at
least 8 random tests a year in maintenance treatment, 42 CFR 8.12(f)(6); "Measures": drug
tests per patient-year).

Definitions:

- **Time in treatment**: each enrollment in scope (its program at a site in scope, the
  program chosen if any; patients entered in error left out) counts its enrolled days
  inside the period — the admission day and the discharge day both count; an open
  enrollment counts to the period's end, or to today when the period ends later. A day
  two enrollments of a patient share (a transfer: discharged and admitted the same day)
  counts once, for the earlier enrollment (a running window over the patient's
  enrollments) — also when a program is chosen: the filter keeps that program's days
  after the sharing, so its figures are those of its row without the filter.
  **Patient-years** = enrolled days / 365.
- **Tests**: drug tests not entered in error, collected (site-local day ``collected_on``)
  at a site in scope on a day the patient was in treatment as above; the test counts for
  the enrollment of that day. **Random tests**: those collected as random tests.
- **Below 8 a year, pro-rata**: for patients in maintenance treatment (methadone OTP and
  office-based buprenorphine programs: ``clinic.medications.drug_test_schedule``'s
  ``MAINTENANCE_KINDS``, the app's own reading of 8.12(f)(6)), random tests fewer than
  ``floor(8 * days / 365)`` over their maintenance days in the period — the drug-test
  worklist's "required so far" rule (a patient with fewer than 46 days needs none yet).
- **The result that counts** for an analyte of a test: the definitive (laboratory) result
  when there is one, else the presumptive one ("other" substances matched by name,
  whatever the letter case) — ``clinic.medications.drug_test_reading``'s rule, in SQL.
  "Not tested" results are left out.
- **Positivity** = positive results ÷ results, per analyte and month of collection,
  **leaving out the patient's own medication**: a methadone result of a patient whose
  methadone order is in force on the collection day (or a buprenorphine result of a
  patient on a buprenorphine product) is expected, not a sign of use. "Own medication" is
  the take-home review's rule (``own_analytes``): the orders started before the day (an
  order counts from the day after its start), in force that day and not replaced by a
  change started before it; when none is in force, the order that ended last. Those
  results are counted apart ("own medication, left out").

Statements: three, whatever the number of patients, tests or results.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from clinic.medications.drug_test_models import (
    Analyte,
    ResultValue,
)
from clinic.medications.drug_test_schedule import YEAR_DAYS
from clinic.patients.models import Program
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
from clinic.reports.drug_testing_sql import (
    below_standard,
    effective_results,
    enrolled_spans,
    last_day,
    own_medication,
    tests_in_period,
    tests_in_treatment,
)
from clinic.reports.filters import ReportFilters, last_twelve_months
from clinic.reports.labels import with_site
from clinic.sites.models import Site

# The analytes drawn on the chart (every analyte is in the tables).
CHART_ANALYTES = (
    Analyte.FENTANYL,
    Analyte.OPIOIDS,
    Analyte.COCAINE,
    Analyte.AMPHETAMINES,
    Analyte.BENZODIAZEPINES,
)
PANEL_ORDER = {analyte.value: index for index, analyte in enumerate(Analyte)}


def _rate_row(row: dict) -> dict:
    years = row["days"] / YEAR_DAYS
    row["patient_years"] = round(years, 2)
    row["tests_per_year"] = round(row["tests"] / years, 2) if years else None
    row["random_per_year"] = round(row["random"] / years, 2) if years else None
    row["below_share"] = percent(row["below"], row["covered"])
    return row


def _by_program(filters: ReportFilters) -> list[dict]:
    spans = enrolled_spans(filters)
    tests = tests_in_treatment(filters, spans)
    per_patient = (
        sa.select(
            spans.c.program_id,
            spans.c.patient_id,
            sa.func.sum(spans.c.days).label("days"),
            sa.func.max(spans.c.maintenance).label("maintenance"),
        )
        .group_by(spans.c.program_id, spans.c.patient_id)
        .subquery("per_patient")
    )
    tested = (
        sa.select(
            tests.c.program_id,
            tests.c.patient_id,
            sa.func.count().label("tests"),
            sa.func.sum(tests.c.random).label("random"),
        )
        .group_by(tests.c.program_id, tests.c.patient_id)
        .subquery("tested")
    )
    maintenance_days = per_patient.c.days * per_patient.c.maintenance
    query = (
        sa.select(
            Program.name,
            Site.code,
            per_patient.c.program_id,
            sa.func.count().label("patients"),
            sa.func.sum(per_patient.c.days).label("days"),
            sa.func.coalesce(sa.func.sum(tested.c.tests), 0).label("tests"),
            sa.func.coalesce(sa.func.sum(tested.c.random), 0).label("random"),
            sa.func.sum(per_patient.c.maintenance).label("covered"),
            sa.func.sum(below_standard(tested.c.random, maintenance_days)).label("below"),
        )
        .select_from(per_patient)
        .join(Program, Program.id == per_patient.c.program_id)
        .join(Site, Site.id == Program.site_id)
        .outerjoin(
            tested,
            sa.and_(
                tested.c.program_id == per_patient.c.program_id,
                tested.c.patient_id == per_patient.c.patient_id,
            ),
        )
        .group_by(per_patient.c.program_id, Program.name, Site.code)
        .order_by(Program.name, Site.code, per_patient.c.program_id)
    )
    return [
        _rate_row(
            {
                "program": with_site(row.name, row.code, filters),
                "patients": int(row.patients),
                "days": int(row.days),
                "tests": int(row.tests),
                "random": int(row.random),
                "covered": int(row.covered),
                "below": int(row.below),
            }
        )
        for row in session.execute(query)
    ]


def _overall(filters: ReportFilters) -> dict:
    """The same measures per patient over all their enrollments in scope."""
    spans = enrolled_spans(filters)
    tests = tests_in_treatment(filters, spans)
    per_patient = (
        sa.select(
            spans.c.patient_id,
            sa.func.sum(spans.c.days).label("days"),
            sa.func.sum(spans.c.days * spans.c.maintenance).label("maintenance_days"),
        )
        .group_by(spans.c.patient_id)
        .subquery("per_patient")
    )
    tested = (
        sa.select(
            tests.c.patient_id,
            sa.func.count().label("tests"),
            sa.func.sum(tests.c.random).label("random"),
            sa.func.sum(tests.c.random * tests.c.maintenance).label("maintenance_random"),
        )
        .group_by(tests.c.patient_id)
        .subquery("tested")
    )
    row = session.execute(
        sa.select(
            sa.func.count().label("patients"),
            sa.func.coalesce(sa.func.sum(per_patient.c.days), 0).label("days"),
            sa.func.coalesce(sa.func.sum(tested.c.tests), 0).label("tests"),
            sa.func.coalesce(sa.func.sum(tested.c.random), 0).label("random"),
            sa.func.coalesce(
                sa.func.sum(sa.case((per_patient.c.maintenance_days > 0, 1), else_=0)), 0
            ).label("covered"),
            sa.func.coalesce(
                sa.func.sum(
                    below_standard(tested.c.maintenance_random, per_patient.c.maintenance_days)
                ),
                0,
            ).label("below"),
        )
        .select_from(per_patient)
        .outerjoin(tested, tested.c.patient_id == per_patient.c.patient_id)
    ).one()
    return _rate_row(
        {
            "program": "All programs",
            "patients": int(row.patients),
            "days": int(row.days),
            "tests": int(row.tests),
            "random": int(row.random),
            "covered": int(row.covered),
            "below": int(row.below),
        }
    )


def _positivity(filters: ReportFilters) -> list[dict]:
    """Per (month 'YYYY-MM', analyte): results counted, positives, own-medication results
    left out."""
    tests = tests_in_period(filters)
    effective = effective_results(tests)
    own_of = own_medication(tests)
    own = sa.case(
        (
            sa.and_(effective.c.analyte == Analyte.METHADONE.value, own_of.c.own_methadone == 1),
            1,
        ),
        (
            sa.and_(
                effective.c.analyte == Analyte.BUPRENORPHINE.value,
                own_of.c.own_buprenorphine == 1,
            ),
            1,
        ),
        else_=0,
    )
    rows = (
        sa.select(
            tests.c.month,
            effective.c.analyte,
            own.label("own"),
            sa.case((effective.c.result == ResultValue.POSITIVE.value, 1), else_=0).label(
                "positive"
            ),
        )
        .select_from(effective)
        .join(tests, tests.c.test_id == effective.c.test_id)
        .outerjoin(own_of, own_of.c.test_id == effective.c.test_id)
        .subquery("counted")
    )
    query = sa.select(
        rows.c.month,
        rows.c.analyte,
        sa.func.sum(1 - rows.c.own).label("results"),
        sa.func.sum(rows.c.positive * (1 - rows.c.own)).label("positive"),
        sa.func.sum(rows.c.own).label("own"),
    ).group_by(rows.c.month, rows.c.analyte)
    return [
        {
            "month": row.month,
            "analyte": str(row.analyte),
            "results": int(row.results),
            "positive": int(row.positive),
            "own": int(row.own),
        }
        for row in session.execute(query)
    ]


def _months(first: dt.date, last: dt.date) -> list[str]:
    months, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _label(analyte: str) -> str:
    return Analyte(analyte).label


def compute(filters: ReportFilters) -> ReportResult:
    """Tests per patient-year (overall and by program) against 8 a year; positivity by
    analyte and by month. Patient-years: enrolled days / 365; positivity: percentages."""
    by_program = _by_program(filters)
    overall = _overall(filters)
    cells = _positivity(filters)
    by_analyte: dict[str, dict] = {}
    for cell in cells:
        entry = by_analyte.setdefault(
            cell["analyte"],
            {"analyte": _label(cell["analyte"]), "results": 0, "positive": 0, "own": 0},
        )
        for key in ("results", "positive", "own"):
            entry[key] += cell[key]
    analyte_rows = [
        entry | {"positivity": percent(entry["positive"], entry["results"])}
        for key, entry in sorted(by_analyte.items(), key=lambda kv: PANEL_ORDER[kv[0]])
    ]
    month_rows = [
        {
            "month": cell["month"],
            "analyte": _label(cell["analyte"]),
            "results": cell["results"],
            "positive": cell["positive"],
            "positivity": percent(cell["positive"], cell["results"]),
            "own": cell["own"],
        }
        for cell in sorted(cells, key=lambda c: (c["month"], PANEL_ORDER[c["analyte"]]))
    ]
    months = _months(filters.date_from, max(filters.date_from, last_day(filters)))
    grid = {(c["month"], c["analyte"]): c for c in cells}
    series = []
    for analyte in CHART_ANALYTES:
        values = []
        for month in months:
            cell = grid.get((month, analyte.value))
            values.append(percent(cell["positive"], cell["results"]) if cell else None)
        if any(v is not None for v in values):  # an analyte with no result: not drawn
            series.append((analyte.label, values))
    rate_columns = [
        # The measures name the count they are over (``of``): with small cells suppressed,
        # a rate over a small count would give it back (patient-years x rate = tests).
        Column("patients", "Patients", Kind.COUNT),
        Column("patient_years", "Patient-years", Kind.NUMBER, of="patients"),
        Column("tests", "Tests", Kind.COUNT),
        Column("tests_per_year", "Tests per patient-year", Kind.NUMBER, of="tests"),
        Column("random", "Random tests", Kind.COUNT),
        Column("random_per_year", "Random tests per patient-year", Kind.NUMBER, of="random"),
        Column("covered", "Patients in maintenance", Kind.COUNT),
        Column("below", "Below 8 a year (pro-rata)", Kind.COUNT),
        Column("below_share", "Share below 8 a year", Kind.PERCENT, of="covered"),
    ]
    result_columns = [
        Column("results", "Results", Kind.COUNT),
        Column("positive", "Positive", Kind.COUNT),
        Column("positivity", "Positivity", Kind.PERCENT, of="results"),
        Column("own", "Own medication (left out)", Kind.COUNT),
    ]
    tables = [
        Table(
            "per_patient_year",
            "Tests per patient-year, by program",
            [Column("program", "Program"), *rate_columns],
            by_program,
            empty="No patients in treatment in this period.",
            total=overall if by_program else None,
        ),
        Table(
            "positivity_by_analyte",
            "Positivity by analyte",
            [Column("analyte", "Analyte"), *result_columns],
            analyte_rows,
            empty="No test results in this period.",
        ),
        Table(
            "positivity_by_month",
            "Positivity by month and analyte",
            [Column("month", "Month"), Column("analyte", "Analyte"), *result_columns],
            month_rows,
            empty="No test results in this period.",
        ),
    ]
    chart = Chart(
        ChartKind.LINE,
        "Positivity by month, main analytes",
        months,
        series,
        x_label="Month of collection",
        y_label="Positive results (%)",
        percent=True,
    )
    notes = [
        "Patient-years: each patient's days enrolled in the period (admission and discharge "
        "days included; a transfer day counted once) ÷ 365.",
        "Tests: collected in the period on a day the patient was enrolled, not entered in "
        "error. Random tests are those collected as random tests.",
        "Below 8 a year (42 CFR 8.12(f)(6)): patients in methadone OTP or office-based "
        "buprenorphine programs whose random tests are fewer than 8 * days ÷ 365 (rounded "
        "down) over their days in the period — a patient enrolled under 46 days needs none "
        "yet.",
        "Each analyte counts its definitive (laboratory) result when there is one, else the "
        "presumptive one; “not tested” is left out.",
        "Positivity leaves out the patient's own medication (methadone for a patient on "
        "methadone, buprenorphine for a patient on a buprenorphine product): it is expected. "
        "Those results are counted in the last column.",
        "With more than one site counted, each program is shown with its site's code "
        "(\u201cName \u2014 SITECODE\u201d): two sites may name a program alike.",
        "Patients entered in error are never counted.",
    ]
    return ReportResult(tables, chart, notes)


REPORT = register_report(
    Report(
        slug="drug-testing",
        title="Drug testing",
        summary="Tests per patient-year against the 8-a-year standard; positivity by analyte "
        "and month.",
        filters=frozenset({FilterName.SITE, FilterName.PROGRAM, FilterName.PERIOD}),
        compute=compute,
        default_period=last_twelve_months,
        order=60,
    )
)
