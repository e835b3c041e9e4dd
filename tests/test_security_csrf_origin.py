"""A refused CSRF check refuses: the action never runs, whatever the view does.

And forms work behind a TLS-terminating proxy: the same-origin check reads
``Sec-Fetch-Site``/``Origin``/``Referer`` (the app sends ``Referrer-Policy: no-referrer``,
so browsers send no Referer), and still refuses a POST from another site.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from flask import request, url_for

from clinic.extensions import db
from tests.conftest import ALL_FLAGS, PASSWORD

# Behind a proxy that terminates TLS, as the README's production set-up.
TLS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
FOREIGN = {
    "foreign Referer": {"Referer": "https://evil.example/login"},
    "foreign Origin": {"Origin": "https://evil.example"},
    "cross-site fetch": {"Sec-Fetch-Site": "cross-site"},
    "same-site fetch": {"Sec-Fetch-Site": "same-site"},
    "user-typed fetch": {"Sec-Fetch-Site": "none"},
    "same-origin Referer but cross-site fetch": {
        "Sec-Fetch-Site": "cross-site",
        "Referer": "https://localhost/login",
    },
    "no header at all (HTTPS)": {},
}
SAME_ORIGIN = {
    "Sec-Fetch-Site": {"Sec-Fetch-Site": "same-origin"},
    "Origin": {"Origin": "https://localhost"},
    "Origin with the default port": {"Origin": "https://localhost:443"},
    "Referer": {"Referer": "https://localhost/login"},
}


@pytest.fixture
def app_overrides():
    return {"PROXY_FIX_X_FOR": 1}


def _login_events(app, user_id: int) -> list[str]:
    from clinic.audit.models import AuditEvent

    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(AuditEvent.action).where(
                    AuditEvent.user_id == user_id, AuditEvent.action == "login"
                )
            )
        )


def _sessions(app, user_id: int) -> int:
    from clinic.accounts.models import UserSession

    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count())
            .select_from(UserSession)
            .where(UserSession.user_id == user_id)
        )


@pytest.mark.parametrize("headers", FOREIGN.values(), ids=FOREIGN.keys())
def test_sign_in_from_another_site_behind_tls_signs_no_one_in(
    app, client, make_user, username_of, headers
):
    user_id = make_user("staff")
    token = client.csrf_token("/login")
    response = client.post(
        "/login",
        data={"username": username_of(user_id), "password": PASSWORD, "csrf_token": token},
        headers={**TLS, **headers},
        base_url="https://localhost",
    )
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "The form had expired, so nothing was saved." in body
    assert f'value="{username_of(user_id)}"' in body  # the input is kept
    assert _sessions(app, user_id) == 0
    assert _login_events(app, user_id) == []
    home = client.get("/", headers=TLS, base_url="https://localhost")
    assert home.status_code == 302
    assert home.headers["Location"].startswith("/login")


@pytest.mark.parametrize("headers", SAME_ORIGIN.values(), ids=SAME_ORIGIN.keys())
def test_sign_in_and_sign_out_work_behind_tls(app, client, make_user, username_of, headers):
    user_id = make_user("staff")
    https = {"headers": {**TLS, **headers}, "base_url": "https://localhost"}
    response = client.post(
        "/login",
        data={
            "username": username_of(user_id),
            "password": PASSWORD,
            "csrf_token": client.csrf_token("/login"),
        },
        **https,
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"] == "/"
    assert _login_events(app, user_id) == ["login"]
    signed_in = client.get("/", **https)
    assert signed_in.status_code == 200
    token = client.csrf_token("/")
    signed_out = client.post("/logout", data={"csrf_token": token}, **https)
    assert signed_out.status_code == 302
    assert signed_out.headers["Location"] == "/login"
    assert client.get("/", **https).status_code == 302


def test_plain_http_post_from_another_site_is_refused_too(client, make_user, username_of):
    user_id = make_user("staff")
    response = client.post(
        "/login",
        data={
            "username": username_of(user_id),
            "password": PASSWORD,
            "csrf_token": client.csrf_token("/login"),
        },
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 400
    assert client.get("/").status_code == 302


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://localhost.evil.example"},
        {"Origin": "http://localhost"},  # the same host without TLS
        {"Origin": "https://localhost:8443"},
        {"Referer": "https://evil.example/?https://localhost/"},
        {"Origin": "null"},  # and nothing else: refused over HTTPS
        {"Origin": "https://[::1"},  # malformed
    ],
)
def test_origin_must_match_scheme_host_and_port(client, make_user, username_of, headers):
    user_id = make_user("staff")
    response = client.post(
        "/login",
        data={
            "username": username_of(user_id),
            "password": PASSWORD,
            "csrf_token": client.csrf_token("/login"),
        },
        headers={**TLS, **headers},
        base_url="https://localhost",
    )
    assert response.status_code == 400


def _post_routes(app):
    return [r for r in app.url_map.iter_rules() if "POST" in (r.methods or set())]


def _snapshot(app) -> dict[str, list]:
    """Every row of every table but the audit trail and the session bookkeeping that a
    signed-in request updates (``last_seen_at``)."""
    skipped = {"audit_event", "audit_chain_head", "alembic_version"}
    with app.app_context():
        out = {}
        for table in db.metadata.sorted_tables:
            if table.name in skipped:
                continue
            columns = [c for c in table.columns if c.name != "last_seen_at"]
            rows = db.session.execute(sa.select(*columns).order_by(*table.primary_key.columns))
            out[table.name] = [tuple(row) for row in rows]
        return out


def _actions_since(app, seq: int) -> set[str]:
    from clinic.audit.models import AuditEvent

    with app.app_context():
        return set(db.session.scalars(sa.select(AuditEvent.action).where(AuditEvent.seq > seq)))


def _last_seq(app) -> int:
    from clinic.audit.models import AuditEvent

    with app.app_context():
        return db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.seq), 0)))


# What a POST needs to succeed, beyond its CSRF token, where a token alone is not enough.
ACTING_DATA = {
    "users.act": {},  # deactivate: a confirmation
    "audit.acknowledge": {},
    "accounts.logout": {},
    "accounts.end_other_sessions": {},
}


# What the CSRF handler answers: a form page shown again, or the plain 400 page.
CSRF_REFUSALS = (
    "The form had expired, so nothing was saved.",
    "Your form expired or was sent without its security token.",
)


def _refused_by_csrf(response) -> bool:
    body = response.get_data(as_text=True)
    return response.status_code == 400 and any(text in body for text in CSRF_REFUSALS)


def _role_may(app, role: str, endpoint: str) -> bool:
    from clinic.security import AUTHENTICATED, PUBLIC, endpoint_access, role_can

    access = endpoint_access(app, endpoint)
    return access in (PUBLIC, AUTHENTICATED) or role_can(role, access)


@pytest.mark.parametrize("role", ["admin", "clinician"])
def test_no_post_acts_when_its_origin_check_fails(app, role, client_as, route_records):
    """Walk every POST: with a valid token but from another site, nothing changes. The
    answer is the CSRF refusal, or 403 where the role may not use the page at all."""
    user = client_as(role, **ALL_FLAGS.get(role, {}))
    before, seq = _snapshot(app), _last_seq(app)
    wrong = {}
    for rule in _post_routes(app):
        values = {**route_records, "action": "deactivate"}
        with app.test_request_context():
            url = url_for(rule.endpoint, **{k: values[k] for k in rule.arguments})
        data = {**ACTING_DATA.get(rule.endpoint, {}), "csrf_token": user.csrf_token("/")}
        response = user.post(url, data=data, headers={**TLS, "Sec-Fetch-Site": "cross-site"})
        if _role_may(app, role, rule.endpoint):
            if not _refused_by_csrf(response):
                wrong[rule.endpoint] = response.status_code
        elif response.status_code != 403:
            wrong[rule.endpoint] = response.status_code
    assert wrong == {}
    assert _snapshot(app) == before
    assert _actions_since(app, seq) <= {"view", "access_denied"}
    assert user.get("/", headers=TLS).status_code == 200  # still signed in


@pytest.mark.parametrize("role", ["admin", "clinician"])
def test_no_post_is_refused_by_the_origin_check_from_our_own_page_behind_tls(
    app, role, client_as, route_records
):
    """The other half: the same POSTs from our own page pass the check (whatever the
    view then answers to a form sent empty)."""
    user = client_as(role, **ALL_FLAGS.get(role, {}))
    refused = []
    for rule in _post_routes(app):
        if rule.endpoint == "accounts.logout":
            continue  # would end this walk; signing out behind TLS has its own tests
        values = {**route_records, "action": "unlock"}
        with app.test_request_context():
            url = url_for(rule.endpoint, **{k: values[k] for k in rule.arguments})
        data = {"csrf_token": user.csrf_token("/")}
        response = user.post(url, data=data, headers={**TLS, "Sec-Fetch-Site": "same-origin"})
        if _refused_by_csrf(response):
            refused.append(rule.endpoint)
    assert refused == []


# --- the handler shows the page again without acting, whatever the view does ------------


def _site_codes(app) -> list[str]:
    from clinic.sites.models import Site

    with app.app_context():
        return sorted(db.session.scalars(sa.select(Site.code)))


@pytest.fixture
def careless_views(app):
    """Views that act outside ``validate_on_submit()`` (which no view should do)."""
    from clinic.sites.models import Site

    def writes_on_post():
        if request.method == "POST":
            db.session.add(Site(code="ROGUE", name="Added by a careless view", timezone="UTC"))
            db.session.commit()
        return "a page"

    def updates_on_post():
        if request.method == "POST":
            db.session.execute(sa.update(Site).values(name="renamed"))
            db.session.commit()
        return "a page"

    def changes_without_saving_on_post():
        # Left for the request's closing commit (the one that saves page-view events).
        from clinic.audit import AuditAction, record

        record(AuditAction.VIEW, actor=None, entity_type="site")  # committed after the page
        if request.method == "POST":
            db.session.get(Site, 1).name = "renamed"
        return "a page"

    def redirects_on_post():
        if request.method == "POST":
            return "", 302, {"Location": "/elsewhere"}
        return "a page"

    for view in (
        writes_on_post,
        updates_on_post,
        changes_without_saving_on_post,
        redirects_on_post,
    ):
        view._clinic_access = "public"
        app.add_url_rule(f"/test/{view.__name__}", view_func=view, methods=["GET", "POST"])
    return app


@pytest.mark.parametrize(
    "view", ["writes_on_post", "updates_on_post", "changes_without_saving_on_post"]
)
def test_a_view_that_writes_outside_its_form_check_saves_nothing(
    careless_views, client, site, view
):
    before = _site_codes(careless_views)
    response = client.post(f"/test/{view}", data={"csrf_token": "expired"})
    assert response.status_code == 400
    assert "sent without its security token" in response.get_data(as_text=True)
    assert _site_codes(careless_views) == before
    from clinic.sites.models import Site

    with careless_views.app_context():
        assert db.session.get(Site, site).name == "Main Street Clinic"


def test_a_view_that_redirects_after_a_refusal_gets_the_error_page(careless_views, client):
    response = client.post("/test/redirects_on_post", data={"csrf_token": "expired"})
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_a_form_shown_again_is_not_submitted_to_the_view(app, client):
    """``is_submitted()`` is False for the view: it takes its GET branch."""
    from clinic.forms import ClinicForm

    seen = {}

    def probe():
        form = ClinicForm()
        seen["is_submitted"] = form.is_submitted()
        seen["validate_on_submit"] = form.validate_on_submit()
        return "a page"

    probe._clinic_access = "public"
    app.add_url_rule("/test/probe", view_func=probe, methods=["GET", "POST"])
    assert client.post("/test/probe", data={"csrf_token": "expired"}).status_code == 400
    assert seen == {"is_submitted": False, "validate_on_submit": False}
    # and with a valid token, the same form is submitted
    assert client.post("/test/probe", data={"csrf_token": client.csrf_token()}).status_code == 200
    assert seen["is_submitted"] is True


def test_signed_in_user_refused_by_csrf_keeps_their_session(client_as, app):
    """Showing a page again after a refusal may touch the session (last seen) — that is
    not the view acting, and is not refused."""
    user = client_as("staff")
    response = user.post("/account/password", data={"csrf_token": "expired"})
    assert response.status_code == 400
    assert "The form had expired, so nothing was saved." in response.get_data(as_text=True)
    assert user.get("/account").status_code == 200


def test_a_form_token_lasts_exactly_its_time_limit(
    app, client, make_user, username_of, time_machine
):
    """A token is valid WTF_CSRF_TIME_LIMIT seconds after it was issued, not one more."""
    name = username_of(make_user("staff"))
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    time_machine.move_to(start, tick=False)
    token = client.csrf_token("/login")
    limit = app.config["WTF_CSRF_TIME_LIMIT"]
    form = {"username": name, "password": PASSWORD, "csrf_token": token}

    time_machine.move_to(start + dt.timedelta(seconds=limit + 1), tick=False)
    late = client.post("/login", data=form)
    assert late.status_code == 400
    assert "The form had expired, so nothing was saved." in late.get_data(as_text=True)

    time_machine.move_to(start + dt.timedelta(seconds=limit), tick=False)
    on_time = client.post("/login", data=form)
    assert on_time.status_code == 302
    assert on_time.headers["Location"] == "/"
