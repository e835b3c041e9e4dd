"""The random-testing pages: the worklist of patients behind, today's draw and its button,
a draw's page and the chart's "Random testing" section — for staff, clinicians and
administrators, counts only (never a result), each patient shown a view event."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.extensions import db
from clinic.medications import drug_test_schedule as schedule_service
from clinic.medications.drug_test_models import DrugTest, DrugTestResult, RandomTestDraw
from clinic.sites.models import Site, SiteClosure
from tests.test_drug_test_schedule_helpers import (
    admitted_fixture,  # noqa: F401
    schedule_fixture,  # noqa: F401
)

WORKLIST = "/drug-tests/schedule/"
TODAY = "/drug-tests/schedule/today"
ROLES = ("staff", "clinician", "admin")


def _draw_url(site_id: int) -> str:
    return f"/drug-tests/schedule/sites/{site_id}/draw"


def _views(app, entity_type: str) -> list[AuditEvent]:
    with app.app_context():
        return db.session.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.action == "view", AuditEvent.entity_type == entity_type
            )
        ).all()


def _positive_result(app, schedule, patient_id: int) -> None:
    """A random test of today with a positive fentanyl result: no page here shows it."""
    with app.app_context():
        test_id = schedule.add_test(patient_id, schedule.days_ago(1))
        db.session.add(
            DrugTestResult(
                test_id=test_id,
                analyte="fentanyl",
                result="positive",
                method="presumptive",
                entered_by_id=schedule.clinician,
            )
        )
        db.session.commit()


@pytest.mark.parametrize("role", ROLES)
def test_every_role_sees_who_is_behind_with_counts_and_no_result(
    app, schedule, admitted, client_as, role
):
    behind = admitted(400)
    _positive_result(app, schedule, behind)
    admitted(10)  # nothing required yet
    client = client_as(role)
    page = client.get(WORKLIST)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f'data-patient-id="{behind}"' in html
    assert "1 / 8" in html
    assert "Positive" not in html and "ositive" not in html and "entanyl" not in html
    assert [e.patient_id for e in _views(app, "random_test_worklist")] == [behind]


def test_signed_out_users_are_sent_to_sign_in(client):
    for url in (WORKLIST, TODAY, "/drug-tests/schedule/draws/1"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client.post(_draw_url(1)).status_code in (302, 401)
    with client.application.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RandomTestDraw)) == 0


def test_the_worklist_survives_odd_query_strings(app, schedule, admitted, client_as):
    admitted(400)
    client = client_as("staff")
    queries = ("?page=abc", "?page=99999999999999", "?sort=x&dir=up", "?sort=last&dir=asc")
    queries += ("?after=abc", "?after=99999", "?before=-1", "?sort=last&after=" + "9" * 400)
    for query in queries:
        response = client.get(WORKLIST + query)
        assert response.status_code == 200, query
    assert client.get(WORKLIST + "?sort=%00").status_code == 400  # the app-wide edge check
    html = client.get(WORKLIST + "?sort=name&dir=desc").get_data(as_text=True)
    assert 'aria-sort="descending"' in html


def test_the_worklist_pages_by_cursor_keeping_its_sort(
    app, schedule, admitted, client_as, monkeypatch
):
    monkeypatch.setattr(schedule_service, "WORKLIST_PER_PAGE", 2)
    patients = [admitted(60 + i * 50) for i in range(5)]
    client = client_as("staff")
    url = WORKLIST + "?sort=admitted&dir=desc"
    seen = []
    while url:
        html = client.get(url).get_data(as_text=True)
        seen += [int(i) for i in re.findall(r'<tr data-patient-id="(\d+)"', html)]
        found = re.search(r'href="([^"]+)" rel="next"', html)
        url = unescape(found.group(1)) if found else None
        assert url is None or ("sort=admitted" in url and "dir=desc" in url and "after=" in url)
    assert seen == patients  # the latest admission first: the first patient made
    assert "2 on this page; more" not in html and "1 on this page, the end of the list." in html


def test_another_sites_patients_are_not_listed(app, schedule, admitted, client_as):
    admitted(400, schedule.other_otp, site_id=schedule.other_site)
    html = client_as("clinician").get(WORKLIST).get_data(as_text=True)
    assert "No patient is behind" in html


@pytest.mark.parametrize("role", ROLES)
def test_every_role_draws_todays_tests_once(app, schedule, admitted, client_as, role):
    patients = [admitted(400) for _ in range(6)]
    client = client_as(role)
    before = client.get(TODAY).get_data(as_text=True)
    assert "Not drawn yet today." in before and "Draw today's random tests" in before
    drawn = client.submit(_draw_url(schedule.site), form_url=TODAY)
    assert drawn.status_code == 302
    again = client.submit(_draw_url(schedule.site), form_url=TODAY, follow_redirects=True)
    assert "were already drawn" in again.get_data(as_text=True)
    with app.app_context():
        draws = db.session.scalars(sa.select(RandomTestDraw)).all()
        assert len(draws) == 1
        chosen = {s.patient_id for s in draws[0].selections}
        assert draws[0].drawn_by_id == client.user_id and draws[0].eligible_count == 6
    html = client.get(TODAY).get_data(as_text=True)
    assert "Not drawn yet today." not in html  # the user's one site
    for pid in patients:
        assert (f'data-patient-id="{pid}"' in html) == (pid in chosen)
    shown = [e.patient_id for e in _views(app, "random_test_selection")]
    assert sorted(set(shown)) == sorted(chosen)


def test_the_draw_button_on_a_closed_day_is_refused_on_the_page(app, schedule, admitted, client_as):
    admitted(400)
    with app.app_context():
        site = db.session.get(Site, schedule.site)
        db.session.add(
            SiteClosure(
                site_id=site.id,
                closed_on=schedule.today,
                name="Holiday",
                created_by_id=schedule.clinician,
            )
        )
        db.session.commit()
    client = client_as("staff")
    response = client.submit(_draw_url(schedule.site), form_url=TODAY)
    assert response.status_code == 400
    assert "The site is closed today" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RandomTestDraw)) == 0


def test_another_sites_draw_is_not_found(app, schedule, admitted, client_as, make_user):
    admitted(400, schedule.other_otp, site_id=schedule.other_site)
    east = client_as("clinician", site_ids=[schedule.other_site])
    east.submit(_draw_url(schedule.other_site), form_url=TODAY)
    with app.app_context():
        draw_id = db.session.scalar(sa.select(RandomTestDraw.id))
    main = client_as("clinician")
    assert main.get(f"/drug-tests/schedule/draws/{draw_id}").status_code == 404
    assert main.submit(_draw_url(schedule.other_site), form_url=TODAY).status_code == 404
    assert main.submit(_draw_url(2_147_483_647), form_url=TODAY).status_code == 404
    page = east.get(f"/drug-tests/schedule/draws/{draw_id}")
    assert page.status_code == 200 and 'data-testid="seed"' in page.get_data(as_text=True)
    everywhere = client_as("admin", all_sites=True, site_ids=[])
    assert everywhere.get(f"/drug-tests/schedule/draws/{draw_id}").status_code == 200
    with app.app_context():
        denied = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "access_denied")
        ).all()
        assert {(e.entity_type, e.entity_id) for e in denied} >= {
            ("random_test_draw", str(draw_id)),
            ("site", str(schedule.other_site)),
        }


def test_a_clinician_follows_a_selection_to_the_test_form(app, schedule, admitted, client_as):
    for _ in range(8):
        admitted(400)
    clinician = client_as("clinician")
    clinician.submit(_draw_url(schedule.site), form_url=TODAY)
    with app.app_context():
        selection = db.session.scalars(sa.select(RandomTestDraw)).one().selections[0]
        selection_id, patient_id = selection.id, selection.patient_id
    html = clinician.get(TODAY).get_data(as_text=True)
    installed = any(e in app.view_functions for e in ("drug_tests.new_test", "drug_tests.record"))
    assert (f"selection={selection_id}" in html) == installed
    staff_html = client_as("staff").get(TODAY).get_data(as_text=True)
    assert f"selection={selection_id}" not in staff_html
    with app.app_context():
        schedule.add_test(patient_id, schedule.today, selection_id=selection_id)
    html = clinician.get(TODAY).get_data(as_text=True)
    assert f"selection={selection_id}" not in html and "Collected" in html


@pytest.mark.parametrize("role", ROLES)
def test_the_chart_shows_random_testing_counts_never_results(
    app, schedule, admitted, client_as, role
):
    patient = admitted(100)  # two required
    _positive_result(app, schedule, patient)
    naltrexone = admitted(100, schedule.naltrexone)
    client = client_as(role)
    html = client.get(f"/patients/{patient}").get_data(as_text=True)
    section = html.split('data-testid="random-testing-section"')[1].split("</section>")[0]
    assert "1 done of 2 required" in section and "1 due" in section
    assert "Not selected today" in section
    assert "ositive" not in section and "entanyl" not in section
    other = client.get(f"/patients/{naltrexone}").get_data(as_text=True)
    assert "random-testing-section" not in other
    client.submit(_draw_url(schedule.site), form_url=TODAY)
    with app.app_context():
        chosen = {
            s.patient_id for s in db.session.scalars(sa.select(RandomTestDraw)).one().selections
        }
    html = client.get(f"/patients/{patient}").get_data(as_text=True)
    assert ("Selected today" in html) == (patient in chosen)


def test_the_menu_has_tests_due_for_every_role(client_as):
    for role in ROLES:
        nav = client_as(role).get(WORKLIST).get_data(as_text=True)
        assert f'href="{WORKLIST}">Tests due</a>' in nav


def test_the_draw_is_audited_with_counts_only(app, schedule, admitted, client_as):
    admitted(400)
    client = client_as("staff")
    client.submit(_draw_url(schedule.site), form_url=TODAY)
    with app.app_context():
        event = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.entity_type == "random_test_draw")
        ).one()
        assert event.action == "create" and event.user_id == client.user_id
        assert event.patient_id is None
        details = json.loads(event.details)
        assert details["eligible"] == 1 and details["via"] == "web"
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DrugTest)) == 0


def test_the_draw_button_of_an_inactive_site_is_refused(app, schedule, client_as):
    client = client_as("staff")
    token_page = TODAY
    with app.app_context():
        db.session.get(Site, schedule.site).active = False
        db.session.commit()
    response = client.submit(_draw_url(schedule.site), form_url=token_page)
    assert response.status_code == 400
    assert "The site is inactive" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RandomTestDraw)) == 0
