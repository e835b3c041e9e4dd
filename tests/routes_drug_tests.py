"""Authorization-matrix rows and walk records of the drug tests pages (tests/route_modules.py).

Results are for clinicians and administrators (DRUG_TESTS_READ); only clinicians record
(DRUG_TESTS_RECORD); staff are refused every page. The walk's test has a presumptive
result and is not entered in error, so its results and entered-in-error pages show their
forms; empty POSTs are refused on the page (400).
"""

from __future__ import annotations

from tests.matrix_rows import CLINICIAN_ONLY, NOT_STAFF

MATRIX_ROWS: dict[tuple[str, str], dict[str, str]] = {
    ("drug_tests.history", "GET"): NOT_STAFF,
    ("drug_tests.detail", "GET"): NOT_STAFF,
    ("drug_tests.record", "GET"): CLINICIAN_ONLY,
    ("drug_tests.record", "POST"): CLINICIAN_ONLY,
    ("drug_tests.results", "GET"): CLINICIAN_ONLY,
    ("drug_tests.results", "POST"): CLINICIAN_ONLY,
    ("drug_tests.entered_in_error", "GET"): CLINICIAN_ONLY,
    ("drug_tests.entered_in_error", "POST"): CLINICIAN_ONLY,
}


def route_records(app, merged: dict, make_user) -> dict:
    """A urine test of the ``merged`` patient collected an hour ago by a clinician of its
    site, with a presumptive opioids result: the ``test_id`` of the drug test pages."""
    import datetime as dt

    from clinic.accounts.models import User
    from clinic.db import utcnow
    from clinic.extensions import db
    from clinic.medications import drug_tests
    from clinic.patients.models import Patient

    clinician = make_user("clinician", full_name="Route Tester")
    with app.test_request_context():
        actor = db.session.get(User, clinician)
        test = drug_tests.record_test(
            db.session.get(Patient, merged["patient_id"]),
            actor=actor,
            collected_at=utcnow() - dt.timedelta(hours=1),
            specimen="urine",
            observed=True,
            reason="scheduled",
            temperature_in_range=True,
            adulteration_suspected=False,
        )
        drug_tests.record_results(
            test,
            [drug_tests.ResultRow("opioids", "negative", "presumptive")],
            actor=actor,
        )
        db.session.commit()
        return {"test_id": test.id}
