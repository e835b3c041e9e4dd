"""What a new counselor hit walking the Tuesday of SCENARIOS.md in Chromium (issue 11,
T11), one test per fault fixed:

- a note's line breaks were lost on every page (the pages set ``white-space: pre-wrap`` in
  a ``style`` attribute, which the Content-Security-Policy ``style-src 'self'`` drops);
- the chart's "Sessions" section showed times in the viewer's first site's zone, so an
  all-sites administrator read them in UTC while the history page said EST/CST;
- a note never said who wrote, signed or must co-sign it (a supervisor co-signing, or a
  clinician given a deactivated colleague's draft, could not tell whose words they were);
- a note and a counseling note led nowhere but "my day": no way on to the patient's
  session history;
- "In the site's time zone" on the plan form named no zone;
- at 200 % zoom the session history scrolled the whole page sideways.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.db import utcnow
from clinic.extensions import db
from clinic.therapy import counseling, notes, sessions
from clinic.therapy.models import ProgressNote
from tests.test_therapy_counseling import as_user_fixture  # noqa: F401
from tests.test_therapy_helpers import hours_ago, plan, therapy_fixture  # noqa: F401

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "therapy"
CHICAGO = ZoneInfo("America/Chicago")
NOTE = "First line of the note.\nSecond line, <b>not bold</b>.\n\nFourth line."
ADDENDUM = "Correction, line one.\r\nCorrection, line two."


def _individual(therapy, *, actor=None, text=NOTE, sign=True) -> ProgressNote:
    """Dan's (or ``actor``'s) individual session with Ana three hours ago, recorded with a
    note, signed unless ``sign`` is false."""
    user = therapy.user(actor or therapy.dan)
    ana = therapy.patients[0]
    session = plan(therapy, [ana], actor=user.id, kind="individual", starts_at=hours_ago(3))
    recorded = sessions.record_session(
        session, actor=user, attendees=[sessions.AttendeeRecord(ana, "attended", 60, text)]
    )
    note = db.session.get(ProgressNote, recorded.attendee_note_ids[ana])
    if sign:
        notes.sign_note(note, actor=user)
    db.session.commit()
    return note


def _page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.get_data(as_text=True)


# --- line breaks ---------------------------------------------------------------------------


def test_no_therapy_template_sets_an_inline_style_the_csp_would_drop():
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(TEMPLATES.glob("*.html"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\sstyle=", line)
    ]
    assert not offenders, f"style attributes are blocked by the CSP: {offenders}"


def test_a_multi_line_note_keeps_its_line_breaks_on_every_page_that_shows_it(therapy, as_user):
    note = _individual(therapy)
    notes.add_addendum(note, actor=therapy.user(therapy.dan), text=ADDENDUM)
    db.session.commit()
    client = as_user(therapy.dan)
    ana = therapy.patients[0]
    lines = (
        "First line of the note.<br>\nSecond line, &lt;b&gt;not bold&lt;/b&gt;.<br>\n<br>\n"
        "Fourth line."
    )
    addendum = "Correction, line one.<br>\nCorrection, line two."
    for url in (
        f"/therapy/notes/{note.id}",
        f"/therapy/notes/{note.id}/addendum",
        f"/therapy/patients/{ana}/sessions",
        f"/patients/{ana}",
    ):
        html = _page(client, url)
        assert lines in html, url
        assert addendum in html, url
        assert "<b>not bold" not in html, url  # still escaped
        assert "white-space: pre-wrap" not in html, url


def test_a_draft_shows_its_line_breaks_before_signing(therapy, as_user):
    note = _individual(therapy, sign=False)
    client = as_user(therapy.dan)
    html = _page(client, f"/therapy/notes/{note.id}/sign")
    assert "First line of the note.<br>\nSecond line" in html


def test_a_counseling_note_keeps_its_line_breaks(therapy, as_user):
    note = _individual(therapy)
    written = counseling.add_counseling_note(
        note.attendee, actor=therapy.user(therapy.dan), text="Private one.\nPrivate two."
    )
    db.session.commit()
    html = _page(as_user(therapy.dan), f"/therapy/counseling-notes/{written.id}")
    assert "Private one.<br>\nPrivate two." in html
    assert f'href="/therapy/patients/{therapy.patients[0]}/sessions"' in html


# --- time zones ----------------------------------------------------------------------------


@pytest.fixture
def all_sites_admin(make_user):
    """An administrator of all sites with no site of their own (the demo's director)."""
    return make_user("admin", site_ids=[], all_sites=True, full_name="All Sites Admin")


def test_the_chart_shows_session_times_in_the_sites_zone_to_an_all_sites_administrator(
    therapy, as_user, all_sites_admin
):
    starts = dt.datetime(2026, 1, 15, 16, 0, tzinfo=dt.UTC)  # 10:00 CST
    ana = therapy.patients[0]
    plan(therapy, [ana], kind="individual", starts_at=starts)
    db.session.commit()
    html = _page(as_user(all_sites_admin), f"/patients/{ana}")
    section = html.split('data-testid="sessions-section"')[1].split("</section>")[0]
    assert "15 Jan 2026 10:00 CST" in section
    assert "UTC" not in section


def test_a_notes_times_are_in_its_sessions_site_zone(therapy, as_user):
    note = _individual(therapy)
    signed = note.signed_at.astimezone(CHICAGO)
    html = _page(as_user(therapy.dan), f"/therapy/notes/{note.id}")
    status = html.split('data-testid="note-status"')[1].split("</div>")[0]
    assert f"Signed {signed.day} {signed:%b %Y %H:%M} {signed.tzname()}" in status


def test_the_plan_form_names_the_sites_time_zone(therapy, as_user):
    html = _page(as_user(therapy.dan), "/therapy/sessions/new")
    zone = utcnow().astimezone(CHICAGO).tzname()
    help_text = re.search(r'id="start_time-help"[^>]*>([^<]*)<', html).group(1)
    assert help_text.replace("&#39;", "'") == f"In the site's time zone: MAIN {zone}"


# --- who wrote it ---------------------------------------------------------------------------


def test_a_trainees_note_names_its_author_and_the_supervisor_who_must_cosign(therapy, as_user):
    note = _individual(therapy, actor=therapy.trainee)
    supervisor = as_user(therapy.supervisor)
    status = _page(supervisor, f"/therapy/notes/{note.id}")
    status = status.split('data-testid="note-status"')[1].split("</div>")[0]
    assert "by Tess Trainee" in status
    assert re.search(r"Awaiting co-signature</span> by Sue Supervisor", status)
    notes.cosign_note(note, actor=therapy.user(therapy.supervisor))
    db.session.commit()
    status = _page(supervisor, f"/therapy/notes/{note.id}")
    status = status.split('data-testid="note-status"')[1].split("</div>")[0]
    assert "co-signed" in status and "by Sue Supervisor" in status


def test_a_draft_and_an_addendum_name_their_authors(therapy, as_user):
    draft = _individual(therapy, sign=False)
    html = _page(as_user(therapy.dan), f"/therapy/notes/{draft.id}")
    assert "<strong>Draft</strong> by Dan Counselor" in html
    signed = _individual(therapy, actor=therapy.cotherapist)
    notes.add_addendum(signed, actor=therapy.user(therapy.dan), text="A correction.")
    db.session.commit()
    html = _page(as_user(therapy.dan), f"/therapy/notes/{signed.id}")
    assert "by Cora Cotherapist" in html
    assert "<strong>Addendum</strong> by Dan Counselor" in html


def test_the_note_page_names_people_in_one_query(therapy, as_user):
    from tests.test_therapy_helpers import count_statements

    note = _individual(therapy)
    for i in range(5):
        notes.add_addendum(note, actor=therapy.user(therapy.dan), text=f"Addendum {i}.")
    db.session.commit()
    client = as_user(therapy.dan)
    client.get(f"/therapy/notes/{note.id}")
    with count_statements() as few:
        client.get(f"/therapy/notes/{note.id}")
    notes.add_addendum(note, actor=therapy.user(therapy.cotherapist), text="Another.")
    db.session.commit()
    client.get(f"/therapy/notes/{note.id}")
    with count_statements() as more:
        client.get(f"/therapy/notes/{note.id}")
    assert len(more) == len(few)


# --- links ---------------------------------------------------------------------------------


def test_an_individual_note_links_to_the_patients_session_history(therapy, as_user):
    note = _individual(therapy)
    html = _page(as_user(therapy.dan), f"/therapy/notes/{note.id}")
    assert f'href="/therapy/patients/{therapy.patients[0]}/sessions"' in html


def test_a_group_note_links_to_no_single_patients_history(therapy, as_user):
    a, b = therapy.patients[:2]
    session = plan(therapy, [a, b])
    recorded = sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[sessions.AttendeeRecord(p, "attended", 60) for p in (a, b)],
        group_note="The group's note.",
    )
    db.session.commit()
    html = _page(as_user(therapy.dan), f"/therapy/notes/{recorded.group_note_id}")
    assert '/sessions"' not in html.split('data-testid="note"')[1]


# --- zoom ----------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["history", "chart"])
def test_the_session_tables_scroll_in_their_own_keyboard_reachable_region(therapy, as_user, page):
    _individual(therapy)
    ana = therapy.patients[0]
    url = f"/therapy/patients/{ana}/sessions" if page == "history" else f"/patients/{ana}"
    html = _page(as_user(therapy.dan), url)
    # position-relative: the visually-hidden link texts (position: absolute) would
    # otherwise escape the scrolling box and widen the page again.
    assert re.search(
        r'<div class="table-responsive position-relative" role="region" '
        r'aria-label="[^"]+" tabindex="0">\s*<table',
        html,
    )


# --- who is the session with ----------------------------------------------------------------


def _my_day_views() -> list[int]:
    from clinic.audit.models import AuditEvent

    db.session.expire_all()
    return list(
        db.session.scalars(
            sa.select(AuditEvent.patient_id).where(
                AuditEvent.action == "view", AuditEvent.entity_type == "therapy_my_day"
            )
        )
    )


def test_my_day_names_who_an_individual_session_is_with_and_records_the_view(therapy, as_user):
    ana, ben, cleo = therapy.patients[:3]
    # Today's (or, just after midnight, the "unrecorded" list's): named either way.
    plan(therapy, [ana], kind="individual", starts_at=hours_ago(1))
    plan(therapy, [ben, cleo], starts_at=hours_ago(2))  # a group
    plan(therapy, [cleo], kind="individual", starts_at=hours_ago(30))  # unrecorded, past
    db.session.commit()
    html = _page(as_user(therapy.dan), "/therapy/")
    named = re.findall(r'data-testid="with-whom">([^<]*)<', html)
    assert sorted(named) == ["Alvarez, Ana", "Castillo, Cleo"]
    assert "Brooks, Ben" not in html  # a group shows its count, not its names
    assert sorted(_my_day_views()) == sorted([ana, cleo])


def test_my_day_names_attendees_in_a_constant_number_of_statements(therapy, as_user):
    from tests.test_therapy_helpers import count_statements

    client = as_user(therapy.dan)
    plan(therapy, [therapy.patients[0]], kind="individual", starts_at=hours_ago(26))
    db.session.commit()
    client.get("/therapy/")

    def measure() -> int:
        with count_statements() as statements:
            assert client.get("/therapy/").status_code == 200
        return len(statements)

    few = measure()
    for i, patient in enumerate(therapy.patients[1:6]):
        plan(therapy, [patient], kind="individual", starts_at=hours_ago(28 + 2 * i))
    db.session.commit()
    client.get("/therapy/")
    assert measure() == few


def test_my_day_without_individual_sessions_names_no_one(therapy, as_user):
    html = _page(as_user(therapy.dan), "/therapy/")
    assert 'data-testid="with-whom"' not in html
    assert _my_day_views() == []
