"""Statement counts of the patient, enrollment and audit pages of one patient: the same for
a long history as for a short one (issue 15: no N+1, ever), and the exact number each runs
today, so a statement added to a page is seen.

The histories (tests/patient_history.py): SMALL and LARGE of every row kind; the chart shows
them all (enrollments, orders, holds, doses, sessions and notes, drug tests, take-homes,
consents, referrals); the access report lists every audit event of the patient.
"""

from __future__ import annotations

from tests.query_counts import (  # noqa: F401
    Case,
    assert_flat,
    histories_database_uri,
    histories_fixture,
)

CASES: dict[str, Case] = {
    "patients.chart": Case(statements=45, shows="<tr"),
    "patients.edit": Case("staff", statements=10),
    "patients.entered_in_error": Case("admin", statements=10),
    "patients.admit": Case(statements=12),
    "patients.discharge": Case(statements=13),
    "patients.transfer": Case(statements=15),
    "patients.correct": Case(statements=15),
    "patients.undo_discharge": Case(statements=13),
    "patients.deadlines": Case(statements=14),
    "patients.add_review": Case(statements=14),
    # The access report: who saw or changed the record (every audit event of the patient).
    "audit.patient_access": Case("admin", statements=14, shows="<tr"),
    "audit.acknowledge": Case("admin", statements=10),
}


def test_the_patient_and_enrollment_pages_run_as_many_statements_for_a_long_history(app, histories):
    assert_flat(app, histories, CASES)
