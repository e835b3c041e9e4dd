"""The dosing window's pages: the screen and its filter, recording with one action,
refusals shown next to the field, double submits and races, reversals, injections,
reviews, history pages, the daily log, the chart section, roles and query counts."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from html import unescape

import pytest
import sqlalchemy as sa
import time_machine

from clinic.audit.models import AuditEvent
from clinic.extensions import db
from clinic.medications import dose_day, ledger
from clinic.medications.models import DoseEntry, DoseKind, MedicationOrder
from clinic.patients.models import Enrollment, Patient
from clinic.sites.models import Site
from clinic.sites.time import site_today
from tests.conftest import CSRF_RE

TOKEN_RE = re.compile(r'name="submission_token"[^>]*? value="([^"]+)"')
GIVEN_RE = re.compile(r'name="given_count"[^>]*? value="([^"]*)"')


@pytest.fixture(autouse=True)
def site_noon():
    """Every test runs from a site-local noon (Chicago, the test site's zone): "today" is
    the same day in a fixture and in the test body, and UTC's date is the site's. (A test
    that ran across the site's midnight saw its fixture's "today" become yesterday: a dose
    recorded for "yesterday" then counted as a missed day — the cause of an intermittent
    failure of test_a_reversed_dose_does_not_end_a_run_of_missed_days.)"""
    with time_machine.travel(dt.datetime(2026, 3, 18, 17, 0, tzinfo=dt.UTC), tick=True):
        yield


@pytest.fixture
def today(app, site) -> dt.date:
    with app.app_context():
        return site_today(db.session.get(Site, site))


@pytest.fixture
def prescriber(make_user) -> int:
    return make_user("clinician", is_prescriber=True)


@pytest.fixture
def patient_on(make_patient, make_program, make_enrollment, make_order, prescriber, today):
    """A patient with an active order (default: methadone 40 mg daily since 2 days ago —
    never dosed, two days missed: one short of the review that refuses doses)."""

    def make(first="Jo", last="Smith", *, site_id=None, **order) -> int:
        patient = make_patient(first, last, site_id=site_id)
        program = make_program(f"Methadone {uuid.uuid4().hex[:6]}", site_id=site_id)
        start = order.pop("start_on", today - dt.timedelta(days=2))
        enrollment = make_enrollment(patient, program, admitted_on=start)
        make_order(enrollment, prescriber, start_on=start, **{"dose_mg": "40", **order})
        return patient

    return make


@pytest.fixture
def nurse(client_as):
    return client_as("clinician", may_dispense=True)


def dose_url(patient_id: int) -> str:
    return f"/dosing/patients/{patient_id}/dose"


def dose_form(client, patient_id: int, **values) -> dict:
    html = client.get(dose_url(patient_id)).get_data(as_text=True)
    data = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "submission_token": TOKEN_RE.search(html).group(1),
        # What the page showed as given today (None: no dose form on the page).
        "given_count": (found := GIVEN_RE.search(html)) and found.group(1),
        "dob_confirmed": "y",
        "amount_mg": "40",
        "reason": "",
        "station": "Window 1",
    }
    data.update(values)
    return {k: v for k, v in data.items() if v is not None}


def text(response) -> str:
    return unescape(response.get_data(as_text=True))


def doses(app) -> list[DoseEntry]:
    with app.app_context():
        return list(db.session.scalars(sa.select(DoseEntry).order_by(DoseEntry.id)))


# --- the screen -------------------------------------------------------------------------


def test_the_screen_lists_patients_due_with_their_dose(app, nurse, patient_on):
    patient_on("Jo", "Smith")
    patient_on("Ann", "Lee", dose_mg="85", justification="Transfer from another OTP at 85 mg.")
    page = nurse.get("/dosing/?site=MAIN")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Smith, Jo" in html and "Lee, Ann" in html
    assert "85 mg" in html and 'data-count="2"' in html
    assert "dosing.js" in html and "<script>" not in html  # CSP: no inline script


def test_the_filter_finds_by_name_starts_and_by_mrn(app, nurse, patient_on):
    smith = patient_on("John", "Smith")
    patient_on("Jane", "Smithers")
    patient_on("Ann", "Lee")
    html = nurse.get("/dosing/list?site=MAIN&q=smi j").get_data(as_text=True)
    assert 'data-count="2"' in html and "Lee" not in html
    html = nurse.get("/dosing/list?site=MAIN&q=smi joh").get_data(as_text=True)
    assert 'data-count="1"' in html
    with app.app_context():
        mrn = db.session.get(Patient, smith).mrn
    assert 'data-count="1"' in nurse.get(f"/dosing/list?site=MAIN&q={mrn}").get_data(as_text=True)
    # Enter in the filter with one patient found: the dose page.
    found = nurse.get("/dosing/?site=MAIN&q=smi+joh&go=1")
    assert found.status_code == 302 and found.headers["Location"] == dose_url(smith)


def test_the_list_refresh_is_not_recorded_again(app, nurse, patient_on):
    patient_on()

    def views() -> int:
        with app.app_context():
            return db.session.scalar(
                sa.select(sa.func.count(AuditEvent.id)).where(
                    AuditEvent.entity_type == "dosing_screen"
                )
            )

    nurse.get("/dosing/?site=MAIN")
    nurse.get("/dosing/list?site=MAIN&q=smi&auto=1")
    assert views() == 1
    nurse.get("/dosing/list?site=MAIN&q=smi")
    assert views() == 2


def test_an_automatic_refresh_without_a_recorded_screen_is_recorded(app, nurse, patient_on):
    """``auto=1`` is the client's word: a list fetched with it by a user who never opened
    the screen is recorded all the same."""
    patient_on()
    nurse.get("/dosing/list?site=MAIN&auto=1")
    with app.app_context():
        recorded = db.session.scalar(
            sa.select(sa.func.count(AuditEvent.id)).where(AuditEvent.entity_type == "dosing_screen")
        )
    assert recorded == 1


def test_another_sites_screen_is_not_found(app, nurse, make_site):
    make_site("EAST")
    assert nurse.get("/dosing/?site=EAST").status_code == 404
    assert nurse.get("/dosing/log?site=NOPE").status_code == 404


def test_the_nav_shows_dosing_to_clinicians_not_staff(client_as):
    assert "/dosing/" in client_as("clinician").get("/").get_data(as_text=True)
    assert "/dosing/" not in client_as("staff").get("/").get_data(as_text=True)


# --- recording --------------------------------------------------------------------------


def test_a_nurse_records_the_dose_with_one_action(app, nurse, patient_on):
    patient = patient_on()
    response = nurse.post(dose_url(patient), data=dose_form(nurse, patient))
    assert response.status_code == 302
    assert response.headers["Location"] == "/dosing/?site=MAIN"
    [entry] = doses(app)
    assert (entry.amount_mg, entry.dispenser_id, entry.station) == (
        Decimal("40"),
        nurse.user_id,
        "Window 1",
    )
    screen = nurse.get("/dosing/?site=MAIN").get_data(as_text=True)
    assert "Recorded 40 mg observed for Smith, Jo." in screen
    # The station is kept for the next patient on this device.
    assert 'value="Window 1"' in nurse.get(dose_url(patient_on("Ann", "Lee"))).get_data(
        as_text=True
    )
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.count(AuditEvent.id)).where(
                    AuditEvent.entity_type == "dose_entry", AuditEvent.action == "create"
                )
            )
            == 1
        )


def test_the_date_of_birth_must_be_confirmed(app, nurse, patient_on):
    patient = patient_on()
    response = nurse.post(dose_url(patient), data=dose_form(nurse, patient, dob_confirmed=None))
    assert response.status_code == 200
    assert "Confirm the date of birth with the patient" in response.get_data(as_text=True)
    assert doses(app) == []


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("-5", ledger.AMOUNT_POSITIVE_MESSAGE),
        ("0", ledger.AMOUNT_POSITIVE_MESSAGE),
        ("10000", ledger.AMOUNT_TOO_LARGE_MESSAGE),
        ("forty", "Enter the amount as a number of mg, e.g. 62.5."),
        ("1e2", "Enter the amount as a number of mg, e.g. 62.5."),
        ("1_0", "Enter the amount as a number of mg, e.g. 62.5."),
        ("\u0665\u0660", "Enter the amount as a number of mg, e.g. 62.5."),
        ("1,5", "Write the amount with a point for decimals and no commas, e.g. 62.5."),
        ("", "Enter the amount in mg."),
    ],
)
def test_bad_amounts_are_shown_next_to_the_field_with_the_input_kept(
    app, nurse, patient_on, amount, message
):
    patient = patient_on()
    data = dose_form(nurse, patient, amount_mg=amount, station="Window 7")
    response = nurse.post(dose_url(patient), data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="amount_mg-error"' in html and message in html
    assert 'value="Window 7"' in html
    assert doses(app) == []


def test_an_amount_differing_without_a_reason_is_refused_next_to_the_reason(app, nurse, patient_on):
    patient = patient_on()
    response = nurse.post(dose_url(patient), data=dose_form(nurse, patient, amount_mg="30"))
    html = response.get_data(as_text=True)
    assert 'id="reason-error"' in html and "differs from the order (40 mg)" in html
    assert 'value="30"' in html
    assert doses(app) == []


def test_a_double_submit_saves_one_dose(app, nurse, patient_on):
    patient = patient_on()
    data = dose_form(nurse, patient)
    first = nurse.post(dose_url(patient), data=data)
    second = nurse.post(dose_url(patient), data=data)
    assert first.status_code == second.status_code == 302
    assert len(doses(app)) == 1


def test_a_second_dose_is_refused_with_the_reason(app, nurse, patient_on):
    patient = patient_on()
    opened_before = dose_form(nurse, patient)
    nurse.post(dose_url(patient), data=dose_form(nurse, patient))
    page = nurse.get(dose_url(patient)).get_data(as_text=True)
    assert "Already dosed today." in page and 'id="dose-form"' not in page
    # A form opened before the first dose was saved, sent after it: a conflict.
    response = nurse.post(dose_url(patient), data=opened_before)
    assert response.status_code == 409
    assert ledger.RACE_MESSAGE in text(response)
    assert len(doses(app)) == 1
    # A form without what the page showed (an old page): still refused as already dosed.
    del opened_before["given_count"]
    response = nurse.post(dose_url(patient), data=opened_before)
    assert ledger.ALREADY_DOSED_MESSAGE in text(response)
    assert len(doses(app)) == 1


def test_two_nurses_dosing_at_once_save_one_dose(app, nurse, client_as, patient_on, monkeypatch):
    """The second request read the day before the first committed (simulated: it sees no
    dose and takes slot 1): the slot's unique constraint refuses it as already dosed."""
    patient = patient_on()
    other = client_as("clinician", may_dispense=True)
    late_form = dose_form(other, patient)
    nurse.post(dose_url(patient), data=dose_form(nurse, patient))
    monkeypatch.setattr(dose_day, "given_on", lambda patient_id, day: [])
    monkeypatch.setattr(ledger, "_next_slot", lambda patient_id, day: 1)
    response = other.post(dose_url(patient), data=late_form)
    assert response.status_code == 409
    error = re.search(r'id="amount_mg-error"[^>]*>([^<]*)<', text(response))
    assert error and "at the same moment" in error.group(1)
    assert len(doses(app)) == 1


def _amount_error(response) -> str:
    found = re.search(r'id="amount_mg-error"[^>]*>([^<]*)<', text(response))
    return found.group(1) if found else ""


def test_two_nurses_with_the_page_open_the_later_one_is_refused_as_a_race(
    app, nurse, client_as, patient_on
):
    """Two clients open the dose page; the first records; the second's request is a 409
    with the race message next to the amount, and nothing more is saved."""
    patient = patient_on()
    other = client_as("clinician", may_dispense=True)
    late_form = dose_form(other, patient)
    first = nurse.post(dose_url(patient), data=dose_form(nurse, patient))
    assert first.status_code == 302
    response = other.post(dose_url(patient), data=late_form)
    assert response.status_code == 409
    assert "already dosed" in _amount_error(response).lower()
    assert "at the same moment" in _amount_error(response)
    assert len(doses(app)) == 1


def test_a_split_portion_given_meanwhile_is_a_race_not_the_second_portion(
    app, nurse, client_as, patient_on
):
    patient = patient_on(
        dose_mg="80",
        schedule="split",
        split_first_mg="50",
        split_second_mg="30",
        justification="Rapid metaboliser, documented.",
    )
    other = client_as("clinician", may_dispense=True)
    late_form = dose_form(other, patient, amount_mg="30")
    nurse.post(dose_url(patient), data=dose_form(nurse, patient, amount_mg="50"))
    response = other.post(dose_url(patient), data=late_form)
    assert response.status_code == 409 and "at the same moment" in _amount_error(response)
    assert len(doses(app)) == 1
    # Seen now: the second portion is recorded from the page shown with the refusal.
    again = dose_form(other, patient, amount_mg="30")
    assert other.post(dose_url(patient), data=again).status_code == 302
    assert len(doses(app)) == 2


def test_a_split_dose_asks_for_the_remaining_portion(app, nurse, patient_on):
    patient = patient_on(
        dose_mg="80",
        schedule="split",
        split_first_mg="50",
        split_second_mg="30",
        justification="Rapid metaboliser, documented.",
    )
    page = nurse.get(dose_url(patient)).get_data(as_text=True)
    assert 'value="50"' in page and "Record portion 1 dose" in page
    nurse.post(dose_url(patient), data=dose_form(nurse, patient, amount_mg="50"))
    page = nurse.get(dose_url(patient)).get_data(as_text=True)
    assert 'value="30"' in page and "Record portion 2 dose" in page
    screen = nurse.get("/dosing/?site=MAIN").get_data(as_text=True)
    assert "portion 2: 30 mg left" in screen


def test_a_hold_and_a_warning_show_and_refuse(app, nurse, patient_on, make_user):
    from clinic.accounts.models import User
    from clinic.medications import holds

    patient = patient_on()
    clinician_id = make_user("clinician")
    with app.test_request_context():
        clinician = db.session.get(User, clinician_id)
        shown = db.session.get(Patient, patient)
        flag = holds.add_flag(shown, actor=clinician, category="warning", text="Smells of alcohol")
        db.session.commit()
        flag_id = flag.id
    response = nurse.post(dose_url(patient), data=dose_form(nurse, patient))
    assert ledger.UNACKNOWLEDGED_MESSAGE in text(response)
    ack = nurse.post(
        f"/dosing/patients/{patient}/acknowledge",
        data={"csrf_token": nurse.csrf_token(dose_url(patient)), "flag_id": str(flag_id)},
    )
    assert ack.status_code == 302
    assert "Acknowledged today" in nurse.get(dose_url(patient)).get_data(as_text=True)
    with app.test_request_context():
        holds.place_hold(
            db.session.get(Patient, patient),
            actor=db.session.get(User, clinician_id),
            reason="Sedated",
            until_on=None,
        )
        db.session.commit()
    response = nurse.post(dose_url(patient), data=dose_form(nurse, patient))
    assert ledger.ON_HOLD_MESSAGE in response.get_data(as_text=True)
    assert doses(app) == []
    assert "Hold" in nurse.get("/dosing/?site=MAIN").get_data(as_text=True)


def test_a_discharged_patient_is_not_dosed(app, nurse, patient_on, client_as, today):
    patient = patient_on()
    form = dose_form(nurse, patient)
    with app.app_context():
        enrollment = db.session.scalar(
            sa.select(Enrollment).where(Enrollment.patient_id == patient)
        )
        version = enrollment.version
        enrollment_id = enrollment.id
    clinician = client_as("clinician")
    discharged = clinician.submit(
        f"/patients/enrollments/{enrollment_id}/discharge",
        {"discharged_on": today.isoformat(), "reason": "2", "version": str(version)},
    )
    assert discharged.status_code == 302, discharged.get_data(as_text=True)
    response = nurse.post(dose_url(patient), data=form)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert ledger.NO_ORDER_MESSAGE in html or ledger.DISCHARGED_MESSAGE in html
    assert doses(app) == []
    assert 'data-count="0"' in nurse.get("/dosing/?site=MAIN").get_data(as_text=True)


def test_a_held_dose_is_recorded_with_its_reason(app, nurse, patient_on):
    patient = patient_on()
    html = nurse.get(dose_url(patient)).get_data(as_text=True)
    tokens = TOKEN_RE.findall(html)
    data = {"csrf_token": CSRF_RE.search(html).group(1), "submission_token": tokens[-1]}
    refused = nurse.post(f"/dosing/patients/{patient}/held", data={**data, "held_reason": ""})
    assert ledger.HELD_REASON_MESSAGE in text(refused)
    saved = nurse.post(
        f"/dosing/patients/{patient}/held", data={**data, "held_reason": "Appears intoxicated"}
    )
    assert saved.status_code == 302
    [entry] = doses(app)
    assert entry.kind == DoseKind.HELD


# --- roles ------------------------------------------------------------------------------


def test_who_may_see_and_record(app, client_as, patient_on):
    patient = patient_on()
    staff, admin = client_as("staff"), client_as("admin")
    clinician = client_as("clinician")
    assert staff.get("/dosing/?site=MAIN").status_code == 403
    assert staff.get(f"/dosing/patients/{patient}/history").status_code == 403
    assert admin.get("/dosing/?site=MAIN").status_code == 200
    assert clinician.get("/dosing/?site=MAIN").status_code == 200
    for user in (staff, admin, clinician):  # none may dispense
        assert user.get(dose_url(patient)).status_code == 403
        assert (
            user.post(dose_url(patient), data={"csrf_token": user.csrf_token("/")}).status_code
            == 403
        )
    # The screen shows no dose links to those who may not dose.
    assert "dosing-select" not in admin.get("/dosing/?site=MAIN").get_data(as_text=True)


def test_a_patient_of_another_site_is_not_found(app, nurse, patient_on, make_site):
    east = make_site("EAST")
    patient = patient_on("Bo", "East", site_id=east)
    assert nurse.get(dose_url(patient)).status_code == 404
    assert nurse.get(f"/dosing/patients/{patient}/history").status_code == 404


def test_staff_see_no_doses_on_the_chart(app, nurse, client_as, patient_on):
    patient = patient_on()
    nurse.post(dose_url(patient), data=dose_form(nurse, patient))
    assert 'data-testid="doses-section"' in client_as("clinician").get(
        f"/patients/{patient}"
    ).get_data(as_text=True)
    staff_chart = client_as("staff").get(f"/patients/{patient}").get_data(as_text=True)
    assert 'data-testid="doses-section"' not in staff_chart and "Last dose" not in staff_chart


# --- reversal, injection, review, log ---------------------------------------------------


def test_a_reversal_through_the_page(app, nurse, patient_on):
    patient = patient_on()
    nurse.post(dose_url(patient), data=dose_form(nurse, patient))
    [entry] = doses(app)
    url = f"/dosing/patients/{patient}/reverse"
    html = nurse.get(url).get_data(as_text=True)
    data = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "submission_token": TOKEN_RE.search(html).group(1),
        "dose_id": str(entry.id),
    }
    refused = nurse.post(url, data={**data, "reason": ""})
    assert ledger.REVERSAL_REASON_MESSAGE in refused.get_data(as_text=True)
    done = nurse.post(url, data={**data, "reason": "Recorded for the wrong patient"})
    assert done.status_code == 302
    assert [e.kind for e in doses(app)] == [DoseKind.OBSERVED, DoseKind.REVERSAL]
    assert 'data-testid="nothing-to-reverse"' in nurse.get(url).get_data(as_text=True)
    history = nurse.get(f"/dosing/patients/{patient}/history").get_data(as_text=True)
    assert "Reversed" in history and "Recorded for the wrong patient" in history


def test_an_injection_through_the_page(app, nurse, patient_on, today):
    patient = patient_on(
        medication="xr_buprenorphine",
        product_form="injection",
        strength="300 mg/1.5 mL",
        dose_mg="300",
        schedule="monthly",
    )
    assert "Overdue" in nurse.get("/dosing/injections").get_data(as_text=True)
    url = f"/dosing/patients/{patient}/injection"
    html = nurse.get(url).get_data(as_text=True)
    data = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "submission_token": TOKEN_RE.search(html).group(1),
        # What the page showed as given today (None: no dose form on the page).
        "given_count": (found := GIVEN_RE.search(html)) and found.group(1),
        "dob_confirmed": "y",
        "amount_mg": "300",
        "lot": "",
        "injection_site": "abdomen_left",
    }
    refused = nurse.post(url, data=data)
    assert "Enter the lot number" in refused.get_data(as_text=True)
    saved = nurse.post(url, data={**data, "lot": "LOT-778"})
    assert saved.status_code == 302
    [entry] = doses(app)
    assert (entry.kind, entry.lot) == (DoseKind.INJECTION, "LOT-778")
    assert 'data-testid="injections-empty"' in nurse.get("/dosing/injections").get_data(
        as_text=True
    )


def test_the_review_list_and_a_review(app, client_as, nurse, patient_on, today):
    patient = patient_on(start_on=today - dt.timedelta(days=3))  # never dosed: 3 days
    patient_on("Two", "Days", start_on=today - dt.timedelta(days=2))
    clinician = client_as("clinician")
    listed = clinician.get("/dosing/review").get_data(as_text=True)
    assert "Smith, Jo" in listed and "Days, Two" not in listed
    assert 'data-testid="missed-alert"' in nurse.get("/dosing/?site=MAIN").get_data(as_text=True)
    url = f"/dosing/patients/{patient}/review"
    html = clinician.get(url).get_data(as_text=True)
    data = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "submission_token": TOKEN_RE.search(html).group(1),
        "decision": "new_order",
        "note": "Dose to be re-assessed",
    }
    done = clinician.post(url, data=data)
    assert done.status_code == 302
    assert done.headers["Location"] == f"/medications/patients/{patient}/orders/new"
    assert 'data-testid="review-empty"' in clinician.get("/dosing/review").get_data(as_text=True)
    assert nurse.get(url).status_code == 200  # a nurse is a clinician: may review too


def test_three_missed_days_refuse_the_dose_until_a_clinician_reviews(
    app, client_as, nurse, patient_on, today
):
    patient = patient_on(start_on=today - dt.timedelta(days=3))  # never dosed: 3 days
    started = today - dt.timedelta(days=3)
    reason = (
        f"3 missed days (no dose since the order started {started.day} "
        f"{started.strftime('%b')}): a clinician's review is needed before the next dose."
    )
    page = text(nurse.get(dose_url(patient)))
    assert reason in page
    assert f'href="/dosing/patients/{patient}/review"' in page  # a nurse is a clinician
    assert 'id="dose-form"' not in page  # no dose form; holding the dose stays possible
    assert f'action="/dosing/patients/{patient}/held"' in page
    refused = nurse.post(dose_url(patient), data=dose_form(nurse, patient))
    assert refused.status_code == 200 and reason in text(refused)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(DoseEntry.id))) == 0
    screen = text(nurse.get("/dosing/?site=MAIN"))
    assert 'data-testid="missed-alert"' in screen
    # The clinician's review (continue): the dose is given.
    url = f"/dosing/patients/{patient}/review"
    html = nurse.get(url).get_data(as_text=True)
    reviewed = nurse.post(
        url,
        data={
            "csrf_token": CSRF_RE.search(html).group(1),
            "submission_token": TOKEN_RE.search(html).group(1),
            "decision": "continue",
            "note": "",
        },
    )
    assert reviewed.status_code == 302
    assert 'id="dose-form"' in text(nurse.get(dose_url(patient)))
    done = nurse.post(dose_url(patient), data=dose_form(nurse, patient))
    assert done.status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(DoseEntry.id))) == 1


def test_the_daily_log_groups_rows_by_dispenser_with_an_initials_line(
    app, nurse, client_as, patient_on
):
    first, second = patient_on("Jo", "Smith"), patient_on("Ann", "Lee")
    other = client_as("clinician", may_dispense=True, full_name="Second Nurse")
    nurse.post(dose_url(first), data=dose_form(nurse, first))
    other.post(dose_url(second), data=dose_form(other, second))
    html = client_as("admin").get("/dosing/log?site=MAIN").get_data(as_text=True)
    assert html.count("Dispenser's initials") == 2
    assert "Second Nurse" in html and "Smith, Jo" in html and "Lee, Ann" in html
    assert "data-print" in html


def test_history_pages_by_keyset(app, nurse, patient_on, today):
    patient = patient_on()
    _ledger_rows(app, patient, 120, today)
    first = nurse.get(f"/dosing/patients/{patient}/history").get_data(as_text=True)
    assert first.count("<tr") == 51  # header + 50
    cursor = re.search(r"before=(\d+)", first).group(1)
    second = nurse.get(f"/dosing/patients/{patient}/history?before={cursor}").get_data(as_text=True)
    cursor = re.search(r"before=(\d+)", second).group(1)
    third = nurse.get(f"/dosing/patients/{patient}/history?before={cursor}").get_data(as_text=True)
    assert third.count("<tr") == 21 and "before=" not in third
    for bad in ("abc", "-1", "99999999999999"):
        assert nurse.get(f"/dosing/patients/{patient}/history?before={bad}").status_code == 200


# --- query counts -----------------------------------------------------------------------


def _ledger_rows(app, patient_id: int, count: int, today: dt.date) -> None:
    """``count`` daily observed doses of the patient, one a day back from yesterday."""
    with app.app_context():
        order = db.session.scalar(
            sa.select(MedicationOrder).where(MedicationOrder.patient_id == patient_id)
        )
        patient = db.session.get(Patient, patient_id)
        nurse_id = order.prescriber_id
        db.session.add_all(
            DoseEntry(
                kind=DoseKind.OBSERVED,
                patient_id=patient_id,
                site_id=patient.site_id,
                order_id=order.id,
                medication=order.medication,
                substance="methadone",
                strength=order.strength,
                dosage_form=order.product_form,
                dispensed_on=today - dt.timedelta(days=n + 1),
                dispensed_at=dt.datetime.combine(
                    today - dt.timedelta(days=n + 1), dt.time(14), dt.UTC
                ),
                amount_mg=Decimal("40"),
                slot=1,
                dispenser_id=nurse_id,
            )
            for n in range(count)
        )
        db.session.commit()


def _bulk_due_patients(app, site_id: int, prescriber_id: int, count: int, today: dt.date) -> None:
    """``count`` patients with active daily orders, straight into the tables (fast), with
    a dose yesterday, a flag and a hold for some, so every part of the screen has rows."""
    from clinic.medications.models import MedicationHold, PatientFlag

    with app.app_context():
        program = db.session.scalar(sa.select(sa.text("id")).select_from(sa.text("program")))
        start = today - dt.timedelta(days=30)
        for n in range(count):
            tag = uuid.uuid4().hex[:8]
            patient = Patient(
                site_id=site_id,
                mrn=f"MAIN-B{tag}",
                first_name=f"P{tag}",
                last_name=f"Bulk{tag}",
                first_key=f"p{tag}",
                last_key=f"bulk{tag}",
                date_of_birth=dt.date(1980, 1, 1),
                sex_at_birth="female",
                primary_substance="fentanyl",
                intake_date=start,
                duplicate_confirmed=True,
            )
            db.session.add(patient)
            db.session.flush()
            enrollment = Enrollment(
                patient_id=patient.id,
                program_id=program,
                admitted_on=start,
                asam_edition="3",
                asam_level="OTP",
            )
            db.session.add(enrollment)
            db.session.flush()
            order = MedicationOrder(
                patient_id=patient.id,
                enrollment_id=enrollment.id,
                medication="methadone",
                product_form="oral_liquid",
                strength="10 mg/mL",
                dose_mg=Decimal("60"),
                schedule="daily",
                start_on=start,
                prescriber_id=prescriber_id,
            )
            db.session.add(order)
            db.session.flush()
            db.session.add(
                DoseEntry(
                    kind=DoseKind.OBSERVED,
                    patient_id=patient.id,
                    site_id=site_id,
                    order_id=order.id,
                    medication="methadone",
                    substance="methadone",
                    strength="10 mg/mL",
                    dosage_form="oral_liquid",
                    dispensed_on=today - dt.timedelta(days=1 + n % 5),
                    amount_mg=Decimal("60"),
                    slot=1,
                    dispenser_id=prescriber_id,
                )
            )
            if n % 3 == 0:
                db.session.add(
                    PatientFlag(
                        patient_id=patient.id,
                        category="warning" if n % 2 else "info",
                        text="bulk flag",
                        created_by_id=prescriber_id,
                    )
                )
            if n % 7 == 0:
                db.session.add(
                    MedicationHold(patient_id=patient.id, reason="bulk", placed_by_id=prescriber_id)
                )
        db.session.commit()


class StatementCounter:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.count = 0

    def __call__(self, *args, **kwargs) -> None:
        self.count += 1

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self)


def _statements(app, client, url: str) -> int:
    with app.app_context():
        engine = db.engine
    with StatementCounter(engine) as counter:
        response = client.get(url)
    assert response.status_code == 200
    return counter.count


def test_the_dosing_screen_runs_a_constant_number_of_statements(
    app, nurse, site, prescriber, patient_on, today
):
    patient_on()  # the program the bulk patients join
    _bulk_due_patients(app, site, prescriber, 10, today)
    nurse.get("/dosing/?site=MAIN")  # warm up (session, user)
    small = _statements(app, nurse, "/dosing/?site=MAIN")
    _bulk_due_patients(app, site, prescriber, 190, today)
    large = _statements(app, nurse, "/dosing/?site=MAIN")
    html = nurse.get("/dosing/?site=MAIN").get_data(as_text=True)
    assert 'data-count="201"' in html
    assert small == large, (small, large)
    filtered = _statements(app, nurse, "/dosing/list?site=MAIN&q=bulk")
    assert filtered <= large


def test_the_dose_history_runs_a_constant_number_of_statements(app, nurse, patient_on, today):
    patient = patient_on()
    _ledger_rows(app, patient, 10, today)
    nurse.get(f"/dosing/patients/{patient}/history")
    small = _statements(app, nurse, f"/dosing/patients/{patient}/history")
    _ledger_rows(app, patient, 190, today - dt.timedelta(days=10))
    large = _statements(app, nurse, f"/dosing/patients/{patient}/history")
    assert small == large, (small, large)
