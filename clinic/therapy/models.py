"""Therapy sessions, attendance, progress notes, addenda and SUD counseling notes (issue 11;
DOMAIN.md "Therapy sessions"; 42 CFR 2.11 and 2.31(b) for SUD counseling notes).

A session is planned (date, time, attendees) and then recorded (attendance and minutes
per attendee). A progress note belongs to a session and either to one attendee or, in a
group or family session, to the group (``attendee_id`` NULL). A note is a draft until
signed; once signed its text, hash, signer and time never change, which the service
refuses and a trigger on both engines refuses again (``progress_note_signed_immutable``,
see the therapy_sessions_notes migration). Notes, addenda and counseling notes are never
deleted: a mistake is marked entered in error, with who, when and why.

Rules that span rows (minutes attended within the session's duration, attendees with an
active enrollment at the session's site, a supervisor who is a clinician) are the
services'; every single-row rule is a CHECK here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.accounts.models import User
from clinic.db import Base, utcnow
from clinic.patients.models import Enrollment, Patient, str_enum
from clinic.sites.models import Site

DURATION_MAX_MINUTES = 600
MAX_ATTENDEES = 20
# Long notes save without loss: 50 KB is the floor; the ceiling leaves room.
NOTE_TEXT_MAX = 200_000
GROUP_NAME_MAX = 120
REASON_MAX = 500


class SessionKind(StrEnum):
    INDIVIDUAL = "individual"
    GROUP = "group"
    FAMILY = "family"

    @property
    def label(self) -> str:
        return self.value.title()

    @property
    def has_group_note(self) -> bool:
        """Group and family sessions have a shared note besides each attendee's own."""
        return self is not SessionKind.INDIVIDUAL


class Modality(StrEnum):
    CBT = "cbt"
    MOTIVATIONAL_INTERVIEWING = "motivational_interviewing"
    CONTINGENCY_MANAGEMENT = "contingency_management"
    TWELVE_STEP_FACILITATION = "twelve_step_facilitation"
    COMMUNITY_REINFORCEMENT = "community_reinforcement"
    RELAPSE_PREVENTION = "relapse_prevention"
    MATRIX_MODEL = "matrix_model"
    DBT = "dbt"
    PEER_SUPPORT = "peer_support"

    @property
    def label(self) -> str:
        return {
            "cbt": "Cognitive behavioral therapy",
            "motivational_interviewing": "Motivational interviewing",
            "contingency_management": "Contingency management",
            "twelve_step_facilitation": "12-step facilitation",
            "community_reinforcement": "Community reinforcement approach",
            "relapse_prevention": "Relapse prevention",
            "matrix_model": "Matrix model",
            "dbt": "Dialectical behavior therapy",
            "peer_support": "Peer support",
        }[self.value]


class SessionSetting(StrEnum):
    IN_PERSON = "in_person"
    VIDEO = "video"
    AUDIO_ONLY = "audio_only"

    @property
    def label(self) -> str:
        return {"in_person": "In person", "video": "Video", "audio_only": "Audio only"}[self.value]


class SessionStatus(StrEnum):
    PLANNED = "planned"
    RECORDED = "recorded"

    @property
    def label(self) -> str:
        return self.value.title()


class Attendance(StrEnum):
    ATTENDED = "attended"
    LATE = "late"
    LEFT_EARLY = "left_early"
    NO_SHOW = "no_show"
    CANCELLED_BY_PATIENT = "cancelled_by_patient"
    CANCELLED_BY_CLINIC = "cancelled_by_clinic"

    @property
    def label(self) -> str:
        return {
            "attended": "Attended",
            "late": "Late",
            "left_early": "Left early",
            "no_show": "No-show",
            "cancelled_by_patient": "Cancelled by patient",
            "cancelled_by_clinic": "Cancelled by clinic",
        }[self.value]

    @property
    def present(self) -> bool:
        """The patient was there (for some minutes at least)."""
        return self in PRESENT


PRESENT = (Attendance.ATTENDED, Attendance.LATE, Attendance.LEFT_EARLY)
PRESENT_SQL = ", ".join(repr(a.value) for a in PRESENT)
ABSENT_SQL = "'no_show', 'cancelled_by_patient', 'cancelled_by_clinic'"
LIVE = "entered_in_error_at IS NULL"


def sha256_text(text: str) -> str:
    """The SHA-256 of a note's text as stored (UTF-8), hex: what signing records."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _in_error_checks(prefix: str = "") -> tuple[sa.CheckConstraint, ...]:
    return (
        sa.CheckConstraint(
            "(entered_in_error_at IS NULL) = (entered_in_error_reason IS NULL)"
            " AND (entered_in_error_at IS NULL) = (entered_in_error_by_id IS NULL)",
            name="entered_in_error_complete",
        ),
        sa.CheckConstraint(
            "entered_in_error_reason IS NULL OR length(entered_in_error_reason) > 0",
            name="entered_in_error_reason_not_empty",
        ),
    )


class TherapySession(Base):
    """One session: individual, group or family. ``starts_at`` is UTC; pages show it in the
    site's time zone. ``series_key`` ties the sessions of a weekly group planned in one
    step."""

    __tablename__ = "therapy_session"
    __table_args__ = (
        sa.CheckConstraint(
            f"duration_minutes BETWEEN 1 AND {DURATION_MAX_MINUTES}", name="duration_range"
        ),
        sa.CheckConstraint(
            "group_name IS NULL OR (length(group_name) > 0 AND kind <> 'individual')",
            name="group_name_for_groups",
        ),
        sa.CheckConstraint(
            "(status = 'recorded') = (recorded_at IS NOT NULL)"
            " AND (recorded_at IS NULL) = (recorded_by_id IS NULL)",
            name="recorded_complete",
        ),
        sa.CheckConstraint(
            "series_key IS NULL OR length(series_key) = 32", name="series_key_length"
        ),
        *_in_error_checks(),
        # A clinician is not in two live sessions starting at the same instant: a double
        # submit of "plan" stores one session.
        sa.Index(
            "uq_therapy_session_live_clinician_start",
            "clinician_id",
            "starts_at",
            unique=True,
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        ),
        sa.Index("ix_therapy_session_site_start", "site_id", "starts_at"),
        sa.Index("ix_therapy_session_status_start", "clinician_id", "status", "starts_at"),
        sa.Index("ix_therapy_session_series_key", "series_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinician_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"))
    starts_at: Mapped[dt.datetime]
    duration_minutes: Mapped[int]
    kind: Mapped[SessionKind] = mapped_column(str_enum(SessionKind, "session_kind", 16))
    modality: Mapped[Modality] = mapped_column(str_enum(Modality, "session_modality"))
    setting: Mapped[SessionSetting] = mapped_column(str_enum(SessionSetting, "session_setting", 16))
    group_name: Mapped[str | None] = mapped_column(sa.String(GROUP_NAME_MAX))
    series_key: Mapped[str | None] = mapped_column(sa.String(32))
    status: Mapped[SessionStatus] = mapped_column(
        str_enum(SessionStatus, "session_status", 16), default=SessionStatus.PLANNED
    )
    recorded_at: Mapped[dt.datetime | None]
    recorded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    entered_in_error_at: Mapped[dt.datetime | None]
    entered_in_error_reason: Mapped[str | None] = mapped_column(sa.String(REASON_MAX))
    entered_in_error_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    clinician: Mapped[User] = relationship(foreign_keys=[clinician_id])
    site: Mapped[Site] = relationship()
    attendees: Mapped[list[SessionAttendee]] = relationship(
        back_populates="session", order_by="SessionAttendee.position"
    )

    __mapper_args__ = {"version_id_col": version}

    @property
    def ends_at(self) -> dt.datetime:
        return self.starts_at + dt.timedelta(minutes=self.duration_minutes)

    @property
    def entered_in_error(self) -> bool:
        return self.entered_in_error_at is not None

    @property
    def recorded(self) -> bool:
        return self.status == SessionStatus.RECORDED


class SessionAttendee(Base):
    """A patient in a session: planned (no attendance yet), then recorded with an
    attendance and the minutes attended. ``position`` (1..20) numbers the attendees of a
    session, so the database itself caps a group at ``MAX_ATTENDEES``."""

    __tablename__ = "session_attendee"
    __table_args__ = (
        sa.UniqueConstraint(
            "session_id", "patient_id", name="uq_session_attendee_session_id_patient_id"
        ),
        sa.UniqueConstraint(
            "session_id", "position", name="uq_session_attendee_session_id_position"
        ),
        sa.CheckConstraint(f"position BETWEEN 1 AND {MAX_ATTENDEES}", name="position_range"),
        sa.CheckConstraint(
            f"minutes_attended IS NULL OR minutes_attended BETWEEN 0 AND {DURATION_MAX_MINUTES}",
            name="minutes_range",
        ),
        # Absent: 0 or no minutes. Present: some minutes. Not yet recorded: none.
        sa.CheckConstraint(
            f"attendance NOT IN ({ABSENT_SQL}) OR minutes_attended IS NULL OR minutes_attended = 0",
            name="absent_no_minutes",
        ),
        sa.CheckConstraint(
            f"attendance NOT IN ({PRESENT_SQL})"
            " OR (minutes_attended IS NOT NULL AND minutes_attended > 0)",
            name="present_has_minutes",
        ),
        sa.CheckConstraint(
            "attendance IS NOT NULL OR minutes_attended IS NULL", name="minutes_when_recorded"
        ),
        sa.Index("ix_session_attendee_patient", "patient_id", "session_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(sa.ForeignKey("therapy_session.id"))
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    # The active enrollment the patient attends under (its program sets the late limit).
    enrollment_id: Mapped[int] = mapped_column(sa.ForeignKey("enrollment.id"), index=True)
    position: Mapped[int]
    attendance: Mapped[Attendance | None] = mapped_column(
        str_enum(Attendance, "session_attendance")
    )
    minutes_attended: Mapped[int | None]

    session: Mapped[TherapySession] = relationship(back_populates="attendees")
    patient: Mapped[Patient] = relationship()
    enrollment: Mapped[Enrollment] = relationship()


class NoteStatus(StrEnum):
    DRAFT = "draft"
    SIGNED = "signed"

    @property
    def label(self) -> str:
        return self.value.title()


# The columns a signature freezes (the trigger progress_note_signed_immutable lists them).
SIGNED_FROZEN_COLUMNS = (
    "session_id",
    "attendee_id",
    "author_id",
    "status",
    "text",
    "text_sha256",
    "signed_by_id",
    "signed_at",
    "late",
    "cosign_required",
    "cosigner_id",
    "created_at",
)
GROUP_NOTE = "attendee_id IS NULL AND entered_in_error_at IS NULL"
ATTENDEE_NOTE = "attendee_id IS NOT NULL AND entered_in_error_at IS NULL"


class ProgressNote(Base):
    """A session's progress note: the group's (``attendee_id`` NULL) or one attendee's.

    Draft → signed. A signed note's text, hash and signer are frozen (service and
    trigger); corrections are addenda. A trainee's signed note waits for the supervisor
    named on it (``cosigner_id``) until co-signed. ``late``: signed more than the
    program's ``note_late_hours`` after the session ended."""

    __tablename__ = "progress_note"
    __table_args__ = (
        sa.CheckConstraint(
            f"length(text) > 0 AND length(text) <= {NOTE_TEXT_MAX}", name="text_length"
        ),
        sa.CheckConstraint(
            "(status = 'signed') = (signed_at IS NOT NULL)"
            " AND (signed_at IS NULL) = (signed_by_id IS NULL)"
            " AND (signed_at IS NULL) = (text_sha256 IS NULL)",
            name="signed_complete",
        ),
        sa.CheckConstraint("text_sha256 IS NULL OR length(text_sha256) = 64", name="sha256_length"),
        sa.CheckConstraint("status = 'signed' OR NOT late", name="late_when_signed"),
        sa.CheckConstraint(
            "(cosign_required AND cosigner_id IS NOT NULL AND status = 'signed')"
            " OR (NOT cosign_required AND cosigner_id IS NULL)",
            name="cosigner_when_required",
        ),
        sa.CheckConstraint("cosigned_at IS NULL OR cosign_required", name="cosigned_when_required"),
        sa.CheckConstraint(
            "cosigner_id IS NULL OR cosigner_id <> signed_by_id", name="cosigner_not_signer"
        ),
        *_in_error_checks(),
        # One live group note per session, one live note per attendee.
        sa.Index(
            "uq_progress_note_live_group",
            "session_id",
            unique=True,
            sqlite_where=sa.text(GROUP_NOTE),
            postgresql_where=sa.text(GROUP_NOTE),
        ),
        sa.Index(
            "uq_progress_note_live_attendee",
            "attendee_id",
            unique=True,
            sqlite_where=sa.text(ATTENDEE_NOTE),
            postgresql_where=sa.text(ATTENDEE_NOTE),
        ),
        sa.Index("ix_progress_note_session", "session_id"),
        # Every note of an attendee row, entered in error or not (the partial unique index
        # above holds live ones only): a patient's history reads them by attendee. Group
        # notes (NULL) are left out, so the planner never reads them through it.
        sa.Index(
            "ix_progress_note_attendee",
            "attendee_id",
            sqlite_where=sa.text("attendee_id IS NOT NULL"),
            postgresql_where=sa.text("attendee_id IS NOT NULL"),
        ),
        sa.Index("ix_progress_note_author_status", "author_id", "status", "created_at"),
        sa.Index("ix_progress_note_cosigner", "cosigner_id", "cosigned_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(sa.ForeignKey("therapy_session.id"))
    attendee_id: Mapped[int | None] = mapped_column(sa.ForeignKey("session_attendee.id"))
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    status: Mapped[NoteStatus] = mapped_column(
        str_enum(NoteStatus, "note_status", 16), default=NoteStatus.DRAFT
    )
    text: Mapped[str] = mapped_column(sa.Text)
    text_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    signed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    signed_at: Mapped[dt.datetime | None]
    late: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    cosign_required: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    cosigner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    cosigned_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    entered_in_error_at: Mapped[dt.datetime | None]
    entered_in_error_reason: Mapped[str | None] = mapped_column(sa.String(REASON_MAX))
    entered_in_error_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    # Optimistic lock: two clinicians editing one draft get a conflict, not an overwrite.
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    session: Mapped[TherapySession] = relationship()
    attendee: Mapped[SessionAttendee | None] = relationship()
    addenda: Mapped[list[NoteAddendum]] = relationship(
        back_populates="note", order_by="NoteAddendum.id"
    )

    __mapper_args__ = {"version_id_col": version}

    @property
    def signed(self) -> bool:
        return self.status == NoteStatus.SIGNED

    @property
    def is_group_note(self) -> bool:
        return self.attendee_id is None

    @property
    def entered_in_error(self) -> bool:
        return self.entered_in_error_at is not None

    @property
    def awaiting_cosignature(self) -> bool:
        return self.cosign_required and self.cosigned_at is None and not self.entered_in_error


class NoteAddendum(Base):
    """A correction under a signed note: author, time, text; signed when saved (its
    SHA-256 recorded). Append-only: triggers refuse UPDATE and DELETE on both engines."""

    __tablename__ = "note_addendum"
    __table_args__ = (
        sa.CheckConstraint(
            f"length(text) > 0 AND length(text) <= {NOTE_TEXT_MAX}", name="text_length"
        ),
        sa.CheckConstraint("length(text_sha256) = 64", name="sha256_length"),
        sa.Index("ix_note_addendum_note", "note_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    note_id: Mapped[int] = mapped_column(sa.ForeignKey("progress_note.id"))
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    text: Mapped[str] = mapped_column(sa.Text)
    text_sha256: Mapped[str] = mapped_column(sa.String(64))
    signed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    note: Mapped[ProgressNote] = relationship(back_populates="addenda")


class CounselingNote(Base):
    """An SUD counseling note (42 CFR 2.11, 2024 revision): the clinician's own analysis
    of a session with one patient, kept apart from the progress notes. Read by its author
    and by the clinicians the session's site allows (``CounselingNoteReader``); every read
    is audited, and it is never in an export or print of the chart.
    Append-only (signed at save; triggers refuse UPDATE and DELETE), like addenda."""

    __tablename__ = "counseling_note"
    __table_args__ = (
        sa.CheckConstraint(
            f"length(text) > 0 AND length(text) <= {NOTE_TEXT_MAX}", name="text_length"
        ),
        sa.CheckConstraint("length(text_sha256) = 64", name="sha256_length"),
        sa.Index("ix_counseling_note_author_patient", "author_id", "patient_id", "id"),
        # The chart counts (and lists) the notes about a patient, whoever wrote them.
        sa.Index("ix_counseling_note_patient", "patient_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(sa.ForeignKey("therapy_session.id"), index=True)
    attendee_id: Mapped[int] = mapped_column(sa.ForeignKey("session_attendee.id"))
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    text: Mapped[str] = mapped_column(sa.Text)
    text_sha256: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    session: Mapped[TherapySession] = relationship()
    author: Mapped[User] = relationship(foreign_keys=[author_id])

    def __repr__(self) -> str:
        return f"<CounselingNote id={self.id}>"


LIVE_GRANT = "revoked_at IS NULL"


class CounselingNoteReader(Base):
    """A clinician a site allows to read the SUD counseling notes written at that site
    (the issue's "clinicians the author's site allows"; 42 CFR 2.11). Granted by an
    administrator of the site; a grant is never deleted: revoking it records who and
    when, so the audit can tell who could read what on any day. One live grant per site
    and clinician (a partial unique index); a trigger refuses DELETE and any change but
    the one-time revocation, on both engines."""

    __tablename__ = "counseling_note_reader"
    __table_args__ = (
        sa.CheckConstraint(
            "(revoked_at IS NULL) = (revoked_by_id IS NULL)", name="revoked_complete"
        ),
        sa.CheckConstraint("revoked_at IS NULL OR revoked_at >= granted_at", name="revoked_after"),
        sa.Index(
            "uq_counseling_note_reader_live",
            "site_id",
            "user_id",
            unique=True,
            sqlite_where=sa.text(LIVE_GRANT),
            postgresql_where=sa.text(LIVE_GRANT),
        ),
        sa.Index("ix_counseling_note_reader_user", "user_id", "site_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    granted_by_id: Mapped[int] = mapped_column(sa.ForeignKey("app_user.id"))
    granted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]
    revoked_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    granted_by: Mapped[User] = relationship(foreign_keys=[granted_by_id])

    @property
    def live(self) -> bool:
        return self.revoked_at is None

    def __repr__(self) -> str:
        return f"<CounselingNoteReader id={self.id} site={self.site_id} user={self.user_id}>"
