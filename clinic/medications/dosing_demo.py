"""Demo doses for ``flask seed-demo`` (after the medication orders' demo): a few weeks of
observed doses from the demo orders, a split dose given in two portions, a reversal, a
held day, injections (one overdue) and a patient with 3 missed days.

Rows are written straight into the ledger with the demo nurse as dispenser, on the days
the orders were in force (the services record "now" only). Today is left to dose.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications.models import DoseEntry, DoseKind, Medication, MedicationOrder, Schedule
from clinic.patients.models import Patient
from clinic.sites.models import Site
from clinic.sites.time import site_today

WEEKS = 3
MISSED_DAYS_PATIENT = "Hernandez"  # last dosed 4 days ago: 3 missed days to review
HELD_YESTERDAY = "Brown"  # on a hold since today; yesterday's dose held
REVERSAL_PATIENT = "Smith"  # a wrong amount poured two days ago, reversed, then re-poured
STATIONS = ("Window 1", "Window 2")


def _orders(site: Site) -> dict[str, list[MedicationOrder]]:
    rows = db.session.scalars(
        sa.select(MedicationOrder)
        .join(Patient, MedicationOrder.patient_id == Patient.id)
        .where(Patient.site_id == site.id)
        .order_by(MedicationOrder.start_on, MedicationOrder.id)
    )
    by_name: dict[str, list[MedicationOrder]] = {}
    for order in rows:
        by_name.setdefault(order.patient.last_name, []).append(order)
    return by_name


def _in_force(orders: list[MedicationOrder], day: dt.date) -> MedicationOrder | None:
    found = [o for o in orders if o.in_force_on(day)]
    return found[-1] if found else None


def seed(site: Site, *, nurse: User) -> int:
    """Ledger rows for the demo orders at ``site``; returns the number of rows written."""
    tz = ZoneInfo(site.timezone)
    today = site_today(site)
    first_day = today - dt.timedelta(weeks=WEEKS)
    rows: list[DoseEntry] = []

    def add(order: MedicationOrder, day: dt.date, kind: DoseKind, minute: int, **values):
        at = dt.datetime.combine(day, dt.time(7), tz) + dt.timedelta(minutes=minute)
        entry = DoseEntry(
            kind=kind,
            patient_id=order.patient_id,
            site_id=site.id,
            order_id=order.id,
            medication=order.medication,
            substance=Medication(order.medication).substance,
            strength=order.strength,
            dosage_form=order.product_form,
            dispensed_on=day,
            dispensed_at=at.astimezone(dt.UTC),
            dispenser_id=nurse.id,
            station=STATIONS[minute % 2],
            **values,
        )
        rows.append(entry)
        return entry

    for position, (name, orders) in enumerate(sorted(_orders(site).items())):
        daily = [o for o in orders if o.schedule in (Schedule.DAILY, Schedule.SPLIT)]
        last_dose = today - dt.timedelta(days=1)
        if name == MISSED_DAYS_PATIENT:
            last_dose = today - dt.timedelta(days=4)
        if name == HELD_YESTERDAY:
            last_dose = today - dt.timedelta(days=2)
        day = first_day
        while day <= last_dose:
            order = _in_force(daily, day)
            minute = 5 * position + (day.day % 4)
            if order is not None:
                if order.schedule == Schedule.SPLIT:
                    add(
                        order,
                        day,
                        DoseKind.OBSERVED,
                        minute,
                        amount_mg=order.split_first_mg,
                        slot=1,
                    )
                    add(
                        order,
                        day,
                        DoseKind.OBSERVED,
                        minute + 360,
                        amount_mg=order.split_second_mg,
                        slot=2,
                    )
                elif name == REVERSAL_PATIENT and day == today - dt.timedelta(days=2):
                    wrong = add(
                        order, day, DoseKind.OBSERVED, minute, amount_mg=order.dose_mg - 20, slot=1
                    )
                    db.session.add_all(rows)
                    db.session.flush()
                    add(
                        order,
                        day,
                        DoseKind.REVERSAL,
                        minute + 2,
                        amount_mg=wrong.amount_mg,
                        reverses_id=wrong.id,
                        reason="Poured the previous order's dose; the order was changed",
                    )
                    add(order, day, DoseKind.OBSERVED, minute + 3, amount_mg=order.dose_mg, slot=2)
                else:
                    add(order, day, DoseKind.OBSERVED, minute, amount_mg=order.dose_mg, slot=1)
            day += dt.timedelta(days=1)
        if name == HELD_YESTERDAY:
            order = _in_force(daily, today - dt.timedelta(days=1))
            if order is not None:
                add(
                    order,
                    today - dt.timedelta(days=1),
                    DoseKind.HELD,
                    5 * position,
                    reason="Appeared sedated: held, prescriber informed",
                )
        # Injections: one given 20 days ago (XR buprenorphine, due again next month), one
        # given 30 days ago (XR naltrexone every 4 weeks: overdue).
        for order in orders:
            if order.schedule in (Schedule.DAILY, Schedule.SPLIT):
                continue
            days_ago = 20 if order.medication == Medication.XR_BUPRENORPHINE else 30
            given = today - dt.timedelta(days=days_ago)
            if order.in_force_on(given):
                add(
                    order,
                    given,
                    DoseKind.INJECTION,
                    5 * position,
                    amount_mg=order.dose_mg,
                    slot=1,
                    lot=f"DEMO-{order.id:04d}",
                    injection_site="abdomen_left"
                    if order.medication == Medication.XR_BUPRENORPHINE
                    else "gluteal_right",
                )
    db.session.add_all(rows)
    db.session.flush()
    return len(rows)


__all__ = ["seed"]
