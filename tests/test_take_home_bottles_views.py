"""Take-home bottle pages: the link from the dose page, dispensing over HTTP (confirmation,
cap message, double submit, bad input), the label sheet, returns with their incident, the
chart section, every role on every endpoint, another site's records and huge ids."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from html import unescape

import pytest
import sqlalchemy as sa
import time_machine

from clinic.extensions import db
from clinic.medications.models import DoseEntry, DoseKind
from clinic.medications.take_home_models import (
    BottleReturn,
    DiversionIncident,
    TakeHomeDispensing,
)
from clinic.sites.models import Site
from clinic.sites.time import site_today
from tests.conftest import CSRF_RE
from tests.matrix_rows import DENY, LOGIN, NOT_FOUND, OK, ROLES
from tests.routes_bottles import MATRIX_ROWS, make_decision

TOKEN_RE = re.compile(r'name="submission_token"[^>]*? value="([^"]+)"')
IN_HANDS_RE = re.compile(r'name="in_hands"[^>]*? value="([^"]*)"')


@pytest.fixture(autouse=True)
def site_noon():
    # Wednesday 18 March 2026, noon in Chicago; the site is closed on Sundays.
    with time_machine.travel(dt.datetime(2026, 3, 18, 17, 0, tzinfo=dt.UTC), tick=True):
        yield


@pytest.fixture
def today(app, site) -> dt.date:
    with app.app_context():
        return site_today(db.session.get(Site, site))


@pytest.fixture
def patient_on(app, make_user, make_patient, make_program, make_enrollment, make_order, today):
    """A methadone patient ``in_treatment`` days after admission, with an approved
    decision of ``days`` from tomorrow (None: no decision)."""
    prescriber = make_user("clinician", is_prescriber=True)

    def make(*, in_treatment=40, days=14, site_id=None, first="Jo", last="Smith") -> int:
        patient = make_patient(first, last, site_id=site_id)
        program = make_program(f"OTP {uuid.uuid4().hex[:6]}", site_id=site_id)
        admitted = today - dt.timedelta(days=in_treatment)
        enrollment = make_enrollment(patient, program, admitted_on=admitted)
        make_order(
            enrollment,
            prescriber,
            start_on=admitted,
            dose_mg="60",
            justification="Tolerance documented.",
        )
        if days is not None:
            with app.app_context():
                make_decision(
                    patient, start_on=today + dt.timedelta(days=1), days=days, user_id=prescriber
                )
                db.session.commit()
        return patient

    return make


@pytest.fixture
def nurse(client_as):
    return client_as("clinician", may_dispense=True)


def text(response) -> str:
    return unescape(response.get_data(as_text=True))


def dispense_url(patient_id: int) -> str:
    return f"/take-homes/bottles/patients/{patient_id}/dispense"


def dispense_form(client, patient_id: int, days: list[dt.date], **values) -> dict:
    html = client.get(dispense_url(patient_id)).get_data(as_text=True)
    data = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "submission_token": TOKEN_RE.search(html).group(1),
        "in_hands": IN_HANDS_RE.search(html).group(1),
        "take_on": [d.isoformat() for d in days],
        "confirmed": "y",
    }
    data.update(values)
    return {k: v for k, v in data.items() if v is not None}


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


# --- from the dose page --------------------------------------------------------------------


def test_the_dose_page_links_to_take_home_bottles_only_with_a_decision_in_force(nurse, patient_on):
    with_decision = patient_on()
    without = patient_on(days=None, first="Ann", last="Lee")
    page = text(nurse.get(f"/dosing/patients/{with_decision}/dose"))
    assert "Take-home bottles" in page
    assert dispense_url(with_decision) in page
    assert "Take-home bottles" not in text(nurse.get(f"/dosing/patients/{without}/dose"))


# --- dispensing ------------------------------------------------------------------------


def test_the_page_lists_the_covered_days_closed_days_and_the_cap(nurse, patient_on, today):
    patient = patient_on(in_treatment=12, days=7)
    page = text(nurse.get(dispense_url(patient)))
    assert page.count('name="take_on"') == 7
    assert "Closed: not counted" in page  # Sunday 22 March
    assert "7 take-home days at once" in page
    assert "Treatment day" in page


def test_dispensing_leads_to_the_label_sheet(app, nurse, patient_on, today):
    patient = patient_on()
    days = [today + dt.timedelta(days=n) for n in (1, 2)]
    response = nurse.post(dispense_url(patient), data=dispense_form(nurse, patient, days))
    assert response.status_code == 302
    assert "/labels" in response.headers["Location"]
    sheet = text(nurse.get(response.headers["Location"]))
    assert sheet.count('data-testid="bottle-label"') == 2
    for expected in (
        "Main Street Clinic",
        "No clinic address on record",
        "No clinic phone on record",
        "Smith, Jo",
        "MRN ",
        "Methadone",
        "10 mg/mL",
        "60 mg",
        "Bottle 1 of 2",
        "Bottle 2 of 2",
        "Thu 19 Mar 2026" if False else "19 Mar 2026",
        "Keep out of reach of children",
        "Take only as directed",
        "Contains methadone — may be fatal to others",
        "Return the empty bottle at your next visit",
    ):
        assert expected in sheet, expected
    with app.app_context():
        rows = db.session.scalars(
            sa.select(DoseEntry).where(DoseEntry.kind == DoseKind.TAKE_HOME)
        ).all()
        assert [r.dispenser_id for r in rows] == [nurse.user_id, nurse.user_id]


def test_the_label_sheet_prints_the_site_address_and_phone(app, nurse, patient_on, today, site):
    patient = patient_on()
    with app.app_context():
        found = db.session.get(Site, site)
        found.address = "1 Main Street, Springfield IL 62701"
        found.phone = "+12175550100"
        db.session.commit()
    days = [today + dt.timedelta(days=1)]
    response = nurse.post(dispense_url(patient), data=dispense_form(nurse, patient, days))
    sheet = text(nurse.get(response.headers["Location"]))
    assert "1 Main Street, Springfield IL 62701" in sheet
    assert "No clinic address" not in sheet and "No clinic phone" not in sheet


def test_without_the_confirmation_nothing_is_dispensed_and_the_days_stay_chosen(
    app, nurse, patient_on, today
):
    patient = patient_on()
    day = today + dt.timedelta(days=3)
    data = dispense_form(nurse, patient, [day], confirmed=None)
    response = nurse.post(dispense_url(patient), data=data)
    page = text(response)
    assert response.status_code == 200
    assert "Confirm the bottles with the patient" in page
    assert f'value="{day.isoformat()}" checked' in page
    assert count(app, TakeHomeDispensing) == 0


def test_over_the_cap_is_refused_with_the_cap_over_http(app, nurse, patient_on, today):
    patient = patient_on(in_treatment=12, days=14)
    days = [today + dt.timedelta(days=n) for n in range(1, 10)]
    page = text(nurse.post(dispense_url(patient), data=dispense_form(nurse, patient, days)))
    assert "More bottles than the decision allows" in page
    assert "is 7" in page
    assert count(app, TakeHomeDispensing) == 0


def test_a_double_submit_dispenses_once(app, nurse, patient_on, today):
    patient = patient_on()
    data = dispense_form(nurse, patient, [today + dt.timedelta(days=1)])
    first = nurse.post(dispense_url(patient), data=data)
    second = nurse.post(dispense_url(patient), data=data)
    assert first.status_code == second.status_code == 302
    assert second.headers["Location"] == first.headers["Location"]
    assert count(app, TakeHomeDispensing) == 1


def test_two_nurses_with_the_same_page_dispense_once(app, nurse, client_as, patient_on, today):
    patient = patient_on()
    other = client_as("clinician", may_dispense=True)
    days = [today + dt.timedelta(days=1), today + dt.timedelta(days=2)]
    mine, theirs = dispense_form(nurse, patient, days), dispense_form(other, patient, days)
    assert nurse.post(dispense_url(patient), data=mine).status_code == 302
    page = text(other.post(dispense_url(patient), data=theirs))
    assert "dispensed at the same moment" in page
    assert count(app, TakeHomeDispensing) == 1


@pytest.mark.parametrize("bad", ["2026-03-19\x00", "not a day", "2026-02-30", "9" * 30])
def test_bad_take_on_values_are_a_field_error(app, nurse, patient_on, today, bad):
    patient = patient_on()
    data = dispense_form(nurse, patient, [], take_on=[bad])
    response = nurse.post(dispense_url(patient), data=data)
    assert response.status_code == 200
    assert "is-invalid" in text(response)
    assert count(app, TakeHomeDispensing) == 0


# --- returns ------------------------------------------------------------------------------


def _dispensed_bottles(app, patient, today, days, nurse_id):
    """Bottles dispensed ``days`` ago each for the day after (so their take-on passed)."""
    from clinic.accounts.models import User
    from clinic.medications import take_home_bottles
    from clinic.patients.models import Patient

    with app.test_request_context():
        found = db.session.get(Patient, patient)
        then = dt.datetime.combine(
            today - dt.timedelta(days=days), dt.time(17), dt.UTC
        )  # noon in Chicago
        dispensing = take_home_bottles.dispense_take_homes(
            found, actor=db.session.get(User, nurse_id), count=days - 1, now=then
        )
        db.session.commit()
        return [b.id for b in take_home_bottles.dispensing_bottles(dispensing)]


@pytest.fixture
def past_bottles(app, make_user, patient_on, today):
    """A patient whose decision started 5 days ago, with 3 bottles whose days passed."""
    nurse_id = make_user("clinician", may_dispense=True)
    patient = patient_on(days=None)
    with app.app_context():
        make_decision(patient, start_on=today - dt.timedelta(days=4), days=10, user_id=nurse_id)
        db.session.commit()
    return patient, _dispensed_bottles(app, patient, today, 4, nurse_id)


def returns_url(patient_id: int) -> str:
    return f"/take-homes/bottles/patients/{patient_id}/returns"


def test_returns_record_each_bottle_once_and_a_missing_one_opens_an_incident(
    app, client_as, past_bottles
):
    patient, bottle_ids = past_bottles
    assert len(bottle_ids) == 3
    clinician = client_as("clinician")
    page = clinician.get(returns_url(patient))
    html = page.get_data(as_text=True)
    assert html.count('value="returned"') == 3
    data = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "submission_token": TOKEN_RE.search(html).group(1),
        f"bottle_{bottle_ids[0]}": "returned",
        f"bottle_{bottle_ids[1]}": "unreturned",
        f"bottle_{bottle_ids[2]}": "returned",
        "note": "",
    }
    refused = clinician.post(returns_url(patient), data=data)
    assert "Describe what was found" in text(refused)
    assert count(app, BottleReturn) == 0  # all or nothing
    data["note"] = "Says the bottle was lost."
    assert clinician.post(returns_url(patient), data=data).status_code == 302
    assert count(app, BottleReturn) == 3
    assert count(app, DiversionIncident) == 1
    # Each bottle is checked once: nothing is due any more, a repeat saves nothing more.
    assert 'data-testid="nothing-due"' in text(clinician.get(returns_url(patient)))
    assert clinician.post(returns_url(patient), data=data).status_code in (200, 302)
    assert count(app, BottleReturn) == 3
    chart = text(clinician.get(f"/patients/{patient}"))
    assert "Take-home bottles" in chart
    assert "Bottle return" in chart and "1 not returned" in chart


def test_a_return_needs_an_outcome_for_every_bottle(app, client_as, past_bottles):
    patient, bottle_ids = past_bottles
    clinician = client_as("clinician")
    html = clinician.get(returns_url(patient)).get_data(as_text=True)
    data = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "submission_token": TOKEN_RE.search(html).group(1),
        f"bottle_{bottle_ids[0]}": "returned",
        f"bottle_{bottle_ids[1]}": "lost\x00",
        "note": "Kept note",
    }
    response = clinician.post(returns_url(patient), data=data)
    assert response.status_code == 200
    page = text(response)
    assert "Record what came back for this bottle." in page or "Not a valid choice" in page
    assert "Kept note" in page
    assert count(app, BottleReturn) == 0


def test_the_bottle_return_rows_are_append_only(app, client_as, past_bottles):
    from clinic.accounts.models import User
    from clinic.medications import bottle_returns
    from clinic.patients.models import Patient

    patient, bottle_ids = past_bottles
    clinician = client_as("clinician")
    with app.test_request_context():
        bottle_returns.record_returns(
            db.session.get(Patient, patient),
            actor=db.session.get(User, clinician.user_id),
            outcomes=dict.fromkeys(bottle_ids, "returned"),
        )
        db.session.commit()
        for statement in ("UPDATE bottle_return SET note = 'x'", "DELETE FROM bottle_return"):
            with pytest.raises(sa.exc.IntegrityError, match="bottle_return_append_only"):
                db.session.execute(sa.text(statement))
            db.session.rollback()


# --- roles, other sites, huge ids ----------------------------------------------------------


@pytest.fixture
def bottle_records(app, records, make_user, make_order, make_patient) -> dict:
    from tests.conftest import medication_records
    from tests.routes_bottles import route_records

    merged = {**records, **medication_records(app, records, make_user, make_order, make_patient)}
    return {**merged, **route_records(app, merged, make_user)}


def _outcome(response) -> str:
    location = response.headers.get("Location", "")
    if response.status_code == 401 or (
        response.status_code == 302 and location.startswith("/login")
    ):
        return LOGIN
    if response.status_code == 403:
        return DENY
    if response.status_code == 404:
        return NOT_FOUND
    if response.status_code in (200, 302, 400):
        return OK
    return f"unexpected {response.status_code}"


@pytest.mark.parametrize("role", ROLES)
def test_every_role_is_allowed_or_refused_as_the_matrix_says(app, role, client_as, bottle_records):
    from flask import url_for

    mismatches = []
    for (endpoint, method), expected in MATRIX_ROWS.items():
        client = app.test_client() if role == "anonymous" else client_as(role)
        token = client.csrf_token("/login")
        rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
        with app.test_request_context():
            url = url_for(endpoint, **{k: bottle_records[k] for k in rule.arguments})
        if method == "GET":
            response = client.get(url)
        else:
            response = client.post(url, data={"csrf_token": token})
        got = _outcome(response)
        if got != expected[role]:
            mismatches.append(f"{method} {url}: expected {expected[role]}, got {got}")
    assert mismatches == []


def test_another_sites_records_are_not_found(app, make_site, client_as, bottle_records):
    east = make_site("EAST")
    nurse = client_as("clinician", may_dispense=True, site_ids=[east])
    for url in (
        f"/take-homes/bottles/dispensings/{bottle_records['dispensing_id']}/labels",
        dispense_url(bottle_records["patient_id"]),
        returns_url(bottle_records["patient_id"]),
        f"/take-homes/bottles/patients/{bottle_records['patient_id']}",
        f"/call-backs/{bottle_records['call_back_id']}/outcome",
        f"/call-backs/patients/{bottle_records['patient_id']}/start",
    ):
        assert nurse.get(url).status_code == 404, url


@pytest.mark.parametrize("huge", ["99999999999999999999", "2147483648", "0"])
def test_huge_ids_are_not_found(nurse, huge):
    for url in (
        f"/take-homes/bottles/dispensings/{huge}/labels",
        dispense_url(huge),
        f"/call-backs/{huge}/outcome",
    ):
        assert nurse.get(url).status_code == 404, url


def test_staff_never_see_bottles_on_the_chart(app, client_as, bottle_records):
    staff = client_as("staff")
    page = text(staff.get(f"/patients/{bottle_records['patient_id']}"))
    assert 'data-testid="bottles-section"' not in page
    clinician = client_as("clinician")
    assert 'data-testid="bottles-section"' in text(
        clinician.get(f"/patients/{bottle_records['patient_id']}")
    )


def test_a_bottle_is_reversed_from_the_dosing_reverse_page(app, nurse, patient_on, today):
    patient = patient_on()
    day = today + dt.timedelta(days=1)
    nurse.post(dispense_url(patient), data=dispense_form(nurse, patient, [day]))
    with app.app_context():
        bottle_id = db.session.scalar(
            sa.select(DoseEntry.id).where(DoseEntry.kind == DoseKind.TAKE_HOME)
        )
    url = f"/dosing/patients/{patient}/reverse"
    html = nurse.get(url).get_data(as_text=True)
    assert "Take-home 60 mg for 19 Mar 2026" in unescape(html)
    data = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "submission_token": TOKEN_RE.search(html).group(1),
        "dose_id": str(bottle_id),
        "reason": "Dispensed for the wrong day.",
    }
    assert nurse.post(url, data=data).status_code == 302
    page = text(nurse.get(dispense_url(patient)))
    assert "0 bottles" in page  # the reversed bottle is no longer in the patient's hands
