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
    from clinic.medications import drug_test_schedule_views

    app.register_blueprint(drug_test_schedule_views.bp)
    drug_test_schedule_views.register_chart_sections(app)
    from clinic.medications import drug_test_views

    app.register_blueprint(drug_test_views.bp)
    drug_test_views.register_chart_sections(app)
    from clinic.medications import take_home_views
    from clinic.sites import calendar_views

    app.register_blueprint(take_home_views.bp)
    take_home_views.register_chart_sections(app)
    app.register_blueprint(calendar_views.bp)
    from clinic.medications import call_back_views, take_home_bottle_views

    app.register_blueprint(take_home_bottle_views.bp)
    app.register_blueprint(call_back_views.bp)
    take_home_bottle_views.register_chart_sections(app)
