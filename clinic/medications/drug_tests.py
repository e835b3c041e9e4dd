"""Drug tests: recording a collection, entering results, marking a test entered in error,
and reading them back (issue 13; DOMAIN.md "Medication for opioid use disorder", the drug
test rule; 42 CFR 8.12(f)(6)).

Rules:

- a test is collected from a patient of the clinician's site, at a time that is neither
  in the future, nor before the patient's first admission, nor on a day no enrollment
  covers (after a discharge); ``collected_on`` is its day in the site's time zone; a
  random draw's selection (``selection_id``) must be this patient's and of that day,
  and answers one test (not entered in error);
- results are one row per analyte and method: presumptive (point of care, immunoassay)
  then, optionally, definitive (laboratory confirmation), which supersedes it
  (``effective_results``). Each (test, analyte, method) is recorded once (a unique
  constraint backs the service's check) and results are never changed (triggers,
  migration e4f5a6b7c8d9);
- a test is never deleted: a mistake is marked entered in error, with a reason, once;
- a NEGATIVE effective result for the patient's own medication (methadone or
  buprenorphine, per the order in force on the collection day, else the most recent
  one) is a finding: possible diversion (``findings``). Results inform take-home
  decisions; they are never by themselves a reason for discharge.

Services check, change rows, record the audit event (ids and counts only: never a
result) and flush; the caller commits. Reading (effective results, findings, unexpected
positives, the history) lives in ``drug_test_reading`` and is re-exported here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.forms import CONTROL_CHARACTER_MESSAGE, has_control_characters
from clinic.medications.drug_test_models import (
    OTHER_ANALYTE_MAX,
    REASON_MAX,
    Analyte,
    DrugTest,
    DrugTestResult,
    RandomTestDraw,
    RandomTestSelection,
    ResultMethod,
    ResultValue,
    Specimen,
    TestReason,
)
from clinic.medications.drug_test_reading import (
    CHART_TESTS,
    HISTORY_PAGE_SIZE,
    OWN_ANALYTE,
    PANEL,
    Effective,
    Finding,
    HistoryPage,
    Positive,
    effective_results,
    findings,
    own_analytes,
    test_for,
    test_history,
    unexpected_positives,
)
from clinic.patients import common
from clinic.patients.models import Enrollment, Patient
from clinic.security import Permission

NOT_A_TESTER_MESSAGE = "Only clinicians of the patient's site record drug tests."
FUTURE_MESSAGE = "The collection time is in the future."
BEFORE_ADMISSION_MESSAGE = "The collection is before the patient's first admission ({day})."
NO_ADMISSION_MESSAGE = "The patient has never been admitted: a drug test is recorded in treatment."
NOT_IN_TREATMENT_MESSAGE = (
    "The patient was not in treatment on {day} (discharged): a drug test is recorded in treatment."
)
SELECTION_MESSAGE = "This random selection is not this patient's for the collection day."
SELECTION_USED_MESSAGE = (
    "This random selection's test is already recorded: one selection answers one test."
)
TEST_IN_ERROR_MESSAGE = "This test was entered in error: it takes no results."
ALREADY_IN_ERROR_MESSAGE = "This test is already marked entered in error."
NO_RESULTS_MESSAGE = "Enter at least one result."
TWICE_MESSAGE = "{label} ({method}) is entered twice in this form."
RECORDED_MESSAGE = (
    "A {method} result for {label} is already recorded: results are never changed "
    "(a definitive result may follow a presumptive one)."
)
AFTER_DEFINITIVE_MESSAGE = (
    "A definitive result for {label} is already recorded: a presumptive one cannot follow it."
)
OTHER_NAME_MESSAGE = "Name the substance."
TEMPERATURE_MESSAGE = "The temperature check applies to urine only."
TEMPERATURE_NEEDED_MESSAGE = "Record the temperature check of a urine specimen."
REASON_MESSAGE = "Give the reason (up to 500 characters)."


class CollectedLocal(NamedTuple):
    """A collection time as the form gives it: the site-local day and time."""

    day: dt.date
    time: dt.time


@dataclass(frozen=True)
class ResultRow:
    """One analyte's result as entered: ``other_name`` names an analyte of kind ``other``."""

    analyte: Analyte | str | None
    result: ResultValue | str | None
    method: ResultMethod | str | None
    other_name: str = ""


# --- checks ----------------------------------------------------------------------------


def _may_record(actor: User, patient: Patient) -> None:
    sites = common.visible_site_ids(actor)
    if not actor.can(Permission.DRUG_TESTS_RECORD) or (
        sites is not None and patient.site_id not in sites
    ):
        raise DomainError(NOT_A_TESTER_MESSAGE)


def _enum(enum_type, value, *, field: str, message: str):
    try:
        return enum_type(value)
    except (ValueError, TypeError):
        raise DomainError(message, field=field) from None


def collection_instant(patient: Patient, collected_at: dt.datetime | CollectedLocal) -> dt.datetime:
    """The UTC instant of a collection given as an aware datetime or as the site-local day
    and time (a DST gap or overlap resolves as ``zoneinfo`` does, fold 0). A day at the
    edge of the calendar that has no UTC instant is refused as out of range."""
    if isinstance(collected_at, dt.datetime):
        if collected_at.tzinfo is None:
            raise DomainError("Give the collection time with its time zone.", field="collected_on")
        return collected_at.astimezone(dt.UTC)
    zone = ZoneInfo(patient.site.timezone)
    try:
        return dt.datetime.combine(collected_at.day, collected_at.time, tzinfo=zone).astimezone(
            dt.UTC
        )
    except (OverflowError, ValueError):
        raise DomainError(
            FUTURE_MESSAGE if collected_at.day.year > 1 else "Check the date.", field="collected_on"
        ) from None


def first_admission(patient: Patient) -> dt.date | None:
    return db.session.scalar(
        sa.select(sa.func.min(Enrollment.admitted_on)).where(Enrollment.patient_id == patient.id)
    )


def in_treatment_on(patient: Patient, day: dt.date) -> bool:
    """Whether an enrollment of the patient covers ``day`` (admitted on or before it, not
    discharged before it: the discharge day itself is still in treatment)."""
    return (
        db.session.scalar(
            sa.select(Enrollment.id)
            .where(
                Enrollment.patient_id == patient.id,
                Enrollment.admitted_on <= day,
                sa.or_(Enrollment.discharged_on.is_(None), Enrollment.discharged_on >= day),
            )
            .limit(1)
        )
        is not None
    )


# --- recording -------------------------------------------------------------------------


def record_test(
    patient: Patient,
    *,
    actor: User,
    collected_at: dt.datetime | CollectedLocal,
    specimen: Specimen | str | None,
    observed: bool,
    reason: TestReason | str | None,
    temperature_in_range: bool | None,
    adulteration_suspected: bool,
    selection_id: int | None = None,
    now: dt.datetime | None = None,
) -> DrugTest:
    """Record a specimen collected from ``patient`` by ``actor`` (DOMAIN.md drug tests;
    42 CFR 8.12(f)(6)). ``temperature_in_range`` is for urine only (None for oral fluid).

    Raises ``DomainError`` (with the form field) for: an actor who is not a clinician of
    the patient's site, a patient entered in error, a collection in the future, before
    the first admission or on a day no enrollment covers (after a discharge), a
    temperature check on oral fluid (or none on urine), or a
    ``selection_id`` that is not a random draw's selection of this patient on the
    collection's site-local day.
    Audited as ``create`` of ``drug_test`` (ids only)."""
    now = now or utcnow()
    _may_record(actor, patient)
    common.refuse_if_entered_in_error(patient)
    at = collection_instant(patient, collected_at)
    if at > now:
        raise DomainError(FUTURE_MESSAGE, field="collected_time")
    day = at.astimezone(ZoneInfo(patient.site.timezone)).date()
    admitted = first_admission(patient)
    if admitted is None:
        raise DomainError(NO_ADMISSION_MESSAGE, field="collected_on")
    if day < admitted:
        raise DomainError(
            BEFORE_ADMISSION_MESSAGE.format(day=common.format_day(admitted)), field="collected_on"
        )
    if not in_treatment_on(patient, day):
        raise DomainError(
            NOT_IN_TREATMENT_MESSAGE.format(day=common.format_day(day)), field="collected_on"
        )
    specimen = _enum(Specimen, specimen, field="specimen", message="Choose the specimen.")
    reason = _enum(TestReason, reason, field="reason", message="Choose random or scheduled.")
    if specimen is not Specimen.URINE and temperature_in_range is not None:
        raise DomainError(TEMPERATURE_MESSAGE, field="temperature_in_range")
    if specimen is Specimen.URINE and temperature_in_range is None:
        raise DomainError(TEMPERATURE_NEEDED_MESSAGE, field="temperature_in_range")
    if selection_id is not None:
        selection = db.session.execute(
            sa.select(RandomTestSelection.patient_id, RandomTestDraw.draw_on)
            .join(RandomTestDraw, RandomTestDraw.id == RandomTestSelection.draw_id)
            .where(RandomTestSelection.id == selection_id)
        ).first()
        if selection is None or selection.patient_id != patient.id or selection.draw_on != day:
            raise DomainError(SELECTION_MESSAGE, field="collected_on")
        _refuse_if_answered(selection_id)
        reason = TestReason.RANDOM
    test = DrugTest(
        patient_id=patient.id,
        site_id=patient.site_id,
        collected_at=at,
        collected_on=day,
        specimen=specimen,
        observed=bool(observed),
        reason=reason,
        collected_by_id=actor.id,
        temperature_in_range=temperature_in_range,
        adulteration_suspected=bool(adulteration_suspected),
        selection_id=selection_id,
        recorded_by_id=actor.id,
        recorded_at=now,
    )
    db.session.add(test)
    db.session.flush()
    _audit(test, AuditAction.CREATE, actor, reason=test.reason.value)
    return test


def _refuse_if_answered(selection_id: int) -> None:
    """One live test per random selection (else one random test counts twice towards the
    8 a year). The selection's row is locked first (PostgreSQL), so two colleagues
    recording it at once are serialized; the trigger ``drug_test_selection_once``
    (migration e4f5a6b7c8d9) backs it."""
    db.session.execute(
        sa.select(RandomTestSelection.id)
        .where(RandomTestSelection.id == selection_id)
        .with_for_update()
    )
    answered = db.session.scalar(
        sa.select(DrugTest.id)
        .where(DrugTest.selection_id == selection_id, DrugTest.entered_in_error_at.is_(None))
        .limit(1)
    )
    if answered is not None:
        raise DomainError(SELECTION_USED_MESSAGE, field="collected_on")


def _clean_name(value: str | None) -> str:
    return " ".join((value or "").split())


def record_results(
    test: DrugTest, rows: Sequence[ResultRow], *, actor: User
) -> list[DrugTestResult]:
    """Add results to ``test``: one row per analyte and method, entered by ``actor``.

    A definitive result may follow a presumptive one for the same analyte and supersedes
    it; a presumptive one never follows a definitive one. Rows are checked in full before
    anything is written. Raises ``DomainError`` naming the row's field
    (``rows-<i>-result`` / ``rows-<i>-other_name``) for: an analyte twice in the form, an
    analyte and method already recorded (the unique constraint
    ``uq_drug_test_result_test_analyte_method`` backs it against a race), an ``other``
    row without a name; and, on top of the form, for a test or patient entered in error,
    an actor who may not record, or no row at all. Audited as ``create`` of
    ``drug_test_result`` with the number of rows (never a result)."""
    patient = test.patient
    _may_record(actor, patient)
    common.refuse_if_entered_in_error(patient)
    _lock(test)  # a colleague's results or error mark committed since the page was read
    if test.entered_in_error_at is not None:
        raise DomainError(TEST_IN_ERROR_MESSAGE)
    recorded = {(str(r.analyte), r.other_name.casefold(), str(r.method)) for r in test.results}
    # An "other" substance keeps the spelling it was first entered with ("Kratom" and
    # " kratom " are one analyte: the definitive result must supersede the presumptive).
    spelling = {r.other_name.casefold(): r.other_name for r in test.results if r.other_name}
    seen: set[tuple[str, str, str]] = set()
    checked: list[tuple[Analyte, str, ResultValue, ResultMethod]] = []
    for index, row in enumerate(rows):
        field = f"rows-{index}-"
        analyte = _enum(Analyte, row.analyte, field=field + "result", message="Unknown analyte.")
        result = _enum(
            ResultValue, row.result, field=field + "result", message="Choose the result."
        )
        method = _enum(
            ResultMethod, row.method, field=field + "method", message="Choose the method."
        )
        name = _clean_name(row.other_name) if analyte is Analyte.OTHER else ""
        if analyte is Analyte.OTHER:
            if not name:
                raise DomainError(OTHER_NAME_MESSAGE, field=field + "other_name")
            if len(name) > OTHER_ANALYTE_MAX or has_control_characters(name):
                raise DomainError(
                    f"Up to {OTHER_ANALYTE_MAX} characters.", field=field + "other_name"
                )
        name = spelling.setdefault(name.casefold(), name) if name else name
        label = name if analyte is Analyte.OTHER else analyte.label
        key = (analyte.value, name.casefold(), method.value)
        method_word = "presumptive" if method is ResultMethod.PRESUMPTIVE else "definitive"
        if key in seen:
            raise DomainError(
                TWICE_MESSAGE.format(label=label, method=method_word), field=field + "result"
            )
        if key in recorded:
            raise DomainError(
                RECORDED_MESSAGE.format(label=label, method=method_word), field=field + "result"
            )
        definitive = (analyte.value, name.casefold(), ResultMethod.DEFINITIVE.value)
        if method is ResultMethod.PRESUMPTIVE and (definitive in recorded or definitive in seen):
            raise DomainError(AFTER_DEFINITIVE_MESSAGE.format(label=label), field=field + "result")
        seen.add(key)
        checked.append((analyte, name, result, method))
    if not checked:
        raise DomainError(NO_RESULTS_MESSAGE)
    now = utcnow()
    added = [
        DrugTestResult(
            test_id=test.id,
            analyte=analyte,
            other_name=name,
            result=result,
            method=method,
            entered_by_id=actor.id,
            entered_at=now,
        )
        for analyte, name, result, method in checked
    ]
    db.session.add_all(added)
    db.session.flush()
    db.session.expire(test, ["results"])
    _audit(test, AuditAction.CREATE, actor, entity_type="drug_test_result", results=len(added))
    return added


def mark_entered_in_error(
    test: DrugTest, *, actor: User, reason: str | None, now: dt.datetime | None = None
) -> DrugTest:
    """Mark a test entered in error with a reason (DOMAIN.md: clinical rows are never
    deleted). Written once: the service refuses a second mark and the trigger
    ``drug_test_in_error_once`` refuses any change to it. Who: a clinician of the test's
    site. The test and its results stay; pages show it struck through, and it no longer
    counts (effective results, findings, positives, the 8-a-year count). Raises
    ``DomainError`` (field ``reason``). Audited as ``update`` (never the reason)."""
    _may_record(actor, test.patient)
    _lock(test)
    if test.entered_in_error_at is not None:
        raise DomainError(ALREADY_IN_ERROR_MESSAGE)
    text = (reason or "").strip()
    if not text or len(text) > REASON_MAX:
        raise DomainError(REASON_MESSAGE, field="reason")
    if has_control_characters(text, multi_line=True):
        raise DomainError(CONTROL_CHARACTER_MESSAGE, field="reason")
    test.entered_in_error_at = now or utcnow()
    test.entered_in_error_by_id = actor.id
    test.entered_in_error_reason = text
    db.session.flush()
    _audit(test, AuditAction.UPDATE, actor, entered_in_error=True)
    return test


def _lock(test: DrugTest) -> None:
    """Read the test and its results again, the test's row locked (PostgreSQL; SQLite
    writes one at a time): results entered or an error mark made by a colleague since
    the page loaded them are seen, and the two of us are serialized."""
    db.session.refresh(test, with_for_update=True)
    db.session.expire(test, ["results"])


def _audit(
    test: DrugTest, action: AuditAction, actor: User, *, entity_type: str = "drug_test", **details
) -> None:
    record(
        action,
        actor=actor,
        entity_type=entity_type,
        entity_id=test.id,
        patient_id=test.patient_id,
        site_id=test.site_id,
        details=details,
    )


# Recording here; reading (re-exported from drug_test_reading, so callers use one module).
__all__ = [
    "CHART_TESTS",
    "HISTORY_PAGE_SIZE",
    "OWN_ANALYTE",
    "PANEL",
    "CollectedLocal",
    "Effective",
    "Finding",
    "HistoryPage",
    "Positive",
    "ResultRow",
    "collection_instant",
    "effective_results",
    "findings",
    "first_admission",
    "mark_entered_in_error",
    "own_analytes",
    "record_results",
    "record_test",
    "test_for",
    "test_history",
    "unexpected_positives",
]
