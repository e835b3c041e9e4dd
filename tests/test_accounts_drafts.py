"""Nothing typed is lost (issue 9): typing keeps the session alive (keep-alive), and a
form sent after the session timed out comes back filled after the SAME user signs in
again — never for anyone else, only once, and not after it expired."""

from __future__ import annotations

import datetime as dt
import html
import logging

import pytest
import sqlalchemy as sa
import time_machine

from clinic.accounts.models import SavedFormDraft, User, UserSession
from clinic.errors import CSRF_REFUSED_DESCRIPTION
from clinic.extensions import db
from tests.conftest import CSRF_RE, PASSWORD, login

IDLE_MESSAGE = "You were signed out after a period of inactivity."
KEPT_MESSAGE = "What you typed is kept: sign in again to see it."
RESTORED_MESSAGE = "Your entries were kept while you signed in again."
TYPED_NAME = "Rosalind Quetzal-Typed"


def frozen_now() -> dt.datetime:
    return dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def signed_in(app, username: str):
    browser = app.test_client()
    response = login(browser, username)
    assert response.status_code == 302, text_of(response)
    return browser


def token_of(browser, url: str) -> str:
    match = CSRF_RE.search(browser.get(url).get_data(as_text=True))
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def drafts(app) -> list[tuple[int, str]]:
    with app.app_context():
        return [
            (d.user_id, d.path)
            for d in db.session.scalars(sa.select(SavedFormDraft).order_by(SavedFormDraft.id))
        ]


def session_row(app, user_id: int) -> UserSession:
    with app.app_context():
        row = db.session.scalars(
            sa.select(UserSession)
            .where(UserSession.user_id == user_id)
            .order_by(UserSession.id.desc())
        ).first()
        db.session.expunge(row)
        return row


def full_name_of(app, user_id: int) -> str:
    with app.app_context():
        return db.session.get(User, user_id).full_name


@pytest.fixture
def people(make_user):
    return {
        "admin": make_user("admin", "ada"),
        "other_admin": make_user("admin", "bea"),
        "target": make_user("staff", "tom", full_name="Tom Original"),
    }


def edit_form(target: int, token: str) -> dict:
    return {
        "csrf_token": token,
        "full_name": TYPED_NAME,
        "email": "",
        "role": "staff",
        "sites": "1",
        "version": "1",
        "submit": "Save",
    }


def send_edit_after_timeout(app, people, clock, start, *, minutes: float = 15):
    """Ada opens Tom's edit page, types, and sends it ``minutes`` later."""
    browser = signed_in(app, "ada")
    url = f"/admin/users/{people['target']}/edit"
    token = token_of(browser, url)
    clock.move_to(start + dt.timedelta(minutes=minutes))
    return browser, url, browser.post(url, data=edit_form(people["target"], token))


# --- keep-alive -----------------------------------------------------------------------


def test_typing_keeps_the_session_alive_past_the_idle_timeout(app, people):
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "ada")
        token = token_of(browser, "/account")
        for minutes in (14, 28, 42):
            clock.move_to(start + dt.timedelta(minutes=minutes, seconds=59))
            response = browser.post("/session/keep-alive", headers={"X-CSRFToken": token})
            assert response.status_code == 200
            assert response.get_json() == {"seconds_left": 15 * 60.0}
        assert session_row(app, people["admin"]).last_seen_at == start + dt.timedelta(
            minutes=42, seconds=59
        )
        # 15 minutes after the last keep-alive: signed out, as before.
        clock.move_to(start + dt.timedelta(minutes=57, seconds=59))
        response = browser.post("/session/keep-alive", headers={"X-CSRFToken": token})
        assert response.status_code == 401
        assert session_row(app, people["admin"]).revoked_reason == "idle_timeout"


def test_keep_alive_never_extends_the_absolute_limit(app, people):
    app.config["SESSION_ABSOLUTE_TIMEOUT_HOURS"] = 1
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "ada")
        token = token_of(browser, "/account")
        for minutes in (14, 28, 42):
            clock.move_to(start + dt.timedelta(minutes=minutes))
            browser.post("/session/keep-alive", headers={"X-CSRFToken": token})
        clock.move_to(start + dt.timedelta(minutes=50))
        answer = browser.post("/session/keep-alive", headers={"X-CSRFToken": token})
        assert answer.get_json() == {"seconds_left": 10 * 60.0}  # the hour, not 15 min
        clock.move_to(start + dt.timedelta(minutes=59, seconds=59))
        answer = browser.post("/session/keep-alive", headers={"X-CSRFToken": token})
        assert answer.get_json() == {"seconds_left": 1.0}
        clock.move_to(start + dt.timedelta(hours=1))
        answer = browser.post("/session/keep-alive", headers={"X-CSRFToken": token})
        assert answer.status_code == 401
        assert session_row(app, people["admin"]).revoked_reason == "absolute_timeout"


def test_keep_alive_without_its_csrf_token_is_refused_and_touches_nothing(app, people):
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "ada")
        token = token_of(browser, "/account")
        # 30 s later: too soon for an ordinary page view to write last_seen_at.
        clock.move_to(start + dt.timedelta(seconds=30))
        response = browser.post("/session/keep-alive")
        assert response.status_code == 400
        assert CSRF_REFUSED_DESCRIPTION in text_of(response)
        assert session_row(app, people["admin"]).last_seen_at == start
        response = browser.post("/session/keep-alive", headers={"X-CSRFToken": token})
        assert response.status_code == 200
        assert session_row(app, people["admin"]).last_seen_at == start + dt.timedelta(seconds=30)


def test_keep_alive_when_signed_out_is_refused_by_the_login_gate(client):
    token = client.csrf_token("/login")
    response = client.post("/session/keep-alive", headers={"X-CSRFToken": token})
    assert response.status_code == 401


def test_page_tells_the_browser_when_the_session_ends(app, people):
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "ada")
        clock.move_to(start + dt.timedelta(minutes=5))
        page = text_of(browser.get("/account"))
        # Touched on this request (more than a minute since the last): 15 minutes left.
        assert 'data-session-left="900.0"' in page
        assert 'data-session-warn="60"' in page
        assert 'role="alertdialog"' in page
        assert "Stay signed in" in page
    login_page = text_of(app.test_client().get("/login"))
    assert "data-session-left" not in login_page
    assert "session.js" not in login_page


# --- a form sent after the session ended ----------------------------------------------


def test_form_sent_after_timeout_comes_back_for_the_same_user(app, people, caplog):
    caplog.set_level(logging.DEBUG)
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser, url, response = send_edit_after_timeout(app, people, clock, start)

        assert response.status_code == 303
        assert response.headers["Location"] == f"/login?next={url}"
        assert drafts(app) == [(people["admin"], url)]
        assert full_name_of(app, people["target"]) == "Tom Original"  # nothing saved
        sign_in_page = text_of(browser.get(response.headers["Location"]))
        assert IDLE_MESSAGE in sign_in_page
        assert KEPT_MESSAGE in sign_in_page

        back = login(browser, "ada", url=response.headers["Location"])
        assert back.status_code == 302
        assert back.headers["Location"] == url
        page = text_of(browser.get(url))
        assert f'value="{TYPED_NAME}"' in page
        assert RESTORED_MESSAGE in page
        assert drafts(app) == []  # used once, then gone
        again = text_of(browser.get(url))
        assert TYPED_NAME not in again
        assert 'value="Tom Original"' in again
    assert TYPED_NAME not in caplog.text  # never logged


def test_form_kept_for_one_user_is_never_shown_to_another(app, people):
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser, url, response = send_edit_after_timeout(app, people, clock, start)
        assert drafts(app) == [(people["admin"], url)]

        back = login(browser, "bea", url=response.headers["Location"])
        assert back.status_code == 302
        assert back.headers["Location"] == url  # the ?next= of the sign-in page
        page = text_of(browser.get(url))
        assert TYPED_NAME not in page
        assert RESTORED_MESSAGE not in page
        assert drafts(app) == []  # discarded
        # Ada signing in later on this browser gets nothing either.
        browser.post("/logout", data={"csrf_token": token_of(browser, "/account")})
        login(browser, "ada")
        assert TYPED_NAME not in text_of(browser.get(url))


def test_kept_form_expires_after_30_minutes(app, people):
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser, url, response = send_edit_after_timeout(app, people, clock, start)
        clock.move_to(start + dt.timedelta(minutes=15 + 29, seconds=59))
        assert drafts(app) == [(people["admin"], url)]
        clock.move_to(start + dt.timedelta(minutes=15 + 30))
        back = login(browser, "ada", url=response.headers["Location"])
        assert back.headers["Location"] == url
        assert TYPED_NAME not in text_of(browser.get(url))
        assert drafts(app) == []


def test_kept_form_comes_back_one_second_before_it_expires(app, people):
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser, url, response = send_edit_after_timeout(app, people, clock, start)
        clock.move_to(start + dt.timedelta(minutes=15 + 29, seconds=59))
        login(browser, "ada", url=response.headers["Location"])
        assert f'value="{TYPED_NAME}"' in text_of(browser.get(url))


def test_form_without_a_valid_csrf_token_is_not_kept(app, people):
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "ada")
        url = f"/admin/users/{people['target']}/edit"
        clock.move_to(start + dt.timedelta(minutes=15))
        response = browser.post(url, data=edit_form(people["target"], "forged"))
        assert response.status_code == 401
        assert drafts(app) == []


def test_form_sent_after_signing_out_is_not_kept(app, people):
    browser = signed_in(app, "ada")
    url = f"/admin/users/{people['target']}/edit"
    token = token_of(browser, url)
    browser.post("/logout", data={"csrf_token": token})
    response = browser.post(url, data=edit_form(people["target"], token))
    assert response.status_code == 401
    assert drafts(app) == []


def test_passwords_are_never_kept(app, people):
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "ada")
        token = token_of(browser, "/admin/users/new")
        clock.move_to(start + dt.timedelta(minutes=15))
        response = browser.post(
            "/admin/users/new",
            data={
                "csrf_token": token,
                "username": "newbie",
                "full_name": TYPED_NAME,
                "role": "staff",
                "password": PASSWORD,
            },
        )
        assert response.status_code == 303
        with app.app_context():
            [draft] = db.session.scalars(sa.select(SavedFormDraft))
            assert PASSWORD not in draft.payload
            assert TYPED_NAME in draft.payload
            assert "csrf" not in draft.payload


def test_own_account_forms_are_not_kept(app, people):
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        browser = signed_in(app, "ada")
        token = token_of(browser, "/account/password")
        clock.move_to(start + dt.timedelta(minutes=15))
        response = browser.post(
            "/account/password",
            data={"csrf_token": token, "current_password": PASSWORD, "new_password": "x"},
        )
        assert response.status_code == 401
        assert drafts(app) == []


def test_form_sent_one_second_before_the_timeout_is_saved(app, people):
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        _, _, response = send_edit_after_timeout(app, people, clock, start, minutes=15 - 1 / 60)
        assert response.status_code == 302
        assert full_name_of(app, people["target"]) == TYPED_NAME
        assert drafts(app) == []
