"""PostgreSQL's client tools: the libpq environment that connects ``pg_dump`` and
``pg_restore`` (the password never on a command line), finding the tools and their major
version, the server's major version, and a tool's failure as a ``BackupError``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from clinic.backup.errors import BackupError, BackupRefused

# The libpq settings a SQLAlchemy URL's query string may carry, and their variables.
LIBPQ_QUERY_ENV = {
    "host": "PGHOST",
    "port": "PGPORT",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "application_name": "PGAPPNAME",
}
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)")


def libpq_environment(url: sa.URL) -> dict[str, str]:
    """The libpq variables that connect ``pg_dump``/``pg_restore`` where ``url`` does
    (``PGPASSWORD`` included when the URL has a password): given as the environment, never
    as arguments, so the password is not in the process list. Query parameters that are
    not libpq settings (driver options) are left out."""
    env: dict[str, str] = {}
    if url.host:
        env["PGHOST"] = url.host
    if url.port:
        env["PGPORT"] = str(url.port)
    if url.username:
        env["PGUSER"] = url.username
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    if url.database:
        env["PGDATABASE"] = url.database
    for key, value in url.query.items():
        variable = LIBPQ_QUERY_ENV.get(key)
        if variable is not None:
            env[variable] = value if isinstance(value, str) else value[-1]
    return env


def _tool_environment(url: sa.URL) -> dict[str, str]:
    return {**os.environ, **libpq_environment(url)}


def _conninfo_dbname(url: sa.URL) -> str:
    """``dbname='NAME'`` for ``--dbname`` (libpq quoting): the name alone, no password."""
    name = (url.database or "").replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{name}'"


@dataclass(frozen=True)
class PgTool:
    path: str
    major: int


def pg_tool(name: str, bin_dir: Path | None = None) -> PgTool:
    """``pg_dump`` or ``pg_restore`` (from ``bin_dir``, else the PATH) and its major
    version; ``BackupRefused`` when it is missing or does not say its version."""
    if bin_dir is not None:
        candidate = bin_dir / name
        found = str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None
    else:
        found = shutil.which(name)
    if found is None:
        where = f"in {bin_dir}" if bin_dir is not None else "on the PATH"
        raise BackupRefused(
            f"{name} not found {where}: install the PostgreSQL client tools of the server's "
            "version (Debian: postgresql-client-NN), or give their directory with --pg-bin"
        )
    try:
        out = subprocess.run(  # noqa: S603 (a fixed tool, no shell)
            [found, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupRefused(f"{found} --version failed: {type(exc).__name__}") from None
    match = _VERSION_RE.search(out)
    if match is None:
        raise BackupRefused(f"{found} --version did not give a PostgreSQL version: {out.strip()!r}")
    return PgTool(found, int(match.group(1)))


def _server_major(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SHOW server_version_num").scalar_one()) // 10000


def _tool_failure(tool: str, stderr: str) -> BackupError:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return BackupError(f"{tool} failed: " + (" / ".join(lines[-5:]) or "no message"))
