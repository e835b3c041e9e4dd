"""Attacks on the administrators' dashboard (issue 14, "Home pages"): the census tile says
what the census report it links to says on the same day (the discharge day counts, a
transfer counts once), and the month is the sites' month, not UTC's, for an
organisation-wide administrator late in the evening."""

from __future__ import annotations

import datetime as dt

import time_machine

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.main import dashboards
from clinic.patients.models import Enrollment, Patient
from clinic.reports import census
from clinic.reports.filters import ReportFilters
from tests.conftest import PASSWORD, login

D = dt.date
TODAY = D(2026, 3, 18)
NOON = dt.datetime(2026, 3, 18, 17, 0, tzinfo=dt.UTC)  # noon in Chicago
NOT_OTP = {
    "take_home_cap_days_0_14": None,
    "take_home_cap_days_15_30": None,
    "take_home_cap_days_31_plus": None,
}


def enroll(patient, program, admitted, discharged=None, reason=None, *, came=None) -> int:
    enrollment = Enrollment(
        patient_id=patient,
        program_id=program,
        admitted_on=admitted,
        asam_edition="3",
        asam_level="OTP",
        discharged_on=discharged,
        discharge_reason=reason,
        transferred_from_id=came,
    )
    db.session.add(enrollment)
    db.session.flush()
    return enrollment.id


def _board(app, user_id: int, now: dt.datetime):
    with app.app_context():
        return dashboards.admin_dashboard(db.session.get(User, user_id), now=now)


def test_the_census_tile_counts_as_the_census_report_on_the_same_day(
    app, site, make_user, make_program, make_patient
):
    """Today at MAIN: A in treatment; B discharged today (the discharge day counts); C
    transferred from the OTP to the IOP today (counted once, in the IOP); D discharged
    yesterday; E admitted tomorrow; F entered in error."""
    otp = make_program("Methadone maintenance")
    iop = make_program("Intensive outpatient", "intensive_outpatient", **NOT_OTP)
    p = {n: make_patient(n, "Tile", intake_date=D(2025, 1, 1)) for n in "ABCDEF"}
    with app.app_context():
        enroll(p["A"], otp, D(2026, 1, 5))
        enroll(p["B"], otp, D(2026, 1, 5), TODAY, 1)
        c = enroll(p["C"], otp, D(2026, 1, 5), TODAY, 4)
        enroll(p["C"], iop, TODAY, came=c)
        enroll(p["D"], otp, D(2026, 1, 5), TODAY - dt.timedelta(days=1), 2)
        enroll(p["E"], otp, TODAY + dt.timedelta(days=1))
        enroll(p["F"], otp, D(2026, 1, 5))
        db.session.get(Patient, p["F"]).entered_in_error_at = NOON
        db.session.get(Patient, p["F"]).entered_in_error_reason = "registered twice"
        db.session.commit()
    admin = make_user("admin")
    board = _board(app, admin, NOON)
    assert {r.program_name: r.patients for r in board.census.rows} == {
        "Methadone maintenance": 2,
        "Intensive outpatient": 1,
    }
    with app.app_context():
        report = census.compute(
            ReportFilters(
                site_ids=(site,),
                program_id=None,
                medications=None,
                date_from=TODAY,
                date_to=TODAY,
                on=TODAY,
                today=TODAY,
                single_site=True,
            )
        )
    assert {r["program"]: r["patients"] for r in report.tables[0].rows} == {
        r.program_name: r.patients for r in board.census.rows
    }


def test_an_organisation_wide_administrators_month_is_the_sites_month(
    app, site, make_user, make_program, make_patient
):
    """22:00 on 31 March in Chicago is 1 April in UTC: the tile is March's, with March's
    admission, for an administrator of no site of their own."""
    program = make_program()
    patient = make_patient()
    with app.app_context():
        enroll(patient, program, D(2026, 3, 31))
        db.session.commit()
    admin = make_user("admin", site_ids=[], all_sites=True)
    late = dt.datetime(2026, 4, 1, 3, 0, tzinfo=dt.UTC)
    board = _board(app, admin, late)
    assert board.today == D(2026, 3, 31)
    assert board.month == dashboards.MonthFlow(D(2026, 3, 1), 1, 0)
    with time_machine.travel(late, tick=True):
        client = app.test_client()
        with app.app_context():
            username = db.session.get(User, admin).username
        assert login(client, username, PASSWORD).status_code == 302
        html = client.get("/").get_data(as_text=True)
    assert "Admissions and discharges in March 2026" in html


def test_a_site_administrator_near_midnight_counts_the_sites_day(
    app, site, make_user, make_program, make_patient
):
    """23:30 on 31 March in Chicago (04:30 on 1 April UTC): an admission that evening is
    March's and in today's census."""
    program = make_program()
    patient = make_patient()
    with app.app_context():
        enroll(patient, program, D(2026, 3, 31))
        db.session.commit()
    admin = make_user("admin")
    board = _board(app, admin, dt.datetime(2026, 4, 1, 4, 30, tzinfo=dt.UTC))
    assert board.census.total == 1
    assert board.month == dashboards.MonthFlow(D(2026, 3, 1), 1, 0)
