"""The database keeps take-home decisions as recorded (migration a7b8c9d0e1f2, both engines):
recorded elements never change, approval/decline and ending are written once, an unmet
criterion is never approved, decisions are never deleted and reviews are append-only."""

# ruff: noqa: F811 (the fixtures imported from tests.take_home_helpers)
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from clinic.extensions import db
from clinic.medications import take_home_decisions as decisions
from clinic.medications.take_home_models import TakeHomeDecision, TakeHomeReview
from tests.take_home_helpers import (  # noqa: F401 (fixtures)
    TODAY,
    make_world,
    site_noon,
    world,
)


def refused(statement: str, **params) -> str:
    with pytest.raises(sa.exc.IntegrityError) as error:
        db.session.execute(sa.text(statement), params)
        db.session.flush()
    db.session.rollback()
    return str(error.value)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("days", 3),
        ("cap_days", 20),
        ("counted_days", 1),
        ("start_on", dt.date(2026, 4, 1)),
        ("substance_use_note", "changed"),
        ("storage_met", False),
        ("recorded_by_id", None),
        ("order_id", None),
    ],
)
def test_recorded_elements_never_change(world, column, value):
    decision = world.record()
    if value is None:
        value = world.ids["clinician"] if column == "recorded_by_id" else 999999
    message = refused(
        f"UPDATE take_home_decision SET {column} = :value WHERE id = :id",
        value=value,
        id=decision.id,
    )
    assert "take_home_decision" in message


def test_an_approval_is_written_once(world):
    decision = world.record()
    message = refused(
        "UPDATE take_home_decision SET approved_by_id = :user WHERE id = :id",
        user=world.ids["clinician"],
        id=decision.id,
    )
    assert "take_home_decision_approval_once" in message
    assert "take_home_decision_approval_once" in refused(
        "UPDATE take_home_decision SET approved_at = NULL, approved_by_id = NULL WHERE id = :id",
        id=decision.id,
    )


def test_a_decline_is_written_once(world):
    pending = world.record(actor="clinician", approve=False)
    decisions.decline(pending, actor=world.user("prescriber"), reason="Not yet.")
    db.session.commit()
    assert "take_home_decision_approval_once" in refused(
        "UPDATE take_home_decision SET declined_reason = 'other' WHERE id = :id", id=pending.id
    )


def test_an_ending_is_written_once(world):
    decision = world.record()
    decisions.end_decision(decision, actor=world.user("clinician"), reason="Stop.", ended_on=TODAY)
    db.session.commit()
    assert "take_home_decision_end_once" in refused(
        "UPDATE take_home_decision SET ended_on = :day WHERE id = :id",
        day=TODAY + dt.timedelta(days=1),
        id=decision.id,
    )


def test_an_unmet_criterion_is_never_approved(world):
    if db.engine.dialect.name == "postgresql":
        pytest.skip("one function holds every rule there: the insert test below checks it")
    pending = world.record(actor="clinician", approve=False)
    # Even if a row with an unmet criterion got in (it cannot through the service)...
    db.session.execute(sa.text("DROP TRIGGER take_home_decision_fixed"))
    db.session.execute(
        sa.text("UPDATE take_home_decision SET storage_met = :no WHERE id = :id"),
        {"no": False, "id": pending.id},
    )
    assert "take_home_decision_criteria_met" in refused(
        "UPDATE take_home_decision SET approved_at = :now, approved_by_id = :user WHERE id = :id",
        now=dt.datetime(2026, 3, 18, 17, tzinfo=dt.UTC),
        user=world.ids["prescriber"],
        id=pending.id,
    )


def test_an_approved_decision_with_an_unmet_criterion_is_never_inserted(world):
    decision = world.record()
    columns = [c.name for c in TakeHomeDecision.__table__.columns if c.name != "id"]
    row = {c: getattr(decision, c) for c in columns}
    row["other_met"] = False
    names = ", ".join(columns)
    values = ", ".join(f":{c}" for c in columns)
    message = refused(f"INSERT INTO take_home_decision ({names}) VALUES ({values})", **row)
    assert "take_home_decision_criteria_met" in message


def test_decisions_are_never_deleted(world):
    decision = world.record()
    assert "take_home_decision_no_delete" in refused(
        "DELETE FROM take_home_decision WHERE id = :id", id=decision.id
    )
    if db.engine.dialect.name == "postgresql":
        assert "take_home_decision_no_delete" in refused("TRUNCATE take_home_decision CASCADE")


def test_reviews_are_append_only(world):
    decision = world.record()
    review = decisions.review_decision(
        decision, actor=world.user("clinician"), outcome="continue", note="Stable."
    )
    db.session.commit()
    assert "take_home_review_append_only" in refused(
        "UPDATE take_home_review SET note = 'x' WHERE id = :id", id=review.id
    )
    assert "take_home_review_append_only" in refused(
        "DELETE FROM take_home_review WHERE id = :id", id=review.id
    )
    if db.engine.dialect.name == "postgresql":
        assert "take_home_review_append_only" in refused("TRUNCATE take_home_review")
    assert db.session.get(TakeHomeReview, review.id).note == "Stable."
