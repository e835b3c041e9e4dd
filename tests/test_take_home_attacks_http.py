"""Attacks over HTTP on the take-home pages (issue 13): every URL of the take-home, bottle,
call-back and calendar pages with another site's ids, as each role (with every flag) of
that other site — a 404 and an ``access_denied`` event, nothing saved; and staff never
see a decision's criteria notes or a bottle finding."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.extensions import db
from clinic.medications.take_home_models import (
    BottleReturn,
    CallBack,
    DiversionIncident,
    TakeHomeDecision,
    TakeHomeDispensing,
)
from clinic.sites.models import Site, SiteClosure
from tests.routes_bottles import MATRIX_ROWS as BOTTLE_ROWS
from tests.routes_take_homes import MATRIX_ROWS as TAKE_HOME_ROWS

RECORD_VARIABLES = {"patient_id", "decision_id", "dispensing_id", "call_back_id", "closure_id"}


@pytest.fixture
def main_records(app, records, make_user, make_order, make_patient) -> dict:
    from tests.conftest import medication_records
    from tests.routes_bottles import route_records as bottle_records
    from tests.routes_take_homes import route_records as take_home_records

    merged = {**records, **medication_records(app, records, make_user, make_order, make_patient)}
    merged.update(take_home_records(app, merged, make_user))
    merged.update(bottle_records(app, merged, make_user))
    with app.app_context():
        merged["site_id"] = db.session.get(Site, merged["site_id"]).id
    return merged


def _counts() -> tuple[int, ...]:
    return tuple(
        db.session.scalar(sa.select(sa.func.count()).select_from(model))
        for model in (
            TakeHomeDecision,
            TakeHomeDispensing,
            BottleReturn,
            CallBack,
            DiversionIncident,
            SiteClosure,
        )
    )


def _urls(app, merged: dict) -> list[tuple[str, str]]:
    """(method, url) of every rule holding one of MAIN's record ids."""
    urls = []
    for endpoint, method in {**TAKE_HOME_ROWS, **BOTTLE_ROWS}:
        rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
        if not rule.arguments & RECORD_VARIABLES and "site_id" not in rule.arguments:
            continue
        with app.test_request_context():
            from flask import url_for

            urls.append((method, url_for(endpoint, **{a: merged[a] for a in rule.arguments})))
    return urls


@pytest.mark.parametrize(
    ("role", "flags"),
    [
        ("clinician", {"is_prescriber": True, "may_dispense": True}),
        ("admin", {}),
        ("staff", {}),
    ],
)
def test_another_sites_ids_are_not_found_and_recorded_as_denied(
    app, make_site, client_as, main_records, role, flags
):
    east = make_site("EAST")
    client = client_as(role, site_ids=[east], **flags)
    token = client.csrf_token("/login")
    with app.app_context():
        before = _counts()
    missed = []
    urls = _urls(app, main_records)
    assert len(urls) >= 12  # decisions, patients, dispensings, call-backs, the calendar
    for method, url in urls:
        with app.app_context():
            denied_before = db.session.scalar(
                sa.select(sa.func.count()).where(AuditEvent.action == "access_denied")
            )
        if method == "GET":
            response = client.get(url)
        else:
            response = client.post(url, data={"csrf_token": token, "reason": "x\x00"})
        with app.app_context():
            denied_after = db.session.scalar(
                sa.select(sa.func.count()).where(AuditEvent.action == "access_denied")
            )
        # Staff are refused by their role first (403, also recorded as denied).
        if response.status_code not in (403, 404) or denied_after != denied_before + 1:
            missed.append(f"{method} {url}: {response.status_code}, {denied_after - denied_before}")
    assert missed == []
    with app.app_context():
        assert _counts() == before


def test_staff_never_see_criteria_notes_or_findings(app, client_as, main_records):
    with app.app_context():
        decision = db.session.get(TakeHomeDecision, main_records["decision_id"])
        note = decision.substance_use_note
    staff = client_as("staff")
    for url in (
        f"/patients/{main_records['patient_id']}",
        "/call-backs/",
    ):
        page = staff.get(url).get_data(as_text=True)
        assert note not in page, url
        assert "matrix incident" not in page, url
    clinician = client_as("clinician")
    assert note in clinician.get(f"/take-homes/decisions/{main_records['decision_id']}").get_data(
        as_text=True
    )
