"""Medication orders: start, change the dose, switch medication, end (issue 10;
DOMAIN.md "Medication for opioid use disorder"; 42 CFR 8.12(h)).

Each function checks its rules (each refusal a ``DomainError`` naming the form field it
concerns), changes rows, records the audit event and flushes; the caller commits once.
An order is never edited: a dose change or a switch ends the current order and starts the
next one in the same transaction (a trigger refuses UPDATE of an order's clinical columns).

Guardrails:

- only clinicians with the prescriber flag write orders;
- an order starts within an active enrollment: not before the admission, not after a
  discharge (and ends when the enrollment is discharged: ``end_orders_of_enrollment``,
  a discharge listener);
- the clinical guardrails — the first methadone day's 50 mg (42 CFR 8.12(h)(3)(ii)), the
  usual range, the program's step, naltrexone's opioid-free days, methadone only in an
  OTP — live in ``clinic.medications.guardrails``;
- amounts are exact decimals, above 0 and at most ``DOSE_CEILING_MG``, to 0.01 mg
  (``clinic.medications.amounts``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications.amounts import parse_mg
from clinic.medications.dose_day import DAILY_SCHEDULES, orders_in_force
from clinic.medications.guardrails import CheckedOrder, check_guardrails, check_program
from clinic.medications.models import (
    Medication,
    MedicationOrder,
    OrderStatus,
    ProductForm,
    Schedule,
    format_mg,
)
from clinic.patients import common
from clinic.patients.models import Enrollment, Patient
from clinic.security import Permission
from clinic.sites.time import site_today

START_AHEAD_DAYS = 90  # an order may be written ahead, not for next year
ONLY_PRESCRIBERS_MESSAGE = "Only clinicians with the prescriber flag write medication orders."
ENDED_ORDER_MESSAGE = "This order has already ended: nothing can change it any more."
DATABASE_REFUSALS_MESSAGE = "The patient already has an active order for this medication."

# Suggested strengths by product form (the form offers them; any text is accepted).
STRENGTHS: dict[tuple[Medication, ProductForm], str] = {
    (Medication.METHADONE, ProductForm.ORAL_LIQUID): "10 mg/mL",
    (Medication.METHADONE, ProductForm.DISPERSIBLE_TABLET): "40 mg",
    (Medication.METHADONE, ProductForm.TABLET): "10 mg",
    (Medication.BUPRENORPHINE, ProductForm.SUBLINGUAL_TABLET): "8 mg",
    (Medication.BUPRENORPHINE, ProductForm.SUBLINGUAL_FILM): "8 mg",
    (Medication.BUPRENORPHINE_NALOXONE, ProductForm.SUBLINGUAL_FILM): "8 mg/2 mg",
    (Medication.BUPRENORPHINE_NALOXONE, ProductForm.SUBLINGUAL_TABLET): "8 mg/2 mg",
    (Medication.XR_BUPRENORPHINE, ProductForm.INJECTION): "300 mg/1.5 mL",
    (Medication.NALTREXONE, ProductForm.TABLET): "50 mg",
    (Medication.XR_NALTREXONE, ProductForm.INJECTION): "380 mg",
}


@dataclass(frozen=True)
class OrderInput:
    """What a prescriber writes on an order (the form's fields, already typed)."""

    medication: Medication | str | None
    product_form: ProductForm | str | None
    strength: str | None
    dose_mg: Decimal | str | None
    schedule: Schedule | str | None
    start_on: dt.date | None
    split_first_mg: Decimal | str | None = None
    split_second_mg: Decimal | str | None = None
    reason: str | None = None
    justification: str | None = None
    last_opioid_use_on: dt.date | None = None


# --- reading -----------------------------------------------------------------------------


def order_for(user: User, order_id: int) -> MedicationOrder | None:
    """An order by id, only if its patient is within the user's reach (their sites, or a
    live break-glass grant): the same scoping as ``patients.common.patient_for``."""
    order = db.session.get(MedicationOrder, order_id)
    if order is None or common.patient_for(user, order.patient_id) is None:
        return None
    return order


def order_for_any(order_id: int) -> MedicationOrder | None:
    """An order by id, unscoped: only to attribute a refused access to its patient."""
    return db.session.get(MedicationOrder, order_id)


def active_orders(patient_ids: Iterable[int], on: dt.date) -> list[MedicationOrder]:
    """The orders in force on ``on`` for these patients, in one query: the dosing side's
    rule (``dose_day.orders_in_force``: by start and end dates, a same-day replacement in
    force rather than the order it replaced)."""
    ids = list(patient_ids)
    if not ids:
        return []
    return list(
        db.session.scalars(
            orders_in_force(on, daily=None)
            .where(MedicationOrder.patient_id.in_(ids))
            .order_by(None)
            .order_by(MedicationOrder.patient_id, MedicationOrder.id)
        )
    )


def current_orders(patient: Patient) -> list[MedicationOrder]:
    """The patient's active orders (including one written to start later)."""
    return list(
        db.session.scalars(
            sa.select(MedicationOrder)
            .options(joinedload(MedicationOrder.prescriber))
            .where(
                MedicationOrder.patient_id == patient.id,
                MedicationOrder.status == OrderStatus.ACTIVE,
            )
            .order_by(MedicationOrder.start_on, MedicationOrder.id)
        )
    )


def order_history(patient: Patient) -> list[MedicationOrder]:
    """Every order of the patient, newest first, with who wrote and who ended it: one
    query whatever the number of orders."""
    return list(
        db.session.scalars(
            sa.select(MedicationOrder)
            .options(
                joinedload(MedicationOrder.prescriber),
                joinedload(MedicationOrder.ended_by),
                joinedload(MedicationOrder.enrollment).joinedload(Enrollment.program),
            )
            .where(MedicationOrder.patient_id == patient.id)
            .order_by(MedicationOrder.start_on.desc(), MedicationOrder.id.desc())
        ).unique()
    )


def moud_summary(patient: Patient) -> list[Medication]:
    """The medications the patient is on (active orders), for staff's "On MOUD" line."""
    return list(
        db.session.scalars(
            sa.select(MedicationOrder.medication)
            .where(
                MedicationOrder.patient_id == patient.id,
                MedicationOrder.status == OrderStatus.ACTIVE,
            )
            .distinct()
            .order_by(MedicationOrder.medication)
        )
    )


# --- checks --------------------------------------------------------------------------------


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _enum(enum_type, value, *, field: str, message: str):
    try:
        return enum_type(value)
    except ValueError:
        raise DomainError(message, field=field) from None


def _check_prescriber(actor: User) -> None:
    if not actor.can(Permission.MEDICATION_ORDER):
        raise DomainError(ONLY_PRESCRIBERS_MESSAGE)


def _check_shape(data: OrderInput) -> CheckedOrder:
    medication = _enum(
        Medication, data.medication, field="medication", message="Choose a medication."
    )
    product_form = _enum(
        ProductForm, data.product_form, field="product_form", message="Choose a product form."
    )
    if product_form not in medication.forms:
        raise DomainError(
            f"{medication.label} does not come as {product_form.label.lower()}: choose one of "
            + ", ".join(f.label.lower() for f in medication.forms)
            + ".",
            field="product_form",
        )
    schedule = _enum(Schedule, data.schedule, field="schedule", message="Choose a schedule.")
    if schedule not in medication.schedules:
        raise DomainError(
            f"{medication.label} is given "
            + " or ".join(s.label.lower() for s in medication.schedules)
            + ".",
            field="schedule",
        )
    strength = _text(data.strength)
    if strength is None:
        raise DomainError("Enter the product's strength, e.g. 10 mg/mL.", field="strength")
    if len(strength) > 40:
        raise DomainError("Keep the strength to 40 characters.", field="strength")
    dose = parse_mg(data.dose_mg, field="dose_mg")
    first = second = None
    if schedule is Schedule.SPLIT:
        first = parse_mg(data.split_first_mg, field="split_first_mg", label="first portion")
        second = parse_mg(data.split_second_mg, field="split_second_mg", label="second portion")
        if first + second != dose:
            raise DomainError(
                f"The two portions ({format_mg(first)} mg + {format_mg(second)} mg) must add "
                f"up to the dose ({format_mg(dose)} mg).",
                field="split_second_mg",
            )
    elif _text(str(data.split_first_mg or "")) or _text(str(data.split_second_mg or "")):
        raise DomainError(
            "Portions are for a split schedule only: clear them or choose split.",
            field="split_first_mg",
        )
    if data.start_on is None:
        raise DomainError("Enter the start date.", field="start_on")
    if data.last_opioid_use_on is not None and data.last_opioid_use_on > data.start_on:
        raise DomainError(
            "The last opioid use cannot be after the start date.", field="last_opioid_use_on"
        )
    return CheckedOrder(
        medication=medication,
        product_form=product_form,
        strength=strength,
        dose_mg=dose,
        schedule=schedule,
        split_first_mg=first,
        split_second_mg=second,
        start_on=data.start_on,
        reason=_text(data.reason),
        justification=_text(data.justification),
        last_opioid_use_on=data.last_opioid_use_on,
    )


def _check_enrollment(enrollment: Enrollment, start_on: dt.date) -> None:
    """An order starts within an active enrollment: not before the admission, not after
    a discharge, not more than ``START_AHEAD_DAYS`` ahead."""
    day = common.format_day
    if enrollment.patient.entered_in_error:
        raise DomainError(common.ENTERED_IN_ERROR_MESSAGE)
    if not enrollment.active:
        raise DomainError(
            f"The enrollment in {enrollment.program.name} ended on "
            f"{day(enrollment.discharged_on)}: an order cannot start after a discharge.",
            field="start_on",
        )
    if start_on < enrollment.admitted_on:
        raise DomainError(
            f"An order cannot start before the admission ({day(enrollment.admitted_on)}).",
            field="start_on",
        )
    if start_on > site_today(enrollment.patient.site) + dt.timedelta(days=START_AHEAD_DAYS):
        raise DomainError(
            f"An order starts at most {START_AHEAD_DAYS} days ahead.", field="start_on"
        )


def _active_order_of(patient: Patient, medication: Medication) -> MedicationOrder | None:
    return db.session.scalar(
        sa.select(MedicationOrder).where(
            MedicationOrder.patient_id == patient.id,
            MedicationOrder.medication == medication,
            MedicationOrder.status == OrderStatus.ACTIVE,
        )
    )


def _check_compatible(
    patient: Patient, checked: CheckedOrder, *, replacing: MedicationOrder | None = None
) -> None:
    """The new order may stand beside the patient's other active orders: naltrexone (an
    antagonist) never beside methadone or buprenorphine (it would precipitate withdrawal,
    or be blocked), and one daily medication at a time (the dosing window gives one daily
    dose per patient): to go from one to the other, switch medication."""
    naltrexone = checked.medication.substance == "naltrexone"
    for other in current_orders(patient):
        if other is replacing or other.medication is checked.medication:
            continue
        name = other.medication.label.lower()
        if naltrexone != (other.medication.substance == "naltrexone"):
            raise DomainError(
                f"The patient has an active {name} order: naltrexone and opioid agonists "
                "are not given together. Switch medication from that order instead.",
                field="medication",
            )
        if checked.schedule in DAILY_SCHEDULES and other.schedule in DAILY_SCHEDULES:
            raise DomainError(
                f"The patient already has a daily {name} order and the dosing window gives "
                "one daily medication: switch medication from that order instead.",
                field="medication",
            )


def _audit(order: MedicationOrder, action: AuditAction, actor: User, **details) -> None:
    """Ids and kinds only: never doses' reasons or justifications (free text)."""
    record(
        action,
        actor=actor,
        entity_type="medication_order",
        entity_id=order.id,
        patient_id=order.patient_id,
        site_id=order.patient.site_id,
        details={"medication": order.medication.value, **details},
    )


def _insert(
    enrollment: Enrollment,
    order: CheckedOrder,
    *,
    actor: User,
    replaces: MedicationOrder | None,
) -> MedicationOrder:
    created = MedicationOrder(
        patient=enrollment.patient,
        enrollment=enrollment,
        medication=order.medication,
        product_form=order.product_form,
        strength=order.strength,
        dose_mg=order.dose_mg,
        schedule=order.schedule,
        split_first_mg=order.split_first_mg,
        split_second_mg=order.split_second_mg,
        start_on=order.start_on,
        status=OrderStatus.ACTIVE,
        prescriber_id=actor.id,
        reason=order.reason,
        justification=order.justification,
        last_opioid_use_on=order.last_opioid_use_on,
        replaces_id=replaces.id if replaces is not None else None,
    )
    db.session.add(created)
    db.session.flush()
    return created


def _close(
    order: MedicationOrder,
    *,
    actor: User,
    end_on: dt.date,
    reason: str,
    before_start: bool = False,
) -> None:
    """End the order: ``end_on`` is its last day in force (the dosing side reads orders
    in force by their dates: ``dose_day.orders_in_force``). A change on the order's own
    start day ends it that day (its successor, starting the same day, is the one in
    force). ``before_start``: an order ended (or discharged) before it started was never
    in force: it ends the day before its start."""
    order.status = OrderStatus.ENDED
    if end_on < order.start_on:
        end_on = order.start_on - dt.timedelta(days=1) if before_start else order.start_on
    order.end_on = end_on
    order.ended_reason = reason
    order.ended_by_id = actor.id
    order.ended_at = utcnow()
    db.session.flush()


# --- use cases -----------------------------------------------------------------------------


def start_order(enrollment: Enrollment, *, actor: User, data: OrderInput) -> MedicationOrder:
    """Start an order for a medication the patient has no active order for (one active
    order per patient and medication: a partial unique index backs it)."""
    _check_prescriber(actor)
    order = _check_shape(data)
    _check_enrollment(enrollment, order.start_on)
    existing = _active_order_of(enrollment.patient, order.medication)
    if existing is not None:
        raise DomainError(
            f"The patient already has an active {order.medication.label.lower()} order: "
            "change its dose or end it instead.",
            field="medication",
        )
    check_program(enrollment, order.medication, field="enrollment_id")
    _check_compatible(enrollment.patient, order)
    check_guardrails(enrollment, order, previous=None, switching=False)
    created = _insert(enrollment, order, actor=actor, replaces=None)
    _audit(created, AuditAction.CREATE, actor, enrollment_id=enrollment.id)
    return created


def _check_replaceable(order: MedicationOrder, start_on: dt.date) -> None:
    """The current order is still active (read under a row lock: two prescribers changing
    it at once, the second sees it ended), and the next one follows it without a gap."""
    db.session.refresh(order, with_for_update=True)
    if not order.active:
        raise DomainError(ENDED_ORDER_MESSAGE)
    if start_on < order.start_on:
        raise DomainError(
            "The new order cannot start before the current one "
            f"({common.format_day(order.start_on)}).",
            field="start_on",
        )
    # The current order ends when the change is saved: a later start would leave the
    # patient without an order in force (no dose) until then.
    today = site_today(order.patient.site)
    if start_on > today and start_on > order.start_on:
        raise DomainError(
            "A dose change or switch starts today at the latest: the current order ends "
            "when the change is saved, so the patient would have no order in force until "
            f"{common.format_day(start_on)}. Write the change on the day it starts.",
            field="start_on",
        )


def _replace(
    order: MedicationOrder, *, actor: User, data: OrderInput, switching: bool
) -> MedicationOrder:
    _check_prescriber(actor)
    checked = _check_shape(data)
    enrollment = order.enrollment
    _check_enrollment(enrollment, checked.start_on)
    _check_replaceable(order, checked.start_on)
    if switching:
        if checked.medication is order.medication:
            raise DomainError(
                "Choose a different medication (or change the dose of this one).",
                field="medication",
            )
        other = _active_order_of(order.patient, checked.medication)
        if other is not None:
            raise DomainError(
                f"The patient already has an active {checked.medication.label.lower()} order.",
                field="medication",
            )
    elif checked.medication is not order.medication:
        raise DomainError(
            "A dose change keeps the medication: switch medication instead.", field="medication"
        )
    check_program(enrollment, checked.medication, field="medication")
    _check_compatible(order.patient, checked, replacing=order)
    check_guardrails(enrollment, checked, previous=order, switching=switching)
    # The current order ends the day before the next one starts (the same day when both
    # start the same day: the active one is the order in force).
    why = "switched medication" if switching else "dose changed"
    _close(order, actor=actor, end_on=checked.start_on - dt.timedelta(days=1), reason=why)
    created = _insert(enrollment, checked, actor=actor, replaces=order)
    _audit(order, AuditAction.UPDATE, actor, fields=["status", "end_on"], replaced_by=created.id)
    _audit(
        created,
        AuditAction.CREATE,
        actor,
        enrollment_id=enrollment.id,
        replaces=order.id,
        change="switch" if switching else "dose_change",
    )
    return created


def change_dose(order: MedicationOrder, *, actor: User, data: OrderInput) -> MedicationOrder:
    """A dose (or form, strength, schedule) change: the current order ends and the next one
    starts, in one transaction; a change beyond the program's step needs a reason."""
    return _replace(order, actor=actor, data=data, switching=False)


def switch_medication(order: MedicationOrder, *, actor: User, data: OrderInput) -> MedicationOrder:
    """Switch to another medication: the current order ends and the new one starts, in one
    transaction, with the reason (and the new medication's own guardrails)."""
    return _replace(order, actor=actor, data=data, switching=True)


def end_order(
    order: MedicationOrder, *, actor: User, end_on: dt.date | None, reason: str | None
) -> None:
    """End an order (the last day it is in force, from its start to today), with why."""
    _check_prescriber(actor)
    db.session.refresh(order, with_for_update=True)
    if not order.active:
        raise DomainError(ENDED_ORDER_MESSAGE)
    if order.patient.entered_in_error:
        raise DomainError(common.ENTERED_IN_ERROR_MESSAGE)
    why = _text(reason)
    if why is None:
        raise DomainError("Give the reason for ending the order.", field="reason")
    if end_on is None:
        raise DomainError("Enter the last day of the order.", field="end_on")
    today = site_today(order.patient.site)
    if end_on > today:
        raise DomainError("The end date cannot be in the future.", field="end_on")
    if end_on < order.start_on and order.start_on <= today:
        raise DomainError(
            "The end date cannot be before the order's start "
            f"({common.format_day(order.start_on)}).",
            field="end_on",
        )
    _close(order, actor=actor, end_on=end_on, reason=why, before_start=True)
    _audit(order, AuditAction.UPDATE, actor, fields=["status", "end_on", "ended_reason"])


def end_orders_of_enrollment(enrollment: Enrollment, actor: User) -> list[MedicationOrder]:
    """A discharge (or transfer out) ends the enrollment's active orders on the discharge
    date (issue 10: "ends when the enrollment is discharged"). Runs in the discharge's
    transaction, by whoever discharged, prescriber or not."""
    ended = list(
        db.session.scalars(
            sa.select(MedicationOrder).where(
                MedicationOrder.enrollment_id == enrollment.id,
                MedicationOrder.status == OrderStatus.ACTIVE,
            )
        )
    )
    for order in ended:
        _close(
            order,
            actor=actor,
            end_on=enrollment.discharged_on or site_today(enrollment.patient.site),
            reason="enrollment discharged",
            before_start=True,
        )
        _audit(order, AuditAction.UPDATE, actor, fields=["status", "end_on"], discharge=True)
    return ended


DATABASE_REFUSALS = {
    "uq_medication_order_active_patient_medication": DomainError(
        DATABASE_REFUSALS_MESSAGE, field="medication"
    ),
}
