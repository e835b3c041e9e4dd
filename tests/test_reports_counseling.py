"""The counseling report (clinic/reports/counseling.py): sessions held, attendance and the
no-show rate by clinician and by modality, and the worklist of patients with no attended
session in 30 days — on a hand-built clinic with known answers (a group of three counts
once as a session and three times for attendance, a no-show against a cancellation, a
session at 23:30 on the period's last day, a session and a patient entered in error, a
second site, the program filter, the 29 / 30 / 31-day edge), and its pages."""

from __future__ import annotations

import csv
import datetime as dt
import io
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.extensions import db
from clinic.patients.models import Enrollment, Patient
from clinic.reports import counseling
from clinic.reports.core import SMALL_CELL_TEXT
from clinic.reports.filters import REVERSED_MESSAGE, ReportFilters
from clinic.therapy.models import SessionAttendee, TherapySession
from tests.statements import statement_count

D = dt.date
CHICAGO = ZoneInfo("America/Chicago")
MARCH = (D(2026, 3, 1), D(2026, 3, 31))
NOT_OTP = {
    "take_home_cap_days_0_14": None,
    "take_home_cap_days_15_30": None,
    "take_home_cap_days_31_plus": None,
}
PERIOD = "date_from=2026-03-01&date_to=2026-03-31"


ADMITTED = D(2026, 1, 5)


def enroll(patient, program, admitted=ADMITTED, discharged=None, *, counselor=None):
    enrollment = Enrollment(
        patient_id=patient,
        program_id=program,
        admitted_on=admitted,
        asam_edition="3",
        asam_level="OTP",
        discharged_on=discharged,
        discharge_reason=1 if discharged else None,
        primary_counselor_id=counselor,
    )
    db.session.add(enrollment)
    db.session.flush()
    return enrollment.id


def session(
    clinician,
    site,
    day,
    attendees,
    *,
    hour=10,
    minute=0,
    kind="individual",
    modality="cbt",
    recorded=True,
    in_error=False,
):
    """A session at ``day`` ``hour``:``minute`` Chicago time; ``attendees``: (patient,
    enrollment, attendance or None)."""
    starts = dt.datetime.combine(day, dt.time(hour, minute), CHICAGO).astimezone(dt.UTC)
    row = TherapySession(
        clinician_id=clinician,
        site_id=site,
        starts_at=starts,
        duration_minutes=60,
        kind=kind,
        modality=modality,
        setting="in_person",
        group_name="Thursday group" if kind == "group" else None,
        status="recorded" if recorded else "planned",
        recorded_at=starts + dt.timedelta(hours=1) if recorded else None,
        recorded_by_id=clinician if recorded else None,
        created_by_id=clinician,
        entered_in_error_at=starts + dt.timedelta(hours=2) if in_error else None,
        entered_in_error_reason="wrong patient" if in_error else None,
        entered_in_error_by_id=clinician if in_error else None,
    )
    db.session.add(row)
    db.session.flush()
    for position, (patient, enrollment, attendance) in enumerate(attendees, start=1):
        present = attendance in ("attended", "late", "left_early")
        db.session.add(
            SessionAttendee(
                session_id=row.id,
                patient_id=patient,
                enrollment_id=enrollment,
                position=position,
                attendance=attendance,
                minutes_attended=(45 if present else 0) if attendance else None,
            )
        )
    db.session.flush()
    return row.id


def filters(site_ids, period=MARCH, **kwargs) -> ReportFilters:
    values = {
        "site_ids": tuple(site_ids),
        "program_id": None,
        "medications": None,
        "date_from": period[0],
        "date_to": period[1],
        "on": period[1],
        "today": D(2026, 4, 15),
        "single_site": len(site_ids) == 1,
    }
    values.update(kwargs)
    return ReportFilters(**values)


def table(result, key):
    return next(t for t in result.tables if t.key == key)


def counts(row):
    return (
        row["sessions"],
        row["attended"],
        row["no_show"],
        row["cancelled_patient"],
        row["cancelled_clinic"],
        row["expected"],
        row["attendance_rate"],
        row["no_show_rate"],
    )


@pytest.fixture
def clinic(app, site, make_site, make_program, make_patient, make_user):
    """MAIN (Chicago) with Dan and Cora; in March 2026 at MAIN:

    1. Dan, CBT, 03-02: Ana attended.
    2. Dan, relapse-prevention group, 03-05: Ana attended, Ben late, Cleo no-show.
    3. Dan, CBT, 03-10: Ben cancelled.
    4. Cora, motivational interviewing, 03-12: Dmitri (intensive outpatient) no-show.
    5. Cora, motivational interviewing, 03-13: Cleo, cancelled by the clinic.
    6. Dan, CBT, 03-15: Erin attended — Erin is entered in error.
    7. Dan, CBT, 03-16: Ana attended — the session is entered in error.
    8. Dan, CBT, 03-17: Ben, planned, never recorded.
    9. Dan, CBT, 02-28 at 23:30 (03-01 in UTC): Ana attended — February at the site.
    10. Dan, CBT, 03-31 at 23:30 (04-01 in UTC): Ben left early — March at the site.
    At EAST: Olga attended a session on 03-18."""
    east = make_site("EAST")
    otp = make_program("Methadone maintenance")
    iop = make_program("Intensive outpatient", "intensive_outpatient", **NOT_OTP)
    east_otp = make_program("East methadone", site_id=east)
    dan = make_user("clinician", full_name="Dan Counselor")
    cora = make_user("clinician", full_name="Cora Clinician")
    olaf = make_user("clinician", full_name="Olaf East", site_ids=[east])
    names = ("Ana", "Ben", "Cleo", "Dmitri", "Erin")
    people = {n: make_patient(n, "Session") for n in names}
    people["Olga"] = make_patient("Olga", "East", site_id=east)
    with app.app_context():
        e = {
            "Ana": enroll(people["Ana"], otp, counselor=dan),
            "Ben": enroll(people["Ben"], otp, counselor=dan),
            "Cleo": enroll(people["Cleo"], otp, counselor=dan),
            "Dmitri": enroll(people["Dmitri"], iop, counselor=cora),
            "Erin": enroll(people["Erin"], otp, counselor=dan),
            "Olga": enroll(people["Olga"], east_otp),
        }

        def who(name, attendance):
            return (people[name], e[name], attendance)

        session(dan, site, D(2026, 3, 2), [who("Ana", "attended")])
        session(
            dan,
            site,
            D(2026, 3, 5),
            [who("Ana", "attended"), who("Ben", "late"), who("Cleo", "no_show")],
            kind="group",
            modality="relapse_prevention",
        )
        session(dan, site, D(2026, 3, 10), [who("Ben", "cancelled_by_patient")])
        session(
            cora,
            site,
            D(2026, 3, 12),
            [who("Dmitri", "no_show")],
            modality="motivational_interviewing",
        )
        session(
            cora,
            site,
            D(2026, 3, 13),
            [who("Cleo", "cancelled_by_clinic")],
            modality="motivational_interviewing",
        )
        session(dan, site, D(2026, 3, 15), [who("Erin", "attended")])
        session(dan, site, D(2026, 3, 16), [who("Ana", "attended")], in_error=True)
        session(dan, site, D(2026, 3, 17), [who("Ben", None)], recorded=False)
        session(dan, site, D(2026, 2, 28), [who("Ana", "attended")], hour=23, minute=30)
        session(dan, site, D(2026, 3, 31), [who("Ben", "left_early")], hour=23, minute=30)
        session(olaf, east, D(2026, 3, 18), [who("Olga", "attended")])
        erin = db.session.get(Patient, people["Erin"])
        erin.entered_in_error_at = dt.datetime(2026, 3, 20, tzinfo=dt.UTC)
        erin.entered_in_error_reason = "registered twice"
        db.session.commit()
    return {
        "main": site,
        "east": east,
        "otp": otp,
        "iop": iop,
        "dan": dan,
        "cora": cora,
        "people": people,
        "enrollments": e,
    }


def test_sessions_and_attendance_by_clinician(app, clinic):
    with app.app_context():
        result = counseling.compute(filters([clinic["main"]]))
    rows = {r["clinician"]: counts(r) for r in table(result, "by_clinician").rows}
    # Dan: sessions 1, 2 (the group of three counts once), 3 and 10 (23:30 on 03-31);
    # attended: Ana twice, Ben late, Ben left early; Cleo's no-show; Ben's cancellation.
    # Cora: session 4 only — session 5, whose only attendee the clinic cancelled, was not
    # held (it used to count as held: a session is held when someone was expected at it).
    assert rows == {
        "Cora Clinician": (1, 0, 1, 0, 1, 1, 0.0, 100.0),
        "Dan Counselor": (4, 4, 1, 1, 0, 6, 66.7, 16.7),
    }
    assert [r["clinician"] for r in table(result, "by_clinician").rows] == [
        "Cora Clinician",
        "Dan Counselor",
    ]
    assert counts(table(result, "by_clinician").total) == (5, 4, 2, 1, 1, 7, 57.1, 28.6)
    assert result.chart.categories == ["Cora Clinician", "Dan Counselor"]
    assert result.chart.series == [("No-show rate", [100.0, 16.7])]
    assert result.chart.percent


def test_sessions_and_attendance_by_modality(app, clinic):
    with app.app_context():
        result = counseling.compute(filters([clinic["main"]]))
    rows = [(r["modality"], *counts(r)) for r in table(result, "by_modality").rows]
    assert rows == [
        ("Cognitive behavioral therapy", 3, 2, 0, 1, 0, 3, 66.7, 0.0),
        ("Motivational interviewing", 1, 0, 1, 0, 1, 1, 0.0, 100.0),
        ("Relapse prevention", 1, 2, 1, 0, 0, 3, 66.7, 33.3),
    ]
    assert counts(table(result, "by_modality").total) == (5, 4, 2, 1, 1, 7, 57.1, 28.6)


def test_a_no_show_is_not_a_cancellation(app, clinic):
    """Cleo: a no-show in the group and a clinic cancellation: only the no-show is in the
    rate; the clinic's cancellation is in neither rate's denominator, and a session whose
    every attendee the clinic cancelled was not held."""
    with app.app_context():
        result = counseling.compute(
            filters([clinic["main"]], period=(D(2026, 3, 13), D(2026, 3, 13)))
        )
    (cora,) = table(result, "by_clinician").rows
    assert counts(cora) == (0, 0, 0, 0, 1, 0, None, None)


def test_the_program_filter_counts_attendees_of_that_program(app, clinic):
    with app.app_context():
        iop = counseling.compute(filters([clinic["main"]], program_id=clinic["iop"]))
        otp = counseling.compute(filters([clinic["main"]], program_id=clinic["otp"]))
    assert [(r["clinician"], *counts(r)) for r in table(iop, "by_clinician").rows] == [
        ("Cora Clinician", 1, 0, 1, 0, 0, 1, 0.0, 100.0)
    ]
    assert {r["clinician"]: counts(r) for r in table(otp, "by_clinician").rows} == {
        "Cora Clinician": (0, 0, 0, 0, 1, 0, None, None),
        "Dan Counselor": (4, 4, 1, 1, 0, 6, 66.7, 16.7),
    }
    assert [r["patient"] for r in table(iop, "no_recent_session").rows] == ["Session, Dmitri"]


def test_another_site_counts_only_when_chosen(app, clinic):
    with app.app_context():
        east = counseling.compute(filters([clinic["east"]]))
        both = counseling.compute(filters([clinic["main"], clinic["east"]]))
    assert [
        (r["clinician"], r["sessions"], r["attended"]) for r in table(east, "by_clinician").rows
    ] == [("Olaf East", 1, 1)]
    assert table(both, "by_clinician").total["sessions"] == 6
    # Two sites counted: the worklist's programs carry their site's code (two sites may
    # name a program alike).
    assert {r["program"] for r in table(both, "no_recent_session").rows} == {
        "Methadone maintenance — MAIN",
        "Intensive outpatient — MAIN",
    }
    assert table(east, "no_recent_session").rows == []


def test_two_clinicians_of_the_same_name_are_told_apart(app, clinic, make_user):
    """A second "Dan Counselor" (at EAST) gets a row of his own, both rows naming the
    user; a clinician with a name of their own keeps the name alone."""
    other = make_user("clinician", full_name="Dan Counselor", site_ids=[clinic["east"]])
    with app.app_context():
        olga = clinic["people"]["Olga"]
        enrollment = db.session.scalar(
            sa.select(Enrollment.id).where(Enrollment.patient_id == olga)
        )
        session(other, clinic["east"], D(2026, 3, 19), [(olga, enrollment, "attended")])
        db.session.commit()
        both = counseling.compute(filters([clinic["main"], clinic["east"]]))
    labels = [r["clinician"] for r in table(both, "by_clinician").rows]
    dans = [label for label in labels if label.startswith("Dan Counselor (")]
    assert len(dans) == 2 and len(set(dans)) == 2
    assert "Cora Clinician" in labels and "Olaf East" in labels


def test_the_worklist_of_patients_without_an_attended_session(app, clinic):
    with app.app_context():
        result = counseling.compute(filters([clinic["main"]]))
    worklist = table(result, "no_recent_session")
    # Ana attended on 03-05, Ben on 03-31 (23:30): not listed. Erin is entered in error,
    # Olga is at EAST. Cleo and Dmitri never attended; by counselor (Cora's first).
    assert [
        (r["patient"], r["program"], r["counselor"], r["last_attended"], r["days_since"])
        for r in worklist.rows
    ] == [
        ("Session, Dmitri", "Intensive outpatient", "Cora Clinician", "Never", "—"),
        ("Session, Cleo", "Methadone maintenance", "Dan Counselor", "Never", "—"),
    ]
    # The worklist names them: showing or exporting it audits each (one per row).
    named = result.named_patients["no_recent_session"]
    assert len(named) == 2 and all(site == clinic["main"] for _, site in named)
    with app.app_context():
        mrn = db.session.get(Patient, clinic["people"]["Cleo"]).mrn
    assert worklist.rows[1]["mrn"] == mrn
    assert "2026-03-31" in worklist.title


@pytest.mark.parametrize(
    ("last_attended", "listed"),
    [(D(2026, 3, 2), False), (D(2026, 3, 1), False), (D(2026, 2, 28), True)],
    ids=["29-days-ago", "30-days-ago", "31-days-ago"],
)
def test_the_thirty_day_edge(app, clinic, make_patient, last_attended, listed):
    """As of 03-31: a last attended session 29 or 30 days before is recent enough; 31
    days before lists the patient, with the date and the days since."""
    fay = make_patient("Fay", "Edge")
    with app.app_context():
        enrollment = enroll(fay, clinic["otp"])
        session(
            clinic["dan"], clinic["main"], last_attended, [(fay, enrollment, "attended")], hour=18
        )
        # A later no-show does not count as attending.
        session(clinic["dan"], clinic["main"], D(2026, 3, 20), [(fay, enrollment, "no_show")])
        db.session.commit()
        result = counseling.compute(filters([clinic["main"]]))
    rows = [r for r in table(result, "no_recent_session").rows if r["patient"] == "Edge, Fay"]
    if listed:
        assert [(r["last_attended"], r["days_since"], r["counselor"]) for r in rows] == [
            (last_attended, 31, "No primary counselor")
        ]
    else:
        assert rows == []


def test_the_worklist_lists_only_enrollments_open_at_the_end_of_the_day(app, clinic, make_patient):
    gus, ivy, jon = (make_patient(n, "Open") for n in ("Gus", "Ivy", "Jon"))
    with app.app_context():
        enroll(gus, clinic["otp"], D(2026, 1, 5), D(2026, 3, 31))  # discharged that day
        enroll(ivy, clinic["otp"], D(2026, 4, 1))  # admitted the day after
        enroll(jon, clinic["otp"], D(2026, 3, 30))  # admitted the day before: never attended
        db.session.commit()
        result = counseling.compute(filters([clinic["main"]]))
    names = [r["patient"] for r in table(result, "no_recent_session").rows]
    assert "Open, Jon" in names
    assert "Open, Gus" not in names and "Open, Ivy" not in names


def test_a_session_at_another_site_is_not_read_for_the_worklist(
    app, clinic, make_patient, make_user
):
    """Kim attended at MAIN on 02-01 and at EAST on 03-30: MAIN's worklist shows MAIN's
    own last session (nothing of EAST's is read); with both sites, she is not listed."""
    kim = make_patient("Kim", "Visitor")
    olaf = make_user("clinician", full_name="Olaf Again", site_ids=[clinic["east"]])
    with app.app_context():
        enrollment = enroll(kim, clinic["otp"])
        session(clinic["dan"], clinic["main"], D(2026, 2, 1), [(kim, enrollment, "attended")])
        session(olaf, clinic["east"], D(2026, 3, 30), [(kim, enrollment, "attended")])
        db.session.commit()
        main = counseling.compute(filters([clinic["main"]]))
        both = counseling.compute(filters([clinic["main"], clinic["east"]]))
    rows = [r for r in table(main, "no_recent_session").rows if r["patient"] == "Visitor, Kim"]
    assert [(r["last_attended"], r["days_since"]) for r in rows] == [(D(2026, 2, 1), 58)]
    assert "Visitor, Kim" not in [r["patient"] for r in table(both, "no_recent_session").rows]


def test_an_empty_period_shows_the_empty_states(app, clinic):
    with app.app_context():
        result = counseling.compute(
            filters([clinic["main"]], period=(D(2025, 6, 1), D(2025, 6, 30)))
        )
    assert table(result, "by_clinician").rows == []
    assert table(result, "by_clinician").total is None
    assert table(result, "by_modality").rows == []
    # Nobody was enrolled then.
    assert table(result, "no_recent_session").rows == []


def test_the_statement_count_does_not_grow_with_the_data(app, clinic, make_patient):
    def statements() -> int:
        return statement_count(
            lambda: counseling.compute(filters([clinic["main"], clinic["east"]]))
        )

    with app.app_context():
        small = statements()
    more = [make_patient(f"P{i:02d}", "Many") for i in range(30)]
    with app.app_context():
        for index, patient in enumerate(more):
            enrollment = enroll(patient, clinic["otp"], counselor=clinic["cora"])
            session(
                clinic["cora"],
                clinic["main"],
                D(2026, 3, 1 + index % 28),
                [(patient, enrollment, "no_show" if index % 3 else "attended")],
                hour=8 + index % 10,
                minute=index,
                modality="dbt",
            )
        db.session.commit()
        large = statements()
        result = counseling.compute(filters([clinic["main"]]))
    assert large == small == 4
    assert table(result, "by_clinician").total["sessions"] == 35  # session 5 was not held


# --- pages ---------------------------------------------------------------------------------


def test_the_administrator_sees_the_report_with_its_chart(app, clinic, client_as):
    admin = client_as("admin")
    page = admin.get(f"/reports/counseling?{PERIOD}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="report-chart"' in html
    assert (
        "Bar chart: No-show rate by clinician. Cora Clinician 100.0 %, Dan Counselor 16.7 %."
        in html
    )
    assert 'data-testid="report-table-by_clinician"' in html
    assert "Session, Cleo" in html  # the worklist
    assert "How this is counted" in html


def test_the_print_layout_reads_for_the_staff_meeting(app, clinic, client_as):
    page = client_as("admin").get(f"/reports/counseling/print?{PERIOD}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "data-print" in html
    assert "2026-03-01 to 2026-03-31" in html
    assert "Patients with no attended session in the 30 days to 2026-03-31" in html
    assert '<form method="get"' not in html


def _csv(response):
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_csv_downloads_and_small_cell_suppression(app, clinic, client_as):
    admin = client_as("admin")
    response = admin.get(f"/reports/counseling/export.csv?table=by_clinician&{PERIOD}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = _csv(response)
    assert rows[0] == [
        "Clinician",
        "Sessions held",
        "Patient attendances",
        "No-shows (patients)",
        "Cancelled by the patient (patients)",
        "Cancelled by the clinic (patients)",
        "Expected to attend (patients)",
        "Attendance rate",
        "No-show rate",
    ]
    assert rows[1] == ["Cora Clinician", "1", "0", "1", "0", "1", "1", "0.0", "100.0"]
    assert rows[-1] == ["All", "5", "4", "2", "1", "1", "7", "57.1", "28.6"]
    worklist = _csv(admin.get(f"/reports/counseling/export.csv?table=no_recent_session&{PERIOD}"))
    assert worklist[0][:2] == ["Patient", "MRN"]
    assert [row[0] for row in worklist[1:]] == ["Session, Dmitri", "Session, Cleo"]
    app.config["SUPPRESS_SMALL_CELLS"] = True
    suppressed = _csv(admin.get(f"/reports/counseling/export.csv?table=by_clinician&{PERIOD}"))
    assert suppressed[1] == [
        "Cora Clinician",
        SMALL_CELL_TEXT,
        "0",
        SMALL_CELL_TEXT,
        "0",
        SMALL_CELL_TEXT,
        SMALL_CELL_TEXT,
        SMALL_CELL_TEXT,
        SMALL_CELL_TEXT,
    ]


def test_bad_filters_are_refused_next_to_the_field(app, clinic, client_as):
    admin = client_as("admin")
    response = admin.get("/reports/counseling?date_from=2026-03-31&date_to=2026-03-01")
    assert response.status_code == 400
    assert REVERSED_MESSAGE in response.get_data(as_text=True)
    other = admin.get(f"/reports/counseling?site={clinic['east']}")
    assert other.status_code == 400
    assert admin.get("/reports/counseling/export.csv?date_from=nope").status_code == 400


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_administrators_read_it(client_as, role):
    assert client_as(role).get("/reports/counseling").status_code == 403
