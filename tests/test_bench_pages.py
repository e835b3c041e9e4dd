"""The page benchmark's own logic (bench/pages_*.py): the full-scan check of the query
plans, the forms it submits as a browser would, the pager links it follows and the
comparison of the sizes. The benchmark itself runs with ``make bench``."""

from __future__ import annotations

import pytest

from bench.common import percentile
from bench.pages_client import forms_of, next_link
from bench.pages_measure import full_scans
from bench.pages_report import compare_sizes, targets

PG_PLAN = """Limit  (cost=0.43..8.45 rows=1 width=8) (actual time=0.01..0.01 rows=1 loops=1)
  ->  Nested Loop
        ->  Parallel Seq Scan on dose_entry dose_entry_1  (cost=0.00..1.00 rows=1 width=8)
        ->  Seq Scan on site  (cost=0.00..1.01 rows=1 width=4)
        ->  Index Scan using ix_enrollment_patient_id on enrollment"""

SQLITE_PLAN = """SEARCH patient USING INTEGER PRIMARY KEY (rowid=?)
SCAN progress_note
SCAN audit_event USING INDEX sqlite_autoindex_audit_event_1
  SCAN dose_entry AS d USING COVERING INDEX ix_dose
SCAN site"""


def test_a_sequential_scan_of_the_ledger_is_flagged_and_a_small_table_is_not():
    assert full_scans("postgresql", PG_PLAN) == ["dose_entry"]


def test_a_sqlite_scan_without_an_index_is_flagged_and_an_index_scan_is_not():
    assert full_scans("sqlite", SQLITE_PLAN) == ["progress_note"]


def test_a_form_is_sent_with_its_hidden_fields_selected_options_and_checked_boxes():
    html = """<form method="post" action="/x/1/dose">
      <input type="hidden" name="csrf_token" value="tok&amp;1">
      <input name="amount_mg" value="80">
      <input type="checkbox" name="dob_confirmed" value="y">
      <input type="checkbox" name="patient_ids" value="3" checked>
      <input type="checkbox" name="patient_ids" value="4" checked>
      <select name="kind"><option value="individual">I</option>
        <option value="group" selected>G</option></select>
      <select name="site_id"><option value="1">A</option><option value="2">B</option></select>
      <textarea name="note">
Hello</textarea>
      <input type="submit" name="submit" value="Save">
    </form>"""
    (form,) = forms_of(html)
    assert form.action == "/x/1/dose" and form.method == "post"
    assert form.data(dob_confirmed="y") == {
        "csrf_token": "tok&1",
        "amount_mg": "80",
        "patient_ids": ["3", "4"],
        "kind": "group",
        "site_id": "1",
        "note": "Hello",
        "dob_confirmed": "y",
    }
    assert form.options["dob_confirmed"] == ["y"]


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ('<a class="page-link" href="/patients/?after=abc&amp;q=x" rel="next">Next</a>',
         "/patients/?after=abc&q=x"),
        ('<a class="page-link" href="/patients/?page=3">Next</a>', "/patients/?page=3"),
        ('<a class="page-link" role="link" aria-disabled="true">Next</a>', None),
    ],
)  # fmt: skip
def test_the_next_page_link_is_found_by_rel_or_by_its_name(html, expected):
    assert next_link(html) == expected


def _run(size_counts: dict[str, tuple[float, int]]) -> dict:
    return {
        name: {
            "pages": [
                {"key": "chart", "median_ms": ms, "p95_ms": ms, "ratio": ms / 2, "statements": n}
            ]
        }
        for name, (ms, n) in size_counts.items()
    }


def test_a_statement_count_that_grows_with_the_data_is_flagged_and_k_is_computed():
    compared = compare_sizes(_run({"S": (10.0, 12), "M": (100.0, 13)}))
    assert compared["chart"]["statements_same"] is False
    assert compared["chart"]["k"] == compared["chart"]["k_ratio"] == 1.0


def test_a_per_patient_page_that_grows_misses_its_target_even_when_fast():
    sizes = _run({"S": (5.0, 12), "M": (10.0, 12)})
    compared = compare_sizes(sizes)
    meta = {"chart": {"target": "hot", "deep_of": None, "per_patient": True}}
    checks = targets(sizes["M"]["pages"], meta, compared)
    assert compared["chart"]["statements_same"] is True
    assert checks["chart"]["met"] is False  # k = 0.30 > 0.1


def test_the_95th_percentile_interpolates():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)
