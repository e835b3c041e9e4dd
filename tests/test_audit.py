"""The audit trail: events for logins and refusals, an intact hash chain, tamper
detection, append-only triggers, concurrent appends, the viewer and its CSV export."""

from __future__ import annotations

import csv
import io
import threading

import pytest
import sqlalchemy as sa

from clinic.audit import AuditAction, record
from clinic.audit.models import AuditEvent
from clinic.audit.services import verify_chain
from clinic.extensions import db
from tests.conftest import PASSWORD, login


def events(app, **where) -> list[AuditEvent]:
    with app.app_context():
        query = sa.select(AuditEvent).order_by(AuditEvent.seq)
        for key, value in where.items():
            query = query.where(getattr(AuditEvent, key) == value)
        found = list(db.session.scalars(query))
        db.session.expunge_all()
        return found


def add_events(app, count: int, action=AuditAction.VIEW) -> None:
    with app.app_context():
        for i in range(count):
            record(action, actor=None, entity_type="test", entity_id=i)
        db.session.commit()


def test_sign_in_failure_and_sign_out_are_recorded_without_secrets(
    app, client, make_user, username_of
):
    user_id = make_user("staff")
    name = username_of(user_id)
    login(client, name, "not the password at all")
    login(client, "nobody-here", "another wrong one")
    login(client, name)
    client.submit("/logout", {}, form_url="/")
    actions = [(e.action.value, e.user_id, e.outcome.value) for e in events(app)]
    assert ("login_failed", None, "failure") in actions
    assert ("login", user_id, "success") in actions
    assert ("logout", user_id, "success") in actions
    failed = events(app, action=AuditAction.LOGIN_FAILED)
    assert {e.entity_id for e in failed} == {str(user_id), None}
    dump = " ".join(e.details + (e.username or "") for e in events(app))
    assert "not the password" not in dump and "another wrong one" not in dump
    assert "nobody-here" not in dump
    assert PASSWORD not in dump


def test_lockout_is_recorded(app, client, make_user, username_of):
    user_id = make_user("staff")
    for _ in range(5):
        login(client, username_of(user_id), "wrong password again")
    lockouts = events(app, action=AuditAction.LOCKOUT)
    assert [e.entity_id for e in lockouts] == [str(user_id)]


def test_refused_request_records_access_denied(app, client_as):
    staff = client_as("staff")
    assert staff.get("/admin/audit/").status_code == 403
    denied = events(app, action=AuditAction.ACCESS_DENIED)
    assert len(denied) == 1
    assert denied[0].user_id == staff.user_id
    assert '"endpoint":"audit.index"' in denied[0].details


def test_record_outside_own_sites_is_not_found_and_recorded(app, client_as, make_site, make_user):
    other_site = make_site("EAST")
    stranger = make_user("staff", site_ids=[other_site])
    admin = client_as("admin")  # works at MAIN only
    assert admin.get(f"/admin/users/{stranger}").status_code == 404
    denied = events(app, action=AuditAction.ACCESS_DENIED)
    assert [(e.entity_type, e.entity_id) for e in denied] == [("user", str(stranger))]


def test_chain_verifies_after_activity(app, client_as):
    client_as("admin").get("/admin/audit/")
    add_events(app, 30)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "intact" in result.output


def test_a_form_that_fails_saves_no_audit_event(app, client_as, make_user):
    admin = client_as("admin")
    before = len(events(app))
    response = admin.submit(
        "/admin/users/new",
        {"username": "x!", "full_name": "X", "role": "staff", "password": "short"},
    )
    assert response.status_code == 200
    assert "Field must be between 12 and 128 characters long." in response.get_data(as_text=True)
    assert [e.action for e in events(app)[before:]] == []


def _tamper(app, statement: str) -> None:
    """Change the table behind the application's back, with the trigger out of the way
    (it is restored in the same transaction, for the tests that follow)."""
    with app.app_context(), db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            conn.execute(sa.text(statement))
            conn.execute(sa.text("ALTER TABLE audit_event ENABLE TRIGGER USER"))
        else:
            conn.execute(sa.text("DROP TRIGGER audit_event_no_update"))
            conn.execute(sa.text("DROP TRIGGER audit_event_no_delete"))
            conn.execute(sa.text(statement))


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("UPDATE audit_event SET details = 'tampered' WHERE seq = 5", "event 5 was altered"),
        (
            "UPDATE audit_event SET user_id = NULL, action = 'login' WHERE seq = 7",
            "event 7 was altered",
        ),
        ("DELETE FROM audit_event WHERE seq = 4", "event 4 is missing"),
        ("DELETE FROM audit_event WHERE seq = 10", "events are missing from the end"),
    ],
)
def test_tampering_is_detected(app, statement, message):
    add_events(app, 10)
    _tamper(app, statement)
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert message in result.output


def test_database_refuses_to_change_or_delete_events(app):
    add_events(app, 2)
    with app.app_context():
        for statement in (
            "UPDATE audit_event SET details = '{}' WHERE seq = 1",
            "DELETE FROM audit_event WHERE seq = 2",
        ):
            with (
                pytest.raises(sa.exc.DatabaseError, match="append-only"),
                db.engine.begin() as conn,
            ):
                conn.execute(sa.text(statement))
        assert verify_chain().ok


def test_simultaneous_appends_keep_one_unbroken_chain(app):
    threads_count, per_thread = 4, 15
    errors: list[BaseException] = []
    start = threading.Barrier(threads_count)

    def worker(n: int) -> None:
        try:
            start.wait()
            with app.app_context():
                for i in range(per_thread):
                    record(
                        AuditAction.VIEW, actor=None, entity_type="thread", entity_id=n * 100 + i
                    )
                    db.session.commit()  # each commit is its own connection's append
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with app.app_context():
        report = verify_chain()
        assert report.ok, report.problem
        assert report.events == threads_count * per_thread


def test_viewer_filters_and_pages_newest_first(app, client_as, username_of):
    add_events(app, 130)
    admin = client_as("admin", all_sites=True, site_ids=[])  # the events belong to no site
    page = admin.get("/admin/audit/?action=view&entity=test").get_data(as_text=True)
    assert page.count("<tr") == 101  # header + 100 events
    assert "Older" in page
    first_ids = events(app, entity_type="test")
    newest = max(e.seq for e in first_ids)
    assert f"<td>{newest}</td>" in page
    older_cursor = sorted(e.seq for e in first_ids)[-100]
    older = admin.get(f"/admin/audit/?action=view&entity=test&before={older_cursor}")
    assert older.get_data(as_text=True).count("<tr") == 31
    by_user = admin.get(f"/admin/audit/?user={username_of(admin.user_id)}&action=login")
    assert by_user.get_data(as_text=True).count("<tr") == 2


def test_viewing_and_exporting_the_trail_are_audited(app, client_as):
    add_events(app, 3)
    admin = client_as("admin", all_sites=True, site_ids=[])
    admin.get("/admin/audit/?entity=test")
    response = admin.get("/admin/audit/export.csv?entity=test")
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:3] == ["seq", "occurred_at", "username"]
    assert len(rows) == 4
    assert {row[rows[0].index("key_id")] for row in rows[1:]} == {"test"}
    assert [e.action for e in events(app, user_id=admin.user_id)][-2:] == [
        AuditAction.VIEW,
        AuditAction.EXPORT,
    ]
    with app.app_context():
        assert verify_chain().ok
