"""Admissions and discharges in a period: admissions by program (new admissions,
readmissions, transfers in), discharges by TEDS-D reason, and the average and median
length of stay of the discharged.

Definitions (DOMAIN.md "Programs and enrollment"; TEDS-D reason codes 1-7):

- An **admission** is an enrollment whose ``admitted_on`` (a site-local date) falls in the
  period. A **transfer in** has ``transferred_from_id``: it continues the episode of the
  enrollment it came from (discharged with reason 4 the same day). A **readmission** is an
  admission that is not a transfer, of a patient with an earlier enrollment (any program)
  discharged on or before this admission's day. Every other admission is **new**.
- A **discharge** is an enrollment whose ``discharged_on`` falls in the period, counted
  by its TEDS-D reason (1 completed ... 7 other; 4 transferred includes transfers to
  another program of the clinic).
- **Length of stay** of a discharged enrollment: ``discharged_on - admitted_on`` in days
  (0 for a discharge on the admission day); average and median per reason and overall.
  The median is the middle value (the mean of the two middle values for an even count),
  computed in SQL with ROW_NUMBER and COUNT windows, which both engines run.
- Scope: the chosen sites' programs (``Program.site_id``), the chosen program, patients
  not entered in error.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from clinic.patients.models import DischargeReason, Enrollment, Patient, Program
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
from clinic.reports.filters import ReportFilters, quarter_to_date
from clinic.reports.sql import date_param, day_number
from clinic.sites.models import Site

# Chart labels (the table has the full TEDS-D wording).
SHORT_REASONS = {
    1: "Completed",
    2: "Dropped out",
    3: "Terminated",
    4: "Transferred",
    5: "Incarcerated",
    6: "Death",
    7: "Other",
}


def in_scope(query: sa.Select, filters: ReportFilters, enrollment=Enrollment) -> sa.Select:
    """``query`` (which selects from ``enrollment``) restricted to the report's scope: the
    chosen sites' programs, the chosen program, and patients not entered in error. Joins
    ``Program`` and ``Patient``."""
    query = (
        query.join(Program, Program.id == enrollment.program_id)
        .join(Patient, Patient.id == enrollment.patient_id)
        .where(Program.site_id.in_(filters.site_ids), Patient.entered_in_error_at.is_(None))
    )
    if filters.program_id is not None:
        query = query.where(enrollment.program_id == filters.program_id)
    return query


def admission_kind(enrollment=Enrollment) -> sa.ColumnElement:
    """'transfer', 'readmission' or 'new' for an enrollment (see the module's rules)."""
    earlier = aliased(Enrollment)
    readmitted = sa.exists().where(
        earlier.patient_id == enrollment.patient_id,
        earlier.id != enrollment.id,
        earlier.discharged_on.is_not(None),
        earlier.discharged_on <= enrollment.admitted_on,
        earlier.admitted_on <= enrollment.admitted_on,
    )
    return sa.case(
        (enrollment.transferred_from_id.is_not(None), "transfer"),
        (readmitted, "readmission"),
        else_="new",
    )


def median_stays(filters: ReportFilters, los: sa.ColumnElement, where) -> dict:
    """Median length of stay per TEDS-D reason and overall (key None), from one statement:
    ROW_NUMBER/COUNT windows pick the middle row(s) of each ordered group."""
    base = in_scope(
        sa.select(
            Enrollment.discharge_reason.label("reason"),
            los.label("los"),
            sa.func.row_number()
            .over(partition_by=Enrollment.discharge_reason, order_by=los)
            .label("rn"),
            sa.func.count().over(partition_by=Enrollment.discharge_reason).label("n"),
            sa.func.row_number().over(order_by=los).label("rn_all"),
            sa.func.count().over().label("n_all"),
        ).select_from(Enrollment),
        filters,
    ).where(*where)
    ranked = base.subquery("ranked")
    by_reason = (
        sa.select(ranked.c.reason, sa.func.avg(1.0 * ranked.c.los))
        .where(ranked.c.rn.in_([(ranked.c.n + 1) // 2, (ranked.c.n + 2) // 2]))
        .group_by(ranked.c.reason)
    )
    overall = sa.select(sa.literal(None, sa.Integer), sa.func.avg(1.0 * ranked.c.los)).where(
        ranked.c.rn_all.in_([(ranked.c.n_all + 1) // 2, (ranked.c.n_all + 2) // 2])
    )
    rows = session.execute(sa.union_all(by_reason, overall)).all()
    return {reason: (None if value is None else round(float(value), 1)) for reason, value in rows}


def compute(filters: ReportFilters) -> ReportResult:
    """Admissions by program and kind, discharges by TEDS-D reason with length of stay,
    and a bar chart of discharges by reason. Three statements whatever the data size."""
    start, end = date_param(filters.date_from), date_param(filters.date_to)
    kind = admission_kind().label("kind")
    admitted = in_scope(
        sa.select(Enrollment.program_id, kind).select_from(Enrollment), filters
    ).where(Enrollment.admitted_on >= start, Enrollment.admitted_on <= end)
    admitted = admitted.subquery("admitted")
    admission_rows = session.execute(
        sa.select(Program.name, Site.code, admitted.c.kind, sa.func.count())
        .join(admitted, admitted.c.program_id == Program.id)
        .join(Site, Site.id == Program.site_id)
        .group_by(Program.id, Program.name, Site.code, admitted.c.kind)
        .order_by(Program.name, Site.code)
    ).all()
    programs: dict[tuple[str, str], dict] = {}
    for name, code, what, n in admission_rows:
        row = programs.setdefault(
            (name, code),
            {"program": name, "site": code, "new": 0, "readmission": 0, "transfer": 0},
        )
        row[what] = n
    for row in programs.values():
        row["total"] = row["new"] + row["readmission"] + row["transfer"]
    admission_total = {
        "program": "All programs",
        **{k: sum(r[k] for r in programs.values()) for k in ("new", "readmission", "transfer")},
    }
    admission_total["total"] = sum(r["total"] for r in programs.values())
    admissions = Table(
        "admissions",
        "Admissions by program",
        [
            Column("program", "Program"),
            Column("site", "Site"),
            Column("new", "New admissions", Kind.COUNT),
            Column("readmission", "Readmissions", Kind.COUNT),
            Column("transfer", "Transfers in", Kind.COUNT),
            Column("total", "All admissions", Kind.COUNT),
        ],
        list(programs.values()),
        empty="No admission in this period.",
        total=admission_total,
    )

    los = day_number(Enrollment.discharged_on) - day_number(Enrollment.admitted_on)
    discharged_where = (
        Enrollment.discharged_on.is_not(None),
        Enrollment.discharged_on >= start,
        Enrollment.discharged_on <= end,
    )
    discharge_rows = {
        reason: (n, average)
        for reason, n, average in session.execute(
            in_scope(
                sa.select(
                    Enrollment.discharge_reason, sa.func.count(), sa.func.avg(1.0 * los)
                ).select_from(Enrollment),
                filters,
            )
            .where(*discharged_where)
            .group_by(Enrollment.discharge_reason)
        ).all()
    }
    medians = median_stays(filters, los, discharged_where)
    discharged = sum(n for n, _ in discharge_rows.values())
    all_days = sum((average or 0) * n for n, average in discharge_rows.values())
    reason_rows = []
    for reason in DischargeReason:
        n, average = discharge_rows.get(reason.value, (0, None))
        reason_rows.append(
            {
                "code": reason.value,
                "reason": reason.label,
                "discharges": n,
                "all": discharged,
                "share": percent(n, discharged),
                "average": None if average is None else round(float(average), 1),
                "median": medians.get(reason.value),
            }
        )
    discharges = Table(
        "discharges",
        "Discharges by TEDS-D reason, with length of stay (days)",
        [
            Column("code", "TEDS-D code"),
            Column("reason", "Reason for discharge"),
            Column("discharges", "Discharges", Kind.COUNT),
            Column("all", "All discharges", Kind.COUNT),
            Column("share", "Share of discharges", Kind.PERCENT, of="all"),
            Column("average", "Average stay (days)", Kind.NUMBER, of="discharges"),
            Column("median", "Median stay (days)", Kind.NUMBER, of="discharges"),
        ],
        reason_rows if discharged else [],
        empty="No discharge in this period.",
        total={
            "code": "",
            "reason": "All reasons",
            "discharges": discharged,
            "all": discharged,
            "share": percent(discharged, discharged),
            "average": round(all_days / discharged, 1) if discharged else None,
            "median": medians.get(None),
        },
    )
    chart = Chart(
        ChartKind.BAR,
        f"Discharges by reason, {filters.date_from.isoformat()} to {filters.date_to.isoformat()}",
        [f"{r['code']} {SHORT_REASONS[r['code']]}" for r in reason_rows],
        [("Discharges", [r["discharges"] for r in reason_rows])],
        x_label="TEDS-D reason for discharge",
        y_label="Discharges",
    )
    notes = [
        "Admissions: enrollments admitted in the period (the admission date is the site's "
        "local date). A transfer in continues the episode of the program the patient came "
        "from; a readmission is a new admission of a patient discharged earlier (from any "
        "program); every other admission is new.",
        "Discharges: enrollments discharged in the period, by TEDS-D reason (1 completed, "
        "2 dropped out, 3 terminated by facility, 4 transferred, 5 incarcerated, 6 death, "
        "7 other). A transfer to another program of the clinic is a discharge with reason 4.",
        "Length of stay: days from the admission date to the discharge date of each "
        "discharged enrollment (0 for a discharge on the day of admission). The median is "
        "the middle stay (the mean of the two middle stays for an even count).",
        "Patients entered in error are not counted; only the chosen sites' programs are.",
    ]
    return ReportResult([admissions, discharges], chart=chart, notes=notes)


REPORT = register_report(
    Report(
        slug="admissions",
        title="Admissions and discharges",
        summary="Admissions (new, readmissions, transfers in) by program and discharges by "
        "TEDS-D reason with the average and median length of stay.",
        filters=frozenset({FilterName.SITE, FilterName.PROGRAM, FilterName.PERIOD}),
        compute=compute,
        default_period=quarter_to_date,
        order=20,
    )
)
