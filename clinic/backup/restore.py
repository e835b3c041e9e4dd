"""``restore_backup``: a backup into a database without tables. The manifest's signature
(an HMAC under ``AUDIT_HMAC_KEYS``) and then the file are checked against it before
anything is written; afterwards every table is compared with
the manifest, the restore is recorded, the audit chain verified and the migration revision
read."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from clinic.audit import AuditAction, record
from clinic.audit.keys import AuditKeys, audit_keys
from clinic.audit.services import ChainReport, verify_chain
from clinic.backup.errors import BackupError, BackupRefused, _database_problem
from clinic.backup.files import _sha256_of, sqlite_file
from clinic.backup.manifest import (
    Manifest,
    _revision,
    _snapshot_connection,
    compare_to_manifest,
    manifest_path,
    migration_heads,
    signature_problem,
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
class RestoreResult:
    path: Path
    tables: int
    rows: int
    bytes: int
    seconds: float
    verified: bool
    chain: ChainReport
    revision: list[str]
    heads: list[str]
    recorded: bool = True

    @property
    def at_head(self) -> bool:
        return self.revision == self.heads


def read_manifest(path: Path, keys: AuditKeys | None = None) -> Manifest:
    """The manifest beside the backup at ``path``, once its signature is verified with the
    key of its ``key_id`` among ``keys`` (default: the app's ``AUDIT_HMAC_KEYS``).
    ``BackupError`` when it is missing, not readable, not signed, signed with a key not
    configured, or its signature does not match (the message names the key id, never a
    secret)."""
    manifest_file = manifest_path(path)
    try:
        text = manifest_file.read_text()
    except FileNotFoundError:
        raise BackupError(
            f"no manifest {manifest_file}: the backup cannot be checked "
            "(--no-manifest restores it unchecked)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupError(f"{manifest_file}: {exc}") from None
    problem = signature_problem(text, keys or audit_keys())
    if problem is not None:
        raise BackupError(
            f"{manifest_file}: {problem}; it cannot be trusted (written or changed without "
            "the deployment's key). Nothing was restored."
        )
    try:
        return Manifest.from_json(text)
    except ValueError as exc:
        raise BackupError(f"{manifest_file}: {exc}") from None


def restore_backup(
    path: Path, *, use_manifest: bool = True, pg_bin: Path | None = None
) -> RestoreResult:
    """Restore the backup at ``path`` into the configured database, which must hold no
    tables (SQLite: a missing or empty file). First, before anything is written, the
    manifest's signature (``read_manifest``) and the file's size and SHA-256. Then, in
    order: compare every table with the
    manifest (``BackupError`` on any difference: do not use that database), record a
    ``create`` audit event (entity ``database_restore``, the CLI as actor, the path and
    the backup's hash; ``recorded`` False when the restored schema cannot take it), verify
    the audit chain and read the migration revision.

    Raises ``BackupRefused`` (nothing written) when the target holds tables, the backup is
    of another engine or the tools do not fit; ``BackupError`` when the manifest's
    signature is missing, of an unknown key or wrong, when the file does not match its
    manifest (corrupted, truncated) or cannot be restored. ``use_manifest=False`` skips
    the manifest altogether: its signature, the file's hash and the restored rows. The
    audit chain and the revision are reported in the result, not raised."""
    started = time.monotonic()
    path = Path(path)
    if not path.is_file():
        raise BackupRefused(f"{path} is not a file")
    manifest = read_manifest(path) if use_manifest else None
    size, sha256 = _sha256_of(path)
    if manifest is not None and (size, sha256) != (manifest.backup_bytes, manifest.backup_sha256):
        raise BackupError(
            f"{path} does not match its manifest ({size} bytes, the manifest says "
            f"{manifest.backup_bytes}; or its SHA-256 differs): the file is corrupted or "
            "truncated. Nothing was restored."
        )
    engine = db.engine
    if manifest is not None and manifest.engine != engine.dialect.name:
        raise BackupRefused(
            f"{path} is a {manifest.engine} backup; the configured database is "
            f"{engine.dialect.name}"
        )
    db.session.remove()
    engine.dispose()
    try:
        if engine.dialect.name == "sqlite":
            _sqlite_restore(engine, path)
        elif engine.dialect.name == "postgresql":
            _postgres_restore(engine, path, manifest, pg_bin)
        else:
            raise BackupRefused(f"restoring {engine.dialect.name} databases is not supported")
    except sa.exc.OperationalError as exc:
        raise BackupRefused(
            f"cannot open the database to restore into: {_database_problem(exc)}"
        ) from None
    engine.dispose()
    problems = compare_to_manifest(manifest) if manifest is not None else []
    if problems:
        raise RestoreMismatch(problems)
    with _snapshot_connection(engine) as conn:
        restored = table_digests(conn) if manifest is None else manifest.tables
        revision = _revision(conn)
    recorded = True
    try:
        record(
            AuditAction.CREATE,
            actor=None,
            entity_type="database_restore",
            details={
                "path": str(path.resolve()),
                "sha256": sha256,
                "verified": manifest is not None,
            },
        )
        db.session.commit()
    except sa.exc.SQLAlchemyError:
        # A backup of an older schema than the code's: 'flask db upgrade' first.
        db.session.rollback()
        recorded = False
    try:
        chain = verify_chain()
    except sa.exc.SQLAlchemyError as exc:
        chain = ChainReport(0, False, f"the trail could not be read ({type(exc).__name__})")
    db.session.remove()
    return RestoreResult(
        recorded=recorded,
        path=path,
        tables=len(restored),
        rows=sum(t.rows for t in restored.values()),
        bytes=size,
        seconds=time.monotonic() - started,
        verified=manifest is not None,
        chain=chain,
        revision=revision,
        heads=migration_heads(),
    )


class RestoreMismatch(BackupError):
    """The restored database differs from the backup's manifest."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "the restored database does NOT match the backup's manifest: "
            + "; ".join(problems)
            + ". Do not use it: empty it and restore again."
        )


def _sqlite_tables(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]


def _sqlite_restore(engine: sa.Engine, path: Path) -> None:
    target_file = sqlite_file(engine)
    try:
        source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"{path} cannot be opened as an SQLite database: {exc}") from None
    try:
        try:
            check = source.execute("PRAGMA quick_check").fetchone()[0]
            tables = _sqlite_tables(source)
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{path} is not a readable SQLite database: {exc}") from None
        if check != "ok":
            raise BackupError(f"{path} is damaged (SQLite quick_check: {check})")
        if tables == 0:
            raise BackupError(f"{path} holds no tables: not a backup of the app's database")
        try:
            target = sqlite3.connect(target_file, timeout=30)
        except sqlite3.Error as exc:
            raise BackupRefused(f"cannot open {target_file}: {exc}") from None
        try:
            if _sqlite_tables(target):
                raise BackupRefused(
                    f"the database {target_file} holds tables: restore only into a new or "
                    "empty database"
                )
            source.backup(target, pages=-1)
            target.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise BackupError(f"SQLite restore failed: {exc}") from None
        finally:
            target.close()
    finally:
        source.close()


def _postgres_restore(
    engine: sa.Engine, path: Path, manifest: Manifest | None, pg_bin: Path | None
) -> None:
    pg_restore = pg_tool("pg_restore", pg_bin)
    if (
        manifest is not None
        and manifest.pg_dump_major
        and pg_restore.major < manifest.pg_dump_major
    ):
        raise BackupRefused(
            f"the backup was made by pg_dump {manifest.pg_dump_major}; pg_restore "
            f"{pg_restore.major} cannot read it: use the client tools of version "
            f"{manifest.pg_dump_major} or newer (--pg-bin)"
        )
    with engine.connect() as conn:
        server_major = _server_major(conn)
        tables = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_catalog.pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            )
        ).scalar_one()
    if tables:
        raise BackupRefused(
            f"the database {engine.url.database} holds {tables} tables: restore only into "
            "an empty database (create one: createdb NAME)"
        )
    if manifest is not None and manifest.server_major and server_major < manifest.server_major:
        raise BackupRefused(
            f"the backup is of a PostgreSQL {manifest.server_major} server; this server is "
            f"{server_major}: restore into a server of that version or newer"
        )
    env = _tool_environment(engine.url)
    listing = subprocess.run(  # noqa: S603 (no shell)
        [pg_restore.path, "--list", str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.returncode != 0:
        raise _tool_failure("pg_restore (reading the backup)", listing.stderr)
    restored = subprocess.run(  # noqa: S603 (no shell; the password is in the environment)
        [
            pg_restore.path,
            # All or nothing: on any error the database is left as empty as it was.
            "--single-transaction",
            "--exit-on-error",
            # Objects belong to the role restoring; grant the app's role again afterwards
            # (flask audit grant-app-role ROLE --execute).
            "--no-owner",
            "--no-acl",
            "--no-password",
            f"--dbname={_conninfo_dbname(engine.url)}",
            str(path),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if restored.returncode != 0:
        raise _tool_failure("pg_restore", restored.stderr)
