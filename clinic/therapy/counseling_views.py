"""SUD counseling-note pages of the therapy blueprint (clinic/therapy/counseling.py):
writing one about an attendee of a session, reading one, the list of a patient's notes
the clinician may read (ids, dates, authors: never text), and the administrators' page of
a site's readers (grant, revoke).

A counseling note's text appears on its own page only: no chart section, history, print
layout or export shows it, and that page prints a "not printable" line in its place.
The routes are added to ``clinic.therapy.views.bp``; ``clinic.therapy.register`` imports
this module before registering it.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import Flask, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import SelectChoice

from clinic.accounts.models import User
from clinic.charts import ChartSection, register_chart_section
from clinic.errors import DomainError, record_denied
from clinic.extensions import db
from clinic.pagination import SortSpec, paginate_sorted
from clinic.patients import access
from clinic.patients.models import Patient
from clinic.security import Permission, require_permission
from clinic.sites.models import Site
from clinic.therapy import counseling, sessions
from clinic.therapy.forms import CounselingNoteForm, CounselingReaderForm, RevokeReaderForm
from clinic.therapy.models import (
    CounselingNote,
    CounselingNoteReader,
    SessionAttendee,
    TherapySession,
)
from clinic.therapy.views import _status, bp
from clinic.web import RECHECK, Once, save

NOTE_SORTS = SortSpec(
    columns={"session": TherapySession.starts_at, "written": CounselingNote.created_at},
    default="session",
)


def _local(moment, site: Site):
    return moment.astimezone(ZoneInfo(site.timezone))


# --- writing ---------------------------------------------------------------------------------


def _attendee_or_404(session_id: int, attendee_id: int) -> SessionAttendee:
    """The attendee of a session at one of the user's sites, the patient opened (a view
    event: the page names them); else 404 with an access_denied event."""
    session = sessions.session_for(current_user, session_id)
    attendee = db.session.get(SessionAttendee, attendee_id) if session is not None else None
    if session is None or attendee is None or attendee.session_id != session.id:
        record_denied("therapy_session", session_id, attendee.patient_id if attendee else None)
        abort(404)
    access.opened(attendee.patient, "therapy_session", session.id)
    return attendee


@bp.route(
    "/sessions/<int:session_id>/attendees/<int:attendee_id>/counseling-note",
    methods=["GET", "POST"],
)
@require_permission(Permission.SESSIONS_RECORD)
def write_counseling_note(session_id: int, attendee_id: int):
    """Write an SUD counseling note about one attendee: signed when saved, never changed
    afterwards. A double submit saves one note (the submission token)."""
    attendee = _attendee_or_404(session_id, attendee_id)
    session = attendee.session
    form = CounselingNoteForm()
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: counseling.add_counseling_note(
                attendee, actor=current_user, text=form.text.data
            ),
            once=Once(
                token=form.submission_token.data,
                user_id=current_user.id,
                kind="counseling_note",
                result_url=lambda note: url_for(
                    "therapy.counseling_note", counseling_note_id=note.id
                ),
            ),
        )
        if outcome.saved:
            flash("Counseling note signed and saved.", "success")
            return redirect(
                outcome.repeated_url
                or url_for("therapy.counseling_note", counseling_note_id=outcome.result.id)
            )
    return render_template(
        "therapy/counseling_write.html",
        form=form,
        session=session,
        attendee=attendee,
        about=attendee.patient.display_name,
        local_start=_local(session.starts_at, session.site),
    ), _status(form)


# --- reading ---------------------------------------------------------------------------------


@bp.get("/counseling-notes/<int:counseling_note_id>")
@require_permission(Permission.NOTES_READ)
def counseling_note(counseling_note_id: int):
    """One counseling note: its author and the clinicians its site allows; every read is
    audited (``counseling.read_counseling_note``), anyone else gets a 404."""
    note = counseling.read_counseling_note(counseling_note_id, actor=current_user)
    if note is None:
        if db.session.get(CounselingNote, counseling_note_id) is None:
            record_denied("counseling_note", counseling_note_id)
        abort(404)
    session = note.session
    return render_template(
        "therapy/counseling_note.html",
        note=note,
        session=session,
        about=db.session.get(SessionAttendee, note.attendee_id).patient.display_name,
        local_start=_local(session.starts_at, session.site),
        local_written=_local(note.created_at, session.site),
    )


@bp.get("/patients/<int:patient_id>/counseling-notes")
@require_permission(Permission.NOTES_READ)
def patient_counseling_notes(patient_id: int):
    """The counseling notes about a patient that the clinician may read: session date,
    when written, author; never the text (opening one is the audited read)."""
    patient = access.patient_or_404(patient_id)
    query = counseling.counseling_notes_for_patient_query(patient.id, actor=current_user)
    page = paginate_sorted(query, NOTE_SORTS, tiebreak=CounselingNote.id.desc())
    rows = [
        {
            "id": note.id,
            "session_start": _local(note.session.starts_at, note.session.site),
            "written": _local(note.created_at, note.session.site),
            "author": note.author.full_name,
            "mine": note.author_id == current_user.id,
        }
        for note in page.items
    ]
    to_write = [
        {
            "session": session,
            "attendee_id": attendee_id,
            "start": _local(session.starts_at, session.site),
        }
        for session, attendee_id in counseling.sessions_to_write_about(
            patient.id, actor=current_user
        )
    ]
    return render_template(
        "therapy/counseling_list.html", patient=patient, page=page, rows=rows, to_write=to_write
    )


# --- the readers a site allows -------------------------------------------------------------


def _managed_site_or_404(site_id: int) -> Site:
    """A site the administrator manages (load then authorise: 404 otherwise)."""
    site = db.session.get(Site, site_id)
    if site is None or not counseling.manages_site(current_user, site.id):
        record_denied("site", site_id)
        abort(404)
    return site


@bp.get("/counseling-readers")
@require_permission(Permission.USERS_MANAGE)
def counseling_reader_sites():
    """The sites whose counseling-note readers this administrator chooses."""
    return render_template(
        "therapy/counseling_reader_sites.html", sites=counseling.managed_sites(current_user)
    )


@bp.route("/sites/<int:site_id>/counseling-readers", methods=["GET", "POST"])
@require_permission(Permission.USERS_MANAGE)
def counseling_readers(site_id: int):
    """The clinicians allowed to read the site's counseling notes, and a form to allow
    one more (audited)."""
    site = _managed_site_or_404(site_id)
    form = CounselingReaderForm()
    candidates = counseling.grantable_clinicians(site.id)
    form.user_id.choices = [
        SelectChoice("", "Choose…"),
        *(SelectChoice(str(u.id), f"{u.full_name} ({u.username})") for u in candidates),
    ]
    if form.validate_on_submit():
        number = form.user_number
        user = db.session.get(User, number) if number is not None else None
        outcome = save(
            form,
            lambda: counseling.grant_reader(site, user, actor=current_user),
            refusals={
                "uq_counseling_note_reader_live": DomainError(
                    "This clinician already reads this site's counseling notes.",
                    field="user_id",
                )
            },
            once=Once(
                token=form.submission_token.data,
                user_id=current_user.id,
                kind="counseling_note_reader",
                result_url=lambda _grant: url_for("therapy.counseling_readers", site_id=site.id),
            ),
        )
        if outcome.saved:
            flash("The clinician may now read this site's counseling notes.", "success")
            return redirect(
                outcome.repeated_url or url_for("therapy.counseling_readers", site_id=site.id)
            )
    return render_template(
        "therapy/counseling_readers.html",
        site=site,
        form=form,
        readers=counseling.live_readers(site.id),
        zone=ZoneInfo(site.timezone),
        has_candidates=bool(candidates),
    ), _status(form)


@bp.route("/sites/<int:site_id>/counseling-readers/<int:reader_id>/revoke", methods=["GET", "POST"])
@require_permission(Permission.USERS_MANAGE)
def revoke_counseling_reader(site_id: int, reader_id: int):
    """Confirmation, then the grant is revoked (kept, with who and when)."""
    site = _managed_site_or_404(site_id)
    grant = db.session.get(CounselingNoteReader, reader_id)
    if grant is None or grant.site_id != site.id:
        record_denied("counseling_note_reader", reader_id)
        abort(404)
    if not grant.live:
        flash("This grant was already revoked.", "info")
        return redirect(url_for("therapy.counseling_readers", site_id=site.id))
    form = RevokeReaderForm()
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: counseling.revoke_reader(grant, actor=current_user),
            refusals={"counseling_note_reader_grant_immutable": RECHECK},
        )
        if outcome.saved:
            flash("The grant was revoked.", "success")
            return redirect(url_for("therapy.counseling_readers", site_id=site.id))
    return render_template(
        "therapy/counseling_revoke.html", site=site, grant=grant, form=form
    ), _status(form)


# --- the chart's pointer ----------------------------------------------------------------------


def _chart_context(patient: Patient) -> dict | None:
    """For clinicians only: how many counseling notes about this patient they may read,
    and the link to their list (never text; the section is not printed). One statement.
    Not under emergency access (the list page is not a break-glass page)."""
    if not current_user.can(Permission.NOTES_READ) or access.via_break_glass(patient):
        return None
    count = counseling.readable_count(patient.id, actor=current_user)
    return {"count": count, "patient_id": patient.id}


def register_chart_sections(app: Flask) -> None:
    register_chart_section(
        app,
        ChartSection(
            key="counseling_notes",
            template="therapy/_counseling_chart_section.html",
            context=_chart_context,
            order=31,
        ),
    )
