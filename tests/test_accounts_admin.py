"""User administration under /admin/users: the list, creating and editing users, the
account actions (deactivate, reactivate, reset password, unlock, reset two-step
verification), the rules that keep at least one administrator, site scoping and who may
use these pages at all."""

from __future__ import annotations

import datetime as dt
import html
import re
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import sqlalchemy as sa

from clinic.accounts import services, user_sessions
from clinic.accounts.models import RecoveryCode, User
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.security import Role
from clinic.sites.models import Site
from tests.conftest import PASSWORD, login

NEW_PASSWORD = "violet tractor moonlight 1987 pebble"
ACTIONS = ("deactivate", "reactivate", "reset-password", "unlock", "end-sessions", "reset-mfa")


# --- helpers ---------------------------------------------------------------------------


def load_user(app, user_id: int) -> SimpleNamespace:
    """A detached snapshot of a user's columns (and site ids)."""
    with app.app_context():
        user = db.session.get(User, user_id)
        values = {a.key: getattr(user, a.key) for a in sa.inspect(User).column_attrs}
        return SimpleNamespace(**values, site_ids=user.site_ids)


def user_id_by_name(app, username: str) -> int | None:
    with app.app_context():
        return db.session.scalar(sa.select(User.id).where(User.username == username))


def user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(User.id)))


def update_user_row(app, user_id: int, **values) -> None:
    with app.app_context():
        user = db.session.get(User, user_id)
        for name, value in values.items():
            setattr(user, name, value)
        db.session.commit()


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def listed_usernames(response) -> list[str]:
    """The usernames in the user list's table, in the order shown."""
    body = response.get_data(as_text=True)
    return [
        html.unescape(name)
        for name in re.findall(r'<td><a href="/admin/users/\d+">([^<]+)</a></td>', body)
    ]


def field_error(response, field: str) -> str:
    """The error shown next to form field ``field`` ('' when there is none)."""
    match = re.search(
        rf'<div id="{re.escape(field)}-error"[^>]*>(.*?)</div>',
        response.get_data(as_text=True),
        re.S,
    )
    return html.unescape(match.group(1)).strip() if match else ""


def input_tag(response, name: str, value: str | None = None) -> str:
    """The <input> (or <select>) tag for field ``name`` (and checkbox ``value``)."""
    body = response.get_data(as_text=True)
    for tag in re.findall(r"<(?:input|select)\b[^>]*>", body):
        if f'name="{name}"' not in tag:
            continue
        if value is None or f'value="{value}"' in tag:
            return tag
    return ""


def selected_option(response, name: str) -> str | None:
    body = response.get_data(as_text=True)
    select = re.search(rf'<select[^>]*name="{name}"[^>]*>(.*?)</select>', body, re.S)
    assert select, f"no <select> named {name}"
    chosen = re.search(r'<option[^>]*selected[^>]*value="([^"]*)"', select.group(1))
    if chosen is None:
        chosen = re.search(r'<option[^>]*value="([^"]*)"[^>]*selected', select.group(1))
    return chosen.group(1) if chosen else None


def temporary_password(response) -> str:
    match = re.search(
        r'data-testid="temporary-password"[^>]*>([^<]+)<', response.get_data(as_text=True)
    )
    assert match, "no temporary password on the page"
    return html.unescape(match.group(1)).strip()


def act(client, user_id: int, action: str):
    """Confirm an action the way a browser does: open its page, press the button."""
    url = f"/admin/users/{user_id}/{action}"
    return client.submit(url, {}, form_url=url)


def new_user_form(site_id: int, **changes) -> dict:
    """The new-user form as an administrator fills it in; ``None`` leaves a field out
    (an unticked checkbox)."""
    data = {
        "username": "mlopez",
        "full_name": "Maria Lopez",
        "email": "maria@example.org",
        "role": "clinician",
        "is_prescriber": "y",
        "sites": [site_id],
        "password": NEW_PASSWORD,
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def edit_form(app, user_id: int, **changes) -> dict:
    """The edit form as it is shown for the user, with ``changes`` made."""
    user = load_user(app, user_id)
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


def signed_in(app, username: str, password: str = PASSWORD):
    client = app.test_client()
    response = login(client, username, password)
    assert response.status_code == 302, text_of(response)
    return client


def is_signed_out(client) -> bool:
    response = client.get("/account")
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture
def admin(client_as):
    """An organisation-wide administrator (works at every site), signed in."""
    return client_as("admin", username="boss", full_name="Bea Boss", all_sites=True, site_ids=[])


@pytest.fixture
def other_site(make_site) -> int:
    return make_site("NORTH", "North Clinic")


# --- the user list ---------------------------------------------------------------------


@pytest.fixture
def listed_users(app, admin, make_user):
    """Three users besides the administrator, with distinct names, roles, sign-ins."""
    specs = [
        ("carol", "Alice Zed", "staff", dt.datetime(2024, 1, 3, tzinfo=dt.UTC)),
        ("alice", "Bob Young", "clinician", dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
        ("bob", "Carl Xu", "admin", dt.datetime(2024, 1, 2, tzinfo=dt.UTC)),
    ]
    for username, full_name, role, last_login in specs:
        user_id = make_user(role, username, full_name=full_name)
        update_user_row(app, user_id, last_login_at=last_login)
    with app.app_context():
        return [
            SimpleNamespace(
                id=u.id,
                username=u.username,
                name=u.full_name,
                role=u.role.value,
                last_login=u.last_login_at,
            )
            for u in db.session.scalars(sa.select(User))
        ]


def test_user_list_is_sorted_by_username_by_default(admin, listed_users):
    response = admin.get("/admin/users/")
    assert response.status_code == 200
    assert listed_usernames(response) == ["alice", "bob", "boss", "carol"]


@pytest.mark.parametrize("sort", ["username", "name", "role", "last_login"])
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_user_list_sorts_by_each_column_both_ways(admin, listed_users, sort, direction):
    # Ties in the order of creation; a descending sort reverses the whole order (ties
    # too), except that users who never signed in stay last.
    desc = direction == "desc"
    known = [u for u in listed_users if getattr(u, sort) is not None]
    never = [u for u in listed_users if getattr(u, sort) is None]
    expected = sorted(known, key=lambda u: (getattr(u, sort), u.id), reverse=desc)
    expected += sorted(never, key=lambda u: u.id, reverse=desc)
    response = admin.get(f"/admin/users/?sort={sort}&dir={direction}")
    assert response.status_code == 200
    assert listed_usernames(response) == [u.username for u in expected]
    assert 'aria-sort="{}"'.format("descending" if direction == "desc" else "ascending") in (
        response.get_data(as_text=True)
    )


def test_user_list_ignores_an_unknown_sort_column(admin, listed_users):
    response = admin.get("/admin/users/?sort=password_hash&dir=desc")
    assert response.status_code == 200
    assert listed_usernames(response) == ["carol", "boss", "bob", "alice"]


def test_most_recent_sign_in_first_lists_users_who_never_signed_in_last(
    app, admin, listed_users, make_user
):
    make_user("staff", "newbie")  # never signed in
    response = admin.get("/admin/users/?sort=last_login&dir=desc")
    assert listed_usernames(response)[0] == "boss"
    assert listed_usernames(response)[-1] == "newbie"


def test_user_list_shows_50_users_per_page(app, admin):
    with app.app_context():
        main = Site(code="BULK", name="Bulk Site", timezone="UTC")
        db.session.add_all(
            User(
                username=f"user-{n:02d}",
                full_name=f"User {n:02d}",
                role=Role.STAFF,
                password_hash="not-a-real-hash",
                sites=[main],
            )
            for n in range(55)
        )
        db.session.commit()

    first = admin.get("/admin/users/")
    assert first.status_code == 200
    assert len(listed_usernames(first)) == 50
    assert "The first 50; more on the next page." in text_of(first)
    next_link = re.search(r'href="(/admin/users/\?after=\d+)" rel="next"', text_of(first))
    assert next_link is not None

    second = admin.get(next_link.group(1))
    assert second.status_code == 200
    assert listed_usernames(second) == [f"user-{n:02d}" for n in range(49, 55)]
    assert "6 on this page, the end of the list." in text_of(second)
    assert 'aria-disabled="true">Next<' in text_of(second)
    back = re.search(r'href="(/admin/users/\?before=\d+)" rel="prev"', text_of(second))
    assert back is not None
    assert listed_usernames(admin.get(back.group(1))) == listed_usernames(first)

    # Sorting and paging together: the second page of the list in reverse order.
    backwards = admin.get("/admin/users/?sort=username&dir=desc")
    after = re.search(r'href="(/admin/users/\?[^"]*after=\d+[^"]*)" rel="next"', text_of(backwards))
    assert after is not None and "sort=username" in after.group(1) and "dir=desc" in after.group(1)
    second_backwards = admin.get(after.group(1))
    assert listed_usernames(second_backwards) == [f"user-{n:02d}" for n in range(4, -1, -1)] + [
        "boss"
    ]


def test_user_list_old_page_links_and_stray_cursors_show_the_first_page(admin):
    for query in ("?page=99", "?after=99999", "?before=abc", "?after=-1", "?after=" + "9" * 500):
        response = admin.get(f"/admin/users/{query}")
        assert response.status_code == 200
        assert listed_usernames(response) == ["boss"]
        assert "1 in all." in text_of(response)


@pytest.fixture
def one_deactivated(app, admin, make_user) -> None:
    make_user("staff", "still-here")
    gone = make_user("staff", "gone-away")
    update_user_row(app, gone, active=False)


@pytest.mark.parametrize(
    ("show", "expected"),
    [
        ("", ["boss", "still-here"]),
        ("active", ["boss", "still-here"]),
        ("inactive", ["gone-away"]),
        ("all", ["boss", "gone-away", "still-here"]),
    ],
)
def test_user_list_filters_by_status(admin, one_deactivated, show, expected):
    response = admin.get(f"/admin/users/?show={show}" if show else "/admin/users/")
    assert response.status_code == 200
    assert listed_usernames(response) == expected


def test_deactivated_users_are_marked_in_the_list(admin, one_deactivated):
    response = admin.get("/admin/users/?show=all")
    assert "Deactivated</span>" in text_of(response)


@pytest.fixture
def searchable(admin, make_user) -> None:
    make_user("clinician", "maria", full_name="Zoe Alvarez")
    make_user("staff", "mpolo", full_name="Marco Polo")
    make_user("staff", "omar", full_name="Omar Marsh")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("mar", ["maria", "mpolo"]),  # username or full name starts with it
        ("MAR", ["maria", "mpolo"]),  # whatever the case
        ("  mar  ", ["maria", "mpolo"]),
        ("zoe", ["maria"]),
        ("ar", []),  # a prefix, not a substring
        ("nobody", []),
    ],
)
def test_user_list_search_by_start_of_username_or_name(admin, searchable, query, expected):
    response = admin.get("/admin/users/", query_string={"q": query})
    assert response.status_code == 200
    assert listed_usernames(response) == expected


def test_user_list_search_and_status_filter_combine(app, admin, searchable):
    update_user_row(app, user_id_by_name(app, "maria"), active=False)
    assert listed_usernames(admin.get("/admin/users/?q=mar")) == ["mpolo"]
    assert listed_usernames(admin.get("/admin/users/?q=mar&show=all")) == ["maria", "mpolo"]


def test_user_list_keeps_search_and_filter_when_sorting(admin, searchable):
    body = admin.get("/admin/users/?q=mar&show=all").get_data(as_text=True)
    sort_link = re.search(r'<a href="([^"]*sort=name[^"]*)"', body)
    assert sort_link
    args = parse_qs(urlsplit(html.unescape(sort_link.group(1))).query)
    assert args["q"] == ["mar"]
    assert args["show"] == ["all"]


def test_user_search_takes_underscore_and_percent_literally(admin, make_user):
    make_user("clinician", "dr_who", full_name="Who Doctor")
    make_user("clinician", "drew", full_name="Drew Carey")
    assert listed_usernames(admin.get("/admin/users/", query_string={"q": "dr_"})) == ["dr_who"]
    assert listed_usernames(admin.get("/admin/users/", query_string={"q": "%"})) == []


# --- creating users ----------------------------------------------------------------------


def test_new_user_page_offers_roles_and_sites(admin, site):
    response = admin.get("/admin/users/new")
    assert response.status_code == 200
    body = text_of(response)
    for label in ("Username", "Full name", "Role", "Sites", "Temporary password"):
        assert label in body
    assert input_tag(response, "sites", str(site))
    assert "MAIN — Main Street Clinic" in body


def test_admin_creates_user_who_must_change_password_at_first_sign_in(app, admin, site):
    response = admin.submit("/admin/users/new", new_user_form(site, username="MLopez"))

    user_id = user_id_by_name(app, "mlopez")  # usernames are kept in lower case
    assert user_id is not None
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/users/{user_id}"
    user = load_user(app, user_id)
    assert user.full_name == "Maria Lopez"
    assert user.email == "maria@example.org"
    assert user.role == Role.CLINICIAN
    assert user.is_prescriber
    assert user.site_ids == {site}
    assert user.must_change_password
    assert user.active

    detail = admin.get(response.headers["Location"])
    body = text_of(detail)
    assert "User mlopez created. They must change the password at first login." in body
    assert "must change password" in body
    assert "Main Street Clinic" in body


def test_new_user_signs_in_and_is_sent_to_change_the_temporary_password(app, admin, site):
    admin.submit("/admin/users/new", new_user_form(site))
    newcomer = signed_in(app, "mlopez", NEW_PASSWORD)
    response = newcomer.get("/account")
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/password"


def test_administrator_with_all_sites_needs_no_site(app, admin):
    response = admin.submit(
        "/admin/users/new",
        new_user_form(
            0, username="chief", role="admin", is_prescriber=None, sites=None, all_sites="y"
        ),
    )
    assert response.status_code == 302, field_error(response, "all_sites")
    user = load_user(app, user_id_by_name(app, "chief"))
    assert user.role == Role.ADMIN
    assert user.all_sites
    assert user.site_ids == set()


BAD_NEW_USERS = {
    "duplicate username in other case": (
        {"username": "Maria"},
        "username",
        "That username is taken.",
    ),
    "username with a space": (
        {"username": "maria lopez"},
        "username",
        "Use 2 to 64 letters, digits, dots, dashes or underscores.",
    ),
    "username with an at sign": (
        {"username": "maria@clinic"},
        "username",
        "Use 2 to 64 letters, digits, dots, dashes or underscores.",
    ),
    "one-letter username": ({"username": "m"}, "username", "between 2 and 64"),
    "no username": ({"username": ""}, "username", "This field is required."),
    "short password": ({"password": "short"}, "password", "between 12 and 128"),
    "guessable password": ({"password": "password1234"}, "password", "passphrase"),
    "password containing the username": (
        {"password": "mlopez-likes-violet-tractors"},
        "password",
        "Do not include your username.",
    ),
    "prescriber who is not a clinician": (
        {"role": "staff", "is_prescriber": "y"},
        "is_prescriber",
        "Only clinicians can be prescribers.",
    ),
    "no site chosen": ({"sites": None}, "sites", "Choose at least one site."),
    "all sites for a clinician": (
        {"all_sites": "y", "sites": None},
        "all_sites",
        "Only administrators can work at all sites.",
    ),
    "a role that does not exist": ({"role": "superuser"}, "role", "Not a valid choice"),
    "a site that does not exist": ({"sites": [99999]}, "sites", "not a valid choice"),
    "a site that is not a number": ({"sites": ["north"]}, "sites", "could not be coerced"),
    "no full name": ({"full_name": "   "}, "full_name", "This field is required."),
}


@pytest.mark.parametrize(
    ("changes", "field", "message"), BAD_NEW_USERS.values(), ids=BAD_NEW_USERS.keys()
)
def test_new_user_with_bad_input_shows_the_problem_next_to_the_field_and_saves_nothing(
    app, admin, make_user, site, changes, field, message
):
    make_user("staff", "maria", full_name="The First Maria")  # takes the name "maria"
    before = user_count(app)

    response = admin.submit("/admin/users/new", new_user_form(site, **changes))

    assert response.status_code == 200
    assert message.lower() in field_error(response, field).lower()
    assert user_count(app) == before
    # What the administrator typed is still there (except the password).
    if "full_name" not in changes:
        assert 'value="Maria Lopez"' in input_tag(response, "full_name")
    assert 'value="maria@example.org"' in input_tag(response, "email")
    assert NEW_PASSWORD not in response.get_data(as_text=True)
    assert "password1234" not in response.get_data(as_text=True)


def test_new_user_form_keeps_role_and_site_choices_after_an_error(app, admin, site, other_site):
    response = admin.submit(
        "/admin/users/new", new_user_form(site, username="bad name", sites=[other_site])
    )
    assert response.status_code == 200
    assert field_error(response, "username") == (
        "Use 2 to 64 letters, digits, dots, dashes or underscores."
    )
    assert selected_option(response, "role") == "clinician"
    assert "checked" in input_tag(response, "sites", str(other_site))
    assert "checked" not in input_tag(response, "sites", str(site))
    assert "checked" in input_tag(response, "is_prescriber")
    assert 'value="bad name"' in input_tag(response, "username")


def test_expired_new_user_form_is_shown_again_with_input_and_saves_nothing(app, admin, site):
    data = new_user_form(site)
    data["csrf_token"] = "expired-or-forged"
    response = admin.post("/admin/users/new", data=data)
    assert response.status_code == 400
    assert "The form had expired, so nothing was saved." in text_of(response)
    assert 'value="Maria Lopez"' in input_tag(response, "full_name")
    assert user_id_by_name(app, "mlopez") is None


# --- editing users -----------------------------------------------------------------------


def test_edit_form_shows_the_users_current_details(app, admin, make_user, site, other_site):
    user_id = make_user(
        "clinician",
        "nina",
        full_name="Nina Simone",
        is_prescriber=True,
        email="nina@example.org",
        site_ids=[other_site],
    )
    response = admin.get(f"/admin/users/{user_id}/edit")
    assert response.status_code == 200
    assert 'value="Nina Simone"' in input_tag(response, "full_name")
    assert 'value="nina@example.org"' in input_tag(response, "email")
    assert selected_option(response, "role") == "clinician"
    assert "checked" in input_tag(response, "is_prescriber")
    assert "checked" in input_tag(response, "sites", str(other_site))
    assert "checked" not in input_tag(response, "sites", str(site))
    assert input_tag(response, "username") == ""  # a username never changes
    assert input_tag(response, "password") == ""


def test_admin_changes_role_sites_and_prescriber_flag(app, admin, make_user, site, other_site):
    user_id = make_user("clinician", "nina", full_name="Nina Simone", is_prescriber=True)
    url = f"/admin/users/{user_id}/edit"

    response = admin.submit(
        url,
        edit_form(
            app,
            user_id,
            full_name="Nina S. Waymon",
            role="staff",
            is_prescriber=None,
            sites=[other_site],
        ),
    )

    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/users/{user_id}"
    user = load_user(app, user_id)
    assert user.full_name == "Nina S. Waymon"
    assert user.role == Role.STAFF
    assert not user.is_prescriber
    assert user.site_ids == {other_site}
    assert "Saved." in text_of(admin.get(response.headers["Location"]))


def test_admin_makes_a_clinician_a_prescriber(app, admin, make_user):
    user_id = make_user("clinician", "nina")
    url = f"/admin/users/{user_id}/edit"
    response = admin.submit(url, edit_form(app, user_id, is_prescriber="y"))
    assert response.status_code == 302
    assert load_user(app, user_id).is_prescriber


def test_admin_gives_a_user_a_second_site(app, admin, make_user, site, other_site):
    user_id = make_user("staff", "sam")
    url = f"/admin/users/{user_id}/edit"
    response = admin.submit(url, edit_form(app, user_id, sites=[site, other_site]))
    assert response.status_code == 302
    assert load_user(app, user_id).site_ids == {site, other_site}


def test_saving_an_unchanged_user_says_nothing_changed(app, admin, make_user):
    user_id = make_user("staff", "sam")
    url = f"/admin/users/{user_id}/edit"
    response = admin.submit(url, edit_form(app, user_id), follow_redirects=True)
    assert "Nothing changed." in text_of(response)


def test_prescriber_flag_must_go_when_a_clinician_becomes_staff(app, admin, make_user):
    user_id = make_user("clinician", "nina", is_prescriber=True)
    url = f"/admin/users/{user_id}/edit"
    response = admin.submit(url, edit_form(app, user_id, role="staff"))
    assert response.status_code == 200
    assert field_error(response, "is_prescriber") == "Only clinicians can be prescribers."
    assert load_user(app, user_id).role == Role.CLINICIAN


def test_edit_refuses_a_user_without_sites(app, admin, make_user):
    user_id = make_user("staff", "sam", full_name="Sam Smith")
    url = f"/admin/users/{user_id}/edit"
    response = admin.submit(url, edit_form(app, user_id, sites=None, full_name="Sam Jones"))
    assert response.status_code == 200
    assert field_error(response, "sites") == "Choose at least one site."
    assert 'value="Sam Jones"' in input_tag(response, "full_name")
    assert load_user(app, user_id).full_name == "Sam Smith"  # nothing saved half-way


def test_role_change_signs_the_user_out_everywhere(app, admin, make_user, username_of):
    user_id = make_user("clinician", "nina")
    nina = signed_in(app, "nina")
    admin.submit(f"/admin/users/{user_id}/edit", edit_form(app, user_id, role="staff"))
    assert is_signed_out(nina)


def test_edit_of_unknown_user_is_not_found(admin):
    assert admin.get("/admin/users/99999").status_code == 404
    assert admin.get("/admin/users/99999/edit").status_code == 404
    assert admin.get("/admin/users/99999/deactivate").status_code == 404


# --- confirmation pages --------------------------------------------------------------------


@pytest.fixture
def locked_mfa_user(app, make_user) -> int:
    """A user with a live session, a failed sign-in count, a lock and two-step
    verification: every action would change something."""
    user_id = make_user("staff", "sam")
    signed_in(app, "sam")
    with app.app_context():
        user = db.session.get(User, user_id)
        user.failed_logins = 3
        user.locked_until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
        user.mfa_secret = pyotp.random_base32()
        user.mfa_enabled_at = dt.datetime.now(dt.UTC)
        user.recovery_codes.append(RecoveryCode(code_hash="0" * 64))
        db.session.commit()
    return user_id


@pytest.mark.parametrize("action", ACTIONS)
def test_action_pages_only_ask_for_confirmation(app, admin, locked_mfa_user, action):
    url = f"/admin/users/{locked_mfa_user}/{action}"
    before = load_user(app, locked_mfa_user)
    with app.app_context():
        sessions_before = len(user_sessions.live_sessions(db.session.get(User, locked_mfa_user)))

    response = admin.get(url)

    assert response.status_code == 200
    body = text_of(response)
    assert '<form method="post">' in body
    assert 'name="csrf_token"' in body
    assert f'href="/admin/users/{locked_mfa_user}">Cancel</a>' in body
    assert "sam" in body
    assert load_user(app, locked_mfa_user) == before
    with app.app_context():
        assert (
            len(user_sessions.live_sessions(db.session.get(User, locked_mfa_user)))
            == sessions_before
        )


def test_deactivate_confirmation_explains_what_happens(admin, make_user):
    user_id = make_user("staff", "sam", full_name="Sam Smith")
    body = text_of(admin.get(f"/admin/users/{user_id}/deactivate"))
    assert "Deactivate: Sam Smith (sam)" in body
    assert "They are signed out at once and can no longer sign in." in body
    assert re.search(
        r'<button type="submit" class="[^"]*btn-danger[^"]*">Deactivate</button>', body
    )


def test_action_without_security_token_does_nothing(app, admin, make_user):
    user_id = make_user("staff", "sam")
    response = admin.post(f"/admin/users/{user_id}/deactivate", data={"csrf_token": "forged"})
    assert response.status_code == 400
    assert "The form had expired, so nothing was saved." in text_of(response)
    assert load_user(app, user_id).active


def test_unknown_action_is_not_found(admin, make_user):
    user_id = make_user("staff", "sam")
    assert admin.get(f"/admin/users/{user_id}/delete").status_code == 404


# --- deactivate and reactivate -------------------------------------------------------------


def test_admin_deactivates_a_user_who_is_signed_out_and_cannot_sign_in(app, admin, make_user):
    user_id = make_user("staff", "sam")
    sam = signed_in(app, "sam")

    response = act(admin, user_id, "deactivate")

    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/users/{user_id}"
    assert not load_user(app, user_id).active
    assert is_signed_out(sam)
    failed = login(app.test_client(), "sam")
    assert failed.status_code == 200
    assert "Invalid username or password." in text_of(failed)
    detail = text_of(admin.get(f"/admin/users/{user_id}"))
    assert "Deactivate: done for sam." in detail
    assert "Deactivated" in detail
    assert "sam" not in listed_usernames(admin.get("/admin/users/"))
    assert "sam" in listed_usernames(admin.get("/admin/users/?show=inactive"))


def test_admin_reactivates_a_user_who_can_sign_in_again(app, admin, make_user):
    user_id = make_user("staff", "sam")
    act(admin, user_id, "deactivate")

    response = act(admin, user_id, "reactivate")

    assert response.status_code == 302
    assert load_user(app, user_id).active
    assert login(app.test_client(), "sam").status_code == 302
    assert "Reactivate: done for sam." in text_of(admin.get(f"/admin/users/{user_id}"))


def test_admin_cannot_deactivate_themselves(app, admin):
    me = admin.user_id
    detail = text_of(admin.get(f"/admin/users/{me}"))
    assert f"/admin/users/{me}/deactivate" not in detail  # not offered

    response = act(admin, me, "deactivate")

    assert response.status_code == 302
    assert load_user(app, me).active
    assert "You cannot deactivate yourself." in text_of(admin.get(response.headers["Location"]))
    assert admin.get("/admin/users/").status_code == 200  # still signed in


def test_admin_cannot_demote_themselves(app, admin, site):
    me = admin.user_id
    response = admin.submit(
        f"/admin/users/{me}/edit",
        edit_form(app, me, role="clinician", all_sites=None, sites=[site]),
    )
    assert response.status_code == 200
    assert field_error(response, "role") == "You cannot change your own role."
    assert load_user(app, me).role == Role.ADMIN


def test_admin_can_demote_another_admin_while_one_remains(app, admin, make_user):
    other = make_user("admin", "deputy")
    response = admin.submit(f"/admin/users/{other}/edit", edit_form(app, other, role="staff"))
    assert response.status_code == 302
    assert load_user(app, other).role == Role.STAFF


def test_admin_can_deactivate_another_admin_while_one_remains(app, admin, make_user):
    other = make_user("admin", "deputy")
    assert act(admin, other, "deactivate").status_code == 302
    assert not load_user(app, other).active


@pytest.fixture
def two_admins_one_gone(app, make_user):
    """``last`` is the only active administrator; ``gone`` was one and is deactivated."""
    last = make_user("admin", "last-admin")
    gone = make_user("admin", "gone-admin")
    with app.app_context():
        services.deactivate_user(db.session.get(User, gone), actor=db.session.get(User, last))
        db.session.commit()
    return SimpleNamespace(last=last, gone=gone)


def test_last_active_administrator_cannot_be_demoted(app, two_admins_one_gone, site):
    with app.app_context():
        last = db.session.get(User, two_admins_one_gone.last)
        other = db.session.get(User, two_admins_one_gone.gone)
        with pytest.raises(DomainError, match="last active administrator"):
            services.update_user(
                last,
                actor=other,
                full_name=last.full_name,
                email=None,
                role=Role.CLINICIAN,
                sites=[db.session.get(Site, site)],
                is_prescriber=False,
                all_sites=False,
            )
        db.session.rollback()
    assert load_user(app, two_admins_one_gone.last).role == Role.ADMIN


def test_last_active_administrator_cannot_be_deactivated(app, two_admins_one_gone):
    with app.app_context():
        last = db.session.get(User, two_admins_one_gone.last)
        other = db.session.get(User, two_admins_one_gone.gone)
        with pytest.raises(DomainError, match="last active administrator"):
            services.deactivate_user(last, actor=other)
        db.session.rollback()
    assert load_user(app, two_admins_one_gone.last).active


def test_last_administrator_may_still_have_their_name_changed(app, two_admins_one_gone, site):
    with app.app_context():
        last = db.session.get(User, two_admins_one_gone.last)
        changed = services.update_user(
            last,
            actor=db.session.get(User, two_admins_one_gone.gone),
            full_name="Renamed Admin",
            email=None,
            role=Role.ADMIN,
            sites=[db.session.get(Site, site)],
            is_prescriber=False,
            all_sites=False,
        )
        db.session.commit()
    assert changed == ["full_name"]
    assert load_user(app, two_admins_one_gone.last).full_name == "Renamed Admin"


# --- reset password, unlock, two-step verification, sessions -------------------------------


def test_reset_password_shows_a_temporary_password_once_that_must_be_changed(app, admin, make_user):
    user_id = make_user("clinician", "nina", full_name="Nina Simone")
    nina = signed_in(app, "nina")

    response = act(admin, user_id, "reset-password")

    assert response.status_code == 200
    temporary = temporary_password(response)
    assert len(temporary) >= 12
    assert "Temporary password for nina" in text_of(response)
    # Only this once: the user's page does not show it again.
    assert temporary not in text_of(admin.get(f"/admin/users/{user_id}"))
    assert load_user(app, user_id).must_change_password

    # Their sessions ended and the old password stopped working.
    assert is_signed_out(nina)
    assert login(app.test_client(), "nina", PASSWORD).status_code == 200

    # The temporary password works, but only to choose a new one.
    nina = signed_in(app, "nina", temporary)
    for page in ("/account", "/admin/users/", f"/admin/users/{user_id}"):
        response = nina.get(page)
        assert response.status_code == 302, page
        assert response.headers["Location"] == "/account/password", page
    change = nina.get("/account/password", follow_redirects=True)
    assert "You signed in with a temporary password." in text_of(change)

    response = nina.submit(
        "/account/password",
        {
            "current_password": temporary,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302
    assert nina.get("/account").status_code == 200
    assert not load_user(app, user_id).must_change_password
    assert login(app.test_client(), "nina", NEW_PASSWORD).status_code == 302


def test_reset_password_also_unlocks_the_account(app, admin, make_user):
    user_id = make_user("staff", "sam")
    update_user_row(app, user_id, locked_until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10))
    temporary = temporary_password(act(admin, user_id, "reset-password"))
    assert login(app.test_client(), "sam", temporary).status_code == 302


def test_admin_unlocks_a_user_locked_out_by_failed_sign_ins(app, admin, make_user):
    user_id = make_user("staff", "sam")
    stranger = app.test_client()
    for _ in range(app.config["LOGIN_LOCKOUT_FAILURES"]):
        login(stranger, "sam", "not the password at all")
    assert load_user(app, user_id).locked_until is not None
    assert login(app.test_client(), "sam").status_code == 200  # locked: right password fails

    detail = text_of(admin.get(f"/admin/users/{user_id}"))
    assert "Locked until" in detail
    assert f"/admin/users/{user_id}/unlock" in detail

    response = act(admin, user_id, "unlock")

    assert response.status_code == 302
    user = load_user(app, user_id)
    assert user.locked_until is None
    assert user.failed_logins == 0
    assert "Unlock: done for sam." in text_of(admin.get(f"/admin/users/{user_id}"))
    assert login(app.test_client(), "sam").status_code == 302


def test_admin_resets_two_step_verification_of_a_user_who_lost_their_phone(app, admin, make_user):
    user_id = make_user("staff", "sam")
    with app.app_context():
        user = db.session.get(User, user_id)
        user.mfa_secret = pyotp.random_base32()
        user.mfa_enabled_at = dt.datetime.now(dt.UTC)
        user.recovery_codes.append(RecoveryCode(code_hash="0" * 64))
        db.session.commit()
    before = login(app.test_client(), "sam")
    assert before.headers["Location"].startswith("/login/verify")
    assert f"/admin/users/{user_id}/reset-mfa" in text_of(admin.get(f"/admin/users/{user_id}"))

    response = act(admin, user_id, "reset-mfa")

    assert response.status_code == 302
    user = load_user(app, user_id)
    assert user.mfa_secret is None
    assert user.mfa_enabled_at is None
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.count(RecoveryCode.id)).where(RecoveryCode.user_id == user_id)
            )
            == 0
        )
    after = login(app.test_client(), "sam")
    assert after.status_code == 302
    assert after.headers["Location"] == "/"


def test_admin_ends_all_sessions_of_a_user(app, admin, make_user):
    user_id = make_user("staff", "sam")
    sam = signed_in(app, "sam")
    detail = admin.get(f"/admin/users/{user_id}").get_data(as_text=True)
    assert re.search(r"Live sessions</dt>\s*<dd[^>]*>1<", detail)
    assert act(admin, user_id, "end-sessions").status_code == 302
    assert is_signed_out(sam)
    assert load_user(app, user_id).active


# --- site scoping ----------------------------------------------------------------------------


@pytest.fixture
def two_sites(app, make_user, site, other_site):
    """Users at MAIN, at NORTH and at both; ids by username."""
    return SimpleNamespace(
        main=site,
        north=other_site,
        main_staff=make_user("staff", "main-staff", site_ids=[site]),
        north_staff=make_user("staff", "north-staff", site_ids=[other_site]),
        both_staff=make_user("staff", "both-staff", site_ids=[site, other_site]),
    )


@pytest.fixture
def site_admin(client_as, site):
    """An administrator who works only at MAIN."""
    return client_as("admin", username="main-admin", site_ids=[site])


def test_site_admin_sees_only_users_of_their_sites(site_admin, two_sites):
    response = site_admin.get("/admin/users/?show=all")
    assert listed_usernames(response) == ["both-staff", "main-admin", "main-staff"]
    assert listed_usernames(site_admin.get("/admin/users/?q=north")) == []


def test_organisation_wide_admin_sees_everyone(admin, site_admin, two_sites):
    response = admin.get("/admin/users/?show=all")
    assert listed_usernames(response) == [
        "boss",
        "both-staff",
        "main-admin",
        "main-staff",
        "north-staff",
    ]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("GET", "/edit"),
        ("POST", "/edit"),
        *[(m, f"/{a}") for a in ACTIONS for m in ("GET", "POST")],
    ],
)
def test_site_admin_gets_not_found_for_users_of_other_sites(
    app, site_admin, two_sites, method, path
):
    user_id = two_sites.north_staff
    before = load_user(app, user_id)
    url = f"/admin/users/{user_id}{path}"
    if method == "GET":
        response = site_admin.get(url)
    else:
        data = {"csrf_token": site_admin.csrf_token("/admin/users/")}
        if path == "/edit":
            data |= edit_form(app, user_id, role="admin", sites=[two_sites.main])
        response = site_admin.post(url, data=data)
    assert response.status_code == 404
    assert "north-staff" not in text_of(response)
    assert load_user(app, user_id) == before


def test_site_admin_manages_a_user_of_their_own_site(app, site_admin, two_sites):
    assert site_admin.get(f"/admin/users/{two_sites.main_staff}").status_code == 200
    assert act(site_admin, two_sites.main_staff, "deactivate").status_code == 302
    assert not load_user(app, two_sites.main_staff).active


def test_site_admin_sees_but_cannot_change_a_user_who_also_works_elsewhere(
    app, site_admin, two_sites
):
    """The whole rule, every action and page, is in tests/test_accounts_takeover.py."""
    detail = site_admin.get(f"/admin/users/{two_sites.both_staff}")
    assert detail.status_code == 200
    assert "North Clinic" in text_of(detail)
    assert act(site_admin, two_sites.both_staff, "deactivate").status_code == 302
    assert load_user(app, two_sites.both_staff).active


def test_site_admin_is_offered_only_their_own_sites(site_admin, two_sites):
    for url in ("/admin/users/new", f"/admin/users/{two_sites.main_staff}/edit"):
        response = site_admin.get(url)
        assert input_tag(response, "sites", str(two_sites.main)), url
        assert input_tag(response, "sites", str(two_sites.north)) == "", url
        assert "North Clinic" not in text_of(response), url


def test_site_admin_cannot_create_a_user_at_another_site_with_a_forged_form(
    app, site_admin, two_sites
):
    before = user_count(app)
    for sites in ([two_sites.north], [two_sites.main, two_sites.north]):
        response = site_admin.submit("/admin/users/new", new_user_form(two_sites.main, sites=sites))
        assert response.status_code == 200
        # A site not offered is not a choice of the form (the service refuses it too:
        # test_site_admin_assigns_only_their_own_sites_whatever_the_caller).
        assert field_error(response, "sites") == (
            f"'{two_sites.north}' is not a valid choice for this field."
        )
    assert user_count(app) == before


def test_site_admin_cannot_move_a_user_to_another_site_with_a_forged_form(
    app, site_admin, two_sites
):
    user_id = two_sites.main_staff
    response = site_admin.submit(
        f"/admin/users/{user_id}/edit", edit_form(app, user_id, sites=[two_sites.north])
    )
    assert response.status_code == 200
    assert field_error(response, "sites") == (
        f"'{two_sites.north}' is not a valid choice for this field."
    )
    assert load_user(app, user_id).site_ids == {two_sites.main}


def test_site_admin_cannot_create_an_organisation_wide_admin(app, site_admin, two_sites):
    response = site_admin.submit(
        "/admin/users/new",
        new_user_form(
            two_sites.main,
            username="chief",
            role="admin",
            is_prescriber=None,
            sites=None,
            all_sites="y",
        ),
    )
    assert response.status_code == 200
    assert field_error(response, "all_sites") == (
        "Only an organisation-wide administrator can grant all sites."
    )
    assert user_id_by_name(app, "chief") is None


def test_site_admin_edits_a_user_of_their_own_site(app, site_admin, two_sites):
    user_id = two_sites.main_staff
    response = site_admin.submit(
        f"/admin/users/{user_id}/edit",
        edit_form(app, user_id, full_name="Main Renamed", role="clinician"),
    )
    assert response.status_code == 302
    user = load_user(app, user_id)
    assert (user.full_name, user.role) == ("Main Renamed", Role.CLINICIAN)


def test_site_admin_cannot_give_themselves_all_sites(app, site_admin, two_sites):
    me = site_admin.user_id
    response = site_admin.submit(f"/admin/users/{me}/edit", edit_form(app, me, all_sites="y"))
    assert not load_user(app, me).all_sites
    assert response.status_code == 200
    assert field_error(response, "all_sites") == (
        "Only an organisation-wide administrator can grant all sites."
    )
    assert "north-staff" not in listed_usernames(site_admin.get("/admin/users/?show=all"))


def test_site_admin_changes_their_own_name(app, site_admin, two_sites):
    me = site_admin.user_id
    response = site_admin.submit(
        f"/admin/users/{me}/edit", edit_form(app, me, full_name="Mia Main")
    )
    assert response.status_code == 302
    assert load_user(app, me).full_name == "Mia Main"
    assert site_admin.get("/admin/users/").status_code == 200  # still signed in


# --- who may use these pages -----------------------------------------------------------------


def admin_pages(user_id: int) -> list[str]:
    return [
        "/admin/users/",
        "/admin/users/?show=all&sort=role",
        "/admin/users/new",
        f"/admin/users/{user_id}",
        f"/admin/users/{user_id}/edit",
        *[f"/admin/users/{user_id}/{a}" for a in ACTIONS],
    ]


@pytest.mark.parametrize("role", ["clinician", "staff"])
def test_clinicians_and_staff_are_refused_every_user_admin_page(app, client_as, make_user, role):
    target = make_user("staff", "target")
    client = client_as(role)
    for url in admin_pages(target):
        assert client.get(url).status_code == 403, url


@pytest.mark.parametrize("role", ["clinician", "staff"])
def test_clinicians_and_staff_cannot_change_users_by_posting_forms(
    app, client_as, make_user, site, role
):
    target = make_user("staff", "target")
    client = client_as(role)
    before = load_user(app, target)
    count = user_count(app)
    token = client.csrf_token("/login")
    posts = {
        "/admin/users/new": new_user_form(site),
        f"/admin/users/{target}/edit": edit_form(app, target, role="admin"),
        **{f"/admin/users/{target}/{a}": {} for a in ACTIONS},
    }
    for url, data in posts.items():
        response = client.post(url, data={**data, "csrf_token": token})
        assert response.status_code == 403, url
        assert "Temporary password" not in text_of(response)
    assert load_user(app, target) == before
    assert user_count(app) == count


def test_clinician_does_not_see_a_users_link(client_as):
    body = client_as("clinician").get("/").get_data(as_text=True)
    assert 'href="/admin/users/"' not in body


def test_admin_sees_a_users_link(admin):
    assert 'href="/admin/users/"' in admin.get("/").get_data(as_text=True)


def test_anonymous_visitor_is_sent_to_sign_in_first(client, make_user):
    target = make_user("staff", "target")
    for url in admin_pages(target):
        response = client.get(url)
        assert response.status_code == 302, url
        location = urlsplit(response.headers["Location"])
        assert location.path == "/login", url
        assert parse_qs(location.query)["next"] == [url], url


def test_anonymous_visitor_cannot_change_users(app, client, make_user):
    target = make_user("staff", "target")
    token = client.csrf_token("/login")
    for action in ACTIONS:
        response = client.post(f"/admin/users/{target}/{action}", data={"csrf_token": token})
        assert response.status_code == 401, action
    assert load_user(app, target).active


def test_deactivated_admin_loses_access_at_once(app, admin, make_user):
    deputy_id = make_user("admin", "deputy")
    deputy = signed_in(app, "deputy")
    assert deputy.get("/admin/users/").status_code == 200
    act(admin, deputy_id, "deactivate")
    response = deputy.get("/admin/users/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
