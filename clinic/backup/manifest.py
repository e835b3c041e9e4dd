"""The manifest beside a backup (``PATH.manifest.json``): the file's size and SHA-256, the
migration revision and, per table, its row count and a SHA-256 over its rows in
primary-key order; computing those digests and comparing two sets of them. Counts and
hashes only: nothing here holds or prints row contents.

The manifest is signed: ``"signature": {"key_id": ID, "hmac": HEX}``, an HMAC-SHA256 under
the deployment's audit keys (``AUDIT_HMAC_KEYS``, ``clinic.audit.keys``; the newest signs)
over the canonical JSON of every other field (sorted keys, no whitespace). Whoever can
write the backup's directory but does not hold the key cannot change a row and rewrite the
manifest to match (the digests alone are unkeyed: anyone can recompute them)."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import current_app

from clinic.audit.keys import KEY_ID_RE, AuditKeys
from clinic.audit.keys import SETTING as KEYS_SETTING
from clinic.extensions import db

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = "clinic-backup/1"
SIGNATURE = "signature"
_HASH_BATCH = 5000


@dataclass(frozen=True)
class TableDigest:
    rows: int
    sha256: str


@dataclass
class Manifest:
    """What a backup holds: per table, its row count and the SHA-256 of its rows."""

    engine: str
    created_at: str
    backup_bytes: int
    backup_sha256: str
    revision: list[str]
    tables: dict[str, TableDigest]
    server_major: int | None = None
    pg_dump_major: int | None = None
    format: str = MANIFEST_FORMAT

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    def to_json(self, keys: AuditKeys) -> str:
        """The manifest as JSON, signed with the newest of ``keys`` (``signature``)."""
        data = asdict(self)
        data[SIGNATURE] = {
            "key_id": keys.current_id,
            "hmac": _manifest_hmac(keys.current_secret, data),
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Read a manifest; ``ValueError`` when ``text`` is not one of this format."""
        try:
            data = json.loads(text)
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"not a {MANIFEST_FORMAT} manifest")
            tables = {
                name: TableDigest(int(t["rows"]), str(t["sha256"]))
                for name, t in data["tables"].items()
            }
            return cls(
                engine=str(data["engine"]),
                created_at=str(data["created_at"]),
                backup_bytes=int(data["backup_bytes"]),
                backup_sha256=str(data["backup_sha256"]),
                revision=[str(r) for r in data["revision"]],
                tables=tables,
                server_major=data.get("server_major"),
                pg_dump_major=data.get("pg_dump_major"),
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a {MANIFEST_FORMAT} manifest ({type(exc).__name__})") from exc


def _manifest_hmac(secret: bytes, data: Mapping[str, Any]) -> str:
    """HMAC-SHA256 (hex) of the canonical JSON of ``data`` without its signature."""
    body = {name: value for name, value in data.items() if name != SIGNATURE}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()


def signature_problem(text: str, keys: AuditKeys) -> str | None:
    """Why the manifest ``text`` is not signed by one of ``keys``, or ``None`` when its
    ``signature`` is the HMAC of the rest under the key its ``key_id`` names. The reason
    names the key id, never a secret. Checked on the JSON as written, before parsing."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return f"not a {MANIFEST_FORMAT} manifest"
    signature = data.get(SIGNATURE) if isinstance(data, dict) else None
    if not isinstance(signature, dict):
        return "the manifest is not signed"
    key_id, given = signature.get("key_id"), signature.get("hmac")
    if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
        return "the manifest's signature names no valid key id"
    secret = keys.secret(key_id)
    if secret is None:
        return f"the manifest is signed with key {key_id!r}, which {KEYS_SETTING} does not list"
    expected = _manifest_hmac(secret, data)
    if not isinstance(given, str) or not hmac.compare_digest(expected.encode(), given.encode()):
        return f"the manifest's signature (key {key_id!r}) does not match its contents"
    return None


def manifest_path(path: Path) -> Path:
    """Where the manifest of the backup at ``path`` lives: ``PATH.manifest.json``."""
    return path.with_name(path.name + MANIFEST_SUFFIX)


def _canonical(value: Any) -> Any:
    """A row's value as JSON, the same for the same data on either engine: timestamps in
    UTC ISO 8601, decimals as written, bytes in hex, enums by value."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, enum.Enum):
        return _canonical(value.value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _hashable_tables(inspector: sa.Inspector) -> dict[str, tuple[sa.TableClause, list[str]]]:
    """Every table as the database has it (its columns, sorted by name), each column read
    through the models' type when the models have it (else the database's type), and the
    names of its primary key. From the database, not the models: a backup of a database
    at another migration revision is hashed all the same. Two catalog queries in all."""
    columns_of = inspector.get_multi_columns()
    keys_of = inspector.get_multi_pk_constraint()
    tables = {}
    for (schema, name), reflected_columns in columns_of.items():
        model = db.metadata.tables.get(name)
        columns = []
        for reflected in sorted(reflected_columns, key=lambda c: c["name"]):
            typed = model.c.get(reflected["name"]) if model is not None else None
            type_ = typed.type if typed is not None else reflected["type"]
            if isinstance(type_, sa.Enum):
                # The stored text: a value the enum would refuse is hashed, not raised.
                type_ = sa.String()
            columns.append(sa.column(reflected["name"], type_))
        primary_key = keys_of.get((schema, name), {}).get("constrained_columns") or []
        tables[name] = (sa.table(name, *columns), primary_key)
    return tables


def table_digests(conn: sa.Connection) -> dict[str, TableDigest]:
    """Every table of the connection's schema: its row count and a SHA-256 over its column
    names and its rows in primary-key order (every column when it has no primary key).

    Rows are read through the models' column types (UTC timestamps, dates, booleans,
    decimals), so the same data gives the same hash; enums are read as their stored text.
    Read inside the caller's transaction: a REPEATABLE READ one sees a single snapshot."""
    digests = {}
    tables = _hashable_tables(sa.inspect(conn))
    for name in sorted(tables):
        table, primary_key = tables[name]
        digest = hashlib.sha256()
        digest.update(json.dumps([name, [c.name for c in table.c]]).encode() + b"\n")
        rows = 0
        for row in _rows_in_order(conn, table, primary_key):
            line = json.dumps([_canonical(v) for v in row], ensure_ascii=False, default=str)
            digest.update(line.encode() + b"\n")
            rows += 1
        digests[name] = TableDigest(rows, digest.hexdigest())
    return digests


def _rows_in_order(
    conn: sa.Connection, table: sa.TableClause, primary_key: list[str]
) -> Iterator[sa.Row]:
    """The table's rows in primary-key order, a batch per query (keyset pagination: one
    query for a small table, bounded memory for a large one). Ordered by every column
    when the table has no primary key."""
    if not primary_key:
        yield from conn.execute(sa.select(*table.c).order_by(*table.c))
        return
    key = [table.c[c] for c in primary_key]
    positions = [list(table.c).index(c) for c in key]
    after = None
    while True:
        query = sa.select(*table.c).order_by(*key).limit(_HASH_BATCH)
        if after is not None:
            query = query.where(
                sa.tuple_(*key)
                > sa.tuple_(*(sa.literal(v, c.type) for c, v in zip(key, after, strict=True)))
            )
        batch = conn.execute(query).all()
        yield from batch
        if len(batch) < _HASH_BATCH:
            return
        after = [batch[-1][i] for i in positions]


def differences(
    expected: Mapping[str, TableDigest], actual: Mapping[str, TableDigest]
) -> list[str]:
    """What differs between two sets of digests, one line per table (no row contents)."""
    found = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        if want is None:
            found.append(f"table {name}: not in the backup")
        elif got is None:
            found.append(f"table {name}: missing ({want.rows} rows in the backup)")
        elif want.rows != got.rows:
            found.append(f"table {name}: {got.rows} rows, the backup has {want.rows}")
        elif want.sha256 != got.sha256:
            found.append(
                f"table {name}: {got.rows} rows as in the backup, but their content differs"
            )
    return found


def compare_to_manifest(manifest: Manifest) -> list[str]:
    """The configured database against ``manifest``: an empty list when every table has
    the same rows (count and hash), otherwise one line per differing table."""
    with _snapshot_connection(db.engine) as conn:
        return differences(manifest.tables, table_digests(conn))


@contextlib.contextmanager
def _snapshot_connection(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A read-only connection in one transaction; REPEATABLE READ on PostgreSQL (one
    snapshot for every table), SQLite's transactions are serializable already."""
    options: dict[str, Any] = {}
    if engine.dialect.name == "postgresql":
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    with engine.connect() as conn:
        conn = conn.execution_options(**options)
        with conn.begin():
            yield conn


def _revision(conn: sa.Connection) -> list[str]:
    from alembic.migration import MigrationContext

    return sorted(MigrationContext.configure(conn).get_current_heads())


def migration_heads() -> list[str]:
    """The head revision(s) of the migrations in the code."""
    from alembic.script import ScriptDirectory

    config = current_app.extensions["migrate"].migrate.get_config()
    return sorted(ScriptDirectory.from_config(config).get_heads())
