"""Patients from a real browser: registration through admission, and the duplicate warning."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from clinic.patients.common import format_day
from tests.conftest import PASSWORD


def sign_in(ui, username: str):
    page = ui.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    ui.check()
    return page


def sign_out(ui) -> None:
    page = ui.page
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    ui.check()


@pytest.fixture
def registrar(make_user, make_site, username_of, site):
    """A staff user of MAIN only (``one``), or of MAIN and EAST (``two``: the Site field
    is shown and chosen)."""

    def make(sites: str) -> str:
        if sites == "one":
            return username_of(make_user("staff"))
        return username_of(make_user("staff", site_ids=[site, make_site("EAST")]))

    return make


def load(ui, action) -> None:
    """Run ``action`` (a click or key press) and wait for the page it loads."""
    with ui.page.expect_navigation():
        action()


def check_collecting(ui, problems: list[str]) -> None:
    """ui.check(), but an axe failure is collected (and the page counted as checked) so
    the rest of the flow is still exercised; the test asserts ``problems`` at the end."""
    try:
        ui.check()
    except AssertionError as failure:
        problems.append(str(failure))
        ui.unchecked.clear()


def fill_registration(page, first: str, last: str, born: str) -> None:
    site = page.get_by_label("Site")
    if site.count():
        site.select_option(label="MAIN — Main Street Clinic")
    page.get_by_label("First name").fill(first)
    page.get_by_label("Last name").fill(last)
    page.get_by_label("Date of birth").fill(born)
    page.get_by_label("Sex at birth").select_option("female")
    page.get_by_label("Primary substance").select_option("fentanyl")


@pytest.mark.parametrize(
    "sites",
    ["one", "two"],
)
def test_staff_registers_and_clinician_admits_from_the_keyboard(
    ui, make_user, make_program, username_of, registrar, sites
):
    make_program("Methadone maintenance")
    staff = registrar(sites)
    clinician = username_of(make_user("clinician"))

    # Staff registers the patient.
    page = sign_in(ui, staff)
    ui.goto("/patients/new")
    expect(page.get_by_role("heading", name="Register a patient")).to_be_visible()
    fill_registration(page, "Ana", "Torres", "1991-07-14")
    load(ui, lambda: page.get_by_label("Last name").press("Enter"))  # submits from the keyboard
    ui.check()
    expect(page.get_by_text(re.compile(r"Registered Ana Torres, MRN MAIN-\d+"))).to_be_visible()
    expect(page.get_by_text("Torres, Ana")).to_be_visible()
    expect(page.get_by_text("Not enrolled in any program yet.")).to_be_visible()
    sign_out(ui)

    # A clinician finds her by the starts of her names and admits her.
    page = sign_in(ui, clinician)
    ui.goto("/patients/")
    search = page.get_by_label("Find by name, MRN or date of birth")
    search.fill("tor an")
    load(ui, lambda: search.press("Enter"))  # one match: her chart opens
    ui.check()
    expect(page.get_by_test_id("patient-name")).to_have_text("Torres, Ana")
    load(ui, lambda: page.get_by_role("link", name="Admit to a program").click())
    ui.check()
    expect(page.get_by_role("heading", name="Admit to a program")).to_be_visible()
    page.get_by_label("Program").select_option(
        label="Methadone maintenance (Methadone maintenance (OTP))"
    )
    page.get_by_label("Level of care (ASAM)").select_option(label="OTP (ASAM 3rd ed.)")
    admitted = dt.date.fromisoformat(page.get_by_label("Admission date").input_value())
    load(ui, lambda: page.get_by_role("button", name="Admit").click())
    ui.check()

    expect(page.get_by_text("Admitted to Methadone maintenance.")).to_be_visible()
    summary = page.locator("dd").first
    expect(summary).to_contain_text("Methadone maintenance — OTP (ASAM 3rd ed.)")
    due = format_day(admitted + dt.timedelta(days=14))
    enrollments = page.get_by_role("table")
    expect(enrollments.get_by_text("Active")).to_be_visible()
    for name in ("Medical examination", "Psychosocial assessment", "Initial care plan"):
        expect(
            enrollments.get_by_text(re.compile(rf"{name}: due in 14 days \({due}\)"))
        ).to_be_visible()


def test_search_results_tell_two_people_apart(
    ui, make_user, make_patient, make_program, make_enrollment, make_site, username_of
):
    east = make_site("EAST")
    born = dt.date(1991, 7, 30)
    make_patient("Ana", "Torres", date_of_birth=born, phone="+13125550147")
    make_patient(
        "Ana",
        "Torres",
        date_of_birth=born,
        site_id=east,
        sex_at_birth="male",
        phone="+17735550199",
    )
    make_enrollment(make_patient("Jo", "Smith"), make_program("Methadone maintenance"))
    page = sign_in(ui, username_of(make_user("admin", all_sites=True)))
    ui.goto("/patients/")
    search = page.get_by_label("Find by name, MRN or date of birth")
    search.fill("torres")
    load(ui, lambda: search.press("Enter"))
    ui.check()
    rows = page.get_by_test_id("patient-row")
    expect(rows).to_have_count(2)
    today = dt.datetime.now(ZoneInfo("America/Chicago")).date()  # the site's day
    age = today.year - 1991 - ((today.month, today.day) < (7, 30))
    expect(rows.nth(0)).to_contain_text(f"30 Jul 1991 ({age})")
    expect(rows.nth(0)).to_contain_text("Female")
    expect(rows.nth(0)).to_contain_text("MAIN")
    expect(rows.nth(0)).to_contain_text("…0147")
    expect(rows.nth(0)).to_contain_text("Not enrolled")
    expect(rows.nth(1)).to_contain_text("Male")
    expect(rows.nth(1)).to_contain_text("EAST")
    expect(rows.nth(1)).to_contain_text("…0199")

    # One match opens the chart; none offers to register what was typed.
    search = page.get_by_label("Find by name, MRN or date of birth")
    search.fill("smi")
    load(ui, lambda: search.press("Enter"))
    ui.check()
    expect(page.get_by_test_id("patient-name")).to_have_text("Smith, Jo")
    ui.goto("/patients/?q=maria+lopez")
    ui.check()
    load(ui, lambda: page.get_by_role("link", name=re.compile("Register “maria lopez”")).click())
    ui.check()
    expect(page.get_by_label("First name")).to_have_value("Maria")
    expect(page.get_by_label("Last name")).to_have_value("Lopez")


@pytest.mark.parametrize(
    "sites",
    [
        "one",
        "two",
    ],
)
def test_duplicate_warning_then_confirmed_registration(ui, make_patient, registrar, sites):
    make_patient("Jo", "Smith", date_of_birth=dt.date(1980, 4, 2))
    page = sign_in(ui, registrar(sites))
    ui.goto("/patients/new")
    fill_registration(page, "Jo", "Smith", "1980-04-02")
    load(ui, lambda: page.get_by_role("button", name="Register").click())
    axe_problems: list[str] = []
    check_collecting(ui, axe_problems)
    warning = page.get_by_test_id("duplicates")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("Possible duplicate.")
    expect(warning.get_by_role("link", name="Smith, Jo")).to_be_visible()
    # Nothing was saved, and the input is kept.
    expect(page.get_by_label("First name")).to_have_value("Jo")
    page.get_by_label("I checked: this is a different person").check()
    load(ui, lambda: page.get_by_role("button", name="Register").click())
    check_collecting(ui, axe_problems)
    expect(page.get_by_text(re.compile(r"Registered Jo Smith, MRN MAIN-\d+"))).to_be_visible()
    ui.goto("/patients/?q=smi jo")
    expect(page.get_by_role("link", name="Smith, Jo")).to_have_count(2)
    assert not axe_problems, "\n".join(axe_problems)


def test_a_duplicate_at_another_site_shows_site_and_mrn_and_the_chart_opens_aside(
    ui, make_site, make_patient, registrar
):
    """Issue 9: the warning covers every site (site and MRN only for a patient the user
    may not open); the chart of a visible match opens in a new tab, so the registration
    typed so far stays where it was."""
    make_patient("Jo", "Smith", date_of_birth=dt.date(1980, 4, 2))
    make_patient(
        "Jo", "Smith", site_id=make_site("WEST", "West Clinic"), date_of_birth=dt.date(1980, 4, 2)
    )
    page = sign_in(ui, registrar("one"))
    ui.goto("/patients/new")
    fill_registration(page, "Jo", "Smith", "1980-04-02")
    page.get_by_label("City").fill("Springfield")
    load(ui, lambda: page.get_by_role("button", name="Register").click())
    ui.check()
    warning = page.get_by_test_id("duplicates")
    expect(warning.get_by_test_id("duplicate-elsewhere")).to_have_text(
        re.compile(r"At another site: WEST — West Clinic, MRN WEST-\d+")
    )
    with page.context.expect_page() as chart_tab:
        warning.get_by_role("link", name="Smith, Jo").click()
    chart = chart_tab.value
    chart.wait_for_load_state()
    expect(chart.get_by_text(re.compile(r"MRN\s+MAIN-\d+"))).to_be_visible()
    chart.close()
    # The form is still there, filled in; confirming registers the new patient.
    expect(page.get_by_label("City")).to_have_value("Springfield")
    page.get_by_label("I checked: this is a different person").check()
    load(ui, lambda: page.get_by_role("button", name="Register").click())
    ui.check()
    expect(page.get_by_text(re.compile(r"Registered Jo Smith, MRN MAIN-\d+"))).to_be_visible()
