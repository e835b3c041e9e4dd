"""First run (issue 9): ``flask seed-demo`` prints the demo passwords last, in a box, and
``flask users reset-password NAME`` gives an operator who missed them a temporary one."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa
from flask.cli import FlaskGroup

from clinic.accounts.models import User, UserSession
from clinic.audit.models import AuditEvent
from clinic.extensions import db
from tests.conftest import PASSWORD, login


@pytest.fixture
def flask(app):
    runner = app.test_cli_runner()
    cli = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)

    def run(*args: str):
        return runner.invoke(cli, args=list(args))

    return run


def test_seed_demo_prints_the_passwords_last_in_a_box(flask):
    result = flask("seed-demo")
    assert result.exit_code == 0, result.output
    lines = result.output.rstrip("\n").splitlines()
    # Nothing the seeding printed comes after the box.
    created = max(i for i, line in enumerate(lines) if line.startswith("Created"))
    heading = lines.index("  DEMO ACCOUNTS: the passwords are shown this once; write them down.")
    assert created < heading
    accounts = [
        i
        for i, line in enumerate(lines)
        if re.match(r"^\s+\S+\s+(?:Administrator|Clinician|Staff)\s+\S+$", line)
    ]
    assert len(accounts) == 6  # admin, prescriber, nurse, counselor, trainee, staff
    assert min(accounts) > heading
    assert lines[-2] == (
        "  Missed a password? Give the account a new temporary one: flask users reset-password NAME"
    )
    assert set(lines[-1]) == {"="}


def test_seed_demo_run_again_tells_how_to_get_a_password(flask):
    flask("seed-demo")
    result = flask("seed-demo")
    assert "Demo data is already loaded; nothing changed." in result.output
    assert "flask users reset-password NAME" in result.output


def test_reset_password_prints_a_temporary_password_to_change_at_sign_in(app, flask, make_user):
    user_id = make_user("clinician", "maria")
    old_browser = app.test_client()
    assert login(old_browser, "maria").status_code == 302

    result = flask("users", "reset-password", "Maria")  # usernames ignore case

    assert result.exit_code == 0, result.output
    temporary = re.search(r"^Temporary password for maria: (\S+)$", result.output, re.M).group(1)
    assert "They must change it when they next sign in." in result.output
    # The old password no longer works; the temporary one leads to "change your password".
    assert login(app.test_client(), "maria", PASSWORD).status_code == 200
    browser = app.test_client()
    assert login(browser, "maria", temporary).status_code == 302
    page = browser.get("/account", follow_redirects=False)
    assert page.headers["Location"] == "/account/password"
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user.must_change_password
        sessions = db.session.scalars(
            sa.select(UserSession).where(UserSession.user_id == user_id).order_by(UserSession.id)
        ).all()
        assert sessions[0].revoked_reason == "password_reset"
        [event] = db.session.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.action == "password_change", AuditEvent.entity_id == str(user_id)
            )
        ).all()
        assert event.user_id is None  # the operator, not a user
        assert json.loads(event.details) == {"reset_by_operator": True}
        assert temporary not in event.details


def test_reset_password_unlocks_a_locked_account(app, flask, make_user):
    make_user("staff", "sam")
    for _ in range(app.config["LOGIN_LOCKOUT_FAILURES"]):
        login(app.test_client(), "sam", "wrong password entirely")
    result = flask("users", "reset-password", "sam")
    temporary = re.search(r"Temporary password for sam: (\S+)", result.output).group(1)
    assert login(app.test_client(), "sam", temporary).status_code == 302


def test_reset_password_of_a_deactivated_user_says_so(app, flask, make_user):
    make_user("staff", "sam")
    flask("users", "deactivate", "sam")
    result = flask("users", "reset-password", "sam")
    assert result.exit_code == 0
    assert "Note: sam is deactivated and cannot sign in" in result.output


def test_reset_password_refuses_an_unknown_user(app, flask, make_user):
    make_user("staff", "sam")
    result = flask("users", "reset-password", "nobody")
    assert result.exit_code == 1
    assert "Error: no user 'nobody'." in result.stderr
    assert "Temporary password" not in result.output
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.count(AuditEvent.id)).where(
                    AuditEvent.action == "password_change"
                )
            )
            == 0
        )


def test_reset_password_needs_a_name(flask):
    result = flask("users", "reset-password")
    assert result.exit_code == 2
    assert "Missing argument 'USERNAME'" in result.output
