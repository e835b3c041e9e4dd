"""Statement counts of the take-home pages of one patient (decisions, bottles and their
labels, returns, call-backs): the same for a long history as for a short one (issue 15),
and the exact number each runs today.

The large history has more decisions, more bottles in hand and due back, and more
call-backs (tests/patient_history.py).
"""

from __future__ import annotations

from tests.query_counts import (  # noqa: F401
    Case,
    assert_flat,
    histories_database_uri,
    histories_fixture,
)

CASES: dict[str, Case] = {
    "take_homes.patient": Case(statements=25, shows="<tr"),
    "take_homes.decision": Case(statements=17),
    "take_home_bottles.patient": Case(statements=16),
    "take_home_bottles.dispense": Case(statements=17),
    # The labels to print: one per bottle of the dispensing.
    "take_home_bottles.labels": Case(statements=14, shows="Bottle"),
    "take_home_bottles.returns": Case(statements=11, shows="<tr"),
    "call_backs.start": Case(statements=11),
    "call_backs.outcome": Case(statements=11),
}


def test_the_take_home_pages_run_as_many_statements_for_a_long_history(app, histories):
    assert_flat(app, histories, CASES)
