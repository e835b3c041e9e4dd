"""Fixtures and helpers shared by the tests/test_drug_tests*.py modules (no tests here).

``lab`` builds a small clinic: the MAIN site (America/Chicago) with a clinician, a
prescriber, an administrator and a front-desk staff member; a methadone patient admitted
on 5 Jan 2026 with a methadone order from that day; a buprenorphine patient; a patient of
another site (with its clinician); a patient never admitted. Ids only: tests open their
own app contexts (``ctx()``: a request context, as the services' audit expects).
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications import drug_tests
from clinic.medications.drug_test_models import DrugTest, RandomTestDraw, RandomTestSelection
from clinic.patients.models import Patient
from tests.conftest import login

ADMITTED = dt.date(2026, 1, 5)
CHICAGO = dt.timezone(dt.timedelta(hours=-6))  # CST, for instants in winter


@dataclass
class Lab:
    app: object
    site: int
    other_site: int
    clinician: int
    prescriber: int
    admin: int
    staff: int
    other_clinician: int
    methadone: int
    buprenorphine: int
    other_site_patient: int
    never_admitted: int
    methadone_order: int

    def user(self, user_id: int) -> User:
        return db.session.get(User, user_id)

    def patient(self, patient_id: int) -> Patient:
        return db.session.get(Patient, patient_id)

    @contextmanager
    def ctx(self):
        with self.app.test_request_context():
            yield


@pytest.fixture(name="lab")
def lab_fixture(
    app, site, make_site, make_user, make_patient, make_program, make_enrollment, make_order
) -> Lab:
    other_site = make_site("EAST")
    clinician = make_user("clinician", full_name="Tess Tester")
    prescriber = make_user("clinician", full_name="Dr. Pia Prescriber", is_prescriber=True)
    admin = make_user("admin")
    staff = make_user("staff")
    other_clinician = make_user("clinician", site_ids=[other_site])
    program = make_program()
    other_program = make_program(site_id=other_site)
    methadone = make_patient("Mona", "Methadone")
    buprenorphine = make_patient("Bea", "Bupe")
    other_patient = make_patient("Olaf", "East", site_id=other_site)
    never = make_patient("Nel", "Never")
    enrollments = {
        patient: make_enrollment(patient, program, admitted_on=ADMITTED)
        for patient in (methadone, buprenorphine)
    }
    make_enrollment(other_patient, other_program, admitted_on=ADMITTED)
    methadone_order = make_order(enrollments[methadone], prescriber, start_on=ADMITTED)
    make_order(
        enrollments[buprenorphine],
        prescriber,
        medication="buprenorphine_naloxone",
        product_form="sublingual_film",
        strength="8 mg/2 mg",
        dose_mg="16",
        start_on=ADMITTED,
    )
    return Lab(
        app,
        site,
        other_site,
        clinician,
        prescriber,
        admin,
        staff,
        other_clinician,
        methadone,
        buprenorphine,
        other_patient,
        never,
        methadone_order,
    )


def at(day: dt.date, hour: int = 9, minute: int = 0) -> dt.datetime:
    """A winter instant in Chicago (CST), as an aware datetime."""
    return dt.datetime.combine(day, dt.time(hour, minute), CHICAGO)


def collect(lab: Lab, patient_id: int | None = None, *, when=None, actor=None, **changes):
    """Record a urine test (committed); returns its id. Inside ``lab.ctx()``."""
    values = {
        "collected_at": when or at(dt.date(2026, 3, 2)),
        "specimen": "urine",
        "observed": True,
        "reason": "random",
        "temperature_in_range": True,
        "adulteration_suspected": False,
    }
    values.update(changes)
    test = drug_tests.record_test(
        lab.patient(patient_id or lab.methadone),
        actor=lab.user(actor or lab.clinician),
        **values,
    )
    db.session.commit()
    return test.id


def enter(lab: Lab, test_id: int, *rows, actor=None) -> None:
    """Enter results (committed): rows of (analyte, result, method[, other name])."""
    drug_tests.record_results(
        db.session.get(DrugTest, test_id),
        [drug_tests.ResultRow(*row) for row in rows],
        actor=lab.user(actor or lab.clinician),
    )
    db.session.commit()


def selection(lab: Lab, patient_id: int, day: dt.date) -> int:
    """A random draw of ``day`` at the patient's site picking the patient; its selection id."""
    patient = lab.patient(patient_id)
    draw = db.session.scalar(
        sa.select(RandomTestDraw).where(
            RandomTestDraw.site_id == patient.site_id, RandomTestDraw.draw_on == day
        )
    )
    if draw is None:
        draw = RandomTestDraw(site_id=patient.site_id, draw_on=day, seed="s33d", eligible_count=3)
        db.session.add(draw)
        db.session.flush()
    chosen = RandomTestSelection(draw_id=draw.id, patient_id=patient_id, probability=120)
    db.session.add(chosen)
    db.session.commit()
    return chosen.id


def signed_in(app, username_of, user_id: int):
    client = app.test_client()
    assert login(client, username_of(user_id)).status_code == 302
    return client


def count_statements(app):
    """A context manager collecting the SQL statements run meanwhile."""
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    @contextmanager
    def counting():
        with app.app_context():
            engine = db.engine
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            yield statements
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)

    return counting()
