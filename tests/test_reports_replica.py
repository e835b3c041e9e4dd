"""Reports on a read replica (issue 16; clinic/reports/database.py): with
``REPORTS_DATABASE_URL`` set, every report query runs there in a read-only transaction,
while the login, the checks, the filter form and the audit events stay on the primary; an
unreachable replica answers 503 and leaves the rest of the app alone; unset, reports run on
the primary, read-only, inside the request's transaction.

The replica is a copy of the test's database made after its records are written (PostgreSQL:
``CREATE DATABASE ... TEMPLATE`` read through a role with CONNECT and SELECT only; SQLite: a
backup of the file). Then the two differ on purpose: the replica's site
is renamed (a row only the replica has) and the primary admits one more patient (a row only
the primary has), so each page shows which database it read.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sqlite3
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.extensions import db
from clinic.reports import database
from clinic.reports.core import REPORTS
from clinic.reports.database import ReportsUnavailable, read_session, reports_database
from clinic.reports.views import UNAVAILABLE
from tests.conftest import ON_POSTGRES, _pg_url

ON = "on=2026-03-15"
REPLICA_SITE = "Replica Street Clinic"
PRIMARY_SITE = "Main Street Clinic"


@dataclasses.dataclass
class Replica:
    url: str  # what REPORTS_DATABASE_URL names: on PostgreSQL, the SELECT-only role
    owner_url: str  # the same database as its owner, to look inside it


def _admin() -> sa.Engine:
    return sa.create_engine(_pg_url("postgres"), isolation_level="AUTOCOMMIT")


@pytest.fixture
def make_replica(app, tmp_path) -> Iterator[Callable[[], Replica]]:
    """Copy the test's database now (call it once its records are written); the copy's
    site is renamed ``REPLICA_SITE``. Dropped, with its role, at the end."""
    made: list[tuple[str, str]] = []

    def make() -> Replica:
        primary = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
        with app.app_context():
            db.session.remove()
            db.engine.dispose()  # a template database may have no other connection
        if ON_POSTGRES:
            suffix = uuid.uuid4().hex[:10]
            name, role = f"clinic_replica_issue16_{suffix}", f"clinic_reports_ro_{suffix}"
            made.append((name, role))
            admin = _admin()
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{primary.database}"'))
                conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
            admin.dispose()
            owner_url = _pg_url(name).render_as_string(hide_password=False)
            owner = sa.create_engine(owner_url)
            with owner.begin() as conn:
                for grant in (
                    f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"',
                    f'GRANT USAGE ON SCHEMA public TO "{role}"',
                    f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"',
                ):
                    conn.execute(sa.text(grant))
                conn.execute(sa.text("UPDATE site SET name = :n"), {"n": REPLICA_SITE})
            owner.dispose()
            url = _pg_url(name).set(username=role).render_as_string(hide_password=False)
            return Replica(url, owner_url)
        path = tmp_path / "replica.db"
        source, target = sqlite3.connect(primary.database), sqlite3.connect(path)
        with source, target:
            source.backup(target)
            target.execute("UPDATE site SET name = ?", (REPLICA_SITE,))
        source.close()
        target.close()
        # Opened as any file (no ``mode=ro``): the app's own read-only setting is tested.
        return Replica(f"sqlite:///{path}", f"sqlite:///{path}")

    yield make
    database.dispose(app)
    if made:
        admin = _admin()
        with admin.connect() as conn:
            for name, role in made:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


@pytest.fixture
def clinic(app, make_program, make_patient, make_enrollment):
    """One patient in treatment at MAIN (admitted 2026-01-05); ``admit_another()`` admits
    a second one (after the copy: a patient only the primary has)."""
    program = make_program()
    make_enrollment(make_patient("Ana", "Copied"), program)

    def admit_another() -> None:
        make_enrollment(make_patient("Ben", "Later"), program)

    return admit_another


def _by_site(response) -> list[list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))[1:]


def _events(app, slug: str) -> list[str]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(AuditEvent.action).where(
                    AuditEvent.entity_type == "report", AuditEvent.entity_id == slug
                )
            )
        )


@pytest.fixture
def statements_on_primary(app) -> Iterator[list[str]]:
    """Statements the primary received while a report was being computed (none allowed
    with a replica: every report query goes to the replica)."""
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if database.reading() is not None and app.config["REPORTS_DATABASE_URL"]:
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    yield seen
    sa.event.remove(engine, "before_cursor_execute", count)


# --- (a) the reports read the replica; (c) their audit events land on the primary ---------


def test_the_census_counts_the_replica_and_its_view_is_audited_on_the_primary(
    app, client_as, clinic, make_replica, statements_on_primary
):
    admin = client_as("admin")
    primary_only = admin.get(f"/reports/census/export.csv?{ON}&table=by-site")
    assert _by_site(primary_only) == [[f"{PRIMARY_SITE} (MAIN)", "1"], ["All sites", "1"]]

    replica = make_replica()
    clinic()  # the primary now has two patients in treatment, the replica one
    app.config["REPORTS_DATABASE_URL"] = replica.url

    page = admin.get(f"/reports/census?{ON}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert REPLICA_SITE in html  # the report's table: read on the replica
    assert f"{PRIMARY_SITE} (MAIN)" in html  # the filter form's choices: on the primary
    exported = admin.get(f"/reports/census/export.csv?{ON}&table=by-site")
    assert _by_site(exported) == [[f"{REPLICA_SITE} (MAIN)", "1"], ["All sites", "1"]]
    assert admin.get(f"/reports/census/print?{ON}").status_code == 200
    assert statements_on_primary == []

    # The audit events are written and committed on the primary, none on the replica.
    assert sorted(_events(app, "census")) == ["export", "export", "print", "view"]
    copy = sa.create_engine(replica.owner_url)
    with copy.connect() as conn:
        written = conn.execute(
            sa.text("SELECT count(*) FROM audit_event WHERE entity_id = 'census'")
        ).scalar()
    copy.dispose()
    assert written == 1  # the export made before the copy, nothing since

    # Unset again: the primary, with its second patient.
    app.config["REPORTS_DATABASE_URL"] = ""
    again = admin.get(f"/reports/census/export.csv?{ON}&table=by-site")
    assert _by_site(again) == [[f"{PRIMARY_SITE} (MAIN)", "2"], ["All sites", "2"]]


def test_every_report_reads_only_the_replica(
    app, client_as, clinic, site, make_site, make_replica, statements_on_primary
):
    """Each report's page and first table's CSV, for one site and for all sites: not one
    report statement reaches the primary, and each report reads the replica."""
    admin = client_as("admin", site_ids=[site, make_site("EAST")])
    replica = make_replica()
    app.config["REPORTS_DATABASE_URL"] = replica.url
    with app.app_context():
        engine = reports_database().engine
    on_replica: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: on_replica.append(args[2]))
    for slug in sorted(REPORTS):
        for scope in ("", f"site={site}&"):
            before = len(on_replica)
            for url in (f"/reports/{slug}?{scope}", f"/reports/{slug}/export.csv?{scope}"):
                response = admin.get(url)
                assert response.status_code == 200, (url, response.get_data(as_text=True)[:300])
            assert len(on_replica) > before, slug
    assert statements_on_primary == []


# --- (b) a write through the reports session is refused -------------------------------


def test_a_write_through_the_reports_session_is_refused(app, clinic, make_replica):
    replica = make_replica()
    app.config["REPORTS_DATABASE_URL"] = replica.url
    with app.app_context():
        with pytest.raises(sa.exc.DBAPIError) as refused, read_session() as reads:
            reads.execute(sa.text("UPDATE site SET name = 'Changed'"))
        if ON_POSTGRES:
            assert refused.value.orig.sqlstate == "25006"  # read_only_sql_transaction
        else:
            assert "readonly" in str(refused.value.orig)
        assert database.reading() is None
    if ON_POSTGRES:
        # The role itself may not write, read-only transaction or not.
        role = sa.create_engine(replica.url)
        with role.connect() as conn:
            for write in (
                "UPDATE site SET name = 'Changed'",
                "DELETE FROM audit_event",
                "CREATE TABLE clinic_reports_issue16_probe (x int)",
            ):
                with pytest.raises(sa.exc.ProgrammingError) as denied:
                    conn.execute(sa.text(write))
                assert denied.value.orig.sqlstate == "42501", write  # insufficient_privilege
                conn.rollback()
        role.dispose()
    copy = sa.create_engine(replica.owner_url)
    with copy.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM site")).scalar() == REPLICA_SITE
    copy.dispose()


def test_without_a_replica_a_report_still_cannot_write_but_the_request_can(app, clinic):
    """Unset: the report's statements run on the primary, read-only; the request's own
    transaction goes on and commits its audit event (one commit per request)."""
    with app.app_context():
        assert reports_database() is None
        with pytest.raises(sa.exc.DBAPIError), read_session() as reads:
            assert reads is db.session()
            reads.execute(sa.text("UPDATE site SET name = 'Changed'"))
        assert database.reading() is None
        db.session.execute(sa.text("UPDATE site SET name = 'Renamed'"))
        db.session.commit()
        assert db.session.execute(sa.text("SELECT name FROM site")).scalar() == "Renamed"


def test_without_a_replica_the_reports_are_as_before(app, client_as, clinic):
    admin = client_as("admin")
    with app.app_context():
        assert reports_database() is None
    assert _by_site(admin.get(f"/reports/census/export.csv?{ON}&table=by-site")) == [
        [f"{PRIMARY_SITE} (MAIN)", "1"],
        ["All sites", "1"],
    ]
    assert admin.get(f"/reports/census?{ON}").status_code == 200
    assert sorted(_events(app, "census")) == ["export", "view"]
    with app.app_context():
        assert "clinic_reports_database" not in app.extensions


# --- (d) an unreachable replica -------------------------------------------------------------


@pytest.mark.parametrize(
    "unreachable",
    [
        "postgresql://clinic_reports_nobody@127.0.0.1:1/clinic",  # nothing listens there
        "sqlite:///{tmp}/no-such-directory/replica.db",
    ],
    ids=["postgresql", "sqlite"],
)
def test_an_unreachable_replica_answers_503_and_the_rest_works(
    app, client_as, clinic, tmp_path, unreachable
):
    app.config["REPORTS_DATABASE_URL"] = unreachable.format(tmp=tmp_path)
    admin = client_as("admin")
    for url in (
        f"/reports/census?{ON}",
        f"/reports/census/print?{ON}",
        f"/reports/census/export.csv?{ON}",
    ):
        response = admin.get(url)
        body = response.get_data(as_text=True)
        assert response.status_code == 503, url
        assert UNAVAILABLE in body
        assert "Traceback" not in body and "OperationalError" not in body
        assert response.headers["Retry-After"] == "60"
    assert _events(app, "census") == []  # nothing shown, nothing recorded
    assert admin.get("/reports/").status_code == 200
    assert admin.get("/").status_code == 200
    with app.app_context(), pytest.raises(ReportsUnavailable), read_session():
        pass
    database.dispose(app)
