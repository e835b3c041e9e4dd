"""The drug-testing report (clinic/reports/drug_testing.py): tests per patient-year against
the 8-a-year standard (42 CFR 8.12(f)(6)) and positivity by analyte and month, on a
hand-built clinic with known answers (a transfer day counted once, a readmission, a
presumptive result superseded by a definitive one, the patient's own medication left out
— including the day an order starts and after it ended —, a test and a patient entered in
error, a second site, the program filter), and its pages."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from clinic.extensions import db
from clinic.medications.drug_test_models import DrugTest, DrugTestResult
from clinic.medications.models import MedicationOrder, OrderStatus
from clinic.patients.models import Enrollment, Patient
from clinic.reports import drug_testing
from clinic.reports.core import SMALL_CELL_TEXT, export_rows
from clinic.reports.filters import REVERSED_MESSAGE, ReportFilters
from tests.statements import statement_count

D = dt.date
CHICAGO = ZoneInfo("America/Chicago")
YEAR = (D(2025, 1, 1), D(2025, 12, 31))
PERIOD = "date_from=2025-01-01&date_to=2025-12-31"
NOT_OTP = {
    "take_home_cap_days_0_14": None,
    "take_home_cap_days_15_30": None,
    "take_home_cap_days_31_plus": None,
}
FORMS = {
    "methadone": ("oral_liquid", "10 mg/mL", "daily"),
    "buprenorphine_naloxone": ("sublingual_film", "8/2 mg", "daily"),
    "buprenorphine": ("sublingual_film", "8 mg", "daily"),
}
MONTHS = [f"2025-{m:02d}" for m in range(1, 13)]


def enroll(patient, program, admitted, discharged=None, reason=None, came=None):
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


def order(enrollment, prescriber, medication, start, end=None, replaces=None):
    form, strength, schedule = FORMS[medication]
    row = MedicationOrder(
        patient_id=db.session.get(Enrollment, enrollment).patient_id,
        enrollment_id=enrollment,
        medication=medication,
        product_form=form,
        strength=strength,
        dose_mg=Decimal("40"),
        schedule=schedule,
        start_on=start,
        end_on=end,
        prescriber_id=prescriber,
        replaces_id=replaces,
        status=OrderStatus.ENDED if end else OrderStatus.ACTIVE,
        ended_at=dt.datetime(2025, 4, 1, tzinfo=dt.UTC) if end else None,
        ended_reason="transferred" if end else None,
        ended_by_id=prescriber if end else None,
    )
    db.session.add(row)
    db.session.flush()
    return row.id


def test_of(patient, site, day, user, *results, reason="random", in_error=False):
    """A test collected at 09:00 on ``day`` (Chicago) with ``results``: (analyte, result,
    method[, other name])."""
    collected = dt.datetime.combine(day, dt.time(9), CHICAGO).astimezone(dt.UTC)
    test = DrugTest(
        patient_id=patient,
        site_id=site,
        collected_at=collected,
        collected_on=day,
        specimen="urine",
        observed=True,
        reason=reason,
        collected_by_id=user,
        temperature_in_range=True,
        recorded_by_id=user,
    )
    db.session.add(test)
    db.session.flush()
    for analyte, value, method, *other in results:
        db.session.add(
            DrugTestResult(
                test_id=test.id,
                analyte=analyte,
                other_name=other[0] if other else "",
                result=value,
                method=method,
                entered_by_id=user,
            )
        )
        db.session.flush()
    if in_error:
        test.entered_in_error_at = collected + dt.timedelta(days=1)
        test.entered_in_error_by_id = user
        test.entered_in_error_reason = "wrong patient"
        db.session.flush()
    return test.id


test_of.__test__ = False  # not a pytest test


def filters(site_ids, period=YEAR, **kwargs) -> ReportFilters:
    values = {
        "site_ids": tuple(site_ids),
        "program_id": None,
        "medications": None,
        "date_from": period[0],
        "date_to": period[1],
        "on": period[1],
        "today": D(2026, 2, 1),
        "single_site": len(site_ids) == 1,
    }
    values.update(kwargs)
    return ReportFilters(**values)


def table(result, key):
    return next(t for t in result.tables if t.key == key)


def rates(row):
    return (
        row["patients"],
        row["patient_years"],
        row["tests"],
        row["tests_per_year"],
        row["random_per_year"],
        row["covered"],
        row["below"],
        row["below_share"],
    )


def expected(patients, days, tests, random, covered, below):
    years = days / 365
    return (
        patients,
        round(years, 2),
        tests,
        round(tests / years, 2),
        round(random / years, 2),
        covered,
        below,
        round(100 * below / covered, 1) if covered else None,
    )


P, N, NT = "positive", "negative", "not_tested"
PRE, DEF = "presumptive", "definitive"


@pytest.fixture
def clinic(app, site, make_site, make_program, make_patient, make_user):
    """MAIN (Chicago) in 2025, the period:

    - A, OTP since 2024-06-01 on methadone: 365 days, 8 random tests (one entered in error
      besides, one in December 2024 before the period). Results: January fentanyl
      presumptive positive then definitive negative, cocaine negative, alcohol not tested,
      methadone positive (own); February fentanyl definitive positive, methadone negative
      (own); March fentanyl presumptive positive, "Kratom" presumptive positive then
      "kratom" definitive negative.
    - B, OTP from 2025-07-02 on methadone from that day: 183 days, 3 random tests and 1
      scheduled (below floor(8 * 183 / 365) = 4). Its first test, on the admission day, is
      methadone positive: the order counts from the next day.
    - C, OTP from 2025-01-01, transferred to intensive outpatient on 2025-03-31 (counted
      once, in the OTP): 90 + 275 days; 2 random tests in February and 1 on the transfer
      day (OTP), 1 scheduled in June (IOP): methadone positive (own: the order ended last),
      buprenorphine positive.
    - F, office buprenorphine from 2025-10-01: 92 days, no test (below 2).
    - G, OTP 2024-01-01 to 2025-01-10, readmitted 2025-12-01: 10 + 31 days, no test.
    - E, entered in error, with a fentanyl-positive test; O at EAST with one."""
    east = make_site("EAST")
    otp = make_program("Methadone maintenance")
    bup = make_program("Office buprenorphine", "office_buprenorphine", **NOT_OTP)
    iop = make_program("Intensive outpatient", "intensive_outpatient", **NOT_OTP)
    east_otp = make_program("East methadone", site_id=east)
    prescriber = make_user("clinician", is_prescriber=True, site_ids=[site, east])
    people = {
        n: make_patient(n, "Tested", intake_date=D(2024, 1, 1), date_of_birth=D(1980, 1, 1))
        for n in "ABCEFG"
    }
    people["O"] = make_patient(
        "O", "East", site_id=east, intake_date=D(2024, 1, 1), date_of_birth=D(1980, 1, 1)
    )
    with app.app_context():
        u = prescriber
        a = enroll(people["A"], otp, D(2024, 6, 1))
        order(a, u, "methadone", D(2024, 6, 1))
        test_of(people["A"], site, D(2024, 12, 31), u, ("fentanyl", P, PRE))
        test_of(
            people["A"],
            site,
            D(2025, 1, 15),
            u,
            ("fentanyl", P, PRE),
            ("fentanyl", N, DEF),
            ("cocaine", N, PRE),
            ("alcohol", NT, PRE),
            ("methadone", P, PRE),
        )
        test_of(people["A"], site, D(2025, 2, 15), u, ("fentanyl", P, DEF), ("methadone", N, PRE))
        test_of(
            people["A"],
            site,
            D(2025, 3, 15),
            u,
            ("fentanyl", P, PRE),
            ("other", P, PRE, "Kratom"),
            ("other", N, DEF, "kratom"),
        )
        for day in (D(2025, 5, 5), D(2025, 7, 7), D(2025, 9, 9), D(2025, 11, 11), D(2025, 12, 12)):
            test_of(people["A"], site, day, u)
        test_of(people["A"], site, D(2025, 4, 4), u, ("cocaine", P, PRE), in_error=True)
        b = enroll(people["B"], otp, D(2025, 7, 2))
        order(b, u, "methadone", D(2025, 7, 2))
        test_of(people["B"], site, D(2025, 7, 2), u, ("methadone", P, PRE))
        test_of(people["B"], site, D(2025, 9, 1), u)
        test_of(people["B"], site, D(2025, 11, 1), u)
        test_of(people["B"], site, D(2025, 12, 1), u, reason="scheduled")
        c_otp = enroll(people["C"], otp, D(2025, 1, 1), D(2025, 3, 31), 4)
        order(c_otp, u, "methadone", D(2025, 1, 1), D(2025, 3, 31))
        c_iop = enroll(people["C"], iop, D(2025, 3, 31), came=c_otp)
        test_of(people["C"], site, D(2025, 2, 3), u)
        test_of(people["C"], site, D(2025, 2, 20), u)
        test_of(people["C"], site, D(2025, 3, 31), u)
        test_of(
            people["C"],
            site,
            D(2025, 6, 10),
            u,
            ("methadone", P, PRE),
            ("buprenorphine", P, PRE),
            reason="scheduled",
        )
        f = enroll(people["F"], bup, D(2025, 10, 1))
        order(f, u, "buprenorphine_naloxone", D(2025, 10, 1))
        enroll(people["G"], otp, D(2024, 1, 1), D(2025, 1, 10), 2)
        enroll(people["G"], otp, D(2025, 12, 1))
        enroll(people["E"], otp, D(2025, 1, 1))
        test_of(people["E"], site, D(2025, 2, 2), u, ("fentanyl", P, PRE))
        error = db.session.get(Patient, people["E"])
        error.entered_in_error_at = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
        error.entered_in_error_reason = "registered twice"
        enroll(people["O"], east_otp, D(2025, 1, 1))
        test_of(people["O"], east, D(2025, 2, 2), u, ("fentanyl", P, PRE))
        db.session.commit()
    return {
        "main": site,
        "east": east,
        "otp": otp,
        "bup": bup,
        "iop": iop,
        "prescriber": prescriber,
        "people": people,
        "c_iop": c_iop,
    }


def test_tests_per_patient_year_by_program(app, clinic):
    with app.app_context():
        result = drug_testing.compute(filters([clinic["main"]]))
    per_year = table(result, "per_patient_year")
    assert {r["program"]: rates(r) for r in per_year.rows} == {
        # C's 275 days after the transfer; one scheduled test; no maintenance here.
        "Intensive outpatient": expected(1, 275, 1, 0, 0, 0),
        # A 365 + B 183 + C 90 (with the transfer day) + G 10 + 31 days; B is below.
        "Methadone maintenance": expected(4, 679, 15, 14, 4, 1),
        # F: 92 days without a test needs floor(8 * 92 / 365) = 2.
        "Office buprenorphine": expected(1, 92, 0, 0, 1, 1),
    }
    assert [r["program"] for r in per_year.rows] == [
        "Intensive outpatient",
        "Methadone maintenance",
        "Office buprenorphine",
    ]
    # Each patient once: 1,046 days; B and F below, of 5 in maintenance.
    assert rates(per_year.total) == expected(5, 1046, 16, 14, 5, 2)
    assert per_year.total["program"] == "All programs"
    assert per_year.total["below_share"] == 40.0


def test_positivity_by_month_and_analyte(app, clinic):
    with app.app_context():
        result = drug_testing.compute(filters([clinic["main"]]))
    by_month = [
        (r["month"], r["analyte"], r["results"], r["positive"], r["positivity"], r["own"])
        for r in table(result, "positivity_by_month").rows
    ]
    assert by_month == [
        # The definitive negative supersedes the presumptive positive; methadone is A's own.
        ("2025-01", "Fentanyl", 1, 0, 0.0, 0),
        ("2025-01", "Methadone", 0, 0, None, 1),
        ("2025-01", "Cocaine", 1, 0, 0.0, 0),
        ("2025-02", "Fentanyl", 1, 1, 100.0, 0),
        ("2025-02", "Methadone", 0, 0, None, 1),
        # Kratom's definitive negative supersedes "Kratom"'s presumptive positive.
        ("2025-03", "Fentanyl", 1, 1, 100.0, 0),
        ("2025-03", "Other", 1, 0, 0.0, 0),
        # C's methadone order ended on 03-31: still the order that ended last, so own.
        ("2025-06", "Methadone", 0, 0, None, 1),
        ("2025-06", "Buprenorphine", 1, 1, 100.0, 0),
        # B's order starts on the day of the test: not yet its own medication.
        ("2025-07", "Methadone", 1, 1, 100.0, 0),
    ]
    by_analyte = [
        (r["analyte"], r["results"], r["positive"], r["positivity"], r["own"])
        for r in table(result, "positivity_by_analyte").rows
    ]
    assert by_analyte == [
        ("Fentanyl", 3, 2, 66.7, 0),
        ("Methadone", 1, 1, 100.0, 3),
        ("Buprenorphine", 1, 1, 100.0, 0),
        ("Cocaine", 1, 0, 0.0, 0),
        ("Other", 1, 0, 0.0, 0),
    ]
    assert result.chart.categories == MONTHS
    series = dict(result.chart.series)
    assert series["Fentanyl"] == [0.0, 100.0, 100.0] + [None] * 9
    assert series["Cocaine"] == [0.0] + [None] * 11
    assert list(series) == ["Fentanyl", "Cocaine"]  # no opioid, amphetamine or benzo result
    assert result.chart.percent


def test_a_medication_switch_changes_the_own_medication_the_day_after(app, clinic, make_patient):
    """H on buprenorphine from 01-01, switched to methadone starting 05-01 (the new order
    replaces the old). On 05-01 buprenorphine is still H's own and methadone is not yet;
    on 05-10 methadone is H's own and a buprenorphine positive is unexpected."""
    h = make_patient("H", "Switch", intake_date=D(2024, 1, 1), date_of_birth=D(1980, 1, 1))
    with app.app_context():
        u = clinic["prescriber"]
        enrollment = enroll(h, clinic["otp"], D(2025, 1, 1))
        first = order(enrollment, u, "buprenorphine", D(2025, 1, 1))
        order(enrollment, u, "methadone", D(2025, 5, 1), replaces=first)
        for day in (D(2025, 5, 1), D(2025, 5, 10)):
            test_of(h, clinic["main"], day, u, ("methadone", P, PRE), ("buprenorphine", P, PRE))
        db.session.commit()
        result = drug_testing.compute(filters([clinic["main"]]))
    may = [
        (r["analyte"], r["results"], r["positive"], r["own"])
        for r in table(result, "positivity_by_month").rows
        if r["month"] == "2025-05"
    ]
    assert may == [("Methadone", 1, 1, 1), ("Buprenorphine", 1, 1, 1)]


def test_the_program_filter(app, clinic):
    with app.app_context():
        result = drug_testing.compute(filters([clinic["main"]], program_id=clinic["otp"]))
    per_year = table(result, "per_patient_year")
    assert [r["program"] for r in per_year.rows] == ["Methadone maintenance"]
    assert rates(per_year.total) == expected(4, 679, 15, 14, 4, 1)
    months = {r["month"] for r in table(result, "positivity_by_month").rows}
    assert months == {"2025-01", "2025-02", "2025-03", "2025-07"}  # C's June test is IOP's


def test_another_site_counts_only_when_chosen(app, clinic):
    with app.app_context():
        east = drug_testing.compute(filters([clinic["east"]]))
        both = drug_testing.compute(filters([clinic["main"], clinic["east"]]))
    assert [
        (r["program"], r["patients"], r["tests"]) for r in table(east, "per_patient_year").rows
    ] == [("East methadone", 1, 1)]
    assert [(r["analyte"], r["positive"]) for r in table(east, "positivity_by_analyte").rows] == [
        ("Fentanyl", 1)
    ]
    assert table(both, "per_patient_year").total["patients"] == 6
    assert table(both, "per_patient_year").total["tests"] == 17


def test_programs_of_the_same_name_at_two_sites_are_told_apart(
    app, clinic, make_program, make_patient
):
    """EAST has a "Methadone maintenance" too: with both sites counted, each program row
    carries its site's code (on the page and in the CSV); with one site, the name alone."""
    twin = make_program("Methadone maintenance", site_id=clinic["east"])
    patient = make_patient(
        "T", "Twin", site_id=clinic["east"], intake_date=D(2024, 1, 1), date_of_birth=D(1980, 1, 1)
    )
    with app.app_context():
        enroll(patient, twin, D(2025, 1, 1))
        db.session.commit()
        both = drug_testing.compute(filters([clinic["main"], clinic["east"]]))
        main = drug_testing.compute(filters([clinic["main"]]))
    names = [r["program"] for r in table(both, "per_patient_year").rows]
    assert "Methadone maintenance — MAIN" in names
    assert "Methadone maintenance — EAST" in names
    assert "Methadone maintenance" in [r["program"] for r in table(main, "per_patient_year").rows]
    exported = export_rows(table(both, "per_patient_year"), enabled=False)
    assert "Methadone maintenance — EAST" in [r[0] for r in exported]


def test_a_period_inside_the_year_prorates_the_standard(app, clinic):
    """January to March: A 90 days with 3 random tests (needs 1); C 90 days in the OTP
    with 3; G 10 days. Nobody below."""
    with app.app_context():
        result = drug_testing.compute(
            filters([clinic["main"]], period=(D(2025, 1, 1), D(2025, 3, 31)))
        )
    per_year = table(result, "per_patient_year")
    assert {r["program"]: rates(r) for r in per_year.rows} == {
        "Methadone maintenance": expected(3, 190, 6, 6, 3, 0),
    }
    assert result.chart.categories == ["2025-01", "2025-02", "2025-03"]


def test_an_empty_period_shows_the_empty_states(app, clinic):
    with app.app_context():
        result = drug_testing.compute(
            filters([clinic["main"]], period=(D(2023, 1, 1), D(2023, 3, 31)))
        )
    assert table(result, "per_patient_year").rows == []
    assert table(result, "per_patient_year").total is None
    assert table(result, "positivity_by_analyte").rows == []
    assert table(result, "positivity_by_month").rows == []


def test_the_statement_count_does_not_grow_with_the_data(app, clinic, make_patient):
    def statements() -> int:
        return statement_count(
            lambda: drug_testing.compute(filters([clinic["main"], clinic["east"]]))
        )

    with app.app_context():
        small = statements()
    more = [
        make_patient(f"P{i:02d}", "Many", intake_date=D(2024, 1, 1), date_of_birth=D(1980, 1, 1))
        for i in range(30)
    ]
    with app.app_context():
        for index, patient in enumerate(more):
            enrollment = enroll(patient, clinic["otp"], D(2025, 1, 1))
            order(enrollment, clinic["prescriber"], "methadone", D(2025, 1, 1))
            test_of(
                patient,
                clinic["main"],
                D(2025, 1 + index % 12, 10),
                clinic["prescriber"],
                ("fentanyl", P if index % 2 else N, PRE),
                ("methadone", P, PRE),
            )
        db.session.commit()
        large = statements()
        result = drug_testing.compute(filters([clinic["main"]]))
    assert large == small == 3
    assert table(result, "per_patient_year").total["patients"] == 35


# --- pages ---------------------------------------------------------------------------------


def _csv(response):
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_the_administrator_sees_the_report_with_its_chart(app, clinic, client_as):
    admin = client_as("admin")
    page = admin.get(f"/reports/drug-testing?{PERIOD}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="report-chart"' in html
    assert "Line chart: Positivity by month, main analytes. Fentanyl: 2025-01 0.0 %" in html
    assert 'data-testid="report-table-per_patient_year"' in html
    assert "How this is counted" in html
    printed = admin.get(f"/reports/drug-testing/print?{PERIOD}")
    assert printed.status_code == 200
    assert "data-print" in printed.get_data(as_text=True)


def test_csv_downloads_and_small_cell_suppression(app, clinic, client_as):
    admin = client_as("admin")
    rows = _csv(admin.get(f"/reports/drug-testing/export.csv?table=positivity_by_analyte&{PERIOD}"))
    assert rows[0] == ["Analyte", "Results", "Positive", "Positivity", "Own medication (left out)"]
    assert rows[1] == ["Fentanyl", "3", "2", "66.7", "0"]
    per_year = _csv(admin.get(f"/reports/drug-testing/export.csv?{PERIOD}"))
    assert per_year[0][0] == "Program"
    assert per_year[-1][:4] == ["All programs", "5", "2.87", "16"]
    app.config["SUPPRESS_SMALL_CELLS"] = True
    suppressed = _csv(
        admin.get(f"/reports/drug-testing/export.csv?table=positivity_by_analyte&{PERIOD}")
    )
    assert suppressed[1] == ["Fentanyl", SMALL_CELL_TEXT, SMALL_CELL_TEXT, SMALL_CELL_TEXT, "0"]
    per_year = _csv(admin.get(f"/reports/drug-testing/export.csv?{PERIOD}"))
    # 5 patients is a small cell (and their patient-years with it); 16 tests is not, but
    # the intensive-outpatient row's 1 test is suppressed, and the total minus the other
    # rows would give it back.
    assert per_year[-1][:4] == ["All programs", SMALL_CELL_TEXT, SMALL_CELL_TEXT, SMALL_CELL_TEXT]


def test_bad_filters_are_refused_next_to_the_field(app, clinic, client_as):
    admin = client_as("admin")
    response = admin.get("/reports/drug-testing?date_from=2025-12-31&date_to=2025-01-01")
    assert response.status_code == 400
    assert REVERSED_MESSAGE in response.get_data(as_text=True)
    assert admin.get(f"/reports/drug-testing?program={clinic['otp'] + 999}").status_code == 400


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_administrators_read_it(client_as, role):
    assert client_as(role).get("/reports/drug-testing").status_code == 403


def test_a_program_chosen_counts_the_transfer_day_as_its_row_does(app, clinic):
    """C moved from the OTP to intensive outpatient on 03-31: the day (and a cocaine
    positive collected that day) belongs to the OTP, with or without the program filter —
    the intensive-outpatient figures are the same whether it is chosen or not."""
    with app.app_context():
        test_of(
            clinic["people"]["C"],
            clinic["main"],
            D(2025, 3, 31),
            clinic["prescriber"],
            ("cocaine", P, PRE),
        )
        db.session.commit()
        everything = drug_testing.compute(filters([clinic["main"]]))
        iop = drug_testing.compute(filters([clinic["main"]], program_id=clinic["iop"]))
        otp = drug_testing.compute(filters([clinic["main"]], program_id=clinic["otp"]))
    row = {r["program"]: rates(r) for r in table(everything, "per_patient_year").rows}
    assert row["Intensive outpatient"] == expected(1, 275, 1, 0, 0, 0)
    assert [rates(r) for r in table(iop, "per_patient_year").rows] == [expected(1, 275, 1, 0, 0, 0)]
    assert rates(table(iop, "per_patient_year").total) == expected(1, 275, 1, 0, 0, 0)
    assert {r["month"] for r in table(iop, "positivity_by_month").rows} == {"2025-06"}
    march = [
        (r["analyte"], r["results"], r["positive"])
        for r in table(otp, "positivity_by_month").rows
        if r["month"] == "2025-03"
    ]
    assert ("Cocaine", 1, 1) in march


def test_a_rate_per_patient_year_does_not_give_a_small_count_back(app, clinic, client_as):
    """Intensive outpatient: 1 patient, 1 test in 0.75 patient-years. "Tests" is "<11",
    but 0.75 x 1.33 tests per patient-year would be 1 again, and one patient's
    patient-years are that patient's days: the measures over a small count are
    suppressed with it."""
    app.config["SUPPRESS_SMALL_CELLS"] = True
    rows = _csv(
        client_as("admin").get(f"/reports/drug-testing/export.csv?table=per_patient_year&{PERIOD}")
    )
    iop = dict(zip(rows[0], next(r for r in rows if r[0] == "Intensive outpatient"), strict=True))
    for column in (
        "Patients",
        "Patient-years",
        "Tests",
        "Tests per patient-year",
    ):
        assert iop[column] == SMALL_CELL_TEXT, column
    assert (iop["Random tests"], iop["Random tests per patient-year"]) == ("0", "0.0")
    otp = dict(zip(rows[0], next(r for r in rows if r[0] == "Methadone maintenance"), strict=True))
    assert (otp["Tests"], otp["Random tests"], otp["Tests per patient-year"]) == (
        "15",
        "14",
        "8.06",
    )
