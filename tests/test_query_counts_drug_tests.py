"""Statement counts of the drug-test pages of one patient: the same for a long history as
for a short one (issue 15), and the exact number each runs today.

The large history has more tests, each with more results (tests/patient_history.py).
"""

from __future__ import annotations

from tests.query_counts import (  # noqa: F401
    Case,
    assert_flat,
    histories_database_uri,
    histories_fixture,
)

CASES: dict[str, Case] = {
    "drug_tests.history": Case(statements=15, shows="negative"),
    # A later page (keyset: tests before the newest one).
    "drug_tests.history page 2": Case(
        query="?before={newest_test_id}", statements=15, shows="negative"
    ),
    "drug_tests.record": Case(statements=10),
    "drug_tests.detail": Case(statements=16, shows="negative"),
    "drug_tests.results": Case(statements=16, shows="negative"),
    "drug_tests.entered_in_error": Case(statements=16),
}


def test_the_drug_test_pages_run_as_many_statements_for_a_long_history(app, histories):
    assert_flat(app, histories, CASES)
