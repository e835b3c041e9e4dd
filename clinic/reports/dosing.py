"""Dosing: doses given out by medication and day, the methadone dose distribution in 20 mg
bins, the take-home share and the missed-dose rate, from the dose ledger (issue 14).

Definitions (DOMAIN.md, "Medication for opioid use disorder"; 21 CFR 1304.24(a) for the
ledger; ``clinic.medications.missed`` for missed days):

- **Doses given out**, by the site-local day they were handed out (``dispensed_on``) and
  the ledger's medication: observed doses — one per patient and day, a split dose's two
  portions being one dose —, take-home bottles (one per bottle: each is one day's dose)
  and extended-release injections. Reversed rows and reversals are not counted; missed
  and held rows are not doses.
- **Take-home share**: take-home bottles / all doses given out, by medication.
- **Methadone dose distribution**: the methadone a patient took per day, in 20 mg bins
  (0-19, 20-39, ..., 180-199, 200 mg and more), counted in patient-days of the period up
  to today: observed portions summed on the day given (a split dose is the sum of its
  portions) plus a take-home bottle's amount on its take-on day.
- **Missed-dose rate**: missed days / expected dosing days. Expected dosing days: each
  day of the period before today on which the patient had a daily or split order in force
  (from its start to its end day) in an enrollment not yet discharged, on which the
  program's site was open (not one of its closed weekdays, not one of its holidays:
  ``Site.closed_weekdays``, ``SiteClosure``) — not counting held days (a dose recorded
  as held, or a stop-dose hold in force). A missed day is an expected day with no dose
  given (observed or injected) and no take-home bottle for it
  — the rule of ``clinic.medications.missed``; the ledger's rows of kind ``missed``, if
  any, change nothing. So expected = observed + take-home + missed days of daily-dosed
  patients, on the days the site was open. Unlike this report, the dosing screen's
  missed-day run (``clinic.medications.missed``, 3 days → clinical review) does not skip
  closed days: a closed day with no take-home bottle counts there (the patient had no
  medication that day). The statement is in ``clinic.reports.dosing_missed``.

Scope: doses at the chosen sites (``DoseEntry.site_id``); expected days of orders whose
enrollment's program is at the chosen sites; the program filter through the order's
enrollment, the medication filter on the ledger's (or the order's) medication; patients
entered in error are left out. Dates are site-local days. Four statements, whatever the
number of patients or doses.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from clinic.medications.models import (
    DoseEntry,
    DoseKind,
    Medication,
    MedicationOrder,
)
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
from clinic.reports.dosing_missed import (
    GIVEN_OUT,
    TAKE_HOME_AHEAD_DAYS,
    missed_statement,
    not_reversed,
    site_offsets,
)
from clinic.reports.filters import ReportFilters, last_thirty_days
from clinic.reports.sql import days

BIN_MG = 20
TOP_BIN_MG = 200
# Amounts are multiples of 0.01 mg; SQLite sums them as binary floats, so a bin's bound is
# compared half a hundredth lower (a day of 19.99 mg stays in 0-19, 20 mg goes to 20-39).
BOUND_SLACK = 0.005


def bin_labels() -> list[str]:
    """'0-19 mg', '20-39 mg', ..., '180-199 mg', '200 mg or more'."""
    labels = [f"{low}-{low + BIN_MG - 1} mg" for low in range(0, TOP_BIN_MG, BIN_MG)]
    return [*labels, f"{TOP_BIN_MG} mg or more"]


def _scope(statement: sa.Select, filters: ReportFilters, entry, since: dt.date) -> sa.Select:
    """Dose rows at the chosen sites, not reversed, of patients not entered in error, of
    the chosen program (through the order's enrollment); ``since``: the earliest
    ``dispensed_on`` read."""
    statement = statement.join(Patient, Patient.id == entry.patient_id).where(
        entry.site_id.in_(filters.site_ids),
        Patient.entered_in_error_at.is_(None),
        not_reversed(entry, since, filters.site_ids),
    )
    if filters.program_id is not None:
        statement = (
            statement.join(MedicationOrder, MedicationOrder.id == entry.order_id)
            .join(Enrollment, Enrollment.id == MedicationOrder.enrollment_id)
            .where(Enrollment.program_id == filters.program_id)
        )
    if filters.medication_values is not None:
        statement = statement.where(entry.medication.in_(filters.medication_values))
    return statement


def _doses_statement(filters: ReportFilters) -> sa.Select:
    """Rows ``(day, medication, observed, bottles, injections)``: observed doses counted
    once per patient and day."""
    entry = DoseEntry
    units = _scope(
        sa.select(
            entry.dispensed_on.label("day"),
            entry.medication.label("medication"),
            entry.kind.label("kind"),
            entry.patient_id.label("patient_id"),
            sa.func.count().label("rows"),
        ).select_from(entry),
        filters,
        entry,
        filters.date_from,
    ).where(
        entry.kind.in_(GIVEN_OUT),
        entry.dispensed_on >= filters.date_from,
        entry.dispensed_on <= filters.date_to,
    )
    units = units.group_by(entry.dispensed_on, entry.medication, entry.kind, entry.patient_id)
    units = units.subquery("units")

    def of_kind(kind: DoseKind, value) -> sa.ColumnElement:
        return sa.func.sum(sa.case((units.c.kind == kind, value), else_=0))

    return sa.select(
        units.c.day,
        units.c.medication,
        of_kind(DoseKind.OBSERVED, 1).label("observed"),
        of_kind(DoseKind.TAKE_HOME, units.c.rows).label("bottles"),
        of_kind(DoseKind.INJECTION, units.c.rows).label("injections"),
    ).group_by(units.c.day, units.c.medication)


def _distribution_statement(filters: ReportFilters) -> sa.Select:
    """Rows ``(bin, patient_days)``: methadone per patient-day in 20 mg bins (bin 0 is
    0-19 mg, ..., bin 10 is 200 mg or more)."""
    entry = DoseEntry
    last = min(filters.date_to, filters.today)
    taken_on = sa.case((entry.kind == DoseKind.TAKE_HOME, entry.take_on), else_=entry.dispensed_on)
    parts = _scope(
        sa.select(
            entry.patient_id.label("patient_id"),
            taken_on.label("day"),
            entry.amount_mg.label("amount"),
        ).select_from(entry),
        filters,
        entry,
        filters.date_from - dt.timedelta(days=TAKE_HOME_AHEAD_DAYS),
    ).where(
        entry.medication == Medication.METHADONE,
        entry.kind.in_((DoseKind.OBSERVED, DoseKind.TAKE_HOME)),
        entry.dispensed_on >= filters.date_from - dt.timedelta(days=TAKE_HOME_AHEAD_DAYS),
        entry.dispensed_on <= last,
        taken_on >= filters.date_from,
        taken_on <= last,
    )
    parts = parts.subquery("parts")
    per_day = (
        sa.select(sa.func.sum(parts.c.amount).label("total"))
        .group_by(parts.c.patient_id, parts.c.day)
        .subquery("per_day")
    )
    bin_number = sa.case(
        *[
            (per_day.c.total < (low + BIN_MG) - BOUND_SLACK, low // BIN_MG)
            for low in range(0, TOP_BIN_MG, BIN_MG)
        ],
        else_=TOP_BIN_MG // BIN_MG,
    )
    return sa.select(bin_number.label("bin"), sa.func.count().label("patient_days")).group_by(
        bin_number
    )


def _chart(filters: ReportFilters, per_day: dict[tuple[dt.date, str], int]) -> Chart | None:
    """Doses given out per day (per month beyond 62 days), stacked by medication."""
    if not per_day:
        return None
    by_month = (filters.date_to - filters.date_from).days > 62
    categories: list[str] = []
    day = filters.date_from
    while day <= filters.date_to:
        label = day.strftime("%Y-%m") if by_month else day.isoformat()
        if not categories or categories[-1] != label:
            categories.append(label)
        day += dt.timedelta(days=1)
    index = {label: n for n, label in enumerate(categories)}
    medications = [m for m in Medication if any(key[1] == m.value for key in per_day)]
    series = []
    for medication in medications:
        values = [0] * len(categories)
        for (on, value), doses in per_day.items():
            if value == medication.value:
                values[index[on.strftime("%Y-%m") if by_month else on.isoformat()]] += doses
        series.append((medication.label, values))
    return Chart(
        kind=ChartKind.STACKED_BAR,
        title="Doses given out per " + ("month" if by_month else "day") + ", by medication",
        categories=categories,
        series=series,
        x_label="Month" if by_month else "Day",
        y_label="Doses given out",
    )


DOSE_COLUMNS = (
    Column("observed", "Observed doses", Kind.COUNT),
    Column("bottles", "Take-home bottles", Kind.COUNT),
    Column("injections", "Injections", Kind.COUNT),
    Column("doses", "All doses given out", Kind.COUNT),
)


def compute(filters: ReportFilters) -> ReportResult:
    """Tables ``by_medication`` (doses, take-home share and missed-dose rate, with a total
    row), ``by_day`` (each day and medication with doses) and ``methadone`` (patient-days
    per 20 mg bin), and a stacked bar chart of doses per day by medication. Four
    statements (two when no day of the period is before today)."""
    per_day: dict[tuple[dt.date, str], int] = {}
    day_rows: list[tuple[dt.date, str, dict]] = []
    totals: dict[str, dict[str, int]] = {}
    for on, medication, observed, bottles, injections in session.execute(_doses_statement(filters)):
        value = Medication(medication).value
        counts = {
            "observed": int(observed or 0),
            "bottles": int(bottles or 0),
            "injections": int(injections or 0),
        }
        counts["doses"] = sum(counts.values())
        per_day[(on, value)] = counts["doses"]
        day_rows.append((on, value, {"day": on, "medication": Medication(value).label, **counts}))
        into = totals.setdefault(
            value, dict.fromkeys(("observed", "bottles", "injections", "doses"), 0)
        )
        for key, number in counts.items():
            into[key] += number
    order = {m.value: n for n, m in enumerate(Medication)}
    day_rows.sort(key=lambda r: (r[0], order[r[1]]))

    first, last = (
        days(filters.date_from),
        days(min(filters.date_to, filters.today - dt.timedelta(days=1))),
    )
    missed: dict[str | None, tuple[int, int]] = {}
    if first <= last:
        offsets = site_offsets(filters.date_to)
        for medication, expected, missed_days in session.execute(
            missed_statement(filters, first, last, offsets)
        ):
            missed[medication] = (int(expected or 0), int(missed_days or 0))

    empty = dict.fromkeys(("observed", "bottles", "injections", "doses"), 0)
    medication_rows = []
    for medication in Medication:
        if medication.value not in totals and medication.value not in missed:
            continue
        doses = totals.get(medication.value, empty)
        expected, missed_days = missed.get(medication.value, (0, 0))
        medication_rows.append(_medication_row(medication.label, doses, expected, missed_days))
    total = None
    if medication_rows:
        doses = {key: sum(t[key] for t in totals.values()) for key in empty}
        expected, missed_days = missed.get(None, (0, 0))
        total = _medication_row("All medications", doses, expected, missed_days)

    bins = {
        int(number): int(count)
        for number, count in session.execute(_distribution_statement(filters))
    }
    methadone_rows = (
        [
            {"bin": label, "patient_days": bins.get(number, 0)}
            for number, label in enumerate(bin_labels())
        ]
        if bins
        else []
    )
    tables = [
        Table(
            key="by_medication",
            title="Doses, take-home share and missed doses by medication",
            columns=[
                Column("medication", "Medication"),
                *DOSE_COLUMNS,
                Column("take_home_share", "Take-home share", Kind.PERCENT, of="doses"),
                Column("expected", "Expected dosing days", Kind.COUNT),
                Column("missed", "Missed days", Kind.COUNT),
                Column("missed_rate", "Missed-dose rate", Kind.PERCENT, of="expected"),
            ],
            rows=medication_rows,
            total=total,
            empty="No dose given out and no daily order in force in this period.",
        ),
        Table(
            key="by_day",
            title="Doses given out by day and medication",
            columns=[
                Column("day", "Day", Kind.DATE),
                Column("medication", "Medication"),
                *DOSE_COLUMNS,
            ],
            rows=[row for _on, _value, row in day_rows],
            empty="No dose given out in this period.",
        ),
        Table(
            key="methadone",
            title="Methadone per patient-day, in 20 mg bins",
            columns=[
                Column("bin", "Methadone taken in the day"),
                Column("patient_days", "Patient-days", Kind.COUNT),
            ],
            rows=methadone_rows,
            empty="No methadone taken in this period.",
        ),
    ]
    return ReportResult(tables=tables, chart=_chart(filters, per_day), notes=NOTES)


def _medication_row(label: str, doses: dict[str, int], expected: int, missed: int) -> dict:
    return {
        "medication": label,
        **doses,
        "take_home_share": percent(doses["bottles"], doses["doses"]),
        "expected": expected,
        "missed": missed,
        "missed_rate": percent(missed, expected),
    }


NOTES = [
    "Doses given out are counted on the day they were handed out: an observed dose once "
    "per patient and day (the two portions of a split dose are one dose), each take-home "
    "bottle (one day's dose) and each extended-release injection. Reversed doses are not "
    "counted.",
    "Take-home share: take-home bottles out of all doses given out.",
    "Methadone per patient-day: the methadone a patient took in a day, in 20 mg bins (a "
    "bin's upper bound is excluded: 19.5 mg is in 0-19 mg) — the portions of a split dose "
    "added up on the day given, a take-home bottle on its take-on day. Days after today "
    "are not counted.",
    "Missed-dose rate: missed days out of expected dosing days. Expected dosing days are "
    "the days of the period before today on which a patient had a daily (or split) "
    "medication order in force in an enrollment not yet discharged and the program's site "
    "was open — days the site is closed (its closed weekdays, e.g. Sundays, and its "
    "holidays, as set on the site's calendar) are not expected dosing days —, not counting "
    "days the dose was held (recorded as held, or a stop-dose hold in force). A missed day "
    "is an expected day with no dose given and no take-home bottle for it. Injections are not "
    "due daily and have no missed days here.",
    "The dosing screen's own missed-day count (3 missed days in a row call for a "
    "clinician's review) does not skip closed days: there, a closed day with no take-home "
    "bottle for it counts as missed, since the patient had no medication that day. This "
    "report's rate measures attendance on the days the clinic was open.",
    "Stop-dose holds are placed and lifted at an instant: the site-local day is taken with "
    "the site's offset from UTC at the end of the period (a hold placed within an hour of "
    "midnight across a daylight-saving change may count one day earlier or later).",
    "Patients whose record was entered in error are left out; doses given at the chosen "
    "sites only, expected days of programs at the chosen sites.",
]


register_report(
    Report(
        slug="dosing",
        title="Dosing",
        summary=(
            "Doses given out by medication and day, methadone doses in 20 mg bins, the "
            "take-home share and the missed-dose rate."
        ),
        filters=frozenset(
            {FilterName.SITE, FilterName.PROGRAM, FilterName.MEDICATION, FilterName.PERIOD}
        ),
        compute=compute,
        default_period=last_thirty_days,
        order=80,
    )
)
