"""Two-step verification (TOTP): enrolment with a QR code and ten recovery codes, the
second sign-in step, codes that work only once, the lockout, roles that require it, and
turning it off."""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
import time
from types import SimpleNamespace
from urllib.parse import urlencode

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from clinic.accounts.models import RecoveryCode, User
from clinic.extensions import db
from tests.conftest import CSRF_RE, PASSWORD, login

WRONG_PASSWORD = "not the password at all"
LOGIN_FAILED = "Invalid username or password."
CODE_REFUSED = "That code is not valid (a code works only once)."
ENROL_MESSAGE = "Your role requires two-step verification. Set it up to continue."
SECRET_RE = re.compile(r'data-testid="mfa-secret">([^<]*)<')
RECOVERY_CODE_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{8}")
STEP = dt.timedelta(seconds=30)


# --- helpers ---------------------------------------------------------------------------


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
        return SimpleNamespace(**values, mfa_enabled=user.mfa_enabled)


def stored_secret(app, user_id: int) -> str:
    """The user's TOTP secret as stored, decrypted (the column holds a Fernet token)."""
    from clinic.accounts import mfa_secrets

    with app.app_context():
        return mfa_secrets.decrypt(db.session.get(User, user_id).mfa_secret)


def recovery_rows(app, user_id: int) -> list[SimpleNamespace]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(RecoveryCode).where(RecoveryCode.user_id == user_id).order_by(RecoveryCode.id)
        )
        return [SimpleNamespace(code_hash=r.code_hash, used_at=r.used_at) for r in rows]


def is_signed_in(client) -> bool:
    return client.get("/account").status_code == 200


def is_sent_to_sign_in(client) -> bool:
    response = client.get("/account")
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


def enrolment_page(client) -> tuple[str, str, str]:
    """Open the enrolment page: (page, secret shown, CSRF token)."""
    page = client.get("/account/mfa")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    return body, SECRET_RE.search(body).group(1), CSRF_RE.search(body).group(1)


def send_enrolment(client, token: str, *, password: str, code: str):
    # Not client.submit: opening the page again would show a new secret.
    return client.post(
        "/account/mfa", data={"csrf_token": token, "password": password, "code": code}
    )


def enrol(client, password: str = PASSWORD) -> tuple[str, list[str]]:
    """Turn on two-step verification as a user does; returns the secret and the codes."""
    _, secret, token = enrolment_page(client)
    response = send_enrolment(client, token, password=password, code=pyotp.TOTP(secret).now())
    assert response.status_code == 200, text_of(response)
    return secret, recovery_codes_on(response)


def recovery_codes_on(response) -> list[str]:
    match = re.search(
        r'data-testid="recovery-codes">(.*?)</ul>', response.get_data(as_text=True), re.S
    )
    assert match, "no recovery codes on the page"
    return re.findall(r"<li>([^<]+)</li>", match.group(1))


def wrong_code(secret: str) -> str:
    """Six digits that are not a code the server would accept now."""
    totp = pyotp.TOTP(secret)
    now = time.time()
    valid = {totp.at(now + offset) for offset in (-30, 0, 30)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def password_step(client, username: str, password: str = PASSWORD, **kwargs) -> str:
    """Sign in with the password; returns the second step's address."""
    response = login(client, username, password, **kwargs)
    assert response.status_code == 302, text_of(response)
    location = response.headers["Location"]
    assert location.startswith("/login/verify"), location
    return location


def code_step(client, code: str, url: str = "/login/verify"):
    return client.submit(url, {"code": code})


def sign_out(client):
    return client.submit("/logout", {}, form_url="/account")


def next_step_start() -> dt.datetime:
    """The start of the next 30-second TOTP step, a little ahead of now."""
    now = int(time.time())
    return dt.datetime.fromtimestamp((now // 30 + 1) * 30, dt.UTC)


@pytest.fixture
def clock():
    """Time stands still (at the start of a TOTP step) unless a test moves it."""
    with time_machine.travel(next_step_start(), tick=False) as traveller:
        yield traveller


@pytest.fixture
def mfa_user(app, make_user, clock):
    """Staff member ``sam``, enrolled through the pages; the clock then moves on to the
    next 30-second step, so the enrolment code is spent and a fresh one is due.
    ``browser`` is still signed in as sam."""
    user_id = make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")
    secret, codes = enrol(browser)
    clock.shift(STEP)
    return SimpleNamespace(id=user_id, username="sam", secret=secret, codes=codes, browser=browser)


# --- enrolment -------------------------------------------------------------------------


def test_enrolment_page_shows_a_qr_code_and_the_secret_key(app, make_user):
    user_id = make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")

    body, secret, _ = enrolment_page(browser)

    assert re.search(r"<svg\b[^>]*>.*</svg>", body, re.S), "no inline SVG"
    assert "QR code for your authenticator app" in body
    assert "<img" not in body  # drawn on the server, not fetched from elsewhere
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    # Nothing is saved until the user proves the authenticator works.
    assert load_user(app, user_id).mfa_secret is None


def test_each_visit_to_the_enrolment_page_offers_a_new_secret(app, make_user):
    make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")
    assert enrolment_page(browser)[1] != enrolment_page(browser)[1]


def test_enrolment_with_password_and_current_code_shows_ten_recovery_codes(app, make_user):
    user_id = make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")
    _, secret, token = enrolment_page(browser)

    response = send_enrolment(browser, token, password=PASSWORD, code=pyotp.TOTP(secret).now())

    assert response.status_code == 200
    codes = recovery_codes_on(response)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert all(RECOVERY_CODE_RE.fullmatch(c) for c in codes)
    user = load_user(app, user_id)
    assert user.mfa_enabled
    assert stored_secret(app, user_id) == secret  # kept encrypted (test_mfa_secrets.py)
    # Recovery codes are kept only as hashes.
    stored = recovery_rows(app, user_id)
    assert sorted(r.code_hash for r in stored) == sorted(
        hashlib.sha256(c.encode()).hexdigest() for c in codes
    )
    assert all(r.used_at is None for r in stored)
    # The user stays signed in, and their account page shows the codes left.
    account = browser.get("/account")
    assert account.status_code == 200
    assert "10 unused recovery code(s)" in text_of(account)


def test_enrolment_code_may_have_spaces(app, make_user):
    user_id = make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")
    _, secret, token = enrolment_page(browser)
    code = pyotp.TOTP(secret).now()

    response = send_enrolment(browser, token, password=PASSWORD, code=f"{code[:3]} {code[3:]}")

    assert response.status_code == 200
    assert load_user(app, user_id).mfa_enabled


def test_enrolment_with_wrong_password_is_refused_and_saves_nothing(app, make_user):
    user_id = make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")
    _, secret, token = enrolment_page(browser)

    response = send_enrolment(
        browser, token, password=WRONG_PASSWORD, code=pyotp.TOTP(secret).now()
    )

    assert response.status_code == 200
    assert field_error(response, "password") == "That is not your current password."
    assert SECRET_RE.search(response.get_data(as_text=True)).group(1) == secret  # try again
    user = load_user(app, user_id)
    assert not user.mfa_enabled
    assert user.mfa_secret is None
    assert recovery_rows(app, user_id) == []
    assert 'data-testid="recovery-codes"' not in response.get_data(as_text=True)


def test_enrolment_with_wrong_code_is_refused_and_saves_nothing(app, make_user, clock):
    user_id = make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")
    _, secret, token = enrolment_page(browser)

    response = send_enrolment(browser, token, password=PASSWORD, code=wrong_code(secret))

    assert response.status_code == 200
    assert field_error(response, "code").startswith("That code does not match.")
    user = load_user(app, user_id)
    assert not user.mfa_enabled
    assert user.mfa_secret is None
    assert recovery_rows(app, user_id) == []
    # Corrected, it works with the same secret.
    retry = send_enrolment(browser, token, password=PASSWORD, code=pyotp.TOTP(secret).now())
    assert len(recovery_codes_on(retry)) == 10


def test_enrolment_signs_out_the_users_other_browsers(app, make_user):
    make_user("staff", "sam")
    here, elsewhere = app.test_client(), app.test_client()
    login(here, "sam")
    login(elsewhere, "sam")

    enrol(here)

    assert is_signed_in(here)
    assert is_sent_to_sign_in(elsewhere)


def test_setting_up_again_replaces_the_authenticator_and_recovery_codes(app, mfa_user, clock):
    old_secret, old_codes = mfa_user.secret, mfa_user.codes
    new_secret, new_codes = enrol(mfa_user.browser)
    clock.shift(STEP)

    assert new_secret != old_secret
    assert not set(new_codes) & set(old_codes)
    assert stored_secret(app, mfa_user.id) == new_secret
    assert len(recovery_rows(app, mfa_user.id)) == 10
    browser = app.test_client()
    password_step(browser, "sam")
    assert field_error(code_step(browser, old_codes[0]), "code") == CODE_REFUSED
    old_totp = pyotp.TOTP(old_secret).now()
    if old_totp != pyotp.TOTP(new_secret).now():
        assert field_error(code_step(browser, old_totp), "code") == CODE_REFUSED
    assert code_step(browser, new_codes[0]).headers["Location"] == "/"


# --- the second step -------------------------------------------------------------------


def test_password_alone_does_not_sign_in_a_user_with_two_step_verification(app, mfa_user):
    browser = app.test_client()

    location = password_step(browser, "sam")

    assert location == "/login/verify"
    assert is_sent_to_sign_in(browser)
    page = browser.get(location)
    assert page.status_code == 200
    assert 'name="code"' in page.get_data(as_text=True)


def test_current_code_completes_sign_in(app, mfa_user):
    browser = app.test_client()
    password_step(browser, "sam")

    response = code_step(browser, pyotp.TOTP(mfa_user.secret).now())

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert is_signed_in(browser)


def test_code_from_the_previous_step_is_accepted_for_clock_drift(app, mfa_user, clock):
    # The enrolment spent the step before the fixture's; move on one more, so the
    # previous step's code is one never used.
    clock.shift(STEP)
    previous = pyotp.TOTP(mfa_user.secret).at(time.time() - 30)
    browser = app.test_client()
    password_step(browser, "sam")
    assert code_step(browser, previous).headers["Location"] == "/"


def test_code_two_steps_old_is_refused(app, mfa_user, clock):
    clock.shift(STEP * 2)
    stale = pyotp.TOTP(mfa_user.secret).at(time.time() - 60)
    browser = app.test_client()
    password_step(browser, "sam")

    response = code_step(browser, stale)

    assert response.status_code == 200
    assert field_error(response, "code") == CODE_REFUSED
    assert is_sent_to_sign_in(browser)


def test_same_code_cannot_be_used_twice(app, mfa_user):
    code = pyotp.TOTP(mfa_user.secret).now()
    first = app.test_client()
    password_step(first, "sam")
    assert code_step(first, code).headers["Location"] == "/"
    sign_out(first)

    # Signed out, and in again within the same 30 seconds, with the same code.
    second = app.test_client()
    password_step(second, "sam")
    response = code_step(second, code)

    assert response.status_code == 200
    assert field_error(response, "code") == CODE_REFUSED
    assert is_sent_to_sign_in(second)


def test_code_seen_by_someone_else_cannot_be_replayed_in_another_browser(app, mfa_user):
    code = pyotp.TOTP(mfa_user.secret).now()
    owner, onlooker = app.test_client(), app.test_client()
    password_step(owner, "sam")
    password_step(onlooker, "sam")  # an onlooker who knows the password too

    assert code_step(owner, code).headers["Location"] == "/"
    assert code_step(onlooker, code).status_code == 200
    assert is_sent_to_sign_in(onlooker)


def test_code_used_to_enrol_cannot_be_used_to_sign_in(app, make_user, clock):
    make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")
    secret, _ = enrol(browser)
    sign_out(browser)
    enrol_code = pyotp.TOTP(secret).now()  # the clock has not moved

    password_step(browser, "sam")
    response = code_step(browser, enrol_code)

    assert field_error(response, "code") == CODE_REFUSED
    clock.shift(STEP)
    assert code_step(browser, pyotp.TOTP(secret).now()).headers["Location"] == "/"


def test_next_step_code_works_after_a_code_was_used(app, mfa_user, clock):
    browser = app.test_client()
    password_step(browser, "sam")
    code_step(browser, pyotp.TOTP(mfa_user.secret).now())
    sign_out(browser)

    clock.shift(STEP)
    password_step(browser, "sam")
    assert code_step(browser, pyotp.TOTP(mfa_user.secret).now()).headers["Location"] == "/"


def test_recovery_code_works_once_only(app, mfa_user):
    first_code = mfa_user.codes[0]
    browser = app.test_client()
    password_step(browser, "sam")
    assert code_step(browser, first_code).headers["Location"] == "/"
    assert "9 unused recovery code(s)" in text_of(browser.get("/account"))
    sign_out(browser)

    password_step(browser, "sam")
    response = code_step(browser, first_code)

    assert response.status_code == 200
    assert field_error(response, "code") == CODE_REFUSED
    assert is_sent_to_sign_in(browser)
    # Another one still works.
    assert code_step(browser, mfa_user.codes[1]).headers["Location"] == "/"
    assert sum(r.used_at is not None for r in recovery_rows(app, mfa_user.id)) == 2


def test_recovery_code_may_be_typed_in_capitals_with_spaces(app, mfa_user):
    browser = app.test_client()
    password_step(browser, "sam")
    code = mfa_user.codes[0].upper()
    typed = f" {code[:4]} {code[4:]} "
    assert code_step(browser, typed).headers["Location"] == "/"


def test_second_step_without_the_password_step_sends_the_user_to_sign_in(app, mfa_user):
    browser = app.test_client()
    response = browser.get("/login/verify")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"


def test_password_step_expires_after_five_minutes(app, mfa_user, clock):
    browser = app.test_client()
    password_step(browser, "sam")

    clock.shift(dt.timedelta(minutes=5, seconds=1))
    response = code_step(browser, pyotp.TOTP(mfa_user.secret).now())

    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert "Sign in again." in text_of(browser.get("/login"))
    assert is_sent_to_sign_in(browser)


def test_second_step_leads_to_the_page_asked_for(app, mfa_user):
    browser = app.test_client()
    location = password_step(browser, "sam", url="/login?" + urlencode({"next": "/account"}))
    assert location == "/login/verify?next=/account"

    response = code_step(browser, pyotp.TOTP(mfa_user.secret).now(), url=location)

    assert response.headers["Location"] == "/account"


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example", "/\\evil.example"])
def test_second_step_never_sends_the_user_to_another_site(app, mfa_user, target):
    browser = app.test_client()
    location = password_step(browser, "sam", url="/login?" + urlencode({"next": target}))
    assert location == "/login/verify"  # dropped at the first step

    # And refused at the second, should someone craft its address.
    url = "/login/verify?" + urlencode({"next": target})
    response = code_step(browser, pyotp.TOTP(mfa_user.secret).now(), url=url)

    assert response.headers["Location"] == "/"


# --- lockout ---------------------------------------------------------------------------


def test_wrong_codes_count_towards_the_lockout(app, mfa_user):
    browser = app.test_client()
    password_step(browser, "sam")
    bad = wrong_code(mfa_user.secret)
    for attempt in range(4):
        response = code_step(browser, bad)
        assert response.status_code == 200, attempt
        assert field_error(response, "code") == CODE_REFUSED
    assert load_user(app, mfa_user.id).failed_logins == 4

    response = code_step(browser, bad)

    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert LOGIN_FAILED in text_of(browser.get("/login"))
    assert load_user(app, mfa_user.id).locked_until is not None
    # Locked: the right password and a right code get nowhere.
    retry = app.test_client()
    response = login(retry, "sam")
    assert response.status_code == 200
    assert LOGIN_FAILED in text_of(response)
    assert is_sent_to_sign_in(retry)


def test_pending_second_step_stops_working_once_the_account_is_locked(app, mfa_user):
    guesser, owner = app.test_client(), app.test_client()
    password_step(owner, "sam")
    password_step(guesser, "sam")
    for _ in range(5):
        code_step(guesser, wrong_code(mfa_user.secret))

    response = code_step(owner, pyotp.TOTP(mfa_user.secret).now())

    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert is_sent_to_sign_in(owner)


def test_wrong_passwords_and_wrong_codes_add_up_to_a_lockout(app, mfa_user):
    for _ in range(2):
        assert login(app.test_client(), "sam", WRONG_PASSWORD).status_code == 200
    browser = app.test_client()
    password_step(browser, "sam")  # the right password alone does not clear the count
    bad = wrong_code(mfa_user.secret)
    for _ in range(2):
        assert code_step(browser, bad).status_code == 200
    assert load_user(app, mfa_user.id).locked_until is None

    response = code_step(browser, bad)

    assert response.headers["Location"] == "/login"
    assert load_user(app, mfa_user.id).locked_until is not None


def test_completed_second_step_resets_the_failure_count(app, mfa_user, clock):
    browser = app.test_client()
    password_step(browser, "sam")
    bad = wrong_code(mfa_user.secret)
    for _ in range(4):
        code_step(browser, bad)

    assert code_step(browser, pyotp.TOTP(mfa_user.secret).now()).headers["Location"] == "/"

    assert load_user(app, mfa_user.id).failed_logins == 0


# --- turning it off --------------------------------------------------------------------


def disable(client, password: str | None):
    data = {} if password is None else {"password": password}
    return client.submit("/account/mfa/disable", data, form_url="/account")


@pytest.mark.parametrize(
    ("password", "message"),
    [
        (None, "Enter your password to turn off two-step verification."),
        (WRONG_PASSWORD, "That is not your current password."),
    ],
)
def test_turning_off_needs_the_password(app, mfa_user, password, message):
    response = disable(mfa_user.browser, password)

    assert response.status_code == 302
    assert response.headers["Location"] == "/account"
    assert message in text_of(mfa_user.browser.get("/account"))
    assert load_user(app, mfa_user.id).mfa_enabled
    assert len(recovery_rows(app, mfa_user.id)) == 10


def test_turning_off_with_the_password_removes_secret_and_recovery_codes(app, mfa_user):
    other = app.test_client()
    password_step(other, "sam")
    code_step(other, pyotp.TOTP(mfa_user.secret).now())

    response = disable(mfa_user.browser, PASSWORD)

    assert response.status_code == 302
    assert "Two-step verification is off." in text_of(mfa_user.browser.get("/account"))
    user = load_user(app, mfa_user.id)
    assert not user.mfa_enabled
    assert user.mfa_secret is None
    assert recovery_rows(app, mfa_user.id) == []
    assert is_signed_in(mfa_user.browser)
    assert is_sent_to_sign_in(other)  # a security change ends the other sessions
    # The password alone signs in again.
    assert login(app.test_client(), "sam").headers["Location"] == "/"


# --- roles that require it -------------------------------------------------------------


class TestRoleThatRequiresTwoStepVerification:
    """With MFA_REQUIRED_ROLES="admin", as in production."""

    @pytest.fixture
    def app_overrides(self):
        return {"MFA_REQUIRED_ROLES": "admin"}

    @pytest.fixture
    def admin(self, client_as):
        return client_as("admin", username="boss")

    PAGES = ("/account", "/admin/users/", "/admin/audit/")

    def test_admin_without_it_is_sent_to_enrolment_from_every_page(self, admin, make_user):
        staff_id = make_user("staff", "sam")
        pages = ("/", *self.PAGES, f"/admin/users/{staff_id}", f"/admin/users/{staff_id}/edit")
        for page in pages:
            response = admin.get(page)
            assert response.status_code == 302, page
            assert response.headers["Location"] == "/account/mfa", page
        page = admin.get("/admin/users/", follow_redirects=True)
        assert page.request.path == "/account/mfa"
        assert ENROL_MESSAGE in text_of(page)

    def test_admin_without_it_is_sent_to_enrolment_right_after_signing_in(self, app, make_user):
        make_user("admin", "boss")
        browser = app.test_client()
        response = login(browser, "boss", follow_redirects=True)
        assert response.request.path == "/account/mfa"
        assert ENROL_MESSAGE in text_of(response)

    def test_admin_without_it_cannot_change_users(self, app, admin, make_user):
        staff_id = make_user("staff", "sam")
        url = f"/admin/users/{staff_id}/deactivate"
        response = admin.submit(url, {}, form_url=url)
        assert response.status_code == 302
        assert response.headers["Location"] == "/account/mfa"
        assert load_user(app, staff_id).active

    def test_admin_may_still_change_password_and_sign_out(self, admin):
        assert admin.get("/account/password").status_code == 200
        assert admin.get("/account/mfa").status_code == 200
        assert admin.submit("/logout", {}, form_url="/account/mfa").status_code == 302
        assert is_sent_to_sign_in(admin)

    def test_admin_uses_the_app_once_enrolled(self, admin, clock):
        enrol(admin)
        for page in self.PAGES:
            assert admin.get(page).status_code == 200, page

    def test_enrolled_admin_signs_in_with_a_code(self, app, admin, clock):
        secret, _ = enrol(admin)
        clock.shift(STEP)
        browser = app.test_client()
        password_step(browser, "boss")
        assert code_step(browser, pyotp.TOTP(secret).now()).headers["Location"] == "/"
        assert browser.get("/admin/users/").status_code == 200

    def test_staff_are_not_asked_to_enrol(self, client_as):
        staff = client_as("staff")
        for page in ("/", "/account"):
            assert staff.get(page).status_code == 200, page

    def test_admin_cannot_turn_it_off(self, app, admin, clock):
        enrol(admin)
        account = text_of(admin.get("/account"))
        assert "/account/mfa/disable" not in account  # not offered

        response = disable(admin, PASSWORD)

        assert response.status_code == 302
        assert "Your role requires two-step verification." in text_of(admin.get("/account"))
        assert load_user(app, admin.user_id).mfa_enabled
        assert admin.get("/admin/users/").status_code == 200


# --- codes that arrive together ----------------------------------------------------------


def test_same_code_sent_from_two_browsers_at_once_signs_in_only_one(app, mfa_user, monkeypatch):
    from clinic.accounts import authentication

    code = pyotp.TOTP(mfa_user.secret).now()
    owner, onlooker = app.test_client(), app.test_client()
    password_step(owner, "sam")
    password_step(onlooker, "sam")  # an onlooker who knows the password and sees the code
    token = owner.csrf_token("/login/verify")
    match_step = authentication._matching_timestep
    owner_answers = []
    started = []

    def meanwhile_the_owner_signs_in(secret, typed, now):
        # While the onlooker's code is checked, the owner's request with the same code is
        # dealt with completely.
        if not started:
            started.append(True)
            with app.app_context():  # a request of its own, not nested in this one
                owner_answers.append(
                    owner.post("/login/verify", data={"code": code, "csrf_token": token})
                )
        return match_step(secret, typed, now)

    monkeypatch.setattr(authentication, "_matching_timestep", meanwhile_the_owner_signs_in)

    response = code_step(onlooker, code)

    [owner_answer] = owner_answers
    assert owner_answer.headers.get("Location") == "/"
    assert is_signed_in(owner)
    assert response.status_code == 200
    assert field_error(response, "code") == CODE_REFUSED
    assert is_sent_to_sign_in(onlooker)
