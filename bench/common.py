"""What the page benchmark (``bench/pages.py``) shares with its modules: the scratch
database of each engine, migrating it, the statement recorder, timing statistics and the
machine's facts.

A scratch database is the benchmark's own: on PostgreSQL ``clinic_bench_pages_<size>_<hex>``
created on the server of ``BENCH_DATABASE_URL`` and dropped at the end (also on an error
or Ctrl-C, unless kept); on SQLite a file in a temporary directory, removed with it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from bench.scratch import migrate  # noqa: F401 (one migrate for every benchmark)

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PREFIX = "clinic_bench_pages_"


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


class Scratch:
    """A database of the benchmark's own for one engine and size.

    ``engine``: "sqlite" or "postgresql"; ``server_url``: a PostgreSQL server (any of its
    databases; only used to create and drop ours); ``reuse``: the name of a database kept
    by an earlier ``--keep`` run (PostgreSQL), or the path of a kept SQLite file."""

    def __init__(self, engine: str, label: str, server_url: str, reuse: str | None = None):
        from config import normalise_database_url

        self.engine = engine
        self.label = label
        self.reused = reuse is not None
        self.created = False
        self.admin = None
        self.tmpdir: str | None = None
        if engine == "sqlite":
            if reuse:
                self.name = str(Path(reuse).resolve())
            else:
                self.tmpdir = tempfile.mkdtemp(prefix=PREFIX)
                self.name = os.path.join(self.tmpdir, f"{label}.db")
            self.url = f"sqlite:///{self.name}"
            return
        admin_url = sa.make_url(normalise_database_url(server_url))
        self.name = reuse or f"{PREFIX}{label.lower()}_{uuid.uuid4().hex[:8]}"
        self.url = admin_url.set(database=self.name).render_as_string(hide_password=False)
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")

    def create(self) -> None:
        """Create the empty database (a no-op for a reused one)."""
        if self.reused:
            return
        if self.engine == "sqlite":
            self.created = True  # the file appears with the first connection
            return
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
            self.created = True
            # A scratch database: no need to wait for the disk at each commit.
            conn.execute(sa.text(f'ALTER DATABASE "{self.name}" SET synchronous_commit = off'))

    def drop(self, keep: bool = False) -> None:
        """Drop the database unless ``keep`` or reused (say how to reuse it)."""
        if keep or self.reused:
            if self.created or self.reused:
                log(f"kept {self.name}: rerun with --reuse {self.label}={self.name}")
        elif self.engine == "sqlite":
            if self.tmpdir:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
        elif self.created:
            with self.admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            log(f"dropped {self.name}")
        self.created = False
        if self.admin is not None:
            self.admin.dispose()


def make_app(url: str):
    """The app on ``url`` as the tests run it (``CLINIC_ENV=testing``: no rate limit on
    the bench's logins; CSRF, the login gate and the audit trail as in production)."""
    from clinic import create_app

    return create_app({"CLINIC_ENV": "testing", "SQLALCHEMY_DATABASE_URI": url})


class Recorder:
    """Counts (and keeps) the SQL statements sent while ``recording()``: a
    ``before_cursor_execute`` listener on the app's engine."""

    def __init__(self, engine) -> None:
        self.active = False
        self.statements: list[tuple[str, object]] = []
        sa.event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.active:
            self.statements.append((statement, parameters))

    @contextlib.contextmanager
    def recording(self):
        self.statements = []
        self.active = True
        try:
            yield self
        finally:
            self.active = False


def percentile(values: list[float], share: float) -> float:
    """The ``share`` (0-1) percentile of ``values``, linearly interpolated."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary_ms(values: list[float]) -> dict:
    """Median and 95th percentile (ms, one decimal) of timings in ms."""
    return {
        "median_ms": round(statistics.median(values), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "runs": len(values),
    }


def timed(function, *args, **kwargs) -> tuple[float, object]:
    """(elapsed ms, result) of one call."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return (time.perf_counter() - started) * 1000, result


def load_average() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


def machine_facts(url: str) -> dict:
    """The machine and the engine's version (PostgreSQL: with its memory settings)."""
    from config import normalise_database_url

    engine = sa.create_engine(normalise_database_url(url))
    facts = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
    }
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            facts["engine_version"] = (
                "PostgreSQL " + conn.exec_driver_sql("SHOW server_version").scalar()
            )
            facts["engine_settings"] = {
                name: conn.exec_driver_sql(f"SHOW {name}").scalar()
                for name in ("shared_buffers", "work_mem", "effective_cache_size", "jit")
            }
        else:
            facts["engine_version"] = (
                "SQLite " + conn.exec_driver_sql("SELECT sqlite_version()").scalar()
            )
    engine.dispose()
    return facts


def table_counts(url: str, tables: tuple[str, ...]) -> dict[str, int]:
    """Row counts of ``tables`` (those that exist)."""
    from config import normalise_database_url

    engine = sa.create_engine(normalise_database_url(url))
    counts = {}
    with engine.connect() as conn:
        present = set(sa.inspect(conn).get_table_names())
        for table in tables:
            if table in present:
                counts[table] = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()  # noqa: S608
    engine.dispose()
    return counts
