"""The reports: an index, each report's page, its print layout and its CSV downloads.

Every report is rendered the same way from its ``ReportResult`` (``clinic.reports.core``).
Showing a report is recorded as a ``view``, its print layout as a ``print`` and a CSV
download as an ``export`` of entity type ``report`` with the report's slug and filters
(ids and dates only). Filters outside the user's sites are refused next to the field
(400), never widened or narrowed silently. The report's own queries run read-only, on the
reports database when one is configured (``clinic.reports.database``); the checks, the
filter form and the audit events stay on the primary. A reports database that is
unavailable answers 503 (nothing shown, nothing recorded).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from flask_login import current_user

from clinic.audit import AuditAction, record
from clinic.audit.csvsafe import csv_lines
from clinic.db import utcnow
from clinic.extensions import db
from clinic.reports import charts
from clinic.reports.core import (
    REPORTS,
    FilterName,
    Report,
    display,
    export_rows,
    run,
)
from clinic.reports.database import ReportsUnavailable
from clinic.reports.filters import (
    ReportFilters,
    describe,
    form_for,
    own_args,
    period_too_long,
    resolve,
)
from clinic.security import Permission, require_permission
from clinic.sites.time import user_zone

bp = Blueprint("reports", __name__, url_prefix="/reports")


def _report(slug: str) -> Report:
    report = REPORTS.get(slug)
    if report is None:
        abort(404)
    return report


def _audit(
    action: AuditAction,
    report: Report,
    filters: ReportFilters,
    named: Iterable[tuple[int, int]] = (),
    **extra: Any,
) -> None:
    details: dict[str, Any] = {
        "report": report.slug,
        "sites": list(filters.site_ids),
        "program": filters.program_id,
        "medication": None if filters.medications is None else filters.medications[0].substance,
    }
    if FilterName.PERIOD in report.filters:
        details["from"] = filters.date_from.isoformat()
        details["to"] = filters.date_to.isoformat()
    if FilterName.ON in report.filters:
        details["on"] = filters.on.isoformat()
    details.update(extra)
    record(action, actor=current_user, entity_type="report", entity_id=report.slug, details=details)
    for patient_id, site_id in dict.fromkeys(named):
        record(
            action,
            actor=current_user,
            entity_type="report",
            entity_id=report.slug,
            patient_id=patient_id,
            site_id=site_id,
        )


UNAVAILABLE = (
    "The reports database is unavailable, so this report cannot be produced now. "
    "Try again in a few minutes; the rest of the clinic works as usual."
)


def _unavailable():
    """503: the error page saying the reports database is down (not the app); nothing was
    shown, so nothing is recorded."""
    page = render_template("errors/generic.html", code=503, description=UNAVAILABLE)
    return page, 503, {"Retry-After": "60"}


def _prepare(report: Report):
    form = form_for(current_user, own_args(report, request.args))
    if not form.validate():
        return form, None
    filters = resolve(form, report, current_user)
    if period_too_long(form, report, filters):
        return form, None
    return form, filters


@bp.get("/")
@require_permission(Permission.REPORTS_READ)
def index():
    reports = sorted(REPORTS.values(), key=lambda r: (r.order, r.title))
    return render_template("reports/index.html", reports=reports)


def _page(slug: str, *, printing: bool):
    report = _report(slug)
    form, filters = _prepare(report)
    if filters is None:
        return render_template(
            "reports/show.html", report=report, form=form, result=None, printing=False
        ), 400
    try:
        result = run(report, filters)
    except ReportsUnavailable:
        return _unavailable()
    shown = [pair for t in result.tables for pair in result.named_patients.get(t.key, [])]
    _audit(AuditAction.PRINT if printing else AuditAction.VIEW, report, filters, shown)
    db.session.commit()
    chart = None
    if result.chart is not None and not result.chart.is_empty:
        chart = {
            "url": charts.data_url(charts.render_svg(result.chart)),
            "alt": charts.alt_text(result.chart),
            "title": result.chart.title,
        }
    return render_template(
        "reports/show.html",
        report=report,
        form=form,
        filters=filters,
        result=result,
        chart=chart,
        display=display,
        printing=printing,
        query=form.submitted(),
        scope=describe(form, report, filters),
        printed_at=utcnow().astimezone(user_zone(current_user)).strftime("%Y-%m-%d %H:%M %Z"),
    )


@bp.get("/<slug>")
@require_permission(Permission.REPORTS_READ)
def show(slug: str):
    return _page(slug, printing=False)


@bp.get("/<slug>/print")
@require_permission(Permission.REPORTS_READ)
def print_layout(slug: str):
    return _page(slug, printing=True)


@bp.get("/<slug>/export.csv")
@require_permission(Permission.REPORTS_READ)
def export(slug: str):
    """One table of the report (``?table=<key>``, default the first) or one of its files
    (``?file=<name>``) as CSV; small cells suppressed when ``SUPPRESS_SMALL_CELLS``."""
    report = _report(slug)
    form, filters = _prepare(report)
    if filters is None:
        problems = "; ".join(
            f"{form[name].label.text}: {' '.join(errors)}" for name, errors in form.errors.items()
        )
        return Response(
            f"The filters are not valid, nothing was exported. {problems}\n",
            status=400,
            mimetype="text/plain",
        )
    try:
        result = run(report, filters)
    except ReportsUnavailable:
        return _unavailable()
    wanted_file = request.args.get("file")
    if wanted_file is not None:
        if wanted_file not in result.files:
            abort(404)
        header, rows = result.files[wanted_file]
        name = wanted_file
        named = result.named_patients.get(wanted_file, [])
    else:
        key = request.args.get("table") or result.tables[0].key
        table = next((t for t in result.tables if t.key == key), None)
        if table is None:
            abort(404)
        enabled = bool(current_app.config.get("SUPPRESS_SMALL_CELLS"))
        header = [c.label for c in table.columns]
        rows = export_rows(table, enabled=enabled)
        name = f"{report.slug}-{table.key}"
        named = result.named_patients.get(table.key, [])
    _audit(
        AuditAction.EXPORT,
        report,
        filters,
        named,
        file=name,
        rows=len(rows),
        suppressed=bool(current_app.config.get("SUPPRESS_SMALL_CELLS")),
    )
    db.session.commit()
    filename = f"{name}-{filters.date_from.isoformat()}-{filters.date_to.isoformat()}.csv"
    if FilterName.ON in report.filters and FilterName.PERIOD not in report.filters:
        filename = f"{name}-{filters.on.isoformat()}.csv"
    return Response(
        "".join(csv_lines(header, rows)),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={filename}"},
    )


@bp.app_template_global()
def report_url(endpoint: str, slug: str, query: dict[str, str], **extra: str) -> str:
    """A report link keeping the page's own filters (and nothing else of the query)."""
    return url_for(endpoint, slug=slug, **query, **extra)
