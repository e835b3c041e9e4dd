"""Shared set-up of the take-home tests: a patient at a given treatment day on an order, the
users of each role, and a call of ``record_decision`` with every criterion met."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest
import time_machine

from clinic.accounts.models import User
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import take_home_decisions as decisions
from clinic.medications.models import MedicationOrder
from clinic.medications.take_home_models import CRITERIA, TakeHomeDecision
from clinic.patients.models import Patient, Program
from clinic.sites.models import Site

CHICAGO = ZoneInfo("America/Chicago")
# A Wednesday, site-local noon (Chicago): "today" is 2026-03-18 in fixtures and tests.
NOW = dt.datetime(2026, 3, 18, 17, 0, tzinfo=dt.UTC)
TODAY = dt.date(2026, 3, 18)


@pytest.fixture
def site_noon():
    with time_machine.travel(NOW, tick=True):
        yield


def all_met(**overrides) -> dict[str, decisions.Criterion]:
    criteria = {
        name: decisions.Criterion(True, f"{label}: documented.") for name, label in CRITERIA
    }
    criteria.update(overrides)
    return criteria


class World:
    """The records of one test (ids), read in the test's request context."""

    def __init__(self, ids: dict[str, int]) -> None:
        self.ids = ids

    def user(self, key: str) -> User:
        return db.session.get(User, self.ids[key])

    @property
    def patient(self) -> Patient:
        return db.session.get(Patient, self.ids["patient"])

    @property
    def order(self) -> MedicationOrder:
        return db.session.get(MedicationOrder, self.ids["order"])

    @property
    def site(self) -> Site:
        return db.session.get(Site, self.patient.site_id)

    def record(self, *, actor: str = "prescriber", approve: bool = True, **fields):
        values = {
            "order": self.order,
            "schedule_kind": "days",
            "start_on": TODAY,
            "days": 7,
            "criteria": all_met(),
            "storage_education_on": TODAY,
        }
        values.update(fields)
        made = decisions.record_decision(
            self.patient, actor=self.user(actor), approve=approve, **values
        )
        db.session.commit()
        return made

    def refusal(self, **fields) -> DomainError:
        """The refusal of ``record(**fields)``; nothing is saved."""
        before = db.session.query(TakeHomeDecision).count()
        with pytest.raises(DomainError) as refused:
            self.record(**fields)
        db.session.rollback()
        assert db.session.query(TakeHomeDecision).count() == before
        return refused.value


@pytest.fixture
def make_world(app, site, make_user, make_patient, make_program, make_enrollment, make_order):
    """``make(day=35, medication="methadone", closed="7", **program_settings)``: a patient
    admitted ``day`` days before today (so today is treatment day ``day``) on an order of
    ``medication`` from the admission, at the MAIN site closed on ``closed`` weekdays."""

    def make(*, day: int = 35, medication: str = "methadone", closed: str = "7", **settings):
        review_days = settings.pop("take_home_review_days", None)
        admitted = TODAY - dt.timedelta(days=day)
        ids = {
            "prescriber": make_user("clinician", is_prescriber=True),
            "clinician": make_user("clinician"),
            "staff": make_user("staff"),
            "admin": make_user("admin"),
            "patient": make_patient(intake_date=admitted),
        }
        program = make_program(f"Methadone {uuid.uuid4().hex[:6]}", **settings)
        ids["program"] = program
        ids["enrollment"] = make_enrollment(ids["patient"], program, admitted_on=admitted)
        order_fields = {"start_on": admitted}
        if medication != "methadone":
            order_fields.update(
                medication=medication, product_form="sublingual_film", strength="8 mg"
            )
            order_fields["dose_mg"] = "16"
        ids["order"] = make_order(ids["enrollment"], ids["prescriber"], **order_fields)
        with app.app_context():
            db.session.get(Site, site).closed_weekdays = closed
            if review_days is not None:  # not a setting of the program form yet
                db.session.get(Program, program).take_home_review_days = review_days
            db.session.commit()
        return World(ids)

    return make


@pytest.fixture
def world(app, site_noon, make_world):
    made = make_world()
    with app.test_request_context():
        yield made
