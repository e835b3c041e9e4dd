"""Therapy pages (issue 11): "My day", planning a session (or a weekly group), recording a
session in one pass, marking a whole session entered in error, and the chart's "Sessions"
section. My caseload and a patient's session history are in caseload_views.py.

Thin views: parse the form, call the service (clinic/therapy/sessions.py, notes.py), commit
once through ``clinic.web.save``, redirect. A session loaded by id is looked up within the
user's sites (``sessions.session_for``: else 404 with an access_denied event), then each
attendee's record is ``opened`` (one view event per patient shown).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from markupsafe import Markup, escape
from wtforms import SelectChoice

from clinic.charts import ChartSection, register_chart_section
from clinic.db import utcnow
from clinic.errors import DomainError, record_denied
from clinic.extensions import db
from clinic.patients import access
from clinic.patients.models import Enrollment, Patient
from clinic.security import Permission, require_permission
from clinic.sites.models import Site
from clinic.sites.time import user_zone
from clinic.therapy import notes as note_services
from clinic.therapy import reading, sessions
from clinic.therapy.forms import (
    PlanForm,
    RecordForm,
    SessionInErrorForm,
)
from clinic.therapy.models import (
    Attendance,
    Modality,
    SessionAttendee,
    SessionKind,
    SessionSetting,
    TherapySession,
)
from clinic.web import Once, is_conflict, save

bp = Blueprint("therapy", __name__, url_prefix="/therapy")

PLAN_REFUSALS = {
    "uq_therapy_session_live_clinician_start": DomainError(
        "You already have a session starting at that time.", field="start_time"
    )
}
OWN_NAMES_WARNING = (
    "This note names {names}, another attendee. It is shown in this patient's chart: "
    "remove the name, or tick the box to save it as it is."
)
NAMES_WARNING = (
    "The group note names {names}. It is shown in every attendee's chart: remove the "
    "name, or tick the box to save it as it is."
)


def _label(enum, value) -> str:
    try:
        return enum(value).label
    except ValueError:
        return str(value)


@bp.app_template_filter("therapy_label")
def _therapy_label(value, kind: str) -> str:
    """A stored kind, modality, setting or attendance as people read it."""
    enum = {
        "kind": SessionKind,
        "modality": Modality,
        "setting": SessionSetting,
        "attendance": Attendance,
    }[kind]
    return _label(enum, value) if value is not None else "—"


@bp.app_template_filter("therapy_time")
def _therapy_time(value: dt.datetime | None) -> str:
    """An instant in the signed-in user's first site's time zone: "5 Jan 2026 14:05 CST"."""
    if value is None:
        return "—"
    if value.tzinfo is None:  # SQLite gives naive UTC from some expressions
        value = value.replace(tzinfo=dt.UTC)
    local = value.astimezone(user_zone(current_user))
    return f"{local.day} {local:%b %Y %H:%M} {local.tzname()}"


@bp.app_template_filter("therapy_lines")
def _therapy_lines(text: str | None) -> Markup:
    """A note's text with its line breaks kept: escaped, its lines joined by ``<br>``.
    (``style="white-space: pre-wrap"`` does not work here: the Content-Security-Policy,
    ``style-src 'self'``, drops inline styles, and notes then ran together on one line.)"""
    if not text:
        return Markup("")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return Markup("<br>\n").join(escape(line) for line in lines)


# --- my day ----------------------------------------------------------------------------------


@bp.get("/")
@require_permission(Permission.SESSIONS_RECORD)
def my_day():
    """Today's planned and recorded sessions, unrecorded past sessions, the user's
    unsigned notes (oldest first) and the notes waiting for their co-signature: four
    queries whatever the number of rows (reading.py), plus the page's own."""
    now = utcnow()
    today = now.astimezone(user_zone(current_user)).date()
    schedule = reading.day_schedule(current_user, today, now=now)
    # Today's unrecorded sessions are in the schedule (marked); the list is the days before.
    unrecorded = reading.unrecorded_sessions(current_user, now=now)
    unrecorded = [e for e in unrecorded if e.local_start.date() < today]
    with_whom = _with_whom([*schedule, *unrecorded])
    return render_template(
        "therapy/my_day.html",
        today=today,
        schedule=schedule,
        unrecorded=unrecorded,
        with_whom=with_whom,
        unsigned=reading.unsigned_notes(current_user),
        cosign=reading.cosign_queue(current_user),
    )


def _with_whom(entries: list[reading.ScheduleEntry]) -> dict[int, str]:
    """Who an individual or family session on "My day" is with ("1 attendee" left a
    counselor guessing who was coming): session id -> the attendees' names, one query.
    A group shows its count only (its names are on its record page). Each patient named
    is a view event, as on the caseload."""
    ids = [e.session_id for e in entries if e.kind != SessionKind.GROUP.value]
    if not ids:
        return {}
    rows = db.session.execute(
        sa.select(SessionAttendee.session_id, Patient)
        .join(Patient, Patient.id == SessionAttendee.patient_id)
        .where(SessionAttendee.session_id.in_(ids))
        .order_by(SessionAttendee.session_id, SessionAttendee.position, SessionAttendee.id)
    ).all()
    names: dict[int, list[str]] = {}
    shown: dict[int, Patient] = {}
    for session_id, patient in rows:
        names.setdefault(session_id, []).append(patient.display_name)
        shown[patient.id] = patient
    for patient in shown.values():
        access.record_view(patient, "therapy_my_day", None)
    return {session_id: "; ".join(listed) for session_id, listed in names.items()}


# --- plan ------------------------------------------------------------------------------------


def _eligible_patients(site_ids: list[int], day: dt.date) -> list[Patient]:
    """Patients of these sites with an enrollment in force on ``day`` (the service checks
    again on save, on the session's own day). One query."""
    in_force = (
        sa.select(Enrollment.id)
        .where(
            Enrollment.patient_id == Patient.id,
            Enrollment.admitted_on <= day,
            sa.or_(Enrollment.discharged_on.is_(None), Enrollment.discharged_on >= day),
        )
        .exists()
    )
    return list(
        db.session.scalars(
            sa.select(Patient)
            .where(
                Patient.site_id.in_(site_ids or [-1]),
                Patient.entered_in_error_at.is_(None),
                in_force,
            )
            .order_by(Patient.last_name, Patient.first_name, Patient.id)
        )
    )


def _starts_at(form: PlanForm, site: Site | None) -> dt.datetime | None:
    if site is None or form.day.data is None or form.start_time.data is None:
        return None
    local = dt.datetime.combine(form.day.data, form.start_time.data, tzinfo=ZoneInfo(site.timezone))
    try:
        return local.astimezone(dt.UTC)
    except OverflowError:
        # 31 Dec 9999 late at night (or 1 Jan 0001 east of UTC) has no UTC instant: the
        # farthest one, which the service refuses with its own message (never a 500).
        edge = dt.datetime.max if local.year > 1 else dt.datetime.min
        return edge.replace(tzinfo=dt.UTC)


@bp.route("/sessions/new", methods=["GET", "POST"])
@require_permission(Permission.SESSIONS_RECORD)
def plan():
    """Plan a session (individual, group or family) or, with a number of weeks, a weekly
    group: its date, time in the site's time zone and attendees."""
    sites = [s for s in current_user.sites if s.active]
    form = PlanForm()
    form.site_id.choices = [SelectChoice(s.id, f"{s.code} — {s.name}") for s in sites]
    zone = ZoneInfo(sites[0].timezone) if sites else ZoneInfo("UTC")
    now = utcnow()
    today = now.astimezone(zone).date()
    # Name the zone: "the site's time zone" alone left a new user guessing.
    form.start_time.description = "In the site's time zone: " + ", ".join(
        f"{s.code} {now.astimezone(ZoneInfo(s.timezone)).tzname()}" for s in sites
    )
    eligible = _eligible_patients([s.id for s in sites], form.day.data or today)
    form.patient_ids.choices = [SelectChoice(p.id, f"{p.display_name} · {p.mrn}") for p in eligible]
    if request.method == "GET" and not form.restored:
        form.day.data = today
        form.duration_minutes.data = 60
        if sites:
            form.site_id.data = sites[0].id
    if form.validate_on_submit():
        site = next((s for s in sites if s.id == form.site_id.data), None)
        data = sessions.SessionPlan(
            site_id=site.id if site else None,
            starts_at=_starts_at(form, site),
            duration_minutes=form.duration_minutes.data,
            kind=form.kind.data,
            modality=form.modality.data,
            setting=form.setting.data,
            patient_ids=list(form.patient_ids.data or []),
            group_name=form.group_name.data,
        )
        weeks = form.weeks.data

        def plan_it():
            if weeks is not None and weeks > 1:
                return sessions.plan_weekly_group(actor=current_user, plan=data, weeks=weeks)[0]
            return sessions.plan_session(actor=current_user, plan=data)

        outcome = save(
            form,
            plan_it,
            refusals=PLAN_REFUSALS,
            once=Once(
                token=form.submission_token.data,
                user_id=current_user.id,
                kind="therapy_session",
                result_url=lambda _result: url_for("therapy.my_day"),
            ),
        )
        if outcome.saved:
            if outcome.repeated_url:
                flash("This session was planned once.", "info")
                return redirect(outcome.repeated_url)
            flash(
                f"{weeks} weekly sessions planned." if weeks and weeks > 1 else "Session planned.",
                "success",
            )
            return redirect(url_for("therapy.my_day"))
        _move_error(form, outcome.error, {"starts_at": "start_time"})
        return render_template("therapy/plan.html", form=form), 400
    return render_template("therapy/plan.html", form=form), (_status(form))


def _status(form) -> int:
    """400 for a form shown with its errors; 200 for a fresh form, and for a form the
    CSRF handler shows again (it answers 400 itself, and only shows a 2xx page again,
    keeping what the user typed)."""
    if g.get("csrf_refused"):
        return 200
    return 400 if form.errors or form.form_errors else 200


def _move_error(form, error: DomainError | None, aliases: dict[str, str]) -> None:
    """A service error naming a field the form spells differently: next to that field."""
    if error is None or error.field not in aliases:
        return
    if error.message in form.form_errors:
        form.form_errors.remove(error.message)
    field = form._fields[aliases[error.field]]
    if error.message not in field.errors:
        field.errors = [*field.errors, error.message]


# --- record ----------------------------------------------------------------------------------


def _session_or_404(session_id: int) -> TherapySession:
    session = sessions.session_for(current_user, session_id)
    if session is None:
        record_denied("therapy_session", session_id)
        abort(404)
    for attendee in session.attendees:
        access.opened(attendee.patient, "therapy_session", session.id)
    return session


def _own_notes_naming_others(form: RecordForm, attendees: list) -> dict[int, list[str]]:
    """A group's attendee notes that name ANOTHER attendee (the note is shown in its
    patient's chart, which names no other attendee): row index -> the names. No query
    (the attendees' patients are loaded)."""
    patients = {str(a.patient_id): a.patient for a in attendees}
    named: dict[int, list[str]] = {}
    for index, row in enumerate(form.attendees):
        text = row.form.note.data
        own = row.form.patient_id.data
        if text and text.strip():
            others = [p for key, p in patients.items() if key != own]
            found = note_services.names_in_text(text, others, about=patients.get(own))
            if found:
                named[index] = found
    return named


def _row_error(form: RecordForm, error: DomainError | None) -> None:
    """A refusal naming one attendee's field (``attendees-<i>-minutes``): next to it."""
    if error is None or not error.field or not error.field.startswith("attendees-"):
        return
    parts = error.field.split("-")
    if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(form.attendees):
        return
    sub = form.attendees[int(parts[1])].form._fields.get(parts[2])
    if sub is None:
        return
    if error.message in form.form_errors:
        form.form_errors.remove(error.message)
    sub.errors = [*sub.errors, error.message]


@bp.route("/sessions/<int:session_id>/record", methods=["GET", "POST"])
@require_permission(Permission.SESSIONS_RECORD)
def record_session(session_id: int):
    """Record a planned session in one pass: every attendee's attendance, minutes and
    optional note, the group note, and "sign now". All or nothing."""
    session = _session_or_404(session_id)
    if session.recorded or session.entered_in_error:
        flash(
            "This session is already recorded."
            if session.recorded
            else "This session was entered in error.",
            "info",
        )
        return redirect(url_for("therapy.my_day"))
    if session.clinician_id != current_user.id:
        flash("Only the session's clinician records it.", "warning")
        return redirect(url_for("therapy.my_day"))
    attendees = list(session.attendees)
    form = RecordForm()
    if request.method == "GET" and not form.restored:
        while len(form.attendees) < len(attendees):
            form.attendees.append_entry()
        started = session.starts_at <= utcnow()
        for row, attendee in zip(form.attendees, attendees, strict=False):
            row.form.patient_id.data = str(attendee.patient_id)
            if started:
                row.form.attendance.data = Attendance.ATTENDED.value
                row.form.minutes.data = session.duration_minutes
    names = {a.patient_id: a.patient.display_name for a in attendees}
    warnings: list[str] = []
    refused = False
    if form.validate_on_submit():
        ids = [row.form.patient_id.data for row in form.attendees]
        if sorted(ids) != sorted(str(a.patient_id) for a in attendees):
            form.form_errors.append(
                "This form is out of date: reload the page and enter the attendance again."
            )
        else:
            group_note = form.group_note.data or None
            own_named: dict[int, list[str]] = {}
            if SessionKind(session.kind).has_group_note:
                warnings = note_services.group_note_name_warnings(session, group_note)
                own_named = _own_notes_naming_others(form, attendees)
            if (warnings or own_named) and not form.confirm_names.data:
                if warnings:
                    form.group_note.errors = [
                        *form.group_note.errors,
                        NAMES_WARNING.format(names=", ".join(warnings)),
                    ]
                for index, named in own_named.items():
                    note_field = form.attendees[index].form.note
                    note_field.errors = [
                        *note_field.errors,
                        OWN_NAMES_WARNING.format(names=", ".join(named)),
                    ]
                warnings = [*warnings, *(n for named in own_named.values() for n in named)]
            else:
                lines = [
                    sessions.AttendeeRecord(
                        patient_id=int(row.form.patient_id.data),
                        attendance=row.form.attendance.data or None,
                        minutes_attended=row.form.minutes.data,
                        note=row.form.note.data or None,
                    )
                    for row in form.attendees
                ]
                outcome = save(
                    form,
                    lambda: sessions.record_session(
                        session,
                        actor=current_user,
                        attendees=lines,
                        group_note=group_note,
                        sign=form.sign.data,
                    ),
                    once=Once(
                        token=form.submission_token.data,
                        user_id=current_user.id,
                        kind="therapy_record",
                        result_url=lambda _result: url_for("therapy.my_day"),
                    ),
                )
                if outcome.saved:
                    flash(
                        "This session was recorded once."
                        if outcome.repeated_url
                        else "Session recorded.",
                        "success",
                    )
                    return redirect(outcome.repeated_url or url_for("therapy.my_day"))
                refused = True
                _row_error(form, outcome.error)
    return render_template(
        "therapy/record.html",
        form=form,
        session=session,
        names=names,
        local_start=session.starts_at.astimezone(ZoneInfo(session.site.timezone)),
        rows=[(row, names.get(_int(row.form.patient_id.data), "")) for row in form.attendees],
        warnings=warnings,
    ), (400 if refused or warnings else _status(form))


@bp.route("/sessions/<int:session_id>/entered-in-error", methods=["GET", "POST"])
@require_permission(Permission.SESSIONS_RECORD)
def session_entered_in_error(session_id: int):
    """Confirmation with a reason, then the whole session is marked entered in error
    (``sessions.mark_session_entered_in_error``: clinicians of the session's site; never
    deleted, struck through for clinicians). ``?patient=`` (an attendee) returns to that
    patient's session history afterwards, else to "My day"."""
    session = _session_or_404(session_id)
    attendees = list(session.attendees)
    back_patient = _int(request.args.get("patient", ""))
    if back_patient not in {a.patient_id for a in attendees}:
        back_patient = None
    done_url = (
        url_for("therapy.patient_sessions", patient_id=back_patient)
        if back_patient is not None
        else url_for("therapy.my_day")
    )
    if session.entered_in_error:
        flash("This session is already marked entered in error.", "info")
        return redirect(done_url)
    form = SessionInErrorForm()
    if request.method == "GET" and not form.restored:
        form.version.data = str(session.version)
    status: int | None = None
    if form.validate_on_submit():
        version = form.version_number
        outcome = save(
            form,
            lambda: sessions.mark_session_entered_in_error(
                session,
                actor=current_user,
                reason=form.reason.data,
                version=version if version is not None else -1,
            ),
        )
        if outcome.saved:
            flash("Session marked entered in error.", "success")
            return redirect(done_url)
        status = 400
        if is_conflict(outcome):
            # Someone changed the session meanwhile (recorded it, or marked it): show
            # its facts now, with the form armed with its current version.
            db.session.refresh(session)
            if session.entered_in_error:
                flash("This session was marked entered in error meanwhile.", "info")
                return redirect(done_url)
            form.version.data = str(session.version)
            status = 409
    return render_template(
        "therapy/session_in_error.html",
        form=form,
        session=session,
        names=sorted(a.patient.display_name for a in attendees),
        local_start=session.starts_at.astimezone(ZoneInfo(session.site.timezone)),
        back_patient=back_patient,
        cancel_url=done_url,
    ), (status or _status(form))


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --- the chart's "Sessions" section ----------------------------------------------------------


def _chart_context(patient: Patient) -> dict | None:
    """This patient's recent sessions with their attendance (every role); for clinicians
    the group note and THIS patient's own note (the chart's own view event records that
    this patient's record was shown). Never another attendee's name or note."""
    if not current_user.can(Permission.SESSIONS_READ):
        return None
    page = reading.patient_history(patient, viewer=current_user, limit=10)
    return {
        "rows": page.rows,
        "texts": current_user.can(Permission.NOTES_READ),
        "more": page.next_cursor is not None,
    }


def register_chart_sections(app: Flask) -> None:
    register_chart_section(
        app,
        ChartSection(
            key="sessions",
            template="therapy/_chart_section.html",
            context=_chart_context,
            order=30,
        ),
    )
