"""Fixtures and helpers shared by the tests/test_therapy_*.py modules (no tests here).

Import ``therapy_fixture`` into a module to use the ``therapy`` fixture there.

``therapy`` builds a small clinic: the MAIN site with a counselor (Dan), a co-therapist,
a trainee and her supervisor, an administrator and a front-desk staff member; eight
enrolled patients at MAIN; a patient at another site; a patient at MAIN never enrolled.
The test then runs inside an app context.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.db import utcnow
from clinic.extensions import db
from clinic.therapy import sessions
from clinic.therapy.models import TherapySession

PATIENT_NAMES = [
    ("Ana", "Alvarez"),
    ("Ben", "Brooks"),
    ("Cleo", "Castillo"),
    ("Dmitri", "Petrov"),
    ("Esme", "Núñez"),
    ("Farid", "Haddad"),
    ("Gwen", "Okafor"),
    ("Hugo", "Lindqvist"),
]


@dataclass
class Clinic:
    site: int
    other_site: int
    program: int
    dan: int
    cotherapist: int
    trainee: int
    supervisor: int
    admin: int
    staff: int
    patients: list[int]
    other_site_patient: int
    unenrolled_patient: int

    def user(self, user_id: int) -> User:
        return db.session.get(User, user_id)


@pytest.fixture(name="therapy")
def therapy_fixture(
    app, site, make_site, make_user, make_patient, make_program, make_enrollment
) -> Iterator[Clinic]:
    other_site = make_site("EAST")
    program = make_program()
    other_program = make_program("East methadone", site_id=other_site)
    dan = make_user("clinician", full_name="Dan Counselor")
    cotherapist = make_user("clinician", full_name="Cora Cotherapist")
    supervisor = make_user("clinician", full_name="Sue Supervisor")
    trainee = make_user("clinician", full_name="Tess Trainee")
    admin = make_user("admin")
    staff = make_user("staff")
    patients = []
    for first, last in PATIENT_NAMES:
        patient = make_patient(first, last)
        make_enrollment(patient, program)
        patients.append(patient)
    other = make_patient("Olga", "Otherside", site_id=other_site)
    make_enrollment(other, other_program)
    unenrolled = make_patient("Uma", "Unenrolled")
    with app.app_context():
        user = db.session.get(User, trainee)
        user.is_trainee = True
        user.supervisor_id = supervisor
        db.session.commit()
        yield Clinic(
            site=site,
            other_site=other_site,
            program=program,
            dan=dan,
            cotherapist=cotherapist,
            trainee=trainee,
            supervisor=supervisor,
            admin=admin,
            staff=staff,
            patients=patients,
            other_site_patient=other,
            unenrolled_patient=unenrolled,
        )


def hours_ago(hours: float) -> dt.datetime:
    return (utcnow() - dt.timedelta(hours=hours)).replace(microsecond=0)


def earlier_today(hours: float, timezone: str = "America/Chicago") -> dt.datetime:
    """``hours_ago(hours)``, but never before the site's local midnight: a session that
    must be on "today's" list stays there whatever the hour the suite runs (the default
    site is in Chicago, where a day starts at 05:00 or 06:00 UTC). Aware, UTC."""
    now = utcnow().replace(microsecond=0)
    midnight = now.astimezone(ZoneInfo(timezone)).replace(hour=0, minute=0, second=0)
    return max(now - dt.timedelta(hours=hours), midnight.astimezone(dt.UTC))


def plan(
    clinic: Clinic,
    patient_ids: list[int],
    *,
    actor: int | None = None,
    starts_at: dt.datetime | None = None,
    kind: str = "group",
    duration: int = 60,
    group_name: str | None = None,
) -> TherapySession:
    """Plan a session through the service (default: a group Dan ran two hours ago)."""
    return sessions.plan_session(
        actor=clinic.user(actor or clinic.dan),
        plan=sessions.SessionPlan(
            site_id=clinic.site,
            starts_at=starts_at or hours_ago(2),
            duration_minutes=duration,
            kind=kind,
            modality="relapse_prevention",
            setting="in_person",
            patient_ids=patient_ids,
            group_name=group_name,
        ),
    )


def attended(patient_ids: list[int], minutes: int = 60) -> list[sessions.AttendeeRecord]:
    return [sessions.AttendeeRecord(p, "attended", minutes) for p in patient_ids]


@contextmanager
def count_statements() -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
