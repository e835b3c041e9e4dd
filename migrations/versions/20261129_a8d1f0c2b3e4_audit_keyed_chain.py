"""audit keyed chain

Adds ``audit_event.key_id``: from now on each event's hash is an HMAC-SHA256 keyed with
a secret outside the database (AUDIT_HMAC_KEYS), and ``key_id`` names that key.

Existing events keep their plain SHA-256 hashes (``key_id`` NULL) and are never
rewritten. If there are any, the upgrade appends one keyed ``chain_sealed`` event that
links to the last of them and names their number and last hash; ``flask audit verify``
accepts unkeyed events only as that sealed prefix. So the old events stay verifiable,
and nobody without the key can rewrite them (the seal's HMAC covers their last hash) or
pass off a rewritten chain as an old unkeyed one. Run ``flask audit verify`` before the
upgrade: the seal vouches for the chain as it was found.

On SQLite, adding a column is a plain ALTER TABLE (no table rebuild), and the
append-only triggers are recreated anyway so they exist whatever an earlier batch
operation did; the downgrade drops the column natively (SQLite 3.35+) and recreates
them too. Downgrading leaves keyed events that the plain SHA-256 verifier reports as
altered: downgrade only to restore an older release with its backup.

Revision ID: a8d1f0c2b3e4
Revises: 856dde6e6507
Create Date: 2026-11-29 07:15:00

"""
import datetime as dt
import hashlib
import hmac
import json

import sqlalchemy as sa
from alembic import op

import clinic.db  # custom column types (UTCDateTime for the seal event)


# revision identifiers, used by Alembic.
revision = 'a8d1f0c2b3e4'
down_revision = '856dde6e6507'
branch_labels = None
depends_on = None

# Frozen copy of the keyed hash of this revision (clinic/audit/services.py event_hash):
# a migration must not change when the application's code does.
HASHED_FIELDS = (
    "seq", "occurred_at", "user_id", "username", "role", "site_id", "action",
    "entity_type", "entity_id", "patient_id", "outcome", "ip", "request_id", "details",
    "key_id",
)


def _canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _keyed_hash(prev_hash, fields, secret):
    payload = {k: fields[k] for k in HASHED_FIELDS}
    payload["occurred_at"] = payload["occurred_at"].astimezone(dt.UTC).isoformat(
        timespec="microseconds"
    )
    message = f"{prev_hash}\n{_canonical_json(payload)}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _create_sqlite_triggers():
    for operation in ("UPDATE", "DELETE"):
        op.execute(f"DROP TRIGGER IF EXISTS audit_event_no_{operation.lower()}")
        op.execute(
            f"CREATE TRIGGER audit_event_no_{operation.lower()} BEFORE {operation} "
            f"ON audit_event BEGIN SELECT RAISE(ABORT, 'audit_event is append-only: "
            f"{operation} refused'); END"
        )


def _seal_unkeyed_events():
    """Close the plain SHA-256 events with one keyed event (see the module doc)."""
    bind = op.get_bind()
    last_seq, last_hash = bind.execute(
        sa.text("SELECT last_seq, last_hash FROM audit_chain_head WHERE id = 1")
    ).one()
    if last_seq == 0:
        return
    from flask import current_app

    from clinic.audit.keys import audit_keys

    keys = audit_keys(current_app)
    event = {
        "seq": last_seq + 1,
        "occurred_at": dt.datetime.now(dt.UTC),
        "user_id": None,
        "username": None,
        "role": None,
        "site_id": None,
        "action": "chain_sealed",
        "entity_type": "audit_chain",
        "entity_id": None,
        "patient_id": None,
        "outcome": "success",
        "ip": None,
        "request_id": None,
        "details": _canonical_json({"legacy_events": last_seq, "legacy_head": last_hash}),
        "key_id": keys.current_id,
        "prev_hash": last_hash,
    }
    event["hash"] = _keyed_hash(last_hash, event, keys.current_secret)
    table = sa.table(
        "audit_event",
        *(sa.column(name) for name in event if name != "occurred_at"),
        sa.column("occurred_at", clinic.db.UTCDateTime(timezone=True)),
    )
    bind.execute(sa.insert(table).values(**event))
    bind.execute(
        sa.text("UPDATE audit_chain_head SET last_seq = :seq, last_hash = :hash WHERE id = 1"),
        {"seq": event["seq"], "hash": event["hash"]},
    )


def upgrade() -> None:
    op.add_column('audit_event', sa.Column('key_id', sa.String(length=16), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        _create_sqlite_triggers()
    _seal_unkeyed_events()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Native DROP COLUMN: no table rebuild, so no event is copied or lost.
        op.execute("ALTER TABLE audit_event DROP COLUMN key_id")
        _create_sqlite_triggers()
    else:
        op.drop_column('audit_event', 'key_id')
