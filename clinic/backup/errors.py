"""The two ways a backup or restore ends badly, and their exit statuses; the database's
reason for a failed connection, without passwords or rows."""

from __future__ import annotations

import sqlalchemy as sa


class BackupError(Exception):
    """The backup or restore failed (exit status 1): a tool failed, the file is damaged,
    the restored data differs from the manifest."""

    exit_code = 1


class BackupRefused(BackupError):
    """Refused before anything was written (exit status 2): the path exists, the target
    database holds tables, the engine or the tools do not fit."""

    exit_code = 2


def _database_problem(exc: sa.exc.DBAPIError) -> str:
    """The driver's first line (the server's reason; never a password or a row)."""
    lines = str(exc.orig).strip().splitlines()
    return lines[0] if lines else type(exc.orig).__name__
