"""Account changes that arrive at the same moment: two administrators removing each other,
the same new username sent twice, two enrolments in two-step verification. Each rule is
held by the database (a lock or a unique constraint), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable

import pyotp
import pytest
import sqlalchemy as sa

from clinic.accounts import authentication, services
from clinic.accounts.models import RecoveryCode, User
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.security import Role
from clinic.sites.models import Site
from tests.conftest import PASSWORD, login

NEW_PASSWORD = "violet tractor moonlight 1987 pebble"
LAST_ADMIN = "The last active administrator cannot be removed."
TAKEN = "That username is taken."
# Long enough for a second transaction to reach its lock, short next to busy_timeout (5 s).
HOLD_SECONDS = 0.5


def outcome_of(app, action: Callable[[], object]) -> str:
    """Run ``action`` in its own app context (its own database session) and commit;
    the outcome is "done" or the DomainError's message."""
    with app.app_context():
        try:
            action()
            db.session.commit()
        except DomainError as error:
            db.session.rollback()
            return error.message
        finally:
            db.session.remove()
    return "done"


def second_while_first_is_open(app, first: Callable[[], object], second: Callable[[], object]):
    """Run ``first`` up to its commit, then ``second`` in another thread while ``first``'s
    transaction is still open; return (whether ``second`` waited for ``first``, and its
    outcome). Without a lock, ``second`` decides on what it read before ``first``
    committed."""
    result: dict[str, str] = {}
    with app.app_context():
        first()
        other = threading.Thread(target=lambda: result.update(second=outcome_of(app, second)))
        other.start()
        other.join(HOLD_SECONDS)
        waited = other.is_alive()
        db.session.commit()
        db.session.remove()
    other.join(10)
    assert not other.is_alive(), "the second transaction never finished"
    return waited, result["second"]


def get_user(user_id: int) -> User:
    return db.session.get(User, user_id)


def is_active_admin(app, user_id: int) -> bool:
    with app.app_context():
        user = get_user(user_id)
        return user.active and user.role == Role.ADMIN


# --- the last administrator ------------------------------------------------------------


@pytest.fixture
def two_admins(make_user) -> tuple[int, int]:
    return make_user("admin", "ann"), make_user("admin", "ben")


def test_two_admins_deactivating_each_other_at_once_leave_one(app, two_admins):
    ann, ben = two_admins
    waited, outcome = second_while_first_is_open(
        app,
        lambda: services.deactivate_user(get_user(ben), actor=get_user(ann)),
        lambda: services.deactivate_user(get_user(ann), actor=get_user(ben)),
    )
    assert waited  # the second counted the administrators only after the first committed
    assert outcome == LAST_ADMIN
    assert is_active_admin(app, ann)
    assert not is_active_admin(app, ben)


def demote(user_id: int, actor_id: int):
    user = get_user(user_id)
    return services.update_user(
        user,
        actor=get_user(actor_id),
        full_name=user.full_name,
        email=None,
        role=Role.STAFF,
        sites=user.sites,
        is_prescriber=False,
        all_sites=False,
    )


def test_two_admins_demoting_each_other_at_once_leave_one(app, two_admins):
    ann, ben = two_admins
    waited, outcome = second_while_first_is_open(
        app, lambda: demote(ben, ann), lambda: demote(ann, ben)
    )
    assert waited
    assert outcome == LAST_ADMIN
    assert is_active_admin(app, ann)
    assert not is_active_admin(app, ben)


def test_one_admin_demoting_while_the_other_deactivates_leave_one(app, two_admins):
    ann, ben = two_admins
    waited, outcome = second_while_first_is_open(
        app,
        lambda: demote(ben, ann),
        lambda: services.deactivate_user(get_user(ann), actor=get_user(ben)),
    )
    assert waited
    assert outcome == LAST_ADMIN
    assert is_active_admin(app, ann)


def test_with_a_third_admin_both_removals_at_once_go_through(app, two_admins, make_user):
    ann, ben = two_admins
    carl = make_user("admin", "carl")
    _, outcome = second_while_first_is_open(
        app,
        lambda: services.deactivate_user(get_user(ben), actor=get_user(ann)),
        lambda: services.deactivate_user(get_user(ann), actor=get_user(carl)),
    )
    assert outcome == "done"
    assert [is_active_admin(app, u) for u in (ann, ben, carl)] == [False, False, True]


# --- a site given while a site administrator acts ------------------------------------------


def test_site_admin_acting_while_another_site_is_given_is_refused(app, make_user, make_site, site):
    """An organisation-wide administrator gives sam (of MAIN) the EAST site; at the same
    moment MAIN's administrator resets sam's password. The reset waits for the change,
    then sees EAST and is refused: it must not decide on the sites it read before."""
    east = make_site("EAST", "East Clinic")
    boss = make_user("admin", "boss", all_sites=True, site_ids=[])
    main_admin = make_user("admin", "main-admin", site_ids=[site])
    sam = make_user("staff", "sam", site_ids=[site])
    before = None
    with app.app_context():
        before = get_user(sam).password_hash

    def give_east():
        user = get_user(sam)
        services.update_user(
            user,
            actor=get_user(boss),
            full_name=user.full_name,
            email=None,
            role=Role.STAFF,
            sites=[db.session.get(Site, site), db.session.get(Site, east)],
            is_prescriber=False,
            all_sites=False,
        )

    def reset():
        user = get_user(sam)
        assert user.site_ids == {site}  # what it read before the change was committed
        services.reset_password(user, actor=get_user(main_admin))

    waited, outcome = second_while_first_is_open(app, give_east, reset)
    assert waited
    assert outcome == services.OUT_OF_REACH
    with app.app_context():
        assert get_user(sam).password_hash == before
        assert get_user(sam).site_ids == {site, east}


# --- the same username twice -----------------------------------------------------------


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


def field_error(response, field: str) -> str:
    match = re.search(
        rf'<div id="{re.escape(field)}-error"[^>]*>(.*?)</div>',
        response.get_data(as_text=True),
        re.S,
    )
    return html.unescape(match.group(1)).strip() if match else ""


def users_named(app, username: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(User.id)).where(User.username == username))


@pytest.fixture
def admin(client_as):
    return client_as("admin", username="boss", all_sites=True, site_ids=[])


def test_the_same_new_user_sent_twice_is_created_once(app, admin, site):
    first = admin.submit("/admin/users/new", new_user_form(site))
    second = admin.submit("/admin/users/new", new_user_form(site))
    assert first.status_code == 302
    assert second.status_code == 200
    assert field_error(second, "username") == TAKEN
    assert users_named(app, "mlopez") == 1


def test_a_username_taken_at_the_same_moment_is_shown_next_to_the_field(
    app, admin, site, make_user, monkeypatch
):
    """The other request inserted "mlopez" after this one checked the name was free: the
    unique constraint answers, and the form says so, never a 500."""
    make_user("staff", "mlopez", full_name="The Other Request")
    token = admin.csrf_token("/admin/users/new")
    monkeypatch.setattr(services, "user_by_username", lambda username: None)

    response = admin.post("/admin/users/new", data={**new_user_form(site), "csrf_token": token})

    assert response.status_code == 200
    assert field_error(response, "username") == TAKEN
    assert 'value="Maria Lopez"' in response.get_data(as_text=True)
    assert users_named(app, "mlopez") == 1


def test_service_turns_the_unique_constraint_into_the_taken_message(
    app, site, make_user, monkeypatch
):
    make_user("staff", "mlopez")
    monkeypatch.setattr(services, "user_by_username", lambda username: None)
    with app.app_context():
        with pytest.raises(DomainError) as refused:
            services.create_user(
                actor=None,
                username="MLopez",
                full_name="Maria Lopez",
                role=Role.STAFF,
                password=NEW_PASSWORD,
                sites=[db.session.get(Site, site)],
            )
        db.session.rollback()
    assert (refused.value.field, refused.value.message) == ("username", TAKEN)
    assert users_named(app, "mlopez") == 1


def test_two_creates_of_one_username_at_once_make_one_user(app, site):
    def create():
        services.create_user(
            actor=None,
            username="mlopez",
            full_name="Maria Lopez",
            role=Role.STAFF,
            password=NEW_PASSWORD,
            sites=[db.session.get(Site, site)],
        )

    _, outcome = second_while_first_is_open(app, create, create)
    assert outcome == TAKEN
    assert users_named(app, "mlopez") == 1


def test_operator_creating_a_user_taken_at_the_same_moment_gets_the_message(
    app, site, make_user, monkeypatch
):
    from flask.testing import FlaskCliRunner

    make_user("staff", "mlopez")
    monkeypatch.setattr(services, "user_by_username", lambda username: None)
    result = FlaskCliRunner(app).invoke(
        args=["users", "create", "mlopez", "--role", "staff", "--site", "MAIN", "--password-stdin"],
        input=NEW_PASSWORD + "\n",
    )
    assert result.exit_code == 1
    assert f"Error: {TAKEN}" in result.output
    assert users_named(app, "mlopez") == 1


# --- two enrolments in two-step verification ------------------------------------------------


def test_two_enrolments_at_once_leave_ten_recovery_codes_those_shown_last(app, make_user):
    user_id = make_user("staff", "sam")
    secret = pyotp.random_base32()
    shown: dict[str, list[str]] = {}

    def enrol(name: str):
        def run():
            user = get_user(user_id)
            code = pyotp.TOTP(secret).now()
            shown[name] = authentication.enable_mfa(
                user, password=PASSWORD, secret=secret, code=code
            )

        return run

    waited, outcome = second_while_first_is_open(app, enrol("first"), enrol("second"))
    assert waited
    assert outcome == "done"
    with app.app_context():
        codes = list(
            db.session.scalars(sa.select(RecoveryCode).where(RecoveryCode.user_id == user_id))
        )
    assert len(codes) == 10
    # The codes that work are those the second page showed, not the first's.
    browser = app.test_client()
    login(browser, "sam")
    token = browser.csrf_token("/login/verify")
    response = browser.post("/login/verify", data={"code": shown["first"][0], "csrf_token": token})
    assert response.status_code == 200
    response = browser.post("/login/verify", data={"code": shown["second"][0], "csrf_token": token})
    assert response.status_code == 302
