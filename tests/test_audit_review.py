"""The emergency-access review as an administrator reads it: who (name and role) opened
which patient (name, MRN, site), when in the site's time and UTC, why, until when and
how many pages; acknowledging takes an outcome, a note for an escalation and a
confirmation, and the database holds the same rules."""

from __future__ import annotations

import datetime as dt
import re
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from clinic.audit import AuditAction, record
from clinic.audit.models import AuditEvent, BreakGlassGrant, ReviewOutcome
from clinic.audit.review import ALREADY_REVIEWED_MESSAGE, ESCALATION_NOTE_MESSAGE
from clinic.extensions import db
from clinic.forms import CONTROL_CHARACTER_MESSAGE

# A moment whose site time and UTC fall on different days in Chicago (UTC-6 in winter).
GRANTED = dt.datetime(2026, 11, 20, 3, 30, tzinfo=dt.UTC)
REASON = "Walk-in overdose, confirm the methadone dose"


def events(app, **where) -> list[AuditEvent]:
    with app.app_context():
        query = sa.select(AuditEvent).order_by(AuditEvent.seq)
        for key, value in where.items():
            query = query.where(getattr(AuditEvent, key) == value)
        found = list(db.session.scalars(query))
        db.session.expunge_all()
        return found


@contextmanager
def count_statements(app):
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def world(app, site, make_site, make_user, make_patient):
    east = make_site("EAST", "Eastside Recovery Center", timezone="America/New_York")
    clinician = make_user("clinician", username="rivera", full_name="Dana Rivera", site_ids=[east])
    main_patient = make_patient("Ana", "Torres")
    east_patient = make_patient("Ed", "Ng", site_id=east)
    return {
        "main": site,
        "east": east,
        "clinician": clinician,
        "main_patient": main_patient,
        "east_patient": east_patient,
    }


def make_grant(app, user_id, patient_id, *, granted=GRANTED, minutes=60, reason=REASON) -> int:
    with app.app_context():
        grant = BreakGlassGrant(
            user_id=user_id,
            patient_id=patient_id,
            reason=reason,
            granted_at=granted,
            expires_at=granted + dt.timedelta(minutes=minutes),
        )
        db.session.add(grant)
        db.session.commit()
        return grant.id


def add_views(app, user_id, patient_id, count: int) -> None:
    """``count`` view events by the user for the patient, stamped now."""
    from clinic.accounts.models import User

    with app.app_context():
        user = db.session.get(User, user_id)
        for _ in range(count):
            record(AuditAction.VIEW, actor=user, entity_type="patient", patient_id=patient_id)
        db.session.commit()


@pytest.fixture
def grant(app, world):
    return make_grant(app, world["clinician"], world["main_patient"])


def review_url(grant_id) -> str:
    return f"/admin/audit/break-glass/{grant_id}/acknowledge"


def acknowledge(client, grant_id, **data):
    data.setdefault("confirm", "y")
    return client.submit(review_url(grant_id), data)


def stored(app, grant_id) -> BreakGlassGrant:
    with app.app_context():
        found = db.session.get(BreakGlassGrant, grant_id)
        db.session.expunge(found)
        return found


# --- what the review shows -------------------------------------------------------------------


def test_the_review_names_the_clinician_patient_site_and_times(client_as, world, grant):
    page = client_as("admin").get("/admin/audit/break-glass").get_data(as_text=True)
    assert "Dana Rivera" in page and "Clinician" in page
    assert "Torres, Ana" in page and "Main Street Clinic" in page
    assert re.search(r"MRN MAIN-\d+", page)
    assert REASON in page
    # Opened 03:30 UTC on the 20th is 21:30 on the 19th in Chicago.
    assert "19 Nov 2026 21:30 CST" in page and "2026-11-20 03:30 UTC" in page
    assert "19 Nov 2026 22:30 CST" in page  # when the access ended
    # No internal ids in place of people.
    assert f"patient {world['main_patient']}" not in page
    assert f"<td>{world['clinician']}</td>" not in page


def test_the_review_counts_the_pages_viewed_while_the_grant_lasted(app, client_as, world):
    now = dt.datetime.now(dt.UTC)
    inside = make_grant(
        app, world["clinician"], world["main_patient"], granted=now - dt.timedelta(minutes=5)
    )
    add_views(app, world["clinician"], world["main_patient"], 3)
    # Not counted: another patient, another user, a grant long over.
    add_views(app, world["clinician"], world["east_patient"], 1)
    over = make_grant(
        app, world["clinician"], world["main_patient"], granted=now - dt.timedelta(days=3)
    )
    admin = client_as("admin", full_name="Pat Admin")
    page = admin.get(review_url(inside)).get_data(as_text=True)
    assert "3 so far" in page  # the grant still lasts
    page = admin.get(review_url(over)).get_data(as_text=True)
    assert "0 while the access lasted" in page


def test_the_review_list_takes_the_same_statements_for_one_grant_or_many(
    app, client_as, make_user, make_patient, world
):
    admin = client_as("admin", all_sites=True, site_ids=[])
    make_grant(app, world["clinician"], world["main_patient"])
    admin.get("/admin/audit/break-glass")  # warm up
    with count_statements(app) as one:
        assert admin.get("/admin/audit/break-glass").status_code == 200
    for i in range(5):
        clinician = make_user("clinician", full_name=f"Clin {i}", site_ids=[world["east"]])
        patient = make_patient(f"P{i}", "Many")
        make_grant(app, clinician, patient)
    with count_statements(app) as many:
        page = admin.get("/admin/audit/break-glass").get_data(as_text=True)
    assert "Clin 4" in page and "Many, P4" in page
    assert len(many) == len(one)


def test_a_site_administrator_reviews_only_their_sites_patients(app, client_as, world, grant):
    east_grant = make_grant(
        app, world["clinician"], world["east_patient"], reason="East reason text"
    )
    admin = client_as("admin")  # MAIN only
    page = admin.get("/admin/audit/break-glass").get_data(as_text=True)
    assert REASON in page and "East reason text" not in page
    assert admin.get(review_url(east_grant)).status_code == 404
    denied = events(app, action=AuditAction.ACCESS_DENIED, user_id=admin.user_id)
    assert [(e.entity_id, e.patient_id) for e in denied] == [
        (str(east_grant), world["east_patient"])
    ]


@pytest.mark.parametrize("role", ["staff", "clinician"])
def test_only_administrators_open_the_review(client_as, grant, role):
    client = client_as(role)
    assert client.get("/admin/audit/break-glass").status_code == 403
    assert client.get(review_url(grant)).status_code == 403


# --- acknowledging -------------------------------------------------------------------------


def test_acknowledging_as_appropriate_records_outcome_reviewer_and_time(app, client_as, grant):
    admin = client_as("admin", full_name="Pat Admin")
    response = acknowledge(admin, grant, outcome="appropriate")
    assert response.status_code == 302
    saved = stored(app, grant)
    assert saved.review_outcome is ReviewOutcome.APPROPRIATE
    assert saved.acknowledged_by_id == admin.user_id
    assert saved.acknowledged_at is not None
    assert saved.review_note is None
    [event] = events(app, action=AuditAction.ACKNOWLEDGE)
    assert event.details == '{"outcome":"appropriate"}'
    page = admin.get("/admin/audit/break-glass?show=all").get_data(as_text=True)
    assert "Appropriate" in page and "by Pat Admin" in page


def test_an_escalation_keeps_its_note_on_the_grant_never_in_the_audit_trail(app, client_as, grant):
    admin = client_as("admin")
    note = "Reason does not match the visit; referred to the privacy officer."
    assert acknowledge(admin, grant, outcome="escalated", note=note).status_code == 302
    saved = stored(app, grant)
    assert (saved.review_outcome, saved.review_note) == (ReviewOutcome.ESCALATED, note)
    assert all("privacy officer" not in e.details for e in events(app))
    [event] = events(app, action=AuditAction.ACKNOWLEDGE)
    assert event.details == '{"outcome":"escalated"}'
    assert note in admin.get(review_url(grant)).get_data(as_text=True)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"outcome": "escalated", "note": ""}, "note", ESCALATION_NOTE_MESSAGE),
        ({"outcome": "escalated", "note": "   "}, "note", ESCALATION_NOTE_MESSAGE),
        ({"outcome": "appropriate", "note": "bad\x00note"}, "note", CONTROL_CHARACTER_MESSAGE),
        ({"outcome": "appropriate", "note": "bidi \u202e"}, "note", CONTROL_CHARACTER_MESSAGE),
        ({"outcome": "appropriate", "note": "n" * 1001}, "note", "Enter at most 1000 characters."),
        ({"outcome": "maybe"}, "outcome", "Not a valid choice."),
        ({}, "outcome", "Choose an outcome."),
        ({"outcome": "appropriate", "confirm": ""}, "confirm", "Tick the box to confirm"),
    ],
)
def test_a_refused_acknowledgement_says_why_by_the_field_and_saves_nothing(
    app, client_as, grant, data, field, message
):
    admin = client_as("admin")
    response = acknowledge(admin, grant, **data)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    error = re.search(rf'id="{field}-error"[^>]*>([^<]*)<', page)
    assert error and message in error.group(1)
    assert page.count(message) == 1
    assert stored(app, grant).acknowledged_at is None
    assert events(app, action=AuditAction.ACKNOWLEDGE) == []


def test_a_refused_acknowledgement_keeps_what_was_typed(client_as, grant):
    admin = client_as("admin")
    page = acknowledge(admin, grant, outcome="escalated", note="Asked the clinician", confirm="")
    html = page.get_data(as_text=True)
    assert "Asked the clinician</textarea>" in html
    assert re.search(
        r'<input[^>]*checked[^>]*value="escalated"|value="escalated"[^>]*checked', html
    )


@pytest.mark.parametrize("length", [999, 1000])
def test_a_note_up_to_the_limit_is_kept(app, client_as, grant, length):
    admin = client_as("admin")
    response = acknowledge(admin, grant, outcome="escalated", note="n" * length)
    assert response.status_code == 302
    assert len(stored(app, grant).review_note) == length


def test_acknowledging_twice_keeps_the_first_review(app, client_as, grant):
    first, second = client_as("admin"), client_as("admin")
    assert acknowledge(first, grant, outcome="appropriate").status_code == 302
    response = acknowledge(second, grant, outcome="escalated", note="second opinion")
    assert ALREADY_REVIEWED_MESSAGE in response.get_data(as_text=True)
    saved = stored(app, grant)
    assert (saved.review_outcome, saved.acknowledged_by_id) == (
        ReviewOutcome.APPROPRIATE,
        first.user_id,
    )
    assert len(events(app, action=AuditAction.ACKNOWLEDGE)) == 1


def test_the_acknowledge_form_asks_for_confirmation(client_as, grant):
    page = client_as("admin").get(review_url(grant)).get_data(as_text=True)
    assert "An acknowledgement cannot be undone." in page
    assert 'name="confirm"' in page


# --- the database holds the same rules -------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "constraint"),
    [
        ({"acknowledged_at": GRANTED}, "review_complete"),
        ({"review_outcome": "appropriate"}, "review_complete"),
        ({"acknowledged_at": GRANTED, "review_outcome": "maybe"}, "review_outcome_valid"),
        ({"acknowledged_at": GRANTED, "review_outcome": "escalated"}, "escalation_explained"),
        (
            {"acknowledged_at": GRANTED, "review_outcome": "escalated", "review_note": "  "},
            "escalation_explained",
        ),
        (
            {
                "acknowledged_at": GRANTED,
                "review_outcome": "appropriate",
                "review_note": "n" * 1001,
            },
            "review_note_length",
        ),
    ],
)
def test_the_database_refuses_an_incomplete_review(app, grant, values, constraint):
    # Plain SQL: the model's own types would refuse a bad outcome before the database.
    assignments = ", ".join(f"{name} = :{name}" for name in values)
    with app.app_context():
        with pytest.raises((sa.exc.IntegrityError, sa.exc.DataError)) as refused:
            db.session.execute(
                sa.text(f"UPDATE break_glass_grant SET {assignments} WHERE id = :id"),
                {**values, "id": grant},
            )
        db.session.rollback()
    # PostgreSQL refuses an over-long note by its column type before the CHECK.
    too_long = "value too long for type character varying(1000)"
    assert constraint in str(refused.value) or (
        constraint == "review_note_length" and too_long in str(refused.value)
    )


def test_the_database_accepts_a_complete_review(app, grant):
    table = BreakGlassGrant.__table__
    with app.app_context():
        db.session.execute(
            sa.update(table)
            .where(table.c.id == grant)
            .values(acknowledged_at=GRANTED, review_outcome="escalated", review_note="why")
        )
        db.session.commit()
        assert db.session.get(BreakGlassGrant, grant).review_outcome is ReviewOutcome.ESCALATED


# --- the migration --------------------------------------------------------------------------


def test_the_migration_gives_earlier_acknowledgements_an_outcome_and_keeps_the_trail_sealed(
    app, world
):
    from flask_migrate import downgrade, upgrade

    reviewed = make_grant(app, world["clinician"], world["main_patient"])
    waiting = make_grant(app, world["clinician"], world["east_patient"])
    with app.app_context():
        downgrade(revision="d4e5f6a7b8c9")  # before outcomes existed
        db.session.execute(
            sa.text(
                "UPDATE break_glass_grant SET acknowledged_at = :at, acknowledged_by_id = :by "
                "WHERE id = :id"
            ),
            {"at": GRANTED.isoformat(), "by": world["clinician"], "id": reviewed},
        )
        db.session.commit()
        upgrade()
        rows = db.session.execute(sa.text("SELECT id, review_outcome FROM break_glass_grant"))
        outcomes = dict(rows.all())
        assert outcomes == {reviewed: "appropriate", waiting: None}
        # audit_event was not rebuilt: its append-only triggers still refuse changes.
        with pytest.raises(sa.exc.DatabaseError):
            db.session.execute(sa.text("UPDATE audit_event SET username = 'x'"))
        db.session.rollback()
