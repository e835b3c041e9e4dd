"""Aftercare (issue 12): the resource directory, a patient's support network, 42 CFR Part 2
consents and restriction requests, referrals and the accounting of disclosures.

``register(app)`` installs the blueprint and the chart sections; ``create_app`` calls it.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from clinic.aftercare import views

    # Page modules join views.bp here as they land (directory_views, consent_views,
    # referral_views), each with its chart sections.
    app.register_blueprint(views.bp)
