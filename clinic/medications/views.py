"""Medication orders, stop-dose holds and flags (placeholder until task M-orders fills it)."""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("medications", __name__, url_prefix="/medications")


def register_chart_sections(app: Flask) -> None:
    """Add the medication section to the patient chart."""
