"""The dosing window from a real browser, keyboard only: find a patient by the starts of
the names, confirm the date of birth, record the dose with Enter; the list refreshes as
the filter is typed without losing what was typed. Every page passes axe."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from clinic.extensions import db
from clinic.sites.models import Site
from clinic.sites.time import site_today
from tests.browser.test_patients_browser import load, sign_in


@pytest.fixture
def dosing_day(app, site, make_user, make_patient, make_program, make_enrollment, make_order):
    with app.app_context():
        today = site_today(db.session.get(Site, site))
    # Orders since yesterday (one day missed: dosed today); Rita Paz's since 3 days ago,
    # never dosed: 3 missed days, refused until a clinician reviews.
    start = today - dt.timedelta(days=1)
    prescriber = make_user("clinician", is_prescriber=True)
    program = make_program()
    smith = make_patient("John", "Smith", date_of_birth=dt.date(1975, 3, 9))
    lee = make_patient("Ann", "Lee")
    paz = make_patient("Rita", "Paz")
    make_patient("Jane", "Smithers")
    for patient, dose, since in (
        (smith, "85", start),
        (lee, "40", start),
        (paz, "40", today - dt.timedelta(days=3)),
    ):
        enrollment = make_enrollment(patient, program, admitted_on=since)
        make_order(
            enrollment,
            prescriber,
            dose_mg=dose,
            start_on=since,
            justification="Transferred from another OTP on this dose.",
        )
    return {"smith": smith, "lee": lee, "paz": paz}


def test_a_nurse_doses_from_the_keyboard(ui, make_user, username_of, dosing_day):
    nurse = username_of(make_user("clinician", may_dispense=True))
    page = sign_in(ui, nurse)
    ui.goto("/dosing/")
    expect(page.get_by_role("heading", name=re.compile("^Dosing — "))).to_be_visible()
    expect(page.get_by_test_id("dosing-count")).to_have_attribute("data-count", "3")
    # The filter has the focus: type the starts of the names; the list follows.
    expect(page.get_by_label("Find a patient")).to_be_focused()
    page.keyboard.type("smi j")
    expect(page.get_by_test_id("dosing-count")).to_have_attribute("data-count", "1")
    expect(page.get_by_label("Find a patient")).to_have_value("smi j")
    expect(page.get_by_label("Find a patient")).to_be_focused()
    ui.check()
    # Enter: the one patient found opens.
    load(ui, lambda: page.keyboard.press("Enter"))
    ui.check()
    expect(page.get_by_test_id("patient-name")).to_have_text("Smith, John")
    expect(page.get_by_test_id("patient-dob")).to_contain_text("1975")
    expect(page.get_by_label("Amount (mg)")).to_have_value("85")
    # Confirm the date of birth (Space), record (Enter): one action.
    expect(page.get_by_label("Date of birth confirmed with the patient")).to_be_focused()
    page.keyboard.press("Space")
    load(ui, lambda: page.keyboard.press("Enter"))
    ui.check()
    expect(page.get_by_text("Recorded 85 mg observed for Smith, John.")).to_be_visible()
    row = page.locator("tr[data-patient-id]").filter(has_text="Smith, John")
    expect(row.get_by_text("Dosed")).to_be_visible()

    # Next patient: arrow down from the filter to the list, Enter on the name.
    page.keyboard.type("lee")
    expect(page.get_by_test_id("dosing-count")).to_have_attribute("data-count", "1")
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("link", name="Lee, Ann")).to_be_focused()
    load(ui, lambda: page.keyboard.press("Enter"))
    ui.check()
    expect(page.get_by_test_id("patient-name")).to_have_text("Lee, Ann")
    # Enter without confirming the date of birth: refused, nothing saved, focus on it.
    load(ui, lambda: page.keyboard.press("Enter"))
    ui.check()
    expect(page.get_by_text("Confirm the date of birth with the patient")).to_be_visible()
    expect(page.get_by_label("Date of birth confirmed with the patient")).to_be_focused()
    page.keyboard.press("Space")
    load(ui, lambda: page.keyboard.press("Enter"))
    ui.check()
    expect(page.get_by_text("Recorded 40 mg observed for Lee, Ann.")).to_be_visible()


def test_the_log_and_history_pages_pass_axe(ui, make_user, username_of, dosing_day):
    nurse = username_of(make_user("clinician", may_dispense=True))
    sign_in(ui, nurse)
    page = ui.goto(f"/dosing/patients/{dosing_day['smith']}/dose")
    page.keyboard.press("Space")
    load(ui, lambda: page.keyboard.press("Enter"))
    ui.check()
    page = ui.goto("/dosing/log?site=MAIN")
    expect(page.get_by_text("Dispenser's initials")).to_be_visible()
    # The print layout: the controls go, the rows print small; one dispenser: no blank
    # page after the last (several: each dispenser's rows end a page).
    page.emulate_media(media="print")
    expect(page.get_by_role("button", name="Print")).to_be_hidden()
    expect(page.locator(".dispensing-log table").first).to_have_css("font-size", "12px")
    expect(page.locator(".log-group").last).to_have_css("break-after", "auto")
    page.emulate_media(media="screen")
    ui.goto(f"/dosing/patients/{dosing_day['smith']}/history")
    ui.goto(f"/dosing/patients/{dosing_day['smith']}/reverse")
    ui.goto("/dosing/review")
    ui.goto("/dosing/injections")
    ui.goto(f"/patients/{dosing_day['smith']}")


def test_three_missed_days_refuse_the_dose_with_the_reason(ui, make_user, username_of, dosing_day):
    nurse = username_of(make_user("clinician", may_dispense=True))
    page = sign_in(ui, nurse)
    ui.goto("/dosing/")
    row = page.locator("tr[data-patient-id]").filter(has_text="Paz, Rita")
    expect(row.get_by_test_id("missed-alert")).to_be_visible()
    page.keyboard.type("paz")
    expect(page.get_by_test_id("dosing-count")).to_have_attribute("data-count", "1")
    load(ui, lambda: page.keyboard.press("Enter"))
    ui.check()
    alert = page.get_by_test_id("missed-alert")
    expect(alert).to_contain_text("3 missed days (no dose since the order started ")
    expect(alert).to_contain_text("a clinician's review is needed before the next dose.")
    expect(page.locator("#dose-form")).to_have_count(0)
    # A nurse is a clinician: the review form is one link away.
    load(ui, lambda: alert.get_by_role("link", name="Record the review").click())
    ui.check()
    expect(page.get_by_role("heading", level=1)).to_be_visible()


def test_the_screen_pages_from_the_keyboard_and_keeps_its_page(
    ui, app, site, make_user, username_of, dosing_day
):
    """55 more patients due: the screen shows a page of them with a pager (First,
    Previous, Next); Next from the keyboard; the 45-second refresh fetches the page the
    nurse is on; typing in the filter starts again from the first page."""
    from tests.test_medications_dosing_views import _bulk_due_patients

    with app.app_context():
        today = site_today(db.session.get(Site, site))
    prescriber = make_user("clinician", is_prescriber=True)
    _bulk_due_patients(app, site, prescriber, 55, today)
    nurse = username_of(make_user("clinician", may_dispense=True))
    ui.page.clock.install()
    page = sign_in(ui, nurse)
    ui.goto("/dosing/")
    expect(page.get_by_test_id("dosing-count")).to_have_attribute("data-count", "58")
    expect(page.locator("tr[data-patient-id]")).to_have_count(50)
    pager = page.get_by_role("navigation", name="Pages of the dosing list")
    expect(pager).to_be_visible()
    ui.check()
    # Keyboard only: Tab from the last patient's link reaches Next; Enter opens page 2.
    page.locator("a.dosing-select").last.focus()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Next":
            break
    expect(pager.get_by_role("link", name="Next")).to_be_focused()
    load(ui, lambda: page.keyboard.press("Enter"))
    ui.check()
    assert "after=" in page.url
    expect(page.locator("tr[data-patient-id]")).to_have_count(8)
    second = page.locator("tr[data-patient-id]").first.get_attribute("data-patient-id")
    expect(pager.get_by_role("link", name="Previous")).to_be_visible()
    # The automatic refresh fetches this page again, not the first.
    with page.expect_response(lambda r: "/dosing/list" in r.url) as refreshed:
        page.clock.run_for(46_000)
    assert "after=" in refreshed.value.url and "auto=1" in refreshed.value.url
    expect(page.locator("tr[data-patient-id]")).to_have_count(8)
    expect(page.locator("tr[data-patient-id]").first).to_have_attribute("data-patient-id", second)
    # Typing: the filter's list from its first page (the address forgets the cursor).
    page.get_by_label("Find a patient").focus()
    page.keyboard.type("smi j")
    page.clock.run_for(1_000)
    expect(page.get_by_test_id("dosing-count")).to_have_attribute("data-count", "1")
    expect(page.locator("tr[data-patient-id]")).to_have_count(1)
    assert "after=" not in page.url and "q=smi" in page.url
