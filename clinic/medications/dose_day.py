"""A patient's dosing day, read: the orders in force on a clinical day, what was given
and not reversed, the day's dose due, holds and unacknowledged warnings, injection orders
and when the next injection falls due — the reads every dosing use case shares (the ledger,
missed days, the screen, the history, and ``orders`` for the first-day total).

Rules (DOMAIN.md, "Medication for opioid use disorder"; issue 10):

- 21 CFR 1304.24(a): the dose ledger is append-only; a dose counts as given unless a
  reversal row names it (``not_reversed``).
- 42 CFR 8.12(h)(3)(ii): methadone on the patient's first day is at most 50 mg in total
  without a justification: ``first_day_total_mg`` is what that rule counts besides the
  day's order (``guardrails.check_guardrails``).
- An order is in force from its start to its end day, unless a change starting on or
  before the day replaced it (``orders_in_force``).

Dates are clinical days in the site's time zone (``clinic.sites.time.site_today``). Reads
only: nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from clinic.extensions import db
from clinic.medications.models import (
    DoseEntry,
    DoseKind,
    FlagAcknowledgement,
    FlagCategory,
    Medication,
    MedicationHold,
    MedicationOrder,
    PatientFlag,
    Schedule,
)
from clinic.patients.models import Patient

DAILY_SCHEDULES = (Schedule.DAILY, Schedule.SPLIT)
GIVEN_KINDS = (DoseKind.OBSERVED, DoseKind.INJECTION)


def reversed_dose_ids(entry_ids: Iterable[int]) -> set[int]:
    ids = list(entry_ids)
    if not ids:
        return set()
    return set(
        db.session.scalars(sa.select(DoseEntry.reverses_id).where(DoseEntry.reverses_id.in_(ids)))
    )


# Built once: an ``aliased()`` entity is immutable and reusable across statements, and
# building one per call cost about a quarter of the chart's Python time.
_REVERSAL = aliased(DoseEntry)


def not_reversed() -> sa.ColumnElement[bool]:
    """``DoseEntry`` rows no reversal row names (21 CFR 1304.24(a): the ledger is
    append-only, a reversal is a row of its own): a correlated NOT EXISTS."""
    return ~sa.exists().where(_REVERSAL.reverses_id == DoseEntry.id)


def given_on(patient_id: int, day: dt.date) -> list[DoseEntry]:
    """The doses given to the patient on ``day`` and not reversed, in order."""
    return list(
        db.session.scalars(
            sa.select(DoseEntry)
            .where(
                DoseEntry.patient_id == patient_id,
                DoseEntry.dispensed_on == day,
                DoseEntry.kind.in_(GIVEN_KINDS),
                not_reversed(),
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
            not_reversed(),
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


def injection_order(patient: Patient, day: dt.date, *, lock: bool = False):
    """The patient's injection order in force on ``day`` (``orders_in_force``)."""
    query = (
        orders_in_force(day, daily=False).where(MedicationOrder.patient_id == patient.id).limit(1)
    )
    if lock:
        query = query.with_for_update()
    return db.session.scalar(query)


def last_injections(patient_ids: sa.Select | list[int]) -> dict[int, dt.date]:
    rows = db.session.execute(
        sa.select(DoseEntry.patient_id, sa.func.max(DoseEntry.dispensed_on))
        .where(
            DoseEntry.patient_id.in_(patient_ids),
            DoseEntry.kind == DoseKind.INJECTION,
            not_reversed(),
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
