"""Authorization-matrix rows and walk records of the take homes pages (tests/route_modules.py)."""

from __future__ import annotations

MATRIX_ROWS: dict[tuple[str, str], dict[str, str]] = {}


def route_records(app, merged: dict, make_user) -> dict:
    return {}
