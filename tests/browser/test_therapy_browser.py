"""Recording a group session from a real browser, keyboard only (issue 11): a counselor
opens the unrecorded seven-person group from "My day", marks the one no-show, writes the
group note and one attendee's own note, ticks "sign now" and records it all in one pass.
Every page passes axe."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from clinic.accounts.models import User
from clinic.extensions import db
from clinic.therapy import sessions
from clinic.therapy.models import NoteStatus, ProgressNote, TherapySession
from tests.browser.test_patients_browser import load, sign_in

NAMES = [
    ("Ana", "Alvarez"),
    ("Ben", "Brooks"),
    ("Cleo", "Castillo"),
    ("Dmitri", "Petrov"),
    ("Esme", "Nunez"),
    ("Farid", "Haddad"),
    ("Gwen", "Okafor"),
]


@pytest.fixture
def group(app, site, make_user, make_patient, make_program, make_enrollment):
    program = make_program()
    counselor = make_user("clinician", "dan.counselor", full_name="Dan Counselor")
    patients = []
    for first, last in NAMES:
        patient = make_patient(first, last)
        make_enrollment(patient, program)
        patients.append(patient)
    with app.app_context():
        planned = sessions.plan_session(
            actor=db.session.get(User, counselor),
            plan=sessions.SessionPlan(
                site_id=site,
                starts_at=dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1),
                duration_minutes=90,
                kind="group",
                modality="relapse_prevention",
                setting="in_person",
                patient_ids=patients,
                group_name="Tuesday relapse prevention",
            ),
        )
        db.session.commit()
        return {"session": planned.id, "patients": patients}


def test_a_seven_person_group_is_recorded_and_signed_from_the_keyboard(ui, app, group):
    page = sign_in(ui, "dan.counselor")
    ui.goto("/therapy/")
    record = page.get_by_role("link", name="Record the session of")
    expect(record).to_have_count(1)
    record.focus()
    load(ui, lambda: page.keyboard.press("Enter"))
    ui.check()
    expect(page.get_by_role("heading", name="Record the session")).to_be_visible()
    # Petrov did not come: attendance "No-show" typed into the select, minutes cleared.
    attendance = page.get_by_label("Attendance of Petrov, Dmitri")
    attendance.focus()
    page.keyboard.type("No")
    expect(attendance).to_have_value("no_show")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Minutes attended by Petrov, Dmitri")).to_be_focused()
    page.keyboard.press("Control+a")
    page.keyboard.press("Backspace")
    page.get_by_label("Individual note for Alvarez, Ana").focus()
    page.keyboard.type("Talked about her new job.")
    page.get_by_label("Group note").focus()
    page.keyboard.type("Worked through high-risk situations and coping plans.")
    page.keyboard.press("Tab")  # past the note's help text to the check box
    sign = page.get_by_label("Sign the notes now")
    expect(sign).to_be_focused()
    page.keyboard.press("Space")
    expect(sign).to_be_checked()
    page.keyboard.press("Tab")
    load(ui, lambda: page.keyboard.press("Enter"))
    ui.check()
    expect(page.get_by_text("Session recorded.")).to_be_visible()
    expect(page.get_by_test_id("unrecorded")).to_contain_text("Every past session is recorded.")
    expect(page.get_by_test_id("unsigned")).to_contain_text("No unsigned note.")
    with app.app_context():
        session = db.session.get(TherapySession, group["session"])
        attendance = {a.patient_id: (a.attendance, a.minutes_attended) for a in session.attendees}
        petrov = group["patients"][3]
        assert attendance[petrov] == ("no_show", None)
        assert all(v == ("attended", 90) for k, v in attendance.items() if k != petrov)
        saved = db.session.scalars(sa.select(ProgressNote)).all()
        assert len(saved) == 2 and {n.status for n in saved} == {NoteStatus.SIGNED}


def test_unsigned_notes_are_signed_from_my_day_with_the_keyboard(ui, app, group):
    with app.app_context():
        session = db.session.get(TherapySession, group["session"])
        sessions.record_session(
            session,
            actor=session.clinician,
            attendees=[
                sessions.AttendeeRecord(p, "attended", 90, "Own note." if i == 0 else None)
                for i, p in enumerate(group["patients"])
            ],
            group_note="The group's note.",
        )
        db.session.commit()
    page = sign_in(ui, "dan.counselor")
    ui.goto("/therapy/")
    for _ in range(2):
        link = page.get_by_test_id("unsigned").get_by_role("link").first
        link.focus()
        load(ui, lambda: page.keyboard.press("Enter"))
        ui.check()
        sign = page.get_by_role("link", name="Sign…")
        sign.focus()
        load(ui, lambda: page.keyboard.press("Enter"))
        ui.check()
        expect(page.get_by_text("Once signed, the note is locked")).to_be_visible()
        page.get_by_role("button", name="Sign the note").focus()
        load(ui, lambda: page.keyboard.press("Enter"))
        ui.check()
        expect(page.get_by_text("Note signed.")).to_be_visible()
        ui.goto("/therapy/")
    expect(page.get_by_test_id("unsigned")).to_contain_text("No unsigned note.")
    with app.app_context():
        saved = db.session.scalars(sa.select(ProgressNote)).all()
        assert len(saved) == 2 and {n.status for n in saved} == {NoteStatus.SIGNED}
