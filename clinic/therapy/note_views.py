"""Note pages of the therapy blueprint: a note with its addenda, editing and signing a
draft, addenda, co-signature and marking a note entered in error.

The routes are added to ``clinic.therapy.views.bp`` (one blueprint, ``therapy.*``
endpoints); ``clinic.therapy.register`` imports this module before registering it.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from clinic.accounts.models import User
from clinic.errors import record_denied
from clinic.extensions import db
from clinic.patients import access
from clinic.security import Permission, require_permission
from clinic.therapy import notes as note_services
from clinic.therapy.forms import (
    AddendumForm,
    CosignForm,
    EnteredInErrorForm,
    NoteForm,
    SignForm,
)
from clinic.therapy.models import ProgressNote
from clinic.therapy.views import NAMES_WARNING, OWN_NAMES_WARNING, _status, bp
from clinic.web import Once, conflict_rows, save

# --- notes -----------------------------------------------------------------------------------


def _note_or_404(note_id: int) -> ProgressNote:
    """A note within the user's sites (clinicians only: ``note_for``), each patient it
    concerns opened (one view event each: the page shows the note's text)."""
    note = note_services.note_for(current_user, note_id)
    if note is None:
        record_denied("progress_note", note_id)
        abort(404)
    if note.attendee is not None:
        access.opened(note.attendee.patient, "progress_note", note.id)
    else:
        for attendee in note.session.attendees:
            access.opened(attendee.patient, "progress_note", note.id)
    return note


def _note_url(note: ProgressNote) -> str:
    return url_for("therapy.note", note_id=note.id)


def _people(note: ProgressNote) -> dict[int, str]:
    """The names of who wrote, signed and co-signs the note and its addenda (a supervisor
    co-signing, or a clinician given a deactivated colleague's draft, must see whose words
    they are): one query."""
    ids = {note.author_id, note.signed_by_id, note.cosigner_id}
    ids.update(a.author_id for a in note.addenda)
    ids.discard(None)
    return dict(
        db.session.execute(sa.select(User.id, User.full_name).where(User.id.in_(ids))).all()
    )


def _note_page(template: str, note: ProgressNote, form, status: int = 200, **context):
    attendee = note.attendee
    return render_template(
        template,
        note=note,
        form=form,
        session=note.session,
        people=_people(note),
        about=attendee.patient.display_name if attendee is not None else None,
        local_start=note.session.starts_at.astimezone(ZoneInfo(note.session.site.timezone)),
        **context,
    ), status


def _edit_once(form, note: ProgressNote, kind: str) -> Once:
    return Once(
        token=form.submission_token.data,
        user_id=current_user.id,
        kind=kind,
        result_url=lambda _result: url_for("therapy.note", note_id=note.id),
        required=False,
    )


@bp.get("/notes/<int:note_id>")
@require_permission(Permission.NOTES_READ)
def note(note_id: int):
    """A note with its addenda and what may be done with it (edit, sign, add an
    addendum, co-sign, mark entered in error)."""
    shown = _note_or_404(note_id)
    return _note_page("therapy/note.html", shown, CosignForm())


@bp.route("/notes/<int:note_id>/edit", methods=["GET", "POST"])
@require_permission(Permission.SESSIONS_RECORD)
def edit_note(note_id: int):
    """Edit a draft: a conflict (someone saved it meanwhile) shows both texts."""
    shown = _note_or_404(note_id)
    if shown.signed or shown.entered_in_error:
        flash(
            note_services.SIGNED_MESSAGE if shown.signed else note_services.IN_ERROR_MESSAGE,
            "warning",
        )
        return redirect(_note_url(shown))
    form = NoteForm()
    if request.method == "GET" and not form.restored:
        form.text.data = shown.text
        form.version.data = shown.version
    conflict = None
    if form.validate_on_submit():
        # Another attendee named: a warning before saving (their chart names no other).
        named = note_services.note_name_warnings(shown.session, form.text.data, shown.attendee)
        if named and not form.confirm_names.data:
            form.text.errors = [*form.text.errors, _names_warning(shown, named)]
            return _note_page("therapy/note_edit.html", shown, form, 400, warnings=named)
        outcome = save(
            form,
            lambda: note_services.save_draft(
                shown.session,
                actor=current_user,
                text=form.text.data,
                attendee=shown.attendee,
                version=form.version_number,
            ),
            once=_edit_once(form, shown, "progress_note_edit"),
        )
        if outcome.saved:
            flash("Draft saved.", "success")
            return redirect(outcome.repeated_url or _note_url(shown))
        conflict = conflict_rows(outcome, form, shown, lambda n: {"text": n.text})
        return _note_page(
            "therapy/note_edit.html", shown, form, 409 if conflict else 400, conflict=conflict
        )
    return _note_page("therapy/note_edit.html", shown, form, _status(form), conflict=conflict)


def _names_warning(note: ProgressNote, names: list[str]) -> str:
    if note.attendee is None:
        return NAMES_WARNING.format(names=", ".join(names))
    return OWN_NAMES_WARNING.format(names=", ".join(names))


@bp.route("/notes/<int:note_id>/sign", methods=["GET", "POST"])
@require_permission(Permission.SESSIONS_RECORD)
def sign_note(note_id: int):
    """Confirmation, then the draft is signed and locked."""
    shown = _note_or_404(note_id)
    if shown.signed:
        flash("This note is already signed.", "info")
        return redirect(_note_url(shown))
    form = SignForm()
    if request.method == "GET" and not form.restored:
        form.version.data = shown.version
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: note_services.sign_note(shown, actor=current_user, version=form.version_number),
            once=_edit_once(form, shown, "progress_note_sign"),
        )
        if outcome.saved:
            flash("Note signed.", "success")
            return redirect(outcome.repeated_url or _note_url(shown))
        db.session.refresh(shown)
        form.version.data = shown.version
        return _note_page("therapy/note_sign.html", shown, form, 400)
    return _note_page("therapy/note_sign.html", shown, form, _status(form))


@bp.route("/notes/<int:note_id>/addendum", methods=["GET", "POST"])
@require_permission(Permission.SESSIONS_RECORD)
def add_addendum(note_id: int):
    shown = _note_or_404(note_id)
    if not shown.signed or shown.entered_in_error:
        flash(
            note_services.IN_ERROR_MESSAGE
            if shown.entered_in_error
            else "A draft is edited, not amended: addenda go under signed notes.",
            "warning",
        )
        return redirect(_note_url(shown))
    form = AddendumForm()
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: note_services.add_addendum(shown, actor=current_user, text=form.text.data),
            once=Once(
                token=form.submission_token.data,
                user_id=current_user.id,
                kind="note_addendum",
                result_url=lambda _result: _note_url(shown),
            ),
        )
        if outcome.saved:
            flash("Addendum signed and added.", "success")
            return redirect(outcome.repeated_url or _note_url(shown))
        return _note_page("therapy/note_addendum.html", shown, form, 400)
    return _note_page("therapy/note_addendum.html", shown, form, _status(form))


@bp.post("/notes/<int:note_id>/cosign")
@require_permission(Permission.SESSIONS_RECORD)
def cosign_note(note_id: int):
    shown = _note_or_404(note_id)
    form = CosignForm()
    if form.validate_on_submit():
        outcome = save(form, lambda: note_services.cosign_note(shown, actor=current_user))
        flash(
            "Note co-signed."
            if outcome.saved
            else (outcome.error.message if outcome.error else "Nothing was saved."),
            "success" if outcome.saved else "warning",
        )
    return redirect(_note_url(shown))


@bp.route("/notes/<int:note_id>/entered-in-error", methods=["GET", "POST"])
@require_permission(Permission.SESSIONS_RECORD)
def note_entered_in_error(note_id: int):
    """Confirmation with a reason, then the note is marked entered in error (never
    deleted: clinicians still see it, struck through)."""
    shown = _note_or_404(note_id)
    if shown.entered_in_error:
        flash("This note is already marked entered in error.", "info")
        return redirect(_note_url(shown))
    form = EnteredInErrorForm()
    if form.validate_on_submit():
        outcome = save(
            form,
            lambda: note_services.mark_entered_in_error(
                shown, actor=current_user, reason=form.reason.data
            ),
        )
        if outcome.saved:
            flash("Note marked entered in error.", "success")
            return redirect(_note_url(shown))
        return _note_page("therapy/note_in_error.html", shown, form, 400)
    return _note_page("therapy/note_in_error.html", shown, form, _status(form))
