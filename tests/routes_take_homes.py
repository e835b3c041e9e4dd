"""Authorization-matrix rows and walk records of the take homes pages (tests/route_modules.py):
the take-home review, decisions, the review list and the site calendar."""

from __future__ import annotations

from tests.matrix_rows import ADMIN_ONLY, CLINICIAN_ONLY, NOBODY_WITHOUT_FLAG, NOT_STAFF

MATRIX_ROWS: dict[tuple[str, str], dict[str, str]] = {
    ("take_homes.patient", "GET"): NOT_STAFF,
    ("take_homes.record_decision", "POST"): CLINICIAN_ONLY,
    ("take_homes.decision", "GET"): NOT_STAFF,
    ("take_homes.approve", "POST"): NOBODY_WITHOUT_FLAG,
    ("take_homes.decline", "POST"): NOBODY_WITHOUT_FLAG,
    ("take_homes.end", "POST"): CLINICIAN_ONLY,
    ("take_homes.review", "POST"): CLINICIAN_ONLY,
    ("take_homes.review_list", "GET"): NOT_STAFF,
    ("calendar.index", "GET"): ADMIN_ONLY,
    ("calendar.site", "GET"): ADMIN_ONLY,
    ("calendar.weekdays", "POST"): ADMIN_ONLY,
    ("calendar.label", "POST"): ADMIN_ONLY,
    ("calendar.add_holiday", "POST"): ADMIN_ONLY,
    ("calendar.remove_holiday", "POST"): ADMIN_ONLY,
}


def route_records(app, merged: dict, make_user) -> dict:
    """A take-home decision awaiting approval for the ``records`` patient (on its order),
    and a holiday of the MAIN site a month ahead (``decision_id``, ``closure_id``;
    ``site_id`` when no other domain gave it)."""
    import datetime as dt

    from clinic.accounts.models import User
    from clinic.extensions import db
    from clinic.medications import take_home_decisions as decisions
    from clinic.medications.models import MedicationOrder
    from clinic.medications.take_home_models import CRITERIA
    from clinic.patients.models import Patient
    from clinic.sites import calendar
    from clinic.sites.time import site_today

    clinician = make_user("clinician")
    admin = make_user("admin")
    with app.test_request_context():
        patient = db.session.get(Patient, merged["patient_id"])
        today = site_today(patient.site)
        decision = decisions.record_decision(
            patient,
            actor=db.session.get(User, clinician),
            order=db.session.get(MedicationOrder, merged["order_id"]),
            schedule_kind="days",
            start_on=today,
            days=2,
            criteria={n: decisions.Criterion(True, f"{label}.") for n, label in CRITERIA},
            storage_education_on=today,
        )
        closure = calendar.add_holiday(
            patient.site,
            actor=db.session.get(User, admin),
            closed_on=today + dt.timedelta(days=30),
            name="Matrix holiday",
        )
        db.session.commit()
        found = {"decision_id": decision.id, "closure_id": closure.id}
        if "site_id" not in merged:
            found["site_id"] = patient.site_id
        return found
