"""Administrators' therapy page (issue 11): the drafts of deactivated clinicians, and
reassigning them to an active clinician of the session's site.

"Deactivating a clinician leaves their sessions and notes intact and their drafts listed
for an administrator to reassign." The page shows what administrators may see of a note
(its session's date, kind and site, its author, the patient it concerns): never its text.
Each patient shown is a view event (``clinic.patients.access.record_view``).

Routes on ``clinic.therapy.views.bp``; ``clinic.therapy.register`` imports this module.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectChoice

from clinic.accounts.models import User
from clinic.converters import DATABASE_INT_MAX
from clinic.extensions import db
from clinic.patients import access
from clinic.patients.models import Patient
from clinic.security import Permission, Role, require_permission
from clinic.sites.models import Site
from clinic.therapy import notes as note_services
from clinic.therapy import reading
from clinic.therapy.forms import ReassignDraftsForm
from clinic.therapy.models import ProgressNote, SessionAttendee, SessionKind, TherapySession
from clinic.therapy.views import _status, bp
from clinic.web import Once, already_sent, is_conflict, save


@dataclass(frozen=True)
class DraftRow:
    """A draft as administrators see it: no text."""

    note_id: int
    session_starts_at: dt.datetime
    timezone: str
    site_code: str
    kind: SessionKind
    group_name: str | None
    author_id: int
    author_name: str
    created_at: dt.datetime
    patient: Patient | None  # None: the group's note


def _drafts(author_id: int | None) -> list[DraftRow]:
    """The live drafts of deactivated clinicians at the administrator's sites
    (``reading.drafts_of_inactive_clinicians``), with their session, author and patient:
    two queries whatever the number of drafts."""
    ids = [entry.note_id for entry in reading.drafts_of_inactive_clinicians(current_user)]
    if not ids:
        return []
    query = (
        sa.select(
            ProgressNote.id,
            ProgressNote.author_id,
            ProgressNote.created_at,
            TherapySession.starts_at,
            TherapySession.kind,
            TherapySession.group_name,
            Site.timezone,
            Site.code,
            User.full_name,
            Patient,
        )
        .join(TherapySession, TherapySession.id == ProgressNote.session_id)
        .join(Site, Site.id == TherapySession.site_id)
        .join(User, User.id == ProgressNote.author_id)
        .outerjoin(SessionAttendee, SessionAttendee.id == ProgressNote.attendee_id)
        .outerjoin(Patient, Patient.id == SessionAttendee.patient_id)
        .where(ProgressNote.id.in_(ids))
        .order_by(TherapySession.starts_at, ProgressNote.id)
    )
    if author_id is not None:
        query = query.where(ProgressNote.author_id == author_id)
    return [
        DraftRow(
            note_id=row.id,
            session_starts_at=row.starts_at,
            timezone=row.timezone,
            site_code=row.code,
            kind=SessionKind(row.kind),
            group_name=row.group_name,
            author_id=row.author_id,
            author_name=row.full_name,
            created_at=row.created_at,
            patient=row.Patient,
        )
        for row in db.session.execute(query)
    ]


def _clinicians() -> list[User]:
    """Active clinicians at the administrator's sites (every site for an organisation-wide
    administrator): the new authors offered. One query."""
    query = sa.select(User).where(User.role == Role.CLINICIAN, User.active)
    if not current_user.all_sites:
        query = query.where(User.sites.any(Site.id.in_(current_user.site_ids or {-1})))
    return list(db.session.scalars(query.order_by(User.full_name, User.id)))


def _author_filter() -> int | None:
    value = request.args.get("author_id", type=int)
    return value if value is not None and 0 < value <= DATABASE_INT_MAX else None


def _reassign(note_ids: list[int], author_id: int) -> int:
    """Every chosen draft to the new author, or none (one transaction: ``save``)."""
    author = db.session.get(User, author_id)
    notes = db.session.scalars(
        sa.select(ProgressNote).where(ProgressNote.id.in_(note_ids)).order_by(ProgressNote.id)
    )
    count = 0
    for note in notes:
        note_services.reassign_draft(note, actor=current_user, author=author)
        count += 1
    return count


@bp.route("/admin/drafts", methods=["GET", "POST"])
@require_permission(Permission.USERS_MANAGE)
def inactive_drafts():
    """Drafts of deactivated clinicians at my sites (optionally one clinician's: the link
    from their account page); reassign one or several to an active clinician."""
    author_id = _author_filter()
    rows = _drafts(author_id)
    clinicians = _clinicians()
    form = ReassignDraftsForm()
    form.note_ids.choices = [SelectChoice(row.note_id, str(row.note_id)) for row in rows]
    form.author_id.choices = [
        SelectChoice("", "Choose…"),
        *(SelectChoice(u.id, f"{u.full_name} ({u.username})") for u in clinicians),
    ]
    once = Once(
        token=form.submission_token.data,
        user_id=current_user.id,
        kind="therapy_reassign_drafts",
        result_url=lambda _result: url_for("therapy.inactive_drafts", author_id=author_id),
    )
    # Sent again (a double click): its drafts are no longer listed, so the form itself
    # would refuse it; show the first post's result instead.
    repeated = already_sent(once) if form.is_submitted() else None
    if repeated:
        flash("This form had already been sent: the drafts were reassigned once.", "info")
        return redirect(repeated)
    status = None
    if form.validate_on_submit():
        outcome = save(form, lambda: _reassign(form.note_ids.data, form.author_id.data), once=once)
        if outcome.saved:
            if outcome.repeated_url:
                flash("This form had already been sent: the drafts were reassigned once.", "info")
            else:
                count = outcome.result
                flash(f"{count} draft{'s' if count != 1 else ''} reassigned.", "success")
            return redirect(
                outcome.repeated_url or url_for("therapy.inactive_drafts", author_id=author_id)
            )
        status = 409 if is_conflict(outcome) else 400
        rows = _drafts(author_id)  # as they are now (the failed save was rolled back)
    for row in rows:
        if row.patient is not None:
            access.record_view(row.patient, "progress_note", row.note_id)
    author_name = None
    if author_id is not None:
        author_name = next((r.author_name for r in rows if r.author_id == author_id), None)
    return render_template(
        "therapy/drafts.html",
        form=form,
        rows=rows,
        author_id=author_id,
        author_name=author_name,
        limit=reading.QUEUE_LIMIT,
    ), status or _status(form)
