"""The audit viewer as an administrator uses it: each event's time in its site's zone
beside UTC, a patient found by MRN or name inside the administrator's sites, a user by
the start of their username, and a clear answer when nothing can match."""

from __future__ import annotations

import datetime as dt
import re
from contextlib import contextmanager
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.audit.forms import REVERSED_RANGE_MESSAGE
from clinic.audit.models import AuditEvent
from clinic.extensions import db
from clinic.patients.models import Patient

CASE_RE = re.compile(r"case&#34;:&#34;([\w-]+)&#34;")


def cases_on_page(response) -> set[str]:
    return set(CASE_RE.findall(response.get_data(as_text=True)))


def mrn_of(app, patient_id: int) -> str:
    with app.app_context():
        return db.session.get(Patient, patient_id).mrn


def denials(app, user_id) -> list[tuple]:
    with app.app_context():
        found = db.session.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.action == AuditAction.ACCESS_DENIED, AuditEvent.user_id == user_id
            )
        ).all()
        return [(e.entity_type, e.entity_id, e.patient_id) for e in found]


@contextmanager
def count_statements(app):
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def world(app, site, make_site, make_user, make_patient):
    east = make_site("EAST", "Eastside Recovery Center", timezone="America/New_York")
    w = {
        "main": site,
        "east": east,
        "ana": make_patient("Ana", "Torres", date_of_birth=dt.date(1991, 7, 30)),
        "ana2": make_patient("Ana", "Torres", date_of_birth=dt.date(1991, 7, 30)),
        "ben": make_patient("Ben", "Okafor"),
        "east_ed": make_patient("Ed", "Ng", site_id=east),
        "main_nurse": make_user("clinician", username="main-nurse"),
        "main_nurse2": make_user("clinician", username="main-nurse2"),
        "east_nurse": make_user("clinician", username="east-nurse", site_ids=[east]),
    }
    with app.app_context():
        for key in ("ana", "ana2", "ben", "east_ed"):
            patient = db.session.get(Patient, w[key])
            record(
                AuditAction.VIEW,
                actor=None,
                patient_id=patient.id,
                site_id=patient.site_id,
                details={"case": key},
            )
        for key in ("main_nurse", "main_nurse2", "east_nurse"):
            record(
                AuditAction.VIEW,
                actor=db.session.get(User, w[key]),
                entity_type="audit_log",
                details={"case": key},
            )
        db.session.commit()
    return w


# --- time -----------------------------------------------------------------------------------


def test_each_event_shows_its_site_time_beside_utc(app, client_as, world):
    admin = client_as("admin", site_ids=[world["main"], world["east"]])
    page = admin.get("/admin/audit/?patient=" + mrn_of(app, world["ben"])).get_data(as_text=True)
    with app.app_context():
        at = db.session.scalar(
            sa.select(AuditEvent.occurred_at).where(AuditEvent.patient_id == world["ben"])
        )
    chicago = at.astimezone(ZoneInfo("America/Chicago"))
    assert chicago.strftime("%d %b %Y %H:%M %Z") in page
    assert at.strftime("%Y-%m-%d %H:%M UTC") in page


def test_an_event_without_a_site_shows_the_viewers_first_site_time(app, client_as, world):

    admin = client_as("admin", site_ids=[world["east"]])  # EAST (New York) only
    page = admin.get("/admin/audit/?user=east-nurse").get_data(as_text=True)
    with app.app_context():
        at = db.session.scalar(
            sa.select(AuditEvent.occurred_at).where(AuditEvent.user_id == world["east_nurse"])
        )
    assert at.astimezone(ZoneInfo("America/New_York")).strftime("%d %b %Y %H:%M %Z") in page


def test_an_administrator_without_sites_sees_utc_for_events_without_a_site(app, client_as, world):
    admin = client_as("admin", all_sites=True, site_ids=[])
    page = admin.get("/admin/audit/?user=east-nurse").get_data(as_text=True)
    assert re.search(r"<time[^>]*>\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>", page)


# --- the patient filter ------------------------------------------------------------------------


def test_a_patient_is_found_by_mrn_in_any_case(app, client_as, world):
    admin = client_as("admin")
    mrn = mrn_of(app, world["ben"])
    assert cases_on_page(admin.get(f"/admin/audit/?patient={mrn.lower()}")) == {"ben"}
    # The page names the patient by MRN, not by internal id.
    assert f">{mrn}<" in admin.get(f"/admin/audit/?patient={mrn}").get_data(as_text=True)


def test_a_name_matching_one_patient_filters_by_that_patient(client_as, world):
    admin = client_as("admin")
    assert cases_on_page(admin.get("/admin/audit/?patient=okafor")) == {"ben"}
    assert cases_on_page(admin.get("/admin/audit/?patient=ben+oka")) == {"ben"}


def test_a_name_matching_several_patients_asks_to_choose(app, client_as, world):
    admin = client_as("admin")
    response = admin.get("/admin/audit/?patient=torres&action=view")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Several patients match" in page and "choose one" in page
    assert cases_on_page(response) == set()
    for key in ("ana", "ana2"):
        mrn = mrn_of(app, world[key])
        # Each choice keeps the other filters and names the patient by MRN.
        assert f'href="/admin/audit/?patient={mrn}&amp;action=view"' in page
        assert f"MRN {mrn}, Main Street Clinic" in page
    assert "born 30 Jul 1991" in page
    assert denials(app, admin.user_id) == []


def test_a_name_at_another_site_only_matches_nothing_and_discloses_nothing(app, client_as, world):
    admin = client_as("admin")  # MAIN only
    response = admin.get("/admin/audit/?patient=ng")
    page = response.get_data(as_text=True)
    assert "No patient at your sites matches \u201cng\u201d." in page
    assert cases_on_page(response) == set()
    assert mrn_of(app, world["east_ed"]) not in page


def test_an_mrn_at_another_site_is_refused_on_record_and_shows_nothing(app, client_as, world):
    admin = client_as("admin")  # MAIN only
    mrn = mrn_of(app, world["east_ed"])
    response = admin.get(f"/admin/audit/?patient={mrn}")
    assert response.status_code == 200
    assert cases_on_page(response) == set()
    assert f"No patient at your sites has the MRN {mrn}." in response.get_data(as_text=True)
    assert denials(app, admin.user_id) == [("patient", str(world["east_ed"]), world["east_ed"])]
    # An organisation administrator finds the same MRN.
    org = client_as("admin", all_sites=True, site_ids=[])
    assert cases_on_page(org.get(f"/admin/audit/?patient={mrn}")) == {"east_ed"}


def test_an_internal_id_is_not_a_patient_filter(app, client_as, world):
    admin = client_as("admin")
    response = admin.get(f"/admin/audit/?patient={world['ben']}")
    assert cases_on_page(response) == set()
    assert "No patient at your sites matches" in response.get_data(as_text=True)


# --- the user filter -----------------------------------------------------------------------


def test_a_username_prefix_finds_every_user_it_starts(client_as, world):
    admin = client_as("admin")
    assert cases_on_page(admin.get("/admin/audit/?user=main-")) == {"main_nurse", "main_nurse2"}
    assert cases_on_page(admin.get("/admin/audit/?user=MAIN-NURSE2")) == {"main_nurse2"}
    assert cases_on_page(admin.get("/admin/audit/?user=+main-nurse2+")) == {"main_nurse2"}


@pytest.mark.parametrize("typed", ["m%", "main_nurse", "%", "_"])
def test_wildcards_in_a_username_are_plain_characters(client_as, world, typed):
    admin = client_as("admin", all_sites=True, site_ids=[])
    response = admin.get("/admin/audit/", query_string={"user": typed})
    assert cases_on_page(response) == set()
    assert "No user at your sites has a username starting with" in response.get_data(as_text=True)


def test_a_prefix_of_users_at_another_site_only_finds_no_one(app, client_as, world):
    admin = client_as("admin")  # MAIN only
    response = admin.get("/admin/audit/?user=east")
    assert cases_on_page(response) == set()
    assert "No user at your sites has a username starting with \u201ceast\u201d." in (
        response.get_data(as_text=True)
    )
    # Only an exact username names someone, so only that is a refused lookup.
    assert denials(app, admin.user_id) == []
    admin.get("/admin/audit/?user=east-nurse")
    assert denials(app, admin.user_id) == [("user", str(world["east_nurse"]), None)]


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "refused"),
    [
        ("2026-02-02", "2026-02-01", True),
        ("2026-02-02", "2026-02-02", False),
        ("2026-02-02", "2026-02-03", False),
    ],
)
def test_a_reversed_date_range_says_so_next_to_the_field(client_as, world, start, end, refused):
    response = client_as("admin").get(f"/admin/audit/?date_from={start}&date_to={end}")
    page = response.get_data(as_text=True)
    assert response.status_code == (400 if refused else 200)
    error = re.search(r'id="date_to-error"[^>]*>([^<]*)<', page)
    assert (error is not None and REVERSED_RANGE_MESSAGE in error.group(1)) is refused


# --- cost -----------------------------------------------------------------------------------


def test_a_page_takes_the_same_statements_for_few_or_many_events(app, client_as, world):
    admin = client_as("admin", all_sites=True, site_ids=[])
    admin.get("/admin/audit/")  # warm up
    with count_statements(app) as few:
        assert admin.get("/admin/audit/").status_code == 200
    with app.app_context():
        patients = db.session.scalars(sa.select(Patient)).all()
        for i in range(60):
            patient = patients[i % len(patients)]
            record(AuditAction.VIEW, actor=None, patient_id=patient.id, site_id=patient.site_id)
        db.session.commit()
    with count_statements(app) as many:
        assert admin.get("/admin/audit/").status_code == 200
    assert len(many) == len(few)


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_administrators_read_the_trail(client_as, world, role):
    client = client_as(role)
    assert client.get("/admin/audit/?patient=torres").status_code == 403
    assert client.get("/admin/audit/export.csv?user=main").status_code == 403
