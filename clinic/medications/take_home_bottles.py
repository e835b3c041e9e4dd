"""Take-home bottles dispensed from the dosing screen, checked against the patient's
take-home decisions, and their label sheet.

Rules (DOMAIN.md "Take-home bottles" and "The dose ledger is a DEA record"; issue 13):

- 21 CFR 1304.24(a): each bottle is a row of the dose ledger (``DoseEntry`` of kind
  ``take_home``) with the substance, strength and dosage form of the order, the day
  dispensed, the patient, the amount (the order's daily dose in mg — a split order's day
  total), its take-on day and its number in the dispensing; the dispenser is the signed-in
  user. A mistaken bottle is corrected by a reversal row (``ledger.record_reversal``); a
  reversed bottle no longer counts anywhere.
- Only a practitioner, nurse or pharmacist dispenses (``Permission.DOSE_RECORD``).
- 42 CFR 8.12(i): each take-on day must be covered by an approved decision in force
  (``take_home_rules.decision_covers``); the take-home days in the patient's hands at once
  — bottles not yet taken (take-on after today), this dispensing included — are counted
  (every bottle's day, whether the days touch or not; clinic-closed days not counted:
  ``supply_days``) against the cap for today's treatment day
  (``take_home_rules.cap_days``; buprenorphine is not capped). More is refused with the
  cap that applied.
- The same refusals as a dose: no active daily order, a hold in force, a discharged
  enrollment, a record entered in error.

Dates are site-local clinical days (``clinic.sites.time.site_today``). Services check,
write, record their audit event and flush; the caller commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications import ledger, take_home_rules
from clinic.medications.dose_day import (
    daily_order,
    hold_in_force,
    not_reversed,
    reversed_dose_ids,
)
from clinic.medications.models import DoseEntry, DoseKind, Medication, MedicationOrder
from clinic.medications.take_home_models import TakeHomeDecision, TakeHomeDispensing
from clinic.patients.models import Patient
from clinic.security import Permission
from clinic.sites.time import site_today

MAX_DAYS_AHEAD = 28  # the federal ceiling of a take-home supply (42 CFR 8.12(i)(3))
CHOOSE_DAYS_MESSAGE = "Choose at least one take-on day."
DAY_NOT_AHEAD_MESSAGE = "A take-on day must be after today: today's dose is given observed."
DAY_TOO_FAR_MESSAGE = f"A take-on day may be at most {MAX_DAYS_AHEAD} days ahead."
NOT_COVERED_MESSAGE = "{day}: no approved take-home decision in force covers this day."
ALREADY_HAS_BOTTLE_MESSAGE = "{day}: the patient already has a bottle for this day."
ORDER_ENDS_MESSAGE = "{day}: the order ends on {end}, before this day."
OVER_CAP_MESSAGE = (
    "More bottles than the decision allows: {counted} take-home days in the patient's hands "
    "(clinic-closed days not counted); the cap on treatment day {day} ({band}) is {cap}."
)
RACE_MESSAGE = (
    "Bottles for this patient were dispensed at the same moment: check the bottles in the "
    "patient's hands before dispensing more."
)
WARNINGS = (
    "Keep out of reach of children",
    "Take only as directed",
    "Contains {substance} — may be fatal to others",
    "Return the empty bottle at your next visit",
)


def format_day(day: dt.date) -> str:
    return day.strftime("%a %d %b %Y")


def _same_medication(decision: TakeHomeDecision, order: MedicationOrder) -> bool:
    """A methadone decision covers a methadone order; a buprenorphine one the others."""
    methadone = Medication(order.medication) is Medication.METHADONE
    return (Medication(decision.medication) is Medication.METHADONE) == methadone


def bottles_in_hands(patient_id: int, today: dt.date) -> list[DoseEntry]:
    """The patient's bottles not yet taken: take-on after ``today``, not reversed, by
    take-on day. One statement."""
    return list(
        db.session.scalars(
            sa.select(DoseEntry)
            .where(
                DoseEntry.patient_id == patient_id,
                DoseEntry.kind == DoseKind.TAKE_HOME,
                DoseEntry.take_on > today,
                not_reversed(),
            )
            .order_by(DoseEntry.take_on, DoseEntry.id)
        )
    )


def supply_days(days: Iterable[dt.date], closed: set[dt.date]) -> int:
    """The take-home supply in the patient's hands, in days: every distinct bottle day that
    is not clinic-closed (``closed``), whether or not the days touch — eight single-day
    bottles are eight days of supply (42 CFR 8.12(i)(3): the take-home supply is limited).
    Counted by ``take_home_rules.counted_days``."""
    return take_home_rules.counted_days(days, closed)


@dataclass
class OfferedDay:
    day: dt.date
    closed: bool
    decision: TakeHomeDecision | None  # the first decision in force covering it
    bottle: DoseEntry | None  # a bottle already in the patient's hands for it

    @property
    def may_choose(self) -> bool:
        return self.decision is not None and self.bottle is None


@dataclass
class DispensingPlan:
    """What the dispensing page shows: the coming days covered by decisions in force,
    the cap for today's treatment day and the take-home days already in hands."""

    today: dt.date
    order: MedicationOrder | None
    decisions: list[TakeHomeDecision]
    days: list[OfferedDay]
    in_hands: list[DoseEntry]
    treatment_day: int | None
    cap: int | None
    counted_in_hands: int
    refusal: str | None = None
    closed: set[dt.date] = field(default_factory=set)


def _refusal(patient: Patient, order: MedicationOrder | None, today: dt.date) -> str | None:
    if patient.entered_in_error_at is not None:
        return ledger.ENTERED_IN_ERROR_MESSAGE
    if order is None:
        return ledger.NO_ORDER_MESSAGE
    if order.enrollment.discharged_on is not None and order.enrollment.discharged_on <= today:
        return ledger.DISCHARGED_MESSAGE
    if hold_in_force(patient.id, today) is not None:
        return ledger.ON_HOLD_MESSAGE
    return None


def _cap(order: MedicationOrder, today: dt.date) -> tuple[int, int | None]:
    day = take_home_rules.treatment_day(order.enrollment.admitted_on, today)
    return day, take_home_rules.cap_days(order.enrollment.program, order.medication, max(day, 0))


def decisions_for(patient: Patient, order: MedicationOrder | None, today: dt.date):
    """The approved decisions in force from tomorrow for the order's medication, recorded
    in the order's enrollment (after a discharge, a readmission or a transfer, the old
    enrollment's decisions cover nothing: a new decision is needed)."""
    if order is None:
        return []
    tomorrow = today + dt.timedelta(days=1)
    return [
        d
        for d in take_home_rules.decisions_in_force(patient.id, tomorrow)
        if _same_medication(d, order) and d.enrollment_id == order.enrollment_id
    ]


def has_decision_in_force(patient: Patient, today: dt.date | None = None) -> bool:
    """Whether the dosing screen offers "Take-home bottles": an approved decision in force
    from tomorrow (one statement)."""
    today = today or site_today(patient.site)
    return bool(take_home_rules.decisions_in_force(patient.id, today + dt.timedelta(days=1)))


def dispensing_plan(patient: Patient, now: dt.datetime | None = None) -> DispensingPlan:
    """The coming ``MAX_DAYS_AHEAD`` days from tomorrow, each with its covering decision,
    whether the clinic is closed and any bottle already dispensed for it."""
    today = site_today(patient.site, now)
    order = daily_order(patient, today)
    decisions = decisions_for(patient, order, today)
    in_hands = bottles_in_hands(patient.id, today)
    start, end = today + dt.timedelta(days=1), today + dt.timedelta(days=MAX_DAYS_AHEAD)
    closed = take_home_rules.closed_days(patient.site, start, end)
    by_day = {b.take_on: b for b in in_hands}
    days = []
    for n in range(MAX_DAYS_AHEAD):
        day = start + dt.timedelta(days=n)
        covering = next(
            (d for d in decisions if take_home_rules.decision_covers(d, day, closed)), None
        )
        if covering is not None and (order is None or order.end_on is None or day <= order.end_on):
            days.append(OfferedDay(day, day in closed, covering, by_day.get(day)))
    treatment_day, cap = _cap(order, today) if order is not None else (None, None)
    return DispensingPlan(
        today=today,
        order=order,
        decisions=decisions,
        days=days,
        in_hands=in_hands,
        treatment_day=treatment_day,
        cap=cap,
        counted_in_hands=supply_days([b.take_on for b in in_hands], closed),
        refusal=_refusal(patient, order, today),
        closed=closed,
    )


def _take_on_days(
    take_on_dates: Iterable[dt.date] | None, count: int | None, today: dt.date
) -> list[dt.date]:
    if take_on_dates is None:
        if count is None or count < 1:
            raise DomainError(CHOOSE_DAYS_MESSAGE, field="take_on")
        if count > MAX_DAYS_AHEAD:
            raise DomainError(DAY_TOO_FAR_MESSAGE, field="take_on")
        return [today + dt.timedelta(days=n) for n in range(1, count + 1)]
    days = sorted(set(take_on_dates))
    if not days:
        raise DomainError(CHOOSE_DAYS_MESSAGE, field="take_on")
    if days[0] <= today:
        raise DomainError(DAY_NOT_AHEAD_MESSAGE, field="take_on")
    if days[-1] > today + dt.timedelta(days=MAX_DAYS_AHEAD):
        raise DomainError(DAY_TOO_FAR_MESSAGE, field="take_on")
    return days


def dispense_take_homes(
    patient: Patient,
    *,
    actor: User,
    take_on_dates: Iterable[dt.date] | None = None,
    count: int | None = None,
    seen_in_hands: int | None = None,
    now: dt.datetime | None = None,
) -> TakeHomeDispensing:
    """Dispense take-home bottles for ``take_on_dates`` (site-local days after today, at
    most 28 days ahead), or for the ``count`` days from tomorrow: one ``TakeHomeDispensing``
    and one ledger row per bottle (bottle 1..n by take-on day, amount = the order's daily
    dose in mg, dispenser = ``actor``). See the module docstring for the rules.

    Raises ``DomainError`` (field ``take_on`` for the days): not a dispenser; no day, a day
    not after today or too far ahead; no active daily order, a hold, a discharge, a record
    entered in error; a day not covered by an approved decision in force, a day after the
    order's end, a day that already has a bottle; more take-home days in hands than the cap
    (message with the cap). ``seen_in_hands``: the bottles in hands the page showed — more
    now means someone dispensed meanwhile (``RACE_MESSAGE``). The order row is locked
    (PostgreSQL), so two dispensings for one patient run one after the other."""
    if not actor.can(Permission.DOSE_RECORD):
        raise DomainError(ledger.NOT_A_DISPENSER_MESSAGE)
    now = now or utcnow()
    today = site_today(patient.site, now)
    days = _take_on_days(take_on_dates, count, today)
    order = daily_order(patient, today, lock=True)
    refusal = _refusal(patient, order, today)
    if refusal is not None:
        raise DomainError(refusal)
    assert order is not None
    in_hands = bottles_in_hands(patient.id, today)
    if seen_in_hands is not None and len(in_hands) > seen_in_hands:
        raise DomainError(RACE_MESSAGE, field="take_on")
    held = {b.take_on for b in in_hands}
    closed = take_home_rules.closed_days(
        patient.site, today, today + dt.timedelta(days=MAX_DAYS_AHEAD + 1)
    )
    decisions = decisions_for(patient, order, today)
    covering: dict[dt.date, TakeHomeDecision] = {}
    for day in days:
        if day in held:
            raise DomainError(
                ALREADY_HAS_BOTTLE_MESSAGE.format(day=format_day(day)), field="take_on"
            )
        if order.end_on is not None and day > order.end_on:
            raise DomainError(
                ORDER_ENDS_MESSAGE.format(day=format_day(day), end=format_day(order.end_on)),
                field="take_on",
            )
        decision = next(
            (d for d in decisions if take_home_rules.decision_covers(d, day, closed)), None
        )
        if decision is None:
            raise DomainError(NOT_COVERED_MESSAGE.format(day=format_day(day)), field="take_on")
        covering[day] = decision
    treatment_day, cap = _cap(order, today)
    counted = supply_days([*held, *days], closed)
    if cap is not None and counted > cap:
        raise DomainError(
            OVER_CAP_MESSAGE.format(
                counted=counted,
                day=treatment_day,
                band=take_home_rules.cap_band_label(max(treatment_day, 0)),
                cap=cap,
            ),
            field="take_on",
        )
    dispensing = TakeHomeDispensing(
        patient_id=patient.id,
        site_id=patient.site_id,
        decision_id=covering[days[0]].id,
        order_id=order.id,
        dispensed_on=today,
        dispensed_at=now,
        dispenser_id=actor.id,
        bottle_count=len(days),
    )
    db.session.add(dispensing)
    db.session.flush()
    for number, day in enumerate(days, start=1):
        db.session.add(
            ledger._ledger_row(  # the ledger's one row builder (1304.24(a) fields)
                order,
                patient,
                kind=DoseKind.TAKE_HOME,
                actor=actor,
                day=today,
                now=now,
                amount_mg=order.dose_mg,
                take_on=day,
                bottle_number=number,
                dispensing_id=dispensing.id,
            )
        )
    db.session.flush()
    ledger.audit_created(
        "take_home_dispensing",
        dispensing.id,
        patient,
        actor,
        bottles=len(days),
        decision=dispensing.decision_id,
        counted_days=counted,
        cap_days=cap,
    )
    return dispensing


# --- the label sheet -------------------------------------------------------------------


@dataclass
class Label:
    bottle: DoseEntry
    number: int
    of: int
    reversed: bool


def dispensing_bottles(dispensing: TakeHomeDispensing) -> list[DoseEntry]:
    return list(
        db.session.scalars(
            sa.select(DoseEntry)
            .where(DoseEntry.dispensing_id == dispensing.id)
            .order_by(DoseEntry.bottle_number)
        )
    )


def labels(dispensing: TakeHomeDispensing) -> list[Label]:
    """One label per bottle of the dispensing, by bottle number; a reversed bottle is
    marked (it must not be handed out). Two statements."""
    bottles = dispensing_bottles(dispensing)
    reversed_ids = reversed_dose_ids(b.id for b in bottles)
    return [
        Label(b, b.bottle_number or 0, dispensing.bottle_count, b.id in reversed_ids)
        for b in bottles
    ]


def warnings_for(medication: Medication | str) -> list[str]:
    substance = Medication(medication).substance
    return [w.format(substance=substance) for w in WARNINGS]
