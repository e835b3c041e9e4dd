"""Drug tests in the database (migration e4f5a6b7c8d9), on both engines: results are
append-only, a test is never deleted and its clinical columns never change, and the
entered-in-error mark is written once — whatever SQL reaches the tables."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from clinic.db import utcnow
from clinic.extensions import db
from clinic.medications.drug_test_models import DrugTest, DrugTestResult
from clinic.web import constraint_name
from tests.test_drug_tests_helpers import collect, enter, lab_fixture  # noqa: F401


def sql_refusal(statement: str, **params) -> str | None:
    """The rule that refused ``statement`` (None when it went through; rolled back)."""
    try:
        db.session.execute(sa.text(statement), params)
        db.session.flush()
    except sa.exc.IntegrityError as error:
        db.session.rollback()
        return constraint_name(error)
    db.session.rollback()
    return None


@pytest.fixture
def tested(lab):
    with lab.ctx():
        test_id = collect(lab)
        enter(lab, test_id, ("cocaine", "positive", "presumptive"))
        result_id = db.session.scalar(sa.select(DrugTestResult.id))
        yield lab, test_id, result_id


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE drug_test_result SET result = 'negative' WHERE id = :id",
        "UPDATE drug_test_result SET method = 'definitive' WHERE id = :id",
        "UPDATE drug_test_result SET entered_at = entered_at WHERE id = :id",
        "DELETE FROM drug_test_result WHERE id = :id",
    ],
)
def test_results_are_never_changed_nor_deleted(tested, statement):
    _lab, _test_id, result_id = tested
    assert sql_refusal(statement, id=result_id) == "drug_test_result_append_only"
    assert db.session.get(DrugTestResult, result_id).result == "positive"


def test_a_test_is_never_deleted(tested):
    _lab, test_id, _result_id = tested
    assert sql_refusal("DELETE FROM drug_test WHERE id = :id", id=test_id) in (
        "drug_test_no_delete",
        "drug_test_result_append_only",  # on an engine that cascades first
    )
    db.session.execute(sa.text("SELECT 1"))
    assert db.session.get(DrugTest, test_id) is not None


@pytest.mark.parametrize(
    "change",
    [
        "patient_id = patient_id + 1",
        "collected_at = :now",
        "collected_on = '2026-03-03'",
        "specimen = 'oral_fluid', temperature_in_range = NULL",
        "observed = NOT observed",
        "reason = 'scheduled'",
        "adulteration_suspected = NOT adulteration_suspected",
        "temperature_in_range = NOT temperature_in_range",
        "collected_by_id = recorded_by_id + 0, recorded_by_id = recorded_by_id + 1",
    ],
)
def test_a_tests_clinical_columns_never_change(tested, change):
    _lab, test_id, _result_id = tested
    refused = sql_refusal(f"UPDATE drug_test SET {change} WHERE id = :id", id=test_id, now=utcnow())
    assert refused == "drug_test_clinical_fixed"


def test_the_entered_in_error_mark_is_written_once(tested):
    lab, test_id, _result_id = tested
    mark = (
        "UPDATE drug_test SET entered_in_error_at = :now, entered_in_error_by_id = :by, "
        "entered_in_error_reason = :why WHERE id = :id"
    )
    db.session.execute(
        sa.text(mark), {"now": utcnow(), "by": lab.clinician, "why": "Wrong cup", "id": test_id}
    )
    db.session.commit()
    assert (
        sql_refusal(
            "UPDATE drug_test SET entered_in_error_reason = 'Other' WHERE id = :id", id=test_id
        )
        == "drug_test_in_error_once"
    )
    assert sql_refusal(
        "UPDATE drug_test SET entered_in_error_at = NULL, entered_in_error_by_id = NULL, "
        "entered_in_error_reason = NULL WHERE id = :id",
        id=test_id,
    ) in ("drug_test_in_error_once", "ck_drug_test_error_mark_complete")
    assert db.session.get(DrugTest, test_id).entered_in_error_reason == "Wrong cup"


def test_postgresql_refuses_truncating_tests_and_results(tested):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    for table in ("drug_test_result", "drug_test"):
        with pytest.raises(sa.exc.IntegrityError) as caught:
            db.session.execute(sa.text(f"TRUNCATE {table} CASCADE"))
        db.session.rollback()
        assert constraint_name(caught.value) in (
            "drug_test_result_append_only",
            "drug_test_no_delete",
        )
