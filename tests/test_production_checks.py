"""Readiness (``/readyz``) and the production preflight: the database answers, its
migrations are at head, Redis answers when the rate limits live there."""

from __future__ import annotations

import os
import secrets
import socket
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from flask_migrate import stamp

from clinic.extensions import db
from clinic.production import migration_heads, preflight
from tests.conftest import ON_POSTGRES, _pg_url, make_app

MIGRATIONS = str(Path(__file__).resolve().parent.parent / "migrations")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _older_revision() -> str:
    script = ScriptDirectory(MIGRATIONS)
    (head,) = script.get_heads()
    return script.get_revision(head).down_revision


@pytest.fixture
def scratch_uri(tmp_path):
    """An empty database of its own (the test database is at head)."""
    if not ON_POSTGRES:
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    name = f"clinic_production_checks_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(_pg_url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield _pg_url(name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def behind_uri(scratch_uri):
    """A scratch database stamped one revision before head (no tables migrated: the
    checks read ``alembic_version`` only)."""
    app = make_app(scratch_uri)
    with app.app_context():
        stamp(revision=_older_revision())
        db.engine.dispose()
    return scratch_uri


def _dispose(app) -> None:
    with app.app_context():
        db.engine.dispose()


# --- /readyz ------------------------------------------------------------------------------


def test_ready_when_database_migrations_and_rate_limits_are(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {
        "status": "ready",
        "database": "up",
        "migrations": "head",
        "redis": "not used",
    }


def test_not_ready_when_migrations_are_behind(behind_uri):
    app = make_app(behind_uri)
    response = app.test_client().get("/readyz")
    _dispose(app)
    assert response.status_code == 503
    assert response.json["status"] == "not ready"
    assert response.json["database"] == "up"
    assert response.json["migrations"] == "behind"


def test_not_ready_when_the_database_was_never_migrated(scratch_uri):
    app = make_app(scratch_uri)
    response = app.test_client().get("/readyz")
    _dispose(app)
    assert response.status_code == 503
    assert response.json["migrations"] == "behind"


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_not_ready_when_the_database_is_down(tmp_path, engine):
    url = {
        "sqlite": f"sqlite:///{tmp_path}/missing-dir/none.db",
        "postgresql": f"postgresql://postgres@127.0.0.1:{_closed_port()}/none",
    }[engine]
    app = make_app(url)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {
        "status": "not ready",
        "database": "down",
        "migrations": "unknown",
        "redis": "not used",
    }


def test_not_ready_when_redis_is_down(database_uri):
    app = make_app(database_uri, RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{_closed_port()}/0")
    response = app.test_client().get("/readyz")
    _dispose(app)
    assert response.status_code == 503
    assert response.json["redis"] == "down"
    assert response.json["database"] == "up"


def test_ready_with_redis_up(database_uri):
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(f"REQUIRE_REDIS=1 but Redis does not answer at {REDIS_URL}")
        pytest.skip(f"Redis does not answer at {REDIS_URL}")
    app = make_app(database_uri, RATELIMIT_STORAGE_URI=REDIS_URL)
    response = app.test_client().get("/readyz")
    _dispose(app)
    assert response.status_code == 200
    assert response.json["redis"] == "up"


def test_migration_heads_are_read_once():
    migration_heads.cache_clear()
    assert migration_heads(MIGRATIONS) == frozenset(ScriptDirectory(MIGRATIONS).get_heads())
    migration_heads(MIGRATIONS)
    assert migration_heads.cache_info().hits == 1


# --- preflight ----------------------------------------------------------------------------


def _production(database_uri: str, **overrides):
    settings = {
        "CLINIC_ENV": "production",
        "SECRET_KEY": secrets.token_hex(32),
        "ALLOWED_HOSTS": "localhost",
        "AUDIT_HMAC_KEYS": f"test:{secrets.token_hex(32)}",
        "MFA_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "RATELIMIT_STORAGE_URI": "memory://",
        **overrides,
    }
    return make_app(database_uri, **settings)


def test_preflight_refuses_sqlite(database_uri):
    problems = preflight(_production("sqlite:///unused.db"))
    assert len(problems) == 1 and "SQLite" in problems[0]


def test_preflight_passes_at_head(database_uri):
    allow = {"ALLOW_SQLITE_IN_PRODUCTION": True}
    assert preflight(_production(database_uri, **allow)) == []


def test_preflight_refuses_pending_migrations(behind_uri):
    allow = {"ALLOW_SQLITE_IN_PRODUCTION": True}
    problems = preflight(_production(behind_uri, **allow))
    assert problems == ["migrations are pending: run `flask db upgrade` first"]


def test_preflight_refuses_a_database_that_does_not_answer():
    url = f"postgresql://postgres:hunter2@127.0.0.1:{_closed_port()}/none"
    problems = preflight(_production(url))
    assert len(problems) == 1 and "does not answer" in problems[0]
    assert "hunter2" not in problems[0]


def test_flask_preflight_command(database_uri, behind_uri):
    allow = {"ALLOW_SQLITE_IN_PRODUCTION": True}
    ready = _production(database_uri, **allow).test_cli_runner().invoke(args=["preflight"])
    assert ready.exit_code == 0, ready.output
    assert "ready" in ready.output
    behind = _production(behind_uri, **allow).test_cli_runner().invoke(args=["preflight"])
    assert behind.exit_code == 1
    assert "flask db upgrade" in behind.output
    testing = make_app(database_uri).test_cli_runner().invoke(args=["preflight"])
    assert testing.exit_code == 1
    assert "not 'production'" in testing.output
