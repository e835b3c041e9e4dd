"""Census on a date: the patients in treatment on a reference day, by site, program,
medication and level of care, and the annual national survey's reference-day counts of
patients on methadone and on buprenorphine (N-SSATS / N-SUMHSS style).

Definitions (DOMAIN.md "Measures" and "Programs and enrollment"; issue 14):

- **In treatment on day D** (site-local date): an enrollment with ``admitted_on <= D`` and
  (``discharged_on IS NULL`` or ``discharged_on >= D``): the admission day and the
  discharge day both count. On the day of a transfer between programs (the old
  enrollment discharged with TEDS-D reason 4 and the next one admitted that day, its
  ``transferred_from_id`` naming the old one) the patient is counted in the new program
  only.
- **Medication on day D**: the orders in force on D by the dosing screen's own rule
  (``clinic.medications.dose_day.orders_in_force``): started on or before D, ``end_on``
  (the last day in force, inclusive) empty or on/after D, and not replaced by a change
  starting on or before D. Only orders of the counted enrollments are read.
- Patients entered in error are never counted; only the chosen sites' programs are.
- With a medication chosen, only patients with an order of it in force count: the rows
  that could only read 0 ("No MOUD order", the survey row of the other substance) are
  left out.

Counts are distinct patients: a patient in two programs at once counts once in each
program's row and once in the totals, so rows may add up to more than the total.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from clinic.medications.dose_day import orders_in_force
from clinic.medications.models import Medication, MedicationOrder
from clinic.patients.models import (
    AsamEdition,
    DischargeReason,
    Enrollment,
    Patient,
    Program,
    ProgramKind,
)
from clinic.reports.core import (
    Chart,
    ChartKind,
    Column,
    FilterName,
    Kind,
    Report,
    ReportResult,
    Table,
    register_report,
)
from clinic.reports.database import session
from clinic.reports.filters import ReportFilters
from clinic.reports.sql import date_param
from clinic.sites.models import Site

NO_ORDER = "No MOUD order"
SURVEY_SUBSTANCES = (("methadone", "Methadone"), ("buprenorphine", "Buprenorphine (all products)"))


def _orders_in_force(filters: ReportFilters) -> sa.Subquery:
    """(order id, enrollment_id, medication) of the orders in force on ``filters.on``."""
    query = orders_in_force(filters.on, daily=None).order_by(None)
    return query.with_only_columns(
        MedicationOrder.id, MedicationOrder.enrollment_id, MedicationOrder.medication
    ).subquery("in_force")


def in_treatment(day: sa.ColumnElement, enrollment=Enrollment) -> sa.ColumnElement[bool]:
    """``enrollment`` in treatment on ``day`` (a site-local date expression): admitted on
    or before it, not discharged before it (the discharge day counts), and not the old
    enrollment of a transfer made that day (the patient counts in the new program)."""
    successor = aliased(Enrollment)
    transferred_today = sa.and_(
        enrollment.discharge_reason == DischargeReason.TRANSFERRED.value,
        enrollment.discharged_on == day,
        sa.exists().where(
            successor.transferred_from_id == enrollment.id, successor.admitted_on <= day
        ),
    )
    return sa.and_(
        enrollment.admitted_on <= day,
        sa.or_(enrollment.discharged_on.is_(None), enrollment.discharged_on >= day),
        ~transferred_today,
    )


def active_enrollments(filters: ReportFilters) -> sa.Subquery:
    """The enrollments in treatment on ``filters.on`` in the report's scope: one row per
    enrollment (enrollment_id, patient_id, program_id, site_id, asam_edition, asam_level).

    Scope: the chosen sites' programs, the chosen program, patients not entered in
    error, and with the medication filter only enrollments with an order in force of
    that medication group."""
    query = (
        sa.select(
            Enrollment.id.label("enrollment_id"),
            Enrollment.patient_id,
            Enrollment.program_id,
            Program.site_id,
            Enrollment.asam_edition,
            Enrollment.asam_level,
        )
        .join(Program, Program.id == Enrollment.program_id)
        .join(Patient, Patient.id == Enrollment.patient_id)
        .where(
            Program.site_id.in_(filters.site_ids),
            Patient.entered_in_error_at.is_(None),
            in_treatment(date_param(filters.on)),
        )
    )
    if filters.program_id is not None:
        query = query.where(Enrollment.program_id == filters.program_id)
    if filters.medication_values is not None:
        in_force = _orders_in_force(filters)
        query = query.where(
            sa.exists().where(
                in_force.c.enrollment_id == Enrollment.id,
                in_force.c.medication.in_(filters.medication_values),
            )
        )
    return query.subquery("active")


def _count(column) -> sa.ColumnElement:
    return sa.func.count(sa.distinct(column))


def compute(filters: ReportFilters) -> ReportResult:
    """The census on ``filters.on``: five tables (by site, program, medication, level of
    care; the survey's reference-day counts) and a bar chart by program (by medication
    when one program is chosen). Seven statements whatever the data size."""
    active = active_enrollments(filters)
    total = session.scalar(sa.select(_count(active.c.patient_id))) or 0

    site_rows = session.execute(
        sa.select(Site.name, Site.code, _count(active.c.patient_id))
        .join(active, active.c.site_id == Site.id)
        .group_by(Site.id, Site.name, Site.code)
        .order_by(Site.name, Site.code)
    ).all()
    by_site = Table(
        "by-site",
        "Patients in treatment by site",
        [Column("site", "Site"), Column("patients", "Patients", Kind.COUNT)],
        [{"site": f"{name} ({code})", "patients": n} for name, code, n in site_rows],
        empty="No patient was in treatment on this date.",
        total={"site": "All sites", "patients": total},
    )

    program_rows = session.execute(
        sa.select(Program.name, Program.kind, Site.code, _count(active.c.patient_id))
        .join(active, active.c.program_id == Program.id)
        .join(Site, Site.id == Program.site_id)
        .group_by(Program.id, Program.name, Program.kind, Site.code)
        .order_by(Program.name, Site.code)
    ).all()
    by_program = Table(
        "by-program",
        "Patients in treatment by program",
        [
            Column("program", "Program"),
            Column("site", "Site"),
            Column("kind", "Kind of program"),
            Column("patients", "Patients", Kind.COUNT),
        ],
        [
            {"program": name, "site": code, "kind": ProgramKind(kind).label, "patients": n}
            for name, kind, code, n in program_rows
        ],
        empty="No patient was in treatment on this date.",
        total={"program": "All programs", "patients": total},
    )

    in_force = _orders_in_force(filters)
    medication_of = (
        sa.select(active.c.patient_id, in_force.c.medication)
        .select_from(active)
        .outerjoin(in_force, in_force.c.enrollment_id == active.c.enrollment_id)
        .subquery("medication_of")
    )
    medication_rows = dict(
        session.execute(
            sa.select(medication_of.c.medication, _count(medication_of.c.patient_id)).group_by(
                medication_of.c.medication
            )
        ).all()
    )
    # A patient with no order in force on any counted enrollment: "No MOUD order".
    with_order = sa.select(medication_of.c.patient_id).where(
        medication_of.c.medication.is_not(None)
    )
    without_order = (
        session.scalar(
            sa.select(_count(active.c.patient_id)).where(active.c.patient_id.not_in(with_order))
        )
        or 0
    )
    medication_table_rows = [
        {"medication": m.label, "patients": medication_rows[m.value]}
        for m in Medication
        if medication_rows.get(m.value)
    ]
    # With a medication chosen every patient counted has an order of it: the rows that
    # could only read 0 ("No MOUD order", the survey's other substance) are left out.
    chosen = filters.medications
    if chosen is None:
        medication_table_rows.append({"medication": NO_ORDER, "patients": without_order})
    by_medication = Table(
        "by-medication",
        "Patients in treatment by medication order in force",
        [Column("medication", "Medication"), Column("patients", "Patients", Kind.COUNT)],
        medication_table_rows if total else [],
        empty="No patient was in treatment on this date.",
        total={"medication": "All patients", "patients": total},
    )

    level_rows = session.execute(
        sa.select(active.c.asam_edition, active.c.asam_level, _count(active.c.patient_id))
        .group_by(active.c.asam_edition, active.c.asam_level)
        .order_by(active.c.asam_edition, active.c.asam_level)
    ).all()
    by_level = Table(
        "by-level",
        "Patients in treatment by level of care (ASAM)",
        [
            Column("edition", "ASAM edition"),
            Column("level", "Level"),
            Column("patients", "Patients", Kind.COUNT),
        ],
        [
            {"edition": AsamEdition(edition).label, "level": level, "patients": n}
            for edition, level, n in level_rows
        ],
        empty="No patient was in treatment on this date.",
        total={"edition": "All levels", "patients": total},
    )

    # Distinct patients per substance (a patient on two buprenorphine products, in two
    # programs, is one buprenorphine patient): one statement.
    substance = sa.case(
        {m.value: m.substance for m in Medication}, value=medication_of.c.medication
    )
    substance_rows = dict(
        session.execute(
            sa.select(substance, _count(medication_of.c.patient_id))
            .where(medication_of.c.medication.is_not(None))
            .group_by(substance)
        ).all()
    )
    survey = Table(
        "survey",
        "Reference-day census for the national survey",
        [
            Column("substance", "Medication"),
            Column("patients", "Patients with an order in force", Kind.COUNT),
        ],
        [
            {
                "substance": label,
                "patients": substance_rows.get(substance, 0),
            }
            for substance, label in SURVEY_SUBSTANCES
            if chosen is None or any(m.substance == substance for m in chosen)
        ],
    )

    if filters.program_id is not None:
        chart = Chart(
            ChartKind.BAR,
            f"Patients in treatment on {filters.on.isoformat()} by medication",
            [r["medication"] for r in medication_table_rows] if total else [],
            [("Patients", [r["patients"] for r in medication_table_rows] if total else [])],
            x_label="Medication order in force",
            y_label="Patients",
        )
    else:
        # Two sites may name a program alike: the chart then names the site too.
        several_sites = len({r["site"] for r in by_program.rows}) > 1
        chart = Chart(
            ChartKind.BAR,
            f"Patients in treatment on {filters.on.isoformat()} by program",
            [
                f"{r['program']} ({r['site']})" if several_sites else r["program"]
                for r in by_program.rows
            ],
            [("Patients", [r["patients"] for r in by_program.rows])],
            x_label="Program",
            y_label="Patients",
        )

    notes = [
        f"In treatment on {filters.on.isoformat()}: admitted on or before that day and not "
        "discharged before it (the admission day and the discharge day both count). On the "
        "day of a transfer between programs the patient counts in the new program only.",
        "Medication: the order in force that day, by the dosing screen's rule: started on or "
        "before the day, not ended before it (the end date is the last day in force) and not "
        f"replaced by a change that had started. \u201c{NO_ORDER}\u201d: in treatment with no "
        "order in force that day.",
        "Counts are patients, each counted once per row: a patient in two programs (or on two "
        "medications) at once appears in both rows and once in the total.",
        "The reference-day census counts patients with a methadone, or a buprenorphine (any "
        "product: sublingual, with naloxone, extended-release injection), order in force on "
        "the reference date, as the annual national survey (N-SUMHSS, formerly N-SSATS) asks.",
        "Patients entered in error are not counted; only the chosen sites' programs are.",
    ]
    if filters.medication_values is not None:
        notes.append(
            "With a medication chosen, only patients with an order of that medication in force "
            f"on the day are counted; the rows that could only read 0 (\u201c{NO_ORDER}\u201d, "
            "the national survey's row of the other medication) are left out."
        )
    return ReportResult(
        [by_program, by_medication, by_level, by_site, survey], chart=chart, notes=notes
    )


REPORT = register_report(
    Report(
        slug="census",
        title="Census",
        summary="Patients in treatment on a date by site, program, medication and level of "
        "care, with the national survey's reference-day counts of methadone and "
        "buprenorphine patients.",
        filters=frozenset(
            {FilterName.SITE, FilterName.PROGRAM, FilterName.MEDICATION, FilterName.ON}
        ),
        compute=compute,
        default_period=None,
        order=10,
    )
)
