"""The audit chain against its own database owner: keyed hashes (HMAC) with rotation,
every hashed field proven covered, rewrites with plain SHA-256 detected, empty and
shortened chains reported broken, anchors exported and checked, the app's limited
PostgreSQL role, and the migration that introduced keys (triggers kept, old events
sealed)."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid

import pytest
import sqlalchemy as sa
from flask import g
from flask_migrate import downgrade, upgrade

from clinic import create_app
from clinic.accounts.models import User
from clinic.audit import AuditAction, AuditOutcome, record
from clinic.audit.cli import app_role_grants
from clinic.audit.keys import parse_keys
from clinic.audit.models import GENESIS_HASH, AuditEvent
from clinic.audit.services import (
    HASHED_FIELDS,
    LEGACY_HASHED_FIELDS,
    legacy_event_hash,
    verify_chain,
)
from clinic.db import UTCDateTime
from clinic.extensions import db
from tests.conftest import ON_POSTGRES, make_app

NEW_KEY = f"new:{secrets.token_hex(32)}"
OLD_KEY = f"old:{secrets.token_hex(32)}"
BEFORE_KEYS = "856dde6e6507"  # the revision before audit_event.key_id


@pytest.fixture
def app_overrides() -> dict:
    # Two keys, newest first: "new" signs, "old" still verifies.
    return {"AUDIT_HMAC_KEYS": f"{NEW_KEY},{OLD_KEY}"}


def add_events(app, count: int) -> None:
    with app.app_context():
        for i in range(count):
            record(AuditAction.VIEW, actor=None, entity_type="test", entity_id=i)
        db.session.commit()


def verify(app, *args: str):
    return app.test_cli_runner().invoke(args=["audit", "verify", *args])


def _as_owner(app, *statements) -> None:
    """What the table's owner can do: put the append-only triggers aside, change rows,
    restore the triggers (SQLite: drop them; the next test gets a fresh database)."""
    with app.app_context(), db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
        else:
            conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_event_no_update"))
            conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_event_no_delete"))
        for statement in statements:
            conn.execute(sa.text(statement) if isinstance(statement, str) else statement)
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE audit_event ENABLE TRIGGER USER"))


def _rewrite_with_plain_sha256(app, change_seq: int, changes: dict, *, unkeyed_from=None):
    """The attack of the issue: change one event, then recompute the plain SHA-256 chain
    from there on and the head, as an owner without the HMAC key would. With
    ``unkeyed_from``, the rewritten events from that seq on also drop their key id
    (posing as events written before keys existed)."""
    table = AuditEvent.__table__
    with app.app_context():
        rows = [
            dict(r._mapping) for r in db.session.execute(sa.select(table).order_by(table.c.seq))
        ]
    updates, prev = [], GENESIS_HASH
    for row in rows:
        if row["seq"] == change_seq:
            row.update(changes)
        if unkeyed_from is not None and row["seq"] >= unkeyed_from:
            row["key_id"] = None
        if row["seq"] >= min(change_seq, unkeyed_from or change_seq):
            row["prev_hash"] = prev
            row["hash"] = legacy_event_hash(prev, row)
            updates.append(
                sa.update(table)
                .where(table.c.id == row["id"])
                .values({k: row[k] for k in ("prev_hash", "hash", "key_id", *changes)})
            )
        prev = row["hash"]
    head = sa.table(
        "audit_chain_head", sa.column("id"), sa.column("last_seq"), sa.column("last_hash")
    )
    updates.append(sa.update(head).values(last_seq=rows[-1]["seq"], last_hash=prev))
    _as_owner(app, *updates)


# --- every field the chain protects, one at a time ----------------------------------------


@pytest.fixture
def full_chain(app, make_user, make_site, site):
    """Ten events; event 5 has every field filled (an actor, a patient, a site, a client
    address and request id), so each field can be changed alone."""
    actor_id = make_user("admin", username="auditor")
    other_user = make_user("staff", username="someone-else")
    other_site = make_site("EAST")
    add_events(app, 4)
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "198.51.100.7"}):
        g.request_id = "a" * 32
        record(
            AuditAction.UPDATE,
            actor=db.session.get(User, actor_id),
            entity_type="user",
            entity_id=7,
            patient_id=42,
            site_id=site,
            details={"fields": ["role"]},
        )
        db.session.commit()
    add_events(app, 5)
    return {"other_user": other_user, "other_site": other_site}


def _changed_value(field: str, event: AuditEvent, other: dict):
    return {
        "seq": 1000,
        "occurred_at": event.occurred_at + dt.timedelta(seconds=1),
        "user_id": other["other_user"],
        "username": "someone-else",
        "role": "staff",
        "site_id": other["other_site"],
        "action": AuditAction.EXPORT,
        "entity_type": "patient",
        "entity_id": "8",
        "patient_id": 43,
        "outcome": AuditOutcome.DENIED,
        "ip": "198.51.100.8",
        "request_id": "b" * 32,
        "details": '{"fields":["site"]}',
        "key_id": "old",  # a key that verifies other events, but did not sign this one
    }[field]


@pytest.mark.parametrize("field", HASHED_FIELDS)
def test_changing_any_one_hashed_field_of_an_event_is_detected(app, full_chain, field):
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.seq == 5))
        new_value = _changed_value(field, event, full_chain)
        assert getattr(event, field) != new_value  # the test really changes something
    table = AuditEvent.__table__
    _as_owner(app, sa.update(table).where(table.c.seq == 5).values({field: new_value}))
    result = verify(app)
    assert result.exit_code == 1
    expected = "event 5 is missing" if field == "seq" else "event 5 was altered"
    assert expected in result.output


def test_every_column_of_an_event_is_hashed_or_is_the_chain_itself():
    columns = set(AuditEvent.__table__.c.keys())
    assert columns - set(HASHED_FIELDS) == {"id", "prev_hash", "hash"}
    assert tuple(f for f in HASHED_FIELDS if f != "key_id") == LEGACY_HASHED_FIELDS


@pytest.mark.parametrize(
    ("column", "message"),
    [("prev_hash", "event 5 does not link"), ("hash", "event 5 was altered")],
)
def test_changing_the_links_of_the_chain_is_detected(app, column, message):
    add_events(app, 8)
    _as_owner(app, f"UPDATE audit_event SET {column} = '{'f' * 64}' WHERE seq = 5")
    result = verify(app)
    assert result.exit_code == 1
    assert message in result.output


# --- the owner's rewrite, emptying and shortening ------------------------------------------


def test_an_intact_keyed_chain_verifies_and_records_its_key(app):
    add_events(app, 12)
    result = verify(app)
    assert result.exit_code == 0, result.output
    assert "Audit trail intact: 12 events" in result.output
    with app.app_context():
        assert set(db.session.scalars(sa.select(AuditEvent.key_id))) == {"new"}


def test_owner_who_changes_an_event_and_recomputes_the_plain_sha256_chain_is_caught(app):
    add_events(app, 10)
    _rewrite_with_plain_sha256(app, 5, {"details": '{"tampered":true}'})
    result = verify(app)
    assert result.exit_code == 1
    assert "event 5 was altered" in result.output


def test_owner_who_rewrites_events_as_unkeyed_ones_is_caught(app):
    add_events(app, 10)
    _rewrite_with_plain_sha256(app, 5, {"details": '{"tampered":true}'}, unkeyed_from=5)
    result = verify(app)
    assert result.exit_code == 1
    assert "event 5 is an unkeyed SHA-256 event after keyed events" in result.output


def test_owner_who_rewrites_the_whole_chain_as_unkeyed_events_is_caught(app):
    add_events(app, 10)
    _rewrite_with_plain_sha256(app, 1, {"details": '{"tampered":true}'}, unkeyed_from=1)
    result = verify(app)
    assert result.exit_code == 1
    assert "only unkeyed SHA-256 events (1-10) with no keyed seal" in result.output
    # The app appending a keyed event after the forgery does not make it pass.
    add_events(app, 1)
    result = verify(app)
    assert result.exit_code == 1
    assert "event 11 is not the keyed seal" in result.output


def test_deleting_every_event_and_resetting_the_head_is_caught(app):
    add_events(app, 10)
    _as_owner(
        app,
        "DELETE FROM audit_event",
        f"UPDATE audit_chain_head SET last_seq = 0, last_hash = '{GENESIS_HASH}'",
    )
    result = verify(app)
    assert result.exit_code == 1
    assert "intact" not in result.output
    assert "the audit trail is empty" in result.output


def test_an_empty_trail_is_never_reported_intact(app):
    result = verify(app)
    assert result.exit_code == 1
    assert "Audit trail BROKEN after 0 good events: the audit trail is empty" in result.output


# --- keys: rotation, configuration ------------------------------------------------------------


def test_rotated_keys_verify_old_and_new_events_and_a_missing_key_is_named(app, database_uri):
    old_only = make_app(database_uri, AUDIT_HMAC_KEYS=OLD_KEY)
    add_events(old_only, 3)  # signed before the rotation
    with old_only.app_context():
        db.engine.dispose()
    add_events(app, 3)  # the app after the rotation: "new" first
    with app.app_context():
        keys = [
            e.key_id for e in db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq))
        ]
    assert keys == ["old"] * 3 + ["new"] * 3
    assert verify(app).exit_code == 0

    new_only = make_app(database_uri, AUDIT_HMAC_KEYS=NEW_KEY)  # the old key was dropped
    try:
        result = verify(new_only)
        assert result.exit_code == 1
        assert "event 1 names key 'old', which AUDIT_HMAC_KEYS does not hold" in result.output
    finally:
        with new_only.app_context():
            db.engine.dispose()


def test_a_different_secret_under_the_same_key_id_breaks_the_chain(app, database_uri):
    add_events(app, 3)
    impostor = make_app(database_uri, AUDIT_HMAC_KEYS=f"new:{secrets.token_hex(32)},{OLD_KEY}")
    try:
        result = verify(impostor)
        assert result.exit_code == 1
        assert "event 1 was altered" in result.output
    finally:
        with impostor.app_context():
            db.engine.dispose()


def test_production_refuses_to_start_without_audit_keys(monkeypatch):
    monkeypatch.delenv("AUDIT_HMAC_KEYS", raising=False)
    with pytest.raises(RuntimeError, match="AUDIT_HMAC_KEYS must be set in production"):
        create_app(
            {
                "CLINIC_ENV": "production",
                "SECRET_KEY": secrets.token_hex(32),
                "ALLOWED_HOSTS": "localhost",
                "SQLALCHEMY_DATABASE_URI": "sqlite://",
            }
        )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("k1:" + "s" * 31, "the secret of key 'k1' is shorter than 32 characters"),
        ("k1:" + "s" * 32 + ",k1:" + "t" * 32, "key id 'k1' is listed twice"),
        ("no-secret-given", "entry 1 is not ID:SECRET"),
        ("k" * 17 + ":" + "s" * 32, "entry 1 is not ID:SECRET"),
        ("k1:" + "s" * 32 + ",bad id:" + "s" * 32, "entry 2 is not ID:SECRET"),
    ],
)
def test_malformed_keys_are_refused_without_showing_a_secret(value, message):
    with pytest.raises(ValueError, match=message) as refused:
        parse_keys(value)
    assert "s" * 31 not in str(refused.value)


def test_keys_at_the_edges_of_their_rules_are_accepted():
    keys = parse_keys(" " + "k" * 16 + ":" + "s" * 32 + " , a.b_c-1:" + "t" * 40)
    assert keys.current_id == "k" * 16
    assert keys.secret("a.b_c-1") == b"t" * 40


def test_development_generates_a_key_once_under_instance(monkeypatch, tmp_path):
    import config

    monkeypatch.setattr(config, "INSTANCE_DIR", tmp_path)
    monkeypatch.delenv("AUDIT_HMAC_KEYS", raising=False)
    settings = {"CLINIC_ENV": "development", "SQLALCHEMY_DATABASE_URI": "sqlite://"}
    first = create_app(settings).extensions["clinic_audit_keys"]
    second = create_app(settings).extensions["clinic_audit_keys"]
    assert first.current_id == "dev"
    assert first.current_secret == second.current_secret
    assert (tmp_path / "audit_hmac_key").stat().st_mode & 0o077 == 0


# --- anchors -----------------------------------------------------------------------------------


def test_anchor_exports_the_head_and_verify_checks_the_chain_against_it(app, tmp_path):
    add_events(app, 10)
    runner = app.test_cli_runner()
    printed = runner.invoke(args=["audit", "anchor"])
    assert printed.exit_code == 0, printed.output
    anchor = json.loads(printed.output)
    with app.app_context():
        tenth = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.seq == 10))
        assert anchor["seq"] == 10 and anchor["hash"] == tenth.hash and anchor["key_id"] == "new"
        assert anchor["occurred_at"].startswith(tenth.occurred_at.date().isoformat())
    path = tmp_path / "anchor.json"
    assert runner.invoke(args=["audit", "anchor", "--output", str(path)]).exit_code == 0
    assert json.loads(path.read_text()) == anchor

    add_events(app, 2)  # the chain grows past its anchor: still fine
    result = verify(app, "--anchor", str(path))
    assert result.exit_code == 0, result.output
    assert "matches 1 anchor(s)" in result.output


def test_a_chain_shortened_behind_its_anchor_is_broken(app, tmp_path):
    add_events(app, 10)
    path = tmp_path / "anchor.json"
    app.test_cli_runner().invoke(args=["audit", "anchor", "-o", str(path)])
    with app.app_context():
        seventh = db.session.scalar(sa.select(AuditEvent.hash).where(AuditEvent.seq == 7))
    _as_owner(
        app,
        "DELETE FROM audit_event WHERE seq > 7",
        f"UPDATE audit_chain_head SET last_seq = 7, last_hash = '{seventh}'",
    )
    assert verify(app).exit_code == 0  # without the anchor, nothing shows
    result = verify(app, "--anchor", str(path))
    assert result.exit_code == 1
    assert "the chain ends at event 7 but an anchor names event 10" in result.output


def test_a_chain_rewritten_at_its_anchor_is_broken(app, tmp_path):
    add_events(app, 10)
    path = tmp_path / "anchor.json"
    app.test_cli_runner().invoke(args=["audit", "anchor", "-o", str(path)])
    anchor = json.loads(path.read_text())
    anchor["hash"] = "0" * 64  # what the chain held when the anchor was taken, elsewhere
    path.write_text(json.dumps(anchor))
    result = verify(app, "--anchor", str(path))
    assert result.exit_code == 1
    assert "event 10 does not match the anchor" in result.output


def test_an_empty_chain_has_no_anchor(app):
    result = app.test_cli_runner().invoke(args=["audit", "anchor"])
    assert result.exit_code == 1
    assert "The audit trail is empty: nothing to anchor." in result.output


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"seq": 1}',
        '{"seq": 0, "hash": "' + "a" * 64 + '"}',
        '{"seq": 1, "hash": "xyz"}',
    ],
)
def test_a_file_that_is_not_an_anchor_is_refused(app, tmp_path, content):
    add_events(app, 1)
    path = tmp_path / "anchor.json"
    path.write_text(content)
    result = verify(app, "--anchor", str(path))
    assert result.exit_code == 2
    assert "not an audit chain anchor" in result.output


def test_audit_commands_describe_themselves(app):
    runner = app.test_cli_runner()
    group = runner.invoke(args=["audit", "--help"])
    assert group.exit_code == 0
    for command in ("verify", "anchor", "grant-app-role"):
        assert command in group.output
    assert "--anchor" in runner.invoke(args=["audit", "verify", "--help"]).output
    assert "--output" in runner.invoke(args=["audit", "anchor", "--help"]).output
    assert "--execute" in runner.invoke(args=["audit", "grant-app-role", "--help"]).output


# --- the app's database role -----------------------------------------------------------------


def test_the_app_role_is_granted_insert_and_select_on_events_only():
    statements = app_role_grants(
        "clinic_app", "public", ["audit_event", "audit_chain_head", "patient"], lambda n: f'"{n}"'
    )
    assert 'GRANT SELECT, INSERT ON "public"."audit_event" TO "clinic_app"' in statements
    assert 'GRANT SELECT, UPDATE ON "public"."audit_chain_head" TO "clinic_app"' in statements
    event_grants = [s for s in statements if "audit_event" in s]
    assert len(event_grants) == 1
    assert not any(word in event_grants[0] for word in ("UPDATE", "DELETE", "TRUNCATE"))
    assert statements[0] == 'REVOKE ALL ON ALL TABLES IN SCHEMA "public" FROM "clinic_app"'


@pytest.mark.skipif(not ON_POSTGRES, reason="the triggers are read from pg_trigger")
def test_no_table_whose_triggers_refuse_delete_is_granted_delete(app):
    """The append-only records (audit trail, enrollment corrections, dose ledger, orders):
    the app's role is not granted what their triggers refuse, so a new append-only table
    without its entry in TABLE_PRIVILEGES fails here."""
    from clinic.audit.cli import DEFAULT_PRIVILEGES, TABLE_PRIVILEGES

    with app.app_context():
        guarded = set(
            db.session.scalars(
                sa.text(
                    "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c "
                    "ON c.oid = t.tgrelid WHERE NOT t.tgisinternal AND (t.tgtype & 8) <> 0"
                )
            )
        )
    assert {"audit_event", "dose_entry", "enrollment_correction", "medication_order"} <= guarded
    granted = {table: TABLE_PRIVILEGES.get(table, DEFAULT_PRIVILEGES) for table in guarded}
    assert {table: p for table, p in granted.items() if "DELETE" in p} == {}


@pytest.mark.skipif(ON_POSTGRES, reason="on PostgreSQL the role is granted for real below")
def test_sqlite_has_no_roles_to_grant(app):
    result = app.test_cli_runner().invoke(args=["audit", "grant-app-role", "clinic_app"])
    assert result.exit_code == 1
    assert "SQLite has no database roles" in result.output


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite has no database roles")
def test_the_owner_role_is_refused_as_the_app_role(app):
    with app.app_context():
        owner = db.session.scalar(sa.text("SELECT current_user"))
    result = app.test_cli_runner().invoke(args=["audit", "grant-app-role", owner])
    assert result.exit_code == 1
    assert "superuser or owns the tables" in result.output


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite has no database roles")
def test_the_app_role_inserts_and_reads_events_but_cannot_change_them(app, database_uri):
    role = f"clinic_app_{uuid.uuid4().hex[:8]}"
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        granted = app.test_cli_runner().invoke(args=["audit", "grant-app-role", role, "--execute"])
        assert granted.exit_code == 0, granted.output
        assert "GRANT SELECT, INSERT ON" in granted.output

        limited_uri = sa.make_url(database_uri).set(username=role)
        limited = make_app(limited_uri.render_as_string(hide_password=False))
        with limited.app_context():
            assert db.session.scalar(sa.text("SELECT current_user")) == role
            record(AuditAction.VIEW, actor=None, entity_type="test", entity_id=1)
            db.session.commit()  # INSERT the event, UPDATE the chain head
            report = verify_chain()
            assert report.ok and report.events == 1
            for statement, refusal in [
                ("UPDATE audit_event SET details = '{}'", "permission denied"),
                ("DELETE FROM audit_event", "permission denied"),
                ("TRUNCATE audit_event", "permission denied"),
                ("ALTER TABLE audit_event DISABLE TRIGGER USER", "must be owner"),
                ("DROP TRIGGER audit_event_no_update_delete ON audit_event", "must be owner"),
                ("DELETE FROM audit_chain_head", "permission denied"),
            ]:
                with (
                    pytest.raises(sa.exc.ProgrammingError, match=refusal),
                    db.engine.begin() as conn,
                ):
                    conn.execute(sa.text(statement))
            db.session.remove()
            db.engine.dispose()
    finally:
        with app.app_context(), db.engine.begin() as conn:
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
            conn.execute(sa.text(f'DROP ROLE "{role}"'))


# --- the migration that introduced keys ------------------------------------------------------


def _trigger_names(conn) -> set[str]:
    if conn.dialect.name == "postgresql":
        query = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_event'::regclass"
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_event'"
    return set(conn.execute(sa.text(query)).scalars()) - {None}


def _append_only_triggers(conn) -> set[str]:
    return {n for n in _trigger_names(conn) if n.startswith("audit_event_no_")}


def test_key_migration_keeps_the_append_only_triggers_both_ways(app):
    expected = (
        {"audit_event_no_update_delete", "audit_event_no_truncate"}
        if ON_POSTGRES
        else {"audit_event_no_update", "audit_event_no_delete"}
    )
    with app.app_context():
        with db.engine.connect() as conn:
            assert _append_only_triggers(conn) == expected
        downgrade(revision=BEFORE_KEYS)
        with db.engine.connect() as conn:
            assert _append_only_triggers(conn) == expected
            assert "key_id" not in {c["name"] for c in sa.inspect(conn).get_columns("audit_event")}
        upgrade()
        with db.engine.connect() as conn:
            assert _append_only_triggers(conn) == expected
        add_events(app, 1)
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_event SET details = '{}'"))
        assert verify_chain().ok


def _insert_unkeyed_events(count: int) -> str:
    """Events as the release before keys wrote them (plain SHA-256, no key_id column)."""
    columns = [
        sa.column(n, UTCDateTime(timezone=True)) if n == "occurred_at" else sa.column(n)
        for n in (*LEGACY_HASHED_FIELDS, "prev_hash", "hash")
    ]
    table = sa.table("audit_event", *columns)
    prev = GENESIS_HASH
    start = dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)
    for seq in range(1, count + 1):
        fields = {
            "seq": seq,
            "occurred_at": start + dt.timedelta(minutes=seq),
            "user_id": None,
            "username": None,
            "role": None,
            "site_id": None,
            "action": "view",
            "entity_type": "test",
            "entity_id": str(seq),
            "patient_id": None,
            "outcome": "success",
            "ip": "192.0.2.1",
            "request_id": None,
            "details": "{}",
        }
        fields["prev_hash"] = prev
        fields["hash"] = prev = legacy_event_hash(prev, fields)
        db.session.execute(sa.insert(table).values(**fields))
    db.session.execute(
        sa.text("UPDATE audit_chain_head SET last_seq = :s, last_hash = :h WHERE id = 1"),
        {"s": count, "h": prev},
    )
    db.session.commit()
    return prev


def test_key_migration_seals_the_unkeyed_events_so_they_still_verify(app):
    with app.app_context():
        downgrade(revision=BEFORE_KEYS)
        legacy_head = _insert_unkeyed_events(5)
        upgrade()
        seal = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.seq == 6))
        assert seal.action == AuditAction.CHAIN_SEALED and seal.entity_type == "audit_chain"
        assert seal.key_id == "new" and seal.prev_hash == legacy_head
        assert json.loads(seal.details) == {"legacy_events": 5, "legacy_head": legacy_head}
        db.session.remove()
    add_events(app, 2)
    result = verify(app)
    assert result.exit_code == 0, result.output
    assert "Audit trail intact: 8 events" in result.output


def test_a_sealed_unkeyed_event_rewritten_with_plain_sha256_is_caught(app):
    with app.app_context():
        downgrade(revision=BEFORE_KEYS)
        _insert_unkeyed_events(5)
        upgrade()
        db.session.remove()
    # The owner rewrites event 2 and every later link, the seal's prev_hash included.
    _rewrite_with_plain_sha256(app, 2, {"ip": "203.0.113.66"})
    result = verify(app)
    assert result.exit_code == 1
    assert "event 6 was altered" in result.output


def test_key_migration_on_an_empty_trail_adds_no_event(app):
    with app.app_context():
        downgrade(revision=BEFORE_KEYS)
        upgrade()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == 0
