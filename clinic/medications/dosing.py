"""The dose ledger and the dosing window: recording doses, reversals, injections, held
days and flag acknowledgements; missed days and the review list; the dosing screen's rows.

Rules (DOMAIN.md, "Medication for opioid use disorder"; issue 10):

- 21 CFR 1304.24(a): each dose is a ledger row with the substance, strength, dosage form,
  date dispensed, patient, amount, and the dispenser — the signed-in user, never typed.
  The ledger is append-only (database triggers); a mistake is corrected by a reversal
  row with a reason (``record_reversal``), never an edit.
- Only a practitioner, nurse or pharmacist dispenses: ``Permission.DOSE_RECORD`` (a
  clinician with the "may dispense" flag).
- Hard refusals before a dose: no active order; enrollment discharged; a stop-dose hold in
  force; a warning flag not acknowledged today; already dosed today (a split order: only
  the remaining portion); an amount <= 0, above the order, or differing from it without a
  reason.
- Missed days are derived, never stored by a job: the consecutive due days (of an active
  daily or split order) without a dose, up to yesterday, not counting held days — a
  stop-dose hold in force, or a dose the dispenser recorded as held (the clinic's choice,
  not the patient's absence). 3 or more put the patient on the review list and refuse the
  next daily dose (DOMAIN.md: "clinical review before the next dose") until a clinician
  records a review (``record_review``): continue, hold or a new order. Injections are not
  due daily: the rule does not apply to them.

Dates are clinical days in the site's time zone (``clinic.sites.time.site_today``).
Every function checks, writes, records its audit event and flushes; the caller commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import aliased, contains_eager, joinedload, selectinload

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import orders
from clinic.medications.models import (
    DOSE_CEILING_MG,
    DoseEntry,
    DoseKind,
    FlagAcknowledgement,
    FlagCategory,
    Medication,
    MedicationHold,
    MedicationOrder,
    MissedDoseReview,
    PatientFlag,
    ReviewDecision,
    Schedule,
    format_mg,
)
from clinic.patients.models import Enrollment, Patient
from clinic.patients.services import format_day
from clinic.security import Permission
from clinic.sites.models import Site
from clinic.sites.time import site_today

MISSED_DAYS_FOR_REVIEW = 3  # DOMAIN.md: 3 or more consecutive missed days
DAILY_SCHEDULES = (Schedule.DAILY, Schedule.SPLIT)
GIVEN_KINDS = (DoseKind.OBSERVED, DoseKind.INJECTION)
# How far back the dosing screen looks for holds when it counts missed days.
HOLD_LOOKBACK_DAYS = 120
INJECTION_DUE_SOON_DAYS = 7
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
NOT_REVERSIBLE_MESSAGE = "Only a dose given (observed or injected) can be reversed."
HELD_REASON_MESSAGE = "Say why today's dose is held."
REVIEW_NOT_DUE_MESSAGE = "This patient has no missed days to review."
REVIEW_NEEDED_MESSAGE = (
    "{count} missed days ({since}): a clinician's review is needed before the next dose."
)


def review_needed_message(missed: MissedDays) -> str:
    """The refusal of a dose while missed days await a review, e.g. "3 missed days (last
    dose 21 Nov): a clinician's review is needed before the next dose"."""
    if missed.last_given is not None:
        since = f"last dose {_short_day(missed.last_given, missed.since)}"
    else:
        since = f"no dose since the order started {_short_day(missed.since, missed.since)}"
    return REVIEW_NEEDED_MESSAGE.format(count=missed.unreviewed_count, since=since)


def _short_day(day: dt.date | None, near: dt.date | None) -> str:
    """ "21 Nov" for a day in the months around ``near``, "21 Nov 2025" further back."""
    if day is None:
        return "unknown"
    full = format_day(day)
    if near is not None and abs((near - day).days) < 180:
        return full.rsplit(" ", 1)[0]
    return full


def _audit(entry_type: str, entry_id: int, patient: Patient, actor: User, **details) -> None:
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
    """An amount typed in mg: the package's one parser (``orders.parse_mg``: ASCII
    digits and one decimal point only — "1e2", "1_0", Arabic-Indic digits and "1,5" are
    refused, not read as 100, 10, 50 and 15 mg), above 0, at most ``DOSE_CEILING_MG``, to
    0.01 mg."""
    return orders.parse_mg(value, field=field_name, label="amount")


def _clean(text: str | None) -> str | None:
    text = (text or "").strip()
    return text or None


# --- what is given on a day ------------------------------------------------------------


def _reversed_ids(entry_ids: Iterable[int]) -> set[int]:
    ids = list(entry_ids)
    if not ids:
        return set()
    return set(
        db.session.scalars(sa.select(DoseEntry.reverses_id).where(DoseEntry.reverses_id.in_(ids)))
    )


def _not_reversed() -> sa.ColumnElement[bool]:
    reversal = aliased(DoseEntry)
    return ~sa.exists().where(reversal.reverses_id == DoseEntry.id)


def given_on(patient_id: int, day: dt.date) -> list[DoseEntry]:
    """The doses given to the patient on ``day`` and not reversed, in order."""
    return list(
        db.session.scalars(
            sa.select(DoseEntry)
            .where(
                DoseEntry.patient_id == patient_id,
                DoseEntry.dispensed_on == day,
                DoseEntry.kind.in_(GIVEN_KINDS),
                _not_reversed(),
            )
            .order_by(DoseEntry.slot)
        )
    )


def first_day_total_mg(patient: Patient | int, day: dt.date) -> Decimal:
    """Methadone dispensed to the patient on ``day`` and not reversed — observed and taken
    home alike (``amount_mg`` and ``take_home_mg`` of observed and take-home rows): what
    the first-day 50 mg rule (42 CFR 8.12(h)(3)(ii)) counts with the day's order.
    Injections are never methadone. One statement."""
    patient_id = patient if isinstance(patient, int) else patient.id
    rows = db.session.execute(
        sa.select(DoseEntry.amount_mg, DoseEntry.take_home_mg).where(
            DoseEntry.patient_id == patient_id,
            DoseEntry.dispensed_on == day,
            DoseEntry.medication == Medication.METHADONE,
            DoseEntry.kind.in_((DoseKind.OBSERVED, DoseKind.TAKE_HOME)),
            _not_reversed(),
        )
    )
    return sum(
        ((observed or Decimal(0)) + (taken or Decimal(0)) for observed, taken in rows),
        Decimal(0),
    )


@dataclass
class DoseDue:
    """Today's dose of a daily or split order: what is given, what is left, and the
    amount the next portion should be."""

    order: MedicationOrder
    given: list[DoseEntry]

    @property
    def given_mg(self) -> Decimal:
        return sum((e.amount_mg or Decimal(0) for e in self.given), Decimal(0))

    @property
    def remaining_mg(self) -> Decimal:
        return max(self.order.dose_mg - self.given_mg, Decimal(0))

    @property
    def split(self) -> bool:
        return self.order.schedule == Schedule.SPLIT

    @property
    def done(self) -> bool:
        if self.split:
            return len(self.given) >= 2 or self.remaining_mg <= 0
        return bool(self.given)

    @property
    def next_portion(self) -> int | None:
        """1 or 2 for a split order not yet complete; None otherwise."""
        if not self.split or self.done:
            return None
        return len(self.given) + 1

    @property
    def expected_mg(self) -> Decimal:
        """The amount the order asks for now: the whole dose, or the split portion due
        (the second portion: whatever of the dose remains)."""
        if self.done:
            return Decimal(0)
        if self.split:
            if self.next_portion == 1:
                return self.order.split_first_mg or self.order.dose_mg
            return self.remaining_mg
        return self.order.dose_mg


def _in_force_on(day: dt.date, order: type[MedicationOrder] = MedicationOrder):
    return sa.and_(order.start_on <= day, sa.or_(order.end_on.is_(None), order.end_on >= day))


def orders_in_force(day: dt.date, *, daily: bool | None) -> sa.Select:
    """A SELECT of the orders in force on the site-local ``day`` — the one rule the dosing
    screen, the dose page, missed days and the first-day total share: started on or before
    ``day`` and not ended before it (``end_on`` is the last day in force, whatever the
    status: an order ended today still gives today's dose), and not replaced by a change
    starting on or before ``day`` (a same-day change: the replacement is in force, not the
    order it replaced). ``daily``: daily and split orders; False: injections; None: all.
    Newest first (start, id), so a caller taking one row per patient takes the newest."""
    schedule = MedicationOrder.schedule
    successor = aliased(MedicationOrder)
    query = sa.select(MedicationOrder)
    if daily is not None:
        query = query.where(
            schedule.in_(DAILY_SCHEDULES) if daily else schedule.not_in(DAILY_SCHEDULES)
        )
    return query.where(
        _in_force_on(day),
        ~sa.exists().where(successor.replaces_id == MedicationOrder.id, successor.start_on <= day),
    ).order_by(MedicationOrder.start_on.desc(), MedicationOrder.id.desc())


def _daily_order_query(patient_id: int, day: dt.date) -> sa.Select:
    return orders_in_force(day, daily=True).where(MedicationOrder.patient_id == patient_id).limit(1)


def daily_order(patient: Patient, day: dt.date, *, lock: bool = False) -> MedicationOrder | None:
    """The patient's active daily or split order in force on ``day``. ``lock``: take a row
    lock on it (PostgreSQL), so two nurses dosing the same patient run one after the other
    and the second sees the first's dose."""
    query = _daily_order_query(patient.id, day)
    if lock:
        query = query.with_for_update()
    return db.session.scalar(query)


def dose_due(patient: Patient, day: dt.date) -> DoseDue | None:
    order = daily_order(patient, day)
    if order is None:
        return None
    return DoseDue(order, given_on(patient.id, day))


def hold_in_force(patient_id: int, day: dt.date) -> MedicationHold | None:
    return db.session.scalar(
        sa.select(MedicationHold)
        .where(
            MedicationHold.patient_id == patient_id,
            MedicationHold.lifted_at.is_(None),
            sa.or_(MedicationHold.until_on.is_(None), MedicationHold.until_on >= day),
        )
        .limit(1)
    )


def unacknowledged_warnings(patient_id: int, day: dt.date) -> list[PatientFlag]:
    """Live warning flags of the patient not yet acknowledged on ``day``."""
    acknowledged = sa.select(FlagAcknowledgement.flag_id).where(
        FlagAcknowledgement.patient_id == patient_id,
        FlagAcknowledgement.acknowledged_on == day,
    )
    return list(
        db.session.scalars(
            sa.select(PatientFlag)
            .where(
                PatientFlag.patient_id == patient_id,
                PatientFlag.cleared_at.is_(None),
                PatientFlag.category == FlagCategory.WARNING,
                PatientFlag.id.not_in(acknowledged),
            )
            .order_by(PatientFlag.id)
        )
    )


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
    reason = _clean(reason)
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
        station=_clean(station),
        slot=_next_slot(patient.id, day),
    )
    db.session.add(entry)
    db.session.flush()
    _audit(
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
    reason = _clean(reason)
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
    _audit("dose_entry", entry.id, patient, actor, kind=entry.kind.value)
    return entry


def reversible_doses(patient: Patient, *, days: int = 7) -> list[DoseEntry]:
    """The patient's doses of the last ``days`` days that may still be reversed."""
    since = site_today(patient.site) - dt.timedelta(days=days)
    return list(
        db.session.scalars(
            sa.select(DoseEntry)
            .where(
                DoseEntry.patient_id == patient.id,
                DoseEntry.kind.in_(GIVEN_KINDS),
                DoseEntry.dispensed_on >= since,
                _not_reversed(),
            )
            .order_by(DoseEntry.dispensed_at.desc(), DoseEntry.id.desc())
        )
    )


def record_reversal(
    entry: DoseEntry, *, actor: User, reason: str | None, now: dt.datetime | None = None
) -> DoseEntry:
    """Correct a mistaken dose row with a reversal row (the only correction the ledger
    allows: 21 CFR 1304.24 records are never edited). The original row stays; a row is
    reversed at most once (``uq_dose_entry_reverses_id``); a reversal is not reversed."""
    _require_dispenser(actor)
    reason = _clean(reason)
    if reason is None:
        raise DomainError(REVERSAL_REASON_MESSAGE, field="reason")
    if entry.kind not in GIVEN_KINDS:
        raise DomainError(NOT_REVERSIBLE_MESSAGE)
    if _reversed_ids([entry.id]):
        raise DomainError(ALREADY_REVERSED_MESSAGE)
    patient = entry.patient
    now = now or utcnow()
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
    _audit("dose_entry", reversal.id, patient, actor, kind="reversal", reverses=entry.id)
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


# --- injections ------------------------------------------------------------------------


def injection_order(patient: Patient, day: dt.date, *, lock: bool = False):
    """The patient's injection order in force on ``day`` (``orders_in_force``)."""
    query = (
        orders_in_force(day, daily=False).where(MedicationOrder.patient_id == patient.id).limit(1)
    )
    if lock:
        query = query.with_for_update()
    return db.session.scalar(query)


def _last_injections(patient_ids: sa.Select | list[int]) -> dict[int, dt.date]:
    rows = db.session.execute(
        sa.select(DoseEntry.patient_id, sa.func.max(DoseEntry.dispensed_on))
        .where(
            DoseEntry.patient_id.in_(patient_ids),
            DoseEntry.kind == DoseKind.INJECTION,
            _not_reversed(),
        )
        .group_by(DoseEntry.patient_id)
    )
    return dict(rows.all())


def next_injection_due(order: MedicationOrder, last: dt.date | None) -> dt.date:
    """The day the next injection is due: the order's start for the first, then the
    schedule's interval after the last one (monthly: same day of the next month)."""
    if last is None or last < order.start_on:
        return order.start_on
    return Schedule(order.schedule).next_due(last)


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
    lot = _clean(lot)
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
    reason = _clean(reason)
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
    _audit("dose_entry", entry.id, patient, actor, kind=entry.kind.value)
    return entry


# --- missed days -----------------------------------------------------------------------


@dataclass
class MissedDays:
    """The patient's current run of missed due days up to yesterday."""

    count: int  # missed due days in the run (held days not counted)
    since: dt.date | None  # the first day of the run
    reviewed_on: dt.date | None  # the latest review of this run, if any
    count_after_review: int  # missed due days after that review
    last_given: dt.date | None = None  # the last dose before the run (None: none yet)

    @property
    def unreviewed_count(self) -> int:
        """The missed days a review has not yet seen."""
        return self.count if self.reviewed_on is None else self.count_after_review

    @property
    def needs_review(self) -> bool:
        """3 or more missed days, unreviewed (or 3 more since the last review)."""
        if self.reviewed_on is None:
            return self.count >= MISSED_DAYS_FOR_REVIEW
        return self.count_after_review >= MISSED_DAYS_FOR_REVIEW

    @property
    def refusal(self) -> str | None:
        """Why the next daily dose is refused, if it is."""
        return review_needed_message(self) if self.needs_review else None


def _hold_days(
    holds: list[MedicationHold], tz: ZoneInfo, start: dt.date, end: dt.date
) -> set[dt.date]:
    """Days in [start, end] on which one of ``holds`` was in force all day (placed on or
    before it, lifted after it, not past its until-date)."""
    days: set[dt.date] = set()
    for hold in holds:
        first = max(start, hold.placed_at.astimezone(tz).date())
        last = end
        if hold.until_on is not None:
            last = min(last, hold.until_on)
        if hold.lifted_at is not None:
            last = min(last, hold.lifted_at.astimezone(tz).date() - dt.timedelta(days=1))
        day = first
        while day <= last:
            days.add(day)
            day += dt.timedelta(days=1)
    return days


def _count_missed(start: dt.date, end: dt.date, held: set[dt.date]) -> int:
    if end < start:
        return 0
    total = (end - start).days + 1
    return total - sum(1 for d in held if start <= d <= end)


def missed_days(
    order: MedicationOrder,
    *,
    today: dt.date,
    last_given: dt.date | None,
    holds: list[MedicationHold],
    last_review: dt.date | None,
    tz: ZoneInfo,
    held_days: Iterable[dt.date] = (),
) -> MissedDays:
    """The run of consecutive due days of ``order`` without a dose, up to yesterday (today
    may still be dosed). It starts the day after the last dose — or at the order's start,
    if no dose was given since then (a dose change's new order carries on the run of the
    order it replaces). Held days are not missed: days a hold was in force and
    ``held_days`` (doses the dispenser recorded as held) — they neither count nor end the
    run. A review on a day of the run (or later) clears it; missed days after the review's
    day count again."""
    yesterday = today - dt.timedelta(days=1)
    if last_given is not None and (order.replaces_id is not None or last_given >= order.start_on):
        start = last_given + dt.timedelta(days=1)
    else:
        start = order.start_on
    dosed_before = last_given if last_given is not None and start > order.start_on else None
    if start > yesterday:
        return MissedDays(0, None, None, 0, dosed_before)
    held = _hold_days(holds, tz, start, yesterday) | {
        d for d in held_days if start <= d <= yesterday
    }
    count = _count_missed(start, yesterday, held)
    reviewed = last_review if last_review is not None and last_review >= start else None
    after = _count_missed(reviewed + dt.timedelta(days=1), yesterday, held) if reviewed else 0
    return MissedDays(count, start if count else None, reviewed, after, dosed_before)


def record_review(
    patient: Patient,
    *,
    actor: User,
    decision: str,
    note: str | None,
    now: dt.datetime | None = None,
) -> MissedDoseReview:
    """A clinician's review of 3 or more missed days (DOMAIN.md): continue the order, hold
    doses (a stop-dose hold through the holds service) or write a new order (the order
    form follows). The patient leaves the review list and the dosing screen's alert."""
    if not actor.can(Permission.MEDICATION_HOLD):
        raise DomainError("Only a clinician records a missed-dose review.")
    try:
        choice = ReviewDecision(decision)
    except ValueError:
        raise DomainError("Choose what happens next.", field="decision") from None
    note = _clean(note)
    now = now or utcnow()
    today = site_today(patient.site, now)
    order = daily_order(patient, today)
    if order is None:
        raise DomainError(NO_ORDER_MESSAGE)
    status = patient_missed_days(patient, order, today)
    if status.count == 0:
        raise DomainError(REVIEW_NOT_DUE_MESSAGE)
    if choice is ReviewDecision.HOLD:
        if note is None:
            raise DomainError(
                "Say why doses are held (it becomes the hold's reason).", field="note"
            )
        from clinic.medications import holds

        holds.place_hold(patient, actor=actor, reason=note, until_on=None)
    review = MissedDoseReview(
        patient_id=patient.id,
        order_id=order.id,
        reviewed_on=today,
        missed_days=status.count,
        decision=choice,
        note=note,
        reviewed_by_id=actor.id,
        reviewed_at=now,
    )
    db.session.add(review)
    db.session.flush()
    _audit("missed_dose_review", review.id, patient, actor, decision=choice.value)
    return review


def patient_missed_days(patient: Patient, order: MedicationOrder, today: dt.date) -> MissedDays:
    facts = _screen_facts([patient.id], today, ZoneInfo(patient.site.timezone))
    return facts.missed(order, today)


# --- the dosing screen -----------------------------------------------------------------


@dataclass
class _Facts:
    """What the screen and the review list need about a set of patients, read in a
    constant number of statements."""

    tz: ZoneInfo
    given_today: dict[int, list[DoseEntry]] = field(default_factory=dict)
    last_given: dict[int, dt.date] = field(default_factory=dict)
    holds: dict[int, list[MedicationHold]] = field(default_factory=dict)
    flags: dict[int, list[PatientFlag]] = field(default_factory=dict)
    acknowledged: set[int] = field(default_factory=set)
    last_review: dict[int, dt.date] = field(default_factory=dict)
    held_days: dict[int, set[dt.date]] = field(default_factory=dict)

    def missed(self, order: MedicationOrder, today: dt.date) -> MissedDays:
        return missed_days(
            order,
            today=today,
            last_given=self.last_given.get(order.patient_id),
            holds=self.holds.get(order.patient_id, []),
            last_review=self.last_review.get(order.patient_id),
            tz=self.tz,
            held_days=self.held_days.get(order.patient_id, ()),
        )


def _screen_facts(patient_ids: sa.Select | list[int], day: dt.date, tz: ZoneInfo) -> _Facts:
    """Seven statements, whatever the number of patients (``patient_ids``: a list or a
    SELECT of ids)."""
    facts = _Facts(tz)
    for entry in db.session.scalars(
        sa.select(DoseEntry)
        .where(
            DoseEntry.patient_id.in_(patient_ids),
            DoseEntry.dispensed_on == day,
            DoseEntry.kind.in_(GIVEN_KINDS),
            _not_reversed(),
        )
        .order_by(DoseEntry.slot)
    ):
        facts.given_today.setdefault(entry.patient_id, []).append(entry)
    facts.last_given = dict(
        db.session.execute(
            sa.select(DoseEntry.patient_id, sa.func.max(DoseEntry.dispensed_on))
            .where(
                DoseEntry.patient_id.in_(patient_ids),
                DoseEntry.dispensed_on < day,
                DoseEntry.kind.in_(GIVEN_KINDS),
                _not_reversed(),
            )
            .group_by(DoseEntry.patient_id)
        ).all()
    )
    lookback = dt.datetime.combine(day - dt.timedelta(days=HOLD_LOOKBACK_DAYS), dt.time(), tz)
    for hold in db.session.scalars(
        sa.select(MedicationHold)
        .where(
            MedicationHold.patient_id.in_(patient_ids),
            sa.or_(MedicationHold.lifted_at.is_(None), MedicationHold.lifted_at >= lookback),
        )
        .order_by(MedicationHold.placed_at)
    ):
        facts.holds.setdefault(hold.patient_id, []).append(hold)
    # Doses recorded as held since the last dose (the lookback bounds them, as for holds).
    for patient_id, held_on in db.session.execute(
        sa.select(DoseEntry.patient_id, DoseEntry.dispensed_on)
        .where(
            DoseEntry.patient_id.in_(patient_ids),
            DoseEntry.kind == DoseKind.HELD,
            DoseEntry.dispensed_on >= day - dt.timedelta(days=HOLD_LOOKBACK_DAYS),
            DoseEntry.dispensed_on < day,
        )
        .distinct()
    ):
        facts.held_days.setdefault(patient_id, set()).add(held_on)
    for flag in db.session.scalars(
        sa.select(PatientFlag)
        .where(PatientFlag.patient_id.in_(patient_ids), PatientFlag.cleared_at.is_(None))
        .order_by(PatientFlag.category.desc(), PatientFlag.id)
    ):
        facts.flags.setdefault(flag.patient_id, []).append(flag)
    facts.acknowledged = set(
        db.session.scalars(
            sa.select(FlagAcknowledgement.flag_id).where(
                FlagAcknowledgement.patient_id.in_(patient_ids),
                FlagAcknowledgement.acknowledged_on == day,
            )
        )
    )
    facts.last_review = dict(
        db.session.execute(
            sa.select(MissedDoseReview.patient_id, sa.func.max(MissedDoseReview.reviewed_on))
            .where(MissedDoseReview.patient_id.in_(patient_ids))
            .group_by(MissedDoseReview.patient_id)
        ).all()
    )
    return facts


@dataclass
class ScreenRow:
    """One patient due on the dosing screen."""

    patient: Patient
    due: DoseDue
    last_given: dt.date | None
    hold: MedicationHold | None
    flags: list[PatientFlag]
    unacknowledged: list[PatientFlag]
    missed: MissedDays
    today: dt.date

    @property
    def initials(self) -> str:
        return (self.patient.first_name[:1] + self.patient.last_name[:1]).upper()

    @property
    def days_since(self) -> int | None:
        return (self.today - self.last_given).days if self.last_given else None

    @property
    def review_needed(self) -> bool:
        """Missed days await a clinician's review: no dose until then (a split's second
        portion, after a first given today, is not held back)."""
        return self.missed.needs_review and not self.due.given

    @property
    def can_dose(self) -> bool:
        return (
            not self.due.done
            and self.hold is None
            and not self.unacknowledged
            and not self.review_needed
        )


def _due_orders(site: Site, day: dt.date) -> sa.Select:
    return (
        orders_in_force(day, daily=True)
        .join(MedicationOrder.patient)
        .join(MedicationOrder.enrollment)
        .where(
            Patient.site_id == site.id,
            Patient.entered_in_error_at.is_(None),
            Enrollment.discharged_on.is_(None),
        )
    )


def dosing_screen(
    site: Site, day: dt.date, *, matching: sa.Select | None = None
) -> list[ScreenRow]:
    """The patients due at ``site`` on ``day`` (active daily and split orders), each with
    today's dose and what is left of it, the last dose, hold, flags and missed days: eight
    statements whatever the number of patients. ``matching``: a patient search (a SELECT of
    patients, ``clinic.patients.services.search_patients``) narrowing the list.

    Sorted: patients still to dose first, those dosed fully today at the bottom, by name
    within each group (SCENARIOS.md asks for arrival order: that needs a check-in, which the
    clinic does not record yet)."""
    orders_query = _due_orders(site, day)
    if matching is not None:
        ids = matching.with_only_columns(Patient.id).order_by(None)
        orders_query = orders_query.where(MedicationOrder.patient_id.in_(ids))
    orders = list(
        db.session.scalars(
            orders_query.options(contains_eager(MedicationOrder.patient))
            .order_by(None)
            .order_by(
                Patient.last_key,
                Patient.first_key,
                Patient.id,
                MedicationOrder.start_on.desc(),
                MedicationOrder.id.desc(),
            )
        ).unique()
    )
    seen: set[int] = set()
    unique_orders = []
    for order in orders:  # one row per patient: its newest order in force
        if order.patient_id not in seen:
            seen.add(order.patient_id)
            unique_orders.append(order)
    if not unique_orders:
        return []
    ids_query = orders_query.with_only_columns(MedicationOrder.patient_id).order_by(None)
    facts = _screen_facts(ids_query, day, ZoneInfo(site.timezone))
    rows = []
    for order in unique_orders:
        pid = order.patient_id
        flags = facts.flags.get(pid, [])
        hold = next((h for h in facts.holds.get(pid, []) if h.in_force_on(day)), None)
        rows.append(
            ScreenRow(
                patient=order.patient,
                due=DoseDue(order, facts.given_today.get(pid, [])),
                last_given=facts.last_given.get(pid),
                hold=hold,
                flags=flags,
                unacknowledged=[
                    f
                    for f in flags
                    if f.category == FlagCategory.WARNING and f.id not in facts.acknowledged
                ],
                missed=facts.missed(order, day),
                today=day,
            )
        )
    rows.sort(key=lambda r: r.due.done)  # stable: by name within each group
    return rows


# --- the review list and injections ----------------------------------------------------


@dataclass
class InjectionRow:
    patient: Patient
    order: MedicationOrder
    last: dt.date | None
    due_on: dt.date
    today: dt.date

    @property
    def overdue(self) -> bool:
        return self.due_on < self.today

    @property
    def days_overdue(self) -> int:
        return max((self.today - self.due_on).days, 0)


def _visible(query: sa.Select, site_ids: set[int] | None) -> sa.Select:
    if site_ids is not None:
        query = query.where(Patient.site_id.in_(site_ids or {-1}))
    return query


def injections_due(
    site_ids: set[int] | None, *, now: dt.datetime | None = None, within_days: int = 7
) -> list[InjectionRow]:
    """Active injection orders at the sites (None: all) whose next injection is overdue or
    due within ``within_days`` days (site-local), soonest first: three statements."""
    # Orders in force today or later: the sites' days differ by a day at most around
    # the UTC date, so the query keeps what may be in force and each row is checked with
    # its site's own day below.
    earliest = (now or utcnow()).date() - dt.timedelta(days=1)
    successor = aliased(MedicationOrder)
    query = _visible(
        sa.select(MedicationOrder)
        .join(MedicationOrder.patient)
        .where(
            sa.or_(MedicationOrder.end_on.is_(None), MedicationOrder.end_on >= earliest),
            MedicationOrder.schedule.not_in(DAILY_SCHEDULES),
            Patient.entered_in_error_at.is_(None),
            ~sa.exists().where(
                successor.replaces_id == MedicationOrder.id,
                successor.start_on <= MedicationOrder.end_on,
            ),
        ),
        site_ids,
    )
    orders = list(
        db.session.scalars(
            query.options(contains_eager(MedicationOrder.patient).selectinload(Patient.site))
        ).unique()
    )
    if not orders:
        return []
    last = _last_injections(query.with_only_columns(MedicationOrder.patient_id))
    rows = []
    for order in orders:
        today = site_today(order.patient.site, now)
        if order.start_on > today + dt.timedelta(days=within_days):
            continue
        if order.end_on is not None and order.end_on < today:
            continue
        due_on = next_injection_due(order, last.get(order.patient_id))
        if due_on <= today + dt.timedelta(days=within_days):
            rows.append(
                InjectionRow(order.patient, order, last.get(order.patient_id), due_on, today)
            )
    rows.sort(key=lambda r: (r.due_on, r.patient.last_key, r.patient.id))
    return rows


@dataclass
class ReviewRow:
    patient: Patient
    order: MedicationOrder
    missed: MissedDays


def review_list(site_ids: set[int] | None, *, now: dt.datetime | None = None) -> list[ReviewRow]:
    """Patients at the sites (None: all) with 3 or more consecutive missed days not yet
    reviewed, most days first: a constant number of statements per site."""
    sites_query = sa.select(Site).order_by(Site.code)
    if site_ids is not None:
        sites_query = sites_query.where(Site.id.in_(site_ids or {-1}))
    rows: list[ReviewRow] = []
    for site in db.session.scalars(sites_query):
        today = site_today(site, now)
        for row in dosing_screen(site, today):
            if row.missed.needs_review:
                rows.append(ReviewRow(row.patient, row.due.order, row.missed))
    rows.sort(key=lambda r: (-r.missed.count, r.patient.last_key, r.patient.id))
    return rows


# --- history, log, chart ---------------------------------------------------------------

HISTORY_PAGE_SIZE = 50


@dataclass
class HistoryPage:
    entries: list[DoseEntry]
    reversed_ids: set[int]
    next_cursor: int | None


def dose_history(patient: Patient, *, before: int | None = None) -> HistoryPage:
    """The patient's ledger rows, newest first, ``HISTORY_PAGE_SIZE`` a page, by keyset
    on (dispensed_at, id) — ``before``: the id of the last row of the previous page.
    Three statements whatever the size of the ledger."""
    query = sa.select(DoseEntry).where(DoseEntry.patient_id == patient.id)
    if before is not None:
        cursor = (
            sa.select(DoseEntry.dispensed_at)
            .where(DoseEntry.id == before, DoseEntry.patient_id == patient.id)
            .scalar_subquery()
        )
        query = query.where(
            sa.or_(
                DoseEntry.dispensed_at < cursor,
                sa.and_(DoseEntry.dispensed_at == cursor, DoseEntry.id < before),
            )
        )
    entries = list(
        db.session.scalars(
            query.options(selectinload(DoseEntry.dispenser))
            .order_by(DoseEntry.dispensed_at.desc(), DoseEntry.id.desc())
            .limit(HISTORY_PAGE_SIZE + 1)
        )
    )
    more = len(entries) > HISTORY_PAGE_SIZE
    entries = entries[:HISTORY_PAGE_SIZE]
    reversed_ids = _reversed_ids(e.id for e in entries)
    return HistoryPage(entries, reversed_ids, entries[-1].id if more else None)


@dataclass
class LogGroup:
    dispenser: User
    entries: list[DoseEntry]


def dispensing_log(site: Site, day: dt.date) -> list[LogGroup]:
    """Every ledger row of the site's day, grouped by dispenser (DEA's practice for
    computerised records: each dispenser initials their day's page): one statement."""
    entries = db.session.scalars(
        sa.select(DoseEntry)
        .where(DoseEntry.site_id == site.id, DoseEntry.dispensed_on == day)
        .options(joinedload(DoseEntry.patient), joinedload(DoseEntry.dispenser))
        .order_by(DoseEntry.dispensed_at, DoseEntry.id)
    ).all()
    groups: dict[int, LogGroup] = {}
    for entry in entries:
        group = groups.setdefault(entry.dispenser_id, LogGroup(entry.dispenser, []))
        group.entries.append(entry)
    return sorted(groups.values(), key=lambda g: (g.dispenser.full_name or "", g.dispenser.id))


@dataclass
class ChartDoses:
    last: DoseEntry | None
    today: dt.date
    injection_order: MedicationOrder | None
    next_injection: dt.date | None

    @property
    def days_since(self) -> int | None:
        return (self.today - self.last.dispensed_on).days if self.last else None


def chart_doses(patient: Patient) -> ChartDoses:
    """The chart's Doses section: the last dose given, days since, next injection due
    (three statements)."""
    today = site_today(patient.site)
    last = db.session.scalar(
        sa.select(DoseEntry)
        .where(
            DoseEntry.patient_id == patient.id,
            DoseEntry.kind.in_(GIVEN_KINDS),
            _not_reversed(),
        )
        .order_by(DoseEntry.dispensed_at.desc(), DoseEntry.id.desc())
        .limit(1)
    )
    order = injection_order(patient, today)
    next_due = None
    if order is not None:
        next_due = next_injection_due(order, _last_injections([patient.id]).get(patient.id))
    return ChartDoses(last, today, order, next_due)
