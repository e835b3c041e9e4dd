"""Chart sections: how a domain adds its part to the patient chart without the chart view
knowing its rules.

A domain registers a ``ChartSection`` at start-up (``register_chart_section``); the chart
view asks each registered section for its context (``sections_for``) and the chart
template includes each section's template with that context as ``section``. A section
whose ``context`` returns ``None`` is not shown (e.g. a role that may not see it).

The section's ``context`` runs inside the chart request, after the patient was loaded and
its view recorded: it must not record another view, and must use a constant number of
SQL statements (the chart is one page, one view event).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

if TYPE_CHECKING:
    from clinic.patients.models import Patient

EXTENSION_KEY = "clinic.chart_sections"


@dataclass(frozen=True)
class ChartSection:
    """One section of the chart: ``template`` is rendered with ``section`` = the mapping
    ``context(patient)`` returns; ``order`` places it (lower first, after the summary)."""

    key: str
    template: str
    context: Callable[[Patient], dict[str, Any] | None]
    order: int = 100


def register_chart_section(app: Flask, section: ChartSection) -> None:
    """Add ``section`` to the app's chart. Raises ``ValueError`` for a key already used."""
    sections: dict[str, ChartSection] = app.extensions.setdefault(EXTENSION_KEY, {})
    if section.key in sections:
        raise ValueError(f"chart section {section.key!r} is already registered")
    sections[section.key] = section


def sections_for(patient: Patient) -> list[tuple[ChartSection, dict[str, Any]]]:
    """The sections to show on ``patient``'s chart, in order, each with its context."""
    registered = current_app.extensions.get(EXTENSION_KEY, {})
    shown = []
    for section in sorted(registered.values(), key=lambda s: (s.order, s.key)):
        context = section.context(patient)
        if context is not None:
            shown.append((section, context))
    return shown
