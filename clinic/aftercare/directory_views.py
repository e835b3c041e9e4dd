"""The resource directory's pages (issue 12): the list (filters, sortable columns, pages),
a resource, adding and changing one, deactivating and reactivating it, CSV import and
export. Everyone with AFTERCARE_READ (staff, clinicians, administrators) reads it; staff
and administrators (RESOURCES_MANAGE) change it.

The directory holds no patient information: its pages record no view events; every change
is audited by the service, and the export as an export.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import (
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from wtforms import SelectChoice

from clinic.aftercare import directory, directory_csv
from clinic.aftercare.directory_forms import (
    ActiveForm,
    DirectoryFilterForm,
    EditResourceForm,
    ImportForm,
    ResourceForm,
)
from clinic.aftercare.models import AftercareResource, ResourceKind, Tristate
from clinic.aftercare.views import bp
from clinic.db import utcnow
from clinic.errors import record_denied
from clinic.extensions import db
from clinic.pagination import paginate_sorted
from clinic.patients.contact import format_phone
from clinic.security import Permission, require_permission
from clinic.sites.models import Site
from clinic.sites.time import user_today, user_zone
from clinic.web import Once, conflict_rows, save, shown_day

DIRECTORY_URL = "aftercare.directory_index"


def _moment(value: dt.datetime) -> str:
    """An instant in the user's time zone: "26 Jan 2026 14:05 CST"."""
    local = value.astimezone(user_zone(current_user))
    return f"{shown_day(local.date())} {local:%H:%M} {local.tzname()}"


def _today_for(resource: AftercareResource, viewer_today: dt.date) -> dt.date:
    """The site-local day of the resource's site area, else the user's own day."""
    if resource.site is not None:
        return utcnow().astimezone(ZoneInfo(resource.site.timezone)).date()
    return viewer_today


def _resource_or_404(resource_id: int) -> AftercareResource:
    resource = directory.resource_by_id(resource_id)
    if resource is None:
        record_denied(directory.ENTITY, resource_id)
        abort(404)
    return resource


def _all_sites() -> list[Site]:
    return list(db.session.scalars(db.select(Site).order_by(Site.code)))


# --- the list ------------------------------------------------------------------------------


def _filters(form: DirectoryFilterForm) -> directory.DirectoryFilters | None:
    """The query string's filters, or None when one is not valid (nothing is listed or
    exported then: a filter never fails open)."""
    form.area.choices = [SelectChoice("", "Any site area")] + [
        SelectChoice(str(s.id), f"{s.code} — {s.name}") for s in _all_sites()
    ]
    if not form.validate():
        return None
    return directory.DirectoryFilters(
        kind=ResourceKind(form.kind.data) if form.kind.data else None,
        accepts_moud=Tristate(form.moud.data) if form.moud.data else None,
        accepts_methadone=Tristate(form.methadone.data) if form.methadone.data else None,
        beds_available=bool(form.beds.data),
        city=(form.city.data or "").strip() or None,
        site_id=int(form.area.data) if form.area.data else None,
        text=(form.q.data or "").strip() or None,
        include_inactive=bool(form.inactive.data),
    )


@bp.get("/resources/")
@require_permission(Permission.AFTERCARE_READ)
def directory_index():
    """The directory: filters, sortable columns, 50 a page; beds confirmed more than 14
    days ago are marked stale. A constant number of statements whatever the rows."""
    form = DirectoryFilterForm(request.args)
    filters = _filters(form)
    page = None
    stale: set[int] = set()
    if filters is not None:
        page = paginate_sorted(
            directory.search_query(filters),
            directory.DIRECTORY_SORTS,
            tiebreak=AftercareResource.id,
        )
        viewer_today = user_today(current_user)
        stale = {r.id for r in page.items if directory.beds_stale(r, _today_for(r, viewer_today))}
    filtered = any(request.args.get(k) for k in directory.DIRECTORY_SORTS.params if k != "inactive")
    return render_template(
        "aftercare/directory_index.html",
        form=form,
        page=page,
        stale=stale,
        filtered=filtered,
        export_args={
            k: v for k, v in request.args.items() if k in directory.DIRECTORY_SORTS.params
        },
        format_phone=format_phone,
    ), (200 if filters is not None else 400)


@bp.get("/resources/export.csv")
@require_permission(Permission.AFTERCARE_READ)
def directory_export():
    """The filtered directory as CSV (the import's columns), audited as an export."""
    form = DirectoryFilterForm(request.args)
    filters = _filters(form)
    if filters is None:
        problems = "; ".join(
            f"{form[name].label.text}: {' '.join(errors)}" for name, errors in form.errors.items()
        )
        return Response(
            f"The filters are not valid, nothing was exported. {problems}\n",
            status=400,
            mimetype="text/plain",
        )
    resources = directory.export_rows(filters)
    rows = [directory_csv.export_row(r) for r in resources]
    directory.record_export(actor=current_user, filters=filters, count=len(rows))
    db.session.commit()  # the export's own event, before the file goes
    # The rows are read already: the file is written without the request's context, which
    # a streamed response would hold open (and its session) until the client reads it all.
    return Response(
        "".join(directory_csv.export_lines(rows)),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=aftercare-directory.csv"},
    )


# --- one resource --------------------------------------------------------------------------


@bp.get("/resources/<int:resource_id>")
@require_permission(Permission.AFTERCARE_READ)
def directory_resource(resource_id: int):
    resource = _resource_or_404(resource_id)
    today = _today_for(resource, user_today(current_user))
    return render_template(
        "aftercare/directory_detail.html",
        resource=resource,
        stale=directory.beds_stale(resource, today),
        phone=format_phone(resource.phone),
        added=_moment(resource.created_at),
        changed=_moment(resource.updated_at),
    )


def _site_choices(form: ResourceForm) -> None:
    form.site_id.choices = [SelectChoice(0, "None")] + [
        SelectChoice(s.id, f"{s.code} — {s.name}") for s in _all_sites()
    ]


def _data(form: ResourceForm) -> directory.ResourceData:
    return directory.ResourceData(
        name=form.name.data or "",
        kind=form.kind.data or "",
        narr_level=form.narr_level.data or None,
        support_group_type=form.support_group_type.data or None,
        street=form.street.data,
        city=form.city.data,
        state=form.state.data,
        postal_code=form.postal_code.data,
        phone=form.phone.data,
        email=form.email.data,
        contact_name=form.contact_name.data,
        accepts_moud=form.accepts_moud.data or Tristate.UNKNOWN,
        accepts_methadone=form.accepts_methadone.data or Tristate.UNKNOWN,
        beds_total=form.beds_total.data,
        beds_available=form.beds_available.data,
        beds_confirmed_on=form.beds_confirmed_on.data,
        meeting_times=form.meeting_times.data,
        gender_served=form.gender_served.data or "all",
        notes=form.notes.data,
        site_id=form.site_id.data or None,
    )


def _status(form) -> int:
    return 400 if form.errors or form.form_errors else 200


@bp.route("/resources/new", methods=["GET", "POST"])
@require_permission(Permission.RESOURCES_MANAGE)
def directory_new():
    form = ResourceForm()
    _site_choices(form)
    if request.method == "GET" and not form.restored:
        form.site_id.data = current_user.sites[0].id if current_user.sites else 0
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: directory.create_resource(
                actor=current_user, data=_data(form), today=user_today(current_user)
            ),
            once=Once(
                token=form.submission_token.data,
                user_id=current_user.id,
                kind="aftercare_resource",
                result_url=lambda r: url_for("aftercare.directory_resource", resource_id=r.id),
            ),
        )
        if outcome.repeated_url:
            flash("This form had already been sent: the resource was added once.", "info")
            return redirect(outcome.repeated_url)
        if outcome.saved:
            flash(f"{outcome.result.name} added to the directory.", "success")
            return redirect(url_for("aftercare.directory_resource", resource_id=outcome.result.id))
    return render_template(
        "aftercare/directory_form.html", form=form, resource=None, conflict=None
    ), _status(form)


def _saved_values(resource: AftercareResource) -> dict[str, str]:
    """The resource as the edit form shows it, for a conflict's comparison."""

    def label(value) -> str:
        return value.label if value is not None else "—"

    def number(value) -> str:
        return "—" if value is None else str(value)

    return {
        "name": resource.name,
        "kind": label(resource.kind),
        "narr_level": label(resource.narr_level),
        "support_group_type": label(resource.support_group_type),
        "street": resource.street or "—",
        "city": resource.city or "—",
        "state": resource.state or "—",
        "postal_code": resource.postal_code or "—",
        "phone": format_phone(resource.phone) or "—",
        "email": resource.email or "—",
        "contact_name": resource.contact_name or "—",
        "accepts_moud": label(resource.accepts_moud),
        "accepts_methadone": label(resource.accepts_methadone),
        "beds_total": number(resource.beds_total),
        "beds_available": number(resource.beds_available),
        "beds_confirmed_on": shown_day(resource.beds_confirmed_on)
        if resource.beds_confirmed_on
        else "—",
        "meeting_times": resource.meeting_times or "—",
        "gender_served": label(resource.gender_served),
        "notes": resource.notes or "—",
        "site_id": f"{resource.site.code} — {resource.site.name}" if resource.site else "None",
    }


@bp.route("/resources/<int:resource_id>/edit", methods=["GET", "POST"])
@require_permission(Permission.RESOURCES_MANAGE)
def directory_edit(resource_id: int):
    resource = _resource_or_404(resource_id)
    form = EditResourceForm(obj=resource) if request.method == "GET" else EditResourceForm()
    _site_choices(form)
    if request.method == "GET" and not form.restored:
        for name in ("kind", "narr_level", "support_group_type", "accepts_moud"):
            value = getattr(resource, name)
            getattr(form, name).data = value.value if value is not None else ""
        form.accepts_methadone.data = resource.accepts_methadone.value
        form.gender_served.data = resource.gender_served.value
        form.phone.data = format_phone(resource.phone)
        form.site_id.data = resource.site_id or 0
        form.version.data = resource.version
    conflict = None
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: directory.update_resource(
                resource,
                actor=current_user,
                data=_data(form),
                expected_version=form.version_number,
                today=user_today(current_user),
            ),
            once=Once(
                token=form.submission_token.data,
                user_id=current_user.id,
                kind="aftercare_resource_edit",
                result_url=lambda _r: url_for(
                    "aftercare.directory_resource", resource_id=resource.id
                ),
                required=False,
            ),
        )
        if outcome.repeated_url:
            flash("This form had already been sent: it was saved once.", "info")
            return redirect(outcome.repeated_url)
        if outcome.saved:
            flash("Saved." if outcome.result else "Nothing changed.", "success")
            return redirect(url_for("aftercare.directory_resource", resource_id=resource.id))
        conflict = conflict_rows(outcome, form, resource, _saved_values)
    return render_template(
        "aftercare/directory_form.html", form=form, resource=resource, conflict=conflict
    ), _status(form)


def _set_active(resource_id: int, active: bool):
    resource = _resource_or_404(resource_id)
    detail = url_for("aftercare.directory_resource", resource_id=resource.id)
    if resource.active == active:
        flash(
            "This resource is already active." if active else "This resource is already inactive.",
            "info",
        )
        return redirect(detail)
    form = ActiveForm()
    if request.method == "GET" and not form.restored:
        form.version.data = resource.version
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: directory.set_active(
                resource, actor=current_user, active=active, expected_version=form.version_number
            ),
        )
        if outcome.saved:
            flash(
                f"{resource.name} is active again."
                if active
                else f"{resource.name} is inactive: it is no longer listed.",
                "success",
            )
            return redirect(detail)
        if outcome.error is not None:
            db.session.refresh(resource)
            form.version.data = resource.version
    return render_template(
        "aftercare/directory_active.html", form=form, resource=resource, active=active
    ), _status(form)


@bp.route("/resources/<int:resource_id>/deactivate", methods=["GET", "POST"])
@require_permission(Permission.RESOURCES_MANAGE)
def directory_deactivate(resource_id: int):
    """Confirmation page, then the resource is no longer listed (it stays on record)."""
    return _set_active(resource_id, False)


@bp.route("/resources/<int:resource_id>/reactivate", methods=["GET", "POST"])
@require_permission(Permission.RESOURCES_MANAGE)
def directory_reactivate(resource_id: int):
    return _set_active(resource_id, True)


# --- import --------------------------------------------------------------------------------

# Room for the form's other fields and the multipart framing around the file.
_REQUEST_SLACK = 64_000


@bp.route("/resources/import", methods=["GET", "POST"])
@require_permission(Permission.RESOURCES_MANAGE)
def directory_import():
    """Upload a directory file: every row imported, or none (the report names the refused
    rows). "Only check" shows the report and imports nothing."""
    too_large = (request.content_length or 0) > directory_csv.MAX_BYTES + _REQUEST_SLACK
    form = ImportForm()
    report = None
    if too_large and request.method == "POST":
        form.file.errors = [
            f"The file is larger than {directory_csv.MAX_BYTES // 1000:,} KB: split it."
        ]
        return render_template(
            "aftercare/directory_import.html", form=form, report=None, columns=directory_csv.COLUMNS
        ), 400
    if form.validate_on_submit():
        upload = form.file.data
        if upload is None or not getattr(upload, "filename", ""):
            form.file.errors = ["Choose the CSV file to import."]
        else:
            try:
                raw = upload.read(directory_csv.MAX_BYTES + 1)
            finally:
                upload.close()
            check_only = bool(form.check_only.data)
            outcome = save(
                form,
                lambda: directory_csv.import_directory(
                    raw, actor=current_user, today=user_today(current_user), check_only=check_only
                ),
                once=None
                if check_only
                else Once(
                    token=form.submission_token.data,
                    user_id=current_user.id,
                    kind="aftercare_directory_import",
                    result_url=lambda _report: url_for(DIRECTORY_URL),
                ),
            )
            if outcome.repeated_url:
                flash("This file had already been imported once.", "info")
                return redirect(outcome.repeated_url)
            if outcome.saved and not check_only:
                flash(f"{outcome.result.imported} resources imported.", "success")
                return redirect(url_for(DIRECTORY_URL))
            if outcome.saved:
                report = outcome.result
            elif isinstance(outcome.error, directory_csv.ImportRefused):
                report = outcome.error.report
    return render_template(
        "aftercare/directory_import.html",
        form=form,
        report=report,
        columns=directory_csv.COLUMNS,
    ), _status(form)
