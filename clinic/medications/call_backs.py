"""Random call-backs of take-home bottles: who is due one, starting one (the patient must
bring every remaining bottle within 24 hours) and recording its outcome once.

Rules (DOMAIN.md "Take-home bottles"; issue 13; 42 CFR 8.12(i) diversion control):

- At least **two call-backs a year** for patients with **3 or more take-home days**: a
  dispensing of 3 or more bottles (not reversed) in the last 12 months, or an approved
  decision in force allowing 3 or more days (a run of 3+ days, or a weekly schedule of 3+
  weekdays). The patient must also be in treatment (an enrollment not discharged).
- Pro-rating: the call-backs required by now are ``ceil(2 * days / 365)`` where ``days``
  is the time since the patient's take-homes started (the first dispensing or the start
  of the first approved decision, whichever is earlier), at most 2. So a patient is due
  one call-back from the first day of take-homes until it is done, and a second after
  half a year. Call-backs counted: those called in the last 365 days (an open one counts:
  it is under way).
- A call-back expects the bottles in the patient's hands when called (take-on after
  today, not reversed); its outcome is recorded once (trigger ``call_back_outcome_once``):
  a count below that, a tampered bottle or no show within 24 hours is a finding that opens
  a ``DiversionIncident`` (source ``call_back``).

The worklist is one SQL statement whatever the number of patients. Dates are site-local
clinical days. Services check, write, record their audit event and flush; the caller
commits.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications.bottle_returns import open_incident
from clinic.medications.dose_day import not_reversed
from clinic.medications.models import DoseEntry, DoseKind
from clinic.medications.take_home_bottles import bottles_in_hands
from clinic.medications.take_home_models import (
    CallBack,
    CallBackOutcome,
    IncidentSource,
    ScheduleKind,
    TakeHomeDecision,
    TakeHomeDispensing,
)
from clinic.medications.take_home_rules import in_force_clause
from clinic.patients.models import Enrollment, Patient
from clinic.security import Permission
from clinic.sites.time import site_today

CALL_BACKS_A_YEAR = 2
MIN_TAKE_HOME_DAYS = 3
WINDOW_DAYS = 365
DUE_WITHIN = dt.timedelta(hours=24)
NOT_ALLOWED_MESSAGE = "Only a clinician who records take-home decisions records call-backs."
NO_BOTTLES_MESSAGE = "The patient has no take-home bottles in hand: there is nothing to count."
ALREADY_OPEN_MESSAGE = (
    "A call-back is already open for this patient: record its outcome before starting another."
)
ALREADY_RECORDED_MESSAGE = "The outcome of this call-back is already recorded."
CHOOSE_OUTCOME_MESSAGE = "Choose the outcome."
COUNT_NEEDED_MESSAGE = "Enter the number of bottles the patient brought."
NO_COUNT_FOR_NO_SHOW_MESSAGE = "The patient did not come: leave the count empty."
COUNT_ABOVE_MESSAGE = "More bottles than the patient had ({expected}): check the count."
COUNT_SHORT_MESSAGE = "Fewer bottles than expected ({expected}): record it as a short count."
COUNT_NOT_SHORT_MESSAGE = "A short count is below the bottles expected ({expected})."
NOTE_NEEDED_MESSAGE = "Describe the finding: it opens a diversion incident."


def _window_start(today: dt.date) -> dt.date:
    return today - dt.timedelta(days=WINDOW_DAYS)


def required_by_now(started_on: dt.date | None, today: dt.date) -> int:
    """Call-backs required in the last 12 months for take-homes started on
    ``started_on``: 2, pro-rated as ``ceil(2 * days / 365)`` during the first year."""
    if started_on is None or started_on >= today:
        return 0
    days = min((today - started_on).days, WINDOW_DAYS)
    return min(CALL_BACKS_A_YEAR, math.ceil(CALL_BACKS_A_YEAR * days / WINDOW_DAYS))


@dataclass
class DueRow:
    patient: Patient
    started_on: dt.date
    done: int  # call-backs in the last 12 months (an open one included)
    required: int
    open_call_back_id: int | None


def _eligible_patient_ids(today: dt.date) -> sa.CompoundSelect:
    big_dispensings = (
        sa.select(DoseEntry.patient_id)
        .where(
            DoseEntry.kind == DoseKind.TAKE_HOME,
            DoseEntry.dispensed_on > _window_start(today),
            not_reversed(),
        )
        .group_by(DoseEntry.patient_id, DoseEntry.dispensing_id)
        .having(sa.func.count(DoseEntry.id) >= MIN_TAKE_HOME_DAYS)
    )
    big_decisions = sa.select(TakeHomeDecision.patient_id).where(
        in_force_clause(today),
        sa.or_(
            sa.and_(
                TakeHomeDecision.schedule_kind == ScheduleKind.DAYS,
                TakeHomeDecision.days >= MIN_TAKE_HOME_DAYS,
            ),
            sa.and_(
                TakeHomeDecision.schedule_kind == ScheduleKind.WEEKLY,
                sa.func.length(TakeHomeDecision.weekdays) >= MIN_TAKE_HOME_DAYS,
            ),
        ),
    )
    return sa.union(big_dispensings, big_decisions)


def call_backs_due(site_ids: set[int] | None, today: dt.date) -> list[DueRow]:
    """Patients of ``site_ids`` (None: every site) due a call-back on ``today``: with 3 or
    more take-home days and fewer call-backs in the last 12 months than required (module
    docstring), by name. One SQL statement whatever the number of patients."""
    first_dispensed = (
        sa.select(sa.func.min(TakeHomeDispensing.dispensed_on))
        .where(TakeHomeDispensing.patient_id == Patient.id)
        .scalar_subquery()
    )
    first_decision = (
        sa.select(sa.func.min(TakeHomeDecision.start_on))
        .where(TakeHomeDecision.patient_id == Patient.id, TakeHomeDecision.approved_at.is_not(None))
        .scalar_subquery()
    )
    done = (
        sa.select(sa.func.count(CallBack.id))
        .where(CallBack.patient_id == Patient.id, CallBack.called_on > _window_start(today))
        .scalar_subquery()
    )
    open_id = (
        sa.select(sa.func.min(CallBack.id))
        .where(CallBack.patient_id == Patient.id, CallBack.outcome.is_(None))
        .scalar_subquery()
    )
    in_treatment = sa.exists().where(
        Enrollment.patient_id == Patient.id,
        Enrollment.admitted_on <= today,
        sa.or_(Enrollment.discharged_on.is_(None), Enrollment.discharged_on > today),
    )
    query = (
        sa.select(Patient, first_dispensed, first_decision, done, open_id)
        .where(
            Patient.id.in_(_eligible_patient_ids(today)),
            Patient.entered_in_error_at.is_(None),
            in_treatment,
            done < CALL_BACKS_A_YEAR,
        )
        .order_by(Patient.last_name, Patient.first_name, Patient.id)
    )
    if site_ids is not None:
        query = query.where(Patient.site_id.in_(site_ids))
    rows = []
    for patient, dispensed, decided, count, open_call_back in db.session.execute(query):
        started = min(d for d in (dispensed, decided) if d is not None)
        required = required_by_now(started, today)
        if count < required:
            rows.append(DueRow(patient, started, count, required, open_call_back))
    return rows


def open_call_backs(site_ids: set[int] | None) -> list[CallBack]:
    """Call-backs awaiting their outcome, oldest first (one statement)."""
    query = (
        sa.select(CallBack)
        .where(CallBack.outcome.is_(None))
        .options(joinedload(CallBack.patient).joinedload(Patient.site))
        .order_by(CallBack.called_at, CallBack.id)
    )
    if site_ids is not None:
        query = query.where(CallBack.site_id.in_(site_ids))
    return list(db.session.scalars(query))


def patient_call_backs(patient_id: int) -> list[CallBack]:
    return list(
        db.session.scalars(
            sa.select(CallBack)
            .where(CallBack.patient_id == patient_id)
            .order_by(CallBack.called_at.desc(), CallBack.id.desc())
        )
    )


def start_call_back(patient: Patient, *, actor: User, now: dt.datetime | None = None) -> CallBack:
    """Record that the patient was called back now: every remaining bottle to be brought
    by ``due_by`` (24 hours later); ``bottles_expected`` = the bottles in the patient's
    hands (take-on after today, not reversed). Raises ``DomainError``: not
    ``TAKE_HOMES_DECIDE``; no bottle in hand; a call-back already open
    (``uq_call_back_open_patient`` backs it against a race)."""
    if not actor.can(Permission.TAKE_HOMES_DECIDE):
        raise DomainError(NOT_ALLOWED_MESSAGE)
    now = now or utcnow()
    today = site_today(patient.site, now)
    expected = len(bottles_in_hands(patient.id, today))
    if expected == 0:
        raise DomainError(NO_BOTTLES_MESSAGE)
    if db.session.scalar(
        sa.select(CallBack.id).where(CallBack.patient_id == patient.id, CallBack.outcome.is_(None))
    ):
        raise DomainError(ALREADY_OPEN_MESSAGE)
    call_back = CallBack(
        patient_id=patient.id,
        site_id=patient.site_id,
        called_at=now,
        called_on=today,
        due_by=now + DUE_WITHIN,
        called_by_id=actor.id,
        bottles_expected=expected,
    )
    db.session.add(call_back)
    db.session.flush()
    record(
        AuditAction.CREATE,
        actor=actor,
        entity_type="call_back",
        entity_id=call_back.id,
        patient_id=patient.id,
        site_id=patient.site_id,
        details={"bottles_expected": expected},
    )
    return call_back


def _check_count(outcome: CallBackOutcome, counted: int | None, expected: int) -> None:
    if outcome is CallBackOutcome.NO_SHOW:
        if counted is not None:
            raise DomainError(NO_COUNT_FOR_NO_SHOW_MESSAGE, field="bottles_counted")
        return
    if counted is None:
        raise DomainError(COUNT_NEEDED_MESSAGE, field="bottles_counted")
    if counted < 0 or counted > expected:
        raise DomainError(COUNT_ABOVE_MESSAGE.format(expected=expected), field="bottles_counted")
    if outcome is CallBackOutcome.COMPLETE and counted < expected:
        raise DomainError(COUNT_SHORT_MESSAGE.format(expected=expected), field="bottles_counted")
    if outcome is CallBackOutcome.SHORT and counted >= expected:
        raise DomainError(
            COUNT_NOT_SHORT_MESSAGE.format(expected=expected), field="bottles_counted"
        )


def record_outcome(
    call_back: CallBack,
    *,
    actor: User,
    bottles_counted: int | None,
    outcome: CallBackOutcome | str | None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> CallBack:
    """Record the call-back's outcome, once: ``complete`` (every bottle expected brought,
    intact), ``short`` (fewer), ``tampered`` or ``no_show`` (no count). A finding needs
    ``note`` and opens a ``DiversionIncident`` (source ``call_back``) on the chart.
    Raises ``DomainError``: not ``TAKE_HOMES_DECIDE``; already recorded (the row is locked
    first on PostgreSQL; the trigger ``call_back_outcome_once`` backs it); an outcome
    unknown; a count missing, above the bottles expected, or not matching the outcome; a
    finding without a note."""
    if not actor.can(Permission.TAKE_HOMES_DECIDE):
        raise DomainError(NOT_ALLOWED_MESSAGE)
    db.session.refresh(call_back, with_for_update=True)
    if call_back.outcome is not None:
        raise DomainError(ALREADY_RECORDED_MESSAGE)
    try:
        chosen = CallBackOutcome(outcome or "")
    except ValueError:
        raise DomainError(CHOOSE_OUTCOME_MESSAGE, field="outcome") from None
    _check_count(chosen, bottles_counted, call_back.bottles_expected)
    note = (note or "").strip() or None
    now = now or utcnow()
    patient = call_back.patient
    if chosen.finding:
        if note is None:
            raise DomainError(NOTE_NEEDED_MESSAGE, field="note")
        counted = "no count" if bottles_counted is None else f"{bottles_counted}"
        incident = open_incident(
            patient,
            source=IncidentSource.CALL_BACK,
            description=(
                f"{chosen.label}; {counted} of {call_back.bottles_expected} bottles. {note}"
            ),
            actor=actor,
            now=now,
        )
        call_back.incident_id = incident.id
    call_back.outcome = chosen
    call_back.bottles_counted = bottles_counted
    call_back.note = note
    call_back.outcome_at = now
    call_back.outcome_by_id = actor.id
    db.session.flush()
    record(
        AuditAction.UPDATE,
        actor=actor,
        entity_type="call_back",
        entity_id=call_back.id,
        patient_id=patient.id,
        site_id=call_back.site_id,
        details={"outcome": chosen.value},
    )
    return call_back
