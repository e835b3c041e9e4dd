"""TEDS export: the Treatment Episode Data Set admission (TEDS-A) and discharge (TEDS-D)
records of a period, as CSV files with TEDS variable names for the fields the app holds,
and the list of TEDS fields it does not hold.

These are identifiable records for the state: the download is audited as an export by
the report views like every other. Coding (SAMHSA TEDS-A / TEDS-D codebooks):

- ``CASEID``: the enrollment's id, stable for the life of the record, so a discharge
  record matches its admission record. ``CLIENTID``: the patient's state registry id when
  recorded, else the clinic's MRN (the state links records of one client by it).
- ``ADMYR``/``ADMDATE``, ``DISYR``/``DISDATE``: year and date (``YYYYMMDD``) of admission /
  discharge (site-local dates). ``LOS``: days from admission to discharge (0 when
  discharged on the admission day; the public-use file groups 31 days and more).
- ``AGE``: age at admission in TEDS groups (1 = 12-14, 2 = 15-17, 3 = 18-20, 4 = 21-24,
  5 = 25-29, 6 = 30-34, 7 = 35-39, 8 = 40-44, 9 = 45-49, 10 = 50-54, 11 = 55-64,
  12 = 65 and older; -9 under 12).
- ``GENDER`` from the sex at birth: 1 male, 2 female, -9 otherwise (intersex, unknown).
- ``SUB1`` from the patient's primary substance: 2 alcohol, 3 cocaine/crack,
  4 marijuana/hashish, 5 heroin, 7 other opiates and synthetics (fentanyl, prescription
  opioids), 10 methamphetamine, 13 benzodiazepines, 19 other drugs.
- ``SERVICES`` (and ``SERVICES_D`` at discharge) from the program kind: 6 ambulatory
  intensive outpatient, 7 ambulatory non-intensive outpatient (OTP, office-based
  buprenorphine, naltrexone, outpatient).
- ``METHUSE`` (medication-assisted opioid therapy planned): 1 when the program is a MOUD
  program (OTP, office-based buprenorphine, XR naltrexone) or the enrollment has a
  medication order, else 2.
- ``REASON``: TEDS-D reason for discharge 1-7 as stored.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from clinic.medications.models import MedicationOrder
from clinic.patients.models import Enrollment, Patient, Program, ProgramKind, SexAtBirth, Substance
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
    register_report,
)
from clinic.reports.database import session
from clinic.reports.filters import ReportFilters
from clinic.reports.sql import date_param, day_number, month_key

SUB1 = {
    Substance.ALCOHOL: 2,
    Substance.COCAINE: 3,
    Substance.CANNABIS: 4,
    Substance.HEROIN: 5,
    Substance.FENTANYL: 7,
    Substance.PRESCRIPTION_OPIOIDS: 7,
    Substance.METHAMPHETAMINE: 10,
    Substance.BENZODIAZEPINES: 13,
    Substance.OTHER: 19,
}
GENDER = {SexAtBirth.MALE: 1, SexAtBirth.FEMALE: 2}
MISSING = -9
INTENSIVE_OUTPATIENT = 6
NON_INTENSIVE_OUTPATIENT = 7
MOUD_PROGRAMS = (
    ProgramKind.METHADONE_OTP,
    ProgramKind.OFFICE_BUPRENORPHINE,
    ProgramKind.XR_NALTREXONE,
)
# (lowest age, TEDS code): the code of the last group whose lowest age is <= the age.
AGE_GROUPS = (
    (12, 1),
    (15, 2),
    (18, 3),
    (21, 4),
    (25, 5),
    (30, 6),
    (35, 7),
    (40, 8),
    (45, 9),
    (50, 10),
    (55, 11),
    (65, 12),
)

ADMISSION_HEADER = [
    "CASEID",
    "CLIENTID",
    "ADMYR",
    "ADMDATE",
    "AGE",
    "GENDER",
    "SUB1",
    "SERVICES",
    "METHUSE",
]
DISCHARGE_HEADER = [
    "CASEID",
    "CLIENTID",
    "ADMYR",
    "ADMDATE",
    "DISYR",
    "DISDATE",
    "REASON",
    "LOS",
    "AGE",
    "GENDER",
    "SUB1",
    "SERVICES",
    "SERVICES_D",
    "METHUSE",
]

# The fields of the export: TEDS variable, meaning, where the app holds it.
HELD = (
    ("CASEID", "Record id", "The enrollment's id (one admission and its discharge)"),
    ("CLIENTID", "Client id", "The state registry id when recorded, else the MRN"),
    ("ADMYR / ADMDATE", "Year and date of admission", "Enrollment admission date"),
    ("AGE", "Age at admission (TEDS groups)", "Date of birth and admission date"),
    ("GENDER", "Sex (1 male, 2 female)", "Sex at birth"),
    ("SUB1", "Primary substance", "The patient's primary substance"),
    ("SERVICES / SERVICES_D", "Type of service at admission / discharge", "Program kind"),
    ("METHUSE", "Medication-assisted opioid therapy planned", "Program kind, MOUD orders"),
    ("DISYR / DISDATE", "Year and date of discharge", "Enrollment discharge date"),
    ("REASON", "Reason for discharge (TEDS-D 1-7)", "Enrollment discharge reason"),
    ("LOS", "Length of stay (days)", "Admission and discharge dates"),
)
# TEDS variables the app does not record (a state submission needs them from elsewhere).
NOT_HELD = (
    ("STFIPS / provider id", "State and the state-assigned facility number"),
    ("RACE", "Race"),
    ("ETHNIC", "Hispanic or Latino origin"),
    ("MARSTAT", "Marital status"),
    ("EDUC", "Education"),
    ("EMPLOY / EMPLOY_D", "Employment status at admission / discharge"),
    ("DETNLF", "Detail of not in labor force"),
    ("PREG", "Pregnant at admission"),
    ("VET", "Veteran status"),
    ("LIVARAG / LIVARAG_D", "Living arrangement at admission / discharge"),
    ("PRIMINC", "Source of income"),
    ("ARRESTS / ARRESTS_D", "Arrests in the past 30 days"),
    ("PSOURCE", "Referral source"),
    ("DETCRIM", "Detail of criminal justice referral"),
    ("NOPRIOR", "Previous treatment episodes (the app knows only this clinic's)"),
    ("DAYWAIT", "Days waiting to enter treatment"),
    ("ROUTE1", "Route of administration of the primary substance"),
    ("FREQ1 / FREQ1_D", "Frequency of use at admission / discharge"),
    ("FRSTUSE1", "Age at first use"),
    ("SUB2 / SUB3 and their route, frequency, age", "Secondary and tertiary substances"),
    ("IDU", "Current injection drug use"),
    ("DSMCRIT", "DSM diagnosis"),
    ("PSYPROB", "Co-occurring mental and substance use disorders"),
    ("HLTHINS", "Health insurance"),
    ("PRIMPAY", "Expected source of payment"),
    ("FREQ_ATND_SELF_HELP / _D", "Attendance at self-help groups"),
)


def last_full_quarter(today: dt.date) -> tuple[dt.date, dt.date]:
    """The last complete calendar quarter before ``today``'s (a state's reporting period)."""
    first_of_quarter = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    last = first_of_quarter - dt.timedelta(days=1)
    return dt.date(last.year, 3 * ((last.month - 1) // 3) + 1, 1), last


def age_group(age: int | None) -> int:
    """A TEDS age group code for an age in whole years (-9 for none or under 12)."""
    code = MISSING
    for lowest, group in AGE_GROUPS:
        if age is not None and age >= lowest:
            code = group
    return code


def _age_at_admission() -> sa.ColumnElement:
    """Whole years from the date of birth to the admission date, in SQL."""

    def part(name, column):
        return sa.cast(sa.extract(name, column), sa.Integer)

    birthday_to_come = sa.or_(
        part("month", Enrollment.admitted_on) < part("month", Patient.date_of_birth),
        sa.and_(
            part("month", Enrollment.admitted_on) == part("month", Patient.date_of_birth),
            part("day", Enrollment.admitted_on) < part("day", Patient.date_of_birth),
        ),
    )
    return (
        part("year", Enrollment.admitted_on)
        - part("year", Patient.date_of_birth)
        - sa.case((birthday_to_come, 1), else_=0)
    )


def _records(filters: ReportFilters, *, discharges: bool) -> list[sa.Row]:
    has_order = sa.exists().where(MedicationOrder.enrollment_id == Enrollment.id)
    query = in_scope(
        sa.select(
            Enrollment.id,
            Patient.id.label("patient_id"),
            Patient.site_id.label("patient_site_id"),
            sa.func.coalesce(Patient.state_registry_id, Patient.mrn).label("client"),
            Enrollment.admitted_on,
            Enrollment.discharged_on,
            Enrollment.discharge_reason,
            (day_number(Enrollment.discharged_on) - day_number(Enrollment.admitted_on)).label(
                "los"
            ),
            _age_at_admission().label("age"),
            Patient.sex_at_birth,
            Patient.primary_substance,
            Program.kind,
            sa.or_(Program.kind.in_(MOUD_PROGRAMS), has_order).label("moud"),
        ).select_from(Enrollment),
        filters,
    )
    day = Enrollment.discharged_on if discharges else Enrollment.admitted_on
    query = query.where(
        day.is_not(None),
        day >= date_param(filters.date_from),
        day <= date_param(filters.date_to),
    ).order_by(day, Enrollment.id)
    return list(session.execute(query).all())


def _common(row: sa.Row) -> dict:
    services = (
        INTENSIVE_OUTPATIENT
        if ProgramKind(row.kind) is ProgramKind.INTENSIVE_OUTPATIENT
        else NON_INTENSIVE_OUTPATIENT
    )
    return {
        "CASEID": row.id,
        "CLIENTID": row.client,
        "ADMYR": row.admitted_on.year,
        "ADMDATE": row.admitted_on.strftime("%Y%m%d"),
        "AGE": age_group(None if row.age is None else int(row.age)),
        "GENDER": GENDER.get(SexAtBirth(row.sex_at_birth), MISSING),
        "SUB1": SUB1.get(Substance(row.primary_substance), MISSING),
        "SERVICES": services,
        "SERVICES_D": services,
        "METHUSE": 1 if row.moud else 2,
    }


def compute(filters: ReportFilters) -> ReportResult:
    """The TEDS-A and TEDS-D files of the period (``files``), the record counts, the
    fields held and not held, and a chart of records by month. Three statements."""
    admitted = _records(filters, discharges=False)
    discharged = _records(filters, discharges=True)
    admission_rows = []
    for row in admitted:
        values = _common(row)
        admission_rows.append([values[name] for name in ADMISSION_HEADER])
    discharge_rows = []
    for row in discharged:
        values = _common(row)
        values.update(
            {
                "DISYR": row.discharged_on.year,
                "DISDATE": row.discharged_on.strftime("%Y%m%d"),
                "REASON": row.discharge_reason,
                "LOS": int(row.los),
            }
        )
        discharge_rows.append([values[name] for name in DISCHARGE_HEADER])

    records = Table(
        "records",
        "TEDS records in the period",
        [
            Column("records", "Record set"),
            Column("file", "CSV file"),
            Column("count", "Records", Kind.COUNT),
        ],
        [
            {
                "records": "Admissions (TEDS-A)",
                "file": "teds-admissions",
                "count": len(admission_rows),
            },
            {
                "records": "Discharges (TEDS-D)",
                "file": "teds-discharges",
                "count": len(discharge_rows),
            },
        ],
    )
    held = Table(
        "fields",
        "TEDS fields in the export",
        [
            Column("variable", "TEDS variable"),
            Column("meaning", "Meaning"),
            Column("source", "Taken from"),
        ],
        [{"variable": v, "meaning": m, "source": s} for v, m, s in HELD],
    )
    not_held = Table(
        "not-held",
        "TEDS fields the app does not hold",
        [Column("variable", "TEDS variable"), Column("meaning", "Meaning")],
        [{"variable": v, "meaning": m} for v, m in NOT_HELD],
    )

    months = _by_month(filters)
    categories = sorted(months)
    chart = Chart(
        ChartKind.BAR,
        f"TEDS records by month, {filters.date_from.isoformat()} to {filters.date_to.isoformat()}",
        categories,
        [
            ("Admissions (TEDS-A)", [months[m].get("admission", 0) for m in categories]),
            ("Discharges (TEDS-D)", [months[m].get("discharge", 0) for m in categories]),
        ],
        x_label="Month",
        y_label="Records",
    )
    notes = [
        "Admission records: every enrollment admitted in the period, including a transfer "
        "to another program (TEDS counts a change of service as a discharge and a new "
        "admission). Discharge records: every enrollment discharged in the period, with the "
        "admission fields repeated.",
        "CASEID is the enrollment's id, so a discharge record matches its admission record; "
        "CLIENTID is the patient's state registry id when recorded, else the clinic's MRN.",
        "Dates are YYYYMMDD (site-local). AGE is the TEDS age group at admission; GENDER comes "
        "from the sex at birth (-9 when neither male nor female); SUB1 from the primary "
        "substance recorded on the patient (fentanyl and prescription opioids are 7, other "
        "opiates and synthetics); SERVICES is 6 for intensive outpatient, else 7; METHUSE is "
        "1 for a MOUD program or an enrollment with a medication order; LOS is the days from "
        "admission to discharge (0 for the same day).",
        "These files are identifiable records for the state: each download is recorded in "
        "the audit trail. Small-cell suppression does not apply to record files.",
        "Patients entered in error are not exported; only the chosen sites' programs are.",
    ]
    return ReportResult(
        [records, held, not_held],
        chart=chart,
        notes=notes,
        files={
            "teds-admissions": (list(ADMISSION_HEADER), admission_rows),
            "teds-discharges": (list(DISCHARGE_HEADER), discharge_rows),
        },
        # Identifiable records: each exported patient gets an audit event of its own.
        named_patients={
            "teds-admissions": [(r.patient_id, r.patient_site_id) for r in admitted],
            "teds-discharges": [(r.patient_id, r.patient_site_id) for r in discharged],
        },
    )


def _by_month(filters: ReportFilters) -> dict[str, dict[str, int]]:
    """Admission and discharge records per 'YYYY-MM' of the period (one statement)."""
    start, end = date_param(filters.date_from), date_param(filters.date_to)
    admissions = in_scope(
        sa.select(
            sa.literal("admission").label("what"), month_key(Enrollment.admitted_on).label("month")
        ).select_from(Enrollment),
        filters,
    ).where(Enrollment.admitted_on >= start, Enrollment.admitted_on <= end)
    discharges = in_scope(
        sa.select(
            sa.literal("discharge").label("what"),
            month_key(Enrollment.discharged_on).label("month"),
        ).select_from(Enrollment),
        filters,
    ).where(
        Enrollment.discharged_on.is_not(None),
        Enrollment.discharged_on >= start,
        Enrollment.discharged_on <= end,
    )
    both = sa.union_all(admissions, discharges).subquery("records")
    months: dict[str, dict[str, int]] = {}
    for what, month, n in session.execute(
        sa.select(both.c.what, both.c.month, sa.func.count()).group_by(both.c.what, both.c.month)
    ).all():
        months.setdefault(month, {})[what] = n
    return months


REPORT = register_report(
    Report(
        slug="teds",
        title="TEDS export",
        summary="TEDS admission (TEDS-A) and discharge (TEDS-D) records of a period as CSV "
        "files for the state, and the TEDS fields the app does not hold.",
        filters=frozenset({FilterName.SITE, FilterName.PROGRAM, FilterName.PERIOD}),
        compute=compute,
        default_period=last_full_quarter,
        order=90,
    )
)
