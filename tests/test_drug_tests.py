"""Drug tests, the services (issue 13): recording a collection (who, when, the site's day,
the random selection), results (presumptive then definitive, each once), the test marked
entered in error once, effective results, the missing-own-medication finding and the
unexpected positives the take-home review reads."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import drug_tests
from clinic.medications.drug_test_models import DrugTest, DrugTestResult
from clinic.web import constraint_name
from tests.test_drug_tests_helpers import (
    ADMITTED,
    at,
    collect,
    enter,
    lab_fixture,  # noqa: F401
    selection,
)

MARCH_2 = dt.date(2026, 3, 2)


def refusal(call) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call()
    db.session.rollback()
    return caught.value


# --- recording a collection ----------------------------------------------------------------


def test_a_collection_is_recorded_on_the_sites_day(lab):
    with lab.ctx():
        # 02:30 UTC on 3 March is still 2 March in Chicago (CST, UTC-6).
        when = dt.datetime(2026, 3, 3, 2, 30, tzinfo=dt.UTC)
        test = db.session.get(DrugTest, collect(lab, when=when))
        assert test.collected_on == MARCH_2
        assert test.collected_at == when
        assert test.site_id == lab.site
        assert test.collected_by_id == test.recorded_by_id == lab.clinician
        event = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.entity_type == "drug_test")
        ).one()
        assert (event.action, event.entity_id, event.patient_id) == (
            "create",
            str(test.id),
            lab.methadone,
        )


def test_a_collection_given_as_the_sites_date_and_time(lab):
    with lab.ctx():
        local = drug_tests.CollectedLocal(MARCH_2, dt.time(21, 15))
        test = db.session.get(DrugTest, collect(lab, when=local))
        assert test.collected_at == dt.datetime(2026, 3, 3, 3, 15, tzinfo=dt.UTC)
        assert test.collected_on == MARCH_2


def test_a_collection_in_the_future_is_refused(lab):
    with lab.ctx():
        later = utcnow() + dt.timedelta(minutes=5)
        error = refusal(lambda: collect(lab, when=later))
        assert error.message == drug_tests.FUTURE_MESSAGE
        assert db.session.scalar(sa.select(sa.func.count(DrugTest.id))) == 0


def test_a_collection_at_the_end_of_the_calendar_is_refused_not_a_crash(lab):
    with lab.ctx():
        last = drug_tests.CollectedLocal(dt.date(9999, 12, 31), dt.time(23, 59))
        assert refusal(lambda: collect(lab, when=last)).field == "collected_on"
        first = drug_tests.CollectedLocal(dt.date(1, 1, 1), dt.time(0, 0))
        assert refusal(lambda: collect(lab, when=first)).field in ("collected_on",)


def test_a_collection_before_the_first_admission_is_refused(lab):
    with lab.ctx():
        error = refusal(lambda: collect(lab, when=at(ADMITTED - dt.timedelta(days=1), 23, 59)))
        assert error.field == "collected_on"
        assert "5 Jan 2026" in error.message
        assert collect(lab, when=at(ADMITTED, 0, 1))  # the admission day itself


def test_a_patient_never_admitted_is_not_tested(lab):
    with lab.ctx():
        error = refusal(lambda: collect(lab, lab.never_admitted))
        assert error.message == drug_tests.NO_ADMISSION_MESSAGE


def test_a_patient_entered_in_error_is_not_tested(lab):
    with lab.ctx():
        patient = lab.patient(lab.methadone)
        patient.entered_in_error_at = utcnow()
        patient.entered_in_error_reason = "Duplicate"
        patient.entered_in_error_by_id = lab.admin
        db.session.commit()
        assert "entered in error" in refusal(lambda: collect(lab)).message


@pytest.mark.parametrize("who", ["admin", "staff", "other_clinician"])
def test_only_clinicians_of_the_site_record_tests(lab, who):
    with lab.ctx():
        error = refusal(lambda: collect(lab, actor=getattr(lab, who)))
        assert error.message == drug_tests.NOT_A_TESTER_MESSAGE


def test_the_temperature_check_is_for_urine_only_and_required_on_urine(lab):
    with lab.ctx():
        error = refusal(lambda: collect(lab, specimen="oral_fluid", temperature_in_range=False))
        assert error.field == "temperature_in_range"
        error = refusal(lambda: collect(lab, temperature_in_range=None))
        assert error.message == drug_tests.TEMPERATURE_NEEDED_MESSAGE
        test = db.session.get(
            DrugTest, collect(lab, specimen="oral_fluid", temperature_in_range=None)
        )
        assert test.temperature_in_range is None


@pytest.mark.parametrize(
    ("specimen", "reason", "field"), [("blood", "random", "specimen"), ("urine", "x", "reason")]
)
def test_an_unknown_specimen_or_reason_is_refused(lab, specimen, reason, field):
    with lab.ctx():
        assert refusal(lambda: collect(lab, specimen=specimen, reason=reason)).field == field


def test_a_random_selection_must_be_the_patients_on_the_collection_day(lab):
    with lab.ctx():
        own = selection(lab, lab.methadone, MARCH_2)
        others = selection(lab, lab.buprenorphine, MARCH_2)
        earlier = selection(lab, lab.methadone, MARCH_2 - dt.timedelta(days=1))
        for wrong in (others, earlier, 2_000_000_000):
            error = refusal(lambda wrong=wrong: collect(lab, selection_id=wrong))
            assert error.message == drug_tests.SELECTION_MESSAGE
        test = db.session.get(DrugTest, collect(lab, selection_id=own, reason="scheduled"))
        assert (test.selection_id, test.reason) == (own, "random")


# --- results -------------------------------------------------------------------------------


def test_a_definitive_result_supersedes_the_presumptive_one(lab):
    with lab.ctx():
        test_id = collect(lab)
        enter(
            lab,
            test_id,
            ("cocaine", "positive", "presumptive"),
            ("fentanyl", "positive", "presumptive"),
            ("methadone", "positive", "presumptive"),
        )
        enter(lab, test_id, ("fentanyl", "negative", "definitive"))
        test = db.session.get(DrugTest, test_id)
        assert len(test.results) == 4  # nothing replaced: a new row
        effective = {e.analyte: e for e in drug_tests.effective_results([test])[test_id]}
        assert [e.analyte for e in drug_tests.effective_results([test])[test_id]] == [
            "fentanyl",
            "methadone",
            "cocaine",
        ]
        assert (effective["fentanyl"].result, effective["fentanyl"].method) == (
            "negative",
            "definitive",
        )
        assert effective["fentanyl"].overturned
        assert effective["cocaine"].method == "presumptive"
        assert not effective["cocaine"].overturned


def test_an_analyte_twice_in_one_form_is_refused_on_its_row(lab):
    with lab.ctx():
        test_id = collect(lab)
        error = refusal(
            lambda: enter(
                lab,
                test_id,
                ("cocaine", "negative", "presumptive"),
                ("cocaine", "positive", "presumptive"),
            )
        )
        assert error.field == "rows-1-result"
        assert "twice" in error.message
        assert db.session.scalar(sa.select(sa.func.count(DrugTestResult.id))) == 0


def test_an_other_substance_named_twice_is_refused_whatever_its_case(lab):
    with lab.ctx():
        test_id = collect(lab)
        error = refusal(
            lambda: enter(
                lab,
                test_id,
                ("other", "positive", "presumptive", "Xylazine"),
                ("other", "positive", "presumptive", " xylazine "),
            )
        )
        assert error.field == "rows-1-result"
        enter(
            lab,
            test_id,
            ("other", "positive", "presumptive", "Xylazine"),
            ("other", "negative", "presumptive", "Gabapentin"),
        )
        labels = [
            e.label
            for e in drug_tests.effective_results([db.session.get(DrugTest, test_id)])[test_id]
        ]
        assert labels == ["Gabapentin", "Xylazine"]


def test_a_result_already_recorded_is_refused_never_changed(lab):
    with lab.ctx():
        test_id = collect(lab)
        enter(lab, test_id, ("cocaine", "negative", "presumptive"))
        error = refusal(lambda: enter(lab, test_id, ("cocaine", "positive", "presumptive")))
        assert error.field == "rows-0-result"
        assert "already recorded" in error.message
        enter(lab, test_id, ("cocaine", "positive", "definitive"))
        error = refusal(lambda: enter(lab, test_id, ("cocaine", "negative", "definitive")))
        assert "already recorded" in error.message


def test_a_presumptive_result_never_follows_a_definitive_one(lab):
    with lab.ctx():
        test_id = collect(lab)
        enter(lab, test_id, ("alcohol", "negative", "definitive"))
        error = refusal(lambda: enter(lab, test_id, ("alcohol", "positive", "presumptive")))
        assert error.message == drug_tests.AFTER_DEFINITIVE_MESSAGE.format(label="Alcohol")


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (("other", "positive", "presumptive", "  "), "rows-0-other_name"),
        (("other", "positive", "presumptive", "x" * 61), "rows-0-other_name"),
        (("other", "positive", "presumptive", "Xyla\x00zine"), "rows-0-other_name"),
        (("heroin", "positive", "presumptive"), "rows-0-result"),
        (("cocaine", "maybe", "presumptive"), "rows-0-result"),
        (("cocaine", "positive", "guess"), "rows-0-method"),
        (("cocaine", None, "presumptive"), "rows-0-result"),
    ],
)
def test_a_bad_row_is_refused_on_its_field(lab, row, field):
    with lab.ctx():
        test_id = collect(lab)
        assert refusal(lambda: enter(lab, test_id, row)).field == field


def test_no_row_at_all_is_refused(lab):
    with lab.ctx():
        test_id = collect(lab)
        assert refusal(lambda: enter(lab, test_id)).message == drug_tests.NO_RESULTS_MESSAGE


def test_the_unique_constraint_backs_the_check_against_a_race(lab):
    with lab.ctx():
        test_id = collect(lab)
        enter(lab, test_id, ("cocaine", "negative", "presumptive"))
        db.session.add(
            DrugTestResult(
                test_id=test_id,
                analyte="cocaine",
                result="positive",
                method="presumptive",
                entered_by_id=lab.clinician,
            )
        )
        with pytest.raises(sa.exc.IntegrityError) as caught:
            db.session.commit()
        db.session.rollback()
        assert constraint_name(caught.value) == "uq_drug_test_result_test_analyte_method"


def test_results_are_audited_without_their_values(lab):
    with lab.ctx():
        test_id = collect(lab)
        enter(
            lab,
            test_id,
            ("cocaine", "positive", "presumptive"),
            ("opioids", "negative", "presumptive"),
        )
        event = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.entity_type == "drug_test_result")
        ).one()
        assert json.loads(event.details)["results"] == 2
        assert "positive" not in str(event.details) and "cocaine" not in str(event.details)


# --- entered in error ---------------------------------------------------------------------


def test_a_test_is_marked_entered_in_error_once_and_then_takes_no_results(lab):
    with lab.ctx():
        test_id = collect(lab)
        test = db.session.get(DrugTest, test_id)
        assert (
            refusal(
                lambda: drug_tests.mark_entered_in_error(
                    test, actor=lab.user(lab.clinician), reason="  "
                )
            ).field
            == "reason"
        )
        drug_tests.mark_entered_in_error(
            test, actor=lab.user(lab.clinician), reason="Wrong patient's cup"
        )
        db.session.commit()
        error = refusal(
            lambda: drug_tests.mark_entered_in_error(
                db.session.get(DrugTest, test_id), actor=lab.user(lab.clinician), reason="Again"
            )
        )
        assert error.message == drug_tests.ALREADY_IN_ERROR_MESSAGE
        error = refusal(lambda: enter(lab, test_id, ("cocaine", "negative", "presumptive")))
        assert error.message == drug_tests.TEST_IN_ERROR_MESSAGE
        assert db.session.get(DrugTest, test_id).entered_in_error_reason == "Wrong patient's cup"


@pytest.mark.parametrize("who", ["admin", "staff", "other_clinician"])
def test_only_clinicians_of_the_site_mark_a_test_entered_in_error(lab, who):
    with lab.ctx():
        test = db.session.get(DrugTest, collect(lab))
        error = refusal(
            lambda: drug_tests.mark_entered_in_error(
                test, actor=lab.user(getattr(lab, who)), reason="No"
            )
        )
        assert error.message == drug_tests.NOT_A_TESTER_MESSAGE
