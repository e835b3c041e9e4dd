"""A counselor's Tuesday (SCENARIOS.md, issue 11) in Chromium, from the keyboard only:
plan an individual session from "My day", record it with a two-line note signed at once,
open the caseload (sort it, find the flag), the patient's session history (its note's
line breaks kept, older sessions a page away, no sideways scrolling at 200 % zoom, a print
layout without the buttons), and mark the session entered in error. Every page passes axe
with no violation of any impact."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from clinic.accounts.models import User
from clinic.db import utcnow
from clinic.extensions import db
from clinic.patients.models import Enrollment
from clinic.therapy import sessions
from clinic.therapy.models import NoteStatus, ProgressNote, TherapySession
from tests.browser.test_patients_browser import load, sign_in

CHICAGO = ZoneInfo("America/Chicago")  # the ``site`` fixture's zone
PAST_SESSIONS = 21  # one more than a history page (reading.HISTORY_PAGE)


@pytest.fixture
def tuesday(app, make_user, make_patient, make_program, make_enrollment):
    """Dan, primary counselor of Ana (21 attended sessions, 2 to 22 days ago) and of Ben
    (last attended 40 days ago: flagged)."""
    program = make_program()
    dan = make_user("clinician", "dan.counselor", full_name="Dan Counselor")
    ana = make_patient("Ana", "Alvarez")
    ben = make_patient("Ben", "Brooks")
    for patient in (ana, ben):
        make_enrollment(patient, program)
    with app.app_context():
        counselor = db.session.get(User, dan)
        for enrollment in db.session.scalars(sa.select(Enrollment)):
            enrollment.primary_counselor_id = dan
        now = utcnow().replace(microsecond=0)
        past = [(ana, now - dt.timedelta(days=days, hours=1)) for days in range(2, 23)]
        for patient, starts_at in [*past, (ben, now - dt.timedelta(days=40))]:
            session = sessions.plan_session(
                actor=counselor,
                plan=sessions.SessionPlan(
                    site_id=counselor.sites[0].id,
                    starts_at=starts_at,
                    duration_minutes=50,
                    kind="individual",
                    modality="cbt",
                    setting="in_person",
                    patient_ids=[patient],
                ),
            )
            sessions.record_session(
                session,
                actor=counselor,
                attendees=[sessions.AttendeeRecord(patient, "attended", 50, None)],
            )
        db.session.commit()
    return {"ana": ana, "ben": ben}


def _press_enter_on(ui, locator) -> None:
    locator.focus()
    load(ui, lambda: ui.page.keyboard.press("Enter"))
    ui.check(all_impacts=True)


def test_a_counselors_tuesday_from_the_keyboard(ui, app, tuesday):
    page = sign_in(ui, "dan.counselor")
    ui.goto("/therapy/", all_impacts=True)

    # Plan yesterday's 10:00 session with Ana (a past session: it can be recorded).
    _press_enter_on(ui, page.get_by_role("link", name="Plan a session"))
    expect(page.get_by_text("In the site's time zone: MAIN")).to_be_visible()
    yesterday = utcnow().astimezone(CHICAGO).date() - dt.timedelta(days=1)
    page.get_by_label("Date").focus()
    page.keyboard.type(yesterday.strftime("%m%d%Y"))
    page.get_by_label("Start time").focus()
    page.keyboard.type("1000AM")
    page.get_by_label("Kind").focus()
    page.keyboard.type("Ind")
    page.get_by_label("Modality").focus()
    page.keyboard.type("Mot")
    page.get_by_label("Setting").focus()
    page.keyboard.type("In")
    page.get_by_label("Alvarez, Ana").focus()
    page.keyboard.press("Space")
    _press_enter_on(ui, page.get_by_role("button", name="Plan the session"))
    expect(page.get_by_text("Session planned.")).to_be_visible()

    # Record it from "Unrecorded past sessions": attended (prefilled), a two-line note,
    # signed at once.
    unrecorded = page.get_by_test_id("unrecorded")
    _press_enter_on(ui, unrecorded.get_by_role("link", name="Record the session of"))
    expect(page.get_by_label("Attendance of Alvarez, Ana")).to_have_value("attended")
    page.get_by_label("Individual note for Alvarez, Ana").focus()
    page.keyboard.type("Talked about the new job.")
    page.keyboard.press("Enter")
    page.keyboard.type("Plan for the weekend agreed.")
    page.keyboard.press("Tab")
    sign = page.get_by_label("Sign the notes now")
    expect(sign).to_be_focused()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    load(ui, lambda: page.keyboard.press("Enter"))
    ui.check(all_impacts=True)
    expect(page.get_by_text("Session recorded.")).to_be_visible()
    expect(page.get_by_test_id("unrecorded")).to_contain_text("Every past session is recorded.")

    # The caseload: Ben flagged; sorted by days since, longest first.
    _press_enter_on(ui, page.get_by_role("link", name="My caseload").last)
    flagged = page.locator("[data-flagged=true]")
    expect(flagged).to_have_count(1)
    expect(flagged).to_contain_text("Brooks, Ben")
    expect(flagged.get_by_test_id("caseload-flag")).to_be_visible()
    _press_enter_on(ui, page.get_by_role("link", name="Days since"))
    _press_enter_on(ui, page.get_by_role("link", name="Days since"))
    expect(page.locator("[data-testid=caseload] tbody tr").first).to_contain_text("Brooks, Ben")

    # Ana's session history: the new session first, its note on two lines.
    _press_enter_on(ui, page.get_by_role("link", name="Sessions of Alvarez, Ana"))
    rows = page.locator("[data-testid=history-table] tr[data-session-id]")
    expect(rows).to_have_count(20)
    note = page.get_by_test_id("history-note").first
    expect(note).to_contain_text("Signed")
    assert "Talked about the new job.\nPlan for the weekend agreed." in note.inner_text()
    newest = rows.first.get_attribute("data-session-id")
    # 200 % zoom (640 CSS pixels): the table scrolls in its own region, not the page.
    page.set_viewport_size({"width": 640, "height": 720})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.set_viewport_size({"width": 1280, "height": 720})
    # Print: no buttons or action links.
    page.emulate_media(media="print")
    expect(page.get_by_role("button", name="Print")).to_be_hidden()
    expect(page.get_by_role("link", name="Older")).to_be_hidden()
    page.emulate_media(media="screen")
    # The 21st session is on the next page; "Newest" comes back.
    _press_enter_on(ui, page.get_by_role("link", name="Older"))
    expect(rows).to_have_count(PAST_SESSIONS + 1 - 20)
    _press_enter_on(ui, page.get_by_role("link", name="Newest"))
    expect(rows.first).to_have_attribute("data-session-id", newest)

    # Mark it entered in error, with a reason; back to the history, struck through.
    _press_enter_on(ui, rows.first.get_by_role("link", name="Entered in error"))
    expect(page.get_by_text("This cannot be undone.")).to_be_visible()
    page.get_by_label("Reason").focus()
    page.keyboard.type("Recorded for the wrong day.")
    page.keyboard.press("Tab")
    load(ui, lambda: page.keyboard.press("Enter"))
    ui.check(all_impacts=True)
    expect(page.get_by_text("Session marked entered in error.")).to_be_visible()
    struck = page.locator(f"tr[data-session-id='{newest}']")
    expect(struck).to_have_class("text-decoration-line-through")
    expect(page.get_by_test_id("session-in-error-reason")).to_contain_text(
        "Recorded for the wrong day."
    )

    with app.app_context():
        session = db.session.get(TherapySession, int(newest))
        assert session.entered_in_error and session.clinician.username == "dan.counselor"
        [note_row] = db.session.scalars(
            sa.select(ProgressNote).where(ProgressNote.session_id == session.id)
        ).all()
        assert note_row.status == NoteStatus.SIGNED
        assert note_row.text == "Talked about the new job.\nPlan for the weekend agreed."
