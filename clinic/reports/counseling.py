"""Counseling: sessions held, attendance and the no-show rate by clinician and by modality,
and the worklist of patients with no attended session in the last 30 days (issue 14,
report 5; DOMAIN.md "Therapy sessions" and "Measures": counseling attendance and no-show
rate; SCENARIOS.md Friday: the no-show report printed for the staff meeting).

Definitions:

- **A session held**: a therapy session recorded (status ``recorded``), not entered in
  error, at a site in scope, that started within the period — the period's days are the
  session site's own days (``starts_at`` is a UTC instant; each site's local midnights
  bound it), with at least one attendee not cancelled by the clinic (a session whose
  every attendee the clinic cancelled was not held). A session counts once whatever its
  number of attendees; attendance counts per attendee (patients: the columns say so).
  Attendees who are patients entered in error are left out, and a session
  left with none of its attendees is not counted. With a program chosen, only the
  attendees who attended under an enrollment of that program count (and the sessions
  that have such an attendee).
- **Attendance**: attended, late and left early are *attended*; no-show; cancelled by the
  patient; cancelled by the clinic.
- **Expected** = attended + no-shows + cancelled by the patient: the appointments the
  patient was expected to keep. A cancellation by the clinic is the clinic's doing, so it
  is in neither rate. **Attendance rate** = attended / expected; **no-show rate** =
  no-shows / expected (percentages).
- **No attended session in 30 days** (the worklist), as of the period's last day (or
  today, when the period ends later): the patients with an enrollment in scope that is
  open at the end of that day (admitted on or before it, not discharged by then) whose
  last attended session (at a site in scope, on or before that day) is more than 30 days
  before it — 31 days or more — or who never attended one. Day counts use the site's
  local dates. The worklist names patients: it is for the clinic's own staff meeting (an
  administrator's report, its CSV recorded as an export like every report).

Statements: the sites' time zones, one per table: four, whatever the number of sessions
or patients.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from clinic.accounts.models import User
from clinic.patients.models import Enrollment, Patient, Program
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
from clinic.reports.filters import ReportFilters, last_thirty_days
from clinic.reports.labels import with_site
from clinic.reports.zones import in_local_days, local_midnight, per_site_instant, site_zones
from clinic.sites.models import Site
from clinic.therapy.models import (
    PRESENT,
    Attendance,
    Modality,
    SessionAttendee,
    SessionStatus,
    TherapySession,
)

NO_ATTENDANCE_DAYS = 30
PRESENT_VALUES = tuple(a.value for a in PRESENT)


# --- the tables ----------------------------------------------------------------------------


def _as_of(filters: ReportFilters) -> dt.date:
    return min(filters.date_to, filters.today)


def _attendance_counts() -> list[sa.ColumnElement]:
    def count_of(values: tuple[str, ...], name: str) -> sa.ColumnElement:
        return sa.func.coalesce(
            sa.func.sum(sa.case((SessionAttendee.attendance.in_(values), 1), else_=0)), 0
        ).label(name)

    return [
        # Held: a session with at least one attendee the clinic did not cancel.
        sa.func.count(
            sa.distinct(
                sa.case(
                    (
                        SessionAttendee.attendance != Attendance.CANCELLED_BY_CLINIC.value,
                        TherapySession.id,
                    )
                )
            )
        ).label("sessions"),
        count_of(PRESENT_VALUES, "attended"),
        count_of((Attendance.NO_SHOW.value,), "no_show"),
        count_of((Attendance.CANCELLED_BY_PATIENT.value,), "cancelled_patient"),
        count_of((Attendance.CANCELLED_BY_CLINIC.value,), "cancelled_clinic"),
    ]


def _attendee_rows(
    query: sa.Select, filters: ReportFilters, zones: Mapping[int, ZoneInfo]
) -> sa.Select:
    """The attendee rows counted (see the module doc), joined to their session."""
    query = (
        query.select_from(SessionAttendee)
        .join(TherapySession, TherapySession.id == SessionAttendee.session_id)
        .join(Patient, Patient.id == SessionAttendee.patient_id)
        .where(
            TherapySession.status == SessionStatus.RECORDED,
            TherapySession.entered_in_error_at.is_(None),
            TherapySession.site_id.in_(filters.site_ids),
            in_local_days(
                TherapySession.site_id,
                TherapySession.starts_at,
                zones,
                filters.date_from,
                filters.date_to,
            ),
            Patient.entered_in_error_at.is_(None),
        )
    )
    if filters.program_id is not None:
        query = query.join(Enrollment, Enrollment.id == SessionAttendee.enrollment_id).where(
            Enrollment.program_id == filters.program_id
        )
    return query


def _rates(row: dict) -> dict:
    expected = row["attended"] + row["no_show"] + row["cancelled_patient"]
    row["expected"] = expected
    row["attendance_rate"] = percent(row["attended"], expected)
    row["no_show_rate"] = percent(row["no_show"], expected)
    return row


COUNTED = ("sessions", "attended", "no_show", "cancelled_patient", "cancelled_clinic")


def _columns(first: Column) -> list[Column]:
    return [
        first,
        Column("sessions", "Sessions held", Kind.COUNT),
        Column("attended", "Patient attendances", Kind.COUNT),
        Column("no_show", "No-shows (patients)", Kind.COUNT),
        Column("cancelled_patient", "Cancelled by the patient (patients)", Kind.COUNT),
        Column("cancelled_clinic", "Cancelled by the clinic (patients)", Kind.COUNT),
        Column("expected", "Expected to attend (patients)", Kind.COUNT),
        Column("attendance_rate", "Attendance rate", Kind.PERCENT, of="expected"),
        Column("no_show_rate", "No-show rate", Kind.PERCENT, of="expected"),
    ]


def _total(rows: list[dict], key: str) -> dict | None:
    if not rows:
        return None
    total = {key: "All"} | {name: sum(r[name] for r in rows) for name in COUNTED}
    return _rates(total)


def _by_clinician(filters: ReportFilters, zones: Mapping[int, ZoneInfo]) -> list[dict]:
    """One row per clinician (all of their sessions at the sites counted). Two clinicians
    of the same name are told apart by their user names: "Name (username)"."""
    query = _attendee_rows(
        sa.select(
            User.full_name, User.username, TherapySession.clinician_id, *_attendance_counts()
        ),
        filters,
        zones,
    )
    query = (
        query.join(User, User.id == TherapySession.clinician_id)
        .group_by(TherapySession.clinician_id, User.full_name, User.username)
        .order_by(User.full_name, User.username, TherapySession.clinician_id)
    )
    found = session.execute(query).all()
    names = Counter(row.full_name for row in found)
    return [
        _rates(
            {
                "clinician": row.full_name
                if names[row.full_name] == 1
                else f"{row.full_name} ({row.username})"
            }
            | {name: int(getattr(row, name)) for name in COUNTED}
        )
        for row in found
    ]


def _by_modality(filters: ReportFilters, zones: Mapping[int, ZoneInfo]) -> list[dict]:
    query = _attendee_rows(
        sa.select(TherapySession.modality, *_attendance_counts()), filters, zones
    ).group_by(TherapySession.modality)
    rows = [
        _rates(
            {"modality": Modality(row.modality).label}
            | {name: int(getattr(row, name)) for name in COUNTED}
        )
        for row in session.execute(query)
    ]
    return sorted(rows, key=lambda r: (-r["sessions"], r["modality"]))


def _no_recent_attendance(filters: ReportFilters, zones: Mapping[int, ZoneInfo]) -> list[dict]:
    """The worklist (module doc): one row per open enrollment in scope, by primary
    counselor, then longest without an attended session first."""
    as_of = _as_of(filters)
    end_of_day = {s: local_midnight(as_of + dt.timedelta(days=1), z) for s, z in zones.items()}
    since = {
        s: local_midnight(as_of - dt.timedelta(days=NO_ATTENDANCE_DAYS), z)
        for s, z in zones.items()
    }
    last = (
        sa.select(
            SessionAttendee.patient_id.label("patient_id"),
            sa.func.max(TherapySession.starts_at).label("last_at"),
        )
        .join(TherapySession, TherapySession.id == SessionAttendee.session_id)
        .where(
            SessionAttendee.attendance.in_(PRESENT_VALUES),
            TherapySession.status == SessionStatus.RECORDED,
            TherapySession.entered_in_error_at.is_(None),
            TherapySession.site_id.in_(filters.site_ids),
            TherapySession.starts_at < per_site_instant(TherapySession.site_id, end_of_day),
        )
        .group_by(SessionAttendee.patient_id)
        .subquery("last_attended")
    )
    counselor = aliased(User)
    query = (
        sa.select(
            Patient.id.label("patient_id"),
            Patient.site_id.label("patient_site_id"),
            Patient.first_name,
            Patient.last_name,
            Patient.preferred_name,
            Patient.mrn,
            Program.name.label("program"),
            Program.site_id,
            Site.code.label("site_code"),
            counselor.full_name.label("counselor"),
            Enrollment.admitted_on,
            last.c.last_at,
        )
        .select_from(Enrollment)
        .join(Program, Program.id == Enrollment.program_id)
        .join(Site, Site.id == Program.site_id)
        .join(Patient, Patient.id == Enrollment.patient_id)
        .outerjoin(counselor, counselor.id == Enrollment.primary_counselor_id)
        .outerjoin(last, last.c.patient_id == Enrollment.patient_id)
        .where(
            Program.site_id.in_(filters.site_ids),
            Patient.entered_in_error_at.is_(None),
            Enrollment.admitted_on <= as_of,
            sa.or_(Enrollment.discharged_on.is_(None), Enrollment.discharged_on > as_of),
            sa.or_(
                last.c.last_at.is_(None),
                last.c.last_at < per_site_instant(Program.site_id, since),
            ),
        )
        .order_by(
            sa.case((counselor.full_name.is_(None), 1), else_=0),
            counselor.full_name,
            sa.case((last.c.last_at.is_(None), 0), else_=1),
            last.c.last_at,
            Patient.last_name,
            Patient.first_name,
            Enrollment.id,
        )
    )
    if filters.program_id is not None:
        query = query.where(Enrollment.program_id == filters.program_id)
    rows = []
    for row in session.execute(query):
        zone = zones.get(row.site_id, ZoneInfo("UTC"))
        last_on = row.last_at.astimezone(zone).date() if row.last_at is not None else None
        preferred = f" ({row.preferred_name})" if row.preferred_name else ""
        rows.append(
            {
                "patient": f"{row.last_name}, {row.first_name}{preferred}",
                "mrn": row.mrn,
                "program": with_site(row.program, row.site_code, filters),
                "counselor": row.counselor or "No primary counselor",
                "admitted_on": row.admitted_on,
                "last_attended": last_on if last_on is not None else "Never",
                "days_since": (as_of - last_on).days if last_on is not None else "—",
                "_patient": (row.patient_id, row.patient_site_id),
            }
        )
    return rows


def compute(filters: ReportFilters) -> ReportResult:
    """Sessions, attendance and no-show rate by clinician and by modality; the patients
    with no attended session in 30 days. Counts are sessions and attendee records;
    rates are percentages (0-100); dates are site-local."""
    zones = site_zones(filters.site_ids)
    by_clinician = _by_clinician(filters, zones)
    by_modality = _by_modality(filters, zones)
    worklist = _no_recent_attendance(filters, zones)
    as_of = _as_of(filters)
    tables = [
        Table(
            "by_clinician",
            "Sessions and attendance by clinician",
            _columns(Column("clinician", "Clinician")),
            by_clinician,
            empty="No recorded sessions in this period.",
            total=_total(by_clinician, "clinician"),
        ),
        Table(
            "by_modality",
            "Sessions and attendance by modality",
            _columns(Column("modality", "Modality")),
            by_modality,
            empty="No recorded sessions in this period.",
            total=_total(by_modality, "modality"),
        ),
        Table(
            "no_recent_session",
            f"Patients with no attended session in the {NO_ATTENDANCE_DAYS} days to "
            f"{as_of.isoformat()}",
            [
                Column("patient", "Patient"),
                Column("mrn", "MRN"),
                Column("program", "Program"),
                Column("counselor", "Primary counselor"),
                Column("admitted_on", "Admitted", Kind.DATE),
                Column("last_attended", "Last attended session", Kind.DATE),
                Column("days_since", "Days since"),
            ],
            worklist,
            empty=f"Every patient in treatment attended a session in the last "
            f"{NO_ATTENDANCE_DAYS} days.",
        ),
    ]
    chart = Chart(
        ChartKind.BAR,
        "No-show rate by clinician",
        [r["clinician"] for r in by_clinician],
        [("No-show rate", [r["no_show_rate"] for r in by_clinician])],
        x_label="Clinician",
        y_label="No-show rate (%)",
        percent=True,
    )
    notes = [
        "Sessions held: recorded sessions, not entered in error, that started in the period "
        "(the site's local days), with at least one attendee the clinic did not cancel (a "
        "session whose every attendee was cancelled by the clinic was not held).",
        "The attendance columns count patients, not sessions: a group or family session "
        "counts once in Sessions held and once per patient in Patient attendances, No-shows "
        "and cancellations — so Patient attendances may exceed Sessions held.",
        "Patient attendances include late arrivals and patients who left early.",
        "Expected to attend = attended + no-shows + cancellations by the patient. "
        "Cancellations by the clinic are shown but are in neither rate.",
        "Attendance rate = attended ÷ expected; no-show rate = no-shows ÷ expected.",
        "With a program chosen, only attendees seen under an enrollment in that program count.",
        "With more than one site counted, the worklist's programs are shown with their "
        "site's code (\u201cName \u2014 SITECODE\u201d): two sites may name a program alike. "
        "Two clinicians of the same name are shown with their user names.",
        f"The worklist lists patients with an open enrollment at the end of "
        f"{as_of.isoformat()} whose last attended session was more than "
        f"{NO_ATTENDANCE_DAYS} days before that day (or who never attended one), by primary "
        "counselor. Newly admitted patients with no session yet show as “Never”.",
        "Patients entered in error are never counted.",
    ]
    # The worklist names its patients: each is audited when it is shown or exported.
    named = [row.pop("_patient") for row in worklist]
    return ReportResult(tables, chart, notes, named_patients={"no_recent_session": named})


REPORT = register_report(
    Report(
        slug="counseling",
        title="Counseling attendance and no-shows",
        summary="Sessions held, attendance and no-show rate by clinician and modality; "
        "patients with no attended session in 30 days.",
        filters=frozenset({FilterName.SITE, FilterName.PROGRAM, FilterName.PERIOD}),
        compute=compute,
        default_period=last_thirty_days,
        order=50,
    )
)
