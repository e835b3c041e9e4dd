"""The whole referral flow from a real browser, keyboard only (issue 12, "Done when"): a
staff member finds a sober-living home that accepts methadone and has a bed, sees that
sending is refused without consent, records the patient's consent, sends the referral,
prints its packet, follows it to placement, and prints the accounting of disclosures.
Every page passes axe."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from playwright.sync_api import expect

from clinic.aftercare.referral_models import Disclosure, Referral
from clinic.extensions import db
from clinic.sites.time import site_today
from tests.browser.test_patients_browser import load, sign_in
from tests.test_aftercare_referrals import make_resources


def _press(ui, locator, key: str = "Enter") -> None:
    """Focus ``locator`` and press ``key``, waiting for the page it loads."""
    locator.focus()
    load(ui, lambda: ui.page.keyboard.press(key))


def test_staff_refer_a_patient_to_sober_living_from_the_keyboard(
    ui, app, site, make_user, make_patient, make_program, make_enrollment
):
    from clinic.patients.models import Patient

    program = make_program()
    patient_id = make_patient("Ana", "Torres")
    make_enrollment(patient_id, program)
    make_user("staff", "sky.staff", full_name="Sky Staff")
    make_resources(app)
    with app.app_context():
        today = site_today(db.session.get(Patient, patient_id).site)
    page = sign_in(ui, "sky.staff")

    # Find a sober-living home that accepts methadone and has a bed.
    ui.goto(f"/aftercare/patients/{patient_id}/referrals/new")
    ui.check()
    page.get_by_label("Kind").select_option(label="Sober living / recovery residence")
    page.get_by_label("Accepts residents on methadone").press("Space")
    page.get_by_label("Has a bed available").press("Space")
    _press(ui, page.get_by_role("button", name="Filter"))
    ui.check()
    expect(page.get_by_label("Harbor House")).to_be_visible()
    expect(page.get_by_text("Abstinence Lodge")).to_have_count(0)
    page.get_by_label("Harbor House").press("Space")
    page.get_by_label("Reason for referral").fill("Safe housing after intensive outpatient.")
    _press(ui, page.get_by_role("button", name="Create the referral (draft)"))
    expect(page.get_by_test_id("referral-status")).to_have_text("Draft")
    ui.check()
    referral_url = page.url

    # Sending without consent is refused, with the reason.
    _press(ui, page.get_by_role("link", name="Send the referral…"))
    expect(page.get_by_test_id("send-refused")).to_be_visible()
    ui.check()

    # Record the patient's consent (E1's form), naming Harbor House: the refusal links to it.
    _press(ui, page.get_by_role("link", name="record a consent the patient has signed"))
    expect(page.get_by_role("heading", name="Record a consent (42 CFR 2.31)")).to_be_visible()
    ui.check()
    page.get_by_label("Kind of consent").select_option("specific_disclosure")
    page.get_by_label("Who may disclose (the program)").select_option(label="Methadone maintenance")
    page.get_by_label("Information that may be disclosed").fill(
        "Enrollment in treatment and current medication (methadone)"
    )
    page.get_by_label("Recipient", exact=True).select_option("resource")
    page.get_by_label("Resource (named recipient)").select_option(
        label="Harbor House (Sober living / recovery residence)"
    )
    page.get_by_label("Purpose", exact=True).select_option("aftercare_referral")
    page.get_by_label("Purpose, as written on the consent").fill(
        "Placement in a recovery residence"
    )
    page.get_by_label("Expiration", exact=True).select_option("date")
    page.get_by_label("Expiration date").fill((today + dt.timedelta(days=90)).isoformat())
    page.get_by_label("Signature", exact=True).select_option("electronic")
    page.get_by_label("Name typed by the patient").fill("Ana Torres")
    page.get_by_label("Date signed").fill(today.isoformat())
    _press(ui, page.get_by_role("button", name="Record the consent"))
    ui.check()

    # Send: the page shows the consent that covers it; sending leads to the packet.
    ui.goto(referral_url.removeprefix(ui.base_url) + "/send")
    expect(page.get_by_test_id("send-consent")).to_be_visible()
    ui.check()
    _press(ui, page.get_by_role("button", name="Send the referral"))
    expect(page.get_by_test_id("part2-notice")).to_contain_text("42 CFR part 2")
    expect(page.get_by_test_id("consent-scope")).to_contain_text("Harbor House")
    expect(page.get_by_test_id("sent-message")).to_be_visible()
    ui.check()
    # On paper: the notice and the scope, never the screen's "sent" message or buttons.
    page.emulate_media(media="print")
    expect(page.get_by_test_id("sent-message")).to_be_hidden()
    expect(page.get_by_role("button", name="Print the packet")).to_be_hidden()
    expect(page.get_by_test_id("part2-notice")).to_be_visible()
    page.emulate_media(media="screen")

    # Follow it to placement.
    _press(ui, page.get_by_role("link", name="Back to the referral"))
    for status in ("Accepted", "Placed"):
        page.get_by_label("New status").select_option(label=status)
        page.get_by_label("Note").fill(f"{status} by phone.")
        _press(ui, page.get_by_role("button", name="Change the status"))
        expect(page.get_by_test_id("referral-status")).to_have_text(status)
        ui.check()

    # Print the accounting of disclosures.
    _press(ui, page.get_by_role("link", name="All referrals"))
    ui.check()
    _press(ui, page.get_by_role("link", name="Accounting of disclosures"))
    expect(page.get_by_test_id("accounting")).to_contain_text("Harbor House")
    ui.check()
    page.get_by_role("button", name="Print").focus()
    expect(page.get_by_role("button", name="Print")).to_be_focused()
    page.emulate_media(media="print")
    expect(page.get_by_role("button", name="Print")).to_be_hidden()
    expect(page.get_by_test_id("accounting")).to_be_visible()
    page.emulate_media(media="screen")

    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Disclosure)) == 1
        assert db.session.scalar(sa.select(Referral.status)) == "placed"
