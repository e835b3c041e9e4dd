"""Fixtures: an app on a clean, migrated database per test (SQLite, or PostgreSQL when
``TEST_DATABASE_URL`` names one), clients, and factories.

The schema is built once per test session by running the real migrations; each test then
gets a copy of it (SQLite) or empty tables (PostgreSQL, in a database of its own).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import shutil
import sqlite3
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import jinja2.bccache
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from clinic import create_app
from clinic.accounts import passwords
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


# --- what every test's app costs ---------------------------------------------------------
# Each test builds its own app: the three costs below are paid once per worker instead.

# Signing in is done thousands of times: argon2id at its lowest cost here (the OWASP
# profile of TestingConfig costs ~50 ms a hash). Hashes and checks are still argon2id, and
# production's profile is untouched (clinic/accounts/passwords.py).
TEST_HASH_PROFILE = "tests-fast"
passwords._HASHERS.setdefault(
    TEST_HASH_PROFILE, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
)


class _SharedBytecodeCache(jinja2.BytecodeCache):
    """Compiled templates shared by every app of the worker (keyed by the template's file,
    checked against its source), so a template is compiled once, not once per test."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


TEMPLATE_BYTECODE = _SharedBytecodeCache()
_compile_builder = Rule._compile_builder
_BUILDERS: dict[tuple, object] = {}


def _shared_builder(self: Rule, append_unknown: bool = True):
    """Werkzeug compiles two URL builders per rule per app (~280 rules): the same rule gives
    the same function (it takes the rule as its first argument), so compile it once. A
    rule whose defaults fill its own variables is compiled as before."""
    defaults = self.defaults or {}
    if defaults and any(dynamic and name in defaults for dynamic, name in self._trace):
        return _compile_builder(self, append_unknown)
    key = (
        self.rule,
        tuple(self._trace),
        tuple(sorted((str(k), repr(v)) for k, v in defaults.items())),
        append_unknown,
    )
    if key not in _BUILDERS:
        _BUILDERS[key] = _compile_builder(self, append_unknown)
    return _BUILDERS[key]


Rule._compile_builder = _shared_builder


class _SharedCompiledCache:
    """SQLAlchemy's compiled statements, shared by the engines of every app of the worker.

    Each engine keeps its own cache, keyed by its dialect object, so each test's new engine
    compiled every statement again (a third of a test's time). Here the key names the
    dialect by its class and settings (its plain attributes: paramstyle, server version,
    ...), so an engine of the same database kind finds the statements compiled before.
    What is compiled, and what runs, is unchanged."""

    _PLAIN = (str, int, float, bool, type(None), tuple)

    def __init__(self, size: int = 20_000) -> None:
        from sqlalchemy.util import LRUCache

        self._cache = LRUCache(size)

    def _key(self, key: tuple) -> tuple:
        dialect, *rest = key
        settings = tuple(
            sorted((k, v) for k, v in vars(dialect).copy().items() if isinstance(v, self._PLAIN))
        )
        return (type(dialect), settings, *rest)

    def get(self, key: tuple, default=None):
        return self._cache.get(self._key(key), default)

    def __setitem__(self, key: tuple, value) -> None:
        self._cache[self._key(key)] = value


COMPILED_STATEMENTS = _SharedCompiledCache()


@sa.event.listens_for(sa.engine.Engine, "connect")
def _sqlite_without_fsync(dbapi_connection, _record) -> None:
    """A test's database is thrown away: SQLite need not wait for the disk at each commit
    (locking, WAL and every constraint are as in production)."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=OFF")


def make_app(database_uri: str, **overrides):
    settings = {
        "CLINIC_ENV": "testing",
        "SQLALCHEMY_DATABASE_URI": database_uri,
        "PASSWORD_HASH_PROFILE": TEST_HASH_PROFILE,
    }
    settings.update(overrides)
    app = create_app(settings)
    app.jinja_env.bytecode_cache = TEMPLATE_BYTECODE
    with app.app_context():
        for engine in db.engines.values():
            if engine._compiled_cache is not None:
                engine._compiled_cache = COMPILED_STATEMENTS
    return app


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
            # Thrown away at the end: commits need not wait for the WAL to reach the disk.
            conn.execute(sa.text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
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
def database_uri(request, database_template, tmp_path, tmp_path_factory) -> str:
    """The test's database: the migrated template, or for a test that walks every endpoint
    (it asks for ``route_records``) the template with the walk's records in it."""
    walk = None
    if "route_records" in request.fixturenames:
        walk = _fresh_walk_snapshot(database_template, tmp_path_factory)
        request.node.stash[WALK] = walk
    if ON_POSTGRES:
        if walk is not None and not walk.just_built:
            walk.restore_postgres(database_template)
        return database_template
    path = Path(tmp_path) / "clinic.db"
    shutil.copyfile(walk.sqlite_path if walk is not None else database_template, path)
    return f"sqlite:///{path}"


# --- the walks' records, built once ---------------------------------------------------------

# The records are made relative to now (an order starting today, a session tomorrow, a
# break-glass grant of five minutes): a snapshot older than this, or of another day at the
# site, is built again.
WALK_SNAPSHOT_MAX_AGE = dt.timedelta(minutes=2)
WALK_SITE_ZONE = ZoneInfo("America/Chicago")


@dataclasses.dataclass
class WalkSnapshot:
    """A database holding ``walk_records``: an SQLite file, or on PostgreSQL every table's
    rows (COPY's text) and every sequence's position, put back before each walk."""

    site: int
    records: dict[str, int]
    route_records: dict[str, int]
    built_at: dt.datetime
    sqlite_path: Path | None = None
    tables: dict[str, bytes] = dataclasses.field(default_factory=dict)
    sequences: dict[str, int] = dataclasses.field(default_factory=dict)
    just_built: bool = True

    def fresh(self) -> bool:
        now = dt.datetime.now(dt.UTC)
        return (
            now - self.built_at < WALK_SNAPSHOT_MAX_AGE
            and now.astimezone(WALK_SITE_ZONE).date()
            == self.built_at.astimezone(WALK_SITE_ZONE).date()
        )

    def capture_postgres(self, url: str) -> None:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()
            for table in db.metadata.sorted_tables:
                if table.name == "alembic_version":
                    continue
                with cursor.copy(f'COPY "{table.name}" TO STDOUT') as copy:
                    data = b"".join(bytes(chunk) for chunk in copy)
                if data:
                    self.tables[table.name] = data
            self.sequences = dict(
                conn.execute(
                    sa.text(
                        "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), "
                        "last_value FROM pg_sequences "
                        "WHERE schemaname = current_schema() AND last_value IS NOT NULL"
                    )
                ).all()
            )
        engine.dispose()

    def restore_postgres(self, url: str) -> None:
        """Into the emptied database (the previous test's teardown), triggers and foreign
        keys off as the rows go back exactly as they were."""
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            cursor = conn.connection.driver_connection.cursor()
            for name, data in self.tables.items():
                cursor.execute(f'DELETE FROM "{name}"')
                with cursor.copy(f'COPY "{name}" FROM STDIN') as copy:
                    copy.write(data)
            for sequence, value in self.sequences.items():
                conn.execute(sa.text("SELECT setval(:s, :v, true)"), {"s": sequence, "v": value})
        engine.dispose()


WALK = pytest.StashKey[WalkSnapshot]()
_walk_snapshot: WalkSnapshot | None = None


def _fresh_walk_snapshot(database_template, tmp_path_factory) -> WalkSnapshot:
    global _walk_snapshot  # one snapshot per worker, built again when stale
    if _walk_snapshot is not None and _walk_snapshot.fresh():
        _walk_snapshot.just_built = False
        return _walk_snapshot
    if ON_POSTGRES:
        url, path = database_template, None  # emptied by the previous test's teardown
    else:
        path = tmp_path_factory.mktemp("walk") / "walk.db"
        shutil.copyfile(database_template, path)
        url = f"sqlite:///{path}"
    built_at = dt.datetime.now(dt.UTC)
    app = make_app(url)
    site_id = main_site(app)
    make_user, make_patient = user_factory(app, site_id), patient_factory(app, site_id)
    records = base_records(
        app, make_user, make_patient, program_factory(app, site_id), enrollment_factory(app)
    )
    route = walk_records(app, records, make_user, order_factory(app), make_patient)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    snapshot = WalkSnapshot(site_id, records, route, built_at, sqlite_path=path)
    if ON_POSTGRES:
        snapshot.capture_postgres(url)
    else:
        with sqlite3.connect(path) as conn:  # everything in the file itself, none in its WAL
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _walk_snapshot = snapshot
    return snapshot


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
            with db.engine.begin() as conn:
                empty_postgres_tables(conn)
        db.engine.dispose()


def empty_postgres_tables(conn: sa.Connection) -> None:
    """Every table back to its migrated state: empty, its ids starting again at 1, and the
    audit chain's head at the genesis hash.

    DELETE with triggers and foreign keys off (``session_replication_role``), in one round
    trip: on tables of a few rows it takes milliseconds where TRUNCATE of every table took
    over a second a test (TRUNCATE makes new files for each table and index)."""
    tables = ", ".join(
        f"'{t.name}'" for t in db.metadata.sorted_tables if t.name != "alembic_version"
    )
    conn.exec_driver_sql(
        f"""
        DO $$
        DECLARE
            name text;
            seq record;
        BEGIN
            SET LOCAL session_replication_role = replica;
            FOREACH name IN ARRAY ARRAY[{tables}] LOOP
                EXECUTE 'DELETE FROM ' || quote_ident(name);
            END LOOP;
            FOR seq IN
                SELECT schemaname, sequencename, start_value FROM pg_sequences
                WHERE schemaname = current_schema() AND last_value IS NOT NULL
            LOOP
                PERFORM setval(
                    quote_ident(seq.schemaname) || '.' || quote_ident(seq.sequencename),
                    seq.start_value,
                    false
                );
            END LOOP;
            INSERT INTO audit_chain_head (id, last_seq, last_hash)
            VALUES (1, 0, '{GENESIS_HASH}');
        END
        $$
        """
    )


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


def main_site(app) -> int:
    from clinic.sites.services import create_site

    with app.app_context():
        created = create_site(code="MAIN", name="Main Street Clinic", timezone="America/Chicago")
        db.session.commit()
        return created.id


@pytest.fixture
def site(request, app):
    """The default site every factory user works at (a walk's database has it already)."""
    walk = request.node.stash.get(WALK, None)
    return walk.site if walk is not None else main_site(app)


@pytest.fixture
def make_site(app):
    from clinic.sites.services import create_site

    def make(code: str, name: str | None = None, timezone: str = "America/Chicago") -> int:
        with app.app_context():
            created = create_site(code=code, name=name or f"Site {code}", timezone=timezone)
            db.session.commit()
            return created.id

    return make


def user_factory(app, site: int):
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


@pytest.fixture
def make_user(app, site):
    """Create a user; returns its id. Password: ``PASSWORD`` unless given."""
    return user_factory(app, site)


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


def program_factory(app, site: int):
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
def make_program(app, site):
    """Create a program at a site (default: the MAIN site); returns its id."""
    return program_factory(app, site)


def patient_factory(app, site: int):
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
def make_patient(app, site):
    """Register a patient (default at the MAIN site); returns its id."""
    return patient_factory(app, site)


def enrollment_factory(app):
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
def make_enrollment(app):
    """Admit a patient to a program; returns the enrollment id."""
    return enrollment_factory(app)


def base_records(app, make_user, make_patient, make_program, make_enrollment) -> dict[str, int]:
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


@pytest.fixture
def records(request, app, make_user, make_patient, make_program, make_enrollment):
    """One record of each kind at the MAIN site (``base_records``); a walk's test gets
    those its database started with (``route_records``)."""
    walk = request.node.stash.get(WALK, None)
    if walk is not None:
        return dict(walk.records)
    return base_records(app, make_user, make_patient, make_program, make_enrollment)


# --- medications (issue 10) ----------------------------------------------------------------


def order_factory(app):
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


@pytest.fixture
def make_order(app):
    """Start a medication order for an enrollment through the service; returns its id.
    ``prescriber_id`` must be a clinician with the prescriber flag."""
    return order_factory(app)


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
def route_records(request, app) -> dict[str, int]:
    """Every URL rule's variables (``walk_records``), for the tests that walk every endpoint
    (matrix, CSRF, input edges). The test's database starts with them: built once and
    copied into each walk's database (``database_uri``), not built again for every test."""
    return dict(request.node.stash[WALK].route_records)


def walk_records(app, records, make_user, make_order, make_patient) -> dict[str, int]:
    """The shared records and those of the medications, therapy and aftercare endpoints:
    every URL rule's variables. A domain adds its records here."""
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
