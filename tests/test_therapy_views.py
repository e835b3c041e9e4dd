"""The therapy pages (issue 11, second increment): "My day", planning a session or a weekly
group, recording a session in one pass, and the chart's "Sessions" section — their rules
on bad input, a double submit, privacy between the members of a group and a constant
number of SQL statements."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.db import utcnow
from clinic.extensions import db
from clinic.therapy import notes, sessions
from clinic.therapy.models import (
    NoteStatus,
    ProgressNote,
    SessionAttendee,
    SessionStatus,
    TherapySession,
)
from tests.conftest import Client, login
from tests.test_therapy_helpers import (
    count_statements,
    hours_ago,
    plan,
    therapy_fixture,  # noqa: F401
)

CHICAGO = ZoneInfo("America/Chicago")
TOKEN_RE = re.compile(r'name="submission_token"[^>]*? value="([^"]+)"')


class FreshClient(Client):
    """Each request in an app context of its own: the ``therapy`` fixture holds one open
    for the test, which a request would otherwise share (its ``g``, the signed-in user)."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture
def as_user(app, username_of):
    """A client signed in as an existing user of the ``therapy`` clinic."""

    def make(user_id: int):
        client = FreshClient(app, app.response_class, use_cookies=True)
        response = login(client, username_of(user_id))
        assert response.status_code == 302
        return client

    return make


def _token(html: str) -> str:
    match = TOKEN_RE.search(html)
    assert match, "no submission token on the page"
    return match.group(1)


def _form(client, url: str) -> dict:
    """The CSRF and submission tokens of the form at ``url``."""
    html = client.get(url).get_data(as_text=True)
    return {
        "csrf_token": re.search(r'name="csrf_token"[^>]*? value="([^"]+)"', html).group(1),
        "submission_token": _token(html),
    }


def _count(model, *where) -> int:
    db.session.expire_all()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _local_tomorrow() -> dt.date:
    return utcnow().astimezone(CHICAGO).date() + dt.timedelta(days=1)


def _plan_data(therapy, **overrides) -> dict:
    data = {
        "site_id": str(therapy.site),
        "day": _local_tomorrow().isoformat(),
        "start_time": "10:00",
        "duration_minutes": "60",
        "kind": "group",
        "modality": "relapse_prevention",
        "setting": "in_person",
        "group_name": "Tuesday relapse prevention",
        "patient_ids": [str(p) for p in therapy.patients[:3]],
        "weeks": "",
    }
    data.update(overrides)
    return data


# --- my day ----------------------------------------------------------------------------------


def test_my_day_lists_today_the_unrecorded_past_the_drafts_and_the_cosign_queue(therapy, as_user):
    dan = therapy.user(therapy.dan)
    now = utcnow()
    today_start = dt.datetime.combine(now.astimezone(CHICAGO).date(), dt.time(0, 5), CHICAGO)
    today = plan(therapy, [therapy.patients[0]], kind="individual", starts_at=today_start)
    old = plan(therapy, therapy.patients[1:3], starts_at=hours_ago(72))
    drafted = plan(therapy, [therapy.patients[3]], kind="individual", starts_at=hours_ago(50))
    sessions.record_session(
        drafted,
        actor=dan,
        attendees=[sessions.AttendeeRecord(therapy.patients[3], "attended", 60, "DRAFT TEXT")],
    )
    trainee_session = plan(therapy, [therapy.patients[4]], actor=therapy.trainee, kind="individual")
    sessions.record_session(
        trainee_session,
        actor=therapy.user(therapy.trainee),
        attendees=[sessions.AttendeeRecord(therapy.patients[4], "attended", 60, "TRAINEE")],
        sign=True,
    )
    db.session.commit()
    ids = today.id, old.id, drafted.id

    page = as_user(therapy.dan).get("/therapy/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200, page.headers.get("Location")
    today_html = html.split('data-testid="today"')[1].split("</section>")[0]
    assert f'data-session-id="{ids[0]}"' in today_html
    unrecorded = html.split('data-testid="unrecorded"')[1].split("</section>")[0]
    assert f'data-session-id="{ids[1]}"' in unrecorded
    assert f"/therapy/sessions/{ids[1]}/record" in unrecorded
    assert f'data-session-id="{ids[2]}"' not in unrecorded  # recorded
    unsigned = html.split('data-testid="unsigned"')[1].split("</section>")[0]
    assert unsigned.count("data-note-id") == 1
    assert "DRAFT TEXT" not in html  # the queue shows no note text
    # The supervisor's queue holds the trainee's signed note.
    supervisor = as_user(therapy.supervisor).get("/therapy/").get_data(as_text=True)
    cosign = supervisor.split('data-testid="cosign"')[1].split("</section>")[0]
    assert cosign.count("data-note-id") == 1 and "TRAINEE" not in supervisor


def test_my_day_runs_a_constant_number_of_statements(therapy, as_user):
    client = as_user(therapy.dan)
    client.get("/therapy/")

    def measure() -> int:
        with count_statements() as statements:
            assert client.get("/therapy/").status_code == 200
        return len(statements)

    plan(therapy, therapy.patients[:2], starts_at=hours_ago(30))
    db.session.commit()
    few = measure()
    for hours in (26, 28, 32, 34, 36, 1):
        session = plan(therapy, therapy.patients[:3], starts_at=hours_ago(hours))
        if hours % 4 == 0:  # recorded, with drafts; the others stay unrecorded
            sessions.record_session(
                session,
                actor=therapy.user(therapy.dan),
                attendees=[
                    sessions.AttendeeRecord(p, "attended", 60, "x") for p in therapy.patients[:3]
                ],
                group_note="group",
            )
    db.session.commit()
    assert measure() == few


def test_my_day_is_for_clinicians(therapy, as_user):
    for user in (therapy.staff, therapy.admin):
        assert as_user(user).get("/therapy/").status_code == 403


# --- plan ------------------------------------------------------------------------------------


def test_a_clinician_plans_a_group_in_the_sites_time(therapy, as_user):
    client = as_user(therapy.dan)
    data = {**_form(client, "/therapy/sessions/new"), **_plan_data(therapy)}
    response = client.post("/therapy/sessions/new", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    [session] = db.session.scalars(sa.select(TherapySession)).all()
    local = session.starts_at.astimezone(CHICAGO)
    assert (local.date(), local.hour, local.minute) == (_local_tomorrow(), 10, 0)
    assert sorted(a.patient_id for a in session.attendees) == sorted(therapy.patients[:3])
    assert session.group_name == "Tuesday relapse prevention"
    # Sent again (a double click): one session, the first result shown.
    again = client.post("/therapy/sessions/new", data=data)
    assert again.status_code == 302
    assert _count(TherapySession) == 1


def test_a_weekly_group_is_planned_in_one_step(therapy, as_user):
    client = as_user(therapy.dan)
    data = {**_form(client, "/therapy/sessions/new"), **_plan_data(therapy, weeks="4")}
    assert client.post("/therapy/sessions/new", data=data).status_code == 302
    planned = db.session.scalars(sa.select(TherapySession).order_by(TherapySession.starts_at)).all()
    assert len(planned) == 4 and len({s.series_key for s in planned}) == 1
    assert {s.starts_at.astimezone(CHICAGO).hour for s in planned} == {10}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("duration_minutes", "0", "Enter a duration from 1 to 600 minutes."),
        ("duration_minutes", "2000", "Enter a duration from 1 to 600 minutes."),
        ("group_name", "Tuesday\x00group", "control"),
        ("kind", "individual", "An individual session has exactly one attendee."),
        ("weeks", "27", "Enter 1 to 26 weeks."),
    ],
)
def test_bad_plans_are_refused_next_to_the_field_keeping_the_input(
    therapy, as_user, field, value, message
):
    client = as_user(therapy.dan)
    data = {**_form(client, "/therapy/sessions/new"), **_plan_data(therapy, **{field: value})}
    if field == "kind":
        data["group_name"] = ""
    response = client.post("/therapy/sessions/new", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    error = re.search(r'id="(\w+)-error"[^>]*>([^<]*)<', html)
    assert error and message.lower() in error.group(2).lower(), html
    expected_field = {"kind": "patient_ids"}.get(field, field)
    assert error.group(1) == expected_field
    kept = 'value="60"' if field == "duration_minutes" else 'value="Tuesday relapse prevention"'
    if field in ("duration_minutes", "kind"):
        kept = 'value="10:00"'
    if field != "group_name":
        assert kept in html
    assert _count(TherapySession) == 0


def test_a_patient_of_another_site_is_not_offered_nor_accepted(therapy, as_user):
    client = as_user(therapy.dan)
    page = client.get("/therapy/sessions/new").get_data(as_text=True)
    assert "Otherside" not in page and "Unenrolled" not in page
    data = {
        **_form(client, "/therapy/sessions/new"),
        **_plan_data(
            therapy, patient_ids=[str(therapy.patients[0]), str(therapy.other_site_patient)]
        ),
    }
    assert client.post("/therapy/sessions/new", data=data).status_code == 400
    assert _count(TherapySession) == 0


# --- record ----------------------------------------------------------------------------------


def _record_data(client, session_id: int, lines: list[tuple[int, str, str, str]], **extra):
    url = f"/therapy/sessions/{session_id}/record"
    data = _form(client, url)
    for i, (patient_id, attendance, minutes, note) in enumerate(lines):
        data[f"attendees-{i}-patient_id"] = str(patient_id)
        data[f"attendees-{i}-attendance"] = attendance
        data[f"attendees-{i}-minutes"] = minutes
        data[f"attendees-{i}-note"] = note
    data.update(extra)
    return url, data


def test_a_seven_person_group_with_a_no_show_is_recorded_and_signed_in_one_pass(therapy, as_user):
    seven = therapy.patients[:7]
    session = plan(therapy, seven)
    db.session.commit()
    client = as_user(therapy.dan)
    page = client.get(f"/therapy/sessions/{session.id}/record").get_data(as_text=True)
    assert page.count('name="attendees-') >= 7 * 3
    lines = [(p, "attended", "60", "") for p in seven]
    lines[3] = (seven[3], "no_show", "", "")
    lines[0] = (seven[0], "late", "45", "Own note of the first attendee.")
    url, data = _record_data(
        client, session.id, lines, group_note="Worked on high-risk situations.", sign="y"
    )
    response = client.post(url, data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    db.session.expire_all()
    session = db.session.get(TherapySession, session.id)
    assert session.status == SessionStatus.RECORDED
    by_patient = {a.patient_id: a for a in session.attendees}
    assert by_patient[seven[3]].attendance == "no_show"
    assert by_patient[seven[0]].minutes_attended == 45
    notes_saved = db.session.scalars(sa.select(ProgressNote)).all()
    assert len(notes_saved) == 2 and all(n.status == NoteStatus.SIGNED for n in notes_saved)
    # A double submit records once and shows the first result.
    again = client.post(url, data=data)
    assert again.status_code == 302
    assert _count(ProgressNote) == 2


def test_a_future_session_cannot_be_recorded_as_attended_and_nothing_is_saved(therapy, as_user):
    a, b = therapy.patients[:2]
    session = plan(
        therapy, [a, b], starts_at=utcnow().replace(microsecond=0) + dt.timedelta(hours=3)
    )
    db.session.commit()
    client = as_user(therapy.dan)
    url, data = _record_data(
        client, session.id, [(a, "cancelled_by_patient", "", ""), (b, "attended", "60", "kept")]
    )
    response = client.post(url, data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert re.search(
        r'id="attendees-1-attendance-error"[^>]*>This session has not started yet', html
    )
    assert re.search(r">\s*kept</textarea>", html)
    assert _count(SessionAttendee, SessionAttendee.attendance.is_not(None)) == 0
    assert _count(ProgressNote) == 0


def test_bad_rows_are_refused_next_to_their_field(therapy, as_user):
    a, b = therapy.patients[:2]
    session = plan(therapy, [a, b])
    db.session.commit()
    client = as_user(therapy.dan)
    url, data = _record_data(
        client, session.id, [(a, "attended", "60", ""), (b, "attended", "61", "")]
    )
    html = client.post(url, data=data).get_data(as_text=True)
    assert re.search(r'id="attendees-1-minutes-error"[^>]*>Enter the minutes attended', html)
    url, data = _record_data(
        client, session.id, [(a, "attended", "60", "bad\x00note"), (b, "attended", "60", "")]
    )
    html = client.post(url, data=data).get_data(as_text=True)
    assert re.search(r'id="attendees-0-note-error"[^>]*>Remove the control', html)
    assert _count(ProgressNote) == 0
    assert db.session.get(TherapySession, session.id).status == SessionStatus.PLANNED


def test_a_50_kb_note_is_saved_exactly(therapy, as_user):
    a = therapy.patients[0]
    session = plan(therapy, [a], kind="individual")
    db.session.commit()
    text = ("Line of a long note — ünïcode.\n" * 1700)[:51_200]
    client = as_user(therapy.dan)
    url, data = _record_data(client, session.id, [(a, "attended", "60", text)])
    assert client.post(url, data=data).status_code == 302
    db.session.expire_all()
    [note] = db.session.scalars(sa.select(ProgressNote)).all()
    assert note.text == text and len(note.text) == 51_200


def test_a_group_note_naming_an_attendee_warns_before_saving(therapy, as_user):
    a, b = therapy.patients[:2]  # Ana Alvarez, Ben Brooks
    session = plan(therapy, [a, b])
    db.session.commit()
    client = as_user(therapy.dan)
    lines = [(a, "attended", "60", ""), (b, "attended", "60", "")]
    url, data = _record_data(client, session.id, lines, group_note="Ben spoke about cravings.")
    response = client.post(url, data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert re.search(r'id="group_note-error"[^>]*>The group note names Brooks, Ben', html)
    assert 'name="confirm_names"' in html
    assert _count(ProgressNote) == 0
    data["confirm_names"] = "y"
    assert client.post(url, data=data).status_code == 302
    assert _count(ProgressNote) == 1


def test_only_the_sessions_clinician_records_it_and_other_sites_get_404(
    therapy, as_user, make_user
):
    session = plan(therapy, therapy.patients[:2])
    db.session.commit()
    other = as_user(therapy.cotherapist).get(f"/therapy/sessions/{session.id}/record")
    assert other.status_code == 302
    east = make_user("clinician", site_ids=[therapy.other_site])
    assert as_user(east).get(f"/therapy/sessions/{session.id}/record").status_code == 404


# --- the chart's "Sessions" section ----------------------------------------------------------


def _group_with_notes(therapy):
    a, b, c = therapy.patients[:3]
    session = plan(therapy, [a, b, c], starts_at=hours_ago(3))
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[
            sessions.AttendeeRecord(a, "attended", 60, "NOTE-OF-A"),
            sessions.AttendeeRecord(b, "attended", 60, "NOTE-OF-B"),
            sessions.AttendeeRecord(c, "no_show", None, None),
        ],
        group_note="GROUP-NOTE",
        sign=True,
    )
    db.session.commit()
    return a, b, c


def _section(html: str) -> str:
    return html.split('data-testid="sessions-section"')[1].split("</section>")[0]


def test_the_chart_shows_the_group_note_and_only_this_patients_note(therapy, as_user):
    a, _b, c = _group_with_notes(therapy)
    client = as_user(therapy.dan)
    html = client.get(f"/patients/{a}").get_data(as_text=True)
    section = _section(html)
    assert "GROUP-NOTE" in section and "NOTE-OF-A" in section
    assert "NOTE-OF-B" not in html
    for other in ("Brooks", "Castillo"):
        assert other not in html
    assert "Attended" in section
    c_section = _section(client.get(f"/patients/{c}").get_data(as_text=True))
    assert "No-show" in c_section and "NOTE-OF" not in c_section


def test_staff_and_administrators_see_the_sessions_never_the_text(therapy, as_user):
    a, _b, _c = _group_with_notes(therapy)
    for user in (therapy.staff, therapy.admin):
        html = as_user(user).get(f"/patients/{a}").get_data(as_text=True)
        section = _section(html)
        assert "Attended" in section and "Relapse prevention" in section
        assert "GROUP-NOTE" not in html and "NOTE-OF-A" not in html
        assert "chart-note" not in section


def test_the_chart_section_runs_a_constant_number_of_statements(therapy, as_user):
    a = therapy.patients[0]
    client = as_user(therapy.dan)
    _recorded(therapy, [a, therapy.patients[1]], 100)
    db.session.commit()
    client.get(f"/patients/{a}")

    def measure() -> int:
        with count_statements() as statements:
            assert client.get(f"/patients/{a}").status_code == 200
        return len(statements)

    few = measure()
    for hours in (3, 5, 7, 9):
        _recorded(therapy, [a, therapy.patients[2]], hours)
    db.session.commit()
    assert measure() == few


def _recorded(therapy, patient_ids, hours):
    session = plan(therapy, patient_ids, starts_at=hours_ago(hours))
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[sessions.AttendeeRecord(p, "attended", 60, f"own {p}") for p in patient_ids],
        group_note="g",
        sign=True,
    )
    note = db.session.scalars(
        sa.select(ProgressNote).where(ProgressNote.session_id == session.id)
    ).first()
    notes.add_addendum(note, actor=therapy.user(therapy.dan), text="addendum")
    return session


# --- note pages ------------------------------------------------------------------------------


def _draft(therapy, *, text="First draft.", actor=None, hours=3):
    a = therapy.patients[0]
    user = therapy.user(actor or therapy.dan)
    session = plan(therapy, [a], actor=user.id, kind="individual", starts_at=hours_ago(hours))
    result = sessions.record_session(
        session,
        actor=user,
        attendees=[sessions.AttendeeRecord(a, "attended", 60, text)],
    )
    db.session.commit()
    return result.attendee_note_ids[a]


def _fields(client, url: str) -> dict:
    html = client.get(url).get_data(as_text=True)
    data = {"csrf_token": re.search(r'name="csrf_token"[^>]*? value="([^"]+)"', html).group(1)}
    for name in ("version", "submission_token"):
        match = re.search(rf'name="{name}"[^>]*? value="([^"]*)"', html) or re.search(
            rf'value="([^"]*)"[^>]*? name="{name}"', html
        )
        if match:
            data[name] = match.group(1)
    return data


def test_a_draft_is_edited_then_signed_then_locked(therapy, as_user):
    note_id = _draft(therapy)
    client = as_user(therapy.dan)
    page = client.get(f"/therapy/notes/{note_id}").get_data(as_text=True)
    assert "First draft." in page and "Alvarez, Ana" in page
    url = f"/therapy/notes/{note_id}/edit"
    data = {**_fields(client, url), "text": "Second draft."}
    assert client.post(url, data=data).status_code == 302
    assert client.post(url, data=data).status_code == 302  # a double click: saved once
    db.session.expire_all()
    assert db.session.get(ProgressNote, note_id).text == "Second draft."
    sign_url = f"/therapy/notes/{note_id}/sign"
    confirm = client.get(sign_url).get_data(as_text=True)
    assert "Once signed, the note is locked" in confirm
    assert client.post(sign_url, data=_fields(client, sign_url)).status_code == 302
    db.session.expire_all()
    signed = db.session.get(ProgressNote, note_id)
    assert signed.status == NoteStatus.SIGNED and signed.text == "Second draft."
    # Locked: the edit page sends back to the note; a forged post changes nothing.
    assert client.get(url).status_code == 302
    forged = client.post(url, data={**data, "version": str(signed.version), "text": "X"})
    assert forged.status_code == 302
    db.session.expire_all()
    assert db.session.get(ProgressNote, note_id).text == "Second draft."


def test_two_clinicians_editing_one_draft_get_a_conflict(therapy, as_user):
    note_id = _draft(therapy)
    dan, cora = as_user(therapy.dan), as_user(therapy.cotherapist)
    url = f"/therapy/notes/{note_id}/edit"
    dan_form, cora_form = _fields(dan, url), _fields(cora, url)
    assert dan.post(url, data={**dan_form, "text": "Dan's words."}).status_code == 302
    response = cora.post(url, data={**cora_form, "text": "Cora's words."})
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert 'data-testid="conflict"' in html and "Dan&#39;s words." in html
    assert re.search(r">\s*Cora&#39;s words.</textarea>", html)
    db.session.expire_all()
    assert db.session.get(ProgressNote, note_id).text == "Dan's words."


def test_an_addendum_goes_under_a_signed_note(therapy, as_user):
    note_id = _draft(therapy)
    notes.sign_note(db.session.get(ProgressNote, note_id), actor=therapy.user(therapy.dan))
    db.session.commit()
    client = as_user(therapy.dan)
    url = f"/therapy/notes/{note_id}/addendum"
    empty = client.post(url, data={**_fields(client, url), "text": ""})
    assert empty.status_code == 400 and "Write the note." in empty.get_data(as_text=True)
    data = {**_fields(client, url), "text": "Correction: the job is part-time."}
    assert client.post(url, data=data).status_code == 302
    assert client.post(url, data=data).status_code == 302  # sent twice: added once
    page = client.get(f"/therapy/notes/{note_id}").get_data(as_text=True)
    assert page.count('data-testid="addendum"') == 1 and "part-time" in page


def test_the_supervisor_cosigns_a_trainees_note(therapy, as_user):
    note_id = _draft(therapy, actor=therapy.trainee)
    notes.sign_note(db.session.get(ProgressNote, note_id), actor=therapy.user(therapy.trainee))
    db.session.commit()
    url = f"/therapy/notes/{note_id}/cosign"
    dan = as_user(therapy.dan)
    dan.post(url, data=_fields(dan, f"/therapy/notes/{note_id}"))
    db.session.expire_all()
    assert db.session.get(ProgressNote, note_id).cosigned_at is None
    supervisor = as_user(therapy.supervisor)
    page = supervisor.get(f"/therapy/notes/{note_id}").get_data(as_text=True)
    assert "Awaiting co-signature" in page and 'value="Co-sign"' in page
    assert 'value="Co-sign"' not in dan.get(f"/therapy/notes/{note_id}").get_data(as_text=True)
    assert (
        supervisor.post(url, data=_fields(supervisor, f"/therapy/notes/{note_id}")).status_code
        == 302
    )
    db.session.expire_all()
    assert db.session.get(ProgressNote, note_id).cosigned_at is not None


def test_a_note_is_marked_entered_in_error_with_a_reason(therapy, as_user):
    note_id = _draft(therapy)
    client = as_user(therapy.dan)
    url = f"/therapy/notes/{note_id}/entered-in-error"
    assert client.post(url, data={**_fields(client, url), "reason": ""}).status_code == 400
    assert (
        client.post(url, data={**_fields(client, url), "reason": "Wrong patient"}).status_code
        == 302
    )
    db.session.expire_all()
    note = db.session.get(ProgressNote, note_id)
    assert note.entered_in_error and note.entered_in_error_reason == "Wrong patient"
    page = client.get(f"/therapy/notes/{note_id}").get_data(as_text=True)
    assert "text-decoration-line-through" in page and "Wrong patient" in page


def test_note_pages_are_clinicians_and_record_a_view_of_each_patient_shown(
    therapy, as_user, make_user
):
    from clinic.audit.models import AuditEvent

    a, b, c = _group_with_notes(therapy)
    group_note = db.session.scalar(
        sa.select(ProgressNote.id).where(ProgressNote.attendee_id.is_(None))
    )
    for user in (therapy.staff, therapy.admin):
        response = as_user(user).get(f"/therapy/notes/{group_note}")
        assert response.status_code == 403
        assert "GROUP-NOTE" not in response.get_data(as_text=True)
    client = as_user(therapy.dan)
    before = _count(AuditEvent, AuditEvent.action == "view")
    assert "GROUP-NOTE" in client.get(f"/therapy/notes/{group_note}").get_data(as_text=True)
    viewed = db.session.scalars(
        sa.select(AuditEvent.patient_id).where(AuditEvent.action == "view").order_by(AuditEvent.id)
    ).all()[before:]
    assert sorted(viewed) == sorted([a, b, c])
    east = as_user(make_user("clinician", site_ids=[therapy.other_site]))
    assert east.get(f"/therapy/notes/{group_note}").status_code == 404


def test_a_draft_sent_after_its_form_expired_comes_back_with_the_text_kept(therapy, as_user):
    note_id = _draft(therapy)
    client = as_user(therapy.dan)
    url = f"/therapy/notes/{note_id}/edit"
    data = {**_fields(client, url), "csrf_token": "expired", "text": "Typed for an hour."}
    response = client.post(url, data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "The form had expired, so nothing was saved." in html
    assert re.search(r">\s*Typed for an hour.</textarea>", html)
    db.session.expire_all()
    assert db.session.get(ProgressNote, note_id).text == "First draft."
