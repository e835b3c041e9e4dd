"""Findings of the issue 10 walk-through (task T10), order side: amounts read as typed
("1,5" is not 15 mg), a dose change that would leave days without an order in force,
medications that cannot stand together, and two prescribers changing the same order."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import amounts, dose_day, orders
from clinic.medications.models import MedicationOrder, OrderStatus
from clinic.patients.models import Enrollment
from clinic.sites.time import site_today

ADMITTED = dt.date(2026, 1, 5)


@pytest.fixture
def setup(app, make_user, make_patient, make_program, make_enrollment):
    prescriber = make_user("clinician", is_prescriber=True)
    patient = make_patient()
    enrollment = make_enrollment(patient, make_program(), admitted_on=ADMITTED)
    return {"prescriber": prescriber, "patient": patient, "enrollment": enrollment}


def _data(**overrides) -> orders.OrderInput:
    values = {
        "medication": "methadone",
        "product_form": "oral_liquid",
        "strength": "10 mg/mL",
        "dose_mg": "40",
        "schedule": "daily",
        "start_on": ADMITTED,
    }
    values.update(overrides)
    return orders.OrderInput(**values)


def _start(setup, **overrides) -> MedicationOrder:
    order = orders.start_order(
        db.session.get(Enrollment, setup["enrollment"]),
        actor=db.session.get(User, setup["prescriber"]),
        data=_data(**overrides),
    )
    db.session.commit()
    return order


def _today(setup) -> dt.date:
    return site_today(db.session.get(Enrollment, setup["enrollment"]).patient.site)


# --- amounts as typed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("1,5", "no commas"),  # a decimal comma was read as 15 mg
        ("1,000", "no commas"),
        ("1e2", "as a number"),  # an exponent was read as 100 mg
        ("1E1", "as a number"),
        ("1_0", "as a number"),  # digit grouping was read as 10 mg
        ("\u0665\u0660", "as a number"),  # Arabic-Indic digits were read as 50 mg
        ("5 0", "as a number"),
        ("0x10", "as a number"),
        ("-0", "more than 0"),
        ("1e309", "as a number"),
    ],
)
def test_an_amount_is_digits_and_one_point_only(typed, message):
    with pytest.raises(DomainError) as refused:
        amounts.parse_mg(typed, field="dose_mg")
    assert message in refused.value.message
    assert refused.value.field == "dose_mg"


@pytest.mark.parametrize(
    ("typed", "amount"),
    [("62.5", "62.50"), (" 40 ", "40.00"), (".5", "0.50"), ("50.", "50.00"), ("+7", "7.00")],
)
def test_plain_amounts_are_read_exactly(typed, amount):
    assert amounts.parse_mg(typed, field="dose_mg") == Decimal(amount)
    assert amounts.parse_mg(Decimal(amount), field="dose_mg") == Decimal(amount)


def test_a_decimal_comma_on_the_form_is_an_error_next_to_the_dose(app, setup, username_of):
    from tests.conftest import login

    client = app.test_client()
    assert login(client, username_of(setup["prescriber"])).status_code == 302
    response = client.submit(
        f"/medications/patients/{setup['patient']}/orders/new",
        {
            "enrollment_id": str(setup["enrollment"]),
            "medication": "methadone",
            "product_form": "oral_liquid",
            "strength": "10 mg/mL",
            "dose_mg": "4,5",
            "schedule": "daily",
            "start_on": ADMITTED.isoformat(),
            "submission_token": "c" * 20,
        },
    )
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert 'id="dose_mg-error"' in body and "no commas" in body
    assert 'value="4,5"' in body
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(MedicationOrder.id))) == 0


# --- a dose change never leaves days without an order in force -------------------------------


def test_a_dose_change_starting_tomorrow_is_refused_and_the_order_stays(app, setup):
    with app.test_request_context():
        order = _start(setup)
        tomorrow = _today(setup) + dt.timedelta(days=1)
        with pytest.raises(DomainError) as refused:
            orders.change_dose(
                order,
                actor=db.session.get(User, setup["prescriber"]),
                data=_data(dose_mg="45", start_on=tomorrow),
            )
        assert refused.value.field == "start_on"
        assert "today at the latest" in refused.value.message
        db.session.rollback()
        assert db.session.get(MedicationOrder, order.id).status == OrderStatus.ACTIVE
        patient = db.session.get(Enrollment, setup["enrollment"]).patient
        assert dose_day.daily_order(patient, _today(setup)).id == order.id


@pytest.mark.parametrize("service", [orders.change_dose, orders.switch_medication])
def test_a_change_or_switch_starting_today_keeps_an_order_in_force(app, setup, service):
    with app.test_request_context():
        order = _start(setup)
        today = _today(setup)
        data = (
            _data(dose_mg="45", start_on=today)
            if service is orders.change_dose
            else _data(
                medication="buprenorphine",
                product_form="sublingual_film",
                strength="8 mg",
                dose_mg="8",
                start_on=today,
                reason="Patient preference",
            )
        )
        created = service(order, actor=db.session.get(User, setup["prescriber"]), data=data)
        db.session.commit()
        patient = db.session.get(Enrollment, setup["enrollment"]).patient
        assert dose_day.daily_order(patient, today).id == created.id


def test_an_order_written_ahead_may_be_replaced_on_its_own_start_day(app, setup):
    with app.test_request_context():
        ahead = _today(setup) + dt.timedelta(days=3)
        order = _start(setup, start_on=ahead)
        created = orders.change_dose(
            order,
            actor=db.session.get(User, setup["prescriber"]),
            data=_data(dose_mg="35", start_on=ahead),
        )
        db.session.commit()
        assert created.start_on == ahead
        later = ahead + dt.timedelta(days=1)
        with pytest.raises(DomainError) as refused:
            orders.change_dose(
                created,
                actor=db.session.get(User, setup["prescriber"]),
                data=_data(dose_mg="30", start_on=later),
            )
        assert refused.value.field == "start_on"


# --- medications that cannot stand together --------------------------------------------------


def test_naltrexone_cannot_start_beside_methadone(app, setup):
    with app.test_request_context():
        _start(setup)
        with pytest.raises(DomainError) as refused:
            _start(
                setup,
                medication="naltrexone",
                product_form="tablet",
                strength="50 mg",
                dose_mg="50",
                justification="Opioid-free by history",
            )
        assert refused.value.field == "medication"
        assert "naltrexone and opioid agonists" in refused.value.message


def test_an_agonist_cannot_start_beside_xr_naltrexone(app, setup):
    with app.test_request_context():
        _start(
            setup,
            medication="xr_naltrexone",
            product_form="injection",
            strength="380 mg",
            dose_mg="380",
            schedule="every_4_weeks",
            last_opioid_use_on=ADMITTED - dt.timedelta(days=10),
        )
        with pytest.raises(DomainError) as refused:
            _start(setup, medication="buprenorphine", product_form="sublingual_film", dose_mg="8")
        assert refused.value.field == "medication"


def test_two_daily_medications_are_refused_but_an_injection_beside_a_daily_one_is_not(app, setup):
    with app.test_request_context():
        _start(setup, medication="buprenorphine", product_form="sublingual_film", dose_mg="8")
        with pytest.raises(DomainError) as refused:
            _start(setup)  # methadone daily beside buprenorphine daily
        assert "one daily medication" in refused.value.message
        db.session.rollback()
        injection = _start(
            setup,
            medication="xr_buprenorphine",
            product_form="injection",
            strength="300 mg/1.5 mL",
            dose_mg="300",
            schedule="monthly",
        )
        assert injection.status == OrderStatus.ACTIVE


def test_a_switch_to_naltrexone_is_refused_while_another_agonist_order_stays(app, setup):
    with app.test_request_context():
        sublingual = _start(
            setup, medication="buprenorphine", product_form="sublingual_film", dose_mg="8"
        )
        _start(
            setup,
            medication="xr_buprenorphine",
            product_form="injection",
            strength="300 mg/1.5 mL",
            dose_mg="300",
            schedule="monthly",
        )
        with pytest.raises(DomainError) as refused:
            orders.switch_medication(
                sublingual,
                actor=db.session.get(User, setup["prescriber"]),
                data=_data(
                    medication="naltrexone",
                    product_form="tablet",
                    strength="50 mg",
                    dose_mg="50",
                    start_on=_today(setup),
                    reason="Patient wants an antagonist",
                    justification="Opioid-free by history",
                ),
            )
        assert "extended-release" in refused.value.message.lower()
        db.session.rollback()
        assert db.session.get(MedicationOrder, sublingual.id).status == OrderStatus.ACTIVE


# --- two prescribers at once ----------------------------------------------------------------


@pytest.mark.parametrize("action", ["change", "end"])
def test_a_second_prescriber_acting_on_an_order_ended_meanwhile_is_told(app, setup, action):
    """The page loaded the order while it was active; another prescriber ended it before
    this one saved: a clear refusal, not the trigger's error (a 500)."""
    with app.test_request_context():
        stale = _start(setup)
        stale_id = stale.id
        assert stale.active and stale.enrollment.active and stale.patient.site  # loaded now
        with app.app_context():  # another request, its own session
            other = db.session.get(MedicationOrder, stale_id)
            orders.end_order(
                other,
                actor=db.session.get(User, setup["prescriber"]),
                end_on=_today(setup),
                reason="stopped by a colleague",
            )
            db.session.commit()
        actor = db.session.get(User, setup["prescriber"])
        with pytest.raises(DomainError) as refused:
            if action == "change":
                orders.change_dose(
                    stale, actor=actor, data=_data(dose_mg="45", start_on=_today(setup))
                )
            else:
                orders.end_order(stale, actor=actor, end_on=_today(setup), reason="again")
        assert refused.value.message == orders.ENDED_ORDER_MESSAGE
        db.session.rollback()
        count = db.session.scalar(sa.select(sa.func.count(MedicationOrder.id)))
        assert count == 1


# --- methadone only in an opioid treatment program -------------------------------------------


def test_methadone_is_ordered_only_under_an_otp_enrollment(
    app, make_user, make_patient, make_program, make_enrollment
):
    prescriber = make_user("clinician", is_prescriber=True)
    patient = make_patient()
    office = make_enrollment(
        patient, make_program("Office bup", kind="office_buprenorphine"), admitted_on=ADMITTED
    )
    setup = {"prescriber": prescriber, "patient": patient, "enrollment": office}
    with app.test_request_context():
        with pytest.raises(DomainError) as refused:
            _start(setup)
        assert refused.value.field == "enrollment_id"
        assert "opioid treatment program" in refused.value.message
        db.session.rollback()
        bup = _start(setup, medication="buprenorphine", product_form="sublingual_film", dose_mg="8")
        with pytest.raises(DomainError) as refused:
            orders.switch_medication(
                bup,
                actor=db.session.get(User, prescriber),
                data=_data(start_on=_today(setup), reason="wants methadone"),
            )
        assert refused.value.field == "medication"
        db.session.rollback()
        assert db.session.get(MedicationOrder, bup.id).status == OrderStatus.ACTIVE


def test_the_enrollment_refusal_shows_next_to_the_enrollment_choice(
    app, make_user, make_patient, make_program, make_enrollment, username_of
):
    from tests.conftest import login

    prescriber = make_user("clinician", is_prescriber=True)
    patient = make_patient()
    iop = make_enrollment(
        patient, make_program("IOP", kind="intensive_outpatient"), admitted_on=ADMITTED
    )
    client = app.test_client()
    assert login(client, username_of(prescriber)).status_code == 302
    response = client.submit(
        f"/medications/patients/{patient}/orders/new",
        {
            "enrollment_id": str(iop),
            "medication": "methadone",
            "product_form": "oral_liquid",
            "strength": "10 mg/mL",
            "dose_mg": "40",
            "schedule": "daily",
            "start_on": ADMITTED.isoformat(),
            "submission_token": "m" * 20,
        },
    )
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert 'id="enrollment_id-error"' in body and "opioid treatment program" in body
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(MedicationOrder.id))) == 0


# --- pages ---------------------------------------------------------------------------------


def test_an_injection_order_says_injection_once(app, setup, username_of):
    from tests.conftest import login

    with app.test_request_context():
        _start(
            setup,
            medication="xr_buprenorphine",
            product_form="injection",
            strength="300 mg/1.5 mL",
            dose_mg="300",
            schedule="monthly",
        )
    client = app.test_client()
    assert login(client, username_of(setup["prescriber"])).status_code == 302
    for url in (f"/patients/{setup['patient']}", f"/medications/patients/{setup['patient']}"):
        body = client.get(url).get_data(as_text=True)
        assert "Extended-release buprenorphine injection" in body, url
        assert "injection injection" not in body, url
        assert "300 mg/1.5 mL" in body, url


def test_another_patients_enrollment_in_the_hidden_choice_saves_nothing(
    app, setup, make_patient, make_program, make_enrollment, username_of
):
    from tests.conftest import login

    other = make_enrollment(make_patient(), make_program("Other OTP"), admitted_on=ADMITTED)
    client = app.test_client()
    assert login(client, username_of(setup["prescriber"])).status_code == 302
    for enrollment_id in (str(other), "99999", "abc"):
        response = client.submit(
            f"/medications/patients/{setup['patient']}/orders/new",
            {
                "enrollment_id": enrollment_id,
                "medication": "methadone",
                "product_form": "oral_liquid",
                "strength": "10 mg/mL",
                "dose_mg": "40",
                "schedule": "daily",
                "start_on": ADMITTED.isoformat(),
                "submission_token": f"e{enrollment_id}".ljust(20, "x"),
            },
        )
        assert response.status_code == 400, enrollment_id
        assert 'id="enrollment_id-error"' in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(MedicationOrder.id))) == 0


# --- the program's step counts the day's changes together ------------------------------------


def test_two_changes_within_the_step_on_one_day_are_one_change_beyond_it(app, setup):
    with app.test_request_context():
        actor = db.session.get(User, setup["prescriber"])
        order = _start(setup)  # 40 mg since the admission
        today = _today(setup)
        first = orders.change_dose(order, actor=actor, data=_data(dose_mg="50", start_on=today))
        db.session.commit()
        with pytest.raises(DomainError) as refused:
            orders.change_dose(first, actor=actor, data=_data(dose_mg="60", start_on=today))
        assert refused.value.field == "reason"
        assert "20 mg" in refused.value.message
        db.session.rollback()
        # back down to 45 mg the same day: 5 mg from the day's starting dose, no reason
        again = db.session.get(MedicationOrder, first.id)
        settled = orders.change_dose(again, actor=actor, data=_data(dose_mg="45", start_on=today))
        db.session.commit()
        assert settled.dose_mg == Decimal("45.00")
        assert settled.reason is None
