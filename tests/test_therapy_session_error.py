"""A whole therapy session marked entered in error (issue 11): the service's rules (who,
the reason, written once), the database's triggers on both engines (the mark written once,
sessions and attendees never deleted), the confirmation page, and what the mark changes
everywhere the session appears (struck through with its reason for clinicians, out of
the attendance rates and the caseload)."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from clinic.accounts.models import User
from clinic.audit.models import AuditEvent
from clinic.db import utcnow
from clinic.errors import ConflictError, DomainError
from clinic.extensions import db
from clinic.patients.models import Enrollment
from clinic.therapy import reading, sessions
from clinic.therapy.models import ProgressNote, SessionAttendee, TherapySession
from clinic.web import constraint_name
from tests.conftest import Client, login
from tests.test_therapy_helpers import (
    earlier_today,
    hours_ago,
    plan,
    therapy_fixture,  # noqa: F401
)

REASON = "Recorded against the wrong date; the real session is on Thursday."


class FreshClient(Client):
    """Each request in an app context of its own (the ``therapy`` fixture holds one)."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture
def as_user(app, username_of):
    def make(user_id: int):
        client = FreshClient(app, app.response_class, use_cookies=True)
        assert login(client, username_of(user_id)).status_code == 302
        return client

    return make


def recorded_group(therapy, *, hours: float = 3, today: bool = False) -> TherapySession:
    a, b = therapy.patients[:2]
    starts_at = earlier_today(hours) if today else hours_ago(hours)
    session = plan(therapy, [a, b], starts_at=starts_at)
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[
            sessions.AttendeeRecord(a, "attended", 60, "OWN-NOTE-A"),
            sessions.AttendeeRecord(b, "attended", 60, "OWN-NOTE-B"),
        ],
        group_note="GROUP-NOTE",
        sign=True,
    )
    db.session.commit()
    return session


def mark(therapy, session, *, actor=None, reason=REASON, version=None):
    return sessions.mark_session_entered_in_error(
        session, actor=therapy.user(actor or therapy.dan), reason=reason, version=version
    )


def events(entity_type: str, action: str = "update") -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.entity_type == entity_type, AuditEvent.action == action)
            .order_by(AuditEvent.id)
        )
    )


def sql_refusal(statement: str, **params) -> str | None:
    try:
        db.session.execute(sa.text(statement), params)
        db.session.flush()
    except sa.exc.IntegrityError as error:
        db.session.rollback()
        return constraint_name(error)
    db.session.rollback()
    return None


def form_tokens(client, url: str) -> dict:
    html = client.get(url).get_data(as_text=True)
    return {
        "csrf_token": re.search(r'name="csrf_token"[^>]*? value="([^"]+)"', html).group(1),
        "version": re.search(r'name="version"[^>]*? value="([^"]*)"', html).group(1),
    }


# --- the service ----------------------------------------------------------------------------


def test_a_session_is_marked_never_deleted_and_audited_per_attendee(therapy):
    session = recorded_group(therapy)
    before = len(events("session_attendee"))
    mark(therapy, session)
    db.session.commit()
    db.session.expire_all()
    kept = db.session.get(TherapySession, session.id)
    assert kept.entered_in_error and kept.entered_in_error_reason == REASON
    assert kept.entered_in_error_by_id == therapy.dan
    assert len(kept.attendees) == 2
    # Its notes stay as they are.
    texts = db.session.scalars(
        sa.select(ProgressNote.text).where(ProgressNote.session_id == session.id)
    ).all()
    assert sorted(texts) == ["GROUP-NOTE", "OWN-NOTE-A", "OWN-NOTE-B"]
    attendee_events = events("session_attendee")[before:]
    assert sorted(e.patient_id for e in attendee_events) == sorted(therapy.patients[:2])
    session_events = [e for e in events("therapy_session") if e.entity_id == str(session.id)]
    details = session_events[-1].details
    assert json.loads(details if isinstance(details, str) else json.dumps(details)) == {
        "kind": "group",
        "entered_in_error": True,
    }
    # The reason (free text) is not in the trail.
    assert all(REASON not in str(e.details) for e in attendee_events + session_events)


def test_a_colleague_at_the_sessions_site_may_mark_it(therapy):
    session = recorded_group(therapy)
    mark(therapy, session, actor=therapy.cotherapist)
    db.session.commit()
    assert session.entered_in_error_by_id == therapy.cotherapist


def test_a_planned_session_may_be_marked_and_then_cannot_be_recorded(therapy):
    session = plan(therapy, therapy.patients[:1], kind="individual", starts_at=hours_ago(1))
    mark(therapy, session, reason="Planned twice by mistake.")
    db.session.commit()
    with pytest.raises(DomainError, match="entered in error"):
        sessions.record_session(
            session,
            actor=therapy.user(therapy.dan),
            attendees=[sessions.AttendeeRecord(therapy.patients[0], "attended", 60)],
        )


@pytest.mark.parametrize("role", ["admin", "staff"])
def test_administrators_and_staff_may_not_mark_a_session(therapy, role):
    session = recorded_group(therapy)
    with pytest.raises(DomainError, match="Only clinicians"):
        mark(therapy, session, actor=getattr(therapy, role))
    db.session.rollback()
    assert not db.session.get(TherapySession, session.id).entered_in_error


def test_a_clinician_of_another_site_may_not_mark_it(therapy, make_user):
    session = recorded_group(therapy)
    east = make_user("clinician", site_ids=[therapy.other_site])
    with pytest.raises(DomainError, match="session's site"):
        mark(therapy, session, actor=east)


@pytest.mark.parametrize(
    "reason",
    [
        None,
        "",
        "   ",
        "too short",
        "x" * 501,
        "Wrong day\x00 entered",
        "Wrong day\nentered.",
        "\u202eevil reason text",
    ],
)
def test_a_bad_reason_is_refused_by_the_field_and_nothing_is_saved(therapy, reason):
    session = recorded_group(therapy)
    with pytest.raises(DomainError) as refused:
        mark(therapy, session, reason=reason)
    assert refused.value.field == "reason"
    db.session.rollback()
    assert not db.session.get(TherapySession, session.id).entered_in_error


def test_the_reason_of_a_group_session_names_no_attendee(therapy):
    session = recorded_group(therapy)
    with pytest.raises(DomainError, match="name no patient") as refused:
        mark(therapy, session, reason="Ben Brooks was not in this group at all.")
    assert refused.value.field == "reason"


def test_a_session_is_marked_once(therapy):
    session = recorded_group(therapy)
    mark(therapy, session)
    db.session.commit()
    with pytest.raises(DomainError, match="already"):
        mark(therapy, session, reason="Another reason, written later.")


def test_a_stale_version_is_a_conflict(therapy):
    session = plan(therapy, therapy.patients[:1], kind="individual", starts_at=hours_ago(1))
    db.session.commit()
    seen = session.version
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[sessions.AttendeeRecord(therapy.patients[0], "attended", 60)],
    )
    db.session.commit()
    with pytest.raises(ConflictError):
        mark(therapy, session, version=seen)


# --- the database -----------------------------------------------------------------------------


def test_the_database_writes_the_mark_once(therapy):
    session = recorded_group(therapy)
    sid = session.id
    # Set for the first time by SQL: allowed (the CHECK wants the three together).
    assert (
        sql_refusal(
            "UPDATE therapy_session SET entered_in_error_at = :now, "
            "entered_in_error_reason = 'First reason, by SQL.', entered_in_error_by_id = :by "
            "WHERE id = :id",
            now=utcnow(),
            by=therapy.dan,
            id=sid,
        )
        is None
    )
    mark(therapy, session)
    db.session.commit()
    rule = "therapy_session_in_error_once"
    for assignment in (
        "entered_in_error_reason = 'A different reason'",
        f"entered_in_error_by_id = {therapy.cotherapist}",
        "entered_in_error_at = '2020-01-01 00:00:00'",
        "entered_in_error_at = NULL, entered_in_error_reason = NULL, entered_in_error_by_id = NULL",
    ):
        assert sql_refusal(f"UPDATE therapy_session SET {assignment} WHERE id = :id", id=sid) in (
            rule,
            "ck_therapy_session_entered_in_error_complete",
        ), assignment
    # The clearing one is the trigger's, not only the CHECK's: clear all three at once.
    assert (
        sql_refusal(
            "UPDATE therapy_session SET entered_in_error_at = NULL, "
            "entered_in_error_reason = NULL, entered_in_error_by_id = NULL WHERE id = :id",
            id=sid,
        )
        == rule
    )
    # Other columns of a marked session still change (a version bump, say).
    assert (
        sql_refusal("UPDATE therapy_session SET version = version + 1 WHERE id = :id", id=sid)
        is None
    )


def test_the_database_never_deletes_a_session_or_an_attendee(therapy):
    session = recorded_group(therapy)
    planned = plan(therapy, therapy.patients[2:3], kind="individual", starts_at=hours_ago(1))
    db.session.commit()
    assert (
        sql_refusal("DELETE FROM session_attendee WHERE session_id = :id", id=planned.id)
        == "session_attendee_no_delete"
    )
    assert (
        sql_refusal("DELETE FROM therapy_session WHERE id = :id", id=planned.id)
        == "therapy_session_no_delete"
    )
    assert sql_refusal("DELETE FROM therapy_session WHERE id = :id", id=session.id) in (
        "therapy_session_no_delete",
    )
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SessionAttendee)) == 3


def test_postgresql_refuses_truncating_sessions_and_attendees(therapy):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    found = set(
        db.session.scalars(
            sa.text(
                "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND c.relname IN ('therapy_session', 'session_attendee')"
            )
        )
    )
    assert {
        "therapy_session_no_truncate",
        "session_attendee_no_truncate",
        "therapy_session_no_delete",
        "session_attendee_no_delete",
        "therapy_session_in_error_once",
    } <= found


def test_the_app_role_is_not_granted_delete_on_sessions():
    from clinic.audit.cli import TABLE_PRIVILEGES

    for table in ("therapy_session", "session_attendee"):
        assert "DELETE" not in TABLE_PRIVILEGES[table]


# --- what the mark changes ---------------------------------------------------------------------


def test_a_session_in_error_leaves_the_rates_and_the_caseload(therapy):
    a = therapy.patients[0]
    for enrollment in db.session.scalars(sa.select(Enrollment).where(Enrollment.patient_id == a)):
        enrollment.primary_counselor_id = therapy.dan
    session = recorded_group(therapy)
    assert reading.patient_attendance_rate(
        db.session.get(type(session.attendees[0].patient), a)
    ) == (1, 1)
    mark(therapy, session)
    db.session.commit()
    patient = session.attendees[0].patient
    assert reading.patient_attendance_rate(patient) == (0, 0)
    dan = therapy.user(therapy.dan)
    [row] = reading.caseload(dan, today=utcnow().date(), timezone="UTC")
    assert row.last_attended_at is None and row.flagged and row.month_rate is None


def test_clinicians_see_it_struck_through_with_its_reason_everywhere(therapy, as_user):
    a = therapy.patients[0]
    session = recorded_group(therapy, hours=0.5, today=True)
    mark(therapy, session)
    db.session.commit()
    client = as_user(therapy.dan)
    history = client.get(f"/therapy/patients/{a}/sessions").get_data(as_text=True)
    chart = client.get(f"/patients/{a}").get_data(as_text=True)
    day = client.get("/therapy/").get_data(as_text=True)
    for html in (history, chart):
        row = html.split(f'data-session-id="{session.id}"')[1][:60]
        assert "text-decoration-line-through" in row
        assert REASON in html and "Entered in error" in html
    # My day: today's session, struck through.
    today = day.split('data-testid="today"')[1].split("</section>")[0]
    assert REASON in today
    assert "text-decoration-line-through" in today.split(f'data-session-id="{session.id}"')[1][:60]
    # Staff: struck through, never the reason (free text a clinician wrote).
    staff = as_user(therapy.staff).get(f"/therapy/patients/{a}/sessions").get_data(as_text=True)
    assert "text-decoration-line-through" in staff and REASON not in staff


# --- the page --------------------------------------------------------------------------------


def url(session, **args) -> str:
    query = "&".join(f"{k}={v}" for k, v in args.items())
    return f"/therapy/sessions/{session.id}/entered-in-error" + (f"?{query}" if query else "")


def test_the_confirmation_page_shows_the_session_and_records_views(therapy, as_user):
    session = recorded_group(therapy)
    before = len(events("therapy_session", "view"))
    page = as_user(therapy.dan).get(url(session))
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "cannot be undone" in html and "Alvarez, Ana" in html and "Brooks, Ben" in html
    assert 'name="reason"' in html and 'for="reason"' in html
    shown = events("therapy_session", "view")[before:]
    assert sorted(e.patient_id for e in shown) == sorted(therapy.patients[:2])


def test_marking_from_the_page_then_back_to_the_history(therapy, as_user):
    a = therapy.patients[0]
    session = recorded_group(therapy)
    client = as_user(therapy.dan)
    history = client.get(f"/therapy/patients/{a}/sessions").get_data(as_text=True)
    assert f"/therapy/sessions/{session.id}/entered-in-error?patient={a}" in history
    target = url(session, patient=a)
    response = client.post(target, data={**form_tokens(client, target), "reason": REASON})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/therapy/patients/{a}/sessions")
    db.session.expire_all()
    assert db.session.get(TherapySession, session.id).entered_in_error_reason == REASON


def test_marking_without_a_patient_returns_to_my_day(therapy, as_user):
    session = recorded_group(therapy)
    client = as_user(therapy.dan)
    # A patient who is not an attendee is ignored (no open redirect, no other chart).
    target = url(session, patient=therapy.patients[5])
    response = client.post(target, data={**form_tokens(client, target), "reason": REASON})
    assert response.status_code == 302 and response.headers["Location"].endswith("/therapy/")


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("", "Say why"),
        ("short", "Say why"),
        ("x" * 501, "Say why"),
        ("Wrong\x00day entirely", "control"),
        ("Ben Brooks was never in it.", "name no patient"),
    ],
)
def test_bad_input_is_shown_by_the_field_kept_and_nothing_saved(therapy, as_user, reason, message):
    session = recorded_group(therapy)
    client = as_user(therapy.dan)
    response = client.post(
        url(session), data={**form_tokens(client, url(session)), "reason": reason}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    error = html.split('id="reason-error"')[1].split("</div>")[0]
    assert message in error
    if "\x00" not in reason:
        assert f'value="{reason}"' in html  # the input is kept
    db.session.expire_all()
    assert not db.session.get(TherapySession, session.id).entered_in_error


def test_a_form_without_its_version_is_refused(therapy, as_user):
    session = recorded_group(therapy)
    client = as_user(therapy.dan)
    tokens = form_tokens(client, url(session))
    for version in ("", "abc", "99999999999999999999"):
        response = client.post(url(session), data={**tokens, "version": version, "reason": REASON})
        assert response.status_code in (400, 409)
    db.session.expire_all()
    assert not db.session.get(TherapySession, session.id).entered_in_error


def test_a_double_submit_marks_once(therapy, as_user):
    session = recorded_group(therapy)
    client = as_user(therapy.dan)
    data = {**form_tokens(client, url(session)), "reason": REASON}
    first = client.post(url(session), data=data)
    count = len(events("session_attendee"))
    second = client.post(url(session), data=data)
    assert first.status_code == second.status_code == 302
    assert len(events("session_attendee")) == count


def test_a_session_recorded_meanwhile_is_a_conflict(therapy, as_user):
    session = plan(therapy, therapy.patients[:1], kind="individual", starts_at=hours_ago(1))
    db.session.commit()
    client = as_user(therapy.dan)
    data = {**form_tokens(client, url(session)), "reason": REASON}
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[sessions.AttendeeRecord(therapy.patients[0], "attended", 60)],
    )
    db.session.commit()
    response = client.post(url(session), data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Recorded" in html and f'value="{REASON}"' in html
    db.session.expire_all()
    assert not db.session.get(TherapySession, session.id).entered_in_error
    # Having looked, sending again goes through.
    again = re.search(r'name="version"[^>]*? value="([^"]*)"', html).group(1)
    assert client.post(url(session), data={**data, "version": again}).status_code == 302


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_staff_and_administrators_are_refused_the_page(therapy, as_user, role):
    session = recorded_group(therapy)
    client = as_user(getattr(therapy, role))
    assert client.get(url(session)).status_code == 403


def test_another_sites_session_is_a_404_recorded_as_denied(therapy, as_user, make_user):
    session = recorded_group(therapy)
    east = make_user("clinician", site_ids=[therapy.other_site])
    client = as_user(east)
    assert client.get(url(session)).status_code == 404
    assert client.get("/therapy/sessions/2147483647/entered-in-error").status_code == 404
    assert client.get("/therapy/sessions/99999999999999/entered-in-error").status_code == 404
    denied = events("therapy_session", "access_denied")
    assert str(session.id) in [e.entity_id for e in denied]
    db.session.expire_all()
    assert not db.session.get(TherapySession, session.id).entered_in_error


def test_the_record_page_and_my_day_link_the_page(therapy, as_user):
    # Earlier today at the site whatever the hour (12 minutes ago failed at 06:05 UTC:
    # 23:53 the day before in Chicago, an unrecorded past session with no such link).
    session = plan(therapy, therapy.patients[:1], kind="individual", starts_at=earlier_today(0.2))
    db.session.commit()
    client = as_user(therapy.dan)
    record = client.get(f"/therapy/sessions/{session.id}/record").get_data(as_text=True)
    assert url(session) in record
    day = client.get("/therapy/").get_data(as_text=True)
    today = day.split('data-testid="today"')[1].split("</section>")[0]
    assert f'data-session-id="{session.id}"' in today and url(session) in today


def test_an_already_marked_session_redirects_with_a_message(therapy, as_user):
    session = recorded_group(therapy)
    mark(therapy, session)
    db.session.commit()
    response = as_user(therapy.dan).get(url(session))
    assert response.status_code == 302
    _ = User
