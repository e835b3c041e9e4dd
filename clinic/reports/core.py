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
count, or whose numerator (percentage x denominator) is such a count, so the small count
cannot be read back from it; a totals row's count is suppressed where the total minus the
cells shown would give a suppressed count back (``export_rows``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from clinic.reports.database import read_session

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
    # For a PERCENT: the key of its denominator COUNT column. For a NUMBER (an average, a
    # median, a rate): the COUNT it is computed over; suppressed with it in exports.
    of: str | None = None


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

    @property
    def is_empty(self) -> bool:
        """No category, or no value above zero: nothing worth drawing."""
        return not any(value for _, values in self.series for value in values)


@dataclass
class ReportResult:
    tables: list[Table]
    chart: Chart | None = None
    notes: list[str] = field(default_factory=list)
    # A CSV file that is not one of the tables (the TEDS export): name -> (header, rows).
    files: dict[str, tuple[list[str], list[list[Any]]]] = field(default_factory=dict)
    # The patients a table or file names (a worklist, record-level files): table key or
    # file name -> [(patient id, site id)]. Showing or exporting it records one audit event
    # per patient, so the patient's access report lists it (42 CFR 2; HIPAA 164.312(b)).
    named_patients: dict[str, list[tuple[int, int]]] = field(default_factory=dict)


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


def _small_part(value: Any, whole: Any) -> bool:
    """A percentage of ``whole`` that gives its numerator back as a count of 1-10
    (3 of 15 is 20.0 %: 20.0 % of 15 is 3)."""
    if value is None or not isinstance(whole, int | Decimal) or isinstance(whole, bool):
        return False
    return is_small(round(float(value) * float(whole) / 100.0))


def _is_suppressed(column: Column, row: dict[str, Any]) -> bool:
    value = row.get(column.key)
    if column.kind is Kind.COUNT:
        return is_small(value)
    if column.kind is Kind.PERCENT and column.of is not None:
        whole = row.get(column.of)
        return is_small(whole) or _small_part(value, whole)
    if column.kind is Kind.NUMBER and column.of is not None:
        return is_small(row.get(column.of))
    return False


def suppressed(
    table: Table, row: dict[str, Any], *, enabled: bool, also: frozenset[str] = frozenset()
) -> list[Any]:
    """One row's cells for an export: with ``enabled``, counts of 1-10, percentages of such
    a denominator and percentages that give such a numerator back become "<11" (the
    de-identification rule for shared reports), and measures (NUMBER) declared ``of`` such
    a count (one discharge's average stay is that patient's stay); so do the columns
    named in ``also``."""
    cells = []
    for column in table.columns:
        value = row.get(column.key)
        if enabled and (column.key in also or _is_suppressed(column, row)):
            value = SMALL_CELL_TEXT
        cells.append(value)
    return cells


def _total_gives_away(column: Column, table: Table) -> bool:
    """The totals row's count of ``column`` would give a suppressed cell back: the total
    minus the cells shown is one suppressed cell, or several that add up to 1-10."""
    if column.kind is not Kind.COUNT or table.total is None:
        return False
    hidden = [row for row in table.rows if _is_suppressed(column, row)]
    if not hidden:
        return False
    if len(hidden) == 1:
        return True
    total = table.total.get(column.key)
    shown = [row.get(column.key) for row in table.rows if not _is_suppressed(column, row)]
    if not isinstance(total, int | Decimal) or isinstance(total, bool):
        return False
    return is_small(total - sum(v for v in shown if isinstance(v, int | Decimal)))


def export_rows(table: Table, *, enabled: bool) -> list[list[Any]]:
    """The table's rows and its totals row for an export, suppressed when ``enabled``. In
    the totals row a count is suppressed too where the total minus the cells shown would
    give back a suppressed cell (one small cell among large ones) or a small sum of them,
    and so are the percentages over it."""
    rows = [suppressed(table, row, enabled=enabled) for row in table.rows]
    if table.total is not None:
        hidden = {c.key for c in table.columns if _total_gives_away(c, table)}
        hidden |= {c.key for c in table.columns if c.of is not None and c.of in hidden}
        rows.append(suppressed(table, table.total, enabled=enabled, also=frozenset(hidden)))
    return rows


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


def run(report: Report, filters: ReportFilters) -> ReportResult:
    """``report.compute(filters)`` in a read-only session: on the reports database when
    ``REPORTS_DATABASE_URL`` is set, else on the primary inside the caller's transaction
    (``clinic.reports.database``). Raises ``ReportsUnavailable`` when the reports database
    cannot be reached."""
    with read_session():
        return report.compute(filters)
