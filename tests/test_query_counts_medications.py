"""Statement counts of the medication and dosing pages of one patient: the same for a long
history as for a short one (issue 15), and the exact number each runs today — the dosing
window is where a nurse waits (recording a dose: tests/test_query_counts_actions.py).

The large history has more orders (a dose change each), holds and flags (lifted and
cleared), doses and take-home bottles in the ledger (tests/patient_history.py).
"""

from __future__ import annotations

from tests.query_counts import (
    Case,
    assert_flat,
    histories_database_uri,  # noqa: F401
    histories_fixture,  # noqa: F401
    measure_get,
)

CASES: dict[str, Case] = {
    "medications.patient": Case(statements=13, shows="Hold "),
    "medications.new_order": Case(statements=15),
    "medications.change_dose": Case(statements=14),
    "medications.switch": Case(statements=14),
    "medications.end_order": Case(statements=12),
    "medications.place_hold": Case(statements=10),
    "medications.add_flag": Case(statements=10),
    "dosing.dose": Case(statements=27),
    "dosing.history": Case(statements=13, shows="<tr"),
    # A later page of the ledger (keyset: rows before the newest one).
    "dosing.history page 2": Case(query="?before={newest_dose_id}", statements=13, shows="<tr"),
    "dosing.reverse": Case(statements=11),
    "dosing.injection": Case(statements=13),
    "dosing.review": Case(statements=18),
}
# Opened on a patient with a hold in force (test below).
HELD_CASES: dict[str, Case] = {
    "medications.lift_hold": Case(statements=12),
}


def test_the_medication_pages_run_as_many_statements_for_a_long_history(app, histories):
    assert_flat(app, histories, CASES)


def test_the_hold_pages_run_as_many_statements_for_a_long_history(app, histories):
    """A hold in force on both patients: its lift page."""
    from clinic.accounts.models import User
    from clinic.extensions import db
    from clinic.medications import holds
    from clinic.patients.models import Patient

    with app.test_request_context():
        actor = db.session.get(User, histories.team.clinician)
        for ids in (histories.small, histories.large):
            hold = holds.place_hold(
                db.session.get(Patient, ids["patient_id"]),
                actor=actor,
                reason="Review",
                until_on=None,
            )
            db.session.flush()
            ids["hold_id"] = hold.id
        db.session.commit()
    found = []
    for endpoint, case in HELD_CASES.items():
        found.extend(measure_get(app, histories, endpoint, case))
    assert found == []
