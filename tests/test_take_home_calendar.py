"""The site calendar (issue 13): closed weekdays, holidays added and removed (a future one
only, audited), the address and phone for bottle labels — by an administrator of that site
only; another site's calendar is a 404; bad input refused with its message."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
import time_machine

from clinic.audit.models import AuditEvent
from clinic.extensions import db
from clinic.sites.models import Site, SiteClosure
from tests.conftest import login

NOW = dt.datetime(2026, 3, 18, 17, 0, tzinfo=dt.UTC)
TODAY = dt.date(2026, 3, 18)
TOKEN_RE = re.compile(r'name="submission_token"[^>]*value="([^"]+)"')


@pytest.fixture(autouse=True)
def site_noon():
    with time_machine.travel(NOW, tick=True):
        yield


@pytest.fixture
def admin(app, make_user, username_of):
    client = app.test_client()
    assert login(client, username_of(make_user("admin"))).status_code == 302
    return client


def post(client, url: str, page: str, **fields):
    body = client.get(page).get_data(as_text=True)
    token = TOKEN_RE.search(body).group(1)
    data = {"csrf_token": client.csrf_token(page), "submission_token": token, **fields}
    return client.post(url, data=data)


def closures(app) -> list[tuple[dt.date, str]]:
    with app.app_context():
        rows = db.session.execute(sa.select(SiteClosure.closed_on, SiteClosure.name)).all()
        return sorted(tuple(r) for r in rows)


def test_an_administrator_sets_closed_weekdays_and_label_details(app, site, admin):
    page = f"/admin/sites/{site}/calendar"
    assert admin.get("/admin/sites/calendar").headers["Location"].endswith(page)
    assert "Closed weekdays" in admin.get(page).get_data(as_text=True)
    response = post(admin, f"{page}/weekdays", page, weekdays=["7", "6"])
    assert response.status_code == 302, response.get_data(as_text=True)
    response = post(
        admin, f"{page}/label", page, address="1 Main St\nSpringfield", phone="555-0100"
    )
    assert response.status_code == 302
    with app.app_context():
        saved = db.session.get(Site, site)
        assert (saved.closed_weekdays, saved.address, saved.phone) == (
            "67",
            "1 Main St\nSpringfield",
            "555-0100",
        )
        kinds = db.session.scalars(
            sa.select(AuditEvent.entity_type).where(AuditEvent.action == "update")
        ).all()
        assert {"site_calendar", "site_label_details"} <= set(kinds)


@pytest.mark.parametrize(
    ("endpoint", "fields", "message"),
    [
        ("weekdays", {"weekdays": list("1234567")}, "open at least one day"),
        ("weekdays", {"weekdays": ["9"]}, "not a valid choice"),
        ("label", {"address": "", "phone": "1"}, "Enter the address."),
        ("label", {"address": "x", "phone": "no digits"}, "Enter a phone number."),
        ("label", {"address": "a\x00b", "phone": "1"}, "Remove the control"),
        ("label", {"address": "x" * 301, "phone": "1"}, "Field cannot be longer than 300"),
        ("holidays", {"closed_on": "2026-03-17", "name": "Past"}, "today or later"),
        ("holidays", {"closed_on": "9999-12-31", "name": "Far"}, "at most 3 years ahead"),
        ("holidays", {"closed_on": "2026-02-30", "name": "Bad"}, "Not a valid date value."),
        ("holidays", {"closed_on": "2026-12-25", "name": ""}, "Name the holiday."),
        ("holidays", {"closed_on": "2026-12-25", "name": "Xmas\x00"}, "Remove the control"),
    ],
)
def test_bad_input_is_refused_next_to_its_field(app, site, admin, endpoint, fields, message):
    page = f"/admin/sites/{site}/calendar"
    response = post(admin, f"{page}/{endpoint}", page, **fields)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Site, site).closed_weekdays == "7"
        assert db.session.get(Site, site).address == ""
    assert closures(app) == []


def test_holidays_are_added_once_and_only_future_ones_removed(app, site, admin):
    page = f"/admin/sites/{site}/calendar"
    for day in ("2026-03-18", "2026-12-25"):
        assert (
            post(admin, f"{page}/holidays", page, closed_on=day, name="Holiday").status_code == 302
        )
    again = post(admin, f"{page}/holidays", page, closed_on="2026-12-25", name="Again")
    assert again.status_code == 400
    assert "already a holiday" in again.get_data(as_text=True)
    with app.app_context():
        ids = dict(db.session.execute(sa.select(SiteClosure.closed_on, SiteClosure.id)).all())
    today_url = f"{page}/holidays/{ids[TODAY]}/remove"
    refused = post(admin, today_url, page)
    assert refused.status_code == 400
    assert "Only a future holiday is removed." in refused.get_data(as_text=True)
    future_url = f"{page}/holidays/{ids[dt.date(2026, 12, 25)]}/remove"
    body = admin.get(page).get_data(as_text=True)
    data = {
        "csrf_token": admin.csrf_token(page),
        "submission_token": TOKEN_RE.search(body).group(1),
    }
    assert admin.post(future_url, data=data).status_code == 302
    assert admin.post(future_url, data=data).status_code == 302  # a double click
    assert closures(app) == [(TODAY, "Holiday")]
    with app.app_context():
        removed = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.entity_type == "site_closure")
        ).all()
        assert [e.action for e in removed].count("update") == 1


def test_only_administrators_of_the_site(app, site, make_site, make_user, username_of, client_as):
    east = make_site("EAST")
    page = f"/admin/sites/{site}/calendar"
    for role in ("staff", "clinician"):
        client = client_as(role)
        assert client.get(page).status_code == 403
        assert client.get("/admin/sites/calendar").status_code == 403
    outsider = client_as("admin", site_ids=[east])
    assert outsider.get(page).status_code == 404
    data = {"csrf_token": outsider.csrf_token("/login"), "weekdays": ["6"]}
    assert outsider.post(f"{page}/weekdays", data=data).status_code == 404
    assert (
        outsider.get("/admin/sites/calendar")
        .headers["Location"]
        .endswith(f"/admin/sites/{east}/calendar")
    )
    with app.app_context():
        assert db.session.get(Site, site).closed_weekdays == "7"
    assert outsider.get("/admin/sites/99999999/calendar").status_code == 404
