"""Two-step verification secrets at rest (issue 16): encrypted in the database with
``MFA_ENCRYPTION_KEYS`` (Fernet, rotated with MultiFernet), the enrolment secret kept on
the server rather than in the readable cookie, a key that no longer opens a secret failing
clearly, and the migration that encrypts the plain secrets stored before."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets

import flask
import pyotp
import pytest
import sqlalchemy as sa
import time_machine
from cryptography.fernet import Fernet
from flask_migrate import downgrade, upgrade

from clinic import create_app
from clinic.accounts import authentication, mfa_secrets
from clinic.accounts.models import User
from clinic.audit.models import AuditEvent
from clinic.extensions import db
from tests.conftest import PASSWORD, Client, login
from tests.conftest import make_app as make_test_app
from tests.test_accounts_mfa import (
    STEP,
    code_step,
    enrol,
    enrolment_page,
    field_error,
    next_step_start,
    password_step,
    send_enrolment,
    sign_out,
    text_of,
)

BASE32_SECRET = re.compile(r"[A-Z2-7]{16,}")
BEFORE_ENCRYPTION = "a1c4e7f09b3d"  # the revision before the secrets were encrypted
OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


@pytest.fixture
def clock():
    with time_machine.travel(next_step_start(), tick=False) as traveller:
        yield traveller


# --- helpers ---------------------------------------------------------------------------


def raw_user_secret(app, user_id: int) -> str | None:
    """``app_user.mfa_secret`` as the database holds it (no ORM, no decryption)."""
    with app.app_context(), db.engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT mfa_secret FROM app_user WHERE id = :id"), {"id": user_id}
        ).scalar_one()


def setup_rows(app, user_id: int) -> list[tuple[str | None, dt.datetime | None]]:
    """(mfa_setup_secret, mfa_setup_until) of every session row of the user."""
    from clinic.accounts.models import UserSession

    with app.app_context():
        return list(
            db.session.execute(
                sa.select(UserSession.mfa_setup_secret, UserSession.mfa_setup_until)
                .where(UserSession.user_id == user_id)
                .order_by(UserSession.id)
            )
        )


def decrypted(app, token: str) -> str:
    with app.app_context():
        return mfa_secrets.decrypt(token)


def cookie_session(app, browser) -> dict:
    """What the signed session cookie carries, decoded as anyone holding it can."""
    cookie = browser.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    return app.session_interface.get_signing_serializer(app).loads(cookie.value)


def assert_not_in_cookie(app, browser, secret: str) -> None:
    cookie = browser.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert secret not in cookie.value
    assert secret not in json.dumps(cookie_session(app, browser), default=str)


def make_app(database_uri: str, **overrides):
    """Another app on the test's database (other keys), with the form-submitting client."""
    other = make_test_app(database_uri, **overrides)
    other.test_client_class = Client
    return other


def dispose(*apps) -> None:
    for other in apps:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


# --- encrypted at rest -----------------------------------------------------------------


def test_enrolment_secret_stays_on_the_server_encrypted_until_confirmed(app, make_user, clock):
    user_id = make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")

    _, secret, token = enrolment_page(browser)

    # Not in the cookie, which the browser (and anything reading it) can decode.
    assert_not_in_cookie(app, browser, secret)
    assert "mfa_setup_secret" not in cookie_session(app, browser)
    # On this browser's session row, encrypted, for ten minutes.
    [(pending, until)] = setup_rows(app, user_id)
    assert secret not in pending and not BASE32_SECRET.fullmatch(pending)
    assert decrypted(app, pending) == secret
    assert until == dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    assert raw_user_secret(app, user_id) is None

    response = send_enrolment(browser, token, password=PASSWORD, code=pyotp.TOTP(secret).now())

    assert response.status_code == 200
    assert 'data-testid="recovery-codes"' in response.get_data(as_text=True)
    stored = raw_user_secret(app, user_id)
    assert stored is not None and secret not in stored
    assert not BASE32_SECRET.search(stored)  # no plain secret in the column
    assert stored.startswith("gAAAAA")  # a Fernet token
    assert decrypted(app, stored) == secret
    # Nothing pending is left behind, on any row.
    assert all(row == (None, None) for row in setup_rows(app, user_id))
    assert_not_in_cookie(app, browser, secret)


def test_password_step_keeps_only_the_users_id_in_the_cookie(app, make_user, clock):
    user_id = make_user("staff", "sam")
    enrolled = app.test_client()
    login(enrolled, "sam")
    secret, _ = enrol(enrolled)
    clock.shift(STEP)

    browser = app.test_client()
    password_step(browser, "sam")

    pending = cookie_session(app, browser)
    assert pending["mfa_user_id"] == user_id
    assert isinstance(pending["mfa_started"], int)
    assert_not_in_cookie(app, browser, secret)
    assert code_step(browser, pyotp.TOTP(secret).now()).headers["Location"] == "/"


def test_leaving_the_enrolment_page_forgets_its_secret(app, make_user, clock):
    user_id = make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")
    _, secret, token = enrolment_page(browser)
    # Typing on the page keeps the session alive: that is not leaving it.
    assert browser.post("/session/keep-alive", headers={"X-CSRFToken": token}).status_code == 200
    assert setup_rows(app, user_id)[0][0] is not None

    assert browser.get("/account").status_code == 200  # another page

    assert setup_rows(app, user_id) == [(None, None)]
    # Coming back with the old page's form: refused, and a new secret to scan.
    response = send_enrolment(browser, token, password=PASSWORD, code=pyotp.TOTP(secret).now())
    assert response.status_code == 200
    assert "That set-up page had expired" in text_of(response)
    new_secret = re.search(r'data-testid="mfa-secret">([^<]*)<', text_of(response)).group(1)
    assert new_secret != secret
    assert raw_user_secret(app, user_id) is None
    assert decrypted(app, setup_rows(app, user_id)[0][0]) == new_secret


def test_signing_out_forgets_the_enrolment_secret(app, make_user):
    user_id = make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")
    enrolment_page(browser)

    sign_out(browser)

    assert setup_rows(app, user_id) == [(None, None)]


def test_enrolment_secret_expires_after_ten_minutes(app, make_user, clock):
    user_id = make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")
    _, secret, token = enrolment_page(browser)

    clock.shift(dt.timedelta(minutes=10, seconds=1))
    response = send_enrolment(browser, token, password=PASSWORD, code=pyotp.TOTP(secret).now())

    assert response.status_code == 200
    assert "That set-up page had expired" in text_of(response)
    assert raw_user_secret(app, user_id) is None


# --- keys: rotation, a key that no longer opens a secret -------------------------------


def test_rotating_the_key_keeps_every_authenticator_working(app, database_uri, make_user, clock):
    user_id = make_user("staff", "sam")
    old = make_app(database_uri, MFA_ENCRYPTION_KEYS=OLD_KEY)
    both = make_app(database_uri, MFA_ENCRYPTION_KEYS=f"{NEW_KEY},{OLD_KEY}")
    new = make_app(database_uri, MFA_ENCRYPTION_KEYS=NEW_KEY)
    try:
        browser = old.test_client()
        login(browser, "sam")
        secret, _ = enrol(browser)
        enrolment_page(browser)  # setting up again: a pending secret, under the old key too
        before = raw_user_secret(old, user_id)
        assert mfa_secrets.parse_keys(OLD_KEY).fernet.decrypt(before.encode()).decode() == secret

        # The new key first, the old one still listed: the command re-encrypts.
        result = both.test_cli_runner().invoke(args=["mfa", "rotate-key"])

        assert result.exit_code == 0, result.output
        assert "Re-encrypted 1 two-step verification secret(s)" in result.output
        after = raw_user_secret(new, user_id)
        assert after != before
        assert decrypted(new, after) == secret  # the new key alone opens it
        assert decrypted(new, setup_rows(new, user_id)[-1][0])  # the pending one too
        with new.app_context():
            event = db.session.scalars(
                sa.select(AuditEvent).where(AuditEvent.action == "mfa_keys_rotated")
            ).one()
            assert json.loads(event.details) == {
                "keys_configured": 2,
                "rotated": 1,
                "setups_dropped": 0,
            }
            assert secret not in event.details

        # The old key dropped: signing in with the authenticator still works.
        clock.shift(STEP)
        signing_in = new.test_client()
        password_step(signing_in, "sam")
        assert code_step(signing_in, pyotp.TOTP(secret).now()).headers["Location"] == "/"
    finally:
        dispose(old, both, new)


def test_a_secret_no_listed_key_opens_fails_the_code_step_clearly(
    app, database_uri, make_user, clock, caplog
):
    user_id = make_user("staff", "sam")
    browser = app.test_client()
    login(browser, "sam")
    secret, codes = enrol(browser)
    clock.shift(STEP)
    stored = raw_user_secret(app, user_id)
    wrong = make_app(database_uri, MFA_ENCRYPTION_KEYS=NEW_KEY)  # the key was lost
    try:
        signing_in = wrong.test_client()
        password_step(signing_in, "sam")

        with caplog.at_level(logging.ERROR):
            response = code_step(signing_in, pyotp.TOTP(secret).now())

        # A failed second step with a message that says what to do: no 500.
        assert response.status_code == 200
        assert field_error(response, "code") == authentication.AUTHENTICATOR_UNAVAILABLE
        assert signing_in.get("/account").status_code == 302
        [log] = [r for r in caplog.records if "MFA_ENCRYPTION_KEYS" in r.getMessage()]
        assert log.levelno == logging.ERROR
        assert f"user id {user_id}" in log.getMessage()
        assert stored not in log.getMessage() and secret not in log.getMessage()
        with wrong.app_context():
            failure = db.session.scalars(
                sa.select(AuditEvent)
                .where(AuditEvent.action == "login_failed")
                .order_by(AuditEvent.seq.desc())
            ).first()
            assert json.loads(failure.details)["reason"] == "mfa_secret_unreadable"
            assert db.session.get(User, user_id).failed_logins == 0  # not the user's fault
        # A recovery code still signs the user in.
        assert code_step(signing_in, codes[0]).headers["Location"] == "/"

        # Rotation refuses, changing nothing, and names whom it concerns.
        result = wrong.test_cli_runner().invoke(args=["mfa", "rotate-key"])
        assert result.exit_code == 1
        assert f"user id(s) {user_id}; nothing was changed" in result.output
        assert stored not in result.output
        assert raw_user_secret(app, user_id) == stored
    finally:
        dispose(wrong)


def test_rotate_key_help_says_how_to_rotate(app):
    result = app.test_cli_runner().invoke(args=["mfa", "rotate-key", "--help"])
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    assert "Re-encrypt every stored MFA secret under the newest key of MFA_ENCRYPTION_KEYS" in (
        help_text
    )
    assert "then remove the old key" in help_text


# --- keys: configuration ---------------------------------------------------------------


def test_production_refuses_to_start_without_mfa_keys(monkeypatch):
    monkeypatch.delenv("MFA_ENCRYPTION_KEYS", raising=False)
    with pytest.raises(RuntimeError, match="MFA_ENCRYPTION_KEYS must be set in production"):
        create_app(
            {
                "CLINIC_ENV": "production",
                "SECRET_KEY": secrets.token_hex(32),
                "AUDIT_HMAC_KEYS": "test:" + "a" * 64,
                "ALLOWED_HOSTS": "clinic.example.org",
                "SQLALCHEMY_DATABASE_URI": "sqlite://",
            }
        )
    # The check itself, whatever other settings production requires.
    bare = flask.Flask(__name__)
    bare.config.update(ENV_NAME="production", MFA_ENCRYPTION_KEYS="")
    with pytest.raises(RuntimeError, match="MFA_ENCRYPTION_KEYS must be set in production"):
        mfa_secrets.configure(bare)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not a key", "key 1 is not a Fernet key"),
        (f"{NEW_KEY},{NEW_KEY[:-2]}", "key 2 is not a Fernet key"),
        (f"{NEW_KEY}, {NEW_KEY}", "key 2 is listed twice"),
        (f"{NEW_KEY},", "key 2 is not a Fernet key"),
    ],
    ids=["not-a-key", "second-truncated", "listed-twice", "trailing-comma"],
)
def test_malformed_keys_are_refused_without_showing_a_key(value, message):
    with pytest.raises(ValueError, match=message) as refused:
        mfa_secrets.parse_keys(value)
    assert NEW_KEY[:20] not in str(refused.value)


def test_development_generates_a_key_once_under_instance(monkeypatch, tmp_path):
    import config

    monkeypatch.setattr(config, "INSTANCE_DIR", tmp_path)
    bare = flask.Flask(__name__)
    bare.config.update(ENV_NAME="development", MFA_ENCRYPTION_KEYS="")
    with bare.app_context():
        token = mfa_secrets.encrypt("JBSWY3DPEHPK3PXP")
    again = flask.Flask(__name__)  # a restart
    again.config.update(ENV_NAME="development", MFA_ENCRYPTION_KEYS="")
    with again.app_context():
        assert mfa_secrets.decrypt(token) == "JBSWY3DPEHPK3PXP"
    assert (tmp_path / "mfa_encryption_keys").stat().st_mode & 0o077 == 0


# --- the migration ---------------------------------------------------------------------


def test_migration_encrypts_plain_secrets_and_the_downgrade_restores_them(
    app, make_user, monkeypatch
):
    plain = pyotp.random_base32()
    user_id = make_user("staff", "sam")
    with app.app_context():
        db.session.get(User, user_id).mfa_secret = mfa_secrets.encrypt(plain)
        db.session.commit()
        db.session.remove()

    def width() -> int:
        with app.app_context():
            columns = sa.inspect(db.engine).get_columns("app_user")
            return next(c["type"].length for c in columns if c["name"] == "mfa_secret")

    try:
        with app.app_context():
            downgrade(revision=BEFORE_ENCRYPTION)
        assert raw_user_secret(app, user_id) == plain
        assert width() == 64

        # Run without the app's keys, the upgrade refuses before changing anything.
        with monkeypatch.context() as patched:
            patched.setattr(flask, "has_app_context", lambda: False)
            # Flask-Migrate logs the error and exits 1.
            with app.app_context(), pytest.raises(SystemExit) as refused:
                upgrade()
        assert "1 two-step verification secret(s) are stored unencrypted" in str(
            refused.value.__context__
        )
        assert raw_user_secret(app, user_id) == plain
        assert width() == 64

        with app.app_context():
            upgrade()
        token = raw_user_secret(app, user_id)
        assert token != plain and plain not in token
        assert decrypted(app, token) == plain
        assert width() == 255
    finally:
        with app.app_context():
            upgrade()  # at head for the next test, whatever happened
