"""The dosing window, the dose ledger and the daily dispensing log (placeholder until task
M-dosing fills it)."""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("dosing", __name__, url_prefix="/dosing")


def register_chart_sections(app: Flask) -> None:
    """Add the recent-doses section to the patient chart."""
