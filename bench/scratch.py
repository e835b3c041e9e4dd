"""Scratch databases for the benchmarks: a database of the benchmark's own, never the one
it was pointed at.

Given a PostgreSQL URL, a benchmark uses the *server* only: it creates
``clinic_bench_<label>_<random>`` there, migrates it to head with the app's migrations,
fills and measures it, and drops it at the end — also on an error, Ctrl-C or a kill
(``stop_on_signals``). Given a SQLite URL or nothing, it uses a SQLite file in a
temporary directory, removed at the end.

    from bench.scratch import scratch_database, stop_on_signals

    stop_on_signals()
    with scratch_database(args.database_url, "patient_search") as url:
        ...  # create_app({"SQLALCHEMY_DATABASE_URI": url}), migrate, load, time

The database named in the given URL is only connected to, to run ``CREATE DATABASE`` and
``DROP DATABASE``; when it does not exist, the server's ``postgres`` database is used.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

SCRATCH_PREFIX = "clinic_bench_"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def is_postgresql(url: str | None) -> bool:
    return bool(url) and url.startswith(("postgres://", "postgresql"))  # type: ignore[union-attr]


class Scratch:
    """A PostgreSQL database of its own on the server of ``server_url``:
    ``clinic_bench_<label>_<8 hex>`` (or ``reuse``, a kept one), created by ``create()``
    with each of ``settings`` as its default (``ALTER DATABASE ... SET name = value``, e.g.
    ``{"synchronous_commit": "off"}`` for a bulk load), dropped by ``drop()`` — with
    ``FORCE``, so connections still open (a pool, a crashed worker) do not keep it. Also
    a context manager: created on entry, dropped on exit, whatever the exit."""

    def __init__(
        self,
        server_url: str,
        label: str,
        *,
        reuse: str | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        from config import normalise_database_url

        if not is_postgresql(server_url):
            raise ValueError("a scratch database is made on a PostgreSQL server")
        self.admin_url = sa.make_url(normalise_database_url(server_url))
        self.name = reuse or f"{SCRATCH_PREFIX}{label}_{uuid.uuid4().hex[:8]}"
        self.url = self.admin_url.set(database=self.name).render_as_string(hide_password=False)
        self.settings = dict(settings or {})
        self.admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.created = False

    def _connect(self) -> sa.Connection:
        try:
            return self.admin.connect()
        except sa.exc.OperationalError as error:
            if "does not exist" not in str(error) or self.admin_url.database == "postgres":
                raise
            # The URL named a database that is not there: any database of the server does.
            self.admin.dispose()
            self.admin_url = self.admin_url.set(database="postgres")
            self.admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
            return self.admin.connect()

    def create(self) -> None:
        with self._connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
            self.created = True
            for name, value in self.settings.items():
                conn.execute(sa.text(f'ALTER DATABASE "{self.name}" SET {name} = {value}'))

    def drop(self) -> None:
        if self.created:
            with self._connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self.created = False
        self.admin.dispose()

    def __enter__(self) -> Scratch:
        self.create()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.drop()


def migrate(url: str) -> None:
    """Migrate the database at ``url`` to head with the app's migrations (Alembic's line
    per migration silenced)."""
    from flask_migrate import upgrade

    from clinic import create_app
    from clinic.extensions import db

    app = create_app({"CLINIC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        logging.disable(logging.INFO)
        try:
            upgrade()
        finally:
            logging.disable(logging.NOTSET)
        db.engine.dispose()


@contextlib.contextmanager
def scratch_database(
    database_url: str | None, label: str, *, settings: Mapping[str, str] | None = None
) -> Iterator[str]:
    """The URL of an empty database of this benchmark's own, removed on exit.

    ``database_url``: a PostgreSQL URL (only its server is used: a scratch database is
    created there, see ``Scratch``), a ``sqlite:`` URL or None (a SQLite file in a new
    temporary directory, removed on exit). Not migrated: call ``migrate(url)`` or run
    ``flask_migrate.upgrade()`` in the app's context."""
    if is_postgresql(database_url):
        scratch = Scratch(database_url, label, settings=settings)  # type: ignore[arg-type]
        print(f"scratch database {scratch.name} on {scratch.admin_url.host}", flush=True)
        with scratch:
            yield scratch.url
        print(f"dropped {scratch.name}", flush=True)
        return
    directory = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{label}_")
    try:
        yield f"sqlite:///{directory}/bench.db"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Make SIGTERM and SIGINT raise KeyboardInterrupt, so the ``finally`` that drops a
    scratch database runs on a kill too (and on Ctrl-C in a background job, where SIGINT
    would otherwise be ignored)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
