"""Fixtures and helpers the call-back tests share (test_call_backs*.py): the day, the
clinicians, a methadone patient, a decision, a dispensing, a call-back under way."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications import call_backs, take_home_bottles
from clinic.patients.models import Patient
from clinic.sites.models import Site
from clinic.sites.time import site_today
from tests.routes_bottles import make_decision


@pytest.fixture(name="today")
def today_fixture(app, site) -> dt.date:
    with app.app_context():
        return site_today(db.session.get(Site, site))


@pytest.fixture(name="staff_ids")
def staff_ids_fixture(make_user) -> dict[str, int]:
    return {
        "nurse": make_user("clinician", may_dispense=True),
        "clinician": make_user("clinician"),
        "prescriber": make_user("clinician", is_prescriber=True),
    }


@pytest.fixture(name="on_methadone")
def on_methadone_fixture(
    app, make_patient, make_program, make_enrollment, make_order, staff_ids, today
):
    """A methadone patient admitted 200 days ago (order since then)."""

    def make(first="Jo", last="Smith", *, site_id=None, in_treatment=200) -> int:
        patient = make_patient(first, last, site_id=site_id, intake_date=dt.date(2025, 1, 2))
        program = make_program(f"OTP {uuid.uuid4().hex[:6]}", site_id=site_id)
        admitted = today - dt.timedelta(days=in_treatment)
        enrollment = make_enrollment(patient, program, admitted_on=admitted)
        make_order(
            enrollment,
            staff_ids["prescriber"],
            start_on=admitted,
            dose_mg="60",
            justification="Tolerance documented.",
        )
        return patient

    return make


def user(user_id: int) -> User:
    return db.session.get(User, user_id)


def decide(patient_id: int, start_on: dt.date, days: int | None, staff_ids, **kwargs):
    decision = make_decision(
        patient_id, start_on=start_on, days=days, user_id=staff_ids["prescriber"], **kwargs
    )
    db.session.commit()
    return decision


def dispense(patient_id: int, staff_ids, count: int, *, now: dt.datetime | None = None):
    dispensing = take_home_bottles.dispense_take_homes(
        db.session.get(Patient, patient_id), actor=user(staff_ids["nurse"]), count=count, now=now
    )
    db.session.commit()
    return dispensing


@pytest.fixture(name="called_ids")
def called_ids_fixture(app, on_methadone, staff_ids, today) -> tuple[int, int]:
    """A patient with 4 bottles in hand, called back now: (patient id, call-back id)."""
    patient = on_methadone()
    with app.test_request_context():
        decide(patient, today + dt.timedelta(days=1), 7, staff_ids)
        dispense(patient, staff_ids, 4)
        call_back = call_backs.start_call_back(
            db.session.get(Patient, patient), actor=user(staff_ids["clinician"])
        )
        db.session.commit()
        return patient, call_back.id
