"""Authorization-matrix rows and walk records of the take-home bottle and call-back pages
(tests/route_modules.py), and the records the bottle tests share: an approved take-home
decision made directly with the model (independent of the decision service), a dispensing
through the service."""

from __future__ import annotations

import datetime as dt

from clinic.extensions import db
from tests.matrix_rows import ANY_USER, CLINICIAN_ONLY, NOBODY_WITHOUT_FLAG, NOT_STAFF

CRITERIA_NAMES = ("substance_use", "attendance", "behaviour", "diversion", "storage", "other")

MATRIX_ROWS: dict[tuple[str, str], dict[str, str]] = {
    ("take_home_bottles.dispense", "GET"): NOBODY_WITHOUT_FLAG,
    ("take_home_bottles.dispense", "POST"): NOBODY_WITHOUT_FLAG,
    ("take_home_bottles.labels", "GET"): NOT_STAFF,
    ("take_home_bottles.patient", "GET"): NOT_STAFF,
    ("take_home_bottles.returns", "GET"): CLINICIAN_ONLY,
    ("take_home_bottles.returns", "POST"): CLINICIAN_ONLY,
    ("call_backs.worklist", "GET"): ANY_USER,
    ("call_backs.start", "GET"): CLINICIAN_ONLY,
    ("call_backs.start", "POST"): CLINICIAN_ONLY,
    ("call_backs.outcome", "GET"): CLINICIAN_ONLY,
    ("call_backs.outcome", "POST"): CLINICIAN_ONLY,
}


def make_decision(
    patient_id: int,
    *,
    start_on: dt.date,
    days: int | None = 7,
    weekdays: str | None = None,
    approved: bool = True,
    user_id: int,
    medication: str = "methadone",
):
    """An approved take-home decision (in an app or request context; flushed, not
    committed). ``weekdays``: a weekly schedule instead of a run of ``days``."""
    from clinic.medications.take_home_models import ScheduleKind, TakeHomeDecision
    from clinic.patients.models import Enrollment, Patient

    patient = db.session.get(Patient, patient_id)
    enrollment = db.session.scalars(
        db.select(Enrollment).where(Enrollment.patient_id == patient_id).order_by(Enrollment.id)
    ).first()
    from clinic.medications.models import MedicationOrder

    order = db.session.scalars(
        db.select(MedicationOrder)
        .where(MedicationOrder.enrollment_id == enrollment.id)
        .order_by(MedicationOrder.id.desc())
    ).first()
    weekly = weekdays is not None
    now = dt.datetime.now(dt.UTC)
    decision = TakeHomeDecision(
        patient_id=patient_id,
        site_id=patient.site_id,
        enrollment_id=enrollment.id,
        order_id=order.id,
        medication=medication,
        schedule_kind=ScheduleKind.WEEKLY if weekly else ScheduleKind.DAYS,
        start_on=start_on,
        end_on=None if weekly else start_on + dt.timedelta(days=(days or 1) - 1),
        days=None if weekly else days,
        weekdays=weekdays,
        treatment_day=max((start_on - enrollment.admitted_on).days, 0),
        cap_days=28 if medication == "methadone" else None,
        counted_days=0,
        storage_education_on=start_on,
        recorded_by_id=user_id,
        approved_by_id=user_id if approved else None,
        approved_at=now if approved else None,
        **{f"{name}_met": True for name in CRITERIA_NAMES},
        **{f"{name}_note": "Documented." for name in CRITERIA_NAMES},
    )
    db.session.add(decision)
    db.session.flush()
    return decision


def route_records(app, merged: dict, make_user) -> dict:
    """A decision for the ``records`` patient, a dispensing of two bottles by a dispenser,
    a call-back awaiting its outcome; ``bottle_id`` and ``incident_id`` for completeness."""
    from clinic.accounts.models import User
    from clinic.medications import call_backs, take_home_bottles
    from clinic.medications.take_home_models import DiversionIncident, IncidentSource
    from clinic.patients.models import Patient
    from clinic.sites.time import site_today

    nurse = make_user("clinician", may_dispense=True)
    clinician = make_user("clinician")
    with app.test_request_context():
        patient = db.session.get(Patient, merged["patient_id"])
        today = site_today(patient.site)
        make_decision(patient.id, start_on=today + dt.timedelta(days=1), days=3, user_id=nurse)
        dispensing = take_home_bottles.dispense_take_homes(
            patient, actor=db.session.get(User, nurse), count=2
        )
        bottle = take_home_bottles.dispensing_bottles(dispensing)[0]
        call_back = call_backs.start_call_back(patient, actor=db.session.get(User, clinician))
        incident = DiversionIncident(
            patient_id=patient.id,
            site_id=patient.site_id,
            found_on=today,
            source=IncidentSource.BOTTLE_RETURN,
            description="matrix incident",
            recorded_by_id=clinician,
        )
        db.session.add(incident)
        db.session.commit()
        return {
            "dispensing_id": dispensing.id,
            "bottle_id": bottle.id,
            "call_back_id": call_back.id,
            "incident_id": incident.id,
        }
