"""The TEDS export (clinic/reports/teds.py): TEDS-A admission and TEDS-D discharge records
of a period with TEDS codes, on hand-built records with known answers (an age-group
boundary, a transfer between programs giving a discharge and an admission record, the
client id from the state registry else the MRN, a patient entered in error, a second
site), and the list of TEDS fields the app does not hold."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.extensions import db
from clinic.patients.models import Patient
from clinic.reports import teds
from tests.statements import statement_count
from tests.test_reports_census import NOT_OTP, enroll, order
from tests.test_reports_census import filters as census_filters

D = dt.date
Q2 = (D(2026, 4, 1), D(2026, 6, 30))


def filters(site_ids, period=Q2, **kwargs):
    return census_filters(site_ids, date_from=period[0], date_to=period[1], **kwargs)


@pytest.fixture
def clinic(app, site, make_site, make_program, make_patient, make_user):
    """Second quarter 2026 at MAIN. Admissions: T1 (OTP, 04-10, a state registry id), T2
    (IOP, 04-10, 20 years old, 21 the next day), T5 (OTP, 04-20), T3 (outpatient, 05-01, a
    naltrexone order), T4's IOP enrollment (transferred from the OTP on 05-10).
    Discharges: T4's OTP enrollment (05-10, reason 4, 125 days), T5 (06-30, reason 1,
    71 days). Not exported: T6 (entered in error), T7 (EAST), T8 (admitted 03-31,
    discharged 07-01)."""
    east = make_site("EAST")
    otp = make_program("Methadone maintenance")
    iop = make_program("Intensive outpatient", "intensive_outpatient", **NOT_OTP)
    outpatient = make_program("Outpatient", "outpatient", **NOT_OTP)
    east_otp = make_program("East methadone", site_id=east)
    prescriber = make_user("clinician", is_prescriber=True)
    intake = {"intake_date": D(2025, 1, 1)}
    people = {
        1: make_patient(
            "T1",
            "Teds",
            date_of_birth=D(1990, 5, 10),
            sex_at_birth="male",
            primary_substance="heroin",
            state_registry_id="ST-123",
            **intake,
        ),
        2: make_patient("T2", "Teds", date_of_birth=D(2005, 4, 11), **intake),
        3: make_patient(
            "T3",
            "Teds",
            date_of_birth=D(1960, 1, 1),
            sex_at_birth="intersex",
            primary_substance="alcohol",
            **intake,
        ),
        4: make_patient(
            "T4",
            "Teds",
            date_of_birth=D(1980, 1, 1),
            sex_at_birth="male",
            primary_substance="prescription_opioids",
            **intake,
        ),
        5: make_patient("T5", "Teds", primary_substance="cocaine", **intake),
        6: make_patient("T6", "Teds", **intake),
        7: make_patient("T7", "Teds", site_id=east, **intake),
        8: make_patient("T8", "Teds", **intake),
    }
    with app.app_context():
        enrollments = {
            1: enroll(people[1], otp, D(2026, 4, 10)),
            2: enroll(people[2], iop, D(2026, 4, 10), level="3:2.1"),
            5: enroll(people[5], otp, D(2026, 4, 20), D(2026, 6, 30), 1),
            3: enroll(people[3], outpatient, D(2026, 5, 1), level="3:1"),
        }
        order(enrollments[3], prescriber, "naltrexone", D(2026, 5, 1))
        old = enroll(people[4], otp, D(2026, 1, 5), D(2026, 5, 10), 4)
        enrollments[4] = old
        enrollments["4b"] = enroll(people[4], iop, D(2026, 5, 10), level="3:2.1", came=old)
        enroll(people[6], otp, D(2026, 4, 15), D(2026, 5, 15), 1)
        error = db.session.get(Patient, people[6])
        error.entered_in_error_at = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
        error.entered_in_error_reason = "wrong patient"
        enroll(people[7], east_otp, D(2026, 4, 15), D(2026, 5, 15), 1)
        enroll(people[8], otp, D(2026, 3, 31), D(2026, 7, 1), 2)
        mrns = {n: db.session.get(Patient, p).mrn for n, p in people.items()}
        db.session.commit()
    return {
        "main": site,
        "east": east,
        "otp": otp,
        "iop": iop,
        "enrollments": enrollments,
        "mrns": mrns,
    }


def rows_of(result, name):
    header, rows = result.files[name]
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_admission_records_with_teds_codes(app, clinic):
    with app.app_context():
        result = teds.compute(filters([clinic["main"]]))
    header, _ = result.files["teds-admissions"]
    assert header == [
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
    e, mrns = clinic["enrollments"], clinic["mrns"]
    assert [list(r.values()) for r in rows_of(result, "teds-admissions")] == [
        # T1: 35 years old (group 7), male, heroin (5), OTP: outpatient (7), MOUD (1).
        [e[1], "ST-123", 2026, "20260410", 7, 1, 5, 7, 1],
        # T2: 20 the day before her 21st birthday (group 3), female, fentanyl (7), IOP (6).
        [e[2], mrns[2], 2026, "20260410", 3, 2, 7, 6, 2],
        # T5: 46 (group 9), cocaine (3).
        [e[5], mrns[5], 2026, "20260420", 9, 2, 3, 7, 1],
        # T3: 66 (group 12), intersex (-9), alcohol (2), outpatient with a naltrexone order.
        [e[3], mrns[3], 2026, "20260501", 12, -9, 2, 7, 1],
        # T4's transfer into IOP is an admission record; prescription opioids are 7.
        [e["4b"], mrns[4], 2026, "20260510", 9, 1, 7, 6, 2],
    ]


def test_discharge_records_with_reason_and_length_of_stay(app, clinic):
    with app.app_context():
        result = teds.compute(filters([clinic["main"]]))
    e, mrns = clinic["enrollments"], clinic["mrns"]
    assert rows_of(result, "teds-discharges") == [
        {
            "CASEID": e[4],
            "CLIENTID": mrns[4],
            "ADMYR": 2026,
            "ADMDATE": "20260105",
            "DISYR": 2026,
            "DISDATE": "20260510",
            "REASON": 4,
            "LOS": 125,
            "AGE": 9,
            "GENDER": 1,
            "SUB1": 7,
            "SERVICES": 7,
            "SERVICES_D": 7,
            "METHUSE": 1,
        },
        {
            "CASEID": e[5],
            "CLIENTID": mrns[5],
            "ADMYR": 2026,
            "ADMDATE": "20260420",
            "DISYR": 2026,
            "DISDATE": "20260630",
            "REASON": 1,
            "LOS": 71,
            "AGE": 9,
            "GENDER": 2,
            "SUB1": 3,
            "SERVICES": 7,
            "SERVICES_D": 7,
            "METHUSE": 1,
        },
    ]
    records = {r["records"]: r["count"] for r in result.tables[0].rows}
    assert records == {"Admissions (TEDS-A)": 5, "Discharges (TEDS-D)": 2}
    assert result.chart.categories == ["2026-04", "2026-05", "2026-06"]
    assert result.chart.series == [
        ("Admissions (TEDS-A)", [3, 2, 0]),
        ("Discharges (TEDS-D)", [0, 1, 1]),
    ]


def test_the_fields_the_app_does_not_hold_are_listed(app, clinic):
    with app.app_context():
        result = teds.compute(filters([clinic["main"]]))
    not_held = next(t for t in result.tables if t.key == "not-held")
    variables = " ".join(r["variable"] for r in not_held.rows)
    for name in ("RACE", "ETHNIC", "EDUC", "EMPLOY", "LIVARAG", "ARRESTS", "FREQ1", "ROUTE1"):
        assert name in variables
    for name in ("FRSTUSE1", "PSOURCE", "PSYPROB"):
        assert name in variables
    held = " ".join(r["variable"] for r in next(t for t in result.tables if t.key == "fields").rows)
    for name in teds.ADMISSION_HEADER + teds.DISCHARGE_HEADER:
        assert name in held


def test_filters_and_the_second_site(app, clinic):
    with app.app_context():
        iop = teds.compute(filters([clinic["main"]], program_id=clinic["iop"]))
        both = teds.compute(filters([clinic["main"], clinic["east"]]))
        july = teds.compute(filters([clinic["main"]], period=(D(2026, 7, 1), D(2026, 7, 31))))
    assert [r["CASEID"] for r in rows_of(iop, "teds-admissions")] == [
        clinic["enrollments"][2],
        clinic["enrollments"]["4b"],
    ]
    assert rows_of(iop, "teds-discharges") == []
    assert len(rows_of(both, "teds-admissions")) == 6
    # Each exported record's patient is audited with the export.
    assert len(both.named_patients["teds-admissions"]) == 6
    assert len(both.named_patients["teds-discharges"]) == 3
    assert len(rows_of(both, "teds-discharges")) == 3
    assert [r["REASON"] for r in rows_of(july, "teds-discharges")] == [2]


@pytest.mark.parametrize(
    ("age", "code"),
    [
        (None, -9),
        (11, -9),
        (12, 1),
        (14, 1),
        (15, 2),
        (20, 3),
        (21, 4),
        (54, 10),
        (55, 11),
        (64, 11),
        (65, 12),
    ],
)
def test_age_groups(age, code):
    assert teds.age_group(age) == code


def test_the_default_period_is_the_last_full_quarter():
    assert teds.last_full_quarter(D(2026, 11, 29)) == (D(2026, 7, 1), D(2026, 9, 30))
    assert teds.last_full_quarter(D(2026, 1, 1)) == (D(2025, 10, 1), D(2025, 12, 31))


def _statements(app, site_id) -> int:
    with app.app_context():
        return statement_count(lambda: teds.compute(filters([site_id])))


def test_the_number_of_statements_does_not_grow_with_the_data(
    app, site, make_program, make_patient
):
    otp = make_program("Methadone maintenance")

    def add(n):
        for index in range(n):
            patient = make_patient(f"P{index}x{n}", "Load", intake_date=D(2025, 1, 1))
            with app.app_context():
                enroll(patient, otp, D(2026, 4, 1), D(2026, 5, 1 + index % 20), 1)
                db.session.commit()

    add(1)
    one = _statements(app, site)
    add(30)
    assert _statements(app, site) == one


# --- HTTP ------------------------------------------------------------------------------

PERIOD = "date_from=2026-04-01&date_to=2026-06-30"


def test_the_administrator_sees_the_counts_and_the_field_list(client_as, clinic):
    admin = client_as("admin")
    response = admin.get(f"/reports/teds?{PERIOD}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'data-testid="report-chart"' in html
    assert 'data-testid="report-table-not-held"' in html and "Referral source" in html
    assert "file=teds-admissions" in html and "file=teds-discharges" in html
    printed = admin.get(f"/reports/teds/print?{PERIOD}").get_data(as_text=True)
    assert "data-print" in printed and "TEDS fields the app does not hold" in printed


def test_the_teds_files_download_and_are_audited(app, client_as, clinic):
    app.config["SUPPRESS_SMALL_CELLS"] = True  # records are not counts: never suppressed
    admin = client_as("admin")
    response = admin.get(f"/reports/teds/export.csv?{PERIOD}&file=teds-discharges")
    assert response.status_code == 200
    assert "teds-discharges-2026-04-01-2026-06-30.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == teds.DISCHARGE_HEADER
    assert rows[2][4:8] == ["2026", "20260630", "1", "71"]
    admissions = admin.get(f"/reports/teds/export.csv?{PERIOD}&file=teds-admissions")
    rows = list(csv.reader(io.StringIO(admissions.get_data(as_text=True))))
    assert rows[1][1:] == ["ST-123", "2026", "20260410", "7", "1", "5", "7", "1"]
    counts = admin.get(f"/reports/teds/export.csv?{PERIOD}&table=records")
    assert list(csv.reader(io.StringIO(counts.get_data(as_text=True))))[1] == [
        "Admissions (TEDS-A)",
        "teds-admissions",
        "<11",
    ]
    with app.app_context():
        events = list(
            db.session.scalars(
                sa.select(AuditEvent)
                .where(AuditEvent.action == "export", AuditEvent.entity_type == "report")
                .order_by(AuditEvent.seq)
            )
        )
    # One event per exported file, then one per patient its records name.
    per_patient = [e for e in events if e.patient_id is not None]
    assert len(per_patient) == 2 + 5
    events = [e for e in events if e.patient_id is None]
    details = [json.loads(e.details) for e in events]
    assert [(d["report"], d["file"], d["rows"]) for d in details] == [
        ("teds", "teds-discharges", 2),
        ("teds", "teds-admissions", 5),
        ("teds", "teds-records", 2),
    ]


def test_a_bad_period_is_refused(client_as, clinic):
    response = client_as("admin").get("/reports/teds/export.csv?file=teds-admissions&date_to=x")
    assert response.status_code == 400
    assert "Enter a valid date." in response.get_data(as_text=True)


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_administrators_export_teds(client_as, role):
    assert client_as(role).get("/reports/teds/export.csv?file=teds-admissions").status_code == 403
