"""The backup's files: created private (0600) under a temporary name, fsynced, then given
their final name atomically without ever replacing a file; their size and SHA-256; the
database file of an SQLite engine and its sidecars (``-wal``, ``-shm``, ``-journal``)."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import sqlalchemy as sa

from clinic.backup.errors import BackupRefused

FILE_MODE = 0o600


def _sha256_of(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _new_private_file(directory: Path, name: str) -> Path:
    """An empty file only the owner can read (0600), under a name nobody else uses."""
    path = directory / f".{name}.{uuid.uuid4().hex[:12]}.partial"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.close(fd)
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(temporary: Path, final: Path) -> None:
    """Give ``temporary`` its final name atomically, never replacing a file: a hard link
    fails when ``final`` exists (a rename would silently overwrite it)."""
    os.chmod(temporary, FILE_MODE)
    _fsync(temporary)
    try:
        os.link(temporary, final)
    except FileExistsError:
        raise BackupRefused(f"{final} exists: a backup never overwrites a file") from None
    except OSError:
        # A file system without hard links (some network shares): rename, after checking.
        if final.exists():
            raise BackupRefused(f"{final} exists: a backup never overwrites a file") from None
        os.rename(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync(final.parent)


def _remove_sqlite_sidecars(path: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def sqlite_file(engine: sa.Engine) -> Path:
    """The database file of an SQLite engine; ``BackupRefused`` for an in-memory one."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupRefused("only an SQLite database in a file (sqlite:///PATH) can be backed up")
    return Path(database)
