"""What the therapy pages read (issue 11: "My day", "My caseload", a patient's sessions).

Each function runs a constant number of SQL statements whatever the number of sessions,
attendees or notes (asserted in tests/test_therapy_reading.py). None of them records an
audit event: the page that shows the result records its views (one per patient whose
note text is shown).

Privacy of a group: ``patient_history`` builds its rows from the patient's OWN attendee
rows only and loads the group note and THAT patient's own note; it never loads the
session's other attendees, their names or their notes. Note text (and addenda) is loaded
only for a viewer who may read notes (clinicians); for anyone else the note columns are
not even selected, so neither the text nor its length can reach a page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import aliased, defer

from clinic.accounts.models import User, user_site
from clinic.db import utcnow
from clinic.extensions import db
from clinic.patients.models import Enrollment, Patient
from clinic.security import Permission
from clinic.sites.models import Site
from clinic.therapy.models import (
    PRESENT,
    Attendance,
    NoteAddendum,
    NoteStatus,
    ProgressNote,
    SessionAttendee,
    SessionStatus,
    TherapySession,
)

HISTORY_PAGE = 20
CASELOAD_FLAG_DAYS = 30
QUEUE_LIMIT = 200
# Attendance that counts toward a rate: the patient was expected and came, or did not.
# A session the clinic cancelled does not count against the patient.
COUNTED = (*PRESENT, Attendance.NO_SHOW, Attendance.CANCELLED_BY_PATIENT)


# --- my day -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleEntry:
    session_id: int
    starts_at: dt.datetime
    local_start: dt.datetime  # in the site's time zone
    duration_minutes: int
    kind: str
    modality: str
    setting: str
    group_name: str | None
    site_code: str
    status: str
    attendee_count: int
    entered_in_error: bool
    unrecorded: bool  # planned, and already started
    entered_in_error_reason: str | None = None


def _entry(session: TherapySession, site: Site, count: int, now: dt.datetime) -> ScheduleEntry:
    return ScheduleEntry(
        session_id=session.id,
        starts_at=session.starts_at,
        local_start=session.starts_at.astimezone(ZoneInfo(site.timezone)),
        duration_minutes=session.duration_minutes,
        kind=session.kind,
        modality=session.modality,
        setting=session.setting,
        group_name=session.group_name,
        site_code=site.code,
        status=session.status,
        attendee_count=count,
        entered_in_error=session.entered_in_error,
        unrecorded=session.status == SessionStatus.PLANNED and session.starts_at <= now,
        entered_in_error_reason=session.entered_in_error_reason,
    )


def _sessions_with_counts(query: sa.Select) -> list[tuple[TherapySession, Site, int]]:
    count = (
        sa.select(sa.func.count(SessionAttendee.id))
        .where(SessionAttendee.session_id == TherapySession.id)
        .correlate(TherapySession)
        .scalar_subquery()
    )
    rows = db.session.execute(
        query.add_columns(Site, count).join(Site, Site.id == TherapySession.site_id)
    )
    return [(row[0], row[1], row[2]) for row in rows]


def day_schedule(
    clinician: User, day: dt.date, *, now: dt.datetime | None = None
) -> list[ScheduleEntry]:
    """The clinician's sessions whose site-local day is ``day`` (planned, recorded and
    entered in error, the last struck through by the page), by start time. One query."""
    now = now or utcnow()
    # Every time zone's ``day`` lies within this UTC window; the site's own zone decides.
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) - dt.timedelta(hours=14)
    end = start + dt.timedelta(hours=14 + 24 + 14)
    rows = _sessions_with_counts(
        sa.select(TherapySession)
        .where(
            TherapySession.clinician_id == clinician.id,
            TherapySession.starts_at >= start,
            TherapySession.starts_at < end,
        )
        .order_by(TherapySession.starts_at, TherapySession.id)
    )
    return [
        _entry(session, site, count, now)
        for session, site, count in rows
        if session.starts_at.astimezone(ZoneInfo(site.timezone)).date() == day
    ]


def unrecorded_sessions(clinician: User, *, now: dt.datetime | None = None) -> list[ScheduleEntry]:
    """Sessions the clinician planned that have started and are not recorded yet (live
    ones), oldest first. One query."""
    now = now or utcnow()
    rows = _sessions_with_counts(
        sa.select(TherapySession)
        .where(
            TherapySession.clinician_id == clinician.id,
            TherapySession.status == SessionStatus.PLANNED,
            TherapySession.starts_at <= now,
            TherapySession.entered_in_error_at.is_(None),
        )
        .order_by(TherapySession.starts_at, TherapySession.id)
        .limit(QUEUE_LIMIT)
    )
    return [_entry(session, site, count, now) for session, site, count in rows]


@dataclass(frozen=True)
class NoteQueueEntry:
    note_id: int
    session_id: int
    session_starts_at: dt.datetime
    group: bool
    created_at: dt.datetime
    signed_at: dt.datetime | None
    late: bool


def _note_queue(query: sa.Select) -> list[NoteQueueEntry]:
    rows = db.session.execute(
        query.add_columns(TherapySession.starts_at)
        .join(TherapySession, TherapySession.id == ProgressNote.session_id)
        .limit(QUEUE_LIMIT)
    )
    return [
        NoteQueueEntry(
            note_id=note.id,
            session_id=note.session_id,
            session_starts_at=starts_at,
            group=note.attendee_id is None,
            created_at=note.created_at,
            signed_at=note.signed_at,
            late=note.late,
        )
        for note, starts_at in rows
    ]


def _note_columns() -> sa.Select:
    # Every column but the text: a queue shows no note text.
    return sa.select(ProgressNote).options(
        defer(ProgressNote.text), defer(ProgressNote.text_sha256)
    )


def unsigned_notes(author: User) -> list[NoteQueueEntry]:
    """The author's live drafts (of live sessions: a session entered in error takes no
    signature), oldest session first. One query."""
    return _note_queue(
        _note_columns()
        .where(
            ProgressNote.author_id == author.id,
            ProgressNote.status == NoteStatus.DRAFT,
            ProgressNote.entered_in_error_at.is_(None),
            TherapySession.entered_in_error_at.is_(None),
        )
        .order_by(TherapySession.starts_at, ProgressNote.id)
    )


def cosign_queue(supervisor: User) -> list[NoteQueueEntry]:
    """Signed notes of the supervisor's trainees waiting for their co-signature, oldest
    signature first. One query."""
    return _note_queue(
        _note_columns()
        .where(
            ProgressNote.cosigner_id == supervisor.id,
            ProgressNote.cosign_required,
            ProgressNote.cosigned_at.is_(None),
            ProgressNote.entered_in_error_at.is_(None),
        )
        .order_by(ProgressNote.signed_at, ProgressNote.id)
    )


def drafts_of_inactive_clinicians(viewer: User) -> list[NoteQueueEntry]:
    """Live drafts whose author's account is deactivated, at the viewer's sites (every
    site for an organisation-wide administrator), oldest session first: an
    administrator reassigns them (``notes.reassign_draft``). One query."""
    query = (
        _note_columns()
        .join(User, User.id == ProgressNote.author_id)
        .where(
            sa.not_(User.active),
            ProgressNote.status == NoteStatus.DRAFT,
            ProgressNote.entered_in_error_at.is_(None),
        )
        .order_by(TherapySession.starts_at, ProgressNote.id)
    )
    if not viewer.all_sites:
        query = query.where(TherapySession.site_id.in_(viewer.site_ids or {-1}))
    return _note_queue(query)


# --- caseload ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseloadRow:
    patient_id: int
    display_name: str
    mrn: str
    last_attended_at: dt.datetime | None
    days_since: int | None
    month_attended: int
    month_counted: int
    flagged: bool  # no attended session for CASELOAD_FLAG_DAYS days (or never)
    # The row's patient, held for the page's view event (``access.record_view``).
    patient: Patient | None = field(default=None, compare=False, repr=False)

    @property
    def month_rate(self) -> float | None:
        """This month's attendance: attended (late, left early) over the sessions that
        count (attended, no-show, cancelled by the patient); None when none counted."""
        return self.month_attended / self.month_counted if self.month_counted else None


CASELOAD_SORTS = ("name", "days", "rate")


def _month_window(today: dt.date, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    zone = ZoneInfo(timezone)
    first = today.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return (
        dt.datetime.combine(first, dt.time(), tzinfo=zone).astimezone(dt.UTC),
        dt.datetime.combine(following, dt.time(), tzinfo=zone).astimezone(dt.UTC),
    )


def caseload(
    clinician: User,
    *,
    today: dt.date,
    timezone: str,
    sort: str = "name",
    descending: bool = False,
    now: dt.datetime | None = None,
) -> list[CaseloadRow]:
    """Patients with an active enrollment whose primary counselor is ``clinician``, with
    the last attended session, days since, and this month's attendance (the month of
    ``today`` in ``timezone``); flagged at 30 days without an attended session. Sorted by
    ``sort`` (name, days, rate). Only patients of the clinician's own sites: a patient
    who moved to a site the clinician does not work at leaves the list (site scope in the
    query, like every list). Three queries whatever the caseload."""
    now = now or utcnow()
    counselled = (
        sa.select(Enrollment.id)
        .where(
            Enrollment.patient_id == Patient.id,
            Enrollment.primary_counselor_id == clinician.id,
            Enrollment.discharged_on.is_(None),
        )
        .exists()
    )
    own_sites = sa.select(user_site.c.site_id).where(user_site.c.user_id == clinician.id)
    patients = list(
        db.session.scalars(
            sa.select(Patient).where(
                counselled,
                Patient.site_id.in_(own_sites),
                Patient.entered_in_error_at.is_(None),
            )
        )
    )
    ids = [row.id for row in patients] or [-1]
    live_present = sa.and_(
        SessionAttendee.patient_id.in_(ids),
        SessionAttendee.attendance.in_([a.value for a in PRESENT]),
        TherapySession.entered_in_error_at.is_(None),
    )
    last = dict(
        db.session.execute(
            sa.select(SessionAttendee.patient_id, sa.func.max(TherapySession.starts_at))
            .join(TherapySession, TherapySession.id == SessionAttendee.session_id)
            .where(live_present)
            .group_by(SessionAttendee.patient_id)
        ).all()
    )
    month_start, month_end = _month_window(today, timezone)
    present = sa.func.sum(
        sa.case((SessionAttendee.attendance.in_([a.value for a in PRESENT]), 1), else_=0)
    )
    month = {
        row.patient_id: (int(row.present or 0), int(row.counted or 0))
        for row in db.session.execute(
            sa.select(
                SessionAttendee.patient_id,
                present.label("present"),
                sa.func.count().label("counted"),
            )
            .join(TherapySession, TherapySession.id == SessionAttendee.session_id)
            .where(
                SessionAttendee.patient_id.in_(ids),
                SessionAttendee.attendance.in_([a.value for a in COUNTED]),
                TherapySession.entered_in_error_at.is_(None),
                TherapySession.starts_at >= month_start,
                TherapySession.starts_at < month_end,
            )
            .group_by(SessionAttendee.patient_id)
        )
    }
    rows = []
    for patient in patients:
        last_at = last.get(patient.id)
        if last_at is not None and last_at.tzinfo is None:  # SQLite's max() loses the type
            last_at = last_at.replace(tzinfo=dt.UTC)
        days = (now - last_at).days if last_at is not None else None
        attended, counted = month.get(patient.id, (0, 0))
        preferred = f" ({patient.preferred_name})" if patient.preferred_name else ""
        rows.append(
            CaseloadRow(
                patient_id=patient.id,
                display_name=f"{patient.last_name}, {patient.first_name}{preferred}",
                mrn=patient.mrn,
                last_attended_at=last_at,
                days_since=days,
                month_attended=attended,
                month_counted=counted,
                flagged=days is None or days >= CASELOAD_FLAG_DAYS,
                patient=patient,
            )
        )
    return _sorted_caseload(rows, sort, descending)


def _sorted_caseload(rows: list[CaseloadRow], sort: str, descending: bool) -> list[CaseloadRow]:
    if sort == "days":
        # Never attended sorts as the longest wait.
        def key(r: CaseloadRow):
            return (r.days_since is None, r.days_since or 0, r.display_name.casefold())
    elif sort == "rate":

        def key(r: CaseloadRow):
            return (r.month_rate is None, r.month_rate or 0.0, r.display_name.casefold())
    else:

        def key(r: CaseloadRow):
            return (r.display_name.casefold(), r.patient_id)

    return sorted(rows, key=key, reverse=descending)


# --- a patient's sessions ---------------------------------------------------------------------


@dataclass(frozen=True)
class AddendumView:
    id: int
    author_id: int
    signed_at: dt.datetime
    text: str


@dataclass(frozen=True)
class NoteView:
    id: int
    status: str
    author_id: int
    signed_at: dt.datetime | None
    late: bool
    awaiting_cosignature: bool
    cosigned_at: dt.datetime | None
    entered_in_error: bool
    text: str
    addenda: list[AddendumView] = field(default_factory=list)


@dataclass(frozen=True)
class HistoryRow:
    """One session in a patient's history: the session's facts, THIS patient's attendance,
    and (for clinicians) the group note and this patient's own note. Nothing about any
    other attendee."""

    session_id: int
    attendee_id: int
    starts_at: dt.datetime
    site_timezone: str
    duration_minutes: int
    kind: str
    modality: str
    setting: str
    group_name: str | None
    clinician_name: str
    status: str
    attendance: str | None
    minutes_attended: int | None
    entered_in_error: bool
    group_note: NoteView | None = None
    own_note: NoteView | None = None
    # For clinicians only (None for anyone else): the reason the session was marked.
    entered_in_error_reason: str | None = None


Cursor = tuple[dt.datetime, int]


@dataclass(frozen=True)
class HistoryPage:
    rows: list[HistoryRow]
    next_cursor: Cursor | None  # (starts_at, session id) of the last row when more follow


def patient_history(
    patient: Patient,
    *,
    viewer: User,
    after: Cursor | None = None,
    limit: int = HISTORY_PAGE,
) -> HistoryPage:
    """A patient's sessions, newest first, keyset-paginated on (starts_at, session id):
    ``after`` is the previous page's ``next_cursor``. Clinicians get the group note and
    this patient's own note with their addenda (three queries); other roles get the
    session facts only (one query)."""
    limit = max(1, min(limit, 100))
    clinician = aliased(User)
    query = (
        sa.select(
            TherapySession.id.label("session_id"),
            SessionAttendee.id.label("attendee_id"),
            TherapySession.starts_at,
            Site.timezone,
            TherapySession.duration_minutes,
            TherapySession.kind,
            TherapySession.modality,
            TherapySession.setting,
            TherapySession.group_name,
            clinician.full_name,
            TherapySession.status,
            SessionAttendee.attendance,
            SessionAttendee.minutes_attended,
            TherapySession.entered_in_error_at,
            TherapySession.entered_in_error_reason,
        )
        .join(TherapySession, TherapySession.id == SessionAttendee.session_id)
        .join(Site, Site.id == TherapySession.site_id)
        .join(clinician, clinician.id == TherapySession.clinician_id)
        .where(SessionAttendee.patient_id == patient.id)
        .order_by(TherapySession.starts_at.desc(), TherapySession.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        starts_at, session_id = after
        # The first bound alone is what an index range starts from (the OR is only a
        # filter): without it a deep page reads every newer row first.
        query = query.where(
            TherapySession.starts_at <= starts_at,
            sa.or_(
                TherapySession.starts_at < starts_at,
                sa.and_(TherapySession.starts_at == starts_at, TherapySession.id < session_id),
            ),
        )
    fetched = list(db.session.execute(query))
    more = len(fetched) > limit
    fetched = fetched[:limit]
    notes: dict[tuple[int, int | None], NoteView] = {}
    clinician_viewer = viewer.can(Permission.NOTES_READ)
    if fetched and clinician_viewer:
        notes = _notes_for(
            session_ids=[r.session_id for r in fetched],
            attendee_ids=[r.attendee_id for r in fetched],
        )
    rows = [
        HistoryRow(
            session_id=r.session_id,
            attendee_id=r.attendee_id,
            starts_at=r.starts_at,
            site_timezone=r.timezone,
            duration_minutes=r.duration_minutes,
            kind=r.kind,
            modality=r.modality,
            setting=r.setting,
            group_name=r.group_name,
            clinician_name=r.full_name,
            status=r.status,
            attendance=r.attendance,
            minutes_attended=r.minutes_attended,
            entered_in_error=r.entered_in_error_at is not None,
            group_note=notes.get((r.session_id, None)),
            own_note=notes.get((r.session_id, r.attendee_id)),
            entered_in_error_reason=r.entered_in_error_reason if clinician_viewer else None,
        )
        for r in fetched
    ]
    last = fetched[-1] if fetched else None
    cursor = (last.starts_at, last.session_id) if more and last is not None else None
    return HistoryPage(rows, cursor)


def _notes_for(
    *, session_ids: list[int], attendee_ids: list[int]
) -> dict[tuple[int, int | None], NoteView]:
    """The group notes of these sessions and the notes of exactly these attendee rows
    (the patient's own), with their addenda: two queries. A note entered in error is
    shown (struck through) unless a live one replaced it."""
    found = list(
        db.session.scalars(
            sa.select(ProgressNote)
            .where(
                sa.or_(
                    sa.and_(
                        ProgressNote.session_id.in_(session_ids),
                        ProgressNote.attendee_id.is_(None),
                    ),
                    ProgressNote.attendee_id.in_(attendee_ids),
                )
            )
            .order_by(ProgressNote.id)
        )
    )
    addenda: dict[int, list[AddendumView]] = {}
    if found:
        for addendum in db.session.scalars(
            sa.select(NoteAddendum)
            .where(NoteAddendum.note_id.in_([n.id for n in found]))
            .order_by(NoteAddendum.id)
        ):
            addenda.setdefault(addendum.note_id, []).append(
                AddendumView(addendum.id, addendum.author_id, addendum.signed_at, addendum.text)
            )
    views: dict[tuple[int, int | None], NoteView] = {}
    for note in found:
        key = (note.session_id, note.attendee_id)
        current = views.get(key)
        if current is not None and not current.entered_in_error and note.entered_in_error:
            continue
        views[key] = NoteView(
            id=note.id,
            status=note.status,
            author_id=note.author_id,
            signed_at=note.signed_at,
            late=note.late,
            awaiting_cosignature=note.awaiting_cosignature,
            cosigned_at=note.cosigned_at,
            entered_in_error=note.entered_in_error,
            text=note.text,
            addenda=addenda.get(note.id, []),
        )
    return views


def patient_attendance_rate(patient: Patient) -> tuple[int, int]:
    """(attended, counted) over the patient's live sessions: the history page's rate.
    One query."""
    present = sa.func.sum(
        sa.case((SessionAttendee.attendance.in_([a.value for a in PRESENT]), 1), else_=0)
    )
    row = db.session.execute(
        sa.select(present, sa.func.count())
        .select_from(SessionAttendee)
        .join(TherapySession, TherapySession.id == SessionAttendee.session_id)
        .where(
            SessionAttendee.patient_id == patient.id,
            SessionAttendee.attendance.in_([a.value for a in COUNTED]),
            TherapySession.entered_in_error_at.is_(None),
        )
    ).one()
    return int(row[0] or 0), int(row[1] or 0)


__all__ = [
    "CASELOAD_SORTS",
    "CaseloadRow",
    "HistoryPage",
    "HistoryRow",
    "NoteQueueEntry",
    "NoteView",
    "ScheduleEntry",
    "caseload",
    "cosign_queue",
    "day_schedule",
    "drafts_of_inactive_clinicians",
    "patient_attendance_rate",
    "patient_history",
    "unrecorded_sessions",
    "unsigned_notes",
]
