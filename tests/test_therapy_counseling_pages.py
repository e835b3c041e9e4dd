"""The SUD counseling-note pages (issue 11): writing one (a double submit saves one; bad
input refused by the field, kept), reading one (its author and the clinicians the site
allows; not cached, not printed; audited), a patient's list (no text, constant number of
statements), the administrators' readers page, and the walk that proves the note is in no
other page, print or export. The services' rules: tests/test_therapy_counseling.py."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from clinic.extensions import db
from clinic.sites.models import Site
from clinic.therapy import sessions
from clinic.therapy.models import CounselingNote, CounselingNoteReader
from tests.test_therapy_counseling import (
    MARKER,
    _count,
    _form,
    _write_url,
    as_user_fixture,  # noqa: F401
    events,
    grant,
    group,
    write,
)
from tests.test_therapy_helpers import count_statements, therapy_fixture  # noqa: F401

# --- the pages -------------------------------------------------------------------------------


def test_a_clinician_writes_a_counseling_note_once_even_when_sent_twice(therapy, as_user):
    session = group(therapy)
    attendee = session.attendees[1]
    client = as_user(therapy.dan)
    url = _write_url(session, attendee)
    page = client.get(url)
    assert page.status_code == 200
    assert "Castillo" not in page.get_data(as_text=True)  # only this attendee is named
    data = {**_form(client, url), "text": f"Between us {MARKER}"}
    first = client.post(url, data=data)
    second = client.post(url, data=data)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert _count(CounselingNote) == 1
    note = db.session.scalar(sa.select(CounselingNote))
    assert note.patient_id == attendee.patient_id and note.author_id == therapy.dan
    shown = client.get(first.headers["Location"])
    assert MARKER in shown.get_data(as_text=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"keep {MARKER} \x00 NUL", "control or invisible"),
        ("", "Write the note."),
        ("y" * 200_001, "200"),
    ],
)
def test_bad_counseling_note_text_is_refused_by_the_field_and_kept(therapy, as_user, text, message):
    session = group(therapy)
    client = as_user(therapy.dan)
    url = _write_url(session, session.attendees[0])
    response = client.post(url, data={**_form(client, url), "text": text})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    field = html.split('name="text"')[1]
    assert message in html and "invalid-feedback" in html
    if MARKER in text:
        assert f"keep {MARKER}" in field  # what was typed comes back
    assert _count(CounselingNote) == 0


def test_a_50_kb_counseling_note_is_saved_over_http(therapy, as_user):
    session = group(therapy)
    client = as_user(therapy.dan)
    url = _write_url(session, session.attendees[0])
    text = "Zeile mit Ümlaut und Emoji 😀\n" * 2000
    response = client.post(url, data={**_form(client, url), "text": text})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.scalar(sa.select(CounselingNote.text)) == text


def test_writing_about_another_sites_or_another_sessions_attendee_is_a_404(therapy, as_user):
    session = group(therapy)
    other = group(therapy, hours=5, size=5)
    client = as_user(therapy.dan)
    # An attendee of another session, under this session's id.
    assert client.get(_write_url(session, other.attendees[4])).status_code == 404
    east = therapy.user(therapy.cotherapist)
    east.sites = [db.session.get(Site, therapy.other_site)]
    db.session.commit()
    outsider = as_user(therapy.cotherapist)
    assert outsider.get(_write_url(session, session.attendees[0])).status_code == 404
    assert (
        outsider.get("/therapy/sessions/2147483647/attendees/1/counseling-note").status_code == 404
    )
    db.session.expire_all()
    denied = [e for e in events("therapy_session") if e.action == "access_denied"]
    assert len(denied) == 3


def test_the_read_page_is_not_cached_not_printable_and_audited(therapy, as_user):
    note = write(therapy)
    response = as_user(therapy.dan).get(f"/therapy/counseling-notes/{note.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert MARKER in html
    text_block = html.split('data-testid="counseling-note"')[0].rsplit("<div", 1)[1]
    assert "d-print-none" in text_block  # the text is not printed
    assert 'data-testid="not-printable"' in html and "d-print-block" in html
    db.session.expire_all()
    assert [e.action for e in events()] == ["create", "view"]


def test_anyone_else_gets_a_404_with_access_denied(therapy, as_user):
    note = write(therapy)
    url = f"/therapy/counseling-notes/{note.id}"
    assert as_user(therapy.cotherapist).get(url).status_code == 404
    assert as_user(therapy.admin).get(url).status_code == 403
    assert as_user(therapy.staff).get(url).status_code == 403
    assert as_user(therapy.dan).get("/therapy/counseling-notes/2147483647").status_code == 404
    db.session.expire_all()
    assert [e.action for e in events()] == ["create", "access_denied", "access_denied"]
    grant(therapy, therapy.cotherapist)
    assert MARKER in as_user(therapy.cotherapist).get(url).get_data(as_text=True)


def test_the_patients_list_shows_dates_and_authors_never_text(therapy, as_user):
    session = group(therapy)
    mine = write(therapy, session)
    cora_note = write(therapy, session, text=f"Cora {MARKER}", actor=therapy.cotherapist)
    write(therapy, session, index=1)  # another patient's
    url = f"/therapy/patients/{therapy.patients[0]}/counseling-notes"
    html = as_user(therapy.dan).get(url).get_data(as_text=True)
    assert MARKER not in html
    assert f'data-counseling-note-id="{mine.id}"' in html
    assert f'data-counseling-note-id="{cora_note.id}"' not in html  # not Dan's to read
    assert html.count("data-counseling-note-id") == 1
    grant(therapy, therapy.dan)
    html = as_user(therapy.dan).get(url).get_data(as_text=True)
    assert html.count("data-counseling-note-id") == 2 and "Cora Cotherapist" in html
    assert as_user(therapy.admin).get(url).status_code == 403
    assert as_user(therapy.staff).get(url).status_code == 403
    outside = f"/therapy/patients/{therapy.other_site_patient}/counseling-notes"
    assert as_user(therapy.dan).get(outside).status_code == 404


def test_the_patients_list_runs_a_constant_number_of_statements(therapy, as_user):
    client = as_user(therapy.dan)
    url = f"/therapy/patients/{therapy.patients[0]}/counseling-notes"
    write(therapy)

    def measure() -> int:
        with count_statements() as statements:
            assert client.get(url).status_code == 200
        return len(statements)

    client.get(url)
    few = measure()
    for hours in (3, 4, 5, 6, 7):
        session = group(therapy, hours=hours)
        record(therapy, session)
        write(therapy, session, actor=therapy.cotherapist)
    grant(therapy, therapy.dan)
    many = measure()
    assert many == few
    html = client.get(url).get_data(as_text=True)
    assert html.count("data-counseling-note-id") == 6
    assert html.count('/counseling-note"') == 5  # a link to write about each session


def record(therapy, session, attendance="attended"):
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[
            sessions.AttendeeRecord(
                a.patient_id, attendance, 60 if attendance == "attended" else None
            )
            for a in session.attendees
        ],
    )
    db.session.commit()


def test_the_list_links_to_writing_about_attended_recorded_sessions_only(therapy, as_user):
    attended, missed, planned = group(therapy, hours=3), group(therapy, hours=5), group(therapy)
    record(therapy, attended)
    record(therapy, missed, "no_show")
    url = f"/therapy/patients/{therapy.patients[0]}/counseling-notes"
    html = as_user(therapy.dan).get(url).get_data(as_text=True)
    assert f"/therapy/sessions/{attended.id}/attendees/" in html
    assert f"/therapy/sessions/{missed.id}/attendees/" not in html
    assert f"/therapy/sessions/{planned.id}/attendees/" not in html


def test_an_administrator_grants_and_revokes_readers_on_the_sites_page(therapy, as_user, make_user):
    client = as_user(therapy.admin)
    url = f"/therapy/sites/{therapy.site}/counseling-readers"
    assert client.get("/therapy/counseling-readers").status_code == 200
    data = {**_form(client, url), "user_id": str(therapy.cotherapist)}
    assert client.post(url, data=data).status_code == 302
    assert client.post(url, data=data).status_code == 302  # a double submit grants once
    assert _count(CounselingNoteReader) == 1
    reader = db.session.scalar(sa.select(CounselingNoteReader))
    assert "Cora Cotherapist" in client.get(url).get_data(as_text=True)
    # Bad choices: message by the field, nothing saved.
    for bad in (str(therapy.staff), "\x00", "99999999999999999999", str(therapy.cotherapist)):
        response = client.post(url, data={**_form(client, url), "user_id": bad})
        assert response.status_code == 400
        assert "invalid-feedback" in response.get_data(as_text=True)
    assert _count(CounselingNoteReader) == 1
    revoke = f"{url}/{reader.id}/revoke"
    confirm = client.get(revoke)
    assert confirm.status_code == 200 and "cannot be undone" in confirm.get_data(as_text=True)
    assert client.post(revoke, data=_form(client, revoke)).status_code == 302
    db.session.expire_all()
    assert db.session.get(CounselingNoteReader, reader.id).revoked_by_id == therapy.admin
    assert client.get(revoke).status_code == 302  # already revoked: back to the list
    # Another site's administrator: 404 with access_denied; clinicians and staff: 403.
    east_admin = make_user("admin", site_ids=[therapy.other_site])
    assert as_user(east_admin).get(url).status_code == 404
    assert as_user(east_admin).get(revoke).status_code == 404
    assert as_user(therapy.dan).get(url).status_code == 403
    assert as_user(therapy.staff).get(url).status_code == 403
    assert client.get("/therapy/sites/2147483647/counseling-readers").status_code == 404


# --- never in an export or print of the chart ------------------------------------------------

SKIP_ENDPOINTS = {"static", "bootstrap.static"}


def _get_rules(app, values: dict) -> list[tuple[str, str]]:
    from flask import url_for

    urls = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "GET" not in (rule.methods or set()) or rule.endpoint in SKIP_ENDPOINTS:
                continue
            if not set(rule.arguments) <= set(values):
                continue
            urls.append(
                (rule.endpoint, url_for(rule.endpoint, **{k: values[k] for k in rule.arguments}))
            )
    return urls


def test_the_counseling_note_is_in_no_page_print_or_export_but_its_own(app, therapy, as_user):
    session = group(therapy)
    attendee = session.attendees[0]
    dan = therapy.user(therapy.dan)
    recorded = sessions.record_session(
        session,
        actor=dan,
        attendees=[
            sessions.AttendeeRecord(p, "attended", 60, "own note") for p in therapy.patients[:3]
        ],
        group_note="group note",
        sign=True,
    )
    db.session.commit()
    note = write(therapy, session)
    reader = grant(therapy, therapy.supervisor)
    values = {
        "enrollment_id": attendee.enrollment_id,
        "program_id": therapy.program,
        "filename": "clinic.css",
        "action": "unlock",
        "patient_id": attendee.patient_id,
        "session_id": session.id,
        "note_id": recorded.attendee_note_ids[attendee.patient_id],
        "attendee_id": attendee.id,
        "counseling_note_id": note.id,
        "site_id": therapy.site,
        "reader_id": reader.id,
        "user_id": therapy.dan,
    }
    urls = _get_rules(app, values)
    assert ("patients.chart", f"/patients/{attendee.patient_id}") in urls
    assert any(e == "audit.export" for e, _u in urls)
    allowed_readers = {therapy.dan, therapy.supervisor}
    leaks, broken = [], []
    for user_id in (
        therapy.dan,
        therapy.supervisor,
        therapy.cotherapist,
        therapy.admin,
        therapy.staff,
    ):
        client = as_user(user_id)
        for endpoint, url in urls:
            for query in ("", "?print=1"):
                try:
                    body = client.get(url + query).get_data(as_text=True)
                except Exception:  # another page's bug is for its own tests to find
                    broken.append((user_id, url + query))
                    continue
                if MARKER in body and not (
                    endpoint == "therapy.counseling_note" and user_id in allowed_readers
                ):
                    leaks.append((user_id, url + query))
    assert leaks == []
    assert len(broken) < len(urls)  # the walk did read pages
    # The walk would see a leak: the note's own page shows the marker to its readers.
    own = f"/therapy/counseling-notes/{note.id}"
    assert ("therapy.counseling_note", own) in urls
    assert MARKER in as_user(therapy.supervisor).get(own).get_data(as_text=True)
    chart = as_user(therapy.dan).get(f"/patients/{attendee.patient_id}").get_data(as_text=True)
    assert 'data-testid="counseling-section"' in chart
    assert "1 SUD counseling note you may read" in chart
    staff_chart = as_user(therapy.staff).get(f"/patients/{attendee.patient_id}")
    assert 'data-testid="counseling-section"' not in staff_chart.get_data(as_text=True)
