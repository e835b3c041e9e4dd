"""Account takeover across sites: an administrator of some sites may change only the
accounts that work at no other site. Seeing such an account (when it shares one of their
sites) is allowed; changing its details, role, sites, password, two-step verification,
sessions or status is refused, by the services, with a message and an audit record.

The example from the security review (issue 8): an administrator of MAIN edited a
clinician of MAIN and EAST with ``sites=MAIN&role=admin`` (EAST was kept and the role
granted), reset their password and signed in as them, reaching EAST patients and users.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from types import SimpleNamespace

import pyotp
import pytest
import sqlalchemy as sa

from clinic.accounts import services
from clinic.accounts.models import RecoveryCode, User, UserSession
from clinic.audit.models import AuditEvent
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.security import Role
from clinic.sites.models import Site
from tests.conftest import login

REFUSED = (
    "Only an organisation-wide administrator can change this account: "
    "it also works at sites outside yours."
)
READ_ONLY_NOTE = "You can see this account but not change it"
ACTIONS = ("deactivate", "reactivate", "reset-password", "unlock", "end-sessions", "reset-mfa")


# --- helpers ---------------------------------------------------------------------------


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def snapshot(app, user_id: int) -> SimpleNamespace:
    """Everything an administrator's change could touch: the user's columns, sites,
    live sessions and recovery codes."""
    with app.app_context():
        user = db.session.get(User, user_id)
        values = {a.key: getattr(user, a.key) for a in sa.inspect(User).column_attrs}
        live = db.session.scalar(
            sa.select(sa.func.count(UserSession.id)).where(
                UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
            )
        )
        codes = db.session.scalar(
            sa.select(sa.func.count(RecoveryCode.id)).where(RecoveryCode.user_id == user_id)
        )
        return SimpleNamespace(**values, site_ids=user.site_ids, live=live, codes=codes)


def last_seq(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.seq), 0)))


def refusals_since(app, seq: int, user_id: int) -> list[dict]:
    """The access_denied events about ``user_id`` recorded after event ``seq``."""
    with app.app_context():
        events = db.session.scalars(
            sa.select(AuditEvent)
            .where(
                AuditEvent.seq > seq,
                AuditEvent.action == "access_denied",
                AuditEvent.entity_type == "user",
                AuditEvent.entity_id == str(user_id),
            )
            .order_by(AuditEvent.seq)
        )
        return [
            {"outcome": e.outcome.value, "by": e.username, **json.loads(e.details)} for e in events
        ]


def flashed_on(client, user_id: int) -> str:
    return text_of(client.get(f"/admin/users/{user_id}"))


def edit_form(app, user_id: int, **changes) -> dict:
    user = snapshot(app, user_id)
    data = {
        "full_name": user.full_name,
        "email": user.email or "",
        "role": user.role.value,
        "is_prescriber": "y" if user.is_prescriber else None,
        "all_sites": "y" if user.all_sites else None,
        "sites": sorted(user.site_ids),
        "version": user.profile_version,  # the hidden field the page carries
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def post_action(client, user_id: int, action: str):
    """Press an action's button with a valid token (taken from the user's page, as the
    confirmation page itself is not offered): the permission is what is measured."""
    return client.submit(f"/admin/users/{user_id}/{action}", {}, form_url=f"/admin/users/{user_id}")


def post_edit(client, user_id: int, data: dict):
    return client.submit(f"/admin/users/{user_id}/edit", data, form_url=f"/admin/users/{user_id}")


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture
def east(make_site) -> int:
    return make_site("EAST", "East Clinic")


@pytest.fixture
def main_admin(client_as, site):
    """An administrator of MAIN only, signed in."""
    return client_as("admin", username="main-admin", site_ids=[site])


@pytest.fixture
def org_admin(client_as):
    """An organisation-wide administrator, signed in."""
    return client_as("admin", username="boss", all_sites=True, site_ids=[])


@pytest.fixture
def dana(app, make_user, site, east) -> int:
    """A clinician of MAIN and EAST, signed in somewhere, with failed sign-ins, a lock and
    two-step verification: every action would change something."""
    user_id = make_user("clinician", "dana", full_name="Dana Dual", site_ids=[site, east])
    browser = app.test_client()
    assert login(browser, "dana").status_code == 302
    with app.app_context():
        user = db.session.get(User, user_id)
        user.failed_logins = 3
        user.locked_until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
        user.mfa_secret = pyotp.random_base32()
        user.mfa_enabled_at = dt.datetime.now(dt.UTC)
        user.recovery_codes.append(RecoveryCode(code_hash="0" * 64))
        db.session.commit()
    return user_id


def deactivate_for_reactivation(app, user_id: int, action: str) -> None:
    """Reactivation changes something only for a deactivated user."""
    if action == "reactivate":
        with app.app_context():
            db.session.get(User, user_id).active = False
            db.session.commit()


# --- the review's example, end to end --------------------------------------------------


def test_site_admin_cannot_make_a_clinician_of_two_sites_an_admin_of_one(
    app, main_admin, dana, site
):
    before = snapshot(app, dana)
    seq = last_seq(app)

    response = post_edit(main_admin, dana, edit_form(app, dana, sites=[site], role="admin"))

    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/users/{dana}"
    assert REFUSED in flashed_on(main_admin, dana)
    assert snapshot(app, dana) == before  # EAST kept, role not granted, still signed in
    assert refusals_since(app, seq, dana) == [
        {"outcome": "denied", "by": "main-admin", "refused": "edit", "reason": "outside_sites"}
    ]


def test_site_admin_cannot_reset_the_password_of_a_user_of_two_sites_to_sign_in_as_them(
    app, main_admin, dana
):
    before = snapshot(app, dana)
    seq = last_seq(app)

    response = post_action(main_admin, dana, "reset-password")

    assert response.status_code == 302
    assert 'data-testid="temporary-password"' not in text_of(response)
    assert REFUSED in flashed_on(main_admin, dana)
    assert snapshot(app, dana) == before
    assert [r["refused"] for r in refusals_since(app, seq, dana)] == ["reset-password"]
    # Their own password still works (after the lock they had lifts, by an allowed admin).
    with app.app_context():
        services.unlock_user(db.session.get(User, dana), actor=None)
        db.session.commit()
    assert login(app.test_client(), "dana").headers["Location"].startswith("/login/verify")


@pytest.mark.parametrize("action", ACTIONS)
def test_site_admin_is_refused_every_action_on_a_user_of_two_sites(app, main_admin, dana, action):
    deactivate_for_reactivation(app, dana, action)
    before = snapshot(app, dana)
    seq = last_seq(app)

    response = post_action(main_admin, dana, action)

    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/users/{dana}"
    assert REFUSED in flashed_on(main_admin, dana)
    assert snapshot(app, dana) == before
    assert refusals_since(app, seq, dana) == [
        {"outcome": "denied", "by": "main-admin", "refused": action, "reason": "outside_sites"}
    ]


@pytest.mark.parametrize("path", ["/edit", *[f"/{a}" for a in ACTIONS]])
def test_site_admin_is_not_shown_the_pages_that_change_a_user_of_two_sites(
    app, main_admin, dana, path
):
    seq = last_seq(app)
    response = main_admin.get(f"/admin/users/{dana}{path}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/users/{dana}"
    assert REFUSED in flashed_on(main_admin, dana)
    assert [r["refused"] for r in refusals_since(app, seq, dana)] == [path.lstrip("/")]


def test_site_admin_sees_a_user_of_two_sites_without_any_way_to_change_them(app, main_admin, dana):
    response = main_admin.get(f"/admin/users/{dana}")
    assert response.status_code == 200
    body = text_of(response)
    assert "East Clinic, Main Street Clinic" in body
    assert READ_ONLY_NOTE in body
    assert f'href="/admin/users/{dana}/edit"' not in body
    for action in ACTIONS:
        assert f'href="/admin/users/{dana}/{action}"' not in body
    assert "dana" in body and "dana" in text_of(main_admin.get("/admin/users/?q=dana"))


def test_organisation_wide_admin_still_changes_a_user_of_two_sites(app, org_admin, dana, site):
    response = post_edit(org_admin, dana, edit_form(app, dana, sites=[site], role="admin"))
    assert response.status_code == 302
    user = snapshot(app, dana)
    assert (user.role, user.site_ids) == (Role.ADMIN, {site})
    body = text_of(org_admin.get(f"/admin/users/{dana}"))
    assert READ_ONLY_NOTE not in body
    assert f'href="/admin/users/{dana}/edit"' in body


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("deactivate", 302),
        ("reactivate", 302),
        ("reset-password", 200),
        ("unlock", 302),
        ("end-sessions", 302),
        ("reset-mfa", 302),
    ],
)
def test_organisation_wide_admin_still_acts_on_a_user_of_two_sites(
    app, org_admin, dana, action, status
):
    deactivate_for_reactivation(app, dana, action)
    before = snapshot(app, dana)
    seq = last_seq(app)
    response = post_action(org_admin, dana, action)
    assert response.status_code == status
    assert snapshot(app, dana) != before
    assert refusals_since(app, seq, dana) == []


def test_admin_of_both_sites_manages_a_user_of_both(app, client_as, dana, site, east):
    both_admin = client_as("admin", username="both-admin", site_ids=[site, east])
    response = post_edit(both_admin, dana, edit_form(app, dana, full_name="Dana Renamed"))
    assert response.status_code == 302
    assert snapshot(app, dana).full_name == "Dana Renamed"


def test_site_admin_cannot_change_an_organisation_wide_admin_listed_at_their_site(
    app, main_admin, make_user, site
):
    """An administrator of every site, also listed at MAIN (so MAIN's admin can see them),
    reaches further than MAIN's admin: refused, though every listed site is MAIN."""
    chief = make_user("admin", "chief", all_sites=True, site_ids=[site])
    before = snapshot(app, chief)
    assert main_admin.get(f"/admin/users/{chief}").status_code == 200
    response = post_action(main_admin, chief, "reset-password")
    assert response.status_code == 302
    assert REFUSED in flashed_on(main_admin, chief)
    assert snapshot(app, chief) == before


def test_site_admin_may_make_a_user_of_their_site_an_admin_who_reaches_no_further(
    app, main_admin, make_user, dana, site
):
    sam = make_user("staff", "sam", site_ids=[site])
    response = post_edit(main_admin, sam, edit_form(app, sam, role="admin"))
    assert response.status_code == 302
    assert snapshot(app, sam).role == Role.ADMIN

    # The new administrator of MAIN is held to the same rule.
    new_admin = app.test_client()
    assert login(new_admin, "sam").status_code == 302
    before = snapshot(app, dana)
    response = post_edit(new_admin, dana, edit_form(app, dana, role="admin", sites=[site]))
    assert response.status_code == 302
    assert REFUSED in flashed_on(new_admin, dana)
    assert snapshot(app, dana) == before


# --- the rule in the services (whatever the caller) ------------------------------------


def call(name: str, user: User, actor: User | None, site: Site):
    if name == "update_user":
        return services.update_user(
            user,
            actor=actor,
            full_name=user.full_name,
            email=None,
            role=Role.ADMIN,
            sites=[site],
            is_prescriber=False,
            all_sites=False,
        )
    if name == "end_sessions":
        return services.end_sessions(user, actor=actor)
    return getattr(services, name)(user, actor=actor)


SERVICES = [
    "update_user",
    "deactivate_user",
    "reactivate_user",
    "reset_password",
    "unlock_user",
    "end_sessions",
    "reset_mfa",
]


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_that_changes_an_account_refuses_a_site_admin_of_fewer_sites(
    app, make_user, dana, site, name
):
    admin_id = make_user("admin", "main-admin", site_ids=[site])
    before = snapshot(app, dana)
    with app.app_context():
        user = db.session.get(User, dana)
        with pytest.raises(services.OutOfReachError) as refused:
            call(name, user, db.session.get(User, admin_id), db.session.get(Site, site))
        db.session.rollback()
    assert isinstance(refused.value, DomainError)
    assert refused.value.message == REFUSED
    assert refused.value.user_id == dana
    assert snapshot(app, dana) == before


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_that_changes_an_account_lets_an_organisation_wide_admin(
    app, make_user, dana, site, name
):
    admin_id = make_user("admin", "boss", all_sites=True, site_ids=[])
    with app.app_context():
        call(
            name,
            db.session.get(User, dana),
            db.session.get(User, admin_id),
            db.session.get(Site, site),
        )
        db.session.commit()


@pytest.mark.parametrize(
    ("admin_sites", "user_sites", "allowed"),
    [
        (["MAIN"], ["MAIN"], True),
        (["MAIN", "EAST"], ["MAIN"], True),  # fewer sites than the administrator
        (["MAIN", "EAST"], ["MAIN", "EAST"], True),  # exactly the administrator's sites
        (["MAIN"], ["MAIN", "EAST"], False),  # one site more
        (["MAIN", "EAST"], ["MAIN", "EAST", "WEST"], False),
        (["MAIN"], ["EAST"], False),
    ],
)
def test_a_site_admin_may_change_a_user_only_when_every_site_of_theirs_is_the_admins(
    app, site, east, make_site, admin_sites, user_sites, allowed
):
    west = make_site("WEST", "West Clinic")
    with app.app_context():
        by_code = {s.code: s for s in db.session.scalars(sa.select(Site))}
        assert set(by_code) == {"MAIN", "EAST", "WEST"} and west
        admin = User(role=Role.ADMIN, sites=[by_code[c] for c in admin_sites])
        user = User(id=999, role=Role.STAFF, sites=[by_code[c] for c in user_sites])
        assert services.may_manage(admin, user) is allowed
        organisation_admin = User(role=Role.ADMIN, all_sites=True, sites=[])
        assert services.may_manage(organisation_admin, user) is True
        assert services.may_manage(None, user) is True  # the operator's CLI


def test_operator_cli_still_deactivates_and_unlocks_a_user_of_two_sites(app, dana):
    from flask.testing import FlaskCliRunner

    runner = FlaskCliRunner(app)
    assert runner.invoke(args=["users", "unlock", "dana"]).exit_code == 0
    assert runner.invoke(args=["users", "deactivate", "dana"]).exit_code == 0
    assert not snapshot(app, dana).active


def test_site_admin_assigns_only_their_own_sites_whatever_the_caller(app, make_user, site, east):
    """The form offers only the administrator's sites; the service refuses others too."""
    admin_id = make_user("admin", "main-admin", site_ids=[site])
    sam = make_user("staff", "sam", site_ids=[site])
    with app.app_context():
        actor = db.session.get(User, admin_id)
        with pytest.raises(DomainError, match=r"^You can only assign your own sites\.$") as moved:
            services.update_user(
                db.session.get(User, sam),
                actor=actor,
                full_name="Sam",
                email=None,
                role=Role.STAFF,
                sites=[db.session.get(Site, site), db.session.get(Site, east)],
                is_prescriber=False,
                all_sites=False,
            )
        assert moved.value.field == "sites"
        db.session.rollback()
        with pytest.raises(DomainError, match=r"^You can only assign your own sites\.$"):
            services.create_user(
                actor=actor,
                username="eve",
                full_name="Eve East",
                role=Role.STAFF,
                password="violet tractor moonlight 1987 pebble",
                sites=[db.session.get(Site, east)],
            )
        db.session.rollback()
    assert snapshot(app, sam).site_ids == {site}


def test_refused_change_in_the_audit_trail_names_who_and_what(app, main_admin, dana):
    seq = last_seq(app)
    post_action(main_admin, dana, "reset-mfa")
    with app.app_context():
        [event] = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.seq > seq, AuditEvent.action == "access_denied")
        )
        assert event.outcome.value == "denied"
        assert event.user_id == main_admin.user_id
        assert (event.entity_type, event.entity_id) == ("user", str(dana))
        assert json.loads(event.details) == {"refused": "reset-mfa", "reason": "outside_sites"}
