"""Aftercare (issue 12): the resource directory, a patient's support network, 42 CFR Part 2
consents and restriction requests, referrals and the accounting of disclosures.

``register(app)`` installs the blueprint and the chart sections; ``create_app`` calls it.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from clinic.aftercare import (
        consent_views,
        directory_views,  # noqa: F401 (its routes join views.bp)
        referral_views,
        support_views,  # noqa: F401 (its routes join views.bp)
        views,
    )

    # Page modules join views.bp here as they land (directory_views, consent_views,
    # referral_views), each with its chart sections.
    app.register_blueprint(views.bp)
    consent_views.register_chart_sections(app)
    referral_views.register_chart_sections(app)
