"""Demo medication orders, a hold and flags for ``flask seed-demo`` (after the patients
demo; the dose ledger's demo seeds doses from these orders afterwards).

Orders across the three medications: methadone (with a titration history and a split
dose), buprenorphine-naloxone sublingual, extended-release buprenorphine monthly and
extended-release naltrexone every 4 weeks; a stop-dose hold, a warning and an info flag.
The demo nurse may dispense.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.medications import holds, orders
from clinic.patients.models import Enrollment, Patient, Program
from clinic.sites.models import Site
from clinic.sites.time import site_today


def _enrollments(site: Site) -> dict[str, Enrollment]:
    """The site's active enrollments by patient last name."""
    rows = db.session.scalars(
        sa.select(Enrollment)
        .join(Patient, Enrollment.patient_id == Patient.id)
        .join(Program, Enrollment.program_id == Program.id)
        .where(Patient.site_id == site.id, Enrollment.discharged_on.is_(None))
        .order_by(Enrollment.id)
    )
    return {e.patient.last_name: e for e in rows}


def _order(medication, form, strength, dose, schedule, start_on, **fields) -> orders.OrderInput:
    return orders.OrderInput(
        medication=medication,
        product_form=form,
        strength=strength,
        dose_mg=Decimal(dose),
        schedule=schedule,
        start_on=start_on,
        **fields,
    )


def _methadone(dose: str, start_on: dt.date, **fields) -> orders.OrderInput:
    return _order("methadone", "oral_liquid", "10 mg/mL", dose, "daily", start_on, **fields)


def seed(site: Site, *, prescriber: User, nurse: User) -> int:
    """Orders, a hold and flags for the demo patients at ``site``; returns the number of
    orders written. ``prescriber`` writes them; ``nurse`` is given the dispense flag."""
    nurse.may_dispense = True
    db.session.flush()
    today = site_today(site)
    by_name = _enrollments(site)
    written = 0

    def start(name: str, data: orders.OrderInput):
        nonlocal written
        enrollment = by_name.get(name)
        if enrollment is None:
            return None
        written += 1
        return orders.start_order(enrollment, actor=prescriber, data=data)

    def change(order, data: orders.OrderInput, *, switch: bool = False):
        nonlocal written
        if order is None:
            return None
        written += 1
        service = orders.switch_medication if switch else orders.change_dose
        return service(order, actor=prescriber, data=data)

    def admitted(name: str) -> dt.date:
        return by_name[name].admitted_on if name in by_name else today

    # Methadone: a long-time patient's titration history (30 mg first day, steps up).
    smith = admitted("Smith")
    order = start("Smith", _methadone("30", smith, reason="Induction"))
    order = change(order, _methadone("40", smith + dt.timedelta(days=3)))
    order = change(order, _methadone("60", smith + dt.timedelta(days=10), reason="Withdrawal"))
    change(order, _methadone("80", smith + dt.timedelta(days=30), reason="Cravings persist"))
    # A split dose (rapid metaboliser): 70 mg as 40 mg + 30 mg.
    torres = admitted("Torres")
    order = start("Torres", _methadone("40", torres, reason="Induction"))
    change(
        order,
        _order(
            "methadone",
            "oral_liquid",
            "10 mg/mL",
            "70",
            "split",
            torres + dt.timedelta(days=20),
            split_first_mg=Decimal("40"),
            split_second_mg=Decimal("30"),
            reason="Rapid metaboliser: split dose",
        ),
    )
    start("Brown", _methadone("45", admitted("Brown"), reason="Induction"))
    start("Hernandez", _methadone("30", admitted("Hernandez"), reason="Induction"))
    # Buprenorphine-naloxone sublingual, and extended-release buprenorphine monthly.
    start(
        "Nguyen",
        _order(
            "buprenorphine_naloxone",
            "sublingual_film",
            "8 mg/2 mg",
            "16",
            "daily",
            admitted("Nguyen"),
            reason="Maintenance",
        ),
    )
    start(
        "Johnson",
        _order(
            "xr_buprenorphine",
            "injection",
            "300 mg/1.5 mL",
            "300",
            "monthly",
            admitted("Johnson"),
            reason="Stable on sublingual; prefers monthly injection",
        ),
    )
    # Extended-release naltrexone every 4 weeks, after 10 opioid-free days.
    davis = admitted("Davis")
    start(
        "Davis",
        _order(
            "xr_naltrexone",
            "injection",
            "380 mg",
            "380",
            "every_4_weeks",
            davis,
            last_opioid_use_on=davis - dt.timedelta(days=10),
            reason="Opioid-free induction",
        ),
    )
    # A stop-dose hold, a warning and an info flag.
    if "Brown" in by_name:
        holds.place_hold(
            by_name["Brown"].patient,
            actor=prescriber,
            reason="Appeared sedated yesterday: see the prescriber before the next dose",
            until_on=None,
        )
    if "Torres" in by_name:
        holds.add_flag(
            by_name["Torres"].patient,
            actor=prescriber,
            category="warning",
            text="Reports benzodiazepine use: check for sedation before dosing",
        )
    if "Smith" in by_name:
        holds.add_flag(
            by_name["Smith"].patient,
            actor=prescriber,
            category="info",
            text="Works early shifts: prefers dosing at opening",
        )
    db.session.flush()
    return written


__all__ = ["seed"]
