"""The take-home review list: a decision in force past its program's review interval is due;
a positive test (the effective result, for anything but the patient's own medication) or a
bottle finding after the approval or the last review puts it on the list; a review takes it
off; site-scoped; a constant number of statements at 1,000 patients."""

# ruff: noqa: F811 (the fixtures imported from tests.take_home_helpers)
from __future__ import annotations

import datetime as dt
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
import time_machine

from clinic.extensions import db
from clinic.medications import drug_tests
from clinic.medications import take_home_decisions as decisions
from clinic.medications.drug_tests import ResultRow
from clinic.medications.take_home_models import (
    DiversionIncident,
    IncidentSource,
    TakeHomeDecision,
)
from clinic.medications.take_home_reading import review_list
from clinic.patients.models import Enrollment, Patient
from tests.take_home_helpers import (  # noqa: F401 (fixtures)
    CHICAGO,
    NOW,
    TODAY,
    make_world,
    site_noon,
    world,
)


def later(days: int) -> dt.datetime:
    return NOW + dt.timedelta(days=days)


def weekly(world, **fields) -> TakeHomeDecision:
    """Saturdays and Sundays from today, without an end: in force for months."""
    return world.record(schedule_kind="weekly", days=None, weekdays="67", **fields)


def listed(world, now: dt.datetime) -> dict[int, list[str]]:
    return {s.decision.id: s.reasons for s in review_list(world.user("clinician"), now)}


def test_a_decision_is_due_after_the_programs_review_interval(world):
    decision = weekly(world)
    assert listed(world, later(89)) == {}
    assert list(listed(world, later(90))) == [decision.id]
    assert listed(world, later(90))[decision.id][0].startswith("Review due since")


def test_a_shorter_program_interval(app, site_noon, make_world):
    made = make_world(take_home_review_days=30)
    with app.test_request_context():
        decision = weekly(made)
        assert listed(made, later(29)) == {}
        assert list(listed(made, later(30))) == [decision.id]


def test_a_review_takes_it_off_until_due_again(world):
    decision = weekly(world)
    with time_machine.travel(later(95), tick=False):
        decisions.review_decision(
            decision, actor=world.user("clinician"), outcome="continue", note="Stable."
        )
        db.session.commit()
    assert listed(world, later(96)) == {}
    assert list(listed(world, later(95 + 90))) == [decision.id]


def test_an_ended_declined_pending_or_finished_decision_is_not_listed(world):
    world.record(actor="clinician", approve=False, schedule_kind="weekly", days=None, weekdays="6")
    run = world.record(days=3)
    ended = weekly(world)
    decisions.end_decision(ended, actor=world.user("clinician"), reason="Stop.", ended_on=TODAY)
    db.session.commit()
    assert run.end_on < (later(100)).date()
    assert listed(world, later(100)) == {}


def add_test(world, when: dt.datetime, rows: list[ResultRow]):
    with time_machine.travel(when + dt.timedelta(minutes=5), tick=False):
        test = drug_tests.record_test(
            world.patient,
            actor=world.user("clinician"),
            collected_at=when,
            specimen="urine",
            observed=True,
            reason="random",
            temperature_in_range=True,
            adulteration_suspected=False,
        )
        drug_tests.record_results(test, rows, actor=world.user("clinician"))
        db.session.commit()


def test_a_positive_test_after_the_decision_lists_it(world):
    decision = weekly(world)
    add_test(world, NOW - dt.timedelta(days=2), [ResultRow("cocaine", "positive", "presumptive")])
    assert listed(world, later(3)) == {}  # before the decision
    add_test(world, later(1), [ResultRow("methadone", "positive", "presumptive")])
    assert listed(world, later(3)) == {}  # the patient's own medication
    add_test(
        world,
        later(2),
        [
            ResultRow("fentanyl", "positive", "presumptive"),
            ResultRow("fentanyl", "negative", "definitive"),
        ],
    )
    assert listed(world, later(3)) == {}  # the laboratory overturned it
    add_test(world, later(3), [ResultRow("cocaine", "positive", "presumptive")])
    reasons = listed(world, later(4))[decision.id]
    assert reasons == ["Positive test since the decision or its last review: Cocaine"]
    with time_machine.travel(later(5), tick=False):
        decisions.review_decision(
            decision, actor=world.user("clinician"), outcome="continue", note="Discussed."
        )
        db.session.commit()
    assert listed(world, later(6)) == {}


def test_a_bottle_finding_after_the_decision_lists_it(world):
    decision = weekly(world)
    db.session.add(
        DiversionIncident(
            patient_id=world.patient.id,
            site_id=world.patient.site_id,
            found_on=TODAY + dt.timedelta(days=7),
            source=IncidentSource.BOTTLE_RETURN,
            description="One bottle not returned.",
            recorded_by_id=world.ids["clinician"],
            recorded_at=later(7),
        )
    )
    db.session.commit()
    assert listed(world, later(8))[decision.id] == [
        "Bottle finding since the decision or its last review (1)"
    ]


def test_another_sites_decisions_are_not_listed(world, make_site, make_user):
    from clinic.accounts.models import User

    weekly(world)
    outsider = db.session.get(User, make_user("clinician", site_ids=[make_site("EAST")]))
    assert review_list(outsider, later(100)) == []
    assert len(review_list(world.user("admin"), later(100))) == 1


def test_the_review_list_page(app, site_noon, make_world, username_of):
    from tests.conftest import login

    made = make_world()
    with app.test_request_context():
        decision_id = weekly(made).id
    client = app.test_client()
    login(client, username_of(made.ids["clinician"]))
    assert "No decision to review." in client.get("/take-homes/review-list").get_data(as_text=True)
    with time_machine.travel(later(91), tick=True):
        client = app.test_client()  # a new sign-in: the first session timed out
        login(client, username_of(made.ids["clinician"]))
        page = client.get("/take-homes/review-list").get_data(as_text=True)
    assert f"/take-homes/decisions/{decision_id}" in page
    assert "Review due since" in page


@pytest.fixture
def signed_in_as(app, username_of):
    from tests.conftest import login

    def make(user_id: int):
        client = app.test_client()
        assert login(client, username_of(user_id)).status_code == 302
        return client

    return make


@contextmanager
def count_statements():
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)


def bulk_decisions(world, count: int) -> None:
    """``count`` patients admitted 200 days ago with a weekly decision each approved now
    (written in bulk, for the statement count only), a third with a bottle finding."""
    template = world.patient
    enrollment = db.session.get(Enrollment, world.ids["enrollment"])
    db.session.execute(
        sa.insert(Patient),
        [
            {
                "site_id": template.site_id,
                "mrn": f"BULKTH-{i:06d}",
                "first_name": "Bulk",
                "last_name": f"Patient{i:05d}",
                "first_key": "bulk",
                "last_key": f"patient{i:05d}",
                "date_of_birth": dt.date(1980, 1, 1),
                "sex_at_birth": "female",
                "primary_substance": "fentanyl",
                "intake_date": TODAY - dt.timedelta(days=200),
            }
            for i in range(count)
        ],
    )
    ids = list(db.session.scalars(sa.select(Patient.id).where(Patient.mrn.like("BULKTH-%"))))
    db.session.execute(
        sa.insert(Enrollment),
        [
            {
                "patient_id": pid,
                "program_id": enrollment.program_id,
                "admitted_on": TODAY - dt.timedelta(days=200),
                "asam_edition": "3",
                "asam_level": "OTP",
            }
            for pid in ids
        ],
    )
    enrollment_of = dict(
        db.session.execute(
            sa.select(Enrollment.patient_id, Enrollment.id).where(Enrollment.patient_id.in_(ids))
        ).all()
    )
    model = weekly(world)
    copied = {
        c.name: getattr(model, c.name)
        for c in TakeHomeDecision.__table__.columns
        if c.name not in ("id", "patient_id", "enrollment_id")
    }
    db.session.execute(
        sa.insert(TakeHomeDecision),
        [{**copied, "patient_id": pid, "enrollment_id": enrollment_of[pid]} for pid in ids],
    )
    db.session.execute(
        sa.insert(DiversionIncident),
        [
            {
                "patient_id": pid,
                "site_id": template.site_id,
                "found_on": TODAY + dt.timedelta(days=1),
                "source": "call_back",
                "description": "Short count.",
                "recorded_by_id": world.ids["clinician"],
                "recorded_at": later(1),
            }
            for pid in ids[::3]
        ],
    )
    db.session.commit()


def test_a_constant_number_of_statements_at_1000_patients(world):
    user = world.user("clinician")
    weekly(world)
    user.sites  # noqa: B018 (loaded before counting)
    with count_statements() as few:
        assert len(review_list(user, later(100))) == 1
    bulk_decisions(world, 1000)
    user = world.user("clinician")
    user.sites  # noqa: B018
    with count_statements() as many:
        rows = review_list(user, later(2))
    assert len(few) == len(many) <= 6
    assert len(rows) == 334  # the bottle findings (none due yet)
    with count_statements() as due:
        assert len(review_list(user, later(100))) == 1002
    assert len(due) == len(few)


def test_the_review_page_runs_a_constant_number_of_statements(
    app, site_noon, make_world, signed_in_as
):
    """The take-home review page and the chart: the same statements with one decision and
    one test as with a dozen of each (and a declined decision, a review)."""
    made = make_world()
    negative = [ResultRow("opioids", "negative", "presumptive")]
    with app.test_request_context():
        weekly(made)
        add_test(made, NOW - dt.timedelta(days=1), negative)
    client = signed_in_as(made.ids["clinician"])
    url = f"/take-homes/patients/{made.ids['patient']}"
    chart = f"/patients/{made.ids['patient']}"
    client.get(url)
    with app.app_context(), count_statements() as few:
        assert client.get(url).status_code == 200
    with app.app_context(), count_statements() as few_chart:
        assert client.get(chart).status_code == 200
    with app.test_request_context():
        for n in range(12):
            made.record(days=2, start_on=TODAY + dt.timedelta(days=3 * n))
            add_test(made, NOW - dt.timedelta(days=n + 2), negative)
        declined = made.record(actor="clinician", approve=False, days=1)
        decisions.decline(declined, actor=made.user("prescriber"), reason="No.")
        db.session.commit()
    with app.app_context(), count_statements() as many:
        assert client.get(url).status_code == 200
    with app.app_context(), count_statements() as many_chart:
        assert client.get(chart).status_code == 200
    assert len(few) == len(many)
    assert len(few_chart) == len(many_chart)
