"""SUD counseling notes and the clinicians a site allows to read them (issue 11; 42 CFR
2.11 "SUD counseling notes", 2024 revision; DOMAIN.md "Therapy sessions").

A counseling note is the clinician's own analysis of a session with one patient, kept
apart from the progress notes. Who may do what:

- write one: a clinician of the session's site (``SESSIONS_RECORD``), about one attendee
  of a session that has started and was not entered in error; signed at save (its
  SHA-256 recorded) and append-only (triggers on both engines);
- read one: its author, or a clinician (``NOTES_READ``) who works at the session's site
  and holds a live grant of that site (``CounselingNoteReader``). Every read is audited,
  a refusal as ``access_denied``; listing notes shows ids, dates and authors only, so it
  is not a read;
- grant or revoke a site's readers: an administrator (``USERS_MANAGE``) of that site (an
  organisation-wide administrator: any site). A grant goes to an active clinician of the
  site; it is revoked, never deleted.

The notes are never in an export or print of the chart: no chart section, history, print
layout or export reads this table; the note's own page carries ``Cache-Control:
no-store`` and prints a "not printable" line instead of the text.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from clinic.accounts.models import User
from clinic.audit import AuditAction, AuditOutcome, record
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.security import Permission, Role
from clinic.sites.models import Site
from clinic.therapy.models import (
    PRESENT,
    Attendance,
    CounselingNote,
    CounselingNoteReader,
    SessionAttendee,
    SessionStatus,
    TherapySession,
    sha256_text,
)
from clinic.therapy.notes import check_text

ENTITY = "counseling_note"
READER_ENTITY = "counseling_note_reader"


# --- writing -----------------------------------------------------------------------------------


def add_counseling_note(
    attendee: SessionAttendee, *, actor: User, text: str | None, now: dt.datetime | None = None
) -> CounselingNote:
    """Write an SUD counseling note about one attendee (42 CFR 2.11): kept apart from the
    progress notes, signed at save. A clinician of the session's site; a session that
    has started (there is nothing to analyse before) and is not entered in error; an
    attendee not recorded as absent."""
    now = now or utcnow()
    session = attendee.session
    if not actor.can(Permission.SESSIONS_RECORD) or session.site_id not in actor.site_ids:
        raise DomainError("Only clinicians of the session's site write its counseling notes.")
    if session.entered_in_error:
        raise DomainError("This session was entered in error.")
    if session.starts_at > now:
        raise DomainError(
            "This session has not started yet: its counseling note comes after it.", field="text"
        )
    if attendee.attendance is not None and not Attendance(attendee.attendance).present:
        raise DomainError(
            "This patient was not at the session (recorded as "
            f"{Attendance(attendee.attendance).label.lower()}): there is nothing to analyse.",
            field="text",
        )
    text = check_text(text)
    note = CounselingNote(
        session_id=session.id,
        attendee_id=attendee.id,
        patient_id=attendee.patient_id,
        author_id=actor.id,
        text=text,
        text_sha256=sha256_text(text),
        created_at=now,
    )
    db.session.add(note)
    db.session.flush()
    record(
        AuditAction.CREATE,
        actor=actor,
        entity_type=ENTITY,
        entity_id=note.id,
        patient_id=note.patient_id,
        site_id=session.site_id,
        details={"session_id": session.id},
    )
    return note


# --- reading -----------------------------------------------------------------------------------


def _granted(site_id: sa.ColumnElement | int, user_id: int) -> sa.Exists:
    return sa.exists().where(
        CounselingNoteReader.site_id == site_id,
        CounselingNoteReader.user_id == user_id,
        CounselingNoteReader.revoked_at.is_(None),
    )


def _readable_by(actor: User) -> sa.ColumnElement[bool]:
    """The SQL condition "the actor may read this counseling note" (joined to its
    session): the author, or a reader granted at the session's site who works there."""
    if not actor.can(Permission.NOTES_READ):
        return sa.false()
    granted = sa.and_(
        TherapySession.site_id.in_(actor.site_ids or {-1}),
        _granted(TherapySession.site_id, actor.id),
    )
    return sa.or_(CounselingNote.author_id == actor.id, granted)


def may_read(note: CounselingNote, actor: User) -> bool:
    """Whether ``actor`` may read ``note``: its author (a clinician), or a clinician of the
    session's site holding a live grant of that site."""
    if not actor.can(Permission.NOTES_READ):
        return False
    if note.author_id == actor.id:
        return True
    site_id = note.session.site_id
    return site_id in actor.site_ids and bool(
        db.session.scalar(sa.select(_granted(site_id, actor.id)))
    )


def read_counseling_note(note_id: int, *, actor: User) -> CounselingNote | None:
    """An explicit read of a counseling note, audited every time (a refusal as
    ``access_denied``, attributed to the note's patient). None when refused or missing,
    for the caller's 404 (a missing note is the caller's to record)."""
    note = db.session.get(CounselingNote, note_id)
    if note is None:
        return None
    allowed = may_read(note, actor)
    record(
        AuditAction.VIEW if allowed else AuditAction.ACCESS_DENIED,
        actor=actor,
        entity_type=ENTITY,
        entity_id=note.id,
        patient_id=note.patient_id,
        site_id=note.session.site_id,
        outcome=AuditOutcome.SUCCESS if allowed else AuditOutcome.DENIED,
        details={"session_id": note.session_id},
    )
    return note if allowed else None


def counseling_notes_of(session: TherapySession, *, actor: User) -> list[tuple[int, int]]:
    """The counseling notes of a session the actor may read, as (note id, patient id): no
    text, so listing them is not a read. Notes the actor may not read are not listed."""
    rows = db.session.execute(
        sa.select(CounselingNote.id, CounselingNote.patient_id)
        .join(TherapySession, TherapySession.id == CounselingNote.session_id)
        .where(CounselingNote.session_id == session.id, _readable_by(actor))
        .order_by(CounselingNote.id)
    )
    return [(row.id, row.patient_id) for row in rows]


def counseling_notes_for_patient_query(patient_id: int, *, actor: User) -> sa.Select:
    """The counseling notes about a patient that the actor may read (newest session
    first), with their session, site and author loaded in the same statement: the list
    page shows dates and authors, never text."""
    return (
        sa.select(CounselingNote)
        .join(TherapySession, TherapySession.id == CounselingNote.session_id)
        .where(CounselingNote.patient_id == patient_id, _readable_by(actor))
        .options(
            joinedload(CounselingNote.author),
            joinedload(CounselingNote.session).joinedload(TherapySession.site),
        )
    )


def sessions_to_write_about(
    patient_id: int, *, actor: User, limit: int = 10
) -> list[tuple[TherapySession, int]]:
    """The patient's most recent sessions the actor may write a counseling note about, as
    (session, attendee id): recorded, attended, not entered in error, at the actor's
    sites; newest first. One statement (the session's site loaded with it)."""
    if not actor.can(Permission.SESSIONS_RECORD):
        return []
    rows = db.session.execute(
        sa.select(TherapySession, SessionAttendee.id)
        .join(SessionAttendee, SessionAttendee.session_id == TherapySession.id)
        .where(
            SessionAttendee.patient_id == patient_id,
            SessionAttendee.attendance.in_(PRESENT),
            TherapySession.status == SessionStatus.RECORDED,
            TherapySession.entered_in_error_at.is_(None),
            TherapySession.site_id.in_(actor.site_ids or {-1}),
        )
        .options(joinedload(TherapySession.site))
        .order_by(TherapySession.starts_at.desc(), TherapySession.id.desc())
        .limit(limit)
    )
    return [(row[0], row[1]) for row in rows]


def readable_count(patient_id: int, *, actor: User) -> int:
    """How many counseling notes about the patient the actor may read (one statement)."""
    return (
        db.session.scalar(
            sa.select(sa.func.count(CounselingNote.id))
            .join(TherapySession, TherapySession.id == CounselingNote.session_id)
            .where(CounselingNote.patient_id == patient_id, _readable_by(actor))
        )
        or 0
    )


# --- the readers a site allows -------------------------------------------------------------


def manages_site(actor: User, site_id: int) -> bool:
    """An administrator of this site (or of every site)."""
    return actor.can(Permission.USERS_MANAGE) and (actor.all_sites or site_id in actor.site_ids)


def managed_sites(actor: User) -> list[Site]:
    """The active sites whose readers the actor manages, by code."""
    if not actor.can(Permission.USERS_MANAGE):
        return []
    query = sa.select(Site).where(Site.active).order_by(Site.code)
    if not actor.all_sites:
        query = query.where(Site.id.in_(actor.site_ids or {-1}))
    return list(db.session.scalars(query))


def live_readers(site_id: int) -> list[CounselingNoteReader]:
    """The site's live grants, by the reader's name (one statement, readers loaded)."""
    return list(
        db.session.scalars(
            sa.select(CounselingNoteReader)
            .join(User, User.id == CounselingNoteReader.user_id)
            .where(
                CounselingNoteReader.site_id == site_id, CounselingNoteReader.revoked_at.is_(None)
            )
            .options(
                joinedload(CounselingNoteReader.user), joinedload(CounselingNoteReader.granted_by)
            )
            .order_by(User.full_name, User.id)
        )
    )


def grantable_clinicians(site_id: int) -> list[User]:
    """Active clinicians of the site without a live grant there, by name."""
    return list(
        db.session.scalars(
            sa.select(User)
            .join(User.sites)
            .where(
                Site.id == site_id,
                User.role == Role.CLINICIAN,
                User.active,
                ~_granted(site_id, User.id),
            )
            .order_by(User.full_name, User.id)
        )
    )


def _check_manager(actor: User, site_id: int) -> None:
    if not manages_site(actor, site_id):
        raise DomainError("Only an administrator of this site chooses its counseling-note readers.")


def grant_reader(
    site: Site, user: User | None, *, actor: User, now: dt.datetime | None = None
) -> CounselingNoteReader:
    """Allow ``user`` to read the counseling notes written at ``site``: an administrator
    of the site grants it to an active clinician of the site (42 CFR 2.11: the notes are
    kept apart; the program decides who reads them). A second live grant is refused
    here and by the partial unique index ``uq_counseling_note_reader_live``."""
    _check_manager(actor, site.id)
    if (
        user is None
        or user.role != Role.CLINICIAN
        or not user.active
        or site.id not in user.site_ids
    ):
        raise DomainError("Choose an active clinician of this site.", field="user_id")
    if db.session.scalar(sa.select(_granted(site.id, user.id))):
        raise DomainError(
            "This clinician already reads this site's counseling notes.", field="user_id"
        )
    grant = CounselingNoteReader(
        site_id=site.id, user_id=user.id, granted_by_id=actor.id, granted_at=now or utcnow()
    )
    db.session.add(grant)
    db.session.flush()
    record(
        AuditAction.CREATE,
        actor=actor,
        entity_type=READER_ENTITY,
        entity_id=grant.id,
        site_id=site.id,
        details={"user_id": user.id},
    )
    return grant


def revoke_reader(
    grant: CounselingNoteReader, *, actor: User, now: dt.datetime | None = None
) -> CounselingNoteReader:
    """End a grant: who and when are kept (a grant is never deleted; the trigger
    ``counseling_note_reader_grant_immutable`` refuses a second revocation)."""
    _check_manager(actor, grant.site_id)
    if not grant.live:
        raise DomainError("This grant was already revoked.")
    now = now or utcnow()
    grant.revoked_at = max(now, grant.granted_at)
    grant.revoked_by_id = actor.id
    db.session.flush()
    record(
        AuditAction.UPDATE,
        actor=actor,
        entity_type=READER_ENTITY,
        entity_id=grant.id,
        site_id=grant.site_id,
        details={"user_id": grant.user_id, "revoked": True},
    )
    return grant
