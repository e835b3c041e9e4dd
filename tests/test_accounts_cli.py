"""Operator commands: ``flask users create|list|deactivate|unlock`` and ``flask seed-demo``."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from flask.cli import FlaskGroup

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.security import Role
from tests.conftest import login

STRONG = "a strong passphrase here 2026"


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def flask(app, runner):
    """Run a command as the ``flask`` program does: ``flask("users", "list")``, with
    standard input from ``input``.

    Through a ``FlaskGroup`` (what ``flask --app wsgi ...`` runs), which pushes the app
    context for every command; invoking ``app.cli`` alone does not for plain click
    commands such as ``seed-demo``.
    """
    cli = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)

    def run(*args: str, input: str | None = None):
        return runner.invoke(cli, args=list(args), input=input)

    return run


def users(app) -> dict[str, User]:
    """Every user by username, detached, with their sites loaded."""
    with app.app_context():
        found = db.session.scalars(sa.select(User).options(sa.orm.selectinload(User.sites)))
        result = {u.username: u for u in found}
        db.session.expunge_all()
        return result


def create_maria(flask, *extra: str, input: str = STRONG + "\n"):
    return flask(
        "users",
        "create",
        "maria",
        "--role",
        "clinician",
        "--site",
        "MAIN",
        *extra,
        "--password-stdin",
        input=input,
    )


# --- users create ------------------------------------------------------------------------


def test_operator_creates_a_prescribing_clinician(app, flask, site):
    result = create_maria(
        flask, "--prescriber", "--full-name", "Maria Lopez", "--email", "maria@example.org"
    )

    assert result.exit_code == 0, result.output
    maria = users(app)["maria"]
    assert f"Created clinician maria (id {maria.id})." in result.output
    assert maria.role == Role.CLINICIAN
    assert maria.is_prescriber
    assert not maria.may_dispense
    assert maria.full_name == "Maria Lopez"
    assert maria.email == "maria@example.org"
    assert [s.code for s in maria.sites] == ["MAIN"]
    assert maria.active
    assert STRONG not in result.output
    assert login(app.test_client(), "maria", STRONG).status_code == 302


def test_operator_creates_a_nurse_who_may_dispense(app, flask, site):
    result = create_maria(flask, "--dispense")
    assert result.exit_code == 0, result.output
    maria = users(app)["maria"]
    assert maria.may_dispense
    assert not maria.is_prescriber


def test_created_user_name_defaults_to_the_username_in_lower_case(app, flask, site):
    result = flask(
        "users",
        "create",
        "Sam.Front-Desk_2",
        "--role",
        "staff",
        "--site",
        "main",
        "--password-stdin",
        input=STRONG + "\n",
    )
    assert result.exit_code == 0, result.output
    sam = users(app)["sam.front-desk_2"]
    assert sam.full_name == "Sam.Front-Desk_2"
    assert not sam.is_prescriber
    assert [s.code for s in sam.sites] == ["MAIN"]


def test_operator_creates_user_working_at_several_sites(app, flask, site, make_site):
    make_site("NORTH")
    result = flask(
        "users",
        "create",
        "sam",
        "--role",
        "staff",
        "--site",
        "MAIN",
        "--site",
        "NORTH",
        "--password-stdin",
        input=STRONG + "\n",
    )
    assert result.exit_code == 0, result.output
    assert [s.code for s in users(app)["sam"].sites] == ["MAIN", "NORTH"]


def test_administrator_created_without_site_works_at_all_sites(app, flask, site):
    result = flask(
        "users", "create", "root-admin", "--role", "admin", "--password-stdin", input=STRONG + "\n"
    )
    assert result.exit_code == 0, result.output
    chief = users(app)["root-admin"]
    assert chief.role == Role.ADMIN
    assert chief.all_sites
    assert chief.sites == []


def test_administrator_created_with_a_site_works_only_there(app, flask, site):
    result = flask(
        "users",
        "create",
        "site-admin",
        "--role",
        "admin",
        "--site",
        "MAIN",
        "--password-stdin",
        input=STRONG + "\n",
    )
    assert result.exit_code == 0, result.output
    assert not users(app)["site-admin"].all_sites


def test_create_without_password_stdin_prompts_twice_and_hides_the_password(app, flask, site):
    result = flask(
        "users",
        "create",
        "maria",
        "--role",
        "clinician",
        "--site",
        "MAIN",
        input=f"{STRONG}\n{STRONG}\n",
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("Password") >= 1
    assert "Repeat for confirmation" in result.output
    assert STRONG not in result.output
    assert login(app.test_client(), "maria", STRONG).status_code == 302


def test_create_prompts_again_when_the_two_passwords_differ(app, flask, site):
    result = flask(
        "users",
        "create",
        "maria",
        "--role",
        "clinician",
        "--site",
        "MAIN",
        input=f"{STRONG}\nsomething else entirely\n{STRONG}\n{STRONG}\n",
    )
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert "maria" in users(app)


STAFF_AT_MAIN = ["users", "create", "sam", "--role", "staff", "--site", "MAIN"]
BAD_CREATES = {
    "duplicate username in other case": (
        ["users", "create", "MARIA", "--role", "staff", "--site", "MAIN"],
        STRONG,
        "That username is taken.",
    ),
    "unknown site": (
        ["users", "create", "sam", "--role", "staff", "--site", "NOWHERE"],
        STRONG,
        "no site with code 'NOWHERE'",
    ),
    "weak password": (
        STAFF_AT_MAIN,
        "password1234",
        "This is a very common password. Try a longer passphrase of unrelated words.",
    ),
    "short password": (STAFF_AT_MAIN, "short", "Use at least 12 characters."),
    "empty password": (STAFF_AT_MAIN, "", "Use at least 12 characters."),
    "password containing the username": (
        STAFF_AT_MAIN,
        "sam-likes-violet-tractors",
        "Do not include your username.",
    ),
    "prescriber who is not a clinician": (
        [*STAFF_AT_MAIN, "--prescriber"],
        STRONG,
        "Only clinicians can be prescribers.",
    ),
    "dispenser who is not a clinician": (
        [*STAFF_AT_MAIN, "--dispense"],
        STRONG,
        "Only clinicians can dispense.",
    ),
    "clinician without a site": (
        ["users", "create", "sam", "--role", "clinician"],
        STRONG,
        "Choose at least one site.",
    ),
    "username with a space": (
        ["users", "create", "sam smith", "--role", "staff", "--site", "MAIN"],
        STRONG,
        "Use 2 to 64 letters, digits, dots, dashes or underscores.",
    ),
}


@pytest.mark.parametrize(
    ("args", "password", "message"), BAD_CREATES.values(), ids=BAD_CREATES.keys()
)
def test_create_with_bad_input_explains_fails_and_creates_nothing(
    app, flask, make_user, args, password, message
):
    make_user("staff", "maria")
    before = set(users(app))

    result = flask(*args, "--password-stdin", input=password + "\n")

    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert set(users(app)) == before


def test_create_with_unknown_role_lists_the_roles_and_creates_nothing(app, flask, site):
    result = flask(
        "users",
        "create",
        "sam",
        "--role",
        "superuser",
        "--site",
        "MAIN",
        "--password-stdin",
        input=STRONG + "\n",
    )
    assert result.exit_code == 2
    assert "Invalid value for '--role'" in result.output
    for role in ("admin", "clinician", "staff"):
        assert role in result.output
    assert users(app) == {}


def test_create_without_role_is_refused(app, flask, site):
    result = flask(
        "users", "create", "sam", "--site", "MAIN", "--password-stdin", input=STRONG + "\n"
    )
    assert result.exit_code == 2
    assert "Missing option '--role'" in result.output
    assert users(app) == {}


def test_create_does_not_leave_a_half_made_user_after_a_failure(app, flask, site):
    assert create_maria(flask, input="password1234\n").exit_code == 1
    result = create_maria(flask)
    assert result.exit_code == 0, result.output
    assert list(users(app)) == ["maria"]


# --- users list ------------------------------------------------------------------------------


@pytest.fixture
def roster(app, make_user, make_site, site):
    north = make_site("NORTH")
    make_user("clinician", "nina", is_prescriber=True, site_ids=[site, north])
    make_user("admin", "boss", all_sites=True, site_ids=[])
    gone = make_user("staff", "gone")
    locked = make_user("staff", "locked-out")
    with app.app_context():
        db.session.get(User, gone).active = False
        db.session.get(User, locked).locked_until = dt.datetime.now(dt.UTC) + dt.timedelta(
            minutes=10
        )
        db.session.commit()


def test_list_shows_active_users_with_role_sites_and_status(flask, roster):
    result = flask("users", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines == [
        "boss\tadmin\tall\tactive",
        "locked-out\tstaff\tMAIN\tactive,locked",
        "nina\tclinician prescriber\tMAIN,NORTH\tactive",
    ]


def test_list_all_includes_deactivated_users(flask, roster):
    result = flask("users", "list", "--all")
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.output.splitlines()] == [
        "boss",
        "gone",
        "locked-out",
        "nina",
    ]
    assert "gone\tstaff\tMAIN\tinactive" in result.output.splitlines()


def test_list_of_an_empty_database_prints_nothing(flask):
    result = flask("users", "list")
    assert result.exit_code == 0
    assert result.output == ""


# --- users deactivate and unlock ------------------------------------------------------------


def test_operator_deactivates_a_user_who_is_signed_out(app, flask, make_user):
    make_user("admin", "boss")
    make_user("staff", "sam")
    sam = app.test_client()
    assert login(sam, "sam").status_code == 302

    result = flask("users", "deactivate", "SAM")

    assert result.exit_code == 0, result.output
    assert "Deactivated sam." in result.output
    assert not users(app)["sam"].active
    response = sam.get("/account")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert login(app.test_client(), "sam").status_code == 200


def test_deactivate_refuses_the_last_active_administrator(app, flask, make_user):
    make_user("admin", "boss")
    make_user("admin", "deputy")
    assert flask("users", "deactivate", "deputy").exit_code == 0

    result = flask("users", "deactivate", "boss")

    assert result.exit_code == 1
    assert "The last active administrator cannot be removed." in result.stderr
    assert users(app)["boss"].active


def test_deactivate_of_an_unknown_user_fails_clearly(flask, site):
    result = flask("users", "deactivate", "nobody")
    assert result.exit_code == 1
    assert "Error: no user 'nobody'." in result.stderr


def test_operator_unlocks_a_locked_out_user(app, flask, make_user):
    make_user("staff", "sam")
    stranger = app.test_client()
    for _ in range(app.config["LOGIN_LOCKOUT_FAILURES"]):
        login(stranger, "sam", "not the password at all")
    assert users(app)["sam"].locked_until is not None
    assert login(app.test_client(), "sam").status_code == 200

    result = flask("users", "unlock", "sam")

    assert result.exit_code == 0, result.output
    assert "Unlocked sam." in result.output
    sam = users(app)["sam"]
    assert sam.locked_until is None
    assert sam.failed_logins == 0
    assert login(app.test_client(), "sam").status_code == 302


def test_unlock_of_an_unknown_user_fails_clearly(flask, site):
    result = flask("users", "unlock", "nobody")
    assert result.exit_code == 1
    assert "Error: no user 'nobody'." in result.stderr


# --- seed-demo ---------------------------------------------------------------------------------


def test_seed_demo_creates_a_site_and_one_user_per_role_and_prints_passwords(app, flask):
    result = flask("seed-demo")

    assert result.exit_code == 0, result.output
    assert "Created demo site MAIN" in result.output
    created = users(app)
    assert {u.role for u in created.values()} == set(Role)
    assert any(u.is_prescriber for u in created.values())
    assert all(
        [s.code for s in u.sites] == ["MAIN"] for u in created.values() if u.role != Role.ADMIN
    )
    assert created["admin"].all_sites  # the demo director sees both sites
    printed = dict(
        re.findall(r"^\s+(\S+)\s+(?:Administrator|Clinician|Staff)\s+(\S+)$", result.output, re.M)
    )
    assert set(printed) == set(created)
    for username, password in printed.items():
        response = login(app.test_client(), username, password)
        assert response.status_code == 302, username


def test_seed_demo_a_second_time_changes_nothing(app, flask):
    assert flask("seed-demo").exit_code == 0
    before = {name: (u.id, u.password_hash) for name, u in users(app).items()}

    result = flask("seed-demo")

    assert result.exit_code == 0, result.output
    assert "Demo data is already loaded; nothing changed." in result.output
    assert {name: (u.id, u.password_hash) for name, u in users(app).items()} == before


def test_seed_demo_leaves_an_existing_database_alone(app, flask, make_user):
    make_user("admin", "boss")
    result = flask("seed-demo")
    assert result.exit_code == 0
    assert "nothing changed" in result.output
    assert list(users(app)) == ["boss"]


# --- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["users"], ["create", "list", "deactivate", "unlock", "reset-password"]),
        (
            ["users", "create"],
            [
                "USERNAME",
                "--role",
                "admin",
                "clinician",
                "staff",
                "--site",
                "--prescriber",
                "--full-name",
                "--email",
                "--password-stdin",
                "standard input",
            ],
        ),
        (["users", "list"], ["--all", "deactivated"]),
        (["users", "deactivate"], ["USERNAME", "never deleted"]),
        (["users", "unlock"], ["USERNAME", "lock"]),
        (["users", "reset-password"], ["USERNAME", "temporary password", "audit trail"]),
        (["seed-demo"], ["demo", "password", "reset-password"]),
    ],
    ids=[
        "users",
        "users create",
        "users list",
        "users deactivate",
        "users unlock",
        "users reset-password",
        "seed-demo",
    ],
)
def test_each_command_explains_itself(flask, command, expected):
    result = flask(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    for text in expected:
        assert text in result.output, text
