"""Statement counts of the therapy pages of one patient (sessions, progress notes, SUD
counseling notes): the same for a long history as for a short one (issue 15), and the
exact number each runs today.

The large history has more sessions, signed notes, addenda on the note shown and
counseling notes (tests/patient_history.py).
"""

from __future__ import annotations

from tests.query_counts import (  # noqa: F401
    Case,
    assert_flat,
    histories_database_uri,
    histories_fixture,
)

DRAFT = {"note_id": "draft_note_id"}
CASES: dict[str, Case] = {
    "therapy.patient_sessions": Case(statements=15, shows="Progress "),
    "therapy.note": Case(statements=15, shows="Addendum "),
    "therapy.add_addendum": Case(statements=15, shows="Addendum "),
    "therapy.note_entered_in_error": Case(statements=15, shows="Addendum "),
    "therapy.edit_note": Case(ids=DRAFT, statements=15),
    "therapy.sign_note": Case(ids=DRAFT, statements=15),
    "therapy.record_session": Case(ids={"session_id": "planned_session_id"}, statements=12),
    "therapy.session_entered_in_error": Case(statements=12),
    "therapy.write_counseling_note": Case(statements=13),
    "therapy.counseling_note": Case(statements=13),
    "therapy.patient_counseling_notes": Case(statements=12, shows="<tr"),
}


def test_the_therapy_pages_run_as_many_statements_for_a_long_history(app, histories):
    assert_flat(app, histories, CASES)
