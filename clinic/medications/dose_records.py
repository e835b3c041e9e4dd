"""The ledger read back (21 CFR 1304.24): a patient's dose history (keyset pages), the
site's dispensing log of a day grouped by dispenser, and the chart's Doses section (last
dose, next injection due; 42 CFR 8.12 treatment records).

Reads only: nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, selectinload

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications.dose_day import (
    GIVEN_KINDS,
    injection_order,
    last_injections,
    next_injection_due,
    not_reversed,
    reversed_dose_ids,
)
from clinic.medications.models import (
    DoseEntry,
    MedicationOrder,
)
from clinic.patients.models import Patient
from clinic.sites.models import Site
from clinic.sites.time import site_today

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
        # The first bound alone is what the index range starts from (the OR is only a
        # filter): without it a deep page reads every newer row first.
        query = query.where(
            DoseEntry.dispensed_at <= cursor,
            sa.or_(
                DoseEntry.dispensed_at < cursor,
                sa.and_(DoseEntry.dispensed_at == cursor, DoseEntry.id < before),
            ),
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
    reversed_ids = reversed_dose_ids(e.id for e in entries)
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
            not_reversed(),
        )
        .order_by(DoseEntry.dispensed_at.desc(), DoseEntry.id.desc())
        .limit(1)
    )
    order = injection_order(patient, today)
    next_due = None
    if order is not None:
        next_due = next_injection_due(order, last_injections([patient.id]).get(patient.id))
    return ChartDoses(last, today, order, next_due)
