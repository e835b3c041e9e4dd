"""Domains that keep their authorization-matrix rows and walk records beside their own tests.

Each module named in ``ROUTE_MODULES`` defines:

- ``MATRIX_ROWS``: ``{(endpoint, method): row(...)}`` (outcomes from ``tests.matrix_rows``),
  merged into ``tests.test_security_routes.MATRIX``;
- ``route_records(app, merged, make_user) -> dict``: the URL variables of its endpoints,
  given the records already made (``merged``), for every test that walks the endpoints.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ROUTE_MODULES = (
    "tests.routes_drug_tests",
    "tests.routes_drug_test_schedule",
    "tests.routes_take_homes",
    "tests.routes_bottles",
    "tests.routes_reports",
)


def _modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in ROUTE_MODULES]


def extra_matrix_rows() -> dict[tuple[str, str], dict[str, str]]:
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for module in _modules():
        rows.update(module.MATRIX_ROWS)
    return rows


def extra_route_records(app, merged: dict, make_user) -> dict:
    records: dict = {}
    for module in _modules():
        records.update(module.route_records(app, {**merged, **records}, make_user))
    return records
