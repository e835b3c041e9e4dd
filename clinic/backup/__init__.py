"""Backups of the whole database, and their restore into an empty database.

A backup is one file and its manifest beside it (``PATH`` and ``PATH.manifest.json``):

- SQLite: a copy made through SQLite's online backup API (``sqlite3.Connection.backup``)
  in a single step, so it is one consistent snapshot even while the app writes (WAL mode:
  readers never wait for writers). The manifest is computed from the copy itself.
- PostgreSQL: ``pg_dump --format=custom`` of the configured database. The manifest is
  computed in a REPEATABLE READ transaction whose snapshot ``pg_dump`` adopts
  (``pg_export_snapshot()``, ``pg_dump --snapshot``): both see exactly the same rows.

The manifest holds the file's size and SHA-256, the schema's migration revision and, for
every table, its row count and a SHA-256 over its rows in primary-key order
(``table_digests``), signed with an HMAC-SHA256 under the newest audit key
(``AUDIT_HMAC_KEYS``; ``signature``: the key id and the HMAC of the rest's canonical
JSON). Restore verifies the signature (with the key its id names, any listed key) and
checks the file against the manifest before anything is written, restores only into a
database without tables, compares the restored database to the manifest, then checks
the audit chain and the migration revision.

The connection to PostgreSQL is given to ``pg_dump``/``pg_restore`` through the libpq
environment (``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``): the
password never appears in a command line, the process list or the logs. Nothing here
prints or logs row contents: the manifest holds counts and hashes only.

The modules, one per use case: ``manifest`` (the per-table digests and their comparison),
``files`` (private files published atomically), ``postgres`` (libpq environment, client
tools and versions), ``create``, ``restore``, and ``cli`` (``flask backup``).
"""

from clinic.backup.create import BackupResult, create_backup
from clinic.backup.errors import BackupError, BackupRefused
from clinic.backup.files import FILE_MODE, sqlite_file
from clinic.backup.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_SUFFIX,
    Manifest,
    TableDigest,
    compare_to_manifest,
    differences,
    manifest_path,
    migration_heads,
    signature_problem,
    table_digests,
)
from clinic.backup.postgres import LIBPQ_QUERY_ENV, PgTool, libpq_environment, pg_tool
from clinic.backup.restore import RestoreMismatch, RestoreResult, read_manifest, restore_backup

__all__ = [
    "FILE_MODE",
    "LIBPQ_QUERY_ENV",
    "MANIFEST_FORMAT",
    "MANIFEST_SUFFIX",
    "BackupError",
    "BackupRefused",
    "BackupResult",
    "Manifest",
    "PgTool",
    "RestoreMismatch",
    "RestoreResult",
    "TableDigest",
    "compare_to_manifest",
    "create_backup",
    "differences",
    "libpq_environment",
    "manifest_path",
    "migration_heads",
    "pg_tool",
    "read_manifest",
    "restore_backup",
    "signature_problem",
    "sqlite_file",
    "table_digests",
]
