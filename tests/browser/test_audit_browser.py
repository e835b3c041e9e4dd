"""The audit pages in a real browser at 1280x800: the viewer fits the screen with
long details, the emergency-access review is read and acknowledged from the keyboard's
usual controls, and every page passes axe."""

from __future__ import annotations

import datetime as dt

import pytest
from playwright.sync_api import expect

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.audit.models import BreakGlassGrant
from clinic.extensions import db
from clinic.patients.models import Patient
from tests.conftest import PASSWORD

REASON = "Walk-in overdose at EAST, confirming the methadone dose"


@pytest.fixture
def screen(page):
    page.set_viewport_size({"width": 1280, "height": 800})
    return page


def sign_in(ui, username: str):
    page = ui.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    ui.check()
    return page


def body_overflows(page) -> int:
    """How many pixels the page is wider than the window (0: no horizontal scroll)."""
    return page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )


@pytest.fixture
def busy_trail(app, site, make_user, make_patient):
    """Events with long usernames, record types and details, the worst case for width."""
    patient_id = make_patient("Alexandria", "Papadopoulou-Vanderbilt")
    user_id = make_user("clinician", username="a-very-long-username-for-width-checks-0001")
    with app.app_context():
        user = db.session.get(User, user_id)
        for i in range(30):
            record(
                AuditAction.UPDATE,
                actor=user,
                entity_type="care_plan_review_long",
                entity_id=f"{i:064d}",
                patient_id=patient_id,
                site_id=site,
                details={
                    "fields": [f"a_rather_long_field_name_number_{j}" for j in range(8)],
                    "page": "patients.some_endpoint_with_a_long_name",
                },
            )
        db.session.commit()


def test_the_audit_viewer_fits_a_1280_pixel_screen(ui, screen, make_user, username_of, busy_trail):
    sign_in(ui, username_of(make_user("admin")))
    page = ui.goto("/admin/audit/")
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    expect(page.get_by_text("a-very-long-username-for-width-checks-0001").first).to_be_visible()
    assert body_overflows(page) == 0
    # The filters: a name that matches no one says so, and the page still fits.
    page.get_by_label("Patient (MRN or name)").fill("nobody-by-that-name")
    page.get_by_role("button", name="Filter").click()
    ui.check()
    expect(page.get_by_test_id("filter-notice")).to_contain_text("No patient at your sites")
    assert body_overflows(page) == 0


def test_the_emergency_access_review_reads_and_acknowledges(
    app, ui, screen, site, make_site, make_user, make_patient, username_of
):
    east = make_site("EAST", "Eastside Recovery Center", timezone="America/New_York")
    clinician = make_user("clinician", full_name="Dana Rivera", site_ids=[east])
    patient_id = make_patient("Ana", "Torres")
    with app.app_context():
        now = dt.datetime.now(dt.UTC)
        db.session.add(
            BreakGlassGrant(
                user_id=clinician,
                patient_id=patient_id,
                reason=REASON,
                granted_at=now,
                expires_at=now + dt.timedelta(minutes=60),
            )
        )
        db.session.commit()
        mrn = db.session.get(Patient, patient_id).mrn
    sign_in(ui, username_of(make_user("admin", full_name="Pat Admin")))
    page = ui.goto("/admin/audit/break-glass")
    row = page.get_by_role("row").filter(has_text=REASON)
    expect(row).to_contain_text("Dana Rivera")
    expect(row).to_contain_text("Torres, Ana")
    expect(row).to_contain_text(f"MRN {mrn}, Main Street Clinic")
    assert body_overflows(page) == 0
    row.get_by_role("link", name="Review").click()
    ui.check()
    # Escalating without a note is refused next to the note, the choice kept.
    page.get_by_label("Escalated: referred for follow-up (privacy officer)").check()
    page.get_by_label("I reviewed this access. An acknowledgement cannot be undone.").check()
    page.get_by_role("button", name="Acknowledge").click()
    ui.check()
    expect(page.get_by_text("Say why this access is escalated and to whom.")).to_be_visible()
    expect(page.get_by_label("Escalated: referred for follow-up (privacy officer)")).to_be_checked()
    page.get_by_label("Note").fill("Reason does not match the visit; privacy officer told.")
    page.get_by_label("I reviewed this access. An acknowledgement cannot be undone.").check()
    page.get_by_role("button", name="Acknowledge").click()
    ui.check()
    expect(page.get_by_text("Acknowledged: the review's outcome is recorded.")).to_be_visible()
    expect(page.get_by_text("No emergency access waits for review.")).to_be_visible()
    page = ui.goto("/admin/audit/break-glass?show=all")
    expect(page.get_by_role("row").filter(has_text=REASON)).to_contain_text("Escalated")


def test_the_patient_access_report_prints_without_the_chrome(
    ui, screen, make_user, make_patient, username_of
):
    patient_id = make_patient("Ana", "Torres")
    sign_in(ui, username_of(make_user("admin", full_name="Pat Admin")))
    ui.goto(f"/admin/audit/patients/{patient_id}")
    page = ui.goto(f"/admin/audit/patients/{patient_id}")  # lists the first viewing
    expect(page.get_by_role("cell", name="Viewed this access report").first).to_be_visible()
    assert body_overflows(page) == 0
    page.emulate_media(media="print")
    expect(page.get_by_role("button", name="Print")).to_be_hidden()
    expect(page.locator("nav.navbar")).to_be_hidden()
    expect(page.get_by_role("cell", name="Pat Admin").first).to_be_visible()
