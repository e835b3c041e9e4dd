"""The application skeleton: configuration, health check, error pages, request log."""

from __future__ import annotations

import json
import logging
import secrets

import pytest
import sqlalchemy as sa

import config
from clinic import create_app
from clinic.extensions import db
from clinic.sites.models import Site


def test_production_refuses_to_start_without_secret_key(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"CLINIC_ENV": "production", "SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_production_never_debugs_and_sets_secure_cookies():
    app = create_app(
        {
            "CLINIC_ENV": "production",
            "SECRET_KEY": secrets.token_hex(32),
            "ALLOWED_HOSTS": "localhost",
            "AUDIT_HMAC_KEYS": "test:" + "a" * 64,
            "MFA_ENCRYPTION_KEYS": "A" * 43 + "=",  # a Fernet key (32 zero bytes)
            "DEBUG": True,
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
        }
    )
    assert app.debug is False
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_NAME"].startswith("__Host-")
    assert "admin" in app.config["MFA_REQUIRED_ROLES"]


def test_environment_overrides_each_setting():
    settings = config.load_config(
        "testing",
        {
            "SESSION_IDLE_TIMEOUT_MINUTES": "5",
            "HSTS_ENABLED": "true",
            "DATABASE_URL": "postgresql://u@h/db",
        },
    )
    assert settings["SESSION_IDLE_TIMEOUT_MINUTES"] == 5
    assert settings["HSTS_ENABLED"] is True
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"


def test_unknown_environment_is_refused():
    with pytest.raises(RuntimeError, match="CLINIC_ENV"):
        config.load_config("staging", {})


def test_healthz_answers_when_database_is_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "up"}


def test_healthz_answers_503_when_database_is_down(tmp_path):
    app = create_app(
        {
            "CLINIC_ENV": "testing",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/missing-dir/none.db",
        }
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"


def test_unknown_page_shows_friendly_404(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "Not found" in response.get_data(as_text=True)


def test_server_error_page_reveals_nothing_internal(app, client):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internal detail")

    boom._clinic_access = "public"
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get("/boom")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "secret internal detail" not in body
    assert "Traceback" not in body
    assert "Something went wrong" in body


def test_request_log_has_rule_not_raw_path_or_query(client, caplog):
    caplog.set_level(logging.INFO, logger="clinic.request")
    client.get("/healthz?name=Jo+Smith", headers={"X-Request-ID": "req-12345678"})
    records = [r for r in caplog.records if r.name == "clinic.request"]
    assert records, "no request line logged"
    fields = records[-1].fields
    assert fields["rule"] == "/healthz"
    assert fields["status"] == 200
    assert fields["request_id"] == "req-12345678"
    assert fields["method"] == "GET"
    assert "duration_ms" in fields and "user_id" in fields
    assert "Smith" not in json.dumps(fields)


def test_bootstrap_is_served_locally(client):
    html = client.get("/login").get_data(as_text=True)
    assert "cdn" not in html.lower()
    assert "/bootstrap/static/css/bootstrap.min.css" in html
    with client.get("/bootstrap/static/css/bootstrap.min.css") as css:
        assert css.status_code == 200


def test_sqlite_enforces_foreign_keys_and_wal(app):
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("SQLite pragmas")
    with app.app_context():
        assert db.session.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
        assert db.session.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(sa.text("PRAGMA busy_timeout")).scalar() == 5000


def test_site_code_is_checked_by_the_database(app):
    with app.app_context():
        db.session.add(Site(code="lower", name="x", timezone="UTC"))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.flush()
        db.session.rollback()


def test_datetimes_come_back_timezone_aware(app):
    import datetime as dt

    from clinic.db import UTCDateTime

    table = sa.Table("t_utc", sa.MetaData(), sa.Column("at", UTCDateTime()))
    with app.app_context(), db.engine.begin() as conn:
        table.create(conn)
        local = dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
        conn.execute(table.insert().values(at=local))
        value = conn.execute(sa.select(table.c.at)).scalar_one()
        table.drop(conn)
    assert value.tzinfo is not None
    assert value == local
