"""The retention report (clinic/reports/retention.py): the share of an admission-month
cohort still in treatment 30, 90, 180 and 365 days after admission, on a hand-built clinic
with known answers (discharges on day 89, 90 and 180, a transfer between programs, a
transfer out of the clinic, a readmission, an admission at 23:30 on the last day of a
month, milestones not yet reached, a patient entered in error, a second site)."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from clinic.extensions import db
from clinic.patients.models import Enrollment, Patient
from clinic.reports import retention
from tests.statements import statement_count
from tests.test_reports_census import NOT_OTP, enroll
from tests.test_reports_census import filters as census_filters

D = dt.date
DAYS = dt.timedelta
Q1 = (D(2026, 1, 1), D(2026, 3, 31))
TODAY = D(2026, 11, 29)


def filters(site_ids, period=Q1, today=TODAY, **kwargs):
    return census_filters(site_ids, date_from=period[0], date_to=period[1], today=today, **kwargs)


@pytest.fixture
def clinic(app, site, make_site, make_program, make_patient):
    """First quarter 2026 admissions at MAIN. January: R1 (discharged on day 89), R2 (on day
    90), R3 (on day 180), R4 (admitted 2026-01-31 at 23:30 Chicago time, still in
    treatment). February: R5 (transferred OTP -> IOP on 03-01, discharged from IOP on day
    177), R6 (readmitted after an episode in 2025). March: R7 (discharged with reason 4 to
    another facility on day 15), R11 (IOP, still in treatment). Not counted: R8 (entered in
    error), R9 (EAST), R10 (admitted in April)."""
    east = make_site("EAST")
    otp = make_program("Methadone maintenance")
    iop = make_program("Intensive outpatient", "intensive_outpatient", **NOT_OTP)
    east_otp = make_program("East methadone", site_id=east)
    people = {
        n: make_patient(f"R{n}", "Stay", intake_date=D(2025, 1, 1), date_of_birth=D(1980, 1, 1))
        for n in (1, 2, 3, 4, 5, 6, 7, 8, 10, 11)
    }
    people[9] = make_patient(
        "R9", "East", site_id=east, intake_date=D(2025, 1, 1), date_of_birth=D(1980, 1, 1)
    )
    with app.app_context():
        enroll(people[1], otp, D(2026, 1, 10), D(2026, 1, 10) + DAYS(89), 2)
        enroll(people[2], otp, D(2026, 1, 10), D(2026, 1, 10) + DAYS(90), 1)
        enroll(people[3], otp, D(2026, 1, 20), D(2026, 1, 20) + DAYS(180), 1)
        late = enroll(people[4], otp, D(2026, 1, 31))
        # Entered at 23:30 in Chicago: already February 1 in UTC.
        db.session.get(Enrollment, late).created_at = dt.datetime(2026, 2, 1, 5, 30, tzinfo=dt.UTC)
        old = enroll(people[5], otp, D(2026, 2, 5), D(2026, 3, 1), 4)
        enroll(people[5], iop, D(2026, 3, 1), D(2026, 2, 5) + DAYS(177), 1, level="3:2.1", came=old)
        enroll(people[6], otp, D(2025, 10, 1), D(2025, 12, 1), 2)
        enroll(people[6], otp, D(2026, 2, 10))
        enroll(people[7], otp, D(2026, 3, 5), D(2026, 3, 20), 4)
        enroll(people[8], otp, D(2026, 1, 15))
        error = db.session.get(Patient, people[8])
        error.entered_in_error_at = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
        error.entered_in_error_reason = "registered twice"
        enroll(people[9], east_otp, D(2026, 1, 15))
        enroll(people[10], otp, D(2026, 4, 1))
        enroll(people[11], iop, D(2026, 3, 10), level="3:2.1")
        db.session.commit()
    return {"main": site, "east": east, "otp": otp, "iop": iop}


def shares(row):
    return [row[f"share_{n}"] for n in (30, 90, 180, 365)]


def counts(row, n):
    return row[f"retained_{n}"], row[f"reached_{n}"]


def test_retention_by_admission_month(app, clinic):
    with app.app_context():
        result = retention.compute(filters([clinic["main"]]))
    (cohorts,) = result.tables
    rows = {r["cohort"]: r for r in cohorts.rows}
    assert list(rows) == ["2026-01", "2026-02", "2026-03"]
    january, february, march = rows.values()
    # Day 89 is not retained at 90, day 90 is; day 180 is retained at 180. R4, admitted on
    # the evening of January 31, is in January's cohort.
    assert january["admitted"] == 4
    assert [counts(january, n) for n in (30, 90, 180, 365)] == [(4, 4), (3, 4), (2, 4), (0, 0)]
    assert shares(january) == [100.0, 75.0, 50.0, None]
    # R5's transfer does not end the episode: out on day 177, so not retained at 180.
    # R6's readmission is a new episode; the IOP enrollment of R5 is no admission.
    assert february["admitted"] == 2
    assert shares(february) == [100.0, 100.0, 50.0, None]
    # R7 left for another facility on day 15.
    assert march["admitted"] == 2
    assert shares(march) == [50.0, 50.0, 50.0, None]
    total = cohorts.total
    assert total["admitted"] == 8
    assert [counts(total, n) for n in (30, 90, 180, 365)] == [(7, 8), (6, 8), (4, 8), (0, 0)]
    assert shares(total) == [87.5, 75.0, 50.0, None]
    assert result.chart.categories == ["Day 0", "Day 30", "Day 90", "Day 180", "Day 365"]
    assert result.chart.series[0] == ("All cohorts", [100.0, 87.5, 75.0, 50.0, None])
    assert [name for name, _ in result.chart.series] == [
        "All cohorts",
        "2026-01",
        "2026-02",
        "2026-03",
    ]
    assert any("Not yet" in note for note in result.notes)


def test_milestones_not_yet_reached_leave_the_denominator(app, clinic):
    with app.app_context():
        result = retention.compute(filters([clinic["main"]], today=D(2026, 4, 15)))
    january = result.tables[0].rows[0]
    # On 04-15 day 90 is reached by R1 (04-10) and R2 (04-10), not by R3 (04-20) or R4.
    assert counts(january, 90) == (1, 2)
    assert january["share_90"] == 50.0
    assert counts(january, 180) == (0, 0) and january["share_180"] is None


def test_the_default_period_is_last_years_cohorts():
    """SCENARIOS: "90/180-day retention for last year's cohorts" — 1 Jan to 31 Dec of the
    previous calendar year, whatever today's month."""
    report = retention.REPORT
    assert report.default_period is retention.previous_calendar_year
    assert report.default_period(D(2026, 11, 29)) == (D(2025, 1, 1), D(2025, 12, 31))
    assert report.default_period(D(2026, 1, 1)) == (D(2025, 1, 1), D(2025, 12, 31))
    assert report.default_period(D(2025, 12, 31)) == (D(2024, 1, 1), D(2024, 12, 31))
    assert any("previous calendar year" in note for note in retention.NOTES)


def test_every_milestone_shows_who_reached_it_in_the_total_too(app, clinic):
    """The "All cohorts" share at a milestone counts only the patients who reached it, and
    the table shows that denominator ("Reached day N") for each milestone."""
    with app.app_context():
        result = retention.compute(filters([clinic["main"]], today=D(2026, 4, 15)))
    cohorts = result.tables[0]
    keys = [c.key for c in cohorts.columns]
    for n in (30, 90, 180, 365):
        share = next(c for c in cohorts.columns if c.key == f"share_{n}")
        assert share.of == f"reached_{n}" and f"reached_{n}" in keys
        assert keys.index(f"reached_{n}") < keys.index(f"share_{n}")
    total = cohorts.total
    assert total["reached_180"] == 0 and total["share_180"] is None
    assert total["reached_90"] == sum(row["reached_90"] for row in cohorts.rows)


def test_the_program_filter_picks_the_admitting_program(app, clinic):
    with app.app_context():
        iop = retention.compute(filters([clinic["main"]], program_id=clinic["iop"]))
        otp = retention.compute(filters([clinic["main"]], program_id=clinic["otp"]))
    # R5's IOP enrollment is a transfer in: only R11 was admitted to IOP.
    assert iop.tables[0].total["admitted"] == 1
    assert shares(iop.tables[0].total) == [100.0, 100.0, 100.0, None]
    # R5 stays in OTP's cohort and its episode follows the transfer to IOP.
    assert otp.tables[0].total["admitted"] == 7
    assert counts(otp.tables[0].rows[1], 90) == (2, 2)


def test_only_the_chosen_sites_count(app, clinic):
    with app.app_context():
        both = retention.compute(filters([clinic["main"], clinic["east"]]))
        east = retention.compute(filters([clinic["east"]]))
    assert both.tables[0].total["admitted"] == 9
    assert east.tables[0].total["admitted"] == 1
    assert [r["admitted"] for r in east.tables[0].rows] == [1, 0, 0]


def test_many_cohorts_draw_one_line_per_quarter_or_year(app, clinic, make_patient):
    with app.app_context():
        result = retention.compute(
            filters([clinic["main"]], period=(D(2025, 5, 1), D(2026, 4, 30)))
        )
    assert result.tables[0].rows[0]["cohort"] == "2025-05"
    assert len(result.tables[0].rows) == 12
    # Five months with admissions (2025-10, 2026-01 to 04): one line per month.
    assert [name for name, _ in result.chart.series] == [
        "All cohorts",
        "2025-10",
        "2026-01",
        "2026-02",
        "2026-03",
        "2026-04",
    ]
    more = [make_patient(f"M{m}", "More", intake_date=D(2025, 1, 1)) for m in range(5, 9)]
    with app.app_context():
        for month, patient in zip(range(5, 9), more, strict=True):
            enroll(patient, clinic["otp"], D(2025, month, 3))
        db.session.commit()
        result = retention.compute(
            filters([clinic["main"]], period=(D(2025, 5, 1), D(2026, 4, 30)))
        )
    assert [name for name, _ in result.chart.series] == [
        "All cohorts",
        "2025 Q2",
        "2025 Q3",
        "2025 Q4",
        "2026 Q1",
        "2026 Q2",
    ]
    # Seven quarters with admissions: one line per year.
    early = [make_patient(f"Y{m}", "Early", intake_date=D(2024, 1, 1)) for m in (6, 9)]
    with app.app_context():
        for month, patient in zip((6, 9), early, strict=True):
            enroll(patient, clinic["otp"], D(2024, month, 3), D(2024, month, 20), 2)
        db.session.commit()
        result = retention.compute(
            filters([clinic["main"]], period=(D(2024, 5, 1), D(2026, 4, 30)))
        )
    assert [name for name, _ in result.chart.series] == ["All cohorts", "2024", "2025", "2026"]
    assert result.chart.series[1] == ("2024", [100.0, 0.0, 0.0, 0.0, 0.0])


def test_an_empty_period(app, clinic):
    with app.app_context():
        result = retention.compute(
            filters([clinic["main"]], period=(D(2024, 1, 1), D(2024, 3, 31)))
        )
    assert result.tables[0].rows == []
    assert result.chart.series == []


def _statements(app, site_id) -> int:
    with app.app_context():
        return statement_count(lambda: retention.compute(filters([site_id])))


def test_the_number_of_statements_does_not_grow_with_the_data(
    app, site, make_program, make_patient
):
    otp = make_program("Methadone maintenance")
    iop = make_program("Intensive outpatient", "intensive_outpatient", **NOT_OTP)

    def add(n):
        for index in range(n):
            patient = make_patient(f"P{index}x{n}", "Load", intake_date=D(2025, 1, 1))
            with app.app_context():
                first = enroll(patient, otp, D(2026, 1, 1 + index % 28), D(2026, 3, 1), 4)
                enroll(patient, iop, D(2026, 3, 1), level="3:2.1", came=first)
                db.session.commit()

    add(1)
    one = _statements(app, site)
    add(30)
    assert _statements(app, site) == one
    assert one == 1


# --- HTTP ------------------------------------------------------------------------------

PERIOD = "date_from=2026-01-01&date_to=2026-03-31"


def test_the_administrator_sees_the_curves(client_as, clinic):
    admin = client_as("admin")
    response = admin.get(f"/reports/retention?{PERIOD}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'data-testid="report-chart"' in html and "Line chart: Retention after admission" in html
    assert 'data-testid="report-table-cohorts"' in html
    printed = admin.get(f"/reports/retention/print?{PERIOD}").get_data(as_text=True)
    assert "data-print" in printed and "2026-02" in printed


def test_the_cohorts_download_as_csv(app, client_as, clinic):
    admin = client_as("admin")
    response = admin.get(f"/reports/retention/export.csv?{PERIOD}")
    assert response.status_code == 200
    assert "retention-cohorts-2026-01-01-2026-03-31.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:8] == [
        "Admission month",
        "Admitted",
        "Reached day 30",
        "In treatment on day 30",
        "Retained at 30 days",
        "Reached day 90",
        "In treatment on day 90",
        "Retained at 90 days",
    ]
    assert rows[1][:8] == ["2026-01", "4", "4", "4", "100.0", "4", "3", "75.0"]
    assert rows[-1][:2] == ["All cohorts", "8"]
    app.config["SUPPRESS_SMALL_CELLS"] = True
    rows = list(
        csv.reader(
            io.StringIO(admin.get(f"/reports/retention/export.csv?{PERIOD}").get_data(as_text=True))
        )
    )
    assert rows[1][:5] == ["2026-01", "<11", "<11", "<11", "<11"]


def test_a_bad_period_is_refused(client_as, clinic):
    response = client_as("admin").get("/reports/retention?date_from=1999-01-01")
    assert response.status_code == 400
    assert "Enter a date from 2000-01-01" in response.get_data(as_text=True)


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_administrators_see_retention(client_as, role):
    assert client_as(role).get("/reports/retention").status_code == 403
