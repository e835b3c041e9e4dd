"""Fixtures: an app on a clean, migrated database per test (SQLite, or PostgreSQL when
``TEST_DATABASE_URL`` names one), clients, and factories.

The schema is built once per test session by running the real migrations; each test then
gets a copy of it (SQLite) or empty tables (PostgreSQL, in a database of its own).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from clinic import create_app
from clinic.audit.models import GENESIS_HASH
from clinic.extensions import db

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
ON_POSTGRES = TEST_DATABASE_URL.startswith(("postgres://", "postgresql"))
# The walks over every endpoint sign in a clinician with every clinician flag (prescriber,
# may dispense), so each endpoint the role may use is reached by the check under test.
ALL_FLAGS = {"clinician": {"is_prescriber": True, "may_dispense": True}}
CSRF_RE = re.compile(r'name="csrf_token"[^>]*? value="([^"]+)"')


def _pg_url(database: str) -> sa.URL:
    from config import normalise_database_url

    return sa.make_url(normalise_database_url(TEST_DATABASE_URL)).set(database=database)


def make_app(database_uri: str, **overrides):
    settings = {"CLINIC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": database_uri}
    settings.update(overrides)
    return create_app(settings)


def migrate_to_head(database_uri: str) -> None:
    from flask_migrate import upgrade

    app = make_app(database_uri)
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def database_template(tmp_path_factory, worker_id):
    """A migrated, empty database for this test session (and xdist worker)."""
    if ON_POSTGRES:
        name = f"clinic_test_{worker_id}_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(_pg_url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = _pg_url(name).render_as_string(hide_password=False)
        migrate_to_head(url)
        yield url
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("template") / "template.db"
        migrate_to_head(f"sqlite:///{path}")
        yield path


@pytest.fixture
def database_uri(database_template, tmp_path) -> str:
    if ON_POSTGRES:
        return database_template
    path = Path(tmp_path) / "clinic.db"
    shutil.copyfile(database_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def app_overrides() -> dict:
    """Override in a test module to change settings of the app under test."""
    return {}


@pytest.fixture
def app(database_uri, app_overrides):
    app = make_app(database_uri, **app_overrides)
    app.test_client_class = Client
    yield app
    with app.app_context():
        db.session.remove()
        if ON_POSTGRES:
            tables = [t.name for t in db.metadata.sorted_tables if t.name != "alembic_version"]
            with db.engine.begin() as conn:
                conn.execute(sa.text("SET session_replication_role = replica"))
                conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
                conn.execute(
                    sa.text(
                        "INSERT INTO audit_chain_head (id, last_seq, last_hash) "
                        f"VALUES (1, 0, '{GENESIS_HASH}')"
                    )
                )
        db.engine.dispose()


class Client(FlaskClient):
    """A test client that submits forms the way a browser does: with their CSRF token."""

    def csrf_token(self, page_url: str = "/login") -> str:
        html = self.get(page_url, follow_redirects=True).get_data(as_text=True)
        match = CSRF_RE.search(html)
        assert match, f"no CSRF token on {page_url}"
        return match.group(1)

    def submit(self, url: str, data: dict | None = None, *, form_url: str | None = None, **kwargs):
        """GET the page holding the form (``form_url``, default ``url``), then POST it."""
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf_token(form_url or url))
        return self.post(url, data=data, **kwargs)


@pytest.fixture
def client(app) -> Client:
    return app.test_client()


@pytest.fixture
def app_ctx(app):
    with app.app_context():
        yield


# --- factories -------------------------------------------------------------------------

PASSWORD = "correct horse battery staple 42"


@pytest.fixture
def site(app):
    """The default site every factory user works at."""
    from clinic.sites.services import create_site

    with app.app_context():
        created = create_site(code="MAIN", name="Main Street Clinic", timezone="America/Chicago")
        db.session.commit()
        return created.id


@pytest.fixture
def make_site(app):
    from clinic.sites.services import create_site

    def make(code: str, name: str | None = None, timezone: str = "America/Chicago") -> int:
        with app.app_context():
            created = create_site(code=code, name=name or f"Site {code}", timezone=timezone)
            db.session.commit()
            return created.id

    return make


@pytest.fixture
def make_user(app, site):
    """Create a user; returns its id. Password: ``PASSWORD`` unless given."""
    from clinic.accounts.services import create_user
    from clinic.sites.models import Site

    def make(
        role: str = "staff",
        username: str | None = None,
        *,
        password: str = PASSWORD,
        site_ids: list[int] | None = None,
        **kwargs,
    ) -> int:
        with app.app_context():
            sites = [
                db.session.get(Site, i) for i in (site_ids if site_ids is not None else [site])
            ]
            user = create_user(
                actor=None,
                username=username or f"{role}-{uuid.uuid4().hex[:6]}",
                full_name=kwargs.pop("full_name", f"Test {role.title()}"),
                role=role,
                password=password,
                sites=sites,
                **kwargs,
            )
            db.session.commit()
            return user.id

    return make


def login(
    client: Client, username: str, password: str = PASSWORD, *, url: str = "/login", **kwargs
):
    """Sign in through the real login form; returns the response."""
    return client.submit(url, {"username": username, "password": password}, **kwargs)


@pytest.fixture
def username_of(app):
    from clinic.accounts.models import User

    def get(user_id: int) -> str:
        with app.app_context():
            return db.session.get(User, user_id).username

    return get


@pytest.fixture
def client_as(app, make_user, username_of):
    """A new client signed in as a new user of ``role``: ``client_as("clinician")``."""

    def make(role: str, **kwargs) -> Client:
        user_id = make_user(role, **kwargs)
        new_client = app.test_client()
        response = login(new_client, username_of(user_id))
        assert response.status_code == 302, response.get_data(as_text=True)
        new_client.user_id = user_id
        return new_client

    return make


@pytest.fixture
def make_program(app, site):
    """Create a program at a site (default: the MAIN site); returns its id."""
    from clinic.accounts.models import User
    from clinic.patients import program_settings
    from clinic.patients.models import ProgramKind
    from clinic.sites.models import Site

    def make(
        name: str = "Methadone maintenance",
        kind: str = "methadone_otp",
        site_id: int | None = None,
        **settings,
    ) -> int:
        with app.app_context():
            values = {
                "name": name,
                "kind": ProgramKind(kind),
                "active": True,
                "care_plan_review_days": 90,
                "take_home_cap_days_0_14": 7,
                "take_home_cap_days_15_30": 14,
                "take_home_cap_days_31_plus": 28,
            }
            values.update(settings)
            actor = User(id=None, username="setup", all_sites=True)
            program = program_settings.create_program(
                actor=actor,
                site=db.session.get(Site, site_id or site),
                settings=program_settings.ProgramSettings(**values),
            )
            db.session.commit()
            return program.id

    return make


@pytest.fixture
def make_patient(app, site):
    """Register a patient (default at the MAIN site); returns its id."""
    import datetime as dt

    from clinic.accounts.models import User
    from clinic.patients import registry
    from clinic.sites.models import Site

    def make(
        first_name: str = "Jo",
        last_name: str = "Smith",
        *,
        site_id: int | None = None,
        date_of_birth: dt.date = dt.date(1980, 4, 2),
        **fields,
    ) -> int:
        with app.app_context():
            data = {
                "first_name": first_name,
                "last_name": last_name,
                "date_of_birth": date_of_birth,
                "sex_at_birth": "female",
                "primary_substance": "fentanyl",
                "intake_date": dt.date(2026, 1, 5),
            }
            data.update(fields)
            actor = User(id=None, username="setup", all_sites=True)
            patient = registry.register_patient(
                actor=actor,
                site=db.session.get(Site, site_id or site),
                data=registry.Demographics.from_mapping(data),
                confirm_duplicate=True,
            )
            db.session.commit()
            return patient.id

    return make


@pytest.fixture
def make_enrollment(app):
    """Admit a patient to a program; returns the enrollment id."""
    import datetime as dt

    from clinic.accounts.models import User
    from clinic.patients import admissions
    from clinic.patients.models import Patient, Program

    def make(
        patient_id: int,
        program_id: int,
        *,
        admitted_on: dt.date = dt.date(2026, 1, 5),
        level: str = "3:OTP",
    ) -> int:
        with app.app_context():
            edition, _, asam_level = level.partition(":")
            actor = User(id=None, username="setup", all_sites=True)
            enrollment = admissions.admit(
                db.session.get(Patient, patient_id),
                db.session.get(Program, program_id),
                actor=actor,
                admitted_on=admitted_on,
                asam_edition=edition,
                asam_level=asam_level,
                primary_counselor=None,
            )
            db.session.commit()
            return enrollment.id

    return make


@pytest.fixture
def records(app, make_user, make_patient, make_program, make_enrollment) -> dict[str, int]:
    """One record of each kind at the MAIN site, for the URL rules' variables."""
    import datetime as dt

    from clinic.audit.models import BreakGlassGrant
    from clinic.extensions import db

    target_user = make_user("staff", username="target-user")
    patient = make_patient()
    program = make_program()
    enrollment = make_enrollment(patient, program)
    with app.app_context():
        now = dt.datetime.now(dt.UTC)
        grant = BreakGlassGrant(
            user_id=target_user,
            patient_id=patient,
            reason="matrix test grant",
            granted_at=now,
            expires_at=now + dt.timedelta(minutes=5),
        )
        db.session.add(grant)
        db.session.commit()
        grant_id = grant.id
    return {
        "user_id": target_user,
        "patient_id": patient,
        "program_id": program,
        "enrollment_id": enrollment,
        "grant_id": grant_id,
    }


# --- medications (issue 10) ----------------------------------------------------------------


@pytest.fixture
def make_order(app):
    """Start a medication order for an enrollment through the service; returns its id.
    ``prescriber_id`` must be a clinician with the prescriber flag."""
    import datetime as dt
    from decimal import Decimal

    from clinic.accounts.models import User
    from clinic.medications import orders
    from clinic.patients.models import Enrollment

    def make(
        enrollment_id: int,
        prescriber_id: int,
        *,
        medication: str = "methadone",
        product_form: str = "oral_liquid",
        strength: str = "10 mg/mL",
        dose_mg: str = "40",
        schedule: str = "daily",
        start_on: dt.date = dt.date(2026, 1, 5),
        **fields,
    ) -> int:
        with app.test_request_context():
            order = orders.start_order(
                db.session.get(Enrollment, enrollment_id),
                actor=db.session.get(User, prescriber_id),
                data=orders.OrderInput(
                    medication=medication,
                    product_form=product_form,
                    strength=strength,
                    dose_mg=Decimal(dose_mg),
                    schedule=schedule,
                    start_on=start_on,
                    **fields,
                ),
            )
            db.session.commit()
            return order.id

    return make


def medication_records(
    app, records: dict[str, int], make_user, make_order, make_patient
) -> dict[str, int]:
    """The URL rules' variables of the medications endpoints: an order for the ``records``
    patient starting today (so the dose pages show their forms: no missed days, no hold),
    a flag of that patient, and a hold of another patient of the same site."""
    from clinic.accounts.models import User
    from clinic.medications import holds
    from clinic.patients.models import Patient
    from clinic.sites.time import site_today

    prescriber = make_user("clinician", is_prescriber=True)
    held_id = make_patient("Holly", "Held")
    with app.app_context():
        today = site_today(db.session.get(Patient, records["patient_id"]).site)
    order_id = make_order(records["enrollment_id"], prescriber, start_on=today)
    with app.test_request_context():
        actor = db.session.get(User, prescriber)
        patient = db.session.get(Patient, records["patient_id"])
        held = db.session.get(Patient, held_id)
        hold = holds.place_hold(held, actor=actor, reason="matrix hold", until_on=None)
        flag = holds.add_flag(patient, actor=actor, category="info", text="matrix flag")
        db.session.commit()
        return {"order_id": order_id, "hold_id": hold.id, "flag_id": flag.id}


@pytest.fixture
def route_records(app, records, make_user, make_order, make_patient) -> dict[str, int]:
    """The shared records and those of the medications, therapy and aftercare endpoints:
    every URL rule's variables, for the tests that walk every endpoint (matrix, CSRF,
    input edges)."""
    from tests.test_aftercare_consents import consent_route_records
    from tests.test_aftercare_referrals import referral_route_records
    from tests.test_therapy_counseling import counseling_route_records

    merged = {
        **records,
        **medication_records(app, records, make_user, make_order, make_patient),
        **therapy_records(app, records, make_user),
        **directory_records(app),
    }
    merged.update(counseling_route_records(app, merged, make_user))
    merged.update(referral_route_records(app, merged))
    merged.update(consent_route_records(app, merged))
    from tests.route_modules import extra_route_records

    merged.update(extra_route_records(app, merged, make_user))
    return merged


def directory_records(app) -> dict[str, int]:
    """An active resource of the aftercare directory (the ``resource_id`` of its pages)."""
    from clinic.aftercare import directory

    with app.test_request_context():
        resource = directory.create_resource(
            actor=None,
            data=directory.ResourceData(name="Matrix House", kind="halfway_house"),
        )
        db.session.commit()
        return {"resource_id": resource.id}


def therapy_records(app, records: dict[str, int], make_user) -> dict[str, int]:
    """A therapy session planned for tomorrow, with the ``records`` patient, by another
    clinician of the MAIN site, and a draft note of it (the therapy endpoints'
    ``session_id`` and ``note_id``)."""
    import datetime as dt

    from clinic.accounts.models import User
    from clinic.db import utcnow
    from clinic.patients.models import Patient
    from clinic.therapy import notes, sessions

    counselor = make_user("clinician", full_name="Route Counselor")
    with app.test_request_context():
        patient = db.session.get(Patient, records["patient_id"])
        session = sessions.plan_session(
            actor=db.session.get(User, counselor),
            plan=sessions.SessionPlan(
                site_id=patient.site_id,
                starts_at=(utcnow() + dt.timedelta(days=1)).replace(microsecond=0),
                duration_minutes=60,
                kind="individual",
                modality="cbt",
                setting="in_person",
                patient_ids=[patient.id],
            ),
        )
        note = notes.save_draft(
            session,
            actor=db.session.get(User, counselor),
            text="Matrix draft.",
            attendee=session.attendees[0],
        )
        db.session.commit()
        return {"session_id": session.id, "note_id": note.id}
