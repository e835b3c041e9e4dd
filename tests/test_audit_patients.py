"""Auditing of patient records: every page that shows a patient records who saw it,
refusals are recorded, searches are recorded without their terms, break-glass access is
time-limited, flagged and reviewed, and the patient access report."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
import time_machine

from clinic.audit.models import AuditEvent, BreakGlassGrant
from clinic.extensions import db
from clinic.patients.models import Patient
from clinic.security import ROLE_PERMISSIONS, Permission, Role, endpoint_access
from tests.conftest import login
from tests.test_patients_registry import send

PATIENT_ARGS = {"patient_id", "enrollment_id"}
# The walks' clinician also prescribes and dispenses, so the medication pages that need
# those account flags (issue 10) are walked too.
FLAGS = {"clinician": {"is_prescriber": True, "may_dispense": True}}


def all_events(app, **where) -> list[AuditEvent]:
    with app.app_context():
        query = sa.select(AuditEvent).order_by(AuditEvent.seq)
        for key, value in where.items():
            query = query.where(getattr(AuditEvent, key) == value)
        found = list(db.session.scalars(query))
        db.session.expunge_all()
        return found


def max_seq(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.seq), 0)))


def events_after(app, seq: int) -> list[AuditEvent]:
    return [e for e in all_events(app) if e.seq > seq]


def mrn_of(app, patient_id: int) -> str:
    with app.app_context():
        return db.session.get(Patient, patient_id).mrn


def patient_rules(app) -> list:
    return sorted(
        (
            rule
            for rule in app.url_map.iter_rules()
            if "GET" in (rule.methods or set()) and PATIENT_ARGS & set(rule.arguments)
        ),
        key=lambda rule: rule.rule,
    )


def url_for_rule(rule, records: dict[str, int]) -> str:
    path = rule.rule
    for name in rule.arguments:
        path = path.replace(f"<int:{name}>", str(records[name]))
    assert "<" not in path, path
    return path


# --- coverage walk -------------------------------------------------------------------------


def test_every_patient_page_records_a_view_and_refuses_other_sites(
    app, client_as, make_site, records
):
    rules = patient_rules(app)
    assert len(rules) >= 8, [r.rule for r in rules]
    east = make_site("EAST")
    roles = ("admin", "clinician", "staff")
    home = {role: client_as(role, **FLAGS.get(role, {})) for role in roles}
    away = {role: client_as(role, site_ids=[east], **FLAGS.get(role, {})) for role in roles}
    patient_id = records["patient_id"]

    for rule in rules:
        url = url_for_rule(rule, records)
        candidates = ["admin"] if rule.endpoint.startswith("audit.") else list(home)
        role = None
        for candidate in candidates:
            before = max_seq(app)
            response = home[candidate].get(url)
            if response.status_code == 200:
                role = candidate
                break
        assert role is not None, f"no role may open {url}"
        viewed = [e for e in events_after(app, before) if e.patient_id == patient_id]
        assert viewed, f"{url} as {role} recorded no event for the patient"
        assert all(e.user_id == home[role].user_id for e in viewed)

        # The same role at another site: not found, and the refusal is recorded.
        before = max_seq(app)
        response = away[role].get(url)
        assert response.status_code == 404, f"{url} as {role} of EAST: {response.status_code}"
        denied = [
            e
            for e in events_after(app, before)
            if e.action.value == "access_denied"
            and e.outcome.value == "denied"
            and e.user_id == away[role].user_id
        ]
        assert denied, f"{url} as {role} of EAST recorded no access_denied event"


def test_clinician_of_another_site_is_refused_everywhere_with_404(
    app, client_as, make_site, records
):
    """The brief's literal case: a clinician of EAST on every patient page she may use."""
    east = make_site("EAST")
    clinician = client_as("clinician", site_ids=[east], **FLAGS["clinician"])
    for rule in patient_rules(app):
        needed = endpoint_access(app, rule.endpoint)
        if isinstance(needed, Permission) and needed not in ROLE_PERMISSIONS[Role.CLINICIAN]:
            continue  # not a clinician's page at all: 403 whatever the site
        before = max_seq(app)
        assert clinician.get(url_for_rule(rule, records)).status_code == 404, rule.rule
        denied = [
            e
            for e in events_after(app, before)
            if e.action.value == "access_denied" and e.outcome.value == "denied"
        ]
        assert [e.patient_id for e in denied] == [records["patient_id"]], rule.rule


# --- list and search -----------------------------------------------------------------------


def test_patient_search_is_recorded_without_the_search_text(app, client_as, make_patient):
    make_patient("Jo", "Smith")
    make_patient("Ann", "Smith", date_of_birth=dt.date(1991, 7, 30))
    make_patient("Ann", "Torres")
    staff = client_as("staff")
    before = max_seq(app)
    response = staff.get("/patients/?q=Smith")
    assert response.status_code == 200
    assert "Smith, Jo" in response.get_data(as_text=True)
    assert staff.get("/patients/").status_code == 200
    new = events_after(app, before)
    lists = [e for e in new if e.entity_type == "patient_list"]
    assert len(lists) == 2
    assert '"searched":true' in lists[0].details
    assert '"searched":false' in lists[1].details
    assert all(e.user_id == staff.user_id for e in lists)
    for event in all_events(app):
        assert "Smith" not in event.details
        assert "smith" not in event.details.lower()


# --- break-glass ---------------------------------------------------------------------------


@pytest.fixture
def east_clinician(client_as, make_site):
    east = make_site("EAST")
    clinician = client_as("clinician", site_ids=[east])
    clinician.east = east
    return clinician


def break_glass(client, mrn: str, reason: str = "Patient arrived unconscious at EAST ER"):
    return send(
        client, "/patients/break-glass", {"mrn": mrn, "reason": reason}, follow_redirects=True
    )


def test_break_glass_opens_a_chart_at_another_site_and_flags_every_view(
    app, east_clinician, make_patient
):
    patient = make_patient()
    before = max_seq(app)
    response = break_glass(east_clinician, mrn_of(app, patient).lower())
    assert response.status_code == 200
    assert response.request.path == f"/patients/{patient}"
    page = response.get_data(as_text=True)
    assert "You opened this record with emergency access" in page

    new = events_after(app, before)
    grants = [e for e in new if e.action.value == "break_glass"]
    assert len(grants) == 1
    assert grants[0].patient_id == patient
    assert grants[0].user_id == east_clinician.user_id
    assert "Patient arrived" not in grants[0].details  # the reason is not in the event

    assert east_clinician.get(f"/patients/{patient}").status_code == 200
    views = [
        e
        for e in events_after(app, before)
        if e.action.value == "view" and e.entity_type == "patient"
    ]
    assert len(views) == 2
    assert all('"break_glass":true' in e.details for e in views)
    assert all(e.patient_id == patient for e in views)


def test_break_glass_opens_the_chart_and_nothing_more(
    app, east_clinician, make_patient, make_program, make_enrollment
):
    """Emergency access is read-only: every other page of the patient is refused (403,
    recorded against the patient) and nothing changes."""
    patient = make_patient()
    enrollment = make_enrollment(patient, make_program())
    assert break_glass(east_clinician, mrn_of(app, patient)).status_code == 200
    assert east_clinician.get(f"/patients/{patient}").status_code == 200
    before = max_seq(app)
    pages = [
        f"/patients/{patient}/admit",
        f"/patients/enrollments/{enrollment}/discharge",
        f"/patients/enrollments/{enrollment}/transfer",
        f"/patients/enrollments/{enrollment}/deadlines",
    ]
    for url in pages:
        assert east_clinician.get(url).status_code == 403, url
    token = east_clinician.csrf_token(f"/patients/{patient}")
    response = east_clinician.post(
        f"/patients/enrollments/{enrollment}/discharge",
        data={"discharged_on": "2026-02-01", "reason": "1", "csrf_token": token},
    )
    assert response.status_code == 403
    denied = [e for e in events_after(app, before) if e.action.value == "access_denied"]
    assert len(denied) == len(pages) + 1
    assert [e.patient_id for e in denied] == [patient] * len(denied)
    with app.app_context():
        from clinic.patients.models import Enrollment

        assert db.session.get(Enrollment, enrollment).discharged_on is None


def test_break_glass_refusals_give_a_message_and_no_grant(app, east_clinician, make_patient):
    main_patient = make_patient()
    own_patient = make_patient("Ed", "Ng", site_id=east_clinician.east)
    cases = [
        (mrn_of(app, main_patient), "too short", "between 10 and 500 characters"),
        ("MAIN-999999", "Patient arrived unconscious", "No patient has that medical record"),
        (mrn_of(app, own_patient), "Patient arrived unconscious", "This patient is at your site"),
    ]
    for mrn, reason, message in cases:
        response = break_glass(east_clinician, mrn, reason)
        assert response.status_code == 200
        assert response.request.path == "/patients/break-glass"
        assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(BreakGlassGrant.id))) == 0
    assert not [
        e
        for e in all_events(app, user_id=east_clinician.user_id)
        if e.action.value == "break_glass"
    ]
    assert east_clinician.get(f"/patients/{main_patient}").status_code == 404


def test_break_glass_expires_after_an_hour(app, east_clinician, make_patient, username_of):
    patient = make_patient()
    assert break_glass(east_clinician, mrn_of(app, patient)).status_code == 200
    assert east_clinician.get(f"/patients/{patient}").status_code == 200
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=61)
    with time_machine.travel(later, tick=False):
        # The idle timeout (15 minutes) has signed her out too: sign in again.
        fresh = app.test_client()
        assert login(fresh, username_of(east_clinician.user_id)).status_code == 302
        before = max_seq(app)
        assert fresh.get(f"/patients/{patient}").status_code == 404
        denied = [e for e in events_after(app, before) if e.action.value == "access_denied"]
        assert [e.patient_id for e in denied] == [patient]


@pytest.mark.parametrize(
    ("offset", "honoured"),
    [
        (-dt.timedelta(microseconds=1), True),
        (dt.timedelta(0), False),
        (dt.timedelta(microseconds=1), False),
    ],
    ids=["1us-before-expiry", "at-expiry", "1us-after-expiry"],
)
def test_break_glass_ends_at_the_exact_moment_it_expires(
    app, east_clinician, make_patient, offset, honoured
):
    """A grant is honoured strictly before ``expires_at``: at that instant it is over."""
    patient = make_patient()
    now = dt.datetime.now(dt.UTC)
    expires_at = now.replace(microsecond=500_000) + dt.timedelta(seconds=2)
    with app.app_context():
        db.session.add(
            BreakGlassGrant(
                user_id=east_clinician.user_id,
                patient_id=patient,
                reason="Unconscious at the EAST emergency room",
                granted_at=expires_at - dt.timedelta(minutes=60),
                expires_at=expires_at,
            )
        )
        db.session.commit()
    with time_machine.travel(expires_at + offset, tick=False):
        before = max_seq(app)
        response = east_clinician.get(f"/patients/{patient}")
        assert response.status_code == (200 if honoured else 404)
        denied = [e for e in events_after(app, before) if e.action.value == "access_denied"]
        assert [e.patient_id for e in denied] == ([] if honoured else [patient])


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_only_clinicians_may_break_glass(app, client_as, make_site, make_patient, role):
    patient = make_patient(site_id=make_site("EAST"))
    client = client_as(role)
    assert client.get("/patients/break-glass").status_code == 403
    # A valid CSRF token, so the permission is what refuses (not the token check).
    token = client.csrf_token("/patients/")
    response = client.post(
        "/patients/break-glass",
        data={"mrn": mrn_of(app, patient), "reason": "just because I can", "csrf_token": token},
    )
    assert response.status_code == 403
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(BreakGlassGrant.id))) == 0


def test_break_glass_waits_for_review_until_acknowledged(
    app, client_as, east_clinician, make_patient
):
    patient = make_patient()
    reason = "Overdose brought to EAST, needs dose history"
    assert break_glass(east_clinician, mrn_of(app, patient), reason).status_code == 200
    with app.app_context():
        grant_id = db.session.scalar(sa.select(BreakGlassGrant.id))

    admin = client_as("admin")
    listing = admin.get("/admin/audit/break-glass")
    assert listing.status_code == 200
    assert reason in listing.get_data(as_text=True)

    before = max_seq(app)
    response = send(
        admin,
        f"/admin/audit/break-glass/{grant_id}/acknowledge",
        {"outcome": "appropriate", "confirm": "y"},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "Acknowledged: the review&#39;s outcome is recorded." in response.get_data(as_text=True)
    acks = [e for e in events_after(app, before) if e.action.value == "acknowledge"]
    assert len(acks) == 1
    assert acks[0].user_id == admin.user_id
    assert acks[0].patient_id == patient
    assert acks[0].entity_id == str(grant_id)

    assert reason not in admin.get("/admin/audit/break-glass").get_data(as_text=True)
    everything = admin.get("/admin/audit/break-glass?show=all").get_data(as_text=True)
    assert reason in everything and "Appropriate" in everything


# --- the patient access report -------------------------------------------------------------


def test_access_report_lists_who_saw_the_patient_and_is_audited(
    app, client_as, make_patient, username_of, site
):
    patient = make_patient()
    clinician = client_as("clinician", full_name="Casey Clinician")
    staff = client_as("staff", full_name="Dana Desk")
    assert clinician.get(f"/patients/{patient}").status_code == 200
    assert (
        send(
            staff,
            f"/patients/{patient}/edit",
            {
                "first_name": "Jo",
                "last_name": "Smith",
                "date_of_birth": "1980-04-02",
                "sex_at_birth": "female",
                "primary_substance": "fentanyl",
                "intake_date": "2026-01-05",
                "phone": "312-555-0100",
                "site_id": str(site),
            },
            follow_redirects=True,
        ).status_code
        == 200
    )

    admin = client_as("admin")
    before = max_seq(app)
    response = admin.get(f"/admin/audit/patients/{patient}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    # Who, by name (a report a clinic can hand to the patient: no usernames).
    assert "Casey Clinician" in page and "Dana Desk" in page
    assert username_of(clinician.user_id) not in page
    assert mrn_of(app, patient) in page
    reports = [e for e in events_after(app, before) if e.entity_type == "patient_access_report"]
    assert len(reports) == 1
    assert reports[0].patient_id == patient and reports[0].user_id == admin.user_id

    # The report's own view shows up the next time it is opened.
    again = admin.get(f"/admin/audit/patients/{patient}").get_data(as_text=True)
    assert "Viewed this access report" in again


def test_access_report_is_site_scoped_and_admin_only(app, client_as, make_site, make_patient):
    east = make_site("EAST")
    east_patient = make_patient("Ed", "Ng", site_id=east)
    main_patient = make_patient()
    site_admin = client_as("admin")  # MAIN only
    before = max_seq(app)
    assert site_admin.get(f"/admin/audit/patients/{east_patient}").status_code == 404
    denied = [e for e in events_after(app, before) if e.action.value == "access_denied"]
    assert len(denied) == 1 and denied[0].outcome.value == "denied"
    assert site_admin.get("/admin/audit/patients/999999").status_code == 404

    clinician = client_as("clinician")
    before = max_seq(app)
    assert clinician.get(f"/admin/audit/patients/{main_patient}").status_code == 403
    denied = [e for e in events_after(app, before) if e.action.value == "access_denied"]
    assert len(denied) == 1 and denied[0].user_id == clinician.user_id


# --- the chain stays intact ----------------------------------------------------------------


def test_audit_verify_passes_after_mixed_patient_activity(
    app, client_as, make_site, make_program, make_patient, site
):
    east = make_site("EAST")
    program = make_program()
    existing = make_patient()
    staff = client_as("staff")
    clinician = client_as("clinician")
    stranger = client_as("clinician", site_ids=[east])
    admin = client_as("admin")

    response = send(
        staff,
        "/patients/new",
        {
            "first_name": "Ana",
            "last_name": "Torres",
            "date_of_birth": "1991-07-14",
            "sex_at_birth": "female",
            "primary_substance": "fentanyl",
            "intake_date": "2026-02-01",
            "site_id": str(site),
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    new_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    # One match: the search opens the chart directly.
    assert staff.get("/patients/?q=tor an").headers["Location"] == f"/patients/{new_id}"
    admitted = send(
        clinician,
        f"/patients/{new_id}/admit",
        {
            "program_id": str(program),
            "admitted_on": "2026-02-01",
            "level_of_care": "3:OTP",
            "primary_counselor_id": "0",
        },
    )
    assert admitted.status_code == 302, admitted.get_data(as_text=True)
    assert stranger.get(f"/patients/{existing}").status_code == 404
    assert break_glass(stranger, mrn_of(app, existing)).status_code == 200
    assert staff.get("/patients/break-glass").status_code == 403
    assert admin.get(f"/admin/audit/patients/{new_id}").status_code == 200
    assert admin.get("/admin/audit/break-glass").status_code == 200

    actions = {e.action.value for e in all_events(app)}
    assert {"view", "access_denied", "break_glass"} <= actions
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "Audit trail intact" in result.output


# --- bugs found while writing these tests ----------------------------------------------------

NEW_PATIENT = {
    "first_name": "Ana",
    "last_name": "Torres",
    "date_of_birth": "1991-07-14",
    "sex_at_birth": "female",
    "primary_substance": "fentanyl",
    "intake_date": "2026-02-01",
}


def test_single_site_staff_registers_a_patient_as_the_form_sends_it(app, client_as, site):
    staff = client_as("staff")
    before = max_seq(app)
    # The fields the page has: the one site travels in a hidden field.
    assert f'<input type="hidden" name="site_id" value="{site}">' in staff.get(
        "/patients/new"
    ).get_data(as_text=True)
    response = send(staff, "/patients/new", {**NEW_PATIENT, "site_id": str(site)})
    assert response.status_code == 302
    created = [e for e in events_after(app, before) if e.action.value == "create"]
    assert created and created[0].entity_type == "patient"


def test_duplicate_confirmation_checkbox_is_inside_the_form(client_as, make_patient, site):
    make_patient("Ana", "Torres", date_of_birth=dt.date(1991, 7, 14))
    staff = client_as("staff")
    response = send(staff, "/patients/new", {**NEW_PATIENT, "site_id": str(site)})
    html = response.get_data(as_text=True)
    assert 'data-testid="duplicates"' in html
    form_start = html.index('<form method="post" novalidate>')  # not the nav's sign-out form
    form_end = html.index("</form>", form_start)
    assert form_start < html.index('name="confirm_duplicate"') < form_end


def test_refused_access_report_is_attributed_to_the_patient(
    app, client_as, make_site, make_patient
):
    east_patient = make_patient("Ed", "Ng", site_id=make_site("EAST"))
    before = max_seq(app)
    assert client_as("admin").get(f"/admin/audit/patients/{east_patient}").status_code == 404
    denied = [e for e in events_after(app, before) if e.action.value == "access_denied"]
    assert [e.patient_id for e in denied] == [east_patient]


def test_a_refused_change_that_shows_the_page_again_is_recorded_as_a_view(
    app, client_as, make_patient
):
    patient = make_patient()
    staff = client_as("staff")
    before = max_seq(app)
    response = send(staff, f"/patients/{patient}/edit", {"first_name": "", "last_name": "Smith"})
    assert response.status_code == 200  # the form again, with its message
    after_get = [e for e in events_after(app, before) if e.patient_id == patient]
    # One view for the GET that fetched the form, one for the page shown again.
    assert [e.action.value for e in after_get] == ["view", "view"]
    assert all('"page":"patients.edit"' in e.details for e in after_get)


def test_a_successful_change_records_the_change_not_a_second_view(app, client_as, make_patient):
    patient = make_patient()
    staff = client_as("staff")
    form_page = staff.get(f"/patients/{patient}/edit").get_data(as_text=True)
    version = re.search(r'name="version" type="hidden" value="(\d+)"', form_page).group(1)
    before = max_seq(app)
    response = send(
        staff,
        f"/patients/{patient}/edit",
        {
            "site_id": "1",
            "first_name": "Joanna",
            "last_name": "Smith",
            "date_of_birth": "1980-04-02",
            "sex_at_birth": "female",
            "primary_substance": "fentanyl",
            "intake_date": "2026-01-05",
            "version": version,
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    actions = [e.action.value for e in events_after(app, before) if e.patient_id == patient]
    # The GET that fetched the form (by submit) and the change; no view for the POST.
    assert actions == ["view", "update"]
