"""The audit viewer and its CSV export (administrators only)."""

from __future__ import annotations

import csv
import io

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
from clinic.audit import services
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
    "hash",
]


def _filters(form: AuditFilterForm) -> services.AuditFilters:
    if not form.validate():
        return services.AuditFilters()
    return services.AuditFilters(
        username=form.user.data or None,
        patient_id=form.patient.data,
        action=form.action.data or None,
        entity_type=form.entity.data or None,
        date_from=form.date_from.data,
        date_to=form.date_to.data,
    )


@bp.get("/")
@require_permission(Permission.AUDIT_READ)
def index():
    form = AuditFilterForm(request.args)
    filters = _filters(form)
    before = request.args.get("before", type=int)
    events, next_cursor = services.event_page(filters, before=before)
    services.record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="audit_log",
        patient_id=filters.patient_id,
        details={"filters": _filter_names(filters)},
    )
    args = {k: v for k, v in request.args.items() if k != "before" and v}
    return render_template(
        "audit/index.html",
        form=form,
        events=events,
        next_cursor=next_cursor,
        args=args,
        first_page=before is None,
    )


def _filter_names(filters: services.AuditFilters) -> list[str]:
    return sorted(k for k, v in vars(filters).items() if v)


@bp.get("/export.csv")
@require_permission(Permission.AUDIT_READ)
def export():
    form = AuditFilterForm(request.args)
    filters = _filters(form)
    services.record(
        AuditAction.EXPORT,
        actor=current_user,
        entity_type="audit_log",
        patient_id=filters.patient_id,
        details={"filters": _filter_names(filters)},
    )
    # The export's own event is committed before the file streams.
    db.session.commit()

    def rows():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for event in services.iter_events(filters):
            writer.writerow(
                [
                    event.seq,
                    event.occurred_at.isoformat(),
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
                    event.hash,
                ]
            )
            if buffer.tell() > 64_000:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(
        stream_with_context(rows()),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=audit-events.csv"},
    )


@bp.get("/break-glass")
@require_permission(Permission.AUDIT_READ)
def break_glass():
    show_all = request.args.get("show") == "all"
    grants = services.break_glass_grants(unacknowledged_only=not show_all)
    services.record(AuditAction.VIEW, actor=current_user, entity_type="break_glass_review")
    return render_template(
        "audit/break_glass.html", grants=grants, show_all=show_all, form=ConfirmForm()
    )


@bp.post("/break-glass/<int:grant_id>/acknowledge")
@require_permission(Permission.AUDIT_READ)
def acknowledge(grant_id: int):
    form = ConfirmForm()
    grant = db.session.get(BreakGlassGrant, grant_id)
    if grant is None:
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
    patient = db.session.get(Patient, patient_id)
    sites = None if current_user.all_sites else current_user.site_ids
    if patient is None or (sites is not None and patient.site_id not in sites):
        record_denied("patient", patient_id, patient.id if patient else None)
        abort(404)
    events = list(services.iter_events(services.AuditFilters(patient_id=patient.id)))
    services.record(
        AuditAction.VIEW,
        actor=current_user,
        entity_type="patient_access_report",
        patient_id=patient.id,
        site_id=patient.site_id,
    )
    return render_template("audit/patient_access.html", patient=patient, events=events)
