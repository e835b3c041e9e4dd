"""SUD counseling notes (issue 11; 42 CFR 2.11): written about one attendee, signed at save,
append-only; read by their author and the clinicians the session's site allows (a grant an
administrator of the site gives and revokes, never deletes); every read audited; never in
an export or print of the chart."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.errors import DomainError
from clinic.extensions import db
from clinic.sites.models import Site
from clinic.therapy import counseling, notes
from clinic.therapy.models import CounselingNote, CounselingNoteReader
from clinic.web import constraint_name
from tests.conftest import Client, login
from tests.test_therapy_helpers import (
    hours_ago,
    plan,
    therapy_fixture,  # noqa: F401
)

MARKER = "ZEBRAQUOKKA"
TOKEN_RE = re.compile(r'name="submission_token"[^>]*? value="([^"]+)"')
CSRF_RE = re.compile(r'name="csrf_token"[^>]*? value="([^"]+)"')


class FreshClient(Client):
    """Each request in an app context of its own (the ``therapy`` fixture holds one)."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture(name="as_user")
def as_user_fixture(app, username_of):
    def make(user_id: int) -> FreshClient:
        client = FreshClient(app, app.response_class, use_cookies=True)
        assert login(client, username_of(user_id)).status_code == 302
        return client

    return make


def group(therapy, *, hours: float = 2, size: int = 3):
    session = plan(therapy, therapy.patients[:size], starts_at=hours_ago(hours))
    db.session.commit()
    return session


def write(therapy, session=None, text=f"Analysis {MARKER}", actor=None, index=0):
    session = session or group(therapy)
    note = counseling.add_counseling_note(
        session.attendees[index], actor=therapy.user(actor or therapy.dan), text=text
    )
    db.session.commit()
    return note


def grant(therapy, user_id, site_id=None, actor=None):
    made = counseling.grant_reader(
        db.session.get(Site, site_id or therapy.site),
        therapy.user(user_id),
        actor=therapy.user(actor or therapy.admin),
    )
    db.session.commit()
    return made


def events(entity_type="counseling_note") -> list[AuditEvent]:
    return list(
        db.session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.entity_type == entity_type)
            .order_by(AuditEvent.seq)
        )
    )


def sql_refusal(statement: str) -> str | None:
    try:
        db.session.execute(sa.text(statement))
        db.session.flush()
    except sa.exc.IntegrityError as error:
        db.session.rollback()
        return constraint_name(error)
    db.session.rollback()
    return None


def _form(client, url: str) -> dict:
    html = client.get(url).get_data(as_text=True)
    data = {"csrf_token": CSRF_RE.search(html).group(1)}
    if token := TOKEN_RE.search(html):
        data["submission_token"] = token.group(1)
    return data


def _count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def _write_url(session, attendee) -> str:
    return f"/therapy/sessions/{session.id}/attendees/{attendee.id}/counseling-note"


# --- who reads -------------------------------------------------------------------------------


def test_a_counseling_note_is_read_by_its_author_and_every_read_is_audited(therapy):
    session = group(therapy)
    attendee = session.attendees[0]
    note = write(therapy, session)
    assert counseling.read_counseling_note(note.id, actor=therapy.user(therapy.dan)) is note
    for other in (therapy.cotherapist, therapy.admin, therapy.staff):
        assert counseling.read_counseling_note(note.id, actor=therapy.user(other)) is None
    db.session.commit()
    found = events()
    assert [e.action for e in found] == [
        "create",
        "view",
        "access_denied",
        "access_denied",
        "access_denied",
    ]
    assert all(e.patient_id == attendee.patient_id for e in found)
    assert all(e.site_id == therapy.site for e in found)
    assert all(MARKER not in (e.details or "") for e in found)
    assert counseling.counseling_notes_of(session, actor=therapy.user(therapy.dan)) == [
        (note.id, attendee.patient_id)
    ]
    assert counseling.counseling_notes_of(session, actor=therapy.user(therapy.cotherapist)) == []


def test_a_clinician_the_site_allows_reads_until_the_grant_is_revoked(therapy):
    note = write(therapy)
    cora = therapy.user(therapy.cotherapist)
    reader = grant(therapy, therapy.cotherapist)
    assert counseling.read_counseling_note(note.id, actor=cora) is note
    assert counseling.readable_count(note.patient_id, actor=cora) == 1
    counseling.revoke_reader(reader, actor=therapy.user(therapy.admin))
    db.session.commit()
    assert counseling.read_counseling_note(note.id, actor=cora) is None
    assert counseling.readable_count(note.patient_id, actor=cora) == 0
    assert counseling.counseling_notes_of(note.session, actor=cora) == []
    db.session.commit()
    assert [e.action for e in events()][-2:] == ["view", "access_denied"]
    assert [e.action for e in events("counseling_note_reader")] == ["create", "update"]


def test_a_grant_holder_who_no_longer_works_at_the_site_reads_nothing(therapy):
    note = write(therapy)
    grant(therapy, therapy.cotherapist)
    cora = therapy.user(therapy.cotherapist)
    cora.sites = [db.session.get(Site, therapy.other_site)]
    db.session.commit()
    assert counseling.read_counseling_note(note.id, actor=cora) is None
    assert counseling.readable_count(note.patient_id, actor=cora) == 0


def test_a_grant_at_another_site_reads_nothing_here(therapy, make_user):
    note = write(therapy)
    east_admin = make_user("admin", site_ids=[therapy.other_site])
    cora = therapy.user(therapy.cotherapist)
    cora.sites = [db.session.get(Site, therapy.site), db.session.get(Site, therapy.other_site)]
    db.session.commit()
    grant(therapy, therapy.cotherapist, site_id=therapy.other_site, actor=east_admin)
    assert counseling.read_counseling_note(note.id, actor=cora) is None


def test_a_deactivated_author_reads_nothing(therapy):
    note = write(therapy)
    dan = therapy.user(therapy.dan)
    dan.active = False
    db.session.commit()
    assert counseling.read_counseling_note(note.id, actor=dan) is None


# --- writing ---------------------------------------------------------------------------------


def test_a_counseling_note_of_more_than_50_kb_is_saved_exactly_and_signed(therapy):
    text = ("Ligne accentuée — ünïcödé 😀\n\tindented\n" * 1600)[:60_000]
    assert len(text.encode("utf-8")) > 50 * 1024
    note = write(therapy, text=text)
    db.session.expire_all()
    stored = db.session.get(CounselingNote, note.id)
    assert stored.text == text
    assert stored.text_sha256 == __import__("hashlib").sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("text", ["", "  \n", "NUL \x00 byte", "bidi \u202e", "x" * 200_001, None])
def test_an_empty_or_control_character_or_too_long_counseling_note_is_refused(therapy, text):
    session = group(therapy)
    with pytest.raises(DomainError) as refused:
        counseling.add_counseling_note(
            session.attendees[0], actor=therapy.user(therapy.dan), text=text
        )
    assert refused.value.field == "text"


def test_only_a_clinician_of_the_site_writes_about_a_session_that_happened(therapy):
    session = group(therapy)
    attendee = session.attendees[0]
    for other in (therapy.admin, therapy.staff):
        with pytest.raises(DomainError, match="Only clinicians"):
            counseling.add_counseling_note(attendee, actor=therapy.user(other), text="t")
    future = plan(therapy, [therapy.patients[4]], kind="individual", starts_at=hours_ago(-24))
    with pytest.raises(DomainError, match="not started"):
        counseling.add_counseling_note(
            future.attendees[0], actor=therapy.user(therapy.dan), text="t"
        )
    notes.mark_entered_in_error(
        session, actor=therapy.user(therapy.dan), reason="planned twice by mistake"
    )
    db.session.commit()
    with pytest.raises(DomainError, match="entered in error"):
        counseling.add_counseling_note(attendee, actor=therapy.user(therapy.dan), text="t")


def test_no_counseling_note_about_an_attendee_recorded_absent(therapy):
    from clinic.therapy import sessions

    session = group(therapy, size=2)
    first, second = therapy.patients[:2]
    sessions.record_session(
        session,
        actor=therapy.user(therapy.dan),
        attendees=[
            sessions.AttendeeRecord(first, "no_show"),
            sessions.AttendeeRecord(second, "late", 40),
        ],
    )
    db.session.commit()
    with pytest.raises(DomainError, match="no-show") as refused:
        write(therapy, session, index=0)
    assert refused.value.field == "text"
    assert write(therapy, session, index=1).patient_id == second


@pytest.mark.parametrize(
    "statement", ["UPDATE counseling_note SET text = 'x'", "DELETE FROM counseling_note"]
)
def test_sql_cannot_change_or_delete_a_counseling_note(therapy, statement):
    write(therapy, text="t")
    assert sql_refusal(statement) == "counseling_note_append_only"
    assert _count(CounselingNote) == 1


# --- grants ----------------------------------------------------------------------------------


def test_only_an_active_clinician_of_the_site_is_granted_once(therapy, make_user):
    site = db.session.get(Site, therapy.site)
    admin = therapy.user(therapy.admin)
    elsewhere = make_user("clinician", site_ids=[therapy.other_site])
    for user_id in (therapy.staff, therapy.admin, elsewhere):
        with pytest.raises(DomainError) as refused:
            counseling.grant_reader(site, therapy.user(user_id), actor=admin)
        assert refused.value.field == "user_id"
    with pytest.raises(DomainError):
        counseling.grant_reader(site, None, actor=admin)
    grant(therapy, therapy.cotherapist)
    with pytest.raises(DomainError, match="already reads"):
        counseling.grant_reader(site, therapy.user(therapy.cotherapist), actor=admin)
    assert counseling.grantable_clinicians(therapy.site) == [
        therapy.user(u)
        for u in sorted(
            (therapy.dan, therapy.supervisor, therapy.trainee),
            key=lambda u: therapy.user(u).full_name,
        )
    ]


def test_only_an_administrator_of_the_site_grants_and_revokes(therapy, make_user):
    site = db.session.get(Site, therapy.site)
    east_admin = therapy.user(make_user("admin", site_ids=[therapy.other_site]))
    for actor in (east_admin, therapy.user(therapy.dan), therapy.user(therapy.staff)):
        with pytest.raises(DomainError, match="administrator of this site"):
            counseling.grant_reader(site, therapy.user(therapy.cotherapist), actor=actor)
    reader = grant(therapy, therapy.cotherapist)
    with pytest.raises(DomainError, match="administrator of this site"):
        counseling.revoke_reader(reader, actor=east_admin)
    counseling.revoke_reader(reader, actor=therapy.user(therapy.admin))
    db.session.commit()
    with pytest.raises(DomainError, match="already revoked"):
        counseling.revoke_reader(reader, actor=therapy.user(therapy.admin))
    # Revoked, then granted again: a new row, the old one kept.
    grant(therapy, therapy.cotherapist)
    assert _count(CounselingNoteReader) == 2


def test_the_database_keeps_one_live_grant_and_never_deletes_or_rewrites_one(therapy):
    reader = grant(therapy, therapy.cotherapist)
    columns = "site_id, user_id, granted_by_id, granted_at"
    values = f"{therapy.site}, {therapy.cotherapist}, {therapy.admin}, CURRENT_TIMESTAMP"
    assert (
        sql_refusal(f"INSERT INTO counseling_note_reader ({columns}) VALUES ({values})")
        == "uq_counseling_note_reader_live"
    )
    rule = "counseling_note_reader_grant_immutable"
    assert sql_refusal("DELETE FROM counseling_note_reader") == rule
    assert sql_refusal(f"UPDATE counseling_note_reader SET user_id = {therapy.dan}") == rule
    assert sql_refusal("UPDATE counseling_note_reader SET revoked_at = granted_at") is not None
    counseling.revoke_reader(reader, actor=therapy.user(therapy.admin))
    db.session.commit()
    assert sql_refusal("UPDATE counseling_note_reader SET revoked_at = NULL") is not None
    assert sql_refusal(f"UPDATE counseling_note_reader SET revoked_by_id = {therapy.dan}") == rule
    assert _count(CounselingNoteReader) == 1


# --- the URL rules' variables for the suites that walk every endpoint ------------------------


def counseling_route_records(app, records: dict[str, int], make_user) -> dict[str, int]:
    """The counseling endpoints' variables, from ``route_records``' session (tomorrow's, by
    another clinician of MAIN): its attendee, a counseling note of it (written straight
    into the table: the service refuses a session that has not started) and a live grant
    of the site to that clinician (given by a MAIN administrator)."""
    from clinic.therapy.models import TherapySession, sha256_text

    admin = make_user("admin", full_name="Route Administrator")
    with app.app_context():
        session = db.session.get(TherapySession, records["session_id"])
        attendee = session.attendees[0]
        note = CounselingNote(
            session_id=session.id,
            attendee_id=attendee.id,
            patient_id=attendee.patient_id,
            author_id=session.clinician_id,
            text="Matrix counseling note.",
            text_sha256=sha256_text("Matrix counseling note."),
        )
        reader = db.session.scalar(
            sa.select(CounselingNoteReader).where(
                CounselingNoteReader.site_id == session.site_id,
                CounselingNoteReader.user_id == session.clinician_id,
                CounselingNoteReader.revoked_at.is_(None),
            )
        ) or CounselingNoteReader(
            site_id=session.site_id, user_id=session.clinician_id, granted_by_id=admin
        )
        db.session.add_all([note, reader])
        db.session.commit()
        return {
            "attendee_id": attendee.id,
            "counseling_note_id": note.id,
            "site_id": session.site_id,
            "reader_id": reader.id,
        }
