"""Signing in from a real browser: each role sees only its own navigation."""

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

# The links in the main navigation each role should see; later features add theirs.
NAVIGATION = {
    "admin": [
        "Patients",
        "Deadlines",
        "Dosing",
        "Tests due",
        "Call-backs",
        "Take-home reviews",
        "Aftercare directory",
        "Referrals",
        "Reports",
        "Programs",
        "Site calendar",
        "Users",
        "Drafts to reassign",
        "Audit trail",
        "Emergency-access review",
    ],
    "clinician": [
        "Patients",
        "Deadlines",
        "My day",
        "My caseload",
        "Dosing",
        "Tests due",
        "Call-backs",
        "Take-home reviews",
        "Aftercare directory",
        "Emergency access",
    ],
    "staff": [
        "Patients",
        "Deadlines",
        "Tests due",
        "Call-backs",
        "Aftercare directory",
        "Referrals",
    ],
}


@pytest.mark.parametrize("role", sorted(NAVIGATION))
def test_each_role_signs_in_and_sees_only_its_navigation(ui, make_user, username_of, role):
    username = username_of(make_user(role))
    page = ui.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")  # from the keyboard
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    ui.check()
    links = page.get_by_test_id("role-nav").get_by_role("link").all_inner_texts()
    assert [link.strip() for link in links] == NAVIGATION[role]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    ui.check()


def test_admin_creates_a_user_from_the_browser(ui, make_user, username_of):
    admin = username_of(make_user("admin"))
    page = ui.goto("/login")
    page.get_by_label("Username").fill(admin)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    ui.check()
    ui.goto("/admin/users/")
    page.get_by_role("link", name="New user").click()
    ui.check()
    page.get_by_label("Username").fill("dan.miller")
    page.get_by_label("Full name").fill("Dan Miller")
    page.get_by_label("Role").select_option("clinician")
    page.get_by_label("MAIN — Main Street Clinic").check()
    page.get_by_label("Temporary password").fill("short")
    page.get_by_role("button", name="Create user").click()
    ui.check()
    # Bad input: a message by the field, the other input kept.
    expect(page.get_by_text("Field must be between 12 and 128 characters long.")).to_be_visible()
    expect(page.get_by_label("Full name")).to_have_value("Dan Miller")
    page.get_by_label("Temporary password").fill("river lantern oboe thicket")
    page.get_by_role("button", name="Create user").click()
    ui.check()
    expect(page.get_by_role("heading", name="Dan Miller")).to_be_visible()


def test_site_admin_sees_a_user_of_two_sites_but_is_offered_no_change(
    ui, make_user, make_site, site, username_of
):
    """An administrator of MAIN looking at a clinician of MAIN and EAST: the page says why
    nothing can be changed, and a hand-typed edit address brings them back with the reason."""
    east = make_site("EAST", "East Clinic")
    main_admin = username_of(make_user("admin", site_ids=[site]))
    dana = make_user("clinician", "dana", full_name="Dana Dual", site_ids=[site, east])
    page = ui.goto("/login")
    page.get_by_label("Username").fill(main_admin)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    ui.check()
    ui.goto("/admin/users/")
    page.get_by_role("link", name="dana").click()
    ui.check()
    expect(page.get_by_role("heading", name="Dana Dual")).to_be_visible()
    expect(page.get_by_text("You can see this account but not change it")).to_be_visible()
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    expect(page.get_by_role("link", name="Reset password")).to_have_count(0)
    ui.goto(f"/admin/users/{dana}/edit")
    expect(page).to_have_url(f"{ui.base_url}/admin/users/{dana}")
    expect(
        page.get_by_text("Only an organisation-wide administrator can change this account")
    ).to_be_visible()
