"""Medication orders (issue 10): every guardrail at its edges, dose change and switch as
end + new order in one transaction, the database's own rules (partial unique index,
CHECKs, the trigger that keeps an order's clinical columns unchanged), bad input on the
form, and the discharge ending the enrollment's orders."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import orders
from clinic.medications.models import MedicationOrder, OrderStatus

START = dt.date(2026, 1, 5)


@pytest.fixture
def setup(app, make_user, make_patient, make_program, make_enrollment):
    prescriber = make_user("clinician", is_prescriber=True, full_name="Dr Prescriber")
    patient = make_patient()
    program = make_program()
    enrollment = make_enrollment(patient, program, admitted_on=START)
    return {"prescriber": prescriber, "patient": patient, "enrollment": enrollment}


def _data(**overrides) -> orders.OrderInput:
    values = {
        "medication": "methadone",
        "product_form": "oral_liquid",
        "strength": "10 mg/mL",
        "dose_mg": "40",
        "schedule": "daily",
        "start_on": START,
    }
    values.update(overrides)
    return orders.OrderInput(**values)


def _start(app, setup, **overrides):
    from clinic.accounts.models import User
    from clinic.patients.models import Enrollment

    with app.test_request_context():
        order = orders.start_order(
            db.session.get(Enrollment, setup["enrollment"]),
            actor=db.session.get(User, setup["prescriber"]),
            data=_data(**overrides),
        )
        db.session.commit()
        return order.id


def _refused(app, setup, **overrides) -> DomainError:
    with pytest.raises(DomainError) as caught:
        _start(app, setup, **overrides)
    with app.app_context():
        db.session.rollback()
        assert db.session.scalar(sa.select(sa.func.count(MedicationOrder.id))) == 0
    return caught.value


def _change(app, order_id, prescriber, service=orders.change_dose, **overrides):
    from clinic.accounts.models import User

    with app.test_request_context():
        order = db.session.get(MedicationOrder, order_id)
        created = service(order, actor=db.session.get(User, prescriber), data=_data(**overrides))
        db.session.commit()
        return created.id


# --- first-day methadone (42 CFR 8.12(h)(3)(ii)) ---------------------------------------------


@pytest.mark.parametrize("dose", ["49", "50"])
def test_first_day_methadone_up_to_50_mg_needs_no_justification(app, setup, dose):
    order_id = _start(app, setup, dose_mg=dose)
    with app.app_context():
        assert db.session.get(MedicationOrder, order_id).dose_mg == Decimal(dose)


def test_first_day_methadone_51_mg_needs_a_justification(app, setup):
    error = _refused(app, setup, dose_mg="51")
    assert error.field == "justification"
    assert "8.12(h)(3)(ii)" in error.message
    order_id = _start(app, setup, dose_mg="51", justification="High tolerance, fentanyl use.")
    with app.app_context():
        assert db.session.get(MedicationOrder, order_id).justification.startswith("High")


def test_first_day_50_01_mg_is_above_50(app, setup):
    assert _refused(app, setup, dose_mg="50.01").field == "justification"


def test_a_split_dose_on_day_one_counts_both_portions(app, setup):
    error = _refused(
        app, setup, dose_mg="60", schedule="split", split_first_mg="30", split_second_mg="30"
    )
    assert error.field == "justification"
    order_id = _start(
        app, setup, dose_mg="50", schedule="split", split_first_mg="30", split_second_mg="20"
    )
    with app.app_context():
        order = db.session.get(MedicationOrder, order_id)
        assert (order.split_first_mg, order.split_second_mg) == (Decimal("30"), Decimal("20"))
        assert order.dose_label == "50 mg (30 mg + 20 mg)"


def test_after_day_one_the_50_mg_rule_no_longer_applies(app, setup):
    first = _start(app, setup, dose_mg="40")
    second = _change(
        app, first, setup["prescriber"], dose_mg="50", start_on=START + dt.timedelta(1)
    )
    third = _change(
        app, second, setup["prescriber"], dose_mg="60", start_on=START + dt.timedelta(2)
    )
    with app.app_context():
        assert db.session.get(MedicationOrder, third).dose_mg == Decimal("60")


def test_a_change_on_day_one_is_still_day_one(app, setup):
    first = _start(app, setup, dose_mg="40")
    with pytest.raises(DomainError) as caught:
        _change(app, first, setup["prescriber"], dose_mg="50.5", start_on=START)
    assert caught.value.field == "justification"


# --- usual range, step, naltrexone ------------------------------------------------------------


def test_methadone_above_200_mg_needs_a_justification(app, setup):
    later = START + dt.timedelta(days=1)
    first = _start(app, setup, dose_mg="40")
    with pytest.raises(DomainError) as caught:
        _change(app, first, setup["prescriber"], dose_mg="200.5", start_on=later, reason="r")
    assert caught.value.field == "justification"
    ok = _change(app, first, setup["prescriber"], dose_mg="200", start_on=later, reason="titrate")
    assert ok


@pytest.mark.parametrize(("dose", "refused"), [("32", False), ("32.5", True)])
def test_sublingual_buprenorphine_above_32_mg_needs_a_justification(app, setup, dose, refused):
    fields = {
        "medication": "buprenorphine_naloxone",
        "product_form": "sublingual_film",
        "strength": "8 mg/2 mg",
        "dose_mg": dose,
    }
    if refused:
        assert _refused(app, setup, **fields).field == "justification"
    else:
        assert _start(app, setup, **fields)


@pytest.mark.parametrize(("new", "needs_reason"), [("50", False), ("50.01", True), ("30", False)])
def test_a_change_beyond_the_program_step_needs_a_reason(app, setup, new, needs_reason):
    first = _start(app, setup, dose_mg="40")
    later = START + dt.timedelta(days=3)
    if needs_reason:
        with pytest.raises(DomainError) as caught:
            _change(app, first, setup["prescriber"], dose_mg=new, start_on=later)
        assert caught.value.field == "reason"
        with app.app_context():  # nothing ended half-way
            assert db.session.get(MedicationOrder, first).status == OrderStatus.ACTIVE
    else:
        assert _change(app, first, setup["prescriber"], dose_mg=new, start_on=later)


def test_buprenorphine_step_is_4_mg(app, setup):
    fields = {
        "medication": "buprenorphine",
        "product_form": "sublingual_tablet",
        "strength": "8 mg",
    }
    first = _start(app, setup, dose_mg="8", **fields)
    later = START + dt.timedelta(days=2)
    with pytest.raises(DomainError) as caught:
        _change(app, first, setup["prescriber"], dose_mg="12.5", start_on=later, **fields)
    assert caught.value.field == "reason"
    assert _change(app, first, setup["prescriber"], dose_mg="12", start_on=later, **fields)


@pytest.mark.parametrize(
    ("days_before", "justification", "ok"),
    [(7, None, True), (6, None, False), (None, None, False), (2, "Rapid induction", True)],
)
def test_starting_naltrexone_needs_7_opioid_free_days_or_a_justification(
    app, setup, days_before, justification, ok
):
    start = START + dt.timedelta(days=10)
    fields = {
        "medication": "xr_naltrexone",
        "product_form": "injection",
        "strength": "380 mg",
        "dose_mg": "380",
        "schedule": "every_4_weeks",
        "start_on": start,
        "justification": justification,
        "last_opioid_use_on": start - dt.timedelta(days=days_before) if days_before else None,
    }
    if ok:
        assert _start(app, setup, **fields)
    else:
        assert _refused(app, setup, **fields).field == "last_opioid_use_on"


# --- enrollment, prescriber, amounts ----------------------------------------------------------


def test_an_order_cannot_start_before_the_admission(app, setup):
    error = _refused(app, setup, start_on=START - dt.timedelta(days=1))
    assert error.field == "start_on"


def test_an_order_cannot_start_after_a_discharge(app, setup):
    from clinic.accounts.models import User
    from clinic.patients import admissions
    from clinic.patients.models import Enrollment

    with app.test_request_context():
        admissions.discharge(
            db.session.get(Enrollment, setup["enrollment"]),
            actor=db.session.get(User, setup["prescriber"]),
            discharged_on=START + dt.timedelta(days=5),
            reason=1,
            expected_version=1,
        )
        db.session.commit()
    error = _refused(app, setup, start_on=START + dt.timedelta(days=6))
    assert error.field == "start_on"
    assert "discharge" in error.message


def test_a_clinician_without_the_prescriber_flag_cannot_order(app, setup, make_user):
    setup = {**setup, "prescriber": make_user("clinician")}
    error = _refused(app, setup)
    assert error.message == orders.ONLY_PRESCRIBERS_MESSAGE


@pytest.mark.parametrize(
    ("dose", "message"),
    [
        ("0", "more than 0"),
        ("-5", "more than 0"),
        ("10000", "not possible"),
        ("1000.01", "not possible"),
        ("abc", "number"),
        ("62.555", "two decimals"),
        ("NaN", "number"),
        ("", "Enter the dose"),
    ],
)
def test_bad_amounts_are_refused_on_the_dose(app, setup, dose, message):
    error = _refused(app, setup, dose_mg=dose)
    assert error.field == "dose_mg"
    assert message in error.message


def test_split_portions_must_add_up_and_belong_to_a_split(app, setup):
    error = _refused(
        app, setup, dose_mg="50", schedule="split", split_first_mg="30", split_second_mg="10"
    )
    assert error.field == "split_second_mg"
    error = _refused(app, setup, dose_mg="50", split_first_mg="30")
    assert error.field == "split_first_mg"


def test_product_form_and_schedule_must_fit_the_medication(app, setup):
    assert _refused(app, setup, product_form="injection").field == "product_form"
    assert _refused(app, setup, schedule="monthly").field == "schedule"


def test_one_active_order_per_medication(app, setup):
    _start(app, setup)
    with pytest.raises(DomainError) as caught:
        _start(app, setup)
    assert caught.value.field == "medication"


# --- change, switch, end, discharge ---------------------------------------------------------


def test_a_dose_change_ends_the_current_order_and_starts_the_next(app, setup):
    first = _start(app, setup, dose_mg="40")
    later = START + dt.timedelta(days=4)
    second = _change(app, first, setup["prescriber"], dose_mg="45", start_on=later)
    with app.app_context():
        old = db.session.get(MedicationOrder, first)
        new = db.session.get(MedicationOrder, second)
        assert old.status == OrderStatus.ENDED
        assert old.end_on == later - dt.timedelta(days=1)
        assert old.dose_mg == Decimal("40")  # history kept
        assert new.replaces_id == first
        assert new.status == OrderStatus.ACTIVE
        assert [o.id for o in orders.active_orders([old.patient_id], later)] == [second]
        # The day before the change the old order is still the one in force (its last day).
        day_before = later - dt.timedelta(1)
        assert [o.id for o in orders.active_orders([old.patient_id], day_before)] == [first]


def test_a_switch_ends_the_old_medication_and_needs_a_reason(app, setup):
    first = _start(app, setup, dose_mg="40")
    fields = {
        "medication": "buprenorphine_naloxone",
        "product_form": "sublingual_film",
        "strength": "8 mg/2 mg",
        "dose_mg": "16",
        "start_on": START + dt.timedelta(days=8),
    }
    with pytest.raises(DomainError) as caught:
        _change(app, first, setup["prescriber"], service=orders.switch_medication, **fields)
    assert caught.value.field == "reason"
    second = _change(
        app, first, setup["prescriber"], service=orders.switch_medication, reason="QT", **fields
    )
    with app.app_context():
        assert db.session.get(MedicationOrder, first).status == OrderStatus.ENDED
        assert db.session.get(MedicationOrder, second).medication.value == "buprenorphine_naloxone"


def test_ending_an_order_needs_a_reason_and_a_date_not_in_the_future(app, setup):
    from clinic.accounts.models import User

    order_id = _start(app, setup)
    with app.test_request_context():
        order = db.session.get(MedicationOrder, order_id)
        actor = db.session.get(User, setup["prescriber"])
        with pytest.raises(DomainError) as caught:
            orders.end_order(order, actor=actor, end_on=START, reason=" ")
        assert caught.value.field == "reason"
        with pytest.raises(DomainError) as caught:
            orders.end_order(order, actor=actor, end_on=dt.date(2099, 1, 1), reason="done")
        assert caught.value.field == "end_on"
        orders.end_order(order, actor=actor, end_on=START + dt.timedelta(3), reason="completed")
        db.session.commit()
        assert order.status == OrderStatus.ENDED
        with pytest.raises(DomainError):
            orders.end_order(order, actor=actor, end_on=START + dt.timedelta(3), reason="again")


def test_discharge_ends_the_enrollments_active_orders_and_audits_it(app, setup):
    from clinic.accounts.models import User
    from clinic.audit.models import AuditEvent
    from clinic.patients import admissions
    from clinic.patients.models import Enrollment

    order_id = _start(app, setup)
    discharged = START + dt.timedelta(days=20)
    with app.test_request_context():
        admissions.discharge(
            db.session.get(Enrollment, setup["enrollment"]),
            actor=db.session.get(User, setup["prescriber"]),
            discharged_on=discharged,
            reason=2,
            expected_version=1,
        )
        db.session.commit()
        order = db.session.get(MedicationOrder, order_id)
        assert order.status == OrderStatus.ENDED
        assert order.end_on == discharged
        assert order.ended_reason == "enrollment discharged"
        events = db.session.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.entity_type == "medication_order", AuditEvent.entity_id == str(order_id)
            )
        ).all()
        assert [e.action.value for e in events] == ["create", "update"]
        assert "reason" not in events[0].details or "justification" not in events[0].details


# --- the database's own rules ---------------------------------------------------------------


def _raw(app, statement: str, **params):
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_the_trigger_refuses_an_update_of_clinical_columns(app, setup):
    order_id = _start(app, setup)
    for column, value in (("dose_mg", 45), ("medication", "buprenorphine"), ("start_on", START)):
        if column == "start_on":
            value = START + dt.timedelta(days=1)
        with pytest.raises(sa.exc.DatabaseError, match="medication_order_clinical_immutable"):
            _raw(
                app,
                f"UPDATE medication_order SET {column} = :v WHERE id = :id",
                v=value,
                id=order_id,
            )
    with pytest.raises(sa.exc.DatabaseError, match="medication_order_clinical_immutable"):
        _raw(app, "DELETE FROM medication_order WHERE id = :id", id=order_id)
    with app.app_context():
        assert db.session.get(MedicationOrder, order_id).dose_mg == Decimal("40")


def test_the_trigger_lets_only_the_ending_columns_change_once(app, setup):
    order_id = _start(app, setup)
    _raw(
        app,
        "UPDATE medication_order SET status = 'ended', end_on = start_on, ended_reason = 'x', "
        "ended_by_id = prescriber_id, ended_at = created_at WHERE id = :id",
        id=order_id,
    )
    with pytest.raises(sa.exc.DatabaseError, match="medication_order_clinical_immutable"):
        _raw(app, "UPDATE medication_order SET ended_reason = 'y' WHERE id = :id", id=order_id)


def test_the_partial_unique_index_allows_one_active_order_per_medication(app, setup):
    order_id = _start(app, setup)
    copy = (
        "INSERT INTO medication_order (patient_id, enrollment_id, medication, product_form, "
        "strength, dose_mg, schedule, start_on, status, prescriber_id, created_at) "
        "SELECT patient_id, enrollment_id, medication, product_form, strength, dose_mg, "
        "schedule, start_on, :status, prescriber_id, created_at FROM medication_order "
        "WHERE id = :id"
    )
    with pytest.raises(sa.exc.IntegrityError):
        _raw(app, copy, status="active", id=order_id)
    # an ended row is outside the index (CHECK needs its ending columns)
    with pytest.raises(sa.exc.IntegrityError):
        _raw(app, copy, status="ended", id=order_id)


@pytest.mark.parametrize(("column", "value"), [("dose_mg", 0), ("dose_mg", -1), ("dose_mg", 10000)])
def test_checks_refuse_impossible_amounts(app, setup, column, value):
    order_id = _start(app, setup)
    insert = (
        "INSERT INTO medication_order (patient_id, enrollment_id, medication, product_form, "
        "strength, dose_mg, schedule, start_on, status, prescriber_id, created_at) "
        "SELECT patient_id, enrollment_id, 'buprenorphine', 'sublingual_film', strength, :v, "
        "schedule, start_on, 'active', prescriber_id, created_at FROM medication_order "
        "WHERE id = :id"
    )
    with pytest.raises(sa.exc.IntegrityError, match="dose_in_range"):
        _raw(app, insert, v=value, id=order_id)


def test_split_portions_must_sum_to_the_dose_in_the_database(app, setup):
    order_id = _start(app, setup)
    insert = (
        "INSERT INTO medication_order (patient_id, enrollment_id, medication, product_form, "
        "strength, dose_mg, schedule, split_first_mg, split_second_mg, start_on, status, "
        "prescriber_id, created_at) SELECT patient_id, enrollment_id, 'buprenorphine', "
        "'sublingual_film', strength, 16, 'split', 8, 7, start_on, 'active', prescriber_id, "
        "created_at FROM medication_order WHERE id = :id"
    )
    with pytest.raises(sa.exc.IntegrityError, match="split_portions"):
        _raw(app, insert, id=order_id)


# --- the form --------------------------------------------------------------------------------


@pytest.fixture
def prescriber_client(app, setup, username_of):
    from tests.conftest import login

    client = app.test_client()
    assert login(client, username_of(setup["prescriber"])).status_code == 302
    return client


def _form(setup, **overrides) -> dict:
    values = {
        "enrollment_id": str(setup["enrollment"]),
        "medication": "methadone",
        "product_form": "oral_liquid",
        "strength": "10 mg/mL",
        "dose_mg": "40",
        "schedule": "daily",
        "start_on": START.isoformat(),
        "submission_token": "t" * 20,
    }
    values.update(overrides)
    return values


@pytest.mark.parametrize("dose", ["abc", "-5", "0", "10000", "1e3x"])
def test_text_or_impossible_amounts_are_form_errors_and_the_input_is_kept(
    app, setup, prescriber_client, dose
):
    url = f"/medications/patients/{setup['patient']}/orders/new"
    response = prescriber_client.submit(url, _form(setup, dose_mg=dose, strength="10 mg/mL"))
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert 'id="dose_mg-error"' in body
    assert 'value="10 mg/mL"' in body
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(MedicationOrder.id))) == 0


def test_a_guardrail_shows_next_to_its_field_and_a_double_submit_saves_once(
    app, setup, prescriber_client
):
    url = f"/medications/patients/{setup['patient']}/orders/new"
    response = prescriber_client.submit(url, _form(setup, dose_mg="60"))
    assert response.status_code == 400
    assert 'id="justification-error"' in response.get_data(as_text=True)
    data = _form(setup, dose_mg="60", justification="Tolerance documented")
    assert prescriber_client.submit(url, data).status_code == 302
    assert prescriber_client.submit(url, data).status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(MedicationOrder.id))) == 1


def test_change_switch_and_end_through_the_pages(app, setup, prescriber_client):
    order_id = _start(app, setup)
    later = (START + dt.timedelta(days=2)).isoformat()
    change = f"/medications/orders/{order_id}/change"
    assert prescriber_client.get(change).status_code == 200
    response = prescriber_client.submit(change, _form(setup, dose_mg="45", start_on=later))
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        new_id = db.session.scalar(
            sa.select(MedicationOrder.id).where(MedicationOrder.status == OrderStatus.ACTIVE)
        )
    end = f"/medications/orders/{new_id}/end"
    page = prescriber_client.get(end).get_data(as_text=True)
    assert "End the order?" in page
    response = prescriber_client.submit(end, {"end_on": later, "reason": "completed taper"})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(MedicationOrder, new_id).status == OrderStatus.ENDED
    # an ended order's pages send back to the medication page
    assert prescriber_client.get(end).status_code == 302


def test_an_order_form_sent_with_an_expired_token_comes_back_filled(app, setup, prescriber_client):
    """The order page answers its form's errors with 400: after a CSRF refusal it is still
    shown again with the prescriber's entries (not the plain 400 page), and nothing saved."""
    url = f"/medications/patients/{setup['patient']}/orders/new"
    data = {**_form(setup, dose_mg="45", reason="Titration"), "csrf_token": "expired"}
    response = prescriber_client.post(url, data=data)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "data-csrf-refused" in body
    assert 'value="45"' in body
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(MedicationOrder.id))) == 0
