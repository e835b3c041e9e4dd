"""Demo take-home decisions and site calendar for ``flask seed-demo`` (after the medication
demo, before the take-home bottles' demo, which dispenses under these decisions).

Three methadone patients of the demo site, at treatment days 35, 20 and 12 on the day each
decision starts (the Wednesday scenario, SCENARIOS.md):

- Torres, day 35: a week's supply for a family trip from today, within the 28-day cap;
  recorded and approved by the prescriber.
- Brown, day 20 (a schedule starting 8 days from now): weekend take-homes (Saturday and
  Sunday), recorded by the nurse, awaiting a prescriber's approval.
- Hernandez, day 12 (starting 9 days from now): 3 days, within the 7-day cap; approved.

The site also gets its label details (when empty) and a staff-training holiday two weeks
ahead. Idempotent: a patient with a decision already gets none, and the holiday and label
details are added once.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications import take_home_decisions as decisions
from clinic.medications.take_home_models import CRITERIA, TakeHomeDecision
from clinic.medications.take_home_rules import treatment_day
from clinic.sites.models import Site, SiteClosure
from clinic.sites.time import site_today

DEMO_ADDRESS = "120 Main Street, Riverside, NY 12000"
DEMO_PHONE = "(518) 555-0100"  # 555-01xx: a fictional number

NOTES = {
    "substance_use": "Random tests negative for 8 weeks; no alcohol or sedative use reported.",
    "attendance": "Attends daily dosing; counseling sessions kept.",
    "behaviour": "No behavioural problems at the clinic.",
    "diversion": "No bottle findings; call-back history clean.",
    "storage": "Lock box at home; lives with a partner, no children in the home.",
    "other": "Stable housing and work; take-homes support employment.",
}
# (last name, days from today the decision starts, treatment day it starts on, schedule,
# approved by the prescriber)
PLANS = (
    ("Torres", 0, 35, {"schedule_kind": "days", "days": 7}, True),
    ("Brown", 8, 20, {"schedule_kind": "weekly", "weekdays": "67"}, False),
    ("Hernandez", 9, 12, {"schedule_kind": "days", "days": 3}, True),
)


def _criteria() -> dict[str, decisions.Criterion]:
    return {name: decisions.Criterion(True, NOTES[name]) for name, _label in CRITERIA}


def _calendar(site: Site, admin: User, today: dt.date) -> None:
    if not site.address:
        site.address, site.phone = DEMO_ADDRESS, DEMO_PHONE
    has_holiday = db.session.scalar(
        sa.select(SiteClosure.id).where(SiteClosure.site_id == site.id).limit(1)
    )
    if has_holiday is None:
        db.session.add(
            SiteClosure(
                site_id=site.id,
                closed_on=today + dt.timedelta(days=14),
                name="Staff training day",
                created_by_id=admin.id,
            )
        )
    db.session.flush()


def seed(site: Site, *, prescriber: User, nurse: User, admin: User) -> int:
    """The demo decisions and calendar at ``site``; returns the number of decisions
    written. ``prescriber`` records (and approves) the approved ones, ``nurse`` the one
    awaiting approval; ``admin`` adds the holiday."""
    today = site_today(site)
    _calendar(site, admin, today)
    written = 0
    for last_name, offset, day, schedule, approve in PLANS:
        patient_orders = [
            o
            for o in _methadone_orders(site)
            if o.patient.last_name == last_name and o.enrollment.discharged_on is None
        ]
        if not patient_orders:
            continue
        order = patient_orders[0]
        exists = db.session.scalar(
            sa.select(TakeHomeDecision.id).where(TakeHomeDecision.patient_id == order.patient_id)
        )
        start_on = today + dt.timedelta(days=offset)
        if exists is not None or treatment_day(order.enrollment.admitted_on, start_on) != day:
            continue  # seeded already, or the patients demo changed its admission days
        decisions.record_decision(
            order.patient,
            actor=prescriber if approve else nurse,
            order=order,
            start_on=start_on,
            criteria=_criteria(),
            storage_education_on=today,
            approve=approve,
            **schedule,
        )
        written += 1
    written += _past_decision(site, prescriber, today)
    return written


def _past_decision(site: Site, prescriber: User, today: dt.date) -> int:
    """A decision recorded 12 days ago for a patient long in treatment (Smith, about day
    390): 14 days from 10 days ago, so its first bottles are already back (the bottles demo
    records a return with a missing bottle) and days are still left to dispense."""
    orders = [
        o
        for o in _methadone_orders(site)
        if o.patient.last_name == "Smith" and o.enrollment.discharged_on is None
    ]
    if not orders:
        return 0
    order = orders[0]
    exists = db.session.scalar(
        sa.select(TakeHomeDecision.id).where(TakeHomeDecision.patient_id == order.patient_id)
    )
    recorded_on = today - dt.timedelta(days=12)
    if exists is not None or order.start_on > recorded_on:
        return 0
    then = dt.datetime.combine(recorded_on, dt.time(11), ZoneInfo(site.timezone))
    decisions.record_decision(
        order.patient,
        actor=prescriber,
        order=order,
        start_on=today - dt.timedelta(days=10),
        criteria=_criteria(),
        storage_education_on=recorded_on,
        approve=True,
        schedule_kind="days",
        days=14,
        now=then.astimezone(dt.UTC),
    )
    return 1


def _methadone_orders(site: Site):
    from clinic.medications.models import Medication, MedicationOrder, OrderStatus
    from clinic.patients.models import Patient

    return list(
        db.session.scalars(
            sa.select(MedicationOrder)
            .join(Patient, Patient.id == MedicationOrder.patient_id)
            .where(
                Patient.site_id == site.id,
                MedicationOrder.medication == Medication.METHADONE,
                MedicationOrder.status == OrderStatus.ACTIVE,
            )
            .order_by(MedicationOrder.start_on.desc(), MedicationOrder.id.desc())
        )
    )
