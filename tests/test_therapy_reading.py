"""The read side the therapy pages will use (issue 11): a clinician's day, the note
queues, the caseload and a patient's session history — its privacy between the members
of a group, its keyset pages, and a constant number of SQL statements for each."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clinic.db import utcnow
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.patients.models import Enrollment, Patient
from clinic.therapy import notes, reading, sessions
from clinic.therapy.sessions import AttendeeRecord
from tests.test_therapy_helpers import (
    count_statements,
    hours_ago,
    plan,
    therapy_fixture,  # noqa: F401
)

CHICAGO = ZoneInfo("America/Chicago")


def recorded_group(therapy, patient_ids, *, hours: float, own_notes: dict[int, str] | None = None):
    """A group Dan ran ``hours`` ago, recorded with everyone attending, signed notes."""
    session = plan(therapy, patient_ids, starts_at=hours_ago(hours))
    own_notes = own_notes or {}
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[AttendeeRecord(p, "attended", 60, own_notes.get(p)) for p in patient_ids],
        group_note=f"Group note of the session {hours} hours ago.",
        sign=True,
    )
    db.session.commit()
    return session


# --- a patient's history: privacy -------------------------------------------------------------


def test_a_patients_history_shows_the_group_note_and_only_their_own_note(therapy):
    a, b, c = therapy.patients[:3]
    recorded_group(
        therapy,
        [a, b, c],
        hours=3,
        own_notes={a: "NOTE-FOR-A: making progress.", b: "NOTE-FOR-B: relapsed Friday."},
    )
    page = reading.patient_history(db.session.get(Patient, a), viewer=therapy.user(therapy.dan))
    [row] = page.rows
    assert row.group_note.text == "Group note of the session 3 hours ago."
    assert row.own_note.text == "NOTE-FOR-A: making progress."
    shown = repr(page)
    for other in (b, c):
        patient = db.session.get(Patient, other)
        assert patient.first_name not in shown and patient.last_name not in shown
        assert f"patient_id={other}" not in shown
    assert "NOTE-FOR-B" not in shown
    # B's own history holds B's note and never A's.
    b_page = repr(
        reading.patient_history(db.session.get(Patient, b), viewer=therapy.user(therapy.dan))
    )
    assert "NOTE-FOR-B" in b_page and "NOTE-FOR-A" not in b_page
    # C has no note of their own: the group note only.
    [c_row] = reading.patient_history(
        db.session.get(Patient, c), viewer=therapy.user(therapy.dan)
    ).rows
    assert c_row.own_note is None and c_row.group_note is not None


def test_staff_and_administrators_see_the_session_facts_never_the_note_text(therapy):
    a = therapy.patients[0]
    recorded_group(therapy, [a, therapy.patients[1]], hours=3, own_notes={a: "TEXT-OF-A"})
    for viewer in (therapy.staff, therapy.admin):
        page = reading.patient_history(db.session.get(Patient, a), viewer=therapy.user(viewer))
        [row] = page.rows
        assert (row.attendance, row.minutes_attended, row.kind) == ("attended", 60, "group")
        assert row.clinician_name == "Dan Counselor"
        assert row.group_note is None and row.own_note is None
        assert "TEXT-OF-A" not in repr(page) and "Group note" not in repr(page)


def test_addenda_show_under_the_patients_own_note(therapy):
    a = therapy.patients[0]
    session = recorded_group(therapy, [a], hours=3, own_notes={a: "own"})
    own = next(n for n in notes.live_notes_of(session) if n.attendee_id is not None)
    notes.add_addendum(own, actor=therapy.user(therapy.dan), text="Correction: Tuesday.")
    db.session.commit()
    [row] = reading.patient_history(
        db.session.get(Patient, a), viewer=therapy.user(therapy.dan)
    ).rows
    assert [ad.text for ad in row.own_note.addenda] == ["Correction: Tuesday."]
    assert row.group_note.addenda == []


def test_the_history_is_keyset_paginated_newest_first(therapy):
    a = therapy.patients[0]
    for i in range(25):
        plan(therapy, [a], kind="individual", starts_at=hours_ago(1 + i))
    db.session.commit()
    patient = db.session.get(Patient, a)
    first = reading.patient_history(patient, viewer=therapy.user(therapy.dan))
    assert len(first.rows) == 20 and first.next_cursor is not None
    second = reading.patient_history(
        patient, viewer=therapy.user(therapy.dan), after=first.next_cursor
    )
    assert len(second.rows) == 5 and second.next_cursor is None
    starts = [r.starts_at for r in first.rows + second.rows]
    assert starts == sorted(starts, reverse=True)
    assert len({r.session_id for r in first.rows + second.rows}) == 25


def test_the_history_runs_a_constant_number_of_statements(therapy):
    a = therapy.patients[0]
    patient_id = a

    def statements_for_history(viewer) -> int:
        db.session.expire_all()
        patient = db.session.get(Patient, patient_id)
        with count_statements() as statements:
            reading.patient_history(patient, viewer=therapy.user(viewer))
        return len(statements)

    recorded_group(therapy, therapy.patients[:3], hours=3, own_notes={a: "one"})
    few = (statements_for_history(therapy.dan), statements_for_history(therapy.staff))
    for hours in range(4, 16):
        recorded_group(therapy, therapy.patients[:5], hours=hours, own_notes={a: f"n{hours}"})
    many = (statements_for_history(therapy.dan), statements_for_history(therapy.staff))
    assert few == many
    assert many[0] <= 4 and many[1] <= 2


def test_the_attendance_rate_counts_no_shows_but_not_clinic_cancellations(therapy):
    a = therapy.patients[0]
    for hours, attendance in ((3, "attended"), (6, "no_show"), (9, "cancelled_by_clinic")):
        session = plan(therapy, [a], kind="individual", starts_at=hours_ago(hours))
        minutes = 60 if attendance == "attended" else None
        sessions.record_session(
            session,
            actor=therapy.user(therapy.dan),
            attendees=[AttendeeRecord(a, attendance, minutes)],
        )
    db.session.commit()
    assert reading.patient_attendance_rate(db.session.get(Patient, a)) == (1, 2)


# --- my day -----------------------------------------------------------------------------------


def test_the_day_schedule_uses_the_sites_day(therapy):
    day = dt.date(2026, 6, 9)
    late_evening = dt.datetime(2026, 6, 9, 23, 30, tzinfo=CHICAGO)  # 04:30 UTC on the 10th
    early = dt.datetime(2026, 6, 9, 0, 15, tzinfo=CHICAGO)
    next_day = dt.datetime(2026, 6, 10, 0, 15, tzinfo=CHICAGO)
    for i, moment in enumerate((late_evening, early, next_day)):
        plan(therapy, [therapy.patients[i]], kind="individual", starts_at=moment.astimezone(dt.UTC))
    db.session.commit()
    entries = reading.day_schedule(therapy.user(therapy.dan), day)
    assert [e.local_start.hour for e in entries] == [0, 23]
    assert all(e.unrecorded for e in entries)  # planned and in the past
    assert reading.day_schedule(therapy.user(therapy.cotherapist), day) == []


def test_the_day_schedule_runs_a_constant_number_of_statements(therapy):
    today = utcnow().astimezone(CHICAGO).date()
    noon = dt.datetime.combine(today, dt.time(12), tzinfo=CHICAGO).astimezone(dt.UTC)

    def statements() -> tuple[int, int]:
        db.session.expire_all()
        dan = therapy.user(therapy.dan)
        with count_statements() as seen:
            entries = reading.day_schedule(dan, today)
            reading.unrecorded_sessions(dan)
            reading.unsigned_notes(dan)
            reading.cosign_queue(dan)
        return len(seen), len(entries)

    plan(therapy, therapy.patients[:2], starts_at=noon)
    db.session.commit()
    few, one = statements()
    for i in range(1, 6):
        plan(therapy, therapy.patients[: i + 1], starts_at=noon + dt.timedelta(minutes=30 * i))
    db.session.commit()
    many, six = statements()
    assert (one, six) == (1, 6)
    assert few == many


def test_unsigned_notes_oldest_first_and_the_cosignature_queue(therapy):
    older = plan(therapy, therapy.patients[:2], starts_at=hours_ago(30))
    newer = plan(therapy, therapy.patients[:2], starts_at=hours_ago(3))
    dan = therapy.user(therapy.dan)
    newer_note = notes.save_draft(newer, actor=dan, text="newer")
    older_note = notes.save_draft(older, actor=dan, text="older")
    db.session.commit()
    queue = reading.unsigned_notes(dan)
    assert [e.note_id for e in queue] == [older_note.id, newer_note.id]
    notes.sign_note(older_note, actor=dan)
    db.session.commit()
    assert [e.note_id for e in reading.unsigned_notes(dan)] == [newer_note.id]

    trainee = therapy.user(therapy.trainee)
    session = plan(therapy, therapy.patients[:1], kind="individual", starts_at=hours_ago(5))
    note = notes.save_draft(session, actor=trainee, text="t", attendee=session.attendees[0])
    notes.sign_note(note, actor=trainee)
    db.session.commit()
    supervisor = therapy.user(therapy.supervisor)
    assert [e.note_id for e in reading.cosign_queue(supervisor)] == [note.id]
    notes.cosign_note(note, actor=supervisor)
    db.session.commit()
    assert reading.cosign_queue(supervisor) == []


# --- caseload -----------------------------------------------------------------------------------


def counsel(therapy, patient_ids):
    for enrollment in db.session.scalars(
        sa.select(Enrollment).where(Enrollment.patient_id.in_(patient_ids))
    ):
        enrollment.primary_counselor_id = therapy.dan
    db.session.commit()


def test_the_caseload_shows_last_attended_days_since_rate_and_the_30_day_flag(therapy):
    a, b, c = therapy.patients[:3]
    counsel(therapy, [a, b, c])
    recent = plan(therapy, [a, b], starts_at=hours_ago(48))
    sessions.record_session(
        recent,
        actor=therapy.user(therapy.dan),
        attendees=[AttendeeRecord(a, "attended", 60), AttendeeRecord(b, "no_show")],
    )
    # 34 days: always a month before the recent one (31 days was the same month on
    # 1 January: 30 December and 1 December).
    old = plan(therapy, [b], kind="individual", starts_at=hours_ago(24 * 34))
    sessions.record_session(
        old, actor=therapy.user(therapy.dan), attendees=[AttendeeRecord(b, "late", 30)]
    )
    db.session.commit()
    month_of_recent = recent.starts_at.date()  # the old session is in an earlier month
    rows = {
        r.patient_id: r
        for r in reading.caseload(therapy.user(therapy.dan), today=month_of_recent, timezone="UTC")
    }
    assert set(rows) == {a, b, c}
    assert rows[a].days_since == 2 and not rows[a].flagged
    assert rows[b].days_since == 34 and rows[b].flagged
    assert rows[c].last_attended_at is None and rows[c].flagged
    assert (rows[a].month_rate, rows[b].month_rate, rows[c].month_rate) == (1.0, 0.0, None)
    assert (
        reading.caseload(therapy.user(therapy.cotherapist), today=utcnow().date(), timezone="UTC")
        == []
    )


def test_the_caseload_sorts_by_name_days_or_rate(therapy):
    counsel(therapy, therapy.patients[:3])
    dan = therapy.user(therapy.dan)
    today = utcnow().date()
    names = [r.display_name for r in reading.caseload(dan, today=today, timezone="UTC")]
    assert names == sorted(names, key=str.casefold)
    by_name_desc = reading.caseload(dan, today=today, timezone="UTC", descending=True)
    assert [r.display_name for r in by_name_desc] == names[::-1]
    assert len(reading.caseload(dan, today=today, timezone="UTC", sort="days")) == 3


def test_the_caseload_runs_a_constant_number_of_statements(therapy):
    def statements() -> int:
        db.session.expire_all()
        dan = therapy.user(therapy.dan)
        with count_statements() as seen:
            reading.caseload(dan, today=utcnow().date(), timezone="UTC")
        return len(seen)

    counsel(therapy, therapy.patients[:1])
    few = statements()
    counsel(therapy, therapy.patients)
    for hours in (3, 6, 9):
        recorded_group(therapy, therapy.patients, hours=hours)
    assert statements() == few == 3


def test_a_deactivated_clinicians_drafts_are_listed_for_an_administrator_to_reassign(
    therapy, make_user
):
    session = plan(therapy, therapy.patients[:2], starts_at=hours_ago(3))
    note = notes.save_draft(session, actor=therapy.user(therapy.cotherapist), text="draft")
    db.session.commit()
    admin = therapy.user(therapy.admin)
    assert reading.drafts_of_inactive_clinicians(admin) == []
    therapy.user(therapy.cotherapist).active = False
    db.session.commit()
    assert [e.note_id for e in reading.drafts_of_inactive_clinicians(admin)] == [note.id]
    east_admin = therapy.user(make_user("admin", site_ids=[therapy.other_site]))
    assert reading.drafts_of_inactive_clinicians(east_admin) == []
    with pytest.raises(DomainError, match="administrators"):
        notes.reassign_draft(note, actor=east_admin, author=therapy.user(therapy.dan))
    with pytest.raises(DomainError) as refused:
        notes.reassign_draft(note, actor=admin, author=therapy.user(therapy.staff))
    assert refused.value.field == "author_id"
    notes.reassign_draft(note, actor=admin, author=therapy.user(therapy.dan))
    db.session.commit()
    assert note.author_id == therapy.dan
    assert reading.drafts_of_inactive_clinicians(admin) == []
    assert note.text == "draft"
