"""The dosing window's lists: the dosing screen (the patients due today at a site, each
with the day's dose, hold, flags and missed days) and the injections overdue or due soon —
each in a constant number of statements, whatever the number of patients.

Rules (DOMAIN.md, "Medication for opioid use disorder"; issue 10): who is due follows the
orders in force (``dose_day.orders_in_force``); who may be dosed follows the ledger's
refusals (21 CFR 1304.24 records; 42 CFR 8.12 clinical review after missed days).

Reads only: nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import aliased, contains_eager

from clinic.db import utcnow
from clinic.extensions import db
from clinic.medications.dose_day import (
    DAILY_SCHEDULES,
    DoseDue,
    last_injections,
    next_injection_due,
    orders_in_force,
)
from clinic.medications.missed import MissedDays, day_facts
from clinic.medications.models import (
    FlagCategory,
    MedicationHold,
    MedicationOrder,
    PatientFlag,
)
from clinic.patients.models import Enrollment, Patient
from clinic.sites.models import Site
from clinic.sites.time import site_today


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
    patients, ``clinic.patients.search.search_patients``) narrowing the list.

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
    facts = day_facts(ids_query, day, ZoneInfo(site.timezone))
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
    last = last_injections(query.with_only_columns(MedicationOrder.patient_id))
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
