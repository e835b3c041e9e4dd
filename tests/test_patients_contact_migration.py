"""The contact normalisation migration (b5c6d7e8f9a0) on both engines: phone numbers and
ZIP codes stored before validation existed come out canonical; what does not parse, and
records entered in error, stay as they were (test_migrations.py style: a database of its
own, upgraded to the revision before, rows inserted, then upgraded)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from clinic.extensions import db
from tests.conftest import ON_POSTGRES, _pg_url, make_app

BEFORE, REVISION = "b4c5d6e7f8a9", "b5c6d7e8f9a0"
MODULE = f"migrations/versions/20261129_{REVISION}_contact_normalisation.py"


@pytest.fixture
def scratch_uri(tmp_path):
    """An empty database of its own (the shared test database is at head already)."""
    if not ON_POSTGRES:
        yield f"sqlite:///{tmp_path / 'contact.db'}"
        return
    name = f"clinic_contact_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(_pg_url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield _pg_url(name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# (phone, emergency contact phone, ZIP) as typed -> as stored after the upgrade
CASES = [
    (
        ("(312) 555-0147", "312.555.0148", "606011234"),
        ("+13125550147", "+13125550148", "60601-1234"),
    ),
    (("+44 20 7946 0958", None, "60601"), ("+442079460958", None, "60601")),
    (("call me maybe", "555-0100", "ABCDE"), ("call me maybe", "555-0100", "ABCDE")),
    (("+13125550149", "", " 60601-1234 "), ("+13125550149", "", "60601-1234")),
]


def _insert_patients(conn, site_id: int) -> list[int]:
    patient = sa.Table("patient", sa.MetaData(), autoload_with=conn)
    ids = []
    for n, (typed, _stored) in enumerate([*CASES, CASES[0]]):
        phone, contact_phone, postal_code = typed
        in_error = n == len(CASES)  # the last: a record entered in error
        values = {
            "site_id": site_id,
            "mrn": f"MAIN-{n + 1:06d}",
            "first_name": "Jo",
            "last_name": f"Smith{n}",
            "first_key": "jo",
            "last_key": f"smith{n}",
            "date_of_birth": dt.date(1980, 4, 2),
            "sex_at_birth": "female",
            "primary_substance": "fentanyl",
            "intake_date": dt.date(2026, 1, 5),
            "created_at": dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
            "phone": phone,
            "emergency_contact_phone": contact_phone,
            "postal_code": postal_code,
            "entered_in_error_at": dt.datetime(2026, 2, 1, tzinfo=dt.UTC) if in_error else None,
            "entered_in_error_reason": "Registered twice by mistake" if in_error else None,
        }
        ids.append(conn.execute(patient.insert().values(**values)).inserted_primary_key[0])
    return ids


def _stored(conn, ids: list[int]) -> list[tuple]:
    rows = conn.execute(
        sa.text("SELECT id, phone, emergency_contact_phone, postal_code FROM patient ORDER BY id")
    ).all()
    return [tuple(r[1:]) for r in rows if r[0] in ids]


def test_stored_contacts_are_rewritten_canonical_and_the_rest_left_as_typed(scratch_uri):
    app = make_app(scratch_uri)
    with app.app_context():
        upgrade(revision=BEFORE)
        with db.engine.begin() as conn:
            site_id = conn.execute(
                sa.text(
                    "INSERT INTO site (code, name, timezone, active) "
                    "VALUES ('MAIN', 'Main Street Clinic', 'America/Chicago', true) RETURNING id"
                )
            ).scalar_one()
            ids = _insert_patients(conn, site_id)
        upgrade(revision=REVISION)
        with db.engine.connect() as conn:
            stored = _stored(conn, ids)
        assert stored == [s for _t, s in CASES] + [CASES[0][0]]  # in error: untouched
        # Downgrade is a no-op, and the upgrade can run again (nothing left to change).
        downgrade(revision=BEFORE)
        upgrade(revision=REVISION)
        with db.engine.connect() as conn:
            assert _stored(conn, ids) == stored
        db.engine.dispose()


def test_rows_beyond_one_batch_are_all_rewritten(scratch_uri):
    """More rows than a batch holds (``BATCH`` of the migration): every batch continues
    after the last id read, and none is skipped."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("contact_migration", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    count = module.BATCH * 2 + 1
    app = make_app(scratch_uri)
    with app.app_context():
        upgrade(revision=BEFORE)
        with db.engine.begin() as conn:
            site_id = conn.execute(
                sa.text(
                    "INSERT INTO site (code, name, timezone, active) "
                    "VALUES ('MAIN', 'Main Street Clinic', 'America/Chicago', true) RETURNING id"
                )
            ).scalar_one()
            patient = sa.Table("patient", sa.MetaData(), autoload_with=conn)
            conn.execute(
                patient.insert(),
                [
                    {
                        "site_id": site_id,
                        "mrn": f"MAIN-{n:06d}",
                        "first_name": "Jo",
                        "last_name": f"Smith{n}",
                        "first_key": "jo",
                        "last_key": f"smith{n}",
                        "date_of_birth": dt.date(1980, 4, 2),
                        "sex_at_birth": "female",
                        "primary_substance": "fentanyl",
                        "intake_date": dt.date(2026, 1, 5),
                        "created_at": dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
                        "phone": "(312) 555-0147",
                        "postal_code": "606011234",
                    }
                    for n in range(1, count + 1)
                ],
            )
        upgrade(revision=REVISION)
        with db.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT phone, postal_code FROM patient")).all()
        assert len(rows) == count
        assert set(rows) == {("+13125550147", "60601-1234")}
        db.engine.dispose()
