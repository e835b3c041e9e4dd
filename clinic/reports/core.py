"""What a report is and what it returns: the shapes every report module fills in.

A report module builds one ``Report`` (its slug, title, the filters it reads and a
``compute(filters)`` function) and registers it with ``register_report``. ``compute`` runs
a constant number of SQL statements (aggregation in the database: GROUP BY and window
functions, never a Python loop over patients or doses) and returns a ``ReportResult``:
one or more ``Table``s, an optional ``Chart`` and notes on definitions. The views render
every report the same way: the tables, the chart as server-side SVG, a CSV download per
table (recorded as an export) and a print layout.

Small cells: with ``SUPPRESS_SMALL_CELLS`` set, a count from 1 to 10 is written as "<11"
in exports (``suppressed``), and so is a percentage whose denominator column is such a
count, so the small count cannot be read back from it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clinic.reports.filters import ReportFilters

SMALL_CELL_MAX = 10
SMALL_CELL_TEXT = "<11"


class Kind(StrEnum):
    """How a column's values are shown and exported."""

    TEXT = "text"
    COUNT = "count"  # a number of patients, events or records: small cells are suppressed
    PERCENT = "percent"  # 0-100, one decimal place; ``of`` names its denominator column
    NUMBER = "number"  # a measure (days, mg, rate): one decimal place
    DATE = "date"


class FilterName(StrEnum):
    """The filters a report may read; the form shows only those the report declares."""

    SITE = "site"
    PROGRAM = "program"
    MEDICATION = "medication"
    PERIOD = "period"  # date_from .. date_to (site-local dates, both included)
    ON = "on"  # one reference date (the census)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: Kind = Kind.TEXT
    of: str | None = None  # for a PERCENT: the key of its denominator COUNT column


@dataclass
class Table:
    """Rows of one table: each row a dict keyed by the columns' keys."""

    key: str
    title: str
    columns: Sequence[Column]
    rows: list[dict[str, Any]]
    empty: str = "Nothing to count for these filters."
    total: dict[str, Any] | None = None  # an optional totals row, shown last


class ChartKind(StrEnum):
    BAR = "bar"  # grouped bars: one group per category, one bar per series
    STACKED_BAR = "stacked_bar"
    LINE = "line"  # one line per series over the categories (a curve)


@dataclass
class Chart:
    """A chart the views render as SVG (``clinic.reports.charts``).

    ``categories`` label the x axis; each series is ``(name, values)`` with one value per
    category (None for no value). ``percent`` draws the y axis from 0 to 100 %.
    """

    kind: ChartKind
    title: str
    categories: list[str]
    series: list[tuple[str, list[float | int | None]]]
    x_label: str = ""
    y_label: str = ""
    percent: bool = False


@dataclass
class ReportResult:
    tables: list[Table]
    chart: Chart | None = None
    notes: list[str] = field(default_factory=list)
    # A CSV file that is not one of the tables (the TEDS export): name -> (header, rows).
    files: dict[str, tuple[list[str], list[list[Any]]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """One report: ``compute(filters) -> ReportResult``; ``default_period(today)`` gives
    the period (first day, last day) used when the request names none."""

    slug: str
    title: str
    summary: str
    filters: frozenset[FilterName]
    compute: Callable[[ReportFilters], ReportResult]
    default_period: Callable[[dt.date], tuple[dt.date, dt.date]] | None = None
    order: int = 100


REPORTS: dict[str, Report] = {}


def register_report(report: Report) -> Report:
    """Add a report to the index (its slug must be new)."""
    if report.slug in REPORTS and REPORTS[report.slug] is not report:
        raise ValueError(f"report {report.slug!r} is registered twice")
    REPORTS[report.slug] = report
    return report


def percent(part: int | float | None, whole: int | float | None) -> float | None:
    """``part`` as a percentage of ``whole`` (0-100), None when ``whole`` is 0 or None."""
    if not whole or part is None:
        return None
    return round(100.0 * float(part) / float(whole), 1)


def is_small(value: Any) -> bool:
    """A count from 1 to ``SMALL_CELL_MAX``."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return False
    return 1 <= value <= SMALL_CELL_MAX


def suppressed(table: Table, row: dict[str, Any], *, enabled: bool) -> list[Any]:
    """One row's cells for an export: with ``enabled``, counts of 1-10 and percentages of
    such a denominator become "<11" (the de-identification rule for shared reports)."""
    cells = []
    for column in table.columns:
        value = row.get(column.key)
        small = (column.kind is Kind.COUNT and is_small(value)) or (
            column.kind is Kind.PERCENT and column.of is not None and is_small(row.get(column.of))
        )
        if enabled and small:
            value = SMALL_CELL_TEXT
        cells.append(value)
    return cells


def display(column: Column, value: Any) -> str:
    """A cell as text for the page."""
    if value is None:
        return "—"
    if column.kind is Kind.PERCENT:
        return f"{float(value):.1f} %"
    if column.kind is Kind.NUMBER:
        return f"{float(value):,.1f}"
    if column.kind is Kind.COUNT:
        return f"{int(value):,}"
    if column.kind is Kind.DATE and isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
