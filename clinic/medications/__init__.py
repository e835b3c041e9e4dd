"""Medication for opioid use disorder: orders, holds and flags, the dosing window and its
dose ledger (21 CFR 1304.24), missed-dose reviews and injections.

``register(app)`` installs the blueprints and the chart sections; ``create_app`` calls it.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from clinic.medications import dosing_views, views

    app.register_blueprint(views.bp)
    app.register_blueprint(dosing_views.bp)
    views.register_chart_sections(app)
    dosing_views.register_chart_sections(app)
