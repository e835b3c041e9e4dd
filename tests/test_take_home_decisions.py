"""Recording take-home decisions: the caps at the edges of the 42 CFR 8.12(i) bands (days
14/15 and 30/31), clinic-closed days and holidays not counted, stricter program caps,
buprenorphine uncapped, readmission, each refusal with its field, and approval, decline,
ending and review."""

# ruff: noqa: F811 (the fixtures imported from tests.take_home_helpers)
from __future__ import annotations

import datetime as dt

import pytest

from clinic.extensions import db
from clinic.medications import take_home_decisions as decisions
from clinic.medications.take_home_models import TakeHomeDecision, TakeHomeReview
from clinic.medications.take_home_rules import decisions_in_force
from clinic.patients import admissions
from clinic.patients.models import Enrollment
from clinic.sites.models import SiteClosure
from tests.take_home_helpers import (  # noqa: F401 (fixtures)
    TODAY,
    all_met,
    make_world,
    site_noon,
    world,
)


@pytest.fixture
def at_day(app, site_noon, make_world):
    """``at_day(day, **world_args)``: a world at treatment day ``day`` (no closed weekdays
    unless given), inside a request context."""
    contexts = []

    def make(day: int, **kwargs):
        kwargs.setdefault("closed", "")
        made = make_world(day=day, **kwargs)
        context = app.test_request_context()
        context.push()
        contexts.append(context)
        return made

    yield make
    for context in reversed(contexts):
        context.pop()


# --- the caps at the edges -------------------------------------------------------------


@pytest.mark.parametrize(("day", "cap"), [(0, 7), (14, 7), (15, 14), (30, 14), (31, 28)])
def test_the_cap_applies_at_the_edges_of_each_band(at_day, day, cap):
    made = at_day(day)
    if cap < 28:
        refused = made.refusal(days=cap + 1)
        assert refused.field == "days"
        assert f"Day {day} in treatment — cap: {cap} days" in refused.message
        assert f"{cap + 1} take-home days asked (clinic-closed days not counted)" in (
            refused.message
        )
    decision = made.record(days=cap)
    assert (decision.treatment_day, decision.cap_days, decision.counted_days) == (day, cap, cap)
    assert decision.approved_at is not None


def test_day_12_asking_10_days_is_refused_with_the_cap(at_day):
    refused = at_day(12).refusal(days=10)
    assert refused.message == (
        "Day 12 in treatment — cap: 7 days (42 CFR 8.12(i), days 0-14); 10 take-home days "
        "asked (clinic-closed days not counted)."
    )


def test_closed_weekdays_and_a_holiday_inside_the_run_are_not_counted(at_day):
    made = at_day(12, closed="67")
    # Wednesday 18 to Thursday 26: Saturday 21 and Sunday 22 closed, 7 counted.
    decision = made.record(days=9)
    assert (decision.counted_days, decision.cap_days) == (7, 7)
    refused = made.refusal(days=10, start_on=TODAY)  # to Friday 27: 8 counted
    assert "8 take-home days asked" in refused.message
    db.session.add(
        SiteClosure(
            site_id=made.site.id,
            closed_on=dt.date(2026, 3, 23),
            name="Holiday",
            created_by_id=made.ids["admin"],
        )
    )
    db.session.commit()
    assert made.record(days=10).counted_days == 7


def test_a_program_with_stricter_caps_refuses_above_its_own_cap(at_day):
    made = at_day(
        20,
        take_home_cap_days_0_14=3,
        take_home_cap_days_15_30=6,
        take_home_cap_days_31_plus=13,
    )
    refused = made.refusal(days=7)
    assert "cap: 6 days" in refused.message
    assert made.record(days=6).cap_days == 6


def test_buprenorphine_is_not_capped(at_day):
    decision = at_day(3, medication="buprenorphine").record(days=28)
    assert decision.cap_days is None
    assert decision.counted_days == 28
    assert decision.medication == "buprenorphine"


def test_a_readmission_counts_from_the_current_admission(
    app, site_noon, make_world, make_program, make_enrollment, make_order
):
    made = make_world(day=200, closed="")
    with app.test_request_context():
        enrollment = db.session.get(Enrollment, made.ids["enrollment"])
        admissions.discharge(
            enrollment,
            actor=made.user("admin"),
            discharged_on=TODAY - dt.timedelta(days=10),
            reason=1,
            expected_version=enrollment.version,
        )
        db.session.commit()
    again = make_enrollment(
        made.ids["patient"], made.ids["program"], admitted_on=TODAY - dt.timedelta(days=5)
    )
    made.ids["order"] = make_order(again, made.ids["prescriber"], start_on=TODAY)
    with app.test_request_context():
        refused = made.refusal(days=8)
        assert "Day 5 in treatment — cap: 7 days" in refused.message
        assert made.record(days=7).enrollment_id == again


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "message"),
    [
        (0, "Enter at least 1 day."),
        (-3, "Enter at least 1 day."),
        (29, "At most 28 days"),
        (60, "At most 28 days"),
        ("99999999999999999999", "Enter the number of days (1-28)."),
        (None, "Enter the number of days (1-28)."),
        ("٣", "Enter the number of days (1-28)."),
    ],
)
def test_bad_numbers_of_days_are_refused_next_to_the_field(world, days, message):
    refused = world.refusal(days=days)
    assert refused.field == "days"
    assert message in refused.message


def test_a_start_before_the_admission_is_refused(at_day):
    made = at_day(0)
    refused = made.refusal(start_on=TODAY - dt.timedelta(days=1))
    assert (refused.field, refused.message[:40]) == (
        "start_on",
        "The first take-home day is before the ad",
    )


def test_a_start_in_the_past_or_years_ahead_is_refused(world):
    assert world.refusal(start_on=TODAY - dt.timedelta(days=1)).message == (
        "The first take-home day is in the past."
    )
    assert world.refusal(start_on=dt.date(9999, 12, 31)).field == "start_on"
    assert world.refusal(start_on=None).field == "start_on"


def test_a_discharged_enrollment_is_refused(world):
    enrollment = db.session.get(Enrollment, world.ids["enrollment"])
    enrollment.discharged_on = TODAY
    enrollment.discharge_reason = 1
    db.session.commit()
    assert "discharged" in world.refusal().message


@pytest.mark.parametrize("name", ["substance_use", "attendance", "diversion", "other"])
def test_a_criterion_not_met_or_without_a_note_is_refused(world, name):
    unmet = world.refusal(criteria=all_met(**{name: decisions.Criterion(False, "Not yet.")}))
    assert unmet.field == f"{name}_met"
    assert "cannot be approved" in unmet.message
    blank = world.refusal(criteria=all_met(**{name: decisions.Criterion(True, "  ")}))
    assert blank.field == f"{name}_note"
    nul = world.refusal(criteria=all_met(**{name: decisions.Criterion(True, "a\x00b")}))
    assert nul.field == f"{name}_note"
    long = world.refusal(criteria=all_met(**{name: decisions.Criterion(True, "x" * 1001)}))
    assert long.field == f"{name}_note"


def test_safe_storage_education_is_required_and_not_in_the_future(world):
    assert world.refusal(storage_education_on=None).field == "storage_education_on"
    future = world.refusal(storage_education_on=TODAY + dt.timedelta(days=1))
    assert future.field == "storage_education_on"


def test_weekly_schedules(at_day):
    made = at_day(35, closed="7")
    weekly = made.record(schedule_kind="weekly", days=None, weekdays="6,7")
    assert (weekly.weekdays, weekly.counted_days, weekly.end_on) == ("67", 1, None)
    assert made.refusal(schedule_kind="weekly", weekdays="1234567").field == "weekdays"
    assert made.refusal(schedule_kind="weekly", weekdays="").field == "weekdays"
    assert made.refusal(schedule_kind="weekly", weekdays="8").field == "weekdays"
    before = made.refusal(schedule_kind="weekly", weekdays="6", end_on=TODAY - dt.timedelta(1))
    assert before.field == "end_on"
    # Every open day of the week: a year away from the clinic, over any cap.
    assert made.refusal(schedule_kind="weekly", weekdays="123456").field == "weekdays"
    assert made.refusal(schedule_kind="fortnightly").field == "schedule_kind"


def test_the_order_must_be_the_patients_active_order(world, make_world):
    other = make_world()
    refused = world.refusal(order=other.order)
    assert refused.field == "order_id"
    assert world.refusal(order=None).field == "order_id"


def test_roles_and_the_prescriber_flag(world):
    assert world.refusal(actor="staff").message == decisions.NOT_A_CLINICIAN_MESSAGE
    assert world.refusal(actor="admin").message == decisions.NOT_A_CLINICIAN_MESSAGE
    refused = world.refusal(actor="clinician", approve=True)
    assert (refused.field, refused.message) == ("approve", decisions.NOT_A_PRESCRIBER_MESSAGE)
    pending = world.record(actor="clinician", approve=False)
    assert pending.approved_at is None
    assert pending.recorded_by_id == world.ids["clinician"]


# --- approval, decline, ending, review ------------------------------------------------------


def test_a_prescriber_approves_a_pending_decision_once(world):
    pending = world.record(actor="clinician", approve=False)
    with pytest.raises(decisions.DomainError):
        decisions.approve(pending, actor=world.user("clinician"))
    db.session.rollback()
    decisions.approve(pending, actor=world.user("prescriber"))
    db.session.commit()
    assert pending.approved_by_id == world.ids["prescriber"]
    with pytest.raises(decisions.DomainError, match="already approved"):
        decisions.approve(pending, actor=world.user("prescriber"))
    db.session.rollback()
    with pytest.raises(decisions.DomainError, match="already approved"):
        decisions.decline(pending, actor=world.user("prescriber"), reason="No.")
    db.session.rollback()


def test_a_declined_decision_is_never_approved(world):
    pending = world.record(actor="clinician", approve=False)
    with pytest.raises(decisions.DomainError) as blank:
        decisions.decline(pending, actor=world.user("prescriber"), reason=" ")
    assert blank.value.field == "reason"
    db.session.rollback()
    decisions.decline(pending, actor=world.user("prescriber"), reason="Attendance first.")
    db.session.commit()
    with pytest.raises(decisions.DomainError, match="declined"):
        decisions.approve(pending, actor=world.user("prescriber"))
    db.session.rollback()
    assert decisions_in_force(world.patient.id, TODAY) == []


def test_decisions_in_force(world):
    approved = world.record()
    world.record(actor="clinician", approve=False, start_on=TODAY + dt.timedelta(days=10))
    later = world.record(start_on=TODAY + dt.timedelta(days=20))
    assert [d.id for d in decisions_in_force(world.patient.id, TODAY)] == [approved.id, later.id]
    assert [d.id for d in decisions_in_force(world.patient.id, TODAY + dt.timedelta(7))] == [
        later.id
    ]


def test_ending_a_decision_once(world):
    decision = world.record()
    actor = world.user("clinician")
    for ended_on, field in (
        (TODAY - dt.timedelta(days=1), "ended_on"),
        (None, "ended_on"),
        (TODAY + dt.timedelta(days=30), "ended_on"),
    ):
        with pytest.raises(decisions.DomainError) as refused:
            decisions.end_decision(decision, actor=actor, reason="Stop.", ended_on=ended_on)
        assert refused.value.field == field
        db.session.rollback()
    decisions.end_decision(decision, actor=actor, reason="Stop.", ended_on=TODAY + dt.timedelta(2))
    db.session.commit()
    assert decisions_in_force(world.patient.id, TODAY + dt.timedelta(days=1)) == [decision]
    assert decisions_in_force(world.patient.id, TODAY + dt.timedelta(days=2)) == []
    with pytest.raises(decisions.DomainError, match="already ended"):
        decisions.end_decision(decision, actor=actor, reason="Again.", ended_on=TODAY)
    db.session.rollback()


def test_reviewing_continues_or_ends(world):
    decision = world.record()
    actor = world.user("clinician")
    with pytest.raises(decisions.DomainError) as refused:
        decisions.review_decision(decision, actor=actor, outcome="maybe", note="x")
    assert refused.value.field == "outcome"
    db.session.rollback()
    with pytest.raises(decisions.DomainError) as refused:
        decisions.review_decision(decision, actor=world.user("staff"), outcome="continue", note="x")
    db.session.rollback()
    kept = decisions.review_decision(decision, actor=actor, outcome="continue", note="Stable.")
    db.session.commit()
    assert (kept.reviewed_on, decision.ended_at) == (TODAY, None)
    decisions.review_decision(decision, actor=actor, outcome="end", note="Positive test.")
    db.session.commit()
    assert decision.ended_on == TODAY
    assert decision.end_reason == "Ended at review: Positive test."
    assert db.session.query(TakeHomeReview).count() == 2
    assert db.session.query(TakeHomeDecision).count() == 1


def test_a_run_joining_another_decision_is_capped_as_one_stretch(at_day):
    """Runs back to back are supplied at the first one's visit: the cap of the stretch's
    first day applies to them together (pending decisions count; declined ones do not)."""
    made = at_day(12)
    first = made.record(actor="clinician", approve=False, days=5)  # Wed 18 to Sun 22
    refused = made.refusal(days=4, start_on=TODAY + dt.timedelta(days=5))  # Mon 23 to Thu 26
    assert refused.field == "days"
    assert refused.message == (
        "Day 12 in treatment — cap: 7 days (42 CFR 8.12(i), days 0-14); with the take-home "
        "decision from 18 Mar 2026, 9 take-home days in a row (clinic-closed days not counted)."
    )
    assert made.record(days=2, start_on=TODAY + dt.timedelta(days=6)).counted_days == 2  # a gap
    decisions.decline(first, actor=made.user("prescriber"), reason="Replaced.")
    db.session.commit()
    assert made.record(days=4, start_on=TODAY + dt.timedelta(days=2)).counted_days == 4


def test_closed_days_join_a_stretch_without_counting(at_day):
    made = at_day(12, closed="7")
    made.record(days=4)  # Wed 18 to Sat 21
    # Mon 23 to Wed 25 joins across the closed Sunday: 4 + 3 = 7 counted, the cap.
    assert made.record(days=3, start_on=dt.date(2026, 3, 23)).counted_days == 3
    refused = made.refusal(days=1, start_on=dt.date(2026, 3, 26))
    assert "8 take-home days in a row" in refused.message
