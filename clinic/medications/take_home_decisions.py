"""Take-home decisions, written: recording one against the six criteria and the cap,
approving or declining it (a prescriber, once), ending it (once) and reviewing it.

Rules (DOMAIN.md "Take-home methadone (42 CFR 8.12(i))"; issue 13):

- A decision is for one active methadone or buprenorphine order (sublingual or oral: never
  an injection) within the patient's active enrollment, from a start day not before the
  admission and not in the past, for a run of 1-28 days or a weekly schedule (not every
  day of the week: that is a run of days).
- All six criteria of 42 CFR 8.12(i)(2) are answered, each with a note, and each must be
  met: a take-home decision with a criterion not met is not recorded (a decision the
  clinician does not support is no decision; the reason belongs in a note). A database
  trigger also refuses the approval of a decision with an unmet criterion.
- The supply is capped by time in treatment (``take_home_rules.cap_days``), clinic-closed
  days not counted: a request over the cap is refused with the reason and the cap that
  applied. Buprenorphine is not capped.
- A prescriber (``TAKE_HOMES_APPROVE``) recording it may approve it at once; otherwise it
  awaits a prescriber's approval or decline (once). An approved decision may be ended
  (once) or reviewed (continue or end), which takes it off the review list.

Services check, write, record their audit event (ids and kinds only, never notes) and
flush; the caller commits. Dates are site-local days (``clinic.sites.time.site_today``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications.models import Medication, MedicationOrder, OrderStatus, ProductForm
from clinic.medications.take_home_models import (
    CRITERIA,
    MAX_TAKE_HOME_DAYS,
    NOTE_MAX,
    REASON_MAX,
    ReviewOutcome,
    ScheduleKind,
    TakeHomeDecision,
    TakeHomeReview,
)
from clinic.medications.take_home_rules import (
    JOIN_MARGIN_DAYS,
    cap_band_label,
    cap_days,
    closed_days,
    counted_days,
    joined_stretch,
    run_days,
    treatment_day,
    weekly_counted_days,
    weekly_horizon,
    weekly_joined_stretches,
)
from clinic.patients.models import Enrollment, Patient
from clinic.security import Permission
from clinic.sites.time import site_today

TAKE_HOME_MEDICATIONS = {
    Medication.METHADONE: Medication.METHADONE,
    Medication.BUPRENORPHINE: Medication.BUPRENORPHINE,
    Medication.BUPRENORPHINE_NALOXONE: Medication.BUPRENORPHINE,
}
# A decision starts within this many days of today (a date typed years ahead is a typo).
START_WITHIN_DAYS = 366
NOT_A_CLINICIAN_MESSAGE = "Only a clinician records or reviews take-home decisions."
NOT_A_PRESCRIBER_MESSAGE = "Only a prescriber approves or declines a take-home decision."
CAP_MESSAGE = (
    "Day {day} in treatment — cap: {cap} days (42 CFR 8.12(i), {band}); {asked} take-home "
    "days asked (clinic-closed days not counted)."
)

JOINED_MESSAGE = (
    "Day {day} in treatment — cap: {cap} days (42 CFR 8.12(i), {band}); with the take-home "
    "decision from {start:%d %b %Y}, {asked} take-home days in a row (clinic-closed days not "
    "counted)."
)


@dataclass(frozen=True)
class Criterion:
    met: bool
    note: str | None


def _require(actor: User, permission: Permission, message: str) -> None:
    if not actor.can(permission):
        raise DomainError(message)


def _text(value: str | None, *, field: str, required: str, limit: int = NOTE_MAX) -> str:
    text = (value or "").strip()
    if not text:
        raise DomainError(required, field=field)
    if "\x00" in text:
        raise DomainError("Remove the control characters.", field=field)
    if len(text) > limit:
        raise DomainError(f"At most {limit} characters.", field=field)
    return text


def _whole(value: object, *, field: str, message: str) -> int:
    if isinstance(value, bool):
        raise DomainError(message, field=field)
    if isinstance(value, int):
        return value
    text = str(value or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        raise DomainError(message, field=field)
    return int(text)


def _order_for(patient: Patient, order: MedicationOrder | None) -> MedicationOrder:
    if order is None or order.patient_id != patient.id:
        raise DomainError("Choose the order the take-home doses are for.", field="order_id")
    if order.status != OrderStatus.ACTIVE:
        raise DomainError("This order is no longer active.", field="order_id")
    if order.medication not in TAKE_HOME_MEDICATIONS or order.product_form == ProductForm.INJECTION:
        raise DomainError(
            "Take-home doses are for a methadone or buprenorphine order (not an injection).",
            field="order_id",
        )
    return order


def take_home_orders(patient: Patient) -> list[MedicationOrder]:
    """The patient's active orders a take-home decision may be for (methadone,
    buprenorphine; not injections), by start. One statement."""
    return list(
        db.session.scalars(
            sa.select(MedicationOrder)
            .where(
                MedicationOrder.patient_id == patient.id,
                MedicationOrder.status == OrderStatus.ACTIVE,
                MedicationOrder.medication.in_(list(TAKE_HOME_MEDICATIONS)),
                MedicationOrder.product_form != ProductForm.INJECTION,
            )
            .order_by(MedicationOrder.start_on, MedicationOrder.id)
        )
    )


def _weekdays(value: str | None) -> str:
    digits = sorted(set((value or "").replace(",", "").replace(" ", "")))
    if not digits or any(d not in "1234567" for d in digits):
        raise DomainError("Choose the days of the week.", field="weekdays")
    if len(digits) == 7:
        raise DomainError(
            "A weekly schedule of every day is a run of days: record a run of days instead.",
            field="weekdays",
        )
    return "".join(digits)


def _criteria(criteria: Mapping[str, Criterion]) -> dict[str, object]:
    values: dict[str, object] = {}
    for name, label in CRITERIA:
        answer = criteria.get(name)
        note = _text(
            answer.note if answer else None,
            field=f"{name}_note",
            required=f"Write a note for “{label}”.",
        )
        if answer is None or answer.met is not True:
            raise DomainError(
                f"“{label}” is not met: take-home doses cannot be approved (42 CFR 8.12(i)(2)).",
                field=f"{name}_met",
            )
        values[f"{name}_met"] = True
        values[f"{name}_note"] = note
    return values


def record_decision(
    patient: Patient,
    *,
    actor: User,
    order: MedicationOrder | None,
    schedule_kind: str,
    start_on: dt.date | None,
    days: object = None,
    weekdays: str | None = None,
    end_on: dt.date | None = None,
    criteria: Mapping[str, Criterion],
    storage_education_on: dt.date | None,
    approve: bool = False,
    now: dt.datetime | None = None,
) -> TakeHomeDecision:
    """Record a take-home decision (see the module docstring for the rules).

    ``schedule_kind``: "days" (``days``: 1-28 consecutive days from ``start_on``; ``end_on``
    is derived and a given one ignored) or "weekly" (``weekdays``: ISO digits, e.g. "67" for
    Saturday and Sunday, from ``start_on`` until ``end_on`` if given). ``criteria``: each
    name of ``CRITERIA`` → ``Criterion(met, note)``. ``approve``: approve at once (the
    actor must be a prescriber). Raises DomainError naming the field refused; a supply
    over the cap reads e.g. "Day 12 in treatment — cap: 7 days (42 CFR 8.12(i), days
    0-14); 10 take-home days asked (clinic-closed days not counted)."."""
    _require(actor, Permission.TAKE_HOMES_DECIDE, NOT_A_CLINICIAN_MESSAGE)
    if approve and not actor.can(Permission.TAKE_HOMES_APPROVE):
        raise DomainError(NOT_A_PRESCRIBER_MESSAGE, field="approve")
    if patient.entered_in_error_at is not None:
        raise DomainError("This record was entered in error.")
    order = _order_for(patient, order)
    enrollment = order.enrollment
    if enrollment.discharged_on is not None:
        raise DomainError("The patient's enrollment is discharged.", field="order_id")
    # Two clinicians recording touching decisions at once run one after the other, so the
    # second one's stretch sees the first decision (PostgreSQL row lock).
    db.session.execute(
        sa.select(Enrollment.id).where(Enrollment.id == enrollment.id).with_for_update()
    )
    now = now or utcnow()
    today = site_today(patient.site, now)
    try:
        kind = ScheduleKind(schedule_kind)
    except ValueError:
        raise DomainError(
            "Choose a run of days or a weekly schedule.", field="schedule_kind"
        ) from None
    if start_on is None:
        raise DomainError("Enter the first take-home day.", field="start_on")
    if start_on < enrollment.admitted_on:
        raise DomainError(
            f"The first take-home day is before the admission ({enrollment.admitted_on:%d %b %Y}).",
            field="start_on",
        )
    if start_on < today:
        raise DomainError("The first take-home day is in the past.", field="start_on")
    if start_on > today + dt.timedelta(days=START_WITHIN_DAYS):
        raise DomainError("The first take-home day is more than a year ahead.", field="start_on")
    if kind is ScheduleKind.DAYS:
        count = _whole(days, field="days", message="Enter the number of days (1-28).")
        if count < 1:
            raise DomainError("Enter at least 1 day.", field="days")
        if count > MAX_TAKE_HOME_DAYS:
            raise DomainError(
                f"At most {MAX_TAKE_HOME_DAYS} days (the federal ceiling, 42 CFR 8.12(i)(3)).",
                field="days",
            )
        weekday_digits, end_on = None, start_on + dt.timedelta(days=count - 1)
        cap_field = "days"
    else:
        count, weekday_digits = None, _weekdays(weekdays)
        if end_on is not None and end_on < start_on:
            raise DomainError("The last day is before the first.", field="end_on")
        cap_field = "weekdays"
    values = _criteria(criteria)
    if storage_education_on is None:
        raise DomainError(
            "Enter the day safe-storage education was given.", field="storage_education_on"
        )
    if storage_education_on > today:
        raise DomainError(
            "Safe-storage education cannot be in the future.", field="storage_education_on"
        )
    medication = TAKE_HOME_MEDICATIONS[order.medication]
    day_number = treatment_day(enrollment.admitted_on, start_on)
    cap = cap_days(enrollment.program, medication, day_number)
    site = patient.site
    margin = dt.timedelta(days=JOIN_MARGIN_DAYS)
    last_day = end_on if kind is ScheduleKind.DAYS else weekly_horizon(start_on, end_on)
    closed = closed_days(site, start_on - margin, last_day + margin)
    if kind is ScheduleKind.DAYS:
        counted = counted_days(run_days(start_on, count), closed)
    else:
        counted = weekly_counted_days(start_on, end_on, weekday_digits, closed)
    if cap is not None and counted > cap:
        raise DomainError(
            CAP_MESSAGE.format(
                day=day_number, cap=cap, band=cap_band_label(day_number), asked=counted
            ),
            field=cap_field,
        )
    stretches = []
    if cap is not None and kind is ScheduleKind.DAYS:
        stretches = [
            joined_stretch(patient.id, start_on, end_on, closed, enrollment_id=enrollment.id)
        ]
    elif cap is not None:
        stretches = weekly_joined_stretches(
            patient.id, start_on, end_on, weekday_digits, closed, enrollment_id=enrollment.id
        )
    for stretch in stretches:
        if stretch.joining is None:
            continue
        # The whole stretch is supplied at its first day's visit: that day's cap applies.
        first_day = treatment_day(
            enrollment.admitted_on, max(stretch.first, enrollment.admitted_on)
        )
        stretch_cap = cap_days(enrollment.program, medication, first_day)
        if stretch.counted > stretch_cap:
            raise DomainError(
                JOINED_MESSAGE.format(
                    day=first_day,
                    cap=stretch_cap,
                    band=cap_band_label(first_day),
                    start=stretch.joining.start_on,
                    asked=stretch.counted,
                ),
                field=cap_field,
            )
    decision = TakeHomeDecision(
        patient_id=patient.id,
        site_id=patient.site_id,
        enrollment_id=enrollment.id,
        order_id=order.id,
        medication=medication,
        schedule_kind=kind,
        start_on=start_on,
        end_on=end_on,
        days=count,
        weekdays=weekday_digits,
        treatment_day=day_number,
        cap_days=cap,
        counted_days=counted,
        storage_education_on=storage_education_on,
        recorded_by_id=actor.id,
        recorded_at=now,
        approved_by_id=actor.id if approve else None,
        approved_at=now if approve else None,
        **values,
    )
    db.session.add(decision)
    db.session.flush()
    _audit(
        decision, AuditAction.CREATE, actor, approved=approve, counted_days=counted, cap_days=cap
    )
    return decision


def _audit(decision: TakeHomeDecision, action: AuditAction, actor: User, **details) -> None:
    """Ids, kinds and numbers only: never the criteria's notes or reasons (free text)."""
    record(
        action,
        actor=actor,
        entity_type="take_home_decision",
        entity_id=decision.id,
        patient_id=decision.patient_id,
        site_id=decision.site_id,
        details={"medication": Medication(decision.medication).value, **details},
    )


def _locked(decision: TakeHomeDecision) -> TakeHomeDecision:
    """The decision re-read under a row lock (PostgreSQL): two prescribers acting at once
    run one after the other and the second sees the first's answer."""
    db.session.refresh(decision, with_for_update=True)
    return decision


def _pending(decision: TakeHomeDecision) -> None:
    if decision.approved_at is not None:
        raise DomainError("This decision is already approved.")
    if decision.declined_at is not None:
        raise DomainError("This decision was declined.")


def approve(decision: TakeHomeDecision, *, actor: User, now: dt.datetime | None = None) -> None:
    """A prescriber approves a decision awaiting approval (once). Refused if the enrollment
    was discharged, the order is no longer active or the decision's last day has passed."""
    _require(actor, Permission.TAKE_HOMES_APPROVE, NOT_A_PRESCRIBER_MESSAGE)
    _pending(_locked(decision))
    now = now or utcnow()
    if decision.enrollment.discharged_on is not None:
        raise DomainError("The patient's enrollment is discharged.")
    if decision.order.status != OrderStatus.ACTIVE:
        raise DomainError("The order this decision is for is no longer active.")
    if decision.end_on is not None and decision.end_on < site_today(decision.patient.site, now):
        raise DomainError("This decision's last day has passed: record a new one.")
    decision.approved_by_id = actor.id
    decision.approved_at = now
    db.session.flush()
    _audit(decision, AuditAction.UPDATE, actor, change="approved")


def decline(
    decision: TakeHomeDecision, *, actor: User, reason: str | None, now: dt.datetime | None = None
) -> None:
    """A prescriber declines a decision awaiting approval (once), with a reason."""
    _require(actor, Permission.TAKE_HOMES_APPROVE, NOT_A_PRESCRIBER_MESSAGE)
    text = _text(reason, field="reason", required="Say why it is declined.", limit=REASON_MAX)
    _pending(_locked(decision))
    decision.declined_by_id = actor.id
    decision.declined_at = now or utcnow()
    decision.declined_reason = text
    db.session.flush()
    _audit(decision, AuditAction.UPDATE, actor, change="declined")


def end_decision(
    decision: TakeHomeDecision,
    *,
    actor: User,
    reason: str | None,
    ended_on: dt.date | None,
    now: dt.datetime | None = None,
) -> None:
    """End an approved decision (once). ``ended_on``: the first day it no longer covers —
    today or later (bottles already given stay given), not after its last day."""
    _require(actor, Permission.TAKE_HOMES_DECIDE, NOT_A_CLINICIAN_MESSAGE)
    text = _text(reason, field="reason", required="Say why it ends.", limit=REASON_MAX)
    _locked(decision)
    if decision.approved_at is None:
        raise DomainError("Only an approved decision is ended (decline one awaiting approval).")
    if decision.ended_at is not None:
        raise DomainError("This decision has already ended.")
    now = now or utcnow()
    today = site_today(decision.patient.site, now)
    if ended_on is None:
        raise DomainError("Enter the first day it no longer covers.", field="ended_on")
    if ended_on < today:
        raise DomainError("A decision ends today or later.", field="ended_on")
    if decision.end_on is not None and ended_on > decision.end_on:
        raise DomainError("That is after the decision's last day.", field="ended_on")
    decision.ended_on = ended_on
    decision.ended_by_id = actor.id
    decision.ended_at = now
    decision.end_reason = text
    db.session.flush()
    _audit(decision, AuditAction.UPDATE, actor, change="ended")


def review_decision(
    decision: TakeHomeDecision,
    *,
    actor: User,
    outcome: str,
    note: str | None,
    now: dt.datetime | None = None,
) -> TakeHomeReview:
    """Review an approved decision in force: continue it (it leaves the review list until
    due again) or end it from today. The note is required."""
    _require(actor, Permission.TAKE_HOMES_DECIDE, NOT_A_CLINICIAN_MESSAGE)
    try:
        choice = ReviewOutcome(outcome)
    except ValueError:
        raise DomainError("Choose to continue or end the decision.", field="outcome") from None
    text = _text(note, field="note", required="Write the review's note.")
    _locked(decision)
    now = now or utcnow()
    today = site_today(decision.patient.site, now)
    if decision.approved_at is None or decision.ended_at is not None:
        raise DomainError("Only an approved decision in force is reviewed.")
    if decision.end_on is not None and decision.end_on < today:
        raise DomainError("This decision's last day has passed.")
    review = TakeHomeReview(
        decision_id=decision.id,
        reviewed_on=today,
        outcome=choice,
        note=text,
        reviewed_by_id=actor.id,
        reviewed_at=now,
    )
    db.session.add(review)
    db.session.flush()
    _audit(decision, AuditAction.UPDATE, actor, change="reviewed", outcome=choice.value)
    if choice is ReviewOutcome.END:
        end_decision(
            decision,
            actor=actor,
            reason=f"Ended at review: {text}"[:REASON_MAX],
            ended_on=today,
            now=now,
        )
    return review
