"""The take-home rules (clinic.medications.take_home_rules): caps at the edges of the
42 CFR 8.12(i) bands, stricter program caps, buprenorphine uncapped, the clinic calendar,
days counted against a cap and which decisions cover a day."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from clinic.extensions import db
from clinic.medications.models import Medication
from clinic.medications.take_home_models import ScheduleKind
from clinic.medications.take_home_rules import (
    cap_days,
    closed_days,
    counted_days,
    decision_covers,
    longest_run,
    run_days,
    treatment_day,
    weekly_counted_days,
)
from clinic.patients.models import Program, ProgramKind
from clinic.sites.models import Site, SiteClosure

MONDAY = dt.date(2026, 3, 16)


def otp(**caps) -> Program:
    values = {
        "take_home_cap_days_0_14": 7,
        "take_home_cap_days_15_30": 14,
        "take_home_cap_days_31_plus": 28,
    }
    values.update(caps)
    return Program(name="OTP", kind=ProgramKind.METHADONE_OTP, **values)


@pytest.mark.parametrize(("day", "cap"), [(0, 7), (14, 7), (15, 14), (30, 14), (31, 28), (400, 28)])
def test_the_federal_caps_change_at_days_15_and_31(day, cap):
    assert cap_days(otp(), Medication.METHADONE, day) == cap
    assert cap_days(otp(), "methadone", day) == cap


@pytest.mark.parametrize(("day", "cap"), [(14, 3), (15, 6), (30, 6), (31, 13)])
def test_a_stricter_program_cap_applies(day, cap):
    program = otp(
        take_home_cap_days_0_14=3, take_home_cap_days_15_30=6, take_home_cap_days_31_plus=13
    )
    assert cap_days(program, Medication.METHADONE, day) == cap


def test_a_program_cap_above_the_federal_one_is_held_to_the_federal_cap():
    # The CHECKs refuse such a program; the rule holds even if one slipped through.
    program = otp(take_home_cap_days_0_14=30, take_home_cap_days_31_plus=60)
    assert cap_days(program, Medication.METHADONE, 3) == 7
    assert cap_days(program, Medication.METHADONE, 31) == 28


@pytest.mark.parametrize("program", [None, Program(name="OP", kind=ProgramKind.OUTPATIENT)])
def test_methadone_without_program_caps_gets_the_federal_caps(program):
    assert [cap_days(program, Medication.METHADONE, d) for d in (14, 15, 30, 31)] == [
        7,
        14,
        14,
        28,
    ]


@pytest.mark.parametrize(
    "medication", [Medication.BUPRENORPHINE, Medication.BUPRENORPHINE_NALOXONE]
)
def test_buprenorphine_is_not_capped(medication):
    assert cap_days(otp(), medication, 0) is None
    assert cap_days(otp(), medication, 400) is None


def test_injections_and_negative_days_are_refused():
    with pytest.raises(ValueError):
        cap_days(otp(), Medication.XR_BUPRENORPHINE, 40)
    with pytest.raises(ValueError):
        cap_days(otp(), Medication.METHADONE, -1)


def test_the_admission_day_is_day_0():
    admitted = dt.date(2026, 1, 5)
    assert treatment_day(admitted, admitted) == 0
    assert treatment_day(admitted, dt.date(2026, 1, 20)) == 15
    assert treatment_day(admitted, dt.date(2026, 1, 4)) == -1


def test_closed_days_are_not_counted():
    days = run_days(MONDAY, 10)  # Monday 16 .. Wednesday 25
    closed = {dt.date(2026, 3, 22), dt.date(2026, 3, 18)}
    assert counted_days(days, closed) == 8
    assert counted_days(days + days, set()) == 10  # distinct days


def test_longest_run():
    assert longest_run([]) == 0
    assert longest_run([MONDAY]) == 1
    days = [MONDAY, MONDAY + dt.timedelta(days=1), MONDAY + dt.timedelta(days=3)]
    assert longest_run(days) == 2
    assert longest_run([*run_days(MONDAY, 5), MONDAY]) == 5


def test_a_weekly_schedule_counts_its_longest_stretch_away_without_closed_days():
    sundays = {MONDAY + dt.timedelta(days=6 + 7 * n) for n in range(60)}
    # Saturday and Sunday, Sunday closed: one counted day.
    assert weekly_counted_days(MONDAY, None, "67", sundays) == 1
    # Friday, Saturday and Monday join across the closed Sunday: three counted days.
    assert weekly_counted_days(MONDAY, None, "156", sundays) == 3
    # Every open day scheduled: a year away from the clinic.
    assert weekly_counted_days(MONDAY, None, "123456", sundays) > 28
    # A holiday Tuesday joins Monday and Wednesday.
    holiday = {MONDAY + dt.timedelta(days=8)}
    assert weekly_counted_days(MONDAY, None, "13", sundays | holiday) == 2


def decision(**fields):
    values = {
        "approved_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        "declined_at": None,
        "ended_on": None,
        "start_on": MONDAY,
        "end_on": MONDAY + dt.timedelta(days=2),
        "schedule_kind": ScheduleKind.DAYS,
        "weekdays": None,
    }
    values.update(fields)
    return SimpleNamespace(**values)


def test_a_run_of_days_covers_its_period_only():
    made = decision()
    assert [decision_covers(made, MONDAY + dt.timedelta(days=n), set()) for n in (-1, 0, 2, 3)] == [
        False,
        True,
        True,
        False,
    ]


def test_an_unapproved_declined_or_ended_decision_covers_nothing():
    assert not decision_covers(decision(approved_at=None), MONDAY, set())
    assert not decision_covers(
        decision(declined_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC)), MONDAY, set()
    )
    ended = decision(ended_on=MONDAY + dt.timedelta(days=1))
    assert decision_covers(ended, MONDAY, set())
    assert not decision_covers(ended, MONDAY + dt.timedelta(days=1), set())


def test_a_weekly_schedule_covers_its_weekdays_and_closed_days_in_its_period():
    weekly = decision(schedule_kind=ScheduleKind.WEEKLY, weekdays="6", end_on=None)
    saturday, sunday = MONDAY + dt.timedelta(days=5), MONDAY + dt.timedelta(days=6)
    assert decision_covers(weekly, saturday, set())
    assert not decision_covers(weekly, sunday, set())
    assert decision_covers(weekly, sunday, {sunday})
    assert not decision_covers(
        weekly, MONDAY - dt.timedelta(days=1), {MONDAY - dt.timedelta(days=1)}
    )


def test_closed_days_read_the_weekdays_and_the_holidays_in_one_statement(app_ctx, site, make_user):
    actor = make_user("admin")
    holder = db.session.get(Site, site)
    holder.closed_weekdays = "67"
    db.session.add_all(
        [
            SiteClosure(
                site_id=site, closed_on=dt.date(2026, 3, 18), name="Holiday", created_by_id=actor
            ),
            SiteClosure(
                site_id=site, closed_on=dt.date(2026, 4, 1), name="Later", created_by_id=actor
            ),
        ]
    )
    db.session.commit()
    assert holder.closed_weekdays == "67"  # loaded before counting
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        days = closed_days(holder, MONDAY, MONDAY + dt.timedelta(days=6))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    assert days == {dt.date(2026, 3, 18), dt.date(2026, 3, 21), dt.date(2026, 3, 22)}
    assert len(statements) == 1
    assert closed_days(holder, MONDAY, MONDAY - dt.timedelta(days=1)) == set()
