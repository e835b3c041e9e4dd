"""Authorization-matrix rows and walk records of the reports (tests/route_modules.py)."""

from __future__ import annotations

from tests.matrix_rows import ADMIN_ONLY

MATRIX_ROWS: dict[tuple[str, str], dict[str, str]] = {
    ("reports.index", "GET"): ADMIN_ONLY,
    ("reports.show", "GET"): ADMIN_ONLY,
    ("reports.print_layout", "GET"): ADMIN_ONLY,
    ("reports.export", "GET"): ADMIN_ONLY,
}


def route_records(app, merged: dict, make_user) -> dict:
    """Every report page is walked with the census (it needs no records)."""
    return {"slug": "census"}
