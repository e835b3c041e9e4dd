"""My caseload and a patient's session history (issue 11, "Clinician views"): what they
show to each role, their sorting and keyset paging, the view events they record, privacy
between the members of a group, bad query strings, and a constant number of SQL
statements whatever the caseload or the number of sessions."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.db import utcnow
from clinic.extensions import db
from clinic.patients.models import Enrollment
from clinic.therapy import caseload_views, notes, sessions
from clinic.therapy.models import ProgressNote
from tests.conftest import Client, login
from tests.test_therapy_helpers import (
    count_statements,
    hours_ago,
    plan,
    therapy_fixture,  # noqa: F401
)


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


def counsel(therapy, patient_ids, counselor=None):
    for enrollment in db.session.scalars(
        sa.select(Enrollment).where(Enrollment.patient_id.in_(patient_ids))
    ):
        enrollment.primary_counselor_id = counselor or therapy.dan
    db.session.commit()


def recorded(therapy, lines, *, hours, kind="group", group_note=None, sign=False):
    """A session Dan ran ``hours`` ago, recorded with ``lines`` (patient, attendance,
    minutes, note)."""
    session = plan(therapy, [p for p, *_ in lines], kind=kind, starts_at=hours_ago(hours))
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[sessions.AttendeeRecord(*line) for line in lines],
        group_note=group_note,
        sign=sign,
    )
    db.session.commit()
    return session


def views(entity_type: str) -> list[int | None]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            sa.select(AuditEvent.patient_id)
            .where(AuditEvent.action == "view", AuditEvent.entity_type == entity_type)
            .order_by(AuditEvent.id)
        )
    )


def rows_of(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-patient-id="(\d+)"', html)]


# --- my caseload -----------------------------------------------------------------------------


def test_the_caseload_shows_last_session_days_since_rate_and_flags(therapy, as_user):
    a, b, c = therapy.patients[:3]
    counsel(therapy, [a, b, c])
    recorded(therapy, [(a, "attended", 60), (b, "no_show", None)], hours=30)
    recorded(therapy, [(b, "late", 30)], hours=24 * 40, kind="individual")

    page = as_user(therapy.dan).get("/therapy/caseload")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert sorted(rows_of(html)) == sorted([a, b, c])
    row_a = html.split(f'data-patient-id="{a}"')[1].split("</tr>")[0]
    row_b = html.split(f'data-patient-id="{b}"')[1].split("</tr>")[0]
    row_c = html.split(f'data-patient-id="{c}"')[1].split("</tr>")[0]
    assert "caseload-flag" not in row_a and ">1<" not in row_a.replace(" ", "")
    assert "30+ days without a session" in row_b and ">40" in row_b.replace("\n", "")
    assert "Never attended" in row_c and "Never" in row_c
    assert f"/patients/{a}" in row_a and f"/therapy/patients/{a}/sessions" in row_a
    # The flag is words, not only a colour.
    assert html.count('data-testid="caseload-flag"') == 2
    # Every patient on the page is a view of that patient.
    assert sorted(views("therapy_caseload")) == sorted([a, b, c])


def test_the_month_rate_counts_this_months_sessions_only(therapy, as_user):
    a = therapy.patients[0]
    counsel(therapy, [a])
    chicago = ZoneInfo("America/Chicago")  # Dan's site: his month
    month = utcnow().astimezone(chicago).replace(day=1, hour=0, minute=0, second=0)
    if hours_ago(4) < month:
        pytest.skip("the first hours of a month: the sessions would straddle two months")
    recorded(therapy, [(a, "attended", 60)], hours=1, kind="individual")
    recorded(therapy, [(a, "no_show", None)], hours=2, kind="individual")
    recorded(therapy, [(a, "cancelled_by_clinic", None)], hours=3, kind="individual")
    # An earlier month does not count in this month's rate.
    recorded(therapy, [(a, "no_show", None)], hours=24 * 35, kind="individual")
    html = as_user(therapy.dan).get("/therapy/caseload").get_data(as_text=True)
    row = html.split(f'data-patient-id="{a}"')[1].split("</tr>")[0]
    assert "1 of 2 (50%)" in row


def sort_header(html: str, key: str) -> str:
    """The attributes of the column header whose link sorts by ``key``."""
    return re.search(r'<th scope="col"([^>]*)>\s*<a href="[^"]*sort=' + key, html).group(1)


def test_the_caseload_sorts_by_name_days_and_rate_with_aria_sort(therapy, as_user):
    a, b, c = therapy.patients[:3]  # Alvarez, Brooks, Castillo
    counsel(therapy, [a, b, c])
    recorded(therapy, [(b, "attended", 60)], hours=2, kind="individual")
    recorded(therapy, [(a, "attended", 60)], hours=24 * 5, kind="individual")
    client = as_user(therapy.dan)

    html = client.get("/therapy/caseload").get_data(as_text=True)
    assert rows_of(html) == [a, b, c]
    assert sort_header(html, "name") == ' aria-sort="ascending"'
    assert sort_header(html, "days") == ""
    html = client.get("/therapy/caseload?sort=name&dir=desc").get_data(as_text=True)
    assert rows_of(html) == [c, b, a]
    assert sort_header(html, "name") == ' aria-sort="descending"'
    html = client.get("/therapy/caseload?sort=days").get_data(as_text=True)
    assert rows_of(html) == [b, a, c]  # never attended sorts as the longest wait
    assert sort_header(html, "days") == ' aria-sort="ascending"'
    html = client.get("/therapy/caseload?sort=days&dir=desc").get_data(as_text=True)
    assert rows_of(html) == [c, a, b]
    html = client.get("/therapy/caseload?sort=rate").get_data(as_text=True)
    assert sort_header(html, "rate") == ' aria-sort="ascending"'
    assert set(rows_of(html)) == {a, b, c}


@pytest.mark.parametrize(
    "query",
    [
        "sort=evil",
        "sort=__class__&dir=sideways",
        "page=abc",
        "page=-1",
        "page=99999999999999999999",
        "_external=1&_method=POST",
    ],
)
def test_a_bad_query_string_shows_the_caseload_never_an_error(therapy, as_user, query):
    counsel(therapy, therapy.patients[:2])
    page = as_user(therapy.dan).get(f"/therapy/caseload?{query}")
    assert page.status_code == 200


def test_a_nul_byte_in_the_query_string_is_refused_with_a_page(therapy, as_user):
    client = as_user(therapy.dan)
    for url in (
        "/therapy/caseload?page=1%00",
        "/therapy/caseload?sort=%00",
        f"/therapy/patients/{therapy.patients[0]}/sessions?after=%00",
    ):
        assert client.get(url).status_code == 400  # the app's edge guard, never a 500


def test_the_caseload_is_paginated(therapy, as_user, monkeypatch):
    monkeypatch.setattr(caseload_views, "PER_PAGE", 3)
    counsel(therapy, therapy.patients)
    client = as_user(therapy.dan)
    first = client.get("/therapy/caseload").get_data(as_text=True)
    pages = [first]
    while (link := re.search(r'href="([^"]+)" rel="next"', pages[-1])) is not None:
        pages.append(client.get(unescape(link.group(1))).get_data(as_text=True))
    shown = [patient for page in pages for patient in rows_of(page)]
    assert [len(rows_of(page)) for page in pages] == [3, 3, 2]
    assert sorted(shown) == sorted(therapy.patients) and len(set(shown)) == 8
    assert "The first 3; more on the next page." in first
    back = re.search(r'href="([^"]+)" rel="prev"', pages[-1])
    assert back is not None
    assert rows_of(client.get(unescape(back.group(1))).get_data(as_text=True)) == rows_of(pages[1])
    # A cursor naming no patient of the caseload: the first page.
    beyond = client.get("/therapy/caseload?after=999999").get_data(as_text=True)
    assert rows_of(beyond) == rows_of(first)
    # Only the patients shown are views: 3 + 3 + 2, then 3 (Previous) and 3 (the stray cursor).
    assert len(views("therapy_caseload")) == 14


def test_an_empty_caseload_says_so(therapy, as_user):
    html = as_user(therapy.cotherapist).get("/therapy/caseload").get_data(as_text=True)
    assert "No patient has you as primary counselor" in html
    assert views("therapy_caseload") == []


def test_the_caseload_keeps_to_the_clinicians_sites(therapy, as_user):
    counsel(therapy, [therapy.patients[0], therapy.other_site_patient])
    html = as_user(therapy.dan).get("/therapy/caseload").get_data(as_text=True)
    assert rows_of(html) == [therapy.patients[0]]
    assert "Otherside" not in html


def test_the_caseload_is_for_clinicians(therapy, as_user, client):
    for user in (therapy.staff, therapy.admin):
        assert as_user(user).get("/therapy/caseload").status_code == 403
    response = client.get("/therapy/caseload")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_my_day_and_the_menu_link_the_caseload(therapy, as_user):
    html = as_user(therapy.dan).get("/therapy/").get_data(as_text=True)
    assert html.count('href="/therapy/caseload"') == 2  # the menu and My day
    staff = as_user(therapy.staff).get("/").get_data(as_text=True)
    assert "/therapy/caseload" not in staff


def test_the_caseload_runs_a_constant_number_of_statements(therapy, as_user):
    client = as_user(therapy.dan)
    counsel(therapy, therapy.patients[:1])
    client.get("/therapy/caseload")

    def measure() -> int:
        with count_statements() as statements:
            assert client.get("/therapy/caseload").status_code == 200
        return len(statements)

    few = measure()
    counsel(therapy, therapy.patients)
    for hours in (3, 6, 9):
        recorded(therapy, [(p, "attended", 60) for p in therapy.patients], hours=hours)
    assert len(rows_of(client.get("/therapy/caseload").get_data(as_text=True))) == 8
    assert measure() == few


# --- a patient's sessions ----------------------------------------------------------------------


def group_with_notes(therapy):
    """A, B and C in a group with signed notes (B's own note, C absent); an addendum to
    A's note; a late note of A's individual session 4 days ago."""
    a, b, c = therapy.patients[:3]
    dan = therapy.user(therapy.dan)
    session = recorded(
        therapy,
        [(a, "attended", 60, "NOTE-OF-A"), (b, "attended", 50, "NOTE-OF-B"), (c, "no_show")],
        hours=3,
        group_note="GROUP-NOTE",
        sign=True,
    )
    own = db.session.scalars(
        sa.select(ProgressNote).where(
            ProgressNote.session_id == session.id, ProgressNote.attendee_id.is_not(None)
        )
    ).first()
    notes.add_addendum(own, actor=dan, text="ADDENDUM-TEXT")
    late = plan(therapy, [a], kind="individual", starts_at=hours_ago(96))
    sessions.record_session(
        late, actor=dan, attendees=[sessions.AttendeeRecord(a, "attended", 45, "LATE-NOTE")]
    )
    note = db.session.scalars(
        sa.select(ProgressNote).where(ProgressNote.session_id == late.id)
    ).one()
    notes.sign_note(note, actor=dan)
    db.session.commit()
    return a, b, c


def test_a_clinician_sees_the_history_with_this_patients_notes_only(therapy, as_user):
    a, b, c = group_with_notes(therapy)
    page = as_user(therapy.dan).get(f"/therapy/patients/{a}/sessions")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert html.count("<tr data-session-id=") == 2
    for text in ("GROUP-NOTE", "NOTE-OF-A", "ADDENDUM-TEXT", "LATE-NOTE", "Late entry"):
        assert text in html, text
    assert "Dan Counselor" in html and "Relapse prevention" in html and "Attended" in html
    assert "2 of 2" in html  # the attendance rate
    assert "NOTE-OF-B" not in html
    for other in ("Brooks", "Castillo"):
        assert other not in html
    assert "data-print" in html
    # C's history: the no-show, the group note, no note of anyone else.
    html_c = as_user(therapy.dan).get(f"/therapy/patients/{c}/sessions").get_data(as_text=True)
    assert "No-show" in html_c and "GROUP-NOTE" in html_c and "NOTE-OF" not in html_c
    assert "0 of 1" in html_c and "Alvarez" not in html_c
    _ = b


def test_staff_and_administrators_never_see_note_text_or_its_length(therapy, as_user):
    a, _b, _c = group_with_notes(therapy)
    for user in (therapy.staff, therapy.admin):
        page = as_user(user).get(f"/therapy/patients/{a}/sessions")
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        assert "Attended" in html and "Dan Counselor" in html and "60" in html
        for text in ("GROUP-NOTE", "NOTE-OF-A", "ADDENDUM-TEXT", "LATE-NOTE", "history-note"):
            assert text not in html, text
        assert "/therapy/notes/" not in html and "entered-in-error" not in html


def test_the_history_is_a_view_of_this_patient_only(therapy, as_user):
    a, _b, _c = group_with_notes(therapy)
    as_user(therapy.dan).get(f"/therapy/patients/{a}/sessions")
    assert views("therapy_history") == [a]


def test_another_sites_patient_is_a_404_recorded_as_denied(therapy, as_user):
    client = as_user(therapy.dan)
    for patient_id in (therapy.other_site_patient, 2_000_000_000, 99_999):
        assert client.get(f"/therapy/patients/{patient_id}/sessions").status_code == 404
    assert client.get("/therapy/patients/99999999999999/sessions").status_code == 404
    db.session.expire_all()
    denied = db.session.scalars(
        sa.select(AuditEvent.patient_id).where(AuditEvent.action == "access_denied")
    ).all()
    assert therapy.other_site_patient in denied
    assert views("therapy_history") == []


def test_the_history_is_keyset_paginated(therapy, as_user):
    a = therapy.patients[0]
    for day in range(23):
        recorded(therapy, [(a, "attended", 50)], hours=3 + 24 * day, kind="individual")
    client = as_user(therapy.dan)
    first = client.get(f"/therapy/patients/{a}/sessions").get_data(as_text=True)
    ids_first = re.findall(r'<tr data-session-id="(\d+)"', first)
    assert len(ids_first) == 20
    older = re.search(r'href="([^"]*after=[^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(older).get_data(as_text=True)
    ids_second = re.findall(r'<tr data-session-id="(\d+)"', second)
    assert len(ids_second) == 3 and not set(ids_first) & set(ids_second)
    assert "Newest" in second and "after=" not in second.split("Newest")[1]
    assert "23 of 23" in first


@pytest.mark.parametrize(
    "after",
    [
        "garbage",
        "1.2.3",
        "99999999999999999999.1",
        "1.99999999999",
        "1.0",
        "-5.3",
        "\uff11\uff12.\uff13",  # full-width digits
        "253402300799999999.1",
    ],
)
def test_a_bad_cursor_is_the_first_page_never_an_error(therapy, as_user, after):
    a = therapy.patients[0]
    recorded(therapy, [(a, "attended", 50)], hours=3, kind="individual")
    page = as_user(therapy.dan).get(f"/therapy/patients/{a}/sessions?after={after}")
    assert page.status_code == 200


def test_the_cursor_round_trips():
    when = dt.datetime(2026, 3, 8, 7, 59, 59, 123456, tzinfo=dt.UTC)
    text = caseload_views.cursor_text((when, 42))
    assert caseload_views.parse_cursor(text) == (when, 42)
    assert caseload_views.cursor_text(None) is None


def test_the_chart_links_all_sessions(therapy, as_user):
    a, _b, _c = group_with_notes(therapy)
    for user in (therapy.dan, therapy.staff):
        html = as_user(user).get(f"/patients/{a}").get_data(as_text=True)
        assert f'href="/therapy/patients/{a}/sessions"' in html


def test_an_empty_history_says_so(therapy, as_user):
    html = as_user(therapy.dan).get(f"/therapy/patients/{therapy.patients[5]}/sessions")
    text = html.get_data(as_text=True)
    assert "No therapy session" in text and "no session counted yet" in text


@pytest.mark.parametrize("role", ["dan", "staff"])
def test_the_history_runs_a_constant_number_of_statements(therapy, as_user, role):
    a = therapy.patients[0]
    client = as_user(getattr(therapy, role))
    recorded(therapy, [(a, "attended", 60, "n"), (therapy.patients[1], "attended", 60)], hours=100)
    client.get(f"/therapy/patients/{a}/sessions")

    def measure() -> int:
        with count_statements() as statements:
            assert client.get(f"/therapy/patients/{a}/sessions").status_code == 200
        return len(statements)

    few = measure()
    dan = therapy.user(therapy.dan)
    for hours in (3, 5, 7, 9, 11):
        session = recorded(
            therapy,
            [(a, "attended", 60, f"own {hours}"), (therapy.patients[2], "late", 30, "x")],
            hours=hours,
            group_note="g",
            sign=True,
        )
        note = db.session.scalars(
            sa.select(ProgressNote).where(ProgressNote.session_id == session.id)
        ).first()
        notes.add_addendum(note, actor=dan, text="addendum")
    db.session.commit()
    assert measure() == few
