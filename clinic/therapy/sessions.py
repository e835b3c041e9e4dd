"""Therapy sessions: plan one, plan a weekly group in one step, record one in one pass
(issue 11; DOMAIN.md "Therapy sessions"; SCENARIOS.md "Tuesday").

Each function checks its rules (each refusal a ``DomainError`` naming the form field it
concerns), changes rows, records the audit event (ids and kinds only, never note text)
and flushes; the caller commits once. Every check runs before the first write, so a
refused recording leaves nothing half-saved (and the caller rolls back in any case).

Who may attend (decided for this increment): a patient of the session's site (one of the
clinician's sites), not entered in error, with an enrollment in force on the session's
site-local day (admitted on or before it, not discharged before it). A patient enrolled
in several programs attends under the enrollment whose primary counselor is the
session's clinician, else the earliest admission: its program sets the late-note limit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit import AuditAction, record
from clinic.db import utcnow
from clinic.errors import ConflictError, DomainError
from clinic.extensions import db
from clinic.forms import has_control_characters
from clinic.patients.models import Enrollment, Patient
from clinic.security import Permission
from clinic.sites.models import Site
from clinic.therapy import notes as note_services
from clinic.therapy.models import (
    DURATION_MAX_MINUTES,
    GROUP_NAME_MAX,
    MAX_ATTENDEES,
    REASON_MAX,
    Attendance,
    Modality,
    SessionAttendee,
    SessionKind,
    SessionSetting,
    SessionStatus,
    TherapySession,
)

MAX_WEEKS = 26  # a recurring group is planned half a year ahead at most
PLAN_AHEAD_DAYS = 366
NOT_A_CLINICIAN_MESSAGE = "Only clinicians plan and record therapy sessions."
ATTENDEE_REFUSED_MESSAGE = (
    "Attendees must be patients of this site with an enrollment in force on the session's day."
)


@dataclass(frozen=True)
class SessionPlan:
    """What a clinician plans (the form's fields, already typed)."""

    site_id: int | None
    starts_at: dt.datetime | None
    duration_minutes: int | None
    kind: SessionKind | str | None
    modality: Modality | str | None
    setting: SessionSetting | str | None
    patient_ids: Sequence[int] = ()
    group_name: str | None = None


@dataclass(frozen=True)
class AttendeeRecord:
    """One attendee's line when a session is recorded: attendance, minutes and an
    optional individual note."""

    patient_id: int
    attendance: Attendance | str | None
    minutes_attended: int | None = None
    note: str | None = None


@dataclass(frozen=True)
class _Checked:
    site: Site
    starts_at: dt.datetime
    duration_minutes: int
    kind: SessionKind
    modality: Modality
    setting: SessionSetting
    group_name: str | None


# --- checks ----------------------------------------------------------------------------------


def require_clinician(actor: User) -> None:
    if not actor.can(Permission.SESSIONS_RECORD):
        raise DomainError(NOT_A_CLINICIAN_MESSAGE)


def _enum(enum_type, value, *, field: str, message: str):
    try:
        return enum_type(value)
    except (ValueError, TypeError):
        raise DomainError(message, field=field) from None


def _check_plan(plan: SessionPlan, actor: User) -> _Checked:
    site = db.session.get(Site, plan.site_id) if plan.site_id is not None else None
    if site is None or not site.active or site.id not in actor.site_ids:
        raise DomainError("Choose one of your sites.", field="site_id")
    if plan.starts_at is None or plan.starts_at.tzinfo is None:
        raise DomainError("Enter the date and time the session starts.", field="starts_at")
    if plan.starts_at > utcnow() + dt.timedelta(days=PLAN_AHEAD_DAYS):
        raise DomainError("Plan sessions at most a year ahead.", field="starts_at")
    duration = plan.duration_minutes
    if duration is None or isinstance(duration, bool) or not 1 <= duration <= DURATION_MAX_MINUTES:
        raise DomainError(
            f"Enter a duration from 1 to {DURATION_MAX_MINUTES} minutes.", field="duration_minutes"
        )
    kind = _enum(SessionKind, plan.kind, field="kind", message="Choose the kind of session.")
    modality = _enum(Modality, plan.modality, field="modality", message="Choose a modality.")
    setting = _enum(SessionSetting, plan.setting, field="setting", message="Choose a setting.")
    group_name = (plan.group_name or "").strip() or None
    if group_name is not None:
        if kind is SessionKind.INDIVIDUAL:
            raise DomainError("Only group and family sessions have a name.", field="group_name")
        if len(group_name) > GROUP_NAME_MAX or has_control_characters(group_name):
            raise DomainError(
                f"Enter a name of at most {GROUP_NAME_MAX} characters, on one line.",
                field="group_name",
            )
    return _Checked(site, plan.starts_at, duration, kind, modality, setting, group_name)


def _check_count(kind: SessionKind, count: int, *, field: str) -> None:
    if count == 0:
        raise DomainError("Add at least one attendee.", field=field)
    if kind is SessionKind.INDIVIDUAL and count != 1:
        raise DomainError("An individual session has exactly one attendee.", field=field)
    if count > MAX_ATTENDEES:
        raise DomainError(f"A session has at most {MAX_ATTENDEES} attendees.", field=field)


def site_day(site: Site, moment: dt.datetime) -> dt.date:
    return moment.astimezone(ZoneInfo(site.timezone)).date()


def eligible_enrollments(
    site: Site, day: dt.date, patient_ids: Sequence[int], clinician_id: int
) -> dict[int, Enrollment]:
    """For each patient who may attend a session at ``site`` on ``day`` (module doc), the
    enrollment they attend under. Two queries whatever the number of patients."""
    ids = list(dict.fromkeys(patient_ids))
    if not ids:
        return {}
    patients = set(
        db.session.scalars(
            sa.select(Patient.id).where(
                Patient.id.in_(ids),
                Patient.site_id == site.id,
                Patient.entered_in_error_at.is_(None),
            )
        )
    )
    enrollments = db.session.scalars(
        sa.select(Enrollment)
        .where(
            Enrollment.patient_id.in_(patients or {-1}),
            Enrollment.admitted_on <= day,
            sa.or_(Enrollment.discharged_on.is_(None), Enrollment.discharged_on >= day),
        )
        .order_by(Enrollment.admitted_on, Enrollment.id)
    )
    chosen: dict[int, Enrollment] = {}
    for enrollment in enrollments:
        current = chosen.get(enrollment.patient_id)
        if current is None or (
            enrollment.primary_counselor_id == clinician_id
            and current.primary_counselor_id != clinician_id
        ):
            chosen[enrollment.patient_id] = enrollment
    return chosen


def _check_attendees(
    site: Site, day: dt.date, patient_ids: Sequence[int], clinician_id: int, *, field: str
) -> dict[int, Enrollment]:
    if len(set(patient_ids)) != len(patient_ids):
        raise DomainError("Each patient attends once: remove the repeated one.", field=field)
    chosen = eligible_enrollments(site, day, patient_ids, clinician_id)
    if any(patient_id not in chosen for patient_id in patient_ids):
        raise DomainError(ATTENDEE_REFUSED_MESSAGE, field=field)
    return chosen


GROUP_NAME_NAMES_MESSAGE = (
    "The group name is shown in every attendee's chart: name no patient (it names {names})."
)


def _check_group_name(checked: _Checked, patient_ids: Sequence[int]) -> None:
    """A group name is shown in every attendee's chart (and to staff): like the reason
    of a session entered in error, it names no attendee. One query."""
    if checked.group_name is None:
        return
    patients = db.session.scalars(sa.select(Patient).where(Patient.id.in_(patient_ids)))
    named = note_services.names_in_text(checked.group_name, patients)
    if named:
        raise DomainError(
            GROUP_NAME_NAMES_MESSAGE.format(names=", ".join(named)), field="group_name"
        )


def _check_free(clinician: User, starts_at: dt.datetime, *, field: str = "starts_at") -> None:
    taken = db.session.scalar(
        sa.select(TherapySession.id).where(
            TherapySession.clinician_id == clinician.id,
            TherapySession.starts_at == starts_at,
            TherapySession.entered_in_error_at.is_(None),
        )
    )
    if taken is not None:
        raise DomainError("You already have a session starting at that time.", field=field)


def _audit(session: TherapySession, action: AuditAction, actor: User, **details) -> None:
    record(
        action,
        actor=actor,
        entity_type="therapy_session",
        entity_id=session.id,
        site_id=session.site_id,
        details={"kind": SessionKind(session.kind).value, **details},
    )


def _audit_attendee(attendee: SessionAttendee, action: AuditAction, actor: User, **details):
    record(
        action,
        actor=actor,
        entity_type="session_attendee",
        entity_id=attendee.id,
        patient_id=attendee.patient_id,
        site_id=attendee.session.site_id,
        details={"session_id": attendee.session_id, **details},
    )


def _insert(
    checked: _Checked,
    starts_at: dt.datetime,
    patient_ids: Sequence[int],
    enrollments: dict[int, Enrollment],
    *,
    actor: User,
    series_key: str | None,
) -> TherapySession:
    session = TherapySession(
        clinician_id=actor.id,
        site_id=checked.site.id,
        starts_at=starts_at,
        duration_minutes=checked.duration_minutes,
        kind=checked.kind,
        modality=checked.modality,
        setting=checked.setting,
        group_name=checked.group_name,
        series_key=series_key,
        status=SessionStatus.PLANNED,
        created_by_id=actor.id,
    )
    db.session.add(session)
    for position, patient_id in enumerate(patient_ids, start=1):
        session.attendees.append(
            SessionAttendee(
                patient_id=patient_id,
                enrollment_id=enrollments[patient_id].id,
                position=position,
            )
        )
    db.session.flush()
    _audit(session, AuditAction.CREATE, actor, attendees=len(patient_ids), series=bool(series_key))
    for attendee in session.attendees:
        _audit_attendee(attendee, AuditAction.CREATE, actor)
    return session


# --- use cases -------------------------------------------------------------------------------


def plan_session(*, actor: User, plan: SessionPlan) -> TherapySession:
    """Plan a session of the signed-in clinician (date, time, attendees) to record later.
    Attendees: 1 for an individual session, up to 20 otherwise, each eligible (module
    doc). A clinician has one live session per starting instant (a double submit saves
    once; the partial unique index uq_therapy_session_live_clinician_start backs it)."""
    require_clinician(actor)
    checked = _check_plan(plan, actor)
    patient_ids = list(plan.patient_ids)
    _check_count(checked.kind, len(patient_ids), field="patient_ids")
    enrollments = _check_attendees(
        checked.site,
        site_day(checked.site, checked.starts_at),
        patient_ids,
        actor.id,
        field="patient_ids",
    )
    _check_group_name(checked, patient_ids)
    _check_free(actor, checked.starts_at)
    return _insert(
        checked, checked.starts_at, patient_ids, enrollments, actor=actor, series_key=None
    )


def weekly_starts(site: Site, first: dt.datetime, weeks: int) -> list[dt.datetime]:
    """The start of each week's session, at the same wall-clock time in the site's time
    zone (across a daylight-saving change), in UTC."""
    zone = ZoneInfo(site.timezone)
    local = first.astimezone(zone)
    starts = []
    for week in range(weeks):
        wall = (local.replace(tzinfo=None) + dt.timedelta(weeks=week)).replace(tzinfo=zone)
        starts.append(wall.astimezone(dt.UTC))
    return starts


def plan_weekly_group(*, actor: User, plan: SessionPlan, weeks: int | None) -> list[TherapySession]:
    """Plan a recurring group (or family) session: ``weeks`` sessions, one a week at the
    same local time, with the same attendees, tied by one ``series_key``. Every attendee
    must be eligible on every week's day; a week that clashes with another of the
    clinician's sessions refuses the whole series (nothing is planned half-way)."""
    require_clinician(actor)
    checked = _check_plan(plan, actor)
    if checked.kind is SessionKind.INDIVIDUAL:
        raise DomainError("Only group and family sessions recur weekly.", field="kind")
    if weeks is None or isinstance(weeks, bool) or not 1 <= weeks <= MAX_WEEKS:
        raise DomainError(f"Plan from 1 to {MAX_WEEKS} weeks.", field="weeks")
    patient_ids = list(plan.patient_ids)
    _check_count(checked.kind, len(patient_ids), field="patient_ids")
    starts = weekly_starts(checked.site, checked.starts_at, weeks)
    per_week = []
    for starts_at in starts:
        per_week.append(
            _check_attendees(
                checked.site,
                site_day(checked.site, starts_at),
                patient_ids,
                actor.id,
                field="patient_ids",
            )
        )
    _check_group_name(checked, patient_ids)
    clash = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(TherapySession)
        .where(
            TherapySession.clinician_id == actor.id,
            TherapySession.starts_at.in_(starts),
            TherapySession.entered_in_error_at.is_(None),
        )
    )
    if clash:
        raise DomainError(
            "You already have a session at that time in one of these weeks.", field="starts_at"
        )
    series_key = uuid.uuid4().hex
    return [
        _insert(checked, starts_at, patient_ids, enrollments, actor=actor, series_key=series_key)
        for starts_at, enrollments in zip(starts, per_week, strict=True)
    ]


@dataclass
class RecordedSession:
    session: TherapySession
    group_note_id: int | None
    attendee_note_ids: dict[int, int]  # patient id -> note id


def _check_line(
    line: AttendeeRecord, session: TherapySession, index: int, now: dt.datetime
) -> tuple[Attendance, int | None]:
    prefix = f"attendees-{index}"
    attendance = _enum(
        Attendance,
        line.attendance,
        field=f"{prefix}-attendance",
        message="Choose the attendance.",
    )
    minutes = line.minutes_attended
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int)):
        raise DomainError("Enter the minutes as a whole number.", field=f"{prefix}-minutes")
    if attendance.present:
        if session.starts_at > now:
            raise DomainError(
                "This session has not started yet: it cannot be recorded as attended.",
                field=f"{prefix}-attendance",
            )
        if minutes is None:
            minutes = session.duration_minutes if attendance is Attendance.ATTENDED else None
        if minutes is None or not 1 <= minutes <= session.duration_minutes:
            raise DomainError(
                f"Enter the minutes attended, from 1 to the session's {session.duration_minutes}.",
                field=f"{prefix}-minutes",
            )
    elif attendance is Attendance.NO_SHOW and session.starts_at > now:
        raise DomainError(
            "This session has not started yet: a patient cannot have missed it (record a "
            "cancellation instead).",
            field=f"{prefix}-attendance",
        )
    elif minutes not in (None, 0):
        raise DomainError(
            f"A patient who did not attend ({attendance.label.lower()}) has no minutes.",
            field=f"{prefix}-minutes",
        )
    return attendance, minutes


def record_session(
    session: TherapySession,
    *,
    actor: User,
    attendees: Sequence[AttendeeRecord],
    group_note: str | None = None,
    sign: bool = False,
    now: dt.datetime | None = None,
) -> RecordedSession:
    """Record a session in one pass: each attendee's attendance and minutes (every
    planned attendee, plus any walk-in, up to 20), the group note and each attendee's own
    note, optionally signed at once. All or nothing: every line and note is checked
    before the first write.

    Rules: only the session's clinician records it (while working at its site), once; a
    session that has not started cannot be recorded as attended (late, left early) nor
    as a no-show; minutes attended lie within the session's duration (a no-show or a
    cancellation has none); a group note only in a group or family session."""
    now = now or utcnow()
    require_clinician(actor)
    if session.clinician_id != actor.id or session.site_id not in actor.site_ids:
        raise DomainError("Only the session's clinician, at the session's site, records it.")
    if session.entered_in_error:
        raise DomainError("This session was entered in error: it cannot be recorded.")
    if session.status == SessionStatus.RECORDED:
        raise DomainError("This session is already recorded.")
    kind = SessionKind(session.kind)
    lines = list(attendees)
    _check_count(kind, len(lines), field="attendees")
    patient_ids = [line.patient_id for line in lines]
    planned = {a.patient_id: a for a in session.attendees}
    missing = set(planned) - set(patient_ids)
    if missing:
        raise DomainError(
            "Record every planned attendee (a patient who did not come is a no-show or a "
            "cancellation).",
            field="attendees",
        )
    if len(set(patient_ids)) != len(patient_ids):
        raise DomainError("Each patient attends once: remove the repeated line.", field="attendees")
    walk_ins = [p for p in patient_ids if p not in planned]
    enrollments = {}
    if walk_ins:
        day = site_day(session.site, session.starts_at)
        enrollments = _check_attendees(session.site, day, walk_ins, actor.id, field="attendees")
    checked_lines = [_check_line(line, session, i, now) for i, line in enumerate(lines)]
    if group_note is not None and not group_note.strip():
        group_note = None
    if group_note is not None:
        if not kind.has_group_note:
            raise DomainError("An individual session has no group note.", field="group_note")
        note_services.check_text(group_note, field="group_note")
    for i, line in enumerate(lines):
        if line.note is not None and line.note.strip():
            note_services.check_text(line.note, field=f"attendees-{i}-note")
    if (group_note is not None or any(line.note and line.note.strip() for line in lines)) and (
        note_services.live_notes_of(session)
    ):
        raise DomainError(
            "This session already has a draft note: sign or edit it from the session's page.",
            field="group_note",
        )

    # --- writes ---
    position = max((a.position for a in session.attendees), default=0)
    rows: dict[int, SessionAttendee] = {}
    for line, (attendance, minutes) in zip(lines, checked_lines, strict=True):
        attendee = planned.get(line.patient_id)
        if attendee is None:
            position += 1
            attendee = SessionAttendee(
                patient_id=line.patient_id,
                enrollment_id=enrollments[line.patient_id].id,
                position=position,
            )
            session.attendees.append(attendee)
        attendee.attendance = attendance
        attendee.minutes_attended = minutes
        rows[line.patient_id] = attendee
    session.status = SessionStatus.RECORDED
    session.recorded_at = now
    session.recorded_by_id = actor.id
    db.session.flush()
    _audit(session, AuditAction.UPDATE, actor, recorded=True, attendees=len(lines))
    for attendee in rows.values():
        _audit_attendee(
            attendee,
            AuditAction.UPDATE,
            actor,
            attendance=Attendance(attendee.attendance).value,
            minutes=attendee.minutes_attended,
        )

    group_note_id = None
    if group_note is not None:
        note = note_services.save_draft(session, actor=actor, text=group_note, now=now)
        if sign:
            note_services.sign_note(note, actor=actor, now=now)
        group_note_id = note.id
    attendee_note_ids: dict[int, int] = {}
    for line in lines:
        if line.note is not None and line.note.strip():
            note = note_services.save_draft(
                session, actor=actor, text=line.note, attendee=rows[line.patient_id], now=now
            )
            if sign:
                note_services.sign_note(note, actor=actor, now=now)
            attendee_note_ids[line.patient_id] = note.id
    return RecordedSession(session, group_note_id, attendee_note_ids)


# --- entered in error ------------------------------------------------------------------------

IN_ERROR_MESSAGE = "This session was entered in error: it cannot change."
REASON_NAMES_MESSAGE = (
    "The reason is shown in every attendee's chart: name no patient (it names {names})."
)


def check_session_reason(session: TherapySession, reason: str | None) -> str:
    """The reason, trimmed: from ``notes.REASON_MIN`` to ``REASON_MAX`` characters, on one
    line, free of control characters, and (a group or family session) naming no attendee,
    since every attendee's chart shows it."""
    reason = (reason or "").strip()
    low, high = note_services.REASON_MIN, REASON_MAX
    if not low <= len(reason) <= high:
        raise DomainError(f"Say why, in {low} to {high} characters.", field="reason")
    if has_control_characters(reason):
        raise DomainError(
            "Write the reason on one line, without control characters.", field="reason"
        )
    if SessionKind(session.kind).has_group_note:
        named = note_services.names_in_text(reason, [a.patient for a in session.attendees])
        if named:
            raise DomainError(REASON_NAMES_MESSAGE.format(names=", ".join(named)), field="reason")
    return reason


def mark_session_entered_in_error(
    session: TherapySession,
    *,
    actor: User,
    reason: str | None,
    version: int | None = None,
    now: dt.datetime | None = None,
) -> TherapySession:
    """Mark a whole session (planned or recorded) entered in error, with a reason
    (DOMAIN.md "Clinical rows are never deleted"; issue 11 "Entered in error").

    Who: a clinician (``SESSIONS_RECORD``) of the session's site -- its own clinician or
    a colleague there (the clinician may have left, or be away when the mistake is
    found). Administrators and staff may not: they do not record sessions. Nothing is
    deleted: the session, its attendee rows and its notes stay as they are; clinicians
    see it struck through with the reason, and it no longer counts for attendance rates,
    the caseload or the unrecorded-sessions list. The mark is written once: the service
    refuses a second one and the trigger ``therapy_session_in_error_once`` refuses any
    change to it (migration e8f9a0b1c2d3). ``version`` is the version the confirmation
    page showed: a session changed since (recorded meanwhile) is a ``ConflictError``.

    Audited: one ``update`` event for the session and one per attendee (with its
    patient), ids only -- never the reason."""
    now = now or utcnow()
    require_clinician(actor)
    if session.site_id not in actor.site_ids:
        raise DomainError("Only clinicians of the session's site mark it entered in error.")
    if session.entered_in_error:
        raise DomainError("This session is already marked entered in error.")
    if version is not None and version != session.version:
        raise ConflictError()
    reason = check_session_reason(session, reason)
    session.entered_in_error_at = now
    session.entered_in_error_reason = reason
    session.entered_in_error_by_id = actor.id
    db.session.flush()
    _audit(session, AuditAction.UPDATE, actor, entered_in_error=True)
    for attendee in session.attendees:
        _audit_attendee(attendee, AuditAction.UPDATE, actor, entered_in_error=True)
    return session


def session_for(user: User, session_id: int) -> TherapySession | None:
    """A session by id, only at one of the user's sites (all sites for an organisation-
    wide administrator): None otherwise, for the caller's 404."""
    session = db.session.get(TherapySession, session_id)
    if session is None:
        return None
    if not user.all_sites and session.site_id not in user.site_ids:
        return None
    return session
