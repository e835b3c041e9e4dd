"""Bulk writing on each engine, in one transaction: what slows a bulk insert is set aside
first and put back (and checked) at the end, or rolled back with the rows on any error.

PostgreSQL: foreign keys and unique constraints dropped and added back (validated on the
data), secondary indexes dropped and built after, user triggers disabled then enabled
(DDL is transactional: an error rolls all of it back), rows sent with COPY (psycopg 3
``cursor.copy``), sequences set after the explicit ids, then VACUUM ANALYZE.

SQLite: ``PRAGMA foreign_keys=OFF`` for the load and ``PRAGMA foreign_key_check`` before
the commit (a dangling reference fails the load), synchronous off and the journal in
memory during the load (restored after), triggers that fire on INSERT dropped and created
again from their ``sqlite_master`` SQL, secondary indexes dropped and built after, rows
inserted with ``executemany`` in one transaction, then ANALYZE.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import sqlalchemy as sa

from clinic.db import UTCDateTime
from clinic.extensions import db

SKIPPED_TABLES = ("alembic_version",)
CHUNK = 20_000
_INSERT_TRIGGER = re.compile(r"\b(BEFORE|AFTER|INSTEAD\s+OF)\s+INSERT\s+ON\b", re.IGNORECASE)


class LoadFailed(RuntimeError):
    """The loaded rows broke a rule the database checks at the end (a foreign key)."""


class Bulk:
    """One transaction on a connection of ``db.engine``: ``prepare()``, ``write()`` each
    table, then ``finish()`` (or ``abort()``), then ``analyze()``."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.raw = conn.connection.driver_connection
        self.tables = [t for t in db.metadata.sorted_tables if t.name not in SKIPPED_TABLES]

    @staticmethod
    def for_connection(conn: sa.Connection) -> Bulk:
        return PostgresBulk(conn) if conn.dialect.name == "postgresql" else SqliteBulk(conn)

    def write(self, table: str, columns: str, rows: Iterable[tuple], tick: Callable) -> int:
        raise NotImplementedError


class PostgresBulk(Bulk):
    def prepare(self) -> None:
        cur = self.raw.cursor()
        for setting in ("work_mem = '256MB'", "maintenance_work_mem = '512MB'",
                        "synchronous_commit = off", "jit = off"):  # fmt: skip
            cur.execute(f"SET LOCAL {setting}")
        names = [t.name for t in self.tables]
        constraints = cur.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype"
            " FROM pg_constraint WHERE contype IN ('f', 'u')"
            " AND conrelid::regclass::text = ANY(%s) ORDER BY contype, conname",
            (names,),
        ).fetchall()
        indexes = cur.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)"
            " FROM pg_index i WHERE i.indrelid::regclass::text = ANY(%s) AND NOT i.indisprimary"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid"
            " AND c.contype IN ('u', 'p', 'x')) ORDER BY 1",
            (names,),
        ).fetchall()
        for table, name, _, _ in constraints:  # 'f' sorts first: foreign keys before uniques
            cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cur.execute(f"DROP INDEX {name}")
        self.recreate = [definition for _, definition in indexes]
        self.recreate += [
            f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
            for table, name, definition, kind in sorted(constraints, key=lambda c: c[3] != "u")
        ]
        for name in names:
            cur.execute(f'ALTER TABLE "{name}" DISABLE TRIGGER USER')

    def write(self, table: str, columns: str, rows: Iterable[tuple], tick: Callable) -> int:
        count = 0
        with self.raw.cursor() as cur, cur.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
            write = copy.write_row
            for row in rows:
                write(row)
                count += 1
                if not count % CHUNK:
                    tick(CHUNK)
        tick(count % CHUNK)
        return count

    def finish(self, steps: Callable) -> None:
        cur = self.raw.cursor()
        with steps("indexes and constraints (validated)"):
            for statement in self.recreate:
                cur.execute(statement)
        with steps("triggers enabled, sequences set"):
            for table in self.tables:
                cur.execute(f'ALTER TABLE "{table.name}" ENABLE TRIGGER USER')
                if "id" in table.c and table.c.id.primary_key:
                    cur.execute(
                        f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'),"  # noqa: S608
                        f' (SELECT max(id) FROM "{table.name}"))'
                        f' WHERE EXISTS (SELECT 1 FROM "{table.name}")'
                        f" AND pg_get_serial_sequence('\"{table.name}\"', 'id') IS NOT NULL"
                    )
        self.raw.commit()

    def abort(self) -> None:
        self.raw.rollback()

    def analyze(self) -> None:
        self.raw.autocommit = True
        try:
            self.raw.execute("VACUUM ANALYZE")
        finally:
            self.raw.autocommit = False


def _sqlite_datetime(value) -> str:
    # SQLAlchemy's SQLite format, naive UTC (the values are UTC already).
    return value.isoformat(" ", "microseconds")[:26]


def _sqlite_date(value) -> str:
    return value.isoformat()


class SqliteBulk(Bulk):
    def prepare(self) -> None:
        raw = self.raw
        self.isolation_level = raw.isolation_level
        raw.isolation_level = None  # this code says BEGIN and COMMIT itself
        self.journal = raw.execute("PRAGMA journal_mode").fetchone()[0]
        self.synchronous = raw.execute("PRAGMA synchronous").fetchone()[0]
        raw.execute("PRAGMA foreign_keys=OFF")
        raw.execute("PRAGMA synchronous=OFF")
        raw.execute("PRAGMA journal_mode=MEMORY")  # stays WAL if another connection is open
        raw.execute("PRAGMA cache_size=-262144")
        raw.execute("BEGIN IMMEDIATE")
        objects = raw.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')"
            " AND sql IS NOT NULL ORDER BY type, name"
        ).fetchall()
        self.indexes = [(n, s) for t, n, s in objects if t == "index"]
        self.triggers = [
            (n, s) for t, n, s in objects if t == "trigger" and _INSERT_TRIGGER.search(s)
        ]
        for name, _ in self.indexes:
            raw.execute(f'DROP INDEX "{name}"')
        for name, _ in self.triggers:
            raw.execute(f'DROP TRIGGER "{name}"')

    def _converters(self, table: str, columns: str) -> list[tuple[int, Callable]]:
        meta = db.metadata.tables[table]
        out = []
        for i, name in enumerate(c.strip() for c in columns.split(",")):
            kind = meta.c[name].type
            if isinstance(kind, UTCDateTime):
                out.append((i, _sqlite_datetime))
            elif isinstance(kind, sa.Date):
                out.append((i, _sqlite_date))
        return out

    def write(self, table: str, columns: str, rows: Iterable[tuple], tick: Callable) -> int:
        converters = self._converters(table, columns)
        marks = ", ".join("?" * len(columns.split(",")))
        sql = f'INSERT INTO "{table}" ({columns}) VALUES ({marks})'  # noqa: S608
        cur = self.raw.cursor()
        count, chunk = 0, []
        for row in rows:
            if converters:
                row = list(row)
                for i, convert in converters:
                    if row[i] is not None:
                        row[i] = convert(row[i])
            chunk.append(row)
            if len(chunk) == CHUNK:
                cur.executemany(sql, chunk)
                count += CHUNK
                tick(CHUNK)
                chunk = []
        cur.executemany(sql, chunk)
        tick(len(chunk))
        return count + len(chunk)

    def finish(self, steps: Callable) -> None:
        raw = self.raw
        with steps("indexes and triggers"):
            for _, sql in self.indexes:
                raw.execute(sql)
            for _, sql in self.triggers:
                raw.execute(sql)
        with steps("foreign key check"):
            broken = raw.execute("PRAGMA foreign_key_check").fetchmany(5)
            if broken:
                raise LoadFailed(
                    f"foreign keys broken by the load (table, rowid, parent): {broken}"
                )
        raw.execute("COMMIT")
        self._restore()

    def abort(self) -> None:
        if self.raw.in_transaction:
            self.raw.execute("ROLLBACK")
        self._restore()

    def _restore(self) -> None:
        raw = self.raw
        raw.execute(f"PRAGMA journal_mode={self.journal}")
        raw.execute(f"PRAGMA synchronous={self.synchronous}")
        raw.execute("PRAGMA foreign_keys=ON")
        raw.execute("PRAGMA cache_size=-2000")
        raw.isolation_level = self.isolation_level

    def analyze(self) -> None:
        self.raw.execute("ANALYZE")
