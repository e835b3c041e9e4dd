"""The audit viewer, its CSV export, the emergency-access review and the patient access
report (administrators only).

Every page reads through ``reading.AuditScope.of(current_user)``: a site administrator
sees only what concerns their sites, in the query itself. An invalid filter shows its
error and no events (the CSV export answers 400): a filter never fails open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user

from clinic.accounts.services import user_by_username
from clinic.audit import display, reading, review, services
from clinic.audit.csvsafe import csv_lines
from clinic.audit.forms import AuditFilterForm, ReportPeriodForm, ReviewForm
from clinic.audit.models import AuditAction, BreakGlassGrant
from clinic.db import utcnow
from clinic.errors import record_denied
from clinic.extensions import db
from clinic.patients.models import Patient
from clinic.security import Permission, require_permission
from clinic.web import save

bp = Blueprint("audit", __name__, url_prefix="/admin/audit")

CSV_COLUMNS = [
    "seq",
    "occurred_at",
    "username",
    "role",
    "site_id",
    "action",
    "entity_type",
    "entity_id",
    "patient_id",
    "outcome",
    "ip",
    "request_id",
    "details",
    "key_id",
    "hash",
]
CURSOR_RE = re.compile(r"[0-9]{1,30}")


def _filters(form: AuditFilterForm) -> reading.AuditFilters | None:
    """The form's filters, or None when one is invalid (the caller shows no events).
    The patient and user are looked up separately (``_resolve``)."""
    if not form.validate():
        return None
    return reading.AuditFilters(
        username=form.user.data or None,
        action=form.action.data or None,
        entity_type=form.entity.data or None,
        date_from=form.date_from.data,
        date_to=form.date_to.data,
    )


@dataclass
class Resolved:
    """The filters after the patient and user were looked up inside the scope:
    ``matches_nothing`` when one of them found no one (no events are read), with a
    ``notice`` saying so, or ``candidates`` when a name matched several patients."""

    matches_nothing: bool = False
    refused: bool = False
    notice: str | None = None
    candidates: list[Patient] | None = None


def _resolve(
    form: AuditFilterForm, filters: reading.AuditFilters, scope: reading.AuditScope
) -> Resolved:
    """Turn the patient filter into a patient in scope, and check the username prefix.
    An MRN unknown or outside the administrator's sites, and a username of another site,
    are recorded as ``access_denied`` and match nothing (the same answer for both)."""
    resolved = Resolved()
    text = (form.patient.data or "").strip()
    if text:
        lookup = reading.find_patient(current_user, scope, text)
        if lookup.patient is not None:
            filters.patient_id = lookup.patient.id
        elif lookup.refused:
            record_denied("patient", lookup.refused_id, lookup.refused_id)
            resolved.matches_nothing = resolved.refused = True
            resolved.notice = f"No patient at your sites has the MRN {text.upper()}."
        elif lookup.candidates:
            resolved.matches_nothing = True
            resolved.candidates = lookup.candidates[: reading.PATIENT_CHOICES_LIMIT]
            more = len(lookup.candidates) > reading.PATIENT_CHOICES_LIMIT
            resolved.notice = f"Several patients match \u201c{text}\u201d: choose one" + (
                " (only the first 20 are listed: type more of the name)." if more else "."
            )
        else:
            resolved.matches_nothing = True
            resolved.notice = f"No patient at your sites matches \u201c{text}\u201d."
    if filters.username and not reading.users_with_prefix(filters.username, scope):
        exact = user_by_username(filters.username)
        if exact is not None and scope.site_ids is not None:
            record_denied("user", exact.id)
            resolved.refused = True
        resolved.matches_nothing = True
        resolved.notice = (
            f"No user at your sites has a username starting with "
            f"\u201c{filters.username.strip()}\u201d."
        )
    return resolved


def _cursor() -> int | None:
    """``?before=``: a positive whole number (clamped to the chain's range by the
    service), absent, or a 400 — never a value the database cannot hold."""
    raw = request.args.get("before")
    if raw is None or raw == "":
        return None
    if not CURSOR_RE.fullmatch(raw):
        abort(400)
    return min(int(raw), services.MAX_SEQ)


def _filter_names(filters: reading.AuditFilters) -> list[str]:
    return sorted(k for k, v in vars(filters).items() if v)


def _audit_reading(
    action: AuditAction, filters: reading.AuditFilters | None, *, refused: bool
) -> None:
    services.record(
        action,
        actor=current_user,
        entity_type="audit_log",
        patient_id=filters.patient_id if filters and not refused else None,
        details={"filters": _filter_names(filters)} if filters else {"invalid_filters": True},
    )


def _first_site_timezone() -> str | None:
    """The viewer's first site's time zone: the time shown for events without a site."""
    sites = current_user.sites
    return sites[0].timezone if sites else None


@bp.get("/")
@require_permission(Permission.AUDIT_READ)
def index():
    form = AuditFilterForm(request.args)
    before = _cursor()
    scope = reading.AuditScope.of(current_user)
    filters = _filters(form)
    events, next_cursor, resolved = [], None, Resolved()
    if filters is not None:
        resolved = _resolve(form, filters, scope)
        if not resolved.matches_nothing:
            events, next_cursor = reading.event_page(filters, scope=scope, before=before)
    _audit_reading(AuditAction.VIEW, filters, refused=resolved.refused)
    return (
        render_template(
            "audit/index.html",
            form=form,
            rows=reading.viewer_rows(events, fallback_timezone=_first_site_timezone()),
            next_cursor=next_cursor,
            args=form.submitted_filters() if filters is not None else {},
            first_page=before is None,
            invalid=filters is None,
            resolved=resolved,
        ),
        200 if filters is not None else 400,
    )


@bp.get("/export.csv")
@require_permission(Permission.AUDIT_READ)
def export():
    form = AuditFilterForm(request.args)
    filters = _filters(form)
    if filters is None:
        # Fail closed: an invalid filter exports nothing, never the whole trail.
        problems = "; ".join(
            f"{form[name].label.text}: {' '.join(errors)}" for name, errors in form.errors.items()
        )
        return Response(
            f"The filters are not valid, nothing was exported. {problems}\n",
            status=400,
            mimetype="text/plain",
        )
    scope = reading.AuditScope.of(current_user)
    resolved = _resolve(form, filters, scope)
    _audit_reading(AuditAction.EXPORT, filters, refused=resolved.refused)
    # The export's own event is committed before the file streams.
    db.session.commit()

    def rows():
        if resolved.matches_nothing:
            return
        for event in reading.iter_events(filters, scope=scope):
            yield [
                event.seq,
                event.occurred_at,
                event.username,
                event.role,
                event.site_id,
                event.action.value,
                event.entity_type,
                event.entity_id,
                event.patient_id,
                event.outcome.value,
                event.ip,
                event.request_id,
                event.details,
                event.key_id,
                event.hash,
            ]

    return Response(
        stream_with_context(csv_lines(CSV_COLUMNS, rows())),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=audit-events.csv"},
    )


@bp.context_processor
def _display_helpers() -> dict:
    return {"moment": display.moment, "role_label": display.role_label}


@bp.get("/break-glass")
@require_permission(Permission.AUDIT_READ)
def break_glass():
    show_all = request.args.get("show") == "all"
    scope = reading.AuditScope.of(current_user)
    rows = review.break_glass_grants(scope, unacknowledged_only=not show_all)
    services.record(AuditAction.VIEW, actor=current_user, entity_type="break_glass_review")
    return render_template("audit/break_glass.html", rows=rows, show_all=show_all)


def _grant_or_404(grant_id: int) -> review.GrantRow:
    row = review.grant_row(reading.AuditScope.of(current_user), grant_id)
    if row is None:
        # Missing, or a patient at another site: the same answer, and on the record.
        existing = (
            db.session.get(BreakGlassGrant, grant_id) if grant_id <= services.MAX_ID else None
        )
        record_denied("break_glass_grant", grant_id, existing.patient_id if existing else None)
        abort(404)
    return row


@bp.route("/break-glass/<int:grant_id>/acknowledge", methods=["GET", "POST"])
@require_permission(Permission.AUDIT_READ)
def acknowledge(grant_id: int):
    """One emergency access in full, and its acknowledgement (outcome, note, confirm)."""
    row = _grant_or_404(grant_id)
    form = ReviewForm()
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: review.acknowledge_break_glass(
                row.grant, actor=current_user, outcome=form.outcome.data, note=form.note.data
            ),
        )
        if outcome.saved:
            flash("Acknowledged: the review's outcome is recorded.", "success")
            return redirect(url_for("audit.break_glass"))
    services.record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="break_glass_grant",
        entity_id=row.grant.id,
        patient_id=row.patient.id,
        site_id=row.patient.site_id,
    )
    status = 400 if form.errors else 200
    return render_template("audit/break_glass_review.html", row=row, form=form), status


@bp.get("/patients/<int:patient_id>")
@require_permission(Permission.AUDIT_READ)
def patient_access(patient_id: int):
    """Who accessed this patient's record, when and how: an accounting a clinic can hand
    to the patient (printable). An invalid period shows its error and no entries."""
    scope = reading.AuditScope.of(current_user)
    patient = db.session.get(Patient, patient_id) if patient_id <= services.MAX_ID else None
    if patient is None or not scope.patient_visible(patient.id):
        record_denied("patient", patient_id, patient.id if patient else None)
        abort(404)
    form = ReportPeriodForm(request.args)
    report = None
    if form.validate():
        report = review.access_report(
            patient, date_from=form.date_from.data, date_to=form.date_to.data
        )
    services.record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="patient_access_report",
        patient_id=patient.id,
        site_id=patient.site_id,
    )
    return (
        render_template(
            "audit/patient_access.html",
            patient=patient,
            site=patient.site,
            form=form,
            report=report,
            today=display.moment(utcnow(), patient.site.timezone),
        ),
        200 if report is not None else 400,
    )
