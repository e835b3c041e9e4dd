"""The audit viewer, its CSV export, the emergency-access review and the patient access
report (administrators only).

Every page reads through ``services.AuditScope.of(current_user)``: a site administrator
sees only what concerns their sites, in the query itself. An invalid filter shows its
error and no events (the CSV export answers 400): a filter never fails open.
"""

from __future__ import annotations

import re

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

from clinic.accounts.forms import ConfirmForm
from clinic.accounts.services import user_by_username
from clinic.audit import services
from clinic.audit.csvsafe import csv_lines
from clinic.audit.forms import AuditFilterForm
from clinic.audit.models import AuditAction, BreakGlassGrant
from clinic.errors import record_denied
from clinic.extensions import db
from clinic.patients.models import Patient
from clinic.security import Permission, require_permission

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


def _filters(form: AuditFilterForm) -> services.AuditFilters | None:
    """The form's filters, or None when one is invalid (the caller shows no events)."""
    if not form.validate():
        return None
    return services.AuditFilters(
        username=form.user.data or None,
        patient_id=form.patient.data,
        action=form.action.data or None,
        entity_type=form.entity.data or None,
        date_from=form.date_from.data,
        date_to=form.date_to.data,
    )


def _refuse_out_of_scope(filters: services.AuditFilters, scope: services.AuditScope) -> bool:
    """Record ``access_denied`` for a patient or user filter outside the administrator's
    sites (the query then matches nothing); True when one was refused."""
    refused = False
    if filters.patient_id and not scope.patient_visible(filters.patient_id):
        exists = db.session.get(Patient, filters.patient_id) is not None
        record_denied("patient", filters.patient_id, filters.patient_id if exists else None)
        refused = True
    if filters.username and not scope.user_visible(filters.username.strip().lower()):
        user = user_by_username(filters.username)
        record_denied("user", user.id if user else None)
        refused = True
    return refused


def _cursor() -> int | None:
    """``?before=``: a positive whole number (clamped to the chain's range by the
    service), absent, or a 400 — never a value the database cannot hold."""
    raw = request.args.get("before")
    if raw is None or raw == "":
        return None
    if not CURSOR_RE.fullmatch(raw):
        abort(400)
    return min(int(raw), services.MAX_SEQ)


def _filter_names(filters: services.AuditFilters) -> list[str]:
    return sorted(k for k, v in vars(filters).items() if v)


def _audit_reading(
    action: AuditAction, filters: services.AuditFilters | None, *, refused: bool
) -> None:
    services.record(
        action,
        actor=current_user,
        entity_type="audit_log",
        patient_id=filters.patient_id if filters and not refused else None,
        details={"filters": _filter_names(filters)} if filters else {"invalid_filters": True},
    )


@bp.get("/")
@require_permission(Permission.AUDIT_READ)
def index():
    form = AuditFilterForm(request.args)
    before = _cursor()
    scope = services.AuditScope.of(current_user)
    filters = _filters(form)
    events, next_cursor, refused = [], None, False
    if filters is not None:
        refused = _refuse_out_of_scope(filters, scope)
        events, next_cursor = services.event_page(filters, scope=scope, before=before)
    _audit_reading(AuditAction.VIEW, filters, refused=refused)
    return (
        render_template(
            "audit/index.html",
            form=form,
            events=events,
            next_cursor=next_cursor,
            args=form.submitted_filters() if filters is not None else {},
            first_page=before is None,
            invalid=filters is None,
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
    scope = services.AuditScope.of(current_user)
    refused = _refuse_out_of_scope(filters, scope)
    _audit_reading(AuditAction.EXPORT, filters, refused=refused)
    # The export's own event is committed before the file streams.
    db.session.commit()

    def rows():
        for event in services.iter_events(filters, scope=scope):
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


@bp.get("/break-glass")
@require_permission(Permission.AUDIT_READ)
def break_glass():
    show_all = request.args.get("show") == "all"
    scope = services.AuditScope.of(current_user)
    grants = services.break_glass_grants(scope, unacknowledged_only=not show_all)
    services.record(AuditAction.VIEW, actor=current_user, entity_type="break_glass_review")
    return render_template(
        "audit/break_glass.html", grants=grants, show_all=show_all, form=ConfirmForm()
    )


@bp.post("/break-glass/<int:grant_id>/acknowledge")
@require_permission(Permission.AUDIT_READ)
def acknowledge(grant_id: int):
    form = ConfirmForm()
    grant = services.grant_for_review(services.AuditScope.of(current_user), grant_id)
    if grant is None:
        # Missing, or a patient at another site: the same answer, and on the record.
        existing = (
            db.session.get(BreakGlassGrant, grant_id) if grant_id <= services.MAX_ID else None
        )
        record_denied("break_glass_grant", grant_id, existing.patient_id if existing else None)
        abort(404)
    if form.validate_on_submit():
        services.acknowledge_break_glass(grant, actor=current_user)
        db.session.commit()
        flash("Acknowledged.", "success")
    return redirect(url_for("audit.break_glass"))


@bp.get("/patients/<int:patient_id>")
@require_permission(Permission.AUDIT_READ)
def patient_access(patient_id: int):
    """Who looked at or changed this patient's record, when and what (printable)."""
    scope = services.AuditScope.of(current_user)
    patient = db.session.get(Patient, patient_id) if patient_id <= services.MAX_ID else None
    if patient is None or not scope.patient_visible(patient.id):
        record_denied("patient", patient_id, patient.id if patient else None)
        abort(404)
    events = list(services.iter_events(services.AuditFilters(patient_id=patient.id), scope=scope))
    services.record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="patient_access_report",
        patient_id=patient.id,
        site_id=patient.site_id,
    )
    return render_template("audit/patient_access.html", patient=patient, events=events)
