"""Therapy sessions, group attendance and signed progress notes (issue 11).

``register(app)`` installs the blueprint and the chart's "Sessions" section; ``create_app``
calls it.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from clinic.therapy import (
        admin_views,  # noqa: F401 (its routes join views.bp)
        caseload_views,  # noqa: F401 (its routes join views.bp)
        counseling_views,  # its routes join views.bp
        note_views,  # noqa: F401 (its routes join views.bp)
        views,
    )

    app.register_blueprint(views.bp)
    views.register_chart_sections(app)
    counseling_views.register_chart_sections(app)
