"""Progress notes (issue 11): drafts with an optimistic version, signing (hash, late
entry), the lock held by the service AND by a trigger on both engines, addenda,
co-signature, entered in error and the group note's name warning (SUD counseling notes:
tests/test_therapy_counseling.py)."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from clinic.audit.models import AuditEvent
from clinic.errors import ConflictError, DomainError
from clinic.extensions import db
from clinic.patients.models import Program
from clinic.therapy import notes
from clinic.therapy.models import NoteAddendum, ProgressNote
from clinic.web import constraint_name
from tests.test_therapy_helpers import hours_ago, plan, therapy_fixture  # noqa: F401


def group(therapy, *, hours: float = 2, duration: int = 60, size: int = 3):
    session = plan(therapy, therapy.patients[:size], starts_at=hours_ago(hours), duration=duration)
    db.session.commit()
    return session


def draft(therapy, session, text="Group practised refusal skills.", actor=None, attendee=None):
    note = notes.save_draft(
        session, actor=therapy.user(actor or therapy.dan), text=text, attendee=attendee
    )
    db.session.commit()
    return note


def signed(therapy, session=None, **kwargs):
    note = draft(therapy, session or group(therapy), **kwargs)
    notes.sign_note(note, actor=therapy.user(kwargs.get("actor") or therapy.dan))
    db.session.commit()
    return note


def sql_refusal(statement: str, **params) -> str | None:
    try:
        db.session.execute(sa.text(statement), params)
        db.session.flush()
    except sa.exc.IntegrityError as error:
        db.session.rollback()
        return constraint_name(error)
    db.session.rollback()
    return None


# --- drafts ---------------------------------------------------------------------------------


def test_a_note_of_more_than_50_kb_is_saved_exactly(therapy):
    text = ("Ligne accentuée — ünïcödé 😀\r\n\tindented\n" * 1600)[:60_000]
    assert len(text.encode("utf-8")) > 50 * 1024
    note = draft(therapy, group(therapy), text=text)
    db.session.expire_all()
    assert db.session.get(ProgressNote, note.id).text == text
    notes.sign_note(db.session.get(ProgressNote, note.id), actor=therapy.user(therapy.dan))
    db.session.commit()
    stored = db.session.get(ProgressNote, note.id)
    assert stored.text_sha256 == hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize(
    "text",
    ["", "   \n ", "NUL \x00 byte", "bidi \u202e override", "x" * 200_001, None],
)
def test_an_empty_or_control_character_or_too_long_note_is_refused(therapy, text):
    session = group(therapy)
    with pytest.raises(DomainError) as refused:
        notes.save_draft(session, actor=therapy.user(therapy.dan), text=text)
    assert refused.value.field == "text"


def test_two_clinicians_editing_one_draft_get_a_conflict_not_an_overwrite(therapy):
    session = group(therapy)
    note = draft(therapy, session, text="first version")
    version_seen_by_both = note.version
    notes.save_draft(
        session,
        actor=therapy.user(therapy.cotherapist),
        text="Cora's version",
        version=version_seen_by_both,
    )
    db.session.commit()
    with pytest.raises(ConflictError):
        notes.save_draft(
            session,
            actor=therapy.user(therapy.dan),
            text="Dan's version",
            version=version_seen_by_both,
        )
    db.session.rollback()
    assert db.session.get(ProgressNote, note.id).text == "Cora's version"


def test_an_edit_without_the_version_is_a_conflict(therapy):
    session = group(therapy)
    draft(therapy, session)
    with pytest.raises(ConflictError):
        notes.save_draft(session, actor=therapy.user(therapy.dan), text="again")


def test_a_clinician_of_another_site_staff_and_admins_cannot_write_notes(therapy, make_user):
    session = group(therapy)
    east = make_user("clinician", site_ids=[therapy.other_site])
    for actor in (east, therapy.staff, therapy.admin):
        with pytest.raises(DomainError, match="Only clinicians"):
            notes.save_draft(session, actor=therapy.user(actor), text="text")


def test_an_individual_sessions_note_belongs_to_its_attendee(therapy):
    session = plan(therapy, therapy.patients[:1], kind="individual")
    with pytest.raises(DomainError, match="belongs to its attendee"):
        notes.save_draft(session, actor=therapy.user(therapy.dan), text="text")
    note = notes.save_draft(
        session, actor=therapy.user(therapy.dan), text="text", attendee=session.attendees[0]
    )
    assert note.attendee_id == session.attendees[0].id


def test_an_attendee_of_another_session_is_refused(therapy):
    first, second = group(therapy, hours=2), group(therapy, hours=5)
    with pytest.raises(DomainError) as refused:
        notes.save_draft(
            first, actor=therapy.user(therapy.dan), text="t", attendee=second.attendees[0]
        )
    assert refused.value.field == "attendee_id"


# --- signing ----------------------------------------------------------------------------------


def test_signing_records_who_when_and_the_sha256_and_locks_the_note(therapy):
    note = signed(therapy)
    assert note.signed_by_id == therapy.dan
    assert note.signed_at is not None
    assert note.text_sha256 == hashlib.sha256(note.text.encode()).hexdigest()
    with pytest.raises(DomainError, match="addendum"):
        notes.save_draft(
            note.session, actor=therapy.user(therapy.dan), text="changed", version=note.version
        )
    with pytest.raises(DomainError, match="already signed"):
        notes.sign_note(note, actor=therapy.user(therapy.dan))


def test_only_the_author_or_the_sessions_clinician_signs(therapy):
    session = group(therapy)
    note = draft(therapy, session, actor=therapy.cotherapist)
    with pytest.raises(DomainError, match="author"):
        notes.sign_note(note, actor=therapy.user(therapy.supervisor))
    notes.sign_note(note, actor=therapy.user(therapy.dan))
    assert note.signed_by_id == therapy.dan


def test_a_session_that_has_not_started_has_no_note_to_sign(therapy):
    session = group(therapy, hours=-2)
    note = draft(therapy, session)
    with pytest.raises(DomainError, match="not started"):
        notes.sign_note(note, actor=therapy.user(therapy.dan))


@pytest.mark.parametrize(("ended_hours_ago", "late"), [(71.9, False), (72.1, True)])
def test_a_note_signed_more_than_72_hours_after_the_session_is_late(therapy, ended_hours_ago, late):
    session = group(therapy, hours=ended_hours_ago + 1, duration=60)
    assert signed(therapy, session).late is late


def test_the_programs_own_late_limit_applies(therapy):
    db.session.get(Program, therapy.program).note_late_hours = 24
    db.session.commit()
    assert signed(therapy, group(therapy, hours=26)).late is True
    assert signed(therapy, group(therapy, hours=24)).late is False


def test_the_database_refuses_a_late_limit_outside_1_to_720_hours(therapy):
    for hours in (0, 721):
        assert (
            sql_refusal("UPDATE program SET note_late_hours = :h", h=hours)
            == "ck_program_note_late_hours_range"
        )


# --- the database lock ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "assignment",
    [
        "text = 'rewritten'",
        "text_sha256 = '" + "0" * 64 + "'",
        "signed_by_id = NULL, signed_at = NULL, text_sha256 = NULL, status = 'draft'",
        "late = NOT late",
        "author_id = author_id + 0, attendee_id = NULL, session_id = session_id + 1",
    ],
)
def test_sql_cannot_change_a_signed_notes_text_hash_or_signer(therapy, assignment):
    note = signed(therapy, text="the signed text")
    refused = sql_refusal(f"UPDATE progress_note SET {assignment} WHERE id = :id", id=note.id)
    assert refused == "progress_note_signed_immutable"
    db.session.expire_all()
    stored = db.session.get(ProgressNote, note.id)
    assert (stored.text, stored.signed_by_id) == ("the signed text", therapy.dan)


def test_sql_cannot_delete_a_note_signed_or_draft(therapy):
    session = group(therapy)
    note = draft(therapy, session)
    assert sql_refusal("DELETE FROM progress_note WHERE id = :id", id=note.id) == (
        "progress_note_no_delete"
    )
    notes.sign_note(note, actor=therapy.user(therapy.dan))
    db.session.commit()
    assert sql_refusal("DELETE FROM progress_note") == "progress_note_no_delete"


def test_sql_may_still_edit_a_draft_and_mark_a_signed_note_in_error_once(therapy):
    note = draft(therapy, group(therapy))
    assert sql_refusal("UPDATE progress_note SET text = 'x' WHERE id = :id", id=note.id) is None
    note = signed(therapy, group(therapy, hours=5))
    mark = (
        "UPDATE progress_note SET entered_in_error_at = CURRENT_TIMESTAMP, "
        "entered_in_error_reason = :r, entered_in_error_by_id = :u WHERE id = :id"
    )
    db.session.execute(sa.text(mark), {"r": "wrong patient chart", "u": therapy.dan, "id": note.id})
    db.session.commit()
    assert (
        sql_refusal(
            "UPDATE progress_note SET entered_in_error_reason = 'other' WHERE id = :id", id=note.id
        )
        == "progress_note_signed_immutable"
    )


@pytest.mark.parametrize(
    ("assignment", "constraint"),
    [
        ("status = 'signed'", "ck_progress_note_signed_complete"),
        ("late = TRUE", "ck_progress_note_late_when_signed"),
        ("cosign_required = TRUE", "ck_progress_note_cosigner_when_required"),
        ("entered_in_error_at = CURRENT_TIMESTAMP", "ck_progress_note_entered_in_error_complete"),
        ("text = ''", "ck_progress_note_text_length"),
    ],
)
def test_the_database_refuses_an_incomplete_draft_row(therapy, assignment, constraint):
    note = draft(therapy, group(therapy))
    refused = sql_refusal(f"UPDATE progress_note SET {assignment} WHERE id = :id", id=note.id)
    assert refused == constraint


def test_one_live_group_note_per_session_in_the_database(therapy):
    note = draft(therapy, group(therapy))
    db.session.add(
        ProgressNote(session_id=note.session_id, author_id=therapy.dan, status="draft", text="t")
    )
    with pytest.raises(sa.exc.IntegrityError) as refused:
        db.session.flush()
    assert constraint_name(refused.value) == "uq_progress_note_live_group"
    db.session.rollback()


# --- addenda ----------------------------------------------------------------------------------


def test_an_addendum_goes_under_a_signed_note_and_is_signed_when_saved(therapy):
    note = signed(therapy)
    addendum = notes.add_addendum(
        note, actor=therapy.user(therapy.cotherapist), text="Typo: 'urge surfing'."
    )
    db.session.commit()
    assert addendum.author_id == therapy.cotherapist
    assert addendum.text_sha256 == hashlib.sha256(b"Typo: 'urge surfing'.").hexdigest()
    assert [a.id for a in note.addenda] == [addendum.id]
    with pytest.raises(DomainError, match="addenda go under signed notes"):
        notes.add_addendum(
            draft(therapy, group(therapy, hours=9)), actor=therapy.user(therapy.dan), text="x"
        )


@pytest.mark.parametrize(
    "statement", ["UPDATE note_addendum SET text = 'rewritten'", "DELETE FROM note_addendum"]
)
def test_sql_cannot_change_or_delete_an_addendum(therapy, statement):
    note = signed(therapy)
    notes.add_addendum(note, actor=therapy.user(therapy.dan), text="correction")
    db.session.commit()
    assert sql_refusal(statement) == "note_addendum_append_only"


# --- co-signature -----------------------------------------------------------------------------


def test_a_trainees_signed_note_waits_for_the_supervisors_cosignature(therapy):
    session = group(therapy)
    note = draft(therapy, session, actor=therapy.trainee)
    notes.sign_note(note, actor=therapy.user(therapy.trainee))
    db.session.commit()
    assert note.cosign_required and note.cosigner_id == therapy.supervisor
    assert note.awaiting_cosignature
    with pytest.raises(DomainError, match="supervisor"):
        notes.cosign_note(note, actor=therapy.user(therapy.dan))
    notes.cosign_note(note, actor=therapy.user(therapy.supervisor))
    db.session.commit()
    assert note.cosigned_at is not None and not note.awaiting_cosignature
    with pytest.raises(DomainError, match="not waiting"):
        notes.cosign_note(note, actor=therapy.user(therapy.supervisor))
    assert (
        sql_refusal("UPDATE progress_note SET cosigned_at = NULL WHERE id = :id", id=note.id)
        == "progress_note_signed_immutable"
    )


def test_a_non_trainees_note_needs_no_cosignature(therapy):
    note = signed(therapy)
    assert not note.cosign_required and note.cosigner_id is None
    with pytest.raises(DomainError):
        notes.cosign_note(note, actor=therapy.user(therapy.supervisor))


def test_a_supervisor_is_an_active_clinician_and_not_oneself(therapy, make_user):
    admin = therapy.user(therapy.admin)
    trainee = therapy.user(therapy.dan)
    for supervisor, message in (
        (therapy.staff, "active clinician"),
        (therapy.dan, "themselves"),
        (make_user("clinician", site_ids=[therapy.other_site]), "sites"),
    ):
        with pytest.raises(DomainError, match=message):
            notes.set_trainee_supervisor(trainee, actor=admin, supervisor=therapy.user(supervisor))
    with pytest.raises(DomainError, match="administrators"):
        notes.set_trainee_supervisor(
            trainee,
            actor=therapy.user(therapy.cotherapist),
            supervisor=therapy.user(therapy.supervisor),
        )
    notes.set_trainee_supervisor(trainee, actor=admin, supervisor=therapy.user(therapy.supervisor))
    db.session.commit()
    assert trainee.is_trainee and trainee.supervisor_id == therapy.supervisor
    notes.set_trainee_supervisor(trainee, actor=admin, supervisor=None)
    assert not trainee.is_trainee and trainee.supervisor_id is None


@pytest.mark.parametrize(
    ("who", "assignment", "constraint"),
    [
        ("trainee", "supervisor_id = id", "ck_app_user_supervisor_not_self"),
        ("dan", "is_trainee = TRUE", "ck_app_user_trainee_has_supervisor"),
        ("trainee", "is_trainee = FALSE", "ck_app_user_supervisor_for_trainee"),
        (
            "staff",
            "is_trainee = TRUE, supervisor_id = :other",
            "ck_app_user_trainee_has_supervisor",
        ),
    ],
)
def test_the_database_refuses_an_inconsistent_trainee(therapy, who, assignment, constraint):
    refused = sql_refusal(
        f"UPDATE app_user SET {assignment} WHERE id = :id",
        id=getattr(therapy, who),
        other=therapy.supervisor,
    )
    assert refused == constraint


# --- entered in error -------------------------------------------------------------------------


def test_a_note_entered_in_error_keeps_its_row_and_frees_its_place(therapy):
    note = signed(therapy)
    with pytest.raises(DomainError) as refused:
        notes.mark_entered_in_error(note, actor=therapy.user(therapy.dan), reason="short")
    assert refused.value.field == "reason"
    with pytest.raises(DomainError, match="author"):
        notes.mark_entered_in_error(
            note, actor=therapy.user(therapy.cotherapist), reason="written for the wrong group"
        )
    notes.mark_entered_in_error(
        note, actor=therapy.user(therapy.dan), reason="written for the wrong group"
    )
    db.session.commit()
    assert note.entered_in_error and note.text  # kept, shown struck through
    with pytest.raises(DomainError, match="already"):
        notes.mark_entered_in_error(note, actor=therapy.user(therapy.dan), reason="again, twice")
    with pytest.raises(DomainError, match="entered in error"):
        notes.add_addendum(note, actor=therapy.user(therapy.dan), text="x")
    replacement = draft(therapy, note.session, text="The right note.")
    assert replacement.id != note.id


def test_a_session_entered_in_error_takes_no_more_notes(therapy):
    session = group(therapy)
    with pytest.raises(DomainError, match="clinician"):
        notes.mark_entered_in_error(
            session, actor=therapy.user(therapy.cotherapist), reason="planned twice by mistake"
        )
    notes.mark_entered_in_error(
        session, actor=therapy.user(therapy.dan), reason="planned twice by mistake"
    )
    db.session.commit()
    with pytest.raises(DomainError, match="entered in error"):
        notes.save_draft(session, actor=therapy.user(therapy.dan), text="text")


# --- audit and the name warning ------------------------------------------------------------------


def test_note_changes_are_audited_per_patient_without_the_text(therapy):
    session = group(therapy, size=3)
    note = draft(therapy, session, text="SECRETWORD in the group note")
    notes.sign_note(note, actor=therapy.user(therapy.dan))
    notes.add_addendum(note, actor=therapy.user(therapy.dan), text="SECRETWORD again")
    db.session.commit()
    events = list(
        db.session.scalars(sa.select(AuditEvent).where(AuditEvent.entity_type == "progress_note"))
    )
    assert {e.action for e in events} == {"create", "sign", "addendum"}
    assert {e.patient_id for e in events} == set(therapy.patients[:3])
    assert all("SECRETWORD" not in (e.details or "") for e in events)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(NoteAddendum)) == 1


def test_a_group_note_naming_an_attendee_warns_with_their_names(therapy):
    session = group(therapy, size=5)
    warnings = notes.group_note_name_warnings(
        session, "Ben shared first; nunez and PETROV listened. Cleopatra was mentioned."
    )
    assert warnings == ["Brooks, Ben", "Petrov, Dmitri", "Núñez, Esme"]
    assert notes.group_note_name_warnings(session, "Петров spoke.") == ["Petrov, Dmitri"]
    assert notes.group_note_name_warnings(session, "The group practised skills.") == []
    # Hugo is not in this group: his name in the text is not an attendee's.
    assert notes.group_note_name_warnings(session, "Hugo") == []
