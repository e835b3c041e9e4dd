"""The accessibility tour of the reports (issue 14): the index, every report with its chart
and tables, its print layout, a filter refused next to its field and a report with no rows,
walked by tests/browser/test_a11y_browser.py (which declares the endpoints in TOURS)."""

from __future__ import annotations

import re

from playwright.sync_api import expect


def admin_report_pages(tour) -> None:
    from clinic.reports.core import REPORTS

    page = tour.visit("/reports/", "reports index")
    for slug in sorted(REPORTS, key=lambda s: (REPORTS[s].order, s)):
        tour.visit(f"/reports/{slug}", f"report {slug}")
        chart = page.get_by_test_id("report-chart")
        if chart.count():
            expect(chart).to_have_attribute("alt", REPORTS_ALT_START)
        tour.visit(f"/reports/{slug}/print", f"report {slug}, print layout")
    page = tour.visit(
        "/reports/admissions?date_from=2026-05-01&date_to=2026-04-01",
        "report with a filter refused",
        status=400,
    )
    expect(page.locator("main [aria-invalid=true]").first).to_be_visible()
    tour.visit("/reports/admissions?date_from=2001-01-01&date_to=2001-01-31", "report with no rows")


# Every chart's text alternative names its kind first ("Bar chart: ...").
REPORTS_ALT_START = re.compile(r"^(Bar|Stacked bar|Line) chart: ")
