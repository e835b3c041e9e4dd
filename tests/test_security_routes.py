"""Deny by default: every endpoint declares who may use it, and the declared table of
who gets what (the authorization matrix) is what the app does.

Every feature adds its rows to MATRIX; an endpoint without a row fails the test.
"""

from __future__ import annotations

import pytest
from flask import Flask

from clinic.security import endpoint_access
from tests.conftest import login
from tests.matrix_rows import (
    ADMIN_ONLY,
    ANY_USER,
    CLINICIAN_ONLY,
    CSRF_REFUSALS,
    CSRF_REFUSED,
    DENY,
    LOGIN,
    NOBODY_WITHOUT_FLAG,
    NOT_CLINICIAN,
    NOT_FOUND,
    NOT_STAFF,
    OK,
    PUBLIC,
    ROLES,
    row,
)
from tests.route_modules import extra_matrix_rows

# (endpoint, method) -> expected outcome per role
MATRIX: dict[tuple[str, str], dict[str, str]] = {
    ("static", "GET"): PUBLIC,
    ("bootstrap.static", "GET"): PUBLIC,
    ("main.healthz", "GET"): PUBLIC,
    ("main.readyz", "GET"): PUBLIC,
    ("main.home", "GET"): ANY_USER,
    ("accounts.login", "GET"): PUBLIC,
    ("accounts.login", "POST"): PUBLIC,
    ("accounts.second_factor", "GET"): PUBLIC,
    ("accounts.second_factor", "POST"): PUBLIC,
    ("accounts.logout", "POST"): ANY_USER,
    ("accounts.account", "GET"): ANY_USER,
    ("accounts.change_password", "GET"): ANY_USER,
    ("accounts.change_password", "POST"): ANY_USER,
    ("accounts.end_other_sessions", "POST"): ANY_USER,
    ("accounts.mfa_setup", "GET"): ANY_USER,
    ("accounts.mfa_setup", "POST"): ANY_USER,
    ("accounts.mfa_disable", "POST"): ANY_USER,
    ("accounts.keep_alive", "POST"): ANY_USER,
    ("users.index", "GET"): ADMIN_ONLY,
    ("users.create", "GET"): ADMIN_ONLY,
    ("users.create", "POST"): ADMIN_ONLY,
    ("users.detail", "GET"): ADMIN_ONLY,
    ("users.edit", "GET"): ADMIN_ONLY,
    ("users.edit", "POST"): ADMIN_ONLY,
    ("users.act", "GET"): ADMIN_ONLY,
    ("users.act", "POST"): ADMIN_ONLY,
    ("audit.index", "GET"): ADMIN_ONLY,
    ("audit.export", "GET"): ADMIN_ONLY,
    ("audit.break_glass", "GET"): ADMIN_ONLY,
    ("audit.acknowledge", "POST"): ADMIN_ONLY,
    ("audit.acknowledge", "GET"): ADMIN_ONLY,
    ("audit.patient_access", "GET"): ADMIN_ONLY,
    ("patients.index", "GET"): ANY_USER,
    ("patients.worklist", "GET"): ANY_USER,
    ("patients.chart", "GET"): ANY_USER,
    ("patients.register", "GET"): NOT_CLINICIAN,
    ("patients.register", "POST"): NOT_CLINICIAN,
    ("patients.edit", "GET"): NOT_CLINICIAN,
    ("patients.edit", "POST"): NOT_CLINICIAN,
    ("patients.entered_in_error", "GET"): ADMIN_ONLY,
    ("patients.entered_in_error", "POST"): ADMIN_ONLY,
    ("patients.admit", "GET"): NOT_STAFF,
    ("patients.admit", "POST"): NOT_STAFF,
    ("patients.discharge", "GET"): NOT_STAFF,
    ("patients.discharge", "POST"): NOT_STAFF,
    ("patients.transfer", "GET"): NOT_STAFF,
    ("patients.transfer", "POST"): NOT_STAFF,
    ("patients.correct", "GET"): NOT_STAFF,
    ("patients.correct", "POST"): NOT_STAFF,
    ("patients.undo_discharge", "POST"): NOT_STAFF,
    ("patients.undo_discharge", "GET"): NOT_STAFF,
    ("patients.deadlines", "GET"): NOT_STAFF,
    ("patients.deadlines", "POST"): NOT_STAFF,
    ("patients.add_review", "POST"): NOT_STAFF,
    ("patients.add_review", "GET"): NOT_STAFF,
    ("patients.break_glass", "GET"): CLINICIAN_ONLY,
    ("patients.break_glass", "POST"): CLINICIAN_ONLY,
    ("patients.emergency_lookup", "GET"): CLINICIAN_ONLY,
    ("patients.emergency_lookup", "POST"): CLINICIAN_ONLY,
    ("programs.index", "GET"): ADMIN_ONLY,
    ("programs.create", "GET"): ADMIN_ONLY,
    ("programs.create", "POST"): ADMIN_ONLY,
    ("programs.edit", "GET"): ADMIN_ONLY,
    ("programs.edit", "POST"): ADMIN_ONLY,
    # Medications (issue 10). The matrix's clinician has no prescriber flag: orders are
    # refused to every role here (tests/test_medications_access.py: a prescriber).
    ("medications.patient", "GET"): NOT_STAFF,
    ("medications.new_order", "GET"): NOBODY_WITHOUT_FLAG,
    ("medications.new_order", "POST"): NOBODY_WITHOUT_FLAG,
    ("medications.change_dose", "GET"): NOBODY_WITHOUT_FLAG,
    ("medications.change_dose", "POST"): NOBODY_WITHOUT_FLAG,
    ("medications.switch", "GET"): NOBODY_WITHOUT_FLAG,
    ("medications.switch", "POST"): NOBODY_WITHOUT_FLAG,
    ("medications.end_order", "GET"): NOBODY_WITHOUT_FLAG,
    ("medications.end_order", "POST"): NOBODY_WITHOUT_FLAG,
    ("medications.place_hold", "GET"): CLINICIAN_ONLY,
    ("medications.place_hold", "POST"): CLINICIAN_ONLY,
    ("medications.lift_hold", "GET"): CLINICIAN_ONLY,
    ("medications.lift_hold", "POST"): CLINICIAN_ONLY,
    ("medications.add_flag", "GET"): CLINICIAN_ONLY,
    ("medications.add_flag", "POST"): CLINICIAN_ONLY,
    ("medications.clear_flag", "POST"): CLINICIAN_ONLY,
    # The dosing window. Recording needs the may-dispense flag, which the matrix's
    # clinician lacks (tests/test_medications_dosing_views.py: a dispenser).
    ("dosing.screen", "GET"): NOT_STAFF,
    ("dosing.screen_list", "GET"): NOT_STAFF,
    ("dosing.dose", "GET"): NOBODY_WITHOUT_FLAG,
    ("dosing.dose", "POST"): NOBODY_WITHOUT_FLAG,
    ("dosing.held", "POST"): NOBODY_WITHOUT_FLAG,
    ("dosing.acknowledge", "POST"): NOBODY_WITHOUT_FLAG,
    ("dosing.reverse", "GET"): NOBODY_WITHOUT_FLAG,
    ("dosing.reverse", "POST"): NOBODY_WITHOUT_FLAG,
    ("dosing.injection", "GET"): NOBODY_WITHOUT_FLAG,
    ("dosing.injection", "POST"): NOBODY_WITHOUT_FLAG,
    ("dosing.review_list", "GET"): NOT_STAFF,
    ("dosing.review", "GET"): CLINICIAN_ONLY,
    ("dosing.review", "POST"): CLINICIAN_ONLY,
    ("dosing.injections", "GET"): NOT_STAFF,
    ("dosing.history", "GET"): NOT_STAFF,
    ("dosing.log", "GET"): NOT_STAFF,
    # Therapy (issue 11): clinicians plan and record sessions. The matrix's session is
    # another clinician's: recording it is refused with a message (a redirect).
    ("therapy.my_day", "GET"): CLINICIAN_ONLY,
    ("therapy.plan", "GET"): CLINICIAN_ONLY,
    ("therapy.plan", "POST"): CLINICIAN_ONLY,
    ("therapy.record_session", "GET"): CLINICIAN_ONLY,
    ("therapy.record_session", "POST"): CLINICIAN_ONLY,
    # The matrix's note is a draft of that session (another clinician's): a clinician of
    # the site reads and edits it; signing it is refused on the form (400).
    ("therapy.note", "GET"): CLINICIAN_ONLY,
    ("therapy.edit_note", "GET"): CLINICIAN_ONLY,
    ("therapy.edit_note", "POST"): CLINICIAN_ONLY,
    ("therapy.sign_note", "GET"): CLINICIAN_ONLY,
    ("therapy.sign_note", "POST"): CLINICIAN_ONLY,
    ("therapy.add_addendum", "GET"): CLINICIAN_ONLY,
    ("therapy.add_addendum", "POST"): CLINICIAN_ONLY,
    ("therapy.cosign_note", "POST"): CLINICIAN_ONLY,
    ("therapy.note_entered_in_error", "GET"): CLINICIAN_ONLY,
    ("therapy.note_entered_in_error", "POST"): CLINICIAN_ONLY,
    # SUD counseling notes: clinicians write them; the matrix's note is another
    # clinician's (the matrix clinician holds no grant): a 404 for them, as for anyone
    # the site does not allow. Administrators choose a site's readers.
    ("therapy.write_counseling_note", "GET"): CLINICIAN_ONLY,
    ("therapy.write_counseling_note", "POST"): CLINICIAN_ONLY,
    ("therapy.counseling_note", "GET"): row(staff=DENY, clinician=NOT_FOUND, admin=DENY),
    ("therapy.patient_counseling_notes", "GET"): CLINICIAN_ONLY,
    ("therapy.counseling_reader_sites", "GET"): ADMIN_ONLY,
    ("therapy.counseling_readers", "GET"): ADMIN_ONLY,
    ("therapy.counseling_readers", "POST"): ADMIN_ONLY,
    ("therapy.revoke_counseling_reader", "GET"): ADMIN_ONLY,
    ("therapy.revoke_counseling_reader", "POST"): ADMIN_ONLY,
    # My caseload is a clinician's; a patient's session history is every role's (note
    # text for clinicians only); marking the matrix's session entered in error is for
    # clinicians of its site (the empty form is refused on the page, 400).
    # Reassigning a deactivated clinician's drafts: administrators (an empty POST is
    # refused on the page, 400).
    ("therapy.inactive_drafts", "GET"): ADMIN_ONLY,
    ("therapy.inactive_drafts", "POST"): ADMIN_ONLY,
    ("therapy.caseload", "GET"): CLINICIAN_ONLY,
    ("therapy.patient_sessions", "GET"): ANY_USER,
    ("therapy.session_entered_in_error", "GET"): CLINICIAN_ONLY,
    ("therapy.session_entered_in_error", "POST"): CLINICIAN_ONLY,
    # The aftercare resource directory (issue 12): every role reads it (AFTERCARE_READ);
    # staff and administrators change it (RESOURCES_MANAGE). The matrix's resource is
    # active: reactivating it redirects to it; empty POSTs are refused on the page (400).
    ("aftercare.directory_index", "GET"): ANY_USER,
    ("aftercare.directory_export", "GET"): ANY_USER,
    ("aftercare.directory_resource", "GET"): ANY_USER,
    ("aftercare.directory_new", "GET"): NOT_CLINICIAN,
    ("aftercare.directory_new", "POST"): NOT_CLINICIAN,
    ("aftercare.directory_edit", "GET"): NOT_CLINICIAN,
    ("aftercare.directory_edit", "POST"): NOT_CLINICIAN,
    ("aftercare.directory_deactivate", "GET"): NOT_CLINICIAN,
    ("aftercare.directory_deactivate", "POST"): NOT_CLINICIAN,
    ("aftercare.directory_reactivate", "GET"): NOT_CLINICIAN,
    ("aftercare.directory_reactivate", "POST"): NOT_CLINICIAN,
    ("aftercare.directory_import", "GET"): NOT_CLINICIAN,
    ("aftercare.directory_import", "POST"): NOT_CLINICIAN,
    # Referrals and disclosures (issue 12): staff and administrators manage and send them,
    # clinicians read them (the matrix's referral is a draft without consent: its send page
    # shows the refusal, its packet redirects to it, empty POSTs are refused on the page).
    ("aftercare.dashboard", "GET"): NOT_CLINICIAN,
    ("aftercare.patient_referrals", "GET"): ANY_USER,
    ("aftercare.new_referral", "GET"): NOT_CLINICIAN,
    ("aftercare.new_referral", "POST"): NOT_CLINICIAN,
    ("aftercare.referral", "GET"): ANY_USER,
    ("aftercare.referral_status", "POST"): NOT_CLINICIAN,
    ("aftercare.referral_follow_up", "POST"): NOT_CLINICIAN,
    ("aftercare.send_referral", "GET"): NOT_CLINICIAN,
    ("aftercare.send_referral", "POST"): NOT_CLINICIAN,
    ("aftercare.referral_packet", "GET"): NOT_CLINICIAN,
    ("aftercare.accounting", "GET"): NOT_CLINICIAN,
    # Support network, Part 2 consents and restriction requests (issue 12): every role reads
    # them (AFTERCARE_READ); staff and administrators keep the network (REFERRALS_MANAGE)
    # and record consents, revocations and restrictions (CONSENTS_RECORD). Empty POSTs
    # are refused on the page (400); printing a form from an empty POST shows the form.
    ("aftercare.support_network", "GET"): ANY_USER,
    ("aftercare.new_support_person", "GET"): NOT_CLINICIAN,
    ("aftercare.new_support_person", "POST"): NOT_CLINICIAN,
    ("aftercare.edit_support_person", "GET"): NOT_CLINICIAN,
    ("aftercare.edit_support_person", "POST"): NOT_CLINICIAN,
    ("aftercare.archive_support_person", "GET"): NOT_CLINICIAN,
    ("aftercare.archive_support_person", "POST"): NOT_CLINICIAN,
    ("aftercare.consents", "GET"): ANY_USER,
    ("aftercare.consent", "GET"): ANY_USER,
    ("aftercare.new_consent", "GET"): NOT_CLINICIAN,
    ("aftercare.new_consent", "POST"): NOT_CLINICIAN,
    ("aftercare.consent_form", "GET"): NOT_CLINICIAN,
    ("aftercare.consent_form", "POST"): NOT_CLINICIAN,
    ("aftercare.revoke_consent", "GET"): NOT_CLINICIAN,
    ("aftercare.revoke_consent", "POST"): NOT_CLINICIAN,
    ("aftercare.new_restriction", "GET"): NOT_CLINICIAN,
    ("aftercare.new_restriction", "POST"): NOT_CLINICIAN,
    ("aftercare.lift_restriction", "GET"): NOT_CLINICIAN,
    ("aftercare.lift_restriction", "POST"): NOT_CLINICIAN,
}
# Rows of the domains that keep theirs beside their tests (tests/route_modules.py).
MATRIX.update(extra_matrix_rows())

# Values for the URL rules' variables (records give the ids), by endpoint where they differ.
URL_VALUES = {"filename": "clinic.css", "action": "unlock"}
ENDPOINT_VALUES = {"bootstrap.static": {"filename": "css/bootstrap.min.css"}}


def _routes(app: Flask) -> list[tuple[str, str, object]]:
    routes = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((rule.endpoint, method, rule))
    return routes


def test_every_endpoint_declares_who_may_use_it(app):
    undeclared = [e for e, _m, _r in _routes(app) if endpoint_access(app, e) is None]
    assert undeclared == []


def test_endpoint_without_declaration_is_refused(app, client_as):
    @app.get("/forgotten")
    def forgotten():
        return "should never be served"

    admin = client_as("admin")
    response = admin.get("/forgotten")
    assert response.status_code == 403
    assert "should never be served" not in response.get_data(as_text=True)


def test_every_endpoint_is_in_the_authorization_matrix(app):
    routes = {(e, m) for e, m, _r in _routes(app)}
    assert sorted(routes - set(MATRIX)) == [], "add these to MATRIX"
    assert sorted(set(MATRIX) - routes) == [], "MATRIX names routes that do not exist"


def _outcome(response) -> str:
    """What the response means, precisely: the login gate (401, or a redirect to the
    sign-in page), the permission check (403 with its page), a CSRF refusal, or the page
    itself — which shows (200), acts (a redirect elsewhere) or refuses the empty form it
    was sent (400 with the form)."""
    location = response.headers.get("Location", "")
    body = response.get_data(as_text=True)
    if response.status_code == 401 or (
        response.status_code == 302 and location.startswith("/login?next=")
    ):
        return LOGIN
    if response.status_code == 403:
        assert "You do not have permission to open this page." in body
        return DENY
    if response.status_code == 400 and any(text in body for text in CSRF_REFUSALS):
        return CSRF_REFUSED
    if response.status_code == 404:
        return NOT_FOUND
    if response.status_code in (200, 302, 400):
        return OK
    return f"unexpected {response.status_code}"


@pytest.fixture
def records(route_records) -> dict[str, int]:
    """Every URL rule's variables (``route_records``: every domain's included)."""
    return route_records


@pytest.fixture
def target_user(make_user) -> int:
    return make_user("staff", username="target-user")


@pytest.mark.parametrize("role", ROLES)
def test_authorization_matrix(app, role, make_user, username_of, records):
    # One user of the role, signed in afresh for every endpoint: each request is measured
    # on a session of its own (a POST may end it, as signing out does).
    username = None if role == "anonymous" else username_of(make_user(role))

    def new_client():
        client = app.test_client()
        if username is not None:
            signed_in = login(client, username)
            assert signed_in.headers.get("Location") == "/", f"{role} could not sign in"
        return client

    mismatches = []
    for endpoint, method, rule in _routes(app):
        client = new_client()
        # A valid token for this client's session (the sign-in page, or the home page's
        # "Sign out" form once signed in), so the permission is what a POST measures.
        token = client.csrf_token("/login")
        given = {**URL_VALUES, **ENDPOINT_VALUES.get(endpoint, {})}
        values = {k: records.get(k, given.get(k)) for k in rule.arguments}
        with app.test_request_context():
            from flask import url_for

            url = url_for(endpoint, **values)
        if method == "GET":
            response = client.get(url)
        else:
            response = client.open(url, method=method, data={"csrf_token": token})
        got = _outcome(response)
        response.close()
        if got == CSRF_REFUSED:
            mismatches.append(f"{method} {url}: refused by the CSRF check, not measured")
            continue
        expected = MATRIX[(endpoint, method)][role]
        if got != expected:
            mismatches.append(
                f"{method} {url}: expected {expected}, got {got} ({response.status_code})"
            )
    assert mismatches == []


def test_anonymous_is_sent_to_login_with_the_page_to_return_to(client):
    response = client.get("/admin/users/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/admin/users/"


def test_signed_in_user_returns_to_requested_page(client, make_user, username_of):
    name = username_of(make_user("admin"))
    # The form posts to the page it was shown on, which carries ?next=.
    response = login(client, name, url="/login?next=/admin/users/")
    assert response.headers["Location"] == "/admin/users/"


def test_the_matrix_tells_a_csrf_refusal_from_the_permission_it_measures(client_as):
    """The POST half of a row measures the permission only with a valid token: without
    one, the allowed role's answer is the CSRF refusal, which the matrix reports."""
    clinician, staff = client_as("clinician"), client_as("staff")
    bad = {"csrf_token": "not-a-token"}
    assert _outcome(clinician.post("/patients/break-glass", data=bad)) == CSRF_REFUSED
    good = {"csrf_token": clinician.csrf_token("/login")}
    allowed = clinician.post("/patients/break-glass", data=good)
    assert _outcome(allowed) == OK
    assert allowed.status_code == 200  # the empty form, shown again with its errors
    # The role without the permission is refused by the permission, token or not.
    assert _outcome(staff.post("/patients/break-glass", data=bad)) == DENY
    assert (
        _outcome(staff.post("/patients/break-glass", data={"csrf_token": staff.csrf_token("/")}))
        == DENY
    )
