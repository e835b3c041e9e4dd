"""Server-side sessions: the cookie carries only a random token naming a ``user_session``
row; signing out, a password change and an administrator's actions end sessions for good;
idle and absolute timeouts are enforced on the server; the cookie's flags."""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import secrets
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
import time_machine

from clinic import create_app
from clinic.accounts.models import User, UserSession
from clinic.extensions import db
from tests.conftest import CSRF_RE, PASSWORD, login

COOKIE = "clinic_session"
NEW_PASSWORD = "violet tractor moonlight 1987 pebble"
IDLE_MESSAGE = "You were signed out after a period of inactivity."
ABSOLUTE_MESSAGE = "Your session reached its time limit. Please sign in again."
ENDED_MESSAGE = "Your session was ended. Please sign in again."


# --- helpers ---------------------------------------------------------------------------


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def signed_in(app, username: str, password: str = PASSWORD, **kwargs):
    """A new browser, signed in as ``username``."""
    browser = app.test_client()
    response = login(browser, username, password, **kwargs)
    assert response.status_code == 302, text_of(response)
    assert response.headers["Location"] == "/"
    return browser


def is_signed_in(client) -> bool:
    return client.get("/account").status_code == 200


def is_sent_to_sign_in(client, page: str = "/account") -> bool:
    response = client.get(page)
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


def cookie_value(client) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None, "no session cookie"
    return cookie.value


def cookie_data(app, client) -> dict:
    """What the signed session cookie holds."""
    return app.session_interface.get_signing_serializer(app).loads(cookie_value(client))


def browser_with_cookie(app, value: str):
    """A new browser given a copy of a session cookie (as a thief would use it)."""
    browser = app.test_client()
    browser.set_cookie(COOKIE, value)
    return browser


def sessions_of(app, user_id: int) -> list[SimpleNamespace]:
    """Snapshots of the user's session rows, oldest first."""
    with app.app_context():
        rows = db.session.scalars(
            sa.select(UserSession).where(UserSession.user_id == user_id).order_by(UserSession.id)
        )
        columns = [a.key for a in sa.inspect(UserSession).column_attrs]
        return [SimpleNamespace(**{c: getattr(r, c) for c in columns}) for r in rows]


def live_sessions_of(app, user_id: int) -> list[SimpleNamespace]:
    return [s for s in sessions_of(app, user_id) if s.revoked_at is None]


def sign_out(client):
    return client.submit("/logout", {}, form_url="/account")


def act(client, user_id: int, action: str):
    """An administrator's action, confirmed the way a browser does."""
    url = f"/admin/users/{user_id}/{action}"
    return client.submit(url, {}, form_url=url)


def frozen_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# --- the cookie names a row ------------------------------------------------------------


def test_signing_in_records_a_session_with_address_and_browser(app, make_user):
    user_id = make_user("staff", "sam")
    before = dt.datetime.now(dt.UTC)

    signed_in(
        app,
        "sam",
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )

    [session] = sessions_of(app, user_id)
    assert session.ip == "203.0.113.7"
    assert session.user_agent == "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
    assert session.revoked_at is None
    assert before - dt.timedelta(seconds=1) <= session.created_at <= dt.datetime.now(dt.UTC)
    assert session.last_seen_at == session.created_at


def test_long_browser_name_is_cut_to_fit(app, make_user):
    user_id = make_user("staff", "sam")
    signed_in(app, "sam", headers={"User-Agent": "X" * 1000})
    [session] = sessions_of(app, user_id)
    assert session.user_agent == "X" * 255


def test_account_page_lists_the_users_sessions(app, make_user):
    make_user("staff", "sam")
    signed_in(app, "sam", environ_base={"REMOTE_ADDR": "203.0.113.8"})
    browser = signed_in(app, "sam", headers={"User-Agent": "Test Browser 1.0"})

    body = text_of(browser.get("/account"))

    assert "203.0.113.8" in body
    assert "Test Browser 1.0" in body
    assert body.count("this one") == 1


def test_cookie_holds_only_a_random_token_whose_hash_names_the_session(app, make_user):
    user_id = make_user("staff", "sam")
    browser = signed_in(app, "sam")

    data = cookie_data(app, browser)

    assert set(data) == {"sid"}  # no user id, no role: nothing to tamper with
    token = data["sid"]
    assert len(token) >= 43  # 32 random bytes
    [session] = sessions_of(app, user_id)
    assert session.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert session.token_hash != token
    with app.app_context():
        assert (
            db.session.scalar(sa.select(UserSession).where(UserSession.token_hash == token)) is None
        )


def test_validly_signed_cookie_naming_a_user_does_not_sign_in(app, make_user):
    """Only a live session row counts: a cookie forged with the secret key but without a
    real session token (or naming a user id, as Flask-Login's default would) is refused."""
    user_id = make_user("admin", "boss")
    serializer = app.session_interface.get_signing_serializer(app)
    for forged in (
        {"_user_id": str(user_id), "_fresh": True},
        {"sid": "guessed-token"},
        {"sid": hashlib.sha256(b"guessed-token").hexdigest()},
    ):
        browser = browser_with_cookie(app, serializer.dumps(forged))
        assert is_sent_to_sign_in(browser), forged


def test_session_row_stored_hash_cannot_be_used_as_a_cookie(app, make_user):
    user_id = make_user("staff", "sam")
    signed_in(app, "sam")
    [session] = sessions_of(app, user_id)
    serializer = app.session_interface.get_signing_serializer(app)
    browser = browser_with_cookie(app, serializer.dumps({"sid": session.token_hash}))
    assert is_sent_to_sign_in(browser)


def test_each_sign_in_gets_a_new_session_id(app, make_user):
    user_id = make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")
    first = cookie_data(app, browser)["sid"]
    sign_out(browser)
    login(browser, "sam")
    second = cookie_data(app, browser)["sid"]
    other = cookie_data(app, signed_in(app, "sam"))["sid"]

    assert len({first, second, other}) == 3
    assert len({s.token_hash for s in sessions_of(app, user_id)}) == 3


def test_cookie_planted_before_sign_in_is_worthless_to_whoever_planted_it(app, make_user):
    """Session fixation: an attacker hands the victim a cookie they know; signing in
    replaces it, and the attacker's copy stays signed out."""
    make_user("staff", "sam")
    attacker = app.test_client()
    attacker.get("/login")
    planted = cookie_value(attacker)
    victim = browser_with_cookie(app, planted)

    assert login(victim, "sam").headers["Location"] == "/"

    assert cookie_value(victim) != planted
    assert is_signed_in(victim)
    assert is_sent_to_sign_in(attacker)
    assert is_sent_to_sign_in(browser_with_cookie(app, planted))


# --- signing out -----------------------------------------------------------------------


def test_sign_out_needs_a_post(app, make_user):
    make_user("staff", "sam")
    browser = signed_in(app, "sam")
    assert browser.get("/logout").status_code == 405
    assert is_signed_in(browser)


def test_sign_out_ends_the_session_on_the_server_so_a_copied_cookie_is_refused(app, make_user):
    user_id = make_user("staff", "sam")
    browser = signed_in(app, "sam")
    stolen = cookie_value(browser)

    response = sign_out(browser)

    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert "You have signed out." in text_of(browser.get("/login"))
    [session] = sessions_of(app, user_id)
    assert session.revoked_at is not None
    assert session.revoked_reason == "logout"
    assert is_sent_to_sign_in(browser)
    replay = browser_with_cookie(app, stolen)
    response = replay.get("/account")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/account"


def test_signing_out_one_browser_leaves_the_others_signed_in(app, make_user):
    make_user("staff", "sam")
    first = signed_in(app, "sam")
    second = signed_in(app, "sam")
    sign_out(first)
    assert is_sent_to_sign_in(first)
    assert is_signed_in(second)


# --- events that end sessions ----------------------------------------------------------


def test_password_change_signs_out_other_browsers_but_keeps_this_one(app, make_user):
    user_id = make_user("staff", "sam")
    here = signed_in(app, "sam")
    elsewhere = signed_in(app, "sam")
    copy_of_here_before = cookie_value(here)

    response = here.submit(
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )

    assert response.status_code == 302
    page = here.get("/account")
    assert page.status_code == 200
    assert "Other sessions were signed out." in text_of(page)
    assert is_sent_to_sign_in(elsewhere)
    # The browser that changed the password got a new session id; its old one is dead.
    assert cookie_value(here) != copy_of_here_before
    assert is_sent_to_sign_in(browser_with_cookie(app, copy_of_here_before))
    assert len(live_sessions_of(app, user_id)) == 1


def test_signed_out_browser_is_told_its_session_was_ended(app, make_user):
    make_user("staff", "sam")
    here = signed_in(app, "sam")
    elsewhere = signed_in(app, "sam")
    here.submit(
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )

    response = elsewhere.get("/account", follow_redirects=True)

    assert response.request.path == "/login"
    assert ENDED_MESSAGE in text_of(response)


def test_user_signs_out_their_other_sessions(app, make_user):
    user_id = make_user("staff", "sam")
    here = signed_in(app, "sam")
    others = [signed_in(app, "sam"), signed_in(app, "sam")]

    response = here.submit("/account/sessions/end-others", {}, form_url="/account")

    assert response.status_code == 302
    assert "Ended 2 other session(s)." in text_of(here.get("/account"))
    assert is_signed_in(here)
    assert all(is_sent_to_sign_in(other) for other in others)
    assert len(live_sessions_of(app, user_id)) == 1


@pytest.fixture
def admin(client_as):
    return client_as("admin", username="boss")


@pytest.mark.parametrize(
    ("action", "reason", "status"),
    [
        ("deactivate", "deactivated", 302),
        ("end-sessions", "ended_by_admin", 302),
        ("reset-password", "password_reset", 200),  # the page with the temporary password
        ("reset-mfa", "mfa_reset", 302),
    ],
)
def test_administrator_action_ends_the_users_sessions_at_once(
    app, admin, make_user, action, reason, status
):
    user_id = make_user("staff", "sam")
    browsers = [signed_in(app, "sam"), signed_in(app, "sam")]
    copies = [cookie_value(b) for b in browsers]

    response = act(admin, user_id, action)

    assert response.status_code == status
    assert all(is_sent_to_sign_in(b) for b in browsers)
    assert all(is_sent_to_sign_in(browser_with_cookie(app, c)) for c in copies)
    sessions = sessions_of(app, user_id)
    assert len(sessions) == 2
    assert {s.revoked_reason for s in sessions} == {reason}
    assert is_signed_in(admin)


def test_role_change_ends_the_users_sessions_at_once(app, admin, make_user, site):
    user_id = make_user("clinician", "nina", full_name="Nina Simone")
    nina = signed_in(app, "nina")

    response = admin.submit(
        f"/admin/users/{user_id}/edit",
        {"full_name": "Nina Simone", "email": "", "role": "staff", "sites": [site], "version": 1},
    )

    assert response.status_code == 302
    assert is_sent_to_sign_in(nina)
    assert [s.revoked_reason for s in sessions_of(app, user_id)] == ["role_changed"]
    # Signing in again gives the new role.
    assert "Signed in as staff" in text_of(signed_in(app, "nina").get("/"))


def test_editing_a_user_without_changing_the_role_keeps_them_signed_in(app, admin, make_user, site):
    user_id = make_user("clinician", "nina", full_name="Nina Simone")
    nina = signed_in(app, "nina")

    response = admin.submit(
        f"/admin/users/{user_id}/edit",
        {
            "full_name": "Nina Simone-Jones",
            "email": "",
            "role": "clinician",
            "sites": [site],
            "version": 1,
        },
    )

    assert response.status_code == 302
    assert is_signed_in(nina)


def test_deactivated_user_with_a_session_left_open_is_signed_out(app, make_user):
    """Even if a session row escaped revocation, a deactivated user's session is refused."""
    user_id = make_user("staff", "sam")
    browser = signed_in(app, "sam")
    with app.app_context():
        db.session.get(User, user_id).active = False
        db.session.commit()

    assert is_sent_to_sign_in(browser)
    assert [s.revoked_reason for s in sessions_of(app, user_id)] == ["deactivated"]


# --- timeouts --------------------------------------------------------------------------


def test_idle_session_ends_after_15_minutes(app, make_user):
    assert app.config["SESSION_IDLE_TIMEOUT_MINUTES"] == 15
    user_id = make_user("staff", "sam")
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "sam")
        stolen = cookie_value(browser)

        clock.move_to(start + dt.timedelta(minutes=15))
        response = browser.get("/account")

        assert response.status_code == 302
        assert response.headers["Location"] == "/login?next=/account"
        page = browser.get(response.headers["Location"])
        assert IDLE_MESSAGE in text_of(page)
        [session] = sessions_of(app, user_id)
        assert session.revoked_reason == "idle_timeout"
        assert session.revoked_at == start + dt.timedelta(minutes=15)
        # The copy of the cookie is as dead as the original.
        assert is_sent_to_sign_in(browser_with_cookie(app, stolen))


def test_activity_within_15_minutes_keeps_the_session_alive(app, make_user):
    make_user("staff", "sam")
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "sam")
        for minutes in (14, 28, 42, 56):
            clock.move_to(start + dt.timedelta(minutes=minutes, seconds=59))
            assert is_signed_in(browser), minutes

        clock.move_to(start + dt.timedelta(minutes=56 + 15, seconds=59))
        assert is_sent_to_sign_in(browser)


def test_idle_timeout_follows_the_setting(app, make_user):
    app.config["SESSION_IDLE_TIMEOUT_MINUTES"] = 5
    make_user("staff", "sam")
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "sam")
        clock.move_to(start + dt.timedelta(minutes=4, seconds=59))
        assert is_signed_in(browser)
        clock.move_to(start + dt.timedelta(minutes=9, seconds=59))
        assert is_sent_to_sign_in(browser)


def test_session_ends_after_12_hours_however_active(app, make_user):
    assert app.config["SESSION_ABSOLUTE_TIMEOUT_HOURS"] == 12
    user_id = make_user("staff", "sam")
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "sam")
        for step in range(1, 72):  # every 10 minutes up to 11 h 50 min
            clock.move_to(start + dt.timedelta(minutes=10 * step))
            assert is_signed_in(browser), f"signed out after {10 * step} minutes"
        clock.move_to(start + dt.timedelta(hours=11, minutes=59, seconds=59))
        assert is_signed_in(browser)

        clock.move_to(start + dt.timedelta(hours=12))
        response = browser.get("/account", follow_redirects=True)

        assert response.request.path == "/login"
        assert ABSOLUTE_MESSAGE in text_of(response)
        [session] = sessions_of(app, user_id)
        assert session.revoked_reason == "absolute_timeout"


def test_signing_out_other_sessions_does_not_restart_the_12_hour_limit(app, make_user):
    make_user("staff", "sam")
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "sam")
        for step in range(1, 72):  # busy all day, every 10 minutes
            clock.move_to(start + dt.timedelta(minutes=10 * step))
            if step == 66:  # at 11 h
                response = browser.submit("/account/sessions/end-others", {}, form_url="/account")
                assert response.status_code == 302
            assert is_signed_in(browser)

        clock.move_to(start + dt.timedelta(hours=12))
        assert is_sent_to_sign_in(browser)


def test_absolute_timeout_follows_the_setting(app, make_user):
    app.config["SESSION_ABSOLUTE_TIMEOUT_HOURS"] = 1
    make_user("staff", "sam")
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "sam")
        for minutes in (10, 20, 30, 40, 50):
            clock.move_to(start + dt.timedelta(minutes=minutes))
            assert is_signed_in(browser)
        clock.move_to(start + dt.timedelta(hours=1))
        assert is_sent_to_sign_in(browser)


def test_signing_in_again_after_a_timeout_starts_a_fresh_session(app, make_user):
    user_id = make_user("staff", "sam")
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "sam")
        clock.move_to(start + dt.timedelta(minutes=20))
        expired = browser.get("/account")
        assert (
            login(browser, "sam", url=expired.headers["Location"]).headers["Location"] == "/account"
        )
        assert is_signed_in(browser)
    assert [s.revoked_reason for s in sessions_of(app, user_id)] == ["idle_timeout", None]


def test_form_sent_after_a_timeout_is_refused(app, make_user):
    make_user("staff", "sam")
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "sam")
        token = browser.csrf_token("/account")
        clock.move_to(start + dt.timedelta(minutes=15))
        response = browser.post("/account/sessions/end-others", data={"csrf_token": token})
        assert response.status_code == 401
        assert is_sent_to_sign_in(browser)


# --- cookie flags ----------------------------------------------------------------------


def set_cookie_header(response, name: str) -> str:
    [header] = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]
    return header


def cookie_attributes(header: str) -> set[str]:
    return {part.strip() for part in header.split(";")[1:]}


def test_session_cookie_is_httponly_and_samesite_lax(app, client, make_user):
    make_user("staff", "sam")
    response = login(client, "sam")
    attributes = cookie_attributes(set_cookie_header(response, COOKIE))
    assert "HttpOnly" in attributes
    assert "SameSite=Lax" in attributes
    assert "Path=/" in attributes
    assert not any(a.startswith(("Expires=", "Max-Age=")) for a in attributes)  # browser session


def test_production_session_cookie_is_host_prefixed_and_secure(app, database_uri, make_user):
    make_user("staff", "sam")  # administrators need two-step verification in production
    production = create_app(
        {
            "CLINIC_ENV": "production",
            "SECRET_KEY": secrets.token_hex(32),
            "ALLOWED_HOSTS": "localhost",
            "AUDIT_HMAC_KEYS": app.config["AUDIT_HMAC_KEYS"],  # required in production
            "MFA_ENCRYPTION_KEYS": app.config["MFA_ENCRYPTION_KEYS"],  # this one too
            "SQLALCHEMY_DATABASE_URI": database_uri,
            # The production setting points at Redis; cookie flags do not need it.
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    try:
        browser = production.test_client()
        https = {"base_url": "https://localhost"}
        page = browser.get("/login", **https)
        csrf = CSRF_RE.search(page.get_data(as_text=True)).group(1)
        response = browser.post(
            "/login",
            data={"username": "sam", "password": PASSWORD, "csrf_token": csrf},
            # Flask-WTF checks the Referer of HTTPS form posts.
            headers={"Referer": "https://localhost/login"},
            **https,
        )

        assert response.status_code == 302, response.get_data(as_text=True)
        header = set_cookie_header(response, "__Host-clinic_session")
        attributes = cookie_attributes(header)
        assert "Secure" in attributes
        assert "HttpOnly" in attributes
        assert "SameSite=Lax" in attributes
        # What browsers require of a __Host- cookie: Secure, Path=/ and no Domain.
        assert "Path=/" in attributes
        assert not any(a.lower().startswith("domain=") for a in attributes)
        assert browser.get("/account", **https).status_code == 200
    finally:
        with production.app_context():
            db.engine.dispose()
