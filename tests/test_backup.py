"""``flask backup create|restore`` on the engine under test: SQLite's online backup API,
or (``TEST_DATABASE_URL``) pg_dump/pg_restore with the manifest taken in pg_dump's
snapshot. Backups are taken while another thread writes through the app's services."""

from __future__ import annotations

import json
import re
import secrets
import stat
import subprocess
import threading
import uuid

import pytest
import sqlalchemy as sa
from flask.cli import FlaskGroup

from clinic import backup
from clinic.audit import AuditAction, record
from clinic.audit.models import AuditEvent
from clinic.audit.services import verify_chain
from clinic.extensions import db
from tests.conftest import ON_POSTGRES, _pg_url, make_app, patient_factory

only_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="pg_dump: PostgreSQL only")
CREATED = re.compile(r"Backup written to .+: (\d+) tables, (\d+) rows, (\d+) bytes in [\d.]+ s\.")


def flask(app, *args: str):
    """Run ``flask ARGS`` against ``app`` as the ``flask`` program does."""
    cli = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)
    return app.test_cli_runner().invoke(cli, args=list(args))


@pytest.fixture
def backups(tmp_path):
    """A directory of its own for the backups (the test's SQLite database is beside it)."""
    directory = tmp_path / "backups"
    directory.mkdir()
    return directory


@pytest.fixture
def empty_database(tmp_path):
    """The URI of a database without tables: a new SQLite file, or on PostgreSQL a scratch
    database of a unique name, dropped afterwards."""
    if not ON_POSTGRES:
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    name = f"clinic_backup_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(_pg_url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield _pg_url(name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def restore_app(empty_database):
    """The app configured with the empty database, to restore into."""
    app = make_app(empty_database)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def table_count(app) -> int:
    with app.app_context():
        return len(sa.inspect(db.engine).get_table_names())


def digests(app) -> dict[str, backup.TableDigest]:
    with app.app_context(), db.engine.connect() as conn, conn.begin():
        return backup.table_digests(conn)


class Writer(threading.Thread):
    """Another app on the same database (its own engine, as another server process would
    have) writing through the app's services until stopped: a patient registered (with its
    audit event) every fifth write, an audit event on the others; one commit each."""

    def __init__(self, database_uri: str, site: int) -> None:
        super().__init__(daemon=True)
        self.app = make_app(database_uri)
        self.make_patient = patient_factory(self.app, site)
        self.writes, self.errors = 0, []
        self.stopping, self.started_writing = threading.Event(), threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                if self.writes % 5 == 0:
                    self.make_patient("Writer", f"Number{self.writes}")
                else:
                    with self.app.app_context():
                        record(AuditAction.VIEW, actor=None, entity_type="backup_test")
                        db.session.commit()
                self.writes += 1
                if self.writes >= 3:
                    self.started_writing.set()
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)
            self.started_writing.set()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        with self.app.app_context():
            db.engine.dispose()


def test_a_backup_taken_while_the_app_writes_restores_exactly_its_snapshot(
    app, database_uri, records, site, restore_app, backups
):
    path = backups / "clinic.backup"
    writer = Writer(database_uri, site)
    writer.start()
    try:
        assert writer.started_writing.wait(timeout=20)
        before = writer.writes
        created = flask(app, "backup", "create", str(path))
        during = writer.writes - before
    finally:
        writer.stop()
    assert writer.errors == []
    assert created.exit_code == 0, created.output
    assert during > 0, "the writer wrote nothing while the backup ran"
    manifest_file = backup.manifest_path(path)
    for written in (path, manifest_file):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert [p.name for p in backups.iterdir() if p.name.startswith(".")] == []
    manifest = backup.Manifest.from_json(manifest_file.read_text())
    tables, rows, size = map(int, CREATED.search(created.output).groups())
    assert (tables, rows, size) == (len(manifest.tables), manifest.rows, path.stat().st_size)
    assert manifest.tables["patient"].rows > 1 and manifest.tables["audit_event"].rows > 3
    with app.app_context():
        # The source moved on after the snapshot (the writer, then the backup's own event).
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) > (
            manifest.tables["audit_event"].rows
        )
        event = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.entity_type == "database_backup")
        ).one()
        assert (event.action, event.user_id) == ("export", None)
        assert json.loads(event.details)["rows"] == manifest.rows

    restored = flask(restore_app, "backup", "restore", str(path))

    assert restored.exit_code == 0, restored.output
    assert "Contents match the manifest" in restored.output
    assert "Audit trail intact" in restored.output
    assert "Migrations at head" in restored.output
    # Checked again here, table by table: the same rows as the snapshot, plus the restore's
    # own audit event (and the chain head that moved with it).
    after = digests(restore_app)
    changed = {"audit_event", "audit_chain_head"}
    assert {n: d for n, d in after.items() if n not in changed} == {
        n: d for n, d in manifest.tables.items() if n not in changed
    }
    assert after["audit_event"].rows == manifest.tables["audit_event"].rows + 1
    with restore_app.app_context():
        assert verify_chain().ok
        last = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert (last.action, last.entity_type, last.user_id) == ("create", "database_restore", None)

    # Once restored, the database holds tables: a second restore is refused, unchanged.
    refused = flask(restore_app, "backup", "restore", str(path))
    assert refused.exit_code == 2, refused.output
    assert "holds" in refused.output and "restore only into" in refused.output
    assert digests(restore_app) == after

    # The comparison fails on a changed row and on a missing one.
    with restore_app.app_context():
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE site SET name = 'Changed' WHERE id = :id"), {"id": site})
            conn.execute(sa.text("DELETE FROM alembic_version"))
        problems = backup.compare_to_manifest(manifest)
    assert [p for p in problems if p.split(":")[0] not in {f"table {n}" for n in changed}] == [
        "table alembic_version: 0 rows, the backup has 1",
        f"table site: {manifest.tables['site'].rows} rows as in the backup, but their "
        "content differs",
    ]


def test_create_refuses_a_path_that_exists(app, backups):
    path = backups / "clinic.backup"
    path.write_bytes(b"an older backup")
    refused = flask(app, "backup", "create", str(path))
    assert refused.exit_code == 2
    assert "exists: a backup never overwrites a file" in refused.output
    assert path.read_bytes() == b"an older backup"
    path.unlink()
    backup.manifest_path(path).write_text("{}")
    assert flask(app, "backup", "create", str(path)).exit_code == 2
    assert sorted(p.name for p in backups.iterdir()) == ["clinic.backup.manifest.json"]


def test_a_damaged_backup_restores_nothing_and_a_bare_one_needs_the_flag(app, restore_app, backups):
    path = backups / "clinic.backup"
    assert flask(app, "backup", "create", str(path)).exit_code == 0
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])

    checked = flask(restore_app, "backup", "restore", str(path))
    unchecked = flask(restore_app, "backup", "restore", "--no-manifest", str(path))
    path.write_bytes(b"not a backup at all" * 100)
    garbage = flask(restore_app, "backup", "restore", "--no-manifest", str(path))

    assert checked.exit_code == 1
    assert "does not match its manifest" in checked.output
    assert "Nothing was restored" in checked.output
    for failed in (unchecked, garbage):
        assert failed.exit_code == 1, failed.output
        assert failed.output.startswith("Restore FAILED: "), failed.output
        assert "Traceback" not in failed.output
    assert table_count(restore_app) == 0

    # The intact file without its manifest: refused unless asked for, then unchecked.
    path.write_bytes(good)
    backup.manifest_path(path).unlink()
    refused = flask(restore_app, "backup", "restore", str(path))
    assert refused.exit_code == 1
    assert "no manifest" in refused.output and "--no-manifest" in refused.output
    assert table_count(restore_app) == 0
    restored = flask(restore_app, "backup", "restore", "--no-manifest", str(path))
    assert restored.exit_code == 0, restored.output
    assert "Contents NOT checked" in restored.output
    assert "Audit trail intact" in restored.output


def keyed_app(database_uri: str, keys: str):
    """An app on ``database_uri`` whose AUDIT_HMAC_KEYS is ``keys``."""
    return make_app(database_uri, AUDIT_HMAC_KEYS=keys)


def dispose(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_a_manifest_without_its_signature_restores_nothing(app, restore_app, backups):
    path = backups / "clinic.backup"
    assert flask(app, "backup", "create", str(path)).exit_code == 0
    manifest_file = backup.manifest_path(path)
    manifest = json.loads(manifest_file.read_text())
    assert set(manifest["signature"]) == {"key_id", "hmac"}
    assert manifest["signature"]["key_id"] == "test"
    del manifest["signature"]
    manifest_file.write_text(json.dumps(manifest))

    refused = flask(restore_app, "backup", "restore", str(path))

    assert refused.exit_code == 1, refused.output
    assert "the manifest is not signed" in refused.output
    assert "Nothing was restored" in refused.output
    assert table_count(restore_app) == 0


def test_a_manifest_signed_with_another_key_restores_nothing(app, empty_database, backups):
    path = backups / "clinic.backup"
    assert flask(app, "backup", "create", str(path)).exit_code == 0
    other_secret, same_id_secret = secrets.token_hex(32), secrets.token_hex(32)
    unknown_id = keyed_app(empty_database, f"other:{other_secret}")
    wrong_secret = keyed_app(empty_database, f"test:{same_id_secret}")
    try:
        unknown = flask(unknown_id, "backup", "restore", str(path))
        mismatch = flask(wrong_secret, "backup", "restore", str(path))
        assert table_count(unknown_id) == 0
    finally:
        dispose(unknown_id)
        dispose(wrong_secret)

    assert unknown.exit_code == 1, unknown.output
    assert "signed with key 'test', which AUDIT_HMAC_KEYS does not list" in unknown.output
    assert mismatch.exit_code == 1, mismatch.output
    assert "signature (key 'test') does not match" in mismatch.output
    for refused in (unknown, mismatch):
        assert "Nothing was restored" in refused.output
        assert "Contents match" not in refused.output
        assert other_secret not in refused.output and same_id_secret not in refused.output
        assert app.config["AUDIT_HMAC_KEYS"].split(":")[1] not in refused.output


def test_a_manifest_signed_with_an_older_key_still_listed_restores(app, empty_database, backups):
    path = backups / "clinic.backup"
    assert flask(app, "backup", "create", str(path)).exit_code == 0
    # The key was rotated since: a new one first, the backup's (``test``) still listed.
    rotated = keyed_app(
        empty_database, f"new:{secrets.token_hex(32)},{app.config['AUDIT_HMAC_KEYS']}"
    )
    try:
        restored = flask(rotated, "backup", "restore", str(path))
    finally:
        dispose(rotated)

    assert restored.exit_code == 0, restored.output
    assert "Contents match the manifest" in restored.output
    assert "Audit trail intact" in restored.output


def test_help_describes_the_commands(app):
    group = flask(app, "backup", "--help").output
    assert "create" in group and "restore" in group and "manifest" in group
    create = flask(app, "backup", "create", "--help").output
    assert "0600" in create and "PGPASSWORD" in create and "--pg-bin" in create
    restore = flask(app, "backup", "restore", "--help").output
    assert "must be empty" in restore and "no --clean" in restore and "--no-manifest" in restore
    assert "signature" in restore and "AUDIT_HMAC_KEYS" in restore
    assert "skips both its signature and the content check" in " ".join(restore.split())
    assert "AUDIT_HMAC_KEYS" in create


def test_the_password_is_given_to_libpq_in_the_environment():
    url = sa.make_url(
        "postgresql+psycopg://clinic:s3cret%40pw@db.example:6432/clinic?sslmode=require"
        "&connect_timeout=5"
    )
    assert backup.libpq_environment(url) == {
        "PGHOST": "db.example",
        "PGPORT": "6432",
        "PGUSER": "clinic",
        "PGPASSWORD": "s3cret@pw",
        "PGDATABASE": "clinic",
        "PGSSLMODE": "require",
        "PGCONNECT_TIMEOUT": "5",
    }


@only_postgres
def test_pg_dump_runs_with_the_password_in_its_environment_only(
    app, database_uri, backups, monkeypatch
):
    # Trust authentication accepts any password: give one, and watch where it goes.
    password = "pw-" + uuid.uuid4().hex
    with_password = sa.make_url(database_uri).set(password=password)
    source = make_app(with_password.render_as_string(hide_password=False))
    launched = []
    real_popen = subprocess.Popen

    def spy(args, **kwargs):
        launched.append((args, kwargs.get("env", {})))
        return real_popen(args, **kwargs)

    monkeypatch.setattr(backup.create.subprocess, "Popen", spy)
    created = flask(source, "backup", "create", str(backups / "clinic.backup"))
    with source.app_context():
        db.engine.dispose()
    assert created.exit_code == 0, created.output
    # pg_dump --version, then the dump itself.
    assert [args[1] for args, _ in launched] == ["--version", "--format=custom"]
    for args, _ in launched:
        assert args[0].endswith("pg_dump")
        assert not any(password in arg for arg in args)
    args, env = launched[1]
    assert env["PGPASSWORD"] == password
    assert any(arg.startswith("--snapshot=") for arg in args)
    assert password not in created.output


@only_postgres
def test_missing_or_too_old_pg_dump_is_refused(app, backups):
    path = backups / "clinic.backup"
    tools = backups / "bin"
    tools.mkdir()
    missing = flask(app, "backup", "create", "--pg-bin", str(tools), str(path))
    assert missing.exit_code == 2
    assert f"pg_dump not found in {tools}" in missing.output
    old = tools / "pg_dump"
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    old.chmod(0o700)
    too_old = flask(app, "backup", "create", "--pg-bin", str(tools), str(path))
    assert too_old.exit_code == 2
    assert re.search(r"pg_dump 9 cannot dump a PostgreSQL \d+ server", too_old.output)
    assert sorted(p.name for p in backups.iterdir()) == ["bin"]
