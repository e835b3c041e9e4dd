"""The audit viewer and its CSV export (administrators only)."""

from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, render_template, request, stream_with_context
from flask_login import current_user

from clinic.audit import services
from clinic.audit.forms import AuditFilterForm
from clinic.audit.models import AuditAction
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
    from clinic.extensions import db

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
