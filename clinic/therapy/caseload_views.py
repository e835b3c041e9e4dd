"""Therapy list pages (issue 11): "My caseload" and a patient's session history.

Routes on ``views.bp`` (``clinic/therapy/__init__.py`` imports this module). Both pages
read through ``clinic/therapy/reading.py`` (a constant number of SQL statements whatever
the number of patients or sessions) and record one ``view`` audit event per patient they
show, through ``clinic.patients.access``.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import render_template, request
from flask_login import current_user

from clinic.accounts.models import User
from clinic.converters import DATABASE_INT_MAX
from clinic.db import utcnow
from clinic.extensions import db
from clinic.pagination import PER_PAGE, SortedPage, list_page, requested_cursor
from clinic.patients import access
from clinic.security import Permission, require_permission
from clinic.sites.time import user_zone
from clinic.therapy import reading
from clinic.therapy.views import bp

CASELOAD_SORT_LABELS = {"name": "Patient", "days": "Days since", "rate": "This month"}


@bp.app_template_filter("therapy_site_time")
def _therapy_site_time(value: dt.datetime | None, timezone: str | None) -> str:
    """An instant in a site's own time zone: "5 Jan 2026 14:05 CST"."""
    if value is None:
        return "—"
    if value.tzinfo is None:  # SQLite gives naive UTC from some expressions
        value = value.replace(tzinfo=dt.UTC)
    local = value.astimezone(ZoneInfo(timezone or "UTC"))
    return f"{local.day} {local:%b %Y %H:%M} {local.tzname()}"


# --- my caseload -----------------------------------------------------------------------------


def _caseload_page(rows: list[reading.CaseloadRow], sort: str, desc: bool) -> SortedPage:
    """One page of the sorted caseload (sorted in Python: the rate is computed), by
    patient-id cursor like every list (``clinic.pagination.list_page``), with the links
    the ``sort_th`` and ``pager`` macros build (only ``sort`` and ``dir``)."""
    keyset = list_page(
        rows, lambda row: row.patient_id, cursor=requested_cursor(), per_page=PER_PAGE
    )
    links = {"sort": sort, "dir": "desc" if desc else "asc"}
    return SortedPage(keyset, sort_key=sort, sort_desc=desc, link_params=links)


@bp.get("/caseload")
@require_permission(Permission.SESSIONS_RECORD)
def caseload():
    """Patients whose primary counselor I am (at my sites): last attended session, days
    since, this month's attendance (my first site's month), flagged at 30 days without an
    attended session; sortable, paginated. Each patient on the page is a view event."""
    sort = request.args.get("sort", "name")
    if sort not in reading.CASELOAD_SORTS:
        sort = "name"
    descending = request.args.get("dir") == "desc"
    zone = user_zone(current_user)
    now = utcnow()
    rows = reading.caseload(
        current_user,
        today=now.astimezone(zone).date(),
        timezone=zone.key,
        sort=sort,
        descending=descending,
        now=now,
    )
    page = _caseload_page(rows, sort, descending)
    for row in page.items:
        access.record_view(row.patient, "therapy_caseload", None)
    zones = {site.id: site.timezone for site in current_user.sites}
    return render_template(
        "therapy/caseload.html",
        page=page,
        zones=zones,
        flag_days=reading.CASELOAD_FLAG_DAYS,
        month=now.astimezone(zone).date(),
    )


# --- a patient's sessions ----------------------------------------------------------------------

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def cursor_text(cursor: reading.Cursor | None) -> str | None:
    """A history page's cursor as it goes in the URL: ``<microseconds since 1970>.<id>``."""
    if cursor is None:
        return None
    starts_at, session_id = cursor
    if starts_at.tzinfo is None:
        starts_at = starts_at.replace(tzinfo=dt.UTC)
    micros = (starts_at - _EPOCH) // dt.timedelta(microseconds=1)
    return f"{micros}.{session_id}"


def parse_cursor(raw: str) -> reading.Cursor | None:
    """``?after=`` back into a cursor; anything malformed or out of range is the first
    page (never an error)."""
    micros, dot, session_id = raw.partition(".")
    if not (dot and micros.isascii() and micros.isdigit() and session_id.isascii()):
        return None
    if not session_id.isdigit() or len(micros) > 17 or len(session_id) > 10:
        return None
    number = int(session_id)
    if not 1 <= number <= DATABASE_INT_MAX:
        return None
    try:
        starts_at = _EPOCH + dt.timedelta(microseconds=int(micros))
    except OverflowError:
        return None
    if starts_at.year > 9000:
        return None
    return starts_at, number


def _author_names(page: reading.HistoryPage) -> dict[int, str]:
    """The names of the notes' and addenda's authors on the page: one query."""
    ids = set()
    for row in page.rows:
        for note in (row.group_note, row.own_note):
            if note is not None:
                ids.add(note.author_id)
                ids.update(a.author_id for a in note.addenda)
    if not ids:
        return {}
    return dict(
        db.session.execute(sa.select(User.id, User.full_name).where(User.id.in_(ids))).all()
    )


@bp.get("/patients/<int:patient_id>/sessions")
@require_permission(Permission.SESSIONS_READ)
def patient_sessions(patient_id: int):
    """The patient's sessions, newest first, keyset-paginated (``?after=``), with the
    attendance rate: the session facts and THIS patient's attendance for every role; for
    clinicians the group note, this patient's own note and addenda. Never another
    attendee. Printable. A view of this patient (``access.patient_or_404``)."""
    patient = access.patient_or_404(patient_id, entity_type="therapy_history")
    raw = request.args.get("after", "")
    after = parse_cursor(raw) if raw else None
    page = reading.patient_history(patient, viewer=current_user, after=after)
    attended, counted = reading.patient_attendance_rate(patient)
    texts = current_user.can(Permission.NOTES_READ)
    return render_template(
        "therapy/history.html",
        patient=patient,
        page=page,
        first_page=after is None,
        next_after=cursor_text(page.next_cursor),
        attended=attended,
        counted=counted,
        texts=texts,
        authors=_author_names(page) if texts else {},
    )
