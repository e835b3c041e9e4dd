"""Dosing services: each refusal with its reason, split doses, reversals, injections,
warning acknowledgements, missed days (2 versus 3), reviews and the first-day total."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine

from clinic.accounts.models import User
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import (
    dose_day,
    dose_records,
    holds,
    ledger,
    missed,
    orders,
    reviews,
    worklists,
)
from clinic.medications.models import (
    DoseEntry,
    DoseKind,
    MedicationHold,
    MedicationOrder,
    MissedDoseReview,
)
from clinic.patients import admissions
from clinic.patients.models import Enrollment, Patient
from clinic.sites.time import site_today

CHICAGO = ZoneInfo("America/Chicago")


@pytest.fixture(autouse=True)
def site_noon():
    """Every test runs from a site-local noon (Chicago, the test site's zone): "today" is
    the same day in a fixture and in the test body, and UTC's date is the site's. (A test
    that ran across the site's midnight saw its fixture's "today" become yesterday: a dose
    recorded for "yesterday" then counted as a missed day — the cause of an intermittent
    failure of test_a_reversed_dose_does_not_end_a_run_of_missed_days.)"""
    with time_machine.travel(dt.datetime(2026, 3, 18, 17, 0, tzinfo=dt.UTC), tick=True):
        yield


def at(day: dt.date, hour: int = 9) -> dt.datetime:
    """An instant on a site-local day (the test site is in Chicago)."""
    return dt.datetime.combine(day, dt.time(hour), CHICAGO).astimezone(dt.UTC)


class World:
    """The records of one test, loaded in its request context."""

    def __init__(self, ids: dict[str, int]) -> None:
        self.ids = ids

    @property
    def patient(self) -> Patient:
        return db.session.get(Patient, self.ids["patient"])

    @property
    def nurse(self) -> User:
        return db.session.get(User, self.ids["nurse"])

    @property
    def clinician(self) -> User:
        return db.session.get(User, self.ids["clinician"])

    @property
    def today(self) -> dt.date:
        return site_today(self.patient.site)

    def dose(self, amount="40", *, day: dt.date | None = None, **kwargs) -> DoseEntry:
        now = at(day) if day is not None else None
        entry = ledger.record_dose(
            self.patient, actor=self.nurse, amount_mg=amount, now=now, **kwargs
        )
        db.session.commit()
        return entry

    def refusal(self, amount="40", **kwargs) -> DomainError:
        with pytest.raises(DomainError) as refused:
            ledger.record_dose(self.patient, actor=self.nurse, amount_mg=amount, **kwargs)
        db.session.rollback()
        return refused.value

    def missed(self) -> missed.MissedDays:
        order = dose_day.daily_order(self.patient, self.today)
        return missed.patient_missed_days(self.patient, order, self.today)


@pytest.fixture
def make_world(app, site, make_user, make_patient, make_program, make_enrollment, make_order):
    """A patient with an order starting ``start`` days ago (default 2: two days missed,
    one short of a review) and a dispenser. A test dosing on past days starts the order on
    its first dose day, so no run of missed days precedes it."""

    def make(*, start: int = 2, **order_fields) -> World:
        with app.app_context():
            from clinic.sites.models import Site

            today = site_today(db.session.get(Site, site))
        start_on = today - dt.timedelta(days=start)
        prescriber = make_user("clinician", is_prescriber=True)
        ids = {
            "prescriber": prescriber,
            "nurse": make_user("clinician", may_dispense=True),
            "clinician": make_user("clinician"),
            "patient": make_patient(),
        }
        ids["enrollment"] = make_enrollment(
            ids["patient"],
            make_program(f"Methadone {uuid.uuid4().hex[:6]}"),
            admitted_on=start_on - dt.timedelta(days=1),
        )
        fields = {"dose_mg": "40", "start_on": start_on, **order_fields}
        ids["order"] = make_order(ids["enrollment"], prescriber, **fields)
        return World(ids)

    return make


@pytest.fixture
def world(app, make_world):
    made = make_world()
    with app.test_request_context():
        yield made


@pytest.fixture
def split_world(app, make_world):
    made = make_world(
        dose_mg="80",
        schedule="split",
        split_first_mg="50",
        split_second_mg="30",
        justification="Tolerance documented by the prescriber.",
    )
    with app.test_request_context():
        yield made


# --- recording and its refusals --------------------------------------------------------


def test_a_dispenser_records_the_ordered_dose_with_the_1304_24_fields(world):
    entry = world.dose("40", station="Window 2")
    assert entry.kind == DoseKind.OBSERVED
    assert entry.amount_mg == Decimal("40.00")
    assert entry.substance == "methadone"
    assert entry.strength == "10 mg/mL"
    assert entry.dosage_form == "oral_liquid"
    assert entry.dispensed_on == world.today
    assert entry.dispenser_id == world.nurse.id
    assert entry.station == "Window 2"
    assert entry.slot == 1
    assert entry.order_id == world.ids["order"]


def test_already_dosed_today_is_refused(world):
    world.dose()
    assert world.refusal().message == ledger.ALREADY_DOSED_MESSAGE
    assert db.session.scalar(sa.select(sa.func.count(DoseEntry.id))) == 1


def test_a_clinician_without_the_dispense_flag_is_refused(world):
    with pytest.raises(DomainError) as refused:
        ledger.record_dose(world.patient, actor=world.clinician, amount_mg="40")
    assert refused.value.message == ledger.NOT_A_DISPENSER_MESSAGE


def test_no_active_order_is_refused(world):
    from clinic.medications import orders

    order = db.session.get(MedicationOrder, world.ids["order"])
    prescriber = db.session.get(User, world.ids["prescriber"])
    orders.end_order(
        order, actor=prescriber, end_on=world.today - dt.timedelta(days=1), reason="Tapered off"
    )
    db.session.commit()
    assert world.refusal().message == ledger.NO_ORDER_MESSAGE


def test_a_hold_in_force_is_refused(world):
    holds.place_hold(world.patient, actor=world.clinician, reason="Intoxicated", until_on=None)
    db.session.commit()
    assert world.refusal().message == ledger.ON_HOLD_MESSAGE


def test_a_hold_that_ended_yesterday_no_longer_refuses(world):
    db.session.add(
        MedicationHold(
            patient_id=world.patient.id,
            reason="Labs",
            until_on=world.today - dt.timedelta(days=1),
            placed_by_id=world.clinician.id,
            placed_at=at(world.today - dt.timedelta(days=3)),
        )
    )
    db.session.commit()
    assert world.dose().amount_mg == Decimal("40")


def test_a_discharged_enrollment_is_refused(world):
    enrollment = db.session.get(Enrollment, world.ids["enrollment"])
    # Straight in the table: the discharge service also ends the orders (M-orders).
    db.session.execute(
        sa.text(
            "UPDATE enrollment SET discharged_on = :d, discharge_reason = 2, "
            "version = version + 1 WHERE id = :id"
        ),
        {"d": world.today, "id": enrollment.id},
    )
    db.session.commit()
    assert world.refusal().message == ledger.DISCHARGED_MESSAGE


def test_a_discharged_patient_through_the_discharge_service_has_no_dose(world):
    enrollment = db.session.get(Enrollment, world.ids["enrollment"])
    admissions.discharge(
        enrollment,
        actor=world.clinician,
        discharged_on=world.today,
        reason=2,
        expected_version=enrollment.version,
    )
    db.session.commit()
    assert world.refusal().message in (ledger.NO_ORDER_MESSAGE, ledger.DISCHARGED_MESSAGE)


def test_an_unacknowledged_warning_refuses_until_acknowledged_today(world):
    flag = holds.add_flag(
        world.patient, actor=world.clinician, category="warning", text="Check breath alcohol"
    )
    holds.add_flag(world.patient, actor=world.clinician, category="info", text="Prefers Spanish")
    db.session.commit()
    assert world.refusal().message == ledger.UNACKNOWLEDGED_MESSAGE
    ledger.acknowledge_flag(flag, actor=world.nurse)
    ledger.acknowledge_flag(flag, actor=world.nurse)  # again the same day: no second row
    db.session.commit()
    assert (
        db.session.scalar(sa.select(sa.func.count()).select_from(sa.text("flag_acknowledgement")))
        == 1
    )
    assert world.dose().amount_mg == Decimal("40")


def test_an_acknowledgement_lasts_one_day(world):
    flag = holds.add_flag(world.patient, actor=world.clinician, category="warning", text="Sedated?")
    db.session.commit()
    ledger.acknowledge_flag(flag, actor=world.nurse, now=at(world.today - dt.timedelta(days=1)))
    db.session.commit()
    assert world.refusal().message == ledger.UNACKNOWLEDGED_MESSAGE


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", ledger.AMOUNT_POSITIVE_MESSAGE),
        ("-5", ledger.AMOUNT_POSITIVE_MESSAGE),
        ("10000", ledger.AMOUNT_TOO_LARGE_MESSAGE),
        ("abc", "Enter the amount as a number of mg, e.g. 62.5."),
        ("NaN", "Enter the amount as a number of mg, e.g. 62.5."),
        ("40.005", "Give the amount to at most two decimals (0.01 mg)."),
        # Read by Decimal() as 100, 10, 50 and 15 mg: refused as typed (amounts.parse_mg).
        ("1e2", "Enter the amount as a number of mg, e.g. 62.5."),
        ("1_0", "Enter the amount as a number of mg, e.g. 62.5."),
        ("\u0665\u0660", "Enter the amount as a number of mg, e.g. 62.5."),
        ("1,5", "Write the amount with a point for decimals and no commas, e.g. 62.5."),
    ],
)
def test_bad_amounts_are_refused_next_to_the_amount(world, amount, message):
    refused = world.refusal(amount)
    assert (refused.message, refused.field) == (message, "amount_mg")


def test_an_amount_differing_from_the_order_needs_a_reason(world):
    refused = world.refusal("35")
    assert refused.field == "reason"
    assert refused.message == ledger.AMOUNT_DIFFERS_MESSAGE.format(expected="40")
    entry = world.dose("35", reason="Patient vomited part of the dose yesterday")
    assert entry.amount_mg == Decimal("35")


def test_an_amount_above_the_order_is_refused_even_with_a_reason(world):
    refused = world.refusal("45", reason="asked for more")
    assert refused.field == "amount_mg"
    assert "Above the ordered 40 mg" in refused.message


# --- split doses ----------------------------------------------------------------------


def test_a_split_dose_gives_the_first_then_only_the_remaining_portion(split_world):
    w = split_world
    assert w.dose("50").slot == 1
    refused = w.refusal("50", reason="both at once")
    assert refused.message == "Only the remaining 30 mg of today's split dose may be given."
    assert w.dose("30").slot == 2
    assert w.refusal("30").message == ledger.BOTH_PORTIONS_MESSAGE


def test_split_portions_differing_from_the_order_need_a_reason(split_world):
    assert split_world.refusal("40").field == "reason"


def test_a_split_on_the_first_day_counts_towards_the_first_day_total(app, make_world):
    made = make_world(
        start=0,
        dose_mg="50",
        schedule="split",
        split_first_mg="30",
        split_second_mg="20",
    )
    with app.test_request_context():
        made.dose("30")
        assert dose_day.first_day_total_mg(made.patient, made.today) == Decimal("30")
        made.dose("20")
        assert dose_day.first_day_total_mg(made.patient, made.today) == Decimal("50")
        assert dose_day.first_day_total_mg(made.patient.id, made.today) == Decimal("50")
        assert made.refusal("1", reason="top up").message == ledger.BOTH_PORTIONS_MESSAGE


def _methadone(dose_mg: str, start_on: dt.date, **fields) -> orders.OrderInput:
    return orders.OrderInput(
        medication="methadone",
        product_form="oral_liquid",
        strength="10 mg/mL",
        dose_mg=Decimal(dose_mg),
        schedule=fields.pop("schedule", "daily"),
        start_on=start_on,
        **fields,
    )


def _prescriber(world: World) -> User:
    return db.session.get(User, world.ids["prescriber"])


def test_a_dose_change_on_day_one_counts_the_dose_already_given(app, make_world):
    """42 CFR 8.12(h)(3)(ii) through the order service: day one, 40 mg observed, then a
    change to 60 mg the same day — above 50 mg in total: a written justification."""
    made = make_world(start=0)
    with app.test_request_context():
        made.dose("40")
        order = db.session.get(MedicationOrder, made.ids["order"])
        change = _methadone("60", made.today, reason="Withdrawal symptoms at 2 hours")
        with pytest.raises(DomainError) as refused:
            orders.change_dose(order, actor=_prescriber(made), data=change)
        assert refused.value.field == "justification"
        assert "first methadone day" in refused.value.message
        db.session.rollback()
        assert db.session.get(MedicationOrder, made.ids["order"]).status == "active"
        justified = _methadone(
            "60",
            made.today,
            reason="Withdrawal symptoms at 2 hours",
            justification="Observed withdrawal (COWS 14) three hours after 40 mg.",
        )
        created = orders.change_dose(order, actor=_prescriber(made), data=justified)
        db.session.commit()
        assert created.justification.startswith("Observed withdrawal")


def test_a_lower_dose_on_day_one_still_counts_what_was_given(app, make_world):
    """Fails if the doses of the day were not counted: 45 mg alone is under 50 mg, but the
    patient already had 60 mg today (a justified first dose)."""
    made = make_world(start=0, dose_mg="60", justification="Tolerance documented on transfer.")
    with app.test_request_context():
        made.dose("60")
        order = db.session.get(MedicationOrder, made.ids["order"])
        lower = _methadone("45", made.today, reason="Sedated two hours after the dose")
        with pytest.raises(DomainError) as refused:
            orders.change_dose(order, actor=_prescriber(made), data=lower)
        assert refused.value.field == "justification"
        db.session.rollback()


def test_a_reversed_day_one_dose_does_not_count_towards_the_total(app, make_world):
    made = make_world(start=0)
    with app.test_request_context():
        entry = made.dose("40")
        ledger.record_reversal(entry, actor=made.nurse, reason="Recorded for the wrong patient")
        db.session.commit()
        order = db.session.get(MedicationOrder, made.ids["order"])
        created = orders.change_dose(
            order, actor=_prescriber(made), data=_methadone("50", made.today)
        )
        db.session.commit()
        assert created.justification is None  # 50 mg in total: at the limit, allowed


@pytest.mark.parametrize(
    ("first", "second", "needs_justification"), [("30", "20", False), ("30", "30", True)]
)
def test_a_split_order_on_day_one_counts_both_portions(
    app,
    make_world,
    make_patient,
    make_program,
    make_enrollment,
    first,
    second,
    needs_justification,
):
    made = make_world(start=0)
    with app.test_request_context():
        today = made.today
    enrollment_id = make_enrollment(
        make_patient(), make_program(f"Methadone {uuid.uuid4().hex[:6]}"), admitted_on=today
    )
    with app.test_request_context():
        total = str(Decimal(first) + Decimal(second))
        data = _methadone(
            total, today, schedule="split", split_first_mg=first, split_second_mg=second
        )
        enrollment = db.session.get(Enrollment, enrollment_id)
        if needs_justification:
            with pytest.raises(DomainError) as refused:
                orders.start_order(enrollment, actor=_prescriber(made), data=data)
            assert refused.value.field == "justification"
            assert "60 mg in total" in refused.value.message
            db.session.rollback()
        else:
            created = orders.start_order(enrollment, actor=_prescriber(made), data=data)
            db.session.commit()
            assert (created.split_first_mg, created.split_second_mg) == (
                Decimal(first),
                Decimal(second),
            )


def test_a_day_one_split_after_a_dose_given_counts_the_dose(app, make_world):
    """Day one, 40 mg observed, then a change to a split 30 + 30 the same day: the
    portions and the dose given together are above 50 mg."""
    made = make_world(start=0)
    with app.test_request_context():
        made.dose("40")
        order = db.session.get(MedicationOrder, made.ids["order"])
        split = _methadone(
            "60",
            made.today,
            schedule="split",
            split_first_mg="30",
            split_second_mg="30",
            reason="Rapid metaboliser: split",
        )
        with pytest.raises(DomainError) as refused:
            orders.change_dose(order, actor=_prescriber(made), data=split)
        assert refused.value.field == "justification"


# --- reversals ------------------------------------------------------------------------


def test_a_reversal_keeps_the_original_and_frees_the_day_for_a_new_dose(world):
    entry = world.dose()
    with pytest.raises(DomainError) as refused:
        ledger.record_reversal(entry, actor=world.nurse, reason="  ")
    assert refused.value.field == "reason"
    db.session.rollback()
    reversal = ledger.record_reversal(entry, actor=world.nurse, reason="Wrong patient chosen")
    db.session.commit()
    assert reversal.reverses_id == entry.id and reversal.kind == DoseKind.REVERSAL
    assert db.session.get(DoseEntry, entry.id).amount_mg == Decimal("40")  # still there
    assert dose_day.first_day_total_mg(world.patient, world.today) == Decimal(0)
    again = world.dose()
    assert again.slot == 2  # the reversed row keeps slot 1


def test_a_dose_is_reversed_only_once_and_a_reversal_is_not_reversed(world):
    entry = world.dose()
    reversal = ledger.record_reversal(entry, actor=world.nurse, reason="Wrong amount")
    db.session.commit()
    for target, message in (
        (entry, ledger.ALREADY_REVERSED_MESSAGE),
        (reversal, ledger.NOT_REVERSIBLE_MESSAGE),
    ):
        with pytest.raises(DomainError) as refused:
            ledger.record_reversal(target, actor=world.nurse, reason="again")
        assert refused.value.message == message
        db.session.rollback()


def test_a_reversal_needs_a_dispenser(world):
    entry = world.dose()
    with pytest.raises(DomainError):
        ledger.record_reversal(entry, actor=world.clinician, reason="Wrong patient")


# --- held days ------------------------------------------------------------------------


def test_a_held_day_is_a_ledger_row_with_its_reason(world):
    with pytest.raises(DomainError) as refused:
        ledger.record_held(world.patient, actor=world.nurse, reason="")
    assert refused.value.field == "reason"
    entry = ledger.record_held(world.patient, actor=world.nurse, reason="Appears intoxicated")
    db.session.commit()
    assert (entry.kind, entry.amount_mg, entry.slot) == (DoseKind.HELD, None, None)


# --- missed days ----------------------------------------------------------------------


def days_ago(world: World, n: int) -> dt.date:
    return world.today - dt.timedelta(days=n)


@pytest.mark.parametrize(("last_dose_days_ago", "missed"), [(1, 0), (2, 1), (3, 2), (4, 3)])
def test_missed_days_are_the_due_days_since_the_last_dose(
    app, make_world, last_dose_days_ago, missed
):
    made = make_world(start=last_dose_days_ago)
    with app.test_request_context():
        made.dose(day=days_ago(made, last_dose_days_ago))
        status = made.missed()
        assert status.count == missed
        assert status.needs_review is (missed >= 3)


def test_two_missed_days_are_not_on_the_review_list_three_are(app, make_world):
    two, three = make_world(start=3), make_world(start=4)
    with app.test_request_context():
        two.dose(day=days_ago(two, 3))
        three.dose(day=days_ago(three, 4))
        listed = {r.patient.id: r.missed.count for r in reviews.review_list(None)}
        assert listed == {three.ids["patient"]: 3}


def test_two_missed_days_warn_three_refuse_the_next_dose(app, make_world):
    """DOMAIN.md: 3 or more consecutive missed days flag the patient "for clinical review
    before the next dose" — a hard refusal, with the last dose's date, until reviewed."""
    two, three = make_world(start=3), make_world(start=4)
    with app.test_request_context():
        two.dose(day=days_ago(two, 3))
        three.dose(day=days_ago(three, 4))
        assert two.dose().amount_mg == Decimal("40.00")  # 2 missed days: dosed
        last = days_ago(three, 4)
        refusal = three.refusal()
        assert refusal.message == (
            f"3 missed days (last dose {last.day} {last.strftime('%b')}): "
            "a clinician's review is needed before the next dose."
        )
        assert refusal.field is None
        assert given_count(three) == 1  # nothing saved


def given_count(world: World) -> int:
    return db.session.scalar(
        sa.select(sa.func.count(DoseEntry.id)).where(
            DoseEntry.patient_id == world.patient.id, DoseEntry.kind == DoseKind.OBSERVED
        )
    )


def test_an_order_never_dosed_for_three_days_needs_a_review(app, make_world):
    made = make_world(start=3)
    with app.test_request_context():
        start = days_ago(made, 3)
        assert made.refusal().message.startswith(
            f"3 missed days (no dose since the order started {start.day} {start.strftime('%b')})"
        )


def test_after_the_review_dosing_works_and_three_more_missed_days_need_a_new_one(app, make_world):
    made = make_world(start=12)
    with app.test_request_context():
        made.dose(day=days_ago(made, 12))
        # Missed -11, -10, -9: refused on day -8 until a clinician reviews.
        with pytest.raises(DomainError) as refused:
            ledger.record_dose(
                made.patient, actor=made.nurse, amount_mg="40", now=at(days_ago(made, 8))
            )
        assert "review is needed" in refused.value.message
        db.session.rollback()
        reviews.record_review(
            made.patient,
            actor=made.clinician,
            decision="continue",
            note=None,
            now=at(days_ago(made, 8), 8),
        )
        db.session.commit()
        made.dose(day=days_ago(made, 8))  # after the review: dosed
        made.dose(day=days_ago(made, 7))
        # Missed -6, -5: two days, dosed on -4 without a review.
        made.dose(day=days_ago(made, 4))
        # Missed -3, -2, -1: a new run of 3 needs a new review, the old one does not count.
        status = made.missed()
        assert (status.count, status.reviewed_on, status.needs_review) == (3, None, True)
        assert "3 missed days" in made.refusal().message
        reviews.record_review(made.patient, actor=made.clinician, decision="continue", note=None)
        db.session.commit()
        assert made.dose().kind == DoseKind.OBSERVED


def test_held_days_are_not_missed(app, make_world):
    made = make_world(start=5)
    with app.test_request_context():
        made.dose(day=days_ago(made, 5))
        db.session.add(
            MedicationHold(
                patient_id=made.patient.id,
                reason="Awaiting labs",
                placed_by_id=made.clinician.id,
                placed_at=at(days_ago(made, 4), 6),
                lifted_at=at(days_ago(made, 2), 8),
                lifted_by_id=made.clinician.id,
                lift_reason="Labs fine",
            )
        )
        db.session.commit()
        # Days -4 and -3 were held; -2 and -1 missed: two, so today's dose is given.
        assert made.missed().count == 2
        assert made.dose().kind == DoseKind.OBSERVED


def test_a_dose_recorded_as_held_is_not_a_missed_day(app, make_world):
    """The nurse held the dose (the clinic's choice, not the patient's absence): the day
    neither counts as missed nor ends the run."""
    made = make_world(start=4)
    with app.test_request_context():
        made.dose(day=days_ago(made, 4))
        ledger.record_held(
            made.patient, actor=made.nurse, reason="Appears sedated", now=at(days_ago(made, 3))
        )
        db.session.commit()
        # -3 held; -2, -1 missed.
        status = made.missed()
        assert (status.count, status.since, status.needs_review) == (2, days_ago(made, 3), False)
        assert made.dose().kind == DoseKind.OBSERVED


def test_a_held_day_does_not_end_a_run_of_missed_days(app, make_world):
    made = make_world(start=5)
    with app.test_request_context():
        made.dose(day=days_ago(made, 5))
        ledger.record_held(
            made.patient, actor=made.nurse, reason="Appears sedated", now=at(days_ago(made, 3))
        )
        db.session.commit()
        # -4 missed, -3 held, -2 and -1 missed: 3 missed days.
        assert made.missed().count == 3
        assert "3 missed days" in made.refusal().message


def test_the_nurse_may_record_the_dose_as_held_while_a_review_is_due(app, make_world):
    """SCENARIOS.md, Monday 7:00: the nurse holds the dose and asks for a review."""
    made = make_world(start=4)
    with app.test_request_context():
        made.dose(day=days_ago(made, 4))
        entry = ledger.record_held(made.patient, actor=made.nurse, reason="Awaiting a review")
        db.session.commit()
        assert entry.kind == DoseKind.HELD


def test_the_missed_day_rule_spares_injections(app, make_world):
    made = make_world(
        start=40,
        medication="xr_naltrexone",
        product_form="injection",
        strength="380 mg",
        dose_mg="380",
        schedule="every_4_weeks",
        justification="Opioid-free for 10 days per urine testing.",
    )
    with app.test_request_context():
        entry = ledger.record_injection(
            made.patient, actor=made.nurse, amount_mg="380", lot="AB12", injection_site="arm_left"
        )
        assert entry.kind == DoseKind.INJECTION


def test_a_split_second_portion_is_not_refused_after_a_reviewed_first(app, make_world):
    made = make_world(
        start=4,
        dose_mg="80",
        schedule="split",
        split_first_mg="50",
        split_second_mg="30",
        justification="Tolerance documented by the prescriber.",
    )
    with app.test_request_context():
        made.dose("50", day=days_ago(made, 4))
        made.dose("30", day=days_ago(made, 4))
        assert "review is needed" in made.refusal("50").message
        reviews.record_review(made.patient, actor=made.clinician, decision="continue", note=None)
        db.session.commit()
        made.dose("50")
        assert made.dose("30").amount_mg == Decimal("30.00")


def test_a_reversed_dose_does_not_end_a_run_of_missed_days(app, make_world):
    made = make_world(start=4)
    with app.test_request_context():
        made.dose(day=days_ago(made, 4))
        entry = made.dose(day=days_ago(made, 1))
        assert made.missed().count == 0
        ledger.record_reversal(entry, actor=made.nurse, reason="Recorded for the wrong patient")
        db.session.commit()
        assert made.missed().count == 3


def test_only_a_clinician_records_a_review(make_world, app):
    made = make_world(start=4)
    with app.test_request_context():
        made.dose(day=days_ago(made, 4))
        admin = db.session.get(User, made.ids["nurse"])
        admin.role = "admin"  # in memory only: an administrator may not review
        admin.may_dispense = False
        with pytest.raises(DomainError) as refused:
            reviews.record_review(made.patient, actor=admin, decision="continue", note=None)
        assert "clinician" in refused.value.message
        db.session.rollback()


def test_three_more_missed_days_after_a_review_alert_again(app, make_world):
    made = make_world(start=8)
    with app.test_request_context():
        made.dose(day=days_ago(made, 8))
        reviews.record_review(
            made.patient,
            actor=made.clinician,
            decision="continue",
            note=None,
            now=at(days_ago(made, 4)),
        )
        db.session.commit()
        status = made.missed()
        # Missed -7 .. -1; reviewed on -4; -3, -2, -1 missed after it.
        assert (status.count, status.count_after_review) == (7, 3)
        assert status.needs_review
        assert made.refusal().message.startswith("3 missed days (last dose ")


def test_a_clinician_reviews_missed_days(app, make_world):
    made = make_world(start=4)
    with app.test_request_context():
        made.dose(day=days_ago(made, 4))
        assert made.missed().needs_review
        review = reviews.record_review(
            made.patient, actor=made.clinician, decision="continue", note=None
        )
        db.session.commit()
        assert (review.missed_days, review.decision) == (3, "continue")
        assert not made.missed().needs_review
        assert reviews.review_list(None) == []


def test_a_review_deciding_a_hold_places_a_stop_dose_hold(app, make_world):
    made = make_world(start=6)
    with app.test_request_context():
        made.dose(day=days_ago(made, 6))
        with pytest.raises(DomainError) as refused:
            reviews.record_review(made.patient, actor=made.clinician, decision="hold", note="")
        assert refused.value.field == "note"
        db.session.rollback()
        reviews.record_review(
            made.patient, actor=made.clinician, decision="hold", note="Re-assess before dosing"
        )
        db.session.commit()
        assert dose_day.hold_in_force(made.patient.id, made.today) is not None
        assert made.refusal().message == ledger.ON_HOLD_MESSAGE


def test_a_review_needs_missed_days_and_a_decision(app, make_world):
    made = make_world(start=1)
    with app.test_request_context():
        made.dose(day=days_ago(made, 1))
        with pytest.raises(DomainError) as refused:
            reviews.record_review(made.patient, actor=made.clinician, decision="maybe", note=None)
        assert refused.value.field == "decision"
        with pytest.raises(DomainError) as refused:
            reviews.record_review(
                made.patient, actor=made.clinician, decision="continue", note=None
            )
        assert refused.value.message == reviews.REVIEW_NOT_DUE_MESSAGE
        assert db.session.scalar(sa.select(sa.func.count(MissedDoseReview.id))) == 0


# --- injections -----------------------------------------------------------------------


@pytest.fixture
def injection_world(app, make_world):
    made = make_world(
        start=40,
        medication="xr_naltrexone",
        product_form="injection",
        strength="380 mg",
        dose_mg="380",
        schedule="every_4_weeks",
        last_opioid_use_on=None,
        justification="Opioid-free for 10 days per urine testing.",
    )
    with app.test_request_context():
        yield made


def test_an_injection_records_lot_and_site_and_sets_the_next_due_date(injection_world):
    w = injection_world
    rows = {r.patient.id: r for r in worklists.injections_due(None)}
    assert rows[w.patient.id].overdue  # started 40 days ago, never given
    with pytest.raises(DomainError) as refused:
        ledger.record_injection(
            w.patient, actor=w.nurse, amount_mg="380", lot="", injection_site="gluteal_left"
        )
    assert refused.value.field == "lot"
    with pytest.raises(DomainError) as refused:
        ledger.record_injection(
            w.patient, actor=w.nurse, amount_mg="380", lot="AB12", injection_site="knee"
        )
    assert refused.value.field == "injection_site"
    entry = ledger.record_injection(
        w.patient, actor=w.nurse, amount_mg="380", lot="AB12", injection_site="gluteal_left"
    )
    db.session.commit()
    assert (entry.kind, entry.lot, entry.injection_site) == (
        DoseKind.INJECTION,
        "AB12",
        "gluteal_left",
    )
    doses = dose_records.chart_doses(w.patient)
    assert doses.next_injection == w.today + dt.timedelta(days=28)
    assert worklists.injections_due(None) == []
    with pytest.raises(DomainError) as refused:
        ledger.record_injection(
            w.patient, actor=w.nurse, amount_mg="380", lot="AB12", injection_site="gluteal_left"
        )
    assert refused.value.message == ledger.ALREADY_INJECTED_MESSAGE


def test_an_injection_patient_has_no_daily_dose(injection_world):
    assert injection_world.refusal("380").message == ledger.NO_ORDER_MESSAGE


def test_a_daily_patient_has_no_injection(world):
    with pytest.raises(DomainError) as refused:
        ledger.record_injection(
            world.patient, actor=world.nurse, amount_mg="40", lot="X", injection_site="arm_left"
        )
    assert refused.value.message == ledger.NO_INJECTION_ORDER_MESSAGE


@pytest.mark.parametrize("last_dose_days_ago", [1, missed.LAST_GIVEN_WINDOW_DAYS + 5])
def test_the_last_dose_is_found_inside_and_beyond_the_recent_window(
    app, make_world, last_dose_days_ago
):
    """``day_facts`` looks for the last covered day in the recent window first and reads a
    patient's whole history only when the window has none: both give the same day, for
    patients of both kinds in one call."""
    recent = make_world(start=3)
    made = make_world(start=last_dose_days_ago + 1)
    with app.test_request_context():
        recent.dose(day=days_ago(recent, 3))
        recent.dose(day=days_ago(recent, 2))
        made.dose(day=days_ago(made, last_dose_days_ago + 1))
        made.dose(day=days_ago(made, last_dose_days_ago))
        ids = [recent.ids["patient"], made.ids["patient"]]
        facts = missed.day_facts(ids, made.today, CHICAGO)
        assert facts.last_given == {
            recent.ids["patient"]: days_ago(recent, 2),
            made.ids["patient"]: days_ago(made, last_dose_days_ago),
        }
