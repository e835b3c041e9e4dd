"""``create_backup``: the configured database to one file and its manifest, consistently
while the app keeps writing. SQLite through its online backup API, the manifest computed
from the copy; PostgreSQL through ``pg_dump --format=custom`` in the snapshot the manifest
is computed in. The manifest is signed with the newest audit key (``AUDIT_HMAC_KEYS``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from clinic.audit import AuditAction, record
from clinic.audit.keys import audit_keys
from clinic.backup.errors import BackupError, BackupRefused, _database_problem
from clinic.backup.files import (
    _new_private_file,
    _publish,
    _remove_sqlite_sidecars,
    _sha256_of,
    sqlite_file,
)
from clinic.backup.manifest import (
    Manifest,
    _revision,
    _snapshot_connection,
    manifest_path,
    table_digests,
)
from clinic.backup.postgres import (
    _conninfo_dbname,
    _server_major,
    _tool_environment,
    _tool_failure,
    pg_tool,
)
from clinic.extensions import db


@dataclass
class BackupResult:
    path: Path
    manifest_path: Path
    tables: int
    rows: int
    bytes: int
    seconds: float


def create_backup(path: Path, *, pg_bin: Path | None = None) -> BackupResult:
    """Back up the configured database to ``path`` and its manifest beside it, both
    written atomically (a temporary file, then its final name) with mode 0600. The
    manifest carries an HMAC-SHA256 under the newest key of ``AUDIT_HMAC_KEYS``
    (``signature``: its key id and the HMAC of the rest), which restore checks.

    Records an ``export`` audit event (entity ``database_backup``, the operator's CLI as
    actor, the path, counts and the file's hash: no PHI) in the database backed up, after
    the snapshot. Raises ``BackupRefused`` when ``path`` or its manifest exists, the
    directory is missing, or the tools do not fit the server; ``BackupError`` when the
    copy fails."""
    started = time.monotonic()
    path = Path(path)
    manifest_file = manifest_path(path)
    for existing in (path, manifest_file):
        if existing.exists() or existing.is_symlink():
            raise BackupRefused(f"{existing} exists: a backup never overwrites a file")
    if not path.parent.is_dir():
        raise BackupRefused(f"{path.parent} is not a directory")
    keys = audit_keys()
    engine = db.engine
    temporary = _new_private_file(path.parent, path.name)
    manifest_temporary: Path | None = None
    try:
        if engine.dialect.name == "sqlite":
            manifest = _sqlite_backup(engine, temporary)
        elif engine.dialect.name == "postgresql":
            manifest = _postgres_backup(engine, temporary, pg_bin)
        else:
            raise BackupRefused(f"backups of {engine.dialect.name} databases are not supported")
        manifest.backup_bytes, manifest.backup_sha256 = _sha256_of(temporary)
        manifest_temporary = _new_private_file(path.parent, manifest_file.name)
        manifest_temporary.write_text(manifest.to_json(keys))
        _publish(temporary, path)
        try:
            _publish(manifest_temporary, manifest_file)
        except BaseException:
            path.unlink(missing_ok=True)  # no backup without its manifest
            raise
    except sa.exc.OperationalError as exc:
        raise BackupError(f"cannot read the database: {_database_problem(exc)}") from None
    finally:
        temporary.unlink(missing_ok=True)
        _remove_sqlite_sidecars(temporary)
        if manifest_temporary is not None:
            manifest_temporary.unlink(missing_ok=True)
    result = BackupResult(
        path,
        manifest_file,
        len(manifest.tables),
        manifest.rows,
        manifest.backup_bytes,
        time.monotonic() - started,
    )
    record(
        AuditAction.EXPORT,
        actor=None,
        entity_type="database_backup",
        details={
            "path": str(path.resolve()),
            "tables": result.tables,
            "rows": result.rows,
            "bytes": result.bytes,
            "sha256": manifest.backup_sha256,
        },
    )
    db.session.commit()
    return result


def _sqlite_backup(engine: sa.Engine, temporary: Path) -> Manifest:
    source_file = sqlite_file(engine)
    if not source_file.is_file():
        raise BackupRefused(f"the database file {source_file} does not exist")
    created_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    source = sqlite3.connect(source_file, timeout=30)
    target = sqlite3.connect(temporary)
    try:
        # One step (pages=-1): a single read transaction, so one snapshot. In steps, a
        # write by another connection between them would restart the copy.
        source.backup(target, pages=-1)
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite backup failed: {exc}") from None
    finally:
        target.close()
        source.close()
    # The manifest is computed from the copy itself, through the models' column types.
    copy = sa.create_engine(f"sqlite:///{temporary}", poolclass=sa.pool.NullPool)
    try:
        with _snapshot_connection(copy) as conn:
            tables = table_digests(conn)
            revision = _revision(conn)
    finally:
        copy.dispose()
    # One self-contained file: out of WAL mode (the app's connections turn it on).
    with contextlib.closing(sqlite3.connect(temporary)) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    _remove_sqlite_sidecars(temporary)
    return Manifest("sqlite", created_at, 0, "", revision, tables)


def _postgres_backup(engine: sa.Engine, temporary: Path, pg_bin: Path | None) -> Manifest:
    pg_dump = pg_tool("pg_dump", pg_bin)
    created_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with _snapshot_connection(engine) as conn:
        server_major = _server_major(conn)
        if pg_dump.major < server_major:
            raise BackupRefused(
                f"pg_dump {pg_dump.major} cannot dump a PostgreSQL {server_major} server: "
                f"install the client tools of version {server_major} or newer "
                "(or give their directory with --pg-bin)"
            )
        # The first statement of the transaction fixes its snapshot; pg_dump adopts it.
        snapshot = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
        process = subprocess.Popen(  # noqa: S603 (no shell; the password is in the environment)
            [
                pg_dump.path,
                "--format=custom",
                f"--snapshot={snapshot}",
                f"--file={temporary}",
                "--no-password",
                f"--dbname={_conninfo_dbname(engine.url)}",
            ],
            env=_tool_environment(engine.url),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # While pg_dump copies, the same snapshot is hashed here.
            tables = table_digests(conn)
            revision = _revision(conn)
        finally:
            _, stderr = process.communicate()
        if process.returncode != 0:
            raise _tool_failure("pg_dump", stderr)
    return Manifest(
        "postgresql",
        created_at,
        0,
        "",
        revision,
        tables,
        server_major=server_major,
        pg_dump_major=pg_dump.major,
    )
