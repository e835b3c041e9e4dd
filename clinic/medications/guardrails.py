"""The clinical guardrails of a medication order (DOMAIN.md "Medication for opioid use
disorder"; 42 CFR 8.11, 8.12(h)), checked on the order's shape-checked input
(``CheckedOrder``) by ``orders`` when an order is started, changed or switched:

- methadone above 50 mg in total on the patient's first methadone day of the enrollment
  (the order's dose, both split portions included, plus any dose already dispensed that
  day: ``dose_day.first_day_total_mg``) needs a written clinical justification
  (42 CFR 8.12(h)(3)(ii));
- a dose outside the usual range (methadone above 200 mg, sublingual buprenorphine above
  32 mg) needs a justification;
- a dose change larger than the program's step (methadone 10 mg, buprenorphine 4 mg by
  default) needs a reason; a switch of medication always does;
- starting naltrexone needs the last opioid use at least 7 days before the start, or a
  justification;
- methadone for opioid use disorder only under an opioid treatment program's enrollment
  (42 CFR 8.11, 8.12: ``check_program``).

Checks only: each refusal a ``DomainError`` naming the form field it concerns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from clinic.errors import DomainError
from clinic.extensions import db
from clinic.medications.dose_day import first_day_total_mg
from clinic.medications.models import (
    Medication,
    MedicationOrder,
    ProductForm,
    Schedule,
    format_mg,
)
from clinic.patients import common
from clinic.patients.models import Enrollment, Patient

FIRST_DAY_METHADONE_MG = Decimal("50")  # 42 CFR 8.12(h)(3)(ii)
USUAL_MAX_METHADONE_MG = Decimal("200")
USUAL_MAX_SUBLINGUAL_BUPRENORPHINE_MG = Decimal("32")
NALTREXONE_OPIOID_FREE_DAYS = 7


@dataclass(frozen=True)
class CheckedOrder:
    """An order's input once its shape is checked (``orders._check_shape``): what the
    guardrails check."""

    medication: Medication
    product_form: ProductForm
    strength: str
    dose_mg: Decimal
    schedule: Schedule
    split_first_mg: Decimal | None
    split_second_mg: Decimal | None
    start_on: dt.date
    reason: str | None
    justification: str | None
    last_opioid_use_on: dt.date | None


def dispensed_on_day_mg(patient: Patient, day: dt.date) -> Decimal:
    """Methadone already dispensed to the patient on ``day``: the dose ledger's count
    (``dose_day.first_day_total_mg``)."""
    return Decimal(first_day_total_mg(patient, day) or 0)


def _first_methadone_day(enrollment: Enrollment, start_on: dt.date) -> bool:
    """``start_on`` is the patient's first methadone day in this enrollment: no methadone
    order of the enrollment starts earlier."""
    earlier = db.session.scalar(
        sa.select(sa.func.count(MedicationOrder.id)).where(
            MedicationOrder.enrollment_id == enrollment.id,
            MedicationOrder.medication == Medication.METHADONE,
            MedicationOrder.start_on < start_on,
        )
    )
    return not earlier


def _step_mg(enrollment: Enrollment, medication: Medication) -> Decimal | None:
    program = enrollment.program
    if medication is Medication.METHADONE:
        return Decimal(program.methadone_step_mg)
    if medication in (Medication.BUPRENORPHINE, Medication.BUPRENORPHINE_NALOXONE):
        return Decimal(program.buprenorphine_step_mg)
    return None


def check_guardrails(
    enrollment: Enrollment,
    order: CheckedOrder,
    *,
    previous: MedicationOrder | None,
    switching: bool,
) -> None:
    patient = enrollment.patient
    medication = order.medication
    if medication is Medication.METHADONE and _first_methadone_day(enrollment, order.start_on):
        total = order.dose_mg + dispensed_on_day_mg(patient, order.start_on)
        if total > FIRST_DAY_METHADONE_MG and order.justification is None:
            raise DomainError(
                f"This is the patient's first methadone day: {format_mg(total)} mg in total "
                f"is above {format_mg(FIRST_DAY_METHADONE_MG)} mg and needs a written clinical "
                "justification (42 CFR 8.12(h)(3)(ii)).",
                field="justification",
            )
    if order.justification is None:
        if medication is Medication.METHADONE and order.dose_mg > USUAL_MAX_METHADONE_MG:
            raise DomainError(
                f"Methadone above {format_mg(USUAL_MAX_METHADONE_MG)} mg is outside the usual "
                "range: write a clinical justification.",
                field="justification",
            )
        if (
            order.product_form.is_sublingual
            and order.dose_mg > USUAL_MAX_SUBLINGUAL_BUPRENORPHINE_MG
        ):
            raise DomainError(
                "Sublingual buprenorphine above "
                f"{format_mg(USUAL_MAX_SUBLINGUAL_BUPRENORPHINE_MG)} mg is outside the usual "
                "range: write a clinical justification.",
                field="justification",
            )
    starting_naltrexone = medication.substance == "naltrexone" and (
        previous is None or previous.medication.substance != "naltrexone"
    )
    if starting_naltrexone and order.justification is None:
        last_use = order.last_opioid_use_on
        latest = order.start_on - dt.timedelta(days=NALTREXONE_OPIOID_FREE_DAYS)
        if last_use is None or last_use > latest:
            raise DomainError(
                "Starting naltrexone needs the last opioid use at least "
                f"{NALTREXONE_OPIOID_FREE_DAYS} days before the start (on or before "
                f"{common.format_day(latest)}), or a clinical justification.",
                field="last_opioid_use_on",
            )
    if switching:
        if order.reason is None:
            raise DomainError("Give the reason for switching medication.", field="reason")
    elif previous is not None:
        step = _step_mg(enrollment, medication)
        change = abs(order.dose_mg - _step_baseline(previous, order.start_on).dose_mg)
        if step is not None and change > step and order.reason is None:
            raise DomainError(
                f"A change of {format_mg(change)} mg is larger than the program's step "
                f"({format_mg(step)} mg): give the reason.",
                field="reason",
            )


def _step_baseline(previous: MedicationOrder, start_on: dt.date) -> MedicationOrder:
    """The order a change is measured against: the dose in force before the change's day.
    Orders written and replaced on that same day are skipped, so two changes of 10 mg on
    one day are one change of 20 mg (each within the step, together beyond it)."""
    base = previous
    while base.start_on >= start_on and base.replaces_id is not None:
        earlier = db.session.get(MedicationOrder, base.replaces_id)
        if earlier is None or earlier.medication is not previous.medication:
            break
        base = earlier
    return base


def check_program(enrollment: Enrollment, medication: Medication, *, field: str) -> None:
    """Methadone for opioid use disorder is dispensed only by an opioid treatment program
    (42 CFR 8.11, 8.12): never under an office-based, naltrexone or counseling enrollment."""
    if medication is Medication.METHADONE and not enrollment.program.kind.is_otp:
        raise DomainError(
            f"Methadone for opioid use disorder is given only in an opioid treatment program: "
            f"{enrollment.program.name} is not one. Choose the patient's OTP enrollment "
            "(or admit them to one).",
            field=field,
        )
