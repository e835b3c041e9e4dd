"""Call-back pages: the worklist for each role (staff: who is due, no forms), starting a
call-back and recording its outcome over HTTP (double submit, bad input kept), and the
worklist's constant number of statements at 1,000 patients."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

import pytest
import sqlalchemy as sa
import time_machine

from clinic.extensions import db
from clinic.medications.models import MedicationOrder
from clinic.medications.take_home_models import CallBack, DiversionIncident, TakeHomeDecision
from clinic.patients.models import Enrollment, Patient
from tests.conftest import CSRF_RE
from tests.routes_bottles import CRITERIA_NAMES
from tests.test_aftercare_directory import count_statements
from tests.test_call_backs_helpers import (
    called_ids_fixture,  # noqa: F401
    decide,
    dispense,
    on_methadone_fixture,  # noqa: F401
    staff_ids_fixture,  # noqa: F401
    today_fixture,  # noqa: F401
)

TOKEN_RE = re.compile(r'name="submission_token"[^>]*? value="([^"]+)"')


@pytest.fixture(autouse=True)
def site_noon():
    with time_machine.travel(dt.datetime(2026, 3, 18, 17, 0, tzinfo=dt.UTC), tick=True):
        yield


# --- the pages -------------------------------------------------------------------------


def text(response) -> str:
    return unescape(response.get_data(as_text=True))


def test_staff_see_who_is_due_without_the_forms(app, on_methadone, staff_ids, today, client_as):
    patient = on_methadone()
    with app.test_request_context():
        decide(patient, today - dt.timedelta(days=10), 20, staff_ids)
    staff = client_as("staff")
    page = text(staff.get("/call-backs/"))
    assert "Smith, Jo" in page and "0 of 1 required" in page
    assert "Start a call-back" not in page
    assert staff.get(f"/call-backs/patients/{patient}/start").status_code == 403
    clinician = text(client_as("clinician").get("/call-backs/"))
    assert "Start a call-back" in clinician


def test_a_clinician_starts_a_call_back_and_records_a_no_show(app, called_ids, client_as):
    _patient, call_back_id = called_ids
    clinician = client_as("clinician")
    url = f"/call-backs/{call_back_id}/outcome"
    html = clinician.get(url).get_data(as_text=True)
    assert 'data-testid="bottles-expected">4<' in html
    data = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "submission_token": TOKEN_RE.search(html).group(1),
        "outcome": "no_show",
        "bottles_counted": "",
        "note": "No answer\x00",
    }
    refused = clinician.post(url, data=data)
    assert refused.status_code == 200
    assert "No answer" in text(refused)
    data["note"] = "Did not come within 24 hours."
    first = clinician.post(url, data=data)
    second = clinician.post(url, data=data)
    assert first.status_code == second.status_code == 302
    with app.app_context():
        assert db.session.get(CallBack, call_back_id).outcome.value == "no_show"
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DiversionIncident)) == 1
    assert 'data-testid="outcome-recorded"' in text(clinician.get(url))


@pytest.mark.parametrize("bad", ["abc", "-1", "99999999999999", "3\x00"])
def test_a_bad_count_is_a_field_error(app, called_ids, client_as, bad):
    _patient, call_back_id = called_ids
    clinician = client_as("clinician")
    url = f"/call-backs/{call_back_id}/outcome"
    html = clinician.get(url).get_data(as_text=True)
    data = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "submission_token": TOKEN_RE.search(html).group(1),
        "outcome": "complete",
        "bottles_counted": bad,
        "note": "Kept",
    }
    response = clinician.post(url, data=data)
    assert response.status_code == 200
    assert "is-invalid" in text(response) and "Kept" in text(response)
    with app.app_context():
        assert db.session.get(CallBack, call_back_id).outcome is None


def test_starting_over_http_makes_one_call_back(app, on_methadone, staff_ids, today, client_as):
    patient = on_methadone()
    with app.test_request_context():
        decide(patient, today + dt.timedelta(days=1), 7, staff_ids)
        dispense(patient, staff_ids, 3)
    clinician = client_as("clinician")
    url = f"/call-backs/patients/{patient}/start"
    html = clinician.get(url).get_data(as_text=True)
    data = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "submission_token": TOKEN_RE.search(html).group(1),
        "confirmed": "y",
    }
    assert clinician.post(url, data=data).status_code == 302
    assert clinician.post(url, data=data).status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(CallBack)) == 1


# --- scale ----------------------------------------------------------------------------------


def _bulk_patients(site_id: int, program_id: int, order_id: int, user_id: int, today, n: int):
    first = db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(Patient.id), 0))) or 0
    db.session.execute(
        sa.insert(Patient),
        [
            {
                "site_id": site_id,
                "mrn": f"CB-{first + i:07d}",
                "first_name": "Bulk",
                "last_name": f"Patient{i:05d}",
                "first_key": "bulk",
                "last_key": f"patient{i:05d}",
                "date_of_birth": dt.date(1980, 1, 1),
                "sex_at_birth": "female",
                "primary_substance": "fentanyl",
                "intake_date": dt.date(2025, 1, 1),
            }
            for i in range(n)
        ],
    )
    ids = list(
        db.session.scalars(
            sa.select(Patient.id).where(Patient.mrn.like("CB-%")).order_by(Patient.id)
        )
    )
    db.session.execute(
        sa.insert(Enrollment),
        [
            {
                "patient_id": pid,
                "program_id": program_id,
                "admitted_on": today - dt.timedelta(days=300),
                "asam_edition": "3",
                "asam_level": "OTP",
            }
            for pid in ids
        ],
    )
    enrollments = dict(
        db.session.execute(
            sa.select(Enrollment.patient_id, Enrollment.id).where(Enrollment.patient_id.in_(ids))
        ).all()
    )
    now = dt.datetime.now(dt.UTC)
    db.session.execute(
        sa.insert(TakeHomeDecision),
        [
            {
                "patient_id": pid,
                "site_id": site_id,
                "enrollment_id": enrollments[pid],
                "order_id": order_id,
                "medication": "methadone",
                "schedule_kind": "days",
                "start_on": today - dt.timedelta(days=10 + i % 300),
                "end_on": today + dt.timedelta(days=20),
                "days": 28,
                "treatment_day": 40,
                "cap_days": 28,
                "counted_days": 20,
                "storage_education_on": today,
                "recorded_by_id": user_id,
                "approved_by_id": user_id,
                "approved_at": now,
                **{f"{name}_met": True for name in CRITERIA_NAMES},
                **{f"{name}_note": "Documented." for name in CRITERIA_NAMES},
            }
            for i, pid in enumerate(ids)
        ],
    )
    db.session.commit()
    return ids


def test_the_worklist_runs_a_constant_number_of_statements(
    app, on_methadone, staff_ids, today, client_as
):
    patient = on_methadone()
    clinician = client_as("clinician")
    with app.test_request_context():
        decide(patient, today - dt.timedelta(days=10), 20, staff_ids)

    def statements() -> int:
        with count_statements(app) as seen:
            assert clinician.get("/call-backs/").status_code == 200
        return len(seen)

    few = statements()
    with app.test_request_context():
        found = db.session.get(Patient, patient)
        order = db.session.scalars(sa.select(MedicationOrder)).first()
        enrollment = db.session.scalars(sa.select(Enrollment)).first()
        _bulk_patients(
            found.site_id, enrollment.program_id, order.id, staff_ids["clinician"], today, 1000
        )
    many = statements()
    assert few == many
    page = text(clinician.get("/call-backs/"))
    assert page.count("Start a call-back") == 1001
