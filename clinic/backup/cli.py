"""``flask backup create|restore``: back up the database, restore it into an empty one."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import AppGroup

from clinic.backup import BackupError, create_backup, restore_backup
from clinic.extensions import db

backup_cli = AppGroup(
    "backup",
    help="Back up the configured database (DATABASE_URL) to a file, and restore a backup "
    "into an empty database. SQLite: a copy through SQLite's online backup API. "
    "PostgreSQL: pg_dump --format=custom, restored by pg_restore (the client tools must be "
    "of the server's major version or newer). Each backup has a manifest beside it "
    "(PATH.manifest.json: per-table row counts and SHA-256 hashes, taken in the backup's "
    "snapshot), signed with an HMAC-SHA256 under the newest key of AUDIT_HMAC_KEYS, that "
    "restore verifies before it writes anything. Exit status: 0 done, 1 failed, 2 refused (nothing "
    "written).",
)

PG_BIN_OPTION = click.option(
    "--pg-bin",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="PostgreSQL: the directory holding pg_dump and pg_restore (default: the PATH), "
    "e.g. /usr/lib/postgresql/16/bin.",
)


def _fail(what: str, error: BackupError) -> None:
    word = "refused" if error.exit_code == 2 else "FAILED"
    click.echo(f"{what} {word}: {error}", err=True)
    sys.exit(error.exit_code)


@backup_cli.command("create")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@PG_BIN_OPTION
def create_command(path: Path, pg_bin: Path | None) -> None:
    """Back up the database to PATH, consistently while the app keeps running.

    Writes PATH and PATH.manifest.json, each atomically (a temporary file, named at the
    end) and readable by the owner only (0600). Refuses (exit 2) when either exists. The
    manifest is signed (HMAC-SHA256) with the newest key of AUDIT_HMAC_KEYS: keep that key
    listed for as long as the backup may be restored. PostgreSQL:
    the connection is passed to pg_dump through PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE,
    never on its command line. Records an audit event (no PHI) and prints the tables,
    rows, bytes and seconds."""
    try:
        result = create_backup(path, pg_bin=pg_bin)
    except BackupError as error:
        _fail("Backup", error)
        return
    click.echo(
        f"Backup written to {result.path}: {result.tables} tables, {result.rows} rows, "
        f"{result.bytes} bytes in {result.seconds:.1f} s."
    )
    click.echo(f"Manifest (row counts and hashes per table): {result.manifest_path}.")


@backup_cli.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--no-manifest",
    is_flag=True,
    help="Restore without PATH.manifest.json: skips both its signature and the content "
    "check (the file's hash and the restored rows). Only for a backup you trust.",
)
@PG_BIN_OPTION
def restore_command(path: Path, no_manifest: bool, pg_bin: Path | None) -> None:
    """Restore the backup at PATH into the configured database, which must be empty.

    Refuses (exit 2) when the database holds any table (SQLite: use a new file;
    PostgreSQL: a new database, e.g. createdb NAME; there is no --clean). First verifies
    the manifest's signature (an HMAC-SHA256 under the AUDIT_HMAC_KEYS key its key id
    names) and checks the file against the manifest: exit 1, nothing restored, when the
    signature is missing, of a key not configured or wrong, or the file is corrupted or
    truncated. Then restores
    (PostgreSQL: in one transaction, objects owned by the role restoring), then compares
    every table's row count and hash with the manifest, verifies the audit chain (as
    'flask audit verify' does) and reports the migration revision. Exit 1 when the rows
    differ or the chain is broken. Afterwards on PostgreSQL, grant the app's role again:
    flask audit grant-app-role ROLE --execute."""
    try:
        result = restore_backup(path, use_manifest=not no_manifest, pg_bin=pg_bin)
    except BackupError as error:
        _fail("Restore", error)
        return
    click.echo(
        f"Restored {result.path} into {db.engine.url.render_as_string(hide_password=True)}: "
        f"{result.tables} tables, {result.rows} rows, {result.bytes} bytes in "
        f"{result.seconds:.1f} s."
    )
    if result.verified:
        click.echo(
            f"Contents match the manifest: {result.tables} tables, {result.rows} rows "
            "(row counts and hashes)."
        )
    else:
        click.echo("Contents NOT checked: restored without a manifest (--no-manifest).")
    if result.at_head:
        click.echo(f"Migrations at head ({', '.join(result.heads)}).")
    else:
        click.echo(
            f"Migrations NOT at head: the database is at {', '.join(result.revision) or 'none'}, "
            f"the code at {', '.join(result.heads)}. Run 'flask db upgrade'."
        )
    if not result.recorded:
        click.echo(
            "The restore could not be recorded in the audit trail (the restored schema is "
            "older than the code's): run 'flask db upgrade'.",
            err=True,
        )
    chain = result.chain
    if not chain.ok:
        click.echo(
            f"Audit trail BROKEN after {chain.events} good events: {chain.problem}.", err=True
        )
        sys.exit(1)
    click.echo(f"Audit trail intact: {chain.events} events; last hash {chain.last_hash}.")
