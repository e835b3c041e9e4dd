"""Reports for administrators (issue 14): census, admissions and discharges, retention,
continuity of pharmacotherapy, counseling, drug testing, referrals, dosing and the TEDS
export.

Each report is a module that registers a ``Report`` (``clinic.reports.core``); the views in
``clinic.reports.views`` render any of them with its chart, CSV and print layout.
``register(app)`` installs the blueprint; ``create_app`` calls it.
"""

from __future__ import annotations

import importlib

from flask import Flask

# The report modules, in the order of the index (each registers its Report on import).
REPORT_MODULES = (
    "census",
    "admissions",
    "retention",
    "continuity",
    "counseling",
    "drug_testing",
    "referrals",
    "dosing",
    "teds",
)


def register(app: Flask) -> None:
    from clinic.reports import views

    for name in REPORT_MODULES:
        try:
            importlib.import_module(f"clinic.reports.{name}")
        except ModuleNotFoundError as error:  # a report still being written
            if error.name != f"clinic.reports.{name}":
                raise
    app.register_blueprint(views.bp)
