"""Bad input at the edges of the accounts pages: control characters (a NUL, which
PostgreSQL cannot store or even compare, other C0 controls, DEL, the bidirectional
overrides) and over-long text in every text input and in the user search. Each gives a
message next to its field (or an empty result), keeps the rest of the input, saves
nothing, and never a 500 — on SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime as dt
import html
import re
from types import SimpleNamespace

import pyotp
import pytest
import sqlalchemy as sa

from clinic.accounts import authentication, services
from clinic.accounts.models import User
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.forms import CONTROL_CHARACTER_MESSAGE
from clinic.security import Role
from clinic.sites.models import Site
from tests.conftest import PASSWORD, login

NEW_PASSWORD = "violet tractor moonlight 1987 pebble"
LOGIN_FAILED = "Invalid username or password."
# NUL (PostgreSQL refuses it), another C0 control, DEL, and a right-to-left override.
CONTROLS = pytest.mark.parametrize(
    "bad", ["\x00", "\x1b", "\x7f", "\u202e"], ids=["NUL", "ESC", "DEL", "RLO"]
)


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def field_error(response, field: str) -> str:
    match = re.search(
        rf'<div id="{re.escape(field)}-error"[^>]*>(.*?)</div>',
        response.get_data(as_text=True),
        re.S,
    )
    return html.unescape(match.group(1)).strip() if match else ""


def load_user(app, user_id: int) -> SimpleNamespace:
    with app.app_context():
        user = db.session.get(User, user_id)
        values = {a.key: getattr(user, a.key) for a in sa.inspect(User).column_attrs}
        return SimpleNamespace(**values, site_ids=user.site_ids)


def user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(User.id)))


def is_signed_in(client) -> bool:
    return client.get("/account").status_code == 200


def listed_usernames(response) -> list[str]:
    body = response.get_data(as_text=True)
    return re.findall(r'<td><a href="/admin/users/\d+">([^<]+)</a></td>', body)


# --- signing in ------------------------------------------------------------------------


@CONTROLS
def test_control_character_in_the_sign_in_username_is_a_field_error(app, make_user, bad):
    make_user("admin", "admin")
    browser = app.test_client()
    response = login(browser, f"adm{bad}in")
    assert response.status_code == 200
    assert CONTROL_CHARACTER_MESSAGE in field_error(response, "username")
    assert not is_signed_in(browser)


def test_control_character_in_the_sign_in_password_is_a_field_error(app, make_user):
    make_user("staff", "sam")
    browser = app.test_client()
    response = login(browser, "sam", PASSWORD + "\x00")
    assert response.status_code == 200
    assert CONTROL_CHARACTER_MESSAGE in field_error(response, "password")
    assert not is_signed_in(browser)


def test_service_answers_a_username_with_a_nul_as_unknown_without_asking_the_database(
    app, make_user
):
    make_user("admin", "admin")
    with app.app_context():
        assert services.user_by_username("adm\x00in") is None
        assert services.user_by_username("admin\x00") is None
        attempt = authentication.authenticate("adm\x00in", PASSWORD)
        db.session.commit()
        assert (attempt.user, attempt.known_user) == (None, None)


@pytest.mark.parametrize("length", [253, 254])
def test_sign_in_username_up_to_254_characters_fails_like_an_unknown_one(app, length):
    response = login(app.test_client(), "s" * length)
    assert response.status_code == 200
    assert LOGIN_FAILED in text_of(response)
    assert field_error(response, "username") == ""


def test_sign_in_username_of_255_characters_is_a_field_error(app):
    response = login(app.test_client(), "s" * 255)
    assert response.status_code == 200
    assert field_error(response, "username") == "Field cannot be longer than 254 characters."


@pytest.mark.parametrize(("length", "accepted"), [(1024, True), (1025, False)])
def test_sign_in_password_is_read_up_to_1024_characters(app, make_user, length, accepted):
    make_user("staff", "sam")
    response = login(app.test_client(), "sam", "x" * length)
    assert response.status_code == 200
    if accepted:
        assert LOGIN_FAILED in text_of(response)  # checked, and wrong
        assert field_error(response, "password") == ""
    else:
        assert field_error(response, "password") == "Field cannot be longer than 1024 characters."


@pytest.fixture
def mfa_browser(app, make_user):
    """sam, enrolled in two-step verification, half-way through signing in."""
    user_id = make_user("staff", "sam")
    with app.app_context():
        user = db.session.get(User, user_id)
        user.mfa_secret = pyotp.random_base32()
        user.mfa_enabled_at = dt.datetime.now(dt.UTC)
        db.session.commit()
    browser = app.test_client()
    assert login(browser, "sam").headers["Location"].startswith("/login/verify")
    return browser


@CONTROLS
def test_control_character_in_the_second_step_code_is_a_field_error(mfa_browser, bad):
    response = mfa_browser.submit("/login/verify", {"code": f"123{bad}456"})
    assert response.status_code == 200
    assert CONTROL_CHARACTER_MESSAGE in field_error(response, "code")
    assert not is_signed_in(mfa_browser)


@pytest.mark.parametrize(
    ("length", "message"),
    [
        (32, "That code is not valid (a code works only once)."),
        (33, "Field cannot be longer than 32 characters."),
    ],
)
def test_second_step_code_is_read_up_to_32_characters(mfa_browser, length, message):
    response = mfa_browser.submit("/login/verify", {"code": "1" * length})
    assert response.status_code == 200
    assert field_error(response, "code") == message


# --- the user's own account ---------------------------------------------------------------


@pytest.fixture
def sam(app, make_user):
    user_id = make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")
    return SimpleNamespace(id=user_id, browser=browser)


@pytest.mark.parametrize("field", ["current_password", "new_password", "confirm_password"])
def test_control_character_in_a_password_change_is_a_field_error(app, sam, field):
    data = {
        "current_password": PASSWORD,
        "new_password": NEW_PASSWORD,
        "confirm_password": NEW_PASSWORD,
    }
    data[field] += "\x00"
    if field == "new_password":
        data["confirm_password"] = data["new_password"]
    before = load_user(app, sam.id).password_hash

    response = sam.browser.submit("/account/password", data)

    assert response.status_code == 200
    assert CONTROL_CHARACTER_MESSAGE in field_error(response, field)
    assert load_user(app, sam.id).password_hash == before


@pytest.mark.parametrize(("length", "accepted"), [(1024, True), (1025, False)])
def test_current_password_is_read_up_to_1024_characters(app, sam, length, accepted):
    response = sam.browser.submit(
        "/account/password",
        {
            "current_password": "x" * length,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert response.status_code == 200
    expected = (
        "That is not your current password."
        if accepted
        else "Field cannot be longer than 1024 characters."
    )
    assert field_error(response, "current_password") == expected


@pytest.mark.parametrize("field", ["password", "code"])
def test_control_character_in_the_enrolment_form_is_a_field_error(app, sam, field):
    page = sam.browser.get("/account/mfa").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*? value="([^"]+)"', page).group(1)
    data = {"password": PASSWORD, "code": "123456", "csrf_token": token}
    data[field] = data[field][:3] + "\x00" + data[field][3:]
    response = sam.browser.post("/account/mfa", data=data)
    assert response.status_code == 200
    assert CONTROL_CHARACTER_MESSAGE in field_error(response, field)
    assert load_user(app, sam.id).mfa_enabled_at is None


def test_control_character_in_the_password_to_turn_off_two_step_verification(app, sam):
    with app.app_context():
        user = db.session.get(User, sam.id)
        user.mfa_secret = pyotp.random_base32()
        user.mfa_enabled_at = dt.datetime.now(dt.UTC)
        db.session.commit()
    response = sam.browser.submit(
        "/account/mfa/disable", {"password": PASSWORD + "\x00"}, form_url="/account"
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"
    account = text_of(sam.browser.get("/account"))
    assert "Enter your password to turn off two-step verification." in account
    assert load_user(app, sam.id).mfa_enabled_at is not None


# --- user administration -------------------------------------------------------------------


@pytest.fixture
def admin(client_as):
    return client_as("admin", username="boss", full_name="Bea Boss", all_sites=True, site_ids=[])


def new_user_form(site_id: int, **changes) -> dict:
    data = {
        "username": "mlopez",
        "full_name": "Maria Lopez",
        "email": "maria@example.org",
        "role": "clinician",
        "sites": [site_id],
        "password": NEW_PASSWORD,
    }
    data.update(changes)
    return data


@CONTROLS
@pytest.mark.parametrize("field", ["username", "full_name", "email", "password"])
def test_control_character_in_a_new_user_field_is_a_field_error(app, admin, site, field, bad):
    before = user_count(app)
    data = new_user_form(site)
    data[field] = data[field][:2] + bad + data[field][2:]

    response = admin.submit("/admin/users/new", data)

    assert response.status_code == 200
    assert CONTROL_CHARACTER_MESSAGE in field_error(response, field)
    assert user_count(app) == before
    if field != "full_name":
        assert 'value="Maria Lopez"' in response.get_data(as_text=True)


@CONTROLS
@pytest.mark.parametrize("field", ["full_name", "email"])
def test_control_character_in_a_user_edit_is_a_field_error(app, admin, make_user, site, field, bad):
    user_id = make_user("staff", "sam", full_name="Sam Smith", email="sam@example.org")
    before = load_user(app, user_id)
    data = {
        "full_name": "Sam Jones",
        "email": "sam@example.org",
        "role": "staff",
        "sites": [site],
        "version": 1,
    }
    data[field] = data[field][:2] + bad + data[field][2:]

    response = admin.submit(f"/admin/users/{user_id}/edit", data)

    assert response.status_code == 200
    assert CONTROL_CHARACTER_MESSAGE in field_error(response, field)
    assert load_user(app, user_id) == before


@pytest.mark.parametrize(
    ("length", "message"),
    [(64, ""), (65, "Field must be between 2 and 64 characters long.")],
)
def test_new_username_is_at_most_64_characters(app, admin, site, length, message):
    response = admin.submit("/admin/users/new", new_user_form(site, username="m" * length))
    assert field_error(response, "username") == message
    assert response.status_code == (302 if not message else 200)


@pytest.mark.parametrize(
    ("length", "message"),
    [(120, ""), (121, "Field cannot be longer than 120 characters.")],
)
def test_full_name_is_at_most_120_characters(app, admin, site, length, message):
    response = admin.submit("/admin/users/new", new_user_form(site, full_name="M" * length))
    assert field_error(response, "full_name") == message
    assert response.status_code == (302 if not message else 200)


def test_service_refuses_control_characters_whoever_calls_it(app, site):
    """The operator's CLI has no form: the service holds it to the same rule."""
    with app.app_context():
        main = db.session.get(Site, site)
        for field, changes in {
            "full_name": {"full_name": "Maria \x1b[31mLopez"},
            "email": {"email": "maria\x00@example.org"},
            "password": {"password": NEW_PASSWORD + "\x00"},
        }.items():
            values = {
                "actor": None,
                "username": "mlopez",
                "full_name": "Maria Lopez",
                "role": Role.STAFF,
                "password": NEW_PASSWORD,
                "sites": [main],
                **changes,
            }
            with pytest.raises(DomainError) as refused:
                services.create_user(**values)
            db.session.rollback()
            assert refused.value.field == field
            assert refused.value.message in (
                CONTROL_CHARACTER_MESSAGE,
                "Do not use control or invisible formatting characters.",
            )
    assert user_count(app) == 0


def test_operator_cannot_create_a_full_name_with_control_characters(app, site):
    from flask.testing import FlaskCliRunner

    result = FlaskCliRunner(app).invoke(
        args=[
            "users",
            "create",
            "mlopez",
            "--role",
            "staff",
            "--site",
            "MAIN",
            "--full-name",
            "Maria \x1b[2JLopez",
            "--password-stdin",
        ],
        input=NEW_PASSWORD + "\n",
    )
    assert result.exit_code == 1
    assert f"Error: {CONTROL_CHARACTER_MESSAGE}" in result.output
    assert user_count(app) == 0


# --- the user search ------------------------------------------------------------------------


@pytest.fixture
def searchable(admin, make_user):
    make_user("clinician", "maria", full_name="Zoe Alvarez")
    make_user("staff", "admin-two", full_name="Adam Inman")


@CONTROLS
def test_user_search_with_control_characters_lists_nobody_and_never_fails(admin, searchable, bad):
    """The edge may refuse such a query string outright (400); if it reaches the page, the
    page says what is wrong and lists nobody. Never a 500, never everyone."""
    response = admin.get("/admin/users/", query_string={"q": f"adm{bad}in"})
    assert response.status_code in (200, 400)
    assert listed_usernames(response) == []
    if response.status_code == 200:
        assert field_error(response, "q") == (
            "Remove the control or invisible formatting characters from the search."
        )


@pytest.mark.parametrize("text", ["adm\x00in", "\x00", "mar\u202e", "\x1fmar", "mar\t"])
def test_user_search_service_refuses_control_characters(app, text):
    with app.app_context(), pytest.raises(DomainError) as refused:
        services.search_users(sa.select(User), text)
    assert refused.value.field == "q"
    assert refused.value.message == (
        "Remove the control or invisible formatting characters from the search."
    )


def test_user_search_of_120_characters_is_an_ordinary_search(admin, searchable):
    response = admin.get("/admin/users/", query_string={"q": "a" * 120})
    assert response.status_code == 200
    assert field_error(response, "q") == ""
    assert listed_usernames(response) == []
    assert "No users match." in text_of(response)


def test_user_search_of_121_characters_says_so_and_lists_nobody(admin, searchable):
    response = admin.get("/admin/users/", query_string={"q": "a" * 121})
    assert response.status_code == 200
    assert field_error(response, "q") == "Search with at most 120 characters."
    assert listed_usernames(response) == []


def test_user_search_still_finds_by_prefix(admin, searchable):
    assert listed_usernames(admin.get("/admin/users/", query_string={"q": "adam"})) == ["admin-two"]
