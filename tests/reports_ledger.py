"""A hand-built dose ledger for the report tests (issue 14): patients, orders and ledger
rows written directly with the models (the ledger has no insert trigger; the services'
refusals are not what the report tests are about), and the filters a report reads."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from clinic.extensions import db
from clinic.medications.models import (
    DoseEntry,
    DoseKind,
    Medication,
    MedicationOrder,
    ProductForm,
    Schedule,
)
from clinic.medications.take_home_models import CRITERIA, TakeHomeDecision, TakeHomeDispensing
from clinic.patients import admissions
from clinic.patients.models import Enrollment, Patient, Program
from clinic.reports.filters import MedicationGroup, ReportFilters

D = dt.date
ADMITTED = dt.date(2024, 12, 1)
PRODUCTS = {
    "methadone": (ProductForm.ORAL_LIQUID, "10 mg/mL"),
    "buprenorphine": (ProductForm.SUBLINGUAL_TABLET, "8 mg"),
    "buprenorphine_naloxone": (ProductForm.SUBLINGUAL_FILM, "8 mg/2 mg"),
    "xr_buprenorphine": (ProductForm.INJECTION, "300 mg"),
    "naltrexone": (ProductForm.TABLET, "50 mg"),
    "xr_naltrexone": (ProductForm.INJECTION, "380 mg"),
}


def each_day(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


class Ledger:
    """Builds patients, orders and dose-ledger rows directly with the models (the ledger
    has no insert trigger; the services' refusals are not what these tests are about).
    Every method commits and returns ids."""

    def __init__(
        self, app, site, make_site, make_user, make_patient, make_program, make_enrollment
    ):
        self.app = app
        self.site = site
        self.make_site = make_site
        self.make_patient = make_patient
        self.make_program = make_program
        self.make_enrollment = make_enrollment
        self.nurse = make_user("clinician", is_prescriber=True)
        self.slots: dict[tuple[int, dt.date], int] = {}

    def program(self, name: str | None = None, *, site_id: int | None = None, **kw) -> int:
        return self.make_program(name or f"OTP {uuid.uuid4().hex[:6]}", site_id=site_id, **kw)

    def patient(self, program: int, *, admitted_on: dt.date = ADMITTED, site_id=None):
        """A patient admitted to ``program``: (patient id, enrollment id)."""
        patient = self.make_patient(
            "Pat", f"Doe{uuid.uuid4().hex[:8]}", site_id=site_id, intake_date=D(2024, 11, 1)
        )
        return patient, self.make_enrollment(patient, program, admitted_on=admitted_on)

    def order(
        self,
        enrollment: int,
        medication: str = "methadone",
        *,
        schedule: str = "daily",
        dose: str = "80",
        split: tuple[str, str] | None = None,
        start_on: dt.date = ADMITTED,
    ) -> int:
        form, strength = PRODUCTS[medication]
        with self.app.app_context():
            row = db.session.get(Enrollment, enrollment)
            order = MedicationOrder(
                patient_id=row.patient_id,
                enrollment_id=enrollment,
                medication=Medication(medication),
                product_form=form,
                strength=strength,
                dose_mg=Decimal(dose),
                schedule=Schedule("split" if split else schedule),
                split_first_mg=Decimal(split[0]) if split else None,
                split_second_mg=Decimal(split[1]) if split else None,
                start_on=start_on,
                prescriber_id=self.nurse,
            )
            db.session.add(order)
            db.session.commit()
            return order.id

    def _row(self, order: MedicationOrder, kind: DoseKind, day: dt.date, **values) -> DoseEntry:
        site_id = values.pop("site_id", None)
        patient = db.session.get(Patient, order.patient_id)
        if kind in (DoseKind.OBSERVED, DoseKind.INJECTION):
            key = (order.patient_id, day)
            self.slots[key] = self.slots.get(key, 0) + 1
            values["slot"] = self.slots[key]
        return DoseEntry(
            kind=kind,
            patient_id=order.patient_id,
            site_id=site_id or patient.site_id,
            order_id=order.id,
            medication=order.medication,
            substance=Medication(order.medication).substance,
            strength=order.strength,
            dosage_form=order.product_form,
            dispensed_on=day,
            dispensed_at=dt.datetime.combine(day, dt.time(15), dt.UTC),
            dispenser_id=self.nurse,
            **values,
        )

    def observed(self, order_id: int, days, *, mg: str | None = None, **values) -> list[int]:
        """An observed dose on each of ``days`` (a date or a list): the order's dose."""
        days = [days] if isinstance(days, dt.date) else list(days)
        with self.app.app_context():
            order = db.session.get(MedicationOrder, order_id)
            rows = [
                self._row(
                    order,
                    DoseKind.OBSERVED,
                    day,
                    amount_mg=Decimal(mg) if mg else order.dose_mg,
                    reason=None if mg is None else "a portion",
                    **values,
                )
                for day in days
            ]
            db.session.add_all(rows)
            db.session.commit()
            return [r.id for r in rows]

    def not_given(self, order_id: int, day: dt.date, kind: DoseKind) -> int:
        """A missed or held row (covers nothing)."""
        with self.app.app_context():
            order = db.session.get(MedicationOrder, order_id)
            row = self._row(order, kind, day, reason="not given")
            db.session.add(row)
            db.session.commit()
            return row.id

    def injection(self, order_id: int, days) -> list[int]:
        days = [days] if isinstance(days, dt.date) else list(days)
        with self.app.app_context():
            order = db.session.get(MedicationOrder, order_id)
            rows = [
                self._row(
                    order,
                    DoseKind.INJECTION,
                    day,
                    amount_mg=order.dose_mg,
                    lot="LOT-1",
                    injection_site="arm_left",
                )
                for day in days
            ]
            db.session.add_all(rows)
            db.session.commit()
            return [r.id for r in rows]

    def bottles(self, order_id: int, dispensed_on: dt.date, take_on: list[dt.date]) -> list[int]:
        """Take-home bottles handed out on ``dispensed_on``, one per take-on day (with the
        approved decision and the dispensing they belong to)."""
        with self.app.app_context():
            order = db.session.get(MedicationOrder, order_id)
            patient = db.session.get(Patient, order.patient_id)
            methadone = order.medication == Medication.METHADONE
            decision = TakeHomeDecision(
                patient_id=patient.id,
                site_id=patient.site_id,
                enrollment_id=order.enrollment_id,
                order_id=order.id,
                medication=Medication.METHADONE if methadone else Medication.BUPRENORPHINE,
                schedule_kind="days",
                start_on=take_on[0],
                end_on=take_on[0] + dt.timedelta(days=len(take_on) - 1),
                days=len(take_on),
                treatment_day=40,
                cap_days=28 if methadone else None,
                counted_days=len(take_on),
                storage_education_on=dispensed_on,
                recorded_by_id=self.nurse,
                **{f"{name}_met": True for name, _label in CRITERIA},
                **{f"{name}_note": "Documented." for name, _label in CRITERIA},
            )
            db.session.add(decision)
            db.session.flush()
            dispensing = TakeHomeDispensing(
                patient_id=patient.id,
                site_id=patient.site_id,
                decision_id=decision.id,
                order_id=order.id,
                dispensed_on=dispensed_on,
                dispenser_id=self.nurse,
                bottle_count=len(take_on),
            )
            db.session.add(dispensing)
            db.session.flush()
            rows = [
                self._row(
                    order,
                    DoseKind.TAKE_HOME,
                    dispensed_on,
                    amount_mg=order.dose_mg,
                    take_on=day,
                    bottle_number=number,
                    dispensing_id=dispensing.id,
                )
                for number, day in enumerate(take_on, start=1)
            ]
            db.session.add_all(rows)
            db.session.commit()
            return [r.id for r in rows]

    def reverse(self, entry_id: int, on: dt.date | None = None) -> int:
        with self.app.app_context():
            entry = db.session.get(DoseEntry, entry_id)
            row = DoseEntry(
                kind=DoseKind.REVERSAL,
                patient_id=entry.patient_id,
                site_id=entry.site_id,
                order_id=entry.order_id,
                medication=entry.medication,
                substance=entry.substance,
                strength=entry.strength,
                dosage_form=entry.dosage_form,
                dispensed_on=on or entry.dispensed_on,
                amount_mg=entry.amount_mg,
                dispenser_id=self.nurse,
                reason="Recorded for the wrong patient.",
                reverses_id=entry.id,
            )
            db.session.add(row)
            db.session.commit()
            return row.id

    def transfer(self, enrollment: int, to_program: int, on: dt.date) -> int:
        from clinic.accounts.models import User

        with self.app.app_context():
            current = db.session.get(Enrollment, enrollment)
            moved = admissions.transfer(
                current,
                db.session.get(Program, to_program),
                actor=db.session.get(User, self.nurse),
                on=on,
                asam_edition="3",
                asam_level="OTP",
                primary_counselor=None,
                expected_version=current.version,
            )
            db.session.commit()
            return moved.id

    def entered_in_error(self, patient_id: int) -> None:
        with self.app.app_context():
            patient = db.session.get(Patient, patient_id)
            patient.entered_in_error_at = dt.datetime(2025, 8, 1, tzinfo=dt.UTC)
            patient.entered_in_error_reason = "Registered twice by mistake."
            patient.entered_in_error_by_id = self.nurse
            db.session.commit()


@pytest.fixture
def ledger(app, site, make_site, make_user, make_patient, make_program, make_enrollment):
    return Ledger(app, site, make_site, make_user, make_patient, make_program, make_enrollment)


def filters_for(site_ids, *, date_from, date_to, today, program_id=None, medication=None):
    return ReportFilters(
        site_ids=tuple(site_ids),
        program_id=program_id,
        medications=MedicationGroup.members(medication) if medication else None,
        date_from=date_from,
        date_to=date_to,
        on=today,
        today=today,
        single_site=len(site_ids) == 1,
    )


def table(result, key):
    return next(t for t in result.tables if t.key == key)
