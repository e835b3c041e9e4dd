"""Attacks on take-home decisions and bottles (issue 13): chaining decisions or dispensings
past the cap, a readmission or transfer reusing the old enrollment's decisions, reversing a
bottle to hide it from the returns, the calendar's weekdays, and raw SQL on the records that
are written once."""

# ruff: noqa: F811 (the fixtures imported from tests.take_home_helpers)
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import time_machine

from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import (
    bottle_returns,
    call_backs,
    ledger,
    take_home_bottles,
    take_home_rules,
)
from clinic.medications import take_home_decisions as decisions
from clinic.medications.models import DoseEntry, DoseKind
from clinic.medications.take_home_models import ReturnOutcome, TakeHomeDecision
from clinic.patients import admissions
from clinic.patients.models import Enrollment
from clinic.sites import calendar
from clinic.sites.models import Site
from tests.conftest import ON_POSTGRES
from tests.take_home_helpers import (  # noqa: F401 (fixtures)
    NOW,
    TODAY,
    all_met,
    make_world,
    site_noon,
)


@pytest.fixture
def at_day(app, site_noon, make_world, make_user):
    """``at_day(day, **world_args)``: a world at treatment day ``day`` with a dispenser
    (``ids["nurse"]``), inside a request context."""
    contexts = []

    def make(day: int, **kwargs):
        made = make_world(day=day, **kwargs)
        made.ids["nurse"] = make_user("clinician", may_dispense=True)
        context = app.test_request_context()
        context.push()
        contexts.append(context)
        return made

    yield make
    for context in reversed(contexts):
        context.pop()


def day(n: int) -> dt.date:
    return TODAY + dt.timedelta(days=n)


def dispense(made, *days: int, **kwargs):
    dispensing = take_home_bottles.dispense_take_homes(
        made.patient, actor=made.user("nurse"), take_on_dates=[day(n) for n in days], **kwargs
    )
    db.session.commit()
    return dispensing


def bottles(patient_id: int) -> list[DoseEntry]:
    return list(
        db.session.scalars(
            sa.select(DoseEntry)
            .where(DoseEntry.patient_id == patient_id, DoseEntry.kind == DoseKind.TAKE_HOME)
            .order_by(DoseEntry.take_on, DoseEntry.id)
        )
    )


# --- chaining decisions past the cap ------------------------------------------------------


def test_two_back_to_back_seven_day_runs_at_day_12_are_refused(at_day):
    made = at_day(12, closed="")
    made.record(start_on=day(1), days=7)
    refused = made.refusal(start_on=day(8), days=7)
    assert refused.field == "days"
    assert "14 take-home days in a row" in refused.message


def test_two_weekly_schedules_cannot_chain_into_every_day_at_day_12(at_day):
    # Mon-Wed and Thu-Sat, with the clinic closed on Sundays: each alone is 3 days away,
    # together the patient never comes back.
    made = at_day(12, closed="7")
    made.record(schedule_kind="weekly", weekdays="123", start_on=day(5))  # Mon 23 Mar
    refused = made.refusal(schedule_kind="weekly", weekdays="456", start_on=day(5))
    assert refused.field == "weekdays"
    assert "315 take-home days in a row" in refused.message


def test_a_weekly_schedule_next_to_a_run_of_days_is_capped_as_one_stretch(at_day):
    made = at_day(5, closed="")
    made.record(start_on=day(1), days=5)  # Thu 19 - Mon 23 Mar
    # Tuesdays to Thursdays join the run: Thu 19 .. Thu 26 is 8 days away from day 6.
    refused = made.refusal(schedule_kind="weekly", weekdays="234", start_on=day(1))
    assert refused.field == "weekdays"
    assert "Day 6 in treatment — cap: 7 days" in refused.message
    assert "8 take-home days in a row" in refused.message
    # A weekly schedule apart from the run (Saturdays, a week later) is fine.
    assert made.record(schedule_kind="weekly", weekdays="6", start_on=day(9)).weekdays == "6"


def test_a_weekly_schedule_before_a_run_is_capped_as_one_stretch(at_day):
    made = at_day(5, closed="")
    made.record(schedule_kind="weekly", weekdays="67", start_on=day(3))  # Sat-Sun
    refused = made.refusal(start_on=day(5), days=6)  # Mon 23 - Sat 28 Mar: 9 with Sat-Sun
    assert refused.field == "days"
    assert "Day 8 in treatment — cap: 7 days" in refused.message


def test_weekly_schedules_with_a_clinic_day_between_are_allowed(at_day):
    made = at_day(5, closed="")  # Mon-Wed and Fri: the patient comes on Thursdays
    made.record(schedule_kind="weekly", weekdays="123", start_on=day(5))
    assert made.record(schedule_kind="weekly", weekdays="5", start_on=day(5)).weekdays == "5"


def test_dispensing_seven_reversing_one_and_dispensing_two_is_refused(at_day):
    made = at_day(12, closed="")
    made.record(start_on=day(3), days=14)  # from day 15: cap 14
    dispense(made, 3, 4, 5, 6, 7, 8, 9)
    first = bottles(made.ids["patient"])[0]
    ledger.record_reversal(first, actor=made.user("nurse"), reason="Label misprinted")
    db.session.commit()
    dispense(made, 3)
    with pytest.raises(DomainError) as refused:
        dispense(made, 10)
    db.session.rollback()
    assert "the cap on treatment day 12 (days 0-14) is 7" in refused.value.message
    assert len(take_home_bottles.bottles_in_hands(made.ids["patient"], TODAY)) == 7


# --- a readmission or a transfer: the old enrollment's decisions cover nothing --------------


def test_a_decision_of_a_discharged_enrollment_covers_no_bottle_after_a_readmission(
    at_day, make_enrollment, make_order
):
    made = at_day(40, closed="")
    made.record(start_on=day(1), days=28)
    enrollment = db.session.get(Enrollment, made.ids["enrollment"])
    admissions.discharge(
        enrollment,
        actor=made.user("admin"),
        discharged_on=TODAY,
        reason=1,
        expected_version=enrollment.version,
    )
    db.session.commit()
    again = make_enrollment(made.ids["patient"], made.ids["program"], admitted_on=TODAY)
    new_order = make_order(again, made.ids["prescriber"], start_on=TODAY)
    plan = take_home_bottles.dispensing_plan(made.patient)
    assert plan.days == []
    with pytest.raises(DomainError) as refused:
        dispense(made, 1)
    db.session.rollback()
    assert "no approved take-home decision in force covers this day" in refused.value.message
    # A decision for the new admission is capped from its day 0 and is not joined to the
    # old enrollment's decision.
    made.ids["order"] = new_order
    assert made.record(start_on=day(1), days=7).enrollment_id == again


def test_a_discharge_ends_the_decisions_in_force(at_day):
    made = at_day(40, closed="")
    made.record(start_on=day(1), days=28)
    assert take_home_rules.decisions_in_force(made.ids["patient"], TODAY)
    enrollment = db.session.get(Enrollment, made.ids["enrollment"])
    admissions.discharge(
        enrollment,
        actor=made.user("admin"),
        discharged_on=TODAY,
        reason=1,
        expected_version=enrollment.version,
    )
    db.session.commit()
    assert take_home_rules.decisions_in_force(made.ids["patient"], TODAY) == []
    assert not take_home_bottles.has_decision_in_force(made.patient)


# --- reversing a bottle to hide it from the returns ------------------------------------------


def test_a_bottle_whose_take_on_day_has_passed_is_not_reversed(at_day):
    made = at_day(40, closed="")
    made.record(start_on=day(1), days=7)
    dispense(made, 1, 2)
    first = bottles(made.ids["patient"])[0]
    with time_machine.travel(NOW + dt.timedelta(days=2), tick=False):
        with pytest.raises(DomainError) as refused:
            ledger.record_reversal(first, actor=made.user("nurse"), reason="Never returned")
        db.session.rollback()
        assert "checked at the returns" in refused.value.message
        assert [b.id for b in bottle_returns.bottles_due_back(made.ids["patient"], day(2))] == [
            first.id
        ]


def test_a_bottle_checked_at_the_returns_is_not_reversed(at_day):
    made = at_day(40, closed="")
    made.record(start_on=day(1), days=7)
    dispense(made, 1, 2, 3)
    first = bottles(made.ids["patient"])[0]
    with time_machine.travel(NOW + dt.timedelta(days=2), tick=False):
        bottle_returns.record_returns(
            made.patient,
            actor=made.user("prescriber"),
            outcomes={first.id: ReturnOutcome.RETURNED},
        )
        db.session.commit()
        with pytest.raises(DomainError):
            ledger.record_reversal(first, actor=made.user("nurse"), reason="Oops")
        db.session.rollback()


def test_a_bottle_not_yet_taken_is_reversed(at_day):
    made = at_day(40, closed="")
    made.record(start_on=day(1), days=7)
    dispense(made, 1, 2)
    second = bottles(made.ids["patient"])[1]
    ledger.record_reversal(second, actor=made.user("nurse"), reason="Wrong day")
    db.session.commit()
    assert [b.take_on for b in take_home_bottles.bottles_in_hands(made.ids["patient"], TODAY)] == [
        day(1)
    ]


# --- the calendar -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weekdays", "stored", "message"),
    [
        ("8", None, "Choose days of the week."),
        ("1234567", None, "A site is open at least one day a week."),
        ("7654321", None, "A site is open at least one day a week."),
        ("11", "1", None),
        ("", "", None),
        ("6\x007", None, "Choose days of the week."),
    ],
)
def test_closed_weekdays(at_day, weekdays, stored, message):
    made = at_day(40, closed="7")
    site = made.site
    if message is None:
        calendar.set_closed_weekdays(site, actor=made.user("admin"), weekdays=weekdays)
        db.session.commit()
        assert db.session.get(Site, site.id).closed_weekdays == stored
        return
    with pytest.raises(DomainError) as refused:
        calendar.set_closed_weekdays(site, actor=made.user("admin"), weekdays=weekdays)
    db.session.rollback()
    assert refused.value.message == message
    assert db.session.get(Site, site.id).closed_weekdays == "7"


def test_a_clinician_never_changes_the_calendar(at_day):
    made = at_day(40)
    for actor in ("prescriber", "staff"):
        with pytest.raises(DomainError):
            calendar.set_closed_weekdays(made.site, actor=made.user(actor), weekdays="67")
        with pytest.raises(DomainError):
            calendar.add_holiday(made.site, actor=made.user(actor), closed_on=day(3), name="X")
        db.session.rollback()


def test_a_past_holiday_is_never_removed(at_day):
    made = at_day(40)
    with time_machine.travel(NOW - dt.timedelta(days=3), tick=False):
        closure = calendar.add_holiday(
            made.site, actor=made.user("admin"), closed_on=day(-1), name="Spring"
        )
        db.session.commit()
    with pytest.raises(DomainError):
        calendar.remove_holiday(closure, actor=made.user("admin"))
    db.session.rollback()


# --- the roles and the prescriber flag ----------------------------------------------------


def test_approving_your_own_decision_needs_the_flag_and_happens_once(at_day):
    made = at_day(40)
    with pytest.raises(DomainError):
        made.record(actor="clinician", approve=True)
    db.session.rollback()
    pending = made.record(actor="clinician", approve=False)
    with pytest.raises(DomainError):
        decisions.approve(pending, actor=made.user("clinician"))
    db.session.rollback()
    decisions.approve(pending, actor=made.user("prescriber"))
    db.session.commit()
    with pytest.raises(DomainError) as again:
        decisions.approve(pending, actor=made.user("prescriber"))
    assert again.value.message == "This decision is already approved."
    db.session.rollback()
    with pytest.raises(DomainError):
        decisions.decline(pending, actor=made.user("prescriber"), reason="Changed my mind")
    db.session.rollback()


# --- raw SQL on what is written once -----------------------------------------------------------


def test_raw_sql_cannot_end_a_decision_that_was_never_approved(at_day):
    made = at_day(40)
    pending = made.record(actor="clinician", approve=False)
    with pytest.raises(sa.exc.IntegrityError):
        db.session.execute(
            sa.text(
                "UPDATE take_home_decision SET ended_on = :day, ended_at = :now, "
                "ended_by_id = :user, end_reason = 'x' WHERE id = :id"
            ),
            {"day": TODAY, "now": NOW, "user": made.ids["prescriber"], "id": pending.id},
        )
        db.session.flush()
    db.session.rollback()
    assert db.session.get(TakeHomeDecision, pending.id).ended_at is None


def test_the_cap_counts_every_bottle_in_hand_not_only_the_longest_stretch(at_day):
    # Wednesdays and Saturdays, clinic open every day: each bottle is a stretch of one day,
    # but eight bottles in hand at day 12 are eight days of supply (cap: 7).
    made = at_day(12, closed="")
    made.record(schedule_kind="weekly", weekdays="36", start_on=day(1))
    with pytest.raises(DomainError) as refused:
        dispense(made, 3, 7, 10, 14, 17, 21, 24, 28)
    db.session.rollback()
    assert "8 take-home days in the patient's hands" in refused.value.message
    dispense(made, 3, 7, 10, 14, 17, 21, 24)
    with pytest.raises(DomainError):
        dispense(made, 28)
    db.session.rollback()
    assert take_home_bottles.dispensing_plan(made.patient).counted_in_hands == 7


def test_clinic_closed_days_in_hand_are_still_outside_the_cap(at_day):
    made = at_day(12, closed="7")
    made.record(schedule_kind="weekly", weekdays="6", start_on=day(1))  # Sat (+ Sun closed)
    # Four weekends: 4 Saturdays counted, 4 Sundays not.
    dispense(made, 3, 4, 10, 11, 17, 18, 24, 25)
    assert take_home_bottles.dispensing_plan(made.patient).counted_in_hands == 4


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite locks the whole database: no row locks")
def test_two_clinicians_recording_touching_decisions_run_one_after_the_other(at_day, app):
    """The enrollment row is locked by a decision being recorded until its commit: a second
    one (another clinician) waits, then sees it in its stretch — here it times out."""
    made = at_day(12, closed="")
    decisions.record_decision(
        made.patient,
        actor=made.user("prescriber"),
        approve=True,
        order=made.order,
        schedule_kind="days",
        start_on=day(1),
        days=7,
        criteria=all_met(),
        storage_education_on=TODAY,
    )  # not committed: in progress
    other = sa.create_engine(db.engine.url)
    try:
        with other.connect() as conn:
            conn.execute(sa.text("SET lock_timeout = '300ms'"))
            with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                conn.execute(
                    sa.text("SELECT id FROM enrollment WHERE id = :id FOR UPDATE"),
                    {"id": made.ids["enrollment"]},
                )
    finally:
        other.dispose()
    db.session.commit()
    assert made.refusal(start_on=day(8), days=7).field == "days"


# --- take-home days on the dosing screen ---------------------------------------------------


def _dosed_today_with_three_bottles(at_day):
    made = at_day(0, closed="")  # the order starts today: no missed day before
    made.record(start_on=day(1), days=3)
    ledger.record_dose(made.patient, actor=made.user("nurse"), amount_mg="40")
    db.session.commit()
    dispense(made, 1, 2, 3)
    return made


def test_take_home_days_are_not_missed_days(at_day):
    made = _dosed_today_with_three_bottles(at_day)
    with time_machine.travel(NOW + dt.timedelta(days=4), tick=False):
        entry = ledger.record_dose(made.patient, actor=made.user("nurse"), amount_mg="40")
        db.session.commit()
    assert entry.kind == DoseKind.OBSERVED


def test_missed_days_count_again_after_the_bottles_run_out(at_day):
    made = _dosed_today_with_three_bottles(at_day)
    # Bottles for days 1-3; days 4, 5 and 6 missed: day 7 needs a clinician's review.
    with time_machine.travel(NOW + dt.timedelta(days=7), tick=False):
        with pytest.raises(DomainError) as refused:
            ledger.record_dose(made.patient, actor=made.user("nurse"), amount_mg="40")
        db.session.rollback()
    assert "3 missed days" in refused.value.message


def test_a_reversed_bottle_does_not_cover_its_day(at_day):
    made = _dosed_today_with_three_bottles(at_day)
    bottles = db.session.scalars(
        sa.select(DoseEntry)
        .where(DoseEntry.patient_id == made.patient.id, DoseEntry.kind == DoseKind.TAKE_HOME)
        .order_by(DoseEntry.take_on)
    ).all()
    ledger.record_reversal(bottles[-1], actor=made.user("nurse"), reason="Dispensed in error")
    db.session.commit()
    # Bottles for days 1-2 only; days 3, 4 and 5 missed: day 6 needs a review.
    with time_machine.travel(NOW + dt.timedelta(days=6), tick=False):
        with pytest.raises(DomainError) as refused:
            ledger.record_dose(made.patient, actor=made.user("nurse"), amount_mg="40")
        db.session.rollback()
    assert "3 missed days" in refused.value.message


def test_no_observed_dose_on_a_day_the_patient_holds_a_bottle_for(at_day):
    made = _dosed_today_with_three_bottles(at_day)
    with time_machine.travel(NOW + dt.timedelta(days=2), tick=False):
        with pytest.raises(DomainError) as refused:
            ledger.record_dose(made.patient, actor=made.user("nurse"), amount_mg="40")
        db.session.rollback()
    assert "take-home bottle for today" in refused.value.message


# --- a call-back's count ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "counted"),
    [("complete", 0), ("complete", None), ("short", 3), ("short", 9), ("no_show", 1)],
)
def test_raw_sql_cannot_record_a_call_back_count_that_does_not_fit(at_day, outcome, counted):
    made = at_day(40, closed="")
    made.record(start_on=day(1), days=3)
    dispense(made, 1, 2, 3)
    call_back = call_backs.start_call_back(made.patient, actor=made.user("clinician"))
    db.session.commit()
    with pytest.raises(sa.exc.IntegrityError, match="call_back_count_matches"):
        db.session.execute(
            sa.text(
                "UPDATE call_back SET outcome = :outcome, bottles_counted = :counted, "
                "outcome_at = :now, outcome_by_id = :user WHERE id = :id"
            ),
            {
                "outcome": outcome,
                "counted": counted,
                "now": NOW,
                "user": made.ids["clinician"],
                "id": call_back.id,
            },
        )
    db.session.rollback()


# --- a switch of medication -------------------------------------------------------------------


def test_a_methadone_decision_covers_no_buprenorphine_bottle_after_a_switch(at_day, make_order):
    from clinic.medications import orders

    made = at_day(40, closed="")
    made.record(start_on=day(1), days=14)
    orders.end_order(made.order, actor=made.user("prescriber"), end_on=TODAY, reason="Switch")
    db.session.commit()
    buprenorphine = make_order(
        made.ids["enrollment"],
        made.ids["prescriber"],
        medication="buprenorphine",
        product_form="sublingual_film",
        strength="8 mg",
        dose_mg="16",
        start_on=day(1),
    )
    with time_machine.travel(NOW + dt.timedelta(days=1), tick=False):
        assert take_home_bottles.dispensing_plan(made.patient).days == []
        with pytest.raises(DomainError) as refused:
            dispense(made, 2)
        db.session.rollback()
        assert "no approved take-home decision in force covers this day" in refused.value.message
        # A buprenorphine decision is not capped, and not joined to the methadone one.
        made.ids["order"] = buprenorphine
        assert made.record(start_on=day(2), days=28).cap_days is None
