"""The admissions and discharges report (clinic/reports/admissions.py): admissions by kind
(new, readmission, transfer in), discharges by TEDS-D reason, average and median length
of stay, on a hand-built clinic with known answers."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from clinic.extensions import db
from clinic.patients.models import Enrollment, Patient
from clinic.reports import admissions
from tests.statements import statement_count
from tests.test_reports_census import NOT_OTP, enroll
from tests.test_reports_census import filters as census_filters

D = dt.date
Q2 = (D(2026, 4, 1), D(2026, 6, 30))


def filters(site_ids, period=Q2, **kwargs):
    return census_filters(site_ids, date_from=period[0], date_to=period[1], **kwargs)


@pytest.fixture
def clinic(app, site, make_site, make_program, make_patient):
    """The second quarter of 2026 at MAIN: admissions P1, P9, P10 (new), P3 (readmitted
    after a discharge in March), P4 (transferred OTP -> IOP), P5 (office buprenorphine,
    discharged the same day); discharges P2 (completed, 100 days), P10 (completed, 61),
    P5 (dropped out, 0), P6 (terminated, 121, on the quarter's last day), P4's OTP
    enrollment (transferred, 98). P9 is discharged the day after the quarter. P11 is
    admitted at 23:30 site time on June 30 (July 1 in UTC): a second-quarter admission. P7 is
    entered in error and P8 is at EAST."""
    east = make_site("EAST")
    otp = make_program("Methadone maintenance")
    iop = make_program("Intensive outpatient", "intensive_outpatient", **NOT_OTP)
    bup = make_program("Office buprenorphine", "office_buprenorphine", **NOT_OTP)
    east_otp = make_program("East methadone", site_id=east)
    people = {
        n: make_patient(f"P{n}", "Flow", intake_date=D(2025, 1, 1), date_of_birth=D(1980, 1, 1))
        for n in range(1, 12)
        if n != 8
    }
    people[8] = make_patient(
        "P8", "East", site_id=east, intake_date=D(2025, 1, 1), date_of_birth=D(1980, 1, 1)
    )
    with app.app_context():
        enroll(people[1], otp, D(2026, 4, 10))
        enroll(people[2], otp, D(2026, 1, 5), D(2026, 4, 15), 1)
        enroll(people[3], otp, D(2026, 1, 10), D(2026, 3, 1), 2)
        enroll(people[3], otp, D(2026, 5, 1))
        old = enroll(people[4], otp, D(2026, 2, 1), D(2026, 5, 10), 4)
        enroll(people[4], iop, D(2026, 5, 10), level="3:2.1", came=old)
        enroll(people[5], bup, D(2026, 4, 20), D(2026, 4, 20), 2, level="4:1.0")
        enroll(people[6], otp, D(2026, 3, 1), D(2026, 6, 30), 3)
        enroll(people[7], otp, D(2026, 4, 5), D(2026, 5, 5), 1)
        error = db.session.get(Patient, people[7])
        error.entered_in_error_at = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
        error.entered_in_error_reason = "wrong patient"
        enroll(people[8], east_otp, D(2026, 4, 5), D(2026, 5, 5), 1)
        enroll(people[9], otp, D(2026, 4, 2), D(2026, 7, 1), 1)
        enroll(people[10], otp, D(2026, 4, 1), D(2026, 6, 1), 1)
        late = enroll(people[11], otp, D(2026, 6, 30))
        # Admitted at 23:30 in Chicago on the quarter's last day: July 1 in UTC.
        db.session.get(Enrollment, late).created_at = dt.datetime(2026, 7, 1, 4, 30, tzinfo=dt.UTC)
        db.session.commit()
    return {"main": site, "east": east, "otp": otp, "iop": iop, "bup": bup}


def table(result, key):
    return next(t for t in result.tables if t.key == key)


def test_admissions_by_program_and_kind(app, clinic):
    with app.app_context():
        result = admissions.compute(filters([clinic["main"]]))
    rows = {
        r["program"]: (r["new"], r["readmission"], r["transfer"], r["total"])
        for r in table(result, "admissions").rows
    }
    assert rows == {
        "Intensive outpatient": (0, 0, 1, 1),
        "Methadone maintenance": (4, 1, 0, 5),
        "Office buprenorphine": (1, 0, 0, 1),
    }
    total = table(result, "admissions").total
    assert (total["new"], total["readmission"], total["transfer"], total["total"]) == (5, 1, 1, 7)


def test_discharges_by_reason_with_average_and_median_stay(app, clinic):
    with app.app_context():
        result = admissions.compute(filters([clinic["main"]]))
    discharges = table(result, "discharges")
    rows = {
        r["code"]: (r["discharges"], r["share"], r["average"], r["median"]) for r in discharges.rows
    }
    assert rows == {
        1: (2, 40.0, 80.5, 80.5),
        2: (1, 20.0, 0.0, 0.0),
        3: (1, 20.0, 121.0, 121.0),
        4: (1, 20.0, 98.0, 98.0),
        5: (0, 0.0, None, None),
        6: (0, 0.0, None, None),
        7: (0, 0.0, None, None),
    }
    # Stays 0, 61, 98, 100, 121: mean 76, median 98.
    assert (discharges.total["discharges"], discharges.total["average"]) == (5, 76.0)
    assert discharges.total["median"] == 98.0
    assert result.chart.categories[:2] == ["1 Completed", "2 Dropped out"]
    assert result.chart.series == [("Discharges", [2, 1, 1, 1, 0, 0, 0])]


def test_an_even_number_of_stays_has_the_mean_of_the_middle_two_as_median(app, clinic):
    with app.app_context():
        result = admissions.compute(filters([clinic["main"]], program_id=clinic["otp"]))
    discharges = table(result, "discharges")
    # OTP stays 61, 98, 100, 121.
    assert (discharges.total["discharges"], discharges.total["average"]) == (4, 95.0)
    assert discharges.total["median"] == 99.0
    assert table(result, "admissions").total["total"] == 5


def test_the_period_edges_and_the_second_site(app, clinic):
    with app.app_context():
        july = admissions.compute(filters([clinic["main"]], period=(D(2026, 7, 1), D(2026, 7, 1))))
        both = admissions.compute(filters([clinic["main"], clinic["east"]]))
        east = admissions.compute(filters([clinic["east"]]))
    assert table(july, "admissions").rows == []
    assert table(july, "discharges").rows[0]["discharges"] == 1
    assert table(both, "discharges").total["discharges"] == 6
    assert table(both, "admissions").total["total"] == 8
    assert table(east, "discharges").total["median"] == 30.0


def test_a_quiet_period_shows_the_empty_states(app, clinic):
    with app.app_context():
        result = admissions.compute(
            filters([clinic["main"]], period=(D(2025, 1, 1), D(2025, 1, 31)))
        )
    assert table(result, "admissions").rows == []
    assert table(result, "discharges").rows == []
    assert table(result, "discharges").total["median"] is None


def _statements(app, site_id) -> int:
    with app.app_context():
        return statement_count(lambda: admissions.compute(filters([site_id])))


def test_the_number_of_statements_does_not_grow_with_the_data(
    app, site, make_program, make_patient
):
    otp = make_program("Methadone maintenance")

    def add(n):
        for index in range(n):
            patient = make_patient(f"P{index}x{n}", "Load", intake_date=D(2025, 1, 1))
            with app.app_context():
                enroll(patient, otp, D(2026, 4, 1), D(2026, 4, 1 + index % 20), 1 + index % 7)
                db.session.commit()

    add(1)
    one = _statements(app, site)
    add(30)
    assert _statements(app, site) == one


# --- HTTP ------------------------------------------------------------------------------

PERIOD = "date_from=2026-04-01&date_to=2026-06-30"


def test_the_administrator_sees_the_report_and_prints_it(client_as, clinic):
    admin = client_as("admin")
    response = admin.get(f"/reports/admissions?{PERIOD}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'data-testid="report-chart"' in html
    assert "Bar chart: Discharges by reason, 2026-04-01 to 2026-06-30." in html
    assert 'data-testid="report-table-discharges"' in html and "Readmissions" in html
    printed = admin.get(f"/reports/admissions/print?{PERIOD}").get_data(as_text=True)
    assert "data-print" in printed and "Treatment completed" in printed


def test_the_discharges_download_as_csv(app, client_as, clinic):
    admin = client_as("admin")
    response = admin.get(f"/reports/admissions/export.csv?{PERIOD}&table=discharges")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == [
        "TEDS-D code",
        "Reason for discharge",
        "Discharges",
        "All discharges",
        "Share of discharges",
        "Average stay (days)",
        "Median stay (days)",
    ]
    assert rows[1] == ["1", "Treatment completed", "2", "5", "40.0", "80.5", "80.5"]
    assert rows[-1] == ["", "All reasons", "5", "5", "100.0", "76.0", "98.0"]
    app.config["SUPPRESS_SMALL_CELLS"] = True
    rows = list(
        csv.reader(
            io.StringIO(
                admin.get(f"/reports/admissions/export.csv?{PERIOD}&table=discharges").get_data(
                    as_text=True
                )
            )
        )
    )
    # Two discharges: their average and median stay would give their stays back.
    assert rows[1] == ["1", "Treatment completed", "<11", "<11", "<11", "<11", "<11"]
    assert rows[5][2] == "0"


def test_a_reversed_period_is_refused(client_as, clinic):
    response = client_as("admin").get("/reports/admissions?date_from=2026-06-30&date_to=2026-04-01")
    assert response.status_code == 400
    assert "The To date is before the From date" in response.get_data(as_text=True)


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_administrators_see_admissions(client_as, role):
    assert client_as(role).get("/reports/admissions").status_code == 403
