"""Emergency access without the other site's MRN (issue 9): a clinician finds the patient
by name and date of birth across every site, sees site and MRN only, and the lookup is
recorded without what was typed; the menu and the "not found" page point to it; asking
for access twice while a grant is live gives the same grant, not a second one."""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import re

import pytest
import sqlalchemy as sa
import time_machine

from clinic.audit.models import AuditEvent, BreakGlassGrant
from clinic.extensions import db
from clinic.patients import emergency
from clinic.patients.models import Patient
from tests.conftest import login
from tests.test_patients_registry import field_error, hidden_fields, send

URL = "/patients/break-glass/find"
BORN = dt.date(1991, 7, 30)
REASON = "Unconscious at the EAST emergency room"
HINT = "A patient at another site can be opened through emergency access."


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def words_of(response) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", text_of(response)).split())


def events(app, after: int = 0) -> list[AuditEvent]:
    with app.app_context():
        rows = list(
            db.session.scalars(
                sa.select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq)
            )
        )
        for row in rows:
            db.session.expunge(row)
        return rows


def last_seq(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.seq), 0)))


def mrn_of(app, patient_id: int) -> str:
    with app.app_context():
        return db.session.get(Patient, patient_id).mrn


def grants(app) -> list[BreakGlassGrant]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(BreakGlassGrant).order_by(BreakGlassGrant.id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def lookup(client, name: str, born: str = BORN.isoformat()):
    return send(client, URL, {"name": name, "date_of_birth": born})


def matches(response) -> list[str]:
    """The rows of the results: their text, tags removed."""
    rows = re.findall(r'<tr data-testid="lookup-match">(.*?)</tr>', text_of(response), re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", r).split()) for r in rows]


@pytest.fixture
def world(app, site, make_site, make_patient, client_as):
    east = make_site("EAST", "Eastside Recovery Center")
    return {
        "east": east,
        "torres_main": make_patient("Ana", "Torres", date_of_birth=BORN),
        "torres_main_2": make_patient("Maria", "Torres", date_of_birth=BORN),
        "nunez": make_patient("José", "Núñez", date_of_birth=BORN),
        "torres_east": make_patient("Ana", "Torres", date_of_birth=BORN, site_id=east),
        "other_day": make_patient("Ana", "Torres", date_of_birth=dt.date(1991, 7, 31)),
        "clinician": client_as("clinician", site_ids=[east]),
    }


# --- the lookup ---------------------------------------------------------------------------


def test_lookup_finds_patients_of_every_site_and_shows_site_and_mrn_only(app, world):
    before = last_seq(app)
    response = lookup(world["clinician"], "torres")
    assert response.status_code == 200
    rows = matches(response)
    main_mrns = {mrn_of(app, world["torres_main"]), mrn_of(app, world["torres_main_2"])}
    assert len(rows) == 3
    for mrn in main_mrns:
        [row] = [r for r in rows if mrn in r]
        assert row.startswith("MAIN — Main Street Clinic")
        assert "Request emergency access" in row
    page = text_of(response)
    # Nothing of the records: no first names (not typed), no sex, phone, programs.
    assert "Maria" not in page and "Female" not in page
    assert f'href="/patients/break-glass?mrn={mrn_of(app, world["torres_main"])}"' in page
    # Born another day: not found.
    assert mrn_of(app, world["other_day"]) not in page
    # Recorded: the number of matches and each other-site patient shown; never the terms.
    new = events(app, before)
    [summary] = [e for e in new if e.entity_type == "break_glass_lookup" and e.patient_id is None]
    assert '"results":3' in summary.details.replace(" ", "")
    shown = {e.patient_id for e in new if e.entity_type == "break_glass_lookup" and e.patient_id}
    assert shown == {world["torres_main"], world["torres_main_2"]}
    for event in new:
        assert "torres" not in (event.details or "").lower()
        assert "1991" not in (event.details or "")


def test_own_site_patient_is_a_link_to_the_chart_not_emergency_access(app, world):
    response = lookup(world["clinician"], "Torres, Ana")
    rows = matches(response)
    own = [r for r in rows if mrn_of(app, world["torres_east"]) in r]
    assert own and "Open the chart" in own[0] and "Request emergency access" not in own[0]
    assert f'href="/patients/{world["torres_east"]}"' in text_of(response)


def test_last_comma_first_narrows_and_names_match_in_any_spelling(app, world):
    rows = matches(lookup(world["clinician"], "Torres, Ana"))
    assert len(rows) == 2  # Ana Torres at MAIN and at EAST, not Maria
    assert not any(mrn_of(app, world["torres_main_2"]) in r for r in rows)
    # Without diacritics, as the duplicate check matches them.
    [row] = matches(lookup(world["clinician"], "nunez, jose"))
    assert mrn_of(app, world["nunez"]) in row


def test_no_match_says_so_and_is_recorded(app, world):
    before = last_seq(app)
    response = lookup(world["clinician"], "Nobody")
    assert response.status_code == 200
    assert "No patient with this name and date of birth at any site" in text_of(response)
    [event] = [e for e in events(app, before) if e.entity_type == "break_glass_lookup"]
    assert '"results":0' in event.details.replace(" ", "")


@pytest.mark.parametrize(
    ("name", "born", "field", "message"),
    [
        ("Torres", "", "date_of_birth", "This field is required."),
        ("", BORN.isoformat(), "name", "This field is required."),
        ("123, 456", BORN.isoformat(), "name", emergency.LOOKUP_NAME_MESSAGE),
        ("Tor\x00res", BORN.isoformat(), "name", "Remove the control or invisible"),
    ],
)
def test_a_refused_lookup_says_why_next_to_the_field_and_is_recorded(
    app, world, name, born, field, message
):
    before = last_seq(app)
    response = lookup(world["clinician"], name, born)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert html.unescape(field_error(page, field)).startswith(message)
    assert 'data-testid="lookup-results"' not in page
    new = [e for e in events(app, before) if e.entity_type == "break_glass_lookup"]
    assert [(e.outcome.value, e.patient_id) for e in new] == [("failure", None)]


def test_lookup_shows_at_most_twenty_matches(app, world, make_patient):
    for n in range(23):
        make_patient(f"Al{n}", "Garcia", date_of_birth=BORN, confirm_duplicate=True)
    response = lookup(world["clinician"], "garcia")
    assert len(matches(response)) == emergency.EMERGENCY_LOOKUP_LIMIT == 20
    assert "23 patients match; the first 20 are shown" in text_of(response)


@contextlib.contextmanager
def selects(app):
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def test_lookup_reads_in_a_fixed_number_of_statements(app, world, make_site, make_patient):
    client = world["clinician"]
    with selects(app) as few:
        assert len(matches(lookup(client, "torres"))) == 3
    for n in range(8):
        make_patient("Ana", "Torres", date_of_birth=BORN, site_id=make_site(f"S{n}"))
    with selects(app) as many:
        assert len(matches(lookup(client, "torres"))) == 11
    assert len(many) == len(few)


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_only_clinicians_may_look_up(app, world, client_as, role):
    client = client_as(role)
    assert client.get(URL).status_code == 403
    token = client.csrf_token("/patients/")
    refused = client.post(
        URL, data={"name": "Torres", "date_of_birth": BORN.isoformat(), "csrf_token": token}
    )
    assert refused.status_code == 403
    assert "Torres" not in refused.get_data(as_text=True)


def test_choosing_a_match_fills_the_mrn_and_still_asks_for_a_reason(app, world):
    client = world["clinician"]
    mrn = mrn_of(app, world["torres_main"])
    url = f"/patients/break-glass?mrn={mrn}"
    page = client.get(url).get_data(as_text=True)
    assert f'value="{mrn}"' in page
    fields = {**hidden_fields(page, url, same_page=True), "mrn": mrn, "reason": ""}
    response = client.post("/patients/break-glass", data=fields)
    assert response.status_code == 200
    assert field_error(response.get_data(as_text=True), "reason") == "This field is required."
    assert grants(app) == []


# --- menu and the "not found" page ----------------------------------------------------------


def test_the_menu_offers_emergency_access_to_clinicians_only(app, world, client_as):
    link = f'href="{URL}">Emergency access</a>'
    assert link in world["clinician"].get("/").get_data(as_text=True)
    assert link not in client_as("staff").get("/").get_data(as_text=True)


def test_not_found_page_of_a_patient_mentions_emergency_access_the_same_either_way(
    app, world, client_as
):
    """The same words for a patient who exists at another site and for an id nobody has:
    the page discloses nothing."""
    clinician = world["clinician"]
    elsewhere = clinician.get(f"/patients/{world['torres_main']}")
    nowhere = clinician.get("/patients/987654")
    assert elsewhere.status_code == nowhere.status_code == 404

    def hint(response) -> str:
        found = re.search(r'<p data-testid="emergency-access-hint">.*?</p>', text_of(response))
        assert found, "no emergency access hint"
        return found.group(0)

    assert HINT in words_of(elsewhere)
    assert hint(elsewhere) == hint(nowhere)
    assert f'href="{URL}"' in hint(elsewhere)
    # An enrollment's page too; never elsewhere, nor for who cannot use it.
    assert HINT in words_of(clinician.get("/patients/enrollments/987654/discharge"))
    assert HINT not in words_of(clinician.get("/no-such-page"))
    staff_page = words_of(client_as("staff", site_ids=[world["east"]]).get("/patients/987654"))
    assert HINT not in staff_page


# --- one live grant per clinician and patient ------------------------------------------------


def test_asking_again_while_access_is_live_reuses_the_grant_without_extending_it(app, world):
    client = world["clinician"]
    mrn = mrn_of(app, world["torres_main"])
    before = last_seq(app)
    first = send(client, "/patients/break-glass", {"mrn": mrn, "reason": REASON})
    assert first.status_code == 302
    [grant] = grants(app)
    second = send(
        client,
        "/patients/break-glass",
        {"mrn": mrn, "reason": "Still treating: needs the dose history"},
        follow_redirects=True,
    )
    assert second.request.path == f"/patients/{world['torres_main']}"
    page = text_of(second)
    assert "You already have emergency access to this record until" in page
    assert "it was not extended" in page
    [same] = grants(app)
    assert (same.id, same.expires_at, same.reason) == (grant.id, grant.expires_at, REASON)
    recorded = [e for e in events(app, before) if e.action.value == "break_glass"]
    assert [(e.entity_id, e.patient_id) for e in recorded] == [
        (str(grant.id), world["torres_main"])
    ] * 2
    assert '"repeat":true' in recorded[1].details.replace(" ", "")
    assert "dose history" not in recorded[1].details


def test_after_the_grant_expired_a_new_request_makes_a_new_grant(app, world, username_of):
    client = world["clinician"]
    mrn = mrn_of(app, world["torres_main"])
    assert send(client, "/patients/break-glass", {"mrn": mrn, "reason": REASON}).status_code == 302
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=emergency.BREAK_GLASS_MINUTES)
    with time_machine.travel(later, tick=False):
        fresh = app.test_client()
        assert login(fresh, username_of(client.user_id)).status_code == 302
        response = send(fresh, "/patients/break-glass", {"mrn": mrn, "reason": REASON})
        assert response.status_code == 302
    first, second = grants(app)
    assert second.granted_at >= first.expires_at


def test_the_service_gives_one_live_grant_whatever_the_reasons(app, world):
    """Sequential requests in one transaction each: one grant (the user-row lock makes
    concurrent requests sequential on PostgreSQL)."""
    from clinic.accounts.models import User

    mrn = mrn_of(app, world["torres_main"])
    for reason in (REASON, "Second call from the ER", "Third call from the ER"):
        with app.test_request_context():
            actor = db.session.get(User, world["clinician"].user_id)
            access = emergency.grant_break_glass(actor=actor, mrn=mrn, reason=reason)
            db.session.commit()
            assert access.patient.id == world["torres_main"]
    assert len(grants(app)) == 1
