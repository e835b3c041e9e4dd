"""Attacks on the therapy package's input (issue 11): bad durations, minutes and dates,
control characters and long texts, wrong choices, double submits, reassigning drafts,
tampered cursors and sorts, forms sent after their CSRF token expired, and a constant
number of SQL statements on the list pages. Access, privacy and signed notes:
tests/test_therapy_attacks.py."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from clinic.accounts.models import User
from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.therapy import counseling, notes, sessions
from clinic.therapy.models import (
    CounselingNote,
    NoteAddendum,
    ProgressNote,
    SessionStatus,
    TherapySession,
)
from tests.conftest import login
from tests.test_therapy_attacks import _individual_signed
from tests.test_therapy_helpers import (
    count_statements,
    hours_ago,
    plan,
    therapy_fixture,  # noqa: F401
)
from tests.test_therapy_notes import draft, group, signed
from tests.test_therapy_views import FreshClient, _count, _form, _plan_data, _record_data


@pytest.fixture
def as_user(app, username_of):
    """A client signed in as an existing user of the ``therapy`` clinic."""

    def make(user_id: int):
        client = FreshClient(app, app.response_class, use_cookies=True)
        assert login(client, username_of(user_id)).status_code == 302
        return client

    return make


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("duration", ["0", "2000", str(10**30), "1e3", "-5", ""])
def test_bad_durations_are_refused_by_the_field(therapy, as_user, duration):
    client = as_user(therapy.dan)
    data = {**_form(client, "/therapy/sessions/new"), **_plan_data(therapy)}
    data["duration_minutes"] = duration
    response = client.post("/therapy/sessions/new", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert re.search(r'id="duration_minutes-error"', html)
    assert "Tuesday relapse prevention" in html  # the input is kept
    assert _count(TherapySession) == 0


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "10000-01-01"])
def test_extreme_dates_never_500(therapy, as_user, day):
    client = as_user(therapy.dan)
    data = {**_form(client, "/therapy/sessions/new"), **_plan_data(therapy)}
    data["day"] = day
    data["start_time"] = "23:30"
    response = client.post("/therapy/sessions/new", data=data)
    assert response.status_code == 400
    assert _count(TherapySession) == 0


def test_a_future_session_cannot_be_recorded_as_a_no_show(therapy):
    """A patient cannot miss a session that has not happened yet (cancellations can be
    recorded ahead; a no-show cannot)."""
    a = therapy.patients[0]
    session = plan(
        therapy,
        [a],
        kind="individual",
        starts_at=utcnow().replace(microsecond=0) + dt.timedelta(hours=5),
    )
    db.session.commit()
    with pytest.raises(DomainError) as refused:
        sessions.record_session(
            session,
            actor=therapy.user(therapy.dan),
            attendees=[sessions.AttendeeRecord(a, "no_show")],
        )
    assert refused.value.field == "attendees-0-attendance"


@pytest.mark.parametrize(
    ("minutes", "attendance"),
    [(61, "attended"), (0, "attended"), (-1, "late"), (10**30, "attended"), (5, "no_show")],
)
def test_bad_minutes_are_refused(therapy, minutes, attendance):
    a = therapy.patients[0]
    session = plan(therapy, [a], kind="individual")
    with pytest.raises(DomainError) as refused:
        sessions.record_session(
            session,
            actor=therapy.user(therapy.dan),
            attendees=[sessions.AttendeeRecord(a, attendance, minutes)],
        )
    assert refused.value.field == "attendees-0-minutes"


def test_21_attendees_an_other_sites_or_a_discharged_attendee_are_refused(
    therapy, make_patient, make_enrollment
):
    many = list(therapy.patients)
    for i in range(13):
        patient = make_patient(f"Extra{i}", "Patient")
        make_enrollment(patient, therapy.program)
        many.append(patient)
    assert len(many) == 21
    with pytest.raises(DomainError, match="at most 20"):
        plan(therapy, many)
    with pytest.raises(DomainError) as refused:
        plan(therapy, [therapy.patients[0], therapy.other_site_patient])
    assert refused.value.field == "patient_ids"
    with pytest.raises(DomainError):
        plan(therapy, [therapy.patients[0], therapy.unenrolled_patient])
    # Walk-ins on recording are checked the same way.
    session = plan(therapy, [therapy.patients[0]])
    with pytest.raises(DomainError) as refused:
        sessions.record_session(
            session,
            actor=therapy.user(therapy.dan),
            attendees=[
                sessions.AttendeeRecord(therapy.patients[0], "attended", 60),
                sessions.AttendeeRecord(therapy.other_site_patient, "attended", 60),
            ],
        )
    assert refused.value.field == "attendees"


@pytest.mark.parametrize(
    "text",
    [
        "NUL\x00 in the middle",
        "bell\x07 x",
        "esc\x1b[31m x",
        "del\x7f x",
        "c1\x85 x",
        "line sep\u2028 x",
        "bidi\u202e x",
        "zero width\u200b x",
    ],
)
def test_control_characters_are_refused_in_every_text(therapy, text):
    session = group(therapy)
    dan = therapy.user(therapy.dan)
    with pytest.raises(DomainError):
        notes.save_draft(session, actor=dan, text=text)
    with pytest.raises(DomainError):
        sessions.mark_session_entered_in_error(session, actor=dan, reason="Reason is " + text)
    with pytest.raises(DomainError):
        plan(therapy, therapy.patients[:2], group_name="Group " + text, starts_at=hours_ago(9))
    note = signed(therapy, group(therapy, hours=5))
    with pytest.raises(DomainError):
        notes.add_addendum(note, actor=dan, text=text)
    with pytest.raises(DomainError):
        notes.mark_entered_in_error(note, actor=dan, reason="Reason is " + text)
    with pytest.raises(DomainError):
        counseling.add_counseling_note(note.session.attendees[0], actor=dan, text=text)


def test_unicode_rtl_and_combining_marks_are_kept_exactly(therapy):
    text = "שלום, המטופל דיווח על שיפור. مرحبا بالعالم. e\u0301te\u0301 Zalgo z\u0351\u0352a\u0353"
    note = draft(therapy, group(therapy), text=text)
    db.session.expire_all()
    assert db.session.get(ProgressNote, note.id).text == text


def test_a_5_mb_note_is_refused_with_a_page_never_a_500(therapy, as_user):
    _session, note = _individual_signed(therapy, therapy.patients[0], "signed")
    client = as_user(therapy.dan)
    data = _form(client, f"/therapy/notes/{note.id}/addendum")
    data["text"] = "x" * (5 * 1024 * 1024)
    response = client.post(f"/therapy/notes/{note.id}/addendum", data=data)
    assert response.status_code in (400, 413)
    assert _count(NoteAddendum) == 0


def test_a_missing_or_wrong_enum_is_refused_by_the_field(therapy, as_user):
    client = as_user(therapy.dan)
    for field, value in (("kind", "lecture"), ("modality", ""), ("setting", "telepathy")):
        data = {**_form(client, "/therapy/sessions/new"), **_plan_data(therapy)}
        data[field] = value
        response = client.post("/therapy/sessions/new", data=data)
        assert response.status_code == 400, field
        assert f'id="{field}-error"' in response.get_data(as_text=True)
    session = plan(therapy, [therapy.patients[0]], kind="individual")
    db.session.commit()
    url, data = _record_data(client, session.id, [(therapy.patients[0], "teleported", "60", "")])
    response = client.post(url, data=data)
    assert response.status_code == 400
    assert _count(TherapySession) == 1


# --- double submits -----------------------------------------------------------------------


def test_double_submits_of_addendum_and_counseling_note_save_one_row(therapy, as_user):
    session, note = _individual_signed(therapy, therapy.patients[0], "signed")
    client = as_user(therapy.dan)
    data = _form(client, f"/therapy/notes/{note.id}/addendum")
    data["text"] = "One addendum"
    assert client.post(f"/therapy/notes/{note.id}/addendum", data=data).status_code == 302
    assert client.post(f"/therapy/notes/{note.id}/addendum", data=data).status_code == 302
    assert _count(NoteAddendum) == 1
    url = f"/therapy/sessions/{session.id}/attendees/{session.attendees[0].id}/counseling-note"
    data = _form(client, url)
    data["text"] = "One counseling note"
    assert client.post(url, data=data).status_code == 302
    assert client.post(url, data=data).status_code == 302
    assert _count(CounselingNote) == 1


def test_a_double_submit_of_sign_signs_once(therapy, as_user):
    session = group(therapy)
    note = draft(therapy, session)
    client = as_user(therapy.dan)
    data = _form(client, f"/therapy/notes/{note.id}/sign")
    data["version"] = str(note.version)
    first = client.post(f"/therapy/notes/{note.id}/sign", data=data)
    second = client.post(f"/therapy/notes/{note.id}/sign", data=data)
    assert first.status_code == 302 and second.status_code == 302
    db.session.expire_all()
    stored = db.session.get(ProgressNote, note.id)
    assert stored.signed_at is not None and stored.version == 2


# --- reassigning drafts ------------------------------------------------------------------------


def test_reassigning_is_for_drafts_of_deactivated_clinicians_to_active_ones_of_the_site(
    therapy, make_user
):
    session = group(therapy)
    note = draft(therapy, session, actor=therapy.cotherapist)
    admin = therapy.user(therapy.admin)
    # The author is still active: an administrator does not take a working clinician's draft.
    with pytest.raises(DomainError):
        notes.reassign_draft(note, actor=admin, author=therapy.user(therapy.dan))
    db.session.rollback()
    therapy.user(therapy.cotherapist).active = False
    db.session.commit()
    east = make_user("clinician", site_ids=[therapy.other_site])
    gone = make_user("clinician")
    db.session.get(User, gone).active = False
    db.session.commit()
    for author in (east, gone, therapy.staff, therapy.admin):
        with pytest.raises(DomainError) as refused:
            notes.reassign_draft(note, actor=admin, author=therapy.user(author))
        assert refused.value.field == "author_id"
    db.session.rollback()
    assert db.session.get(ProgressNote, note.id).author_id == therapy.cotherapist


# --- tampering with the pages' parameters -----------------------------------------------------


@pytest.mark.parametrize(
    "after",
    [
        "garbage",
        "-5.3",
        "99999999999999999999.1",
        "1.-1",
        "1.99999999999",
        "1e3.1",
        "%00",
        "0.0",
        "12.3.4",
    ],
)
def test_a_tampered_history_cursor_is_the_first_page(therapy, as_user, after):
    client = as_user(therapy.dan)
    response = client.get(f"/therapy/patients/{therapy.patients[0]}/sessions?after={after}")
    assert response.status_code in (200, 400)


def test_another_patients_cursor_shows_only_this_patients_sessions(therapy, as_user):
    a, b = therapy.patients[:2]
    mine = plan(therapy, [a], kind="individual", starts_at=hours_ago(30))
    theirs = plan(therapy, [b], kind="individual", starts_at=hours_ago(10))
    db.session.commit()
    from clinic.therapy.caseload_views import cursor_text

    cursor = cursor_text((theirs.starts_at, theirs.id))
    html = as_user(therapy.dan).get(f"/therapy/patients/{a}/sessions?after={cursor}")
    body = html.get_data(as_text=True)
    assert f'data-session-id="{mine.id}"' in body
    assert f'data-session-id="{theirs.id}"' not in body


@pytest.mark.parametrize(
    "query",
    [
        "sort=name;DROP TABLE patient",
        "sort=patient.id",
        "sort=rate&dir=desc,1",
        "sort=__class__",
        "sort=days&page=-1",
        "sort=days&page=99999999999999999999",
    ],
)
def test_sort_injection_on_the_caseload_is_harmless(therapy, as_user, query):
    response = as_user(therapy.dan).get(f"/therapy/caseload?{query}")
    assert response.status_code in (200, 400, 404)


# --- query counts --------------------------------------------------------------------------


def _grow(therapy, n: int, *, start: int = 0) -> None:
    for i in range(start, start + n):
        session = plan(therapy, therapy.patients[:4], starts_at=hours_ago(3 + i * 24))
        sessions.record_session(
            session,
            actor=therapy.user(therapy.dan),
            attendees=[
                sessions.AttendeeRecord(p, "attended", 60, f"note {i}")
                for p in therapy.patients[:4]
            ],
            group_note=f"group {i}",
        )
    db.session.commit()


def test_my_day_caseload_and_history_run_constant_statements(therapy, as_user):
    client = as_user(therapy.dan)
    urls = ["/therapy/", "/therapy/caseload", f"/therapy/patients/{therapy.patients[0]}/sessions"]

    def counts() -> list[int]:
        result = []
        for url in urls:
            with count_statements() as statements:
                assert client.get(url).status_code == 200
            result.append(len(statements))
        return result

    _grow(therapy, 1)
    few = counts()
    _grow(therapy, 6, start=1)
    assert counts() == few


# --- a form sent after its CSRF token expired keeps what was typed ----------------------------


def test_expired_forms_of_long_texts_come_back_with_the_text_kept(therapy, as_user):
    a = therapy.patients[0]
    session, note = _individual_signed(therapy, a, "signed")
    planned = plan(therapy, therapy.patients[1:3], starts_at=hours_ago(30))
    db.session.commit()
    client = as_user(therapy.dan)
    long_text = ("Typed for an hour — ünïcödé.\n" * 2000)[:52_000]
    marker = long_text[:40]
    counseling_url = (
        f"/therapy/sessions/{session.id}/attendees/{session.attendees[0].id}/counseling-note"
    )
    record_url, record = _record_data(
        client,
        planned.id,
        [(therapy.patients[1], "attended", "60", ""), (therapy.patients[2], "attended", "60", "")],
        group_note=long_text,
    )
    posts = {
        f"/therapy/notes/{note.id}/addendum": {
            **_form(client, f"/therapy/notes/{note.id}/addendum"),
            "text": long_text,
        },
        counseling_url: {**_form(client, counseling_url), "text": long_text},
        record_url: record,
    }
    for url, data in posts.items():
        data["csrf_token"] = "expired"
        response = client.post(url, data=data)
        html = response.get_data(as_text=True)
        assert response.status_code == 400, url
        assert "The form had expired, so nothing was saved." in html, url
        assert marker in html, url
    assert _count(NoteAddendum) == 0 and _count(CounselingNote) == 0
    assert db.session.get(TherapySession, planned.id).status == SessionStatus.PLANNED
