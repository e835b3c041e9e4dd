"""Signing in: where the user lands (and where a ``next`` address may not send them), what a
failed attempt reveals (nothing), the lockout after repeated failures, the password policy
and the sign-in throttle."""

from __future__ import annotations

import datetime as dt
import html
import re
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
import time_machine

from clinic.accounts import passwords, services
from clinic.accounts.auth import safe_next
from clinic.accounts.models import User, UserSession
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.sites.models import Site
from tests.conftest import CSRF_RE, PASSWORD, login

WRONG_PASSWORD = "not the password at all"
NEW_PASSWORD = "violet tractor moonlight 1987 pebble"
LOGIN_FAILED = "Invalid username or password."
# 128 characters, the longest password allowed; its last character matters.
LONG_PASSWORD = ((NEW_PASSWORD + " ") * 4)[:127] + "Z"


# --- helpers ---------------------------------------------------------------------------


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def load_user(app, user_id: int) -> SimpleNamespace:
    """A detached snapshot of a user's columns."""
    with app.app_context():
        user = db.session.get(User, user_id)
        return SimpleNamespace(
            **{a.key: getattr(user, a.key) for a in sa.inspect(User).column_attrs}
        )


def user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(User.id)))


def is_signed_in(client) -> bool:
    return client.get("/account").status_code == 200


def sign_in_fails(app, username: str, password: str = PASSWORD) -> bool:
    """True when a new browser cannot sign in: the form comes back with the failure."""
    response = login(app.test_client(), username, password)
    return response.status_code == 200 and LOGIN_FAILED in text_of(response)


def fail_to_sign_in(app, username: str, times: int) -> None:
    for _ in range(times):
        assert sign_in_fails(app, username, WRONG_PASSWORD)


def field_error(response, field: str) -> str:
    """The error shown next to form field ``field`` ('' when there is none)."""
    match = re.search(
        rf'<div id="{re.escape(field)}-error"[^>]*>(.*?)</div>',
        response.get_data(as_text=True),
        re.S,
    )
    return html.unescape(match.group(1)).strip() if match else ""


def without_csrf_token(body: str) -> str:
    return CSRF_RE.sub(lambda m: m.group(0).replace(m.group(1), ""), body)


# Headers that differ on every response, whatever the outcome.
PER_RESPONSE_HEADERS = {"Set-Cookie", "X-Request-ID"}


def answer_to(app, username: str, password: str) -> tuple[int, list, str]:
    """What a new browser is shown after trying to sign in: status, headers and page
    (less what differs on every response: the CSRF token, the cookie, the request id)."""
    response = login(app.test_client(), username, password)
    headers = sorted((k, v) for k, v in response.headers if k not in PER_RESPONSE_HEADERS)
    return response.status_code, headers, without_csrf_token(response.get_data(as_text=True))


def frozen_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# --- where a successful sign-in leads --------------------------------------------------


def test_sign_in_takes_the_user_to_the_home_page(client, make_user):
    make_user("staff", "sam", full_name="Sam Smith")

    response = login(client, "sam")

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert "Welcome, Sam Smith" in text_of(client.get("/"))


def test_username_is_not_case_sensitive_when_signing_in(client, make_user):
    make_user("staff", "sam")
    assert login(client, "  SAM ").headers["Location"] == "/"
    assert is_signed_in(client)


@pytest.mark.parametrize("target", ["/account", "/account?from=menu", "/admin/users/?show=all"])
def test_sign_in_returns_to_the_page_asked_for(client, make_user, target):
    make_user("admin", "boss")
    response = login(client, "boss", url="/login?" + urlencode({"next": target}))
    assert response.status_code == 302
    assert response.headers["Location"] == target


OFF_SITE_TARGETS = [
    "//evil.example",
    "//evil.example/account",
    "///evil.example",
    "https://evil.example",
    "http://evil.example/account",
    "https:evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "javascript:alert(1)",
    "evil.example",
    "account",
    # The same tricks percent-encoded inside the value, which some proxies decode.
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "/%5Cevil.example",
    "/%09/evil.example",
    "/account%0D%0ASet-Cookie:%20evil=1",
    "/account%00",
    "/ /evil.example",  # a space: a URL copied from the address bar has none
    "/" + "a" * 2000,  # longer than any page's address
]
# Control characters in the value itself: a browser drops tab and newline from a URL,
# turning "/\t/evil.example" into "//evil.example"; CR/LF would split the Location header.
CONTROL_CHARACTER_TARGETS = [
    "/\t/evil.example",
    "/\n/evil.example",
    "/account\r\nSet-Cookie: evil=1",
    "/account\x00",
    "/account\x7f",
    "/account\u202e",
]


def sign_in_with_next(client, target: str, username: str = "sam"):
    """Send the sign-in form to ``/login?next=<target>``, with a token from the plain sign-in
    page (a page whose address carries control characters may be refused at the edge)."""
    token = client.csrf_token("/login")
    return client.post(
        "/login?" + urlencode({"next": target}),
        data={"username": username, "password": PASSWORD, "csrf_token": token},
    )


def session_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(UserSession.id)))


@pytest.mark.parametrize("target", ["/account", "/account?from=menu", "/.//account"])
def test_next_accepts_a_path_of_this_site(target):
    assert safe_next(target) == target


@pytest.mark.parametrize("target", OFF_SITE_TARGETS + CONTROL_CHARACTER_TARGETS + ["", None])
def test_next_refuses_anything_but_a_plain_path_of_this_site(target):
    assert safe_next(target) is None


@pytest.mark.parametrize("length", [1999, 2000])
def test_next_of_up_to_2000_characters_is_kept(length):
    target = "/" + "a" * (length - 1)
    assert safe_next(target) == target


def test_next_of_2001_characters_is_dropped():
    assert safe_next("/" + "a" * 2000) is None


@pytest.mark.parametrize("target", OFF_SITE_TARGETS)
def test_sign_in_never_sends_the_user_to_another_site(client, make_user, target):
    make_user("staff", "sam")
    response = sign_in_with_next(client, target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert "evil" not in " ".join(response.headers.getlist("Set-Cookie"))
    assert is_signed_in(client)


@pytest.mark.parametrize("target", CONTROL_CHARACTER_TARGETS)
def test_sign_in_with_control_characters_in_next_never_fails_half_way(
    app, client, make_user, target
):
    """Once a 500 after the session was created. Now either the sign-in lands on the home
    page, or (when the edge refuses control characters in any query string) it is refused
    with the 400 page before a session exists: never a 500, never a header split."""
    make_user("staff", "sam")
    response = sign_in_with_next(client, target)
    assert "evil" not in " ".join(response.headers.getlist("Set-Cookie"))
    if response.status_code == 302:
        assert response.headers["Location"] == "/"
        assert is_signed_in(client)
    else:
        assert response.status_code == 400
        assert "The request could not be understood." in text_of(response)
        assert session_count(app) == 0
        assert not is_signed_in(client)


def test_signed_in_user_opening_the_sign_in_page_goes_home(client_as):
    staff = client_as("staff")
    response = staff.get("/login")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


# --- failed sign-ins reveal nothing ----------------------------------------------------


def test_failed_sign_ins_look_the_same_whatever_the_reason(app, make_user):
    """Unknown user, wrong password, the failure that locks the account, a locked account
    and a deactivated one (the last two with the right password) get the same page."""
    unknown = answer_to(app, "sam", PASSWORD)  # before sam exists
    user_id = make_user("staff", "sam")
    wrong_password = answer_to(app, "sam", WRONG_PASSWORD)
    fail_to_sign_in(app, "sam", app.config["LOGIN_LOCKOUT_FAILURES"] - 2)
    locking = answer_to(app, "sam", WRONG_PASSWORD)
    assert load_user(app, user_id).locked_until is not None
    locked = answer_to(app, "sam", PASSWORD)
    with app.app_context():
        user = db.session.get(User, user_id)
        services.unlock_user(user, actor=None)
        services.deactivate_user(user, actor=None)
        db.session.commit()
    deactivated = answer_to(app, "sam", PASSWORD)

    assert unknown[0] == 200
    assert LOGIN_FAILED in unknown[2]
    assert wrong_password == unknown
    assert locking == unknown
    assert locked == unknown
    assert deactivated == unknown


def test_failed_sign_in_keeps_the_username_but_not_the_password(client, make_user):
    make_user("staff", "sam")
    response = login(client, "sam", WRONG_PASSWORD)
    body = response.get_data(as_text=True)
    assert 'value="sam"' in body
    assert WRONG_PASSWORD not in body
    assert not is_signed_in(client)


def test_overlong_username_fails_like_an_unknown_one(app, make_user):
    make_user("staff", "sam")
    assert sign_in_fails(app, "s" * 200)


# --- lockout ---------------------------------------------------------------------------


def test_five_wrong_passwords_in_a_row_lock_the_account_for_15_minutes(app, make_user):
    assert app.config["LOGIN_LOCKOUT_FAILURES"] == 5
    assert app.config["LOGIN_LOCKOUT_MINUTES"] == 15
    user_id = make_user("staff", "sam")
    start = frozen_now()
    with time_machine.travel(start, tick=False):
        fail_to_sign_in(app, "sam", 4)
        user = load_user(app, user_id)
        assert user.failed_logins == 4
        assert user.locked_until is None

        fail_to_sign_in(app, "sam", 1)

        assert load_user(app, user_id).locked_until == start + dt.timedelta(minutes=15)


def test_locked_account_cannot_sign_in_even_with_right_password(app, make_user):
    make_user("staff", "sam")
    fail_to_sign_in(app, "sam", 5)

    browser = app.test_client()
    response = login(browser, "sam", PASSWORD)

    assert response.status_code == 200
    assert LOGIN_FAILED in text_of(response)
    assert not is_signed_in(browser)


def test_lock_lifts_by_itself_after_15_minutes(app, make_user):
    make_user("staff", "sam")
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        fail_to_sign_in(app, "sam", 5)

        clock.move_to(start + dt.timedelta(minutes=14, seconds=59))
        assert sign_in_fails(app, "sam", PASSWORD)

        clock.move_to(start + dt.timedelta(minutes=15))
        browser = app.test_client()
        assert login(browser, "sam", PASSWORD).headers["Location"] == "/"
        assert is_signed_in(browser)


def test_after_the_lock_lifts_the_user_has_five_fresh_attempts(app, make_user):
    user_id = make_user("staff", "sam")
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        fail_to_sign_in(app, "sam", 5)
        clock.move_to(start + dt.timedelta(minutes=15))

        fail_to_sign_in(app, "sam", 4)

        assert load_user(app, user_id).failed_logins == 4
        assert login(app.test_client(), "sam").headers["Location"] == "/"


def test_wrong_passwords_while_locked_do_not_count_towards_another_lock(app, make_user):
    user_id = make_user("staff", "sam")
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        fail_to_sign_in(app, "sam", 5)
        locked_until = load_user(app, user_id).locked_until
        fail_to_sign_in(app, "sam", 3)
        user = load_user(app, user_id)
        assert user.locked_until == locked_until
        assert user.failed_logins == 0

        clock.move_to(start + dt.timedelta(minutes=15))
        assert login(app.test_client(), "sam").headers["Location"] == "/"


def test_lockout_follows_the_settings(app, make_user):
    app.config.update(LOGIN_LOCKOUT_FAILURES=3, LOGIN_LOCKOUT_MINUTES=2)
    make_user("staff", "sam")
    start = frozen_now()
    with time_machine.travel(start, tick=False) as clock:
        fail_to_sign_in(app, "sam", 3)
        assert sign_in_fails(app, "sam", PASSWORD)
        clock.move_to(start + dt.timedelta(minutes=2))
        assert login(app.test_client(), "sam").headers["Location"] == "/"


def test_successful_sign_in_resets_the_failure_count(app, make_user):
    user_id = make_user("staff", "sam")
    fail_to_sign_in(app, "sam", 4)

    assert login(app.test_client(), "sam").headers["Location"] == "/"

    assert load_user(app, user_id).failed_logins == 0
    fail_to_sign_in(app, "sam", 4)  # four more: eight in all, but not in a row
    assert load_user(app, user_id).locked_until is None
    assert login(app.test_client(), "sam").headers["Location"] == "/"


def test_administrator_unlock_lets_a_locked_user_sign_in_at_once(app, make_user):
    user_id = make_user("staff", "sam")
    fail_to_sign_in(app, "sam", 5)
    fail_to_sign_in(app, "sam", 2)  # while locked

    with app.app_context():
        services.unlock_user(db.session.get(User, user_id), actor=None)
        db.session.commit()

    user = load_user(app, user_id)
    assert user.locked_until is None
    assert user.failed_logins == 0
    assert login(app.test_client(), "sam").headers["Location"] == "/"


def test_operator_unlocks_a_locked_user_from_the_command_line(app, make_user):
    user_id = make_user("staff", "sam")
    fail_to_sign_in(app, "sam", 5)

    result = app.test_cli_runner().invoke(args=["users", "unlock", "sam"])

    assert result.exit_code == 0, result.output
    assert "Unlocked sam." in result.output
    assert load_user(app, user_id).locked_until is None
    assert login(app.test_client(), "sam").headers["Location"] == "/"


def test_unlocked_user_has_five_fresh_attempts(app, make_user):
    user_id = make_user("staff", "sam")
    fail_to_sign_in(app, "sam", 5)
    app.test_cli_runner().invoke(args=["users", "unlock", "sam"])

    fail_to_sign_in(app, "sam", 4)

    assert load_user(app, user_id).locked_until is None
    assert login(app.test_client(), "sam").headers["Location"] == "/"


# --- passwords -------------------------------------------------------------------------


def test_password_of_128_characters_is_checked_in_full(app, make_user):
    """No truncation (bcrypt would keep 72 bytes): the 127-character prefix of a
    128-character password is wrong."""
    assert len(LONG_PASSWORD) == passwords.MAX_LENGTH == 128
    user_id = make_user("staff", "sam")
    with app.app_context():
        db.session.get(User, user_id).password_hash = passwords.hash_password(LONG_PASSWORD)
        db.session.commit()

    assert sign_in_fails(app, "sam", LONG_PASSWORD[:-1])
    assert sign_in_fails(app, "sam", LONG_PASSWORD[:72])
    browser = app.test_client()
    assert login(browser, "sam", LONG_PASSWORD).headers["Location"] == "/"
    assert is_signed_in(browser)


def test_new_user_may_choose_a_128_character_password(app, make_user):
    make_user("staff", "sam", password=LONG_PASSWORD)

    assert sign_in_fails(app, "sam", LONG_PASSWORD[:-1])
    assert login(app.test_client(), "sam", LONG_PASSWORD).headers["Location"] == "/"


def test_user_may_change_to_a_128_character_password(app, make_user):
    make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")

    response = browser.submit(
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": LONG_PASSWORD,
            "confirm_password": LONG_PASSWORD,
        },
    )

    assert response.status_code == 302
    assert sign_in_fails(app, "sam", LONG_PASSWORD[:-1])
    assert login(app.test_client(), "sam", LONG_PASSWORD).headers["Location"] == "/"


def test_password_longer_than_128_characters_is_refused(app, site):
    with app.app_context():
        with pytest.raises(DomainError, match=r"Use at most 128 characters\.") as refused:
            services.create_user(
                actor=None,
                username="sam",
                full_name="Sam Smith",
                role="staff",
                password=LONG_PASSWORD + "x",
                sites=[db.session.get(Site, site)],
            )
        db.session.rollback()
    assert refused.value.field == "password"
    assert user_count(app) == 0


WEAK_PASSWORDS = [
    pytest.param("password1234", "This is a very common password.", id="easy-to-guess"),
    pytest.param("aaaaaaaaaaaaaaaa", 'Repeats like "aaa" are easy to guess.', id="repeats"),
    pytest.param("violet MLopez tractor 1987", "Do not include your username.", id="username"),
    pytest.param("Xk9#mQ2$vLp", "Use at least 12 characters.", id="too-short"),
]


@pytest.mark.parametrize(("weak", "message"), WEAK_PASSWORDS)
def test_new_user_with_a_weak_password_is_refused(app, site, weak, message):
    with app.app_context():
        with pytest.raises(DomainError) as refused:
            services.create_user(
                actor=None,
                username="mlopez",
                full_name="Maria Lopez",
                role="staff",
                password=weak,
                sites=[db.session.get(Site, site)],
            )
        db.session.rollback()
    assert refused.value.field == "password"
    assert message in refused.value.message
    assert user_count(app) == 0


@pytest.mark.parametrize(("weak", "message"), WEAK_PASSWORDS)
def test_changing_to_a_weak_password_is_refused(app, make_user, weak, message):
    user_id = make_user("staff", "mlopez")
    with app.app_context():
        user = db.session.get(User, user_id)
        with pytest.raises(DomainError) as refused:
            services.change_password(user, current_password=PASSWORD, new_password=weak)
        db.session.rollback()
    assert refused.value.field == "new_password"
    assert message in refused.value.message
    assert login(app.test_client(), "mlopez", PASSWORD).headers["Location"] == "/"


@pytest.mark.parametrize(
    ("weak", "message"),
    [
        ("password1234", "This is a very common password."),
        ("violet MLopez tractor 1987", "Do not include your username."),
        ("Xk9#mQ2$vLp", "between 12 and 128 characters"),  # the form's own check
    ],
)
def test_password_change_form_refuses_a_weak_password_and_keeps_the_old_one(
    app, make_user, weak, message
):
    user_id = make_user("staff", "mlopez")
    browser = app.test_client()
    login(browser, "mlopez")
    before = load_user(app, user_id).password_hash

    response = browser.submit(
        "/account/password",
        {"current_password": PASSWORD, "new_password": weak, "confirm_password": weak},
    )

    assert response.status_code == 200
    assert message in field_error(response, "new_password")
    assert load_user(app, user_id).password_hash == before
    assert is_signed_in(browser)
    assert sign_in_fails(app, "mlopez", weak)
    assert login(app.test_client(), "mlopez", PASSWORD).headers["Location"] == "/"


def test_password_change_needs_the_current_password(app, make_user):
    user_id = make_user("staff", "mlopez")
    browser = app.test_client()
    login(browser, "mlopez")
    before = load_user(app, user_id).password_hash

    response = browser.submit(
        "/account/password",
        {
            "current_password": WRONG_PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )

    assert response.status_code == 200
    assert field_error(response, "current_password") == "That is not your current password."
    assert load_user(app, user_id).password_hash == before


def test_strong_password_change_takes_effect(app, make_user):
    make_user("staff", "mlopez")
    browser = app.test_client()
    login(browser, "mlopez")

    response = browser.submit(
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )

    assert response.status_code == 302
    assert sign_in_fails(app, "mlopez", PASSWORD)
    assert login(app.test_client(), "mlopez", NEW_PASSWORD).headers["Location"] == "/"


# --- throttling ------------------------------------------------------------------------


class TestSignInThrottle:
    """With the rate limit on (it is off for the other tests) and set to 3 a minute."""

    @pytest.fixture
    def app_overrides(self):
        return {"RATELIMIT_ENABLED": True, "LOGIN_RATE_LIMIT": "3 per minute"}

    def test_fourth_sign_in_attempt_within_a_minute_is_refused(self, app, make_user):
        user_id = make_user("staff", "sam")
        browser = app.test_client()
        for _ in range(3):
            assert login(browser, "sam", WRONG_PASSWORD).status_code == 200

        response = login(browser, "sam", PASSWORD)  # even the right password

        assert response.status_code == 429
        assert "Too many attempts" in text_of(response)
        assert not is_signed_in(browser)
        # The refused attempt was not checked, so it did not count towards the lockout.
        assert load_user(app, user_id).failed_logins == 3

    def test_throttle_counts_attempts_from_one_address_across_browsers(self, app, make_user):
        make_user("staff", "sam")
        for _ in range(3):
            assert login(app.test_client(), "sam", WRONG_PASSWORD).status_code == 200
        assert login(app.test_client(), "sam").status_code == 429

    def test_throttle_is_per_client_address(self, app, make_user):
        make_user("staff", "sam")
        first = {"REMOTE_ADDR": "198.51.100.1"}
        second = {"REMOTE_ADDR": "198.51.100.2"}
        for _ in range(3):
            login(app.test_client(), "sam", WRONG_PASSWORD, environ_base=first)

        assert login(app.test_client(), "sam", environ_base=second).status_code == 302
        assert login(app.test_client(), "sam", environ_base=first).status_code == 429

    def test_showing_the_sign_in_page_is_not_throttled(self, app, client, make_user):
        make_user("staff", "sam")
        for _ in range(10):
            assert client.get("/login").status_code == 200
        assert login(client, "sam").status_code == 302

    def test_throttle_lifts_after_a_minute(self, app, make_user):
        make_user("staff", "sam")
        start = frozen_now()
        with time_machine.travel(start, tick=False) as clock:
            for _ in range(3):
                login(app.test_client(), "sam", WRONG_PASSWORD)
            assert login(app.test_client(), "sam").status_code == 429

            clock.move_to(start + dt.timedelta(seconds=61))
            assert login(app.test_client(), "sam").status_code == 302

    def test_second_factor_step_is_throttled_too(self, app, client):
        token = client.csrf_token("/login")
        statuses = [
            client.post("/login/verify", data={"csrf_token": token, "code": "000000"}).status_code
            for _ in range(4)
        ]
        assert 429 not in statuses[:3]
        assert statuses[3] == 429


# --- attempts that arrive together ------------------------------------------------------


def test_wrong_passwords_sent_at_the_same_time_each_count_towards_the_lockout(
    app, make_user, monkeypatch
):
    user_id = make_user("staff", "sam")
    meanwhile = app.test_client()
    token = meanwhile.csrf_token("/login")
    check_password = passwords.verify_password
    answers = []
    started = []

    def slow_check(password_hash: str, password: str) -> bool:
        # While this request checks its password (argon2 takes a while), another wrong
        # password arrives and is dealt with completely.
        if not started:
            started.append(True)
            with app.app_context():  # a request of its own, not nested in this one
                answers.append(
                    meanwhile.post(
                        "/login",
                        data={"username": "sam", "password": WRONG_PASSWORD, "csrf_token": token},
                    )
                )
        return check_password(password_hash, password)

    monkeypatch.setattr(passwords, "verify_password", slow_check)

    assert sign_in_fails(app, "sam", WRONG_PASSWORD)

    [other_answer] = answers
    assert LOGIN_FAILED in text_of(other_answer)
    assert load_user(app, user_id).failed_logins == 2
