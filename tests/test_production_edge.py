"""Deployment hardening at the edge of the app: production refuses weak settings, a forged
``Host`` never reaches a redirect, and forwarded headers count only from the proxy."""

from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import request

from clinic import create_app
from clinic.audit.models import AuditEvent
from clinic.extensions import db
from clinic.production import secret_key_problem
from tests.conftest import CSRF_RE, ON_POSTGRES, empty_postgres_tables, make_app

GOOD_KEY = secrets.token_hex(32)


def production_settings(**overrides) -> dict:
    settings = {
        "CLINIC_ENV": "production",
        "SECRET_KEY": GOOD_KEY,
        "ALLOWED_HOSTS": "clinic.example.org",
        "AUDIT_HMAC_KEYS": f"test:{secrets.token_hex(32)}",
        "MFA_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SQLALCHEMY_DATABASE_URI": "sqlite://",
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    settings.update(overrides)
    return settings


# --- SECRET_KEY ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (None, "must be set"),
        ("", "must be set"),
        ("changeme", "too short"),
        ("secret", "too short"),
        ("dev", "too short"),
        ("3f9a1c0e7b2d4a6f8e1c3b5d7f9a2c", "too short"),  # 30 characters
        ("changeme" * 4, "well-known"),
        ("CHANGEME changeme changeme changeme", "well-known"),
        ("192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf", "well-known"),
        ("x" * 64, "repeated"),
        ("0123456789abcdef" * 4, "repeated"),
        ("aab" * 20, "repeated"),
        ("abcabcabcdabcabcabcdabcabcabcdabcab", "repeated"),  # 4 distinct characters
    ],
)
def test_weak_secret_keys_are_refused(key, why):
    problem = secret_key_problem(key)
    assert problem is not None and why in problem
    if key and len(key) >= 16:
        assert key not in problem  # the message never quotes the key


# Made with secrets.token_hex(16), token_hex(32) and token_urlsafe(32); fixed, so every
# xdist worker collects the same tests.
@pytest.mark.parametrize(
    "key",
    [
        "7127277c7ae963418fb0f1e3710eca86",
        "ca890dc3effb33d0464c8450edd003c5f76d653da7eafd7c2bec64a0a907af48",
        "9DD3sCO-MIECy0apqp1PPo7L9r53DPNAzN6ahv-f5r8",
    ],
)
def test_random_secret_keys_are_accepted(key):
    assert secret_key_problem(key) is None


@pytest.mark.parametrize("key", ["changeme", "x" * 64, "secret" * 6])
def test_production_app_refuses_to_start_with_a_weak_secret_key(key):
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(production_settings(SECRET_KEY=key))


def test_a_weak_secret_key_is_refused_from_the_environment(monkeypatch):
    monkeypatch.setenv("CLINIC_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "changeme")
    settings = production_settings()
    del settings["SECRET_KEY"], settings["CLINIC_ENV"]
    with pytest.raises(RuntimeError, match="SECRET_KEY is too short"):
        create_app(settings)


def test_development_keeps_accepting_any_key():
    app = create_app({"CLINIC_ENV": "development", "SECRET_KEY": "dev"})
    assert app.config["SECRET_KEY"] == "dev"


# --- ALLOWED_HOSTS ------------------------------------------------------------------------


@pytest.mark.parametrize("hosts", ["", " , "])
def test_production_app_refuses_to_start_without_allowed_hosts(hosts):
    with pytest.raises(RuntimeError, match="ALLOWED_HOSTS must be set in production"):
        create_app(production_settings(ALLOWED_HOSTS=hosts))


def test_an_unparseable_trusted_proxy_is_refused():
    with pytest.raises(RuntimeError, match="TRUSTED_PROXIES"):
        create_app({"CLINIC_ENV": "testing", "TRUSTED_PROXIES": "127.0.0.1,proxy.local"})


@pytest.fixture
def app_overrides():
    return {"ALLOWED_HOSTS": "clinic.example.org, .example.net"}


def test_a_forged_host_is_refused_before_any_redirect(client, caplog):
    response = client.get("/patients/", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert "Location" not in response.headers
    body = response.get_data(as_text=True)
    assert "Bad request" in body  # the ordinary error page
    assert "evil.example" not in body
    assert not any("evil.example" in r.getMessage() for r in caplog.records)
    assert not any("evil.example" in str(getattr(r, "fields", "")) for r in caplog.records)


@pytest.mark.parametrize(
    "host", ["evil.example", "clinic.example.org.evil.example", "example.net.evil", ""]
)
def test_no_redirect_carries_a_forged_host(client, host):
    for path in ("/patients/", "/", "/login?next=/patients/", "/account"):
        response = client.get(path, headers={"Host": host})
        assert response.status_code == 400, path
        assert "evil" not in response.headers.get("Location", "")


@pytest.mark.parametrize(
    "host", ["clinic.example.org", "CLINIC.example.org:8443", "ward.example.net"]
)
def test_the_allowed_hosts_are_served(client, host):
    response = client.get("/patients/", headers={"Host": host})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_the_health_checks_answer_a_probe_by_address(client):
    # A load balancer's probe sends the server's own address as the Host.
    assert client.get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200
    assert client.get("/readyz", headers={"Host": "10.0.0.7:8000"}).status_code == 200


def test_any_host_is_served_when_none_is_configured(database_uri):
    app = make_app(database_uri)
    response = app.test_client().get("/patients/", headers={"Host": "anything.example"})
    assert response.status_code == 302


# --- forwarded headers --------------------------------------------------------------------

PEER = "198.51.100.7"  # a client that reaches the app server directly
PROXY = "10.0.0.2"


def _login_attempts(app, peer: str, forwarded: list[str]) -> list[int]:
    """POST wrong passwords from ``peer``, each with its own X-Forwarded-For."""
    client = app.test_client()
    base = {"REMOTE_ADDR": peer}
    page = client.get("/login", environ_base=base).get_data(as_text=True)
    token = CSRF_RE.search(page).group(1)
    statuses = []
    for address in forwarded:
        response = client.post(
            "/login",
            data={"username": "nobody", "password": "wrong", "csrf_token": token},
            headers={"X-Forwarded-For": address},
            environ_base=base,
        )
        statuses.append(response.status_code)
    return statuses


def _failed_login_addresses(app) -> set[str | None]:
    with app.app_context():
        return set(
            db.session.scalars(sa.select(AuditEvent.ip).where(AuditEvent.action == "login_failed"))
        )


@pytest.fixture
def proxied_app(database_uri):
    """An app behind proxies (``make_app(**settings)``); on PostgreSQL the tables are
    emptied afterwards, as the ``app`` fixture does."""
    made = []

    def make(**settings):
        made.append(make_app(database_uri, PROXY_FIX_X_FOR=1, **settings))
        return made[-1]

    yield make
    for app in made:
        with app.app_context():
            if ON_POSTGRES:
                with db.engine.begin() as conn:
                    empty_postgres_tables(conn)
            db.engine.dispose()


@pytest.fixture
def limited_app(proxied_app):
    return proxied_app(
        TRUSTED_PROXIES=f"127.0.0.1,::1,{PROXY}/32",
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI="memory://",
        LOGIN_RATE_LIMIT="20 per minute",
    )


def test_forged_forwarded_for_from_a_direct_client_counts_as_one_client(limited_app):
    forged = [f"203.0.113.{n}" for n in range(1, 26)]
    statuses = _login_attempts(limited_app, PEER, forged)
    assert 429 not in statuses[:20]
    assert statuses[20:] == [429] * 5
    assert _failed_login_addresses(limited_app) == {PEER}


def test_the_proxy_forwarded_for_names_each_client(limited_app):
    forwarded = [f"203.0.113.{n}" for n in range(1, 26)]
    statuses = _login_attempts(limited_app, PROXY, forwarded)
    assert 429 not in statuses  # 25 workstations behind the proxy, one attempt each
    assert _failed_login_addresses(limited_app) == set(forwarded)


def test_a_proxy_given_as_a_network_is_trusted(proxied_app):
    app = proxied_app(TRUSTED_PROXIES="10.0.0.0/8")
    _login_attempts(app, "10.1.2.3", ["203.0.113.9"])
    _login_attempts(app, "::ffff:10.1.2.4", ["203.0.113.10"])
    assert _failed_login_addresses(app) == {"203.0.113.9", "203.0.113.10"}


def test_forwarded_proto_from_a_direct_client_is_ignored(proxied_app):
    app = proxied_app()
    seen = {}

    @app.before_request
    def probe():
        seen["scheme"], seen["remote"] = request.scheme, request.remote_addr

    client = app.test_client()
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5"}
    client.get("/healthz", headers=headers, environ_base={"REMOTE_ADDR": PEER})
    assert seen == {"scheme": "http", "remote": PEER}
    client.get("/healthz", headers=headers)  # from loopback: the default proxy
    assert seen == {"scheme": "https", "remote": "203.0.113.5"}
