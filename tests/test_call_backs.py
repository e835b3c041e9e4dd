"""Call-backs (clinic.medications.call_backs): who is due (3+ take-home days, fewer than 2
call-backs in 12 months, pro-rated), starting one with the bottles expected, the outcome
recorded once (service and trigger), a short count as a finding, the worklist's pages for
each role and its constant number of statements at 1,000 patients."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
import time_machine

from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import call_backs, ledger, take_home_bottles
from clinic.medications.take_home_models import CallBack, DiversionIncident
from clinic.patients.models import Enrollment, Patient
from tests.test_call_backs_helpers import (
    called_ids_fixture,  # noqa: F401
    decide,
    dispense,
    on_methadone_fixture,  # noqa: F401
    staff_ids_fixture,  # noqa: F401
    today_fixture,  # noqa: F401
    user,
)

TOKEN_RE = re.compile(r'name="submission_token"[^>]*? value="([^"]+)"')


@pytest.fixture(autouse=True)
def site_noon():
    with time_machine.travel(dt.datetime(2026, 3, 18, 17, 0, tzinfo=dt.UTC), tick=True):
        yield


def due_ids(today: dt.date) -> list[int]:
    return [r.patient.id for r in call_backs.call_backs_due(None, today)]


def noon(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(17), dt.UTC)


# --- who is due ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("started", "required"), [(None, 0), (0, 0), (1, 1), (182, 1), (183, 2), (365, 2), (900, 2)]
)
def test_the_required_call_backs_are_pro_rated_in_the_first_year(started, required):
    today = dt.date(2026, 3, 18)
    start = None if started is None else today - dt.timedelta(days=started)
    assert call_backs.required_by_now(start, today) == required


def test_dispensings_alone_count_three_bottles_not_two(app, on_methadone, staff_ids, today):
    three, two = on_methadone(), on_methadone("Ann", "Lee")
    with app.test_request_context():
        for patient, count in ((three, 3), (two, 2)):
            # A 2-day decision (not eligible by itself) that started 10 days ago.
            decide(patient, today - dt.timedelta(days=10), 2, staff_ids)
            decide(patient, today + dt.timedelta(days=1), 2, staff_ids)
            decide(patient, today + dt.timedelta(days=3), 2, staff_ids)
            dispense(patient, staff_ids, count)
        assert due_ids(today) == [three]


def test_a_reversed_bottle_takes_a_dispensing_below_three(app, on_methadone, staff_ids, today):
    patient = on_methadone()
    with app.test_request_context():
        for start in (-10, 1, 3):
            decide(patient, today + dt.timedelta(days=start), 2, staff_ids)
        dispensing = dispense(patient, staff_ids, 3)
        assert due_ids(today) == [patient]
        bottle = take_home_bottles.dispensing_bottles(dispensing)[2]
        ledger.record_reversal(bottle, actor=user(staff_ids["nurse"]), reason="Wrong count")
        db.session.commit()
        assert due_ids(today) == []


def test_a_weekly_schedule_of_three_days_is_eligible_two_are_not(
    app, on_methadone, staff_ids, today
):
    three, two = on_methadone(), on_methadone("Ann", "Lee")
    with app.test_request_context():
        decide(three, today - dt.timedelta(days=30), None, staff_ids, weekdays="567")
        decide(two, today - dt.timedelta(days=30), None, staff_ids, weekdays="67")
        assert due_ids(today) == [three]


def test_two_call_backs_in_twelve_months_are_enough_and_older_ones_do_not_count(
    app, on_methadone, staff_ids, today
):
    patient = on_methadone()
    with app.test_request_context():
        decide(patient, today - dt.timedelta(days=190), 28, staff_ids)
        decide(patient, today + dt.timedelta(days=1), 7, staff_ids)
        dispense(patient, staff_ids, 3)
        assert due_ids(today) == [patient]  # 190 days of take-homes: 2 required
        found = db.session.get(Patient, patient)

        def called(days_ago: int) -> None:
            when = noon(today - dt.timedelta(days=days_ago))
            db.session.add(
                CallBack(
                    patient_id=patient,
                    site_id=found.site_id,
                    called_at=when,
                    called_on=when.date(),
                    due_by=when + dt.timedelta(hours=24),
                    called_by_id=staff_ids["clinician"],
                    bottles_expected=3,
                    bottles_counted=3,
                    outcome="complete",
                    outcome_at=when,
                    outcome_by_id=staff_ids["clinician"],
                )
            )
            db.session.commit()

        called(400)  # outside the 12 months
        assert due_ids(today) == [patient]
        called(100)
        assert due_ids(today) == [patient]  # 1 of 2
        called(365)  # the window's first day is 364 days ago
        assert due_ids(today) == [patient]
        called(364)
        assert due_ids(today) == []


def test_a_discharged_patient_or_another_site_is_not_listed(
    app, on_methadone, staff_ids, today, make_site
):
    east = make_site("EAST")
    here, there = on_methadone(), on_methadone("Ann", "Lee", site_id=east)
    with app.test_request_context():
        for patient in (here, there):
            decide(patient, today - dt.timedelta(days=10), 20, staff_ids)
        main = db.session.get(Patient, here).site_id
        assert [r.patient.id for r in call_backs.call_backs_due({main}, today)] == [here]
        enrollment = db.session.scalars(
            sa.select(Enrollment).where(Enrollment.patient_id == here)
        ).one()
        from clinic.patients import admissions

        admissions.discharge(
            enrollment,
            actor=user(staff_ids["clinician"]),
            discharged_on=today,
            reason=1,
            expected_version=enrollment.version,
        )
        db.session.commit()
        assert call_backs.call_backs_due({main}, today) == []


# --- starting and recording --------------------------------------------------------------


@pytest.fixture
def called(app, called_ids):
    """``called_ids`` loaded in a request context: (patient id, the call-back)."""
    with app.test_request_context():
        yield called_ids[0], db.session.get(CallBack, called_ids[1])


def test_a_call_back_expects_the_bottles_in_hand_within_24_hours(called):
    _patient, call_back = called
    assert call_back.bottles_expected == 4
    assert call_back.due_by - call_back.called_at == dt.timedelta(hours=24)


def test_a_second_open_call_back_is_refused(called, staff_ids):
    patient, _call_back = called
    with pytest.raises(DomainError, match="already open"):
        call_backs.start_call_back(
            db.session.get(Patient, patient), actor=user(staff_ids["clinician"])
        )


def test_no_call_back_without_bottles_in_hand(app, on_methadone, staff_ids):
    patient = on_methadone()
    with app.test_request_context(), pytest.raises(DomainError, match="no take-home bottles"):
        call_backs.start_call_back(
            db.session.get(Patient, patient), actor=user(staff_ids["clinician"])
        )


def test_only_a_clinician_who_decides_take_homes_starts_or_records(called, make_user):
    patient, call_back = called
    admin = user(make_user("admin"))
    with pytest.raises(DomainError):
        call_backs.start_call_back(db.session.get(Patient, patient), actor=admin)
    with pytest.raises(DomainError):
        call_backs.record_outcome(call_back, actor=admin, bottles_counted=4, outcome="complete")


def test_a_short_count_is_a_finding_with_an_incident(called, staff_ids):
    _patient, call_back = called
    clinician = user(staff_ids["clinician"])
    with pytest.raises(DomainError, match="record it as a short count"):
        call_backs.record_outcome(call_back, actor=clinician, bottles_counted=3, outcome="complete")
    db.session.rollback()
    with pytest.raises(DomainError, match="Describe the finding"):
        call_backs.record_outcome(call_back, actor=clinician, bottles_counted=3, outcome="short")
    db.session.rollback()
    call_backs.record_outcome(
        call_back, actor=clinician, bottles_counted=3, outcome="short", note="One missing."
    )
    db.session.commit()
    incident = db.session.get(DiversionIncident, call_back.incident_id)
    assert incident.source.value == "call_back"
    assert "3 of 4" in incident.description


@pytest.mark.parametrize(
    ("counted", "outcome", "message"),
    [
        (5, "complete", "More bottles than the patient had"),
        (4, "short", "below the bottles expected"),
        (None, "complete", "Enter the number of bottles"),
        (2, "no_show", "leave the count empty"),
        (4, "lost", "Choose the outcome"),
    ],
)
def test_counts_that_do_not_match_the_outcome_are_refused(
    called, staff_ids, counted, outcome, message
):
    _patient, call_back = called
    with pytest.raises(DomainError, match=message):
        call_backs.record_outcome(
            call_back, actor=user(staff_ids["clinician"]), bottles_counted=counted, outcome=outcome
        )


def test_the_outcome_is_recorded_once_and_the_trigger_backs_it(called, staff_ids):
    _patient, call_back = called
    clinician = user(staff_ids["clinician"])
    call_backs.record_outcome(call_back, actor=clinician, bottles_counted=4, outcome="complete")
    db.session.commit()
    with pytest.raises(DomainError, match="already recorded"):
        call_backs.record_outcome(call_back, actor=clinician, bottles_counted=4, outcome="complete")
    db.session.rollback()
    for statement, rule in (
        ("UPDATE call_back SET outcome = 'short'", "call_back_outcome_once"),
        ("DELETE FROM call_back", "call_back_no_delete"),
    ):
        with pytest.raises(sa.exc.IntegrityError, match=rule):
            db.session.execute(sa.text(statement))
        db.session.rollback()


def test_an_open_call_back_keeps_its_expected_bottles(called):
    _patient, _call_back = called
    with pytest.raises(sa.exc.IntegrityError, match="call_back_fixed"):
        db.session.execute(sa.text("UPDATE call_back SET bottles_expected = 1"))
    db.session.rollback()
