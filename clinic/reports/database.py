"""Where report queries run: the reports database (``REPORTS_DATABASE_URL``, a read
replica) or the primary, always in a read-only transaction (issue 16).

A report only reads. ``clinic.reports.core.run`` computes a report inside
``read_session()``, and every report query goes through ``session`` (a proxy to that
session, as ``db.session`` is to the primary's). Everything else a report request does
stays on the primary's ``db.session``: the login, the permission checks, the filter form's
sites and programs (they decide what the user may count) and the audit events, which the
view commits once. PostgreSQL's ``POSTGRESQL_REPORT_SETTINGS`` apply on either database.

- ``REPORTS_DATABASE_URL`` set: a second engine, made on first use with the primary's
  engine options (``hide_parameters``, ``pool_pre_ping``; PostgreSQL: a connect timeout,
  ``CONNECT_TIMEOUT_SECONDS``, unless the URL gives one), and a session of its own in a
  read-only transaction (PostgreSQL: ``postgresql_readonly``, i.e. ``BEGIN READ ONLY``;
  SQLite: ``PRAGMA query_only`` on every connection), rolled back and closed once the
  report is computed: it never commits. Reports return plain rows, never ORM objects, so
  nothing loads through it after it is closed. A reports database that cannot be reached,
  or that cancels a statement (a standby's conflict with recovery, a timeout), raises
  ``ReportsUnavailable``: the views answer 503, the rest of the app is unaffected.
- unset: the primary's ``db.session``, the report's statements inside a SAVEPOINT made
  read-only (PostgreSQL: ``SET LOCAL transaction_read_only``, undone by ``ROLLBACK TO
  SAVEPOINT``; SQLite: ``PRAGMA query_only`` on, then off), so the request's own
  transaction goes on and its audit events are committed with it, once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.local import LocalProxy

from config import normalise_database_url

EXTENSION = "clinic_reports_database"

# PostgreSQL settings for the statements of one report, for its transaction only: the
# planner's just-in-time compilation costs more than it saves on these one-off aggregate
# queries (seconds on the network-size data set), and the sorts of the window functions
# spill to disk at the default 4 MB of work memory. bench/reports.py measures both.
POSTGRESQL_REPORT_SETTINGS = ("SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'")

# How long a report waits for the reports database to accept a connection, in seconds
# (libpq's default: for ever). A replica that stops answering (a dropped route, a hung
# server) then answers 503 like one that refuses connections, instead of holding every
# report request's worker until gunicorn kills it.
CONNECT_TIMEOUT_SECONDS = 5

_reading: ContextVar[Session | None] = ContextVar("clinic_reports_session", default=None)
_lock = threading.Lock()


class ReportsUnavailable(RuntimeError):
    """The reports database could not be reached or cancelled a report's statement."""


@dataclass(frozen=True)
class ReportsDatabase:
    """The reports database of one app: its engine and a factory of its sessions."""

    engine: sa.Engine
    sessions: sessionmaker[Session]


def _read_only_sqlite(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_connection.execute("PRAGMA query_only = ON")


def reports_database(app: Flask | None = None) -> ReportsDatabase | None:
    """The app's reports database, made on first use; None when ``REPORTS_DATABASE_URL`` is
    empty (reports then run on the primary)."""
    app = app if app is not None else current_app
    url = app.config.get("REPORTS_DATABASE_URL") or ""
    if not url:
        return None
    found = app.extensions.get(EXTENSION)
    if found is not None:
        return found
    with _lock:
        found = app.extensions.get(EXTENSION)
        if found is None:
            options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
            parsed = sa.make_url(normalise_database_url(url))
            if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
                connect_args = dict(options.get("connect_args") or {})
                connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
                options["connect_args"] = connect_args
            engine = sa.create_engine(parsed, **options)
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _read_only_sqlite)
            elif engine.dialect.name == "postgresql":
                # Every transaction of these connections is BEGIN READ ONLY (reset when a
                # connection goes back to the pool).
                engine = engine.execution_options(postgresql_readonly=True)
            found = ReportsDatabase(engine, sessionmaker(engine, autoflush=False))
            app.extensions[EXTENSION] = found
    return found


def dispose(app: Flask) -> None:
    """Close the reports database's pooled connections (the app's end; tests)."""
    found = app.extensions.pop(EXTENSION, None)
    if found is not None:
        found.engine.dispose()


def reading() -> Session | None:
    """The read-only session a report is being computed in (in this context), else None."""
    return _reading.get()


def current_session() -> Session:
    """The session report queries run on: the open read-only session (``run()``), else the
    primary's session (a report's ``compute`` called directly, as tests do)."""
    from clinic.extensions import db

    return _reading.get() or db.session()


# What report modules query through (``session.execute(...)``), as they did ``db.session``.
session = cast(Session, LocalProxy(current_session))


@contextmanager
def _current(reads: Session) -> Iterator[Session]:
    token = _reading.set(reads)
    try:
        yield reads
    finally:
        _reading.reset(token)


def _settings(reads: Session) -> None:
    if reads.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL_REPORT_SETTINGS:
            reads.execute(sa.text(statement))


@contextmanager
def read_session() -> Iterator[Session]:
    """A read-only session for one report's statements, on the reports database when one
    is configured, else on the primary (see the module's docstring). Raises
    ``ReportsUnavailable`` when the reports database cannot be connected to, drops the
    connection or cancels a statement; any other error (a write refused, a bad statement)
    propagates as it is."""
    replica = reports_database()
    if replica is None:
        with _on_primary() as primary:
            yield primary
        return
    reads = replica.sessions()
    try:
        try:
            reads.connection()  # connects (or fails) here, before any report statement
            _settings(reads)
        except sa.exc.DBAPIError as error:
            raise _unavailable(error) from error
        with _current(reads):
            try:
                yield reads
            except sa.exc.DBAPIError as error:
                if not _lost(error):
                    raise  # a report's own error (a write refused, a bad statement): a 500
                raise _unavailable(error) from error
    finally:
        reads.close()  # rolls the read-only transaction back: a report never commits


# SQLSTATEs of a statement the server gave up on: class 57 (operator intervention:
# query_canceled by a timeout, admin_shutdown...) and 40001, which a hot standby sends when
# it cancels a query that conflicts with recovery.
_CANCELLED = ("57", "40001")


def _lost(error: sa.exc.DBAPIError) -> bool:
    """The connection was lost, or the server cancelled the statement."""
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    return error.connection_invalidated or sqlstate.startswith(_CANCELLED)


def _unavailable(error: sa.exc.DBAPIError) -> ReportsUnavailable:
    # Only the error's type is logged: the driver's message may name the host. Parameters
    # are never in it (hide_parameters), so no patient data either way.
    current_app.logger.warning(
        "reports database unavailable: %s", type(error.orig or error).__name__
    )
    return ReportsUnavailable("the reports database is unavailable")


@contextmanager
def _on_primary() -> Iterator[Session]:
    from clinic.extensions import db

    primary = db.session()
    # Settings for the rest of the request's transaction (they end with it), then the
    # request's pending changes, before the savepoint that is rolled back.
    _settings(primary)
    primary.flush()
    dialect = primary.get_bind().dialect.name
    if dialect == "postgresql":
        savepoint = primary.begin_nested()
        try:
            primary.execute(sa.text("SET LOCAL transaction_read_only = on"))
            with _current(primary):
                yield primary
        finally:
            savepoint.rollback()  # undoes the read-only setting, nothing else
    elif dialect == "sqlite":
        connection = primary.connection()
        connection.exec_driver_sql("PRAGMA query_only = ON")
        try:
            with _current(primary):
                yield primary
        finally:
            connection.exec_driver_sql("PRAGMA query_only = OFF")
    else:  # no other engine is supported; still, a report must run
        with _current(primary):
            yield primary
