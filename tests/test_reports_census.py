"""The census report (clinic/reports/census.py): patients in treatment on a date by site,
program, medication and level of care, and the survey's reference-day counts, on a
hand-built clinic with known answers (the discharge day counts, a transfer day counts in
the new program, a medication switch, a replaced order, a patient entered in error, a
second site)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest

from clinic.extensions import db
from clinic.medications.models import MedicationOrder, OrderStatus
from clinic.patients.models import Enrollment, Patient
from clinic.reports import census
from clinic.reports.filters import MedicationGroup, ReportFilters
from tests.statements import statement_count

D = dt.date
ON = D(2026, 3, 15)
NOT_OTP = {
    "take_home_cap_days_0_14": None,
    "take_home_cap_days_15_30": None,
    "take_home_cap_days_31_plus": None,
}
FORMS = {
    "methadone": ("oral_liquid", "10 mg/mL", "daily"),
    "buprenorphine": ("sublingual_film", "8 mg", "daily"),
    "buprenorphine_naloxone": ("sublingual_film", "8/2 mg", "daily"),
    "naltrexone": ("tablet", "50 mg", "daily"),
}


def enroll(patient, program, admitted, discharged=None, reason=None, *, level="3:OTP", came=None):
    edition, _, asam_level = level.partition(":")
    enrollment = Enrollment(
        patient_id=patient,
        program_id=program,
        admitted_on=admitted,
        asam_edition=edition,
        asam_level=asam_level,
        discharged_on=discharged,
        discharge_reason=reason,
        transferred_from_id=came,
    )
    db.session.add(enrollment)
    db.session.flush()
    return enrollment.id


def order(enrollment, prescriber, medication, start, end=None, *, replaces=None, ended=False):
    form, strength, schedule = FORMS[medication]
    patient = db.session.get(Enrollment, enrollment).patient_id
    row = MedicationOrder(
        patient_id=patient,
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
        status=OrderStatus.ENDED if ended else OrderStatus.ACTIVE,
        ended_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC) if ended else None,
        ended_reason="changed" if ended else None,
        ended_by_id=prescriber if ended else None,
    )
    db.session.add(row)
    db.session.flush()
    return row.id


def filters(site_ids, on=ON, **kwargs) -> ReportFilters:
    values = {
        "site_ids": tuple(site_ids),
        "program_id": None,
        "medications": None,
        "date_from": on,
        "date_to": on,
        "on": on,
        "today": D(2026, 11, 29),
        "single_site": len(site_ids) == 1,
    }
    values.update(kwargs)
    return ReportFilters(**values)


@pytest.fixture
def clinic(app, site, make_site, make_program, make_patient, make_user):
    """Two sites; at MAIN on 2026-03-15: A, B (discharged that day), J (order not yet
    started), K (a buprenorphine order replaced by methadone) in the OTP; E in office
    buprenorphine (switched from buprenorphine-naloxone); F transferred OTP -> IOP that
    day; G in IOP without an order; C discharged the day before; D admitted the day after;
    H entered in error. At EAST: I in its OTP."""
    east = make_site("EAST")
    otp = make_program("Methadone maintenance")
    bup = make_program("Office buprenorphine", "office_buprenorphine", **NOT_OTP)
    iop = make_program("Intensive outpatient", "intensive_outpatient", **NOT_OTP)
    east_otp = make_program("East methadone", site_id=east)
    prescriber = make_user("clinician", is_prescriber=True, site_ids=[site, east])
    names = "ABCDEFGHJK"
    people = {
        n: make_patient(n, "Census", intake_date=D(2025, 1, 1), date_of_birth=D(1980, 1, 1))
        for n in names
    }
    people["I"] = make_patient(
        "I", "East", site_id=east, intake_date=D(2025, 1, 1), date_of_birth=D(1980, 1, 1)
    )
    with app.app_context():
        a = enroll(people["A"], otp, D(2026, 1, 5))
        order(a, prescriber, "methadone", D(2026, 1, 5))
        b = enroll(people["B"], otp, D(2026, 2, 1), ON, 2)
        order(b, prescriber, "methadone", D(2026, 2, 1), ON, ended=True)
        c = enroll(people["C"], otp, D(2026, 1, 5), D(2026, 3, 14), 1)
        order(c, prescriber, "methadone", D(2026, 1, 5), D(2026, 3, 14), ended=True)
        enroll(people["D"], otp, D(2026, 3, 16))
        e = enroll(people["E"], bup, D(2026, 2, 1), level="4:1.0")
        first = order(
            e, prescriber, "buprenorphine_naloxone", D(2026, 2, 1), D(2026, 3, 1), ended=True
        )
        order(e, prescriber, "buprenorphine", D(2026, 3, 2), replaces=first)
        f_otp = enroll(people["F"], otp, D(2026, 1, 10), ON, 4)
        order(f_otp, prescriber, "methadone", D(2026, 1, 10), ON, ended=True)
        f_iop = enroll(people["F"], iop, ON, level="3:2.1", came=f_otp)
        order(f_iop, prescriber, "methadone", ON)
        enroll(people["G"], iop, D(2026, 3, 1), level="3:2.1")
        h = enroll(people["H"], otp, D(2026, 1, 5))
        order(h, prescriber, "methadone", D(2026, 1, 5))
        error = db.session.get(Patient, people["H"])
        error.entered_in_error_at = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
        error.entered_in_error_reason = "registered twice"
        j = enroll(people["J"], otp, D(2026, 3, 1))
        order(j, prescriber, "methadone", D(2026, 3, 16))
        k = enroll(people["K"], otp, D(2026, 2, 1))
        replaced = order(k, prescriber, "buprenorphine", D(2026, 2, 1))
        order(k, prescriber, "methadone", D(2026, 3, 10), replaces=replaced)
        i = enroll(people["I"], east_otp, D(2026, 1, 5))
        order(i, prescriber, "methadone", D(2026, 1, 5))
        db.session.commit()
    return {
        "main": site,
        "east": east,
        "otp": otp,
        "bup": bup,
        "iop": iop,
        "prescriber": prescriber,
        "people": people,
    }


def table(result, key):
    return next(t for t in result.tables if t.key == key)


def column(result, key, label_key, value_key="patients"):
    return {row[label_key]: row[value_key] for row in table(result, key).rows}


def test_census_on_the_reference_day(app, clinic):
    with app.app_context():
        result = census.compute(filters([clinic["main"]]))
    assert table(result, "by-site").total["patients"] == 7
    assert column(result, "by-site", "site") == {"Main Street Clinic (MAIN)": 7}
    # B is counted on the day of discharge; F counts in the new program only.
    assert column(result, "by-program", "program") == {
        "Intensive outpatient": 2,
        "Methadone maintenance": 4,
        "Office buprenorphine": 1,
    }
    # E switched to buprenorphine; K's buprenorphine order was replaced by methadone;
    # J's order starts the next day.
    assert [(r["medication"], r["patients"]) for r in table(result, "by-medication").rows] == [
        ("Methadone", 4),
        ("Buprenorphine", 1),
        ("No MOUD order", 2),
    ]
    assert [(r["edition"], r["level"], r["patients"]) for r in table(result, "by-level").rows] == [
        ("ASAM 3rd ed.", "2.1", 2),
        ("ASAM 3rd ed.", "OTP", 4),
        ("ASAM 4th ed.", "1.0", 1),
    ]
    assert column(result, "survey", "substance") == {
        "Methadone": 4,
        "Buprenorphine (all products)": 1,
    }
    assert result.chart.categories == [
        "Intensive outpatient",
        "Methadone maintenance",
        "Office buprenorphine",
    ]
    assert result.chart.series == [("Patients", [2, 4, 1])]
    assert any("No MOUD order" in note for note in result.notes)


def test_the_day_before_counts_the_discharge_day_and_the_old_program(app, clinic):
    with app.app_context():
        result = census.compute(filters([clinic["main"]], on=D(2026, 3, 14)))
    # C discharged on 03-14 counts; F is still in the OTP; E's first order ended on 03-01.
    assert column(result, "by-program", "program") == {
        "Intensive outpatient": 1,
        "Methadone maintenance": 6,
        "Office buprenorphine": 1,
    }
    assert column(result, "by-medication", "medication") == {
        "Methadone": 5,
        "Buprenorphine": 1,
        "No MOUD order": 2,
    }
    assert column(result, "survey", "substance")["Methadone"] == 5


def test_the_second_site_counts_only_when_chosen(app, clinic):
    with app.app_context():
        both = census.compute(filters([clinic["main"], clinic["east"]]))
        east = census.compute(filters([clinic["east"]]))
    assert table(both, "by-site").total["patients"] == 8
    assert column(both, "by-site", "site") == {
        "Main Street Clinic (MAIN)": 7,
        "Site EAST (EAST)": 1,
    }
    assert column(east, "by-program", "program") == {"East methadone": 1}
    assert column(east, "survey", "substance")["Methadone"] == 1


def test_program_and_medication_filters(app, clinic):
    with app.app_context():
        iop = census.compute(filters([clinic["main"]], program_id=clinic["iop"]))
        methadone = census.compute(
            filters([clinic["main"]], medications=MedicationGroup.members("methadone"))
        )
    assert table(iop, "by-site").total["patients"] == 2
    assert column(iop, "by-medication", "medication") == {"Methadone": 1, "No MOUD order": 1}
    # One program chosen: the chart shows medications.
    assert iop.chart.categories == ["Methadone", "No MOUD order"]
    assert table(methadone, "by-site").total["patients"] == 4
    assert column(methadone, "by-program", "program") == {
        "Intensive outpatient": 1,
        "Methadone maintenance": 3,
    }
    # With a medication chosen, the rows that could only read 0 are left out: nobody
    # counted is without an order, and the survey's buprenorphine row is not asked for.
    assert column(methadone, "by-medication", "medication") == {"Methadone": 4}
    assert column(methadone, "survey", "substance") == {"Methadone": 4}
    assert any("left out" in note for note in methadone.notes)
    with app.app_context():
        buprenorphine = census.compute(
            filters([clinic["main"]], medications=MedicationGroup.members("buprenorphine"))
        )
    assert "No MOUD order" not in column(buprenorphine, "by-medication", "medication")
    assert list(column(buprenorphine, "survey", "substance")) == ["Buprenorphine (all products)"]


def test_an_empty_day_shows_the_empty_state(app, clinic):
    with app.app_context():
        result = census.compute(filters([clinic["main"]], on=D(2025, 6, 1)))
    assert table(result, "by-program").rows == []
    assert table(result, "by-medication").rows == []
    assert table(result, "by-site").total["patients"] == 0
    assert column(result, "survey", "substance") == {
        "Methadone": 0,
        "Buprenorphine (all products)": 0,
    }


def _statements(app, site_id) -> int:
    with app.app_context():
        return statement_count(lambda: census.compute(filters([site_id])))


def test_the_number_of_statements_does_not_grow_with_the_data(
    app, site, make_program, make_patient, make_user
):
    otp = make_program("Methadone maintenance")
    prescriber = make_user("clinician", is_prescriber=True)

    def add(n):
        for index in range(n):
            patient = make_patient(f"P{index}x{n}", "Load", intake_date=D(2025, 1, 1))
            with app.app_context():
                enrollment = enroll(patient, otp, D(2026, 1, 5))
                order(enrollment, prescriber, "methadone", D(2026, 1, 5))
                db.session.commit()

    add(1)
    one = _statements(app, site)
    add(30)
    assert _statements(app, site) == one


# --- HTTP ------------------------------------------------------------------------------


def test_the_administrator_sees_the_census_with_its_chart(app, client_as, clinic):
    admin = client_as("admin")
    response = admin.get("/reports/census?on=2026-03-15")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'data-testid="report-chart"' in html
    assert "Bar chart: Patients in treatment on 2026-03-15 by program." in html
    assert 'data-testid="report-table-by-program"' in html
    assert "No MOUD order" in html and "Reference-day census" in html
    printed = admin.get("/reports/census/print?on=2026-03-15").get_data(as_text=True)
    assert "data-print" in printed and "Methadone maintenance" in printed


def test_the_census_downloads_as_csv_with_small_cells_suppressed(app, client_as, clinic):
    admin = client_as("admin")
    response = admin.get("/reports/census/export.csv?on=2026-03-15&table=by-program")
    assert response.status_code == 200
    assert "census-by-program-2026-03-15.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["Program", "Site", "Kind of program", "Patients"]
    assert rows[1] == ["Intensive outpatient", "MAIN", "Intensive outpatient", "2"]
    assert rows[-1] == ["All programs", "", "", "7"]
    app.config["SUPPRESS_SMALL_CELLS"] = True
    suppressed = admin.get("/reports/census/export.csv?on=2026-03-15&table=survey")
    rows = list(csv.reader(io.StringIO(suppressed.get_data(as_text=True))))
    assert rows[1:] == [["Methadone", "<11"], ["Buprenorphine (all products)", "<11"]]


def test_a_bad_date_is_refused_next_to_the_field(client_as, clinic):
    response = client_as("admin").get("/reports/census?on=2026-02-30")
    assert response.status_code == 400
    assert "Enter a valid date." in response.get_data(as_text=True)


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_administrators_see_the_census(client_as, role):
    assert client_as(role).get("/reports/census").status_code == 403
