"""Attacks on the therapy package (issue 11): every role, other sites' ids, signed notes
by any route and by SQL, and privacy between the members of a group (bad input, double
submits, tampering and query counts: tests/test_therapy_attacks_input.py). Each test
states what must hold; the faults found were fixed where they were (the service, the
view, the database's triggers), each with its test."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.therapy import counseling, notes, reading, sessions
from clinic.therapy.models import (
    CounselingNote,
    NoteAddendum,
    ProgressNote,
    SessionStatus,
    TherapySession,
)
from tests.conftest import login
from tests.test_therapy_helpers import (
    hours_ago,
    plan,
    therapy_fixture,  # noqa: F401
)
from tests.test_therapy_notes import draft, group, signed, sql_refusal
from tests.test_therapy_views import FreshClient, _count, _form, _record_data


@pytest.fixture
def as_user(app, username_of):
    """A client signed in as an existing user of the ``therapy`` clinic."""

    def make(user_id: int):
        client = FreshClient(app, app.response_class, use_cookies=True)
        assert login(client, username_of(user_id)).status_code == 302
        return client

    return make


def _denied(entity_type: str, entity_id: int) -> int:
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(AuditEvent)
        .where(
            AuditEvent.action == "access_denied",
            AuditEvent.entity_type == entity_type,
            AuditEvent.entity_id == str(entity_id),
        )
    )


def _individual_signed(therapy, patient: int, text: str, *, hours: float = 2):
    session = plan(therapy, [patient], kind="individual", starts_at=hours_ago(hours))
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[sessions.AttendeeRecord(patient, "attended", 60, text)],
        sign=True,
    )
    db.session.commit()
    [note] = notes.live_notes_of(session)
    return session, note


# --- other sites' ids ------------------------------------------------------------------------


def test_a_clinician_of_another_site_gets_404_and_a_denied_event_everywhere(
    therapy, as_user, make_user
):
    a = therapy.patients[0]
    session, note = _individual_signed(therapy, a, "SECRET NOTE TEXT")
    counseling_note = counseling.add_counseling_note(
        session.attendees[0], actor=therapy.user(therapy.dan), text="SECRET COUNSELING"
    )
    db.session.commit()
    east = make_user("clinician", site_ids=[therapy.other_site])
    client = as_user(east)
    attendee_id = session.attendees[0].id
    urls = {
        f"/therapy/sessions/{session.id}/record": ("therapy_session", session.id),
        f"/therapy/sessions/{session.id}/entered-in-error": ("therapy_session", session.id),
        f"/therapy/notes/{note.id}": ("progress_note", note.id),
        f"/therapy/notes/{note.id}/edit": ("progress_note", note.id),
        f"/therapy/notes/{note.id}/sign": ("progress_note", note.id),
        f"/therapy/notes/{note.id}/addendum": ("progress_note", note.id),
        f"/therapy/notes/{note.id}/entered-in-error": ("progress_note", note.id),
        f"/therapy/sessions/{session.id}/attendees/{attendee_id}/counseling-note": (
            "therapy_session",
            session.id,
        ),
        f"/therapy/counseling-notes/{counseling_note.id}": ("counseling_note", counseling_note.id),
        f"/therapy/patients/{a}/sessions": ("therapy_history", a),
        f"/therapy/patients/{a}/counseling-notes": ("patient", a),
    }
    for url, (entity_type, entity_id) in urls.items():
        before = _denied(entity_type, entity_id)
        response = client.get(url)
        body = response.get_data(as_text=True)
        assert response.status_code == 404, url
        assert "SECRET" not in body, url
        db.session.expire_all()
        assert _denied(entity_type, entity_id) > before, url
    # Posts too: nothing changes.
    token = client.csrf_token("/therapy/")
    for url in (
        f"/therapy/notes/{note.id}/cosign",
        f"/therapy/notes/{note.id}/addendum",
        f"/therapy/notes/{note.id}/entered-in-error",
    ):
        response = client.post(url, data={"csrf_token": token, "text": "x", "reason": "x" * 20})
        assert response.status_code == 404, url
    db.session.expire_all()
    stored = db.session.get(ProgressNote, note.id)
    assert stored.addenda == [] and stored.entered_in_error_at is None


def test_a_supervisor_at_another_site_cannot_cosign_even_through_the_service(therapy, make_user):
    """The supervisor named on a note who no longer works at the session's site cannot
    open it (404): the service refuses the co-signature too."""
    a = therapy.patients[0]
    session = plan(therapy, [a], kind="individual", actor=therapy.trainee)
    note = notes.save_draft(
        session, actor=therapy.user(therapy.trainee), text="t", attendee=session.attendees[0]
    )
    notes.sign_note(note, actor=therapy.user(therapy.trainee))
    db.session.commit()
    supervisor = therapy.user(therapy.supervisor)
    from clinic.sites.models import Site

    supervisor.sites = [db.session.get(Site, therapy.other_site)]
    db.session.commit()
    with pytest.raises(DomainError, match="supervisor"):
        notes.cosign_note(note, actor=supervisor)
    db.session.rollback()
    assert db.session.get(ProgressNote, note.id).cosigned_at is None


def test_a_trainee_cannot_sign_when_the_supervisor_could_never_cosign(therapy):
    """A trainee whose supervisor is deactivated (or works elsewhere) would leave the note
    waiting forever on a queue nobody reads: the signature is refused with a reason."""
    session = plan(therapy, [therapy.patients[0]], kind="individual", actor=therapy.trainee)
    note = notes.save_draft(
        session, actor=therapy.user(therapy.trainee), text="t", attendee=session.attendees[0]
    )
    therapy.user(therapy.supervisor).active = False
    db.session.commit()
    with pytest.raises(DomainError, match="supervisor"):
        notes.sign_note(note, actor=therapy.user(therapy.trainee))
    db.session.rollback()
    assert db.session.get(ProgressNote, note.id).signed_at is None


def test_a_trainee_cannot_cosign_their_own_note_nor_a_fellow_trainee_supervise(therapy):
    session = plan(therapy, [therapy.patients[0]], kind="individual", actor=therapy.trainee)
    note = notes.save_draft(
        session, actor=therapy.user(therapy.trainee), text="t", attendee=session.attendees[0]
    )
    notes.sign_note(note, actor=therapy.user(therapy.trainee))
    db.session.commit()
    with pytest.raises(DomainError):
        notes.cosign_note(note, actor=therapy.user(therapy.trainee))
    db.session.rollback()
    # A trainee is no supervisor: two trainees would otherwise co-sign each other's notes.
    with pytest.raises(DomainError) as refused:
        notes.set_trainee_supervisor(
            therapy.user(therapy.cotherapist),
            actor=therapy.user(therapy.admin),
            supervisor=therapy.user(therapy.trainee),
        )
    assert refused.value.field == "supervisor_id"


def test_a_clinician_who_left_the_sessions_site_cannot_record_it(therapy):
    session = plan(therapy, [therapy.patients[0]], kind="individual")
    db.session.commit()
    dan = therapy.user(therapy.dan)
    from clinic.sites.models import Site

    dan.sites = [db.session.get(Site, therapy.other_site)]
    db.session.commit()
    with pytest.raises(DomainError):
        sessions.record_session(
            session,
            actor=dan,
            attendees=[sessions.AttendeeRecord(therapy.patients[0], "attended", 60)],
        )
    db.session.rollback()
    assert db.session.get(TherapySession, session.id).status == SessionStatus.PLANNED


# --- note text never reaches staff or administrators --------------------------------------


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_staff_and_administrators_never_see_note_text_anywhere(therapy, as_user, role):
    a, b = therapy.patients[:2]
    session = plan(therapy, [a, b])
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[
            sessions.AttendeeRecord(a, "attended", 60, "OWN-NOTE-A"),
            sessions.AttendeeRecord(b, "attended", 60, "OWN-NOTE-B"),
        ],
        group_note="GROUP-NOTE-TEXT",
        sign=True,
    )
    db.session.commit()
    [group_note] = [n for n in notes.live_notes_of(session) if n.attendee_id is None]
    notes.add_addendum(group_note, actor=therapy.user(therapy.dan), text="ADDENDUM-TEXT")
    counseling.add_counseling_note(
        session.attendees[0], actor=therapy.user(therapy.dan), text="COUNSELING-TEXT"
    )
    db.session.commit()
    client = as_user(therapy.staff if role == "staff" else therapy.admin)
    pages = [
        f"/patients/{a}",
        f"/patients/{a}?print=1",
        f"/therapy/patients/{a}/sessions",
        f"/therapy/notes/{group_note.id}",
        "/therapy/",
        "/therapy/caseload",
        "/therapy/admin/drafts",
        "/admin/audit/",
        "/admin/audit/?entity_type=progress_note",
        "/admin/audit/export.csv",
        f"/admin/audit/patients/{a}",
    ]
    for url in pages:
        response = client.get(url)
        body = response.get_data(as_text=True)
        for secret in ("NOTE", "GROUP-NOTE", "ADDENDUM", "COUNSELING-TEXT"):
            assert secret not in body, (url, secret)
        assert str(len("GROUP-NOTE-TEXT")) + " characters" not in body


def test_another_attendees_name_and_note_never_reach_a_patients_pages(therapy, as_user):
    a, b = therapy.patients[:2]
    session = plan(therapy, [a, b], group_name="Tuesday relapse prevention")
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[
            sessions.AttendeeRecord(a, "attended", 60, "A-OWN"),
            sessions.AttendeeRecord(b, "attended", 60, "B-OWN-SECRET"),
        ],
        group_note="The group talked.",
        sign=True,
    )
    db.session.commit()
    client = as_user(therapy.dan)
    for url in (f"/patients/{a}", f"/therapy/patients/{a}/sessions"):
        body = client.get(url).get_data(as_text=True)
        assert "A-OWN" in body
        assert "B-OWN-SECRET" not in body and "Brooks" not in body, url


def test_a_group_name_naming_an_attendee_is_refused(therapy):
    """The group name is shown in every attendee's chart (and to staff): like the reason
    of a session entered in error, it names no attendee."""
    a, b = therapy.patients[:2]  # Ana Alvarez, Ben Brooks
    with pytest.raises(DomainError) as refused:
        plan(therapy, [a, b], group_name="Ben Brooks and friends")
    assert refused.value.field == "group_name"
    with pytest.raises(DomainError) as refused:
        sessions.plan_weekly_group(
            actor=therapy.user(therapy.dan),
            plan=sessions.SessionPlan(
                site_id=therapy.site,
                starts_at=utcnow().replace(microsecond=0) + dt.timedelta(days=1),
                duration_minutes=60,
                kind="group",
                modality="cbt",
                setting="in_person",
                patient_ids=[a, b],
                group_name="alvarez group",
            ),
            weeks=3,
        )
    assert refused.value.field == "group_name"
    assert _count(TherapySession) == 0


# --- a signed note cannot change by any route --------------------------------------------------


def test_no_route_changes_a_signed_note(therapy, as_user):
    session, note = _individual_signed(therapy, therapy.patients[0], "the signed text")
    client = as_user(therapy.dan)
    token = client.csrf_token("/therapy/")
    base = f"/therapy/notes/{note.id}"
    client.post(f"{base}/edit", data={"csrf_token": token, "text": "EDITED", "version": "1"})
    client.post(f"{base}/edit", data={"csrf_token": token, "text": "EDITED", "version": "2"})
    client.post(f"{base}/sign", data={"csrf_token": token, "version": "2"})
    # Recording again with a new note for the attendee.
    client.post(
        f"/therapy/sessions/{session.id}/record",
        data={
            "csrf_token": token,
            "attendees-0-patient_id": str(therapy.patients[0]),
            "attendees-0-attendance": "attended",
            "attendees-0-minutes": "60",
            "attendees-0-note": "NEW",
        },
    )
    db.session.expire_all()
    stored = db.session.get(ProgressNote, note.id)
    assert stored.text == "the signed text" and stored.version == note.version
    assert _count(ProgressNote) == 1
    # In error: allowed only as a mark (the text stays).
    response = client.post(
        f"{base}/entered-in-error", data={"csrf_token": token, "reason": "Wrong patient chart"}
    )
    assert response.status_code == 302
    db.session.expire_all()
    stored = db.session.get(ProgressNote, note.id)
    assert stored.entered_in_error_at is not None and stored.text == "the signed text"
    # And once only.
    client.post(f"{base}/entered-in-error", data={"csrf_token": token, "reason": "Another reason"})
    db.session.expire_all()
    assert db.session.get(ProgressNote, note.id).entered_in_error_reason == "Wrong patient chart"


def test_a_draft_of_a_session_entered_in_error_cannot_be_signed(therapy):
    session = group(therapy)
    note = draft(therapy, session)
    sessions.mark_session_entered_in_error(
        session, actor=therapy.user(therapy.dan), reason="Wrong day entirely"
    )
    db.session.commit()
    with pytest.raises(DomainError, match="entered in error"):
        notes.sign_note(note, actor=therapy.user(therapy.dan))
    db.session.rollback()
    assert db.session.get(ProgressNote, note.id).signed_at is None
    # Nor does it wait on "My day" as a draft to sign.
    assert reading.unsigned_notes(therapy.user(therapy.dan)) == []


def test_sql_cannot_renumber_a_signed_note(therapy):
    """A signed note's id is what its audit events and addenda point at."""
    note = signed(therapy)
    refused = sql_refusal("UPDATE progress_note SET id = id + 1000 WHERE id = :id", id=note.id)
    assert refused == "progress_note_signed_immutable"


@pytest.mark.parametrize("column", ["patient_id", "enrollment_id"])
def test_sql_cannot_move_an_attendee_row_and_its_signed_note_to_another_patient(therapy, column):
    """The attendee row a signed note hangs on names the patient whose chart shows it:
    changing that row's patient (or session) moves A's note to B's chart."""
    _session, note = _individual_signed(therapy, therapy.patients[0], "A's own note")
    other, _other_note = _individual_signed(therapy, therapy.patients[1], "B", hours=5)
    values = {
        "patient_id": therapy.patients[1],
        "session_id": other.id,
        "enrollment_id": other.attendees[0].enrollment_id,
    }
    refused = sql_refusal(
        f"UPDATE session_attendee SET {column} = :v WHERE id = :id",
        v=values[column],
        id=note.attendee_id,
    )
    assert refused is not None


@pytest.mark.parametrize(
    "assignment",
    ["site_id = :other_site", "clinician_id = :cotherapist", "starts_at = CURRENT_TIMESTAMP"],
)
def test_sql_cannot_move_a_session_with_a_signed_note(therapy, assignment):
    """The session's site, clinician and time are what a signed note attests (and what
    makes it late): they are the signed note's context."""
    session, _note = _individual_signed(therapy, therapy.patients[0], "signed")
    refused = sql_refusal(
        f"UPDATE therapy_session SET {assignment} WHERE id = :id",
        id=session.id,
        other_site=therapy.other_site,
        cotherapist=therapy.cotherapist,
    )
    assert refused is not None


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE counseling_note SET text = 'x'",
        "UPDATE counseling_note SET patient_id = patient_id",
        "DELETE FROM counseling_note",
        "UPDATE note_addendum SET text = 'x'",
        "DELETE FROM note_addendum",
    ],
)
def test_sql_cannot_change_counseling_notes_or_addenda(therapy, statement):
    session, note = _individual_signed(therapy, therapy.patients[0], "signed")
    notes.add_addendum(note, actor=therapy.user(therapy.dan), text="addendum")
    counseling.add_counseling_note(session.attendees[0], actor=therapy.user(therapy.dan), text="c")
    db.session.commit()
    assert sql_refusal(statement) in ("counseling_note_append_only", "note_addendum_append_only")
    assert _count(CounselingNote) == 1 and _count(NoteAddendum) == 1


def test_sql_cannot_change_the_in_error_mark_of_a_draft_or_a_session(therapy):
    session = group(therapy)
    note = draft(therapy, session)
    notes.mark_entered_in_error(note, actor=therapy.user(therapy.dan), reason="Wrong session")
    sessions.mark_session_entered_in_error(
        session, actor=therapy.user(therapy.dan), reason="Wrong day entirely"
    )
    db.session.commit()
    for statement in (
        "UPDATE progress_note SET entered_in_error_reason = 'changed'",
        "UPDATE progress_note SET entered_in_error_at = NULL, entered_in_error_reason = NULL,"
        " entered_in_error_by_id = NULL",
    ):
        assert sql_refusal(statement) == "progress_note_signed_immutable"
    for statement in (
        "UPDATE therapy_session SET entered_in_error_reason = 'changed'",
        "UPDATE therapy_session SET entered_in_error_at = NULL, entered_in_error_reason = NULL,"
        " entered_in_error_by_id = NULL",
    ):
        assert sql_refusal(statement) == "therapy_session_in_error_once"


def test_a_note_of_a_session_entered_in_error_takes_no_addendum(therapy):
    session, note = _individual_signed(therapy, therapy.patients[0], "signed")
    sessions.mark_session_entered_in_error(
        session, actor=therapy.user(therapy.dan), reason="Wrong patient entirely"
    )
    db.session.commit()
    with pytest.raises(DomainError, match="entered in error"):
        notes.add_addendum(note, actor=therapy.user(therapy.dan), text="late correction")
    db.session.rollback()
    assert _count(NoteAddendum) == 0


# --- names of other attendees in a group's notes ---------------------------------------------


def test_an_attendees_own_note_naming_another_attendee_warns_before_saving(therapy, as_user):
    a, b = therapy.patients[:2]  # Ana Alvarez, Ben Brooks
    session = plan(therapy, [a, b])
    db.session.commit()
    client = as_user(therapy.dan)
    lines = [(a, "attended", "60", "Argued with Ben about rides."), (b, "attended", "60", "")]
    url, data = _record_data(client, session.id, lines)
    response = client.post(url, data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert re.search(r'id="attendees-0-note-error"[^>]*>This note names Brooks, Ben', html)
    assert 'name="confirm_names"' in html and "Argued with Ben about rides." in html
    assert _count(ProgressNote) == 0
    # Naming the patient the note is about is fine; confirming saves as written.
    data["confirm_names"] = "y"
    assert client.post(url, data=data).status_code == 302
    assert _count(ProgressNote) == 1


def test_editing_a_group_note_to_name_an_attendee_warns_before_saving(therapy, as_user):
    session = group(therapy)
    note = draft(therapy, session, text="Group practised refusal skills.")
    client = as_user(therapy.dan)
    url = f"/therapy/notes/{note.id}/edit"
    data = _form(client, url)
    data.update(version=str(note.version), text="Cleo Castillo led the exercise.")
    response = client.post(url, data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "The group note names Castillo, Cleo" in html and 'name="confirm_names"' in html
    db.session.expire_all()
    assert db.session.get(ProgressNote, note.id).text == "Group practised refusal skills."
    data["confirm_names"] = "y"
    assert client.post(url, data=data).status_code == 302
    db.session.expire_all()
    assert db.session.get(ProgressNote, note.id).text == "Cleo Castillo led the exercise."


# --- a deactivated clinician ------------------------------------------------------------------


def test_a_clinician_deactivated_while_signed_in_is_refused_and_their_work_stays(therapy, as_user):
    session = group(therapy)
    note = draft(therapy, session, actor=therapy.cotherapist, text="Cora's draft.")
    client = as_user(therapy.cotherapist)
    assert client.get(f"/therapy/notes/{note.id}").status_code == 200
    therapy.user(therapy.cotherapist).active = False
    db.session.commit()
    for url in ("/therapy/", f"/therapy/notes/{note.id}", f"/therapy/notes/{note.id}/edit"):
        response = client.get(url)
        assert response.status_code in (302, 401, 403), url
        assert "Cora's draft." not in response.get_data(as_text=True)
    token = client.csrf_token("/login")
    response = client.post(
        f"/therapy/notes/{note.id}/edit",
        data={"csrf_token": token, "text": "changed", "version": str(note.version)},
    )
    assert response.status_code in (302, 400, 401, 403)
    db.session.expire_all()
    stored = db.session.get(ProgressNote, note.id)
    assert stored.text == "Cora's draft." and stored.author_id == therapy.cotherapist
    assert [
        e.note_id for e in reading.drafts_of_inactive_clinicians(therapy.user(therapy.admin))
    ] == [note.id]


def test_in_a_family_session_an_own_note_may_use_the_shared_surname(
    therapy, make_patient, make_enrollment
):
    carlos = make_patient("Carlos", "Alvarez")
    make_enrollment(carlos, therapy.program)
    ana = therapy.patients[0]  # Ana Alvarez
    session = plan(therapy, [ana, carlos], kind="family")
    db.session.commit()
    [ana_row, _carlos_row] = session.attendees
    assert notes.note_name_warnings(session, "Ana Alvarez spoke first.", ana_row) == []
    assert notes.note_name_warnings(session, "Carlos spoke first.", ana_row) == ["Alvarez, Carlos"]
