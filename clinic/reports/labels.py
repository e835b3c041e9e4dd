"""Row labels shared by the reports: a program's (or a clinician's) name, with the site's
code when more than one site is in scope — two sites may each have a program called
"Methadone OTP", and two identical rows could not be told apart (issue 14)."""

from __future__ import annotations

from clinic.reports.filters import ReportFilters


def with_site(name: str, site_code: str | None, filters: ReportFilters) -> str:
    """``"Name — SITECODE"`` when ``filters`` count more than one site, else ``name``
    (the same label as the program filter's choices)."""
    if site_code and len(filters.site_ids) > 1:
        return f"{name} — {site_code}"
    return name
