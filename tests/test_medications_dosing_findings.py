"""Findings of the issue 10 dosing walk-through (task MF2): orders in force by their dates
(an order ended today still gives today's dose; a same-day change's replacement is the one
in force), the first-day total with take-home amounts, refusals shown before the form is
sent, holds and flags closed once and never deleted (triggers on both engines), and the
dosing screen's order. The clock is frozen at a site-local noon: nothing here depends on
the hour the suite runs (the cause of an intermittent failure: a test crossing the site's
midnight between its fixture's "today" and its body's)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from html import unescape

import pytest
import sqlalchemy as sa
import time_machine

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications import dose_day, holds, ledger, orders
from clinic.medications.models import (
    DoseEntry,
    DoseKind,
    MedicationHold,
    MedicationOrder,
    PatientFlag,
)
from clinic.patients.models import Enrollment, Patient
from clinic.web import constraint_name

# Noon in Chicago (the test site's zone): far from either midnight, UTC's or the site's.
NOON = dt.datetime(2026, 3, 18, 17, 0, tzinfo=dt.UTC)
TODAY = dt.date(2026, 3, 18)


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOON, tick=True):
        yield


@pytest.fixture
def prescriber(make_user) -> int:
    return make_user("clinician", is_prescriber=True)


@pytest.fixture
def nurse(client_as):
    return client_as("clinician", may_dispense=True)


@pytest.fixture
def patient_on(make_patient, make_program, make_enrollment, make_order, prescriber):
    """A patient with methadone 40 mg daily since yesterday (dosed yesterday: no missed
    days) unless told otherwise; returns (patient id, order id)."""

    def make(first="Jo", last="Smith", *, dosed_yesterday=True, **order):
        patient = make_patient(first, last)
        program = make_program(f"Methadone {uuid.uuid4().hex[:6]}")
        start = order.pop("start_on", TODAY - dt.timedelta(days=1))
        enrollment = make_enrollment(patient, program, admitted_on=start - dt.timedelta(3))
        order_id = make_order(enrollment, prescriber, start_on=start, **{"dose_mg": "40", **order})
        if dosed_yesterday and start < TODAY:
            _ledger(patient, order_id, TODAY - dt.timedelta(days=1), amount_mg=Decimal("40"))
        return patient, order_id

    return make


def _ledger(patient_id: int, order_id: int, day: dt.date, **values) -> None:
    with _context():
        patient = db.session.get(Patient, patient_id)
        order = db.session.get(MedicationOrder, order_id)
        kind = values.pop("kind", DoseKind.OBSERVED)
        slot = values.pop("slot", 1 if kind in (DoseKind.OBSERVED, DoseKind.INJECTION) else None)
        db.session.add(
            DoseEntry(
                kind=kind,
                patient_id=patient.id,
                site_id=patient.site_id,
                order_id=order.id,
                medication=order.medication,
                substance=order.medication.substance,
                strength=order.strength,
                dosage_form=order.product_form,
                dispensed_on=day,
                dispensed_at=dt.datetime.combine(day, dt.time(15), dt.UTC),
                dispenser_id=order.prescriber_id,
                slot=slot,
                **values,
            )
        )
        db.session.commit()


_APP = {}


@pytest.fixture(autouse=True)
def _remember_app(app):
    _APP["app"] = app
    yield
    _APP.clear()


def _context():
    return _APP["app"].app_context()


def text(response) -> str:
    return unescape(response.get_data(as_text=True))


def dose_url(patient_id: int) -> str:
    return f"/dosing/patients/{patient_id}/dose"


def _end(order_id: int, prescriber_id: int, end_on: dt.date) -> None:
    with _APP["app"].test_request_context():
        orders.end_order(
            db.session.get(MedicationOrder, order_id),
            actor=db.session.get(User, prescriber_id),
            end_on=end_on,
            reason="Completed",
        )
        db.session.commit()


def _change(order_id: int, prescriber_id: int, dose: str, start_on: dt.date) -> int:
    with _APP["app"].test_request_context():
        order = db.session.get(MedicationOrder, order_id)
        new = orders.change_dose(
            order,
            actor=db.session.get(User, prescriber_id),
            data=orders.OrderInput(
                medication=order.medication,
                product_form=order.product_form,
                strength=order.strength,
                dose_mg=dose,
                schedule="daily",
                start_on=start_on,
                reason="Titration",
                justification="Documented tolerance.",
            ),
        )
        db.session.commit()
        return new.id


# --- 2. orders in force by their dates --------------------------------------------------------


def test_an_order_ended_today_still_gives_todays_dose(
    app, nurse, patient_on, prescriber, make_user
):
    dispenser = make_user("clinician", may_dispense=True)
    patient, order = patient_on()
    _end(order, prescriber, TODAY)  # the end form's default: last day = today
    screen = nurse.get("/dosing/?site=MAIN").get_data(as_text=True)
    assert 'data-count="1"' in screen
    page = text(nurse.get(dose_url(patient)))
    assert 'id="dose-form"' in page and ledger.NO_ORDER_MESSAGE not in page
    with app.test_request_context():
        shown = db.session.get(Patient, patient)
        assert dose_day.daily_order(shown, TODAY).id == order
        assert dose_day.daily_order(shown, TODAY + dt.timedelta(days=1)) is None
        entry = ledger.record_dose(shown, actor=db.session.get(User, dispenser), amount_mg="40")
        assert entry.order_id == order
        db.session.rollback()


def test_an_order_ended_yesterday_gives_no_dose_today(app, nurse, patient_on, prescriber):
    patient, order = patient_on(start_on=TODAY - dt.timedelta(days=3), dosed_yesterday=False)
    _end(order, prescriber, TODAY - dt.timedelta(days=1))
    assert 'data-count="0"' in nurse.get("/dosing/?site=MAIN").get_data(as_text=True)
    assert ledger.NO_ORDER_MESSAGE in text(nurse.get(dose_url(patient)))


def test_a_same_day_change_puts_the_replacement_in_force(app, nurse, patient_on, prescriber):
    patient, order = patient_on(start_on=TODAY, dosed_yesterday=False)
    new = _change(order, prescriber, "45", TODAY)
    with app.app_context():
        assert db.session.get(MedicationOrder, order).end_on == TODAY  # both "in" today
        assert [o.id for o in orders.active_orders([patient], TODAY)] == [new]
    with app.test_request_context():
        assert dose_day.daily_order(db.session.get(Patient, patient), TODAY).id == new
    page = text(nurse.get(dose_url(patient)))
    assert "45 mg daily" in page and 'value="45"' in page
    screen = text(nurse.get("/dosing/?site=MAIN"))
    assert 'data-count="1"' in screen and "45 mg" in screen


def test_an_order_ended_before_it_started_is_never_in_force(app, nurse, patient_on, prescriber):
    patient, order = patient_on(start_on=TODAY + dt.timedelta(days=2), dosed_yesterday=False)
    _end(order, prescriber, TODAY)
    with app.test_request_context():
        ended = db.session.get(MedicationOrder, order)
        assert ended.end_on == ended.start_on - dt.timedelta(days=1)
        shown = db.session.get(Patient, patient)
        for days in range(4):
            assert dose_day.daily_order(shown, TODAY + dt.timedelta(days=days)) is None


# --- 3. the first-day total -------------------------------------------------------------------


def test_the_first_day_total_counts_take_home_amounts_and_not_injections(app, patient_on):
    patient, order = patient_on(start_on=TODAY, dosed_yesterday=False)
    _ledger(
        patient,
        order,
        TODAY,
        amount_mg=Decimal("20"),
        take_home_mg=Decimal("10"),
        take_home_form="oral liquid",
    )
    with app.app_context():
        assert dose_day.first_day_total_mg(patient, TODAY) == Decimal("30")
        assert dose_day.first_day_total_mg(patient, TODAY - dt.timedelta(days=1)) == 0


# --- 4. refusals known before the form is sent -------------------------------------------------


def _no_dose_form(page: str) -> bool:
    return 'id="dose-form"' not in page and 'name="amount_mg"' not in page


def test_a_held_patients_dose_page_shows_the_hold_not_the_form(app, nurse, patient_on, make_user):
    patient, _order = patient_on()
    clinician = make_user("clinician")
    with app.test_request_context():
        holds.place_hold(
            db.session.get(Patient, patient),
            actor=db.session.get(User, clinician),
            reason="Sedated",
            until_on=None,
        )
        db.session.commit()
    page = text(nurse.get(dose_url(patient)))
    assert _no_dose_form(page)
    assert ledger.ON_HOLD_MESSAGE in page and "Record as held" in page


def test_a_discharged_patients_dose_page_shows_the_discharge(app, nurse, patient_on):
    patient, _order = patient_on()
    with app.app_context():
        db.session.execute(
            sa.update(Enrollment)
            .where(Enrollment.patient_id == patient)
            .values(discharged_on=TODAY, discharge_reason=2, version=Enrollment.version + 1)
        )
        db.session.commit()
    page = text(nurse.get(dose_url(patient)))
    assert _no_dose_form(page) and ledger.DISCHARGED_MESSAGE in page


def test_a_review_needed_and_no_order_show_in_place_of_the_form(app, nurse, patient_on):
    missed, _order = patient_on(start_on=TODAY - dt.timedelta(days=3), dosed_yesterday=False)
    page = text(nurse.get(dose_url(missed)))
    assert _no_dose_form(page)
    assert "a clinician's review is needed before the next dose" in page
    nothing, _order = patient_on("Al", "Other", start_on=TODAY + dt.timedelta(days=2))
    page = text(nurse.get(dose_url(nothing)))
    assert _no_dose_form(page) and ledger.NO_ORDER_MESSAGE in page


def test_a_dose_given_in_full_shows_dosed_not_the_form(app, nurse, patient_on):
    patient, order = patient_on()
    _ledger(patient, order, TODAY, amount_mg=Decimal("40"))
    page = text(nurse.get(dose_url(patient)))
    assert _no_dose_form(page) and "Already dosed today." in page


def test_an_unacknowledged_warning_shows_in_place_of_the_form(app, nurse, patient_on, make_user):
    patient, _order = patient_on()
    clinician = make_user("clinician")
    with app.test_request_context():
        holds.add_flag(
            db.session.get(Patient, patient),
            actor=db.session.get(User, clinician),
            category="warning",
            text="Check for sedation",
        )
        db.session.commit()
    page = text(nurse.get(dose_url(patient)))
    assert _no_dose_form(page) and ledger.UNACKNOWLEDGED_MESSAGE in page
    assert "Acknowledge for today" in page


# --- 7. holds and flags: closed once, never deleted, by SQL too ---------------------------------


@pytest.fixture
def hold_and_flag(app, make_patient, make_user) -> dict[str, int]:
    patient = make_patient()
    clinician = make_user("clinician")
    with app.test_request_context():
        shown = db.session.get(Patient, patient)
        actor = db.session.get(User, clinician)
        hold = holds.place_hold(shown, actor=actor, reason="Sedated", until_on=None)
        flag = holds.add_flag(shown, actor=actor, category="info", text="Prefers Spanish")
        db.session.commit()
        return {"hold": hold.id, "flag": flag.id, "user": clinician}


def _refused(statement: str, **params) -> str | None:
    with _context():
        try:
            db.session.execute(sa.text(statement), params)
            db.session.commit()
        except sa.exc.IntegrityError as error:
            db.session.rollback()
            return constraint_name(error)
    return None


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE medication_hold SET reason = 'edited'",
        "UPDATE medication_hold SET until_on = '2026-03-01'",
        "UPDATE medication_hold SET placed_by_id = placed_by_id + 1",
        "DELETE FROM medication_hold",
    ],
)
def test_a_hold_cannot_be_edited_or_deleted_by_sql(hold_and_flag, statement):
    assert _refused(statement) == "medication_hold_lift_once"
    with _context():
        hold = db.session.get(MedicationHold, hold_and_flag["hold"])
        assert (hold.reason, hold.until_on) == ("Sedated", None)


def test_a_hold_is_lifted_once(hold_and_flag):
    lift = "UPDATE medication_hold SET lifted_at = :at, lifted_by_id = :user, lift_reason = :why"
    values = {"at": NOON, "user": hold_and_flag["user"]}
    assert _refused(lift, why="Alert and oriented", **values) is None
    assert _refused(lift, why="again", **values) == "medication_hold_lift_once"
    assert (
        _refused(
            "UPDATE medication_hold SET lifted_at = NULL, lifted_by_id = NULL, lift_reason = NULL"
        )
        == "medication_hold_lift_once"
    )
    assert _refused("DELETE FROM medication_hold") == "medication_hold_lift_once"
    with _context():
        assert db.session.get(MedicationHold, hold_and_flag["hold"]).lift_reason == (
            "Alert and oriented"
        )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE patient_flag SET text = 'edited'",
        "UPDATE patient_flag SET category = 'warning'",
        "DELETE FROM patient_flag",
    ],
)
def test_a_flag_cannot_be_edited_or_deleted_by_sql(hold_and_flag, statement):
    assert _refused(statement) == "patient_flag_clear_once"
    with _context():
        flag = db.session.get(PatientFlag, hold_and_flag["flag"])
        assert (flag.text, flag.category.value) == ("Prefers Spanish", "info")


def test_a_flag_is_cleared_once(hold_and_flag):
    clear = "UPDATE patient_flag SET cleared_at = :at, cleared_by_id = :user"
    values = {"at": NOON, "user": hold_and_flag["user"]}
    assert _refused(clear, **values) is None
    assert _refused(clear, **values) == "patient_flag_clear_once"
    assert _refused("UPDATE patient_flag SET cleared_at = NULL, cleared_by_id = NULL") == (
        "patient_flag_clear_once"
    )


def test_the_services_still_lift_and_clear(hold_and_flag):
    with _APP["app"].test_request_context():
        actor = db.session.get(User, hold_and_flag["user"])
        holds.lift_hold(
            db.session.get(MedicationHold, hold_and_flag["hold"]), actor=actor, reason="Fine"
        )
        holds.clear_flag(db.session.get(PatientFlag, hold_and_flag["flag"]), actor=actor)
        db.session.commit()
        assert db.session.get(MedicationHold, hold_and_flag["hold"]).lifted_at is not None
        assert db.session.get(PatientFlag, hold_and_flag["flag"]).cleared_at is not None


def test_the_app_role_may_not_delete_holds_or_flags():
    from clinic.audit.cli import TABLE_PRIVILEGES

    assert TABLE_PRIVILEGES["medication_hold"] == "SELECT, INSERT, UPDATE"
    assert TABLE_PRIVILEGES["patient_flag"] == "SELECT, INSERT, UPDATE"


# --- 8. the dosing screen's order --------------------------------------------------------------


def test_the_screen_puts_patients_dosed_today_at_the_bottom_and_says_so(app, nurse, patient_on):
    adams, adams_order = patient_on("Ann", "Adams")
    patient_on("Bo", "Baker")
    patient_on("Cy", "Clark")
    _ledger(adams, adams_order, TODAY, amount_mg=Decimal("40"))
    html = text(nurse.get("/dosing/?site=MAIN"))
    names = re.findall(r'data-patient-id="\d+"[^>]*>\s*<td>.*?>(\w+), \w+<', html, re.S)
    assert names == ["Baker", "Clark", "Adams"]
    caption = re.search(r'data-testid="dosing-order">([^<]*)<', html).group(1)
    assert "still to dose first" in caption and "dosed today at the bottom" in caption
