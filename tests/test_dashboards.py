"""Each role's home page is its dashboard (issue 14, "Home pages"): clinicians see today's
sessions, unsigned notes, the dosing review, caseload alerts, take-home reviews and
call-backs; staff see referrals, follow-ups, expiring consents, today's random tests and
call-backs; administrators see the census, the month's admissions and discharges,
emergency accesses to acknowledge and locked-out accounts. Counts are of the user's sites
only, each tile links to a page the user may open, and the statements a dashboard runs do
not grow with the data."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import uuid

import pytest
import sqlalchemy as sa
import time_machine

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.main import dashboards
from clinic.patients.models import Enrollment, Patient
from clinic.security import ROLE_PERMISSIONS, Permission, Role
from clinic.sites.models import Site
from clinic.sites.time import site_today
from tests.conftest import PASSWORD, login

# Wednesday 18 March 2026, noon at the MAIN site (America/Chicago, CDT).
NOW = dt.datetime(2026, 3, 18, 17, 0, tzinfo=dt.UTC)
TODAY = dt.date(2026, 3, 18)


@pytest.fixture(autouse=True)
def site_noon():
    with time_machine.travel(NOW, tick=True):
        yield


@pytest.fixture
def east(make_site) -> int:
    return make_site("EAST", "East Side Clinic")


def _tag() -> str:
    return uuid.uuid4().hex[:6]


def _signed_in(app, user_id: int):
    client = app.test_client()
    with app.app_context():
        username = db.session.get(User, user_id).username
    assert login(client, username, PASSWORD).status_code == 302
    return client


def _dashboard_html(html: str) -> str:
    return html.split('id="dashboard"', 1)[1].split("Shortcuts", 1)[0]


def _tiles(html: str) -> set[str]:
    return set(re.findall(r'data-tile="([^"]+)"', html))


def _tile(html: str, key: str) -> str:
    part = html.split(f'data-tile="{key}"', 1)[1]
    return part.split("data-tile=", 1)[0]


def _links(html: str) -> list[str]:
    return sorted(set(re.findall(r'href="([^"]+)"', _dashboard_html(html))))


def _count_statements(app, fn) -> int:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        fn()
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    return len(statements)


# --- the worlds ---------------------------------------------------------------------------


@pytest.fixture
def clinician_world(app, site, east, make_user, make_patient, make_program, make_enrollment):
    """``make(counselor, prescriber, site_id)``: at that site, a patient on the
    counselor's caseload admitted 60 days ago to a methadone OTP (no examination yet: three
    overdue deadlines; one random test due), on an order since 5 days ago with no dose
    (5 missed days: on the dosing review), a session with the counselor today at 15:00 and
    its draft note, and an approved 28-day take-home decision (a call-back due). Returns
    the patient id."""
    from clinic.therapy import notes, sessions
    from tests.conftest import order_factory
    from tests.routes_bottles import make_decision

    make_order = order_factory(app)
    minutes = itertools.count(0, 5)  # one clinician's sessions never start together

    def make(counselor: int, prescriber: int, site_id: int, *, session: bool = True) -> int:
        admitted = TODAY - dt.timedelta(days=60)
        patient = make_patient(f"Pat{_tag()}", "Caseload", site_id=site_id)
        program = make_program(f"OTP {_tag()}", site_id=site_id)
        enrollment = make_enrollment(patient, program, admitted_on=admitted)
        make_order(enrollment, prescriber, start_on=TODAY - dt.timedelta(days=5))
        with app.test_request_context():
            db.session.get(Enrollment, enrollment).primary_counselor_id = counselor
            make_decision(
                patient, start_on=TODAY - dt.timedelta(days=10), days=28, user_id=prescriber
            )
            db.session.commit()
            if session:
                the_patient = db.session.get(Patient, patient)
                planned = sessions.plan_session(
                    actor=db.session.get(User, counselor),
                    plan=sessions.SessionPlan(
                        site_id=site_id,
                        starts_at=dt.datetime(2026, 3, 18, 20, 0, tzinfo=dt.UTC)
                        + dt.timedelta(minutes=next(minutes)),
                        duration_minutes=50,
                        kind="individual",
                        modality="cbt",
                        setting="in_person",
                        patient_ids=[the_patient.id],
                    ),
                )
                notes.save_draft(
                    planned,
                    actor=db.session.get(User, counselor),
                    text="Private draft wording.",
                    attendee=planned.attendees[0],
                )
                db.session.commit()
        return patient

    return make


def _referral(app, patient_id: int, staff_id: int, *, follow_up_on: dt.date | None) -> int:
    from clinic.aftercare import referrals
    from clinic.aftercare.models import AftercareResource

    with app.test_request_context():
        resource = AftercareResource(
            name=f"House {_tag()}",
            kind="recovery_residence",
            accepts_moud="yes",
            accepts_methadone="unknown",
            gender_served="all",
        )
        db.session.add(resource)
        db.session.flush()
        referral = referrals.create_referral(
            db.session.get(Patient, patient_id),
            actor=db.session.get(User, staff_id),
            resource_id=resource.id,
            reason="Housing after treatment",
        )
        referral.follow_up_on = follow_up_on
        db.session.commit()
        return referral.id


def _consent(app, patient_id: int, program_id: int, staff_id: int, expires_on: dt.date):
    from tests.test_aftercare_referrals import make_consent

    make_consent(
        app,
        {"patient_id": patient_id, "program_id": program_id, "staff": staff_id},
        person=None,
        recipient_class="residences",
        expires_on=expires_on,
    )


def _drawn_today(app, site_id: int, patient_id: int) -> None:
    from clinic.medications.drug_test_models import RandomTestDraw, RandomTestSelection

    with app.app_context():
        site = db.session.get(Site, site_id)
        draw = db.session.scalar(
            sa.select(RandomTestDraw).where(
                RandomTestDraw.site_id == site_id, RandomTestDraw.draw_on == site_today(site)
            )
        )
        if draw is None:  # one draw a site and day
            draw = RandomTestDraw(
                site_id=site_id, draw_on=site_today(site), seed=_tag(), eligible_count=1
            )
            db.session.add(draw)
            db.session.flush()
        db.session.add(RandomTestSelection(draw_id=draw.id, patient_id=patient_id, probability=50))
        db.session.commit()


@pytest.fixture
def staff_world(app, make_patient, make_program, make_enrollment):
    """``make(staff, site_id)``: at that site, a patient in a program with a referral due
    for follow-up yesterday, a draft referral with no follow-up, a consent expiring in 10
    days and one in 60, and a random test drawn today not collected. Returns the patient."""

    def make(staff: int, site_id: int) -> int:
        patient = make_patient(f"Staffpat{_tag()}", "Aftercare", site_id=site_id)
        program = make_program(f"Outpatient {_tag()}", kind="outpatient", site_id=site_id)
        make_enrollment(patient, program, admitted_on=TODAY - dt.timedelta(days=30), level="3:1")
        _referral(app, patient, staff, follow_up_on=TODAY - dt.timedelta(days=1))
        _referral(app, patient, staff, follow_up_on=None)
        _consent(app, patient, program, staff, TODAY + dt.timedelta(days=10))
        _consent(app, patient, program, staff, TODAY + dt.timedelta(days=60))
        _drawn_today(app, site_id, patient)
        return patient

    return make


@pytest.fixture
def admin_world(app, make_user, make_patient, make_program, make_enrollment):
    """``make(site_id)``: at that site, a program with two patients admitted this month
    (2 and 10 March) and one admitted in February and discharged on 5 March; a staff
    account locked out for 10 more minutes; an emergency access not yet acknowledged.
    Returns the program id."""
    from clinic.audit.models import BreakGlassGrant

    def make(site_id: int) -> int:
        program = make_program(f"OTP {_tag()}", site_id=site_id)
        for day in (dt.date(2026, 3, 2), dt.date(2026, 3, 10)):
            patient = make_patient(f"Adm{_tag()}", "Census", site_id=site_id)
            make_enrollment(patient, program, admitted_on=day)
        left = make_patient(f"Left{_tag()}", "Census", site_id=site_id)
        enrollment = make_enrollment(left, program, admitted_on=dt.date(2026, 2, 1))
        locked = make_user("staff", site_ids=[site_id], full_name="Lockie Out")
        clinician = make_user("clinician", site_ids=[site_id])
        with app.app_context():
            row = db.session.get(Enrollment, enrollment)
            row.discharged_on = dt.date(2026, 3, 5)
            row.discharge_reason = 1
            db.session.get(User, locked).locked_until = NOW + dt.timedelta(minutes=10)
            db.session.add(
                BreakGlassGrant(
                    user_id=clinician,
                    patient_id=left,
                    reason="Overdose in the waiting room",
                    granted_at=NOW - dt.timedelta(hours=1),
                    expires_at=NOW + dt.timedelta(hours=3),
                )
            )
            db.session.commit()
        return program

    return make


def _board(app, user_id: int):
    with app.test_request_context():
        return dashboards.dashboard_for(db.session.get(User, user_id))


# --- clinicians ---------------------------------------------------------------------------


def test_a_clinicians_dashboard_counts_their_day_their_notes_and_their_caseload(
    app, site, east, make_user, clinician_world
):
    counselor = make_user("clinician", full_name="Casey Counselor")
    prescriber = make_user("clinician", is_prescriber=True)
    clinician_world(counselor, prescriber, site)
    # Another site's patient and another clinician's session: never counted.
    east_counselor = make_user("clinician", site_ids=[east])
    east_prescriber = make_user("clinician", is_prescriber=True, site_ids=[east])
    clinician_world(east_counselor, east_prescriber, east)

    board = _board(app, counselor)
    assert board.sessions.count == 1
    assert board.unsigned_notes.count == 1
    assert board.cosign_waiting == 0
    assert board.dosing_review.count == 1
    assert board.dosing_review.items[0].fact == "5 missed days"
    assert board.caseload == dashboards.CaseloadAlerts(
        patients=1, missed_doses=1, tests_due=1, deadlines_due=3, no_recent_session=1
    )
    assert board.call_backs.count == 1
    assert board.take_homes.awaiting_approval is None  # not a prescriber

    html = _signed_in(app, counselor).get("/").get_data(as_text=True)
    assert 'id="home-q"' in html
    assert _tiles(html) == {
        "sessions",
        "unsigned-notes",
        "dosing-review",
        "caseload",
        "take-homes",
        "call-backs",
    }
    assert "1</span> session today" in _tile(html, "sessions")
    assert "1</span> draft note to sign" in _tile(html, "unsigned-notes")
    assert "3 deadlines due or overdue" in _tile(html, "caseload")
    assert "1 patient due a random drug test" in _tile(html, "caseload")
    assert "Private draft wording" not in html  # a tile never shows note text


def test_a_prescriber_sees_the_decisions_awaiting_approval(app, site, make_user):
    prescriber = make_user("clinician", is_prescriber=True)
    board = _board(app, prescriber)
    assert board.take_homes.awaiting_approval == 0


def test_a_clinician_with_nothing_to_do_sees_empty_tiles(app, site, make_user):
    clinician = make_user("clinician")
    html = _signed_in(app, clinician).get("/").get_data(as_text=True)
    for words in (
        "No sessions today.",
        "No unsigned notes.",
        "No missed days to review.",
        "No patients on your caseload.",
        "No take-home reviews due.",
        "No call-backs due.",
    ):
        assert words in html


# --- staff --------------------------------------------------------------------------------


def test_staffs_dashboard_counts_referrals_consents_and_todays_tests_at_their_sites(
    app, site, east, make_user, staff_world
):
    staff = make_user("staff")
    staff_world(staff, site)
    east_staff = make_user("staff", site_ids=[east])
    staff_world(east_staff, east)

    board = _board(app, staff)
    assert dict(board.referrals.by_status)["draft"] == 2
    assert board.referrals.total == 2
    assert board.follow_ups.count == 1
    assert board.consents_expiring.count == 1
    assert board.tests_today.count == 1
    assert board.call_backs.count == 0

    html = _signed_in(app, staff).get("/").get_data(as_text=True)
    assert _tiles(html) == {"referrals", "follow-ups", "consents", "tests-today", "call-backs"}
    assert "2</span> open referrals" in _tile(html, "referrals")
    assert "1</span> referral to follow up" in _tile(html, "follow-ups")
    assert "1</span> consent expires within 30 days" in _tile(html, "consents")
    assert "No call-backs due." in _tile(html, "call-backs")


def test_staff_see_no_medication_details_on_their_dashboard(app, site, make_user, clinician_world):
    counselor = make_user("clinician")
    prescriber = make_user("clinician", is_prescriber=True)
    clinician_world(counselor, prescriber, site, session=False)
    staff = make_user("staff")
    html = _signed_in(app, staff).get("/").get_data(as_text=True)
    tiles = _dashboard_html(html)
    assert "1</span> patient due a call-back" in tiles
    for word in ("methadone", "Methadone", " mg", "missed day", "dose"):
        assert word not in tiles


def test_a_staff_member_with_nothing_to_do_sees_empty_tiles(app, site, make_user):
    staff = make_user("staff")
    html = _signed_in(app, staff).get("/").get_data(as_text=True)
    for words in (
        "No open referrals.",
        "No follow-ups due.",
        "No consents expire within 30 days.",
        "No random tests left to collect today.",
        "No call-backs due.",
    ):
        assert words in html


def test_a_tile_whose_page_the_role_cannot_open_is_not_shown(app, site, make_user, monkeypatch):
    staff = make_user("staff")
    admin = make_user("admin")
    monkeypatch.setitem(
        ROLE_PERMISSIONS, Role.STAFF, ROLE_PERMISSIONS[Role.STAFF] - {Permission.TESTS_DUE}
    )
    monkeypatch.setitem(
        ROLE_PERMISSIONS, Role.ADMIN, ROLE_PERMISSIONS[Role.ADMIN] - {Permission.REPORTS_READ}
    )
    staff_html = _signed_in(app, staff).get("/").get_data(as_text=True)
    assert _tiles(staff_html) == {"referrals", "follow-ups", "consents"}
    admin_html = _signed_in(app, admin).get("/").get_data(as_text=True)
    assert _tiles(admin_html) == {"break-glass", "locked-users"}


# --- administrators -----------------------------------------------------------------------


def test_an_administrators_dashboard_counts_the_census_the_month_and_what_to_review(
    app, site, east, make_user, admin_world
):
    admin = make_user("admin")
    program = admin_world(site)
    admin_world(east)  # another site: none of it counted

    board = _board(app, admin)
    assert [(r.site_code, r.program_id, r.patients) for r in board.census.rows] == [
        ("MAIN", program, 2)
    ]
    assert board.census.total == 2
    assert board.month == dashboards.MonthFlow(dt.date(2026, 3, 1), 2, 1)
    assert board.break_glass.count == 1
    assert board.locked_users.count == 1
    assert board.reports is True

    html = _signed_in(app, admin).get("/").get_data(as_text=True)
    assert _tiles(html) == {"census", "month", "break-glass", "locked-users", "reports"}
    assert "2</span> active enrollments" in _tile(html, "census")
    assert "2</span> admissions" in _tile(html, "month")
    assert "1</span> discharge" in _tile(html, "month")
    assert "Lockie Out" in _tile(html, "locked-users")
    assert "Overdose in the waiting room" not in html  # the reason is on the review page


def test_an_organisation_wide_administrator_counts_every_site(
    app, site, east, make_user, admin_world
):
    admin = make_user("admin", all_sites=True)
    admin_world(site)
    admin_world(east)
    board = _board(app, admin)
    assert board.census.total == 4
    assert (board.month.admissions, board.month.discharges) == (4, 2)
    assert board.break_glass.count == 2
    assert board.locked_users.count == 2


def test_an_administrator_with_nothing_to_review_sees_empty_tiles(app, site, make_user):
    admin = make_user("admin")
    html = _signed_in(app, admin).get("/").get_data(as_text=True)
    for words in (
        "No active enrollments.",
        "No emergency accesses to acknowledge.",
        "No accounts locked out.",
    ):
        assert words in html


# --- every role ---------------------------------------------------------------------------


def test_every_tile_links_to_a_page_the_role_may_open(
    app, site, make_user, clinician_world, staff_world, admin_world
):
    counselor = make_user("clinician")
    prescriber = make_user("clinician", is_prescriber=True)
    clinician_world(counselor, prescriber, site)
    staff = make_user("staff")
    staff_world(staff, site)
    admin = make_user("admin")
    admin_world(site)
    for user_id in (counselor, prescriber, staff, admin):
        client = _signed_in(app, user_id)
        links = _links(client.get("/").get_data(as_text=True))
        assert links
        for link in links:
            response = client.get(link.replace("&amp;", "&"))
            assert response.status_code == 200, (user_id, link, response.status_code)


def test_the_home_page_names_each_patient_once_in_the_audit_trail(
    app, site, make_user, clinician_world
):
    from clinic.audit.models import AuditEvent

    counselor = make_user("clinician")
    prescriber = make_user("clinician", is_prescriber=True)
    patient = clinician_world(counselor, prescriber, site)
    _signed_in(app, counselor).get("/")
    with app.app_context():
        viewed = db.session.scalars(
            sa.select(AuditEvent.patient_id).where(
                AuditEvent.entity_type == "home_dashboard", AuditEvent.user_id == counselor
            )
        ).all()
    assert viewed == [patient]


@pytest.mark.parametrize("role", ["clinician", "staff", "admin"])
def test_a_dashboard_runs_as_many_statements_for_a_larger_data_set(
    app, site, make_user, role, clinician_world, staff_world, admin_world
):
    user = make_user(role, is_prescriber=role == "clinician")
    other = make_user("clinician", is_prescriber=True)

    def grow():
        if role == "clinician":
            clinician_world(user, other, site)
        elif role == "staff":
            staff_world(user, site)
        else:
            admin_world(site)

    def run():
        with app.test_request_context():
            dashboards.dashboard_for(db.session.get(User, user))

    grow()
    small = _count_statements(app, run)
    for _ in range(3):
        grow()
    larger = _count_statements(app, run)
    assert small == larger
    assert larger < 60
