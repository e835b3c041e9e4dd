"""Administrators and therapy (issue 11): trainees and their supervisors on the user form,
the drafts of deactivated clinicians and their reassignment, ``flask seed-demo``'s therapy
week (the record form's attendee rows: tests/test_therapy_record_rows.py)."""

from __future__ import annotations

import html as html_module
import itertools
import re
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask.testing import FlaskCliRunner

from clinic.accounts import services as account_services
from clinic.accounts.models import User
from clinic.audit.models import AuditEvent
from clinic.extensions import db
from clinic.therapy import notes, sessions
from clinic.therapy.models import (
    NoteAddendum,
    NoteStatus,
    ProgressNote,
    SessionStatus,
    TherapySession,
)
from tests.conftest import Client, login
from tests.test_therapy_helpers import (
    count_statements,
    hours_ago,
    plan,
    therapy_fixture,  # noqa: F401
)

CSRF_RE = re.compile(r'name="csrf_token"[^>]*? value="([^"]+)"')
TOKEN_RE = re.compile(r'name="submission_token"[^>]*? value="([^"]*)"')


class FreshClient(Client):
    """Each request in an app context of its own (the ``therapy`` fixture holds one open)."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture(name="as_user")
def as_user_fixture(app, username_of):
    def make(user_id: int):
        client = FreshClient(app, app.response_class, use_cookies=True)
        assert login(client, username_of(user_id)).status_code == 302
        return client

    return make


def _tokens(client, url: str) -> dict:
    html = client.get(url).get_data(as_text=True)
    tokens = {"csrf_token": CSRF_RE.search(html).group(1)}
    token = TOKEN_RE.search(html)
    if token:
        tokens["submission_token"] = token.group(1)
    return tokens


def _count(model, *where) -> int:
    db.session.expire_all()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _user(user_id: int) -> User:
    db.session.expire_all()
    return db.session.get(User, user_id)


def _error(html: str, field: str) -> str | None:
    match = re.search(rf'id="{field}-error"[^>]*>([^<]*)<', html)
    return html_module.unescape(match.group(1).strip()) if match else None


# --- trainees and supervisors on the user form -------------------------------------------------


def _edit_data(client, user: User, **changes) -> dict:
    data = _tokens(client, f"/admin/users/{user.id}/edit")
    data.update(
        {
            "full_name": user.full_name,
            "email": user.email or "",
            "role": user.role.value,
            "sites": [str(s) for s in sorted(user.site_ids)],
            "version": str(user.profile_version),
        }
    )
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_an_administrator_makes_a_clinician_a_trainee_of_a_supervisor(therapy, as_user):
    admin = as_user(therapy.admin)
    dan = _user(therapy.dan)
    version = dan.profile_version
    page = admin.get(f"/admin/users/{dan.id}/edit").get_data(as_text=True)
    assert 'name="is_trainee"' in page and 'name="supervisor_id"' in page
    # Offered: active clinicians sharing a site, never the trainee nor a non-clinician.
    offered = re.findall(r'<option value="(\d+)"', page.split('name="supervisor_id"')[1])
    assert str(therapy.supervisor) in offered
    assert str(dan.id) not in offered and str(therapy.staff) not in offered

    response = admin.post(
        f"/admin/users/{dan.id}/edit",
        data=_edit_data(admin, dan, is_trainee="y", supervisor_id=str(therapy.supervisor)),
    )

    assert response.status_code == 302, response.get_data(as_text=True)
    dan = _user(therapy.dan)
    assert dan.is_trainee and dan.supervisor_id == therapy.supervisor
    assert dan.profile_version == version + 1  # older forms of the account are out of date
    event = db.session.scalars(
        sa.select(AuditEvent)
        .where(AuditEvent.entity_type == "user", AuditEvent.entity_id == str(dan.id))
        .order_by(AuditEvent.id.desc())
    ).first()
    assert event.user_id == therapy.admin and "supervisor_id" in str(event.details)
    detail = admin.get(f"/admin/users/{dan.id}").get_data(as_text=True)
    assert "Trainee of Sue Supervisor" in detail
    listing = admin.get("/admin/users/?q=dan").get_data(as_text=True)
    assert "Trainee of Sue Supervisor" in listing


def test_a_new_user_is_created_a_trainee(therapy, as_user, site):
    admin = as_user(therapy.admin)
    data = _tokens(admin, "/admin/users/new")
    data.update(
        username="new.trainee",
        full_name="Nia Newcomer",
        role="clinician",
        sites=[str(site)],
        password="river lantern oboe thicket",
        is_trainee="y",
        supervisor_id=str(therapy.dan),
    )
    response = admin.post("/admin/users/new", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    created = db.session.scalar(sa.select(User).where(User.username == "new.trainee"))
    assert created.is_trainee and created.supervisor_id == therapy.dan


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"is_trainee": "y", "supervisor_id": ""}, "supervisor_id", "Choose the trainee's"),
        ({"is_trainee": "y", "supervisor_id": "\x00"}, "supervisor_id", "Invalid Choice"),
        ({"is_trainee": "y", "supervisor_id": "9" * 30}, "supervisor_id", "Not a valid choice"),
        ({"is_trainee": "y", "supervisor_id": "{staff}"}, "supervisor_id", "Not a valid choice"),
        ({"is_trainee": "y", "supervisor_id": "{self}"}, "supervisor_id", "Not a valid choice"),
        (
            {"is_trainee": "y", "supervisor_id": "{supervisor}", "role": "staff"},
            "is_trainee",
            "Only clinicians are trainees.",
        ),
        (
            {"is_trainee": "y", "supervisor_id": "{supervisor}", "full_name": "Dan\x00"},
            "full_name",
            "Remove the control",
        ),
    ],
)
def test_bad_supervision_is_refused_next_to_the_field_keeping_the_input(
    therapy, as_user, changes, field, message
):
    admin = as_user(therapy.admin)
    dan = _user(therapy.dan)
    ids = {"staff": therapy.staff, "self": dan.id, "supervisor": therapy.supervisor}
    changes = {k: v.format(**ids) for k, v in changes.items()}
    data = _edit_data(admin, dan, email="dan@example.org", **changes)

    response = admin.post(f"/admin/users/{dan.id}/edit", data=data)

    html = response.get_data(as_text=True)
    assert response.status_code < 500
    assert message in (_error(html, field) or ""), html
    assert 'value="dan@example.org"' in html  # the other input kept
    dan = _user(therapy.dan)
    assert not dan.is_trainee and dan.supervisor_id is None and dan.email is None


def test_a_supervisor_of_another_site_is_refused_by_the_service(therapy, make_user):
    east_clinician = make_user("clinician", site_ids=[therapy.other_site])
    dan = _user(therapy.dan)
    with pytest.raises(Exception, match="one of the trainee's sites"):
        notes.set_trainee_supervisor(
            dan, actor=_user(therapy.admin), supervisor=_user(east_clinician)
        )
    db.session.rollback()


def test_a_trainee_taken_off_and_made_staff_in_one_save(therapy, as_user):
    admin = as_user(therapy.admin)
    trainee = _user(therapy.trainee)
    response = admin.post(
        f"/admin/users/{trainee.id}/edit", data=_edit_data(admin, trainee, role="staff")
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    trainee = _user(therapy.trainee)
    assert trainee.role.value == "staff"
    assert not trainee.is_trainee and trainee.supervisor_id is None


def test_two_administrators_changing_the_supervisor_get_a_conflict(therapy, as_user):
    first, second = as_user(therapy.admin), as_user(therapy.admin)
    dan = _user(therapy.dan)
    first_form = _edit_data(first, dan, is_trainee="y", supervisor_id=str(therapy.supervisor))
    second_form = _edit_data(second, dan, is_trainee="y", supervisor_id=str(therapy.cotherapist))
    assert first.post(f"/admin/users/{dan.id}/edit", data=first_form).status_code == 302

    response = second.post(f"/admin/users/{dan.id}/edit", data=second_form)

    assert "Someone else changed" in response.get_data(as_text=True)
    assert _user(therapy.dan).supervisor_id == therapy.supervisor


def test_only_administrators_set_supervisors(therapy, as_user):
    for user_id in (therapy.staff, therapy.dan):
        client = as_user(user_id)
        assert client.get(f"/admin/users/{therapy.trainee}/edit").status_code == 403
    with pytest.raises(Exception, match="Only administrators"):
        notes.set_trainee_supervisor(
            _user(therapy.dan), actor=_user(therapy.dan), supervisor=_user(therapy.supervisor)
        )


# --- deactivated clinicians' drafts ----------------------------------------------------------


_HOURS = itertools.count()


def _drafts_by(therapy, clinician: int, patients: list[int], *, text: str = "Private draft"):
    """A recorded session of ``clinician`` per patient, each with a draft note."""
    note_ids = []
    for patient in patients:
        starts_at = hours_ago(3 + next(_HOURS))  # one session per starting instant
        session = plan(therapy, [patient], actor=clinician, kind="individual", starts_at=starts_at)
        recorded = sessions.record_session(
            session,
            actor=_user(clinician),
            attendees=[sessions.AttendeeRecord(patient, "attended", 60, f"{text} {patient}")],
        )
        note_ids.append(recorded.attendee_note_ids[patient])
    db.session.commit()
    return note_ids


def _deactivate(therapy, user_id: int) -> None:
    account_services.deactivate_user(_user(user_id), actor=_user(therapy.admin))
    db.session.commit()


def test_deactivating_a_clinician_leaves_their_sessions_and_notes_intact(therapy):
    a, b = therapy.patients[:2]
    session = plan(therapy, [a, b], actor=therapy.cotherapist)
    recorded = sessions.record_session(
        session,
        actor=_user(therapy.cotherapist),
        attendees=[
            sessions.AttendeeRecord(a, "attended", 60, "Signed note."),
            sessions.AttendeeRecord(b, "attended", 60),
        ],
        group_note="Group note.",
        sign=True,
    )
    signed = db.session.get(ProgressNote, recorded.attendee_note_ids[a])
    notes.add_addendum(signed, actor=_user(therapy.cotherapist), text="An addendum.")
    db.session.commit()
    draft_ids = _drafts_by(therapy, therapy.cotherapist, [therapy.patients[2]])
    before = {
        n.id: (n.status, n.text, n.text_sha256, n.author_id)
        for n in db.session.scalars(sa.select(ProgressNote))
    }

    _deactivate(therapy, therapy.cotherapist)

    after = {
        n.id: (n.status, n.text, n.text_sha256, n.author_id)
        for n in db.session.scalars(sa.select(ProgressNote))
    }
    assert after == before
    assert _count(TherapySession, TherapySession.clinician_id == therapy.cotherapist) == 2
    assert _count(NoteAddendum) == 1
    assert db.session.get(ProgressNote, draft_ids[0]).status == NoteStatus.DRAFT


def test_an_administrator_lists_the_drafts_without_their_text(therapy, as_user):
    draft_ids = _drafts_by(therapy, therapy.cotherapist, therapy.patients[:2])
    _drafts_by(therapy, therapy.dan, [therapy.patients[2]], text="Active author's")
    _deactivate(therapy, therapy.cotherapist)
    admin = as_user(therapy.admin)
    views_before = _count(AuditEvent, AuditEvent.action == "view")

    html = admin.get("/therapy/admin/drafts").get_data(as_text=True)

    assert sorted(int(i) for i in re.findall(r'data-note-id="(\d+)"', html)) == sorted(draft_ids)
    assert "Private draft" not in html and "Active author" not in html
    assert "Alvarez, Ana" in html and "Cora Cotherapist" in html
    viewed = db.session.scalars(
        sa.select(AuditEvent.patient_id).where(
            AuditEvent.action == "view", AuditEvent.entity_type == "progress_note"
        )
    ).all()
    assert sorted(viewed) == sorted(therapy.patients[:2])
    assert _count(AuditEvent, AuditEvent.action == "view") == views_before + 2
    # The link from the deactivated clinician's account page: their drafts only.
    user_page = admin.get(f"/admin/users/{therapy.cotherapist}").get_data(as_text=True)
    assert f"/therapy/admin/drafts?author_id={therapy.cotherapist}" in user_page
    only = admin.get(f"/therapy/admin/drafts?author_id={therapy.dan}").get_data(as_text=True)
    assert 'data-testid="drafts-empty"' in only


def test_the_drafts_page_is_empty_when_there_is_nothing_to_reassign(therapy, as_user):
    html = as_user(therapy.admin).get("/therapy/admin/drafts").get_data(as_text=True)
    assert 'data-testid="drafts-empty"' in html


def test_the_drafts_page_runs_a_constant_number_of_select_statements(therapy, as_user):
    admin = as_user(therapy.admin)
    _drafts_by(therapy, therapy.cotherapist, therapy.patients[:1])
    _deactivate(therapy, therapy.cotherapist)

    def selects() -> int:
        with count_statements() as statements:
            assert admin.get("/therapy/admin/drafts").status_code == 200
        return sum(1 for s in statements if s.lstrip().upper().startswith("SELECT"))

    one = selects()
    account_services.reactivate_user(_user(therapy.cotherapist), actor=_user(therapy.admin))
    db.session.commit()
    _drafts_by(therapy, therapy.cotherapist, therapy.patients[1:6])
    _deactivate(therapy, therapy.cotherapist)
    assert selects() == one


def _reassign_data(client, note_ids: list[int], author_id, url="/therapy/admin/drafts") -> dict:
    data = _tokens(client, url)
    data["note_ids"] = [str(i) for i in note_ids]
    data["author_id"] = str(author_id)
    return data


def test_an_administrator_reassigns_several_drafts_to_an_active_clinician(therapy, as_user):
    draft_ids = _drafts_by(therapy, therapy.cotherapist, therapy.patients[:3])
    _deactivate(therapy, therapy.cotherapist)
    admin = as_user(therapy.admin)
    data = _reassign_data(admin, draft_ids[:2], therapy.dan)

    response = admin.post("/therapy/admin/drafts", data=data)

    assert response.status_code == 302, response.get_data(as_text=True)
    db.session.expire_all()
    authors = {i: db.session.get(ProgressNote, i).author_id for i in draft_ids}
    assert authors == {
        draft_ids[0]: therapy.dan,
        draft_ids[1]: therapy.dan,
        draft_ids[2]: therapy.cotherapist,
    }
    assert "2 drafts reassigned." in admin.get(response.headers["Location"]).get_data(as_text=True)
    events = db.session.scalars(
        sa.select(AuditEvent).where(
            AuditEvent.entity_type == "progress_note", AuditEvent.action == "update"
        )
    ).all()
    assert sorted(int(e.entity_id) for e in events) == sorted(draft_ids[:2])
    # Dan may now finish and sign them.
    notes.sign_note(db.session.get(ProgressNote, draft_ids[0]), actor=_user(therapy.dan))
    db.session.commit()
    # A double submit reassigns once and says so.
    again = admin.post("/therapy/admin/drafts", data=data, follow_redirects=True)
    assert "already been sent" in again.get_data(as_text=True)


@pytest.mark.parametrize(
    ("notes_chosen", "author", "field", "message"),
    [
        ("none", "{dan}", "note_ids", "Choose at least one draft."),
        ("first", "", "author_id", "Choose the new author."),
        ("first", "\x00", "author_id", "Invalid Choice"),
        ("first", "9" * 30, "author_id", "Not a valid choice"),
        ("first", "{east}", "author_id", "Not a valid choice"),
        ("first", "{staff}", "author_id", "Not a valid choice"),
        ("active", "{dan}", "note_ids", "not a valid choice"),
        ("nul", "{dan}", "note_ids", "Invalid choice"),
    ],
)
def test_bad_reassignments_are_refused_by_the_field_and_nothing_changes(
    therapy, as_user, make_user, notes_chosen, author, field, message
):
    east = make_user("clinician", site_ids=[therapy.other_site])
    draft_ids = _drafts_by(therapy, therapy.cotherapist, therapy.patients[:2])
    active_draft = _drafts_by(therapy, therapy.dan, [therapy.patients[3]])[0]
    _deactivate(therapy, therapy.cotherapist)
    admin = as_user(therapy.admin)
    chosen = {
        "none": [],
        "first": [draft_ids[0]],
        "active": [draft_ids[0], active_draft],
        "nul": ["1\x00"],
    }[notes_chosen]
    author = author.format(dan=therapy.dan, east=east, staff=therapy.staff)
    data = _reassign_data(admin, chosen, author)

    response = admin.post("/therapy/admin/drafts", data=data)

    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message.lower() in (_error(html, field) or "").lower(), html
    if notes_chosen == "first":  # the choice kept
        assert re.search(rf'value="{draft_ids[0]}" id="note-{draft_ids[0]}" checked', html)
    db.session.expire_all()
    assert {db.session.get(ProgressNote, i).author_id for i in draft_ids} == {therapy.cotherapist}
    assert db.session.get(ProgressNote, active_draft).author_id == therapy.dan


def test_an_administrator_of_another_site_sees_and_reassigns_none_of_them(
    therapy, as_user, make_user
):
    draft_ids = _drafts_by(therapy, therapy.cotherapist, therapy.patients[:1])
    _deactivate(therapy, therapy.cotherapist)
    east_admin = as_user(make_user("admin", site_ids=[therapy.other_site]))
    html = east_admin.get("/therapy/admin/drafts").get_data(as_text=True)
    assert 'data-testid="drafts-empty"' in html and "Alvarez" not in html
    data = _tokens(east_admin, "/therapy/admin/drafts")
    data.update(note_ids=[str(draft_ids[0])], author_id=str(therapy.dan))
    assert east_admin.post("/therapy/admin/drafts", data=data).status_code == 400
    assert db.session.get(ProgressNote, draft_ids[0]).author_id == therapy.cotherapist


def test_staff_and_clinicians_cannot_open_the_drafts_page(therapy, as_user):
    for user_id in (therapy.staff, therapy.dan):
        assert as_user(user_id).get("/therapy/admin/drafts").status_code == 403


# --- flask seed-demo -----------------------------------------------------------------------


def test_seed_demo_adds_a_week_of_therapy(app):
    from flask.cli import FlaskGroup

    runner = FlaskCliRunner(app)
    cli = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)
    result = runner.invoke(cli, args=["seed-demo"])
    assert result.exit_code == 0, result.output
    assert "therapy sessions" in result.output

    with app.app_context():
        users = {u.username: u for u in db.session.scalars(sa.select(User))}
        dan, trainee = users["counselor"], users["trainee"]
        assert trainee.is_trainee and trainee.supervisor_id == dan.id
        all_sessions = db.session.scalars(sa.select(TherapySession)).all()
        groups = [s for s in all_sessions if s.kind == "group"]
        assert len(groups) == 2 and groups[0].series_key == groups[1].series_key
        recorded_group = next(s for s in groups if s.status == SessionStatus.RECORDED)
        attendance = [a.attendance for a in recorded_group.attendees]
        assert len(attendance) == 7 and attendance.count("no_show") == 1
        assert any(s.kind == "individual" and s.recorded for s in all_sessions)
        from clinic.sites.time import site_today

        site = recorded_group.site
        today = site_today(site)
        planned_today = [
            s
            for s in all_sessions
            if s.status == SessionStatus.PLANNED
            and s.starts_at.astimezone(ZoneInfo(site.timezone)).date() == today
        ]
        assert len(planned_today) >= 1
        all_notes = db.session.scalars(sa.select(ProgressNote)).all()
        assert any(n.status == NoteStatus.SIGNED and not n.late for n in all_notes)
        assert any(n.status == NoteStatus.DRAFT for n in all_notes)
        assert any(n.late for n in all_notes)
        assert any(n.cosign_required and n.cosigned_at is not None for n in all_notes)
        assert any(n.awaiting_cosignature and n.cosigner_id == dan.id for n in all_notes)
        assert any(n.attendee_id is None and n.signed for n in all_notes)  # the group note
        assert _count(NoteAddendum) == 1
        from clinic.therapy.models import CounselingNote

        assert _count(CounselingNote) == 1
        # Hashes through the service: each signed note's hash is its text's.
        from clinic.therapy.models import sha256_text

        assert all(n.text_sha256 == sha256_text(n.text) for n in all_notes if n.signed)
        from clinic.therapy import reading

        caseload = reading.caseload(dan, today=today, timezone=site.timezone)
        assert caseload and any(row.flagged for row in caseload)
        assert not all(row.flagged for row in caseload)
        # Audited through the services.
        assert _count(AuditEvent, AuditEvent.entity_type == "progress_note") >= len(all_notes)

    again = runner.invoke(cli, args=["seed-demo"])
    assert again.exit_code == 0 and "nothing changed" in again.output
    with app.app_context():
        assert _count(TherapySession) == len(all_sessions)
