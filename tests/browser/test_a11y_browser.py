"""Accessibility of the platform pages in a real browser (issue 9, "Forms and
accessibility"): focus moves to the first error after a failed submit, keyboard focus is
visible on the dark navigation bar (WCAG 2.2 2.4.11, 1.4.11: at least 3:1), and axe finds
no violation of any impact on every page, in every state each role meets (the tours
below, the medication and dosing pages' among them; a GET page on no tour fails
test_every_get_page_is_on_a_tour)."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.sync_api import expect
from werkzeug.exceptions import HTTPException

from clinic.audit.models import BreakGlassGrant
from tests.browser import a11y_reports, a11y_take_homes
from tests.browser.a11y_take_homes import take_home_clinic_fixture  # noqa: F401
from tests.conftest import PASSWORD


def sign_in(ui, username: str):
    page = ui.goto("/login", all_impacts=True)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    ui.check(all_impacts=True)
    return page


def focused_id(page) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


def test_focus_moves_to_the_first_invalid_field_after_a_failed_submit(ui, make_user, username_of):
    page = sign_in(ui, username_of(make_user("admin")))
    ui.goto("/admin/users/new", all_impacts=True)
    page.get_by_label("Username").fill("dan.miller")
    # Full name and role left empty: the first of them (in page order) takes the focus.
    page.get_by_label("Temporary password").fill("river lantern oboe thicket")
    page.get_by_role("button", name="Create user").click()
    ui.check(all_impacts=True)
    expect(page.get_by_label("Full name")).to_be_focused()
    expect(page.get_by_label("Full name")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Full name")).to_have_accessible_description("This field is required.")
    expect(page.get_by_label("Role")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Username")).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Username")).to_have_value("dan.miller")


def test_focus_moves_to_the_error_summary_when_no_field_is_invalid(ui, make_user, username_of):
    page = sign_in(ui, username_of(make_user("admin")))
    ui.goto("/account/password", all_impacts=True)
    # An expired form (its token removed): the message concerns no field.
    page.evaluate("document.querySelector('main form input[name=csrf_token]').value = 'stale'")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("violet tractor moonlight 1987")
    page.get_by_label("Repeat new password").fill("violet tractor moonlight 1987")
    page.get_by_role("button", name="Change password").click()
    ui.check(all_impacts=True)
    summary = page.locator("[data-error-summary]")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()


def _contrast(rgb_a: tuple[float, ...], rgb_b: tuple[float, ...]) -> float:
    def luminance(rgb):
        channels = []
        for c in rgb[:3]:
            c = c / 255
            channels.append(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
        return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]

    high, low = sorted((luminance(rgb_a), luminance(rgb_b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _rgb(css: str) -> tuple[float, ...]:
    return tuple(float(x) for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3])


def test_keyboard_focus_on_the_dark_navigation_bar_is_visible(ui, make_user, username_of):
    page = sign_in(ui, username_of(make_user("admin")))
    page.get_by_role("link", name="Skip to main content").focus()
    for _ in range(4):  # the brand, then the first menu link
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('nav-link')"):
            break
    style = page.evaluate(
        "() => { const e = document.activeElement; const s = getComputedStyle(e);"
        " return [s.outlineStyle, s.outlineWidth, s.outlineColor, e.matches('.nav-link'),"
        " e.matches(':focus-visible')]; }"
    )
    assert style[3] and style[4], "a menu link has the keyboard focus"
    bar = page.locator("nav.navbar").evaluate("e => getComputedStyle(e).backgroundColor")
    assert style[0] == "solid"
    assert float(style[1].removesuffix("px")) >= 2
    assert _contrast(_rgb(style[2]), _rgb(bar)) >= 3, (style, bar)


# --- every platform page, in every state a user meets, for every role -------------------
#
# Each role's tour walks its pages (and the states they reach: results, empty results,
# errors shown, warnings, conflicts, refusals) and runs axe with ``all_impacts`` on each.
# TOURS declares the endpoints each tour must show; the tour fails if it did not show one,
# and test_every_get_page_is_on_a_tour fails for a GET endpoint no tour shows, so a new
# page cannot go unchecked.

# GET endpoints that are not pages, and why.
NOT_PAGES = {
    "static": "files (CSS, scripts)",
    "bootstrap.static": "Bootstrap's files",
    "main.healthz": "the load balancer's health check (JSON)",
    "main.readyz": "the load balancer's readiness check (JSON)",
    "audit.export": "a CSV download",
    "aftercare.directory_export": "a CSV download",
    "reports.export": "a CSV download",
    "dosing.screen_list": "the dosing screen's list alone, which dosing.js swaps into the "
    "screen (checked there, after typing in the filter)",
}

TOURS: dict[str, set[str]] = {
    "anonymous": {"accounts.login", "accounts.second_factor"},
    "admin": {
        "main.home",
        "accounts.account",
        "accounts.change_password",
        "accounts.mfa_setup",
        "users.index",
        "users.create",
        "users.detail",
        "users.edit",
        "users.act",
        "programs.index",
        "programs.create",
        "programs.edit",
        "audit.index",
        "audit.break_glass",
        "audit.acknowledge",
        "audit.patient_access",
        "patients.index",
        "patients.chart",
        "patients.register",
        "patients.edit",
        "patients.entered_in_error",
        "patients.admit",
        "patients.transfer",
        "patients.discharge",
        "patients.deadlines",
        "patients.add_review",
        "patients.correct",
        "patients.undo_discharge",
        "patients.worklist",
    },
    "clinician": {
        "main.home",
        "accounts.account",
        "patients.index",
        "patients.chart",
        "patients.admit",
        "patients.transfer",
        "patients.discharge",
        "patients.deadlines",
        "patients.correct",
        "patients.add_review",
        "patients.undo_discharge",
        "patients.worklist",
        "patients.break_glass",
        "patients.emergency_lookup",
    },
    "staff": {
        "main.home",
        "accounts.account",
        "patients.index",
        "patients.chart",
        "patients.register",
        "patients.edit",
        "patients.worklist",
    },
    # The medication pages (issue 10), by the users who meet them.
    "prescriber": {
        "patients.chart",
        "medications.patient",
        "medications.new_order",
        "medications.change_dose",
        "medications.switch",
        "medications.end_order",
        "medications.place_hold",
        "medications.lift_hold",
        "medications.add_flag",
        "dosing.screen",
        "dosing.review_list",
        "dosing.review",
        "dosing.injections",
        "dosing.history",
        "dosing.log",
    },
    "nurse": {
        "patients.chart",
        "medications.patient",
        "dosing.screen",
        "dosing.dose",
        "dosing.reverse",
        "dosing.injection",
        "dosing.history",
        "dosing.log",
        "dosing.review_list",
        "dosing.review",
        "dosing.injections",
    },
    # The therapy pages (issue 11).
    "clinician, therapy": {
        "therapy.my_day",
        "therapy.plan",
        "therapy.record_session",
        "therapy.note",
        "therapy.edit_note",
        "therapy.sign_note",
        "therapy.add_addendum",
        "therapy.note_entered_in_error",
        "patients.chart",
    },
    # My caseload, a patient's session history, a session marked entered in error.
    "clinician, caseload and history": {
        "therapy.caseload",
        "therapy.patient_sessions",
        "therapy.session_entered_in_error",
        "therapy.my_day",
    },
    "admin, therapy drafts": {"therapy.inactive_drafts", "users.detail", "users.edit"},
    "clinician, counseling notes": {
        "therapy.write_counseling_note",
        "therapy.counseling_note",
        "therapy.patient_counseling_notes",
        "patients.chart",
    },
    "admin, counseling readers": {
        "therapy.counseling_reader_sites",
        "therapy.counseling_readers",
        "therapy.revoke_counseling_reader",
    },
    # Referrals and disclosures (issue 12).
    "staff, referrals": {
        "aftercare.dashboard",
        "aftercare.patient_referrals",
        "aftercare.new_referral",
        "aftercare.referral",
        "aftercare.send_referral",
        "aftercare.referral_packet",
        "aftercare.accounting",
        "patients.chart",
    },
    # Support network, Part 2 consents, revocations and restriction requests (issue 12).
    "staff, consents": {
        "aftercare.support_network",
        "aftercare.new_support_person",
        "aftercare.edit_support_person",
        "aftercare.archive_support_person",
        "aftercare.consents",
        "aftercare.new_consent",
        "aftercare.consent",
        "aftercare.consent_form",
        "aftercare.revoke_consent",
        "aftercare.new_restriction",
        "aftercare.lift_restriction",
        "patients.chart",
    },
    "clinician, consents": {
        "aftercare.consents",
        "aftercare.consent",
        "aftercare.support_network",
        "patients.chart",
    },
    # The aftercare resource directory (issue 12).
    "staff, directory": {
        "aftercare.directory_index",
        "aftercare.directory_resource",
        "aftercare.directory_new",
        "aftercare.directory_edit",
        "aftercare.directory_deactivate",
        "aftercare.directory_reactivate",
        "aftercare.directory_import",
    },
    # Take-homes, bottles, call-backs, drug tests and the site calendar (issue 13).
    # A nurse who may dispense, then a prescriber (approve or decline).
    "clinicians, take-homes": {
        "take_homes.review_list",
        "take_homes.patient",
        "take_homes.decision",
        "take_home_bottles.patient",
        "take_home_bottles.labels",
        "take_home_bottles.dispense",
        "take_home_bottles.returns",
        "drug_tests.history",
        "drug_tests.detail",
        "drug_tests.record",
        "drug_tests.results",
        "drug_tests.entered_in_error",
        "drug_test_schedule.worklist",
        "drug_test_schedule.today",
        "drug_test_schedule.draw_page",
        "call_backs.worklist",
        "call_backs.start",
        "call_backs.outcome",
        "patients.chart",
    },
    "admin, take-homes": {
        "calendar.index",
        "calendar.site",
        "take_homes.review_list",
        "take_homes.patient",
        "take_homes.decision",
        "take_home_bottles.patient",
        "take_home_bottles.labels",
        "drug_tests.history",
        "drug_tests.detail",
        "drug_test_schedule.worklist",
        "drug_test_schedule.today",
        "drug_test_schedule.draw_page",
        "call_backs.worklist",
    },
    "staff, take-homes": {
        "drug_test_schedule.worklist",
        "drug_test_schedule.today",
        "drug_test_schedule.draw_page",
        "call_backs.worklist",
    },
    "admin, reports": {"reports.index", "reports.show", "reports.print_layout"},
    "admin, medications": {
        "patients.chart",
        "medications.patient",
        "dosing.screen",
        "dosing.review_list",
        "dosing.injections",
        "dosing.history",
        "dosing.log",
    },
}


def test_every_get_page_is_on_a_tour(app):
    pages = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if "GET" in (rule.methods or set()) and rule.endpoint not in NOT_PAGES
    }
    toured = set().union(*TOURS.values())
    assert sorted(pages - toured) == [], "GET pages no tour shows: add them to a tour"
    assert sorted(toured - pages) == [], "TOURS names endpoints that do not exist"
    assert sorted(set(NOT_PAGES) - {r.endpoint for r in app.url_map.iter_rules()}) == []


class Tour:
    """Pages shown and checked with axe (any impact); problems collected, so one tour
    reports every page's violations at once."""

    def __init__(self, ui, app) -> None:
        self.ui = ui
        self.page = ui.page
        self.adapter = app.url_map.bind("localhost")
        self.shown: set[str] = set()
        self.problems: list[str] = []

    def endpoint(self) -> str | None:
        path = urlsplit(self.page.url).path
        try:
            return self.adapter.match(path, method="GET")[0]
        except HTTPException:
            return None

    def check(self, state: str) -> None:
        self.page.wait_for_load_state()
        try:
            self.ui.check(all_impacts=True)
        except AssertionError as failure:
            self.problems.append(f"[{state}] {failure}")
            self.ui.unchecked.clear()
        headings = self.page.locator("main h1").count()
        if headings != 1:
            self.problems.append(f"[{state}] {self.page.url}: {headings} <h1> in <main>")
        endpoint = self.endpoint()
        if endpoint:
            self.shown.add(endpoint)

    def visit(self, path: str, state: str | None = None, *, status: int = 200):
        response = self.page.goto(self.ui.base_url + path)
        if response is None or response.status != status:
            got = response.status if response else None
            self.problems.append(f"[{state or path}] {path}: status {got}, expected {status}")
        self.check(state or path)
        return self.page

    def submit(self, button: str | None, state: str) -> None:
        """Send the page's form (as filled so far) with ``button`` (default: the first
        form of the page's main content) and check the page it answers with."""
        main = self.page.locator("main")
        if button is None:
            target = main.locator("form[method=post] [type=submit]").first
        else:
            target = main.get_by_role("button", name=button, exact=True).first
        if not target.count():
            self.problems.append(f"[{state}] {self.page.url}: no form to send")
            return
        with self.page.expect_navigation():
            target.click()
        self.check(state)

    def finish(self, role: str) -> None:
        missing = sorted(TOURS[role] - self.shown)
        assert not missing, f"the {role} tour did not show {missing}"
        assert not self.problems, "\n\n".join(self.problems)


@pytest.fixture
def clinic(app, site, make_site, make_user, make_program, make_patient, make_enrollment):
    """Two sites; programs of two kinds; two patients of the same name and birth date (one
    active, one discharged), one entered in error, one at the other site; a user to
    manage; a clinician of the other site with emergency access to a MAIN patient."""
    import datetime as dt

    from clinic.accounts.models import User
    from clinic.extensions import db
    from clinic.patients import admissions, registry
    from clinic.patients.models import Enrollment, Patient

    east = make_site("EAST", "East Side Clinic", "America/New_York")
    methadone = make_program("Methadone maintenance")
    office = make_program("Office buprenorphine", kind="office_buprenorphine")
    make_program("Methadone maintenance", site_id=east)
    born = dt.date(1991, 7, 30)
    ana = make_patient("Ana", "Torres", date_of_birth=born, phone="312-555-0142")
    other_ana = make_patient("Ana", "Torres", date_of_birth=born)
    active = make_enrollment(ana, methadone, admitted_on=dt.date(2026, 1, 6))
    make_enrollment(ana, office, admitted_on=dt.date(2026, 1, 12))
    ended = make_enrollment(other_ana, methadone, admitted_on=dt.date(2026, 1, 7))
    mistake = make_patient("Mistaken", "Entry")
    ruiz = make_patient("Luis", "Ruiz", site_id=east, date_of_birth=dt.date(1975, 2, 11))
    admin = make_user("admin", "ada.admin", full_name="Ada Admin")
    target = make_user("clinician", "cal.clinician", full_name="Cal Clinician")
    staff = make_user("staff", "sky.staff", full_name="Sky Staff")
    east_clinician = make_user("clinician", "eve.east", full_name="Eve East", site_ids=[east])
    with app.app_context():
        actor = db.session.get(User, admin)
        enrollment = db.session.get(Enrollment, ended)
        admissions.discharge(
            enrollment,
            actor=actor,
            discharged_on=dt.date(2026, 1, 20),
            reason=1,
            expected_version=enrollment.version,
        )
        mistaken = db.session.get(Patient, mistake)
        registry.mark_entered_in_error(
            mistaken,
            actor=actor,
            reason="Registered twice by mistake",
            expected_version=mistaken.version,
        )
        # Eve (EAST) opened Ana's record with emergency access a minute ago.
        now = dt.datetime.now(dt.UTC)
        grant = BreakGlassGrant(
            user_id=east_clinician,
            patient_id=ana,
            reason="Patient arrived at the East clinic in withdrawal",
            granted_at=now - dt.timedelta(minutes=1),
            expires_at=now + dt.timedelta(minutes=30),
        )
        db.session.add(grant)
        db.session.commit()
        grant_id = grant.id
    return SimpleNamespace(
        east=east,
        methadone=methadone,
        ana=ana,
        other_ana=other_ana,
        active=active,
        ended=ended,
        mistake=mistake,
        ruiz=ruiz,
        admin=admin,
        target=target,
        staff=staff,
        east_clinician=east_clinician,
        grant=grant_id,
    )


def tour_sign_in(tour: Tour, username: str) -> None:
    page = tour.visit("/login", "sign-in page")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    tour.submit(None, "home page")


def change_patient_meanwhile(app, patient_id: int) -> None:
    """Someone else saves the record while the tour's form is open."""
    from clinic.extensions import db
    from clinic.patients.models import Patient

    with app.app_context():
        db.session.get(Patient, patient_id).preferred_name = "Annie"
        db.session.commit()


def patient_pages(tour: Tour, app, clinic, *, manages: bool, registers: bool) -> None:
    """The patient pages every role meets, as far as the role may go."""
    tour.visit("/patients/", "patient list")
    tour.visit("/patients/?q=torres", "search with results")
    tour.visit("/patients/?q=nobody+here", "search without a match")
    tour.visit(f"/patients/{clinic.ana}", "chart with enrollments")
    tour.visit(f"/patients/{clinic.other_ana}", "chart with a discharged enrollment")
    tour.visit(f"/patients/{clinic.mistake}", "chart entered in error")
    tour.visit("/patients/deadlines", "deadline worklist")
    tour.visit("/patients/999999", "patient not found", status=404)
    if registers:
        tour.visit("/patients/new", "registration form")
        tour.submit(None, "registration with errors shown")
        tour.visit("/patients/new?q=torres+ana+1991-07-30", "registration from a search")
        register(tour, "Ana", "Torres", "1991-07-30", "duplicate warning")
        tour.visit(f"/patients/{clinic.ana}/edit", "edit demographics")
        change_patient_meanwhile(app, clinic.ana)
        tour.submit(None, "edit conflict")
        tour.visit(f"/patients/{clinic.mistake}/edit", "edit of a record entered in error")
    if manages:
        tour.visit(f"/patients/{clinic.ana}/admit", "admission form")
        tour.submit(None, "admission with errors shown")
        tour.visit(f"/patients/enrollments/{clinic.active}/transfer", "transfer form")
        tour.submit(None, "transfer with errors shown")
        tour.visit(f"/patients/enrollments/{clinic.active}/discharge", "discharge form")
        tour.submit(None, "discharge with errors shown")
        tour.visit(f"/patients/enrollments/{clinic.ended}/discharge", "discharge of an ended")
        tour.visit(f"/patients/enrollments/{clinic.active}/deadlines", "deadlines")
        tour.submit(None, "deadlines saved")
        tour.visit(f"/patients/enrollments/{clinic.active}/reviews", "care-plan review")
        tour.visit(f"/patients/enrollments/{clinic.active}/correct", "correction form")
        tour.submit(None, "correction with errors shown")
        tour.visit(f"/patients/enrollments/{clinic.ended}/correct", "undo discharge form")
        tour.visit(f"/patients/enrollments/{clinic.ended}/undo-discharge", "undo discharge")
        tour.submit(None, "undo discharge with errors shown")
        tour.visit(f"/patients/enrollments/{clinic.active}/undo-discharge", "nothing to undo")


def show_idle_warning(tour: Tour) -> None:
    """The idle warning, as session.js shows it a minute before the sign-out."""
    tour.page.evaluate("document.getElementById('session-warning').hidden = false")
    tour.check("idle warning shown")


def narrow_screen_menu(tour: Tour) -> None:
    """On a phone-sized screen the menu folds behind its button: both states."""
    page = tour.page
    page.set_viewport_size({"width": 375, "height": 740})
    tour.visit("/patients/", "narrow screen, menu folded")
    page.get_by_role("button", name="Toggle navigation").click()
    expect(page.locator("#main-nav")).to_be_visible()
    tour.check("narrow screen, menu open")
    page.set_viewport_size({"width": 1280, "height": 720})


def register(tour: Tour, first: str, last: str, born: str, state: str) -> None:
    page = tour.visit("/patients/new", "registration form")
    site = page.get_by_label("Site")
    if site.count() and not site.input_value():
        site.select_option(index=1)
    page.get_by_label("First name").fill(first)
    page.get_by_label("Last name").fill(last)
    page.get_by_label("Date of birth").fill(born)
    page.get_by_label("Sex at birth").select_option("male")
    page.get_by_label("Primary substance").select_option("fentanyl")
    tour.submit(None, state)


def test_admin_tour(ui, app, clinic):
    tour = Tour(ui, app)
    page = tour.page
    tour_sign_in(tour, "ada.admin")
    tour.visit("/account", "account")
    tour.visit("/account/password", "change password")
    tour.submit(None, "change password with errors shown")
    tour.visit("/account/mfa", "two-step set-up")
    tour.submit(None, "two-step set-up with errors shown")
    secret = page.get_by_test_id("mfa-secret").inner_text()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    tour.submit(None, "recovery codes")
    tour.visit("/account/mfa", "two-step set-up when already on")
    tour.visit("/account", "account with two-step verification on")
    show_idle_warning(tour)
    narrow_screen_menu(tour)
    tour.visit("/admin/users/", "user list")
    tour.visit("/admin/users/?q=cal", "user search")
    tour.visit("/admin/users/new", "new user form")
    tour.submit(None, "new user with errors shown")
    tour.visit(f"/admin/users/{clinic.target}", "user")
    tour.visit(f"/admin/users/{clinic.target}/edit", "edit user")
    for action in ("deactivate", "reset-password", "unlock", "end-sessions", "reset-mfa"):
        tour.visit(f"/admin/users/{clinic.target}/{action}", f"confirm {action}")
    tour.visit(f"/admin/users/{clinic.target}/reset-password", "reset password")
    tour.submit(None, "temporary password")
    tour.visit(f"/admin/users/{clinic.target}/deactivate", "deactivate")
    tour.submit(None, "user deactivated")
    tour.visit(f"/admin/users/{clinic.target}/reactivate", "confirm reactivate")
    tour.visit("/admin/programs/", "programs")
    tour.visit("/admin/programs/new", "new program")
    tour.submit(None, "new program with errors shown")
    tour.visit(f"/admin/programs/{clinic.methadone}/edit", "edit program")
    tour.visit("/admin/audit/", "audit viewer with results")
    tour.visit("/admin/audit/?user=eve", "audit viewer filtered")
    tour.visit(
        "/admin/audit/?date_from=2026-02-01&date_to=2026-01-01",
        "audit viewer, reversed range",
        status=400,
    )
    tour.visit("/admin/audit/?user=nobody-at-all", "audit viewer without results")
    tour.visit("/admin/audit/break-glass", "emergency access reviews")
    tour.visit(f"/admin/audit/break-glass/{clinic.grant}/acknowledge", "review form")
    tour.submit(None, "review with errors shown")
    tour.visit("/admin/audit/break-glass?all=1", "all emergency accesses")
    tour.visit(f"/admin/audit/patients/{clinic.ana}", "patient access report")
    tour.visit(
        f"/admin/audit/patients/{clinic.ana}?date_from=2026-02-01&date_to=2026-01-01",
        "patient access report, reversed period",
        status=400,
    )
    patient_pages(tour, app, clinic, manages=True, registers=True)
    tour.visit(f"/patients/{clinic.ana}/entered-in-error", "entered in error form")
    tour.submit(None, "entered in error with errors shown")
    tour.visit("/logout", "a page that answers only POST", status=405)
    tour.finish("admin")


def test_clinician_tour(ui, app, clinic, username_of):
    tour = Tour(ui, app)
    tour_sign_in(tour, username_of(clinic.target))
    tour.visit("/account", "account")
    patient_pages(tour, app, clinic, manages=True, registers=False)
    tour.visit("/patients/break-glass", "emergency access form")
    tour.submit(None, "emergency access with errors shown")
    tour.visit("/patients/break-glass/find", "emergency lookup")
    tour.submit(None, "emergency lookup with errors shown")
    tour.visit("/admin/users/", "refused (403)", status=403)
    tour.finish("clinician")


def test_clinician_of_another_site_meets_emergency_access(ui, app, clinic):
    tour = Tour(ui, app)
    tour_sign_in(tour, "eve.east")
    tour.visit(f"/patients/{clinic.ana}", "chart opened with emergency access")
    tour.visit(f"/patients/{clinic.other_ana}", "patient of another site", status=404)
    tour.visit(f"/patients/{clinic.ana}/admit", "write refused under emergency access", status=403)
    tour.visit("/patients/break-glass/find", "emergency lookup")
    tour.page.get_by_label("Last name").fill("Torres")
    tour.page.get_by_label("Date of birth").fill("1991-07-30")
    tour.submit(None, "emergency lookup with results")
    assert not tour.problems, "\n\n".join(tour.problems)


def test_staff_tour(ui, app, clinic):
    tour = Tour(ui, app)
    tour_sign_in(tour, "sky.staff")
    tour.visit("/account", "account")
    patient_pages(tour, app, clinic, manages=False, registers=True)
    tour.visit(f"/patients/{clinic.ana}/admit", "refused (403)", status=403)
    tour.visit("/admin/audit/", "refused (403)", status=403)
    register(tour, "Luis", "Ruiz", "1975-02-11", "duplicate at another site")
    register(tour, "Old", "Timer", "1899-11-02", "implausible age")
    show_idle_warning(tour)
    with tour.page.expect_navigation():
        tour.page.get_by_role("button", name="Sign out").click()
    tour.check("signed out")
    tour.finish("staff")


def test_anonymous_tour(ui, app, make_user):
    from clinic.accounts.authentication import enable_mfa, new_mfa_secret
    from clinic.accounts.models import User
    from clinic.extensions import db

    user_id = make_user("staff", "mo.mfa")
    with app.app_context():
        secret = new_mfa_secret()
        enable_mfa(
            db.session.get(User, user_id),
            password=PASSWORD,
            secret=secret,
            code=pyotp.TOTP(secret).now(),
        )
        db.session.commit()
    tour = Tour(ui, app)
    page = tour.page
    tour.visit("/login", "sign-in page")
    tour.submit(None, "sign-in with errors shown")
    page.get_by_label("Username").fill("mo.mfa")
    page.get_by_label("Password").fill("not the password at all")
    tour.submit(None, "sign-in refused")
    page.get_by_label("Username").fill("mo.mfa")
    page.get_by_label("Password").fill(PASSWORD)
    tour.submit(None, "second step")
    tour.submit(None, "second step with errors shown")
    tour.visit("/patients/999999", "signed out: sent to sign in")
    tour.finish("anonymous")


# --- the medication and dosing pages (issue 10) -------------------------------------------


@pytest.fixture
def medication_clinic(app, clinic, site, make_user, make_patient, make_program, make_enrollment):
    """On top of ``clinic``: Ana Torres on methadone 40 mg since yesterday (dosed
    yesterday; a warning and an information flag), Rita Paz never dosed in 3 days (on the
    review list), Hal Hold on a stop-dose hold, Sam Split on a split dose (first portion
    given), Nia Needle's naltrexone injection overdue; a prescriber of both sites and a
    nurse who may dispense."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from clinic.accounts.models import User
    from clinic.extensions import db
    from clinic.medications import holds, ledger, orders
    from clinic.patients.models import Enrollment, Patient
    from clinic.sites.models import Site
    from clinic.sites.time import site_today

    prescriber = make_user(
        "clinician",
        "pat.prescriber",
        full_name="Pat Prescriber",
        is_prescriber=True,
        site_ids=[site, clinic.east],
    )
    nurse = make_user("clinician", "nora.nurse", full_name="Nora Nurse", may_dispense=True)
    methadone = make_program("Methadone clinic two")
    with app.app_context():
        main = db.session.get(Site, site)
        today = site_today(main)
        tz = ZoneInfo(main.timezone)
    yesterday = today - dt.timedelta(days=1)
    people = {"paz": ("Rita", "Paz", 3), "hal": ("Hal", "Hold", 1), "sam": ("Sam", "Split", 1)}
    people["nia"] = ("Nia", "Needle", 40)
    enrollments = {"ana": clinic.active}
    patients = {"ana": clinic.ana}
    for key, (first, last, days) in people.items():
        patients[key] = make_patient(first, last)
        enrollments[key] = make_enrollment(
            patients[key], methadone, admitted_on=today - dt.timedelta(days=days)
        )

    def order(key: str, start: dt.date, dose: str, **fields) -> orders.OrderInput:
        return orders.OrderInput(
            medication=fields.pop("medication", "methadone"),
            product_form=fields.pop("product_form", "oral_liquid"),
            strength=fields.pop("strength", "10 mg/mL"),
            dose_mg=dose,
            schedule=fields.pop("schedule", "daily"),
            start_on=start,
            **fields,
        )

    with app.test_request_context():
        doctor = db.session.get(User, prescriber)
        giver = db.session.get(User, nurse)
        inputs = {
            "ana": order("ana", yesterday, "40"),
            "paz": order("paz", today - dt.timedelta(days=3), "40"),
            "hal": order("hal", yesterday, "40"),
            "sam": order(
                "sam",
                yesterday,
                "50",
                schedule="split",
                split_first_mg="30",
                split_second_mg="20",
            ),
            "nia": order(
                "nia",
                today - dt.timedelta(days=40),
                "380",
                medication="xr_naltrexone",
                product_form="injection",
                strength="380 mg",
                schedule="every_4_weeks",
                justification="Opioid-free for 10 days per urine testing.",
            ),
        }
        order_ids = {}
        for key, data in inputs.items():
            made = orders.start_order(
                db.session.get(Enrollment, enrollments[key]), actor=doctor, data=data
            )
            order_ids[key] = made.id
        db.session.commit()
        ana = db.session.get(Patient, patients["ana"])
        at_nine = dt.datetime.combine(yesterday, dt.time(9), tz).astimezone(dt.UTC)
        ledger.record_dose(ana, actor=giver, amount_mg="40", station="Window 1", now=at_nine)
        ledger.record_dose(db.session.get(Patient, patients["sam"]), actor=giver, amount_mg="30")
        holds.add_flag(ana, actor=doctor, category="warning", text="Sedated on Friday: assess")
        holds.add_flag(ana, actor=doctor, category="info", text="Prefers Spanish")
        hold = holds.place_hold(
            db.session.get(Patient, patients["hal"]),
            actor=doctor,
            reason="Awaiting liver function results",
            until_on=None,
        )
        db.session.commit()
        hold_id = hold.id
    return SimpleNamespace(
        clinic=clinic,
        prescriber=prescriber,
        nurse=nurse,
        patients=SimpleNamespace(**patients),
        orders=SimpleNamespace(**order_ids),
        hold=hold_id,
    )


def dosing_history_and_lists(tour: Tour, med) -> None:
    """The read-only dosing pages every medication reader meets."""
    p = med.patients
    tour.visit("/dosing/review", "review list with a patient and an overdue injection")
    tour.visit("/dosing/injections", "injections due")
    tour.visit(f"/dosing/patients/{p.ana}/history", "dose history")
    tour.visit(f"/dosing/patients/{med.clinic.other_ana}/history", "dose history, empty")
    tour.visit("/dosing/log?site=MAIN", "dispensing log")
    tour.visit("/dosing/log?site=MAIN&day=2026-01-02", "dispensing log, empty day")
    tour.visit(f"/medications/patients/{p.ana}", "medication page")
    tour.visit(f"/medications/patients/{med.clinic.other_ana}", "medication page, no order")
    tour.visit(f"/patients/{p.ana}", "chart with the medication sections")


def test_nurse_dosing_tour(ui, app, medication_clinic, username_of):
    med = medication_clinic
    p = med.patients
    tour = Tour(ui, app)
    page = tour.page
    tour_sign_in(tour, "nora.nurse")
    tour.visit("/dosing/", "dosing screen")
    page.get_by_label("Find a patient").fill("torr")
    expect(page.get_by_test_id("dosing-count")).to_have_attribute("data-count", "1")
    tour.check("dosing screen, list filtered in place")
    page.get_by_label("Find a patient").fill("nobody here")
    expect(page.get_by_test_id("dosing-count")).to_have_attribute("data-count", "0")
    tour.check("dosing screen, no patient matches")
    tour.visit(f"/dosing/patients/{p.ana}/dose", "dose page, warning to acknowledge")
    tour.submit("Acknowledge for today", "dose page, warning acknowledged")
    tour.submit("Record dose", "dose with errors shown (date of birth not confirmed)")
    expect(page.get_by_text("Confirm the date of birth with the patient")).to_be_visible()
    page.get_by_label("Amount (mg)").fill("abc")
    page.get_by_label("Date of birth confirmed with the patient").check()
    tour.submit("Record dose", "dose with a bad amount")
    page.get_by_label("Amount (mg)").fill("35")
    page.get_by_label("Date of birth confirmed with the patient").check()
    tour.submit("Record dose", "dose differing from the order without a reason")
    page.get_by_label("Amount (mg)").fill("40")
    page.get_by_label("Date of birth confirmed with the patient").check()
    tour.submit("Record dose", "dosing screen after a dose")
    expect(page.get_by_text("Recorded 40 mg observed for Torres, Ana.")).to_be_visible()
    tour.visit(f"/dosing/patients/{p.ana}/dose", "dose page, already dosed")
    tour.visit(f"/dosing/patients/{p.paz}/dose", "dose refused: missed-dose review")
    expect(page.get_by_test_id("missed-alert")).to_contain_text("review is needed")
    tour.submit("Record as held", "held dose with errors shown")
    tour.visit(f"/dosing/patients/{p.hal}/dose", "dose refused: stop-dose hold")
    expect(page.get_by_test_id("hold-alert")).to_be_visible()
    tour.visit(f"/dosing/patients/{p.sam}/dose", "split dose, second portion")
    tour.visit(f"/dosing/patients/{med.clinic.other_ana}/dose", "no active order")
    tour.visit(f"/dosing/patients/{p.nia}/injection", "injection form")
    page.get_by_label("Lot number").fill("")
    tour.submit(None, "injection with errors shown")
    expect(page.locator("main [aria-invalid=true]").first).to_be_visible()
    tour.visit(f"/dosing/patients/{p.ana}/injection", "injection without an order")
    tour.visit(f"/dosing/patients/{p.ana}/reverse", "reverse a dose")
    tour.submit(None, "reversal with errors shown")
    tour.visit(f"/dosing/patients/{med.clinic.other_ana}/reverse", "nothing to reverse")
    tour.visit(f"/dosing/patients/{p.paz}/review", "missed-dose review form")
    tour.submit(None, "review with errors shown")
    dosing_history_and_lists(tour, med)
    tour.visit(f"/medications/patients/{p.ana}/orders/new", "refused (403)", status=403)
    tour.finish("nurse")


def test_prescriber_medication_tour(ui, app, medication_clinic):
    med = medication_clinic
    p = med.patients
    tour = Tour(ui, app)
    tour_sign_in(tour, "pat.prescriber")
    tour.visit("/dosing/", "dosing: choose the site")
    tour.visit("/dosing/?site=EAST", "dosing screen, nobody due")
    tour.visit("/dosing/?site=MAIN", "dosing screen, read only")
    dosing_history_and_lists(tour, med)
    tour.visit(f"/dosing/patients/{p.paz}/review", "missed-dose review form")
    tour.submit(None, "review with errors shown")
    tour.visit(f"/medications/patients/{p.ana}/orders/new", "new order form")
    tour.submit(None, "new order with errors shown")
    tour.visit(f"/medications/orders/{med.orders.ana}/change", "dose change form")
    tour.page.get_by_label("Dose (mg)").fill("")
    tour.submit(None, "dose change with errors shown")
    expect(tour.page.locator("main [aria-invalid=true]").first).to_be_visible()
    tour.visit(f"/medications/orders/{med.orders.ana}/switch", "switch form")
    tour.submit(None, "switch with errors shown")
    tour.visit(f"/medications/orders/{med.orders.ana}/end", "end order form")
    tour.submit(None, "end order with errors shown")
    tour.visit(f"/medications/patients/{p.ana}/holds/new", "hold form")
    tour.submit(None, "hold with errors shown")
    tour.visit(f"/medications/holds/{med.hold}/lift", "lift hold form")
    tour.submit(None, "lift hold with errors shown")
    expect(tour.page.locator("main [aria-invalid=true]").first).to_be_visible()
    tour.visit(f"/medications/patients/{p.ana}/flags/new", "flag form")
    tour.submit(None, "flag with errors shown")
    tour.visit(f"/dosing/patients/{p.ana}/dose", "dosing refused (403)", status=403)
    tour.finish("prescriber")


def test_admin_medication_tour(ui, app, medication_clinic):
    med = medication_clinic
    tour = Tour(ui, app)
    tour_sign_in(tour, "ada.admin")
    tour.visit("/dosing/", "dosing screen")
    dosing_history_and_lists(tour, med)
    tour.visit(f"/dosing/patients/{med.patients.ana}/dose", "dosing refused (403)", status=403)
    tour.visit(
        f"/medications/patients/{med.patients.ana}/orders/new", "order refused (403)", status=403
    )
    tour.finish("admin, medications")


def test_admin_reports_tour(ui, app, clinic):
    tour = Tour(ui, app)
    tour_sign_in(tour, "ada.admin")
    a11y_reports.admin_report_pages(tour)
    tour.finish("admin, reports")


def test_clinicians_take_home_tour(ui, app, take_home_clinic):
    tour = Tour(ui, app)
    tour_sign_in(tour, "nora.nurse")
    a11y_take_homes.nurse_pages(tour, take_home_clinic)
    with tour.page.expect_navigation():
        tour.page.get_by_role("button", name="Sign out").click()
    tour_sign_in(tour, "pat.prescriber")
    a11y_take_homes.prescriber_pages(tour, take_home_clinic)
    tour.finish("clinicians, take-homes")


def test_admin_take_home_tour(ui, app, take_home_clinic):
    tour = Tour(ui, app)
    tour_sign_in(tour, "ida.admin")
    a11y_take_homes.admin_pages(tour, take_home_clinic)
    tour.finish("admin, take-homes")


def test_staff_take_home_tour(ui, app, take_home_clinic):
    """Staff see who is due a test or a call-back and today's draw, never a result."""
    tour = Tour(ui, app)
    tour_sign_in(tour, "sky.staff")
    a11y_take_homes.due_pages(tour, take_home_clinic)
    patient = take_home_clinic.med.patients.ana
    tour.visit(f"/drug-tests/patients/{patient}", "drug tests refused (403)", status=403)
    tour.visit(f"/take-homes/patients/{patient}", "take-homes refused (403)", status=403)
    tour.finish("staff, take-homes")


def test_staff_meet_no_medication_page(ui, app, medication_clinic):
    med = medication_clinic
    tour = Tour(ui, app)
    tour_sign_in(tour, "sky.staff")
    tour.visit(f"/patients/{med.patients.ana}", "chart: on MOUD, no doses")
    expect(tour.page.get_by_text("Dose history")).to_have_count(0)
    tour.visit("/dosing/", "dosing refused (403)", status=403)
    tour.visit(f"/medications/patients/{med.patients.ana}", "medications refused", status=403)
    assert not tour.problems, "\n\n".join(tour.problems)


# --- the therapy pages (issue 11) ---------------------------------------------------------


def test_clinician_therapy_tour(ui, app, clinic, username_of):
    """My day (empty, then with an unrecorded session), the plan form and the recording
    form, each with its errors shown, and the chart's "Sessions" section."""
    import datetime as dt

    from clinic.accounts.models import User
    from clinic.extensions import db
    from clinic.therapy import sessions

    tour = Tour(ui, app)
    tour_sign_in(tour, username_of(clinic.target))
    tour.visit("/therapy/", "my day, nothing planned")
    with app.app_context():
        planned = sessions.plan_session(
            actor=db.session.get(User, clinic.target),
            plan=sessions.SessionPlan(
                site_id=db.session.get(User, clinic.target).sites[0].id,
                starts_at=dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=2),
                duration_minutes=60,
                kind="individual",
                modality="cbt",
                setting="in_person",
                patient_ids=[clinic.ana],
            ),
        )
        db.session.commit()
        session_id = planned.id
    tour.visit("/therapy/", "my day with an unrecorded session")
    tour.visit("/therapy/sessions/new", "plan form")
    tour.submit(None, "plan with errors shown")
    tour.visit(f"/therapy/sessions/{session_id}/record", "record form")
    tour.page.get_by_label("Minutes attended by Torres, Ana").fill("999")
    tour.submit(None, "record with errors shown")
    tour.page.get_by_label("Minutes attended by Torres, Ana").fill("50")
    tour.page.get_by_label("Individual note for Torres, Ana").fill("Discussed cravings.")
    tour.submit(None, "my day with an unsigned note")
    note = f"/therapy/notes/{note_id(app, session_id)}"
    tour.visit(note, "a draft note")
    tour.visit(f"{note}/edit", "edit the draft")
    tour.page.get_by_label("Note").fill("")
    tour.submit(None, "edit with errors shown")
    tour.visit(f"{note}/sign", "sign: confirmation")
    tour.submit(None, "a signed note")
    tour.visit(f"{note}/addendum", "addendum form")
    tour.submit(None, "addendum with errors shown")
    tour.visit(f"{note}/entered-in-error", "entered in error: confirmation")
    tour.submit(None, "entered in error with errors shown")
    tour.visit(f"/patients/{clinic.ana}", "chart with a recorded session and its note")
    tour.finish("clinician, therapy")


def note_id(app, session_id: int) -> int:
    import sqlalchemy as sa

    from clinic.extensions import db
    from clinic.therapy.models import ProgressNote

    with app.app_context():
        return db.session.scalar(
            sa.select(ProgressNote.id).where(ProgressNote.session_id == session_id)
        )


def test_admin_therapy_drafts_tour(ui, app, clinic, make_user):
    """The drafts of a deactivated clinician (none; then listed, with the errors of an
    empty reassignment shown, then reassigned), and the trainee fields of the user form
    with their error shown."""
    import datetime as dt

    from clinic.accounts import services as account_services
    from clinic.accounts.models import User
    from clinic.extensions import db
    from clinic.therapy import sessions

    dee = make_user("clinician", "dee.clinician", full_name="Dee Clinician")
    tour = Tour(ui, app)
    tour_sign_in(tour, "ada.admin")
    tour.visit("/therapy/admin/drafts", "no draft to reassign")
    tour.visit(f"/admin/users/{dee}/edit", "edit user: trainee fields")
    tour.page.get_by_label("Trainee", exact=False).check()
    tour.submit("Save", "trainee without a supervisor: error shown")
    with app.app_context():
        cal = db.session.get(User, clinic.target)
        planned = sessions.plan_session(
            actor=cal,
            plan=sessions.SessionPlan(
                site_id=cal.sites[0].id,
                starts_at=dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1),
                duration_minutes=50,
                kind="individual",
                modality="cbt",
                setting="in_person",
                patient_ids=[clinic.ana],
            ),
        )
        sessions.record_session(
            planned,
            actor=cal,
            attendees=[sessions.AttendeeRecord(clinic.ana, "attended", 50, "A draft.")],
        )
        account_services.deactivate_user(cal, actor=db.session.get(User, clinic.admin))
        db.session.commit()
    tour.visit(f"/admin/users/{clinic.target}", "a deactivated clinician")
    tour.page.get_by_role("link", name="Reassign their draft notes").click()
    tour.check("drafts of one deactivated clinician")
    tour.visit("/therapy/admin/drafts", "drafts to reassign")
    tour.submit("Reassign the chosen drafts", "reassignment with errors shown")
    tour.page.get_by_label("Reassign the draft of").first.check()
    tour.page.get_by_label("New author").select_option(label="Dee Clinician (dee.clinician)")
    tour.submit("Reassign the chosen drafts", "drafts reassigned")
    tour.finish("admin, therapy drafts")


def test_clinician_counseling_notes_tour(ui, app, clinic, username_of):
    """A patient's counseling notes (none), writing one (its error shown, then saved),
    reading it, the list with it, and the chart's pointer to them."""
    import datetime as dt

    from clinic.accounts.models import User
    from clinic.extensions import db
    from clinic.therapy import sessions

    with app.app_context():
        cal = db.session.get(User, clinic.target)
        planned = sessions.plan_session(
            actor=cal,
            plan=sessions.SessionPlan(
                site_id=cal.sites[0].id,
                starts_at=dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1),
                duration_minutes=50,
                kind="individual",
                modality="cbt",
                setting="in_person",
                patient_ids=[clinic.ana],
            ),
        )
        sessions.record_session(
            planned, actor=cal, attendees=[sessions.AttendeeRecord(clinic.ana, "attended", 50)]
        )
        db.session.commit()
        session_id, attendee_id = planned.id, planned.attendees[0].id
    tour = Tour(ui, app)
    tour_sign_in(tour, username_of(clinic.target))
    tour.visit(f"/therapy/patients/{clinic.ana}/counseling-notes", "no counseling note")
    tour.visit(
        f"/therapy/sessions/{session_id}/attendees/{attendee_id}/counseling-note",
        "counseling note form",
    )
    tour.submit(None, "counseling note with its error shown")
    tour.page.get_by_label("Counseling note").fill("Ambivalence about tapering; explore next time.")
    tour.submit(None, "a counseling note")
    tour.visit(f"/therapy/patients/{clinic.ana}/counseling-notes", "one counseling note")
    tour.visit(f"/patients/{clinic.ana}", "chart pointing to the counseling notes")
    tour.finish("clinician, counseling notes")


def test_admin_counseling_readers_tour(ui, app, clinic):
    """The sites, a site's readers (none; the grant form's error shown; one granted) and
    the revocation's confirmation."""
    tour = Tour(ui, app)
    tour_sign_in(tour, "ada.admin")
    tour.visit("/therapy/counseling-readers", "sites whose readers I choose")
    tour.page.locator("main").get_by_role("link").first.click()
    tour.check("no reader yet")
    tour.submit(None, "grant with its error shown")
    tour.page.get_by_label("Clinician").select_option(label="Cal Clinician (cal.clinician)")
    tour.submit(None, "one reader")
    tour.page.get_by_role("link", name="Revoke…").first.click()
    tour.check("revocation: confirmation")
    tour.submit(None, "reader revoked")
    tour.finish("admin, counseling readers")


def test_staff_referrals_tour(ui, app, clinic):
    """The referrals dashboard (empty, then with a follow-up due), a patient's referrals
    (none, then some), the new-referral form (filtered, with its errors shown), a draft
    referral (its status form's errors shown), sending refused without consent and
    allowed with it, the packet, the accounting (empty, then listed), and the chart's
    "Referrals" section."""
    from tests.test_aftercare_referrals import make_consent, make_referral, make_resources

    ids = {
        "patient_id": clinic.ana,
        "program_id": clinic.methadone,
        "staff": clinic.staff,
        **make_resources(app),
    }
    tour = Tour(ui, app)
    tour_sign_in(tour, "sky.staff")
    tour.visit("/aftercare/dashboard", "referrals dashboard, nothing yet")
    tour.visit(f"/aftercare/patients/{clinic.ana}/referrals", "no referrals")
    tour.visit(f"/aftercare/patients/{clinic.ana}/disclosures", "accounting, no disclosure")
    new = f"/aftercare/patients/{clinic.ana}/referrals/new"
    tour.visit(f"{new}?kind=recovery_residence&methadone=y&beds=y", "new referral, filtered")
    tour.submit("Create the referral (draft)", "new referral with errors shown")
    refused = make_referral(app, ids, resource=ids["strict"])
    tour.visit(f"/aftercare/referrals/{refused}", "a draft referral")
    tour.submit("Change the status", "status change with errors shown")
    tour.visit(f"/aftercare/referrals/{refused}/send", "sending refused: no consent")
    make_consent(app, ids, resource=ids["home"])
    referral = make_referral(app, ids, resource=ids["home"])
    tour.visit(f"/aftercare/referrals/{referral}/send", "send with the consent shown")
    tour.submit("Send the referral", "the referral packet")
    tour.visit(f"/aftercare/referrals/{referral}", "a sent referral")
    tour.visit(f"/aftercare/patients/{clinic.ana}/referrals", "a patient's referrals")
    tour.visit(f"/aftercare/patients/{clinic.ana}/disclosures", "accounting of disclosures")
    tour.visit(f"/patients/{clinic.ana}", "chart with referrals")
    tour.visit("/aftercare/dashboard", "referrals dashboard")
    tour.finish("staff, referrals")


# --- my caseload, a patient's sessions, a session entered in error (issue 11) ------------------


def test_clinician_caseload_and_history_tour(ui, app, clinic, username_of):
    """My caseload (empty, then with a flagged patient), a patient's session history (a
    clinician's, with notes; staff's, without), the confirmation to mark a session entered
    in error with its errors shown, and the history with that session struck through."""
    import datetime as dt

    from clinic.accounts.models import User
    from clinic.extensions import db
    from clinic.patients.models import Enrollment
    from clinic.therapy import sessions

    tour = Tour(ui, app)
    tour_sign_in(tour, username_of(clinic.target))
    tour.visit("/therapy/caseload", "caseload, empty")
    with app.app_context():
        cal = db.session.get(User, clinic.target)
        db.session.get(Enrollment, clinic.active).primary_counselor_id = cal.id
        session = sessions.plan_session(
            actor=cal,
            plan=sessions.SessionPlan(
                site_id=cal.sites[0].id,
                starts_at=dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=40),
                duration_minutes=60,
                kind="individual",
                modality="cbt",
                setting="in_person",
                patient_ids=[clinic.ana],
            ),
        )
        sessions.record_session(
            session,
            actor=cal,
            attendees=[sessions.AttendeeRecord(clinic.ana, "attended", 50, "Talked about work.")],
            sign=True,
        )
        db.session.commit()
        session_id = session.id
    tour.visit("/therapy/caseload", "caseload with a flagged patient")
    tour.visit("/therapy/caseload?sort=days&dir=desc", "caseload sorted by days")
    tour.visit(f"/therapy/patients/{clinic.ana}/sessions", "history with a note")
    tour.visit(
        f"/therapy/sessions/{session_id}/entered-in-error?patient={clinic.ana}",
        "session entered in error: confirmation",
    )
    tour.submit(None, "session entered in error with errors shown")
    tour.page.get_by_label("Reason").fill("Recorded on the wrong day by mistake.")
    tour.submit(None, "history with the session struck through")
    tour.visit("/therapy/", "my day")
    tour.finish("clinician, caseload and history")


def test_staff_directory_tour(ui, app, clinic):
    """The aftercare directory: empty, then listed (a stale bed count among its rows), an
    invalid filter, no match; a resource; the add form with its errors; the edit form with
    a conflict; deactivate and reactivate (confirmations); an import refused with its
    report."""
    import datetime as dt

    from clinic.accounts.models import User
    from clinic.aftercare import directory
    from clinic.extensions import db

    tour = Tour(ui, app)
    tour_sign_in(tour, "sky.staff")
    tour.visit("/aftercare/resources/", "directory, empty")
    tour.visit("/aftercare/resources/new", "add a resource")
    tour.page.get_by_label("Name").fill("Tuesday NA")
    tour.page.get_by_label("Kind").select_option("support_group")
    tour.page.get_by_label("Beds in total").fill("5")
    tour.submit("Save", "add a resource: errors shown")
    expect(tour.page.get_by_label("Support-group type")).to_have_attribute("aria-invalid", "true")
    with app.test_request_context():
        actor = db.session.scalar(db.select(User).where(User.username == "sky.staff"))
        house = directory.create_resource(
            actor=actor,
            data=directory.ResourceData(
                name="Harbor House",
                kind="recovery_residence",
                narr_level="II",
                city="Chicago",
                accepts_moud="yes",
                accepts_methadone="yes",
                beds_total=8,
                beds_available=1,
                beds_confirmed_on=dt.date.today() - dt.timedelta(days=20),
                notes="Call before noon.\nAsk for Rosa.",
            ),
        )
        directory.create_resource(
            actor=actor,
            data=directory.ResourceData(
                name="Tuesday NA", kind="support_group", support_group_type="na"
            ),
        )
        db.session.commit()
        house_id = house.id
    tour.visit("/aftercare/resources/", "directory with a stale bed count")
    expect(tour.page.get_by_test_id("stale")).to_have_count(1)
    tour.visit("/aftercare/resources/?kind=castle", "an invalid filter", status=400)
    tour.visit("/aftercare/resources/?q=nothing-like-it", "no match")
    tour.visit(f"/aftercare/resources/{house_id}", "a residence")
    tour.visit(f"/aftercare/resources/{house_id}/edit", "edit a resource")
    with app.test_request_context():
        from clinic.aftercare.models import AftercareResource

        resource = db.session.get(AftercareResource, house_id)
        data = directory.ResourceData.of(resource)
        data.city = "Evanston"
        directory.update_resource(
            resource, actor=None, data=data, expected_version=resource.version
        )
        db.session.commit()
    tour.page.get_by_label("Name").fill("Harbor Home")
    tour.submit("Save", "edit: someone else saved meanwhile")
    expect(tour.page.get_by_test_id("conflict")).to_be_visible()
    tour.visit(f"/aftercare/resources/{house_id}/deactivate", "deactivate: confirmation")
    tour.submit("Deactivate", "an inactive resource")
    tour.visit(f"/aftercare/resources/{house_id}/reactivate", "reactivate: confirmation")
    tour.visit("/aftercare/resources/import", "import form")
    tour.page.get_by_label("Directory file (CSV)").set_input_files(
        files=[
            {
                "name": "directory.csv",
                "mimeType": "text/csv",
                "buffer": b"name,kind,beds_total,beds_available\nA,halfway_house,2,5\n",
            }
        ]
    )
    tour.submit("Import", "import refused: the report")
    expect(tour.page.get_by_test_id("refused-row")).to_have_count(1)
    tour.finish("staff, directory")


# --- support network, consents and restriction requests (issue 12) ------------------------


def consent_tour_records(app, clinic) -> SimpleNamespace:
    """A residence of the directory, and a restriction request of Ana's to lift."""
    from clinic.accounts.models import User
    from clinic.aftercare import restrictions
    from clinic.aftercare.models import AftercareResource
    from clinic.extensions import db
    from clinic.patients.models import Patient
    from clinic.sites.time import site_today

    with app.test_request_context():
        home = AftercareResource(name="Harbor House", kind="recovery_residence")
        db.session.add(home)
        patient = db.session.get(Patient, clinic.ana)
        restriction = restrictions.record_restriction(
            patient,
            actor=db.session.get(User, clinic.staff),
            purpose=None,
            recipient_type="anyone",
            resource_id=None,
            support_person_id=None,
            recipient_class=None,
            details="Nothing to my employer.",
            requested_on=site_today(patient.site),
        )
        db.session.commit()
        return SimpleNamespace(home=home.id, restriction=restriction.id)


def test_staff_consent_tour(ui, app, clinic):
    """The support network (empty, errors, a person, an edit conflict, removal), consents
    (none, the form with its errors, recorded, printed, revoked with errors shown, a new
    one based on it) and restriction requests (errors shown, lifting), and the chart."""
    import datetime as dt

    from clinic.aftercare.consent_models import SupportPerson
    from clinic.extensions import db

    records = consent_tour_records(app, clinic)
    ana = clinic.ana
    tour = Tour(ui, app)
    page = tour.page
    tour_sign_in(tour, "sky.staff")
    tour.visit(f"/aftercare/patients/{ana}/support-network", "support network, empty")
    tour.visit(f"/aftercare/patients/{ana}/support-network/new", "add a support person")
    page.get_by_label("Phone").fill("call me")
    tour.submit("Add to the support network", "support person with errors shown")
    page.get_by_label("Name").fill("Maria Torres")
    page.get_by_label("Relationship").select_option("family")
    page.get_by_label("Phone").fill("(312) 555-0147")
    page.get_by_label("Can offer the patient a place to stay").check()
    tour.submit("Add to the support network", "support network with a person")
    with app.app_context():
        person_id = db.session.scalar(db.select(SupportPerson.id))
    tour.visit(f"/aftercare/support-people/{person_id}/edit", "edit a support person")
    with app.app_context():
        db.session.get(SupportPerson, person_id).notes = "Changed meanwhile"
        db.session.commit()
    page.get_by_label("Name").fill("Maria T.")
    tour.submit("Save changes", "support person changed meanwhile: conflict")
    tour.visit(f"/aftercare/patients/{ana}/consents", "consents, none on file")
    tour.visit(f"/aftercare/patients/{ana}/consents/new", "record a consent")
    tour.submit("Record the consent", "consent with errors shown")
    page.get_by_label("Kind of consent").select_option("specific_disclosure")
    page.get_by_label("Who may disclose (the program)").select_option(index=1)
    page.get_by_label("Information that may be disclosed").fill("Enrollment and medication")
    page.get_by_label("Recipient", exact=True).select_option("resource")
    page.get_by_label("Resource (named recipient)").select_option(str(records.home))
    page.get_by_label("Purpose", exact=True).select_option("aftercare_referral")
    page.get_by_label("Purpose, as written on the consent").fill("Placement")
    page.get_by_label("Expiration", exact=True).select_option("date")
    later = dt.date.today() + dt.timedelta(days=90)
    page.get_by_label("Expiration date").fill(later.isoformat())
    page.get_by_label("Signature", exact=True).select_option("paper")
    page.get_by_label("Scan reference of the signed paper").fill("SCAN-1")
    tour.submit("Record the consent", "a recorded consent")
    consent_url = urlsplit(page.url).path
    tour.visit(f"/aftercare/patients/{ana}/consents", "consents with an active one")
    tour.visit(f"/aftercare/patients/{ana}/consents/print", "the printable consent form")
    tour.visit(f"{consent_url}/revoke", "revoke: confirmation")
    page.get_by_label("How the patient revoked it in writing").fill("")
    tour.submit("Revoke the consent", "revocation with errors shown")
    page.get_by_label("How the patient revoked it in writing").fill("Signed letter")
    tour.submit("Revoke the consent", "a revoked consent")
    consent_id = consent_url.rsplit("/", 1)[1]
    tour.visit(
        f"/aftercare/patients/{ana}/consents/new?based_on={consent_id}",
        "a new consent based on the revoked one",
    )
    tour.visit(f"/aftercare/patients/{ana}/restrictions/new", "record a restriction")
    tour.submit("Record the request", "restriction with errors shown")
    tour.visit(f"/aftercare/restrictions/{records.restriction}/lift", "lift: confirmation")
    tour.submit("Lift the restriction", "lifting with errors shown")
    tour.visit(f"/aftercare/support-people/{person_id}/archive", "remove: confirmation")
    tour.submit("Remove from the support network", "support network with a removed person")
    tour.visit(f"/patients/{ana}", "chart with consents and support network")
    tour.finish("staff, consents")


def test_clinician_consent_tour(ui, app, clinic, username_of):
    """Clinicians read the consents, the support network and the chart section."""
    from clinic.accounts.models import User
    from clinic.aftercare import consents, support
    from clinic.extensions import db
    from clinic.patients.models import Patient
    from clinic.sites.time import site_today

    records = consent_tour_records(app, clinic)
    with app.test_request_context():
        patient = db.session.get(Patient, clinic.ana)
        actor = db.session.get(User, clinic.staff)
        today = site_today(patient.site)
        support.add_support_person(
            patient,
            actor=actor,
            data=support.SupportPersonInput(name="Jo Sponsor", relationship="sponsor"),
        )
        consent = consents.record_consent(
            patient,
            actor=actor,
            data=consents.ConsentInput(
                kind="specific_disclosure",
                program_id=patient.enrollments[0].program_id,
                information_description="Enrollment",
                recipient_type="resource",
                resource_id=records.home,
                support_person_id=None,
                recipient_class=None,
                purpose="aftercare_referral",
                purpose_text="Placement",
                right_to_revoke="In writing",
                expiry_kind="event",
                expires_on=None,
                expiry_event="End of treatment",
                signature_method="electronic",
                paper_scan_reference=None,
                electronic_signature_name="Ana Torres",
                signed_on=today,
            ),
        )
        db.session.commit()
        consent_id = consent.id
    tour = Tour(ui, app)
    tour_sign_in(tour, username_of(clinic.target))
    tour.visit(f"/aftercare/patients/{clinic.ana}/consents", "consents, read only")
    tour.visit(f"/aftercare/consents/{consent_id}", "a consent, read only")
    tour.visit(f"/aftercare/patients/{clinic.ana}/support-network", "support network")
    tour.visit(f"/patients/{clinic.ana}", "chart with consents, read only")
    expect(tour.page.get_by_role("link", name="Record a consent")).to_have_count(0)
    tour.finish("clinician, consents")
