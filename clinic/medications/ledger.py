"""The dose ledger, recorded (21 CFR 1304.24): observed doses, held days, reversals,
injections and the day's warning-flag acknowledgements, each ledger row in its slot of the
patient's day; and the refusals of a dose (``dose_refusal``).

Rules (DOMAIN.md, "Medication for opioid use disorder"; issue 10):

- 21 CFR 1304.24(a): each dose is a ledger row with the substance, strength, dosage form,
  date dispensed, patient, amount, and the dispenser — the signed-in user, never typed.
  The ledger is append-only (database triggers); a mistake is corrected by a reversal
  row with a reason (``record_reversal``), never an edit.
- Only a practitioner, nurse or pharmacist dispenses: ``Permission.DOSE_RECORD`` (a
  clinician with the "may dispense" flag).
- Hard refusals before a dose: no active order; enrollment discharged; a stop-dose hold in
  force; a warning flag not acknowledged today; 3 or more missed days awaiting a clinical
  review (42 CFR 8.12; ``clinic.medications.missed``); already dosed today (a split order:
  only the remaining portion); an amount <= 0, above the order, or differing from it
  without a reason.

Dates are clinical days in the site's time zone (``clinic.sites.time.site_today``).
Every function checks, writes, records its audit event and flushes; the caller commits.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import amounts
from clinic.medications.dose_day import (
    GIVEN_KINDS,
    DoseDue,
    daily_order,
    given_on,
    hold_in_force,
    injection_order,
    not_reversed,
    reversed_dose_ids,
    unacknowledged_warnings,
)
from clinic.medications.missed import MissedDays, patient_missed_days, review_needed_message
from clinic.medications.models import (
    DOSE_CEILING_MG,
    DoseEntry,
    DoseKind,
    FlagAcknowledgement,
    Medication,
    MedicationOrder,
    PatientFlag,
    format_mg,
)
from clinic.patients.models import Enrollment, Patient
from clinic.security import Permission
from clinic.sites.time import site_today

INJECTION_SITES = (
    ("abdomen_left", "Abdomen, left"),
    ("abdomen_right", "Abdomen, right"),
    ("gluteal_left", "Gluteal, left"),
    ("gluteal_right", "Gluteal, right"),
    ("thigh_left", "Thigh, left"),
    ("thigh_right", "Thigh, right"),
    ("arm_left", "Upper arm, left"),
    ("arm_right", "Upper arm, right"),
)
INJECTION_SITE_LABELS = dict(INJECTION_SITES)
NOT_A_DISPENSER_MESSAGE = (
    "Only a practitioner, nurse or pharmacist whose account may dispense records doses."
)
NO_ORDER_MESSAGE = "No active daily order: there is no dose to give today."
NO_INJECTION_ORDER_MESSAGE = "No active injection order: there is no injection to give."
ON_HOLD_MESSAGE = "On a stop-dose hold: no dose by any route until a clinician lifts it."
DISCHARGED_MESSAGE = "The enrollment is discharged: no dose may be given."
ENTERED_IN_ERROR_MESSAGE = "This record was entered in error: no dose may be given."
UNACKNOWLEDGED_MESSAGE = "Acknowledge today's warning flag before dosing."
ALREADY_DOSED_MESSAGE = "Already dosed today."
BOTH_PORTIONS_MESSAGE = "Both portions of today's split dose are already given."
ALREADY_INJECTED_MESSAGE = "The injection was already given today."
AMOUNT_POSITIVE_MESSAGE = "The amount must be more than 0 mg."
AMOUNT_TOO_LARGE_MESSAGE = (
    f"An amount above {format_mg(DOSE_CEILING_MG)} mg is not possible: check the amount."
)
AMOUNT_DIFFERS_MESSAGE = "The amount differs from the order ({expected} mg): give a reason."
RACE_MESSAGE = (
    "Already dosed: another dose for this patient was recorded at the same moment. "
    "Check today's doses before giving more."
)
REVERSAL_REASON_MESSAGE = "Say why this dose is reversed."
ALREADY_REVERSED_MESSAGE = "This dose was already reversed."
NOT_REVERSIBLE_MESSAGE = (
    "Only a dose given (observed or injected) or a take-home bottle can be reversed."
)
TAKE_HOME_TODAY_MESSAGE = (
    "The patient has a take-home bottle for today (dispensed {day}): today's dose is in "
    "that bottle, not given again."
)
BOTTLE_OUT_MESSAGE = (
    "This bottle's take-on day has come: it is checked at the returns (returned, not "
    "returned or tampered), not reversed."
)
# Rows a reversal may correct: doses given and take-home bottles (issue 13).
REVERSIBLE_KINDS = (*GIVEN_KINDS, DoseKind.TAKE_HOME)
HELD_REASON_MESSAGE = "Say why today's dose is held."


def audit_created(entry_type: str, entry_id: int, patient: Patient, actor: User, **details) -> None:
    record(
        AuditAction.CREATE,
        actor=actor,
        entity_type=entry_type,
        entity_id=entry_id,
        patient_id=patient.id,
        site_id=patient.site_id,
        details=details or None,
    )


def _require_dispenser(actor: User) -> None:
    if not actor.can(Permission.DOSE_RECORD):
        raise DomainError(NOT_A_DISPENSER_MESSAGE)


def parse_mg(value: object, *, field_name: str = "amount_mg") -> Decimal:
    """An amount typed in mg: the package's one parser (``amounts.parse_mg``: ASCII
    digits and one decimal point only — "1e2", "1_0", Arabic-Indic digits and "1,5" are
    refused, not read as 100, 10, 50 and 15 mg), above 0, at most ``DOSE_CEILING_MG``, to
    0.01 mg."""
    return amounts.parse_mg(value, field=field_name, label="amount")


def clean_text(text: str | None) -> str | None:
    text = (text or "").strip()
    return text or None


def _next_slot(patient_id: int, day: dt.date) -> int:
    """The next dose slot of the patient's day: one more than the highest taken (a
    reversed dose keeps its slot, so the next dose moves on to a new one)."""
    highest = db.session.scalar(
        sa.select(sa.func.max(DoseEntry.slot)).where(
            DoseEntry.patient_id == patient_id, DoseEntry.dispensed_on == day
        )
    )
    return (highest or 0) + 1


def _can_dose_refusal(patient: Patient, order: MedicationOrder, day: dt.date) -> str | None:
    if patient.entered_in_error_at is not None:
        return ENTERED_IN_ERROR_MESSAGE
    enrollment: Enrollment = order.enrollment
    if enrollment.discharged_on is not None and enrollment.discharged_on <= day:
        return DISCHARGED_MESSAGE
    if hold_in_force(patient.id, day) is not None:
        return ON_HOLD_MESSAGE
    if unacknowledged_warnings(patient.id, day):
        return UNACKNOWLEDGED_MESSAGE
    return None


def _check_can_dose(patient: Patient, order: MedicationOrder, day: dt.date) -> None:
    refusal = _can_dose_refusal(patient, order, day)
    if refusal is not None:
        raise DomainError(refusal)


def dose_refusal(
    patient: Patient, day: dt.date, due: DoseDue | None, missed: MissedDays | None
) -> str | None:
    """Why no observed dose may be recorded on ``day``, whatever is typed — the refusals
    known before the form is sent, shown by the dose page in place of the form and raised
    by ``record_dose``: the record entered in error, no daily order in force, a discharged
    enrollment, a hold in force, a warning not acknowledged today, missed days awaiting a
    review (not between a split's portions), the day's dose given in full. None: dose."""
    if patient.entered_in_error_at is not None:
        return ENTERED_IN_ERROR_MESSAGE
    if due is None:
        return NO_ORDER_MESSAGE
    refusal = _can_dose_refusal(patient, due.order, day)
    if refusal is not None:
        return refusal
    if not due.given and missed is not None and missed.needs_review:
        return review_needed_message(missed)
    if due.done:
        return BOTH_PORTIONS_MESSAGE if due.split else ALREADY_DOSED_MESSAGE
    return None


def _ledger_row(
    order: MedicationOrder,
    patient: Patient,
    *,
    kind: DoseKind,
    actor: User,
    day: dt.date,
    now: dt.datetime,
    **values,
) -> DoseEntry:
    return DoseEntry(
        kind=kind,
        patient_id=patient.id,
        site_id=patient.site_id,
        order_id=order.id,
        medication=order.medication,
        substance=Medication(order.medication).substance,
        strength=order.strength,
        dosage_form=order.product_form,
        dispensed_on=day,
        dispensed_at=now,
        dispenser_id=actor.id,
        **values,
    )


def _refuse_if_bottle_for(patient: Patient, day: dt.date) -> None:
    """A take-home bottle (not reversed) for ``day`` holds the day's dose: no observed dose
    on top of it (issue 13)."""
    dispensed_on = db.session.scalar(
        sa.select(DoseEntry.dispensed_on)
        .where(
            DoseEntry.patient_id == patient.id,
            DoseEntry.kind == DoseKind.TAKE_HOME,
            DoseEntry.take_on == day,
            not_reversed(),
        )
        .limit(1)
    )
    if dispensed_on is not None:
        raise DomainError(TAKE_HOME_TODAY_MESSAGE.format(day=dispensed_on.strftime("%d %b %Y")))


def record_dose(
    patient: Patient,
    *,
    actor: User,
    amount_mg: object,
    reason: str | None = None,
    station: str | None = None,
    seen_given: int | None = None,
    now: dt.datetime | None = None,
) -> DoseEntry:
    """Record an observed dose of the patient's daily (or split) order, given now by
    ``actor`` (the dispenser, 21 CFR 1304.24(a)). Refuses, each with its reason: a user who
    may not dispense; an amount not above 0 or above the ceiling; no active order; a
    discharged enrollment; a hold in force; an unacknowledged warning flag; 3 or more
    consecutive missed days not yet reviewed by a clinician (``review_needed_message``); a
    dose already given today (split: both portions, or more than the remaining portion); an
    amount above the order or differing from it without a reason.

    Two nurses recording at once: the order row is locked (PostgreSQL) and each dose takes
    the next slot of the day (``uq_dose_entry_patient_day_slot``), so only one saves — the
    view maps the constraint to ``RACE_MESSAGE``. ``seen_given``: how many doses of the
    day the form showed when it was opened; more now means another nurse dosed meanwhile
    (``RACE_MESSAGE`` on the amount, rather than a dose counted as the next portion)."""
    _require_dispenser(actor)
    amount = parse_mg(amount_mg)
    now = now or utcnow()
    day = site_today(patient.site, now)
    order = daily_order(patient, day, lock=True)
    _refuse_if_bottle_for(patient, day)
    due = DoseDue(order, given_on(patient.id, day)) if order is not None else None
    if due is not None and seen_given is not None and len(due.given) > seen_given:
        # The form was opened before another dose of the day was saved.
        raise DomainError(RACE_MESSAGE, field="amount_mg")
    # Missed days matter before the day's first dose only (not a split's second portion).
    missed = patient_missed_days(patient, order, day) if due and not due.given else None
    refusal = dose_refusal(patient, day, due, missed)
    if refusal is not None:
        raise DomainError(refusal)
    assert due is not None and order is not None
    if amount > due.remaining_mg:
        if due.split and due.given:
            raise DomainError(
                f"Only the remaining {format_mg(due.remaining_mg)} mg of today's split dose "
                "may be given.",
                field="amount_mg",
            )
        raise DomainError(
            f"Above the ordered {format_mg(due.remaining_mg)} mg: a higher dose needs a new order.",
            field="amount_mg",
        )
    reason = clean_text(reason)
    if amount != due.expected_mg and reason is None:
        raise DomainError(
            AMOUNT_DIFFERS_MESSAGE.format(expected=format_mg(due.expected_mg)), field="reason"
        )
    entry = _ledger_row(
        order,
        patient,
        kind=DoseKind.OBSERVED,
        actor=actor,
        day=day,
        now=now,
        amount_mg=amount,
        reason=reason,
        station=clean_text(station),
        slot=_next_slot(patient.id, day),
    )
    db.session.add(entry)
    db.session.flush()
    audit_created(
        "dose_entry",
        entry.id,
        patient,
        actor,
        kind=entry.kind.value,
        portion=due.next_portion,
        differs=amount != due.expected_mg,
    )
    return entry


def record_held(
    patient: Patient, *, actor: User, reason: str | None, now: dt.datetime | None = None
) -> DoseEntry:
    """Record that today's dose was held (not given) by the dispenser, with the reason:
    e.g. the patient appears intoxicated, or awaits a missed-dose review. A held day is a
    ledger row without an amount."""
    _require_dispenser(actor)
    reason = clean_text(reason)
    if reason is None:
        raise DomainError(HELD_REASON_MESSAGE, field="reason")
    now = now or utcnow()
    day = site_today(patient.site, now)
    order = daily_order(patient, day)
    if order is None:
        raise DomainError(NO_ORDER_MESSAGE)
    entry = _ledger_row(
        order, patient, kind=DoseKind.HELD, actor=actor, day=day, now=now, reason=reason
    )
    db.session.add(entry)
    db.session.flush()
    audit_created("dose_entry", entry.id, patient, actor, kind=entry.kind.value)
    return entry


def reversible_doses(patient: Patient, *, days: int = 7) -> list[DoseEntry]:
    """The patient's doses of the last ``days`` days that may still be reversed (a
    take-home bottle only before its take-on day)."""
    today = site_today(patient.site)
    since = today - dt.timedelta(days=days)
    return list(
        db.session.scalars(
            sa.select(DoseEntry)
            .where(
                DoseEntry.patient_id == patient.id,
                DoseEntry.kind.in_(REVERSIBLE_KINDS),
                DoseEntry.dispensed_on >= since,
                sa.or_(DoseEntry.kind != DoseKind.TAKE_HOME, DoseEntry.take_on > today),
                not_reversed(),
            )
            .order_by(DoseEntry.dispensed_at.desc(), DoseEntry.id.desc())
        )
    )


def record_reversal(
    entry: DoseEntry, *, actor: User, reason: str | None, now: dt.datetime | None = None
) -> DoseEntry:
    """Correct a mistaken dose row with a reversal row (the only correction the ledger
    allows: 21 CFR 1304.24 records are never edited). The original row stays; a row is
    reversed at most once (``uq_dose_entry_reverses_id``); a reversal is not reversed.
    A take-home bottle (issue 13) is reversed the same way: it then counts nowhere (not
    in the patient's hands, not on a return or a call-back)."""
    _require_dispenser(actor)
    reason = clean_text(reason)
    if reason is None:
        raise DomainError(REVERSAL_REASON_MESSAGE, field="reason")
    if entry.kind not in REVERSIBLE_KINDS:
        raise DomainError(NOT_REVERSIBLE_MESSAGE)
    if reversed_dose_ids([entry.id]):
        raise DomainError(ALREADY_REVERSED_MESSAGE)
    patient = entry.patient
    now = now or utcnow()
    if entry.kind == DoseKind.TAKE_HOME and entry.take_on <= site_today(patient.site, now):
        raise DomainError(BOTTLE_OUT_MESSAGE)
    reversal = DoseEntry(
        kind=DoseKind.REVERSAL,
        patient_id=entry.patient_id,
        site_id=entry.site_id,
        order_id=entry.order_id,
        medication=entry.medication,
        substance=entry.substance,
        strength=entry.strength,
        dosage_form=entry.dosage_form,
        dispensed_on=site_today(patient.site, now),
        dispensed_at=now,
        amount_mg=entry.amount_mg,
        dispenser_id=actor.id,
        reason=reason,
        reverses_id=entry.id,
    )
    db.session.add(reversal)
    db.session.flush()
    audit_created("dose_entry", reversal.id, patient, actor, kind="reversal", reverses=entry.id)
    return reversal


def acknowledge_flag(
    flag: PatientFlag, *, actor: User, now: dt.datetime | None = None
) -> FlagAcknowledgement:
    """Acknowledge a live warning flag for today (once a day, before dosing). Acknowledging
    it again the same day changes nothing (the first acknowledgement is returned)."""
    _require_dispenser(actor)
    if flag.cleared_at is not None:
        raise DomainError("This flag was cleared: there is nothing to acknowledge.")
    day = site_today(flag.patient.site, now)
    existing = db.session.scalar(
        sa.select(FlagAcknowledgement).where(
            FlagAcknowledgement.flag_id == flag.id, FlagAcknowledgement.acknowledged_on == day
        )
    )
    if existing is not None:
        return existing
    ack = FlagAcknowledgement(
        flag_id=flag.id,
        patient_id=flag.patient_id,
        acknowledged_on=day,
        acknowledged_by_id=actor.id,
        acknowledged_at=now or utcnow(),
    )
    db.session.add(ack)
    db.session.flush()
    record(
        AuditAction.ACKNOWLEDGE,
        actor=actor,
        entity_type="patient_flag",
        entity_id=flag.id,
        patient_id=flag.patient_id,
        site_id=flag.patient.site_id,
    )
    return ack


def record_injection(
    patient: Patient,
    *,
    actor: User,
    amount_mg: object,
    lot: str | None,
    injection_site: str | None,
    reason: str | None = None,
    now: dt.datetime | None = None,
) -> DoseEntry:
    """Record an extended-release injection (buprenorphine or naltrexone) administered by
    ``actor``, with its lot and the site of injection; the next one falls due after the
    order's schedule (``next_injection_due``). Same refusals as an observed dose: hold,
    discharge, warnings, already given today, amount differing without a reason."""
    _require_dispenser(actor)
    amount = parse_mg(amount_mg)
    lot = clean_text(lot)
    if lot is None:
        raise DomainError("Enter the lot number from the package.", field="lot")
    if injection_site not in INJECTION_SITE_LABELS:
        raise DomainError("Choose the site of injection.", field="injection_site")
    now = now or utcnow()
    day = site_today(patient.site, now)
    order = injection_order(patient, day, lock=True)
    if order is None:
        raise DomainError(NO_INJECTION_ORDER_MESSAGE)
    _check_can_dose(patient, order, day)
    if any(e.kind == DoseKind.INJECTION for e in given_on(patient.id, day)):
        raise DomainError(ALREADY_INJECTED_MESSAGE)
    if amount > order.dose_mg:
        raise DomainError(
            f"Above the ordered {format_mg(order.dose_mg)} mg: a higher dose needs a new order.",
            field="amount_mg",
        )
    reason = clean_text(reason)
    if amount != order.dose_mg and reason is None:
        raise DomainError(
            AMOUNT_DIFFERS_MESSAGE.format(expected=format_mg(order.dose_mg)), field="reason"
        )
    entry = _ledger_row(
        order,
        patient,
        kind=DoseKind.INJECTION,
        actor=actor,
        day=day,
        now=now,
        amount_mg=amount,
        reason=reason,
        lot=lot,
        injection_site=injection_site,
        slot=_next_slot(patient.id, day),
    )
    db.session.add(entry)
    db.session.flush()
    audit_created("dose_entry", entry.id, patient, actor, kind=entry.kind.value)
    return entry
