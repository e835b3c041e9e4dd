"""CSRF on every state-changing request, and security headers on every response."""

from __future__ import annotations

import secrets

import pytest
from flask import url_for

from clinic import create_app
from tests.conftest import PASSWORD, login


def _post_routes(app):
    for rule in app.url_map.iter_rules():
        if "POST" in (rule.methods or set()):
            yield rule


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_every_post_without_a_valid_csrf_token_is_refused(app, client_as, route_records, token):
    """Walk every POST as an administrator: the CSRF refusal (400 with its message), or
    403 where the role may not use the page at all — and nothing changes."""
    from tests.test_security_csrf_origin import (
        _actions_since,
        _last_seq,
        _refused_by_csrf,
        _role_may,
        _snapshot,
    )

    target = route_records["user_id"]
    admin = client_as("admin")
    before, seq = _snapshot(app), _last_seq(app)
    wrong = {}
    for rule in _post_routes(app):
        values = {**route_records, "action": "deactivate"}
        with app.test_request_context():
            url = url_for(rule.endpoint, **{k: values[k] for k in rule.arguments})
        data = {} if token is None else {"csrf_token": token}
        response = admin.post(url, data=data)
        if _role_may(app, "admin", rule.endpoint):
            if not _refused_by_csrf(response):
                wrong[rule.endpoint] = response.status_code
        elif response.status_code != 403:
            wrong[rule.endpoint] = response.status_code
    assert wrong == {}
    # Nothing happened: the admin is still signed in and the target still active.
    assert admin.get("/").status_code == 200
    assert _snapshot(app) == before
    assert _actions_since(app, seq) <= {"view", "access_denied"}
    from clinic.accounts.models import User
    from clinic.extensions import db

    with app.app_context():
        assert db.session.get(User, target).active


@pytest.fixture
def target(make_user):
    return make_user("staff", username="csrf-target")


def test_expired_form_is_shown_again_with_the_input_kept(app, client, make_user, username_of):
    name = username_of(make_user("staff"))
    response = client.post(
        "/login", data={"username": name, "password": PASSWORD, "csrf_token": "expired"}
    )
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "nothing was saved" in body
    assert f'value="{name}"' in body
    # and the user is not signed in
    assert client.get("/").status_code == 302


def test_logout_needs_a_post(client_as):
    user = client_as("staff")
    assert user.get("/logout").status_code == 405
    assert user.get("/").status_code == 200


EXPECTED = {
    # no-referrer: no URL (search terms) leaves in a Referer; see clinic/csrf.py.
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _check_headers(response, *, cacheable=False):
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, name
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    if not cacheable:
        assert response.headers["Cache-Control"] == "no-store"


def test_security_headers_on_every_kind_of_response(app, client, client_as):
    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    boom._clinic_access = "public"
    app.config["PROPAGATE_EXCEPTIONS"] = False
    _check_headers(client.get("/boom"))  # 500
    _check_headers(client.get("/login"))  # page
    _check_headers(client.get("/"))  # redirect to login
    _check_headers(client.get("/healthz"))  # JSON
    _check_headers(client.get("/no-such-page"))  # 404
    _check_headers(client.post("/logout"))  # 401 (not signed in)
    with client.get("/static/clinic.css") as static:  # static file
        _check_headers(static, cacheable=True)
    with client.get("/bootstrap/static/css/bootstrap.min.css") as static:
        _check_headers(static, cacheable=True)
    staff = client_as("staff")
    _check_headers(staff.get("/admin/users/"))  # 403
    _check_headers(staff.get("/account"))  # page behind login
    _check_headers(staff.post("/logout"))  # 400 (CSRF)


def test_hsts_only_in_production(client, database_uri):
    assert "Strict-Transport-Security" not in client.get("/login").headers
    prod = create_app(
        {
            "CLINIC_ENV": "production",
            "SECRET_KEY": secrets.token_hex(32),
            "ALLOWED_HOSTS": "localhost",
            "AUDIT_HMAC_KEYS": "test:" + "a" * 64,
            "MFA_ENCRYPTION_KEYS": "A" * 43 + "=",  # a Fernet key (32 zero bytes)
            "SQLALCHEMY_DATABASE_URI": database_uri,
        }
    )
    response = prod.test_client().get("/login", base_url="https://localhost")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_cookies_are_httponly_and_samesite_lax(client, make_user, username_of):
    response = login(client, username_of(make_user("staff")))
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
