"""Progress notes, addenda, co-signature and entered in error (issue 11; DOMAIN.md
"Therapy sessions"). SUD counseling notes are ``clinic.therapy.counseling``'s.

A note is a draft until signed. Drafts carry an optimistic version: two clinicians
editing one draft (the author and the session's clinician, say) get a ``ConflictError``
instead of a silent overwrite. Signing records who, when and a SHA-256 of the text; a
signed note is then frozen here and by the database trigger
``progress_note_signed_immutable``. Corrections are addenda, signed when saved.

Who may do what (decided for this increment):

- any clinician of the session's site writes and edits a draft (co-facilitators);
- the note's author or the session's clinician signs it;
- addenda: any clinician of the session's site;
- the co-signature: only the supervisor named on the note when a trainee signed it,
  while a clinician of the session's site (a trainee signs only when that supervisor can);
- entered in error: the note's author or the session's clinician (a session: its
  clinician).

Audit events carry ids and kinds only, never note text (nor its length).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import ConflictError, DomainError
from clinic.extensions import db
from clinic.forms import has_control_characters
from clinic.patients import names
from clinic.patients.models import DEFAULT_NOTE_LATE_HOURS, Enrollment, Patient, Program
from clinic.security import Permission, Role
from clinic.therapy.models import (
    NOTE_TEXT_MAX,
    REASON_MAX,
    NoteAddendum,
    NoteStatus,
    ProgressNote,
    SessionAttendee,
    SessionKind,
    TherapySession,
    sha256_text,
)

REASON_MIN = 10
SIGNED_MESSAGE = "This note is signed: it cannot change. Add an addendum to correct it."
IN_ERROR_MESSAGE = "This note was entered in error: it cannot change."


# --- checks ----------------------------------------------------------------------------------


def check_text(text: str | None, *, field: str = "text") -> str:
    """A note's text as typed, kept exactly (no trimming: the signature's hash is over
    what was written). Refused: empty, longer than ``NOTE_TEXT_MAX`` characters, NUL or
    another control or invisible formatting character (tab and line breaks allowed)."""
    if text is None or not text.strip():
        raise DomainError("Write the note.", field=field)
    if len(text) > NOTE_TEXT_MAX:
        raise DomainError(
            f"A note has at most {NOTE_TEXT_MAX:,} characters: split it or shorten it.",
            field=field,
        )
    if has_control_characters(text, multi_line=True):
        raise DomainError(
            "Remove the control or invisible formatting characters (often pasted in by accident).",
            field=field,
        )
    return text


def _check_clinician_at(actor: User, session: TherapySession) -> None:
    if not actor.can(Permission.SESSIONS_RECORD) or session.site_id not in actor.site_ids:
        raise DomainError("Only clinicians of the session's site write its notes.")


def _check_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if len(reason) < REASON_MIN or len(reason) > REASON_MAX:
        raise DomainError(f"Say why, in {REASON_MIN} to {REASON_MAX} characters.", field="reason")
    if has_control_characters(reason):
        raise DomainError(
            "Write the reason on one line, without control characters.", field="reason"
        )
    return reason


def _note_patient_ids(note: ProgressNote) -> list[int]:
    """The patients a note is about: the attendee's, or every attendee's for a group note."""
    if note.attendee is not None:
        return [note.attendee.patient_id]
    return [a.patient_id for a in note.session.attendees]


def _audit_note(note: ProgressNote, action: AuditAction, actor: User, **details) -> None:
    """One event per patient the note concerns (ids and kinds only)."""
    for patient_id in _note_patient_ids(note) or [None]:
        record(
            action,
            actor=actor,
            entity_type="progress_note",
            entity_id=note.id,
            patient_id=patient_id,
            site_id=note.session.site_id,
            details={"session_id": note.session_id, "group": note.attendee_id is None, **details},
        )


def live_notes_of(session: TherapySession) -> list[ProgressNote]:
    return list(
        db.session.scalars(
            sa.select(ProgressNote).where(
                ProgressNote.session_id == session.id, ProgressNote.entered_in_error_at.is_(None)
            )
        )
    )


def _live_note(session: TherapySession, attendee: SessionAttendee | None) -> ProgressNote | None:
    query = sa.select(ProgressNote).where(
        ProgressNote.session_id == session.id, ProgressNote.entered_in_error_at.is_(None)
    )
    if attendee is None:
        query = query.where(ProgressNote.attendee_id.is_(None))
    else:
        query = query.where(ProgressNote.attendee_id == attendee.id)
    return db.session.scalar(query)


def note_for(user: User, note_id: int) -> ProgressNote | None:
    """A note by id for a user who may read note text (clinicians), only at one of their
    sites: None otherwise, for the caller's 404."""
    note = db.session.get(ProgressNote, note_id)
    if note is None or not user.can(Permission.NOTES_READ):
        return None
    if note.session.site_id not in user.site_ids:
        return None
    return note


# --- drafts and signatures ---------------------------------------------------------------------


def save_draft(
    session: TherapySession,
    *,
    actor: User,
    text: str | None,
    attendee: SessionAttendee | None = None,
    version: int | None = None,
    now: dt.datetime | None = None,
) -> ProgressNote:
    """Write the draft of the session's group note (``attendee`` None; group and family
    sessions only) or of one attendee's note: create it, or change it when ``version``
    is the version the editor's form was built from (else ``ConflictError``). A signed
    note is refused: corrections are addenda."""
    now = now or utcnow()
    _check_clinician_at(actor, session)
    if session.entered_in_error:
        raise DomainError("This session was entered in error: its notes cannot change.")
    if attendee is None and not SessionKind(session.kind).has_group_note:
        raise DomainError("An individual session's note belongs to its attendee.", field="text")
    if attendee is not None and attendee.session_id != session.id:
        raise DomainError("That patient is not an attendee of this session.", field="attendee_id")
    text = check_text(text)
    note = _live_note(session, attendee)
    if note is None:
        if version is not None:
            # The draft the form was built from is gone (entered in error meanwhile).
            raise ConflictError()
        note = ProgressNote(
            session_id=session.id,
            session=session,
            attendee_id=attendee.id if attendee else None,
            attendee=attendee,
            author_id=actor.id,
            status=NoteStatus.DRAFT,
            text=text,
            created_at=now,
            updated_at=now,
        )
        db.session.add(note)
        db.session.flush()
        _audit_note(note, AuditAction.CREATE, actor)
        return note
    if note.signed:
        raise DomainError(SIGNED_MESSAGE, field="text")
    if version is None or version != note.version:
        raise ConflictError()
    note.text = text
    note.updated_at = now
    db.session.flush()
    _audit_note(note, AuditAction.UPDATE, actor)
    return note


def late_limit_hours(note: ProgressNote) -> int:
    """The program's late-entry limit for this note: the attendee's program; for a group
    note the strictest (smallest) of its attendees' programs; 72 hours by default."""
    if note.attendee is not None:
        enrollment_ids = [note.attendee.enrollment_id]
    else:
        enrollment_ids = [a.enrollment_id for a in note.session.attendees]
    limit = db.session.scalar(
        sa.select(sa.func.min(Program.note_late_hours))
        .join(Enrollment, Enrollment.program_id == Program.id)
        .where(Enrollment.id.in_(enrollment_ids or [-1]))
    )
    return limit or DEFAULT_NOTE_LATE_HOURS


def _check_supervisor_can_cosign(trainee: User, session: TherapySession) -> None:
    """A trainee's signed note waits for their supervisor: one who can co-sign it (an
    active clinician of the session's site), else the note would wait for ever."""
    supervisor = db.session.get(User, trainee.supervisor_id) if trainee.supervisor_id else None
    if supervisor is None:
        raise DomainError("Your account needs a supervisor before you sign notes.")
    if not supervisor.can(Permission.SESSIONS_RECORD) or session.site_id not in supervisor.site_ids:
        raise DomainError(
            "Your supervisor cannot co-sign notes of this site (account inactive, or not "
            "working here): ask an administrator to name another supervisor."
        )


def sign_note(
    note: ProgressNote,
    *,
    actor: User,
    version: int | None = None,
    now: dt.datetime | None = None,
) -> ProgressNote:
    """Sign a draft: who, when, the SHA-256 of its text; ``late`` when signed more than the
    program's limit after the session ended (DOMAIN.md, late entry). A trainee's note
    then waits for their supervisor's co-signature. Only the author or the session's
    clinician signs; a session that has not started has nothing to sign yet."""
    now = now or utcnow()
    session = note.session
    _check_clinician_at(actor, session)
    if actor.id not in (note.author_id, session.clinician_id):
        raise DomainError("Only the note's author or the session's clinician signs it.")
    if note.entered_in_error:
        raise DomainError(IN_ERROR_MESSAGE)
    if session.entered_in_error:
        raise DomainError("This session was entered in error: its notes cannot change.")
    if note.signed:
        raise DomainError("This note is already signed.")
    if version is not None and version != note.version:
        raise ConflictError()
    if session.starts_at > now:
        raise DomainError("This session has not started yet: its note cannot be signed.")
    if actor.is_trainee:
        _check_supervisor_can_cosign(actor, session)
    # Everything is read before the first assignment: a read may autoflush, and a signed
    # row takes no second UPDATE of its frozen columns (the trigger).
    late = now > session.ends_at + dt.timedelta(hours=late_limit_hours(note))
    digest = sha256_text(note.text)
    trainee = bool(actor.is_trainee)
    cosigner_id = actor.supervisor_id if trainee else None
    with db.session.no_autoflush:
        note.status = NoteStatus.SIGNED
        note.signed_by_id = actor.id
        note.signed_at = now
        note.text_sha256 = digest
        note.late = late
        note.cosign_required = trainee
        note.cosigner_id = cosigner_id
    db.session.flush()
    _audit_note(note, AuditAction.SIGN, actor, late=note.late, cosign=note.cosign_required)
    return note


def add_addendum(
    note: ProgressNote, *, actor: User, text: str | None, now: dt.datetime | None = None
) -> NoteAddendum:
    """Add a correction under a signed note, signed when saved (author, time, SHA-256).
    The note itself never changes."""
    _check_clinician_at(actor, note.session)
    if not note.signed:
        raise DomainError("A draft is edited, not amended: addenda go under signed notes.")
    if note.entered_in_error:
        raise DomainError(IN_ERROR_MESSAGE)
    if note.session.entered_in_error:
        raise DomainError("This session was entered in error: its notes cannot change.")
    text = check_text(text)
    addendum = NoteAddendum(
        note_id=note.id,
        author_id=actor.id,
        text=text,
        text_sha256=sha256_text(text),
        signed_at=now or utcnow(),
    )
    note.addenda.append(addendum)
    db.session.flush()
    _audit_note(note, AuditAction.ADDENDUM, actor, addendum_id=addendum.id)
    return addendum


def cosign_note(note: ProgressNote, *, actor: User, now: dt.datetime | None = None) -> ProgressNote:
    """Co-sign a trainee's signed note: only the supervisor named on it, once."""
    if (
        not actor.can(Permission.SESSIONS_RECORD)
        or note.cosigner_id != actor.id
        or note.session.site_id not in actor.site_ids
    ):
        raise DomainError(
            "Only the trainee's supervisor, at the session's site, co-signs this note."
        )
    if note.entered_in_error:
        raise DomainError(IN_ERROR_MESSAGE)
    if not note.awaiting_cosignature:
        raise DomainError("This note is not waiting for a co-signature.")
    note.cosigned_at = now or utcnow()
    db.session.flush()
    _audit_note(note, AuditAction.SIGN, actor, cosign=True)
    return note


def mark_entered_in_error(
    target: ProgressNote | TherapySession,
    *,
    actor: User,
    reason: str | None,
    now: dt.datetime | None = None,
) -> None:
    """Mark a note, or a whole session, entered in error with a reason: never deleted, it
    stays visible to clinicians, struck through. A note: its author or the session's
    clinician; a session: its clinician (its notes stay as they are)."""
    now = now or utcnow()
    session = target.session if isinstance(target, ProgressNote) else target
    _check_clinician_at(actor, session)
    allowed = {session.clinician_id}
    if isinstance(target, ProgressNote):
        allowed.add(target.author_id)
    if actor.id not in allowed:
        raise DomainError("Only the author or the session's clinician marks this in error.")
    if target.entered_in_error_at is not None:
        raise DomainError("This is already marked entered in error.")
    reason = _check_reason(reason)
    target.entered_in_error_at = now
    target.entered_in_error_reason = reason
    target.entered_in_error_by_id = actor.id
    db.session.flush()
    if isinstance(target, ProgressNote):
        _audit_note(target, AuditAction.UPDATE, actor, entered_in_error=True)
    else:
        record(
            AuditAction.UPDATE,
            actor=actor,
            entity_type="therapy_session",
            entity_id=session.id,
            site_id=session.site_id,
            details={"entered_in_error": True},
        )


def reassign_draft(
    note: ProgressNote, *, actor: User, author: User, version: int | None = None
) -> ProgressNote:
    """Give a draft to another clinician (an administrator's task when its author was
    deactivated: the issue's "drafts listed for an administrator to reassign"). The new
    author is an active clinician of the session's site; a signed note keeps its author,
    and so does the draft of a clinician still active."""
    session = note.session
    if not actor.can(Permission.USERS_MANAGE) or not (
        actor.all_sites or session.site_id in actor.site_ids
    ):
        raise DomainError("Only administrators of the session's site reassign drafts.")
    if note.signed or note.entered_in_error:
        raise DomainError("Only a live draft is reassigned.")
    current = db.session.get(User, note.author_id)
    if current is not None and current.active:
        raise DomainError("Only the drafts of deactivated clinicians are reassigned.")
    if version is not None and version != note.version:
        raise ConflictError()
    if author.role != Role.CLINICIAN or not author.active or session.site_id not in author.site_ids:
        raise DomainError("Choose an active clinician of the session's site.", field="author_id")
    note.author_id = author.id
    db.session.flush()
    _audit_note(note, AuditAction.UPDATE, actor, reassigned_to=author.id)
    return note


# --- trainees --------------------------------------------------------------------------------


def set_trainee_supervisor(trainee: User, *, actor: User, supervisor: User | None) -> None:
    """Mark a clinician as a trainee supervised by ``supervisor`` (or, with None, no longer
    a trainee). The supervisor is an active clinician, not the trainee (CHECK
    supervisor_not_self backs the latter), sharing a site with the trainee."""
    if not actor.can(Permission.USERS_MANAGE):
        raise DomainError("Only administrators set supervisors.")
    if trainee.role != Role.CLINICIAN:
        raise DomainError("Only clinicians are trainees.", field="supervisor_id")
    if supervisor is not None:
        if supervisor.id == trainee.id:
            raise DomainError("A trainee cannot supervise themselves.", field="supervisor_id")
        if supervisor.role != Role.CLINICIAN or not supervisor.active:
            raise DomainError("The supervisor must be an active clinician.", field="supervisor_id")
        if supervisor.is_trainee:
            # Two trainees would otherwise co-sign each other's notes.
            raise DomainError("A trainee cannot supervise.", field="supervisor_id")
        if not (supervisor.site_ids & trainee.site_ids):
            raise DomainError(
                "The supervisor must work at one of the trainee's sites.", field="supervisor_id"
            )
    trainee.is_trainee = supervisor is not None
    trainee.supervisor_id = supervisor.id if supervisor is not None else None
    db.session.flush()
    record(
        AuditAction.UPDATE,
        actor=actor,
        entity_type="user",
        entity_id=trainee.id,
        details={"fields": ["is_trainee", "supervisor_id"]},
    )


# --- the group note's name warning ----------------------------------------------------------


def names_in_text(
    text: str, patients: Iterable[Patient], *, about: Patient | None = None
) -> list[str]:
    """The display names of those ``patients`` whose first, last or preferred name (or a
    word of one) appears in ``text``, matched on ``clinic.patients.names`` keys in every
    Latin spelling (so "Nunez" in the text matches "Núñez" on file, "Petrov" matches
    "Петров"). Words of one letter are ignored, and so are the names of ``about`` (the
    patient an attendee's own note is about: their surname is no other's, even in a
    family session where they share it)."""
    words = names.name_tokens(text)
    if about is not None:
        words -= names.name_tokens(about.first_name, about.last_name, about.preferred_name)
    found = []
    for patient in patients:
        keys = names.name_tokens(patient.first_name, patient.last_name, patient.preferred_name)
        if {k for k in keys if len(k) > 1} & words:
            found.append(patient.display_name)
    return found


def note_name_warnings(
    session: TherapySession, text: str | None, attendee: SessionAttendee | None
) -> list[str]:
    """The attendees a note of a group or family session names, other than the one it is
    about: the group note (``attendee`` None) is shown in every attendee's chart, an
    attendee's own note in theirs, and a chart names no other attendee. A warning before
    saving, not a refusal. One query (none for an individual session)."""
    if not text or not SessionKind(session.kind).has_group_note:
        return []
    if attendee is None:
        return group_note_name_warnings(session, text)
    others = db.session.scalars(
        sa.select(Patient)
        .join(SessionAttendee, SessionAttendee.patient_id == Patient.id)
        .where(SessionAttendee.session_id == session.id, SessionAttendee.id != attendee.id)
        .order_by(SessionAttendee.position)
    )
    return names_in_text(text, others, about=attendee.patient)


def group_note_name_warnings(session: TherapySession, text: str | None) -> list[str]:
    """The attendees named in a group note's text: the note is shown in every attendee's
    chart, so it should name none of them (DOMAIN.md). A warning before saving, not a
    refusal. One query for the attendees' names."""
    if not text:
        return []
    patients = db.session.scalars(
        sa.select(Patient)
        .join(SessionAttendee, SessionAttendee.patient_id == Patient.id)
        .where(SessionAttendee.session_id == session.id)
        .order_by(SessionAttendee.position)
    )
    return names_in_text(text, patients)
